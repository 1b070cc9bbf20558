"""Every phase list and label in YAML and in the modules' documentation is the phase model's.

The lists (``choices``, Jinja list literals) are the model's labels in its order; every value
of a key that names a phase (``phase``, ``rollout_target_phase``, ``rollback_to``,
``rollout_step_from``, ``gate``...) and every literal a Jinja expression compares a phase with
is one of its labels, so that a misspelt or removed phase fails here instead of in a rollout.

The Ansible side still carries its own copies in what must be static (role argument specs, module
choices); this test keeps them equal. The rollout role's tasks read the model through the filters.
"""

from __future__ import annotations

import glob
import os
import re

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


def test_the_rollout_role_has_no_phase_table_of_its_own():
    """Next, previous, numbers and what a phase writes come from the filters (phase_info, needs_export)."""
    role = os.path.join(ROOT, "roles", "rollout")
    assert not os.path.exists(os.path.join(role, "vars", "main.yml"))
    playbooks = glob.glob(os.path.join(ROOT, "playbooks", "**", "*.yml"), recursive=True)
    for path in sorted(glob.glob(os.path.join(role, "**", "*.yml"), recursive=True) + playbooks):
        if path.endswith("argument_specs.yml"):  # the choices lists: checked against the model above
            continue
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
        assert "_rollout_phase_numbers" not in text, path
        # a phase number compared with a literal number (min < 4): ask phase_info for the phase's
        assert not re.search(r"number\W[^\n]*?(?:<|>|==|!=)=?\s*\d", text), path
        # a list naming two phases or more, in YAML or in Jinja
        for listed in re.findall(r"\[([^\]\n]*)\]", text):
            assert len(set(re.findall(r"\w+", listed)) & set(LABELS)) < 2, f"{path}: [{listed}]"


# Keys whose value names a phase; what else such a key may hold.
PHASE_KEY = re.compile(r"(^phase$|_phase$|rollback_to$|_revert_to$|_step_to$|_step_from$|^gate$)")
PHASE_KEY_ALSO = {"gate": {"maintenance_window"}, "rollback_to": {"previous"}}
# In Jinja: a phase expression compared with a literal, or tested against a list of them.
JINJA_COMPARED = re.compile(r"phase[\w.]*\s*(?:==|!=)\s*['\"]([^'\"]+)['\"]"
                            r"|['\"]([^'\"]+)['\"]\s*(?:==|!=)\s*\w*phase")
JINJA_IN_LIST = re.compile(r"phase[\w.]*\s+(?:not\s+)?in\s+\[([^\]]*)\]")


def _yaml_documents():
    for pattern in ("playbooks/**/*.yml", "roles/**/*.yml", "molecule/**/*.yml", "inventories/**/*.yml"):
        for path in sorted(glob.glob(os.path.join(ROOT, pattern), recursive=True)):
            with open(path, encoding="utf-8") as handle:
                for document in yaml.safe_load_all(handle):
                    yield os.path.relpath(path, ROOT), document
    for path in sorted(glob.glob(os.path.join(ROOT, "plugins", "modules", "*.py"))):
        name = os.path.basename(path)[:-3]
        yield f"plugins/modules/{name} EXAMPLES", yaml.safe_load(load_module(name).EXAMPLES)


def _phase_labels_used(node, where, key=None):
    """(where, what, label) for every phase named in *node*."""
    if isinstance(node, dict):
        for name, value in node.items():
            yield from _phase_labels_used(value, f"{where}.{name}", str(name))
    elif isinstance(node, list):
        for index, item in enumerate(node):
            yield from _phase_labels_used(item, f"{where}[{index}]", key)
    elif isinstance(node, str):
        if key and PHASE_KEY.search(key) and "{{" not in node and not node.isdigit():
            yield where, f"{key}: {node}", node, PHASE_KEY_ALSO.get(key, set())
        for match in JINJA_COMPARED.finditer(node):
            yield where, match.group(0), match.group(1) or match.group(2), set()
        for match in JINJA_IN_LIST.finditer(node):
            items = re.findall(r"['\"]([^'\"]+)['\"]", match.group(1))
            for item in items:
                yield where, match.group(0), item, set()
            labels = [item for item in items if item in LABELS]
            assert labels == sorted(labels, key=LABELS.index), f"{where}: {match.group(0)} is out of order"


LABELS_USED = [(source, *used) for source, document in _yaml_documents()
               for used in _phase_labels_used(document, source)]


def test_the_phase_labels_are_found():
    places = {source for source, *_ in LABELS_USED}
    # (backfill.yml names no phase any more: it asks phase_info what the phase writes)
    for place in ("roles/rollout/tasks/preflight.yml", "roles/rollout/tasks/emergency.yml",
                  "playbooks/phase3.yml", "plugins/modules/session_phase EXAMPLES"):
        assert place in places, place


def _not_labels(used):
    return [f"{where}: {what}: {label!r}" for _source, where, what, label, also in used
            if label not in LABELS and label not in also]


def test_every_phase_label_in_yaml_is_the_model_s():
    assert len(LABELS_USED) > 30
    assert not _not_labels(LABELS_USED), f"not phases ({LABELS}): {_not_labels(LABELS_USED)}"


def test_a_misspelt_phase_is_caught():
    document = yaml.safe_load("""
- vars: {rollout_target_phase: redis_reads, rollback_to: previous}
- when: rollout_host_phase.phase == 'dual-write'
- when: "'redis_onl' != rollout_target_phase"
- when: host.phase in ['file', 'dual_writes']
- gate: maintenance_window
""")
    used = [("t", *each) for each in _phase_labels_used(document, "t")]
    assert [bad.split(": ")[-1] for bad in _not_labels(used)] == \
        ["'redis_reads'", "'dual-write'", "'redis_onl'", "'dual_writes'"]
