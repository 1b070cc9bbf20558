"""The controller's rollout lock: one phase or rollback playbook at a time.

An exclusive ``flock`` on one file, held for the life of the process that took it
(the kernel releases it when the process exits, however it exits, so a crashed
run never leaves a stale lock). The holder writes its pid and purpose into the
file so the one refused can say who holds it.

Two takers share it: the ``sessionshift_lock`` callback plugin (every phase
playbook and rollback.yml take it when they start) and the alarm watcher, which
takes it before it decides to roll back and hands it to the rollback.yml run it
starts: the child gets the open file as an inherited descriptor, named in
``SESSIONSHIFT_ROLLOUT_LOCK_FD``, and the callback in that run accepts it when it
is the same file.
"""

from __future__ import annotations

import dataclasses
import fcntl
import os

from .errors import SessionshiftError

INHERITED_FD_ENV = "SESSIONSHIFT_ROLLOUT_LOCK_FD"
DEFAULT_LOCK_FILE = "/var/tmp/sessionshift-rollout.lock"


class LockHeld(SessionshiftError, RuntimeError):
    """Another rollout playbook or the alarm watcher's rollback holds the lock."""


@dataclasses.dataclass
class RolloutLock:
    path: str
    fd: int
    inherited: bool = False

    def release(self) -> None:
        if self.fd >= 0 and not self.inherited:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
        self.fd = -1

    def child_env(self) -> dict[str, str]:
        """Environment for a child process that runs under this lock (pass ``pass_fds=(fd,)``)."""
        return {INHERITED_FD_ENV: str(self.fd)}

    def __enter__(self) -> RolloutLock:
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def _same_file(fd: int, path: str) -> bool:
    try:
        held, named = os.fstat(fd), os.stat(path)
    except OSError:
        return False
    return (held.st_dev, held.st_ino) == (named.st_dev, named.st_ino)


def acquire(path: str = DEFAULT_LOCK_FILE, purpose: str = "") -> RolloutLock:
    """Take the lock without waiting; raise LockHeld naming the holder if it is taken."""
    inherited = os.environ.get(INHERITED_FD_ENV, "")
    if inherited.isdigit() and _same_file(int(inherited), path):
        return RolloutLock(path, int(inherited), inherited=True)
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o664)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 512, 0).decode("utf-8", "replace").strip() or "unknown"
        os.close(fd)
        raise LockHeld(f"the rollout lock {path} is held by {holder}: another phase playbook or the alarm "
                       "watcher's rollback is running on this controller. Wait for it to finish (see its "
                       "output or the watcher's log), then run this again.") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"pid {os.getpid()} ({purpose or 'unnamed'})\n".encode(), 0)
    return RolloutLock(path, fd)
