"""One download by one client, for ``bench/run.py --peers``: download URL over HTTPS, SHA-256 it,
write it to DEST; print ``{"wall", "cpu", "sha256"}`` of the transfer alone as JSON (``cpu``: this
process's user + system CPU seconds, all threads, from ``time.process_time``; imports and start-up
are outside it, and the parent measures them with the whole process).

    python bench/peers.py CLIENT URL CA_FILE DEST [PINS]

CLIENT is ``pinclient`` (``pinclient.fetch_update``), ``pinclient-1core`` (the same, hashing and
writing on the reading thread as with one core), ``pinclient-aio`` (``pinclient.aio.fetch_update``
under ``asyncio.run``), ``requests`` (``iter_content(1 MiB)``),
``urllib3`` (``stream(1 MiB)``), ``httpx`` (``iter_bytes``) or ``write`` (no network: raw
``os.write`` of 1 GiB of one 1 MiB buffer; URL is the size in bytes).
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from pathlib import Path

MiB = 1024 * 1024


def _requests(url: str, ca: str, dest: str) -> str:
    import requests

    digest = hashlib.sha256()
    with requests.get(url, verify=ca, stream=True, timeout=30) as resp, open(dest, "wb") as out:
        resp.raise_for_status()
        for chunk in resp.iter_content(MiB):
            digest.update(chunk)
            out.write(chunk)
    return digest.hexdigest()


def _urllib3(url: str, ca: str, dest: str) -> str:
    import urllib3

    digest = hashlib.sha256()
    with urllib3.PoolManager(ca_certs=ca) as pm:
        resp = pm.request("GET", url, preload_content=False)
        with open(dest, "wb") as out:
            for chunk in resp.stream(MiB):
                digest.update(chunk)
                out.write(chunk)
        resp.release_conn()
    return digest.hexdigest()


def _httpx(url: str, ca: str, dest: str) -> str:
    import httpx

    digest = hashlib.sha256()
    with httpx.Client(verify=ca) as client, client.stream("GET", url) as resp, open(dest, "wb") as out:
        resp.raise_for_status()
        for chunk in resp.iter_bytes():
            digest.update(chunk)
            out.write(chunk)
    return digest.hexdigest()


def _pinclient(url: str, pins: str, dest: str) -> str:
    import pinclient

    config = pinclient.load_pins(pins)
    return pinclient.fetch_update(url, dest, config=config).sha256


def _pinclient_one_core(url: str, pins: str, dest: str) -> str:
    """``pinclient.fetch_update`` as on a one-core machine: hashing and writing on the reading thread
    (``_download.pipeline.Inline``), to show what the worker thread buys and costs."""
    import pinclient._download.pipeline as pipeline

    pipeline.usable_cpus = lambda: 1
    return _pinclient(url, pins, dest)


def _pinclient_aio(url: str, pins: str, dest: str) -> str:
    import asyncio

    import pinclient
    import pinclient.aio

    config = pinclient.load_pins(pins)
    return asyncio.run(pinclient.aio.fetch_update(url, dest, config=config)).sha256


def _write(size: str, dest: str) -> str:
    left, buf = int(size), memoryview(os.urandom(MiB))
    fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        while left:
            left -= os.write(fd, buf[: min(left, MiB)])
    finally:
        os.close(fd)
    return ""


def main(argv: list[str]) -> int:
    client, url, ca, dest, *rest = argv
    if client == "pinclient-aio":
        import asyncio  # noqa: F401

        import pinclient.aio
        import pinclient.httpx
    elif client in ("pinclient", "pinclient-1core"):
        # Imported before the clock, as the others are. ``import pinclient`` alone loads nothing
        # (PEP 562 lazy exports), so name the modules a fetch loads: otherwise ~0.14 CPU-s of
        # importing urllib3, cryptography and pinclient's own modules would count as transfer.
        import pinclient._download.fetch
        import pinclient.transport  # noqa: F401
    elif client in ("requests", "urllib3", "httpx"):
        __import__(client)
    cpu, start = time.process_time(), time.perf_counter()
    if client == "pinclient":
        sha = _pinclient(url, rest[0], dest)
    elif client == "pinclient-1core":
        sha = _pinclient_one_core(url, rest[0], dest)
    elif client == "pinclient-aio":
        sha = _pinclient_aio(url, rest[0], dest)
    elif client == "write":
        sha = _write(url, dest)
    else:
        sha = {"requests": _requests, "urllib3": _urllib3, "httpx": _httpx}[client](url, ca, dest)
    wall, used = time.perf_counter() - start, time.process_time() - cpu
    Path(dest).unlink()
    print(json.dumps({"wall": wall, "cpu": used, "sha256": sha}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
