"""``ca_bundle = "system"`` (issue 16 §3): the operating system's trust store through truststore, only
where OpenSSL still verifies the chain the pins are checked against (Linux and the other OpenSSL
platforms); refused on Windows and macOS, where truststore verifies outside OpenSSL.

The system store is pointed at the test PKI with ``SSL_CERT_FILE``, which OpenSSL (and truststore's
OpenSSL back end) reads; the handshakes are real, on 127.0.0.1. The Windows and macOS refusals are
simulated (``platform.system()`` patched): truststore's back ends there are not exercised."""

from __future__ import annotations

import platform
import sys
from pathlib import Path

import pytest

from pinclient import PinsFileError, PinViolation, TLSError, UsageError, _tls, fetch_update
from pinclient._cli.main import fetch_main
from pinclient._demo import Response
from pinclient.config import PinConfig, load_pins

from .conftest import HOST, PKI, ServeHTTPS, pinset

BODY = b"update via the system trust store\n" * 100


def system_pins(folder: Path, pki: PKI) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "pins.toml"
    path.write_text('version = 1\n[defaults]\nca_bundle = "system"\n\n' + pinset(
        "example-updates", [HOST], f'{{ spki_sha256 = "{pki.pin_of(pki.pinned_root)}" }}'))
    return path


@pytest.fixture
def system_store(pki: PKI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The 'system' CA file is the test bundle (both trusted roots, as in every other test)."""
    empty = tmp_path / "no-certs"
    empty.mkdir()
    monkeypatch.setenv("SSL_CERT_FILE", str(pki.bundle))
    monkeypatch.setenv("SSL_CERT_DIR", str(empty))
    return pki.bundle


def test_system_trust_keeps_openssl_verification_and_the_pins(
        pki: PKI, tmp_path: Path, https_server: ServeHTTPS, system_store: Path) -> None:
    config = load_pins(system_pins(tmp_path / "cfg", pki))
    assert config.defaults.ca_bundle == "system"
    dest = tmp_path / "u.bin"
    with https_server({"/u": Response(200, BODY)}) as good:
        result = fetch_update(good.url("/u"), dest, config=config, retries=0)
    assert dest.read_bytes() == BODY
    assert result.pinset == "example-updates"
    assert result.chain[-1].subject == "CN=Example Root R1,O=Example Inc", "a verified chain, to the root"
    with https_server({"/u": Response(200, b"rogue")}, issuer=pki.rogue_root) as rogue:
        with pytest.raises(PinViolation):  # the 2011 replay: trusted by the system store, not pinned
            fetch_update(rogue.url("/u"), dest, config=config, retries=0)
        rogue.wait_idle()
        assert rogue.handshakes >= 1
        assert all(c.received == b"" for c in rogue.conns), "not one request byte"
    with https_server({"/u": Response(200, b"x")}, issuer=pki.untrusted_root) as stranger:
        with pytest.raises(TLSError):  # OpenSSL verified: a root outside the store fails the handshake
            fetch_update(stranger.url("/u"), dest, config=config, retries=0)
    assert dest.read_bytes() == BODY


def test_system_trust_without_the_root_in_the_store_is_a_tls_failure(
        pki: PKI, tmp_path: Path, https_server: ServeHTTPS, monkeypatch: pytest.MonkeyPatch) -> None:
    other = tmp_path / "other.pem"
    other.write_bytes(pki.untrusted_root.cert_pem())
    monkeypatch.setenv("SSL_CERT_FILE", str(other))
    monkeypatch.setenv("SSL_CERT_DIR", str(tmp_path))
    config = load_pins(system_pins(tmp_path / "cfg", pki))
    with https_server({"/u": Response(200, BODY)}) as good:
        with pytest.raises(TLSError):
            fetch_update(good.url("/u"), tmp_path / "u.bin", config=config, retries=0)


@pytest.mark.parametrize("system", ["Windows", "Darwin"])
def test_system_trust_is_refused_where_truststore_verifies_outside_openssl(
        pki: PKI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, system: str,
        capsys: pytest.CaptureFixture[str]) -> None:
    # Simulated: on these platforms truststore handshakes with CERT_NONE and verifies through the
    # OS, so the chain CPython reports is unverified and the pins would be checked against it.
    monkeypatch.setattr(platform, "system", lambda: system)
    path = system_pins(tmp_path / "cfg", pki)
    with pytest.raises(PinsFileError, match=f'ca_bundle = "system" is refused on {system}') as info:
        load_pins(path)
    assert info.value.key == "ca_bundle"
    with pytest.raises(UsageError, match="no verified chain"):
        _tls.shared_context("system")  # a library caller building Defaults by hand
    code = fetch_main(["https://updates.test/u", "--ca-bundle", "system", "--pins",
                       str(write_plain_pins(tmp_path / "plain", pki)), "-o", str(tmp_path / "x")])
    assert code == 2
    err = capsys.readouterr().err
    assert "refused on" in err
    assert "Traceback" not in err


def write_plain_pins(folder: Path, pki: PKI) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "pins.toml"
    path.write_text(f'version = 1\n[defaults]\nca_bundle = "{pki.bundle}"\n\n' + pinset(
        "example-updates", [HOST], f'{{ spki_sha256 = "{pki.pin_of(pki.pinned_root)}" }}'))
    return path


def test_system_trust_without_truststore_installed_is_a_clear_usage_error(
        monkeypatch: pytest.MonkeyPatch, system_store: Path) -> None:
    monkeypatch.setitem(sys.modules, "truststore", None)  # import truststore raises ImportError
    monkeypatch.setattr(_tls, "_contexts", {})
    with pytest.raises(UsageError, match=r'pip install "pinclient\[truststore\]"'):
        _tls.shared_context("system")


def test_cli_ca_bundle_system(pki: PKI, tmp_path: Path, https_server: ServeHTTPS, system_store: Path,
                              capsys: pytest.CaptureFixture[str]) -> None:
    pins = write_plain_pins(tmp_path / "cfg", pki)
    dest = tmp_path / "u.bin"
    with https_server({"/u": Response(200, BODY)}) as good:
        assert fetch_main([good.url("/u"), "--ca-bundle", "system", "--pins", str(pins),
                           "-o", str(dest), "--retries", "0"]) == 0
    assert dest.read_bytes() == BODY
    assert 'pinset "example-updates" matched' in capsys.readouterr().out


def test_a_config_loaded_with_system_trust_names_it(pki: PKI, tmp_path: Path, system_store: Path) -> None:
    config: PinConfig = load_pins(system_pins(tmp_path / "cfg", pki))
    assert config.trust_bundle() == "system"
