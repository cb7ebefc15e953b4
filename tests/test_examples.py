"""Every script in examples/ runs, as a user would run it (a fresh Python process), against real TLS
servers on 127.0.0.1, so the examples cannot rot. Certificates are for "localhost", which the child
processes resolve without the tests' DNS patching."""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from pinclient._demo import Response

from .conftest import PKI, ServeHTTPS, pinset, write_pins

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
LOCAL = "localhost"


def run(script: str, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "no_proxy": "localhost,127.0.0.1", "NO_PROXY": "localhost,127.0.0.1"}
    return subprocess.run([sys.executable, str(EXAMPLES / script), *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=60)


def test_every_example_is_run_by_a_test() -> None:
    # "tuf_updater.py" is run by tests/test_tuf.py, beside the TUF repository it needs.
    source = Path(__file__).read_text()
    for script in EXAMPLES.glob("*.py"):
        assert f'"{script.name}"' in source, f"{script.name} has no test"


@pytest.fixture
def pins(pki: PKI, tmp_path: Path) -> Path:
    body = pinset("example-updates", [LOCAL], f'{{ spki_sha256 = "{pki.pin_of(pki.pinned_root)}", '
                  'label = "Example Root R1" }')
    return write_pins(tmp_path / "cfg", body, bundle=pki.bundle)


# --------------------------------------------------------------------------- embedded_updater.py


def tarball(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def update_routes(version: str, archive: bytes, *, sha256: str | None = None) -> dict[str, Response]:
    manifest = {"version": version, "url": f"app-{version}.tar.gz",
                "sha256": sha256 or hashlib.sha256(archive).hexdigest(), "size": len(archive)}
    return {"/latest.json": Response(200, json.dumps(manifest).encode()),
            f"/app-{version}.tar.gz": Response(200, archive)}


def test_embedded_updater_installs_keeps_the_previous_version_and_rolls_back(
        pki: PKI, pins: Path, tmp_path: Path, https_server: ServeHTTPS) -> None:
    app = tmp_path / "app"
    (app / "versions" / "1.0.0").mkdir(parents=True)
    (app / "versions" / "1.0.0" / "app.py").write_text("print('1.0.0')\n")
    (app / "CURRENT").write_text("1.0.0\n")
    archive = tarball({"app.py": b"print('2.1.0')\n", "data/readme.txt": b"new\n"})
    leaf = pki.pinned_int.issue_leaf(LOCAL)
    with https_server(update_routes("2.1.0", archive), leaf=leaf) as server:
        manifest = server.url("/latest.json", host=LOCAL)
        first = run("embedded_updater.py", "--app-dir", str(app), "--manifest", manifest,
                    "--pins", str(pins), cwd=tmp_path)
        again = run("embedded_updater.py", "--app-dir", str(app), "--manifest", manifest,
                    "--pins", str(pins), cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert "updated 1.0.0 -> 2.1.0" in first.stdout
    assert (app / "CURRENT").read_text() == "2.1.0\n"
    assert (app / "PREVIOUS").read_text() == "1.0.0\n"
    assert (app / "versions" / "2.1.0" / "data" / "readme.txt").read_bytes() == b"new\n"
    assert (app / "versions" / "1.0.0" / "app.py").exists(), "the previous version is kept"
    assert sorted(p.name for p in app.iterdir()) == ["CURRENT", "PREVIOUS", "versions"]
    assert again.returncode == 0
    assert "up to date: 2.1.0" in again.stdout

    back = run("embedded_updater.py", "--app-dir", str(app), "--rollback", cwd=tmp_path)
    assert back.returncode == 0, back.stderr
    assert (app / "CURRENT").read_text() == "1.0.0\n"
    assert (app / "PREVIOUS").read_text() == "2.1.0\n"


def test_embedded_updater_refuses_a_rogue_server_and_changes_nothing(pki: PKI, pins: Path,
                                                                     tmp_path: Path,
                                                                     https_server: ServeHTTPS) -> None:
    app = tmp_path / "app"
    (app / "versions" / "1.0.0").mkdir(parents=True)
    (app / "CURRENT").write_text("1.0.0\n")
    archive = tarball({"app.py": b"evil\n"})
    leaf = pki.rogue_root.issue_leaf(LOCAL)
    with https_server(update_routes("9.9.9", archive), leaf=leaf) as server:
        proc = run("embedded_updater.py", "--app-dir", str(app), "--manifest",
                   server.url("/latest.json", host=LOCAL), "--pins", str(pins), cwd=tmp_path)
        server.wait_idle()
    assert proc.returncode == 3, proc.stderr
    assert "keeping 1.0.0" in proc.stderr
    assert "UTN-USERFirst-Hardware" in proc.stderr
    assert server.requests == []
    assert (app / "CURRENT").read_text() == "1.0.0\n"
    assert sorted(p.name for p in (app / "versions").iterdir()) == ["1.0.0"]
    assert sorted(p.name for p in app.iterdir()) == ["CURRENT", "versions"]


def test_embedded_updater_rejects_a_tampered_archive(pins: Path, tmp_path: Path,
                                                     https_server: ServeHTTPS) -> None:
    app = tmp_path / "app"
    (app / "versions" / "1.0.0").mkdir(parents=True)
    (app / "CURRENT").write_text("1.0.0\n")
    archive = tarball({"app.py": b"print('2.1.0')\n"})
    routes = update_routes("2.1.0", archive, sha256="00" * 32)
    with https_server(routes, host=LOCAL) as server:
        proc = run("embedded_updater.py", "--app-dir", str(app), "--manifest",
                   server.url("/latest.json", host=LOCAL), "--pins", str(pins), cwd=tmp_path)
    assert proc.returncode == 5, proc.stderr
    assert "SHA-256 mismatch" in proc.stderr
    assert (app / "CURRENT").read_text() == "1.0.0\n"
    assert sorted(p.name for p in app.iterdir()) == ["CURRENT", "versions"]
    assert sorted(p.name for p in (app / "versions").iterdir()) == ["1.0.0"]


def test_embedded_updater_refuses_an_archive_escaping_its_folder(pins: Path,
                                                                 tmp_path: Path,
                                                                 https_server: ServeHTTPS) -> None:
    app = tmp_path / "app"
    (app / "versions").mkdir(parents=True)
    archive = tarball({"../../outside.txt": b"x"})
    with https_server(update_routes("2.1.0", archive), host=LOCAL) as server:
        proc = run("embedded_updater.py", "--app-dir", str(app), "--manifest",
                   server.url("/latest.json", host=LOCAL), "--pins", str(pins), cwd=tmp_path)
    assert proc.returncode == 5, proc.stderr
    assert not (tmp_path / "outside.txt").exists()
    assert list((app / "versions").iterdir()) == []
    assert not (app / "CURRENT").exists()


# --------------------------------------------------------------------------- addon_distribution_check.py


def test_addon_distribution_check_prints_a_table_and_fails_on_a_rogue_mirror(pki: PKI, pins: Path,
                                                                             tmp_path: Path,
                                                                             https_server: ServeHTTPS) -> None:
    routes = {"/addon.xpi": Response(200, b"addon")}
    with https_server(routes, host=LOCAL) as good, \
            https_server(routes, issuer=pki.rogue_root, host=LOCAL) as rogue:
        ok_url, rogue_url = good.url("/addon.xpi", host=LOCAL), rogue.url("/addon.xpi", host=LOCAL)
        missing_url = good.url("/missing.xpi", host=LOCAL)
        mirrors = tmp_path / "mirrors.txt"
        mirrors.write_text(f"# mirrors\n{rogue_url}\n\n{missing_url}  # gone\n")
        all_ok = run("addon_distribution_check.py", "--pins", str(pins), ok_url, cwd=tmp_path)
        mixed = run("addon_distribution_check.py", "--pins", str(pins), ok_url, "--urls-file", str(mirrors),
                    cwd=tmp_path)
        markdown = run("addon_distribution_check.py", "--pins", str(pins), "--format", "markdown", ok_url,
                       cwd=tmp_path)
        rogue.wait_idle()
    assert all_ok.returncode == 0, all_ok.stderr
    header, row = all_ok.stdout.splitlines()
    assert header.split() == ["URL", "RESULT", "HTTP", "PINSET", "DETAIL"]
    assert row.split()[:4] == [ok_url, "ok", "200", "example-updates"]
    assert "Example Root R1" in row

    assert mixed.returncode == 3, "a pin violation outranks the HTTP error"
    lines = mixed.stdout.splitlines()
    assert len(lines) == 4
    assert lines[2].split()[:4] == [rogue_url, "REFUSED", "-", "example-updates"]
    assert "unexpected-issuer" in lines[2]
    assert "UTN-USERFirst-Hardware" in lines[2]
    assert lines[3].split()[:2] == [missing_url, "ERROR"]
    assert "404" in lines[3]
    assert rogue.requests == [], "the rogue mirror never saw a request"

    assert markdown.returncode == 0
    assert markdown.stdout.splitlines()[:2] == ["| URL | RESULT | HTTP | PINSET | DETAIL |", "|---|---|---|---|---|"]


# --------------------------------------------------------------------------- requests_session.py


def test_requests_session_example_fetches_through_the_pins(pki: PKI, pins: Path, tmp_path: Path,
                                                           payload: bytes, https_server: ServeHTTPS) -> None:
    pytest.importorskip("requests")
    routes = {"/latest.json": Response(200, payload)}
    with https_server(routes, host=LOCAL) as good:
        ok = run("requests_session.py", good.url("/latest.json", host=LOCAL), "--pins", str(pins),
                 "-o", str(tmp_path / "out.json"), cwd=tmp_path)
    with https_server(routes, issuer=pki.rogue_root, host=LOCAL) as rogue:
        refused = run("requests_session.py", rogue.url("/latest.json", host=LOCAL), "--pins", str(pins),
                      cwd=tmp_path)
        rogue.wait_idle()
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.strip() == f"200 {len(payload)} bytes sha256 {hashlib.sha256(payload).hexdigest()}"
    assert "pinned: localhost:" in ok.stderr
    assert (tmp_path / "out.json").read_bytes() == payload
    assert refused.returncode == 3
    assert "Certificate pinning failure for localhost" in refused.stderr
    assert all(c.received == b"" for c in rogue.conns)
