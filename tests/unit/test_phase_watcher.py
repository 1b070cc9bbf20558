"""sessionshift.phasefile: the watcher the interface uses, and the export rule of rollbacks."""

from __future__ import annotations

import os

import pytest

from sessionshift import phasefile, state
from sessionshift.phases import Phase, TransitionRefused


def test_missing_file_means_phase_file_and_changes_are_picked_up(tmp_path):
    watcher = phasefile.PhaseWatcher(str(tmp_path), interval=0)
    assert watcher.current() is Phase.FILE
    phasefile.set_phase(str(tmp_path), "dual_write", by="t")
    assert watcher.current() is Phase.DUAL_WRITE
    os.unlink(phasefile.phase_path(str(tmp_path)))
    assert watcher.current() is Phase.FILE


def test_the_file_is_stat_ed_at_most_once_per_interval(tmp_path):
    watcher = phasefile.PhaseWatcher(str(tmp_path), interval=3600)
    phasefile.set_phase(str(tmp_path), "dual_write", by="t")
    assert watcher.current() is Phase.FILE  # not looked at again yet
    assert watcher.refresh() is Phase.DUAL_WRITE


def test_a_corrupt_file_keeps_the_last_phase_and_counts_one_error(tmp_path):
    errors = []
    phasefile.set_phase(str(tmp_path), "dual_write", by="t")
    watcher = phasefile.PhaseWatcher(str(tmp_path), interval=0, on_error=errors.append)
    with open(phasefile.phase_path(str(tmp_path)), "w") as handle:
        handle.write('{"phase": "sideways"}')
    assert watcher.current() is Phase.DUAL_WRITE
    assert watcher.current() is Phase.DUAL_WRITE
    assert len(errors) == 1 and "unknown phase 'sideways'" in errors[0]


def test_redis_only_since_is_set_on_entering_phase_4_and_kept_through_phase_5(tmp_path):
    directory = str(tmp_path)
    for target in ("dual_write", "redis_read", "redis_only"):
        phasefile.set_phase(directory, target, by="t")
    since = phasefile.read_phase(directory).redis_only_since
    assert since
    phasefile.set_phase(directory, "redis", by="t")
    phasefile.set_phase(directory, "redis_only", by="t")
    assert phasefile.read_phase(directory).redis_only_since == since


def test_an_export_before_phase_4_does_not_allow_the_rollback(tmp_path):
    directory = str(tmp_path)
    phasefile.set_phase(directory, "redis_read", by="t", force=True)
    phasefile.plan_phase(directory, "redis_only", by="t")  # planning writes nothing
    assert phasefile.read_phase(directory).phase is Phase.REDIS_READ
    state.write_json(os.path.join(directory, "export.json"), {"finished_at": "2001-01-01T00:00:00+00:00"})
    phasefile.set_phase(directory, "redis_only", by="t")
    with pytest.raises(TransitionRefused, match="older than Redis"):
        phasefile.set_phase(directory, "redis_read", by="t")
    state.write_json(os.path.join(directory, "export.json"), {"finished_at": state.utc_now()})
    assert phasefile.set_phase(directory, "redis_read", by="t").changed


def test_without_redis_only_since_the_history_tells_when_phase_4_began(tmp_path):
    directory = str(tmp_path)
    state.write_json(phasefile.phase_path(directory), {"phase": "redis_only", "history": [
        {"from": "redis_read", "to": "redis_only", "at": "2030-01-01T00:00:00+00:00", "by": "hand"}]})
    state.write_json(os.path.join(directory, "export.json"), {"finished_at": "2029-12-31T23:59:59+00:00"})
    with pytest.raises(TransitionRefused):
        phasefile.set_phase(directory, "redis_read", by="t")
    state.write_json(os.path.join(directory, "export.json"), {"finished_at": "2030-01-01T00:00:01+00:00"})
    assert phasefile.set_phase(directory, "redis_read", by="t").after.phase is Phase.REDIS_READ
