"""``python -m bench``: run the benchmarks, print ratios, save JSON, draw the plots.

    python -m bench --quick                      # smoke run, 5,000 sessions, a minute or two
    python -m bench                              # issue 3's figures on 200,000 sessions
    python -m bench --only rss                   # peak RSS from 50,000 to 1,000,000 sessions
    python -m bench --only latency,scale         # issue 7's per-phase latency and 4-host scale
    python -m bench --only throughput --docs docs/benchmarks.md   # also refresh the docs' tables

Suites: throughput (= migrate, validate, export), rss, latency, scale. Every
suite starts its own TLS + ACL redis-server (the test suite's helpers) and
stops it afterwards. Raw results go to ``<out>/run-<time>.json`` and
``<out>/latest-<suite>.json``; plots to ``--img-dir`` (docs/img).
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import tempfile
import time

from . import corpus, latency, memory, report, scale, throughput
from .redisenv import bench_cluster, bench_redis

SUITES = ("throughput", "rss", "latency", "scale")
ALIASES = {"migrate": ("throughput", "migrate"), "validate": ("throughput", "validate"),
           "export": ("throughput", "export")}
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def parse_only(text: str | None) -> tuple[list[str], tuple[str, ...]]:
    """(suites, throughput parts) from ``--only``; migrate/validate/export select throughput parts."""
    if not text:
        return list(SUITES), ("migrate", "validate", "export")
    suites: list[str] = []
    parts: list[str] = []
    for name in (item.strip() for item in text.split(",") if item.strip()):
        if name in ALIASES:
            suite, part = ALIASES[name]
            parts.append(part)
        elif name in SUITES:
            suite = name
            if name == "throughput":
                parts += ["migrate", "validate", "export"]
        else:
            raise ValueError(f"unknown benchmark {name!r}: choose from "
                             f"{', '.join((*SUITES, *ALIASES))}")
        if suite not in suites:
            suites.append(suite)
    ordered = tuple(p for p in ("migrate", "validate", "export") if p in parts)
    return suites, ordered


def _sizes(text: str | None, default: tuple[int, ...]) -> tuple[int, ...]:
    if not text:
        return default
    return tuple(int(value.replace("_", "")) for value in text.split(","))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=200_000, help="throughput corpus size (200000)")
    parser.add_argument("--only", help="comma list of: " + ", ".join((*SUITES, *ALIASES)))
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: 5,000 sessions, small RSS/scale sizes, short latency windows")
    parser.add_argument("--out", default=os.path.join(ROOT, "bench", "results"), help="results directory")
    parser.add_argument("--rounds", type=int, default=None, help="throughput rounds (default 3, quick 1)")
    parser.add_argument("--export-rounds", type=int, default=None,
                        help="rounds of the export part (default: --rounds; each writes every file twice)")
    parser.add_argument("--rss-sizes", help="comma list (default 50000,100000,250000,500000,1000000)")
    parser.add_argument("--scale-sizes", help="comma list of totals over 4 hosts "
                                              "(default 100000,250000,500000,1000000)")
    parser.add_argument("--cluster-size", type=int, help="sessions for the cluster-mode scale run "
                                                         "(default: the largest scale size)")
    parser.add_argument("--latency-seconds", type=float, default=None,
                        help="per phase per round (20; quick 3)")
    parser.add_argument("--latency-rounds", type=int, default=None, help="interleaved rounds (3; quick 1)")
    parser.add_argument("--latency-concurrency", type=int, default=4)
    parser.add_argument("--latency-users", type=int, default=64)
    parser.add_argument("--img-dir", help="where plots go (default docs/img; a --quick run: <out>/img, "
                                          "so a smoke run never replaces the documented figures)")
    parser.add_argument("--no-plots", action="store_true")
    parser.add_argument("--docs", metavar="PATH", help="refresh the generated tables of this markdown file")
    parser.add_argument("--note", default="", help="what else ran on the machine (recorded in the JSON)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        suites, parts = parse_only(args.only)
    except ValueError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 2
    quick = args.quick
    sessions = 5_000 if quick and args.sessions == 200_000 else args.sessions
    rounds = args.rounds or (1 if quick else 3)
    os.makedirs(args.out, exist_ok=True)
    command = "python -m bench " + shlex.join(argv if argv is not None else sys.argv[1:])
    meta = {"command": command.strip(), "started_at": report.now_utc(), "machine": report.machine(),
            "note": args.note, "quick": quick}
    print(f"bench: {meta['command']} on {meta['machine']['nproc']} CPUs, "
          f"load {meta['machine']['loadavg_at_start']}")
    outcome: dict[str, dict] = {}
    scratch = tempfile.mkdtemp(prefix="sessionshift-bench-", dir=args.out)
    started = time.monotonic()
    try:
        for suite in suites:
            print(f"== {suite}")
            suite_started = time.monotonic()
            conditions = {"loadavg": os.getloadavg(), "busy_processes": report.busy_processes()}
            busy = ", ".join(conditions["busy_processes"]) or "none"
            print(f"   load {conditions['loadavg']}, other busy processes: {busy}")
            if suite == "throughput":
                directory = corpus.corpus(args.out, sessions)
                with bench_redis() as redis:
                    outcome[suite] = throughput.run(redis, directory, sessions, scratch, rounds=rounds,
                                                    export_rounds=args.export_rounds or rounds, suites=parts)
            elif suite == "rss":
                sizes = _sizes(args.rss_sizes, memory.QUICK_SIZES if quick else memory.DEFAULT_SIZES)
                with bench_redis() as redis:
                    outcome[suite] = memory.run(redis, args.out, sizes)
            elif suite == "latency":
                with bench_redis() as redis:
                    outcome[suite] = latency.run(
                        redis, scratch, rounds=args.latency_rounds or (1 if quick else 3),
                        seconds=args.latency_seconds or (3.0 if quick else 20.0),
                        users=args.latency_users, concurrency=args.latency_concurrency)
                outcome[suite].pop("samples", None)
            elif suite == "scale":
                sizes = _sizes(args.scale_sizes, scale.QUICK_SIZES if quick else scale.DEFAULT_SIZES)
                with bench_redis() as redis, bench_cluster() as cluster:
                    outcome[suite] = scale.run(redis, args.out, sizes, cluster=cluster,
                                               cluster_size=args.cluster_size)
                outcome[suite]["results"]["ansible"] = scale.ansible_version()
            outcome[suite]["seconds"] = round(time.monotonic() - suite_started, 1)
            outcome[suite]["conditions_at_start"] = conditions
    finally:
        import shutil

        shutil.rmtree(scratch, ignore_errors=True)
    meta["finished_at"] = report.now_utc()
    meta["seconds"] = round(time.monotonic() - started, 1)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    report.save_json(args.out, f"run-{stamp}", {"meta": meta, **outcome})
    for suite, data in outcome.items():
        report.save_json(args.out, f"latest-{suite}", {"meta": meta, suite: data})
    if not args.no_plots:
        img_dir = args.img_dir or (os.path.join(args.out, "img") if quick
                                   else os.path.join(ROOT, "docs", "img"))
        drawn = _plots(outcome, img_dir)
        for path in drawn:
            print(f"plot: {os.path.relpath(path, ROOT)}")
    if args.docs:
        sections = {suite: report.markdown_section(suite, meta, data) for suite, data in outcome.items()}
        updated = report.update_docs(args.docs, sections)
        print(f"docs: refreshed {', '.join(updated) or 'nothing (no markers)'} in {args.docs}")
    rows = [row for data in outcome.values() for row in data["rows"]]
    print()
    print(report.format_table(rows))
    print(f"\nraw results: {os.path.join(args.out, f'run-{stamp}.json')} ({meta['seconds']}s)")
    return 0


def _plots(outcome: dict, img_dir: str) -> list[str]:
    from . import plots  # matplotlib is slow to import; only a run that draws needs it

    suffix = ""
    drawn = []
    if "throughput" in outcome:
        drawn.append(plots.throughput(outcome["throughput"]["results"],
                                      os.path.join(img_dir, f"throughput{suffix}.png")))
    if "rss" in outcome:
        drawn.append(plots.rss(outcome["rss"]["results"], os.path.join(img_dir, f"rss-vs-size{suffix}.png")))
    if "latency" in outcome:
        drawn.append(plots.latency(outcome["latency"]["results"],
                                   os.path.join(img_dir, f"latency-per-phase{suffix}.png")))
    if "scale" in outcome:
        drawn.append(plots.scale(outcome["scale"]["results"], os.path.join(img_dir, f"scale{suffix}.png")))
    return drawn


if __name__ == "__main__":
    sys.exit(main())
