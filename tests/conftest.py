"""Shared fixtures: real redis-server processes (TLS + ACL on loopback) and module loading."""

from __future__ import annotations

import importlib.util
import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)  # tests.support, bench helpers

from tests.support.redis_server import RedisCluster3, RedisServer  # noqa: E402
from tests.support.tlsca import make_ca  # noqa: E402


def _register_module_utils() -> None:
    """Make the project's module_utils importable as ansible.module_utils.<name>.

    ansible-playbook does this for playbook-adjacent module_utils; under pytest
    we do it ourselves so that library/ modules import as they do on a host.
    """
    import ansible.module_utils as package

    directory = os.path.join(ROOT, "module_utils")
    if not os.path.isdir(directory):
        return
    for file_name in sorted(os.listdir(directory)):
        if not file_name.endswith(".py") or file_name.startswith("__"):
            continue
        name = f"ansible.module_utils.{file_name[:-3]}"
        if name in sys.modules:
            continue
        spec = importlib.util.spec_from_file_location(name, os.path.join(directory, file_name))
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
        setattr(package, file_name[:-3], module)


_register_module_utils()


def load_library_module(name: str):
    """Import library/<name>.py as a Python module (for patch_module_args tests)."""
    path = os.path.join(ROOT, "library", f"{name}.py")
    spec = importlib.util.spec_from_file_location(f"sessionshift_library_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


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
    from tests.support.moto_server import MotoServer

    server = MotoServer.start()
    yield server
    server.stop()
