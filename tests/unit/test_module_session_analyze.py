"""session_analyze: records the profile, check mode records nothing, refusals fail the task."""

from __future__ import annotations

import json

import pytest
from ansible.module_utils.testing import patch_module_args

from sessionshift import profile
from tests.conftest import load_module
from tests.unit.test_profile import RICH, cachelib_md5_corpus, old_cachelib_corpus

module = load_module("session_analyze")


def run(capsys, check_mode=False, diff=False, **params):
    params = dict(params, _ansible_check_mode=check_mode, _ansible_diff=diff)
    with patch_module_args(params), pytest.raises(SystemExit):
        module.main()
    return json.loads(capsys.readouterr().out)


def test_records_the_profile_and_check_mode_does_not(tmp_path, capsys):
    session_dir, state_dir = tmp_path / "sessions", tmp_path / "state"
    session_dir.mkdir()
    old_cachelib_corpus(str(session_dir), 3)
    params = dict(session_dir=str(session_dir), state_dir=str(state_dir))

    checked = run(capsys, check_mode=True, diff=True, **params)
    assert checked["changed"] and checked["recorded"] is None and profile.load(str(state_dir)) is None
    assert "header_style: pickle" in checked["diff"]["after"] and checked["diff"]["before"] == ""
    assert checked["profile"]["generation"].startswith("werkzeug's cache or cachelib <= 0.6")

    result = run(capsys, **params)
    assert result["changed"] and result["recorded"] == profile.profile_path(str(state_dir))
    assert (result["profile"]["hash_name"], result["profile"]["header_style"],
            result["profile"]["pickle_protocol"]) == ("md5", "pickle", 4)
    assert result["counts"]["sessions"] == 3
    assert run(capsys, **params)["changed"] is False  # the same files: nothing new to record


def test_a_contradicting_option_and_a_lossy_serializer_fail(tmp_path, capsys):
    session_dir, state_dir = tmp_path / "sessions", tmp_path / "state"
    session_dir.mkdir()
    cachelib_md5_corpus(str(session_dir), 2, data=RICH)
    params = dict(session_dir=str(session_dir), state_dir=str(state_dir))
    wrong = run(capsys, hash_method="sha256", **params)
    assert wrong["failed"] and "hash_method=sha256 contradicts" in wrong["msg"] and "md5" in wrong["msg"]
    lossy = run(capsys, serializer="msgpack", **params)
    assert lossy["failed"] and "would change 2 of 2 sessions" in lossy["msg"]
    assert lossy["profile"]["msgpack"]["changes"]["tuple -> list"] == 2
    assert profile.load(str(state_dir)) is None


def test_a_missing_directory_fails_clearly_except_in_a_dry_run(tmp_path, capsys):
    params = dict(session_dir=str(tmp_path / "nope"), state_dir=str(tmp_path / "state"))
    result = run(capsys, **params)
    assert result["failed"] and "does not exist" in result["msg"]
    dry = run(capsys, check_mode=True, **params)  # a fresh host: the app's role creates it first
    assert not dry.get("failed") and dry["profile"] is None and "does not exist yet" in dry["msg"]


def test_hostile_files_are_named_with_their_reason(tmp_path, capsys):
    """What migrate copies unread, the analyze that phases 1 and 2 run names (and warns about)."""
    from sessionshift import formats
    from tests.support import hostile

    session_dir = tmp_path / "sessions"
    session_dir.mkdir()
    old_cachelib_corpus(str(session_dir), 2)
    bomb = formats.session_file_name("bomb", hash_name="md5")
    (session_dir / bomb).write_bytes(hostile.shared_expansion())
    result = run(capsys, session_dir=str(session_dir), state_dir=str(tmp_path / "state"))
    assert result["counts"]["corrupt"] == 1
    assert [error["path"] for error in result["errors"]] == [str(session_dir / bomb)]
    assert "max_encoded_bytes" in result["errors"][0]["reason"]
    assert bomb in json.dumps(result["warnings"])  # ansible-core 2.19 sends structured warnings
