"""``pinclient pin``: the printed block, pasted into a pins.toml, verifies the same server and
refuses an impostor; ``--pem`` works offline; failures have the right exit codes."""

from __future__ import annotations

from pathlib import Path

import pytest

from pinclient import PinViolation, fetch_update, load_pins
from pinclient._cli.main import main
from pinclient._demo import Response
from pinclient.config import tomllib  # tomli on Python 3.10

from .conftest import HOST, PKI, ServeHTTPS


def paste(tmp_path: Path, output: str, bundle: Path) -> Path:
    """What an operator does: a new pins.toml with the printed output below [defaults]."""
    folder = tmp_path / "pasted"
    folder.mkdir(exist_ok=True)
    path = folder / "pins.toml"
    path.write_text(f'version = 1\n[defaults]\nca_bundle = "{bundle}"\n\n{output}')
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
        config = load_pins(paste(tmp_path, output, pki.bundle))
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
