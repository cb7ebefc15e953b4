"""pytest plugin for compat/run.py: runs urllib3's own ``test/with_dummyserver`` with pinclient's
transport swapped in.

``-p pinclient_compat_urllib3`` always keeps the run on loopback: ``socket.getaddrinfo`` resolves
no name but ``localhost`` (an address literal needs no resolver), and ``socket.socket.connect``/
``connect_ex`` refuse any address outside 127.0.0.0/8 and ::1 with ``ENETUNREACH``, a backstop: the
tests that aim at urllib3's unroutable ``TARPIT_HOST`` or need ``requires_network()`` are skipped
before they run. It skips what this machine cannot run, with the reason (:func:`_cannot_run`), in
both runs alike. urllib3's socket-level servers are threads kept on the test class and joined by
every later test's teardown; one left waiting by a test pinclient refused before it connected is
forgotten after its own teardown (:func:`pytest_runtest_teardown`), so it fails that test only.
urllib3's dummy proxy is fronted by ``compat/urllib3_proxy_front.py``, which answers ``CONNECT``
(the PyPI hypercorn cannot), in both runs alike.

With ``$PINCLIENT_COMPAT_PINS`` set it swaps urllib3's classes, where urllib3 and the tests look them
up (``urllib3``, ``urllib3.poolmanager``, ``urllib3.connectionpool``, before any test module is
imported), for pinclient's:

* ``PoolManager`` -> :class:`pinclient.transport.PinningPoolManager`, ``ProxyManager`` /
  ``proxy_from_url`` -> :class:`~pinclient.transport.PinningProxyManager`, and urllib3's module-level
  ``request()`` pool;
* ``HTTPSConnectionPool`` (and so ``connection_from_url``) -> ``PinnedHTTPSConnectionPool``, the pool
  class ``PinningPoolManager`` makes (not in ``pinclient.transport.__all__``): its TLS keywords go
  to a ``PinningPoolManager``, which checks them and builds (or shares) the frozen context, and the
  pool takes that manager's context and ``PinGuard``;
* ``HTTPConnectionPool`` -> a pool that refuses plain ``http://``, as pinclient does.

Design choice: urllib3's tests bring their own CAs (``ca_certs=DEFAULT_CA``, a trustme CA per
fixture), so the plugin pins *the CA each test hands over*: the ``ca_certs`` file becomes the
``ca_bundle`` of a pins config whose one pinset pins the SPKI of every certificate in it for
``localhost``, ``127.0.0.1`` and ``::1`` (``unpinned = "refuse"``). A pool built without
``ca_certs`` gets the runner's own config (``$PINCLIENT_COMPAT_PINS``), whose CA signed none of
urllib3's servers, where urllib3 would use the system store, which signed none either. Every
connection still runs pinclient's real pin check; the count goes to ``$PINCLIENT_COMPAT_CHECKS``.
Options pinclient refuses by design (``cert_reqs=CERT_NONE``, ``assert_fingerprint``,
``ssl_context=``, ``server_hostname=``, plain http, ...) raise its ``UsageError``/``PinViolation``;
those tests are listed in ``compat/refusals.toml``. No file of urllib3's is edited.
"""

from __future__ import annotations

import base64
import errno
import hashlib
import inspect
import ipaddress
import os
import shutil
import socket
import tempfile
import threading
from typing import Any

import pytest

# --- loopback only, in both runs -------------------------------------------------------------

_real_getaddrinfo = socket.getaddrinfo
_real_connect = socket.socket.connect
_real_connect_ex = socket.socket.connect_ex


def _is_loopback(name: Any) -> bool:
    if name is None:
        return True  # a passive bind
    if isinstance(name, bytes):
        name = name.decode()
    if not isinstance(name, str):
        return False
    if name.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(name.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


def _is_address(name: Any) -> bool:
    try:
        ipaddress.ip_address((name.decode() if isinstance(name, bytes) else name).split("%", 1)[0])
    except (ValueError, AttributeError):
        return False
    return True


def _loopback_only(host: Any, *args: Any, **kwargs: Any) -> Any:
    # An address needs no resolver; connecting to one outside loopback is refused below, with
    # ENETUNREACH, which urllib3's requires_network() reads as "no route" and skips on.
    if not _is_loopback(host) and not _is_address(host):
        raise socket.gaierror(socket.EAI_NONAME, f"compat runs resolve only loopback names, not {host!r}")
    return _real_getaddrinfo(host, *args, **kwargs)


def _check_address(sock: socket.socket, address: Any) -> None:
    if sock.family in (socket.AF_INET, socket.AF_INET6) and not _is_loopback(address[0]):
        raise OSError(errno.ENETUNREACH, f"compat runs connect only to loopback, not {address[0]!r}")


def _connect(self: socket.socket, address: Any) -> None:
    _check_address(self, address)
    _real_connect(self, address)


def _connect_ex(self: socket.socket, address: Any) -> int:
    _check_address(self, address)
    return _real_connect_ex(self, address)


# Installed on import (``-p`` loads the plugin before urllib3's conftest imports test/__init__.py,
# which resolves "localhost." once).
socket.getaddrinfo = _loopback_only
socket.socket.connect = _connect  # type: ignore[method-assign]
socket.socket.connect_ex = _connect_ex  # type: ignore[method-assign]


def _front_the_dummy_proxy() -> None:
    # Before urllib3's conftest and dummyserver.testcase import the function (see urllib3_proxy_front).
    import dummyserver.asgi_proxy
    import dummyserver.hypercornserver
    from urllib3_proxy_front import fronted

    module = dummyserver.hypercornserver
    module.run_hypercorn_in_thread = fronted(  # type: ignore[assignment]
        module.run_hypercorn_in_thread, dummyserver.asgi_proxy.ProxyApp)


_front_the_dummy_proxy()


# --- what this machine cannot run ------------------------------------------------------------

#: Words in a test's source that mean it cannot run here, and why.
CANNOT_RUN = {
    "TARPIT_HOST": "connects to urllib3's unroutable TARPIT_HOST (240.0.0.0) to provoke a connect "
    "timeout; compat runs never leave loopback",
    '"/certificate"': "the dummy server's /certificate reads the `tls` ASGI scope extension that only "
    "urllib3's own fork of hypercorn provides, not the PyPI release installed here",
    '"/alpn_protocol"': "the dummy server's /alpn_protocol reads the `tls` ASGI scope extension that "
    "only urllib3's own fork of hypercorn provides, not the PyPI release installed here",
}


def _cannot_run(item: pytest.Item) -> str | None:
    function = getattr(item, "function", None)
    try:
        source = inspect.getsource(function) if function is not None else ""
    except (OSError, TypeError):
        source = ""
    for words, reason in CANNOT_RUN.items():
        if words in source:
            return reason
    code = getattr(function, "__code__", None)
    if code is not None and "requires_network" in getattr(code, "co_qualname", ""):
        return "needs a route off this machine (urllib3's requires_network()); compat runs stay on loopback"
    params = getattr(getattr(item, "callspec", None), "params", {})
    if params.get("invalid_source_address") == ("192.0.2.255", 0):
        return ("this machine lets a socket bind the non-local source address 192.0.2.255, so the "
                "NewConnectionError the test expects never comes (in the baseline too)")
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        reason = _cannot_run(item)
        if reason is not None:
            item.add_marker(pytest.mark.skip(reason=f"cannot run here: {reason}"))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_teardown(item: pytest.Item) -> Any:
    yield
    # urllib3's socket-level servers are threads kept on the test *class* (cls.server_thread), each
    # good for one connection; every later test of the class joins it again in teardown_method. A
    # test refused before it connected leaves its thread waiting in accept() (a daemon thread), and
    # would fail the teardown of every test after it; once its own teardown has reported that, the
    # class forgets the thread.
    cls = type(getattr(item, "instance", None))
    thread = cls.__dict__.get("server_thread")
    if thread is not None and thread.is_alive():
        delattr(cls, "server_thread")


# --- pinclient swapped in --------------------------------------------------------------------

_GUARDS: list[Any] = []  # every PinGuard made, for the pin-check count
_lock = threading.Lock()
_configs: dict[str, Any] = {}
_folder: list[str] = []  # the one folder of pins files, made on first use, removed at unconfigure


def _config_for(ca_certs: str | None) -> Any:
    """The pins config for a trust bundle a test hands over: pins every certificate in it."""
    from cryptography import x509

    from pinclient import load_pins
    from pinclient.policy import spki_sha256

    if ca_certs is None:
        path = os.environ["PINCLIENT_COMPAT_PINS"]
    else:
        with open(ca_certs, "rb") as file:
            data = file.read()
        digest = hashlib.sha256(data).hexdigest()[:16]
        with _lock:
            if not _folder:
                _folder.append(tempfile.mkdtemp(prefix="pinclient-compat-pins-"))
        path = os.path.join(_folder[0], f"pins-{digest}.toml")
        if not os.path.exists(path):
            pins = ", ".join(f'{{ spki_sha256 = "{base64.b64encode(spki_sha256(cert)).decode()}" }}'
                             for cert in x509.load_pem_x509_certificates(data))
            with open(path, "w") as out:
                out.write(f'version = 1\n[defaults]\nunpinned = "refuse"\nca_bundle = "{ca_certs}"\n\n'
                          f'[[pinset]]\nname = "compat"\nhosts = ["127.0.0.1", "localhost", "::1"]\n'
                          f"issuers = [{pins}]\n")
    with _lock:
        if path not in _configs:
            _configs[path] = load_pins(path)
        return _configs[path]


def _track(manager: Any) -> Any:
    with _lock:
        if all(guard is not manager.guard for guard in _GUARDS):
            _GUARDS.append(manager.guard)
    return manager


def _classes() -> dict[str, Any]:
    from urllib3.connectionpool import HTTPConnectionPool
    from urllib3.util import parse_url

    from pinclient.errors import PinViolation
    from pinclient.transport import (
        PinnedHTTPSConnection,
        PinnedHTTPSConnectionPool,
        PinningPoolManager,
        PinningProxyManager,
    )

    class PoolManager(PinningPoolManager):
        """``urllib3.PoolManager(num_pools, headers, **connection_pool_kw)`` over pinclient."""

        def __init__(self, num_pools: int = 10, headers: dict[str, str] | None = None,
                     **connection_pool_kw: Any) -> None:
            super().__init__(_config_for(connection_pool_kw.get("ca_certs")), num_pools, headers,
                             **connection_pool_kw)
            _track(self)

    class ProxyManager(PinningProxyManager):
        """``urllib3.ProxyManager(proxy_url, num_pools, headers, proxy_headers, ...)`` over pinclient."""

        def __init__(self, proxy_url: str, num_pools: int = 10, headers: dict[str, str] | None = None,
                     proxy_headers: dict[str, str] | None = None, **connection_pool_kw: Any) -> None:
            super().__init__(_config_for(connection_pool_kw.get("ca_certs")), proxy_url,
                             num_pools=num_pools, headers=headers, proxy_headers=proxy_headers,
                             **connection_pool_kw)
            _track(self)

    def proxy_from_url(url: str, **kw: Any) -> ProxyManager:
        return ProxyManager(proxy_url=url, **kw)

    # The keywords a PoolManager would hand its pools that decide TLS; the pool takes them to a
    # PinningPoolManager, which checks them and builds (or reuses) the shared context.
    tls_keys = ("ca_certs", "ca_cert_dir", "ca_cert_data", "cert_reqs", "cert_file", "key_file",
                "key_password", "ssl_version", "ssl_minimum_version", "ssl_maximum_version",
                "assert_hostname", "assert_fingerprint", "server_hostname", "ssl_context")

    class HTTPSConnectionPool(PinnedHTTPSConnectionPool):
        """``urllib3.HTTPSConnectionPool(host, port, ..., ca_certs=..., **conn_kw)`` over pinclient."""

        def __init__(self, host: str, port: int | None = None, *args: Any, **kw: Any) -> None:
            tls = {key: kw.pop(key) for key in tls_keys if key in kw}
            if kw.get("_proxy") is not None:
                raise TypeError("a proxied pool comes from ProxyManager, which pinclient replaces too")
            manager = _track(PinningPoolManager(_config_for(tls.get("ca_certs")), **tls))
            super().__init__(host, port, *args, pin_guard=manager.guard,
                             ssl_context=manager.connection_pool_kw["ssl_context"], **kw)
            # urllib3.http2.inject_into_urllib3() (and its extract) set ConnectionCls on the class
            # urllib3.connectionpool.HTTPSConnectionPool, which is this one here. PinningPoolManager's
            # pools are pinclient's own class and never see that; the same goes for these.
            self.ConnectionCls = PinnedHTTPSConnection

    class RefusedHTTPConnectionPool(HTTPConnectionPool):
        """Plain http://: pinclient has no such transport, and refuses the scheme."""

        def __init__(self, host: str, port: int | None = None, *args: Any, **kw: Any) -> None:
            raise PinViolation(f"Refusing plain http:// to {host}: pinclient speaks only HTTPS.",
                               host=host, port=port, reason="insecure-scheme")

    def connection_from_url(url: str, **kw: Any) -> HTTPConnectionPool:
        parsed = parse_url(url)
        if parsed.scheme == "https":
            return HTTPSConnectionPool(parsed.host or "", port=parsed.port or 443, **kw)
        return RefusedHTTPConnectionPool(parsed.host or "", port=parsed.port or 80, **kw)

    return {"PoolManager": PoolManager, "ProxyManager": ProxyManager, "proxy_from_url": proxy_from_url,
            "HTTPSConnectionPool": HTTPSConnectionPool, "HTTPConnectionPool": RefusedHTTPConnectionPool,
            "connection_from_url": connection_from_url}


def _swap() -> None:
    import urllib3
    import urllib3.connectionpool
    import urllib3.poolmanager

    classes = _classes()
    for module in (urllib3, urllib3.poolmanager, urllib3.connectionpool):
        for name, replacement in classes.items():
            if hasattr(module, name):
                setattr(module, name, replacement)
    # The pool behind the top-level urllib3.request().
    urllib3._DEFAULT_POOL = classes["PoolManager"]()  # type: ignore[attr-defined]


if os.environ.get("PINCLIENT_COMPAT_PINS"):
    _swap()


def pytest_unconfigure(config: pytest.Config) -> None:
    # Proof that the swap happened: how many connections pinclient's guards checked.
    for folder in _folder:
        shutil.rmtree(folder, ignore_errors=True)
    report = os.environ.get("PINCLIENT_COMPAT_CHECKS")
    if report and os.environ.get("PINCLIENT_COMPAT_PINS"):
        with open(report, "w") as out:
            out.write(str(sum(guard.checks for guard in _GUARDS)))
