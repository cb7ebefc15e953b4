"""Several updaters at once: two processes on one DEST take turns through the advisory lock (the
second waits, or with --lock-timeout 0 fails clearly); threads share one PinningPoolManager."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from pinclient import PinningPoolManager, StorageError, fetch_update
from pinclient._demo import Response
from pinclient._download.lock import dest_lock
from pinclient.config import PinConfig

from .conftest import ServeHTTPS
from .hostile import wait_for

REPO = Path(__file__).resolve().parents[1]


def child(*args: str) -> subprocess.Popen[str]:
    """``pinclient fetch ARGS`` in another process (``*.test`` on loopback, as in the suite)."""
    return subprocess.Popen([sys.executable, "-m", "tests.hostile", *args], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_two_processes_on_one_dest_take_turns(root_pinned_config: PinConfig, tmp_path: Path,
                                              https_server: ServeHTTPS) -> None:
    data = os.urandom(400_000)
    gate = threading.Event()

    def held() -> Iterator[bytes]:
        yield data[:100_000]
        gate.wait(30)  # the first process holds the lock, mid-body, until the test says so
        yield data[100_000:]

    routes = {"/u": Response(200, held, headers={"ETag": '"1"'}, content_length=len(data))}
    dest = tmp_path / "u.bin"
    dest.write_bytes(b"old")
    args = ["--pins", str(root_pinned_config.path), "-o", str(dest), "--sha256",
            hashlib.sha256(data).hexdigest(), "-q"]
    with https_server(routes) as s:
        first = child(s.url("/u"), *args)
        second = third = None
        try:
            assert wait_for(lambda: len(s.requests) == 1), "the first process started its download"
            second = child(s.url("/u"), *args, "--lock-timeout", "0")
            _, err = second.communicate(timeout=60)
            assert second.returncode == 7, err
            assert "being fetched by another process" in err
            assert f"(pid {first.pid})" in err
            assert "Traceback" not in err
            third = child(s.url("/u"), *args, "--lock-timeout", "60")  # this one waits its turn
            gate.set()
            assert first.wait(60) == 0, first.communicate()[1]
            assert third.wait(60) == 0, third.communicate()[1]
        finally:
            gate.set()
            for proc in (first, second, third):
                if proc is not None:
                    if proc.poll() is None:
                        proc.kill()
                    proc.communicate()
    assert len(s.requests) == 2, "the process that gave up never sent a request"
    assert dest.read_bytes() == data
    assert sorted(p.name for p in tmp_path.iterdir() if "u.bin" in p.name) == ["u.bin"]


def test_lock_timeout_in_process(tmp_path: Path) -> None:
    dest = tmp_path / "u.bin"
    with dest_lock(dest, 0):
        assert (tmp_path / ".u.bin.pinclient-lock").read_text() == f"pinclient lock\n{os.getpid()}"
        with pytest.raises(StorageError, match="another process") as info:
            # flock locks belong to the open file, so a second open in the same process conflicts too.
            with dest_lock(dest, 0.2):
                pass
        assert info.value.exit_code == 7
    assert not (tmp_path / ".u.bin.pinclient-lock").exists(), "the lock file goes with the lock"
    with dest_lock(dest, 0):
        pass


def test_threads_share_one_pool_manager(root_pinned_config: PinConfig, tmp_path: Path,
                                        https_server: ServeHTTPS) -> None:
    files = {f"/f{i}": os.urandom(50_000 + i) for i in range(8)}
    routes = {path: Response(200, body, headers={"ETag": f'"{path}"'}) for path, body in files.items()}
    pm = PinningPoolManager(root_pinned_config, maxsize=4)
    with https_server(routes) as s:
        def one(path: str) -> str:
            result = fetch_update(s.url(path), tmp_path / path[1:], config=root_pinned_config, manager=pm,
                                  sha256=hashlib.sha256(files[path]).hexdigest())
            return result.sha256

        with ThreadPoolExecutor(max_workers=4) as pool:
            digests = list(pool.map(one, [*files, *files]))  # two fetches per DEST, concurrently
        pm.clear()
    assert digests == [hashlib.sha256(b).hexdigest() for b in [*files.values(), *files.values()]]
    for path, body in files.items():
        assert (tmp_path / path[1:]).read_bytes() == body
    assert pm.guard.checks <= 8, "connections are pooled and pinned once each"
    assert sorted(p.name for p in tmp_path.iterdir() if "pinclient" in p.name) == []
