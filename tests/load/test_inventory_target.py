"""`make load INVENTORY=...`: the load profiles against an inventory's app hosts, not a fleet of their own."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import yaml

from tests.load.apps import Fleet
from tests.load.profiles import inventory_urls
from tests.load.runner import ROOT

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_the_example_inventories_name_their_app_hosts():
    assert inventory_urls(os.path.join(ROOT, "inventories", "staging")) == [
        "https://app-a1.staging.example.com", "https://app-c1.staging.example.com"]
    assert inventory_urls(os.path.join(ROOT, "inventories", "local")) == [
        "http://127.0.0.1:18001", "http://127.0.0.1:18002"]


def test_the_baseline_profile_runs_against_an_inventorys_running_app_hosts(tmp_path):
    with Fleet.start(str(tmp_path / "fleet"), hosts=2, workers=2, phase="dual_write") as fleet:
        inventory = tmp_path / "inventory.yml"
        inventory.write_text(yaml.safe_dump({"all": {"children": {"app_servers": {"hosts": {
            f"app{index}": {"ansible_connection": "local", "sessionshift_load_url": url}
            for index, url in enumerate(fleet.urls)}}}}}))
        done = subprocess.run([sys.executable, "-m", "tests.load.profiles", "--inventory", str(inventory),
                               "--profiles", "baseline", "--run-time", "10",
                               "--out-dir", str(tmp_path / "out")],
                              cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert ", ".join(fleet.urls) in done.stdout
    with open(tmp_path / "out" / "inventory.yml-baseline.checks.json") as handle:
        checks = json.load(handle)
    assert checks["logins"] == 50 and checks["checked"] > 50, checks
    assert (checks["session_lost"], checks["write_lost"], checks["errors"]) == (0, 0, 0), checks
