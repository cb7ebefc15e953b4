"""Reading the rest of an httpx response's Content-Length body straight from anyio's TLS object,
below httpcore, h11 and anyio's TLS stream (the asyncio download's fast path, issue 18).

Through httpcore every 64 KiB costs a timeout scope, an h11 parse, two copies into and out of
h11's buffer, a ``bytes`` per TLS record and a pass through httpx and httpcore's generators: about
twice the CPU per GiB of the sync download. :class:`TLSBody` instead decrypts each record with
the connection's own ``ssl.SSLObject`` straight into the caller's buffer, feeding its
``MemoryBIO`` from the socket stream under the TLS stream (one await per socket read, several
records each, up to 1 MiB: asyncio's transport is let read that much per loop turn), and never
reads past the declared length.

It is safe only where nothing above holds body bytes: the caller takes the first chunk through
httpx (h11 hands over every byte it buffered with the head, up to the length, in one ``Data``
event), then reads the rest here. h11 never sees the rest, so httpcore closes the connection when
the response is closed instead of reusing it: one more handshake for the next download, never a
connection left in the middle of a body. Anything not as expected (no TLS stream from anyio, a
``MemoryBIO`` missing, a non-anyio backend): :func:`tls_body` returns None and the caller stays on
httpx's path.

Errors are httpx's, as httpcore would raise them: ``httpx.ReadTimeout`` when no byte arrives
within the read timeout, ``httpx.ReadError`` for a broken connection or a bad record. An EOF,
with or without close_notify, ends the body early (the caller compares the count with the length).
"""

from __future__ import annotations

import ssl
from collections.abc import Callable
from typing import Any

import anyio
import httpx

from .._sizes import ascii_decimal

__all__ = ["RECEIVE_BYTES", "TLSBody", "declared_length", "tls_body"]

#: Most bytes taken from the socket stream per await (asyncio reads at most 256 KiB per recv).
RECEIVE_BYTES = 1024 * 1024


def declared_length(resp: httpx.Response) -> int | None:
    """The body's declared length, if it has one (no Transfer-Encoding: h11 frames by that then),
    read as every other number field of an answer is (:func:`pinclient._sizes.ascii_decimal`)."""
    if "transfer-encoding" in resp.headers:
        return None
    return ascii_decimal(resp.headers.get("content-length"))


def tls_body(stream: Any, remaining: int) -> TLSBody | None:
    """A :class:`TLSBody` for the next ``remaining`` body bytes of the connection whose network
    stream httpx reports is ``stream`` (``pinclient.httpx``'s wrapper around httpcore's
    ``AnyIOStream`` around anyio's ``TLSStream``), or None when the layout is not that."""
    tls = getattr(getattr(stream, "_stream", None), "_stream", None)
    tls_object = getattr(tls, "_ssl_object", None)
    incoming = getattr(tls, "_read_bio", None)
    transport = getattr(tls, "transport_stream", None)
    if (not isinstance(tls_object, ssl.SSLObject) or not isinstance(incoming, ssl.MemoryBIO)
            or not callable(getattr(transport, "receive", None))):
        return None
    _read_more_per_turn(transport)
    return TLSBody(tls_object, incoming, transport, remaining)


def _read_more_per_turn(stream: Any) -> None:
    """Let asyncio's socket transport under anyio's socket ``stream`` take up to
    :data:`RECEIVE_BYTES` per event-loop turn instead of its 256 KiB
    (``_SelectorSocketTransport.max_size``, read at every recv). A quarter of the loop turns took
    the asyncio download from ~1.25x the sync download's CPU per GiB to ~1.0x (issue 18,
    interleaved runs). Only this connection's transport changes, and it is closed after the body;
    a transport without the attribute (uvloop's, a TLS stream through a proxy) is left alone."""
    transport = getattr(stream, "_transport", None)
    size = getattr(transport, "max_size", None)
    if isinstance(size, int) and size < RECEIVE_BYTES:
        transport.max_size = RECEIVE_BYTES  # type: ignore[union-attr]


class TLSBody:
    """The rest of one body: :meth:`fill` decrypts what has arrived, :meth:`receive` waits for
    more. Call :meth:`fill` first: OpenSSL may already hold decrypted bytes."""

    def __init__(self, tls_object: ssl.SSLObject, incoming: ssl.MemoryBIO, transport: Any,
                 remaining: int) -> None:
        #: ``SSLObject.read(n, buffer) -> count`` (typeshed says bytes: it is the count with a buffer).
        self._read: Callable[[int, memoryview], int] = tls_object.read  # type: ignore[assignment]
        self._incoming = incoming
        self._transport = transport
        #: Body bytes not yet read; 0 once the body is complete.
        self.remaining = remaining
        #: True once the connection ended (EOF or close_notify) before ``remaining`` reached 0.
        self.ended = False

    def fill(self, view: memoryview) -> int:
        """Decrypt the records already received into the start of ``view`` (no more than it holds,
        nor than the body has left); the count, 0 if no whole record is in. Never waits."""
        want = min(len(view), self.remaining)
        n = 0
        read = self._read
        try:
            while n < want:
                got = read(want - n, view[n:want])
                if not got:  # close_notify
                    self.ended = True
                    break
                n += got
        except ssl.SSLWantReadError:
            pass
        except ssl.SSLEOFError:  # EOF without close_notify: the body ended here
            self.ended = True
        except ssl.SSLError as e:  # a bad record, an alert: as httpcore reports a broken read
            self.remaining -= n
            raise httpx.ReadError(f"TLS error while reading the body: {e}") from e
        self.remaining -= n
        return n

    async def receive(self, timeout: float | None) -> None:
        """Wait for the next bytes from the socket (at most ``timeout`` seconds) and hand them to
        TLS. Nothing is sent: what TLS may have to say now (the answer to a TLS 1.3 KeyUpdate) can
        wait, since the client sends nothing more on this connection."""
        try:
            with anyio.fail_after(timeout):
                data = await self._transport.receive(RECEIVE_BYTES)
        except TimeoutError:
            raise httpx.ReadTimeout("no data within the read timeout") from None
        except anyio.EndOfStream:
            self._incoming.write_eof()
            return
        except (OSError, anyio.BrokenResourceError, anyio.ClosedResourceError) as e:
            raise httpx.ReadError(f"the connection broke: {e!r}") from e
        self._incoming.write(data)
