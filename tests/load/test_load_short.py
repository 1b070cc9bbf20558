"""The short load test `make test` runs: 20 locust users for 15 s against one gunicorn app.

The locustfile's users check on every answer that their session still holds what they
last wrote; here the host is in phase 3 (reads from Redis, writes to both), where both
stores are in play. The full profiles (50/200/500 users) run with `make load`.
"""

from __future__ import annotations

import json

import pytest

from tests.load.apps import Fleet
from tests.load.runner import LocustRun, read_events, window_stats

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_twenty_users_for_fifteen_seconds_lose_nothing(tmp_path):
    with Fleet.start(str(tmp_path / "fleet"), hosts=1, workers=2, phase="redis_read") as fleet:
        run = LocustRun.start(fleet.urls, users=20, spawn_rate=20, run_time=15, out_dir=str(tmp_path / "out"),
                              name="short", wait="0.1,0.5")
        returncode = run.wait(timeout=60)
    assert returncode == 0, run.log_tail()
    checks = run.checks()
    events = read_events(run.events_file)
    stats = window_stats(events)
    assert {event.phase for event in events} == {"redis_read"}  # no worker lagged in an older phase
    assert checks["checked"] > 200 and checks["logins"] >= 20, checks
    assert (checks["session_lost"], checks["write_lost"], checks["errors"]) == (0, 0, 0), checks
    assert (stats["sessions_lost"], stats["writes_lost"], stats["errors"]) == (0, 0, 0), stats
    with open(run.prefix + ".json") as handle:  # locust's own report agrees: no failure at all
        report = json.load(handle)
    assert sum(entry["num_failures"] for entry in report) == 0
    assert sum(entry["num_requests"] for entry in report) == stats["requests"]
