"""The five migration phases and the moves between them: one table for everyone.

The Flask interface reads it to decide where to read and write, the
``session_phase`` module to refuse unsafe moves, and the playbooks (through
the module and ``sessionshift phases --json``) to know which gates apply.
"""

from __future__ import annotations

import dataclasses
import enum

from .errors import SessionshiftError


class Phase(enum.IntEnum):
    FILE = 1
    DUAL_WRITE = 2
    REDIS_READ = 3
    REDIS_ONLY = 4
    REDIS = 5

    @property
    def label(self) -> str:
        return self.name.lower()

    @classmethod
    def parse(cls, value: str | int | Phase) -> Phase:
        """A phase from its number (1-5), its label (``dual_write``) or itself."""
        if isinstance(value, Phase):
            return value
        if isinstance(value, int) or (isinstance(value, str) and value.strip().isdigit()):
            try:
                return cls(int(value))
            except ValueError:
                pass
        elif isinstance(value, str):
            try:
                return cls[value.strip().upper()]
            except KeyError:
                pass
        names = ", ".join(f"{p.value}={p.label}" for p in cls)
        raise ValueError(f"unknown phase {value!r}; expected one of {names}")


@dataclasses.dataclass(frozen=True)
class PhaseSpec:
    """What the interface and the tools do in one phase; the code reads these, never the number."""

    phase: Phase
    # Where a request reads, in order of preference: "file" (the session files, current),
    # "redis" (the session's hashed key), "legacy_file" (a file no longer written: read only
    # when Redis has no copy).
    reads_from: tuple[str, ...]
    # Where a save goes, in this order: the file first, so that what a failed Redis write
    # journals is already on disk.
    writes_to: tuple[str, ...]
    gate: str  # what must be true before moving forward INTO this phase
    summary: str
    # What else the phase does; a row names only what it does.
    journals: bool = False  # a failed Redis write is journaled and replayed, not the request's failure
    shadow_reads: bool = False  # sampled reads of Redis that only count mismatches with the file
    promotes_file_reads: bool = False  # a session found only in a file is copied to Redis
    waits_for_replicas: bool = False  # an app write waits for SESSIONSHIFT_WAIT_REPLICAS replicas (WAIT)
    retires_files: bool = False  # a session saved to Redis loses its (older) file
    writes_tombstones: bool = False  # a logout leaves a tombstone that copies (backfill, promotion,
    #                                  restore) respect
    emergency_file_fallback: bool = False  # with the option on, a Redis failure falls back to the file
    moves_to_stock_keys: bool = False  # with the option on, sessions move to stock Flask-Session keys

    @property
    def writes_file(self) -> bool:
        return "file" in self.writes_to

    @property
    def writes_redis(self) -> bool:
        return "redis" in self.writes_to

    @property
    def reads_redis(self) -> bool:
        return "redis" in self.reads_from

    @property
    def reads_files(self) -> bool:
        """Some session may be served from a file (current or legacy) in this phase."""
        return any(source.endswith("file") for source in self.reads_from)

    @property
    def redis_failure_fails_request(self) -> bool:
        """A Redis failure is the request's (503), unless the emergency fallback takes it."""
        return self.writes_redis and not self.journals


SPECS: dict[Phase, PhaseSpec] = {
    Phase.FILE: PhaseSpec(
        Phase.FILE, reads_from=("file",), writes_to=("file",),
        gate="none",
        summary="files only, as before the migration"),
    Phase.DUAL_WRITE: PhaseSpec(
        Phase.DUAL_WRITE, reads_from=("file",), writes_to=("file", "redis"),
        journals=True, shadow_reads=True, writes_tombstones=True,
        gate="Redis reachable over TLS with AUTH; no alarm in ALARM",
        summary="write file then Redis (failed Redis writes journaled); read file"),
    # From here Redis is read first, so a write no replica confirmed is not called saved
    # (phase 3 journals it: its file is read until the replay).
    Phase.REDIS_READ: PhaseSpec(
        Phase.REDIS_READ, reads_from=("redis", "file"), writes_to=("file", "redis"),
        journals=True, promotes_file_reads=True, waits_for_replicas=True, writes_tombstones=True,
        gate="backfill complete; validation consistency >= threshold (default 100%)",
        summary="write Redis and file; read Redis, else file (and copy it to Redis)"),
    Phase.REDIS_ONLY: PhaseSpec(
        Phase.REDIS_ONLY, reads_from=("redis", "legacy_file"), writes_to=("redis",),
        promotes_file_reads=True, waits_for_replicas=True, retires_files=True, writes_tombstones=True,
        emergency_file_fallback=True,
        gate="fallback-read rate near zero over the watch window",
        summary="write Redis only (file only in emergency fallback); read Redis, else legacy file"),
    # Phase 5 still leaves tombstones: during the flip phase-4 workers promote legacy files,
    # and a restore from backup copies sessions back; neither may revive a logout.
    Phase.REDIS: PhaseSpec(
        Phase.REDIS, reads_from=("redis",), writes_to=("redis",),
        waits_for_replicas=True, writes_tombstones=True, moves_to_stock_keys=True,
        gate="cutoff passed: the longest session lifetime since phase 4 began",
        summary="Redis only; file sessions retired and cleaned"),
}


class TransitionRefused(SessionshiftError, ValueError):
    """A phase move that is not safe; ``reason`` says why and ``fix`` what to run."""

    def __init__(self, current: Phase, target: Phase, reason: str, fix: str):
        self.current, self.target, self.reason, self.fix = current, target, reason, fix
        super().__init__(f"refused {current.label} -> {target.label}: {reason}. {fix}")


@dataclasses.dataclass(frozen=True)
class Transition:
    current: Phase
    target: Phase

    @property
    def direction(self) -> str:
        if self.target == self.current:
            return "none"
        return "forward" if self.target > self.current else "back"

    @property
    def skips(self) -> int:
        """How many phases the move jumps over (0 for adjacent moves)."""
        return max(abs(int(self.target) - int(self.current)) - 1, 0)

    @property
    def needs_export(self) -> bool:
        """Files stopped being written in phase 4: going back to <= 3 needs Redis exported first."""
        return not SPECS[self.current].writes_file and SPECS[self.target].writes_file


def check_transition(current: Phase | str | int, target: Phase | str | int, *,
                     force: bool = False, export_done: bool = False,
                     emergency: bool = False) -> Transition:
    """Validate a move; raise :class:`TransitionRefused` with the reason and the fix.

    * every move goes one phase at a time unless ``force`` (every host drained).
      An ``emergency`` is no exception: it is recorded in the history, and the
      emergency rollback steps redis_read -> dual_write -> file like any other,
      because for the moment a flip takes to reach every worker, workers of
      both phases serve side by side, and only adjacent phases are compatible
      (a file-phase worker would save a session to its file alone while a
      redis_read worker served the older Redis copy);
    * leaving phase 4 or 5 for 3 or lower needs the Redis -> file export done.
    """
    del emergency  # recorded by the caller; it allows nothing a normal move would not
    move = Transition(Phase.parse(current), Phase.parse(target))
    if move.direction == "none":
        return move
    if move.skips and not force:
        way = "forward" if move.direction == "forward" else "back"
        raise TransitionRefused(
            move.current, move.target,
            f"it skips {move.skips} phase(s) going {way}; adjacent phases are compatible, "
            "others are not during a rolling flip",
            f"move to {Phase(int(move.current) + (1 if way == 'forward' else -1)).label} first, "
            "or pass force=true if every host is drained")
    if move.needs_export and not export_done:
        raise TransitionRefused(
            move.current, move.target,
            "files have not been written since phase 4, so they are older than Redis",
            "export Redis to files first: ansible-playbook playbooks/rollback.yml "
            f"-e rollback_to={move.target.label} (it exports), or "
            "'sessionshift export' on each app host")
    return move


@dataclasses.dataclass(frozen=True)
class RollbackPlan:
    fleet: Phase  # the most advanced phase of any host
    target: Phase
    steps: tuple[Phase, ...]  # the phases the whole fleet steps through, in order (empty: nothing to do)
    emergency: bool

    def as_dict(self) -> dict:
        return {"fleet": self.fleet.label, "target": self.target.label, "emergency": self.emergency,
                "steps": [step.label for step in self.steps]}


def plan_rollback(host_phases: list[Phase | str | int], requested: str | int = "previous",
                  emergency: bool = False) -> RollbackPlan:
    """Where a rollback of the fleet goes, and through which phases.

    ``requested`` is ``previous`` (one phase back from the most advanced host, what the alarm
    watcher asks for), a phase number or a label; ``emergency`` always means ``file``. A
    gradual rollback steps the whole fleet back one phase at a time; a fleet already at or
    below the target has no steps.
    """
    if not host_phases:
        raise ValueError("no host phases given: is the app_servers group empty?")
    fleet = max(Phase.parse(phase) for phase in host_phases)
    if emergency:
        target = Phase.FILE
    elif str(requested).strip().lower() == "previous":
        target = Phase(max(int(fleet) - 1, int(Phase.FILE)))
    else:
        target = Phase.parse(requested)
    steps = tuple(Phase(number) for number in range(int(fleet) - 1, int(target) - 1, -1))
    return RollbackPlan(fleet, target, steps, emergency)
