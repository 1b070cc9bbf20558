"""sessionshift.store against a real redis-server: the race rules, standalone and cluster."""

from __future__ import annotations

import time

import pytest

from sessionshift.keys import KeyLayout
from sessionshift.store import CopyResult, SessionStore

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
    assert store.copy_if_absent(name, b"v1", 0) is CopyResult.TOMBSTONED
    assert store.get(name) is None
    store.app_write(name, b"v2", 0)  # the app's own write clears the tombstone
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


def test_an_app_write_is_one_script_call_even_after_redis_forgot_the_script(redis_client):
    store = SessionStore(redis_client, KeyLayout())
    redis_client.config_resetstat()
    store.app_write("c" * 64, b"v1", 0)
    store.app_delete("c" * 64)

    def calls(command):
        return redis_client.info("commandstats").get(f"cmdstat_{command}", {}).get("calls", 0)

    # No SCRIPT EXISTS per write (what a script handed to a redis-py pipeline costs).
    assert (calls("evalsha"), calls("script|exists"), calls("script|load")) == (2, 0, 0)
    redis_client.script_flush()  # as a restarted or failed-over Redis
    store.app_write("c" * 64, b"v2", 0)
    assert redis_client.get(store.layout.session_key("c" * 64)) == b"v2"
    assert not redis_client.exists(store.layout.tombstone_key("c" * 64))
    assert calls("script|load") == 1


def test_a_batch_copy_is_sent_whole_after_redis_forgot_the_script(redis_client):
    """The batch request is written by hand (store._copy_batch_standalone): keys, values and
    expiries must reach the script as SessionStore's other calls send them, NOSCRIPT included."""
    store = SessionStore(redis_client, KeyLayout(prefix="app:sess:", generation=2))
    redis_client.script_flush()
    future = int(time.time()) + 100
    items = [("a" * 64, b"\x80\x04never\r\n.", 0), ("b" * 64, b"", future)]
    finish = store.start_copy_many_if_absent(items)
    assert finish() == [CopyResult.WRITTEN, CopyResult.WRITTEN]
    assert store.get("a" * 64) == b"\x80\x04never\r\n."
    assert redis_client.ttl(store.layout.session_key("a" * 64)) == -1
    assert store.get("b" * 64) == b"" and store.expiry_of(store.layout.session_key("b" * 64)) == future
    assert store.copy_many_if_absent(items) == [CopyResult.EXISTS, CopyResult.EXISTS]
