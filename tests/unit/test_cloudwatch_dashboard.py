"""Dashboard bodies compare as canonical JSON."""

from __future__ import annotations

import pytest
from ansible.module_utils.cloudwatch_dashboard import (
    DashboardError,
    body_differs,
    canonical_json,
    dashboard_definition,
    pretty_json,
)

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
