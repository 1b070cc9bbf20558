"""What converge must leave on every app host: gunicorn answering /healthz, phase 1,
a private session directory and config, and file sessions that work."""

from __future__ import annotations

import json

import pytest

testinfra_hosts = ["ansible://app1", "ansible://app2"]


@pytest.fixture
def app(hostvars):
    return hostvars("session_app_port", "session_app_base_dir", "session_app_session_dir",
                    "session_app_state_dir")


def test_gunicorn_answers_healthz(host, app):
    reply = json.loads(host.check_output(f"curl -sf http://127.0.0.1:{app['session_app_port']}/healthz"))
    assert reply["status"] == "ok"
    pid_file = host.file(app["session_app_base_dir"] + "/run/gunicorn.pid")
    master = host.process.get(pid=int(pid_file.content_string.strip()))
    assert "gunicorn" in master.args


def test_host_starts_in_phase_file(host, app):
    phase = json.loads(host.file(app["session_app_state_dir"] + "/phase.json").content_string)
    assert phase["phase"] == "file" and phase["number"] == 1


def test_session_dir_is_private_and_config_secret(host, app):
    session_dir = host.file(app["session_app_session_dir"])
    assert session_dir.is_directory and session_dir.mode == 0o700
    config = host.file(app["session_app_base_dir"] + "/translate_app.json")
    assert config.mode == 0o600
    settings = json.loads(config.content_string)
    assert settings["SESSIONSHIFT_REDIS"]["url"].startswith("rediss://")
    assert settings["SESSION_FILE_DIR"] == session_dir.path


def test_login_keeps_a_file_session(host, app):
    """Phase 1: a login writes a cachelib file that the next request reads back."""
    port = app["session_app_port"]
    jar = f"/tmp/molecule-{port}.cookies"
    base = f"curl -sf -H 'Accept: application/json' -b {jar} -c {jar} http://127.0.0.1:{port}"
    before = set(host.file(app["session_app_session_dir"]).listdir())
    try:
        host.check_output(f"{base}/login -d username=molecule -d password=pw")
        state = json.loads(host.check_output(f"{base}/"))
    finally:
        host.run(f"rm -f {jar}")
    assert state["logged_in"] and state["user"] == "molecule"
    assert set(host.file(app["session_app_session_dir"]).listdir()) - before
