"""Planted session files and values: each is that one input's problem, reported, never a crash."""

from __future__ import annotations

import datetime
import decimal
import json
import os
import pickle
import threading
import tracemalloc
import uuid

import msgspec
import pytest

from sessionshift import formats, safepickle
from sessionshift.formats import SessionFileError, SessionValueError, read_live_file
from tests.support import hostile

NAME = formats.session_file_name("planted")


@pytest.mark.parametrize(("builder", "reason"), [
    ("half_built_uuid", "UUID without its value"),
    ("deep_list", "max_depth"),
    ("shared_expansion", "max_encoded_bytes"),
    ("big_bytearray", "bytearray"),
    ("bare_object", "bare 'object'"),
    ("cyclic_list", "contains itself"),
])
def test_each_planted_file_is_refused_with_its_reason(builder, reason):
    raw = hostile.HOSTILE[builder]()
    with pytest.raises(SessionFileError) as info:
        formats.parse_cachelib_bytes(raw, f"/sessions/{NAME}")
    assert reason in info.value.reason
    assert NAME in str(info.value)


def test_a_scan_over_planted_files_reports_each_and_reads_the_rest(tmp_path):
    """What migrate / validate / analyze do per file: read, then encode for Redis."""
    good = formats.session_file_name("good")
    (tmp_path / good).write_bytes(formats.encode_cachelib({"user": "ann"}, 0))
    planted = {}
    for index, builder in enumerate(hostile.HOSTILE.values()):
        name = formats.session_file_name(f"planted-{index}")
        (tmp_path / name).write_bytes(builder())
        planted[name] = builder.__name__
    encoded, refused = {}, {}
    for kind, path in formats.iter_session_paths(str(tmp_path)):
        name = os.path.basename(path)
        try:
            _file_name, _expiry, data = formats.read_entry(kind, name, path)
            encoded[name] = formats.encode_value(data, "msgpack")
        except (SessionFileError, SessionValueError) as exc:
            refused[name] = str(exc)
    assert set(encoded) == {good}
    assert set(refused) == set(planted)


def test_value_types_round_trip_through_every_protocol():
    allowed = {"when": datetime.datetime.now(datetime.UTC), "u": uuid.uuid4(),
               "n": decimal.Decimal("1.25"), "s": {1, 2}, "f": frozenset({3}), "b": b"x",
               "ba": bytearray(b"\x00\xffyz"), "c": complex(1, 2), "sl": slice(1, None, 2),
               "shared": [["x"]] * 3, "td": datetime.timedelta(days=2),
               "tz": datetime.timezone(datetime.timedelta(hours=9))}
    for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
        assert safepickle.loads(pickle.dumps(allowed, protocol)) == allowed


def test_the_walk_measures_shared_references_without_expanding_them():
    budget = safepickle.Budget(max_encoded_bytes=1_000_000)
    leaf = ["A" * 100]
    value = leaf
    for _ in range(3):
        value = [value] * 10  # 1,000 leaves of ~105 bytes: about 110 kB
    assert 100_000 < safepickle.check_value(value, budget) < 120_000
    for _ in range(20):
        value = [value] * 10  # 10**23 leaves: measured in as many steps as there are lists
    with pytest.raises(safepickle.BudgetExceeded, match="max_encoded_bytes"):
        safepickle.check_value(value, budget)


def test_a_large_pickle_is_counted_while_it_decodes_not_after():
    """Two million empty lists (2 MB of pickle, ~128 MB decoded) stop at the object budget."""
    raw = hostile.many_empty_lists(2_000_000)
    budget = safepickle.Budget(max_objects=100_000)
    tracemalloc.start()
    try:
        with pytest.raises(safepickle.BudgetExceeded, match="max_objects"):
            safepickle.loads(raw[4:], budget)
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 40 * 1024 * 1024


def test_budget_options_come_from_the_environment_and_are_checked():
    budget = safepickle.Budget.from_env({"SESSIONSHIFT_MAX_DEPTH": "7", "SESSIONSHIFT_MAX_OBJECTS": "99"})
    assert (budget.max_depth, budget.max_objects) == (7, 99)
    with pytest.raises(ValueError, match="SESSIONSHIFT_MAX_DEPTH='deep'"):
        safepickle.Budget.from_env({"SESSIONSHIFT_MAX_DEPTH": "deep"})
    with pytest.raises(ValueError, match="max_depth must be a positive integer"):
        safepickle.Budget(max_depth=0)
    with pytest.raises(safepickle.BudgetExceeded, match="max_depth"):
        safepickle.check_value({"a": [[[[1]]]]}, safepickle.Budget(max_depth=3))


def test_redis_values_and_seed_files_are_held_to_the_same_budget(tmp_path):
    deep = b"\x81\xa1x" + b"\x91" * 2000 + b"\x01"  # {"x": [[[...[1]...]]]}, 2,000 deep
    with pytest.raises(SessionValueError, match=r"max_depth|RecursionError"):
        formats.decode_value(deep, "msgpack")
    with pytest.raises(SessionValueError, match="max_depth"):
        formats.decode_value(b"\x81\xa1x" + b"\x91" * 150 + b"\x01", "msgpack")
    assert formats.decode_value(msgspec.msgpack.encode({"x": [[1]]}), "msgpack") == {"x": [[1]]}
    with pytest.raises(SessionValueError, match=r"max_encoded_bytes|max_depth"):
        formats.decode_value(hostile.shared_expansion()[4:], "pickle")
    seed = tmp_path / "sess_abc"
    seed.write_text("{\"x\": " + "[" * 5000 + "]" * 5000 + "}")
    with pytest.raises(SessionFileError):
        formats.read_session_file(str(seed))
    seed.write_text(json.dumps({"user": "ann"}))
    assert formats.read_session_file(str(seed)).data == {"user": "ann"}


def test_any_encoding_failure_is_the_sessions_problem():
    shell = object.__new__(uuid.UUID)  # what the planted pickle used to build
    for serializer in formats.SERIALIZERS:
        with pytest.raises(SessionValueError, match=r"AttributeError|TypeError"):
            formats.encode_value({"x": shell}, serializer)


def test_the_apps_read_path_never_blocks_on_a_fifo(tmp_path):
    path = tmp_path / NAME
    os.mkfifo(path)
    outcome = []

    def read() -> None:
        try:
            outcome.append(read_live_file(str(path)))
        except SessionFileError as exc:
            outcome.append(exc)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(10)
    if reader.is_alive():  # hung in open(): release it before failing
        fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
        os.close(fd)
        reader.join(10)
        pytest.fail("reading a FIFO named like a session blocked")
    assert isinstance(outcome[0], SessionFileError)
    assert "FIFO" in outcome[0].reason


def test_the_apps_read_path_never_follows_a_symlink(tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.write_bytes(formats.encode_cachelib({"user": "admin"}, 0))
    sessions = tmp_path / "sessions"
    sessions.mkdir()
    (sessions / NAME).symlink_to(elsewhere)
    with pytest.raises(SessionFileError, match="symlink"):
        read_live_file(str(sessions / NAME))
    with pytest.raises(SessionFileError, match="symlink"):
        formats.read_session_file(str(sessions / NAME))


def test_a_huge_memo_index_does_not_allocate_the_memo():
    """LONG_BINPUT / PUT naming index 171 million: the C unpickler would zero-fill 2.7 GB for it."""
    for payload in (b"\x80\x02}r\x00\x00 \n.", b"(dp171000000\n."):
        tracemalloc.start()
        try:
            value = safepickle.loads(payload)
            _current, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert value == {}
        assert peak < 50 * 1024 * 1024


def test_a_byte_that_is_no_opcode_ends_the_memo_scan_where_the_unpicklers_stop():
    """A struct header misread as a pickled int runs into its payload: the scan stops at the first
    byte no unpickler accepts (both refuse it there), so what follows is neither scanned nor run."""
    data = b"K\x01\x00" + b"(dp171000000\n."  # after the invalid byte: PUT naming index 171 million
    assert safepickle._memo_indices_small(data)
    assert not safepickle._memo_indices_small(b"K\x01" + b"(dp171000000\n.")
    tracemalloc.start()
    try:
        with pytest.raises(pickle.UnpicklingError, match="invalid load key"):
            safepickle.loads(data)
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 50 * 1024 * 1024


def test_a_large_session_with_value_types_decodes_on_the_counting_path():
    session = {"when": datetime.datetime(2026, 1, 2, 3, 4, 5), "u": uuid.UUID(int=7),
               "n": decimal.Decimal("1.5"), "pad": "x" * 100_000, "e": b""}
    for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
        raw = pickle.dumps(session, protocol)
        assert len(raw) > 64 * 1024
        assert safepickle.loads(raw) == session


def test_an_opcode_straddling_a_frame_end_does_not_allocate():
    """Found by the fuzzer: 293 bytes that made the C unpickler allocate 2 GB, then fail."""
    raw = open(os.path.join(os.path.dirname(__file__), "..", "fuzz", "frame-straddle-293.bin"), "rb").read()
    tracemalloc.start()
    try:
        with pytest.raises(SessionFileError):
            formats.parse_cachelib_bytes(raw, f"/sessions/{NAME}")
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 50 * 1024 * 1024
