"""Issue 3's memory figure: peak RSS of ``sessionshift migrate`` as the corpus grows.

Each size is migrated into a flushed Redis by the CLI in a subprocess; the
process tree's memory is measured as ``bench.procs`` describes (the exact
largest single-process peak from ``wait4``, and the sampled sum over the tree).
"""

from __future__ import annotations

import os
import threading
import time

from . import corpus, engine_runs
from .redisenv import BenchRedis
from .report import linear_fit, target_row

PEAK_RSS_TARGET_MB = 150.0
DEFAULT_SIZES = (50_000, 100_000, 250_000, 500_000, 1_000_000)
QUICK_SIZES = (2_000, 5_000)


class _KeyRate(threading.Thread):
    """Keys in Redis every *interval* seconds while migrate runs: is the rate flat as Redis fills?"""

    def __init__(self, redis: BenchRedis, interval: float = 5.0):
        super().__init__(daemon=True)
        self.client = redis.client()
        self.interval = interval
        self.stop = threading.Event()
        self.samples: list[tuple[float, int, float]] = []  # (seconds, keys, 1-minute load)

    def run(self) -> None:
        started = time.monotonic()
        try:
            while not self.stop.wait(self.interval):
                self.samples.append((round(time.monotonic() - started, 1), self.client.dbsize(),
                                     round(os.getloadavg()[0], 2)))
        finally:
            self.client.close()


def run(redis: BenchRedis, results_dir: str, sizes: tuple[int, ...], log=print) -> dict:
    points = []
    for size in sizes:
        directory = corpus.corpus(results_dir, size, log=log)
        redis.flush()
        sampler = _KeyRate(redis)
        sampler.start()
        try:
            timed, measured, outcome = engine_runs.run_migrate(redis, directory)
        finally:
            sampler.stop.set()
            sampler.join()
        if outcome["counts"]["written"] != size:
            raise RuntimeError(f"migrate of {size:,} wrote {outcome['counts']['written']:,}")
        points.append({"sessions": size, "seconds": round(timed.seconds, 3),
                       "per_second": round(timed.rate, 1), "workers": outcome.get("workers"),
                       **measured.memory_dict(),
                       "hwm_by_process_mb": sorted((round(v, 1) for v in measured.hwm_by_pid_mb.values()),
                                                   reverse=True),
                       "keys_over_time": sampler.samples})
        log(f"  rss: {size:>9,} sessions in {timed.seconds:7.2f}s, largest process "
            f"{measured.peak_rss_max_process_mb:.1f} MB, tree sum {measured.peak_rss_tree_sum_mb:.1f} MB")
    redis.flush()
    largest = points[-1]
    spread = (max(p["peak_rss_max_process_mb"] for p in points)
              - min(p["peak_rss_max_process_mb"] for p in points))
    rows = [target_row("rss", f"largest process at {largest['sessions']:,}",
                       largest["peak_rss_max_process_mb"], PEAK_RSS_TARGET_MB, unit=" MB"),
            target_row("rss", f"tree sum at {largest['sessions']:,}", largest["peak_rss_tree_sum_mb"],
                       PEAK_RSS_TARGET_MB, unit=" MB"),
            target_row("rss", f"largest-process spread {sizes[0]:,}..{sizes[-1]:,}", spread, unit=" MB")]
    result = {"points": points, "max_process_spread_mb": round(spread, 1)}
    if len(points) >= 2:
        result["time_fit"] = linear_fit([p["sessions"] for p in points], [p["seconds"] for p in points])
    return {"results": result, "rows": rows}
