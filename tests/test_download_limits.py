"""Endless data and slow retrieval (TUF's attack list): size limits, read-gap timeout, minimum
rate and deadline, against hostile servers on real loopback TLS. Limits are small so the tests are
fast; no test asserts a duration."""

from __future__ import annotations

import threading
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import pytest

from pinclient import NetworkError, PinsFileError, SizeError, fetch_update
from pinclient._demo import Response
from pinclient.config import PinConfig, load_pins, parse_pins

from .conftest import HOST, PKI, ServeHTTPS, pinset, write_pins
from .hostile import endless, trickle


@pytest.fixture
def stop() -> Iterator[threading.Event]:
    event = threading.Event()
    yield event
    event.set()  # ends trickling server threads promptly


# --------------------------------------------------------------------------- endless data


def test_content_length_ten_times_the_declared_size_aborts_before_the_body(
        root_pinned_config: PinConfig, tmp_path: Path, https_server: ServeHTTPS) -> None:
    counter: dict[str, int] = {}
    response = Response(200, endless(counter, cap=10 * 100_000), content_length=10 * 100_000)
    with https_server({"/u": response}) as s:
        with pytest.raises(SizeError, match="declares 1000000 bytes; expected exactly 100000"):
            fetch_update(s.url("/u"), tmp_path / "u", config=root_pinned_config, size=100_000)
    assert not (tmp_path / "u").exists()


def test_body_ten_times_the_declared_size_is_cut_off_at_the_limit(
        root_pinned_config: PinConfig, tmp_path: Path, https_server: ServeHTTPS) -> None:
    # No Content-Length (close-delimited): the only defence is counting.
    counter: dict[str, int] = {}
    with https_server({"/u": Response(200, endless(counter, cap=10 * 1_000_000), content_length=None)}) as s:
        with pytest.raises(SizeError, match="sent more than 1000000 bytes"):
            fetch_update(s.url("/u"), tmp_path / "u", config=root_pinned_config, size=1_000_000)
        s.wait_idle()
    assert counter["sent"] < 10 * 1_000_000, "the client hung up long before the end"
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("u")) == []


def test_unbounded_body_stops_at_max_size_with_little_memory(root_pinned_config: PinConfig,
                                                             tmp_path: Path,
                                                             https_server: ServeHTTPS) -> None:
    counter: dict[str, int] = {}
    limit = 24 * 1024 * 1024
    with https_server({"/u": Response(200, endless(counter), content_length=None)}) as s:
        tracemalloc.start()
        try:
            with pytest.raises(SizeError, match="max_size"):
                fetch_update(s.url("/u"), tmp_path / "u", config=root_pinned_config, max_size=limit)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        s.wait_idle()
    # The body streams through three reused 1 MiB buffers (pinclient._download.pipeline: one with a
    # single core); nothing holds the whole body.
    assert peak < 6 * 1024 * 1024, f"peak Python memory {peak} bytes while reading {limit}"
    assert limit <= counter["sent"] < 4 * limit


def test_pinset_max_size_applies_without_size(pki: PKI, tmp_path: Path, payload: bytes,
                                              https_server: ServeHTTPS) -> None:
    body = pinset("x", [HOST], f'{{ spki_sha256 = "{pki.pin_of(pki.pinned_root)}" }}') + "max_size = 1000\n"
    config = load_pins(write_pins(tmp_path / "c", body, bundle=pki.bundle))
    assert config.pinsets[0].max_size == 1000
    with https_server({"/u": Response(200, payload)}) as s:
        with pytest.raises(SizeError, match='max_size of pinset "x"'):
            fetch_update(s.url("/u"), tmp_path / "u", config=config)
        # An explicit max_size (--max-size) overrides the pinset's.
        assert fetch_update(s.url("/u"), tmp_path / "u", config=config, max_size=len(payload)).size == len(payload)


def test_defaults_max_size_applies_to_every_host(pki: PKI, tmp_path: Path, payload: bytes,
                                                 https_server: ServeHTTPS) -> None:
    body = pinset("x", [HOST], f'{{ spki_sha256 = "{pki.pin_of(pki.pinned_root)}" }}')
    path = write_pins(tmp_path / "c", body, bundle=pki.bundle)
    path.write_text(path.read_text().replace("[defaults]\n", '[defaults]\nmax_size = "1 KiB"\n'))
    config = load_pins(path)
    assert config.defaults.max_size == 1024
    with https_server({"/u": Response(200, payload, content_length=None)}) as s:
        with pytest.raises(SizeError, match=r"max_size in \[defaults\]"):
            fetch_update(s.url("/u"), tmp_path / "u", config=config)


@pytest.mark.parametrize("value", ["0", '"-5"', '"lots"', "true", "1.5", '"12 parsecs"'])
def test_bad_max_size_is_a_pins_file_error(value: str) -> None:
    with pytest.raises(PinsFileError) as info:
        parse_pins(f'version = 1\n[[pinset]]\nname = "p"\nhosts = ["a.test"]\nmax_size = {value}\n'
                   'issuers = [{ subject = "CN=x" }]\n')
    assert info.value.key == "max_size"
    assert info.value.pinset == "p"


def test_max_size_accepts_units() -> None:
    config = parse_pins('version = 1\n[defaults]\nmax_size = "512MiB"\n')
    assert config.defaults.max_size == 512 * 1024 * 1024


# --------------------------------------------------------------------------- slow retrieval


def test_one_byte_per_second_is_aborted_by_the_read_gap(root_pinned_config: PinConfig,
                                                        tmp_path: Path, stop: threading.Event,
                                                        https_server: ServeHTTPS) -> None:
    response = Response(200, trickle(b"x" * 100, 1.0, stop), content_length=100)
    with https_server({"/u": response}) as s:
        with pytest.raises(NetworkError, match="timed out") as info:
            fetch_update(s.url("/u"), tmp_path / "u", config=root_pinned_config, read_timeout=0.3,
                         retries=0)
    assert info.value.exit_code == 6
    assert not (tmp_path / "u").exists()


def test_trickle_inside_the_read_gap_is_aborted_by_min_rate(root_pinned_config: PinConfig,
                                                            tmp_path: Path, stop: threading.Event,
                                                            https_server: ServeHTTPS) -> None:
    # One byte every 0.05 s never trips a 2 s read gap; the rate check (100 B/s over 0.5 s) does.
    response = Response(200, trickle(b"x" * 10_000, 0.05, stop), content_length=10_000)
    with https_server({"/u": response}) as s:
        with pytest.raises(NetworkError, match="below the minimum of 100 bytes/s"):
            fetch_update(s.url("/u"), tmp_path / "u", config=root_pinned_config, read_timeout=2,
                         min_rate=100, rate_window=0.5, retries=0)


def test_slow_retrieval_is_retried_then_gives_up(root_pinned_config: PinConfig, tmp_path: Path,
                                                stop: threading.Event, https_server: ServeHTTPS) -> None:
    from pinclient._download.retry import RetryPolicy

    response = Response(200, trickle(b"x" * 10_000, 0.05, stop), content_length=10_000,
                        headers={"ETag": '"t"'})
    with https_server({"/u": response}) as s:
        with pytest.raises(NetworkError, match="below the minimum"):
            fetch_update(s.url("/u"), tmp_path / "u", config=root_pinned_config, read_timeout=2,
                         min_rate=100, rate_window=0.3, retries=RetryPolicy(retries=1, backoff=0.01))
    assert len(s.requests) == 2


def test_deadline_bounds_a_stalled_server(root_pinned_config: PinConfig, tmp_path: Path,
                                          stop: threading.Event, https_server: ServeHTTPS) -> None:
    # The read gap (30 s) would wait; the deadline (0.5 s) shortens it and ends the fetch,
    # retries or not.
    response = Response(200, trickle(b"x" * 100, 5.0, stop), content_length=100)
    with https_server({"/u": response}) as s:
        with pytest.raises(NetworkError, match="within the deadline") as info:
            fetch_update(s.url("/u"), tmp_path / "u", config=root_pinned_config, deadline=0.5)
    assert info.value.transient is False
    assert info.value.exit_code == 6


def test_min_rate_zero_turns_the_check_off(root_pinned_config: PinConfig, tmp_path: Path,
                                           stop: threading.Event, https_server: ServeHTTPS) -> None:
    response = Response(200, trickle(b"abcde", 0.05, stop), content_length=5)
    with https_server({"/u": response}) as s:
        result = fetch_update(s.url("/u"), tmp_path / "u", config=root_pinned_config, min_rate=0,
                              rate_window=0.01)
    assert result.size == 5
