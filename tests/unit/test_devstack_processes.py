"""devstack.processes: the one wait-until-ready and the one stop every dev-stack server uses."""

from __future__ import annotations

import signal
import subprocess
import sys

import pytest

from devstack.processes import Stoppable, stop_process, wait_until_ready


def python(code: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)


def test_a_server_that_exits_fails_the_wait_at_once_with_its_status():
    process = python("raise SystemExit(3)")
    process.wait()
    with pytest.raises(RuntimeError, match="moto_server on http://x exited with 3"):
        wait_until_ready(lambda: False, what="moto_server on http://x", timeout=600, process=process)


def test_the_wait_returns_once_the_probe_answers():
    answers = iter([False, False, True])
    wait_until_ready(lambda: next(answers), what="x", timeout=600, interval=0)
    assert next(answers, None) is None


def test_a_paused_process_is_resumed_and_stopped_by_sigterm():
    process = python("import time; print('up', flush=True); time.sleep(600)")
    assert process.stdout.readline() == "up\n"
    process.send_signal(signal.SIGSTOP)
    stop_process(process, grace=600)
    assert process.returncode == -signal.SIGTERM


def test_a_process_that_ignores_sigterm_is_killed_after_the_grace():
    process = python("import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
                     "print('up', flush=True); time.sleep(600)")
    assert process.stdout.readline() == "up\n"
    killed = []
    stop_process(process, grace=0.2, kill=lambda p: (killed.append(p.pid), p.kill()))
    assert killed == [process.pid] and process.returncode == -signal.SIGKILL


def test_with_stops_at_the_end_of_the_block_even_on_error():
    class Server(Stoppable):
        stopped = 0

        def stop(self) -> None:
            self.stopped += 1

    with pytest.raises(ValueError), Server() as server:
        raise ValueError("boom")
    assert server.stopped == 1
