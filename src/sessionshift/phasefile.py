"""The per-host phase file (``state_dir/phase.json``): read it, watch it, move it.

    {"phase": "dual_write", "number": 2, "changed_at": "...", "changed_by": "ops",
     "redis_only_since": null, "generation": 1, "retired_generation": 0,
     "history": [{"from": "file", "to": "dual_write", "at": "...", "by": "ops", "forced": false}]}

A missing file means phase ``file`` (nothing was ever migrated). The file is
replaced atomically (``state.write_json``), so a reader never sees half of it.

``redis_only_since`` records when the host last entered phase 4 or 5 from 3 or
lower: from then on files stop being written, so a rollback to 3 or lower needs
an export (``export.json``) that finished after that moment. It is kept outside
the history so that trimming the history to its last entries never loses it.

``generation`` is the generation of Redis copies this host reads and writes
(``keys.KeyLayout.generation``). A move back to ``file`` from a phase that
wrote Redis retires it (``retired_generation``): the copies made before are
no longer kept up to date, and this host must never read them again. That
needs nothing but this file, so it works when Redis is down. The next move out
of ``file`` chooses a generation above the retired one (the playbooks pass the
same one to every host); it may also change while the host is in
``dual_write`` (files are what that phase reads), and never from
``redis_read`` on, where a change would lose every session.
"""

from __future__ import annotations

import dataclasses
import datetime
import os
import threading
import time
from typing import Any

from . import state
from .keys import KeyLayout
from .phases import SPECS, Phase, Transition, TransitionRefused, check_transition

HISTORY_LENGTH = 20


@dataclasses.dataclass(frozen=True)
class PhaseRecord:
    phase: Phase
    history: tuple[dict, ...] = ()
    changed_at: str | None = None
    changed_by: str | None = None
    redis_only_since: str | None = None
    exists: bool = True
    generation: int = 0
    retired_generation: int | None = None  # the newest generation this host stopped keeping current

    @property
    def next_generation(self) -> int:
        """The lowest generation this host may use after its last return to ``file``."""
        return self.generation if self.retired_generation is None else \
            max(self.generation, self.retired_generation + 1)

    def as_json(self) -> dict[str, Any]:
        return {
            "phase": self.phase.label,
            "number": int(self.phase),
            "changed_at": self.changed_at,
            "changed_by": self.changed_by,
            "redis_only_since": self.redis_only_since,
            "generation": self.generation,
            "retired_generation": self.retired_generation,
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
    generation, retired = document.get("generation", 0), document.get("retired_generation")
    if not _is_generation(generation) or not (retired is None or _is_generation(retired)):
        raise ValueError(f"{path}: 'generation' and 'retired_generation' must be integers >= 0; "
                         "set the phase again with the session_phase module")
    return PhaseRecord(phase, tuple(h for h in history if isinstance(h, dict)),
                       document.get("changed_at"), document.get("changed_by"),
                       document.get("redis_only_since"), generation=generation,
                       retired_generation=retired)


def _is_generation(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def host_layout(state_dir: str | None, prefix: str, hash_name: str) -> KeyLayout:
    """The key layout of this host's current generation (generation 0 without a phase file)."""
    generation = read_phase(state_dir).generation if state_dir else 0
    return KeyLayout(prefix, hash_name, generation)  # type: ignore[arg-type]


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


def export_finished_since(state_dir: str, record: PhaseRecord, *, session_dir: str | None = None,
                          key_prefix: str | None = None) -> bool:
    """Whether ``export.json`` records an export that finished after phase 4 began and covered
    this host's sessions (see :func:`export_problem`)."""
    return export_problem(state_dir, record, session_dir=session_dir, key_prefix=key_prefix) is None


def export_problem(state_dir: str, record: PhaseRecord, *, session_dir: str | None = None,
                   key_prefix: str | None = None) -> str | None:
    """Why the last export does not let this host leave phase 4/5 for 3 or lower (None: it does).

    It must have finished after the host entered phase 4, from the generation
    the host reads, and (when the caller names them) into this session
    directory and from this key prefix: an export of another prefix or
    directory brought none of this host's sessions back to its files.
    """
    try:
        export = state.read_json(state.state_path(state_dir, state.EXPORT_FILE))
    except ValueError as exc:
        return f"the export record is unreadable: {exc}"
    export = export or {}
    finished = _parse_time(export.get("finished_at"))
    if finished is None:
        return "no export has finished on this host"
    since = _parse_time(record.redis_only_since or _entered_redis_only_from_history(record))
    if since is not None and finished < since:
        return f"the last export finished at {export.get('finished_at')}, before this host entered phase 4"
    if export.get("generation", 0) != record.generation:
        return (f"the last export read generation {export.get('generation', 0)}, this host reads "
                f"generation {record.generation}")
    if key_prefix is not None and export.get("key_prefix", key_prefix) != key_prefix:
        return f"the last export covered key prefix {export.get('key_prefix')!r}, not {key_prefix!r}"
    if session_dir is not None and export.get("session_dir") and \
            os.path.realpath(session_dir) != export["session_dir"]:
        return f"the last export wrote {export['session_dir']}, not {os.path.realpath(session_dir)}"
    return None


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


def _stops_files(before: Phase, after: Phase) -> bool:
    """A move from a phase that writes files to one that does not: from then on files age."""
    return SPECS[before].writes_file and not SPECS[after].writes_file


def _entered_redis_only_from_history(record: PhaseRecord) -> str | None:
    """When the history last shows a move from <= 3 to >= 4 (phase files written by hand)."""
    for entry in reversed(record.history):
        try:
            before, after = Phase.parse(entry.get("from", "")), Phase.parse(entry.get("to", ""))
        except ValueError:
            continue
        if _stops_files(before, after):
            return entry.get("at")
    return None


@dataclasses.dataclass(frozen=True)
class PhaseChange:
    changed: bool
    before: PhaseRecord
    after: PhaseRecord


def plan_phase(state_dir: str, target: Phase | str | int, *, by: str, force: bool = False,
               emergency: bool = False, now: str | None = None,
               generation: int | None = None, session_dir: str | None = None,
               key_prefix: str | None = None) -> PhaseChange:
    """The record a move to *target* would write; raises TransitionRefused if unsafe.

    ``generation`` (the playbooks pass the fleet's) is the generation a move out
    of ``file``, or a host in ``dual_write``, is to use; by default a move out of
    ``file`` takes the host's ``next_generation``.
    """
    before = read_phase(state_dir)
    target = Phase.parse(target)
    new_generation = _choose_generation(before, target, generation)
    if before.phase == target and before.exists and new_generation == before.generation:
        return PhaseChange(False, before, before)
    problem = export_problem(state_dir, before, session_dir=session_dir, key_prefix=key_prefix)
    try:
        move = check_transition(before.phase, target, force=force, emergency=emergency,
                                export_done=problem is None)
    except TransitionRefused as exc:
        if problem is None or not Transition(before.phase, target).needs_export or exc.target != target:
            raise
        raise TransitionRefused(exc.current, exc.target, f"{exc.reason} ({problem})", exc.fix) from None
    when = now or state.utc_now()
    entry = {"from": before.phase.label, "to": target.label, "at": when, "by": by,
             "forced": bool(force and move.skips), "emergency": bool(emergency)}
    if new_generation != before.generation:
        entry["generation"] = new_generation
    redis_only_since = before.redis_only_since
    if _stops_files(before.phase, target):
        redis_only_since = when
    elif SPECS[target].writes_file:
        redis_only_since = None
    retired = before.retired_generation
    if SPECS[before.phase].writes_redis and not SPECS[target].writes_redis:
        # From now on this host's Redis copies fall behind its files: retire their generation.
        retired = before.generation if retired is None else max(retired, before.generation)
    changed = before.phase != target or new_generation != before.generation
    history = ((*before.history, entry) if changed else before.history)[-HISTORY_LENGTH:]
    after = PhaseRecord(target, tuple(history), when, by, redis_only_since,
                        generation=new_generation, retired_generation=retired)
    return PhaseChange(True, before, after)


def _choose_generation(before: PhaseRecord, target: Phase, wanted: int | None) -> int:
    """The generation after a move to *target*; raises TransitionRefused if *wanted* is unsafe."""
    leaving_file = not SPECS[before.phase].writes_redis and SPECS[target].writes_redis
    # Staying in a phase that writes Redis but reads only files: no session is read from Redis yet.
    in_dual_write = before.phase == target and SPECS[target].writes_redis and not SPECS[target].reads_redis
    may_change = leaving_file or in_dual_write
    if wanted is None or (wanted == before.generation and not leaving_file):
        return before.next_generation if leaving_file else before.generation
    if not _is_generation(wanted):
        raise ValueError(f"generation must be an integer >= 0, not {wanted!r}")
    if not may_change:
        raise TransitionRefused(
            before.phase, target,
            f"the generation can change only on the move out of file or in dual_write (this host "
            f"reads generation {before.generation} and would lose every session it holds in Redis)",
            "step the host back to dual_write first (ansible-playbook playbooks/rollback.yml "
            "-e rollback_to=dual_write), or leave the generation alone")
    if wanted < before.next_generation:
        raise TransitionRefused(
            before.phase, target,
            f"generation {wanted} holds Redis copies made before this host's last return to file "
            f"(retired generation {before.retired_generation}, current {before.generation})",
            f"use generation {before.next_generation} or higher (the playbooks choose the fleet's)")
    return wanted


def set_phase(state_dir: str, target: Phase | str | int, *, by: str, force: bool = False,
              emergency: bool = False, check_only: bool = False,
              generation: int | None = None, session_dir: str | None = None,
              key_prefix: str | None = None) -> PhaseChange:
    """Move the host to *target* (atomic replace); idempotent; ``check_only`` writes nothing."""
    change = plan_phase(state_dir, target, by=by, force=force, emergency=emergency,
                        generation=generation, session_dir=session_dir, key_prefix=key_prefix)
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
        self.generation = 0  # the Redis generation the phase file names (read with the phase)
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
                self.generation = 0
                return self._phase
            try:
                record = read_phase(self.state_dir)
                self._phase, self.generation = record.phase, record.generation
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
