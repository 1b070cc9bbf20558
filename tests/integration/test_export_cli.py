"""The export / backup / restore / cleanup subcommands of the sessionshift command, end to end."""

from __future__ import annotations

import json
import os
import time

import pytest

from sessionshift import cli, formats, state
from sessionshift.keys import KeyLayout
from sessionshift.store import SessionStore

pytestmark = pytest.mark.integration


@pytest.fixture
def store(redis_client):
    store = SessionStore(redis_client, KeyLayout())
    for i in range(12):
        store.app_write(store.layout.file_name(f"sid-{i}"), formats.encode_value({"n": i}),
                        int(time.time()) + 600)
    return store


def test_export_then_cleanup_json(store, redis_args, tmp_path, capsys):
    session_dir, state_dir = tmp_path / "sessions", str(tmp_path / "state")
    session_dir.mkdir()
    common = ["--session-dir", str(session_dir), "--state-dir", state_dir]
    assert cli.main(["export", *common, *redis_args, "--mode", "0640", "--json"]) == cli.EXIT_OK
    result = json.loads(capsys.readouterr().out)
    assert result["written"] == 12 and result["keys_exported"] == 12
    assert state.read_json(state.state_path(state_dir, state.EXPORT_FILE))["keys_exported"] == 12
    assert {os.stat(p).st_mode & 0o777 for p in session_dir.iterdir()} == {0o640}
    assert cli.main(["export", *common, *redis_args]) == cli.EXIT_OK
    assert "wrote 0 file(s), 12 unchanged" in capsys.readouterr().out

    assert cli.main(["cleanup", *common, "--scope", "all"]) == cli.EXIT_ERROR
    assert "not phase 5" in capsys.readouterr().err
    # No phase file (phase 1): the files are the only copy, so max-age 0 is refused without --force.
    assert cli.main(["cleanup", *common, "--scope", "older", "--max-age", "0", "--dry-run"]) == cli.EXIT_ERROR
    assert "refusing to remove 12 live session file(s)" in capsys.readouterr().err
    assert cli.main(["cleanup", *common, "--scope", "older", "--max-age", "-60", "--force"]) == cli.EXIT_ERROR
    assert "in the future" in capsys.readouterr().err
    assert cli.main(["cleanup", *common, "--scope", "older", "--max-age", "0", "--dry-run",
                     "--force"]) == cli.EXIT_OK
    out = capsys.readouterr().out
    assert "would remove 12 session file(s)" in out and len(os.listdir(session_dir)) == 12


def test_backup_and_restore(store, redis_args, tmp_path, capsys):
    dest = str(tmp_path / "b.jsonl.gz")
    assert cli.main(["backup", *redis_args, "--dest", dest, "--json"]) == cli.EXIT_OK
    manifest = json.loads(capsys.readouterr().out)["manifest"]
    assert manifest["counts"]["hashed"] == 12 and "password" not in json.dumps(manifest)
    store.client.flushall()
    assert cli.main(["restore", *redis_args, "--src", dest]) == cli.EXIT_OK
    assert "restored 12 key(s)" in capsys.readouterr().out
    with open(dest, "r+b") as handle:
        handle.seek(40)
        handle.write(b"\xff\xff\xff\xff")
    assert cli.main(["restore", *redis_args, "--src", dest]) == cli.EXIT_ERROR
    assert "nothing was restored" in capsys.readouterr().err
