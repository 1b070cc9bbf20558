"""Run an engine as a subprocess and measure its wall time and memory, workers included.

Two memory figures, both over the whole process tree (the command and every
worker it forks):

* ``peak_rss_max_process_mb``: exact, from ``wait4``'s rusage: the largest peak
  RSS (``ru_maxrss``) of the command and of each descendant it waited for.
  Linux carries a process's peak RSS across ``exec``, so a command forked
  straight from this (large) benchmark process would inherit our own peak:
  the command is therefore forked by a tiny launcher (``_LAUNCHER``, a bare
  ``python -S``) that waits for it and reports its rusage.
* ``peak_rss_tree_sum_mb``: sampled every 20 ms from ``/proc/<pid>/status``:
  the largest *sum* of ``VmRSS`` over the tree at one instant. RSS counts
  shared pages (the interpreter, copy-on-write pages after fork) once per
  process, so this sum over-states the real footprint: it is the pessimistic
  figure.

Per-process ``VmHWM`` as last sampled is kept too, to see which process peaks.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time


@dataclasses.dataclass
class Measured:
    command: list[str]
    seconds: float
    returncode: int
    stdout: str
    stderr: str
    peak_rss_max_process_mb: float
    peak_rss_tree_sum_mb: float
    processes_seen: int
    hwm_by_pid_mb: dict[int, float]
    cpu_seconds: float = 0.0  # user + system, the command and its waited-for descendants
    cmdline_by_pid: dict[int, str] = dataclasses.field(default_factory=dict)

    def peak_hwm_matching(self, text: str) -> float:
        """The largest sampled VmHWM (MB) among processes whose command line contains *text*."""
        return max((mb for pid, mb in self.hwm_by_pid_mb.items()
                    if text in self.cmdline_by_pid.get(pid, "")), default=0.0)

    def memory_dict(self) -> dict:
        return {"peak_rss_max_process_mb": round(self.peak_rss_max_process_mb, 1),
                "peak_rss_tree_sum_mb": round(self.peak_rss_tree_sum_mb, 1),
                "processes_seen": self.processes_seen}


# Forks and execs the command, waits for it, writes its ru_maxrss (kB) and user and system CPU seconds
# (the command and every descendant it waited for) to argv[1], exits with its code.
_LAUNCHER = """
import os, sys
pid = os.fork()
if pid == 0:
    try:
        os.execvp(sys.argv[2], sys.argv[2:])
    finally:
        os._exit(127)
_, status, usage = os.wait4(pid, 0)
with open(sys.argv[1], "w") as handle:
    handle.write(f"{usage.ru_maxrss} {usage.ru_utime} {usage.ru_stime}")
sys.exit(os.waitstatus_to_exitcode(status))
"""


def _children(pid: int) -> list[int]:
    found = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return found
    for task in tasks:
        try:
            with open(f"/proc/{pid}/task/{task}/children") as handle:
                found.extend(int(child) for child in handle.read().split())
        except OSError:
            continue
    return found


def process_tree(root: int) -> list[int]:
    """*root* and all its live descendants."""
    tree, pending = [], [root]
    while pending:
        pid = pending.pop()
        tree.append(pid)
        pending.extend(_children(pid))
    return tree


def status_kb(pid: int, fields: tuple[str, ...] = ("VmRSS", "VmHWM")) -> dict[str, int]:
    """Memory fields (kB) of /proc/<pid>/status; empty if the process is gone."""
    values: dict[str, int] = {}
    try:
        with open(f"/proc/{pid}/status") as handle:
            for line in handle:
                name, _, rest = line.partition(":")
                if name in fields:
                    values[name] = int(rest.split()[0])
    except (OSError, ValueError, IndexError):
        return {}
    return values


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            return handle.read().replace(b"\0", b" ").decode("utf-8", "replace").strip()
    except OSError:
        return ""


class _Sampler(threading.Thread):
    def __init__(self, root: int, interval: float = 0.02):
        super().__init__(daemon=True)
        self.root = root
        self.interval = interval
        self.stop = threading.Event()
        self.peak_sum_kb = 0
        self.hwm_kb: dict[int, int] = {}
        self.cmdlines: dict[int, str] = {}

    def run(self) -> None:
        while not self.stop.is_set():
            total = 0
            for pid in process_tree(self.root)[1:]:  # the launcher itself is not measured
                values = status_kb(pid)
                total += values.get("VmRSS", 0)
                if "VmHWM" in values:
                    self.hwm_kb[pid] = max(self.hwm_kb.get(pid, 0), values["VmHWM"])
                # Re-read: a child seen between fork and exec still shows its parent's command line.
                self.cmdlines[pid] = _cmdline(pid) or self.cmdlines.get(pid, "")
            self.peak_sum_kb = max(self.peak_sum_kb, total)
            self.stop.wait(self.interval)


def run_measured(command: list[str], *, env: dict | None = None, timeout: float = 3600,
                 cwd: str | None = None) -> Measured:
    """Run *command* to completion; its wall time, output and peak memory (see module doc)."""
    fd, rusage_file = tempfile.mkstemp(prefix="bench-rusage-")
    os.close(fd)
    launched = [sys.executable, "-S", "-c", _LAUNCHER, rusage_file, *command]
    started = time.perf_counter()
    process = subprocess.Popen(launched, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env=env, cwd=cwd)
    sampler = _Sampler(process.pid)
    sampler.start()
    # Read output in threads so a chatty process never blocks on a full pipe.
    out: list[str] = []
    err: list[str] = []
    readers = [threading.Thread(target=lambda: out.append(process.stdout.read()), daemon=True),
               threading.Thread(target=lambda: err.append(process.stderr.read()), daemon=True)]
    for reader in readers:
        reader.start()
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        for pid in reversed(process_tree(process.pid)):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        process.wait()
    seconds = time.perf_counter() - started
    sampler.stop.set()
    sampler.join()
    for reader in readers:
        reader.join()
    try:
        with open(rusage_file) as handle:
            fields = handle.read().split() or ["0", "0", "0"]
    finally:
        os.unlink(rusage_file)
    max_rss_kb, cpu_seconds = int(fields[0]), float(fields[1]) + float(fields[2])
    return Measured(command=command, seconds=seconds, returncode=process.returncode,
                    stdout="".join(out), stderr="".join(err),
                    peak_rss_max_process_mb=max_rss_kb / 1024, cpu_seconds=cpu_seconds,
                    peak_rss_tree_sum_mb=sampler.peak_sum_kb / 1024,
                    processes_seen=len(sampler.hwm_kb),
                    hwm_by_pid_mb={pid: kb / 1024 for pid, kb in sampler.hwm_kb.items()},
                    cmdline_by_pid=dict(sampler.cmdlines))
