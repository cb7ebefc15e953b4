"""fetch_update's integrity guarantees and the fetch-update command, as a new user would run it,
including against OpenSSL's own `s_server -WWW`."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pinclient import HashMismatch, HTTPStatusError, NetworkError, SizeError, StorageError, fetch_update
from pinclient._cli.main import fetch_main, main
from pinclient._demo import Response
from pinclient._pki import Leaf
from pinclient.config import PinConfig

# --------------------------------------------------------------------------- integrity
from .conftest import HOST, PKI, ServeHTTPS, pinset, write_pins


def test_hash_mismatch_keeps_the_old_file(root_pinned_config: PinConfig, tmp_path: Path,
                                          payload: bytes, https_server: ServeHTTPS) -> None:
    dest = tmp_path / "app.bin"
    dest.write_bytes(b"the previous version")
    with https_server({"/u": Response(200, payload)}) as s:
        with pytest.raises(HashMismatch) as info:
            fetch_update(s.url("/u"), dest, config=root_pinned_config, sha256="00" * 32)
    assert dest.read_bytes() == b"the previous version"
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".app")) == []
    assert info.value.actual == hashlib.sha256(payload).hexdigest()
    assert info.value.exit_code == 5


def test_oversized_body_is_stopped_at_the_limit(root_pinned_config: PinConfig,
                                                tmp_path: Path, https_server: ServeHTTPS) -> None:
    sent = {"bytes": 0}

    def endless() -> Iterator[bytes]:
        chunk = b"x" * 65536
        for _ in range(16384):  # up to 1 GiB, far more than the client may read
            sent["bytes"] += len(chunk)
            yield chunk

    routes = {"/u": Response(200, endless, content_length=None)}
    dest = tmp_path / "app.bin"
    dest.write_bytes(b"old")
    with https_server(routes) as s:
        with pytest.raises(SizeError):
            fetch_update(s.url("/u"), dest, config=root_pinned_config, size=100_000)
        s.wait_idle()
    assert dest.read_bytes() == b"old"
    assert sent["bytes"] < 64 * 1024 * 1024, "the client stopped reading long before the end"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".app")] == []


def test_declared_length_over_the_limit_aborts_before_the_body(root_pinned_config: PinConfig,
                                                               tmp_path: Path, payload: bytes,
                                                               https_server: ServeHTTPS) -> None:
    with https_server({"/u": Response(200, payload)}) as s:
        with pytest.raises(SizeError, match="declares"):
            fetch_update(s.url("/u"), tmp_path / "a", config=root_pinned_config, max_size=1000)
        with pytest.raises(SizeError, match="declares"):
            fetch_update(s.url("/u"), tmp_path / "a", config=root_pinned_config, size=len(payload) - 1)


def test_truncated_body_is_a_network_error_and_saves_nothing(root_pinned_config: PinConfig,
                                                             tmp_path: Path, payload: bytes,
                                                             https_server: ServeHTTPS) -> None:
    routes = {"/u": Response(200, payload[:1000], content_length=len(payload))}
    with https_server(routes) as s:
        with pytest.raises(NetworkError):
            # retries=0: each attempt waits for the server's 10 s idle close (retries: test_download_*).
            fetch_update(s.url("/u"), tmp_path / "a", config=root_pinned_config, retries=0)
    assert not (tmp_path / "a").exists()


def test_short_close_delimited_body_fails_the_size_check(root_pinned_config: PinConfig,
                                                         tmp_path: Path, payload: bytes,
                                                         https_server: ServeHTTPS) -> None:
    routes = {"/u": Response(200, payload[:1000], content_length=None)}
    with https_server(routes) as s:
        with pytest.raises(SizeError, match="expected exactly"):
            fetch_update(s.url("/u"), tmp_path / "a", config=root_pinned_config, size=len(payload))
    assert not (tmp_path / "a").exists()


def test_http_error_status(root_pinned_config: PinConfig, tmp_path: Path,
                           https_server: ServeHTTPS) -> None:
    with https_server() as s:
        with pytest.raises(HTTPStatusError) as info:
            fetch_update(s.url("/missing"), tmp_path / "a", config=root_pinned_config)
    assert info.value.status == 404
    assert info.value.exit_code == 6


def test_symlink_at_dest_is_replaced_not_followed(root_pinned_config: PinConfig, tmp_path: Path,
                                                  payload: bytes, https_server: ServeHTTPS) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_bytes(b"do not touch")
    dest = tmp_path / "app.bin"
    dest.symlink_to(victim)
    with https_server({"/u": Response(200, payload)}) as s:
        fetch_update(s.url("/u"), dest, config=root_pinned_config)
    assert victim.read_bytes() == b"do not touch"
    assert not dest.is_symlink()
    assert dest.read_bytes() == payload


def test_write_failure_is_a_storage_error_with_dest_intact(root_pinned_config: PinConfig,
                                                           tmp_path: Path, payload: bytes,
                                                           monkeypatch: pytest.MonkeyPatch,
                                                           https_server: ServeHTTPS) -> None:
    import errno

    import pinclient._download.fetch as download

    dest = tmp_path / "app.bin"
    dest.write_bytes(b"old")
    real_fsync = os.fsync

    def full_disk(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(download.os, "fsync", full_disk)
    with https_server({"/u": Response(200, payload)}) as s:
        with pytest.raises(StorageError, match="No space left"):
            fetch_update(s.url("/u"), dest, config=root_pinned_config)
    monkeypatch.setattr(download.os, "fsync", real_fsync)
    assert dest.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".app")] == []


# --------------------------------------------------------------------------- the CLI, in process


@pytest.fixture
def pins_file(pki: PKI, tmp_path: Path) -> Path:
    body = pinset("example-updates", [HOST, "localhost"], f'{{ spki_sha256 = "{pki.pin_of(pki.pinned_root)}" }}')
    return write_pins(tmp_path / "cfg", body, bundle=pki.bundle)


def test_cli_exit_codes(pki: PKI, pins_file: Path, tmp_path: Path, payload: bytes,
                        capsys: pytest.CaptureFixture[str], https_server: ServeHTTPS) -> None:
    dest = str(tmp_path / "out.bin")
    with https_server({"/u": Response(200, payload)}) as good:
        url = good.url("/u")
        assert fetch_main([url, "-o", dest, "--pins", str(pins_file)]) == 0
        assert Path(dest).read_bytes() == payload
        assert fetch_main([url, "-o", dest, "--pins", str(pins_file), "--sha256", "11" * 32]) == 5
        assert fetch_main([url, "-o", dest, "--pins", str(tmp_path / "nope.toml")]) == 2
        assert fetch_main(["http://updates.test/u", "-o", dest, "--pins", str(pins_file)]) == 2
        assert fetch_main([good.url("/u", host="elsewhere.test"), "-o", dest, "--pins", str(pins_file)]) == 6
    with https_server({"/u": Response(200, payload)}, issuer=pki.rogue_root) as rogue:
        assert fetch_main([rogue.url("/u"), "-o", dest, "--pins", str(pins_file)]) == 3
    with https_server({"/u": Response(200, payload)}, issuer=pki.untrusted_root) as bad:
        assert fetch_main([bad.url("/u"), "-o", dest, "--pins", str(pins_file)]) == 6
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert "Certificate pinning failure for updates.test" in err
    assert Path(dest).read_bytes() == payload, "failed fetches never touched the good file"


def test_cli_json_output(pki: PKI, pins_file: Path, tmp_path: Path, payload: bytes,
                         capsys: pytest.CaptureFixture[str], https_server: ServeHTTPS) -> None:
    with https_server({"/u": Response(200, payload)}, issuer=pki.rogue_root) as rogue:
        code = main(["fetch", rogue.url("/u"), "-o", str(tmp_path / "x"), "--pins", str(pins_file), "--json"])
    data = json.loads(capsys.readouterr().out)
    assert code == 3
    assert data["ok"] is False
    assert data["error"] == "PinViolation"
    assert data["pinset"] == "example-updates"
    assert data["chain"][1]["spki_sha256"] == pki.pin_of(pki.rogue_root)
    assert data["expected"] == [f"sha256/{pki.pin_of(pki.pinned_root)}"]


def test_cli_pins_from_environment_and_default_dest(pins_file: Path, tmp_path: Path,
                                                    payload: bytes, monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str],
                                                    https_server: ServeHTTPS) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PINCLIENT_PINS", str(pins_file))
    with https_server({"/app-2.1.tar.gz": Response(200, payload)}) as s:
        assert fetch_main([s.url("/app-2.1.tar.gz"), "--json"]) == 0
    assert (tmp_path / "app-2.1.tar.gz").read_bytes() == payload
    assert json.loads(capsys.readouterr().out)["pinset"] == "example-updates"
    monkeypatch.delenv("PINCLIENT_PINS")
    assert fetch_main(["https://updates.test/x"]) == 2, "no ./pins.toml: a usage error, never unpinned"


def test_cli_ca_bundle_override(pki: PKI, pins_file: Path, tmp_path: Path, payload: bytes,
                                https_server: ServeHTTPS) -> None:
    only_rogue = tmp_path / "rogue-only.pem"
    only_rogue.write_bytes(pki.rogue_root.cert_pem())
    with https_server({"/u": Response(200, payload)}) as s:
        args = [s.url("/u"), "-o", str(tmp_path / "x"), "--pins", str(pins_file)]
        assert fetch_main(args) == 0
        assert fetch_main([*args, "--ca-bundle", str(only_rogue)]) == 6, "the pinned root is no longer trusted"
        assert fetch_main([*args, "--ca-bundle", str(tmp_path / "missing.pem")]) == 2


# --------------------------------------------------------------------------- as a new user: s_server


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def s_server(tmp_path: Path) -> Iterator[object]:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    procs: list[subprocess.Popen[bytes]] = []

    def start(leaf: Leaf, docroot: Path) -> int:
        folder = docroot.parent / f"tls-{len(procs)}"
        folder.mkdir()
        from cryptography.hazmat.primitives.serialization import Encoding

        (folder / "cert.pem").write_bytes(leaf.cert.public_bytes(Encoding.PEM))
        (folder / "chain.pem").write_bytes(b"".join(c.public_bytes(Encoding.PEM) for c in leaf.parents[:-1]))
        (folder / "key.pem").write_bytes(leaf.key_pem())
        port = _free_port()
        chain = ["-cert_chain", str(folder / "chain.pem")] if len(leaf.parents) > 1 else []
        proc = subprocess.Popen(
            ["openssl", "s_server", "-accept", f"127.0.0.1:{port}", "-cert", str(folder / "cert.pem"),
             *chain, "-key", str(folder / "key.pem"), "-WWW", "-quiet"],
            cwd=docroot, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        procs.append(proc)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                return port
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("openssl s_server did not start")

    yield start
    for proc in procs:
        proc.terminate()
        proc.wait(5)


def _run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).parent / "fetch-update"
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "pinclient", "fetch"]
    return subprocess.run([*cmd, *args], cwd=cwd, capture_output=True, text=True, timeout=60, check=False)


def test_fetch_update_against_openssl_s_server(pki: PKI, s_server: object, tmp_path: Path,
                                               payload: bytes) -> None:
    start = s_server  # type: ignore[assignment]
    docroot = tmp_path / "www"
    docroot.mkdir()
    (docroot / "update.bin").write_bytes(payload)
    work = tmp_path / "user"
    work.mkdir()
    body = pinset("example-updates", ["localhost"], f'{{ spki_sha256 = "{pki.pin_of(pki.pinned_root)}" }}')
    write_pins(work, body, bundle=pki.bundle)
    digest = hashlib.sha256(payload).hexdigest()

    rogue_port = start(pki.rogue_root.issue_leaf("localhost"), docroot)  # type: ignore[operator]
    done = _run_cli(f"https://localhost:{rogue_port}/update.bin", "--sha256", digest, cwd=work)
    assert done.returncode == 3, done.stderr
    assert "UTN-USERFirst-Hardware" in done.stderr
    assert "Traceback" not in done.stderr
    assert sorted(p.name for p in work.iterdir()) == ["pins.toml"], "nothing written"

    good_port = start(pki.pinned_int.issue_leaf("localhost"), docroot)  # type: ignore[operator]
    done = _run_cli(f"https://localhost:{good_port}/update.bin", "--sha256", digest, cwd=work)
    assert done.returncode == 0, done.stderr
    assert (work / "update.bin").read_bytes() == payload

    # python -m pinclient fetch is the same command.
    done = subprocess.run([sys.executable, "-m", "pinclient", "fetch", f"https://localhost:{rogue_port}/update.bin",
                           "-o", "again.bin"], cwd=work, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 3
    assert not (work / "again.bin").exists()
