"""pinclient.requests.PinningAdapter over real loopback TLS: the same pin scenarios as the pool
manager, through requests, directly and through a CONNECT proxy, and requests' TLS options that
would weaken the pin (verify=False, a verify bundle, a client cert) refused before any connection."""

from __future__ import annotations

import selectors
import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

requests = pytest.importorskip("requests")

from pinclient import PinViolation, UsageError  # noqa: E402
from pinclient._demo import Response, Route  # noqa: E402
from pinclient._tls import shared_context  # noqa: E402
from pinclient.config import PinConfig, load_pins  # noqa: E402
from pinclient.requests import PinningAdapter, pinned_session  # noqa: E402

from .conftest import HOST, PKI, ServeHTTPS, pinset, write_pins  # noqa: E402


@pytest.fixture
def session(root_pinned_config: PinConfig) -> Iterator[requests.Session]:
    s = requests.Session()
    s.trust_env = False  # no proxies or CA bundles from this machine's environment
    s.mount("https://", PinningAdapter(root_pinned_config))
    yield s
    s.close()


# --------------------------------------------------------------------------- pins


def test_comodo_replay_is_refused_before_any_request_byte(pki: PKI, session: requests.Session,
                                                         payload: bytes,
                                                         https_server: ServeHTTPS) -> None:
    with https_server({"/update.bin": payload}, issuer=pki.rogue_root) as server:
        with pytest.raises(PinViolation) as info:
            session.get(server.url("/update.bin"), timeout=10)
        server.wait_idle()
    assert server.handshakes == 1, "the certificate is valid: the handshake itself succeeded"
    assert all(c.received == b"" for c in server.conns), "not one request byte may be sent"
    assert server.requests == []
    assert info.value.reason == "unexpected-issuer"
    assert info.value.pinset == "example-updates"
    assert "UTN-USERFirst-Hardware" in str(info.value)


def test_pinned_chain_is_accepted(session: requests.Session,
                                  payload: bytes, https_server: ServeHTTPS) -> None:
    with https_server({"/update.bin": payload}) as server:
        resp = session.get(server.url("/update.bin"), timeout=10)
    assert resp.status_code == 200
    assert resp.content == payload


def test_pinned_ca_appended_to_rogue_chain_is_refused(pki: PKI, session: requests.Session,
                                                       payload: bytes,
                                                       https_server: ServeHTTPS) -> None:
    # CVE-2016-2402: only the verified chain counts, not what the server sends.
    extra = [pki.pinned_int.cert, pki.pinned_root.cert]
    with https_server({"/update.bin": payload}, issuer=pki.rogue_root, include_root=True, extra=extra) as server:
        with pytest.raises(PinViolation):
            session.get(server.url("/update.bin"), timeout=10)
        server.wait_idle()
    assert all(c.received == b"" for c in server.conns)


def test_unpinned_host_is_refused(session: requests.Session,
                                  payload: bytes, https_server: ServeHTTPS) -> None:
    with https_server({"/update.bin": payload}, host="elsewhere.test") as server:
        with pytest.raises(PinViolation) as info:
            session.get(server.url("/update.bin", host="elsewhere.test"), timeout=10)
        server.wait_idle()
    assert info.value.reason == "unpinned"
    assert all(c.received == b"" for c in server.conns)


def test_blocked_certificate_is_refused(pki: PKI, tmp_path: Path, payload: bytes,
                                        https_server: ServeHTTPS) -> None:
    body = pinset("x", [HOST], f'{{ spki_sha256 = "{pki.pin_of(pki.pinned_root)}" }}')
    body += f'[[blocked]]\nspki_sha256 = "{pki.pin_of(pki.pinned_int)}"\nreason = "test"\n'
    config = load_pins(write_pins(tmp_path / "c", body, bundle=pki.bundle))
    with pinned_session(config) as s, https_server({"/update.bin": payload}) as server:
        with pytest.raises(PinViolation) as info:
            s.get(server.url("/update.bin"), timeout=10)
        server.wait_idle()
    assert info.value.reason == "blocked"
    assert all(c.received == b"" for c in server.conns)


def test_requests_redirect_to_a_rogue_mirror_is_refused(pki: PKI, tmp_path: Path, payload: bytes,
                                                        https_server: ServeHTTPS) -> None:
    # requests follows redirects itself; each hop comes back through the adapter and is checked.
    body = pinset("x", [HOST, "mirror.test"], f'{{ spki_sha256 = "{pki.pin_of(pki.pinned_root)}" }}')
    config = load_pins(write_pins(tmp_path / "c", body, bundle=pki.bundle))
    with https_server({"/update.bin": payload}, issuer=pki.rogue_root, host="mirror.test") as mirror:
        routes = {"/update.bin": Response(302, headers={"Location": mirror.url("/update.bin", "mirror.test")})}
        with https_server(routes) as origin, \
                pinned_session(config) as s:
            with pytest.raises(PinViolation) as info:
                s.get(origin.url("/update.bin"), timeout=10)
        mirror.wait_idle()
    assert info.value.host == "mirror.test"
    assert mirror.requests == []
    assert all(c.received == b"" for c in mirror.conns)


def test_pinned_session_refuses_a_redirect_to_http(root_pinned_config: PinConfig,
                                                   https_server: ServeHTTPS) -> None:
    routes = {"/update.bin": Response(302, headers={"Location": "http://updates.test/update.bin"})}
    with https_server(routes) as origin, \
            pinned_session(root_pinned_config) as s:
        with pytest.raises(PinViolation) as info:
            s.get(origin.url("/update.bin"), timeout=10)
    assert info.value.reason == "insecure-scheme"


@pytest.mark.parametrize("location", ["http://:1/update.bin", "https://:1/update.bin"])
def test_a_redirect_to_a_url_without_a_host_is_requests_invalid_url(root_pinned_config: PinConfig,
                                                                    https_server: ServeHTTPS,
                                                                    location: str) -> None:
    # requests' own adapter answers InvalidURL (urllib3's "No host specified."), whatever the
    # scheme; the plain-http refusal is for a URL that names a host (requests' test_redirecting_to_bad_url).
    routes = {"/update.bin": Response(302, headers={"Location": location})}
    with https_server(routes) as origin, pinned_session(root_pinned_config) as s:
        with pytest.raises(requests.exceptions.InvalidURL, match="No host specified"):
            s.get(origin.url("/update.bin"), timeout=10)


def test_keep_alive_costs_one_handshake_and_one_pin_check(root_pinned_config: PinConfig,
                                                          payload: bytes,
                                                          https_server: ServeHTTPS) -> None:
    adapter = PinningAdapter(root_pinned_config)
    with requests.Session() as s, https_server({"/update.bin": payload}) as server:
        s.mount("https://", adapter)
        for _ in range(5):
            assert s.get(server.url("/update.bin"), timeout=10).content == payload
    assert server.handshakes == 1
    assert adapter.guard.checks == 1


def test_pin_violation_is_not_retried(pki: PKI, root_pinned_config: PinConfig,
                                      payload: bytes, https_server: ServeHTTPS) -> None:
    with requests.Session() as s, https_server({"/update.bin": payload}, issuer=pki.rogue_root) as server:
        s.mount("https://", PinningAdapter(root_pinned_config, max_retries=5))
        with pytest.raises(PinViolation):
            s.get(server.url("/update.bin"), timeout=10)
    assert server.handshakes == 1


def test_after_check_hooks_on_the_guard_see_each_accepted_connection(
        root_pinned_config: PinConfig, payload: bytes,
        https_server: ServeHTTPS) -> None:
    adapter = PinningAdapter(root_pinned_config)
    seen: list[str] = []
    adapter.guard.after_check.append(lambda verdict, port: seen.append(verdict.pinset.name))  # type: ignore[union-attr]
    with requests.Session() as s, https_server({"/update.bin": payload}) as server:
        s.mount("https://", adapter)
        s.get(server.url("/update.bin"), timeout=10)
    assert seen == ["example-updates"]


# --------------------------------------------------------------------------- requests' TLS options


def test_verify_false_is_refused_before_connecting(session: requests.Session,
                                                   payload: bytes, https_server: ServeHTTPS) -> None:
    with https_server({"/update.bin": payload}) as server:
        with pytest.raises(UsageError, match="verify=False"):
            session.get(server.url("/update.bin"), verify=False, timeout=10)
        session.verify = False
        with pytest.raises(UsageError, match="verify=False"):
            session.get(server.url("/update.bin"), timeout=10)
        # requests' adapter treats a falsy verify as "off"; so does the refusal.
        adapter = session.get_adapter("https://")
        request = requests.Request("GET", server.url("/update.bin")).prepare()
        with pytest.raises(UsageError, match="verify=None"):
            adapter.send(request, verify=None)  # type: ignore[arg-type]
    assert server.conns == [], "refused before any connection"


def test_a_verify_bundle_is_refused_unless_it_is_the_adapters_own(pki: PKI, session: requests.Session,
                                                                  tmp_path: Path, payload: bytes,
                                                                  https_server: ServeHTTPS) -> None:
    other = tmp_path / "other.pem"
    other.write_bytes(pki.untrusted_root.cert_pem() + pki.pinned_root.cert_pem())
    with https_server({"/update.bin": payload}) as server:
        with pytest.raises(UsageError, match=r"trust bundle comes from pins\.toml"):
            session.get(server.url("/update.bin"), verify=str(other), timeout=10)
        assert server.conns == []
        # The very bundle the pins file names is fine.
        assert session.get(server.url("/update.bin"), verify=str(pki.bundle), timeout=10).ok


def test_requests_ca_bundle_from_the_environment_is_ignored_never_loaded(
        pki: PKI, root_pinned_config: PinConfig, tmp_path: Path, payload: bytes,
        monkeypatch: pytest.MonkeyPatch, https_server: ServeHTTPS) -> None:
    # requests turns $REQUESTS_CA_BUNDLE into verify=<path> on every request. It is a machine-wide
    # default: pins.toml's bundle wins, and the environment's CAs are never added to the context.
    corp = tmp_path / "corp.pem"
    corp.write_bytes(pki.untrusted_root.cert_pem())
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(corp))
    for key in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(key, raising=False)
    ctx = shared_context(str(pki.bundle))
    before = ctx.cert_store_stats()["x509_ca"]
    with requests.Session() as s:
        s.mount("https://", PinningAdapter(root_pinned_config))
        with https_server({"/update.bin": payload}) as server:
            assert s.get(server.url("/update.bin"), timeout=10).content == payload
        # A server with a certificate from the environment's CA is still not trusted.
        with https_server({"/update.bin": payload}, issuer=pki.untrusted_root) as server:
            with pytest.raises(requests.exceptions.SSLError):
                s.get(server.url("/update.bin"), timeout=10)
        # ... and the same file passed explicitly is still refused.
        with pytest.raises(UsageError, match=r"trust bundle comes from pins\.toml"):
            s.get(server.url("/update.bin"), verify=str(tmp_path / "corp-copy.pem"), timeout=10)
    assert ctx.cert_store_stats()["x509_ca"] == before


def test_client_cert_is_refused(pki: PKI, session: requests.Session, tmp_path: Path, payload: bytes,
                                https_server: ServeHTTPS) -> None:
    leaf = pki.pinned_int.issue_leaf("client.test")
    (tmp_path / "client.pem").write_bytes(leaf.chain_pem() + leaf.key_pem())
    with https_server({"/update.bin": payload}) as server:
        with pytest.raises(UsageError, match="cert="):
            session.get(server.url("/update.bin"), cert=str(tmp_path / "client.pem"), timeout=10)
    assert server.conns == []


def test_verify_true_does_not_load_certifi_into_the_shared_context(
        pki: PKI, session: requests.Session, payload: bytes,
        https_server: ServeHTTPS) -> None:
    # requests' stock cert_verify sets the pool's ca_certs to certifi for verify=True, and urllib3
    # would load it into the shared context: every public CA trusted on top of the pins.toml bundle.
    ctx = shared_context(str(pki.bundle))
    before = ctx.cert_store_stats()["x509_ca"]
    with https_server({"/update.bin": payload}) as server:
        assert session.get(server.url("/update.bin"), verify=True, timeout=10).ok
    assert ctx.cert_store_stats()["x509_ca"] == before == 2
    assert ctx.verify_mode == ssl.CERT_REQUIRED
    assert ctx.check_hostname


@pytest.mark.parametrize("kwargs", [
    {"cert_reqs": "CERT_NONE"},
    {"ssl_context": ssl.create_default_context()},
    {"assert_fingerprint": "aa" * 32},
])
def test_adapter_options_that_weaken_the_pin_are_refused(root_pinned_config: PinConfig,
                                                         kwargs: dict) -> None:  # type: ignore[type-arg]
    with pytest.raises(UsageError):
        PinningAdapter(root_pinned_config, **kwargs)


# --------------------------------------------------------------------------- proxies


class ConnectProxy:
    """A minimal HTTP CONNECT proxy on 127.0.0.1 that pipes bytes both ways."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self.targets: list[str] = []
        self._stop = False
        self._threads: list[threading.Thread] = []
        self._accepter = threading.Thread(target=self._accept, daemon=True)

    def __enter__(self) -> ConnectProxy:
        self._accepter.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop = True
        self._accepter.join(5)
        for t in self._threads:
            t.join(5)
        self.sock.close()

    def _accept(self) -> None:
        while not self._stop:
            try:
                client, _ = self.sock.accept()
            except TimeoutError:
                continue
            t = threading.Thread(target=self._tunnel, args=(client,), daemon=True)
            self._threads.append(t)
            t.start()

    def _tunnel(self, client: socket.socket) -> None:
        with client:
            client.settimeout(5)
            head = b""
            while b"\r\n\r\n" not in head:
                data = client.recv(4096)
                if not data:
                    return
                head += data
            method, target = head.split(b" ")[:2]
            assert method == b"CONNECT"
            self.targets.append(target.decode())
            host, port = target.decode().rsplit(":", 1)
            with socket.create_connection((host, int(port)), timeout=5) as upstream:
                client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
                self._pipe(client, upstream)

    def _pipe(self, a: socket.socket, b: socket.socket) -> None:
        with selectors.DefaultSelector() as sel:
            sel.register(a, selectors.EVENT_READ, b)
            sel.register(b, selectors.EVENT_READ, a)
            while not self._stop:
                for key, _ in sel.select(0.1):
                    try:
                        data = key.fileobj.recv(65536)  # type: ignore[union-attr]
                    except OSError:
                        return
                    if not data:
                        return
                    key.data.sendall(data)


def test_through_a_proxy_the_rogue_origin_is_refused_and_the_good_one_accepted(
        pki: PKI, root_pinned_config: PinConfig, payload: bytes,
        https_server: ServeHTTPS) -> None:
    adapter = PinningAdapter(root_pinned_config)
    with ConnectProxy() as proxy, requests.Session() as s:
        s.trust_env = False
        s.mount("https://", adapter)
        proxies = {"https": f"http://127.0.0.1:{proxy.port}"}
        with https_server({"/update.bin": payload}, issuer=pki.rogue_root) as rogue:
            with pytest.raises(PinViolation) as info:
                s.get(rogue.url("/update.bin"), proxies=proxies, timeout=10)
            rogue.wait_idle()
        assert rogue.handshakes == 1
        assert all(c.received == b"" for c in rogue.conns), "no request byte through the tunnel"
        assert info.value.reason == "unexpected-issuer"
        with https_server({"/update.bin": payload}) as good:
            assert s.get(good.url("/update.bin"), proxies=proxies, timeout=10).content == payload
        assert proxy.targets == [f"{HOST}:{rogue.port}", f"{HOST}:{good.port}"]
    # One guard checked both tunnelled connections.
    assert adapter.guard.checks == 2


def test_socks_proxies_are_refused(session: requests.Session,
                                   payload: bytes, https_server: ServeHTTPS) -> None:
    with https_server({"/update.bin": payload}) as server:
        with pytest.raises(UsageError, match="SOCKS"):
            session.get(server.url("/update.bin"), proxies={"https": "socks5://127.0.0.1:9"}, timeout=10)
    assert server.conns == []


def test_without_requests_the_import_error_names_the_extra() -> None:
    import subprocess
    import sys

    code = ("import sys; sys.modules['requests'] = None\n"
            "try:\n    import pinclient.requests\nexcept ImportError as e:\n    print(e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60).stdout
    assert "pip install 'pinclient[requests]'" in out


def test_requests_drops_credentials_on_a_redirect_to_another_port(root_pinned_config: PinConfig,
                                                                  payload: bytes,
                                                                  https_server: ServeHTTPS) -> None:
    # requests follows redirects itself (Session.resolve_redirects, should_strip_auth) and the
    # adapter must not bring credentials back: another port on the same host is another origin.
    seen: dict[str, dict[str, str]] = {}

    def record(name: str, response: Response) -> Route:
        def route(path: str, headers: dict[str, str]) -> Response:
            seen[name] = headers
            return response
        return route

    with https_server() as other, https_server() as origin, pinned_session(root_pinned_config) as s:
        other.routes["/u"] = record("other port", Response(200, payload))
        origin.routes["/u"] = record("origin", Response(302, headers={"Location": other.url("/u")}))
        r = s.get(origin.url("/u"), timeout=10, headers={"Authorization": "Bearer s3cret",
                                                         "Cookie": "session=s3cret",
                                                         "Proxy-Authorization": "Basic czNjcmV0"})
    assert r.content == payload
    assert {"authorization", "cookie", "proxy-authorization"} <= set(seen["origin"])
    assert not {"authorization", "cookie", "proxy-authorization"} & set(seen["other port"])
