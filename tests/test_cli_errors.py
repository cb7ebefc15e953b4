"""Every input gets a typed error and its exit code: no traceback ever leaves the CLI, with
``--json`` every outcome is one JSON object, and network errors say host and port in words."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from pinclient._cli.main import fetch_main, main

from .conftest import HOST, PKI, pinset, write_pins


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A loopback port nothing listens on (bound, never listening: connections are refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        yield s.getsockname()[1]


@pytest.fixture
def pins(pki: PKI, tmp_path: Path) -> Path:
    body = pinset("p", [HOST, "127.0.0.1"], f'{{ spki_sha256 = "{pki.pin_of(pki.pinned_root)}" }}')
    return write_pins(tmp_path / "cfg", body, bundle=pki.bundle)


def test_network_errors_name_host_and_port_in_words(
        closed_port: int, pins: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"https://{HOST}:{closed_port}/u"
    assert fetch_main([url, "-o", str(tmp_path / "u"), "--pins", str(pins), "--retries", "0"]) == 6
    assert main(["check", url, "--pins", str(pins)]) == 6
    assert main(["pin", f"{HOST}:{closed_port}", "--pins", str(pins)]) == 6
    assert main(["lint", str(pins), "--against", url]) == 6
    captured = capsys.readouterr()
    text = captured.err + captured.out
    assert "Connection(" not in text, text
    assert "ConnectionPool(" not in text, text
    fetch_err = captured.err.splitlines()[0]
    assert f"cannot connect to {HOST} port {closed_port}" in fetch_err
    assert "connection refused" in fetch_err.lower()
    assert f"{HOST}:{closed_port}" in captured.out  # check names the host and port too
