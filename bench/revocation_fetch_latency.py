"""Extra latency revocation checking adds to each *new connection* of the pinned transport.

    .venv/bin/python bench/revocation_fetch_latency.py [iterations]

A real TLS update server on 127.0.0.1 (pinclient._demo.LoopbackServer), a chain root → intermediate →
leaf whose leaf names an OCSP responder and whose intermediate names a CRL, both on a loopback HTTP server
(tests/revocation_pki.py). Each sample is one GET of a 1 KiB body through a fresh
PinningPoolManager (so: TCP connect, TLS handshake, pin check, revocation, request, response).
Variants, interleaved round by round so drift on a shared machine hits them all alike:

* ``off``: ``revocation = "off"``, the baseline;
* ``hard-fail, cache hit``: the disk cache holds the OCSP response and the CRL (read + re-verify);
* ``hard-fail, cold, replayed``: empty cache; the responder replays a response OpenSSL signed, so
  this is one OCSP POST + one CRL GET + verification + two cache writes (closest to a real,
  already-running responder, minus the network's round trips);
* ``hard-fail, cold, openssl``: empty cache; ``openssl ocsp`` runs per request (as in the tests),
  which adds an OpenSSL process start.

Prints the median and 90th percentile in milliseconds and the median extra over ``off``.
Reports only; asserts nothing but that the variants did what they claim (request counts).
"""

from __future__ import annotations

import shutil
import socket
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pinclient import PinningPoolManager
from pinclient._demo import Conn, LoopbackServer, Response
from pinclient._pki import CA
from pinclient._revocation.verify import build_ocsp_request
from pinclient.config import PinConfig, load_pins
from pinclient.policy import spki_sha256
from tests.revocation_pki import OPENSSL, Issued, LoopbackHTTP, OpenSSLResponder, index_line, make_crl

BODY = b"x" * 1024


class _Server(LoopbackServer):
    def _serve(self, raw: socket.socket, conn: Conn) -> None:
        # The test server writes headers and body separately; without TCP_NODELAY, Nagle plus the
        # client's delayed ACK adds ~40 ms to every response and would swamp what is measured.
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        super()._serve(raw, conn)


def pins(folder: Path, bundle: Path, root: CA, mode: str, cache: str) -> PinConfig:
    import base64

    folder.mkdir(parents=True, exist_ok=True)
    pin = base64.b64encode(spki_sha256(root.cert)).decode()
    (folder / "pins.toml").write_text(
        f'version = 1\n[defaults]\nca_bundle = "{bundle}"\ncache_dir = "{cache}"\n'
        f'[[pinset]]\nname = "bench"\nhosts = ["localhost"]\nissuers = [{{ spki_sha256 = "{pin}" }}]\n'
        f'revocation = "{mode}"\n')
    return load_pins(folder / "pins.toml")


def main(argv: list[str]) -> int:
    if OPENSSL is None:
        print("openssl not found", file=sys.stderr)
        return 1
    iterations = int(argv[0]) if argv else 100
    work = Path(tempfile.mkdtemp(prefix="pinclient-bench-"))
    http = LoopbackHTTP()
    try:
        root = CA("Bench Root")
        intermediate = root.child_ca("Bench Issuing CA", crl_url=f"{http.base_url}/root.crl")
        leaf = intermediate.issue_leaf("localhost", ocsp_url=f"{http.base_url}/ocsp")
        bundle = work / "bundle.pem"
        bundle.write_bytes(root.cert_pem())
        issuer = Issued(intermediate.cert, intermediate.key)
        responder = OpenSSLResponder(work / "ocsp", issuer=issuer, signer=issuer,
                                     index=index_line(leaf.cert), extra=("-nmin", "60"))
        _, recorded = responder(build_ocsp_request(leaf.cert, intermediate.cert))
        root_crl = make_crl(Issued(root.cert, root.key))
        http.routes["/root.crl"] = lambda _: (200, root_crl)

        off = pins(work / "off", bundle, root, "off", "cache")
        warm = pins(work / "warm", bundle, root, "hard-fail", "cache")
        counter = [0]

        def cold_config() -> PinConfig:
            counter[0] += 1
            return pins(work / "cold", bundle, root, "hard-fail", f"cache-{counter[0]}")

        with _Server(leaf.server_context(), {"/u": Response(200, BODY)}) as server:
            url = server.url("/u", host="localhost")

            def once(config: PinConfig) -> float:
                start = time.perf_counter()
                with PinningPoolManager(config) as pm:
                    assert pm.request("GET", url).data == BODY
                return (time.perf_counter() - start) * 1000

            def replayed() -> float:
                http.routes["/ocsp"] = lambda _: (200, recorded)
                return once(cold_config())

            def with_openssl() -> float:
                http.routes["/ocsp"] = responder
                return once(cold_config())

            variants: dict[str, Callable[[], float]] = {
                "off": lambda: once(off),
                "hard-fail, cache hit": lambda: once(warm),
                "hard-fail, cold, replayed response": replayed,
                "hard-fail, cold, openssl ocsp": with_openssl,
            }
            http.routes["/ocsp"] = responder
            for run in variants.values():  # warm-up; fills the "cache hit" cache
                run()
            samples: dict[str, list[float]] = {name: [] for name in variants}
            for _ in range(iterations):
                for name, run in variants.items():
                    if name == "hard-fail, cache hit":
                        before = sum(http.hits.values())
                        samples[name].append(run())
                        assert sum(http.hits.values()) == before, "a cache hit touched the network"
                    elif name == "off":
                        before = sum(http.hits.values())
                        samples[name].append(run())
                        assert sum(http.hits.values()) == before, "off touched the network"
                    else:
                        samples[name].append(run())
    finally:
        http.close()
        shutil.rmtree(work, ignore_errors=True)
    base = statistics.median(samples["off"])
    print(f"one GET on a new connection, {iterations} runs each (ms): median / p90 / extra over off")
    for name, values in samples.items():
        values.sort()
        median, p90 = statistics.median(values), values[int(len(values) * 0.9) - 1]
        print(f"  {name:<36} {median:7.2f} / {p90:7.2f} / {median - base:+7.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
