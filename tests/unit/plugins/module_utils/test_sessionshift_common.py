"""SessionshiftModule (plugins/module_utils): merged option groups, the package check, failures, diffs."""

from __future__ import annotations

import json

import pytest
import redis
from ansible.module_utils.testing import patch_module_args
from ansible_collections.sessionshift.migration.plugins.module_utils import sessionshift_common as common

from sessionshift.backup import BackupError
from sessionshift.redisconn import RedisSettings


def run(capsys, body, check_mode=False, diff=False, **params):
    """Run *body(module)* as a module's main() would; the module's JSON result."""
    with patch_module_args(dict(params, _ansible_check_mode=check_mode, _ansible_diff=diff)), \
            pytest.raises(SystemExit):
        body()
    return json.loads(capsys.readouterr().out)


def test_the_module_options_win_over_the_option_groups_and_check_mode_is_on():
    spec = {}

    def body():
        module = common.SessionshiftModule(
            "probe", dict(key_prefix=dict(type="str", default="app:")), session=True, decode_budget=True)
        spec.update(module.argument_spec, check=module.supports_check_mode, params=module.params)
        module.exit_json(changed=False)

    with patch_module_args({"session_dir": "/srv/sessions"}), pytest.raises(SystemExit):
        body()
    assert spec["check"] is True
    assert {"session_dir", "state_dir", "hash_method", "decode_budget"} <= set(spec)
    assert spec["params"]["key_prefix"] == "app:" and spec["params"]["state_dir"] == common.STATE_DIR


def test_a_missing_package_fails_with_what_to_install(capsys, monkeypatch):
    monkeypatch.setattr(common, "SESSIONSHIFT_IMPORT_ERROR", "No module named 'sessionshift'")
    result = run(capsys, lambda: common.SessionshiftModule("probe"))
    assert result["failed"] and result["changed"] is False
    assert "Failed to import the required Python library (sessionshift)" in result["msg"]
    assert "session_app role" in result["msg"]


def test_a_bad_decode_budget_fails_naming_the_option(capsys):
    result = run(capsys, lambda: common.SessionshiftModule("probe", decode_budget=True),
                 decode_budget={"max_depth": -1})
    assert result["failed"] and result["msg"].startswith("decode_budget: ")


def test_a_package_refusal_says_what_where_and_what_to_do(capsys):
    def body():
        module = common.SessionshiftModule("probe")
        with module.failing():  # no expected types: SessionshiftError is always expected
            raise BackupError("/backups/b.gz", "checksum mismatch")

    result = run(capsys, body)
    assert result["failed"] and result["changed"] is False and "exception" not in result
    assert result["msg"].startswith("probe: backup /backups/b.gz: checksum mismatch; nothing was restored")
    assert result["error"] == "BackupError"
    assert result["path"] == "/backups/b.gz" and result["reason"] == "checksum mismatch"


def test_expected_errors_fail_behind_the_prefix_with_the_result(capsys):
    def body():
        module = common.SessionshiftModule("probe")
        with module.failing(OSError, prefix="probe /srv/sessions", written=0):
            raise PermissionError(13, "Permission denied")

    result = run(capsys, body)
    assert result["failed"] and result["written"] == 0 and result["error"] == "PermissionError"
    assert result["msg"] == "probe /srv/sessions: [Errno 13] Permission denied"


def test_an_unexpected_error_is_a_bug_and_keeps_its_traceback():
    def body():
        module = common.SessionshiftModule("probe")
        with module.failing(OSError):
            raise KeyError("generation")

    with patch_module_args({}), pytest.raises(KeyError):
        body()


def test_a_redis_error_mid_run_names_the_endpoint_not_the_password(capsys):
    settings = RedisSettings(url="rediss://sessions:s3cret@10.0.0.9:6379/0")

    def body():
        module = common.SessionshiftModule("probe")
        with module.failing(settings=settings):
            raise redis.exceptions.ConnectionError("Error 111 connecting to 10.0.0.9:6379.")

    result = run(capsys, body)
    assert result["failed"] and result["error"] == "RedisUnavailable"
    assert result["endpoint"] == settings.endpoint
    assert "10.0.0.9:6379" in result["msg"] and "s3cret" not in json.dumps(result)


def test_without_settings_a_redis_error_is_not_expected():
    def body():
        module = common.SessionshiftModule("probe")
        with module.failing(ValueError):
            raise redis.exceptions.ResponseError("NOPERM")

    with patch_module_args({}), pytest.raises(redis.exceptions.ResponseError):
        body()


@pytest.mark.parametrize(("diff", "changed", "shown"), [(True, True, True), (True, False, False),
                                                        (False, True, False)])
def test_the_diff_is_returned_only_when_asked_for_and_something_changed(capsys, diff, changed, shown):
    def body():
        module = common.SessionshiftModule("probe")
        module.finish(changed, diff={"before": "a\n", "after": "b\n"}, counts={"n": 1})

    result = run(capsys, body, diff=diff)
    assert result["changed"] is changed and result["counts"] == {"n": 1}
    assert ("diff" in result) is shown
