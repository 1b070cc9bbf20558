"""Issue 3's throughput figures: migrate, validate and export against their baselines, one run.

Contenders take turns in rounds (floor, engine, floor, engine, ...) on the
same corpus and the same Redis, flushed before every contender that writes;
the median of the rounds is reported. The seed's loop is slow (two round
trips per session), so it runs once. Files are read once before timing, so
every contender reads from the page cache (the corpus fits in memory).
"""

from __future__ import annotations

import os
import shutil
import statistics
import tempfile
import time

from . import baselines, engine_runs
from .baselines import Timed
from .redisenv import BenchRedis
from .report import ratio, speedup, target_row

TARGETS = {
    "migrate_vs_seed_loop_speedup": 15.0,  # at least
    "migrate_vs_floor": 1.0,  # at most
    "validate_vs_floor": 1.0,
    "export_vs_floor": 1.5,
}


SHM = "/dev/shm"


def _median(runs: list[Timed]) -> Timed:
    ordered = sorted(runs, key=lambda run: run.seconds)
    middle = ordered[len(ordered) // 2]
    return Timed(middle.name, statistics.median(run.seconds for run in runs), middle.count,
                 {**middle.detail, "rounds": [round(run.seconds, 4) for run in runs]})


def _commands_file(directory: str, kind: str, writer) -> tuple[str, int]:
    """The RESP commands for *directory*, generated once per corpus (not timed)."""
    path = f"{directory}.{kind}.resp"
    stamp = os.path.getmtime(directory + ".json")
    count_path = path + ".count"
    if os.path.exists(path) and os.path.getmtime(path) > stamp and os.path.exists(count_path):
        with open(count_path) as handle:
            return path, int(handle.read())
    count = writer(directory, path + ".partial")
    os.replace(path + ".partial", path)
    with open(count_path, "w") as handle:
        handle.write(str(count))
    return path, count


def _remove_and_settle(directory: str) -> None:
    """Delete a written directory and let the file system settle before the next contender.

    Removing 200,000 files leaves ext4 (mounted with discard here) busy for a while; without a
    sync and a pause, that work lands in whichever contender creates files next.
    """
    shutil.rmtree(directory)
    os.sync()
    time.sleep(3)


def _expect(what: str, got: int | None, expected: int) -> None:
    if got != expected:
        raise RuntimeError(f"{what}: expected {expected:,} sessions, got {got}")


def run(redis: BenchRedis, directory: str, sessions: int, scratch: str, *, rounds: int = 3,
        export_rounds: int | None = None, suites: tuple[str, ...] = ("migrate", "validate", "export"),
        log=print) -> dict:
    """Every contender of the selected suites; returns their results and the ratio rows."""
    log(f"throughput: {sessions:,} sessions, {rounds} round(s), warming the page cache")
    baselines.read_files(directory)
    set_file, set_count = _commands_file(directory, "set", baselines.write_set_commands)
    _expect("SET commands", set_count, sessions)
    results: dict = {"sessions": sessions, "rounds": rounds}
    rows: list[dict] = []
    reads: list[Timed] = []

    def timed_read() -> Timed:
        done = baselines.read_files(directory)
        _expect("read files", done.count, sessions)
        reads.append(done)
        return done

    if "migrate" in suites:
        pipes, engines, references = [], [], []
        for index in range(rounds):
            timed_read()
            redis.flush()
            pipes.append(baselines.redis_pipe(redis, set_file, set_count, "redis-cli --pipe SET NX EXAT"))
            _expect("redis-cli --pipe", redis.dbsize(), sessions)
            redis.flush()
            timed, _measured, outcome = engine_runs.run_migrate(redis, directory)
            _expect("migrate written", outcome["counts"]["written"], sessions)
            engines.append(timed)
            redis.flush()
            references.append(baselines.reference_pipeline(redis, directory))
            _expect("reference pipeline", references[-1].count, sessions)
            log(f"  round {index + 1}: read {reads[-1].seconds:.2f}s + pipe {pipes[-1].seconds:.2f}s, "
                f"migrate {timed.seconds:.2f}s, reference {references[-1].seconds:.2f}s")
        redis.flush()
        seed = baselines.seed_loop(redis, directory)
        _expect("seed loop", redis.dbsize(), sessions)
        log(f"  seed loop {seed.seconds:.2f}s")
        read, pipe, migrate = _median(reads), _median(pipes), _median(engines)
        reference = _median(references)
        floor = baselines.floor(read, pipe, "floor: read files + redis-cli --pipe SET")
        results["migrate"] = {"floor": floor.as_dict(), "read_files": read.as_dict(),
                              "redis_pipe_set": pipe.as_dict(), "seed_loop": seed.as_dict(),
                              "migrate": migrate.as_dict(), "reference": reference.as_dict(),
                              "reference_ratio_vs_floor": ratio(reference.seconds, floor.seconds),
                              "speedup_vs_seed_loop": speedup(migrate.seconds, seed.seconds),
                              "ratio_vs_floor": ratio(migrate.seconds, floor.seconds),
                              "engine_only_ratio_vs_floor": ratio(migrate.detail["engine_elapsed"],
                                                                  floor.seconds)}
        rows.append(target_row("migrate", "speed-up vs seed loop", speedup(migrate.seconds, seed.seconds),
                               TARGETS["migrate_vs_seed_loop_speedup"], "min"))
        rows.append(target_row("migrate", "time / floor", ratio(migrate.seconds, floor.seconds),
                               TARGETS["migrate_vs_floor"]))
        rows.append(target_row("migrate", "engine's own elapsed / floor (no start-up)",
                               ratio(migrate.detail["engine_elapsed"], floor.seconds)))
        rows.append(target_row("migrate", "reference SET NX pipeline / floor (info)",
                               ratio(reference.seconds, floor.seconds)))

    if "validate" in suites:
        redis.flush()
        _timed, _measured, outcome = engine_runs.run_migrate(redis, directory)  # the state to validate
        _expect("migrate before validate", outcome["counts"]["written"], sessions)
        engines, floor_reads = [], []
        for index in range(rounds):
            floor_reads.append(timed_read())
            timed, _measured, outcome = engine_runs.run_validate(redis, directory)
            _expect("validate consistent", outcome["counts"]["consistent"], sessions)
            engines.append(timed)
            log(f"  round {index + 1}: read {floor_reads[-1].seconds:.2f}s, validate {timed.seconds:.2f}s")
        validate = _median(engines)
        block = {"validate": validate.as_dict()}
        if "migrate" in results:
            # The target is against the backfill's floor, measured above in this run.
            floor_seconds = results["migrate"]["floor"]["seconds"]
            block["floor"] = results["migrate"]["floor"]
        else:
            redis.flush()
            pipe = baselines.redis_pipe(redis, set_file, set_count, "redis-cli --pipe SET NX EXAT")
            floor = baselines.floor(_median(floor_reads), pipe, "floor: read files + redis-cli --pipe SET")
            floor_seconds = floor.seconds
            block["floor"] = floor.as_dict()
        block["ratio_vs_floor"] = ratio(validate.seconds, floor_seconds)
        results["validate"] = block
        rows.append(target_row("validate", "time / floor", ratio(validate.seconds, floor_seconds),
                               TARGETS["validate_vs_floor"]))

    if "export" in suites:
        if redis.dbsize() != sessions:
            redis.flush()
            baselines.redis_pipe(redis, set_file, set_count)
        files = baselines.load_files(directory)
        os.sync()
        results["export_rounds"] = export_rounds or rounds
        for key, place, label in _export_places(scratch):
            results[key] = _export_part(redis, files, sessions, place, label, export_rounds or rounds, log)
            rows.append(target_row("export", f"time / floor ({label})", results[key]["ratio_vs_floor"],
                                   TARGETS["export_vs_floor"]))
            if place != scratch:
                shutil.rmtree(place, ignore_errors=True)
        del files
    results["finished_at"] = time.time()
    return {"results": results, "rows": rows}


def _export_places(scratch: str) -> list[tuple[str, str, str]]:
    """(result key, directory, label): the disk the benchmark runs on and, when there is one, a tmpfs.

    Creating files on this machine's disk stalls now and then for 100+ us per
    file (measured: the same 10,000 creations took 4 us/file or 136 us/file
    from one round to the next), for the floor and the engine alike; the
    tmpfs run shows what the export itself costs against plain Python.
    """
    places = [("export", scratch, "disk")]
    if os.path.isdir(SHM):
        free = os.statvfs(SHM)
        if free.f_bavail * free.f_frsize > 2 << 30:  # two copies of 200,000 files fit easily
            places.append(("export_tmpfs", tempfile.mkdtemp(prefix="sessionshift-bench-", dir=SHM), "tmpfs"))
    return places


def _export_part(redis: BenchRedis, files: list[tuple[str, bytes]], sessions: int, place: str, label: str,
                 rounds: int, log) -> dict:
    """Export rounds in *place*: plain Python writing the files + redis-cli --scan, then the engine."""
    writes, scans, engines = [], [], []
    for index in range(rounds):
        target = os.path.join(place, f"export-floor-{index}")
        writes.append(baselines.write_files(target, files))
        scans.append(baselines.redis_scan(redis, "session:h:{*}", os.path.join(place, "keys.txt")))
        _expect("redis-cli --scan", scans[-1].count, sessions)
        _remove_and_settle(target)
        target = os.path.join(place, f"export-engine-{index}")
        timed, _measured, outcome = engine_runs.run_export(redis, target)
        _expect("export written", outcome.get("written"), sessions)
        engines.append(timed)
        _remove_and_settle(target)
        log(f"  export on {label}, round {index + 1}: write {writes[-1].seconds:.2f}s + scan "
            f"{scans[-1].seconds:.2f}s, export {timed.seconds:.2f}s")
    floor = baselines.floor(_median(writes), _median(scans),
                            f"floor on {label}: write files (plain Python) + redis-cli --scan")
    export = _median(engines)
    export.name = f"sessionshift export on {label}"
    return {"floor": floor.as_dict(), "export": export.as_dict(), "place": label,
            "ratio_vs_floor": ratio(export.seconds, floor.seconds)}
