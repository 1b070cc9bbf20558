"""Validation against a real redis-server: every count, the re-check, sampling, the record, cluster."""

from __future__ import annotations

import os
import pickle
import time

import pytest

from sessionshift import formats, state
from sessionshift.keys import KeyLayout
from sessionshift.migrate import MigrateConfig, migrate
from sessionshift.store import SessionStore
from sessionshift.validate import ValidateConfig, record, validate
from tests.integration.test_migrate import make_corpus

pytestmark = pytest.mark.integration

LAYOUT = KeyLayout()


@pytest.fixture
def session_dir(tmp_path):
    return str(tmp_path / "sessions")


def _backfilled(settings, session_dir, count=200):
    corpus = make_corpus(session_dir, count)
    migrate(settings, MigrateConfig(session_dir=session_dir, workers=1))
    return corpus


def test_all_consistent_after_the_backfill(redis_client, redis_server, session_dir):
    _backfilled(redis_server.settings(), session_dir)
    result = validate(redis_client, ValidateConfig(session_dir, recheck_delay=0))
    assert result["passed"] and result["consistency_percent"] == 100.0
    assert result["counts"]["consistent"] == 200 and result["comparable"] == 200


@pytest.mark.parametrize("workers", [1, 3])
def test_workers_report_what_one_process_reports(redis_client, redis_server, session_dir, workers):
    """The forked scan merges every worker's counts, capped examples and re-check list."""
    names = list(_backfilled(redis_server.settings(), session_dir, count=300))
    for name in names[:30]:
        redis_client.delete(LAYOUT.session_key(name))
    make_corpus(session_dir, 5, lifetime=-60, start=5000)
    config = ValidateConfig(session_dir, recheck_delay=0, max_examples=7, recheck_limit=20,
                            batch_size=16, workers=workers)
    result = validate(redis_client, config)
    counts = result["counts"]
    found = (counts["checked"], counts["consistent"], counts["missing"], counts["expired"])
    assert found == (305, 270, 30, 5)
    assert counts["unverified"] == 10  # 30 differences, 20 re-checked
    assert len(result["examples"]["missing"]) == 7 and set(result["examples"]["missing"]) <= set(names[:30])


def test_counts_each_kind_of_problem_by_file_name(redis_client, redis_server, session_dir):
    corpus = _backfilled(redis_server.settings(), session_dir)
    names = list(corpus)
    store = SessionStore(redis_client, LAYOUT)
    for name in names[:3]:
        redis_client.delete(LAYOUT.session_key(name))  # missing in Redis
    for name in names[3:5]:
        store.app_write(name, formats.encode_value({"user": "someone else"}), 0)  # different
    make_corpus(session_dir, 4, lifetime=-60, start=5000)  # expired files
    with open(os.path.join(session_dir, formats.session_file_name("broken")), "wb") as handle:
        handle.write(b"\x00\x01")  # corrupt
    result = validate(redis_client, ValidateConfig(session_dir, recheck_delay=0.1, threshold=100))
    counts = result["counts"]
    assert (counts["consistent"], counts["missing"], counts["different"]) == (195, 3, 2)
    assert (counts["expired"], counts["corrupt"], counts["type_changed"]) == (4, 1, 0)
    assert result["comparable"] == 200 and result["consistency_percent"] == 97.5
    assert not result["passed"] and "BELOW THRESHOLD" in result["message"]
    assert sorted(result["examples"]["missing"]) == sorted(names[:3])
    assert sorted(result["examples"]["different"]) == sorted(names[3:5])
    assert formats.session_file_name("broken") in [e["file"] for e in result["examples"]["corrupt"]]
    # File names only: no session content anywhere in the result.
    assert "user1" not in str(result) and "someone else" not in str(result)


def test_a_lossy_serializer_choice_fails_validation_and_the_gate_naming_each_type_change(
        redis_client, redis_server, session_dir, tmp_path):
    """msgpack on sessions with tuples, sets, UUIDs, flashes: never "consistent", whatever the threshold."""
    from sessionshift.gates import validation_passed
    from tests.unit.test_profile import RICH

    os.makedirs(session_dir)
    names = []
    for index in range(6):
        name = formats.session_file_name(f"rich-{index}")
        formats.write_session_file(session_dir, name, dict(RICH, n=index), 0)
        names.append(name)
    plain = make_corpus(session_dir, 4)  # lists, dicts and strings: msgpack keeps them
    # A session msgpack cannot hold at all (no 2**70): the file is the problem, reported as corrupt.
    formats.write_session_file(session_dir, formats.session_file_name("huge"), {"n": 2**70}, 0)
    lossy = MigrateConfig(session_dir=session_dir, workers=1, serializer="msgpack")
    assert migrate(redis_server.settings(), lossy).written == 10
    result = validate(redis_client, ValidateConfig(session_dir, serializer="msgpack", recheck_delay=0,
                                                   threshold=0))
    counts = result["counts"]
    assert (counts["type_changed"], counts["consistent"], counts["corrupt"]) == (6, 4, 1)
    assert not result["passed"]  # a threshold of 0 does not excuse a changed type
    assert result["type_changes"]["tuple -> list"] == 6 and result["type_changes"]["uuid.UUID -> str"] == 6
    example = result["examples"]["type_changed"][0]
    assert example["file"] in names and example["count"] >= 6
    assert {"path": "_flashes[0]", "from": "tuple", "to": "list"} in example["changes"]
    assert "TYPES CHANGED" in result["message"] and "pickle" in result["message"]
    unstorable = [e for e in result["examples"]["corrupt"] if e["file"] == formats.session_file_name("huge")]
    assert unstorable and "cannot encode" in unstorable[0]["reason"]
    gate = validation_passed({"complete": True}, result, threshold=0)
    assert not gate.passed and any("changed types" in reason for reason in gate.reasons)
    assert "Welcome back" not in str(result)  # names and types, never contents
    assert set(plain) & {e["file"] for e in result["examples"]["type_changed"]} == set()
    # The exact default on the same files: every session consistent.
    redis_client.flushdb()
    assert migrate(redis_server.settings(), MigrateConfig(session_dir=session_dir, workers=1)).written == 11
    exact = validate(redis_client, ValidateConfig(session_dir, recheck_delay=0))
    assert exact["passed"] and exact["counts"]["consistent"] == 11 and exact["counts"]["type_changed"] == 0


def test_a_difference_that_heals_before_the_recheck_is_not_counted(redis_client, redis_server, session_dir):
    corpus = _backfilled(redis_server.settings(), session_dir, 50)
    name = next(iter(corpus))
    data, expiry = corpus[name]
    redis_client.delete(LAYOUT.session_key(name))  # the app is between its file and its Redis write
    healing = []

    def app_finishes_its_write(pending):
        healing.extend(pending)
        SessionStore(redis_client, LAYOUT).app_write(name, formats.encode_value(data), expiry)

    started = time.monotonic()
    result = validate(redis_client, ValidateConfig(session_dir, recheck_delay=0.3),
                      before_recheck=app_finishes_its_write)
    assert healing == [name]
    assert time.monotonic() - started >= 0.3  # it waited before looking again
    assert result["passed"] and result["counts"]["missing"] == 0 and result["counts"]["healed"] == 1
    assert result["counts"]["consistent"] == 50


def _one_difference(redis_client, redis_server, session_dir):
    """20 backfilled sessions, one of which Redis holds differently: (store, name, data, expiry)."""
    corpus = _backfilled(redis_server.settings(), session_dir, 20)
    name = next(iter(corpus))
    data, expiry = corpus[name]
    store = SessionStore(redis_client, LAYOUT)
    store.app_write(name, formats.encode_value(dict(data, user="before")), expiry)
    return store, name, data, expiry


def test_a_save_in_flight_at_the_recheck_is_compared_again(redis_client, redis_server, session_dir,
                                                          monkeypatch):
    # Under busy users a session can be saved between the re-check's file read and its Redis
    # read (the app writes one copy, then the other): that comparison saw two different saves.
    # Counted, it failed validation at 98 % on a healthy fleet; it must be looked at again.
    from sessionshift import validate as validate_module

    store, name, data, expiry = _one_difference(redis_client, redis_server, session_dir)
    fetch, saves = validate_module._Validation.fetch, []

    def a_save_lands_during_the_recheck(self, sessions):
        if not saves:  # the first re-check: the app saves a new value, file and Redis
            newer = dict(data, cart=[1, 2, 3])
            formats.write_session_file(session_dir, name, newer, expiry)
            store.app_write(name, formats.encode_value(newer), expiry)
            saves.append(name)
        return fetch(self, sessions)

    monkeypatch.setattr(validate_module._Validation, "fetch", a_save_lands_during_the_recheck)
    result = validate(redis_client, ValidateConfig(session_dir, recheck_delay=0))
    assert saves == [name]
    assert result["counts"]["different"] == 0, result["examples"]
    assert result["passed"] and result["counts"]["consistent"] == 20


def test_a_save_half_done_at_the_recheck_is_compared_again(redis_client, redis_server, session_dir,
                                                          monkeypatch):
    # The app writes the file, then Redis. A re-check that reads the file after the first
    # write and Redis before the second sees a new file and an old Redis value: the file did
    # not change while it was compared, but it did since the last look. (make demo's phase-2
    # gate failed at 99.95 % on such a session under live users.)
    from sessionshift import validate as validate_module

    store, name, data, expiry = _one_difference(redis_client, redis_server, session_dir)
    newer = dict(data, cart=[1, 2, 3])
    fetch, halves = validate_module._Validation.fetch, []

    def the_file_half(_names):
        formats.write_session_file(session_dir, name, newer, expiry)
        halves.append("file")

    def the_redis_half_after_the_fetch(self, sessions):
        found = fetch(self, sessions)
        if halves == ["file"]:
            store.app_write(name, formats.encode_value(newer), expiry)
            halves.append("redis")
        return found

    monkeypatch.setattr(validate_module._Validation, "fetch", the_redis_half_after_the_fetch)
    result = validate(redis_client, ValidateConfig(session_dir, recheck_delay=0),
                      before_recheck=the_file_half)
    assert halves == ["file", "redis"]
    assert result["counts"]["different"] == 0, result["examples"]
    assert result["passed"] and result["counts"]["consistent"] == 20


def test_a_difference_that_holds_still_is_counted_after_the_rechecks(redis_client, redis_server, session_dir):
    corpus = _backfilled(redis_server.settings(), session_dir, 20)
    name = next(iter(corpus))
    data, expiry = corpus[name]
    SessionStore(redis_client, LAYOUT).app_write(name, formats.encode_value(dict(data, user="x")), expiry)
    result = validate(redis_client, ValidateConfig(session_dir, recheck_delay=0))
    assert not result["passed"]
    assert result["counts"]["different"] == 1 and result["counts"]["consistent"] == 19


def test_sample_mode_checks_a_stable_share(redis_client, redis_server, session_dir):
    _backfilled(redis_server.settings(), session_dir, 400)
    first = validate(redis_client, ValidateConfig(session_dir, sample_percent=25, recheck_delay=0))
    second = validate(redis_client, ValidateConfig(session_dir, sample_percent=25, recheck_delay=0))
    assert 50 < first["counts"]["checked"] < 150
    assert first["counts"]["checked"] == second["counts"]["checked"]
    assert first["full"] is False and first["passed"]


def test_record_is_what_the_phase3_gate_reads(redis_client, redis_server, session_dir, tmp_path):
    from sessionshift.gates import validation_passed

    _backfilled(redis_server.settings(), session_dir, 20)
    state_dir = str(tmp_path / "state")
    migrate(redis_server.settings(), MigrateConfig(session_dir=session_dir, state_dir=state_dir, workers=1))
    result = validate(redis_client, ValidateConfig(session_dir, recheck_delay=0))
    path = record(state_dir, result)
    assert path == os.path.join(state_dir, state.VALIDATION_FILE)
    gate = validation_passed(state.read_json(os.path.join(state_dir, state.MIGRATE_FILE)),
                             state.read_json(path))
    assert gate.passed, gate.reasons


def test_cluster_validation(cluster_client, redis_cluster, session_dir):
    corpus = make_corpus(session_dir, 300)
    migrate(redis_cluster.settings(), MigrateConfig(session_dir=session_dir, workers=2))
    name = next(iter(corpus))
    cluster_client.delete(LAYOUT.session_key(name))
    result = validate(cluster_client, ValidateConfig(session_dir, recheck_delay=0, threshold=99))
    assert result["counts"]["consistent"] == 299 and result["counts"]["missing"] == 1
    assert result["passed"] and result["examples"]["missing"] == [name]


def test_equal_bytes_settle_without_a_decode_and_a_hostile_file_without_its_key_is_corrupt(
        redis_client, redis_server, session_dir, monkeypatch, tmp_path):
    from sessionshift import validate as validate_module
    from tests.integration.test_migrate import Exploit

    _backfilled(redis_server.settings(), session_dir, 20)
    marker = tmp_path / "pwned"
    hostile_name = formats.session_file_name("hostile")
    with open(os.path.join(session_dir, hostile_name), "wb") as handle:  # planted after the backfill
        handle.write(formats.cachelib_header(0) + pickle.dumps({"x": Exploit(str(marker))}, 4))
    decoded = []
    decode = validate_module.decode_payload

    def counted(payload, path):
        decoded.append(os.path.basename(path))
        return decode(payload, path)

    monkeypatch.setattr(validate_module, "decode_payload", counted)
    result = validate(redis_client, ValidateConfig(session_dir, recheck_delay=0, workers=1))
    assert decoded == [hostile_name]  # the 20 consistent sessions were settled by their bytes
    counts = result["counts"]
    assert (counts["consistent"], counts["corrupt"], counts["missing"]) == (20, 1, 0)
    assert "system" in result["examples"]["corrupt"][0]["reason"] and not marker.exists()


def test_a_save_is_told_by_the_files_identity_without_decoding_it(redis_client, session_dir):
    from sessionshift.validate import _Validation

    corpus = make_corpus(session_dir, 1)
    name = next(iter(corpus))
    path = os.path.join(session_dir, name)
    run = _Validation(redis_client, ValidateConfig(session_dir))
    now = time.time()
    session = run.read("session", name, path, now)
    assert not run._saved_since(session, now)
    data, expiry = corpus[name]
    formats.write_session_file(session_dir, name, data, expiry)  # a save: the same bytes, a new file
    assert not run._saved_since(run.read("session", name, path, now), now)
    assert run._saved_since(session, now)
    os.unlink(path)
    assert run._saved_since(session, now)
