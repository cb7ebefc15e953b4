"""Extra latency a revocation check adds to a connection, against OpenSSL's OCSP responder on loopback.

    .venv/bin/python bench/revocation_latency.py [iterations]

Prints milliseconds (median and 90th percentile) for:

* leaf only, cold cache: one OCSP POST answered by ``openssl ocsp`` (run per request, see
  tests/revocation_pki.py for why), verify, write the cache entry;
* the same against a loopback responder replaying a response OpenSSL signed, i.e. without the
  cost of starting an ``openssl`` process (closer to a real, already-running responder);
* the OpenSSL process alone, to show how much of the cold number it accounts for;
* full chain (leaf OCSP + intermediate CRL), cold;
* leaf only and full chain with a warm cache (no network: read + re-verify the cached entries).
"""

from __future__ import annotations

import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from cryptography import x509

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pinclient._revocation.checker import RevocationChecker
from pinclient._revocation.verify import RevocationPolicy, build_ocsp_request
from tests.revocation_pki import (
    OPENSSL,
    LoopbackHTTP,
    OpenSSLResponder,
    RevocationPKI,
    index_line,
)

HOST = "updates.test"
POLICY = RevocationPolicy(mode="hard-fail")


def measure(run: Callable[[], object], iterations: int) -> tuple[float, float]:
    samples = []
    for _ in range(iterations):
        start = time.perf_counter()
        run()
        samples.append((time.perf_counter() - start) * 1000)
    samples.sort()
    return statistics.median(samples), samples[int(len(samples) * 0.9) - 1]


def main(argv: list[str]) -> int:
    if OPENSSL is None:
        print("openssl not found", file=sys.stderr)
        return 1
    iterations = int(argv[0]) if argv else 100
    work = Path(tempfile.mkdtemp(prefix="pinclient-bench-"))
    server = LoopbackHTTP()
    try:
        pki = RevocationPKI(server.base_url)
        leaf = pki.leaf(crl=False)
        responder = OpenSSLResponder(
            work / "ocsp", issuer=pki.intermediate, signer=pki.intermediate, index=index_line(leaf.cert),
            extra=("-nmin", "60"),
        )  # fmt: skip
        request = build_ocsp_request(leaf.cert, pki.intermediate.cert)
        _, recorded = responder(request)
        root_crl = pki.crl(pki.root)
        server.routes["/root.crl"] = lambda _: (200, root_crl)
        leaf_only = [leaf.cert, pki.intermediate.cert]  # the last one is the anchor: not checked
        full = pki.chain(leaf)
        counter = [0]

        def cold(chain: list[x509.Certificate]) -> Callable[[], object]:
            def run() -> object:
                counter[0] += 1
                with RevocationChecker(POLICY, cache_dir=work / f"cold{counter[0]}") as checker:
                    return checker.check(chain, host=HOST)

            return run

        rows: list[tuple[str, tuple[float, float]]] = []
        server.routes["/ocsp"] = responder
        rows.append(("leaf, cold cache, openssl ocsp per request", measure(cold(leaf_only), iterations)))
        rows.append(("full chain, cold cache, openssl + CRL", measure(cold(full), iterations)))
        rows.append(("  openssl ocsp process alone", measure(lambda: responder(request), iterations)))
        server.routes["/ocsp"] = lambda _: (200, recorded)
        rows.append(("leaf, cold cache, replayed openssl response", measure(cold(leaf_only), iterations)))
        server.routes["/ocsp"] = responder
        with RevocationChecker(POLICY, cache_dir=work / "warm") as warm:
            warm.check(full, host=HOST)
            before = dict(server.hits)
            rows.append(("leaf, warm cache", measure(lambda: warm.check(leaf_only, host=HOST), iterations)))
            rows.append(("full chain, warm cache", measure(lambda: warm.check(full, host=HOST), iterations)))
            assert dict(server.hits) == before, "a warm check touched the network"
    finally:
        server.close()
        shutil.rmtree(work, ignore_errors=True)
    print(f"revocation check latency over {iterations} runs (ms): median / p90")
    for label, (median, p90) in rows:
        print(f"  {label:<46} {median:7.2f} / {p90:7.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
