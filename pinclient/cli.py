"""Command line: ``fetch-update`` and ``pinclient <command>``.

``main(argv) -> int`` never raises for user errors: each :class:`PinclientError` becomes one
paragraph on stderr (or one JSON object with ``--json``) and its exit code. Heavy imports happen
inside the commands, so ``--version`` and ``--help`` start fast.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._version import __version__
from .errors import PinclientError, UsageError

if TYPE_CHECKING:
    from .config import PinConfig
    from .download import FetchResult

__all__ = ["fetch_main", "main"]

EXIT_CODES = """\
exit codes:
  0  ok
  2  usage or pins-file error
  3  pin violation: unexpected issuer, blocked certificate, unpinned host refused
  4  revoked certificate, or (revocation = "hard-fail") its status could not
     be established
  5  integrity: size, hash or signature mismatch, a missing signature, or a
     signed manifest that expired or is older than --installed-version
  6  network or TLS failure: untrusted/expired/wrong-host certificate, refused
     connection, timeout, deadline or minimum rate missed, HTTP error status
     (after --retries)
  7  the destination could not be written (disk full, permissions), or another
     process kept it locked past --lock-timeout
"""

Runner = Callable[[argparse.Namespace], int]


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--pins", metavar="FILE",
                        help="pins file (default: $PINCLIENT_PINS, then ./pins.toml)")
    parser.add_argument("--ca-bundle", metavar="FILE",
                        help="PEM trust bundle, overriding defaults.ca_bundle in the pins file")
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
    import dataclasses

    from .config import load_pins

    chosen = args.pins or os.environ.get("PINCLIENT_PINS") or "pins.toml"
    path = Path(chosen)
    if not path.is_file():
        origin = ("--pins" if args.pins else "$PINCLIENT_PINS" if os.environ.get("PINCLIENT_PINS")
                  else "the default ./pins.toml")
        raise UsageError(f"pins file {str(path)!r} (from {origin}) does not exist. pinclient never "
                         "fetches without pins: pass --pins FILE or set PINCLIENT_PINS.")
    config = load_pins(path)
    if getattr(args, "ca_bundle", None):
        bundle = Path(args.ca_bundle)
        if not bundle.is_file():
            raise UsageError(f"--ca-bundle {args.ca_bundle!r} is not a readable file.")
        config = dataclasses.replace(
            config, defaults=dataclasses.replace(config.defaults, ca_bundle=str(bundle.resolve())))
    return config


# ------------------------------------------------------------------------- fetch


def configure_fetch(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("url", metavar="URL", nargs="?",
                        help="https:// URL of the update (or give --manifest URL instead)")
    parser.add_argument("-o", "--output", metavar="DEST",
                        help="where to save it (default: the URL's file name in this folder)")
    parser.add_argument("--sha256", metavar="HEX", help="expected SHA-256 of the payload")
    parser.add_argument("--size", metavar="BYTES", type=int, help="expected exact size in bytes")
    parser.add_argument("--revocation", choices=("off", "soft-fail", "hard-fail"), metavar="MODE",
                        help="revocation checking (OCSP/CRL) for every host: off, soft-fail or "
                        "hard-fail, overriding `revocation` in the pins file")
    _add_signature_options(parser)
    _add_download_options(parser)
    _add_common(parser)


def _add_signature_options(parser: argparse.ArgumentParser) -> None:
    """README's "Signed updates": minisign signatures and signed manifests."""
    g = parser.add_argument_group("signed updates")
    g.add_argument("--signature", metavar="URL|FILE",
                   help="the minisign signature of the payload (of the manifest, with --manifest); "
                   "default when signing keys apply: URL.minisig, fetched through the pins")
    g.add_argument("--signing-key", metavar="RW...", action="append", dest="signing_keys",
                   help="minisign public key that must have signed it (repeatable); replaces the "
                   "pinset's signing_keys")
    g.add_argument("--manifest", metavar="URL",
                   help="fetch the update named by this signed JSON manifest (URL.minisig must "
                   "verify), checking its size, hash and expiry")
    g.add_argument("--installed-version", metavar="VERSION",
                   help="with --manifest: refuse an older version (rollback); fetch nothing when "
                   "the manifest offers this one")
    g.add_argument("--manifest-name", metavar="NAME",
                   help="with --manifest: refuse a manifest whose name is not NAME")


def _check_fetch_args(args: argparse.Namespace) -> None:
    """URL or --manifest, and the options that only make sense with one of them."""
    if args.manifest:
        if args.url:
            raise UsageError("give the update's URL or --manifest URL, not both.")
        for flag, value in (("--sha256", args.sha256), ("--size", args.size)):
            if value is not None:
                raise UsageError(f"{flag} comes from the signed manifest; it cannot be given with "
                                 "--manifest.")
        return
    if not args.url:
        raise UsageError("give the update's URL, or --manifest URL.")
    for flag, value in (("--installed-version", args.installed_version),
                        ("--manifest-name", args.manifest_name)):
        if value is not None:
            raise UsageError(f"{flag} needs --manifest.")


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not value > 0:
        raise argparse.ArgumentTypeError("must be more than 0 seconds")
    return value


def _bytes(text: str) -> int:
    from ._sizes import parse_size

    try:
        return parse_size(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _wait(text: str) -> float:
    return 0.0 if text.strip() in ("0", "0.0") else _seconds(text)


def _count(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number >= 0")
    return int(text)


def _header(text: str) -> tuple[str, str]:
    name, colon, value = text.partition(":")
    if not colon or not name.strip():
        raise argparse.ArgumentTypeError(f"{text!r} is not 'Name: value'")
    return name.strip(), value.strip()


def _add_download_options(parser: argparse.ArgumentParser) -> None:
    """The download options of README's "Downloads" section; defaults live in pinclient.download."""
    g = parser.add_argument_group("download options")
    g.add_argument("--max-size", metavar="SIZE", type=_bytes,
                   help="refuse a body larger than this (e.g. 500MiB; default: the pinset's or "
                   "[defaults] max_size, else 4GiB)")
    proxies = g.add_mutually_exclusive_group()
    proxies.add_argument("--proxy", metavar="URL",
                         help="tunnel through this http:// or https:// proxy (default: $HTTPS_PROXY "
                         "/ $https_proxy, minus $NO_PROXY hosts); the pins still apply to the origin")
    proxies.add_argument("--no-proxy", action="store_true",
                         help="connect directly, ignoring the environment")
    g.add_argument("--no-resume", action="store_true",
                   help="do not continue an interrupted download (DEST.part); start from byte 0")
    g.add_argument("--retries", metavar="N", type=_count, default=3,
                   help="retries after connection errors, broken bodies, 429 and 5xx (default 3); "
                   "pin, TLS, 4xx and integrity failures are never retried")
    g.add_argument("--connect-timeout", metavar="SECONDS", type=_seconds, default=15.0,
                   help="give up connecting after this long (default 15)")
    g.add_argument("--read-timeout", metavar="SECONDS", type=_seconds, default=30.0,
                   help="give up when no byte arrives for this long (default 30)")
    g.add_argument("--deadline", metavar="SECONDS", type=_seconds,
                   help="give up when the whole fetch, retries included, takes longer (default: none)")
    g.add_argument("--min-rate", metavar="BYTES", type=_bytes, default=1024,
                   help="abort when the rate averaged over 30 s falls below this many bytes/s "
                   "(default 1KiB; 0 turns it off)")
    g.add_argument("--max-redirects", metavar="N", type=_count, default=5,
                   help="follow at most N https redirects (default 5)")
    g.add_argument("--header", metavar="'NAME: VALUE'", type=_header, action="append", default=[],
                   help="add a request header (repeatable); User-Agent is pinclient/VERSION unless set")
    g.add_argument("--lock-timeout", metavar="SECONDS", type=_wait, default=60.0,
                   help="wait this long for another process fetching to the same DEST (default 60; "
                   "0 fails at once)")


def _download_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "max_size": args.max_size,
        "proxy": False if args.no_proxy else args.proxy,
        "resume": not args.no_resume,
        "retries": args.retries,
        "connect_timeout": args.connect_timeout,
        "read_timeout": args.read_timeout,
        "deadline": args.deadline,
        "min_rate": args.min_rate,
        "max_redirects": args.max_redirects,
        "headers": dict(args.header),
        "lock_timeout": args.lock_timeout,
    }


def _default_dest(url: str) -> str:
    from urllib.parse import unquote, urlsplit

    try:
        name = Path(unquote(urlsplit(url).path)).name
    except ValueError:  # "https://[::1/" (fuzz/fuzz_cli.py)
        raise UsageError(f"{url!r} is not a URL.") from None
    if not name or name in (".", ".."):
        raise UsageError(f"cannot derive a file name from {url!r}; pass -o DEST.")
    return name


def run_fetch(args: argparse.Namespace) -> int:
    from .download import fetch_update

    _check_fetch_args(args)
    config = load_config(args)
    if args.revocation:
        from ._revocation_hook import override_revocation

        config = override_revocation(config, args.revocation)
    if args.manifest:
        from ._cmd_manifest import run_manifest

        return run_manifest(args, config)
    dest = args.output or _default_dest(args.url)
    from ._progress import progress_bar

    bar = progress_bar(quiet=args.quiet)
    try:
        result = fetch_update(args.url, dest, config=config, sha256=args.sha256, size=args.size,
                              signature=args.signature, signing_keys=args.signing_keys,
                              progress=bar, **_download_kwargs(args))
    finally:
        if bar is not None:
            bar.close()
    if args.json:
        print(json.dumps(result.to_json(), indent=2))
    elif not args.quiet:
        print_saved(result)
    return 0


def print_saved(result: FetchResult) -> None:
    """What ``fetch-update`` prints after a verified download."""
    print(f"saved {result.dest} ({result.size} bytes, sha256 {result.sha256})")
    print(f"  from {result.url}")
    if result.report_only:
        print(f'  PINS VIOLATED ({result.pin_result}) but not enforced: pinset '
              f'"{result.pinset or "(none)"}" is in report-only mode; verified chain (leaf first):')
    elif result.pinset:
        print(f'  pinset "{result.pinset}" matched; verified chain (leaf first):')
    else:
        print("  no pinset (unpinned = \"allow\"); verified chain (leaf first):")
    for entry in result.chain:
        print(f"    {entry.describe()}")
    if result.signature is not None:
        sig = result.signature
        print(f"  minisign signature by key {sig.key_id_hex} verified"
              f"{'' if sig.prehashed else ' (legacy)'}; trusted comment: {sig.trusted_comment}")


# ------------------------------------------------------------------------- demo


def configure_demo(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="also log pin decisions (-v) and verified chains (-vv) to stderr")
    parser.add_argument("-q", "--quiet", action="store_true",
                        help="print nothing unless the demo misbehaves")


def run_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo as demo

    def say(text: str) -> None:
        if not args.quiet:
            print(text, flush=True)

    def warn(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    return demo(say, warn)


# ------------------------------------------------------------------------- plumbing


def _commands() -> dict[str, tuple[str, Callable[[argparse.ArgumentParser], None], Runner]]:
    return {
        "fetch": ("fetch an update through the pinned transport (same as fetch-update)",
                  configure_fetch, run_fetch),
        "demo": ("replay the 2011 Comodo attack against a throwaway local server: one update "
                 "accepted, one refused (no network)", configure_demo, run_demo),
        **_lifecycle_commands(),
        **_signing_commands(),
    }


def _signing_commands() -> dict[str, tuple[str, Callable[[argparse.ArgumentParser], None], Runner]]:
    from . import _cmd_sign as sg  # light: argparse glue only; minisign is imported on run

    return {
        "keygen": ("make a minisign key pair for signing updates (compatible with minisign -G)",
                   sg.configure_keygen, sg.run_keygen),
        "sign": ("sign files with a minisign secret key: writes FILE.minisig (compatible with "
                 "minisign -S)", sg.configure_sign, sg.run_sign),
    }


def _lifecycle_commands() -> dict[str, tuple[str, Callable[[argparse.ArgumentParser], None], Runner]]:
    from . import _cmd_lifecycle as lc  # light: argparse glue only; the work is imported on run

    return {
        "lint": (lc.LINT_HELP, lc.configure_lint, lc.run_lint),
        "pin": (lc.PIN_HELP, lc.configure_pin, lc.run_pin),
        "check": (lc.CHECK_HELP, lc.configure_check, lc.run_check),
    }


def _setup_logging(args: argparse.Namespace) -> None:
    verbose = getattr(args, "verbose", 0)
    level = logging.DEBUG if verbose > 1 else logging.INFO if verbose == 1 else logging.WARNING
    if getattr(args, "quiet", False):
        level = logging.ERROR
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("pinclient: %(message)s"))
    logger = logging.getLogger("pinclient")
    logger.handlers[:] = [handler]
    logger.setLevel(level)
    logger.propagate = False


def _execute(run: Runner, args: argparse.Namespace) -> int:
    _setup_logging(args)
    try:
        return run(args)
    except PinclientError as e:
        if getattr(args, "json", False):
            print(json.dumps({"ok": False, **e.to_json()}, indent=2))
        else:
            print(f"{(sys.argv and Path(sys.argv[0]).name) or 'pinclient'}: {e.message}",
                  file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def fetch_main(argv: Sequence[str] | None = None) -> int:
    """``fetch-update URL [-o DEST] [--pins FILE] [--sha256 HEX] [--size BYTES] …``"""
    parser = argparse.ArgumentParser(
        prog="fetch-update",
        description="Fetch an update over HTTPS, accepting it only when the verified TLS chain "
        "contains a CA pinned for the host in pins.toml, and only after its size, hash and (with "
        "signing keys) minisign signature check out. DEST is replaced atomically or left untouched.",
        epilog=EXIT_CODES, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"fetch-update (pinclient) {__version__}")
    configure_fetch(parser)
    args = parser.parse_args(argv)
    return _execute(run_fetch, args)


def main(argv: Sequence[str] | None = None) -> int:
    """``pinclient <command> …``"""
    parser = argparse.ArgumentParser(
        prog="pinclient",
        description="Certificate-pinning HTTPS update client.",
        epilog=EXIT_CODES, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"pinclient {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (help_text, configure, run) in _commands().items():
        p = sub.add_parser(name, help=help_text, description=help_text, epilog=EXIT_CODES,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        configure(p)
        p.set_defaults(_run=run)
    args: Any = parser.parse_args(argv)
    return _execute(args._run, args)
