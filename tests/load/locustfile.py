"""The seed's load test (section 2.3), made to notice a lost session or a lost write.

Each user logs in once, then, with the seed's 1-3 s think time, reads ``/`` three times
for each ``/translate`` post and each ``/set_language`` post (3:1:1). Every answer is
checked against what the user last wrote (tests/load/checks.py): a lost session or a lost
write is a locust failure *and* counted apart, so it cannot hide among status codes.

Users are sticky: each talks to one app host for its whole life (file sessions need a
sticky load balancer until Redis serves the reads), and users are dealt round-robin over
the hosts.

    LOAD_HOSTS=http://127.0.0.1:18001,http://127.0.0.1:18002 \\
      locust -f tests/load/locustfile.py --headless -u 50 -r 10 --run-time 60s

Environment:
  LOAD_HOSTS          comma-separated app base URLs (else locust's --host)
  LOAD_WAIT           think time range in seconds, "min,max" (default "1,3", the seed's)
  LOAD_EVENTS_FILE    write one line per request: unix time, name, ms, status, verdict, phase
  LOAD_CHECKS_FILE    write the check counters as JSON when the run ends
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import random
import time

from locust import HttpUser, between, events, task

from tests.load.checks import OK, SESSION_LOST, WRITE_LOST, Expectation

JSON = {"Accept": "application/json"}
HOSTS = [url.strip().rstrip("/") for url in os.environ.get("LOAD_HOSTS", "").split(",") if url.strip()]
WAIT = tuple(float(x) for x in os.environ.get("LOAD_WAIT", "1,3").split(","))
LANGUAGES = ("en", "ja", "fr", "de")

# The custom stats: every answer checked, by verdict, plus transport/HTTP errors and logins.
CHECKS = {"checked": 0, OK: 0, SESSION_LOST: 0, WRITE_LOST: 0, "errors": 0, "logins": 0}
_user_numbers = itertools.count()
_events_file = None


@events.test_start.add_listener
def _open_events(environment, **_kwargs) -> None:
    global _events_file
    path = os.environ.get("LOAD_EVENTS_FILE")
    if path and _events_file is None:
        _events_file = open(path, "a", buffering=1 << 16)


def _record(name: str, started: float, elapsed_ms: float, status: int, verdict: str, phase: str) -> None:
    if _events_file is not None:
        _events_file.write(f"{started:.3f},{name},{elapsed_ms:.1f},{status},{verdict},{phase}\n")


@events.quitting.add_listener
def _report(environment, **_kwargs) -> None:
    if _events_file is not None:
        _events_file.flush()
    lost = CHECKS[SESSION_LOST] + CHECKS[WRITE_LOST]
    logging.getLogger("load").info("session checks: %s", json.dumps(CHECKS))
    path = os.environ.get("LOAD_CHECKS_FILE")
    if path:
        with open(path, "w") as handle:
            json.dump(CHECKS, handle)
    if lost:
        environment.process_exit_code = 1


class SessionUser(HttpUser):
    """One logged-in user on one app host, checking its session on every answer."""

    wait_time = between(*WAIT)
    host = HOSTS[0] if HOSTS else None

    def on_start(self) -> None:
        number = next(_user_numbers)
        if HOSTS:
            self.client.base_url = HOSTS[number % len(HOSTS)]
        self.expect = Expectation(f"load{number}")
        self.rng = random.Random(number)
        self.login()

    def login(self) -> None:
        self.client.cookies.clear()  # a fresh session, as after a real logout
        body = self._call("POST", "/login", {"username": self.expect.user, "password": "load"})
        if body is not None:
            CHECKS["logins"] += 1
            self.expect.logged_in_as(body)

    def _call(self, method: str, path: str, data: dict | None = None, wrote: str | None = None,
              check: bool = False) -> dict | None:
        """One request; a 5xx, a transport error or a failed check is a locust failure."""
        started = time.time()
        with self.client.request(method, path, data=data, headers=JSON, name=path,
                                 catch_response=True) as response:
            elapsed_ms = (time.time() - started) * 1000
            status = response.status_code or 0
            phase = response.headers.get("X-Session-Phase", "") if response.headers else ""
            try:
                body = response.json() if 200 <= status < 300 else None
            except ValueError:
                body = None
            if body is None:
                CHECKS["errors"] += 1
                response.failure(f"HTTP {status}: {(response.text or '')[:120]!r}")
                _record(path, started, elapsed_ms, status, "error", phase)
                return None  # the write may or may not have happened: the next check tells
            verdict = OK
            if check:
                CHECKS["checked"] += 1
                had = self.expect.writes
                verdict = self.expect.check(body, wrote)
                CHECKS[verdict] += 1
                if verdict != OK:
                    response.failure(f"{verdict}: {self.expect.user} had {had} writes, the answer says "
                                     f"{body.get('writes')} for {body.get('user')!r}")
            _record(path, started, elapsed_ms, status, verdict, phase)
            return body

    def _ensure_logged_in(self) -> bool:
        if not self.expect.logged_in:
            self.login()
            return False
        return True

    @task(3)
    def read_page(self) -> None:
        if self._ensure_logged_in():
            self._call("GET", "/", check=True)

    @task(1)
    def translate(self) -> None:
        if self._ensure_logged_in():
            text = f"{self.expect.user} says {self.rng.randrange(10**6)}"
            self._call("POST", "/translate", {"input_text": text, "source_lang": "en", "target_lang": "ja"},
                       wrote=f"translate:{text}", check=True)

    @task(1)
    def set_language(self) -> None:
        if self._ensure_logged_in():
            language = self.rng.choice(LANGUAGES)
            self._call("POST", "/set_language", {"language": language}, wrote=f"language:{language}",
                       check=True)
