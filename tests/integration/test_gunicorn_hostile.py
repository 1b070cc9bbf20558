"""A planted session file under real gunicorn: the user gets a new session, the worker lives on.

One sync worker, so every request meets the same process: its pid before and
after the planted sessions proves no worker died (gunicorn would have started
a new one under a new pid). Phase dual_write: the phase where an expanding
session was encoded for Redis on every request.
"""

from __future__ import annotations

import dataclasses
import os

import pytest
import requests

from devstack.gunicorn_app import GunicornApp
from sessionshift import state
from sessionshift.keys import KeyLayout
from tests.support import hostile

pytestmark = [pytest.mark.integration, pytest.mark.slow]

LAYOUT = KeyLayout()
JSON = {"Accept": "application/json"}


@pytest.fixture(scope="module")
def app(tmp_path_factory, redis_server):
    settings = redis_server.settings(socket_timeout=1, connect_timeout=1, retries=0)
    directory = str(tmp_path_factory.mktemp("gunicorn-hostile"))
    config = {"SESSIONSHIFT_REDIS": dataclasses.asdict(settings), "SESSIONSHIFT_SHADOW_READ_RATE": 1.0,
              "SESSIONSHIFT_STATE_DIR": os.path.join(directory, "state")}
    phase_file = os.path.join(config["SESSIONSHIFT_STATE_DIR"], state.PHASE_FILE)
    state.write_json(phase_file, {"phase": "dual_write"})
    with GunicornApp.start(directory, config, workers=1) as app:
        app.wait_for_phase("dual_write")
        yield app


def _pid(app: GunicornApp) -> int:
    return requests.get(app.url + "/healthz", timeout=10).json()["pid"]


def _plant(app: GunicornApp, sid: str, kind: str) -> str:
    path = os.path.join(app.session_dir, LAYOUT.file_name(sid))
    if kind == "fifo":
        os.mkfifo(path)
    else:
        with open(path, "wb") as handle:
            handle.write(hostile.HOSTILE[kind]())
    return path


@pytest.mark.parametrize("kind", ["half_built_uuid", "deep_list", "shared_expansion", "big_bytearray",
                                  "cyclic_list", "fifo"])
def test_a_planted_session_gets_a_new_session_and_the_worker_lives(app, kind):
    pid = _pid(app)
    sid = f"planted-{kind}-0123456789abcdef"
    path = _plant(app, sid, kind)
    try:
        response = requests.get(app.url + "/", cookies={"session": sid}, headers=JSON, timeout=20)
        assert response.status_code == 200, response.text
        assert response.headers["X-Session-Source"] == "none"  # treated as no session
        assert response.json()["logged_in"] is False
        assert _pid(app) == pid  # the same worker answered: it did not die
        # The user carries on: logging in with the planted cookie gives a new session.
        login = requests.post(app.url + "/login", data={"username": "ann", "password": "pw"},
                              cookies={"session": sid}, headers=JSON, timeout=20)
        assert login.status_code == 200 and login.json()["logged_in"] is True
        new_sid = login.cookies.get("session")
        assert new_sid and new_sid != sid
        assert _pid(app) == pid
    finally:
        if os.path.lexists(path):
            os.unlink(path)
    metrics = requests.get(app.url + "/metrics", timeout=10).text
    assert any(line.startswith("sessionshift_session_read_errors_total{") and 'backend="file"' in line
               and not line.endswith(" 0.0") for line in metrics.splitlines()), metrics
    log = app.log_tail(400)
    assert LAYOUT.file_name(sid) in log  # reported by the hashed file name
    assert sid not in log  # never by the session id
