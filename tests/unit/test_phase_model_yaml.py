"""Every phase list in YAML and in the modules' documentation equals the phase model (sessionshift.phases).

The Ansible side still carries its own copies (role argument specs, module choices, the rollout
role's tables); until it reads the model through filters, this test is what keeps them equal.
"""

from __future__ import annotations

import glob
import os

import pytest
import yaml

from sessionshift.phases import Phase
from tests.conftest import ROOT, load_module

LABELS = [phase.label for phase in Phase]
NUMBERS = [str(int(phase)) for phase in Phase]
# Lists of phases one can move into (a flip, a gate) leave out the first phase.
FORWARD = LABELS[1:]
# What a phase list may hold besides phases: the gate module's maintenance-window gate.
NOT_PHASES = {"maintenance_window"}


def _choices(node, where, found):
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "choices" and isinstance(value, list):
                found.append((where, [str(item) for item in value]))
            else:
                _choices(value, f"{where}.{key}", found)
    elif isinstance(node, list):
        for index, item in enumerate(node):
            _choices(item, f"{where}[{index}]", found)


def _phase_lists():
    found: list[tuple[str, list[str]]] = []
    for path in sorted(glob.glob(os.path.join(ROOT, "roles", "*", "meta", "argument_specs.yml"))):
        with open(path, encoding="utf-8") as handle:
            _choices(yaml.safe_load(handle), os.path.relpath(path, ROOT), found)
    for path in sorted(glob.glob(os.path.join(ROOT, "plugins", "modules", "*.py"))):
        name = os.path.basename(path)[:-3]
        _choices(yaml.safe_load(load_module(name).DOCUMENTATION), f"plugins/modules/{name}", found)
    # a list naming two phases or more is a phase list (one `redis` alone is an engine name)
    return [(where, items) for where, items in found if len(set(items) & set(LABELS)) >= 2]


PHASE_LISTS = _phase_lists()


def test_the_phase_lists_are_found():
    for place in ("roles/rollout/meta/argument_specs.yml", "plugins/modules/session_phase.",
                  "plugins/modules/session_gate."):
        assert any(where.startswith(place) for where, _ in PHASE_LISTS), place


@pytest.mark.parametrize(("where", "items"), PHASE_LISTS, ids=[where for where, _ in PHASE_LISTS])
def test_a_phase_list_is_the_model(where, items):
    labels = [item for item in items if item in LABELS]
    numbers = [item for item in items if item.isdigit()]
    others = set(items) - set(labels) - set(numbers)
    assert labels in (LABELS, FORWARD), f"{where}: {labels}, the model says {LABELS}"
    assert numbers in ([], NUMBERS[len(NUMBERS) - len(labels):]), f"{where}: {numbers}"
    assert others <= NOT_PHASES, f"{where}: {sorted(others)} is not a phase"


def test_the_rollout_role_tables_are_the_model():
    with open(os.path.join(ROOT, "roles", "rollout", "vars", "main.yml"), encoding="utf-8") as handle:
        tables = yaml.safe_load(handle)
    assert tables["_rollout_phase_labels"] == LABELS
    assert tables["_rollout_phase_numbers"] == {phase.label: int(phase) for phase in Phase}
    assert tables["_rollout_previous_phase"] == {LABELS[i]: LABELS[i - 1] for i in range(1, len(LABELS))}
