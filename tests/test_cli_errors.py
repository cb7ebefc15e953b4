"""Every input gets a typed error and its exit code: no traceback ever leaves the CLI, with
``--json`` every outcome is one JSON object, and network errors say host and port in words."""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
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


DIGITS_400 = "9" * 400
FETCH_VALUES = [
    ("--connect-timeout", "inf"), ("--connect-timeout", "1e300"), ("--read-timeout", "1e400"),
    ("--read-timeout", "nan"), ("--deadline", "-1"), ("--deadline", "0"), ("--lock-timeout", "inf"),
    ("--max-size", DIGITS_400), ("--min-rate", DIGITS_400), ("--size", DIGITS_400),
    ("--size", "٣"), ("--retries", DIGITS_400), ("--max-redirects", DIGITS_400),
]


def _one_json_object(text: str) -> dict[str, object]:
    doc = json.loads(text)  # exactly one JSON document: json.loads refuses trailing text
    assert isinstance(doc, dict)
    return doc


@pytest.mark.parametrize(("flag", "value"), FETCH_VALUES)
@pytest.mark.parametrize("as_json", [False, True])
def test_out_of_range_download_flags_are_usage_errors(
        flag: str, value: str, as_json: bool, closed_port: int, pins: Path, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    argv = [f"https://{HOST}:{closed_port}/u", "-o", str(tmp_path / "u"), "--pins", str(pins),
            flag, value] + (["--json"] if as_json else [])
    with pytest.raises(SystemExit) as info:
        fetch_main(argv)
    assert info.value.code == 2
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    if as_json:
        doc = _one_json_object(captured.out)
        assert doc["ok"] is False
        assert doc["exit_code"] == 2
        assert doc["error"] == "UsageError"
        assert flag in str(doc["message"])
    else:
        assert flag in captured.err
        assert DIGITS_400 not in captured.err  # 400 digits are not echoed whole


@pytest.mark.parametrize("value", ["-1", "nan", "0", "inf", "1e400"])
@pytest.mark.parametrize("command", ["pin", "check", "lint"])
def test_probe_timeouts_are_usage_errors(command: str, value: str, closed_port: int, pins: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    target = {"pin": [f"127.0.0.1:{closed_port}"],
              "check": [f"https://127.0.0.1:{closed_port}/", "--pins", str(pins)],
              "lint": [str(pins), "--against", f"https://127.0.0.1:{closed_port}/"]}[command]
    with pytest.raises(SystemExit) as info:
        main([command, *target, "--timeout", value])
    assert info.value.code == 2
    assert "--timeout" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [
    ["check", "--json"],  # a missing argument
    ["lint", "--json", "--bogus"],  # an unknown one
    ["check", "https://updates.test/", "--json", "--jobs", "many"],  # a bad value
    ["--js", "nope"],  # an unknown command, --json abbreviated as argparse allows
])
def test_argparse_errors_under_json_are_one_json_object(argv: list[str],
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    doc = _one_json_object(capsys.readouterr().out)
    assert doc == {"ok": False, "error": "UsageError", "exit_code": 2, "message": doc["message"]}
    assert doc["message"]


def test_a_closed_stdout_ends_quietly(pki: PKI) -> None:
    # `pinclient pin --pem bundle | head -1`: the reader is gone before pinclient writes. The pipe's
    # read end is closed before the process starts writing, so the write always fails.
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        proc = subprocess.run([sys.executable, "-m", "pinclient", "pin", "--pem", str(pki.bundle)],
                              stdout=write_end, stderr=subprocess.PIPE, text=True, timeout=60,
                              check=False)
    finally:
        os.close(write_end)
    assert proc.stderr == ""
    assert proc.returncode == 141


def test_an_unexpected_exception_is_one_paragraph_not_a_traceback(
        capsys: pytest.CaptureFixture[str]) -> None:
    from pinclient._cli.main import _execute

    def buggy(args: argparse.Namespace) -> int:
        raise RuntimeError("boom")

    assert _execute(buggy, argparse.Namespace(json=False)) == 1
    assert "internal error (RuntimeError: boom)" in capsys.readouterr().err
    assert _execute(buggy, argparse.Namespace(json=True)) == 1
    assert _one_json_object(capsys.readouterr().out)["exit_code"] == 1
