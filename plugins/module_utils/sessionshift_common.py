# Copyright: sessionshift contributors
# Apache License 2.0

"""What every sessionshift module shares: argument specs, the import guard, error shaping.

Modules stay thin: they parse arguments with these specs, call the
``sessionshift`` package, and shape the result. Anything else belongs in the
package.
"""

from __future__ import annotations

import contextlib
import traceback

from ansible.module_utils.basic import missing_required_lib

try:
    from sessionshift.defaults import BATCH_SIZE, STATE_DIR
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

# Where the sessions are and how the app names them. hash_method and serializer default to the
# source profile recorded by session_analyze (see apply_profile): given, they must agree with it.
SESSION_ARG_SPEC = dict(
    session_dir=dict(type="path", required=True),
    key_prefix=dict(type="str", default="session:", no_log=False),
    hash_method=dict(type="str", choices=list(HASH_NAMES)),
    serializer=dict(type="str", choices=list(SERIALIZERS)),
    state_dir=dict(type="path", default=STATE_DIR),
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


def argument_spec(*specs, **extra):
    """Merge argument spec fragments (later ones win) with module-specific options."""
    merged = {}
    for spec in specs:
        merged.update(spec)
    merged.update(extra)
    return merged


def require_sessionshift(module):
    """Fail the module cleanly when the package is not installed on the target host."""
    if SESSIONSHIFT_IMPORT_ERROR is not None:
        module.fail_json(msg=missing_required_lib(
            "sessionshift", url="https://github.com/sessionshift/sessionshift (the session_app role "
            "installs it on app hosts)"), exception=SESSIONSHIFT_IMPORT_ERROR)


def apply_profile(module, needs=("serializer",)):
    """Fill hash_method, serializer, header_style and pickle_protocol in module.params from the source
    profile (state_dir/profile.json); fail, naming both values, when a given one contradicts it."""
    params = module.params
    given = {setting: params.get(option) for option, setting in _PROFILE_OPTIONS.items()}
    try:
        resolved = resolve(params.get("state_dir"), params.get("session_dir"), given, style="module",
                           needs=needs)
    except ProfileError as exc:
        module.fail_json(msg=str(exc), changed=False)
    for option, setting in _PROFILE_OPTIONS.items():
        params[option] = getattr(resolved, setting)
    return resolved


def apply_decode_budget(module):
    """Set the process's decoding budget from the module's `decode_budget` option."""
    try:
        configure_budget(**(module.params.get("decode_budget") or {}))
    except ValueError as exc:
        module.fail_json(msg=f"decode_budget: {exc}", changed=False)


def redis_settings(params, module=None):
    """RedisSettings from the module's `redis` option.

    With *module*: settings that cannot be used fail the module in one line,
    and TLS without verification is warned about in the play's output.
    """
    settings = RedisSettings.from_mapping(dict(params["redis"]))
    if module is not None:
        try:
            settings.check()
        except ValueError as exc:
            module.fail_json(msg=f"redis: {exc}", changed=False)
        if settings.insecure:
            module.warn(INSECURE_TLS_WARNING)
    return settings


def key_layout(params):
    """The key layout in the generation given (``generation``), else the one the host's phase
    file names (``state_dir``), else 0."""
    if params.get("generation") is None and params.get("state_dir"):
        return host_layout(params["state_dir"], params["key_prefix"], params["hash_method"])
    return KeyLayout(prefix=params["key_prefix"], hash_name=params["hash_method"],
                     generation=params.get("generation") or 0)


def fail_on_redis(module, exc, **result):
    """fail_json for a Redis problem: endpoint, cause and fix in one line, no secrets."""
    if isinstance(exc, RedisUnavailable):
        module.fail_json(msg=str(exc), endpoint=exc.endpoint, cause=exc.cause, **result)
    module.fail_json(msg=f"{type(exc).__name__}: {exc}", exception=traceback.format_exc(), **result)


@contextlib.contextmanager
def redis_errors(module, settings, **result):
    """Fail the module on any Redis problem in the block: endpoint, cause and fix, no traceback.

    RedisUnavailable (the package's own, already explained) and redis-py's
    errors raised mid-run (a refused command, a connection lost) alike.
    """
    try:
        yield
    except RedisUnavailable as exc:
        fail_on_redis(module, exc, **result)
    except Exception as exc:
        if not type(exc).__module__.startswith("redis"):
            raise
        fail_on_redis(module, explain(exc, settings), **result)


@contextlib.contextmanager
def redis_client(module, settings, **result):
    """A connected client for the block (closed after it), with :func:`redis_errors` around it."""
    with redis_errors(module, settings, **result):
        client = connect(settings)
        try:
            yield client
        finally:
            client.close()
