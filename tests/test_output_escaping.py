"""Certificate names are attacker-controlled text: whoever makes a certificate chooses its subject.
A subject with a newline, ``"``, ``]``, an ESC sequence or a right-to-left override must never
inject lines into ``pinclient pin``'s TOML, fake lines in a refusal, or reach the terminal raw:
every place that prints a name escapes it (``_x509.name_text``, ``_names.printable``)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID

from pinclient import PinViolation, fetch_update, load_pins
from pinclient import minisign as ms
from pinclient._cli.main import main
from pinclient._demo import Response
from pinclient._names import printable
from pinclient._pki import CA
from pinclient._x509 import name_text
from pinclient.config import tomllib  # tomli on Python 3.10

from .conftest import HOST, PKI, ServeHTTPS, pinset, write_pins

# A CN is at most 64 characters; the injection spreads over several attributes.
EVIL = x509.Name([
    x509.NameAttribute(NameOID.COMMON_NAME, 'Evil CA"]\n[[pinset]]\nname = "injected"\n\x1b[2J'),
    x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, 'hosts = ["evil.test"]\nissuers = [\n'),
    x509.NameAttribute(NameOID.ORGANIZATION_NAME, "\x1b]0;owned\x07\r\u202e\u2028\x7f\x85 ]"),
])


def assert_clean(text: str) -> None:
    """No control or format character but the newlines between lines, and no injected line."""
    bad = sorted({repr(ch) for ch in text if ch != "\n" and not ch.isprintable()})
    assert bad == [], f"unescaped characters reached the output: {bad}"
    lines = [line.lstrip() for line in text.splitlines()]
    assert lines.count("[[pinset]]") <= 1
    assert not [line for line in lines if line.startswith(('name = "injected"', 'hosts = ["evil'))]


@pytest.fixture(scope="module")
def evil_int(pki: PKI) -> CA:
    """An intermediate under the trusted, pinned root whose subject is an injection attempt."""
    return pki.pinned_root.child_ca("unused", subject=EVIL)


def test_name_text_escapes_every_unprintable_character_and_still_parses_as_the_same_name() -> None:
    text = name_text(EVIL)
    assert_clean(text)
    assert "\\0A[[pinset]]" in text
    assert "\\1B" in text
    assert x509.Name.from_rfc4514_string(text) == EVIL
    assert printable("a\nb\x1b\u202e") == "a\\x0ab\\x1b\\u202e"
    assert printable("plain é ü 証明書") == "plain é ü 証明書"


def test_pin_pem_output_stays_one_pinset_whatever_the_subject(
        evil_int: CA, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pem = tmp_path / "evil.pem"
    pem.write_bytes(evil_int.cert_pem())
    assert main(["pin", "--pem", str(pem)]) == 0
    out = capsys.readouterr().out
    assert_clean(out)
    doc = tomllib.loads(out)
    [block] = doc["pinset"]
    [issuer] = block["issuers"]
    assert issuer["label"].isprintable()  # a label written from a CN comes back escaped, not raw
    assert "injected" not in json.dumps(block["hosts"])


def test_pin_from_a_live_server_escapes_the_chain(evil_int: CA, pki: PKI, https_server: ServeHTTPS,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    with https_server(issuer=evil_int) as server:
        assert main(["pin", f"{HOST}:{server.port}", "--ca-bundle", str(pki.bundle)]) == 0
    out = capsys.readouterr().out
    assert_clean(out)
    [block] = tomllib.loads(out)["pinset"]
    assert block["hosts"] == [HOST]
    assert [i["label"] for i in block["issuers"]][1] == "Example Root R1"


def test_refusal_message_log_and_json_escape_the_chain(
        evil_int: CA, pki: PKI, tmp_path: Path, https_server: ServeHTTPS,
        capsys: pytest.CaptureFixture[str]) -> None:
    body = pinset("only-rogue", [HOST], f'{{ spki_sha256 = "{pki.pin_of(pki.rogue_root)}" }}')
    pins = write_pins(tmp_path / "cfg", body, bundle=pki.bundle)
    with https_server({"/u": b"x"}, issuer=evil_int) as server:
        with pytest.raises(PinViolation) as err:
            fetch_update(server.url("/u"), tmp_path / "u", config=load_pins(pins))
        assert_clean(err.value.message)
        assert all(printable(c.subject) == c.subject and printable(c.issuer) == c.issuer
                   for c in err.value.chain)
        # The CLI: the refusal on stderr, the -vv chain log, and the --json object.
        assert main(["fetch", server.url("/u"), "-o", str(tmp_path / "u"), "--pins", str(pins),
                     "-vv"]) == 3
        captured = capsys.readouterr()
        assert_clean(captured.err)
        assert "\\0A[[pinset]]" in captured.err
        assert main(["fetch", server.url("/u"), "-o", str(tmp_path / "u"), "--pins", str(pins),
                     "--json"]) == 3
        doc = json.loads(capsys.readouterr().out)
        assert all(printable(c["subject"]) == c["subject"] for c in doc["chain"])
    logging.getLogger("pinclient").handlers.clear()


def test_check_and_lint_against_escape_the_chain(
        evil_int: CA, pki: PKI, tmp_path: Path, https_server: ServeHTTPS,
        capsys: pytest.CaptureFixture[str]) -> None:
    root = f'{{ spki_sha256 = "{pki.pin_of(pki.pinned_root)}" }}'
    rogue = f'{{ spki_sha256 = "{pki.pin_of(pki.rogue_root)}" }}'
    ok = write_pins(tmp_path / "ok", pinset("p", [HOST], root, rogue), bundle=pki.bundle)
    refused = write_pins(tmp_path / "no", pinset("p", [HOST], rogue), bundle=pki.bundle)
    with https_server(issuer=evil_int) as server:
        url = server.url("/")
        for pins, code in ((ok, 0), (refused, 3)):
            assert main(["check", url, "--pins", str(pins)]) == code
            assert_clean(capsys.readouterr().out)
            assert main(["check", url, "--pins", str(pins), "--json"]) == code
            doc = json.loads(capsys.readouterr().out)
            for c in doc["results"][0]["chain"]:
                assert printable(c["subject"]) == c["subject"]
            assert_clean(doc["results"][0]["message"])
        assert main(["lint", str(refused), "--against", url]) == 2
        assert_clean(capsys.readouterr().out)
        assert main(["lint", str(ok), "--against", url, "--json"]) == 0
        for finding in json.loads(capsys.readouterr().out)["findings"]:
            assert_clean(finding["message"])


def test_cli_messages_never_carry_terminal_escapes(
        pki: PKI, tmp_path: Path, https_server: ServeHTTPS,
        capsys: pytest.CaptureFixture[str]) -> None:
    # Any attacker text in an error, not only a name (here a redirect's Location header), reaches
    # the terminal escaped.
    body = pinset("p", [HOST], f'{{ spki_sha256 = "{pki.pin_of(pki.pinned_root)}" }}')
    pins = write_pins(tmp_path / "cfg", body, bundle=pki.bundle)
    hostile = Response(302, headers={"Location": "http://evil.test/\x1b[2J\x1b]0;owned\x07"})
    with https_server({"/u": hostile}) as server:
        assert main(["fetch", server.url("/u"), "-o", str(tmp_path / "u"), "--pins", str(pins)]) == 3
    err = capsys.readouterr().err
    assert_clean(err)
    assert "\\x1b[2J" in err


def test_a_signed_trusted_comment_reaches_the_terminal_escaped(
        pki: PKI, tmp_path: Path, https_server: ServeHTTPS, capsys: pytest.CaptureFixture[str]) -> None:
    # The trusted comment is signed, but it is still text from the publisher's side of the wire.
    key = ms.SecretKey(key_id=bytes.fromhex("0102030405060708"), seed=b"\x11" * 32)
    body = pinset("p", [HOST], f'{{ spki_sha256 = "{pki.pin_of(pki.pinned_root)}" }}')
    body += f'signing_keys = ["{key.public_key.to_string()}"]\n'
    pins = write_pins(tmp_path / "cfg", body, bundle=pki.bundle)
    payload = b"update"
    comment = "app 2.1\x1b[2J\x1b]0;owned\x07\u202e"
    routes = {"/app.bin": payload, "/app.bin.minisig": ms.sign(key, payload, trusted_comment=comment)}
    with https_server(routes) as server:
        assert main(["fetch", server.url("/app.bin"), "-o", str(tmp_path / "app.bin"),
                     "--pins", str(pins)]) == 0
    out = capsys.readouterr().out
    assert_clean(out)
    assert "trusted comment: app 2.1\\x1b[2J" in out
