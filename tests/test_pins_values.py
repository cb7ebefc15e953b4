"""pins.toml values that parse must be able to match (issue 13, section 2).

The 2011 rogue addons.mozilla.org certificate (serial 194367572622978947741256580715198431043,
issued by UTN-USERFirst-Hardware) is rebuilt here with the real serial and issuer name, and every
spelling of its serial and issuer that pins.toml accepts must block it over real TLS on 127.0.0.1.
Spellings that could mean something else are refused with a message saying what to write.
"""

from __future__ import annotations

import base64
import datetime as dt
import ssl
import warnings
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.utils import CryptographyDeprecationWarning
from cryptography.x509.oid import ExtensionOID, NameOID
from hypothesis import given
from hypothesis import strategies as st

from pinclient import PinsFileError, PinViolation, fetch_update, load_pins, parse_pins
from pinclient._names import normalize_pattern
from pinclient._pki import CA, Leaf, build_certificate, new_key
from pinclient._x509 import canonical_name, parse_dn, parse_serial
from pinclient.policy import evaluate, spki_sha256
from tests.conftest import HOST, ServeHTTPS, pinset, write_pins

ROGUE_SERIAL = 194367572622978947741256580715198431043
ROGUE_HEX = "92:39:d5:34:8f:40:d1:69:5a:74:54:70:e1:f2:3f:43"
UTN = x509.Name([
    x509.NameAttribute(NameOID.COUNTRY_NAME, "US"),
    x509.NameAttribute(NameOID.STATE_OR_PROVINCE_NAME, "UT"),
    x509.NameAttribute(NameOID.LOCALITY_NAME, "Salt Lake City"),
    x509.NameAttribute(NameOID.ORGANIZATION_NAME, "The USERTRUST Network"),
    x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "http://www.usertrust.com"),
    x509.NameAttribute(NameOID.COMMON_NAME, "UTN-USERFirst-Hardware"),
])
# The issuer as each tool prints it.
UTN_RFC4514 = ("CN=UTN-USERFirst-Hardware,OU=http://www.usertrust.com,O=The USERTRUST Network,"
               "L=Salt Lake City,ST=UT,C=US")
UTN_OPENSSL = ("C=US, ST=UT, L=Salt Lake City, O=The USERTRUST Network, OU=http://www.usertrust.com, "
               "CN=UTN-USERFirst-Hardware")
UTN_OPENSSL3 = ("C = US, ST = UT, L = Salt Lake City, O = The USERTRUST Network, "
                "OU = http://www.usertrust.com, CN = UTN-USERFirst-Hardware")
UTN_SLASH = ("/C=US/ST=UT/L=Salt Lake City/O=The USERTRUST Network/OU=http://www.usertrust.com"
             "/CN=UTN-USERFirst-Hardware")


@pytest.fixture(scope="module")
def utn(tmp_path_factory: pytest.TempPathFactory) -> tuple[Leaf, Path]:
    """The rogue addons.mozilla.org certificate's twin: the real serial and issuer name, for the
    test host; and a bundle trusting its root."""
    root = CA("UTN-USERFirst-Hardware", subject=UTN)
    leaf = root.issue_leaf(HOST, serial=ROGUE_SERIAL)
    bundle = tmp_path_factory.mktemp("utn") / "bundle.pem"
    bundle.write_bytes(root.cert_pem())
    return leaf, bundle


def blocked(issuer: str, serial: str) -> str:
    return f'[[blocked]]\nissuer = "{issuer}"\nserial = "{serial}"\nreason = "Comodo 2011"\n'


def assert_blocked(utn: tuple[Leaf, Path], body: str, folder: Path, https_server: ServeHTTPS) -> None:
    leaf, bundle = utn
    config = load_pins(write_pins(folder, body, bundle=bundle, unpinned="allow"))
    with https_server({"/u": b"update"}, leaf=leaf) as server:
        with pytest.raises(PinViolation) as info:
            fetch_update(server.url("/u"), folder / "out", config=config)
        server.wait_idle()
    assert info.value.reason == "blocked"
    assert all(c.received == b"" for c in server.conns)
    assert not (folder / "out").exists()


@pytest.mark.parametrize("serial", [
    ROGUE_HEX,  # OpenSSL x509 -text, NSS, Firefox's viewer
    ROGUE_HEX.upper(),
    "9239D5348F40D1695A745470E1F23F43",  # openssl x509 -serial
    "0x9239d5348f40d1695a745470e1f23f43",
    "0x" + ROGUE_HEX,
    "92 39 d5 34 8f 40 d1 69 5a 74 54 70 e1 f2 3f 43",  # Windows certificate viewer
    f"dec:{ROGUE_SERIAL}",  # Python, Java and Go print decimal
])
def test_every_accepted_serial_spelling_blocks_the_rogue_certificate(
        serial: str, utn: tuple[Leaf, Path], tmp_path: Path, https_server: ServeHTTPS) -> None:
    assert_blocked(utn, blocked(UTN_RFC4514, serial), tmp_path / "c", https_server)


def test_the_same_file_without_the_entry_lets_the_certificate_through(
        utn: tuple[Leaf, Path], tmp_path: Path, https_server: ServeHTTPS) -> None:
    # The failure case beside the success case: the refusal above comes from the entry alone.
    leaf, bundle = utn
    config = load_pins(write_pins(tmp_path / "c", blocked(UTN_RFC4514, "0x1234"), bundle=bundle,
                                  unpinned="allow"))
    with https_server({"/u": b"update"}, leaf=leaf) as server:
        fetch_update(server.url("/u"), tmp_path / "out", config=config)
    assert (tmp_path / "out").read_bytes() == b"update"


@pytest.mark.parametrize("issuer", [UTN_RFC4514, UTN_OPENSSL, UTN_OPENSSL3, UTN_SLASH,
                                    "cn=utn-userfirst-hardware, ou=http://www.usertrust.com, "
                                    "o=the usertrust network, l=salt lake city, st=ut, c=us",
                                    "CN=UTN-USERFirst-Hardware",  # partial: still means this issuer
                                    "O=The USERTRUST Network, CN=UTN-USERFirst-Hardware"])
def test_every_accepted_issuer_spelling_blocks_the_rogue_certificate(
        issuer: str, utn: tuple[Leaf, Path], tmp_path: Path, https_server: ServeHTTPS) -> None:
    assert_blocked(utn, blocked(issuer, ROGUE_HEX), tmp_path / "c", https_server)


def test_an_all_digit_serial_is_refused_showing_both_readings(tmp_path: Path) -> None:
    with pytest.raises(PinsFileError) as info:
        parse_pins("version = 1\n" + blocked(UTN_RFC4514, str(ROGUE_SERIAL)), base_dir=tmp_path)
    text = str(info.value)
    assert info.value.key == "serial"
    assert ROGUE_HEX in text  # the decimal reading, as OpenSSL would print it
    assert "01:94:36:75:72:62:29:78" in text  # the hex reading
    assert f'"dec:{ROGUE_SERIAL}"' in text
    assert f'"0x{ROGUE_SERIAL}"' in text
    # What the message suggests loads, each as the reading it names.
    assert parse_serial(f"dec:{ROGUE_SERIAL}") == ROGUE_SERIAL
    assert parse_serial(f"0x{ROGUE_SERIAL}") == int(str(ROGUE_SERIAL), 16)


@pytest.mark.parametrize(("serial", "message"), [
    ("12", "ambiguous"), ("0123", "ambiguous"), ("dec:12ab", "only the decimal digits"),
    ("1:2:3", "two digits"), ("-5", "not a hex serial"), ("serial=92", "drop the 'serial='"),
    ("", "must not be empty"), ("0x", "not a hex serial"),
    ("serial=9239D5348F40D1695A745470E1F23F43", '"0x9239D5348F40D1695A745470E1F23F43"'),
    ("1" * 5000, "characters long"), ("dec:" + "9" * 5000, "characters long"),
])
def test_serials_that_could_mean_something_else_are_refused(serial: str, message: str,
                                                             tmp_path: Path) -> None:
    with pytest.raises(PinsFileError) as info:
        parse_pins("version = 1\n" + blocked(UTN_RFC4514, serial), base_dir=tmp_path)
    assert message in str(info.value)
    assert not str(info.value).rstrip().endswith(":")


def test_a_single_digit_serial_reads_the_same_either_way() -> None:
    assert [parse_serial(s) for s in ("0", "7", "dec:7", "0x7", "07")] == [0, 7, 7, 7, 7]


@pytest.mark.parametrize("text", [UTN_RFC4514, UTN_OPENSSL, UTN_OPENSSL3, UTN_SLASH])
def test_each_dn_form_means_the_certificates_name(text: str) -> None:
    # Not only "matches something": the exact Name, so a subject pin written this way matches.
    assert parse_dn(text) == UTN


@pytest.mark.parametrize(("text", "message"), [
    ("DC=example,DC=com", "slash form"),  # order cannot be told: refused, not guessed
    ("CN=a, emailAddress=b", "slash form"),
    ("issuer=C = US, O = X, CN = Y", "drop the 'issuer='"),
    ("CN=x,FOO=y", "unknown attribute 'FOO'"),
    ("C=USA,CN=x", "length"),
    ("CN=", "empty value"),
    ("just words", "is not NAME=value"),
    ("  ", "must not be empty"),
    ("CN=x,title=y,O=z", None),  # loads: O and CN tell the order
    ('O=\\"unterminated, C=US', "not closed"),  # TOML \" is a quote
])
def test_dn_forms_that_cannot_mean_a_certificate_name_are_refused_with_a_reason(
        text: str, message: str | None, tmp_path: Path) -> None:
    body = "version = 1\n" + blocked(text, ROGUE_HEX)
    if message is None:
        parse_pins(body, base_dir=tmp_path)
        return
    with pytest.raises(PinsFileError) as info:
        parse_pins(body, base_dir=tmp_path)
    assert message in str(info.value)
    # No error ends with an empty reason (cryptography's ValueError("") once gave "…name: ").
    assert not str(info.value).rstrip().endswith(":")


def test_subject_pin_in_openssl_order_matches_the_ca(tmp_path: Path) -> None:
    # Read as RFC 4514 (reversed), the openssl form named a CA that does not exist and refused
    # every connection; a subject pin must mean the certificate's subject.
    root = CA("UTN-USERFirst-Hardware", subject=UTN)
    leaf = root.issue_leaf(HOST)
    chain = [c.public_bytes(serialization.Encoding.DER) for c in (leaf.cert, root.cert)]
    for text in (UTN_OPENSSL, UTN_OPENSSL3, UTN_SLASH, UTN_RFC4514):
        config = parse_pins("version = 1\n" + pinset("p", [HOST], f'{{ subject = "{text}" }}'),
                            base_dir=tmp_path)
        assert evaluate(config, HOST, chain).reason == "pinned", text
    # A partial subject is a different name: it must not accept (pins compare whole names).
    config = parse_pins("version = 1\n" + pinset("p", [HOST], '{ subject = "CN=UTN-USERFirst-Hardware" }'),
                        base_dir=tmp_path)
    assert evaluate(config, HOST, chain).reason == "unexpected-issuer"


@pytest.mark.parametrize(("host", "suggestion"), [
    ("https://addons.mozilla.org", 'did you mean "addons.mozilla.org"'),
    ("https://addons.mozilla.org:443/update", 'did you mean "addons.mozilla.org"'),
    ("addons.mozilla.org:443", 'did you mean "addons.mozilla.org"'),
    ("*.mozilla.org:8443", 'did you mean "*.mozilla.org"'),
    ("[::1]:443", 'did you mean "::1"'),
    ("global trustee", 'did you mean "global", "trustee"'),
    ("addons.mozilla.org/update", 'did you mean "addons.mozilla.org"'),
    ("user@addons.mozilla.org", 'did you mean "addons.mozilla.org"'),
    ("-bad-.example.com", "not a host name label"),
    ("a_b,c.example.com", "not a host name label"),
    ("x" * 64 + ".example.com", "not a host name label"),
    ("straße\u200d.example", "IDNA 2008"),
])
def test_host_entries_that_can_never_match_are_refused_with_a_suggestion(
        host: str, suggestion: str, tmp_path: Path) -> None:
    body = "version = 1\n" + pinset("p", [host], '{ spki_sha256 = "C5+lpZ7tcVwmwQIMcRtPbsQtWLABXhQzejna0wHFr8M=" }')
    with pytest.raises(PinsFileError) as info:
        parse_pins(body, base_dir=tmp_path)
    assert info.value.key == "hosts"
    assert suggestion in str(info.value)


@pytest.mark.parametrize(("host", "normal"), [
    ("Addons.Mozilla.ORG.", "addons.mozilla.org"), ("*.mozilla.org", "*.mozilla.org"),
    ("127.0.0.1", "127.0.0.1"), ("[::1]", "::1"), ("::1", "::1"), ("bücher.example", "xn--bcher-kva.example"),
    ("_dmarc.example.com", "_dmarc.example.com"), ("xn--bcher-kva.example", "xn--bcher-kva.example"),
])
def test_host_names_addresses_and_wildcards_load(host: str, normal: str) -> None:
    assert normalize_pattern(host) == normal


def test_a_url_in_hosts_no_longer_leaves_the_host_on_plain_tls(tmp_path: Path) -> None:
    # With unpinned = "allow", "https://updates.test" once loaded, matched nothing, and let the
    # rogue chain through with plain TLS validation only. Now the file is refused.
    body = pinset("p", [f"https://{HOST}"], '{ spki_sha256 = "C5+lpZ7tcVwmwQIMcRtPbsQtWLABXhQzejna0wHFr8M=" }')
    with pytest.raises(PinsFileError) as info:
        load_pins(write_pins(tmp_path / "c", body, unpinned="allow"))
    assert f'did you mean "{HOST}"' in str(info.value)


# --------------------------------------------------------------------------- odd certificates


def _serial_zero_root() -> tuple[bytes, ec.EllipticCurvePrivateKey, x509.Name]:
    """A CA certificate with serial number 0, as six roots certifi ships have (Go Daddy G2, …).
    cryptography refuses to build one, so the serial of a serial-1 certificate is patched in the
    DER (02 01 01 → 02 01 00, same length) and the TBS signed again."""
    key = new_key()
    subject = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Zero Serial Inc"),
                         x509.NameAttribute(NameOID.COMMON_NAME, "Zero Serial Root G2")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = build_certificate(subject, key, ca=True, not_before=now - dt.timedelta(days=1),
                             not_after=now + dt.timedelta(days=30), serial=1)
    der = cert.public_bytes(serialization.Encoding.DER)
    tbs = cert.tbs_certificate_bytes
    patched = tbs.replace(b"\xa0\x03\x02\x01\x02\x02\x01\x01", b"\xa0\x03\x02\x01\x02\x02\x01\x00", 1)
    assert patched != tbs
    signature = key.sign(patched, ec.ECDSA(hashes.SHA256()))
    algorithm = der[der.index(tbs) + len(tbs):][:12]  # SEQUENCE { ecdsa-with-SHA256 }
    assert algorithm[0] == 0x30
    assert len(algorithm) == algorithm[1] + 2
    bits = b"\x03" + _der_len(len(signature) + 1) + b"\x00" + signature
    body = patched + algorithm + bits
    return b"\x30" + _der_len(len(body)) + body, key, subject


def _der_len(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(raw)]) + raw


def test_a_serial_zero_root_gives_a_verdict_without_a_warning(tmp_path: Path,
                                                             https_server: ServeHTTPS) -> None:
    # Over real TLS: OpenSSL verifies the chain; the policy must decide it (pinned, and blocked by
    # serial "0") with no CryptographyDeprecationWarning (an untyped error under -W error).
    root_der, root_key, subject = _serial_zero_root()
    with pytest.warns(CryptographyDeprecationWarning):
        root = x509.load_der_x509_certificate(root_der)
    now = dt.datetime.now(dt.timezone.utc)
    key = new_key()
    leaf_cert = build_certificate(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, HOST)]), key,
                                  issuer=subject, signer=root_key, ca=False, hosts=[HOST],
                                  not_before=now - dt.timedelta(days=1), not_after=now + dt.timedelta(days=5))
    leaf = Leaf(leaf_cert, key, [])
    bundle = tmp_path / "bundle.pem"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CryptographyDeprecationWarning)
        bundle.write_bytes(root.public_bytes(serialization.Encoding.PEM))
        pin = base64.b64encode(spki_sha256(root)).decode()
    body = pinset("p", [HOST], f'{{ spki_sha256 = "{pin}" }}')
    config = load_pins(write_pins(tmp_path / "ok", body, bundle=bundle))
    with https_server({"/u": b"update"}, leaf=leaf) as server:
        fetch_update(server.url("/u"), tmp_path / "out", config=config)
    assert (tmp_path / "out").read_bytes() == b"update"
    config = load_pins(write_pins(tmp_path / "blocked", body + blocked("/O=Zero Serial Inc/CN=Zero Serial Root G2", "0"),
                                  bundle=bundle))
    with https_server({"/u": b"update"}, leaf=leaf) as server:
        with pytest.raises(PinViolation) as info:
            fetch_update(server.url("/u"), tmp_path / "out2", config=config)
    assert info.value.reason == "blocked"
    assert any(c.serial == "00" for c in info.value.chain)


def test_an_unparsable_extension_still_gives_a_verdict(tmp_path: Path) -> None:
    key = new_key()
    now = dt.datetime.now(dt.timezone.utc)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Bad Policies CA")])
    ca = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
          .serial_number(5).not_valid_before(now - dt.timedelta(days=1))
          .not_valid_after(now + dt.timedelta(days=5))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.UnrecognizedExtension(ExtensionOID.CERTIFICATE_POLICIES, b"\x30\x03\x02\x01\x05"),
                         critical=False)
          .sign(key, hashes.SHA256()))
    with pytest.raises(ValueError, match="parsing"):
        _ = ca.extensions  # cryptography cannot parse it
    der = ca.public_bytes(serialization.Encoding.DER)
    config = parse_pins('version = 1\n[defaults]\nunpinned = "allow"\n', base_dir=tmp_path)
    verdict = evaluate(config, HOST, [der, der])
    assert verdict.reason == "unpinned-allowed"
    assert verdict.violation  # the refusal text can be built for it too
    assert "Bad Policies CA" in verdict.chain[0].entry().subject


def test_a_certificate_that_cannot_be_parsed_is_a_typed_refusal(tmp_path: Path) -> None:
    config = parse_pins('version = 1\n[defaults]\nunpinned = "allow"\n', base_dir=tmp_path)
    with pytest.raises(PinViolation) as info:
        evaluate(config, HOST, [b"\x30\x03\x02\x01\x05"])
    assert info.value.reason == "unparsable-chain"
    assert "cannot read" in str(info.value)


# --------------------------------------------------------------------------- lint


def test_lint_flags_a_key_both_pinned_and_blocked(tmp_path: Path) -> None:
    from pinclient._lint import exit_status, lint

    pin = "C5+lpZ7tcVwmwQIMcRtPbsQtWLABXhQzejna0wHFr8M="
    other = base64.b64encode(b"\x01" * 32).decode()
    body = ("version = 1\n" + pinset("updates", [HOST], f'{{ spki_sha256 = "{pin}", label = "R1" }}',
                                     f'{{ spki_sha256 = "{other}" }}')
            + f'[[blocked]]\nspki_sha256 = "{pin}"\nreason = "leaked"\n')
    findings = lint(parse_pins(body, base_dir=tmp_path), today=dt.date(2026, 6, 1))
    hits = [f for f in findings if f.code == "blocked-and-pinned"]
    assert len(hits) == 1
    assert hits[0].severity == "error"
    assert hits[0].pinset == "updates"
    assert "R1" in hits[0].message
    assert exit_status(findings) == 2
    # The same file blocking a key nobody pins is fine.
    body = body.replace(f'spki_sha256 = "{pin}"\nreason', f'spki_sha256 = "{base64.b64encode(bytes(32)).decode()}"\nreason')
    assert not [f for f in lint(parse_pins(body, base_dir=tmp_path), today=dt.date(2026, 6, 1))
                if f.code.startswith("blocked")]


@pytest.mark.parametrize(("serial", "flagged"), [
    ("0x" + "ff" * 21, True),  # 21 octets of magnitude: no conforming CA issues it
    (f"dec:{10 ** 60}", True),
    ("0x" + "7f" + "ff" * 19, False),  # the largest 20-octet serial
    (ROGUE_HEX, False), ("0", False),
])
def test_lint_flags_a_blocked_serial_no_certificate_can_have(serial: str, flagged: bool,
                                                              tmp_path: Path) -> None:
    from pinclient._lint import lint

    config = parse_pins("version = 1\n" + blocked(UTN_RFC4514, serial), base_dir=tmp_path)
    codes = [f.code for f in lint(config, today=dt.date(2026, 6, 1))]
    assert ("blocked-never-matches" in codes) is flagged


# --------------------------------------------------------------------------- properties

_VALUE = st.text(alphabet=st.characters(codec="utf-8", exclude_characters="\\\"/,+=;#\x00",
                                        exclude_categories=("Cc", "Cs", "Zl", "Zp")),
                 min_size=1, max_size=12).map(str.strip).filter(bool)
_RANKED = [(NameOID.COUNTRY_NAME, "C"), (NameOID.STATE_OR_PROVINCE_NAME, "ST"),
           (NameOID.ORGANIZATION_NAME, "O"),
           (NameOID.ORGANIZATIONAL_UNIT_NAME, "OU"), (NameOID.COMMON_NAME, "CN")]


@st.composite
def _names(draw: st.DrawFn) -> list[tuple[str, str]]:
    """A certificate name, most general first, whose attribute kinds show its order (no two of
    the same rank: ST and L, or two OUs, cannot tell it, and are refused)."""
    kinds = draw(st.lists(st.sampled_from(range(len(_RANKED))), min_size=2, max_size=6, unique=True)
                 .map(sorted).filter(lambda k: k[0] != k[-1]))
    out = []
    for k in kinds:
        short = _RANKED[k][1]
        value = draw(st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ", min_size=2, max_size=2)) \
            if short == "C" else draw(_VALUE)
        out.append((short, value))
    return out


@given(_names())
def test_every_dn_form_of_any_name_means_that_name(attrs: list[tuple[str, str]]) -> None:
    oid = {short: o for o, short in _RANKED}
    expected = x509.Name([x509.NameAttribute(oid[s], v) for s, v in attrs])
    forms = [
        expected.rfc4514_string(),
        ", ".join(f"{s}={v}" for s, v in attrs),  # openssl x509 -issuer
        ", ".join(f"{s} = {v}" for s, v in attrs),  # OpenSSL 3
        "".join(f"/{s}={v}" for s, v in attrs),  # OpenSSL 1.0
    ]
    for form in forms:
        assert canonical_name(parse_dn(form)) == canonical_name(expected), form


@given(st.integers(min_value=0, max_value=2 ** 200))
def test_every_serial_spelling_of_any_serial_reads_back(serial: int) -> None:
    from pinclient._x509 import format_serial

    spellings = [f"0x{serial:x}", f"0X{serial:X}", f"dec:{serial}"]
    if serial > 0xFF:
        spellings += [format_serial(serial), format_serial(serial).upper()]
    for text in spellings:
        assert parse_serial(text) == serial, text
    bare = f"{serial:x}"
    if bare.isdigit() and int(bare, 10) != serial:
        with pytest.raises(ValueError, match="ambiguous"):
            parse_serial(bare)


@given(st.text(max_size=40))
def test_any_text_is_a_serial_a_dn_a_host_pattern_or_a_reasoned_value_error(text: str) -> None:
    for parse in (parse_serial, parse_dn, normalize_pattern):
        try:
            parse(text)
        except ValueError as e:
            if not str(e).strip():
                raise AssertionError(f"{parse.__name__}({text!r}): a ValueError with no reason") from e


def test_lint_warns_that_a_one_attribute_subject_pin_likely_matches_nothing(tmp_path: Path) -> None:
    from pinclient._lint import lint

    for subject, flagged in (("CN=UTN-USERFirst-Hardware", True), (UTN_OPENSSL, False)):
        config = parse_pins("version = 1\n" + pinset("p", [HOST], f'{{ subject = "{subject}" }}'),
                            base_dir=tmp_path)
        codes = [f.code for f in lint(config, today=dt.date(2026, 6, 1))]
        assert ("partial-subject" in codes) is flagged, subject


def test_openssl_quotes_a_value_with_a_comma_and_it_still_means_the_name() -> None:
    # Go Daddy Class 2 and Starfield roots: `openssl x509 -issuer` (OpenSSL 3) quotes the O value.
    name = x509.Name([x509.NameAttribute(NameOID.COUNTRY_NAME, "US"),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, "The Go Daddy Group, Inc."),
                      x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME,
                                         "Go Daddy Class 2 Certification Authority")])
    for text in ('C = US, O = "The Go Daddy Group, Inc.", OU = Go Daddy Class 2 Certification Authority',
                 name.rfc4514_string(),
                 "/C=US/O=The Go Daddy Group, Inc./OU=Go Daddy Class 2 Certification Authority"):
        assert parse_dn(text) == name, text


def test_a_cert_pin_on_a_serial_zero_root_loads_without_a_warning(tmp_path: Path) -> None:
    # Go Daddy G2's PEM from certifi as a `cert = …` pin: cryptography warned on load, which under
    # -W error (this suite) was an untyped exception out of load_pins.
    root_der, _, _ = _serial_zero_root()
    pem = ssl.DER_cert_to_PEM_cert(root_der)
    (tmp_path / "root.pem").write_text(pem)
    (tmp_path / "root.der").write_bytes(root_der)
    for name in ("root.pem", "root.der"):
        config = parse_pins("version = 1\n" + pinset("p", [HOST], f'{{ cert = "{name}" }}'),
                            base_dir=tmp_path)
        pin = config.pinsets[0].issuers[0]
        assert pin.label == "Zero Serial Root G2"
        assert pin.spki_sha256 is not None


def test_a_violation_report_over_a_serial_zero_root_is_built_without_a_warning(tmp_path: Path) -> None:
    from pinclient._reporting import build_report

    root_der, root_key, subject = _serial_zero_root()
    now = dt.datetime.now(dt.timezone.utc)
    leaf = build_certificate(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, HOST)]), new_key(),
                             issuer=subject, signer=root_key, ca=False, hosts=[HOST],
                             not_before=now - dt.timedelta(days=1), not_after=now + dt.timedelta(days=5))
    chain = [leaf.public_bytes(serialization.Encoding.DER), root_der]
    other = base64.b64encode(bytes(32)).decode()
    config = parse_pins("version = 1\n" + pinset("p", [HOST], f'{{ spki_sha256 = "{other}" }}'),
                        base_dir=tmp_path)
    verdict = evaluate(config, HOST, chain, now=now)
    assert verdict.reason == "unexpected-issuer"
    report = build_report(verdict, 443, now=now, served_chain=chain)
    assert report["validated-certificate-chain"][1] == ssl.DER_cert_to_PEM_cert(root_der)


@pytest.mark.parametrize(("entry", "shown"), [
    (blocked(UTN_OPENSSL, str(ROGUE_SERIAL)), f'"dec:{ROGUE_SERIAL}"'),
    (blocked("DC=example,DC=com", ROGUE_HEX), "slash form"),
    (pinset("p", ["addons.mozilla.org:443"], '{ spki_sha256 = "C5+lpZ7tcVwmwQIMcRtPbsQtWLABXhQzejna0wHFr8M=" }'),
     'did you mean "addons.mozilla.org"'),
])
def test_the_cli_refuses_such_a_file_with_exit_2_and_the_fix(entry: str, shown: str, tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    from pinclient._cli.main import fetch_main, main

    path = tmp_path / "pins.toml"
    path.write_text("version = 1\n" + entry)
    assert main(["lint", str(path)]) == 2
    assert fetch_main(["--pins", str(path), "https://updates.test/u", "-o", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.count(shown) == 2
    assert "Traceback" not in err
    assert not (tmp_path / "out").exists()
