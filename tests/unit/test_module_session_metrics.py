"""session_metrics and sessionshift.metrics' reader: the gate numbers from a real /metrics page."""

from __future__ import annotations

import http.server
import json
import threading

import pytest
from ansible.module_utils.testing import patch_module_args

from sessionshift import metrics
from tests.conftest import load_module

module = load_module("session_metrics")

PAGE = """\
# HELP sessionshift_session_reads_total Sessions loaded
# TYPE sessionshift_session_reads_total counter
sessionshift_session_reads_total{phase="redis_read",source="redis"} 90.0
sessionshift_session_reads_total{phase="redis_read",source="file"} 10.0
sessionshift_session_reads_total{phase="redis_read",source="none"} 50.0
# TYPE sessionshift_session_fallback_reads_total counter
sessionshift_session_fallback_reads_total{phase="redis_read",reason="miss"} 7.0
sessionshift_session_fallback_reads_total{phase="redis_read",reason="error"} 3.0
# TYPE sessionshift_session_write_errors_total counter
sessionshift_session_write_errors_total{backend="redis",op="write",phase="dual_write"} 4.0
sessionshift_session_write_errors_total{backend="file",op="write",phase="dual_write"} 1.0
# TYPE sessionshift_shadow_mismatches_total counter
sessionshift_shadow_mismatches_total 2.0
# TYPE sessionshift_journal_depth gauge
sessionshift_journal_depth{pid="11"} 5.0
sessionshift_journal_depth{pid="12"} 6.0
# TYPE sessionshift_http_requests_total counter
sessionshift_http_requests_total{code="2xx"} 120.0
sessionshift_http_requests_total{code="5xx"} 2.0
# TYPE sessionshift_phase gauge
sessionshift_phase{pid="11"} 3.0
"""


class _Handler(http.server.BaseHTTPRequestHandler):
    body = PAGE.encode()
    status = 200

    def do_GET(self):
        self.send_response(self.status)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def run(capsys, check_mode=False, **params):
    with patch_module_args(dict(params, _ansible_check_mode=check_mode)), pytest.raises(SystemExit):
        module.main()
    return json.loads(capsys.readouterr().out)


def test_gate_summary_adds_up_the_counters():
    summary = metrics.gate_summary(PAGE)
    assert summary["fallback_reads"] == 10 and summary["fallback_rate"] == pytest.approx(0.1)
    assert summary["write_errors"] == {"redis": 4, "file": 1} and summary["write_errors_total"] == 5
    assert summary["shadow_mismatches"] == 2 and summary["journal_depth"] == 6
    assert (summary["requests_total"], summary["server_errors"]) == (122, 2)
    assert summary["phases_seen"] == [3]


def test_the_summary_reads_what_the_interface_exports():
    metrics.SHADOW_MISMATCHES.inc()
    body, _content_type = metrics.render()
    assert metrics.gate_summary(body.decode())["shadow_mismatches"] >= 1


def test_module_returns_the_numbers_unchanged_in_check_mode(server, capsys):
    result = run(capsys, check_mode=True, url=server + "/metrics", include_samples=True)
    assert result["changed"] is False
    assert (result["fallback_reads"], result["journal_depth"], result["requests_total"]) == (10, 6, 122)
    assert result["samples"]["sessionshift_shadow_mismatches_total"][0]["value"] == 2.0


def test_module_fails_clearly_on_a_page_that_is_not_prometheus(server, capsys, monkeypatch):
    monkeypatch.setattr(_Handler, "body", b"<html>login</html>\n{{{")
    result = run(capsys, url=server + "/metrics")
    assert result["failed"] is True and "not a Prometheus text page" in result["msg"]


def test_module_fails_clearly_on_http_errors(server, capsys, monkeypatch):
    monkeypatch.setattr(_Handler, "status", 404)
    result = run(capsys, url=server + "/nothing")
    assert result["failed"] is True and "HTTP 404" in result["msg"]
