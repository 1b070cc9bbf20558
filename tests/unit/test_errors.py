"""Every error class sessionshift defines derives from sessionshift.errors.SessionshiftError."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import sessionshift
from sessionshift.errors import SessionshiftError


def _error_classes():
    for info in pkgutil.iter_modules(sessionshift.__path__, "sessionshift."):
        module = importlib.import_module(info.name)
        for name, value in vars(module).items():
            if (inspect.isclass(value) and issubclass(value, BaseException) and value.__module__ == info.name
                    and not name.startswith("_")):  # private control-flow signals are not errors
                yield f"{info.name}.{name}", value


def test_every_sessionshift_error_has_the_one_base():
    classes = dict(_error_classes())
    assert "sessionshift.phases.TransitionRefused" in classes and "sessionshift.cli.CliError" in classes
    outside = sorted(name for name, cls in classes.items()
                     if not issubclass(cls, SessionshiftError))
    assert not outside, f"derive these from sessionshift.errors.SessionshiftError: {outside}"


def test_the_standard_bases_still_match():
    from redis.exceptions import RedisError

    from sessionshift.backup import BackupError
    from sessionshift.migrate import MigrateBusy
    from sessionshift.phases import TransitionRefused
    from sessionshift.store import ReplicationShortfall

    assert issubclass(TransitionRefused, ValueError) and issubclass(BackupError, ValueError)
    assert issubclass(MigrateBusy, RuntimeError) and issubclass(ReplicationShortfall, RedisError)
