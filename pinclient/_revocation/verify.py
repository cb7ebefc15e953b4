"""Pure revocation policy: build OCSP requests, verify OCSP responses and CRLs, decide freshness.

Nothing here opens a socket or a file: every function takes bytes, certificates and a time, and
returns a verdict or raises :class:`ResponseRejected`. The network and the disk cache live in
:mod:`pinclient._revocation.checker`.

``cryptography`` *parses* OCSP responses and CRLs but does not verify them, so this module does the
checks RFC 6960 §3.2 and RFC 5280 §6.3 ask of a client:

* OCSP: the response status is ``successful``; it is signed by the issuer itself, or by a delegated
  responder certificate that the issuer signed directly, that carries id-kp-OCSPSigning and that is
  within its validity (RFC 6960 §4.2.2.2); the CertID (serial, issuer name hash, issuer key hash,
  with the hash algorithm the *response* used) names the certificate asked about; and
  ``thisUpdate``/``nextUpdate`` bracket "now" give or take the clock-skew allowance.
* CRL: signed by the issuer's key, issued under the issuer's name, complete (no delta CRL, no
  indirect CRL, no reason-partitioned CRL), covering the certificate's scope, and fresh.

Nonces are not sent: public responders pre-sign their answers and ignore nonces (RFC 5019 §2.1.2),
and a nonce would make responses uncacheable. Replay is bounded by the freshness window instead.
The revocation status of a delegated responder certificate itself is not checked (the usual
practice, RFC 6960 §4.2.2.2.1 id-pkix-ocsp-nocheck).
"""

from __future__ import annotations

import enum
import hmac
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal, TypeAlias, TypeVar

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, padding, rsa
from cryptography.x509 import ocsp
from cryptography.x509.oid import (
    AuthorityInformationAccessOID,
    ExtendedKeyUsageOID,
    ExtensionOID,
    OCSPExtensionOID,
    SignatureAlgorithmOID,
)

from .._x509 import name_text
from ..errors import RevocationCheckFailed

__all__ = [
    "DEFAULT_SKEW",
    "NO_NEXT_UPDATE_WINDOW",
    "CRLUse",
    "CRLVerdict",
    "CertStatus",
    "Mode",
    "OCSPVerdict",
    "Rejection",
    "ResponseRejected",
    "RevocationPolicy",
    "RevocationSources",
    "build_ocsp_request",
    "describe_certificate",
    "revocation_sources",
    "verify_crl",
    "verify_ocsp_response",
]

Mode = Literal["off", "soft-fail", "hard-fail"]
CRLUse = Literal["fallback", "prefer"]

#: Clock-skew allowance applied to every time comparison (thisUpdate, nextUpdate, responder
#: validity). Five minutes absorbs what is actually seen in the field: a laptop or VM whose clock
#: drifted while asleep, and responders that stamp ``thisUpdate`` with their own, slightly fast
#: clock at signing time. It is small next to what it protects: OCSP responses and CRLs are valid
#: for hours to days, so accepting one for five more minutes past ``nextUpdate`` gives someone
#: replaying an old "good" answer almost nothing.
DEFAULT_SKEW = timedelta(minutes=5)

#: How long a response without ``nextUpdate`` is accepted, counted from its ``thisUpdate``.
#: RFC 6960 §4.2.2.1: no nextUpdate means "newer information is available all the time", so the
#: responder promises nothing. One hour lets a burst of update checks share one answer (and the
#: cache) while keeping such a response far shorter-lived than any response that does carry a
#: nextUpdate; OpenSSL's responder, for one, omits nextUpdate unless run with -ndays/-nmin.
NO_NEXT_UPDATE_WINDOW = timedelta(hours=1)

_ExtT = TypeVar("_ExtT", bound=x509.ExtensionType)
# The key types whose signatures pinclient verifies (DSA is long gone from the Web PKI).
_SigningKey: TypeAlias = (
    rsa.RSAPublicKey | ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey | ed448.Ed448PublicKey
)

_MODES = ("off", "soft-fail", "hard-fail")
_CRL_USES = ("fallback", "prefer")

_RSA_PKCS1_OIDS = frozenset(
    {
        SignatureAlgorithmOID.RSA_WITH_SHA1,
        SignatureAlgorithmOID.RSA_WITH_SHA224,
        SignatureAlgorithmOID.RSA_WITH_SHA256,
        SignatureAlgorithmOID.RSA_WITH_SHA384,
        SignatureAlgorithmOID.RSA_WITH_SHA512,
    }
)
_ECDSA_OIDS = frozenset(
    {
        SignatureAlgorithmOID.ECDSA_WITH_SHA1,
        SignatureAlgorithmOID.ECDSA_WITH_SHA224,
        SignatureAlgorithmOID.ECDSA_WITH_SHA256,
        SignatureAlgorithmOID.ECDSA_WITH_SHA384,
        SignatureAlgorithmOID.ECDSA_WITH_SHA512,
    }
)
# CRL extensions this module understands; any other *critical* one makes the CRL unusable
# (RFC 5280 §5.2: a CRL with an unrecognised critical extension must not be used).
_KNOWN_CRL_EXTENSIONS = frozenset(
    {
        ExtensionOID.AUTHORITY_KEY_IDENTIFIER,
        ExtensionOID.CRL_NUMBER,
        ExtensionOID.ISSUING_DISTRIBUTION_POINT,
        ExtensionOID.AUTHORITY_INFORMATION_ACCESS,
        ExtensionOID.FRESHEST_CRL,
    }
)


@dataclass(frozen=True)
class RevocationPolicy:
    """How revocation is checked; one field per setting, so config can be mapped field by field.

    ``mode``: ``"off"`` checks nothing; ``"soft-fail"`` refuses a revoked certificate but only warns
    when a status cannot be established; ``"hard-fail"`` refuses in both cases, and also refuses a
    leaf that names no revocation source.

    ``crl``: ``"fallback"`` asks OCSP first and fetches the CRL only when OCSP gives no answer;
    ``"prefer"`` fetches the CRL first and asks OCSP only when the CRL gives no answer.

    ``skew``: see :data:`DEFAULT_SKEW`; ``no_next_update_window``: see :data:`NO_NEXT_UPDATE_WINDOW`.

    Raises:
        ValueError: a field is out of range.
    """

    mode: Mode = "soft-fail"
    crl: CRLUse = "fallback"
    timeout: float = 5.0  # seconds: connect, each read, and the deadline for one whole fetch
    skew: timedelta = DEFAULT_SKEW
    max_crl_size: int = 16 * 1024 * 1024  # bytes; big public CAs publish CRLs of a few MiB
    max_ocsp_size: int = 64 * 1024  # bytes; a response with a responder cert is ~2-4 KiB
    no_next_update_window: timedelta = NO_NEXT_UPDATE_WINDOW

    def __post_init__(self) -> None:
        if self.mode not in _MODES:
            raise ValueError(f"revocation mode must be one of {_MODES}, got {self.mode!r}")
        if self.crl not in _CRL_USES:
            raise ValueError(f"crl must be one of {_CRL_USES}, got {self.crl!r}")
        if not self.timeout > 0:
            raise ValueError(f"timeout must be positive, got {self.timeout!r}")
        if self.skew < timedelta(0) or self.no_next_update_window < timedelta(0):
            raise ValueError("skew and no_next_update_window must not be negative")
        if self.max_crl_size <= 0 or self.max_ocsp_size <= 0:
            raise ValueError("size limits must be positive")


class CertStatus(str, enum.Enum):
    """A certificate's revocation status as stated by a verified response."""

    GOOD = "good"
    REVOKED = "revoked"
    UNKNOWN = "unknown"  # OCSP only: the responder does not know the certificate


class Rejection(str, enum.Enum):
    """Why an OCSP response or CRL was not accepted (:attr:`ResponseRejected.reason`)."""

    MALFORMED = "malformed"  # not DER/PEM of the expected structure
    UNSUCCESSFUL = "unsuccessful"  # OCSP responseStatus is not "successful" (tryLater, ...)
    UNSUPPORTED = "unsupported"  # algorithm, critical extension or CRL kind we cannot evaluate
    BAD_SIGNATURE = "bad-signature"  # the signature does not verify with the signer's key
    UNAUTHORIZED_RESPONDER = "unauthorized-responder"  # signer is not the issuer or its delegate
    CERTID_MISMATCH = "certid-mismatch"  # the response is about another certificate
    ISSUER_MISMATCH = "issuer-mismatch"  # the CRL is issued under another name
    WRONG_SCOPE = "wrong-scope"  # the CRL does not cover this certificate (IDP)
    STALE = "stale"  # past nextUpdate (+ skew)
    NOT_YET_VALID = "not-yet-valid"  # thisUpdate in the future (beyond skew)


class ResponseRejected(RevocationCheckFailed):
    """An OCSP response or CRL cannot be trusted or used. ``reason`` says which check failed."""

    def __init__(self, message: str, *, reason: Rejection) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class _Verdict:
    status: CertStatus
    this_update: datetime
    next_update: datetime | None
    valid_until: datetime  # nextUpdate, or thisUpdate + the no-nextUpdate window: cache expiry
    revocation_time: datetime | None = None
    revocation_reason: x509.ReasonFlags | None = None

    def describe_revocation(self) -> str:
        """``"since 2024-05-01 12:00:00Z, reason keyCompromise"`` (empty unless revoked)."""
        if self.status is not CertStatus.REVOKED or self.revocation_time is None:
            return ""
        reason = self.revocation_reason.value if self.revocation_reason else "unspecified"
        return f"since {self.revocation_time:%Y-%m-%d %H:%M:%S}Z, reason {reason}"


@dataclass(frozen=True)
class OCSPVerdict(_Verdict):
    """The verified content of an OCSP response. ``responder`` is ``"issuer"`` or the delegated
    responder's subject."""

    responder: str = "issuer"


@dataclass(frozen=True)
class CRLVerdict(_Verdict):
    """The verified answer of a CRL for one certificate (status is GOOD or REVOKED)."""


@dataclass(frozen=True)
class RevocationSources:
    """Where a certificate says its status can be asked: OCSP URLs (AIA) and CRL URLs (CDP)."""

    ocsp: tuple[str, ...] = ()
    crl: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.ocsp or self.crl)


def describe_certificate(cert: x509.Certificate) -> str:
    """``"CN=leaf,O=Example (serial 01:02:…)"``: how messages name a certificate."""
    raw = cert.serial_number.to_bytes((cert.serial_number.bit_length() + 7) // 8 or 1, "big")
    return f"{name_text(cert.subject) or '<empty subject>'} (serial {raw.hex(':')})"


def revocation_sources(cert: x509.Certificate) -> RevocationSources:
    """The http(s) OCSP and CRL URLs a certificate names, in the order it names them.

    LDAP and other schemes are skipped. CRL distribution points with a ``cRLIssuer`` (indirect
    CRLs) or a ``reasons`` subset (partial CRLs) are skipped too: absence from such a CRL does not
    mean "not revoked".

    Raises:
        ValueError: the certificate's extensions cannot be parsed.
    """
    ocsp_urls: list[str] = []
    crl_urls: list[str] = []
    aia = _extension(cert, x509.AuthorityInformationAccess)
    for desc in aia or ():
        if desc.access_method == AuthorityInformationAccessOID.OCSP:
            _add_http_url(ocsp_urls, desc.access_location)
    cdp = _extension(cert, x509.CRLDistributionPoints)
    for point in cdp or ():
        if point.crl_issuer or point.reasons:
            continue
        for name in point.full_name or ():
            _add_http_url(crl_urls, name)
    return RevocationSources(ocsp=tuple(ocsp_urls), crl=tuple(crl_urls))


def build_ocsp_request(cert: x509.Certificate, issuer: x509.Certificate) -> bytes:
    """DER of an OCSP request for ``cert``, with a SHA-1 CertID (what every responder accepts;
    RFC 5019 §2.1.1) and no nonce (see the module docstring)."""
    builder = ocsp.OCSPRequestBuilder().add_certificate(cert, issuer, hashes.SHA1())  # noqa: S303
    return builder.build().public_bytes(serialization.Encoding.DER)


def verify_ocsp_response(
    der: bytes,
    cert: x509.Certificate,
    issuer: x509.Certificate,
    now: datetime,
    skew: timedelta = DEFAULT_SKEW,
    *,
    no_next_update_window: timedelta = NO_NEXT_UPDATE_WINDOW,
) -> OCSPVerdict:
    """Verify an OCSP response about ``cert`` (issued by ``issuer``) at time ``now``.

    Returns the verdict (good, revoked with time and reason, or unknown); deciding what "unknown"
    means is the caller's business.

    Raises:
        ResponseRejected: with ``reason`` MALFORMED, UNSUCCESSFUL, UNSUPPORTED, BAD_SIGNATURE,
            UNAUTHORIZED_RESPONDER, CERTID_MISMATCH, STALE or NOT_YET_VALID.
        ValueError: ``now`` is naive, or ``issuer`` did not issue ``cert``.
    """
    _require_issued(cert, issuer, now)
    try:
        response = ocsp.load_der_ocsp_response(der)
    except ValueError as e:
        raise ResponseRejected(f"OCSP response is malformed: {e}", reason=Rejection.MALFORMED) from e
    if response.response_status is not ocsp.OCSPResponseStatus.SUCCESSFUL:
        raise ResponseRejected(
            f"OCSP responder answered {response.response_status.name} instead of SUCCESSFUL",
            reason=Rejection.UNSUCCESSFUL,
        )
    try:
        responder = _verify_ocsp_signature(response, issuer, now, skew)
        single = _matching_single_response(response, cert, issuer)
        _reject_critical_ocsp_extensions(response)
        this_update, next_update = single.this_update_utc, single.next_update_utc
        status, revoked_at = single.certificate_status, single.revocation_time_utc
        reason = single.revocation_reason
    except ValueError as e:  # cryptography parses lazily: bad inner structures surface here
        raise ResponseRejected(f"OCSP response is malformed: {e}", reason=Rejection.MALFORMED) from e
    valid_until = _check_freshness(
        "OCSP response", this_update, next_update, now, skew, no_next_update_window
    )
    return OCSPVerdict(
        status=_OCSP_STATUS[status],
        this_update=this_update,
        next_update=next_update,
        valid_until=valid_until,
        revocation_time=revoked_at,
        revocation_reason=reason,
        responder=responder,
    )


def verify_crl(
    der_or_pem: bytes,
    cert: x509.Certificate,
    issuer: x509.Certificate,
    now: datetime,
    skew: timedelta = DEFAULT_SKEW,
    *,
    no_next_update_window: timedelta = NO_NEXT_UPDATE_WINDOW,
) -> CRLVerdict:
    """Verify a CRL issued by ``issuer`` and look ``cert`` up in it, at time ``now``.

    Raises:
        ResponseRejected: with ``reason`` MALFORMED, ISSUER_MISMATCH, BAD_SIGNATURE, UNSUPPORTED,
            WRONG_SCOPE, STALE or NOT_YET_VALID.
        ValueError: ``now`` is naive, or ``issuer`` did not issue ``cert``.
    """
    _require_issued(cert, issuer, now)
    try:
        if der_or_pem.lstrip().startswith(b"-----BEGIN"):
            crl = x509.load_pem_x509_crl(der_or_pem.strip())
        else:
            crl = x509.load_der_x509_crl(der_or_pem)
        crl_issuer, extensions = crl.issuer, crl.extensions
    except ValueError as e:
        raise ResponseRejected(f"CRL is malformed: {e}", reason=Rejection.MALFORMED) from e
    if crl_issuer != issuer.subject:
        raise ResponseRejected(
            f"CRL is issued by {crl_issuer.rfc4514_string()!r}, expected {issuer.subject.rfc4514_string()!r}",
            reason=Rejection.ISSUER_MISMATCH,
        )
    try:
        signature_ok = crl.is_signature_valid(_signing_key(issuer))
    except (TypeError, ValueError, UnsupportedAlgorithm) as e:
        raise ResponseRejected(f"CRL signature cannot be checked: {e}", reason=Rejection.UNSUPPORTED) from e
    if not signature_ok:
        raise ResponseRejected(
            f"CRL signature does not verify with the key of {issuer.subject.rfc4514_string()!r}",
            reason=Rejection.BAD_SIGNATURE,
        )
    _check_crl_scope(extensions, cert)
    valid_until = _check_freshness(
        "CRL", crl.last_update_utc, crl.next_update_utc, now, skew, no_next_update_window
    )
    try:
        entry = crl.get_revoked_certificate_by_serial_number(cert.serial_number)
        reason = _extension(entry, x509.CRLReason) if entry is not None else None
    except ValueError as e:
        raise ResponseRejected(f"CRL entry is malformed: {e}", reason=Rejection.MALFORMED) from e
    return CRLVerdict(
        status=CertStatus.GOOD if entry is None else CertStatus.REVOKED,
        this_update=crl.last_update_utc,
        next_update=crl.next_update_utc,
        valid_until=valid_until,
        revocation_time=entry.revocation_date_utc if entry is not None else None,
        revocation_reason=reason.reason if reason is not None else None,
    )


# --- OCSP helpers --------------------------------------------------------------------------------

_OCSP_STATUS = {
    ocsp.OCSPCertStatus.GOOD: CertStatus.GOOD,
    ocsp.OCSPCertStatus.REVOKED: CertStatus.REVOKED,
    ocsp.OCSPCertStatus.UNKNOWN: CertStatus.UNKNOWN,
}


def _verify_ocsp_signature(
    response: ocsp.OCSPResponse, issuer: x509.Certificate, now: datetime, skew: timedelta
) -> str:
    """Check RFC 6960 §4.2.2.2: signed by the issuer or by a responder it authorised.

    Returns ``"issuer"`` or the delegated responder's subject.
    """
    if _responder_is(response, issuer):
        _check_signature(response, issuer, "the issuer")
        return "issuer"
    candidates = [c for c in response.certificates if _responder_is(response, c)]
    if not candidates:
        raise ResponseRejected(
            f"OCSP response is signed by {_responder_id(response)}, which is neither the issuer "
            f"{issuer.subject.rfc4514_string()!r} nor a responder certificate in the response",
            reason=Rejection.UNAUTHORIZED_RESPONDER,
        )
    # Several included certificates may share the responder's name; the first authorised one
    # wins, and if none is authorised the first one's problem is reported.
    problems: list[ResponseRejected] = []
    for candidate in candidates:
        try:
            _check_delegate(candidate, issuer, now, skew)
        except ResponseRejected as e:
            problems.append(e)
            continue
        _check_signature(response, candidate, "the delegated responder")
        return name_text(candidate.subject)
    raise problems[0]


def _check_delegate(
    delegate: x509.Certificate, issuer: x509.Certificate, now: datetime, skew: timedelta
) -> None:
    name = repr(delegate.subject.rfc4514_string())
    try:
        delegate.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm) as e:
        detail = str(e) or "its signature does not verify with the issuer's key"
        raise ResponseRejected(
            f"OCSP responder {name} is not a delegate of the issuer "
            f"{issuer.subject.rfc4514_string()!r}: {detail}",
            reason=Rejection.UNAUTHORIZED_RESPONDER,
        ) from e
    eku = _extension(delegate, x509.ExtendedKeyUsage)
    if eku is None or ExtendedKeyUsageOID.OCSP_SIGNING not in eku:
        raise ResponseRejected(
            f"OCSP responder {name} is issued by the issuer but lacks the id-kp-OCSPSigning "
            "extended key usage, so it is not authorised to answer for it",
            reason=Rejection.UNAUTHORIZED_RESPONDER,
        )
    if not delegate.not_valid_before_utc - skew <= now <= delegate.not_valid_after_utc + skew:
        raise ResponseRejected(
            f"OCSP responder certificate {name} is outside its validity "
            f"({delegate.not_valid_before_utc:%Y-%m-%d %H:%M}Z to "
            f"{delegate.not_valid_after_utc:%Y-%m-%d %H:%M}Z)",
            reason=Rejection.UNAUTHORIZED_RESPONDER,
        )


def _responder_is(response: ocsp.OCSPResponse, cert: x509.Certificate) -> bool:
    if response.responder_name is not None:
        return response.responder_name == cert.subject
    key_hash = response.responder_key_hash or b""
    return hmac.compare_digest(key_hash, _key_hash(cert))


def _responder_id(response: ocsp.OCSPResponse) -> str:
    if response.responder_name is not None:
        return repr(response.responder_name.rfc4514_string())
    return f"the key with SHA-1 hash {(response.responder_key_hash or b'').hex()}"


def _key_hash(cert: x509.Certificate) -> bytes:
    # RFC 6960 ResponderID byKey: SHA-1 of the subjectPublicKey BIT STRING, which is exactly
    # RFC 5280's key identifier method (1).
    return x509.SubjectKeyIdentifier.from_public_key(cert.public_key()).digest


def _check_signature(response: ocsp.OCSPResponse, signer: x509.Certificate, who: str) -> None:
    try:
        _verify_signature(
            _signing_key(signer),
            response.signature,
            response.tbs_response_bytes,
            response.signature_algorithm_oid,
            lambda: response.signature_hash_algorithm,
        )
    except InvalidSignature as e:
        raise ResponseRejected(
            f"OCSP response signature does not verify with the key of {who} "
            f"{signer.subject.rfc4514_string()!r}",
            reason=Rejection.BAD_SIGNATURE,
        ) from e


def _verify_signature(
    key: _SigningKey,
    signature: bytes,
    data: bytes,
    oid: x509.ObjectIdentifier,
    hash_algorithm: Callable[[], hashes.HashAlgorithm | None],
) -> None:
    """Raises InvalidSignature, or ResponseRejected(UNSUPPORTED) for an algorithm we do not do."""
    # The algorithm family must match the key: a response labelled ECDSA must not be checked as
    # RSA just because the signer happens to hold an RSA key.
    try:
        if isinstance(key, rsa.RSAPublicKey) and oid in _RSA_PKCS1_OIDS:
            key.verify(signature, data, padding.PKCS1v15(), _need_hash(hash_algorithm()))
            return
        if isinstance(key, ec.EllipticCurvePublicKey) and oid in _ECDSA_OIDS:
            key.verify(signature, data, ec.ECDSA(_need_hash(hash_algorithm())))
            return
    except UnsupportedAlgorithm as e:
        raise ResponseRejected(f"unsupported signature hash: {e}", reason=Rejection.UNSUPPORTED) from e
    if isinstance(key, ed25519.Ed25519PublicKey) and oid == SignatureAlgorithmOID.ED25519:
        key.verify(signature, data)
        return
    if isinstance(key, ed448.Ed448PublicKey) and oid == SignatureAlgorithmOID.ED448:
        key.verify(signature, data)
        return
    # RSASSA-PSS lands here too: cryptography does not expose an OCSP response's PSS parameters.
    raise ResponseRejected(
        f"signature algorithm {oid.dotted_string} with a {type(key).__name__} is not supported",
        reason=Rejection.UNSUPPORTED,
    )


def _need_hash(algorithm: hashes.HashAlgorithm | None) -> hashes.HashAlgorithm:
    if algorithm is None:
        raise UnsupportedAlgorithm("signature algorithm names no hash")
    return algorithm


def _matching_single_response(
    response: ocsp.OCSPResponse, cert: x509.Certificate, issuer: x509.Certificate
) -> ocsp.OCSPSingleResponse:
    """The SingleResponse whose CertID is ``cert``'s, hashed the way the responder hashed it."""
    seen: list[str] = []
    for single in response.responses:
        try:
            algorithm = single.hash_algorithm
            expected = ocsp.OCSPRequestBuilder().add_certificate(cert, issuer, algorithm).build()
        except (UnsupportedAlgorithm, ValueError):
            seen.append(f"serial {single.serial_number:x} with an unsupported CertID hash")
            continue
        if (
            single.serial_number == cert.serial_number
            and hmac.compare_digest(single.issuer_name_hash, expected.issuer_name_hash)
            and hmac.compare_digest(single.issuer_key_hash, expected.issuer_key_hash)
        ):
            return single
        seen.append(
            f"serial {single.serial_number:x} ({algorithm.name} issuer hashes "
            f"{'match' if single.issuer_key_hash == expected.issuer_key_hash else 'differ'})"
        )
    raise ResponseRejected(
        f"OCSP response is not about this certificate: asked for serial {cert.serial_number:x} "
        f"issued by {issuer.subject.rfc4514_string()!r}, got {', '.join(seen) or 'nothing'}",
        reason=Rejection.CERTID_MISMATCH,
    )


def _reject_critical_ocsp_extensions(response: ocsp.OCSPResponse) -> None:
    for ext in response.extensions:
        if ext.critical and ext.oid != OCSPExtensionOID.NONCE:
            raise ResponseRejected(
                f"OCSP response carries an unsupported critical extension {ext.oid.dotted_string}",
                reason=Rejection.UNSUPPORTED,
            )


# --- CRL helpers ---------------------------------------------------------------------------------


def _check_crl_scope(extensions: x509.Extensions, cert: x509.Certificate) -> None:
    """Refuse CRLs that are not a complete list for ``cert`` (RFC 5280 §5.2.5, §6.3.3)."""
    for ext in extensions:
        if ext.oid == ExtensionOID.DELTA_CRL_INDICATOR:
            raise ResponseRejected("CRL is a delta CRL, not a complete one", reason=Rejection.UNSUPPORTED)
        if ext.critical and ext.oid not in _KNOWN_CRL_EXTENSIONS:
            raise ResponseRejected(
                f"CRL carries an unsupported critical extension {ext.oid.dotted_string}",
                reason=Rejection.UNSUPPORTED,
            )
    idp = next((e.value for e in extensions if isinstance(e.value, x509.IssuingDistributionPoint)), None)
    if idp is None:
        return
    if idp.indirect_crl or idp.only_some_reasons or idp.only_contains_attribute_certs:
        raise ResponseRejected(
            "CRL is indirect or covers only some reasons or attribute certificates",
            reason=Rejection.UNSUPPORTED,
        )
    is_ca = _is_ca(cert)
    if (idp.only_contains_user_certs and is_ca) or (idp.only_contains_ca_certs and not is_ca):
        raise ResponseRejected(
            f"CRL covers only {'end-entity' if is_ca else 'CA'} certificates",
            reason=Rejection.WRONG_SCOPE,
        )
    # A partitioned CRL names its distribution point; it answers only for certificates that name
    # the same point, or a validly signed CRL for another partition could be passed off as ours.
    if idp.full_name:
        ours = set(revocation_sources(cert).crl)
        theirs = {str(n.value) for n in idp.full_name if isinstance(n, x509.UniformResourceIdentifier)}
        if not ours & theirs:
            raise ResponseRejected(
                f"CRL is for distribution point {sorted(theirs)}, the certificate names {sorted(ours)}",
                reason=Rejection.WRONG_SCOPE,
            )


def _is_ca(cert: x509.Certificate) -> bool:
    constraints = _extension(cert, x509.BasicConstraints)
    return bool(constraints is not None and constraints.ca)


# --- shared helpers ------------------------------------------------------------------------------


def _check_freshness(
    what: str,
    this_update: datetime,
    next_update: datetime | None,
    now: datetime,
    skew: timedelta,
    no_next_update_window: timedelta,
) -> datetime:
    """Returns the time until which the data may be used (nextUpdate, or the window's end)."""
    if this_update > now + skew:
        raise ResponseRejected(
            f"{what} is not valid yet: thisUpdate {this_update:%Y-%m-%d %H:%M:%S}Z is after "
            f"now {now:%Y-%m-%d %H:%M:%S}Z + {skew}",
            reason=Rejection.NOT_YET_VALID,
        )
    valid_until = next_update if next_update is not None else this_update + no_next_update_window
    if now - skew > valid_until:
        detail = (
            f"nextUpdate {next_update:%Y-%m-%d %H:%M:%S}Z"
            if next_update is not None
            else f"it has no nextUpdate and thisUpdate {this_update:%Y-%m-%d %H:%M:%S}Z is more "
            f"than {no_next_update_window} ago"
        )
        raise ResponseRejected(
            f"{what} is stale: {detail}, now {now:%Y-%m-%d %H:%M:%S}Z (skew allowed {skew})",
            reason=Rejection.STALE,
        )
    return valid_until


def _require_issued(cert: x509.Certificate, issuer: x509.Certificate, now: datetime) -> None:
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be timezone-aware")
    if cert.issuer != issuer.subject:
        raise ValueError(
            f"{issuer.subject.rfc4514_string()!r} is not the issuer of {describe_certificate(cert)}"
        )


def _signing_key(cert: x509.Certificate) -> _SigningKey:
    key = cert.public_key()
    if not isinstance(
        key, (rsa.RSAPublicKey, ec.EllipticCurvePublicKey, ed25519.Ed25519PublicKey, ed448.Ed448PublicKey)
    ):
        raise ResponseRejected(
            f"{cert.subject.rfc4514_string()!r} has a {type(key).__name__}, which pinclient "
            "does not verify signatures with",
            reason=Rejection.UNSUPPORTED,
        )
    return key


def _extension(holder: x509.Certificate | x509.RevokedCertificate, kind: type[_ExtT]) -> _ExtT | None:
    try:
        return holder.extensions.get_extension_for_class(kind).value
    except x509.ExtensionNotFound:
        return None


def _add_http_url(urls: list[str], name: x509.GeneralName) -> None:
    if isinstance(name, x509.UniformResourceIdentifier):
        url = name.value
        if url.lower().startswith(("http://", "https://")) and url not in urls:
            urls.append(url)
