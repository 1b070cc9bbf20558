"""The engines, run the way an operator runs them: as a separate process, measured from outside.

Each run is a subprocess (the ``sessionshift`` CLI where it has the
subcommand, else ``python -m bench.engine_runs <engine>`` calling the
package's function), so its wall time includes interpreter start-up and
imports, like an operator's, and its memory is measured over its whole
process tree (``bench.procs``).
"""

from __future__ import annotations

import argparse
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


def run_migrate(redis: BenchRedis, directory: str, *, workers: int = 0, batch_size: int | None = None,
                name: str = "sessionshift migrate") -> tuple[Timed, Measured, dict]:
    """``sessionshift migrate`` over *directory* into an (already flushed) Redis."""
    state_dir = tempfile.mkdtemp(prefix="bench-migrate-state-")
    command = [SESSIONSHIFT, "migrate", "--session-dir", directory, "--state-dir", state_dir,
               "--restart", "--json", "--quiet", *redis.cli_env_args()]
    if workers:
        command += ["--workers", str(workers)]
    if batch_size:
        command += ["--batch-size", str(batch_size)]
    try:
        measured = run_measured(command)
        result = _check(measured, "sessionshift migrate")
    finally:
        shutil.rmtree(state_dir, ignore_errors=True)
    counts = result.get("counts", {})
    detail = {"written": counts.get("written"), "engine_elapsed": result.get("elapsed"),
              "workers": result.get("workers"), "batch_size": result.get("batch_size"),
              **measured.memory_dict()}
    return Timed(name, measured.seconds, counts.get("scanned", 0), detail), measured, result


def run_validate(redis: BenchRedis, directory: str, *, name: str = "sessionshift validate",
                 ) -> tuple[Timed, Measured, dict]:
    """``sessionshift validate`` (every session, no record written) against Redis."""
    state_dir = tempfile.mkdtemp(prefix="bench-validate-state-")
    command = [SESSIONSHIFT, "validate", "--session-dir", directory, "--state-dir", state_dir,
               "--no-record", "--json", "--quiet", *redis.cli_env_args()]
    try:
        measured = run_measured(command)
        result = _check(measured, "sessionshift validate")
    finally:
        shutil.rmtree(state_dir, ignore_errors=True)
    counts = result.get("counts", {})
    detail = {"passed": result.get("passed"), "consistent": counts.get("consistent"),
              "engine_elapsed": result.get("elapsed_seconds"), **measured.memory_dict()}
    count = counts.get("checked", 0)
    return Timed(name, measured.seconds, count, detail), measured, result


def run_export(redis: BenchRedis, target: str, *, name: str = "export_sessions",
               ) -> tuple[Timed, Measured, dict]:
    """The export engine writing every Redis session into the empty directory *target*."""
    os.makedirs(target, exist_ok=True)
    settings_file = os.path.join(redis.workdir, "export-settings.json")
    with open(settings_file, "w") as handle:
        json.dump({"url": redis.settings.url, "username": redis.username,
                   "password_file": redis.password_file, "ca_file": redis.ca_file,
                   "cluster": redis.cluster}, handle)
    command = [sys.executable, "-m", "bench.engine_runs", "export", settings_file, target]
    measured = run_measured(command, cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    result = _check(measured, "export")
    detail = {"written": result.get("written"), **measured.memory_dict()}
    return Timed(name, measured.seconds, result.get("keys_exported", 0), detail), measured, result


# --------------------------------------------------------------------------- child entry points


def _export_child(settings_file: str, target: str) -> int:
    from sessionshift.export import export_sessions
    from sessionshift.keys import KeyLayout
    from sessionshift.redisconn import RedisSettings, connect

    with open(settings_file) as handle:
        values = json.load(handle)
    with open(values.pop("password_file")) as handle:
        values["password"] = handle.read().strip()
    client = connect(RedisSettings(**values))
    try:
        result = export_sessions(client, KeyLayout(), target)
    finally:
        client.close()
    json.dump(result.as_dict(), sys.stdout)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.engine_runs")
    sub = parser.add_subparsers(dest="engine", required=True)
    export = sub.add_parser("export", help="export every Redis session into a directory")
    export.add_argument("settings_file")
    export.add_argument("target")
    args = parser.parse_args(argv)
    return _export_child(args.settings_file, args.target)


if __name__ == "__main__":
    sys.exit(main())
