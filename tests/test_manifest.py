"""Signed manifests (``--manifest URL``): a minisign-signed JSON document names the update, its size
and hash. The client verifies the signature with the pinset's keys, refuses an expired manifest
(freeze) and an older version than the installed one (rollback), then fetches the payload through
the same pins with the manifest's size and hash checked."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from pathlib import Path

import pytest

from pinclient import IntegrityError, RollbackError, SignatureError, UsageError
from pinclient import minisign as ms
from pinclient._cli.main import fetch_main
from pinclient._demo import LoopbackServer, Response
from pinclient.config import PinConfig, load_pins
from pinclient.manifest import (
    Manifest,
    check_manifest,
    compare_versions,
    fetch_from_manifest,
    fetch_manifest,
    parse_manifest,
    parse_version,
)

from .conftest import HOST, PKI, ServeHTTPS, pinset, write_pins

PUBLISHER = ms.SecretKey(key_id=bytes.fromhex("0102030405060708"), seed=b"\x11" * 32)
STRANGER = ms.SecretKey(key_id=bytes.fromhex("a1a2a3a4a5a6a7a8"), seed=b"\x22" * 32)
PAYLOAD = b"app 2.1 archive bytes\n" * 5000
OLD = b"app 2.0, installed and working"
NOW = dt.datetime(2026, 6, 1, 12, 0, tzinfo=dt.timezone.utc)
BASE = "https://updates.test/channel/latest.json"


def manifest_doc(version: str = "2.1.0", *, url: str = "app-2.1.tar.gz", payload: bytes = PAYLOAD,
                 expires: str | None = "2099-01-01T00:00:00Z", **extra: object) -> bytes:
    doc: dict[str, object] = {"name": "app", "version": version, "url": url, "size": len(payload),
                              "sha256": hashlib.sha256(payload).hexdigest(), **extra}
    if expires is not None:
        doc["expires"] = expires
    return json.dumps(doc).encode()


def routes(doc: bytes, *, key: ms.SecretKey = PUBLISHER, payload: bytes = PAYLOAD) -> dict[str, object]:
    return {"/channel/latest.json": Response(200, doc),
            "/channel/latest.json.minisig": Response(200, ms.sign(key, doc, trusted_comment="manifest")),
            "/channel/app-2.1.tar.gz": Response(200, payload)}


@pytest.fixture
def config(pki: PKI, tmp_path: Path) -> PinConfig:
    body = pinset("example-updates", [HOST], f'{{ spki_sha256 = "{pki.pin_of(pki.pinned_root)}" }}')
    body += f'signing_keys = ["{PUBLISHER.public_key.to_string()}"]\n'
    return load_pins(write_pins(tmp_path / "cfg", body, bundle=pki.bundle))


def cli(server: LoopbackServer, config: PinConfig, dest: Path, *extra: str) -> int:
    assert config.path is not None
    return fetch_main(["--manifest", server.url("/channel/latest.json"), "-o", str(dest),
                       "--pins", str(config.path), "--retries", "0", *extra])


# --------------------------------------------------------------------------- versions (pure)


@pytest.mark.parametrize(("a", "b", "order"), [
    ("2.1", "2.1.0", 0), ("2.10", "2.9", 1), ("2.1.1", "2.1", 1), ("1", "1.0.0.1", -1),
    ("10.0", "9.99.99", 1), ("0.9", "0.10", -1), ("2.01", "2.1", 0),
])
def test_versions_compare_as_dotted_numbers(a: str, b: str, order: int) -> None:
    assert compare_versions(a, b) == order
    assert compare_versions(b, a) == -order


@pytest.mark.parametrize("text", ["", "v2.1", "2.1rc1", "2..1", "2.1.", "2.1-beta", " 2.1", "1" * 19,
                                  ".".join(["1"] * 17)])
def test_versions_with_anything_but_numbers_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="dotted numbers"):
        parse_version(text)


# --------------------------------------------------------------------------- parsing and checks (pure)


def test_relative_url_is_resolved_against_the_manifest() -> None:
    m = parse_manifest(manifest_doc(url="../files/app.tar.gz", notes="ignored"), base_url=BASE)
    assert m.url == "https://updates.test/files/app.tar.gz"
    assert m.expires == dt.datetime(2099, 1, 1, tzinfo=dt.timezone.utc)
    assert (m.name, m.version, m.size) == ("app", "2.1.0", len(PAYLOAD))
    absolute = parse_manifest(manifest_doc(url="https://cdn.updates.test/a.bin", expires=None), base_url=BASE)
    assert absolute.url == "https://cdn.updates.test/a.bin"
    assert absolute.expires is None


@pytest.mark.parametrize(("doc", "message"), [
    (b"not json", "not valid JSON"),
    (b"[1, 2]", "not a JSON object"),
    (b'{"name": "app", "name": "evil"}', "appears twice"),
    (manifest_doc(url="http://updates.test/app.tar.gz"), "https://"),
    (manifest_doc(version="2.1rc1"), "'version'"),
    (manifest_doc(expires="2099-01-01"), "time zone"),
    (manifest_doc(expires="2099-01-01T00:00:00"), "time zone"),
    (json.dumps({"name": "app", "version": "1", "url": "a", "size": True, "sha256": "0" * 64}).encode(),
     "'size'"),
    (json.dumps({"name": "app", "version": "1", "url": "a", "size": 1, "sha256": "00"}).encode(), "'sha256'"),
    (json.dumps({"version": "1", "url": "a", "size": 1, "sha256": "0" * 64}).encode(), "'name'"),
])
def test_malformed_manifest_is_an_integrity_error(doc: bytes, message: str) -> None:
    with pytest.raises(IntegrityError, match=message) as info:
        parse_manifest(doc, base_url=BASE)
    assert info.value.exit_code == 5


def test_expired_manifest_is_refused_as_a_freeze_attack() -> None:
    m = parse_manifest(manifest_doc(expires="2026-06-01T11:59:59Z"), base_url=BASE)
    with pytest.raises(RollbackError) as info:
        check_manifest(m, now=NOW)
    assert info.value.reason == "expired"
    assert "freeze" in info.value.message
    assert info.value.exit_code == 5
    check_manifest(m, now=NOW - dt.timedelta(seconds=2))  # one second earlier it was still good


def test_older_version_than_installed_is_refused_as_a_rollback() -> None:
    m = parse_manifest(manifest_doc(version="2.1.0"), base_url=BASE)
    with pytest.raises(RollbackError) as info:
        check_manifest(m, now=NOW, installed_version="2.10")
    assert (info.value.reason, info.value.version, info.value.installed) == ("rollback", "2.1.0", "2.10")
    check_manifest(m, now=NOW, installed_version="2.1")  # the same version is not a rollback
    check_manifest(m, now=NOW, installed_version="2.0.9")


def test_manifest_for_another_product_is_refused() -> None:
    m = Manifest(name="other-app", version="9", url="https://updates.test/x", size=1, sha256="0" * 64)
    with pytest.raises(IntegrityError, match="other-app"):
        check_manifest(m, now=NOW, name="app")


# --------------------------------------------------------------------------- over TLS


def test_manifest_happy_path(config: PinConfig, tmp_path: Path, https_server: ServeHTTPS) -> None:
    dest = tmp_path / "app.tar.gz"
    dest.write_bytes(OLD)
    with https_server(routes(manifest_doc())) as server:
        result = fetch_from_manifest(server.url("/channel/latest.json"), dest, config=config,
                                     installed_version="2.0", name="app")
    assert dest.read_bytes() == PAYLOAD
    assert result.fetch is not None
    assert result.fetch.url == server.url("/channel/app-2.1.tar.gz")
    assert result.manifest.version == "2.1.0"
    assert result.manifest.signature is not None
    assert result.manifest.signature.key_id_hex == PUBLISHER.key_id_hex
    # The manifest's signature first, then the manifest, then the payload; the payload needs no
    # .minisig of its own: the signed manifest vouches for its hash.
    assert server.requests == ["/channel/latest.json.minisig", "/channel/latest.json",
                               "/channel/app-2.1.tar.gz"]


def test_cli_manifest_prints_the_manifest_and_the_download(config: PinConfig, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str],
                                                           https_server: ServeHTTPS) -> None:
    with https_server(routes(manifest_doc())) as server:
        monkey_cwd_dest = tmp_path / "out.tar.gz"
        assert cli(server, config, monkey_cwd_dest, "--installed-version", "2.0") == 0
        out = capsys.readouterr().out
        assert cli(server, config, tmp_path / "j.tar.gz", "--json") == 0
        data = json.loads(capsys.readouterr().out)
    assert f"manifest app 2.1.0 from {server.url('/channel/latest.json')}" in out
    assert f"signed by key {PUBLISHER.key_id_hex}" in out
    assert "saved" in out
    assert monkey_cwd_dest.read_bytes() == PAYLOAD
    assert data["ok"] is True
    assert data["up_to_date"] is False
    assert data["manifest"]["version"] == "2.1.0"
    assert data["manifest"]["signed_by"] == PUBLISHER.key_id_hex
    assert data["sha256"] == hashlib.sha256(PAYLOAD).hexdigest()


def test_same_version_as_installed_fetches_nothing(config: PinConfig, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str],
                                                   https_server: ServeHTTPS) -> None:
    dest = tmp_path / "app.tar.gz"
    dest.write_bytes(OLD)
    with https_server(routes(manifest_doc())) as server:
        assert cli(server, config, dest, "--installed-version", "2.1") == 0
        result = fetch_from_manifest(server.url("/channel/latest.json"), dest, config=config,
                                     installed_version="2.1.0")
    assert "up to date" in capsys.readouterr().out
    assert result.up_to_date
    assert dest.read_bytes() == OLD
    assert "/channel/app-2.1.tar.gz" not in server.requests


@pytest.mark.parametrize(("case", "served", "extra", "message"), [
    ("rollback", lambda: routes(manifest_doc(version="2.1.0")), ["--installed-version", "2.2"],
     "rollback"),
    ("expired", lambda: routes(manifest_doc(expires="2020-01-01T00:00:00Z")), [], "freeze attack"),
    ("wrong key", lambda: routes(manifest_doc(), key=STRANGER), [], "not trusted"),
    ("tampered manifest", lambda: {**routes(manifest_doc()),
                                   "/channel/latest.json": Response(200, manifest_doc(version="9.0"))},
     [], "does not match"),
    ("missing signature", lambda: {**routes(manifest_doc()),
                                   "/channel/latest.json.minisig": Response(404, b"")}, [], "HTTP 404"),
    ("hash mismatch", lambda: routes(manifest_doc(), payload=PAYLOAD[:-1] + b"!"), [], "SHA-256 mismatch"),
    ("size mismatch", lambda: routes(manifest_doc(), payload=PAYLOAD + b"!"), [], "declares"),
    ("wrong product", lambda: routes(manifest_doc()), ["--manifest-name", "other"], "is for 'app'"),
])
def test_refused_manifests_are_exit_5_and_dest_keeps_its_old_bytes(
        config: PinConfig, tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str,
        served: object, extra: list[str], message: str, https_server: ServeHTTPS) -> None:
    dest = tmp_path / "app.tar.gz"
    dest.write_bytes(OLD)
    with https_server(served()) as server:  # type: ignore[operator]
        code = cli(server, config, dest, *extra)
    err = capsys.readouterr().err
    assert code == 5, err
    assert message in err
    assert dest.read_bytes() == OLD
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("app.tar.gz.")) == []
    if case not in ("hash mismatch", "size mismatch"):
        assert "/channel/app-2.1.tar.gz" not in server.requests, "refused before the payload"


def test_payload_named_by_the_manifest_goes_through_the_same_pins(pki: PKI, tmp_path: Path,
                                                                  https_server: ServeHTTPS) -> None:
    rogue = https_server({"/app.tar.gz": Response(200, PAYLOAD)}, issuer=pki.rogue_root, host="cdn.updates.test")
    body = pinset("example-updates", [HOST, "cdn.updates.test"],
                  f'{{ spki_sha256 = "{pki.pin_of(pki.pinned_root)}" }}')
    body += f'signing_keys = ["{PUBLISHER.public_key.to_string()}"]\n'
    cfg = load_pins(write_pins(tmp_path / "cfg", body, bundle=pki.bundle))
    with rogue:
        doc = manifest_doc(url=rogue.url("/app.tar.gz", host="cdn.updates.test"))
        with https_server(routes(doc)) as server:
            assert cfg.path is not None
            code = fetch_main(["--manifest", server.url("/channel/latest.json"), "-o",
                               str(tmp_path / "app.tar.gz"), "--pins", str(cfg.path), "-q"])
    assert code == 3
    assert rogue.requests == []
    assert not (tmp_path / "app.tar.gz").exists()


def test_manifest_needs_a_signing_key(root_pinned_config: PinConfig,
                                      https_server: ServeHTTPS) -> None:
    with https_server(routes(manifest_doc())) as server:
        with pytest.raises(UsageError, match="must be signed"):
            fetch_manifest(server.url("/channel/latest.json"), config=root_pinned_config)
        # --signing-key supplies one.
        m = fetch_manifest(server.url("/channel/latest.json"), config=root_pinned_config,
                           signing_keys=[PUBLISHER.public_key.to_string()], now=NOW)
        with pytest.raises(SignatureError):
            fetch_manifest(server.url("/channel/latest.json"), config=root_pinned_config,
                           signing_keys=[STRANGER.public_key.to_string()])
    assert m.version == "2.1.0"
    assert server.requests.count("/channel/latest.json") == 1


@pytest.mark.parametrize("argv", [
    ["https://updates.test/a", "--manifest", "https://updates.test/m.json"],
    ["--manifest", "https://updates.test/m.json", "--sha256", "00" * 32],
    ["--manifest", "https://updates.test/m.json", "--installed-version", "2.1rc1"],
    ["https://updates.test/a", "--installed-version", "2.0"],
    ["https://updates.test/a", "--manifest-name", "app"],
    [],
])
def test_manifest_usage_errors(config: PinConfig, argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert config.path is not None
    assert fetch_main([*argv, "--pins", str(config.path)]) == 2
    assert "Traceback" not in capsys.readouterr().err
