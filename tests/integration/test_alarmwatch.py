"""Rollback on alert: the watcher's incident rule, its lock and its SNS reports, against a real moto server.

The alarm states here are set with set_alarm_state: these tests are about what the watcher does
with an alarm's state, not how CloudWatch computes it (tests/integration/test_rollout_alarm.py
goes from an app fault through the published metric to the alarm).
"""

from __future__ import annotations

import json

import boto3
import pytest

from devstack.moto_server import MotoServer
from sessionshift import rolloutlock, state
from sessionshift.alarmwatch import (
    AlarmWatcher,
    PlaybookConfig,
    RollbackResult,
    decide,
    firing_alarms,
    sns_notifier,
)

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def moto():
    server = MotoServer.start()
    yield server
    server.stop()


@pytest.fixture
def cloudwatch(moto):
    moto.reset()
    return boto3.client("cloudwatch", **moto.client_kwargs())


def _alarm(client, name):
    client.put_metric_alarm(AlarmName=name, MetricName="Evictions", Namespace="AWS/ElastiCache",
                            Statistic="Sum", Period=60, EvaluationPeriods=1, Threshold=0,
                            ComparisonOperator="GreaterThanThreshold")


def _set(client, name, value):
    client.set_alarm_state(AlarmName=name, StateValue=value, StateReason=f"test: {value}")


class Clock:
    def __init__(self):
        self.now = 1_000_000.0

    def __call__(self):
        return self.now


def test_decide_one_rollback_per_incident_and_a_new_one_only_after_the_cool_down():
    record = {}
    first = decide(record, ["a"], 0, cooldown=600)
    assert first.action == "rollback"
    first.record["incident"]["rollback"] = {"returncode": 0}
    # the same alarm again, another alarm, a flapping one: all join, none rolls back again
    again = decide(first.record, ["a", "b"], 60, cooldown=600)
    assert (again.action, again.joined) == ("none", ("b",))
    quiet = decide(again.record, [], 120, cooldown=600)
    assert quiet.action == "none" and quiet.record["incident"] is not None  # quiet, not yet long enough
    flap = decide(quiet.record, ["a"], 500, cooldown=600)
    assert flap.action == "none"  # the cool-down counts from the last firing, 500
    assert decide(flap.record, [], 1099, cooldown=600).action == "none"
    closed = decide(flap.record, [], 1100, cooldown=600)
    assert closed.action == "close" and closed.record["incident"] is None
    assert closed.record["history"][0]["alarms"] == ["a", "b"]
    assert decide(closed.record, ["a"], 1200, cooldown=600).action == "rollback"  # a new incident


def test_decide_retries_a_rollback_that_never_ran():
    owed = decide({}, ["a"], 0, cooldown=600)  # the lock was busy: rollback stays None
    assert decide(owed.record, ["a"], 30, cooldown=600).action == "rollback"


def test_the_watcher_rolls_back_once_reports_to_sns_and_waits_for_the_lock(moto, cloudwatch, tmp_path):
    _alarm(cloudwatch, "sessionshift-app1-Http5xx")
    _alarm(cloudwatch, "sessionshift-app2-Http5xx")
    _alarm(cloudwatch, "other-team-alarm")
    sns = boto3.client("sns", **moto.client_kwargs())
    sqs = boto3.client("sqs", **moto.client_kwargs())
    topic = sns.create_topic(Name="sessionshift-alarms")["TopicArn"]
    queue = sqs.create_queue(QueueName="ops")["QueueUrl"]
    attributes = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]
    queue_arn = attributes["QueueArn"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn)
    lock_file = str(tmp_path / "rollout.lock")
    runs, outcomes = [], iter([0, 4])

    def run_rollback(alarms, lock):
        assert lock.path == lock_file and lock.fd >= 0  # it runs under the lock
        with pytest.raises(rolloutlock.LockHeld):  # which an operator's playbook cannot take meanwhile
            rolloutlock.acquire(lock_file, "operator's phase3.yml")
        runs.append(list(alarms))
        return RollbackResult(next(outcomes), "/var/log/rollback.log", "TASK [x] fatal: boom")

    clock = Clock()
    watcher = AlarmWatcher(cloudwatch, "sessionshift-", str(tmp_path / "watch.json"), run_rollback,
                           lock_file=lock_file, cooldown=300, notify=sns_notifier(sns, topic), clock=clock)
    assert watcher.poll().action == "none" and runs == []

    _set(cloudwatch, "other-team-alarm", "ALARM")
    _set(cloudwatch, "sessionshift-app1-Http5xx", "ALARM")
    # an operator's playbook holds the lock: the rollback waits and is owed
    with rolloutlock.acquire(lock_file, "operator's phase3.yml"):
        assert watcher.poll().action == "rollback" and runs == []
        assert state.read_json(str(tmp_path / "watch.json"))["incident"]["rollback"] is None
    clock.now += 30
    watcher.poll()
    assert runs == [["sessionshift-app1-Http5xx"]]

    # the alarm flaps and another fires: same incident, no second step back (even after a restart)
    _set(cloudwatch, "sessionshift-app1-Http5xx", "OK")
    clock.now += 30
    watcher.poll()
    _set(cloudwatch, "sessionshift-app1-Http5xx", "ALARM")
    _set(cloudwatch, "sessionshift-app2-Http5xx", "ALARM")
    clock.now += 30
    restarted = AlarmWatcher(cloudwatch, "sessionshift-", str(tmp_path / "watch.json"), run_rollback,
                             lock_file=lock_file, cooldown=300, notify=sns_notifier(sns, topic), clock=clock)
    assert restarted.poll().joined == ("sessionshift-app2-Http5xx",)
    assert len(runs) == 1

    # quiet for the cool-down: the incident closes; a new alarm is a new incident, whose rollback fails
    for name in ("sessionshift-app1-Http5xx", "sessionshift-app2-Http5xx"):
        _set(cloudwatch, name, "OK")
    clock.now += 301
    assert restarted.poll().action == "close"
    _set(cloudwatch, "sessionshift-app2-Http5xx", "ALARM")
    clock.now += 30
    restarted.poll()
    assert runs[-1] == ["sessionshift-app2-Http5xx"] and len(runs) == 2
    record = state.read_json(str(tmp_path / "watch.json"))
    assert record["incident"]["rollback"]["returncode"] == 4 and len(record["history"]) == 1

    messages = []
    for _ in range(5):
        answer = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10, WaitTimeSeconds=1)
        got = answer.get("Messages", [])
        messages += [json.loads(m["Body"]) for m in got]
        if len(messages) >= 2:
            break
    subjects = [m["Subject"] for m in messages]
    assert subjects == ["sessionshift: rolled back one phase on alarm sessionshift-app1-Http5xx",
                        "sessionshift: automatic rollback FAILED on alarm sessionshift-app2-Http5xx"]
    assert "fatal: boom" in messages[1]["Message"] and "needs an operator" in messages[1]["Message"]


def test_firing_alarms_only_under_the_prefix(cloudwatch):
    _alarm(cloudwatch, "sessionshift-evictions")
    _alarm(cloudwatch, "other-team-alarm")
    _set(cloudwatch, "other-team-alarm", "ALARM")
    assert firing_alarms(cloudwatch, "sessionshift-") == []
    _set(cloudwatch, "sessionshift-evictions", "ALARM")
    assert [e.name for e in firing_alarms(cloudwatch, "sessionshift-")] == ["sessionshift-evictions"]


def test_the_configuration_is_checked_at_start_and_the_command_carries_the_vault(tmp_path):
    collection = tmp_path / "opt"
    (collection / "playbooks").mkdir(parents=True)
    (collection / "playbooks" / "rollback.yml").write_text("---\n")
    inventory = tmp_path / "inventory"
    (inventory / "group_vars").mkdir(parents=True)
    (inventory / "group_vars" / "vault.yml").write_text("$ANSIBLE_VAULT;1.1;AES256\n6162\n")
    secret = tmp_path / "vault-pass"
    secret.write_text("pw\n")

    bare = PlaybookConfig(str(collection), str(inventory), str(tmp_path / "logs"))
    assert any("no vault secrets found" in problem for problem in bare.check())
    missing = PlaybookConfig(str(collection), "inventories/nope", "", playbook="playbooks/nope.yml").check()
    assert [p for p in missing if "does not exist" in p] == [
        f"playbook {collection}/playbooks/nope.yml does not exist",
        f"inventory {collection}/inventories/nope does not exist"]

    config = PlaybookConfig(str(collection), str(inventory), str(tmp_path / "logs"),
                            vault_ids=(f"prod@{secret}",), extra_vars=('{"a": 1}',))
    assert config.check() == []
    command = config.command("alarm x in ALARM")
    assert command[command.index("--vault-id") + 1] == f"prod@{secret}"
    assert command[3] == "sessionshift.migration.rollback"  # the collection's, found by ansible.cfg
    assert ["-e", "rollback_to=previous"] == command[4:6]
    assert PlaybookConfig(str(collection), str(inventory), "", vault_ids=("prod@prompt",)).check()
