"""``pinclient check`` and ``pinclient.check``: one handshake per host, nothing downloaded, a verdict
per host and an exit code for CI; 40 loopback servers checked 8 at a time."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

import pinclient
from pinclient import CheckResult, UsageError
from pinclient._cli.main import main
from pinclient._demo import LoopbackServer
from pinclient.config import PinConfig, load_pins

from .conftest import PKI, ServeHTTPS, pinset, write_pins

FLEET = 40


def fleet_pins(pki: PKI, tmp_path: Path, extra: str = "") -> Path:
    root = f'{{ spki_sha256 = "{pki.pin_of(pki.pinned_root)}", label = "Example Root R1" }}'
    body = (pinset("fleet", ["*.fleet.test"], root) + "\n"
            + pinset("canary", ["*.canary.test"], root) + 'mode = "report-only"\n' + extra)
    return write_pins(tmp_path / "cfg", body, bundle=pki.bundle)


def expected_kind(i: int) -> str:
    return ("ok", "ok", "violation", "tls-error", "report-only")[i % 5]


@pytest.fixture
def fleet(pki: PKI, https_server: ServeHTTPS) -> Iterator[list[tuple[str, str, LoopbackServer]]]:
    """40 servers: pinned (ok), rogue-root (violation), untrusted-root (TLS error) and rogue under a
    report-only pinset, in a fixed pattern."""
    with ExitStack() as stack:
        hosts = []
        for i in range(FLEET):
            kind = expected_kind(i)
            name = f"h{i:02d}.{'canary' if kind == 'report-only' else 'fleet'}.test"
            issuer = {"ok": pki.pinned_int, "violation": pki.rogue_root, "tls-error": pki.untrusted_root,
                      "report-only": pki.rogue_root}[kind]
            server = stack.enter_context(https_server(leaf=issuer.issue_leaf(name)))
            hosts.append((server.url("/addon.xpi", host=name), kind, server))
        yield hosts


def run_json(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, dict]:  # type: ignore[type-arg]
    code = main(argv)
    return code, json.loads(capsys.readouterr().out)


def test_forty_hosts_eight_at_a_time_give_the_right_verdicts_and_exit_code(
        pki: PKI, tmp_path: Path, fleet: list[tuple[str, str, LoopbackServer]],
        capsys: pytest.CaptureFixture[str]) -> None:
    pins = fleet_pins(pki, tmp_path)
    urls = [u for u, _, _ in fleet]
    code, data = run_json(["check", *urls, "--pins", str(pins), "--jobs", "8", "--json"], capsys)
    assert code == 3, "a violation outranks TLS errors"
    assert data["exit_code"] == 3
    assert data["ok"] is False
    got = [(r["url"], r["verdict"]) for r in data["results"]]
    assert got == [(u, kind) for u, kind, _ in fleet], "one verdict per host, in the order given"
    assert data["counts"] == {"ok": 16, "violation": 8, "report-only": 8, "tls-error": 8}
    for result, (_, kind, server) in zip(data["results"], fleet, strict=True):
        server.wait_idle()
        assert server.requests == [], "check downloads nothing"
        if kind == "tls-error":
            assert result["chain"] == []
            assert "TLS validation failed" in result["message"]
        else:
            assert len(result["chain"]) == (3 if kind == "ok" else 2)
        if kind == "violation":
            assert result["pinset"] == "fleet"
            assert result["reason"] == "unexpected-issuer"
            assert "Certificate pinning failure" in result["message"]
        if kind == "report-only":
            assert result["pinset"] == "canary"
            assert result["message"].startswith("REPORT-ONLY")

    # Without the violating hosts, TLS failures decide: 6. With neither, 0 (report-only is not a failure).
    no_violation = [u for u, kind, _ in fleet if kind != "violation"]
    assert run_json(["check", *no_violation, "--pins", str(pins), "--jobs", "8", "--json"], capsys)[0] == 6
    clean = [u for u, kind, _ in fleet if kind in ("ok", "report-only")]
    assert run_json(["check", *clean, "--pins", str(pins), "--jobs", "8", "--json"], capsys)[0] == 0


def test_jobs_bounds_how_many_hosts_are_checked_at_once(
        pki: PKI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    # Counts, not time: eight checks must be in flight together (a barrier of 8 is passed), and
    # never more than eight.
    import pinclient._probe as check_module

    barrier = threading.Barrier(8, timeout=30)
    lock = threading.Lock()
    state = {"now": 0, "max": 0}

    def fake_check(url: str, config: PinConfig, *, timeout: float = 10.0,
                   proxy: str | bool | None = None) -> CheckResult:
        with lock:
            state["now"] += 1
            state["max"] = max(state["max"], state["now"])
        try:
            barrier.wait()
        finally:
            with lock:
                state["now"] -= 1
        return CheckResult(url, "x.test", 443, "ok")

    monkeypatch.setattr(check_module, "check", fake_check)
    pins = fleet_pins(pki, tmp_path)
    urls = [f"https://h{i}.fleet.test/" for i in range(FLEET)]
    assert main(["check", *urls, "--pins", str(pins), "--jobs", "8", "--json"]) == 0
    capsys.readouterr()
    assert state["max"] == 8


def test_library_check_returns_a_result_for_each_outcome(pki: PKI, tmp_path: Path,
                                                         https_server: ServeHTTPS) -> None:
    config = load_pins(fleet_pins(pki, tmp_path))
    with https_server(host="a.fleet.test") as server:
        ok = pinclient.check(server.url("/", host="a.fleet.test"), config)
    assert isinstance(ok, CheckResult)
    assert (ok.verdict, ok.pinset, ok.reason, ok.exit_code, ok.port) == ("ok", "fleet", "pinned", 0,
                                                                          server.port)
    assert [c.spki_sha256 for c in ok.chain][1:] == [pki.pin_of(pki.pinned_int), pki.pin_of(pki.pinned_root)]
    with https_server(issuer=pki.rogue_root, host="a.fleet.test") as server:
        bad = pinclient.check(server.url("/", host="a.fleet.test"), config)
    assert (bad.verdict, bad.exit_code) == ("violation", 3)
    assert pki.pin_of(pki.pinned_root) in bad.message, "the message lists the expected pins"
    with https_server(host="other.test") as server:
        wrong_host = pinclient.check(server.url("/", host="a.fleet.test"), config)
        unpinned = pinclient.check(server.url("/", host="other.test"), config)
    assert (wrong_host.verdict, wrong_host.exit_code, wrong_host.pinset) == ("tls-error", 6, "fleet")
    assert (unpinned.verdict, unpinned.reason) == ("violation", "unpinned")
    with pytest.raises(UsageError):
        pinclient.check("http://a.fleet.test/", config)


def test_check_sends_no_violation_report(pki: PKI, tmp_path: Path, https_server: ServeHTTPS) -> None:
    body = (pinset("fleet", ["*.fleet.test"], f'{{ spki_sha256 = "{pki.pin_of(pki.pinned_root)}" }}')
            + 'report_file = "reports.jsonl"\n')
    config = load_pins(write_pins(tmp_path / "cfg", body, bundle=pki.bundle))
    with https_server(issuer=pki.rogue_root, host="a.fleet.test") as server:
        assert pinclient.check(server.url("/", host="a.fleet.test"), config).verdict == "violation"
    assert not (tmp_path / "cfg" / "reports.jsonl").exists()


def test_check_text_output_and_usage_errors(pki: PKI, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str],
                                            https_server: ServeHTTPS) -> None:
    pins = fleet_pins(pki, tmp_path)
    with https_server(host="a.fleet.test") as good, \
            https_server(issuer=pki.rogue_root, host="b.fleet.test") as bad:
        urls = [good.url("/", host="a.fleet.test"), bad.url("/", host="b.fleet.test")]
        assert main(["check", *urls, "--pins", str(pins)]) == 3
    out = capsys.readouterr().out
    assert f'ok          {urls[0]}  (pinset "fleet")' in out
    assert f"      sha256/{pki.pin_of(pki.pinned_root)}: CN=Example Root R1,O=Example Inc" in out
    assert f'violation   {urls[1]}  (pinset "fleet")' in out
    assert "checked 2 hosts: 1 ok, 1 violation, 0 report-only, 0 tls-error" in out
    # A bad URL or --jobs is a usage error before any host is contacted.
    assert main(["check", "https://a.fleet.test/", "http://b.fleet.test/", "--pins", str(pins)]) == 2
    assert main(["check", "https://a.fleet.test/", "--pins", str(pins), "--jobs", "0"]) == 2
    assert main(["check", "https://a.fleet.test/", "--pins", str(tmp_path / "none.toml")]) == 2


@pytest.mark.parametrize("weakening", ["CERT_NONE", "no-hostname-check"])
def test_check_refuses_a_handshake_made_without_full_verification(
        pki: PKI, tmp_path: Path, weakening: str, https_server: ServeHTTPS,
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    # The probe reads the chain as the transport does, so it must also refuse as the transport
    # does when the context did not verify (PinGuard.check, reason "no-verified-chain"): the
    # "verified" chain is then what OpenSSL attempted with the server's certificates, and `check`
    # would call it ok and `pin` would print pins from it. A real, weakened context stands in for
    # a misconfigured or injected one; the chain itself would satisfy the pins.
    import ssl

    from pinclient import _probe

    def weak_context(bundle: str) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.load_verify_locations(cafile=bundle)
        ctx.check_hostname = False
        if weakening == "CERT_NONE":
            ctx.verify_mode = ssl.CERT_NONE
        return ctx

    config = load_pins(fleet_pins(pki, tmp_path))
    with https_server(host="a.fleet.test") as server:
        url = server.url("/", host="a.fleet.test")
        assert pinclient.check(url, config).verdict == "ok"
        monkeypatch.setattr(_probe, "shared_context", weak_context)
        result = pinclient.check(url, config)
        assert main(["pin", url, "--ca-bundle", str(pki.bundle)]) == 6
    assert (result.verdict, result.exit_code, result.chain) == ("tls-error", 6, ())
    assert "verification" in result.message
    assert "Traceback" not in capsys.readouterr().err
