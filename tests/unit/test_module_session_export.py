"""session_export against a real redis-server: check mode, idempotence, the phase-module handshake."""

from __future__ import annotations

import json
import os
import time

import pytest
from ansible.module_utils.testing import patch_module_args

from sessionshift import formats, state
from sessionshift.keys import KeyLayout
from sessionshift.store import SessionStore
from tests.conftest import load_module

pytestmark = pytest.mark.integration

module = load_module("session_export")
phase_module = load_module("session_phase")


def run(capsys, target=module, check_mode=False, diff=False, **params):
    params = dict(params, _ansible_check_mode=check_mode, _ansible_diff=diff)
    with patch_module_args(params), pytest.raises(SystemExit):
        target.main()
    return json.loads(capsys.readouterr().out)


def redis_param(server):
    settings = server.settings()
    return {"url": settings.url, "username": settings.username, "password": settings.password,
            "ca_file": settings.ca_file}


@pytest.fixture
def setup(redis_client, redis_server, tmp_path):
    store = SessionStore(redis_client, KeyLayout())
    expiry = int(time.time()) + 600
    for i in range(25):
        store.app_write(store.layout.file_name(f"sid-{i}"), formats.encode_value({"n": i}), expiry)
    session_dir = tmp_path / "sessions"
    session_dir.mkdir()
    params = {"redis": redis_param(redis_server), "session_dir": str(session_dir),
              "state_dir": str(tmp_path / "state")}
    return store, params


def test_check_mode_changes_nothing_then_a_run_then_a_second_run_is_unchanged(setup, capsys):
    _store, params = setup
    preview = run(capsys, check_mode=True, diff=True, **params)
    assert preview["changed"] is True and preview["written"] == 25 and preview["record"] is None
    assert "files to write: 25" in preview["diff"]["before"]
    assert os.listdir(params["session_dir"]) == [] and not os.path.exists(params["state_dir"])

    first = run(capsys, **params)
    assert first["changed"] is True and first["keys_exported"] == 25
    assert first["record"] == os.path.join(params["state_dir"], "export.json")
    assert len(os.listdir(params["session_dir"])) == 25

    second = run(capsys, **params)
    assert second["changed"] is False and second["counts"]["unchanged"] == 25
    assert params["redis"]["password"] not in json.dumps(second)  # no_log


def test_the_export_record_lets_session_phase_roll_back(setup, capsys):
    _store, params = setup
    for phase in ("dual_write", "redis_read", "redis_only"):
        assert not run(capsys, phase_module, state_dir=params["state_dir"], phase=phase).get("failed")
    refused = run(capsys, phase_module, state_dir=params["state_dir"], phase="redis_read")
    assert refused["failed"] is True
    time.sleep(1)  # export.json's finished_at has whole seconds, like redis_only_since
    exported = run(capsys, **params)
    assert exported["phase"] == "redis_only"
    back = run(capsys, phase_module, state_dir=params["state_dir"], phase="redis_read")
    assert back["changed"] is True and not back.get("failed")


def test_mode_owner_and_bad_values(setup, capsys):
    _store, params = setup
    result = run(capsys, mode="0640", owner="0", group="0", **params)
    name = sorted(os.listdir(params["session_dir"]))[0]
    assert os.stat(os.path.join(params["session_dir"], name)).st_mode & 0o777 == 0o640
    assert result["changed"] is True
    bad = run(capsys, owner="no-such-user-here", **params)
    assert bad["failed"] is True and "owner" in bad["msg"]
    bad = run(capsys, mode="0999", **params)
    assert bad["failed"] is True and "mode" in bad["msg"]


def test_unreachable_redis_and_missing_directory_fail_clearly(setup, capsys):
    _store, params = setup
    missing = run(capsys, **dict(params, session_dir=params["session_dir"] + "-missing"))
    assert missing["failed"] is True and "does not exist" in missing["msg"]
    down = run(capsys, **dict(params, redis=dict(params["redis"], url="rediss://127.0.0.1:1/0", retries=0)))
    assert down["failed"] is True and "connection refused" in down["msg"]
    assert not os.path.exists(state.state_path(params["state_dir"], state.EXPORT_FILE))
