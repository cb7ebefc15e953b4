"""The part file ``.DEST.pinclient-part`` and its sidecar ``.DEST.pinclient-part.json`` on disk:
the bytes of an unfinished download, and the only record of what they are; and :class:`StreamPart`,
the private part of a fetch to ``/dev/null`` or standard output (see :mod:`.dest`).

The part file is never mistaken for a verified file: it has its own name, only the sidecar says what
it holds, and it reaches DEST only through :meth:`PartFile.commit`, after the caller verified size and
hash; then it is fsynced, given DEST's mode, renamed over DEST and the folder fsynced (python-tuf's
``_persist_metadata`` pattern).

Only ever touch what pinclient made (see :mod:`.lock` for the names and the rules). The part is
created with ``O_EXCL``; right after, the sidecar records its inode, and a part left by an earlier
run is reused, truncated or removed only when the sidecar (itself a regular file of ours with
pinclient's marker) records that very inode. Anything else at those names is refused, never
touched. The sidecar's temporary file has a random name and is created with ``O_EXCL``.

Mode: the part is created 0666 minus the umask, so a new DEST gets the mode ``curl -o`` or ``cp``
would give it; an existing DEST keeps its permission bits (an updated executable stays executable;
set-user-ID and set-group-ID bits are not carried over to downloaded bytes).

Durability: the sidecar's ``received`` counts only fsynced bytes. It is updated at checkpoints every
:data:`CHECKPOINT` bytes and when a download stops, so a process killed mid-way loses at most that
much; a resumed download keeps no more than the sidecar vouches for.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import json
import logging
import os
import secrets
import shutil
import stat
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, BinaryIO

from .. import _paths
from .._deadline import remaining
from .._paths import fsync_dir, fsync_file, replace_file
from ..errors import StorageError, UsageError
from .dest import STDOUT, DestKind, dest_kind
from .lock import create_exclusive, not_ours, open_nofollow, owned, side_path
from .resume import PartInfo

__all__ = ["CHECKPOINT", "PartFile", "StreamPart", "fsync_dir", "part_paths"]

log = logging.getLogger("pinclient")

CHECKPOINT = 64 * 1024 * 1024  # bytes between fsync + sidecar updates
WRITE_BUFFER = 1024 * 1024  # bytes per read(2) when hashing a kept part back, or copying it out
WRITE_BACK = 8 * 1024 * 1024  # bytes between write-back hints (see PartFile._write_back)
_SIDECAR_MAX = 64 * 1024  # a larger sidecar is not ours
_GIVE_BACK = 64 * 1024  # on a full disk, bytes dropped from the part so that the sidecar fits
_MARKER = "pinclient part sidecar"  # the sidecar's "pinclient" field
_SIDECAR_VERSION = 2


def part_paths(dest: Path) -> tuple[Path, Path]:
    """``(.DEST.pinclient-part, .DEST.pinclient-part.json)``."""
    return side_path(dest, "part"), side_path(dest, "part.json")


def _storage_error(what: str, path: Path, e: OSError) -> StorageError:
    err = StorageError(f"cannot {what} {str(path)!r}: {e.strerror or e}", path=str(path))
    err.__cause__ = e
    return err


class PartFile:
    """The open part file of one fetch, held under the destination lock.

    Raises (every method): :class:`StorageError` for any file-system failure, and on construction
    for a part or sidecar that pinclient cannot prove it made.
    """

    def __init__(self, dest: Path) -> None:
        self.dest = dest
        self.path, self.sidecar = part_paths(dest)
        self.info: PartInfo | None = None  # what the sidecar on disk says, once written or read
        self._found: PartInfo | None = None  # what the sidecar of an earlier run said
        self._sidecar_ino: int | None = None  # the sidecar we wrote or proved ours
        self.committed = False
        fd = self._open()
        self.inode = os.fstat(fd).st_ino
        self.file: io.RawIOBase | io.BufferedRandom = _open_file(fd)
        self.written = 0  # body bytes in the file
        self._next_checkpoint = CHECKPOINT
        self._written_back = 0  # bytes handed to the kernel's write-back so far

    def _open(self) -> int:
        """Create the part, or open the one an earlier run left once its sidecar proves it ours."""
        fd = create_exclusive(self.path, 0o666)  # the umask applies: the mode a new DEST gets
        if fd is not None:
            try:
                self._claim_sidecar(os.fstat(fd).st_ino)
            except BaseException:
                self._remove(self.path, os.fstat(fd).st_ino)
                os.close(fd)
                raise
            return fd
        try:
            st = os.stat(self.path, follow_symlinks=False)
        except FileNotFoundError:
            raise StorageError(f"{str(self.path)!r} appeared and vanished while opening it; try again.",
                               path=str(self.path)) from None
        if stat.S_ISLNK(st.st_mode):
            raise not_ours(self.path, "a symbolic link")
        if not owned(st):
            raise not_ours(self.path, "not a regular file of this user with a single link")
        doc = self._read_sidecar()
        if doc is None or doc.get("inode") != st.st_ino:
            raise not_ours(self.path, f"{self.sidecar.name} does not record it")
        fd = open_nofollow(self.path, os.O_RDWR)
        if os.fstat(fd).st_ino != st.st_ino:
            os.close(fd)
            raise not_ours(self.path, "it changed while being opened")
        self._found = PartInfo.from_dict(doc.get("download"))
        return fd

    def _claim_sidecar(self, inode: int) -> None:
        """A new part's sidecar: its inode, nothing to resume yet. An old sidecar is replaced only
        when it is ours (its part is gone: a run killed between removing the two)."""
        if os.path.lexists(self.sidecar) and self._read_sidecar() is None:
            raise not_ours(self.sidecar, "no pinclient part sidecar")
        self.inode = inode
        self._write_sidecar(None)

    def _read_sidecar(self) -> dict[str, Any] | None:
        """The sidecar's document, when it is pinclient's (else None; a symlink raises)."""
        try:
            fd = open_nofollow(self.sidecar, os.O_RDONLY)
        except StorageError as e:
            if isinstance(e.__cause__, FileNotFoundError):
                return None
            raise
        try:
            st = os.fstat(fd)
            data = os.read(fd, _SIDECAR_MAX + 1) if owned(st) else b""
        except OSError as e:
            raise _storage_error("read", self.sidecar, e) from e
        finally:
            os.close(fd)
        try:
            doc = json.loads(data) if 0 < len(data) <= _SIDECAR_MAX else None
        except ValueError:
            return None
        if not (isinstance(doc, dict) and doc.get("pinclient") == _MARKER
                and doc.get("version") == _SIDECAR_VERSION):
            return None
        self._sidecar_ino = st.st_ino
        return doc

    # -- reading what an earlier run left

    def size_on_disk(self) -> int:
        return os.fstat(self.file.fileno()).st_size

    def read_sidecar(self) -> PartInfo | None:
        """What the earlier run's sidecar says about the download in the part (None if nothing)."""
        return self._found

    # -- writing

    def start(self, offset: int) -> Any:
        """Keep the first ``offset`` bytes, drop the rest, and return a SHA-256 of the kept bytes
        (read back from disk, so the final hash covers the whole file)."""
        digest = hashlib.sha256()
        try:
            self.file.flush()
            self.file.seek(0)
            if offset:
                buf = bytearray(WRITE_BUFFER)
                view = memoryview(buf)
                left = offset
                while left:
                    n = self.file.readinto(view[: min(left, len(buf))])
                    if not n:
                        raise OSError(errno.EIO, f"the part file ended {left} bytes early")
                    digest.update(view[:n])
                    left -= n
            self.file.truncate(offset)
            self.file.seek(offset)
        except OSError as e:
            raise _storage_error("prepare", self.path, e) from e
        self.written = offset
        self._next_checkpoint = offset + CHECKPOINT
        self._written_back = offset
        return digest

    def write(self, chunk: bytes | memoryview) -> None:
        """Append body bytes; every :data:`CHECKPOINT` bytes, make them durable and say so.

        The file is unbuffered: the pipeline's buffers are already 1 MiB, and a buffered writer
        would copy each once more (issue 18). So a short write(2) is continued here, never lost.
        """
        view = memoryview(chunk)
        write = self.file.write
        while view:
            try:
                done = write(view)
            except OSError as e:
                raise _storage_error("write", self.path, e) from e
            if done is None:  # only a non-blocking file returns None; a part file never is one
                raise _storage_error("write", self.path, OSError(errno.EAGAIN, "write would block"))
            self.written += done  # what reached the file: a resume may keep it (ENOSPC next)
            view = view[done:]
        if self.written >= self._written_back + WRITE_BACK:
            self._write_back()
        if self.written >= self._next_checkpoint:
            self._next_checkpoint = self.written + CHECKPOINT
            if self.info is not None:
                self.checkpoint()

    def _write_back(self) -> None:
        """Have the kernel start writing the new bytes to disk now, without waiting for it.

        Otherwise a large download piles up as dirty pages and the checkpoint and commit fsyncs
        write all of it while the download waits; started early, the disk works while the network
        does (1 GiB onto this project's VM disk: 3.1 s -> 2.1 s; no change on tmpfs). On Linux,
        POSIX_FADV_DONTNEED starts write-back of dirty pages and drops them once clean, which also
        keeps a big download from evicting the rest of the page cache. Only a hint: its failure is
        ignored, and a platform without it skips it.
        """
        try:
            self.file.flush()
        except OSError as e:
            raise _storage_error("write", self.path, e) from e
        advise = getattr(os, "posix_fadvise", None)
        if advise is not None:
            with contextlib.suppress(OSError):
                advise(self.file.fileno(), self._written_back, self.written - self._written_back,
                       os.POSIX_FADV_DONTNEED)
        self._written_back = self.written

    def record(self, info: PartInfo) -> None:
        """Write the sidecar atomically: a temporary file, fsynced, renamed over the old one."""
        self._write_sidecar(info)
        self.info = info

    def _write_sidecar(self, info: PartInfo | None) -> None:
        doc = {"version": _SIDECAR_VERSION, "pinclient": _MARKER, "inode": self.inode,
               "download": None if info is None else info.to_dict()}
        tmp = self.sidecar.with_name(f"{self.sidecar.name}.{secrets.token_hex(4)}.tmp")
        fd = create_exclusive(tmp)
        if fd is None:
            raise not_ours(tmp, "a random name that was taken")
        ino = os.fstat(fd).st_ino
        try:
            try:
                os.write(fd, json.dumps(doc, indent=1).encode())
                fsync_file(fd)
            finally:
                os.close(fd)
            replace_file(tmp, self.sidecar)
        except OSError as e:
            self._remove(tmp, ino)
            raise _storage_error("write", self.sidecar, e) from e
        self._sidecar_ino = ino

    def checkpoint(self) -> None:
        """fsync the bytes so far, then record them in the sidecar."""
        assert self.info is not None
        try:
            self.file.flush()
            fsync_file(self.file.fileno())
        except OSError as e:
            raise _storage_error("write", self.path, e) from e
        self.record(_with_bytes(self.info, self.written))

    # -- ending

    def commit(self) -> None:
        """Make the verified part DEST: fsync it, give it DEST's mode, rename it over DEST, drop the
        sidecar, fsync the folder. Until the rename, DEST keeps its old bytes. On Windows a rename
        refused because another process has DEST open is retried for at most
        :data:`pinclient._paths.REPLACE_PATIENCE` s and never past the fetch's deadline.

        Raises:
            StorageError: any step failed (a folder or device put at DEST meanwhile, a file system
                that refuses to fsync a folder, …).
        """
        try:
            self.file.flush()
            fd = self.file.fileno()
            fsync_file(fd)
            try:
                old = os.stat(self.dest)
            except FileNotFoundError:
                old = None
            if old is not None and not stat.S_ISREG(old.st_mode):
                dest_kind(self.dest)  # raises UsageError for a folder, device, FIFO or socket
            if old is not None and not _paths.WINDOWS:  # Windows keeps only a read-only flag
                os.fchmod(fd, stat.S_IMODE(old.st_mode) & 0o777)
            if _paths.WINDOWS:  # Windows refuses to rename a file that is open, by us too
                self.file.close()
            left = remaining()  # the fetch's deadline (pinclient._deadline), if it has one
            replace_file(self.path, self.dest, until=None if left is None else time.monotonic() + left)
            self.committed = True
            self._remove(self.sidecar, self._sidecar_ino)
            fsync_dir(self.dest.parent)
        except (OSError, UsageError) as e:
            why = e.strerror or e if isinstance(e, OSError) else e.message
            if isinstance(e, PermissionError) and _paths.WINDOWS and not self.committed:
                why = f"{why}; another program (an antivirus scanner, an open editor) may have it open"
            if self.committed:  # the rename happened: DEST is the verified file, maybe not durable
                raise StorageError(f"saved the verified file at {str(self.dest)!r}, but could not "
                                   f"fsync its folder ({why}); it may not survive a power loss.",
                                   path=str(self.dest)) from e
            raise StorageError(f"cannot move the verified file into place at {str(self.dest)!r}: "
                               f"{why}", path=str(self.dest)) from e
        finally:
            if self.committed:  # else the part stays open: stop() may keep it to resume
                with contextlib.suppress(OSError):
                    self.file.close()

    def stop(self, *, keep: bool) -> bool:
        """Close after a failure. With ``keep`` and a sidecar, leave a resumable part (its bytes
        fsynced and recorded); otherwise remove both files. Never raises; returns whether kept."""
        if self.committed:
            return False  # the part is DEST now; nothing of it is left to keep or remove
        kept = False
        if keep and self.info is not None and self.written > 0:
            kept = self._save_progress()
        with contextlib.suppress(OSError):  # bytes that failed to flush are simply not recorded
            self.file.close()
        if not kept:
            self.discard()
        return kept

    def discard_sidecar(self) -> None:
        """Forget what the sidecar says (the new body has no validator); it still vouches for the part."""
        self.info = None
        try:
            self._write_sidecar(None)
        except StorageError as e:
            log.warning("%s", e.message)

    def discard(self) -> None:
        if not self.file.closed:
            with contextlib.suppress(OSError):
                self.file.close()
        self._remove(self.path, self.inode)
        self._remove(self.sidecar, self._sidecar_ino)

    @staticmethod
    def _remove(path: Path, inode: int | None) -> None:
        """Unlink ``path`` only if it is still the file pinclient made (that inode, ours)."""
        try:
            st = os.stat(path, follow_symlinks=False)
        except OSError:
            return
        if inode is None or st.st_ino != inode or not owned(st):
            return  # not ours: left for a human to look at
        try:
            os.unlink(path)
        except OSError as e:
            log.warning("cannot remove %s: %s", path, e.strerror or e)

    def _save_progress(self) -> bool:
        assert self.info is not None
        if self.file.closed:
            return self.info.received > 0
        with contextlib.suppress(OSError):  # ENOSPC: what reached the file is still a correct prefix
            self.file.flush()
        try:
            fd = self.file.fileno()
            fsync_file(fd)
            durable = min(self.written, os.fstat(fd).st_size)
        except OSError as e:
            log.warning("cannot save the partial download %s: %s", self.path, e.strerror or e)
            return self.info.received > 0
        for attempt in range(2):
            try:
                self.record(_with_bytes(self.info, durable))
                fsync_dir(self.dest.parent)
                return durable > 0
            except (StorageError, OSError) as e:
                cause = e.__cause__ if isinstance(e, StorageError) else e
                if attempt or not (isinstance(cause, OSError) and cause.errno == errno.ENOSPC):
                    break
                # A full disk has no room for the sidecar: give back the part's tail and try again.
                durable = max(0, durable - _GIVE_BACK) // _GIVE_BACK * _GIVE_BACK
                try:
                    os.ftruncate(fd, durable)
                    fsync_file(fd)
                except OSError:
                    break
        # The sidecar on disk still vouches for its own, smaller, count of bytes.
        return self.info.received > 0


def _open_file(fd: int) -> io.RawIOBase | io.BufferedRandom:
    # One seam for the tests' full-disk and short-write simulations. Unbuffered: each write(2)
    # carries a whole pipeline buffer (1 MiB) straight from it.
    return io.FileIO(fd, "r+")


def _with_bytes(info: PartInfo, n: int) -> PartInfo:
    import dataclasses

    return dataclasses.replace(info, received=n)


class StreamPart(PartFile):
    """The part of a fetch to ``/dev/null`` or standard output: a private temporary file (in a
    0700 folder of its own), streamed to the sink only by :meth:`commit`, after the caller verified
    size, hash and signature. Never resumed, never locked; nothing is left behind."""

    def __init__(self, kind: DestKind) -> None:
        self.kind = kind
        self.dest = STDOUT if kind == "stdout" else Path(os.devnull)
        self._folder = Path(tempfile.mkdtemp(prefix="pinclient-"))
        self.path = self._folder / "part"
        self.sidecar = self._folder / "unused"
        self.info = None
        self._found = None
        self._sidecar_ino = None
        self.committed = False
        fd = open_nofollow(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        self.inode = os.fstat(fd).st_ino
        self.file = _open_file(fd)
        self.written = 0
        self._next_checkpoint = CHECKPOINT
        self._written_back = 0

    def _write_sidecar(self, info: PartInfo | None) -> None:
        pass  # nothing to resume: the part is private to this call

    def commit(self) -> None:
        """Copy the verified bytes to the sink, then remove the temporary file.

        Raises:
            StorageError: the temporary file cannot be read or the sink written.
        """
        try:
            self.file.flush()
            self.file.seek(0)
            if self.kind == "stdout":
                sys.stdout.flush()
                _copy(self.file, sys.stdout.buffer)
                sys.stdout.buffer.flush()
            # /dev/null: writing there changes nothing, so the verified bytes are simply dropped.
            self.committed = True
        except (OSError, ValueError) as e:
            raise StorageError(f"cannot write the verified file to {self.dest}: {e}",
                               path=str(self.dest)) from e
        finally:
            self.discard()

    def stop(self, *, keep: bool) -> bool:
        self.discard()
        return False

    def discard(self) -> None:
        if not self.file.closed:
            with contextlib.suppress(OSError):
                self.file.close()
        shutil.rmtree(self._folder, ignore_errors=True)


def _copy(src: io.RawIOBase | io.BufferedRandom, dst: BinaryIO) -> None:
    buf = bytearray(WRITE_BUFFER)
    while n := src.readinto(buf):
        dst.write(memoryview(buf)[:n])
