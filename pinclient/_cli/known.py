"""``pinclient known [HOST]`` and ``pinclient forget HOST``: the issuers remembered for hosts no
pinset covers (``unpinned = "remember"``), listed or removed (the ``ssh-keygen -R`` habit)."""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING

from .._names import printable
from ..errors import UsageError
from .common import load_config

if TYPE_CHECKING:
    from .._known import KnownIssuers

__all__ = ["FORGET_HELP", "KNOWN_HELP", "configure_forget", "configure_known", "run_forget",
           "run_known"]

KNOWN_HELP = ('list the issuers remembered for hosts no pinset covers (unpinned = "remember"), '
              "from the state folder of the pins file")
FORGET_HELP = ("forget the issuers remembered for HOST, to accept a CA change: the next connection "
               "is a first contact and records the new issuers")


def _pins(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--pins", metavar="FILE",
                        help="pins file whose state folder to use (default: $PINCLIENT_PINS, then "
                        "./pins.toml)")


def configure_known(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("host", metavar="HOST", nargs="?", help="only this host")
    _pins(parser)
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def configure_forget(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("host", metavar="HOST", help="the host whose record to remove")
    _pins(parser)
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def _store(args: argparse.Namespace) -> tuple[KnownIssuers, str | None]:
    from .._known import KnownIssuers  # deferred: cryptography, only when the command runs
    from .._names import normalize_host  # deferred: as above (keeps --help fast)

    config = load_config(args)
    host = None
    if args.host is not None:
        try:
            host = normalize_host(args.host)
        except ValueError as e:
            raise UsageError(f"{printable(repr(args.host))} is not a host name: {e}") from None
    return KnownIssuers.for_config(config), host


def run_known(args: argparse.Namespace) -> int:
    """Exit 0 with the records (none is not an error)."""
    store, host = _store(args)
    records = store.records()
    if host is not None:
        records = {h: r for h, r in records.items() if h == host}
    if args.json:
        print(json.dumps({"ok": True, "file": str(store.path), "max_age_days": store.max_age_days,
                          "hosts": [r.to_json() for r in records.values()]}, indent=2))
    else:
        print(f"known issuers in {printable(str(store.path))}:" if records
              else f"no known issuers{' for ' + host if host else ''} in {printable(str(store.path))}")
        for record in records.values():
            print(f"{printable(record.host)}  first seen {printable(record.first_seen)}, last seen "
                  f"{printable(record.last_seen)}")
            for issuer in record.issuers:
                print(f"  sha256/{issuer.spki_sha256}: {printable(issuer.subject)}")
    return 0


def run_forget(args: argparse.Namespace) -> int:
    """Exit 0 when the record was removed, 2 when HOST had none."""
    store, host = _store(args)
    assert host is not None
    removed = store.forget(host)
    if removed is None:
        raise UsageError(f"no issuers are remembered for {host} in {printable(str(store.path))}; "
                         "nothing to forget.")
    if args.json:
        print(json.dumps({"ok": True, "forgotten": removed.to_json(), "file": str(store.path)},
                         indent=2))
    else:
        print(f"forgot {len(removed.issuers)} issuer(s) of {host}; the next connection records its "
              "issuers afresh")
    return 0
