"""Start-up stays cheap: machinery a fetch may not need is imported only when used (issue 7's
start-up target; a count of modules, not a time)."""

from __future__ import annotations

import subprocess
import sys

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
