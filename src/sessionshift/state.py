"""Per-host migration state: small JSON files in one state directory.

Each app host keeps, in ``state_dir`` (default ``/var/lib/sessionshift``):

    profile.json      the source profile: the files' hash, header, pickle protocol; the value format
    phase.json        the current phase and a short history; the interface watches it
    journal/          Redis writes that failed, waiting to be replayed
    migrate.json      the backfill's checkpoint and last result
    validation.json   the last validation's result (the phase-3 gate reads it)
    export.json       the last Redis -> file export (a rollback from phase >= 4 needs it)

Files are replaced atomically (temporary file + rename in the same directory),
so a reader never sees half a file, whoever writes it.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import tempfile
from typing import Any

from . import defaults

DEFAULT_STATE_DIR = defaults.STATE_DIR

PROFILE_FILE = "profile.json"
PHASE_FILE = "phase.json"
JOURNAL_DIR = "journal"
MIGRATE_FILE = "migrate.json"
VALIDATION_FILE = "validation.json"
EXPORT_FILE = "export.json"


def utc_now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


def read_json(path: str) -> dict[str, Any] | None:
    """The JSON object in *path*, or None if the file does not exist."""
    try:
        with open(path, encoding="utf-8") as handle:
            value = json.load(handle)
    except FileNotFoundError:
        return None
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc}); restore it from the history "
                         "in the playbook output or remove it to start over") from None
    if not isinstance(value, dict):
        raise ValueError(f"{path}: expected a JSON object")
    return value


def write_json(path: str, value: dict[str, Any], mode: int = 0o644) -> None:
    """Write *value* to *path* atomically."""
    directory = os.path.dirname(path) or "."
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(value, handle, indent=2, sort_keys=True, default=str)
            handle.write("\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def state_path(state_dir: str, name: str) -> str:
    return os.path.join(state_dir, name)
