"""An existing Flask app that is not the demo, adopted by the app_adopt role and walked 1 -> 5 -> 1.

examples/notes_app keeps notes behind Flask-Login with flash messages. It runs under its own
gunicorn (its pid file, its port), as an app the role finds already running. The role installs
nothing here (the app's virtualenv is this one, which has sessionshift), writes the settings
file the app's PhasedSession line loads, and the real phase playbooks then flip it through
phases 2-5 and roll it back to file, reading its metrics at app_adopt_metrics_url. Users keep
writing notes the whole time; each answer is checked: still logged in, every acknowledged note
there, the flash message of the last write delivered once.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest
import requests
import yaml

from devstack.local_stack import ROOT, PlaybookRun
from devstack.redis_server import RedisServer, free_port, wait_for_port

pytestmark = [pytest.mark.integration, pytest.mark.slow]

USERS = 10


class Users(threading.Thread):
    """USERS logged-in users adding notes in turn; counts what would show a lost session or write."""

    def __init__(self, base: str):
        super().__init__(daemon=True)
        self.base = base
        self.stop_event = threading.Event()
        self.clients = []
        self.notes: list[list[str]] = []
        self.tally = {"checked": 0, "logged_out": 0, "write_lost": 0, "flash_wrong": 0, "errors": 0}
        self.phases: set[str] = set()
        self.wrong_flashes: list = []
        self.last_error: str | None = None
        for index in range(USERS):
            client = requests.Session()
            answer = client.post(f"{base}/login", data={"username": f"user{index}"}, timeout=10)
            assert answer.status_code == 200 and answer.json()["user"] == f"user{index}", answer.text
            welcome = client.get(f"{base}/notes", timeout=10).json()["flashes"]  # shown once, then gone
            assert welcome == [["info", f"welcome user{index}"]], welcome
            self.clients.append(client)
            self.notes.append([])

    def step(self, index: int) -> None:
        client, text = self.clients[index], f"note {len(self.notes[index])} of user{index}"
        added = client.post(f"{self.base}/notes", data={"text": text}, timeout=10)
        if added.status_code == 401:
            self.tally["logged_out"] += 1
            return
        if added.status_code != 200:
            self.tally["errors"] += 1
            return
        self.notes[index].append(text)
        seen = client.get(f"{self.base}/notes", timeout=10)
        self.phases.add(seen.headers.get("X-Session-Phase", "?"))
        self.tally["checked"] += 1
        if seen.status_code not in (200, 401):
            self.tally["errors"] += 1
            self.last_error = f"GET /notes: {seen.status_code} {seen.text[:200]}"
        elif seen.status_code == 401 or seen.json().get("user") != f"user{index}":
            self.tally["logged_out"] += 1
        elif seen.json()["notes"] != self.notes[index]:
            self.tally["write_lost"] += 1
        elif seen.json()["flashes"] != [["success", "note saved"]]:
            self.tally["flash_wrong"] += 1
            self.wrong_flashes.append((seen.headers.get("X-Session-Phase"), seen.json()["flashes"]))

    def run(self) -> None:
        index = 0
        while not self.stop_event.is_set():
            try:
                self.step(index)
            except Exception as exc:  # counted, and the users carry on: a dead thread starves the gates
                self.tally["errors"] += 1
                self.last_error = f"{type(exc).__name__}: {exc}"
            index = (index + 1) % USERS
            time.sleep(0.05)

    def stop(self) -> dict:
        self.stop_event.set()
        self.join(30)
        return self.tally


def adoption(tmp_path, redis_settings: dict, port: int, pid_file: str):
    """The notes app's host in an inventory of its own, and a runner for the real playbooks against it."""
    host = {
        "app_adopt_venv": sys.prefix, "app_adopt_package_install": False,
        "app_adopt_app_sources": [os.path.join(ROOT, "examples", "notes_app", "app.py")],
        "app_adopt_settings_file": str(tmp_path / "etc" / "notes-app.json"),
        "app_adopt_user": "root", "app_adopt_group": "root",
        "app_adopt_session_dir": str(tmp_path / "sessions"), "app_adopt_state_dir": str(tmp_path / "state"),
        "app_adopt_redis": redis_settings, "app_adopt_metrics_url": f"http://127.0.0.1:{port}/metrics",
        "app_adopt_pid_file": pid_file,
        # The rollout's settings for this test: short watch windows, and no waiting for the
        # maintenance window or a session lifetime.
        "sessionshift_redis": redis_settings, "rollout_watch_seconds": 2, "rollout_session_lifetime": 86400,
        "rollout_ignore_maintenance_window": True, "rollout_ignore_cutoff": True,
        "rollout_gate_min_requests": 20,  # a 2 s watch window: less evidence than production asks
    }
    inventory = tmp_path / "inventory.yml"
    inventory.write_text(yaml.safe_dump({"all": {
        "vars": {"ansible_connection": "local", "ansible_python_interpreter": sys.executable},
        "children": {"app_servers": {"hosts": {"notes1": host}}}}}))

    def playbook(name: str, *args: str) -> PlaybookRun:
        env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(ROOT, "ansible.cfg"), ANSIBLE_NOCOLOR="1",
                   SESSIONSHIFT_ROLLOUT_LOCK=str(tmp_path / "rollout.lock"))  # not the machine-wide one
        done = subprocess.run([os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), "-i",
                               str(inventory), os.path.join(ROOT, "playbooks", name), *args],
                              cwd=ROOT, env=env, capture_output=True, text=True, timeout=900, check=False)
        return PlaybookRun(done.returncode, done.stdout + done.stderr)

    return host, playbook


@pytest.fixture
def adopted(tmp_path, tls_files):
    redis = RedisServer.start(str(tmp_path / "redis"), tls_files)
    port, pid_file = free_port(), str(tmp_path / "gunicorn.pid")
    redis_settings = {"url": redis.settings().url, "username": redis.username, "password": redis.password,
                      "ca_file": tls_files.ca_cert}
    host, playbook = adoption(tmp_path, redis_settings, port, pid_file)
    settings_file = host["app_adopt_settings_file"]
    os.makedirs(tmp_path / "sessions")

    first = playbook("adopt_app.yml")  # before the app runs: settings written, nothing to reload
    assert first.returncode == 0, first.output[-3000:]
    os.makedirs(tmp_path / "metrics")  # one count over both workers: a scrape reaches either of them
    env = dict(os.environ, NOTES_APP_SESSIONSHIFT_SETTINGS=settings_file,
               PROMETHEUS_MULTIPROC_DIR=str(tmp_path / "metrics"),
               PYTHONPATH=os.pathsep.join([os.path.join(ROOT, "src"), ROOT]))
    app = subprocess.Popen([sys.executable, "-m", "gunicorn", "-w", "2", "-b", f"127.0.0.1:{port}", "--pid",
                            pid_file, "examples.notes_app.wsgi:app"], cwd=ROOT, env=env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_port(port, timeout=30, process=app)
        yield playbook, f"http://127.0.0.1:{port}"
    finally:
        app.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            app.wait(20)
        if app.poll() is None:
            app.kill()
        redis.stop()


def test_check_on_a_host_not_adopted_yet_passes_and_changes_nothing(tmp_path):
    """adopt_app.yml --check first, as the runbook says: no settings, state or CA written yet."""
    settings = {"url": "rediss://127.0.0.1:6379/0", "username": "sessionshift",
                "password": "check-mode-only-not-a-secret", "ca_file": str(tmp_path / "etc" / "ca.crt")}
    _host, playbook = adoption(tmp_path, settings, free_port(), str(tmp_path / "gunicorn.pid"))
    ca_cert = {"app_adopt_ca_cert": "-----BEGIN CERTIFICATE-----"}  # the CA file too would be written
    run = playbook("adopt_app.yml", "--check", "-e", json.dumps(ca_cert))
    assert run.returncode == 0, run.output[-3000:]
    assert run.recap["notes1"]["changed"] > 0, run.recap
    assert sorted(os.listdir(tmp_path)) == ["inventory.yml"]  # no settings, CA, state or phase file


def test_the_role_names_the_line_to_add_when_the_app_is_not_wired(tmp_path, adopted):
    playbook, _base = adopted
    unwired = tmp_path / "unwired.py"
    unwired.write_text("from flask import Flask\nfrom flask_session import Session\napp = Flask(__name__)\n"
                       "Session(app)\n")
    run = playbook("adopt_app.yml", "-e", json.dumps({"app_adopt_app_sources": [str(unwired)]}))
    assert run.returncode != 0
    assert 'PhasedSession(app, settings_file="' in run.output
    assert "from sessionshift.flask import PhasedSession" in run.output


@pytest.mark.timeout(1800)
def test_an_adopted_app_goes_1_to_5_and_back_and_nobody_is_logged_out(adopted, tmp_path):
    playbook, base = adopted
    again = playbook("adopt_app.yml")
    assert again.returncode == 0 and again.changed == 0, again.output[-3000:]  # idempotent
    users = Users(base)
    users.start()
    try:
        for step in (["phase2.yml"], ["adopt_app.yml"], ["phase3.yml"], ["phase4.yml"], ["phase5.yml"],
                     ["rollback.yml", "-e", "rollback_to=file"]):
            run = playbook(*step)
            assert run.returncode == 0, (f"{step}: {run.output[-4000:]}\nusers: {users.tally}, "
                                         f"running={users.is_alive()}, last error: {users.last_error}")
            if step == ["adopt_app.yml"]:  # the role again (new settings, say) leaves the phase alone
                with open(tmp_path / "state" / "phase.json") as handle:
                    assert json.load(handle)["phase"] == "dual_write"
                assert run.changed == 0, run.output[-3000:]
            time.sleep(2)
    finally:
        tally = users.stop()
    assert users.phases >= {"file", "dual_write", "redis_read", "redis_only", "redis"}, users.phases
    assert tally["checked"] > 100, tally
    lost = (tally["logged_out"], tally["write_lost"], tally["flash_wrong"], tally["errors"])
    assert lost == (0, 0, 0, 0), (tally, users.wrong_flashes[:5], users.last_error)
    final = users.clients[0].get(f"{base}/notes", timeout=10)
    assert final.headers["X-Session-Phase"] == "file" and final.json()["notes"] == users.notes[0]
