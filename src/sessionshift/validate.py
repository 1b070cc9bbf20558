"""Validation: does Redis give the app the same sessions as the files do?

Each live file session is compared with its Redis value *as the app would read
it* (``formats.same_for_app``: msgpack is lossy, so both sides go through the
app's serializer). Under live traffic some differences are transient (the app
is between its file write and its Redis write), so every difference is checked
again after ``recheck_delay`` seconds and only those that persist count.

The result names session FILE NAMES only, never session contents. It is what
the phase-3 gate reads from ``<state_dir>/validation.json``: consistency of the
comparable sessions (consistent + missing + different; expired, corrupt and
logged-out leftovers are not comparable) against a threshold, 100% by default.
"""

from __future__ import annotations

import collections
import dataclasses
import time
from collections.abc import Callable
from typing import Any

from . import state
from .formats import (
    FileSession,
    SerializerName,
    SessionFileError,
    SessionValueError,
    read_session_file,
    same_for_app,
)
from .keys import KeyLayout
from .progress import Progress, ProgressCallback
from .redisconn import RedisClient
from .shares import iter_entries

COUNT_NAMES = ("checked", "consistent", "missing", "different", "expired", "corrupt", "tombstoned",
               "vanished", "healed", "unverified", "foreign", "skipped")


@dataclasses.dataclass
class ValidateConfig:
    session_dir: str
    layout: KeyLayout = dataclasses.field(default_factory=KeyLayout)
    serializer: SerializerName = "msgpack"
    sample_percent: float = 100.0  # a stable sample of the files (by name), for very large fleets
    threshold: float = 100.0  # minimum % of comparable sessions that must be consistent
    recheck_delay: float = 2.0  # seconds before a difference is looked at again
    max_examples: int = 20  # file names listed per kind of problem
    batch_size: int = 500
    default_lifetime: int = 0  # for the seed's sess_<sid> files
    recheck_limit: int = 100_000  # differences kept for the re-check; beyond, counted unverified

    def check(self) -> None:
        if not 0 < self.sample_percent <= 100:
            raise ValueError(f"sample_percent must be in (0, 100], not {self.sample_percent}")
        if not 0 <= self.threshold <= 100:
            raise ValueError(f"threshold must be in [0, 100], not {self.threshold}")
        if self.recheck_delay < 0 or self.batch_size < 1:
            raise ValueError("recheck_delay must be >= 0 and batch_size >= 1")


@dataclasses.dataclass(slots=True)
class _Pending:
    """A difference waiting for its re-check: where, what, when it was seen."""

    name: str
    path: str
    seen: float


class _Validation:
    def __init__(self, client: RedisClient, config: ValidateConfig):
        self.client = client
        self.config = config
        self.counts: collections.Counter = collections.Counter()
        self.examples: dict[str, list] = {"missing": [], "different": [], "corrupt": []}
        self.pending: list[_Pending] = []

    # -- reading both sides ------------------------------------------------------------
    def _read(self, path: str) -> FileSession | str:
        """The live session in *path*, or the count it falls under."""
        try:
            session = read_session_file(path, prefix=self.config.layout.prefix,
                                        default_lifetime=self.config.default_lifetime)
        except SessionFileError as exc:
            if exc.reason.startswith("vanished"):
                return "vanished"
            self._example("corrupt", {"file": exc.path.rsplit("/", 1)[-1], "reason": exc.reason})
            return "corrupt"
        return "expired" if session.expired() else session

    def _fetch(self, sessions: list[FileSession]) -> list[tuple[bytes | None, bool]]:
        """(Redis value, tombstoned) for each session, one pipeline."""
        layout = self.config.layout
        with self.client.pipeline(transaction=False) as pipe:
            for session in sessions:
                pipe.get(layout.session_key(session.file_name))
                pipe.exists(layout.tombstone_key(session.file_name))
            answers = pipe.execute()
        return [(answers[i], bool(answers[i + 1])) for i in range(0, len(answers), 2)]

    def _compare(self, session: FileSession, raw: bytes | None, tombstoned: bool) -> str:
        if raw is None:
            return "tombstoned" if tombstoned else "missing"
        try:
            return "consistent" if same_for_app(session.data, raw, self.config.serializer) else "different"
        except SessionValueError as exc:
            # The file's data cannot be stored by the app's serializer: the file is the problem.
            if "cannot encode" in str(exc):
                self._example("corrupt", {"file": session.file_name, "reason": str(exc)})
                return "corrupt"
            return "different"  # the Redis value does not decode: not what the app needs

    def _example(self, kind: str, value: Any) -> None:
        if len(self.examples[kind]) < self.config.max_examples:
            self.examples[kind].append(value)

    # -- the scan ----------------------------------------------------------------------
    def scan(self, progress: Callable[[], None]) -> None:
        batch: list[FileSession] = []
        for kind, _name, path in iter_entries(self.config.session_dir,
                                              sample_percent=self.config.sample_percent):
            if kind in ("cachelib", "foreign"):
                self.counts["skipped" if kind == "cachelib" else "foreign"] += 1
                continue
            self.counts["checked"] += 1
            found = self._read(path)
            if isinstance(found, str):
                self.counts[found] += 1
                continue
            batch.append(found)
            if len(batch) >= self.config.batch_size:
                self._compare_batch(batch)
                batch = []
                progress()
        if batch:
            self._compare_batch(batch)
        progress()

    def _compare_batch(self, batch: list[FileSession]) -> None:
        now = time.monotonic()
        for session, (raw, tombstoned) in zip(batch, self._fetch(batch), strict=True):
            outcome = self._compare(session, raw, tombstoned)
            if outcome in ("missing", "different"):
                if len(self.pending) < self.config.recheck_limit:
                    self.pending.append(_Pending(session.file_name, session.path, now))
                    continue
                self.counts["unverified"] += 1  # too many to re-check: counted as they are
                self._example(outcome, session.file_name)
            self.counts[outcome] += 1

    # -- the re-check --------------------------------------------------------------------
    def recheck(self) -> None:
        """Look at every difference again once it is ``recheck_delay`` old; count what persists."""
        pending, self.pending = self.pending, []
        size = self.config.batch_size
        for start in range(0, len(pending), size):
            chunk = pending[start:start + size]
            wait = chunk[-1].seen + self.config.recheck_delay - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            sessions = []
            for item in chunk:
                found = self._read(item.path)
                if isinstance(found, str):
                    # Gone, expired or broken since: no longer a difference to report.
                    self.counts[found] += 1
                    self.counts["healed"] += found in ("vanished", "expired")
                    continue
                sessions.append(found)
            if not sessions:
                continue
            for session, (raw, tombstoned) in zip(sessions, self._fetch(sessions), strict=True):
                outcome = self._compare(session, raw, tombstoned)
                if outcome in ("missing", "different"):
                    self._example(outcome, session.file_name)
                elif outcome in ("consistent", "tombstoned"):
                    self.counts["healed"] += 1
                self.counts[outcome] += 1


def validate(client: RedisClient, config: ValidateConfig, *, progress: ProgressCallback | None = None,
             before_recheck: Callable[[list[str]], None] | None = None) -> dict[str, Any]:
    """Compare the session directory with Redis; the result is what ``validation.json`` holds.

    ``before_recheck`` (tests, diagnostics) gets the file names about to be
    re-checked, after the scan and before the delay.
    """
    config.check()
    started_at, started = state.utc_now(), time.monotonic()
    run = _Validation(client, config)

    def report() -> None:
        if progress:
            shown = {name: run.counts[name] for name in ("consistent", "missing", "different", "corrupt")}
            progress(Progress("validate", done=run.counts["checked"], counts=shown,
                              elapsed=time.monotonic() - started))

    run.scan(report)
    if before_recheck:
        before_recheck([item.name for item in run.pending])
    run.recheck()
    counts = {name: run.counts[name] for name in COUNT_NAMES}
    comparable = counts["consistent"] + counts["missing"] + counts["different"]
    consistency = 100.0 * counts["consistent"] / comparable if comparable else 100.0
    result = {
        "counts": counts,
        "comparable": comparable,
        "consistency_percent": round(consistency, 4),
        "threshold": config.threshold,
        "passed": consistency >= config.threshold,
        "sample_percent": config.sample_percent,
        "full": config.sample_percent >= 100.0,
        "examples": run.examples,
        "session_dir": config.session_dir,
        "key_prefix": config.layout.prefix,
        "serializer": config.serializer,
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
            f"Redis, {counts['different']:,} different, {counts['expired']:,} expired, "
            f"{counts['corrupt']:,} corrupt, {counts['healed']:,} healed on re-check")
    if not result["passed"]:
        examples = result["examples"]["missing"][:3] + result["examples"]["different"][:3]
        text += (f"; BELOW THRESHOLD (e.g. {', '.join(examples)}): run the backfill (session_migrate / "
                 "'sessionshift migrate') again, then validate")
    return text


def record(state_dir: str, result: dict[str, Any]) -> str:
    """Write *result* to ``<state_dir>/validation.json`` (the phase-3 gate reads it)."""
    path = state.state_path(state_dir, state.VALIDATION_FILE)
    state.write_json(path, result)
    return path
