"""devstack.local_stack.Traffic: the background users the runbook test's phase-4 gate needs."""

from __future__ import annotations

import http.server
import threading
import time

from devstack.local_stack import Traffic


class TornThenFine(http.server.BaseHTTPRequestHandler):
    """The first responses are cut short (as by a worker restarting mid-response), then whole."""

    torn_left = 3

    def do_GET(self):
        self.send_response(200)
        if TornThenFine.torn_left > 0:
            TornThenFine.torn_left -= 1
            self.send_header("Content-Length", "100")  # promises more than it sends
            self.end_headers()
            self.wfile.write(b"short")
            self.close_connection = True
            return
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args):
        pass


def test_traffic_carries_on_after_torn_responses():
    # A torn response raises http.client.IncompleteRead, which is not an OSError: the first
    # Traffic died on it and the runbook's phase-4 gate then saw no requests at all.
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), TornThenFine)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with Traffic([f"http://127.0.0.1:{server.server_port}"], pause=0.001) as traffic:
            deadline = time.monotonic() + 30
            while traffic.served < 5 and time.monotonic() < deadline:
                time.sleep(0.01)
            assert traffic.thread.is_alive(), traffic.summary()
        assert traffic.failed == 3, traffic.summary()
        assert traffic.served >= 5, traffic.summary()
        assert "IncompleteRead" in traffic.last_error
    finally:
        server.shutdown()
        server.server_close()
