"""sessionshift.export against a real redis-server: Redis -> cachelib files for the rollback."""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time

import pytest
from cachelib.file import FileSystemCache
from redis.exceptions import ConnectionError as RedisConnectionError

from sessionshift import export, formats, profile, state
from sessionshift.export import export_sessions, fetch_with_expiry
from sessionshift.keys import KeyLayout
from sessionshift.profile import ProfileConflict
from sessionshift.redisconn import RedisUnavailable
from sessionshift.store import SessionStore

pytestmark = pytest.mark.integration

NOBODY = 65534


@pytest.fixture
def session_dir(tmp_path):
    path = tmp_path / "sessions"
    path.mkdir()
    return str(path)


def _session(i: int) -> dict:
    return {"user_id": i, "lang": "ja", "_permanent": True, "history": ("a", i)}


def _fill(store: SessionStore, count: int, expiry: int, serializer="pickle") -> dict[str, dict]:
    """*count* sessions written as the app writes them; {file name: session dict}."""
    sessions = {}
    for i in range(count):
        name = store.layout.file_name(f"sid-{i}")
        sessions[name] = _session(i)
        store.app_write(name, formats.encode_value(sessions[name], serializer), expiry)
    return sessions


@pytest.mark.parametrize("hash_name", ["sha256", "md5"])
@pytest.mark.parametrize("header_style", ["struct", "pickle"])
def test_export_writes_the_files_cachelib_would(redis_client, session_dir, hash_name, header_style):
    layout = KeyLayout(hash_name=hash_name)
    store = SessionStore(redis_client, layout)
    expiry = int(time.time()) + 600
    sessions = _fill(store, 40, expiry)
    # A stock Flask-Session key (phase 5) and a session without a TTL.
    redis_client.set(layout.stock_key("stock-sid"), formats.encode_value({"user_id": "stock"}, "msgpack"),
                     exat=expiry)
    forever = layout.file_name("forever")
    store.app_write(forever, formats.encode_value({"user_id": "forever"}), 0)

    result = export_sessions(redis_client, layout, session_dir, header_style=header_style)

    assert (result.written, result.unchanged, result.undecodable) == (42, 0, 0)
    for name, data in sessions.items():
        read = formats.read_session_file(os.path.join(session_dir, name))
        assert read.data == formats.app_view(data) and read.expiry == expiry
        assert read.header_style == header_style and read.hash_name == hash_name
    assert formats.read_session_file(os.path.join(session_dir, forever)).expiry == 0
    stock = formats.read_session_file(os.path.join(session_dir, layout.file_name("stock-sid")))
    assert stock.data == {"user_id": "stock"} and stock.expiry == expiry
    if header_style == "struct":  # what the installed cachelib (0.17) reads
        cache = FileSystemCache(session_dir, hash_method=getattr(hashlib, hash_name))
        assert cache.get("session:stock-sid") == {"user_id": "stock"}
        assert cache.get("session:sid-3") == formats.app_view(_session(3))


def test_second_export_changes_nothing(redis_client, session_dir):
    store = SessionStore(redis_client, KeyLayout())
    _fill(store, 30, int(time.time()) + 600)
    first = export_sessions(redis_client, store.layout, session_dir)
    mtimes = {name: os.stat(os.path.join(session_dir, name)).st_mtime_ns for name in os.listdir(session_dir)}
    second = export_sessions(redis_client, store.layout, session_dir)
    assert first.changed and first.written == 30
    assert not second.changed and (second.written, second.unchanged) == (0, 30)
    assert mtimes == {name: os.stat(os.path.join(session_dir, name)).st_mtime_ns
                      for name in os.listdir(session_dir)}


def test_a_file_the_app_wrote_with_the_same_session_is_not_rewritten(redis_client, session_dir):
    """Phase-3 files come from the app's own pickling; equal for the app means unchanged."""
    store = SessionStore(redis_client, KeyLayout())
    expiry = int(time.time()) + 600
    name = store.layout.file_name("same")
    store.app_write(name, formats.encode_value({"a": (1, 2)}), expiry)
    formats.write_session_file(session_dir, name, {"a": (1, 2)}, expiry)  # tuple: msgpack gives a list
    result = export_sessions(redis_client, store.layout, session_dir)
    assert (result.written, result.unchanged) == (0, 1)


def test_an_older_file_is_replaced_and_the_expiry_follows_redis(redis_client, session_dir):
    store = SessionStore(redis_client, KeyLayout())
    name = store.layout.file_name("old")
    formats.write_session_file(session_dir, name, {"cart": 1}, int(time.time()) + 60)
    later = int(time.time()) + 900
    store.app_write(name, formats.encode_value({"cart": 2}), later)
    assert export_sessions(redis_client, store.layout, session_dir).written == 1
    read = formats.read_session_file(os.path.join(session_dir, name))
    assert (read.data, read.expiry) == ({"cart": 2}, later)


def test_mode_and_owner(redis_client, session_dir):
    if os.geteuid() != 0:
        pytest.skip("changing a file's owner needs root")
    store = SessionStore(redis_client, KeyLayout())
    _fill(store, 3, 0)
    os.chown(session_dir, NOBODY, NOBODY)  # the app's directory: its owner is the default
    export_sessions(redis_client, store.layout, session_dir)
    for name in os.listdir(session_dir):
        info = os.stat(os.path.join(session_dir, name))
        assert (info.st_uid, info.st_gid, info.st_mode & 0o777) == (NOBODY, NOBODY, 0o600)
    for name in os.listdir(session_dir):
        os.unlink(os.path.join(session_dir, name))
    export_sessions(redis_client, store.layout, session_dir, mode=0o640, uid=0, gid=0)
    for name in os.listdir(session_dir):
        info = os.stat(os.path.join(session_dir, name))
        assert (info.st_uid, info.st_gid, info.st_mode & 0o777) == (0, 0, 0o640)


def test_pickle_serializer_and_undecodable_values(redis_client, session_dir):
    layout = KeyLayout()
    store = SessionStore(redis_client, layout)
    sessions = _fill(store, 5, 0, serializer="pickle")
    hostile = layout.file_name("hostile")
    # A pickle that would run code with plain pickle.loads: reported by name, never loaded.
    store.app_write(hostile, b"cos\nsystem\n(S'echo pwned'\ntR.", 0)
    garbage = layout.file_name("garbage")
    store.app_write(garbage, b"\xff\x00not a pickle", 0)
    result = export_sessions(redis_client, layout, session_dir, serializer="pickle")
    assert result.written == 5 and result.undecodable == 2
    assert sorted(result.undecodable_files) == sorted([hostile, garbage])
    assert sorted(os.listdir(session_dir)) == sorted(sessions)
    for name, data in sessions.items():
        assert formats.read_session_file(os.path.join(session_dir, name)).data == data


def test_logged_out_sessions_lose_their_stale_file(redis_client, session_dir):
    store = SessionStore(redis_client, KeyLayout())
    sessions = _fill(store, 10, 0)
    export_sessions(redis_client, store.layout, session_dir)
    gone = sorted(sessions)[:3]
    for name in gone:  # logouts in phase 4: Redis only, the files stay behind
        store.app_delete(name)
    foreign = os.path.join(session_dir, "README")
    with open(foreign, "w") as handle:
        handle.write("not a session")
    result = export_sessions(redis_client, store.layout, session_dir)
    assert result.removed == 3 and sorted(result.removed_files) == gone
    assert sorted(os.listdir(session_dir)) == sorted([*sorted(sessions)[3:], "README"])
    assert not export_sessions(redis_client, store.layout, session_dir).changed


def test_dry_run_reports_and_writes_nothing(redis_client, session_dir):
    store = SessionStore(redis_client, KeyLayout())
    sessions = _fill(store, 6, 0)
    stale = sorted(sessions)[0]
    formats.write_session_file(session_dir, stale, {"old": 1}, 0)
    store.app_delete(stale)
    state_dir = os.path.join(os.path.dirname(session_dir), "state")
    result = export_sessions(redis_client, store.layout, session_dir, dry_run=True, state_dir=state_dir)
    assert (result.written, result.removed) == (5, 1)
    assert os.listdir(session_dir) == [stale]
    assert not os.path.exists(os.path.join(state_dir, state.EXPORT_FILE))


def test_export_is_recorded_for_the_phase_module(redis_client, session_dir, tmp_path):
    state_dir = str(tmp_path / "state")
    state.write_json(state.state_path(state_dir, state.PHASE_FILE), {"phase": "redis_only"})
    store = SessionStore(redis_client, KeyLayout())
    _fill(store, 4, 0)
    export_sessions(redis_client, store.layout, session_dir, state_dir=state_dir)
    record = state.read_json(state.state_path(state_dir, state.EXPORT_FILE))
    assert record["keys_exported"] == 4 and record["phase"] == "redis_only" and record["complete"]
    assert record["finished_at"] >= record["started_at"]


@pytest.mark.parametrize("workers", [1, 2])
def test_export_under_live_writes_leaves_no_file_older_than_redis(redis_client, redis_server, session_dir,
                                                                 workers):
    from sessionshift.redisconn import connect

    layout = KeyLayout()
    store = SessionStore(redis_client, layout)
    expiry = int(time.time()) + 600
    names = sorted(_fill(store, 300, expiry))
    hot = names[:20]
    stop = threading.Event()
    writer_store = SessionStore(connect(redis_server.settings()), layout)

    def keep_writing():
        version = 0
        while not stop.is_set():
            version += 1
            for name in hot:
                writer_store.app_write(name, formats.encode_value({"version": version, "name": name}),
                                       expiry + version)

    writer = threading.Thread(target=keep_writing)
    writer.start()
    try:
        first = export_sessions(redis_client, layout, session_dir, batch_size=50, workers=workers)
    finally:
        stop.set()
        writer.join()
    writer_store.client.close()
    # The rollback playbook: export, flip back to phase 3, catch-up export.
    catch_up = export_sessions(redis_client, layout, session_dir, batch_size=50, workers=workers)
    assert first.keys_exported + first.unstable >= 300
    assert catch_up.written <= len(hot) + first.unstable
    for name in names:
        read = formats.read_session_file(os.path.join(session_dir, name))
        assert read.data == formats.decode_value(store.get(name))
        assert read.expiry == store.expiry_of(layout.session_key(name))


@pytest.mark.parametrize("workers", [1, 2])
def test_export_from_a_cluster(cluster_client, session_dir, workers):
    store = SessionStore(cluster_client, KeyLayout())
    sessions = _fill(store, 60, int(time.time()) + 600)
    store.app_delete(sorted(sessions)[0])
    formats.write_session_file(session_dir, sorted(sessions)[0], {"stale": True}, 0)
    result = export_sessions(cluster_client, store.layout, session_dir, workers=workers, batch_size=10)
    assert (result.written, result.removed) == (59, 1)
    assert sorted(os.listdir(session_dir)) == sorted(sessions)[1:]
    assert not export_sessions(cluster_client, store.layout, session_dir).changed


def test_a_session_changed_while_its_file_was_written_is_written_again(redis_client, session_dir,
                                                                      monkeypatch):
    """The race itself, made deterministic: the app writes between our GET and our rename."""
    store = SessionStore(redis_client, KeyLayout())
    name = store.layout.file_name("racy")
    store.app_write(name, formats.encode_value({"v": 1}), 0)
    real_write = formats.write_session_file
    app_writes = iter([{"v": 2}])

    def write_then_app_writes(*args, **kwargs):
        path = real_write(*args, **kwargs)
        for data in app_writes:  # only after the first write
            store.app_write(name, formats.encode_value(data), 0)
        return path

    monkeypatch.setattr(formats, "write_session_file", write_then_app_writes)
    result = export_sessions(redis_client, store.layout, session_dir, workers=1)
    assert (result.written, result.rewrites, result.unstable) == (1, 1, 0)
    assert formats.read_session_file(os.path.join(session_dir, name)).data == {"v": 2}


def test_a_session_that_never_settles_is_reported_unstable(redis_client, session_dir, monkeypatch):
    store = SessionStore(redis_client, KeyLayout())
    name = store.layout.file_name("busy")
    store.app_write(name, formats.encode_value({"v": 0}), 0)
    real_write = formats.write_session_file
    versions = iter(range(1, 100))

    def write_then_app_writes(*args, **kwargs):
        path = real_write(*args, **kwargs)
        store.app_write(name, formats.encode_value({"v": next(versions)}), 0)
        return path

    monkeypatch.setattr(formats, "write_session_file", write_then_app_writes)
    result = export_sessions(redis_client, store.layout, session_dir, max_rounds=3, workers=1)
    assert result.unstable == 1 and result.unstable_files == [name]
    assert result.rewrites == 2


@pytest.mark.parametrize("serialization_format", ["msgpack", "json"])
def test_stock_keys_are_read_in_the_apps_serialization_format(redis_client, session_dir,
                                                              serialization_format):
    """Stock Flask-Session 0.8 writes its own keys in SESSION_SERIALIZATION_FORMAT (msgpack or
    json): a rollback's export must bring either back as the session that app was serving."""
    from flask import Flask, session
    from flask_session import Session

    app = Flask(__name__)
    app.config.update(SECRET_KEY="k", SESSION_TYPE="redis", SESSION_REDIS=redis_client,
                      SESSION_SERIALIZATION_FORMAT=serialization_format)

    @app.post("/login")
    def login():
        session.update(user="alice", cart=[1, 2], prefs={"lang": "ja", "dark": True}, score=1.5, note=None)
        return "ok"

    @app.get("/whoami")
    def whoami():
        return dict(session)

    Session(app)
    client = app.test_client()
    client.post("/login")
    served = client.get("/whoami").get_json()
    sid = client.get_cookie("session").value
    assert served["user"] == "alice"

    result = export_sessions(redis_client, KeyLayout(), session_dir)

    assert (result.written, result.undecodable) == (1, 0)
    cache = FileSystemCache(session_dir, hash_method=hashlib.sha256)  # the original library's reader
    assert cache.get("session:" + sid) == served


@pytest.mark.parametrize("kind", ["standalone", "cluster"])
def test_a_key_that_is_not_a_string_is_reported_not_fatal(request, session_dir, kind):
    client = request.getfixturevalue("redis_client" if kind == "standalone" else "cluster_client")
    store = SessionStore(client, KeyLayout())
    _fill(store, 5, 0)
    client.hset("session:someone-elses-hash", mapping={"a": "1"})  # looks like a stock key
    result = export_sessions(client, store.layout, session_dir)
    assert (result.written, result.undecodable) == (5, 1)
    # Reported by the file name a stock key maps to, never by the key (its name is a session id).
    assert result.undecodable_files == [store.layout.file_name("someone-elses-hash")]
    assert "someone-elses-hash" not in json.dumps(result.as_dict())


def test_worker_processes_give_the_same_result_as_one_process(redis_client, session_dir, tmp_path):
    store = SessionStore(redis_client, KeyLayout())
    sessions = _fill(store, 200, int(time.time()) + 600)
    for name in sorted(sessions)[:5]:
        formats.write_session_file(session_dir, name, {"stale": True}, 0)
        store.app_delete(name)
    store.app_write(store.layout.file_name("bad"), b"\xc1", 0)  # 0xc1 is never valid msgpack
    other_dir = tmp_path / "other"
    other_dir.mkdir()
    for name in sorted(sessions)[:5]:
        formats.write_session_file(str(other_dir), name, {"stale": True}, 0)
    forked = export_sessions(redis_client, store.layout, session_dir, workers=2, batch_size=20)
    single = export_sessions(redis_client, store.layout, str(other_dir), workers=1, batch_size=20)
    for name in ("scanned", "written", "removed", "undecodable", "keys_exported"):
        assert getattr(forked, name) == getattr(single, name), name
    assert (forked.written, forked.removed, forked.undecodable) == (195, 5, 1)
    assert sorted(os.listdir(session_dir)) == sorted(os.listdir(other_dir)) == sorted(sessions)[5:]


@pytest.mark.parametrize("workers", [1, 2])
def test_a_write_error_in_a_worker_stops_the_run_with_the_cause(redis_client, session_dir, monkeypatch,
                                                                 workers):
    store = SessionStore(redis_client, KeyLayout())
    _fill(store, 50, 0)

    def refuse(*_args, **_kwargs):
        raise PermissionError(13, "Permission denied", session_dir)

    monkeypatch.setattr(formats, "write_session_file", refuse)
    with pytest.raises(OSError, match="Permission denied"):
        export_sessions(redis_client, store.layout, session_dir, workers=workers, batch_size=10)


def test_a_redis_failure_in_an_export_worker_names_the_endpoint(redis_client, redis_server, session_dir,
                                                                  monkeypatch):
    store = SessionStore(redis_client, KeyLayout())
    _fill(store, 50, 0)

    def reset(*_args, **_kwargs):  # the workers' fetches fail; the scan in this process does not
        raise RedisConnectionError("Connection reset by peer")

    monkeypatch.setattr(export, "fetch_with_expiry", reset)
    with pytest.raises(RedisUnavailable, match="Connection reset by peer") as caught:
        export_sessions(redis_client, store.layout, session_dir, workers=2, batch_size=10)
    assert caught.value.endpoint == redis_server.settings().endpoint


def test_a_symlink_or_fifo_under_a_session_name_is_replaced_not_followed(redis_client, session_dir, tmp_path):
    store = SessionStore(redis_client, KeyLayout())
    target = tmp_path / "secret"
    target.write_bytes(b"do not touch")
    linked, fifo = store.layout.file_name("linked"), store.layout.file_name("fifo")
    os.symlink(target, os.path.join(session_dir, linked))
    os.mkfifo(os.path.join(session_dir, fifo))
    for name in (linked, fifo):
        store.app_write(name, formats.encode_value({"who": name}), 0)
    result = export_sessions(redis_client, store.layout, session_dir, workers=1)
    assert result.written == 2 and target.read_bytes() == b"do not touch"
    for name in (linked, fifo):
        path = os.path.join(session_dir, name)
        assert not os.path.islink(path) and formats.read_session_file(path).data == {"who": name}


def test_a_key_deleted_while_its_file_was_written(redis_client, session_dir, monkeypatch):
    """A phase-5 logout (stock key deleted, no tombstone) takes its new file with it; a hashed key
    that vanished without a tombstone (moved to its stock key, or expired) keeps its file."""
    layout = KeyLayout()
    store = SessionStore(redis_client, layout)
    redis_client.set(layout.stock_key("leaving"), formats.encode_value({"who": "leaving"}))
    moved = layout.file_name("moved")
    store.app_write(moved, formats.encode_value({"who": "moved"}), 0)
    real_write = formats.write_session_file

    def write_then_key_goes(directory, file_name, *args, **kwargs):
        path = real_write(directory, file_name, *args, **kwargs)
        if file_name == layout.file_name("leaving"):
            redis_client.delete(layout.stock_key("leaving"))
        else:
            redis_client.delete(layout.session_key(moved))
        return path

    monkeypatch.setattr(formats, "write_session_file", write_then_key_goes)
    result = export_sessions(redis_client, layout, session_dir, workers=1)
    assert (result.removed, result.vanished) == (1, 1)
    assert os.listdir(session_dir) == [moved]


def test_a_file_with_the_other_header_style_is_rewritten(redis_client, session_dir):
    """Same session, but a header the app's (older) cachelib cannot read: not 'the same for the app'."""
    store = SessionStore(redis_client, KeyLayout())
    name = store.layout.file_name("style")
    store.app_write(name, formats.encode_value({"a": 1}), 0)
    formats.write_session_file(session_dir, name, {"a": 1}, 0, header_style="struct")
    # Told "pickle" where the files say "struct": refused, both values named.
    with pytest.raises(ProfileConflict, match="header_style struct"):
        export_sessions(redis_client, store.layout, session_dir, header_style="pickle", workers=1)
    # The source profile (recorded when the directory held cachelib <= 0.6 files) says pickle:
    state_dir = os.path.join(os.path.dirname(session_dir), "state")
    profile.record(state_dir, profile.SourceProfile(session_dir, hash_name="sha256", header_style="pickle",
                                                    pickle_protocol=4))
    result = export_sessions(redis_client, store.layout, session_dir, state_dir=state_dir, workers=1)
    assert result.written == 1
    assert formats.read_session_file(os.path.join(session_dir, name)).header_style == "pickle"


def test_the_fetch_loads_its_script_again_after_redis_forgot_it(redis_client):
    redis_client.set("session:h:{k}", b"v", exat=2_000_000_000)
    redis_client.script_flush()  # as a restarted or failed-over Redis
    assert fetch_with_expiry(redis_client, ["session:h:{k}", "session:h:{gone}"]) == [
        (b"v", 2_000_000_000), (None, -2)]
