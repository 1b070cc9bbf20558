"""session_migrate: check mode, idempotence, clear failures (real Redis), error paths (mocked)."""

from __future__ import annotations

import json
import os
from unittest import mock

import pytest
from ansible.module_utils.testing import patch_module_args

from sessionshift import state
from sessionshift.redisconn import RedisUnavailable
from tests.conftest import load_module
from tests.integration.test_migrate import make_corpus

module = load_module("session_migrate")


def run(capsys, check_mode=False, **params):
    params = dict(params, _ansible_check_mode=check_mode)
    with patch_module_args(params), pytest.raises(SystemExit):
        module.main()
    return json.loads(capsys.readouterr().out)


def redis_option(settings, **overrides):
    values = {"url": settings.url, "username": settings.username, "password": settings.password,
              "ca_file": settings.ca_file}
    values.update(overrides)
    return values


@pytest.mark.integration
def test_check_mode_writes_nothing_then_a_run_then_an_idempotent_rerun(redis_client, redis_server,
                                                                       tmp_path, capsys):
    session_dir, state_dir = str(tmp_path / "sessions"), str(tmp_path / "state")
    make_corpus(session_dir, 120)
    params = dict(redis=redis_option(redis_server.settings()), session_dir=session_dir,
                  state_dir=state_dir, batch_size=25, workers=2)

    preview = run(capsys, check_mode=True, **params)
    assert preview["changed"] is True and preview["would_write"] == 120 and preview["written"] == 0
    assert redis_client.dbsize() == 0 and not os.path.exists(state_dir)

    first = run(capsys, **params)
    assert first["changed"] is True and first["written"] == 120 and first["complete"]
    assert state.read_json(os.path.join(state_dir, state.MIGRATE_FILE))["complete"] is True

    second = run(capsys, **params)
    assert second["changed"] is False and second["written"] == 0 and second["counts"]["exists"] == 120
    assert run(capsys, check_mode=True, **params)["changed"] is False


@pytest.mark.integration
def test_a_wrong_password_fails_clearly_without_leaking_it(redis_server, tmp_path, capsys):
    make_corpus(str(tmp_path / "sessions"), 3)
    result = run(capsys, redis=redis_option(redis_server.settings(), password="not-the-password"),
                 session_dir=str(tmp_path / "sessions"), state_dir=str(tmp_path / "state"), workers=1)
    assert result["failed"] and "authentication failed" in result["msg"]
    assert f"127.0.0.1:{redis_server.port}" in result["msg"]
    assert "not-the-password" not in json.dumps(result)


def test_unreachable_redis_names_the_endpoint(tmp_path, capsys):
    make_corpus(str(tmp_path / "sessions"), 3)
    with mock.patch("sessionshift.migrate.migrate",
                           side_effect=RedisUnavailable("rediss://10.0.0.9:6379", "timed out", "check SG")):
        result = run(capsys, redis={"url": "rediss://10.0.0.9:6379/0"},
                     session_dir=str(tmp_path / "sessions"))
    assert result["failed"] and result["endpoint"] == "rediss://10.0.0.9:6379"
    assert "timed out" in result["msg"] and result["changed"] is False


def test_missing_session_dir_is_a_clear_failure(tmp_path, capsys):
    result = run(capsys, redis={"url": "rediss://127.0.0.1:1/0"}, session_dir=str(tmp_path / "nope"),
                 state_dir=str(tmp_path / "state"))
    assert result["failed"] and "does not exist" in result["msg"] and str(tmp_path / "nope") in result["msg"]


def test_password_is_marked_no_log():
    from ansible_collections.sessionshift.migration.plugins.module_utils.sessionshift_common import (
        REDIS_OPTIONS,
    )

    assert REDIS_OPTIONS["password"]["no_log"] is True
