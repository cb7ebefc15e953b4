"""pytest plugin for compat/run.py: runs requests' own tests with pinclient's transport swapped in.

``-p pinclient_compat_requests`` always keeps the run on loopback: ``getaddrinfo`` answers only
loopback names, ``socket.connect``/``connect_ex`` refuse any address outside 127.0.0.0/8 and ::1
(the backstop), and the one test that needs the real DNS (:data:`CANNOT_RUN_HERE`) is skipped at
collection, before it runs. Both runs trust the runner's CA (``$PINCLIENT_COMPAT_BUNDLE``), which
signed the certificate of the TLS httpbin that ``compat/requests_https_variants.py`` starts:

* the baseline points requests' default trust bundle (``DEFAULT_CA_BUNDLE_PATH``, certifi's) at
  it, so ``verify=True`` means what it means on a machine whose store holds that CA;
* with ``$PINCLIENT_COMPAT_PINS`` set, ``requests.adapters.HTTPAdapter`` and
  ``requests.sessions.HTTPAdapter`` (where ``Session()`` and the tests look it up) become
  :class:`PinnedHTTPAdapter`: :class:`pinclient.requests.PinningAdapter` with ``HTTPAdapter``'s
  constructor, pinning that CA. ``Session()`` mounts it for ``https://`` and ``http://``, as
  ``pinned_session`` does, so plain http is refused instead of sent.

pytest-httpbin's ``httpbin_secure`` keeps its own CA, trusted by neither run unless a test passes
``verify=`` (requests' own premise). No file of requests' is edited; the swap happens before the
tests are imported.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from typing import Any

import pytest

from pinclient.requests import PinningAdapter

# Node ids (below the sdist's root) of tests that need a machine other than this one.
_VARIANTS = "tests/test_pinclient_https.py"
CANNOT_RUN_HERE = {
    f"{_VARIANTS}::TestRequests::test_errors[https://doesnotexist.google.com-ConnectionError]":
        "resolves doesnotexist.google.com in the real DNS; this run resolves loopback names only",
}

_LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1", None)
_real_getaddrinfo = socket.getaddrinfo
_real_connect = socket.socket.connect
_real_connect_ex = socket.socket.connect_ex


def _loopback_only(host: Any, *args: Any, **kwargs: Any) -> Any:
    name = host.decode() if isinstance(host, bytes) else host
    if name not in _LOOPBACK_NAMES:
        raise socket.gaierror(socket.EAI_NONAME, f"compat runs resolve only loopback names, not {name!r}")
    return _real_getaddrinfo(host, *args, **kwargs)


def _refuse_remote(address: Any) -> None:
    if not isinstance(address, tuple):
        return  # AF_UNIX: a path on this machine
    host = address[0].decode() if isinstance(address[0], bytes) else address[0]
    try:
        loopback = ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        loopback = host == "localhost"
    if not loopback:
        raise OSError(f"compat runs connect only to loopback, not {host!r}")


def _connect(self: socket.socket, address: Any) -> None:
    _refuse_remote(address)
    _real_connect(self, address)


def _connect_ex(self: socket.socket, address: Any) -> int:
    _refuse_remote(address)
    return _real_connect_ex(self, address)


class PinnedHTTPAdapter(PinningAdapter):
    """``HTTPAdapter(pool_connections, pool_maxsize, max_retries, pool_block)`` over pinclient.

    At module level so that sessions holding it pickle (test_session_pickling).
    """

    config: Any = None  # the PinConfig, loaded at configure
    guards: list[Any] = []  # noqa: RUF012 - every adapter's guard, for the pin-check count

    def __init__(self, pool_connections: int = 10, pool_maxsize: int = 10, max_retries: Any = 0,
                 pool_block: bool = False) -> None:
        super().__init__(self.config, pool_connections=pool_connections, pool_maxsize=pool_maxsize,
                         max_retries=max_retries, pool_block=pool_block)

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.guards.append(self.poolmanager.guard)


def pytest_configure(config: pytest.Config) -> None:
    socket.getaddrinfo = _loopback_only
    socket.socket.connect = _connect  # type: ignore[method-assign]
    socket.socket.connect_ex = _connect_ex  # type: ignore[method-assign]
    import requests.adapters
    import requests.sessions

    for var in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        # A machine-wide bundle would replace the trust each run is given (requests reads these
        # for every request; pinclient ignores them).
        os.environ.pop(var, None)

    if not os.environ.get("PINCLIENT_COMPAT_PINS"):
        # The baseline: requests' own adapter, its default bundle holding the runner's CA.
        requests.adapters.DEFAULT_CA_BUNDLE_PATH = os.environ["PINCLIENT_COMPAT_BUNDLE"]
        return
    from pinclient import load_pins

    PinnedHTTPAdapter.config = load_pins(os.environ["PINCLIENT_COMPAT_PINS"])
    requests.adapters.HTTPAdapter = PinnedHTTPAdapter  # type: ignore[misc]
    requests.sessions.HTTPAdapter = PinnedHTTPAdapter  # type: ignore[misc]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        reason = CANNOT_RUN_HERE.get(item.nodeid)
        if reason:
            item.add_marker(pytest.mark.skip(reason=reason))


def pytest_unconfigure(config: pytest.Config) -> None:
    # Proof that the swap happened: how many connections pinclient's guards checked.
    report = os.environ.get("PINCLIENT_COMPAT_CHECKS")
    if report and PinnedHTTPAdapter.config is not None:
        unique = {id(g): g for g in PinnedHTTPAdapter.guards}.values()
        with open(report, "w") as out:
            out.write(str(sum(g.checks for g in unique)))
