"""The phased session interface in-process (Flask test client) against a real redis-server.

Each test drives the demo app through phases by rewriting the phase file, the
way the session_phase module does; the interface re-reads it on the next
request (check interval 0 here). The same behaviour under real gunicorn
workers is in test_gunicorn_app.py.
"""

from __future__ import annotations

import dataclasses
import os
import pickle
import time

import pytest
from flask import Flask, session
from flask_session import Session as StockSession

from examples.translate_app.app import create_app
from sessionshift import formats, metrics, phasefile, state
from sessionshift.export import export_sessions
from sessionshift.journal import Journal
from sessionshift.keys import KeyLayout
from sessionshift.phases import Phase, Transition
from sessionshift.store import CopyResult, SessionStore
from tests.support.tombstone import holds_tombstone

pytestmark = pytest.mark.integration

JSON = {"Accept": "application/json"}


@pytest.fixture
def env(tmp_path, redis_server, redis_client):
    return Env(tmp_path, redis_server, redis_client)


class Env:
    def __init__(self, tmp_path, redis_server, redis_client):
        self.tmp_path = tmp_path
        self.server = redis_server
        self.redis = redis_client
        self.session_dir = str(tmp_path / "sessions")
        self.state_dir = str(tmp_path / "state")
        self.layout = KeyLayout()
        self.store = SessionStore(redis_client, self.layout)

    def app(self, **extra) -> Flask:
        settings = self.server.settings(socket_timeout=0.3, connect_timeout=0.3, retries=0)
        config = {
            "SECRET_KEY": "k", "TESTING": True,
            "SESSION_FILE_DIR": self.session_dir, "SESSIONSHIFT_STATE_DIR": self.state_dir,
            "SESSIONSHIFT_REDIS": dataclasses.asdict(settings),
            "SESSIONSHIFT_PHASE_CHECK_INTERVAL": 0, "SESSIONSHIFT_REDIS_RETRY_AFTER": 0,
            **extra,
        }
        return create_app(config)

    def phase(self, target: str) -> None:
        if Transition(phasefile.read_phase(self.state_dir).phase, Phase.parse(target)).needs_export:
            result = export_sessions(self.redis, self.layout, self.session_dir, state_dir=self.state_dir)
            assert result.undecodable == 0 and result.unstable == 0
        phasefile.set_phase(self.state_dir, target, by="test", force=True)

    def file_name(self, client) -> str:
        return self.layout.file_name(client.get_cookie("session").value)

    def file_path(self, client) -> str:
        return os.path.join(self.session_dir, self.file_name(client))


def login(client, user="alice"):
    response = client.post("/login", data={"username": user, "password": "pw"}, headers=JSON)
    assert response.status_code == 200, response.text
    return response


def translate(client, text):
    response = client.post("/translate", data={"input_text": text}, headers=JSON)
    assert response.status_code == 200, response.text
    return response.json


def view(client):
    return client.get("/", headers=JSON)


def test_phase_1_files_are_exactly_flask_sessions_filesystem_backend(env):
    stock = Flask("stock")
    stock.config.update(SECRET_KEY="k", SESSION_TYPE="filesystem", SESSION_FILE_DIR=env.session_dir)
    with pytest.warns(DeprecationWarning):
        StockSession(stock)

    @stock.route("/stock")
    def stock_view():
        from flask import session
        session.setdefault("seen", []).append("stock")
        session.modified = True
        return {"seen": session["seen"], "user": session.get("user")}

    ours = env.app().test_client()
    login(ours)
    theirs = stock.test_client()
    theirs.set_cookie("session", ours.get_cookie("session").value)
    assert theirs.get("/stock").json == {"seen": ["stock"], "user": "alice"}  # stock reads our file
    ours.set_cookie("session", theirs.get_cookie("session").value)
    assert view(ours).json["user"] == "alice"  # and we read theirs, same sid
    stored = formats.read_session_file(env.file_path(ours))
    assert stored.header_style == "struct" and stored.data["seen"] == ["stock"]
    assert stored.expiry == pytest.approx(time.time() + 86400, abs=5)
    assert env.redis.dbsize() == 0  # phase 1 never touches Redis


def test_a_user_keeps_the_session_through_every_flip_and_rollback(env):
    app = env.app()
    active, idle = app.test_client(), app.test_client()
    login(active, "active")
    login(idle, "idle")  # created in phase 1, untouched until phase 4
    writes = 1
    for phase in ("dual_write", "redis_read", "redis_only", "redis", "redis_only", "redis_read",
                  "dual_write", "file"):
        env.phase(phase)
        if phase == "redis_only" and idle is not None:
            response = view(idle)
            assert response.headers["X-Session-Source"] == "legacy_file"
            assert response.json["user"] == "idle"
            assert view(idle).headers["X-Session-Source"] == "redis"  # promoted
            idle = None
        writes += 1
        result = translate(active, f"in {phase}")
        assert result["writes"] == writes and result["history"][-1]["input"] == f"in {phase}"
        response = view(active)
        assert response.headers["X-Session-Phase"] == phase
        assert response.json["user"] == "active" and response.json["writes"] == writes


def test_redis_miss_in_phase_3_checks_the_file_and_promotes_it(env):
    client = env.app().test_client()
    login(client)
    sid = client.get_cookie("session").value
    env.phase("dual_write")
    env.phase("redis_read")
    assert env.store.get(env.file_name(client)) is None  # never written to Redis
    response = view(client)
    assert response.json["user"] == "alice" and response.headers["X-Session-Source"] == "file"
    assert client.get_cookie("session").value == sid  # no new sid on a Redis miss
    assert formats.decode_value(env.store.get(env.file_name(client)))["user"] == "alice"


def test_a_session_only_the_backfill_copied_is_found_in_redis(env):
    client = env.app().test_client()
    login(client)
    name = env.file_name(client)
    stored = formats.read_session_file(env.file_path(client))
    env.phase("dual_write")
    # The backfill copies it; the user is idle until phase 3, then 4.
    copied = env.store.copy_if_absent(name, formats.encode_value(stored.data), stored.expiry)
    assert copied is CopyResult.WRITTEN
    env.phase("redis_read")
    response = view(client)
    assert response.headers["X-Session-Source"] == "redis" and response.json["user"] == "alice"
    env.phase("redis_only")
    os.unlink(env.file_path(client))  # prove phase 4 serves it from Redis alone
    assert view(client).json["user"] == "alice"


@pytest.mark.parametrize("phase", ["dual_write", "redis_read"])
def test_logout_during_a_backfill_stays_logged_out(env, phase):
    client = env.app().test_client()
    login(client)
    sid, name = client.get_cookie("session").value, env.file_name(client)
    stored = formats.read_session_file(env.file_path(client))  # what the backfill read
    env.phase("dual_write")
    if phase == "redis_read":
        env.phase("redis_read")
    client.get("/logout", headers=JSON)
    # The backfill's copy lands after the logout: the tombstone refuses it.
    assert env.store.copy_if_absent(name, formats.encode_value(stored.data),
                                    stored.expiry) is CopyResult.TOMBSTONED
    assert env.store.get(name) is None and not os.path.exists(os.path.join(env.session_dir, name))
    client.set_cookie("session", sid)  # an old cookie replayed
    assert view(client).json["logged_in"] is False


@pytest.mark.parametrize("phase", ["redis_read", "redis_only"])
def test_a_logout_between_a_refused_promotion_and_its_read_back_stays_logged_out(env, monkeypatch, phase):
    client = env.app().test_client()
    login(client)  # in phase 1: the session is only in its file
    name = env.file_name(client)
    for step in ("dual_write", "redis_read", "redis_only")[:2 if phase == "redis_read" else 3]:
        env.phase(step)
    copy = SessionStore.copy_if_absent

    def raced(store, file_name, value, expiry, now=None):
        env.store.app_write(file_name, value, expiry)  # another worker saved it first
        outcome = copy(store, file_name, value, expiry, now)
        env.store.app_delete(file_name)  # then the user logged out there, before this worker read it back
        return outcome

    monkeypatch.setattr(SessionStore, "copy_if_absent", raced)
    response = client.post("/translate", data={"input_text": "after the logout"}, headers=JSON)
    assert response.status_code == 401 and response.json["logged_in"] is False
    assert holds_tombstone(env.redis, env.layout.session_key(name))  # not written back over it


def test_phase_4_write_retires_the_legacy_file_so_it_is_never_served_again(env):
    client = env.app().test_client()
    login(client)
    sid = client.get_cookie("session").value
    for phase in ("dual_write", "redis_read", "redis_only"):
        env.phase(phase)
    translate(client, "phase 4 write")
    assert not os.path.exists(env.file_path(client))
    env.redis.delete(env.layout.session_key(env.file_name(client)))  # eviction / lost failover write
    client.set_cookie("session", sid)
    assert view(client).json["logged_in"] is False  # not revived from an older file


def test_redis_error_is_not_a_miss(env):
    app = env.app()
    client = app.test_client()
    login(client)
    sid = client.get_cookie("session").value
    for phase in ("dual_write", "redis_read", "redis_only"):
        env.phase(phase)
    translate(client, "only in redis")  # the legacy file is gone now
    env.server.pause()
    try:
        response = view(client)
        assert response.status_code == 503
        assert "session store unavailable in phase redis_only" in response.text
        assert client.get("/healthz").status_code == 200
    finally:
        env.server.resume()
    assert client.get_cookie("session").value == sid
    assert view(client).json["history"][-1]["input"] == "only in redis"


def test_phase_4_without_emergency_fallback_refuses_writes_clearly(env):
    client = env.app().test_client()
    for phase in ("dual_write", "redis_read", "redis_only"):
        env.phase(phase)
    env.server.pause()
    try:
        response = client.post("/login", data={"username": "u", "password": "p"}, headers=JSON)
    finally:
        env.server.resume()
    assert response.status_code == 503
    assert "session not saved in phase redis_only: Redis" in response.text
    assert response.headers["Retry-After"] == "5"


def test_phase_4_emergency_fallback_serves_and_replays(env):
    client = env.app(SESSIONSHIFT_EMERGENCY_FILE_FALLBACK=True).test_client()
    for phase in ("dual_write", "redis_read", "redis_only"):
        env.phase(phase)
    env.server.pause()
    try:
        login(client, "during-outage")
        assert translate(client, "outage")["writes"] == 2
        assert view(client).headers["X-Session-Source"] == "emergency_file"
    finally:
        env.server.resume()
    name = env.file_name(client)
    assert Journal(env.state_dir, env.session_dir).pending(name)
    # The next read replays the journal entry first, so Redis is not older than the file.
    response = view(client)
    assert response.json["writes"] == 2 and response.headers["X-Session-Source"] == "redis"
    assert not os.path.exists(os.path.join(env.session_dir, name))  # emergency copy retired
    assert formats.decode_value(env.store.get(name))["writes"] == 2


@pytest.mark.parametrize("phase", ["dual_write", "redis_read"])
def test_redis_outage_in_phases_2_and_3_is_journaled_and_replayed(env, phase):
    app = env.app(SESSIONSHIFT_REPLAY_INTERVAL=0)
    client = app.test_client()
    login(client)
    env.phase("dual_write")
    if phase == "redis_read":
        env.phase("redis_read")
    env.server.pause()
    try:
        for i in range(3):
            assert translate(client, f"outage {i}")["writes"] == 2 + i
        assert view(client).status_code == 200
    finally:
        env.server.resume()
    name = env.file_name(client)
    journal = Journal(env.state_dir, env.session_dir)
    assert journal.pending(name)
    result = app.session_interface.replay_journal()
    assert result.replayed == 1 and result.remaining == 0
    stored = formats.read_session_file(os.path.join(env.session_dir, name))
    assert formats.same_for_app(stored.data, env.store.get(name))
    assert view(client).json["writes"] == 4


def test_phase_5_moves_sessions_to_stock_keys_and_back_on_rollback(env):
    client = env.app(SESSIONSHIFT_MOVE_TO_STOCK_KEYS=True).test_client()
    login(client)
    sid = client.get_cookie("session").value
    for phase in ("dual_write", "redis_read", "redis_only", "redis"):
        env.phase(phase)
        translate(client, phase)
    assert view(client).headers["X-Session-Source"] == "stock"  # moved by the first phase-5 request
    stock = env.redis.get(env.layout.stock_key(sid))
    assert formats.decode_value(stock, "msgpack")["user"] == "alice"  # stock Flask-Session 0.8's format
    assert env.store.get(env.file_name(client)) is None  # moved, not copied
    assert view(client).headers["X-Session-Source"] == "stock"
    env.phase("redis_only")
    assert view(client).json["user"] == "alice"
    assert formats.decode_value(env.store.get(env.file_name(client)))["user"] == "alice"  # moved back
    translate(client, "phase 4 again")
    env.phase("redis")
    response = view(client)  # the hashed key (newer) wins over the stale stock copy
    assert response.headers["X-Session-Source"] == "redis" and response.json["history"][-1]["input"] == (
        "phase 4 again")
    client.get("/logout", headers=JSON)
    assert env.redis.get(env.layout.stock_key(sid)) is None
    assert env.store.get(env.layout.file_name(sid)) is None
    assert holds_tombstone(env.redis, env.layout.session_key(env.layout.file_name(sid)))
    client.set_cookie("session", sid)  # the logged-out sid again: the tombstone is never moved
    assert view(client).json["logged_in"] is False
    assert env.redis.get(env.layout.stock_key(sid)) is None


def test_phase_5_serves_a_stock_key_that_stock_flask_session_wrote_as_json(env):
    """An app that ran stock Flask-Session 0.8 with SESSION_SERIALIZATION_FORMAT = "json" comes
    back to the interface in phase 5: its JSON stock keys are its users' sessions."""
    stock = Flask("stock")
    stock.config.update(SECRET_KEY="k", SESSION_TYPE="redis", SESSION_REDIS=env.redis,
                        SESSION_SERIALIZATION_FORMAT="json")

    @stock.post("/login")
    def stock_login():
        session["user"] = "alice"
        return "ok"

    StockSession(stock)
    stock_client = stock.test_client()
    stock_client.post("/login")
    sid = stock_client.get_cookie("session").value
    assert env.redis.get(env.layout.stock_key(sid)).startswith(b"{")  # JSON, as that app wrote it
    phasefile.set_phase(env.state_dir, "redis", by="test", force=True)

    client = env.app(SESSIONSHIFT_MOVE_TO_STOCK_KEYS=True, SESSION_SERIALIZATION_FORMAT="json").test_client()
    client.set_cookie("session", sid)
    response = view(client)
    assert response.json["user"] == "alice" and response.headers["X-Session-Source"] == "stock"


def test_phase_2_shadow_reads_count_mismatches_and_serve_the_file(env):
    client = env.app(SESSIONSHIFT_SHADOW_READ_RATE=1.0).test_client()
    login(client)
    env.phase("dual_write")
    translate(client, "both")
    before = metrics.SHADOW_MISMATCHES._value.get()
    env.store.app_write(env.file_name(client), formats.encode_value({"user": "mallory"}), 0)
    assert view(client).json["user"] == "alice"
    assert metrics.SHADOW_MISMATCHES._value.get() == before + 1


def test_corrupt_phase_file_keeps_the_last_phase(env):
    client = env.app().test_client()
    env.phase("dual_write")
    login(client)
    before = metrics.PHASE_FILE_ERRORS._value.get()
    with open(os.path.join(env.state_dir, state.PHASE_FILE), "w") as handle:
        handle.write("{broken")
    response = view(client)
    assert response.status_code == 200 and response.headers["X-Session-Phase"] == "dual_write"
    assert metrics.PHASE_FILE_ERRORS._value.get() == before + 1


def test_a_hostile_session_file_is_never_unpickled(env, tmp_path):
    client = env.app().test_client()
    login(client)
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    with open(env.file_path(client), "wb") as handle:
        handle.write(formats.encode_cachelib({}, 0)[:4] + pickle.dumps(Exploit()))
    assert view(client).json["logged_in"] is False
    assert not marker.exists()


def test_pickle_serializer_and_signed_cookies(env):
    client = env.app(SESSION_SERIALIZATION_FORMAT="pickle", SESSION_USE_SIGNER=True).test_client()
    login(client)
    signed = client.get_cookie("session").value
    assert "." in signed
    sid = signed.rsplit(".", 1)[0]
    env.phase("dual_write")
    translate(client, "pickled")
    raw = env.store.get(env.layout.file_name(sid))
    assert formats.decode_value(raw, "pickle")["writes"] == 2
    client.set_cookie("session", sid + ".forged")
    assert view(client).json["logged_in"] is False


def test_md5_file_names_for_apps_on_cachelib_before_0_17(env):
    import hashlib

    client = env.app(SESSIONSHIFT_HASH_METHOD="md5", SESSION_KEY_PREFIX="app:").test_client()
    login(client)
    sid = client.get_cookie("session").value
    name = hashlib.md5(f"app:{sid}".encode()).hexdigest()
    assert os.listdir(env.session_dir) == [name]
    env.phase("dual_write")
    translate(client, "md5")
    assert env.redis.get(f"app:h:{{{name}}}") is not None


def test_wait_replicas_applies_from_phase_3_on(env):
    """Phase 3 reads Redis first, so its writes wait too (tests/integration/test_wait_replicas.py)."""
    client = env.app(SESSIONSHIFT_WAIT_REPLICAS=1).test_client()
    login(client)
    env.redis.config_resetstat()

    def waits() -> int:
        return env.redis.info("commandstats").get("cmdstat_wait", {}).get("calls", 0)

    env.phase("dual_write")
    translate(client, "phase 2")
    assert waits() == 0  # phase 2 reads the files: Redis's copy needs no confirmation
    env.phase("redis_read")
    translate(client, "phase 3")
    assert waits() == 1


def test_login_regenerates_the_sid_and_forgets_the_old_one(env):
    client = env.app().test_client()
    login(client, "first")
    old_sid = client.get_cookie("session").value
    env.phase("dual_write")
    login(client, "second")
    new_sid = client.get_cookie("session").value
    assert new_sid != old_sid
    assert not os.path.exists(os.path.join(env.session_dir, env.layout.file_name(old_sid)))
    client.set_cookie("session", old_sid)
    assert view(client).json["logged_in"] is False


def test_a_failed_file_write_is_a_clear_500_not_a_silent_loss(env, monkeypatch):
    client = env.app().test_client()
    login(client)

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(formats, "write_session_file", disk_full)
    response = client.post("/translate", data={"input_text": "lost?"}, headers=JSON)
    assert response.status_code == 500
    assert "session could not be saved to" in response.text and "No space left" in response.text
    monkeypatch.undo()
    assert view(client).json["writes"] == 1  # the earlier session is intact


def test_a_session_redis_cannot_encode_stays_in_its_file_and_is_not_served_stale(env):
    app = env.app(SESSIONSHIFT_SERIALIZER="msgpack")  # the opt-in, lossy format

    @app.post("/odd")
    def odd():
        from flask import session
        session["odd"] = complex(1, 2)  # pickles (the file) but has no msgpack form
        return {"ok": True}

    client = app.test_client()
    login(client)
    env.phase("dual_write")
    env.phase("redis_read")
    translate(client, "before")
    assert env.store.get(env.file_name(client)) is not None
    assert client.post("/odd", headers=JSON).status_code == 200  # never fails the request in phase 3
    assert env.store.get(env.file_name(client)) is None  # the older Redis copy is dropped
    response = view(client)
    assert response.headers["X-Session-Source"] == "file" and response.json["writes"] == 2


def test_a_worker_starting_with_a_corrupt_phase_file_refuses_instead_of_guessing(env):
    os.makedirs(env.state_dir, exist_ok=True)
    with open(os.path.join(env.state_dir, state.PHASE_FILE), "w") as handle:
        handle.write("{broken")
    client = env.app().test_client()
    response = client.post("/login", data={"username": "u", "password": "p"}, headers=JSON)
    assert response.status_code == 503 and "phase file" in response.text and "session_phase" in response.text
    assert response.headers["X-Session-Phase"] == "unknown"
    assert client.get("/healthz").status_code == 200
    os.unlink(os.path.join(env.state_dir, state.PHASE_FILE))  # what the error message advises
    phasefile.set_phase(env.state_dir, "dual_write", by="test", force=True)
    assert login(client).headers["X-Session-Phase"] == "dual_write"
