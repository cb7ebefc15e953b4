"""Report-only mode, RFC 7469-style violation reports, and pinset expiry, over real loopback TLS.

The world: updates.test is pinned to the Example root; a rogue (but trusted) root serves the same
name, as in 2011. reports.test is the operator's collector, pinned like the update host. Reports
must reach it with every documented field, must never block or fail the update, and must not
repeat for the same host and chain within a day.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from pinclient import PinningPoolManager, PinsFileError, PinViolation, fetch_update
from pinclient._cli.main import fetch_main
from pinclient._pki import Leaf
from pinclient._reporting import RateLimiter, default_state_path
from pinclient.config import PinConfig, load_pins, parse_pins
from pinclient.policy import evaluate

from .conftest import HOST, PKI, ServeHTTPS, pinset, write_pins

COLLECTOR = "reports.test"
FAR_FUTURE = "2099-01-01"


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The rate-limit record lives in the user cache folder; keep it inside the test's folder."""
    cache = tmp_path / "xdg-cache"
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    return cache


@pytest.fixture
def log_records() -> Iterator[list[logging.LogRecord]]:
    """Records of the "pinclient" logger, whatever an earlier CLI run did to its handlers."""
    logger = logging.getLogger("pinclient")
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    handler = Keep(logging.INFO)
    old_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield records
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)


def warnings_of(records: list[logging.LogRecord]) -> list[str]:
    return [r.getMessage() for r in records if r.levelno >= logging.WARNING]


class Collector:
    """An HTTPS report collector on 127.0.0.1 that records every POSTed JSON body. Not the update
    server (pinclient._demo.LoopbackServer): it reads request bodies and counts failed handshakes,
    which http.server does for it."""

    def __init__(self, leaf: Leaf, status: int = 204) -> None:
        ctx = leaf.server_context()
        self.reports: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.handshake_failures = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                outer.headers.append(dict(self.headers))
                outer.reports.append(json.loads(body))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        class Server(ThreadingHTTPServer):
            def get_request(self) -> tuple[socket.socket, Any]:
                raw, addr = self.socket.accept()
                raw.settimeout(5)
                try:
                    return ctx.wrap_socket(raw, server_side=True), addr
                except (OSError, ssl.SSLError):
                    outer.handshake_failures += 1
                    raw.close()
                    raise

            def handle_error(self, request: Any, client_address: Any) -> None:
                pass

        self.server = Server(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)

    def uri(self) -> str:
        return f"https://{COLLECTOR}:{self.port}/pin-report"

    def __enter__(self) -> Collector:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(5)


class HangingCollector:
    """Accepts TCP connections (the kernel completes them from the backlog) and never answers."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]

    def uri(self) -> str:
        return f"https://{COLLECTOR}:{self.port}/pin-report"

    def __enter__(self) -> HangingCollector:
        return self

    def __exit__(self, *exc: object) -> None:
        self.sock.close()


def pins(pki: PKI, tmp: Path, *, defaults: str = "", update: str = "", collector: bool = True,
         unpinned: str = "refuse") -> PinConfig:
    """updates.test pinned to the Example root (plus ``update`` keys), and the collector likewise."""
    root = f'{{ spki_sha256 = "{pki.pin_of(pki.pinned_root)}", label = "Example Root R1" }}'
    body = defaults + "\n" + pinset("example-updates", [HOST], root) + update + "\n"
    if collector:
        body += pinset("collector", [COLLECTOR], root)
    return load_pins(write_pins(tmp / "cfg", body, bundle=pki.bundle, unpinned=unpinned))


def pem_der(text: str) -> bytes:
    return x509.load_pem_x509_certificate(text.encode()).public_bytes(serialization.Encoding.DER)


def der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


# --------------------------------------------------------------------------- report-only + reports


def test_report_only_violation_proceeds_and_the_collector_gets_every_field(
        pki: PKI, tmp_path: Path, payload: bytes, log_records: list[logging.LogRecord],
        https_server: ServeHTTPS) -> None:
    # The rogue server also *sends* the pinned CAs after its chain (CVE-2016-2402), so the served
    # and the validated chains differ and the report must carry both.
    rogue = pki.rogue_root.issue_leaf(HOST)
    extra = [pki.pinned_int.cert, pki.pinned_root.cert]
    with Collector(pki.pinned_int.issue_leaf(COLLECTOR)) as collector:
        config = pins(pki, tmp_path, update=f'mode = "report-only"\nreport_uri = "{collector.uri()}"\n'
                                            f"expires = {FAR_FUTURE}\n")
        dest = tmp_path / "update.bin"
        with https_server({"/update.bin": payload}, leaf=rogue, extra=extra) as server:
            result = fetch_update(server.url("/update.bin"), dest, config=config,
                                  sha256=hashlib.sha256(payload).hexdigest())
    assert dest.read_bytes() == payload, "report-only: the update proceeds"
    assert result.pinset == "example-updates"
    assert result.report_only, "the result must not claim the pins matched"
    assert result.pin_result == "unexpected-issuer"
    assert server.requests == ["/update.bin"]
    assert len(collector.reports) == 1
    report = collector.reports[0]
    assert collector.headers[0]["Content-Type"] == "application/json"

    when = dt.datetime.strptime(report["date-time"], "%Y-%m-%dT%H:%M:%SZ")
    assert when.year >= 2024
    assert report["hostname"] == HOST
    assert report["port"] == server.port
    assert report["pinset"] == "example-updates"
    assert report["mode"] == "report-only"
    assert report["reason"] == "unexpected-issuer"
    assert report["effective-expiration-date"] == "2099-01-01T00:00:00Z"
    assert report["noted-hostname"] == HOST
    assert report["include-subdomains"] is False
    served = [pem_der(p) for p in report["served-certificate-chain"]]
    assert served == [der(rogue.cert), der(pki.pinned_int.cert), der(pki.pinned_root.cert)]
    validated = [pem_der(p) for p in report["validated-certificate-chain"]]
    assert validated == [der(rogue.cert), der(pki.rogue_root.cert)]
    assert all(p.startswith("-----BEGIN CERTIFICATE-----\n") for p in report["validated-certificate-chain"])
    assert report["known-pins"] == [f'pin-sha256="{pki.pin_of(pki.pinned_root)}"']

    # The violation is printed with a refusal's detail, clearly marked as a report.
    text = "\n".join(warnings_of(log_records))
    assert "REPORT-ONLY (not enforced): Certificate pinning failure for" in text
    assert f"sha256/{pki.pin_of(pki.rogue_root)}: " in text
    assert pki.pin_of(pki.pinned_root) in text
    assert 'pinset "example-updates" is in mode "report-only"' in text


def test_enforced_violation_is_refused_before_any_byte_and_still_reported(
        pki: PKI, tmp_path: Path, payload: bytes, https_server: ServeHTTPS) -> None:
    with Collector(pki.pinned_int.issue_leaf(COLLECTOR)) as collector:
        config = pins(pki, tmp_path, update=f'report_uri = "{collector.uri()}"\n')
        with https_server({"/update.bin": payload}, issuer=pki.rogue_root) as server:
            with pytest.raises(PinViolation) as info:
                fetch_update(server.url("/update.bin"), tmp_path / "u", config=config)
            server.wait_idle()
    assert all(c.received == b"" for c in server.conns)
    assert not (tmp_path / "u").exists()
    assert info.value.reason == "unexpected-issuer"
    assert [r["mode"] for r in collector.reports] == ["enforce"]
    assert collector.reports[0]["effective-expiration-date"] is None


def test_pinned_chain_sends_no_report(pki: PKI, tmp_path: Path, payload: bytes,
                                      https_server: ServeHTTPS) -> None:
    with Collector(pki.pinned_int.issue_leaf(COLLECTOR)) as collector:
        config = pins(pki, tmp_path, defaults=f'mode = "report-only"\nreport_uri = "{collector.uri()}"\n')
        with https_server({"/update.bin": payload}) as server:
            fetch_update(server.url("/update.bin"), tmp_path / "u", config=config)
    assert collector.reports == []


def test_report_only_text_on_stderr_matches_the_enforced_refusal(
        pki: PKI, tmp_path: Path, payload: bytes, capsys: pytest.CaptureFixture[str],
        https_server: ServeHTTPS) -> None:
    rogue = pki.rogue_root.issue_leaf(HOST)
    enforce = pins(pki, tmp_path / "e", collector=False)
    report_only = pins(pki, tmp_path / "r", update='mode = "report-only"\n', collector=False)
    assert report_only.path is not None
    with https_server({"/update.bin": payload}, leaf=rogue) as server:
        with pytest.raises(PinViolation) as info:
            fetch_update(server.url("/update.bin"), tmp_path / "u", config=enforce)
        code = fetch_main([server.url("/update.bin"), "--pins", str(report_only.path),
                           "-o", str(tmp_path / "u")])
    err = capsys.readouterr().err
    assert code == 0
    assert (tmp_path / "u").read_bytes() == payload
    assert "REPORT-ONLY" in err
    for line in str(info.value).splitlines():
        assert line in err, f"the report-only warning lacks a line of the refusal: {line!r}"


def test_a_hanging_collector_delays_the_update_by_at_most_the_report_timeout(
        pki: PKI, tmp_path: Path, payload: bytes, log_records: list[logging.LogRecord],
        https_server: ServeHTTPS) -> None:
    report_timeout = 0.5
    with HangingCollector() as collector:
        config = pins(pki, tmp_path, update=f'mode = "report-only"\nreport_uri = "{collector.uri()}"\n')
        with https_server({"/update.bin": payload}, issuer=pki.rogue_root) as server:
            pm = PinningPoolManager(config, report_timeout=report_timeout)
            started = time.monotonic()
            result = fetch_update(server.url("/update.bin"), tmp_path / "u", config=config, manager=pm)
            elapsed = time.monotonic() - started
    assert result.size == len(payload)
    # Generous: the bound is the report timeout setting (0.5 s), not the machine's speed.
    assert elapsed < 10 * report_timeout
    assert any("cannot send the pin violation report" in m for m in warnings_of(log_records))


def test_collector_failing_its_own_pins_gets_nothing_and_the_update_proceeds(
        pki: PKI, tmp_path: Path, payload: bytes, log_records: list[logging.LogRecord],
        https_server: ServeHTTPS) -> None:
    # The report goes through the same pinned transport: a rogue collector is refused like any host.
    with Collector(pki.rogue_root.issue_leaf(COLLECTOR)) as collector:
        config = pins(pki, tmp_path, update=f'mode = "report-only"\nreport_uri = "{collector.uri()}"\n')
        with https_server({"/update.bin": payload}, issuer=pki.rogue_root) as server:
            result = fetch_update(server.url("/update.bin"), tmp_path / "u", config=config)
    assert result.size == len(payload)
    assert collector.reports == []
    assert any("cannot send the pin violation report" in m and "Certificate pinning failure" in m
               for m in warnings_of(log_records))


def test_collector_error_status_does_not_fail_the_update(pki: PKI, tmp_path: Path, payload: bytes,
                                                         log_records: list[logging.LogRecord],
                                                         https_server: ServeHTTPS) -> None:
    with Collector(pki.pinned_int.issue_leaf(COLLECTOR), status=500) as collector:
        config = pins(pki, tmp_path, update=f'mode = "report-only"\nreport_uri = "{collector.uri()}"\n')
        with https_server({"/update.bin": payload}, issuer=pki.rogue_root) as server:
            fetch_update(server.url("/update.bin"), tmp_path / "u", config=config)
    assert len(collector.reports) == 1
    assert any("answered HTTP 500" in m for m in warnings_of(log_records))


# --------------------------------------------------------------------------- rate limit


def test_rate_limit_one_report_per_host_and_chain_per_day_across_runs(
        pki: PKI, tmp_path: Path, payload: bytes, isolated_cache: Path, https_server: ServeHTTPS) -> None:
    rogue = pki.rogue_root.issue_leaf(HOST)
    with Collector(pki.pinned_int.issue_leaf(COLLECTOR)) as collector:
        config = pins(pki, tmp_path, update=f'mode = "report-only"\nreport_uri = "{collector.uri()}"\n')
        with https_server({"/update.bin": payload}, leaf=rogue) as server:
            for _ in range(4):  # four updater runs: a new transport (and Reporter) each time
                fetch_update(server.url("/update.bin"), tmp_path / "u", config=config)
        assert len(collector.reports) == 1
        # Another chain for the same host is another report.
        with https_server({"/update.bin": payload}, issuer=pki.rogue_root) as server:
            fetch_update(server.url("/update.bin"), tmp_path / "u", config=config)
            fetch_update(server.url("/update.bin"), tmp_path / "u", config=config)
    assert len(collector.reports) == 2
    assert default_state_path() == isolated_cache / "pinclient" / "reports-sent.json"
    assert len(json.loads(default_state_path().read_text())["sent"]) == 2


def test_rate_limit_window_is_a_day_and_survives_a_restart(tmp_path: Path) -> None:
    state = tmp_path / "state" / "sent.json"
    t0 = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.timezone.utc)
    limiter = RateLimiter(state)
    assert limiter.should_send("k", t0)
    assert not limiter.should_send("k", t0 + dt.timedelta(hours=23))
    assert RateLimiter(state).should_send("other", t0)
    assert not RateLimiter(state).should_send("k", t0 + dt.timedelta(hours=23, minutes=59))
    assert RateLimiter(state).should_send("k", t0 + dt.timedelta(hours=24, minutes=1))


def test_unwritable_rate_limit_record_still_limits_within_the_process(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    limiter = RateLimiter(blocker / "sent.json")
    t0 = dt.datetime(2026, 3, 1, tzinfo=dt.timezone.utc)
    assert limiter.should_send("k", t0)
    assert not limiter.should_send("k", t0)


def test_report_file_appends_json_lines(pki: PKI, tmp_path: Path, payload: bytes,
                                        https_server: ServeHTTPS) -> None:
    config = pins(pki, tmp_path, defaults='report_file = "reports.jsonl"\nmode = "report-only"\n',
                  collector=False)
    assert config.path is not None
    log = config.path.parent / "reports.jsonl"
    for _ in range(2):
        with https_server({"/update.bin": payload}, issuer=pki.rogue_root) as server:
            fetch_update(server.url("/update.bin"), tmp_path / "u", config=config)
            fetch_update(server.url("/update.bin"), tmp_path / "u", config=config)  # rate-limited
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert len(lines) == 2
    assert {r["hostname"] for r in lines} == {HOST}
    assert all(set(r) >= {"date-time", "hostname", "port", "pinset", "mode", "effective-expiration-date",
                          "served-certificate-chain", "validated-certificate-chain", "known-pins"}
               for r in lines)


# --------------------------------------------------------------------------- modes and scope


def test_defaults_mode_covers_unpinned_hosts_and_a_pinset_can_override_it(
        pki: PKI, tmp_path: Path, payload: bytes, log_records: list[logging.LogRecord],
        https_server: ServeHTTPS) -> None:
    config = pins(pki, tmp_path, defaults='mode = "report-only"\n', update='mode = "enforce"\n',
                  collector=False)
    with https_server({"/update.bin": payload}, host="elsewhere.test") as server:
        fetch_update(server.url("/update.bin", host="elsewhere.test"), tmp_path / "u", config=config)
    assert any("REPORT-ONLY" in m and 'defaults.mode is "report-only"' in m
               for m in warnings_of(log_records))
    with https_server({"/update.bin": payload}, issuer=pki.rogue_root) as server:
        with pytest.raises(PinViolation):
            fetch_update(server.url("/update.bin"), tmp_path / "u", config=config)


def test_blocked_certificate_is_refused_even_in_report_only_mode(pki: PKI, tmp_path: Path,
                                                                 payload: bytes,
                                                                 https_server: ServeHTTPS) -> None:
    blocked = f'[[blocked]]\nspki_sha256 = "{pki.pin_of(pki.rogue_root)}"\nreason = "known bad"\n'
    config = pins(pki, tmp_path, defaults='mode = "report-only"\n', update="\n" + blocked,
                  collector=False)
    with https_server({"/update.bin": payload}, issuer=pki.rogue_root) as server:
        with pytest.raises(PinViolation) as info:
            fetch_update(server.url("/update.bin"), tmp_path / "u", config=config)
        server.wait_idle()
    assert info.value.reason == "blocked"
    assert all(c.received == b"" for c in server.conns)


# --------------------------------------------------------------------------- expiry


def _yesterday() -> str:
    return (dt.datetime.now(dt.timezone.utc).date() - dt.timedelta(days=1)).isoformat()


def test_expired_pinset_with_on_expiry_enforce_keeps_refusing_and_warns_on_every_use(
        pki: PKI, tmp_path: Path, payload: bytes, log_records: list[logging.LogRecord],
        https_server: ServeHTTPS) -> None:
    config = pins(pki, tmp_path, update=f"expires = {_yesterday()}\n", collector=False)
    with https_server({"/update.bin": payload}, issuer=pki.rogue_root) as server:
        with pytest.raises(PinViolation):
            fetch_update(server.url("/update.bin"), tmp_path / "u", config=config)
    with https_server({"/update.bin": payload}) as server:
        for _ in range(2):
            fetch_update(server.url("/update.bin"), tmp_path / "u", config=config)
    expiry = [m for m in warnings_of(log_records) if "expired on" in m]
    assert len(expiry) == 3, "one warning per use: pinning never silently stops"
    assert all('still enforced (on_expiry = "enforce")' in m for m in expiry)


def test_expired_pinset_with_on_expiry_report_only_downgrades_and_reports(
        pki: PKI, tmp_path: Path, payload: bytes, log_records: list[logging.LogRecord],
        https_server: ServeHTTPS) -> None:
    with Collector(pki.pinned_int.issue_leaf(COLLECTOR)) as collector:
        config = pins(pki, tmp_path, update=f'expires = {_yesterday()}\non_expiry = "report-only"\n'
                                            f'report_uri = "{collector.uri()}"\n')
        with https_server({"/update.bin": payload}, issuer=pki.rogue_root) as server:
            result = fetch_update(server.url("/update.bin"), tmp_path / "u", config=config)
    assert result.size == len(payload)
    messages = warnings_of(log_records)
    assert any("downgraded to report-only" in m for m in messages)
    assert any("REPORT-ONLY" in m and 'with on_expiry = "report-only"' in m for m in messages)
    assert [r["mode"] for r in collector.reports] == ["report-only"]
    assert collector.reports[0]["effective-expiration-date"] == f"{_yesterday()}T00:00:00Z"


def test_expiry_starts_at_the_expires_date_in_utc(pki: PKI, tmp_path: Path) -> None:
    config = pins(pki, tmp_path, update='expires = 2027-06-30\non_expiry = "report-only"\n',
                  collector=False)
    chain = [der(pki.rogue_root.issue_leaf(HOST).cert), der(pki.rogue_root.cert)]
    before = evaluate(config, HOST, chain, now=dt.datetime(2027, 6, 29, 23, 59, tzinfo=dt.timezone.utc))
    on = evaluate(config, HOST, chain, now=dt.datetime(2027, 6, 30, 0, 0, tzinfo=dt.timezone.utc))
    # 01:30 on the 30th in UTC+2 is still the 29th in UTC.
    tz = dt.timezone(dt.timedelta(hours=2))
    local = evaluate(config, HOST, chain, now=dt.datetime(2027, 6, 30, 1, 30, tzinfo=tz))
    assert (before.accepted, before.expired, before.mode) == (False, False, "enforce")
    assert (on.accepted, on.expired, on.mode, on.report_only) == (True, True, "report-only", True)
    assert on.violated
    assert on.reason == "unexpected-issuer"
    assert on.violation(443).chain, "the accepted verdict still carries the full violation"
    assert (local.accepted, local.expired) == (False, False)


# --------------------------------------------------------------------------- pins.toml keys


@pytest.mark.parametrize(("case", "body", "text", "key"), [
    ("bad-mode", '[defaults]\nmode = "audit"\n', "must be one of 'enforce', 'report-only'", "mode"),
    ("bad-pinset-mode", 'mode = "monitor"\n', "must be one of", "mode"),
    ("expires-string", 'expires = "2027-06-30"\n', "must be a TOML date", "expires"),
    ("expires-datetime", "expires = 2027-06-30T00:00:00Z\n", "must be a TOML date", "expires"),
    ("on-expiry-alone", 'on_expiry = "report-only"\n', "no effect without expires", "on_expiry"),
    ("on-expiry-bad", 'expires = 2027-06-30\non_expiry = "stop"\n', "must be one of", "on_expiry"),
    ("report-uri-http", 'report_uri = "http://r.example.com/"\n', "must be an https:// URL", "report_uri"),
    ("report-uri-no-host", 'report_uri = "https:///x"\n', "must be an https:// URL", "report_uri"),
    ("report-uri-port", 'report_uri = "https://r.example.com:99999/"\n', "is not a URL", "report_uri"),
    ("report-file-empty", 'report_file = ""\n', "must not be empty", "report_file"),
    ("expires-in-defaults", "[defaults]\nexpires = 2027-06-30\n", "unknown key", "expires"),
])
def test_lifecycle_keys_are_validated(tmp_path: Path, case: str, body: str, text: str, key: str) -> None:
    pin = "C5+lpZ7tcVwmwQIMcRtPbsQtWLABXhQzejna0wHFr8M="
    head = f'version = 1\n[[pinset]]\nname = "p"\nhosts = ["u.example.com"]\nissuers = [{{ spki_sha256 = "{pin}" }}]\n'
    doc = ("version = 1\n" + body) if body.startswith("[defaults]") else head + body
    with pytest.raises(PinsFileError) as info:
        parse_pins(doc, path=tmp_path / "pins.toml")
    assert text in str(info.value)
    assert info.value.key == key
    assert str(tmp_path / "pins.toml") in str(info.value)
    if not body.startswith("[defaults]"):
        assert info.value.pinset == "p"


def test_lifecycle_keys_load(tmp_path: Path) -> None:
    pin = "C5+lpZ7tcVwmwQIMcRtPbsQtWLABXhQzejna0wHFr8M="
    text = (f'version = 1\n[defaults]\nmode = "report-only"\nreport_uri = "https://r.example.com/pkp"\n'
            f'report_file = "logs/pins.jsonl"\n[[pinset]]\nname = "p"\nhosts = ["u.example.com"]\n'
            f'issuers = [{{ spki_sha256 = "{pin}" }}]\nmode = "enforce"\nexpires = 2027-06-30\n'
            f'on_expiry = "report-only"\nreport_uri = "https://other.example.com/r"\n')
    config = parse_pins(text, path=tmp_path / "pins.toml")
    d, p = config.defaults, config.pinsets[0]
    assert (d.mode, d.report_uri, d.report_file) == (
        "report-only", "https://r.example.com/pkp", str((tmp_path / "logs" / "pins.jsonl").resolve()))
    assert (p.mode, p.expires, p.on_expiry, p.report_uri, p.report_file) == (
        "enforce", dt.date(2027, 6, 30), "report-only", "https://other.example.com/r", None)


def test_cli_summary_of_a_report_only_pass_says_the_pins_were_violated(
        pki: PKI, tmp_path: Path, payload: bytes, capsys: pytest.CaptureFixture[str],
        https_server: ServeHTTPS) -> None:
    report_only = pins(pki, tmp_path / "r", update='mode = "report-only"\n', collector=False)
    assert report_only.path is not None
    with https_server({"/update.bin": payload}, issuer=pki.rogue_root) as server:
        code = fetch_main([server.url("/update.bin"), "--pins", str(report_only.path), "-o", str(tmp_path / "u")])
    out = capsys.readouterr().out
    assert code == 0
    assert "PINS VIOLATED (unexpected-issuer) but not enforced" in out
    assert "matched" not in out
