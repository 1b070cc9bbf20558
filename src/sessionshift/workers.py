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
import multiprocessing
import os
import queue
from collections.abc import Callable, Sequence
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


def run_groups(work: Sequence[tuple[int, ...]], workers: int, start_pass: StartPass, *,
               on_progress: Report, on_group: Callable[[tuple[int, ...], Any], None],
               name: str) -> None:
    """Run every group of *work* in *workers* forked processes (in this one when workers is 1).

    Raises the first worker's :class:`RedisUnavailable` and ``OSError`` (an
    unreadable directory...) as they were, any other failure as a RuntimeError
    naming the worker; groups already finished have been passed to *on_group*
    by then (a checkpoint can keep them).
    """
    if workers <= 1:
        one_pass = start_pass(on_progress)
        try:
            for shares in work:
                on_group(shares, one_pass.run(shares))
        finally:
            one_pass.close()
        return
    context = multiprocessing.get_context("fork")
    tasks, results = context.Queue(), context.Queue()
    for shares in work:
        tasks.put(shares)
    for _ in range(workers):
        tasks.put(None)
    processes = [context.Process(target=_worker, name=f"sessionshift-{name}-{index}",
                                 args=(index, os.getpid(), start_pass, tasks, results), daemon=True)
                 for index in range(workers)]
    for process in processes:
        process.start()
    running, failure = workers, None
    try:
        while running:
            try:
                message = results.get(timeout=1.0)
            except queue.Empty:
                dead = [p for p in processes if p.exitcode not in (None, 0)]
                if dead and failure is None:
                    failure = RuntimeError(f"{name} worker {dead[0].name} died with exit code "
                                           f"{dead[0].exitcode}")
                if failure is not None:
                    break
                continue
            kind = message[0]
            if kind == "progress":
                on_progress(message[1])
            elif kind == "group":
                on_group(message[1], message[2])
            elif kind == "exit":
                running -= 1
            elif kind == "redis" and failure is None:
                failure = RedisUnavailable(*message[1:])
            elif kind == "os" and failure is None:
                failure = OSError(*message[1:])
            elif kind == "crash" and failure is None:
                failure = RuntimeError(f"{name} worker failed: {message[1]}")
            if failure is not None:
                break  # stop at the first failure; finished groups are already reported
    finally:
        for process in processes:
            if process.is_alive() and failure is not None:
                process.terminate()
        for process in processes:
            process.join(10)
        if failure is not None:
            tasks.cancel_join_thread()  # groups left for dead workers: never wait to flush them
        tasks.close()
        results.close()
    if failure is not None:
        raise failure


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
