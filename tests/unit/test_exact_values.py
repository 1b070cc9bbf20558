"""Exact values: every type the restricted unpickler admits survives file -> Redis -> file, type for type."""

from __future__ import annotations

import datetime
import decimal
import os
import pickle
import uuid

import pytest

from sessionshift import exact, formats, safepickle

# One of everything the restricted unpickler admits, nested the way real sessions nest them.
EVERYTHING = {
    "_flashes": [("message", "Saved"), ("error", "Try again")],  # Flask's flash(): a list of tuples
    "_user_id": "42", "_fresh": True, "csrf_token": "abc",  # Flask-Login, Flask-WTF
    "tuple": (1, "two", (3.0, None)), "set": {1, 2}, "frozenset": frozenset({"a"}),
    "uuid": uuid.UUID(int=12345), "naive": datetime.datetime(2026, 1, 2, 3, 4, 5),
    "aware": datetime.datetime(2026, 1, 2, tzinfo=datetime.timezone(datetime.timedelta(hours=9))),
    "date": datetime.date(2026, 1, 2), "time": datetime.time(3, 4), "delta": datetime.timedelta(days=1),
    "price": decimal.Decimal("19.99"), "bytes": b"\x00\xff", "bytearray": bytearray(b"ab"),
    "complex": complex(1, 2), "by_id": {1: "one", (2, 3): "pair", None: {"deep": [{"x": (1,)}]}},
    "big": 2**70, "float": 1.5, "int_like_float": 1.0,
}


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
@pytest.mark.parametrize("header_style", formats.HEADER_STYLES)
def test_file_payload_is_the_redis_value_and_comes_back_exactly(tmp_path, protocol, header_style):
    name = formats.session_file_name("sid")
    formats.write_session_file(str(tmp_path), name, EVERYTHING, 0, header_style=header_style,
                               protocol=protocol)
    path = os.path.join(tmp_path, name)
    fmt = formats.value_format("pickle", protocol)
    _name, _expiry, data, value = formats.read_entry_value("session", name, path, fmt)
    raw = open(path, "rb").read()
    assert raw.endswith(value) and formats.payload_protocol(value) == protocol  # the bytes, not a re-encoding
    back = fmt.loads(value)
    assert exact.compare(EVERYTHING, back).exact and exact.compare(EVERYTHING, data).exact
    assert fmt.same(EVERYTHING, value, value).exact
    # and the file it would be exported to is byte for byte the original
    assert formats.encode_cachelib(back, 0, header_style, protocol, fmt.file_payload(value, back)) == raw


def test_the_original_library_reads_the_files_we_write_in_its_header_style():
    """cachelib <= 0.6 read pickle.load(f) twice; cachelib >= 0.7 reads struct then pickle.load."""
    import io
    import struct

    old = formats.encode_cachelib(EVERYTHING, 7, "pickle", 4)
    stream = io.BytesIO(old)
    assert pickle.load(stream) == 7 and pickle.load(stream) == EVERYTHING
    new = formats.encode_cachelib(EVERYTHING, 7, "struct", 4)
    assert struct.unpack("I", new[:4]) == (7,) and pickle.loads(new[4:]) == EVERYTHING


def test_a_value_newer_than_the_source_protocol_is_pickled_again_in_the_source_protocol():
    fmt = formats.value_format("pickle", 4)
    newer = pickle.dumps(EVERYTHING, 5)
    assert fmt.file_payload(newer, EVERYTHING) is None  # so export pickles again, with 4
    content = formats.encode_cachelib(EVERYTHING, 0, "struct", 4, fmt.file_payload(newer, EVERYTHING))
    assert formats.payload_protocol(content[4:]) == 4
    older = pickle.dumps(EVERYTHING, 2)
    assert fmt.file_payload(older, EVERYTHING) == older


def test_payload_protocol_of_protocol_0_and_1_pickles():
    assert formats.payload_protocol(pickle.dumps({"a": 1}, 0)) == 0
    assert formats.payload_protocol(pickle.dumps({"a": b"x"}, 1)) == 1
    assert formats.payload_protocol(pickle.dumps({"a": 1}, 4)) == 4


def test_msgpack_changes_are_named_by_path_and_type():
    fmt = formats.value_format("msgpack")
    data = {key: value for key, value in EVERYTHING.items()
            if key not in ("complex", "big", "bytearray", "by_id")}
    comparison = fmt.same(data, b"", fmt.dumps(data))
    assert not comparison.exact
    changes = {(change.path, change.before, change.after) for change in comparison.type_changes}
    assert ("_flashes[0]", "tuple", "list") in changes and ("_flashes[1]", "tuple", "list") in changes
    assert ("uuid", "uuid.UUID", "str") in changes and ("set", "set", "list") in changes
    assert ("naive", "datetime.datetime", "str") in changes and ("price", "decimal.Decimal", "str") in changes
    assert ("tuple[2]", "tuple", "list") not in changes  # the outer tuple already became a list: named once
    assert ("aware", "datetime.datetime", "datetime.datetime") not in changes  # msgpack keeps aware datetimes


def test_compare_sees_what_equality_misses():
    assert not exact.compare({"n": 1}, {"n": 1.0}).exact  # 1 == 1.0
    assert not exact.compare({"n": 1}, {"n": True}).exact
    assert not exact.compare({"d": decimal.Decimal(1)}, {"d": 1}).exact
    keys = exact.compare({1: "a"}, {1.0: "a"})
    assert [c.as_dict() for c in keys.type_changes] == [{"path": "1 (key)", "from": "int", "to": "float"}]
    members = exact.compare({"s": {1, 2}}, {"s": {1.0, 2}})
    assert members.type_changes[0].path == "s (members)"
    naive = datetime.datetime(2026, 1, 1)
    assert exact.compare({"t": naive}, {"t": naive.replace(tzinfo=datetime.UTC)}).type_changes[0].kind == \
        "naive datetime -> aware datetime"
    assert exact.compare({"a": [1, 2]}, {"a": [1, 3]}).value_differs
    assert exact.compare(EVERYTHING, safepickle.loads(pickle.dumps(EVERYTHING))).exact


def test_pickle_values_are_read_only_through_the_restricted_unpickler():
    class Evil:
        def __reduce__(self):
            return (os.system, ("true",))

    with pytest.raises(formats.SessionValueError, match="hostile"):
        formats.value_format("pickle").loads(pickle.dumps({"x": Evil()}))
