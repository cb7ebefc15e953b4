"""pytest plugin for compat/run.py: runs python-tuf's own tests with pinclient's transport swapped in.

``-p pinclient_compat_tuf`` always keeps the run on loopback (``getaddrinfo`` answers only
localhost and 127.0.0.1, as pinclient's own suite does). With ``$PINCLIENT_COMPAT_PINS`` set it also
replaces ``tuf.ngclient.Urllib3Fetcher`` (where tuf's ``Updater`` and the tests look it up) by
:class:`PinnedUrllib3Fetcher`, :class:`pinclient.tuf.PinnedFetcher` with ``Urllib3Fetcher``'s
constructor. No file of tuf's is edited; the swap happens before the tests are imported.
"""

from __future__ import annotations

import os
import socket
from typing import Any

import pytest

_real_getaddrinfo = socket.getaddrinfo


def _loopback_only(host: Any, *args: Any, **kwargs: Any) -> Any:
    name = host.decode() if isinstance(host, bytes) else host
    if name not in ("localhost", "127.0.0.1", None):
        raise socket.gaierror(socket.EAI_NONAME, f"compat runs resolve only loopback names, not {name!r}")
    return _real_getaddrinfo(host, *args, **kwargs)


def _pinned_fetcher_class() -> type:
    import tuf
    from tuf.ngclient.fetcher import FetcherInterface

    from pinclient import load_pins
    from pinclient._version import USER_AGENT
    from pinclient.tuf import PinnedFetcher

    config = load_pins(os.environ["PINCLIENT_COMPAT_PINS"])

    class PinnedUrllib3Fetcher(PinnedFetcher):
        """``Urllib3Fetcher(socket_timeout, chunk_size, app_user_agent)`` over pinclient."""

        made: list[PinnedFetcher] = []  # noqa: RUF012 - every instance, for the pin-check count

        def __init__(self, socket_timeout: int = 30, chunk_size: int = 400000,
                     app_user_agent: str | None = None) -> None:
            agent = f"{USER_AGENT} python-tuf/{tuf.__version__}"
            super().__init__(config, timeout=socket_timeout, chunk_size=chunk_size, proxy=False,
                             headers={"User-Agent": f"{app_user_agent} {agent}" if app_user_agent else agent})
            self.made.append(self)

        @property
        def socket_timeout(self) -> float:
            return self.timeout

    assert issubclass(PinnedUrllib3Fetcher, FetcherInterface)
    return PinnedUrllib3Fetcher


def pytest_configure(config: pytest.Config) -> None:
    socket.getaddrinfo = _loopback_only
    if not os.environ.get("PINCLIENT_COMPAT_PINS"):
        return  # the baseline: tuf's own fetcher
    import tuf.ngclient
    import tuf.ngclient.updater
    import tuf.ngclient.urllib3_fetcher

    fetcher = _pinned_fetcher_class()
    for module in (tuf.ngclient, tuf.ngclient.updater, tuf.ngclient.urllib3_fetcher):
        module.Urllib3Fetcher = fetcher  # type: ignore[attr-defined]
    config.stash[_FETCHER] = fetcher


_FETCHER = pytest.StashKey[type]()


def pytest_unconfigure(config: pytest.Config) -> None:
    # Proof that the swap happened: how many connections pinclient's guards checked.
    fetcher = config.stash.get(_FETCHER, None)
    report = os.environ.get("PINCLIENT_COMPAT_CHECKS")
    if fetcher is not None and report:
        with open(report, "w") as out:
            out.write(str(sum(f.manager.guard.checks for f in fetcher.made)))
