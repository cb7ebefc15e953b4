"""The one module that touches CPython's verified-chain API and urllib3's connection internals.

Version gating lives here and nowhere else (the way truststore's ``_api.py`` does it):

* Python 3.13+: ``SSLSocket.get_verified_chain()`` / ``SSLObject.get_verified_chain()`` are public
  and return DER ``bytes``.
* Python 3.10-3.12: the method exists only on the private ``_ssl._SSLSocket`` at ``._sslobj`` and
  returns ``_ssl.Certificate`` objects; ``public_bytes(_ssl.ENCODING_DER)`` gives DER.
* Through an HTTPS proxy urllib3 hands us an ``SSLTransport`` (TLS in TLS); the origin's TLS object
  is its ``.sslobj``.

Both APIs return an empty list or None for a resumed session, and with verification off they return
what OpenSSL *attempted*; callers treat an empty chain as a refusal and check that verification was
on (cpython PR 109113 and 17938).
"""

from __future__ import annotations

import ssl
import sys
import threading
from typing import Any

__all__ = ["TLSInfo", "missing_anchor_hint", "served_chain", "shared_context", "tls_info"]


class TLSInfo:
    """What the handshake verified: the server name OpenSSL checked and the verified chain (DER)."""

    __slots__ = ("chain", "server_hostname", "verified")

    def __init__(self, server_hostname: str | None, chain: list[bytes], verified: bool) -> None:
        self.server_hostname = server_hostname
        self.chain = chain
        self.verified = verified


def _tls_object(sock: Any) -> Any:
    # urllib3's SSLTransport (HTTPS proxy, TLS in TLS) keeps the origin's SSLObject in .sslobj.
    inner = getattr(sock, "sslobj", None)
    return inner if inner is not None else sock


def _verified_chain(obj: Any) -> list[bytes]:
    if sys.version_info >= (3, 13):
        chain = obj.get_verified_chain()
        return [bytes(c) for c in chain] if chain else []
    import _ssl

    raw = getattr(obj, "_sslobj", None)
    if raw is None or not hasattr(raw, "get_verified_chain"):
        return []
    chain = raw.get_verified_chain()
    return [c.public_bytes(_ssl.ENCODING_DER) for c in chain] if chain else []


def served_chain(sock: Any) -> list[bytes]:
    """The chain the server *sent* (DER, as sent), for violation reports only; never for decisions.

    Python 3.13+ has the public ``get_unverified_chain()``; 3.10-3.12 have it on the private
    ``_sslobj``. Anything else gives an empty list.
    """
    obj = _tls_object(sock)
    if not isinstance(obj, (ssl.SSLSocket, ssl.SSLObject)):
        return []
    if sys.version_info >= (3, 13):
        chain = obj.get_unverified_chain()
        return [bytes(c) for c in chain] if chain else []
    import _ssl

    raw = getattr(obj, "_sslobj", None)
    if raw is None or not hasattr(raw, "get_unverified_chain"):
        return []
    chain = raw.get_unverified_chain()
    return [c.public_bytes(_ssl.ENCODING_DER) for c in chain] if chain else []


def tls_info(sock: Any) -> TLSInfo:
    """Read the verified server name and chain of an established TLS connection.

    ``verified`` is True only when the context required a certificate *and* checked the host name:
    anything less and the chain cannot be trusted for pinning. Unknown socket types (for example
    pyOpenSSL's, if someone injected it) give an empty chain, which the policy refuses.
    """
    obj = _tls_object(sock)
    context = getattr(obj, "context", None)
    verified = (
        isinstance(context, ssl.SSLContext)
        and context.verify_mode == ssl.CERT_REQUIRED
        and context.check_hostname
    )
    if not isinstance(obj, (ssl.SSLSocket, ssl.SSLObject)):
        return TLSInfo(None, [], False)
    return TLSInfo(obj.server_hostname, _verified_chain(obj), verified)


_contexts: dict[str, ssl.SSLContext] = {}
_contexts_lock = threading.Lock()


def shared_context(bundle: str, cert_file: str | None = None, key_file: str | None = None,
                   key_password: str | None = None) -> ssl.SSLContext:
    """One verifying SSLContext per trust bundle, built once per process.

    urllib3's ``ca_certs=`` reloads the bundle for every new connection (tens of ms with certifi's;
    measured 25 vs 330 handshakes/s), so pinclient builds the context once and shares it.

    Python 3.13 (and urllib3 on it) sets ``VERIFY_X509_PARTIAL_CHAIN``, which ends the verified chain
    at the first certificate found in the bundle, an intermediate included. A root pin would then
    never see its root, so pinclient clears the flag: chains always run to a self-signed trust
    anchor, on every Python version alike.

    Raises:
        OSError / ssl.SSLError: the bundle cannot be read.
    """
    key = "\0".join((bundle, cert_file or "", key_file or "", key_password or ""))
    with _contexts_lock:
        ctx = _contexts.get(key)
        if ctx is None:
            from urllib3.util.ssl_ import create_urllib3_context

            ctx = create_urllib3_context(cert_reqs=ssl.CERT_REQUIRED)
            ctx.check_hostname = True
            partial = getattr(ssl, "VERIFY_X509_PARTIAL_CHAIN", 0)
            ctx.verify_flags &= ~partial
            ctx.load_verify_locations(cafile=bundle)
            if cert_file:
                ctx.load_cert_chain(cert_file, key_file, key_password)
            _contexts[key] = ctx
        return ctx


#: How OpenSSL says that the trust bundle holds no anchor for the chain it was sent
#: (X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY, _UNABLE_TO_GET_ISSUER_CERT, _DEPTH_ZERO_SELF_SIGNED_CERT
#: and _SELF_SIGNED_CERT_IN_CHAIN; OpenSSL 1.1 wrote "self signed").
_NO_ANCHOR = ("unable to get local issuer certificate", "unable to get issuer certificate",
              "self-signed certificate", "self signed certificate")


def missing_anchor_hint(error: str) -> str:
    """``""``, or a sentence to append to a TLS validation error whose cause is a trust bundle
    without the chain's root: OpenSSL's words name nothing the user can change, the pins file does."""
    if not any(words in error for words in _NO_ANCHOR):
        return ""
    return (" The trust bundle holds no root for this chain: set ca_bundle in [defaults] of the pins "
            "file (or pass --ca-bundle) to the PEM bundle that holds it (`pinclient pin` writes the "
            "one it validated against).")
