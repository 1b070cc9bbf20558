"""Pre-flight gates: may the rollout move into a phase now?

Each gate returns a :class:`GateResult` whose ``reasons`` an operator can act
on. The playbooks call them through the ``session_gate`` module and ``assert``
on ``passed``; nothing here changes anything.

A gate needs evidence: each states its minimum (``facts["evidence"]``) and
refuses below it with the reason. 100 % of nothing is not a pass:

* ``redis_read``: the backfill and the validation of the generation the host
  reads; at least ``min_compared`` sessions compared, at least
  ``min_comparable_percent`` of the live files comparable (not corrupt or
  unreadable to the tool), no stale copy (Redis older than its file) and no
  orphaned copy (no live file, no tombstone in its key), and every host of the fleet on
  one generation;
* ``redis_only``: at least ``min_requests`` requests seen in the window;
* ``redis``: a recorded start of phase 4.
"""

from __future__ import annotations

import dataclasses
import datetime
import zoneinfo
from typing import Any


@dataclasses.dataclass
class GateResult:
    name: str
    passed: bool = True
    reasons: list[str] = dataclasses.field(default_factory=list)
    facts: dict[str, Any] = dataclasses.field(default_factory=dict)

    def refuse(self, reason: str) -> None:
        self.passed = False
        self.reasons.append(reason)

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _parse_clock(text: str) -> datetime.time:
    try:
        return datetime.time.fromisoformat(text)
    except ValueError:
        raise ValueError(f"maintenance window time {text!r} is not HH:MM") from None


def maintenance_window(now: datetime.datetime, start: str = "02:00", end: str = "06:00",
                       timezone: str = "Asia/Tokyo", override: bool = False) -> GateResult:
    """Flips happen only inside the window (it may wrap midnight) unless overridden."""
    result = GateResult("maintenance_window")
    try:
        zone = zoneinfo.ZoneInfo(timezone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {timezone!r} (use an IANA name such as Asia/Tokyo)") from None
    local = now.astimezone(zone)
    opens, closes = _parse_clock(start), _parse_clock(end)
    clock = local.time().replace(tzinfo=None)
    inside = opens <= clock < closes if opens <= closes else (clock >= opens or clock < closes)
    result.facts = {"local_time": local.isoformat(timespec="minutes"), "window": f"{start}-{end} {timezone}",
                    "inside": inside, "override": override}
    if not inside and not override:
        result.refuse(f"it is {local:%H:%M} in {timezone}, outside the maintenance window {start}-{end}; "
                      "wait for the window or pass -e rollout_ignore_maintenance_window=true "
                      "(rollbacks are never held back by the window)")
    return result


# SET ... EXAT, which every session write uses, came with Redis 6.2 (Valkey reports a
# redis_version of 7.2 or later). Nothing newer is needed: expiries are read with PTTL.
MIN_REDIS_VERSION = (6, 2)


def _version_tuple(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in text.split(".")[:2])
    except ValueError:
        return ()


def redis_ready(ping_ok: bool, tls: bool, authenticated: bool, error: str | None,
                alarms_in_alarm: list[str], server_version: str | None = None,
                verified: bool = True, reload_hazard: str | None = None) -> GateResult:
    """Gate into phase 2: Redis reachable over TLS with AUTH, new enough, keeping what it
    acknowledged across a restart, and no alarm firing."""
    result = GateResult("dual_write")
    if reload_hazard:
        result.refuse(reload_hazard)
    if not ping_ok:
        result.refuse(f"Redis is not reachable: {error or 'no answer'}")
    elif server_version is not None:
        result.facts["redis_version"] = server_version
        if _version_tuple(server_version) < MIN_REDIS_VERSION:
            minimum = ".".join(map(str, MIN_REDIS_VERSION))
            result.refuse(f"Redis {server_version} is too old: sessionshift needs Redis {minimum} or later "
                          "(SET with EXAT); upgrade the engine (elasticache_engine_version) first")
    if not tls:
        result.refuse("the Redis URL is not rediss:// (TLS); ElastiCache requires in-transit encryption")
    elif not verified:
        result.refuse("TLS certificate verification is off (verify_tls: false): sessions would go to "
                      "whoever answers on the network path; set verify_tls: true and pass ca_file "
                      "if the CA is not a public one")
    if not authenticated:
        result.refuse("no AUTH token / ACL user configured for Redis")
    if alarms_in_alarm:
        result.refuse("CloudWatch alarms in ALARM: " + ", ".join(sorted(alarms_in_alarm))
                      + "; resolve them before starting dual writes")
    return result


DEFAULT_MIN_COMPARED = 1
DEFAULT_MIN_COMPARABLE_PERCENT = 99.0
DEFAULT_MIN_REQUESTS = 100


def validation_passed(migration: dict | None, validation: dict | None,
                      threshold: float = 100.0, *, generation: int = 0,
                      fleet_generations: list[int] | None = None,
                      min_compared: int = DEFAULT_MIN_COMPARED,
                      min_comparable_percent: float = DEFAULT_MIN_COMPARABLE_PERCENT) -> GateResult:
    """Gate into phase 3: the backfill finished and the last validation met the threshold,
    on enough evidence, in the generation this host (and every host of the fleet) reads."""
    result = GateResult("redis_read")
    evidence = (f"backfill and validation of generation {generation}; >= {min_compared} session(s) "
                f"compared; >= {min_comparable_percent:g}% of live files comparable; 0 stale and 0 "
                "orphaned copies (orphans are counted only with one host or a shared session "
                "directory); every host on one generation")
    result.facts = {"evidence": evidence, "generation": generation}
    if fleet_generations and len(set(fleet_generations)) > 1:
        result.refuse(f"the hosts read different Redis generations ({sorted(set(fleet_generations))}); "
                      "from phase 3 on users move between hosts, so all must read one: run "
                      "playbooks/phase2.yml again (it moves every host to the fleet's generation and "
                      "backfills it)")
    if not migration or not migration.get("complete"):
        result.refuse("the backfill has not completed on this host; run playbooks/phase2.yml "
                      "(tag backfill) or 'sessionshift migrate'")
    elif _generation_of(migration) != generation:
        result.refuse(f"the last backfill copied into generation {_generation_of(migration)}, this "
                      f"host reads generation {generation}; run the backfill again")
    if not validation:
        result.refuse("no validation has been recorded on this host; run playbooks/phase2.yml "
                      "(tag validate) or 'sessionshift validate'")
        return result
    consistency = float(validation.get("consistency_percent", 0.0))
    counts = validation.get("counts") or {}
    comparable = int(validation.get("comparable", 0))
    unreadable = int(counts.get("corrupt", 0))
    share = 100.0 * comparable / (comparable + unreadable) if comparable + unreadable else 0.0
    stale, orphaned = counts.get("stale", 0), counts.get("orphaned", 0)
    result.facts.update(consistency_percent=consistency, threshold=threshold, compared=comparable,
                        comparable_percent=round(share, 4), stale=stale, orphaned=orphaned,
                        validated_at=validation.get("finished_at"))
    if _generation_of(validation) != generation:
        result.refuse(f"the last validation read generation {_generation_of(validation)}, this host "
                      f"reads generation {generation}; validate again")
    if comparable < min_compared:
        result.refuse(f"the validation compared {comparable} session(s), fewer than the minimum of "
                      f"{min_compared} comparable: 100% of nothing is no evidence. Are there live "
                      "sessions in the directory, and are the tool's settings (session_dir, key "
                      "prefix, hash method) the app's?")
    elif share < min_comparable_percent:
        result.refuse(f"only {share:.2f}% of the live files were comparable ({unreadable} corrupt or "
                      f"unreadable to the tool; minimum {min_comparable_percent:g}%); read the corrupt "
                      "examples in validation.json")
    if stale:
        result.refuse(f"{stale} Redis cop(ies) are older than their file (stale); they would be served "
                      "in phase 3: re-run the backfill in a new generation (step to file and forward "
                      "again) or find the writer that skips Redis")
    if orphaned is None:
        # Not counted (a session directory per host): say so, rather than show a bare null.
        result.facts["orphaned_not_counted"] = validation.get("orphaned_not_counted") or "not counted"
    if orphaned:
        result.refuse(f"{orphaned} Redis cop(ies) have no live file and hold no tombstone (orphaned): a "
                      "logged-out or expired session would come back in phase 3")
    if consistency < threshold:
        result.refuse(f"validation consistency {consistency:.3f}% is below the threshold {threshold}%; "
                      "look at the examples in validation.json, re-run the backfill, then validate again")
    type_changed = int((validation.get("counts") or {}).get("type_changed", 0))
    result.facts["type_changed"] = type_changed
    if type_changed:
        changes = list((validation.get("type_changes") or {}).items())[:5]
        kinds = ", ".join(f"{kind} ({n})" for kind, n in changes)
        result.refuse(f"{type_changed} session(s) come back from Redis with changed types ({kinds}), "
                      "whatever the threshold: use the exact value format (pickle, the default), "
                      "migrate and validate again")
    finished, started = validation.get("finished_at"), (migration or {}).get("finished_at")
    if finished and started and str(finished) < str(started):
        result.refuse("the last validation is older than the last backfill; validate again")
    return result


def _generation_of(record: dict) -> int:
    """The generation a backfill or validation record covered (0 before generations existed)."""
    return int(record.get("generation", (record.get("fingerprint") or {}).get("generation", 0)))


def fallback_quiet(fallback_reads: float, total_reads: float, max_rate: float = 0.001,
                   min_requests: int = DEFAULT_MIN_REQUESTS) -> GateResult:
    """Gate into phase 4: reads that had to fall back to files are near zero, over enough reads."""
    result = GateResult("redis_only")
    min_requests = max(int(min_requests), 1)  # a rate over zero requests is no evidence
    rate = (fallback_reads / total_reads) if total_reads else 0.0
    result.facts = {"fallback_reads": fallback_reads, "total_reads": total_reads,
                    "fallback_rate": rate, "max_rate": max_rate,
                    "evidence": f">= {min_requests} session request(s) in the watch window"}
    if total_reads < min_requests:
        result.refuse(f"only {total_reads:g} session request(s) in the watch window, fewer than the "
                      f"minimum of {min_requests}: a fallback rate over so few says nothing; watch "
                      "longer (rollout_watch_seconds) or wait for traffic")
    if rate > max_rate:
        result.refuse(f"{rate:.4%} of reads fell back to files (limit {max_rate:.4%}); sessions are "
                      "still missing from Redis: run the backfill again and validate")
    return result


def cutoff_passed(now: datetime.datetime, redis_only_since: datetime.datetime | None,
                  session_lifetime_seconds: int) -> GateResult:
    """Gate into phase 5: every legacy file session has outlived its lifetime since phase 4."""
    result = GateResult("redis")
    result.facts = {"evidence": "a recorded start of phase 4 on this host"}
    if redis_only_since is None:
        result.refuse("this host has no record of entering redis_only; run playbooks/phase4.yml first")
        return result
    cutoff = redis_only_since + datetime.timedelta(seconds=session_lifetime_seconds)
    result.facts.update(redis_only_since=redis_only_since.isoformat(), cutoff=cutoff.isoformat())
    if now < cutoff:
        result.refuse(f"the cutoff {cutoff.isoformat()} (phase 4 start + the longest session lifetime "
                      f"of {session_lifetime_seconds}s) has not passed; legacy file sessions may still "
                      "be in use")
    return result


# --------------------------------------------------------------------------- from a host's state


def _redis_only_since(state_dir: str) -> datetime.datetime | None:
    """When files stopped being written on this host (the phase file's ``redis_only_since``)."""
    from .phasefile import read_phase

    when = read_phase(state_dir).redis_only_since
    return datetime.datetime.fromisoformat(str(when)) if when else None


def evaluate(params: dict[str, Any], now: datetime.datetime) -> GateResult:
    """Run the gate named in *params* (the session_gate module's options) on this host's state."""
    from . import state

    gate = params["gate"]
    state_dir = params.get("state_dir") or state.DEFAULT_STATE_DIR

    def record(name: str) -> dict | None:
        return state.read_json(state.state_path(state_dir, name))

    if gate == "maintenance_window":
        return maintenance_window(now, params["window_start"], params["window_end"],
                                  params["window_timezone"], params["ignore_window"])
    if gate == "dual_write":
        return _redis_gate(params)
    if gate == "redis_read":
        from .phasefile import read_phase

        return validation_passed(
            record(state.MIGRATE_FILE), record(state.VALIDATION_FILE), params["threshold"],
            generation=read_phase(state_dir).generation,
            fleet_generations=[int(g) for g in params.get("fleet_generations") or []],
            min_compared=int(params.get("min_compared", DEFAULT_MIN_COMPARED)),
            min_comparable_percent=float(params.get("min_comparable_percent",
                                                    DEFAULT_MIN_COMPARABLE_PERCENT)))
    if gate == "redis_only":
        return fallback_quiet(params["fallback_reads"], params["total_reads"], params["max_fallback_rate"],
                              int(params.get("min_requests", DEFAULT_MIN_REQUESTS)))
    if gate == "redis":
        return cutoff_passed(now, _redis_only_since(state_dir),
                             params["session_lifetime"])
    raise ValueError(f"unknown gate {gate!r}")


def _redis_gate(params: dict[str, Any]) -> GateResult:
    from redis.exceptions import RedisError

    from .redisconn import RedisSettings, RedisUnavailable, connect

    settings = RedisSettings.from_mapping(dict(params["redis"]))
    error = version = hazard = None
    try:
        client = connect(settings)
        try:
            version = server_version(client)
            hazard = aof_reload_hazard(client)
        finally:
            client.close()
    except RedisUnavailable as exc:
        error = str(exc)
    except RedisError as exc:
        error = f"INFO server failed: {exc}"
    return redis_ready(ping_ok=error is None, tls=settings.tls, verified=settings.verify_tls,
                       authenticated=bool(settings.password), error=error,
                       alarms_in_alarm=list(params.get("alarms_in_alarm") or []), server_version=version,
                       reload_hazard=hazard)


def aof_reload_hazard(client) -> str | None:
    """Why this Redis would lose acknowledged session writes at its next restart, or None.

    Redis before redis/redis#14545 re-checks each MULTI/EXEC it reads back from the
    append-only file against the *default* user's permissions, and silently drops the block
    when they are missing. A script that writes twice is written to the AOF as MULTI/EXEC
    (sessionshift's own writes are single native commands since the logout tombstone lives in
    the session key, but a build before that wrote each logout as DEL plus a tombstone SET,
    and any other client's transaction is such a block), so with ``user default off`` (no
    permissions) a restart can drop writes Redis had acknowledged. The cure keeps the default
    user off, so nobody can log in as it. Not checked (None) where
    the AOF is off (ElastiCache has none) or ACL GETUSER is not allowed to the tool.
    """
    from redis.exceptions import RedisError

    info = client.info("persistence")
    nodes = [info] if "aof_enabled" in info else list(info.values())  # a cluster answers per node
    if not any(int(node.get("aof_enabled", 0)) for node in nodes):
        return None
    try:
        user = client.acl_getuser("default")
    except RedisError:
        return None
    if isinstance(user, dict) and "commands" not in user:
        user = next(iter(user.values()), None)  # {node: user} from a cluster
    if not user:
        return None
    rules = []  # redis-py splits "+@all -debug" into categories and commands (lists or strings)
    for field in ("categories", "commands"):
        value = user.get(field) or []
        rules += value.split() if isinstance(value, str) else [str(rule) for rule in value]
    if "+@all" in rules:
        return None
    return ("Redis keeps an append-only file, and its default user has no permissions "
            f"(ACL: {' '.join(rules) or '-@all'}): Redis before redis/redis#14545 drops every "
            "MULTI/EXEC block of that file when it restarts, so the logouts it acknowledged "
            "(written as MULTI/EXEC) would come back as live sessions. Write the default user "
            "as 'user default off ~* &* +@all' (still off: nobody can log in as it) and restart "
            "Redis, or run a Redis with that fix")


def server_version(client) -> str:
    """The lowest ``redis_version`` of INFO server (a cluster answers per node)."""
    info = client.info("server")
    if "redis_version" not in info:  # {node: info} from a cluster
        return min((str(node["redis_version"]) for node in info.values()), key=_version_tuple)
    return str(info["redis_version"])
