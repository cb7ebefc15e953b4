"""Reading a urllib3 response's raw body into the caller's buffers, below urllib3's read path.

urllib3's ``read1`` allocates a new ``bytes`` per TLS record and walks several Python layers per call;
at a gigabyte a second that is a tenth of a core. For an identity-encoded body (a static update
file) pinclient instead calls ``readinto1`` on the connection's buffered socket file, straight into
its own reused buffers, and keeps http.client's byte count (``length``) itself, so the response ends
exactly as http.client would end it and the connection can be reused. A chunked body goes through
http.client's own framing (its ``read1``, one copy); any other response object through urllib3's
public ``read1``.

Every call returns after at most one TLS record (one ``recv``), so the caller sees a trickling
server at every record, as with ``read1``.

This is the one module that reaches into urllib3's ``HTTPResponse._fp`` and http.client's
``HTTPResponse.length``; it converts low-level errors the way urllib3's ``_error_catcher`` does, so
callers handle one family, ``urllib3.exceptions.HTTPError``.
"""

from __future__ import annotations

import http.client
import io
import ssl
from collections.abc import Callable
from typing import Any

__all__ = ["ReadInto", "body_reader"]

#: ``readinto1(view) -> n``: fill the start of ``view`` with at most one record's bytes; 0 at the end.
ReadInto = Callable[[memoryview], int]


def body_reader(resp: Any) -> ReadInto:
    """A ``readinto1`` for ``resp``'s raw body (no content decoding), nothing of which may have been
    read yet.

    The returned function raises urllib3's ``ReadTimeoutError`` (no byte within the read timeout),
    ``SSLError`` or ``ProtocolError`` (the connection broke, or a malformed chunked body). A body that
    ends before its Content-Length simply ends (returns 0): the caller compares the count. On an
    error the caller must close ``resp``, as it would after any failed read.
    """
    raw = getattr(resp, "_fp", None)
    untouched = getattr(resp, "_fp_bytes_read", None) == 0  # so urllib3 buffered nothing either
    if isinstance(raw, http.client.HTTPResponse) and untouched and raw.fp is not None:
        if raw.chunked:
            return _guarded(resp, raw.readinto1)
        if hasattr(raw.fp, "readinto1"):
            return _identity(resp, raw)
    return _via_urllib3(resp)


def _identity(resp: Any, raw: http.client.HTTPResponse) -> ReadInto:
    """http.client's ``read1`` for a Content-Length or close-delimited body, minus its copy; once
    http.client's read buffer is drained, minus four more Python layers (see :func:`_tls_reader`).
    Converts errors as :func:`_guarded` does, inline: one call less per record."""
    direct = _tls_reader(raw)
    tls_read, ragged_eof_is_end = direct if direct is not None else (None, False)
    drained = False

    def readinto1(view: memoryview) -> int:
        nonlocal drained
        fp = raw.fp
        left = raw.length
        if fp is None or left == 0:
            return 0
        if left is not None and len(view) > left:
            view = view[:left]
        try:
            if drained:
                n = tls_read(len(view), view)  # type: ignore[misc]
            else:
                n = fp.readinto1(view)
                # A readinto1 asking for more than the reader's buffer holds empties that buffer (it
                # returns what was buffered, or reads past it): from then on, nothing is left in it.
                drained = tls_read is not None and len(view) > _DRAINED_AFTER
        except ssl.SSLEOFError as e:  # EOF without close_notify: an end, as ``SSLSocket.read`` says
            if not (drained and ragged_eof_is_end):
                raise _converted(resp, e) from e
            n = 0
        except (OSError, ValueError, http.client.HTTPException) as e:  # SSLError, timeouts: OSErrors
            raise _converted(resp, e) from e
        if not n:
            raw.close()  # the body ended (early, if a length was declared): as http.client does
            return 0
        if left is not None:
            raw.length = left - n
            if left == n:
                # The body is complete: close the response (not the socket), so that http.client
                # lets the connection carry the next request, as its own read() does.
                raw.close()
        return n

    return readinto1


#: More than any buffer ``socket.makefile("rb")`` gives http.client (io.DEFAULT_BUFFER_SIZE).
_DRAINED_AFTER = 4 * io.DEFAULT_BUFFER_SIZE

#: ``read(n, buffer) -> count``: the TLS object's own read, and whether an EOF without close_notify
#: ends the body (the socket's ``suppress_ragged_eofs``, as ``SSLSocket.read`` would treat it).
TLSRead = tuple[Callable[[int, memoryview], int], bool]


def _tls_reader(raw: http.client.HTTPResponse) -> TLSRead | None:
    """The read of the TLS connection under http.client's reader, when reading it directly is
    safe: the reader is the standard buffered one over a ``SocketIO`` over an ``ssl.SSLSocket``
    in blocking mode with a timeout (so a read returns at most one record, and the read timeout
    applies: the C-level read waits on the socket's own timeout, which a nearing deadline
    shortens). Otherwise None, and every read goes through the reader: through an HTTPS proxy the
    socket is urllib3's ``SSLTransport`` (TLS in TLS), which keeps its own buffers.

    Skipping ``BufferedReader.readinto1``, ``SocketIO.readinto``, ``SSLSocket.recv_into`` and
    ``SSLSocket.read`` (four Python-level calls per 16 KiB record) saves ~10 % of a download's CPU
    (issue 18). The read is the ``_ssl._SSLSocket`` object's, the one ``SSLSocket.read`` calls;
    the wrapper's only other work, turning an EOF without close_notify into 0, is done by the
    caller with the returned flag."""
    fp = raw.fp
    sock = getattr(getattr(fp, "raw", None), "_sock", None)
    if type(fp) is not io.BufferedReader or not isinstance(sock, ssl.SSLSocket):
        return None
    if sock.gettimeout() == 0:
        return None  # non-blocking: SocketIO turns "no data yet" into None; a read would raise
    read = getattr(getattr(sock, "_sslobj", None), "read", None)
    if read is None:  # not CPython's layout: the public recv_into, with its own EOF handling
        return (lambda n, view: sock.recv_into(view, n)), False
    return read, bool(getattr(sock, "suppress_ragged_eofs", True))


def _guarded(resp: Any, read: ReadInto) -> ReadInto:
    def readinto1(view: memoryview) -> int:
        try:
            return read(view)
        except (OSError, http.client.HTTPException) as e:  # ssl.SSLError and timeouts are OSErrors
            raise _converted(resp, e) from e

    return readinto1


def _converted(resp: Any, e: BaseException) -> Exception:
    """urllib3's exception for a low-level read error (the mapping of its ``_error_catcher``)."""
    from urllib3 import exceptions as u3

    if isinstance(e, TimeoutError):
        return u3.ReadTimeoutError(getattr(resp, "_pool", None), None, "Read timed out.")  # type: ignore[arg-type]
    if isinstance(e, ssl.SSLError):
        return u3.SSLError(e)
    return u3.ProtocolError(f"Connection broken: {e!r}", e)


def _via_urllib3(resp: Any) -> ReadInto:
    def readinto1(view: memoryview) -> int:
        data = resp.read1(len(view), decode_content=False)
        n = len(data)
        view[:n] = data
        return n

    return readinto1
