"""Retries: what is retried (connection errors, broken bodies, 429/5xx with Retry-After) and what
never is (pin violations, TLS validation, other 4xx, integrity). Real loopback TLS; backoff is
shrunk so nothing waits long, and only counts are asserted."""

from __future__ import annotations

import datetime as dt
import logging
import random
import socket
from pathlib import Path

import pytest

from pinclient import (
    HashMismatch,
    HTTPStatusError,
    NetworkError,
    PinViolation,
    SizeError,
    TLSError,
    fetch_update,
)
from pinclient._demo import Response
from pinclient._download.retry import RetryPolicy, parse_retry_after, retry_delay
from pinclient.config import PinConfig

from .conftest import HOST, PKI, ServeHTTPS
from .hostile import Seen, ranged

FAST = RetryPolicy(retries=3, backoff=0.01, retry_after_cap=0.05)


@pytest.mark.parametrize("status", [503, 429])
def test_retry_after_then_200_succeeds(root_pinned_config: PinConfig, tmp_path: Path,
                                       payload: bytes, status: int,
                                       caplog: pytest.LogCaptureFixture, https_server: ServeHTTPS) -> None:
    seen = Seen()
    busy = Response(status, b"busy", headers={"Retry-After": "1"})
    with https_server({"/u": ranged(payload, seen, statuses={0: busy})}) as s:
        with caplog.at_level(logging.WARNING, logger="pinclient"):
            result = fetch_update(s.url("/u"), tmp_path / "u", config=root_pinned_config, retries=FAST)
    assert result.attempts == 2
    assert len(seen.requests) == 2
    assert (tmp_path / "u").read_bytes() == payload
    # Retry-After: 1 was honoured, shortened to the cap of 0.05 s.
    assert f"HTTP {status}" in caplog.text
    assert "Retrying in 0.1 s" in caplog.text or "Retrying in 0.0 s" in caplog.text


def test_5xx_is_retried_until_the_retries_run_out(root_pinned_config: PinConfig,
                                                  tmp_path: Path, https_server: ServeHTTPS) -> None:
    with https_server({"/u": Response(502, b"bad gateway")}) as s:
        with pytest.raises(HTTPStatusError) as info:
            fetch_update(s.url("/u"), tmp_path / "u", config=root_pinned_config, retries=FAST)
    assert info.value.status == 502
    assert len(s.requests) == 1 + FAST.retries
    assert not (tmp_path / "u").exists()


@pytest.mark.parametrize("status", [400, 403, 404, 410])
def test_other_4xx_is_never_retried(root_pinned_config: PinConfig, tmp_path: Path,
                                    status: int, https_server: ServeHTTPS) -> None:
    with https_server({"/u": Response(status, b"no")}) as s:
        with pytest.raises(HTTPStatusError) as info:
            fetch_update(s.url("/u"), tmp_path / "u", config=root_pinned_config, retries=FAST)
    assert info.value.transient is False
    assert len(s.requests) == 1


def test_pin_violation_is_never_retried(pki: PKI, root_pinned_config: PinConfig, tmp_path: Path,
                                        payload: bytes, https_server: ServeHTTPS) -> None:
    with https_server({"/u": Response(200, payload)}, issuer=pki.rogue_root) as s:
        with pytest.raises(PinViolation):
            fetch_update(s.url("/u"), tmp_path / "u", config=root_pinned_config, retries=FAST)
        s.wait_idle()
    assert s.handshakes == 1
    assert s.requests == []


def test_tls_validation_failure_is_never_retried(pki: PKI, root_pinned_config: PinConfig, tmp_path: Path,
                                                 payload: bytes, https_server: ServeHTTPS) -> None:
    with https_server({"/u": Response(200, payload)}, issuer=pki.untrusted_root) as s:
        with pytest.raises(TLSError):
            fetch_update(s.url("/u"), tmp_path / "u", config=root_pinned_config, retries=FAST)
        s.wait_idle()
    assert len(s.conns) == 1


def test_integrity_failures_are_never_retried(root_pinned_config: PinConfig, tmp_path: Path,
                                              payload: bytes, https_server: ServeHTTPS) -> None:
    seen = Seen()
    with https_server({"/u": ranged(payload, seen)}) as s:
        with pytest.raises(HashMismatch):
            fetch_update(s.url("/u"), tmp_path / "u", config=root_pinned_config, sha256="ab" * 32,
                         retries=FAST)
        with pytest.raises(SizeError):
            fetch_update(s.url("/u"), tmp_path / "u", config=root_pinned_config, size=5, retries=FAST)
    assert len(seen.requests) == 2, "one request each"
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("u")) == []


def test_refused_connection_is_retried(root_pinned_config: PinConfig, tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # nothing listens here
        with pytest.raises(NetworkError, match="cannot connect") as info:
            fetch_update(f"https://{HOST}:{port}/u", tmp_path / "u", config=root_pinned_config,
                         retries=RetryPolicy(retries=2, backoff=0.01))
    assert info.value.transient


def test_broken_bodies_are_retried_and_resumed_each_time(root_pinned_config: PinConfig,
                                                         tmp_path: Path, https_server: ServeHTTPS) -> None:
    import hashlib
    import os

    data = os.urandom(200_000)
    seen = Seen()
    route = ranged(data, seen, drop_after={0: 50_000, 1: 50_000, 2: 50_000})
    with https_server({"/u": route}) as s:
        result = fetch_update(s.url("/u"), tmp_path / "u", config=root_pinned_config,
                              sha256=hashlib.sha256(data).hexdigest(), retries=FAST)
    assert result.attempts == 4
    starts = [int(r[6:].split("-")[0]) if r else 0 for r in seen.ranges]
    assert starts == sorted(starts), "each retry continues after the last"
    assert starts[0] == 0
    assert starts[-1] > 100_000
    assert (tmp_path / "u").read_bytes() == data


# --------------------------------------------------------------------------- the policy, pure


def test_retry_delay_policy() -> None:
    rng = random.Random(7)
    policy = RetryPolicy(retries=3, backoff=1.0, max_backoff=3.0, retry_after_cap=10.0)
    transient = NetworkError("x")
    delays = [retry_delay(policy, n, transient, rng) for n in range(4)]
    assert delays[3] is None, "out of retries"
    assert all(d is not None and 0 <= d <= min(3.0, 2**n) for n, d in enumerate(delays[:3]))
    assert retry_delay(policy, 0, HTTPStatusError("x", status=503, retry_after=120), rng) == 10.0
    assert retry_delay(policy, 0, HTTPStatusError("x", status=429, retry_after=2), rng) == 2.0
    assert retry_delay(policy, 0, HTTPStatusError("x", status=404), rng) is None
    assert retry_delay(policy, 0, NetworkError("loop", transient=False), rng) is None
    assert retry_delay(policy, 0, TLSError("x"), rng) is None
    assert retry_delay(policy, 0, HashMismatch("x", expected="a", actual="b"), rng) is None
    assert retry_delay(policy, 0, PinViolation("x", host="h"), rng) is None


def test_parse_retry_after() -> None:
    now = dt.datetime(2015, 10, 21, 7, 28, 0, tzinfo=dt.timezone.utc)
    assert parse_retry_after("120", now) == 120
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:30 GMT", now) == 30
    assert parse_retry_after("Wed, 21 Oct 2015 07:00:00 GMT", now) == 0
    assert parse_retry_after("soon", now) is None
    assert parse_retry_after(None, now) is None
    assert parse_retry_after("-5", now) is None
