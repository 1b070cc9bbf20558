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
from tests.support import flask_session_corpus as corpus
from tests.support.flask_session_releases import RELEASES, Release, build_record, release_python

pytestmark = pytest.mark.integration

SESSIONS = 9  # three groups: one is changed in each of phases 3, 4 and 5
CORPUS_SCRIPT = corpus.__file__
SERVED_PHASES = ("redis_read", "redis_only", "redis")


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

    def cli(self, capsys, *args: str, redis: bool = True) -> tuple[int, dict]:
        capsys.readouterr()
        code = sessionshift([*args, "--json", "--quiet", *(self.redis_args if redis else [])])
        out = capsys.readouterr().out
        return code, json.loads(out) if out.strip() else {}

    def source_options(self) -> list[str]:
        """What the tools are told about the source besides the directory."""
        return ["--hash-method", self.release.hash_name, "--serializer", "pickle"]

    def app(self) -> Flask:
        app = Flask("compat")
        app.config.update(SECRET_KEY="compat", TESTING=True, SESSION_FILE_DIR=self.session_dir,
                          SESSIONSHIFT_STATE_DIR=self.state_dir, SESSIONSHIFT_REDIS=self.redis_config,
                          SESSIONSHIFT_PHASE_CHECK_INTERVAL=0, SESSIONSHIFT_REDIS_RETRY_AFTER=0,
                          SESSIONSHIFT_HASH_METHOD=self.release.hash_name,
                          SESSION_SERIALIZATION_FORMAT="pickle",
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


@pytest.mark.parametrize("walk", list(RELEASES), indirect=True)
def test_release_sessions_survive_the_round_trip_type_for_type(walk, capsys):
    release = walk.release
    written = run_release(walk.python, "write", walk.session_dir, str(SESSIONS))
    sids = [row["sid"] for row in written]
    expected = {row["sid"]: written_by_release(row["i"]) for row in written}
    for row in written:  # the release wrote what the corpus describes, types included
        assert row["canonical"] == corpus.canonical(expected[row["sid"]])

    files = session_files(walk.session_dir)
    assert len(files) == SESSIONS
    assert {(f.header_style, f.hash_name) for f in files} == {(release.header_style, release.hash_name)}
    code, analyzed = walk.cli(capsys, "analyze", "--session-dir", walk.session_dir, "--state-dir",
                              walk.state_dir, *walk.source_options(), redis=False)
    assert code == 0 and analyzed["sessions"] == SESSIONS and analyzed["corrupt"] == 0
    profile = analyzed["profile"]  # what every later step defaults to
    assert (profile["header_style"], profile["hash_name"]) == (release.header_style, release.hash_name)

    phasefile.set_phase(walk.state_dir, "dual_write", by="test")
    code, migrated = walk.cli(capsys, "migrate", "--session-dir", walk.session_dir, "--state-dir",
                              walk.state_dir, "--workers", "1", *walk.source_options())
    assert code == 0 and migrated["counts"]["written"] == SESSIONS, migrated
    code, validated = walk.cli(capsys, "validate", "--session-dir", walk.session_dir, "--state-dir",
                               walk.state_dir, "--workers", "1", "--recheck-delay", "0.1",
                               *walk.source_options())
    assert code == 0 and validated["passed"], validated

    app = walk.app()
    mismatches = []
    for number, phase in enumerate(SERVED_PHASES):
        phasefile.set_phase(walk.state_dir, phase, by="test")
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
                mismatches.append((phase, index))
    assert mismatches == []

    code, exported = walk.cli(capsys, "export", "--session-dir", walk.session_dir, "--state-dir",
                              walk.state_dir, "--workers", "1", "--header-style", release.header_style,
                              *walk.source_options())
    assert code == 0 and exported["undecodable"] == 0, exported
    files = session_files(walk.session_dir)
    assert len(files) == SESSIONS
    assert {(f.header_style, f.hash_name) for f in files} == {(release.header_style, release.hash_name)}

    read_back = {row["sid"]: row["canonical"] for row in run_release(walk.python, "read", walk.session_dir,
                                                                     stdin="\n".join(sids))}
    mismatched = [i for i, sid in enumerate(sids) if read_back[sid] != corpus.canonical(expected[sid])]
    print(f"\nFlask-Session {release.version}: {release.header_style} header, {release.hash_name}, "
          f"{SESSIONS} sessions, {len(mismatched)} mismatches after the round trip")
    assert mismatched == []
