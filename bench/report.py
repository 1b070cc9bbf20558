"""Ratios, targets, the machine description, the end-of-run table and the raw JSON."""

from __future__ import annotations

import datetime
import json
import os
import platform
import subprocess
import sys
import time


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


def _cpu_ticks() -> dict[int, tuple[str, int]]:
    ticks = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as handle:
                text = handle.read()
        except OSError:
            continue
        command = text[text.find("(") + 1:text.rfind(")")]
        fields = text[text.rfind(")") + 2:].split()
        ticks[int(name)] = (command, int(fields[11]) + int(fields[12]))  # utime + stime
    return ticks


def busy_processes(interval: float = 1.0, min_percent: float = 10.0) -> list[str]:
    """Processes that used at least *min_percent* of a CPU over *interval* seconds: what else ran."""
    before = _cpu_ticks()
    time.sleep(interval)
    after = _cpu_ticks()
    hertz = os.sysconf("SC_CLK_TCK")
    busy = []
    for pid, (command, ticks) in after.items():
        used = 100.0 * (ticks - before.get(pid, (command, ticks))[1]) / hertz / interval
        if used >= min_percent and pid != os.getpid():
            busy.append((used, f"{command} {used:.0f}%"))
    return [text for _used, text in sorted(busy, reverse=True)[:10]]


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


# --------------------------------------------------------------------------- docs/benchmarks.md


def _machine_line(meta: dict) -> str:
    m = meta["machine"]
    return (f"{m['nproc']} CPUs ({m['cpu_model']}), {m['mem_total_gb']} GB RAM, Linux {m['kernel']}, "
            f"Python {m['python']}, {m['redis_server'].split(' sha=')[0]}, redis-py {m['redis_py']}")


def _load(values) -> str:
    return ", ".join(f"{value:.2f}" for value in values) if values else "unknown"


def _rows_table(rows: list[dict]) -> list[str]:
    lines = ["| benchmark | measure | value | target | verdict |", "|---|---|---|---|---|"]
    lines += [f"| {r['benchmark']} | {r['measure']} | {r['value']} | {r.get('target', '')} | "
              f"{r.get('verdict', '')} |" for r in rows]
    return lines


def _contender(t: dict) -> str:
    rounds = ", ".join(f"{r:.2f}" for r in t.get("rounds", [])) or "one run"
    if "parts" in t:  # a floor: the sum of its parts' medians
        rounds = " + ".join(f"{name} {seconds:.2f}" for name, seconds in t["parts"].items())
    cpu = " + ".join(f"{t[k]:.2f} {k.split('_')[0]}" for k in ("client_cpu", "server_cpu") if k in t)
    return f"| {t['name']} | {t['seconds']:.2f} | {rounds} | {t['per_second']:,.0f} | {cpu} |"


def markdown_section(suite: str, meta: dict, data: dict) -> str:
    """The generated part of docs/benchmarks.md for one suite of one run."""
    results, rows = data["results"], data["rows"]
    conditions = data.get("conditions_at_start", {})
    busy = ", ".join(conditions.get("busy_processes", [])) or "nothing else above 10% of a CPU"
    lines = [f"Measured {meta['started_at']} with `{meta['command']}`",
             f"on {_machine_line(meta)}.",
             f"When this suite started: load average {_load(conditions.get('loadavg'))}; "
             f"other processes over the 1 s before it: {busy}.", ""]
    if suite == "throughput":
        lines += [f"{results['sessions']:,} sessions, median of {results['rounds']} round(s) "
                  f"(export: {results.get('export_rounds', results['rounds'])}; seed loop: one run).", "",
                  "| contender | seconds (median) | rounds | sessions/s | CPU s (client + Redis server) |",
                  "|---|---|---|---|---|"]
        shown = set()
        for name in ("migrate", "validate", "export", "export_tmpfs"):
            for value in (results.get(name) or {}).values():
                if isinstance(value, dict) and "seconds" in value and value["name"] not in shown:
                    shown.add(value["name"])
                    lines.append(_contender(value))
        lines.append("")
    elif suite == "rss":
        lines += ["| sessions | seconds | sessions/s | largest process MB | tree sum MB | processes |",
                  "|---|---|---|---|---|---|"]
        lines += [f"| {p['sessions']:,} | {p['seconds']:.2f} | {p['per_second']:,.0f} | "
                  f"{p['peak_rss_max_process_mb']:.1f} | {p['peak_rss_tree_sum_mb']:.1f} | "
                  f"{p['processes_seen']} |" for p in results["points"]]
        lines.append("")
    elif suite == "latency":
        lines += [f"gunicorn {results['gunicorn_workers']} sync workers, {results['users']} users, "
                  f"closed loop at concurrency {results['concurrency']}, {results['seconds_per_phase']:g}s "
                  f"per phase per round, {results['rounds']} interleaved round(s).", "",
                  "| phase | endpoint | requests | p50 ms | p99 ms | p50 / file | p99 / file | errors |",
                  "|---|---|---|---|---|---|---|---|"]
        for phase, endpoints in results["phases"].items():
            errors = sum(results["errors"].get(phase, {}).values())
            for endpoint, s in endpoints.items():
                lines.append(f"| {phase} | {endpoint} | {s.get('count', 0):,} | {s.get('p50_ms', 0):.2f} | "
                             f"{s.get('p99_ms', 0):.2f} | {s.get('p50_vs_file', 1.0):.2f} | "
                             f"{s.get('p99_vs_file', 1.0):.2f} | {errors} |")
        lines.append("")
    elif suite == "scale":
        lines += ["| Redis | sessions | wall s | total/s | per host/s (host0..3) | slowest host s | "
                  "module peak MB |", "|---|---|---|---|---|---|---|"]
        points = [("standalone", p) for p in results["standalone"]]
        if "cluster" in results:
            points.append(("cluster (3 primaries)", results["cluster"]))
        for kind, p in points:
            per_host = " / ".join(f"{h['per_second']:,.0f}" for h in p["hosts"].values())
            lines.append(f"| {kind} | {p['total_sessions']:,} | {p['wall_seconds']:.1f} | "
                         f"{p['total_per_second']:,.0f} | {per_host} | {p['slowest_host_seconds']:.1f} | "
                         f"{p['module_peak_hwm_mb']:.0f} |")
        for name, label in (("wall_fit", "playbook wall time"), ("slowest_host_fit", "slowest host")):
            if name in results:
                fit = results[name]
                lines += ["", f"Least-squares line, {label}: {fit['slope'] * 1e6:.1f} s per million "
                              f"sessions + {fit['intercept']:.2f} s, R^2 = {fit['r2']:.4f}."]
        lines.append("")
    lines += _rows_table(rows)
    return "\n".join(lines)


def update_docs(path: str, sections: dict[str, str]) -> list[str]:
    """Replace the generated blocks ``<!-- bench:NAME -->`` ... ``<!-- /bench:NAME -->`` in *path*."""
    with open(path, encoding="utf-8") as handle:
        text = handle.read()
    updated = []
    for name, body in sections.items():
        start, end = f"<!-- bench:{name} -->", f"<!-- /bench:{name} -->"
        head, found, rest = text.partition(start)
        if not found or end not in rest:
            continue
        text = head + start + "\n" + body.rstrip() + "\n" + end + rest.split(end, 1)[1]
        updated.append(name)
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(text)
    return updated


def main(argv: list[str] | None = None) -> int:
    """Re-render the docs tables of a saved run: python -m bench.report RUN.json DOC.md"""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print("usage: python -m bench.report bench/results/run-<time>.json docs/benchmarks.md",
              file=sys.stderr)
        return 2
    with open(args[0]) as handle:
        run = json.load(handle)
    meta = run.pop("meta")
    sections = {suite: markdown_section(suite, meta, data) for suite, data in run.items()}
    print("refreshed:", ", ".join(update_docs(args[1], sections)) or "nothing")
    return 0


if __name__ == "__main__":
    sys.exit(main())
