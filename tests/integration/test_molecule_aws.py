"""`molecule test -s aws`: phase 1's infra plays against a moto server, converge, idempotence, verify."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from tests.conftest import ROOT

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_molecule_aws_scenario_passes():
    bin_dir = os.path.dirname(sys.executable)
    molecule = shutil.which("molecule", path=bin_dir)
    if molecule is None:
        pytest.fail("molecule is not installed in this venv: run 'make setup'")
    # molecule runs ansible-playbook and ansible-config by name: they must come from this venv.
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
           "ANSIBLE_FORCE_COLOR": "0", "NO_COLOR": "1"}
    result = subprocess.run([molecule, "test", "-s", "aws"], cwd=ROOT, env=env, capture_output=True,
                            text=True, timeout=1200)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:]
    for step in ("converge", "idempotence", "verify"):
        assert f"{step}: Executed: Successful" in output, output[-6000:]
