"""X.509 helpers shared by the loader, the policy and the tools: the SPKI pin, a comparable DN, and
serial-number formatting. Pure functions of a certificate or a number; no I/O.
"""

from __future__ import annotations

import hashlib

from cryptography import x509
from cryptography.hazmat.primitives import serialization

__all__ = ["NameKey", "canonical_name", "format_serial", "name_text", "spki_sha256"]

#: A DN as compared by the policy: RDNs in order, each a sorted tuple of (OID, folded value).
NameKey = tuple[tuple[tuple[str, str], ...], ...]


def spki_sha256(cert: x509.Certificate) -> bytes:
    """SHA-256 of the certificate's DER SubjectPublicKeyInfo (the HPKP / OkHttp pin)."""
    spki = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(spki).digest()


def canonical_name(name: x509.Name) -> NameKey:
    """A comparable form of a DN: RDNs in order, attributes sorted, values case-folded with runs of
    whitespace collapsed (RFC 5280 §7.1 caseIgnoreMatch, which is what CAs and browsers compare)."""
    rdns = []
    for rdn in name.rdns:
        attrs = sorted(
            (attr.oid.dotted_string, " ".join(str(attr.value).split()).casefold()) for attr in rdn
        )
        rdns.append(tuple(attrs))
    return tuple(rdns)


def name_text(name: x509.Name) -> str:
    """A DN as pinclient shows it anywhere (messages, logs, comments, JSON): RFC 4514 text (which
    already escapes ``"``, ``\\``, ``,``, ``+``, ``;``, ``<``, ``>``) with every character that is not
    printable written as RFC 4514 hex pairs of its UTF-8 bytes (``\\0A`` for a newline, ``\\1B`` for
    ESC), so the text stays one line, has no control characters, and still parses as the same DN.

    Names in certificates are chosen by whoever made the certificate; see
    :func:`pinclient._names.printable` for why this matters.
    """
    text = name.rfc4514_string()
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else "".join(f"\\{b:02X}" for b in ch.encode("utf-8",
                                                                                       "surrogatepass"))
                   for ch in text)


def format_serial(serial: int) -> str:
    """Colon-separated lower-case hex, as certificate viewers show serials."""
    text = f"{serial:x}"
    if len(text) % 2:
        text = "0" + text
    return ":".join(text[i : i + 2] for i in range(0, len(text), 2))
