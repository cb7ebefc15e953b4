"""More digests than SHA-256 (issue 16 §3): ``hashes=["sha384:HEX"]`` / ``--hash sha512:HEX`` (pip's
spelling) and manifests carrying sha384/sha512. Every digest given must match the whole payload,
resumed or not, before DEST is touched; a value that parses can match (length per algorithm)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from pinclient import HashMismatch, UsageError, fetch_update
from pinclient._cli.main import fetch_main
from pinclient._demo import Response
from pinclient._download.partfile import part_paths
from pinclient._download.retry import RetryPolicy
from pinclient.config import PinConfig, load_pins
from pinclient.manifest import fetch_from_manifest, parse_manifest

from .conftest import HOST, PKI, ServeHTTPS, pinset, write_pins
from .hostile import Seen, ranged
from .test_manifest import PUBLISHER, manifest_doc, routes

FAST = RetryPolicy(retries=3, backoff=0.01)


def hexof(algorithm: str, data: bytes) -> str:
    return hashlib.new(algorithm, data).hexdigest()


@pytest.mark.parametrize("algorithm", ["sha256", "sha384", "sha512"])
def test_each_digest_is_checked_and_a_mismatch_keeps_the_old_file(
        root_pinned_config: PinConfig, tmp_path: Path, payload: bytes, https_server: ServeHTTPS,
        algorithm: str) -> None:
    dest = tmp_path / "app.bin"
    dest.write_bytes(b"old")
    wrong = hexof(algorithm, payload + b"x")
    with https_server({"/u": Response(200, payload)}) as s:
        with pytest.raises(HashMismatch) as info:
            fetch_update(s.url("/u"), dest, config=root_pinned_config, hashes=[f"{algorithm}:{wrong}"],
                         retries=0)
        assert dest.read_bytes() == b"old"
        assert info.value.expected == wrong
        assert info.value.actual == hexof(algorithm, payload)
        assert info.value.exit_code == 5
        good = hexof(algorithm, payload).upper()  # pip's digests are lower case; upper is forgiven
        result = fetch_update(s.url("/u"), dest, config=root_pinned_config,
                              hashes=[f"{algorithm.upper()}:{good}"], retries=0)
    assert dest.read_bytes() == payload
    assert (result.sha256 == good.lower()) if algorithm == "sha256" else (result.digests == {algorithm: good.lower()})


def test_every_digest_given_must_match_not_just_one(root_pinned_config: PinConfig, tmp_path: Path,
                                                     payload: bytes, https_server: ServeHTTPS) -> None:
    dest = tmp_path / "app.bin"
    with https_server({"/u": Response(200, payload)}) as s:
        with pytest.raises(HashMismatch, match="SHA-512 mismatch"):
            fetch_update(s.url("/u"), dest, config=root_pinned_config, sha256=hexof("sha256", payload),
                         hashes=[f"sha384:{hexof('sha384', payload)}", f"sha512:{'0' * 128}"], retries=0)
    assert not dest.exists()


def test_a_resumed_download_is_hashed_from_byte_0(root_pinned_config: PinConfig, tmp_path: Path,
                                                   https_server: ServeHTTPS) -> None:
    big = bytes(range(256)) * 1200
    dest = tmp_path / "u.bin"
    seen = Seen()
    with https_server({"/u.bin": ranged(big, seen, drop_after={0: 100_000})}) as s:
        result = fetch_update(s.url("/u.bin"), dest, config=root_pinned_config,
                              hashes=[f"sha512:{hexof('sha512', big)}"], retries=FAST)
    assert result.resumed_from > 0, "the body was resumed"
    assert seen.ranges[1] is not None
    assert dest.read_bytes() == big
    assert result.digests == {"sha512": hexof("sha512", big)}


@pytest.mark.parametrize("kept_is_genuine", [True, False])
def test_a_part_kept_from_an_earlier_run_is_hashed_again(root_pinned_config: PinConfig, tmp_path: Path,
                                                         https_server: ServeHTTPS, kept_is_genuine: bool) -> None:
    big = bytes(range(256)) * 1200
    dest = tmp_path / "u.bin"
    seen = Seen()
    with https_server({"/u.bin": ranged(big, seen)}) as s:
        part, sidecar = part_paths(dest)
        part.write_bytes(big[:50_000] if kept_is_genuine else b"\0" * 50_000)  # what an earlier run kept
        sidecar.write_text(json.dumps({"version": 2, "pinclient": "pinclient part sidecar",
                                       "inode": part.stat().st_ino, "download": {
                                           "url": s.url("/u.bin"), "validator": '"v1"', "total": len(big),
                                           "received": 50_000, "sha256": None, "size": None}}))
        fetch = lambda: fetch_update(s.url("/u.bin"), dest, config=root_pinned_config,  # noqa: E731
                                     hashes=[f"sha384:{hexof('sha384', big)}"], retries=0)
        if kept_is_genuine:
            assert fetch().resumed_from == 50_000
            assert dest.read_bytes() == big
        else:
            with pytest.raises(HashMismatch, match="SHA-384 mismatch"):
                fetch()
            assert not dest.exists()
    assert seen.ranges == ["bytes=50000-"], "the part was resumed, not fetched again"


@pytest.mark.parametrize(("hashes", "message"), [
    (["md5:" + "0" * 32], "'md5' is not accepted; use sha256:HEX, sha384:HEX, sha512:HEX"),
    (["sha1:" + "0" * 40], "'sha1' is not accepted"),
    (["sha384:" + "0" * 64], "sha384: must be 96 hex digits"),  # a SHA-256 under the wrong name
    (["sha512:" + "g" * 128], "sha512: must be 128 hex digits"),
    (["0" * 96], "must be ALGORITHM:HEX"),
    (["sha512:" + "0" * 128, "sha512:" + "1" * 128], "two different sha512 digests"),
    (["sha256:" + "1" * 64], "two different sha256 digests"),  # disagrees with sha256=
])
def test_digests_that_could_never_match_are_refused_before_connecting(
        root_pinned_config: PinConfig, tmp_path: Path, hashes: list[str], message: str) -> None:
    with pytest.raises(UsageError, match=message.replace("(", r"\(")):
        fetch_update("https://updates.test:9/u", tmp_path / "out" / "x", config=root_pinned_config,
                     sha256="0" * 64, hashes=hashes)
    assert not (tmp_path / "out").exists()


@pytest.fixture
def pins_file(pki: PKI, tmp_path: Path) -> Path:
    body = pinset("example-updates", [HOST], f'{{ spki_sha256 = "{pki.pin_of(pki.pinned_root)}" }}')
    return write_pins(tmp_path / "cfg", body, bundle=pki.bundle)


def test_cli_hash_flag(pins_file: Path, tmp_path: Path, payload: bytes, https_server: ServeHTTPS,
                       capsys: pytest.CaptureFixture[str]) -> None:
    dest = tmp_path / "out.bin"
    base = ["-o", str(dest), "--pins", str(pins_file), "--retries", "0"]
    with https_server({"/u": Response(200, payload)}) as s:
        assert fetch_main([s.url("/u"), *base, "--hash", f"sha384:{hexof('sha384', b'other')}"]) == 5
        assert "SHA-384 mismatch" in capsys.readouterr().err
        assert not dest.exists()
        assert fetch_main([s.url("/u"), *base, "--hash", f"sha512:{hexof('sha512', payload)}",
                           "--sha256", hexof("sha256", payload)]) == 0
        assert f"sha512 {hexof('sha512', payload)} verified" in capsys.readouterr().out
        assert fetch_main([s.url("/u"), *base, "--hash", "md5:" + "0" * 32]) == 2
        err = capsys.readouterr().err
        assert "sha384:HEX" in err
        assert "Traceback" not in err


# --------------------------------------------------------------------------- manifests


@pytest.fixture
def signed_config(pki: PKI, tmp_path: Path) -> PinConfig:
    body = pinset("example-updates", [HOST], f'{{ spki_sha256 = "{pki.pin_of(pki.pinned_root)}" }}')
    body += f'signing_keys = ["{PUBLISHER.public_key.to_string()}"]\n'
    return load_pins(write_pins(tmp_path / "cfg", body, bundle=pki.bundle))


def _doc(**digests: str) -> bytes:
    doc = json.loads(manifest_doc())
    del doc["sha256"]
    doc.update(digests)
    return json.dumps(doc).encode()


def test_manifest_with_only_a_sha512_is_checked(signed_config: PinConfig, tmp_path: Path,
                                                https_server: ServeHTTPS) -> None:
    from .test_manifest import PAYLOAD

    dest = tmp_path / "app.tar.gz"
    dest.write_bytes(b"old")
    bad = _doc(sha512=hexof("sha512", PAYLOAD + b"!"))
    with https_server(routes(bad)) as s:  # type: ignore[arg-type]
        with pytest.raises(HashMismatch, match="SHA-512 mismatch"):
            fetch_from_manifest(s.url("/channel/latest.json"), dest, config=signed_config, retries=0)
    assert dest.read_bytes() == b"old"
    good = _doc(sha512=hexof("sha512", PAYLOAD), sha384=hexof("sha384", PAYLOAD))
    with https_server(routes(good)) as s:  # type: ignore[arg-type]
        result = fetch_from_manifest(s.url("/channel/latest.json"), dest, config=signed_config, retries=0)
    assert dest.read_bytes() == PAYLOAD
    assert result.manifest.sha256 is None
    assert result.fetch is not None
    assert set(result.fetch.digests) == {"sha384", "sha512"}


@pytest.mark.parametrize(("digests", "message"), [
    ({}, "a digest is required: 'sha256', 'sha384' or 'sha512'"),
    ({"sha384": "0" * 64}, "'sha384' must be 96 hex digits"),
    ({"sha512": "Z" * 128}, "'sha512' must be 128 hex digits"),
])
def test_manifest_digests_that_cannot_match_are_refused(digests: dict[str, str], message: str) -> None:
    from pinclient import IntegrityError

    with pytest.raises(IntegrityError, match=message):
        parse_manifest(_doc(**digests), base_url="https://updates.test/m.json")


@pytest.mark.parametrize("good", [True, False])
def test_standard_output_gets_the_bytes_only_once_the_sha512_checks_out(
        root_pinned_config: PinConfig, tmp_path: Path, https_server: ServeHTTPS, good: bool) -> None:
    import os
    import subprocess
    import sys

    from .test_download_files import _STDOUT_CHILD, REPO

    body = os.urandom(300_000)
    digest = hexof("sha512", body if good else body + b"!")
    with https_server({"/u.bin": body}) as s:
        done = subprocess.run(
            [sys.executable, "-c", _STDOUT_CHILD, s.url("/u.bin"), "-o", "-", "--pins",
             str(root_pinned_config.path), "--hash", f"sha512:{digest}"],
            cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True,
            timeout=60, check=False)
    stderr = done.stderr.decode()
    assert "Traceback" not in stderr
    assert done.returncode == (0 if good else 5), stderr
    assert done.stdout == (body if good else b""), "nothing reaches stdout before the digest checks out"
