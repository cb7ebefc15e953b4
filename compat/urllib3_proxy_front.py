"""A CONNECT front for urllib3's dummy proxy, for compat/run.py (both runs alike).

urllib3's ``dummyserver.asgi_proxy.ProxyApp`` answers ``CONNECT`` by taking the raw connection from a
``_transport`` ASGI scope extension that only urllib3's own fork of hypercorn provides; with the PyPI
release every tunnel ends in EOF, so none of urllib3's tests of https:// through a proxy can run.
:func:`run_hypercorn_in_thread` wraps urllib3's function of the same name: a ``ProxyApp`` is served
by hypercorn in plain http on a port of its own, behind a small threaded front on the port the test
gets, with the proxy's certificate when it is an https:// proxy. The front tunnels ``CONNECT``
itself (to loopback only: the plugin's connect guard) and relays every other request, bytes
unchanged, to the ``ProxyApp``, which forwards absolute-URI requests as before.
"""

from __future__ import annotations

import contextlib
import select
import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from typing import Any

_HEAD_LIMIT = 65536
_IDLE = 30.0  # seconds a relayed connection may sit idle


def _read_head(conn: socket.socket) -> tuple[bytes, bytes]:
    buf = b""
    while b"\r\n\r\n" not in buf:
        data = conn.recv(4096)
        if not data or len(buf) > _HEAD_LIMIT:
            return b"", b""
        buf += data
    head, rest = buf.split(b"\r\n\r\n", 1)
    return head + b"\r\n\r\n", rest


def _relay(a: socket.socket, b: socket.socket) -> None:
    """Copy bytes both ways until either side closes (one thread; TLS objects are not shared)."""
    peers = {a: b, b: a}
    while True:
        ready = [s for s in peers if isinstance(s, ssl.SSLSocket) and s.pending()]
        if not ready:
            ready, _, _ = select.select(list(peers), [], [], _IDLE)
            if not ready:
                return
        for sock in ready:
            data = sock.recv(65536)
            if not data:
                return
            peers[sock].sendall(data)


class ProxyFront(threading.Thread):
    def __init__(self, host: str, backend_port: int, certs: dict[str, Any] | None) -> None:
        super().__init__(daemon=True, name=f"proxy front for :{backend_port}")
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.listener = socket.create_server(("127.0.0.1" if host == "localhost" else host, 0), family=family)
        self.listener.settimeout(0.1)
        self.port = self.listener.getsockname()[1]
        self.backend_port = backend_port
        self.context: ssl.SSLContext | None = None
        if certs:
            self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self.context.load_cert_chain(certs["certfile"], certs["keyfile"])
        self.stopping = threading.Event()
        self.handlers: list[threading.Thread] = []

    def run(self) -> None:
        while not self.stopping.is_set():
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            handler = threading.Thread(target=self.handle, args=(conn,), daemon=True)
            self.handlers.append(handler)
            handler.start()

    def handle(self, conn: socket.socket) -> None:
        upstream = None
        try:
            conn.settimeout(_IDLE)
            if self.context is not None:
                conn = self.context.wrap_socket(conn, server_side=True)
            head, rest = _read_head(conn)
            if not head:
                return
            method, target = head.split(b" ", 2)[:2]
            if method == b"CONNECT":
                host, _, port = target.decode("ascii").rpartition(":")
                upstream = socket.create_connection((host.strip("[]"), int(port)), timeout=_IDLE)
                conn.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
                head = b""
            else:
                upstream = socket.create_connection(("127.0.0.1", self.backend_port), timeout=_IDLE)
            upstream.sendall(head + rest)
            _relay(conn, upstream)
        except (OSError, ValueError):
            pass  # a client that hangs up or fails its handshake; urllib3's tests provoke both
        finally:
            for sock in (conn, upstream):
                if sock is not None:
                    sock.close()

    def stop(self) -> None:
        self.stopping.set()
        self.join(5)
        self.listener.close()
        for handler in self.handlers:
            handler.join(_IDLE)


def fronted(real: Callable[..., Any], proxy_app: type) -> Callable[..., Any]:
    """urllib3's ``run_hypercorn_in_thread``, with a :class:`ProxyFront` before each ``ProxyApp``."""

    @contextlib.contextmanager
    def run_hypercorn_in_thread(host: str, certs: dict[str, Any] | None, app: Any) -> Iterator[int]:
        if not isinstance(app, proxy_app):
            with real(host, certs, app) as port:
                yield port
            return
        with real(host, None, app) as backend_port:
            front = ProxyFront(host, backend_port, certs)
            front.start()
            try:
                yield front.port
            finally:
                front.stop()

    return run_hypercorn_in_thread
