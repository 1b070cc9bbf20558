"""The sessionshift command: subcommands, password handling, exit codes, JSON output."""

from __future__ import annotations

import io
import json
import os

import pytest

from sessionshift import cli, state
from sessionshift.keys import KeyLayout
from sessionshift.progress import Progress, ProgressBar, format_line
from tests.integration.test_migrate import make_corpus


def redis_args(settings, password_file):
    with open(password_file, "w") as handle:
        handle.write(settings.password + "\n")
    return ["--redis-url", settings.url, "--redis-user", settings.username,
            "--redis-password-file", str(password_file), "--ca-file", settings.ca_file]


def test_phases_json_lists_the_five_phases(capsys):
    assert cli.main(["phases", "--json"]) == 0
    phases = json.loads(capsys.readouterr().out)["phases"]
    assert [p["label"] for p in phases] == ["file", "dual_write", "redis_read", "redis_only", "redis"]
    assert cli.main(["phases"]) == 0 and "gate:" in capsys.readouterr().out


def test_password_is_not_a_command_line_option():
    parser = cli.build_parser()
    with pytest.raises(SystemExit):
        parser.parse_args(["migrate", "--session-dir", "/tmp", "--redis-password", "x"])


def test_missing_redis_url_is_a_one_line_error(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("SESSIONSHIFT_REDIS_URL", raising=False)
    assert cli.main(["migrate", "--session-dir", str(tmp_path)]) == cli.EXIT_ERROR
    assert "--redis-url" in capsys.readouterr().err


def test_missing_session_dir_is_a_one_line_error(tmp_path, capsys):
    assert cli.main(["analyze", "--session-dir", str(tmp_path / "nope")]) == cli.EXIT_ERROR
    assert "does not exist" in capsys.readouterr().err


def test_analyze_counts_and_estimates_from_a_sample(tmp_path, capsys):
    make_corpus(str(tmp_path), 50)
    make_corpus(str(tmp_path), 5, lifetime=-10, start=100)
    (tmp_path / "stray.log").write_text("x")
    assert cli.main(["analyze", "--session-dir", str(tmp_path), "--json", "--sample-size", "20",
                     "--no-record"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert (result["files"], result["live"], result["expired"], result["foreign"]) == (55, 50, 5, 1)
    assert result["estimate"]["sample_sessions"] == 20 and result["estimate"]["per_session_ms"] > 0
    assert sum(result["size_bytes"]["histogram"].values()) == 55
    assert result["expiry"]["oldest_epoch"] <= result["expiry"]["newest_epoch"]


@pytest.mark.integration
def test_migrate_then_validate(redis_client, redis_server, tmp_path, capsys, monkeypatch):
    session_dir, state_dir = str(tmp_path / "sessions"), str(tmp_path / "state")
    corpus = make_corpus(session_dir, 80)
    common = ["--session-dir", session_dir, "--state-dir", state_dir,
              *redis_args(redis_server.settings(), tmp_path / "pw")]
    assert cli.main(["migrate", *common, "--workers", "1", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["counts"]["written"] == 80
    assert cli.main(["validate", *common, "--recheck-delay", "0"]) == 0
    assert "100% of 80 comparable" in capsys.readouterr().out
    assert state.read_json(os.path.join(state_dir, state.VALIDATION_FILE))["passed"]

    redis_client.delete(KeyLayout().session_key(next(iter(corpus))))
    assert cli.main(["validate", *common, "--recheck-delay", "0", "--quiet"]) == cli.EXIT_CHECK_FAILED
    assert "BELOW THRESHOLD" in capsys.readouterr().out


@pytest.mark.integration
def test_password_from_the_environment_and_a_wrong_one(redis_server, tmp_path, capsys, monkeypatch):
    settings = redis_server.settings()
    os.makedirs(tmp_path / "s")
    base = ["analyze", "--session-dir", str(tmp_path / "s"), "--no-record", "--redis-url", settings.url,
            "--redis-user", settings.username, "--ca-file", settings.ca_file]
    monkeypatch.setenv(cli.PASSWORD_ENV, settings.password)
    assert cli.main(base) == 0
    monkeypatch.setenv(cli.PASSWORD_ENV, "wrong-password")
    capsys.readouterr()
    assert cli.main(base) == cli.EXIT_ERROR
    err = capsys.readouterr().err
    assert "authentication failed" in err and "wrong-password" not in err


def test_progress_line_shows_counts_rate_and_only_on_a_terminal():
    line = format_line(Progress("migrate", done=5000, total=20000, counts={"written": 4000, "corrupt": 0},
                                elapsed=2.0))
    assert "25%" in line and "5,000/20,000" in line and "written 4,000" in line and "2,500/s" in line
    assert "corrupt" not in line
    quiet = io.StringIO()
    ProgressBar(quiet)(Progress("migrate", done=1, elapsed=1.0))
    assert quiet.getvalue() == ""  # not a TTY
    shown = io.StringIO()
    with ProgressBar(shown, force=True) as bar:
        bar(Progress("migrate", done=1, elapsed=1.0))
    assert shown.getvalue().startswith("\rmigrate") and shown.getvalue().endswith("\n")
