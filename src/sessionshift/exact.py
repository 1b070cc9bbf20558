"""Type-exact comparison of session values: what changed, where, from which type to which.

Python's ``==`` is not enough to say that the app reads back what it stored:
``1 == 1.0 == True``, ``Decimal("1") == 1`` and ``{1: "a"} == {1.0: "a"}``
all hold, while a tuple that came back as a list, a UUID as a string or a set
as a list are unequal but only *why* matters to an operator. :func:`compare`
walks two values and names every change of type by its key path
(``_flashes[0]``, ``cart{'a'}``...), apart from plain differences of value.

The walk is only needed when the cheap checks fail: equal bytes of the same
format are the same session, whatever they hold.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

MAX_CHANGES = 20  # type changes named per comparison; all are counted


@dataclasses.dataclass(frozen=True, slots=True)
class TypeChange:
    path: str  # where in the session: a key path such as "_flashes[0]"
    before: str  # the type the source held
    after: str  # the type read back

    @property
    def kind(self) -> str:
        """``"tuple -> list"``: the change without its place, for counting."""
        return f"{self.before} -> {self.after}"

    def as_dict(self) -> dict[str, str]:
        return {"path": self.path, "from": self.before, "to": self.after}


@dataclasses.dataclass(slots=True)
class Comparison:
    """The result of :func:`compare`: same value of the same types, or what differs."""

    type_changes: list[TypeChange] = dataclasses.field(default_factory=list)
    type_change_count: int = 0
    value_differs: bool = False

    @property
    def exact(self) -> bool:
        return not self.type_change_count and not self.value_differs

    def note(self, change: TypeChange) -> None:
        self.type_change_count += 1
        if len(self.type_changes) < MAX_CHANGES:
            self.type_changes.append(change)


def type_name(value: Any) -> str:
    cls = type(value)
    return cls.__name__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"


def compare(expected: Any, actual: Any) -> Comparison:
    """How *actual* (read back) differs from *expected* (what the source held)."""
    result = Comparison()
    if type(expected) is type(actual) is dict and expected == actual and _same_types(expected, actual):
        return result  # the common case, without building paths
    _walk(expected, actual, "", result)
    return result


def _same_types(expected: Any, actual: Any) -> bool:
    """Whether two equal values also agree in every type (keys included); no paths kept."""
    if type(expected) is not type(actual):
        return False
    if isinstance(expected, dict):
        keys = {key: key for key in actual}
        return all(type(keys[key]) is type(key) and _same_types(value, actual[key])
                   for key, value in expected.items())
    if isinstance(expected, (list, tuple)):
        return all(_same_types(a, b) for a, b in zip(expected, actual, strict=True))
    if isinstance(expected, (set, frozenset)):
        return _type_multiset(expected) == _type_multiset(actual)
    if type(expected).__name__ == "datetime":
        return (expected.tzinfo is None) == (actual.tzinfo is None)
    return True


def _type_multiset(values) -> dict[str, int]:
    counts: dict[str, int] = {}
    for value in values:
        counts[type_name(value)] = counts.get(type_name(value), 0) + 1
    return counts


def _walk(expected: Any, actual: Any, path: str, result: Comparison) -> None:
    where = path or "(session)"
    if type(expected) is not type(actual):
        result.note(TypeChange(where, type_name(expected), type_name(actual)))
        return
    if isinstance(expected, dict):
        keys = {key: key for key in actual}
        if set(keys) != set(expected):
            result.value_differs = True
        for key, value in expected.items():
            if key not in keys:
                continue
            child = f"{path}[{key!r}]" if path else repr(key) if not isinstance(key, str) else key
            if type(keys[key]) is not type(key):
                result.note(TypeChange(f"{child} (key)", type_name(key), type_name(keys[key])))
            _walk(value, actual[key], child, result)
        return
    if isinstance(expected, (list, tuple)):
        if len(expected) != len(actual):
            result.value_differs = True
        for index, (a, b) in enumerate(zip(expected, actual, strict=False)):
            _walk(a, b, f"{path}[{index}]", result)
        return
    if isinstance(expected, (set, frozenset)):
        if expected != actual:
            result.value_differs = True
        before, after = _type_multiset(expected), _type_multiset(actual)
        if before != after:
            result.note(TypeChange(f"{where} (members)", _describe(before), _describe(after)))
        return
    if type(expected).__name__ == "datetime" and (expected.tzinfo is None) != (actual.tzinfo is None):
        aware = ("naive datetime", "aware datetime")
        result.note(TypeChange(where, aware[expected.tzinfo is not None], aware[actual.tzinfo is not None]))
        return
    if expected != actual:
        result.value_differs = True


def _describe(counts: dict[str, int]) -> str:
    return "{" + ", ".join(sorted(counts)) + "}"


def iter_types(value: Any) -> Iterator[str]:
    """Every type name in *value* (containers and their members, dict keys included)."""
    stack = [value]
    while stack:
        item = stack.pop()
        yield type_name(item)
        if isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, (list, tuple, set, frozenset)):
            stack.extend(item)
