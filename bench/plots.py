"""The figures of docs/benchmarks.md, drawn from one run's measured results (PNG, matplotlib).

Every function takes the result dict a suite returned (as saved in
``bench/results/latest-<suite>.json``) and writes one PNG; nothing here
invents a number.
"""

from __future__ import annotations

import itertools
import os

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")  # no display: files only
import matplotlib.pyplot as plt

PHASE_LABELS = {"file": "1 file", "dual_write": "2 dual_write", "redis_read": "3 redis_read",
                "redis_only": "4 redis_only", "redis": "5 redis"}


def _save(figure, path: str) -> str:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def throughput(results: dict, path: str) -> str:
    """Seconds for each contender of each engine suite (lower is better), floors stacked by part."""
    groups = []
    if "migrate" in results:
        m = results["migrate"]
        groups.append(("migrate", [
            ("seed loop", [("SET+EXPIRE per session", m["seed_loop"]["seconds"])]),
            ("floor", [("read files", m["read_files"]["seconds"]),
                       ("redis-cli --pipe", m["redis_pipe_set"]["seconds"])]),
            ("sessionshift migrate", [("migrate", m["migrate"]["seconds"])]),
        ] + ([("reference\n(redis-py pipeline)", [("reference", m["reference"]["seconds"])])]
             if "reference" in m else [])))
    if "validate" in results:
        v = results["validate"]
        parts = v["floor"]["parts"]
        groups.append(("validate", [
            ("floor", [(name, seconds) for name, seconds in parts.items()]),
            ("sessionshift validate", [("validate", v["validate"]["seconds"])]),
        ]))
    for key in ("export", "export_tmpfs"):
        if key in results:
            e = results[key]
            groups.append((f"export ({e.get('place', 'disk')})", [
                ("floor", [(name, seconds) for name, seconds in e["floor"]["parts"].items()]),
                ("sessionshift export", [("export", e["export"]["seconds"])]),
            ]))
    figure, axes = plt.subplots(1, len(groups), figsize=(4.2 * len(groups), 4.2), squeeze=False)
    palette = ["#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3"]
    for axis, (title, bars) in zip(axes[0], groups, strict=True):
        for index, (_label, parts) in enumerate(bars):
            bottom = 0.0
            for part_index, (part, seconds) in enumerate(parts):
                # One colour per contender; the parts of a floor are told apart by hatching.
                axis.bar(index, seconds, bottom=bottom, color=palette[index % len(palette)],
                         hatch=("", "///", "...")[part_index % 3], edgecolor="black", linewidth=0.5,
                         label=part if len(parts) > 1 else None)
                bottom += seconds
            axis.text(index, bottom, f"{bottom:.1f}s", ha="center", va="bottom", fontsize=8)
        axis.set_xticks(range(len(bars)), [label for label, _ in bars], rotation=15, fontsize=8)
        axis.set_ylabel("seconds (lower is better)")
        axis.set_title(f"{title}: {results.get('sessions', 0):,} sessions")
        if any(len(parts) > 1 for _, parts in bars):
            axis.legend(fontsize=7)
    return _save(figure, path)


def latency(results: dict, path: str) -> str:
    """p50 and p99 per phase and endpoint, milliseconds."""
    phases = [p for p in PHASE_LABELS if p in results["phases"]]
    endpoints = list(results["phases"][phases[0]])
    figure, axes = plt.subplots(1, len(endpoints), figsize=(5.2 * len(endpoints), 4.2), squeeze=False)
    width = 0.38
    for axis, endpoint in zip(axes[0], endpoints, strict=True):
        p50 = [results["phases"][p][endpoint].get("p50_ms", 0) for p in phases]
        p99 = [results["phases"][p][endpoint].get("p99_ms", 0) for p in phases]
        xs = range(len(phases))
        axis.bar([x - width / 2 for x in xs], p50, width, label="p50", color="#4c72b0")
        axis.bar([x + width / 2 for x in xs], p99, width, label="p99", color="#dd8452")
        for x, value in zip(xs, p99, strict=True):
            axis.text(x + width / 2, value, f"{value:.1f}", ha="center", va="bottom", fontsize=7)
        axis.axhline(p99[0], color="#dd8452", linestyle=":", linewidth=1)
        axis.set_xticks(list(xs), [PHASE_LABELS[p] for p in phases], rotation=15, fontsize=8)
        axis.set_ylabel("latency (ms)")
        axis.set_title(f"{endpoint} (concurrency {results['concurrency']}, "
                       f"{results['rounds']} interleaved rounds)", fontsize=9)
        axis.legend(fontsize=8)
    return _save(figure, path)


def rss(results: dict, path: str, target_mb: float = 150.0) -> str:
    """Peak RSS of sessionshift migrate against the corpus size; the largest run's rate over time."""
    points = results["points"]
    sizes = [p["sessions"] for p in points]
    timeline = points[-1].get("keys_over_time") or []
    panels = 2 if len(timeline) > 1 else 1
    figure, axes = plt.subplots(1, panels, figsize=(5.6 * panels, 4.2), squeeze=False)
    axis = axes[0][0]
    axis.plot(sizes, [p["peak_rss_max_process_mb"] for p in points], "o-",
              label="largest process (exact, wait4 ru_maxrss)")
    axis.plot(sizes, [p["peak_rss_tree_sum_mb"] for p in points], "s--",
              label="sum over process tree (sampled VmRSS)")
    axis.axhline(target_mb, color="#c44e52", linestyle=":", label=f"target {target_mb:g} MB")
    axis.set_xscale("log")
    axis.set_xlabel("sessions in the directory")
    axis.set_ylabel("peak RSS (MB)")
    axis.set_ylim(0, max(target_mb * 1.2, *(p["peak_rss_tree_sum_mb"] * 1.1 for p in points)))
    axis.set_title("sessionshift migrate: memory vs corpus size")
    axis.legend(fontsize=8)
    if len(timeline) > 1:
        right = axes[0][1]
        keys = [keys for _t, keys, _load in timeline]
        rates = [(k1 - k0) / (t1 - t0) for (t0, k0, _), (t1, k1, _) in itertools.pairwise(timeline)]
        right.plot(keys[1:], rates, ".-", color="#4c72b0", label="sessions/s (5 s windows)")
        right.set_xlabel(f"keys in Redis during the {points[-1]['sessions']:,} run")
        right.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda x, _pos: f"{x / 1000:,.0f}k"))
        right.set_ylabel("sessions / second")
        right.set_ylim(bottom=0)
        load_axis = right.twinx()
        load_axis.plot(keys[1:], [load for _t, _k, load in timeline[1:]], ":", color="#c44e52",
                       label="1-minute load average")
        load_axis.set_ylabel("load average", color="#c44e52")
        load_axis.set_ylim(bottom=0)
        right.set_title("rate as Redis fills (and the machine's load)")
        right.legend(fontsize=8, loc="lower left")
        load_axis.legend(fontsize=8, loc="lower right")
    return _save(figure, path)


def scale(results: dict, path: str) -> str:
    """Wall time and throughput of the 4-host parallel backfill against the total size."""
    points = results["standalone"]
    sizes = [p["total_sessions"] for p in points]
    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    left.plot(sizes, [p["wall_seconds"] for p in points], "o-", label="ansible-playbook wall time")
    left.plot(sizes, [p["slowest_host_seconds"] for p in points], "s--",
              label="slowest host (module elapsed)")
    if "cluster" in results:
        c = results["cluster"]
        left.plot([c["total_sessions"]], [c["wall_seconds"]], "D", color="#c44e52",
                  label="cluster mode, wall time")
    left.set_xlabel("sessions over 4 hosts")
    left.set_ylabel("seconds")
    left.set_title("cost vs size")
    left.legend(fontsize=8)
    right.plot(sizes, [p["total_per_second"] for p in points], "o-", label="total")
    for host in points[0]["hosts"]:
        right.plot(sizes, [p["hosts"][host]["per_second"] for p in points], ".:", label=host)
    right.set_xlabel("sessions over 4 hosts")
    right.set_ylabel("sessions / second")
    right.set_title("throughput")
    right.legend(fontsize=7)
    return _save(figure, path)
