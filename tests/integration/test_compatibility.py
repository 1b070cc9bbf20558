"""The compatibility matrix: sessions written by real Flask-Session releases, there and back.

For each release (its own virtualenv, see tests/support/flask_session_releases.py):

1. the release writes sessions like real apps keep (flash messages, Flask-Login and
   Flask-WTF keys, tuples, sets, UUIDs, aware and naive datetimes, Decimals, bytes,
   dicts with non-string keys) through its own ``Session(app)``;
2. ``sessionshift analyze`` and ``migrate`` (the CLI) read them and copy them to a real
   Redis (TLS + ACL), and ``validate`` finds every one consistent;
3. the phased interface serves them in phases 3, 4 and 5, changing some in each: every
   session the app reads equals, type for type, what the release wrote (plus the changes);
4. ``sessionshift export`` writes them back to files, and the release itself reads every
   one of them, type for type, as the app left it.

docs/compatibility.md has the table these tests back.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import json
import os
import subprocess
import time

import pytest
from flask import Flask

from sessionshift import formats, phasefile
from sessionshift.cli import main as sessionshift
from sessionshift.flask import PhasedSession
from sessionshift.phases import SPECS, Phase
from tests.support import flask_session_corpus as corpus
from tests.support.flask_session_releases import RELEASES, Release, build_record, release_python

pytestmark = pytest.mark.integration

SESSIONS = 10  # five groups: one is changed in each phase
CORPUS_SCRIPT = corpus.__file__
SERVED_PHASES = tuple(phase.label for phase in Phase)


@pytest.fixture(scope="module")
def release_pythons() -> dict[str, str]:
    """Every release's python, the virtualenvs built in parallel if not cached yet."""
    started = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(len(RELEASES)) as pool:
        pythons = dict(zip(RELEASES, pool.map(release_python, RELEASES.values()), strict=True))
    built = {version: (build_record(release) or {}).get("seconds") for version, release in RELEASES.items()}
    print(f"\nFlask-Session virtualenvs ready in {time.monotonic() - started:.1f}s (built: {built})")
    return pythons


def run_release(python: str, *args: str, stdin: str = "") -> list[dict]:
    done = subprocess.run([python, CORPUS_SCRIPT, *args], input=stdin, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, f"{python} {args}: {done.stderr[-3000:]}"
    return [json.loads(line) for line in done.stdout.splitlines()]


def written_by_release(i: int) -> dict:
    """What the release's write view leaves in the i-th session."""
    return {**corpus.session_contents(i), "_permanent": True, "_flashes": corpus.flash_messages(i)}


@dataclasses.dataclass
class Walk:
    release: Release
    python: str
    session_dir: str
    state_dir: str
    redis_args: list[str]
    redis_config: dict

    def cli(self, capsys, *args: str, redis: bool = True) -> tuple[int, dict | str]:
        """(exit code, the JSON result, or the error message when there is none)."""
        capsys.readouterr()
        code = sessionshift([*args, "--json", "--quiet", *(self.redis_args if redis else [])])
        out, err = capsys.readouterr()
        return code, json.loads(out) if out.strip() else err

    def app(self) -> Flask:
        app = Flask("compat")
        app.config.update(SECRET_KEY="compat", TESTING=True, SESSION_FILE_DIR=self.session_dir,
                          SESSIONSHIFT_STATE_DIR=self.state_dir, SESSIONSHIFT_REDIS=self.redis_config,
                          SESSIONSHIFT_PHASE_CHECK_INTERVAL=0, SESSIONSHIFT_REDIS_RETRY_AFTER=0,
                          PERMANENT_SESSION_LIFETIME=corpus.LIFETIME, SESSION_COOKIE_NAME=corpus.COOKIE)
        PhasedSession(app)
        corpus.add_views(app)
        return app


@pytest.fixture
def walk(request, tmp_path, redis_server, redis_client, release_pythons, monkeypatch):
    release = RELEASES[request.param]
    settings = redis_server.settings()
    monkeypatch.setenv("SESSIONSHIFT_REDIS_PASSWORD", settings.password)
    session_dir, state_dir = tmp_path / "sessions", tmp_path / "state"
    state_dir.mkdir()
    return Walk(release=release, python=release_pythons[release.version], session_dir=str(session_dir),
                state_dir=str(state_dir),
                redis_args=["--redis-url", settings.url, "--redis-user", settings.username,
                            "--ca-file", settings.ca_file],
                redis_config=dataclasses.asdict(redis_server.settings(socket_timeout=2, retries=0)))


def session_files(directory: str) -> list[formats.FileSession]:
    return [formats.read_session_file(os.path.join(directory, name)) for name in sorted(os.listdir(directory))
            if formats.classify_name(name) == "session"]


def read_by_release(walk: Walk, sids: list[str]) -> dict[str, str]:
    rows = run_release(walk.python, "read", walk.session_dir, stdin="\n".join(sids))
    return {row["sid"]: row["canonical"] for row in rows}


def serve(walk: Walk, app: Flask, phase: str, sids: list[str], expected: dict[str, dict]) -> list[int]:
    """Every session read (or changed, for this phase's share) through the phased interface."""
    number = SERVED_PHASES.index(phase)
    mismatched = []
    for index, sid in enumerate(sids):
        client = app.test_client()
        client.set_cookie(corpus.COOKIE, sid)
        if index % len(SERVED_PHASES) == number:
            corpus.change(expected[sid], index, phase)
            response = client.post(f"/change/{index}/{phase}")
        else:
            response = client.get("/read")
        assert response.status_code == 200, response.text
        assert response.headers["X-Session-Phase"] == phase
        if response.text != corpus.canonical(expected[sid]):
            mismatched.append(index)
    return mismatched


@pytest.mark.parametrize("walk", list(RELEASES), indirect=True)
def test_release_sessions_survive_the_round_trip_type_for_type(walk, capsys):
    release = walk.release
    written = run_release(walk.python, "write", walk.session_dir, str(SESSIONS))
    sids = [row["sid"] for row in written]
    expected = {row["sid"]: written_by_release(row["i"]) for row in written}
    for row in written:  # the release wrote what the corpus describes, types included
        assert row["canonical"] == corpus.canonical(expected[row["sid"]])

    code, analyzed = walk.cli(capsys, "analyze", "--session-dir", walk.session_dir, "--state-dir",
                              walk.state_dir, redis=False)
    profile = analyzed["profile"]
    assert code == 0 and analyzed["sessions"] == SESSIONS and analyzed["corrupt"] == 0, analyzed
    assert (profile["header_style"], profile["hash_name"], profile["pickle_protocol"]) == \
        (release.header_style, release.hash_name, release.pickle_protocol)
    assert profile["msgpack"]["inexact_sessions"] == SESSIONS  # tuples, sets, ... all of them
    other_hash = {"md5": "sha256", "sha256": "md5"}[release.hash_name]
    other_header = {"pickle": "struct", "struct": "pickle"}[release.header_style]
    for command, option, wrong, right in (("analyze", "--hash-method", other_hash, release.hash_name),
                                          ("export", "--header-style", other_header, release.header_style)):
        code, refused = walk.cli(capsys, command, "--session-dir", walk.session_dir, "--state-dir",
                                 walk.state_dir, option, wrong, redis=command != "analyze")
        assert code == 2 and f"{option}={wrong}" in refused and right in refused, refused

    app = walk.app()
    mismatches: dict[str, list] = {}
    for phase in SERVED_PHASES:
        phasefile.set_phase(walk.state_dir, phase, by="test")
        if phase == "dual_write":
            code, migrated = walk.cli(capsys, "migrate", "--session-dir", walk.session_dir, "--state-dir",
                                      walk.state_dir, "--workers", "1")
            assert code == 0 and migrated["counts"]["written"] == SESSIONS, migrated
        mismatches[phase] = serve(walk, app, phase, sids, expected)
        if phase == "dual_write":
            code, validated = walk.cli(capsys, "validate", "--session-dir", walk.session_dir, "--state-dir",
                                       walk.state_dir, "--workers", "1", "--recheck-delay", "0.1")
            assert code == 0 and validated["passed"], validated
        if SPECS[Phase.parse(phase)].writes_file:
            # The files the interface wrote are read by the original release.
            read_back = read_by_release(walk, sids)
            mismatches[f"{phase}, read by {release.version}"] = [
                i for i, sid in enumerate(sids) if read_back[sid] != corpus.canonical(expected[sid])]

    code, exported = walk.cli(capsys, "export", "--session-dir", walk.session_dir, "--state-dir",
                              walk.state_dir, "--workers", "1")
    assert code == 0 and exported["undecodable"] == 0, exported
    files = session_files(walk.session_dir)
    assert len(files) == SESSIONS
    assert {(f.header_style, f.hash_name) for f in files} == {(release.header_style, release.hash_name)}
    read_back = read_by_release(walk, sids)
    mismatches["exported, read by the release"] = [
        i for i, sid in enumerate(sids) if read_back[sid] != corpus.canonical(expected[sid])]
    total = sum(map(len, mismatches.values()))
    print(f"\nFlask-Session {release.version}: {release.header_style} header, {release.hash_name}, "
          f"protocol {release.pickle_protocol}, {SESSIONS} sessions, {total} mismatches")
    assert {phase: found for phase, found in mismatches.items() if found} == {}


@pytest.mark.parametrize("walk", ["0.8.0"], indirect=True)
def test_analyze_refuses_msgpack_for_sessions_it_cannot_hold(walk, capsys):
    run_release(walk.python, "write", walk.session_dir, "3")  # ints beyond 64 bits, tuple keys
    code, analyzed = walk.cli(capsys, "analyze", "--session-dir", walk.session_dir, "--state-dir",
                              walk.state_dir, "--serializer", "msgpack", redis=False)
    assert code == 1 and analyzed["sessions"] == 3 and analyzed["corrupt"] == 0, analyzed
    assert "would change 3 of 3 sessions" in analyzed["refused"] and analyzed["recorded"] is None
    assert not os.listdir(walk.state_dir)


@pytest.mark.parametrize("walk", ["0.8.0"], indirect=True)
def test_a_lossy_value_format_fails_validation(walk, capsys):
    run_release(walk.python, "write", walk.session_dir, "3", "msgpack-encodable")
    lossy = ["--session-dir", walk.session_dir, "--state-dir", walk.state_dir, "--serializer", "msgpack",
             "--workers", "1"]
    code, migrated = walk.cli(capsys, "migrate", *lossy)  # no profile recorded: nothing refuses it
    assert code == 0 and migrated["counts"]["written"] == 3, migrated
    code, validated = walk.cli(capsys, "validate", *lossy, "--recheck-delay", "0.1")
    assert code == 1 and not validated["passed"], validated
    assert validated["counts"]["type_changed"] == 3 and validated["counts"]["consistent"] == 0
    assert {"tuple -> list", "set -> list"} <= set(validated["type_changes"]), validated["type_changes"]
