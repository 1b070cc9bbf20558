"""Backup and restore of every session key in Redis, in one compressed file.

The emergency rollback keeps a copy of Redis before it flips the fleet back to
files, and an operator can put it back (``restore``) if the rollback itself
was the mistake. The file is gzip, written atomically with mode 0600 (it holds
live sessions), as two gzip members read back as one stream::

    {"format": "sessionshift-backup", "version": 1, "created_at": ..., "source": ...,
     "key_prefix": ..., "hash_method": ..., "counts": {"hashed": n, "tombstone": n,
     "stock": n}, "keys": n, "payload_sha256": ...}                <- line 1: the manifest
    {"k": "<key>", "t": "hashed", "v": "<base64 value>", "x": <absolute expiry, epoch ms, 0 = none>}
    ...                                                            <- one line per key

``payload_sha256`` is the SHA-256 of every byte after the manifest line (the
uncompressed JSON lines), so ``zcat backup.gz | head -1`` shows what a backup
holds and a restore can prove the payload intact before it writes anything.
``source`` is the endpoint (``rediss://host:port``), never a credential.

A tombstone (a session key that holds ``keys.TOMBSTONE``, a logout's mark)
is an entry of kind ``tombstone`` under its session key. Backups made before
tombstones lived in the session key name a ``t:{<file>}`` key for them; they
are read as the same tombstone in the session key.

Restore never overwrites: sessions go through the store's copy-if-absent
(``SET NX``: a key written since the backup wins, a tombstone keeps a
logged-out session out), stock keys and tombstones use ``SET NX`` with their
absolute expiry (``PXAT``), so a restored tombstone keeps a logged-out session
out too, and entries whose expiry has passed are skipped. Running it twice
writes nothing the second time.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import dataclasses
import datetime
import gzip
import hashlib
import itertools
import json
import os
import shutil
import tempfile
import time
import zlib
from collections.abc import Iterator
from typing import Any

from . import options, state
from .atomicfile import write_atomic
from .errors import SessionshiftError
from .export import DEFAULT_BATCH, fetch_with_expiry, is_cluster, scan_batches
from .keys import TOMBSTONE, KeyLayout, is_tombstone
from .progress import Progress, ProgressCallback
from .redisconn import RedisClient
from .store import CopyResult, SessionStore, holds_tombstone, stock_keys_current

FORMAT_NAME = "sessionshift-backup"
FORMAT_VERSION = 1
KINDS = ("hashed", "tombstone", "stock")


class BackupError(SessionshiftError, ValueError):
    """A backup file that cannot be used; nothing was restored from it."""

    RESTORE_ADVICE = "nothing was restored (use another backup, or make a new one with 'sessionshift backup')"

    def __init__(self, path: str, reason: str, advice: str = RESTORE_ADVICE):
        self.path = path
        self.reason = reason
        super().__init__(f"backup {path}: {reason}; {advice}")


# --------------------------------------------------------------------------- backup


@dataclasses.dataclass
class BackupResult:
    path: str
    manifest: dict[str, Any]
    created: bool  # False: a backup already existed at path and was kept (or a dry run)


def create_backup(client: RedisClient, layout: KeyLayout, dest: str, *, source: str = "",
                  batch_size: int = DEFAULT_BATCH, overwrite: bool = False, dry_run: bool = False,
                  progress: ProgressCallback | None = None) -> BackupResult:
    """Back up every session key under *layout* to *dest* (atomically, mode 0600).

    An existing backup at *dest* is verified and kept unless *overwrite* (so
    that a playbook re-run does not replace the backup taken before the
    rollback); anything else at *dest* is an error.
    A dry run counts the keys and writes nothing.
    """
    if os.path.exists(dest) and not overwrite:
        try:
            # Verified in full: a kept backup must be one that can be restored.
            return BackupResult(dest, verify_backup(dest), created=False)
        except BackupError as exc:
            raise BackupError(dest, f"exists and is not a usable backup ({exc.reason})",
                              "nothing was written: choose another destination, or overwrite it "
                              "(force=true / --force)") from None
    if dry_run:
        counts = dict.fromkeys(KINDS, 0)
        for node, keys in scan_batches(client, layout.all_pattern, batch_size):
            parsed = [(key, kind.kind) for key in keys if (kind := layout.parse(key)) is not None]
            hashed = [key for key, kind in parsed if kind == "hashed"]
            counts["stock"] += len(parsed) - len(hashed)
            tombstones = sum(holds_tombstone(node, hashed))
            counts["tombstone"] += tombstones
            counts["hashed"] += len(hashed) - tombstones
        return BackupResult(dest, _manifest(layout, source, counts, ""), created=False)
    directory = os.path.dirname(os.path.abspath(dest))
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"backup directory {directory} does not exist")
    # mkstemp files are 0600 from the start: live sessions are never readable by others.
    payload_fd, payload_tmp = tempfile.mkstemp(prefix=".payload.", suffix=".tmp", dir=directory)
    # A write after this may or may not be in the backup (the ledger counts from here), so
    # milliseconds: a write acknowledged just before it must not count as after it.
    started = datetime.datetime.now(datetime.UTC).isoformat(timespec="milliseconds")
    try:
        digest = hashlib.sha256()
        counts = dict.fromkeys(KINDS, 0)
        with os.fdopen(payload_fd, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as payload:
            for line, kind in _backup_lines(client, layout, batch_size, progress):
                digest.update(line)
                payload.write(line)
                counts[kind] += 1
        manifest = _manifest(layout, source, counts, digest.hexdigest()) | {"started_at": started}

        def write(out) -> None:
            with gzip.GzipFile(fileobj=out, mode="wb", mtime=0) as head:
                head.write(json.dumps(manifest, sort_keys=True).encode() + b"\n")
            with open(payload_tmp, "rb") as payload_in:
                shutil.copyfileobj(payload_in, out)  # a second gzip member: read as one stream

        write_atomic(dest, write, mode=0o600, durable=True)
    finally:
        with contextlib.suppress(OSError):
            os.unlink(payload_tmp)
    return BackupResult(dest, manifest, created=True)


def _manifest(layout: KeyLayout, source: str, counts: dict[str, int], sha256: str) -> dict[str, Any]:
    return {"format": FORMAT_NAME, "version": FORMAT_VERSION, "created_at": state.utc_now(),
            "source": source, "key_prefix": layout.prefix, "hash_method": layout.hash_name,
            "generation": layout.generation, "counts": counts, "keys": sum(counts.values()),
            "payload_sha256": sha256}


def _backup_lines(client: RedisClient, layout: KeyLayout, batch_size: int,
                  progress: ProgressCallback | None) -> Iterator[tuple[bytes, str]]:
    started, seen = time.monotonic(), 0
    options.at_least("batch_size", batch_size, 1)
    # Stock keys of a generation that never moved sessions there predate the last return to
    # file (KeyLayout.stock_moved_key): restored, they could bring back a logged-out session.
    stock_current = stock_keys_current(client, layout)
    for node, keys in scan_batches(client, layout.all_pattern, batch_size):
        parsed = [(key.decode(), kind.kind) for key in keys
                  if (kind := layout.parse(key)) and (kind.kind != "stock" or stock_current)]
        fetched = fetch_with_expiry(node, [key for key, _kind in parsed], millis=True,
                                    scripted=not is_cluster(client))
        for (key, kind), (value, expiry) in zip(parsed, fetched, strict=True):
            if not isinstance(value, bytes) or expiry == -2:
                continue  # gone since SCAN, or not a string: not a session
            if kind == "hashed" and is_tombstone(value):
                kind = "tombstone"
            entry = {"k": key, "t": kind, "v": base64.b64encode(value).decode("ascii"), "x": expiry}
            yield json.dumps(entry, separators=(",", ":")).encode() + b"\n", kind
        seen += len(keys)
        if progress is not None:
            progress(Progress("backup", seen, None, {}, time.monotonic() - started))


# --------------------------------------------------------------------------- reading


def read_manifest(path: str) -> dict[str, Any]:
    """The manifest (first line) of a backup; BackupError if it is not one."""
    try:
        with gzip.open(path, "rb") as stream:
            return _parse_manifest(path, stream.readline())
    except FileNotFoundError:
        raise BackupError(path, "no such file") from None
    except (OSError, EOFError, zlib.error) as exc:
        raise BackupError(path, f"not a readable gzip file ({exc})") from None


def _parse_manifest(path: str, line: bytes) -> dict[str, Any]:
    try:
        manifest = json.loads(line)
    except (UnicodeDecodeError, json.JSONDecodeError):
        manifest = None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT_NAME:
        raise BackupError(path, f"not a {FORMAT_NAME} file (its first line is not the manifest)")
    if manifest.get("version") != FORMAT_VERSION:
        raise BackupError(path, f"format version {manifest.get('version')!r}; this sessionshift "
                          f"reads version {FORMAT_VERSION}")
    return manifest


def verify_backup(path: str) -> dict[str, Any]:
    """Read the whole backup, check its checksum, key count and every entry; returns the manifest.

    A restore calls this first, so a damaged backup is refused before one key is written.
    """
    digest, lines = hashlib.sha256(), 0
    try:
        with gzip.open(path, "rb") as stream:
            manifest = _parse_manifest(path, stream.readline())
            layout = _layout(path, manifest)
            for number, line in enumerate(stream, start=2):
                digest.update(line)
                key, kind, _value, _expiry = _parse_entry(path, number, line, layout)
                parsed = layout.parse(key)
                if parsed is None or parsed.kind != ("hashed" if kind == "tombstone" else kind):
                    raise BackupError(path, f"line {number}: not a {kind} key of prefix {layout.prefix!r}")
                lines += 1
    except FileNotFoundError:
        raise BackupError(path, "no such file") from None
    except (OSError, EOFError, zlib.error) as exc:
        raise BackupError(path, f"corrupt or truncated ({exc})") from None
    if digest.hexdigest() != manifest.get("payload_sha256"):
        raise BackupError(path, "checksum mismatch: the payload is not what was backed up")
    if lines != manifest.get("keys"):
        raise BackupError(path, f"{lines} entries, the manifest says {manifest.get('keys')}")
    return manifest


def _layout(path: str, manifest: dict[str, Any]) -> KeyLayout:
    prefix, hash_name = manifest.get("key_prefix"), manifest.get("hash_method")
    if not isinstance(prefix, str) or hash_name not in ("md5", "sha256"):
        raise BackupError(path, "the manifest names no key prefix / hash method")
    generation = manifest.get("generation", 0)
    if not isinstance(generation, int) or generation < 0:
        raise BackupError(path, f"the manifest's generation {generation!r} is not an integer >= 0")
    return KeyLayout(prefix=prefix, hash_name=hash_name, generation=generation)


def _parse_entry(path: str, number: int, line: bytes, layout: KeyLayout) -> tuple[str, str, bytes, int]:
    """(key, kind, value, pexpiretime) of one payload line; a tombstone as its session key and
    :data:`~sessionshift.keys.TOMBSTONE`, whatever release wrote the backup."""
    try:
        entry = json.loads(line)
        key, kind, expiry = entry["k"], entry["t"], int(entry["x"])
        value = base64.b64decode(entry["v"], validate=True)
    except (ValueError, KeyError, TypeError, binascii.Error) as exc:
        raise BackupError(path, f"line {number}: bad entry ({type(exc).__name__})") from None
    if kind not in KINDS or not isinstance(key, str):
        raise BackupError(path, f"line {number}: not a session entry")
    if kind == "tombstone":
        legacy = layout.legacy_tombstone_file(key)
        if legacy is not None:
            key, value = layout.session_key(legacy), TOMBSTONE
        elif not is_tombstone(value):
            raise BackupError(path, f"line {number}: a tombstone entry whose value is not the tombstone")
    return key, kind, value, expiry


def _entries(path: str, layout: KeyLayout) -> Iterator[tuple[str, str, bytes, int]]:
    """The entries of a backup that verify_backup has accepted."""
    with gzip.open(path, "rb") as stream:
        stream.readline()
        for number, line in enumerate(stream, start=2):
            yield _parse_entry(path, number, line, layout)


# --------------------------------------------------------------------------- restore


@dataclasses.dataclass
class RestoreResult:
    path: str
    dry_run: bool = False
    restored: dict[str, int] = dataclasses.field(default_factory=lambda: dict.fromkeys(KINDS, 0))
    kept_existing: int = 0  # a key written since the backup: left alone
    kept_logged_out: int = 0  # a tombstone keeps the session out
    expired: int = 0
    manifest: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def restored_total(self) -> int:
        return sum(self.restored.values())

    @property
    def changed(self) -> bool:
        return self.restored_total > 0

    def as_dict(self) -> dict[str, Any]:
        result = dataclasses.asdict(self)
        result.update(restored_total=self.restored_total, changed=self.changed)
        return result


def restore_backup(client: RedisClient, src: str, *, batch_size: int = DEFAULT_BATCH,
                   dry_run: bool = False, progress: ProgressCallback | None = None) -> RestoreResult:
    """Put a backup back without overwriting anything newer; verifies the checksum first."""
    options.at_least("batch_size", batch_size, 1)
    manifest = verify_backup(src)
    store = SessionStore(client, _layout(src, manifest))
    result = RestoreResult(src, dry_run=dry_run, manifest=manifest)
    if (manifest.get("counts") or {}).get("stock") and store.layout.generation and not dry_run:
        # The backup holds stock keys only when their generation had moved sessions there:
        # the marker comes back first, or the restored stock keys would never be read.
        store.mark_stock_moved()
    started, done = time.monotonic(), 0
    entries = _entries(src, store.layout)
    while True:
        batch = list(itertools.islice(entries, batch_size))
        if not batch:
            return result
        _restore_batch(store, batch, result, dry_run)
        done += len(batch)
        if progress is not None:
            counts = {"restored": result.restored_total, "kept": result.kept_existing}
            progress(Progress("restore", done, manifest.get("keys"), counts, time.monotonic() - started))


def _restore_batch(store: SessionStore, batch: list[tuple[str, str, bytes, int]],
                   result: RestoreResult, dry_run: bool) -> None:
    now_ms = int(time.time() * 1000)
    live = []
    for entry in batch:
        if entry[3] and entry[3] <= now_ms:
            result.expired += 1
        else:
            live.append(entry)
    sessions = [entry for entry in live if entry[1] == "hashed"]
    others = [entry for entry in live if entry[1] != "hashed"]
    if dry_run:
        _count_would_restore(store, live, result)
        return
    if sessions:
        items = [(store.layout.parse(key).file_name, value, -(-expiry // 1000))  # round up to seconds
                 for key, _kind, value, expiry in sessions]
        for (_key, kind, _value, _expiry), outcome in zip(sessions, store.copy_many_if_absent(items),
                                                          strict=True):
            _count(result, kind, outcome)
    if others:
        outcomes = store.copy_keys_if_absent([(key, value, expiry) for key, _kind, value, expiry in others])
        for (_key, kind, _value, _expiry), outcome in zip(others, outcomes, strict=True):
            _count(result, kind, outcome)


def _count(result: RestoreResult, kind: str, outcome: CopyResult) -> None:
    if outcome is CopyResult.WRITTEN:
        result.restored[kind] += 1
    elif outcome is CopyResult.EXISTS:
        result.kept_existing += 1
    elif outcome is CopyResult.TOMBSTONED:
        result.kept_logged_out += 1
    else:
        result.expired += 1


def _count_would_restore(store: SessionStore, live: list[tuple[str, str, bytes, int]],
                         result: RestoreResult) -> None:
    """What a restore would do (a dry run writes nothing)."""
    outcomes = store.would_copy([(key, kind == "hashed") for key, kind, _value, _expiry in live])
    for (_key, kind, _value, _expiry), outcome in zip(live, outcomes, strict=True):
        _count(result, kind, outcome)


# --------------------------------------------------------------------------- files from a backup


def files_from_backup(src: str, session_dir: str, *, state_dir: str | None = None,
                      serializer: str | None = None, header_style: str | None = None,
                      protocol: int | None = None, mode: int = 0o600, now: float | None = None,
                      record: bool = True):
    """The emergency way back from phase 4 or 5 when Redis is gone: the files as the backup had them.

    Needs no Redis. Each backed-up session is written to its file unless the file changed
    after the backup was taken (phase 4's emergency file fallback wrote it: newer, kept); a
    backed-up tombstone removes the file of that session when the file is older than the
    backup; expired entries are skipped. What was written to Redis alone after the backup is
    lost: that is the price, and the result counts it from this host's ledger
    (``sessionshift.ledger``, written by the app in phases 4 and 5 with no Redis needed):
    sessions created after the backup started (lost), sessions written after it (back at the
    backup's value), and logouts after it, which are applied (their files removed) so that the
    backup does not log those users in again. The result is recorded in
    ``state_dir/export.json`` (``source: backup``), so the host may then step back to
    redis_read, dual_write and file, none of which needs Redis.
    """
    from .export import Exporter, FileOwner, _Job, _remove, record_export
    from .profile import resolve

    manifest = verify_backup(src)
    layout = _layout(src, manifest)
    taken = _parse_time(manifest.get("created_at"))
    settings = resolve(state_dir, session_dir, {"serializer": serializer, "header_style": header_style,
                                                "pickle_protocol": protocol},
                       needs=("serializer", "header_style", "pickle_protocol"))
    exporter = Exporter(None, layout, session_dir, serializer=settings.serializer,
                        header_style=settings.header_style, protocol=settings.pickle_protocol,
                        owner=FileOwner.of_directory(session_dir, mode))
    result = exporter.result
    result.started_at = state.utc_now()
    now = time.time() if now is None else now
    since, newer = None, set()
    started = _parse_time(manifest.get("started_at") or manifest.get("created_at"))  # older backups: end
    if state_dir:
        from .ledger import read_since

        # Read before any file is written: a file changed after its session's mark was written
        # by the emergency file fallback (newer than what Redis lost), not by this restore.
        since = read_since(state_dir, started)
        newer = {name for name, (_op, when) in since.last.items()
                 if _changed_since(os.path.join(session_dir, name), when)}
    backed_up: set[str] = set()
    for key, kind, value, pexpiretime in _entries(src, layout):
        parsed = layout.parse(key)
        path = os.path.join(session_dir, parsed.file_name)
        result.scanned += 1
        if _changed_since(path, taken):
            result.unchanged += 1  # written after the backup (emergency fallback): newer, kept
            continue
        if kind == "tombstone":
            if _remove(path):
                result.removed += 1
                result.removed_files.append(parsed.file_name)
            continue
        expiry = -(-pexpiretime // 1000) if pexpiretime else 0
        if expiry and expiry <= now:
            result.expired += 1
            continue
        backed_up.add(parsed.file_name)
        exporter._write(_Job(key, parsed.file_name, stock=kind == "stock"), value, expiry)
    if since is not None:
        result.after_backup = _count_after_backup(since, started, session_dir, newer, backed_up, result)
    result.finished_at = state.utc_now()
    result.source = f"backup taken {manifest.get('created_at')}"
    if state_dir and record:
        record_export(state_dir, result, layout)
    return result


def loss_summary(after: dict[str, Any] | None) -> str:
    """One line for the operator: what the files from a backup could not bring back."""
    if after is None:
        return "sessions written to Redis after the backup are lost (not counted: no state directory)"
    if not after["ledger"]:
        return (f"this host has no ledger of phase-4/5 writes, so what Redis acknowledged after "
                f"{after['since']} is lost and NOT counted")
    return (f"since the backup started ({after['since']}): {after['lost_sessions']} session(s) created "
            f"then are lost (their users log in again), {after['older_sessions']} session(s) written "
            f"then are back at the backup's value, {after['logouts_kept']} logout(s) kept")


def _count_after_backup(since, started: float, session_dir: str, newer: set[str], backed_up: set[str],
                        result) -> dict[str, Any]:
    """What Redis acknowledged after the backup started, from this host's ledger: counted, and
    the logouts applied. A file written after the ledger's mark (*newer*: the emergency file
    fallback) holds more than what Redis lost, so it is neither counted nor touched."""
    from .export import _remove
    from .ledger import LOGOUT

    counts = {"since": datetime.datetime.fromtimestamp(started, datetime.UTC).isoformat(timespec="seconds"),
              "ledger": since.present, "lost_sessions": 0,
              "older_sessions": 0, "logouts_kept": 0}
    for file_name, (op, _when) in sorted(since.last.items()):
        path = os.path.join(session_dir, file_name)
        if file_name in newer:
            continue
        if op == LOGOUT:
            counts["logouts_kept"] += 1
            if _remove(path):
                result.removed += 1
                result.removed_files.append(file_name)
        elif file_name in backed_up:
            counts["older_sessions"] += 1
        else:
            counts["lost_sessions"] += 1
    return counts


def _parse_time(text: Any) -> float:
    try:
        return datetime.datetime.fromisoformat(str(text)).timestamp()
    except ValueError:
        return 0.0  # unknown: every file counts as older, so the backup wins


def _changed_since(path: str, taken: float) -> bool:
    try:
        return os.stat(path).st_mtime > taken + 1  # created_at has whole seconds
    except FileNotFoundError:
        return False

