"""playbooks/rotate_auth_token.yml under load: ROTATE, deploy, SET, and nobody is logged out.

Locally ElastiCache's ROTATE and SET are Redis ACLs (the new password added beside the old,
then the old removed). The fleet is in phase 4 (redis_only), where every request needs Redis:
a token an app worker still used after SET would show as errors or lost sessions.
"""

from __future__ import annotations

import os
import shutil
import time

import pytest

from devstack.local_stack import LocalStack, Traffic
from sessionshift.redisconn import RedisSettings, RedisUnavailable, connect
from tests.load.live_flip import make_stack_dir
from tests.load.runner import LocustRun, read_events, window_stats

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture
def stack():
    directory = make_stack_dir()  # readable by the redis user
    stack = LocalStack.create(directory, hosts=2, seed_sessions=100, watch_seconds=2)
    try:
        with Traffic([stack.app_url(host) for host in sorted(stack.app_ports)]):  # for the phase-4 gate
            for playbook in ("local_infra.yml", "phase2.yml", "phase3.yml", "phase4.yml"):
                run = stack.playbook(playbook)
                assert run.returncode == 0, f"{playbook}: {run.output[-3000:]}"
        yield stack
    finally:
        stack.stop()
        shutil.rmtree(directory, ignore_errors=True)


def _settings(stack: LocalStack, password: str) -> RedisSettings:
    return RedisSettings(url=f"rediss://127.0.0.1:{stack.redis_port}/0", username="sessionshift",
                         password=password, ca_file=os.path.join(stack.local_dir, "redis", "tls", "ca.crt"),
                         retries=0)


@pytest.mark.timeout(1500)
def test_a_rotation_under_fifty_users_logs_nobody_out(stack, tmp_path):
    old = "demo-only-not-a-secret-4b1d7e0c"  # inventories/local's until the first rotation
    connect(_settings(stack, old)).close()
    run = LocustRun.start([stack.app_url(host) for host in sorted(stack.app_ports)], users=50, spawn_rate=25,
                          run_time=900, out_dir=str(tmp_path / "load"), name="rotate", wait="0.2,1")
    try:
        time.sleep(8)  # every user logged in and working
        started = time.time()
        rotation = stack.playbook("rotate_auth_token.yml")
        finished = time.time()
        time.sleep(5)  # and after it
    finally:
        run.stop()
    assert rotation.returncode == 0, rotation.output[-4000:]
    checks = run.checks()
    during = window_stats(read_events(run.events_file), started, finished)
    assert checks["logins"] == 50 and during["requests"] > 100, (checks, during)
    assert (checks["session_lost"], checks["write_lost"], checks["errors"]) == (0, 0, 0), checks
    with open(os.path.join(stack.local_dir, "redis-auth-token")) as handle:
        new = handle.read()
    assert new != old and len(new) == 64
    connect(_settings(stack, new)).close()
    with pytest.raises(RedisUnavailable, match="authentication failed"):
        connect(_settings(stack, old))
    # The app hosts and the tools carry on with the new token, and a restart keeps it.
    status = stack.playbook("status.yml")
    assert status.returncode == 0, status.output[-3000:]
    again = stack.playbook("local_infra.yml")
    assert again.returncode == 0 and again.changed == 0, again.output[-3000:]
