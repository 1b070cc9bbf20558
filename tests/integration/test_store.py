"""sessionshift.store against a real redis-server: the race rules, standalone and cluster."""

from __future__ import annotations

import time

import pytest

from sessionshift.keys import KeyLayout
from sessionshift.store import CopyResult, SessionStore
from tests.support.tombstone import holds_tombstone

pytestmark = pytest.mark.integration


@pytest.fixture(params=["standalone", "cluster"])
def store(request):
    client = request.getfixturevalue("redis_client" if request.param == "standalone" else "cluster_client")
    return SessionStore(client, KeyLayout())


def test_copy_never_overwrites_the_apps_newer_write(store):
    name = store.layout.file_name("sid-a")
    later = int(time.time()) + 600
    store.app_write(name, b"newer", later)
    assert store.copy_if_absent(name, b"older-from-file", later) is CopyResult.EXISTS
    assert store.get(name) == b"newer"


def test_copy_does_not_revive_a_logged_out_session(store):
    name = store.layout.file_name("sid-b")
    store.app_write(name, b"v1", 0)
    store.app_delete(name)
    assert holds_tombstone(store.client, store.layout.session_key(name))
    assert store.copy_if_absent(name, b"v1", 0) is CopyResult.TOMBSTONED
    assert store.get(name) is None
    store.app_write(name, b"v2", 0)  # the app's own write replaces the tombstone
    assert store.get(name) == b"v2"


def test_copy_sets_expiry_and_skips_expired(store):
    name = store.layout.file_name("sid-c")
    expiry = int(time.time()) + 1000
    assert store.copy_if_absent(name, b"v", expiry) is CopyResult.WRITTEN
    assert store.expiry_of(store.layout.session_key(name)) == expiry
    other = store.layout.file_name("sid-d")
    assert store.copy_if_absent(other, b"v", int(time.time()) - 1) is CopyResult.EXPIRED
    assert store.get(other) is None


def test_batched_copies_report_each_outcome(store):
    layout = store.layout
    names = [layout.file_name(f"batch{i}") for i in range(200)]
    store.app_write(names[0], b"app", 0)
    store.app_delete(names[1])
    future, past = int(time.time()) + 100, int(time.time()) - 100
    items = [(name, b"file", past if i == 2 else future) for i, name in enumerate(names)]
    results = store.copy_many_if_absent(items)
    assert results[:3] == [CopyResult.EXISTS, CopyResult.TOMBSTONED, CopyResult.EXPIRED]
    assert results[3:] == [CopyResult.WRITTEN] * 197
    assert store.get(names[0]) == b"app" and store.get(names[1]) is None


def _calls(client, command: str) -> int:
    return client.info("commandstats").get(f"cmdstat_{command}", {}).get("calls", 0)


def test_writes_logouts_and_copies_are_native_commands_no_script(redis_client):
    """The race rules hold with one native command per write: no script to load, run or lose."""
    store = SessionStore(redis_client, KeyLayout())
    redis_client.config_resetstat()
    store.app_write("c" * 64, b"v1", 0)
    store.app_delete("c" * 64)
    assert holds_tombstone(redis_client, store.layout.session_key("c" * 64))
    future = int(time.time()) + 100
    items = [("c" * 64, b"v0", future)] + [(f"{i:064x}", b"v", future) for i in range(5)]
    assert store.start_copy_many_if_absent(items)() == [CopyResult.TOMBSTONED] + [CopyResult.WRITTEN] * 5
    assert store.copy_if_absent("d" * 64, b"v", future) is CopyResult.WRITTEN
    store.app_write("c" * 64, b"v2", 0)
    assert redis_client.get(store.layout.session_key("c" * 64)) == b"v2"
    assert (_calls(redis_client, "evalsha"), _calls(redis_client, "eval"), _calls(redis_client, "set")) \
        == (0, 0, 10)


def test_a_large_batch_reads_every_reply_across_socket_reads(redis_client):
    """The batch's replies are read raw (several socket reads for 20,000): each outcome lands
    on its own session, and the connection is left in step for the next command."""
    store = SessionStore(redis_client, KeyLayout())
    future = int(time.time()) + 100
    names = [f"{i:064x}" for i in range(20_000)]
    for index in range(0, 20_000, 997):
        store.app_write(names[index], b"app", future)
    for index in range(5, 20_000, 1999):
        store.app_delete(names[index])
    results = store.start_copy_many_if_absent([(name, b"file", future) for name in names])()
    expected = [CopyResult.EXISTS if i % 997 == 0 else CopyResult.TOMBSTONED if i % 1999 == 5
                else CopyResult.WRITTEN for i in range(20_000)]
    assert results == expected
    assert store.get(names[1]) == b"file" and store.get(names[5]) is None
    assert redis_client.ping()


def test_a_batch_copy_is_sent_whole(redis_client):
    """The batch request is written by hand (store._copy_batch_standalone): keys, values and
    expiries must reach Redis as SessionStore's other calls send them."""
    store = SessionStore(redis_client, KeyLayout(prefix="app:sess:", generation=2))
    future = int(time.time()) + 100
    items = [("a" * 64, b"\x80\x04never\r\n.", 0), ("b" * 64, b"", future)]
    finish = store.start_copy_many_if_absent(items)
    assert finish() == [CopyResult.WRITTEN, CopyResult.WRITTEN]
    assert store.get("a" * 64) == b"\x80\x04never\r\n."
    assert redis_client.ttl(store.layout.session_key("a" * 64)) == -1
    assert store.get("b" * 64) == b"" and store.expiry_of(store.layout.session_key("b" * 64)) == future
    assert store.copy_many_if_absent(items) == [CopyResult.EXISTS, CopyResult.EXISTS]
