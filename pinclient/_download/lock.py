"""One fetch per destination at a time, and the rules for every file pinclient keeps beside DEST.

Side files. Next to ``DEST`` pinclient keeps ``.DEST.pinclient-lock`` (this module),
``.DEST.pinclient-part`` and its sidecar ``.DEST.pinclient-part.json`` (:mod:`.partfile`): hidden
names with a pinclient marker, so that they cannot be a user's file (0.1.0 used ``DEST.lock`` and
``DEST.part``, and so truncated and deleted ``Pipfile.lock`` when fetching ``Pipfile``; those names
are someone else's now and are never opened). Each side file is created with
``O_CREAT | O_EXCL | O_NOFOLLOW``, and one that already exists is truncated, replaced or removed
only once pinclient has proved it made it (:func:`owned`: a regular file, one link, our user, and
pinclient's marker or the part's recorded inode). A symlink, a hard link or a planted file is left
alone and the fetch refused with a :class:`~pinclient.errors.StorageError` naming it.

The lock. Two updaters fetching to the same DEST would otherwise write the same part file. The
second one waits for an advisory ``flock`` up to ``timeout`` seconds (0 = not at all), then fails
with a :class:`~pinclient.errors.StorageError` that names the holder's process id. The lock file is
removed on release, so none is left behind. That is safe only because a waiter, once it holds the
lock, checks that the path still names the file it locked; if the holder removed it meanwhile, the
waiter starts over with the new file (the usual lock-then-verify-inode pattern). A lock file left
by a killed process carries the marker and is taken over.

Platforms (docs/threat-model.md, "Platforms"; the primitive is :func:`pinclient._paths.try_lock`).
POSIX uses ``flock``. Windows has no ``flock``; there
the lock is ``msvcrt.locking`` on one byte far past the marker and the process id (a Windows
byte-range lock is mandatory, so locking the marker would hide the holder's pid from a waiter). The
waiting, the timeout and the ownership rules are the same. Two things differ on Windows: a file
that is open cannot be removed, so the lock file is removed just after it is closed, if its name
still is that file (a waiter that has it open meanwhile makes Windows refuse; the file then goes
at the next holder's release, or is taken over, marked, like a killed process's); and Windows has
no file owner that ``os.stat`` reports, so :func:`owned` cannot compare users there (the folder's
ACL decides who can plant a file). Windows has no ``O_NOFOLLOW`` either: :func:`open_nofollow` and
the lock then look at the name with ``lstat`` before and after opening and refuse a link or a
swapped file. A platform with neither ``flock`` nor ``msvcrt`` gets no silent lock-free fetch:
:func:`dest_lock` refuses with a :class:`~pinclient.errors.StorageError`.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .. import _paths
from ..errors import StorageError

__all__ = ["create_exclusive", "dest_lock", "lock_path", "not_ours", "open_nofollow", "owned",
           "side_path"]

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_NONBLOCK = getattr(os, "O_NONBLOCK", 0)  # a FIFO planted at a side file's name must not hang open()
_BINARY = getattr(os, "O_BINARY", 0)  # Windows: without it os.write turns b"\n" into b"\r\n"
_POLL = 0.05  # seconds between attempts while waiting
_YOUNG = 2.0  # seconds an empty, unmarked lock file may be another pinclient's, still being made
LOCK_MARKER = b"pinclient lock\n"  # the first line of every lock file pinclient writes


def side_path(dest: Path, kind: str) -> Path:
    """``.DEST.pinclient-KIND``: a side file's name, hidden and marked as pinclient's."""
    return dest.with_name(f".{dest.name}.pinclient-{kind}")


def lock_path(dest: Path) -> Path:
    return side_path(dest, "lock")


def _symlink_error(path: Path) -> StorageError:
    return StorageError(f"{str(path)!r} is a symbolic link; pinclient never writes through links "
                        "and does not remove what it did not create. Remove it and try again.",
                        path=str(path))


def open_nofollow(path: Path, flags: int, mode: int = 0o600) -> int:
    """``os.open`` that never follows a symlink at ``path`` and opens only regular files.

    Raises:
        StorageError: ``path`` is a symlink or not a regular file, or cannot be opened (the
            ``OSError`` is the ``__cause__``).
    """
    before = _no_link_before(path)
    try:
        fd = os.open(path, flags | _NOFOLLOW | _CLOEXEC | _NONBLOCK | _BINARY, mode)
    except OSError as e:
        if e.errno == errno.ELOOP or (e.errno == errno.EMLINK and path.is_symlink()):
            raise _symlink_error(path) from None
        raise StorageError(f"cannot open {str(path)!r}: {e.strerror or e}", path=str(path)) from e
    _no_link_after(fd, path, before)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise StorageError(f"{str(path)!r} is not a regular file; refusing to use it.", path=str(path))
    return fd


def create_exclusive(path: Path, mode: int = 0o600) -> int | None:
    """Create ``path`` for reading and writing; None if something is already there.

    Raises:
        StorageError: it cannot be created (read-only folder, …); a symlink counts as "there".
    """
    # O_CREAT | O_EXCL fails on any name that exists, a link included (POSIX; Windows' CREATE_NEW).
    try:
        return os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | _NOFOLLOW | _CLOEXEC | _BINARY, mode)
    except FileExistsError:
        return None
    except OSError as e:
        raise StorageError(f"cannot create {str(path)!r}: {e.strerror or e}", path=str(path)) from e


def _no_link_before(path: Path) -> os.stat_result | None:
    """Without ``O_NOFOLLOW`` (Windows): refuse a link at ``path`` before opening it; what is there."""
    if _NOFOLLOW:
        return None
    try:
        st = os.stat(path, follow_symlinks=False)
    except OSError:
        return None  # nothing there: os.open says why
    if _is_link(st):
        raise _symlink_error(path)
    return st


def _no_link_after(fd: int, path: Path, before: os.stat_result | None) -> None:
    """Without ``O_NOFOLLOW``: the name must still be the very file opened, not a link to it
    (a link planted between the look and the open). Closes ``fd`` before raising."""
    if _NOFOLLOW:
        return
    try:
        st = os.stat(path, follow_symlinks=False)
    except OSError:
        st = None
    mine = os.fstat(fd)
    if (st is None or _is_link(st) or (st.st_dev, st.st_ino) != (mine.st_dev, mine.st_ino)
            or (before is not None and (before.st_dev, before.st_ino) != (st.st_dev, st.st_ino))):
        os.close(fd)
        raise _symlink_error(path)


def _is_link(st: os.stat_result) -> bool:
    """A symlink, or on Windows any reparse point (a junction is a link too)."""
    reparse = getattr(st, "st_file_attributes", 0) & getattr(stat, "FILE_ATTRIBUTE_REPARSE_POINT", 0)
    return stat.S_ISLNK(st.st_mode) or bool(reparse)


def owned(st: os.stat_result) -> bool:
    """Could this be a file pinclient made? A regular file with one link, owned by this user."""
    uid = os.geteuid() if hasattr(os, "geteuid") else st.st_uid
    return stat.S_ISREG(st.st_mode) and st.st_nlink == 1 and st.st_uid == uid


def not_ours(path: Path, why: str) -> StorageError:
    """The refusal for a side file that pinclient cannot prove it made."""
    return StorageError(f"{str(path)!r} exists and pinclient cannot prove it made it ({why}); it "
                        "never truncates, replaces or removes such a file. Move it away and try "
                        "again.", path=str(path))


def _read_at(fd: int, n: int, offset: int) -> bytes:
    """``os.pread``, which Windows lacks; the offset is ours alone (the fd is never shared)."""
    os.lseek(fd, offset, os.SEEK_SET)
    return os.read(fd, n)


def _holder(fd: int) -> str:
    try:
        text = _read_at(fd, 64, len(LOCK_MARKER)).decode("ascii", "replace").strip()
    except OSError:
        return ""
    return f" (pid {text})" if text.isdigit() else ""


def _try_lock(fd: int, path: Path) -> bool:
    """Take the lock on ``fd`` without waiting; False if another open file holds it.

    Raises:
        StorageError: this platform has no lock to take, or locking failed otherwise.
    """
    try:
        got = _paths.try_lock(fd)
    except OSError as e:
        raise StorageError(f"cannot lock {str(path)!r}: {e.strerror or e}", path=str(path)) from e
    if got is None:
        raise StorageError(f"cannot lock {str(path)!r}: this platform has neither flock nor msvcrt, so "
                           "pinclient cannot keep two fetches from writing the same file; refusing "
                           "to fetch to a file here.", path=str(path))
    return got


def _same_file(fd: int, path: Path) -> bool:
    try:
        st = os.stat(path, follow_symlinks=False)
    except FileNotFoundError:
        return False
    mine = os.fstat(fd)
    return (st.st_dev, st.st_ino) == (mine.st_dev, mine.st_ino)


def _open_lock(path: Path) -> tuple[int, bool] | None:
    """The lock file, created or opened without changing it; None if it vanished meanwhile."""
    fd = create_exclusive(path)
    if fd is not None:
        return fd, True
    _no_link_before(path)
    try:
        fd = os.open(path, os.O_RDWR | _NOFOLLOW | _CLOEXEC | _NONBLOCK | _BINARY)
    except FileNotFoundError:
        return None
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise _symlink_error(path) from None
        raise StorageError(f"cannot open {str(path)!r}: {e.strerror or e}", path=str(path)) from e
    # A link swapped in after that look is caught by dest_lock's _same_file, and then by the look.
    if not owned(os.fstat(fd)):
        os.close(fd)
        raise not_ours(path, "not a regular file of this user with a single link")
    return fd, False


@contextmanager
def dest_lock(dest: Path, timeout: float) -> Iterator[None]:
    """Hold the advisory lock for ``dest`` for the duration of the ``with`` block.

    Raises:
        StorageError: another process held it for longer than ``timeout`` seconds, or the lock file
            cannot be created, or a file pinclient did not make is at its name (symlink, hard link,
            a file without pinclient's marker).
    """
    path = lock_path(dest)
    give_up = time.monotonic() + timeout
    retries = 0
    while True:
        opened = _open_lock(path)
        if opened is None:
            retries = _again(dest, path, give_up, retries)
            continue
        fd, created = opened
        try:
            locked = _try_lock(fd, path)
        except BaseException:
            os.close(fd)
            raise
        if not locked:
            holder = _holder(fd)
            os.close(fd)
            if time.monotonic() >= give_up:
                raise StorageError(
                    f"{str(dest)!r} is being fetched by another process{holder}; waited "
                    f"{timeout:g} s for its lock {str(path)!r}. Try again later, or raise "
                    "--lock-timeout.", path=str(dest)) from None
            time.sleep(_POLL)
            continue
        if not _same_file(fd, path):
            _paths.unlock(fd)
            os.close(fd)  # the holder removed the file we locked; lock the new one
            retries = _again(dest, path, give_up, retries)
            continue
        head = b"" if created else _read_at(fd, len(LOCK_MARKER), 0)
        if created or head == LOCK_MARKER:
            break
        # No marker: a planted file, or one that another pinclient created an instant ago and has
        # not locked and marked yet (then it is empty and new). Wait for the marker a little.
        young = not head and time.time() - os.fstat(fd).st_mtime < _YOUNG
        _paths.unlock(fd)
        os.close(fd)
        if not young or time.monotonic() >= give_up:
            raise not_ours(path, "it does not start with pinclient's lock marker")
        time.sleep(_POLL)
    try:
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, LOCK_MARKER + str(os.getpid()).encode())
    except OSError:
        pass  # the pid is only for the message of a waiting process
    try:
        yield
    finally:
        _release(fd, path)


def _again(dest: Path, path: Path, give_up: float, retries: int) -> int:
    """Count a start-over (the lock file vanished or changed under us). One is always allowed;
    after that, none past ``give_up``: a name that keeps changing (or a platform whose ``stat``
    and ``fstat`` disagree about the file) must not keep a fetch spinning past its lock timeout."""
    if retries and time.monotonic() >= give_up:
        raise StorageError(f"{str(path)!r}, the lock file for {str(dest)!r}, kept changing while "
                           "pinclient tried to lock it; try again, or raise --lock-timeout.",
                           path=str(dest))
    if retries:
        time.sleep(_POLL / 10)
    return retries + 1


def _release(fd: int, path: Path) -> None:
    """Remove the lock file while still holding it, then let go. Windows cannot remove a file that
    is open, ours included: there it is removed right after closing, if the name is still the file
    we locked; a fetch that opened it meanwhile makes Windows refuse, and removes it itself later."""
    mine = os.fstat(fd)
    refused = False
    if _same_file(fd, path):
        try:
            os.unlink(path)  # while still holding it: see the module docstring
        except PermissionError:
            refused = True
        except OSError:
            pass
    _paths.unlock(fd)
    os.close(fd)
    if refused and _paths.msvcrt_locks():
        with contextlib.suppress(OSError):
            st = os.stat(path, follow_symlinks=False)
            # Size and mtime too: a file system may give a new file the number just freed.
            if _identity(st) == _identity(mine):
                os.unlink(path)


def _identity(st: os.stat_result) -> tuple[int, int, int, int]:
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns
