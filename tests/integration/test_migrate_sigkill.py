"""SIGKILL in the middle of a backfill, then a rerun: exactly the expected keys, none overwritten."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from sessionshift import state
from sessionshift.keys import KeyLayout
from sessionshift.store import SessionStore
from tests.integration.test_migrate import assert_copied, make_corpus

pytestmark = [pytest.mark.integration, pytest.mark.slow]

LAYOUT = KeyLayout()

RUNNER = """
import json, sys
from sessionshift.migrate import MigrateConfig, migrate
from sessionshift.redisconn import RedisSettings
settings = RedisSettings(**json.loads(sys.stdin.read()))
config = MigrateConfig(session_dir=sys.argv[1], state_dir=sys.argv[2], batch_size=20, workers=2)
result = migrate(settings, config)
print(json.dumps(result.as_dict()))
"""


def _run(settings, session_dir, state_dir) -> subprocess.Popen:
    values = {"url": settings.url, "username": settings.username, "password": settings.password,
              "ca_file": settings.ca_file}
    process = subprocess.Popen([sys.executable, "-c", RUNNER, session_dir, state_dir],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                               start_new_session=True)
    process.stdin.write(json.dumps(values))  # the password never goes on a command line
    process.stdin.close()
    return process


def test_sigkill_then_rerun_gives_exactly_the_expected_keys(redis_client, redis_server, tmp_path):
    session_dir, state_dir = str(tmp_path / "sessions"), str(tmp_path / "state")
    corpus = make_corpus(session_dir, 20_000)
    store = SessionStore(redis_client, LAYOUT)
    newer = list(corpus)[::400]  # the app already wrote these: they must stay as they are
    for name in newer:
        store.app_write(name, b"newer-app-value", corpus[name][1] + 777)

    first = _run(redis_server.settings(), session_dir, state_dir)
    try:
        # Kill it mid-way: each worker's group of shares is one scan, recorded as done at its end.
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert first.poll() is None, "migrate ended before it could be killed"
            if redis_client.dbsize() >= len(corpus) // 3:
                break
            time.sleep(0.005)
        os.kill(first.pid, signal.SIGKILL)
        assert first.wait(10) == -signal.SIGKILL
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(first.pid, signal.SIGKILL)  # its forked workers, if still there
    record = state.read_json(os.path.join(state_dir, state.MIGRATE_FILE))
    assert record["status"] == "running" and not record["complete"]
    written_before = redis_client.dbsize()
    assert written_before < len(corpus)

    second = _run(redis_server.settings(), session_dir, state_dir)
    output = second.stdout.read()
    assert second.wait(120) == 0
    result = json.loads(output)
    assert result["complete"]
    assert result["resumed"] and result["shares_skipped"] == record["shares_done"]
    assert redis_client.dbsize() == len(corpus)
    assert_copied(redis_client, corpus, except_names=set(newer))
    for name in newer:
        key = LAYOUT.session_key(name)
        assert redis_client.get(key) == b"newer-app-value"
        assert redis_client.expiretime(key) == corpus[name][1] + 777
