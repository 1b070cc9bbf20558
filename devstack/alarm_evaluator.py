"""CloudWatch's alarm evaluation, for a moto server that does not do it (and the helpers around it).

moto (5.x) stores metric data and alarms but never evaluates an alarm: its
``put_metric_data`` only appends datapoints, and an alarm's state changes only
through ``set_alarm_state`` (moto/cloudwatch/models.py). Real CloudWatch
evaluates every alarm each period. This stand-in does what CloudWatch does for
the alarms our roles create (a single metric, a standard statistic), from the
data in moto and the alarm's own definition, read back over the API:

- the last ``EvaluationPeriods`` periods of ``Period`` seconds ending now, each
  reduced by the alarm's statistic (``get_metric_data`` with its dimensions, and
  its unit when it has one: such an alarm ignores data published in another unit);
- ``DatapointsToAlarm`` of them breaching the threshold = ALARM; a period with
  no data counts as TreatMissingData says (notBreaching = good, breaching = bad,
  missing/ignore = not a datapoint); no datapoint at all = INSUFFICIENT_DATA,
  unless missing data is good or bad;
- the state is written with ``set_alarm_state`` only when it changes (CloudWatch
  moves StateUpdatedTimestamp only on a transition), with a reason that names
  the breaching values.

So the state an alarm ends in is computed from what the app published, never
set by a test or by ``make demo``. Only metric alarms are evaluated (no math, no anomaly
bands).
"""

from __future__ import annotations

import contextlib
import datetime
import json
import operator
import os
import signal
import subprocess
import sys
import threading
import time

import boto3

from devstack.moto_server import FAKE_CREDENTIALS

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

EVALUATED_BY = "(evaluated by devstack's stand-in for CloudWatch)"

COMPARE = {
    "GreaterThanThreshold": operator.gt,
    "GreaterThanOrEqualToThreshold": operator.ge,
    "LessThanThreshold": operator.lt,
    "LessThanOrEqualToThreshold": operator.le,
}


def alarm_state(alarm: dict, values: list[float]) -> tuple[str, str]:
    """(state, reason) of *alarm* given one value per evaluated period (None = no data)."""
    compare = COMPARE[alarm["ComparisonOperator"]]
    missing = alarm.get("TreatMissingData", "missing")
    datapoints, breaching = 0, 0
    for value in values:
        if value is None:
            if missing in ("notBreaching", "breaching"):
                datapoints += 1
                breaching += missing == "breaching"
            continue
        datapoints += 1
        breaching += bool(compare(value, alarm["Threshold"]))
    needed = alarm.get("DatapointsToAlarm") or alarm["EvaluationPeriods"]
    shown = [round(v, 3) if v is not None else None for v in values]
    if breaching >= needed:
        return "ALARM", (f"Threshold Crossed: {breaching} of the last {len(values)} datapoints {shown} "
                         f"{alarm['ComparisonOperator']} {alarm['Threshold']} "
                         f"{EVALUATED_BY}")
    if datapoints == 0:
        return "INSUFFICIENT_DATA", f"no datapoints {EVALUATED_BY}"
    return "OK", f"{breaching} of {len(values)} datapoints {shown} breach {EVALUATED_BY}"


def period_values(cloudwatch, alarm: dict, now: datetime.datetime) -> list[float | None]:
    """The alarm's statistic for each of its last EvaluationPeriods periods, oldest first."""
    period = int(alarm["Period"])
    count = int(alarm["EvaluationPeriods"])
    start = now - datetime.timedelta(seconds=period * count)
    metric = {"Namespace": alarm["Namespace"], "MetricName": alarm["MetricName"],
              "Dimensions": alarm.get("Dimensions", [])}
    stat = {"Metric": metric, "Period": period, "Stat": alarm["Statistic"]}
    if alarm.get("Unit"):  # an alarm with a unit sees only the datapoints published with that unit
        stat["Unit"] = alarm["Unit"]
    answer = cloudwatch.get_metric_data(
        MetricDataQueries=[{"Id": "m", "MetricStat": stat}],
        StartTime=start, EndTime=now)
    result = answer["MetricDataResults"][0]
    by_start = {int((ts - start).total_seconds()) // period: value
                for ts, value in zip(result["Timestamps"], result["Values"], strict=True)}
    return [by_start.get(index) for index in range(count)]


def evaluate(cloudwatch, prefix: str = "") -> dict[str, str]:
    """Evaluate every metric alarm under *prefix* once; returns {alarm name: state now}."""
    now = datetime.datetime.now(datetime.UTC).replace(microsecond=0) + datetime.timedelta(seconds=1)
    states = {}
    for page in cloudwatch.get_paginator("describe_alarms").paginate(AlarmNamePrefix=prefix):
        for alarm in page.get("MetricAlarms", []):
            if not alarm["AlarmName"].startswith(prefix) or "MetricName" not in alarm:
                continue
            state, reason = alarm_state(alarm, period_values(cloudwatch, alarm, now))
            if state != alarm["StateValue"]:
                cloudwatch.set_alarm_state(AlarmName=alarm["AlarmName"], StateValue=state,
                                           StateReason=reason[:1023])
            states[alarm["AlarmName"]] = state
    return states


def apply_role(directory: str, role: str, variables: dict) -> str:
    """Run *role* on localhost with *variables* through ansible-playbook; returns the output."""
    playbook = os.path.join(directory, f"{role}.yml")
    with open(playbook, "w") as handle:
        json.dump([{"hosts": "localhost", "gather_facts": False, "roles": [{"role": role}]}], handle)
    run = subprocess.run(
        [os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), "-i", "localhost,", "-c", "local",
         "-e", f"ansible_python_interpreter={sys.executable}", playbook, "-e", json.dumps(variables)],
        cwd=ROOT, env=dict(os.environ, **FAKE_CREDENTIALS, ANSIBLE_CONFIG=os.path.join(ROOT, "ansible.cfg"),
                           ANSIBLE_NOCOLOR="1"),
        capture_output=True, text=True, timeout=600, check=False)
    if run.returncode != 0:
        raise RuntimeError(f"role {role} failed (exit {run.returncode}):\n"
                           f"{run.stdout[-3000:]}{run.stderr[-2000:]}")
    return run.stdout


def apply_alarm_role(moto, directory: str, hosts: list[str], prefix: str = "sessionshift", **extra) -> None:
    """roles/cloudwatch_alarms against moto: one evaluation period of 60 s, one breaching datapoint."""
    apply_role(directory, "cloudwatch_alarms", {
        "cloudwatch_alarms_aws_endpoint_url": moto.endpoint_url,
        "cloudwatch_alarms_aws_access_key": "testing", "cloudwatch_alarms_aws_secret_key": "testing",
        "cloudwatch_alarms_cache_cluster_ids": ["node-001"], "cloudwatch_alarms_app_hosts": hosts,
        "cloudwatch_alarms_prefix": prefix, "cloudwatch_alarms_period": 60,
        "cloudwatch_alarms_evaluation_periods": 1, "cloudwatch_alarms_datapoints_to_alarm": 1, **extra})


@contextlib.contextmanager
def evaluating(cloudwatch, prefix: str, every: float = 2.0):
    """Evaluate the alarms under *prefix* every *every* seconds in a thread, as CloudWatch would."""
    stop = threading.Event()

    def loop() -> None:
        while not stop.wait(every):
            evaluate(cloudwatch, prefix)

    thread = threading.Thread(target=loop, daemon=True, name="alarm-evaluator")
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(30)


def stall_redis(local_dir: str, seconds: float = 3.0) -> None:
    """The fault: the local stack's Redis primary stops answering (SIGSTOP) for *seconds*."""
    with open(os.path.join(local_dir, "redis", "primary", "redis.pid")) as handle:
        pid = int(handle.read())
    os.kill(pid, signal.SIGSTOP)
    try:
        time.sleep(seconds)
    finally:
        os.kill(pid, signal.SIGCONT)


def subscribe_queue(moto, topic_name: str, queue_name: str):
    """An SQS queue subscribed to SNS topic *topic_name* (made if missing): (topic ARN, sqs, queue URL)."""
    sns, sqs = boto3.client("sns", **moto.client_kwargs()), boto3.client("sqs", **moto.client_kwargs())
    topic = sns.create_topic(Name=topic_name)["TopicArn"]  # create is idempotent
    queue = sqs.create_queue(QueueName=queue_name)["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn)
    return topic, sqs, queue


def received(sqs, queue: str) -> list[dict]:
    """Every SNS message (its JSON envelope) waiting in *queue*."""
    messages = []
    while True:
        answer = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10, WaitTimeSeconds=1)
        got = answer.get("Messages", [])
        if not got:
            return messages
        messages += [json.loads(m["Body"]) for m in got]


def firing(cloudwatch, prefix: str) -> list[str]:
    """Alarms under *prefix* in ALARM (filtered here too: moto ignores StateValue with a prefix)."""
    alarms = cloudwatch.describe_alarms(AlarmNamePrefix=prefix, StateValue="ALARM")["MetricAlarms"]
    return [a["AlarmName"] for a in alarms if a["StateValue"] == "ALARM"]
