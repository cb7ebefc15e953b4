"""The "pinclient" logger: decisions at INFO, verified chains at DEBUG; the CLI's -v, -vv and -q."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from pinclient import PinViolation, fetch_update
from pinclient._cli.main import fetch_main, main
from pinclient.config import PinConfig

from .conftest import HOST, PKI, ServeHTTPS, pinset, write_pins


def test_library_logs_decisions_at_info_and_chains_at_debug(pki: PKI, root_pinned_config: PinConfig,
                                                           tmp_path: Path, payload: bytes,
                                                           caplog: pytest.LogCaptureFixture,
                                                           https_server: ServeHTTPS) -> None:
    caplog.set_level(logging.DEBUG, logger="pinclient")
    with https_server({"/update.bin": payload}) as server:
        fetch_update(server.url("/update.bin"), tmp_path / "u", config=root_pinned_config)
    with https_server({"/update.bin": payload}, issuer=pki.rogue_root) as rogue:
        with pytest.raises(PinViolation):
            fetch_update(rogue.url("/update.bin"), tmp_path / "u", config=root_pinned_config)
    records = [(r.name, r.levelno, r.getMessage()) for r in caplog.records]
    assert ("pinclient", logging.INFO,
            f"accepted {HOST}:{server.port} (pinned, pinset example-updates)") in records
    assert ("pinclient", logging.INFO, f"refused {HOST}:{rogue.port} (unexpected-issuer)") in records
    debug = [m for _, level, m in records if level == logging.DEBUG]
    assert any("CN=Example Root R1" in m and pki.pin_of(pki.pinned_root) in m for m in debug)
    assert any("CN=UTN-USERFirst-Hardware" in m for m in debug)
    # Chains are never logged above DEBUG.
    assert not [m for _, level, m in records if level > logging.DEBUG and "sha256/" in m]


@pytest.fixture
def pins_file(pki: PKI, tmp_path: Path) -> Path:
    body = pinset("example-updates", [HOST], f'{{ spki_sha256 = "{pki.pin_of(pki.pinned_root)}" }}')
    return write_pins(tmp_path / "cfg", body, bundle=pki.bundle)


@pytest.mark.parametrize("entry", ["fetch-update", "pinclient fetch"])
def test_cli_verbosity_flags(pins_file: Path, tmp_path: Path, payload: bytes,
                             capsys: pytest.CaptureFixture[str], entry: str,
                             https_server: ServeHTTPS) -> None:
    def run(*flags: str) -> tuple[int, str, str]:
        argv = [server.url("/update.bin"), "-o", str(tmp_path / "u.bin"), "--pins", str(pins_file), *flags]
        code = fetch_main(argv) if entry == "fetch-update" else main(["fetch", *argv])
        out, err = capsys.readouterr()
        return code, out, err

    with https_server({"/update.bin": payload}) as server:
        code, out, err = run()
        assert (code, err) == (0, "")
        assert out.startswith("saved ")
        code, out, err = run("-v")
        assert code == 0
        assert f"pinclient: accepted {HOST}:{server.port} (pinned, pinset example-updates)" in err
        assert "CN=Example Root R1" not in err, "-v logs decisions, not chains"
        code, out, err = run("-vv")
        assert code == 0
        assert "CN=Example Root R1" in err
        assert "CN=Example Issuing CA 2" in err
        code, out, err = run("-q")
        assert (code, out, err) == (0, "", "")


def test_cli_quiet_still_prints_the_refusal(pki: PKI, pins_file: Path, tmp_path: Path, payload: bytes,
                                            capsys: pytest.CaptureFixture[str],
                                            https_server: ServeHTTPS) -> None:
    with https_server({"/update.bin": payload}, issuer=pki.rogue_root) as server:
        code = fetch_main([server.url("/update.bin"), "-o", str(tmp_path / "u.bin"),
                           "--pins", str(pins_file), "-q"])
    out, err = capsys.readouterr()
    assert code == 3
    assert out == ""
    assert "Certificate pinning failure for updates.test" in err
    assert "pinclient: refused" not in err, "-q hides the INFO decision log"
