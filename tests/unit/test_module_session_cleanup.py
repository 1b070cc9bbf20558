"""session_cleanup on a real session directory: check mode, diff, idempotence, the phase-5 guard."""

from __future__ import annotations

import json
import os
import time

import pytest
from ansible.module_utils.testing import patch_module_args

from sessionshift import formats, state
from tests.conftest import load_module

module = load_module("session_cleanup")


def run(capsys, check_mode=False, diff=False, **params):
    params = dict(params, _ansible_check_mode=check_mode, _ansible_diff=diff)
    with patch_module_args(params), pytest.raises(SystemExit):
        module.main()
    return json.loads(capsys.readouterr().out)


@pytest.fixture
def dirs(tmp_path):
    session_dir = tmp_path / "sessions"
    session_dir.mkdir()
    now, directory = int(time.time()), str(session_dir)
    for i in range(10):
        formats.write_session_file(directory, formats.session_file_name(f"live-{i}"), {"i": i}, now + 600)
    for i in range(4):
        formats.write_session_file(directory, formats.session_file_name(f"dead-{i}"), {"i": i}, now - 5)
    (session_dir / "README").write_text("keep me")
    return str(session_dir), str(tmp_path / "state")


def test_check_mode_lists_and_removes_nothing_then_removes_then_unchanged(dirs, capsys):
    session_dir, state_dir = dirs
    before = sorted(os.listdir(session_dir))
    preview = run(capsys, check_mode=True, diff=True, session_dir=session_dir, state_dir=state_dir)
    assert preview["changed"] is True and preview["removed"] == 4
    assert sorted(preview["diff"]["before"].split()) == sorted(preview["removed_files"])
    assert sorted(os.listdir(session_dir)) == before
    done = run(capsys, session_dir=session_dir, state_dir=state_dir)
    assert done["changed"] is True and done["removed"] == 4 and done["counts"]["kept"] == 10
    assert "README" in os.listdir(session_dir)
    again = run(capsys, session_dir=session_dir, state_dir=state_dir)
    assert again["changed"] is False and again["removed"] == 0


def test_older_needs_max_age(dirs, capsys):
    session_dir, state_dir = dirs
    refused = run(capsys, session_dir=session_dir, state_dir=state_dir, scope="older")
    assert refused["failed"] is True and "max_age" in refused["msg"]
    # Phase file (no phase file yet): the files are the only copy, max_age 0 would log everyone out.
    refused = run(capsys, session_dir=session_dir, state_dir=state_dir, scope="older", max_age=0)
    assert refused["failed"] is True and "live session file" in refused["msg"]
    refused = run(capsys, session_dir=session_dir, state_dir=state_dir, scope="older", max_age=-60,
                  force=True)
    assert refused["failed"] is True and "negative" in refused["msg"]
    assert len(os.listdir(session_dir)) == 15
    result = run(capsys, session_dir=session_dir, state_dir=state_dir, scope="older", max_age=0, force=True)
    assert result["removed"] == 14


def test_all_is_refused_until_phase_5(dirs, capsys):
    session_dir, state_dir = dirs
    state.write_json(state.state_path(state_dir, state.PHASE_FILE), {"phase": "redis_only"})
    refused = run(capsys, session_dir=session_dir, state_dir=state_dir, scope="all")
    assert refused["failed"] is True and "not phase 5" in refused["msg"]
    assert len(os.listdir(session_dir)) == 15
    state.write_json(state.state_path(state_dir, state.PHASE_FILE), {"phase": "redis"})
    done = run(capsys, session_dir=session_dir, state_dir=state_dir, scope="all")
    assert done["removed"] == 14 and os.listdir(session_dir) == ["README"]
