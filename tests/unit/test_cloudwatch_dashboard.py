"""Dashboard bodies compare as canonical JSON; the module retries throttling and honours check mode."""

from __future__ import annotations

import json

import boto3
import pytest
from ansible.module_utils.testing import patch_module_args
from ansible_collections.amazon.aws.plugins.module_utils.modules import AnsibleAWSModule
from ansible_collections.amazon.aws.plugins.module_utils.retries import RetryingBotoClientWrapper
from ansible_collections.sessionshift.migration.plugins.module_utils.cloudwatch_dashboard import (
    DashboardError,
    body_differs,
    canonical_json,
    dashboard_definition,
    pretty_json,
)
from botocore.stub import Stubber

from tests.conftest import load_module

WIDGET = {"type": "text", "x": 0, "y": 0, "width": 6, "height": 2, "properties": {"markdown": "# Sessions"}}


def test_key_order_and_whitespace_do_not_count():
    desired = dashboard_definition({"start": "-PT3H"}, [WIDGET])
    stored = (
        '{\n  "widgets": [{"properties": {"markdown": "# Sessions"}, "height": 2, "width": 6, "y": 0, "x": 0,'
        ' "type": "text"}],\n  "start": "-PT3H"}'
    )
    assert body_differs(desired, stored) is False
    assert body_differs(desired, stored.replace("-PT3H", "-PT6H")) is True
    assert body_differs(desired, None) is True
    assert body_differs(desired, "not json") is True


def test_canonical_json_is_stable_and_unicode_safe():
    assert canonical_json({"b": 1, "a": ["é"]}) == '{"a":["é"],"b":1}'
    assert pretty_json('{"b":1,"a":2}') == '{\n  "a": 2,\n  "b": 1\n}\n'


@pytest.mark.parametrize(
    ("body", "widgets", "message"),
    [
        (None, None, "give body"),
        ({"widgets": []}, None, "non-empty"),
        (None, [{"type": "metric"}], "widget 0 needs 'type' and 'properties'"),
    ],
)
def test_invalid_definitions_are_refused(body, widgets, message):
    with pytest.raises(DashboardError) as error:
        dashboard_definition(body, widgets)
    assert message in str(error.value)


# --- the module, against botocore Stubber -------------------------------------------------------

dashboard_module = load_module("cloudwatch_dashboard")
ARN = "arn:aws:cloudwatch::123456789012:dashboard/sessions"


@pytest.fixture
def cloudwatch(monkeypatch):
    client = boto3.client("cloudwatch", region_name="ap-northeast-1", aws_access_key_id="x",
                          aws_secret_access_key="x")
    monkeypatch.setattr(AnsibleAWSModule, "client",
                        lambda self, service, retry_decorator=None, **extra: RetryingBotoClientWrapper(
                            client, retry_decorator))
    monkeypatch.setattr("time.sleep", lambda seconds: None)
    with Stubber(client) as stub:
        yield stub
        stub.assert_no_pending_responses()


def run_dashboard(params, capsys, check_mode=False):
    with patch_module_args(dict(params, region="ap-northeast-1", _ansible_check_mode=check_mode,
                                _ansible_diff=True)), pytest.raises(SystemExit):
        dashboard_module.main()
    return json.loads(capsys.readouterr().out)


def test_throttling_is_retried_and_check_mode_writes_nothing(cloudwatch, capsys):
    cloudwatch.add_client_error("get_dashboard", "Throttling", "Rate exceeded", http_status_code=400)
    cloudwatch.add_response("get_dashboard", {"DashboardArn": ARN, "DashboardName": "sessions",
                                              "DashboardBody": json.dumps({"widgets": [WIDGET]})},
                            {"DashboardName": "sessions"})
    result = run_dashboard({"name": "sessions", "widgets": [WIDGET, WIDGET]}, capsys, check_mode=True)
    assert result["changed"] is True  # no put_dashboard stubbed: a write would have raised
    assert result["diff"]["before"].count('"type": "text"') == 1
    assert result["diff"]["after"].count('"type": "text"') == 2


def test_a_missing_dashboard_to_delete_is_no_change(cloudwatch, capsys):
    cloudwatch.add_client_error("get_dashboard", "ResourceNotFound", "Dashboard does not exist",
                                http_status_code=404)
    result = run_dashboard({"name": "sessions", "state": "absent"}, capsys)
    assert result["changed"] is False
