"""What every command shares: the exit-code table, the common flags, argument types, loading the
pins file, and the :class:`~pinclient.FetchOptions` built from the download flags (in one place).

Light on purpose (argparse and the standard library only): ``--help`` and ``--version`` import this
and nothing heavy; commands import their machinery when they run.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from .._paths import given_file_exists
from .._sizes import ascii_decimal, parse_size
from ..errors import UsageError

if TYPE_CHECKING:
    from .._download.options import FetchOptions
    from ..config import PinConfig

__all__ = [
    "EXIT_CODES",
    "HeaderAction",
    "Runner",
    "add_common",
    "byte_count",
    "count",
    "exact_bytes",
    "fetch_options",
    "header",
    "load_config",
    "seconds",
    "wait",
]

EXIT_CODES = """\
exit codes:
  0  ok
  2  usage or pins-file error
  3  pin violation: unexpected issuer, blocked certificate, unpinned host refused,
     issuer changed on a remembered host (unpinned = "remember")
  4  revoked certificate, or (revocation = "hard-fail") its status could not
     be established
  5  integrity: size, hash or signature mismatch, a missing signature, or a
     signed manifest that expired or is older than --installed-version
  6  network or TLS failure: untrusted/expired/wrong-host certificate, refused
     connection, timeout, deadline or minimum rate missed, HTTP error status
     (after --retries)
  7  the destination could not be written (disk full, permissions), or another
     process kept it locked past --lock-timeout
  141  stdout was closed before the output was written (e.g. | head -1)
"""

Runner = Callable[[argparse.Namespace], int]


def add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--pins", metavar="FILE",
                        help="pins file (default: $PINCLIENT_PINS, then ./pins.toml)")
    parser.add_argument("--ca-bundle", metavar="FILE",
                        help="PEM trust bundle, or \"system\" for the operating system's (truststore), "
                        "overriding defaults.ca_bundle in the pins file")
    parser.add_argument("--json", action="store_true", help="print one JSON object (result or error)")
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="log decisions (-v) and verified chains (-vv) to stderr")
    parser.add_argument("-q", "--quiet", action="store_true",
                        help="print nothing but errors (and no progress bar)")


def load_config(args: argparse.Namespace) -> PinConfig:
    """The pins file named by --pins, $PINCLIENT_PINS or ./pins.toml, with --ca-bundle applied.

    Raises:
        PinsFileError / UsageError: missing or invalid (a missing file is never an unpinned fetch).
    """
    from .._systemtrust import SYSTEM_TRUST, system_trust_refusal  # deferred: with load_pins
    from ..config import load_pins  # deferred: cryptography, only when a command runs

    chosen = args.pins or os.environ.get("PINCLIENT_PINS") or "pins.toml"
    path = Path(chosen)
    if not given_file_exists(path, "pins file"):
        origin = ("--pins" if args.pins else "$PINCLIENT_PINS" if os.environ.get("PINCLIENT_PINS")
                  else "the default ./pins.toml")
        raise UsageError(f"pins file {str(path)!r} (from {origin}) does not exist. pinclient never "
                         "fetches without pins: pass --pins FILE or set PINCLIENT_PINS.")
    config = load_pins(path)
    if getattr(args, "ca_bundle", None) == SYSTEM_TRUST:  # truststore; refused where it cannot pin
        refusal = system_trust_refusal(platform.system())
        if refusal is not None:
            raise UsageError(f"--ca-bundle system: {refusal}")
        return dataclasses.replace(config, defaults=dataclasses.replace(config.defaults,
                                                                        ca_bundle=SYSTEM_TRUST))
    if getattr(args, "ca_bundle", None):
        bundle = Path(args.ca_bundle)
        if not given_file_exists(bundle, "--ca-bundle"):
            raise UsageError(f"--ca-bundle {args.ca_bundle!r} is not a readable file.")
        config = dataclasses.replace(
            config, defaults=dataclasses.replace(config.defaults, ca_bundle=str(bundle.resolve())))
    return config


#: The longest wait a flag may ask for (a year): longer, or ``inf``/``1e400``, overflows the
#: platform's time_t in the socket layer instead of meaning "forever".
MAX_SECONDS = 365 * 24 * 3600
#: The largest byte count (an ``off_t``): file sizes and offsets cannot be larger.
MAX_BYTES = 2**63 - 1
#: The most retries or redirects: more is a typo, and each one is a wait.
MAX_COUNT = 1000


def seconds(text: str) -> float:
    """A positive, finite number of seconds, at most :data:`MAX_SECONDS` (``nan``, ``inf``, ``0``
    and ``-1`` are usage errors, never a traceback from the socket layer)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not value > 0:  # also nan
        raise argparse.ArgumentTypeError(f"{text!r}: must be more than 0 seconds")
    if not value <= MAX_SECONDS:  # also inf, and 1e400 (which float() reads as inf)
        raise argparse.ArgumentTypeError(f"{text!r}: must be at most {MAX_SECONDS} seconds (a year)")
    return value


def byte_count(text: str) -> int:
    """A byte count as :func:`pinclient._sizes.parse_size` reads it, at most :data:`MAX_BYTES`."""
    try:
        value = parse_size(text)
    except OverflowError:  # 400 digits: float() of it is inf
        value = MAX_BYTES + 1
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    if value > MAX_BYTES:
        raise argparse.ArgumentTypeError(f"{text[:40]!r}…: more than {MAX_BYTES} bytes"
                                         if len(text) > 40 else f"{text!r}: more than {MAX_BYTES} bytes")
    return value


def exact_bytes(text: str) -> int:
    """A whole number of bytes (``--size``), ASCII digits only, at most :data:`MAX_BYTES`."""
    number = ascii_decimal(text)
    if number is None:
        raise argparse.ArgumentTypeError(f"{text[:40]!r} is not a whole number of bytes")
    if number > MAX_BYTES:
        raise argparse.ArgumentTypeError(f"{text[:40]!r}…: more than {MAX_BYTES} bytes")
    return number


def wait(text: str) -> float:
    return 0.0 if text.strip() in ("0", "0.0") else seconds(text)


def count(text: str) -> int:
    number = ascii_decimal(text)  # not isdigit(): int("²") raises ValueError
    if number is None:
        raise argparse.ArgumentTypeError(f"{text[:40]!r} is not a whole number >= 0")
    if number > MAX_COUNT:
        raise argparse.ArgumentTypeError(f"{text[:40]!r}: at most {MAX_COUNT}")
    return number


def header(text: str) -> tuple[str, str]:
    name, colon, value = text.partition(":")
    if not colon or not name.strip():
        raise argparse.ArgumentTypeError(f"{text!r} is not 'Name: value'")
    return name.strip(), value.strip()


class HeaderAction(argparse.Action):
    """``--header 'Name: value'``, repeatable, collected into a dict (a later one replaces an earlier
    one of the same name, as FetchOptions does)."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: object, option_string: str | None = None) -> None:
        headers = dict(getattr(namespace, self.dest, None) or {})
        assert isinstance(values, tuple)  # header() made it
        headers[str(values[0])] = str(values[1])
        setattr(namespace, self.dest, headers)


def fetch_options(args: argparse.Namespace) -> FetchOptions:
    """The :class:`~pinclient.FetchOptions` the download flags ask for: each flag's ``dest`` is a
    field's name, and a flag not given leaves the field's default (``fetch.add_download_options``).

    Raises:
        UsageError: a combination FetchOptions refuses.
    """
    from .._download.options import FetchOptions  # deferred with the download machinery

    given = {f.name: getattr(args, f.name) for f in dataclasses.fields(FetchOptions) if hasattr(args, f.name)}
    return FetchOptions(**given)
