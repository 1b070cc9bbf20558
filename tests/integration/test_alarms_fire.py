"""Every alarm the production example makes can fire, and stays quiet on a healthy fleet.

roles/cloudwatch_alarms runs against a moto server with the production inventory's own
settings (inventories/production/group_vars/all: node type, thresholds, periods), for one
member node and one app host. Then, for every alarm it made, metric data a healthy fleet and
a failing one would publish (the node's AWS/ElastiCache metrics, the app's Sessionshift
metrics) goes into moto with the alarm's own dimension and unit, and
devstack.alarm_evaluator evaluates each alarm as CloudWatch would:

- over five minutes of healthy data (half an hour ago) every alarm is OK;
- now, with two failing minutes out of five, none is in ALARM (production: 3 of 5 minutes);
- with a third failing minute, every one of them is.

An alarm the production example makes without a row in FLEET fails the test: a new alarm
needs its healthy and failing values here. The values are what the fleet would show, written
down here; a threshold moved above the failing value or below the healthy one fails the test.
SessionWriteErrors, SessionFallbackReads and Http5xx also fire from a real app's published
data (test_metrics_publisher.py; SessionWriteErrors in test_rollout_alarm.py and make demo).
"""

from __future__ import annotations

import datetime
import os

import boto3
import pytest
import yaml

from devstack.alarm_evaluator import ROOT, alarm_state, apply_role, evaluate, period_values
from devstack.moto_server import MotoServer

pytestmark = [pytest.mark.integration]
PREFIX = "sessionshift"
PRODUCTION = os.path.join(ROOT, "inventories", "production", "group_vars", "all")
EARLIER = 30  # minutes ago: the healthy half hour

# metric -> (healthy value, failing value), per period, in the alarm's unit and statistic.
FLEET = {
    # AWS/ElastiCache, per member node (cache.r7g.large in the production example)
    "EngineCPUUtilization": (35.0, 97.0),  # percent of the Redis thread's core
    "CPUUtilization": (20.0, 60.0),  # percent of the host's 2 vCPUs
    "DatabaseMemoryUsagePercentage": (55.0, 88.0),
    "FreeableMemory": (6.0e9, 4.0e8),  # bytes of the node's 13 GiB
    "SwapUsage": (0.0, 1.5e8),
    "CurrConnections": (160.0, 2500.0),
    "ReplicationLag": (0.3, 45.0),  # seconds
    "Evictions": (0.0, 12.0),
    "NetworkBandwidthInAllowanceExceeded": (0.0, 40.0),
    "NetworkBandwidthOutAllowanceExceeded": (0.0, 40.0),
    "NetworkPacketsPerSecondAllowanceExceeded": (0.0, 40.0),
    "NetworkConntrackAllowanceExceeded": (0.0, 40.0),
    "SuccessfulReadRequestLatency": (45.0, 4000.0),  # microseconds
    "SuccessfulWriteRequestLatency": (60.0, 6000.0),
    # Sessionshift, per app host (sessionshift.metrics_publisher)
    "SessionWriteErrors": (0.0, 7.0),
    "SessionFallbackReads": (4.0, 900.0),
    "ShadowMismatches": (0.0, 2.0),
    "JournalDepth": (3.0, 4000.0),
    "Http5xx": (0.0, 5.0),
}


def production_settings() -> dict:
    """The production example's settings the alarms follow (node type, cloudwatch_alarms_*)."""
    settings = {}
    for name in ("main.yml", "monitoring.yml"):
        with open(os.path.join(PRODUCTION, name)) as handle:
            settings.update(yaml.safe_load(handle))
    return {key: value for key, value in settings.items()
            if key.startswith("cloudwatch_alarms_") or key == "elasticache_node_type"}


@pytest.fixture(scope="module")
def alarms(tmp_path_factory):
    """(cloudwatch client, every alarm the role made with the production settings)."""
    with MotoServer.start() as moto:
        apply_role(str(tmp_path_factory.mktemp("alarms")), "cloudwatch_alarms", {
            **production_settings(),
            "cloudwatch_alarms_aws_endpoint_url": moto.endpoint_url,
            "cloudwatch_alarms_aws_access_key": "testing", "cloudwatch_alarms_aws_secret_key": "testing",
            "cloudwatch_alarms_prefix": PREFIX, "cloudwatch_alarms_cache_cluster_ids": ["node-001"],
            "cloudwatch_alarms_app_hosts": ["app1"]})
        cloudwatch = boto3.client("cloudwatch", **moto.client_kwargs())
        made = [alarm for page in cloudwatch.get_paginator("describe_alarms").paginate(AlarmNamePrefix=PREFIX)
                for alarm in page["MetricAlarms"]]
        yield cloudwatch, made


def publish(cloudwatch, alarm: dict, value: float, periods_ago: list[int], now: datetime.datetime) -> None:
    """One datapoint of *value* in each of those periods (0 = the one ending *now*), as the alarm reads it."""
    cloudwatch.put_metric_data(Namespace=alarm["Namespace"], MetricData=[
        {"MetricName": alarm["MetricName"], "Dimensions": alarm["Dimensions"], "Unit": alarm["Unit"],
         "Value": value, "Timestamp": now - datetime.timedelta(seconds=alarm["Period"] * ago + 30)}
        for ago in periods_ago])


def test_every_production_alarm_is_ok_when_healthy_and_fires_on_3_failing_minutes_of_5(alarms):
    cloudwatch, made = alarms
    by_metric = {alarm["MetricName"]: alarm for alarm in made}
    assert len(by_metric) == len(made) and set(by_metric) == set(FLEET), \
        "an alarm without its healthy and failing values here"
    assert {(a["EvaluationPeriods"], a["DatapointsToAlarm"]) for a in made} == {(5, 3)}  # 3 of 5 minutes
    now = datetime.datetime.now(datetime.UTC)
    earlier = now - datetime.timedelta(minutes=EARLIER)

    for metric, (healthy, failing) in FLEET.items():
        publish(cloudwatch, by_metric[metric], healthy, [0, 1, 2, 3, 4], earlier)
        publish(cloudwatch, by_metric[metric], healthy, [3, 4], now)
        publish(cloudwatch, by_metric[metric], failing, [1, 2], now)  # two failing minutes: not yet
    healthy_states = {metric: alarm_state(alarm, period_values(cloudwatch, alarm, earlier))[0]
                      for metric, alarm in by_metric.items()}
    assert set(healthy_states.values()) == {"OK"}, healthy_states
    states = evaluate(cloudwatch, PREFIX + "-")
    assert [name for name, value in states.items() if value == "ALARM"] == []

    for metric, (_healthy, failing) in FLEET.items():  # a third failing minute: ALARM
        publish(cloudwatch, by_metric[metric], failing, [0], now)
    states = evaluate(cloudwatch, PREFIX + "-")
    not_fired = {metric: states[alarm["AlarmName"]] for metric, alarm in by_metric.items()
                 if states[alarm["AlarmName"]] != "ALARM"}
    assert not_fired == {}
    fired = cloudwatch.describe_alarms(AlarmNames=[by_metric["FreeableMemory"]["AlarmName"]])
    assert "3 of the last 5 datapoints" in fired["MetricAlarms"][0]["StateReason"]


def test_an_alarm_ignores_data_published_in_another_unit(alarms):
    """The alarms name a unit, and CloudWatch matches it: data in another unit never fires them."""
    cloudwatch, made = alarms
    alarm = next(a for a in made if a["MetricName"] == "SwapUsage")
    later = datetime.datetime.now(datetime.UTC) + datetime.timedelta(minutes=EARLIER)
    publish(cloudwatch, {**alarm, "Unit": "Megabytes"}, 9000.0, [0, 1, 2, 3, 4], later)
    assert alarm_state(alarm, period_values(cloudwatch, alarm, later))[0] == "INSUFFICIENT_DATA"
