"""Rollback on alert and a watch-window breach, on the real stack with users logged in.

One LocalStack for the module (TLS Redis primary + replica, two gunicorn app hosts with
seeded sessions, the real playbooks on free ports), simulated users on both hosts checking
every answer, and the seeded users (idle since phase 1) looked up by their sids at the end.

1. Rollback on alert: the fleet in phase 3, a CloudWatch alarm under the rollout prefix goes
   to ALARM on a real moto server, one poll of ``python -m sessionshift.alarmwatch --once``
   runs ``rollback.yml -e rollback_to=previous`` against the stack's inventory, and every
   host is back in phase 2.
2. A breach in the watch window: during the flip to redis_read the Redis primary is paused
   (SIGSTOP) so the flipped host's session writes to Redis fail; the playbook reverts that
   host to dual_write (rescue) and exits non-zero.

Neither loses a session or a write. Takes about 4-6 minutes (the playbooks dominate).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time

import boto3
import pytest

from devstack.local_stack import ROOT, LocalStack
from devstack.moto_server import FAKE_CREDENTIALS, REGION, MotoServer
from sessionshift import phasefile
from tests.load.live_flip import make_stack_dir, seeded_users
from tools.usersim import Simulation, Tally, check_seeded_sessions

pytestmark = [pytest.mark.integration, pytest.mark.slow]
PREFIX = "sessionshift-"


@pytest.fixture(scope="module")
def stack():
    directory = make_stack_dir()
    # Short Redis timeouts in the app (as tests/load/apps.py uses): a paused Redis fails a session
    # write in half a second (journaled, counted) instead of holding the request for 5 s x retries.
    fast_fail = ("{{ sessionshift_redis | combine({'socket_timeout': 0.5, 'connect_timeout': 0.5, "
                 "'retries': 0}) }}")
    stack = LocalStack.create(directory, hosts=2, seed_sessions=50, watch_seconds=2,
                              extra_vars={"session_app_redis": fast_fail})
    try:
        setup = stack.playbook("local_infra.yml")
        assert setup.returncode == 0, setup.output[-3000:]
        stack.seeded = {host: seeded_users(stack, host) for host in stack.app_ports}
        yield stack
    finally:
        stack.stop()
        subprocess.run(["rm", "-rf", directory], check=False)


@pytest.fixture
def users(stack):
    urls = [stack.app_url(host) for host in stack.app_ports]
    simulation = Simulation(urls, users_per_host=4, think_time=0.1)
    simulation.start()
    yield simulation
    simulation.stop()


def phases(stack) -> dict[str, str]:
    return {host: phasefile.read_phase(stack.state_dir(host)).phase.label for host in stack.app_ports}


def bring_to(stack, wanted: str) -> None:
    """Run the forward playbooks until every host is in *wanted* (so each test can run alone)."""
    order = ["file", "dual_write", "redis_read"]
    for index in range(1, order.index(wanted) + 1):
        if any(order.index(phase) < index for phase in phases(stack).values()):
            run = stack.playbook(f"phase{index + 1}.yml")
            assert run.returncode == 0, run.output[-3000:]
    assert set(phases(stack).values()) == {wanted}


def assert_nothing_lost(stack, tallies: dict[str, Tally]) -> None:
    total = Tally()
    for tally in tallies.values():
        total.add(tally)
    assert total.requests > 100, total.requests  # the users really were busy
    assert (total.errors, total.logged_out, total.lost_writes) == (0, 0, 0), \
        (total.errors, total.logged_out, total.lost_writes)
    for host in stack.app_ports:
        seeded = check_seeded_sessions(stack.app_url(host), stack.seeded[host])
        assert seeded["logged_in"] == seeded["checked"] == len(stack.seeded[host]), (host, seeded)


def test_an_alarm_rolls_the_fleet_back_from_phase_3_to_2_and_nobody_is_logged_out(stack, users, tmp_path):
    bring_to(stack, "redis_read")
    with MotoServer.start() as moto:
        cloudwatch = boto3.client("cloudwatch", **moto.client_kwargs())
        cloudwatch.put_metric_alarm(AlarmName=PREFIX + "session-write-errors", MetricName="Evictions",
                                    Namespace="AWS/ElastiCache", Statistic="Sum", Period=60,
                                    EvaluationPeriods=1, Threshold=0,
                                    ComparisonOperator="GreaterThanThreshold")
        cloudwatch.set_alarm_state(AlarmName=PREFIX + "session-write-errors", StateValue="ALARM",
                                   StateReason="test: session writes failing")
        env = dict(os.environ, **FAKE_CREDENTIALS, SESSIONSHIFT_LOCAL_DIR=stack.local_dir,
                   ANSIBLE_CONFIG=os.path.join(ROOT, "ansible.cfg"), ANSIBLE_NOCOLOR="1")
        state_file = str(tmp_path / "alarmwatch.json")
        watcher = subprocess.run(
            [sys.executable, "-m", "sessionshift.alarmwatch", "--once", "--endpoint-url", moto.endpoint_url,
             "--region", REGION, "--inventory", stack.inventory, "--alarm-prefix", PREFIX,
             "--state-file", state_file, "--extra-vars", json.dumps(stack.extra_vars)],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=900, check=False)
    tallies = users.stop()
    assert watcher.returncode == 0, watcher.stdout[-3000:] + watcher.stderr[-3000:]
    with open(state_file) as handle:
        record = json.load(handle)
    assert record["last_rollback"]["alarms"] == [PREFIX + "session-write-errors"]
    assert record["last_rollback"]["returncode"] == 0, watcher.stdout[-3000:]
    assert phases(stack) == {host: "dual_write" for host in stack.app_ports}
    assert_nothing_lost(stack, tallies)


def test_a_breach_in_the_watch_window_reverts_the_host_and_stops_the_rollout(stack, users):
    bring_to(stack, "dual_write")
    with open(os.path.join(stack.local_dir, "redis", "primary", "redis.pid")) as handle:
        redis_pid = int(handle.read())
    flipped, paused = threading.Event(), []

    def pause_redis_once_a_host_reads_from_it() -> None:
        deadline = time.monotonic() + 600
        while "redis_read" not in phases(stack).values():
            if flipped.wait(0.1) or time.monotonic() > deadline:
                return
        time.sleep(3)  # inside the watch window (15 s), after its first metrics sample
        os.kill(redis_pid, signal.SIGSTOP)
        paused.append(time.time())
        try:
            time.sleep(5)
        finally:
            os.kill(redis_pid, signal.SIGCONT)

    pauser = threading.Thread(target=pause_redis_once_a_host_reads_from_it, daemon=True)
    pauser.start()
    try:
        run = stack.playbook("phase3.yml", extra={"rollout_watch_seconds": 15})
    finally:
        flipped.set()
        pauser.join(30)
    time.sleep(3)  # the journal drains (replayed every SESSIONSHIFT_REPLAY_INTERVAL)
    tallies = users.stop()
    assert paused, "no host flipped to redis_read"
    assert run.returncode != 0, run.output[-3000:]
    assert "breached the watch window" in run.output and "was reverted to dual_write" in run.output, \
        run.output[-3000:]
    assert phases(stack) == {host: "dual_write" for host in stack.app_ports}
    assert_nothing_lost(stack, tallies)
