"""What only Redis holds, per host: the ledger of phase-4/5 session writes (``state_dir/ledger/``).

From phase 4 a session lives in Redis alone. If Redis is lost, the way back to files is the
last backup (``backup.files_from_backup``), and whatever Redis acknowledged after that backup
is gone. The ledger says exactly what, with no value and no Redis: one small file per
session, named after the session's hashed file name (never its id), holding ``w`` (the last
acknowledged operation was a write) or ``d`` (a logout), its mtime the time of that
operation. Each acknowledged write or logout rewrites it (open, write, close: no fsync; a
host that crashed with Redis may lose the last few markers, and the count says "at least").

Read from a backup's start, it gives:

* sessions written after the backup started, present in it: their file comes back older;
* sessions created after it: not in the backup, lost (the user logs in again);
* logouts after it: the files from the backup must not bring those sessions back.

One marker per session keeps the ledger as small as the session directory was in phase 1.
Markers older than the sessions' lifetime (plus a day) are pruned, at most once an hour:
their sessions have expired, so they can no longer be lost.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import time

log = logging.getLogger(__name__)

LEDGER_DIR = "ledger"
WRITE, LOGOUT = "w", "d"
PRUNE_EVERY = 3600.0
_PRUNE_STAMP = ".pruned"


def ledger_dir(state_dir: str) -> str:
    return os.path.join(state_dir, LEDGER_DIR)


class Ledger:
    """The app's side: mark each session write or logout that only Redis holds."""

    def __init__(self, state_dir: str):
        self.directory = ledger_dir(state_dir)
        self._ready = False
        self._next_prune = 0.0

    def record(self, file_name: str, op: str, lifetime: int = 0) -> None:
        """Mark *file_name*'s last acknowledged operation. Never fails the request: the
        session is saved in Redis; a marker that could not be written is logged."""
        try:
            if not self._ready:
                os.makedirs(self.directory, mode=0o700, exist_ok=True)
                self._ready = True
            fd = os.open(os.path.join(self.directory, file_name),
                         os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
            try:
                os.write(fd, op.encode())
            finally:
                os.close(fd)
        except OSError as exc:
            log.error("ledger marker for %s not written (%s): a loss after the last backup may go "
                      "uncounted", file_name, exc)
            return
        if lifetime and time.monotonic() >= self._next_prune:
            self._next_prune = time.monotonic() + PRUNE_EVERY
            self._prune(lifetime)

    def _prune(self, lifetime: int) -> None:
        stamp = os.path.join(self.directory, _PRUNE_STAMP)
        now = time.time()
        with contextlib.suppress(OSError):
            if now - os.stat(stamp).st_mtime < PRUNE_EVERY:
                return  # another worker pruned within the hour
        with contextlib.suppress(OSError):
            with open(stamp, "w"):
                pass
        oldest = now - lifetime - 86400
        with contextlib.suppress(OSError), os.scandir(self.directory) as entries:
            for entry in entries:
                with contextlib.suppress(OSError):
                    if not entry.name.startswith(".") and entry.stat(follow_symlinks=False).st_mtime < oldest:
                        os.unlink(entry.path)


@dataclasses.dataclass
class Since:
    """The ledger's entries at or after a moment: file name -> (op, epoch seconds)."""

    present: bool  # False: this host never recorded a phase-4/5 write (nothing to count from)
    last: dict[str, tuple[str, float]] = dataclasses.field(default_factory=dict)


def read_since(state_dir: str, since: float) -> Since:
    """Every marker whose operation happened at or after *since*."""
    directory = ledger_dir(state_dir)
    if not os.path.isdir(directory):
        return Since(present=False)
    result = Since(present=True)
    with os.scandir(directory) as entries:
        for entry in entries:
            if entry.name.startswith("."):
                continue
            try:
                when = entry.stat(follow_symlinks=False).st_mtime
                if when < since:
                    continue
                with open(entry.path, "rb") as handle:
                    op = handle.read(1).decode() or WRITE
            except (OSError, UnicodeDecodeError):
                continue
            result.last[entry.name] = (LOGOUT if op == LOGOUT else WRITE, when)
    return result
