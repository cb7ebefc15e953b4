"""pinclient as the transport of python-tuf: :class:`PinnedFetcher` (extra ``pinclient[tuf]``).

TUF verifies *what* is downloaded (signed metadata, hashes, lengths, versions, expiry); pinclient
makes sure it comes from the servers you expect (pinned CAs, checked on the verified chain before a
request byte is sent). Together, a stolen TLS certificate from another CA gets an attacker nothing,
and neither does a compromised server without the TUF keys::

    from tuf.ngclient import Updater
    from pinclient.tuf import PinnedFetcher

    fetcher = PinnedFetcher(pinclient.load_pins("pins.toml"))
    updater = Updater(metadata_dir, metadata_url, target_dir, targets_url, fetcher=fetcher,
                      bootstrap=embedded_root_json)
    updater.refresh()

Errors are converted at this one boundary the way tuf's own ``Urllib3Fetcher`` does (timeouts, in
the handshake, before the headers or mid-body, become ``SlowRetrievalError``, and so does a refused
connection, which urllib3 counts as a connect timeout; HTTP error statuses ``DownloadHTTPError``, the
rest ``DownloadError``; tests/test_dropin.py runs both fetchers side by side). One deliberate
difference: a body that breaks off is a ``DownloadError`` here, where tuf's lets urllib3's
``ProtocolError`` escape. Every pinclient error is kept as the cause: a pin violation surfaces
from ``Updater.refresh()`` as a ``DownloadError`` whose ``__cause__`` is the
:class:`~pinclient.errors.PinViolation`, with its host, chain and expected pins.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from types import TracebackType
from typing import Any

import urllib3
from tuf.api import exceptions
from tuf.ngclient.fetcher import FetcherInterface

from ._version import USER_AGENT
from .config import PinConfig
from .errors import PinclientError, UsageError
from .transport import PinningPoolManager, pinning_manager

__all__ = ["PinnedFetcher"]


class PinnedFetcher(FetcherInterface):
    """A ``tuf.ngclient.FetcherInterface`` over a :class:`~pinclient.PinningPoolManager`.

    Give either ``config`` (a manager is built, with ``proxy`` as in
    :func:`~pinclient.transport.pinning_manager`) or a shared ``manager``. ``timeout`` is the
    connect timeout and the longest gap between bytes (seconds), as in tuf's own fetcher; at most
    ``max_redirects`` https redirects are followed, each checked against the pins. ``headers`` are
    sent with every request (``User-Agent`` defaults to ``pinclient/<version>``).

    Raises (constructor):
        UsageError: neither or both of ``config`` and ``manager``, or a bad proxy.
    """

    def __init__(self, config: PinConfig | None = None, *, manager: PinningPoolManager | None = None,
                 timeout: float = 30.0, max_redirects: int = 5, chunk_size: int = 64 * 1024,
                 headers: Mapping[str, str] | None = None, proxy: str | bool | None = None) -> None:
        if (config is None) == (manager is None):
            raise UsageError("PinnedFetcher needs a PinConfig or a PinningPoolManager (one of them).")
        self._own = manager is None
        self.manager: PinningPoolManager = manager or pinning_manager(config, proxy=proxy)  # type: ignore[arg-type]
        self.timeout = timeout
        self.chunk_size = chunk_size
        self._retries = urllib3.Retry(total=None, connect=0, read=0, status=0, other=0,
                                      redirect=max_redirects, raise_on_redirect=True)
        # identity: TUF hashes the bytes as served.
        self.headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity",
                        **(headers or {})}

    def _fetch(self, url: str) -> Iterator[bytes]:
        """GET ``url`` through the pins; the body is streamed by the returned iterator.

        Raises:
            exceptions.DownloadError: from a :class:`PinclientError` (pin violation, revocation, …)
                or a connection failure, which is its ``__cause__``.
            exceptions.SlowRetrievalError: the connection or a read timed out.
            exceptions.DownloadHTTPError: an HTTP error status.
        """
        try:
            # request(), not urlopen(): what tuf's fetcher calls, so tuf's own tests can stand in
            # for the transport the same way for both (compat/).
            response = self.manager.request(
                "GET", url, preload_content=False, redirect=True, retries=self._retries,
                headers=self.headers, timeout=urllib3.Timeout(self.timeout))
        except (PinclientError, urllib3.exceptions.HTTPError) as e:
            raise _download_error(url, e) from e
        if response.status >= 400:
            response.close()
            response.release_conn()
            raise exceptions.DownloadHTTPError(f"HTTP error occurred with status {response.status}",
                                               response.status)
        return self._chunks(url, response)

    def _chunks(self, url: str, response: Any) -> Iterator[bytes]:
        complete = False
        try:
            yield from response.stream(self.chunk_size, decode_content=False)
            complete = True
        except (PinclientError, urllib3.exceptions.HTTPError) as e:
            # Ending the stream silently would look like a complete (short) download.
            raise _download_error(url, e, reading=True) from e
        finally:
            if not complete:
                response.close()  # a connection with unread body bytes must not be pooled
            response.release_conn()

    def close(self) -> None:
        """Close the pooled connections (of the manager this fetcher built; a shared one is left)."""
        if self._own:
            self.manager.clear()

    def __enter__(self) -> PinnedFetcher:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def _download_error(url: str, error: Exception, *, reading: bool = False) -> exceptions.DownloadError:
    """tuf's error for ``error``, as ``Urllib3Fetcher`` chooses it: a timeout, raised directly or as
    the reason of a ``MaxRetryError``, is a ``SlowRetrievalError``; anything else a ``DownloadError``
    (a :class:`PinclientError` keeps its message)."""
    reason = error.reason if isinstance(error, urllib3.exceptions.MaxRetryError) else error
    if isinstance(reason, urllib3.exceptions.TimeoutError):
        return exceptions.SlowRetrievalError(f"Timed out {'reading' if reading else 'fetching'} {url}")
    detail = error.message if isinstance(error, PinclientError) else reason or error
    return exceptions.DownloadError(f"{'The body of' if reading else 'Failed to download'} {url}"
                                    f"{' broke off' if reading else ''}: {detail}")
