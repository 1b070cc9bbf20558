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

import datetime
import json
import os
from typing import Any

from . import defaults
from .atomicfile import write_atomic

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
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    text = json.dumps(value, indent=2, sort_keys=True, default=str) + "\n"
    write_atomic(path, text.encode("utf-8"), mode=mode, durable=True)


def state_path(state_dir: str, name: str) -> str:
    return os.path.join(state_dir, name)
