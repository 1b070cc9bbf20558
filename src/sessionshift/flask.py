"""A Flask session interface that follows the host's migration phase.

One line in the app::

    from sessionshift.flask import PhasedSession
    PhasedSession(app)

It reads Flask-Session 0.8's settings (SESSION_KEY_PREFIX, SESSION_FILE_DIR,
SESSION_PERMANENT, SESSION_ID_LENGTH, SESSION_USE_SIGNER,
SESSION_SERIALIZATION_FORMAT, PERMANENT_SESSION_LIFETIME, SESSION_COOKIE_*)
plus the SESSIONSHIFT_* settings (:mod:`.appconfig`), and serves each
request from the stores its phase names (see ``phases.SPECS``):

1 file         file only, in the source's own format (header style, pickle protocol)
2 dual_write   file, then Redis (a failed Redis write is journaled); read the file,
               with a sampled shadow read of Redis that only counts mismatches
3 redis_read   file, then Redis; read Redis, else the file (copied to Redis if absent)
4 redis_only   Redis (emergency file fallback if enabled, else 503); read Redis, else
               the legacy file (copied). A session written in phase 4 loses its legacy
               file, so it can never be served from that older copy again
5 redis        Redis only; optionally moves each session to stock Flask-Session's key

A session is given a new sid only when it is missing from every store its
phase reads; a Redis ERROR is never taken for a miss (Flask-Session 0.7+ trap).

How files are named and written, and how sessions are held in Redis, come from
the source profile recorded in ``SESSIONSHIFT_STATE_DIR/profile.json``
(:mod:`.profile`): a SESSIONSHIFT_HASH_METHOD, _HEADER_STYLE,
_PICKLE_PROTOCOL or _SERIALIZER that contradicts it stops the app at start,
with both values. Files written in phases 1-4 are what the app's original
library reads; the Redis value is the exact pickle of the session.
SESSION_SERIALIZATION_FORMAT is the format of stock Flask-Session keys only
(phase 5's move option).

The phase comes from ``SESSIONSHIFT_STATE_DIR/phase.json`` (stat'ed at most
once a second), so a flip needs no restart.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import secrets
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import flask
from flask.sessions import SessionInterface
from flask_session.base import ServerSideSession
from itsdangerous import BadSignature, Signer, want_bytes
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from . import formats, metrics
from .appconfig import InterfaceConfig, load_settings_file, log_ignored_settings
from .journal import Journal, ReplayResult, read_live_file
from .journal import replay_host as replay_journal  # noqa: F401 (for tools: one import)
from .keys import KeyLayout
from .phasefile import PhaseWatcher
from .phases import Phase
from .redisconn import RedisSettings, client_from_settings
from .store import CopyResult, ReplicationShortfall, SessionStore

log = logging.getLogger("sessionshift.flask")

PHASE_HEADER = "X-Session-Phase"
SOURCE_HEADER = "X-Session-Source"
_UNAVAILABLE_KEY = "sessionshift.unavailable"  # request.environ: why no store could serve the session


class SessionStoreUnavailable(Exception):
    """No store this phase allows could serve the session: the request gets a 503."""


class _CircuitOpen(RedisConnectionError):
    """Redis failed moments ago: skip it for a short while instead of waiting on timeouts."""


class PhasedSessionData(ServerSideSession):
    """Flask-Session's server-side session plus where this request found it."""

    def __init__(self, initial=None, sid=None, permanent=None, *, phase=Phase.FILE, source="none"):
        super().__init__(initial, sid=sid, permanent=permanent)
        self.phase = phase
        self.source = source
        self.unavailable: str | None = None


class PhasedSessionInterface(SessionInterface):
    session_class = PhasedSessionData

    def __init__(self, config: InterfaceConfig, redis_client=None):
        self.config = config
        self.layout = KeyLayout(config.key_prefix, config.hash_name)
        self.format = formats.value_format(config.serializer, config.pickle_protocol)
        self.file_format = formats.value_format("pickle", config.pickle_protocol)
        self.stock_format = formats.stock_format(config.stock_serializer, config.pickle_protocol)
        os.makedirs(config.session_dir, exist_ok=True)
        self.watcher = PhaseWatcher(config.state_dir, config.phase_check_interval,
                                    on_error=self._phase_file_error)
        self.journal = Journal(config.state_dir, config.session_dir)
        self._given_client = redis_client
        self._stores: dict[tuple[int, int], tuple[SessionStore, SessionStore]] = {}
        self._down_until = 0.0
        self._next_replay = 0.0
        self._replay_lock = threading.Lock()

    @classmethod
    def from_app(cls, app: flask.Flask) -> PhasedSessionInterface:
        """The interface for *app*'s config, with its request hooks registered."""
        interface = cls(InterfaceConfig.from_app(app), redis_client=app.config.get("SESSION_REDIS"))
        log_ignored_settings(app.config)
        interface.register(app)
        return interface

    def register(self, app: flask.Flask) -> None:
        app.before_request(self._refuse_unavailable)
        if self.config.metrics_path:
            app.add_url_rule(self.config.metrics_path, "sessionshift_metrics", metrics_view)

    # ------------------------------------------------------------------ Redis plumbing
    def _store(self, phase: Phase) -> SessionStore:
        """The store of this process (clients are made after gunicorn forks), in the generation
        the phase file names: copies of any other generation are never read or written."""
        pid, generation = os.getpid(), self.watcher.generation
        stores = self._stores.get((pid, generation))
        if stores is None:
            client = self._client(pid)
            layout = self.layout.in_generation(generation)
            plain = SessionStore(client, layout, self.config.tombstone_ttl)
            waiting = SessionStore(client, layout, self.config.tombstone_ttl,
                                   wait_replicas=self.config.wait_replicas,
                                   wait_timeout_ms=self.config.wait_timeout_ms)
            stores = self._stores[(pid, generation)] = (plain, waiting)
        # WAIT for replicas once the app reads Redis first (phase 3: an unconfirmed write is
        # journaled, so its file is read until the replay) and when Redis is the only copy.
        return stores[1] if phase >= Phase.REDIS_READ else stores[0]

    def _client(self, pid: int):
        """This process's Redis client, shared by the stores of every generation."""
        for (owner, _generation), (store, _waiting) in self._stores.items():
            if owner == pid:
                return store.client
        if self._given_client is not None:
            return self._given_client
        if self.config.redis:
            return client_from_settings(RedisSettings.from_mapping(self.config.redis))
        raise RedisConnectionError("no Redis configured: set SESSIONSHIFT_REDIS before phase 2")

    def _redis(self, phase: Phase, op: str, call: Callable[[SessionStore], Any]) -> Any:
        """Run one store call, timed; a failure opens the circuit for a short while."""
        if time.monotonic() < self._down_until:
            raise _CircuitOpen(f"Redis failed less than {self.config.redis_retry_after}s ago")
        try:
            with metrics.LATENCY.labels("redis", op).time():
                return call(self._store(phase))
        except ReplicationShortfall:
            raise  # Redis answered: a lagging replica is no reason to stop asking it
        except RedisError:
            self._down_until = time.monotonic() + self.config.redis_retry_after
            raise

    def _redis_get(self, phase: Phase, file_name: str) -> bytes | None:
        return self._redis(phase, "read", lambda store: store.get(file_name))

    # ------------------------------------------------------------------ file plumbing
    def _file_path(self, file_name: str) -> str:
        return os.path.join(self.config.session_dir, file_name)

    def _read_file(self, phase: Phase, file_name: str) -> dict | None:
        """The live file session's dict, or None (missing, expired, or unusable: counted)."""
        session = self._read_file_session(phase, file_name)
        return None if session is None else session.data

    def _read_file_session(self, phase: Phase, file_name: str) -> formats.FileSession | None:
        try:
            with metrics.LATENCY.labels("file", "read").time():
                return read_live_file(self._file_path(file_name))
        except formats.SessionFileError as exc:
            # Corrupt or hostile (never unpickled unrestricted): treated as absent, like cachelib.
            metrics.READ_ERRORS.labels(phase.label, "file").inc()
            log.warning("ignoring session file: %s", exc)
            return None

    def _write_file(self, phase: Phase, file_name: str, data: dict, expiry: int,
                    payload: bytes | None = None) -> None:
        """Write the file as the app's original library does (its header style and protocol)."""
        try:
            with metrics.LATENCY.labels("file", "write").time():
                formats.write_session_file(self.config.session_dir, file_name, data, expiry,
                                           header_style=self.config.header_style,
                                           protocol=self.config.pickle_protocol, payload=payload,
                                           mode=self.config.file_mode)
        except OSError:
            metrics.WRITE_ERRORS.labels(phase.label, "file", "write").inc()
            raise
        metrics.WRITES.labels(phase.label, "file", "write").inc()

    def _remove_file(self, phase: Phase, file_name: str) -> None:
        try:
            os.unlink(self._file_path(file_name))
        except FileNotFoundError:
            return
        metrics.WRITES.labels(phase.label, "file", "delete").inc()

    # ------------------------------------------------------------------ journal
    def _journal(self, phase: Phase, file_name: str, op: str, exc: Exception) -> None:
        metrics.WRITE_ERRORS.labels(phase.label, "redis", op).inc()
        self.journal.record(file_name, op, phase.label, f"{type(exc).__name__}: {exc}")
        metrics.JOURNAL_APPENDS.inc()

    def replay_journal(self, limit: int | None = None, only: str | None = None) -> ReplayResult:
        phase = self.watcher.current()
        store = self._store(phase)
        result = self.journal.replay(store, serializer=self.config.serializer,
                                     protocol=self.config.pickle_protocol,
                                     remove_file_after=phase >= Phase.REDIS_ONLY, limit=limit, only=only)
        _count_replay(result)
        metrics.JOURNAL_DEPTH.set(result.remaining)
        if result.redis_error:
            self._down_until = time.monotonic() + self.config.redis_retry_after
        return result

    def _replay_pending(self, phase: Phase, file_name: str) -> bool:
        """Replay this session's journal entry before reading Redis; False if Redis may still be older."""
        if not self.journal.pending(file_name):
            return True
        # Another worker may be replaying it right now: give it a moment to finish.
        deadline = time.monotonic() + 1.0
        while self.journal.being_replayed(file_name) and time.monotonic() < deadline:
            time.sleep(0.01)
        if time.monotonic() < self._down_until:
            return False
        try:
            self.replay_journal(only=file_name)
        except RedisError:
            return False
        return not self.journal.pending(file_name)

    def _maybe_replay(self) -> None:
        """After a response: replay a batch of the journal, at most every replay_interval s."""
        now = time.monotonic()
        if now < self._next_replay or now < self._down_until or not self._replay_lock.acquire(False):
            return
        try:
            self._next_replay = now + self.config.replay_interval
            if self.journal.depth():
                self.replay_journal(limit=self.config.replay_batch)
            else:
                metrics.JOURNAL_DEPTH.set(0)
        except RedisError as exc:
            log.info("journal replay postponed: %s", exc)
        finally:
            self._replay_lock.release()

    # ------------------------------------------------------------------ open
    def open_session(self, app: flask.Flask, request: flask.Request) -> PhasedSessionData:
        phase = self.watcher.current()
        metrics.PHASE.set(int(phase) if self.watcher.known else 0)
        sid = request.cookies.get(self.get_cookie_name(app))
        if not self.watcher.known:
            return self._unavailable(request, sid, phase,
                                     f"the phase file {self.watcher.path} is unreadable "
                                     f"({self.watcher.last_error}); set the phase again with the "
                                     "session_phase module")
        if sid and self.config.use_signer:
            try:
                sid = _signer(app).unsign(sid).decode()
            except BadSignature:
                sid = None
        if not sid:
            return self._new_session(phase)
        file_name = self.layout.file_name(sid)
        try:
            with metrics.LATENCY.labels("session", "open").time():
                data, source = self._load(phase, sid, file_name)
        except SessionStoreUnavailable as exc:
            metrics.UNAVAILABLE.labels(phase.label, "read").inc()
            return self._unavailable(request, sid, phase, str(exc))
        if data is None:
            return self._new_session(phase)
        metrics.READS.labels(phase.label, source).inc()
        return self.session_class(data, sid=sid, phase=phase, source=source)

    def _unavailable(self, request: flask.Request, sid: str | None, phase: Phase,
                     reason: str) -> PhasedSessionData:
        session = self.session_class(sid=sid, phase=phase, source="unavailable")
        session.unavailable = request.environ[_UNAVAILABLE_KEY] = reason
        return session

    def _new_session(self, phase: Phase) -> PhasedSessionData:
        metrics.READS.labels(phase.label, "none").inc()
        return self.session_class(sid=secrets.token_urlsafe(self.config.sid_length),
                                  permanent=self.config.permanent, phase=phase, source="none")

    def _load(self, phase: Phase, sid: str, file_name: str) -> tuple[dict | None, str]:
        if phase <= Phase.DUAL_WRITE:
            data = self._read_file(phase, file_name)
            if phase == Phase.DUAL_WRITE and data is not None:
                self._shadow_read(phase, file_name, data)
            return data, "file"
        if phase == Phase.REDIS:
            return self._load_redis_only(phase, sid, file_name)
        return self._load_redis_first(phase, sid, file_name)

    def _load_redis_first(self, phase: Phase, sid: str, file_name: str) -> tuple[dict | None, str]:
        """Phases 3 and 4: Redis, else the (legacy) file, copied to Redis if absent."""
        file_source = "file" if phase == Phase.REDIS_READ else "legacy_file"
        if not self._replay_pending(phase, file_name):
            # This host journaled a write Redis has not got yet: the file is newer.
            return self._redis_failed(phase, file_name, "journal entry not replayed yet")
        try:
            raw = self._redis_get(phase, file_name)
            if raw is None and self.config.move_to_stock_keys:
                raw = self._move_back_from_stock(phase, sid, file_name)
        except RedisError as exc:
            return self._redis_failed(phase, file_name, f"{type(exc).__name__}: {exc}")
        if raw is not None:
            data = self._decode(phase, raw)
            if data is not None:
                return data, "redis"
        metrics.FALLBACK_READS.labels(phase.label, "miss").inc()
        found = self._read_file_session(phase, file_name)
        if found is None:
            return None, "none"
        return self._promote(phase, file_name, found, file_source)

    def _redis_failed(self, phase: Phase, file_name: str, cause: str) -> tuple[dict | None, str]:
        """Redis could not be read. The file is current in phase 3 and in phase 4 holds only
        sessions never written in phase 4 (or written in emergency fallback)."""
        metrics.READ_ERRORS.labels(phase.label, "redis").inc()
        if phase == Phase.REDIS_READ or (phase == Phase.REDIS_ONLY and self.config.emergency_file_fallback):
            metrics.FALLBACK_READS.labels(phase.label, "error").inc()
            data = self._read_file(phase, file_name)
            if data is not None:
                return data, "file" if phase == Phase.REDIS_READ else "emergency_file"
            if phase == Phase.REDIS_READ:
                return None, "none"  # phase 3 writes every session to its file: truly absent
        # The session may well exist in Redis: never hand out a new sid for it.
        raise SessionStoreUnavailable(f"session store unavailable in phase {phase.label}: Redis: {cause}")

    def _promote(self, phase: Phase, file_name: str, found: formats.FileSession,
                 source: str) -> tuple[dict | None, str]:
        """Copy a file-only session to Redis without overwriting a newer value or reviving a logout."""
        data, expiry = found.data, found.expiry
        try:
            value = self.format.dumps(data)
            result = self._redis(phase, "promote",
                                 lambda store: store.copy_if_absent(file_name, value, expiry))
        except formats.SessionValueError as exc:
            log.warning("session %s cannot be encoded for Redis: %s", file_name, exc)
            return data, source
        except RedisError:
            metrics.PROMOTIONS.labels(phase.label, "error").inc()
            return data, source
        metrics.PROMOTIONS.labels(phase.label, result.value).inc()
        if result in (CopyResult.TOMBSTONED, CopyResult.EXPIRED):
            return None, "none"  # logged out (or expired) while the file lingered
        if result is CopyResult.EXISTS:
            # Someone (the app on another worker, the backfill) got there first: theirs wins.
            with contextlib.suppress(RedisError):
                raw = self._redis_get(phase, file_name)
                if raw is not None and (newer := self._decode(phase, raw)) is not None:
                    return newer, "redis"
        return data, source

    def _move_back_from_stock(self, phase: Phase, sid: str, file_name: str) -> bytes | None:
        """After a rollback from phase 5: a session moved to the stock key comes back to the hashed key.

        The stock key is left to expire rather than deleted: a phase-5 worker may be
        writing it during the rolling flip, and phase 5 reads the hashed key first.
        """
        def copy_back(store: SessionStore) -> bytes | None:
            raw = store.get_stock(sid)
            if raw is None:
                return None
            expiry = store.expiry_of(self.layout.stock_key(sid))
            try:
                value = self.format.dumps(self.stock_format.loads(raw))  # the stock key's format is not ours
            except formats.SessionValueError as exc:
                log.warning("undecodable stock session value in Redis: %s", exc)
                return None
            if expiry == -2 or store.copy_if_absent(file_name, value, expiry) is CopyResult.TOMBSTONED:
                return None
            return store.get(file_name)
        return self._redis(phase, "read", copy_back)

    def _load_redis_only(self, phase: Phase, sid: str, file_name: str) -> tuple[dict | None, str]:
        """Phase 5: the hashed key (written until phase 4), else the stock key (moved in phase 5)."""
        if not self._replay_pending(phase, file_name):
            # A phase-4 emergency write of this session has not reached Redis yet.
            raise SessionStoreUnavailable(f"session store unavailable in phase {phase.label}: "
                                          "a journaled write is waiting for Redis")
        try:
            raw, source = self._redis_get(phase, file_name), "redis"
            if raw is None and self.config.move_to_stock_keys:
                raw, source = self._redis(phase, "read", lambda store: store.get_stock(sid)), "stock"
        except RedisError as exc:
            metrics.READ_ERRORS.labels(phase.label, "redis").inc()
            raise SessionStoreUnavailable(f"session store unavailable in phase {phase.label}: "
                                          f"Redis: {type(exc).__name__}: {exc}") from None
        if raw is None:
            return None, "none"
        return self._decode(phase, raw, self.stock_format if source == "stock" else self.format), source

    def _decode(self, phase: Phase, raw: bytes, fmt: formats.ValueFormat | None = None) -> dict | None:
        try:
            return (fmt or self.format).loads(raw)
        except formats.SessionValueError as exc:
            metrics.READ_ERRORS.labels(phase.label, "redis").inc()
            log.warning("undecodable session value in Redis: %s", exc)
            return None

    def _shadow_read(self, phase: Phase, file_name: str, data: dict) -> None:
        """Phase 2, sampled: does Redis hold what the file holds? Counted, never served."""
        if not self.config.shadow_read_rate or random.random() >= self.config.shadow_read_rate:  # noqa: S311
            return
        try:
            raw = self._redis_get(phase, file_name)
            if raw is None:
                outcome = "missing"
            else:
                outcome = "match" if self.format.same(data, b"", raw).exact else "mismatch"
        except (RedisError, formats.SessionValueError):
            outcome = "error"
        metrics.SHADOW_READS.labels(outcome).inc()
        if outcome == "mismatch":
            metrics.SHADOW_MISMATCHES.inc()

    # ------------------------------------------------------------------ save
    def save_session(self, app: flask.Flask, session: PhasedSessionData, response: flask.Response) -> None:
        response.headers[PHASE_HEADER] = session.phase.label if self.watcher.known else "unknown"
        response.headers[SOURCE_HEADER] = session.source
        try:
            if session.unavailable is None:
                self._save(app, session, response)
        except SessionStoreUnavailable as exc:
            metrics.UNAVAILABLE.labels(session.phase.label, "write").inc()
            _replace_response(response, 503, str(exc))
        except OSError as exc:
            log.error("session file write failed: %s", exc)
            _replace_response(response, 500, f"session could not be saved to "
                              f"{self.config.session_dir}: {exc.strerror or exc}")
        except formats.SessionValueError as exc:
            _replace_response(response, 500, f"session could not be encoded: {exc}")
        metrics.REQUESTS.labels(f"{response.status_code // 100}xx").inc()
        if session.phase >= Phase.DUAL_WRITE:
            response.call_on_close(self._maybe_replay)

    def _save(self, app: flask.Flask, session: PhasedSessionData, response: flask.Response) -> None:
        domain, path, name = self.get_cookie_domain(app), self.get_cookie_path(app), self.get_cookie_name(app)
        if session.accessed:
            response.vary.add("Cookie")
        file_name = self.layout.file_name(session.sid)
        if not session:
            if session.modified:
                self._delete(session.phase, session.sid, file_name)
                response.delete_cookie(name, domain=domain, path=path)
                response.vary.add("Cookie")
            return
        moving = session.phase == Phase.REDIS and self.config.move_to_stock_keys and session.source == "redis"
        if not (session.modified or moving or app.config["SESSION_REFRESH_EACH_REQUEST"]):
            return
        lifetime = int(_seconds(app.permanent_session_lifetime))
        expiry = int(time.time()) + lifetime if lifetime else 0
        self._write(session, file_name, dict(session), expiry)
        if not self.should_set_cookie(app, session):
            return
        value = _signer(app).sign(want_bytes(session.sid)).decode() if self.config.use_signer else session.sid
        response.set_cookie(name, value, expires=self.get_expiration_time(app, session),
                            httponly=self.get_cookie_httponly(app), domain=domain, path=path,
                            secure=self.get_cookie_secure(app), samesite=self.get_cookie_samesite(app))
        response.vary.add("Cookie")

    def _write(self, session: PhasedSessionData, file_name: str, data: dict, expiry: int) -> None:
        phase = session.phase
        if phase <= Phase.REDIS_READ:
            # The file first: it is what phases 1-2 read and what a journal replay copies.
            # Pickled once: the file's payload is also the exact Redis value.
            payload = self.file_format.dumps(data)
            self._write_file(phase, file_name, data, expiry, payload)
            if phase >= Phase.DUAL_WRITE:
                self._write_redis_copy(phase, file_name, data, expiry, payload)
            return
        value = self.format.dumps(data)
        try:
            if phase == Phase.REDIS and self.config.move_to_stock_keys:
                stock_value = self.stock_format.dumps(data)
                self._redis(phase, "write", lambda store: store.write_stock(session.sid, stock_value, expiry))
                if session.source == "redis":  # moved: the hashed copy must not linger
                    self._redis(phase, "write", lambda store: store.drop_hashed(file_name))
            else:
                self._redis(phase, "write", lambda store: store.app_write(file_name, value, expiry))
        except RedisError as exc:
            metrics.WRITE_ERRORS.labels(phase.label, "redis", "write").inc()
            if phase == Phase.REDIS_ONLY and self.config.emergency_file_fallback:
                self._write_file(phase, file_name, data, expiry, value if self.format.exact else None)
                self.journal.record(file_name, "write", phase.label, f"{type(exc).__name__}: {exc}")
                metrics.JOURNAL_APPENDS.inc()
                metrics.EMERGENCY.labels("write").inc()
                return
            raise SessionStoreUnavailable(f"session not saved in phase {phase.label}: Redis: "
                                          f"{type(exc).__name__}: {exc}") from None
        metrics.WRITES.labels(phase.label, "redis", "write").inc()
        if phase == Phase.REDIS_ONLY:
            # Redis now holds a newer session than the legacy file: never serve that file again.
            self._remove_file(phase, file_name)

    def _write_redis_copy(self, phase: Phase, file_name: str, data: dict, expiry: int,
                          payload: bytes) -> None:
        """Phases 2-3: Redis after the file; a failure is journaled, never the request's failure."""
        try:
            value = payload if self.format.exact else self.format.dumps(data)
        except formats.SessionValueError as exc:
            # The file has it but Redis cannot: drop the older Redis copy so that a
            # phase-3 read falls back to the file instead of serving stale data.
            log.error("session %s kept in its file only: %s", file_name, exc)
            metrics.WRITE_ERRORS.labels(phase.label, "redis", "encode").inc()
            try:
                self._redis(phase, "write", lambda store: store.drop_hashed(file_name))
            except RedisError as redis_exc:
                self._journal(phase, file_name, "write", redis_exc)
            return
        try:
            self._redis(phase, "write", lambda store: store.app_write(file_name, value, expiry))
            metrics.WRITES.labels(phase.label, "redis", "write").inc()
        except RedisError as exc:
            self._journal(phase, file_name, "write", exc)

    def _delete(self, phase: Phase, sid: str, file_name: str) -> None:
        if phase <= Phase.REDIS_READ:
            self._remove_file(phase, file_name)
            if phase >= Phase.DUAL_WRITE:
                try:
                    self._redis(phase, "delete", lambda store: store.app_delete(file_name))
                    metrics.WRITES.labels(phase.label, "redis", "delete").inc()
                except RedisError as exc:
                    self._journal(phase, file_name, "delete", exc)
            return
        try:
            self._redis(phase, "delete", lambda store: store.app_delete(file_name))
            if self.config.move_to_stock_keys:
                self._redis(phase, "delete", lambda store: store.delete_stock(sid))
        except RedisError as exc:
            metrics.WRITE_ERRORS.labels(phase.label, "redis", "delete").inc()
            if phase == Phase.REDIS_ONLY and self.config.emergency_file_fallback:
                self._remove_file(phase, file_name)
                self.journal.record(file_name, "delete", phase.label, f"{type(exc).__name__}: {exc}")
                metrics.JOURNAL_APPENDS.inc()
                metrics.EMERGENCY.labels("delete").inc()
                return
            raise SessionStoreUnavailable(f"logout not saved in phase {phase.label}: Redis: "
                                          f"{type(exc).__name__}: {exc}") from None
        metrics.WRITES.labels(phase.label, "redis", "delete").inc()
        self._remove_file(phase, file_name)

    def regenerate(self, session: PhasedSessionData) -> None:
        """A new sid for *session* (Flask-Session 0.8's API; call it at login against fixation).

        The old sid's stored copies are deleted as a logout would delete them.
        """
        if session:
            self._delete(session.phase, session.sid, self.layout.file_name(session.sid))
            session.sid = secrets.token_urlsafe(self.config.sid_length)
            session.modified = True

    # ------------------------------------------------------------------ hooks
    def _refuse_unavailable(self):
        # The reason is read from the request, not from flask.session: touching
        # flask.session marks the session accessed, which would add Vary: Cookie
        # to every response, health checks and static files included.
        reason = flask.request.environ.get(_UNAVAILABLE_KEY)
        if reason and flask.request.endpoint not in self.config.sessionless_endpoints:
            return flask.Response(f"503 Service Unavailable: {reason}\n", status=503,
                                  mimetype="text/plain", headers={"Retry-After": "5"})
        return None

    def _phase_file_error(self, message: str) -> None:
        metrics.PHASE_FILE_ERRORS.inc()
        log.error("phase file unusable, keeping the last known phase: %s", message)


class PhasedSession:
    """``PhasedSession(app)``: install the phased interface (Flask-Session's ``Session(app)`` twin).

    ``settings_file`` names a JSON object of settings (SESSIONSHIFT_REDIS, SESSION_FILE_DIR, ...)
    merged into ``app.config`` first: the file the app_adopt role writes, so that an existing app
    needs this one line and no change to how it loads its own configuration.
    """

    def __init__(self, app: flask.Flask | None = None, settings_file: str | None = None):
        self.interface: PhasedSessionInterface | None = None
        self.settings_file = settings_file
        if app is not None:
            self.init_app(app)

    def init_app(self, app: flask.Flask) -> PhasedSessionInterface:
        if self.settings_file:
            app.config.update(load_settings_file(self.settings_file))
        self.interface = PhasedSessionInterface.from_app(app)
        app.session_interface = self.interface
        return self.interface


def metrics_view() -> flask.Response:
    interface = flask.current_app.session_interface
    if isinstance(interface, PhasedSessionInterface):
        metrics.JOURNAL_DEPTH.set(interface.journal.depth())  # measured now, not at the last replay
    body, content_type = metrics.render()
    return flask.Response(body, content_type=content_type)


def _count_replay(result: ReplayResult) -> None:
    for outcome in ("replayed", "deleted", "failed"):
        if getattr(result, outcome):
            metrics.JOURNAL_REPLAYS.labels(outcome).inc(getattr(result, outcome))


def _signer(app: flask.Flask) -> Signer:
    if not app.secret_key:
        raise KeyError("SECRET_KEY must be set when SESSION_USE_SIGNER=True")
    return Signer(app.secret_key, salt="flask-session", key_derivation="hmac")


def _seconds(value: timedelta | int) -> float:
    return value.total_seconds() if isinstance(value, timedelta) else float(value)


def _replace_response(response: flask.Response, status: int, message: str) -> None:
    """Turn a response into a clear error after the view ran (the session could not be saved)."""
    response.status_code = status
    response.direct_passthrough = False
    response.set_data(f"{status} {response.status.split(' ', 1)[-1]}: {message}\n")
    response.mimetype = "text/plain"
    if status == 503:
        response.headers["Retry-After"] = "5"
