"""Mirrors (issue 16 §3): several URLs for one payload, each pinned on its own and tried in order on
network and HTTP failures and on pin violations (refused and reported, never a request byte); the
same size/hash/signature checks whichever serves it; a part kept from one mirror is continued from
another only when that one answers with the same validator. Real TLS on 127.0.0.1 throughout."""

from __future__ import annotations

import hashlib
import json
import logging
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pinclient import HashMismatch, NetworkError, PinViolation, UsageError, fetch_update
from pinclient import minisign as ms
from pinclient._cli.main import fetch_main
from pinclient._demo import Response
from pinclient._download.resume import resume_verdict
from pinclient.config import PinConfig, load_pins

from . import test_revocation_e2e as revocation_e2e
from .conftest import HOST, PKI, ServeHTTPS, pinset, write_pins
from .hostile import Seen, ranged
from .test_revocation_e2e import World

# The OCSP world of the revocation end-to-end tests (its fixtures), for the revoked-mirror case.
world = revocation_e2e.world
responder = revocation_e2e.responder

BIG = bytes(range(256)) * 1200


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def closed_port() -> int:
    """A loopback port nothing listens on: connecting is refused at once."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A loopback listener that never accepts: the TCP handshake completes in the kernel's backlog
    and the TLS handshake then waits forever."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(8)
        yield int(s.getsockname()[1])


def dead(port: int) -> str:
    return f"https://{HOST}:{port}/u.bin"


@pytest.mark.parametrize("failure", ["refused", "404", "503"])
def test_a_failing_mirror_is_skipped_and_the_result_names_the_one_that_served(
        root_pinned_config: PinConfig, tmp_path: Path, https_server: ServeHTTPS, closed_port: int,
        failure: str, caplog: pytest.LogCaptureFixture) -> None:
    dest = tmp_path / "u.bin"
    with https_server({"/u.bin": Response(int(failure) if failure != "refused" else 200, b"no")}) as bad, \
            https_server({"/u.bin": BIG}) as good:
        first = dead(closed_port) if failure == "refused" else bad.url("/u.bin")
        result = fetch_update(first, dest, urls=[good.url("/u.bin")], config=root_pinned_config,
                              sha256=sha(BIG), retries=0)
    assert dest.read_bytes() == BIG
    assert result.mirror == good.url("/u.bin")
    assert [m for m, _, _ in result.failed_mirrors] == [first]
    assert result.failed_mirrors[0][1] == ("NetworkError" if failure == "refused" else "HTTPStatusError")
    assert result.to_json()["mirror"] == good.url("/u.bin")
    assert any("trying the next one" in r.getMessage() for r in caplog.records)


def test_a_mirror_whose_pins_are_violated_is_refused_reported_and_the_next_tried(
        root_pinned_config: PinConfig, pki: PKI, tmp_path: Path, https_server: ServeHTTPS,
        caplog: pytest.LogCaptureFixture) -> None:
    rogue_seen, good_seen = Seen(), Seen()
    dest = tmp_path / "u.bin"
    with https_server({"/u.bin": ranged(b"malware", rogue_seen)}, issuer=pki.rogue_root) as rogue, \
            https_server({"/u.bin": ranged(BIG, good_seen)}) as good:
        result = fetch_update(rogue.url("/u.bin"), dest, urls=[good.url("/u.bin")],
                              config=root_pinned_config, retries=0)
        assert rogue.handshakes >= 1
    assert rogue_seen.requests == [], "not a request byte to the mirror the pins refused"
    assert dest.read_bytes() == BIG
    assert result.mirror == good.url("/u.bin")
    assert result.failed_mirrors[0][:2] == (rogue.url("/u.bin"), "PinViolation")
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(f"mirror {rogue.url('/u.bin')} failed" in w for w in warnings), warnings


def test_when_every_mirror_fails_the_pin_violation_is_raised_naming_all_of_them(
        root_pinned_config: PinConfig, pki: PKI, tmp_path: Path, https_server: ServeHTTPS,
        closed_port: int) -> None:
    dest = tmp_path / "u.bin"
    dest.write_bytes(b"old")
    with https_server({"/u.bin": b"malware"}, issuer=pki.rogue_root) as rogue:
        with pytest.raises(PinViolation) as info:
            fetch_update(dead(closed_port), dest, urls=[rogue.url("/u.bin")], config=root_pinned_config,
                         retries=0)
    assert info.value.exit_code == 3
    assert info.value.message.startswith("all 2 mirrors failed")
    assert dead(closed_port) in info.value.message
    assert rogue.url("/u.bin") in info.value.message
    assert dest.read_bytes() == b"old"


def test_an_integrity_failure_ends_the_fetch_without_trying_other_mirrors(
        root_pinned_config: PinConfig, tmp_path: Path, https_server: ServeHTTPS) -> None:
    seen = Seen()
    with https_server({"/u.bin": b"stale file"}) as stale, https_server({"/u.bin": ranged(BIG, seen)}) as good:
        with pytest.raises(HashMismatch):
            fetch_update(stale.url("/u.bin"), tmp_path / "u.bin", urls=[good.url("/u.bin")],
                         config=root_pinned_config, sha256=sha(BIG), retries=0)
    assert seen.requests == []


def test_a_part_from_one_mirror_continues_from_another_with_the_same_validator(
        root_pinned_config: PinConfig, tmp_path: Path, https_server: ServeHTTPS) -> None:
    first, second = Seen(), Seen()
    dest = tmp_path / "u.bin"
    with https_server({"/u.bin": ranged(BIG, first, drop_after={0: 100_000})}) as a, \
            https_server({"/u.bin": ranged(BIG, second)}) as b:
        result = fetch_update(a.url("/u.bin"), dest, urls=[b.url("/u.bin")], config=root_pinned_config,
                              sha256=sha(BIG), retries=0)
    assert dest.read_bytes() == BIG
    assert result.mirror == b.url("/u.bin")
    assert 0 < result.resumed_from <= 100_000
    assert second.ranges == [f"bytes={result.resumed_from}-"]
    assert second.requests[0]["if-range"] == '"v1"'


def test_another_mirror_with_another_validator_restarts_from_byte_0(
        root_pinned_config: PinConfig, tmp_path: Path, https_server: ServeHTTPS) -> None:
    first, second = Seen(), Seen()
    dest = tmp_path / "u.bin"
    with https_server({"/u.bin": ranged(BIG, first, drop_after={0: 100_000})}) as a, \
            https_server({"/u.bin": ranged(BIG, second, etag='"other"')}) as b:
        result = fetch_update(a.url("/u.bin"), dest, urls=[b.url("/u.bin")], config=root_pinned_config,
                              sha256=sha(BIG), retries=0)
    assert dest.read_bytes() == BIG
    assert result.resumed_from == 0
    assert second.ranges[0] is not None, "it was asked for the rest, and answered with the whole file"


def test_a_mirror_that_answers_a_range_without_a_validator_is_not_spliced_in(
        root_pinned_config: PinConfig, tmp_path: Path, https_server: ServeHTTPS) -> None:
    # The second mirror serves another file, and answers any Range with 206 without looking at
    # If-Range or sending a validator. No hash is given: only the validator rule keeps the two
    # files from being spliced.
    other = bytes(reversed(BIG))
    asked: list[str | None] = []

    def careless(path: str, headers: dict[str, str]) -> Response:
        asked.append(headers.get("range"))
        if headers.get("range"):
            start = int(headers["range"][6:].split("-")[0])
            return Response(206, other[start:], headers={
                "Content-Range": f"bytes {start}-{len(other) - 1}/{len(other)}"})
        return Response(200, other)

    dest = tmp_path / "u.bin"
    with https_server({"/u.bin": ranged(BIG, Seen(), drop_after={0: 100_000})}) as a, \
            https_server({"/u.bin": careless}) as b:
        result = fetch_update(a.url("/u.bin"), dest, urls=[b.url("/u.bin")], config=root_pinned_config,
                              retries=0)
    assert asked[0] is not None
    assert asked[-1] is None, "the 206 was refused and the whole file asked for"
    assert dest.read_bytes() == other
    assert result.resumed_from == 0


def test_resume_verdict_from_another_mirror_needs_the_very_validator() -> None:
    rest = {"Content-Range": "bytes 10-19/20"}
    assert resume_verdict(206, rest, offset=10, validator='"v1"') == ("append", 20)
    assert resume_verdict(206, rest, offset=10, validator='"v1"', same_source=False) == ("reset", None)
    assert resume_verdict(206, {**rest, "ETag": '"v1"'}, offset=10, validator='"v1"',
                          same_source=False) == ("append", 20)
    date = "Sat, 05 Dec 2026 10:00:00 GMT"
    assert resume_verdict(206, {**rest, "Last-Modified": date}, offset=10, validator=date,
                          same_source=False) == ("append", 20)
    assert resume_verdict(206, {**rest, "Last-Modified": "Sun, 06 Dec 2026 10:00:00 GMT"}, offset=10,
                          validator=date, same_source=False) == ("reset", None)


def test_every_mirror_is_bounded_by_the_one_deadline(root_pinned_config: PinConfig, tmp_path: Path,
                                                     silent_port: int) -> None:
    start = time.monotonic()
    with pytest.raises(NetworkError):
        fetch_update(dead(silent_port), tmp_path / "u.bin", urls=[dead(silent_port) + "?2"],
                     config=root_pinned_config, deadline=1.0, retries=0)
    assert time.monotonic() - start < 3.0, "the deadline covers all mirrors together"


def test_mirrors_that_need_different_signing_keys_are_refused_before_connecting(
        pki: PKI, tmp_path: Path, closed_port: int) -> None:
    key = ms.SecretKey(key_id=bytes.fromhex("0102030405060708"), seed=b"\x11" * 32)
    body = pinset("signed", [HOST], f'{{ spki_sha256 = "{pki.pin_of(pki.pinned_root)}" }}')
    body += f'signing_keys = ["{key.public_key.to_string()}"]\n'
    body += pinset("plain", ["mirror.test"], f'{{ spki_sha256 = "{pki.pin_of(pki.pinned_root)}" }}')
    config = load_pins(write_pins(tmp_path / "cfg", body, bundle=pki.bundle))
    with pytest.raises(UsageError, match="different signing keys"):
        fetch_update(dead(closed_port), tmp_path / "u.bin", config=config,
                     urls=[f"https://mirror.test:{closed_port}/u.bin"])


def test_mirror_urls_are_checked_like_the_url(root_pinned_config: PinConfig, tmp_path: Path) -> None:
    with pytest.raises(UsageError):
        fetch_update("https://updates.test/u", tmp_path / "u", urls=["http://updates.test/u"],
                     config=root_pinned_config)
    with pytest.raises(UsageError, match="a list of mirror URLs"):
        fetch_update("https://updates.test/u", tmp_path / "u", urls="https://updates.test/v",  # type: ignore[arg-type]
                     config=root_pinned_config)


@pytest.fixture
def pins_file(pki: PKI, tmp_path: Path) -> Path:
    body = pinset("example-updates", [HOST], f'{{ spki_sha256 = "{pki.pin_of(pki.pinned_root)}" }}')
    return write_pins(tmp_path / "cfg", body, bundle=pki.bundle)


def test_cli_takes_mirrors_as_more_url_arguments(pins_file: Path, tmp_path: Path, https_server: ServeHTTPS,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    dest = tmp_path / "u.bin"
    with https_server({"/u.bin": Response(503, b"busy")}) as busy, https_server({"/u.bin": BIG}) as good:
        argv = [busy.url("/u.bin"), good.url("/u.bin"), "-o", str(dest), "--pins", str(pins_file),
                "--retries", "0", "--sha256", sha(BIG)]
        assert fetch_main(argv) == 0
        out = capsys.readouterr().out
        assert f"mirror {busy.url('/u.bin')} failed first: HTTPStatusError" in out
        assert fetch_main([*argv, "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["mirror"] == good.url("/u.bin")
    assert doc["failed_mirrors"][0]["error"] == "HTTPStatusError"
    assert dest.read_bytes() == BIG


def test_signed_manifest_urls_are_mirrors(pki: PKI, tmp_path: Path, https_server: ServeHTTPS) -> None:
    from pinclient.manifest import fetch_from_manifest

    from .test_manifest import PAYLOAD, PUBLISHER, manifest_doc

    body = pinset("example-updates", [HOST], f'{{ spki_sha256 = "{pki.pin_of(pki.pinned_root)}" }}')
    body += f'signing_keys = ["{PUBLISHER.public_key.to_string()}"]\n'
    config = load_pins(write_pins(tmp_path / "cfg", body, bundle=pki.bundle))
    with https_server({"/app.tar.gz": PAYLOAD}) as mirror:
        doc = manifest_doc(url="missing.tar.gz", urls=[mirror.url("/app.tar.gz")])
        routes = {"/channel/latest.json": Response(200, doc),
                  "/channel/latest.json.minisig": Response(200, ms.sign(PUBLISHER, doc, trusted_comment="m"))}
        with https_server(routes) as origin:  # type: ignore[arg-type]
            result = fetch_from_manifest(origin.url("/channel/latest.json"), tmp_path / "app.tar.gz",
                                         config=config, retries=0)
    assert result.manifest.urls == (mirror.url("/app.tar.gz"),)
    assert result.fetch is not None
    assert result.fetch.mirror == mirror.url("/app.tar.gz")
    assert (tmp_path / "app.tar.gz").read_bytes() == PAYLOAD


def test_a_signed_payload_is_verified_with_the_signature_of_the_mirror_that_serves_it(
        pki: PKI, tmp_path: Path, https_server: ServeHTTPS, closed_port: int) -> None:
    from pinclient import SignatureError

    from .test_signed_fetch import PAYLOAD, STRANGER, config_with_keys, signed

    config = config_with_keys(pki, tmp_path / "cfg", ms.SecretKey(key_id=bytes.fromhex("0102030405060708"),
                                                                  seed=b"\x11" * 32))
    dest = tmp_path / "app.bin"
    good_routes = {"/app.bin": Response(200, PAYLOAD), "/app.bin.minisig": Response(200, signed())}
    with https_server(good_routes) as good:  # type: ignore[arg-type]
        result = fetch_update(f"https://{HOST}:{closed_port}/app.bin", dest, urls=[good.url("/app.bin")],
                              config=config, retries=0)
        assert good.requests == ["/app.bin.minisig", "/app.bin"], "its own .minisig, before the payload"
    assert result.signature is not None
    assert result.mirror == good.url("/app.bin")
    assert dest.read_bytes() == PAYLOAD
    # A mirror whose signature is by another key is refused, and no other mirror is shopped for.
    forged = {"/app.bin": Response(200, PAYLOAD), "/app.bin.minisig": Response(200, signed(key=STRANGER))}
    dest.write_bytes(b"old")
    with https_server(forged) as bad, https_server(good_routes) as good:  # type: ignore[arg-type]
        with pytest.raises(SignatureError):
            fetch_update(bad.url("/app.bin"), dest, urls=[good.url("/app.bin")], config=config, retries=0)
        assert good.requests == []
    assert dest.read_bytes() == b"old"


def test_a_mirror_with_a_revoked_certificate_is_refused_and_the_next_tried(
        responder: World, tmp_path: Path, https_server: ServeHTTPS, closed_port: int) -> None:
    from pinclient import CertificateRevoked
    from pinclient._download.retry import RetryPolicy

    from .revocation_pki import index_line
    from .test_revocation_e2e import KEY_COMPROMISE, start_ocsp
    from .test_revocation_e2e import write_pins as revocation_pins

    revoked, good_leaf = responder.leaf(), responder.leaf()
    start_ocsp(responder, tmp_path, index_line(revoked.cert, revoked=KEY_COMPROMISE)
               + index_line(good_leaf.cert))
    config = load_pins(revocation_pins(tmp_path / "cfg", responder, revocation="hard-fail"))
    dest = tmp_path / "u.bin"
    with https_server({"/u.bin": b"from a revoked certificate"}, leaf=revoked) as bad, \
            https_server({"/u.bin": BIG}, leaf=good_leaf) as good:
        result = fetch_update(bad.url("/u.bin"), dest, urls=[good.url("/u.bin")], config=config,
                              retries=RetryPolicy(retries=0))
        assert all(c.received == b"" for c in bad.conns), "not a request byte to the revoked mirror"
        assert result.mirror == good.url("/u.bin")
        assert result.failed_mirrors[0][:2] == (bad.url("/u.bin"), "CertificateRevoked")
        assert dest.read_bytes() == BIG
        # Every mirror failing: the revocation outranks the outage that came after it (exit 4).
        with pytest.raises(CertificateRevoked) as info:
            fetch_update(bad.url("/u.bin"), tmp_path / "v.bin", urls=[dead(closed_port)], config=config,
                         retries=0)
    assert info.value.exit_code == 4
    assert dead(closed_port) in info.value.message


def test_a_refused_mirror_reaches_the_terminal_escaped(
        pki: PKI, tmp_path: Path, https_server: ServeHTTPS, capsys: pytest.CaptureFixture[str]) -> None:
    from .test_output_escaping import EVIL, assert_clean

    evil = pki.pinned_root.child_ca("unused", subject=EVIL)  # its subject is an injection attempt
    body = pinset("only-rogue", [HOST], f'{{ spki_sha256 = "{pki.pin_of(pki.rogue_root)}" }}')
    pins = write_pins(tmp_path / "cfg", body, bundle=pki.bundle)
    dest = tmp_path / "u.bin"
    with https_server({"/u.bin": b"x"}, issuer=evil) as refused, \
            https_server({"/u.bin": BIG}, issuer=pki.rogue_root) as served:
        argv = [refused.url("/u.bin"), served.url("/u.bin"), "-o", str(dest), "--pins", str(pins),
                "--retries", "0"]
        assert fetch_main(argv) == 0
        captured = capsys.readouterr()
        assert f"mirror {refused.url('/u.bin')} failed first: PinViolation" in captured.out
        assert_clean(captured.out)
        assert_clean(captured.err)  # the warning that the next mirror is tried
        assert fetch_main([*argv, "--json"]) == 0
        doc = json.loads(capsys.readouterr().out)
    assert_clean(doc["failed_mirrors"][0]["message"])
    logging.getLogger("pinclient").handlers.clear()
