"""Windows and macOS code paths, run on this Linux machine by simulation (issue 16 §1).

What is simulated, and how honestly:

- *Windows file semantics* (:func:`windows`): ``pinclient._paths.WINDOWS`` is flipped (the one
  switch the Windows branches read; ``os.name`` itself cannot be flipped, pathlib would then build
  ``WindowsPath`` objects), and ``os`` is made to behave as Windows does for the calls pinclient
  makes: ``os.open`` on a folder raises ``PermissionError``; ``os.replace`` and ``os.unlink`` raise
  ``PermissionError`` (a sharing violation) while any open file descriptor of this process refers
  to the source or the target (read from ``/proc/self/fd``: CPython opens files without
  ``FILE_SHARE_DELETE`` there, so an open file can be neither renamed nor removed); there is no
  ``O_NOFOLLOW``, no ``flock`` and no ``os.geteuid``, and ``msvcrt.locking`` is :class:`FakeMsvcrt`
  (mandatory byte-range locks held per file descriptor, ``EACCES`` for ``LK_NBLCK`` on a byte
  another descriptor holds, released on unlock or close).
- *macOS / Windows folders*: ``sys.platform`` and the environment are monkeypatched.
- *Windows consoles*: the progress bar's output is read from a fake terminal stream.

What is not simulated: the real Win32 and macOS behaviour itself (CRT text mode, NTFS journaling,
junctions, F_FULLFSYNC). ``.github/workflows/ci.yml`` runs the whole suite on windows-latest and
macos-latest for that; these tests are skipped where ``/proc/self/fd`` is missing.
"""

from __future__ import annotations

import ast
import errno
import io
import os
import stat
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pinclient import StorageError, fetch_update
from pinclient import _paths as paths
from pinclient._cli import progress
from pinclient._cli.main import fetch_main
from pinclient._demo import Response
from pinclient._download import lock
from pinclient._download.lock import dest_lock, lock_path
from pinclient.config import PinConfig

from .conftest import ServeHTTPS, posix_only

REPO = Path(__file__).resolve().parent.parent
PROC_FD = Path("/proc/self/fd")
needs_proc = pytest.mark.skipif(not PROC_FD.is_dir(), reason="simulates Windows through Linux's /proc/self/fd")


def _symlink(link: Path, target: Path) -> None:
    """``link.symlink_to(target)``, or skip where links cannot be made (Windows without the
    symlink privilege or developer mode)."""
    try:
        link.symlink_to(target)
    except (OSError, NotImplementedError) as e:
        pytest.skip(f"cannot make a symbolic link here: {e}")


def _open_paths() -> set[str]:
    """The files this process has open, by path (what Windows' sharing checks see)."""
    out = set()
    for entry in PROC_FD.iterdir():
        try:
            out.add(os.readlink(entry))
        except OSError:
            continue
    return out


class FakeMsvcrt:
    """``msvcrt.locking`` as Windows does it: a lock on bytes [pos, pos + n) of the file, held by
    the descriptor that took it; another descriptor, in this process or another, cannot take it."""

    LK_UNLCK, LK_LOCK, LK_NBLCK, LK_RLCK, LK_NBRLCK = 0, 1, 2, 3, 4

    def __init__(self) -> None:
        self.held: dict[tuple[int, int, int], int] = {}  # (dev, ino, offset) -> fd
        self.calls: list[tuple[int, int, int]] = []  # (mode, offset, nbytes)

    def _key(self, fd: int) -> tuple[int, int, int]:
        st = os.fstat(fd)
        return st.st_dev, st.st_ino, os.lseek(fd, 0, os.SEEK_CUR)

    def locking(self, fd: int, mode: int, nbytes: int) -> None:
        assert nbytes == 1
        key = self._key(fd)
        self.calls.append((mode, key[2], nbytes))
        if mode == self.LK_UNLCK:
            if self.held.get(key) != fd:
                raise PermissionError(errno.EACCES, "Permission denied")
            del self.held[key]
            return
        assert mode == self.LK_NBLCK, "pinclient waits on its own, bounded by --lock-timeout"
        if key in self.held:
            raise PermissionError(errno.EACCES, "Permission denied")  # the CRT's locking violation
        self.held[key] = fd

    def closed(self, fd: int) -> None:
        for key in [k for k, v in self.held.items() if v == fd]:
            del self.held[key]


@pytest.fixture
def windows(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[FakeMsvcrt]:
    """Windows' file semantics for what pinclient does inside ``tmp_path`` (see the module
    docstring); the test servers' own files elsewhere keep Linux's."""
    if not PROC_FD.is_dir():
        pytest.skip("simulates Windows through Linux's /proc/self/fd")
    fake = FakeMsvcrt()
    real_open, real_replace, real_unlink, real_close = os.open, os.replace, os.unlink, os.close

    def inside(path: Any, dir_fd: Any = None) -> bool:
        return dir_fd is None and os.path.abspath(path).startswith(str(tmp_path))

    def win_open(path: Any, flags: int, mode: int = 0o777, *, dir_fd: Any = None) -> int:
        if inside(path, dir_fd) and os.path.isdir(path):
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_open(path, flags, mode, dir_fd=dir_fd)

    def busy(*names: Any) -> bool:
        held = _open_paths()
        return any(os.path.abspath(n) in held for n in names)

    def win_replace(src: Any, dst: Any, **kw: Any) -> None:
        if inside(dst) and busy(src, dst):
            raise PermissionError(errno.EACCES, "The process cannot access the file because it is "
                                  "being used by another process", str(dst))
        real_replace(src, dst, **kw)

    def win_unlink(path: Any, **kw: Any) -> None:
        if inside(path, kw.get("dir_fd")) and busy(path):
            raise PermissionError(errno.EACCES, "The process cannot access the file because it is "
                                  "being used by another process", str(path))
        real_unlink(path, **kw)

    def win_close(fd: int) -> None:
        fake.closed(fd)
        real_close(fd)

    monkeypatch.setattr(paths, "WINDOWS", True)
    monkeypatch.setattr(os, "open", win_open)
    monkeypatch.setattr(os, "replace", win_replace)
    monkeypatch.setattr(os, "unlink", win_unlink)
    monkeypatch.setattr(os, "close", win_close)
    monkeypatch.delattr(os, "geteuid")
    monkeypatch.setattr(paths, "fcntl", None)
    monkeypatch.setattr(paths, "msvcrt", fake)
    monkeypatch.setattr(lock, "_NOFOLLOW", 0)
    monkeypatch.setattr(lock, "_NONBLOCK", 0)
    yield fake


# --------------------------------------------------------------------------- saving DEST


def test_windows_fetch_replaces_dest_without_a_folder_fsync_and_exits_0(
        windows: FakeMsvcrt, root_pinned_config: PinConfig, tmp_path: Path, https_server: ServeHTTPS,
        capsys: pytest.CaptureFixture[str]) -> None:
    # Windows refuses os.open() on a folder; 0.1.0 replaced DEST and then failed (exit 7) there,
    # and it renamed the part while its own handle was open, which Windows refuses too.
    dest = tmp_path / "u.bin"
    dest.write_bytes(b"old")
    with https_server({"/u.bin": Response(200, b"new bytes", headers={"ETag": '"v1"'})}) as s:
        code = fetch_main([s.url("/u.bin"), "-o", str(dest), "--pins", str(root_pinned_config.path), "-q"])
    err = capsys.readouterr().err
    assert code == 0, err
    assert dest.read_bytes() == b"new bytes"
    assert "Traceback" not in err
    # Windows cannot remove the lock file while it is open: it goes right after it is closed.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cfg", "u.bin"]
    assert windows.held == {}, "the lock byte was released"


@posix_only("a folder can be opened and fsynced")
def test_windows_folder_fsync_is_skipped_posix_still_fsyncs(tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    opened: list[int] = []
    real_open = os.open

    def spy(path: Any, flags: int, *a: Any, **kw: Any) -> int:
        opened.append(flags)
        return real_open(path, flags, *a, **kw)

    monkeypatch.setattr(os, "open", spy)
    monkeypatch.setattr(paths, "WINDOWS", False)
    paths.fsync_dir(tmp_path)
    assert len(opened) == 1, "POSIX: the folder is opened and fsynced"
    monkeypatch.setattr(paths, "WINDOWS", True)
    paths.fsync_dir(tmp_path)
    assert len(opened) == 1, "Windows: no folder fsync to call"


class FakeDarwinFcntl:
    """macOS's fcntl module as fsync_file sees it: F_FULLFSYNC (51 on macOS), the rest real."""

    F_FULLFSYNC = 51

    def __init__(self, refuse: bool = False) -> None:
        self.refuse = refuse
        self.full: list[int] = []

    def __getattr__(self, name: str) -> Any:  # flock and the rest: the real module's
        import fcntl

        return getattr(fcntl, name)

    def fcntl(self, fd: int, cmd: int) -> int:
        assert cmd == self.F_FULLFSYNC
        if self.refuse:
            raise OSError(errno.ENOTSUP, "Operation not supported")
        os.fstat(fd)  # a real descriptor
        self.full.append(fd)
        return 0


@posix_only("fcntl: the fake adds macOS's F_FULLFSYNC to the real module")
@pytest.mark.parametrize(("platform", "refuse", "full", "plain"), [
    ("darwin", False, 1, 0), ("darwin", True, 0, 1), ("linux", False, 0, 1), ("win32", False, 0, 1)])
def test_macos_fsync_asks_the_drive_to_flush_and_falls_back_where_refused(
        platform: str, refuse: bool, full: int, plain: int, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeDarwinFcntl(refuse)
    plain_calls: list[int] = []
    real_fsync = os.fsync
    monkeypatch.setattr(sys, "platform", platform)
    monkeypatch.setattr(paths, "fcntl", fake)
    monkeypatch.setattr(os, "fsync", lambda fd: (plain_calls.append(fd), real_fsync(fd))[1])
    with (tmp_path / "f").open("wb") as fh:
        paths.fsync_file(fh.fileno())
    assert (len(fake.full), len(plain_calls)) == (full, plain)


@posix_only("fcntl: the fake adds macOS's F_FULLFSYNC to the real module")
def test_macos_fetch_makes_the_part_the_sidecar_and_the_folder_durable_with_f_fullfsync(
        root_pinned_config: PinConfig, tmp_path: Path, https_server: ServeHTTPS,
        monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeDarwinFcntl()
    plain: list[int] = []
    real_fsync = os.fsync
    monkeypatch.setattr(sys, "platform", "darwin")
    monkeypatch.setattr(paths, "fcntl", fake)
    monkeypatch.setattr(os, "fsync", lambda fd: (plain.append(fd), real_fsync(fd))[1])
    dest = tmp_path / "u.bin"
    with https_server({"/u.bin": Response(200, b"new", headers={"ETag": '"v1"'})}) as s:
        fetch_update(s.url("/u.bin"), dest, config=root_pinned_config)
    assert dest.read_bytes() == b"new"
    assert len(fake.full) >= 3, "the sidecar, the part before its rename, and the folder"
    assert plain == [], "no plain fsync(2) on macOS where F_FULLFSYNC works"


def _hold_open(path: Path, seconds: float) -> threading.Thread:
    """Another program (a virus scanner) with ``path`` open for ``seconds``."""
    fh = path.open("rb")
    timer = threading.Timer(seconds, fh.close)
    timer.start()
    return timer


@needs_proc
def test_windows_replace_waits_out_a_scanner_holding_dest(
        windows: FakeMsvcrt, root_pinned_config: PinConfig, tmp_path: Path,
        https_server: ServeHTTPS) -> None:
    dest = tmp_path / "u.bin"
    dest.write_bytes(b"old")
    with https_server({"/u.bin": b"new"}) as s:
        scanner = _hold_open(dest, 0.4)
        began = time.monotonic()
        fetch_update(s.url("/u.bin"), dest, config=root_pinned_config)
        scanner.join()
    assert dest.read_bytes() == b"new"
    assert time.monotonic() - began >= 0.3, "it waited for the scanner"


@needs_proc
def test_windows_replace_gives_up_at_the_deadline_and_keeps_dest(
        windows: FakeMsvcrt, root_pinned_config: PinConfig, tmp_path: Path,
        https_server: ServeHTTPS) -> None:
    dest = tmp_path / "u.bin"
    dest.write_bytes(b"old")
    with https_server({"/u.bin": b"new"}) as s, dest.open("rb"):  # held for good
        began = time.monotonic()
        with pytest.raises(StorageError, match="another program") as info:
            fetch_update(s.url("/u.bin"), dest, config=root_pinned_config, deadline=0.8, retries=0)
        spent = time.monotonic() - began
    assert info.value.exit_code == 7
    assert spent < 0.8 + 0.5, f"the retries stopped at the deadline ({spent:.2f} s)"
    assert dest.read_bytes() == b"old"


def test_replace_retry_is_bounded_and_windows_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src, dst = tmp_path / "a", tmp_path / "b"
    src.write_bytes(b"a")
    tries: list[float] = []

    def refuse(a: Any, b: Any) -> None:
        tries.append(time.monotonic())
        raise PermissionError(errno.EACCES, "Access is denied")

    monkeypatch.setattr(os, "replace", refuse)
    monkeypatch.setattr(paths, "WINDOWS", False)
    with pytest.raises(PermissionError):
        paths.replace_file(src, dst)
    assert len(tries) == 1, "POSIX: rename(2)'s EACCES is the folder's permissions; no waiting"
    monkeypatch.setattr(paths, "WINDOWS", True)
    tries.clear()
    began = time.monotonic()
    with pytest.raises(PermissionError):
        paths.replace_file(src, dst)
    assert paths.REPLACE_PATIENCE - 0.1 <= time.monotonic() - began <= paths.REPLACE_PATIENCE + 0.3
    assert len(tries) > 5
    tries.clear()
    began = time.monotonic()
    with pytest.raises(PermissionError):
        paths.replace_file(src, dst, until=time.monotonic() + 0.3)
    assert time.monotonic() - began < 0.5, "never past the caller's deadline"


# --------------------------------------------------------------------------- the lock


def test_windows_lock_with_msvcrt_excludes_a_second_fetch(windows: FakeMsvcrt, tmp_path: Path) -> None:
    dest = tmp_path / "u.bin"
    with dest_lock(dest, 0):
        assert lock_path(dest).read_text() == f"pinclient lock\n{os.getpid()}"
        with pytest.raises(StorageError, match=rf"another process \(pid {os.getpid()}\)") as info:
            with dest_lock(dest, 0.2):
                pass
        assert info.value.exit_code == 7
    # The locked byte lies past the marker and pid, so a waiter can still read who holds it.
    locked = {offset for mode, offset, _ in windows.calls if mode == FakeMsvcrt.LK_NBLCK}
    assert locked == {paths.LOCK_BYTE}
    unlocked = [offset for mode, offset, _ in windows.calls if mode == FakeMsvcrt.LK_UNLCK]
    assert unlocked == [paths.LOCK_BYTE], "released explicitly: Windows frees a closed file's locks late"
    assert len(lock.LOCK_MARKER) + 64 < paths.LOCK_BYTE
    assert windows.held == {}
    with dest_lock(dest, 0):  # released: the next one takes it at once
        pass


def test_windows_lock_waiter_gets_it_when_the_holder_lets_go(windows: FakeMsvcrt, tmp_path: Path) -> None:
    dest = tmp_path / "u.bin"
    got = threading.Event()

    def wait() -> None:
        with dest_lock(dest, 10):
            got.set()

    with dest_lock(dest, 0):
        waiter = threading.Thread(target=wait)
        waiter.start()
        time.sleep(0.3)
        assert not got.is_set(), "the waiter waits while the lock is held"
    waiter.join(10)
    assert got.is_set()
    assert not lock_path(dest).exists(), "removed at the last holder's release"


def test_windows_lock_release_never_removes_a_file_put_at_its_name_after_closing(
        windows: FakeMsvcrt, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    dest = tmp_path / "u.bin"
    path = lock_path(dest)
    closing = os.close  # the windows fixture's close (releases fake locks)
    planted: list[bool] = []

    def close_then_plant(fd: int) -> None:
        ours = not planted and os.path.lexists(path) and os.path.samestat(os.fstat(fd), os.lstat(path))
        closing(fd)
        if ours:  # the instant the holder let go, someone put their own file at the name
            planted.append(True)
            os.unlink(path)
            path.write_bytes(b"someone else's file")

    with dest_lock(dest, 0):
        monkeypatch.setattr(os, "close", close_then_plant)
    assert planted
    assert path.read_bytes() == b"someone else's file"


@pytest.mark.parametrize("how", ["stat and fstat disagree", "the lock file keeps vanishing"])
def test_a_lock_file_that_never_stays_put_fails_at_the_lock_timeout_instead_of_spinning(
        how: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A platform whose stat and fstat report a file differently (st_ino widths), or a name that
    # something keeps removing: dest_lock starts over each time, but not past its timeout.
    if how == "stat and fstat disagree":
        monkeypatch.setattr(lock, "_same_file", lambda fd, path: False)
    else:
        monkeypatch.setattr(lock, "_open_lock", lambda path: None)
    dest = tmp_path / "u.bin"
    outcome: list[BaseException | None] = []

    def run() -> None:
        try:
            with dest_lock(dest, 0.3):
                outcome.append(None)
        except BaseException as e:  # handed to the test thread
            outcome.append(e)

    began = time.monotonic()
    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(10)
    assert not worker.is_alive(), "it spun past its lock timeout"
    assert time.monotonic() - began < 2
    assert len(outcome) == 1
    assert isinstance(outcome[0], StorageError)
    assert "kept changing" in outcome[0].message


def test_a_platform_without_any_file_lock_refuses_instead_of_fetching_unlocked(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(paths, "fcntl", None)
    monkeypatch.setattr(paths, "msvcrt", None)
    dest = tmp_path / "u.bin"
    with pytest.raises(StorageError, match="neither flock nor msvcrt") as info:
        with dest_lock(dest, 0):
            pytest.fail("ran without a lock")
    assert info.value.exit_code == 7


@pytest.mark.parametrize("side", ["lock", "part", "part.json"])
def test_without_o_nofollow_a_symlinked_side_file_is_refused(
        side: str, root_pinned_config: PinConfig, tmp_path: Path, https_server: ServeHTTPS,
        monkeypatch: pytest.MonkeyPatch) -> None:
    # Windows has no O_NOFOLLOW: open_nofollow/create_exclusive look with lstat before and after.
    monkeypatch.setattr(lock, "_NOFOLLOW", 0)
    dest = tmp_path / "u.bin"
    victim = tmp_path / "victim"
    victim.write_bytes(b"pinclient lock\nsomeone else's file")
    link = dest.with_name(f".u.bin.pinclient-{side}")
    _symlink(link, victim)
    errors: list[BaseException] = []

    def run() -> None:
        try:
            with https_server({"/u.bin": b"new"}) as s:
                fetch_update(s.url("/u.bin"), dest, config=root_pinned_config, lock_timeout=0)
        except BaseException as e:
            errors.append(e)

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(10)
    assert not worker.is_alive(), "no endless loop on a link it cannot lock"
    assert len(errors) == 1
    assert isinstance(errors[0], StorageError), errors
    assert victim.read_bytes() == b"pinclient lock\nsomeone else's file"
    assert link.is_symlink()
    assert not dest.exists()


def test_without_o_nofollow_a_lock_file_swapped_for_a_symlink_while_opening_is_refused(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The race the second look closes: the name is a marked lock file when looked at, and a link
    # to someone else's file by the time os.open (following links, as on Windows) opens it.
    monkeypatch.setattr(lock, "_NOFOLLOW", 0)
    dest = tmp_path / "u.bin"
    path = lock_path(dest)
    path.write_bytes(lock.LOCK_MARKER + b"999999")
    victim = tmp_path / "victim"
    victim.write_bytes(b"pinclient lock\nsomeone else's file")
    real_open = os.open

    def swap_then_open(name: Any, flags: int, *a: Any, **kw: Any) -> int:
        if Path(name) == path and not flags & os.O_CREAT and not path.is_symlink():
            path.unlink()
            _symlink(path, victim)
        return real_open(name, flags, *a, **kw)

    monkeypatch.setattr(os, "open", swap_then_open)
    with pytest.raises(StorageError, match="symbolic link"):
        with dest_lock(dest, 0):
            pytest.fail("locked through a link")
    assert victim.read_bytes() == b"pinclient lock\nsomeone else's file"
    assert path.is_symlink()


def test_without_o_nofollow_open_nofollow_refuses_a_link_swapped_in_while_opening(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lock, "_NOFOLLOW", 0)
    path = tmp_path / ".u.bin.pinclient-part.json"
    path.write_bytes(b"{}")
    victim = tmp_path / "victim"
    victim.write_bytes(b"someone else's file")
    real_open = os.open

    def swap_then_open(name: Any, flags: int, *a: Any, **kw: Any) -> int:
        if Path(name) == path and not path.is_symlink():
            path.unlink()
            _symlink(path, victim)
        return real_open(name, flags, *a, **kw)

    monkeypatch.setattr(os, "open", swap_then_open)
    with pytest.raises(StorageError, match="symbolic link"):
        lock.open_nofollow(path, os.O_RDWR)
    assert victim.read_bytes() == b"someone else's file"


# --------------------------------------------------------------------------- names from URLs


@pytest.mark.parametrize(("segment", "why"), [
    ("C%3Aupdate.exe", "':'"),  # drive C's current folder, outside the one the user is in
    ("update.exe%3Aevil", "':'"),  # an alternate data stream of update.exe
    ("CON", "device"), ("nul.txt", "device"), ("COM1.bin", "device"), ("LPT%C2%B9", "device"),
    ("update.exe.", "trailing dot"), ("a%7Cb", "'|'"), ("a%3Fb%2A", "'*?'"), ("bell%07", "'\\x07'"),
])
def test_windows_a_url_name_that_is_no_plain_file_name_is_a_usage_error_before_connecting(
        segment: str, why: str, root_pinned_config: PinConfig, tmp_path: Path,
        https_server: ServeHTTPS, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(paths, "WINDOWS", True)
    monkeypatch.chdir(tmp_path)
    with https_server({f"/{segment}": b"x"}) as s:
        code = fetch_main([s.url(f"/{segment}"), "--pins", str(root_pinned_config.path), "-q"])
        assert s.requests == [], "refused before connecting"
    err = capsys.readouterr().err
    assert code == 2, err
    assert why in err
    assert "pass -o DEST" in err
    assert "Traceback" not in err
    assert "\x07" not in err, "the name is escaped"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cfg"]


@posix_only("a ':' in a file name")
def test_url_names_windows_refuses_are_kept_elsewhere_and_plain_names_work_on_windows(
        root_pinned_config: PinConfig, tmp_path: Path, https_server: ServeHTTPS,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(paths, "WINDOWS", False)
    with https_server({"/a%3Ab": b"posix", "/app-2.1.tar.gz": b"win"}) as s:
        assert fetch_main([s.url("/a%3Ab"), "--pins", str(root_pinned_config.path), "-q"]) == 0
        monkeypatch.setattr(paths, "WINDOWS", True)
        assert fetch_main([s.url("/app-2.1.tar.gz"), "--pins", str(root_pinned_config.path), "-q"]) == 0
    assert (tmp_path / "a:b").read_bytes() == b"posix"
    assert (tmp_path / "app-2.1.tar.gz").read_bytes() == b"win"


# --------------------------------------------------------------------------- text mode


# Modules exempt from the rule below; empty: the state-folder stores (_known.py, _pinstore.py) follow it
# too since they lock and replace through _paths like the download side.
PENDING_BINARY: set[str] = set()


def test_every_os_open_of_a_data_file_asks_for_binary_mode() -> None:
    """Windows opens in text mode unless told O_BINARY: os.write turns b"\\n" into b"\\r\\n" and a
    read stops at a 0x1A byte. Every ``os.open`` in pinclient must pass O_BINARY (a folder and
    os.devnull excepted: no bytes go through them)."""
    missing = []
    for path in sorted((REPO / "pinclient").rglob("*.py")):
        if path.name in PENDING_BINARY:
            continue
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Call) and ast.unparse(node.func) == "os.open"):
                continue
            first, flags = ast.unparse(node.args[0]), ast.unparse(node.args[1])
            if "BINARY" in flags or "O_DIRECTORY" in flags or first == "os.devnull":
                continue
            missing.append(f"{path.relative_to(REPO)}:{node.lineno}: os.open({first}, {flags})")
    assert missing == []


# --------------------------------------------------------------------------- folders


@pytest.mark.parametrize(("platform", "env", "cache", "state"), [
    ("win32", {"LOCALAPPDATA": r"C:\Users\u\AppData\Local"},
     r"C:\Users\u\AppData\Local/pinclient/Cache", r"C:\Users\u\AppData\Local/pinclient/State"),
    ("darwin", {}, "HOME/Library/Caches/pinclient", "HOME/Library/Application Support/pinclient"),
    ("linux", {}, "HOME/.cache/pinclient", "HOME/.local/state/pinclient"),
    ("linux", {"XDG_CACHE_HOME": "/x/c", "XDG_STATE_HOME": "/x/s"}, "/x/c/pinclient", "/x/s/pinclient"),
    ("linux", {"XDG_CACHE_HOME": "rel", "XDG_STATE_HOME": "rel"},
     "HOME/.cache/pinclient", "HOME/.local/state/pinclient"),
])
@posix_only("PosixPath spellings, and Path.home() read from $HOME")
def test_cache_and_state_folders_follow_each_platform(
        platform: str, env: dict[str, str], cache: str, state: str, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "platform", platform)
    monkeypatch.setenv("HOME", str(tmp_path))
    for name in ("LOCALAPPDATA", "XDG_CACHE_HOME", "XDG_STATE_HOME"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    home = str(tmp_path)
    assert str(paths.user_cache_dir()) == cache.replace("HOME", home)
    assert str(paths.user_state_dir()) == state.replace("HOME", home)


@posix_only("Path.home() read from $HOME")
def test_windows_folders_without_localappdata_fall_back_to_the_profile(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "platform", "win32")
    monkeypatch.delenv("LOCALAPPDATA", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert paths.user_cache_dir() == tmp_path / "AppData" / "Local" / "pinclient" / "Cache"


# --------------------------------------------------------------------------- the progress bar


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _draws(monkeypatch: pytest.MonkeyPatch, columns: int) -> list[str]:
    monkeypatch.setenv("COLUMNS", str(columns))
    monkeypatch.setenv("LINES", "20")
    out = Terminal()
    ticks = iter([1.0, 2.0, 3.0, 4.0])
    bar = progress.ProgressBar(out, clock=lambda: next(ticks))
    bar(0, None)
    bar(123456789, None)
    bar(5, 10)
    bar(10, 10)
    bar.close()
    return out.getvalue().split("\r")[1:]


@pytest.mark.parametrize("columns", [30, 80, 200])
def test_windows_console_bar_has_no_escapes_and_never_wraps(
        columns: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(paths, "WINDOWS", True)
    draws = _draws(monkeypatch, columns)
    assert len(draws) == 4
    for i, text in enumerate(draws):
        line = text.rstrip("\n")
        assert "\x1b" not in line, "conhost without VT processing would print ESC [ K"
        assert len(line) <= columns - 1, "touching the last column wraps a Windows console"
        if i:
            previous = draws[i - 1].rstrip("\n")
            assert len(line) >= min(len(previous), columns - 1), "the old line is padded over"


@pytest.mark.parametrize("columns", [30, 80])
def test_posix_terminal_bar_erases_with_an_escape_and_never_wraps(
        columns: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(paths, "WINDOWS", False)
    for text in _draws(monkeypatch, columns):
        line = text.rstrip("\n")
        assert line.endswith("\x1b[K")
        assert len(line) - 3 <= columns - 1


def test_bar_fits_the_terminal_it_is_drawn_on_when_stdout_is_a_pipe(monkeypatch: pytest.MonkeyPatch) -> None:
    # fetch-update URL -o - | tar x: stdout is a pipe, the bar is on stderr, a 50-column console.
    # shutil.get_terminal_size asks stdout (and would say 80); the bar must ask its own stream.
    monkeypatch.delenv("COLUMNS", raising=False)

    class Stderr(Terminal):
        def fileno(self) -> int:
            return 2

    def size(fd: int = 1) -> os.terminal_size:
        if fd == 2:
            return os.terminal_size((50, 20))
        raise OSError(errno.ENOTTY, "Inappropriate ioctl for device")

    monkeypatch.setattr(os, "get_terminal_size", size)
    out = Stderr()
    ticks = iter([1.0, 2.0])
    bar = progress.ProgressBar(out, clock=lambda: next(ticks))
    bar(5, 10)
    bar(10, 10)
    for text in out.getvalue().split("\r")[1:]:
        line = text.rstrip("\n").removesuffix("\x1b[K")
        assert 40 <= len(line) <= 49, line


def test_posix_only_tests_say_why() -> None:
    """Every function in the tests that uses a POSIX-only facility (flock, mknod, mkfifo, AF_UNIX
    sockets, unshare, file owners) says so: a ``posix_only(...)`` mark, or a skip / comment with
    "POSIX-only" in it, so that a Windows run skips it with that reason instead of failing."""
    facilities = ["os.mkfifo", "os.mknod", "AF_UNIX", "unshare", "geteuid", "getuid", "fcntl", "/dev/zero",
                  'Path(f"/dev/']
    missing = []
    for path in sorted((REPO / "tests").glob("*.py")):
        if path.name in ("test_platforms.py", "conftest.py"):
            continue
        text = path.read_text()
        for node in ast.walk(ast.parse(text)):
            if not isinstance(node, ast.FunctionDef):
                continue
            body = ast.get_source_segment(text, node) or ""
            marks = " ".join(ast.unparse(d) for d in node.decorator_list)
            used = [f for f in facilities if f in body]
            if used and "posix_only" not in marks and "POSIX-only" not in body:
                missing.append(f"{path.name}::{node.name} uses {', '.join(used)}")
    assert missing == []


def test_stat_helpers_exist_on_every_platform() -> None:
    # What owned() and _is_link() rely on is in os/stat everywhere; FILE_ATTRIBUTE_REPARSE_POINT
    # is defined in stat on every platform (its value only means something on Windows).
    assert hasattr(stat, "FILE_ATTRIBUTE_REPARSE_POINT")
