"""The backfill: copy every live file session to Redis where it is absent.

One pass reads the files of some shares (see :mod:`.shares`) and copies each
session's payload bytes, as they are, as the Redis value (the exact ``pickle``
format: nothing about a session can change; the opt-in ``msgpack`` format
decodes the session with the restricted unpickler and re-encodes it). It copies
in pipelined batches through :meth:`SessionStore.copy_many_if_absent`, which
writes only absent keys (``SET NX EXAT``: the app's newer value wins) and never
revives a tombstoned (logged-out) session. Expired sessions are not copied.

In the exact format a value is copied UNREAD: migrate tells header from payload
by the file's structure (:func:`formats.split_cachelib_file`) and runs no
decode of what an attacker may have written, so no file can hang it or make it
allocate. Every reader of the value (the app's interface, validate on a
difference, export, the move to stock keys) decodes it with the restricted,
budgeted unpickler, so a hostile or over-budget payload is refused where it is
read, as it was from the file: the app sees no session. Files whose structure
is broken (empty, truncated, no STOP, a payload its frame overruns) are
reported as corrupt with their path and the reason; files structure cannot
settle (protocol 0/1 payloads, an ambiguous header) are decoded as before, and
so reported when refused. Hostile pickles are named by ``analyze``, which
decodes every file. No file is ever deleted.

Reading and decoding files is the bottleneck, so ``workers`` processes (forked)
each take a group of shares, with their own Redis connection; each group is one
scan of the directory (a scan costs about 0.5 us per entry, most of it the
kernel's, whatever share the entry is in), so there are as many groups as
workers (two for one worker). A run records the shares it has finished in
``<state_dir>/migrate.json`` (atomic writes); a run killed at any point (even
SIGKILL) and started again skips those shares and redoes the rest, which is
safe because every write is copy-if-absent: nothing already in Redis changes.
What the killed run copied of the rest is not copied again: the rerun asks
Redis, a batch of names at a time, which sessions it already holds (or has
seen logged out) and reads only the files of the others.

Memory is bounded by the batch size: the directory is streamed, never listed.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import fcntl
import os
import time
from collections.abc import Callable
from typing import Any

from . import defaults, options, state
from .errors import SessionshiftError
from .formats import SessionFileError, SessionValueError, read_entry_payload, value_format
from .progress import Progress, ProgressCallback
from .redisconn import (
    PERMANENT_ERRORS,
    TRANSIENT_ERRORS,
    RedisSettings,
    RedisUnavailable,
    connect,
    explain,
    prepare_for_workers,
)
from .shares import SHARES, SessionSource, groups, iter_entries
from .store import CopyResult, SessionStore
from .workers import resolve_workers, run_groups

DEFAULT_BATCH_SIZE = defaults.BATCH_SIZE
MIN_GROUPS = 2  # directory scans per run at least: a lone worker still checkpoints half-way
CHECKPOINT_VERSION = 1

# Outcome counters, in the order reports list them.
COUNT_NAMES = ("scanned", "written", "would_write", "exists", "tombstoned", "expired",
               "corrupt", "vanished", "foreign", "skipped")

BeforeWrite = Callable[[list[tuple[str, bytes, int]]], None]


class MigrateBusy(SessionshiftError, RuntimeError):
    """Another migrate run holds this state directory's lock."""


@dataclasses.dataclass
class MigrateConfig(SessionSource):
    state_dir: str | None = None  # None: no checkpoint (and no resume)
    batch_size: int = DEFAULT_BATCH_SIZE
    workers: int = 0  # 0: the CPU count, capped
    dry_run: bool = False  # count what would be written; write nothing, no checkpoint
    restart: bool = False  # ignore an unfinished checkpoint
    default_lifetime: int = 0  # for the seed's sess_<sid> files, which carry no expiry
    retry_seconds: float = 30.0  # keep retrying a batch this long while Redis is unreachable
    max_examples: int = 50  # corrupt files listed (path + reason); all are counted

    def resolved_workers(self) -> int:
        return resolve_workers(self.workers)

    def fingerprint(self, endpoint: str) -> dict[str, Any]:
        """What makes a checkpoint valid for a rerun: the same files, keys and Redis."""
        return {"session_dir": os.path.realpath(self.session_dir), "key_prefix": self.layout.prefix,
                "hash_method": self.layout.hash_name, "generation": self.layout.generation,
                "serializer": self.serializer,
                "redis": endpoint, "shares": SHARES}


@dataclasses.dataclass
class MigrateResult:
    counts: dict[str, int]
    errors: list[dict[str, str]]  # {"path", "reason"} of corrupt files, capped (see the module docstring)
    shares_done: list[int]  # every share finished, including those of a resumed run
    shares_skipped: list[int]  # done by an earlier, interrupted run
    resumed: bool  # an unfinished earlier run was found: its shares skipped, its other copies not redone
    dry_run: bool
    workers: int
    batch_size: int
    elapsed: float
    checkpoint: str | None
    # The exact format: values are the files' payloads, copied without being decoded here
    # (checked by the restricted unpickler wherever they are read).
    copied_unread: bool = False

    @property
    def written(self) -> int:
        return self.counts["written"]

    @property
    def complete(self) -> bool:
        return len(self.shares_done) == SHARES

    def as_dict(self) -> dict[str, Any]:
        result = dataclasses.asdict(self)
        result["complete"] = self.complete
        result["rate_per_second"] = round(self.counts["scanned"] / self.elapsed, 1) if self.elapsed else 0.0
        return result


def summary(result: MigrateResult) -> str:
    counts = result.counts
    verb = "would write" if result.dry_run else "wrote"
    written = counts["would_write"] if result.dry_run else counts["written"]
    text = (f"migrate: {verb} {written:,} of {counts['scanned']:,} files in {result.elapsed:.1f}s "
            f"({counts['exists']:,} already in Redis, {counts['tombstoned']:,} logged out, "
            f"{counts['expired']:,} expired, {counts['corrupt']:,} corrupt, "
            f"{counts['foreign']:,} foreign files)")
    if result.resumed:
        text += (f"; resumed, {len(result.shares_skipped)} of {SHARES} shares were already done "
                 "(the rest: files whose sessions Redis already held were not read again)")
    for error in result.errors[:10]:
        text += f"\n  corrupt: {error['path']}: {error['reason']}"
    if result.copied_unread:
        text += ("\n  values are copied unread (the file's own pickle bytes) and checked by the restricted "
                 "unpickler wherever they are read; analyze names hostile files")
    return text


# --------------------------------------------------------------------------- one pass


class _Pass:
    """Read and copy the files of a group of shares: one scan of the directory."""

    def __init__(self, config: MigrateConfig, store: SessionStore, settings: RedisSettings,
                 report: Callable[[collections.Counter], None] | None = None,
                 before_write: BeforeWrite | None = None, probe: bool = False):
        self.config = config
        self.store = store
        self.settings = settings
        self.report = report
        self.before_write = before_write
        self.probe = probe  # an interrupted run's shares: ask Redis before reading (_not_in_redis)
        # The batch whose copy was sent and whose outcome is read when the next batch is full:
        # Redis runs one batch's copies while this process reads the next batch's files.
        self._sent: tuple[list[tuple[str, bytes, int]], Callable[[], list[CopyResult]] | None] | None = None

    def run(self, shares: tuple[int, ...]) -> tuple[collections.Counter, list[dict[str, str]]]:
        config = self.config
        counts: collections.Counter = collections.Counter()
        errors: list[dict[str, str]] = []
        batch: list[tuple[str, bytes, int]] = []
        reported = collections.Counter()
        fmt, batch_size = value_format(config.serializer, config.pickle_protocol), config.batch_size
        prefix, lifetime = config.layout.prefix, config.default_lifetime
        now = time.time()
        entries = iter_entries(config.session_dir, shares)
        if self.probe:
            entries = self._not_in_redis(entries, counts)
        for kind, name, path in entries:
            if kind == "cachelib":
                counts["skipped"] += 1
                continue
            if kind == "foreign":
                counts["foreign"] += 1
                continue
            counts["scanned"] += 1
            try:
                file_name, expiry, value, _data, _info = read_entry_payload(
                    kind, name, path, fmt, prefix=prefix, default_lifetime=lifetime)
                if expiry and expiry <= now:
                    counts["expired"] += 1
                    continue
            except SessionFileError as exc:
                if exc.reason.startswith("vanished"):
                    counts["vanished"] += 1  # logged out or expired by the app meanwhile
                    continue
                counts["corrupt"] += 1
                if len(errors) < config.max_examples:
                    errors.append({"path": path, "reason": exc.reason})
                continue
            except SessionValueError as exc:
                counts["corrupt"] += 1
                if len(errors) < config.max_examples:
                    errors.append({"path": path, "reason": str(exc)})
                continue
            batch.append((file_name, value, expiry))
            if len(batch) >= batch_size:
                self._flush(batch, counts)
                batch = []
                now = time.time()
                if self.report:
                    self.report(counts - reported)
                    reported = counts.copy()
        if batch:
            self._flush(batch, counts)
        self._collect(counts)
        if self.report:
            self.report(counts - reported)
        return counts, errors

    def _not_in_redis(self, entries, counts: collections.Counter):
        """*entries* less the session files whose key Redis holds or whose logout it records,
        counted as their copy would count them, unread: what a killed run copied of a share it
        had not finished. Asked a batch at a time (:meth:`SessionStore.would_copy`, read-only)."""
        pending: list[tuple[str, str, str]] = []
        for entry in entries:
            if entry[0] != "session":  # a seed file's key comes from its content
                yield entry
                continue
            pending.append(entry)
            if len(pending) >= self.config.batch_size:
                yield from self._absent(pending, counts)
                pending = []
        if pending:
            yield from self._absent(pending, counts)

    def _absent(self, pending: list[tuple[str, str, str]], counts: collections.Counter):
        layout = self.store.layout
        found = self._with_retry(lambda: self.store.would_copy(
            [(layout.session_key(name), True) for _kind, name, _path in pending]))
        for entry, outcome in zip(pending, found, strict=True):
            if outcome is CopyResult.WRITTEN:
                yield entry
            else:
                counts["scanned"] += 1
                counts[outcome.value] += 1

    def close(self) -> None:
        self._sent = None  # a batch still in flight is not counted: its shares are not done
        self.store.client.close()

    def _flush(self, batch: list[tuple[str, bytes, int]], counts: collections.Counter) -> None:
        self._collect(counts)  # the previous batch's outcome first: at most one batch in flight
        if self.before_write:
            self.before_write(batch)
        if self.config.dry_run:
            counts.update(self._with_retry(lambda: self._probe(batch)))
            return
        try:
            finish = self.store.start_copy_many_if_absent(batch)
        except Exception:
            finish = None  # _collect copies it again, with the retries that say what is wrong
        self._sent = (batch, finish)

    def _collect(self, counts: collections.Counter) -> None:
        """Count the outcome of the batch in flight; if sending or reading it failed, copy it again
        (safe: copies are copy-if-absent) through :meth:`_with_retry`."""
        if self._sent is None:
            return
        (batch, finish), self._sent = self._sent, None
        outcomes = None
        if finish is not None:
            try:
                outcomes = finish()
            except Exception:
                outcomes = None
        if outcomes is None:
            outcomes = self._with_retry(lambda: self.store.copy_many_if_absent(batch))
        # Nearly every outcome of a backfill is "written": counted in C (an enum's .value is a
        # Python-level property, 0.14 us an outcome).
        written = outcomes.count(CopyResult.WRITTEN)
        counts["written"] += written
        if written != len(outcomes):
            counts.update(outcome.value for outcome in outcomes if outcome is not CopyResult.WRITTEN)

    def _probe(self, batch: list[tuple[str, bytes, int]]) -> list[str]:
        """What copy_many_if_absent would do, read-only (check mode / --dry-run)."""
        layout, now = self.store.layout, time.time()
        found = self.store.would_copy([(layout.session_key(name), True) for name, _value, _expiry in batch])
        return ["expired" if expiry and expiry <= now else
                "would_write" if outcome is CopyResult.WRITTEN else outcome.value
                for (_file_name, _value, expiry), outcome in zip(batch, found, strict=True)]

    def _with_retry(self, operation: Callable[[], Any]) -> Any:
        """Run one batch, retrying while Redis is briefly away (restart, failover).

        Re-sending a batch is safe: copies are copy-if-absent.
        """
        deadline, delay = None, 0.1
        while True:
            try:
                return operation()
            except PERMANENT_ERRORS as exc:
                raise explain(exc, self.settings) from exc
            except TRANSIENT_ERRORS as exc:
                deadline = deadline or time.monotonic() + self.config.retry_seconds
                if time.monotonic() >= deadline:
                    raise explain(exc, self.settings) from exc
                time.sleep(delay)
                delay = min(delay * 2, 2.0)
            except RedisUnavailable:
                raise
            except Exception as exc:  # a refused command (OOM, NOPERM...): classified and re-raised
                if type(exc).__module__.startswith("redis"):
                    raise explain(exc, self.settings) from exc
                raise


# --------------------------------------------------------------------------- checkpoint


class _Checkpoint:
    """``migrate.json``: the shares done, rewritten atomically after each pass."""

    def __init__(self, config: MigrateConfig, endpoint: str):
        self.path = state.state_path(config.state_dir, state.MIGRATE_FILE) if config.state_dir else None
        self.fingerprint = config.fingerprint(endpoint)
        self.record: dict[str, Any] = {}
        self._lock_fd: int | None = None
        self.interrupted = False  # done_shares found an unfinished earlier run with these settings

    def lock(self) -> None:
        if not self.path:
            return
        lock_path = self.path + ".lock"
        try:
            os.makedirs(os.path.dirname(self.path), exist_ok=True)
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise OSError(exc.errno, f"cannot keep the checkpoint in {os.path.dirname(self.path)}: "
                          f"{exc.strerror}; run as the owner of the state directory or pass a "
                          "writable state_dir / --state-dir") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise MigrateBusy(f"another migrate run holds {lock_path}; wait for it to finish") from None
        self._lock_fd = fd

    def unlock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def drop_inherited_lock(self) -> None:
        """In a forked worker: close our copy of the lock, so a rerun after SIGKILL is not blocked."""
        if self._lock_fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._lock_fd)
            self._lock_fd = None

    def done_shares(self, restart: bool) -> set[int]:
        """Shares an unfinished earlier run with the same settings completed."""
        if not self.path or restart:
            return set()
        previous = state.read_json(self.path)
        if not previous or previous.get("complete") or previous.get("fingerprint") != self.fingerprint:
            return set()  # a finished or different run: this one scans everything again
        self.interrupted = True
        return {int(share) for share in previous.get("shares_done", []) if 0 <= int(share) < SHARES}

    def save(self, **changes: Any) -> None:
        if not self.path:
            return
        self.record.update(changes, fingerprint=self.fingerprint, version=CHECKPOINT_VERSION,
                           updated_at=state.utc_now())
        state.write_json(self.path, self.record)


# --------------------------------------------------------------------------- the run


def migrate(settings: RedisSettings, config: MigrateConfig, *, progress: ProgressCallback | None = None,
            before_write: BeforeWrite | None = None) -> MigrateResult:
    """Backfill *config.session_dir* into the Redis of *settings*; see the module docstring.

    ``before_write`` (tests) is called with each batch just before it is written;
    it needs ``workers=1`` (the batch is in this process).
    Raises :class:`RedisUnavailable` (endpoint, cause; the checkpoint lets a rerun
    resume) when Redis stays unreachable for ``retry_seconds``.
    """
    options.at_least("batch_size", config.batch_size, 1)
    options.at_least("retry_seconds", config.retry_seconds, 0)
    options.at_least("max_examples", config.max_examples, 0)
    options.at_least("default_lifetime", config.default_lifetime, 0)
    if not os.path.isdir(config.session_dir):
        raise ValueError(f"session directory {config.session_dir} does not exist or is not a directory")
    workers = config.resolved_workers()
    if before_write and workers != 1:
        raise ValueError("before_write needs workers=1")
    checkpoint = _Checkpoint(config, settings.endpoint) if not config.dry_run else _Checkpoint(
        dataclasses.replace(config, state_dir=None), settings.endpoint)
    checkpoint.lock()
    try:
        return _run(settings, config, workers, checkpoint, progress, before_write)
    finally:
        checkpoint.unlock()


def _run(settings, config, workers, checkpoint, progress, before_write) -> MigrateResult:
    started = time.monotonic()
    skipped = checkpoint.done_shares(config.restart)
    pending = [share for share in range(SHARES) if share not in skipped]
    done: set[int] = set(skipped)
    checkpoint.save(status="running", complete=False, started_at=state.utc_now(), finished_at=None,
                    shares_done=sorted(done), error=None, pid=os.getpid())
    totals: collections.Counter = collections.Counter()
    errors: list[dict[str, str]] = []
    live: collections.Counter = collections.Counter()

    def on_progress(delta: collections.Counter) -> None:
        live.update(delta)
        if progress:
            shown = {name: live[name] for name in COUNT_NAMES[1:] if live[name]}
            progress(Progress("migrate", done=live["scanned"], counts=shown,
                              elapsed=time.monotonic() - started))

    def on_pass(shares: tuple[int, ...], counts: collections.Counter, pass_errors: list) -> None:
        totals.update(counts)
        errors.extend(pass_errors[:max(config.max_examples - len(errors), 0)])
        done.update(shares)
        checkpoint.save(shares_done=sorted(done))

    work = groups(pending, max(workers, MIN_GROUPS))
    workers = min(workers, len(work)) or 1
    probe = checkpoint.interrupted and bool(pending)

    def start_pass(report):
        if workers > 1:
            checkpoint.drop_inherited_lock()  # in a forked worker
        return _Pass(config, SessionStore(connect(settings), config.layout), settings, report, before_write,
                     probe=probe)

    if workers > 1:
        prepare_for_workers(settings)
    try:
        run_groups(work, workers, start_pass, on_progress=on_progress,
                   on_group=lambda shares, outcome: on_pass(shares, *outcome), name="migrate")
    except RedisUnavailable as exc:
        resume = f"{len(done)} of {SHARES} shares done; run migrate again to resume"
        if checkpoint.path:
            resume += f" (checkpoint {checkpoint.path})"
        checkpoint.save(status="failed", error=str(exc), shares_done=sorted(done))
        raise RedisUnavailable(exc.endpoint, exc.cause,
                               "; ".join(filter(None, (exc.hint, resume)))) from exc
    except BaseException as exc:
        checkpoint.save(status="failed", error=f"{type(exc).__name__}: {exc}", shares_done=sorted(done))
        raise
    counts = {name: totals[name] for name in COUNT_NAMES}
    elapsed = time.monotonic() - started
    checkpoint.save(status="complete", complete=True, finished_at=state.utc_now(),
                    generation=config.layout.generation,
                    shares_done=sorted(done), counts=counts, errors=errors[:20],
                    elapsed_seconds=round(elapsed, 3), resumed=checkpoint.interrupted)
    return MigrateResult(counts=counts, errors=errors, shares_done=sorted(done),
                         shares_skipped=sorted(skipped), resumed=checkpoint.interrupted,
                         dry_run=config.dry_run,
                         workers=workers, batch_size=config.batch_size, elapsed=elapsed,
                         checkpoint=checkpoint.path,
                         copied_unread=value_format(config.serializer, config.pickle_protocol).exact)
