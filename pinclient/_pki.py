"""A tiny certificate authority built with ``cryptography``, for the demo and the tests.

Certificates carry the extensions OpenSSL's strict verification (``VERIFY_X509_STRICT``, set by
urllib3 on Python 3.13) requires: critical basic constraints and key usage, subject and authority
key identifiers, a SAN and serverAuth on leaves. Keys are P-256: fast to make, real to verify.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import AuthorityInformationAccessOID, ExtendedKeyUsageOID, NameOID

__all__ = ["CA", "Leaf", "new_key"]

PrivateKey = ec.EllipticCurvePrivateKey


def new_key() -> PrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(microsecond=0)


def _name(common_name: str, org: str = "pinclient test PKI") -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, org),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _with_revocation_sources(builder: x509.CertificateBuilder, ocsp_url: str | None,
                             crl_url: str | None) -> x509.CertificateBuilder:
    """Add an AIA OCSP URL and a CRL distribution point, when given."""
    if ocsp_url:
        builder = builder.add_extension(x509.AuthorityInformationAccess([
            x509.AccessDescription(AuthorityInformationAccessOID.OCSP,
                                   x509.UniformResourceIdentifier(ocsp_url))]), critical=False)
    if crl_url:
        builder = builder.add_extension(x509.CRLDistributionPoints([
            x509.DistributionPoint([x509.UniformResourceIdentifier(crl_url)], None, None, None)]),
            critical=False)
    return builder


@dataclass
class Leaf:
    """A server certificate with its key and the chain above it (issuing CA first, root last)."""

    cert: x509.Certificate
    key: PrivateKey
    parents: list[x509.Certificate]

    def key_pem(self) -> bytes:
        return self.key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption())

    def chain_pem(self, *, include_root: bool = False, extra: Sequence[x509.Certificate] = ()) -> bytes:
        """PEM of what a server sends: the leaf, its intermediates (and the root if asked), and any
        ``extra`` certificates appended (to build hostile chains)."""
        above = self.parents if include_root else self.parents[:-1]
        return b"".join(_pem(c) for c in [self.cert, *above, *extra])


class CA:
    """A root (``parent=None``) or intermediate CA."""

    def __init__(self, common_name: str, *, parent: CA | None = None, key: PrivateKey | None = None,
                 subject: x509.Name | None = None, org: str = "pinclient test PKI",
                 not_before: dt.datetime | None = None, not_after: dt.datetime | None = None,
                 path_length: int | None = None, ocsp_url: str | None = None,
                 crl_url: str | None = None) -> None:
        self.key = key or new_key()
        self.parent = parent
        self.subject = subject or _name(common_name, org)
        start = not_before or _now() - dt.timedelta(days=1)
        end = not_after or _now() + dt.timedelta(days=3650)
        signer_key = parent.key if parent else self.key
        issuer = parent.subject if parent else self.subject
        builder = (
            x509.CertificateBuilder()
            .subject_name(self.subject)
            .issuer_name(issuer)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(end)
            .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False,
                                         key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, key_cert_sign=True, crl_sign=True,
                                         encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(self.key.public_key()),
                           critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(signer_key.public_key()),
                           critical=False)
        )
        builder = _with_revocation_sources(builder, ocsp_url, crl_url)
        self.cert = builder.sign(signer_key, hashes.SHA256())

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
        names: list[x509.GeneralName] = []
        for host in hosts:
            try:
                names.append(x509.IPAddress(ipaddress.ip_address(host)))
            except ValueError:
                names.append(x509.DNSName(host))
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(hosts[0] if hosts else "leaf", "pinclient test server"))
            .issuer_name(self.subject)
            .public_key(leaf_key.public_key())
            .serial_number(serial if serial is not None else x509.random_serial_number())
            .not_valid_before(not_before or _now() - dt.timedelta(hours=1))
            .not_valid_after(not_after or _now() + dt.timedelta(days=90))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False,
                                         key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, key_cert_sign=False, crl_sign=False,
                                         encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(leaf_key.public_key()),
                           critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()),
                           critical=False)
        )
        builder = _with_revocation_sources(builder, ocsp_url, crl_url)
        cert = builder.sign(self.key, hashes.SHA256())
        return Leaf(cert=cert, key=leaf_key, parents=self.chain)
