"""Generations of Redis copies: key names, the phase file's rules, the export check."""

from __future__ import annotations

import pytest

from sessionshift import phasefile, state
from sessionshift.keys import KeyLayout
from sessionshift.phases import TransitionRefused

NAME = "a" * 64


def test_a_generation_lives_in_the_key_name_and_keeps_the_hash_tag():
    zero, three = KeyLayout(), KeyLayout(generation=3)
    assert zero.session_key(NAME) == f"session:h:{{{NAME}}}"  # generation 0: the names of before
    assert three.session_key(NAME) == f"session:g3:h:{{{NAME}}}"
    key = three.session_key(NAME)
    assert key[key.index("{") + 1:key.index("}")] == NAME  # one cluster slot per session
    assert three.parse(three.session_key(NAME)).kind == "hashed"
    assert three.parse(zero.session_key(NAME)) is None  # another generation's copy is not ours
    assert zero.parse(three.session_key(NAME)) is None
    assert zero.generation_of(three.session_key(NAME)) == 3
    assert zero.generation_of(f"session:t:{{{NAME}}}") == 0  # a legacy tombstone key: purged too
    assert zero.generation_of(f"session:g3:t:{{{NAME}}}") == 3
    assert zero.generation_of("session:abc") is None
    assert three.session_pattern == "session:g3:h:{*}"
    with pytest.raises(ValueError):
        KeyLayout(generation=-1)


def test_a_return_to_file_retires_the_generation_and_the_next_move_out_takes_a_new_one(tmp_path):
    directory = str(tmp_path)
    first = phasefile.set_phase(directory, "dual_write", by="t").after
    assert (first.generation, first.retired_generation) == (0, None)
    back = phasefile.set_phase(directory, "file", by="t").after
    assert back.retired_generation == 0 and back.generation == 0  # nothing but the phase file
    again = phasefile.set_phase(directory, "dual_write", by="t").after
    assert again.generation == 1 and again.history[-1]["generation"] == 1
    assert phasefile.read_phase(directory).generation == 1
    assert phasefile.host_layout(directory, "session:", "sha256").generation == 1


def test_a_retired_generation_is_refused_and_a_newer_one_taken(tmp_path):
    directory = str(tmp_path)
    phasefile.set_phase(directory, "dual_write", by="t", generation=4)
    phasefile.set_phase(directory, "file", by="t")
    with pytest.raises(TransitionRefused) as info:
        phasefile.set_phase(directory, "dual_write", by="t", generation=4)
    assert "retired generation 4" in info.value.reason and "5 or higher" in info.value.fix
    assert phasefile.set_phase(directory, "dual_write", by="t", generation=7).after.generation == 7


def test_the_generation_changes_in_dual_write_but_never_from_redis_read_on(tmp_path):
    directory = str(tmp_path)
    phasefile.set_phase(directory, "dual_write", by="t")
    change = phasefile.set_phase(directory, "dual_write", by="t", generation=2)
    assert change.changed and change.after.generation == 2  # the fleet's generation, in place
    assert not phasefile.set_phase(directory, "dual_write", by="t", generation=2).changed
    phasefile.set_phase(directory, "redis_read", by="t")
    with pytest.raises(TransitionRefused) as info:
        phasefile.set_phase(directory, "redis_read", by="t", generation=3)
    assert "lose every session" in info.value.reason
    assert not phasefile.set_phase(directory, "redis_read", by="t", generation=2).changed


def test_leaving_phase_4_needs_an_export_of_this_prefix_directory_and_generation(tmp_path):
    directory, sessions = str(tmp_path / "state"), str(tmp_path / "sessions")
    for phase in ("dual_write", "redis_read", "redis_only"):
        phasefile.set_phase(directory, phase, by="t")
    export = {"finished_at": "2999-01-01T00:00:00+00:00", "generation": 0,
              "key_prefix": "other:", "session_dir": sessions}
    state.write_json(state.state_path(directory, state.EXPORT_FILE), export)
    with pytest.raises(TransitionRefused) as info:
        phasefile.set_phase(directory, "redis_read", by="t", session_dir=sessions, key_prefix="session:")
    assert "key prefix 'other:'" in info.value.reason
    state.write_json(state.state_path(directory, state.EXPORT_FILE), dict(export, key_prefix="session:",
                                                                          session_dir="/elsewhere"))
    with pytest.raises(TransitionRefused) as info:
        phasefile.set_phase(directory, "redis_read", by="t", session_dir=sessions, key_prefix="session:")
    assert "wrote /elsewhere" in info.value.reason
    state.write_json(state.state_path(directory, state.EXPORT_FILE), dict(export, key_prefix="session:",
                                                                          generation=1))
    with pytest.raises(TransitionRefused) as info:
        phasefile.set_phase(directory, "redis_read", by="t")
    assert "generation 1" in info.value.reason
    state.write_json(state.state_path(directory, state.EXPORT_FILE), dict(export, key_prefix="session:"))
    phasefile.set_phase(directory, "redis_read", by="t", session_dir=sessions, key_prefix="session:")


def test_a_corrupt_generation_is_reported(tmp_path):
    state.write_json(state.state_path(str(tmp_path), state.PHASE_FILE),
                     {"phase": "dual_write", "generation": "two"})
    with pytest.raises(ValueError, match="generation"):
        phasefile.read_phase(str(tmp_path))
