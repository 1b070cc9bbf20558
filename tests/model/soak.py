"""The long run of the model-based test: ``make soak`` (python -m tests.model.soak).

Starts its own redis-server (TLS + ACL, append-only file), runs WALKS random walks of
STEPS steps each over a sticky fleet (each host its own session directory), and prints the
figures: steps, walks, violations, phase moves, returns to file, refused gates, the highest
generation reached. Exits 1 on a violation, printing Hypothesis's shrunk walk.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
import time

from devstack.redis_server import RedisServer
from devstack.tlsca import make_ca

from .fleet import FIGURES, machine, run_settings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--walks", type=int, default=500)
    parser.add_argument("--steps", type=int, default=40, help="steps per walk (at most)")
    parser.add_argument("--shared-dir", action="store_true",
                        help="every host shares one session directory (users move freely in phase 3+)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="ss-soak-") as directory:
        tls = make_ca(f"{directory}/tls")
        server = RedisServer.start(f"{directory}/redis", tls,
                                   extra_config=("appendonly yes", "appendfsync always"))
        started = time.monotonic()
        failure = None
        try:
            Machine = machine(server, shared_dir=args.shared_dir)
            Machine.TestCase.settings = run_settings(walks=args.walks, steps=args.steps)
            Machine.TestCase().runTest()
        except AssertionError as exc:  # a violation, shrunk by Hypothesis
            failure = exc
        finally:
            server.stop()
    figures = dataclasses.asdict(FIGURES) | {"seconds": round(time.monotonic() - started, 1),
                                             "shared_dir": args.shared_dir}
    print(json.dumps(figures, indent=2))
    if failure is not None:
        print(f"VIOLATION: {failure}", file=sys.stderr)
        for note in getattr(failure, "__notes__", []):  # Hypothesis's shrunk walk, step by step
            print(note, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
