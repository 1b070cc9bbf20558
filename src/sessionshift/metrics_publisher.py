"""Publish the interface's counters to CloudWatch, one series per app host.

The app exposes Prometheus text at /metrics (all gunicorn workers merged); the
CloudWatch alarms and the dashboard read namespace ``Sessionshift``. This small
publisher runs beside the app on each host (the session_app role deploys it as a
service) and, every interval, reads /metrics and calls PutMetricData:

- counters (write errors, fallback reads, shadow mismatches, 5xx, ...) as the
  increase since the previous scrape, so a CloudWatch ``Sum`` over a period is the
  number of events in it; a counter that went down (the app restarted and its
  multiprocess directory was emptied) counts from zero, as Prometheus' rate() does;
- gauges (journal depth) as the value now.

Each value carries the dimension ``host`` (the CloudWatch agent's own name for
it), and the alarms are per host (``<prefix>-<host>-<metric>``): a fault is
usually one host's, and the alarm's name says which. No dimensionless fleet copy
is sent: it would double the PutMetricData volume for a sum the dashboard can
draw itself. The first scrape only sets the baseline for counters: what happened
before the publisher started is not attributed to this minute.

    python -m sessionshift.metrics_publisher --metrics-url http://127.0.0.1:8000/metrics \\
        --host app1 --interval 60
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import logging
import socket
import sys
import time
import urllib.request
from collections.abc import Callable, Sequence

from . import metrics
from .awsoptions import add_aws_options, aws_client

LOG = logging.getLogger("sessionshift.metrics_publisher")
CLOUDWATCH_NAMESPACE = "Sessionshift"
HOST_DIMENSION = "host"
_P = metrics.NAMESPACE + "_"


@dataclasses.dataclass(frozen=True)
class Published:
    """One CloudWatch metric made from Prometheus samples."""

    name: str  # the CloudWatch MetricName the alarms and the dashboard read
    sample: str  # the Prometheus sample name
    labels: tuple[tuple[str, str], ...] = ()  # only samples with these labels
    counter: bool = True  # counters are published as deltas, gauges as their value
    aggregate: str = "sum"  # how the workers' samples of a gauge combine (sum or max)


# The table the alarms (roles/cloudwatch_alarms/vars/main.yml) and the dashboard follow.
PUBLISHED: tuple[Published, ...] = (
    Published("SessionWriteErrors", _P + "session_write_errors_total"),
    Published("SessionFallbackReads", _P + "session_fallback_reads_total"),
    Published("SessionReadErrors", _P + "session_read_errors_total"),
    Published("SessionUnavailable", _P + "session_unavailable_total"),
    Published("ShadowMismatches", _P + "shadow_mismatches_total"),
    Published("JournalAppends", _P + "journal_appends_total"),
    Published("Http5xx", _P + "http_requests_total", (("code", "5xx"),)),
    Published("Requests", _P + "http_requests_total"),
    Published("JournalDepth", _P + "journal_depth", counter=False, aggregate="max"),
)


def current_values(text: str, table: Sequence[Published] = PUBLISHED) -> dict[str, float]:
    """{MetricName: the counter's total or the gauge's value} from one /metrics page."""
    samples = metrics.parse_metrics(text)
    values = {}
    for item in table:
        labels = dict(item.labels)
        if item.aggregate == "max":
            values[item.name] = max((value for sample_labels, value in samples.get(item.sample, [])
                                     if all(sample_labels.get(k) == v for k, v in labels.items())),
                                    default=0.0)
        else:
            values[item.name] = metrics.total(samples, item.sample, **labels)
    return values


class Publisher:
    """Scrape -> deltas -> one PutMetricData call. Keeps the previous totals in memory."""

    def __init__(self, cloudwatch, host: str, scrape: Callable[[], str], *,
                 namespace: str = CLOUDWATCH_NAMESPACE, table: Sequence[Published] = PUBLISHED):
        self.cloudwatch = cloudwatch
        self.host = host
        self.scrape = scrape
        self.namespace = namespace
        self.table = tuple(table)
        self.previous: dict[str, float] | None = None

    def values(self, now: dict[str, float]) -> dict[str, float]:
        """What to publish for *now*: counter deltas (reset-aware) and gauge values."""
        out = {}
        for item in self.table:
            value = now[item.name]
            if item.counter:
                before = (self.previous or {}).get(item.name, 0.0)
                value = value - before if value >= before else value  # a reset counts from zero
            out[item.name] = value
        return out

    def publish_once(self) -> dict[str, float] | None:
        """One scrape and one PutMetricData; returns what was sent (None for the baseline scrape)."""
        now = current_values(self.scrape(), self.table)
        if self.previous is None:
            # The first scrape is the counters' baseline; the gauges are published already.
            self.previous = now
            sent = {item.name: now[item.name] for item in self.table if not item.counter}
        else:
            sent = self.values(now)
            self.previous = now
        if sent:
            self._put(sent)
        return sent

    def _put(self, values: dict[str, float]) -> None:
        timestamp = datetime.datetime.now(datetime.UTC)
        data = []
        dimensions = [{"Name": HOST_DIMENSION, "Value": self.host}]
        for name, value in values.items():
            data.append({"MetricName": name, "Dimensions": dimensions, "Timestamp": timestamp,
                         "Value": float(value), "Unit": "Count"})
        # PutMetricData takes up to 1000 metrics per call; the table is far smaller.
        self.cloudwatch.put_metric_data(Namespace=self.namespace, MetricData=data)


def http_scraper(url: str, timeout: float = 5.0) -> Callable[[], str]:
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"--metrics-url {url!r}: give the app's http(s):// /metrics URL")

    def scrape() -> str:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 (scheme checked above)
            return response.read().decode("utf-8")

    return scrape


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sessionshift.metrics_publisher",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--metrics-url", default="http://127.0.0.1:8000/metrics",
                        help="the app's Prometheus page")
    parser.add_argument("--host", default=socket.gethostname(),
                        help="the value of the 'host' dimension (default: this host's name)")
    parser.add_argument("--namespace", default=CLOUDWATCH_NAMESPACE)
    parser.add_argument("--interval", type=float, default=60.0,
                        help="seconds between scrapes (the alarms' period, or a divisor of it)")
    parser.add_argument("--count", type=int, default=0,
                        help="scrape this many times, then exit (0: run until stopped); the first "
                             "scrape is the counters' baseline")
    add_aws_options(parser, "CloudWatch")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")

    cloudwatch = aws_client(args, "cloudwatch")
    publisher = Publisher(cloudwatch, args.host, http_scraper(args.metrics_url), namespace=args.namespace)
    rounds = 0
    while True:
        try:
            sent = publisher.publish_once()
            LOG.info("published %s", ", ".join(f"{k}={v:g}" for k, v in sorted((sent or {}).items())))
        except Exception as exc:  # the app restarting or AWS throttling: keep going, and say it
            LOG.error("publishing failed (%s): %s: %s", args.metrics_url, type(exc).__name__, exc)
        rounds += 1
        if args.count and rounds >= args.count:
            return 0
        time.sleep(args.interval)


if __name__ == "__main__":
    sys.exit(main())
