"""Key layout and the phase model."""

from __future__ import annotations

import pytest

from sessionshift import formats
from sessionshift.keys import TOMBSTONE, KeyLayout, is_tombstone
from sessionshift.phases import SPECS, Phase, TransitionRefused, check_transition


def test_hashed_key_names_the_file():
    layout = KeyLayout()
    name = layout.file_name("some-sid")
    assert name == formats.session_file_name("some-sid")
    assert layout.session_key(name) == f"session:h:{{{name}}}"


def test_the_tombstone_is_no_session_value_of_any_format():
    """A logout's marker must never be taken for a session, nor a session for it."""
    assert is_tombstone(TOMBSTONE) and not is_tombstone(None) and not is_tombstone(b"")
    for serializer in ("pickle", "msgpack"):
        value = formats.value_format(serializer).dumps({"user": "x", "_flashes": []})
        assert not is_tombstone(value) and value[:1] != TOMBSTONE[:1]
    with pytest.raises(formats.SessionValueError):
        formats.value_format("pickle").loads(TOMBSTONE)


def test_parse_round_trips_every_kind():
    layout = KeyLayout(prefix="app:", hash_name="md5")
    name = layout.file_name("sid9")
    assert layout.parse(layout.session_key(name)).kind == "hashed"
    assert layout.parse(f"app:t:{{{name}}}".encode()) is None  # a legacy tombstone key: no session
    assert layout.legacy_tombstone_file(f"app:t:{{{name}}}") == name
    stock = layout.parse(layout.stock_key("sid9"))
    assert (stock.kind, stock.sid, stock.file_name) == ("stock", "sid9", name)
    assert layout.parse("other:thing") is None
    assert layout.parse("app:h:{nothex}") is None


def test_scan_pattern_escapes_glob_characters():
    assert KeyLayout(prefix="a*b:").session_pattern == "a\\*b:h:{*}"


def test_phase_parse_accepts_numbers_and_labels():
    assert Phase.parse(2) is Phase.DUAL_WRITE
    assert Phase.parse("redis_read") is Phase.REDIS_READ
    assert Phase.parse("4") is Phase.REDIS_ONLY
    with pytest.raises(ValueError, match="expected one of"):
        Phase.parse("sideways")


def test_every_phase_has_a_spec_and_adjacent_moves_pass():
    assert set(SPECS) == set(Phase)
    for phase in list(Phase)[:-1]:
        check_transition(phase, Phase(phase + 1))
    check_transition(Phase.REDIS_READ, Phase.DUAL_WRITE)


def test_skipping_is_refused_with_reason_and_fix():
    with pytest.raises(TransitionRefused) as info:
        check_transition("file", "redis_read")
    assert "skips 1 phase" in info.value.reason and "dual_write first" in info.value.fix
    assert check_transition("file", "redis_read", force=True).target is Phase.REDIS_READ


def test_leaving_phase_four_needs_the_export():
    with pytest.raises(TransitionRefused) as info:
        check_transition("redis_only", "redis_read")
    assert "export" in info.value.fix
    check_transition("redis_only", "redis_read", export_done=True)
    check_transition("redis", "file", force=True, export_done=True)
    with pytest.raises(TransitionRefused):
        check_transition("redis", "file", force=True)


def test_an_emergency_steps_back_one_phase_at_a_time_like_the_playbooks():
    """The emergency rollback steps redis_read -> dual_write -> file: a jump straight to file
    would let a file-phase worker and a redis_read worker serve side by side on one host."""
    for current in ("redis_read", "redis_only", "redis"):
        with pytest.raises(TransitionRefused) as info:
            check_transition(current, "file", emergency=True, export_done=True)
        assert "skips" in info.value.reason
    assert check_transition("dual_write", "file", emergency=True).target is Phase.FILE
    assert check_transition("redis_read", "dual_write", emergency=True).target is Phase.DUAL_WRITE


def test_rollback_plan_steps_the_fleet_back_one_phase_at_a_time():
    from sessionshift.phases import plan_rollback

    plan = plan_rollback(["redis_only", "redis_read"], "dual_write")
    assert plan.as_dict() == {"fleet": "redis_only", "target": "dual_write", "emergency": False,
                              "steps": ["redis_read", "dual_write"]}
    assert plan_rollback([5, 5], "previous").as_dict()["steps"] == ["redis_only"]
    assert plan_rollback(["file"], "previous").steps == ()  # nothing to do
    assert plan_rollback(["dual_write"], "redis").steps == ()  # already below the target
    emergency = plan_rollback(["redis"], "redis_read", emergency=True)
    assert emergency.target is Phase.FILE and emergency.emergency
    with pytest.raises(ValueError, match="expected one of"):
        plan_rollback(["redis"], "sideways")
    with pytest.raises(ValueError, match="app_servers"):
        plan_rollback([], "previous")
