"""IP literals (issue 14): every spelling the socket reads as 127.0.0.1 finds the pinset keyed on
127.0.0.1, over real TLS on 127.0.0.1. inet_aton(3), which getaddrinfo() uses, reads ``127.1``,
``0x7f.1``, ``2130706433`` and ``127.000.000.001`` as 127.0.0.1, and ``::ffff:127.0.0.1`` reaches it
over IPv4; Python's ipaddress refuses the first ones and keeps the last apart, so before the fix
each of them skipped the pinset (with ``unpinned = "allow"`` a rogue-CA certificate passed, and the
pinset's signing keys were not required)."""

from __future__ import annotations

import ipaddress
import socket
from pathlib import Path
from typing import Any

import pytest

from pinclient import PinningPoolManager, PinViolation, SignatureError, UsageError, fetch_update
from pinclient import minisign as ms
from pinclient._cli.main import fetch_main
from pinclient._demo import Response
from pinclient._names import ip_literal, normalize_host, normalize_url
from pinclient.config import PinConfig, load_pins, parse_pins
from pinclient.errors import PinsFileError

from .conftest import PKI, ServeHTTPS, pinset, write_pins

PAYLOAD = b"update for 127.0.0.1\n" * 100
PUBLISHER = ms.SecretKey(key_id=bytes.fromhex("0102030405060708"), seed=b"\x11" * 32)

# Every spelling of 127.0.0.1 that the socket (getaddrinfo/inet_aton, or IPv6 v4-mapped) connects
# to 127.0.0.1 with, and that Python's ipaddress does not write as "127.0.0.1".
SPELLINGS = ["127.000.000.001", "127.0.0.01", "127.0.0.001", "127.1", "127.0.1", "0x7f.1",
             "0X7F.0.0.1", "0x7f000001", "2130706433", "017700000001", "[::ffff:127.0.0.1]",
             "[::FFFF:7f00:1]", "[0:0:0:0:0:ffff:127.0.0.1]", "127.0.0.1.", "127.1."]
# Numeric hosts the socket and the certificate check read differently, or cannot read at all:
# refused, never looked up as names.
AMBIGUOUS = ["127.0.0.010", "0177.0.0.1", "127.0.0.08", "1.2.3.4.5", "127.0.0.256", "1.16777216",
             "[::ffff:127.000.000.001]", "updates.123",
             # The unspecified address: Linux connects it to 127.0.0.1 (::1), whatever it is keyed on.
             "0.0.0.0", "0", "0x0", "[::]", "[::ffff:0.0.0.0]"]


@pytest.fixture
def numeric_loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    """Let the pinned transport resolve numeric spellings of loopback addresses as the real
    getaddrinfo() does (AI_NUMERICHOST: inet_aton and inet_pton only, never DNS), and nothing else
    beyond what conftest's loopback guard allows."""
    guarded = socket.getaddrinfo

    def resolve(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            found = _REAL_GETADDRINFO(host, port, *args[:3], flags=socket.AI_NUMERICHOST)
        except socket.gaierror:
            return guarded(host, port, *args, **kwargs)
        assert all(ipaddress.ip_address(a[4][0]).is_loopback
                   or ipaddress.ip_address(a[4][0]).ipv4_mapped in (ipaddress.ip_address("127.0.0.1"),)
                   for a in found), (host, found)
        return found

    monkeypatch.setattr(socket, "getaddrinfo", resolve)


_REAL_GETADDRINFO = socket.getaddrinfo  # at import, before any fixture patches it


@pytest.fixture
def loopback_config(pki: PKI, tmp_path: Path) -> PinConfig:
    """A pinset keyed on 127.0.0.1, pinned to the Example root, with a signing key; every other
    host allowed unpinned (the configuration in which a missed pinset is a silent bypass)."""
    body = pinset("loopback", ["127.0.0.1"], f'{{ spki_sha256 = "{pki.pin_of(pki.pinned_root)}" }}')
    body += f'signing_keys = ["{PUBLISHER.public_key.to_string()}"]\n'
    return load_pins(write_pins(tmp_path / "cfg", body, bundle=pki.bundle, unpinned="allow"))


def test_every_spelling_is_the_address_the_socket_reaches() -> None:
    for spelling in SPELLINGS:
        assert normalize_host(spelling) == "127.0.0.1", spelling
    assert normalize_url("https://0x7f.1:8443/u?x=1") == "https://127.0.0.1:8443/u?x=1"
    assert normalize_url("https://[::ffff:127.0.0.1]/") == "https://127.0.0.1/"
    # Canonical forms stay as they are; other IPv6 addresses are not IPv4.
    assert [ip_literal(a) for a in ("192.0.2.1", "::1", "::127.0.0.1", "updates.test")] == [
        "192.0.2.1", "::1", "::7f00:1", None]


@pytest.mark.parametrize("host", AMBIGUOUS)
def test_ambiguous_numeric_hosts_are_refused_before_connecting(loopback_config: PinConfig, host: str,
                                                               tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str],
                                                               https_server: ServeHTTPS) -> None:
    with pytest.raises(ValueError, match=r"decimal|IPv4|number|unspecified"):
        normalize_host(host.strip("[]"))
    with https_server() as server:
        with pytest.raises(UsageError):
            fetch_update(f"https://{host}:{server.port}/u", tmp_path / "u", config=loopback_config)
        assert loopback_config.path is not None
        code = fetch_main([f"https://{host}:{server.port}/u", "-o", str(tmp_path / "u"),
                           "--pins", str(loopback_config.path)])
        assert server.conns == [], "no connection for a host that could mean two addresses"
    assert code == 2
    assert "Traceback" not in capsys.readouterr().err


@pytest.mark.parametrize("spelling", SPELLINGS)
def test_rogue_ca_certificate_is_refused_for_every_spelling_of_the_pinned_address(
        pki: PKI, loopback_config: PinConfig, tmp_path: Path, spelling: str,
        https_server: ServeHTTPS, numeric_loopback: None) -> None:
    # The rogue leaf also names the spelling itself (a rogue CA issues whatever is asked), so the
    # certificate check alone would pass whichever form reaches OpenSSL.
    names = ["127.0.0.1", spelling.strip("[]").rstrip(".")]
    rogue = pki.rogue_root.issue_leaf(*dict.fromkeys(names))
    with https_server({"/u": Response(200, PAYLOAD)}, leaf=rogue) as server:
        url = f"https://{spelling}:{server.port}/u"
        with pytest.raises(PinViolation) as info:
            fetch_update(url, tmp_path / "u", config=loopback_config, signature=False)
        assert info.value.pinset == "loopback"
        assert info.value.host == "127.0.0.1"
        # The pinned transport on its own, given the URL as typed (no normalize_url first): the
        # guard looks up the name TLS checked. (A trailing-dot IP is not numeric to getaddrinfo,
        # which would ask DNS; fetch_update connects to the normalised address instead.)
        if not spelling.endswith("."):
            pm = PinningPoolManager(loopback_config, retries=False)
            with pytest.raises(PinViolation) as raw:
                pm.request("GET", url)
            pm.clear()
            assert raw.value.pinset == "loopback"
        server.wait_idle()
    assert server.requests == [], "refused before any request byte"
    assert not (tmp_path / "u").exists()


@pytest.mark.parametrize("spelling", ["127.000.000.001", "127.1", "0x7f.1", "[::ffff:127.0.0.1]"])
def test_the_pinsets_signing_keys_are_required_for_every_spelling(
        pki: PKI, loopback_config: PinConfig, tmp_path: Path, spelling: str,
        https_server: ServeHTTPS) -> None:
    genuine = pki.pinned_int.issue_leaf("127.0.0.1")
    routes = {"/u": Response(200, PAYLOAD),
              "/u.minisig": Response(200, ms.sign(PUBLISHER, PAYLOAD, trusted_comment="u 1"))}
    with https_server(routes, leaf=genuine) as server:
        result = fetch_update(f"https://{spelling}:{server.port}/u", tmp_path / "u", config=loopback_config)
        assert (result.pinset, result.url) == ("loopback", f"https://127.0.0.1:{server.port}/u")
        assert result.signature is not None
        assert server.requests == ["/u.minisig", "/u"]
        # Without the signature the payload is refused: the pinset's keys apply to this spelling.
        del server.routes["/u.minisig"]
        with pytest.raises(SignatureError):
            fetch_update(f"https://{spelling}:{server.port}/u", tmp_path / "v", config=loopback_config)
    assert not (tmp_path / "v").exists()


def test_the_transport_refuses_a_host_the_socket_and_the_certificate_check_read_apart(
        pki: PKI, loopback_config: PinConfig, https_server: ServeHTTPS, numeric_loopback: None) -> None:
    # 0177.0.0.1: inet_aton connects to 127.0.0.1 (octal) while OpenSSL checks the certificate
    # against 177.0.0.1 (decimal), which a rogue CA will gladly name. Given to the pinned transport
    # directly, the guard cannot look a pinset up for it: a typed refusal, not a ValueError.
    rogue = pki.rogue_root.issue_leaf("177.0.0.1")
    with https_server({"/u": Response(200, PAYLOAD)}, leaf=rogue) as server:
        pm = PinningPoolManager(loopback_config, retries=False)
        with pytest.raises(PinViolation) as info:
            pm.request("GET", f"https://0177.0.0.1:{server.port}/u")
        pm.clear()
        server.wait_idle()
    assert info.value.reason == "invalid-host"
    assert "decimal" in info.value.message
    assert server.requests == []


def test_pins_toml_ip_hosts_are_written_as_the_address_and_can_match() -> None:
    body = ('version = 1\n[[pinset]]\nname = "lo"\nhosts = [{hosts}]\n'
            'issuers = [{{ spki_sha256 = "C5+lpZ7tcVwmwQIMcRtPbsQtWLABXhQzejna0wHFr8M=" }}]\n')
    config = parse_pins(body.format(hosts='"127.1", "[::ffff:7f00:1]", "0x7f.0.0.2"'))
    assert config.pinsets[0].hosts == ("127.0.0.1", "127.0.0.2")
    assert config.pinset_for(normalize_host("127.000.000.001")) is config.pinsets[0]
    # A value that parses must be able to match: no wildcard over an address, no ambiguous one.
    for bad, words in (('"*.127.0.0.1"', "can never match"), ('"*.0x7f.1"', "can never match"),
                       ('"0.0.0.0"', "unspecified"),
                       ('"0177.0.0.1"', "decimal"), ('"updates.123"', "IPv4")):
        with pytest.raises(PinsFileError, match=words) as info:
            parse_pins(body.format(hosts=bad))
        assert info.value.key == "hosts"
