"""The publisher's arithmetic: baseline, deltas, a counter reset, gauges, the host dimension."""

from __future__ import annotations

from sessionshift.metrics_publisher import Publisher


def page(write_errors: float, five_xx: float, depths: tuple[float, ...]) -> str:
    lines = ["# TYPE sessionshift_session_write_errors counter",
             'sessionshift_session_write_errors_total{phase="dual_write",backend="redis",op="write"} '
             f"{write_errors}",
             "# TYPE sessionshift_http_requests counter",
             'sessionshift_http_requests_total{code="2xx"} 100',
             f'sessionshift_http_requests_total{{code="5xx"}} {five_xx}',
             "# TYPE sessionshift_journal_depth gauge"]
    lines += [f'sessionshift_journal_depth{{pid="{n}"}} {d}' for n, d in enumerate(depths)]
    return "\n".join(lines) + "\n"


class Recorder:
    def __init__(self):
        self.calls = []

    def put_metric_data(self, Namespace, MetricData):
        self.calls.append((Namespace, MetricData))


def test_baseline_then_deltas_and_a_reset_counts_from_zero():
    pages = iter([page(5, 1, (0, 3)), page(9, 1, (2, 7)), page(2, 0, (0,))])
    recorder = Recorder()
    publisher = Publisher(recorder, "app1", lambda: next(pages))

    assert publisher.publish_once() == {"JournalDepth": 3.0}  # counters: baseline only
    second = publisher.publish_once()
    assert (second["SessionWriteErrors"], second["Http5xx"], second["JournalDepth"]) == (4.0, 0.0, 7.0)
    third = publisher.publish_once()  # the app restarted: 2 errors since, not -7
    assert (third["SessionWriteErrors"], third["Http5xx"], third["Requests"]) == (2.0, 0.0, 100.0)

    namespace, data = recorder.calls[1]
    assert namespace == "Sessionshift"
    assert {d["MetricName"]: d["Value"] for d in data}["SessionWriteErrors"] == 4.0
    assert all(d["Dimensions"] == [{"Name": "host", "Value": "app1"}] and d["Unit"] == "Count" for d in data)
