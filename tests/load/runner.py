"""Run the locustfile headless in a subprocess and read what its users saw.

    run = LocustRun.start(hosts, users=50, spawn_rate=10, run_time=60, out_dir="bench/results/load",
                          name="baseline")
    ... (flip, fault) ...
    run.stop()                      # or run.wait(); locust writes its CSV and JSON on the way out
    events = read_events(run.events_file)
    window_stats(events, start, end)

The locustfile logs one line per request (time, path, ms, status, verdict, phase), so results can be
cut into windows after the fact: per rollout step, per fault phase, per second.
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import re
import signal
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LOCUSTFILE = os.path.join(ROOT, "tests", "load", "locustfile.py")
RESULTS_DIR = os.path.join(ROOT, "bench", "results", "load")
DOC = os.path.join(ROOT, "docs", "load.md")

# The seed's profiles (section 2.3), headless and bounded in time.
PROFILES = {
    "baseline": {"users": 50, "spawn_rate": 10},
    "stress": {"users": 200, "spawn_rate": 20},
    "spike": {"users": 500, "spawn_rate": 250},
}


@dataclasses.dataclass(frozen=True)
class Event:
    at: float
    name: str
    ms: float
    status: int
    verdict: str  # ok, session_lost, write_lost, error
    phase: str = ""  # the phase the answering worker served it in (X-Session-Phase)


@dataclasses.dataclass
class LocustRun:
    process: subprocess.Popen
    prefix: str
    events_file: str
    checks_file: str
    log_file: str
    started_at: float

    @classmethod
    def start(cls, hosts: list[str], *, users: int, spawn_rate: float, run_time: int, out_dir: str,
              name: str, wait: str | None = None) -> LocustRun:
        os.makedirs(out_dir, exist_ok=True)
        prefix = os.path.join(out_dir, name)
        for suffix in (".events.csv", ".checks.json"):
            if os.path.exists(prefix + suffix):
                os.unlink(prefix + suffix)
        env = dict(os.environ, LOAD_HOSTS=",".join(hosts), LOAD_EVENTS_FILE=prefix + ".events.csv",
                   LOAD_CHECKS_FILE=prefix + ".checks.json",
                   PYTHONPATH=os.pathsep.join(filter(None, [ROOT, os.environ.get("PYTHONPATH")])))
        if wait:
            env["LOAD_WAIT"] = wait
        command = [sys.executable, "-m", "locust", "-f", LOCUSTFILE, "--headless", "-u", str(users),
                   "-r", str(spawn_rate), "--run-time", f"{run_time}s", "--stop-timeout", "10",
                   "--csv", prefix, "--json-file", prefix, "--only-summary",
                   "--exit-code-on-error", "0"]
        log = open(prefix + ".log", "w")
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                                   start_new_session=True)
        log.close()
        return cls(process, prefix, prefix + ".events.csv", prefix + ".checks.json", prefix + ".log",
                   time.time())

    def wait(self, timeout: float) -> int:
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.stop()
            raise

    def stop(self) -> int:
        """Stop the users (SIGTERM: locust writes its stats on the way out), then the process."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                return self.process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
        return self.process.wait(10)

    def checks(self) -> dict:
        with open(self.checks_file) as handle:
            return json.load(handle)

    def log_tail(self, lines: int = 30) -> str:
        with open(self.log_file, errors="replace") as handle:
            return "".join(handle.readlines()[-lines:])


def read_events(path: str) -> list[Event]:
    events = []
    with open(path) as handle:
        for line in handle:
            parts = line.rstrip("\n").split(",")
            if len(parts) in (5, 6):  # files written before the phase column have 5
                events.append(Event(float(parts[0]), parts[1], float(parts[2]), int(parts[3]), *parts[4:]))
    return sorted(events, key=lambda event: event.at)


def _percentile(ordered: list[float], fraction: float) -> float:
    if not ordered:
        return 0.0
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def window_stats(events: list[Event], start: float = 0.0, end: float = float("inf")) -> dict:
    """What users saw between *start* and *end* (unix times, by request start)."""
    chosen = [event for event in events if start <= event.at < end]
    latencies = sorted(event.ms for event in chosen)
    span = (min(end, chosen[-1].at) - max(start, chosen[0].at)) if chosen else 0.0
    return {
        "requests": len(chosen),
        "rps": round(len(chosen) / span, 1) if span > 0 else 0.0,
        "p50_ms": round(_percentile(latencies, 0.50), 1),
        "p95_ms": round(_percentile(latencies, 0.95), 1),
        "p99_ms": round(_percentile(latencies, 0.99), 1),
        "max_ms": round(latencies[-1], 1) if latencies else 0.0,
        "errors": sum(event.verdict == "error" for event in chosen),
        "errors_5xx": sum(500 <= event.status < 600 for event in chosen),
        "sessions_lost": sum(event.verdict == "session_lost" for event in chosen),
        "writes_lost": sum(event.verdict == "write_lost" for event in chosen),
    }


def timeline(events: list[Event], start: float, bucket: float = 1.0) -> dict:
    """Requests, errors and losses per *bucket* seconds since *start*."""
    if not events:
        return {"bucket_seconds": bucket, "requests": [], "errors": [], "lost": []}
    size = int((events[-1].at - start) // bucket) + 1
    series = {"requests": [0] * size, "errors": [0] * size, "lost": [0] * size}
    for event in events:
        index = int((event.at - start) // bucket)
        if 0 <= index < size:
            series["requests"][index] += 1
            series["errors"][index] += event.verdict == "error"
            series["lost"][index] += event.verdict in ("session_lost", "write_lost")
    return {"bucket_seconds": bucket, **series}


def markdown_table(rows: list[dict], columns: list[tuple[str, str]]) -> str:
    """*columns*: (key, header) pairs."""
    lines = ["| " + " | ".join(header for _, header in columns) + " |",
             "|" + "|".join("---" for _ in columns) + "|"]
    for row in rows:
        lines.append("| " + " | ".join(str(row.get(key, "")) for key, _ in columns) + " |")
    return "\n".join(lines)


STEP_COLUMNS = [("requests", "requests"), ("rps", "req/s"), ("p50_ms", "p50 ms"), ("p95_ms", "p95 ms"),
                ("p99_ms", "p99 ms"), ("errors", "errors"), ("sessions_lost", "sessions lost"),
                ("writes_lost", "writes lost")]


def machine() -> str:
    cpus = os.cpu_count()
    try:
        with open("/proc/cpuinfo") as handle:
            model = re.search(r"model name\s*:\s*(.*)", handle.read())
    except OSError:
        model = None
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    cpu = model.group(1) if model else "unknown CPU"
    return (f"{platform.system()} {platform.release()}, {cpus} CPUs ({cpu}), "
            f"Python {platform.python_version()}, load average {load:.1f} at the start (shared machine)")


def replace_section(name: str, text: str, path: str = DOC) -> None:
    """Put *text* between ``<!-- name:begin -->`` and ``<!-- name:end -->`` in docs/load.md."""
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    with open(path) as handle:
        document = handle.read()
    if begin not in document or end not in document:
        raise ValueError(f"{path} has no {begin} ... {end} markers for the {name} results")
    head, rest = document.split(begin, 1)
    _, tail = rest.split(end, 1)
    with open(path, "w") as handle:
        handle.write(f"{head}{begin}\n{text.strip()}\n{end}{tail}")
