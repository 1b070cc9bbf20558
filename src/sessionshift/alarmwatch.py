"""Rollback on alert: watch CloudWatch alarms and roll the fleet back once per incident.

A service on the controller for the weeks of the rollout (the ``alarm_watch`` role
deploys it as a systemd unit):

    python -m sessionshift.alarmwatch --project-dir /opt/sessionshift \\
        --inventory inventories/production \\
        --vault-id prod@/etc/sessionshift/vault-pass --sns-topic-arn arn:aws:sns:... \\
        --cooldown 900 --interval 30

The rules (docs/architecture.md, "Rollback on alert"):

- An **incident** opens when an alarm under the prefix is in ALARM and no incident is
  open. It closes once no alarm under the prefix has been in ALARM for ``--cooldown``
  seconds. Alarms that fire while it is open (the same one again, or others) join it.
- **One rollback per incident**: the collection's rollback playbook (``ansible-playbook
  sessionshift.migration.rollback -e rollback_to=previous``, run in ``--project-dir``, whose
  ansible.cfg finds the collection), i.e. one phase back from where the fleet stands when the
  rollback runs; never a playbook found next to this file (it runs from a wheel too). More alarm
  transitions during the incident do not step the fleet further back; a second step
  needs a new incident (everything quiet for the cool-down, then an alarm again) or an
  operator.
- The rollback runs under the **rollout lock** the phase playbooks take too
  (``sessionshift.rolloutlock``): while an operator's playbook holds it the rollback
  waits, retried at each poll; the lock is handed to the rollback.yml run.
- **SNS** on success and on failure (with the tail of the playbook's output); a failed
  rollback is not retried within the incident: the fleet needs an operator.
- The incident is kept in ``--state-file``, so a restarted watcher neither forgets an
  open incident nor rolls back twice for it.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import shlex
import subprocess
import sys
import time
from collections.abc import Callable, Sequence

from . import rolloutlock, state
from .awsoptions import add_aws_options, aws_client

LOG = logging.getLogger("sessionshift.alarmwatch")
ROLLBACK_PLAYBOOK = "sessionshift.migration.rollback"
DEFAULT_COOLDOWN = 900.0
VAULT_MARKER = b"$ANSIBLE_VAULT;"


@dataclasses.dataclass(frozen=True)
class AlarmEvent:
    name: str
    changed_at: str  # the alarm's StateUpdatedTimestamp, ISO
    reason: str


@dataclasses.dataclass(frozen=True)
class RollbackResult:
    returncode: int
    log_path: str = ""
    output_tail: str = ""


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


# --------------------------------------------------------------------------- the decision


@dataclasses.dataclass(frozen=True)
class Decision:
    action: str  # "rollback" | "none" | "close"
    record: dict  # the state file's new content
    joined: tuple[str, ...] = ()  # alarms that joined an open incident this poll


def decide(record: dict, firing: Sequence[str], now: float, cooldown: float) -> Decision:
    """The pure rule: what one poll does, given the state file and the alarms in ALARM now."""
    record = json.loads(json.dumps(record or {}))  # a copy; the caller writes it back
    incident = record.get("incident")
    if incident is None:
        if not firing:
            return Decision("none", record)
        record["incident"] = {"opened_at": now, "last_firing_at": now, "alarms": sorted(firing),
                              "rollback": None}
        return Decision("rollback", record)
    if firing:
        joined = tuple(sorted(set(firing) - set(incident["alarms"])))
        incident["alarms"] = sorted(set(incident["alarms"]) | set(firing))
        incident["last_firing_at"] = now
        # a rollback still owed (the lock was busy) is retried; one that ran is never repeated
        return Decision("rollback" if incident["rollback"] is None else "none", record, joined)
    if now - incident["last_firing_at"] >= cooldown:
        incident["closed_at"] = now
        record["incident"] = None
        record["history"] = [*(record.get("history") or [])[-19:], incident]
        return Decision("close", record)
    return Decision("none", record)


# --------------------------------------------------------------------------- effects


class AlarmWatcher:
    """One poll at a time: alarms -> decide -> (under the rollout lock) rollback.yml -> SNS."""

    def __init__(self, cloudwatch, prefix: str, state_file: str,
                 run_rollback: Callable[[list[str], rolloutlock.RolloutLock], RollbackResult], *,
                 lock_file: str = rolloutlock.DEFAULT_LOCK_FILE, cooldown: float = DEFAULT_COOLDOWN,
                 notify: Callable[[str, str], None] | None = None, clock: Callable[[], float] = time.time):
        self.cloudwatch = cloudwatch
        self.prefix = prefix
        self.state_file = state_file
        self.run_rollback = run_rollback
        self.lock_file = lock_file
        self.cooldown = cooldown
        self.notify = notify or (lambda subject, message: None)
        self.clock = clock

    def poll(self) -> Decision:
        firing = [event.name for event in firing_alarms(self.cloudwatch, self.prefix)]
        decision = decide(state.read_json(self.state_file) or {}, firing, self.clock(), self.cooldown)
        if decision.joined:
            LOG.warning("%s joined the open incident: no further rollback (one per incident)",
                        ", ".join(decision.joined))
        if decision.action == "close":
            LOG.info("incident closed: no alarm under %s for %gs", self.prefix, self.cooldown)
        if decision.action == "rollback":
            self._rollback(decision.record)
        state.write_json(self.state_file, decision.record)
        return decision

    def _rollback(self, record: dict) -> None:
        incident = record["incident"]
        alarms = incident["alarms"]
        try:
            lock = rolloutlock.acquire(self.lock_file, f"alarm watcher rollback ({', '.join(alarms)})")
        except rolloutlock.LockHeld as exc:
            LOG.warning("rollback for %s waits: %s", ", ".join(alarms), exc)
            return
        with lock:
            LOG.warning("alarms in ALARM: %s; rolling the fleet back one phase", ", ".join(alarms))
            # Recorded before it runs: a watcher killed mid-rollback must not start a second one
            # for the same incident when it comes back (returncode None = outcome unknown).
            incident["rollback"] = {"started_at": self.clock(), "returncode": None}
            state.write_json(self.state_file, record)
            result = self.run_rollback(alarms, lock)
        incident["rollback"].update(finished_at=self.clock(), returncode=result.returncode,
                                    log=result.log_path)
        record["last_rollback"] = {"at": state.utc_now(), "alarms": alarms, "returncode": result.returncode}
        if result.returncode == 0:
            self._notify(f"sessionshift: rolled back one phase on alarm {alarms[0]}",
                         f"The alarm watcher rolled the fleet back one phase (rollback.yml -e "
                         f"rollback_to=previous) because {', '.join(alarms)} went to ALARM. No further "
                         f"automatic rollback until no alarm has fired for {self.cooldown:g}s. "
                         f"Playbook log: {result.log_path}")
        else:
            LOG.error("rollback playbook exited %s: the fleet needs an operator", result.returncode)
            self._notify(f"sessionshift: automatic rollback FAILED on alarm {alarms[0]}",
                         f"rollback.yml exited {result.returncode} after {', '.join(alarms)} went to ALARM. "
                         f"The fleet needs an operator now; the watcher will not retry within this incident."
                         f"\nPlaybook log: {result.log_path}\n--- last lines ---\n{result.output_tail}")

    def _notify(self, subject: str, message: str) -> None:
        try:
            self.notify(subject, message)
        except Exception as exc:  # the rollback's outcome is in the state file and the log either way
            LOG.error("SNS publish failed: %s: %s", type(exc).__name__, exc)


def vaulted_files(inventory: str) -> list[str]:
    """Files under *inventory* that ansible-vault encrypted (whole files or inline !vault values)."""
    found = []
    paths = [inventory] if os.path.isfile(inventory) else [
        os.path.join(directory, name) for directory, _dirs, names in os.walk(inventory) for name in names]
    for path in paths:
        try:
            with open(path, "rb") as handle:
                if VAULT_MARKER in handle.read(1 << 20):
                    found.append(path)
        except OSError:
            continue
    return found


@dataclasses.dataclass(frozen=True)
class PlaybookConfig:
    """How the watcher runs the rollback playbook: in a project directory it is given, never its own."""

    project_dir: str  # where ansible-playbook runs; its ansible.cfg finds the collection
    inventory: str  # as given; a relative path starts in project_dir
    log_dir: str
    playbook: str = ROLLBACK_PLAYBOOK  # the collection's, or a path to a playbook
    vault_ids: tuple[str, ...] = ()
    vault_password_files: tuple[str, ...] = ()
    extra_vars: tuple[str, ...] = ()
    ansible_playbook: str = ""

    def _path(self, path: str) -> str:
        return os.path.join(self.project_dir, path)  # an absolute path stays itself

    def check(self) -> list[str]:
        """What would stop a rollback from running, found at start instead of during an incident."""
        problems = []
        if not os.path.isdir(self.project_dir):
            problems.append(f"--project-dir {self.project_dir} is not a directory: give the directory whose "
                            "ansible.cfg finds the sessionshift.migration collection")
        if self.playbook.endswith((".yml", ".yaml")) and not os.path.isfile(self._path(self.playbook)):
            problems.append(f"playbook {self._path(self.playbook)} does not exist")
        inventory = self._path(self.inventory)
        if not os.path.exists(inventory):
            problems.append(f"inventory {inventory} does not exist")
        for spec in self.vault_ids:
            source = spec.split("@", 1)[-1]
            if source != "prompt" and not os.access(self._path(source), os.R_OK):
                problems.append(f"vault id {spec}: {source} is not readable by this user")
        for path in self.vault_password_files:
            if not os.access(self._path(path), os.R_OK):
                problems.append(f"vault password file {path} is not readable by this user")
        if any(spec.endswith("@prompt") for spec in self.vault_ids):
            problems.append("a service cannot answer a vault prompt: give a password file or script")
        vaulted = vaulted_files(inventory) if os.path.exists(inventory) else []
        if vaulted and not (self.vault_ids or self.vault_password_files):
            problems.append(f"{vaulted[0]} is vault-encrypted but no --vault-id or --vault-password-file "
                            "was given: ansible-playbook would stop with 'no vault secrets found'")
        return problems

    def command(self, reason: str) -> list[str]:
        binary = self.ansible_playbook or os.path.join(os.path.dirname(sys.executable), "ansible-playbook")
        vault = [arg for spec in self.vault_ids for arg in ("--vault-id", spec)]
        vault += [arg for path in self.vault_password_files for arg in ("--vault-password-file", path)]
        extra = [arg for value in self.extra_vars for arg in ("-e", value)]
        return [binary, "-i", self.inventory, self.playbook, "-e", "rollback_to=previous",
                "-e", json.dumps({"rollback_reason": reason}), *vault, *extra]


def playbook_runner(config: PlaybookConfig) -> Callable[[list[str], rolloutlock.RolloutLock], RollbackResult]:
    """Run rollback.yml one phase back under the lock the watcher holds, naming the alarms."""

    def run(alarms: list[str], lock: rolloutlock.RolloutLock) -> RollbackResult:
        command = config.command("alarm " + ", ".join(alarms) + " in ALARM")
        os.makedirs(config.log_dir, exist_ok=True)
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        log_path = os.path.join(config.log_dir, f"rollback-{stamp}.log")
        env = dict(os.environ, SESSIONSHIFT_ROLLOUT_LOCK=lock.path, ANSIBLE_NOCOLOR="1", **lock.child_env())
        cfg = os.path.join(config.project_dir, "ansible.cfg")
        if os.path.isfile(cfg):  # the project's, not one an environment variable points elsewhere
            env["ANSIBLE_CONFIG"] = cfg
        LOG.warning("running: %s (in %s, log %s)", shlex.join(command), config.project_dir, log_path)
        with open(log_path, "wb") as log:
            done = subprocess.run(command, cwd=config.project_dir, env=env, stdout=log,
                                  stderr=subprocess.STDOUT, pass_fds=(lock.fd,), check=False)
        with open(log_path, "rb") as log:
            log.seek(max(0, os.path.getsize(log_path) - 3000))
            tail = log.read().decode("utf-8", "replace")
        return RollbackResult(done.returncode, log_path, tail)

    return run


def sns_notifier(sns, topic_arn: str) -> Callable[[str, str], None]:
    def notify(subject: str, message: str) -> None:
        sns.publish(TopicArn=topic_arn, Subject=subject[:99], Message=message)

    return notify


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sessionshift.alarmwatch",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--alarm-prefix", default="sessionshift-",
                        help="watch alarms whose names start with this")
    parser.add_argument("--project-dir", default=os.getcwd(),
                        help="where ansible-playbook runs: the directory of the ansible.cfg that finds the "
                             "collection (a checkout's root); relative paths start there (default: here)")
    parser.add_argument("--playbook", default=ROLLBACK_PLAYBOOK,
                        help="the rollback playbook: the collection's (default) or a path to one")
    parser.add_argument("--inventory", required=True, help="the rollout's inventory (ansible-playbook -i)")
    parser.add_argument("--vault-id", action="append", default=[],
                        help="passed to ansible-playbook (e.g. prod@/etc/sessionshift/vault-pass)")
    parser.add_argument("--vault-password-file", action="append", default=[],
                        help="passed to ansible-playbook")
    parser.add_argument("--extra-vars", action="append", default=[],
                        help="more -e arguments for the rollback playbook")
    parser.add_argument("--lock-file", default=os.environ.get("SESSIONSHIFT_ROLLOUT_LOCK",
                                                             rolloutlock.DEFAULT_LOCK_FILE),
                        help="the rollout lock the phase playbooks take (sessionshift_lock callback)")
    parser.add_argument("--cooldown", type=float, default=DEFAULT_COOLDOWN,
                        help="seconds without any alarm in ALARM before the incident closes")
    parser.add_argument("--sns-topic-arn", default="", help="publish each rollback's outcome here")
    parser.add_argument("--interval", type=float, default=30.0, help="seconds between polls")
    parser.add_argument("--once", action="store_true", help="poll once and exit (cron, tests)")
    parser.add_argument("--state-file", default=os.path.join(state.DEFAULT_STATE_DIR, "alarmwatch.json"))
    add_aws_options(parser, "CloudWatch and SNS")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    config = PlaybookConfig(
        project_dir=os.path.abspath(args.project_dir), inventory=args.inventory, playbook=args.playbook,
        log_dir=os.path.join(os.path.dirname(os.path.abspath(args.state_file)), "alarmwatch-runs"),
        vault_ids=tuple(args.vault_id), vault_password_files=tuple(args.vault_password_file),
        extra_vars=tuple(args.extra_vars))
    problems = config.check()
    if problems:
        for problem in problems:
            LOG.error("cannot roll back: %s", problem)
        return 2

    cloudwatch = aws_client(args, "cloudwatch")
    notify = sns_notifier(aws_client(args, "sns"), args.sns_topic_arn) if args.sns_topic_arn else None
    watcher = AlarmWatcher(cloudwatch, args.alarm_prefix, args.state_file, playbook_runner(config),
                           lock_file=args.lock_file, cooldown=args.cooldown, notify=notify)
    LOG.info("watching alarms %s* every %gs (cool-down %gs, lock %s, %s in %s)", args.alarm_prefix,
             args.interval, args.cooldown, args.lock_file, config.playbook, config.project_dir)
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
