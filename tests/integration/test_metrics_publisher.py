"""App metrics reach CloudWatch: a real gunicorn app whose Redis fails, the publisher, moto.

The alarms are the ones roles/cloudwatch_alarms creates (run through ansible-playbook), so
the names, namespace, dimension and statistic the publisher sends are checked against what
the alarms read. moto does not evaluate alarms; devstack/alarm_evaluator.py does what
CloudWatch's evaluation does, from the published data and the alarm's own definition.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import subprocess
import sys
import time

import boto3
import pytest
import requests

from devstack.alarm_evaluator import apply_alarm_role, evaluate
from devstack.gunicorn_app import GunicornApp
from devstack.moto_server import FAKE_CREDENTIALS, MotoServer
from devstack.redis_server import RedisServer
from sessionshift import state
from sessionshift.metrics import gate_summary
from sessionshift.metrics_publisher import CLOUDWATCH_NAMESPACE, Publisher, http_scraper

pytestmark = [pytest.mark.integration, pytest.mark.slow]
HOST = "app-under-test"
READER = "app-reading-files"
PREFIX = "sessionshift"


@pytest.fixture
def failing_redis_app(tmp_path, tls_files):
    """The demo app in dual_write whose Redis has gone away (writes fail, are journaled, requests succeed)."""
    redis = RedisServer.start(str(tmp_path / "redis"), tls_files)
    settings = redis.settings(socket_timeout=0.3, connect_timeout=0.3, retries=0)
    config = {"SESSIONSHIFT_REDIS": dataclasses.asdict(settings), "SESSIONSHIFT_REDIS_RETRY_AFTER": 0.2}
    with GunicornApp.start(str(tmp_path / "app"), config, workers=2) as app:
        state.write_json(os.path.join(app.state_dir, state.PHASE_FILE), {"phase": "dual_write"})
        app.wait_for_phase("dual_write")
        redis.stop()
        yield app


@pytest.fixture(scope="module")
def alarmed_moto(tmp_path_factory):
    """A moto server with the alarms roles/cloudwatch_alarms makes for these hosts (made once: the role
    is the slow part)."""
    with MotoServer.start() as moto:
        apply_alarm_role(moto, str(tmp_path_factory.mktemp("alarms")), [HOST, "other-host", READER],
                         prefix=PREFIX)
        yield moto


def drive_users(app: GunicornApp, users: int = 3, writes: int = 2) -> None:
    for number in range(users):
        http = requests.Session()
        answer = http.post(app.url + "/login", data={"username": f"user{number}", "password": "pw"},
                           timeout=10)
        assert answer.status_code == 200, answer.text[:200]
        for write in range(writes):
            answer = http.post(app.url + "/translate", data={"input_text": f"text {write}"}, timeout=10)
            assert answer.status_code == 200, answer.text[:200]


def metric_sum(cloudwatch, name: str, host: str) -> float:
    now = datetime.datetime.now(datetime.UTC)
    answer = cloudwatch.get_metric_data(
        MetricDataQueries=[{"Id": "m", "MetricStat": {
            "Metric": {"Namespace": CLOUDWATCH_NAMESPACE, "MetricName": name,
                       "Dimensions": [{"Name": "host", "Value": host}]},
            "Period": 300, "Stat": "Sum"}}],
        StartTime=now - datetime.timedelta(minutes=5), EndTime=now + datetime.timedelta(seconds=5))
    return sum(answer["MetricDataResults"][0]["Values"])


def test_write_errors_through_a_real_app_reach_cloudwatch_and_raise_the_hosts_alarm(failing_redis_app,
                                                                                     alarmed_moto):
    app = failing_redis_app
    scrape = http_scraper(app.url + "/metrics")
    cloudwatch = boto3.client("cloudwatch", **alarmed_moto.client_kwargs())
    publisher = Publisher(cloudwatch, HOST, scrape)
    assert publisher.publish_once() == {"JournalDepth": 0.0}  # the counters' baseline
    before = gate_summary(scrape())

    drive_users(app)
    after = gate_summary(scrape())
    sent = publisher.publish_once()

    errors = after["write_errors"].get("redis", 0) - before["write_errors"].get("redis", 0)
    assert errors >= 3 * 3  # a login and two writes per user, each a failed Redis write
    assert sent["SessionWriteErrors"] == errors
    assert sent["Http5xx"] == 0 and sent["Requests"] >= 9  # (the scrapes of /metrics count too)
    assert sent["JournalDepth"] >= 1  # the failed writes wait in the journal
    assert metric_sum(cloudwatch, "SessionWriteErrors", HOST) == errors
    assert metric_sum(cloudwatch, "SessionWriteErrors", "other-host") == 0

    states = evaluate(cloudwatch, PREFIX + "-")
    assert states[f"{PREFIX}-{HOST}-SessionWriteErrors"] == "ALARM"
    assert states[f"{PREFIX}-other-host-SessionWriteErrors"] == "OK"  # nothing published = no errors
    assert states[f"{PREFIX}-{HOST}-Http5xx"] == "OK"
    assert states[f"{PREFIX}-{HOST}-JournalDepth"] == "OK"  # under the 1000 threshold
    name = f"{PREFIX}-{HOST}-SessionWriteErrors"
    alarm = cloudwatch.describe_alarms(AlarmNames=[name])["MetricAlarms"][0]
    assert alarm["StateValue"] == "ALARM" and f"[{float(errors)}]" in alarm["StateReason"]

    body = json.loads(cloudwatch.get_dashboard(DashboardName=f"{PREFIX}-sessions")["DashboardBody"])
    graphed = {tuple(m) for w in body["widgets"] for m in w["properties"]["metrics"]}
    assert (CLOUDWATCH_NAMESPACE, "SessionWriteErrors", "host", HOST) in graphed


def test_the_publisher_command_line_publishes_from_the_app(failing_redis_app, tmp_path):
    """The command the session_app role's unit runs, as a process: two scrapes, one delta."""
    app = failing_redis_app
    with MotoServer.start() as moto:
        cloudwatch = boto3.client("cloudwatch", **moto.client_kwargs())
        drive_users(app, users=1, writes=1)  # before the baseline: not this publisher's to report
        process = subprocess.Popen(
            [sys.executable, "-m", "sessionshift.metrics_publisher", "--metrics-url", app.url + "/metrics",
             "--host", HOST, "--interval", "3", "--count", "2", "--endpoint-url", moto.endpoint_url],
            env=dict(os.environ, **FAKE_CREDENTIALS), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True)
        try:
            # the first scrape is the baseline; these requests fall between it and the second
            for _ in range(300):
                if process.poll() is not None or cloudwatch.list_metrics(
                        Namespace=CLOUDWATCH_NAMESPACE)["Metrics"]:
                    break
                time.sleep(0.1)
            before = gate_summary(http_scraper(app.url + "/metrics")())["write_errors_total"]
            drive_users(app, users=1, writes=2)
            output, _ = process.communicate(timeout=60)
            after = gate_summary(http_scraper(app.url + "/metrics")())["write_errors_total"]
        finally:
            process.kill()
        assert process.returncode == 0, output
        assert after - before >= 3
        assert metric_sum(cloudwatch, "SessionWriteErrors", HOST) == after - before, output


def test_fallback_reads_and_5xx_from_a_real_app_raise_their_alarms(failing_redis_app, alarmed_moto):
    """Two more app alarms, from what a real app counts while its Redis is gone: sessions read from
    the file in redis_read (SessionFallbackReads), 503s in redis_only (Http5xx)."""
    app = failing_redis_app
    scrape = http_scraper(app.url + "/metrics")
    cloudwatch = boto3.client("cloudwatch", **alarmed_moto.client_kwargs())
    publisher = Publisher(cloudwatch, READER, scrape)
    publisher.publish_once()  # the baseline

    users = []
    for number in range(8):  # dual_write: each login's Redis write fails (journaled)
        http = requests.Session()
        answer = http.post(app.url + "/login", data={"username": f"reader{number}", "password": "pw"},
                           timeout=10)
        assert answer.status_code == 200, answer.text[:200]
        users.append(http)
    state.write_json(os.path.join(app.state_dir, state.PHASE_FILE), {"phase": "redis_read"})
    app.wait_for_phase("redis_read")
    for _ in range(8):  # 64 reads, each from the file: Redis does not answer
        for http in users:
            assert http.get(app.url + "/", timeout=10).status_code == 200
    state.write_json(os.path.join(app.state_dir, state.PHASE_FILE), {"phase": "redis_only"})
    app.wait_for_phase("redis_only")
    answer = users[0].post(app.url + "/translate", data={"input_text": "lost?"}, timeout=10)
    assert answer.status_code == 503  # Redis is the only store now, and it is gone
    sent = publisher.publish_once()

    assert sent["SessionFallbackReads"] > 50 and sent["Http5xx"] >= 1, sent
    states = evaluate(cloudwatch, f"{PREFIX}-{READER}-")
    assert states == {f"{PREFIX}-{READER}-{metric}": expected for metric, expected in (
        ("SessionWriteErrors", "ALARM"), ("SessionFallbackReads", "ALARM"), ("Http5xx", "ALARM"),
        ("JournalDepth", "OK"), ("ShadowMismatches", "OK"))}
