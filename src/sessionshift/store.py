"""The session operations on Redis that races depend on, each one atomic.

Every writer goes through here: the Flask interface (app writes, logouts,
promotions of file sessions), the backfill, the export and the restore. The
race rules (docs/architecture.md, "The race rules live in one file") live in
these few functions:

* the app's own write always wins and clears a tombstone (``app_write``);
* a logout deletes the session and leaves a short-lived tombstone
  (``app_delete``);
* a copy made by a tool or by a read promotion never overwrites an existing key
  and never revives a tombstoned session (``copy_if_absent``, one Lua script
  with the session key and its tombstone in one hash slot);
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
from redis.exceptions import RedisError

from .errors import SessionshiftError
from .keys import TAG_END, KeyLayout
from .redisconn import RedisClient, packed_started, pipeline_with_script

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


# The app's writes as scripts, so that each is atomic AND can share one pipeline
# (one connection) with the WAIT after it: WAIT counts the writes of its own
# connection, and inside MULTI it does not wait at all.
# KEYS[1] = session key, KEYS[2] = its tombstone (none for a stock Flask-Session key);
# ARGV[1] = value, ARGV[2] = EXAT (0 = none)
_APP_WRITE = """
if ARGV[2] == '0' then
  redis.call('SET', KEYS[1], ARGV[1])
else
  redis.call('SET', KEYS[1], ARGV[1], 'EXAT', ARGV[2])
end
if KEYS[2] then redis.call('DEL', KEYS[2]) end
return 1
"""
# KEYS as in _APP_WRITE; ARGV[1] = the tombstone's TTL
_APP_DELETE = """
redis.call('DEL', KEYS[1])
redis.call('SET', KEYS[2], '1', 'EX', ARGV[1])
return 1
"""

# KEYS[1] = session key, KEYS[2] = tombstone key; ARGV[1] = value, ARGV[2] = EXAT (0 = none)
_COPY_IF_ABSENT = """
if redis.call('EXISTS', KEYS[2]) == 1 then return 'tombstoned' end
local done
if ARGV[2] == '0' then
  done = redis.call('SET', KEYS[1], ARGV[1], 'NX')
else
  done = redis.call('SET', KEYS[1], ARGV[1], 'NX', 'EXAT', ARGV[2])
end
if done then return 'written' end
return 'exists'
"""

# The same rule for a whole batch in one call (standalone Redis only: in a
# cluster the keys of one call must share a slot). KEYS = session, tombstone
# pairs; ARGV = value, EXAT pairs. One script call per batch instead of one per
# session saves most of the client's packing and the server's per-call cost.
# The reply is one string, a letter per session (w written, e exists, t
# tombstoned): parsing a 500-element array reply cost the client as much as
# the rest of the batch's Redis work (measured with bench/profile.py).
_COPY_MANY_IF_ABSENT = """
local n = #KEYS / 2
-- MGET the tombstones, 1000 at a time (unpack's limit is about 8000): a command
-- per key would cost Redis more than the SET itself.
local logged_out = {}
for first = 1, n, 1000 do
  local tombstones = {}
  for i = first, math.min(first + 999, n) do tombstones[#tombstones + 1] = KEYS[2 * i] end
  local found = redis.call('MGET', unpack(tombstones))
  for j = 1, #found do logged_out[first + j - 1] = found[j] end
end
local outcomes = {}
for i = 1, n do
  if logged_out[i] then
    outcomes[i] = 't'
  else
    local key, value, exat = KEYS[2 * i - 1], ARGV[2 * i - 1], ARGV[2 * i]
    local done
    if exat == '0' then
      done = redis.call('SET', key, value, 'NX')
    else
      done = redis.call('SET', key, value, 'NX', 'EXAT', exat)
    end
    if done then outcomes[i] = 'w' else outcomes[i] = 'e' end
  end
end
return table.concat(outcomes)
"""
_BATCH_CODES = {"w": "written", "e": "exists", "t": "tombstoned"}
_BATCH_RESULTS = {code: CopyResult(value) for code, value in _BATCH_CODES.items()}


def stock_keys_current(client: RedisClient, layout: KeyLayout) -> bool:
    """Whether stock keys belong to *layout*'s generation, so may be read, moved back, exported.

    Generation 0 has never been retired (a return to ``file`` moves the next use to 1 or
    more), so its stock keys are current: an app adopted straight into phase 5, or a first
    rollout. In a later generation only the marker its first phase-5 move set says so (see
    KeyLayout.stock_moved_key); without it every stock key predates the return to ``file``.
    """
    return layout.generation == 0 or bool(client.exists(layout.stock_moved_key))


@dataclasses.dataclass
class SessionStore:
    """Session reads and writes for one key layout on one Redis (standalone or cluster)."""

    client: RedisClient
    layout: KeyLayout = dataclasses.field(default_factory=KeyLayout)
    tombstone_ttl: int = DEFAULT_TOMBSTONE_TTL
    wait_replicas: int = 0
    wait_timeout_ms: int = 100

    def __post_init__(self) -> None:
        self._app_write_script = self.client.register_script(_APP_WRITE)
        self._app_delete_script = self.client.register_script(_APP_DELETE)
        self._no_replica_until = 0.0
        self._stock_moved = False
        self._copy_script = self.client.register_script(_COPY_IF_ABSENT)
        self._copy_many_script = self.client.register_script(_COPY_MANY_IF_ABSENT)
        self._expiry_script = self.client.register_script(EXPIRY_SCRIPT)

    # -- reads -------------------------------------------------------------------------
    def get(self, file_name: str) -> bytes | None:
        return self.client.get(self.layout.session_key(file_name))

    def expiry_of(self, key: str) -> int:
        """The expiry of *key* in epoch seconds (as EXPIRETIME), 0 for no expiry, -2 if missing."""
        now_ms, pttl = self._expiry_script(keys=[key])
        return absolute_expiry(now_ms, pttl)

    # -- the app's writes ----------------------------------------------------------------
    def app_write(self, file_name: str, value: bytes, expiry: int) -> None:
        """The app saved the session: its value wins over everything, tombstone cleared."""
        keys = [self.layout.session_key(file_name), self.layout.tombstone_key(file_name)]
        self._run_and_wait(self._app_write_script, keys, [value, expiry])

    def app_delete(self, file_name: str) -> None:
        """The user logged out: delete the session and leave a tombstone for the tools."""
        keys = [self.layout.session_key(file_name), self.layout.tombstone_key(file_name)]
        self._run_and_wait(self._app_delete_script, keys, [self.tombstone_ttl])

    def _run_and_wait(self, script, keys: list[str], args: list) -> None:
        """One of the app's write scripts, then (with ``wait_replicas``) WAIT on the same connection."""
        waiting = self._should_wait()
        if isinstance(self.client, redis.cluster.RedisCluster):
            # Routed by slot (MOVED is followed). redis-py cannot pin a cluster connection,
            # so WAIT goes through the node's pool, which hands a single-threaded worker
            # the connection it just released.
            script(keys=keys, args=args)
            confirmed = self._node_client(keys[0]).wait(self.wait_replicas, self.wait_timeout_ms) \
                if waiting else None
        else:
            confirmed = self._evalsha_then_wait(script, keys, args, waiting)
        if waiting:
            self._check_confirmed(confirmed, keys[0])

    def _evalsha_then_wait(self, script, keys: list[str], args: list, waiting: bool):
        """EVALSHA (and WAIT) in one round trip, on one connection; WAIT's answer, if asked."""
        def fill(pipe) -> None:
            pipe.evalsha(script.sha, len(keys), *keys, *args)
            if waiting:
                pipe.wait(self.wait_replicas, self.wait_timeout_ms)

        replies = pipeline_with_script(self.client, script, fill)
        return replies[-1] if waiting else None

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
        keys = [self.layout.session_key(file_name), self.layout.tombstone_key(file_name)]
        outcome = self._copy_script(keys=keys, args=[value, expiry])
        return CopyResult(outcome.decode() if isinstance(outcome, bytes) else outcome)

    def copy_many_if_absent(self, items: list[tuple[str, bytes, int]],
                            now: float | None = None) -> list[CopyResult]:
        """``copy_if_absent`` for a batch, pipelined (one round trip per batch)."""
        now = time.time() if now is None else now
        if not isinstance(self.client, redis.cluster.RedisCluster):
            return self._copy_batch_standalone(items, now)()
        results: list[CopyResult | None] = [None] * len(items)
        # redis-py's cluster pipeline refuses scripts, so a cluster batch is split
        # per primary and each part pipelined on that node's own connection.
        batches: dict[str, tuple[object, list[int]]] = {}
        for index, (file_name, _value, expiry) in enumerate(items):
            if expiry and expiry <= now:
                results[index] = CopyResult.EXPIRED
                continue
            node = self._node_client(self.layout.session_key(file_name))
            batches.setdefault(id(node), (node, []))[1].append(index)
        for node, indexes in batches.values():
            pipe = node.pipeline(transaction=False)
            for index in indexes:
                file_name, value, expiry = items[index]
                keys = [self.layout.session_key(file_name), self.layout.tombstone_key(file_name)]
                self._copy_script(keys=keys, args=[value, expiry], client=pipe)
            for index, outcome in zip(indexes, pipe.execute(), strict=True):
                results[index] = CopyResult(_text(outcome))
        return results

    def start_copy_many_if_absent(self, items: list[tuple[str, bytes, int]],
                                  now: float | None = None) -> Callable[[], list[CopyResult]]:
        """``copy_many_if_absent`` begun now; the returned call gives its outcomes.

        On a standalone Redis the batch's one script call is sent at once and its
        reply read by the returned call, so the caller can read the next batch's
        files while Redis runs it (the backfill). A cluster's batch is copied at once.
        """
        now = time.time() if now is None else now
        if isinstance(self.client, redis.cluster.RedisCluster):
            results = self.copy_many_if_absent(items, now)
            return lambda: results
        return self._copy_batch_standalone(items, now)

    def _copy_batch_standalone(self, items: list[tuple[str, bytes, int]],
                               now: float) -> Callable[[], list[CopyResult]]:
        """The whole batch in one script call (see ``_COPY_MANY_IF_ABSENT``), sent; the returned
        call reads the outcomes."""
        results: list[CopyResult] = [CopyResult.EXPIRED] * len(items)
        live: list[int] = []
        # The request in the Redis protocol, written here: a generic packer costs more per
        # argument than reading a session file. KEYS = session, tombstone pairs, each the
        # layout's head, the file name and the tag's end; ARGV = value, EXAT pairs.
        session_head, tombstone_head = self.layout.session_head.encode(), self.layout.tombstone_head.encode()
        end = TAG_END.encode()
        session_size, tombstone_size = len(session_head) + len(end), len(tombstone_head) + len(end)
        keys: list[bytes] = []
        args: list[bytes] = []
        for index, (file_name, value, expiry) in enumerate(items):
            if expiry and expiry <= now:
                continue
            live.append(index)
            name = file_name.encode()
            size = len(name)
            keys.append(b"$%d\r\n%s%s%s\r\n$%d\r\n%s%s%s\r\n" % (
                session_size + size, session_head, name, end,
                tombstone_size + size, tombstone_head, name, end))
            at = b"%d" % expiry
            args.append(b"$%d\r\n%s\r\n$%d\r\n%s\r\n" % (len(value), value, len(at), at))
        if not live:
            return lambda: results
        count = b"%d" % (2 * len(live))
        head = b"*%d\r\n$7\r\nEVALSHA\r\n$40\r\n%s\r\n$%d\r\n%s\r\n" % (
            3 + 4 * len(live), self._copy_many_script.sha.encode(), len(count), count)
        reply = packed_started(self.client, b"".join((head, *keys, *args)), script=self._copy_many_script)

        def outcomes() -> list[CopyResult]:
            for index, code in zip(live, _text(reply()), strict=True):
                results[index] = _BATCH_RESULTS[code]
            return results
        return outcomes

    def copy_keys_if_absent(self, items: list[tuple[str, bytes, int]]) -> list[CopyResult]:
        """Keys that are not sessions (tombstones, stock keys) put back by the restore, pipelined:
        ``(key, value, absolute expiry in ms or 0)``, never over an existing key."""
        pipe = self.client.pipeline(transaction=False)
        for key, value, expiry_ms in items:
            if expiry_ms:
                pipe.set(key, value, nx=True, pxat=expiry_ms)
            else:
                pipe.set(key, value, nx=True)
        return [CopyResult.WRITTEN if done else CopyResult.EXISTS for done in pipe.execute()]

    def would_copy(self, items: list[tuple[str, bool]]) -> list[CopyResult]:
        """What copying each ``(key, is a session key)`` would do, from EXISTS alone (writes
        nothing; check mode and dry runs). A session key's tombstone is asked first, as the
        copy script does; expiries are the caller's to check."""
        pipe = self.client.pipeline(transaction=False)
        for key, session in items:
            pipe.exists(key)
            pipe.exists(self.layout.tombstone_key(self.layout.parse(key).file_name) if session else key)
        replies = pipe.execute()
        results = []
        for index, (_key, session) in enumerate(items):
            exists, tombstoned = replies[2 * index], replies[2 * index + 1]
            results.append(CopyResult.TOMBSTONED if session and tombstoned else
                           CopyResult.EXISTS if exists else CopyResult.WRITTEN)
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
        key = self.layout.stock_key(sid)
        self._run_and_wait(self._app_write_script, [key], [value, expiry])  # no tombstone in phase 5

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


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
