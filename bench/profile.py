"""Where an engine's time goes: cProfile of one engine run, in-process, one worker.

    python -m bench.profile migrate --sessions 50000
    python -m bench.profile validate --sessions 50000
    python -m bench.profile export --sessions 50000

Starts the same TLS + ACL redis-server as the benchmarks, prepares Redis as
the engine expects it (empty for migrate, filled for validate and export),
and prints the functions with the most cumulative and own time. One worker
and in-process, so the profile sees all of the work; the wall time printed
alongside is the profiled one (cProfile slows pure-Python code down).
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import shutil
import sys
import tempfile
import time

from . import baselines, corpus
from .redisenv import bench_redis

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _engine_call(engine: str, redis, directory: str, scratch: str):
    from sessionshift.keys import KeyLayout

    if engine == "migrate":
        from sessionshift.migrate import MigrateConfig, migrate

        return lambda: migrate(redis.settings, MigrateConfig(session_dir=directory, workers=1))
    client = redis.client()
    if engine == "validate":
        from sessionshift.validate import ValidateConfig, validate

        return lambda: validate(client, ValidateConfig(session_dir=directory, workers=1))
    from sessionshift.export import export_sessions

    target = os.path.join(scratch, "export")
    os.makedirs(target)
    return lambda: export_sessions(client, KeyLayout(), target, workers=1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.profile")
    parser.add_argument("engine", choices=("migrate", "validate", "export"))
    parser.add_argument("--sessions", type=int, default=50_000)
    parser.add_argument("--out", default=os.path.join(ROOT, "bench", "results"))
    parser.add_argument("--top", type=int, default=30)
    args = parser.parse_args(argv)
    directory = corpus.corpus(args.out, args.sessions)
    baselines.read_files(directory)  # page cache, as in the benchmarks
    scratch = tempfile.mkdtemp(prefix="bench-profile-", dir=args.out)
    try:
        with bench_redis() as redis:
            if args.engine != "migrate":
                commands = os.path.join(scratch, "set.resp")
                count = baselines.write_set_commands(directory, commands)
                baselines.redis_pipe(redis, commands, count)
            call = _engine_call(args.engine, redis, directory, scratch)
            profiler = cProfile.Profile()
            started = time.perf_counter()
            profiler.enable()
            call()
            profiler.disable()
            seconds = time.perf_counter() - started
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    print(f"{args.engine}: {args.sessions:,} sessions in {seconds:.2f}s under cProfile (1 worker)")
    for order in ("cumulative", "tottime"):
        text = io.StringIO()
        pstats.Stats(profiler, stream=text).sort_stats(order).print_stats(args.top)
        print(text.getvalue())
    return 0


if __name__ == "__main__":
    sys.exit(main())
