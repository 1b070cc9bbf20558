"""The dev stack's server processes: wait until one answers, stop one, stop at a block's end."""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Callable
from typing import Self


class Stoppable:
    """A server (or a set of them) that ``with`` stops at the end of the block, whatever happened."""

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def wait_until_ready(ready: Callable[[], bool], *, what: str, timeout: float,
                     process: subprocess.Popen | None = None, interval: float = 0.1) -> None:
    """Poll *ready* until it returns true; fail as soon as *process* exits, or after *timeout* seconds.

    *ready* answers false (it does not raise) while the server is not listening yet.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"{what} exited with {process.returncode}")
        if ready():
            return
        time.sleep(interval)
    raise RuntimeError(f"{what} did not answer after {timeout}s")


def stop_process(process: subprocess.Popen | None, *, grace: float = 10.0,
                 kill: Callable[[subprocess.Popen], None] = subprocess.Popen.kill) -> None:
    """SIGTERM, then *kill* (SIGKILL) when the process has not exited after *grace* seconds."""
    if process is None or process.poll() is not None:
        return
    process.send_signal(signal.SIGCONT)  # a paused (SIGSTOP) process acts on SIGTERM only once resumed
    process.terminate()
    try:
        process.wait(grace)
    except subprocess.TimeoutExpired:
        kill(process)
        process.wait(10)
