"""A logout's tombstone lives in the session key (keys.TOMBSTONE): every reader takes it for
"logged out, no session", against a real redis-server."""

from __future__ import annotations

import os
import time

import pytest

from sessionshift import formats
from sessionshift.backup import create_backup, files_from_backup, restore_backup
from sessionshift.export import export_sessions
from sessionshift.keys import KeyLayout
from sessionshift.store import CopyResult, SessionStore
from sessionshift.validate import ValidateConfig, validate
from tests.support.tombstone import holds_tombstone

pytestmark = pytest.mark.integration


def test_every_reader_takes_the_tombstone_for_a_logout(redis_client, tmp_path):
    session_dir, elsewhere = tmp_path / "sessions", tmp_path / "from-backup"
    session_dir.mkdir()
    elsewhere.mkdir()
    store = SessionStore(redis_client, KeyLayout())
    expiry = int(time.time()) + 600
    gone, no_file = store.layout.file_name("logged-out"), store.layout.file_name("logged-out-elsewhere")
    for directory in (session_dir, elsewhere):  # the logged-out user's file, left behind
        formats.write_session_file(str(directory), gone, {"user": "alice"}, expiry)
    store.app_delete(gone)
    store.app_delete(no_file)  # a logout whose file was another host's

    assert store.get(gone) is None
    assert store.copy_if_absent(gone, b"\x80\x04from the file", expiry) is CopyResult.TOMBSTONED
    checked = validate(redis_client, ValidateConfig(str(session_dir), recheck_delay=0, count_orphans=True))
    assert (checked["counts"]["tombstoned"], checked["counts"]["missing"], checked["counts"]["orphaned"]) \
        == (1, 0, 0)

    dest = str(tmp_path / "backup.gz")
    assert create_backup(redis_client, store.layout, dest).manifest["counts"] == {
        "hashed": 0, "tombstone": 2, "stock": 0}
    exported = export_sessions(redis_client, store.layout, str(session_dir))
    assert (exported.removed, exported.written) == (1, 0)
    assert os.listdir(session_dir) == []  # the stale file went, and no tombstone became a file

    redis_client.flushall()
    restored = restore_backup(redis_client, dest)
    assert restored.restored == {"hashed": 0, "tombstone": 2, "stock": 0}
    assert holds_tombstone(redis_client, store.layout.session_key(gone))
    assert store.copy_many_if_absent([(gone, b"\x80\x04from the file", expiry)]) == [CopyResult.TOMBSTONED]
    from_backup = files_from_backup(dest, str(elsewhere))
    assert (from_backup.removed, from_backup.written) == (1, 0) and os.listdir(elsewhere) == []
