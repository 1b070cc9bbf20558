"""Logged-in users of the demo app who notice when they lose their session or a write.

Each simulated user sticks to one app host (file sessions need sticky load balancing
until Redis serves reads), logs in once, then keeps using the app the way the seed's
load test does (3 reads of ``/`` : 1 ``/translate`` : 1 ``/set_language``). Every JSON
response carries the session's own write counter and last write, so a user checks on
every response that it is still logged in and that nothing it wrote went missing:

* ``logged_out``: the app no longer knows the user (a lost session);
* ``lost_writes``: the counter went back, or the last write is not ours;
* ``errors``: a 5xx or a connection failure.

Used by the demo (``tools/demo.py``) and by the rollout tests.
"""

from __future__ import annotations

import collections
import dataclasses
import random
import threading
import time

import requests

JSON = {"Accept": "application/json"}


@dataclasses.dataclass
class Tally:
    requests: int = 0
    errors: int = 0
    logged_out: int = 0
    lost_writes: int = 0
    latencies_ms: list[float] = dataclasses.field(default_factory=list)

    def add(self, other: Tally) -> None:
        self.requests += other.requests
        self.errors += other.errors
        self.logged_out += other.logged_out
        self.lost_writes += other.lost_writes
        self.latencies_ms.extend(other.latencies_ms)

    def percentile(self, fraction: float) -> float:
        if not self.latencies_ms:
            return 0.0
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


class SimulatedUser:
    def __init__(self, base_url: str, name: str, rng: random.Random, timeout: float = 10.0):
        self.base_url = base_url.rstrip("/")
        self.name = name
        self.rng = rng
        self.timeout = timeout
        self.http = requests.Session()
        self.writes = 0
        self.last_write: str | None = None
        self.logged_in = False

    def _call(self, tally: Tally, method: str, path: str, data: dict | None = None) -> dict | None:
        started = time.perf_counter()
        try:
            response = self.http.request(method, self.base_url + path, data=data, headers=JSON,
                                         timeout=self.timeout)
        except requests.RequestException:
            tally.requests += 1
            tally.errors += 1
            return None
        tally.requests += 1
        tally.latencies_ms.append((time.perf_counter() - started) * 1000)
        if response.status_code >= 500:
            tally.errors += 1
            return None
        try:
            return response.json()
        except ValueError:
            tally.errors += 1
            return None

    def login(self, tally: Tally) -> None:
        body = self._call(tally, "POST", "/login", {"username": self.name, "password": "demo"})
        if body and body.get("logged_in"):
            self.logged_in, self.writes, self.last_write = True, body["writes"], body["last_write"]

    def step(self, tally: Tally) -> None:
        """One request, chosen 3:1:1 like the seed's locust user, and the checks on its answer."""
        if not self.logged_in:
            self.login(tally)
            return
        roll = self.rng.randrange(5)
        if roll < 3:
            body, wrote = self._call(tally, "GET", "/"), None
        elif roll == 3:
            text = f"{self.name} says {self.rng.randrange(10**6)}"
            body = self._call(tally, "POST", "/translate",
                              {"input_text": text, "source_lang": "en", "target_lang": "ja"})
            wrote = f"translate:{text}"
        else:
            language = self.rng.choice(("en", "ja", "fr", "de"))
            body = self._call(tally, "POST", "/set_language", {"language": language})
            wrote = f"language:{language}"
        if body is None:
            return  # an error, already counted; the write may or may not have happened
        self._check(body, wrote, tally)

    def _check(self, body: dict, wrote: str | None, tally: Tally) -> None:
        if not body.get("logged_in") or body.get("user") != self.name:
            tally.logged_out += 1
            self.logged_in = False  # log in again and go on, as a real user would
            return
        expected = self.writes + (1 if wrote else 0)
        if body["writes"] < expected or (wrote and body["last_write"] != wrote):
            tally.lost_writes += 1
        elif not wrote and body["last_write"] != self.last_write and body["writes"] == self.writes:
            tally.lost_writes += 1
        self.writes, self.last_write = body["writes"], body["last_write"]


class Simulation:
    """Users on every host, in threads, until stopped; results per labelled step."""

    def __init__(self, host_urls: list[str], users_per_host: int = 10, think_time: float = 0.05,
                 seed: int = 7):
        rng = random.Random(seed)  # noqa: S311 - load pattern, not security
        self.users = [SimulatedUser(url, f"user{h}-{i}", random.Random(rng.random()))  # noqa: S311
                      for h, url in enumerate(host_urls) for i in range(users_per_host)]
        self.think_time = think_time
        self.step_label = "start"
        self.tallies: dict[str, Tally] = collections.defaultdict(Tally)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def label(self, name: str) -> None:
        """Results from now on count towards step *name*."""
        self.step_label = name

    def _run(self, user: SimulatedUser) -> None:
        while not self._stop.is_set():
            local = Tally()
            user.step(local)
            with self._lock:
                self.tallies[self.step_label].add(local)
            self._stop.wait(self.think_time)

    def start(self) -> None:
        for user in self.users:
            thread = threading.Thread(target=self._run, args=(user,), daemon=True, name=user.name)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> dict[str, Tally]:
        self._stop.set()
        for thread in self._threads:
            thread.join(30)
        return dict(self.tallies)


def check_seeded_sessions(base_url: str, expected: dict[str, str], timeout: float = 10.0) -> dict[str, int]:
    """Log each seeded user back in by its sid (the cookie) and check the session is theirs.

    *expected* maps sid -> the user name stored in its session file before the rollout.
    """
    result = {"checked": 0, "logged_in": 0, "logged_out": 0, "errors": 0}
    http = requests.Session()
    for sid, user in expected.items():
        http.cookies.clear()
        http.cookies.set("session", sid)
        result["checked"] += 1
        try:
            response = http.get(base_url.rstrip("/") + "/", headers=JSON, timeout=timeout)
            body = response.json() if response.status_code < 500 else None
        except (requests.RequestException, ValueError):
            body = None
        if body is None:
            result["errors"] += 1
        elif body.get("logged_in") and body.get("user") == user:
            result["logged_in"] += 1
        else:
            result["logged_out"] += 1
    return result
