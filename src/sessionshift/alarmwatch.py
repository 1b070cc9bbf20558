"""Rollback on alert: watch CloudWatch alarm states and start the rollback playbook.

We chose a small poller over an Event-Driven Ansible rulebook: it needs only
boto3 (already on the controller), works the same against AWS and the moto
stand-in, and its decision ("this alarm entered ALARM since I last looked, so
roll the fleet back one phase") is testable without a rulebook engine. Run it
as a service on the controller during the rollout weeks:

    python -m sessionshift.alarmwatch --alarm-prefix sessionshift- \\
        --inventory inventories/production --interval 30

Each alarm transition into ALARM triggers one run of the collection's rollback playbook
(``ansible-playbook sessionshift.migration.rollback -e rollback_to=previous``, run in
``--project-dir``, the directory whose ansible.cfg finds the collection); a lock file keeps
two rollbacks from overlapping, and the last handled transition of each alarm is remembered
in a state file so a restart of the watcher does not roll back twice for the same alarm.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import fcntl
import json
import logging
import os
import shlex
import subprocess
import sys
import time
from collections.abc import Callable, Sequence

from . import state

LOG = logging.getLogger("sessionshift.alarmwatch")
# Found by ansible-playbook in the installed collection, or in a checkout through its ansible.cfg:
# the watcher never looks for playbooks next to its own source (it runs from a wheel too).
ROLLBACK_PLAYBOOK = "sessionshift.migration.rollback"


@dataclasses.dataclass(frozen=True)
class AlarmEvent:
    name: str
    changed_at: str  # the alarm's StateUpdatedTimestamp, ISO
    reason: str


def firing_alarms(cloudwatch, prefix: str) -> list[AlarmEvent]:
    """Alarms under *prefix* that are in ALARM now."""
    events = []
    paginator = cloudwatch.get_paginator("describe_alarms")
    for page in paginator.paginate(AlarmNamePrefix=prefix, StateValue="ALARM"):
        for alarm in page.get("MetricAlarms", []) + page.get("CompositeAlarms", []):
            # filtered again here: not every CloudWatch implementation applies StateValue
            # together with AlarmNamePrefix (moto does not)
            if alarm.get("StateValue") != "ALARM" or not alarm["AlarmName"].startswith(prefix):
                continue
            events.append(AlarmEvent(alarm["AlarmName"], str(alarm.get("StateUpdatedTimestamp")),
                                     alarm.get("StateReason", "")))
    return events


class AlarmWatcher:
    """One poll at a time: new ALARM transitions -> one rollback run."""

    def __init__(self, cloudwatch, prefix: str, state_file: str,
                 run_rollback: Callable[[list[AlarmEvent]], int]):
        self.cloudwatch = cloudwatch
        self.prefix = prefix
        self.state_file = state_file
        self.run_rollback = run_rollback

    def _handled(self) -> dict[str, str]:
        return (state.read_json(self.state_file) or {}).get("handled", {})

    def poll(self) -> list[AlarmEvent]:
        """Check once; start a rollback for alarm transitions not handled before. Returns them."""
        handled = self._handled()
        new = [e for e in firing_alarms(self.cloudwatch, self.prefix) if handled.get(e.name) != e.changed_at]
        if not new:
            return []
        LOG.warning("alarms in ALARM: %s; starting rollback", ", ".join(e.name for e in new))
        with _exclusive(self.state_file + ".lock"):
            returncode = self.run_rollback(new)
            handled.update({e.name: e.changed_at for e in new})
            state.write_json(self.state_file, {
                "handled": handled,
                "last_rollback": {"at": state.utc_now(), "alarms": [e.name for e in new],
                                  "returncode": returncode},
            })
        if returncode != 0:
            LOG.error("rollback playbook exited %s: the fleet needs an operator", returncode)
        return new


@contextlib.contextmanager
def _exclusive(path: str):
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def playbook_runner(inventory: str, extra: Sequence[str] = (), playbook: str = ROLLBACK_PLAYBOOK,
                    project_dir: str | None = None) -> Callable[[list[AlarmEvent]], int]:
    """Run the rollback *playbook* one phase back in *project_dir*, naming the alarms as the reason."""

    def run(events: list[AlarmEvent]) -> int:
        reason = "alarm " + ", ".join(e.name for e in events) + " in ALARM"
        command = [os.path.join(os.path.dirname(sys.executable), "ansible-playbook"),
                   "-i", inventory, playbook,
                   "-e", "rollback_to=previous", "-e", json.dumps({"rollback_reason": reason}),
                   *extra]
        LOG.warning("running: %s (in %s)", shlex.join(command), project_dir or os.getcwd())
        return subprocess.run(command, cwd=project_dir, check=False).returncode

    return run


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sessionshift.alarmwatch",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--alarm-prefix", default="sessionshift-",
                        help="watch alarms whose names start with this")
    parser.add_argument("--inventory", required=True, help="the rollout's inventory (ansible-playbook -i)")
    parser.add_argument("--playbook", default=ROLLBACK_PLAYBOOK,
                        help="the rollback playbook: the collection's (default) or a path to one")
    parser.add_argument("--project-dir", default=os.getcwd(),
                        help="where ansible-playbook runs: the directory of the ansible.cfg that finds "
                             "the collection (a checkout's root); relative paths start there (default: here)")
    parser.add_argument("--interval", type=float, default=30.0, help="seconds between polls")
    parser.add_argument("--once", action="store_true", help="poll once and exit (cron, tests)")
    parser.add_argument("--state-file", default=os.path.join(state.DEFAULT_STATE_DIR, "alarmwatch.json"))
    parser.add_argument("--endpoint-url", default=os.environ.get("AWS_ENDPOINT_URL"),
                        help="CloudWatch endpoint (a moto server in the local setup)")
    parser.add_argument("--region", default=os.environ.get("AWS_DEFAULT_REGION", "ap-northeast-1"))
    parser.add_argument("--extra-vars", action="append", default=[],
                        help="more -e arguments for the rollback playbook")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")

    import boto3

    cloudwatch = boto3.client("cloudwatch", region_name=args.region, endpoint_url=args.endpoint_url)
    extra = [item for value in args.extra_vars for item in ("-e", value)]
    watcher = AlarmWatcher(cloudwatch, args.alarm_prefix, args.state_file,
                           playbook_runner(args.inventory, extra, args.playbook, args.project_dir))
    while True:
        try:
            watcher.poll()
        except Exception as exc:  # keep watching through a transient AWS error, but say it
            LOG.error("poll failed: %s: %s", type(exc).__name__, exc)
            if args.once:
                return 2
        if args.once:
            return 0
        time.sleep(args.interval)


if __name__ == "__main__":
    sys.exit(main())
