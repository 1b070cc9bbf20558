"""The rollback path: Redis sessions back into the app's cachelib session directory.

From phase 4 on the app stops writing files, so before any host goes back to
phase 3 or lower every session in Redis must be written back as the cachelib
file the app would have written (``hash(prefix + sid)``, header with the
Redis expiry, pickled session dict). Rollback playbook, per app host:

1. ``export`` (this module) while the host is still in phase 4 / 5;
2. flip the phase back to 3 (the app now writes Redis AND file again);
3. a catch-up ``export``: it rewrites only the sessions that changed between
   1 and 2, so afterwards no file is older than Redis.

Rules this module keeps:

* one SCAN over ``<prefix>*`` per primary (cluster: every primary), keys
  filtered by :meth:`KeyLayout.parse`: hashed keys and stock Flask-Session
  keys are exported; a hashed key that holds the logout tombstone
  (``keys.TOMBSTONE``) removes the logged-out session's stale file and is
  never written out;
* files are written as the app's ORIGINAL library reads them: the header
  style and pickle protocol of the source profile (never protocol 5 for a
  source that used 4: Python 3.7 cannot read it). A value in the exact
  ``pickle`` format becomes the file's payload byte for byte once the
  restricted unpickler has accepted it; other values (msgpack, stock keys in
  whatever format the app's Flask-Session wrote) are decoded and pickled. A
  value that cannot be decoded is reported by key name (never its contents)
  and skipped;
* a file whose bytes, or whose session (type for type), already match
  Redis is not rewritten, so a second run changes nothing;
* under live writes a file is never left older than Redis: after a batch is
  written its keys are read again, and any that changed meanwhile are written
  again (at most ``max_rounds`` times; the rest are reported as unstable and
  the catch-up export settles them);
* files are written atomically with the directory's owner and group and
  mode 0600 unless told otherwise;
* the result is recorded in ``state_dir/export.json``: ``session_phase``
  refuses to leave phase 4/5 for 3 or lower without an export that finished
  after phase 4 began.
"""

from __future__ import annotations

import dataclasses
import errno
import os
import stat
import time
from collections.abc import Iterator

import redis
import redis.cluster
from redis.exceptions import RedisError, ResponseError

from . import defaults, exact, formats, options, state
from .formats import HeaderStyle, SerializerName, SessionFileError, SessionValueError
from .keys import KeyLayout, is_tombstone
from .phasefile import read_phase
from .profile import resolve
from .progress import Progress, ProgressCallback
from .redisconn import RedisClient, RedisUnavailable, client_endpoint, pipeline_with_script
from .store import EXPIRY_SCRIPT, absolute_expiry, stock_keys_current
from .workers import resolve_workers, run_groups

DEFAULT_BATCH = defaults.BATCH_SIZE
DEFAULT_MAX_ROUNDS = 5
MAX_AUTO_WORKERS = 4
LIST_LIMIT = 50  # key names kept in a result's lists (undecodable, unstable)

# --------------------------------------------------------------------------- scanning


def primary_clients(client: RedisClient) -> list[redis.Redis]:
    """One plain client per primary: the client itself, or each cluster primary's."""
    if is_cluster(client):
        return [client.get_redis_connection(node) for node in client.get_primaries()]
    return [client]


def scan_batches(client: RedisClient, pattern: str, batch_size: int = DEFAULT_BATCH,
                 ) -> Iterator[tuple[redis.Redis, list[bytes]]]:
    """(node, keys) batches of every key matching *pattern* on every primary.

    Streamed: at most one batch is held at a time. SCAN may return a key twice
    (during a rehash); callers are idempotent per key.
    """
    for node in primary_clients(client):
        batch: list[bytes] = []
        for key in node.scan_iter(match=pattern, count=batch_size):
            batch.append(key)
            if len(batch) >= batch_size:
                yield node, batch
                batch = []
        if batch:
            yield node, batch


# The values come from one MGET beside the expiry script: read through Lua, every value
# would be copied into a Lua string and back, which cost Redis more than the rest of the
# export's work.
_NOT_A_STRING = ResponseError("WRONGTYPE not a string value")


def is_cluster(client: RedisClient) -> bool:
    return isinstance(client, redis.cluster.RedisCluster)


def fetch_with_expiry(node: redis.Redis, keys: list[str], *, millis: bool = False, scripted: bool = True,
                      ) -> list[tuple[bytes | ResponseError | None, int]]:
    """(value, expiry) per key in one round trip; expiry 0 = none, -2 = missing.

    The expiry is absolute, as EXPIRETIME (epoch seconds) or, with *millis*,
    PEXPIRETIME would give it, but computed from TIME and PTTL, which every
    engine the role provisions has (EXPIRETIME needs Redis 7.0).
    A key that is not a string (someone else's hash under our prefix) gives a
    WRONGTYPE error as the value instead of failing the whole batch.

    On one Redis (*scripted*) a batch is one round trip of two commands: an
    MGET and a script returning the clock and every PTTL (redis-py packs and
    parses each command in Python, and two commands per key would cost more
    than writing the key's file). A cluster batch spans many hash slots, which
    neither may touch, so there it is a pipeline of TIME, then GET + PTTL per
    key: an expiry is then early by at most the pipeline's run on the server.
    """
    if scripted:
        script = node.register_script(EXPIRY_SCRIPT)

        def fill(pipe) -> None:
            pipe.mget(keys)
            pipe.evalsha(script.sha, len(keys), *keys)

        values, (now_ms, *pttls) = pipeline_with_script(node, script, fill)
        fetched = [(value, absolute_expiry(now_ms, pttl, millis=millis))
                   for value, pttl in zip(values, pttls, strict=True)]
        # MGET answers nil for a key that is not a string, and for one made after it:
        # ask those few again, one by one.
        unclear = [index for index, (value, expiry) in enumerate(fetched) if value is None and expiry != -2]
        if unclear:
            again = fetch_with_expiry(node, [keys[index] for index in unclear], millis=millis, scripted=False)
            for index, pair in zip(unclear, again, strict=True):
                fetched[index] = pair
        return fetched
    pipe = node.pipeline(transaction=False)
    pipe.time()
    for key in keys:
        pipe.get(key)
        pipe.pttl(key)
    clock, *replies = pipe.execute(raise_on_error=False)
    if isinstance(clock, Exception):
        raise clock
    now_ms = clock[0] * 1000 + clock[1] // 1000
    fetched = []
    for value, pttl in zip(replies[::2], replies[1::2], strict=True):
        for reply in (value, pttl):
            if isinstance(reply, Exception) and not isinstance(reply, ResponseError):
                raise reply  # a connection problem, not one key's
        if isinstance(value, ResponseError):
            value = _NOT_A_STRING  # someone else's hash (or list...) under our prefix
        fetched.append((value, absolute_expiry(now_ms, pttl, millis=millis)))
    return fetched


# --------------------------------------------------------------------------- results


@dataclasses.dataclass
class ExportResult:
    session_dir: str
    dry_run: bool = False
    scanned: int = 0  # session keys seen (tombstones among them)
    written: int = 0  # files created or replaced (would be, in a dry run)
    unchanged: int = 0  # files that already matched Redis
    removed: int = 0  # stale files of logged-out sessions (tombstoned, or stock key deleted)
    expired: int = 0  # keys whose expiry passed during the run
    vanished: int = 0  # keys deleted between SCAN and GET
    rewrites: int = 0  # extra writes because the app changed a session meanwhile
    undecodable: int = 0
    unstable: int = 0  # still changing after max_rounds writes
    # Hashed file names, never key names: a stock key's name is the live session id.
    undecodable_files: list[str] = dataclasses.field(default_factory=list)
    unstable_files: list[str] = dataclasses.field(default_factory=list)
    removed_files: list[str] = dataclasses.field(default_factory=list)
    started_at: str = ""
    finished_at: str = ""
    phase: str | None = None
    source: str = "redis"  # or "backup taken <when>": files_from_backup, Redis being gone
    # files_from_backup only: what Redis acknowledged after the backup started, from the ledger
    after_backup: dict | None = None

    @property
    def keys_exported(self) -> int:
        """Sessions whose file now matches Redis."""
        return self.written + self.unchanged

    @property
    def changed(self) -> bool:
        return bool(self.written or self.removed)

    def merge(self, other: ExportResult) -> None:
        """Add a worker's counts for one batch."""
        for name in ("scanned", "written", "unchanged", "removed", "expired", "vanished", "rewrites",
                     "undecodable", "unstable"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        for name in ("undecodable_files", "unstable_files", "removed_files"):
            mine = getattr(self, name)
            mine.extend(getattr(other, name)[:max(LIST_LIMIT - len(mine), 0)])

    def as_dict(self) -> dict:
        result = dataclasses.asdict(self)
        result["keys_exported"] = self.keys_exported
        result["changed"] = self.changed
        return result


def _note(names: list[str], name: str) -> None:
    if len(names) < LIST_LIMIT:
        names.append(name)


# --------------------------------------------------------------------------- files


@dataclasses.dataclass(frozen=True)
class FileOwner:
    """Mode, owner and group for the files an export writes."""

    mode: int = 0o600
    uid: int | None = None  # None: leave as created
    gid: int | None = None

    @classmethod
    def of_directory(cls, directory: str, mode: int = 0o600, uid: int | None = None,
                     gid: int | None = None) -> FileOwner:
        """The app's ownership: uid/gid from *directory* unless given.

        Ids the kernel would give a new file anyway are dropped, so an export
        run as the app's own user needs no chown (and no privilege).
        """
        info = os.stat(directory)
        uid = info.st_uid if uid is None else uid
        gid = info.st_gid if gid is None else gid
        default_gid = info.st_gid if info.st_mode & stat.S_ISGID else os.getegid()
        return cls(mode=mode, uid=None if uid == os.geteuid() else uid,
                   gid=None if gid == default_gid else gid)


def _read_bytes(path: str) -> bytes | None:
    """The current file's bytes; None if absent, b"" if it is not a regular file.

    Never follows a symlink nor blocks on a FIFO planted under a session's
    name: such an entry is simply replaced by the rename.
    """
    try:
        return formats.read_regular_file(path)[0]
    except FileNotFoundError:
        return None
    except formats.NotRegularFile:
        return b""
    except SessionFileError as exc:
        if exc.reason.startswith("too large"):
            return b"\0"  # not a session the export could have written: replaced
        raise OSError(errno.EACCES, exc.reason, path) from None


def _same_session(existing: bytes, expected: bytes, data: dict, expiry: int, header_style: HeaderStyle,
                  protocol: int, path: str) -> bool:
    """Whether the file already gives the app this session: the same bytes, or the same
    session type for type in the header style and a protocol the app's library reads."""
    if existing == expected:
        return True
    try:
        file_expiry, file_data, style, offset = formats.parse_cachelib_file(existing, path)
    except (SessionFileError, SessionValueError):
        return False  # a corrupt or hostile file is simply replaced
    return (style == header_style and file_expiry == expiry
            and formats.payload_protocol(existing[offset:]) <= protocol
            and exact.compare(data, file_data).exact)


def _remove(path: str) -> bool:
    try:
        os.unlink(path)
    except FileNotFoundError:
        return False
    return True


# --------------------------------------------------------------------------- the export


@dataclasses.dataclass
class _Job:
    """One session to bring into its file: the key to read and the file to write."""

    key: str
    file_name: str
    # A missing key means "logged out" for a stock key (phase 5 deletes leave
    # no tombstone). A hashed key may also vanish because phase 5 moved it to
    # its stock key: then its file stays; a logout leaves the tombstone in it.
    missing_means_logout: bool = False
    stock: bool = False  # a stock Flask-Session key: its value is in Flask-Session's format


class Exporter:
    """Redis -> cachelib files for one key layout and one session directory."""

    def __init__(self, client: RedisClient, layout: KeyLayout, session_dir: str, *,
                 serializer: SerializerName = formats.DEFAULT_SERIALIZER,
                 header_style: HeaderStyle = "struct", protocol: int = formats.DEFAULT_PICKLE_PROTOCOL,
                 owner: FileOwner | None = None, batch_size: int = DEFAULT_BATCH,
                 max_rounds: int = DEFAULT_MAX_ROUNDS, dry_run: bool = False,
                 progress: ProgressCallback | None = None):
        if not os.path.isdir(session_dir):
            raise FileNotFoundError(f"session directory {session_dir} does not exist "
                                    "(create it with the app's owner, or check session_dir)")
        if header_style not in formats.HEADER_STYLES:
            raise ValueError(f"unknown header style {header_style!r}; "
                             f"expected one of {', '.join(formats.HEADER_STYLES)}")
        self.client = client
        self.scripted = not is_cluster(client)
        self.layout = layout
        self.session_dir = session_dir
        self.serializer = serializer
        self.header_style = header_style
        self.protocol = protocol
        self.format = formats.value_format(serializer, protocol)
        self.stock_format = formats.stock_format(formats.STOCK_SERIALIZER, protocol)
        self.owner = owner or FileOwner.of_directory(session_dir)
        self.batch_size = batch_size
        self.max_rounds = max(1, max_rounds)
        self.dry_run = dry_run
        self.progress = progress
        self.result = ExportResult(session_dir, dry_run=dry_run)

    def run(self, workers: int = 1) -> ExportResult:
        self.result.started_at = state.utc_now()
        # Stock keys count only in a generation that moved sessions there (phase 5); any other
        # is older than the host's last return to file and may belong to a logged-out user.
        self.stock_current = stock_keys_current(self.client, self.layout)
        self._started, self._seen = time.monotonic(), 0
        # One SCAN over the whole prefix finds hashed and stock keys
        # at once; a second SCAN for the hashed pattern would read them twice.
        batches = scan_batches(self.client, self.layout.all_pattern, self.batch_size)
        if workers > 1:
            self._run_forked(batches, workers)
        else:
            for node, keys in batches:
                self._export_keys(node, keys)
                self._report(len(keys))
        self.result.finished_at = state.utc_now()
        return self.result

    def _export_keys(self, node: redis.Redis, keys: list[bytes]) -> None:
        jobs = self._jobs(keys)
        self.result.scanned += len(jobs)
        if jobs:
            self._export(node, jobs)

    def _report(self, keys_seen: int) -> None:
        self._seen += keys_seen
        if self.progress is not None:
            counts = {"written": self.result.written, "unchanged": self.result.unchanged,
                      "removed": self.result.removed, "undecodable": self.result.undecodable}
            self.progress(Progress("export", self._seen, None, counts, time.monotonic() - self._started))

    # -- both cores: this process scans, forked workers fetch, decode and write --------
    def _run_forked(self, batches: Iterator[tuple[redis.Redis, list[bytes]]], workers: int) -> None:
        nodes = primary_clients(self.client)  # the same objects scan_batches yields
        node_index = {id(node): index for index, node in enumerate(nodes)}
        # fork: the workers inherit the client (redis-py opens new connections in a
        # child) and need no re-import; run_groups reads the scan as they go.
        run_groups(((node_index[id(node)], keys) for node, keys in batches), workers,
                   lambda _report: _ExportPass(self, nodes), on_progress=lambda _delta: None,
                   on_group=self._merge, name="export")

    def _merge(self, _batch, outcome: tuple[ExportResult, int]) -> None:
        counts, keys_seen = outcome
        self.result.merge(counts)
        self._report(keys_seen)

    def _jobs(self, keys: list[bytes]) -> list[_Job]:
        jobs = []
        for raw_key in keys:
            parsed = self.layout.parse(raw_key)
            if parsed is None:
                continue
            stock = parsed.kind == "stock"
            if stock and not self.stock_current:
                continue
            jobs.append(_Job(raw_key.decode(), parsed.file_name, stock, stock))
        return jobs

    def _export(self, node: redis.Redis, jobs: list[_Job]) -> None:
        for round_number in range(self.max_rounds):
            written = self._write_round(node, jobs)
            if self.dry_run or not written:
                return
            # The app may have changed a session between our GET and our
            # rename: read the written keys again and redo those that moved on.
            jobs = self._changed_since(node, written)
            if not jobs:
                return
            if round_number + 1 < self.max_rounds:
                self.result.rewrites += len(jobs)
        self.result.unstable += len(jobs)
        for job in jobs:
            _note(self.result.unstable_files, job.file_name)

    def _write_round(self, node: redis.Redis, jobs: list[_Job]) -> list[tuple[_Job, bytes | None, int]]:
        """Bring each job's file in line with Redis; the (job, value, expiry) written."""
        written = []
        now = time.time()
        fetched = fetch_with_expiry(node, [job.key for job in jobs], scripted=self.scripted)
        for job, (value, expiry) in zip(jobs, fetched, strict=True):
            if value is None or expiry == -2:
                self._missing(job)
            elif is_tombstone(value) and not job.stock:
                self._logged_out(job)  # the tombstone: its file goes, none is written
            elif isinstance(value, ResponseError):
                self._undecodable(job)
            elif expiry and expiry <= now:
                self.result.expired += 1
            elif self._write(job, value, expiry):
                written.append((job, value, expiry))
        return written

    def _write(self, job: _Job, value: bytes, expiry: int) -> bool:
        fmt = self.stock_format if job.stock else self.format
        try:
            data = fmt.loads(value)  # also the check that lets an exact value be the payload
        except SessionValueError:
            if not job.stock:
                self._undecodable(job)
                return False
            try:  # stock Flask-Session reads a pickled value too (its pre-0.7 format)
                fmt = self.format if self.format.exact else formats.value_format("pickle", self.protocol)
                data = fmt.loads(value)
            except SessionValueError:
                self._undecodable(job)
                return False
        payload = fmt.file_payload(value, data)
        expected = formats.encode_cachelib(data, expiry, self.header_style, self.protocol, payload)
        path = os.path.join(self.session_dir, job.file_name)
        existing = _read_bytes(path)
        if existing is not None and _same_session(existing, expected, data, expiry, self.header_style,
                                                  self.protocol, path):
            self.result.unchanged += 1
            return False
        if not self.dry_run:
            formats.write_session_file(self.session_dir, job.file_name, data, expiry,
                                       content=expected, mode=self.owner.mode, uid=self.owner.uid,
                                       gid=self.owner.gid)
        self.result.written += 1
        return True

    def _undecodable(self, job: _Job) -> None:
        self.result.undecodable += 1
        _note(self.result.undecodable_files, job.file_name)  # not the key: it may hold the sid

    def _missing(self, job: _Job) -> None:
        """A key gone since SCAN (or since its file was written): only a stock key's absence is a
        logout (a logout leaves the tombstone in a hashed key; phase 5 moves hashed keys away)."""
        if job.missing_means_logout:
            self._logged_out(job)
        else:
            self.result.vanished += 1  # expired or moved: nothing to write

    def _logged_out(self, job: _Job) -> None:
        path = os.path.join(self.session_dir, job.file_name)
        present = os.path.lexists(path) if self.dry_run else _remove(path)
        if present:
            self.result.removed += 1
            _note(self.result.removed_files, job.file_name)

    def _changed_since(self, node: redis.Redis, written: list[tuple[_Job, bytes | None, int]]) -> list[_Job]:
        current = fetch_with_expiry(node, [job.key for job, _value, _expiry in written],
                                    scripted=self.scripted)
        changed = []
        for (job, value, expiry), now_value in zip(written, current, strict=True):
            if now_value != (value, expiry):
                self.result.written -= 1  # counted again when it is rewritten
                changed.append(job)
        return changed


class _ExportPass:
    """A forked worker's part of an export: fetch, decode and write one batch of keys at a time."""

    def __init__(self, exporter: Exporter, nodes: list[redis.Redis]):
        self.exporter, self.nodes = exporter, nodes

    def run(self, batch: tuple[int, list[bytes]]) -> tuple[ExportResult, int]:
        index, keys = batch
        exporter = self.exporter
        exporter.result = ExportResult(exporter.session_dir, dry_run=exporter.dry_run)  # this batch's counts
        try:
            exporter._export_keys(self.nodes[index], keys)
        except RedisError as exc:
            raise RedisUnavailable(client_endpoint(self.nodes[index]),
                                   f"{type(exc).__name__}: {exc}") from None
        return exporter.result, len(keys)

    def close(self) -> None:
        """Nothing to release: the worker's connections close when it exits."""


def export_sessions(client: RedisClient, layout: KeyLayout, session_dir: str, *,
                    serializer: SerializerName | None = None, header_style: HeaderStyle | None = None,
                    protocol: int | None = None, mode: int = 0o600, uid: int | None = None,
                    gid: int | None = None, state_dir: str | None = None, batch_size: int = DEFAULT_BATCH,
                    max_rounds: int = DEFAULT_MAX_ROUNDS, dry_run: bool = False, workers: int = 0,
                    progress: ProgressCallback | None = None) -> ExportResult:
    """Export every session in Redis to *session_dir*; record it in ``state_dir/export.json``.

    Writing files is the bottleneck, so ``workers`` processes (default ``0``:
    one per CPU, at most 4) are forked to fetch, decode and write while this
    one scans; ``workers=1`` does everything in this process.

    *serializer*, *header_style* and *protocol* left None come from the source
    profile recorded in *state_dir* (else a look at the files, else the
    defaults), so the files are what the app's original library reads; given
    ones that contradict it raise :class:`~sessionshift.profile.ProfileConflict`.
    """
    options.at_least("batch_size", batch_size, 1)
    options.at_least("max_rounds", max_rounds, 1)
    workers = resolve_workers(workers) if workers else min(os.cpu_count() or 1, MAX_AUTO_WORKERS)
    if not isinstance(mode, int) or isinstance(mode, bool) or mode & 0o600 != 0o600 or mode > 0o7777:
        raise ValueError(f"mode {mode!r} must be a file mode that keeps read and write for the owner (0o600)")
    settings = resolve(state_dir, session_dir, {"serializer": serializer, "header_style": header_style,
                                                "pickle_protocol": protocol},
                       needs=("serializer", "header_style", "pickle_protocol"))
    serializer, header_style, protocol = settings.serializer, settings.header_style, settings.pickle_protocol
    owner = FileOwner.of_directory(session_dir, mode, uid, gid) if os.path.isdir(session_dir) else None
    exporter = Exporter(client, layout, session_dir, serializer=serializer, header_style=header_style,
                        protocol=protocol, owner=owner, batch_size=batch_size, max_rounds=max_rounds,
                        dry_run=dry_run,
                        progress=progress)
    result = exporter.run(workers)
    if state_dir:
        result.phase = recorded_phase(state_dir)
        if not dry_run:
            record_export(state_dir, result, layout)
    return result


def record_export(state_dir: str, result: ExportResult, layout: KeyLayout) -> None:
    """``export.json``: when the export finished, what it covered (directory, prefix,
    generation) and what it did; session_phase reads it before leaving phase 4 or 5."""
    record = result.as_dict()
    for name in ("undecodable_files", "unstable_files", "removed_files", "dry_run", "changed"):
        record.pop(name)
    record.update(session_dir=os.path.realpath(result.session_dir), key_prefix=layout.prefix,
                  generation=layout.generation)
    record["complete"] = not (result.undecodable or result.unstable)
    state.write_json(state.state_path(state_dir, state.EXPORT_FILE), record)


def recorded_phase(state_dir: str) -> str | None:
    """The host's phase label from ``phase.json``, or None if absent or unreadable.

    An export must still run on a host whose phase file is damaged: then the
    phase is unknown (None), not an error.
    """
    try:
        record = read_phase(state_dir)
    except (ValueError, OSError):
        return None
    return record.phase.label if record.exists else None
