"""pins.toml v1: every malformed file raises PinsFileError naming the file, the pinset and the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from pinclient import PinsFileError, load_pins, parse_pins
from pinclient._names import host_matches, normalize_host, normalize_pattern
from pinclient.config import canonical_name

from .conftest import posix_only

GOOD_PIN = "C5+lpZ7tcVwmwQIMcRtPbsQtWLABXhQzejna0wHFr8M="
REPO = Path(__file__).resolve().parent.parent


def doc(body: str, head: str = "version = 1\n") -> str:
    return head + body


def ps(extra: str = "", *, issuers: str = f'[{{ spki_sha256 = "{GOOD_PIN}" }}]',
       hosts: str = '["u.example.com"]', name: str = '"p"') -> str:
    return f"[[pinset]]\nname = {name}\nhosts = {hosts}\nissuers = {issuers}\n{extra}"


def test_example_pins_toml_in_the_repository_loads() -> None:
    config = load_pins(REPO / "pins.toml")
    assert config.pinsets[0].name == "example-updates"
    assert {p.source for p in config.pinsets[0].issuers} >= {"spki_sha256", "subject"}
    assert config.blocked[0].serial == 0x9239D5348F40D1695A745470E1F23F43


def test_minimal_file_loads_with_defaults(tmp_path: Path) -> None:
    config = parse_pins(doc(ps()), base_dir=tmp_path)
    assert config.defaults.unpinned == "refuse"
    assert config.defaults.ca_bundle == "certifi"
    assert config.pinset_for("u.example.com") is config.pinsets[0]
    assert config.pinset_for("other.example.com") is None


@pytest.mark.parametrize("serial", ["92:39:d5:34:8f:40:d1:69:5a:74:54:70:e1:f2:3f:43",
                                    "9239D5348F40D1695A745470E1F23F43",
                                    "0x9239d5348f40d1695a745470e1f23f43",
                                    "0X92:39:D5:34:8F:40:D1:69:5A:74:54:70:E1:F2:3F:43"])
def test_serial_spellings(serial: str, tmp_path: Path) -> None:
    body = f'[[blocked]]\nissuer = "CN=UTN-USERFirst-Hardware,O=The USERTRUST Network"\nserial = "{serial}"\n'
    config = parse_pins(doc(body), base_dir=tmp_path)
    assert config.blocked[0].serial == 0x9239D5348F40D1695A745470E1F23F43


def test_most_specific_pinset_wins(tmp_path: Path) -> None:
    text = doc(ps(name='"wild"', hosts='["*.example.com"]') + ps(name='"exact"', hosts='["u.example.com"]'))
    config = parse_pins(text, base_dir=tmp_path)
    assert config.pinset_for("u.example.com").name == "exact"  # type: ignore[union-attr]
    assert config.pinset_for("v.example.com").name == "wild"  # type: ignore[union-attr]
    assert config.pinset_for("example.com") is None
    assert config.pinset_for("a.v.example.com") is None


# (case id, file body, text that must appear in the error, key named)
BAD = [
    ("toml-syntax", "version = 1\n[[pinset]\n", "TOML syntax error", None),
    ("no-version", ps(), "missing required key", "version"),
    ("version-2", "version = 2\n", "unsupported version 2", "version"),
    ("version-string", 'version = "1"\n', "unsupported version", "version"),
    ("unknown-top", doc("colour = 1\n"), "unknown key", "colour"),
    ("defaults-not-table", doc("defaults = 3\n"), "must be a table", "defaults"),
    ("unknown-default", doc("[defaults]\nunpined = \"allow\"\n"), "did you mean 'unpinned'", "unpined"),
    ("bad-unpinned", doc('[defaults]\nunpinned = "maybe"\n'), "must be one of", "unpinned"),
    ("missing-bundle", doc('[defaults]\nca_bundle = "nope.pem"\n'), "not a readable file", "ca_bundle"),
    ("pinset-not-array", doc('pinset = "x"\n'), "array of tables", "pinset"),
    ("pinset-no-name", doc('[[pinset]]\nhosts = ["a"]\nissuers = []\n'), "missing required key", "name"),
    ("pinset-unknown-key", doc(ps('colour = "red"\n')), "unknown key", "colour"),
    ("hosts-empty", doc(ps(hosts="[]")), "non-empty array", "hosts"),
    ("hosts-not-list", doc(ps(hosts='"u.example.com"')), "non-empty array", "hosts"),
    ("host-not-string", doc(ps(hosts="[1]")), "must be a string", "hosts"),
    ("host-bad-wildcard", doc(ps(hosts='["u*.example.com"]')), "bad host pattern", "hosts"),
    ("host-deep-wildcard", doc(ps(hosts='["*.*.example.com"]')), "bad host pattern", "hosts"),
    ("host-empty-label", doc(ps(hosts='["a..example.com"]')), "bad host pattern", "hosts"),
    ("issuers-empty", doc(ps(issuers="[]")), "non-empty array of issuer pins", "issuers"),
    ("issuer-not-table", doc(ps(issuers='["abc"]')), "inline table", "issuers"),
    ("issuer-none", doc(ps(issuers='[{ label = "x" }]')), "exactly one of", "issuers"),
    ("issuer-two", doc(ps(issuers=f'[{{ spki_sha256 = "{GOOD_PIN}", subject = "CN=x" }}]')),
     "exactly one of", "issuers"),
    ("issuer-unknown-key", doc(ps(issuers='[{ sha1 = "x" }]')), "unknown key", "sha1"),
    ("spki-not-base64", doc(ps(issuers='[{ spki_sha256 = "not base64!" }]')), "is not base64", "spki_sha256"),
    ("spki-wrong-length", doc(ps(issuers='[{ spki_sha256 = "AAAA" }]')), "decodes to 3 bytes", "spki_sha256"),
    ("spki-hex-by-mistake", doc(ps(issuers=f'[{{ spki_sha256 = "{"ab" * 32}" }}]')), "decodes to 48 bytes",
     "spki_sha256"),
    ("spki-not-string", doc(ps(issuers="[{ spki_sha256 = 5 }]")), "must be a string", "spki_sha256"),
    ("subject-bad-dn", doc(ps(issuers='[{ subject = "no equals sign" }]')), "distinguished name", "subject"),
    ("cert-missing", doc(ps(issuers='[{ cert = "missing.pem" }]')), "cannot read", "cert"),
    ("cert-garbage", doc(ps(issuers='[{ cert = "garbage.pem" }]')), "not a PEM or DER certificate", "cert"),
    ("label-not-string", doc(ps(issuers=f'[{{ spki_sha256 = "{GOOD_PIN}", label = 3 }}]')),
     "must be a string", "label"),
    ("duplicate-names", doc(ps() + ps()), "unique", "name"),
    ("blocked-empty", doc("[[blocked]]\n"), "needs either spki_sha256, or issuer and serial", None),
    ("blocked-both", doc(f'[[blocked]]\nspki_sha256 = "{GOOD_PIN}"\nserial = "01"\nissuer = "CN=x"\n'),
     "not both", None),
    ("blocked-serial-only", doc('[[blocked]]\nserial = "01"\n'), "needs both issuer and serial", "issuer"),
    ("blocked-bad-serial", doc('[[blocked]]\nissuer = "CN=x"\nserial = "zz"\n'), "not a hex serial", "serial"),
    ("blocked-int-serial", doc('[[blocked]]\nissuer = "CN=x"\nserial = 12\n'), "hex string", "serial"),
    ("blocked-unknown", doc('[[blocked]]\nissuer = "CN=x"\nserial = "01"\nwhy = "x"\n'), "unknown key", "why"),
]


@pytest.mark.parametrize(("case", "body", "message", "key"), BAD, ids=[b[0] for b in BAD])
def test_bad_pins_file_is_refused_with_a_precise_error(tmp_path: Path, case: str, body: str, message: str,
                                                       key: str | None) -> None:
    (tmp_path / "garbage.pem").write_text("-----BEGIN CERTIFICATE-----\nnope\n-----END CERTIFICATE-----\n")
    path = tmp_path / "pins.toml"
    path.write_text(body)
    with pytest.raises(PinsFileError) as info:
        load_pins(path)
    err = info.value
    assert message in str(err)
    assert str(path) in str(err), "the error names the file"
    assert err.exit_code == 2
    if key is not None:
        assert err.key == key
    if "[[pinset]]" in body and case not in ("toml-syntax", "no-version", "pinset-no-name"):
        assert err.pinset in ("p", "#1"), "the error names the pinset"


def test_toml_syntax_error_gives_the_line(tmp_path: Path) -> None:
    path = tmp_path / "pins.toml"
    path.write_text("version = 1\n\n[defaults]\nunpinned = refuse\n")
    with pytest.raises(PinsFileError) as info:
        load_pins(path)
    assert info.value.line == 4
    assert f"{path}:4" in str(info.value)


def test_missing_and_non_utf8_files(tmp_path: Path) -> None:
    with pytest.raises(PinsFileError, match="cannot read"):
        load_pins(tmp_path / "absent.toml")
    (tmp_path / "bin.toml").write_bytes(b"version = 1\n\xff\xfe")
    with pytest.raises(PinsFileError, match="not UTF-8"):
        load_pins(tmp_path / "bin.toml")


def test_relative_paths_resolve_against_the_pins_file(tmp_path: Path) -> None:
    folder = tmp_path / "conf"
    folder.mkdir()
    (folder / "bundle.pem").write_text("")
    path = folder / "pins.toml"
    path.write_text(doc('[defaults]\nca_bundle = "bundle.pem"\n'))
    assert load_pins(path).defaults.ca_bundle == str((folder / "bundle.pem").resolve())


def test_dn_comparison_is_parsed_not_textual() -> None:
    from cryptography import x509

    a = x509.Name.from_rfc4514_string("CN=Example  CA,O=Example Inc")
    b = x509.Name.from_rfc4514_string("CN=example ca,O=EXAMPLE INC")
    c = x509.Name.from_rfc4514_string("O=Example Inc,CN=Example CA")
    assert canonical_name(a) == canonical_name(b)
    assert canonical_name(a) != canonical_name(c), "RDN order is part of the name"


@pytest.mark.parametrize(("raw", "norm"), [("Updates.Example.COM.", "updates.example.com"),
                                           ("bücher.example", "xn--bcher-kva.example"),
                                           ("[::1]", "::1"), ("127.0.0.1", "127.0.0.1")])
def test_host_normalisation(raw: str, norm: str) -> None:
    assert normalize_host(raw) == norm


def test_idna_pattern_matches_a_label_host() -> None:
    pattern = normalize_pattern("*.Bücher.example")
    assert host_matches(pattern, normalize_host("www.xn--bcher-kva.example"))
    assert host_matches(pattern, normalize_host("WWW.bücher.example."))
    assert not host_matches(pattern, normalize_host("bücher.example"))


@pytest.mark.parametrize("target", [pytest.param("/dev/zero", marks=posix_only("/dev/zero")), "folder"])
def test_cert_that_is_not_a_regular_file_is_refused_without_hanging(tmp_path: Path, target: str) -> None:
    (tmp_path / "folder").mkdir()
    path = tmp_path / "pins.toml"
    path.write_text(doc(ps(issuers=f'[{{ cert = "{target}" }}]')))
    with pytest.raises(PinsFileError, match="not a regular file"):
        load_pins(path)
