"""A restricted, budgeted unpickler for session data we did not write ourselves.

Session files and pickle-serialised Redis values may have been written by an
attacker who could drop a file into the session directory. ``pickle.load`` on
such bytes runs arbitrary code (``__reduce__`` -> ``os.system``). This
unpickler resolves only an allow-list of globals: the builtin containers and
scalars, which need no global at all, plus the few standard-library value types
that sessions commonly hold. Each allowed callable is admitted only with the
arguments that build a complete value (``bytearray`` from bytes, never from a
size; ``copyreg._reconstructor`` only for a ``uuid.UUID``).

Code execution is not the only danger: a small pickle can be expensive. Every
decoded value is held to a :class:`Budget` (see :func:`check_value`):

* bytes: the size of the encoded input;
* depth: how deeply containers nest (a 4 KB list nested 2,000 deep makes every
  recursive encoder raise ``RecursionError``);
* objects: how many values the pickle creates (counted *while* decoding large
  inputs, so a pickle of a million empty lists stops at the budget instead of
  allocating them all);
* encoded bytes: the size the value would take once written out without
  sharing (msgpack, JSON, a comparison). Pickle's memo lets 449 bytes reference
  one list from seven levels of lists: tiny decoded, gigabytes encoded. The size
  is computed by a walk that memoizes each shared container and stops at the
  budget, so nothing of that size is ever allocated.

A value over budget raises :class:`BudgetExceeded`; nothing is executed and the
caller reports the one input. Defaults suit any real session; the environment
variables below (read when this module is imported) or :func:`configure`
change them for the whole process, so every reader (the engines, the app's
interface, export, backup) shares them.
"""

from __future__ import annotations

import _compat_pickle
import codecs
import copyreg
import dataclasses
import datetime
import decimal
import importlib
import io
import itertools
import os
import pickle
import struct
import sys
import uuid
from typing import Any

from .errors import SessionshiftError

# (module, qualified name) pairs that find_class may resolve. Containers and
# scalars (dict, list, tuple, str, bytes, int, float, bool, None) are encoded
# with dedicated opcodes and never reach find_class, except the few below that
# protocol 0-2 pickles reference by name.
ALLOWED_GLOBALS: frozenset[tuple[str, str]] = frozenset(
    {
        ("builtins", "set"),
        ("builtins", "frozenset"),
        ("builtins", "bytearray"),
        ("builtins", "bytes"),  # bytes() in protocol 0-2 pickles of b""
        ("builtins", "complex"),
        ("builtins", "slice"),
        ("datetime", "datetime"),
        ("datetime", "date"),
        ("datetime", "time"),
        ("datetime", "timedelta"),
        ("datetime", "timezone"),
        ("uuid", "UUID"),
        ("decimal", "Decimal"),
        # Protocol 0/1 pickles of UUIDs and protocol 0-2 pickles of bytes go
        # through these; each is replaced by a guard below.
        ("copyreg", "_reconstructor"),
        ("builtins", "object"),  # _reconstructor's base argument
        ("codecs", "encode"),
        ("_codecs", "encode"),
    }
)

# --------------------------------------------------------------------------- budgets

ENV_PREFIX = "SESSIONSHIFT_"


@dataclasses.dataclass(frozen=True)
class Budget:
    """Limits on one decoded session value; see the module docstring.

    Environment: ``SESSIONSHIFT_MAX_SESSION_BYTES``, ``SESSIONSHIFT_MAX_DEPTH``,
    ``SESSIONSHIFT_MAX_OBJECTS``, ``SESSIONSHIFT_MAX_ENCODED_BYTES``.
    """

    max_session_bytes: int = 4 * 1024 * 1024  # input: a file or a Redis value
    max_depth: int = 100  # nesting of containers
    max_objects: int = 1_000_000  # values created while decoding
    max_encoded_bytes: int = 4 * 1024 * 1024  # written out without sharing; <= max_session_bytes

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if type(value) is not int or value < 1:
                raise ValueError(f"decoding budget {field.name} must be a positive integer, not {value!r}")

    @classmethod
    def from_env(cls, environ=os.environ) -> Budget:
        values = {}
        for field in dataclasses.fields(cls):
            name = ENV_PREFIX + field.name.upper()
            text = environ.get(name)
            if text:
                try:
                    values[field.name] = int(text)
                except ValueError:
                    raise ValueError(f"{name}={text!r}: must be a positive integer") from None
        return cls(**values)


_budget = Budget.from_env()


def current_budget() -> Budget:
    return _budget


def configure(budget: Budget | None = None, **changes: int | None) -> Budget:
    """Set the process-wide budget (``None`` values keep the current ones); returns it.

    Forked workers inherit it.
    """
    global _budget
    base = budget or _budget
    _budget = dataclasses.replace(base, **{k: v for k, v in changes.items() if v is not None})
    return _budget


# --------------------------------------------------------------------------- errors


class DecodeRefused(SessionshiftError, pickle.UnpicklingError):
    """The input was refused as a whole (unsafe, incomplete, over budget); nothing was executed."""


class UnsafePickleError(DecodeRefused):
    """The pickle names a global outside the allow-list; nothing was executed."""

    def __init__(self, module: str, name: str):
        self.global_name = f"{module}.{name}"
        super().__init__(f"refused to load global '{self.global_name}' (not an allowed session type)")


class IncompleteValue(DecodeRefused):
    """An allowed type built with arguments that do not make a complete value."""


class BudgetExceeded(DecodeRefused):
    """The value is over one of the decoding budgets; names the budget and its option."""

    def __init__(self, what: str, limit: int, field: str):
        self.field = field
        super().__init__(f"{what}: over the decoding budget {field}={limit:,} (if real sessions are "
                         f"this big, raise {ENV_PREFIX}{field.upper()}, --{field.replace('_', '-')} "
                         f"or decode_budget.{field})")


# --------------------------------------------------------------------------- guarded callables


class _ObjectBase:
    """What ``builtins.object`` resolves to: usable only as ``_reconstructor``'s base.

    ``NEWOBJ`` on it, or on ``object`` itself, would make a bare ``object()``.
    """

    def __new__(cls, *args, **kwargs):
        raise IncompleteValue("a bare 'object' is not a session value")


def _reconstructor(cls, base, state):
    # copyreg._reconstructor(cls, object, None) is object.__new__(cls): an empty
    # shell that a BUILD opcode fills in. Only UUID is pickled that way (protocol
    # 0/1); check_value refuses a UUID whose BUILD never came.
    if cls is not uuid.UUID or base is not _ObjectBase or state is not None:
        raise IncompleteValue(f"copyreg._reconstructor({getattr(cls, '__name__', cls)!r}, ...) "
                              "does not build a session value")
    return copyreg._reconstructor(cls, object, None)


def _bytearray(*args):
    # bytearray(600000000) is 47 bytes of pickle and 600 MB of zeros: only the
    # forms pickle itself writes are admitted.
    if not args or (len(args) == 1 and type(args[0]) in (bytes, bytearray)) or (
            len(args) == 2 and type(args[0]) is str and args[1] in ("latin-1", "latin1")):
        return bytearray(*args)
    raise IncompleteValue("bytearray() from anything but bytes is refused (a size allocates zeros)")


def _empty_bytes(*args):
    if args:  # bytes(600000000) would allocate zeros like bytearray's
        raise IncompleteValue("bytes() with arguments is refused (pickle writes only bytes() for b'')")
    return b""


def _latin1_encode(text, encoding="utf-8", errors="strict"):
    # Protocol 0-2 pickles write bytes as _codecs.encode(str, 'latin1').
    if type(text) is not str or encoding not in ("latin1", "latin-1") or errors != "strict":
        raise IncompleteValue("codecs.encode is admitted only for latin-1 text (bytes in old pickles)")
    return codecs.encode(text, "latin1")


_GUARDS: dict[tuple[str, str], Any] = {
    ("copyreg", "_reconstructor"): _reconstructor,
    ("builtins", "object"): _ObjectBase,
    ("builtins", "bytearray"): _bytearray,
    ("builtins", "bytes"): _empty_bytes,
    ("codecs", "encode"): _latin1_encode,
    ("_codecs", "encode"): _latin1_encode,
}


def _resolve(unpickler, module: str, name: str):
    # Protocol 0-2 pickles use Python 2 names ('__builtin__.set', 'copy_reg...').
    module, name = _compat_pickle.NAME_MAPPING.get((module, name), (module, name))
    module = _compat_pickle.IMPORT_MAPPING.get(module, module)
    if (module, name) not in ALLOWED_GLOBALS:
        raise UnsafePickleError(module, name)
    guard = _GUARDS.get((module, name))
    return guard if guard is not None else getattr(importlib.import_module(module), name)


class RestrictedUnpickler(pickle.Unpickler):
    """The C unpickler with the allow-list: for inputs small enough that no count is needed."""

    def find_class(self, module: str, name: str):
        return _resolve(self, module, name)

    def persistent_load(self, pid):
        raise DecodeRefused("persistent ids are not allowed in session data")


# Opcodes that make no new value (framing, marks, memo bookkeeping, stack moves):
# everything else is counted against max_objects by _CountingUnpickler.
_UNCOUNTED = frozenset(op[0] for op in (
    pickle.PROTO, pickle.FRAME, pickle.STOP, pickle.MARK, pickle.POP, pickle.POP_MARK, pickle.DUP,
    pickle.MEMOIZE, pickle.PUT, pickle.BINPUT, pickle.LONG_BINPUT,
    pickle.APPEND, pickle.APPENDS, pickle.SETITEM, pickle.SETITEMS, pickle.ADDITEMS, pickle.BUILD))


def _counted(function, opcode: int):
    if opcode in _UNCOUNTED:
        return function

    def counted(self):
        self._made += 1
        if self._made > self._budget.max_objects:
            raise BudgetExceeded("too many values", self._budget.max_objects,
                                 "max_objects")
        function(self)
    return counted


class _CountingUnpickler(pickle._Unpickler):
    """The pure-Python unpickler, counting values as it makes them.

    Slower than the C one, so only inputs larger than ``_COUNT_ABOVE`` take it:
    a small input cannot allocate much (an empty list per byte at most), a large
    one must be stopped before it does.
    """

    dispatch = {op: _counted(fn, op) for op, fn in pickle._Unpickler.dispatch.items()}

    def __init__(self, stream, budget: Budget):
        super().__init__(stream)
        self._budget = budget
        self._made = 0
        self._size = len(stream.getbuffer())

    def find_class(self, module: str, name: str):
        return _resolve(self, module, name)

    def persistent_load(self, pid):
        raise DecodeRefused("persistent ids are not allowed in session data")

    def load_bytearray8(self):
        # The Python unpickler allocates the declared size before reading it.
        (size,) = struct.unpack("<Q", self.read(8))
        if size > self._size:
            raise pickle.UnpicklingError("BYTEARRAY8 longer than the pickle (truncated or hostile)")
        self._made += 1
        b = bytearray(size)
        self.readinto(b)
        self.append(b)

    dispatch[pickle.BYTEARRAY8[0]] = load_bytearray8


# Below this many bytes, the C unpickler runs without a count: it cannot build
# more than one ~64-byte empty container per input byte (4 MB at most).
_COUNT_ABOVE = 64 * 1024


class _Reader:
    """The input as the C unpickler reads it: ``read``/``readline`` only, no ``readinto``.

    Given ``readinto`` (``io.BytesIO``), a BYTEARRAY8 opcode that declares more
    bytes than there are leaves CPython printing "SystemError: deallocated
    bytearray object has exported buffers" into the app's log.
    """

    __slots__ = ("read", "readline", "tell")

    def __init__(self, data: bytes):
        stream = io.BytesIO(data)
        self.read, self.readline, self.tell = stream.read, stream.readline, stream.tell


# How _memo_indices_small steps over each opcode's argument, by opcode byte:
# kind 0: a fixed-size argument of _SIZE bytes; 1: a counted one (a _SIZE-byte
# little-endian length, then that many bytes); 2: one line; 3: two lines;
# 4: LONG_BINPUT; 5: PUT; 6: STOP, or a byte that is no opcode at all.
_KIND, _SIZE = bytearray(256), bytearray(256)
# Every opcode of protocols 0-5 (pickletools.opcodes). Any other byte stops both unpicklers
# ("invalid load key") before they act on anything after it, so the scan stops there as at
# STOP: a struct header misread as a pickled int otherwise had the whole payload scanned.
_OPCODES = b"().012BCFGIJKLMNPQRSTUVX]abcdeghijlopqrstu}" + bytes(range(0x80, 0x99))
for _op in set(range(256)).difference(_OPCODES):
    _KIND[_op] = 6
for _ops, _kind, _size in (
        (b"JG\x95", 0, 4), (b"K", 0, 1), (b"M", 0, 2), (b"hq\x80\x82", 0, 1), (b"j\x84", 0, 4),
        (b"\x83", 0, 2), (b"\x8cCU\x8a", 1, 1), (b"XBT\x8b", 1, 4), (b"\x8d\x8e\x96", 1, 8),
        (b"ILFSVgP", 2, 0), (b"ci", 3, 0), (b"r", 4, 4), (b"p", 5, 0), (b".", 6, 0)):
    for _op in _ops:
        _KIND[_op], _SIZE[_op] = _kind, _size
_SIZE[ord("G")] = _SIZE[0x95] = 8  # BINFLOAT, FRAME
_KIND, _SIZE = bytes(_KIND), bytes(_SIZE)


def _memo_indices_small(data: bytes, at: int = 0, frame_end: int | None = None) -> bool:
    """Whether every memo index the pickle at the start of *data* stores is below its length.

    The C unpickler grows its memo array to twice the largest index a PUT or
    LONG_BINPUT names and zero-fills it: 1.6 KB of pickle naming index 171
    million takes 2.7 GB. A real pickle stores its objects in order, so no
    index reaches the input's length; when one does (or the scan cannot tell),
    the pure-Python unpickler, whose memo is a dict, decodes instead; so does
    one with an opcode that straddles a FRAME's end (a 293-byte one made the C
    unpickler read another index there and allocate 2 GB). Steps over the
    opcodes, never into strings, up to STOP or a byte that is no opcode. *at* and
    *frame_end* resume a scan at an opcode boundary.
    """
    kinds, sizes, end = _KIND, _SIZE, len(data)
    frame_end = end if frame_end is None else frame_end
    try:
        while at < end:
            start = at
            op = data[at]
            kind = kinds[op]
            at += 1
            if not kind:
                at += sizes[op]
                if op == 0x95:  # FRAME: the C unpickler reads an argument past its end differently
                    frame_end = at + int.from_bytes(data[at - 8:at], "little")
            elif kind == 1:
                size = sizes[op]
                at += size + int.from_bytes(data[at:at + size], "little")
            elif kind == 2:
                at = data.index(10, at) + 1
            elif kind == 3:
                at = data.index(10, data.index(10, at) + 1) + 1
            elif kind == 4:
                if int.from_bytes(data[at:at + 4], "little") >= end:
                    return False
                at += 4
            elif kind == 5:
                line_end = data.index(10, at)
                if line_end - at > 7 or int(data[at:line_end] or b"0") >= end:
                    return False
                at = line_end + 1
            else:
                return True
            if start < frame_end < at:
                return False  # an opcode straddles the frame's end: not what a pickler writes
    except ValueError:
        return False  # no newline where one belongs, a bad number: let the slow path say why
    return True


# How _plain_scan treats each opcode byte (0: not plain data, so the proof gives up):
# 1 MEMOIZE; 2 a string or bytes with a 1-byte length; 3 BINGET; 4 a no-argument opcode that
# leaves no string on top (MARK, SETITEM(S), APPEND(S), ADDITEMS, None, True, False);
# 5 a no-argument container (empty dict, list, tuple, set; TUPLE*, FROZENSET); 6 a number
# with a fixed-size argument (BININT1, BININT2, BININT, BINFLOAT); 7 a string or bytes with a
# 4- or 8-byte length; 8 LONG1 / LONG4; 9 LONG_BINGET; 10 FRAME; 11 PROTO; 12 STOP.
# These are every opcode pickle's protocol 4 and 5 writer uses for dicts, lists, tuples,
# sets, frozensets, str, bytes, bytearray, int, float, bool and None.
_PLAIN = bytearray(256)
for _ops, _action in ((b"\x94", 1), (b"\x8cC", 2), (b"h", 3), (b"(suae\x90N\x88\x89", 4),
                      (b"}])\x8ft\x85\x86\x87\x91", 5), (b"KMJG", 6), (b"XB\x8d\x8e\x96", 7),
                      (b"\x8a\x8b", 8), (b"j", 9), (b"\x95", 10), (b"\x80", 11), (b".", 12)):
    for _op in _ops:
        _PLAIN[_op] = _action
_PLAIN = bytes(_PLAIN)


def _plain_scan(data: bytes) -> tuple[bool, int, int]:
    """Proof that the pickle at the start of *data* holds plain data, and its measures.

    Plain data: only the opcodes pickle's protocol 4/5 writer uses for builtin containers
    and scalars, memoized with MEMOIZE only (no PUT, so no memo index to grow the C
    unpickler's memo), no opcode straddling a FRAME's end, and no memo fetch (GET) of
    anything but a string or bytes. Then no container is shared, so the value has no cycle,
    every value in it comes from its own opcode (objects <= the input's length), containers
    nest at most as deep as there are container opcodes, and its encoded size is at most
    ``10 * len(data)`` plus what the GETs add. Returns (True, bytes the GETs add, container
    opcodes) for :func:`load_prefix` to compare with the budgets; for anything else (False,
    where the general scan resumes, the end of the frame there), and the general scan and
    the value walk decide, as for any pickle.
    """
    actions, sizes, end, at = _PLAIN, _SIZE, len(data), 0
    limit = end  # the end of the current FRAME (or of the data): no opcode may straddle it
    memo: list[int] = []  # per MEMOIZE: the encoded size of the string memoized, -1 for anything else
    memoize = memo.append
    top = -1  # the encoded size of the top of the stack when it is a string, else -1
    shared = containers = 0
    try:
        while True:
            while at < limit:
                op = data[at]
                action = actions[op]
                if action == 2:
                    size = data[at + 1]
                    top = size + 5
                    at += 2 + size
                    if at < limit and data[at] == 0x94:  # its MEMOIZE, nearly always next
                        memoize(top)
                        at += 1
                elif action == 1:
                    memoize(top)
                    at += 1
                elif action == 3:
                    top = memo[data[at + 1]]
                    if top < 0:
                        return False, at, limit  # a shared container (or number): the walk decides
                    shared += top
                    at += 2
                elif action == 4:
                    top = -1
                    at += 1
                elif action == 5:
                    containers += 1
                    top = -1
                    at += 1
                elif action == 6:
                    top = -1
                    at += 1 + sizes[op]
                elif action == 7:
                    width = 4 if op in (0x58, 0x42) else 8  # BINUNICODE, BINBYTES: 4-byte lengths
                    size = int.from_bytes(data[at + 1:at + 1 + width], "little")
                    top = size + 5
                    at += 1 + width + size
                elif action == 8:
                    width = 1 if op == 0x8a else 4
                    at += 1 + width + int.from_bytes(data[at + 1:at + 1 + width], "little")
                    top = -1
                elif action == 9:
                    top = memo[int.from_bytes(data[at + 1:at + 5], "little")]
                    if top < 0:
                        return False, at, limit
                    shared += top
                    at += 5
                elif action == 10:
                    if at + 9 > limit:
                        return False, 0, end
                    at += 9
                    limit = at + int.from_bytes(data[at - 8:at], "little")
                elif action == 11:
                    at += 2
                elif action == 12:
                    return True, shared, containers
                else:
                    return False, at, limit  # not plain data from here on
            if at != limit or limit == end:
                return False, 0, end  # the last opcode straddles the frame's end, or no STOP
            limit = end
    except IndexError:  # truncated, or a GET of an index never memoized
        return False, 0, end


_BYTEARRAY8 = pickle.BYTEARRAY8


def _load_quietly(stream: _Reader):
    """The C unpickler on an input that may hold a BYTEARRAY8 opcode.

    A BYTEARRAY8 that declares more bytes than the machine can allocate ends in
    MemoryError (refused, like any other failure), but CPython frees the
    half-made bytearray with its export count unset and may print "SystemError:
    deallocated bytearray object has exported buffers" to ``sys.stderr``, a
    line in the app's log for every such request. The print goes to a
    throw-away stream instead. (The byte also occurs inside strings, so the
    input cannot simply be refused.)
    """
    saved = sys.stderr
    sys.stderr = io.StringIO()
    try:
        return RestrictedUnpickler(stream).load()
    finally:
        sys.stderr = saved


def load_prefix(data: bytes, budget: Budget | None = None) -> tuple[Any, int]:
    """(value, bytes consumed) of the pickle at the start of *data*, allow-listed and budgeted."""
    budget = budget or _budget
    if len(data) > budget.max_session_bytes:
        raise BudgetExceeded(f"{len(data):,} bytes long", budget.max_session_bytes, "max_session_bytes")
    plain = small = False
    if len(data) <= _COUNT_ABOVE:
        plain, *found = _plain_scan(data)
        small = plain or _memo_indices_small(data, *found)  # resumed where the proof stopped
    if small:
        stream = _Reader(data)
        if _BYTEARRAY8 in data:
            value = _load_quietly(stream)
        else:
            value = RestrictedUnpickler(stream).load()
    else:
        stream = io.BytesIO(data)
        value = _CountingUnpickler(stream, budget).load()
    # Plain data proved within every budget needs no walk (see _plain_scan): the walk
    # cost several times the decoding itself.
    if not (plain and 10 * len(data) + found[0] <= budget.max_encoded_bytes
            and len(data) < budget.max_objects and found[1] <= budget.max_depth):
        check_value(value, budget)
    return value, stream.tell()


def loads(data: bytes, budget: Budget | None = None):
    """One pickle from *data*, allow-listed and budgeted; trailing bytes are an error."""
    value, end = load_prefix(data, budget)
    if end != len(data):
        raise pickle.UnpicklingError("trailing bytes after the pickle")
    return value


def load(stream: io.BufferedIOBase):
    """One pickle from *stream* (read whole), allow-listed and budgeted."""
    return loads(stream.read())


# --------------------------------------------------------------------------- the value walk

# Approximate encoded sizes (msgpack's, about): what matters is the order of magnitude.
# In _KINDS, -1 marks a type whose size is its length, -2 a container.
_FIXED_SIZE: dict[type, int] = {
    int: 9, float: 9, bool: 1, type(None): 1, complex: 18,
    datetime.datetime: 32, datetime.date: 12, datetime.time: 20, datetime.timedelta: 24,
    datetime.timezone: 16,
}
_SIZED = (str, bytes, bytearray)
_CONTAINERS = (dict, list, tuple, set, frozenset, slice)
_KINDS: dict[type, int] = {**_FIXED_SIZE, **dict.fromkeys(_SIZED, -1), **dict.fromkeys(_CONTAINERS, -2)}


def _children(value):
    kind = type(value)
    if kind is dict:
        return itertools.chain(value, value.values())  # keys, then values: no item tuples
    if kind is slice:
        return iter((value.start, value.stop, value.step))
    return iter(value)


def _leaf_size(value) -> int:
    """The encoded size of a non-container; IncompleteValue for what is not a session value."""
    kind = type(value)
    size = _KINDS.get(kind)
    if size is not None and size >= 0:
        return size
    if size == -1:
        return len(value) + 5
    if kind is uuid.UUID:
        try:
            number = value.int
        except AttributeError:
            raise IncompleteValue("a UUID without its value (a pickle that skipped its state)") from None
        if type(number) is not int or not 0 <= number < 1 << 128:
            raise IncompleteValue(f"a UUID whose value is {type(number).__name__}, not a 128-bit int")
        return 37
    if kind is decimal.Decimal:
        return len(value.as_tuple().digits) + 16
    raise IncompleteValue(f"a value of type {kind.__module__}.{kind.__qualname__} is not a session value")


def check_value(value: Any, budget: Budget | None = None) -> int:
    """The size *value* would encode to without sharing; raises past any budget.

    Iterative (a deep value cannot exhaust the stack of this walk), each shared
    container measured once (memo by identity), stopped as soon as any partial
    sum passes ``max_encoded_bytes``. Cycles are refused: no session has one and
    every non-pickle encoder would loop. Also refuses values of types no session
    holds and incomplete UUIDs.
    """
    budget = budget or _budget
    kinds = _KINDS
    if kinds.get(type(value)) != -2:
        return _leaf_size(value)
    limit, max_depth, max_objects = budget.max_encoded_bytes, budget.max_depth, budget.max_objects
    memo: dict[int, int] = {}
    active = {id(value)}
    stack = [[value, _children(value), 5]]  # [container, its remaining children, size so far]
    objects = 1 + len(value)
    while True:
        frame = stack[-1]
        size = frame[2]
        for child in frame[1]:
            kind = kinds.get(type(child))
            if kind is None:
                size += _leaf_size(child)
            elif kind >= 0:
                size += kind
            elif kind == -1:
                size += len(child) + 5
                if size > limit:
                    raise BudgetExceeded("too large once encoded", limit, "max_encoded_bytes")
            else:
                key = id(child)
                known = memo.get(key)
                if known is not None:
                    size += known
                    if size > limit:
                        raise BudgetExceeded("too large once encoded", limit, "max_encoded_bytes")
                    continue
                if key in active:
                    raise IncompleteValue("a value that contains itself (cyclic reference)")
                if len(stack) >= max_depth:
                    raise BudgetExceeded("nested too deep", max_depth, "max_depth")
                objects += len(child) if type(child) is not slice else 3
                if objects > max_objects:
                    raise BudgetExceeded("too many values", max_objects, "max_objects")
                frame[2] = size
                active.add(key)
                stack.append([child, _children(child), 5])
                break
        else:
            if size > limit:
                raise BudgetExceeded("too large once encoded", limit, "max_encoded_bytes")
            stack.pop()
            key = id(frame[0])
            memo[key] = size
            active.discard(key)
            if not stack:
                return size
            stack[-1][2] += size
