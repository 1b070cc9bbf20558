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
import subprocess
import time

import pytest
import requests

from sessionshift import formats, phasefile, state
from sessionshift.backup import create_backup
from sessionshift.migrate import MigrateConfig, migrate
from sessionshift.phases import Phase
from sessionshift.profile import resolve
from sessionshift.redisconn import RedisSettings, connect
from tests.integration.test_rollout_alarm import assert_nothing_lost, bring_to, phases, running_stack
from tools.usersim import Simulation, check_seeded_sessions

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


# ------------------------------------------------------------------------------ phase 4, Redis dead
# From phase 4 the sessions live in Redis alone. With Redis dead, the emergency rollback writes the
# files from the last backup (rollout_emergency_backup) and counts, from each host's ledger, what
# Redis acknowledged after that backup: it is lost, and the operator is told how much.

PREFIX = "session:"


def stack_redis(stack) -> RedisSettings:
    token = os.path.join(stack.local_dir, "redis-auth-token")  # written by rotate_auth_token.yml only
    password = "demo-only-not-a-secret-4b1d7e0c"  # inventories/local: a throw-away demo value
    if os.path.exists(token):
        with open(token) as handle:
            password = handle.read().strip()
    return RedisSettings(url=f"rediss://127.0.0.1:{stack.redis_port}/0", username="sessionshift",
                         password=password, ca_file=os.path.join(stack.local_dir, "redis", "tls", "ca.crt"))


def layout_of(stack, host: str):
    hash_name = resolve(stack.state_dir(host), stack.session_dir(host), {}, needs=("hash_name",)).hash_name
    return phasefile.host_layout(stack.state_dir(host), PREFIX, hash_name)


def forward_to_phase_4(stack) -> None:
    """phase2-4.yml's moves without their watch windows (those playbooks are tested elsewhere):
    one fleet generation, the backfill in dual_write, then redis_read and redis_only."""
    generation = max(phasefile.read_phase(stack.state_dir(host)).next_generation for host in stack.app_ports)
    for phase in (Phase.DUAL_WRITE, Phase.REDIS_READ, Phase.REDIS_ONLY):
        for host in stack.app_ports:
            phasefile.set_phase(stack.state_dir(host), phase, by="test", session_dir=stack.session_dir(host),
                                generation=generation if phase == Phase.DUAL_WRITE else None,
                                key_prefix=PREFIX)
        time.sleep(2)  # every worker re-reads its phase file (interval 1 s) before the next move
        if phase == Phase.DUAL_WRITE:
            for host in stack.app_ports:
                config = MigrateConfig(stack.session_dir(host), layout=layout_of(stack, host),
                                       state_dir=stack.state_dir(host), workers=1)
                done = migrate(stack_redis(stack), config)
                assert done.as_dict()["complete"], done.as_dict()


class User:
    def __init__(self, url: str, name: str):
        self.url, self.name, self.http = url, name, requests.Session()

    def call(self, method: str, path: str, **form) -> dict:
        response = self.http.request(method, self.url + path, data=form or None,
                                     headers={"Accept": "application/json"}, timeout=10)
        assert response.status_code == 200, (self.name, path, response.status_code, response.text[:300])
        return response.json()

    def log_in(self) -> tuple:
        return self.seen(self.call("POST", "/login", username=self.name, password="demo"))

    def write(self, text: str) -> tuple:
        return self.seen(self.call("POST", "/translate", input_text=text, source_lang="en", target_lang="ja"))

    def read(self) -> tuple | None:
        body = self.call("GET", "/")
        return self.seen(body) if body["logged_in"] else None

    @staticmethod
    def seen(body: dict) -> tuple:
        return body["user"], body["writes"], body["last_write"]


@contextlib.contextmanager
def redis_killed(stack):
    """The Redis primary SIGKILLed (gone, not paused), started again afterwards for the next test."""
    directory = os.path.join(stack.local_dir, "redis", "primary")
    with open(os.path.join(directory, "redis.pid")) as handle:
        os.kill(int(handle.read()), signal.SIGKILL)
    try:
        yield
    finally:
        subprocess.run(["redis-server", os.path.join(directory, "redis.conf")], check=True)


def test_from_phase_4_with_redis_dead_the_files_come_from_the_backup_and_the_loss_is_counted(stack, tmp_path):
    bring_to_phase(stack, "file")
    forward_to_phase_4(stack)
    users = {host: {role: User(stack.app_url(host), f"{host}-{role}")
                    for role in ("kept", "rewritten", "leaves")} for host in stack.app_ports}
    at_backup = {}
    for by_role in users.values():
        for role, user in by_role.items():
            user.log_in()
            at_backup[user.name] = user.write(f"{role} before the backup")
    backup = str(tmp_path / "phase4.backup")
    client = connect(stack_redis(stack))
    layout = layout_of(stack, "app1")
    create_backup(client, layout, backup, source="the backup phase4.yml takes")
    # Every session the backup holds, as Redis had it: the files must come back exactly so.
    backed_up = {layout.parse(key).file_name: client.get(key)
                 for key in client.scan_iter(layout.session_key("*"))}
    client.close()
    newcomers = {"app1": 1, "app2": 2}
    for host, by_role in users.items():
        by_role["rewritten"].write("after the backup")  # acknowledged by Redis alone: lost
        by_role["leaves"].call("POST", "/logout")  # must not come back from the backup
        for index in range(newcomers[host]):
            by_role[f"new{index}"] = User(stack.app_url(host), f"{host}-new{index}")
            by_role[f"new{index}"].log_in()  # created after the backup: lost
    with redis_killed(stack):
        run = stack.playbook("rollback.yml", extra={"emergency": True, "rollback_reason": "Redis lost",
                                                    "rollout_emergency_backup": backup})
        assert run.returncode == 0, run.output[-4000:]
        assert set(phases(stack).values()) == {"file"}
        for host, by_role in users.items():
            record = state.read_json(state.state_path(stack.state_dir(host), state.EXPORT_FILE))
            assert record["source"].startswith("backup taken")
            counted = {name: record["after_backup"][name] for name in ("lost_sessions", "older_sessions",
                                                                        "logouts_kept")}
            assert counted == {"lost_sessions": newcomers[host], "older_sessions": 1, "logouts_kept": 1}, host
            assert f"{newcomers[host]} session(s) created then are lost" in run.output
            # In phase 1 now, with Redis still dead: every user reads the files.
            assert by_role["kept"].read() == at_backup[by_role["kept"].name]
            assert by_role["rewritten"].read() == at_backup[by_role["rewritten"].name]  # the backup's value
            assert by_role["leaves"].read() is None  # the logout after the backup holds
            assert all(by_role[f"new{index}"].read() is None for index in range(newcomers[host]))
            own_leaver = by_role["leaves"].name
            # Another host's logout after the backup: that host's ledger applies it to its own
            # files only (per-host directories: docs/architecture.md, the cookie replayed to
            # another host), so this host's copy is not asserted either way.
            other_leavers = {users[other]["leaves"].name for other in users if other != host}
            for file_name, raw in backed_up.items():
                path = os.path.join(stack.session_dir(host), file_name)
                data = formats.decode_value(raw)
                if data.get("user") == own_leaver:
                    assert not os.path.exists(path)
                elif data.get("user") not in other_leavers:
                    assert formats.read_session_file(path).data == data, (host, file_name)
            seeded = check_seeded_sessions(stack.app_url(host), stack.seeded[host])
            assert seeded["logged_in"] == len(stack.seeded[host]), seeded
