"""Where a session is read from and written to in each phase: the decisions, without Flask.

:class:`SessionCore` serves one process's session reads, saves and logouts from
the stores the phase spec (``phases.SPECS``) names: it reads in the spec's
order, writes the file first where the spec writes one, journals the Redis
failures of the phases that journal, waits for replicas, retires files,
leaves tombstones and applies the phase-4 emergency rule, all as the spec
says. It never compares phases itself: adding a phase or changing one rule is
an edit of the spec. The Flask adapter (:mod:`.flask`) adds cookies, signing
and responses; the unit tests drive this class with fakes.

A session is given a new sid only when it is missing from every store its
phase reads; a Redis ERROR is never taken for a miss (Flask-Session 0.7+ trap).
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import threading
import time
from collections.abc import Callable
from typing import Any

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from . import formats, ledger, metrics
from .appconfig import InterfaceConfig
from .errors import SessionshiftError
from .formats import read_live_file
from .journal import Journal, ReplayResult
from .keys import KeyLayout
from .phasefile import PhaseWatcher
from .phases import SPECS, Phase, PhaseSpec
from .redisconn import RedisSettings, client_from_settings
from .store import CopyResult, ReplicationShortfall, SessionStore

log = logging.getLogger("sessionshift.flask")  # the interface's one logger, whichever part speaks


class SessionStoreUnavailable(SessionshiftError):
    """No store this phase allows could serve the session: the request gets a 503."""


class _CircuitOpen(RedisConnectionError):
    """Redis failed moments ago: skip it for a short while instead of waiting on timeouts."""


class SessionCore:
    """One process's session operations in the phase its phase file names.

    ``redis_client`` is the client to use (else one is made from ``config.redis`` in each
    process, after gunicorn forks); ``store_factory(client, layout, wait)`` makes the
    :class:`SessionStore` of a generation (``wait``: the one that waits for replicas).
    """

    def __init__(self, config: InterfaceConfig, redis_client=None, *,
                 store_factory: Callable[..., SessionStore] | None = None):
        self.config = config
        self.layout = KeyLayout(config.key_prefix, config.hash_name)
        self.format = formats.value_format(config.serializer, config.pickle_protocol)
        self.file_format = formats.value_format("pickle", config.pickle_protocol)
        self.stock_format = formats.stock_format(config.stock_serializer, config.pickle_protocol)
        os.makedirs(config.session_dir, exist_ok=True)
        self.watcher = PhaseWatcher(config.state_dir, config.phase_check_interval,
                                    on_error=self._phase_file_error)
        self.journal = Journal(config.state_dir, config.session_dir)
        self.ledger = ledger.Ledger(config.state_dir)
        self._given_client = redis_client
        self._store_factory = store_factory or self._make_store
        self._stores: dict[tuple[int, int], tuple[SessionStore, SessionStore]] = {}
        self._down_until = 0.0
        self._next_replay = 0.0
        self._replay_lock = threading.Lock()

    def phase(self) -> Phase:
        return self.watcher.current()

    def file_name(self, sid: str) -> str:
        return self.layout.file_name(sid)

    # ------------------------------------------------------------------ Redis plumbing
    def _make_store(self, client, layout: KeyLayout, wait: bool) -> SessionStore:
        if not wait:
            return SessionStore(client, layout, self.config.tombstone_ttl)
        config = self.config
        return SessionStore(client, layout, config.tombstone_ttl, wait_replicas=config.wait_replicas,
                            wait_timeout_ms=config.wait_timeout_ms)

    def _store(self, spec: PhaseSpec) -> SessionStore:
        """The store of this process (clients are made after gunicorn forks), in the generation
        the phase file names: copies of any other generation are never read or written."""
        pid, generation = os.getpid(), self.watcher.generation
        stores = self._stores.get((pid, generation))
        if stores is None:
            client = self._client(pid)
            layout = self.layout.in_generation(generation)
            stores = self._stores[(pid, generation)] = (self._store_factory(client, layout, False),
                                                        self._store_factory(client, layout, True))
        return stores[1] if spec.waits_for_replicas else stores[0]

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

    def _redis(self, spec: PhaseSpec, op: str, call: Callable[[SessionStore], Any]) -> Any:
        """Run one store call, timed; a failure opens the circuit for a short while."""
        if time.monotonic() < self._down_until:
            raise _CircuitOpen(f"Redis failed less than {self.config.redis_retry_after}s ago")
        try:
            with metrics.LATENCY.labels("redis", op).time():
                return call(self._store(spec))
        except ReplicationShortfall:
            raise  # Redis answered: a lagging replica is no reason to stop asking it
        except RedisError:
            self._down_until = time.monotonic() + self.config.redis_retry_after
            raise

    def _redis_get(self, spec: PhaseSpec, file_name: str) -> bytes | None:
        return self._redis(spec, "read", lambda store: store.get(file_name))

    # ------------------------------------------------------------------ file plumbing
    def _read_file(self, spec: PhaseSpec, file_name: str) -> formats.FileSession | None:
        """The live file session, or None (missing, expired, or unusable: counted)."""
        try:
            with metrics.LATENCY.labels("file", "read").time():
                return read_live_file(os.path.join(self.config.session_dir, file_name))
        except formats.SessionFileError as exc:
            # Corrupt or hostile (never unpickled unrestricted): treated as absent, like cachelib.
            metrics.READ_ERRORS.labels(spec.phase.label, "file").inc()
            log.warning("ignoring session file: %s", exc)
            return None

    def _read_file_data(self, spec: PhaseSpec, file_name: str) -> dict | None:
        found = self._read_file(spec, file_name)
        return None if found is None else found.data

    def _write_file(self, spec: PhaseSpec, file_name: str, data: dict, expiry: int,
                    payload: bytes | None = None) -> None:
        """Write the file as the app's original library does (its header style and protocol)."""
        try:
            with metrics.LATENCY.labels("file", "write").time():
                formats.write_session_file(self.config.session_dir, file_name, data, expiry,
                                           header_style=self.config.header_style,
                                           protocol=self.config.pickle_protocol, payload=payload,
                                           mode=self.config.file_mode)
        except OSError:
            metrics.WRITE_ERRORS.labels(spec.phase.label, "file", "write").inc()
            raise
        metrics.WRITES.labels(spec.phase.label, "file", "write").inc()

    def _remove_file(self, spec: PhaseSpec, file_name: str) -> None:
        try:
            os.unlink(os.path.join(self.config.session_dir, file_name))
        except FileNotFoundError:
            return
        metrics.WRITES.labels(spec.phase.label, "file", "delete").inc()

    # ------------------------------------------------------------------ journal
    def _journal(self, spec: PhaseSpec, file_name: str, op: str, exc: Exception) -> None:
        metrics.WRITE_ERRORS.labels(spec.phase.label, "redis", op).inc()
        self.journal.record(file_name, op, spec.phase.label, f"{type(exc).__name__}: {exc}")
        metrics.JOURNAL_APPENDS.inc()

    def _emergency(self, spec: PhaseSpec) -> bool:
        """Whether the phase's emergency rule lets the file take a write Redis refused."""
        return spec.emergency_file_fallback and self.config.emergency_file_fallback

    def _journal_emergency(self, spec: PhaseSpec, file_name: str, op: str, exc: RedisError) -> None:
        self.journal.record(file_name, op, spec.phase.label, f"{type(exc).__name__}: {exc}")
        metrics.JOURNAL_APPENDS.inc()
        metrics.EMERGENCY.labels(op).inc()

    def replay_journal(self, limit: int | None = None, only: str | None = None) -> ReplayResult:
        spec = SPECS[self.watcher.current()]
        # Where files are no longer written, a replayed file has done its job: it goes.
        result = self.journal.replay(self._store(spec), serializer=self.config.serializer,
                                     protocol=self.config.pickle_protocol,
                                     remove_file_after=not spec.writes_file, limit=limit, only=only)
        for outcome in ("replayed", "deleted", "failed"):
            if getattr(result, outcome):
                metrics.JOURNAL_REPLAYS.labels(outcome).inc(getattr(result, outcome))
        metrics.JOURNAL_DEPTH.set(result.remaining)
        if result.redis_error:
            self._down_until = time.monotonic() + self.config.redis_retry_after
        return result

    def _replay_pending(self, file_name: str) -> bool:
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

    def maybe_replay(self) -> None:
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

    # ------------------------------------------------------------------ reads
    def load(self, phase: Phase, sid: str) -> tuple[dict | None, str]:
        """The session *sid* and where it came from (``none``: in no store the phase reads).

        Raises :class:`SessionStoreUnavailable` when the session may exist in a store that
        failed: a new sid then would log its user out.
        """
        spec, file_name = SPECS[phase], self.file_name(sid)
        if not spec.reads_redis:
            data = self._read_file_data(spec, file_name)
            if spec.shadow_reads and data is not None:
                self._shadow_read(spec, file_name, data)
            return data, spec.reads_from[0]
        if not self._replay_pending(file_name):
            # This host journaled a write Redis has not got yet: the file is newer.
            return self._redis_failed(spec, file_name, "a journaled write is waiting for Redis")
        stock = self.config.move_to_stock_keys
        try:
            raw, source = self._redis_get(spec, file_name), "redis"
            if raw is None and stock and spec.moves_to_stock_keys:
                raw, source = self._redis(spec, "read", lambda store: store.get_stock(sid)), "stock"
            elif raw is None and stock:
                raw = self._move_back_from_stock(spec, sid, file_name)
        except RedisError as exc:
            return self._redis_failed(spec, file_name, f"{type(exc).__name__}: {exc}")
        if raw is not None:
            data = self._decode(spec, raw, self.stock_format if source == "stock" else self.format)
            if data is not None:
                return data, source
        fallback = spec.reads_from[spec.reads_from.index("redis") + 1:]
        if not fallback:
            return None, "none"
        metrics.FALLBACK_READS.labels(spec.phase.label, "miss").inc()
        found = self._read_file(spec, file_name)
        if found is None:
            return None, "none"
        if not spec.promotes_file_reads:
            return found.data, fallback[0]
        return self._promote(spec, file_name, found, fallback[0])

    def _redis_failed(self, spec: PhaseSpec, file_name: str, cause: str) -> tuple[dict | None, str]:
        """Redis could not be read. Where files are still written the file is current; in the
        emergency rule's phase it holds only sessions never written there (or written in
        emergency fallback); elsewhere the session may well exist in Redis."""
        metrics.READ_ERRORS.labels(spec.phase.label, "redis").inc()
        if spec.writes_file or self._emergency(spec):
            metrics.FALLBACK_READS.labels(spec.phase.label, "error").inc()
            data = self._read_file_data(spec, file_name)
            if data is not None:
                return data, "file" if spec.writes_file else "emergency_file"
            if spec.writes_file:
                return None, "none"  # every session is written to its file: truly absent
        # Never hand out a new sid for a session Redis may hold.
        raise SessionStoreUnavailable(f"session store unavailable in phase {spec.phase.label}: "
                                      f"Redis: {cause}")

    def _promote(self, spec: PhaseSpec, file_name: str, found: formats.FileSession,
                 source: str) -> tuple[dict | None, str]:
        """Copy a file-only session to Redis without overwriting a newer value or reviving a logout."""
        data, expiry = found.data, found.expiry
        label = spec.phase.label
        try:
            value = self.format.dumps(data)
            result = self._redis(spec, "promote",
                                 lambda store: store.copy_if_absent(file_name, value, expiry))
        except formats.SessionValueError as exc:
            log.warning("session %s cannot be encoded for Redis: %s", file_name, exc)
            return data, source
        except RedisError:
            metrics.PROMOTIONS.labels(label, "error").inc()
            return data, source
        metrics.PROMOTIONS.labels(label, result.value).inc()
        if result in (CopyResult.TOMBSTONED, CopyResult.EXPIRED):
            return None, "none"  # logged out (or expired) while the file lingered
        if result is CopyResult.EXISTS:
            # Someone (the app on another worker, the backfill) got there first: theirs wins.
            with contextlib.suppress(RedisError):
                raw = self._redis_get(spec, file_name)
                if raw is None:
                    # The key held a session a moment ago; whatever removed it since (a logout,
                    # which leaves a tombstone, or its expiry) is newer than this file.
                    return None, "none"
                if (newer := self._decode(spec, raw)) is not None:
                    return newer, "redis"
        return data, source

    def _move_back_from_stock(self, spec: PhaseSpec, sid: str, file_name: str) -> bytes | None:
        """After a rollback from the stock-key phase: a session moved to the stock key comes back
        to the hashed key.

        The stock key is left to expire rather than deleted: a worker still in that phase may be
        writing it during the rolling flip, and that phase reads the hashed key first.
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
        return self._redis(spec, "read", copy_back)

    def _decode(self, spec: PhaseSpec, raw: bytes, fmt: formats.ValueFormat | None = None) -> dict | None:
        try:
            return (fmt or self.format).loads(raw)
        except formats.SessionValueError as exc:
            metrics.READ_ERRORS.labels(spec.phase.label, "redis").inc()
            log.warning("undecodable session value in Redis: %s", exc)
            return None

    def _shadow_read(self, spec: PhaseSpec, file_name: str, data: dict) -> None:
        """Sampled: does Redis hold what the file holds? Counted, never served."""
        if not self.config.shadow_read_rate or random.random() >= self.config.shadow_read_rate:  # noqa: S311
            return
        try:
            raw = self._redis_get(spec, file_name)
            if raw is None:
                outcome = "missing"
            else:
                outcome = "match" if self.format.same(data, b"", raw).exact else "mismatch"
        except (RedisError, formats.SessionValueError):
            outcome = "error"
        metrics.SHADOW_READS.labels(outcome).inc()
        if outcome == "mismatch":
            metrics.SHADOW_MISMATCHES.inc()

    # ------------------------------------------------------------------ writes
    def moves(self, phase: Phase, source: str) -> bool:
        """Whether a session read from its hashed key is saved anyway, to move it to the stock key."""
        return SPECS[phase].moves_to_stock_keys and self.config.move_to_stock_keys and source == "redis"

    def save(self, phase: Phase, sid: str, data: dict, expiry: int, source: str) -> None:
        """Save the session where the phase writes it (*source*: where this request found it)."""
        spec, file_name = SPECS[phase], self.file_name(sid)
        payload = None
        if spec.writes_file:
            # The file first: it is what the file-reading phases read and what a journal replay
            # copies. Pickled once: the file's payload is also the exact Redis value.
            payload = self.file_format.dumps(data)
            self._write_file(spec, file_name, data, expiry, payload)
        if not spec.writes_redis:
            return
        if spec.journals:
            self._write_redis_copy(spec, file_name, data, expiry, payload)
            return
        value = self.format.dumps(data)
        try:
            if spec.moves_to_stock_keys and self.config.move_to_stock_keys:
                stock_value = self.stock_format.dumps(data)
                self._redis(spec, "write", lambda store: store.write_stock(sid, stock_value, expiry))
                if source == "redis":  # moved: the hashed copy must not linger
                    self._redis(spec, "write", lambda store: store.drop_hashed(file_name))
            else:
                self._redis(spec, "write", lambda store: store.app_write(file_name, value, expiry))
        except RedisError as exc:
            metrics.WRITE_ERRORS.labels(spec.phase.label, "redis", "write").inc()
            if self._emergency(spec):
                self._write_file(spec, file_name, data, expiry, value if self.format.exact else None)
                self._journal_emergency(spec, file_name, "write", exc)
                return
            raise SessionStoreUnavailable(f"session not saved in phase {spec.phase.label}: Redis: "
                                          f"{type(exc).__name__}: {exc}") from None
        metrics.WRITES.labels(spec.phase.label, "redis", "write").inc()
        # Only Redis holds it now: the ledger lets a rollback from a backup count it if Redis is lost.
        self.ledger.record(file_name, ledger.WRITE, lifetime=max(expiry - int(time.time()), 0))
        if spec.retires_files:
            # Redis now holds a newer session than the legacy file: never serve that file again.
            self._remove_file(spec, file_name)

    def _write_redis_copy(self, spec: PhaseSpec, file_name: str, data: dict, expiry: int,
                          payload: bytes | None) -> None:
        """Redis after the file; a failure is journaled, never the request's failure."""
        try:
            value = payload if payload is not None and self.format.exact else self.format.dumps(data)
        except formats.SessionValueError as exc:
            # The file has it but Redis cannot: drop the older Redis copy so that a
            # Redis-first read falls back to the file instead of serving stale data.
            log.error("session %s kept in its file only: %s", file_name, exc)
            metrics.WRITE_ERRORS.labels(spec.phase.label, "redis", "encode").inc()
            try:
                self._redis(spec, "write", lambda store: store.drop_hashed(file_name))
            except RedisError as redis_exc:
                self._journal(spec, file_name, "write", redis_exc)
            return
        try:
            self._redis(spec, "write", lambda store: store.app_write(file_name, value, expiry))
            metrics.WRITES.labels(spec.phase.label, "redis", "write").inc()
        except RedisError as exc:
            self._journal(spec, file_name, "write", exc)

    def delete(self, phase: Phase, sid: str) -> None:
        """The user logged out: remove the session from every store the phase writes."""
        spec, file_name = SPECS[phase], self.file_name(sid)
        if spec.writes_file:
            self._remove_file(spec, file_name)
        if not spec.writes_redis:
            return
        if spec.journals:
            try:
                self._redis(spec, "delete", lambda store: self._delete_hashed(spec, store, file_name))
                metrics.WRITES.labels(spec.phase.label, "redis", "delete").inc()
            except RedisError as exc:
                self._journal(spec, file_name, "delete", exc)
            return
        try:
            self._redis(spec, "delete", lambda store: self._delete_hashed(spec, store, file_name))
            if self.config.move_to_stock_keys:
                self._redis(spec, "delete", lambda store: store.delete_stock(sid))
        except RedisError as exc:
            metrics.WRITE_ERRORS.labels(spec.phase.label, "redis", "delete").inc()
            if self._emergency(spec):
                self._remove_file(spec, file_name)
                self._journal_emergency(spec, file_name, "delete", exc)
                return
            raise SessionStoreUnavailable(f"logout not saved in phase {spec.phase.label}: Redis: "
                                          f"{type(exc).__name__}: {exc}") from None
        metrics.WRITES.labels(spec.phase.label, "redis", "delete").inc()
        self.ledger.record(file_name, ledger.LOGOUT)  # files from an older backup must not undo it
        self._remove_file(spec, file_name)  # a legacy file must not outlive its logout

    @staticmethod
    def _delete_hashed(spec: PhaseSpec, store: SessionStore, file_name: str) -> None:
        if spec.writes_tombstones:
            store.app_delete(file_name)
        else:
            store.drop_hashed(file_name)

    def _phase_file_error(self, message: str) -> None:
        metrics.PHASE_FILE_ERRORS.inc()
        log.error("phase file unusable, keeping the last known phase: %s", message)
