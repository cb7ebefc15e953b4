"""``pinclient demo``: replay the 2011 Comodo attack against a throwaway local server."""

from __future__ import annotations

import argparse
import sys

__all__ = ["configure_demo", "run_demo"]


def configure_demo(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="also log pin decisions (-v) and verified chains (-vv) to stderr")
    parser.add_argument("-q", "--quiet", action="store_true",
                        help="print nothing unless the demo misbehaves")


def run_demo(args: argparse.Namespace) -> int:
    from .._demo import run_demo as demo  # deferred: cryptography and the transport

    def say(text: str) -> None:
        if not args.quiet:
            print(text, flush=True)

    def warn(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    return demo(say, warn)
