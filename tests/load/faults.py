"""Faults during load: what users saw, and what was lost (target: nothing).

    python -m tests.load.faults [--only NAME,...] [--users 30] [--outage 30] [--pause 10]
                                [--failover-delay 5]

Each scenario gets a fresh fleet (a TLS Redis with AOF, two gunicorn app hosts x 2 workers,
tests/load/apps.py), locust users (sticky, checking every answer, think time 0.2-1 s), a
quiet period, the fault, and a recovery period in which every user keeps checking that what
it wrote before and during the fault is still there. Results per window (before / during /
after the fault), the journal depth at the end, and for the migration the validation.

How each fault is made:
  redis down        the primary is SIGKILLed and started again on the same port after --outage s
                    (its AOF, fsynced on every write, brings the data back, as a node reboot would)
  redis failover    the fleet has a replica and the apps reach Redis through a TCP forwarder
                    standing in for ElastiCache's primary endpoint; the primary is SIGKILLed,
                    the replica promoted (REPLICAOF NO ONE), and after --failover-delay s the
                    endpoint moves to it, dropping the connections it still held (the DNS move);
                    "with a lagging replica": the replication stream is held back for
                    --replica-lag s before the kill and what was held is lost with the primary
  redis paused      SIGSTOP for --pause s, then SIGCONT
  disk full         app1's session directory is a 4 MB tmpfs (needs root for mount); a filler
                    file takes every free block for --pause s
  app restart       app1's gunicorn master gets SIGHUP (graceful reload: new workers) and one of
                    app2's workers is SIGKILLed, in the same second the fleet flips 2 -> 3
  migration killed  20 000 seeded sessions on app1, `sessionshift migrate` SIGKILLed mid-way,
                    run again (it resumes from its checkpoint), then `sessionshift validate`
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable

from sessionshift.journal import Journal
from sessionshift.redisconn import connect
from sessionshift.seed import seed_sessions
from tests.load.apps import Fleet
from tests.load.runner import (
    RESULTS_DIR,
    LocustRun,
    machine,
    markdown_table,
    read_events,
    replace_section,
    window_stats,
)

QUIET = 8.0  # seconds of normal load before the fault
RECOVERY = 15.0  # seconds of load after it (users re-read what they wrote)
KILLED_MIGRATION_SESSIONS = 20000  # seeded idle sessions the killed migration copies


@dataclasses.dataclass
class Scenario:
    name: str
    phase: str
    fault: Callable[[Fleet, dict], dict]  # does the fault; returns notes for the report
    expected: str  # what the phase design says users may see
    errors_allowed: bool = False
    app_config: dict = dataclasses.field(default_factory=dict)
    mount_tmpfs: bool = False
    replica: bool = False  # a replica behind a movable endpoint (devstack/tcp_forwarder.py)


# -- the faults -----------------------------------------------------------------------------
def redis_down(fleet: Fleet, options: dict) -> dict:
    fleet.redis.kill()
    time.sleep(options["outage"])
    fleet.redis.launch()
    return {"fault": f"Redis primary SIGKILLed, started again after {options['outage']:.0f} s (AOF)"}


def redis_failover(fleet: Fleet, options: dict, *, lagging: bool = False, delay: float | None = None) -> dict:
    primary, replica = fleet.redis, fleet.replica
    delay = options["failover_delay"] if delay is None else delay
    lag = options.get("replica_lag", 1.0) if lagging else 0.0
    if lag:
        # The replica falls behind: the replication stream waits on the link, and whatever
        # waits there when the primary dies dies with it (on loopback the replica is otherwise
        # never more than microseconds behind).
        fleet.replication_link.hold()
        time.sleep(lag)
    # How far the replica is behind at the kill: the primary's replication offset a moment
    # before it dies, against what the replica holds once it is gone (writes acknowledged in
    # between may be missing too; the users' checks count those).
    with contextlib.closing(fleet.client()) as client:
        sent = client.info("replication")["master_repl_offset"]
    primary.kill()
    killed = time.monotonic()
    fleet.replication_link.drop_connections()
    fleet.replication_link.release()
    with contextlib.closing(connect(replica.settings())) as client:
        received = client.info("replication")["master_repl_offset"]
        client.replicaof("NO", "ONE")
    time.sleep(max(0.0, delay - (time.monotonic() - killed)))
    dropped = fleet.endpoint.retarget(replica.port)
    fleet.redis, fleet.replica = replica, primary  # the promoted replica is the primary now
    held = f"replication held back {lag:g} s, then " if lag else ""
    return {"fault": f"{held}Redis primary SIGKILLed, replica promoted, endpoint moved to it "
                     f"after {delay:.0f} s",
            "replication": f"replica {max(0, sent - received)} bytes behind the primary's last offset read "
                           f"before the kill; {dropped} connections dropped by the endpoint move"}


def redis_paused(fleet: Fleet, options: dict) -> dict:
    fleet.redis.pause()
    try:
        time.sleep(options["pause"])
    finally:
        fleet.redis.resume()
    return {"fault": f"Redis primary SIGSTOPped for {options['pause']:.0f} s"}


def disk_full(fleet: Fleet, options: dict) -> dict:
    filler = os.path.join(fleet.apps[0].session_dir, "filler.bin")
    with open(filler, "wb") as handle, contextlib.suppress(OSError):
        while True:  # bounded by the tmpfs size (4 MB)
            handle.write(b"\0" * 65536)
            handle.flush()
    try:
        time.sleep(options["pause"])
    finally:
        os.unlink(filler)
    return {"fault": f"app1's session directory (4 MB tmpfs) full for {options['pause']:.0f} s"}


def app_restart_mid_flip(fleet: Fleet, options: dict) -> dict:
    workers = subprocess.run(["pgrep", "-P", str(fleet.apps[1].process.pid)], capture_output=True, text=True,
                             check=False).stdout.split()
    fleet.apps[0].process.send_signal(signal.SIGHUP)  # graceful reload of app1
    if workers:
        os.kill(int(workers[0]), signal.SIGKILL)  # one of app2's workers dies; the master replaces it
    fleet.set_phase("redis_read")
    time.sleep(2)
    return {"fault": "flip 2 -> 3 with app1 reloaded (SIGHUP) and an app2 worker SIGKILLed at the flip"}


def migration_killed(fleet: Fleet, options: dict) -> dict:
    app = fleet.apps[0]
    settings = fleet.redis.settings()
    env = dict(os.environ, SESSIONSHIFT_REDIS_PASSWORD=settings.password)
    command = [os.path.join(os.path.dirname(sys.executable), "sessionshift"), "migrate",
               "--session-dir", app.session_dir, "--state-dir", app.state_dir, "--redis-url", settings.url,
               "--redis-user", settings.username, "--ca-file", settings.ca_file, "--workers", "2",
               "--batch-size", "200", "--json", "--quiet"]
    first = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             start_new_session=True)
    deadline = time.monotonic() + 120
    # Kill it mid-way: a third of the seeded sessions copied. (Waiting for a checkpointed share
    # would kill it near its end: each worker's shares are one scan and end together.)
    with contextlib.closing(fleet.client()) as client:
        while first.poll() is None and time.monotonic() < deadline:
            if client.dbsize() >= KILLED_MIGRATION_SESSIONS // 3:
                break
            time.sleep(0.01)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(first.pid, signal.SIGKILL)  # the migration and its forked workers
    first.wait(10)
    second = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300, check=False)
    migrated = json.loads(second.stdout) if second.returncode == 0 else {"error": second.stderr[-500:]}
    validate = [os.path.join(os.path.dirname(sys.executable), "sessionshift"), "validate",
                "--session-dir", app.session_dir, "--state-dir", app.state_dir, "--redis-url", settings.url,
                "--redis-user", settings.username, "--ca-file", settings.ca_file, "--json", "--quiet"]
    checked = subprocess.run(validate, env=env, capture_output=True, text=True, timeout=300, check=False)
    validation = json.loads(checked.stdout) if checked.stdout.strip().startswith("{") else {}
    if "counts" in migrated:
        resumed = (f"second run resumed={migrated.get('resumed')}, "
                   f"{len(migrated.get('shares_skipped', []))} shares done before the kill, "
                   f"wrote {migrated['counts'].get('written', '?')}")
    else:
        resumed = migrated.get("error", "?")
    return {"fault": "migrate SIGKILLed once a third of the sessions were copied, run again",
            "migrate_second_run": resumed,
            "validation": f"{resumed}; validation {validation.get('consistency_percent', '?')} % consistent "
                          f"({validation.get('comparable', '?')} comparable), exit {checked.returncode}",
            "lost": int(checked.returncode != 0)}


def scenarios() -> list[Scenario]:
    emergency = {"SESSIONSHIFT_EMERGENCY_FILE_FALLBACK": True}
    lagging_failover = functools.partial(redis_failover, lagging=True)
    instant_lagging_failover = functools.partial(redis_failover, lagging=True, delay=0.0)
    wait_one = {"SESSIONSHIFT_WAIT_REPLICAS": 1}  # the production inventory's session_app_wait_replicas
    return [
        Scenario("redis down in phase 2", "dual_write", redis_down, "no 5xx; writes journaled, replayed"),
        Scenario("redis down in phase 3", "redis_read", redis_down, "no 5xx; reads fall back to files"),
        Scenario("redis down in phase 4", "redis_only", redis_down, "503 with the cause while down",
                 errors_allowed=True),
        Scenario("redis down in phase 4 + emergency", "redis_only", redis_down,
                 "503 for sessions only in Redis; new logins on files", errors_allowed=True,
                 app_config=emergency),
        Scenario("redis failover in phase 3", "redis_read", redis_failover,
                 "no 5xx; reads fall back to files until the endpoint moves", replica=True),
        Scenario("redis failover in phase 3 with a lagging replica", "redis_read", lagging_failover,
                 "no 5xx; reads fall back to files until the endpoint moves", replica=True),
        Scenario("redis failover in phase 3 with a lagging replica and an instant move", "redis_read",
                 instant_lagging_failover,
                 "no 5xx; writes the replica lacked may read back older (async replication)",
                 replica=True),
        Scenario("redis failover in phase 3 with a lagging replica and an instant move + WAIT 1",
                 "redis_read", instant_lagging_failover,
                 "no 5xx; writes no replica confirmed are journaled and read from the files: nothing lost",
                 replica=True, app_config=wait_one),
        Scenario("redis failover in phase 4", "redis_only", redis_failover,
                 "503 with the cause until the endpoint moves", errors_allowed=True, replica=True),
        Scenario("redis failover in phase 4 with a lagging replica", "redis_only", lagging_failover,
                 "503 until the endpoint moves; writes the replica lacked are lost (async replication)",
                 errors_allowed=True, replica=True),
        Scenario("redis failover in phase 4 with a lagging replica + WAIT 1", "redis_only", lagging_failover,
                 "503 for writes no replica confirmed, and until the endpoint moves; "
                 "nothing acknowledged is lost",
                 errors_allowed=True, replica=True, app_config=wait_one),
        Scenario("redis paused in phase 3", "redis_read", redis_paused, "no 5xx; slower while paused"),
        Scenario("redis paused in phase 4", "redis_only", redis_paused, "503 while paused",
                 errors_allowed=True),
        Scenario("session disk full in phase 2", "dual_write", disk_full,
                 "500 'could not be saved' on app1 writes while full", errors_allowed=True, mount_tmpfs=True),
        Scenario("session disk full in phase 4", "redis_only", disk_full, "nothing (files not written)",
                 mount_tmpfs=True),
        Scenario("app restart mid-flip 2 -> 3", "dual_write", app_restart_mid_flip,
                 "requests in flight on the killed worker fail", errors_allowed=True),
        Scenario("migration SIGKILLed and resumed", "dual_write", migration_killed, "no 5xx; 100 % valid"),
    ]


@contextlib.contextmanager
def small_tmpfs(path: str, size: str = "4m"):
    os.makedirs(path, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", path],
                          capture_output=True, text=True, check=False)
    if done.returncode:
        raise RuntimeError(f"cannot mount a tmpfs on {path} (the disk-full fault needs root): {done.stderr}")
    try:
        yield
    finally:
        subprocess.run(["umount", "-l", path], check=False)


def run_scenario(scenario: Scenario, *, users: int, options: dict, out_dir: str, quiet: float = QUIET,
                 recovery: float = RECOVERY) -> dict:
    directory = tempfile.mkdtemp(prefix="load-fault-")
    slug = scenario.name.replace(" ", "_").replace(",", "").replace(">", "").replace("+", "plus")
    try:
        with contextlib.ExitStack() as cleanup:
            if scenario.mount_tmpfs:
                cleanup.enter_context(small_tmpfs(os.path.join(directory, "app1", "sessions")))
            fleet = cleanup.enter_context(Fleet.start(directory, hosts=2, workers=2, phase=scenario.phase,
                                                      app_config=scenario.app_config,
                                                      replica=scenario.replica))
            if scenario.fault is migration_killed:
                seed_sessions(fleet.apps[0].session_dir, KILLED_MIGRATION_SESSIONS, rng_seed="faults")
            load = LocustRun.start(fleet.urls, users=users, spawn_rate=users, run_time=600, out_dir=out_dir,
                                   name=f"fault_{slug}", wait="0.2,1")
            try:
                time.sleep(quiet)
                fault_start = time.time()
                notes = scenario.fault(fleet, options)
                fault_end = time.time()
                time.sleep(recovery)
            finally:
                load.stop()
            journal = sum(Journal(app.state_dir, app.session_dir).depth() for app in fleet.apps)
            if fleet.endpoint:  # proof that the apps found the promoted replica, not only their files
                notes["promoted_connections"] = fleet.endpoint.forwarded.get(fleet.redis.port, 0)
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    events = read_events(load.events_file)
    # A request in flight when the fault began belongs to the fault, not to the quiet period.
    before = window_stats([e for e in events if e.at + e.ms / 1000 < fault_start])
    during = window_stats([e for e in events if e.at + e.ms / 1000 >= fault_start and e.at < fault_end])
    after = window_stats(events, fault_end)
    total = window_stats(events)
    lost = total["sessions_lost"] + total["writes_lost"] + notes.pop("lost", 0) + (journal > 0)
    errors_before_or_after = before["errors"] + after["errors"]
    ok = lost == 0 and (scenario.errors_allowed or total["errors"] == 0)
    return {"scenario": scenario.name, "phase": scenario.phase, **notes, "expected": scenario.expected,
            "before": before, "during": during, "after": after, "total": total, "journal_left": journal,
            "errors_outside_fault": errors_before_or_after, "checks": load.checks(),
            "verdict": "as designed" if ok else "NOT AS DESIGNED"}


def row(result: dict) -> dict:
    during, after, total = result["during"], result["after"], result["total"]
    extra = "; ".join(filter(None, [result.get("validation"), result.get("replication")]))
    if "promoted_connections" in result:
        extra += f"; {result['promoted_connections']} app connections to the promoted replica after the move"
    return {"scenario": result["scenario"], "fault": result["fault"] + (f"; {extra}" if extra else ""),
            "expected": result["expected"], "requests": total["requests"],
            "during": f"{during['errors']} ({during['errors_5xx']} 5xx) / {during['requests']}",
            "after": f"{after['errors']} / {after['requests']}",
            "p95": f"{result['before']['p95_ms']:.0f} / {during['p95_ms']:.0f} / {after['p95_ms']:.0f}",
            "max": f"{during['max_ms']:.0f}", "sessions_lost": total["sessions_lost"],
            "writes_lost": total["writes_lost"], "journal": result["journal_left"],
            "verdict": result["verdict"]}


COLUMNS = [("scenario", "scenario"), ("fault", "what we did"), ("expected", "users may see"),
           ("requests", "requests"), ("during", "errors during fault"), ("after", "errors after"),
           ("p95", "p95 ms before / during / after"), ("max", "max ms during"),
           ("sessions_lost", "sessions lost"), ("writes_lost", "writes lost"), ("journal", "journal left"),
           ("verdict", "verdict")]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", default="", help="comma-separated scenario names (default: all)")
    parser.add_argument("--users", type=int, default=30)
    parser.add_argument("--outage", type=float, default=30.0, help="seconds Redis stays down")
    parser.add_argument("--pause", type=float, default=10.0,
                        help="seconds Redis is paused / the disk is full")
    parser.add_argument("--failover-delay", type=float, default=5.0,
                        help="seconds from the primary's death to the endpoint's move to the replica")
    parser.add_argument("--replica-lag", type=float, default=1.0,
                        help="seconds the replication stream is held back before the kill (lagging replica)")
    args = parser.parse_args(argv)
    chosen = [s for s in scenarios() if not args.only or s.name in args.only.split(",")]
    if unknown := set(filter(None, args.only.split(","))) - {s.name for s in scenarios()}:
        parser.error(f"no scenario named {', '.join(sorted(unknown))}")
    arguments = argv if argv is not None else sys.argv[1:]
    run = {"command": shlex.join(["python", "-m", "tests.load.faults", *arguments]),
           "settings": f"{args.users} locust users (think time 0.2-1 s) sticky over 2 app hosts x 2 gunicorn "
                       f"workers; {QUIET:.0f} s before the fault, {RECOVERY:.0f} s after",
           "machine": machine()}
    results = []
    for scenario in chosen:
        print(f"{scenario.name} ...", flush=True)
        result = run_scenario(scenario, users=args.users, options=vars(args), out_dir=RESULTS_DIR)
        print(f"  {json.dumps(row(result))}", flush=True)
        results.append({**result, "run": run})
    os.makedirs(RESULTS_DIR, exist_ok=True)
    path = os.path.join(RESULTS_DIR, "faults.json")
    table = merge_with_previous(results, path) if args.only else results
    with open(path, "w") as handle:
        json.dump(table, handle, indent=1)
    table_text = markdown_table([row(result) for result in table], COLUMNS)
    replace_section("faults", "\n\n".join([*runs_described(table), table_text]))
    return 0 if all(r["verdict"] == "as designed" for r in results) else 1


def merge_with_previous(results: list[dict], path: str) -> list[dict]:
    """A partial run (--only) replaces its own rows and keeps the others from the last runs."""
    try:
        with open(path) as handle:
            previous = json.load(handle)
    except FileNotFoundError:
        previous = []
    by_name = {result["scenario"]: result for result in [*previous, *results]}
    order = {scenario.name: index for index, scenario in enumerate(scenarios())}
    return sorted(by_name.values(), key=lambda result: order.get(result["scenario"], len(order)))


def runs_described(results: list[dict]) -> list[str]:
    """One line per run behind the table: its command, settings and machine (and its rows, if several)."""
    runs: dict[str, tuple[dict, list[str]]] = {}
    for result in results:
        run = result.get("run", {"command": "python -m tests.load.faults",
                                 "settings": "settings not recorded", "machine": "machine not recorded"})
        runs.setdefault(json.dumps(run, sort_keys=True), (run, []))[1].append(result["scenario"])
    lines = []
    for run, names in runs.values():
        rows = f" Rows: {', '.join(names)}." if len(runs) > 1 else ""
        lines.append(f"`{run['command']}` — {run['settings']}; {run['machine']}.{rows}")
    return lines


if __name__ == "__main__":
    sys.exit(main())
