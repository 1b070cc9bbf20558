"""Issue 7's scale figures: the backfill of 4 simulated app hosts in parallel, 100k to 1M sessions.

Each size is split over 4 session directories (``corpus.host_corpora``) and
migrated at once by ``ansible-playbook bench/scale/migrate.yml`` with
``forks=4`` over ``bench/scale/inventory.yml`` (4 hosts, local connection),
i.e. through the real ``session_migrate`` module, one worker process per
host (the 4 hosts share this machine's cores). Per host: sessions / the
module's own ``elapsed``; total: all sessions / the playbook's wall time
(Ansible's start-up included). Memory: the largest ``VmHWM`` sampled among
the module processes (``AnsiballZ_session_migrate``) and their workers.

The same is run once against a 3-primary Redis Cluster (TLS + ACL).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile

from . import corpus
from .procs import run_measured
from .redisenv import BenchRedis
from .report import linear_fit, target_row

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
HOSTS = 4
DEFAULT_SIZES = (100_000, 250_000, 500_000, 1_000_000)
QUICK_SIZES = (4_000, 8_000)
MODULE_MARK = "AnsiballZ_session_migrate"


def _playbook_env() -> dict:
    env = dict(os.environ)
    env.update(ANSIBLE_CONFIG=os.path.join(ROOT, "ansible.cfg"), ANSIBLE_STDOUT_CALLBACK="ansible.posix.json",
               ANSIBLE_LOAD_CALLBACK_PLUGINS="1", ANSIBLE_FORKS=str(HOSTS),
               ANSIBLE_PYTHON_INTERPRETER=sys.executable,
               PATH=os.pathsep.join([os.path.dirname(sys.executable), env.get("PATH", "")]))
    return env


def _host_results(stdout: str) -> dict[str, dict]:
    document = json.loads(stdout[stdout.find("{"):])
    results: dict[str, dict] = {}
    for play in document.get("plays", []):
        for task in play.get("tasks", []):
            results.update(task.get("hosts", {}))
    return results


def migrate_hosts(redis: BenchRedis, directories: list[str], *, workers_per_host: int = 1) -> dict:
    """One ansible-playbook run over the 4 hosts; per-host and total figures."""
    root = os.path.dirname(directories[0])
    state_root = tempfile.mkdtemp(prefix="bench-scale-state-")
    extra = {"bench_corpus_root": root, "bench_state_root": state_root, "bench_workers": workers_per_host,
             "bench_redis": {"url": redis.settings.url, "username": redis.username,
                             "password": redis.password, "ca_file": redis.ca_file,
                             "cluster": redis.cluster}}
    vars_file = os.path.join(redis.workdir, "scale-vars.json")
    with open(os.open(vars_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as handle:
        json.dump(extra, handle)
    command = [os.path.join(os.path.dirname(sys.executable), "ansible-playbook"),
               "-i", os.path.join(HERE, "scale", "inventory.yml"), "-f", str(HOSTS),
               "-e", f"@{vars_file}", os.path.join(HERE, "scale", "migrate.yml")]
    try:
        measured = run_measured(command, env=_playbook_env(), cwd=ROOT)
    finally:
        shutil.rmtree(state_root, ignore_errors=True)
        os.unlink(vars_file)
    if measured.returncode != 0:
        raise RuntimeError(f"ansible-playbook failed (exit {measured.returncode}): "
                           f"{measured.stdout[-1500:]} {measured.stderr[-800:]}")
    hosts = {}
    for name, result in sorted(_host_results(measured.stdout).items()):
        scanned = result["counts"]["scanned"]
        hosts[name] = {"sessions": scanned, "written": result["written"], "elapsed": result["elapsed"],
                       "per_second": round(scanned / result["elapsed"], 1), "workers": result.get("workers")}
    total = sum(host["sessions"] for host in hosts.values())
    return {"hosts": hosts, "sessions": total, "wall_seconds": round(measured.seconds, 3),
            "total_per_second": round(total / measured.seconds, 1),
            "slowest_host_seconds": max(host["elapsed"] for host in hosts.values()),
            "module_peak_hwm_mb": round(measured.peak_hwm_matching(MODULE_MARK), 1),
            "playbook_tree": measured.memory_dict()}


def _check_written(run: dict, expected: int, what: str) -> None:
    written = sum(host["written"] for host in run["hosts"].values())
    if written != expected:
        raise RuntimeError(f"{what}: {written:,} written, expected {expected:,}")


def run(redis: BenchRedis, results_dir: str, sizes: tuple[int, ...], *,
        cluster: BenchRedis | None = None, cluster_size: int | None = None, log=print) -> dict:
    points = []
    for size in sizes:
        directories = corpus.host_corpora(results_dir, size, HOSTS, log=log)
        redis.flush()
        outcome = migrate_hosts(redis, directories)
        _check_written(outcome, size, f"scale {size:,}")
        points.append({"total_sessions": size, **outcome})
        per_host = ", ".join(f"{h['per_second']:,.0f}/s" for h in outcome["hosts"].values())
        log(f"  scale: {size:>9,} over {HOSTS} hosts in {outcome['wall_seconds']:.1f}s "
            f"({outcome['total_per_second']:,.0f}/s total; per host {per_host}); "
            f"module peak {outcome['module_peak_hwm_mb']:.0f} MB")
    redis.flush()
    result: dict = {"standalone": points, "hosts": HOSTS}
    rows = []
    if len(points) >= 2:
        totals = [p["total_sessions"] for p in points]
        fit = linear_fit(totals, [p["wall_seconds"] for p in points])
        result["wall_fit"] = fit
        result["slowest_host_fit"] = linear_fit(totals, [p["slowest_host_seconds"] for p in points])
        rows.append(target_row("scale", f"time vs size R^2 ({sizes[0]:,}..{sizes[-1]:,})", fit["r2"],
                               unit=""))
        peaks = [p["module_peak_hwm_mb"] for p in points]
        rows.append(target_row("scale", "module peak RSS spread", max(peaks) - min(peaks), unit=" MB"))
    largest = points[-1]
    rows.append(target_row("scale", f"total sessions/s at {largest['total_sessions']:,}",
                           largest["total_per_second"], unit="/s"))
    if cluster is not None:
        size = cluster_size or sizes[-1]
        directories = corpus.host_corpora(results_dir, size, HOSTS, log=log)
        cluster.flush()
        outcome = migrate_hosts(cluster, directories)
        _check_written(outcome, size, f"cluster {size:,}")
        if cluster.dbsize() != size:
            raise RuntimeError(f"cluster holds {cluster.dbsize():,} keys after migrating {size:,}")
        cluster.flush()
        result["cluster"] = {"total_sessions": size, **outcome}
        rows.append(target_row("scale", f"cluster total sessions/s at {size:,}", outcome["total_per_second"],
                               unit="/s"))
        log(f"  cluster: {size:,} over {HOSTS} hosts in {outcome['wall_seconds']:.1f}s "
            f"({outcome['total_per_second']:,.0f}/s)")
    return {"results": result, "rows": rows}


def ansible_version() -> str:
    out = subprocess.run([os.path.join(os.path.dirname(sys.executable), "ansible"), "--version"],
                         capture_output=True, text=True, check=False).stdout
    return out.splitlines()[0] if out else "unavailable"
