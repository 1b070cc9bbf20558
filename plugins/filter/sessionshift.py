# Copyright: sessionshift contributors
# Apache License 2.0

"""Jinja filters the playbooks use; the logic lives, tested, in the sessionshift package."""

from __future__ import annotations

from ansible.errors import AnsibleFilterError

IMPORT_ERROR = None
try:
    from sessionshift.phases import plan_rollback
except ImportError as exc:  # reported when the filter is used, with what to do
    plan_rollback = None
    IMPORT_ERROR = exc


def rollback_plan(host_phases, requested="previous", emergency=False):
    """{fleet, target, steps, emergency} for a rollback of hosts in *host_phases*."""
    if plan_rollback is None:
        raise AnsibleFilterError("rollback_plan needs the sessionshift package on the controller "
                                 f"(make setup installs it): {IMPORT_ERROR}")
    try:
        return plan_rollback(list(host_phases), requested, bool(emergency)).as_dict()
    except ValueError as exc:
        raise AnsibleFilterError(f"rollback_plan: {exc}") from exc


class FilterModule:
    def filters(self):
        return {"rollback_plan": rollback_plan}
