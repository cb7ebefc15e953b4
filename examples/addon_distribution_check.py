#!/usr/bin/env python3
"""Check distribution URLs and mirrors against pins.toml, in CI, and print a table.

    python addon_distribution_check.py --pins pins.toml URL [URL ...]
    python addon_distribution_check.py --pins pins.toml --urls-file mirrors.txt --format markdown

Each URL gets its own new connection, so each one is really handshaken and checked against the
pins; the request is a GET whose body is never read. A mirror whose certificate comes from an
unexpected CA, or a host no pinset covers, shows as REFUSED with the reason; TLS and HTTP failures
show as ERROR. ``--format markdown`` prints a table for a CI job summary
(``>> $GITHUB_STEP_SUMMARY``).

This is the library way, to build on; ``pinclient check URL ...`` does a similar check from the
command line.

Exit status: 0 when every URL passed, else the lowest pinclient exit code among the failures
(3 pin violation, 6 network or HTTP error), so a pin problem outranks a flaky mirror.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

import pinclient
from pinclient import HTTPStatusError, NetworkError, PinclientError, PinViolation


@dataclass
class Row:
    url: str
    result: str  # "ok", "REFUSED" or "ERROR"
    status: str  # HTTP status, or "-"
    pinset: str
    detail: str
    exit_code: int = 0


def check(url: str, config: pinclient.PinConfig, timeout: float) -> Row:
    from urllib3.exceptions import HTTPError

    pm = pinclient.PinningPoolManager(config)
    try:
        resp = pm.request("GET", url, redirect=False, retries=False, preload_content=False,
                          timeout=timeout)
        verdict = getattr(resp.connection, "verdict", None)
        resp.close()  # the body is not needed: the pin check happened at the handshake
        if resp.status >= 400:
            raise HTTPStatusError(f"HTTP {resp.status}", url=url, status=resp.status)
        pinset = verdict.pinset.name if verdict and verdict.pinset else "(unpinned, allowed)"
        matched = verdict.matched.describe() if verdict and verdict.matched else "no pin needed"
        return Row(url, "ok", str(resp.status), pinset, f"matched {matched}")
    except PinViolation as e:
        issuer = e.chain[1].subject if len(e.chain) > 1 else "-"
        return Row(url, "REFUSED", "-", e.pinset or "(none)", f"{e.reason}; issuer {issuer}", e.exit_code)
    except PinclientError as e:
        return Row(url, "ERROR", "-", "-", e.message.splitlines()[0], e.exit_code)
    except HTTPError as e:  # TLS validation, refused connection, timeout
        return Row(url, "ERROR", "-", "-", str(e).splitlines()[0], NetworkError.exit_code)
    finally:
        pm.clear()


def render(rows: list[Row], fmt: str) -> str:
    head = ("URL", "RESULT", "HTTP", "PINSET", "DETAIL")
    cells = [head, *((r.url, r.result, r.status, r.pinset, r.detail) for r in rows)]
    if fmt == "markdown":
        lines = ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in cells]
        lines.insert(1, "|" + "---|" * len(head))
        return "\n".join(lines)
    widths = [max(len(row[i]) for row in cells) for i in range(len(head) - 1)]
    return "\n".join("  ".join([*(c.ljust(w) for c, w in zip(row[:-1], widths, strict=True)), row[-1]])
                     for row in cells)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("urls", nargs="*", metavar="URL")
    parser.add_argument("--pins", required=True, type=Path)
    parser.add_argument("--urls-file", type=Path, help="one URL a line; # starts a comment")
    parser.add_argument("--format", choices=("text", "markdown"), default="text")
    parser.add_argument("--timeout", type=float, default=10.0)
    args = parser.parse_args(argv)
    urls = list(args.urls)
    try:
        config = pinclient.load_pins(args.pins)
        if args.urls_file:
            lines = args.urls_file.read_text().splitlines()
            urls += [u for u in (line.split("#")[0].strip() for line in lines) if u]
    except PinclientError as e:
        print(e.message, file=sys.stderr)
        return e.exit_code
    except OSError as e:
        print(f"cannot read {args.urls_file}: {e.strerror or e}", file=sys.stderr)
        return 2
    if not urls:
        parser.error("no URLs to check")
    rows = [check(url, config, args.timeout) for url in urls]
    print(render(rows, args.format))
    failures = [r.exit_code for r in rows if r.exit_code]
    return min(failures) if failures else 0


if __name__ == "__main__":
    sys.exit(main())
