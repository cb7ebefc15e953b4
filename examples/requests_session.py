#!/usr/bin/env python3
"""Pin an existing requests-based updater: mount pinclient's adapter, keep the rest of the code.

    pip install 'pinclient[requests]'
    python requests_session.py https://updates.example.com/latest.json --pins pins.toml [-o FILE]

Every connection the session opens is checked against pins.toml right after the TLS handshake; a
certificate from an unexpected CA raises pinclient.PinViolation before the request is sent.
``verify=False``, a different ``verify`` bundle or a client ``cert`` raise pinclient.UsageError
instead of silently weakening the check.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path

import requests

import pinclient
from pinclient.requests import PinningAdapter


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("url")
    parser.add_argument("--pins", required=True, type=Path)
    parser.add_argument("-o", "--output", type=Path, help="save the body here (default: print a summary)")
    args = parser.parse_args(argv)

    try:
        adapter = PinningAdapter(pinclient.load_pins(args.pins))
    except pinclient.PinclientError as e:
        print(e.message, file=sys.stderr)
        return e.exit_code

    def show(verdict: pinclient.Verdict, port: int) -> None:
        pinset = verdict.pinset.name if verdict.pinset else "(none)"
        print(f"pinned: {verdict.host}:{port} accepted by pinset {pinset}", file=sys.stderr)

    # Optional: see each accepted connection (revocation checks and reports hook in the same way).
    adapter.guard.after_check.append(show)

    with requests.Session() as session:
        session.mount("https://", adapter)
        session.mount("http://", adapter)  # so that a redirect to plain http:// is refused, not followed
        try:
            resp = session.get(args.url, timeout=30)
            resp.raise_for_status()
        except pinclient.PinclientError as e:  # PinViolation (3), UsageError (2)
            print(e.message, file=sys.stderr)
            return e.exit_code
        except requests.RequestException as e:
            print(f"request failed: {e}", file=sys.stderr)
            return pinclient.NetworkError.exit_code
    body = resp.content
    if args.output:
        args.output.write_bytes(body)
    print(f"{resp.status_code} {len(body)} bytes sha256 {hashlib.sha256(body).hexdigest()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
