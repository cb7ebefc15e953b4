"""Pinning over real TLS on 127.0.0.1: the 2011 Comodo replay and the known pin bypasses."""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import socket
import ssl
from pathlib import Path

import pytest
import urllib3

from pinclient import PinningPoolManager, PinViolation, TLSError, UsageError, fetch_update
from pinclient._demo import Response
from pinclient._pki import CA
from pinclient._tls import shared_context
from pinclient.config import PinConfig, load_pins
from pinclient.transport import PinGuard

# --------------------------------------------------------------------------- the Comodo replay
from .conftest import HOST, PKI, ServeHTTPS, pinset, write_pins


def test_comodo_replay_is_refused_before_any_request_byte(pki: PKI, root_pinned_config: PinConfig,
                                                         tmp_path: Path, payload: bytes,
                                                         https_server: ServeHTTPS) -> None:
    # A certificate for the update host, valid and signed straight off another trusted root.
    rogue = pki.rogue_root.issue_leaf(HOST)
    dest = tmp_path / "update.bin"
    with https_server({"/update.bin": payload}, leaf=rogue) as server:
        with pytest.raises(PinViolation) as info:
            fetch_update(server.url("/update.bin"), dest, config=root_pinned_config)
        server.wait_idle()
    assert server.handshakes == 1, "the TLS handshake itself succeeded: the certificate is valid"
    assert all(c.received == b"" for c in server.conns), "not one request byte may be sent"
    assert server.requests == []
    assert not dest.exists()
    assert list(tmp_path.glob(".update.bin.*")) == []
    err = info.value
    assert err.reason == "unexpected-issuer"
    assert err.host == HOST
    assert err.pinset == "example-updates"
    assert [c.spki_sha256 for c in err.chain][1] == pki.pin_of(pki.rogue_root)
    assert "UTN-USERFirst-Hardware" in str(err)
    assert pki.pin_of(pki.pinned_root) in str(err), "the message lists the expected pins"
    assert "example-updates" in str(err)


def test_pinned_chain_is_accepted_and_saved(pki: PKI, root_pinned_config: PinConfig, tmp_path: Path,
                                            payload: bytes, https_server: ServeHTTPS) -> None:
    good = pki.pinned_int.issue_leaf(HOST)
    dest = tmp_path / "update.bin"
    with https_server({"/update.bin": payload}, leaf=good) as server:
        result = fetch_update(server.url("/update.bin"), dest, config=root_pinned_config,
                              sha256=hashlib.sha256(payload).hexdigest(), size=len(payload))
    assert dest.read_bytes() == payload
    assert result.pinset == "example-updates"
    assert result.sha256 == hashlib.sha256(payload).hexdigest()
    assert [c.spki_sha256 for c in result.chain][-1] == pki.pin_of(pki.pinned_root)


def test_pinned_ca_appended_to_rogue_chain_is_refused(pki: PKI, root_pinned_config: PinConfig,
                                                       tmp_path: Path, payload: bytes,
                                                       https_server: ServeHTTPS) -> None:
    # CVE-2016-2402: the server *sends* the pinned CA after a rogue chain. Only the verified chain
    # counts, and OpenSSL builds it through the rogue root.
    rogue = pki.rogue_root.issue_leaf(HOST)
    extra = [pki.pinned_int.cert, pki.pinned_root.cert]
    with https_server({"/update.bin": payload}, leaf=rogue, include_root=True, extra=extra) as server:
        with pytest.raises(PinViolation) as info:
            fetch_update(server.url("/update.bin"), tmp_path / "u", config=root_pinned_config)
        server.wait_idle()
    assert all(c.received == b"" for c in server.conns)
    served = [c.spki_sha256 for c in info.value.chain]
    assert pki.pin_of(pki.pinned_root) not in served


# --------------------------------------------------------------------------- impostor CA


@pytest.fixture
def impostor(pki: PKI) -> CA:
    """A sub-CA of the rogue root that copies the pinned intermediate's subject, with its own key."""
    return CA("ignored", parent=pki.rogue_root, subject=pki.pinned_int.cert.subject)


def test_impostor_with_copied_subject_is_refused_by_spki_pin(pki: PKI, impostor: CA, tmp_path: Path,
                                                            payload: bytes, https_server: ServeHTTPS) -> None:
    body = pinset("x", [HOST], f'{{ spki_sha256 = "{pki.pin_of(pki.pinned_int)}" }}')
    config = load_pins(write_pins(tmp_path / "c", body, bundle=pki.bundle))
    with https_server({"/update.bin": payload}, leaf=impostor.issue_leaf(HOST)) as server:
        with pytest.raises(PinViolation):
            fetch_update(server.url("/update.bin"), tmp_path / "u", config=config)


def test_impostor_with_copied_subject_passes_a_subject_pin(pki: PKI, impostor: CA, tmp_path: Path,
                                                          payload: bytes, https_server: ServeHTTPS) -> None:
    # Documented weakness of subject pins (the Firefox 4 check): any CA that can mint a sub-CA can
    # copy a name. This test pins the behaviour so the docs stay true.
    subject = pki.pinned_int.cert.subject.rfc4514_string()
    body = pinset("x", [HOST], f'{{ subject = "{subject}" }}')
    config = load_pins(write_pins(tmp_path / "c", body, bundle=pki.bundle))
    with https_server({"/update.bin": payload}, leaf=impostor.issue_leaf(HOST)) as server:
        result = fetch_update(server.url("/update.bin"), tmp_path / "u", config=config)
    assert result.size == len(payload)


def test_subject_pin_is_compared_as_a_parsed_name(pki: PKI, tmp_path: Path, payload: bytes,
                                                  https_server: ServeHTTPS) -> None:
    # Different spacing and case, same DN.
    body = pinset("x", [HOST], '{ subject = "cn=example issuing CA 2,  o=EXAMPLE INC" }')
    config = load_pins(write_pins(tmp_path / "c", body, bundle=pki.bundle))
    with https_server({"/update.bin": payload}) as server:
        fetch_update(server.url("/update.bin"), tmp_path / "u", config=config)
    with https_server({"/update.bin": payload}, issuer=pki.rogue_root) as server:
        with pytest.raises(PinViolation):
            fetch_update(server.url("/update.bin"), tmp_path / "u", config=config)


# --------------------------------------------------------------------------- pin placement


@pytest.mark.parametrize("which", ["root", "intermediate"])
def test_root_and_intermediate_pins_both_match(pki: PKI, tmp_path: Path, payload: bytes, which: str,
                                               https_server: ServeHTTPS) -> None:
    ca = pki.pinned_root if which == "root" else pki.pinned_int
    body = pinset("x", [HOST], f'{{ spki_sha256 = "{pki.pin_of(ca)}" }}')
    config = load_pins(write_pins(tmp_path / "c", body, bundle=pki.bundle))
    with https_server({"/update.bin": payload}) as server:
        assert fetch_update(server.url("/update.bin"), tmp_path / "u", config=config).size == len(payload)


def test_root_pin_matches_when_the_bundle_also_holds_the_intermediate(pki: PKI, tmp_path: Path,
                                                                     payload: bytes,
                                                                     https_server: ServeHTTPS) -> None:
    # On Python 3.13 urllib3 sets VERIFY_X509_PARTIAL_CHAIN, which would end the verified chain at
    # the intermediate found in the bundle; pinclient clears it so the root pin still matches.
    bundle = tmp_path / "with-int.pem"
    bundle.write_bytes(pki.pinned_int.cert_pem() + pki.pinned_root.cert_pem())
    body = pinset("x", [HOST], f'{{ spki_sha256 = "{pki.pin_of(pki.pinned_root)}" }}')
    config = load_pins(write_pins(tmp_path / "c", body, bundle=bundle))
    with https_server({"/update.bin": payload}) as server:
        result = fetch_update(server.url("/update.bin"), tmp_path / "u", config=config)
    assert len(result.chain) == 3


def test_leaf_key_is_never_an_issuer_pin(pki: PKI, tmp_path: Path, payload: bytes,
                                         https_server: ServeHTTPS) -> None:
    leaf = pki.pinned_int.issue_leaf(HOST)
    from pinclient.policy import spki_sha256

    from .conftest import b64

    body = pinset("x", [HOST], f'{{ spki_sha256 = "{b64(spki_sha256(leaf.cert))}" }}')
    config = load_pins(write_pins(tmp_path / "c", body, bundle=pki.bundle))
    with https_server({"/update.bin": payload}, leaf=leaf) as server:
        with pytest.raises(PinViolation):
            fetch_update(server.url("/update.bin"), tmp_path / "u", config=config)


def test_pin_from_cert_file(pki: PKI, tmp_path: Path, payload: bytes, https_server: ServeHTTPS) -> None:
    folder = tmp_path / "c"
    folder.mkdir()
    (folder / "certs").mkdir()
    (folder / "certs" / "backup.pem").write_bytes(pki.pinned_int.cert_pem())
    config = load_pins(write_pins(folder, pinset("x", [HOST], '{ cert = "certs/backup.pem" }'),
                                  bundle=pki.bundle))
    with https_server({"/update.bin": payload}) as server:
        fetch_update(server.url("/update.bin"), tmp_path / "u", config=config)
    with https_server({"/update.bin": payload}, issuer=pki.rogue_root) as server:
        with pytest.raises(PinViolation):
            fetch_update(server.url("/update.bin"), tmp_path / "u", config=config)


# --------------------------------------------------------------------------- invalid certificates


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


@pytest.mark.parametrize("case", ["untrusted", "expired", "wrong-host"])
def test_invalid_certificates_are_tls_errors_not_pin_violations(pki: PKI, root_pinned_config: PinConfig,
                                                                tmp_path: Path, payload: bytes,
                                                                case: str, https_server: ServeHTTPS) -> None:
    if case == "untrusted":
        leaf = pki.untrusted_root.issue_leaf(HOST)
    elif case == "expired":
        leaf = pki.pinned_int.issue_leaf(HOST, not_before=_now() - dt.timedelta(days=30),
                                         not_after=_now() - dt.timedelta(days=1))
    else:
        leaf = pki.pinned_int.issue_leaf("other.test")
    with https_server({"/update.bin": payload}, leaf=leaf) as server:
        with pytest.raises(TLSError) as info:
            fetch_update(server.url("/update.bin"), tmp_path / "u", config=root_pinned_config)
    assert info.value.exit_code == 6
    assert not (tmp_path / "u").exists()


# --------------------------------------------------------------------------- blocklist


def test_blocked_serial_from_the_pinned_ca_is_refused(pki: PKI, tmp_path: Path, payload: bytes,
                                                      https_server: ServeHTTPS) -> None:
    leaf = pki.pinned_int.issue_leaf(HOST, serial=0x9239D5348F40D1695A745470E1F23F43)
    issuer = pki.pinned_int.cert.subject.rfc4514_string()
    body = pinset("x", [HOST], f'{{ spki_sha256 = "{pki.pin_of(pki.pinned_root)}" }}')
    body += f'[[blocked]]\nissuer = "{issuer}"\nserial = "92:39:D5:34:8f:40:d1:69:5a:74:54:70:e1:f2:3f:43"\n'
    body += 'reason = "Comodo RA compromise"\n'
    config = load_pins(write_pins(tmp_path / "c", body, bundle=pki.bundle))
    with https_server({"/update.bin": payload}, leaf=leaf) as server:
        with pytest.raises(PinViolation) as info:
            fetch_update(server.url("/update.bin"), tmp_path / "u", config=config)
        server.wait_idle()
    assert info.value.reason == "blocked"
    assert "Comodo RA compromise" in str(info.value)
    assert all(c.received == b"" for c in server.conns)
    # Another serial from the same CA is fine: the entry is that exact certificate.
    with https_server({"/update.bin": payload}) as server:
        fetch_update(server.url("/update.bin"), tmp_path / "u", config=config)


def test_blocked_spki_is_refused_anywhere_in_the_chain(pki: PKI, tmp_path: Path, payload: bytes,
                                                       https_server: ServeHTTPS) -> None:
    body = pinset("x", [HOST], f'{{ spki_sha256 = "{pki.pin_of(pki.pinned_root)}" }}')
    body += f'[[blocked]]\nspki_sha256 = "{pki.pin_of(pki.pinned_int)}"\n'
    config = load_pins(write_pins(tmp_path / "c", body, bundle=pki.bundle, unpinned="allow"))
    with https_server({"/update.bin": payload}) as server:
        with pytest.raises(PinViolation) as info:
            fetch_update(server.url("/update.bin"), tmp_path / "u", config=config)
    assert info.value.reason == "blocked"
    # ... and on a host no pinset covers, even with unpinned = "allow".
    with https_server({"/update.bin": payload}, host="free.test") as server:
        with pytest.raises(PinViolation):
            fetch_update(server.url("/update.bin", host="free.test"), tmp_path / "u", config=config)


# --------------------------------------------------------------------------- unpinned hosts


def test_unpinned_host_is_refused_by_default(root_pinned_config: PinConfig, tmp_path: Path,
                                             payload: bytes, https_server: ServeHTTPS) -> None:
    with https_server({"/update.bin": payload}, host="elsewhere.test") as server:
        with pytest.raises(PinViolation) as info:
            fetch_update(server.url("/update.bin", host="elsewhere.test"), tmp_path / "u",
                         config=root_pinned_config)
    assert info.value.reason == "unpinned"
    assert info.value.exit_code == 3


def test_unpinned_host_is_allowed_when_configured(pki: PKI, tmp_path: Path, payload: bytes,
                                                  https_server: ServeHTTPS) -> None:
    body = pinset("x", [HOST], f'{{ spki_sha256 = "{pki.pin_of(pki.pinned_root)}" }}')
    config = load_pins(write_pins(tmp_path / "c", body, bundle=pki.bundle, unpinned="allow"))
    with https_server({"/update.bin": payload}, issuer=pki.rogue_root, host="elsewhere.test") as server:
        result = fetch_update(server.url("/update.bin", host="elsewhere.test"), tmp_path / "u",
                              config=config)
    assert result.pinset is None
    # The pinned host stays pinned.
    with https_server({"/update.bin": payload}, issuer=pki.rogue_root) as server:
        with pytest.raises(PinViolation):
            fetch_update(server.url("/update.bin"), tmp_path / "u", config=config)


# --------------------------------------------------------------------------- host names


@pytest.mark.parametrize("spelling", ["UPDATES.TEST", "updates.test.", "Updates.Test."])
def test_host_case_and_trailing_dot_do_not_skip_pins(pki: PKI, root_pinned_config: PinConfig,
                                                    tmp_path: Path, payload: bytes, spelling: str,
                                                    https_server: ServeHTTPS) -> None:
    with https_server({"/update.bin": payload}, issuer=pki.rogue_root) as server:
        with pytest.raises(PinViolation):
            fetch_update(server.url("/update.bin", host=spelling), tmp_path / "u", config=root_pinned_config)
    with https_server({"/update.bin": payload}) as server:
        result = fetch_update(server.url("/update.bin", host=spelling), tmp_path / "u",
                              config=root_pinned_config)
    assert result.pinset == "example-updates"


def test_wildcard_pinset_covers_one_label(pki: PKI, tmp_path: Path, payload: bytes,
                                          https_server: ServeHTTPS) -> None:
    body = pinset("cdn", ["*.cdn.test"], f'{{ spki_sha256 = "{pki.pin_of(pki.pinned_root)}" }}')
    config = load_pins(write_pins(tmp_path / "c", body, bundle=pki.bundle))
    with https_server({"/update.bin": payload}, issuer=pki.rogue_root, host="eu.cdn.test") as server:
        with pytest.raises(PinViolation) as info:
            fetch_update(server.url("/update.bin", host="eu.cdn.test"), tmp_path / "u", config=config)
    assert info.value.reason == "unexpected-issuer"
    with https_server({"/update.bin": payload}, host="a.eu.cdn.test") as server:
        with pytest.raises(PinViolation) as info:
            fetch_update(server.url("/update.bin", host="a.eu.cdn.test"), tmp_path / "u", config=config)
    assert info.value.reason == "unpinned"


# --------------------------------------------------------------------------- redirects


def test_redirect_to_unpinned_host_is_refused(root_pinned_config: PinConfig, tmp_path: Path,
                                             payload: bytes, https_server: ServeHTTPS) -> None:
    with https_server({"/update.bin": payload}, host="mirror.test") as mirror:
        routes = {"/update.bin": Response(302, headers={"Location": mirror.url("/update.bin", "mirror.test")})}
        with https_server(routes) as origin:
            with pytest.raises(PinViolation) as info:
                fetch_update(origin.url("/update.bin"), tmp_path / "u", config=root_pinned_config)
        mirror.wait_idle()
    assert info.value.host == "mirror.test"
    assert mirror.requests == []


def test_redirect_to_a_pinned_host_is_checked_again(pki: PKI, tmp_path: Path, payload: bytes,
                                                    https_server: ServeHTTPS) -> None:
    body = pinset("x", [HOST, "mirror.test"], f'{{ spki_sha256 = "{pki.pin_of(pki.pinned_root)}" }}')
    config = load_pins(write_pins(tmp_path / "c", body, bundle=pki.bundle))
    for leaf_ca, ok in ((pki.pinned_int, True), (pki.rogue_root, False)):
        with https_server({"/update.bin": payload}, leaf=leaf_ca.issue_leaf("mirror.test")) as mirror:
            routes = {"/update.bin": Response(301, headers={"Location": mirror.url("/update.bin", "mirror.test")})}
            with https_server(routes) as origin:
                if ok:
                    result = fetch_update(origin.url("/update.bin"), tmp_path / "u", config=config)
                    assert result.url == mirror.url("/update.bin", "mirror.test")
                else:
                    with pytest.raises(PinViolation):
                        fetch_update(origin.url("/update.bin"), tmp_path / "u", config=config)


def test_redirect_to_http_is_refused(root_pinned_config: PinConfig, tmp_path: Path,
                                     https_server: ServeHTTPS) -> None:
    routes = {"/update.bin": Response(302, headers={"Location": "http://updates.test/update.bin"})}
    with https_server(routes) as origin:
        with pytest.raises(PinViolation) as info:
            fetch_update(origin.url("/update.bin"), tmp_path / "u", config=root_pinned_config)
    assert info.value.reason == "insecure-redirect"


def test_pool_manager_refuses_http_even_through_urllib3_redirects(root_pinned_config: PinConfig,
                                                                  https_server: ServeHTTPS) -> None:
    routes = {"/r": Response(302, headers={"Location": "http://updates.test/x"})}
    with https_server(routes) as origin:
        pm = PinningPoolManager(root_pinned_config)
        with pytest.raises(PinViolation):
            pm.request("GET", origin.url("/r"))
        with pytest.raises(PinViolation):
            pm.request("GET", "http://updates.test/x")


# --------------------------------------------------------------------------- unsafe options


@pytest.mark.parametrize("kwargs", [
    {"cert_reqs": "CERT_NONE"},
    {"cert_reqs": ssl.CERT_NONE},
    {"assert_fingerprint": "aa" * 32},
    {"assert_hostname": False},
    {"ssl_context": ssl.create_default_context()},
    {"server_hostname": "updates.test"},
])
def test_options_that_weaken_the_pin_are_refused(root_pinned_config: PinConfig, kwargs: dict) -> None:  # type: ignore[type-arg]
    with pytest.raises(UsageError):
        PinningPoolManager(root_pinned_config, **kwargs)


def test_unsafe_pool_kwargs_per_request_are_refused(root_pinned_config: PinConfig) -> None:
    pm = PinningPoolManager(root_pinned_config)
    with pytest.raises(UsageError):
        pm.connection_from_host("updates.test", 443, "https", pool_kwargs={"cert_reqs": "CERT_NONE"})


def test_resumed_session_with_empty_verified_chain_fails_closed(pki: PKI, root_pinned_config: PinConfig,
                                                                payload: bytes,
                                                                https_server: ServeHTTPS) -> None:
    # A resumed TLS session is not re-verified, so OpenSSL has no verified chain for it. The guard
    # must refuse rather than find "nothing blocked" in an empty chain.
    leaf = pki.pinned_int.issue_leaf(HOST)
    with https_server({"/update.bin": payload}, leaf=leaf, max_version=ssl.TLSVersion.TLSv1_2) as server:
        ctx = shared_context(str(pki.bundle))
        first = ctx.wrap_socket(socket.create_connection(("127.0.0.1", server.port)), server_hostname=HOST)
        session = first.session
        # A clean close_notify keeps the session resumable; the server may hang up without
        # answering it, and the session is kept all the same.
        with contextlib.suppress(ssl.SSLError, OSError):
            first.unwrap()
        first.close()
        second = ctx.wrap_socket(socket.create_connection(("127.0.0.1", server.port)),
                                 server_hostname=HOST, session=session)
        try:
            assert second.session_reused
            with pytest.raises(PinViolation) as info:
                PinGuard(root_pinned_config).check(second, server.port)
        finally:
            second.close()
    assert info.value.reason == "no-verified-chain"


def test_keep_alive_costs_one_handshake_and_one_pin_check(root_pinned_config: PinConfig,
                                                          payload: bytes,
                                                          https_server: ServeHTTPS) -> None:
    with https_server({"/update.bin": payload}) as server:
        pm = PinningPoolManager(root_pinned_config)
        for _ in range(10):
            assert pm.request("GET", server.url("/update.bin")).data == payload
    assert server.handshakes == 1
    assert pm.guard.checks == 1


def test_one_context_is_shared_by_all_connections(pki: PKI, root_pinned_config: PinConfig) -> None:
    a = PinningPoolManager(root_pinned_config)
    b = PinningPoolManager(root_pinned_config)
    assert a.connection_pool_kw["ssl_context"] is b.connection_pool_kw["ssl_context"]
    assert not a.connection_pool_kw["ssl_context"].verify_flags & getattr(ssl, "VERIFY_X509_PARTIAL_CHAIN", 0)


def test_pin_violation_is_not_an_oserror_and_is_not_retried(pki: PKI, root_pinned_config: PinConfig,
                                                            payload: bytes,
                                                            https_server: ServeHTTPS) -> None:
    assert not issubclass(PinViolation, (OSError, ssl.SSLError))
    with https_server({"/update.bin": payload}, issuer=pki.rogue_root) as server:
        pm = PinningPoolManager(root_pinned_config, retries=urllib3.Retry(total=5))
        with pytest.raises(PinViolation):
            pm.request("GET", server.url("/update.bin"))
    assert server.handshakes == 1, "urllib3 must not retry a pin violation"


@pytest.mark.parametrize("key", ["ca_certs", "cert_file", "key_file"])
def test_per_request_context_options_are_refused(root_pinned_config: PinConfig, pki: PKI, key: str) -> None:
    # urllib3 would load these into the one shared SSLContext on every connection: trusting an extra
    # CA (or presenting a client certificate) for every pinned connection in the process.
    pm = PinningPoolManager(root_pinned_config)
    context = pm.connection_pool_kw["ssl_context"]
    before = len(context.get_ca_certs())
    with pytest.raises(UsageError):
        pm.connection_from_host(HOST, 443, "https", pool_kwargs={key: str(pki.bundle)})
    assert len(context.get_ca_certs()) == before


def test_client_certificate_gets_a_context_of_its_own(root_pinned_config: PinConfig, pki: PKI,
                                                      tmp_path: Path) -> None:
    leaf = pki.pinned_int.issue_leaf("client.test")
    (tmp_path / "c.pem").write_bytes(leaf.chain_pem())
    (tmp_path / "k.pem").write_bytes(leaf.key_pem())
    plain = PinningPoolManager(root_pinned_config)
    mtls = PinningPoolManager(root_pinned_config, cert_file=str(tmp_path / "c.pem"),
                              key_file=str(tmp_path / "k.pem"))
    assert plain.connection_pool_kw["ssl_context"] is not mtls.connection_pool_kw["ssl_context"]
    assert "cert_file" not in mtls.connection_pool_kw, "urllib3 must not reload it per connection"
