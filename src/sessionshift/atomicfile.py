"""Atomic file writes: a reader sees the old file or the whole new one, never a part of it.

The one writer of every file sessionshift replaces: session files (the app's saves,
the export), the state files (phase record, checkpoints, records, journal entries)
and backups. The file is written unnamed (``O_TMPFILE``) and linked in under its
name: one directory operation when there is no file yet (the common case of an
export), against two for a temporary name and a rename. An existing file is
replaced by linking under a temporary name and renaming over it. File systems
without ``O_TMPFILE`` (NFS...) get a named temporary file. Temporary names start
with a dot and end in the caller's suffix, so a directory scan can skip them
(cachelib skips its own suffix; the journal skips dot files).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from typing import BinaryIO

_PROC_FD = os.path.isdir("/proc/self/fd")  # how an O_TMPFILE file gets its name


def write_atomic(path: str, content: bytes | Callable[[BinaryIO], None], *, mode: int = 0o600,
                 uid: int | None = None, gid: int | None = None, mtime: float | None = None,
                 durable: bool = False, temp_suffix: str = ".tmp") -> str:
    """Write *content* (bytes, or a function that writes to the file) to *path* atomically.

    The file is created 0600 and given *mode*, owner and *mtime* before it gets its name, so
    it is never visible with other permissions. ``durable`` fsyncs it first (records and
    backups; the app's session saves skip it, as cachelib does).
    """
    directory = os.path.dirname(path) or "."
    fd = None
    if _PROC_FD:
        with contextlib.suppress(OSError):  # not supported by this file system
            fd = os.open(directory, os.O_TMPFILE | os.O_WRONLY, 0o600)
    tmp = None
    if fd is None:
        tmp, fd = _create_temporary(directory, temp_suffix)
    try:
        if callable(content):
            with os.fdopen(fd, "wb", closefd=False) as handle:
                content(handle)
        else:
            _write_fully(fd, content)
        if mode != 0o600:
            os.fchmod(fd, mode)
        if uid is not None or gid is not None:
            os.fchown(fd, -1 if uid is None else uid, -1 if gid is None else gid)
        if mtime is not None:
            os.utime(fd, (mtime, mtime))
        if durable:
            os.fsync(fd)
        if tmp is None:
            if _link_unnamed(fd, path):
                return path
            tmp = _link_unnamed_temporary(fd, directory, temp_suffix)
        os.replace(tmp, path)
    except BaseException:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        raise
    finally:
        os.close(fd)
    return path


def _write_fully(fd: int, payload: bytes) -> None:
    view = memoryview(payload)
    while view:
        view = view[os.write(fd, view):]


def _link_unnamed(fd: int, path: str) -> bool:
    """Give the O_TMPFILE file *fd* the name *path*; False if *path* exists.

    Only linkat() with AT_SYMLINK_FOLLOW can link /proc's name of the file;
    Python calls linkat() when given a dir fd, which an absolute path ignores.
    """
    try:
        os.link(f"/proc/self/fd/{fd}", path, src_dir_fd=fd, follow_symlinks=True)
    except FileExistsError:
        return False
    return True


def _link_unnamed_temporary(fd: int, directory: str, suffix: str) -> str:
    while True:
        tmp = _temporary_name(directory, suffix)
        if _link_unnamed(fd, tmp):
            return tmp


def _create_temporary(directory: str, suffix: str) -> tuple[str, int]:
    while True:
        tmp = _temporary_name(directory, suffix)
        try:
            return tmp, os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        except FileExistsError:
            continue


def _temporary_name(directory: str, suffix: str) -> str:
    return os.path.join(directory, f".{os.urandom(8).hex()}{suffix}")
