"""Where a session lives in Redis.

The app knows a session's sid but not its file; the tools know the file but
not the sid. The one name both can compute is cachelib's file name,
``hash(prefix + sid)``, so from phase 2 to phase 4 every session lives under

    <prefix>h:{<file name>}      the session (msgpack or pickle value, TTL = expiry)
    <prefix>t:{<file name>}      its tombstone after a logout (short TTL)

The braces are a Redis Cluster hash tag: a session and its tombstone share a
slot, so one script can touch both. In phase 5 the interface may move a
session to stock Flask-Session's key ``<prefix><sid>``; its file name is again
``hash(prefix + sid)``.

Generations. Every copy lives in the generation the host's phase file names
(``phase.json`` ``generation``, chosen by the move out of ``file``; see
docs/architecture.md "Generations"). Generation 0 is the names above;
generation N > 0 puts ``g<N>:`` before the tag:

    <prefix>g<N>:h:{<file name>}    <prefix>g<N>:t:{<file name>}

so the hash tag, and with it the slot of a session and its tombstone, is the
same in every generation, and a reader of one generation never sees another's
copies. The value is untouched: the generation lives in the key name only,
and only here.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Literal

from .formats import DEFAULT_PREFIX, HashName, detect_hash, session_file_name

KeyKind = Literal["hashed", "tombstone", "stock"]

_HASHED_TAG = "h:{"
_TOMBSTONE_TAG = "t:{"
TAG_END = "}"  # closes the hash tag: a hashed or tombstone key is its head, the file name, this
_GENERATION_KEY = re.compile(r"g(\d+):[ht]:\{")


@dataclasses.dataclass(frozen=True, slots=True)
class ParsedKey:
    kind: KeyKind
    file_name: str  # the cachelib file name this key's session belongs to
    sid: str | None = None  # known only for stock keys


@dataclasses.dataclass(frozen=True, slots=True)
class KeyLayout:
    """Key names under one prefix and cachelib hash method."""

    prefix: str = DEFAULT_PREFIX
    hash_name: HashName = "sha256"
    generation: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.generation, int) or self.generation < 0:
            raise ValueError(f"generation must be an integer >= 0, not {self.generation!r}")

    @property
    def _space(self) -> str:
        """What comes between the prefix and the tag: nothing in generation 0."""
        return f"g{self.generation}:" if self.generation else ""

    def in_generation(self, generation: int) -> KeyLayout:
        return dataclasses.replace(self, generation=generation)

    def file_name(self, sid: str) -> str:
        return session_file_name(sid, self.prefix, self.hash_name)

    @property
    def session_head(self) -> str:
        """A session key before its file name (for callers that write keys by the thousand)."""
        return f"{self.prefix}{self._space}{_HASHED_TAG}"

    @property
    def tombstone_head(self) -> str:
        return f"{self.prefix}{self._space}{_TOMBSTONE_TAG}"

    def session_key(self, file_name: str) -> str:
        return f"{self.session_head}{file_name}{TAG_END}"

    def tombstone_key(self, file_name: str) -> str:
        return f"{self.tombstone_head}{file_name}{TAG_END}"

    def stock_key(self, sid: str) -> str:
        """Stock Flask-Session's Redis key for *sid*."""
        return f"{self.prefix}{sid}"

    @property
    def stock_moved_key(self) -> str:
        """Set when this generation first moved a session to its stock key (phase 5).

        A stock key carries no generation (stock Flask-Session reads it), so this marker is
        what ties stock keys to a generation after the first: without it, every stock key is
        older than the host's last return to ``file`` and is never read, moved back, exported
        or backed up (store.stock_keys_current; generation 0 was never retired). Its braces
        keep :meth:`parse` from taking it for a stock session."""
        return f"{self.prefix}{self._space}stock:{{moved}}"

    def session_key_for_sid(self, sid: str) -> str:
        return self.session_key(self.file_name(sid))

    @property
    def session_pattern(self) -> str:
        """SCAN pattern for the hashed session keys of this generation."""
        return f"{_glob_escape(self.prefix)}{self._space}h:{{*}}"

    @property
    def all_pattern(self) -> str:
        """SCAN pattern for every key under the prefix (hashed, tombstones, stock)."""
        return f"{_glob_escape(self.prefix)}*"

    def parse(self, key: str | bytes) -> ParsedKey | None:
        """What *key* is, or None if it is not a session key of this layout."""
        if isinstance(key, bytes):
            try:
                key = key.decode("utf-8")
            except UnicodeDecodeError:
                return None
        if not key.startswith(self.prefix):
            return None
        rest = key[len(self.prefix):]
        space = self._space
        for tag, kind in ((_HASHED_TAG, "hashed"), (_TOMBSTONE_TAG, "tombstone")):
            tag = space + tag
            if rest.startswith(tag) and rest.endswith(TAG_END):
                file_name = rest[len(tag):-1]
                if detect_hash(file_name):
                    return ParsedKey(kind, file_name)
                return None
        if not rest or "{" in rest or "}" in rest:
            return None  # another generation's key, or not ours
        return ParsedKey("stock", self.file_name(rest), sid=rest)

    def generation_of(self, key: str | bytes) -> int | None:
        """The generation of a hashed or tombstone key under this prefix (None: not one)."""
        if isinstance(key, bytes):
            key = key.decode("utf-8", "replace")
        if not key.startswith(self.prefix):
            return None
        rest = key[len(self.prefix):]
        if rest.startswith((_HASHED_TAG, _TOMBSTONE_TAG)):
            return 0
        match = _GENERATION_KEY.match(rest)
        return int(match.group(1)) if match else None


def _glob_escape(text: str) -> str:
    """Escape Redis glob metacharacters in a literal prefix."""
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)
