"""The molecule scenarios, as CI runs them: each must pass its whole test sequence.

* default:  the local stack and the forward rollout, with molecule's idempotence step;
* rollback: gradual and emergency rollbacks, every seeded session back in its file;
* aws:      phase 1's infra plays against a moto server, converge, idempotence, verify.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from tests.conftest import ROOT

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SCENARIOS = {
    "default": ("converge", "idempotence", "verify"),
    "rollback": ("converge", "verify"),
    "aws": ("converge", "idempotence", "verify"),
}


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_molecule_scenario_passes(scenario):
    bin_dir = os.path.dirname(sys.executable)
    molecule = shutil.which("molecule", path=bin_dir)
    if molecule is None:
        pytest.fail("molecule is not installed in this venv: run 'make setup'")
    # molecule runs ansible-playbook and ansible-config by name: they must come from this venv.
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
           "ANSIBLE_FORCE_COLOR": "0", "NO_COLOR": "1"}
    result = subprocess.run([molecule, "test", "-s", scenario], cwd=ROOT, env=env, capture_output=True,
                            text=True, timeout=1800)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-8000:]
    for step in SCENARIOS[scenario]:
        assert f"{step}: Executed: Successful" in output, output[-8000:]
