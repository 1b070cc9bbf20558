"""Analyze a session directory before migrating it: what the files are, what is there, how long it takes.

One streamed scan detects the source profile (:mod:`.profile`: the files'
hash, header style and pickle protocol, the value types present and what
msgpack would change), which the caller records for every other tool, and
counts sessions, sizes (a fixed histogram, so memory stays
flat), expired / corrupt / foreign files and the expiry range. The migration
time is estimated from a measured sample, not a constant: the first
``sample_size`` sessions are timed while they are read, decoded and re-encoded
exactly as the backfill does it, and, when a Redis client is given, one
pipelined round trip of the sample's keys is timed (read-only ``EXISTS``, the
same shape as the backfill's writes). The estimate divides by the worker count
the backfill would use.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import datetime
import time
from typing import Any

from . import profile as profiles
from .formats import SerializerName, SessionFileError, SessionValueError, read_session_file, value_format
from .keys import KeyLayout
from .progress import Progress, ProgressCallback
from .redisconn import RedisClient
from .shares import iter_entries
from .workers import MAX_DEFAULT_WORKERS, resolve_workers

# Upper bounds of the size histogram, in bytes; the last bucket is open.
SIZE_BUCKETS = (512, 1024, 2048, 4096, 8192, 16384, 65536, 262144, 1048576)


@dataclasses.dataclass
class AnalyzeConfig:
    session_dir: str
    layout: KeyLayout = dataclasses.field(default_factory=KeyLayout)
    serializer: SerializerName | None = None  # the Redis value format to record (None: keep / default)
    # Settings an operator gave (hash_name, header_style, pickle_protocol): checked against the files.
    given: dict[str, Any] = dataclasses.field(default_factory=dict)
    state_dir: str | None = None  # where profile.json is recorded (None: not recorded)
    sample_size: int = 500
    workers: int = 0  # the backfill's worker count to assume (0: its default)
    default_lifetime: int = 0
    style: str = "cli"  # how errors name options (cli, module)


def _bucket_label(index: int) -> str:
    if index == len(SIZE_BUCKETS):
        return f">={SIZE_BUCKETS[-1]}"
    return f"<{SIZE_BUCKETS[index]}"


def _iso(epoch: int | None) -> str | None:
    if not epoch:
        return None
    return datetime.datetime.fromtimestamp(epoch, datetime.UTC).isoformat(timespec="seconds")


def analyze(config: AnalyzeConfig, *, client: RedisClient | None = None,
            progress: ProgressCallback | None = None) -> dict[str, Any]:
    started = time.monotonic()
    now = time.time()
    counts: collections.Counter = collections.Counter()
    histogram = [0] * (len(SIZE_BUCKETS) + 1)
    size_total, size_min, size_max = 0, None, 0
    oldest = newest = None
    errors: list[dict[str, str]] = []
    sample_names: list[str] = []
    sample_seconds = 0.0
    serializer = config.serializer or _recorded_serializer(config.state_dir)
    fmt = value_format(serializer)
    builder = profiles.ProfileBuilder(config.session_dir, prefix=config.layout.prefix, serializer=serializer)
    for kind, _name, path in iter_entries(config.session_dir):
        if kind in ("cachelib", "foreign"):
            counts["skipped" if kind == "cachelib" else "foreign"] += 1
            continue
        counts["files"] += 1
        timed = len(sample_names) < config.sample_size
        tick = time.perf_counter()
        try:
            session = read_session_file(path, prefix=config.layout.prefix,
                                        default_lifetime=config.default_lifetime)
        except SessionFileError as exc:
            counts["vanished" if exc.reason.startswith("vanished") else "corrupt"] += 1
            if len(errors) < 20 and not exc.reason.startswith("vanished"):
                errors.append({"path": path, "reason": exc.reason})
            continue
        if timed and not fmt.exact:
            # The backfill's work, timed (an exact value is the payload). A session msgpack
            # cannot encode (an int beyond 64 bits, a tuple key) is no corrupt file: the
            # profile's msgpack check counts it, and that refuses the msgpack choice.
            with contextlib.suppress(SessionValueError):
                fmt.dumps(session.data)
        if timed:
            sample_seconds += time.perf_counter() - tick
            sample_names.append(session.file_name)
        builder.add(session)
        size = session.size
        size_total += size
        size_min = size if size_min is None else min(size_min, size)
        size_max = max(size_max, size)
        histogram[next((i for i, bound in enumerate(SIZE_BUCKETS) if size < bound), len(SIZE_BUCKETS))] += 1
        if session.expiry == 0:
            counts["never_expire"] += 1
        elif session.expiry <= now:
            counts["expired"] += 1
            continue
        else:
            oldest = session.expiry if oldest is None else min(oldest, session.expiry)
            newest = session.expiry if newest is None else max(newest, session.expiry)
        counts["live"] += 1
        if progress and counts["files"] % 1000 == 0:
            progress(Progress("analyze", done=counts["files"], counts={"corrupt": counts["corrupt"]},
                              elapsed=time.monotonic() - started))
    sessions = counts["files"] - counts["corrupt"] - counts["vanished"]
    estimate = _estimate(config, client, sample_names, sample_seconds, counts["live"])
    profile = builder.finish()
    where = f"analyze of {config.session_dir}"
    # A given setting that contradicts the files is refused, whatever else was found.
    profiles.settle(profile, config.given, where=where, style=config.style, needs=())
    refused = None
    try:
        profiles.check_serializer_choice(profile)
    except profiles.ProfileError as exc:
        refused = str(exc)
    recorded = None
    if config.state_dir and refused is None:
        recorded = profiles.record(config.state_dir, profile)
    return {
        "session_dir": config.session_dir,
        "profile": profile.as_dict(),
        "recorded": recorded,
        "refused": refused,
        "files": counts["files"],
        "sessions": sessions,
        "live": counts["live"],
        "expired": counts["expired"],
        "never_expire": counts["never_expire"],
        "corrupt": counts["corrupt"],
        "vanished": counts["vanished"],
        "foreign": counts["foreign"],
        "cachelib_internal": counts["skipped"],
        "size_bytes": {"total": size_total, "min": size_min or 0, "max": size_max,
                       "mean": round(size_total / sessions, 1) if sessions else 0,
                       "histogram": {_bucket_label(i): n for i, n in enumerate(histogram)}},
        "expiry": {"oldest": _iso(oldest), "newest": _iso(newest),
                   "oldest_epoch": oldest, "newest_epoch": newest},
        "errors": errors,
        "estimate": estimate,
        "elapsed_seconds": round(time.monotonic() - started, 3),
    }


def _recorded_serializer(state_dir: str | None) -> SerializerName:
    """The value format recorded earlier: re-analyzing must not switch it silently."""
    recorded = profiles.load(state_dir)
    return recorded.serializer if recorded else profiles.DEFAULTS["serializer"]


def _estimate(config: AnalyzeConfig, client: RedisClient | None, sample_names: list[str],
              sample_seconds: float, live: int) -> dict[str, Any]:
    """Seconds the backfill would take, from the timed sample."""
    workers = min(resolve_workers(config.workers), MAX_DEFAULT_WORKERS)
    if not sample_names:
        return {"seconds": 0.0, "sample_sessions": 0, "workers": workers, "redis_measured": False}
    redis_seconds = 0.0
    if client is not None:
        tick = time.perf_counter()
        with client.pipeline(transaction=False) as pipe:
            for name in sample_names:
                pipe.exists(config.layout.session_key(name))  # one command per session, as the copy
            pipe.execute()
        redis_seconds = time.perf_counter() - tick
    per_session = (sample_seconds + redis_seconds) / len(sample_names)
    return {
        "seconds": round(per_session * live / workers, 2),
        "per_session_ms": round(per_session * 1000, 4),
        "sample_sessions": len(sample_names),
        "workers": workers,
        "redis_measured": client is not None,
    }


def profile_summary(profile: dict[str, Any]) -> str:
    """The profile in a few lines: format, generation, what is mixed, what msgpack would change."""
    def counted(values: dict[str, int]) -> str:
        return ", ".join(f"{value} ({count:,})" for value, count in sorted(values.items())) or "none"

    lines = [f"  format: hash {profile['hash_name'] or 'MIXED/unknown'} [{counted(profile['hashes'])}], "
             f"header {profile['header_style'] or 'MIXED/unknown'} [{counted(profile['header_styles'])}], "
             f"pickle protocol {profile['pickle_protocol']} [{counted(profile['protocols'])}]",
             f"  generation: {profile['generation']}",
             f"  key prefix: {profile['key_prefix']!r}, {profile['key_prefix_source']}",
             f"  Redis values: {profile['serializer']}"]
    for setting, seen in profile["mixed"].items():
        lines.append(f"  MIXED {setting}: {counted(seen)}: not guessed; tools need it set explicitly")
    msgpack = profile.get("msgpack") or {}
    if msgpack:
        changes = ", ".join(f"{kind} in {n:,}" for kind, n in msgpack["changes"].items()) or "nothing"
        lines.append(f"  msgpack would change {msgpack['inexact_sessions']:,} of {profile['sessions']:,} "
                     f"sessions: {changes}")
    return "\n".join(lines)


def summary(result: dict[str, Any]) -> str:
    sizes = result["size_bytes"]
    estimate = result["estimate"]
    redis_note = "" if estimate.get("redis_measured") else " (files only; pass --redis-url to time Redis too)"
    recorded = (f"\n  profile recorded in {result['recorded']}" if result.get("recorded") else
                f"\n  profile NOT RECORDED: {result['refused']}" if result.get("refused") else "")
    refused = "".join(f"\n  corrupt or hostile: {error['path']}: {error['reason']}"
                      for error in result["errors"][:10])
    if result["corrupt"]:
        refused += ("\n  (the app reads each as no session; migrate copies a file whose structure is whole "
                    "without decoding it, and every reader of the copy refuses it the same way)")
    return (f"analyze: {result['files']:,} session files: {result['live']:,} live, {result['expired']:,} "
            f"expired, {result['corrupt']:,} corrupt; {result['foreign']:,} foreign files"
            + refused + "\n"
            + profile_summary(result["profile"]) + recorded + "\n"
            f"  sizes: mean {sizes['mean']:,} B, min {sizes['min']:,} B, max {sizes['max']:,} B\n"
            f"  expiries: oldest {result['expiry']['oldest']}, newest {result['expiry']['newest']}\n"
            f"  estimated migration: {estimate['seconds']:,}s with {estimate['workers']} workers, "
            f"from {estimate['sample_sessions']} timed sessions{redis_note}")
