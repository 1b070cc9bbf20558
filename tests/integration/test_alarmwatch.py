"""Rollback on alert: the watcher against a real moto server over HTTP."""

from __future__ import annotations

import boto3
import pytest

from devstack.moto_server import REGION, MotoServer
from sessionshift import state
from sessionshift.alarmwatch import AlarmWatcher, firing_alarms

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def cloudwatch():
    server = MotoServer.start()
    client = boto3.client("cloudwatch", region_name=REGION, endpoint_url=server.endpoint_url,
                          aws_access_key_id="testing", aws_secret_access_key="testing")
    yield client
    server.stop()


def _alarm(client, name):
    client.put_metric_alarm(AlarmName=name, MetricName="Evictions", Namespace="AWS/ElastiCache",
                            Statistic="Sum", Period=60, EvaluationPeriods=1, Threshold=0,
                            ComparisonOperator="GreaterThanThreshold")


def test_one_rollback_per_alarm_transition(cloudwatch, tmp_path):
    _alarm(cloudwatch, "sessionshift-evictions")
    _alarm(cloudwatch, "other-team-alarm")
    runs = []
    watcher = AlarmWatcher(cloudwatch, "sessionshift-", str(tmp_path / "watch.json"),
                           lambda events: runs.append([e.name for e in events]) or 0)

    assert watcher.poll() == [] and runs == []  # everything OK or INSUFFICIENT_DATA

    cloudwatch.set_alarm_state(AlarmName="other-team-alarm", StateValue="ALARM", StateReason="not ours")
    cloudwatch.set_alarm_state(AlarmName="sessionshift-evictions", StateValue="ALARM",
                               StateReason="Evictions > 0")
    assert [e.name for e in firing_alarms(cloudwatch, "sessionshift-")] == ["sessionshift-evictions"]
    assert [e.name for e in watcher.poll()] == ["sessionshift-evictions"]
    assert runs == [["sessionshift-evictions"]]

    # still in ALARM, same transition: no second rollback, even from a restarted watcher
    restarted = AlarmWatcher(cloudwatch, "sessionshift-", str(tmp_path / "watch.json"),
                             lambda events: runs.append("again") or 0)
    assert restarted.poll() == [] and len(runs) == 1
    record = state.read_json(str(tmp_path / "watch.json"))
    assert record["last_rollback"]["alarms"] == ["sessionshift-evictions"]

    # back to OK, then a new ALARM: a new transition, a new rollback
    cloudwatch.set_alarm_state(AlarmName="sessionshift-evictions", StateValue="OK", StateReason="ok")
    assert restarted.poll() == []
    cloudwatch.set_alarm_state(AlarmName="sessionshift-evictions", StateValue="ALARM", StateReason="again")
    assert [e.name for e in restarted.poll()] == ["sessionshift-evictions"] and runs[-1] == "again"
