# Copyright: sessionshift contributors
# Apache License 2.0

"""Jinja filters the playbooks use; the logic lives, tested, in the sessionshift package."""

from __future__ import annotations

from ansible.errors import AnsibleFilterError

IMPORT_ERROR = None
try:
    from sessionshift.phases import SPECS, Phase, Transition, plan_rollback
except ImportError as exc:  # reported when a filter is used, with what to do
    plan_rollback = None
    IMPORT_ERROR = exc


def _require(name):
    if plan_rollback is None:
        raise AnsibleFilterError(f"{name} needs the sessionshift package on the controller "
                                 f"(make setup installs it): {IMPORT_ERROR}")


def _parse(name, value):
    try:
        return Phase.parse(value)
    except ValueError as exc:
        raise AnsibleFilterError(f"{name}: {exc}") from exc


def rollback_plan(host_phases, requested="previous", emergency=False):
    """{fleet, target, steps, emergency} for a rollback of hosts in *host_phases*."""
    _require("rollback_plan")
    try:
        return plan_rollback(list(host_phases), requested, bool(emergency)).as_dict()
    except ValueError as exc:
        raise AnsibleFilterError(f"rollback_plan: {exc}") from exc


def phase_info(value):
    """{label, number, previous, next, labels, writes_file, writes_redis} of a phase given by label or
    number (the phase model)."""
    _require("phase_info")
    phase = _parse("phase_info", value)
    ordered = list(Phase)
    index = ordered.index(phase)
    return {"label": phase.label, "number": int(phase),
            "previous": ordered[index - 1].label if index > 0 else None,
            "next": ordered[index + 1].label if index + 1 < len(ordered) else None,
            "labels": [each.label for each in ordered],
            "writes_file": SPECS[phase].writes_file, "writes_redis": SPECS[phase].writes_redis}


def needs_export(current, target):
    """Whether moving from *current* to *target* needs the Redis to file export first."""
    _require("needs_export")
    return Transition(_parse("needs_export", current), _parse("needs_export", target)).needs_export


class FilterModule:
    def filters(self):
        return {"rollback_plan": rollback_plan, "phase_info": phase_info, "needs_export": needs_export}
