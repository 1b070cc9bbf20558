"""The seed's three load levels against the demo app on loopback, with the session checks.

    python -m tests.load.profiles [--profiles baseline,stress,spike] [--run-time 60] [--phase redis_read]

Each profile runs headless for --run-time seconds against a fresh fleet (a TLS Redis and two
gunicorn app hosts in --phase); users are sticky and dealt over the hosts. Results: locust's
CSV and JSON plus the per-request event log under bench/results/load/, and the table in
docs/load.md. The seed's bar (p95 < 500 ms, errors < 1 %, >= 100 req/s) is shown next to ours:
no session lost, no write lost.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile

from tests.load.apps import Fleet
from tests.load.runner import (
    PROFILES,
    RESULTS_DIR,
    STEP_COLUMNS,
    LocustRun,
    machine,
    markdown_table,
    read_events,
    replace_section,
    window_stats,
)


def run_profile(name: str, *, run_time: int, phase: str, hosts: int, workers: int) -> dict:
    profile = PROFILES[name]
    directory = tempfile.mkdtemp(prefix=f"load-{name}-")
    try:
        with Fleet.start(directory, hosts=hosts, workers=workers, phase=phase) as fleet:
            run = LocustRun.start(fleet.urls, users=profile["users"], spawn_rate=profile["spawn_rate"],
                                  run_time=run_time, out_dir=RESULTS_DIR, name=name)
            run.wait(timeout=run_time + 120)
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    checks = run.checks()
    stats = window_stats(read_events(run.events_file))
    error_rate = 100.0 * stats["errors"] / max(1, stats["requests"])
    return {"profile": name, "users": profile["users"], "spawn_rate": profile["spawn_rate"], **stats,
            "error_rate": f"{error_rate:.2f} %", "checked": checks["checked"],
            "seed_bar": "pass" if stats["p95_ms"] < 500 and error_rate < 1 and stats["rps"] >= 100 else
            "fail: " + ", ".join(filter(None, [
                "p95" if stats["p95_ms"] >= 500 else "", "errors" if error_rate >= 1 else "",
                "req/s" if stats["rps"] < 100 else ""]))}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--profiles", default="baseline,stress,spike")
    parser.add_argument("--run-time", type=int, default=60, help="seconds per profile")
    parser.add_argument("--phase", default="redis_read", help="the phase every host serves in")
    parser.add_argument("--hosts", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers per host")
    args = parser.parse_args(argv)
    about = machine()
    rows = []
    for name in args.profiles.split(","):
        print(f"profile {name}: {PROFILES[name]['users']} users for {args.run_time}s", flush=True)
        row = run_profile(name, run_time=args.run_time, phase=args.phase, hosts=args.hosts,
                          workers=args.workers)
        print(f"  {row}", flush=True)
        rows.append(row)
    columns = [("profile", "profile"), ("users", "users"), ("spawn_rate", "spawn/s"), *STEP_COLUMNS,
               ("error_rate", "error rate"), ("checked", "answers checked"), ("seed_bar", "seed's bar")]
    command = " ".join(["python -m tests.load.profiles", *(argv if argv is not None else sys.argv[1:])])
    replace_section("profiles", "\n".join([
        f"`{command}` — {args.hosts} app hosts x {args.workers} gunicorn workers in `{args.phase}`, "
        f"{args.run_time} s per profile; {about}.", "", markdown_table(rows, columns)]))
    lost = sum(row["sessions_lost"] + row["writes_lost"] for row in rows)
    return 1 if lost else 0


if __name__ == "__main__":
    os.makedirs(RESULTS_DIR, exist_ok=True)
    sys.exit(main())
