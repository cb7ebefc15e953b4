"""Property-based tests (hypothesis): the pin policy, host matching and the pins.toml loader.

Each property is checked against a small reference model written here, independently of the code
under test, over inputs hypothesis generates:

* **The policy** (:func:`pinclient.policy.evaluate`): random valid-shaped chains from a pool of CAs
  (roots, intermediates, cross-signatures, an impostor with a copied subject, a leaf that reuses a
  CA's key) and random pinsets and blocklists written as pins.toml text. The verdict is "accept"
  exactly when nothing in the chain is blocked and a pinned SPKI or subject is *above the leaf*.
* **Only the verified chain counts**: over real TLS, a server appends random pool certificates
  (pinned CAs included) to what it sends; the policy sees exactly the chain OpenSSL verified.
  ``tests/test_pinning.py::test_pinned_ca_appended_to_rogue_chain_is_refused`` is the fixed example
  (CVE-2016-2402); this generalises it to any extras in any order.
* **Host matching** (:mod:`pinclient._names`): case, trailing dot, IDNA and one-label wildcards,
  against the name urllib3 actually connects to and sends as SNI.
* **The loader**: random documents and random bytes either load or raise ``PinsFileError``.

Example counts come from the hypothesis profile (``tests/conftest.py``; ``HYPOTHESIS_PROFILE=ci``
in ``.ci/run``). ``pytest --hypothesis-show-statistics`` prints what each property ran.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import ipaddress
import itertools
import math
import re
import socket
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from hypothesis import HealthCheck, event, example, given, note, settings
from hypothesis import strategies as st
from urllib3.exceptions import LocationParseError
from urllib3.util.url import parse_url

from pinclient import PinningPoolManager, PinsFileError, PinViolation, parse_pins
from pinclient._demo import LoopbackServer, Response
from pinclient._names import host_matches, normalize_host, normalize_pattern
from pinclient._pki import CA, Leaf
from pinclient.config import PinConfig
from pinclient.policy import evaluate

from .conftest import PKI, pinset, write_pins

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

# The autouse loopback_dns fixture is function-scoped; it is set once and is the same for every
# example, so hypothesis's warning about function-scoped fixtures does not apply here.
def fixture_ok(**kwargs: Any) -> settings:
    return settings(suppress_health_check=[HealthCheck.function_scoped_fixture], **kwargs)


def der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


def model_spki(cert: x509.Certificate) -> bytes:
    # The definition of an SPKI pin (RFC 7469 §2.4): SHA-256 over the DER SubjectPublicKeyInfo.
    info = cert.public_key().public_bytes(serialization.Encoding.DER,
                                          serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(info).digest()


# =========================================================================== the pool


@dataclass(frozen=True)
class Pool:
    cas: tuple[x509.Certificate, ...]
    leaves: tuple[x509.Certificate, ...]
    paths: tuple[tuple[x509.Certificate, ...], ...]  # valid-shaped chains, leaf first, root last

    @property
    def certs(self) -> tuple[x509.Certificate, ...]:
        return self.cas + self.leaves


@cache
def pool() -> Pool:
    """Built once per run: three roots, intermediates, cross-signatures, an impostor, leaves."""
    root_a = CA("Pool Root A", org="Pool A")
    root_b = CA("Pool Root B", org="Pool B")
    root_c = CA("Pool Root C", org="Pool Rogue")
    int_a1 = root_a.child_ca("Pool Issuing A1", org="Pool A")
    int_a2 = root_a.child_ca("Pool Issuing A2", org="Pool A")
    int_b1 = root_b.child_ca("Pool Issuing B1", org="Pool B")
    # Same key and subject as int_b1, signed by root A: a leaf of B1 has two valid paths.
    cross_b1 = CA("", parent=root_a, key=int_b1.key, subject=int_b1.subject)
    # Root B cross-signed by root A (the way ISRG Root X1 was by DST Root CA X3).
    cross_root_b = CA("", parent=root_a, key=root_b.key, subject=root_b.subject)
    # An impostor: root C's sub-CA with int_a1's subject but its own key.
    impostor = CA("", parent=root_c, subject=int_a1.subject)

    def leaf(ca: CA, name: str, **kw: Any) -> Leaf:
        return ca.issue_leaf(f"{name}.pool.test", **kw)

    l_a1 = leaf(int_a1, "a1")
    l_a2 = leaf(int_a2, "a2")
    l_b1 = leaf(int_b1, "b1")
    l_imp = leaf(impostor, "imp")
    l_c = leaf(root_c, "c")  # straight off a root, the Comodo 2011 shape
    l_a = leaf(root_a, "a")
    l_key = leaf(int_a1, "key", key=root_b.key)  # a leaf that reuses root B's key
    paths = (
        (l_a1.cert, int_a1.cert, root_a.cert),
        (l_a2.cert, int_a2.cert, root_a.cert),
        (l_b1.cert, int_b1.cert, root_b.cert),
        (l_b1.cert, cross_b1.cert, root_a.cert),
        (l_b1.cert, int_b1.cert, cross_root_b.cert, root_a.cert),
        (l_imp.cert, impostor.cert, root_c.cert),
        (l_c.cert, root_c.cert),
        (l_a.cert, root_a.cert),
        (l_key.cert, int_a1.cert, root_a.cert),
    )
    cas = (root_a.cert, root_b.cert, root_c.cert, int_a1.cert, int_a2.cert, int_b1.cert, cross_b1.cert,
           cross_root_b.cert, impostor.cert)
    leaves = (l_a1.cert, l_a2.cert, l_b1.cert, l_imp.cert, l_c.cert, l_a.cert, l_key.cert)
    for path in paths:  # the pool itself must be what it claims: each cert issued by the next
        for child, parent in itertools.pairwise(path):
            child.verify_directly_issued_by(parent)
        path[-1].verify_directly_issued_by(path[-1])
    return Pool(cas, leaves, paths)


# =========================================================================== the policy

# The model's view of a pins file: what each entry refers to, independent of its spelling.


@dataclass(frozen=True)
class MPin:
    kind: str  # "spki" | "subject" | "nothing" (a well-formed digest of no certificate)
    target: x509.Certificate | None
    text: str  # the issuers entry as written in pins.toml

    def matches(self, cert: x509.Certificate) -> bool:
        if self.kind == "spki":
            assert self.target is not None
            return model_spki(cert) == model_spki(self.target)
        if self.kind == "subject":
            assert self.target is not None
            return cert.subject == self.target.subject
        return False


@dataclass(frozen=True)
class MBlock:
    kind: str  # "spki" | "serial"
    spki: bytes = b""
    issuer: x509.Name | None = None
    serial: int = 0
    text: str = ""

    def matches(self, cert: x509.Certificate) -> bool:
        if self.kind == "spki":
            return model_spki(cert) == self.spki
        return cert.serial_number == self.serial and cert.issuer == self.issuer


@dataclass(frozen=True)
class MPinset:
    name: str
    pattern: str  # "a.pool.test" or "*.pool.test"
    pins: tuple[MPin, ...]


def _vary_case(draw: st.DrawFn, text: str) -> str:
    flips = draw(st.lists(st.booleans(), min_size=len(text), max_size=len(text)))
    return "".join(c.swapcase() if flip else c for c, flip in zip(text, flips, strict=True))


def _dn_text(draw: st.DrawFn, name: x509.Name) -> str:
    # The same DN as people write it: any case, spaces around separators and inside values.
    text = _vary_case(draw, name.rfc4514_string())
    sep = draw(st.sampled_from([",", ", ", " , "]))
    text = text.replace(",", sep)
    return text.replace(" test", draw(st.sampled_from([" test", "  test"])))


def _b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode()


@st.composite
def m_pins(draw: st.DrawFn, favour: Sequence[x509.Certificate]) -> MPin:
    # Half the time a certificate of the chain under test, so that pins hit as often as they miss.
    certs = draw(st.sampled_from([pool().certs, favour]))
    kind = draw(st.sampled_from(["spki", "spki", "subject", "nothing"]))
    if kind == "nothing":
        return MPin(kind, None, f'{{ spki_sha256 = "{_b64(draw(st.binary(min_size=32, max_size=32)))}" }}')
    target = draw(st.sampled_from(certs))
    if kind == "spki":
        prefix = draw(st.sampled_from(["", "sha256/"]))
        return MPin(kind, target, f'{{ spki_sha256 = "{prefix}{_b64(model_spki(target))}", label = "x" }}')
    return MPin(kind, target, f'{{ subject = "{_dn_text(draw, target.subject)}" }}')


@st.composite
def m_blocks(draw: st.DrawFn) -> MBlock:
    target = draw(st.sampled_from(pool().certs))
    if draw(st.booleans()):
        spki = model_spki(target)
        return MBlock("spki", spki=spki, text=f'[[blocked]]\nspki_sha256 = "{_b64(spki)}"\n')
    # An exact certificate by issuer + serial, or a near miss: the next serial from the same CA.
    serial = target.serial_number + draw(st.sampled_from([0, 0, 1]))
    hexdigits = f"{serial:x}"
    if draw(st.booleans()):
        hexdigits = ":".join(re.findall("..?", hexdigits.rjust(len(hexdigits) + len(hexdigits) % 2, "0")))
    hexdigits = draw(st.sampled_from(["", "0x"])) + _vary_case(draw, hexdigits)
    return MBlock("serial", issuer=target.issuer, serial=serial,
                  text=(f'[[blocked]]\nissuer = "{_dn_text(draw, target.issuer)}"\n'
                        f'serial = "{hexdigits}"\nreason = "test"\n'))


@dataclass(frozen=True)
class PolicyCase:
    chain: tuple[x509.Certificate, ...]
    host: str
    pinsets: tuple[MPinset, ...]
    blocks: tuple[MBlock, ...]
    unpinned: str

    def toml(self) -> str:
        text = f'version = 1\n[defaults]\nunpinned = "{self.unpinned}"\n\n'
        for ps in self.pinsets:
            text += pinset(ps.name, [ps.pattern], *(p.text for p in ps.pins))
        return text + "".join(b.text for b in self.blocks)


@st.composite
def policy_cases(draw: st.DrawFn) -> PolicyCase:
    chain = draw(st.sampled_from(pool().paths))
    pinsets = []
    for name, pattern in (("exact", "a.pool.test"), ("wild", "*.pool.test")):
        if draw(st.booleans()):
            pins = draw(st.lists(m_pins(chain), min_size=1, max_size=4))
            pinsets.append(MPinset(name, pattern, tuple(pins)))
    draw(st.randoms()).shuffle(pinsets)
    blocks = draw(st.lists(m_blocks(), max_size=2))
    host = draw(st.sampled_from(["a.pool.test", "b.pool.test", "c.d.pool.test", "pool.test", "other.test"]))
    host = _vary_case(draw, host) + draw(st.sampled_from(["", "."]))
    return PolicyCase(chain, host, tuple(pinsets), tuple(blocks), draw(st.sampled_from(["refuse", "allow"])))


def model_pinset(case: PolicyCase) -> MPinset | None:
    host = case.host.lower().rstrip(".")
    exact = [p for p in case.pinsets if p.pattern == host]
    if exact:
        return exact[0]
    labels = host.split(".")
    wild = [p for p in case.pinsets
            if p.pattern.startswith("*.") and len(labels) > 1 and ".".join(labels[1:]) == p.pattern[2:]]
    return wild[0] if wild else None


def model_verdict(case: PolicyCase, chain: Sequence[x509.Certificate]) -> tuple[bool, str]:
    """The issue's rule, stated directly: nothing blocked, and a pin matches a certificate above
    the leaf of the verified chain (or the host is unpinned and unpinned hosts are allowed)."""
    if not chain:
        return False, "no-verified-chain"
    if any(b.matches(c) for b in case.blocks for c in chain):
        return False, "blocked"
    ps = model_pinset(case)
    if ps is None:
        return (True, "unpinned-allowed") if case.unpinned == "allow" else (False, "unpinned")
    if any(p.matches(c) for p in ps.pins for c in chain[1:]):
        return True, "pinned"
    return False, "unexpected-issuer"


def _config(case: PolicyCase, tmp: Path) -> PinConfig:
    text = case.toml()
    note(text)
    return parse_pins(text, base_dir=tmp)


@given(case=policy_cases())
def test_policy_accepts_exactly_when_a_pin_is_above_the_leaf_and_nothing_is_blocked(
        case: PolicyCase, tmp_path_factory: pytest.TempPathFactory) -> None:
    config = _config(case, tmp_path_factory.getbasetemp())
    verdict = evaluate(config, case.host, [der(c) for c in case.chain])
    accepted, reason = model_verdict(case, case.chain)
    event(f"verdict: {reason}")
    assert (verdict.accepted, verdict.reason) == (accepted, reason)
    assert [c.der for c in verdict.chain] == [der(c) for c in case.chain]
    if reason == "pinned":
        # The pin that matched names a CA above the leaf, never the leaf itself.
        assert verdict.matched is not None
        ps = model_pinset(case)
        assert ps is not None
        assert verdict.pinset is not None
        assert verdict.pinset.name == ps.name
    if reason == "blocked":
        assert verdict.blocked_cert is not None
        assert any(b.matches(verdict.blocked_cert.cert) for b in case.blocks)


@given(case=policy_cases(), data=st.data())
def test_served_but_unverified_certificates_never_cause_an_accept(
        case: PolicyCase, data: st.DataObject, tmp_path_factory: pytest.TempPathFactory) -> None:
    # A server may send anything after its chain; the transport hands the policy only the chain
    # OpenSSL verified (proved over real TLS below and in test_pinning.py). Here: whatever extras a
    # served chain carries, the verdict on the verified part is the model's verdict on that part,
    # and extras that *would* satisfy a pin change nothing.
    # The extras are mostly the very CAs the pins name: the CVE-2016-2402 shape.
    pinned = [p.target for ps in case.pinsets for p in ps.pins if p.target is not None]
    extras = data.draw(st.lists(st.sampled_from(pinned or list(pool().cas)) | st.sampled_from(pool().cas),
                                max_size=4))
    served = case.chain + tuple(extras)
    config = _config(case, tmp_path_factory.getbasetemp())
    verdict = evaluate(config, case.host, [der(c) for c in case.chain])
    assert verdict.accepted == model_verdict(case, case.chain)[0]
    if model_verdict(case, served)[0] and not verdict.accepted:
        event("extras would have satisfied the pins; the verified chain does not")
    else:
        event(f"verified chain {'accepted' if verdict.accepted else 'refused'}, extras irrelevant")
    if verdict.accepted:
        assert verdict.reason in ("pinned", "unpinned-allowed")
        if verdict.reason == "pinned":
            assert any(c.der == der(x) for c in verdict.chain[1:] for x in case.chain[1:])


def test_an_empty_verified_chain_is_refused_whatever_the_pins() -> None:
    # The one chain hypothesis cannot draw from the pool: nothing verified (a resumed session).
    config = parse_pins('version = 1\n[defaults]\nunpinned = "allow"\n')
    for chain in (None, []):
        verdict = evaluate(config, "a.pool.test", chain)
        assert (verdict.accepted, verdict.reason) == (False, "no-verified-chain")


# --------------------------------------------------------------------------- over real TLS


@fixture_ok(max_examples=min(settings.default.max_examples, 12))
@given(issuer=st.sampled_from(["pinned", "rogue", "impostor"]),
       pin=st.sampled_from(["root", "intermediate"]),
       extras=st.lists(st.sampled_from(["pinned_root", "pinned_int", "rogue_root", "impostor", "untrusted"]),
                       max_size=5))
def test_transport_hands_the_policy_the_verified_chain_not_the_served_one(
        pki: PKI, tmp_path_factory: pytest.TempPathFactory, issuer: str, pin: str, extras: list[str]) -> None:
    impostor = _impostor(pki)
    cas = {"pinned_root": pki.pinned_root, "pinned_int": pki.pinned_int, "rogue_root": pki.rogue_root,
           "impostor": impostor, "untrusted": pki.untrusted_root}
    leaf = {"pinned": pki.pinned_int, "rogue": pki.rogue_root, "impostor": impostor}[issuer].issue_leaf(
        "updates.test")
    verified = [leaf.cert, *leaf.parents]  # what OpenSSL builds: up to the root in the bundle
    pinned = pki.pinned_root if pin == "root" else pki.pinned_int
    tmp = tmp_path_factory.mktemp("served")
    body = pinset("p", ["updates.test"], f'{{ spki_sha256 = "{pki.pin_of(pinned)}" }}')
    config = parse_pins(write_pins(tmp, body, bundle=pki.bundle).read_text(), base_dir=tmp)
    seen: list[list[bytes]] = []
    pm = PinningPoolManager(config, retries=False)
    pm.guard.after_check.append(lambda verdict, port: seen.append([c.der for c in verdict.chain]))
    served_extra = [cas[name].cert for name in extras]
    try:
        # Not the https_server fixture: Hypothesis runs many examples per function-scoped fixture.
        context = leaf.server_context(include_root=True, extra=served_extra)
        with LoopbackServer(context, {"/": Response(200, b"ok")}) as server:
            try:
                pm.request("GET", server.url("/"))
                refused = None
            except PinViolation as e:
                refused = e
    finally:
        pm.clear()
    event(f"{issuer} leaf, {len(extras)} extra certificates served")
    if issuer == "pinned":
        assert refused is None
        assert seen == [[der(c) for c in verified]]
    else:
        # Refused although the served chain may hold both pinned CAs: the refusal lists the
        # verified chain, and no pinned key is in it.
        assert refused is not None
        assert refused.reason == "unexpected-issuer"
        assert [e.serial for e in refused.chain] == [_serial(c) for c in verified]
        assert pki.pin_of(pinned) not in [e.spki_sha256 for e in refused.chain]


_impostors: dict[int, CA] = {}


def _impostor(pki: PKI) -> CA:
    if id(pki) not in _impostors:
        _impostors[id(pki)] = CA("", parent=pki.rogue_root, subject=pki.pinned_int.cert.subject)
    return _impostors[id(pki)]


def _serial(cert: x509.Certificate) -> str:
    from pinclient.config import format_serial

    return format_serial(cert.serial_number)


# =========================================================================== host matching

# Labels chosen so that collisions are frequent, with the IDNA cases that differ between IDNA 2003
# (Python's "idna" codec) and IDNA 2008 (urllib3, and so the name actually connected to).
LABELS = ["a", "b", "cdn", "xn--bcher-kva", "bücher", "straße", "xn--strae-oqa", "strasse", "ὀδυσσεύς",
          "пример", "x-1", "0",
          # IPv4 parts as inet_aton reads them (issue 14): the reference is the C library's own
          "1", "01", "0x7f", "255", "256", "4294967295"]


def _spell(draw: st.DrawFn, labels: Sequence[str]) -> str:
    """One of the ways to write the same name: any ASCII case, Unicode case where it round-trips,
    an optional trailing dot."""
    out = []
    for label in labels:
        chars = []
        for c in label:
            upper = c.upper()
            if len(upper) == 1 and upper.lower() == c and draw(st.booleans()):
                chars.append(upper)
            else:
                chars.append(c)
        out.append("".join(chars))
    return ".".join(out) + draw(st.sampled_from(["", "."]))


def connected_name(host: str) -> str | None:
    """The reference: the name urllib3 connects to, sends as SNI and checks the certificate
    against (lower-case, IDNA 2008 A-labels), without a trailing dot; None if it refuses the name.
    A name ending in a number is an IPv4 address as the socket reads it (the C library's
    inet_aton, as getaddrinfo does), or refused (None) when inet_aton refuses it."""
    try:
        parsed = parse_url(f"https://{host}/").host
    except LocationParseError:
        return None
    name = parsed.rstrip(".") if parsed else None
    if name and re.fullmatch(r"[0-9]+|0[xX][0-9a-fA-F]+", name.rsplit(".", 1)[-1]):
        try:
            address = socket.inet_ntoa(socket.inet_aton(name))
        except OSError:
            return None
        # 0.0.0.0 is refused: Linux connects it to 127.0.0.1, so no pinset lookup can be right.
        return None if address == "0.0.0.0" else address
    return name


def model_match(pattern: Sequence[str], host: Sequence[str]) -> bool:
    if pattern[0] == "*":
        return len(host) == len(pattern) and list(host[1:]) == list(pattern[1:])
    return list(host) == list(pattern)


host_labels = st.lists(st.sampled_from(LABELS), min_size=1, max_size=4)


def _is_address(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


@given(data=st.data(), labels=host_labels)
def test_host_normalisation_is_the_name_urllib3_connects_to(data: st.DataObject, labels: list[str]) -> None:
    spelled = _spell(data.draw, labels)
    expected = connected_name(spelled)
    note(f"{spelled!r} -> urllib3 {expected!r}")
    if expected is None:
        event("urllib3 refuses the name")
        return
    # A pinset written any way the user likes must cover the name the connection uses, whichever
    # spelling the URL had: OkHttp missed upper-case and trailing-dot hosts, and IDNA 2003 vs 2008
    # (ß, ς) would silently leave a pinset unused.
    assert normalize_host(spelled) == expected
    assert normalize_pattern(spelled) == expected
    assert normalize_host(expected) == expected
    event("non-ASCII" if not spelled.isascii() else "ASCII")


@pytest.mark.parametrize(("written", "connected"), [("straße.test", "xn--strae-oqa.test"),
                                                    ("STRASSE.test", "strasse.test"),
                                                    ("ὀδυσσεύς.test", "xn--pxac3bcak3d8526a.test")])
def test_idna_deviation_characters_name_the_host_urllib3_connects_to(written: str, connected: str) -> None:
    # Found by the property above: IDNA 2003 (Python's codec) maps ß to "ss" and final sigma to
    # sigma, so a pinset for straße.test covered strasse.test instead of the host connected to.
    assert connected_name(written) == connected
    assert normalize_pattern(written) == connected
    assert host_matches(normalize_pattern("*." + written), normalize_host("www." + connected))


@given(data=st.data(), pattern=host_labels, host=host_labels, wildcard=st.booleans())
def test_host_patterns_match_exactly_one_label_under_a_wildcard(
        data: st.DataObject, pattern: list[str], host: list[str], wildcard: bool) -> None:
    p_text = ("*." if wildcard else "") + _spell(data.draw, pattern)
    h_text = _spell(data.draw, host)
    p_ref = connected_name(_spell(data.draw, pattern))
    h_ref = connected_name(h_text)
    if p_ref is None or h_ref is None:
        return
    if wildcard and _is_address(p_ref):  # "*.0" is "*.0.0.0.0": it could never match, so refused
        with pytest.raises(ValueError, match="can never match"):
            normalize_pattern(p_text)
        return
    p_labels = (["*"] if wildcard else []) + p_ref.split(".")
    expected = model_match(p_labels, h_ref.split("."))
    event(f"match={expected}")
    assert host_matches(normalize_pattern(p_text), normalize_host(h_text)) == expected


@given(data=st.data(), patterns=st.lists(st.tuples(st.booleans(), host_labels), min_size=1, max_size=4),
       host=host_labels)
def test_the_most_specific_pattern_wins_and_ties_go_to_the_first_pinset(
        data: st.DataObject, patterns: list[tuple[bool, list[str]]], host: list[str]) -> None:
    texts = [("*." if w else "") + ".".join(labels) for w, labels in patterns]
    if any(connected_name(t.removeprefix("*.")) is None for t in texts) or connected_name(".".join(host)) is None:
        return
    if any(t.startswith("*.") and _is_address(connected_name(t[2:]) or "") for t in texts):
        return  # a wildcard over an IP address is refused (test above)
    body = "".join(pinset(f"p{i}", [t], f'{{ spki_sha256 = "{_b64(bytes(32))}" }}') for i, t in enumerate(texts))
    config = parse_pins("version = 1\n" + body)
    h = connected_name(_spell(data.draw, host))
    assert h is not None
    refs = [(["*"] if w else []) + (connected_name(".".join(labels)) or "").split(".") for w, labels in patterns]
    exact = [i for i, r in enumerate(refs) if r[0] != "*" and model_match(r, h.split("."))]
    wild = [i for i, r in enumerate(refs) if r[0] == "*" and model_match(r, h.split("."))]
    expected = exact[0] if exact else wild[0] if wild else None
    got = config.pinset_for(normalize_host(_spell(data.draw, host)))
    event("exact" if exact else "wildcard" if wild else "uncovered")
    assert (None if got is None else int(got.name[1:])) == expected


# =========================================================================== the loader

GOOD_PINS = [_b64(hashlib.sha256(bytes([i])).digest()) for i in range(3)]


def any_toml() -> st.SearchStrategy[Any]:
    """Any TOML value (nested a little): what a confused or hostile file can put anywhere."""
    scalars = st.one_of(
        st.text(max_size=20), st.integers(-(2**63), 2**63 - 1), st.booleans(),
        st.floats(allow_nan=True), st.dates(), st.datetimes(),
        st.datetimes(timezones=st.just(dt.timezone.utc)), st.times())
    keys = st.text(min_size=1, max_size=10)
    return st.recursive(scalars, lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(keys, inner, max_size=3)), max_leaves=6)


@st.composite
def mostly(draw: st.DrawFn, good: st.SearchStrategy[Any], bad: st.SearchStrategy[Any] | None = None,
           percent_bad: int = 8) -> Any:
    """Mostly a plausible value; sometimes a bad one of the right type, sometimes any TOML value.
    (Uniform choices would reject nearly every document at its first key.)"""
    roll = draw(st.integers(0, 99))
    if roll < percent_bad // 2:
        return draw(any_toml())
    if roll < percent_bad and bad is not None:
        return draw(bad)
    return draw(good)


any_text = st.text(max_size=12)
good_hosts = st.sampled_from(["u.example.com", "*.example.com", "U.Example.COM.", "bücher.example",
                              "straße.example", "*.bücher.example", "127.0.0.1", "[::1]", "xn--bcher-kva.ch"])
bad_hosts = st.sampled_from(["*.*.a", "a*.b", "*", "*.", ".", "a..b", "a" * 64 + ".example", "ﬁle.example",
                             "☃.example", "a\u200db.example", " ", "", "xn--zz.example", "ς.example"]) | any_text
good_dns = st.sampled_from(["CN=Example Root R1,O=Example Inc", "cn=example root r1, o=example inc",
                            "CN=a", "C=US", "CN=x+O=y", "1.2.3.4=foo", "O=\u00e9t\u00e9", "CN=a\\,b"])
bad_dns = st.sampled_from(["C=USA", "CN=#0403616263", "FOO=bar", "CN=", "=x", "CN=a,,O=b", "CN=\\", "CN=\\2",
                           "", "CN=#zz", "CN=#", "2.5.4.6=#0c03555341"]) | st.builds("CN=".__add__, any_text) | any_text
good_pins = st.sampled_from([*GOOD_PINS, "sha256/" + GOOD_PINS[0]])
bad_pins = st.sampled_from(["AAAA", "not base64!", "", "sha256/", _b64(bytes(31)), _b64(bytes(33)),
                            GOOD_PINS[0].rstrip("="), "sha256/sha256/" + GOOD_PINS[0]]) | any_text
good_certs = st.sampled_from(["cert.pem", "cert.der", "./cert.pem"])
bad_certs = st.sampled_from(["garbage.pem", "garbage.der", "empty.pem", "missing.pem", "sub", "sub/", "",
                             "a\x00b", "/dev/null"]) | any_text
good_serials = st.sampled_from(["92:39:d5", "0x92", "0X92", "ff", "9239D5348F40D1695A745470E1F23F43"])
bad_serials = st.sampled_from(["", "0x", "zz", ":", "1:2:3:", "-1", " ", "0x-1"]) | st.integers(-5, 2**70) | any_text
good_uris = st.sampled_from(["https://reports.example.com/pins", "https://[::1]:8443/r", "HTTPS://r.test"])
bad_uris = st.sampled_from(["http://r.test/", "https://", "https://r.test:99999/", "https://[::1/", "mailto:x",
                            "https://r.test:x/", "", "https://\x00/"]) | any_text
good_files = st.sampled_from(["reports.jsonl", "sub/reports.jsonl"])
bad_files = st.sampled_from(["", "a\x00b", "sub", "/"]) | any_text
modes = mostly(st.sampled_from(["enforce", "report-only"]), st.sampled_from(["Enforce", "report_only", ""]))


@st.composite
def lifecycle(draw: st.DrawFn, table: dict[str, Any], *, pinset: bool) -> None:
    """The rollout and revocation keys: mode, report_uri, report_file, revocation, crl; expires and
    on_expiry on pinsets; cache_dir in [defaults]."""
    if draw(st.integers(0, 3)) == 0:
        table["mode"] = draw(modes)
    if draw(st.integers(0, 5)) == 0:
        table["report_uri"] = draw(mostly(good_uris, bad_uris))
    if draw(st.integers(0, 5)) == 0:
        table["report_file"] = draw(mostly(good_files, bad_files))
    if pinset and draw(st.integers(0, 4)) == 0:
        table["expires"] = draw(mostly(st.dates(), st.datetimes() | st.times() | st.just("2027-01-01")))
    if pinset and draw(st.integers(0, 5)) == 0:
        table["on_expiry"] = draw(modes)
    # Revocation (issue 5): revocation, crl; cache_dir in [defaults] only.
    if draw(st.integers(0, 4)) == 0:
        table["revocation"] = draw(mostly(st.sampled_from(["off", "soft-fail", "hard-fail"]),
                                          st.sampled_from(["on", "hard_fail", ""])))
    if draw(st.integers(0, 5)) == 0:
        table["crl"] = draw(mostly(st.sampled_from(["fallback", "prefer"]), st.sampled_from(["only", ""])))
    if not pinset and draw(st.integers(0, 5)) == 0:
        table["cache_dir"] = draw(mostly(st.sampled_from(["cache", "sub", "."]), bad_files | st.just("cert.pem")))


@st.composite
def issuer_entries(draw: st.DrawFn) -> Any:
    kinds = {"spki_sha256": mostly(good_pins, bad_pins), "subject": mostly(good_dns, bad_dns),
             "cert": mostly(good_certs, bad_certs)}
    # Exactly one kind is the rule; none or two of them, now and then.
    count = draw(st.sampled_from([1] * 12 + [0, 2, 3]))
    entry = {k: draw(kinds[k]) for k in draw(st.permutations(list(kinds)))[:count]}
    if draw(st.integers(0, 3)) == 0:
        entry["label"] = draw(mostly(any_text))
    if draw(st.integers(0, 19)) == 0:
        entry[draw(st.sampled_from(["spki", "subjet", "Cert", "x"]))] = draw(any_toml())
    return draw(mostly(st.just(entry), percent_bad=4))


@st.composite
def pinset_tables(draw: st.DrawFn) -> Any:
    table: dict[str, Any] = {}
    if draw(st.integers(0, 19)):
        table["name"] = draw(mostly(st.sampled_from(["a", "b", "example-updates"]), st.just("") | any_text))
    if draw(st.integers(0, 19)):
        table["hosts"] = draw(mostly(st.lists(mostly(good_hosts, bad_hosts), min_size=1, max_size=3),
                                     st.just([])))
    if draw(st.integers(0, 19)):
        table["issuers"] = draw(mostly(st.lists(issuer_entries(), min_size=1, max_size=3), st.just([])))
    draw(lifecycle(table, pinset=True))
    if draw(st.integers(0, 19)) == 0:
        table[draw(st.sampled_from(["host", "issuer", "colour", "mode "]))] = draw(any_toml())
    return draw(mostly(st.just(table), percent_bad=4))


@st.composite
def blocked_tables(draw: st.DrawFn) -> Any:
    table: dict[str, Any] = {}
    shape = draw(st.sampled_from(["serial"] * 4 + ["spki"] * 4 + ["issuer", "both", "none"]))
    if shape in ("serial", "issuer", "both"):
        table["issuer"] = draw(mostly(good_dns, bad_dns))
    if shape in ("serial", "both"):
        table["serial"] = draw(mostly(good_serials, bad_serials))
    if shape in ("spki", "both"):
        table["spki_sha256"] = draw(mostly(good_pins, bad_pins))
    if draw(st.booleans()):
        table["reason"] = draw(mostly(any_text))
    return draw(mostly(st.just(table), percent_bad=4))


@st.composite
def documents(draw: st.DrawFn) -> dict[str, Any]:
    doc: dict[str, Any] = {}
    if draw(st.integers(0, 29)):
        doc["version"] = draw(mostly(st.just(1), st.sampled_from([2, 0, -1, 1.0, "1", True]), percent_bad=4))
    if draw(st.booleans()):
        defaults: dict[str, Any] = {}
        if draw(st.booleans()):
            defaults["ca_bundle"] = draw(mostly(st.sampled_from(["certifi", "cert.pem"]),
                                                st.sampled_from(["missing.pem", "sub", "", "a\x00b"])))
        if draw(st.booleans()):
            defaults["unpinned"] = draw(mostly(st.sampled_from(["refuse", "allow"]),
                                               st.sampled_from(["Allow", "maybe", ""])))
        draw(lifecycle(defaults, pinset=False))
        if draw(st.integers(0, 19)) == 0:
            defaults["unpined"] = "allow"
        doc["defaults"] = draw(mostly(st.just(defaults), percent_bad=4))
    if draw(st.integers(0, 9)):
        doc["pinset"] = draw(mostly(st.lists(pinset_tables(), max_size=3), percent_bad=4))
    if draw(st.booleans()):
        doc["blocked"] = draw(mostly(st.lists(blocked_tables(), max_size=2), percent_bad=4))
    if draw(st.integers(0, 29)) == 0:
        doc[draw(st.sampled_from(["pinsets", "Version", "x"]))] = draw(any_toml())
    return doc


# A tiny TOML emitter: every key at the top level, every table inline. tomllib reads that back to
# the same dict as [[pinset]] sections would give, so the loader sees exactly the generated data.

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r"}


def toml_string(text: str) -> str:
    out = []
    for c in text:
        if c in _ESCAPES:
            out.append(_ESCAPES[c])
        elif ord(c) < 0x20 or ord(c) == 0x7F:
            out.append(f"\\u{ord(c):04x}")
        else:
            out.append(c)
    return '"' + "".join(out) + '"'


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return toml_string(value)
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{toml_key(k)} = {toml_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(type(value))


def toml_key(key: str) -> str:
    return key if _BARE_KEY.fullmatch(key) else toml_string(key)


def dump(doc: dict[str, Any]) -> str:
    return "".join(f"{toml_key(k)} = {toml_value(v)}\n" for k, v in doc.items())


@pytest.fixture(scope="module")
def loader_dir(tmp_path_factory: pytest.TempPathFactory, pki: PKI) -> Path:
    """A folder with the files generated documents refer to, good and bad."""
    folder = tmp_path_factory.mktemp("loader")
    (folder / "cert.pem").write_bytes(pki.pinned_root.cert_pem())
    (folder / "cert.der").write_bytes(der(pki.pinned_root.cert))
    (folder / "garbage.pem").write_bytes(b"-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")
    (folder / "garbage.der").write_bytes(b"\x30\x03\x02\x01\x01")
    (folder / "empty.pem").write_bytes(b"")
    (folder / "sub").mkdir()
    return folder


KNOWN_KEYS = {"version", "defaults", "pinset", "blocked", "ca_bundle", "unpinned", "mode", "report_uri",
              "report_file", "revocation", "crl", "cache_dir", "name", "hosts", "issuers", "expires",
              "on_expiry", "spki_sha256", "subject", "cert", "label", "issuer", "serial", "reason"}


def loads_or_pins_file_error(data: str | bytes, folder: Path) -> PinConfig | None:
    try:
        return parse_pins(data, base_dir=folder)
    except PinsFileError as e:
        error = e
    assert error.exit_code == 2
    assert error.message.startswith("<pins>"), "the error names the file"
    event(f"PinsFileError key={error.key if error.key in KNOWN_KEYS else '(unknown key or none)'}")
    return None


def _same(a: Any, b: Any) -> bool:
    # nan != nan; compare the document tomllib reads back with what was generated.
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a):
        return math.isnan(b)
    if isinstance(a, list):
        return isinstance(b, list) and len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return bool(a == b) and type(a) is type(b)


@fixture_ok()
@given(doc=documents())
# Bugs these tests found, kept as fixed examples (each raised ValueError, not PinsFileError):
@example(doc={"version": 1, "defaults": {"report_file": "a\x00b"}})
@example(doc={"version": 1, "pinset": [{"name": "a", "hosts": ["a"], "issuers": [{"cert": "a\x00b"}]}]})
def test_random_documents_load_or_raise_pins_file_error(doc: dict[str, Any], loader_dir: Path) -> None:
    text = dump(doc)
    note(text)
    assert _same(tomllib.loads(text), doc), "the test's TOML emitter must round-trip"
    config = loads_or_pins_file_error(text, loader_dir)
    if config is not None:
        event("loaded")
        # What loads is what the format promises: named, non-empty pinsets with unique names.
        assert len({p.name for p in config.pinsets}) == len(config.pinsets)
        assert all(p.hosts and p.issuers for p in config.pinsets)
        for p in config.pinsets:
            for h in p.hosts:
                assert normalize_pattern(h) == h, "patterns are stored normalised"
            for pin in p.issuers:
                assert (pin.spki_sha256 is not None and len(pin.spki_sha256) == 32) or pin.subject


@fixture_ok()
@given(data=st.binary(max_size=400))
def test_random_bytes_load_or_raise_pins_file_error(data: bytes, loader_dir: Path) -> None:
    loads_or_pins_file_error(data, loader_dir)


@fixture_ok()
@given(doc=documents(), edits=st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 3),
                                                   st.sampled_from([*'[]{}="\\,.\n#\'', "\x00", "é", "1"])),
                                         min_size=1, max_size=4))
def test_mutated_documents_load_or_raise_pins_file_error(doc: dict[str, Any], edits: list[tuple[int, int, str]],
                                                          loader_dir: Path) -> None:
    # Random bytes rarely get past the TOML parser; a valid document with a few edits does.
    text = dump(doc)
    for pos, op, ch in edits:
        i = pos % (len(text) + 1)
        text = [text[:i] + ch + text[i:], text[:i] + text[i + 1:], text[:i] + ch + text[i + 1:],
                text[:i] + text[i:i + 8] + text[i:]][op]
    note(repr(text))
    loads_or_pins_file_error(text, loader_dir)


@fixture_ok()
@given(names=st.lists(st.sampled_from(["a", "b", "c"]), min_size=1, max_size=4),
       spellings=st.data())
def test_valid_documents_always_load(names: list[str], spellings: st.DataObject, loader_dir: Path) -> None:
    # The other half of "load or error": a loader that refused everything would pass the tests
    # above. Every well-formed document here must load, whatever its spelling.
    unique = list(dict.fromkeys(names))
    text = "version = 1\n"
    for name in unique:
        host = _spell(spellings.draw, spellings.draw(host_labels.filter(
            lambda labels: connected_name(".".join(labels)) is not None)))  # "a.0" is no host
        pin = spellings.draw(st.sampled_from([f'{{ spki_sha256 = "{GOOD_PINS[0]}" }}',
                                              f'{{ spki_sha256 = "sha256/{GOOD_PINS[1]}", label = "b" }}',
                                              '{ subject = "cn=Example Root R1, o=Example Inc" }',
                                              '{ cert = "cert.pem" }', '{ cert = "cert.der" }']))
        text += pinset(name, [host], pin)
    config = parse_pins(text, base_dir=loader_dir)
    assert [p.name for p in config.pinsets] == unique


@pytest.mark.parametrize("depth", [1000, 50_000])
@pytest.mark.parametrize("shape", ["[", "{a = "])
def test_deeply_nested_values_are_a_pins_file_error(shape: str, depth: int) -> None:
    # Found while writing these tests: tomllib recurses once per nesting level, so a deep enough array
    # raised RecursionError instead of PinsFileError.
    close = "]" if shape == "[" else "}"
    with pytest.raises(PinsFileError):
        parse_pins("version = " + shape * depth + "1" + close * depth)

