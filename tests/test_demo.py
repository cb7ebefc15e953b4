"""``pinclient demo``: one accepted and one refused fetch, as a new user runs it, and a non-zero exit
when pinning does not refuse the rogue certificate."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from pinclient._cli.main import main
from pinclient.config import Pinset


def test_demo_accepts_the_expected_chain_and_refuses_the_rogue_one(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo"]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    accepted, _, refused = out.partition("2. The server presents the rogue certificate")
    assert "ACCEPTED: saved app-2.1.tar.gz" in accepted
    assert 'pinset "demo-updates" matched' in accepted
    assert "CN=Example Update Root R1" in accepted
    assert "Ordinary TLS validation accepts it" in refused
    assert "REFUSED (exit code 3)" in refused
    assert "server received 0 request bytes" in refused
    # The full refusal message: what failed, the verified chain, and the expected pins.
    assert 'Certificate pinning failure for localhost:' in refused
    assert "CN=UTN-USERFirst-Hardware,O=The USERTRUST Network" in refused
    assert 'Pinned issuers for "demo-updates"' in refused
    assert "The demo behaved as designed" in out
    assert not [t for t in threading.enumerate() if t.name == "pinclient-demo-server"]


def test_demo_quiet_prints_nothing_on_success(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "-q"]) == 0
    assert capsys.readouterr() == ("", "")


def test_demo_verbose_logs_both_decisions(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "-v"]) == 0
    err = capsys.readouterr().err
    assert "pinclient: accepted localhost:" in err
    assert "pinclient: refused localhost:" in err
    assert "(unexpected-issuer)" in err


def test_demo_exits_non_zero_when_the_rogue_certificate_is_not_refused(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    # Break pinning: every chain "matches" the first pin. The demo must notice and fail.
    def any_chain_matches(pinset: Pinset, chain: object) -> object:
        return pinset.issuers[0]

    monkeypatch.setattr("pinclient.policy._matching_pin", any_chain_matches)
    assert main(["demo"]) == 1
    out, err = capsys.readouterr()
    assert "FAILED: the rogue certificate was ACCEPTED" in err
    assert "behaved as designed" not in out


def test_demo_as_a_new_user_runs_it_leaves_no_files(tmp_path: Path) -> None:
    # A fresh process (no test DNS patching), a clean working folder and its own TMPDIR: the demo
    # must succeed and leave both exactly as empty as it found them.
    work, tmp = tmp_path / "work", tmp_path / "tmp"
    work.mkdir()
    tmp.mkdir()
    script = Path(sys.executable).with_name("pinclient")
    command = [str(script), "demo"] if script.exists() else [sys.executable, "-m", "pinclient", "demo"]
    env = {k: v for k, v in os.environ.items() if k != "XDG_CACHE_HOME"}
    env.update(TMPDIR=str(tmp), HOME=str(tmp_path))  # so that a write to ~/.cache would show
    proc = subprocess.run(command, cwd=work, env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "ACCEPTED" in proc.stdout
    assert "REFUSED (exit code 3)" in proc.stdout
    assert proc.stderr == ""
    assert list(work.iterdir()) == []
    assert list(tmp.iterdir()) == [], "the temporary folder must be removed"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tmp", "work"], "nothing written to HOME"


def test_demo_server_listens_on_loopback_only() -> None:
    import ssl

    from pinclient._demo import LoopbackServer

    server = LoopbackServer(ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)).start()
    try:
        assert server.sock.getsockname()[0] == "127.0.0.1"
    finally:
        server.stop()
