"""FetchOptions: one frozen, validated value for how a fetch behaves (issue 12), built by the CLI in
one place and applied under fetch_update's 0.1.0 keyword arguments."""

from __future__ import annotations

import dataclasses

import pytest

import pinclient
from pinclient import FetchOptions, RetryPolicy, UsageError
from pinclient._cli.common import fetch_options
from pinclient._cli.fetch import configure_fetch


def _parse(*argv: str) -> FetchOptions:
    import argparse

    parser = argparse.ArgumentParser()
    configure_fetch(parser)
    return fetch_options(parser.parse_args(["https://example.invalid/x", *argv]))


def test_the_cli_defaults_are_the_library_defaults() -> None:
    # One set of defaults: a flag left alone means exactly FetchOptions().
    assert _parse() == FetchOptions()


def test_every_download_flag_reaches_its_field() -> None:
    options = _parse("--max-size", "2MiB", "--proxy", "http://127.0.0.1:1", "--no-resume",
                     "--retries", "7", "--connect-timeout", "3", "--read-timeout", "4",
                     "--deadline", "50", "--min-rate", "10", "--max-redirects", "2",
                     "--header", "X-A: b", "--lock-timeout", "0", "--allow-legacy-signatures")
    assert options == FetchOptions(max_size=2 * 1024**2, proxy="http://127.0.0.1:1", resume=False,
                                   retries=7, connect_timeout=3, read_timeout=4, deadline=50,
                                   min_rate=10, max_redirects=2, headers={"X-A": "b"}, lock_timeout=0,
                                   allow_legacy_signatures=True)
    assert _parse("--no-proxy").proxy is False


def test_every_field_has_a_flag_named_after_it() -> None:
    # Adding an option is: the field, its argparse line (dest = the field's name), its use. This
    # catches a field without a flag (rate_window is the one deliberate exception: a library-only
    # tuning knob) and a flag whose dest is not a field (its value would be dropped).
    import argparse

    parser = argparse.ArgumentParser()
    configure_fetch(parser)
    group = next(g for g in parser._action_groups if g.title == "download options")
    dests = {a.dest for a in group._group_actions}
    fields = {f.name for f in dataclasses.fields(FetchOptions)}
    assert fields - dests == {"rate_window"}
    assert dests <= fields


def test_repeated_headers_collect_and_a_later_one_wins() -> None:
    options = _parse("--header", "X-A: 1", "--header", "X-B: 2", "--header", "X-A: 3")
    assert options.headers == {"X-A": "3", "X-B": "2"}


def test_headers_none_means_no_extra_headers_as_in_0_1_0() -> None:
    assert FetchOptions(headers=None).headers == {}  # type: ignore[arg-type]
    assert FetchOptions().with_overrides({"headers": None}).headers == {}


def test_retries_given_as_a_count_become_a_policy() -> None:
    assert FetchOptions(retries=5).retries == RetryPolicy(retries=5)
    policy = RetryPolicy(retries=1, backoff=0)
    assert FetchOptions(retries=policy).retry_policy is policy


@pytest.mark.parametrize(("field", "value", "words"), [
    ("connect_timeout", 0, "connect_timeout"),
    ("read_timeout", -1, "read_timeout"),
    ("read_timeout", float("nan"), "read_timeout"),
    ("deadline", 0, "deadline"),
    ("rate_window", 0, "rate_window"),
    ("min_rate", -1, "min_rate"),
    ("lock_timeout", -0.5, "lock_timeout"),
    ("max_redirects", -1, "max_redirects"),
    ("max_redirects", 1.5, "max_redirects"),
    ("max_size", 0, "max_size"),
    ("retries", -1, "retries"),
    ("retries", "3", "retries"),
    ("resume", "yes", "resume"),
    ("proxy", True, "proxy"),
    ("headers", {"Range": "bytes=0-"}, "Range"),
    ("headers", {"X-Evil": "a\r\nHost: b"}, "line break"),
    ("headers", {"Bad Name": "x"}, "header name"),
])
def test_a_bad_value_is_refused_naming_the_field(field: str, value: object, words: str) -> None:
    with pytest.raises(UsageError, match=words):
        FetchOptions(**{field: value})  # type: ignore[arg-type]


def test_options_are_frozen_headers_included() -> None:
    options = FetchOptions(headers={"X-A": "b"})
    with pytest.raises(dataclasses.FrozenInstanceError):
        options.deadline = 5  # type: ignore[misc]
    with pytest.raises(TypeError):
        options.headers["X-B"] = "c"  # type: ignore[index]
    source = {"X-A": "b"}
    copied = FetchOptions(headers=source)
    source["X-A"] = "changed"
    assert copied.headers == {"X-A": "b"}


def test_overrides_apply_on_top_and_timeout_sets_both_timeouts() -> None:
    base = FetchOptions(deadline=100, retries=1)
    assert base.with_overrides({}) is base
    assert base.with_overrides({"timeout": 5}) == dataclasses.replace(base, connect_timeout=5, read_timeout=5)
    # An explicit timeout beats the shorthand, as in 0.1.0.
    assert base.with_overrides({"timeout": 5, "read_timeout": 9}).read_timeout == 9
    # None meant "the default" for the 0.1.0 keyword arguments.
    assert base.with_overrides({"connect_timeout": None}).connect_timeout == base.connect_timeout
    with pytest.raises(TypeError, match="unexpected keyword argument 'dedline'"):
        base.with_overrides({"dedline": 5})
    with pytest.raises(UsageError, match="timeout"):
        base.with_overrides({"timeout": 0})


def test_fetch_update_refuses_an_unknown_keyword_before_connecting(tmp_path) -> None:  # type: ignore[no-untyped-def]
    config = pinclient.parse_pins('version = 1\n[defaults]\nunpinned = "allow"\n')
    with pytest.raises(TypeError, match="unexpected keyword argument 'retry'"):
        pinclient.fetch_update("https://127.0.0.1:9/x", tmp_path / "x", config=config, retry=3)
    with pytest.raises(UsageError, match="max_redirects"):
        pinclient.fetch_update("https://127.0.0.1:9/x", tmp_path / "x", config=config, max_redirects=-1)
    assert not list(tmp_path.iterdir())

