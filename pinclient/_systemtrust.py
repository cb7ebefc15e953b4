"""``ca_bundle = "system"``: the operating system's CA store, through the truststore package (the
optional extra ``pinclient[truststore]``), only where OpenSSL still verifies the chain that the pins
are checked against. The one place that touches truststore (and its private OpenSSL back end).

truststore has no public call for this: its ``SSLContext`` is a wrapper, not an ``ssl.SSLContext``.
On Windows and macOS it lets OpenSSL finish the handshake *without* verifying (CERT_NONE) and then
asks the OS to verify; the chain CPython reports for such a connection is the one OpenSSL attempted,
not a verified one (CPython PR 109113), so pins checked against it could be met by a certificate
the server merely sent (OkHttp's CVE-2016-2402). There it is refused. On Linux and the other
OpenSSL platforms truststore's ``_configure_context`` points OpenSSL at the system's CA file or
folder (OpenSSL's default paths, ``SSL_CERT_FILE``/``SSL_CERT_DIR``, else the usual distribution
bundles) and leaves verification on, so pinclient loads that into its own verifying context.
"""

from __future__ import annotations

import ssl

from .errors import UsageError

__all__ = ["SYSTEM_TRUST", "load_system_trust", "system_trust_refusal"]

#: The ``ca_bundle`` value that means the operating system's trust store.
SYSTEM_TRUST = "system"


def system_trust_refusal(system: str) -> str | None:
    """Why ``ca_bundle = "system"`` cannot keep the pins' guarantee on ``system``
    (``platform.system()``), or None where it can. Pure."""
    if system in ("Windows", "Darwin"):
        return (f'ca_bundle = "system" is refused on {system}: there truststore verifies through the '
                "operating system after a handshake OpenSSL does not verify, so pinclient would get no "
                "verified chain to check the pins against. Use \"certifi\" or a PEM bundle file.")
    return None


def load_system_trust(ctx: ssl.SSLContext, system: str) -> None:
    """Load the system's CA certificates into ``ctx`` the way truststore does on ``system``,
    keeping OpenSSL's own verification. A missing truststore, or one without the OpenSSL back end
    this code knows, is a refusal, never a silent fallback to another trust store.

    Raises:
        UsageError: the platform verifies outside OpenSSL, truststore is not installed, or it has
            no usable OpenSSL back end.
    """
    refusal = system_trust_refusal(system)
    if refusal is not None:
        raise UsageError(refusal)
    try:
        from truststore import _openssl  # optional extra, imported only for ca_bundle = "system"
    except ImportError:
        raise UsageError('ca_bundle = "system" needs the truststore package: '
                         'pip install "pinclient[truststore]".') from None
    configure = getattr(_openssl, "_configure_context", None)
    if configure is None:
        raise UsageError('ca_bundle = "system": this truststore version has no OpenSSL back end '
                         'pinclient knows; use "certifi" or a PEM bundle file.')
    with configure(ctx):
        pass  # it loads the CA locations on entry; nothing to undo for a context of our own
    if ctx.verify_mode != ssl.CERT_REQUIRED or not ctx.check_hostname:
        raise UsageError('ca_bundle = "system": truststore turned verification off; refusing.')
