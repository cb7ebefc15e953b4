"""Resuming interrupted downloads: Range + If-Range, clean restarts, and the .part that is never
mistaken for a verified file. Hostile servers on real loopback TLS."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from pinclient import HashMismatch, NetworkError, StorageError, fetch_update
from pinclient._download.partfile import part_paths
from pinclient._download.retry import RetryPolicy
from pinclient.config import PinConfig

from .conftest import ServeHTTPS
from .hostile import Seen, ranged

FAST = RetryPolicy(retries=3, backoff=0.01)


@pytest.fixture
def big() -> bytes:
    return os.urandom(300_000)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def leftovers(folder: Path, name: str = "u.bin") -> list[str]:
    return sorted(p.name for p in folder.iterdir()
                  if p.name.startswith((name + ".", f".{name}.")))


PART, SIDECAR = (p.name for p in part_paths(Path("u.bin")))  # .u.bin.pinclient-part(.json)


def plant_part(folder: Path, data: bytes, download: dict[str, object] | None) -> Path:
    """What an earlier run leaves: the part, and a sidecar that records its inode and download."""
    part, sidecar = part_paths(folder / "u.bin")
    part.write_bytes(data)
    sidecar.write_text(json.dumps({"version": 2, "pinclient": "pinclient part sidecar",
                                   "inode": part.stat().st_ino, "download": download}))
    return part


# --------------------------------------------------------------------------- within one call


def test_dropped_connection_mid_body_resumes_with_a_correct_hash(root_pinned_config: PinConfig,
                                                                 tmp_path: Path, big: bytes,
                                                                 https_server: ServeHTTPS) -> None:
    seen = Seen()
    dest = tmp_path / "u.bin"
    with https_server({"/u.bin": ranged(big, seen, drop_after={0: 100_000})}) as s:
        result = fetch_update(s.url("/u.bin"), dest, config=root_pinned_config, sha256=sha(big),
                              size=len(big), retries=FAST)
    assert dest.read_bytes() == big
    assert result.sha256 == sha(big)
    assert result.attempts == 2
    assert 0 < result.resumed_from <= 100_000
    assert seen.ranges == [None, f"bytes={result.resumed_from}-"]
    assert seen.requests[1]["if-range"] == '"v1"'
    assert leftovers(tmp_path) == [], "no .part, .part.json or .lock left after success"


def test_server_ignoring_range_restarts_cleanly(root_pinned_config: PinConfig, tmp_path: Path,
                                               big: bytes, https_server: ServeHTTPS) -> None:
    seen = Seen()
    dest = tmp_path / "u.bin"
    with https_server({"/u.bin": ranged(big, seen, drop_after={0: 100_000}, ignore_range=True)}) as s:
        result = fetch_update(s.url("/u.bin"), dest, config=root_pinned_config, sha256=sha(big),
                              retries=FAST)
    assert seen.ranges[1] is not None, "the client asked for the rest"
    assert result.resumed_from == 0, "the 200 with the whole file replaced the part"
    assert dest.read_bytes() == big
    assert leftovers(tmp_path) == []


def test_changed_file_is_not_spliced_onto_the_old_part(root_pinned_config: PinConfig,
                                                       tmp_path: Path, big: bytes,
                                                       https_server: ServeHTTPS) -> None:
    # The file changes between the two requests: If-Range makes the server send the new one whole.
    new = os.urandom(len(big))
    dest = tmp_path / "u.bin"
    seen = Seen()
    with https_server({"/u.bin": ranged(big, Seen(), drop_after={0: 100_000})}) as s:
        with pytest.raises(NetworkError):
            fetch_update(s.url("/u.bin"), dest, config=root_pinned_config, retries=0)
        assert (tmp_path / PART).stat().st_size > 0
        s.routes["/u.bin"] = ranged(new, seen, etag='"v2"')
        result = fetch_update(s.url("/u.bin"), dest, config=root_pinned_config)
    assert seen.requests[0]["if-range"] == '"v1"'
    assert result.resumed_from == 0
    assert dest.read_bytes() == new


def test_no_validator_means_no_resume(root_pinned_config: PinConfig, tmp_path: Path,
                                      big: bytes, https_server: ServeHTTPS) -> None:
    seen = Seen()
    with https_server({"/u.bin": ranged(big, seen, etag=None, drop_after={0: 100_000})}) as s:
        result = fetch_update(s.url("/u.bin"), tmp_path / "u.bin", config=root_pinned_config,
                              sha256=sha(big), retries=FAST)
    assert seen.ranges == [None, None], "without ETag or Last-Modified a range could splice two files"
    assert result.resumed_from == 0


def test_weak_etag_is_not_used_but_last_modified_is(root_pinned_config: PinConfig,
                                                    tmp_path: Path, big: bytes,
                                                    https_server: ServeHTTPS) -> None:
    seen = Seen()
    stamp = "Wed, 21 Oct 2015 07:28:00 GMT"
    route = ranged(big, seen, etag='W/"weak"', last_modified=stamp, drop_after={0: 100_000})
    with https_server({"/u.bin": route}) as s:
        fetch_update(s.url("/u.bin"), tmp_path / "u.bin", config=root_pinned_config, retries=FAST)
    assert seen.requests[1]["if-range"] == stamp


def test_no_resume_starts_every_retry_from_zero(root_pinned_config: PinConfig, tmp_path: Path,
                                                big: bytes, https_server: ServeHTTPS) -> None:
    seen = Seen()
    with https_server({"/u.bin": ranged(big, seen, drop_after={0: 100_000})}) as s:
        result = fetch_update(s.url("/u.bin"), tmp_path / "u.bin", config=root_pinned_config,
                              sha256=sha(big), retries=FAST, resume=False)
    assert seen.ranges == [None, None]
    assert result.resumed_from == 0


# --------------------------------------------------------------------------- across runs


def test_interrupted_run_leaves_a_resumable_part_and_the_next_run_finishes(
        root_pinned_config: PinConfig, tmp_path: Path, big: bytes,
        https_server: ServeHTTPS) -> None:
    dest = tmp_path / "u.bin"
    dest.write_bytes(b"version 1")
    seen = Seen()
    with https_server({"/u.bin": ranged(big, seen, drop_after={0: 120_000})}) as s:
        with pytest.raises(NetworkError):
            fetch_update(s.url("/u.bin"), dest, config=root_pinned_config, sha256=sha(big), retries=0)
        assert dest.read_bytes() == b"version 1", "DEST keeps its old bytes"
        assert leftovers(tmp_path) == [PART, SIDECAR]
        sidecar = json.loads((tmp_path / SIDECAR).read_text())
        assert sidecar["inode"] == (tmp_path / PART).stat().st_ino
        info = sidecar["download"]
        assert info["url"] == s.url("/u.bin")
        assert info["validator"] == '"v1"'
        assert info["total"] == len(big)
        assert 0 < info["received"] <= (tmp_path / PART).stat().st_size
        assert info["sha256"] == sha(big)
        result = fetch_update(s.url("/u.bin"), dest, config=root_pinned_config, sha256=sha(big))
    assert result.resumed_from == info["received"]
    assert seen.ranges[-1] == f"bytes={info['received']}-"
    assert dest.read_bytes() == big
    assert leftovers(tmp_path) == []


def test_final_hash_covers_the_kept_prefix(root_pinned_config: PinConfig, tmp_path: Path,
                                           big: bytes, https_server: ServeHTTPS) -> None:
    # Corrupt the kept bytes between runs: the resumed download must fail its hash, because the
    # prefix is hashed again from disk, and the bad part must go.
    dest = tmp_path / "u.bin"
    with https_server({"/u.bin": ranged(big, Seen(), drop_after={0: 120_000})}) as s:
        with pytest.raises(NetworkError):
            fetch_update(s.url("/u.bin"), dest, config=root_pinned_config, sha256=sha(big), retries=0)
        part = tmp_path / PART
        data = bytearray(part.read_bytes())
        data[10] ^= 0xFF
        part.write_bytes(bytes(data))
        with pytest.raises(HashMismatch):
            fetch_update(s.url("/u.bin"), dest, config=root_pinned_config, sha256=sha(big))
    assert not dest.exists()
    assert leftovers(tmp_path) == []


def test_part_for_another_hash_or_url_is_not_resumed(root_pinned_config: PinConfig,
                                                     tmp_path: Path, big: bytes,
                                                     https_server: ServeHTTPS) -> None:
    dest = tmp_path / "u.bin"
    with https_server({"/u.bin": ranged(big, Seen(), drop_after={0: 120_000})}) as s:
        with pytest.raises(NetworkError):
            fetch_update(s.url("/u.bin"), dest, config=root_pinned_config, sha256="00" * 32, retries=0)
        seen = Seen()
        s.routes["/u.bin"] = ranged(big, seen)
        result = fetch_update(s.url("/u.bin"), dest, config=root_pinned_config, sha256=sha(big))
    assert seen.ranges == [None], "a part kept for another expected hash is another file"
    assert result.resumed_from == 0


def test_part_longer_than_the_declared_size_restarts(root_pinned_config: PinConfig,
                                                     tmp_path: Path, big: bytes,
                                                     https_server: ServeHTTPS) -> None:
    dest = tmp_path / "u.bin"
    seen = Seen()
    with https_server({"/u.bin": ranged(big, seen)}) as s:
        plant_part(tmp_path, big + b"extra", {"url": s.url("/u.bin"), "validator": '"v1"',
                                               "total": len(big) + 5, "received": len(big) + 5,
                                               "sha256": None, "size": len(big)})
        result = fetch_update(s.url("/u.bin"), dest, config=root_pinned_config, size=len(big))
    assert seen.ranges == [None]
    assert result.resumed_from == 0
    assert dest.read_bytes() == big


@pytest.mark.parametrize("download", [None, {"version": 99}, {"url": 5}, {"url": "x", "bogus": 1}])
def test_garbled_download_record_restarts(root_pinned_config: PinConfig, tmp_path: Path, big: bytes,
                                          download: dict[str, object] | None,
                                          https_server: ServeHTTPS) -> None:
    plant_part(tmp_path, big[:1000], download)
    seen = Seen()
    with https_server({"/u.bin": ranged(big, seen)}) as s:
        fetch_update(s.url("/u.bin"), tmp_path / "u.bin", config=root_pinned_config, sha256=sha(big))
    assert seen.ranges == [None]
    assert leftovers(tmp_path) == []


def test_complete_part_fetches_the_last_byte_to_confirm_the_validator(
        root_pinned_config: PinConfig, tmp_path: Path, big: bytes,
        https_server: ServeHTTPS) -> None:
    seen = Seen()
    with https_server({"/u.bin": ranged(big, seen)}) as s:
        plant_part(tmp_path, big, {"url": s.url("/u.bin"), "validator": '"v1"', "total": len(big),
                                   "received": len(big), "sha256": sha(big), "size": None})
        result = fetch_update(s.url("/u.bin"), tmp_path / "u.bin", config=root_pinned_config,
                              sha256=sha(big))
    assert seen.ranges == [f"bytes={len(big) - 1}-"]
    assert result.resumed_from == len(big) - 1
    assert (tmp_path / "u.bin").read_bytes() == big


# --------------------------------------------------------------------------- symlinks


@pytest.mark.parametrize("name", [PART, SIDECAR, ".u.bin.pinclient-lock"])
def test_symlink_next_to_dest_is_never_written_through(root_pinned_config: PinConfig,
                                                       tmp_path: Path, big: bytes, name: str,
                                                       https_server: ServeHTTPS) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_bytes(b"do not touch")
    dest = tmp_path / "u.bin"
    dest.write_bytes(b"old")
    (tmp_path / name).symlink_to(victim)
    with https_server({"/u.bin": ranged(big, Seen())}) as s:
        with pytest.raises(StorageError, match="symbolic link") as info:
            fetch_update(s.url("/u.bin"), dest, config=root_pinned_config)
    assert info.value.exit_code == 7
    assert victim.read_bytes() == b"do not touch"
    assert dest.read_bytes() == b"old"
    assert (tmp_path / name).is_symlink(), "pinclient does not delete what it did not create"


# --------------------------------------------------------------------------- the decisions, pure


def test_resume_verdicts() -> None:
    from pinclient._download.resume import parse_content_range, resume_verdict

    def verdict(status: int, **headers: str) -> object:
        return resume_verdict(status, {k.replace("_", "-"): v for k, v in headers.items()},
                              offset=100, validator='"v1"')

    assert verdict(206, Content_Range="bytes 100-999/1000") == ("append", 1000)
    assert verdict(206, Content_Range="bytes 100-999/1000", ETag='"v1"') == ("append", 1000)
    assert verdict(206, Content_Range="bytes 100-999/1000", ETag='"v2"') == ("reset", None)
    assert verdict(206, Content_Range="bytes 0-999/1000") == ("reset", None), "wrong start"
    assert verdict(206, Content_Range="bytes 100-499/1000") == ("reset", None), "not the whole rest"
    assert verdict(206, Content_Range="bytes 100-999/*") == ("reset", None), "unknown total"
    assert verdict(206) == ("reset", None)
    assert verdict(200) == ("replace", None)
    assert verdict(416) == ("reset", None)
    assert verdict(503) is None
    assert parse_content_range("bytes 5-4/10") is None
    assert parse_content_range("bytes 0-10/10") is None
    assert parse_content_range("Bytes 0-9/10") == (0, 9, 10)


def test_resume_offset_keeps_only_what_the_sidecar_vouches_for() -> None:
    from pinclient._download.resume import PartInfo, resume_offset

    info = PartInfo(url="https://h/u", validator='"v"', total=1000, received=400, sha256=None, size=None)
    kw = {"url": "https://h/u", "sha256": None, "size": None, "limit": 10_000}
    assert resume_offset(info, 700, **kw) == 400, "bytes after the last fsync are not trusted"  # type: ignore[arg-type]
    assert resume_offset(info, 300, **kw) == 300  # type: ignore[arg-type]
    assert resume_offset(None, 700, **kw) == 0  # type: ignore[arg-type]
    assert resume_offset(info, 700, **{**kw, "url": "https://h/other"}) == 0  # type: ignore[arg-type]
    assert resume_offset(info, 700, **{**kw, "limit": 300}) == 0  # type: ignore[arg-type]
    full = PartInfo(url="https://h/u", validator='"v"', total=1000, received=1000)
    assert resume_offset(full, 1000, **kw) == 999, "the last byte is fetched again"  # type: ignore[arg-type]
    assert PartInfo.from_json(info.to_json()) == info


def test_transfer_budget() -> None:
    from pinclient._download.rate import TransferBudget

    budget = TransferBudget(now=100.0, deadline=10.0, min_rate=100, window=2.0)
    budget.start_body(101.0, 0)
    assert budget.too_slow(102.0, 50) is None, "the window has not ended"
    assert budget.too_slow(103.0, 400) is None, "200 B/s: fine, next window starts"
    assert budget.too_slow(105.0, 500) == 50.0
    assert budget.remaining(105.0) == 5.0
    assert not budget.expired(109.9)
    assert budget.expired(110.0)
    assert TransferBudget(now=0, deadline=None, min_rate=0, window=1).too_slow(100, 0) is None


def test_sizes() -> None:
    from pinclient._sizes import format_size, parse_size

    assert parse_size("4GiB") == 4 * 1024**3
    assert parse_size("1.5 MB") == 1_500_000
    assert parse_size("100k") == 102_400
    assert parse_size(" 7 ") == 7
    assert parse_size(12) == 12
    for bad in ("", "MB", "-1", "1 parsec", "1e9"):
        with pytest.raises(ValueError, match="not a size"):
            parse_size(bad)
    assert format_size(1536) == "1.5 KiB"
    assert format_size(1000 * 1024) == "1000 KiB"
    assert format_size(12) == "12 B"


def test_a_206_for_a_file_of_another_length_restarts(root_pinned_config: PinConfig,
                                                     tmp_path: Path, big: bytes,
                                                     https_server: ServeHTTPS) -> None:
    # Same validator, different total: not the file the part came from.
    dest = tmp_path / "u.bin"
    with https_server({"/u.bin": ranged(big, Seen(), drop_after={0: 120_000})}) as s:
        with pytest.raises(NetworkError):
            fetch_update(s.url("/u.bin"), dest, config=root_pinned_config, retries=0)
        longer = big + b"appended"
        seen = Seen()
        s.routes["/u.bin"] = ranged(longer, seen)
        result = fetch_update(s.url("/u.bin"), dest, config=root_pinned_config)
    assert seen.ranges[0] is not None
    assert seen.ranges[1] is None, "asked again from byte 0"
    assert result.resumed_from == 0
    assert dest.read_bytes() == longer
