"""The demo / benchmark session generator: real cachelib files, realistic sizes, reproducible."""

from __future__ import annotations

import os
import pickle

import pytest
from cachelib.file import FileSystemCache

from sessionshift import formats, seed

NOW = 1_800_000_000.0


def test_sessions_are_readable_by_formats_and_in_the_size_range(tmp_path):
    sids = seed.seed_sessions(str(tmp_path), 40, lifetime=3600, rng_seed=1, now=NOW)

    assert len(set(sids)) == 40
    sessions = list(formats.scan_directory(str(tmp_path)))
    assert all(isinstance(s, formats.FileSession) for s in sessions)
    by_name = {s.file_name: s for s in sessions}
    for sid in sids:
        session = by_name[formats.session_file_name(sid)]
        assert seed.MIN_SESSION_BYTES <= session.size <= seed.MAX_SESSION_BYTES + 4
        assert NOW < session.expiry <= NOW + 3600
        assert session.header_style == "struct" and session.hash_name == "sha256"
        assert {"user", "language", "history", "csrf_token", "logged_in_at"} <= set(session.data)
        assert session.data["history"], "every seeded user has translated something"


def test_real_cachelib_reads_them_under_the_app_key(tmp_path):
    sids = seed.seed_sessions(str(tmp_path), 5, prefix="translate:", rng_seed="app1")
    cache = FileSystemCache(str(tmp_path), threshold=0, hash_method=__import__("hashlib").sha256)

    for sid in sids:
        data = cache.get("translate:" + sid)
        assert isinstance(data, dict) and data["_permanent"] is True
    assert cache.get("translate:not-a-seeded-sid") is None


def test_md5_names_for_old_cachelib(tmp_path):
    sids = seed.seed_sessions(str(tmp_path), 3, hash_name="md5", lifetime=0, rng_seed=2, now=NOW)

    for sid in sids:
        name = formats.session_file_name(sid, hash_name="md5")
        session = formats.read_session_file(os.path.join(tmp_path, name))
        assert session.expiry == 0  # lifetime 0: never expires


def test_same_rng_seed_same_sessions(tmp_path):
    first, second, other = (tmp_path / name for name in ("a", "b", "c"))
    for directory in (first, second, other):
        directory.mkdir()

    sids_a = seed.seed_sessions(str(first), 10, rng_seed=7, now=NOW)
    sids_b = seed.seed_sessions(str(second), 10, rng_seed=7, now=NOW)
    sids_c = seed.seed_sessions(str(other), 10, rng_seed=8, now=NOW)

    assert sids_a == sids_b and set(sids_a).isdisjoint(sids_c)
    assert sorted(os.listdir(first)) == sorted(os.listdir(second))
    for name in os.listdir(first):
        assert (first / name).read_bytes() == (second / name).read_bytes()


def test_sids_look_like_flask_session_ids(tmp_path):
    sids = seed.seed_sessions(str(tmp_path), 3)  # no rng_seed: secrets-based

    assert all(len(sid) == 43 and "=" not in sid for sid in sids)


def test_missing_directory_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="create it first"):
        seed.seed_sessions(str(tmp_path / "nope"), 1)


def test_main_writes_the_sids_file(tmp_path, capsys):
    sessions = tmp_path / "sessions"
    sessions.mkdir()
    sids_file = tmp_path / "sids.txt"

    code = seed.main(["--seed-sessions", "4", "--dir", str(sessions), "--rng-seed", "x",
                      "--sids-file", str(sids_file), "--lifetime", "600"])

    assert code == 0
    sids = sids_file.read_text().split()
    assert len(sids) == 4 and oct(sids_file.stat().st_mode & 0o777) == "0o600"
    assert sorted(os.listdir(sessions)) == sorted(formats.session_file_name(s) for s in sids)
    assert '"seeded": 4' in capsys.readouterr().out
    # the payload is an ordinary pickle of a plain dict: nothing exotic for the restricted unpickler
    raw = (sessions / formats.session_file_name(sids[0])).read_bytes()
    assert isinstance(pickle.loads(raw[4:]), dict)


def test_main_reports_an_unknown_owner(tmp_path, capsys):
    code = seed.main(["--seed-sessions", "1", "--dir", str(tmp_path), "--owner", "no-such-user-xyz"])

    assert code == 2 and "no such user" in capsys.readouterr().err
