"""make demo: the whole rollout on this machine, with logged-in users watching for losses.

1. starts a moto server on loopback (the stand-in for AWS: ElastiCache, CloudWatch, SNS, ...);
2. runs ``playbooks/site.yml`` on ``inventories/local``: phase 1 provisions moto's ElastiCache
   and alarms, a TLS-only Redis with a replica on loopback and two app hosts (gunicorn) with
   thousands of seeded sessions; then phases 2, 3, 4, a rollback to 3 and phases 4 and 5;
3. meanwhile simulated users stay logged in on every app host and check, on every response,
   that their session and their last write are still there;
4. at the end every seeded user (idle since before phase 2) is logged back in by its sid;
5. prints a summary per step, stops everything it started and exits non-zero if any user was
   logged out, any write was lost or any step failed.

    python tools/demo.py [--sessions 2000] [--users 10] [--keep]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import subprocess
import sys
import threading
import time

import requests

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from devstack.moto_server import MotoServer  # noqa: E402
from sessionshift import formats, state  # noqa: E402
from tools.usersim import Simulation, Tally, check_seeded_sessions  # noqa: E402

RUN_DIR = os.path.join(ROOT, "run", "demo")
MOTO_PORT = 15000  # inventories/local points the AWS roles here
APP_HOSTS = {"app1": "http://127.0.0.1:18001", "app2": "http://127.0.0.1:18002"}
STEPS = ["phase1", "phase2", "phase3", "phase4", "rollback to redis_read", "phase4 again", "phase5"]


def ansible_playbook(*args: str, log=None) -> subprocess.Popen:
    env = dict(os.environ, SESSIONSHIFT_LOCAL_DIR=RUN_DIR, ANSIBLE_CONFIG=os.path.join(ROOT, "ansible.cfg"),
               ANSIBLE_FORCE_COLOR="0", PYTHONUNBUFFERED="1")
    binary = os.path.join(os.path.dirname(sys.executable), "ansible-playbook")
    return subprocess.Popen([binary, "-i", os.path.join(ROOT, "inventories", "local"), *args],
                            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)


def stop_leftovers() -> None:
    """Stop the apps and Redis a previous demo left running, then start from empty."""
    if os.path.isdir(RUN_DIR):
        ansible_playbook(os.path.join("playbooks", "local_infra.yml"), "-e", "local_infra_state=stopped",
                         log=subprocess.DEVNULL).wait()
        shutil.rmtree(RUN_DIR)
    os.makedirs(RUN_DIR)


def wait_for_apps(stop: threading.Event) -> bool:
    while not stop.is_set():
        try:
            if all(requests.get(url + "/healthz", timeout=1).ok for url in APP_HOSTS.values()):
                return True
        except requests.RequestException:
            pass
        stop.wait(1)
    return False


def seeded_users(host: str) -> dict[str, str]:
    """sid -> user name, read from the session files before anything moved them."""
    base = os.path.join(RUN_DIR, host)
    with open(os.path.join(base, "seeded-sids.txt")) as handle:
        sids = [line.strip() for line in handle if line.strip()]
    users = {}
    for sid in sids:
        path = os.path.join(base, "sessions", formats.session_file_name(sid))
        users[sid] = formats.read_session_file(path).data["user"]
    return users


def read_records(path: str) -> list[dict]:
    try:
        with open(path) as handle:
            return [json.loads(line) for line in handle if line.strip()]
    except FileNotFoundError:
        return []


def host_record(host: str, name: str) -> dict:
    return state.read_json(state.state_path(os.path.join(RUN_DIR, host, "state"), name)) or {}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sessions", type=int, default=2000, help="seeded sessions per app host")
    parser.add_argument("--users", type=int, default=10, help="live simulated users per app host")
    parser.add_argument("--watch-seconds", type=int, default=4, help="watch window after each flip")
    parser.add_argument("--keep", action="store_true", help="leave Redis, the apps and moto running")
    args = parser.parse_args(argv)

    stop_leftovers()
    summary_file = os.path.join(RUN_DIR, "summary.jsonl")
    log_path = os.path.join(RUN_DIR, "ansible.log")
    print(f"sessionshift demo: logs in {os.path.relpath(log_path, ROOT)}")
    moto = MotoServer.start(port=MOTO_PORT)
    extra = {
        "session_app_seed_sessions": args.sessions,
        "rollout_watch_seconds": args.watch_seconds,
        "rollout_summary_file": summary_file,
        "rollout_cloudwatch_enabled": True,  # moto runs: gates and watch windows read its alarms
        # A demo runs outside the 02:00-06:00 Tokyo window and cannot wait a session lifetime
        # for the phase-5 cutoff: both overrides are explicit, as an operator's would be.
        "rollout_ignore_maintenance_window": True,
        "rollout_ignore_cutoff": True,
        # The phase-4 gate needs requests as evidence; a short demo window sees fewer than the
        # production default of 100, so its minimum is lowered, explicitly.
        "rollout_gate_min_requests": 20,
    }
    started = time.monotonic()
    started_at = datetime.datetime.now(datetime.UTC).isoformat()
    simulation: Simulation | None = None
    stop = threading.Event()
    try:
        with open(log_path, "w") as log:
            run = ansible_playbook(os.path.join("playbooks", "site.yml"), "-e", json.dumps(extra), log=log)
            if not wait_for_apps_or_exit(run, stop):
                return report_failure(run, log_path)
            users = {host: seeded_users(host) for host in APP_HOSTS}
            simulation = Simulation(list(APP_HOSTS.values()), users_per_host=args.users)
            simulation.label(STEPS[0])  # the apps answer before phase 1's last tasks end
            simulation.start()
            print(f"{len(simulation.users)} users logged in; "
                  f"{sum(len(u) for u in users.values())} seeded sessions idle since phase 1")
            follow_steps(run, simulation, summary_file)
            returncode = run.wait()
        tallies = simulation.stop()
        seeded = {host: check_seeded_sessions(url, users[host]) for host, url in APP_HOSTS.items()}
        print_summary(read_records(summary_file), tallies, seeded, started_at, time.monotonic() - started)
        lost = sum(t.logged_out + t.lost_writes for t in tallies.values())
        lost += sum(s["logged_out"] + s["errors"] for s in seeded.values())
        if returncode != 0:
            print(f"\nsite.yml failed (exit {returncode}): see {log_path}")
            return 1
        return 1 if lost else 0
    finally:
        stop.set()
        if simulation is not None:
            simulation.stop()
        if not args.keep:
            ansible_playbook(os.path.join("playbooks", "local_infra.yml"), "-e", "local_infra_state=stopped",
                             log=subprocess.DEVNULL).wait()
            moto.stop()


def wait_for_apps_or_exit(run: subprocess.Popen, stop: threading.Event) -> bool:
    """Wait until both app hosts answer (end of phase 1), or the playbook ended first."""
    watcher = threading.Thread(target=lambda: (run.wait(), stop.set()), daemon=True)
    watcher.start()
    return wait_for_apps(stop) and run.poll() is None


def follow_steps(run: subprocess.Popen, simulation: Simulation, summary_file: str) -> None:
    """Label the simulation's results with the step the playbook is in (from the summary records)."""
    current = 0
    while run.poll() is None:
        done = len(read_records(summary_file))  # one record at the end of each step
        if done > current and done < len(STEPS):
            current = done
            simulation.label(STEPS[current])
            print(f"  {STEPS[current - 1]} done; now {STEPS[current]}")
        time.sleep(0.5)


def report_failure(run: subprocess.Popen, log_path: str) -> int:
    run.wait()
    with open(log_path) as handle:
        tail = handle.readlines()[-40:]
    print("".join(tail))
    print(f"the rollout stopped before the apps came up: see {log_path}")
    return 1


def _utc(text: str) -> datetime.datetime:
    """An ISO time; Ansible's now(utc=true) writes it without an offset."""
    moment = datetime.datetime.fromisoformat(text)
    return moment if moment.tzinfo else moment.replace(tzinfo=datetime.UTC)


def print_summary(records: list[dict], tallies: dict[str, Tally], seeded: dict, started_at: str,
                  elapsed: float) -> None:
    print("\nstep                     time   requests  errors  logged out  lost writes   p95 ms  phases")
    previous_at = started_at
    for index, record in enumerate(records):
        at = record["at"]
        delta = _utc(at) - _utc(previous_at)
        seconds = f"{delta.total_seconds():5.0f}s"
        previous_at = at
        name = STEPS[index] if index < len(STEPS) else record["step"]
        tally = tallies.get(name, Tally())
        phases = ",".join(sorted(set(record["hosts"].values())))
        print(f"{name:<24} {seconds:>5} {tally.requests:>10} {tally.errors:>7} {tally.logged_out:>11} "
              f"{tally.lost_writes:>12} {tally.percentile(0.95):>8.1f}  {phases}")
    print()
    for host in APP_HOSTS:
        migrate = host_record(host, state.MIGRATE_FILE)
        validation = host_record(host, state.VALIDATION_FILE)
        export = host_record(host, state.EXPORT_FILE)
        print(f"{host}: migrated {migrate.get('counts', {}).get('written', '?')} sessions, "
              f"validation {validation.get('consistency_percent', '?')}% consistent, "
              f"rollback export wrote {export.get('written', '?')} files; "
              f"seeded users back: {seeded[host]['logged_in']}/{seeded[host]['checked']} "
              f"(logged out {seeded[host]['logged_out']}, errors {seeded[host]['errors']})")
    total = Tally()
    for tally in tallies.values():
        total.add(tally)
    print(f"\nall steps: {total.requests} requests by live users, {total.errors} errors, "
          f"{total.logged_out} users logged out, {total.lost_writes} lost writes; {elapsed:.0f}s in all")


if __name__ == "__main__":
    sys.exit(main())
