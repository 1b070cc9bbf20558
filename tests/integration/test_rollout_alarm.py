"""Rollback on alert and a watch-window breach, on the real stack with users logged in.

One LocalStack for the module (TLS Redis primary + replica, two gunicorn app hosts with
seeded sessions and their CloudWatch metrics publishers, the real playbooks on free ports),
a real moto server, simulated users on both hosts checking every answer, and the seeded
users (idle since phase 1) looked up by their sids at the end.

1. Rollback on alert, end to end: the fleet in phase 3; the Redis primary stalls (SIGSTOP)
   for a few seconds, so session writes fail (journaled, counted); each host's publisher
   sends SessionWriteErrors to moto; the host's alarm (made by roles/cloudwatch_alarms)
   evaluates to ALARM (devstack.alarm_evaluator: moto does not evaluate alarms); the
   watcher, deployed by roles/alarm_watch and run with the command line its unit runs,
   rolls the fleet back once (rollback.yml, with the vault secret a vaulted host_vars file
   needs, under the stack's rollout lock); the fault comes back within the incident and an
   alarm fires again, and the fleet is not stepped back further; every host is in phase 2,
   and the watcher's SNS report and rollback.yml's summary arrive in an SQS queue
   subscribed to the topic.
2. A breach in the watch window: during the flip to redis_read the Redis primary is paused
   (SIGSTOP) so the flipped host's session writes to Redis fail; the playbook reverts that
   host to dual_write (rescue) and exits non-zero.

Neither loses a session or a write. Takes about 5-8 minutes (the playbooks dominate).
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import threading
import time

import boto3
import pytest

from devstack.alarm_evaluator import (
    apply_alarm_role,
    apply_role,
    evaluating,
    firing,
    received,
    stall_redis,
    subscribe_queue,
)
from devstack.local_stack import ROOT, LocalStack
from devstack.moto_server import FAKE_CREDENTIALS, MotoServer
from sessionshift import phasefile
from tests.load.live_flip import make_stack_dir, seeded_users
from tools.usersim import Simulation, Tally, check_seeded_sessions

# The stack, three forward playbooks and a rollback: over pytest-timeout's 600 s default here.
pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(1800)]
PREFIX = "sessionshift-"


@pytest.fixture(scope="module")
def moto():
    server = MotoServer.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def stack(moto):
    # Each app host's publisher sends its counters to moto every 2 s (the unit's command line,
    # run as a daemon: no systemd here).
    publisher = {"session_app_metrics_publisher_enabled": True,
                 "session_app_metrics_publisher_endpoint_url": moto.endpoint_url,
                 "session_app_metrics_publisher_interval": 2,
                 "session_app_metrics_publisher_environment": FAKE_CREDENTIALS}
    yield from running_stack(**publisher)


def running_stack(seed_sessions: int = 50, **extra_vars):
    """A started two-host LocalStack with seeded users (for a module fixture to ``yield from``)."""
    directory = make_stack_dir()
    # Short Redis timeouts in the app (as tests/load/apps.py uses): a paused Redis fails a session
    # write in half a second (journaled, counted) instead of holding the request for 5 s x retries.
    fast_fail = ("{{ sessionshift_redis | combine({'socket_timeout': 0.5, 'connect_timeout': 0.5, "
                 "'retries': 0}) }}")
    stack = LocalStack.create(directory, hosts=2, seed_sessions=seed_sessions, watch_seconds=2,
                              extra_vars={"session_app_redis": fast_fail, **extra_vars})
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


def vault_a_host_var(stack, directory) -> str:
    """A vault-encrypted host_vars file: any playbook on the inventory now needs the secret."""
    secret = os.path.join(directory, "vault-pass")
    with open(secret, "w") as handle:
        handle.write("e2e-only-not-a-secret\n")
    os.makedirs(os.path.join(stack.inventory, "host_vars"), exist_ok=True)
    path = os.path.join(stack.inventory, "host_vars", "app1.yml")
    with open(path, "w") as handle:
        handle.write("alarm_watch_e2e_probe: vaulted\n")
    subprocess.run([os.path.join(os.path.dirname(sys.executable), "ansible-vault"), "encrypt",
                    "--vault-id", f"e2e@{secret}", path], check=True, capture_output=True)
    return secret


def test_an_app_fault_raises_the_hosts_alarm_and_the_watcher_service_rolls_back_once(
        stack, moto, users, tmp_path):
    bring_to(stack, "redis_read")
    cloudwatch = boto3.client("cloudwatch", **moto.client_kwargs())
    apply_alarm_role(moto, str(tmp_path), list(stack.app_ports), prefix="sessionshift")
    topic, sqs, queue = subscribe_queue(moto, "sessionshift-alarms", "oncall")
    received(sqs, queue)  # (nothing yet; drains the subscription confirmation, if any)
    secret = vault_a_host_var(stack, str(tmp_path))
    watch_dir = tmp_path / "alarmwatch"
    apply_role(str(tmp_path), "alarm_watch", {
        "alarm_watch_project_dir": ROOT, "alarm_watch_inventory": stack.inventory,
        "alarm_watch_vault_ids": [f"e2e@{secret}"],
        # (the stack's templated settings stay out: the role would template them where they mean nothing)
        "alarm_watch_extra_vars": {**{k: v for k, v in stack.extra_vars.items() if "{{" not in json.dumps(v)},
                                   "rollout_sns_topic_arn": topic,
                                   "rollout_aws_endpoint_url": moto.endpoint_url},
        "alarm_watch_alarm_prefix": PREFIX, "alarm_watch_sns_topic_arn": topic,
        "alarm_watch_cooldown": 600, "alarm_watch_interval": 5, "alarm_watch_lock_file": stack.lock_file,
        "alarm_watch_aws_endpoint_url": moto.endpoint_url, "alarm_watch_python": sys.executable,
        "alarm_watch_environment": {**FAKE_CREDENTIALS, "SESSIONSHIFT_LOCAL_DIR": stack.local_dir},
        "alarm_watch_state_dir": str(watch_dir), "alarm_watch_unit_dir": str(tmp_path)})
    with open(watch_dir / "command.json") as handle:
        service = json.load(handle)
    with open(tmp_path / "sessionshift-alarmwatch.service") as handle:
        unit = handle.read()
    assert f"ExecStart={shlex.join(service['argv'])}\n" in unit  # the test runs what the unit runs

    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_VAULT")}
    watcher = subprocess.Popen(service["argv"], cwd=service["cwd"], env={**env, **service["environment"]},
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    state_file = watch_dir / "alarmwatch.json"
    try:
        with evaluating(cloudwatch, PREFIX):  # what CloudWatch does every period, and moto never
            stall_redis(stack.local_dir, 3)  # the fault: session writes to Redis time out
            deadline = time.monotonic() + 900
            while time.monotonic() < deadline and watcher.poll() is None:
                record = json.loads(state_file.read_text()) if state_file.exists() else {}
                if (((record.get("incident") or {}).get("rollback") or {}).get("returncode")) is not None:
                    break
                time.sleep(1)
            # Within the incident (600 s cool-down) the fault comes back and an alarm goes to ALARM again:
            # a new transition, which must not step the fleet back once more.
            stall_redis(stack.local_dir, 3)
            deadline = time.monotonic() + 120
            while not (refired := firing(cloudwatch, PREFIX)) and time.monotonic() < deadline:
                time.sleep(1)
            time.sleep(3 * 5 + 1)  # three more polls of the watcher
    finally:
        watcher.terminate()
        output = watcher.communicate(timeout=60)[0]
        os.unlink(os.path.join(stack.inventory, "host_vars", "app1.yml"))
    tallies = users.stop()

    incident = json.loads(state_file.read_text())["incident"]
    assert incident is not None and incident["rollback"]["returncode"] == 0, output[-4000:]
    # the stall's write errors opened it (fallback reads or 5xx alarms may join: same incident)
    assert any(name.endswith("-SessionWriteErrors") for name in incident["alarms"]), incident["alarms"]
    assert refired, "no alarm fired again within the incident: one-per-incident shows nothing"
    # one rollback for the incident, not one per alarm transition
    assert len(os.listdir(watch_dir / "alarmwatch-runs")) == 1, output[-4000:]
    assert incident["last_firing_at"] > incident["rollback"]["finished_at"]  # it saw the new firing
    assert phases(stack) == {host: "dual_write" for host in stack.app_ports}
    messages = received(sqs, queue)
    subjects = [m.get("Subject") for m in messages]
    assert f"sessionshift: rolled back one phase on alarm {incident['alarms'][0]}" in subjects, subjects
    assert "sessionshift rollback to dual_write" in subjects, subjects  # rollback.yml's own summary
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
