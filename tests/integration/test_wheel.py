"""The sessionshift package as a wheel, installed outside the checkout (what an app host or controller gets).

The wheel is built from a copy of the sources and installed into a fresh virtual environment; the
dependencies come from the test venv through a .pth line (a directory named there is added to
sys.path, but its own .pth files, among them the editable install of the checkout, are not read),
so the only sessionshift that environment can import is the wheel's.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig

import pytest

from devstack.moto_server import FAKE_CREDENTIALS, REGION
from tests.conftest import ROOT

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _run(command, cwd, timeout=300):
    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "ANSIBLE_CONFIG")}
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout,
                          check=False)


@pytest.fixture(scope="module")
def wheel_venv(tmp_path_factory):
    source = tmp_path_factory.mktemp("source")
    shutil.copytree(os.path.join(ROOT, "src"), source / "src",
                    ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(os.path.join(ROOT, name), source / name)
    dist = tmp_path_factory.mktemp("dist")
    built = _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(dist), str(source)],
                 cwd=source)
    assert built.returncode == 0, built.stderr[-3000:]
    (wheel,) = dist.glob("sessionshift-*.whl")

    venv = tmp_path_factory.mktemp("venv")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = str(venv / "bin" / "python")
    installed = _run([sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "-q",
                      str(wheel)], cwd=venv)
    assert installed.returncode == 0, installed.stderr[-3000:]
    purelib = _run([python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                   cwd=venv).stdout.strip()
    with open(os.path.join(purelib, "test-dependencies.pth"), "w", encoding="utf-8") as handle:
        handle.write(sysconfig.get_path("purelib") + "\n")
    return venv


def test_the_wheel_is_what_the_fresh_environment_imports(wheel_venv, tmp_path):
    python = str(wheel_venv / "bin" / "python")
    probe = "import sessionshift.alarmwatch, sessionshift.cli; print(sessionshift.__file__)"
    located = _run([python, "-c", probe], cwd=tmp_path)
    assert located.returncode == 0, located.stderr[-3000:]
    assert located.stdout.strip().startswith(str(wheel_venv)), located.stdout
    assert not located.stdout.strip().startswith(ROOT)


def test_the_console_script_runs_outside_the_checkout(wheel_venv, tmp_path):
    result = _run([str(wheel_venv / "bin" / "sessionshift"), "--help"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "usage: sessionshift" in result.stdout and "migrate" in result.stdout


def test_alarmwatch_runs_the_collection_playbook_in_the_project_dir(wheel_venv, tmp_path, moto_server):
    """One poll from the wheel, an alarm in ALARM on a real moto server: the watcher starts the
    collection's rollback playbook by name, in --project-dir, not a file beside its own source.

    ansible-playbook here is a stand-in that records how it was called (the real rollback on alert
    runs in tests/integration/test_rollout_alarm.py)."""
    import boto3

    cloudwatch = boto3.client("cloudwatch", **moto_server.client_kwargs())
    cloudwatch.put_metric_alarm(AlarmName="wheel-test-errors", MetricName="Evictions",
                                Namespace="AWS/ElastiCache", Statistic="Sum", Period=60, EvaluationPeriods=1,
                                Threshold=0,
                                ComparisonOperator="GreaterThanThreshold")
    cloudwatch.set_alarm_state(AlarmName="wheel-test-errors", StateValue="ALARM", StateReason="test")
    record = tmp_path / "ansible-playbook.args"
    stand_in = wheel_venv / "bin" / "ansible-playbook"
    stand_in.write_text(f'#!/bin/sh\nprintf "%s\\n" "$PWD" "$@" > {record}\n')
    stand_in.chmod(0o755)
    project, elsewhere = tmp_path / "project", tmp_path / "elsewhere"
    project.mkdir()
    elsewhere.mkdir()
    # the watcher checks at start that the inventory it will hand to ansible-playbook exists there
    (project / "inventories" / "production").mkdir(parents=True)
    (project / "inventories" / "production" / "hosts.yml").write_text("all: {}\n")

    command = [str(wheel_venv / "bin" / "python"), "-m", "sessionshift.alarmwatch", "--once",
               "--endpoint-url", moto_server.endpoint_url, "--region", REGION,
               "--alarm-prefix", "wheel-test-",
               "--inventory", "inventories/production", "--project-dir", str(project),
               "--state-file", str(tmp_path / "alarmwatch.json")]
    env = {**os.environ, **FAKE_CREDENTIALS, "PYTHONPATH": "",
           "SESSIONSHIFT_ROLLOUT_LOCK": str(tmp_path / "rollout.lock")}  # not the machine-wide default
    result = subprocess.run(command, cwd=elsewhere, env=env,
                            capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    cwd, *argv = record.read_text().splitlines()
    assert cwd == str(project)
    assert argv[:3] == ["-i", "inventories/production", "sessionshift.migration.rollback"]
    assert "rollback_to=previous" in argv
    assert not any(str(wheel_venv) in part or ROOT in part for part in argv)
