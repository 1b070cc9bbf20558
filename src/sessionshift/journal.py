"""The local journal of Redis writes that failed (``state_dir/journal/``).

One small file per session, named after the session's cachelib file name, so a
session journaled ten times is replayed once. The entry does not carry the
value: in the phases that journal (2 and 3, and 4 in emergency file fallback)
the session FILE is written first and is the newest copy, so a replay reads
the file as it is now and writes that to Redis (or deletes the Redis key if the
file is gone: a logout or an expiry). That way a replay can never write an
older value than the one the app last saved.

Races the replay handles:

* the app saves again while a replay runs: the entry is first renamed to a
  claim (atomic), so a new failure journals under the original name and is
  replayed next time; after writing Redis the replay re-stats the file and
  replays again if the file changed under it;
* several gunicorn workers replay at once: each claim rename succeeds for one
  of them only.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import time

from redis.exceptions import RedisError

from . import formats, state
from .formats import HashName, SerializerName
from .keys import KeyLayout
from .phasefile import read_phase
from .phases import SPECS
from .profile import resolve
from .redisconn import RedisSettings, client_from_settings
from .store import ReplicationShortfall, SessionStore

_CLAIM_SUFFIX = ".replaying"


@dataclasses.dataclass
class ReplayResult:
    replayed: int = 0
    deleted: int = 0
    failed: int = 0
    skipped: int = 0
    remaining: int = 0
    redis_error: bool = False  # stopped early: Redis is still away (not merely a lagging replica)
    errors: list[str] = dataclasses.field(default_factory=list)

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


class Journal:
    """Failed Redis writes of one host, keyed by session file name."""

    def __init__(self, state_dir: str, session_dir: str):
        self.directory = os.path.join(state_dir, state.JOURNAL_DIR)
        self.session_dir = session_dir
        os.makedirs(self.directory, exist_ok=True)

    def _path(self, file_name: str) -> str:
        if formats.detect_hash(file_name) is None:
            raise ValueError(f"not a session file name: {file_name!r}")
        return os.path.join(self.directory, file_name)

    def record(self, file_name: str, operation: str, phase: str, error: str) -> None:
        """Remember that *file_name*'s Redis copy must be brought up to date."""
        entry = {"op": operation, "phase": phase, "at": state.utc_now(), "error": error[:300]}
        state.write_json(self._path(file_name), entry, mode=0o600)

    def pending(self, file_name: str) -> bool:
        """Whether Redis may be older than the file: an entry waits, or a replay of it is running."""
        path = os.path.join(self.directory, file_name)
        return os.path.exists(path) or os.path.exists(path + _CLAIM_SUFFIX)

    def being_replayed(self, file_name: str) -> bool:
        return os.path.exists(os.path.join(self.directory, file_name + _CLAIM_SUFFIX))

    def depth(self) -> int:
        """Entries waiting (claims of a replay in progress included)."""
        try:
            with os.scandir(self.directory) as entries:
                return sum(1 for entry in entries if not entry.name.startswith("."))
        except FileNotFoundError:
            return 0

    def names(self) -> list[str]:
        try:
            return [n for n in os.listdir(self.directory)
                    if not n.startswith(".") and formats.detect_hash(n.removesuffix(_CLAIM_SUFFIX))]
        except FileNotFoundError:
            return []

    # -- replay -----------------------------------------------------------------------
    def replay(self, store: SessionStore, *, serializer: SerializerName = formats.DEFAULT_SERIALIZER,
               protocol: int | None = None, remove_file_after: bool = False, limit: int | None = None,
               only: str | None = None) -> ReplayResult:
        """Bring Redis up to date for every journaled session (or only *only*).

        ``remove_file_after`` (phase 4 and later): once Redis holds the session,
        its file is an emergency copy that must not be served again, so remove it.
        Stops at the first Redis error (Redis is still away); the
        remaining entries stay for the next replay.
        """
        result = ReplayResult()
        names = [only] if only else self.names()
        for name in names[:limit] if limit else names:
            file_name = name.removesuffix(_CLAIM_SUFFIX)
            claim = os.path.join(self.directory, f"{file_name}{_CLAIM_SUFFIX}")
            if not name.endswith(_CLAIM_SUFFIX):
                try:
                    os.rename(os.path.join(self.directory, name), claim)
                    os.utime(claim)  # the claim's age is the replay's, not the entry's
                except FileNotFoundError:
                    result.skipped += 1  # another worker claimed it
                    continue
            elif time.time() - _mtime(claim) < 60:
                result.skipped += 1  # a live replay in another worker owns it
                continue
            try:
                outcome = self._replay_one(store, file_name, formats.value_format(serializer, protocol),
                                           remove_file_after)
            except RedisError as exc:
                self._unclaim(claim, file_name)
                result.failed += 1
                # A replica that lags leaves Redis answering: only a failure of Redis itself
                # makes the caller stop asking it for a while.
                result.redis_error = not isinstance(exc, ReplicationShortfall)
                result.errors.append(f"{file_name}: {type(exc).__name__}: {exc}")
                break
            except formats.SessionValueError as exc:
                # The file holds what Redis cannot (not msgpack-encodable): drop the older
                # Redis copy so that readers fall back to the file.
                store.drop_hashed(file_name)
                result.failed += 1
                result.errors.append(f"{file_name}: {exc}")
                _discard(claim)
                continue
            except formats.SessionFileError as exc:
                # A corrupt or hostile file: nothing sensible to copy; report it
                # and drop the entry (the file itself is left for the operator).
                result.failed += 1
                result.errors.append(str(exc))
                _discard(claim)
                continue
            _discard(claim)
            if outcome == "deleted":
                result.deleted += 1
            else:
                result.replayed += 1
        result.remaining = self.depth()
        return result

    def _unclaim(self, claim: str, file_name: str) -> None:
        # Give the entry back unless a newer failure journaled it again meanwhile.
        target = os.path.join(self.directory, file_name)
        if os.path.exists(target):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(claim)
        else:
            with contextlib.suppress(FileNotFoundError):
                os.rename(claim, target)

    def _replay_one(self, store: SessionStore, file_name: str, value_format: formats.ValueFormat,
                    remove_file_after: bool) -> str:
        path = os.path.join(self.session_dir, file_name)
        for _attempt in range(5):
            before = _signature(path)
            session = formats.read_live_file(path)
            if session is None:
                store.app_delete(file_name)
                outcome = "deleted"
            else:
                store.app_write(file_name, value_format.dumps(session.data), session.expiry)
                outcome = "written"
            if _signature(path) == before:
                break  # the file did not change while we copied it
        if remove_file_after and outcome == "written":
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
        return outcome


def replay_host(state_dir: str, session_dir: str, redis: RedisSettings | dict, *,
                key_prefix: str = formats.DEFAULT_PREFIX, hash_name: HashName = "sha256",
                serializer: SerializerName | None = None, client=None) -> ReplayResult:
    """Replay one host's journal now (for the CLI, the modules and the playbooks).

    In phase 4 and later the replayed files are emergency copies and are removed.
    The value format and pickle protocol are the source profile's (*serializer*,
    if given, must agree with it).
    """
    settled = resolve(state_dir, session_dir, {"serializer": serializer}, needs=("serializer",))
    settings = redis if isinstance(redis, RedisSettings) else RedisSettings.from_mapping(redis)
    record = read_phase(state_dir)
    store = SessionStore(client or client_from_settings(settings),
                         KeyLayout(key_prefix, hash_name, record.generation))
    phase = record.phase
    return Journal(state_dir, session_dir).replay(store, serializer=settled.serializer,
                                                  protocol=settled.pickle_protocol,
                                                  remove_file_after=not SPECS[phase].writes_file)


def _discard(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def _signature(path: str) -> tuple | None:
    try:
        stat = os.stat(path)
    except FileNotFoundError:
        return None
    return (stat.st_ino, stat.st_size, stat.st_mtime_ns)


def _mtime(path: str) -> float:
    try:
        return os.stat(path).st_mtime
    except FileNotFoundError:
        return time.time()


def load_entry(path: str) -> dict | None:
    """A journal entry's JSON (for status tools); None if it vanished."""
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except FileNotFoundError:
        return None
