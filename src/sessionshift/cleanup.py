"""Retire file sessions: remove the expired ones, the old ones, or (in phase 5) all of them.

Three scopes, each a superset of the one before:

* ``expired``: sessions whose own expiry has passed (cachelib would never
  serve them again); safe in every phase;
* ``older``: also sessions whose file was last written before a cutoff
  (``mtime``), e.g. the longest session lifetime ago. In phases whose app
  reads no Redis (``file``, ``dual_write``) a file is the only copy the app
  serves, so a cutoff that would remove a session whose own expiry has not
  passed is refused unless ``force``; a cutoff in the future always is;
* ``all``: every session file. Refused unless this host's phase file says
  phase 5 (``redis``): before that, a file may still be the only copy of a
  session or the rollback's way back.

What is never touched: files that are not sessions (foreign names, symlinks,
directories), cachelib's own bookkeeping (its count file and the temporary
files of writes in flight), and session files that cannot be read
(corrupt, truncated, or holding types outside the restricted unpickler: maybe
the app's own classes), unless ``include_corrupt``.

A file the app rewrote after it was read (its mtime moved) is left alone.
cachelib's count file is not adjusted: cachelib recounts when it prunes.
"""

from __future__ import annotations

import dataclasses
import os
import time
from typing import Literal

from . import formats
from .errors import SessionshiftError
from .formats import FileSession, SessionFileError, SkippedEntry
from .phasefile import phase_path, read_phase
from .phases import SPECS, Phase

Scope = Literal["expired", "older", "all"]
SCOPES: tuple[Scope, ...] = ("expired", "older", "all")
LIST_LIMIT = 100  # file names listed in a result


class CleanupRefused(SessionshiftError):
    """The cleanup asked for is not safe now; the message says why and what to do."""


@dataclasses.dataclass
class CleanupResult:
    session_dir: str
    scope: Scope
    dry_run: bool = False
    removed: int = 0  # files removed (would be, in a dry run)
    removed_by_reason: dict[str, int] = dataclasses.field(
        default_factory=lambda: {"expired": 0, "older": 0, "all": 0, "corrupt": 0})
    removed_files: list[str] = dataclasses.field(default_factory=list)  # capped at LIST_LIMIT
    kept: int = 0  # live session files not in scope
    corrupt_kept: int = 0  # unreadable session files left alone (include_corrupt not set)
    skipped_foreign: int = 0
    skipped_cachelib: int = 0
    changed_meanwhile: int = 0  # rewritten or removed by the app between read and removal
    errors: list[str] = dataclasses.field(default_factory=list)

    @property
    def changed(self) -> bool:
        return self.removed > 0

    def as_dict(self) -> dict:
        result = dataclasses.asdict(self)
        result["changed"] = self.changed
        return result


def require_phase_redis(state_dir: str) -> None:
    """Raise CleanupRefused unless the phase file says phase 5 (``redis``)."""
    path = phase_path(state_dir)
    try:
        record = read_phase(state_dir)
    except (ValueError, OSError) as exc:
        raise CleanupRefused(f"cannot read the phase file ({exc}); removing every session file "
                             "needs phase 5 (redis) recorded there") from None
    if not record.exists or SPECS[record.phase].reads_files:
        now = f"phase {record.phase.label!r}" if record.exists else "no phase file (phase 1, file)"
        raise CleanupRefused(
            f"refusing to remove all session files: {path} says {now}, not phase 5 (redis); "
            "until then a file may be the only copy of a session or the rollback's way back. "
            "Use scope 'expired' or 'older', or move the host to phase 5 first")


def cleanup_sessions(session_dir: str, *, scope: Scope = "expired", cutoff: float | None = None,
                     include_corrupt: bool = False, dry_run: bool = False,
                     state_dir: str | None = None, prefix: str = formats.DEFAULT_PREFIX,
                     now: float | None = None, force: bool = False) -> CleanupResult:
    """Remove the session files in *scope* from *session_dir*.

    *cutoff* (epoch seconds) is required for scope ``older``: files last
    written before it go. Scope ``all`` needs *state_dir* with phase 5 recorded.
    """
    if scope not in SCOPES:
        raise ValueError(f"unknown scope {scope!r}; expected one of {', '.join(SCOPES)}")
    if scope == "older" and cutoff is None:
        raise ValueError("scope 'older' needs a cutoff (remove files last written before it)")
    now = time.time() if now is None else now
    if scope == "older" and cutoff > now:
        raise CleanupRefused(f"the cutoff is {cutoff - now:.0f} s in the future (a negative max_age?): every "
                             "session file would go; give max_age as a positive number of seconds")
    if scope == "all":
        if not state_dir:
            raise CleanupRefused("scope 'all' needs state_dir, to check that the host is in phase 5")
        require_phase_redis(state_dir)
    if not os.path.isdir(session_dir):
        raise FileNotFoundError(f"session directory {session_dir} does not exist")
    if scope == "older" and not force:
        _refuse_live_removal(session_dir, state_dir, cutoff, now, prefix)
    result = CleanupResult(session_dir, scope, dry_run=dry_run)
    for item in formats.scan_directory(session_dir, prefix=prefix):
        if isinstance(item, SkippedEntry):
            if item.kind == "cachelib":
                result.skipped_cachelib += 1
            else:
                result.skipped_foreign += 1
            continue
        if isinstance(item, SessionFileError):
            _corrupt(item.path, result, scope, cutoff, include_corrupt, dry_run)
            continue
        reason = _reason(item, scope, cutoff, now)
        if reason is None:
            result.kept += 1
        else:
            _remove(item.path, item.mtime, reason, result, dry_run)
    return result


def _refuse_live_removal(session_dir: str, state_dir: str | None, cutoff: float, now: float,
                         prefix: str) -> None:
    """CleanupRefused if the cutoff would remove live sessions the app can only read from files."""
    phase = read_phase(state_dir).phase if state_dir else Phase.FILE
    if SPECS[phase].reads_redis:
        return
    live = sum(1 for item in formats.scan_directory(session_dir, prefix=prefix)
               if isinstance(item, FileSession) and not item.expired(now) and item.mtime < cutoff)
    if live:
        raise CleanupRefused(
            f"refusing to remove {live} live session file(s) last written {now - cutoff:.0f} s or more ago: "
            f"in phase {phase.label} the app reads sessions from files only, so their users would be "
            "logged out. Use scope 'expired', a max_age of at least the session lifetime, or force "
            "(--force / force: true) if logging them out is intended")


def _reason(session: FileSession, scope: Scope, cutoff: float | None, now: float) -> str | None:
    if session.expired(now):
        return "expired"
    if scope == "older" and session.mtime < cutoff:
        return "older"
    if scope == "all":
        return "all"
    return None


def _corrupt(path: str, result: CleanupResult, scope: Scope, cutoff: float | None,
             include_corrupt: bool, dry_run: bool) -> None:
    try:
        mtime = os.lstat(path).st_mtime
    except FileNotFoundError:
        return  # the app removed it meanwhile
    except OSError as exc:
        result.errors.append(f"{os.path.basename(path)}: {exc.strerror or exc}")
        return
    in_scope = scope != "older" or mtime < cutoff
    if include_corrupt and in_scope:
        _remove(path, mtime, "corrupt", result, dry_run)
    else:
        result.corrupt_kept += 1


def _remove(path: str, mtime: float, reason: str, result: CleanupResult, dry_run: bool) -> None:
    name = os.path.basename(path)
    if not dry_run:
        # The app (phase <= 3) may have written a fresh session to this name
        # since it was read: a rename gives a new mtime, and that file stays.
        try:
            if os.lstat(path).st_mtime != mtime:
                result.changed_meanwhile += 1
                return
            os.unlink(path)
        except FileNotFoundError:
            result.changed_meanwhile += 1
            return
        except OSError as exc:
            result.errors.append(f"{name}: cannot remove: {exc.strerror or exc}")
            return
    result.removed += 1
    result.removed_by_reason[reason] += 1
    if len(result.removed_files) < LIST_LIMIT:
        result.removed_files.append(name)
