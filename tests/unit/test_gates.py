"""Pre-flight gates and the session_gate module."""

from __future__ import annotations

import datetime
import json

import pytest
from ansible.module_utils.testing import patch_module_args

from sessionshift import gates, state
from tests.conftest import load_module

UTC = datetime.UTC
TOKYO_03 = datetime.datetime(2026, 11, 28, 18, 0, tzinfo=UTC)  # 03:00 in Tokyo
TOKYO_12 = datetime.datetime(2026, 11, 28, 3, 0, tzinfo=UTC)  # 12:00 in Tokyo


def test_maintenance_window_in_tokyo():
    assert gates.maintenance_window(TOKYO_03).passed
    closed = gates.maintenance_window(TOKYO_12)
    assert not closed.passed and "outside the maintenance window 02:00-06:00" in closed.reasons[0]
    assert "rollout_ignore_maintenance_window" in closed.reasons[0]
    assert gates.maintenance_window(TOKYO_12, override=True).passed


def test_window_that_wraps_midnight():
    late = datetime.datetime(2026, 11, 28, 14, 30, tzinfo=UTC)  # 23:30 Tokyo
    assert gates.maintenance_window(late, "23:00", "01:00").passed
    assert not gates.maintenance_window(TOKYO_03, "23:00", "01:00").passed


def test_bad_window_settings_are_clear():
    with pytest.raises(ValueError, match="not HH:MM"):
        gates.maintenance_window(TOKYO_03, start="2am")
    with pytest.raises(ValueError, match="unknown time zone"):
        gates.maintenance_window(TOKYO_03, timezone="Mars/Olympus")


def test_validation_gate():
    done = {"complete": True, "finished_at": "2026-11-28T01:00:00+00:00"}
    good = {"consistency_percent": 100.0, "finished_at": "2026-11-28T02:00:00+00:00", "comparable": 10,
            "counts": {"consistent": 10}}
    assert gates.validation_passed(done, good).passed
    low = gates.validation_passed(done, dict(good, consistency_percent=99.5))
    assert not low.passed and "below the threshold" in low.reasons[0]
    assert gates.validation_passed(done, dict(good, consistency_percent=99.5), threshold=99).passed
    stale = gates.validation_passed(dict(done, finished_at="2026-11-28T03:00:00+00:00"), good)
    assert "older than the last backfill" in stale.reasons[0]
    missing = gates.validation_passed(None, None)
    assert len(missing.reasons) == 2


def test_validation_gate_refuses_without_evidence():
    done = {"complete": True, "finished_at": "2026-11-28T01:00:00+00:00", "generation": 2}
    good = {"consistency_percent": 100.0, "finished_at": "2026-11-28T02:00:00+00:00", "comparable": 99,
            "counts": {"consistent": 99, "corrupt": 1}, "generation": 2}
    assert gates.validation_passed(done, good, generation=2).passed
    nothing = gates.validation_passed(done, dict(good, comparable=0, counts={}), generation=2)
    assert not nothing.passed and "compared 0 session(s)" in nothing.reasons[0]
    assert "min" in nothing.facts["evidence"] or ">=" in nothing.facts["evidence"]
    unreadable = gates.validation_passed(done, dict(good, comparable=5, counts={"corrupt": 95}),
                                         generation=2)
    assert not unreadable.passed and "5.00% of the live files" in unreadable.reasons[0]
    stale = gates.validation_passed(done, dict(good, counts={"stale": 1}), generation=2)
    assert not stale.passed and "older than their file" in stale.reasons[0]
    orphaned = gates.validation_passed(done, dict(good, counts={"orphaned": 3}), generation=2)
    assert not orphaned.passed and "no live file" in orphaned.reasons[0]
    other = gates.validation_passed(done, good, generation=3)
    assert not other.passed and any("generation 2" in reason for reason in other.reasons)
    split = gates.validation_passed(done, good, generation=2, fleet_generations=[2, 2, 1])
    assert not split.passed and "different Redis generations ([1, 2])" in split.reasons[0]


def test_fallback_gate_refuses_without_evidence():
    nothing = gates.fallback_quiet(0, 0, min_requests=0)  # a minimum of 0 still means 1
    assert not nothing.passed and "only 0 session request(s)" in nothing.reasons[0]
    few = gates.fallback_quiet(0, 99)
    assert not few.passed and "minimum of 100" in few.reasons[0]
    assert gates.fallback_quiet(0, 100).passed


def test_cutoff_gate_refuses_without_a_recorded_phase_4():
    result = gates.cutoff_passed(datetime.datetime(2026, 11, 1, tzinfo=UTC), None, 60)
    assert not result.passed and "no record of entering redis_only" in result.reasons[0]
    assert result.facts["evidence"]


def test_fallback_and_cutoff_gates():
    assert gates.fallback_quiet(0, 1000).passed
    assert not gates.fallback_quiet(5, 1000).passed
    since = datetime.datetime(2026, 11, 1, tzinfo=UTC)
    assert gates.cutoff_passed(since + datetime.timedelta(days=8), since, 7 * 86400).passed
    early = gates.cutoff_passed(since + datetime.timedelta(days=2), since, 7 * 86400)
    assert not early.passed and "has not passed" in early.reasons[0]
    assert not gates.cutoff_passed(since, None, 60).passed


def _run(params, capsys):
    module = load_module("session_gate")
    with patch_module_args(params), pytest.raises(SystemExit):
        module.main()
    return json.loads(capsys.readouterr().out)


def test_module_reads_the_host_state(tmp_path, capsys):
    state.write_json(state.state_path(str(tmp_path), state.MIGRATE_FILE),
                     {"complete": True, "finished_at": "2026-11-28T01:00:00+00:00"})
    state.write_json(state.state_path(str(tmp_path), state.VALIDATION_FILE),
                     {"consistency_percent": 98.0, "finished_at": "2026-11-28T02:00:00+00:00"})
    result = _run({"gate": "redis_read", "state_dir": str(tmp_path), "_ansible_check_mode": True}, capsys)
    assert result["changed"] is False and result["passed"] is False
    assert result["facts"]["consistency_percent"] == 98.0
    state.write_json(state.state_path(str(tmp_path), state.PHASE_FILE), {
        "phase": "redis_only", "redis_only_since": "2020-01-01T00:00:00+00:00",
        "history": [{"from": "redis_read", "to": "redis_only", "at": "2020-01-01T00:00:00+00:00"}]})
    result = _run({"gate": "redis", "state_dir": str(tmp_path), "session_lifetime": 3600}, capsys)
    assert result["passed"] is True


def test_module_fails_clearly_on_bad_window(capsys):
    result = _run({"gate": "maintenance_window", "window_timezone": "Nowhere/Land"}, capsys)
    assert result["failed"] and "unknown time zone" in result["msg"]


@pytest.mark.parametrize(("version", "passed"), [("6.0.16", False), ("5.0.6", False), ("6.2.14", True),
                                                 ("7.0.15", True), ("7.2.4", True)])
def test_the_dual_write_gate_refuses_a_redis_older_than_6_2(version, passed):
    result = gates.redis_ready(ping_ok=True, tls=True, authenticated=True, error=None, alarms_in_alarm=[],
                               server_version=version)
    assert result.passed is passed and result.facts["redis_version"] == version
    if not passed:
        assert result.reasons == [f"Redis {version} is too old: sessionshift needs Redis 6.2 or later "
                                  "(SET with EXAT); upgrade the engine (elasticache_engine_version) first"]
