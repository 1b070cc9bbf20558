"""The phased session interface's configuration, read from the app's settings.

Flask-Session 0.8's settings (SESSION_KEY_PREFIX, SESSION_FILE_DIR,
SESSION_PERMANENT, SESSION_ID_LENGTH, SESSION_USE_SIGNER,
SESSION_SERIALIZATION_FORMAT, SESSION_COOKIE_*) plus the SESSIONSHIFT_*
settings below. Everything here reads a plain mapping (``app.config`` is one),
so the configuration is checked without a Flask app: a setting that
contradicts the source profile, a bad fraction or a Redis URL with ``ssl_*``
options stops the app at start, with the values involved.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from collections.abc import Mapping
from typing import Any

from . import formats, safepickle, state
from . import profile as profiles
from .formats import SerializerName
from .redisconn import RedisSettings
from .store import DEFAULT_TOMBSTONE_TTL

log = logging.getLogger("sessionshift.flask")  # the interface's one logger, whichever part speaks

# Flask-Session 0.8 also takes "json", the format of the bytes its other backends store. The
# files are pickles whatever it says (Flask-Session's filesystem backend ignores it too), and
# SESSION_SERIALIZATION_FORMAT names the format of stock Flask-Session keys (phase 5's move
# option). msgpack holds every value JSON can, so a "json" app's stock keys are msgpack (which
# stock Flask-Session 0.8 configured for json also reads).
_SERIALIZATION_ALIASES: dict[str, SerializerName] = {"json": "msgpack"}


@dataclasses.dataclass
class InterfaceConfig:
    session_dir: str
    state_dir: str = state.DEFAULT_STATE_DIR
    key_prefix: str = formats.DEFAULT_PREFIX
    hash_name: formats.HashName = "sha256"
    serializer: SerializerName = formats.DEFAULT_SERIALIZER  # the hashed keys' values
    header_style: formats.HeaderStyle = "struct"  # of the files written
    pickle_protocol: int = formats.DEFAULT_PICKLE_PROTOCOL  # of the files and pickle values written
    stock_serializer: SerializerName = formats.STOCK_SERIALIZER  # stock Flask-Session keys (phase 5)
    permanent: bool = True
    sid_length: int = 32
    use_signer: bool = False
    file_mode: int = 0o600
    redis: dict | None = None
    emergency_file_fallback: bool = False
    wait_replicas: int = 0
    wait_timeout_ms: int = 100  # how long a write waits for its replicas before it is refused
    move_to_stock_keys: bool = False
    shadow_read_rate: float = 0.0
    tombstone_ttl: int = DEFAULT_TOMBSTONE_TTL
    phase_check_interval: float = 1.0
    redis_retry_after: float = 1.0  # how long to skip Redis after it failed
    replay_interval: float = 5.0  # opportunistic journal replay, per process
    replay_batch: int = 200
    metrics_path: str | None = "/metrics"
    # Endpoints that never use the session (health checks, metrics): served even
    # when the session store is unavailable.
    sessionless_endpoints: tuple[str, ...] = ("static", "healthz", "sessionshift_metrics")

    @classmethod
    def from_app(cls, app) -> InterfaceConfig:
        """The configuration of a Flask *app* (its ``app.config``)."""
        return cls.from_mapping(app.config)

    @classmethod
    def from_mapping(cls, c: Mapping[str, Any]) -> InterfaceConfig:
        fmt = c.get("SESSION_SERIALIZATION_FORMAT", formats.STOCK_SERIALIZER)
        fmt = _SERIALIZATION_ALIASES.get(fmt, fmt)
        if fmt not in formats.SERIALIZERS:
            raise ValueError(f"SESSION_SERIALIZATION_FORMAT={fmt!r}: sessionshift supports "
                             f"{', '.join([*formats.SERIALIZERS, *_SERIALIZATION_ALIASES])} "
                             "(pickle for Flask-Session <= 0.6 values)")
        session_dir = c.get("SESSION_FILE_DIR") or os.path.join(os.getcwd(), "flask_session")
        state_dir = c.get("SESSIONSHIFT_STATE_DIR", state.DEFAULT_STATE_DIR)
        settings = _profile_settings(c, state_dir, session_dir)
        rate = float(c.get("SESSIONSHIFT_SHADOW_READ_RATE", 0.0))
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"SESSIONSHIFT_SHADOW_READ_RATE={rate}: a fraction between 0 and 1")
        wait_ms = int(c.get("SESSIONSHIFT_WAIT_TIMEOUT_MS", 100))
        redis_config = c.get("SESSIONSHIFT_REDIS") or {}
        # Limits on decoding one session (docs/security.md); unset: the environment's or the defaults.
        safepickle.configure(**{name: c.get(f"SESSIONSHIFT_{name.upper()}")
                                for name in safepickle.Budget.__dataclass_fields__})
        if redis_config:  # a URL with ssl_* options or a missing CA file stops the app at start
            RedisSettings.from_mapping(redis_config).check()
        socket_timeout = float(redis_config.get("socket_timeout") or RedisSettings.socket_timeout)
        if int(c.get("SESSIONSHIFT_WAIT_REPLICAS", 0)) and wait_ms >= 1000 * socket_timeout:
            raise ValueError(f"SESSIONSHIFT_WAIT_TIMEOUT_MS={wait_ms} must be shorter than the Redis "
                             f"socket_timeout ({socket_timeout} s), or every unconfirmed write times out "
                             "the connection instead")
        return cls(
            session_dir=session_dir,
            state_dir=state_dir,
            key_prefix=c.get("SESSION_KEY_PREFIX", formats.DEFAULT_PREFIX),
            hash_name=settings.hash_name,
            serializer=settings.serializer,
            header_style=settings.header_style,
            pickle_protocol=settings.pickle_protocol,
            stock_serializer=fmt,
            permanent=bool(c.get("SESSION_PERMANENT", True)),
            sid_length=int(c.get("SESSION_ID_LENGTH", 32)),
            use_signer=bool(c.get("SESSION_USE_SIGNER", False)),
            file_mode=int(c.get("SESSION_FILE_MODE", 0o600)),
            redis=c.get("SESSIONSHIFT_REDIS"),
            emergency_file_fallback=bool(c.get("SESSIONSHIFT_EMERGENCY_FILE_FALLBACK", False)),
            wait_replicas=int(c.get("SESSIONSHIFT_WAIT_REPLICAS", 0)),
            wait_timeout_ms=wait_ms,
            move_to_stock_keys=bool(c.get("SESSIONSHIFT_MOVE_TO_STOCK_KEYS", False)),
            shadow_read_rate=rate,
            tombstone_ttl=int(c.get("SESSIONSHIFT_TOMBSTONE_TTL", DEFAULT_TOMBSTONE_TTL)),
            phase_check_interval=float(c.get("SESSIONSHIFT_PHASE_CHECK_INTERVAL", 1.0)),
            redis_retry_after=float(c.get("SESSIONSHIFT_REDIS_RETRY_AFTER", 1.0)),
            replay_interval=float(c.get("SESSIONSHIFT_REPLAY_INTERVAL", 5.0)),
            metrics_path=c.get("SESSIONSHIFT_METRICS_PATH", "/metrics"),
            sessionless_endpoints=tuple(c.get("SESSIONSHIFT_SESSIONLESS_ENDPOINTS",
                                              cls.sessionless_endpoints)),
        )


def _profile_settings(c: Mapping[str, Any], state_dir: str, session_dir: str) -> profiles.Resolved:
    """The source profile's settings, SESSIONSHIFT_* overrides checked against it."""
    given = {"hash_name": c.get("SESSIONSHIFT_HASH_METHOD"), "serializer": c.get("SESSIONSHIFT_SERIALIZER"),
             "header_style": c.get("SESSIONSHIFT_HEADER_STYLE"),
             "pickle_protocol": c.get("SESSIONSHIFT_PICKLE_PROTOCOL")}
    for name, allowed in (("hash_name", formats.HASH_NAMES), ("serializer", formats.SERIALIZERS),
                          ("header_style", formats.HEADER_STYLES), ("pickle_protocol", range(0, 6))):
        if given[name] is not None and given[name] not in allowed:
            raise ValueError(f"{profiles.OPTION_NAMES['flask'][name]}={given[name]!r}: expected one of "
                             f"{', '.join(map(str, allowed))}")
    settings = profiles.resolve(state_dir, session_dir, given, style="flask")
    log.info("session files: %s names, %s header, pickle protocol %s; Redis values: %s (%s)",
             settings.hash_name, settings.header_style, settings.pickle_protocol, settings.serializer,
             ", ".join(f"{name} from {source}" for name, source in settings.sources.items()))
    return settings


def load_settings_file(path: str) -> dict[str, Any]:
    """The settings in the JSON object at *path* (the file the app_adopt role writes)."""
    try:
        with open(path, encoding="utf-8") as handle:
            settings = json.load(handle)
    except (OSError, ValueError) as exc:
        raise ValueError(f"sessionshift settings file {path}: {exc} (the app_adopt role writes it; "
                         "run it, or fix the path given to PhasedSession)") from None
    if not isinstance(settings, dict):
        raise ValueError(f"sessionshift settings file {path}: not a JSON object")
    return settings


def log_ignored_settings(config: Mapping[str, Any]) -> None:
    """Say at start which Flask-Session settings the interface does not follow, and why."""
    threshold = config.get("SESSION_FILE_THRESHOLD")
    if threshold is not None:
        log.warning("SESSION_FILE_THRESHOLD=%s is ignored: every session is kept until it expires "
                    "(Flask-Session's filesystem backend deletes sessions beyond the threshold, "
                    "logging their users out)", threshold)
    else:
        log.info("no file threshold: every session is kept until it expires (Flask-Session's "
                 "filesystem backend deletes sessions beyond 500 by default)")
    if config.get("SESSION_COOKIE_PARTITIONED"):
        log.warning("SESSION_COOKIE_PARTITIONED is ignored, as Flask-Session 0.8 ignores it: "
                    "the session cookie is not partitioned")
