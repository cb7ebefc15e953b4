"""pinclient as python-tuf's transport: a TUF repository made here with python-tuf's own Metadata
API (root, targets, snapshot, timestamp; one target), served over real TLS on 127.0.0.1. Through
the pinned server, tuf's Updater refreshes and downloads the verified target; through a server with
a rogue-issuer certificate, ``Updater.refresh()`` fails with the pin violation as the cause and the
server never sees a request byte."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("tuf.ngclient", reason="the tuf extra is not installed")

from securesystemslib.signer import CryptoSigner
from tuf.api import exceptions
from tuf.api.metadata import (
    Metadata,
    MetaFile,
    Root,
    Snapshot,
    TargetFile,
    Targets,
    Timestamp,
)
from tuf.api.serialization.json import JSONSerializer
from tuf.ngclient import Updater

from pinclient import PinViolation
from pinclient._demo import LoopbackServer, Response, Route
from pinclient.config import PinConfig
from pinclient.errors import UsageError
from pinclient.tuf import PinnedFetcher

from .conftest import HOST, PKI, ServeHTTPS, pinset, write_pins

TARGET = "app-2.1.tar.gz"
PAYLOAD = b"the TUF-verified update\n" * 2000
EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "tuf_updater.py"


def tuf_repository(payload: bytes = PAYLOAD) -> dict[str, bytes]:
    """Signed metadata for one target, as the repository's files (path → bytes)."""
    signer = CryptoSigner.generate_ed25519()
    expires = dt.datetime.now(dt.timezone.utc).replace(microsecond=0) + dt.timedelta(days=7)
    root = Root(expires=expires, consistent_snapshot=False)
    for role in ("root", "targets", "snapshot", "timestamp"):
        root.add_key(signer.public_key, role)
    targets = Targets(expires=expires)
    targets.targets[TARGET] = TargetFile.from_data(TARGET, payload, ["sha256"])
    snapshot = Snapshot(expires=expires)
    snapshot.meta["targets.json"] = MetaFile(version=targets.version)
    timestamp = Timestamp(expires=expires)
    timestamp.snapshot_meta = MetaFile(version=snapshot.version)
    files = {}
    for signed in (root, targets, snapshot, timestamp):
        metadata = Metadata(signed)
        metadata.sign(signer)
        files[f"/metadata/{signed.type}.json"] = metadata.to_bytes(JSONSerializer(compact=False))
    files["/metadata/1.root.json"] = files["/metadata/root.json"]
    files[f"/targets/{TARGET}"] = payload
    return files


def routes(files: dict[str, bytes], target: bytes | None = None) -> dict[str, Response | object]:
    served: dict[str, Response | object] = {path: Response(200, data) for path, data in files.items()}
    if target is not None:
        served[f"/targets/{TARGET}"] = Response(200, target)
    return served


def updater(tmp: Path, server: LoopbackServer, fetcher: PinnedFetcher, root: bytes) -> Updater:
    (tmp / "metadata").mkdir(parents=True, exist_ok=True)
    (tmp / "targets").mkdir(exist_ok=True)
    return Updater(str(tmp / "metadata"), server.url("/metadata/"), str(tmp / "targets"),
                   server.url("/targets/"), fetcher=fetcher, bootstrap=root)


def test_pinned_tuf_repository_refreshes_and_downloads_the_verified_target(
        root_pinned_config: PinConfig, tmp_path: Path, https_server: ServeHTTPS) -> None:
    files = tuf_repository()
    with https_server(routes(files)) as server, \
            PinnedFetcher(root_pinned_config) as fetcher:
        client = updater(tmp_path / "client", server, fetcher, files["/metadata/root.json"])
        client.refresh()
        info = client.get_targetinfo(TARGET)
        assert info is not None
        assert info.length == len(PAYLOAD)
        path = client.download_target(info)
    assert Path(path).read_bytes() == PAYLOAD
    assert {"/metadata/2.root.json", "/metadata/timestamp.json", "/metadata/snapshot.json",
            "/metadata/targets.json", f"/targets/{TARGET}"} <= set(server.requests)
    assert fetcher.manager.guard.checks >= 1


def test_rogue_issuer_makes_refresh_fail_with_the_pin_violation_as_cause(
        pki: PKI, root_pinned_config: PinConfig, tmp_path: Path, https_server: ServeHTTPS) -> None:
    files = tuf_repository()
    # A valid certificate for the host, from a trusted root that is not pinned (Comodo 2011).
    with https_server(routes(files), issuer=pki.rogue_root) as server, \
            PinnedFetcher(root_pinned_config) as fetcher:
        client = updater(tmp_path / "client", server, fetcher, files["/metadata/root.json"])
        with pytest.raises(exceptions.DownloadError) as info:
            client.refresh()
        server.wait_idle()
    violation = info.value.__cause__
    assert isinstance(violation, PinViolation)
    assert violation.host == HOST
    assert violation.reason == "unexpected-issuer"
    assert "UTN-USERFirst-Hardware" in str(info.value)
    assert server.requests == []
    assert all(conn.received == b"" for conn in server.conns)
    assert not list((tmp_path / "client" / "targets").iterdir())


def test_tampered_target_from_the_pinned_server_is_refused_by_tuf(
        root_pinned_config: PinConfig, tmp_path: Path, https_server: ServeHTTPS) -> None:
    # Defence in depth: the right server, the wrong bytes (a compromised server) -> TUF refuses.
    files = tuf_repository()
    evil = PAYLOAD[:-1] + b"!"
    with https_server(routes(files, target=evil)) as server, PinnedFetcher(root_pinned_config) as fetcher:
        client = updater(tmp_path / "client", server, fetcher, files["/metadata/root.json"])
        info = client.get_targetinfo(TARGET)
        assert info is not None
        with pytest.raises(exceptions.LengthOrHashMismatchError):
            client.download_target(info)
    assert not list((tmp_path / "client" / "targets").iterdir())


def test_http_error_status_is_a_download_http_error(root_pinned_config: PinConfig,
                                                    https_server: ServeHTTPS) -> None:
    with https_server() as server, \
            PinnedFetcher(root_pinned_config) as fetcher:
        with pytest.raises(exceptions.DownloadHTTPError) as info:
            fetcher.download_bytes(server.url("/metadata/2.root.json"), 1000)
    assert info.value.status_code == 404


def test_fetcher_needs_exactly_one_of_config_and_manager(root_pinned_config: PinConfig) -> None:
    with pytest.raises(UsageError):
        PinnedFetcher()
    with PinnedFetcher(root_pinned_config) as fetcher, pytest.raises(UsageError):
        PinnedFetcher(root_pinned_config, manager=fetcher.manager)


def test_tuf_updater_example_downloads_and_refuses_a_rogue_server(pki: PKI, tmp_path: Path,
                                                                  https_server: ServeHTTPS) -> None:
    # The example runs as a user would run it; its certificates are for "localhost", which the child
    # process resolves without the tests' DNS patching.
    files = tuf_repository()
    body = pinset("example-updates", ["localhost"], f'{{ spki_sha256 = "{pki.pin_of(pki.pinned_root)}" }}')
    pins = write_pins(tmp_path / "cfg", body, bundle=pki.bundle)
    root = tmp_path / "root.json"
    root.write_bytes(files["/metadata/root.json"])
    env = {**os.environ, "no_proxy": "localhost,127.0.0.1", "NO_PROXY": "localhost,127.0.0.1"}

    def run(server: LoopbackServer, cache: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, str(EXAMPLE), "--pins", str(pins), "--root", str(root),
             "--metadata-url", server.url("/metadata/", host="localhost"),
             "--targets-url", server.url("/targets/", host="localhost"), "--cache", str(cache),
             TARGET], env=env, capture_output=True, text=True, timeout=60)

    with https_server(routes(files), host="localhost") as good:
        ok = run(good, tmp_path / "cache-good")
    assert ok.returncode == 0, ok.stderr
    saved = Path(ok.stdout.strip().splitlines()[-1])
    assert saved.read_bytes() == PAYLOAD
    with https_server(routes(files), issuer=pki.rogue_root, host="localhost") as bad:
        refused = run(bad, tmp_path / "cache-bad")
    assert refused.returncode == 3, refused.stderr
    assert "pinning failure" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert bad.requests == []


def test_fetcher_drops_credentials_on_a_redirect_to_another_port(root_pinned_config: PinConfig,
                                                                 https_server: ServeHTTPS) -> None:
    # The fetcher lets urllib3 follow redirects; its Retry must keep urllib3's
    # remove_headers_on_redirect, which drops credentials on any change of scheme, host or port.
    seen: dict[str, dict[str, str]] = {}

    def record(name: str, response: Response) -> Route:
        def route(path: str, headers: dict[str, str]) -> Response:
            seen[name] = headers
            return response
        return route

    credentials = {"Authorization": "Bearer s3cret", "Cookie": "session=s3cret",
                   "Proxy-Authorization": "Basic czNjcmV0"}
    with https_server() as other, https_server() as origin, \
            PinnedFetcher(root_pinned_config, headers=credentials) as fetcher:
        other.routes["/t"] = record("other port", Response(200, b"target"))
        origin.routes["/t"] = record("origin", Response(302, headers={"Location": other.url("/t")}))
        assert fetcher.download_bytes(origin.url("/t"), 1000) == b"target"
    assert {"authorization", "cookie", "proxy-authorization"} <= set(seen["origin"])
    assert not {"authorization", "cookie", "proxy-authorization"} & set(seen["other port"])
