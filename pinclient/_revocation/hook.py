"""Revocation checks in the pinned transport: the glue between a pin :class:`~pinclient.policy.Verdict`
and :class:`~pinclient._revocation.checker.RevocationChecker`.

:class:`RevocationHook` is one of :class:`~pinclient.transport.PinGuard`'s ``after_check`` hooks, so
it runs right after a connection's pins were accepted and before its request is written: a revoked
certificate (or, in hard-fail, an unknown status) refuses the connection with not one request byte
sent. The mode comes from the verdict's pinset, else from ``[defaults]``.

OCSP and CRL requests go through a plain urllib3 pool owned by the hook, never through the pinning
pool: responders are other hosts, normally plain ``http://``, and what they send is signed and
verified by :mod:`pinclient._revocation.verify` before it is believed.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import TYPE_CHECKING

import urllib3

from ..config import CRLUse, PinConfig, RevocationMode, revocation_settings
from ..policy import Verdict

if TYPE_CHECKING:
    from .checker import RevocationChecker

__all__ = ["DEFAULT_TIMEOUT", "RevocationHook"]

log = logging.getLogger("pinclient")

#: Seconds allowed for one OCSP or CRL fetch (connect, each read, and the whole answer). Responders
#: answer in milliseconds; a responder that does not answer within this is treated as down, which
#: hard-fail refuses and soft-fail warns about, instead of holding the update up for the
#: connection's own, much longer timeout.
DEFAULT_TIMEOUT = 5.0


class RevocationHook:
    """Checks the verified chain of each accepted connection for revocation, per the config.

    One instance per :class:`~pinclient.transport.PinningPoolManager`. Checkers are made on first
    use, one per (mode, crl) pair, and share one disk cache (``[defaults] cache_dir``, else the user
    cache folder) and one HTTP pool. Thread-safe. Soft-fail warnings are logged at WARNING on the
    ``pinclient`` logger.

    ``http`` is the pool for OCSP and CRL requests (for example a ``urllib3.ProxyManager`` where only
    a proxy reaches the outside); by default the hook makes a direct one on first use. It must not
    be a pinning pool. :meth:`close` clears it either way.
    """

    def __init__(self, config: PinConfig, *, timeout: float = DEFAULT_TIMEOUT,
                 http: urllib3.PoolManager | None = None) -> None:
        self.config = config
        self.timeout = timeout
        self._cache_dir = Path(config.defaults.cache_dir) if config.defaults.cache_dir else None
        self._lock = threading.Lock()
        self._checkers: dict[tuple[RevocationMode, CRLUse], RevocationChecker] = {}
        self._http = http

    def __call__(self, verdict: Verdict, port: int) -> None:
        """Check ``verdict.chain`` (an accepted connection to ``verdict.host``).

        Raises:
            CertificateRevoked: a certificate of the chain is revoked (every mode but off).
            RevocationCheckFailed: hard-fail, and a status could not be established, or the leaf
                names no OCSP responder and no CRL distribution point.
        """
        mode, crl = revocation_settings(self.config, verdict.pinset)
        if mode == "off" or not verdict.chain:
            return
        checker = self._checker(mode, crl)
        for warning in checker.check([c.cert for c in verdict.chain], host=verdict.host):
            log.warning("revocation: %s", warning)

    def route_through(self, http: urllib3.PoolManager) -> None:
        """Send OCSP and CRL requests through ``http`` from now on (a ``urllib3.ProxyManager`` when
        the update itself goes through a proxy: on such networks only the proxy reaches out).
        Call it before the first check: checkers made earlier keep their pool."""
        with self._lock:
            self._http = http

    def close(self) -> None:
        """Close the responders' connections. The hook stays usable (pools reopen on demand)."""
        with self._lock:
            if self._http is not None:
                self._http.clear()

    def _checker(self, mode: RevocationMode, crl: CRLUse) -> RevocationChecker:
        with self._lock:
            checker = self._checkers.get((mode, crl))
            if checker is None:
                if self._http is None:
                    # Not the pinning pool: responders are other hosts (see the module docstring).
                    self._http = urllib3.PoolManager(num_pools=8, maxsize=2)
                # Imported on first use: with revocation off (the default) a fetch never pays
                # for the OCSP/CRL machinery.
                from .checker import RevocationChecker  # deferred: see the comment above
                from .verify import RevocationPolicy  # deferred: see the comment above

                policy = RevocationPolicy(mode=mode, crl=crl, timeout=self.timeout)
                checker = RevocationChecker(policy, cache_dir=self._cache_dir, http=self._http)
                self._checkers[(mode, crl)] = checker
            return checker
