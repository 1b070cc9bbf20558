"""Validation: does Redis give the app the same sessions as the files do, type for type?

Each live file session is compared with what the app reads from its Redis
value, *type-exactly* (:mod:`.exact`): the session the file holds is the
truth, so a tuple read back as a list, a UUID as a string or a set as a list
is a ``type_changed`` session, named by file, key path and from -> to type,
and never "consistent". In the exact ``pickle`` format equal bytes settle it
without decoding. Under live traffic some differences are transient (the app
is between its file write and its Redis write), so every difference is checked
again after ``recheck_delay`` seconds and only those that persist count.

The result names session FILE NAMES and key paths only, never session
contents. It is what the phase-3 gate reads from
``<state_dir>/validation.json``: consistency of the comparable sessions
(consistent + missing + different + type_changed; expired, corrupt and
logged-out leftovers are not comparable) against a threshold, 100% by
default, and no type change at all whatever the threshold.

Two kinds of copy phase 3 must never serve are counted on their own, and the
gate needs zero of each (see docs/architecture.md "Generations"):

* ``stale``: a difference that persists and whose Redis expiry is earlier than
  the file's, so Redis holds a save older than the file's last one (one save
  writes both with one expiry);
* ``orphaned`` (``count_orphans``, when this directory holds every host's
  sessions): a session key of the generation with no file here, still there
  on the re-check; ``None`` when not counted, and ``orphaned_not_counted``
  says why (ORPHANS_NOT_COUNTED).
"""

from __future__ import annotations

import collections
import dataclasses
import os
import time
from collections.abc import Callable
from typing import Any

import redis

from . import defaults, exact, options, state
from .export import scan_batches
from .formats import SessionFileError, SessionValueError, decode_payload, read_entry_payload, value_format
from .keys import TOMBSTONE, is_tombstone
from .progress import Progress, ProgressCallback
from .redisconn import RedisClient, command_started
from .shares import SHARES, SessionSource, groups, iter_entries
from .workers import resolve_workers, run_groups

COUNT_NAMES = ("checked", "consistent", "missing", "different", "type_changed", "expired", "corrupt",
               "tombstoned", "vanished", "healed", "unverified", "foreign", "skipped", "stale")
EXAMPLE_KINDS = ("missing", "different", "type_changed", "corrupt", "stale", "orphaned")
DIFFERENCES = ("missing", "different", "type_changed")  # re-checked; counted only if they persist
RECHECK_ROUNDS = 3  # looks at a difference that keeps changing under it, before it counts
STALE_MARGIN = 2  # seconds: the host's and Redis's clocks may disagree this much


@dataclasses.dataclass
class ValidateConfig(SessionSource):
    sample_percent: float = 100.0  # a stable sample of the files (by name), for very large fleets
    threshold: float = 100.0  # minimum % of comparable sessions that must be consistent
    recheck_delay: float = 2.0  # seconds before a difference is looked at again
    max_examples: int = 20  # file names listed per kind of problem
    batch_size: int = defaults.BATCH_SIZE
    default_lifetime: int = 0  # for the seed's sess_<sid> files
    recheck_limit: int = 100_000  # differences kept for the re-check; beyond, counted unverified
    workers: int = 0  # scanning processes; 0: the CPU count, capped
    count_orphans: bool = False  # this directory holds every host's sessions (one host, or shared)

    def check(self) -> None:
        if not 0 < self.sample_percent <= 100:
            raise ValueError(f"sample_percent must be in (0, 100], not {self.sample_percent}")
        if not 0 <= self.threshold <= 100:
            raise ValueError(f"threshold must be in [0, 100], not {self.threshold}")
        options.at_least("recheck_delay", self.recheck_delay, 0)
        options.at_least("batch_size", self.batch_size, 1)
        options.at_least("max_examples", self.max_examples, 0)
        resolve_workers(self.workers)

    def resolved_workers(self) -> int:
        return resolve_workers(self.workers)


@dataclasses.dataclass(slots=True)
class _Session:
    """A live file session, as the scan read it: its value as the app would store it."""

    kind: str  # formats.classify_name's: how to read it again
    name: str
    path: str
    value: bytes  # the session as the app would store it (its serializer)
    source: bytes  # the session exactly as the file holds it (its pickle payload)
    expiry: int = 0
    # The session dict once decoded; None while the file's payload has not been (see _Comparer.read).
    data: dict | None = None
    identity: tuple | None = None  # the file's (inode, mtime, ctime, size) when it was read


def _file_seen(session: _Session) -> tuple | bytes:
    return session.identity if session.identity is not None else session.source


def _identity(info: os.stat_result | None) -> tuple | None:
    """What a save changes in a file: cachelib replaces it by a rename, so a new inode and times."""
    if info is None:
        return None
    return info.st_ino, info.st_mtime_ns, info.st_ctime_ns, info.st_size


@dataclasses.dataclass(slots=True)
class _Pending:
    """A difference waiting for its re-check: where, what it was, when it was seen."""

    kind: str
    name: str
    path: str
    outcome: str  # one of DIFFERENCES
    seen: float
    # What that look saw: the file (its identity, or a seed file's payload) and Redis's value.
    file_seen: tuple | bytes | None = None
    redis_seen: bytes | None = None

    def moved(self, session: _Session, raw: bytes | None) -> bool:
        """Whether the file or the Redis value is no longer what the look that flagged it saw."""
        return _file_seen(session) != self.file_seen or raw != self.redis_seen


class _Comparer:
    """Reads both sides and compares them; counts and (capped) examples of what it found."""

    def __init__(self, client: RedisClient, config: ValidateConfig):
        self.client = client
        self.config = config
        self.standalone = not isinstance(client, redis.cluster.RedisCluster)
        self.counts: collections.Counter = collections.Counter()
        self.examples: dict[str, list] = {kind: [] for kind in EXAMPLE_KINDS}
        self.type_changes: collections.Counter = collections.Counter()  # "tuple -> list": sessions
        self.format = value_format(config.serializer, config.pickle_protocol)
        self.exact_format = value_format("pickle", config.pickle_protocol)

    def read(self, kind: str, name: str, path: str, now: float) -> _Session | str:
        """The live session in *path*, or the count it falls under.

        In the exact format the file's payload is kept undecoded: equal bytes in Redis settle
        the comparison, and only a difference decodes it (:meth:`compare`).
        """
        try:
            file_name, expiry, source, data, info = read_entry_payload(
                kind, name, path, self.exact_format, prefix=self.config.layout.prefix,
                default_lifetime=self.config.default_lifetime)
            if expiry and expiry < now:
                return "expired"
            if not self.format.exact:  # the value is the session re-encoded: decoded first
                data = decode_payload(source, path) if data is None else data
            value = source if self.format.exact else self.format.dumps(data)
        except SessionFileError as exc:
            if exc.reason.startswith("vanished"):
                return "vanished"
            self.example("corrupt", {"file": name, "reason": exc.reason})
            return "corrupt"
        except SessionValueError as exc:  # the file is the problem: the app could not store it either
            self.example("corrupt", {"file": name, "reason": str(exc)})
            return "corrupt"
        return _Session(kind, file_name, path, value, source, expiry, data, _identity(info))

    def fetch(self, sessions: list[_Session]) -> list[tuple[bytes | None, bool]]:
        """(Redis value, tombstoned) for each session: one MGET (a tombstone is the key's value)."""
        return self.start_fetch(sessions)()

    def start_fetch(self, sessions: list[_Session]) -> Callable[[], list[tuple[bytes | None, bool]]]:
        """:meth:`fetch` begun now: on a standalone Redis the MGET is sent at once and the
        returned call reads it (the scan reads the next batch's files meanwhile)."""
        layout = self.config.layout
        keys = [layout.session_key(session.name) for session in sessions]
        if self.standalone:
            reply = command_started(self.client, ["MGET", *keys])
            return lambda: self._with_tombstones(sessions, reply())
        # Keys of a batch live in different slots: a pipeline, split per node by redis-py.
        with self.client.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.get(key)
            values = pipe.execute()
        return lambda: self._with_tombstones(sessions, values)

    @staticmethod
    def _with_tombstones(sessions: list[_Session], values: list[bytes | None],
                         ) -> list[tuple[bytes | None, bool]]:
        """A tombstone is the session key's value after a logout: no session, logged out."""
        return [(None, True) if is_tombstone(value) else (value, False) for value in values]

    def compare(self, session: _Session, raw: bytes | None, tombstoned: bool,
                ) -> tuple[str, exact.Comparison | None]:
        """The outcome for one session, with what changed when a type did.

        Equal bytes in the exact format are the same session, type for type, without a
        decode of either side. Anything else decodes the file first (restricted, budgeted):
        a file that does not decode is ``corrupt``, whatever Redis holds.
        """
        if raw is not None and raw == session.value and self.format.exact:
            return "consistent", None
        if session.data is None:
            try:
                session.data = decode_payload(session.source, session.path)
            except SessionFileError as exc:
                self.example("corrupt", {"file": session.name, "reason": exc.reason})
                return "corrupt", None
        if raw is None:
            return ("tombstoned" if tombstoned else "missing"), None
        try:
            comparison = exact.compare(session.data, self.format.loads(raw))
        except SessionValueError:
            return "different", None  # the Redis value does not decode: not what the app needs
        if comparison.type_change_count:
            return "type_changed", comparison
        return ("different" if comparison.value_differs else "consistent"), None

    def note_type_changes(self, name: str, comparison: exact.Comparison) -> None:
        self.type_changes.update({change.kind for change in comparison.type_changes})
        self.example("type_changed", {"file": name,
                                      "changes": [change.as_dict() for change in comparison.type_changes[:5]],
                                      "count": comparison.type_change_count})

    def example(self, kind: str, value: Any) -> None:
        if len(self.examples[kind]) < self.config.max_examples:
            self.examples[kind].append(value)


class _Scan(_Comparer):
    """One worker's scan of groups of shares: counts, examples, and the differences to re-check."""

    def __init__(self, client: RedisClient, config: ValidateConfig,
                 report: Callable[[collections.Counter], None], owns_client: bool):
        super().__init__(client, config)
        self.report = report
        self.owns_client = owns_client
        self.pending: list[_Pending] = []
        # The batch whose MGET was sent, compared when the next batch is full (Redis answers
        # while this process reads files): (sessions, when sent, the call that reads the reply).
        self._sent: tuple[list[_Session], float, Callable[[], list]] | None = None

    def close(self) -> None:
        if self.owns_client:  # a forked worker's copy of the caller's client
            self.client.close()

    def run(self, shares: tuple[int, ...]) -> tuple[collections.Counter, dict[str, list], list[_Pending]]:
        self.counts, self.examples = collections.Counter(), {kind: [] for kind in EXAMPLE_KINDS}
        self.pending = []
        reported: collections.Counter = collections.Counter()
        batch: list[_Session] = []
        now = time.time()
        for kind, name, path in iter_entries(self.config.session_dir, shares,
                                             sample_percent=self.config.sample_percent):
            if kind in ("cachelib", "foreign"):
                self.counts["skipped" if kind == "cachelib" else "foreign"] += 1
                continue
            self.counts["checked"] += 1
            found = self.read(kind, name, path, now)
            if isinstance(found, str):
                self.counts[found] += 1
                continue
            batch.append(found)
            if len(batch) >= self.config.batch_size:
                self._send(batch)
                batch, now = [], time.time()
                self.report(self.counts - reported)
                reported = self.counts.copy()
        if batch:
            self._send(batch)
        self._compare_sent()
        self.report(self.counts - reported)
        return self.counts, self.examples, self.pending

    def _send(self, batch: list[_Session]) -> None:
        self._compare_sent()  # at most one batch in flight
        seen = time.monotonic()  # system-wide: the parent's re-check waits from it
        self._sent = (batch, seen, self.start_fetch(batch))

    def _compare_sent(self) -> None:
        if self._sent is None:
            return
        (batch, seen, reply), self._sent = self._sent, None
        for session, (raw, tombstoned) in zip(batch, reply(), strict=True):
            outcome, _comparison = self.compare(session, raw, tombstoned)
            if outcome in DIFFERENCES:
                self.pending.append(_Pending(session.kind, session.name, session.path, outcome, seen,
                                             _file_seen(session), raw))
                continue  # counted after the re-check
            self.counts[outcome] += 1


class _Validation(_Comparer):
    """The whole run in this process: the scans' results merged, then the re-check."""

    def __init__(self, client: RedisClient, config: ValidateConfig):
        super().__init__(client, config)
        self.pending: list[_Pending] = []

    def merge(self, counts: collections.Counter, examples: dict[str, list], pending: list[_Pending]) -> None:
        self.counts.update(counts)
        for kind, found in examples.items():
            for value in found:
                self.example(kind, value)
        room = max(self.config.recheck_limit - len(self.pending), 0)
        self.pending += pending[:room]
        for item in pending[room:]:  # too many to re-check: counted as they are
            self.counts["unverified"] += 1
            self.counts[item.outcome] += 1
            self.example(item.outcome, {"file": item.name, "changes": [], "count": None}
                         if item.outcome == "type_changed" else item.name)

    def recheck(self) -> None:
        """Look at every difference again once it is ``recheck_delay`` old; count what persists.

        The app saves a session's two copies one after the other (the file, then Redis), so
        a look can meet a save in flight: it reads the new file and the old Redis value, or
        the file changes while it compares. A difference counts only when two looks in a
        row saw the same file and the same Redis value; one still moving is looked at again
        (up to ``RECHECK_ROUNDS`` times), and the last look counts what it sees.
        """
        pending, self.pending = sorted(self.pending, key=lambda item: item.seen), []
        for round_number in range(1, RECHECK_ROUNDS + 1):
            pending = self._recheck_round(pending, last=round_number == RECHECK_ROUNDS)
            if not pending:
                break

    def _recheck_round(self, pending: list[_Pending], last: bool) -> list[_Pending]:
        """One look at *pending*; returns the differences met mid-save, to look at again."""
        size, moving = self.config.batch_size, []
        for start in range(0, len(pending), size):
            chunk = pending[start:start + size]
            wait = chunk[-1].seen + self.config.recheck_delay - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            sessions, looked, now = [], [], time.time()
            for item in chunk:
                found = self.read(item.kind, item.name, item.path, now)
                if isinstance(found, str):
                    # Gone, expired or broken since: no longer a difference to report.
                    self.counts[found] += 1
                    self.counts["healed"] += found in ("vanished", "expired")
                    continue
                sessions.append(found)
                looked.append(item)
            if not sessions:
                continue
            differing = []
            for item, session, (raw, tombstoned) in zip(looked, sessions, self.fetch(sessions), strict=True):
                outcome, comparison = self.compare(session, raw, tombstoned)
                # A save writes the file, then Redis: a look can fall between the two, or a
                # save can land while it compares. Only a difference that two looks in a row
                # saw unchanged counts (or whatever the last round sees).
                if outcome in DIFFERENCES and not last and (item.moved(session, raw)
                                                            or self._saved_since(session, now)):
                    moving.append(_Pending(session.kind, session.name, session.path, outcome,
                                           time.monotonic(), _file_seen(session), raw))
                    continue
                if comparison is not None:
                    self.note_type_changes(session.name, comparison)
                elif outcome in ("missing", "different"):
                    self.example(outcome, session.name)
                elif outcome in ("consistent", "tombstoned"):
                    self.counts["healed"] += 1
                if outcome == "different":
                    differing.append(session)
                self.counts[outcome] += 1
            self._count_stale(differing)
        return moving

    def _saved_since(self, session: _Session, now: float) -> bool:
        """Whether *session*'s file is no longer what this comparison read (a save landed).

        A save replaces the file (a new inode, new times) and nothing else changes a session
        file in place, so its identity answers without reading or decoding it again.
        """
        if session.expiry and session.expiry < now:
            return True  # expired since: the next look counts it so
        if session.identity is None:  # a seed file: read again
            found = self.read(session.kind, session.name, session.path, now)
            return isinstance(found, str) or found.source != session.source or found.expiry != session.expiry
        try:
            return _identity(os.stat(session.path, follow_symlinks=False)) != session.identity
        except OSError:
            return True  # gone: the next look says what became of it

    def _count_stale(self, sessions: list[_Session]) -> None:
        """Of the persisting differences, those whose Redis copy predates the file's last save."""
        if not sessions:
            return
        layout = self.config.layout
        with self.client.pipeline(transaction=False) as pipe:
            for session in sessions:
                pipe.pttl(layout.session_key(session.name))  # PTTL: Redis 6.2 has no EXPIRETIME
            remaining = pipe.execute()
        now = time.time()
        for session, pttl in zip(sessions, remaining, strict=True):
            # One save writes both copies with one expiry; an expiry earlier by more than the
            # clocks can disagree means Redis holds an older save than the file.
            if pttl > 0 and session.expiry and now + pttl / 1000 < session.expiry - STALE_MARGIN:
                self.counts["stale"] += 1
                self.example("stale", session.name)

    def count_orphans(self) -> int:
        """Session keys of the generation with no live file here, still so after the re-check delay."""
        layout, directory = self.config.layout, self.config.session_dir
        candidates: list[tuple[str, bytes]] = []
        for _node, keys in scan_batches(self.client, layout.session_pattern, self.config.batch_size):
            for key in keys:
                parsed = layout.parse(key)
                if parsed and not os.path.exists(os.path.join(directory, parsed.file_name)):
                    candidates.append((parsed.file_name, key))
        if candidates:
            time.sleep(self.config.recheck_delay)  # a logout removes the file before the key
        orphaned = 0
        for file_name, key in candidates:
            if not os.path.exists(os.path.join(directory, file_name)) and self._holds_session(key):
                orphaned += 1
                self.example("orphaned", file_name)
        return orphaned


    def _holds_session(self, key: bytes) -> bool:
        """Whether *key* holds a session: not gone, and no tombstone (a logout, not an orphan)."""
        head = self.client.getrange(key, 0, len(TOMBSTONE) - 1)
        return bool(head) and not is_tombstone(head)


# Why there is no per-host count: a key names its session's file, not the host that wrote it
# (<prefix>g<N>:h:{file}), and from phase 3 on any host writes any user's key. With one
# directory per host, a key with no file here is as likely another host's live session.
ORPHANS_NOT_COUNTED = (
    "this session directory holds one host's sessions (not shared), and a Redis key names no host, "
    "so a key with no file here may be another host's live session: orphans are counted only with "
    "one app host or one shared directory (rollout_session_dir_shared). With a directory per host, "
    "generations (a copy made before a return to file is never read) and tombstones keep old copies "
    "from being served")


def validate(client: RedisClient, config: ValidateConfig, *, progress: ProgressCallback | None = None,
             before_recheck: Callable[[list[str]], None] | None = None) -> dict[str, Any]:
    """Compare the session directory with Redis; the result is what ``validation.json`` holds.

    ``before_recheck`` (tests, diagnostics) gets the file names about to be
    re-checked, after the scan and before the delay.
    """
    config.check()
    started_at, started = state.utc_now(), time.monotonic()
    run = _Validation(client, config)
    live: collections.Counter = collections.Counter()

    def report(delta: collections.Counter) -> None:
        live.update(delta)
        if progress:
            shown = {name: live[name] for name in ("consistent", "missing", "different", "corrupt")}
            progress(Progress("validate", done=live["checked"], counts=shown,
                              elapsed=time.monotonic() - started))

    workers = config.resolved_workers()
    work = groups(range(SHARES), workers)
    workers = min(workers, len(work))
    run_groups(work, workers, lambda report: _Scan(client, config, report, owns_client=workers > 1),
               on_progress=report, on_group=lambda _shares, found: run.merge(*found), name="validate")
    if before_recheck:
        before_recheck([item.name for item in run.pending])
    run.recheck()
    counts: dict[str, int | None] = {name: run.counts[name] for name in COUNT_NAMES}
    counts["orphaned"] = run.count_orphans() if config.count_orphans else None
    comparable = counts["consistent"] + counts["missing"] + counts["different"] + counts["type_changed"]
    consistency = 100.0 * counts["consistent"] / comparable if comparable else 100.0
    result = {
        "counts": counts,
        "orphaned_not_counted": None if config.count_orphans else ORPHANS_NOT_COUNTED,
        "comparable": comparable,
        "consistency_percent": round(consistency, 4),
        "threshold": config.threshold,
        # A changed type is never within a threshold: the app would read another session.
        # 100 % of nothing is no evidence; a stale or orphaned copy would be served in phase 3.
        "passed": consistency >= config.threshold and not counts["type_changed"] and comparable > 0
        and not counts["stale"] and not counts["orphaned"],
        "type_changes": dict(run.type_changes.most_common()),
        "sample_percent": config.sample_percent,
        "full": config.sample_percent >= 100.0,
        "examples": run.examples,
        "session_dir": config.session_dir,
        "key_prefix": config.layout.prefix,
        "generation": config.layout.generation,
        "serializer": config.serializer,
        "pickle_protocol": config.pickle_protocol,
        "recheck_delay": config.recheck_delay,
        "started_at": started_at,
        "finished_at": state.utc_now(),
        "elapsed_seconds": round(time.monotonic() - started, 3),
    }
    result["message"] = summary(result)
    return result


def summary(result: dict[str, Any]) -> str:
    counts = result["counts"]
    sample = "" if result["full"] else f" ({result['sample_percent']:g}% sample)"
    text = (f"validate{sample}: {result['consistency_percent']:g}% of {result['comparable']:,} comparable "
            f"sessions consistent (threshold {result['threshold']:g}%): {counts['missing']:,} missing in "
            f"Redis, {counts['different']:,} different, {counts['type_changed']:,} with changed types, "
            f"{counts['expired']:,} expired, "
            f"{counts['corrupt']:,} corrupt, {counts['healed']:,} healed on re-check, "
            f"{counts['stale']:,} stale (Redis older than the file), "
            + (f"orphaned not counted ({result.get('orphaned_not_counted') or ORPHANS_NOT_COUNTED})"
               if counts.get("orphaned") is None else
               f"{counts['orphaned']:,} orphaned (in Redis, no live file)"))
    if not result["comparable"]:
        text += "; NOTHING COMPARED: no evidence (are session_dir, key prefix and hash method the app's?)"
    elif counts["type_changed"]:
        kinds = ", ".join(f"{kind} in {n:,}" for kind, n in list(result["type_changes"].items())[:5])
        where = "; ".join(f"{example['file']} {change['path']}: {change['from']} -> {change['to']}"
                          for example in result["examples"]["type_changed"][:3]
                          for change in example["changes"][:1])
        text += (f"; TYPES CHANGED ({kinds}; e.g. {where}): the Redis value format "
                 f"({result['serializer']}) does not keep these sessions; use the exact default "
                 "(pickle): run analyze without --serializer, then migrate and validate again")
    elif not result["passed"]:
        examples = result["examples"]["missing"][:3] + result["examples"]["different"][:3]
        text += (f"; BELOW THRESHOLD (e.g. {', '.join(examples)}): run the backfill (session_migrate / "
                 "'sessionshift migrate') again, then validate")
    return text


def record(state_dir: str, result: dict[str, Any]) -> str:
    """Write *result* to ``<state_dir>/validation.json`` (the phase-3 gate reads it)."""
    path = state.state_path(state_dir, state.VALIDATION_FILE)
    state.write_json(path, result)
    return path
