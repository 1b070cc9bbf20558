"""Virtualenvs holding real Flask-Session releases, for the compatibility matrix.

Each release gets its own virtualenv with every package pinned (the release,
the Flask / Werkzeug it ran with, and the cachelib that decides the file
format), installed with ``--no-deps`` so the set is exact and no resolver runs.
The virtualenvs are built once under ``.cache/flask-session-releases/`` (the
directory name carries a hash of the pins and the Python version, so a changed
pin builds a new one) and reused by later runs::

    python = release_python(RELEASES["0.4.0"])   # builds it if missing
    subprocess.run([python, corpus_script, "write", ...])

A build runs under a per-release lock, into a temporary directory renamed into
place when it is complete, so an interrupted or concurrent build never leaves a
half-made virtualenv that a later run would trust.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import glob
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CACHE_DIR = os.path.join(ROOT, ".cache", "flask-session-releases")

# Flask 2.0 / Werkzeug 2.0: the newest Flask that still has app.session_cookie_name,
# which Flask-Session <= 0.4 reads.
_FLASK_2_0 = ("flask==2.0.3", "werkzeug==2.0.3", "jinja2==3.0.3", "markupsafe==2.1.5",
              "itsdangerous==2.0.1", "click==8.0.4")
_FLASK_2_3 = ("flask==2.3.3", "werkzeug==2.3.8", "jinja2==3.1.4", "markupsafe==2.1.5",
              "itsdangerous==2.1.2", "click==8.1.7", "blinker==1.7.0")
_FLASK_3_0 = ("werkzeug==3.0.1", "jinja2==3.1.4", "markupsafe==2.1.5", "itsdangerous==2.1.2",
              "click==8.1.7", "blinker==1.7.0")
# What this project pins (pyproject.toml): a current Flask-Session 0.8 deployment.
_FLASK_3_1 = ("flask==3.1.3", "werkzeug==3.1.9", "jinja2==3.1.6", "markupsafe==3.0.4",
              "itsdangerous==2.2.0", "click==8.5.1", "blinker==1.9.0")


@dataclasses.dataclass(frozen=True)
class Release:
    """One Flask-Session release, what it is installed with, and the files it writes."""

    version: str
    pins: tuple[str, ...]
    header_style: str  # what its cachelib writes before the pickle: "pickle" (<= 0.6) or "struct"
    hash_name: str  # cachelib's file name hash: md5 before cachelib 0.16, sha256 since
    pickle_protocol: int = 5  # cachelib pickles with HIGHEST_PROTOCOL: 5 on Python 3.8+

    @property
    def cachelib(self) -> str:
        return next(pin.split("==")[1] for pin in self.pins if pin.startswith("cachelib=="))

    @property
    def key(self) -> str:
        """The cache directory's name: the release, then a hash of the pins and the interpreter."""
        digest = hashlib.sha256("\n".join((*self.pins, sys.version)).encode()).hexdigest()[:12]
        return f"{self.version}-{digest}"


RELEASES: dict[str, Release] = {release.version: release for release in (
    Release("0.3.2", ("flask-session==0.3.2", "cachelib==0.1.1", *_FLASK_2_0), "pickle", "md5"),
    Release("0.4.0", ("flask-session==0.4.0", "cachelib==0.6.0", *_FLASK_2_0), "pickle", "md5"),
    Release("0.5.0", ("flask-session==0.5.0", "cachelib==0.10.2", *_FLASK_2_3), "struct", "md5"),
    Release("0.6.0", ("flask-session==0.6.0", "cachelib==0.12.0", "flask==3.0.0", *_FLASK_3_0),
            "struct", "md5"),
    Release("0.7.0", ("flask-session==0.7.0", "cachelib==0.13.0", "msgspec==0.18.6", "flask==3.0.2",
                      *_FLASK_3_0), "struct", "md5"),
    Release("0.8.0", ("flask-session==0.8.0", "cachelib==0.17.0", "msgspec==0.22.0", *_FLASK_3_1),
            "struct", "sha256"),
)}


class ReleaseBuildError(RuntimeError):
    """pip could not build a release's virtualenv; carries pip's own message."""


def release_dir(release: Release, cache_dir: str = CACHE_DIR) -> str:
    return os.path.join(cache_dir, release.key)


def _python_of(directory: str) -> str:
    return os.path.join(directory, "bin", "python")


def release_python(release: Release, cache_dir: str = CACHE_DIR) -> str:
    """The python of *release*'s virtualenv, built first if it is not cached yet."""
    target = release_dir(release, cache_dir)
    marker = os.path.join(target, "sessionshift-build.json")
    if os.path.exists(marker):
        return _python_of(target)
    os.makedirs(cache_dir, exist_ok=True)
    with open(os.path.join(cache_dir, f".{release.version}.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another run may be building this one right now
        if not os.path.exists(marker):
            _build(release, target, marker)
    return _python_of(target)


def build_record(release: Release, cache_dir: str = CACHE_DIR) -> dict | None:
    """What the build of *release*'s virtualenv recorded (pins, seconds), or None if not built."""
    try:
        with open(os.path.join(release_dir(release, cache_dir), "sessionshift-build.json")) as handle:
            return json.load(handle)
    except FileNotFoundError:
        return None


def _build(release: Release, target: str, marker: str) -> None:
    started = time.monotonic()
    # Under the release's lock nobody else builds it: a temporary directory left here was
    # left by a build that was killed.
    for stale in glob.glob(f"{glob.escape(target)}.tmp-*"):
        shutil.rmtree(stale, ignore_errors=True)
    tmp = f"{target}.tmp-{os.getpid()}"
    try:
        # No pip inside: the test runner's pip installs into it (pip --python), which
        # saves the ensurepip step, the slowest part of making a virtualenv.
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", tmp], check=True)
        command = [sys.executable, "-m", "pip", "--python", _python_of(tmp), "install", "--quiet",
                   "--no-deps", "--only-binary=:all:", "--disable-pip-version-check", *release.pins]
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode:
            raise ReleaseBuildError(f"pip could not install Flask-Session {release.version} "
                                    f"({' '.join(release.pins)}): {done.stderr.strip()[-2000:]}")
        check = subprocess.run([_python_of(tmp), "-c", "import flask, flask_session, cachelib"],
                               capture_output=True, text=True)
        if check.returncode:
            raise ReleaseBuildError(f"Flask-Session {release.version} does not import on Python "
                                    f"{sys.version.split()[0]}: {check.stderr.strip()[-2000:]}")
        with open(os.path.join(tmp, "sessionshift-build.json"), "w") as handle:
            json.dump({"release": release.version, "pins": list(release.pins),
                       "python": sys.version.split()[0],
                       "seconds": round(time.monotonic() - started, 1)}, handle)
        # A virtualenv's scripts name its path, but `bin/python` run directly does not
        # need them: renaming the finished directory into place is safe.
        os.rename(tmp, target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            shutil.rmtree(tmp)
    assert os.path.exists(marker)
