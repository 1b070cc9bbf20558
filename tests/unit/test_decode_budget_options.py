"""The decoding budget is an option everywhere a session is decoded: the CLI, the modules, the app."""

from __future__ import annotations

import json

import pytest
from ansible.module_utils.testing import patch_module_args
from flask import Flask

from sessionshift import cli, formats, safepickle
from sessionshift.flask import PhasedSession
from tests.conftest import load_module

DEEP = {"x": [[[[[1]]]]]}  # five levels of lists under the session dict


@pytest.fixture(autouse=True)
def restore_budget(monkeypatch):
    monkeypatch.setattr(safepickle, "_budget", safepickle.current_budget())


@pytest.fixture
def session_dir(tmp_path):
    directory = tmp_path / "sessions"
    directory.mkdir()
    (directory / formats.session_file_name("deep")).write_bytes(formats.encode_cachelib(DEEP, 0))
    (directory / formats.session_file_name("flat")).write_bytes(formats.encode_cachelib({"a": 1}, 0))
    return directory


def test_the_cli_takes_the_budget_as_options(session_dir, capsys):
    assert cli.main(["analyze", "--session-dir", str(session_dir), "--no-record", "--json",
                     "--quiet"]) == cli.EXIT_OK
    assert json.loads(capsys.readouterr().out)["corrupt"] == 0
    assert cli.main(["analyze", "--session-dir", str(session_dir), "--no-record", "--json", "--quiet",
                     "--max-depth", "3"]) == cli.EXIT_OK
    result = json.loads(capsys.readouterr().out)
    assert result["corrupt"] == 1 and "max_depth=3" in result["errors"][0]["reason"]
    assert result["errors"][0]["path"].endswith(formats.session_file_name("deep"))
    assert cli.main(["analyze", "--session-dir", str(session_dir), "--no-record",
                     "--max-objects", "-1"]) == cli.EXIT_ERROR
    assert "--max-objects must be a positive integer" in capsys.readouterr().err


def test_modules_take_the_budget_as_decode_budget(session_dir, tmp_path, capsys):
    module = load_module("session_analyze")
    params = {"session_dir": str(session_dir), "state_dir": str(tmp_path / "state"),
              "decode_budget": {"max_depth": 3}, "_ansible_check_mode": True}
    with patch_module_args(params), pytest.raises(SystemExit):
        module.main()
    assert json.loads(capsys.readouterr().out)["counts"]["corrupt"] == 1
    params["decode_budget"] = {"max_depth": 0}
    with patch_module_args(params), pytest.raises(SystemExit):
        module.main()
    result = json.loads(capsys.readouterr().out)
    assert result["failed"] and "decode_budget" in result["msg"] and "max_depth" in result["msg"]


def test_the_app_takes_the_budget_from_its_config(session_dir, tmp_path):
    app = Flask(__name__)
    app.config.update(SECRET_KEY="k", SESSION_FILE_DIR=str(session_dir),
                      SESSIONSHIFT_STATE_DIR=str(tmp_path / "state"), SESSIONSHIFT_MAX_DEPTH=3)
    PhasedSession(app)

    @app.get("/")
    def index():
        from flask import session
        return {"x": session.get("x"), "a": session.get("a")}

    client = app.test_client()
    client.set_cookie("session", "deep")
    assert client.get("/").json == {"x": None, "a": None}  # over budget: no session
    client.set_cookie("session", "flat")
    assert client.get("/").json == {"x": None, "a": 1}
    assert safepickle.current_budget().max_depth == 3
