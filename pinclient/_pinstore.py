"""Where an accepted pins update is kept: one JSON file per shipped pins file, in the state folder.

The file is ``STATE/pins/<hash of the shipped file's [update] url>.json`` (the url, not the shipped
file's path, names it, so an application moved to another folder keeps its updates). It holds the
accepted document (its exact text and ``.minisig``), its serial, where it came from and when the
update source was last checked. It is only ever replaced whole (a temporary file in the same folder,
fsync, :func:`~pinclient._paths.replace_file`, :func:`~pinclient._paths.fsync_dir` (no folder fsync on
Windows), as python-tuf's ``_persist_metadata``), under the lock of :func:`pinclient._paths.try_lock`
on ``NAME.lock`` (``flock``, or ``msvcrt.locking`` on Windows; waited for at most :data:`LOCK_TIMEOUT`
seconds and never past the caller's deadline; a platform with neither lock is a StorageError),
and :func:`store` re-reads it under that lock so that two processes updating at once can never
replace a newer serial with an older one.

No verification happens here (see :mod:`pinclient._pinsupdate`), and nothing but this module's own
files is written: a path that holds something else (a folder, a symlink, a file that is not this
module's JSON) is refused with :class:`~pinclient.errors.StorageError`, never replaced.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import os
import stat
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import _paths
from ._deadline import remaining
from .errors import StorageError

__all__ = ["FORMAT", "StoredPins", "read_stored", "store", "store_path"]

log = logging.getLogger("pinclient")

#: The ``format`` field of the JSON file; another value is not ours to read or replace.
FORMAT = "pinclient-pins-update-1"
#: A stored file larger than this is not one pinclient wrote (a pins file is capped at 1 MiB).
_MAX_STORED = 4 * 1024 * 1024
#: The longest wait for another process's lock (it holds it for one read and one small write).
LOCK_TIMEOUT = _paths.STATE_LOCK_TIMEOUT
_BINARY = getattr(os, "O_BINARY", 0)  # Windows: without it a read stops at a 0x1A byte
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)


@dataclass(frozen=True)
class StoredPins:
    """What the state folder knows about one shipped pins file's update source."""

    url: str  # the shipped file's [update] url (what names the file)
    serial: int = 0  # the stored document's serial; 0: none stored yet
    document: str | None = None  # the accepted pins.toml text, exactly as signed
    signature: str | None = None  # its .minisig
    origin: str | None = None  # the URL it was fetched from
    fetched: str | None = None  # when it was accepted (ISO 8601, UTC)
    last_checked: str | None = None  # when the source was last checked successfully (ISO 8601, UTC)

    def to_json(self) -> dict[str, Any]:
        return {"format": FORMAT, **dataclasses.asdict(self)}


def store_path(folder: Path, url: str) -> Path:
    """The stored-update file for the pins file whose ``[update] url`` is ``url``."""
    return folder / "pins" / (hashlib.sha256(url.encode()).hexdigest()[:32] + ".json")


def read_stored(path: Path) -> StoredPins | None:
    """The stored update at ``path``, or None when there is none.

    Raises:
        StorageError: something is at ``path`` that this module did not write (a folder, a symlink,
            another file), or it cannot be read.
    """
    try:
        fd = os.open(path, os.O_RDONLY | _BINARY | _NOFOLLOW | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        return None
    except OSError as e:
        raise StorageError(f"cannot read the stored pins update {str(path)!r}: {e.strerror or e} "
                           "(pinclient reads only a regular file it wrote there)", path=str(path)) from None
    with os.fdopen(fd, "rb") as fh:
        if not _regular(fh.fileno()):  # a FIFO or device must not be read (O_NONBLOCK: nor hang)
            raise StorageError(f"{str(path)!r} is not a regular file; pinclient did not write it",
                               path=str(path))
        data = fh.read(_MAX_STORED + 1)
    try:
        doc = json.loads(data) if len(data) <= _MAX_STORED else None
        if not isinstance(doc, dict) or doc.pop("format", None) != FORMAT:
            raise ValueError("not a pinclient pins-update file")
        stored = StoredPins(**doc)
        if not (isinstance(stored.serial, int) and isinstance(stored.url, str)):
            raise ValueError("bad field types")
    except (ValueError, TypeError) as e:
        raise StorageError(f"{str(path)!r} is not a pins update pinclient stored ({e}); move it away "
                           "to start afresh", path=str(path)) from None
    return stored


def _regular(fd: int) -> bool:
    return stat.S_ISREG(os.fstat(fd).st_mode)


def store(path: Path, merge: Callable[[StoredPins | None], StoredPins | None]) -> StoredPins | None:
    """Replace the stored update at ``path`` with ``merge(current)`` (nothing when it returns None),
    atomically and under the lock; ``current`` is read under that lock. Returns what is stored now.

    Raises:
        StorageError: the folder cannot be made or written, or ``path`` holds a file pinclient did
            not write.
    """
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as e:
        raise StorageError(f"cannot make the state folder {str(path.parent)!r}: {e.strerror or e}",
                           path=str(path.parent)) from None
    with _locked(path.with_name(path.name + ".lock")):
        current = read_stored(path)
        new = merge(current)
        if new is None:
            return current
        _replace(path, json.dumps(new.to_json(), indent=1).encode())
        return new


@contextlib.contextmanager
def _locked(lock_path: Path) -> Iterator[None]:
    """An exclusive lock on ``lock_path`` (:func:`pinclient._paths.try_lock`: ``flock``, else
    ``msvcrt.locking``), waited for at most :data:`LOCK_TIMEOUT` s and the caller's deadline; a
    platform with neither lock gets a StorageError, never an unlocked read-modify-write.

    Raises:
        StorageError: the lock file cannot be opened or locked, or another process held it too long.
    """
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | _BINARY | _NOFOLLOW, 0o600)
    except OSError as e:
        raise StorageError(f"cannot lock {str(lock_path)!r}: {e.strerror or e}",
                           path=str(lock_path)) from None
    try:
        _paths.wait_for_lock(fd, lock_path, remaining())
        try:
            yield
        finally:
            _paths.unlock(fd)  # Windows frees a closed file's locks only "eventually"
    finally:
        os.close(fd)


def _replace(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(prefix=".pins-update.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            _paths.fsync_file(fh.fileno())  # F_FULLFSYNC on macOS
        left = remaining()
        _paths.replace_file(tmp, path, until=None if left is None else time.monotonic() + left)
    except OSError as e:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise StorageError(f"cannot write the pins update to {str(path)!r}: {e.strerror or e}",
                           path=str(path)) from None
    with contextlib.suppress(OSError):  # the rename is durable once the folder is (not on Windows)
        _paths.fsync_dir(path.parent)
