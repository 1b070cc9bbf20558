"""Environment and usage errors: one line on stderr and exit 2, whatever the worker count; no hang."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from sessionshift import cli, formats
from sessionshift.keys import KeyLayout
from sessionshift.store import SessionStore

pytestmark = pytest.mark.integration


def _unwritable_directory(tmp_path) -> str:
    """A directory this user cannot create files in (root ignores modes: use a procfs one)."""
    if os.geteuid() == 0:
        return "/proc/self/fdinfo"
    path = tmp_path / "read-only"
    path.mkdir(mode=0o500)
    return str(path)


def test_export_into_an_unwritable_directory_fails_and_exits(redis_client, redis_args, tmp_path):
    store = SessionStore(redis_client, KeyLayout())
    with redis_client.pipeline(transaction=False) as pipe:  # enough batches to fill the task pipe
        for i in range(20_000):
            pipe.set(store.layout.session_key(store.layout.file_name(f"sid-{i}")),
                     formats.encode_value({"n": i}))
        pipe.execute()
    command = [sys.executable, "-m", "sessionshift.cli", "export", "--session-dir",
               _unwritable_directory(tmp_path), *redis_args, "--workers", "2", "--no-record", "--quiet"]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    except subprocess.TimeoutExpired:
        pytest.fail("export hung after its workers failed")
    assert done.returncode == cli.EXIT_ERROR
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("sessionshift export: error:")


@pytest.mark.parametrize("workers", ["1", "2"])
def test_an_unreadable_session_directory_is_exit_2_in_one_line(redis_client, redis_args, tmp_path,
                                                                 monkeypatch, capsys, workers):
    session_dir = tmp_path / "sessions"
    session_dir.mkdir()
    (session_dir / formats.session_file_name("a")).write_bytes(formats.encode_cachelib({"n": 1}, 0))
    real_scandir = os.scandir

    def unreadable(path="."):  # root reads any directory: make this one refuse as it would for the app user
        if os.fspath(path) == str(session_dir):
            raise PermissionError(13, "Permission denied", str(session_dir))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", unreadable)
    code = cli.main(["migrate", "--session-dir", str(session_dir), "--state-dir", str(tmp_path / "state"),
                     *redis_args, "--workers", workers, "--quiet"])
    err = capsys.readouterr().err
    assert code == cli.EXIT_ERROR
    assert err.count("\n") == 1 and "Permission denied" in err and str(session_dir) in err


def test_redis_errors_name_the_fix_quickly(tmp_path, capsys):
    code = cli.main(["backup", "--redis-url", "rediss://127.0.0.1:6379/0?ssl_cert_reqs=none",
                     "--dest", str(tmp_path / "b.gz")])
    assert code == cli.EXIT_ERROR
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "ssl_cert_reqs" in err


def test_a_planted_file_does_not_stop_migrate(redis_client, redis_args, tmp_path, capsys):
    from tests.support import hostile

    session_dir = tmp_path / "sessions"
    session_dir.mkdir()
    good = formats.session_file_name("good")
    (session_dir / good).write_bytes(formats.encode_cachelib({"user": "ann"}, int(time.time()) + 600))
    for index, builder in enumerate(hostile.HOSTILE.values()):
        (session_dir / formats.session_file_name(f"planted-{index}")).write_bytes(builder())
    for workers in ("1", "2"):
        code = cli.main(["migrate", "--session-dir", str(session_dir), "--state-dir", str(tmp_path / "st"),
                         *redis_args, "--workers", workers, "--quiet", "--restart"])
        out = capsys.readouterr().out
        assert code == cli.EXIT_OK
        # Structurally whole files are copied unread (refused where read); the protocol-0 one is
        # decoded, as structure cannot settle it, and reported.
        assert "1 corrupt" in out and "copied unread" in out
    assert redis_client.exists(KeyLayout().session_key(good))
    # analyze decodes every file: it names each planted one.
    code = cli.main(["analyze", "--session-dir", str(session_dir), "--state-dir", str(tmp_path / "st")])
    assert code == cli.EXIT_OK
    out = capsys.readouterr().out
    assert f"{len(hostile.HOSTILE)} corrupt" in out
    assert all(formats.session_file_name(f"planted-{index}") in out for index in range(len(hostile.HOSTILE)))


@pytest.mark.parametrize(("command", "option", "named"), [
    ("export", ["--workers", "-1"], "workers"),
    ("export", ["--batch-size", "-5"], "batch_size"),
    ("export", ["--mode", "600x"], "--mode"),
    ("export", ["--mode", "0200"], "--mode"),
    ("migrate", ["--workers", "-2"], "workers"),
    ("migrate", ["--batch-size", "0"], "batch_size"),
    ("validate", ["--workers", "-1"], "workers"),
    ("validate", ["--max-examples", "-1"], "max_examples"),
    ("backup", ["--batch-size", "-1"], "batch_size"),
])
def test_bad_numbers_are_named_in_one_line(redis_client, redis_args, tmp_path, capsys,
                                           command, option, named):
    session_dir = tmp_path / "sessions"
    session_dir.mkdir()
    where = (["--dest", str(tmp_path / "b.gz")] if command == "backup"
             else ["--session-dir", str(session_dir), "--state-dir", str(tmp_path / "state")])
    code = cli.main([command, *where, *redis_args, *option, "--quiet"])
    err = capsys.readouterr().err
    assert code == cli.EXIT_ERROR
    assert err.count("\n") == 1 and named in err and "Redis at" not in err


def test_modules_refuse_an_integer_mode_and_negative_counts(redis_server, tmp_path, capsys):
    import json

    from ansible.module_utils.testing import patch_module_args

    from tests.conftest import load_module

    settings = redis_server.settings()
    redis = {"url": settings.url, "username": settings.username, "password": settings.password,
             "ca_file": settings.ca_file}
    session_dir = tmp_path / "sessions"
    session_dir.mkdir()

    def run(name, **params):
        with patch_module_args(params), pytest.raises(SystemExit):
            load_module(name).main()
        return json.loads(capsys.readouterr().out)

    common = {"redis": redis, "session_dir": str(session_dir), "state_dir": str(tmp_path / "state")}
    result = run("session_export", mode=600, **common)
    assert result["failed"] and "quote the octal mode" in result["msg"] and "0o1130" in result["msg"]
    for name, option in (("session_export", "max_rounds"), ("session_export", "workers"),
                         ("session_export", "batch_size"), ("session_migrate", "workers"),
                         ("session_migrate", "batch_size"), ("session_validate", "workers")):
        result = run(name, **{option: -3}, **common)
        assert result["failed"] and option in result["msg"] and "Redis at" not in result["msg"], result
