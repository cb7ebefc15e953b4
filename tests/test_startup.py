"""Start-up stays cheap: machinery a fetch may not need is imported only when used (issue 7's
start-up target; a count of modules, not a time)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from .conftest import PKI, ServeHTTPS, pinset, write_pins

OPTIONAL = ("pinclient._revocation.verify", "pinclient._revocation.checker", "pinclient.minisign")


def _loaded(code: str) -> list[str]:
    probe = f"{code}\nimport sys\nprint(','.join(m for m in {OPTIONAL!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True,
                         timeout=60).stdout.strip()
    return [m for m in out.split(",") if m]


def test_transport_and_download_do_not_import_revocation_or_minisign() -> None:
    assert _loaded("import pinclient.transport, pinclient._download.fetch, pinclient._cli.main") == []


def test_loading_pins_without_signing_keys_does_not_import_minisign() -> None:
    code = ("import pinclient\n"
            "pinclient.parse_pins('version = 1\\n[defaults]\\nunpinned = \"allow\"\\n')")
    assert _loaded(code) == []


def test_an_unsigned_fetch_does_not_import_minisign(pki: PKI, tmp_path: Path,
                                                    https_server: ServeHTTPS) -> None:
    # A real fetch over loopback TLS, in a fresh interpreter, through the library and the CLI: no
    # signature asked for and no signing keys in the pins, so minisign (~12 ms) stays unloaded.
    pins = write_pins(tmp_path / "cfg", pinset("loopback", ["127.0.0.1"],
                                               f'{{ spki_sha256 = "{pki.pin_of(pki.pinned_root)}" }}'),
                      bundle=pki.bundle)
    with https_server({"/u": b"payload"}, host="127.0.0.1") as s:
        url = s.url("/u", host="127.0.0.1")
        code = (f"import pinclient\n"
                f"pinclient.fetch_update({url!r}, {str(tmp_path / 'a')!r}, "
                f"config=pinclient.load_pins({str(pins)!r}))\n"
                f"from pinclient._cli.main import fetch_main\n"
                f"assert fetch_main([{url!r}, '--pins', {str(pins)!r}, '-o', {str(tmp_path / 'b')!r}, "
                f"'-q']) == 0\n")
        assert _loaded(code) == []
    assert (tmp_path / "a").read_bytes() == (tmp_path / "b").read_bytes() == b"payload"
