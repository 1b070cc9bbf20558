"""Every way back is as safe as the way forward: walks that step back to `file` and go forward again.

The walks drive the demo app in-process (the real PhasedSessionInterface) against a
real redis-server, move the host with the phase file (what session_phase writes, one
adjacent step at a time), and backfill, validate and gate with the operator's own tools
(the sessionshift CLI and the phase-3 gate on the host's records).

A Redis copy made before the host's last return to `file` must never be served, never
be counted consistent and never block a fresh copy.
"""

from __future__ import annotations

import dataclasses
import datetime
import os
import time

import pytest

from sessionshift import cli, formats, gates, phasefile, validate
from sessionshift.backup import create_backup, verify_backup
from sessionshift.keys import KeyLayout

from .test_interface import JSON, Env, login, translate, view

pytestmark = pytest.mark.integration


@pytest.fixture
def env(tmp_path, redis_server, redis_client, monkeypatch):
    monkeypatch.setenv(cli.PASSWORD_ENV, redis_server.password)
    return Walk(tmp_path, redis_server, redis_client)


class Walk(Env):
    def step(self, *phases: str) -> None:
        """Adjacent moves, as the playbooks make them (no force)."""
        for target in phases:
            phasefile.set_phase(self.state_dir, target, by="test")

    def tool(self, command: str, *extra: str) -> int:
        settings = self.server.settings()
        return cli.main([command, "--session-dir", self.session_dir, "--state-dir", self.state_dir,
                         "--redis-url", settings.url, "--redis-user", settings.username,
                         "--ca-file", settings.ca_file, "--quiet", *extra])

    def backfill_and_validate(self) -> gates.GateResult:
        assert self.tool("migrate", "--workers", "1") == 0
        self.tool("validate", "--workers", "1", "--recheck-delay", "0")
        return gates.evaluate({"gate": "redis_read", "state_dir": self.state_dir, "threshold": 100.0},
                              now=datetime.datetime.now(datetime.UTC))


def test_a_logout_in_phase_1_after_a_step_back_stays_logged_out(env):
    client = env.app().test_client()
    env.step("dual_write")
    login(client, "alice")  # file and a Redis copy
    old_cookie = client.get_cookie("session").value
    env.step("file")  # the step back (a watch breach, rollback_to=file, the emergency rollback)
    client.post("/logout", headers=JSON)  # phase 1: the file goes, the Redis copy cannot be touched
    assert client.get_cookie("session") is None
    env.step("dual_write")
    gate = env.backfill_and_validate()
    env.step("redis_read")  # as an operator who pushed on past the gate
    client.set_cookie("session", old_cookie)
    response = view(client)
    assert response.json["logged_in"] is False, "the old cookie is logged in again from a stale Redis copy"
    # Nothing was comparable (no live file): no evidence, so the gate must not have passed.
    assert not gate.passed, gate
    assert any("comparable" in reason for reason in gate.reasons), gate.reasons


def test_a_write_in_phase_1_after_a_step_back_is_what_phase_3_serves(env):
    client = env.app().test_client()
    env.step("dual_write")
    login(client, "bob")
    translate(client, "before the step back")  # the Redis copy holds this
    env.step("file")
    after = translate(client, "written in phase 1")  # the file alone has this
    env.step("dual_write")
    gate = env.backfill_and_validate()
    assert gate.passed, gate.reasons  # the fresh copy is made, so it is consistent
    env.step("redis_read")
    response = view(client)
    assert response.headers["X-Session-Source"] == "redis"
    assert response.json["writes"] == after["writes"]
    assert response.json["last_write"] == "translate:written in phase 1"


def test_a_second_return_to_file_retires_the_generation_again(env):
    """Two round trips: each return to `file` retires the copies made before it."""
    client = env.app().test_client()
    env.step("dual_write")
    login(client, "carol")
    for round_trip in range(2):
        env.step("file")
        translate(client, f"phase 1, round {round_trip}")
        env.step("dual_write")
        translate(client, f"phase 2, round {round_trip}")  # a Redis copy in the new generation
    env.step("file")
    final = translate(client, "last write, in phase 1")
    env.step("dual_write")
    assert env.backfill_and_validate().passed
    env.step("redis_read")
    assert view(client).json["writes"] == final["writes"]


def test_validation_counts_stale_and_orphaned_copies_and_the_gate_refuses_them(env):
    layout = KeyLayout(generation=2)
    os.makedirs(env.session_dir)
    now = int(time.time())
    fresh, old, orphan = (layout.file_name(sid) for sid in ("fresh-sid", "old-sid", "gone-sid"))
    for name, writes in ((fresh, 1), (old, 2)):
        formats.write_session_file(env.session_dir, name, {"writes": writes}, now + 3600)
    env.redis.set(layout.session_key(fresh), formats.encode_value({"writes": 1}), exat=now + 3600)
    env.redis.set(layout.session_key(old), formats.encode_value({"writes": 1}), exat=now + 600)
    env.redis.set(layout.session_key(orphan), formats.encode_value({"writes": 9}), exat=now + 600)
    env.redis.set(KeyLayout().session_key(orphan), b"x", ex=600)  # another generation: not this one's
    config = validate.ValidateConfig(env.session_dir, layout=layout, recheck_delay=0, workers=1,
                                     count_orphans=True)
    result = validate.validate(env.redis, config)
    counts = result["counts"]
    assert (counts["consistent"], counts["different"], counts["stale"], counts["orphaned"]) == (1, 1, 1, 1)
    assert result["examples"]["stale"] == [old] and result["examples"]["orphaned"] == [orphan]
    assert not result["passed"] and "1 stale" in result["message"]
    gate = gates.validation_passed({"complete": True, "generation": 2}, result, threshold=0, generation=2)
    assert not gate.passed
    assert any("older than their file" in reason for reason in gate.reasons)
    assert any("no live file" in reason for reason in gate.reasons)
    not_counted = validate.validate(env.redis, dataclasses.replace(config, count_orphans=False))
    assert not_counted["counts"]["orphaned"] is None and "orphaned not counted" in not_counted["message"]
    assert "names no host" in not_counted["orphaned_not_counted"]  # why, in the record and the message
    facts = gates.validation_passed({"complete": True, "generation": 2}, not_counted, threshold=0,
                                    generation=2).facts
    assert facts["orphaned"] is None and facts["orphaned_not_counted"] == not_counted["orphaned_not_counted"]



def test_from_phase_4_with_redis_gone_the_files_come_from_the_last_backup(env):
    """The emergency way back from phase 4 when Redis is lost: files from the backup, no Redis."""
    from sessionshift.backup import create_backup
    from sessionshift.store import SessionStore

    os.makedirs(env.session_dir)
    for phase in ("dual_write", "redis_read", "redis_only"):
        env.step(phase)
    layout = phasefile.host_layout(env.state_dir, "session:", "sha256")
    store = SessionStore(env.redis, layout)
    now = int(time.time())
    kept, newer, gone = (layout.file_name(sid) for sid in ("kept-sid", "newer-sid", "gone-sid"))
    store.app_write(kept, formats.encode_value({"user": "kept"}), now + 3600)  # Redis alone (phase 4)
    store.app_write(newer, formats.encode_value({"user": "newer", "v": 1}), now + 3600)
    formats.write_session_file(env.session_dir, gone, {"user": "gone"}, now + 3600)  # a legacy file
    store.app_delete(gone)  # logged out in phase 4: a tombstone
    backup = os.path.join(str(env.tmp_path), "last.backup")
    create_backup(env.redis, layout, backup)
    os.utime(backup)
    time.sleep(2)  # the emergency fallback writes a newer file after the backup
    formats.write_session_file(env.session_dir, newer, {"user": "newer", "v": 2}, now + 3600)
    env.server.pause()  # Redis is gone: nothing below may need it
    try:
        code = env.tool("export", "--from-backup", backup)
        assert code == 0
        assert formats.read_session_file(os.path.join(env.session_dir, kept)).data == {"user": "kept"}
        assert formats.read_session_file(os.path.join(env.session_dir, newer)).data["v"] == 2  # kept
        assert not os.path.exists(os.path.join(env.session_dir, gone))  # the logout holds
        env.step("redis_read", "dual_write", "file")  # the export record lets the host leave phase 4
    finally:
        env.server.resume()
    assert phasefile.read_phase(env.state_dir).phase.label == "file"


def test_a_phase_5_stock_key_never_brings_a_session_back_after_a_return_to_file(env):
    """Phase 5 moves sessions to stock keys, which carry no generation. Back to file, a logout
    there removes the file only; the stock key must not log that cookie in again afterwards."""
    client = env.app(SESSIONSHIFT_MOVE_TO_STOCK_KEYS=True).test_client()
    login(client, "alice")
    old_cookie = client.get_cookie("session").value
    env.step("dual_write")
    assert env.tool("migrate", "--workers", "1") == 0
    env.step("redis_read", "redis_only", "redis")
    translate(client, "in phase 5")  # moved to the stock key
    assert view(client).headers["X-Session-Source"] == "stock"
    env.step("redis_only")
    assert env.tool("export", "--workers", "1") == 0  # step_back.yml's export out of phase 4
    env.step("redis_read", "dual_write", "file")
    client.post("/logout", headers=JSON)  # phase 1: the file goes; Redis cannot be touched
    env.step("dual_write")  # a new generation
    env.backfill_and_validate()
    backup = os.path.join(str(env.tmp_path), "phase4.backup")
    for phase in ("redis_read", "redis_only"):  # phases 3 and 4 move a stock key back on a miss
        env.step(phase)
        client.set_cookie("session", old_cookie)
        assert view(client).json["logged_in"] is False, f"logged in again from the stock key in {phase}"
    create_backup(env.redis, env.layout.in_generation(phasefile.read_phase(env.state_dir).generation), backup)
    assert verify_backup(backup)["counts"]["stock"] == 0  # nor kept for a restore to bring back
    assert env.tool("export", "--workers", "1") == 0  # nor written back to a file
    assert not os.path.exists(os.path.join(env.session_dir, env.layout.file_name(old_cookie)))


def test_from_phase_4_what_redis_took_after_the_backup_is_counted_and_a_later_logout_holds(env):
    """The real interface marks its ledger in phase 4; the files from the backup count the loss,
    apply the later logout, and keep what the emergency file fallback wrote meanwhile."""
    from sessionshift import state

    app = env.app(SESSIONSHIFT_EMERGENCY_FILE_FALLBACK=True)
    users = {name: app.test_client() for name in ("kept", "rewritten", "leaves", "new", "outage")}
    env.step("dual_write", "redis_read", "redis_only")
    at_backup = {}
    for name in ("kept", "rewritten", "leaves"):
        login(users[name], name)
        at_backup[name] = translate(users[name], "before the backup")
    backup = os.path.join(str(env.tmp_path), "phase4.backup")
    create_backup(env.redis, env.layout.in_generation(phasefile.read_phase(env.state_dir).generation), backup)
    translate(users["rewritten"], "after the backup")  # Redis alone: lost
    users["leaves"].post("/logout", headers=JSON)  # must not come back from the backup
    login(users["new"], "new")  # created after the backup: lost
    time.sleep(1.1)  # the outage's file is newer than the backup by more than its 1 s slack
    env.server.pause()
    try:
        login(users["outage"], "outage")  # Redis away: the emergency fallback writes a file
        translate(users["outage"], "in its file")
        assert env.tool("export", "--from-backup", backup) == 0
    finally:
        env.server.resume()
    after = state.read_json(state.state_path(env.state_dir, state.EXPORT_FILE))["after_backup"]
    assert (after["ledger"], after["lost_sessions"], after["older_sessions"], after["logouts_kept"]) == (
        True, 1, 1, 1)
    env.step("redis_read", "dual_write", "file")
    for name in ("kept", "rewritten"):
        body, then = view(users[name]).json, at_backup[name]
        assert (body["writes"], body["last_write"]) == (then["writes"], then["last_write"])
    assert view(users["leaves"]).json["logged_in"] is False
    assert view(users["new"]).json["logged_in"] is False
    assert view(users["outage"]).json["last_write"] == "translate:in its file"
