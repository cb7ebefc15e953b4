"""Attacks from the catalogue (docs/security.md) that no other test file covers, over real TLS on
127.0.0.1. Each test would fail if the defence it names were removed."""

from __future__ import annotations

import hashlib
import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from pinclient import NetworkError, PinningPoolManager, PinViolation, StorageError, fetch_update
from pinclient._cli.main import main
from pinclient._demo import LoopbackServer, Response
from pinclient._pki import CA, Leaf
from pinclient._tls import shared_context
from pinclient.config import PinConfig, load_pins
from pinclient.transport import PinGuard

# --------------------------------------------------------------------------- cross-signed chains
from .conftest import HOST, PKI, ServeHTTPS, pinset, write_pins


@pytest.fixture(scope="module")
def cross(pki: PKI) -> tuple[CA, CA]:
    """An intermediate under the rogue root, and the same key and subject cross-signed by the
    pinned root: a leaf it issues has one valid path through each root."""
    issuing = pki.rogue_root.child_ca("Cross Issuing CA", org="Elsewhere")
    cross_signed = CA("", parent=pki.pinned_root, key=issuing.key, subject=issuing.subject)
    return issuing, cross_signed


def _serve_path(https_server: ServeHTTPS, leaf: Leaf, path: list[CA],
                extra: tuple[CA, ...] = ()) -> LoopbackServer:
    served = Leaf(cert=leaf.cert, key=leaf.key, parents=[ca.cert for ca in path])
    return https_server({"/u": Response(200, b"update")}, leaf=served, extra=[ca.cert for ca in extra])


def test_cross_signed_path_through_the_pinned_root_is_accepted(pki: PKI, cross: tuple[CA, CA],
                                                               root_pinned_config: PinConfig,
                                                               tmp_path: Path,
                                                               https_server: ServeHTTPS) -> None:
    issuing, cross_signed = cross
    leaf = issuing.issue_leaf(HOST)
    with _serve_path(https_server, leaf, [cross_signed, pki.pinned_root]) as server:
        result = fetch_update(server.url("/u"), tmp_path / "u", config=root_pinned_config)
    assert result.chain[-1].spki_sha256 == pki.pin_of(pki.pinned_root)


def test_cross_signed_chain_verified_through_the_other_root_is_refused(pki: PKI, cross: tuple[CA, CA],
                                                                      root_pinned_config: PinConfig,
                                                                      tmp_path: Path,
                                                                      https_server: ServeHTTPS) -> None:
    # The same leaf has a valid path through the pinned root, but the server sends the other one:
    # only the path OpenSSL verified counts, never a path that could have been built.
    issuing, _ = cross
    leaf = issuing.issue_leaf(HOST)
    with _serve_path(https_server, leaf, [issuing, pki.rogue_root]) as server:
        with pytest.raises(PinViolation) as info:
            fetch_update(server.url("/u"), tmp_path / "u", config=root_pinned_config)
        server.wait_idle()
    assert info.value.reason == "unexpected-issuer"
    assert all(c.received == b"" for c in server.conns)
    assert pki.pin_of(pki.pinned_root) not in [c.spki_sha256 for c in info.value.chain]


@pytest.mark.parametrize("first", ["cross-signed", "rogue-signed"])
def test_both_paths_served_the_verdict_follows_the_verified_one(pki: PKI, cross: tuple[CA, CA],
                                                                root_pinned_config: PinConfig,
                                                                first: str,
                                                                https_server: ServeHTTPS) -> None:
    # Which path OpenSSL builds when both intermediates are sent is its business; pinclient's
    # verdict must agree with the chain it reports as verified, whichever that is.
    issuing, cross_signed = cross
    leaf = issuing.issue_leaf(HOST)
    if first == "cross-signed":
        path, extra = [cross_signed, pki.pinned_root], (issuing,)
    else:
        path, extra = [issuing, pki.rogue_root], (cross_signed,)
    pm = PinningPoolManager(root_pinned_config, retries=False)
    seen: list[list[str]] = []
    pm.guard.after_check.append(lambda verdict, port: seen.append([c.spki_b64 for c in verdict.chain]))
    try:
        with _serve_path(https_server, leaf, path, extra) as server:
            try:
                pm.request("GET", server.url("/u"))
                accepted, chain = True, seen[0]
            except PinViolation as e:
                accepted, chain = False, [c.spki_sha256 for c in e.chain]
    finally:
        pm.clear()
    assert chain[-1] in (pki.pin_of(pki.pinned_root), pki.pin_of(pki.rogue_root))
    assert accepted == (pki.pin_of(pki.pinned_root) in chain[1:])


# --------------------------------------------------------------------------- IDNA


def test_unicode_pinset_name_covers_the_idna_2008_host_urllib3_connects_to(pki: PKI, tmp_path: Path,
                                                                           https_server: ServeHTTPS) -> None:
    # Python's "idna" codec is IDNA 2003: it wrote the pinset for "straße.test" as strasse.test,
    # while urllib3 connects to xn--strae-oqa.test (IDNA 2008). With unpinned = "allow" a rogue
    # certificate for the real host then passed with plain TLS validation: a pin bypass.
    body = pinset("idn", ["straße.test"], f'{{ spki_sha256 = "{pki.pin_of(pki.pinned_root)}" }}')
    config = load_pins(write_pins(tmp_path / "c", body, bundle=pki.bundle, unpinned="allow"))
    rogue = pki.rogue_root.issue_leaf("xn--strae-oqa.test")
    with https_server({"/u": Response(200, b"evil")}, leaf=rogue) as server:
        url = f"https://straße.test:{server.port}/u"
        pm = PinningPoolManager(config, retries=False)
        try:
            with pytest.raises(PinViolation) as info:
                pm.request("GET", url)
        finally:
            pm.clear()
        with pytest.raises(PinViolation):
            fetch_update(url, tmp_path / "u", config=config)
        server.wait_idle()
    assert info.value.pinset == "idn"
    assert info.value.host == "xn--strae-oqa.test"
    assert all(c.received == b"" for c in server.conns)
    # The genuine server for that name passes.
    good = pki.pinned_int.issue_leaf("xn--strae-oqa.test")
    with https_server({"/u": Response(200, b"good")}, leaf=good) as server:
        assert fetch_update(f"https://Straße.test:{server.port}/u", tmp_path / "u",
                            config=config).pinset == "idn"


# --------------------------------------------------------------------------- verification off


@pytest.mark.parametrize("weakening", ["CERT_NONE", "no-hostname-check"])
def test_guard_refuses_a_connection_made_without_full_verification(pki: PKI, root_pinned_config: PinConfig,
                                                                    weakening: str,
                                                                    https_server: ServeHTTPS) -> None:
    # Even when the chain would satisfy the pins: with verification (or the host-name check) off,
    # get_verified_chain() reports what OpenSSL *tried*, which an attacker controls. The kwargs
    # that turn it off are refused up front (test_pinning.py::test_options_that_weaken_the_pin_are_
    # refused); this is the guard's own check, for a socket that got past them anyway.
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(cafile=str(pki.bundle))
    ctx.check_hostname = False
    if weakening == "CERT_NONE":
        ctx.verify_mode = ssl.CERT_NONE
    good = pki.pinned_int.issue_leaf(HOST)
    with https_server({"/u": Response(200, b"x")}, leaf=good) as server:
        sock = ctx.wrap_socket(socket.create_connection(("127.0.0.1", server.port)), server_hostname=HOST)
        try:
            with pytest.raises(PinViolation) as info:
                PinGuard(root_pinned_config).check(sock, server.port)
            # The same chain over a verifying context is accepted: the refusal is the verification.
            ok = shared_context(str(pki.bundle)).wrap_socket(
                socket.create_connection(("127.0.0.1", server.port)), server_hostname=HOST)
            try:
                assert PinGuard(root_pinned_config).check(ok, server.port).accepted
            finally:
                ok.close()
        finally:
            sock.close()
    assert info.value.reason == "no-verified-chain"
    assert info.value.exit_code == 3


# --------------------------------------------------------------------------- hostile URLs and paths


def test_redirect_to_an_unparsable_location_is_a_network_error(root_pinned_config: PinConfig,
                                                              tmp_path: Path,
                                                              https_server: ServeHTTPS) -> None:
    # A hostile server's Location used to escape as a bare ValueError (a traceback in the CLI).
    routes = {"/u": Response(302, headers={"Location": "https://[::1/evil"})}
    dest = tmp_path / "u"
    with https_server(routes) as origin:
        with pytest.raises(NetworkError) as info:
            fetch_update(origin.url("/u"), dest, config=root_pinned_config)
    assert info.value.exit_code == 6
    assert not dest.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".u")] == []


@pytest.mark.parametrize("argv", [
    ["fetch", "https://[::1/u.bin"],
    ["fetch", "https://[::1/u.bin", "-o", "out"],
    ["fetch", "https://updates.test/u.bin", "-o", "a\x00b"],
    ["check", "https://[::1/"],
    ["lint", "--against", "https://[::1/"],
    ["pin", "[::1"],
    ["pin", "--pem", ""],
    ["pin", "--pem", "a\x00b"],
])
def test_cli_malformed_urls_and_paths_are_usage_errors(pki: PKI, tmp_path: Path, argv: list[str],
                                                       monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    # Found with fuzz/fuzz_cli.py's inputs: each raised ValueError out of main().
    pins = write_pins(tmp_path / "c", pinset("x", [HOST], f'{{ spki_sha256 = "{pki.pin_of(pki.pinned_root)}" }}'),
                      bundle=pki.bundle)
    monkeypatch.setenv("PINCLIENT_PINS", str(pins))
    monkeypatch.chdir(tmp_path)
    if argv[0] == "lint":
        argv = [*argv, str(pins)]
    assert main(argv) == 2
    assert "Traceback" not in capsys.readouterr().err


# --------------------------------------------------------------------------- concurrent writers


def test_concurrent_writers_to_one_dest_are_serialised_by_its_lock(root_pinned_config: PinConfig,
                                                                  tmp_path: Path, payload: bytes,
                                                                  https_server: ServeHTTPS) -> None:
    # Two updaters fetching to the same DEST would share DEST.part. The second one waits for the
    # first's lock (or, with lock_timeout=0, fails at once with exit 7) and DEST is never mixed.
    holding, release = threading.Event(), threading.Event()

    def slow() -> Iterator[bytes]:
        yield payload[:1000]
        holding.set()
        release.wait(10)
        yield payload[1000:]

    digest = hashlib.sha256(payload).hexdigest()
    dest = tmp_path / "app.bin"
    dest.write_bytes(b"old version")
    results: dict[str, object] = {}

    def fetch(name: str, **kw: object) -> None:
        try:
            results[name] = fetch_update(server.url("/u"), dest, config=root_pinned_config, sha256=digest,
                                         size=len(payload), **kw)  # type: ignore[arg-type]
        except Exception as e:
            results[name] = e

    routes = {"/u": Response(200, slow, content_length=len(payload))}
    with https_server(routes) as server:
        first = threading.Thread(target=fetch, args=("first",))
        first.start()
        assert holding.wait(10)
        fetch("impatient", lock_timeout=0)
        waiter = threading.Thread(target=fetch, args=("patient",), kwargs={"lock_timeout": 30})
        waiter.start()
        assert dest.read_bytes() == b"old version", "nothing reaches DEST while the first is running"
        release.set()
        first.join(20)
        waiter.join(20)
    impatient = results["impatient"]
    assert isinstance(impatient, StorageError)
    assert impatient.exit_code == 7
    assert "being fetched by another process" in str(impatient)
    assert not isinstance(results["first"], Exception)
    assert not isinstance(results["patient"], Exception)
    assert dest.read_bytes() == payload
    assert sorted(p.name for p in tmp_path.iterdir() if "app.bin" in p.name) == ["app.bin"], \
        "no .part, .lock or temporary file left"


# --------------------------------------------------------------------------- rollback


def test_replayed_older_manifest_is_not_installed_by_the_example_updater(pki: PKI, tmp_path: Path,
                                                                         https_server: ServeHTTPS) -> None:
    # Rollback (TUF): a server, or anyone replaying its old answers, offers an older genuine release.
    # pinclient has no notion of versions; the updater compares them, as the example does.
    from .test_examples import LOCAL, run, tarball, update_routes

    pins = write_pins(tmp_path / "cfg", pinset("u", [LOCAL], f'{{ spki_sha256 = "{pki.pin_of(pki.pinned_root)}" }}'),
                      bundle=pki.bundle)
    app = tmp_path / "app"
    (app / "versions" / "2.1.0").mkdir(parents=True)
    (app / "CURRENT").write_text("2.1.0\n")
    old = tarball({"app.py": b"print('1.0.0, with a known hole')\n"})
    with https_server(update_routes("1.0.0", old), host=LOCAL) as server:
        done = run("embedded_updater.py", "--app-dir", str(app), "--manifest",
                   server.url("/latest.json", host=LOCAL), "--pins", str(pins), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "up to date: 2.1.0 (the server offers 1.0.0)" in done.stdout
    assert (app / "CURRENT").read_text() == "2.1.0\n"
    assert sorted(p.name for p in (app / "versions").iterdir()) == ["2.1.0"]
    assert server.requests == ["/latest.json"], "the old archive is not even downloaded"
