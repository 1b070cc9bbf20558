"""What converge (the local stack, then phases 2 to 5) must leave on every app host: gunicorn
answering /healthz, phase 5, a private session directory and config, no file session left,
and every session seeded in phase 1 still logged in, now from Redis."""

from __future__ import annotations

import json

testinfra_hosts = ["ansible://app1", "ansible://app2"]



def test_gunicorn_answers_healthz(host, app):
    reply = json.loads(host.check_output(f"curl -sf http://127.0.0.1:{app['session_app_port']}/healthz"))
    assert reply["status"] == "ok"
    pid_file = host.file(app["session_app_base_dir"] + "/run/gunicorn.pid")
    master = host.process.get(pid=int(pid_file.content_string.strip()))
    assert "gunicorn" in master.args


def test_host_went_through_every_phase_to_redis(host, app):
    phase = json.loads(host.file(app["session_app_state_dir"] + "/phase.json").content_string)
    assert phase["phase"] == "redis" and phase["number"] == 5
    assert [entry["to"] for entry in phase["history"]] == ["dual_write", "redis_read", "redis_only", "redis"]
    assert phase["redis_only_since"]


def test_session_dir_is_private_and_config_secret(host, app):
    session_dir = host.file(app["session_app_session_dir"])
    assert session_dir.is_directory and session_dir.mode == 0o700
    config = host.file(app["session_app_base_dir"] + "/translate_app.json")
    assert config.mode == 0o600
    settings = json.loads(config.content_string)
    assert settings["SESSIONSHIFT_REDIS"]["url"].startswith("rediss://")
    assert settings["SESSION_FILE_DIR"] == session_dir.path


def test_file_sessions_are_gone_after_phase_5(host, app):
    sessions = host.file(app["session_app_session_dir"]).listdir()
    assert [name for name in sessions if len(name) in (32, 64)] == []


def test_every_seeded_session_is_still_logged_in_from_redis(seeded_sessions_not_served):
    """No session lost: users seeded as files in phase 1 and idle since are served by Redis."""
    assert seeded_sessions_not_served("redis") == []


def test_backfill_and_validation_were_recorded(host, app):
    migrate = json.loads(host.file(app["session_app_state_dir"] + "/migrate.json").content_string)
    validation = json.loads(host.file(app["session_app_state_dir"] + "/validation.json").content_string)
    assert migrate["complete"] is True
    assert validation["consistency_percent"] == 100.0
