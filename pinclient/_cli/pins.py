"""``pinclient pins update|show|sign``: signed pins updates (see :mod:`pinclient._pinsupdate`).

``update`` fetches ``[update] url`` and its ``.minisig`` through the active pins and stores a newer,
validly signed document in the state folder; ``show`` says which document is active; ``sign`` is
the publisher's side: it lints the file, refuses one no client would accept, and writes
``PINS.minisig`` (prehashed).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
from pathlib import Path
from typing import TYPE_CHECKING

from .._names import printable
from ..errors import UsageError
from .common import add_common, load_config, seconds

if TYPE_CHECKING:
    from .._pinsupdate import PinsStatus

PINS_HELP = "signed pins updates: update the pins from [update] url, show which pins are active, sign"

PINS_EXIT_CODES = """\
exit codes (pins update):
  0  updated, or already current
  2  usage or pins-file error (no [update] table)
  3  pin violation: the update server's chain is not pinned
  5  the update is refused: bad or missing signature, not by a current key,
     a rollback (serial not higher), expired, or not a valid pins file
  6  network failure
  7  the state folder could not be written
"""


def configure_pins(parser: argparse.ArgumentParser) -> None:
    json_errors = bool(getattr(parser, "json_errors", False))
    sub = parser.add_subparsers(dest="pins_command", metavar="ACTION", required=True)
    kind = argparse.RawDescriptionHelpFormatter
    update = sub.add_parser("update", help="fetch [update] url and its .minisig; store a newer signed "
                            "document", description=UPDATE_HELP, epilog=PINS_EXIT_CODES,
                            formatter_class=kind, json_errors=json_errors)
    _pins_file(update)
    update.add_argument("--deadline", metavar="SECONDS", type=seconds, default=60.0,
                        help="give up when both requests together take longer (default: %(default)s)")
    show = sub.add_parser("show", help="which pins document is active (shipped or updated)",
                          description=SHOW_HELP, formatter_class=kind, json_errors=json_errors)
    _pins_file(show)
    sign = sub.add_parser("sign", help="lint PINS and write PINS.minisig for publishing",
                          description=SIGN_HELP, formatter_class=kind, json_errors=json_errors)
    sign.add_argument("pins_file", metavar="PINS", help="the pins file to publish")
    sign.add_argument("--secret-key", metavar="KEY", required=True,
                      help="minisign secret key file (password from $PINCLIENT_KEY_PASSWORD, else asked)")
    sign.add_argument("--json", action="store_true", help="print one JSON object")
    sign.add_argument("-v", "--verbose", action="count", default=0, help=argparse.SUPPRESS)
    sign.add_argument("-q", "--quiet", action="store_true", help="print nothing but errors")


UPDATE_HELP = ("Fetch the pins file's [update] url and url.minisig through the pins active now, and "
               "accept the document only when it is signed (prehashed) by one of the active "
               "[update] signing_keys, is a valid pins file, has a higher serial and an expires in "
               "the future. It is stored in the state folder and used from then on.")
SHOW_HELP = ("Print which pins document is active for PINS (the shipped file or a stored signed "
             "update), its serial, expiry, origin URL and when updates were last checked.")
SIGN_HELP = ("Check PINS as a pins update (it must lint without errors and have serial and a future "
             "expires) and write PINS.minisig, a prehashed minisign signature, next to it.")


def _pins_file(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("pins_file", metavar="PINS", nargs="?", default=None,
                        help="pins file (default: --pins, $PINCLIENT_PINS, then ./pins.toml)")
    add_common(parser)


def _config_args(args: argparse.Namespace) -> argparse.Namespace:
    if args.pins_file is not None and args.pins is not None:
        raise UsageError("give the pins file once: as PINS or as --pins")
    return argparse.Namespace(**{**vars(args), "pins": args.pins_file or args.pins})


def run_pins(args: argparse.Namespace) -> int:
    """Run ``pins update``, ``show`` or ``sign``. Raises as the action does."""
    run = {"update": _run_update, "show": _run_show, "sign": _run_sign}[args.pins_command]
    return run(args)


def _run_update(args: argparse.Namespace) -> int:
    from .._pinsupdate import refresh  # deferred: urllib3 and the transport, not for --help

    config = load_config(_config_args(args))
    result = refresh(config, deadline=args.deadline)
    if args.json:
        print(json.dumps(result.to_json(), indent=2))
    elif not args.quiet:
        if result.status == "updated":
            print(f"pins updated: serial {result.previous_serial} -> {result.serial} from "
                  f"{printable(result.url)} (signed by key {result.signer}); stored in {result.stored}")
        else:
            print(f"pins already current: serial {result.serial} (checked {printable(result.url)})")
    return 0


def _run_show(args: argparse.Namespace) -> int:
    from .._pinsupdate import pins_status  # deferred: as above

    status = pins_status(load_config(_config_args(args)))
    if args.json:
        print(json.dumps(status.to_json(), indent=2))
        return 0
    for line in _show_lines(status):
        print(line)
    return 0


def _show_lines(status: PinsStatus) -> list[str]:
    def text(value: object) -> str:
        return printable(str(value)) if value is not None else "-"

    expires = text(status.expires) + (" (EXPIRED)" if status.expired else "")
    lines = [f"pins file:     {text(status.path)} (serial {status.shipped_serial})",
             f"active:        {status.active} (serial {status.serial})"]
    if status.active == "updated":
        lines.append(f"origin:        {text(status.origin)}")
        lines.append(f"stored in:     {text(status.stored)}")
    lines += [f"expires:       {expires}", f"update url:    {text(status.update_url)}",
              f"last checked:  {text(status.last_checked)}"]
    return lines


def _run_sign(args: argparse.Namespace) -> int:
    from .. import minisign  # deferred: cryptography, not for --help
    from .._lint import lint  # deferred: as above
    from ..config import parse_pins  # deferred: as above
    from .sign import _load_secret_key

    path = Path(args.pins_file)
    try:
        data = path.read_bytes()
    except (OSError, ValueError) as e:
        raise UsageError(f"cannot read {str(path)!r}: {getattr(e, 'strerror', None) or e}") from None
    config = parse_pins(data, path=path)  # the file itself, never a stored update
    today = dt.datetime.now(dt.timezone.utc).date()
    errors = [f for f in lint(config, today=today) if f.severity == "error"]
    problems = [f"{f.format()}" for f in errors]
    if config.serial < 1:
        problems.append("no serial: a pins update needs serial = N, higher than the one clients have")
    if config.expires is None:
        problems.append("no expires: a pins update needs expires = YYYY-MM-DD (clients refuse one "
                        "without it)")
    elif config.expires <= today:
        problems.append(f"expires = {config.expires.isoformat()} has passed; clients would refuse it")
    if problems:
        raise UsageError(f"refusing to sign {str(path)!r}:\n  " + "\n  ".join(problems))
    key = _load_secret_key(args.secret_key)
    signature = minisign.sign(key, data, trusted_comment=f"pins serial {config.serial} "
                              f"expires {config.expires}", prehash=True)
    sig_path = str(path) + ".minisig"
    try:
        minisign._write_file(sig_path, signature, mode=0o644, force=True)
    except OSError as e:
        raise UsageError(f"cannot write {sig_path}: {e.strerror}") from e
    if args.json:
        print(json.dumps({"ok": True, "file": str(path), "signature": sig_path, "serial": config.serial,
                          "key_id": key.key_id_hex}, indent=2))
    elif not args.quiet:
        print(f"{sig_path} (serial {config.serial}, key id {key.key_id_hex})")
    return 0

