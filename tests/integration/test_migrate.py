"""The backfill against a real redis-server: races, bad files, Redis going away, resume, cluster."""

from __future__ import annotations

import dataclasses
import json
import os
import pickle
import struct
import threading
import time

import pytest

from devstack.redis_server import RedisServer, absolute_expiries
from sessionshift import exact, formats, state
from sessionshift.analyze import AnalyzeConfig, analyze
from sessionshift.analyze import summary as analyze_summary
from sessionshift.appconfig import InterfaceConfig
from sessionshift.keys import KeyLayout
from sessionshift.migrate import MigrateConfig, migrate, summary
from sessionshift.phasecore import SessionCore
from sessionshift.phases import Phase
from sessionshift.redisconn import RedisUnavailable, connect
from sessionshift.store import SessionStore
from tests.support import hostile
from tests.support.tombstone import holds_tombstone

pytestmark = pytest.mark.integration

LAYOUT = KeyLayout()


def make_corpus(directory: str, count: int, *, lifetime: int = 3600, start: int = 0) -> dict[str, tuple]:
    """*count* cachelib session files; returns {file name: (data, expiry)}."""
    os.makedirs(directory, exist_ok=True)
    now = int(time.time())
    corpus = {}
    for index in range(start, start + count):
        sid = f"sid-{index:07d}"
        name = formats.session_file_name(sid)
        data = {"_permanent": True, "user": f"user{index}", "cart": [index, index + 1],
                "prefs": {"lang": "ja"}}
        expiry = now + lifetime + index % 97
        with open(os.path.join(directory, name), "wb") as handle:
            handle.write(formats.encode_cachelib(data, expiry))
        corpus[name] = (data, expiry)
    return corpus


class Exploit:
    """A pickle that would run a shell command if loaded with plain pickle."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def write_bad_files(directory: str, marker: str) -> dict[str, str]:
    """Hostile, truncated, empty and foreign files; returns {path: kind}."""
    bad = {}
    hostile = os.path.join(directory, formats.session_file_name("hostile"))
    with open(hostile, "wb") as handle:
        handle.write(struct.pack("I", int(time.time()) + 3600) + pickle.dumps({"x": Exploit(marker)}))
    bad[hostile] = "hostile"
    truncated = os.path.join(directory, formats.session_file_name("truncated"))
    with open(truncated, "wb") as handle:
        handle.write(formats.encode_cachelib({"user": "t"}, int(time.time()) + 3600)[:9])
    bad[truncated] = "truncated"
    empty = os.path.join(directory, formats.session_file_name("empty"))
    open(empty, "wb").close()
    bad[empty] = "empty"
    with open(os.path.join(directory, "README.txt"), "w") as handle:
        handle.write("not a session")
    return bad


def assert_copied(client, corpus: dict[str, tuple], *, serializer="pickle", except_names=()) -> None:
    """Every session of *corpus* is in Redis with the app's value (type for type) and the file's expiry."""
    names = [name for name in corpus if name not in except_names]
    keys = [LAYOUT.session_key(name) for name in names]
    with client.pipeline(transaction=False) as pipe:
        for key in keys:
            pipe.get(key)
        values = pipe.execute()
    expiries = absolute_expiries(client, keys)
    for name, value, expiretime in zip(names, values, expiries, strict=True):
        data, expiry = corpus[name]
        assert value is not None, f"{name} missing"
        expected = formats.app_view(data, serializer)
        assert exact.compare(expected, formats.decode_value(value, serializer)).exact
        assert expiretime == expiry


@pytest.fixture
def config(tmp_path):
    return MigrateConfig(session_dir=str(tmp_path / "sessions"), state_dir=str(tmp_path / "state"),
                         batch_size=50, workers=1)


def test_copies_every_live_session_with_its_expiry_and_skips_expired(redis_client, redis_server, config):
    corpus = make_corpus(config.session_dir, 400)
    expired = make_corpus(config.session_dir, 5, lifetime=-100, start=1000)
    result = migrate(redis_server.settings(), config)
    assert result.counts["written"] == 400 and result.counts["expired"] == 5
    assert result.complete and not result.resumed
    assert_copied(redis_client, corpus)
    assert not any(redis_client.exists(LAYOUT.session_key(name)) for name in expired)
    record = state.read_json(os.path.join(config.state_dir, state.MIGRATE_FILE))
    assert record["complete"] is True and record["finished_at"] and len(record["shares_done"]) == 16


def test_second_run_writes_nothing(redis_client, redis_server, config):
    make_corpus(config.session_dir, 200)
    assert migrate(redis_server.settings(), config).written == 200
    again = migrate(redis_server.settings(), config)
    assert again.written == 0 and again.counts["exists"] == 200 and not again.resumed


def test_msgpack_serializer_and_forked_workers(redis_client, redis_server, config):
    corpus = make_corpus(config.session_dir, 600)
    config.serializer, config.workers = "msgpack", 2
    result = migrate(redis_server.settings(), config)
    assert result.written == 600 and result.workers == 2
    assert_copied(redis_client, corpus, serializer="msgpack")


def test_the_apps_newer_write_between_read_and_write_stays(redis_client, redis_server, config):
    corpus = make_corpus(config.session_dir, 120)
    store = SessionStore(redis_client, LAYOUT)
    raced = []

    def app_saves_first(batch):
        if not raced:  # the app writes this session after we read its file, before our write
            name, _value, expiry = batch[0]
            store.app_write(name, b"newer-from-the-app", expiry + 500)
            raced.append((name, expiry + 500))

    result = migrate(redis_server.settings(), config, before_write=app_saves_first)
    (name, expiry), = raced
    assert redis_client.get(LAYOUT.session_key(name)) == b"newer-from-the-app"
    assert absolute_expiries(redis_client, [LAYOUT.session_key(name)]) == [expiry]
    assert result.counts["exists"] == 1 and result.written == 119
    assert_copied(redis_client, corpus, except_names={name})


def test_a_logout_during_the_copy_is_not_revived(redis_client, redis_server, config):
    make_corpus(config.session_dir, 120)
    store = SessionStore(redis_client, LAYOUT)
    logged_out = []

    def user_logs_out(batch):
        if not logged_out:
            name = batch[3][0]
            store.app_delete(name)  # the session key now holds the tombstone
            logged_out.append(name)

    result = migrate(redis_server.settings(), config, before_write=user_logs_out)
    assert holds_tombstone(redis_client, LAYOUT.session_key(logged_out[0]))
    assert result.counts["tombstoned"] == 1 and result.written == 119


def test_corrupt_files_are_reported_hostile_ones_copied_unread_never_run_or_deleted(
        redis_client, redis_server, config, tmp_path):
    corpus = make_corpus(config.session_dir, 100)
    marker = str(tmp_path / "pwned")
    bad = write_bad_files(config.session_dir, marker)
    config.workers = 2
    result = migrate(redis_server.settings(), config)
    # The hostile pickle is a whole session file by its structure: its bytes are copied, not
    # decoded (every reader of the copy refuses it, see the next test); the broken ones are reported.
    hostile_path = next(p for p, k in bad.items() if k == "hostile")
    assert result.written == 101 and result.counts["corrupt"] == 2 and result.counts["foreign"] == 1
    assert result.copied_unread and "copied unread" in summary(result)
    reported = {error["path"]: error["reason"] for error in result.errors}
    assert set(reported) == set(bad) - {hostile_path}
    assert "empty" in reported[next(p for p, k in bad.items() if k == "empty")]
    assert "truncated" in reported[next(p for p, k in bad.items() if k == "truncated")]
    assert not os.path.exists(marker), "the hostile pickle was executed"
    assert all(os.path.exists(path) for path in bad), "a bad file was deleted"
    assert_copied(redis_client, corpus)


def test_hostile_and_bomb_files_are_copied_as_bytes_and_refused_where_read(
        redis_client, redis_server, config, tmp_path):
    make_corpus(config.session_dir, 10)
    marker = tmp_path / "pwned"
    expiry = struct.pack("I", int(time.time()) + 3600)
    planted = {"hostile": expiry + pickle.dumps({"x": Exploit(str(marker))}, 4),
               "bomb": hostile.shared_expansion()}  # ~450 bytes that expand to ~128 GB unshared
    names = {sid: formats.session_file_name(sid) for sid in planted}
    for sid, raw in planted.items():
        with open(os.path.join(config.session_dir, names[sid]), "wb") as handle:
            handle.write(raw)
    result = migrate(redis_server.settings(), config)
    assert result.written == 12 and result.counts["corrupt"] == 0
    for sid, raw in planted.items():
        assert redis_client.get(LAYOUT.session_key(names[sid])) == raw[4:]  # byte for byte
    assert not marker.exists()
    # The interface in phase 3 reads Redis first: the copy is refused, then the file: no session.
    core = SessionCore(InterfaceConfig(session_dir=config.session_dir, state_dir=str(tmp_path / "app-state")),
                       redis_client=redis_client)
    for sid in planted:
        assert core.load(Phase.REDIS_READ, sid) == (None, "none")
    assert not marker.exists()
    # analyze, which phases 1 and 2 run on every host, decodes every file and names both.
    report = analyze(AnalyzeConfig(session_dir=config.session_dir))
    reasons = {os.path.basename(error["path"]): error["reason"] for error in report["errors"]}
    assert report["corrupt"] == 2 and set(reasons) == set(names.values())
    assert "system" in reasons[names["hostile"]] and "max_encoded_bytes" in reasons[names["bomb"]]
    assert names["hostile"] in analyze_summary(report) and names["bomb"] in analyze_summary(report)
    assert all(os.path.exists(os.path.join(config.session_dir, name)) for name in names.values())


def test_seed_json_files_get_their_sid_key(redis_client, redis_server, config):
    os.makedirs(config.session_dir)
    with open(os.path.join(config.session_dir, "sess_abc123"), "w") as handle:
        json.dump({"data": {"user": "seed"}, "expires": int(time.time()) + 600}, handle)
    result = migrate(redis_server.settings(), config)
    assert result.written == 1
    value = redis_client.get(LAYOUT.session_key_for_sid("abc123"))
    assert formats.decode_value(value) == {"user": "seed"}


def test_dry_run_counts_and_writes_nothing(redis_client, redis_server, config):
    make_corpus(config.session_dir, 150)
    store = SessionStore(redis_client, LAYOUT)
    first = next(iter(os.listdir(config.session_dir)))
    store.app_write(first, b"app", 0)
    config.dry_run = True
    result = migrate(redis_server.settings(), config)
    assert result.counts["would_write"] == 149 and result.counts["exists"] == 1 and result.written == 0
    assert redis_client.dbsize() == 1
    assert not os.path.exists(os.path.join(config.state_dir, state.MIGRATE_FILE))


@pytest.fixture
def own_server(tmp_path, tls_files):
    """A dedicated redis-server this test may kill, restart or pause."""
    server = RedisServer.start(str(tmp_path / "own"), tls_files)
    yield server
    server.stop()


def test_redis_restarted_mid_run_is_retried(own_server, config):
    corpus = make_corpus(config.session_dir, 1000)
    batches, restarter = [], []

    def restart_in_the_background(batch):
        batches.append(len(batch))
        if len(batches) == 5:  # 200 sessions written; the server has no persistence: they are lost
            own_server.kill()
            thread = threading.Thread(target=lambda: (time.sleep(0.5), own_server.launch()))
            thread.start()
            restarter.append(thread)

    result = migrate(own_server.settings(), config, before_write=restart_in_the_background)
    restarter[0].join()
    assert result.complete and result.written == 1000  # every batch went through, after retries
    client = connect(own_server.settings())
    assert client.dbsize() == 800
    # A rerun after a Redis that lost data (a failover, a restart) copies exactly what is missing.
    assert migrate(own_server.settings(), config).written == 200
    assert_copied(client, corpus)
    client.close()


def test_redis_that_stays_down_fails_clearly_and_the_rerun_resumes(own_server, config):
    corpus = make_corpus(config.session_dir, 1000)
    batches = []

    def redis_hangs_in_the_second_pass(batch):
        batches.append(batch)
        if sum(map(len, batches)) > 700 and own_server.process.poll() is None:
            own_server.pause()  # SIGSTOP: unreachable, data kept for the rerun

    config.retry_seconds = 1.0
    settings = own_server.settings(socket_timeout=0.3, connect_timeout=0.3, retries=0)
    try:
        with pytest.raises(RedisUnavailable) as failure:
            migrate(settings, config, before_write=redis_hangs_in_the_second_pass)
    finally:
        own_server.resume()
    message = str(failure.value)
    assert f"127.0.0.1:{own_server.port}" in message and "resume" in message
    record = state.read_json(os.path.join(config.state_dir, state.MIGRATE_FILE))
    assert record["status"] == "failed" and record["complete"] is False
    assert record["shares_done"] == list(range(8))

    result = migrate(own_server.settings(), config)
    assert result.resumed and result.shares_skipped == list(range(8)) and result.complete
    client = connect(own_server.settings())
    assert_copied(client, corpus)
    client.close()


def test_a_rerun_reads_only_files_the_killed_run_had_not_copied(redis_client, redis_server, config):
    corpus = make_corpus(config.session_dir, 300)
    config.workers = 2
    migrate(redis_server.settings(), config)
    path = os.path.join(config.state_dir, state.MIGRATE_FILE)
    record = state.read_json(path)  # as a run killed before its first group ended leaves it
    state.write_json(path, {**record, "status": "running", "complete": False, "shares_done": []})
    copied, lost = sorted(corpus)[:2]
    with open(os.path.join(config.session_dir, copied), "wb") as handle:
        handle.write(b"\x00\x00\x00\x00\x80\x05broken")  # only a read would see it is corrupt
    redis_client.delete(LAYOUT.session_key(lost))  # never copied by the killed run

    result = migrate(redis_server.settings(), config)
    assert result.resumed and result.complete and result.shares_skipped == []
    assert result.counts["written"] == 1 and result.counts["exists"] == 299
    assert result.counts["corrupt"] == 0 and result.counts["scanned"] == 300  # the broken file: not read
    assert_copied(redis_client, corpus)
    fresh = migrate(redis_server.settings(), dataclasses.replace(config, restart=True))
    assert not fresh.resumed and fresh.counts["corrupt"] == 1  # a run from scratch reads every file


def test_cluster_backfill(cluster_client, redis_cluster, config):
    corpus = make_corpus(config.session_dir, 500)
    store = SessionStore(cluster_client, LAYOUT)
    names = list(corpus)
    store.app_write(names[0], b"newer", 0)
    store.app_delete(names[1])
    config.workers = 2
    preview = migrate(redis_cluster.settings(), dataclasses.replace(config, dry_run=True))
    assert preview.counts["would_write"] == 498 and preview.written == 0
    result = migrate(redis_cluster.settings(), config)
    assert result.written == 498 and result.counts["exists"] == 1 and result.counts["tombstoned"] == 1
    assert cluster_client.get(LAYOUT.session_key(names[0])) == b"newer"
    assert holds_tombstone(cluster_client, LAYOUT.session_key(names[1]))
    assert_copied(cluster_client, corpus, except_names=set(names[:2]))
