"""The one module that touches CPython's verified-chain API and urllib3's connection internals.

Version gating lives here and nowhere else (the way truststore's ``_api.py`` does it):

* Python 3.13+: ``SSLSocket.get_verified_chain()`` / ``SSLObject.get_verified_chain()`` are public
  and return DER ``bytes``.
* Python 3.10-3.12: the method exists only on the private ``_ssl._SSLSocket`` at ``._sslobj`` and
  returns ``_ssl.Certificate`` objects; ``public_bytes(_ssl.ENCODING_DER)`` gives DER.
* Through an HTTPS proxy urllib3 hands us an ``SSLTransport`` (TLS in TLS); the origin's TLS object
  is its ``.sslobj``.
* anyio's TLS stream (under httpcore, for ``pinclient.httpx``): :func:`received_records` reads the
  records its socket read already brought in (``_ssl_object``, ``_read_bio``).

Both APIs return an empty list or None for a resumed session, and with verification off they return
what OpenSSL *attempted*; callers treat an empty chain as a refusal and check that verification was
on (cpython PR 109113 and 17938).
"""

from __future__ import annotations

import os
import platform
import ssl
import sys
import threading
import warnings
from collections.abc import Callable
from typing import Any

from urllib3.util.ssl_ import resolve_ssl_version

from ._systemtrust import SYSTEM_TRUST, load_system_trust
from .errors import UsageError

__all__ = ["ContextFrozen", "OptionError", "PinnedContext", "TLSInfo", "missing_anchor_hint",
           "received_records", "served_chain", "shared_context", "tls_info", "tls_versions"]


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


class ContextFrozen(UsageError):
    """Something tried to change pinclient's shared verifying SSLContext after it was built."""


def _frozen_property(name: str) -> property:
    base = getattr(ssl.SSLContext, name)

    def fget(self: PinnedContext) -> Any:
        return base.__get__(self, type(self))

    def fset(self: PinnedContext, value: Any) -> None:
        # urllib3 re-applies the pool's verify_mode on every connect; the same value is a no-op.
        if self._frozen and fget(self) != value:
            raise ContextFrozen(f"pinclient's shared verifying SSLContext cannot be changed ({name}="
                                f"{value!r}): it serves every pinned connection in the process.")
        base.__set__(self, value)

    return property(fget, fset, doc=f"As :attr:`ssl.SSLContext.{name}`; read-only once frozen.")


def _frozen_method(name: str) -> Any:
    base = getattr(ssl.SSLContext, name)

    def method(self: PinnedContext, *args: Any, **kwargs: Any) -> Any:
        if self._frozen:
            raise ContextFrozen(f"pinclient's shared verifying SSLContext cannot be changed ({name}()): "
                                "it serves every pinned connection in the process; pass trust and "
                                "client-certificate options to the manager's constructor.")
        return base(self, *args, **kwargs)

    method.__name__ = name
    return method


class PinnedContext(ssl.SSLContext):
    """The verifying context pinclient shares between connections, read-only once built.

    urllib3 applies a pool's TLS attributes to the context it is handed, on every connect
    (``verify_mode``, ``check_hostname=False`` for ``assert_hostname``, ``load_verify_locations``
    for ``ca_certs``, ``load_cert_chain`` for ``cert_file``, ``set_alpn_protocols``). On a shared
    context that would change trust for every manager in the process (issue 17), so once
    :func:`shared_context` has built it, every setter and loader raises :class:`ContextFrozen`,
    except a setter given the value already set. ``set_alpn_protocols`` is the one silent case: the
    context always offers exactly ``http/1.1``, because pinclient's connections speak HTTP/1.1
    whatever ``urllib3.http2.inject_into_urllib3()`` asked for.
    """

    _frozen = False

    def freeze(self) -> None:
        self._frozen = True

    @property
    def frozen(self) -> bool:
        return self._frozen

    def set_alpn_protocols(self, alpn_protocols: Any) -> None:
        if not self._frozen:
            super().set_alpn_protocols(alpn_protocols)

    verify_mode = _frozen_property("verify_mode")
    check_hostname = _frozen_property("check_hostname")
    verify_flags = _frozen_property("verify_flags")
    options = _frozen_property("options")
    minimum_version = _frozen_property("minimum_version")
    maximum_version = _frozen_property("maximum_version")
    hostname_checks_common_name = _frozen_property("hostname_checks_common_name")
    post_handshake_auth = _frozen_property("post_handshake_auth")
    keylog_filename = _frozen_property("keylog_filename")
    sni_callback = _frozen_property("sni_callback")
    load_verify_locations = _frozen_method("load_verify_locations")
    load_cert_chain = _frozen_method("load_cert_chain")
    load_default_certs = _frozen_method("load_default_certs")
    set_default_verify_paths = _frozen_method("set_default_verify_paths")
    set_ciphers = _frozen_method("set_ciphers")
    set_ecdh_curve = _frozen_method("set_ecdh_curve")
    set_servername_callback = _frozen_method("set_servername_callback")
    if hasattr(ssl.SSLContext, "set_psk_client_callback"):  # Python 3.13+: a handshake without certificates
        set_psk_client_callback = _frozen_method("set_psk_client_callback")


def _no_password() -> str:
    # OpenSSL calls this only for an encrypted key. Without it, OpenSSL would prompt
    # "Enter PEM pass phrase:" on the terminal and block (urllib3 guards the same case in ssl_wrap_socket).
    raise UsageError("the client private key is encrypted: pass key_password= with it.")


def _load_client_cert(ctx: PinnedContext, cert_file: str, key_file: str | None,
                      key_password: str | None) -> None:
    try:
        ctx.load_cert_chain(cert_file, key_file, key_password if key_password is not None else _no_password)
    except (OSError, ssl.SSLError) as e:
        what = "the key_password does not open it" if key_password is not None else e
        raise UsageError(f"cannot load the client certificate {cert_file!r} / key "
                         f"{key_file or cert_file!r}: {what}") from e


class OptionError(UsageError, ValueError):
    """A keyword argument has a value pinclient cannot use (also a :class:`ValueError`, which is what
    urllib3 raises for the same mistakes, so existing handlers still catch it)."""


_PROTOCOL_TO_TLS = {getattr(ssl, f"PROTOCOL_TLSv1{minor}", None): getattr(ssl.TLSVersion, f"TLSv1{minor}")
                    for minor in ("", "_1", "_2")}


def tls_versions(version: Any, lo: Any, hi: Any) -> tuple[ssl.TLSVersion | None, ssl.TLSVersion | None]:
    """The (minimum, maximum) that urllib3's ``ssl_version``, ``ssl_minimum_version`` and
    ``ssl_maximum_version`` ask for, read the way ``create_urllib3_context`` reads them (None: the
    default, TLS 1.2 up to the highest OpenSSL supports).

    Raises:
        OptionError: an unknown version, both ``ssl_version`` and a minimum/maximum, a minimum above
            the maximum, or anything that allows a TLS version below 1.2.
    """
    try:
        protocol = None if version is None else resolve_ssl_version(version)
        lo = None if lo is None else ssl.TLSVersion(lo)
        hi = None if hi is None else ssl.TLSVersion(hi)
    except (AttributeError, ValueError) as e:
        raise OptionError(f"not a TLS version: {e}") from None
    if protocol not in (None, ssl.PROTOCOL_TLS, ssl.PROTOCOL_TLS_CLIENT):
        if lo is not None or hi is not None:
            raise OptionError("Can't specify both 'ssl_version' and either 'ssl_minimum_version' or "
                              "'ssl_maximum_version'")
        warnings.warn("'ssl_version' option is deprecated and will be removed in urllib3 v3.0. "
                      "Instead use 'ssl_minimum_version'", FutureWarning, stacklevel=3)
        lo = hi = _PROTOCOL_TO_TLS.get(protocol, ssl.TLSVersion.MINIMUM_SUPPORTED)
    hi = None if hi == ssl.TLSVersion.MAXIMUM_SUPPORTED else hi
    lo = ssl.TLSVersion.TLSv1_3 if lo == ssl.TLSVersion.MAXIMUM_SUPPORTED else lo
    for name, value in (("ssl_minimum_version", lo), ("ssl_maximum_version", hi)):
        # MINIMUM_SUPPORTED is -2: below TLS 1.2 too.
        if value is not None and value < ssl.TLSVersion.TLSv1_2:
            raise OptionError(f"refusing {name}={value!r}"
                              f"{f' (from ssl_version={version!r})' if version is not None else ''}: "
                              "pinclient does not offer TLS below 1.2.")
    if lo is not None and hi is not None and lo > hi:
        raise OptionError(f"ssl_minimum_version={lo!r} is above ssl_maximum_version={hi!r}")
    return lo, hi


_contexts: dict[tuple[Any, ...], PinnedContext] = {}
_contexts_lock = threading.Lock()


def shared_context(bundle: str, cert_file: str | None = None, key_file: str | None = None,
                   key_password: str | None = None, *, minimum_version: ssl.TLSVersion | None = None,
                   maximum_version: ssl.TLSVersion | None = None) -> PinnedContext:
    """One verifying, frozen :class:`PinnedContext` per (trust bundle, client certificate, TLS
    versions), built once per process.

    urllib3's ``ca_certs=`` reloads the bundle for every new connection (tens of ms with certifi's;
    measured 25 vs 330 handshakes/s), so pinclient builds the context once and shares it.
    ``minimum_version`` defaults to TLS 1.2 (urllib3's floor); ``maximum_version`` to the highest
    OpenSSL supports.

    Python 3.13 (and urllib3 on it) sets ``VERIFY_X509_PARTIAL_CHAIN``, which ends the verified chain
    at the first certificate found in the bundle, an intermediate included. A root pin would then
    never see its root, so pinclient clears the flag: chains always run to a self-signed trust
    anchor, on every Python version alike.

    Raises:
        OSError / ssl.SSLError: the bundle cannot be read.
        UsageError: the client certificate or key cannot be loaded (an encrypted key without
            ``key_password``, a wrong password; OpenSSL never prompts for one), or a key without
            ``cert_file``.
    """
    if not cert_file and (key_file or key_password is not None):
        # urllib3 would ignore them; a client identity asked for must not silently go missing.
        raise UsageError("key_file= and key_password= need cert_file= (the client certificate).")
    # "system" follows SSL_CERT_FILE / SSL_CERT_DIR, as OpenSSL does: they are part of the key.
    trust = (bundle, ssl.get_default_verify_paths()) if bundle == SYSTEM_TRUST else bundle
    # SSLKEYLOGFILE is read when a context is built, as urllib3 reads it for each of its own: a
    # value set later (a debugging session, urllib3's test_sslkeylogfile) gets a context that logs.
    keylog = os.path.expandvars(os.environ.get("SSLKEYLOGFILE") or "") or None
    key = (trust, cert_file, key_file, key_password, minimum_version, maximum_version, keylog)
    with _contexts_lock:
        ctx = _contexts.get(key)
        if ctx is None:
            ctx = _build_context(bundle, minimum_version, maximum_version, keylog)
            if cert_file:
                _load_client_cert(ctx, cert_file, key_file, key_password)
            ctx.freeze()
            _contexts[key] = ctx
        return ctx


def _build_context(bundle: str, minimum_version: ssl.TLSVersion | None,
                   maximum_version: ssl.TLSVersion | None, keylog: str | None = None) -> PinnedContext:
    # What urllib3's create_urllib3_context(cert_reqs=CERT_REQUIRED) sets, built as a PinnedContext.
    ctx = PinnedContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = minimum_version or ssl.TLSVersion.TLSv1_2
    if maximum_version is not None:
        ctx.maximum_version = maximum_version
    ctx.options |= ssl.OP_NO_SSLv2 | ssl.OP_NO_SSLv3 | ssl.OP_NO_COMPRESSION | ssl.OP_NO_TICKET
    # The chain the pin check saw must stay the connection's chain: OpenSSL's client otherwise
    # follows a TLS 1.2 server's HelloRequest into a second handshake, whose chain nobody checks
    # against the pins. Refused, the server gets a no_renegotiation warning and goes on, or ends.
    ctx.options |= getattr(ssl, "OP_NO_RENEGOTIATION", 0)
    ctx.verify_flags &= ~getattr(ssl, "VERIFY_X509_PARTIAL_CHAIN", 0)
    if sys.version_info >= (3, 13):
        ctx.verify_flags |= ssl.VERIFY_X509_STRICT
    ctx.post_handshake_auth = True
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.check_hostname = True
    ctx.hostname_checks_common_name = False
    keylog = keylog or os.path.expandvars(os.environ.get("SSLKEYLOGFILE") or "")
    if keylog:
        ctx.keylog_filename = keylog
    ctx.set_alpn_protocols(["http/1.1"])
    if bundle == SYSTEM_TRUST:
        load_system_trust(ctx, platform.system())
    else:
        ctx.load_verify_locations(cafile=bundle)
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


def received_records(stream: Any) -> Callable[[bytes, int], bytes] | None:
    """For anyio's TLS stream under httpcore: ``more(data, max_bytes)``, ``data`` followed by the
    records already received and not yet decrypted, up to ``max_bytes``; else None. anyio returns
    one 16 KiB record per read although a socket read brings several: each then costs httpcore,
    h11 and anyio's timeouts a pass (CPU per GiB -35 %, issue 18). Never waits; stops at a partial
    record or any TLS error, which the next read meets and raises as before."""
    tls = getattr(stream, "_stream", None)
    tls_object, incoming = getattr(tls, "_ssl_object", None), getattr(tls, "_read_bio", None)
    if not isinstance(tls_object, ssl.SSLObject) or not isinstance(incoming, ssl.MemoryBIO):
        return None

    def more(data: bytes, max_bytes: int) -> bytes:
        parts, size = [data], len(data)
        while data and incoming.pending and size < max_bytes:
            try:
                data = tls_object.read(max_bytes - size)
            except ssl.SSLError:  # SSLWantReadError: a partial record; the rest: raised next read
                break
            parts.append(data)
            size += len(data)
        return data if len(parts) == 1 else b"".join(parts)

    return more
