"""Checks of the settings an operator types: one ValueError line naming the input and the fix.

The engines call these, so the CLI (exit 2) and the modules (``fail_json``)
refuse the same inputs with the same words.
"""

from __future__ import annotations

from typing import Any


def at_least(name: str, value: Any, minimum: float) -> Any:
    """*value* if it is a number >= *minimum*; else ValueError naming *name*."""
    if isinstance(value, bool) or not isinstance(value, int | float) or value < minimum:
        raise ValueError(f"{name} must be a number of at least {minimum}, not {value!r}")
    return value


def file_mode(value: Any, name: str = "mode") -> int:
    """A file mode from an octal string (``"0600"``, ``"600"``, ``"0o600"``), as Ansible's ``file`` takes it.

    An integer is refused: YAML reads an unquoted ``600`` as the decimal 600,
    which is mode 01130 (no read bit for the owner), and an unquoted ``0600`` as
    384; only a quoted string says what was meant. The owner must keep read and
    write: the app reads and rewrites its session files.
    """
    if isinstance(value, bool) or not isinstance(value, str):
        hint = f" (YAML reads {value} as the decimal {value}, mode {value:#o})" if type(value) is int else ""
        raise ValueError(f"{name} {value!r} is not a string{hint}: quote the octal mode, "
                         f"e.g. {name}: \"0600\"")
    text = value.strip().lower().removeprefix("0o")
    if not text or any(char not in "01234567" for char in text):
        raise ValueError(f"{name} {value!r} is not an octal mode; write it like \"0600\" or \"0640\"")
    mode = int(text, 8)
    if mode > 0o7777:
        raise ValueError(f"{name} {value!r} is larger than 07777; write it like \"0600\"")
    if mode & 0o600 != 0o600:
        raise ValueError(f"{name} {value!r} ({mode:#o}) takes read or write away from the owner, "
                         "and the app could not use its own session files; use \"0600\" or \"0640\"")
    return mode
