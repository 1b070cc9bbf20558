"""The session operations on Redis that races depend on, each one atomic.

Every writer goes through here: the Flask interface (app writes, logouts,
promotions of file sessions), the backfill, the export and the restore. The
race rules (docs/architecture.md, "The race rules live in one file") live in
these few functions:

* the app's own write always wins, over a tombstone too (``app_write``, a plain
  ``SET``);
* a logout replaces the session with a short-lived tombstone, the marker
  ``keys.TOMBSTONE`` in the session key itself (``app_delete``, ``SET ... EX``);
* a copy made by a tool or by a read promotion never overwrites an existing key
  and so never revives a tombstoned session (``copy_if_absent``: a native
  ``SET NX``, which the marker refuses as it refuses a session; no script, one
  key, any slot). Whether a refused copy met a session or a tombstone is read
  afterwards, only for the refused ones, and only to count it;
* ``wait_replicas`` makes an app write wait for that many replicas (Redis
  ``WAIT``, sent on the write's own connection), and a write no replica
  confirmed in time fails (:class:`ReplicationShortfall`): a failover right
  after it could lose it, so the caller must not call it saved.
"""

from __future__ import annotations

import dataclasses
import enum
import time
from collections.abc import Callable

import redis.cluster
from redis.exceptions import RedisError, ResponseError

from .errors import SessionshiftError
from .keys import TAG_END, TOMBSTONE, KeyLayout, is_tombstone
from .redisconn import RedisClient, lines_started

DEFAULT_TOMBSTONE_TTL = 3600  # longer than any backfill or export pass takes
NO_REPLICA_RECHECK = 1.0  # seconds a primary with no replica is believed to have none


class ReplicationShortfall(SessionshiftError, RedisError):
    """Fewer connected replicas confirmed a write than ``wait_replicas`` asks for, within the timeout.

    The primary has the write; a failover now could lose it.
    """


# KEYS = the keys. The reply: the server's clock in ms, then each key's PTTL (-1 none,
# -2 missing). EXPIRETIME/PEXPIRETIME exist only from Redis 7.0 and the role provisions
# 6.2; TIME and PTTL read in one script give the same absolute expiry (TIME first: in
# Redis 7 a script's PTTL counts from the script's start).
EXPIRY_SCRIPT = """
local t = redis.call('TIME')
local out = {tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)}
for i, key in ipairs(KEYS) do out[i + 1] = redis.call('PTTL', key) end
return out
"""


def absolute_expiry(now_ms: int, pttl: int, *, millis: bool = False) -> int:
    """A key's expiry as PEXPIRETIME (*millis*) or EXPIRETIME would give it, but 0 for none.

    -2 = missing. Seconds round to the nearest, as EXPIRETIME does, so a key
    set with ``EXAT n`` reads back as ``n``.
    """
    if pttl < 0:
        return 0 if pttl == -1 else -2
    at = now_ms + pttl
    return at if millis else (at + 500) // 1000


class CopyResult(enum.Enum):
    WRITTEN = "written"
    EXISTS = "exists"  # a (newer) value is already there: left alone
    TOMBSTONED = "tombstoned"  # the user logged out: not revived
    EXPIRED = "expired"  # expiry in the past: nothing written


# The replies of a batch of SET NX: each is +OK (written) or a nil (not written: the key
# holds a session or a tombstone), $-1 in RESP2 and _ in RESP3.
_WRITTEN_LINE = b"+OK"
_NOT_WRITTEN_LINES = (b"$-1", b"_")


def stock_keys_current(client: RedisClient, layout: KeyLayout) -> bool:
    """Whether stock keys belong to *layout*'s generation, so may be read, moved back, exported.

    Generation 0 has never been retired (a return to ``file`` moves the next use to 1 or
    more), so its stock keys are current: an app adopted straight into phase 5, or a first
    rollout. In a later generation only the marker its first phase-5 move set says so (see
    KeyLayout.stock_moved_key); without it every stock key predates the return to ``file``.
    """
    return layout.generation == 0 or bool(client.exists(layout.stock_moved_key))


def holds_tombstone(client: RedisClient, keys: list[str]) -> list[bool]:
    """Whether each session key holds the logout tombstone, from its first bytes (GETRANGE of
    the marker's length), not its whole value: one pipeline (split per node in a cluster)."""
    if not keys:
        return []
    with client.pipeline(transaction=False) as pipe:
        for key in keys:
            pipe.getrange(key, 0, len(TOMBSTONE) - 1)
        return [is_tombstone(head) for head in pipe.execute()]


@dataclasses.dataclass
class SessionStore:
    """Session reads and writes for one key layout on one Redis (standalone or cluster)."""

    client: RedisClient
    layout: KeyLayout = dataclasses.field(default_factory=KeyLayout)
    tombstone_ttl: int = DEFAULT_TOMBSTONE_TTL
    wait_replicas: int = 0
    wait_timeout_ms: int = 100

    def __post_init__(self) -> None:
        self._no_replica_until = 0.0
        self._stock_moved = False
        self._expiry_script = self.client.register_script(EXPIRY_SCRIPT)

    # -- reads -------------------------------------------------------------------------
    def get(self, file_name: str) -> bytes | None:
        """The session's value; None when there is none, or the user logged out (a tombstone)."""
        value = self.client.get(self.layout.session_key(file_name))
        return None if is_tombstone(value) else value

    def expiry_of(self, key: str) -> int:
        """The expiry of *key* in epoch seconds (as EXPIRETIME), 0 for no expiry, -2 if missing."""
        now_ms, pttl = self._expiry_script(keys=[key])
        return absolute_expiry(now_ms, pttl)

    # -- the app's writes ----------------------------------------------------------------
    def app_write(self, file_name: str, value: bytes, expiry: int) -> None:
        """The app saved the session: its value wins over everything, a tombstone too."""
        self._set_and_wait(self.layout.session_key(file_name), value, exat=expiry or None)

    def app_delete(self, file_name: str) -> None:
        """The user logged out: the session key holds the tombstone until *tombstone_ttl* ends."""
        self._set_and_wait(self.layout.session_key(file_name), TOMBSTONE, ex=self.tombstone_ttl)

    def _set_and_wait(self, key: str, value: bytes, **expiry) -> None:
        """One native SET, then (with ``wait_replicas``) WAIT on the same connection: WAIT counts
        the writes of its own connection (and inside MULTI it does not wait at all)."""
        waiting = self._should_wait()
        if not waiting:
            self.client.set(key, value, **expiry)
            return
        if isinstance(self.client, redis.cluster.RedisCluster):
            # Routed by slot (MOVED is followed). redis-py cannot pin a cluster connection,
            # so WAIT goes through the node's pool, which hands a single-threaded worker
            # the connection it just released.
            self.client.set(key, value, **expiry)
            confirmed = self._node_client(key).wait(self.wait_replicas, self.wait_timeout_ms)
        else:
            with self.client.pipeline(transaction=False) as pipe:  # one connection, one round trip
                pipe.set(key, value, **expiry)
                pipe.wait(self.wait_replicas, self.wait_timeout_ms)
                confirmed = pipe.execute()[-1]
        self._check_confirmed(confirmed, key)

    def _should_wait(self) -> bool:
        if not self.wait_replicas:
            return False
        if not self._no_replica_until:
            return True
        # After a failover the new primary has no replica yet, and WAIT would only time
        # out: ask INFO (no waiting) now and then whether one has joined.
        now = time.monotonic()
        if now < self._no_replica_until:
            return False
        if isinstance(self.client, redis.cluster.RedisCluster):
            return True  # which node's replicas? the next WAIT (on the key's node) tells
        if self._connected_replicas(self.client) == 0:
            self._no_replica_until = now + NO_REPLICA_RECHECK
            return False
        self._no_replica_until = 0.0
        return True

    @staticmethod
    def _connected_replicas(node) -> int:
        return int(node.info("replication").get("connected_slaves", 0))

    def _check_confirmed(self, confirmed: int, key: str) -> None:
        if confirmed >= self.wait_replicas:
            return
        # Fewer than asked: short of replicas, or replicas that lag? Asked only now, off the fast path.
        connected = self._connected_replicas(self._node_client(key))
        if connected == 0:
            self._no_replica_until = time.monotonic() + NO_REPLICA_RECHECK
            return  # nothing a failover could promote, so nothing it could lose
        if confirmed < min(self.wait_replicas, connected):
            raise ReplicationShortfall(
                f"write confirmed by {confirmed} of {min(self.wait_replicas, connected)} connected "
                f"replica(s) within {self.wait_timeout_ms} ms (WAIT): a failover now could lose it")

    # -- copies (backfill, promotion, restore) ------------------------------------------------
    def copy_if_absent(self, file_name: str, value: bytes, expiry: int,
                       now: float | None = None) -> CopyResult:
        if expiry and expiry <= (time.time() if now is None else now):
            return CopyResult.EXPIRED
        key = self.layout.session_key(file_name)
        if self.client.set(key, value, nx=True, exat=expiry or None):
            return CopyResult.WRITTEN
        return self._refused([key])[0]

    def _refused(self, keys: list[str]) -> list[CopyResult]:
        """Why a SET NX left each key alone: a tombstone (logged out) or a session. Counting
        only: the SET NX itself was the atomic decision. A key gone since counts as a session
        (it was one, or the copy would have been written)."""
        return [CopyResult.TOMBSTONED if tombstoned else CopyResult.EXISTS
                for tombstoned in holds_tombstone(self.client, keys)]

    def _mark_refused(self, refused: dict[int, str], results: list[CopyResult]) -> None:
        """``results[index]`` for each refused copy's ``{index: key}``: tombstoned or exists."""
        if refused:
            for index, outcome in zip(refused, self._refused(list(refused.values())), strict=True):
                results[index] = outcome

    def copy_many_if_absent(self, items: list[tuple[str, bytes, int]],
                            now: float | None = None) -> list[CopyResult]:
        """``copy_if_absent`` for a batch, pipelined (one round trip per batch, and one more for
        the copies refused, to tell a tombstone from a session)."""
        now = time.time() if now is None else now
        if not isinstance(self.client, redis.cluster.RedisCluster):
            return self._copy_batch_standalone(items, now)()
        results: list[CopyResult] = [CopyResult.EXPIRED] * len(items)
        live = [index for index, (_name, _value, expiry) in enumerate(items) if not expiry or expiry > now]
        # Each command has one key: the cluster pipeline sends each to its slot's primary.
        with self.client.pipeline(transaction=False) as pipe:
            for index in live:
                file_name, value, expiry = items[index]
                pipe.set(self.layout.session_key(file_name), value, nx=True, exat=expiry or None)
            done = pipe.execute()
        for index in live:
            results[index] = CopyResult.WRITTEN
        self._mark_refused({index: self.layout.session_key(items[index][0])
                            for index, written in zip(live, done, strict=True) if not written}, results)
        return results

    def start_copy_many_if_absent(self, items: list[tuple[str, bytes, int]],
                                  now: float | None = None) -> Callable[[], list[CopyResult]]:
        """``copy_many_if_absent`` begun now; the returned call gives its outcomes.

        On a standalone Redis the batch's commands are sent at once and their replies
        read by the returned call, so the caller can read the next batch's files while
        Redis runs them (the backfill). A cluster's batch is copied at once.
        """
        now = time.time() if now is None else now
        if isinstance(self.client, redis.cluster.RedisCluster):
            results = self.copy_many_if_absent(items, now)
            return lambda: results
        return self._copy_batch_standalone(items, now)

    def _copy_batch_standalone(self, items: list[tuple[str, bytes, int]],
                               now: float) -> Callable[[], list[CopyResult]]:
        """The batch as pipelined ``SET key value NX [EXAT t]`` commands, sent; the returned call
        reads the outcomes."""
        results: list[CopyResult] = [CopyResult.EXPIRED] * len(items)
        live: list[int] = []
        # The requests in the Redis protocol, written here: a generic packer costs more per
        # argument than reading a session file. Each key is the layout's head, the file name
        # and the tag's end.
        head = self.layout.session_head.encode()
        end = TAG_END.encode()
        key_size = len(head) + len(end)
        commands: list[bytes] = []
        for index, (file_name, value, expiry) in enumerate(items):
            if expiry and expiry <= now:
                continue
            live.append(index)
            name = file_name.encode()
            if expiry:
                at = b"%d" % expiry
                commands.append(b"*6\r\n$3\r\nSET\r\n$%d\r\n%s%s%s\r\n$%d\r\n%s\r\n$2\r\nNX\r\n"
                                b"$4\r\nEXAT\r\n$%d\r\n%s\r\n" % (
                                    key_size + len(name), head, name, end, len(value), value, len(at), at))
            else:
                commands.append(b"*4\r\n$3\r\nSET\r\n$%d\r\n%s%s%s\r\n$%d\r\n%s\r\n$2\r\nNX\r\n" % (
                    key_size + len(name), head, name, end, len(value), value))
        if not live:
            return lambda: results
        reply = lines_started(self.client, b"".join(commands), len(live))

        def outcomes() -> list[CopyResult]:
            replies = reply()
            for index in live:
                results[index] = CopyResult.WRITTEN
            if replies != b"+OK\r\n" * len(live):  # the backfill's usual case: every copy written
                lines = replies.split(b"\r\n")
                refused = {}
                for index, line in zip(live, lines, strict=False):
                    if line in _NOT_WRITTEN_LINES:
                        refused[index] = self.layout.session_key(items[index][0])
                    elif line != _WRITTEN_LINE:
                        raise ResponseError(f"SET NX of a batch answered {line[:200]!r}")
                self._mark_refused(refused, results)
            return results
        return outcomes

    def copy_keys_if_absent(self, items: list[tuple[str, bytes, int]]) -> list[CopyResult]:
        """Keys put back by the restore as they were (tombstones, stock keys), pipelined:
        ``(key, value, absolute expiry in ms or 0)``, never over an existing key."""
        pipe = self.client.pipeline(transaction=False)
        for key, value, expiry_ms in items:
            if expiry_ms:
                pipe.set(key, value, nx=True, pxat=expiry_ms)
            else:
                pipe.set(key, value, nx=True)
        return [CopyResult.WRITTEN if done else CopyResult.EXISTS for done in pipe.execute()]

    def would_copy(self, items: list[tuple[str, bool]]) -> list[CopyResult]:
        """What copying each ``(key, is a session key)`` would do, from EXISTS (writes nothing;
        check mode and dry runs); an existing session key is then told tombstone or session,
        as a copy's refusal is. Expiries are the caller's to check."""
        with self.client.pipeline(transaction=False) as pipe:
            for key, _session in items:
                pipe.exists(key)
            found = pipe.execute()
        results = [CopyResult.EXISTS if exists else CopyResult.WRITTEN for exists in found]
        existing = {index: key for index, (key, session) in enumerate(items) if session and found[index]}
        self._mark_refused(existing, results)
        return results

    # -- stock Flask-Session keys (the phase-5 move option) ---------------------------------
    def get_stock(self, sid: str) -> bytes | None:
        """The stock key's value, if this generation moved sessions there (else None: any stock
        key is from before the host's last return to ``file``, see KeyLayout.stock_moved_key)."""
        if not self.stock_moved():
            return None
        return self.client.get(self.layout.stock_key(sid))

    def stock_moved(self) -> bool:
        if not self._stock_moved:  # once true, it stays true for the generation's life
            self._stock_moved = stock_keys_current(self.client, self.layout)
        return self._stock_moved

    def mark_stock_moved(self) -> None:
        """Record that this generation holds stock keys: before the first is written or restored."""
        self.client.set(self.layout.stock_moved_key, b"1")
        self._stock_moved = True

    def write_stock(self, sid: str, value: bytes, expiry: int) -> None:
        """Save under stock Flask-Session's key ``prefix + sid`` (phase 5, move option)."""
        if not self._stock_moved:  # the marker first: no reader may see this key without it
            self.mark_stock_moved()
        self._set_and_wait(self.layout.stock_key(sid), value, exat=expiry or None)

    def delete_stock(self, sid: str) -> None:
        self.client.delete(self.layout.stock_key(sid))

    def drop_hashed(self, file_name: str) -> None:
        """Remove the hashed key after its session MOVED to the stock key (not a logout: no tombstone)."""
        self.client.delete(self.layout.session_key(file_name))

    def _node_client(self, key: str):
        """The client that owns *key*: the client itself, or in cluster mode its primary."""
        if isinstance(self.client, redis.cluster.RedisCluster):
            node = self.client.get_node_from_key(key)
            return node.redis_connection or self.client.get_redis_connection(node)
        return self.client

