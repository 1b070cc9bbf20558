"""Deterministic slices of a session directory, for parallel and resumable scans.

``os.scandir`` order is not stable across runs, so work is divided by name:
a file's *share* is the first hex digit of its cachelib name (the name is a
hash, so shares are even), or a CRC of the name for anything else. A worker
process scans the directory once per group of shares and handles only the
entries of its shares; a checkpoint records the shares that are done. The
same idea gives a stable sample for validation: a file is in a p% sample when
the tail of its hash falls below p%.

Entries are streamed from ``os.scandir``: nothing lists the whole directory.
"""

from __future__ import annotations

import dataclasses
import os
import zlib
from collections.abc import Iterable, Iterator

from .formats import DEFAULT_PICKLE_PROTOCOL, DEFAULT_SERIALIZER, SerializerName, classify_name
from .keys import KeyLayout

SHARES = 16
_HEX_VALUE = {digit: value for value, digit in enumerate("0123456789abcdef")}


def share_of(name: str) -> int:
    """The share (0-15) of a directory entry, from its name alone."""
    value = _HEX_VALUE.get(name[:1])
    if value is not None:
        return value
    return zlib.crc32(name.encode("utf-8", "surrogateescape")) % SHARES


def sample_fraction(name: str) -> float:
    """A stable number in [0, 1) for *name*, independent of its share."""
    tail = name[-8:]
    if len(tail) == 8 and all(c in _HEX_VALUE for c in tail):
        return int(tail, 16) / 2**32
    return zlib.adler32(name.encode("utf-8", "surrogateescape")) / 2**32


def in_sample(name: str, percent: float) -> bool:
    return percent >= 100.0 or sample_fraction(name) * 100.0 < percent


def iter_entries(directory: str, shares: Iterable[int] | None = None,
                 sample_percent: float = 100.0) -> Iterator[tuple[str, str, str]]:
    """(kind, name, path) of the regular files of *directory* in *shares*, streamed.

    kind is :func:`formats.classify_name`'s (session, seed, cachelib, foreign);
    a symbolic link is always "foreign" (never followed out of the directory),
    and subdirectories are not session entries at all.
    """
    wanted = None if shares is None else frozenset(shares)
    # The hot test: a cachelib name's share is its first character.
    wanted_first = None if wanted is None else frozenset(d for d, v in _HEX_VALUE.items() if v in wanted)
    with os.scandir(directory) as entries:
        for entry in entries:
            name = entry.name
            if wanted is not None and name[:1] not in wanted_first and (
                    name[:1] in _HEX_VALUE or share_of(name) not in wanted):
                continue
            if sample_percent < 100.0 and not in_sample(name, sample_percent):
                continue
            try:
                if not entry.is_file(follow_symlinks=False):
                    if entry.is_symlink():
                        yield "foreign", name, entry.path
                    continue
            except OSError:
                continue  # vanished between readdir and stat: the app deleted it
            yield classify_name(name), name, entry.path


def groups(shares: Iterable[int], count: int) -> list[tuple[int, ...]]:
    """*shares* cut into about *count* contiguous groups (one directory scan each)."""
    pending = sorted(shares)
    if not pending:
        return []
    size = max(1, -(-len(pending) // max(count, 1)))
    return [tuple(pending[i:i + size]) for i in range(0, len(pending), size)]


@dataclasses.dataclass
class SessionSource:
    """The session files a scan reads and the Redis keys and values they map to: what migrate
    and validate are told first (their configurations extend it)."""

    session_dir: str
    layout: KeyLayout = dataclasses.field(default_factory=KeyLayout)
    serializer: SerializerName = DEFAULT_SERIALIZER
    pickle_protocol: int = DEFAULT_PICKLE_PROTOCOL  # for sessions with no pickle payload yet (seed files)
