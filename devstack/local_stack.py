"""The local rollout stack in a temporary directory, on free ports, driven by the real playbooks.

    stack = LocalStack.create(tmp_dir, hosts=2, seed_sessions=200)
    stack.playbook("local_infra.yml")          # TLS Redis + replica, gunicorn app hosts
    stack.playbook("phase2.yml")               # the real rollout, with the watch window shortened
    ...
    stack.stop()

It copies ``inventories/local`` and moves every port and path so that it never collides with
``make demo`` or another test run. ``playbook()`` returns the exit code and the PLAY RECAP's
per-host ``changed`` counts, so tests can check idempotence as molecule does.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import subprocess
import sys

import yaml

from .redis_server import free_port

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RECAP = re.compile(r"^(?P<host>\S+)\s+:\s+ok=(?P<ok>\d+)\s+changed=(?P<changed>\d+)"
                   r"\s+unreachable=(?P<unreachable>\d+)\s+failed=(?P<failed>\d+)", re.MULTILINE)


@dataclasses.dataclass
class PlaybookRun:
    returncode: int
    output: str

    @property
    def recap(self) -> dict[str, dict[str, int]]:
        return {m["host"]: {k: int(m[k]) for k in ("ok", "changed", "unreachable", "failed")}
                for m in RECAP.finditer(self.output)}

    @property
    def changed(self) -> int:
        return sum(host["changed"] for host in self.recap.values())


@dataclasses.dataclass
class LocalStack:
    directory: str
    inventory: str
    app_ports: dict[str, int]
    redis_port: int
    extra_vars: dict

    @classmethod
    def create(cls, directory: str, hosts: int = 2, seed_sessions: int = 200, watch_seconds: int = 2,
               extra_vars: dict | None = None) -> LocalStack:
        inventory = os.path.join(directory, "inventory")
        shutil.copytree(os.path.join(ROOT, "inventories", "local"), inventory)
        app_ports = {f"app{i + 1}": free_port() for i in range(hosts)}
        with open(os.path.join(inventory, "hosts.yml")) as handle:
            document = yaml.safe_load(handle)
        document["all"]["children"]["app_servers"]["hosts"] = {
            name: {"session_app_port": port} for name, port in app_ports.items()}
        with open(os.path.join(inventory, "hosts.yml"), "w") as handle:
            yaml.safe_dump(document, handle)
        redis_port = free_port()
        variables = {
            "local_redis_primary_port": redis_port,
            "local_redis_replica_port": free_port(),
            "session_app_seed_sessions": seed_sessions,
            "rollout_watch_seconds": watch_seconds,
            # Tests run at any hour and cannot wait a session lifetime: explicit overrides.
            "rollout_ignore_maintenance_window": True,
            "rollout_ignore_cutoff": True,
            "rollout_gate_min_requests": 20,  # short watch windows: less evidence than production asks
            **(extra_vars or {}),
        }
        return cls(directory, inventory, app_ports, redis_port, variables)

    @property
    def local_dir(self) -> str:
        return os.path.join(self.directory, "local")

    @property
    def lock_file(self) -> str:
        """This stack's rollout lock (the sessionshift_lock callback and the alarm watcher share it)."""
        return os.path.join(self.directory, "rollout.lock")

    def app_url(self, host: str) -> str:
        return f"http://127.0.0.1:{self.app_ports[host]}"

    def state_dir(self, host: str) -> str:
        return os.path.join(self.local_dir, host, "state")

    def session_dir(self, host: str) -> str:
        return os.path.join(self.local_dir, host, "sessions")

    def playbook(self, name: str, *args: str, extra: dict | None = None, timeout: float = 900) -> PlaybookRun:
        env = dict(os.environ, SESSIONSHIFT_LOCAL_DIR=self.local_dir, ANSIBLE_FORCE_COLOR="0",
                   SESSIONSHIFT_ROLLOUT_LOCK=self.lock_file,
                   ANSIBLE_CONFIG=os.path.join(ROOT, "ansible.cfg"), ANSIBLE_NOCOLOR="1")
        command = [os.path.join(os.path.dirname(sys.executable), "ansible-playbook"),
                   "-i", self.inventory, os.path.join(ROOT, "playbooks", name),
                   "-e", json.dumps({**self.extra_vars, **(extra or {})}), *args]
        done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout,
                              check=False)
        return PlaybookRun(done.returncode, done.stdout + done.stderr)

    def stop(self) -> None:
        self.playbook("local_infra.yml", extra={"local_infra_state": "stopped"})


class Traffic:
    """Requests to every app host in the background, as a real app's users make them.

    The phase-4 gate judges the fallback-read rate only over enough session requests
    (rollout_gate_min_requests); a test that runs the phase playbooks as an operator would,
    with no load test of its own, starts this first. A failed request (a host not up yet, a
    worker restarting mid-response) is counted and the users carry on: any error, not only
    socket errors, since a torn response raises http.client's own exceptions and a silently
    dead thread leaves a gate with no traffic to judge.
    """

    def __init__(self, urls: list[str], pause: float = 0.02):
        import threading

        self.urls, self.pause = urls, pause
        self.served = 0
        self.failed = 0
        self.last_error: str | None = None
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        import urllib.request

        while not self.stopping.is_set():
            for url in self.urls:
                try:
                    urllib.request.urlopen(url + "/", timeout=2).read()
                    self.served += 1
                except Exception as exc:  # users keep coming, whatever one request met
                    self.failed += 1
                    self.last_error = f"{url}: {type(exc).__name__}: {exc}"
            self.stopping.wait(self.pause)

    def summary(self) -> str:
        alive = "running" if self.thread.is_alive() else "STOPPED"
        return (f"background traffic {alive}: {self.served} served, {self.failed} failed"
                + (f" (last: {self.last_error})" if self.last_error else ""))

    def __enter__(self) -> Traffic:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stopping.set()
        self.thread.join(10)
