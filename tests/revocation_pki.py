"""Test PKI and loopback servers for the revocation tests.

* :class:`RevocationPKI`: root (RSA, so CRLs it signs exercise PKCS#1 v1.5) → intermediate (P-256)
  → leaves whose AIA/CDP point at a loopback HTTP server; OCSP responder certificates with and
  without id-kp-OCSPSigning; an unrelated CA; builders for OCSP responses and CRLs.
* :class:`LoopbackHTTP`: ``http.server`` on 127.0.0.1 in a thread, with per-path routes and hit
  counts (how the tests prove a cache hit sent nothing).
* :class:`OpenSSLResponder`: OpenSSL's own OCSP responder (``openssl ocsp -index … -rsigner …``)
  answering each request posted to a route.

Why OpenSSL runs per request (``-reqin - -respout -``) rather than as ``openssl ocsp -port N``:
OpenSSL 3.0's ``-port`` takes a bare number and listens on *all* interfaces, and the tests may
only use loopback. Per-request mode runs the same responder code (index lookup, ``-rsigner``,
``-nmin``, ``-resp_key_id``, ``-badsig``) behind a server bound to 127.0.0.1, and it cannot be
wedged by a probe connection because it has no listener at all.
"""

from __future__ import annotations

import datetime as dt
import http.server
import shutil
import socket
import subprocess
import threading
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509 import ocsp
from cryptography.x509.oid import ExtendedKeyUsageOID

from pinclient._pki import PrivateKey, build_certificate, name, new_key

OPENSSL = shutil.which("openssl")

Key = PrivateKey
# A route gets the request body and answers (status, body).
Route = Callable[[bytes], tuple[int, bytes]]


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(microsecond=0)


def closed_port() -> int:
    """A loopback port nobody listens on (connections to it are refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class Issued:
    cert: x509.Certificate
    key: Key

    @property
    def name(self) -> str:
        return self.cert.subject.rfc4514_string()

    def write(self, folder: Path, stem: str) -> tuple[Path, Path]:
        cert_path, key_path = folder / f"{stem}.pem", folder / f"{stem}.key"
        cert_path.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))
        key_path.write_bytes(
            self.key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        return cert_path, key_path


def issue(
    cn: str,
    *,
    issuer: Issued | None,
    key: Key | None = None,
    ca: bool = False,
    ocsp_url: str | None = None,
    crl_url: str | None = None,
    eku: Sequence[x509.ObjectIdentifier] = (),
    not_before: dt.datetime | None = None,
    not_after: dt.datetime | None = None,
) -> Issued:
    """A certificate for ``cn`` signed by ``issuer`` (self-signed when None), valid from a day ago
    for 30 days: :func:`pinclient._pki.build_certificate` with a bare (certificate, key) issuer, so
    a test can pair a CA's name with another key."""
    key = key if key is not None else new_key()
    now = utcnow()
    cert = build_certificate(
        name(cn, "pinclient revocation tests"), key,
        issuer=issuer.cert.subject if issuer else None, signer=issuer.key if issuer else None, ca=ca,
        not_before=not_before or now - dt.timedelta(days=1), not_after=not_after or now + dt.timedelta(days=30),
        eku=eku, ocsp_url=ocsp_url, crl_url=crl_url,
    )
    return Issued(cert, key)


def make_crl(
    issuer: Issued,
    revoked: Sequence[tuple[x509.Certificate, x509.ReasonFlags | None]] = (),
    *,
    this_update: dt.datetime | None = None,
    next_update: dt.datetime | None = None,
    sign_with: Key | None = None,
    extensions: Sequence[tuple[x509.ExtensionType, bool]] = (),
    revoked_at: dt.datetime | None = None,
) -> bytes:
    """DER of a CRL by ``issuer`` listing ``revoked`` (certificate, reason); by default issued a
    minute ago, next update in a day, revoked two hours ago."""
    now = utcnow()
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(issuer.cert.subject)
        .last_update(this_update or now - dt.timedelta(minutes=1))
        .next_update(next_update or now + dt.timedelta(days=1))
    )
    for cert, reason in revoked:
        entry = (
            x509.RevokedCertificateBuilder()
            .serial_number(cert.serial_number)
            .revocation_date(revoked_at or now - dt.timedelta(hours=2))
        )
        if reason is not None:
            entry = entry.add_extension(x509.CRLReason(reason), critical=False)
        builder = builder.add_revoked_certificate(entry.build())
    for ext, critical in extensions:
        builder = builder.add_extension(ext, critical=critical)
    crl = builder.sign(sign_with or issuer.key, hashes.SHA256())
    return crl.public_bytes(serialization.Encoding.DER)


class RevocationPKI:
    """root (RSA) → intermediate (P-256, CRL at ``/root.crl``) → leaves made on demand."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.root = issue(
            "Revocation Test Root",
            issuer=None,
            ca=True,
            key=rsa.generate_private_key(public_exponent=65537, key_size=2048),
        )
        self.intermediate = issue(
            "Revocation Test Issuing CA", issuer=self.root, ca=True, crl_url=f"{base_url}/root.crl"
        )
        self.other_ca = issue("Unrelated CA", issuer=None, ca=True)
        # Delegated responders issued by the intermediate: one authorised, one not; and one
        # responder certificate with the right EKU but from the unrelated CA.
        self.delegate = issue(
            "OCSP Responder",
            issuer=self.intermediate,
            eku=[ExtendedKeyUsageOID.OCSP_SIGNING],
            key=rsa.generate_private_key(public_exponent=65537, key_size=2048),
        )
        self.delegate_no_eku = issue(
            "OCSP Responder Without EKU", issuer=self.intermediate, eku=[ExtendedKeyUsageOID.SERVER_AUTH]
        )
        self.unrelated_responder = issue(
            "Rogue OCSP Responder", issuer=self.other_ca, eku=[ExtendedKeyUsageOID.OCSP_SIGNING]
        )

    def leaf(
        self, cn: str = "updates.test", *, ocsp: bool = True, crl: bool = True, ocsp_url: str | None = None
    ) -> Issued:
        return issue(
            cn,
            issuer=self.intermediate,
            ocsp_url=ocsp_url or (f"{self.base_url}/ocsp" if ocsp else None),
            crl_url=f"{self.base_url}/int.crl" if crl else None,
            eku=[ExtendedKeyUsageOID.SERVER_AUTH],
        )

    def chain(self, leaf: Issued) -> list[x509.Certificate]:
        return [leaf.cert, self.intermediate.cert, self.root.cert]

    def crl(self, issuer: Issued, revoked: Sequence[tuple[x509.Certificate, x509.ReasonFlags | None]] = (),
            **kwargs: Any) -> bytes:
        return make_crl(issuer, revoked, **kwargs)

    def ocsp_response(
        self,
        cert: x509.Certificate,
        *,
        issuer: Issued | None = None,
        status: ocsp.OCSPCertStatus = ocsp.OCSPCertStatus.GOOD,
        signer: Issued | None = None,
        sign_with: Key | None = None,
        this_update: dt.datetime | None = None,
        next_update: dt.datetime | None = None,
        no_next_update: bool = False,
        certid_issuer: Issued | None = None,
        algorithm: hashes.HashAlgorithm | None = None,
        by_key: bool = False,
        revocation_time: dt.datetime | None = None,
        reason: x509.ReasonFlags | None = None,
    ) -> bytes:
        """A signed response; defaults: about ``cert`` from the intermediate, signed by it, valid
        from a minute ago for an hour."""
        issuer = issuer or self.intermediate
        signer = signer or issuer
        now = utcnow()
        this = this_update or now - dt.timedelta(minutes=1)
        nxt = None if no_next_update else next_update or this + dt.timedelta(hours=1)
        revoked = status is ocsp.OCSPCertStatus.REVOKED
        builder = ocsp.OCSPResponseBuilder().add_response(
            cert=cert,
            issuer=(certid_issuer or issuer).cert,
            algorithm=algorithm or hashes.SHA1(),
            cert_status=status,
            this_update=this,
            next_update=nxt,
            revocation_time=(revocation_time or now - dt.timedelta(hours=2)) if revoked else None,
            revocation_reason=reason if revoked else None,
        )
        encoding = ocsp.OCSPResponderEncoding.HASH if by_key else ocsp.OCSPResponderEncoding.NAME
        builder = builder.responder_id(encoding, signer.cert)
        if signer is not issuer:
            builder = builder.certificates([signer.cert])
        key: Any = sign_with or signer.key
        return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)


def index_line(
    cert: x509.Certificate,
    *,
    revoked: x509.ReasonFlags | None = None,
    revoked_at: dt.datetime | None = None,
) -> str:
    """One line of an OpenSSL ``ca``/``ocsp`` index file (tab-separated); ``revoked`` is the
    reason (``ReasonFlags.unspecified`` for none), None for a valid certificate."""
    serial = f"{cert.serial_number:X}"
    serial = serial if len(serial) % 2 == 0 else "0" + serial  # BN_bn2hex: whole bytes
    expiry = cert.not_valid_after_utc.strftime("%y%m%d%H%M%SZ")
    subject = "/" + "/".join(f"{a.rfc4514_attribute_name}={a.value!s}" for a in cert.subject)
    if revoked is None:
        return f"V\t{expiry}\t\t{serial}\tunknown\t{subject}\n"
    when = (revoked_at or utcnow() - dt.timedelta(hours=2)).strftime("%y%m%d%H%M%SZ")
    if revoked is not x509.ReasonFlags.unspecified:
        when += f",{revoked.value}"
    return f"R\t{expiry}\t{when}\t{serial}\tunknown\t{subject}\n"


class OpenSSLResponder:
    """``openssl ocsp`` as the responder for ``issuer``, run once per request."""

    def __init__(
        self, folder: Path, *, issuer: Issued, signer: Issued, index: str, extra: Sequence[str] = ()
    ) -> None:
        assert OPENSSL is not None
        folder.mkdir(parents=True, exist_ok=True)
        ca_pem, _ = issuer.write(folder, "ca")
        signer_pem, signer_key = signer.write(folder, "rsigner")
        index_path = folder / "index.txt"
        index_path.write_text(index)
        self.argv = [
            OPENSSL, "ocsp", "-index", str(index_path), "-CA", str(ca_pem),
            "-rsigner", str(signer_pem), "-rkey", str(signer_key),
            "-reqin", "-", "-respout", "-", *extra,
        ]  # fmt: skip

    def __call__(self, body: bytes) -> tuple[int, bytes]:
        done = subprocess.run(self.argv, input=body, capture_output=True, timeout=30, check=False)
        if done.returncode != 0 or not done.stdout:
            return 500, done.stderr
        return 200, done.stdout


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _Server

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        path = self.path.split("?", 1)[0]
        with self.server.lock:
            self.server.hits[path] += 1
            route = self.server.routes.get(path)
        status, payload = route(body) if route else (404, b"no route")
        self.send_response(status)
        self.send_header("Content-Type", "application/octet-stream")
        if self.server.declare_length:  # else the body ends when the connection closes
            self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = _serve

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    routes: dict[str, Route]
    hits: Counter[str]
    lock: threading.Lock
    declare_length: bool = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that gave up (timeout tests) is not an error here


class LoopbackHTTP:
    """An HTTP server on 127.0.0.1 with settable routes and per-path hit counts. Not the update
    server (pinclient._demo.LoopbackServer, the ``https_server`` fixture): OCSP and CRLs go over
    plain HTTP, and OCSP requests are POSTs whose bodies the routes answer, which http.server reads."""

    def __init__(self) -> None:
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.routes = {}
        self._server.hits = Counter()
        self._server.lock = threading.Lock()
        self.port = int(self._server.server_address[1])
        self.base_url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def routes(self) -> dict[str, Route]:
        return self._server.routes

    @property
    def hits(self) -> Counter[str]:
        return self._server.hits

    @property
    def declare_length(self) -> bool:
        return self._server.declare_length

    @declare_length.setter
    def declare_length(self, value: bool) -> None:
        self._server.declare_length = value

    def reset(self) -> None:
        with self._server.lock:
            self._server.routes.clear()
            self._server.hits.clear()
            self._server.declare_length = True

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()
