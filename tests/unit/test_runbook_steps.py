"""The runbook's commands are extracted as the runbook test runs them, and a broken one fails."""

from __future__ import annotations

import os

import pytest

from tests.support.runbook import run_step, steps

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RUNBOOK = os.path.join(ROOT, "docs", "runbook.md")


def test_every_sh_block_of_the_runbook_is_a_step():
    with open(RUNBOOK) as handle:
        fences = sum(1 for line in handle if line.rstrip() == "```sh")
    found = steps(RUNBOOK)
    assert len(found) == fences and all(step.commands for step in found)
    assert found[0].instead == ['export ANSIBLE_INVENTORY="$RUNBOOK_INVENTORY"']
    written = [command for step in found for command in step.commands]
    assert "ansible-playbook playbooks/phase2.yml                     # day 15" in written
    assert "ansible-playbook playbooks/rollback.yml -e emergency=true            # any -> 1, now" in written


def test_markers_continuations_and_comments(tmp_path):
    doc = tmp_path / "doc.md"
    doc.write_text("# T\n\n```sh\n# a comment\necho one \\\n  two\n\necho three\n```\n\n"
                   "<!-- runbook-test: instead: echo local -->\n```sh\nssh prod reboot\n```\n")
    first, second = steps(str(doc))
    assert first.commands == ["echo one \\\n  two", "echo three"] and first.runs == first.commands
    assert second.commands == ["ssh prod reboot"] and second.runs == ["echo local"]


def test_a_marker_that_is_not_before_a_block_is_refused(tmp_path):
    doc = tmp_path / "doc.md"
    doc.write_text("<!-- runbook-test: instead: echo x -->\ntext\n```sh\necho y\n```\n")
    with pytest.raises(ValueError, match="right before an sh block"):
        steps(str(doc))


def test_a_failing_command_fails_the_step_and_exports_carry_over(tmp_path):
    doc = tmp_path / "doc.md"
    doc.write_text("```sh\nexport RUNBOOK_X=1\n```\n```sh\ntest \"$RUNBOOK_X\" = 1\nfalse\necho never\n```\n")
    first, second = steps(str(doc))
    done = run_step(first, dict(os.environ), str(tmp_path))
    assert done.returncode == 0 and done.env["RUNBOOK_X"] == "1"
    broken = run_step(second, done.env, str(tmp_path))
    assert broken.returncode != 0 and "never" not in broken.output
