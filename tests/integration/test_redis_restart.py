"""What a Redis restart keeps: acknowledged session writes and logouts, on the append-only file.

A real redis-server (TLS, ACL, ``appendonly yes``, ``appendfsync always``) is stopped with
SIGTERM or killed with SIGKILL and started again on the same data directory. Every write and
logout the store acknowledged is there afterwards. Before the fix, the dev stack's
``user default off`` (no permissions) made Redis 7.0 drop every MULTI/EXEC block of its AOF
at the reload, and a logout was then written as one (two writes: DEL and a tombstone SET):
the logged-out session came back. The phase-2 gate now refuses such a Redis (a logout is now
one native SET of the tombstone into the session key; the restart must keep it all the same).
"""

from __future__ import annotations

import dataclasses
import datetime
import os
import re
import time

import pytest

from devstack.local_stack import ROOT
from devstack.redis_server import DEFAULT_USER, RedisServer
from sessionshift import gates
from sessionshift.keys import KeyLayout
from sessionshift.redisconn import connect
from sessionshift.store import SessionStore
from tests.support.tombstone import holds_tombstone

pytestmark = pytest.mark.integration
DURABLE = ("appendonly yes", "appendfsync always")
NOW = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)


def restart(server: RedisServer, how: str) -> None:
    if how == "SIGKILL":
        server.kill()
    else:
        server.stop()  # SIGTERM
    server.launch()


def phase_2_gate(server: RedisServer) -> gates.GateResult:
    return gates.evaluate({"gate": "dual_write", "redis": dataclasses.asdict(server.settings())}, now=NOW)


@pytest.mark.parametrize("how", ["SIGTERM", "SIGKILL"])
def test_acknowledged_writes_and_logouts_survive_a_restart(tmp_path, tls_files, how):
    with RedisServer.start(str(tmp_path), tls_files, extra_config=DURABLE) as server:
        client = connect(server.settings())
        store = SessionStore(client, KeyLayout())
        later = int(time.time()) + 600
        kept, gone, rewritten = (store.layout.file_name(sid) for sid in ("kept", "gone", "rewritten"))
        store.app_write(kept, b"v1", later)
        store.app_write(gone, b"v1", later)
        store.app_delete(gone)  # the logout: the tombstone SET into the session key
        store.app_write(rewritten, b"v1", later)
        store.app_delete(rewritten)
        store.app_write(rewritten, b"v2", later)  # a SET over the tombstone
        client.close()
        restart(server, how)
        client = connect(server.settings())
        store = SessionStore(client, KeyLayout())
        assert store.get(kept) == b"v1"
        assert store.get(gone) is None, "a logout Redis acknowledged came back after the restart"
        assert holds_tombstone(client, store.layout.session_key(gone))
        assert store.get(rewritten) == b"v2"
        client.close()


def test_the_phase_2_gate_refuses_a_redis_that_would_drop_logouts_at_a_restart(tmp_path, tls_files,
                                                                               monkeypatch):
    import devstack.redis_server

    monkeypatch.setattr(devstack.redis_server, "DEFAULT_USER", "user default off")  # the old line
    with RedisServer.start(str(tmp_path / "bare"), tls_files, extra_config=DURABLE) as server:
        client = connect(server.settings())
        hazard = gates.aof_reload_hazard(client)
        client.close()
        assert hazard and "user default off ~* &* +@all" in hazard
        result = phase_2_gate(server)
        assert not result.passed and any("append-only file" in reason for reason in result.reasons)
    monkeypatch.undo()
    with RedisServer.start(str(tmp_path / "fixed"), tls_files, extra_config=DURABLE) as server:
        client = connect(server.settings())
        assert gates.aof_reload_hazard(client) is None
        client.close()
        assert phase_2_gate(server).passed


def test_the_local_redis_role_writes_the_same_default_user_as_the_dev_stack():
    with open(os.path.join(ROOT, "roles", "local_redis", "templates", "redis.conf.j2")) as handle:
        lines = re.findall(r"^user default .*$", handle.read(), re.MULTILINE)
    assert lines == [DEFAULT_USER]
