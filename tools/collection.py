"""The collection sessionshift.migration as users get it: built, installed, then ansible-test on it.

    python tools/collection.py sanity units [--keep DIR]   # make sanity: ansible-test sanity and units

build_and_install() is what tests/integration/test_collection_install.py runs a playbook from.
ansible-test only sees collections under the same ansible_collections/ root as the one it
tests, so the collections this one imports at documentation and import time (amazon.aws) are
linked in beside it from the installed `ansible` package. tests/sanity/ignore-2.19.txt (it
ships in the collection) waives one finding per module: validate-modules asks for a GPLv3
header, and the collection is Apache-2.0.

`units` runs ansible-test units on the installed copy with the unit tests written for it,
tests/unit/plugins/{modules,module_utils,filter} (the tarball leaves tests/ out: they are copied
in). They run in this Python (--local), where the sessionshift package and pytest-xdist are
installed; the rest of tests/unit needs the checkout (tests.conftest, devstack) and runs in pytest.
"""

from __future__ import annotations

import argparse
import glob
import os
import shutil
import subprocess
import sys
import tempfile
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.dirname(sys.executable)
NAMESPACE, NAME = "sessionshift", "migration"
# Imported by the plugins (doc fragments, module_utils): they must sit beside the collection.
LINKED_DEPENDENCIES = ("amazon/aws",)
# What ansible-test sanity checks: the Ansible content. src/ (the Python package the modules
# run, shipped for the session_app role) and molecule/ are checked by ruff and their own tests.
SANITY_TARGETS = ("plugins/", "roles/", "playbooks/", "meta/")
# The unit tests that run on the installed collection (ansible-test's layout).
UNIT_TESTS = os.path.join("tests", "unit", "plugins")
# ansible-test's pip bootstrap for the sanity virtualenvs (it downloads get-pip.py otherwise).
GET_PIP_VERSION = "24.2"
GET_PIP_URL = f"https://ci-files.testing.ansible.com/ansible-test/get-pip-{GET_PIP_VERSION}.py"
GET_PIP_STAND_IN = '''"""Stand-in for get-pip.py: pip from ensurepip, then the install asked for."""
import ensurepip
import os
import subprocess
import sys

ensurepip.bootstrap()
os.environ.pop("PIP_CONFIG_FILE", None)  # ensurepip points it at /dev/null: use pip.conf again
GET_PIP_ONLY = ("--no-setuptools", "--no-wheel")  # get-pip.py's own flags, not pip install's
arguments = [arg for arg in sys.argv[1:] if arg not in GET_PIP_ONLY]
sys.exit(subprocess.call([sys.executable, "-m", "pip", "install", *arguments]))
'''


def _run(command: list[str], **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run(command, capture_output=True, text=True, check=False, **kwargs)
    if result.returncode:
        raise RuntimeError(f"{' '.join(command)} failed ({result.returncode}):\n{result.stdout[-3000:]}"
                           f"\n{result.stderr[-3000:]}")
    return result


def build_and_install(workdir: str) -> str:
    """Build the collection from the checkout and install it under *workdir*; its collections path."""
    dist = os.path.join(workdir, "dist")
    collections = os.path.join(workdir, "collections")
    _run([os.path.join(BIN, "ansible-galaxy"), "collection", "build", "--force", "--output-path", dist, ROOT],
         cwd=workdir)
    (tarball,) = glob.glob(os.path.join(dist, f"{NAMESPACE}-{NAME}-*.tar.gz"))
    # --no-deps: the dependencies come with the pinned `ansible` package (Galaxy is not reachable)
    _run([os.path.join(BIN, "ansible-galaxy"), "collection", "install", "--no-deps", "--force",
          "-p", collections, tarball], cwd=workdir, env=_clean_env())
    return collections


def link_dependencies(collections: str) -> None:
    import ansible_collections

    installed = next(path for path in ansible_collections.__path__
                     if os.path.isdir(os.path.join(path, "amazon", "aws")))
    for dependency in LINKED_DEPENDENCIES:
        target = os.path.join(collections, "ansible_collections", dependency)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        if not os.path.lexists(target):
            os.symlink(os.path.join(installed, dependency), target)


def _clean_env(**extra: str) -> dict[str, str]:
    """The environment without the checkout's ansible.cfg and PYTHONPATH (a user's shell)."""
    env = {key: value for key, value in os.environ.items()
           if key not in ("ANSIBLE_CONFIG", "ANSIBLE_COLLECTIONS_PATH", "PYTHONPATH")}
    env.update(extra)
    return env


def _test_home() -> str:
    """HOME for ansible-test: its virtualenvs and pip bootstrap cache, kept under .cache/."""
    home = os.path.join(ROOT, ".cache", "ansible-test-home")
    cache = os.path.join(home, ".ansible", "test", "cache")
    os.makedirs(cache, exist_ok=True)
    config = os.path.join(home, ".config")
    if not os.path.lexists(config) and os.path.isdir(os.path.expanduser("~/.config")):
        os.symlink(os.path.expanduser("~/.config"), config)  # the user's pip.conf (index, mirrors)
    get_pip = os.path.join(cache, f"get_pip_{GET_PIP_VERSION.replace('.', '_')}.py")
    if not os.path.exists(get_pip):
        try:
            with urllib.request.urlopen(GET_PIP_URL, timeout=20) as response:
                content = response.read().decode()
        except OSError as exc:
            print(f"collection: {GET_PIP_URL} unreachable ({exc}); bootstrapping pip with ensurepip")
            content = GET_PIP_STAND_IN
        with open(get_pip, "w", encoding="utf-8") as handle:
            handle.write(content)
    return home


def ansible_test(collections: str, command: str) -> int:
    """ansible-test *command* (sanity, units) in the installed copy under *collections*."""
    installed = os.path.join(collections, "ansible_collections", NAMESPACE, NAME)
    python = f"{sys.version_info.major}.{sys.version_info.minor}"
    arguments = [*SANITY_TARGETS] if command == "sanity" else []
    if command == "units":
        shutil.rmtree(os.path.join(installed, UNIT_TESTS), ignore_errors=True)
        shutil.copytree(os.path.join(ROOT, UNIT_TESTS), os.path.join(installed, UNIT_TESTS),
                        ignore=shutil.ignore_patterns("__pycache__"))
    command_line = [os.path.join(BIN, "ansible-test"), command, "--python", python, "--local",
                    "--color", "no", *arguments]
    print("collection:", " ".join(command_line), f"(in {installed})", flush=True)
    env = _clean_env(HOME=_test_home())
    return subprocess.run(command_line, cwd=installed, env=env, check=False).returncode


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("commands", nargs="+", choices=["sanity", "units"])
    parser.add_argument("--keep", help="work in this directory and keep it (default: a temporary one)")
    args = parser.parse_args(argv)
    workdir = args.keep or tempfile.mkdtemp(prefix="sessionshift-collection-")
    os.makedirs(workdir, exist_ok=True)
    try:
        collections = build_and_install(workdir)
        link_dependencies(collections)
        return max(ansible_test(collections, command) for command in args.commands)
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
