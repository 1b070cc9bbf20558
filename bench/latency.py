"""Issue 7's per-phase latency: p50/p99 of session-touching requests in each phase, side by side.

The demo app (``examples/translate_app``) runs under real gunicorn
(``devstack.gunicorn_app``) on the same TLS + ACL redis-server as the
other benchmarks. A fixed set of users logs in once (phase 1). Then, in each
of several rounds, the host walks through the phases 1, 2, 3, 4, 5 the way a
rollout does (phase file written with ``sessionshift.phasefile.set_phase``;
the backfill runs before phase 3; the Redis -> files export and an emergency
flip back to ``file`` close each round, as a rollback would) and, in each
phase, a load generator in a second process sends the same closed-loop load:
``concurrency`` threads, each cycling over its users with ``POST /translate``
then ``GET /``, for ``seconds`` (bounded also in requests). Interleaving the
phases over rounds cancels slow drift of the machine; the samples of a phase
are pooled over the rounds.

Each response must be a 200 for a logged-in user and carry the expected
``X-Session-Phase`` header; any other response is counted, not timed.

    python -m bench.latency client --url http://127.0.0.1:PORT --sids-file F ...  (the load generator)
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import subprocess
import sys
import threading
import time
import urllib.parse

from sessionshift import phasefile
from sessionshift.keys import KeyLayout

from .redisenv import BenchRedis
from .report import percentile, ratio, target_row

PHASES = ("file", "dual_write", "redis_read", "redis_only", "redis")
TARGETS = {"dual_write": 1.2, "redis_read": 1.0, "redis_only": 1.0, "redis": 1.0}  # p99 / phase 1's
ENDPOINTS = ("POST /translate", "GET /")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# --------------------------------------------------------------------------- the load generator


def _request(host: str, port: int, method: str, path: str, sid: str,
             body: str | None) -> tuple[int, dict, str]:
    connection = http.client.HTTPConnection(host, port, timeout=10)
    try:
        headers = {"Cookie": f"session={sid}", "Accept": "application/json", "Connection": "close"}
        if body is not None:
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        connection.request(method, path, body=body, headers=headers)
        response = connection.getresponse()
        payload = response.read()
        return response.status, dict(response.getheaders()), payload.decode("utf-8", "replace")
    finally:
        connection.close()


def _user_loop(url: str, sids: list[str], phase: str, stop_at: float, budget: list[int],
               lock: threading.Lock, samples: dict[str, list[float]], errors: dict[str, int]) -> None:
    parts = urllib.parse.urlsplit(url)
    turn = 0
    while time.monotonic() < stop_at:
        with lock:
            if budget[0] <= 0:
                return
            budget[0] -= 2
        sid = sids[turn % len(sids)]
        turn += 1
        body = urllib.parse.urlencode({"input_text": f"good morning {turn}", "source_lang": "en",
                                       "target_lang": "ja"})
        for endpoint, (method, path, data) in zip(ENDPOINTS, (("POST", "/translate", body),
                                                              ("GET", "/", None)), strict=True):
            started = time.perf_counter()
            try:
                status, headers, text = _request(parts.hostname, parts.port, method, path, sid, data)
            except (OSError, http.client.HTTPException) as exc:
                with lock:
                    errors[f"{endpoint}: {type(exc).__name__}"] = errors.get(
                        f"{endpoint}: {type(exc).__name__}", 0) + 1
                continue
            elapsed = time.perf_counter() - started
            problem = None
            if status != 200:
                problem = f"HTTP {status}"
            elif headers.get("X-Session-Phase") != phase:
                problem = f"phase {headers.get('X-Session-Phase')}"
            elif '"logged_in":true' not in text.replace(" ", ""):
                problem = "not logged in"
            with lock:
                if problem:
                    errors[f"{endpoint}: {problem}"] = errors.get(f"{endpoint}: {problem}", 0) + 1
                else:
                    samples[endpoint].append(elapsed)


def generate_load(url: str, sids: list[str], phase: str, concurrency: int, seconds: float,
                  max_requests: int) -> dict:
    """Closed-loop load: *concurrency* threads, each with its own share of the users."""
    samples: dict[str, list[float]] = {endpoint: [] for endpoint in ENDPOINTS}
    errors: dict[str, int] = {}
    lock = threading.Lock()
    budget = [max_requests]
    stop_at = time.monotonic() + seconds
    shares = [sids[i::concurrency] for i in range(concurrency)]
    threads = [threading.Thread(target=_user_loop, args=(url, share, phase, stop_at, budget, lock,
                                                         samples, errors), daemon=True)
               for share in shares if share]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(seconds + 30)
    return {"samples": samples, "errors": errors, "elapsed": time.monotonic() - started}


def _client_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.latency client")
    parser.add_argument("--url", required=True)
    parser.add_argument("--sids-file", required=True)
    parser.add_argument("--phase", required=True)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--max-requests", type=int, default=100_000)
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    host = urllib.parse.urlsplit(args.url).hostname
    if host not in ("127.0.0.1", "localhost", "::1"):
        parser.error("the load generator only talks to loopback")
    with open(args.sids_file) as handle:
        sids = [line.strip() for line in handle if line.strip()]
    result = generate_load(args.url, sids, args.phase, args.concurrency, args.seconds, args.max_requests)
    with open(args.out, "w") as handle:
        json.dump(result, handle)
    return 0


# --------------------------------------------------------------------------- the orchestration


def _login(url: str, count: int) -> list[str]:
    """Log *count* users in (phase 1: their sessions are files); their session ids."""
    parts = urllib.parse.urlsplit(url)
    sids = []
    for index in range(count):
        connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
        try:
            body = urllib.parse.urlencode({"username": f"bench{index}", "password": "x", "language": "ja"})
            connection.request("POST", "/login", body=body, headers={
                "Accept": "application/json", "Content-Type": "application/x-www-form-urlencoded"})
            response = connection.getresponse()
            response.read()
            cookie = response.getheader("Set-Cookie", "")
        finally:
            connection.close()
        if response.status != 200 or not cookie.startswith("session="):
            raise RuntimeError(f"login of bench{index} failed: HTTP {response.status}, cookie {cookie!r}")
        sids.append(cookie.split(";", 1)[0].split("=", 1)[1])
    return sids


def _flip(state_dir: str, phase: str) -> None:
    # The benchmark walks the phases in order; the only jump is 5 -> 1, an emergency rollback
    # (allowed after the export that precedes it).
    current = phasefile.read_phase(state_dir).phase.label
    emergency = phase == "file" and current != "file"
    phasefile.set_phase(state_dir, phase, by="bench", emergency=emergency)


def _between_phases(redis: BenchRedis, app, target: str, log) -> None:
    """What a rollout does before entering *target* (not timed)."""
    from sessionshift.export import export_sessions
    from sessionshift.migrate import MigrateConfig, migrate

    if target == "redis_read":
        result = migrate(redis.settings, MigrateConfig(session_dir=app.session_dir, workers=1))
        log(f"    backfill before redis_read: {result.counts['written']:,} written, "
            f"{result.counts['exists']:,} already there")
    if target == "file" and phasefile.read_phase(app.state_dir).phase.label != "file":
        client = redis.client()
        try:
            result = export_sessions(client, KeyLayout(), app.session_dir, state_dir=app.state_dir)
        finally:
            client.close()
        log(f"    export before file: {result.written:,} files written")
        _flip(app.state_dir, "file")
        redis.flush()  # a fresh start: phase 2 fills Redis again, the backfill completes it


def _summarise(samples: list[float]) -> dict:
    if not samples:
        return {"count": 0}
    return {"count": len(samples), "p50_ms": round(percentile(samples, 0.5) * 1000, 3),
            "p99_ms": round(percentile(samples, 0.99) * 1000, 3),
            "mean_ms": round(sum(samples) / len(samples) * 1000, 3)}


def run(redis: BenchRedis, scratch: str, *, rounds: int = 3, seconds: float = 10.0, users: int = 64,
        concurrency: int = 4, workers: int = 3, max_requests: int = 200_000, log=print) -> dict:
    from devstack.gunicorn_app import GunicornApp

    app_dir = os.path.join(scratch, "latency-app")
    config = {"SESSIONSHIFT_REDIS": {"url": redis.settings.url, "username": redis.username,
                                     "password": redis.password, "ca_file": redis.ca_file},
              "SESSIONSHIFT_PHASE_CHECK_INTERVAL": 0.2}
    pooled: dict[str, dict[str, list[float]]] = {p: {e: [] for e in ENDPOINTS} for p in PHASES}
    per_round: list[dict] = []
    errors: dict[str, dict[str, int]] = {p: {} for p in PHASES}
    redis.flush()
    with GunicornApp.start(app_dir, config, workers=workers) as app:
        os.makedirs(app.state_dir, exist_ok=True)
        sids = _login(app.url, users)
        sids_file = os.path.join(scratch, "latency-sids.txt")
        with open(os.open(sids_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as handle:
            handle.write("\n".join(sids) + "\n")
        log(f"latency: gunicorn {workers} workers, {users} users, concurrency {concurrency}, "
            f"{seconds:g}s per phase, {rounds} round(s)")
        # Warm every worker up (imports, first Redis connection, page cache) before any window
        # is timed, so phase 1 of round 1 does not carry the start-up cost; not recorded.
        _flip(app.state_dir, "file")
        subprocess.run([sys.executable, "-m", "bench.latency", "client", "--url", app.url,
                        "--sids-file", sids_file, "--phase", "file", "--concurrency", str(concurrency),
                        "--seconds", str(min(seconds, 5.0)), "--out", os.path.join(scratch, "warmup.json")],
                       check=True, cwd=ROOT, timeout=seconds + 120)
        for round_index in range(rounds):
            for phase in PHASES:
                _between_phases(redis, app, phase, log)
                _flip(app.state_dir, phase)
                time.sleep(0.6)  # > SESSIONSHIFT_PHASE_CHECK_INTERVAL: every worker has seen the flip
                out = os.path.join(scratch, f"latency-{round_index}-{phase}.json")
                subprocess.run([sys.executable, "-m", "bench.latency", "client", "--url", app.url,
                                "--sids-file", sids_file, "--phase", phase, "--concurrency",
                                str(concurrency), "--seconds", str(seconds), "--max-requests",
                                str(max_requests), "--out", out], check=True, cwd=ROOT,
                               timeout=seconds + 120)
                with open(out) as handle:
                    window = json.load(handle)
                for endpoint in ENDPOINTS:
                    pooled[phase][endpoint].extend(window["samples"][endpoint])
                for key, count in window["errors"].items():
                    errors[phase][key] = errors[phase].get(key, 0) + count
                summary = {e: _summarise(window["samples"][e]) for e in ENDPOINTS}
                per_round.append({"round": round_index + 1, "phase": phase, "elapsed": window["elapsed"],
                                  "errors": window["errors"], **summary})
                log(f"  round {round_index + 1} {phase:<10} " + "  ".join(
                    f"{e}: p50 {summary[e].get('p50_ms', 0):.1f} ms p99 {summary[e].get('p99_ms', 0):.1f} ms"
                    for e in ENDPOINTS) + (f"  errors {window['errors']}" if window["errors"] else ""))
    phases = {p: {e: _summarise(pooled[p][e]) for e in ENDPOINTS} for p in PHASES}
    rows = []
    for phase in PHASES[1:]:
        for endpoint in ENDPOINTS:
            base, here = phases["file"][endpoint], phases[phase][endpoint]
            if base.get("count") and here.get("count"):
                value = ratio(here["p99_ms"], base["p99_ms"])
                here["p99_vs_file"] = round(value, 3)
                here["p50_vs_file"] = round(ratio(here["p50_ms"], base["p50_ms"]), 3)
                rows.append(target_row("latency", f"{phase} {endpoint} p99 / file", value, TARGETS[phase]))
    return {"results": {"phases": phases, "per_round": per_round, "errors": errors, "rounds": rounds,
                        "seconds_per_phase": seconds, "users": users, "concurrency": concurrency,
                        "gunicorn_workers": workers},
            "rows": rows, "samples": pooled}


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "client":
        sys.exit(_client_main(sys.argv[2:]))
    sys.exit("usage: python -m bench.latency client --url ... (the orchestration runs from python -m bench)")
