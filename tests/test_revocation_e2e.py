"""Revocation end to end: pins.toml ``revocation`` through the pinned transport, fetch_update and the
``fetch-update`` command, against a real TLS update server on 127.0.0.1 whose leaf and intermediate
name OCSP and CRL URLs on a loopback responder (OpenSSL's own ``openssl ocsp`` for OCSP).

The world: ``root`` (trusted, pinned) → ``intermediate`` (names ``/root.crl``) → leaves made per
test (naming ``/ocsp`` and/or ``/int.crl``, or a responder that is down, or nothing). Every refusal
proves that not one request byte reached the update server; every cache or "off" claim is proved
by counting the responder's requests.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import urllib3
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from pinclient import (
    CertificateRevoked,
    PinningPoolManager,
    PinsFileError,
    RevocationCheckFailed,
    fetch_update,
)
from pinclient._cli.main import fetch_main
from pinclient._demo import LoopbackServer
from pinclient._pki import CA, Leaf
from pinclient._revocation.hook import RevocationHook
from pinclient.config import load_pins, override_revocation, parse_pins, revocation_settings
from pinclient.policy import evaluate, spki_sha256

from .conftest import HOST, ServeHTTPS, b64
from .revocation_pki import (
    OPENSSL,
    Issued,
    LoopbackHTTP,
    OpenSSLResponder,
    closed_port,
    index_line,
    make_crl,
    utcnow,
)

PAYLOAD = b"revocation-checked update\n" * 512
KEY_COMPROMISE = x509.ReasonFlags.key_compromise


@dataclass
class World:
    http: LoopbackHTTP
    root: CA
    intermediate: CA
    bundle: Path

    def issued(self, ca: CA) -> Issued:
        return Issued(ca.cert, ca.key)

    def leaf(self, host: str = HOST, *, ocsp: bool = True, crl: bool = False,
             ocsp_url: str | None = None) -> Leaf:
        base = self.http.base_url
        return self.intermediate.issue_leaf(
            host, ocsp_url=ocsp_url or (f"{base}/ocsp" if ocsp else None),
            crl_url=f"{base}/int.crl" if crl else None)

    @property
    def hits(self) -> int:
        """Revocation requests the responder has received (OCSP and CRLs)."""
        return sum(self.http.hits.values())


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    http = LoopbackHTTP()
    root = CA("Revocation E2E Root", org="Example Inc")
    intermediate = root.child_ca("Revocation E2E Issuing CA", org="Example Inc",
                                 crl_url=f"{http.base_url}/root.crl")
    bundle = tmp_path_factory.mktemp("revocation-e2e") / "bundle.pem"
    bundle.write_bytes(root.cert_pem())
    yield World(http, root, intermediate, bundle)
    http.close()


@pytest.fixture
def responder(world: World) -> World:
    """The loopback responder with fresh, empty CRLs for both CAs and no OCSP route yet."""
    world.http.reset()
    root_crl = make_crl(world.issued(world.root))
    int_crl = make_crl(world.issued(world.intermediate))
    world.http.routes["/root.crl"] = lambda _: (200, root_crl)
    world.http.routes["/int.crl"] = lambda _: (200, int_crl)
    return world


def start_ocsp(world: World, folder: Path, index: str) -> None:
    """Route ``/ocsp`` to OpenSSL's responder for the intermediate, answering from ``index``."""
    if OPENSSL is None:
        pytest.skip("openssl is not installed")
    issuer = world.issued(world.intermediate)
    world.http.routes["/ocsp"] = OpenSSLResponder(folder / "ocsp", issuer=issuer, signer=issuer,
                                                  index=index, extra=("-nmin", "5"))


def write_pins(folder: Path, world: World, *, revocation: str | None = None,
               defaults_revocation: str | None = None, crl: str | None = None,
               unpinned: str = "refuse") -> Path:
    """pins.toml pinning updates.test and localhost to the root, cache in ``folder/cache``."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = ["version = 1", "[defaults]", f'ca_bundle = "{world.bundle}"', 'cache_dir = "cache"',
             f'unpinned = "{unpinned}"']
    if defaults_revocation:
        lines.append(f'revocation = "{defaults_revocation}"')
    lines += ["[[pinset]]", 'name = "example-updates"', f'hosts = ["{HOST}", "localhost"]',
              f'issuers = [{{ spki_sha256 = "{b64(spki_sha256(world.root.cert))}" }}]']
    if revocation:
        lines.append(f'revocation = "{revocation}"')
    if crl:
        lines.append(f'crl = "{crl}"')
    path = folder / "pins.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def assert_nothing_sent(server: LoopbackServer) -> None:
    server.wait_idle()
    assert server.handshakes >= 1, "the handshake succeeded: the certificate itself is valid"
    assert all(c.received == b"" for c in server.conns), "not one request byte may be sent"
    assert server.requests == []
    assert all(c.done.is_set() for c in server.conns), "the refused connection was closed"


def fetch(tmp_path: Path, url: str, pins: Path, *extra: str) -> int:
    return fetch_main([url, "-o", str(tmp_path / "update.bin"), "--pins", str(pins), *extra])


# --------------------------------------------------------------------------- good, revoked


def test_good_chain_in_hard_fail_is_fetched_after_checking_leaf_and_intermediate(
        responder: World, tmp_path: Path, https_server: ServeHTTPS) -> None:
    leaf = responder.leaf()
    start_ocsp(responder, tmp_path, index_line(leaf.cert))
    pins = write_pins(tmp_path / "cfg", responder, revocation="hard-fail")
    with https_server({"/update.bin": PAYLOAD}, leaf=leaf) as server:
        result = fetch_update(server.url("/update.bin"), tmp_path / "update.bin", config=load_pins(pins))
    assert (tmp_path / "update.bin").read_bytes() == PAYLOAD
    assert result.pinset == "example-updates"
    assert responder.http.hits == {"/ocsp": 1, "/root.crl": 1}, "leaf by OCSP, intermediate by CRL"


@pytest.mark.parametrize("mode", ["soft-fail", "hard-fail"])
def test_revoked_leaf_exits_4_in_every_mode_before_any_request_byte(
        responder: World, tmp_path: Path, mode: str, capsys: pytest.CaptureFixture[str],
        https_server: ServeHTTPS) -> None:
    leaf = responder.leaf()
    when = utcnow() - dt.timedelta(hours=3)
    start_ocsp(responder, tmp_path, index_line(leaf.cert, revoked=KEY_COMPROMISE, revoked_at=when))
    pins = write_pins(tmp_path / "cfg", responder, revocation=mode)
    dest = tmp_path / "update.bin"
    dest.write_bytes(b"the previous version")
    with https_server({"/update.bin": PAYLOAD}, leaf=leaf) as server:
        assert fetch(tmp_path, server.url("/update.bin"), pins) == 4
        assert_nothing_sent(server)
    err = capsys.readouterr().err
    assert "CN=updates.test" in err, "the message names the certificate"
    assert f"since {when:%Y-%m-%d %H:%M:%S}Z" in err, "and when it was revoked"
    assert "reason keyCompromise" in err, "and why"
    assert "Traceback" not in err
    assert dest.read_bytes() == b"the previous version"
    assert list(tmp_path.glob(".update.bin.*")) == []


def test_revoked_intermediate_exits_4(responder: World, tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str], https_server: ServeHTTPS) -> None:
    leaf = responder.leaf()
    start_ocsp(responder, tmp_path, index_line(leaf.cert))
    revoked = make_crl(responder.issued(responder.root), [(responder.intermediate.cert, KEY_COMPROMISE)])
    responder.http.routes["/root.crl"] = lambda _: (200, revoked)
    pins = write_pins(tmp_path / "cfg", responder, revocation="hard-fail")
    with https_server({"/update.bin": PAYLOAD}, leaf=leaf) as server:
        assert fetch(tmp_path, server.url("/update.bin"), pins) == 4
        assert_nothing_sent(server)
    err = capsys.readouterr().err
    assert "CN=Revocation E2E Issuing CA" in err
    assert "is revoked" in err
    assert "keyCompromise" in err
    assert f"CRL {responder.http.base_url}/root.crl" in err


def test_revoked_leaf_is_an_error_not_an_oserror_and_is_not_retried(responder: World,
                                                                     tmp_path: Path,
                                                                     https_server: ServeHTTPS) -> None:
    leaf = responder.leaf()
    start_ocsp(responder, tmp_path, index_line(leaf.cert, revoked=KEY_COMPROMISE))
    config = load_pins(write_pins(tmp_path / "cfg", responder, revocation="soft-fail"))
    assert not issubclass(CertificateRevoked, OSError)
    with https_server({"/update.bin": PAYLOAD}, leaf=leaf) as server, PinningPoolManager(config, retries=urllib3.Retry(total=5)) as pm:
        with pytest.raises(CertificateRevoked) as info:
            pm.request("GET", server.url("/update.bin"))
        assert_nothing_sent(server)
    assert server.handshakes == 1, "urllib3 must not retry a revoked certificate"
    assert info.value.exit_code == 4


def test_revoked_leaf_json_error(responder: World, tmp_path: Path,
                                 capsys: pytest.CaptureFixture[str], https_server: ServeHTTPS) -> None:
    leaf = responder.leaf()
    start_ocsp(responder, tmp_path, index_line(leaf.cert, revoked=KEY_COMPROMISE))
    pins = write_pins(tmp_path / "cfg", responder, revocation="hard-fail")
    with https_server({"/update.bin": PAYLOAD}, leaf=leaf) as server:
        assert fetch(tmp_path, server.url("/update.bin"), pins, "--json") == 4
    data = json.loads(capsys.readouterr().out)
    assert (data["ok"], data["error"], data["exit_code"]) == (False, "CertificateRevoked", 4)
    assert "keyCompromise" in data["message"]


# --------------------------------------------------------------------------- hard-fail vs soft-fail


def test_responder_down_exits_4_in_hard_fail_naming_the_responder(
        responder: World, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        https_server: ServeHTTPS) -> None:
    down = f"http://127.0.0.1:{closed_port()}/ocsp"
    pins = write_pins(tmp_path / "cfg", responder, revocation="hard-fail")
    with https_server({"/update.bin": PAYLOAD}, leaf=responder.leaf(ocsp_url=down)) as server:
        assert fetch(tmp_path, server.url("/update.bin"), pins) == 4
        assert_nothing_sent(server)
    err = capsys.readouterr().err
    assert "cannot establish revocation status of" in err
    assert "CN=updates.test" in err
    assert f"OCSP {down}: cannot reach the server" in err
    assert not (tmp_path / "update.bin").exists()


def test_responder_down_warns_and_fetches_in_soft_fail(
        responder: World, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        https_server: ServeHTTPS) -> None:
    down = f"http://127.0.0.1:{closed_port()}/ocsp"
    pins = write_pins(tmp_path / "cfg", responder, revocation="soft-fail")
    with https_server({"/update.bin": PAYLOAD}, leaf=responder.leaf(ocsp_url=down)) as server:
        assert fetch(tmp_path, server.url("/update.bin"), pins) == 0
    err = capsys.readouterr().err
    assert "pinclient: revocation: cannot establish revocation status of" in err
    assert f"OCSP {down}: cannot reach the server" in err
    assert "(soft-fail: continuing)" in err
    assert (tmp_path / "update.bin").read_bytes() == PAYLOAD
    assert responder.http.hits == {"/root.crl": 1}, "the intermediate was still checked"


def test_soft_fail_warning_goes_to_the_pinclient_logger_at_warning(
        responder: World, tmp_path: Path, https_server: ServeHTTPS) -> None:
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    logger = logging.getLogger("pinclient")
    logger.addHandler(handler)
    try:
        config = load_pins(write_pins(tmp_path / "cfg", responder, revocation="soft-fail"))
        with https_server({"/update.bin": PAYLOAD}, leaf=responder.leaf(ocsp=False)) as server:
            fetch_update(server.url("/update.bin"), tmp_path / "update.bin", config=config)
    finally:
        logger.removeHandler(handler)
    warnings = [r for r in records if r.levelno == logging.WARNING and "revocation" in r.getMessage()]
    assert len(warnings) == 1
    assert "names no OCSP responder (AIA) and no CRL distribution point" in warnings[0].getMessage()


def test_leaf_without_any_revocation_source_exits_4_in_hard_fail(
        responder: World, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        https_server: ServeHTTPS) -> None:
    pins = write_pins(tmp_path / "cfg", responder, revocation="hard-fail")
    with https_server({"/update.bin": PAYLOAD}, leaf=responder.leaf(ocsp=False)) as server:
        assert fetch(tmp_path, server.url("/update.bin"), pins) == 4
        assert_nothing_sent(server)
    err = capsys.readouterr().err
    assert "names no OCSP responder (AIA) and no CRL distribution point" in err
    assert responder.hits == 0


def test_unknown_status_exits_4_in_hard_fail(responder: World, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str],
                                             https_server: ServeHTTPS) -> None:
    leaf = responder.leaf()
    start_ocsp(responder, tmp_path, index="")  # OpenSSL answers "unknown" for serials it lacks
    pins = write_pins(tmp_path / "cfg", responder, revocation="hard-fail")
    with https_server({"/update.bin": PAYLOAD}, leaf=leaf) as server:
        assert fetch(tmp_path, server.url("/update.bin"), pins) == 4
        assert_nothing_sent(server)
    assert "does not know this certificate (unknown)" in capsys.readouterr().err


def test_crl_prefer_asks_the_crl_and_not_the_responder(responder: World, tmp_path: Path,
                                                       https_server: ServeHTTPS) -> None:
    leaf = responder.leaf(crl=True)
    start_ocsp(responder, tmp_path, index_line(leaf.cert))
    pins = write_pins(tmp_path / "cfg", responder, revocation="hard-fail", crl="prefer")
    with https_server({"/update.bin": PAYLOAD}, leaf=leaf) as server:
        assert fetch(tmp_path, server.url("/update.bin"), pins) == 0
    assert responder.http.hits == {"/int.crl": 1, "/root.crl": 1}


# --------------------------------------------------------------------------- cache, off, overrides


def test_second_fetch_within_the_window_sends_no_revocation_request(responder: World,
                                                                     tmp_path: Path,
                                                                     https_server: ServeHTTPS) -> None:
    leaf = responder.leaf()
    start_ocsp(responder, tmp_path, index_line(leaf.cert))
    pins = write_pins(tmp_path / "cfg", responder, revocation="hard-fail")
    with https_server({"/update.bin": PAYLOAD}, leaf=leaf) as server:
        assert fetch(tmp_path, server.url("/update.bin"), pins) == 0
        assert responder.hits == 2
        assert fetch(tmp_path, server.url("/update.bin"), pins) == 0
        assert fetch_main([server.url("/update.bin"), "-o", str(tmp_path / "again.bin"),
                           "--pins", str(pins)]) == 0
    assert responder.hits == 2, "both later fetches were answered from the disk cache"
    assert server.handshakes == 3
    cached = sorted(p.name.split("-")[0] for p in (tmp_path / "cfg" / "cache").iterdir())
    assert cached == ["crl", "ocsp"], "cache_dir is relative to the pins file"


def test_off_sends_no_revocation_request(responder: World, tmp_path: Path, https_server: ServeHTTPS) -> None:
    leaf = responder.leaf(crl=True)
    start_ocsp(responder, tmp_path, index_line(leaf.cert, revoked=KEY_COMPROMISE))
    explicit = write_pins(tmp_path / "off", responder, revocation="off", defaults_revocation="hard-fail")
    default = write_pins(tmp_path / "default", responder)
    with https_server({"/update.bin": PAYLOAD}, leaf=leaf) as server:
        assert fetch(tmp_path, server.url("/update.bin"), explicit) == 0
        assert fetch(tmp_path, server.url("/update.bin"), default) == 0
    assert responder.hits == 0
    assert not (tmp_path / "off" / "cache").exists()


def test_revocation_flag_overrides_the_pins_file(responder: World, tmp_path: Path,
                                                 https_server: ServeHTTPS) -> None:
    leaf = responder.leaf()
    start_ocsp(responder, tmp_path, index_line(leaf.cert, revoked=KEY_COMPROMISE))
    unset = write_pins(tmp_path / "unset", responder)
    hard = write_pins(tmp_path / "hard", responder, revocation="hard-fail")
    with https_server({"/update.bin": PAYLOAD}, leaf=leaf) as server:
        url = server.url("/update.bin")
        assert fetch(tmp_path, url, hard, "--revocation", "off") == 0
        assert responder.hits == 0
        assert fetch(tmp_path, url, unset, "--revocation", "soft-fail") == 4
        assert fetch(tmp_path, url, unset, "--revocation", "hard-fail") == 4
    with pytest.raises(SystemExit) as info:
        fetch_main(["https://updates.test/x", "--revocation", "hard"])
    assert info.value.code == 2


def test_pinset_mode_overrides_defaults_and_unpinned_hosts_use_defaults(responder: World,
                                                                        tmp_path: Path,
                                                                        https_server: ServeHTTPS) -> None:
    pinned, other = responder.leaf(), responder.leaf("other.test")
    start_ocsp(responder, tmp_path, index_line(pinned.cert, revoked=KEY_COMPROMISE)
               + index_line(other.cert, revoked=KEY_COMPROMISE))
    config = load_pins(write_pins(tmp_path / "cfg", responder, revocation="off",
                                  defaults_revocation="hard-fail", unpinned="allow"))
    with https_server({"/update.bin": PAYLOAD}, leaf=pinned) as a, https_server({"/update.bin": PAYLOAD}, leaf=other) as b:
        fetch_update(a.url("/update.bin"), tmp_path / "a.bin", config=config)
        assert responder.hits == 0, 'the pinset says "off"'
        with pytest.raises(CertificateRevoked, match=r"CN=other\.test"):
            fetch_update(b.url("/update.bin", host="other.test"), tmp_path / "b.bin", config=config)
        assert_nothing_sent(b)


def test_concurrent_connections_share_one_check(responder: World, tmp_path: Path,
                                                https_server: ServeHTTPS) -> None:
    leaf = responder.leaf()
    start_ocsp(responder, tmp_path, index_line(leaf.cert))
    config = load_pins(write_pins(tmp_path / "cfg", responder, revocation="hard-fail"))
    errors: list[BaseException] = []
    with https_server({"/update.bin": PAYLOAD}, leaf=leaf) as server, PinningPoolManager(config, maxsize=4) as pm:
        def get() -> None:
            try:
                assert pm.request("GET", server.url("/update.bin")).data == PAYLOAD
            except BaseException as e:  # surfaced below
                errors.append(e)

        threads = [threading.Thread(target=get) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert errors == []
    assert responder.http.hits == {"/ocsp": 1, "/root.crl": 1}


def test_responders_are_asked_through_a_plain_pool_or_the_one_given(responder: World,
                                                                     tmp_path: Path,
                                                                     https_server: ServeHTTPS) -> None:
    leaf = responder.leaf()
    start_ocsp(responder, tmp_path, index_line(leaf.cert))
    config = load_pins(write_pins(tmp_path / "cfg", responder, revocation="hard-fail"))
    with https_server({"/update.bin": PAYLOAD}, leaf=leaf) as server, PinningPoolManager(config) as pm:
        pm.request("GET", server.url("/update.bin"))
        pools = {type(c._http) for c in pm.revocation._checkers.values()}
    assert pools == {urllib3.PoolManager}, "never the pinning pool: responders are other hosts"

    seen: list[str] = []

    class Recording(urllib3.PoolManager):
        def urlopen(self, method: str, url: str, *args: object, **kwargs: object) -> object:
            seen.append(f"{method} {url}")
            return super().urlopen(method, url, *args, **kwargs)  # type: ignore[arg-type]

    chain = [c.public_bytes(Encoding.DER) for c in (leaf.cert, *leaf.parents)]
    verdict = evaluate(config, HOST, chain)
    hook = RevocationHook(load_pins(write_pins(tmp_path / "cfg2", responder, revocation="hard-fail")),
                          http=Recording())
    try:
        hook(verdict, 443)
    finally:
        hook.close()
    base = responder.http.base_url
    assert seen == [f"POST {base}/ocsp", f"GET {base}/root.crl"]


# --------------------------------------------------------------------------- as a new user


def test_fetch_update_command_refuses_a_revoked_leaf(responder: World, tmp_path: Path,
                                                     https_server: ServeHTTPS) -> None:
    # A real process: the loopback name resolution of the other tests does not apply, so localhost.
    leaf = responder.leaf("localhost", ocsp=False, crl=True)
    revoked = make_crl(responder.issued(responder.intermediate), [(leaf.cert, KEY_COMPROMISE)])
    responder.http.routes["/int.crl"] = lambda _: (200, revoked)
    work = tmp_path / "user"
    write_pins(work, responder, revocation="hard-fail")
    exe = Path(sys.executable).parent / "fetch-update"
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "pinclient", "fetch"]
    with https_server({"/update.bin": PAYLOAD}, leaf=leaf) as server:
        done = subprocess.run([*cmd, server.url("/update.bin", host="localhost")], cwd=work,
                              capture_output=True, text=True, timeout=60, check=False)
        assert_nothing_sent(server)
    assert done.returncode == 4, done.stderr
    assert "CN=localhost" in done.stderr
    assert "is revoked" in done.stderr
    assert "Traceback" not in done.stderr
    assert sorted(p.name for p in work.iterdir()) == ["cache", "pins.toml"]


# --------------------------------------------------------------------------- pins.toml keys


def test_revocation_keys_default_off_and_pinsets_override(tmp_path: Path) -> None:
    base = ('version = 1\n[defaults]\n{d}\n[[pinset]]\nname = "p"\nhosts = ["a.test"]\n'
            'issuers = [{{ subject = "CN=X" }}]\n{p}\n')
    plain = parse_pins(base.format(d="", p=""), base_dir=tmp_path)
    assert revocation_settings(plain, plain.pinsets[0]) == ("off", "fallback")
    assert plain.defaults.cache_dir is None
    config = parse_pins(base.format(d='revocation = "soft-fail"\ncrl = "prefer"\ncache_dir = "c"',
                                    p='revocation = "hard-fail"'), base_dir=tmp_path)
    assert revocation_settings(config, config.pinsets[0]) == ("hard-fail", "prefer")
    assert revocation_settings(config, None) == ("soft-fail", "prefer")
    assert config.defaults.cache_dir == str(tmp_path / "c")
    forced = override_revocation(config, "off")
    assert revocation_settings(forced, forced.pinsets[0]) == ("off", "prefer")


@pytest.mark.parametrize(("defaults", "pinset", "key", "where"), [
    ('revocation = "hard"', "", "revocation", None),
    ('revocation = true', "", "revocation", None),
    ('crl = "only"', "", "crl", None),
    ("cache_dir = 3", "", "cache_dir", None),
    ('cache_dir = "pins.toml"', "", "cache_dir", None),
    ("", 'revocation = "hardfail"', "revocation", "p"),
    ("", 'crl = "never"', "crl", "p"),
    ("", 'cache_dir = "c"', "cache_dir", "p"),
])
def test_bad_revocation_keys_name_file_pinset_and_key(tmp_path: Path, defaults: str, pinset: str,
                                                      key: str, where: str | None) -> None:
    path = tmp_path / "pins.toml"
    path.write_text(f'version = 1\n[defaults]\n{defaults}\n[[pinset]]\nname = "p"\nhosts = ["a.test"]\n'
                    f'issuers = [{{ subject = "CN=X" }}]\n{pinset}\n')
    with pytest.raises(PinsFileError) as info:
        load_pins(path)
    assert (info.value.key, info.value.pinset, info.value.path) == (key, where, str(path))
    assert info.value.exit_code == 2


def test_revocation_errors_are_the_exit_4_family() -> None:
    assert CertificateRevoked("x").exit_code == RevocationCheckFailed("x").exit_code == 4


def test_example_pins_toml_recommends_hard_fail_and_keeps_the_default_off() -> None:
    example = load_pins(Path(__file__).resolve().parent.parent / "pins.toml")
    assert example.defaults.revocation == "off"
    assert revocation_settings(example, example.pinsets[0]) == ("hard-fail", "fallback")
