# Copyright: sessionshift contributors
# Apache License 2.0

"""CloudWatch dashboard bodies: one canonical JSON text, so that a comparison is a string equality."""

from __future__ import annotations

import json


class DashboardError(ValueError):
    """The dashboard definition cannot be sent to CloudWatch."""


def dashboard_definition(body: dict | None, widgets: list | None) -> dict:
    """The dashboard body from either a whole ``body`` or just its ``widgets``."""
    if body is None and widgets is None:
        raise DashboardError("give body (the whole dashboard) or widgets (its list of widgets)")
    definition = dict(body) if body is not None else {}
    if widgets is not None:
        definition["widgets"] = list(widgets)
    if not isinstance(definition.get("widgets"), list) or not definition["widgets"]:
        raise DashboardError("a dashboard needs a non-empty 'widgets' list")
    for index, widget in enumerate(definition["widgets"]):
        if not isinstance(widget, dict) or "type" not in widget or "properties" not in widget:
            raise DashboardError(f"widget {index} needs 'type' and 'properties' (CloudWatch dashboard body "
                                 "structure)")
    return definition


def canonical_json(definition) -> str:
    """Sorted keys, no spaces: two equal definitions give the same text."""
    return json.dumps(definition, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def body_differs(desired: dict, current_body: str | None) -> bool:
    """True when the dashboard does not exist or its body is not the desired one."""
    if current_body is None:
        return True
    try:
        current = json.loads(current_body)
    except ValueError:
        return True  # not JSON we can read: rewrite it
    return canonical_json(current) != canonical_json(desired)


def pretty_json(definition) -> str:
    """An indented, sorted view for diffs (a JSON text that does not parse is shown as is)."""
    if isinstance(definition, str):
        try:
            definition = json.loads(definition)
        except ValueError:
            return definition + "\n"
    return json.dumps(definition, sort_keys=True, indent=2, ensure_ascii=False) + "\n"
