"""The quick faults under load (the full set, with a 30 s outage, runs with `make load`).

Ten locust users on two app hosts check every answer; Redis is paused in phase 3 (the
files still answer: no 5xx) and killed in phase 4 (a clear 503 while it is down, as the
phase design says); either way nothing any user wrote is lost once Redis is back. The
primary also fails over in phase 3: killed, its replica promoted and the endpoint moved to
it; the files answer meanwhile and the apps then use the promoted replica. In phase 4 with
``SESSIONSHIFT_WAIT_REPLICAS=1`` a replica held 1 s behind before the failover costs users
503s (writes no replica confirmed, then no primary until the endpoint moves) but no write
any user was told was saved.
"""

from __future__ import annotations

import pytest

from tests.load.faults import run_scenario, scenarios

pytestmark = [pytest.mark.integration, pytest.mark.slow]
OPTIONS = {"outage": 3.0, "pause": 3.0, "failover_delay": 2.0}


def _run(name, tmp_path):
    scenario = next(s for s in scenarios() if s.name == name)
    return run_scenario(scenario, users=10, options=OPTIONS, out_dir=str(tmp_path), quiet=4, recovery=8)


def test_redis_paused_in_phase_3_fails_no_request_and_loses_nothing(tmp_path):
    result = _run("redis paused in phase 3", tmp_path)
    assert result["during"]["requests"] > 0 and result["after"]["requests"] > 0, result
    assert result["total"]["errors"] == 0, result
    total = result["total"]
    assert (total["sessions_lost"], total["writes_lost"], result["journal_left"]) == (0, 0, 0), result
    assert result["verdict"] == "as designed"


def test_redis_down_in_phase_4_is_a_clear_503_and_loses_nothing(tmp_path):
    result = _run("redis down in phase 4", tmp_path)
    assert result["during"]["errors_5xx"] > 0, result  # users saw the outage ...
    assert result["before"]["errors"] == 0 and result["after"]["errors"] <= result["during"]["errors"], result
    # ... and every session and write made before, during and after it is still there
    assert (result["total"]["sessions_lost"], result["total"]["writes_lost"]) == (0, 0), result
    assert result["verdict"] == "as designed"


def test_redis_failover_in_phase_3_fails_no_request_and_loses_nothing(tmp_path):
    result = _run("redis failover in phase 3", tmp_path)
    assert result["during"]["requests"] > 0 and result["after"]["requests"] > 0, result
    assert result["total"]["errors"] == 0, result
    total = result["total"]
    assert (total["sessions_lost"], total["writes_lost"], result["journal_left"]) == (0, 0, 0), result
    assert result["promoted_connections"] > 0, result  # the apps use the promoted replica, not only files
    assert result["verdict"] == "as designed"


def test_redis_failover_in_phase_4_to_a_lagging_replica_with_wait_loses_no_acknowledged_write(tmp_path):
    result = _run("redis failover in phase 4 with a lagging replica + WAIT 1", tmp_path)
    assert result["during"]["errors_5xx"] > 0, result  # unconfirmed writes and the failover are 503s ...
    # ... and no write answered "saved" went missing on the promoted replica
    assert (result["total"]["sessions_lost"], result["total"]["writes_lost"]) == (0, 0), result
    assert result["promoted_connections"] > 0, result
    assert result["verdict"] == "as designed"
