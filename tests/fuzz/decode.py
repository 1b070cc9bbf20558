"""Fuzz every decode path with generated session files and Redis values.

    python -m tests.fuzz.decode --decodes 1000000 --seed 1     # make fuzz
    python -m tests.fuzz.decode --decodes 3000 --child          # one process, no forking

Inputs come from a seeded generator (the same seed gives the same inputs), in
families: random opcode sequences; valid pickles of random session values
(shared and deep structures, every protocol) and mutations of them; hostile
constructions (allowed and forbidden globals called through REDUCE / NEWOBJ /
BUILD / INST / OBJ, copyreg._reconstructor, bytearray and codecs with odd
arguments, deep nesting, shared-reference expansion, huge declared sizes,
many small values); cachelib headers of both styles (4-byte struct and pickled
int) in front of any of these; msgpack and JSON values.

Each input goes through the decode paths it belongs to (a file through
``parse_cachelib_bytes`` and, for a sample, through the readers that open
files; a Redis value through ``decode_value``), then every decoded session
through ``encode_value`` (msgpack, pickle) and ``same_for_app``, as the
engines and the app would. Outcomes:

* ok / refused: the value decoded, or a SessionFileError / SessionValueError
  said why not: both are fine;
* traceback: any other exception (a bug: the caller would not expect it);
* hang: one input used more than ``--hang-seconds`` of CPU (SIGPROF), or a chunk
  ran past ``--chunk-timeout`` seconds of wall time;
* crash: a worker process died (segfault, OOM kill).

The parent runs chunks in child processes (``nice`` the whole command, it is
CPU-bound) and reports counts and the peak RSS of the children; it exits 1 if
anything but ok and refused was seen, or the peak RSS passed ``--max-rss-mb``.
"""

from __future__ import annotations

import argparse
import collections
import datetime
import decimal
import json
import os
import pickle
import pickletools
import random
import resource
import signal
import struct
import subprocess
import sys
import tempfile
import time
import traceback
import uuid

import msgspec

from sessionshift import formats

FORBIDDEN = [("os", "system"), ("posix", "system"), ("builtins", "eval"), ("builtins", "exec"),
             ("builtins", "getattr"), ("builtins", "__import__"), ("subprocess", "Popen"),
             ("functools", "partial"), ("builtins", "type"), ("builtins", "open"), ("pickle", "loads"),
             ("collections", "OrderedDict"), ("builtins", "print"), ("__builtin__", "eval"),
             ("sessionshift.safepickle", "_reconstructor")]
ALLOWED = [("copyreg", "_reconstructor"), ("copy_reg", "_reconstructor"), ("builtins", "object"),
           ("__builtin__", "object"), ("builtins", "bytearray"), ("__builtin__", "bytearray"),
           ("codecs", "encode"), ("_codecs", "encode"), ("builtins", "set"), ("builtins", "frozenset"),
           ("builtins", "complex"), ("builtins", "slice"), ("datetime", "datetime"), ("datetime", "date"),
           ("datetime", "time"), ("datetime", "timedelta"), ("datetime", "timezone"), ("uuid", "UUID"),
           ("decimal", "Decimal")]
ARG_OPS = list(pickletools.opcodes)


class Hang(BaseException):
    """One input ran past the per-input limit."""


# --------------------------------------------------------------------------- generators


LIVE_EXPIRY = 4_000_000_000  # 2096: a live session for any run of the fuzzer


class Generator:
    """Inputs as (kind, bytes); kind is "file", "pickle", "msgpack" or "seed"."""

    def __init__(self, seed: int, marker: str):
        self.rng = random.Random(seed)
        self.marker = marker  # a command/file a successful code execution would create

    # -- small pieces --------------------------------------------------------------
    def text(self, limit: int = 24) -> str:
        rng = self.rng
        return "".join(rng.choice("abcxyz_:é日\x00\n") for _ in range(rng.randint(0, limit)))

    def scalar(self):
        rng = self.rng
        kind = rng.randrange(14)
        return [lambda: rng.randint(-2 ** 70, 2 ** 70), lambda: rng.randint(-5, 300), rng.random,
                lambda: self.text(), lambda: self.text().encode(), lambda: None, lambda: rng.random() < 0.5,
                lambda: datetime.datetime(2020, 1, 1) + datetime.timedelta(seconds=rng.randint(0, 10 ** 9)),
                lambda: uuid.UUID(int=rng.getrandbits(128)),
                lambda: decimal.Decimal(rng.randint(0, 10 ** 9)) / 7,
                lambda: bytearray(self.text().encode()), lambda: complex(rng.random(), rng.random()),
                lambda: datetime.timedelta(days=rng.randint(-999, 999)),
                lambda: datetime.timezone(datetime.timedelta(minutes=rng.randint(-600, 600)))][kind]()

    def value(self, depth: int, shared: list):
        rng = self.rng
        if depth <= 0 or rng.random() < 0.35:
            return self.scalar()
        if shared and rng.random() < 0.15:
            return rng.choice(shared)
        kind = rng.randrange(5)
        size = rng.randint(0, 6)
        if kind == 0:
            made = {self.text(8): self.value(depth - 1, shared) for _ in range(size)}
        elif kind == 1:
            made = [self.value(depth - 1, shared) for _ in range(size)]
        elif kind == 2:
            made = tuple(self.value(depth - 1, shared) for _ in range(size))
        elif kind == 3:
            made = {item for item in (self.scalar() for _ in range(size)) if not isinstance(item, bytearray)}
        else:
            made = frozenset(self.text(4) for _ in range(size))
        shared.append(made)
        return made

    def session(self) -> dict:
        return {self.text(10): self.value(self.rng.randint(0, 6), []) for _ in range(self.rng.randint(0, 8))}

    # -- pickles -------------------------------------------------------------------
    def valid_pickle(self) -> bytes:
        return pickle.dumps(self.session(), self.rng.randint(0, pickle.HIGHEST_PROTOCOL))

    def mutate(self, data: bytes) -> bytes:
        rng = self.rng
        data = bytearray(data)
        for _ in range(rng.randint(1, 4)):
            action = rng.randrange(5)
            if not data:
                break
            at = rng.randrange(len(data))
            if action == 0:
                data[at] ^= 1 << rng.randrange(8)
            elif action == 1:
                del data[at:at + rng.randint(1, 8)]
            elif action == 2:
                data[at:at] = self.opcodes(rng.randint(1, 6))
            elif action == 3:
                data = data[:at]
            else:
                data[at:at] = rng.choice([b"h\x00", b"j\x00\x00\x00\x00", b"g0\n", b"(", b"t", b"R", b"b",
                                          b"\x81"])
        return bytes(data)

    def arg(self, name: str | None) -> bytes:
        rng = self.rng
        huge = rng.random() < 0.1
        size = rng.choice([0, 1, 7, 2 ** 31 - 1, 2 ** 32 - 1, 2 ** 63]) if huge else rng.randint(0, 12)
        body = bytes(rng.getrandbits(8) for _ in range(min(size, 12)))
        if name is None:
            return b""
        if name in ("uint1", "bytes1", "string1", "unicodestring1", "long1"):
            return bytes([min(size, 255)]) + body[:size]
        if name in ("uint2",):
            return struct.pack("<H", rng.getrandbits(16))
        if name in ("int4", "uint4", "string4", "bytes4", "unicodestring4", "long4"):
            return struct.pack("<I", min(size, 2 ** 32 - 1)) + body
        if name in ("uint8", "bytes8", "unicodestring8", "bytearray8"):
            return struct.pack("<Q", min(size, 2 ** 64 - 1)) + body
        if name == "float8":
            return struct.pack(">d", rng.random())
        if name in ("decimalnl_short", "decimalnl_long"):
            return str(rng.randint(-10 ** 6, 10 ** 6)).encode() + rng.choice([b"", b"L"]) + b"\n"
        if name == "floatnl":
            return rng.choice([b"1.5", b"nan", b"1e999", b"x"]) + b"\n"
        if name == "stringnl_noescape_pair":
            module, qualname = rng.choice(ALLOWED + FORBIDDEN)
            return f"{module}\n{qualname}\n".encode()
        if name in ("stringnl", "stringnl_noescape", "unicodestringnl"):
            return rng.choice([b"'abc'", b"abc", b"S'x'", b"0", b"'\\x00'"]) + b"\n"
        return body

    def opcodes(self, count: int) -> bytes:
        rng = self.rng
        out = []
        for _ in range(count):
            op = rng.choice(ARG_OPS)
            out.append(op.code.encode("latin-1") + self.arg(op.arg.name if op.arg else None))
        return b"".join(out)

    def global_ref(self, module: str, name: str, protocol: int) -> bytes:
        if protocol >= 4 and self.rng.random() < 0.5:
            return (b"\x8c" + bytes([len(module)]) + module.encode() + b"\x8c" + bytes([len(name)])
                    + name.encode() + b"\x93")  # SHORT_BINUNICODE x2, STACK_GLOBAL
        return b"c" + module.encode() + b"\n" + name.encode() + b"\n"

    def small_pickle_arg(self) -> bytes:
        rng = self.rng
        choice = rng.randrange(8)
        if choice == 0:
            return b"J" + struct.pack("<i", rng.choice([600_000_000, -1, 2 ** 31 - 1, 5, 0]))
        if choice == 1:
            command = f"touch {self.marker}".encode()
            return b"X" + struct.pack("<I", len(command)) + command
        if choice == 2:
            return b"N"
        if choice == 3:
            return self.global_ref(*rng.choice(ALLOWED + FORBIDDEN), 4)
        if choice == 4:
            return b"X\x06\x00\x00\x00latin1"
        if choice == 5:
            return b"}"
        if choice == 6:
            return b"C\x03abc"
        return b"X\x03\x00\x00\x00bz2"

    def hostile_pickle(self) -> bytes:
        rng = self.rng
        family = rng.randrange(7)
        proto = rng.randint(2, 5)
        head = b"\x80" + bytes([proto])
        if family == 0:  # a global called with random arguments, through one of the call opcodes
            module, name = rng.choice(ALLOWED + FORBIDDEN)
            args = b"".join(self.small_pickle_arg() for _ in range(rng.randint(0, 3)))
            how = rng.randrange(5)
            if how == 0:
                body = self.global_ref(module, name, proto) + b"(" + args + b"tR"
            elif how == 1:
                body = self.global_ref(module, name, proto) + b"(" + args + b"t\x81"
            elif how == 2:
                body = self.global_ref(module, name, proto) + b"(" + args + b"t}\x92"
            elif how == 3:
                body = b"(" + args + b"i" + module.encode() + b"\n" + name.encode() + b"\n"
            else:
                body = b"(" + self.global_ref(module, name, proto) + args + b"o"
            if rng.random() < 0.4:
                body += b"}X\x03\x00\x00\x00intJ\x05\x00\x00\x00sb"
            return head + b"}X\x01\x00\x00\x00x" + body + b"s."
        if family == 1:  # _reconstructor with any class and base
            cls = self.global_ref(*rng.choice(ALLOWED + FORBIDDEN), proto)
            base = self.global_ref(*rng.choice([("builtins", "object"), ("builtins", "set"),
                                                ("builtins", "int")]), proto)
            state = rng.choice([b"N", b"}", b"J\x05\x00\x00\x00"])
            build = rng.choice([b"", b"}X\x03\x00\x00\x00intJ\x05\x00\x00\x00sb", b"Nb"])
            return (head + b"}X\x01\x00\x00\x00x" + self.global_ref("copyreg", "_reconstructor", proto)
                    + b"(" + cls + base + state + b"tR" + build + b"s.")
        if family == 2:  # deep nesting, with or without memo references
            depth = rng.choice([50, 99, 100, 101, 500, 2000, 20000])
            opener = rng.choice([b"]", b"}", b")", b"(]"])
            if opener == b"]":
                return head + b"}X\x01\x00\x00\x00x" + b"]" * depth + b"a" * (depth - 1) + b"s."
            return head + b"}X\x01\x00\x00\x00x" + opener * depth + b"."
        if family == 3:  # shared-reference expansion
            value: object = ["A" * rng.randint(1, 200)]
            for _ in range(rng.randint(1, 12)):
                value = [value] * rng.randint(2, 40)
            if rng.random() < 0.3:
                value = {"x": value, "t": (value, value)}
            return pickle.dumps({"x": value}, proto)
        if family == 4:  # huge declared sizes
            op = rng.choice([b"\x96", b"\x8e", b"\x8d", b"B", b"X", b"T", b"\x95"])
            size = rng.choice([2 ** 31 - 1, 2 ** 32 - 1, 600_000_000, 2 ** 40])
            packed = struct.pack("<Q", size) if op in (b"\x96", b"\x8e", b"\x8d", b"\x95") \
                else struct.pack("<I", min(size, 2 ** 32 - 1))
            return head + op + packed + b"abc."
        if family == 5:  # many small values: the object budget, counted while decoding
            # Past 64 KiB the counting unpickler runs (slow by design): rare, so a run stays short.
            large = rng.random() < 1 / 300
            count = rng.choice([70_000, 300_000, 1_100_000] if large else [100, 1000, 30_000, 60_000])
            item = rng.choice([b"]", b"}", b"N", b"K\x01", b")"])
            return head + b"](" + item * count + b"e."
        # a pickle in a pickle's memo, persistent ids, extension codes
        return head + rng.choice([b"P0\n.", b"Q.", b"\x82\x01.", b"\x83\x01\x00.", b"\x84\x01\x00\x00\x00.",
                                  b"X\x01\x00\x00\x00aQ."])

    def payload(self) -> bytes:
        rng = self.rng
        family = rng.randrange(10)
        if family < 3:
            return self.valid_pickle()
        if family < 5:
            return self.mutate(self.valid_pickle())
        if family < 8:
            return self.hostile_pickle()
        if family == 8:
            return b"\x80" + bytes([rng.randint(0, 5)]) + self.opcodes(rng.randint(1, 30))
        return bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 64)))

    def header(self) -> bytes:
        rng = self.rng
        # A fixed far-future expiry, not the clock: a seed must give the same inputs
        # whenever it runs (a second boundary between two runs made them differ).
        expiry = rng.choice([0, LIVE_EXPIRY, rng.getrandbits(32), 128, 0x80808080])
        if rng.random() < 0.6:
            return struct.pack("I", expiry)
        return pickle.dumps(rng.choice([expiry, -1, "x", None]), rng.randint(0, 5))

    def next(self) -> tuple[str, bytes]:
        rng = self.rng
        roll = rng.random()
        if roll < 0.6:
            return "file", self.header() + self.payload() if rng.random() < 0.95 else self.payload()
        if roll < 0.85:
            return "pickle", self.payload()
        if roll < 0.95:
            if rng.random() < 0.5:
                return "msgpack", msgspec.msgpack.encode(_msgpackable(self.session()))
            return "msgpack", self.mutate(msgspec.msgpack.encode(_msgpackable(self.session())))
        depth = rng.choice([1, 50, 150, 5000])
        text = json.dumps({"data": {"u": "[" * depth + "]" * depth}, "expires": 0}) \
            if rng.random() < 0.5 else '{"x": ' + "[" * depth + "]" * depth + "}"
        return "seed", text.encode()


def _msgpackable(value):
    if isinstance(value, dict):
        return {str(k): _msgpackable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_msgpackable(v) for v in value]
    if isinstance(value, bytes | str | int | float | bool) or value is None:
        return value if not isinstance(value, int) or -2 ** 63 <= value < 2 ** 64 else 0
    return str(value)


# --------------------------------------------------------------------------- running


def _after_decode(data: dict) -> None:
    """What the engines and the app do with a decoded session."""
    for serializer in formats.SERIALIZERS:
        try:
            encoded = formats.encode_value(data, serializer)
        except formats.SessionValueError:
            continue
        formats.same_for_app(data, encoded, serializer)


def run_one(kind: str, raw: bytes, tmpdir: str, through_files: bool) -> str:
    """One input through its decode paths; 'ok' or 'refused' (anything else raises)."""
    outcome = "ok"
    try:
        if kind == "file":
            _expiry, data, _style = formats.parse_cachelib_bytes(raw, "fuzz")
            _after_decode(data)
        elif kind in ("pickle", "msgpack"):
            _after_decode(formats.decode_value(raw, kind))
        else:
            path = os.path.join(tmpdir, "sess_fuzz")
            with open(path, "wb") as handle:
                handle.write(raw)
            _after_decode(formats.read_session_file(path).data)
    except (formats.SessionFileError, formats.SessionValueError):
        outcome = "refused"
    if through_files and kind == "file":  # the readers that open files: scans, the app, export
        name = formats.session_file_name("fuzz")
        path = os.path.join(tmpdir, name)
        with open(path, "wb") as handle:
            handle.write(raw)
        for read in (lambda: formats.read_session_file(path), lambda: formats.read_live_file(path),
                     lambda: formats.read_entry("session", name, path)):
            try:
                read()
            except formats.SessionFileError:
                pass
    return outcome


def run_chunk(seed: int, count: int, hang_seconds: float, file_every: int = 100) -> dict:
    """Run *count* inputs of generator *seed* in this process; counts and examples of failures."""
    shm = "/dev/shm" if os.path.isdir("/dev/shm") else None
    tmpdir = tempfile.mkdtemp(prefix="sessionshift-fuzz-", dir=shm)
    marker = os.path.join(tmpdir, "pwned")
    generator = Generator(seed, marker)
    counts: collections.Counter = collections.Counter()
    failures: list[str] = []

    def on_alarm(_signum, _frame):
        raise Hang()

    previous = signal.signal(signal.SIGPROF, on_alarm)
    try:
        for index in range(count):
            kind, raw = generator.next()
            counts["decodes"] += 1
            counts[f"path:{kind}"] += 1
            # CPU time, not wall time: a starved process on a busy machine is slow, not hung;
            # a decode that blocks (a FIFO) uses no CPU, and the chunk's wall-clock limit catches it.
            signal.setitimer(signal.ITIMER_PROF, hang_seconds)
            try:
                counts[run_one(kind, raw, tmpdir, index % file_every == 0)] += 1
            except Hang:
                counts["hang"] += 1
                failures.append(f"hang: seed {seed} input {index} ({kind}, {len(raw)} bytes)")
            except Exception:
                counts["traceback"] += 1
                failures.append(f"traceback: seed {seed} input {index} ({kind}): "
                                + traceback.format_exc(limit=3)[-600:])
            finally:
                signal.setitimer(signal.ITIMER_PROF, 0)
    finally:
        signal.signal(signal.SIGPROF, previous)
    if os.path.exists(marker):
        counts["executed"] += 1
        failures.append(f"code execution: {marker} was created")
    for name in os.listdir(tmpdir):
        os.unlink(os.path.join(tmpdir, name))
    os.rmdir(tmpdir)
    counts["max_rss_kb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"counts": dict(counts), "failures": failures[:20]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--decodes", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--chunk", type=int, default=50_000, help="inputs per child process")
    parser.add_argument("--hang-seconds", type=float, default=10.0)
    parser.add_argument("--max-rss-mb", type=float, default=256.0)
    parser.add_argument("--jobs", type=int, default=2, help="child processes at once")
    parser.add_argument("--start-chunk", type=int, default=0,
                        help="skip the chunks before this one (to finish an interrupted run)")
    parser.add_argument("--skip-chunks", default="", help="comma-separated chunk numbers already done")
    parser.add_argument("--chunk-timeout", type=float, default=3600.0,
                        help="seconds before a chunk counts as a hang")
    parser.add_argument("--child", action="store_true", help="run in this process and print JSON")
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(run_chunk(args.seed, args.decodes, args.hang_seconds)))
        return 0
    started = time.monotonic()
    totals: collections.Counter = collections.Counter()
    failures: list[str] = []
    peak_kb = 0
    chunks = (args.decodes + args.chunk - 1) // args.chunk
    skip = {int(number) for number in args.skip_chunks.split(",") if number}
    pending = [number for number in range(args.start_chunk, chunks) if number not in skip]
    running: dict[int, tuple[subprocess.Popen, float]] = {}
    finished = 0
    while pending or running:
        while pending and len(running) < args.jobs:
            number = pending.pop(0)
            seed = args.seed * 1_000_003 + number
            count = min(args.chunk, args.decodes - number * args.chunk)
            command = [sys.executable, "-m", "tests.fuzz.decode", "--child", "--seed", str(seed),
                       "--decodes", str(count), "--hang-seconds", str(args.hang_seconds)]
            process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            running[number] = (process, time.monotonic())
        time.sleep(0.5)
        for number, (process, since) in list(running.items()):
            seed = args.seed * 1_000_003 + number
            if process.poll() is None:
                if time.monotonic() - since > args.chunk_timeout:
                    process.kill()
                    process.communicate()
                    del running[number]
                    totals["hang"] += 1
                    failures.append(f"chunk seed {seed} ran past {args.chunk_timeout:.0f} s")
                continue
            out, err = process.communicate()
            del running[number]
            finished += 1
            if process.returncode != 0:
                totals["crash"] += 1
                failures.append(f"chunk seed {seed}: exit {process.returncode}: {err[-600:]}")
                continue
            if err.strip():
                totals["stderr_lines"] += len(err.strip().splitlines())
                failures.append(f"chunk seed {seed} wrote to stderr: {err[-300:]}")
            report = json.loads(out)
            chunk_counts = dict(report["counts"])
            peak_kb = max(peak_kb, chunk_counts.pop("max_rss_kb"))
            totals.update(chunk_counts)
            failures.extend(report["failures"])
            rss_kb = report["counts"]["max_rss_kb"]
            print(f"chunk {finished}/{chunks} (seed {seed}, peak RSS {rss_kb} kB): "
                  f"{dict(sorted(chunk_counts.items()))}",
                  file=sys.stderr, flush=True)
    summary = {"seed": args.seed, "elapsed_seconds": round(time.monotonic() - started, 1),
               "peak_rss_mb": round(peak_kb / 1024, 1), "max_rss_mb": args.max_rss_mb,
               **{name: totals[name] for name in ("decodes", "ok", "refused", "traceback", "hang", "crash",
                                                   "executed", "stderr_lines")},
               "paths": {name[5:]: value for name, value in sorted(totals.items())
                         if name.startswith("path:")},
               "failures": failures[:20]}
    print(json.dumps(summary, indent=2))
    bad = any(totals[name] for name in ("traceback", "hang", "crash", "executed", "stderr_lines"))
    return 1 if bad or peak_kb / 1024 > args.max_rss_mb else 0


if __name__ == "__main__":
    sys.exit(main())
