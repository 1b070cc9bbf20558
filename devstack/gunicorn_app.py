"""The demo app under real gunicorn on a free loopback port, for integration tests.

    with GunicornApp.start(tmpdir, config={...}, workers=3) as app:
        requests.get(app.url + "/healthz")

The config dict is written to a JSON file named by TRANSLATE_APP_CONFIG; the
session directory, the state directory and a Prometheus multiprocess directory
are made under *tmpdir* unless the config names them.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request

from .ports import free_port
from .processes import Stoppable, stop_process, wait_until_ready

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GUNICORN_CONF = os.path.join(ROOT, "examples", "translate_app", "gunicorn.conf.py")


@dataclasses.dataclass
class GunicornApp(Stoppable):
    directory: str
    port: int
    config: dict
    process: subprocess.Popen
    log_path: str

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def session_dir(self) -> str:
        return self.config["SESSION_FILE_DIR"]

    @property
    def state_dir(self) -> str:
        return self.config["SESSIONSHIFT_STATE_DIR"]

    @property
    def phase_check_interval(self) -> float:
        return float(self.config.get("SESSIONSHIFT_PHASE_CHECK_INTERVAL", 1.0))

    @classmethod
    def start(cls, directory: str, config: dict, *, workers: int = 3, timeout: float = 30) -> GunicornApp:
        os.makedirs(directory, exist_ok=True)
        config = {
            "SECRET_KEY": "test-secret-key",
            "SESSION_FILE_DIR": os.path.join(directory, "sessions"),
            "SESSIONSHIFT_STATE_DIR": os.path.join(directory, "state"),
            **config,
        }
        config_path = os.path.join(directory, "app-config.json")
        with open(config_path, "w", encoding="utf-8") as handle:
            json.dump(config, handle)
        metrics_dir = os.path.join(directory, "prometheus")
        os.makedirs(metrics_dir, exist_ok=True)
        port = free_port()
        env = {**os.environ, "TRANSLATE_APP_CONFIG": config_path, "TRANSLATE_APP_BIND": f"127.0.0.1:{port}",
               "TRANSLATE_APP_WORKERS": str(workers), "PROMETHEUS_MULTIPROC_DIR": metrics_dir,
               "PYTHONPATH": os.pathsep.join(filter(None, [ROOT, os.environ.get("PYTHONPATH")]))}
        log_path = os.path.join(directory, "gunicorn.log")
        with open(log_path, "ab") as log:
            process = subprocess.Popen(
                [os.path.join(os.path.dirname(sys.executable), "gunicorn"), "-c", GUNICORN_CONF,
                 "--chdir", ROOT], env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        app = cls(directory, port, config, process, log_path)
        app.wait_ready(timeout)
        return app

    def wait_ready(self, timeout: float) -> None:
        def healthy() -> bool:
            try:
                with urllib.request.urlopen(self.url + "/healthz", timeout=2) as response:
                    return response.status == 200
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                return False

        try:
            wait_until_ready(healthy, what=f"gunicorn on {self.url}", timeout=timeout, process=self.process)
        except RuntimeError as exc:
            self.stop()
            raise RuntimeError(f"{exc}: {self.log_tail()}") from None

    def wait_for_phase(self, label: str) -> None:
        """Return once every worker serves *label*; call it after writing the phase file.

        Probes alone cannot prove it: gunicorn hands a connection to whichever worker
        accepts first, so a busy worker may answer none of them and still serve its next
        request in the old phase. But a worker re-reads the phase file on its first request
        at least ``phase_check_interval`` after its last look, so once that long has passed
        since the write, every request sees the new phase. The probes only confirm it.
        """
        time.sleep(self.phase_check_interval + 0.1)
        for _probe in range(3):
            request = urllib.request.Request(self.url + "/healthz", headers={"Connection": "close"})
            with urllib.request.urlopen(request, timeout=5) as response:
                served = response.headers.get("X-Session-Phase")
            if served != label:
                raise RuntimeError(f"{self.url}: a worker serves {served!r} "
                                   f"{self.phase_check_interval:g} s after the flip to {label}")

    def log_tail(self, lines: int = 30) -> str:
        try:
            with open(self.log_path, encoding="utf-8", errors="replace") as handle:
                return "".join(handle.readlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        # gunicorn runs in its own session: a master that does not stop takes its workers with it.
        stop_process(self.process, grace=15, kill=lambda process: os.killpg(process.pid, signal.SIGKILL))
