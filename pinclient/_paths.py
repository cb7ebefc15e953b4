"""The per-user cache folder (revocation cache, report rate limiter) and state folder (what
pinclient learns: updated pins, known issuers); checks of paths a user gave (``--pins``,
``--ca-bundle``); :func:`replace_file`, the one ``os.replace`` that every atomic write uses; and
:func:`fsync_file` / :func:`fsync_dir`, an fsync that reaches the disk on macOS too, and a folder
fsync where the platform has one.

Platforms: the folders follow each platform's convention (XDG on Linux and the BSDs,
``~/Library`` on macOS, ``%LOCALAPPDATA%`` on Windows), read from ``sys.platform`` at call time.
"""

from __future__ import annotations

import contextlib
import errno
import importlib
import os
import sys
import time
from pathlib import Path
from typing import Any

from .errors import StorageError, UsageError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]
try:
    msvcrt: Any = importlib.import_module("msvcrt")  # Any: its stubs exist only for win32
except ImportError:
    msvcrt = None

__all__ = ["LOCK_BYTE", "REPLACE_PATIENCE", "WINDOWS", "fsync_dir", "fsync_file", "given_file_exists",
           "msvcrt_locks", "replace_file", "try_lock", "unlock", "user_cache_dir", "user_state_dir",
           "wait_for_lock", "windows_name_problem"]

WINDOWS = os.name == "nt"  # read at call time by the Windows branches (the tests simulate them)
REPLACE_PATIENCE = 2.0  # seconds a Windows sharing violation on os.replace is waited out, at most
_REPLACE_POLL = 0.05  # seconds between attempts
LOCK_BYTE = 1 << 30  # the byte msvcrt.locking locks (Windows): past any content, which stays readable


def given_file_exists(path: Path, what: str) -> bool:
    """``path.is_file()`` for a path the user gave as ``what`` (a flag): a name too long for the
    file system is a :class:`UsageError` saying so, not ``OSError: File name too long`` (on
    Python < 3.14 ``is_file`` raises it).

    Raises:
        UsageError: the path is too long, or cannot be looked at.
    """
    try:
        return path.is_file()
    except OSError as e:
        if e.errno == errno.ENAMETOOLONG:
            longest = max(len(os.fsencode(part)) for part in path.parts)
            raise UsageError(f"{what} {str(path)[:60]!r}… is too long a path ({len(os.fsencode(str(path)))} "
                             f"bytes, its longest name {longest}; most file systems allow 255).") from None
        raise UsageError(f"{what} {str(path)[:200]!r}: {e.strerror or e}") from None


_WINDOWS_DEVICES = frozenset(
    ["CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$"]
    + [f"{port}{n}" for port in ("COM", "LPT") for n in [*"123456789", "\u00b9", "\u00b2", "\u00b3"]])


def windows_name_problem(name: str) -> str | None:
    """Why ``name`` cannot be a plain file name in the current folder on Windows, or None.

    A name taken from a URL must name a file here and nothing else: ``C:x`` is ``x`` in drive C's
    current folder, ``update.exe:s`` a stream of ``update.exe``, ``CON`` or ``nul.txt`` a device;
    ``<>"|?*`` and control characters are refused by Windows, and it drops trailing dots and spaces
    (``update.exe.`` would be ``update.exe``). Microsoft's "Naming Files, Paths, and Namespaces".
    """
    bad = sorted({c for c in name if c in '<>:"/\\|?*' or ord(c) < 32})
    if bad:
        return f"Windows does not allow {''.join(bad)!r} in a file name"
    if name[-1:] in (".", " "):
        return "Windows drops a trailing dot or space"
    if name.split(".")[0].rstrip(" ").upper() in _WINDOWS_DEVICES:
        return "it is a Windows device name"
    return None


def user_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/pinclient`` (else ``~/.cache/pinclient``), ``~/Library/Caches/pinclient`` on
    macOS, ``%LOCALAPPDATA%\\pinclient\\Cache`` on Windows."""
    if sys.platform == "win32":
        local = os.environ.get("LOCALAPPDATA")
        base = Path(local) if local else Path.home() / "AppData" / "Local"
        return base / "pinclient" / "Cache"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Caches" / "pinclient"
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    # The XDG spec says relative values must be ignored.
    base = Path(xdg) if xdg and Path(xdg).is_absolute() else Path.home() / ".cache"
    return base / "pinclient"


def user_state_dir() -> Path:
    """Where pinclient keeps what it learns for this user (updated pins, known issuers):
    ``$XDG_STATE_HOME/pinclient`` (else ``~/.local/state/pinclient``),
    ``~/Library/Application Support/pinclient`` on macOS, ``%LOCALAPPDATA%\\pinclient\\State`` on
    Windows. Unlike the cache, losing it loses knowledge (a remembered issuer), so it is not a cache."""
    if sys.platform == "win32":
        local = os.environ.get("LOCALAPPDATA")
        base = Path(local) if local else Path.home() / "AppData" / "Local"
        return base / "pinclient" / "State"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Application Support" / "pinclient"
    xdg = os.environ.get("XDG_STATE_HOME", "")
    base = Path(xdg) if xdg and Path(xdg).is_absolute() else Path.home() / ".local" / "state"
    return base / "pinclient"


def replace_file(src: str | os.PathLike[str], dst: str | os.PathLike[str], *,
                 until: float | None = None) -> None:
    """``os.replace(src, dst)``; on Windows a ``PermissionError`` is retried for a moment.

    Windows refuses to replace a file that another process has open without
    ``FILE_SHARE_DELETE`` (a sharing violation, ``PermissionError``): an antivirus scanner or a
    search indexer looking at the old DEST for a second is the usual holder. The rename is tried
    again every 50 ms for up to :data:`REPLACE_PATIENCE` seconds and never past ``until`` (a
    ``time.monotonic()`` deadline, the caller's), then the last ``PermissionError`` is raised.
    Elsewhere a ``PermissionError`` from ``rename(2)`` means the folder's permissions, which waiting
    does not change, so it is raised at once.

    Raises:
        OSError: the rename failed (the file at ``dst`` is unchanged).
    """
    give_up = time.monotonic() + REPLACE_PATIENCE
    if until is not None:
        give_up = min(give_up, until)
    while True:
        try:
            os.replace(src, dst)
            return
        except PermissionError:
            if not WINDOWS or time.monotonic() + _REPLACE_POLL > give_up:
                raise
        time.sleep(_REPLACE_POLL)


def fsync_dir(folder: Path) -> None:
    """Make a rename in ``folder`` durable: fsync the folder, where the platform can.

    POSIX systems (Linux, macOS, the BSDs) open a folder read-only and fsync it. Windows cannot
    open a folder as a file at all (``os.open`` raises ``PermissionError``) and has no folder fsync;
    there NTFS journals the rename itself, so this is a no-op: DEST is still the old file or the
    new one, never a mix, but a rename made just before a power loss may be undone
    (docs/threat-model.md, "Platforms"). A POSIX file system that refuses raises, and the caller
    says so.

    Raises:
        OSError: the folder could not be opened or fsynced (never on Windows).
    """
    if WINDOWS:
        return
    fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        fsync_file(fd)
    finally:
        os.close(fd)


def fsync_file(fd: int) -> None:
    """``os.fsync(fd)``; on macOS ``fcntl(fd, F_FULLFSYNC)``.

    macOS's ``fsync(2)`` moves the data to the drive but not out of the drive's own cache, so a
    power loss can still lose it (Apple's fsync(2) man page; SQLite's ``fullfsync`` pragma exists for
    this). ``F_FULLFSYNC`` asks the drive to flush. A file system that refuses it (some network and
    FAT volumes) gets the plain ``fsync``.

    Raises:
        OSError: the fsync failed.
    """
    full = getattr(fcntl, "F_FULLFSYNC", None) if sys.platform == "darwin" else None
    if full is not None:
        try:
            fcntl.fcntl(fd, full)
            return
        except OSError:
            pass  # not supported here: fall back to fsync(2)
    os.fsync(fd)


def try_lock(fd: int) -> bool | None:
    """Take an exclusive lock on the open file ``fd`` without waiting: ``flock`` on POSIX,
    ``msvcrt.locking`` on :data:`LOCK_BYTE` on Windows (a Windows byte-range lock is mandatory, so
    it lies past anything a waiter may want to read). True when taken; False when another open file
    holds it (this process's included); None when the platform has neither lock.

    Raises:
        OSError: locking failed otherwise.
    """
    if fcntl is not None:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True
    if msvcrt is None:
        return None
    os.lseek(fd, LOCK_BYTE, os.SEEK_SET)
    try:
        msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
    except OSError as e:
        # LK_NBLCK on a byte another handle locked: EACCES (the CRT's "locking violation").
        if e.errno in (errno.EACCES, getattr(errno, "EDEADLOCK", errno.EDEADLK)):
            return False
        raise
    return True


def msvcrt_locks() -> bool:
    """Whether :func:`try_lock` uses ``msvcrt.locking`` (Windows), where an open file cannot be removed."""
    return fcntl is None and msvcrt is not None


#: The longest a state-folder store (known issuers, the pins store) waits for its lock.
STATE_LOCK_TIMEOUT = 10.0


def wait_for_lock(fd: int, path: Path, left: float | None) -> None:
    """:func:`try_lock` on ``fd`` (the lock file ``path``) every 10 ms, for at most
    :data:`STATE_LOCK_TIMEOUT` seconds and never longer than ``left``, what is left of the caller's
    deadline (None: no deadline). The one bounded lock wait of the state-folder stores.

    Raises:
        StorageError: the lock failed, this platform cannot lock, or another process held it too long.
    """
    timeout = STATE_LOCK_TIMEOUT if left is None else min(STATE_LOCK_TIMEOUT, left)
    give_up = time.monotonic() + timeout
    while True:
        try:
            got = try_lock(fd)
        except OSError as e:
            raise StorageError(f"cannot lock {str(path)!r}: {e.strerror or e}", path=str(path)) from None
        if got is None:
            raise StorageError(f"cannot lock {str(path)!r}: this platform has neither flock nor "
                               "msvcrt.locking; refusing an unlocked update", path=str(path))
        if got:
            return
        if time.monotonic() >= give_up:
            raise StorageError(f"another process held {str(path)!r} for more than {timeout:.1f} s; "
                               "giving up", path=str(path))
        time.sleep(0.01)


def unlock(fd: int) -> None:
    """Release :func:`try_lock`'s lock before closing ``fd``: Windows frees the locks of a closed
    file only "eventually"; closing releases a ``flock``. Never raises."""
    if msvcrt_locks():
        with contextlib.suppress(OSError):
            os.lseek(fd, LOCK_BYTE, os.SEEK_SET)
            msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)
