"""Rollbacks that need nothing that failed: the real rollback playbook with the Redis primary stopped.

On a local stack (devstack/local_stack.py: TLS Redis with a replica, two gunicorn app hosts,
free ports) with simulated users on both hosts:

* the emergency rollback from redis_read and from dual_write completes with the Redis primary
  stopped (SIGSTOP: it accepts connections and answers nothing, the worst kind of outage): the
  run_once backup reports its failure and the hosts step back to file anyway;
* the gradual rollback (rollback_to=file) completes through the same outage: its watch window
  tells journaled Redis failures (expected) from what users see (5xx, write errors not journaled).

Users keep every session and every write through all of it.
"""

from __future__ import annotations

import contextlib
import os
import signal

import pytest

from tests.integration.test_rollout_alarm import assert_nothing_lost, bring_to, phases, running_stack
from tools.usersim import Simulation

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def stack():
    # The tools' Redis connection fails fast too: the backup meets a stopped Redis within seconds.
    tools = ("{{ sessionshift_redis | combine({'socket_timeout': 1, 'connect_timeout': 1, "
             "'retries': 0}) }}")
    yield from running_stack(seed_sessions=30, rollout_redis=tools)


@contextlib.contextmanager
def redis_stopped(stack):
    with open(os.path.join(stack.local_dir, "redis", "primary", "redis.pid")) as handle:
        pid = int(handle.read())
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


def run_with_users(stack, phase: str, playbook_extra: dict) -> tuple:
    bring_to_phase(stack, phase)
    simulation = Simulation([stack.app_url(host) for host in stack.app_ports], users_per_host=3,
                            think_time=0.1)
    simulation.start()
    try:
        with redis_stopped(stack):
            run = stack.playbook("rollback.yml", extra=playbook_extra)
    finally:
        tallies = simulation.stop()
    return run, tallies


def bring_to_phase(stack, wanted: str) -> None:
    if set(phases(stack).values()) != {"file"}:
        back = stack.playbook("rollback.yml", extra={"rollback_to": "file"})
        assert back.returncode == 0, back.output[-3000:]
    bring_to(stack, wanted)


@pytest.mark.parametrize("phase", ["redis_read", "dual_write"])
def test_the_emergency_rollback_completes_with_redis_stopped(stack, phase):
    run, tallies = run_with_users(stack, phase, {"emergency": True, "rollback_reason": "Redis down"})
    assert run.returncode == 0, run.output[-4000:]
    assert "no Redis backup was taken" in run.output  # reported, not fatal
    assert set(phases(stack).values()) == {"file"}
    assert_nothing_lost(stack, tallies)


def test_the_gradual_rollback_completes_through_a_redis_outage(stack):
    run, tallies = run_with_users(stack, "redis_read", {"rollback_to": "file"})
    assert run.returncode == 0, run.output[-4000:]
    assert set(phases(stack).values()) == {"file"}
    assert "journaled" in run.output  # the watch showed the Redis failures it did not count
    assert_nothing_lost(stack, tallies)
