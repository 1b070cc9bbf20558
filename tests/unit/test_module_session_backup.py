"""session_backup against a real redis-server: backup / restore, check mode, idempotence."""

from __future__ import annotations

import json
import os
import time

import pytest
from ansible.module_utils.testing import patch_module_args

from sessionshift import formats
from sessionshift.keys import KeyLayout
from sessionshift.store import SessionStore
from tests.conftest import load_module

pytestmark = pytest.mark.integration

module = load_module("session_backup")


def run(capsys, check_mode=False, **params):
    params = dict(params, _ansible_check_mode=check_mode)
    with patch_module_args(params), pytest.raises(SystemExit):
        module.main()
    return json.loads(capsys.readouterr().out)


@pytest.fixture
def redis_param(redis_client, redis_server):
    store = SessionStore(redis_client, KeyLayout())
    for i in range(20):
        store.app_write(store.layout.file_name(f"sid-{i}"), formats.encode_value({"n": i}),
                        int(time.time()) + 600)
    store.app_delete(store.layout.file_name("sid-0"))
    settings = redis_server.settings()
    return {"url": settings.url, "username": settings.username, "password": settings.password,
            "ca_file": settings.ca_file}


def test_backup_check_mode_then_create_then_keep(redis_param, tmp_path, capsys):
    dest = str(tmp_path / "sessions.jsonl.gz")
    preview = run(capsys, check_mode=True, redis=redis_param, dest=dest)
    assert preview["changed"] is True and preview["manifest"]["counts"] == {"hashed": 19, "tombstone": 1,
                                                                            "stock": 0}
    assert not os.path.exists(dest)
    made = run(capsys, redis=redis_param, dest=dest)
    assert made["changed"] is True and made["created"] is True
    assert made["manifest"]["source"].startswith("rediss://127.0.0.1:")
    assert redis_param["password"] not in json.dumps(made)  # no_log, and no credential in the source
    assert os.stat(dest).st_mode & 0o777 == 0o600
    again = run(capsys, redis=redis_param, dest=dest)
    assert again["changed"] is False and again["manifest"] == made["manifest"]
    assert run(capsys, check_mode=True, redis=redis_param, dest=dest)["changed"] is False


def test_restore_check_mode_then_restore_then_unchanged(redis_param, redis_client, tmp_path, capsys):
    dest = str(tmp_path / "b.gz")
    run(capsys, redis=redis_param, dest=dest)
    redis_client.flushall()
    preview = run(capsys, check_mode=True, redis=redis_param, state="restored", src=dest)
    assert preview["changed"] is True and preview["restored_total"] == 20
    assert redis_client.dbsize() == 0
    restored = run(capsys, redis=redis_param, state="restored", src=dest)
    assert restored["changed"] is True and restored["restored"] == {"hashed": 19, "tombstone": 1, "stock": 0}
    again = run(capsys, redis=redis_param, state="restored", src=dest)
    assert again["changed"] is False and again["counts"]["kept_existing"] == 20


def test_corrupt_backup_and_bad_destination_fail_clearly(redis_param, redis_client, tmp_path, capsys):
    dest = tmp_path / "b.gz"
    dest.write_bytes(b"not a backup at all")
    refused = run(capsys, redis=redis_param, state="restored", src=str(dest))
    assert refused["failed"] is True and "nothing was restored" in refused["msg"]
    kept = run(capsys, redis=redis_param, dest=str(dest))
    assert kept["failed"] is True and "not a usable backup" in kept["msg"]
    assert dest.read_bytes() == b"not a backup at all"
    forced = run(capsys, redis=redis_param, dest=str(dest), force=True)
    assert forced["changed"] is True and forced["manifest"]["keys"] == 20
    missing = run(capsys, redis=redis_param, state="restored")
    assert missing["failed"] is True and "src" in missing["msg"]
