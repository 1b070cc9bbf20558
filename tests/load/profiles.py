"""The seed's three load levels against the demo app, with the session checks.

    python -m tests.load.profiles [--profiles baseline,stress,spike] [--run-time 60] [--phase redis_read]
    python -m tests.load.profiles --inventory inventories/staging [--profiles baseline]

Each profile runs headless for --run-time seconds, users sticky and dealt over the app hosts.
Without --inventory it runs against a fresh local fleet (a TLS Redis and two gunicorn app hosts
in --phase) and writes the table in docs/load.md. With --inventory it runs against that
inventory's ``app_servers`` as they are (each host's ``sessionshift_load_url``, else its
``session_app_url``) and prints the table. Results: locust's CSV and JSON plus the per-request
event log under bench/results/load/. The seed's bar (p95 < 500 ms, errors < 1 %, >= 100 req/s)
is shown next to ours: no session lost, no write lost.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
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


def inventory_urls(inventory: str) -> list[str]:
    """The base URL of every app host of *inventory*, as Ansible renders it (nothing is contacted)."""
    command = [os.path.join(os.path.dirname(sys.executable), "ansible"), "app_servers", "-i", inventory,
               "-m", "ansible.builtin.debug",
               "-a", "msg={{ sessionshift_load_url | default(session_app_url) }}"]
    env = dict(os.environ, ANSIBLE_LOAD_CALLBACK_PLUGINS="1", ANSIBLE_STDOUT_CALLBACK="ansible.builtin.json")
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120, check=False)
    if done.returncode != 0:
        raise SystemExit(f"cannot read the app hosts of {inventory}: "
                         f"{done.stdout[-2000:]}{done.stderr[-2000:]}")
    hosts = json.loads(done.stdout)["plays"][0]["tasks"][0]["hosts"]
    return [hosts[name]["msg"] for name in sorted(hosts)]


def run_profile(name: str, *, run_time: int, phase: str, hosts: int, workers: int,
                urls: list[str] | None = None, prefix: str = "", out_dir: str = RESULTS_DIR) -> dict:
    profile = PROFILES[name]
    if urls:  # an inventory's app hosts, as they are
        run = LocustRun.start(urls, users=profile["users"], spawn_rate=profile["spawn_rate"],
                              run_time=run_time, out_dir=out_dir, name=prefix + name)
        run.wait(timeout=run_time + 120)
        return _row(name, run)
    directory = tempfile.mkdtemp(prefix=f"load-{name}-")
    try:
        with Fleet.start(directory, hosts=hosts, workers=workers, phase=phase) as fleet:
            run = LocustRun.start(fleet.urls, users=profile["users"], spawn_rate=profile["spawn_rate"],
                                  run_time=run_time, out_dir=out_dir, name=name)
            run.wait(timeout=run_time + 120)
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    return _row(name, run)


def _row(name: str, run: LocustRun) -> dict:
    profile = PROFILES[name]
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
    parser.add_argument("--inventory",
                        help="run against this inventory's app_servers instead of a local fleet")
    parser.add_argument("--out-dir", default=RESULTS_DIR, help="where locust's files go")
    args = parser.parse_args(argv)
    about = machine()
    urls = inventory_urls(args.inventory) if args.inventory else None
    prefix = os.path.basename(os.path.normpath(args.inventory)) + "-" if args.inventory else ""
    if urls:
        print(f"app hosts of {args.inventory}: {', '.join(urls)}", flush=True)
    rows = []
    for name in args.profiles.split(","):
        print(f"profile {name}: {PROFILES[name]['users']} users for {args.run_time}s", flush=True)
        row = run_profile(name, run_time=args.run_time, phase=args.phase, hosts=args.hosts,
                          workers=args.workers, urls=urls, prefix=prefix, out_dir=args.out_dir)
        print(f"  {row}", flush=True)
        rows.append(row)
    columns = [("profile", "profile"), ("users", "users"), ("spawn_rate", "spawn/s"), *STEP_COLUMNS,
               ("error_rate", "error rate"), ("checked", "answers checked"), ("seed_bar", "seed's bar")]
    command = " ".join(["python -m tests.load.profiles", *(argv if argv is not None else sys.argv[1:])])
    if urls:  # someone else's hosts: the table is printed, docs/load.md keeps the reference run
        print(markdown_table(rows, columns), flush=True)
    else:
        replace_section("profiles", "\n".join([
            f"`{command}` — {args.hosts} app hosts x {args.workers} gunicorn workers in `{args.phase}`, "
            f"{args.run_time} s per profile; {about}.", "", markdown_table(rows, columns)]))
    lost = sum(row["sessions_lost"] + row["writes_lost"] for row in rows)
    return 1 if lost else 0


if __name__ == "__main__":
    sys.exit(main())
