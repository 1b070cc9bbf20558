"""The demo app under real gunicorn (3 workers) on a real TLS redis-server, through every flip.

One app server for the module. Users are real HTTP clients with a cookie jar
(requests.Session); each keeps its own write counter and checks after every
request that the session holds exactly what it last wrote, so a lost write or
a lost session shows up as a counter mismatch.
"""

from __future__ import annotations

import contextlib
import dataclasses
import glob
import os
import shutil
import signal
import threading
import time

import pytest
import requests

from devstack.gunicorn_app import GunicornApp
from sessionshift import formats, phasefile, state
from sessionshift.export import export_sessions
from sessionshift.journal import Journal, replay_host
from sessionshift.keys import KeyLayout
from sessionshift.metrics import gate_summary
from sessionshift.phases import Phase, Transition
from sessionshift.redisconn import connect
from sessionshift.store import SessionStore

pytestmark = [pytest.mark.integration, pytest.mark.slow]

JSON = {"Accept": "application/json"}
LAYOUT = KeyLayout()
WORKERS = 3


@pytest.fixture(scope="module")
def app_server(tmp_path_factory, redis_server):
    settings = redis_server.settings(socket_timeout=0.3, connect_timeout=0.3, retries=0)
    config = {
        "SESSIONSHIFT_REDIS": dataclasses.asdict(settings),
        "SESSIONSHIFT_EMERGENCY_FILE_FALLBACK": True,
        "SESSIONSHIFT_MOVE_TO_STOCK_KEYS": True,
        "SESSIONSHIFT_SHADOW_READ_RATE": 0.2,
        "SESSIONSHIFT_REPLAY_INTERVAL": 0.5,
        "SESSIONSHIFT_REDIS_RETRY_AFTER": 0.5,
    }
    with GunicornApp.start(str(tmp_path_factory.mktemp("gunicorn")), config, workers=WORKERS) as app:
        yield app


@pytest.fixture
def app(app_server, redis_client):
    """The shared server, back in phase 1 with an empty Redis, journal and session directory."""
    state.write_json(os.path.join(app_server.state_dir, state.PHASE_FILE), {"phase": "file"})
    for directory in (app_server.session_dir, os.path.join(app_server.state_dir, state.JOURNAL_DIR)):
        shutil.rmtree(directory, ignore_errors=True)
        os.makedirs(directory, exist_ok=True)  # a live worker may recreate it first
    app_server.wait_for_phase("file")
    return app_server


@pytest.fixture
def store(redis_client):
    return SessionStore(redis_client, LAYOUT)


class User:
    def __init__(self, url: str, name: str):
        self.url, self.name = url, name
        self.http = requests.Session()
        self.writes = 0
        self.errors: list[str] = []
        self.statuses: dict[int, int] = {}

    @property
    def sid(self) -> str:
        return self.http.cookies["session"]

    @property
    def file_name(self) -> str:
        return LAYOUT.file_name(self.sid)

    def _call(self, method: str, path: str, **kwargs) -> requests.Response | None:
        try:
            response = self.http.request(method, self.url + path, headers=JSON, timeout=10, **kwargs)
        except requests.RequestException as exc:
            self.errors.append(f"{self.name} {path}: {exc}")
            return None
        self.statuses[response.status_code] = self.statuses.get(response.status_code, 0) + 1
        if response.status_code != 200:
            self.errors.append(f"{self.name} {path}: HTTP {response.status_code} {response.text[:200]}")
            return None
        return response

    def _expect(self, response, where: str) -> None:
        if response is None:
            return
        body = response.json()
        if body.get("user") != self.name or body.get("writes") != self.writes:
            self.errors.append(f"{self.name} {where} in {response.headers.get('X-Session-Phase')}: "
                               f"expected writes={self.writes}, got user={body.get('user')} "
                               f"writes={body.get('writes')}")

    def login(self) -> None:
        self.writes = 1
        self._expect(self._call("POST", "/login", data={"username": self.name, "password": "pw"}), "login")

    def write(self) -> None:
        response = self._call("POST", "/translate", data={"input_text": f"text {self.writes}"})
        if response is not None:
            self.writes += 1
        self._expect(response, "translate")

    def check(self) -> requests.Response | None:
        response = self._call("GET", "/")
        self._expect(response, "read")
        return response


def phases_seen(app: GunicornApp, requests_count: int = 12, all_workers: bool = False) -> dict[str, set[int]]:
    """{phase: worker pids} over fresh connections (spread over the workers by the kernel).

    With ``all_workers``, keeps asking (up to 300 requests) until every worker has answered.
    """
    seen: dict[str, set[int]] = {}
    for count in range(300):
        response = requests.get(app.url + "/healthz", timeout=5, headers={"Connection": "close"})
        seen.setdefault(response.headers["X-Session-Phase"], set()).add(response.json()["pid"])
        pids = set().union(*seen.values())
        if count + 1 >= requests_count and (not all_workers or len(pids) >= WORKERS):
            break
    return seen


def flip(app: GunicornApp, target: str, redis_client) -> None:
    """One step, as the playbooks do it (export first when leaving phase 4+ for 3 or lower)."""
    if Transition(phasefile.read_phase(app.state_dir).phase, Phase.parse(target)).needs_export:
        result = export_sessions(redis_client, LAYOUT, app.session_dir, state_dir=app.state_dir)
        assert (result.undecodable, result.unstable) == (0, 0)
    phasefile.set_phase(app.state_dir, target, by="test")


@contextlib.contextmanager
def traffic(users: list[User], think: float = 0.02):
    stop = threading.Event()

    def run(user: User) -> None:
        while not stop.is_set():
            user.write()
            user.check()
            time.sleep(think)

    threads = [threading.Thread(target=run, args=(user,), daemon=True) for user in users]
    for thread in threads:
        thread.start()
    try:
        yield
    finally:
        stop.set()
        for thread in threads:
            thread.join(30)


def all_errors(users: list[User]) -> list[str]:
    return [error for user in users for error in user.errors]


def assert_file_and_redis_agree(app: GunicornApp, store: SessionStore, users: list[User]) -> None:
    for user in users:
        stored = formats.read_session_file(os.path.join(app.session_dir, user.file_name))
        raw = store.get(user.file_name)
        assert raw is not None, f"{user.name}: not in Redis"
        assert formats.same_for_app(stored.data, raw), f"{user.name}: file and Redis differ"


# ----------------------------------------------------------------------------- tests


def test_a_flip_reaches_every_worker_within_two_seconds(app, redis_client):
    assert set(phases_seen(app, all_workers=True)) == {"file"}
    flip(app, "dual_write", redis_client)
    time.sleep(2.0)  # the interface stats the phase file at most once a second
    seen = phases_seen(app, all_workers=True)
    assert set(seen) == {"dual_write"}, seen
    assert len(seen["dual_write"]) == WORKERS  # every worker answered, all in the new phase


def test_fifty_users_keep_every_write_through_every_flip_and_rollback(app, redis_client, store):
    users = [User(app.url, f"user{i}") for i in range(50)]
    idle = [User(app.url, f"idle{i}") for i in range(10)]  # logged in before phase 2, back in phase 4
    for user in users + idle:
        user.login()
    assert all_errors(users + idle) == []
    sequence = ["dual_write", "redis_read", "redis_only", "redis", "redis_only", "redis_read",
                "dual_write", "file"]
    idle_checked = False
    with traffic(users, think=0.1):
        for target in sequence:
            time.sleep(0.5)  # traffic in the old phase, then the flip under traffic
            flip(app, target, redis_client)
            app.wait_for_phase(target)
            if target == "redis_only" and not idle_checked:
                idle_checked = True
                for user in idle:
                    response = user.check()
                    assert response is not None and response.headers["X-Session-Source"] == "legacy_file"
                    assert user.check().headers["X-Session-Source"] == "redis"  # promoted
    for user in users + idle:
        user.check()
    assert all_errors(users + idle) == []
    assert sum(user.writes for user in users) > 50 * len(sequence)  # real traffic at every flip
    summary = gate_summary(requests.get(app.url + "/metrics", timeout=5).text)
    assert summary["server_errors"] == 0 and summary["write_errors_total"] == 0


def test_redis_outages_in_each_phase(app, redis_server, redis_client, store):
    users = [User(app.url, f"user{i}") for i in range(10)]
    legacy = [User(app.url, f"legacy{i}") for i in range(3)]  # only in files until phase 4
    for user in users + legacy:
        user.login()

    def outage(kill: bool) -> None:
        with traffic(users):
            time.sleep(0.3)
            if kill:
                redis_server.kill()
                time.sleep(1.0)
                redis_server.launch()
            else:
                redis_server.pause()
                time.sleep(1.5)
                redis_server.resume()
            time.sleep(0.5)

    # Phase 1 never touches Redis; phases 2 and 3 journal and never fail a request.
    for phase in ("file", "dual_write", "redis_read"):
        if phase != "file":
            flip(app, phase, redis_client)
            app.wait_for_phase(phase)
        outage(kill=False)
        outage(kill=True)  # Redis comes back empty: in phases 1-3 the files are the truth
        assert all_errors(users) == [], phase
        for user in users:  # one more write each, then the journal is drained
            user.write()
        result = replay_host(app.state_dir, app.session_dir, redis_server.settings())
        assert result.failed == 0 and Journal(app.state_dir, app.session_dir).depth() == 0
        if phase != "file":
            assert_file_and_redis_agree(app, store, users)
    fresh = connect(redis_server.settings())
    store = SessionStore(fresh, LAYOUT)

    # Phase 4 with emergency file fallback: sessions that have a file are served from
    # it and written to it; sessions that live only in Redis get a clear 503 (never a
    # new sid, never an older copy); new logins work.
    flip(app, "redis_only", fresh)
    app.wait_for_phase("redis_only")
    users[0].write()  # now only in Redis: its legacy file is retired
    assert not os.path.exists(os.path.join(app.session_dir, users[0].file_name))
    redis_server.pause()
    try:
        time.sleep(0.1)
        for user in legacy:
            user.write()
        newcomer = User(app.url, "newcomer")
        newcomer.login()
        refused = requests.get(app.url + "/", headers=JSON, cookies={"session": users[0].sid}, timeout=10)
    finally:
        redis_server.resume()
    assert all_errors([*legacy, newcomer]) == []
    assert refused.status_code == 503 and "session store unavailable in phase redis_only" in refused.text
    journal = Journal(app.state_dir, app.session_dir)
    assert journal.depth() == len(legacy) + 1
    summary = gate_summary(requests.get(app.url + "/metrics", timeout=5).text)
    assert summary["journal_depth"] == len(legacy) + 1 and summary["emergency_file_writes"] >= len(legacy) + 1
    time.sleep(0.6)  # past the circuit breaker's pause
    for user in [*users, *legacy, newcomer]:
        user.check()  # the journal entry of a session is replayed before it is read from Redis
    assert all_errors([*users, *legacy, newcomer]) == []
    assert journal.depth() == 0
    for user in [*legacy, newcomer]:
        assert formats.decode_value(store.get(user.file_name))["writes"] == user.writes
        assert not os.path.exists(os.path.join(app.session_dir, user.file_name))  # emergency copy retired
    fresh.close()


def test_a_dead_workers_live_gauges_leave_the_metrics(app):
    victim = requests.get(app.url + "/healthz", timeout=5, headers={"Connection": "close"}).json()["pid"]
    metrics_dir = os.path.join(app.directory, "prometheus")
    pattern = os.path.join(metrics_dir, f"gauge_live*_{victim}.db")
    assert glob.glob(pattern)  # the worker's phase gauge
    os.kill(victim, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while glob.glob(pattern) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not glob.glob(pattern)  # gunicorn's child_exit hook marked it dead
    app.wait_for_phase("file")  # the master started a new worker
