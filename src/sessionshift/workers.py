"""Forked worker processes over groups of shares: the parallel half of migrate and validate.

Reading and decoding session files is CPU-bound Python, so a scan uses every
core by handing groups of shares (see :mod:`.shares`) to forked workers. Each
worker builds its own pass (with its own Redis connection: connections must
not cross a fork) and runs it over the groups it takes from a queue; the
parent hears progress deltas and each finished group, in the order they end,
and fails the run on the first worker that cannot go on.

fork, not spawn: the workers need no re-import (an Ansible module's
``__main__`` could not be re-imported).
"""

from __future__ import annotations

import collections
import itertools
import multiprocessing
import os
import queue
from collections.abc import Callable, Iterable
from typing import Any, Protocol

from .redisconn import RedisUnavailable

Report = Callable[[collections.Counter], None]
MAX_DEFAULT_WORKERS = 8


def resolve_workers(requested: int) -> int:
    """*requested* workers, or for 0 (the default) the CPU count, capped at MAX_DEFAULT_WORKERS."""
    if isinstance(requested, bool) or not isinstance(requested, int) or requested < 0:
        raise ValueError(f"workers must be 0 (one per CPU) or a positive number, not {requested!r}")
    if requested > 0:
        return requested
    return max(1, min(os.cpu_count() or 1, MAX_DEFAULT_WORKERS))


class GroupPass(Protocol):
    def run(self, shares: tuple[int, ...]) -> Any:
        """Scan one group of shares; the result goes to the parent's ``on_group``."""

    def close(self) -> None:
        """Release the pass's Redis connection."""


# Called in each worker (in this process when there is one) with its progress reporter.
StartPass = Callable[[Report], GroupPass]


def run_groups(work: Iterable[Any], workers: int, start_pass: StartPass, *,
               on_progress: Report, on_group: Callable[[Any, Any], None], name: str) -> None:
    """Run every group of *work* in *workers* forked processes (in this one when workers is 1).

    *work* may be a generator (the export's scan): it is read in this process
    while the workers run, at most ``2 * workers`` groups ahead of them, so
    memory stays flat however long it is.

    Raises the first worker's :class:`RedisUnavailable` and ``OSError`` (an
    unreadable directory...) as they were, any other failure as a RuntimeError
    naming the worker; groups already finished have been passed to *on_group*
    by then (a checkpoint can keep them).
    """
    if workers <= 1:
        one_pass = start_pass(on_progress)
        try:
            for group in work:
                on_group(group, one_pass.run(group))
        finally:
            one_pass.close()
        return
    context = multiprocessing.get_context("fork")
    tasks, results = context.Queue(maxsize=2 * workers), context.Queue()
    processes = [context.Process(target=_worker, name=f"sessionshift-{name}-{index}",
                                 args=(index, os.getpid(), start_pass, tasks, results), daemon=True)
                 for index in range(workers)]
    for process in processes:
        process.start()
    pool = _Pool(name, processes, results, on_progress, on_group)
    try:
        for group in itertools.chain(work, [None] * workers):  # None: the worker's signal to exit
            while pool.failure is None and not _put(tasks, group):
                while pool.failure is None and pool.receive(block=False):
                    pass  # a full queue: take results meanwhile, or a dead worker would block us
            if pool.failure is not None:
                break
        while pool.running and pool.failure is None:
            pool.receive(block=True)
    finally:
        for process in processes:
            if process.is_alive() and pool.failure is not None:
                process.terminate()
        for process in processes:
            process.join(10)
        if pool.failure is not None:
            tasks.cancel_join_thread()  # groups left for dead workers: never wait to flush them
        tasks.close()
        results.close()
    if pool.failure is not None:
        raise pool.failure


def _put(tasks, group) -> bool:
    try:
        tasks.put(group, timeout=0.2)
    except queue.Full:
        return False
    return True


class _Pool:
    """The parent's side: the workers' messages, and the first failure among them."""

    def __init__(self, name: str, processes, results, on_progress: Report,
                 on_group: Callable[[Any, Any], None]):
        self.name, self.processes, self.results = name, processes, results
        self.on_progress, self.on_group = on_progress, on_group
        self.running, self.failure = len(processes), None

    def receive(self, block: bool) -> bool:
        """Handle one message; False when none came (then a dead worker is a failure)."""
        try:
            message = self.results.get(timeout=1.0) if block else self.results.get_nowait()
        except queue.Empty:
            dead = [p for p in self.processes if p.exitcode not in (None, 0)]
            if dead and self.failure is None:
                self.failure = RuntimeError(f"{self.name} worker {dead[0].name} died with exit code "
                                            f"{dead[0].exitcode}; run it again with workers=1 to see why")
            return False
        kind = message[0]
        if kind == "progress":
            self.on_progress(message[1])
        elif kind == "group":
            self.on_group(message[1], message[2])
        elif kind == "exit":
            self.running -= 1
        elif self.failure is None:  # stop at the first failure; finished groups are already reported
            if kind == "redis":
                self.failure = RedisUnavailable(*message[1:])
            elif kind == "os":
                self.failure = OSError(*message[1:])
            else:
                self.failure = RuntimeError(f"{self.name} worker failed: {message[1]}")
        return True


# Messages from workers: ("progress", delta), ("group", shares, result),
# ("redis", endpoint, cause, hint), ("crash", text), ("exit", worker_index).


def _worker(index: int, parent_pid: int, start_pass: StartPass, tasks, results) -> None:
    def report(delta: collections.Counter) -> None:
        if os.getppid() != parent_pid:
            os._exit(3)  # the parent was killed (SIGKILL): stop; a rerun redoes this group
        results.put(("progress", delta))

    try:
        one_pass = start_pass(report)
        try:
            while (shares := tasks.get()) is not None:
                results.put(("group", shares, one_pass.run(shares)))
        finally:
            one_pass.close()
    except RedisUnavailable as exc:
        results.put(("redis", exc.endpoint, exc.cause, exc.hint))
    except OSError as exc:  # the environment (permissions, a vanished directory): exit 2, not a crash
        results.put(("os", exc.errno, exc.strerror or str(exc), exc.filename))
    except Exception as exc:  # reported to the parent, which fails the run with it
        results.put(("crash", f"{type(exc).__name__}: {exc}"))
    finally:
        results.put(("exit", index))
        results.close()
        results.join_thread()
