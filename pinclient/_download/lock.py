"""One fetch per destination at a time: an advisory ``flock`` on ``DEST.lock``.

Two updaters fetching to the same DEST would otherwise write the same ``DEST.part``. The second one
waits for the lock up to ``timeout`` seconds (0 = not at all), then fails with a
:class:`~pinclient.errors.StorageError` that names the holder's process id.

The lock file is removed on release, so no ``.lock`` is left behind. That is safe only because a
waiter, once it holds the lock, checks that the path still names the file it locked; if the holder
removed it meanwhile, the waiter starts over with the new file (the usual lock-then-verify-inode
pattern). ``flock`` is POSIX; where it is missing (Windows) no lock is taken.
"""

from __future__ import annotations

import contextlib
import errno
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ..errors import StorageError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

__all__ = ["dest_lock", "lock_path", "open_nofollow"]

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_POLL = 0.05  # seconds between attempts while waiting


def lock_path(dest: Path) -> Path:
    return dest.with_name(dest.name + ".lock")


def open_nofollow(path: Path, flags: int, mode: int = 0o600) -> int:
    """``os.open`` that never follows a symlink at ``path`` and opens only regular files.

    Raises:
        StorageError: ``path`` is a symlink or not a regular file, or cannot be opened.
    """
    try:
        fd = os.open(path, flags | _NOFOLLOW | _CLOEXEC, mode)
    except OSError as e:
        if e.errno == errno.ELOOP or (e.errno == errno.EMLINK and path.is_symlink()):
            raise StorageError(f"{str(path)!r} is a symbolic link; pinclient never writes through "
                               "links. Remove it and try again.", path=str(path)) from None
        raise StorageError(f"cannot open {str(path)!r}: {e.strerror or e}", path=str(path)) from e
    import stat

    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise StorageError(f"{str(path)!r} is not a regular file; refusing to use it.", path=str(path))
    return fd


def _holder(path: Path) -> str:
    try:
        fd = open_nofollow(path, os.O_RDONLY)
    except StorageError:
        return ""
    try:
        text = os.read(fd, 64).decode("ascii", "replace").strip()
    finally:
        os.close(fd)
    return f" (pid {text})" if text.isdigit() else ""


def _same_file(fd: int, path: Path) -> bool:
    try:
        st = os.stat(path, follow_symlinks=False)
    except FileNotFoundError:
        return False
    mine = os.fstat(fd)
    return (st.st_dev, st.st_ino) == (mine.st_dev, mine.st_ino)


@contextmanager
def dest_lock(dest: Path, timeout: float) -> Iterator[None]:
    """Hold the advisory lock for ``dest`` for the duration of the ``with`` block.

    Raises:
        StorageError: another process held it for longer than ``timeout`` seconds, or the lock file
            cannot be created (read-only folder, symlink at ``DEST.lock``).
    """
    if fcntl is None:  # pragma: no cover - Windows
        yield
        return
    path = lock_path(dest)
    give_up = time.monotonic() + timeout
    while True:
        fd = open_nofollow(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            if time.monotonic() >= give_up:
                raise StorageError(
                    f"{str(dest)!r} is being fetched by another process{_holder(path)}; waited "
                    f"{timeout:g} s for its lock {str(path)!r}. Try again later, or raise "
                    "--lock-timeout.", path=str(dest)) from None
            time.sleep(_POLL)
            continue
        except BaseException:
            os.close(fd)
            raise
        if _same_file(fd, path):
            break
        os.close(fd)  # the holder removed the file we locked; lock the new one
    try:
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
    except OSError:
        pass  # the pid is only for the message of a waiting process
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            os.unlink(path)  # while still holding it: see the module docstring
        os.close(fd)
