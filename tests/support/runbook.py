"""The commands of docs/runbook.md, as the runbook test runs them.

Every fenced ``sh`` block is a step, in document order. A block that needs real hosts or real
AWS is preceded by one or more ``<!-- runbook-test: instead: COMMAND -->`` lines: the test runs
those commands in its place (the block itself is still parsed, so it must stay well formed).

Each step runs in ``bash -e -o pipefail`` with the environment the steps before it left
(an ``export`` carries over, as it does for an operator in one terminal).
"""

from __future__ import annotations

import dataclasses
import os
import re
import subprocess
import tempfile

INSTEAD = re.compile(r"^<!--\s*runbook-test:\s*instead:\s*(?P<command>.+?)\s*-->\s*$")
FENCE = re.compile(r"^```(?P<lang>\S*)\s*$")


@dataclasses.dataclass
class Step:
    heading: str
    line: int
    commands: list[str]  # as written
    instead: list[str]  # what the test runs in their place, if anything

    @property
    def runs(self) -> list[str]:
        return self.instead or self.commands

    @property
    def name(self) -> str:
        return f"line{self.line}-" + re.sub(r"[^a-z0-9]+", "-", self.heading.lower()).strip("-")[:40]


def steps(path: str) -> list[Step]:
    """Every ``sh`` block of the document at *path*."""
    with open(path, encoding="utf-8") as handle:
        lines = handle.read().splitlines()
    found: list[Step] = []
    heading, pending, index = "", [], 0
    while index < len(lines):
        line = lines[index]
        if line.startswith("#") and not line.startswith("#!"):
            heading = line.lstrip("#").strip()
        marker, fence = INSTEAD.match(line), FENCE.match(line)
        if marker:
            pending.append(marker["command"])
        elif fence and fence["lang"] == "sh":
            start, body = index + 1, []
            index += 1
            while index < len(lines) and not lines[index].startswith("```"):
                body.append(lines[index])
                index += 1
            if index == len(lines):
                raise ValueError(f"{path}:{start}: the sh block is not closed")
            found.append(Step(heading, start, _commands(body), pending))
            pending = []
        elif line.strip() and pending:
            raise ValueError(f"{path}:{index + 1}: a runbook-test marker must come right before an sh block")
        index += 1
    return found


def _commands(body: list[str]) -> list[str]:
    """The block's commands: continuation lines joined, blank and comment-only lines dropped."""
    commands, current = [], ""
    for line in body:
        if current:
            current += "\n" + line
        elif line.strip() and not line.lstrip().startswith("#"):
            current = line
        if current and not current.endswith("\\"):
            commands.append(current)
            current = ""
    if current:
        commands.append(current)
    return commands


@dataclasses.dataclass
class StepRun:
    returncode: int
    output: str
    env: dict[str, str]


def run_step(step: Step, env: dict[str, str], cwd: str, timeout: float = 900) -> StepRun:
    """Run *step*'s commands in one bash; the environment it ends with is returned for the next step."""
    with tempfile.NamedTemporaryFile(prefix="runbook-env-", delete=False) as handle:
        env_file = handle.name
    script = "\n".join(["set -e -o pipefail", *step.runs, f"env -0 > {env_file}"])
    try:
        done = subprocess.run(["bash", "-c", script], cwd=cwd, env=env, capture_output=True, text=True,
                              timeout=timeout, check=False)
        after = dict(env)
        if done.returncode == 0:
            with open(env_file, "rb") as handle:
                pairs = [item.decode().split("=", 1) for item in handle.read().split(b"\0") if b"=" in item]
            after = dict(pairs)
        return StepRun(done.returncode, done.stdout + done.stderr, after)
    finally:
        os.unlink(env_file)
