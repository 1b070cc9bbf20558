"""No code outside the phase model compares against a specific phase.

What a phase does (where it reads and writes, whether it journals, waits for replicas, retires
files, leaves tombstones, falls back in an emergency) is read from ``phases.SPECS``; a branch like
``if phase >= Phase.REDIS_READ`` re-decides it in one place and drifts from the table. This lint
walks the package and the collection's plugins and refuses any comparison whose operand is a
``Phase`` member (``Phase.X``), a phase made from a number (``Phase(3)``), or a phase number
(``int(phase) >= 4``, ``record.phase.value == 2``).
"""

from __future__ import annotations

import ast
import glob
import os

from sessionshift.phases import Phase
from tests.conftest import ROOT

MODEL = os.path.join("src", "sessionshift", "phases.py")
MEMBERS = {phase.name for phase in Phase}


def _names_a_phase(node: ast.AST) -> bool:
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        return any(_names_a_phase(item) for item in node.elts)
    if isinstance(node, ast.Attribute) and node.attr in MEMBERS:
        base = node.value
        return (isinstance(base, ast.Name) and base.id == "Phase") or \
            (isinstance(base, ast.Attribute) and base.attr == "Phase")
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "Phase":
        return bool(node.args) and isinstance(node.args[0], ast.Constant)
    return False


def _is_phase_valued(node: ast.AST) -> bool:
    """An expression that reads as a phase or its number: ``phase``, ``record.phase``, ``int(phase)``..."""
    if isinstance(node, ast.Name):
        return "phase" in node.id.lower()
    if isinstance(node, ast.Attribute):
        return "phase" in node.attr.lower() or (node.attr in ("value", "number")
                                                and _is_phase_valued(node.value))
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "int":
        return bool(node.args) and _is_phase_valued(node.args[0])
    return False


def _is_phase_number(node: ast.AST) -> bool:
    return isinstance(node, ast.Constant) and type(node.value) is int and node.value in set(map(int, Phase))


def _compares_a_phase_number(node: ast.Compare) -> bool:
    operands = [node.left, *node.comparators]
    return any(map(_is_phase_valued, operands)) and any(map(_is_phase_number, operands))


def phase_comparisons(source: str, where: str = "<source>") -> list[str]:
    """``file:line`` of every comparison against a specific phase in *source*."""
    found = []
    for node in ast.walk(ast.parse(source, where)):
        if isinstance(node, ast.Compare) and (any(map(_names_a_phase, [node.left, *node.comparators]))
                                              or _compares_a_phase_number(node)):
            found.append(f"{where}:{node.lineno}: {ast.unparse(node)}")
        elif isinstance(node, ast.match_case) and _names_a_phase(getattr(node.pattern, "value", None)):
            found.append(f"{where}:{node.pattern.lineno}: case {ast.unparse(node.pattern)}")
    return found


def _checked_files() -> list[str]:
    files = glob.glob(os.path.join(ROOT, "src", "sessionshift", "*.py"))
    files += glob.glob(os.path.join(ROOT, "plugins", "**", "*.py"), recursive=True)
    return sorted(os.path.relpath(path, ROOT) for path in files
                  if os.path.relpath(path, ROOT) != MODEL)


def test_the_lint_finds_what_it_refuses():
    source = ("if phase >= Phase.REDIS_READ: pass\n"
              "ok = phase in (Phase.FILE, Phase.DUAL_WRITE)\n"
              "same = phases.Phase.REDIS == phase\n"
              "made = phase is Phase(4)\n"
              "match phase:\n    case Phase.REDIS: pass\n"
              "fine = SPECS[phase].writes_file and phase == target\n"
              "default = Phase.FILE\n"
              "if int(phase) >= 4: pass\n"
              "number = record.phase.value == 2\n"
              "also_fine = len(phases) > 1 and attempt >= 4\n")
    assert [hit.split(":")[1] for hit in phase_comparisons(source)] == ["1", "2", "3", "4", "6", "9", "10"]


def test_no_module_compares_against_a_specific_phase():
    files = _checked_files()
    assert "src/sessionshift/flask.py" in files and "src/sessionshift/phasecore.py" in files
    hits = []
    for path in files:
        with open(os.path.join(ROOT, path), encoding="utf-8") as handle:
            hits += phase_comparisons(handle.read(), path)
    assert not hits, ("decide from the phase spec (sessionshift.phases.SPECS), extending it if "
                      "need be, not from a specific phase:\n" + "\n".join(hits))
