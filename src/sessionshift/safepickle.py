"""A restricted unpickler for session data we did not write ourselves.

Session files and pickle-serialised Redis values may have been written by an
attacker who could drop a file into the session directory. ``pickle.load`` on
such bytes runs arbitrary code (``__reduce__`` -> ``os.system``). This
unpickler resolves only an allow-list of globals: the builtin containers and
scalars, which need no global at all, plus the few standard-library value types
that sessions commonly hold.
"""

from __future__ import annotations

import _compat_pickle
import io
import pickle

# (module, qualified name) pairs that find_class may return. Containers and
# scalars (dict, list, tuple, str, bytes, int, float, bool, None) are encoded
# with dedicated opcodes and never reach find_class, except the few below that
# protocol 2+ pickles reference by name.
ALLOWED_GLOBALS: frozenset[tuple[str, str]] = frozenset(
    {
        ("builtins", "set"),
        ("builtins", "frozenset"),
        ("builtins", "bytearray"),
        ("builtins", "complex"),
        ("builtins", "slice"),
        ("datetime", "datetime"),
        ("datetime", "date"),
        ("datetime", "time"),
        ("datetime", "timedelta"),
        ("datetime", "timezone"),
        ("uuid", "UUID"),
        ("decimal", "Decimal"),
        # Protocol 0/1 pickles of sets and bytes go through copyreg / codecs.
        ("copyreg", "_reconstructor"),
        ("builtins", "object"),  # _reconstructor's base argument
        ("codecs", "encode"),
        ("_codecs", "encode"),
    }
)

# copyreg._reconstructor(cls, base, state) is only safe when cls is allowed too;
# find_class checks cls separately when the pickle names it.


class UnsafePickleError(pickle.UnpicklingError):
    """The pickle names a global outside the allow-list; nothing was executed."""

    def __init__(self, module: str, name: str):
        self.global_name = f"{module}.{name}"
        super().__init__(f"refused to load global '{self.global_name}' (not an allowed session type)")


class RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        # Protocol 0-2 pickles use Python 2 names ('__builtin__.set', 'copy_reg...').
        module, name = _compat_pickle.NAME_MAPPING.get((module, name), (module, name))
        module = _compat_pickle.IMPORT_MAPPING.get(module, module)
        if (module, name) in ALLOWED_GLOBALS:
            return super().find_class(module, name)
        raise UnsafePickleError(module, name)

    def persistent_load(self, pid):  # pragma: no cover - nobody writes these
        raise pickle.UnpicklingError("persistent ids are not allowed in session data")


def load(stream: io.BufferedIOBase):
    """Load one pickle from *stream* with the allow-list applied."""
    return RestrictedUnpickler(stream).load()


def loads(data: bytes):
    """Load one pickle from *data* with the allow-list applied; trailing bytes are an error."""
    stream = io.BytesIO(data)
    value = load(stream)
    if stream.read(1):
        raise pickle.UnpicklingError("trailing bytes after the pickle")
    return value
