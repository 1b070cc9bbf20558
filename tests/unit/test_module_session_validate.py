"""session_validate: threshold failure, check mode (no record), errors (real Redis and mocked)."""

from __future__ import annotations

import json
import os
from unittest import mock

import pytest
import redis
from ansible.module_utils.testing import patch_module_args

from sessionshift import state
from sessionshift.keys import KeyLayout
from sessionshift.migrate import MigrateConfig, migrate
from tests.conftest import load_module
from tests.integration.test_migrate import make_corpus
from tests.unit.test_module_session_migrate import redis_option

module = load_module("session_validate")


def run(capsys, check_mode=False, **params):
    params = dict(params, _ansible_check_mode=check_mode)
    with patch_module_args(params), pytest.raises(SystemExit):
        module.main()
    return json.loads(capsys.readouterr().out)


@pytest.mark.integration
def test_passes_records_and_check_mode_does_not_record(redis_client, redis_server, tmp_path, capsys):
    session_dir, state_dir = str(tmp_path / "sessions"), str(tmp_path / "state")
    make_corpus(session_dir, 60)
    migrate(redis_server.settings(), MigrateConfig(session_dir=session_dir, workers=1))
    params = dict(redis=redis_option(redis_server.settings()), session_dir=session_dir,
                  state_dir=state_dir, recheck_delay=0)

    checked = run(capsys, check_mode=True, **params)
    assert checked["passed"] and checked["changed"] is False and checked["recorded"] is None
    assert not os.path.exists(os.path.join(state_dir, state.VALIDATION_FILE))

    result = run(capsys, **params)
    assert result["passed"] and result["changed"] is False and result["counts"]["consistent"] == 60
    assert state.read_json(result["recorded"])["consistency_percent"] == 100.0


@pytest.mark.integration
def test_below_threshold_fails_with_a_clear_message_and_still_records(redis_client, redis_server,
                                                                      tmp_path, capsys):
    session_dir, state_dir = str(tmp_path / "sessions"), str(tmp_path / "state")
    corpus = make_corpus(session_dir, 40)
    migrate(redis_server.settings(), MigrateConfig(session_dir=session_dir, workers=1))
    lost = next(iter(corpus))
    redis_client.delete(KeyLayout().session_key(lost))
    result = run(capsys, redis=redis_option(redis_server.settings()), session_dir=session_dir,
                 state_dir=state_dir, recheck_delay=0)
    assert result["failed"] and not result["passed"] and result["consistency_percent"] == 97.5
    assert "below" in result["msg"].lower() and lost in result["msg"] and "backfill" in result["msg"]
    assert state.read_json(os.path.join(state_dir, state.VALIDATION_FILE))["passed"] is False
    # a lower threshold accepts it
    assert not run(capsys, redis=redis_option(redis_server.settings()), session_dir=session_dir,
                   state_dir=state_dir, recheck_delay=0, threshold=97).get("failed")


def test_a_command_refused_mid_run_fails_with_endpoint_and_cause(redis_server, tmp_path, capsys):
    os.makedirs(tmp_path / "sessions")
    refused = redis.exceptions.ResponseError("NOPERM User sessionshift has no permissions to run 'mget'")
    with mock.patch("sessionshift.validate.validate", side_effect=refused):
        result = run(capsys, redis=redis_option(redis_server.settings()),
                     session_dir=str(tmp_path / "sessions"))
    assert result["failed"] and result["endpoint"] == redis_server.settings().endpoint
    assert "refused a command: NOPERM" in result["msg"] and "exception" not in result


def test_bad_sample_percent_is_refused(tmp_path, capsys):
    os.makedirs(tmp_path / "sessions")
    result = run(capsys, redis={"url": "rediss://127.0.0.1:1/0"}, session_dir=str(tmp_path / "sessions"),
                 sample_percent=0)
    assert result["failed"] and "sample_percent" in result["msg"]


def test_nothing_listening_is_connection_refused_with_endpoint(tmp_path, capsys):
    from devstack.redis_server import free_port

    os.makedirs(tmp_path / "sessions")
    port = free_port()
    result = run(capsys, redis={"url": f"rediss://127.0.0.1:{port}/0", "retries": 0},
                 session_dir=str(tmp_path / "sessions"), state_dir=str(tmp_path / "state"))
    assert result["failed"] and "connection refused" in result["msg"]
    assert result["endpoint"] == f"rediss://127.0.0.1:{port}"
    assert not os.path.exists(tmp_path / "state")
