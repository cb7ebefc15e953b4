"""A deadline that bounds every wait of an operation, not each read: a watchdog shuts the sockets down.

A socket timeout bounds one ``recv``; a server that sends one byte of its response headers (or of
its TLS handshake, a ``.minisig``, a redirect body, an OCSP answer) just inside it can hold a
client for as long as it likes (issue 14: http.client reads 100 header lines of 64 KiB each). So a
fetch runs inside :func:`deadline`: every connection a watched pool hands out on this thread (and
every socket given to :func:`watch`) is registered with every enclosing deadline, and when the
monotonic clock reaches one, a timer thread shuts those sockets down (``shutdown(SHUT_RDWR)`` on
the file descriptor, which wakes a blocked ``recv`` at once). The blocked call then fails with an
ordinary connection error, or sees an end of stream that http.client may take for the end of the
headers or of the body; :func:`expired` tells the caller to report the deadline and to distrust
whatever arrived.

Deadlines nest (a revocation fetch inside a fetch): the inner one ends at the earlier of the two.
Scopes are per thread; a connection is unwatched when it goes back to its pool, so another thread
sharing the pool never loses a connection to this thread's deadline.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

from urllib3 import HTTPConnectionPool, HTTPSConnectionPool

__all__ = ["WATCHED_POOLS", "Scope", "WatchedPoolMixin", "deadline", "expired", "remaining", "unwatch",
           "watch"]

_local = threading.local()


class Scope:
    """One :func:`deadline` block: what it watches, and whether its watchdog fired (``fired``).
    :meth:`close` ends the watch early: after it, ``fired`` is final and no socket of this scope
    is shut down any more, so what was read before is known to be whole (see :func:`expired`)."""

    def __init__(self, at: float | None) -> None:
        self.at = at
        self.fired = False
        self.watched: list[Any] = []
        self.lock = threading.Lock()
        self.closed = False
        if at is not None:
            _WATCHDOG.arm(self)

    def add(self, obj: Any) -> None:
        with self.lock:
            if self.fired:
                _shut(obj)
            elif not self.closed and obj not in self.watched:
                self.watched.append(obj)

    def discard(self, obj: Any) -> None:
        with self.lock, contextlib.suppress(ValueError):
            self.watched.remove(obj)

    def fire(self) -> None:
        with self.lock:
            if self.closed:
                return
            self.fired = True
            for obj in self.watched:
                _shut(obj)

    def close(self) -> None:
        """Stop watching (idempotent); returns nothing: read ``fired`` afterwards."""
        with self.lock:
            self.closed = True
            self.watched.clear()


class _Watchdog:
    """One daemon thread for every deadline of the process: a heap of scopes by due time (a thread
    per scope cost about 0.4 ms per request). Closed scopes are dropped when they reach the top."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, Scope]] = []
        self._seq = itertools.count()
        self._thread: threading.Thread | None = None

    def arm(self, scope: Scope) -> None:
        assert scope.at is not None
        with self._cond:
            heapq.heappush(self._heap, (scope.at, next(self._seq), scope))
            if self._thread is None or not self._thread.is_alive():  # first use, or after fork()
                self._thread = threading.Thread(target=self._run, name="pinclient-deadline",
                                                daemon=True)
                self._thread.start()
            self._cond.notify()

    def _run(self) -> None:
        with self._cond:
            while True:
                now = time.monotonic()
                while self._heap and (self._heap[0][2].closed or self._heap[0][0] <= now):
                    heapq.heappop(self._heap)[2].fire()  # a closed scope ignores it
                self._cond.wait(self._heap[0][0] - now if self._heap else None)


_WATCHDOG = _Watchdog()


def _scopes() -> list[Scope]:
    stack: list[Scope] | None = getattr(_local, "scopes", None)
    if stack is None:
        stack = _local.scopes = []
    return stack


@contextlib.contextmanager
def deadline(at: float | None) -> Iterator[Scope]:
    """Within the block, on this thread, every wait ends by ``at`` (``time.monotonic()`` seconds)
    or by an enclosing deadline, whichever is earlier. ``None``: only the enclosing one applies."""
    stack = _scopes()
    outer = stack[-1].at if stack else None
    if outer is not None:
        at = outer if at is None else min(at, outer)
    scope = Scope(at)
    stack.append(scope)
    try:
        yield scope
    finally:
        scope.close()
        stack.remove(scope)


def remaining() -> float | None:
    """Seconds left before this thread's innermost deadline (never negative), or None."""
    stack = _scopes()
    if not stack or stack[-1].at is None:
        return None
    return max(0.0, stack[-1].at - time.monotonic())


def expired() -> bool:
    """Whether the watchdog of this thread's innermost deadline has fired: its sockets were shut
    down, so what they delivered may be cut short. (Only a firing counts: an answer read whole
    just as the time ran out is whole; :func:`remaining` says whether time is left.)"""
    stack = _scopes()
    return bool(stack) and stack[-1].fired


def watch(obj: Any) -> None:
    """Shut ``obj`` (a socket, or a connection with a ``sock``) down when a deadline of this thread
    passes: every enclosing one watches it, so it stays bounded after an inner block ends (a
    response head read under a short bound, its body under the fetch's deadline). Nothing
    outside a :func:`deadline` block."""
    for scope in _scopes():
        if scope.at is not None:
            scope.add(obj)


def unwatch(obj: Any) -> None:
    """Forget ``obj`` in every scope of this thread (it went back to a pool)."""
    for scope in _scopes():
        scope.discard(obj)


def _shut(obj: Any) -> None:
    """Wake whatever waits on ``obj``'s socket: shut the file descriptor down both ways. Only the
    OS-level call: ``SSLSocket.shutdown`` would also drop the TLS object under a reader's feet."""
    sock = obj if isinstance(obj, socket.socket) else getattr(obj, "sock", None)
    while sock is not None and not isinstance(sock, socket.socket):
        sock = getattr(sock, "socket", None)  # urllib3's SSLTransport (TLS in TLS, https proxy)
    if sock is not None:
        with contextlib.suppress(OSError, ValueError):
            socket.socket.shutdown(sock, socket.SHUT_RDWR)


class WatchedPoolMixin:
    """For a urllib3 connection pool: every connection it hands out is watched by the current
    deadline (new ones included: the watchdog reads ``conn.sock`` when it fires, so a handshake
    in progress is covered too), and unwatched when it comes back."""

    def _get_conn(self, timeout: float | None = None) -> Any:
        conn = super()._get_conn(timeout)  # type: ignore[misc]
        watch(conn)
        return conn

    def _put_conn(self, conn: Any) -> None:
        unwatch(conn)
        super()._put_conn(conn)  # type: ignore[misc]


class _WatchedHTTPConnectionPool(WatchedPoolMixin, HTTPConnectionPool):
    pass


class _WatchedHTTPSConnectionPool(WatchedPoolMixin, HTTPSConnectionPool):
    pass


#: ``PoolManager.pool_classes_by_scheme`` for a manager whose requests a deadline must bound.
WATCHED_POOLS: dict[str, type[HTTPConnectionPool]] = {
    "http": _WatchedHTTPConnectionPool,
    "https": _WatchedHTTPSConnectionPool,
}
