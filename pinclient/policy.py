"""The pin policy, pure: a verified chain, a host and a config in; a verdict out.

No sockets, no files. The same function decides for the transport, ``pinclient check`` and the TUF
fetcher, which is what lets the tests run it over thousands of generated chains.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from ._hosts import normalize_host
from .config import BlockedCert, NameKey, Pin, PinConfig, Pinset, canonical_name, format_serial
from .errors import ChainEntry, PinViolation

__all__ = ["ChainCert", "Verdict", "evaluate", "parse_chain", "spki_sha256"]

Reason = Literal["pinned", "unpinned-allowed", "unexpected-issuer", "blocked", "unpinned",
                 "no-verified-chain"]


def spki_sha256(cert: x509.Certificate) -> bytes:
    """SHA-256 of the certificate's DER SubjectPublicKeyInfo (the HPKP / OkHttp pin)."""
    spki = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(spki).digest()


@dataclass(frozen=True)
class ChainCert:
    """A certificate of a verified chain with the values the policy compares, computed once."""

    der: bytes
    cert: x509.Certificate
    spki_sha256: bytes
    subject: NameKey
    issuer: NameKey

    @property
    def spki_b64(self) -> str:
        return base64.b64encode(self.spki_sha256).decode()

    @property
    def subject_text(self) -> str:
        return self.cert.subject.rfc4514_string()

    def entry(self) -> ChainEntry:
        return ChainEntry(
            subject=self.subject_text,
            spki_sha256=self.spki_b64,
            issuer=self.cert.issuer.rfc4514_string(),
            serial=format_serial(self.cert.serial_number),
            not_after=self.cert.not_valid_after_utc.isoformat(),
        )


@lru_cache(maxsize=512)
def _parse_der(der: bytes) -> ChainCert:
    # Cached: a server's chain is the same on every connection, and parsing plus hashing the
    # SPKI is most of the pin check's cost.
    cert = x509.load_der_x509_certificate(der)
    return ChainCert(der=der, cert=cert, spki_sha256=spki_sha256(cert),
                     subject=canonical_name(cert.subject), issuer=canonical_name(cert.issuer))


def parse_chain(chain: Sequence[bytes]) -> tuple[ChainCert, ...]:
    """Parse DER certificates, leaf first.

    Raises:
        ValueError: a certificate cannot be parsed.
    """
    return tuple(_parse_der(bytes(der)) for der in chain)


@dataclass(frozen=True)
class Verdict:
    """The decision for one connection. ``accepted`` is the only field the transport obeys; the rest
    explains it."""

    host: str
    accepted: bool
    reason: Reason
    chain: tuple[ChainCert, ...]
    pinset: Pinset | None = None
    matched: Pin | None = None
    blocked: BlockedCert | None = None
    blocked_cert: ChainCert | None = None

    def violation(self, port: int | None = None) -> PinViolation:
        """The :class:`PinViolation` that refuses this connection (only for a refused verdict)."""
        assert not self.accepted
        expected = tuple(p.describe() for p in self.pinset.issuers) if self.pinset else ()
        return PinViolation(
            format_refusal(self, port),
            host=self.host,
            port=port,
            pinset=self.pinset.name if self.pinset else None,
            reason=self.reason,
            chain=[c.entry() for c in self.chain],
            expected=expected,
            blocked_by=self.blocked.describe() if self.blocked else None,
        )


def _blocked_entry(config: PinConfig, chain: Sequence[ChainCert]) -> tuple[BlockedCert, ChainCert] | None:
    for cert in chain:
        for entry in config.blocked:
            if entry.spki_sha256 is not None:
                if entry.spki_sha256 == cert.spki_sha256:
                    return entry, cert
            elif entry.serial == cert.cert.serial_number and entry.issuer == cert.issuer:
                return entry, cert
    return None


def _matching_pin(pinset: Pinset, chain: Sequence[ChainCert]) -> Pin | None:
    # Only certificates *above the leaf* count: a pin names a CA, and the leaf is the server's own.
    for cert in chain[1:]:
        for pin in pinset.issuers:
            if pin.kind == "spki" and pin.spki_sha256 == cert.spki_sha256:
                return pin
            if pin.kind == "subject" and pin.subject == cert.subject:
                return pin
    return None


def evaluate(config: PinConfig, host: str, chain: Sequence[bytes] | None) -> Verdict:
    """Decide whether a **verified** chain (DER, leaf first) is acceptable for ``host``.

    Order: an empty chain fails closed; a blocked certificate anywhere refuses, pinned host or
    not; an uncovered host follows ``defaults.unpinned``; a covered host needs one of its pinset's
    issuers above the leaf.

    Raises:
        ValueError: ``host`` is not a valid host name, or a certificate cannot be parsed.
    """
    name = normalize_host(host)
    pinset = config.pinset_for(name)
    if not chain:
        return Verdict(name, False, "no-verified-chain", (), pinset)
    certs = parse_chain(chain)
    hit = _blocked_entry(config, certs)
    if hit is not None:
        return Verdict(name, False, "blocked", certs, pinset, blocked=hit[0], blocked_cert=hit[1])
    if pinset is None:
        if config.defaults.unpinned == "allow":
            return Verdict(name, True, "unpinned-allowed", certs)
        return Verdict(name, False, "unpinned", certs)
    pin = _matching_pin(pinset, certs)
    if pin is None:
        return Verdict(name, False, "unexpected-issuer", certs, pinset)
    return Verdict(name, True, "pinned", certs, pinset, matched=pin)


def format_refusal(verdict: Verdict, port: int | None = None) -> str:
    """The refusal text: what happened, the verified chain, and what was expected (OkHttp-style, so
    that pins.toml can be fixed from the message alone)."""
    where = verdict.host if port in (None, 443) else f"{verdict.host}:{port}"
    pinset = f'pinset "{verdict.pinset.name}"' if verdict.pinset else "no pinset"
    if verdict.reason == "blocked":
        assert verdict.blocked is not None
        assert verdict.blocked_cert is not None
        head = (f"Certificate refused for {where} ({pinset}): the verified chain contains a blocked "
                f"certificate, {verdict.blocked_cert.subject_text} — blocklist entry "
                f"{verdict.blocked.describe()}.")
    elif verdict.reason == "unpinned":
        head = (f"Certificate pinning failure for {where}: no pinset in the pins file covers this host "
                'and defaults.unpinned is "refuse". Add a [[pinset]] for it, or set '
                'unpinned = "allow" in [defaults] to accept plain TLS validation.')
    elif verdict.reason == "no-verified-chain":
        head = (f"Certificate pinning failure for {where} ({pinset}): the TLS connection has no verified "
                "chain to check (a resumed session or verification turned off); refusing.")
    else:
        head = (f"Certificate pinning failure for {where} ({pinset}): no certificate above the leaf in "
                "the verified chain matches a pinned issuer.")
    lines = [head]
    if verdict.chain:
        lines.append("  Verified chain (leaf first):")
        lines.extend(f"    sha256/{c.spki_b64}: {c.subject_text}" for c in verdict.chain)
    if verdict.pinset is not None and verdict.reason != "blocked":
        lines.append(f'  Pinned issuers for "{verdict.pinset.name}" (one must appear above the leaf):')
        lines.extend(f"    {p.describe()}" for p in verdict.pinset.issuers)
    return "\n".join(lines)
