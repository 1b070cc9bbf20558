"""One rollout playbook at a time: a lock the phase playbooks and the alarm watcher share."""

from __future__ import annotations

DOCUMENTATION = r"""
name: sessionshift_lock
type: aggregate
short_description: One phase or rollback playbook at a time on this controller
description:
  - When a phase playbook (phase1.yml ... phase5.yml, site.yml) or rollback.yml starts, takes an
    exclusive C(flock) on O(lock_file) and holds it until ansible-playbook exits (the kernel drops it
    when the process ends, even if it is killed). If the lock is held, the playbook stops at once
    (exit code 3) and says who holds it.
  - The alarm watcher (C(python -m sessionshift.alarmwatch)) takes the same lock before it runs
    rollback.yml and hands it to that run (environment C(SESSIONSHIFT_ROLLOUT_LOCK_FD)), so an
    operator's phase playbook and the automatic rollback never run at once.
  - Other playbooks (status.yml, local_infra.yml, ...) are not locked.
options:
  lock_file:
    description: The lock file; every operator and the alarm watcher must name the same one.
    default: /var/tmp/sessionshift-rollout.lock
    env:
      - name: SESSIONSHIFT_ROLLOUT_LOCK
    ini:
      - section: sessionshift_lock
        key: lock_file
  playbooks:
    description: Base names of the playbooks that take the lock.
    type: list
    elements: str
    default: [phase1.yml, phase2.yml, phase3.yml, phase4.yml, phase5.yml, site.yml, rollback.yml]
    ini:
      - section: sessionshift_lock
        key: playbooks
"""

import os  # noqa: E402 (after DOCUMENTATION, as Ansible plugins are laid out)

from ansible.plugins.callback import CallbackBase  # noqa: E402
from ansible.utils.display import Display  # noqa: E402

try:
    from sessionshift import rolloutlock
except ImportError:  # the package is not installed on this controller: no lock to take
    rolloutlock = None

display = Display()


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "sessionshift_lock"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._lock = None

    def v2_playbook_on_start(self, playbook):
        name = os.path.basename(playbook._file_name)
        if name not in self.get_option("playbooks"):
            return
        if rolloutlock is None:
            display.warning("sessionshift is not importable: the rollout lock is not taken")
            return
        path = self.get_option("lock_file")
        try:
            self._lock = rolloutlock.acquire(path, f"ansible-playbook {name}")
        except rolloutlock.LockHeld as exc:
            display.error(str(exc))
            # A callback's exception is only reported as a warning; stopping the run needs an exit.
            raise SystemExit(3) from None
        if self._lock.inherited:
            display.vvv(f"rollout lock {path}: held by the parent process (the alarm watcher)")
        else:
            display.vvv(f"rollout lock {path}: taken for {name}")
