"""The rollout lock: a phase playbook refuses to start while another run or the watcher holds it."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from devstack.local_stack import ROOT
from sessionshift import rolloutlock

pytestmark = pytest.mark.integration


def run_phase2(lock_file: str, *, pass_fds=(), env=None) -> subprocess.CompletedProcess:
    """phase2.yml against an inventory with no app hosts: it starts, takes the lock, matches nothing."""
    return subprocess.run(
        [os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), "-i", "localhost,",
         os.path.join(ROOT, "playbooks", "phase2.yml")],
        cwd=ROOT, env=dict(os.environ, ANSIBLE_CONFIG=os.path.join(ROOT, "ansible.cfg"), ANSIBLE_NOCOLOR="1",
                           SESSIONSHIFT_ROLLOUT_LOCK=lock_file, **(env or {})),
        pass_fds=pass_fds, capture_output=True, text=True, timeout=300, check=False)


def test_a_phase_playbook_stops_while_the_lock_is_held_and_runs_under_the_holders_hand_off(tmp_path):
    lock_file = str(tmp_path / "rollout.lock")
    with rolloutlock.acquire(lock_file, "alarm watcher rollback") as held:
        refused = run_phase2(lock_file)
        assert refused.returncode == 3, refused.stdout[-2000:] + refused.stderr[-2000:]
        assert "is held by pid" in refused.stderr and "alarm watcher rollback" in refused.stderr
        assert "PLAY [" not in refused.stdout  # stopped before any play

        # the holder's child (the watcher's rollback.yml) runs under the lock it was handed
        handed = run_phase2(lock_file, pass_fds=(held.fd,), env=held.child_env())
        assert handed.returncode == 0, handed.stdout[-2000:] + handed.stderr[-2000:]
        assert "PLAY [" in handed.stdout

        # a descriptor of some other file is no hand-off
        with open(tmp_path / "other", "w") as other:
            forged = run_phase2(lock_file, pass_fds=(other.fileno(),),
                                env={rolloutlock.INHERITED_FD_ENV: str(other.fileno())})
        assert forged.returncode == 3

    free = run_phase2(lock_file)
    assert free.returncode == 0, free.stdout[-2000:] + free.stderr[-2000:]
    with pytest.raises(rolloutlock.LockHeld):  # and a second taker in-process is refused
        with rolloutlock.acquire(lock_file, "one"):
            rolloutlock.acquire(lock_file, "two")
