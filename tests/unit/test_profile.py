"""The source profile: detected from files the real libraries wrote, recorded, and enforced."""

from __future__ import annotations

import datetime
import decimal
import hashlib
import json
import os
import pickle
import uuid
import warnings

import pytest
from cachelib.file import FileSystemCache
from flask import Flask, flash, session

from sessionshift import cli, profile
from sessionshift.profile import ProfileConflict, ProfileMixed

# What real apps hold; msgpack changes several of these types.
RICH = {"user_id": 42, "_flashes": [("message", "Welcome back")], "point": (1, 2), "tags": {"a", "b"},
        "frozen": frozenset({3}), "uid": uuid.UUID(int=7), "when": datetime.datetime(2026, 1, 2, 3, 4),
        "aware": datetime.datetime(2026, 1, 2, tzinfo=datetime.UTC), "price": decimal.Decimal("9.99"),
        "raw": b"\x00\x01", "by_id": {1: "one", 2: {"nested": (None,)}}}


def flask_session_08_corpus(directory: str, count: int) -> list[str]:
    """Sessions written by the real Flask-Session 0.8 (cachelib 0.17): the sids."""
    from flask_session import Session

    app = Flask(__name__)
    app.config.update(SESSION_TYPE="filesystem", SESSION_FILE_DIR=directory, SECRET_KEY="k")

    @app.post("/login/<int:number>")
    def login(number):
        session["user"] = f"user{number}"
        session["point"] = (number, number + 1)
        flash("hello")
        return "ok"

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        Session(app)
    sids = []
    for number in range(count):
        client = app.test_client()
        client.post(f"/login/{number}")
        sids.append(client.get_cookie("session").value)
    return sids


def cachelib_md5_corpus(directory: str, count: int, data: dict | None = None) -> None:
    """cachelib 0.7-0.15's files: 4-byte header, md5 names (cachelib 0.17 told to hash with md5)."""
    cache = FileSystemCache(directory, threshold=0, hash_method=hashlib.md5)
    for number in range(count):
        cache.set(f"session:md5-{number}", data or {"user": number}, timeout=3600)


def old_cachelib_corpus(directory: str, count: int, protocol: int = 4, data: dict | None = None) -> None:
    """werkzeug / cachelib <= 0.6 files, by hand: pickled-int header, md5 names, Python 3.7's protocol."""
    for number in range(count):
        name = hashlib.md5(f"session:old-{number}".encode()).hexdigest()
        with open(os.path.join(directory, name), "wb") as handle:
            pickle.dump(2_000_000_000, handle, 1)
            pickle.dump(data or {"user": number}, handle, protocol)


def analyze_json(capsys, *args: str) -> tuple[int, dict]:
    code = cli.main(["analyze", *args, "--json", "--quiet"])
    out = capsys.readouterr().out
    return code, json.loads(out) if out.strip() else {}


@pytest.mark.parametrize(("build", "expected"), [
    (lambda d: flask_session_08_corpus(d, 3), ("sha256", "struct", 5, "cachelib >= 0.16")),
    (lambda d: cachelib_md5_corpus(d, 3), ("md5", "struct", 5, "cachelib 0.7-0.15")),
    (lambda d: old_cachelib_corpus(d, 3), ("md5", "pickle", 4, "cachelib <= 0.6")),
    (lambda d: old_cachelib_corpus(d, 3, protocol=2), ("md5", "pickle", 2, "cachelib <= 0.6")),
], ids=["flask-session-0.8", "cachelib-md5", "cachelib-0.6-style", "python2-protocol"])
def test_analyze_names_hash_header_and_protocol_and_records_them(tmp_path, capsys, build, expected):
    session_dir, state_dir = tmp_path / "sessions", tmp_path / "state"
    session_dir.mkdir()
    build(str(session_dir))
    code, result = analyze_json(capsys, "--session-dir", str(session_dir), "--state-dir", str(state_dir))
    assert code == cli.EXIT_OK
    found = result["profile"]
    hash_name, header_style, protocol, generation = expected
    assert (found["hash_name"], found["header_style"], found["pickle_protocol"]) == (hash_name, header_style,
                                                                                     protocol)
    assert generation in found["generation"] and found["mixed"] == {}
    assert found["sessions"] == 3 and found["serializer"] == "pickle"
    recorded = profile.load(str(state_dir))
    assert recorded.settings() == {"hash_name": hash_name, "header_style": header_style,
                                   "pickle_protocol": protocol, "serializer": "pickle"}
    assert result["recorded"] == profile.profile_path(str(state_dir))


def test_a_wrong_explicit_option_is_refused_with_both_values_and_the_fix(tmp_path, capsys):
    session_dir, state_dir = tmp_path / "sessions", tmp_path / "state"
    session_dir.mkdir()
    cachelib_md5_corpus(str(session_dir), 4)
    common = ["--session-dir", str(session_dir), "--state-dir", str(state_dir)]
    # analyze itself: the option contradicts the files
    assert cli.main(["analyze", *common, "--hash-method", "sha256", "--quiet"]) == cli.EXIT_ERROR
    err = capsys.readouterr().err
    assert "--hash-method=sha256" in err and "hash_name md5" in err and "drop --hash-method" in err
    assert profile.load(str(state_dir)) is None  # nothing recorded from a refused run
    # every other tool, against the recorded profile
    assert cli.main(["analyze", *common, "--quiet"]) == cli.EXIT_OK
    capsys.readouterr()
    for command in (["export", "--header-style", "pickle"], ["export", "--hash-method", "sha256"],
                    ["migrate", "--serializer", "msgpack"], ["validate", "--hash-method", "sha256"]):
        assert cli.main([command[0], *common, *command[1:], "--redis-url", "redis://127.0.0.1:1"]) \
            == cli.EXIT_ERROR
        err = capsys.readouterr().err
        assert "contradicts the source profile" in err and profile.profile_path(str(state_dir)) in err
    with pytest.raises(ProfileConflict, match="SESSIONSHIFT_HASH_METHOD=sha256"):
        profile.resolve(str(state_dir), str(session_dir), {"hash_name": "sha256"}, style="flask")
    # agreeing with the profile, or an older protocol than the source's, is fine
    settled = profile.resolve(str(state_dir), None, {"hash_name": "md5", "pickle_protocol": 4})
    assert (settled.hash_name, settled.pickle_protocol) == ("md5", 4)
    assert settled.sources["header_style"] == "profile"


def test_a_mixed_directory_is_reported_not_guessed(tmp_path, capsys):
    session_dir, state_dir = tmp_path / "sessions", tmp_path / "state"
    session_dir.mkdir()
    flask_session_08_corpus(str(session_dir), 2)
    old_cachelib_corpus(str(session_dir), 3)
    code, result = analyze_json(capsys, "--session-dir", str(session_dir), "--state-dir", str(state_dir))
    assert code == cli.EXIT_OK
    found = result["profile"]
    assert found["mixed"] == {"hash_name": {"sha256": 2, "md5": 3},
                              "header_style": {"struct": 2, "pickle": 3}}
    assert found["hash_name"] is None and found["header_style"] is None
    assert cli.main(["analyze", "--session-dir", str(session_dir), "--no-record"]) == cli.EXIT_OK
    assert "MIXED hash_name" in capsys.readouterr().out
    with pytest.raises(ProfileMixed, match=r"md5 \(3 files\), sha256 \(2 files\).*does not guess"):
        profile.resolve(str(state_dir), str(session_dir), {}, style="flask")
    # Told explicitly, a tool goes ahead; a backfill does not need the hash at all.
    told = profile.resolve(str(state_dir), None, {"hash_name": "sha256", "header_style": "struct"})
    assert (told.hash_name, told.header_style) == ("sha256", "struct")
    assert profile.resolve(str(state_dir), None, {}, needs=("serializer",)).serializer == "pickle"


def test_analyze_says_what_msgpack_would_change_and_refuses_to_record_it(tmp_path, capsys):
    session_dir, state_dir = tmp_path / "sessions", tmp_path / "state"
    session_dir.mkdir()
    cachelib_md5_corpus(str(session_dir), 3, data=RICH)
    cachelib_md5_corpus(str(session_dir / "plain"), 2)  # a subdirectory: not scanned
    code, result = analyze_json(capsys, "--session-dir", str(session_dir), "--state-dir", str(state_dir))
    assert code == cli.EXIT_OK
    msgpack = result["profile"]["msgpack"]
    assert msgpack["inexact_sessions"] == 3 and msgpack["exact_sessions"] == 0
    for change in ("tuple -> list", "set -> list", "frozenset -> list", "uuid.UUID -> str",
                   "datetime.datetime -> str", "decimal.Decimal -> str"):
        assert msgpack["changes"][change] == 3, change
    paths = {change["path"] for example in msgpack["examples"] for change in example["changes"]}
    assert paths and all(example["file"] in os.listdir(session_dir) for example in msgpack["examples"])
    assert result["profile"]["value_types"]["tuple"] == 3
    code, result = analyze_json(capsys, "--session-dir", str(session_dir), "--state-dir", str(state_dir),
                                "--serializer", "msgpack")
    assert code == cli.EXIT_CHECK_FAILED and "would change 3 of 3 sessions" in result["refused"]
    assert profile.load(str(state_dir)).serializer == "pickle"  # the earlier, exact choice stands


def test_msgpack_is_recorded_for_a_msgpack_exact_corpus_and_kept_on_reanalyze(tmp_path, capsys):
    session_dir, state_dir = tmp_path / "sessions", tmp_path / "state"
    session_dir.mkdir()
    cachelib_md5_corpus(str(session_dir), 2, data={"user": "a", "cart": [1, 2], "n": {"x": 1.5}})
    common = ["--session-dir", str(session_dir), "--state-dir", str(state_dir)]
    code, result = analyze_json(capsys, *common, "--serializer", "msgpack")
    assert code == cli.EXIT_OK and result["profile"]["msgpack"]["inexact_sessions"] == 0
    assert analyze_json(capsys, *common)[1]["profile"]["serializer"] == "msgpack"  # not silently switched
    assert profile.resolve(str(state_dir), None, {}).serializer == "msgpack"


def test_without_a_recorded_profile_tools_look_at_the_files(tmp_path):
    session_dir = tmp_path / "sessions"
    session_dir.mkdir()
    assert profile.resolve(None, str(session_dir), {}).sources == dict.fromkeys(profile.SETTINGS, "default")
    old_cachelib_corpus(str(session_dir), 2)
    seen = profile.resolve(str(tmp_path / "no-state"), str(session_dir), {})
    assert (seen.hash_name, seen.header_style, seen.pickle_protocol) == ("md5", "pickle", 4)
    assert seen.sources["hash_name"] == "files" and seen.serializer == "pickle"
    with pytest.raises(ProfileConflict, match="a look at the first 2 files"):
        profile.resolve(None, str(session_dir), {"header_style": "struct"})
    # A Python 3.7 source: protocol 5 would make files it cannot read.
    with pytest.raises(ProfileConflict, match=r"pickle_protocol=5 contradicts.*pickle_protocol 4"):
        profile.resolve(None, str(session_dir), {"pickle_protocol": 5}, style="module")


def _struct_file_read_as_pickled_int_first(directory: str) -> None:
    """A 4-byte header whose first byte is BININT2's opcode ('M'): both readings must be weighed."""
    from sessionshift import formats

    expiry = 0x7A000000 | ord("M")
    formats.write_session_file(directory, hashlib.sha256(b"session:m").hexdigest(), {"user": 1}, expiry)


@pytest.mark.parametrize("builds", [
    [lambda d: flask_session_08_corpus(d, 3)],
    [lambda d: cachelib_md5_corpus(d, 3)],
    [lambda d: old_cachelib_corpus(d, 3), lambda d: old_cachelib_corpus(d, 1, protocol=2)],
    [_struct_file_read_as_pickled_int_first, lambda d: cachelib_md5_corpus(d, 2, {"u": (1,)})],
    [lambda d: old_cachelib_corpus(d, 2), lambda d: cachelib_md5_corpus(d, 2)],  # mixed
], ids=["flask-session-0.8", "cachelib-md5", "cachelib-0.6-style", "struct-M-first", "mixed"])
def test_the_quick_look_reads_structure_and_agrees_with_a_decoding_look(tmp_path, builds):
    for build in builds:
        build(str(tmp_path))
    with open(tmp_path / ("0" * 64), "wb") as handle:
        handle.write(b"\x00\x00\x00\x00\x80\x05truncated")  # skipped by both
    quick, decoded = profile.quick_look(str(tmp_path)), profile.detect(str(tmp_path), census=False)
    assert quick.settings() == decoded.settings() and quick.mixed == decoded.mixed
    assert (quick.hashes, quick.header_styles, quick.protocols, quick.sessions) == (
        decoded.hashes, decoded.header_styles, decoded.protocols, decoded.sessions)
