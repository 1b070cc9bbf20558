"""What the engines are measured against, in the same run on the same Redis.

* ``seed_loop``: the strategy document's backfill, written faithfully: for each
  file read it, decode it (restricted unpickler), encode msgpack, then one SET
  and one EXPIRE, each its own round trip. No pipelining, no parallelism.
* the *floor*: the least any backfill can cost, as two separately timed parts
  that are summed: reading every file with plain Python (``read_files``: open,
  read bytes, nothing else) and ``redis-cli --pipe`` of the equivalent RESP
  commands (``SET key value NX EXAT t``, the value being what the backfill
  writes: the file's own pickle payload in the exact default format),
  generated into a file before timing (``write_set_commands``).
* the export floor: writing the same files with plain Python
  (``write_files``) plus one ``redis-cli --scan`` of the session keys.
"""

from __future__ import annotations

import dataclasses
import os
import re
import resource
import subprocess
import time

from sessionshift import formats
from sessionshift.keys import KeyLayout

from .redisenv import BenchRedis

DEFAULT_LAYOUT = KeyLayout()


@dataclasses.dataclass
class Timed:
    """A contender's wall time and what it did."""

    name: str
    seconds: float
    count: int
    detail: dict = dataclasses.field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.count / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict:
        return {"name": self.name, "seconds": round(self.seconds, 4), "count": self.count,
                "per_second": round(self.rate, 1), **self.detail}


# --------------------------------------------------------------------------- RESP


def resp_command(*args: bytes | str | int) -> bytes:
    """One command in the Redis protocol (RESP2 array of bulk strings), as redis-cli --pipe wants."""
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        if isinstance(arg, int):
            arg = str(arg).encode()
        elif isinstance(arg, str):
            arg = arg.encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(arg), arg))
    return b"".join(parts)


def set_nx_exat(key: str, value: bytes, expiry: int) -> bytes:
    """The backfill's write: SET NX, with EXAT when the session expires (0 = never)."""
    if expiry:
        return resp_command("SET", key, value, "NX", "EXAT", expiry)
    return resp_command("SET", key, value, "NX")


def redis_value(raw: bytes, path: str, fmt: formats.ValueFormat) -> tuple[int, bytes]:
    """(expiry, the Redis value the backfill writes) of one cachelib file's bytes."""
    expiry, data, _style, offset = formats.parse_cachelib_file(raw, path)
    return expiry, fmt.from_file(data, raw[offset:])


def write_set_commands(directory: str, path: str, layout: KeyLayout = DEFAULT_LAYOUT,
                       serializer: formats.SerializerName = formats.DEFAULT_SERIALIZER) -> int:
    """The floor's input: one SET NX EXAT per session of *directory*, into *path*. Not timed."""
    count = 0
    fmt = formats.value_format(serializer)
    with open(path, "wb") as out:
        for entry in os.scandir(directory):
            with open(entry.path, "rb") as handle:
                expiry, value = redis_value(handle.read(), entry.path, fmt)
            out.write(set_nx_exat(layout.session_key(entry.name), value, expiry))
            count += 1
    return count


_PIPE_SUMMARY = re.compile(rb"errors:\s*(\d+),\s*replies:\s*(\d+)")


def parse_pipe_summary(output: bytes) -> tuple[int, int]:
    """(errors, replies) from redis-cli --pipe's last line."""
    match = _PIPE_SUMMARY.search(output)
    if not match:
        raise RuntimeError(f"redis-cli --pipe printed no summary: {output[-300:]!r}")
    return int(match.group(1)), int(match.group(2))


def redis_pipe(redis: BenchRedis, commands_file: str, expected: int, name: str = "redis-cli --pipe") -> Timed:
    """Time ``redis-cli --pipe < commands_file``; every command must succeed."""
    children_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    server_before = redis.server_cpu()
    with open(commands_file, "rb") as stdin:
        started = time.perf_counter()
        done = subprocess.run(redis.cli("--pipe"), stdin=stdin, capture_output=True, check=False)
        seconds = time.perf_counter() - started
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = {"client_cpu": round(children.ru_utime + children.ru_stime - children_before.ru_utime
                               - children_before.ru_stime, 3),
           "server_cpu": round(redis.server_cpu() - server_before, 3)}
    errors, replies = parse_pipe_summary(done.stdout + done.stderr)
    if done.returncode != 0 or errors or replies != expected:
        raise RuntimeError(f"redis-cli --pipe failed (rc {done.returncode}, {errors} errors, "
                           f"{replies}/{expected} replies): {done.stderr[-300:]!r}")
    return Timed(name, seconds, replies, cpu)


# --------------------------------------------------------------------------- files


def read_files(directory: str) -> Timed:
    """Plain Python reading every file: open, read the bytes, nothing else."""
    count = size = 0
    started, cpu_started = time.perf_counter(), time.process_time()
    with os.scandir(directory) as entries:
        for entry in entries:
            with open(entry.path, "rb") as handle:
                size += len(handle.read())
            count += 1
    return Timed("read files (plain Python)", time.perf_counter() - started, count,
                 {"bytes": size, "client_cpu": round(time.process_time() - cpu_started, 3)})


def load_files(directory: str) -> list[tuple[str, bytes]]:
    """(name, bytes) of every file, to be written by ``write_files``. Not timed."""
    loaded = []
    with os.scandir(directory) as entries:
        for entry in entries:
            with open(entry.path, "rb") as handle:
                loaded.append((entry.name, handle.read()))
    return loaded


def write_files(target: str, files: list[tuple[str, bytes]]) -> Timed:
    """Plain Python writing the same files into an empty directory: open, write, close."""
    os.makedirs(target, exist_ok=True)
    started = time.perf_counter()
    for name, data in files:
        with open(os.path.join(target, name), "wb") as handle:
            handle.write(data)
    return Timed("write files (plain Python)", time.perf_counter() - started, len(files))


def redis_scan(redis: BenchRedis, pattern: str, out_path: str) -> Timed:
    """``redis-cli --scan --pattern`` of every session key, into a file."""
    with open(out_path, "wb") as out:
        started = time.perf_counter()
        subprocess.run(redis.cli("--scan", "--pattern", pattern), stdout=out, check=True)
        seconds = time.perf_counter() - started
    with open(out_path, "rb") as handle:
        count = sum(1 for _ in handle)
    return Timed("redis-cli --scan", seconds, count)


# --------------------------------------------------------------------------- the seed's loop


def seed_loop(redis: BenchRedis, directory: str, layout: KeyLayout = DEFAULT_LAYOUT,
              serializer: formats.SerializerName = "msgpack") -> Timed:
    """The strategy document's backfill: per file read, decode, encode, SET, EXPIRE; no pipelining."""
    client = redis.client()
    written = errors = 0
    started = time.perf_counter()
    try:
        with os.scandir(directory) as entries:
            for entry in entries:
                try:
                    with open(entry.path, "rb") as handle:
                        expiry, data, _style = formats.parse_cachelib_bytes(handle.read(), entry.path)
                except formats.SessionFileError:
                    errors += 1
                    continue
                key = layout.session_key(entry.name)
                client.set(key, formats.encode_value(data, serializer))
                if expiry:
                    client.expire(key, max(1, int(expiry - time.time())))
                written += 1
    finally:
        client.close()
    return Timed("seed loop (SET + EXPIRE, no pipelining)", time.perf_counter() - started, written,
                 {"errors": errors})


def floor(read: Timed, pipe: Timed, name: str) -> Timed:
    """A floor is the sum of its separately timed parts."""
    return Timed(name, read.seconds + pipe.seconds, pipe.count,
                 {"parts": {read.name: round(read.seconds, 4), pipe.name: round(pipe.seconds, 4)}})


# --------------------------------------------------------------------------- a reference, not a target


def _reference_share(args: tuple) -> int:
    settings, directory, first_chars, layout, batch_size = args
    from sessionshift.redisconn import connect

    client = connect(settings)
    pool = client.connection_pool
    connection = pool.get_connection()
    written = 0
    try:
        batch: list[bytes] = []

        def flush() -> int:
            connection.send_packed_command([b"".join(batch)])
            replies = [connection.read_response() for _ in batch]
            return sum(1 for reply in replies if reply)

        with os.scandir(directory) as entries:
            for entry in entries:
                if entry.name[:1] not in first_chars:
                    continue
                with open(entry.path, "rb") as handle:
                    expiry, value = redis_value(handle.read(), entry.path, formats.value_format())
                batch.append(set_nx_exat(layout.session_key(entry.name), value, expiry))
                if len(batch) >= batch_size:
                    written += flush()
                    batch = []
        if batch:
            written += flush()
    finally:
        pool.release(connection)
        client.close()
    return written


def reference_pipeline(redis: BenchRedis, directory: str, processes: int = 2, batch_size: int = 500,
                       layout: KeyLayout = DEFAULT_LAYOUT) -> Timed:
    """What a bare backfill costs: *processes* forks, each reading, decoding and pipelining
    ``SET NX EXAT`` for its share through redis-py's generic pipeline. Since a logout's
    tombstone lives in the session key, these are the commands migrate sends too (its
    race rules need no script); shown to separate the engine's own cost from redis-py's."""
    import multiprocessing

    hexdigits = "0123456789abcdef"
    shares = [frozenset(hexdigits[i::processes]) for i in range(processes)]
    started = time.perf_counter()
    with multiprocessing.get_context("fork").Pool(processes) as pool:
        written = sum(pool.map(_reference_share, [(redis.settings, directory, share, layout, batch_size)
                                                  for share in shares]))
    return Timed(f"reference: {processes} processes, pipelined SET NX EXAT (redis-py)",
                 time.perf_counter() - started, written)
