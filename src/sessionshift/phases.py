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
    phase: Phase
    writes_file: bool
    writes_redis: bool
    reads: tuple[str, ...]  # in order of preference
    promotes_file_reads: bool  # a session found only in a file is copied to Redis
    tombstones: bool  # a logout leaves a tombstone the backfill respects
    redis_failure_fails_request: bool
    gate: str  # what must be true before moving forward INTO this phase
    summary: str


SPECS: dict[Phase, PhaseSpec] = {
    Phase.FILE: PhaseSpec(
        Phase.FILE, writes_file=True, writes_redis=False, reads=("file",),
        promotes_file_reads=False, tombstones=False, redis_failure_fails_request=False,
        gate="none",
        summary="files only, as before the migration"),
    Phase.DUAL_WRITE: PhaseSpec(
        Phase.DUAL_WRITE, writes_file=True, writes_redis=True, reads=("file",),
        promotes_file_reads=False, tombstones=True, redis_failure_fails_request=False,
        gate="Redis reachable over TLS with AUTH; no alarm in ALARM",
        summary="write file then Redis (failed Redis writes journaled); read file"),
    Phase.REDIS_READ: PhaseSpec(
        Phase.REDIS_READ, writes_file=True, writes_redis=True, reads=("redis", "file"),
        promotes_file_reads=True, tombstones=True, redis_failure_fails_request=False,
        gate="backfill complete; validation consistency >= threshold (default 100%)",
        summary="write Redis and file; read Redis, else file (and copy it to Redis)"),
    Phase.REDIS_ONLY: PhaseSpec(
        Phase.REDIS_ONLY, writes_file=False, writes_redis=True, reads=("redis", "legacy_file"),
        promotes_file_reads=True, tombstones=True, redis_failure_fails_request=True,
        gate="fallback-read rate near zero over the watch window",
        summary="write Redis only (file only in emergency fallback); read Redis, else legacy file"),
    Phase.REDIS: PhaseSpec(
        Phase.REDIS, writes_file=False, writes_redis=True, reads=("redis",),
        promotes_file_reads=False, tombstones=False, redis_failure_fails_request=True,
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
        return self.current >= Phase.REDIS_ONLY and self.target <= Phase.REDIS_READ


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
