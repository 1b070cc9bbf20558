# Copyright: sessionshift contributors
# Apache License 2.0

"""What every sessionshift module shares: the base class SessionshiftModule and its option groups.

Modules stay thin: they declare their own options, call the ``sessionshift``
package once, and shape the result. SessionshiftModule does the rest, the way
amazon.aws's AnsibleAWSModule does for AWS modules: it merges the shared option
groups into the module's argument spec, fails cleanly when the package is
missing on the host, applies the decode budget and the source profile, and turns
what the package refuses into one failure that says what failed, where, and
what to do. Anything else belongs in the package.
"""

from __future__ import annotations

import contextlib
import traceback

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

try:
    from sessionshift.defaults import BATCH_SIZE, STATE_DIR
    from sessionshift.errors import SessionshiftError
    from sessionshift.formats import HASH_NAMES, HEADER_STYLES, SERIALIZERS
    from sessionshift.keys import KeyLayout
    from sessionshift.phasefile import host_layout
    from sessionshift.profile import ProfileError, resolve
    from sessionshift.redisconn import INSECURE_TLS_WARNING, RedisSettings, RedisUnavailable, connect, explain
    from sessionshift.safepickle import configure as configure_budget
except ImportError:
    SESSIONSHIFT_IMPORT_ERROR = traceback.format_exc()
    BATCH_SIZE, STATE_DIR = 500, "/var/lib/sessionshift"  # the module fails on the missing package anyway
    HASH_NAMES = ("md5", "sha256")
    HEADER_STYLES = ("struct", "pickle")
    SERIALIZERS = ("pickle", "msgpack")

    class SessionshiftError(Exception):  # never raised: the module fails on the missing package first
        pass
else:
    SESSIONSHIFT_IMPORT_ERROR = None

# The Redis connection, as one dict option `redis` on every module that talks to Redis.
REDIS_OPTIONS = dict(
    url=dict(type="str", required=True, no_log=True),  # rediss://user:password@host may carry a secret
    username=dict(type="str"),
    password=dict(type="str", no_log=True),
    password_secret=dict(type="str", no_log=False),  # a secret's name or ARN, not the secret
    secret_region=dict(type="str", no_log=False),  # names a region, not a secret
    secret_endpoint_url=dict(type="str", no_log=False),  # an endpoint, not a secret
    ca_file=dict(type="path"),
    cert_file=dict(type="path"),
    key_file=dict(type="path", no_log=False),
    verify_tls=dict(type="bool", default=True),
    cluster=dict(type="bool", default=False),
    connect_timeout=dict(type="float", default=5.0),
    socket_timeout=dict(type="float", default=5.0),
    retries=dict(type="int", default=3),
)

REDIS_ARG_SPEC = dict(redis=dict(type="dict", required=True, options=REDIS_OPTIONS))

# Sessions or keys per Redis pipeline (sessionshift.defaults).
BATCH_SIZE_OPTION = dict(type="int", default=BATCH_SIZE)
STATE_DIR_OPTION = dict(type="path", default=STATE_DIR)
KEY_PREFIX_OPTION = dict(type="str", default="session:", no_log=False)

# Where the sessions are and how the app names them. hash_method and serializer default to the
# source profile recorded by session_analyze (see apply_profile): given, they must agree with it.
SESSION_ARG_SPEC = dict(
    session_dir=dict(type="path", required=True),
    key_prefix=KEY_PREFIX_OPTION,
    hash_method=dict(type="str", choices=list(HASH_NAMES)),
    serializer=dict(type="str", choices=list(SERIALIZERS)),
    state_dir=STATE_DIR_OPTION,
)

# How files are written (modules that write session files); the profile's by default.
FILE_FORMAT_ARG_SPEC = dict(
    header_style=dict(type="str", choices=list(HEADER_STYLES)),
    pickle_protocol=dict(type="int", choices=list(range(0, 6))),
)

# Limits on decoding one session (sessionshift.safepickle.Budget); unset: its defaults.
DECODE_BUDGET_ARG_SPEC = dict(decode_budget=dict(type="dict", options=dict(
    max_session_bytes=dict(type="int"),
    max_depth=dict(type="int"),
    max_objects=dict(type="int"),
    max_encoded_bytes=dict(type="int"),
)))

# module option -> source profile setting
_PROFILE_OPTIONS = {"hash_method": "hash_name", "serializer": "serializer", "header_style": "header_style",
                    "pickle_protocol": "pickle_protocol"}

# Attributes of a SessionshiftError that name where it happened or what to do: returned as they are.
_ERROR_DETAILS = ("endpoint", "cause", "hint", "path", "reason", "fix")


class SessionshiftModule(AnsibleModule):
    """AnsibleModule for the modules that run the sessionshift package on a host.

    *name* starts every failure message. *argument_spec* (the module's own options) is
    merged over the option groups the flags ask for: *redis* (REDIS_ARG_SPEC), *session*
    (SESSION_ARG_SPEC), *file_format*, *decode_budget* and *batch_size*. After argument
    parsing, the package must import (so a module imports from ``sessionshift`` after
    constructing this, inside ``main``); a ``decode_budget`` option sets the process's
    decoding budget; *profile* (the settings the module relies on, see
    :func:`sessionshift.profile.resolve`) fills hash_method, serializer, header_style and
    pickle_protocol from the source profile. Check mode is on unless the module says
    otherwise.
    """

    def __init__(self, name, argument_spec=None, *, redis=False, session=False, file_format=False,
                 decode_budget=False, batch_size=False, profile=None, **kwargs):
        groups = ((redis, REDIS_ARG_SPEC), (session, SESSION_ARG_SPEC), (file_format, FILE_FORMAT_ARG_SPEC),
                  (decode_budget, DECODE_BUDGET_ARG_SPEC), (batch_size, dict(batch_size=BATCH_SIZE_OPTION)))
        merged = {}
        for group in [spec for wanted, spec in groups if wanted] + [argument_spec or {}]:
            merged.update(group)
        kwargs.setdefault("supports_check_mode", True)
        super().__init__(argument_spec=merged, **kwargs)
        self.module_name = name
        if SESSIONSHIFT_IMPORT_ERROR is not None:
            self.fail_json(msg=missing_required_lib(
                "sessionshift", url="https://github.com/sessionshift/sessionshift (the session_app role "
                "installs it on app hosts)"), exception=SESSIONSHIFT_IMPORT_ERROR, changed=False)
        if "decode_budget" in self.argument_spec:
            with self.failing(ValueError, prefix="decode_budget"):
                configure_budget(**(self.params.get("decode_budget") or {}))
        if profile is not None:
            self.apply_profile(profile)

    # ---------------------------------------------------------------- options

    def apply_profile(self, needs):
        """Fill hash_method, serializer, header_style and pickle_protocol in params from the source
        profile (state_dir/profile.json); fail, naming both values, when a given one contradicts it."""
        params = self.params
        given = {setting: params.get(option) for option, setting in _PROFILE_OPTIONS.items()}
        try:
            resolved = resolve(params.get("state_dir"), params.get("session_dir"), given, style="module",
                               needs=needs)
        except ProfileError as exc:
            self.fail_json(msg=str(exc), changed=False)
        for option, setting in _PROFILE_OPTIONS.items():
            params[option] = getattr(resolved, setting)
        return resolved

    def redis_settings(self):
        """RedisSettings from the `redis` option: settings that cannot be used fail the module in one
        line, and TLS without verification is warned about in the play's output."""
        settings = RedisSettings.from_mapping(dict(self.params["redis"]))
        with self.failing(ValueError, prefix="redis"):
            settings.check()
        if settings.insecure:
            self.warn(INSECURE_TLS_WARNING)
        return settings

    def key_layout(self):
        """The key layout in the generation given (``generation``), else the one the host's phase
        file names (``state_dir``), else 0."""
        params = self.params
        if params.get("generation") is None and params.get("state_dir"):
            return host_layout(params["state_dir"], params["key_prefix"], params["hash_method"])
        return KeyLayout(prefix=params["key_prefix"], hash_name=params["hash_method"],
                         generation=params.get("generation") or 0)

    # ---------------------------------------------------------------- failures

    @contextlib.contextmanager
    def failing(self, *expected, settings=None, prefix=None, **result):
        """Fail the module, with *result*, on what the block raises that the module expects.

        A SessionshiftError (what the package refuses: its message says what, where and what to
        do) and *expected* exception types (OSError, ValueError...) fail with the message behind
        *prefix* (the module's name by default), the error's class, and its endpoint, path,
        reason and fix where it has them. With *settings*, redis-py's own errors raised mid-run
        (a refused command, a connection lost) fail as an unreachable Redis: endpoint, cause and
        fix, no secrets. Anything else is a bug and keeps its traceback.
        """
        result.setdefault("changed", False)
        try:
            yield
        except SessionshiftError as exc:
            self.fail_on(exc, prefix, **result)
        except Exception as exc:
            if settings is not None and type(exc).__module__.startswith("redis"):
                self.fail_on(explain(exc, settings), prefix, **result)
            if not isinstance(exc, expected):
                raise
            self.fail_on(exc, prefix, **result)

    def fail_on(self, exc, prefix=None, **result):
        """fail_json for one error: its message, class and details (no traceback: the message is the
        explanation; a RedisUnavailable names the endpoint, never the password)."""
        details = {name: getattr(exc, name) for name in _ERROR_DETAILS
                   if isinstance(getattr(exc, name, None), (str, int, float))}
        result.setdefault("changed", False)
        if isinstance(exc, RedisUnavailable):
            message = str(exc)  # names the endpoint already
        else:
            message = f"{prefix or self.module_name}: {exc}"
        self.fail_json(msg=message, error=type(exc).__name__, **details, **result)

    @contextlib.contextmanager
    def redis_client(self, settings, *expected, **result):
        """A connected client for the block (closed after it); Redis problems and *expected* errors
        fail the module as :meth:`failing` says."""
        with self.failing(*expected, settings=settings, **result):
            client = connect(settings)
            try:
                yield client
            finally:
                client.close()

    # ---------------------------------------------------------------- results

    def finish(self, changed, diff=None, **result):
        """exit_json: *diff* (before, after and their headers) is shown only when the task asks for
        diffs and something changed (or would, in check mode)."""
        if diff is not None and self._diff and changed:
            result["diff"] = diff
        self.exit_json(changed=changed, **result)


def counts_of(result, names):
    """The outcome counts a module returns, read from the package's result object."""
    return {name: getattr(result, name) for name in names}
