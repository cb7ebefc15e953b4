"""Command line: ``fetch-update`` and ``pinclient <command>``.

``main(argv) -> int`` never raises for user errors: each :class:`PinclientError` becomes one
paragraph on stderr (or one JSON object with ``--json``) and its exit code. The command table is
here; each command is a module of this package (``configure_*`` fills its parser, ``run_*`` runs
it). Heavy imports happen inside the commands, so ``--version`` and ``--help`` start fast.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

from .._names import printable
from .._version import __version__
from ..errors import PinclientError, UsageError
from . import demo, fetch, known, lifecycle, pins, sign
from .common import EXIT_CODES, Runner

__all__ = ["fetch_main", "main"]

Command = tuple[str, Callable[[argparse.ArgumentParser], None], Runner]


def _commands() -> dict[str, Command]:
    """The command table: name -> (help, configure the subparser, run)."""
    return {
        "fetch": ("fetch an update through the pinned transport (same as fetch-update)",
                  fetch.configure_fetch, fetch.run_fetch),
        "demo": ("replay the 2011 Comodo attack against a throwaway local server: one update "
                 "accepted, one refused (no network)", demo.configure_demo, demo.run_demo),
        "lint": (lifecycle.LINT_HELP, lifecycle.configure_lint, lifecycle.run_lint),
        "pin": (lifecycle.PIN_HELP, lifecycle.configure_pin, lifecycle.run_pin),
        "check": (lifecycle.CHECK_HELP, lifecycle.configure_check, lifecycle.run_check),
        "known": (known.KNOWN_HELP, known.configure_known, known.run_known),
        "forget": (known.FORGET_HELP, known.configure_forget, known.run_forget),
        "keygen": ("make a minisign key pair for signing updates (compatible with minisign -G)",
                   sign.configure_keygen, sign.run_keygen),
        "sign": ("sign files with a minisign secret key: writes FILE.minisig (compatible with "
                 "minisign -S)", sign.configure_sign, sign.run_sign),
        "pins": (pins.PINS_HELP, pins.configure_pins, pins.run_pins),
    }


def _terminal(text: str) -> str:
    """Text for the terminal: its lines kept, every other control character escaped. The names in
    messages are escaped where they are made (``_x509.name_text``); this is the last line of defence
    for the rest (an HTTP reason phrase, a URL) against ESC sequences."""
    return "\n".join(printable(line) for line in text.split("\n"))


class _Printable(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return _terminal(super().format(record))


def _setup_logging(args: argparse.Namespace) -> None:
    verbose = getattr(args, "verbose", 0)
    level = logging.DEBUG if verbose > 1 else logging.INFO if verbose == 1 else logging.WARNING
    if getattr(args, "quiet", False):
        level = logging.ERROR
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Printable("pinclient: %(message)s"))
    logger = logging.getLogger("pinclient")
    logger.handlers[:] = [handler]
    logger.setLevel(level)
    logger.propagate = False


#: The exit code when stdout is closed early (``pinclient pin HOST | head -1``), as for SIGPIPE.
EXIT_BROKEN_PIPE = 141


def _report(error: PinclientError, as_json: bool) -> int:
    if as_json:
        print(json.dumps({"ok": False, **error.to_json()}, indent=2))
    else:
        print(f"{(sys.argv and Path(sys.argv[0]).name) or 'pinclient'}: {_terminal(error.message)}",
              file=sys.stderr)
    return error.exit_code


def _execute(run: Runner, args: argparse.Namespace) -> int:
    """Run a command inside the error boundary: a :class:`PinclientError` becomes its message (one
    JSON object with ``--json``) and exit code; nothing leaves as a traceback."""
    _setup_logging(args)
    as_json = bool(getattr(args, "json", False))
    try:
        try:
            code = run(args)
            sys.stdout.flush()  # a closed pipe shows here, inside the boundary, not at exit
            return code
        except PinclientError as e:
            return _report(e, as_json)
        except KeyboardInterrupt:
            if as_json:
                print(json.dumps({"ok": False, "error": "Interrupted", "exit_code": 130,
                                  "message": "interrupted"}, indent=2))
            else:
                print("interrupted", file=sys.stderr)
            return 130
    except BrokenPipeError:
        # The reader went away (`| head -1`): stop quietly. Point stdout at /dev/null so that the
        # interpreter's final flush does not print "Exception ignored … BrokenPipeError".
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return EXIT_BROKEN_PIPE
    except Exception as e:  # the last resort: a bug, said in one paragraph, the traceback with -vv
        logging.getLogger("pinclient").debug("internal error", exc_info=True)
        bug = PinclientError(f"internal error ({type(e).__name__}: {e}); this is a bug in pinclient, "
                             "please report it with the command line (-vv shows the traceback).")
        return _report(bug, as_json)


def _wants_json(argv: Sequence[str] | None) -> bool:
    """Whether ``--json`` (or an abbreviation argparse accepts) is on the command line."""
    args = sys.argv[1:] if argv is None else argv
    return any(a.startswith("--js") and "--json".startswith(a) for a in args)


class _Parser(argparse.ArgumentParser):
    """argparse with pinclient's error output: with ``--json`` a usage error is one JSON object on
    stdout (``{"ok": false, "error": "UsageError", "exit_code": 2, …}``) like every other outcome;
    without, argparse's usage line and the message, escaped for the terminal. Exit 2 either way."""

    def __init__(self, *args: Any, json_errors: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.json_errors = json_errors

    def error(self, message: str) -> NoReturn:
        if self.json_errors:
            _report(UsageError(f"{self.prog}: {message}"), True)
            raise SystemExit(2)
        self.print_usage(sys.stderr)
        self.exit(2, f"{self.prog}: error: {_terminal(message)}\n")


def fetch_main(argv: Sequence[str] | None = None) -> int:
    """``fetch-update URL [-o DEST] [--pins FILE] [--sha256 HEX] [--size BYTES] …``"""
    parser = _Parser(
        prog="fetch-update", json_errors=_wants_json(argv),
        description="Fetch an update over HTTPS, accepting it only when the verified TLS chain "
        "contains a CA pinned for the host in pins.toml, and only after its size, hash and (with "
        "signing keys) minisign signature check out. DEST is replaced atomically or left untouched.",
        epilog=EXIT_CODES, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"fetch-update (pinclient) {__version__}")
    fetch.configure_fetch(parser)
    args = parser.parse_args(argv)
    return _execute(fetch.run_fetch, args)


def main(argv: Sequence[str] | None = None) -> int:
    """``pinclient <command> …``"""
    json_errors = _wants_json(argv)
    parser = _Parser(
        prog="pinclient", json_errors=json_errors,
        description="Certificate-pinning HTTPS update client.",
        epilog=EXIT_CODES, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"pinclient {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (help_text, configure, run) in _commands().items():
        p = sub.add_parser(name, help=help_text, description=help_text, epilog=EXIT_CODES,
                           formatter_class=argparse.RawDescriptionHelpFormatter,
                           json_errors=json_errors)
        configure(p)
        p.set_defaults(_run=run)
    args: Any = parser.parse_args(argv)
    return _execute(args._run, args)
