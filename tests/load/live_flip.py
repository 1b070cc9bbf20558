"""Zero loss during live flips: locust users run while the real playbooks move the fleet.

    python -m tests.load.live_flip [--users 50] [--hold 15] [--sessions 200]

A LocalStack (TLS Redis primary + replica, two gunicorn app hosts with seeded sessions, the
real playbooks on free ports in a temporary directory) goes phase 1 -> 2 -> 3 -> 4, rolls back
4 -> 3 -> 2, and goes forward again 2 -> 3 -> 4 -> 5, while locust users (sticky, spread over
both hosts) check every answer. Each step is one playbook run followed by --hold seconds of
steady traffic. At the end every seeded session (idle since phase 1) is looked up by its sid.

Writes bench/results/load/live_flip.json (steps, flips, timeline), the plot
docs/img/live_flip_timeline.png and the per-step table in docs/load.md. Exits 1 if anything
was lost, any user saw an error, or a playbook failed.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import threading
import time

from devstack.local_stack import LocalStack
from sessionshift import formats, phasefile
from tests.load.runner import (
    RESULTS_DIR,
    ROOT,
    STEP_COLUMNS,
    LocustRun,
    machine,
    markdown_table,
    read_events,
    replace_section,
    timeline,
    window_stats,
)
from tools.usersim import check_seeded_sessions

PLOT = os.path.join(ROOT, "docs", "img", "live_flip_timeline.png")
# (label, playbook, extra vars)
STEPS = [
    ("1 -> 2 dual_write", "phase2.yml", {}),
    ("2 -> 3 redis_read", "phase3.yml", {}),
    ("3 -> 4 redis_only", "phase4.yml", {}),
    ("rollback 4 -> 3", "rollback.yml", {"rollback_to": "redis_read"}),
    ("rollback 3 -> 2", "rollback.yml", {"rollback_to": "dual_write"}),
    ("2 -> 3 again", "phase3.yml", {}),
    ("3 -> 4 again", "phase4.yml", {}),
    ("4 -> 5 redis", "phase5.yml", {}),
]


def make_stack_dir() -> str:
    directory = tempfile.mkdtemp(prefix="live-flip-")
    os.chmod(directory, 0o755)  # the local Redis runs as the redis user and reads its config here
    return directory


def seeded_users(stack: LocalStack, host: str) -> dict[str, str]:
    """sid -> user name, read from the seeded session files while the host is still in phase 1."""
    with open(os.path.join(stack.local_dir, host, "seeded-sids.txt")) as handle:
        sids = [line.strip() for line in handle if line.strip()]
    return {sid: formats.read_session_file(
        os.path.join(stack.session_dir(host), formats.session_file_name(sid))).data["user"] for sid in sids}


class FlipRecorder(threading.Thread):
    """Notes the moment each host's phase file changes (what the workers pick up within ~1 s)."""

    def __init__(self, stack: LocalStack):
        super().__init__(daemon=True)
        self.stack, self.flips, self.stopped = stack, [], threading.Event()

    def run(self) -> None:
        seen = {}
        while not self.stopped.wait(0.2):
            for host in self.stack.app_ports:
                try:
                    label = phasefile.read_phase(self.stack.state_dir(host)).phase.label
                except ValueError:
                    continue  # a phase file being replaced: read it next time
                if seen.get(host) != label:
                    if host in seen:
                        self.flips.append({"at": time.time(), "host": host, "phase": label})
                    seen[host] = label


def plot(result: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series = result["timeline"]
    seconds = list(range(len(series["requests"])))
    figure, axis = plt.subplots(figsize=(13, 5))
    axis.plot(seconds, series["requests"], color="tab:blue", linewidth=1, label="requests/s")
    axis.bar(seconds, series["errors"], color="tab:red", width=1.0, label="errors/s")
    axis.bar(seconds, series["lost"], color="black", width=1.0, label="sessions or writes lost/s")
    top = max(series["requests"] or [1]) * 1.15
    start = result["load_started_at"]
    for step in result["steps"]:
        x = step["started_at"] - start
        axis.axvline(x, color="tab:gray", linestyle="-", linewidth=0.8)
        axis.text(x + 1, top * 0.98, step["step"], rotation=90, va="top", fontsize=8)
    for flip in result["flips"]:
        axis.axvline(flip["at"] - start, color="tab:green", linestyle=":", linewidth=0.8)
    axis.set_ylim(0, top)
    axis.set_xlabel("seconds since the users started "
                    "(grey: playbook starts; green dotted: a host's phase file flips)")
    axis.set_ylabel("per second")
    totals = result["totals"]
    axis.set_title(f"Live flips under load: {result['users']} locust users on 2 app hosts "
                   f"({totals['requests']} requests, {totals['errors']} errors, "
                   f"{totals['sessions_lost']} sessions lost, {totals['writes_lost']} writes lost)")
    axis.legend(loc="lower right")
    figure.tight_layout()
    os.makedirs(os.path.dirname(path), exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)


def run(users: int, hold: float, sessions: int, watch_seconds: int) -> dict:
    directory = make_stack_dir()
    stack = LocalStack.create(directory, hosts=2, seed_sessions=sessions, watch_seconds=watch_seconds)
    load = recorder = None
    try:
        setup = stack.playbook("local_infra.yml")
        if setup.returncode:
            raise RuntimeError(f"local_infra.yml failed:\n{setup.output[-3000:]}")
        seeded = {host: seeded_users(stack, host) for host in stack.app_ports}
        hosts = [stack.app_url(host) for host in stack.app_ports]
        load = LocustRun.start(hosts, users=users, spawn_rate=10, run_time=3600, out_dir=RESULTS_DIR,
                               name="live_flip")
        recorder = FlipRecorder(stack)
        recorder.start()
        time.sleep(hold + users / 10)  # every user spawned and logged in, then steady phase 1
        steps = [{"step": "phase 1 (file), before", "started_at": load.started_at, "returncode": 0}]
        for label, playbook, extra in STEPS:
            print(f"{label}: {playbook} {extra or ''}", flush=True)
            started = time.time()
            outcome = stack.playbook(playbook, extra=extra)
            steps.append({"step": label, "playbook": playbook, "extra": extra, "started_at": started,
                          "ended_at": time.time(), "returncode": outcome.returncode})
            print(f"  exit {outcome.returncode} after {time.time() - started:.0f}s", flush=True)
            if outcome.returncode:
                print(outcome.output[-4000:], flush=True)
                break
            time.sleep(hold)
        ended = time.time()
        load.stop()
        recorder.stopped.set()
        seeded_checks = {host: check_seeded_sessions(stack.app_url(host), seeded[host])
                         for host in stack.app_ports}
        phases = {host: phasefile.read_phase(stack.state_dir(host)).phase.label for host in stack.app_ports}
    finally:
        if recorder is not None:
            recorder.stopped.set()
        if load is not None:
            load.stop()
        stack.stop()
        shutil.rmtree(directory, ignore_errors=True)
    events = read_events(load.events_file)
    for index, step in enumerate(steps):
        step_end = steps[index + 1]["started_at"] if index + 1 < len(steps) else ended
        step.update(window_stats(events, step["started_at"], step_end),
                    seconds=round(step_end - step["started_at"]))
    return {"users": users, "hold_seconds": hold, "seeded_sessions_per_host": sessions, "machine": machine(),
            "load_started_at": load.started_at, "steps": steps, "flips": recorder.flips,
            "final_phases": phases, "seeded": seeded_checks, "checks": load.checks(),
            "totals": window_stats(events, 0, ended), "timeline": timeline(events, load.started_at)}


def report(result: dict, command: str) -> str:
    rows = [{**step, "playbook_ok": "ok" if step["returncode"] == 0 else f"exit {step['returncode']}"}
            for step in result["steps"]]
    columns = [("step", "step"), ("seconds", "s"), ("playbook_ok", "playbook"), *STEP_COLUMNS]
    table = markdown_table(rows, columns)
    totals = result["totals"]
    seeded = "; ".join(f"{host}: {check['logged_in']}/{check['checked']} still logged in"
                       f" ({check['logged_out']} logged out, {check['errors']} errors)"
                       for host, check in result["seeded"].items())
    return "\n".join([
        f"`{command}` — {result['users']} locust users (baseline profile, the seed's 1-3 s think time), "
        f"sticky over 2 app hosts x 2 gunicorn workers, {result['seeded_sessions_per_host']} seeded "
        f"sessions per host; {result['machine']}.", "",
        table, "",
        f"All steps: {totals['requests']} requests, {totals['errors']} errors, {totals['sessions_lost']} "
        f"sessions lost, {totals['writes_lost']} writes lost (locust's own check counters: "
        f"{json.dumps(result['checks'])}). Seeded sessions idle since phase 1, looked up by sid at the end "
        f"in phase {', '.join(sorted(set(result['final_phases'].values())))}: {seeded}.", "",
        "![requests and errors per second, flips marked](img/live_flip_timeline.png)",
    ])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument("--hold", type=float, default=15.0, help="seconds of steady traffic after each step")
    parser.add_argument("--sessions", type=int, default=200, help="seeded sessions per app host")
    parser.add_argument("--watch-seconds", type=int, default=5, help="the rollout's watch window")
    args = parser.parse_args(argv)
    result = run(args.users, args.hold, args.sessions, args.watch_seconds)
    os.makedirs(RESULTS_DIR, exist_ok=True)
    with open(os.path.join(RESULTS_DIR, "live_flip.json"), "w") as handle:
        json.dump(result, handle, indent=1)
    plot(result, PLOT)
    command = " ".join(["python -m tests.load.live_flip", *(argv if argv is not None else sys.argv[1:])])
    replace_section("live_flip", report(result, command))
    print(report(result, command))
    totals = result["totals"]
    bad = totals["errors"] + totals["sessions_lost"] + totals["writes_lost"]
    bad += sum(check["logged_out"] + check["errors"] for check in result["seeded"].values())
    bad += sum(step["returncode"] != 0 for step in result["steps"])
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
