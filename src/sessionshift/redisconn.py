"""One way to connect to Redis / ElastiCache, and errors an operator can act on.

TLS verification is on by default (ElastiCache in-transit encryption uses
certificates from a public CA; the local stand-in uses a throw-away CA given
as ``ca_file``). Retries with backoff cover transient faults only (a dropped
connection, a timeout, a failover in progress); a wrong password or an
untrusted certificate fails at once with a one-line cause.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import os
import socket
import ssl
import urllib.parse
from collections.abc import Callable
from typing import Any

import redis
import redis.cluster
from redis.backoff import ExponentialWithJitterBackoff
from redis.driver_info import DriverInfo
from redis.exceptions import (
    AuthenticationError,
    AuthenticationWrongNumberOfArgsError,
    BusyLoadingError,
    ClusterDownError,
    NoScriptError,
    ResponseError,
    TryAgainError,
)
from redis.exceptions import (
    ConnectionError as RedisConnError,
)
from redis.exceptions import (
    TimeoutError as RedisTimeoutError,
)
from redis.retry import Retry

from .errors import SessionshiftError

RedisClient = redis.Redis | redis.cluster.RedisCluster
log = logging.getLogger("sessionshift.redis")

INSECURE_TLS_WARNING = ("TLS certificate verification is OFF (verify_tls: false / --no-verify-tls): "
                        "anyone on the network path can impersonate Redis and read every session. "
                        "Use it only for a throw-away test setup; the phase-2 gate refuses it")

# Transient: worth a retry. Authentication errors subclass ConnectionError in
# redis-py, so they are excluded explicitly (see _Retry).
TRANSIENT_ERRORS: tuple[type[Exception], ...] = (
    RedisConnError, RedisTimeoutError, BusyLoadingError, ClusterDownError, TryAgainError,
    ConnectionResetError,
)
PERMANENT_ERRORS: tuple[type[Exception], ...] = (AuthenticationError, AuthenticationWrongNumberOfArgsError)


class RedisUnavailable(SessionshiftError):
    """Redis could not be used; the message names the endpoint, the cause and a fix."""

    def __init__(self, endpoint: str, cause: str, hint: str = ""):
        self.endpoint = endpoint
        self.cause = cause
        self.hint = hint
        message = f"Redis at {endpoint}: {cause}"
        super().__init__(message + (f" ({hint})" if hint else ""))


@dataclasses.dataclass(frozen=True)
class RedisSettings:
    """Everything needed to reach one Redis deployment.

    ``url`` is ``rediss://host:port/db`` for TLS (``redis://`` for plain TCP,
    which ElastiCache with in-transit encryption refuses). User and password
    may come in the URL or separately; separate values win.
    """

    url: str = dataclasses.field(default="rediss://127.0.0.1:6379/0", repr=False)  # may hold a password
    username: str | None = None
    password: str | None = dataclasses.field(default=None, repr=False)
    # Or the password (the ElastiCache AUTH token) is the SecretString of this Secrets Manager
    # secret (name or ARN), read when the settings are made (from_mapping), with boto3's
    # credentials: on an app host, its instance profile, which the elasticache role lets read it.
    password_secret: str | None = None
    secret_region: str | None = None
    secret_endpoint_url: str | None = None  # a moto server in tests
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    verify_tls: bool = True
    cluster: bool = False
    connect_timeout: float = 5.0
    socket_timeout: float = 5.0
    retries: int = 3
    backoff_base: float = 0.05
    backoff_cap: float = 2.0

    @property
    def endpoint(self) -> str:
        parts = urllib.parse.urlsplit(self.url)
        return f"{parts.scheme}://{parts.hostname}:{parts.port or 6379}"

    @property
    def tls(self) -> bool:
        return urllib.parse.urlsplit(self.url).scheme == "rediss"

    @property
    def insecure(self) -> bool:
        """TLS without certificate verification."""
        return self.tls and not self.verify_tls

    def check(self) -> None:
        """ValueError, in one line, for settings that cannot be used as given.

        redis-py lets URL query options override keyword arguments, so
        ``?ssl_cert_reqs=none`` or ``?ssl_check_hostname=false`` would turn
        verification off behind ``verify_tls``: every ``ssl_*`` option in the
        URL is refused. Certificate files are checked here so that a missing
        one is named, instead of surfacing as a connection failure.
        """
        parts = urllib.parse.urlsplit(self.url)
        if parts.scheme not in ("redis", "rediss"):
            raise ValueError(f"Redis URL scheme {parts.scheme!r}: use rediss:// (TLS) or redis://")
        options = sorted({name for name, _ in urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
                          if name.lower().startswith("ssl")})
        if options:
            raise ValueError(f"the Redis URL sets {', '.join(options)}: TLS settings cannot come from the "
                             "URL (they would override verify_tls); remove them and use ca_file, cert_file, "
                             "key_file or, for a throw-away test setup only, verify_tls: false")
        for name in ("ca_file", "cert_file", "key_file"):
            path = getattr(self, name)
            if path and not os.path.isfile(path):
                what = "the CA bundle that signed the Redis certificate" if name == "ca_file" else "the file"
                raise ValueError(f"{name} {path} does not exist or is not a file; pass the path of {what}")
            if path and not os.access(path, os.R_OK):
                raise ValueError(f"{name} {path} is not readable by this user; fix its permissions")

    @classmethod
    def from_mapping(cls, values: dict[str, Any]) -> RedisSettings:
        """Settings from a dict (module arguments, a YAML file), ignoring unknown keys.

        With ``password_secret`` and no ``password`` the password is read from Secrets Manager
        now (ValueError, in one line, when it cannot be).
        """
        names = {f.name for f in dataclasses.fields(cls)}
        kwargs = {k: v for k, v in values.items() if k in names and v is not None}
        if kwargs.get("password_secret") and kwargs.get("password") is None:
            kwargs["password"] = read_secret(kwargs["password_secret"], kwargs.get("secret_region"),
                                             kwargs.get("secret_endpoint_url"))
        return cls(**kwargs)


def read_secret(secret_id: str, region: str | None = None, endpoint_url: str | None = None) -> str:
    """The SecretString of a Secrets Manager secret (the AUTH token), with boto3's credential chain."""
    import boto3
    import botocore.exceptions

    try:
        client = boto3.client("secretsmanager", region_name=region, endpoint_url=endpoint_url)
        return client.get_secret_value(SecretId=secret_id)["SecretString"]
    except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError, KeyError) as exc:
        raise ValueError(f"cannot read the Redis password from the Secrets Manager secret {secret_id!r}: "
                         f"{exc} (on an app host its IAM role needs the policy the elasticache role makes, "
                         "elasticache_app_iam_role_name)") from None


class _Retry(Retry):
    """redis-py's Retry, but never for authentication failures."""

    def call_with_retry(self, do, fail, is_retryable=None, with_failure_count=False):
        def retryable(error: Exception) -> bool:
            if isinstance(error, PERMANENT_ERRORS):
                return False
            return is_retryable is None or is_retryable(error)

        return super().call_with_retry(do, fail, retryable, with_failure_count)


class _SharedContextSSLConnection(redis.SSLConnection):
    """redis-py's SSLConnection, wrapping its socket with a TLS context made once (:func:`tls_context`).

    redis-py builds a context per connection with ``ssl.create_default_context()``, which
    loads the system CA store (about 20 ms of CPU) even when a CA bundle is given: a cost in
    every forked worker and every new pooled connection. The ``ssl_*`` arguments still reach
    SSLConnection, so redis-py describes the connection as before; a context that cannot be
    made (an unreadable bundle) fails the connection where redis-py's own would.
    """

    def __init__(self, *, tls_settings: RedisSettings, **kwargs):
        self._tls_settings = tls_settings
        super().__init__(**kwargs)

    def _wrap_socket_with_ssl(self, sock):
        return tls_context(self._tls_settings).wrap_socket(sock, server_hostname=self.host)


# redis-py 8's hook; without it (another redis-py) connections build their own context, as before.
_CAN_SHARE_CONTEXT = callable(getattr(redis.SSLConnection, "_wrap_socket_with_ssl", None))


def tls_context(settings: RedisSettings) -> ssl.SSLContext:
    """The TLS context of *settings*' connections, made once per process and per version of its
    files (a rotated CA bundle is read again); workers forked after it was made inherit it.

    The certificate and the host name are checked unless ``verify_tls`` is off. A CA bundle,
    when given, is what is trusted (as with ``redis-cli --cacert``); else the system store.
    """
    files = (settings.ca_file, settings.cert_file, settings.key_file)
    return _tls_context(settings.verify_tls, files, tuple(_file_version(path) for path in files))


def prepare_for_workers(settings: RedisSettings) -> None:
    """Make, before worker processes fork, what each of their connections would otherwise make
    on its own: the TLS context, and the IDNA codec every host name is encoded with (imported
    on first use, about 5 ms). A context that cannot be made is left for the workers' connections
    to report, with the endpoint."""
    "".encode("idna")
    if settings.tls and _CAN_SHARE_CONTEXT:
        with contextlib.suppress(OSError):  # ssl.SSLError included
            tls_context(settings)


def _file_version(path: str | None) -> tuple[int, ...] | None:
    if not path:
        return None
    try:
        info = os.stat(path)
    except OSError:
        return None  # the context's own load names the file
    return info.st_ino, info.st_size, info.st_mtime_ns


@functools.lru_cache(maxsize=4)
def _tls_context(verify: bool, files: tuple[str | None, str | None, str | None],
                 _versions: tuple) -> ssl.SSLContext:
    ca_file, cert_file, key_file = files
    if verify:
        context = ssl.create_default_context(cafile=ca_file)
    else:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False  # first: ssl refuses CERT_NONE while it is on
        context.verify_mode = ssl.CERT_NONE
    if cert_file or key_file:
        context.load_cert_chain(certfile=cert_file, keyfile=key_file)
    return context


def _connection_kwargs(settings: RedisSettings) -> dict[str, Any]:
    kwargs: dict[str, Any] = {
        # CLIENT SETINFO's version, given: redis-py would look it up in the installed
        # distributions' metadata (importlib.metadata and the email parser) per connection.
        "driver_info": DriverInfo(lib_version=redis.__version__),
        "socket_connect_timeout": settings.connect_timeout,
        "socket_timeout": settings.socket_timeout,
        "retry": _Retry(ExponentialWithJitterBackoff(cap=settings.backoff_cap,
                                                     base=settings.backoff_base),
                        settings.retries, supported_errors=TRANSIENT_ERRORS),
        "health_check_interval": 30,
    }
    if settings.username is not None:
        kwargs["username"] = settings.username
    if settings.password is not None:
        kwargs["password"] = settings.password
    if settings.tls:
        kwargs["ssl_cert_reqs"] = ssl.CERT_REQUIRED if settings.verify_tls else ssl.CERT_NONE
        kwargs["ssl_check_hostname"] = settings.verify_tls
        if settings.ca_file:
            kwargs["ssl_ca_certs"] = settings.ca_file
        if settings.cert_file:
            kwargs["ssl_certfile"] = settings.cert_file
            kwargs["ssl_keyfile"] = settings.key_file
    return kwargs


def client_from_settings(settings: RedisSettings) -> RedisClient:
    """A client (standalone or cluster) for *settings*; does not connect yet.

    Raises ValueError for settings :meth:`RedisSettings.check` refuses.
    """
    settings.check()
    if settings.insecure:
        log.warning("%s (Redis at %s)", INSECURE_TLS_WARNING, settings.endpoint)
    kwargs = _connection_kwargs(settings)
    if settings.cluster:
        # RedisCluster retries at the cluster level (MOVED, failover); the
        # per-node connections must not retry on their own as well.
        retry = kwargs.pop("retry")
        kwargs.pop("health_check_interval")
        return redis.cluster.RedisCluster.from_url(settings.url, retry=retry,
                                                   require_full_coverage=True, **kwargs)
    if settings.tls and _CAN_SHARE_CONTEXT:
        kwargs.update(connection_class=_SharedContextSSLConnection, tls_settings=settings)
    return redis.Redis.from_url(settings.url, **kwargs)


def connect(settings: RedisSettings, *, check: bool = True) -> RedisClient:
    """A client for *settings*, pinged once so that bad settings fail here, clearly."""
    try:
        settings.check()
    except ValueError as exc:
        raise RedisUnavailable(settings.endpoint, str(exc)) from None
    try:
        if check and settings.tls:
            _refuse_plain_server(settings)
        client = client_from_settings(settings)
        if check:
            client.ping()
    except Exception as exc:  # classified and re-raised; nothing is swallowed
        raise explain(exc, settings) from exc
    return client


def _refuse_plain_server(settings: RedisSettings) -> None:
    """RedisUnavailable at once when a rediss:// endpoint answers in plain RESP.

    A plain Redis takes the TLS ClientHello for an unfinished command and
    waits, so the handshake only ends at the connect timeout, once per retry
    (about 20 s by default), and reads as a network timeout. A plain-text PING
    tells the two apart in one round trip: a plain Redis answers ``+PONG`` or
    ``-NOAUTH``, a TLS server closes the connection or sends a TLS alert.
    """
    parts = urllib.parse.urlsplit(settings.url)
    try:
        with socket.create_connection((parts.hostname, parts.port or 6379),
                                      timeout=min(settings.connect_timeout, 2.0)) as sock:
            sock.sendall(b"PING\r\n")
            answer = sock.recv(16)
    except OSError:
        return  # not reachable, or not answering in plain text: the real connection says why
    if answer[:1] in (b"+", b"-"):
        raise RedisUnavailable(settings.endpoint, "the server speaks plain Redis, not TLS",
                               "use redis:// for this server, or enable TLS on it (ElastiCache: "
                               "in-transit encryption) and keep rediss://")


def client_endpoint(client: redis.Redis) -> str:
    """``rediss://host:port`` of a plain client, as :attr:`RedisSettings.endpoint` names it."""
    pool = client.connection_pool
    kwargs = pool.connection_kwargs
    scheme = "rediss" if issubclass(pool.connection_class, redis.SSLConnection) else "redis"
    return f"{scheme}://{kwargs.get('host', 'localhost')}:{kwargs.get('port', 6379)}"


def explain(exc: BaseException, settings: RedisSettings) -> RedisUnavailable:
    """Turn a redis-py / ssl / socket error into a one-line cause with a fix."""
    endpoint = settings.endpoint
    text = " ".join(str(exc).split())
    chain = _chain_text(exc)
    if isinstance(exc, RedisUnavailable):
        return exc
    if isinstance(exc, AuthenticationError) or "WRONGPASS" in chain or "NOAUTH" in chain:
        who = f"user '{settings.username}'" if settings.username else "the default user"
        return RedisUnavailable(endpoint, f"authentication failed for {who}",
                                "check the password / AUTH token and the ACL user")
    lowered = chain.lower()
    if (("hostname" in lowered or "ip address" in lowered) and "mismatch" in lowered) or (
            "doesn't match" in lowered):
        host = urllib.parse.urlsplit(settings.url).hostname
        return RedisUnavailable(endpoint, f"TLS certificate does not match the host name {host!r} "
                                "(the certificate is trusted, the name is not in it)",
                                "connect with a name the certificate lists (its subjectAltName), "
                                "e.g. the ElastiCache endpoint name rather than an IP or alias")
    if "CERTIFICATE_VERIFY_FAILED" in chain or "certificate verify failed" in chain:
        return RedisUnavailable(endpoint, "TLS certificate not trusted",
                                "pass the CA that signed the server certificate as ca_file")
    if "Connection refused" in chain or "ECONNREFUSED" in chain or "Errno 111" in chain:
        return RedisUnavailable(endpoint, "connection refused",
                                "is Redis running and is the port open to this host?")
    if "WRONG_VERSION_NUMBER" in chain or "record layer failure" in chain or (
            not settings.tls and "Connection reset" in chain):
        return RedisUnavailable(endpoint, "TLS mismatch between client and server",
                                "use rediss:// for a TLS-only Redis, redis:// otherwise")
    if isinstance(exc, RedisTimeoutError) or "Timeout" in chain or "timed out" in chain:
        return RedisUnavailable(endpoint, "timed out",
                                "check the network path, security group and that Redis is not paused")
    if isinstance(exc, ResponseError):
        return RedisUnavailable(endpoint, f"refused a command: {text}")
    if isinstance(exc, RedisConnError):
        return RedisUnavailable(endpoint, f"connection failed: {text}")
    return RedisUnavailable(endpoint, f"{type(exc).__name__}: {text}")


def _chain_text(exc: BaseException) -> str:
    texts, seen = [], set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        texts.append(f"{type(current).__name__}: {current}")
        current = current.__cause__ or current.__context__
    return " | ".join(texts)


def command_started(client: redis.Redis, args: list[bytes | str | int]) -> Callable[[], Any]:
    """One command on one Redis, sent now; the returned call reads its reply (once).

    The request is serialised here in one join: redis-py's generic packing
    costs microseconds per argument, as much as reading a session file, and a
    batch command is thousands of arguments. Errors are redis-py's own (the
    connection's parser raises them).

    The connection is held from the send to the reply, so a caller can do other
    work (read the next batch's files) while Redis runs the command. A failure
    to send is raised here; a failed reply disconnects the connection (never a
    half-read one back in the pool), and either way it goes back to the pool.
    """
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        encoded = arg if isinstance(arg, bytes) else arg.encode() if isinstance(arg, str) else b"%d" % arg
        parts.append(b"$%d\r\n%s\r\n" % (len(encoded), encoded))
    return packed_started(client, b"".join(parts))


def _sent(client: redis.Redis, payload: bytes):
    """(pool, connection): *payload* sent on a connection taken from the pool and held for its
    replies. A failure to send disconnects it, gives it back and is raised."""
    pool = client.connection_pool
    connection = pool.get_connection()
    try:
        connection.send_packed_command([payload])
    except BaseException:
        connection.disconnect()
        pool.release(connection)
        raise
    return pool, connection


def packed_started(client: redis.Redis, payload: bytes) -> Callable[[], Any]:
    """:func:`command_started` of a command already in the Redis protocol (*payload*)."""
    pool, connection = _sent(client, payload)

    def reply() -> Any:
        try:
            return connection.read_response()
        except ResponseError:
            raise  # a complete error reply: the connection is still in step
        except BaseException:
            connection.disconnect()  # never hand a half-read connection back to the pool
            raise
        finally:
            pool.release(connection)
    return reply


def lines_started(client: redis.Redis, payload: bytes, count: int) -> Callable[[], bytes]:
    """*count* pipelined commands (*payload*, in the Redis protocol) whose replies are each one
    line (status, nil, integer or error: e.g. ``SET`` without ``GET``), sent now; the returned
    call reads the replies raw, unparsed, and gives their bytes.

    As :func:`packed_started`, but the replies skip redis-py's parser: a reply object per
    command cost the client more than packing the command. The connection comes from the
    pool with nothing unread (redis-py checks), so the socket's next bytes are these replies.
    """
    pool, connection = _sent(client, payload)

    def reply() -> bytes:
        try:
            sock, chunks, lines, cr_last = connection._sock, [], 0, False
            while lines < count:
                chunk = sock.recv(65536)
                if not chunk:
                    raise RedisConnError(f"Connection closed by server, {count - lines} replies due")
                chunks.append(chunk)
                lines += chunk.count(b"\r\n") + (cr_last and chunk[:1] == b"\n")
                cr_last = chunk[-1:] == b"\r"
            if lines > count:
                raise RedisConnError(f"{lines} reply lines where {count} were due: out of step")
            return b"".join(chunks)
        except BaseException as exc:
            connection.disconnect()  # never hand a half-read connection back to the pool
            if isinstance(exc, socket.timeout):
                raise RedisTimeoutError(f"Timeout reading from {client_endpoint(client)}") from exc
            if isinstance(exc, OSError):
                raise RedisConnError(f"Error reading from {client_endpoint(client)}: {exc}") from exc
            raise
        finally:
            pool.release(connection)
    return reply


def pipeline_with_script(client: redis.Redis, script, fill: Callable[[Any], None]) -> list:
    """The replies of one pipeline that *fill* builds, its script calls sent as ``EVALSHA``.

    A script handed to a redis-py pipeline costs a ``SCRIPT EXISTS`` round trip
    on every execute; so *fill* calls ``pipe.evalsha(script.sha, ...)``, and the
    script is loaded only when Redis answers NOSCRIPT (a restarted or
    failed-over Redis), then the pipeline runs again. Any error reply is raised.
    """
    for _attempt in range(2):
        with client.pipeline(transaction=False) as pipe:
            fill(pipe)
            replies = pipe.execute(raise_on_error=False)
        if not any(isinstance(reply, NoScriptError) for reply in replies):
            break
        client.script_load(script.script)
    for reply in replies:
        if isinstance(reply, Exception):
            raise reply
    return replies
