"""make demo: the whole rollout on this machine, with logged-in users watching for losses.

1. starts a moto server on loopback (the stand-in for AWS: ElastiCache, CloudWatch, SNS, ...);
2. runs the steps of ``playbooks/site.yml`` one playbook at a time on ``inventories/local``,
   with a rollback on alert in the middle. Phase 1 provisions moto's ElastiCache, the alarms,
   the alarm watcher (roles/alarm_watch), a TLS-only Redis with a replica on loopback and two
   app hosts (gunicorn, each with its CloudWatch metrics publisher) with thousands of seeded
   sessions; the watcher then runs, with the command line its unit would run, until the end.
   Phases 2 and 3; then the fault: the Redis primary stalls for a few seconds, session writes
   fail (journaled, the requests still succeed), each host publishes SessionWriteErrors to
   moto, its alarm goes to ALARM (moto never evaluates alarms: devstack.alarm_evaluator does,
   from the alarm's own definition) and the watcher rolls the fleet back one phase by itself
   (rollback.yml, reported on SNS). Once every alarm is OK again: phase 3 again, phase 4, a
   rollback drill to 3, phases 4 and 5;
3. meanwhile simulated users stay logged in on every app host and check, on every response,
   that their session and their last write are still there;
4. at the end every seeded user (idle since before phase 2) is logged back in by its sid;
5. prints a summary per step and the rollback on alert's timeline, stops everything it started
   and exits non-zero if any user was logged out, any write was lost or any step failed.

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

import boto3  # noqa: E402

from devstack.alarm_evaluator import (  # noqa: E402
    EVALUATED_BY,
    evaluating,
    firing,
    received,
    stall_redis,
    subscribe_queue,
)
from devstack.moto_server import FAKE_CREDENTIALS, MotoServer  # noqa: E402
from sessionshift import formats, state  # noqa: E402
from tools.usersim import Simulation, Tally, check_seeded_sessions  # noqa: E402

RUN_DIR = os.path.join(ROOT, "run", "demo")
WATCH_DIR = os.path.join(RUN_DIR, "alarmwatch")
MOTO_PORT = 15000  # inventories/local points the AWS roles here
APP_HOSTS = {"app1": "http://127.0.0.1:18001", "app2": "http://127.0.0.1:18002"}
ALARM_PREFIX = "sessionshift-"  # the cloudwatch_alarms role's names; the watcher watches these
ALARM_STEP = "alarm rollback"
STALL_SECONDS = 3
# (step, ansible-playbook arguments); the alarm step runs no playbook itself: the watcher does.
PLAN = [
    ("phase1", ["playbooks/phase1.yml"]),
    ("phase2", ["playbooks/phase2.yml"]),
    ("phase3", ["playbooks/phase3.yml"]),
    (ALARM_STEP, []),
    ("phase3 again", ["playbooks/phase3.yml"]),
    ("phase4", ["playbooks/phase4.yml"]),
    ("rollback to redis_read", ["playbooks/rollback.yml", "-e", "rollback_to=redis_read",
                                "-e", "rollback_reason=rollback drill"]),
    ("phase4 again", ["playbooks/phase4.yml"]),
    ("phase5", ["playbooks/phase5.yml"]),
]
STEPS = [name for name, _args in PLAN]


def demo_env() -> dict[str, str]:
    """What every playbook run and the watcher share: the run directory and its rollout lock."""
    return {"SESSIONSHIFT_LOCAL_DIR": RUN_DIR,
            "SESSIONSHIFT_ROLLOUT_LOCK": os.path.join(RUN_DIR, "rollout.lock")}


def ansible_playbook(*args: str, log=None) -> subprocess.Popen:
    env = dict(os.environ, **demo_env(), ANSIBLE_CONFIG=os.path.join(ROOT, "ansible.cfg"),
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
        # The fault is a Redis primary that stops answering for a few seconds: with the client's
        # default 5 s timeout x 3 retries a session write would hold the request for 20 s. These
        # fail it within a second (journaled, the request succeeds), as an app that must not hang
        # on its session store is configured.
        "session_app_redis": ("{{ sessionshift_redis | combine({'socket_timeout': 1.0, "
                              "'connect_timeout': 1.0, 'retries': 0}) }}"),
    }
    extra.update(monitoring_vars(extra))
    started = time.monotonic()
    started_at = datetime.datetime.now(datetime.UTC).isoformat()
    simulation: Simulation | None = None
    run: Rollout | None = None
    stop = threading.Event()
    try:
        with open(log_path, "w") as log:
            run = Rollout(extra, log, moto)
            run.start()
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
        print_alarm_rollback(run.alarm_report, tallies.get(ALARM_STEP, Tally()), read_records(summary_file))
        lost = sum(t.logged_out + t.lost_writes for t in tallies.values())
        lost += sum(s["logged_out"] + s["errors"] for s in seeded.values())
        if returncode != 0:
            print(f"\nthe rollout failed at {run.failed_step} (exit {returncode}): see {log_path}")
            return 1
        if not run.alarm_report.get("rolled_back"):
            print(f"\nno rollback on alert happened: see {log_path} and {WATCH_DIR}")
            return 1
        return 1 if lost else 0
    finally:
        stop.set()
        if simulation is not None:
            simulation.stop()
        if run is not None:
            run.stop_watcher()
        if not args.keep:
            ansible_playbook(os.path.join("playbooks", "local_infra.yml"), "-e", "local_infra_state=stopped",
                             log=subprocess.DEVNULL).wait()
            moto.stop()


def monitoring_vars(extra: dict) -> dict:
    """Each host's metrics publisher, and the alarm watcher's unit (phase 1 writes it; no systemd here)."""
    moto_url = f"http://127.0.0.1:{MOTO_PORT}"
    return {
        "session_app_metrics_publisher_enabled": True,
        "session_app_metrics_publisher_endpoint_url": moto_url,
        "session_app_metrics_publisher_interval": 5,
        "session_app_metrics_publisher_environment": FAKE_CREDENTIALS,
        # One minute with a write error raises the host's alarm (production: 3 of 5 minutes).
        "cloudwatch_alarms_evaluation_periods": 1,
        "cloudwatch_alarms_datapoints_to_alarm": 1,
        "alarm_watch_enabled": True,
        "alarm_watch_project_dir": ROOT,
        "alarm_watch_inventory": os.path.join(ROOT, "inventories", "local"),
        "alarm_watch_python": sys.executable,
        "alarm_watch_state_dir": WATCH_DIR,
        "alarm_watch_unit_dir": WATCH_DIR,
        "alarm_watch_lock_file": demo_env()["SESSIONSHIFT_ROLLOUT_LOCK"],
        "alarm_watch_interval": 5,
        "alarm_watch_cooldown": 600,
        "alarm_watch_aws_endpoint_url": moto_url,
        "alarm_watch_environment": {**FAKE_CREDENTIALS, **demo_env()},
        # The watcher's rollback.yml gets the demo's settings, but not the templated ones: the role
        # would render them into the unit's command line (session_app_redis holds the AUTH token).
        "alarm_watch_extra_vars": {name: value for name, value in extra.items()
                                   if "{{" not in json.dumps(value)},
    }


class Rollout(threading.Thread):
    """The steps of PLAN one after another, each playbook logged to *log*; poll()/wait() like a Popen.

    After phase 1 it runs the alarm watcher as the unit phase 1 wrote would (command.json: no
    systemd here), until stop_watcher(); the alarm step is the fault, the alarm and the watcher's
    rollback, observed.
    """

    def __init__(self, extra: dict, log, moto: MotoServer):
        super().__init__(daemon=True)
        self.extra, self.log, self.moto = extra, log, moto
        self.returncode: int | None = None
        self.failed_step = ""
        self.alarm_report: dict = {}
        self.watcher: subprocess.Popen | None = None
        self.watcher_log = os.path.join(WATCH_DIR, "watcher.log")

    def run(self) -> None:
        code = 0
        try:
            for name, args in PLAN:
                self.log.write(f"\n===== {name} =====\n")
                self.log.flush()
                if name == ALARM_STEP:
                    code = self.alarm_rollback()
                else:
                    code = ansible_playbook(*args, "-e", json.dumps(self.extra), log=self.log).wait()
                if code == 0 and name == "phase1":
                    code = self.start_watcher()
                if code != 0:
                    self.failed_step = name
                    break
        except Exception as exc:  # a failed demo step must end the demo, never hang it
            self.log.write(f"\n{type(exc).__name__}: {exc}\n")
            self.failed_step, code = self.failed_step or "the demo itself", 1
        finally:
            self.returncode = code

    def poll(self) -> int | None:
        return None if self.is_alive() else self.returncode

    def wait(self) -> int:
        self.join()
        return self.returncode if self.returncode is not None else 1

    def start_watcher(self) -> int:
        """Run the command the alarm_watch role recorded for its unit, with its environment."""
        with open(os.path.join(WATCH_DIR, "command.json")) as handle:
            service = json.load(handle)
        with open(self.watcher_log, "ab") as log:
            self.watcher = subprocess.Popen(service["argv"], cwd=service["cwd"],
                                            env={**os.environ, **service["environment"]},
                                            stdout=log, stderr=subprocess.STDOUT)
        return 0

    def stop_watcher(self) -> None:
        if self.watcher is not None and self.watcher.poll() is None:
            self.watcher.terminate()
            self.watcher.wait(60)

    def alarm_rollback(self) -> int:
        """A Redis stall -> SessionWriteErrors -> the hosts' alarms -> the watcher's one rollback -> SNS."""
        cloudwatch = boto3.client("cloudwatch", **self.moto.client_kwargs())
        # the cloudwatch_alarms role's topic, where the watcher and rollback.yml report
        _topic, sqs, queue = subscribe_queue(self.moto, "sessionshift-alarms", "demo-oncall")
        state_file = os.path.join(WATCH_DIR, "alarmwatch.json")
        report: dict = {"stall_seconds": STALL_SECONDS, "alarms": {}, "rolled_back": False}
        self.alarm_report = report
        with evaluating(cloudwatch, ALARM_PREFIX):  # what CloudWatch does every period, and moto never
            report["fault_at"] = utc_now()
            stall_redis(RUN_DIR, STALL_SECONDS)  # the fault: session writes to Redis time out
            deadline = time.monotonic() + 600
            incident: dict = {}
            rollback: dict = {}
            while time.monotonic() < deadline and self.watcher.poll() is None:
                for alarm in describe_firing(cloudwatch):
                    report["alarms"].setdefault(alarm["AlarmName"], alarm)
                incident = (state.read_json(state_file) or {}).get("incident") or {}
                rollback = incident.get("rollback") or {}
                if rollback.get("returncode") is not None:
                    break
                time.sleep(1)
            report.update(incident=incident, rollback=rollback)
            if rollback.get("returncode") != 0:
                return 1
            report["rolled_back"] = True
            # Forward again only once no alarm fires (the phase gates and watch windows would refuse).
            deadline = time.monotonic() + 300
            while firing(cloudwatch, ALARM_PREFIX) and time.monotonic() < deadline:
                time.sleep(2)
            report["quiet_at"] = utc_now()
        report["sns"] = [m.get("Subject", "") for m in received(sqs, queue)]
        return 0 if not firing(cloudwatch, ALARM_PREFIX) else 1


def describe_firing(cloudwatch) -> list[dict]:
    """Alarms under the prefix in ALARM now: name, when it went there, why."""
    names = firing(cloudwatch, ALARM_PREFIX)
    if not names:
        return []
    alarms = cloudwatch.describe_alarms(AlarmNames=names)["MetricAlarms"]
    return [{"AlarmName": a["AlarmName"], "reason": a.get("StateReason", ""),
             "at": a["StateUpdatedTimestamp"].astimezone(datetime.UTC).isoformat()} for a in alarms]


def utc_now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat()


def _clock(text: str | float | None) -> str:
    """HH:MM:SS UTC of an ISO time or a Unix time."""
    if text is None:
        return "?"
    if isinstance(text, int | float):
        return datetime.datetime.fromtimestamp(text, datetime.UTC).strftime("%H:%M:%S")
    return _utc(text).strftime("%H:%M:%S")


def print_alarm_rollback(report: dict, tally: Tally, records: list[dict]) -> None:
    """The rollback on alert, as it happened: fault, alarms, the watcher's rollback, SNS, the users."""
    if not report:
        return
    step = STEPS.index(ALARM_STEP)
    before, after = ({host: "?" for host in APP_HOSTS} if len(records) <= index else records[index]["hosts"]
                     for index in (step - 1, step))
    fault = (f"fault: the Redis primary stops answering for {report['stall_seconds']} s (SIGSTOP); "
             "session writes fail and are journaled")
    events = [(report.get("fault_at"), fault)]
    events += [(alarm["at"], f"ALARM {name}: {alarm['reason'].replace(EVALUATED_BY, '').strip()}")
               for name, alarm in report["alarms"].items()]
    incident, rollback = report.get("incident") or {}, report.get("rollback") or {}
    if incident:
        events.append((incident["opened_at"], "the alarm watcher opens an incident for "
                       f"{', '.join(incident.get('alarms', []))}; runs rollback.yml -e rollback_to=previous"))
    if rollback.get("returncode") is not None:
        moves = ", ".join(f"{host} {before.get(host, '?')} -> {phase}" for host, phase in after.items())
        events.append((rollback.get("finished_at"), f"rollback done: {moves}" if rollback["returncode"] == 0
                       else f"rollback FAILED (exit {rollback['returncode']}): {rollback.get('log', '?')}"))
    if report.get("quiet_at"):
        events.append((report["quiet_at"], "every alarm OK again: the rollout goes on (phase 3 again)"))
    print("\nrollback on alert (UTC; moto never evaluates alarms, devstack.alarm_evaluator does):")
    for at, text in sorted(events, key=lambda event: _clock(event[0])):
        print(f"  {_clock(at)}  {text}")
    if not report["alarms"]:
        print("  no alarm went to ALARM")
    if rollback.get("returncode") is None:
        print(f"  the alarm watcher finished no rollback: see {os.path.join(WATCH_DIR, 'watcher.log')}")
    for subject in report.get("sns", []):
        print(f"  SNS: {subject}")
    print(f"  users during the incident: {tally.requests} requests, {tally.errors} errors, "
          f"{tally.logged_out} logged out (sessions lost), {tally.lost_writes} lost writes")


def wait_for_apps_or_exit(run: Rollout, stop: threading.Event) -> bool:
    """Wait until both app hosts answer (end of phase 1), or the playbook ended first."""
    watcher = threading.Thread(target=lambda: (run.wait(), stop.set()), daemon=True)
    watcher.start()
    return wait_for_apps(stop) and run.poll() is None


def follow_steps(run: Rollout, simulation: Simulation, summary_file: str) -> None:
    """Label the simulation's results with the step the playbook is in (from the summary records)."""
    current = 0
    while run.poll() is None:
        done = len(read_records(summary_file))  # one record at the end of each step
        if done > current and done < len(STEPS):
            current = done
            simulation.label(STEPS[current])
            print(f"  {STEPS[current - 1]} done; now {STEPS[current]}")
        time.sleep(0.5)


def report_failure(run: Rollout, log_path: str) -> int:
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
