"""minisign signatures: a publisher signs an update, a client accepts it only when a trusted key
signed exactly these bytes and this trusted comment.

Interop tests run the real ``minisign`` when it is installed (Debian package ``minisign``) and
skip otherwise. Nothing here touches the network.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import dataclasses
import hashlib
import io
import os
import re
import shutil
import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pinclient import minisign as ms
from pinclient._cli.sign import (
    PASSWORD_ENV,
    configure_keygen,
    configure_sign,
    run_keygen,
    run_sign,
)
from pinclient.errors import SignatureError, UsageError

PAYLOAD = bytes(range(256)) * 1000 + b"tail"  # 256,004 bytes: several read chunks, odd length

# Fixed keys so that parametrized cases can be built at collection time (cheap: no scrypt).
TRUSTED = ms.SecretKey(key_id=bytes.fromhex("0102030405060708"), seed=b"\x11" * 32)
STRANGER = ms.SecretKey(key_id=bytes.fromhex("a1a2a3a4a5a6a7a8"), seed=b"\x22" * 32)
TRUSTED_PUB = TRUSTED.public_key
VALID_SIG = ms.sign(TRUSTED, PAYLOAD, trusted_comment="release 1.2.3")


def _b64(raw: bytes) -> bytes:
    return base64.b64encode(raw)


def _lines(data: bytes) -> list[bytes]:
    return data.split(b"\n")


def _verify(sig_bytes: bytes, data: bytes = PAYLOAD) -> ms.VerifiedSignature:
    return ms.verify_data([TRUSTED_PUB], ms.Signature.parse(sig_bytes), data, allow_legacy=True)


def _flip(data: bytes, index: int) -> bytes:
    return data[:index] + bytes([data[index] ^ 0x01]) + data[index + 1:]


# --- accepting good signatures ---------------------------------------------------------------


def test_prehashed_signature_streams_and_reports_signer_and_trusted_comment() -> None:
    verifier = ms.Verifier([STRANGER.public_key, TRUSTED_PUB], ms.Signature.parse(VALID_SIG))
    assert not verifier.needs_file
    for start in range(0, len(PAYLOAD), 10_000):
        verifier.update(PAYLOAD[start:start + 10_000])
    result = verifier.verify()
    assert result.key == TRUSTED_PUB
    assert result.key_id == TRUSTED.key_id
    assert result.key_id_hex == "0807060504030201"  # minisign prints the little-endian u64
    assert result.trusted_comment == "release 1.2.3"
    assert result.prehashed


@pytest.mark.parametrize("chunk", [1, 7, 4093, 65537, len(PAYLOAD) + 1])
def test_streaming_in_odd_sized_chunks_equals_one_shot(chunk: int) -> None:
    signature = ms.Signature.parse(VALID_SIG)
    verifier = ms.Verifier([TRUSTED_PUB], signature)
    view = memoryview(PAYLOAD)
    for start in range(0, len(PAYLOAD), chunk):
        verifier.update(view[start:start + chunk])
    assert verifier.verify() == ms.verify_data([TRUSTED_PUB], signature, PAYLOAD)


def test_signing_a_file_equals_signing_its_bytes(tmp_path: Path) -> None:
    path = tmp_path / "update.bin"
    path.write_bytes(PAYLOAD)
    sig = ms.Signature.parse(ms.sign(TRUSTED, path, trusted_comment="x"))
    assert sig.prehashed
    assert ms.verify_data([TRUSTED_PUB], sig, PAYLOAD).trusted_comment == "x"
    assert ms.verify_file([TRUSTED_PUB], sig, path).trusted_comment == "x"


def test_legacy_signature_is_verified_from_the_finished_file(tmp_path: Path) -> None:
    path = tmp_path / "update.bin"
    path.write_bytes(PAYLOAD)
    sig = ms.Signature.parse(ms.sign(TRUSTED, path, prehash=False))
    assert sig.algorithm == b"Ed"
    assert not sig.prehashed
    verifier = ms.Verifier([TRUSTED_PUB], sig, allow_legacy=True)
    assert verifier.needs_file
    verifier.update(PAYLOAD[:100])  # accepted and ignored: a download loop need not branch
    with pytest.raises(ValueError, match="file_path"):
        verifier.verify()
    result = verifier.verify(file_path=path)
    assert not result.prehashed
    assert ms.verify_file([TRUSTED_PUB], sig, path, allow_legacy=True) == result
    assert ms.verify_data([TRUSTED_PUB], sig, PAYLOAD, allow_legacy=True) == result


def test_empty_payload_signs_and_verifies_both_ways(tmp_path: Path) -> None:
    path = tmp_path / "empty"
    path.write_bytes(b"")
    for prehash in (True, False):
        sig = ms.Signature.parse(ms.sign(TRUSTED, path, prehash=prehash))
        ms.verify_file([TRUSTED_PUB], sig, path, allow_legacy=True)
        with pytest.raises(SignatureError):
            ms.verify_data([TRUSTED_PUB], sig, b"\0", allow_legacy=True)


def test_crlf_signature_file_is_accepted() -> None:
    assert _verify(VALID_SIG.replace(b"\n", b"\r\n")).trusted_comment == "release 1.2.3"


def test_untrusted_comment_may_change_without_breaking_the_signature() -> None:
    lines = _lines(VALID_SIG)
    lines[0] = b"untrusted comment: anything at all"
    sig = ms.Signature.parse(b"\n".join(lines))
    assert sig.untrusted_comment == "anything at all"
    ms.verify_data([TRUSTED_PUB], sig, PAYLOAD)


def test_signature_round_trips_through_bytes() -> None:
    sig = ms.Signature.parse(VALID_SIG)
    assert sig.to_bytes() == VALID_SIG
    assert ms.Signature.parse(sig.to_bytes()) == sig


# --- refusing bad ones -----------------------------------------------------------------------


def test_signature_by_untrusted_key_is_refused_naming_both_key_ids() -> None:
    sig = ms.Signature.parse(ms.sign(STRANGER, PAYLOAD))
    with pytest.raises(SignatureError) as excinfo:
        ms.Verifier([TRUSTED_PUB], sig)
    assert STRANGER.key_id_hex in excinfo.value.message
    assert TRUSTED.key_id_hex in excinfo.value.message


def test_no_trusted_keys_refuses_everything() -> None:
    with pytest.raises(SignatureError, match="not trusted"):
        ms.verify_data([], ms.Signature.parse(VALID_SIG), PAYLOAD)


def test_forged_signature_claiming_a_trusted_key_id_is_refused() -> None:
    # An attacker copies the trusted key id into a signature made with their own key.
    forger = ms.SecretKey(key_id=TRUSTED.key_id, seed=STRANGER.seed)
    with pytest.raises(SignatureError, match="does not match"):
        _verify(ms.sign(forger, PAYLOAD, trusted_comment="release 1.2.3"))


@pytest.mark.parametrize("prehash", [True, False], ids=["prehashed", "legacy"])
@pytest.mark.parametrize("index", [0, 123_456, len(PAYLOAD) - 1])
def test_tampered_payload_is_refused(prehash: bool, index: int) -> None:
    sig = ms.sign(TRUSTED, PAYLOAD, prehash=prehash)
    _verify(sig)
    with pytest.raises(SignatureError, match="does not match"):
        _verify(sig, _flip(PAYLOAD, index))
    with pytest.raises(SignatureError, match="does not match"):
        _verify(sig, PAYLOAD + b"\0")


def test_tampered_payload_file_is_refused_in_legacy_mode(tmp_path: Path) -> None:
    path = tmp_path / "update.bin"
    path.write_bytes(PAYLOAD)
    sig = ms.Signature.parse(ms.sign(TRUSTED, path, prehash=False))
    path.write_bytes(_flip(PAYLOAD, 5))
    with pytest.raises(SignatureError, match="does not match"):
        ms.verify_file([TRUSTED_PUB], sig, path, allow_legacy=True)


def test_tampered_trusted_comment_is_refused() -> None:
    tampered = VALID_SIG.replace(b"release 1.2.3", b"release 9.9.9")
    with pytest.raises(SignatureError, match="trusted comment"):
        _verify(tampered)


def test_tampered_global_signature_is_refused() -> None:
    sig = ms.Signature.parse(VALID_SIG)
    bad = dataclasses.replace(sig, global_signature=_flip(sig.global_signature, 10))
    with pytest.raises(SignatureError, match="trusted comment"):
        ms.verify_data([TRUSTED_PUB], bad, PAYLOAD)


def test_trusted_comment_of_another_signature_cannot_be_grafted() -> None:
    # The global signature covers the payload signature too, so a comment (with its valid global
    # signature) taken from an older release cannot be attached to a new one.
    old = ms.Signature.parse(ms.sign(TRUSTED, b"old release", trusted_comment="version 1"))
    new = ms.Signature.parse(VALID_SIG)
    grafted = dataclasses.replace(
        new, trusted_comment=old.trusted_comment, global_signature=old.global_signature
    )
    with pytest.raises(SignatureError, match="trusted comment"):
        ms.verify_data([TRUSTED_PUB], grafted, PAYLOAD)


def test_legacy_signature_refused_when_not_allowed(tmp_path: Path) -> None:
    # Refused by default (minisign accepts legacy unless -V -H; pinclient only when asked), by every
    # entry point, before any payload byte is read.
    sig = ms.Signature.parse(ms.sign(TRUSTED, PAYLOAD, prehash=False))
    path = tmp_path / "update.bin"
    path.write_bytes(PAYLOAD)
    for refuse in (lambda: ms.Verifier([TRUSTED_PUB], sig, allow_legacy=False),
                   lambda: ms.Verifier([TRUSTED_PUB], sig),
                   lambda: ms.verify_data([TRUSTED_PUB], sig, PAYLOAD),
                   lambda: ms.verify_file([TRUSTED_PUB], sig, path)):
        with pytest.raises(SignatureError, match="legacy"):
            refuse()
    ms.Verifier([TRUSTED_PUB], ms.Signature.parse(VALID_SIG), allow_legacy=False)
    assert ms.verify_data([TRUSTED_PUB], sig, PAYLOAD, allow_legacy=True).prehashed is False


def _downgrade(sig_bytes: bytes) -> ms.Signature:
    """A prehashed signature with its two algorithm bytes flipped to legacy: neither the signature
    nor the global signature covers them."""
    return dataclasses.replace(ms.Signature.parse(sig_bytes), algorithm=b"Ed")


@pytest.mark.parametrize("payload", [PAYLOAD, b"", b"x" * 64], ids=["large", "empty", "64 bytes"])
def test_prehashed_signature_downgraded_to_legacy_is_refused_even_when_legacy_is_allowed(
        tmp_path: Path, payload: bytes) -> None:
    # Issue 14: flip "ED" to "Ed" and the signature is a valid legacy one over the 64-byte
    # BLAKE2b-512 of the file really signed; a compromised server serves those 64 bytes instead.
    signed = ms.sign(TRUSTED, payload, trusted_comment="app 2.1")
    digest = hashlib.blake2b(payload, digest_size=64).digest()
    downgraded = _downgrade(signed)
    TRUSTED_PUB._ed25519().verify(downgraded.signature, digest)  # the premise: it does verify
    # Round trip through the file format, as a server would serve it.
    downgraded = ms.Signature.parse(downgraded.to_bytes())
    assert not downgraded.prehashed
    evil = tmp_path / "evil.bin"
    evil.write_bytes(digest)
    for allow in (False, True):
        with pytest.raises(SignatureError, match="legacy"):
            ms.verify_data([TRUSTED_PUB], downgraded, digest, allow_legacy=allow)
        with pytest.raises(SignatureError, match="legacy"):
            ms.verify_file([TRUSTED_PUB], downgraded, evil, allow_legacy=allow)
    # The genuine signature still verifies the genuine payload.
    assert _verify(signed, payload).trusted_comment == "app 2.1"


def test_a_genuine_legacy_signature_over_64_bytes_is_refused_too() -> None:
    # It cannot be told apart from a downgraded prehashed one; 63 and 65 bytes are fine.
    for size, ok in ((63, True), (64, False), (65, True)):
        data = b"\x07" * size
        sig = ms.Signature.parse(ms.sign(TRUSTED, data, prehash=False))
        if ok:
            ms.verify_data([TRUSTED_PUB], sig, data, allow_legacy=True)
        else:
            with pytest.raises(SignatureError, match="64 bytes"):
                ms.verify_data([TRUSTED_PUB], sig, data, allow_legacy=True)


def test_verifier_misuse_is_a_value_error(tmp_path: Path) -> None:
    verifier = ms.Verifier([TRUSTED_PUB], ms.Signature.parse(VALID_SIG))
    with pytest.raises(ValueError, match="update"):
        verifier.verify(file_path=tmp_path / "x")
    verifier.update(PAYLOAD)
    verifier.verify()
    with pytest.raises(ValueError, match="after verify"):
        verifier.update(b"more")
    with pytest.raises(ValueError, match="twice"):
        verifier.verify()


# --- malformed .minisig files ----------------------------------------------------------------

_UC, _SIG, _TC, _GSIG, _END = _lines(VALID_SIG)
_SIG_RAW = base64.b64decode(_SIG)
_GSIG_RAW = base64.b64decode(_GSIG)


def _file(*lines: bytes) -> bytes:
    return b"\n".join(lines) + b"\n"


MALFORMED: dict[str, bytes] = {
    "empty": b"",
    "only-newlines": b"\n\n\n\n",
    "one-line": _file(_UC),
    "missing-trusted-comment": _file(_UC, _SIG),
    "missing-global-signature": _file(_UC, _SIG, _TC),
    "empty-global-signature": _file(_UC, _SIG, _TC, b""),
    "no-untrusted-prefix": _file(b"comment: x", _SIG, _TC, _GSIG),
    "untrusted-prefix-wrong-case": _file(b"Untrusted comment: x", _SIG, _TC, _GSIG),
    "no-trusted-prefix": _file(_UC, _SIG, b"trusted: release 1.2.3", _GSIG),
    "lines-swapped": _file(_UC, _TC, _SIG, _GSIG),
    "signature-bad-base64": _file(_UC, b"!" + _SIG[1:], _TC, _GSIG),
    "signature-missing-padding": _file(_UC, _SIG.rstrip(b"="), _TC, _GSIG),
    "signature-leading-space": _file(_UC, b" " + _SIG, _TC, _GSIG),
    "signature-non-ascii": _file(_UC, _SIG + "é".encode(), _TC, _GSIG),
    "signature-73-bytes": _file(_UC, _b64(_SIG_RAW[:73]), _TC, _GSIG),
    "signature-75-bytes": _file(_UC, _b64(_SIG_RAW + b"\0"), _TC, _GSIG),
    "algorithm-unknown": _file(_UC, _b64(b"Ex" + _SIG_RAW[2:]), _TC, _GSIG),
    "algorithm-lowercase": _file(_UC, _b64(b"ed" + _SIG_RAW[2:]), _TC, _GSIG),
    "algorithm-zero": _file(_UC, _b64(b"\0\0" + _SIG_RAW[2:]), _TC, _GSIG),
    "public-key-instead-of-signature": _file(_UC, TRUSTED_PUB.to_string().encode(), _TC, _GSIG),
    "global-signature-bad-base64": _file(_UC, _SIG, _TC, _GSIG[:-3] + b"*=="),
    "global-signature-63-bytes": _file(_UC, _SIG, _TC, _b64(_GSIG_RAW[:63])),
    "global-signature-65-bytes": _file(_UC, _SIG, _TC, _b64(_GSIG_RAW + b"\0")),
    "global-signature-truncated": VALID_SIG[:-20],
    "nul-in-trusted-comment": _file(_UC, _SIG, _TC + b"\0hidden", _GSIG),
    "trusted-comment-too-long": _file(
        _UC, _SIG, b"trusted comment: " + b"a" * (ms.MAX_TRUSTED_COMMENT + 1), _GSIG
    ),
    "untrusted-comment-too-long": _file(
        b"untrusted comment: " + b"a" * (ms.MAX_UNTRUSTED_COMMENT + 1), _SIG, _TC, _GSIG
    ),
    "data-after-global-signature": VALID_SIG + b"untrusted comment: second\n",
    "larger-than-any-signature": VALID_SIG + b"\n" * ms.MAX_SIGNATURE_FILE_SIZE,
    "binary-garbage": bytes(range(256)) * 4,
}


@pytest.mark.parametrize("data", list(MALFORMED.values()), ids=list(MALFORMED))
def test_malformed_signature_file_raises_signature_error(data: bytes) -> None:
    with pytest.raises(SignatureError):
        ms.Signature.parse(data)


def test_every_truncation_and_bit_flip_is_refused_or_harmless() -> None:
    """No corruption of a .minisig raises anything but SignatureError, and none verifies unless it
    only touched the untrusted comment (or line ends)."""
    original = ms.Signature.parse(VALID_SIG)
    signed_fields = ("algorithm", "key_id", "signature", "trusted_comment", "global_signature")
    variants = [VALID_SIG[:i] for i in range(len(VALID_SIG))]
    variants += [
        VALID_SIG[:i] + bytes([VALID_SIG[i] ^ bit]) + VALID_SIG[i + 1:]
        for i in range(len(VALID_SIG)) for bit in (0x01, 0x20, 0x80)
    ]
    for data in variants:
        try:
            sig = ms.Signature.parse(data)
            result = ms.verify_data([TRUSTED_PUB], sig, PAYLOAD)
        except SignatureError:
            continue
        for name in signed_fields:
            assert getattr(sig, name) == getattr(original, name), data
        assert result.trusted_comment == "release 1.2.3"


@settings(max_examples=300, database=None, deadline=None)
@given(st.binary(max_size=600))
def test_arbitrary_bytes_never_raise_anything_but_signature_error(data: bytes) -> None:
    with contextlib.suppress(SignatureError):
        ms.Signature.parse(data)


# --- public keys -----------------------------------------------------------------------------


def test_public_key_round_trips_as_string_and_file(tmp_path: Path) -> None:
    text = TRUSTED_PUB.to_string()
    assert text.startswith("RW")
    assert len(text) == 56
    assert ms.PublicKey.from_string(f"  {text}\n") == TRUSTED_PUB
    path = tmp_path / "minisign.pub"
    TRUSTED_PUB.to_file(path)
    assert path.read_text() == (
        f"untrusted comment: minisign public key {TRUSTED_PUB.key_id_hex}\n{text}\n"
    )
    assert ms.PublicKey.from_file(path) == TRUSTED_PUB
    assert text in repr(TRUSTED_PUB)


MALFORMED_PUBLIC_KEYS: dict[str, str] = {
    "empty": "",
    "prefix-only": "RW",
    "not-base64": "RW" + "!" * 54,
    "41-bytes": _b64(b"Ed" + b"\0" * 39).decode(),
    "43-bytes": _b64(b"Ed" + b"\0" * 41).decode(),
    "prehashed-algorithm": _b64(b"ED" + b"\0" * 40).decode(),
    "a-signature": _SIG.decode(),
    "non-ascii": "RWé" + TRUSTED_PUB.to_string()[3:],
}


@pytest.mark.parametrize("text", list(MALFORMED_PUBLIC_KEYS.values()), ids=list(MALFORMED_PUBLIC_KEYS))
def test_malformed_public_key_raises_signature_error(text: str) -> None:
    with pytest.raises(SignatureError):
        ms.PublicKey.from_string(text)


@pytest.mark.parametrize(
    "content",
    [b"", TRUSTED_PUB.to_string().encode() + b"\n", b"untrusted comment: x\n\xff\xfe\n"],
    ids=["empty", "no-comment-line", "binary-key-line"],
)
def test_malformed_public_key_file_raises_signature_error(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "bad.pub"
    path.write_bytes(content)
    with pytest.raises(SignatureError):
        ms.PublicKey.from_file(path)


# --- secret keys -----------------------------------------------------------------------------


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _key_raw(data: bytes) -> bytearray:
    return bytearray(base64.b64decode(_lines(data)[1]))


def _key_file(raw: bytes) -> bytes:
    return b"untrusted comment: test key\n" + _b64(bytes(raw)) + b"\n"


def test_unencrypted_secret_key_round_trip(tmp_path: Path) -> None:
    secret, public = ms.generate_keypair(None)
    path = tmp_path / "minisign.key"
    secret.to_file(path)
    assert _mode(path) == 0o600
    assert _key_raw(path.read_bytes())[2:4] == b"\0\0"
    loaded = ms.SecretKey.from_file(path)
    assert loaded == secret
    assert loaded.password is None
    assert loaded.public_key == public
    ms.verify_data([public], ms.Signature.parse(ms.sign(loaded, b"data")), b"data")


def test_encrypted_secret_key_round_trip_and_wrong_password(tmp_path: Path) -> None:
    secret, public = ms.generate_keypair("correct horse")
    path = tmp_path / "minisign.key"
    secret.to_file(path, limits=ms.SCRYPT_INTERACTIVE)
    assert _mode(path) == 0o600
    raw = _key_raw(path.read_bytes())
    assert raw[:6] == b"EdScB2"
    assert secret.seed not in raw  # the seed is not stored in clear
    asked: list[int] = []

    def ask() -> str:
        asked.append(1)
        return "correct horse"

    loaded = ms.SecretKey.from_file(path, ask)
    assert asked == [1]
    assert loaded == secret
    assert loaded.password == "correct horse"
    assert loaded.public_key == public
    with pytest.raises(SignatureError, match="wrong password"):
        ms.SecretKey.from_file(path, "correct horse!")
    with pytest.raises(SignatureError, match="password is needed"):
        ms.SecretKey.from_file(path)


def test_password_is_not_asked_for_an_unencrypted_key(tmp_path: Path) -> None:
    path = tmp_path / "k"
    TRUSTED.to_file(path)

    def ask() -> str:
        raise AssertionError("asked for a password")

    assert ms.SecretKey.from_file(path, ask) == TRUSTED


def test_password_can_be_changed_or_removed(tmp_path: Path) -> None:
    encrypted = TRUSTED.with_password("pw").to_file_bytes(limits=ms.SCRYPT_INTERACTIVE)
    loaded = ms.SecretKey.from_file_bytes(encrypted, "pw")
    plain = loaded.to_file_bytes(None)
    assert _key_raw(plain)[2:4] == b"\0\0"
    assert ms.SecretKey.from_file_bytes(plain) == TRUSTED


def test_key_files_are_never_overwritten_without_force(tmp_path: Path) -> None:
    secret_path, public_path = tmp_path / "k.key", tmp_path / "k.pub"
    secret_path.write_bytes(b"precious")
    public_path.write_bytes(b"precious")
    with pytest.raises(FileExistsError):
        TRUSTED.to_file(secret_path)
    with pytest.raises(FileExistsError):
        TRUSTED_PUB.to_file(public_path)
    assert secret_path.read_bytes() == public_path.read_bytes() == b"precious"
    secret_path.chmod(0o644)
    TRUSTED.to_file(secret_path, force=True)
    TRUSTED_PUB.to_file(public_path, force=True)
    assert _mode(secret_path) == 0o600  # replaced, not rewritten in place with the old mode
    assert ms.SecretKey.from_file(secret_path) == TRUSTED
    assert ms.PublicKey.from_file(public_path) == TRUSTED_PUB
    assert sorted(p.name for p in tmp_path.iterdir()) == ["k.key", "k.pub"]


def test_minisign_style_unencrypted_key_with_zero_checksum_loads() -> None:
    # `minisign -G -W` never computes the checksum of an unencrypted key: it stays all zero.
    raw = _key_raw(TRUSTED.to_file_bytes(None))
    raw[-32:] = bytes(32)
    assert ms.SecretKey.from_file_bytes(_key_file(raw)) == TRUSTED


def test_corrupted_secret_key_is_refused_by_its_checksum() -> None:
    raw = _key_raw(TRUSTED.to_file_bytes(None))
    raw[54] ^= 1  # first key id byte: only the checksum covers it
    with pytest.raises(SignatureError, match="checksum"):
        ms.SecretKey.from_file_bytes(_key_file(raw))


def test_secret_key_whose_public_half_does_not_match_is_refused() -> None:
    raw = _key_raw(TRUSTED.to_file_bytes(None))
    raw[62 + 32:62 + 64] = STRANGER.public_key.key  # the public half libsodium would sign with
    raw[-32:] = bytes(32)  # minisign-style zero checksum, so only the consistency check remains
    with pytest.raises(SignatureError, match="public half"):
        ms.SecretKey.from_file_bytes(_key_file(raw))


def _with(raw: bytes, start: int, new: bytes) -> bytes:
    return _key_file(raw[:start] + new + raw[start + len(new):])


_GOOD_KEY_RAW = bytes(_key_raw(TRUSTED.to_file_bytes(None)))
MALFORMED_SECRET_KEYS: dict[str, bytes] = {
    "empty": b"",
    "no-comment-line": _b64(_GOOD_KEY_RAW) + b"\n",
    "bad-base64": b"untrusted comment: x\n" + b"!" * 212 + b"\n",
    "truncated": _key_file(_GOOD_KEY_RAW[:-1]),
    "too-long": _key_file(_GOOD_KEY_RAW + b"\0"),
    "signature-algorithm": _with(_GOOD_KEY_RAW, 0, b"ED"),
    "kdf-algorithm": _with(_GOOD_KEY_RAW, 2, b"Xx"),
    "checksum-algorithm": _with(_GOOD_KEY_RAW, 4, b"B3"),
    "a-public-key": b"untrusted comment: x\n" + TRUSTED_PUB.to_string().encode() + b"\n",
}


@pytest.mark.parametrize(
    "content", list(MALFORMED_SECRET_KEYS.values()), ids=list(MALFORMED_SECRET_KEYS)
)
def test_malformed_secret_key_raises_signature_error(content: bytes) -> None:
    with pytest.raises(SignatureError):
        ms.SecretKey.from_file_bytes(content, "pw")


def test_scrypt_parameters_follow_libsodium_pickparams() -> None:
    assert ms.scrypt_parameters(ms.SCRYPT_SENSITIVE) == (2**20, 8, 1)  # minisign's default
    assert ms.scrypt_parameters(ms.SCRYPT_INTERACTIVE) == (2**14, 8, 1)
    # opslimit < memlimit / 32: N from opslimit, p = 1 (and opslimit is raised to 32768).
    assert ms.scrypt_parameters(ms.ScryptLimits(32768, 2**24)) == (2**10, 8, 1)
    assert ms.scrypt_parameters(ms.ScryptLimits(0, 2**30)) == (2**10, 8, 1)
    # Otherwise N from memlimit, and the rest of opslimit goes into p.
    assert ms.scrypt_parameters(ms.ScryptLimits(2**28, 2**24)) == (2**14, 8, 512)


def test_secret_key_with_absurd_scrypt_limits_is_refused_without_hanging() -> None:
    raw = bytes(_key_raw(TRUSTED.with_password("pw").to_file_bytes(limits=ms.SCRYPT_INTERACTIVE)))
    with pytest.raises(SignatureError, match="scrypt"):
        ms.SecretKey.from_file_bytes(_with(raw, 38, (2**62).to_bytes(8, "little")), "pw")


def test_secret_key_repr_hides_seed_and_password() -> None:
    text = repr(TRUSTED.with_password("hunter2"))
    assert "hunter2" not in text
    assert TRUSTED.seed.hex() not in text
    assert str(TRUSTED.seed) not in text
    assert TRUSTED.key_id_hex in text


# --- signing ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("prehash", "pattern"),
    [(True, r"timestamp:\d+\tfile:update\.bin\thashed"), (False, r"timestamp:\d+\tfile:update\.bin")],
)
def test_default_trusted_comment_is_minisigns(tmp_path: Path, prehash: bool, pattern: str) -> None:
    path = tmp_path / "update.bin"
    path.write_bytes(b"x")
    sig = ms.Signature.parse(ms.sign(TRUSTED, path, prehash=prehash))
    assert re.fullmatch(pattern, sig.trusted_comment.decode())
    assert sig.untrusted_comment == "signature from minisign secret key"


def test_default_trusted_comment_for_bytes_has_no_file_name() -> None:
    sig = ms.Signature.parse(ms.sign(TRUSTED, b"x"))
    assert re.fullmatch(r"timestamp:\d+\thashed", sig.trusted_comment.decode())


@pytest.mark.parametrize(
    "kwargs",
    [
        {"trusted_comment": "two\nlines"},
        {"trusted_comment": "carriage\rreturn"},
        {"trusted_comment": "nul\0byte"},
        {"trusted_comment": "a" * (ms.MAX_TRUSTED_COMMENT + 1)},
        {"untrusted_comment": "two\nlines"},
        {"untrusted_comment": "a" * (ms.MAX_UNTRUSTED_COMMENT + 1)},
    ],
    ids=["tc-newline", "tc-cr", "tc-nul", "tc-too-long", "uc-newline", "uc-too-long"],
)
def test_comments_that_would_break_the_format_are_refused(kwargs: dict[str, str]) -> None:
    with pytest.raises(ValueError, match="comment"):
        ms.sign(TRUSTED, b"x", **kwargs)  # type: ignore[arg-type]


def test_custom_comments_are_written(tmp_path: Path) -> None:
    data = ms.sign(TRUSTED, b"x", trusted_comment="v2 ✓", untrusted_comment="hello")
    assert data.startswith(b"untrusted comment: hello\n")
    assert _verify(data, b"x").trusted_comment == "v2 ✓"


# --- CLI glue --------------------------------------------------------------------------------


def _args(configure: Callable[[argparse.ArgumentParser], None], argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    configure(parser)
    return parser.parse_args(argv)


@pytest.fixture
def no_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(PASSWORD_ENV, raising=False)
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))


def test_cli_keygen_sign_and_verify(tmp_path: Path, no_terminal: None) -> None:
    pub, key, update = tmp_path / "k.pub", tmp_path / "keys" / "k.key", tmp_path / "update.bin"
    update.write_bytes(PAYLOAD)
    assert run_keygen(_args(configure_keygen, ["-p", str(pub), "-s", str(key), "-W"])) == 0
    assert _mode(key) == 0o600
    assert run_sign(_args(configure_sign, [str(update), "--key", str(key), "-t", "r7"])) == 0
    sig = ms.Signature.parse((tmp_path / "update.bin.minisig").read_bytes())
    assert sig.prehashed
    public = ms.PublicKey.from_file(pub)
    assert ms.verify_file([public], sig, update).trusted_comment == "r7"
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "k.pub", "keys", "update.bin", "update.bin.minisig"
    ]  # no temporary file left behind

    other = tmp_path / "other.sig"
    run_sign(_args(configure_sign, [str(update), "-s", str(key), "--legacy", "-x", str(other)]))
    legacy = ms.Signature.parse(other.read_bytes())
    assert not legacy.prehashed
    ms.verify_file([public], legacy, update, allow_legacy=True)


def test_cli_keygen_without_password_source_refuses(tmp_path: Path, no_terminal: None) -> None:
    pub, key = tmp_path / "k.pub", tmp_path / "k.key"
    with pytest.raises(UsageError, match=PASSWORD_ENV):
        run_keygen(_args(configure_keygen, ["-p", str(pub), "-s", str(key)]))
    assert not pub.exists()
    assert not key.exists()


def test_cli_keygen_refuses_to_overwrite_without_force(tmp_path: Path, no_terminal: None) -> None:
    pub, key = tmp_path / "k.pub", tmp_path / "k.key"
    key.write_bytes(b"precious")
    argv = ["-p", str(pub), "-s", str(key), "-W"]
    with pytest.raises(UsageError, match="--force"):
        run_keygen(_args(configure_keygen, argv))
    assert key.read_bytes() == b"precious"
    assert not pub.exists()
    assert run_keygen(_args(configure_keygen, [*argv, "--force"])) == 0
    assert ms.SecretKey.from_file(key).public_key == ms.PublicKey.from_file(pub)


@pytest.mark.slow
def test_cli_keygen_encrypts_with_password_from_environment(
    tmp_path: Path, no_terminal: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    pub, key, update = tmp_path / "k.pub", tmp_path / "k.key", tmp_path / "u"
    update.write_bytes(b"u")
    monkeypatch.setenv(PASSWORD_ENV, "s3cret")
    run_keygen(_args(configure_keygen, ["-p", str(pub), "-s", str(key)]))
    assert _key_raw(key.read_bytes())[2:4] == b"Sc"
    run_sign(_args(configure_sign, [str(update), "--key", str(key)]))
    sig = ms.Signature.parse((tmp_path / "u.minisig").read_bytes())
    ms.verify_file([ms.PublicKey.from_file(pub)], sig, update)


def test_cli_sign_password_problems_are_usage_errors(
    tmp_path: Path, no_terminal: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    key, update = tmp_path / "k.key", tmp_path / "u"
    update.write_bytes(b"u")
    TRUSTED.to_file(key, "pw", limits=ms.SCRYPT_INTERACTIVE)
    args = _args(configure_sign, [str(update), "--key", str(key)])
    with pytest.raises(UsageError, match="no terminal"):
        run_sign(args)
    monkeypatch.setenv(PASSWORD_ENV, "wrong")
    with pytest.raises(UsageError, match="wrong password"):
        run_sign(args)
    assert not (tmp_path / "u.minisig").exists()
    monkeypatch.setenv(PASSWORD_ENV, "pw")
    assert run_sign(args) == 0


@pytest.mark.parametrize(
    "argv",
    [
        ["{u}", "{u}", "--key", "{k}", "-x", "{d}/s"],  # -x with two files
        ["{d}/missing", "--key", "{k}"],
        ["{u}", "--key", "{d}/missing.key"],
        ["{u}", "--key", "{u}"],  # not a key file
        ["{u}", "--key", "{k}", "-t", "two\nlines"],
        ["{u}", "--key", "{k}", "-x", "{d}/no/such/dir/s"],
    ],
    ids=["x-with-two-files", "missing-file", "missing-key", "not-a-key", "bad-comment", "bad-dest"],
)
def test_cli_sign_bad_input_is_usage_error(tmp_path: Path, argv: list[str], no_terminal: None) -> None:
    key, update = tmp_path / "k.key", tmp_path / "u"
    update.write_bytes(b"u")
    TRUSTED.to_file(key)
    argv = [a.format(u=update, k=key, d=tmp_path) for a in argv]
    with pytest.raises(UsageError):
        run_sign(_args(configure_sign, argv))


# --- interop with the real minisign ----------------------------------------------------------


@pytest.fixture
def minisign(tmp_path: Path) -> Callable[..., subprocess.CompletedProcess[bytes]]:
    path = shutil.which("minisign")
    if path is None:
        pytest.skip("the minisign binary is not installed (Debian package: minisign)")
    env = {**os.environ, "MINISIGN_CONFIG_DIR": str(tmp_path / "minisign-config")}

    def run(*args: str | Path, stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            [path, *map(str, args)], input=stdin, capture_output=True, env=env, timeout=120,
            check=False,
        )

    return run


Minisign = Callable[..., subprocess.CompletedProcess[bytes]]


@pytest.mark.parametrize("legacy", [False, True], ids=["prehashed", "legacy"])
def test_minisign_keys_and_signatures_verify_with_pinclient(
    tmp_path: Path, minisign: Minisign, legacy: bool
) -> None:
    pub, key, update = tmp_path / "m.pub", tmp_path / "m.key", tmp_path / "update.bin"
    update.write_bytes(PAYLOAD)
    assert minisign("-G", "-W", "-p", pub, "-s", key).returncode == 0
    flags = ["-l"] if legacy else []
    done = minisign("-S", *flags, "-s", key, "-m", update, "-t", "release\t7 ✓")
    assert done.returncode == 0, done.stderr
    public = ms.PublicKey.from_file(pub)
    sig = ms.Signature.parse((tmp_path / "update.bin.minisig").read_bytes())
    assert sig.prehashed is not legacy
    result = ms.verify_file([public], sig, update, allow_legacy=legacy)
    assert result.trusted_comment == "release\t7 ✓"
    # Same key id as minisign shows (0.11 prints it without zero padding, later versions with).
    assert int(pub.read_text().split("\n")[0].split()[-1], 16) == int(result.key_id_hex, 16)
    with pytest.raises(SignatureError):
        ms.verify_data([public], sig, _flip(PAYLOAD, 1000))
    # The -W secret key (all-zero checksum) loads too, and is the same key pair.
    assert ms.SecretKey.from_file(key).public_key == public


@pytest.mark.parametrize("legacy", [False, True], ids=["prehashed", "legacy"])
def test_pinclient_signatures_verify_with_minisign(
    tmp_path: Path, minisign: Minisign, legacy: bool
) -> None:
    secret, public = ms.generate_keypair(None)
    pub, update, sig = tmp_path / "p.pub", tmp_path / "update.bin", tmp_path / "update.minisig"
    public.to_file(pub)
    update.write_bytes(PAYLOAD)
    sig.write_bytes(ms.sign(secret, update, trusted_comment="release 8", prehash=not legacy))
    done = minisign("-V", "-p", pub, "-m", update, "-x", sig)
    assert done.returncode == 0, done.stderr
    assert b"release 8" in done.stdout
    assert minisign("-V", "-P", public.to_string(), "-m", update, "-x", sig).returncode == 0
    # -H accepts only prehashed signatures: proves which algorithm minisign saw.
    assert (minisign("-V", "-H", "-p", pub, "-m", update, "-x", sig).returncode == 0) is not legacy
    update.write_bytes(_flip(PAYLOAD, 1000))
    assert minisign("-V", "-p", pub, "-m", update, "-x", sig).returncode != 0


@pytest.mark.parametrize("password", [None, "pässword"], ids=["unencrypted", "encrypted"])
def test_pinclient_secret_keys_sign_with_minisign(
    tmp_path: Path, minisign: Minisign, password: str | None
) -> None:
    # An encrypted key written with the fast INTERACTIVE limits opens in minisign only if our
    # opslimit/memlimit -> N, r, p derivation is libsodium's.
    secret, public = ms.generate_keypair(password)
    key, update = tmp_path / "p.key", tmp_path / "update.bin"
    secret.to_file(key, limits=ms.SCRYPT_INTERACTIVE)
    update.write_bytes(PAYLOAD)
    stdin = b"" if password is None else password.encode() + b"\n"
    done = minisign("-S", "-s", key, "-m", update, stdin=stdin)
    assert done.returncode == 0, done.stderr
    sig = ms.Signature.parse((tmp_path / "update.bin.minisig").read_bytes())
    ms.verify_file([public], sig, update)
    if password is not None:
        assert minisign("-S", "-s", key, "-m", update, stdin=b"wrong\n").returncode != 0


@pytest.mark.slow
def test_minisign_encrypted_key_opens_in_pinclient(tmp_path: Path, minisign: Minisign) -> None:
    # minisign uses scrypt's SENSITIVE limits (N = 2**20, 1 GiB): the expensive case to get right.
    pub, key = tmp_path / "m.pub", tmp_path / "m.key"
    done = minisign("-G", "-p", pub, "-s", key, stdin=b"pw 1\npw 1\n")
    assert done.returncode == 0, done.stderr
    assert _key_raw(key.read_bytes())[2:4] == b"Sc"
    secret = ms.SecretKey.from_file(key, "pw 1")
    assert secret.public_key == ms.PublicKey.from_file(pub)
    update = tmp_path / "u"
    update.write_bytes(b"u")
    (tmp_path / "u.minisig").write_bytes(ms.sign(secret, update))
    assert minisign("-V", "-H", "-p", pub, "-m", update).returncode == 0
