"""A short, bounded run of the model-based test (tests/model/fleet.py); `make soak` runs a long one."""

from __future__ import annotations

import pytest

from tests.support.redis_server import RedisServer

from .fleet import machine, run_settings

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def durable_redis(tmp_path_factory, tls_files):
    """A redis-server that keeps what it acknowledged across a restart (append-only file, fsync always)."""
    server = RedisServer.start(str(tmp_path_factory.mktemp("model-redis")), tls_files,
                               extra_config=("appendonly yes", "appendfsync always"))
    yield server
    server.stop()


def test_random_walks_of_the_fleet_keep_every_session_and_every_logout(durable_redis):
    Machine = machine(durable_redis)
    Machine.TestCase.settings = run_settings(walks=8, steps=25)
    Machine.TestCase().runTest()
