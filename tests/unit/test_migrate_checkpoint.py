"""The backfill checkpoint: which earlier runs a new run may resume, and the run lock."""

from __future__ import annotations

import os

import pytest

from sessionshift import state
from sessionshift.keys import KeyLayout
from sessionshift.migrate import MigrateBusy, MigrateConfig, _Checkpoint

ENDPOINT = "rediss://127.0.0.1:6379"


def checkpoint(tmp_path, **changes) -> _Checkpoint:
    config = MigrateConfig(session_dir=str(tmp_path), state_dir=str(tmp_path / "state"), **changes)
    return _Checkpoint(config, ENDPOINT)


def test_an_interrupted_run_with_the_same_settings_is_resumed(tmp_path):
    first = checkpoint(tmp_path)
    first.save(status="running", complete=False, shares_done=[0, 1, 2])
    assert checkpoint(tmp_path).done_shares(restart=False) == {0, 1, 2}
    assert checkpoint(tmp_path).done_shares(restart=True) == set()


def test_a_finished_or_different_run_is_not_resumed(tmp_path):
    first = checkpoint(tmp_path)
    first.save(status="complete", complete=True, shares_done=list(range(16)))
    assert checkpoint(tmp_path).done_shares(restart=False) == set()
    first.save(status="failed", complete=False, shares_done=[4])
    assert checkpoint(tmp_path, layout=KeyLayout(prefix="other:")).done_shares(restart=False) == set()
    assert _Checkpoint(MigrateConfig(session_dir=str(tmp_path), state_dir=str(tmp_path / "state")),
                       "rediss://elsewhere:6379").done_shares(restart=False) == set()
    assert checkpoint(tmp_path).done_shares(restart=False) == {4}


def test_the_record_is_what_the_phase3_gate_reads(tmp_path):
    first = checkpoint(tmp_path)
    first.save(status="complete", complete=True, finished_at=state.utc_now(), shares_done=list(range(16)))
    record = state.read_json(os.path.join(tmp_path, "state", state.MIGRATE_FILE))
    assert record["complete"] is True and record["finished_at"] and record["fingerprint"]["redis"] == ENDPOINT


def test_two_runs_on_one_state_dir_are_refused(tmp_path):
    first = checkpoint(tmp_path)
    first.lock()
    try:
        with pytest.raises(MigrateBusy, match="another migrate run"):
            checkpoint(tmp_path).lock()
    finally:
        first.unlock()
    second = checkpoint(tmp_path)
    second.lock()  # free again
    second.unlock()
