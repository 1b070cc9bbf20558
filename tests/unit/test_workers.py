"""sessionshift.workers: the forked share-group runner behind migrate and validate."""

from __future__ import annotations

import collections
import os

import pytest

from sessionshift.redisconn import RedisUnavailable
from sessionshift.workers import resolve_workers, run_groups


class _Pass:
    """Reports one progress tick per share and returns (shares, pid); can be told to fail."""

    def __init__(self, report, fail_on=None, error=None):
        self.report, self.fail_on, self.error = report, fail_on, error
        self.closed = False

    def run(self, shares):
        if self.fail_on in shares:
            raise self.error
        self.report(collections.Counter(done=len(shares)))
        return shares, os.getpid()

    def close(self):
        self.closed = True


def _run(workers, **fail):
    progress, groups = collections.Counter(), {}
    run_groups([(0, 1), (2, 3), (4,), (5, 6, 7)], workers, lambda report: _Pass(report, **fail),
               on_progress=progress.update, on_group=lambda shares, found: groups.update({shares: found}),
               name="test")
    return progress, groups


@pytest.mark.parametrize("workers", [1, 2, 3])
def test_every_group_runs_once_and_reports(workers):
    progress, groups = _run(workers)
    assert progress["done"] == 8
    assert sorted(groups) == [(0, 1), (2, 3), (4,), (5, 6, 7)]
    assert all(found[0] == shares for shares, found in groups.items())
    pids = {found[1] for found in groups.values()}
    if workers == 1:
        assert pids == {os.getpid()}  # no fork for one worker
    else:
        assert os.getpid() not in pids and 1 <= len(pids) <= workers


def test_a_worker_that_fails_fails_the_run_with_its_error():
    with pytest.raises(RuntimeError, match="test worker failed: ValueError: share 4 is broken"):
        _run(2, fail_on=4, error=ValueError("share 4 is broken"))


def test_redis_unavailable_in_a_worker_reaches_the_caller_as_it_was():
    with pytest.raises(RedisUnavailable) as caught:
        _run(2, fail_on=5, error=RedisUnavailable("rediss://10.0.0.9:6379", "connection refused", "check it"))
    assert (caught.value.endpoint, caught.value.cause, caught.value.hint) == (
        "rediss://10.0.0.9:6379", "connection refused", "check it")


def test_one_worker_closes_its_pass_even_when_it_fails():
    passes = []

    def start(report):
        passes.append(_Pass(report, fail_on=0, error=OSError("disk")))
        return passes[-1]

    with pytest.raises(OSError):
        run_groups([(0,)], 1, start, on_progress=lambda delta: None, on_group=lambda *a: None, name="test")
    assert passes[0].closed


def test_resolve_workers():
    assert resolve_workers(3) == 3
    assert 1 <= resolve_workers(0) <= 8
