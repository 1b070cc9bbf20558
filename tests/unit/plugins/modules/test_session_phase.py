"""session_phase: atomic, idempotent phase moves with history, check mode, diff and refusals."""

from __future__ import annotations

import json
import os

import pytest
from ansible.module_utils.testing import patch_module_args
from ansible_collections.sessionshift.migration.plugins.modules import session_phase as module

from sessionshift import phasefile, state
from sessionshift.phasefile import read_phase


def run(capsys, check_mode=False, diff=False, **params):
    params = dict(params, _ansible_check_mode=check_mode, _ansible_diff=diff)
    with patch_module_args(params), pytest.raises(SystemExit):
        module.main()
    return json.loads(capsys.readouterr().out)


def walk(capsys, state_dir, *phases):
    for phase in phases:
        result = run(capsys, state_dir=state_dir, phase=phase, changed_by="tester")
        assert not result.get("failed"), result
    return result


def test_set_is_atomic_idempotent_and_keeps_history(tmp_path, capsys):
    state_dir = str(tmp_path)
    first = run(capsys, state_dir=state_dir, phase="dual_write", changed_by="alice")
    assert first["changed"] is True
    assert (first["phase"], first["number"], first["previous_phase"]) == ("dual_write", 2, "file")
    assert first["history"][-1] | {"at": None} == {"from": "file", "to": "dual_write", "at": None,
                                                     "by": "alice", "forced": False, "emergency": False}
    again = run(capsys, state_dir=state_dir, phase="2", changed_by="bob")
    assert again["changed"] is False and again["history"] == first["history"]
    on_disk = json.loads((tmp_path / "phase.json").read_text())
    assert on_disk["phase"] == "dual_write" and on_disk["changed_by"] == "alice"
    assert [n for n in os.listdir(state_dir) if n.startswith(".")] == []  # no temporary left


def test_check_mode_changes_nothing_and_diff_shows_before_after(tmp_path, capsys):
    state_dir = str(tmp_path)
    walk(capsys, state_dir, "dual_write")
    before = (tmp_path / "phase.json").read_bytes()
    result = run(capsys, check_mode=True, diff=True, state_dir=state_dir, phase="redis_read")
    assert result["changed"] is True and result["phase"] == "redis_read"
    assert (tmp_path / "phase.json").read_bytes() == before
    assert json.loads(result["diff"]["before"])["phase"] == "dual_write"
    assert json.loads(result["diff"]["after"])["phase"] == "redis_read"
    assert result["diff"]["before_header"].endswith("phase.json")


def test_skipping_a_phase_is_refused_with_reason_and_fix_unless_forced(tmp_path, capsys):
    state_dir = str(tmp_path)
    refused = run(capsys, state_dir=state_dir, phase="redis_read")
    assert refused["failed"] is True
    assert "skips 1 phase" in refused["reason"] and "dual_write first" in refused["fix"]
    assert not (tmp_path / "phase.json").exists()
    forced = run(capsys, state_dir=state_dir, phase="redis_read", force=True, changed_by="ops")
    assert forced["changed"] is True and forced["history"][-1]["forced"] is True


def test_rollback_from_redis_only_needs_an_export_finished_after_phase_4(tmp_path, capsys):
    state_dir = str(tmp_path)
    # An export from before phase 4 does not count: files went stale after it.
    state.write_json(str(tmp_path / "export.json"), {"finished_at": "2000-01-01T00:00:00+00:00"})
    walk(capsys, state_dir, "dual_write", "redis_read", "redis_only")
    refused = run(capsys, state_dir=state_dir, phase="redis_read")
    assert refused["failed"] is True and "older than Redis" in refused["reason"]
    assert "rollback.yml" in refused["fix"] and "sessionshift export" in refused["fix"]
    assert read_phase(state_dir).phase.label == "redis_only"
    state.write_json(str(tmp_path / "export.json"), {"finished_at": state.utc_now()})
    back = run(capsys, state_dir=state_dir, phase="redis_read")
    assert back["changed"] is True and back["redis_only_since"] is None


def test_leaving_phase_4_after_an_incomplete_export_goes_ahead_with_a_warning(tmp_path, capsys):
    state_dir = str(tmp_path)
    walk(capsys, state_dir, "dual_write", "redis_read", "redis_only")
    state.write_json(str(tmp_path / "export.json"), {"finished_at": state.utc_now(), "complete": False,
                                                     "unstable": 3, "undecodable": 1})
    back = run(capsys, state_dir=state_dir, phase="redis_read")
    assert back["changed"] is True and not back.get("failed")
    warnings = json.dumps(back["warnings"])  # ansible-core 2.19 sends structured warnings
    assert "3 session(s) still changing and 1 undecodable" in warnings and "catch-up export" in warnings
    state.write_json(str(tmp_path / "export.json"), {"finished_at": state.utc_now(), "complete": True})
    assert phasefile.export_caveat(state_dir) is None  # a complete export: nothing to say


def test_from_redis_back_to_redis_only_needs_no_export(tmp_path, capsys):
    state_dir = str(tmp_path)
    walk(capsys, state_dir, "dual_write", "redis_read", "redis_only", "redis")
    result = run(capsys, state_dir=state_dir, phase="redis_only")
    assert result["changed"] is True and result["redis_only_since"]


def test_history_keeps_the_last_20_moves(tmp_path, capsys):
    state_dir = str(tmp_path)
    for _ in range(12):
        walk(capsys, state_dir, "dual_write", "file")
    result = run(capsys, state=("query"), state_dir=state_dir)
    assert result["changed"] is False and len(result["history"]) == 20


def test_query_reads_without_writing(tmp_path, capsys):
    result = run(capsys, state="query", state_dir=str(tmp_path))
    assert (result["changed"], result["phase"], result["history"]) == (False, "file", [])
    assert not (tmp_path / "phase.json").exists()


def test_a_corrupt_phase_file_fails_clearly(tmp_path, capsys):
    (tmp_path / "phase.json").write_text("{not json")
    result = run(capsys, state_dir=str(tmp_path), phase="dual_write")
    assert result["failed"] is True and "not valid JSON" in result["msg"]


def test_the_first_move_diffs_from_no_file(tmp_path, capsys):
    result = run(capsys, diff=True, state_dir=str(tmp_path), phase="dual_write", changed_by="ops")
    assert result["diff"]["before"] == "" and '"phase": "dual_write"' in result["diff"]["after"]
