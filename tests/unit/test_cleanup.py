"""sessionshift.cleanup on a real session directory: what goes, what stays, and when 'all' is refused."""

from __future__ import annotations

import os
import time

import pytest

from sessionshift import formats, state
from sessionshift.cleanup import CleanupRefused, cleanup_sessions

DAY = 86400


@pytest.fixture
def directory(tmp_path):
    """A session directory with every kind of entry; returns (path, {role: file name})."""
    path = tmp_path / "sessions"
    path.mkdir()
    now = time.time()
    names = {}

    def session(role, expiry, age=0.0, data=None):
        name = formats.session_file_name(role)
        formats.write_session_file(str(path), name, data or {"role": role}, expiry, mtime=now - age)
        names[role] = name

    session("live", int(now) + DAY)
    session("forever", 0)
    session("expired", int(now) - 10)
    session("old", int(now) + DAY, age=10 * DAY)
    session("old-forever", 0, age=10 * DAY)
    for role, content in (("corrupt", b"\x00\x01"), ("hostile", b"\x00\x00\x00\x00cos\nsystem\n(S'x'\ntR.")):
        name = formats.session_file_name(role)
        (path / name).write_bytes(content)
        names[role] = name
    os.utime(path / names["hostile"], (now - 10 * DAY, now - 10 * DAY))
    # Never touched: cachelib's count file and a write in flight, foreign files, a symlink.
    (path / formats.session_file_name(formats.CACHELIB_COUNT_KEY, prefix="")).write_bytes(b"\x00" * 4)
    (path / ("tmpabc" + formats.CACHELIB_TEMP_SUFFIX)).write_bytes(b"")
    (path / "README").write_text("not a session")
    (path / "subdir").mkdir()
    os.symlink("/etc/hostname", path / formats.session_file_name("link"))
    return str(path), names


def _left(path):
    return set(os.listdir(path))


def test_expired_scope_removes_only_expired_sessions(directory):
    path, names = directory
    before = _left(path)
    result = cleanup_sessions(path)
    assert result.removed == 1 and result.removed_files == [names["expired"]]
    assert _left(path) == before - {names["expired"]}
    assert (result.kept, result.corrupt_kept) == (4, 2)
    assert (result.skipped_cachelib, result.skipped_foreign) == (2, 2)
    assert not cleanup_sessions(path).changed  # idempotent


def test_older_scope_uses_the_mtime_cutoff(directory):
    path, names = directory
    result = cleanup_sessions(path, scope="older", cutoff=time.time() - DAY, force=True)
    assert set(result.removed_files) == {names["expired"], names["old"], names["old-forever"]}
    assert result.removed_by_reason == {"expired": 1, "older": 2, "all": 0, "corrupt": 0}
    assert names["live"] in _left(path) and names["hostile"] in _left(path)


def test_corrupt_files_go_only_with_include_corrupt(directory):
    path, names = directory
    result = cleanup_sessions(path, scope="older", cutoff=time.time() - DAY, include_corrupt=True,
                              force=True)
    assert result.removed_by_reason["corrupt"] == 1  # the old one only; the fresh one is kept
    assert names["hostile"] not in _left(path) and names["corrupt"] in _left(path)
    result = cleanup_sessions(path, include_corrupt=True)
    assert result.removed_files == [names["corrupt"]]


def test_all_is_refused_unless_phase_5(directory, tmp_path):
    path, _names = directory
    state_dir = str(tmp_path / "state")
    before = _left(path)
    with pytest.raises(CleanupRefused, match="no phase file"):
        cleanup_sessions(path, scope="all", state_dir=state_dir)
    for document, said in (({"phase": "redis_only"}, "not phase 5"), ({"phase": 4}, "not phase 5"),
                           ({"nophase": True}, "cannot read the phase file.*unknown phase"),
                           ({"phase": "bogus"}, "cannot read the phase file.*unknown phase")):
        state.write_json(state.state_path(state_dir, state.PHASE_FILE), document)
        with pytest.raises(CleanupRefused, match=said):
            cleanup_sessions(path, scope="all", state_dir=state_dir)
    with open(state.state_path(state_dir, state.PHASE_FILE), "w") as handle:
        handle.write("{not json")
    with pytest.raises(CleanupRefused, match="cannot read the phase file"):
        cleanup_sessions(path, scope="all", state_dir=state_dir)
    with pytest.raises(CleanupRefused, match="needs state_dir"):
        cleanup_sessions(path, scope="all")
    assert _left(path) == before


def test_all_in_phase_5_removes_every_session_but_nothing_else(directory, tmp_path):
    path, names = directory
    state_dir = str(tmp_path / "state")
    state.write_json(state.state_path(state_dir, state.PHASE_FILE), {"phase": "redis", "number": 5})
    result = cleanup_sessions(path, scope="all", state_dir=state_dir)
    assert result.removed == 5 and result.corrupt_kept == 2
    assert _left(path) == {names["corrupt"], names["hostile"], "README", "subdir",
                           formats.session_file_name("link"), "tmpabc" + formats.CACHELIB_TEMP_SUFFIX,
                           formats.session_file_name(formats.CACHELIB_COUNT_KEY, prefix="")}
    assert os.path.exists("/etc/hostname")


def test_dry_run_lists_and_deletes_nothing(directory, tmp_path):
    path, names = directory
    before = _left(path)
    result = cleanup_sessions(path, scope="older", cutoff=time.time() - DAY, include_corrupt=True,
                              dry_run=True, force=True)
    assert result.removed == 4 and set(result.removed_files) == {
        names["expired"], names["old"], names["old-forever"], names["hostile"]}
    assert _left(path) == before


def test_a_file_rewritten_after_it_was_read_is_kept(directory, monkeypatch):
    path, names = directory
    real_scan = formats.scan_directory

    def scan_then_app_rewrites(*args, **kwargs):
        for item in real_scan(*args, **kwargs):
            if getattr(item, "file_name", None) == names["expired"]:
                # Read, then the user comes back: the app writes a fresh session to that name.
                formats.write_session_file(path, names["expired"], {"fresh": True}, 0)
            yield item

    monkeypatch.setattr(formats, "scan_directory", scan_then_app_rewrites)
    result = cleanup_sessions(path)
    assert result.removed == 0 and result.changed_meanwhile == 1
    assert formats.read_session_file(os.path.join(path, names["expired"])).data == {"fresh": True}


def test_bad_arguments(directory):
    path, _names = directory
    with pytest.raises(ValueError, match="needs a cutoff"):
        cleanup_sessions(path, scope="older")
    with pytest.raises(ValueError, match="unknown scope"):
        cleanup_sessions(path, scope="everything")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        cleanup_sessions(path + "-missing")


@pytest.mark.parametrize("phase", [None, "file", "dual_write"])
def test_older_refuses_to_remove_live_sessions_where_files_are_the_only_copy(directory, tmp_path, phase):
    path, names = directory
    state_dir = str(tmp_path / "state")
    if phase:
        state.write_json(state.state_path(state_dir, state.PHASE_FILE), {"phase": phase})
    before = _left(path)
    # max_age 0, and one shorter than the "old" session's life
    for cutoff in (time.time(), time.time() - DAY):
        with pytest.raises(CleanupRefused, match=r"refusing to remove \d+ live session file"):
            cleanup_sessions(path, scope="older", cutoff=cutoff, state_dir=state_dir)
    assert _left(path) == before
    result = cleanup_sessions(path, scope="older", cutoff=time.time() - 20 * DAY, state_dir=state_dir)
    assert result.removed_files == [names["expired"]]  # nothing live is older than 20 days


def test_older_removes_live_files_once_the_app_reads_redis(directory, tmp_path):
    path, names = directory
    state_dir = str(tmp_path / "state")
    state.write_json(state.state_path(state_dir, state.PHASE_FILE), {"phase": "redis_read"})
    result = cleanup_sessions(path, scope="older", cutoff=time.time() - DAY, state_dir=state_dir)
    assert names["old"] in result.removed_files


def test_a_cutoff_in_the_future_is_always_refused(directory):
    path, _names = directory
    before = _left(path)
    with pytest.raises(CleanupRefused, match="in the future"):
        cleanup_sessions(path, scope="older", cutoff=time.time() + 60, force=True)
    assert _left(path) == before
