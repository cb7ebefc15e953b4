"""Fuzz the command line: ``pinclient …`` and ``fetch-update …`` with arbitrary argv.

    .venv/bin/python fuzz/fuzz_cli.py fuzz/corpus/cli -max_total_time=300

The property: ``main(argv)`` / ``fetch_main(argv)`` returns an exit code, or argparse exits with
SystemExit(0) (--help, --version) or SystemExit(2) (bad arguments). Any other exception is a crash:
a user would see a traceback.

The network is switched off (name resolution and every connect raise OSError, so a fetch that gets
that far ends as NetworkError, exit 6), and each input runs in a scratch folder, with or without a
valid pins.toml there or in $PINCLIENT_PINS; time.sleep does not wait (retry back-off). ``demo``
(which starts a server) and the minisign commands that may prompt for a password are not run.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
import time
import traceback

sys.path.insert(0, os.path.dirname(__file__))

import _common

_common.instrument_pinclient()
_common.disable_network()
# Retries back off with time.sleep (2 s per failed fetch); the waiting is not what is fuzzed.
time.sleep = lambda seconds: None

import atheris

from pinclient import cli

FOLDER = _common.scratch()
EMPTY = FOLDER / "empty"
SKIP = {"demo", "keygen", "sign"}

TOKENS = [
    # commands and flags
    "fetch", "lint", "pin", "check", "verify", "--pins", "-o", "--output", "--sha256", "--size",
    "--ca-bundle", "--json", "-v", "-vv", "-q", "--quiet", "--version", "--help", "-h", "--strict",
    "--against", "--pem", "--timeout", "--jobs", "-j", "--revocation", "--resume", "--proxy",
    "--report-only", "--sig", "--pubkey", "--manifest", "--", "-",
    # values
    "pins.toml", "bad.toml", "missing.toml", "bundle.pem", "cert.pem", "empty", "out.bin", "/", ".",
    "https://updates.test/u.bin", "https://updates.test/", "https://UPDATES.test./a", "https://x.cdn.test/a",
    "https://other.test/a", "http://updates.test/a", "https://[::1/", "https://updates.test:99999/a",
    "https://updates.test:x/a", "https://", "https:///a", "ftp://a/b", "https://straße.test/a",
    "https://a..b/", "https://[::1]:8443/u.bin", "updates.test", "updates.test:443", "updates.test:0",
    "0" * 64, "sha256:" + "a" * 64, "zz", "0", "-1", "10", "1e9", "nan", "inf", "-0", "99999999999999999999",
    "hard-fail", "soft-fail", "off", "enforce", "report-only", "\x00", "é", "",
]


def argv_from(fdp: atheris.FuzzedDataProvider) -> list[str]:
    argv = []
    for _ in range(fdp.ConsumeIntInRange(0, 8)):
        if fdp.ConsumeIntInRange(0, 9) < 8:
            argv.append(TOKENS[fdp.ConsumeIntInRange(0, len(TOKENS) - 1)])
        else:
            argv.append(fdp.ConsumeUnicodeNoSurrogates(fdp.ConsumeIntInRange(0, 40)))
    return argv


def test_one_input(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    entry = fdp.ConsumeIntInRange(0, 1)
    where = fdp.ConsumeIntInRange(0, 2)  # no pins file / ./pins.toml / $PINCLIENT_PINS
    argv = argv_from(fdp)
    if argv and argv[0] in SKIP:
        return
    os.environ.pop("PINCLIENT_PINS", None)
    if where == 2:
        os.environ["PINCLIENT_PINS"] = str(FOLDER / "pins.toml")
    old = os.getcwd()
    os.chdir(FOLDER if where == 1 else EMPTY)
    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
            code = (cli.main if entry == 0 else cli.fetch_main)(argv)
        if not isinstance(code, int) or not 0 <= code <= 7:
            raise AssertionError(f"exit code {code!r} for {argv!r}")
    except SystemExit as e:
        if e.code not in (0, 2):
            raise AssertionError(f"SystemExit({e.code!r}) for {argv!r}") from e
    except BaseException as e:
        trace = traceback.format_exc()
        output = out.getvalue()[-2000:]
        raise AssertionError(f"{type(e).__name__} for argv {argv!r}:\n{trace}\n{output}") from e
    finally:
        os.chdir(old)


if __name__ == "__main__":
    _common.main(test_one_input)
