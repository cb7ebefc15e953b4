"""python-tuf's ``tests/simple_server.py`` over TLS: serves the working directory on 127.0.0.1 with
the certificate and key named by ``$PINCLIENT_COMPAT_CERT``/``$PINCLIENT_COMPAT_KEY`` and prints the
same "bind succeeded" line, so tuf's ``utils.TestServerProcess(server=...)`` can start it unchanged.
Each connection's handshake runs in its own thread: tuf's start-up probe connects and hangs up
without TLS, and must not stall anyone else."""

from __future__ import annotations

import os
import socketserver
import ssl
from http.server import SimpleHTTPRequestHandler
from typing import Any


class TLSHandler(SimpleHTTPRequestHandler):
    def setup(self) -> None:
        self.request.do_handshake()  # in the handler's thread (do_handshake_on_connect=False)
        super().setup()

    def log_message(self, format: str, *args: Any) -> None:
        pass


class TLSServer(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True

    def __init__(self, context: ssl.SSLContext) -> None:
        self.context = context
        super().__init__(("127.0.0.1", 0), TLSHandler)

    def get_request(self) -> tuple[Any, Any]:
        sock, addr = self.socket.accept()
        return self.context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False), addr


def main() -> None:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(os.environ["PINCLIENT_COMPAT_CERT"], os.environ["PINCLIENT_COMPAT_KEY"])
    httpd = TLSServer(context)
    print("bind succeeded, server port is: " + str(httpd.server_address[1]), flush=True)
    httpd.serve_forever()


if __name__ == "__main__":
    main()
