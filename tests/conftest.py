"""Shared fixtures: real redis-server processes (TLS + ACL on loopback) and module loading."""

from __future__ import annotations

import importlib
import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)  # devstack (the development stack), tests.support, bench, tools

from devstack.redis_server import RedisCluster3, RedisServer  # noqa: E402
from devstack.tlsca import make_ca  # noqa: E402

# The repository root is the collection sessionshift.migration; collections/ holds the link
# ansible_collections/sessionshift/migration -> the root, so its plugins import under the names
# ansible-playbook gives them (ansible_collections is a namespace package: the amazon.aws copy
# in site-packages and this one merge).
sys.path.insert(0, os.path.join(ROOT, "collections"))

COLLECTION = "ansible_collections.sessionshift.migration"


def load_module(name: str):
    """plugins/modules/<name>.py as a Python module (for patch_module_args tests)."""
    return importlib.import_module(f"{COLLECTION}.plugins.modules.{name}")


load_library_module = load_module  # the name before library/ moved to plugins/modules (for open branches)


@pytest.fixture(autouse=True)
def _modules_run_as_modules(monkeypatch):
    """Keep ansible-core's module_utils in module mode for every test.

    Importing any controller code (the filter plugins' tests import ansible.errors)
    sets ``ansible.module_utils._internal.is_controller`` for the rest of the process,
    and from then on ``module.warn()`` prints through Display instead of returning
    the warning in the result: a module test's outcome would depend on test order.
    """
    from ansible.module_utils import _internal

    monkeypatch.setattr(_internal, "is_controller", False)


def _tree_snapshot(root: str) -> dict[str, tuple[int, int]]:
    """Relative path -> (size, mtime_ns) of *root* and everything under it; {} if it is absent."""
    found = {}
    for directory, subdirectories, files in os.walk(root):
        for path in (directory, *(os.path.join(directory, name) for name in (*subdirectories, *files))):
            try:
                info = os.lstat(path)
            except FileNotFoundError:
                continue
            found[os.path.relpath(path, root)] = (info.st_size, info.st_mtime_ns)
    return found


@pytest.fixture(scope="session", autouse=True)
def _nothing_writes_the_default_state_dir():
    """Fail the run when anything it started wrote to the default state directory.

    That directory is a real host's state (phase file, source profile, journal): a test, or
    a command, playbook or app it runs, must always be given its own. Checked at the end
    of the run, so it catches writers in subprocesses too (the CLI, modules, gunicorn).
    """
    from sessionshift import defaults

    before = _tree_snapshot(defaults.STATE_DIR)
    yield
    after = _tree_snapshot(defaults.STATE_DIR)
    changed = sorted(path for path in before.keys() | after.keys() if before.get(path) != after.get(path))
    if changed:
        pytest.fail(f"this run wrote to the default state directory {defaults.STATE_DIR}: "
                    f"{', '.join(changed[:10])}. Give the test, and every command, playbook or app it "
                    "starts, its own state directory (--state-dir, state_dir, SESSIONSHIFT_STATE_DIR). "
                    "(Another test run on this machine at the same time would show up here too.)",
                    pytrace=False)


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory):
    return make_ca(str(tmp_path_factory.mktemp("tls")))


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory, tls_files):
    """One TLS-only, ACL-protected redis-server for the whole run."""
    server = RedisServer.start(str(tmp_path_factory.mktemp("redis")), tls_files)
    yield server
    server.stop()


@pytest.fixture
def redis_client(redis_server):
    """A connected client on an empty database."""
    from sessionshift.redisconn import connect

    client = connect(redis_server.settings())
    client.flushall()
    yield client
    client.close()


@pytest.fixture
def redis_args(redis_server, tmp_path):
    """The sessionshift command's Redis options for the shared server (password in a file)."""
    settings = redis_server.settings()
    password_file = tmp_path / "password"
    password_file.write_text(settings.password + "\n")
    return ["--redis-url", settings.url, "--redis-user", settings.username,
            "--redis-password-file", str(password_file), "--ca-file", settings.ca_file]


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory, tls_files):
    cluster = RedisCluster3.start(str(tmp_path_factory.mktemp("cluster")), tls_files)
    yield cluster
    cluster.stop()


@pytest.fixture
def cluster_client(redis_cluster):
    from sessionshift.redisconn import connect

    client = connect(redis_cluster.settings())
    for node in client.get_primaries():
        client.flushall(target_nodes=node)
    yield client
    client.close()


@pytest.fixture(scope="session")
def moto_server():
    """A real moto server (AWS stand-in) over HTTP on a free loopback port for the whole run."""
    from devstack.moto_server import MotoServer

    server = MotoServer.start()
    yield server
    server.stop()
