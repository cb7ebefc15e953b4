"""The pin check's memo of verdicts (issue 18): remembering a verdict must never let a different
chain, another day or another config reuse it. Each test fails if that part of the key is dropped."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from pinclient import PinningPoolManager, PinViolation
from pinclient._pki import CA, Leaf
from pinclient.config import PinConfig, load_pins
from pinclient.policy import VerdictMemo, evaluate

from .conftest import HOST, PKI, ServeHTTPS, pinset, write_pins

UTC = dt.timezone.utc


def ders(leaf: Leaf) -> list[bytes]:
    return [c.public_bytes(serialization.Encoding.DER) for c in [leaf.cert, *leaf.parents]]


def expiring_config(pki: PKI, tmp_path: Path, day: dt.date, on_expiry: str) -> PinConfig:
    body = pinset("expiring", [HOST], f'{{ spki_sha256 = "{pki.pin_of(pki.pinned_root)}" }}')
    body += f'expires = {day.isoformat()}\non_expiry = "{on_expiry}"\n'
    return load_pins(write_pins(tmp_path, body, bundle=pki.bundle))


def test_a_remembered_verdict_is_not_given_to_another_chain(pki: PKI, root_pinned_config: PinConfig) -> None:
    memo = VerdictMemo()
    now = dt.datetime.now(UTC)
    good = ders(pki.pinned_int.issue_leaf(HOST))
    rogue = ders(pki.rogue_root.issue_leaf(HOST))
    assert memo.evaluate(root_pinned_config, HOST, good, now).accepted
    assert memo.evaluate(root_pinned_config, HOST, good, now).accepted  # from the memo
    refused = memo.evaluate(root_pinned_config, HOST, rogue, now)
    assert not refused.accepted
    assert refused.reason == "unexpected-issuer"
    # The same leaf with a different certificate above it is another chain too.
    other_root = CA("Example Root R1", org="Example Inc")  # same name, another key
    spliced = [good[0], *ders(other_root.issue_leaf(HOST))[1:]]
    assert not memo.evaluate(root_pinned_config, HOST, spliced, now).accepted


def test_a_remembered_verdict_is_not_given_to_another_host(pki: PKI, root_pinned_config: PinConfig) -> None:
    memo = VerdictMemo()
    now = dt.datetime.now(UTC)
    chain = ders(pki.pinned_int.issue_leaf(HOST, "other.test"))
    assert memo.evaluate(root_pinned_config, HOST, chain, now).accepted
    other = memo.evaluate(root_pinned_config, "other.test", chain, now)
    assert (other.accepted, other.reason) == (False, "unpinned")  # no pinset covers other.test


@pytest.mark.parametrize("on_expiry", ["enforce", "report-only"])
def test_the_day_a_pinset_expires_is_not_hidden_by_a_verdict_from_the_day_before(
        pki: PKI, tmp_path: Path, on_expiry: str) -> None:
    expires = dt.date(2030, 1, 2)
    config = expiring_config(pki, tmp_path, expires, on_expiry)
    memo = VerdictMemo()
    rogue = ders(pki.rogue_root.issue_leaf(HOST))
    before = dt.datetime(2030, 1, 1, 23, 59, 59, tzinfo=UTC)
    after = dt.datetime(2030, 1, 2, 0, 0, 1, tzinfo=UTC)
    first = memo.evaluate(config, HOST, rogue, before)
    assert (first.accepted, first.expired) == (False, False)
    second = memo.evaluate(config, HOST, rogue, after)
    assert second == evaluate(config, HOST, rogue, now=after)
    assert second.expired
    assert second.accepted is (on_expiry == "report-only")


def test_another_config_empties_the_memo(pki: PKI, tmp_path: Path, root_pinned_config: PinConfig) -> None:
    memo = VerdictMemo()
    now = dt.datetime.now(UTC)
    chain = ders(pki.pinned_int.issue_leaf(HOST))
    assert memo.evaluate(root_pinned_config, HOST, chain, now).accepted
    rogue_only = load_pins(write_pins(tmp_path / "rogue", pinset(
        "rogue-only", [HOST], f'{{ spki_sha256 = "{pki.pin_of(pki.rogue_root)}" }}'), bundle=pki.bundle))
    assert not memo.evaluate(rogue_only, HOST, chain, now).accepted


def test_the_memo_stays_bounded(pki: PKI, root_pinned_config: PinConfig) -> None:
    memo = VerdictMemo()
    now = dt.datetime.now(UTC)
    chain = ders(pki.pinned_int.issue_leaf(HOST))
    for i in range(3 * VerdictMemo.SIZE):
        memo.evaluate(root_pinned_config, f"h{i}.test", chain, now)
    assert len(memo._verdicts) <= VerdictMemo.SIZE


def test_one_manager_accepts_the_pinned_server_then_refuses_a_rogue_one_for_the_same_host(
        pki: PKI, root_pinned_config: PinConfig, https_server: ServeHTTPS) -> None:
    # Real handshakes through one guard: the rogue chain must be judged on its own, not given the
    # verdict remembered for the pinned chain a moment earlier.
    with PinningPoolManager(root_pinned_config) as pm:
        for _ in range(2):
            with https_server() as good:
                assert pm.request("GET", good.url("/"), retries=False).status in (200, 404)
        with https_server(issuer=pki.rogue_root) as rogue, pytest.raises(PinViolation) as refused:
            pm.request("GET", rogue.url("/"), retries=False)
        assert refused.value.reason == "unexpected-issuer"
        assert rogue.requests == [], "refused before a request byte"
        assert pm.guard.checks == 3
