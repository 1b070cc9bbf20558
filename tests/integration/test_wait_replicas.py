"""wait_replicas against a real primary + replica: a write no replica confirmed is not called saved.

Found under load (tests/load/faults.py, "redis failover ... with a lagging replica"): when
the app ignored WAIT's answer, a failover to a lagging replica lost writes users had been
told were saved. Here the replica lags because it is SIGSTOPped.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time

import pytest

from devstack.redis_server import RedisServer
from sessionshift import formats
from sessionshift.journal import Journal
from sessionshift.redisconn import connect
from sessionshift.store import ReplicationShortfall, SessionStore
from tests.integration.test_interface import JSON, Env, login
from tests.support.tombstone import holds_tombstone

pytestmark = pytest.mark.integration


@pytest.fixture
def pair(tmp_path, tls_files):
    primary = RedisServer.start(str(tmp_path / "primary"), tls_files)
    replica = primary.start_replica(str(tmp_path / "replica"))
    try:
        client = connect(primary.settings())
        _wait_until(lambda: client.info("replication")["connected_slaves"] == 1)
        yield primary, replica, client
    finally:
        with contextlib.suppress(Exception):
            replica.resume()
        replica.stop()
        primary.stop()


def _wait_until(check, timeout=15.0):
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_a_confirmed_write_is_on_the_replica(pair):
    _primary, replica, client = pair
    store = SessionStore(client, wait_replicas=1, wait_timeout_ms=2000)
    store.app_write("f" * 64, b"v1", 0)
    on_replica = connect(replica.settings())
    assert on_replica.get(store.layout.session_key("f" * 64)) == b"v1"  # WAIT returned: it is there
    store.app_delete("f" * 64)
    assert holds_tombstone(on_replica, store.layout.session_key("f" * 64))


def test_a_write_the_lagging_replica_did_not_confirm_fails(pair):
    _primary, replica, client = pair
    store = SessionStore(client, wait_replicas=1, wait_timeout_ms=100)
    replica.pause()
    with pytest.raises(ReplicationShortfall, match="confirmed by 0 of 1 connected replica"):
        store.app_write("a" * 64, b"v1", 0)
    assert client.get(store.layout.session_key("a" * 64)) == b"v1"  # the primary has it, unconfirmed
    with pytest.raises(ReplicationShortfall):
        store.write_stock("sid", b"v1", 0)


def test_with_no_replica_left_writes_go_on_without_waiting(pair):
    _primary, replica, client = pair
    store = SessionStore(client, wait_replicas=1, wait_timeout_ms=100)
    replica.stop()  # as after a failover: the new primary has no replica yet
    _wait_until(lambda: client.info("replication")["connected_slaves"] == 0)
    store.app_write("b" * 64, b"v1", 0)  # nothing a failover could promote: nothing to lose
    assert store._no_replica_until > time.monotonic()  # and the next writes do not WAIT for nobody
    store.app_write("b" * 64, b"v2", 0)
    assert client.get(store.layout.session_key("b" * 64)) == b"v2"
    waits = client.info("commandstats").get("cmdstat_wait", {}).get("calls", 0)
    store._no_replica_until = time.monotonic() - 1  # a second later: INFO, not WAIT, asks again
    store.app_write("b" * 64, b"v3", 0)
    assert client.info("commandstats").get("cmdstat_wait", {}).get("calls", 0) == waits
    assert store._no_replica_until > time.monotonic()


def _post(client, text):
    return client.post("/translate", data={"input_text": text}, headers=JSON)


def _app(tmp_path, primary, phase, **extra):
    env = Env(tmp_path, primary, connect(primary.settings()))
    # A long WAIT timeout (and a socket timeout longer still): a healthy replica always
    # confirms within it, however busy the machine.
    redis_settings = dataclasses.asdict(primary.settings(socket_timeout=10, retries=0))
    app = env.app(SESSIONSHIFT_WAIT_REPLICAS=1, SESSIONSHIFT_WAIT_TIMEOUT_MS=3000,
                  SESSIONSHIFT_REDIS=redis_settings, **extra)
    env.phase(phase)
    return env, app


def test_phase_4_answers_503_for_a_write_no_replica_confirmed(pair, tmp_path):
    primary, replica, _client = pair
    _env, app = _app(tmp_path, primary, "redis_only")
    client = app.test_client()
    login(client)
    replica.pause()
    response = client.post("/translate", data={"input_text": "hello"}, headers=JSON)
    assert response.status_code == 503 and "replica" in response.text
    replica.resume()
    _wait_until(lambda: _post(client, "again").status_code == 200)  # confirmed again once it catches up


def test_phase_3_journals_an_unconfirmed_write_and_reads_the_file_until_replayed(pair, tmp_path):
    primary, replica, client = pair
    env, app = _app(tmp_path, primary, "redis_read", SESSIONSHIFT_REDIS_RETRY_AFTER=30)
    user = app.test_client()
    login(user)
    name = env.file_name(user)
    replica.pause()
    assert _post(user, "kept in the file").status_code == 200  # the file has it: saved
    assert Journal(env.state_dir, env.session_dir).pending(name)  # Redis's copy is unconfirmed
    # A failover now would bring back the older Redis value; the file must win until the replay.
    older = formats.encode_value({"user": "alice", "history": []})
    client.set(env.layout.session_key(name), older)
    page = user.get("/", headers=JSON)  # its journal replay meets the same lagging replica
    assert page.status_code == 200 and "kept in the file" in page.text
    assert app.session_interface.core._down_until < time.monotonic()  # Redis answered: keep asking it
    replica.resume()
    _wait_until(lambda: user.get("/", headers=JSON).status_code == 200
                and b"kept in the file" in (client.get(env.layout.session_key(name)) or b""))


def test_a_wait_longer_than_the_socket_timeout_is_refused_at_start(redis_server, redis_client, tmp_path):
    env = Env(tmp_path, redis_server, redis_client)
    with pytest.raises(ValueError, match="SESSIONSHIFT_WAIT_TIMEOUT_MS=500 must be shorter"):
        env.app(SESSIONSHIFT_WAIT_REPLICAS=1, SESSIONSHIFT_WAIT_TIMEOUT_MS=500)  # socket timeout 0.3 s
