"""Shares: a deterministic split of the directory that checkpoints and workers rely on."""

from __future__ import annotations

import os

from sessionshift import formats
from sessionshift.shares import SHARES, groups, in_sample, iter_entries, share_of


def test_share_of_a_cachelib_name_is_its_first_hex_digit_and_stable():
    name = formats.session_file_name("abc")
    assert share_of(name) == int(name[0], 16)
    assert all(0 <= share_of(n) < SHARES for n in ("sess_x", "README", "__wz_cache_count", ""))
    assert share_of("sess_x") == share_of("sess_x")


def test_groups_cover_every_share_once():
    for count in (1, 2, 3, 4, 16, 40):
        cut = groups(range(SHARES), count)
        assert sorted(s for group in cut for s in group) == list(range(SHARES))
        assert len(cut) <= max(count, 1)
    assert groups([], 4) == []


def test_iter_entries_streams_only_the_wanted_shares(tmp_path):
    names = [formats.session_file_name(f"s{i}") for i in range(64)]
    for name in names:
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "sub").mkdir()
    os.symlink("/etc/passwd", tmp_path / "link")
    every = list(iter_entries(str(tmp_path)))
    assert sorted(n for k, n, _ in every if k == "session") == sorted(names)
    assert ("foreign", "link") in [(k, n) for k, n, _ in every]
    assert "sub" not in [n for _, n, _ in every]
    part = [n for _, n, _ in iter_entries(str(tmp_path), shares=[0, 1])]
    assert part and all(share_of(n) in (0, 1) for n in part)


def test_sample_is_stable_and_roughly_the_percentage():
    names = [formats.session_file_name(f"s{i}") for i in range(4000)]
    chosen = [n for n in names if in_sample(n, 10)]
    assert 300 < len(chosen) < 500
    assert chosen == [n for n in names if in_sample(n, 10)]
    assert all(in_sample(n, 100) for n in names[:10])
