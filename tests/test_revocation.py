"""Revocation: the pure verifiers against hand-built responses, then RevocationChecker against
OpenSSL's own OCSP responder and CRLs served over loopback HTTP.

Every refusal test sits beside the acceptance it mirrors; the messages are asserted because the
operator reading them has to know which certificate, which URL and which check.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp
from cryptography.x509.oid import ExtendedKeyUsageOID

from pinclient._revocation.checker import RevocationChecker, default_cache_dir
from pinclient._revocation.verify import (
    CertStatus,
    Rejection,
    ResponseRejected,
    RevocationPolicy,
    build_ocsp_request,
    revocation_sources,
    verify_crl,
    verify_ocsp_response,
)
from pinclient.errors import CertificateRevoked, RevocationCheckFailed
from tests.revocation_pki import (
    OPENSSL,
    Issued,
    LoopbackHTTP,
    OpenSSLResponder,
    RevocationPKI,
    closed_port,
    index_line,
    issue,
    utcnow,
)

HOST = "updates.test"
SKEW = dt.timedelta(minutes=5)
KEY_COMPROMISE = x509.ReasonFlags.key_compromise


@pytest.fixture(scope="module")
def http_server() -> Iterator[LoopbackHTTP]:
    server = LoopbackHTTP()
    yield server
    server.close()


@pytest.fixture(scope="module")
def rpki(http_server: LoopbackHTTP) -> RevocationPKI:
    return RevocationPKI(http_server.base_url)


@pytest.fixture
def server(http_server: LoopbackHTTP, rpki: RevocationPKI) -> LoopbackHTTP:
    """The loopback server with fresh, good CRLs for both CAs and no OCSP route yet."""
    http_server.reset()
    http_server.routes["/root.crl"] = lambda _: (200, rpki.crl(rpki.root))
    http_server.routes["/int.crl"] = lambda _: (200, rpki.crl(rpki.intermediate))
    return http_server


@pytest.fixture
def make_checker(tmp_path: Path) -> Iterator[Callable[..., RevocationChecker]]:
    made: list[RevocationChecker] = []

    def make(mode: str = "hard-fail", **policy: Any) -> RevocationChecker:
        checker = RevocationChecker(
            RevocationPolicy(mode=mode, **policy),  # type: ignore[arg-type]
            cache_dir=tmp_path / "cache",
        )
        made.append(checker)
        return checker

    yield make
    for checker in made:
        checker.close()


@pytest.fixture
def openssl_ocsp(
    server: LoopbackHTTP, rpki: RevocationPKI, tmp_path: Path
) -> Callable[..., OpenSSLResponder]:
    """Route ``/ocsp`` to OpenSSL's responder for the intermediate (skips without openssl)."""

    def start(
        *, index: str, signer: Issued | None = None, extra: tuple[str, ...] = ("-nmin", "5")
    ) -> OpenSSLResponder:
        if OPENSSL is None:
            pytest.skip("openssl is not installed")
        responder = OpenSSLResponder(
            tmp_path / "ocsp", issuer=rpki.intermediate, signer=signer or rpki.intermediate,
            index=index, extra=extra,
        )  # fmt: skip
        server.routes["/ocsp"] = responder
        return responder

    return start


@contextlib.contextmanager
def rejected(reason: Rejection) -> Iterator[pytest.ExceptionInfo[ResponseRejected]]:
    """Like pytest.raises(ResponseRejected), and the rejection must be for ``reason``."""
    with pytest.raises(ResponseRejected) as info:
        yield info
    assert info.value.reason is reason, str(info.value)


# --- pure: OCSP ---------------------------------------------------------------------------------


def verify(rpki: RevocationPKI, der: bytes, leaf: Issued, now: dt.datetime | None = None) -> Any:
    return verify_ocsp_response(der, leaf.cert, rpki.intermediate.cert, now or utcnow(), SKEW)


def test_ocsp_request_asks_about_the_leaf_with_a_sha1_certid(rpki: RevocationPKI) -> None:
    leaf = rpki.leaf()
    request = ocsp.load_der_ocsp_request(build_ocsp_request(leaf.cert, rpki.intermediate.cert))
    assert request.serial_number == leaf.cert.serial_number
    assert isinstance(request.hash_algorithm, hashes.SHA1)
    expected = x509.SubjectKeyIdentifier.from_public_key(rpki.intermediate.key.public_key())
    assert request.issuer_key_hash == expected.digest


def test_ocsp_good_response_signed_by_the_issuer_is_accepted(rpki: RevocationPKI) -> None:
    leaf = rpki.leaf()
    verdict = verify(rpki, rpki.ocsp_response(leaf.cert), leaf)
    assert verdict.status is CertStatus.GOOD
    assert verdict.responder == "issuer"
    assert verdict.valid_until == verdict.next_update


def test_ocsp_revoked_response_carries_time_and_reason(rpki: RevocationPKI) -> None:
    leaf = rpki.leaf()
    when = utcnow() - dt.timedelta(days=3)
    der = rpki.ocsp_response(
        leaf.cert, status=ocsp.OCSPCertStatus.REVOKED, revocation_time=when, reason=KEY_COMPROMISE
    )
    verdict = verify(rpki, der, leaf)
    assert verdict.status is CertStatus.REVOKED
    assert (verdict.revocation_time, verdict.revocation_reason) == (when, KEY_COMPROMISE)
    assert "keyCompromise" in verdict.describe_revocation()


def test_ocsp_unknown_status_is_reported_as_unknown(rpki: RevocationPKI) -> None:
    leaf = rpki.leaf()
    der = rpki.ocsp_response(leaf.cert, status=ocsp.OCSPCertStatus.UNKNOWN)
    assert verify(rpki, der, leaf).status is CertStatus.UNKNOWN


@pytest.mark.parametrize("by_key", [False, True], ids=["responder-by-name", "responder-by-key"])
def test_ocsp_delegate_with_ocsp_signing_eku_is_accepted(rpki: RevocationPKI, by_key: bool) -> None:
    leaf = rpki.leaf()
    der = rpki.ocsp_response(leaf.cert, signer=rpki.delegate, by_key=by_key)
    assert verify(rpki, der, leaf).responder == rpki.delegate.name


def test_ocsp_delegate_without_ocsp_signing_eku_is_unauthorized(rpki: RevocationPKI) -> None:
    leaf = rpki.leaf()
    der = rpki.ocsp_response(leaf.cert, signer=rpki.delegate_no_eku)
    with rejected(Rejection.UNAUTHORIZED_RESPONDER) as info:
        verify(rpki, der, leaf)
    assert "id-kp-OCSPSigning" in str(info.value)


def test_ocsp_responder_of_another_ca_is_unauthorized(rpki: RevocationPKI) -> None:
    leaf = rpki.leaf()
    der = rpki.ocsp_response(leaf.cert, signer=rpki.unrelated_responder)
    with rejected(Rejection.UNAUTHORIZED_RESPONDER) as info:
        verify(rpki, der, leaf)
    assert "Rogue OCSP Responder" in str(info.value)


def test_ocsp_delegate_whose_issuer_signature_is_forged_is_unauthorized(rpki: RevocationPKI) -> None:
    # Issuer *name* right, EKU right, but signed by someone else's key.
    forger = Issued(rpki.intermediate.cert, rpki.other_ca.key)
    fake = issue("OCSP Responder", issuer=forger, eku=[ExtendedKeyUsageOID.OCSP_SIGNING])
    leaf = rpki.leaf()
    with rejected(Rejection.UNAUTHORIZED_RESPONDER):
        verify(rpki, rpki.ocsp_response(leaf.cert, signer=fake), leaf)


def test_ocsp_expired_delegate_is_unauthorized(rpki: RevocationPKI) -> None:
    old = utcnow() - dt.timedelta(days=10)
    expired = issue(
        "OCSP Responder",
        issuer=rpki.intermediate,
        eku=[ExtendedKeyUsageOID.OCSP_SIGNING],
        not_before=old,
        not_after=old + dt.timedelta(days=1),
    )
    leaf = rpki.leaf()
    with rejected(Rejection.UNAUTHORIZED_RESPONDER) as info:
        verify(rpki, rpki.ocsp_response(leaf.cert, signer=expired), leaf)
    assert "outside its validity" in str(info.value)


def test_ocsp_impostor_using_the_issuers_name_fails_the_signature(rpki: RevocationPKI) -> None:
    impostor = issue("Revocation Test Issuing CA", issuer=None, ca=True)  # same name, other key
    leaf = rpki.leaf()
    der = rpki.ocsp_response(leaf.cert, issuer=impostor, certid_issuer=rpki.intermediate)
    with rejected(Rejection.BAD_SIGNATURE):
        verify(rpki, der, leaf)


def test_ocsp_corrupted_signature_is_rejected(rpki: RevocationPKI) -> None:
    leaf = rpki.leaf()
    der = rpki.ocsp_response(leaf.cert)
    signature = ocsp.load_der_ocsp_response(der).signature
    tampered = der.replace(signature, signature[:-1] + bytes([signature[-1] ^ 1]))
    with rejected(Rejection.BAD_SIGNATURE):
        verify(rpki, tampered, leaf)


def test_ocsp_delegate_response_with_corrupted_signature_is_rejected(rpki: RevocationPKI) -> None:
    leaf = rpki.leaf()
    der = rpki.ocsp_response(leaf.cert, signer=rpki.delegate)
    signature = ocsp.load_der_ocsp_response(der).signature
    tampered = der.replace(signature, signature[:-1] + bytes([signature[-1] ^ 1]))
    with rejected(Rejection.BAD_SIGNATURE) as info:
        verify(rpki, tampered, leaf)
    assert "delegated responder" in str(info.value)


def test_ocsp_response_about_another_serial_is_a_certid_mismatch(rpki: RevocationPKI) -> None:
    leaf, other = rpki.leaf(), rpki.leaf("other.test")
    with rejected(Rejection.CERTID_MISMATCH):
        verify(rpki, rpki.ocsp_response(other.cert), leaf)


def test_ocsp_response_about_same_serial_under_another_issuer_is_a_mismatch(
    rpki: RevocationPKI,
) -> None:
    # Signed by the right issuer, right serial, but the CertID hashes name another CA.
    leaf = rpki.leaf()
    der = rpki.ocsp_response(leaf.cert, certid_issuer=rpki.other_ca)
    with rejected(Rejection.CERTID_MISMATCH) as info:
        verify(rpki, der, leaf)
    assert "differ" in str(info.value)


def test_ocsp_certid_is_matched_with_the_responses_hash_algorithm(rpki: RevocationPKI) -> None:
    leaf = rpki.leaf()
    der = rpki.ocsp_response(leaf.cert, algorithm=hashes.SHA256())
    assert verify(rpki, der, leaf).status is CertStatus.GOOD


@pytest.mark.parametrize(
    ("next_update_offset", "ok"),
    [(dt.timedelta(minutes=-4), True), (dt.timedelta(minutes=-6), False)],
    ids=["past-nextUpdate-within-skew", "past-nextUpdate-beyond-skew"],
)
def test_ocsp_stale_response_is_rejected_beyond_the_skew(
    rpki: RevocationPKI, next_update_offset: dt.timedelta, ok: bool
) -> None:
    leaf, now = rpki.leaf(), utcnow()
    der = rpki.ocsp_response(
        leaf.cert, this_update=now - dt.timedelta(hours=1), next_update=now + next_update_offset
    )
    if ok:
        assert verify(rpki, der, leaf, now).status is CertStatus.GOOD
    else:
        with rejected(Rejection.STALE):
            verify(rpki, der, leaf, now)


def test_ocsp_response_from_the_future_is_not_yet_valid(rpki: RevocationPKI) -> None:
    leaf, now = rpki.leaf(), utcnow()
    assert (
        verify(
            rpki, rpki.ocsp_response(leaf.cert, this_update=now + dt.timedelta(minutes=4)), leaf, now
        ).status
        is CertStatus.GOOD
    )
    with rejected(Rejection.NOT_YET_VALID):
        verify(rpki, rpki.ocsp_response(leaf.cert, this_update=now + dt.timedelta(minutes=6)), leaf, now)


def test_ocsp_response_without_next_update_is_good_for_one_hour(rpki: RevocationPKI) -> None:
    leaf, now = rpki.leaf(), utcnow()
    der = rpki.ocsp_response(leaf.cert, this_update=now, no_next_update=True)
    verdict = verify(rpki, der, leaf, now + dt.timedelta(minutes=50))
    assert verdict.valid_until == now + dt.timedelta(hours=1)
    with rejected(Rejection.STALE) as info:
        verify(rpki, der, leaf, now + dt.timedelta(minutes=70))
    assert "no nextUpdate" in str(info.value)


def test_ocsp_garbage_is_malformed_and_try_later_is_unsuccessful(rpki: RevocationPKI) -> None:
    leaf = rpki.leaf()
    with rejected(Rejection.MALFORMED):
        verify(rpki, b"<html>captive portal</html>", leaf)
    try_later = ocsp.OCSPResponseBuilder.build_unsuccessful(ocsp.OCSPResponseStatus.TRY_LATER)
    with rejected(Rejection.UNSUCCESSFUL) as info:
        verify(rpki, try_later.public_bytes(serialization.Encoding.DER), leaf)
    assert "TRY_LATER" in str(info.value)


def test_naive_time_and_wrong_issuer_are_programming_errors(rpki: RevocationPKI) -> None:
    leaf = rpki.leaf()
    der = rpki.ocsp_response(leaf.cert)
    with pytest.raises(ValueError, match="timezone-aware"):
        verify_ocsp_response(der, leaf.cert, rpki.intermediate.cert, dt.datetime(2030, 1, 1))
    with pytest.raises(ValueError, match="not the issuer"):
        verify_ocsp_response(der, leaf.cert, rpki.root.cert, utcnow())


# --- pure: CRL ----------------------------------------------------------------------------------


def check_crl(rpki: RevocationPKI, data: bytes, cert: x509.Certificate | None = None) -> Any:
    cert = cert or rpki.intermediate.cert
    return verify_crl(data, cert, rpki.root.cert, utcnow(), SKEW)


def test_crl_good_and_revoked_with_time_and_reason(rpki: RevocationPKI) -> None:
    assert check_crl(rpki, rpki.crl(rpki.root)).status is CertStatus.GOOD
    when = utcnow() - dt.timedelta(days=2)
    revoked = check_crl(
        rpki, rpki.crl(rpki.root, [(rpki.intermediate.cert, KEY_COMPROMISE)], revoked_at=when)
    )
    assert (revoked.status, revoked.revocation_time, revoked.revocation_reason) == (
        CertStatus.REVOKED,
        when,
        KEY_COMPROMISE,
    )


def test_crl_in_pem_is_accepted(rpki: RevocationPKI) -> None:
    der = rpki.crl(rpki.root, [(rpki.intermediate.cert, None)])
    pem = x509.load_der_x509_crl(der).public_bytes(serialization.Encoding.PEM)
    assert check_crl(rpki, pem).status is CertStatus.REVOKED


def test_crl_stale_and_future_are_rejected(rpki: RevocationPKI) -> None:
    now = utcnow()
    with rejected(Rejection.STALE):
        check_crl(
            rpki,
            rpki.crl(
                rpki.root, this_update=now - dt.timedelta(days=2), next_update=now - dt.timedelta(minutes=6)
            ),
        )
    with rejected(Rejection.NOT_YET_VALID):
        check_crl(rpki, rpki.crl(rpki.root, this_update=now + dt.timedelta(minutes=6)))


def test_crl_signed_by_another_key_under_the_issuers_name_is_rejected(rpki: RevocationPKI) -> None:
    with rejected(Rejection.BAD_SIGNATURE):
        check_crl(rpki, rpki.crl(rpki.root, sign_with=rpki.other_ca.key))


def test_crl_of_another_issuer_is_rejected(rpki: RevocationPKI) -> None:
    with rejected(Rejection.ISSUER_MISMATCH):
        check_crl(rpki, rpki.crl(rpki.other_ca))


def test_incomplete_crls_are_not_used(rpki: RevocationPKI) -> None:
    with rejected(Rejection.UNSUPPORTED) as info:  # even when (wrongly) marked non-critical
        check_crl(rpki, rpki.crl(rpki.root, extensions=[(x509.DeltaCRLIndicator(1), False)]))
    assert "delta" in str(info.value)
    only_leaves = x509.IssuingDistributionPoint(None, None, True, False, None, False, False)
    with rejected(Rejection.WRONG_SCOPE):  # checking a CA certificate against a leaves-only CRL
        check_crl(rpki, rpki.crl(rpki.root, extensions=[(only_leaves, True)]))


def test_crl_with_an_unknown_critical_extension_is_not_used(rpki: RevocationPKI) -> None:
    unknown = x509.UnrecognizedExtension(x509.ObjectIdentifier("1.3.6.1.4.1.55555.1"), b"\x05\x00")
    assert check_crl(rpki, rpki.crl(rpki.root, extensions=[(unknown, False)])).status is (CertStatus.GOOD)
    with rejected(Rejection.UNSUPPORTED) as info:
        check_crl(rpki, rpki.crl(rpki.root, extensions=[(unknown, True)]))
    assert "1.3.6.1.4.1.55555.1" in str(info.value)


def test_partitioned_crl_must_name_the_certificates_distribution_point(
    rpki: RevocationPKI,
) -> None:
    def idp(url: str) -> list[tuple[x509.ExtensionType, bool]]:
        point = x509.IssuingDistributionPoint(
            [x509.UniformResourceIdentifier(url)], None, False, False, None, False, False
        )
        return [(point, True)]

    ours = f"{rpki.base_url}/root.crl"
    assert check_crl(rpki, rpki.crl(rpki.root, extensions=idp(ours))).status is CertStatus.GOOD
    with rejected(Rejection.WRONG_SCOPE):
        check_crl(rpki, rpki.crl(rpki.root, extensions=idp(f"{rpki.base_url}/part2.crl")))


def test_sources_skip_ldap_and_partial_distribution_points(rpki: RevocationPKI) -> None:
    key = rpki.intermediate.key
    builder = (
        x509.CertificateBuilder()
        .subject_name(rpki.leaf().cert.subject)
        .issuer_name(rpki.intermediate.cert.subject)
        .public_key(key.public_key())
        .serial_number(7)
        .not_valid_before(utcnow())
        .not_valid_after(utcnow() + dt.timedelta(days=1))
        .add_extension(
            x509.CRLDistributionPoints(
                [
                    x509.DistributionPoint(
                        [x509.UniformResourceIdentifier("ldap://x/cn=crl")], None, None, None
                    ),
                    x509.DistributionPoint(
                        [x509.UniformResourceIdentifier("http://127.0.0.1/p.crl")],
                        None,
                        frozenset({KEY_COMPROMISE}),
                        None,
                    ),
                    x509.DistributionPoint(
                        [x509.UniformResourceIdentifier("http://127.0.0.1/a.crl")], None, None, None
                    ),
                ]
            ),
            critical=False,
        )
    )
    cert = builder.sign(key, hashes.SHA256())
    assert revocation_sources(cert).crl == ("http://127.0.0.1/a.crl",)
    assert revocation_sources(rpki.root.cert).crl == ()


def test_policy_rejects_unknown_values() -> None:
    with pytest.raises(ValueError, match="mode"):
        RevocationPolicy(mode="strict")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="crl"):
        RevocationPolicy(crl="only")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="timeout"):
        RevocationPolicy(timeout=0)


def test_default_cache_dir_follows_xdg(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr("sys.platform", "linux")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert default_cache_dir() == tmp_path / "pinclient" / "revocation"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/ignored")
    assert default_cache_dir() == Path.home() / ".cache" / "pinclient" / "revocation"


# --- RevocationChecker against OpenSSL's responder -------------------------------------------------


def test_good_leaf_passes_hard_fail_via_openssl_and_skips_the_crl(
    rpki: RevocationPKI, server: LoopbackHTTP, openssl_ocsp: Any, make_checker: Any
) -> None:
    leaf = rpki.leaf()
    openssl_ocsp(index=index_line(leaf.cert))
    assert make_checker("hard-fail").check(rpki.chain(leaf), host=HOST) == []
    # OCSP answered, so the CRL was not needed; the intermediate was checked via its CRL.
    assert (server.hits["/ocsp"], server.hits["/int.crl"], server.hits["/root.crl"]) == (1, 0, 1)


@pytest.mark.parametrize("mode", ["soft-fail", "hard-fail"])
def test_revoked_leaf_is_refused_in_every_mode(
    rpki: RevocationPKI, openssl_ocsp: Any, make_checker: Any, mode: str
) -> None:
    leaf = rpki.leaf()
    openssl_ocsp(index=index_line(leaf.cert, revoked=KEY_COMPROMISE))
    with pytest.raises(CertificateRevoked) as info:
        make_checker(mode).check(rpki.chain(leaf), host=HOST)
    message = str(info.value)
    serial = f"{leaf.cert.serial_number:x}"
    assert "CN=updates.test" in message
    assert serial[-6:] in message.replace(":", "")
    assert "keyCompromise" in message
    assert "since" in message
    assert f"{rpki.base_url}/ocsp" in message
    assert HOST in message


@pytest.mark.parametrize("mode", ["soft-fail", "hard-fail"])
def test_unknown_serial_fails_hard_and_warns_soft(
    rpki: RevocationPKI, openssl_ocsp: Any, make_checker: Any, mode: str
) -> None:
    leaf = rpki.leaf(crl=False)
    openssl_ocsp(index=index_line(rpki.leaf("someone.else").cert))  # our serial is not listed
    checker = make_checker(mode)
    if mode == "hard-fail":
        with pytest.raises(RevocationCheckFailed, match="unknown"):
            checker.check(rpki.chain(leaf), host=HOST)
    else:
        [warning] = checker.check(rpki.chain(leaf), host=HOST)
        assert "unknown" in warning
        assert "soft-fail" in warning


def test_responder_down_refuses_in_hard_fail_and_warns_in_soft_fail(
    rpki: RevocationPKI, server: LoopbackHTTP, make_checker: Any
) -> None:
    url = f"http://127.0.0.1:{closed_port()}/"
    leaf = rpki.leaf(crl=False, ocsp_url=url)
    with pytest.raises(RevocationCheckFailed) as info:
        make_checker("hard-fail").check(rpki.chain(leaf), host=HOST)
    assert url in str(info.value)
    assert "cannot reach" in str(info.value)
    assert "CN=updates.test" in str(info.value)
    [warning] = make_checker("soft-fail").check(rpki.chain(leaf), host=HOST)
    assert url in warning
    assert "soft-fail" in warning


@pytest.mark.parametrize("extra", [(), ("-resp_key_id",)], ids=["by-name", "by-key"])
def test_openssl_delegated_responder_with_eku_is_accepted(
    rpki: RevocationPKI, openssl_ocsp: Any, make_checker: Any, extra: tuple[str, ...]
) -> None:
    leaf = rpki.leaf(crl=False)
    openssl_ocsp(
        index=index_line(leaf.cert, revoked=KEY_COMPROMISE),
        signer=rpki.delegate,
        extra=("-nmin", "5", *extra),
    )
    # Revoked, to prove the delegate's answer is believed (not merely tolerated).
    with pytest.raises(CertificateRevoked):
        make_checker("hard-fail").check(rpki.chain(leaf), host=HOST)


@pytest.mark.parametrize(
    ("signer", "expected"),
    [("delegate_no_eku", "id-kp-OCSPSigning"), ("unrelated_responder", "not a delegate")],
)
def test_openssl_response_from_unauthorized_responder_is_refused(
    rpki: RevocationPKI, openssl_ocsp: Any, make_checker: Any, signer: str, expected: str
) -> None:
    leaf = rpki.leaf(crl=False)
    openssl_ocsp(index=index_line(leaf.cert, revoked=KEY_COMPROMISE), signer=getattr(rpki, signer))
    # Even a "revoked" answer from an unauthorised signer is not believed: status unestablished.
    with pytest.raises(RevocationCheckFailed, match=expected) as info:
        make_checker("hard-fail").check(rpki.chain(leaf), host=HOST)
    assert not isinstance(info.value, CertificateRevoked)


def test_openssl_response_with_corrupted_signature_is_refused(
    rpki: RevocationPKI, openssl_ocsp: Any, make_checker: Any
) -> None:
    leaf = rpki.leaf(crl=False)
    openssl_ocsp(index=index_line(leaf.cert), extra=("-nmin", "5", "-badsig"))
    with pytest.raises(RevocationCheckFailed, match="signature does not verify"):
        make_checker("hard-fail").check(rpki.chain(leaf), host=HOST)


def test_openssl_sha256_certid_is_matched_and_its_serial_checked(
    rpki: RevocationPKI, openssl_ocsp: Any, make_checker: Any
) -> None:
    leaf = rpki.leaf(crl=False)
    responder = openssl_ocsp(
        index=index_line(leaf.cert, revoked=KEY_COMPROMISE), extra=("-nmin", "5", "-rcid", "sha256")
    )
    _, sample = responder(build_ocsp_request(leaf.cert, rpki.intermediate.cert))
    checker = make_checker("hard-fail")
    if ocsp.load_der_ocsp_response(sample).serial_number == leaf.cert.serial_number:
        with pytest.raises(CertificateRevoked):
            checker.check(rpki.chain(leaf), host=HOST)
    else:
        # OpenSSL 3.0 writes serial 00 into -rcid CertIDs (openssl/openssl#31070): a validly
        # signed answer about another certificate must not count, whatever it says.
        with pytest.raises(RevocationCheckFailed, match="not about this certificate"):
            checker.check(rpki.chain(leaf), host=HOST)


@pytest.mark.parametrize(
    ("shift", "expected"),
    [(dt.timedelta(hours=1), "stale"), (dt.timedelta(hours=-1), "not valid yet")],
)
def test_openssl_response_outside_its_window_is_refused(
    rpki: RevocationPKI, openssl_ocsp: Any, make_checker: Any, shift: dt.timedelta, expected: str
) -> None:
    # OpenSSL stamps thisUpdate=now, nextUpdate=now+5min (-nmin 5); the client's clock is shifted.
    leaf = rpki.leaf(crl=False)
    openssl_ocsp(index=index_line(leaf.cert))
    with pytest.raises(RevocationCheckFailed, match=expected) as info:
        make_checker("hard-fail").check(rpki.chain(leaf), host=HOST, now=utcnow() + shift)
    assert "CN=updates.test" in str(info.value)


# --- cache --------------------------------------------------------------------------------------


def test_second_check_within_the_window_sends_no_request(
    rpki: RevocationPKI, server: LoopbackHTTP, openssl_ocsp: Any, make_checker: Any
) -> None:
    leaf = rpki.leaf()
    openssl_ocsp(index=index_line(leaf.cert))
    make_checker("hard-fail").check(rpki.chain(leaf), host=HOST)
    make_checker("hard-fail").check(rpki.chain(leaf), host=HOST)  # a new process, same cache
    assert (server.hits["/ocsp"], server.hits["/root.crl"]) == (1, 1)


def test_expired_cache_entry_is_refetched(
    rpki: RevocationPKI, server: LoopbackHTTP, make_checker: Any
) -> None:
    leaf, start = rpki.leaf(crl=False), utcnow()
    clock = [start]
    server.routes["/ocsp"] = lambda _: (
        200,
        rpki.ocsp_response(leaf.cert, this_update=clock[0], next_update=clock[0] + dt.timedelta(minutes=10)),
    )
    server.routes["/root.crl"] = lambda _: (
        200,
        rpki.crl(rpki.root, this_update=clock[0], next_update=clock[0] + dt.timedelta(days=1)),
    )
    checker = make_checker("hard-fail")
    checker.check(rpki.chain(leaf), host=HOST, now=start)
    checker.check(rpki.chain(leaf), host=HOST, now=start + dt.timedelta(minutes=9))
    assert server.hits["/ocsp"] == 1
    clock[0] = start + dt.timedelta(minutes=20)
    checker.check(rpki.chain(leaf), host=HOST, now=clock[0])  # cached one is stale by now
    assert server.hits["/ocsp"] == 2


def test_corrupt_cache_entries_are_ignored_and_refetched(
    rpki: RevocationPKI, server: LoopbackHTTP, openssl_ocsp: Any, make_checker: Any,
    tmp_path: Path,
) -> None:  # fmt: skip
    leaf = rpki.leaf()
    openssl_ocsp(index=index_line(leaf.cert))
    make_checker("hard-fail").check(rpki.chain(leaf), host=HOST)
    entries = sorted((tmp_path / "cache").glob("*.der"))
    assert len(entries) == 2  # the leaf's OCSP response and the root's CRL
    for entry in entries:
        entry.write_bytes(entry.read_bytes()[:40])
    make_checker("hard-fail").check(rpki.chain(leaf), host=HOST)
    assert (server.hits["/ocsp"], server.hits["/root.crl"]) == (2, 2)
    assert all(len(e.read_bytes()) > 40 for e in entries)  # replaced by the fresh answers


def test_forged_cache_entry_cannot_whitewash_a_revoked_certificate(
    rpki: RevocationPKI, openssl_ocsp: Any, make_checker: Any, tmp_path: Path
) -> None:
    leaf = rpki.leaf(crl=False)
    openssl_ocsp(index=index_line(leaf.cert, revoked=KEY_COMPROMISE))
    with pytest.raises(CertificateRevoked):
        make_checker("hard-fail").check(rpki.chain(leaf), host=HOST)
    # Someone with write access to the cache plants a "good" answer signed by an impostor.
    impostor = issue("Revocation Test Issuing CA", issuer=None, ca=True)
    forged = rpki.ocsp_response(leaf.cert, issuer=impostor, certid_issuer=rpki.intermediate)
    [entry] = (tmp_path / "cache").glob("ocsp-*.der")
    entry.write_bytes(forged)
    with pytest.raises(CertificateRevoked):
        make_checker("hard-fail").check(rpki.chain(leaf), host=HOST)


def test_concurrent_checks_of_one_certificate_share_one_fetch(
    rpki: RevocationPKI, server: LoopbackHTTP, openssl_ocsp: Any, make_checker: Any
) -> None:
    leaf = rpki.leaf()
    openssl_ocsp(index=index_line(leaf.cert))
    checker = make_checker("hard-fail")
    errors: list[BaseException] = []

    def run() -> None:
        try:
            checker.check(rpki.chain(leaf), host=HOST)
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=run) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert server.hits["/ocsp"] == 1


# --- CRLs through the checker -------------------------------------------------------------------


def test_crl_good_then_cached(rpki: RevocationPKI, server: LoopbackHTTP, make_checker: Any) -> None:
    leaf = rpki.leaf(ocsp=False)
    checker = make_checker("hard-fail")
    assert checker.check(rpki.chain(leaf), host=HOST) == []
    assert checker.check(rpki.chain(leaf), host=HOST) == []
    assert server.hits["/int.crl"] == 1


@pytest.mark.parametrize("mode", ["soft-fail", "hard-fail"])
def test_crl_revoked_leaf_is_refused(
    rpki: RevocationPKI, server: LoopbackHTTP, make_checker: Any, mode: str
) -> None:
    leaf = rpki.leaf(ocsp=False)
    server.routes["/int.crl"] = lambda _: (200, rpki.crl(rpki.intermediate, [(leaf.cert, KEY_COMPROMISE)]))
    with pytest.raises(CertificateRevoked, match="keyCompromise") as info:
        make_checker(mode).check(rpki.chain(leaf), host=HOST)
    assert f"CRL {rpki.base_url}/int.crl" in str(info.value)


@pytest.mark.parametrize(
    ("crl", "expected"),
    [
        (
            lambda p: p.crl(
                p.intermediate,
                this_update=utcnow() - dt.timedelta(days=2),
                next_update=utcnow() - dt.timedelta(hours=1),
            ),
            "stale",
        ),
        (lambda p: p.crl(p.intermediate, sign_with=p.other_ca.key), "signature does not verify"),
        (lambda p: b"\x30\x03\x02\x01\x00", "malformed"),
    ],
    ids=["stale", "bad-signature", "malformed"],
)
def test_unusable_crl_is_refused_in_hard_fail(
    rpki: RevocationPKI, server: LoopbackHTTP, make_checker: Any,
    crl: Callable[[RevocationPKI], bytes], expected: str,
) -> None:  # fmt: skip
    leaf = rpki.leaf(ocsp=False)
    server.routes["/int.crl"] = lambda _: (200, crl(rpki))
    with pytest.raises(RevocationCheckFailed, match=expected) as info:
        make_checker("hard-fail").check(rpki.chain(leaf), host=HOST)
    assert f"{rpki.base_url}/int.crl" in str(info.value)


@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "close-delimited"])
def test_crl_larger_than_the_cap_is_not_read(
    rpki: RevocationPKI, server: LoopbackHTTP, make_checker: Any, declared: bool
) -> None:
    leaf = rpki.leaf(ocsp=False)
    server.declare_length = declared
    with pytest.raises(RevocationCheckFailed, match="200 bytes allowed"):
        make_checker("hard-fail", max_crl_size=200).check(rpki.chain(leaf), host=HOST)


def test_crl_prefer_asks_the_crl_first(rpki: RevocationPKI, server: LoopbackHTTP, make_checker: Any) -> None:
    leaf = rpki.leaf()  # names both; /ocsp has no route (404)
    make_checker("hard-fail", crl="prefer").check(rpki.chain(leaf), host=HOST)
    assert (server.hits["/int.crl"], server.hits["/ocsp"]) == (1, 0)


def test_crl_fallback_is_used_when_ocsp_fails(
    rpki: RevocationPKI, server: LoopbackHTTP, make_checker: Any
) -> None:
    leaf = rpki.leaf()
    server.routes["/ocsp"] = lambda _: (500, b"responder broken")
    assert make_checker("hard-fail").check(rpki.chain(leaf), host=HOST) == []
    assert (server.hits["/ocsp"], server.hits["/int.crl"]) == (1, 1)


@pytest.mark.parametrize("mode", ["soft-fail", "hard-fail"])
def test_chain_with_revoked_intermediate_is_refused(
    rpki: RevocationPKI, server: LoopbackHTTP, openssl_ocsp: Any, make_checker: Any, mode: str
) -> None:
    leaf = rpki.leaf()
    openssl_ocsp(index=index_line(leaf.cert))  # the leaf itself is fine
    server.routes["/root.crl"] = lambda _: (
        200,
        rpki.crl(rpki.root, [(rpki.intermediate.cert, x509.ReasonFlags.ca_compromise)]),
    )
    with pytest.raises(CertificateRevoked, match="cACompromise") as info:
        make_checker(mode).check(rpki.chain(leaf), host=HOST)
    assert "Revocation Test Issuing CA" in str(info.value)


# --- no source, off, timeouts -------------------------------------------------------------------


def test_leaf_without_revocation_source_refused_hard_warned_soft(
    rpki: RevocationPKI, server: LoopbackHTTP, make_checker: Any
) -> None:
    leaf = rpki.leaf(ocsp=False, crl=False)
    with pytest.raises(RevocationCheckFailed, match="names no OCSP responder"):
        make_checker("hard-fail").check(rpki.chain(leaf), host=HOST)
    [warning] = make_checker("soft-fail").check(rpki.chain(leaf), host=HOST)
    assert "names no OCSP responder" in warning
    assert "CN=updates.test" in warning


def test_mode_off_checks_nothing(rpki: RevocationPKI, server: LoopbackHTTP, make_checker: Any) -> None:
    leaf = rpki.leaf()
    server.routes["/int.crl"] = lambda _: (200, rpki.crl(rpki.intermediate, [(leaf.cert, None)]))
    assert make_checker("off").check(rpki.chain(leaf), host=HOST) == []
    assert sum(server.hits.values()) == 0


def test_slow_responder_times_out(rpki: RevocationPKI, server: LoopbackHTTP, make_checker: Any) -> None:
    leaf = rpki.leaf(crl=False)

    def slow(_: bytes) -> tuple[int, bytes]:
        time.sleep(1.5)
        return 200, rpki.ocsp_response(leaf.cert)

    server.routes["/ocsp"] = slow
    started = time.monotonic()
    with pytest.raises(RevocationCheckFailed, match="time"):
        make_checker("hard-fail", timeout=0.3).check(rpki.chain(leaf), host=HOST)
    assert time.monotonic() - started < 1.2
