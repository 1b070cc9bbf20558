"""The collection's Jinja filters give the playbooks the phase model (sessionshift.phases), not a copy."""

from __future__ import annotations

import itertools

import pytest
from ansible.errors import AnsibleFilterError
from ansible_collections.sessionshift.migration.plugins.filter.sessionshift import (
    FilterModule,
    needs_export,
    phase_info,
)

from sessionshift.phases import SPECS, Phase, Transition


def test_the_filters_are_registered():
    assert set(FilterModule().filters()) == {"rollback_plan", "phase_info", "needs_export"}


@pytest.mark.parametrize("phase", list(Phase))
def test_phase_info_is_the_model_by_label_and_by_number(phase):
    by_label, by_number = phase_info(phase.label), phase_info(str(int(phase)))
    assert by_label == by_number
    assert by_label["label"] == phase.label and by_label["number"] == int(phase)
    assert by_label["labels"] == [each.label for each in Phase]
    assert by_label["previous"] == (Phase(phase - 1).label if phase > min(Phase) else None)
    assert by_label["next"] == (Phase(phase + 1).label if phase < max(Phase) else None)
    assert by_label["writes_file"] == SPECS[phase].writes_file
    assert by_label["writes_redis"] == SPECS[phase].writes_redis


def test_needs_export_is_the_transition_rule_for_every_move():
    for current, target in itertools.product(Phase, Phase):
        assert needs_export(current.label, int(target)) == Transition(current, target).needs_export
    assert needs_export("redis_only", "redis_read") and not needs_export("redis_read", "file")


def test_an_unknown_phase_is_a_filter_error_naming_the_phases():
    with pytest.raises(AnsibleFilterError, match=r"phase_info: unknown phase 'redis_write'.*dual_write"):
        phase_info("redis_write")
    with pytest.raises(AnsibleFilterError, match="needs_export: unknown phase"):
        needs_export("redis", 9)
