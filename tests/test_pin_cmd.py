"""``pinclient pin``: its output, saved as pins.toml, verifies the same server and refuses an
impostor; ``--pem`` works offline, knows a v1 root for a CA and drops no certificate; failures
have the right exit codes and say what to change."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import ExtensionOID

from pinclient import PinViolation, fetch_update, load_pins
from pinclient._cli.main import fetch_main, main
from pinclient._demo import Response
from pinclient._pki import name, new_key
from pinclient.config import tomllib  # tomli on Python 3.10
from pinclient.policy import spki_sha256

from .conftest import HOST, PKI, ServeHTTPS, b64, pinset, posix_only, write_pins


def save(tmp_path: Path, output: str) -> Path:
    """What an operator does: `pinclient pin … > pins.toml`, nothing added."""
    folder = tmp_path / "saved"
    folder.mkdir(exist_ok=True)
    path = folder / "pins.toml"
    path.write_text(output)
    return path


def test_pin_output_pasted_into_pins_toml_verifies_the_same_server(
        pki: PKI, tmp_path: Path, payload: bytes, capsys: pytest.CaptureFixture[str],
        https_server: ServeHTTPS) -> None:
    routes = {"/update.bin": Response(200, payload)}
    with https_server(routes) as server:
        assert main(["pin", f"{HOST}:{server.port}", "--ca-bundle", str(pki.bundle)]) == 0
        output = capsys.readouterr().out
        server.wait_idle()
        assert server.requests == [], "pin only handshakes"
        config = load_pins(save(tmp_path, output))
        result = fetch_update(server.url("/update.bin"), tmp_path / "u", config=config)
    assert result.pinset == HOST
    assert result.size == len(payload)
    # The pins mean something: the same name from the rogue root is refused.
    with https_server(routes, issuer=pki.rogue_root) as server:
        with pytest.raises(PinViolation):
            fetch_update(server.url("/update.bin"), tmp_path / "u", config=config)


def test_pin_output_lists_the_chain_and_labels_each_ca(pki: PKI,
                                                        capsys: pytest.CaptureFixture[str],
                                                        https_server: ServeHTTPS) -> None:
    with https_server() as server:
        assert main(["pin", server.url("/some/path"), "--ca-bundle", str(pki.bundle)]) == 0
    out = capsys.readouterr().out
    doc = tomllib.loads(out)  # everything printed is TOML (the chain and advice are comments)
    [block] = doc["pinset"]
    assert block["name"] == HOST
    assert block["hosts"] == [HOST]
    assert block["issuers"] == [
        {"spki_sha256": pki.pin_of(pki.pinned_int), "label": "Example Issuing CA 2"},
        {"spki_sha256": pki.pin_of(pki.pinned_root), "label": "Example Root R1"},
    ]
    assert f"#   0: CN={HOST},O=pinclient test server" in out
    assert "#   2: CN=Example Root R1,O=Example Inc" in out
    not_after = pki.pinned_root.cert.not_valid_after_utc.date()
    assert f'label = "Example Root R1" }},  # notAfter {not_after}' in out
    assert "BACKUP" in out
    assert "report-only" in out


def test_pin_takes_the_trust_bundle_from_a_pins_file(pki: PKI, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str],
                                                     https_server: ServeHTTPS) -> None:
    pins = tmp_path / "pins.toml"
    pins.write_text(f'version = 1\n[defaults]\nca_bundle = "{pki.bundle}"\n')
    with https_server() as server:
        assert main(["pin", f"{HOST}:{server.port}", "--pins", str(pins)]) == 0
        # Without either, certifi's bundle is used, which does not know the test roots.
        assert main(["pin", f"{HOST}:{server.port}"]) == 6
    captured = capsys.readouterr()
    assert pki.pin_of(pki.pinned_root) in captured.out
    assert "TLS validation failed" in captured.err


def test_pin_from_a_pem_chain_works_offline(pki: PKI, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    leaf = pki.pinned_int.issue_leaf(HOST, "mirror.test")
    pem = tmp_path / "chain.pem"
    pem.write_bytes(leaf.chain_pem(include_root=True))
    assert main(["pin", "--pem", str(pem)]) == 0
    out = capsys.readouterr().out
    [block] = tomllib.loads(out)["pinset"]
    assert block["hosts"] == [HOST, "mirror.test"]
    assert [i["spki_sha256"] for i in block["issuers"]] == [pki.pin_of(pki.pinned_int),
                                                            pki.pin_of(pki.pinned_root)]
    assert "(not verified)" in out


def test_pin_from_a_ca_certificate_prints_a_backup_pin(pki: PKI, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    pem = tmp_path / "backup-ca.pem"
    pem.write_bytes(pki.untrusted_root.cert_pem())
    assert main(["pin", "--pem", str(pem)]) == 0
    [block] = tomllib.loads(capsys.readouterr().out)["pinset"]
    assert block["issuers"] == [{"spki_sha256": pki.pin_of(pki.untrusted_root),
                                 "label": "Nobody Trusts Me"}]
    assert block["hosts"] == ["CHANGE-ME.example.com"]


@pytest.mark.parametrize(("argv", "code"), [
    (["pin", "http://updates.test/"], 2),
    (["pin", "updates.test:notaport"], 2),
    (["pin", "--pem", "/nonexistent/chain.pem"], 2),
    (["pin", "updates.test:1", "--ca-bundle", "/nonexistent.pem"], 2),
])
def test_pin_usage_errors(argv: list[str], code: int, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == code
    err = capsys.readouterr().err
    assert err.strip()
    assert "Traceback" not in err


def test_pin_needs_a_target_or_a_pem(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["pin"])
    assert info.value.code == 2


def test_pin_leaf_only_pem_has_nothing_to_pin(pki: PKI, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    pem = tmp_path / "leaf.pem"
    leaf = pki.pinned_int.issue_leaf(HOST)
    pem.write_bytes(leaf.chain_pem()[: leaf.chain_pem().index(b"-----END CERTIFICATE-----") + 26])
    assert main(["pin", "--pem", str(pem)]) == 2
    assert "no CA certificate above the leaf" in capsys.readouterr().err


def test_pin_refused_connection_exits_6(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    assert main(["pin", f"127.0.0.1:{port}", "--timeout", "5"]) == 6
    assert "cannot connect" in capsys.readouterr().err


def test_pin_output_saved_as_is_works_with_fetch_update(
        pki: PKI, tmp_path: Path, payload: bytes, capsys: pytest.CaptureFixture[str],
        https_server: ServeHTTPS) -> None:
    # `pinclient pin HOST --ca-bundle B > pins.toml`, then `fetch-update --pins pins.toml`: once
    # failed twice (no `version = 1`, and the bundle it verified against was dropped).
    with https_server({"/update.bin": Response(200, payload)}) as server:
        assert main(["pin", f"{HOST}:{server.port}", "--ca-bundle", str(pki.bundle)]) == 0
        pins = save(tmp_path, capsys.readouterr().out)
        doc = tomllib.loads(pins.read_text())
        assert doc["version"] == 1
        assert doc["defaults"]["ca_bundle"] == str(pki.bundle.resolve())
        assert fetch_main([server.url("/update.bin"), "-o", str(tmp_path / "u"),
                           "--pins", str(pins)]) == 0
    assert (tmp_path / "u").read_bytes() == payload


def test_missing_trust_anchor_says_to_set_ca_bundle(
        pki: PKI, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        https_server: ServeHTTPS) -> None:
    # A pins file without ca_bundle validates against certifi's bundle, which lacks the test root:
    # OpenSSL's "unable to get local issuer certificate" names nothing in pins.toml; the message does.
    pin = f'{{ spki_sha256 = "{pki.pin_of(pki.pinned_root)}" }}'
    pins = write_pins(tmp_path / "cfg", pinset("p", [HOST], pin))
    with https_server({"/u": b"x"}) as server:
        assert fetch_main([server.url("/u"), "-o", str(tmp_path / "u"), "--pins", str(pins)]) == 6
        assert main(["pin", f"{HOST}:{server.port}"]) == 6
        assert main(["check", server.url("/u"), "--pins", str(pins)]) == 6
        captured = capsys.readouterr()
    fetch_err, pin_err = captured.err.strip().split("\n")
    for text in (fetch_err, pin_err, captured.out):
        assert "unable to get local issuer certificate" in text
        assert "set ca_bundle in [defaults]" in text
    assert not (tmp_path / "u").exists()


def _root_without_extensions(common_name: str) -> x509.Certificate:
    """An X.509 v1-style root: self-signed, with no extensions at all (no basicConstraints)."""
    key = new_key()
    subject = name(common_name, "Old PKI")
    now = dt.datetime.now(dt.timezone.utc)
    return (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=999))
            .sign(key, hashes.SHA256()))


def _pem(*certs: x509.Certificate) -> bytes:
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)


def test_pin_pem_takes_a_root_without_basic_constraints_for_a_ca(
        pki: PKI, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    v1 = _root_without_extensions("Class 3 Public Primary Certification Authority")
    pem = tmp_path / "roots.pem"
    for certs in ([v1], [v1, pki.untrusted_root.cert], [pki.untrusted_root.cert, v1]):
        pem.write_bytes(_pem(*certs))
        assert main(["pin", "--pem", str(pem)]) == 0
        [block] = tomllib.loads(capsys.readouterr().out)["pinset"]
        assert [i["spki_sha256"] for i in block["issuers"]] == [b64(spki_sha256(c)) for c in certs]
    # Below a leaf, too.
    leaf = pki.pinned_int.issue_leaf(HOST)
    pem.write_bytes(_pem(leaf.cert, v1))
    assert main(["pin", "--pem", str(pem)]) == 0
    [block] = tomllib.loads(capsys.readouterr().out)["pinset"]
    assert [i["spki_sha256"] for i in block["issuers"]] == [b64(spki_sha256(v1))]


def test_pin_pem_never_drops_a_certificate_silently(
        pki: PKI, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    leaf = pki.pinned_int.issue_leaf(HOST)
    pem = tmp_path / "mixed.pem"
    pem.write_bytes(_pem(pki.untrusted_root.cert, leaf.cert))  # a leaf inside a bundle of CAs
    assert main(["pin", "--pem", str(pem)]) == 2
    err = capsys.readouterr().err
    assert "certificate 2" in err
    assert "not a CA" in err


def test_pin_pem_with_an_unparsable_extension_is_a_usage_error(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    key = new_key()
    subject = name("Odd Policies Root", "Old PKI")
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(7)
            .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=9))
            .add_extension(x509.UnrecognizedExtension(ExtensionOID.CERTIFICATE_POLICIES,
                                                      b"\x30\x03\x02\x01\x00"), critical=False)
            .sign(key, hashes.SHA256()))
    pem = tmp_path / "odd.pem"
    pem.write_bytes(_pem(cert))
    assert main(["pin", "--pem", str(pem)]) == 2
    err = capsys.readouterr().err
    assert "certificate 1 (Odd Policies Root) has an extension that cannot be parsed" in err
    assert "Traceback" not in err


def test_pin_pem_leaf_without_san_suggests_its_cn(pki: PKI, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    key = new_key()
    now = dt.datetime.now(dt.timezone.utc)
    leaf = (x509.CertificateBuilder().subject_name(name("old.updates.test", "Old"))
            .issuer_name(pki.pinned_int.subject).public_key(key.public_key()).serial_number(9)
            .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=9))
            .sign(pki.pinned_int.key, hashes.SHA256()))
    pem = tmp_path / "chain.pem"
    pem.write_bytes(_pem(leaf, pki.pinned_int.cert))
    assert main(["pin", "--pem", str(pem)]) == 0
    out = capsys.readouterr().out
    [block] = tomllib.loads(out)["pinset"]
    assert block["hosts"] == ["old.updates.test"]
    assert "CHANGE-ME" not in out
    assert "no subjectAltName" in out


@posix_only("/dev/zero")
def test_pin_pem_reads_a_bounded_amount(capsys: pytest.CaptureFixture[str]) -> None:
    # An endless "file" (/dev/zero) is a usage error after 16 MiB, not a hang or a MemoryError.
    assert main(["pin", "--pem", "/dev/zero"]) == 2
    assert "larger than 16 MiB" in capsys.readouterr().err
