"""After the drills: every host back in `file`, through the steps it was asked to take, with
every seeded session still logged in from its file and nothing left behind in Redis alone."""

from __future__ import annotations

import glob
import json
import os

testinfra_hosts = ["ansible://app1", "ansible://app2"]



def _phase(host, app):
    return json.loads(host.file(app["session_app_state_dir"] + "/phase.json").content_string)


def test_host_is_back_in_file_after_the_emergency(host, app):
    record = _phase(host, app)
    assert record["phase"] == "file"
    moves = [(entry["from"], entry["to"]) for entry in record["history"]]
    # the gradual rollback went one phase at a time...
    assert ("redis_only", "redis_read") in moves and ("redis_read", "dual_write") in moves
    # ...and the emergency from redis_only went through redis_read (export, flip, catch-up), then
    # through dual_write: redis_read and file workers must never serve side by side
    assert moves[-3:] == [("redis_only", "redis_read"), ("redis_read", "dual_write"), ("dual_write", "file")]
    assert record["history"][-1]["emergency"] is True


def test_the_exports_were_recorded(host, app):
    export = json.loads(host.file(app["session_app_state_dir"] + "/export.json").content_string)
    assert export["finished_at"] and export["complete"] is True


def test_the_emergency_took_one_backup_for_the_fleet():
    """One backup of the shared Redis (run_once), on the first app host's disk, private."""
    local_dir = os.environ["SESSIONSHIFT_LOCAL_DIR"]
    backups = glob.glob(os.path.join(local_dir, "*", "state", "backups", "sessions-emergency-*"))
    assert len(backups) == 1
    assert os.stat(backups[0]).st_mode & 0o777 == 0o600
    assert os.stat(os.path.dirname(backups[0])).st_mode & 0o777 == 0o700


def test_every_seeded_session_is_still_logged_in_from_its_file(seeded_sessions_not_served):
    """Phase 1 again: sessions are read from files only, so each one must have come back as a file.

    The hosts are this machine (ansible_connection: local), so the test asks the app directly.
    """
    assert seeded_sessions_not_served("file") == []
