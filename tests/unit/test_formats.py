"""sessionshift.formats: round trips, header styles, hashes, serializers, hostile input."""

from __future__ import annotations

import datetime
import decimal
import hashlib
import json
import os
import pickle
import struct
import uuid

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sessionshift import atomicfile, exact, formats, safepickle
from sessionshift.formats import SessionFileError, SkippedEntry

# Values a Flask session realistically holds (what both serializers can carry).
scalars = (st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1)
           | st.floats(allow_nan=False) | st.text(max_size=30) | st.binary(max_size=30)
           | st.datetimes(timezones=st.just(datetime.UTC)))
values = st.recursive(scalars, lambda children: st.lists(children, max_size=4)
                      | st.tuples(children, children)
                      | st.dictionaries(st.text(max_size=10), children, max_size=4), max_leaves=12)
sessions = st.dictionaries(st.text(min_size=1, max_size=20), values, max_size=8)


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(data=sessions, sid=st.text(min_size=1, max_size=64),
       expiry=st.integers(0, 2**32 - 1),
       header_style=st.sampled_from(formats.HEADER_STYLES),
       hash_name=st.sampled_from(formats.HASH_NAMES),
       serializer=st.sampled_from(formats.SERIALIZERS))
def test_file_to_redis_to_file_round_trip(tmp_path_factory, data, sid, expiry, header_style,
                                          hash_name, serializer):
    directory = str(tmp_path_factory.mktemp("rt"))
    name = formats.session_file_name(sid, hash_name=hash_name)
    formats.write_session_file(directory, name, data, expiry, header_style=header_style)

    first = formats.read_session_file(os.path.join(directory, name))
    assert (first.expiry, first.header_style, first.hash_name) == (expiry, header_style, hash_name)
    redis_value = formats.encode_value(first.data, serializer)
    from_redis = formats.decode_value(redis_value, serializer)
    kept = exact.compare(first.data, from_redis).exact
    # Type-exact: msgpack is "the same for the app" only where it changed no type.
    assert formats.same_for_app(first.data, redis_value, serializer) == kept
    assert kept or serializer == "msgpack"  # pickle, the default, is always exact

    # export writes the Redis value back as a file; the app must see the same session
    back = tmp_path_factory.mktemp("back")
    formats.write_session_file(str(back), name, from_redis, expiry, header_style=header_style)
    second = formats.read_session_file(os.path.join(back, name))
    assert exact.compare(formats.app_view(data, serializer), second.data).exact
    assert second.expiry == expiry


def test_file_names_match_cachelib_for_both_hashes():
    from cachelib.file import FileSystemCache

    for hash_name in formats.HASH_NAMES:
        cache = FileSystemCache("/nonexistent", hash_method=getattr(hashlib, hash_name))
        expected = os.path.basename(cache._get_filename("session:abc"))
        assert formats.session_file_name("abc", "session:", hash_name) == expected
        assert formats.detect_hash(expected) == hash_name


def test_msgpack_app_view_is_what_the_app_reads():
    data = {"t": (1, 2), "s": {3}, "d": datetime.datetime(2026, 1, 1), "u": uuid.UUID(int=5)}
    view = formats.app_view(data, "msgpack")
    assert view == {"t": [1, 2], "s": [3], "d": "2026-01-01T00:00:00",
                    "u": "00000000-0000-0000-0000-000000000005"}
    assert formats.app_view(data, "pickle") == data


def test_old_cachelib_pickled_int_header(tmp_path):
    """werkzeug / cachelib <= 0.6 wrote pickle.dump(expiry, f, 1) then the pickled dict."""
    path = tmp_path / formats.session_file_name("sid1", hash_name="md5")
    with open(path, "wb") as handle:
        pickle.dump(1_900_000_000, handle, 1)
        pickle.dump({"user": "alice"}, handle, pickle.HIGHEST_PROTOCOL)
    session = formats.read_session_file(str(path))
    assert session.expiry == 1_900_000_000 and session.header_style == "pickle"
    assert session.data == {"user": "alice"}


def test_struct_header_whose_first_byte_looks_like_a_pickle(tmp_path):
    # expiry % 256 == 0x80: the struct header starts with the pickle PROTO opcode
    expiry = 1_900_000_000 - (1_900_000_000 % 256) + 0x80
    path = tmp_path / formats.session_file_name("sid2")
    path.write_bytes(struct.pack("I", expiry) + pickle.dumps({"a": 1}))
    session = formats.read_session_file(str(path))
    assert (session.expiry, session.data, session.header_style) == (expiry, {"a": 1}, "struct")


def test_seed_json_files(tmp_path):
    plain = tmp_path / "sess_abc123"
    plain.write_text(json.dumps({"user": "bob", "lang": "ja"}))
    wrapped = tmp_path / "sess_def456"
    wrapped.write_text(json.dumps({"data": {"user": "carol"}, "expires": 1_900_000_000}))
    first = formats.read_session_file(str(plain), default_lifetime=3600)
    assert first.sid == "abc123" and first.data == {"user": "bob", "lang": "ja"}
    assert first.file_name == formats.session_file_name("abc123")
    assert first.expiry == int(first.mtime) + 3600
    second = formats.read_session_file(str(wrapped))
    assert (second.sid, second.data, second.expiry) == ("def456", {"user": "carol"}, 1_900_000_000)


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _scan(directory):
    return list(formats.scan_directory(str(directory)))


def test_hostile_and_broken_files_are_reported_and_never_executed(tmp_path):
    sessions_dir = tmp_path / "sessions"
    sessions_dir.mkdir()
    marker = tmp_path / "pwned"
    good = formats.session_file_name("good")
    formats.write_session_file(str(sessions_dir), good, {"ok": True}, 0)

    cases = {
        "empty": b"",
        "truncated": struct.pack("I", 0) + pickle.dumps({"x": "y" * 100})[:20],
        "short": b"\x01\x02",
        "wrong-header": b"GARBAGE!" * 4,
        "evil": struct.pack("I", 0) + pickle.dumps(_Evil(marker)),
        "evil-old-header": pickle.dumps(0, 1) + pickle.dumps(_Evil(marker)),
        "not-a-dict": struct.pack("I", 0) + pickle.dumps([1, 2, 3]),
    }
    names = {}
    for index, (label, payload) in enumerate(cases.items()):
        name = formats.session_file_name(f"bad{index}")
        names[name] = label
        (sessions_dir / name).write_bytes(payload)
    (sessions_dir / "README.txt").write_text("not a session")
    cachelib_count = hashlib.sha256(b"__wz_cache_count").hexdigest()
    (sessions_dir / cachelib_count).write_bytes(struct.pack("I", 0) + pickle.dumps(3))
    (sessions_dir / "tmpabc.__wz_cache").write_bytes(b"half written")

    results = _scan(sessions_dir)

    assert not marker.exists(), "a hostile pickle was executed"
    ok = [r for r in results if isinstance(r, formats.FileSession)]
    errors = {os.path.basename(r.path): r for r in results if isinstance(r, SessionFileError)}
    skipped = {os.path.basename(r.path): r.kind for r in results if isinstance(r, SkippedEntry)}
    assert [s.file_name for s in ok] == [good]
    assert set(errors) == set(names)
    assert skipped == {"README.txt": "foreign", cachelib_count: "cachelib",
                       "tmpabc.__wz_cache": "cachelib"}
    # each error names its file and its cause
    by_label = {names[name]: err for name, err in errors.items()}
    assert "empty file" in str(by_label["empty"])
    assert "truncated" in str(by_label["short"])
    assert "posix.system" in str(by_label["evil"]) or "os.system" in str(by_label["evil"])
    assert "hostile" in str(by_label["evil-old-header"])
    assert "not a session dict" in str(by_label["not-a-dict"])
    for name, err in errors.items():
        assert name in str(err)
    # nothing was deleted
    assert len(os.listdir(sessions_dir)) == len(cases) + 4


def test_restricted_unpickler_admits_value_types_only():
    allowed = {"when": datetime.datetime.now(datetime.UTC), "d": datetime.date.today(),
               "t": datetime.time(1, 2), "u": uuid.uuid4(), "n": decimal.Decimal("1.25"),
               "s": {1, 2}, "f": frozenset({3}), "b": b"x", "c": (1, [2, {"x": None}])}
    for protocol in range(0, pickle.HIGHEST_PROTOCOL + 1):
        assert safepickle.loads(pickle.dumps(allowed, protocol)) == allowed
    with pytest.raises(safepickle.UnsafePickleError) as info:
        safepickle.loads(pickle.dumps(_Evil("/nonexistent")))
    assert info.value.global_name in ("posix.system", "os.system")
    with pytest.raises(safepickle.UnsafePickleError):
        safepickle.loads(pickle.dumps(OSError("x")))


def test_decode_value_errors_are_clear():
    with pytest.raises(formats.SessionValueError, match="cannot decode msgpack"):
        formats.decode_value(b"\xc1", "msgpack")
    with pytest.raises(formats.SessionValueError, match="hostile"):
        formats.decode_value(pickle.dumps(_Evil("/nonexistent")), "pickle")
    with pytest.raises(formats.SessionValueError, match="not a session dict"):
        formats.decode_value(msgspec.msgpack.encode([1]), "msgpack")
    with pytest.raises(formats.SessionValueError, match="cannot encode"):
        formats.encode_value({"big": 2**70}, "msgpack")


@pytest.mark.parametrize("unnamed", [True, False], ids=["O_TMPFILE", "named temporary"])
def test_write_session_file_creates_and_replaces_atomically(tmp_path, monkeypatch, unnamed):
    monkeypatch.setattr(atomicfile, "_PROC_FD", unnamed and atomicfile._PROC_FD)
    name = formats.session_file_name("m")
    path = formats.write_session_file(str(tmp_path), name, {"a": 1}, 5, mode=0o640, mtime=1_000_000)
    assert oct(os.stat(path).st_mode & 0o777) == "0o640" and os.stat(path).st_mtime == 1_000_000
    before = os.stat(path).st_ino
    formats.write_session_file(str(tmp_path), name, {"a": 2}, 7)  # replaces: a new inode, renamed in
    assert os.stat(path).st_ino != before
    assert formats.read_session_file(path).data == {"a": 2} and formats.read_session_file(path).expiry == 7
    assert os.listdir(tmp_path) == [name]  # no temporary left behind


def test_write_session_file_leaves_nothing_when_the_write_fails(tmp_path, monkeypatch):
    name = formats.session_file_name("full")
    formats.write_session_file(str(tmp_path), name, {"old": True}, 0)

    def disk_full(fd, data):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(formats.os, "write", disk_full)
    for proc_fd in (atomicfile._PROC_FD, False):
        monkeypatch.setattr(atomicfile, "_PROC_FD", proc_fd)
        with pytest.raises(OSError, match="No space"):
            formats.write_session_file(str(tmp_path), name, {"new": True}, 0)
    monkeypatch.undo()
    assert os.listdir(tmp_path) == [name]
    assert formats.read_session_file(str(tmp_path / name)).data == {"old": True}


def test_same_for_app_compares_values_and_types_not_bytes():
    data = {"a": 1, "b": (2, 3)}
    assert formats.same_for_app(data, formats.encode_value(data))
    reordered = formats.encode_value({"b": (2, 3), "a": 1})  # other bytes, same session for the app
    assert reordered != formats.encode_value(data) and formats.same_for_app(data, reordered)
    assert not formats.same_for_app(data, formats.encode_value({"a": 2, "b": (2, 3)}))
    # A tuple read back as a list is another session for the app: msgpack does that.
    assert not formats.same_for_app(data, formats.encode_value({"a": 1, "b": [2, 3]}))
    assert not formats.same_for_app(data, formats.encode_value(data, "msgpack"), "msgpack")
    assert formats.same_for_app({"a": 1, "b": [2]}, formats.encode_value({"b": [2], "a": 1}, "msgpack"),
                                "msgpack")


@pytest.mark.parametrize("expiry", [911284043, 1367930701])  # 4b 17 51 36 / 4d f7 88 51 little-endian
def test_a_struct_header_that_reads_as_a_refused_pickle_falls_back_to_struct(tmp_path, expiry):
    # Both expiries' bytes start like a pickled int followed by a persistent-id opcode: the
    # pickled-int reading is refused, which says the header is not a pickle, not that the file
    # is hostile. Found by hypothesis (data {}, sid "0").
    name = formats.session_file_name("0")
    formats.write_session_file(str(tmp_path), name, {"k": (1, 2)}, expiry, header_style="struct")
    found = formats.read_session_file(str(tmp_path / name))
    assert (found.expiry, found.header_style, found.data) == (expiry, "struct", {"k": (1, 2)})


# Expiries whose struct bytes start with each pickled-int opcode (K, J, M, L, I, PROTO) and a few plain ones.
_TRICKY_EXPIRIES = st.sampled_from([0, 0x4B, 0x4D, 0x4A4A4A4A, 0x2E00004D, 0x4C, 0x49, 0x80, 911284043,
                                    1367930701, 1_800_000_000]) | st.integers(0, 2**32 - 1)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(data=sessions, expiry=_TRICKY_EXPIRIES, header_style=st.sampled_from(formats.HEADER_STYLES),
       protocol=st.integers(0, pickle.HIGHEST_PROTOCOL), cut=st.integers(0, 60), flip=st.integers(0, 300))
def test_the_structural_split_never_contradicts_the_decode(data, expiry, header_style, protocol, cut, flip):
    """What migrate copies unread: the split gives the decode's header and payload or leaves it to
    the decode, and refuses only what the decode refuses, whole, truncated or with a changed byte."""
    whole = formats.encode_cachelib(data, expiry, header_style, protocol)
    damaged = bytearray(whole)
    damaged[flip % len(damaged)] ^= 0x5A
    for raw in (whole, whole[:len(whole) - cut], bytes(damaged)):
        try:
            split = formats.split_cachelib_file(raw)
        except SessionFileError:
            with pytest.raises(SessionFileError):
                formats.parse_cachelib_file(raw)
            continue
        if split is None:
            continue
        try:
            parsed = formats.parse_cachelib_file(raw)
        except SessionFileError:
            continue  # a payload only a decode refuses: copied, refused where it is read
        assert split == (parsed[0], parsed[3])
    if protocol >= 2 and whole[0:1] not in (b"K", b"J", b"M", b"L", b"I", b"\x80"):
        assert formats.split_cachelib_file(whole) == (expiry, 4)  # the common case takes no decode
