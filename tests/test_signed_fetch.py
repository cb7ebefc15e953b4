"""Signed payloads through fetch-update: with signing keys in the host's pinset (or given), a
payload is saved only with a valid minisign signature by one of them, fetched as ``URL.minisig``
through the same pins (or given with --signature). Every refusal is exit 5 and leaves DEST with its
old bytes; a signature that cannot be trusted is refused before the payload is even requested."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from pinclient import NetworkError, PinViolation, RetryPolicy, SignatureError, UsageError, fetch_update
from pinclient import minisign as ms
from pinclient._cli.main import fetch_main
from pinclient._demo import Response
from pinclient.config import PinConfig, load_pins, parse_pins
from pinclient.errors import PinsFileError

# Fixed keys: cheap to build (no scrypt), so parametrized cases can use them at collection time.
from .conftest import HOST, PKI, ServeHTTPS, pinset, write_pins
from .hostile import Seen, ranged

PUBLISHER = ms.SecretKey(key_id=bytes.fromhex("0102030405060708"), seed=b"\x11" * 32)
STRANGER = ms.SecretKey(key_id=bytes.fromhex("a1a2a3a4a5a6a7a8"), seed=b"\x22" * 32)
PAYLOAD = bytes(range(256)) * 1200 + b"end"  # 307,203 bytes: several reads, odd length
OLD = b"the previous, working version"
FAST = RetryPolicy(retries=2, backoff=0.01)


def signed(data: bytes = PAYLOAD, *, key: ms.SecretKey = PUBLISHER, prehash: bool = True,
           comment: str = "app 2.1") -> bytes:
    return ms.sign(key, data, trusted_comment=comment, prehash=prehash)


def config_with_keys(pki: PKI, folder: Path, *keys: ms.SecretKey) -> PinConfig:
    body = pinset("example-updates", [HOST], f'{{ spki_sha256 = "{pki.pin_of(pki.pinned_root)}" }}')
    if keys:
        body += "signing_keys = [" + ", ".join(f'"{k.public_key.to_string()}"' for k in keys) + "]\n"
    return load_pins(write_pins(folder, body, bundle=pki.bundle))


@pytest.fixture
def signed_config(pki: PKI, tmp_path: Path) -> PinConfig:
    return config_with_keys(pki, tmp_path / "cfg", PUBLISHER)


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(("app.bin.", ".app.bin.")))


# --------------------------------------------------------------------------- accepted


@pytest.mark.parametrize("prehash", [True, False], ids=["prehashed", "legacy"])
def test_signed_payload_is_verified_and_the_signer_reported(signed_config: PinConfig,
                                                            tmp_path: Path, prehash: bool,
                                                            https_server: ServeHTTPS) -> None:
    dest = tmp_path / "app.bin"
    dest.write_bytes(OLD)
    routes = {"/app.bin": Response(200, PAYLOAD),
              "/app.bin.minisig": Response(200, signed(prehash=prehash))}
    with https_server(routes) as server:
        result = fetch_update(server.url("/app.bin"), dest, config=signed_config,
                              allow_legacy_signatures=not prehash)
    assert dest.read_bytes() == PAYLOAD
    assert result.signature is not None
    assert result.signature.key_id_hex == PUBLISHER.key_id_hex
    assert result.signature.trusted_comment == "app 2.1"
    assert result.signature.prehashed is prehash
    # The signature is fetched, through the same pins, before the payload is requested.
    assert server.requests == ["/app.bin.minisig", "/app.bin"]
    assert leftovers(tmp_path) == []
    assert result.to_json()["signature"] == {"key_id": PUBLISHER.key_id_hex,
                                             "trusted_comment": "app 2.1", "prehashed": prehash}


def test_without_signing_keys_no_signature_is_fetched(root_pinned_config: PinConfig,
                                                      tmp_path: Path, https_server: ServeHTTPS) -> None:
    with https_server({"/app.bin": Response(200, PAYLOAD)}) as server:
        result = fetch_update(server.url("/app.bin"), tmp_path / "app.bin", config=root_pinned_config)
    assert result.signature is None
    assert server.requests == ["/app.bin"]


def test_second_key_of_the_pinset_is_accepted_for_rollover(pki: PKI, tmp_path: Path,
                                                           https_server: ServeHTTPS) -> None:
    config = config_with_keys(pki, tmp_path / "cfg", STRANGER, PUBLISHER)
    routes = {"/app.bin": Response(200, PAYLOAD), "/app.bin.minisig": Response(200, signed())}
    with https_server(routes) as server:
        result = fetch_update(server.url("/app.bin"), tmp_path / "app.bin", config=config)
    assert result.signature is not None
    assert result.signature.key_id_hex == PUBLISHER.key_id_hex


@pytest.mark.parametrize("prehash", [True, False], ids=["prehashed", "legacy"])
def test_resumed_download_is_verified_over_the_whole_file(signed_config: PinConfig,
                                                          tmp_path: Path, prehash: bool,
                                                          https_server: ServeHTTPS) -> None:
    # The second run keeps the first run's bytes, which its stream never saw: the signature must
    # still cover them (a tampered kept prefix is refused).
    dest = tmp_path / "app.bin"
    sig = Response(200, signed(prehash=prehash))
    signed_config = dataclasses.replace(signed_config, pinsets=tuple(  # the pinset's opt-in
        dataclasses.replace(p, allow_legacy_signatures=not prehash) for p in signed_config.pinsets))
    routes = {"/app.bin": ranged(PAYLOAD, Seen(), drop_after={0: 100_000}), "/app.bin.minisig": sig,
              "/v2/app.bin": ranged(PAYLOAD, Seen(), drop_after={0: 100_000}), "/v2/app.bin.minisig": sig}
    with https_server(routes) as server:
        with pytest.raises(NetworkError):
            fetch_update(server.url("/app.bin"), dest, config=signed_config, retries=0)
        assert (tmp_path / ".app.bin.pinclient-part").stat().st_size > 0
        result = fetch_update(server.url("/app.bin"), dest, config=signed_config)
        assert result.resumed_from > 0
        assert dest.read_bytes() == PAYLOAD
        assert result.signature is not None
        # Again, with the kept part altered on disk: the signature catches it.
        other = tmp_path / "app2.bin"
        other.write_bytes(OLD)
        with pytest.raises(NetworkError):
            fetch_update(server.url("/v2/app.bin"), other, config=signed_config, retries=0)
        part = tmp_path / ".app2.bin.pinclient-part"
        kept = part.read_bytes()
        assert kept
        part.write_bytes(bytes([kept[0] ^ 1]) + kept[1:])
        with pytest.raises(SignatureError):
            fetch_update(server.url("/v2/app.bin"), other, config=signed_config)
    assert other.read_bytes() == OLD


@pytest.mark.parametrize("legacy", [False, True], ids=["prehashed", "legacy"])
def test_signature_made_by_the_minisign_tool_verifies_through_fetch(pki: PKI, tmp_path: Path,
                                                                   legacy: bool,
                                                                   https_server: ServeHTTPS) -> None:
    tool = shutil.which("minisign")
    if tool is None:
        pytest.skip("the minisign binary is not installed (Debian package: minisign)")
    pub, key, payload = tmp_path / "m.pub", tmp_path / "m.key", tmp_path / "app.bin.src"
    payload.write_bytes(PAYLOAD)
    env = {**os.environ, "MINISIGN_CONFIG_DIR": str(tmp_path / "minisign-config")}
    for args in (["-G", "-W", "-p", pub, "-s", key],
                 ["-S", "-s", key, "-m", payload, "-t", "app 2.1", *(["-l"] if legacy else [])]):
        proc = subprocess.run([tool, *map(str, args)], capture_output=True, env=env, timeout=120,
                              stdin=subprocess.DEVNULL, check=False)
        assert proc.returncode == 0, proc.stderr
    public = ms.PublicKey.from_file(pub)
    routes = {"/app.bin": Response(200, PAYLOAD),
              "/app.bin.minisig": Response(200, (tmp_path / "app.bin.src.minisig").read_bytes())}
    with https_server(routes) as server:
        result = fetch_update(server.url("/app.bin"), tmp_path / "app.bin",
                              config=config_with_keys(pki, tmp_path / "cfg"), signing_keys=[public],
                              allow_legacy_signatures=legacy)
    assert result.signature is not None
    assert (result.signature.prehashed, result.signature.trusted_comment) == (not legacy, "app 2.1")
    assert (tmp_path / "app.bin").read_bytes() == PAYLOAD


# --------------------------------------------------------------------------- refused, exit 5


def _tampered_comment() -> bytes:
    lines = signed().split(b"\n")
    lines[2] = b"trusted comment: app 9.9"
    return b"\n".join(lines)


REFUSALS: dict[str, tuple[Callable[[], dict[str, Response]], bool, str]] = {
    # name: (routes, whether the payload may have been requested, what the message says)
    "wrong key": (lambda: {"/app.bin.minisig": Response(200, signed(key=STRANGER))}, False,
                  "not trusted"),
    "tampered payload": (lambda: {"/app.bin": Response(200, PAYLOAD[:-1] + b"!")}, True,
                         "does not match the data"),
    "legacy signature, not allowed": (
        lambda: {"/app.bin.minisig": Response(200, signed(prehash=False))}, False,
        "legacy format"),
    "tampered trusted comment": (lambda: {"/app.bin.minisig": Response(200, _tampered_comment())}, True,
                                 "trusted comment was altered"),
    "missing signature file": (lambda: {"/app.bin.minisig": Response(404, b"not found")}, False,
                               "HTTP 404"),
    "malformed signature file": (lambda: {"/app.bin.minisig": Response(200, b"<html>oops</html>\n")},
                                 False, "malformed"),
    "oversized signature file": (lambda: {"/app.bin.minisig": Response(200, b"x" * 100_000)}, False,
                                 "larger than any minisign signature"),
}


@pytest.mark.parametrize("case", list(REFUSALS))
def test_bad_signature_is_exit_5_and_dest_keeps_its_old_bytes(
        signed_config: PinConfig, tmp_path: Path, case: str,
        capsys: pytest.CaptureFixture[str], https_server: ServeHTTPS) -> None:
    make_routes, payload_may_be_requested, message = REFUSALS[case]
    routes = {"/app.bin": Response(200, PAYLOAD), "/app.bin.minisig": Response(200, signed()),
              **make_routes()}
    dest = tmp_path / "app.bin"
    dest.write_bytes(OLD)
    assert signed_config.path is not None
    with https_server(routes) as server:
        code = fetch_main([server.url("/app.bin"), "-o", str(dest), "--pins", str(signed_config.path),
                           "--retries", "0", "-q"])
    err = capsys.readouterr().err
    assert code == 5, err
    assert message in err
    assert "Traceback" not in err
    assert dest.read_bytes() == OLD
    assert leftovers(tmp_path) == [], "no part file, sidecar or lock left behind"
    if not payload_may_be_requested:
        assert "/app.bin" not in server.requests, "refused before the payload was requested"


def test_signature_errors_are_signature_errors_in_the_library(signed_config: PinConfig,
                                                              tmp_path: Path,
                                                              https_server: ServeHTTPS) -> None:
    routes = {"/app.bin": Response(200, PAYLOAD), "/app.bin.minisig": Response(200, signed(key=STRANGER))}
    with https_server(routes) as server, pytest.raises(SignatureError) as info:
        fetch_update(server.url("/app.bin"), tmp_path / "app.bin", config=signed_config)
    assert info.value.exit_code == 5
    assert PUBLISHER.key_id_hex in info.value.message
    assert STRANGER.key_id_hex in info.value.message


def test_server_error_for_the_signature_is_a_network_error_not_an_unsigned_install(
        signed_config: PinConfig, tmp_path: Path, https_server: ServeHTTPS) -> None:
    routes = {"/app.bin": Response(200, PAYLOAD), "/app.bin.minisig": Response(503, b"busy")}
    with https_server(routes) as server, pytest.raises(NetworkError):
        fetch_update(server.url("/app.bin"), tmp_path / "app.bin", config=signed_config, retries=FAST)
    assert server.requests == ["/app.bin.minisig"] * 3
    assert not (tmp_path / "app.bin").exists()


# --------------------------------------------------------------------------- --signature, --signing-key


def test_signature_from_a_file_or_another_url(signed_config: PinConfig, tmp_path: Path,
                                              https_server: ServeHTTPS) -> None:
    sig_file = tmp_path / "release.minisig"
    sig_file.write_bytes(signed())
    routes = {"/app.bin": Response(200, PAYLOAD), "/sigs/app.sig": Response(200, signed())}
    with https_server(routes) as server:
        by_file = fetch_update(server.url("/app.bin"), tmp_path / "a", config=signed_config,
                               signature=sig_file)
        by_url = fetch_update(server.url("/app.bin"), tmp_path / "b", config=signed_config,
                              signature=server.url("/sigs/app.sig"))
        by_bytes = fetch_update(server.url("/app.bin"), tmp_path / "c", config=signed_config,
                                signature=signed())
    assert by_file.signature == by_url.signature == by_bytes.signature
    assert server.requests == ["/app.bin", "/sigs/app.sig", "/app.bin", "/app.bin"]


def test_signature_url_on_a_rogue_server_is_refused_by_the_pins(pki: PKI, signed_config: PinConfig,
                                                               tmp_path: Path,
                                                               https_server: ServeHTTPS) -> None:
    rogue = https_server({"/app.bin.minisig": Response(200, signed())}, issuer=pki.rogue_root, host="sigs.updates.test")
    body = pinset("example-updates", [HOST, "sigs.updates.test"],
                  f'{{ spki_sha256 = "{pki.pin_of(pki.pinned_root)}" }}')
    body += f'signing_keys = ["{PUBLISHER.public_key.to_string()}"]\n'
    config = load_pins(write_pins(tmp_path / "cfg2", body, bundle=pki.bundle))
    with https_server({"/app.bin": Response(200, PAYLOAD)}) as server, rogue:
        with pytest.raises(PinViolation):
            fetch_update(server.url("/app.bin"), tmp_path / "app.bin", config=config,
                         signature=rogue.url("/app.bin.minisig", host="sigs.updates.test"))
    assert server.requests == []
    assert rogue.requests == []


def test_cli_signature_and_signing_key_options(root_pinned_config: PinConfig, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str],
                                               https_server: ServeHTTPS) -> None:
    # The pinset has no keys: --signing-key supplies one, --signature a local file.
    sig_file = tmp_path / "app.bin.minisig"
    sig_file.write_bytes(signed())
    assert root_pinned_config.path is not None
    pins = str(root_pinned_config.path)
    with https_server({"/app.bin": Response(200, PAYLOAD)}) as server:
        url = server.url("/app.bin")
        ok = fetch_main([url, "-o", str(tmp_path / "a"), "--pins", pins, "--signature", str(sig_file),
                         "--signing-key", PUBLISHER.public_key.to_string()])
        out = capsys.readouterr().out
        wrong = fetch_main([url, "-o", str(tmp_path / "b"), "--pins", pins, "--signature", str(sig_file),
                            "--signing-key", STRANGER.public_key.to_string(), "-q"])
        no_key = fetch_main([url, "-o", str(tmp_path / "c"), "--pins", pins, "--signature", str(sig_file)])
        bad_key = fetch_main([url, "-o", str(tmp_path / "d"), "--pins", pins, "--signing-key", "RWnope"])
        as_json = fetch_main([url, "-o", str(tmp_path / "e"), "--pins", pins, "--signature", str(sig_file),
                              "--signing-key", PUBLISHER.public_key.to_string(), "--json"])
    assert ok == 0
    assert f"minisign signature by key {PUBLISHER.key_id_hex} verified; trusted comment: app 2.1" in out
    assert wrong == 5
    assert no_key == 2, "a signature with no key to check it is a usage error, not an unchecked install"
    assert bad_key == 2
    assert as_json == 0
    assert json.loads(capsys.readouterr().out)["signature"]["key_id"] == PUBLISHER.key_id_hex
    assert not (tmp_path / "b").exists()
    assert not (tmp_path / "c").exists()


def test_library_signing_keys_replace_the_pinsets(signed_config: PinConfig, tmp_path: Path,
                                                  https_server: ServeHTTPS) -> None:
    routes = {"/app.bin": Response(200, PAYLOAD), "/app.bin.minisig": Response(200, signed(key=STRANGER))}
    with https_server(routes) as server:
        result = fetch_update(server.url("/app.bin"), tmp_path / "a", config=signed_config,
                              signing_keys=[STRANGER.public_key.to_string()])
        assert result.signature is not None
        assert result.signature.key_id_hex == STRANGER.key_id_hex
        with pytest.raises(UsageError):
            fetch_update(server.url("/app.bin"), tmp_path / "b", config=signed_config, signing_keys=[])
        with pytest.raises(UsageError):
            fetch_update(server.url("/app.bin"), tmp_path / "c", config=signed_config,
                         signature=tmp_path / "missing.minisig")


# --------------------------------------------------------------------------- pins.toml


BASE = ('version = 1\n[[pinset]]\nname = "updates"\nhosts = ["updates.test"]\n'
        'issuers = [{ spki_sha256 = "C5+lpZ7tcVwmwQIMcRtPbsQtWLABXhQzejna0wHFr8M=" }]\n')


def test_signing_keys_load_deduplicated() -> None:
    key = PUBLISHER.public_key.to_string()
    config = parse_pins(BASE + f'signing_keys = ["{key}", " {key} ", "{STRANGER.public_key.to_string()}"]\n')
    assert config.pinsets[0].signing_keys == (PUBLISHER.public_key, STRANGER.public_key)
    assert parse_pins(BASE).pinsets[0].signing_keys == ()


@pytest.mark.parametrize(("value", "message"), [
    ("[]", "non-empty array"),
    (f'"{PUBLISHER.public_key.to_string()}"', "non-empty array"),
    ('["RWnot-a-key"]', "entry 1"),
    (f'["{PUBLISHER.public_key.to_string()}", 7]', "must be a string"),
    ('["RWQf6LRCGA9i53mlYecO4IzT51TGPpvWucNSCh1CBM0QTaLn73Y7GF"]', "not a minisign public key"),
])
def test_bad_signing_keys_name_the_pinset_and_key(value: str, message: str) -> None:
    with pytest.raises(PinsFileError) as info:
        parse_pins(BASE + f"signing_keys = {value}\n")
    assert info.value.pinset == "updates"
    assert info.value.key == "signing_keys"
    assert message in str(info.value)


def test_signing_keys_only_in_a_pinset() -> None:
    with pytest.raises(PinsFileError, match="unknown key"):
        parse_pins(f'version = 1\n[defaults]\nsigning_keys = ["{PUBLISHER.public_key.to_string()}"]\n')


# --------------------------------------------------------------------------- legacy signatures (issue 14)


def _downgraded(data: bytes) -> bytes:
    """What a compromised update server makes of the publisher's prehashed ``.minisig``: the two
    unsigned algorithm bytes flipped from ``ED`` to ``Ed``, giving a valid legacy signature over
    the 64-byte BLAKE2b-512 of ``data``."""
    sig = ms.Signature.parse(signed(data))
    return dataclasses.replace(sig, algorithm=b"Ed").to_bytes()


@pytest.mark.parametrize("opt_in", ["none", "--allow-legacy-signatures", "pinset"])
def test_prehashed_signature_downgraded_by_the_server_is_refused(
        pki: PKI, tmp_path: Path, opt_in: str, capsys: pytest.CaptureFixture[str],
        https_server: ServeHTTPS) -> None:
    # The server replaces the payload by the 64-byte hash of the real one and serves the
    # downgraded signature: before the fix DEST got 64 bytes the publisher never signed, exit 0.
    # Refused by default, and even with either opt-in (a legacy signature over exactly 64 bytes
    # cannot be told apart from a downgraded one).
    body = pinset("example-updates", [HOST], f'{{ spki_sha256 = "{pki.pin_of(pki.pinned_root)}" }}')
    body += f'signing_keys = ["{PUBLISHER.public_key.to_string()}"]\n'
    if opt_in == "pinset":
        body += "allow_legacy_signatures = true\n"
    pins = write_pins(tmp_path / "cfg", body, bundle=pki.bundle)
    digest = hashlib.blake2b(PAYLOAD, digest_size=64).digest()
    routes = {"/app.bin": Response(200, digest), "/app.bin.minisig": Response(200, _downgraded(PAYLOAD))}
    dest = tmp_path / "app.bin"
    dest.write_bytes(OLD)
    flags = ["--allow-legacy-signatures"] if opt_in.startswith("--") else []
    with https_server(routes) as server:
        code = fetch_main([server.url("/app.bin"), "-o", str(dest), "--pins", str(pins), "-q", *flags])
    err = capsys.readouterr().err
    assert code == 5, err
    assert "legacy" in err
    assert "Traceback" not in err
    assert dest.read_bytes() == OLD
    if opt_in == "none":
        assert server.requests == ["/app.bin.minisig"], "refused before the payload was requested"


def test_legacy_signatures_need_an_explicit_opt_in_per_call_or_per_pinset_key(
        pki: PKI, tmp_path: Path, capsys: pytest.CaptureFixture[str], https_server: ServeHTTPS) -> None:
    legacy = Response(200, signed(prehash=False))
    routes = {"/app.bin": Response(200, PAYLOAD), "/app.bin.minisig": legacy,
              "/bad.bin": Response(200, PAYLOAD[:-1] + b"!"), "/bad.bin.minisig": legacy}
    plain = config_with_keys(pki, tmp_path / "plain", PUBLISHER)
    opted_in = dataclasses.replace(plain, pinsets=tuple(
        dataclasses.replace(p, allow_legacy_signatures=True) for p in plain.pinsets))
    other_key = ms.SecretKey(key_id=PUBLISHER.key_id, seed=b"\x33" * 32).public_key  # same id, other key
    with https_server(routes) as server:
        url = server.url("/app.bin")
        # Default: refused before the payload is requested, with the way out in the message.
        with pytest.raises(SignatureError) as info:
            fetch_update(url, tmp_path / "a", config=plain)
        assert "allow_legacy_signatures = true" in info.value.message
        assert "--allow-legacy-signatures" in info.value.message
        assert server.requests == ["/app.bin.minisig"]
        # Per call (library keyword, FetchOptions field, CLI flag), and per pinset for its own keys.
        assert fetch_update(url, tmp_path / "b", config=plain, allow_legacy_signatures=True).signature
        assert fetch_update(url, tmp_path / "c", config=opted_in).signature
        assert plain.path is not None
        assert fetch_main([url, "-o", str(tmp_path / "d"), "--pins", str(plain.path), "-q",
                           "--allow-legacy-signatures"]) == 0
        # The pinset's opt-in does not extend to keys given by the caller, even with the same id.
        with pytest.raises(SignatureError, match="legacy"):
            fetch_update(url, tmp_path / "e", config=opted_in, signing_keys=[other_key])
        # Allowed legacy signatures are still checked against the data.
        with pytest.raises(SignatureError, match="does not match"):
            fetch_update(server.url("/bad.bin"), tmp_path / "f", config=plain, allow_legacy_signatures=True)
    assert not (tmp_path / "a").exists()
    assert not (tmp_path / "f").exists()
    assert "Traceback" not in capsys.readouterr().err


def test_allow_legacy_signatures_in_pins_toml() -> None:
    key = f'signing_keys = ["{PUBLISHER.public_key.to_string()}"]\n'
    assert parse_pins(BASE + key + "allow_legacy_signatures = true\n").pinsets[0].allow_legacy_signatures
    assert not parse_pins(BASE + key).pinsets[0].allow_legacy_signatures
    # A value that parses must be able to take effect: a boolean, and only beside signing_keys.
    for extra, message in ((key + 'allow_legacy_signatures = "true"\n', "true or false"),
                           (key + "allow_legacy_signatures = 1\n", "true or false"),
                           ("allow_legacy_signatures = true\n", "without signing_keys")):
        with pytest.raises(PinsFileError) as info:
            parse_pins(BASE + extra)
        assert (info.value.pinset, info.value.key) == ("updates", "allow_legacy_signatures")
        assert message in str(info.value)
    with pytest.raises(PinsFileError, match="unknown key"):
        parse_pins("version = 1\n[defaults]\nallow_legacy_signatures = true\n")


def test_a_legacy_signed_manifest_needs_the_same_opt_in(signed_config: PinConfig,
                                                        https_server: ServeHTTPS) -> None:
    # fetch_manifest takes FetchOptions' fields as keywords, so the per-call opt-in reaches it; the
    # manifest host's pinset opt-in would too (its keys are the pinset's).
    from pinclient.manifest import fetch_manifest

    doc = json.dumps({"name": "app", "version": "2.1.0", "url": "app.bin", "size": len(PAYLOAD),
                      "sha256": hashlib.sha256(PAYLOAD).hexdigest()}).encode()
    routes = {"/latest.json": Response(200, doc),
              "/latest.json.minisig": Response(200, signed(doc, prehash=False))}
    with https_server(routes) as server:
        with pytest.raises(SignatureError, match="legacy"):
            fetch_manifest(server.url("/latest.json"), config=signed_config)
        assert server.requests == ["/latest.json.minisig"]
        manifest = fetch_manifest(server.url("/latest.json"), config=signed_config,
                                  allow_legacy_signatures=True)
    assert manifest.version == "2.1.0"
    assert manifest.signature is not None
    assert not manifest.signature.prehashed
