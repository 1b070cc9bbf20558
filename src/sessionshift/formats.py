"""Session formats: cachelib FileSystemCache files, the seed's JSON files, Redis values.

The source of the migration is a Flask-Session ``filesystem`` directory, i.e. a
cachelib ``FileSystemCache``:

* file name = ``hashlib.<md5|sha256>(prefix + sid).hexdigest()`` (md5 before
  cachelib 0.16, sha256 since); the sid itself is not stored in the file;
* header = ``struct.pack("I", expiry)`` (cachelib >= 0.7) or a pickled int
  (cachelib <= 0.6, werkzeug's cache); expiry 0 means "never";
* payload = a pickle of the session dict, in the protocol of the Python that
  wrote it (cachelib uses ``pickle.HIGHEST_PROTOCOL``: 4 up to Python 3.7, 5 since).

Redis values come in the formats of :data:`VALUE_FORMATS`, one class each (as
cachelib has a serializer class per format): ``pickle`` keeps the source's own
payload bytes and is exact, ``msgpack`` (Flask-Session 0.7+'s) is an opt-in
that changes some types (tuple -> list, UUID -> str...).

Nothing in here trusts a file: every pickle goes through :mod:`.safepickle`,
and every problem becomes a :class:`SessionFileError` that names the file and
the cause, so a directory scan reports it and carries on.
"""

from __future__ import annotations

import dataclasses
import errno
import functools
import hashlib
import json
import os
import pickle
import pickletools
import stat
import struct
import time
from collections.abc import Callable, Iterator
from typing import Any, ClassVar, Literal

from . import exact, safepickle
from .atomicfile import write_atomic
from .errors import SessionshiftError

HeaderStyle = Literal["struct", "pickle"]
HashName = Literal["md5", "sha256"]
SerializerName = Literal["msgpack", "pickle"]

HEADER_STYLES: tuple[HeaderStyle, ...] = ("struct", "pickle")
HASH_NAMES: tuple[HashName, ...] = ("md5", "sha256")
SERIALIZERS: tuple[SerializerName, ...] = ("pickle", "msgpack")
DEFAULT_SERIALIZER: SerializerName = "pickle"
# Stock Flask-Session 0.7+ keys (phase 5's move option) hold its own format.
STOCK_SERIALIZER: SerializerName = "msgpack"

DEFAULT_PREFIX = "session:"
# cachelib's own bookkeeping: the count file (its key is not prefixed) and the
# temporary files of an in-flight write.
CACHELIB_COUNT_KEY = "__wz_cache_count"
CACHELIB_TEMP_SUFFIX = ".__wz_cache"
SEED_FILE_PREFIX = "sess_"

_HEX = frozenset("0123456789abcdef")
_HASH_BY_LENGTH: dict[int, HashName] = {32: "md5", 64: "sha256"}
_COUNT_FILE_NAMES = frozenset(
    hashlib.new(h, CACHELIB_COUNT_KEY.encode()).hexdigest() for h in HASH_NAMES
)
_STRUCT_HEADER = struct.Struct("I")  # native order and size, as cachelib writes it
# First opcode of a pickled int header: PROTO (protocol 2+) or INT/BININT*/LONG (0/1).
_PICKLED_INT_OPCODES = frozenset((b"\x80", b"I", b"J", b"K", b"M", b"L"))
# The pickle protocol written when the source's is unknown (no session file yet):
# every Python 3 reads 4, only 3.8+ reads 5.
DEFAULT_PICKLE_PROTOCOL = 4
# The default budget's largest session (safepickle.Budget, SESSIONSHIFT_MAX_SESSION_BYTES).
MAX_SESSION_BYTES = safepickle.Budget.max_session_bytes


class SessionFileError(SessionshiftError):
    """One session file could not be used; names the file and the cause."""

    def __init__(self, path: str, reason: str):
        self.path = path
        self.reason = reason
        super().__init__(f"{path}: {reason}")


class SessionValueError(SessionshiftError, ValueError):
    """A Redis value could not be decoded or a session could not be encoded."""


@dataclasses.dataclass(frozen=True, slots=True)
class FileSession:
    """One session read from a file.

    ``file_name`` is the cachelib name (the hash), which is also what the Redis
    key is built from. ``sid`` is known only for the seed's ``sess_<sid>`` files.
    """

    path: str
    file_name: str
    expiry: int  # epoch seconds; 0 = never expires
    data: dict
    header_style: HeaderStyle
    hash_name: HashName
    size: int
    mtime: float
    sid: str | None = None
    protocol: int | None = None  # the payload's pickle protocol (None for the seed's JSON files)

    def expired(self, now: float | None = None) -> bool:
        return self.expiry != 0 and self.expiry < (time.time() if now is None else now)


# --------------------------------------------------------------------------- names


def session_file_name(sid: str, prefix: str = DEFAULT_PREFIX, hash_name: HashName = "sha256") -> str:
    """The cachelib file name of *sid*: ``hash(prefix + sid)``."""
    return hashlib.new(hash_name, (prefix + sid).encode("utf-8")).hexdigest()


def detect_hash(file_name: str) -> HashName | None:
    """md5 or sha256 from a cachelib file name's length; None if it is not one."""
    hash_name = _HASH_BY_LENGTH.get(len(file_name))
    if hash_name is None or not _HEX.issuperset(file_name):
        return None
    return hash_name


def classify_name(file_name: str) -> Literal["session", "seed", "cachelib", "foreign"]:
    """What a directory entry is, from its name alone."""
    if file_name in _COUNT_FILE_NAMES or file_name.endswith(CACHELIB_TEMP_SUFFIX):
        return "cachelib"
    if detect_hash(file_name):
        return "session"
    if file_name.startswith(SEED_FILE_PREFIX) and len(file_name) > len(SEED_FILE_PREFIX):
        return "seed"
    return "foreign"


# --------------------------------------------------------------------------- cachelib files


def parse_cachelib_bytes(raw: bytes, path: str = "<bytes>") -> tuple[int, dict, HeaderStyle]:
    """(expiry, session dict, header style) from the bytes of one cachelib file.

    Every failure, whatever raised it, is a :class:`SessionFileError` for this
    one file: nothing in a file may stop the scan that met it.
    """
    expiry, data, style, _offset = parse_cachelib_file(raw, path)
    return expiry, data, style


def parse_cachelib_file(raw: bytes, path: str = "<bytes>") -> tuple[int, dict, HeaderStyle, int]:
    """:func:`parse_cachelib_bytes` plus where the payload starts: ``raw[offset:]`` is the
    session's pickle, already checked by the restricted unpickler."""
    if not raw:
        raise SessionFileError(path, "empty file")
    # A pickled-int header starts with the PROTO opcode (0x80) or, for protocol
    # 0/1 pickles of ints, with an INT/BININT/LONG opcode. A 4-byte struct header
    # is the expiry itself; 0x80 as its first byte would mean an expiry
    # congruent to 128 mod 256, so the pickle reading is tried first and the
    # struct reading is the fallback.
    # A refusal under one reading is that reading's failure, not yet the file's: a
    # struct expiry's bytes can read as a pickled int followed by a refused opcode
    # (0x3651174b starts with BININT1 then BINPERSID). The file is refused only when
    # no reading gives a session; a refusal is then the reason reported.
    errors, refusal = [], None
    for style in _header_order(raw):
        try:
            expiry, payload_offset = _read_header(raw, style)
            data = safepickle.loads(raw[payload_offset:])
        except safepickle.UnsafePickleError as exc:
            refusal = refusal or f"hostile or foreign pickle: {exc}"
            continue
        except safepickle.DecodeRefused as exc:
            refusal = refusal or f"refused: {exc}"
            continue
        except Exception as exc:
            errors.append(f"{style} header: {type(exc).__name__}: {_short(exc)}")
            continue
        if not isinstance(data, dict):
            raise SessionFileError(path, f"payload is a {type(data).__name__}, not a session dict")
        return expiry, data, style, payload_offset
    if refusal:
        raise SessionFileError(path, refusal)
    if len(raw) < _STRUCT_HEADER.size:
        raise SessionFileError(path, f"truncated file ({len(raw)} bytes, shorter than the header)")
    raise SessionFileError(path, "not a cachelib session file (" + "; ".join(errors) + ")")


# What a cachelib payload of a known protocol starts with: PROTO and its protocol (2-5; the
# pickle module writes no other), then for protocol 4+ usually a FRAME and its 8-byte length.
_KNOWN_PROTOCOLS = frozenset(range(2, pickle.HIGHEST_PROTOCOL + 1))
_PROTO, _FRAME, _STOP, _EMPTY_DICT = 0x80, 0x95, 0x2E, 0x7D
# Pickled-int headers werkzeug's cache and cachelib <= 0.6 write (protocol 1): BININT1,
# BININT2 or BININT, then STOP; the payload follows at the offset.
_PICKLED_INT_HEADERS = {ord("K"): 3, ord("M"): 4, ord("J"): 6}


def split_cachelib_file(raw: bytes, path: str = "<bytes>") -> tuple[int, int] | None:
    """(expiry, payload offset) of a cachelib file, from its structure: the payload is never unpickled.

    For copying a payload as it is: the exact value format never needs the
    session itself, and every reader of the value decodes it with the
    restricted unpickler, so a hostile payload is refused where it is read.
    Raises :class:`SessionFileError` for what no decode could accept (a payload
    of a known protocol with no STOP at its end, or shorter than its FRAME says:
    truncated). A struct expiry whose first byte is a pickled int's opcode has
    its header decoded (restricted, as :func:`parse_cachelib_file` tries it
    first), not its payload. Returns None when only a decode of the payload can
    tell: a payload of protocol 0 or 1, one that does not start with a dict, a
    header that reads both ways, a short file. The caller then takes
    :func:`parse_cachelib_file`, whose answer this one never contradicts.
    """
    if len(raw) < 8:
        return None
    first = raw[0]
    if bytes((first,)) in _PICKLED_INT_OPCODES:
        # Either reading may be the file's: use one only when the other cannot be.
        offset = _PICKLED_INT_HEADERS.get(first)
        struct_payload = _payload_start(raw, _STRUCT_HEADER.size)
        if (offset is not None and raw[offset - 1] == _STOP and _payload_start(raw, offset)
                and not struct_payload):
            expiry = int.from_bytes(raw[1:offset - 1], "little", signed=first == 0x4A)  # BININT: signed
            if expiry < 0:
                return None
        elif struct_payload and not _reads_as_pickled_int(raw):
            # A struct expiry whose first byte is an opcode (1 file in 40 or so): the decode
            # would try the pickled-int reading first and, that failing, take the struct one,
            # whatever the payload holds. Only the header is decoded (restricted, budgeted).
            offset, expiry = _STRUCT_HEADER.size, _STRUCT_HEADER.unpack_from(raw)[0]
        else:
            return None
    else:
        offset = _STRUCT_HEADER.size
        if not _payload_start(raw, offset):
            return None
        expiry = _STRUCT_HEADER.unpack_from(raw)[0]
    if raw[-1] != _STOP:
        raise SessionFileError(path, "truncated or damaged: the pickle payload does not end with STOP")
    start = offset + 2
    if raw[start] == _FRAME:
        frame = int.from_bytes(raw[start + 1:start + 9], "little")
        if start + 9 + frame > len(raw):
            raise SessionFileError(path, f"truncated: the pickle frame holds {frame:,} bytes, the file "
                                   f"{len(raw) - start - 9:,} after it")
        start += 9
    if start >= len(raw) or raw[start] != _EMPTY_DICT:
        return None  # not plainly a dict: the decode says what it is
    return expiry, offset


def cachelib_file_shape(raw: bytes, path: str = "<bytes>") -> tuple[HeaderStyle, int] | None:
    """(header style, pickle protocol) of a cachelib file, from its structure as
    :func:`split_cachelib_file` tells it (None when only a decode can tell; its errors)."""
    found = split_cachelib_file(raw, path)
    if found is None:
        return None
    # split took the pickled-int reading only when no struct payload follows the first 4 bytes.
    pickled = raw[:1] in _PICKLED_INT_OPCODES and not _payload_start(raw, _STRUCT_HEADER.size)
    return ("pickle" if pickled else "struct"), raw[found[1] + 1]  # the payload's PROTO argument


def _reads_as_pickled_int(raw: bytes) -> bool:
    """Whether the pickled-int reading of *raw*'s header succeeds, as :func:`parse_cachelib_file` tries it."""
    try:
        _read_header(raw, "pickle")
    except Exception:
        return False
    return True


def _payload_start(raw: bytes, offset: int) -> bool:
    """Whether a pickle of a known protocol (PROTO 2-5) starts at *offset* (<= 6; raw has 8+ bytes)."""
    return raw[offset] == _PROTO and raw[offset + 1] in _KNOWN_PROTOCOLS


def decode_payload(payload: bytes, path: str = "<bytes>") -> dict:
    """The session dict of a cachelib file's *payload*, through the restricted unpickler;
    a :class:`SessionFileError` worded as :func:`parse_cachelib_file` words it."""
    try:
        data = safepickle.loads(payload)
    except safepickle.UnsafePickleError as exc:
        raise SessionFileError(path, f"hostile or foreign pickle: {exc}") from None
    except safepickle.DecodeRefused as exc:
        raise SessionFileError(path, f"refused: {exc}") from None
    except Exception as exc:
        raise SessionFileError(path, f"not a cachelib session file (payload: {type(exc).__name__}: "
                               f"{_short(exc)})") from None
    if not isinstance(data, dict):
        raise SessionFileError(path, f"payload is a {type(data).__name__}, not a session dict")
    return data


def _short(exc: BaseException, limit: int = 200) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= limit else text[:limit] + "..."


def _header_order(raw: bytes) -> tuple[HeaderStyle, ...]:
    return ("pickle", "struct") if raw[:1] in _PICKLED_INT_OPCODES else ("struct",)


def _read_header(raw: bytes, style: HeaderStyle) -> tuple[int, int]:
    if style == "struct":
        if len(raw) < _STRUCT_HEADER.size:
            raise EOFError("shorter than the 4-byte header")
        return _STRUCT_HEADER.unpack_from(raw)[0], _STRUCT_HEADER.size
    expiry, end = safepickle.load_prefix(raw)
    if type(expiry) is not int or expiry < 0:
        raise ValueError(f"header is {expiry!r}, not an expiry time")
    return expiry, end


def cachelib_header(expiry: int, header_style: HeaderStyle = "struct") -> bytes:
    """The header cachelib (>= 0.7: ``struct``) or werkzeug / cachelib <= 0.6 (``pickle``) writes."""
    if header_style == "struct":
        return _STRUCT_HEADER.pack(expiry)
    if header_style == "pickle":
        return pickle.dumps(expiry, 1)  # werkzeug/cachelib <= 0.6 used protocol 1
    raise ValueError(f"unknown header style {header_style!r}")


def encode_cachelib(data: dict, expiry: int, header_style: HeaderStyle = "struct",
                    protocol: int = DEFAULT_PICKLE_PROTOCOL, payload: bytes | None = None) -> bytes:
    """The bytes cachelib would write for *data* expiring at *expiry*.

    *payload*, when given, is *data* already pickled (a Redis value in the
    exact format): it is written as it is, so the file holds those very bytes.
    """
    if payload is None:
        payload = pickle.dumps(data, protocol)
    return cachelib_header(expiry, header_style) + payload


def payload_protocol(payload: bytes) -> int:
    """The pickle protocol of *payload*: its PROTO opcode (2+), else the highest opcode's (0 or 1)."""
    if payload[:1] == b"\x80" and len(payload) > 1:
        return payload[1]
    try:
        return max((op.proto for op, _arg, _pos in pickletools.genops(payload)), default=0)
    except Exception:  # a payload the restricted unpickler accepted; a stray opcode says nothing
        return 0


class NotRegularFile(SessionFileError):
    """A FIFO, socket, device, directory or symlink under a session's name: never opened as one."""


def read_regular_file(path: str) -> tuple[bytes, os.stat_result]:
    """The bytes and ``fstat`` of a regular file of at most the budget's size.

    The one way every reader opens a session file. It never follows a symlink
    (``O_NOFOLLOW``) and never blocks on a FIFO planted under a session's name
    (``O_NONBLOCK``, then ``fstat`` refuses anything but a regular file before
    a byte is read). ``FileNotFoundError`` is left to the caller (a vanished
    session means different things to different readers); every other problem
    is a :class:`SessionFileError`.
    """
    limit = safepickle.current_budget().max_session_bytes
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise NotRegularFile(path, "is a symlink (never followed)") from None
        if exc.errno in (errno.ENXIO, errno.EISDIR):
            raise NotRegularFile(path, "is not a regular file") from None
        if exc.errno in (errno.EACCES, errno.EPERM):
            raise SessionFileError(path, "permission denied: run as the app's user or root") from None
        raise SessionFileError(path, f"cannot read: {exc.strerror or exc}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            kind = "directory" if stat.S_ISDIR(info.st_mode) else "FIFO" if stat.S_ISFIFO(info.st_mode) \
                else "socket" if stat.S_ISSOCK(info.st_mode) else "device or special file"
            raise NotRegularFile(path, f"is a {kind}, not a regular file")
        if info.st_size > limit:
            raise SessionFileError(path, f"too large for a session ({info.st_size:,} bytes; the "
                                   f"budget is {limit:,}, {safepickle.ENV_PREFIX}MAX_SESSION_BYTES)")
        # Plain reads of the size fstat gave (plus one byte, to see growth): a
        # buffered file object costs more than the read of a small session. A read of
        # a regular file that returns less than it asked for has met the end: nearly
        # always the first one, returned at once.
        wanted = info.st_size + 1
        chunk = os.read(fd, wanted)
        if len(chunk) < wanted:
            return chunk, info  # at most st_size bytes, which the budget was checked against
        chunks, size = [chunk], len(chunk)
        while size <= limit:
            wanted = max(info.st_size - size, 0) + 1
            chunk = os.read(fd, wanted)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
            if len(chunk) < wanted:
                break
    except OSError as exc:
        raise SessionFileError(path, f"cannot read: {exc.strerror or exc}") from None
    finally:
        os.close(fd)
    if size > limit:
        raise SessionFileError(path, f"too large for a session (over {limit:,} bytes, "
                               f"{safepickle.ENV_PREFIX}MAX_SESSION_BYTES)")
    return chunks[0] if len(chunks) == 1 else b"".join(chunks), info


def read_session_file(path: str, *, prefix: str = DEFAULT_PREFIX,
                      default_lifetime: int = 0) -> FileSession:
    """Read one session file (cachelib or the seed's ``sess_<sid>`` JSON).

    ``default_lifetime`` gives seed files, which carry no expiry of their own,
    one of ``mtime + default_lifetime`` (0 = never).
    """
    file_name = os.path.basename(path)
    kind = classify_name(file_name)
    if kind in ("cachelib", "foreign"):
        raise SessionFileError(path, f"not a session file ({kind} file name)")
    raw, info = _read_or_vanished(path)
    if kind == "seed":
        return _seed_session(path, file_name, raw, info, prefix, default_lifetime)
    return _cachelib_session(path, file_name, raw, info)


def read_live_file(path: str, now: float | None = None) -> FileSession | None:
    """The cachelib session at *path*, or None if it is missing or expired: the interface's
    read and the journal replay's, by a name they computed (so not checked, and the payload's
    protocol is not worked out).

    Corrupt and hostile files raise :class:`SessionFileError`.
    """
    try:
        raw, info = read_regular_file(path)
    except FileNotFoundError:
        return None
    session = _cachelib_session(path, os.path.basename(path), raw, info, with_protocol=False)
    return None if session.expired(now) else session


def _cachelib_session(path: str, file_name: str, raw: bytes, info: os.stat_result, *,
                      with_protocol: bool = True) -> FileSession:
    expiry, data, style, offset = parse_cachelib_file(raw, path)
    return FileSession(path=path, file_name=file_name, expiry=expiry, data=data, header_style=style,
                       hash_name=detect_hash(file_name) or "sha256", size=len(raw), mtime=info.st_mtime,
                       protocol=payload_protocol(raw[offset:]) if with_protocol else None)


def _read_or_vanished(path: str) -> tuple[bytes, os.stat_result]:
    try:
        return read_regular_file(path)
    except FileNotFoundError:
        raise SessionFileError(path, "vanished while reading (deleted or expired by the app)") from None


def read_entry(kind: str, name: str, path: str, *, prefix: str = DEFAULT_PREFIX,
               default_lifetime: int = 0) -> tuple[str, int, dict]:
    """(file name, expiry, session dict) of a directory entry that a scan classified as *kind*.

    The hot path of every directory scan: a cachelib file is read and parsed
    without the :class:`FileSession` that :func:`read_session_file` makes.
    Raises :class:`SessionFileError` (vanished, not a regular file, corrupt...).
    """
    if kind == "session":
        raw, _info = _read_or_vanished(path)
        expiry, data, _style = parse_cachelib_bytes(raw, path)
        return name, expiry, data
    session = read_session_file(path, prefix=prefix, default_lifetime=default_lifetime)
    return session.file_name, session.expiry, session.data


def read_entry_value(kind: str, name: str, path: str, value_format: ValueFormat, *,
                     prefix: str = DEFAULT_PREFIX, default_lifetime: int = 0,
                     ) -> tuple[str, int, dict, bytes]:
    """:func:`read_entry` plus the session's Redis value in *value_format*.

    For the exact ``pickle`` format the value is the file's own payload bytes,
    which the parse has just checked with the restricted unpickler: no
    re-encoding, and nothing about the session can change on the way.
    """
    if kind == "session":
        raw, _info = _read_or_vanished(path)
        expiry, data, _style, offset = parse_cachelib_file(raw, path)
        return name, expiry, data, value_format.from_file(data, raw[offset:])
    session = read_session_file(path, prefix=prefix, default_lifetime=default_lifetime)
    return session.file_name, session.expiry, session.data, value_format.dumps(session.data)


def read_entry_payload(kind: str, name: str, path: str, value_format: ValueFormat, *,
                       prefix: str = DEFAULT_PREFIX, default_lifetime: int = 0,
                       ) -> tuple[str, int, bytes, dict | None, os.stat_result | None]:
    """(file name, expiry, Redis value, session dict or None, fstat or None) of a directory
    entry, decoding only what must be: the backfill's and the validation's read.

    In the exact format a cachelib file's value is its payload byte for byte:
    when :func:`split_cachelib_file` can tell header from payload, nothing is
    unpickled and the dict is None (the value is checked where it is read, by
    the restricted unpickler, like the file). Otherwise, and for the other
    formats and the seed's files, as :func:`read_entry_value`. The ``fstat`` is
    the cachelib file's as it was read (None for a seed file).
    """
    if kind == "session":
        raw, info = _read_or_vanished(path)
        if value_format.exact:
            found = split_cachelib_file(raw, path)
            if found is not None:
                return name, found[0], raw[found[1]:], None, info
        expiry, data, _style, offset = parse_cachelib_file(raw, path)
        return name, expiry, value_format.from_file(data, raw[offset:]), data, info
    session = read_session_file(path, prefix=prefix, default_lifetime=default_lifetime)
    return session.file_name, session.expiry, value_format.dumps(session.data), session.data, None


def _seed_session(path, file_name, raw, stat, prefix, default_lifetime) -> FileSession:
    """The seed strategy's ``sess_<sid>`` JSON file; the sid is in the name."""
    sid = file_name[len(SEED_FILE_PREFIX):]
    try:
        document = json.loads(raw)
        safepickle.check_value(document)
    except safepickle.DecodeRefused as exc:
        raise SessionFileError(path, f"refused: {exc}") from None
    except Exception as exc:
        raise SessionFileError(path, f"not JSON: {type(exc).__name__}: {_short(exc)}") from None
    if not isinstance(document, dict):
        raise SessionFileError(path, f"JSON {type(document).__name__}, not a session object")
    # Either the session dict itself or {"data": {...}, "expires": <epoch>}.
    if set(document) == {"data", "expires"} and isinstance(document["data"], dict):
        data, expiry = document["data"], document["expires"]
        if type(expiry) is not int or expiry < 0:
            raise SessionFileError(path, f"'expires' is {expiry!r}, not an epoch time")
    else:
        data = document
        expiry = int(stat.st_mtime) + default_lifetime if default_lifetime else 0
    return FileSession(path=path, file_name=session_file_name(sid, prefix, "sha256"),
                       expiry=expiry, data=data, header_style="struct", hash_name="sha256",
                       size=len(raw), mtime=stat.st_mtime, sid=sid)


@dataclasses.dataclass(frozen=True, slots=True)
class SkippedEntry:
    """A directory entry that is not a session: cachelib bookkeeping or a foreign file."""

    path: str
    kind: Literal["cachelib", "foreign"]


def iter_session_paths(directory: str) -> Iterator[tuple[str, str]]:
    """(kind, path) for each regular entry of *directory*, streamed (never listed whole)."""
    with os.scandir(directory) as entries:
        for entry in entries:
            try:
                if not entry.is_file(follow_symlinks=False):
                    if entry.is_symlink():
                        yield "foreign", entry.path  # never follow links out of the directory
                    continue
            except OSError:
                continue
            yield classify_name(entry.name), entry.path


def scan_directory(directory: str, *, prefix: str = DEFAULT_PREFIX, default_lifetime: int = 0,
                   ) -> Iterator[FileSession | SessionFileError | SkippedEntry]:
    """Every entry of a session directory as a session, an error or a skip.

    Errors are yielded, not raised: one bad file never stops a scan.
    """
    for kind, path in iter_session_paths(directory):
        if kind in ("cachelib", "foreign"):
            yield SkippedEntry(path, kind)
            continue
        try:
            yield read_session_file(path, prefix=prefix, default_lifetime=default_lifetime)
        except SessionFileError as exc:
            yield exc


def write_session_file(directory: str, file_name: str, data: dict, expiry: int, *,
                       header_style: HeaderStyle = "struct", protocol: int = DEFAULT_PICKLE_PROTOCOL,
                       payload: bytes | None = None, content: bytes | None = None, mode: int = 0o600,
                       uid: int | None = None, gid: int | None = None,
                       mtime: float | None = None) -> str:
    """Write one cachelib file atomically (:mod:`.atomicfile`): readers see the old file or
    the whole new one. Temporary names carry cachelib's own suffix, so a scan that meets
    one skips it like cachelib does.

    *payload* is *data* already pickled; *content* the whole file already
    encoded (:func:`encode_cachelib`); either saves pickling *data* again.
    """
    if content is None:
        content = encode_cachelib(data, expiry, header_style, protocol, payload)
    return write_atomic(os.path.join(directory, file_name), content, mode=mode, uid=uid, gid=gid,
                        mtime=mtime, temp_suffix=CACHELIB_TEMP_SUFFIX)


# --------------------------------------------------------------------------- Redis values


class ValueFormat:
    """How a session dict is held in a Redis value (one subclass per format, cachelib-style).

    ``exact``: every type the restricted unpickler admits comes back as it was.
    """

    name: ClassVar[str]
    exact: ClassVar[bool]

    def __init__(self, protocol: int | None = None):
        self.protocol = DEFAULT_PICKLE_PROTOCOL if protocol is None else protocol

    def dumps(self, data: dict) -> bytes:
        try:
            return self._dumps(data)
        except Exception as exc:
            raise SessionValueError(f"cannot encode session with {self.name}: "
                                    f"{type(exc).__name__}: {_short(exc)}") from None

    def _dumps(self, data: dict) -> bytes:
        raise NotImplementedError

    def _loads(self, raw: bytes) -> Any:
        raise NotImplementedError

    def loads(self, raw: bytes) -> dict:
        """A Redis value back into the session dict the app would see (within the decoding budget)."""
        try:
            value = self._loads(raw)
        except safepickle.UnsafePickleError as exc:
            raise SessionValueError(f"hostile or foreign pickle in Redis value: {exc}") from None
        except safepickle.DecodeRefused as exc:
            raise SessionValueError(f"refused {self.name} value: {exc}") from None
        except Exception as exc:
            raise SessionValueError(f"cannot decode {self.name} value: {type(exc).__name__}: "
                                    f"{_short(exc)}") from None
        if not isinstance(value, dict):
            raise SessionValueError(f"{self.name} value is a {type(value).__name__}, not a session dict")
        return value

    def from_file(self, data: dict, payload: bytes) -> bytes:
        """The value of a session read from a file whose pickle payload is *payload*."""
        return self.dumps(data)

    def file_payload(self, value: bytes, data: dict) -> bytes | None:
        """The bytes to write as a file's payload for a value decoding to *data*; None: pickle *data*."""
        return None

    def same(self, expected: dict, expected_value: bytes, raw: bytes) -> exact.Comparison:
        """How Redis's *raw* differs, for the app, from the session *expected* (value *expected_value*)."""
        if raw == expected_value and self.exact:
            return exact.Comparison()
        return exact.compare(expected, self.loads(raw))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(protocol={self.protocol})"


class PickleValues(ValueFormat):
    """The source's own pickle: exact. A file's payload is the value as it is, byte for byte;
    a session the app writes is pickled with the source's protocol. Read back only through
    the restricted unpickler."""

    name = "pickle"
    exact = True

    def _dumps(self, data: dict) -> bytes:
        return pickle.dumps(data, self.protocol)

    def _loads(self, raw: bytes) -> Any:
        return safepickle.loads(raw)

    def from_file(self, data: dict, payload: bytes) -> bytes:
        return payload

    def file_payload(self, value: bytes, data: dict) -> bytes | None:
        # The value itself, unless its protocol is newer than the source's (a Python 3.7
        # app cannot read protocol 5): then *data* is pickled again in the source's.
        return value if payload_protocol(value) <= self.protocol else None


class MsgpackValues(ValueFormat):
    """Flask-Session 0.7+'s msgpack: NOT exact (tuple, set -> list; UUID, Decimal, naive
    datetime -> str...). For sessions analyze proved msgpack-exact, and for stock keys."""

    name = "msgpack"
    exact = False

    def _dumps(self, data: dict) -> bytes:
        # msgspec is imported where it is used: the exact default never needs it, and
        # importing it cost every command's start 15 ms.
        import msgspec

        return msgspec.msgpack.encode(data)

    def _loads(self, raw: bytes) -> Any:
        import msgspec

        return _budgeted(msgspec.msgpack.decode, raw)


class StockValues(ValueFormat):
    """Stock Flask-Session's own keys (phase 5's move): written in *writer*'s format, read as
    Flask-Session 0.7 and 0.8 read them whatever their SESSION_SERIALIZATION_FORMAT says:
    msgpack, else JSON, else a pickle (their values before 0.7), the pickle only through the
    restricted unpickler. The three cannot be mistaken for one another: a session is a map,
    and a JSON object or a pickle is never a whole msgpack map, nor msgpack or a pickle JSON."""

    exact = False

    def __init__(self, writer: ValueFormat):
        super().__init__(writer.protocol)
        self.writer = writer
        self.name = f"stock Flask-Session ({writer.name} written)"

    def _dumps(self, data: dict) -> bytes:
        return self.writer.dumps(data)

    def _loads(self, raw: bytes) -> Any:
        import msgspec

        for decode in (msgspec.msgpack.decode, msgspec.json.decode):
            try:
                return _budgeted(decode, raw)
            except msgspec.DecodeError:
                continue
        return safepickle.loads(raw)


def _budgeted(decode: Callable[[bytes], Any], raw: bytes) -> Any:
    """*raw* decoded by a msgspec *decode*, held to the decoding budget like a pickle."""
    budget = safepickle.current_budget()
    if len(raw) > budget.max_session_bytes:
        raise safepickle.BudgetExceeded(f"{len(raw):,} bytes long", budget.max_session_bytes,
                                        "max_session_bytes")
    value = decode(raw)
    safepickle.check_value(value, budget)
    return value


VALUE_FORMATS: dict[str, type[ValueFormat]] = {cls.name: cls for cls in (PickleValues, MsgpackValues)}


@functools.lru_cache(maxsize=32)
def value_format(name: SerializerName = DEFAULT_SERIALIZER, protocol: int | None = None) -> ValueFormat:
    """The :class:`ValueFormat` called *name* (pickle with *protocol*)."""
    try:
        return VALUE_FORMATS[name](protocol)
    except KeyError:
        raise ValueError(f"unknown serializer {name!r}; expected one of {', '.join(VALUE_FORMATS)}") from None


@functools.lru_cache(maxsize=8)
def stock_format(name: SerializerName = STOCK_SERIALIZER, protocol: int | None = None) -> StockValues:
    """Stock Flask-Session keys' format: written as *name*, read in any format Flask-Session reads."""
    return StockValues(value_format(name, protocol))


def encode_value(data: dict, serializer: SerializerName = DEFAULT_SERIALIZER,
                 protocol: int | None = None) -> bytes:
    """A session dict as a Redis value in *serializer*'s format."""
    return value_format(serializer, protocol).dumps(data)


def decode_value(raw: bytes, serializer: SerializerName = DEFAULT_SERIALIZER) -> dict:
    """A Redis value back into the session dict the app would see."""
    return value_format(serializer).loads(raw)


def app_view(data: dict, serializer: SerializerName = DEFAULT_SERIALIZER) -> Any:
    """*data* as the app reads it back after a trip through *serializer* (itself when exact)."""
    fmt = value_format(serializer)
    return data if fmt.exact else fmt.loads(fmt.dumps(data))


def same_for_app(file_data: dict, redis_raw: bytes, serializer: SerializerName = DEFAULT_SERIALIZER) -> bool:
    """Whether a Redis value gives the app the file's session, type for type."""
    return value_format(serializer).same(file_data, b"", redis_raw).exact
