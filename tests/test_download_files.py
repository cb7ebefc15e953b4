"""Only ever touch what pinclient made: the files beside DEST (the lock, the part, its sidecar), what
DEST itself may be (a regular file, /dev/null, standard output; never a device, FIFO or socket),
the mode a saved file gets, a failure at the very last step, and names too long for the folder.
Real loopback TLS; the only things faked are a refusing folder fsync."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from pinclient import (
    HashMismatch,
    NetworkError,
    PinViolation,
    StorageError,
    UsageError,
    fetch_update,
)
from pinclient._cli.main import fetch_main
from pinclient._demo import Response, Route
from pinclient._download import partfile
from pinclient._download.lock import lock_path
from pinclient._download.partfile import part_paths
from pinclient.config import PinConfig

from .conftest import PKI, ServeHTTPS, posix_only
from .hostile import Seen, ranged

REPO = Path(__file__).resolve().parent.parent


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def snapshot(path: Path) -> tuple[int, int, bytes]:
    st = path.stat()
    return st.st_ino, st.st_mtime_ns, path.read_bytes()


# --------------------------------------------------------------------------- 0.1.0's names


OLD_NAMES = ["Pipfile.lock", "Pipfile.part", "Pipfile.part.json", "Pipfile.part.json.tmp"]


@pytest.mark.parametrize("outcome", ["saved", "pin violation", "broken body", "hash mismatch"])
def test_files_named_like_0_1_0_side_files_are_never_touched(
        root_pinned_config: PinConfig, tmp_path: Path, pki: PKI, https_server: ServeHTTPS,
        outcome: str) -> None:
    # `fetch-update …/Pipfile -o Pipfile` truncated and deleted Pipfile.lock in 0.1.0 (DEST.lock),
    # even when the fetch was refused. Those names are the user's: same inode, same bytes, after
    # every outcome.
    body = os.urandom(200_000)
    dest = tmp_path / "Pipfile"
    dest.write_bytes(b"[packages]\n")
    for name in OLD_NAMES:
        (tmp_path / name).write_bytes(f"the user's {name}\n".encode())
    before = {name: snapshot(tmp_path / name) for name in OLD_NAMES}
    route = ranged(body, Seen(), drop_after={0: 100_000} if outcome == "broken body" else None)
    issuer = pki.rogue_root if outcome == "pin violation" else None
    digest = "00" * 32 if outcome == "hash mismatch" else sha(body)
    with https_server({"/Pipfile": route}, issuer=issuer) as s:
        try:
            fetch_update(s.url("/Pipfile"), dest, config=root_pinned_config, sha256=digest, retries=0)
        except (PinViolation, NetworkError, HashMismatch):
            assert outcome != "saved"
    assert {name: snapshot(tmp_path / name) for name in OLD_NAMES} == before
    assert dest.read_bytes() == (body if outcome == "saved" else b"[packages]\n")


# --------------------------------------------------------------------------- planted side files


def plant(path: Path, how: str, victim: Path) -> None:
    if how == "symlink":
        path.symlink_to(victim)
    elif how == "hard link":
        os.link(victim, path)
    elif how == "fifo":
        if not hasattr(os, "mkfifo"):
            pytest.skip("POSIX-only: mkfifo")
        os.mkfifo(path)
        threading.Thread(target=_unblock, args=(path,), daemon=True).start()
    else:
        path.write_bytes(b"someone else's file\n")


def _unblock(fifo: Path) -> None:
    """Open the FIFO's writing end after a while, so a regression that blocks in open() for
    reading fails the test's time limit instead of hanging the suite."""
    time.sleep(3)
    for _ in range(100):
        try:
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
            return
        except OSError:
            time.sleep(0.1)


SIDE_FILES: dict[str, Callable[[Path], Path]] = {"lock": lock_path, "part": lambda d: part_paths(d)[0],
              "sidecar": lambda d: part_paths(d)[1]}


@pytest.mark.parametrize("how", ["regular file", "hard link", "symlink", "fifo"])
@pytest.mark.parametrize("which", list(SIDE_FILES))
def test_a_side_file_pinclient_did_not_make_is_refused_and_left_alone(
        root_pinned_config: PinConfig, tmp_path: Path, https_server: ServeHTTPS,
        which: str, how: str) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_bytes(b"do not touch\n")
    dest = tmp_path / "u.bin"
    dest.write_bytes(b"old")
    planted = SIDE_FILES[which](dest)
    plant(planted, how, victim)
    before = planted.lstat()
    started = time.monotonic()
    with https_server({"/u.bin": ranged(os.urandom(50_000), Seen())}) as s:
        with pytest.raises(StorageError, match=r"cannot prove it made it|symbolic link|not a regular") as info:
            fetch_update(s.url("/u.bin"), dest, config=root_pinned_config, lock_timeout=5)
        assert not s.requests, "refused before any request"
    assert time.monotonic() - started < 2, "refused at once, never blocked opening a FIFO"
    assert info.value.exit_code == 7
    assert victim.read_bytes() == b"do not touch\n"
    after = planted.lstat()
    assert (after.st_ino, after.st_size, after.st_mtime_ns) == (before.st_ino, before.st_size,
                                                                 before.st_mtime_ns)
    assert dest.read_bytes() == b"old"


def test_a_part_whose_sidecar_records_another_file_is_not_reused_or_removed(
        root_pinned_config: PinConfig, tmp_path: Path, https_server: ServeHTTPS) -> None:
    # A sidecar of ours proves only the inode it records: a part put there later (or swapped for a
    # hard link) is someone else's.
    dest = tmp_path / "u.bin"
    part, sidecar = part_paths(dest)
    part.write_bytes(b"not a download")
    sidecar.write_text(json.dumps({"version": 2, "pinclient": "pinclient part sidecar",
                                   "inode": part.stat().st_ino + 1, "download": None}))
    with https_server({"/u.bin": b"new"}) as s:
        with pytest.raises(StorageError, match="does not record it"):
            fetch_update(s.url("/u.bin"), dest, config=root_pinned_config)
    assert part.read_bytes() == b"not a download"
    assert not dest.exists()


def test_a_killed_runs_lock_file_is_taken_over_and_removed(
        root_pinned_config: PinConfig, tmp_path: Path, https_server: ServeHTTPS) -> None:
    dest = tmp_path / "u.bin"
    lock_path(dest).write_bytes(b"pinclient lock\n999999")  # its process is gone, its flock too
    with https_server({"/u.bin": b"new"}) as s:
        fetch_update(s.url("/u.bin"), dest, config=root_pinned_config, lock_timeout=0)
    assert dest.read_bytes() == b"new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cfg", "u.bin"]


# --------------------------------------------------------------------------- what DEST may be


def device_like(real: str, folder: Path) -> Path:
    """A node of the same device as ``real`` inside ``folder`` when root (so that a regression that
    replaces DEST can only ever replace this copy, never the machine's /dev), else ``real`` itself
    (which a non-root user cannot replace)."""
    if os.name != "posix" or os.geteuid() != 0:  # POSIX-only: mknod, and only as root
        return Path(real)
    copy = folder / Path(real).name
    os.mknod(copy, stat.S_IFCHR | 0o666, os.stat(real).st_rdev)
    return copy



@posix_only("mkfifo, AF_UNIX sockets and device nodes")
def test_a_fifo_socket_or_device_at_dest_is_refused_before_connecting(
        root_pinned_config: PinConfig, tmp_path: Path, https_server: ServeHTTPS,
        capsys: pytest.CaptureFixture[str]) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    sock_path = tmp_path / "sock"
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(sock_path))
    zero = device_like("/dev/zero", tmp_path)
    zero_link = tmp_path / "zero-link"
    zero_link.symlink_to(zero)
    try:
        with https_server({"/u": b"payload"}) as s:
            for target, kind in ((fifo, "FIFO"), (sock_path, "socket"), (zero, "character device"),
                                 (zero_link, "character device")):
                before = target.lstat()
                with pytest.raises(UsageError, match=kind):
                    fetch_update(s.url("/u"), target, config=root_pinned_config)
                assert fetch_main([s.url("/u"), "-o", str(target), "--pins",
                                   str(root_pinned_config.path)]) == 2
                assert "Traceback" not in capsys.readouterr().err
                after = target.lstat()
                assert (after.st_ino, after.st_mode) == (before.st_ino, before.st_mode)
            assert not s.requests
    finally:
        listener.close()
    assert stat.S_ISCHR(zero.lstat().st_mode)


def test_dev_null_gets_only_verified_bytes_and_stays_a_device(
        root_pinned_config: PinConfig, tmp_path: Path, https_server: ServeHTTPS, payload: bytes) -> None:
    # Run as root (CI containers), 0.1.0 replaced /dev/null with a 0600 regular file. A null device
    # is recognised by its device number, so the test (as root) uses its own node: a regression
    # must not take the machine's /dev/null with it.
    null = device_like(os.devnull, tmp_path)
    before = null.lstat()
    with https_server({"/u": payload}) as s:
        result = fetch_update(s.url("/u"), null, config=root_pinned_config, sha256=sha(payload))
        with pytest.raises(HashMismatch):
            fetch_update(s.url("/u"), null, config=root_pinned_config, sha256="00" * 32)
        assert fetch_main([s.url("/u"), "-o", str(null), "--pins", str(root_pinned_config.path), "-q",
                           "--sha256", sha(payload)]) == 0
    assert result.size == len(payload)
    after = null.lstat()
    assert stat.S_ISCHR(after.st_mode)
    assert (after.st_ino, after.st_rdev, stat.S_IMODE(after.st_mode)) == (
        before.st_ino, before.st_rdev, stat.S_IMODE(before.st_mode))


_STDOUT_CHILD = r"""
import sys
from tests.hostile import child_main
sys.exit(child_main(sys.argv[1:]))
"""


@pytest.mark.parametrize("good", [True, False])
def test_dash_streams_the_verified_bytes_to_stdout_and_nothing_else(
        root_pinned_config: PinConfig, tmp_path: Path, https_server: ServeHTTPS, good: bool) -> None:
    body = os.urandom(300_000)
    with https_server({"/u.bin": body}) as s:
        done = subprocess.run(
            [sys.executable, "-c", _STDOUT_CHILD, s.url("/u.bin"), "-o", "-", "--pins",
             str(root_pinned_config.path), "--sha256", sha(body) if good else "00" * 32],
            cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True,
            timeout=60, check=False)
    stderr = done.stderr.decode()
    assert "Traceback" not in stderr
    if good:
        assert done.returncode == 0, stderr
        assert done.stdout == body, "the payload, and not one byte of summary, on stdout"
        assert "sha256" in stderr, "the summary goes to stderr"
    else:
        assert done.returncode == 5, stderr
        assert done.stdout == b"", "nothing reaches stdout before the hash checks out"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cfg"], "no file named '-', nothing left"


@posix_only("/dev, its device file system and its symlinks")
def test_nothing_is_created_or_replaced_in_dev(root_pinned_config: PinConfig,
                                               https_server: ServeHTTPS) -> None:
    # /dev/stderr and /dev/fd/N are symlinks (to a regular file when the stream is redirected):
    # the rule "a symlink at DEST is replaced" must not apply there. A new name is refused too.
    name = Path(f"/dev/pinclient-test-{os.getpid()}-{time.monotonic_ns()}")
    try:
        with https_server({"/u": b"payload"}) as s:
            with pytest.raises(UsageError, match="in /dev"):
                fetch_update(s.url("/u"), name, config=root_pinned_config)
            assert not s.requests
        assert not os.path.lexists(name)
    finally:
        if os.path.lexists(name):  # only a regression gets here; leave /dev as it was
            name.unlink()


@pytest.mark.skipif(not os.path.ismount("/dev/shm"), reason="needs /dev/shm mounted as its own tmpfs")
def test_a_file_system_mounted_under_dev_such_as_dev_shm_is_an_ordinary_folder(
        root_pinned_config: PinConfig, https_server: ServeHTTPS) -> None:
    # bench/run.py downloads to /dev/shm (a tmpfs): only /dev's own device file system is refused.
    folder = Path(tempfile.mkdtemp(prefix="pinclient-test-", dir="/dev/shm"))
    try:
        with https_server({"/u": b"payload"}) as s:
            result = fetch_update(s.url("/u"), folder / "u", config=root_pinned_config)
        assert result.dest.read_bytes() == b"payload"
    finally:
        shutil.rmtree(folder)


def test_manifest_with_dash_streams_the_update_and_reports_on_stderr(
        pki: PKI, tmp_path: Path, https_server: ServeHTTPS) -> None:
    from .conftest import HOST, pinset, write_pins
    from .test_manifest import PAYLOAD, PUBLISHER, manifest_doc, routes

    body = pinset("example-updates", [HOST], f'{{ spki_sha256 = "{pki.pin_of(pki.pinned_root)}" }}')
    body += f'signing_keys = ["{PUBLISHER.public_key.to_string()}"]\n'
    pins = write_pins(tmp_path / "cfg", body, bundle=pki.bundle)
    with https_server(routes(manifest_doc())) as s:  # type: ignore[arg-type]
        done = subprocess.run(
            [sys.executable, "-c", _STDOUT_CHILD, "--manifest", s.url("/channel/latest.json"), "-o", "-",
             "--pins", str(pins), "--json"],
            cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True,
            timeout=60, check=False)
    assert done.returncode == 0, done.stderr.decode()
    assert done.stdout == PAYLOAD
    assert json.loads(done.stderr.decode()[done.stderr.decode().index("{"):])["ok"] is True
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cfg"]


# --------------------------------------------------------------------------- mode


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_a_new_file_follows_the_umask_and_an_existing_one_keeps_its_mode(
        root_pinned_config: PinConfig, tmp_path: Path, https_server: ServeHTTPS, umask: int) -> None:
    exe = tmp_path / "tool"
    exe.write_bytes(b"#!/bin/sh\n")
    exe.chmod(0o750)
    old = os.umask(umask)
    try:
        with https_server({"/new.bin": b"new", "/tool": b"#!/bin/sh\necho 2\n"}) as s:
            fetch_update(s.url("/new.bin"), tmp_path / "new.bin", config=root_pinned_config)
            fetch_update(s.url("/tool"), exe, config=root_pinned_config)
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "new.bin").stat().st_mode) == 0o666 & ~umask, "as curl -o and cp"
    assert stat.S_IMODE(exe.stat().st_mode) == 0o750, "an updated executable stays executable"
    assert exe.read_bytes() == b"#!/bin/sh\necho 2\n"


# --------------------------------------------------------------------------- the last step fails


def _slow(body: bytes, midway: threading.Event, go_on: threading.Event) -> Iterator[bytes]:
    yield body[:1000]
    midway.set()
    go_on.wait(10)
    yield body[1000:]


def test_a_folder_created_at_dest_mid_download_is_exit_7_not_a_traceback(
        root_pinned_config: PinConfig, tmp_path: Path, https_server: ServeHTTPS, payload: bytes,
        capsys: pytest.CaptureFixture[str]) -> None:
    dest = tmp_path / "u.bin"
    midway, go_on = threading.Event(), threading.Event()
    routes: dict[str, Route] = {"/u.bin": Response(200, lambda: _slow(payload, midway, go_on),
                                 content_length=len(payload), headers={"ETag": '"v1"'})}
    codes: list[int] = []
    with https_server(routes) as s:
        argv = [s.url("/u.bin"), "-o", str(dest), "--pins", str(root_pinned_config.path), "-q"]
        worker = threading.Thread(target=lambda: codes.append(fetch_main(argv)))
        worker.start()
        assert midway.wait(10)
        dest.mkdir()
        (dest / "inside").write_bytes(b"keep")
        go_on.set()
        worker.join(30)
    assert codes == [7]
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert "ValueError" not in err
    assert str(dest) in err
    assert (dest / "inside").read_bytes() == b"keep", "DEST intact"


def test_a_folder_fsync_refused_is_exit_7_not_a_traceback(
        root_pinned_config: PinConfig, tmp_path: Path, https_server: ServeHTTPS, payload: bytes,
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    def refuse(folder: Path) -> None:
        raise OSError(errno.EINVAL, "Invalid argument")

    monkeypatch.setattr(partfile, "fsync_dir", refuse)
    dest = tmp_path / "u.bin"
    dest.write_bytes(b"old")
    with https_server({"/u.bin": Response(200, payload, headers={"ETag": '"v1"'})}) as s:
        code = fetch_main([s.url("/u.bin"), "-o", str(dest), "--pins", str(root_pinned_config.path)])
    assert code == 7
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert "Invalid argument" in err
    assert dest.read_bytes() == payload, "the rename happened before the folder fsync"
    assert "may not survive a power loss" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cfg", "u.bin"]


# --------------------------------------------------------------------------- long names


@pytest.mark.parametrize("where", ["-o", "URL"])
@pytest.mark.parametrize("length", [240, 300])
def test_an_overlong_file_name_is_a_usage_error(root_pinned_config: PinConfig, tmp_path: Path,
                                                https_server: ServeHTTPS, where: str, length: int,
                                                monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    # 240 bytes fit in a 255-byte NAME_MAX, but not the side files beside it; 300 fit nowhere.
    name = "a" * length
    monkeypatch.chdir(tmp_path)
    with https_server({f"/{name}": b"x"}) as s:
        argv = [s.url(f"/{name}"), "--pins", str(root_pinned_config.path)]
        if where == "-o":
            argv = [s.url("/u"), "-o", str(tmp_path / name), "--pins", str(root_pinned_config.path)]
        assert fetch_main(argv) == 2
        assert not s.requests
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert "File name too long" not in err
    assert "long" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cfg"]


def test_the_longest_name_that_fits_is_saved_and_its_side_files_fit_too(
        root_pinned_config: PinConfig, tmp_path: Path, https_server: ServeHTTPS) -> None:
    # The limit is exact: the longest side file (the sidecar's temporary file) must fit beside it.
    longest = os.pathconf(tmp_path, "PC_NAME_MAX") - len("..pinclient-part.json.12345678.tmp")
    body = os.urandom(200_000)
    with https_server({"/u": ranged(body, Seen(), drop_after={0: 100_000})}) as s:
        for name in ("n" * longest, "m" * (longest + 1)):
            try:
                fetch_update(s.url("/u"), tmp_path / name, config=root_pinned_config, retries=1)
            except UsageError:
                assert len(name) > longest
            else:
                assert len(name) == longest
                assert (tmp_path / name).read_bytes() == body
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cfg", "n" * longest]


@pytest.mark.parametrize("where", ["ca_bundle", "cache_dir", "--ca-bundle", "--pins"])
def test_an_overlong_path_in_pins_toml_or_a_flag_is_a_usage_error(
        root_pinned_config: PinConfig, tmp_path: Path, where: str,
        capsys: pytest.CaptureFixture[str]) -> None:
    # Path.is_file()/exists() raise OSError(ENAMETOOLONG) before Python 3.14: 0.1.0 showed it as a
    # traceback. Each such path is a usage or pins-file error (exit 2) that says it is too long.
    long = "b" * 300
    pins = str(root_pinned_config.path)
    argv = ["https://updates.test/u.bin", "-o", str(tmp_path / "u.bin")]
    if where in ("ca_bundle", "cache_dir"):
        pins = str(tmp_path / "long.toml")
        Path(pins).write_text(f'version = 1\n[defaults]\n{where} = "{long}"\n')
    elif where == "--ca-bundle":
        argv += ["--ca-bundle", long]
    else:
        pins = str(tmp_path / long)
    assert fetch_main([*argv, "--pins", pins]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert "File name too long" not in err
    assert "too long" in err
    assert where.lstrip("-") in err.replace("pins file", "pins")
