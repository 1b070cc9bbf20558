"""Ratios, targets, the machine description, the end-of-run table and the raw JSON."""

from __future__ import annotations

import datetime
import json
import os
import platform
import subprocess
import sys


def ratio(engine_seconds: float, baseline_seconds: float) -> float:
    """engine time / baseline time: below 1 the engine is faster than the baseline."""
    if baseline_seconds <= 0:
        raise ValueError(f"baseline time must be positive, not {baseline_seconds}")
    return engine_seconds / baseline_seconds


def speedup(engine_seconds: float, baseline_seconds: float) -> float:
    """How many times faster the engine is than the baseline (baseline / engine)."""
    if engine_seconds <= 0:
        raise ValueError(f"engine time must be positive, not {engine_seconds}")
    return baseline_seconds / engine_seconds


def verdict(value: float, target: float, kind: str) -> str:
    """'met' or 'MISSED' for a figure against its target; kind is 'max' or 'min'."""
    if kind == "max":
        return "met" if value <= target else "MISSED"
    if kind == "min":
        return "met" if value >= target else "MISSED"
    raise ValueError(f"kind must be 'max' or 'min', not {kind!r}")


def percentile(values: list[float], fraction: float) -> float:
    """The *fraction* percentile (0-1) by linear interpolation between closest ranks."""
    if not values:
        raise ValueError("percentile of no values")
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction must be within 0..1, not {fraction}")
    ordered = sorted(values)
    position = (len(ordered) - 1) * fraction
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def linear_fit(xs: list[float], ys: list[float]) -> dict:
    """Least-squares y = a*x + b and R^2: how linear cost growth is."""
    if len(xs) != len(ys) or len(xs) < 2:
        raise ValueError("need at least two (x, y) points of equal count")
    n = len(xs)
    mean_x, mean_y = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mean_x) ** 2 for x in xs)
    sxy = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True))
    slope = sxy / sxx
    intercept = mean_y - slope * mean_x
    ss_tot = sum((y - mean_y) ** 2 for y in ys)
    ss_res = sum((y - (slope * x + intercept)) ** 2 for x, y in zip(xs, ys, strict=True))
    return {"slope": slope, "intercept": intercept, "r2": 1.0 - ss_res / ss_tot if ss_tot else 1.0}


# --------------------------------------------------------------------------- machine


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _mem_total_gb() -> float:
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemTotal:"):
                    return round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    return 0.0


def _command_version(command: list[str]) -> str:
    try:
        return subprocess.run(command, capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unavailable"


def machine() -> dict:
    """Where the figures come from: CPU, memory, versions, load when they were taken."""
    import redis

    return {
        "nproc": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "mem_total_gb": _mem_total_gb(),
        "kernel": platform.release(),
        "python": sys.version.split()[0],
        "redis_server": _command_version(["redis-server", "--version"]),
        "redis_cli": _command_version(["redis-cli", "--version"]),
        "redis_py": redis.__version__,
        "loadavg_at_start": os.getloadavg(),
    }


def now_utc() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# --------------------------------------------------------------------------- output


def format_table(rows: list[dict]) -> str:
    """A compact fixed-width table of measure / value / target / verdict rows."""
    headers = ("benchmark", "measure", "value", "target", "verdict")
    cells = [[str(row.get(h, "")) for h in headers] for row in rows]
    widths = [max(len(h), *(len(c[i]) for c in cells)) if cells else len(h)
              for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)),
             "  ".join("-" * w for w in widths)]
    lines += ["  ".join(c.ljust(w) for c, w in zip(cell, widths, strict=True)) for cell in cells]
    return "\n".join(lines)


def target_row(benchmark: str, measure: str, value: float, target: float | None = None,
               kind: str = "max", unit: str = "x") -> dict:
    row = {"benchmark": benchmark, "measure": measure, "value": f"{value:.2f}{unit}"}
    if target is not None:
        row["target"] = f"{'<=' if kind == 'max' else '>='} {target:g}{unit}"
        row["verdict"] = verdict(value, target, kind)
    return row


def save_json(out_dir: str, name: str, document: dict) -> str:
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, f"{name}.json")
    with open(path, "w") as handle:
        json.dump(document, handle, indent=2, sort_keys=True, default=str)
        handle.write("\n")
    return path
