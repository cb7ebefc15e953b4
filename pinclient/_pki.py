"""A tiny certificate authority built with ``cryptography``, for the demo and the tests: the one place
the project builds certificates (tests/revocation_pki.py adds OCSP responses and CRLs on top).

Certificates carry the extensions OpenSSL's strict verification (``VERIFY_X509_STRICT``, set by
urllib3 on Python 3.13) requires: critical basic constraints and key usage, subject and authority
key identifiers, a SAN and serverAuth on leaves. Keys are P-256 unless given: fast to make, real to
verify.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import ssl
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import AuthorityInformationAccessOID, ExtendedKeyUsageOID, NameOID

__all__ = ["CA", "Leaf", "PrivateKey", "build_certificate", "name", "new_key"]

PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey


def new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(microsecond=0)


def name(common_name: str, org: str = "pinclient test PKI") -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, org),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _key_pem(key: PrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _general_name(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


def build_certificate(subject: x509.Name, key: PrivateKey, *, issuer: x509.Name | None = None,
                      signer: PrivateKey | None = None, ca: bool, path_length: int | None = None,
                      not_before: dt.datetime, not_after: dt.datetime, serial: int | None = None,
                      hosts: Sequence[str] = (), eku: Sequence[x509.ObjectIdentifier] = (),
                      ocsp_url: str | None = None, crl_url: str | None = None) -> x509.Certificate:
    """A certificate for ``key`` named ``subject``, signed by ``signer`` as ``issuer`` (self-signed when
    both are None): a CA (certificate and CRL signing) or an end entity (digital signature) with a SAN
    for ``hosts``, the extended key usages ``eku``, and an AIA OCSP URL and CRL distribution point
    when given. Nothing checks that ``issuer`` and ``signer`` belong together: tests forge on purpose.
    """
    signer = signer or key
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer or subject)
        .public_key(key.public_key())
        .serial_number(serial if serial is not None else x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=path_length if ca else None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False,
                                     key_encipherment=False, data_encipherment=False,
                                     key_agreement=False, key_cert_sign=ca, crl_sign=ca,
                                     encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(signer.public_key()),
                       critical=False)
    )
    if eku:
        builder = builder.add_extension(x509.ExtendedKeyUsage(list(eku)), critical=False)
    if hosts:
        builder = builder.add_extension(x509.SubjectAlternativeName([_general_name(h) for h in hosts]),
                                        critical=False)
    if ocsp_url:
        builder = builder.add_extension(x509.AuthorityInformationAccess([
            x509.AccessDescription(AuthorityInformationAccessOID.OCSP,
                                   x509.UniformResourceIdentifier(ocsp_url))]), critical=False)
    if crl_url:
        builder = builder.add_extension(x509.CRLDistributionPoints([
            x509.DistributionPoint([x509.UniformResourceIdentifier(crl_url)], None, None, None)]),
            critical=False)
    return builder.sign(signer, hashes.SHA256())


@dataclass
class Leaf:
    """A server certificate with its key and the chain above it (issuing CA first, root last)."""

    cert: x509.Certificate
    key: PrivateKey
    parents: list[x509.Certificate]

    def key_pem(self) -> bytes:
        return _key_pem(self.key)

    def chain_pem(self, *, include_root: bool = False, extra: Sequence[x509.Certificate] = ()) -> bytes:
        """PEM of what a server sends: the leaf, its intermediates (and the root if asked), and any
        ``extra`` certificates appended (to build hostile chains)."""
        above = self.parents if include_root else self.parents[:-1]
        return b"".join(_pem(c) for c in [self.cert, *above, *extra])

    def server_context(self, *, include_root: bool = False, extra: Sequence[x509.Certificate] = (),
                       max_version: ssl.TLSVersion | None = None) -> ssl.SSLContext:
        """A server-side TLS context presenting :meth:`chain_pem` with this key. OpenSSL loads both
        from files; they live in a private temporary folder only while it reads them."""
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        with tempfile.TemporaryDirectory(prefix="pinclient-tls-") as tmp:
            chain, key = Path(tmp) / "chain.pem", Path(tmp) / "key.pem"
            chain.write_bytes(self.chain_pem(include_root=include_root, extra=extra))
            key.write_bytes(self.key_pem())
            ctx.load_cert_chain(chain, key)
        if max_version is not None:
            ctx.maximum_version = max_version
        return ctx


class CA:
    """A root (``parent=None``) or intermediate CA."""

    def __init__(self, common_name: str, *, parent: CA | None = None, key: PrivateKey | None = None,
                 subject: x509.Name | None = None, org: str = "pinclient test PKI",
                 not_before: dt.datetime | None = None, not_after: dt.datetime | None = None,
                 path_length: int | None = None, ocsp_url: str | None = None,
                 crl_url: str | None = None) -> None:
        self.key: PrivateKey = key or new_key()
        self.parent = parent
        self.subject = subject or name(common_name, org)
        self.cert = build_certificate(
            self.subject, self.key, issuer=parent.subject if parent else None,
            signer=parent.key if parent else None, ca=True, path_length=path_length,
            not_before=not_before or _now() - dt.timedelta(days=1),
            not_after=not_after or _now() + dt.timedelta(days=3650), ocsp_url=ocsp_url, crl_url=crl_url)

    @property
    def chain(self) -> list[x509.Certificate]:
        """This CA and those above it, up to the root."""
        return [self.cert, *(self.parent.chain if self.parent else [])]

    def cert_pem(self) -> bytes:
        return _pem(self.cert)

    def child_ca(self, common_name: str, **kwargs: object) -> CA:
        return CA(common_name, parent=self, **kwargs)  # type: ignore[arg-type]

    def issue_leaf(self, *hosts: str, not_before: dt.datetime | None = None,
                   not_after: dt.datetime | None = None, serial: int | None = None,
                   ocsp_url: str | None = None, crl_url: str | None = None,
                   key: PrivateKey | None = None) -> Leaf:
        """A server certificate for ``hosts`` (DNS names or IP addresses)."""
        leaf_key = key or new_key()
        cert = build_certificate(
            name(hosts[0] if hosts else "leaf", "pinclient test server"), leaf_key, issuer=self.subject,
            signer=self.key, ca=False, not_before=not_before or _now() - dt.timedelta(hours=1),
            not_after=not_after or _now() + dt.timedelta(days=90), serial=serial, hosts=hosts,
            eku=[ExtendedKeyUsageOID.SERVER_AUTH], ocsp_url=ocsp_url, crl_url=crl_url)
        return Leaf(cert=cert, key=leaf_key, parents=self.chain)
