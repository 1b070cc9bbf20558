"""sessionshift.backup against a real redis-server: one file, verified, restored without overwriting."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import time

import pytest

from devstack.redis_server import absolute_expiries
from sessionshift import formats
from sessionshift.backup import BackupError, create_backup, read_manifest, restore_backup, verify_backup
from sessionshift.keys import KeyLayout
from sessionshift.store import SessionStore

pytestmark = pytest.mark.integration


def _populate(client) -> SessionStore:
    """Hashed sessions (with and without TTL), a tombstone and stock keys."""
    store = SessionStore(client, KeyLayout())
    expiry = int(time.time()) + 600
    for i in range(50):
        store.app_write(store.layout.file_name(f"sid-{i}"), formats.encode_value({"n": i}),
                        0 if i % 10 == 0 else expiry)
    store.app_delete(store.layout.file_name("sid-0"))  # logged out: a tombstone
    for i in range(5):
        client.set(store.layout.stock_key(f"stock-{i}"), formats.encode_value({"s": i}), ex=300)
    client.set("other-app:key", b"not ours")
    return store


def _snapshot(client, layout: KeyLayout) -> dict[bytes, tuple[bytes, int]]:
    keys = [key for primary in _primaries(client) for key in primary.scan_iter(match=layout.all_pattern)]
    return {key: (client.get(key), expiry)
            for key, expiry in zip(keys, absolute_expiries(client, keys, millis=True), strict=True)}


def _primaries(client):
    from sessionshift.export import primary_clients

    return primary_clients(client)


def _flush(client):
    for primary in _primaries(client):
        primary.flushall()


def _assert_same(before, after):
    assert sorted(before) == sorted(after)
    for key, (value, pexpiretime) in before.items():
        assert after[key][0] == value
        if pexpiretime == -1:
            assert after[key][1] == -1
        else:
            assert abs(after[key][1] - pexpiretime) <= 1000


@pytest.mark.parametrize("kind", ["standalone", "cluster"])
def test_backup_flushall_restore_gives_the_same_keys(request, tmp_path, kind):
    client = request.getfixturevalue("redis_client" if kind == "standalone" else "cluster_client")
    store = _populate(client)
    before = _snapshot(client, store.layout)
    dest = str(tmp_path / "sessions.backup.gz")

    made = create_backup(client, store.layout, dest, source="rediss://127.0.0.1:1")

    assert made.created and os.stat(dest).st_mode & 0o777 == 0o600
    assert made.manifest["counts"] == {"hashed": 49, "tombstone": 1, "stock": 5}
    assert read_manifest(dest) == made.manifest == verify_backup(dest)
    _flush(client)
    result = restore_backup(client, dest)
    assert result.restored == {"hashed": 49, "tombstone": 1, "stock": 5}
    _assert_same(before, _snapshot(client, store.layout))
    assert client.get("other-app:key") is None  # not a session key: not in the backup

    again = restore_backup(client, dest)
    assert not again.changed and again.kept_existing == 55


def test_restore_never_overwrites_a_newer_key_nor_revives_a_logout(redis_client, tmp_path):
    store = _populate(redis_client)
    dest = str(tmp_path / "b.gz")
    create_backup(redis_client, store.layout, dest)
    newer, logged_out = store.layout.file_name("sid-1"), store.layout.file_name("sid-2")
    store.app_write(newer, formats.encode_value({"n": "newer"}), 0)
    store.app_delete(logged_out)
    redis_client.set(store.layout.stock_key("stock-1"), b"newer stock")
    redis_client.delete(store.layout.session_key(store.layout.file_name("sid-3")))  # lost: comes back

    result = restore_backup(redis_client, dest)

    assert result.restored_total == 1 and result.kept_logged_out == 1
    assert formats.decode_value(store.get(newer)) == {"n": "newer"}
    assert store.get(logged_out) is None
    assert redis_client.get(store.layout.stock_key("stock-1")) == b"newer stock"
    assert formats.decode_value(store.get(store.layout.file_name("sid-3"))) == {"n": 3}


def test_expired_entries_are_skipped(redis_client, tmp_path):
    store = SessionStore(redis_client, KeyLayout())
    name = store.layout.file_name("short")
    redis_client.set(store.layout.session_key(name), formats.encode_value({"a": 1}), px=1500)
    dest = str(tmp_path / "b.gz")
    create_backup(redis_client, store.layout, dest)
    time.sleep(1.6)
    result = restore_backup(redis_client, dest)
    assert (result.expired, result.restored_total) == (1, 0)


def test_dry_run_restore_counts_and_writes_nothing(redis_client, tmp_path):
    store = _populate(redis_client)
    dest = str(tmp_path / "b.gz")
    create_backup(redis_client, store.layout, dest)
    _flush(redis_client)
    result = restore_backup(redis_client, dest, dry_run=True)
    assert result.restored == {"hashed": 49, "tombstone": 1, "stock": 5}
    assert redis_client.dbsize() == 0


def test_an_existing_backup_is_kept_unless_overwrite(redis_client, tmp_path):
    store = _populate(redis_client)
    dest = str(tmp_path / "b.gz")
    first = create_backup(redis_client, store.layout, dest)
    redis_client.set(store.layout.stock_key("later"), b"x")
    second = create_backup(redis_client, store.layout, dest)
    assert not second.created and second.manifest == first.manifest
    third = create_backup(redis_client, store.layout, dest, overwrite=True)
    assert third.created and third.manifest["counts"]["stock"] == 6


def _rewrite(path: str, change) -> None:
    with gzip.open(path, "rb") as stream:
        lines = stream.read().splitlines(keepends=True)
    with gzip.open(path, "wb") as stream:
        stream.writelines(change(lines))


@pytest.mark.parametrize("damage", ["payload", "manifest", "truncated", "garbage"])
def test_a_corrupt_backup_is_refused_and_nothing_is_written(redis_client, tmp_path, damage):
    store = _populate(redis_client)
    dest = str(tmp_path / "b.gz")
    create_backup(redis_client, store.layout, dest)
    _flush(redis_client)
    if damage == "payload":  # one value changed: the checksum no longer matches
        _rewrite(dest, lambda lines: [lines[0], lines[1].replace(b'"v":"', b'"v":"AAAA'), *lines[2:]])
    elif damage == "manifest":
        _rewrite(dest, lambda lines: [b'{"format": "something else"}\n', *lines[1:]])
    elif damage == "truncated":
        with open(dest, "rb") as handle:
            raw = handle.read()
        with open(dest, "wb") as handle:
            handle.write(raw[: len(raw) - 40])
    else:
        with open(dest, "wb") as handle:
            handle.write(b"\x00" * 100)
    with pytest.raises(BackupError, match="nothing was restored"):
        restore_backup(redis_client, dest)
    assert redis_client.dbsize() == 0


def test_a_backup_with_a_valid_checksum_but_foreign_keys_is_refused(redis_client, tmp_path):
    """The checksum proves integrity, not origin: entries are checked against the layout too."""
    dest = str(tmp_path / "b.gz")
    payload = json.dumps({"k": "elsewhere:x", "t": "stock", "v": "eA==", "x": 0}).encode() + b"\n"
    manifest = {"format": "sessionshift-backup", "version": 1, "key_prefix": "session:",
                "hash_method": "sha256", "keys": 1, "payload_sha256": hashlib.sha256(payload).hexdigest()}
    with gzip.open(dest, "wb") as stream:
        stream.write(json.dumps(manifest).encode() + b"\n" + payload)
    with pytest.raises(BackupError, match="line 2"):
        restore_backup(redis_client, dest)
    assert redis_client.dbsize() == 0


def test_a_backup_that_fails_midway_leaves_nothing_behind(redis_client, tmp_path, monkeypatch):
    from redis.exceptions import ConnectionError as RedisConnectionError

    from sessionshift import backup

    store = _populate(redis_client)
    real_fetch, calls = backup.fetch_with_expiry, []

    def fetch_then_fail(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise RedisConnectionError("connection lost")
        return real_fetch(*args, **kwargs)

    monkeypatch.setattr(backup, "fetch_with_expiry", fetch_then_fail)
    with pytest.raises(RedisConnectionError):
        create_backup(redis_client, store.layout, str(tmp_path / "b.gz"), batch_size=10)
    assert os.listdir(tmp_path) == []
