"""Where a session lives in Redis.

The app knows a session's sid but not its file; the tools know the file but
not the sid. The one name both can compute is cachelib's file name,
``hash(prefix + sid)``, so from phase 2 to phase 4 every session lives under

    <prefix>h:{<file name>}      the session (pickle or msgpack value, TTL = expiry),
                                 or, after a logout, its tombstone (:data:`TOMBSTONE`, short TTL)

A logout does not delete the key: it writes the tombstone marker into it
(``SET key TOMBSTONE EX ttl``), so that a copy made by a tool (``SET NX``) is
refused by the marker as by any newer value, atomically and without a script,
and a logged-out session is never revived. Every reader takes the marker for
"logged out, no session" (:func:`is_tombstone`). The braces are a Redis Cluster
hash tag (kept from when a session had a separate tombstone key to share a slot
with). In phase 5 the interface may move a session to stock Flask-Session's
key ``<prefix><sid>``; its file name is again ``hash(prefix + sid)``. Stock keys
never hold the marker.

Generations. Every copy lives in the generation the host's phase file names
(``phase.json`` ``generation``, chosen by the move out of ``file``; see
docs/architecture.md "Generations"). Generation 0 is the names above;
generation N > 0 puts ``g<N>:`` before the tag:

    <prefix>g<N>:h:{<file name>}

so the hash tag, and with it the slot of a session, is the same in every
generation, and a reader of one generation never sees another's
copies. The value is untouched: the generation lives in the key name only,
and only here.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Literal

from .formats import DEFAULT_PREFIX, HashName, detect_hash, session_file_name

# "tombstone" is a hashed key that holds TOMBSTONE: told by its value, never by its name.
KeyKind = Literal["hashed", "tombstone", "stock"]

_HASHED_TAG = "h:{"
TAG_END = "}"  # closes the hash tag: a hashed key is its head, the file name, this
# Builds before the tombstone moved into the session key kept it in a key of its own.
_LEGACY_TOMBSTONE_TAG = "t:{"
_GENERATION_KEY = re.compile(r"g(\d+):[ht]:\{")  # legacy tombstone keys too: a purge removes them

# A logout's tombstone: the value of the session key of a logged-out session. It can never
# be a session value in any format read here: a pickle payload starts with PROTO (0x80) or
# another opcode, a msgpack session with a map byte (0x80-0x8f, 0xde, 0xdf), a JSON one with
# "{"; none starts with a NUL byte. Short, so that the check after a refused SET NX
# (GETRANGE of its length) costs little.
TOMBSTONE = b"\x00logged-out"


def is_tombstone(value: bytes | None) -> bool:
    """Whether a session key's value is the logout tombstone (the user logged out: no session)."""
    return value == TOMBSTONE


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

    def session_key(self, file_name: str) -> str:
        return f"{self.session_head}{file_name}{TAG_END}"

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
        """SCAN pattern for every key under the prefix (hashed, stock, markers)."""
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
        tag = self._space + _HASHED_TAG
        if rest.startswith(tag) and rest.endswith(TAG_END):
            file_name = rest[len(tag):-1]
            return ParsedKey("hashed", file_name) if detect_hash(file_name) else None
        if not rest or "{" in rest or "}" in rest:
            return None  # another generation's key, or not ours
        return ParsedKey("stock", self.file_name(rest), sid=rest)

    def legacy_tombstone_file(self, key: str) -> str | None:
        """The file name of a tombstone key as earlier builds named it (``<prefix>[g<N>:]t:{<file>}``,
        read from their backups), else None."""
        head = f"{self.prefix}{self._space}{_LEGACY_TOMBSTONE_TAG}"
        if key.startswith(head) and key.endswith(TAG_END) and detect_hash(key[len(head):-1]):
            return key[len(head):-1]
        return None

    def generation_of(self, key: str | bytes) -> int | None:
        """The generation of a hashed (or legacy tombstone) key under this prefix (None: not one)."""
        if isinstance(key, bytes):
            key = key.decode("utf-8", "replace")
        if not key.startswith(self.prefix):
            return None
        rest = key[len(self.prefix):]
        if rest.startswith((_HASHED_TAG, _LEGACY_TOMBSTONE_TAG)):
            return 0
        match = _GENERATION_KEY.match(rest)
        return int(match.group(1)) if match else None


def _glob_escape(text: str) -> str:
    """Escape Redis glob metacharacters in a literal prefix."""
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)
