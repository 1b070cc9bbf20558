"""The engines, run the way an operator runs them: as a separate process, measured from outside.

Each run is a subprocess of the ``sessionshift`` CLI, so its wall time
includes interpreter start-up and imports, like an operator's, and its memory
is measured over its whole process tree (``bench.procs``).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile

from .baselines import Timed
from .procs import Measured, run_measured
from .redisenv import BenchRedis

SESSIONSHIFT = os.path.join(os.path.dirname(sys.executable), "sessionshift")


def _json_tail(text: str) -> dict:
    """The JSON document a --json run printed on stdout."""
    start = text.find("{")
    if start < 0:
        raise ValueError(f"no JSON in output: {text[-300:]!r}")
    return json.loads(text[start:])


def _check(measured: Measured, what: str) -> dict:
    if measured.returncode not in (0, 1):
        raise RuntimeError(f"{what} failed (exit {measured.returncode}): {measured.stderr[-800:]}")
    return _json_tail(measured.stdout)


def _run_on_files(redis: BenchRedis, subcommand: str, directory: str,
                  options: list[str]) -> tuple[Measured, dict]:
    """``sessionshift <subcommand>`` over the session files in *directory*, with a state directory
    of its own (removed after): what it measured and its JSON result."""
    state_dir = tempfile.mkdtemp(prefix=f"bench-{subcommand}-state-")
    command = [SESSIONSHIFT, subcommand, "--session-dir", directory, "--state-dir", state_dir, *options,
               "--json", "--quiet", *redis.cli_env_args()]
    try:
        measured = run_measured(command)
        return measured, _check(measured, f"sessionshift {subcommand}")
    finally:
        shutil.rmtree(state_dir, ignore_errors=True)


def run_migrate(redis: BenchRedis, directory: str, *, workers: int = 0, batch_size: int | None = None,
                name: str = "sessionshift migrate") -> tuple[Timed, Measured, dict]:
    """``sessionshift migrate`` over *directory* into an (already flushed) Redis."""
    options = ["--restart"]
    if workers:
        options += ["--workers", str(workers)]
    if batch_size:
        options += ["--batch-size", str(batch_size)]
    server_before = redis.server_cpu()
    measured, result = _run_on_files(redis, "migrate", directory, options)
    counts = result.get("counts", {})
    detail = {"written": counts.get("written"), "engine_elapsed": result.get("elapsed"),
              "client_cpu": round(measured.cpu_seconds, 3),
              "server_cpu": round(redis.server_cpu() - server_before, 3),
              "workers": result.get("workers"), "batch_size": result.get("batch_size"),
              **measured.memory_dict()}
    return Timed(name, measured.seconds, counts.get("scanned", 0), detail), measured, result


def run_validate(redis: BenchRedis, directory: str, *, name: str = "sessionshift validate",
                 ) -> tuple[Timed, Measured, dict]:
    """``sessionshift validate`` (every session, no record written) against Redis."""
    measured, result = _run_on_files(redis, "validate", directory, ["--no-record"])
    counts = result.get("counts", {})
    detail = {"passed": result.get("passed"), "consistent": counts.get("consistent"),
              "engine_elapsed": result.get("elapsed_seconds"), **measured.memory_dict()}
    count = counts.get("checked", 0)
    return Timed(name, measured.seconds, count, detail), measured, result


def run_export(redis: BenchRedis, target: str, *, name: str = "sessionshift export",
               ) -> tuple[Timed, Measured, dict]:
    """``sessionshift export`` of every Redis session into the empty directory *target*."""
    os.makedirs(target, exist_ok=True)
    command = [SESSIONSHIFT, "export", "--session-dir", target, "--no-record", "--json", "--quiet",
               *redis.cli_env_args()]
    measured = run_measured(command)
    result = _check(measured, "sessionshift export")
    detail = {"written": result.get("written"), **measured.memory_dict()}
    return Timed(name, measured.seconds, result.get("keys_exported", 0), detail), measured, result
