"""pinclient's pin checks for ``requests``: a transport adapter over the pinned urllib3 managers.

::

    import requests
    from pinclient import load_pins
    from pinclient.requests import PinningAdapter

    session = requests.Session()
    session.mount("https://", PinningAdapter(load_pins("pins.toml")))

Every connection the adapter opens, directly or through an HTTP(S) proxy, is checked by one
:class:`~pinclient.transport.PinGuard` right after the handshake, before a request byte is sent. A
refusal raises :class:`~pinclient.PinViolation` (not a ``requests`` exception) out of
``session.get()``.

requests' own TLS knobs would quietly weaken that, because urllib3 applies them to the shared
verifying ``SSLContext`` (``verify=False`` turns verification off, a ``verify`` bundle or
``cert`` is loaded into it for every later connection). The adapter therefore refuses them with
:class:`~pinclient.UsageError`: the trust bundle comes from pins.toml (``defaults.ca_bundle``) or
``PinningAdapter(config, ca_certs=…)``. The one exception is a ``verify`` path that requests took
from ``$REQUESTS_CA_BUNDLE``/``$CURL_CA_BUNDLE``: a machine-wide default, ignored rather than
refused (it is never loaded). Needs the ``pinclient[requests]`` extra.
"""

from __future__ import annotations

import logging
import os
from typing import Any

try:
    import requests
    from requests.adapters import HTTPAdapter
except ImportError as e:  # pragma: no cover - exercised only without the extra
    raise ImportError("pinclient.requests needs requests: pip install 'pinclient[requests]'") from e

from .config import PinConfig
from .errors import UsageError
from .transport import PinGuard, PinningPoolManager, PinningProxyManager

__all__ = ["PinningAdapter", "pinned_session"]

log = logging.getLogger("pinclient")


class PinningAdapter(HTTPAdapter):
    """A :class:`requests.adapters.HTTPAdapter` whose connections are pinned by ``config``.

    ``pool_kwargs`` go to :class:`~pinclient.PinningPoolManager` (``ca_certs=`` picks the trust
    bundle; options that weaken the pin raise :class:`~pinclient.UsageError`).

    Raises (from ``session.get()`` and friends):
        PinViolation: the pins refused a connection, or a plain ``http://`` URL reached the adapter.
        UsageError: ``verify=False``, a ``verify`` bundle other than the adapter's (one from
            ``$REQUESTS_CA_BUNDLE``/``$CURL_CA_BUNDLE`` is ignored), a client ``cert``, or a SOCKS proxy.
    """

    __attrs__ = [*HTTPAdapter.__attrs__, "pin_config", "_pin_pool_kwargs"]  # noqa: RUF012 (as in requests)
    poolmanager: PinningPoolManager

    def __init__(self, config: PinConfig, *, pool_connections: int = 10, pool_maxsize: int = 10,
                 max_retries: Any = 0, pool_block: bool = False, **pool_kwargs: Any) -> None:
        self.pin_config = config
        self._pin_pool_kwargs = pool_kwargs
        super().__init__(pool_connections=pool_connections, pool_maxsize=pool_maxsize,
                         max_retries=max_retries, pool_block=pool_block)

    # -- the managers

    def init_poolmanager(self, connections: int, maxsize: int, block: bool = False,
                         **pool_kwargs: Any) -> None:
        self._pool_connections = connections
        self._pool_maxsize = maxsize
        self._pool_block = block
        self.poolmanager = PinningPoolManager(self.pin_config, num_pools=connections, maxsize=maxsize,
                                              block=block, **{**self._pin_pool_kwargs, **pool_kwargs})

    @property
    def guard(self) -> PinGuard:
        """The one PinGuard behind every connection of this adapter (add ``after_check`` hooks here)."""
        return self.poolmanager.guard

    @property
    def trust_bundle(self) -> str:
        """The PEM bundle every connection verifies against."""
        return self.poolmanager.trust_bundle

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        """A pinned manager for ``proxy`` (HTTP or HTTPS, tunnelled with CONNECT), sharing the
        adapter's guard and verifying context.

        Raises:
            UsageError: a SOCKS proxy, or an option that would weaken the pin.
        """
        if proxy in self.proxy_manager:
            return self.proxy_manager[proxy]
        if proxy.lower().startswith("socks"):
            raise UsageError(f"PinningAdapter does not support SOCKS proxies ({proxy}); use an "
                             "HTTP(S) proxy, which pinclient tunnels with CONNECT and checks end to end.")
        manager = PinningProxyManager(
            self.pin_config, proxy, pin_guard=self.guard, proxy_headers=self.proxy_headers(proxy),
            num_pools=self._pool_connections, maxsize=self._pool_maxsize, block=self._pool_block,
            **{**self._pin_pool_kwargs, **proxy_kwargs})
        self.proxy_manager[proxy] = manager
        return manager

    # -- requests' TLS options: refused, never applied

    def build_connection_pool_key_attributes(self, request: requests.PreparedRequest, verify: Any,
                                             cert: Any = None) -> tuple[dict[str, Any], dict[str, Any]]:
        self._refuse_weakening(verify, cert)
        host_params, _ = super().build_connection_pool_key_attributes(request, True, None)
        # No per-request TLS pool keys: every pool uses the manager's shared verifying context.
        return host_params, {}

    def cert_verify(self, conn: Any, url: str, verify: Any, cert: Any) -> None:
        # requests' version writes verify/cert onto the pool, and urllib3 would then load them into
        # the shared SSLContext (even verify=True loads certifi over the pins.toml bundle).
        self._refuse_weakening(verify, cert)

    def _refuse_weakening(self, verify: Any, cert: Any) -> None:
        if cert is not None:
            raise UsageError("PinningAdapter refuses cert= (client certificates): urllib3 would load "
                             "it into the shared verifying context and present it to every host.")
        if verify is True:
            return
        if isinstance(verify, (str, os.PathLike)):
            path = os.fspath(verify)
            if _same_file(path, self.trust_bundle):
                return
            if path in _environment_bundles():
                # requests fills verify from these variables for every request (trust_env). They
                # set a machine-wide default, which pins.toml's bundle overrides; never loaded.
                log.debug("ignoring verify=%r from the environment; trust bundle: %s", path,
                          self.trust_bundle)
                return
            raise UsageError(
                f"PinningAdapter refuses verify={path!r}: the trust bundle comes from pins.toml "
                "(defaults.ca_bundle) or PinningAdapter(config, ca_certs=...), and urllib3 would add "
                "this one to the shared verifying context of every connection.")
        raise UsageError(f"PinningAdapter refuses verify={verify!r}: with verification off the chain "
                         "cannot be trusted, and pins would be checked against whatever the server sent.")


def _environment_bundles() -> set[str]:
    return {v for v in (os.environ.get("REQUESTS_CA_BUNDLE"), os.environ.get("CURL_CA_BUNDLE")) if v}


def _same_file(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def pinned_session(config: PinConfig, **adapter_kwargs: Any) -> requests.Session:
    """A :class:`requests.Session` with one :class:`PinningAdapter` mounted for ``https://`` *and*
    ``http://``, so that a redirect to plain HTTP is refused instead of fetched by requests'
    default adapter.

    Raises:
        UsageError: an unsafe adapter option.
    """
    session = requests.Session()
    adapter = PinningAdapter(config, **adapter_kwargs)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return session
