"""The collection as users get it: ansible-galaxy collection build, install into a temporary
collections path, and playbooks run from the installed copy, outside the checkout.

The project directory has its own ansible.cfg naming only the temporary collections path, so the
checkout's link (collections/ansible_collections/sessionshift/migration) is out of reach.
"""

from __future__ import annotations

import glob
import json
import os
import re
import subprocess
import sys
import tarfile

import pytest
import yaml

from tests.conftest import ROOT
from tests.integration.test_migrate import make_corpus
from tools.collection import build_and_install

pytestmark = [pytest.mark.integration, pytest.mark.slow]
BIN = os.path.dirname(sys.executable)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("collection")


@pytest.fixture(scope="module")
def installed(workdir):
    return build_and_install(str(workdir))


@pytest.fixture
def project(installed, tmp_path):
    """A project directory outside the checkout: ansible.cfg, an inventory of one local app host."""
    directory = tmp_path / "project"
    directory.mkdir()
    (directory / "ansible.cfg").write_text(f"[defaults]\ncollections_path = {installed}\n"
                                           "stdout_callback = ansible.builtin.default\n"
                                           "callback_result_format = yaml\n")
    host = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable,
            "session_app_state_dir": str(tmp_path / "state"),
            "session_app_session_dir": str(tmp_path / "sessions"),
            "session_app_url": "http://127.0.0.1:9",  # no app: the status says so, it does not fail
            "rollout_cloudwatch_enabled": False,
            # required by the role's argument spec; the status never connects
            "sessionshift_redis": {"url": "rediss://127.0.0.1:9/0"}}
    (directory / "hosts.yml").write_text(yaml.safe_dump({"app_servers": {"hosts": {"app1": host}}}))
    return directory


def _ansible(project, *command):
    env = {key: value for key, value in os.environ.items()
           if key not in ("ANSIBLE_CONFIG", "ANSIBLE_COLLECTIONS_PATH", "ANSIBLE_ROLES_PATH")}
    env.update(ANSIBLE_CONFIG=str(project / "ansible.cfg"), ANSIBLE_NOCOLOR="1")
    result = subprocess.run([os.path.join(BIN, command[0]), *command[1:]], cwd=project, env=env,
                            capture_output=True, text=True, timeout=600, check=False)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-3000:]
    return result.stdout


def test_the_tarball_holds_the_collection_and_not_the_checkout(workdir, installed):
    (tarball,) = glob.glob(str(workdir / "dist" / "sessionshift-migration-*.tar.gz"))
    with tarfile.open(tarball) as archive:
        names = set(archive.getnames())
    for expected in ("MANIFEST.json", "meta/runtime.yml", "plugins/modules/session_phase.py",
                     "plugins/module_utils/sessionshift_common.py", "plugins/doc_fragments/sessionshift.py",
                     "plugins/filter/sessionshift.py", "roles/rollout/tasks/main.yml", "playbooks/status.yml",
                     "src/sessionshift/__init__.py", "pyproject.toml"):
        assert expected in names, expected
    for name in names:
        assert not name.startswith(("collections", "bench", ".venv", ".git/", "run/", ".cache")), name
        if name.startswith("tests"):  # ansible-test's ignore files only
            assert name in ("tests", "tests/sanity") or name.startswith("tests/sanity/"), name
        assert "__pycache__" not in name, name


def test_modules_and_filters_resolve_to_the_installed_copy(project, installed):
    shown = _ansible(project, "ansible-doc", "-t", "module", "sessionshift.migration.session_phase")
    assert os.path.join(installed, "ansible_collections", "sessionshift", "migration") in shown
    assert ROOT not in shown


def test_a_playbook_of_the_installed_collection_runs(project, tmp_path):
    """Set the host's phase with the installed module, then the collection's status playbook reads it."""
    state_dir = tmp_path / "state"
    _ansible(project, "ansible", "app_servers", "-i", "hosts.yml",
             "-m", "sessionshift.migration.session_phase",
             "-a", f"state_dir={state_dir} phase=dual_write force=true changed_by=test")
    with open(state_dir / "phase.json", encoding="utf-8") as handle:
        assert "dual_write" in handle.read()
    status = _ansible(project, "ansible-playbook", "-i", "hosts.yml", "sessionshift.migration.status")
    assert "phase: dual_write" in status, status[-3000:]
    assert "app not answering" in status
    assert "failed=0" in status


def _module_files(output):
    """The collection's module files ansible-playbook -vvv says it sent to the host."""
    return {path for path in re.findall(r"Using module file (\S+)", output)
            if os.path.basename(path).startswith("session_")}


def test_a_phase_playbook_runs_its_modules_from_the_installed_copy(project, installed, tmp_path):
    """phase1.yml's source-profile step, run by FQCN, executes the installed collection's modules."""
    make_corpus(str(tmp_path / "sessions"), 20)
    output = _ansible(project, "ansible-playbook", "-vvv", "-i", "hosts.yml", "sessionshift.migration.phase1",
                      "--tags", "profile")
    installed_copy = os.path.join(installed, "ansible_collections", "sessionshift", "migration")
    used = _module_files(output)
    assert {os.path.basename(path) for path in used} >= {"session_phase.py", "session_analyze.py"}, used
    assert all(path.startswith(installed_copy + os.sep) and ROOT not in path for path in used), used
    assert "failed=0" in output
    with open(tmp_path / "state" / "profile.json", encoding="utf-8") as handle:
        recorded = json.load(handle)
    assert recorded["session_dir"] == str(tmp_path / "sessions") and recorded["sessions"] == 20
    assert recorded["hash_name"] == "sha256" and recorded["header_style"] == "struct"
