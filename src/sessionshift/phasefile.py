"""The per-host phase file (``state_dir/phase.json``): read it, watch it, move it.

    {"phase": "dual_write", "number": 2, "changed_at": "...", "changed_by": "ops",
     "redis_only_since": null,
     "history": [{"from": "file", "to": "dual_write", "at": "...", "by": "ops", "forced": false}]}

A missing file means phase ``file`` (nothing was ever migrated). The file is
replaced atomically (``state.write_json``), so a reader never sees half of it.

``redis_only_since`` records when the host last entered phase 4 or 5 from 3 or
lower: from then on files stop being written, so a rollback to 3 or lower needs
an export (``export.json``) that finished after that moment. It is kept outside
the history so that trimming the history to its last entries never loses it.
"""

from __future__ import annotations

import dataclasses
import datetime
import os
import threading
import time
from typing import Any

from . import state
from .phases import Phase, check_transition

HISTORY_LENGTH = 20


@dataclasses.dataclass(frozen=True)
class PhaseRecord:
    phase: Phase
    history: tuple[dict, ...] = ()
    changed_at: str | None = None
    changed_by: str | None = None
    redis_only_since: str | None = None
    exists: bool = True

    def as_json(self) -> dict[str, Any]:
        return {
            "phase": self.phase.label,
            "number": int(self.phase),
            "changed_at": self.changed_at,
            "changed_by": self.changed_by,
            "redis_only_since": self.redis_only_since,
            "history": list(self.history),
        }


def phase_path(state_dir: str) -> str:
    return state.state_path(state_dir, state.PHASE_FILE)


def read_phase(state_dir: str) -> PhaseRecord:
    """The host's phase record; phase ``file`` if there is no phase file.

    Raises ValueError (naming the file and the fix) if the file is corrupt.
    """
    path = phase_path(state_dir)
    document = state.read_json(path)
    if document is None:
        return PhaseRecord(Phase.FILE, exists=False)
    try:
        phase = Phase.parse(document.get("phase", ""))
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}; set it again with the session_phase module") from None
    history = document.get("history") or []
    if not isinstance(history, list):
        raise ValueError(f"{path}: 'history' must be a list")
    return PhaseRecord(phase, tuple(h for h in history if isinstance(h, dict)),
                       document.get("changed_at"), document.get("changed_by"),
                       document.get("redis_only_since"))


def _parse_time(text: str | None) -> datetime.datetime | None:
    if not text:
        return None
    try:
        value = datetime.datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except ValueError:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=datetime.UTC)
    return value.replace(microsecond=0)  # state.utc_now() writes whole seconds


def export_finished_since(state_dir: str, record: PhaseRecord) -> bool:
    """Whether ``export.json`` records an export that finished after phase 4 began."""
    try:
        export = state.read_json(state.state_path(state_dir, state.EXPORT_FILE))
    except ValueError:
        return False
    finished = _parse_time((export or {}).get("finished_at"))
    if finished is None:
        return False
    since = _parse_time(record.redis_only_since or _entered_redis_only_from_history(record))
    return since is None or finished >= since


def export_caveat(state_dir: str) -> str | None:
    """What an operator leaving phase 4/5 should know about the last export, if anything.

    An export that left keys undecodable or still changing (``complete: false``)
    still counts: the catch-up export after the flip settles the changing ones,
    and an undecodable value is broken for the app as well. But it is said.
    """
    try:
        export = state.read_json(state.state_path(state_dir, state.EXPORT_FILE)) or {}
    except ValueError:
        return None
    if export.get("complete", True):
        return None
    return (f"the last export left {export.get('unstable', 0)} session(s) still changing and "
            f"{export.get('undecodable', 0)} undecodable (export.json complete: false): run the "
            "catch-up export after this flip and read its undecodable_files")


def _entered_redis_only_from_history(record: PhaseRecord) -> str | None:
    """When the history last shows a move from <= 3 to >= 4 (phase files written by hand)."""
    for entry in reversed(record.history):
        try:
            before, after = Phase.parse(entry.get("from", "")), Phase.parse(entry.get("to", ""))
        except ValueError:
            continue
        if before <= Phase.REDIS_READ < after:
            return entry.get("at")
    return None


@dataclasses.dataclass(frozen=True)
class PhaseChange:
    changed: bool
    before: PhaseRecord
    after: PhaseRecord


def plan_phase(state_dir: str, target: Phase | str | int, *, by: str, force: bool = False,
               emergency: bool = False, now: str | None = None) -> PhaseChange:
    """The record a move to *target* would write; raises TransitionRefused if unsafe."""
    before = read_phase(state_dir)
    target = Phase.parse(target)
    if before.phase == target and before.exists:
        return PhaseChange(False, before, before)
    move = check_transition(before.phase, target, force=force, emergency=emergency,
                            export_done=export_finished_since(state_dir, before))
    when = now or state.utc_now()
    entry = {"from": before.phase.label, "to": target.label, "at": when, "by": by,
             "forced": bool(force and move.skips), "emergency": bool(emergency)}
    redis_only_since = before.redis_only_since
    if target >= Phase.REDIS_ONLY and before.phase <= Phase.REDIS_READ:
        redis_only_since = when
    elif target <= Phase.REDIS_READ:
        redis_only_since = None
    history = ((*before.history, entry) if before.phase != target else before.history)[-HISTORY_LENGTH:]
    after = PhaseRecord(target, tuple(history), when, by, redis_only_since)
    return PhaseChange(True, before, after)


def set_phase(state_dir: str, target: Phase | str | int, *, by: str, force: bool = False,
              emergency: bool = False, check_only: bool = False) -> PhaseChange:
    """Move the host to *target* (atomic replace); idempotent; ``check_only`` writes nothing."""
    change = plan_phase(state_dir, target, by=by, force=force, emergency=emergency)
    if change.changed and not check_only:
        state.write_json(phase_path(state_dir), change.after.as_json())
    return change


class PhaseWatcher:
    """The current phase for the interface, re-read when the phase file changes.

    The file is stat'ed at most once per ``interval`` seconds per process; it is
    re-read only when its inode, size or mtime changed. An unreadable or
    corrupt file keeps the last known phase and counts an error (``errors``):
    a bad edit must never take the app down. A process that starts while the
    file is unreadable has no last known phase: ``known`` stays False until the
    file is fixed (the interface then refuses session requests rather than guess
    a phase and read or write the wrong store).
    """

    def __init__(self, state_dir: str, interval: float = 1.0, on_error=None):
        self.path = phase_path(state_dir)
        self.state_dir = state_dir
        self.interval = interval
        self.on_error = on_error
        self.errors = 0
        self.last_error: str | None = None
        self._phase = Phase.FILE
        self.known = False
        self._signature: tuple | None = ()
        self._checked_at = float("-inf")
        self._lock = threading.Lock()
        self.refresh(force=True)

    def current(self) -> Phase:
        if time.monotonic() - self._checked_at >= self.interval:
            self.refresh()
        return self._phase

    def refresh(self, force: bool = False) -> Phase:
        with self._lock:
            self._checked_at = time.monotonic()
            try:
                stat = os.stat(self.path)
                signature = (stat.st_ino, stat.st_size, stat.st_mtime_ns)
            except FileNotFoundError:
                signature = None
            except OSError as exc:
                self._error(f"cannot stat {self.path}: {exc}")
                return self._phase
            if signature == self._signature and not force:
                return self._phase
            if signature is None:
                self._phase, self._signature, self.known = Phase.FILE, None, True
                return self._phase
            try:
                self._phase = read_phase(self.state_dir).phase
                self.known = True
            except (ValueError, OSError) as exc:
                self._error(str(exc))
            self._signature = signature  # a bad file is reported once, not on every stat
        return self._phase

    def _error(self, message: str) -> None:
        self.errors += 1
        self.last_error = message
        if self.on_error is not None:
            self.on_error(message)
