"""Fuzz the pins.toml value parsers: serial numbers, distinguished names and host patterns.

    .venv/bin/python fuzz/fuzz_values.py fuzz/corpus/values -dict=fuzz/pins.dict -max_total_time=300

The first byte picks the parser, the rest is the text. Each parser returns a value or raises
``ValueError`` with a non-empty reason, never another exception, and what it accepts is stable:
a serial's colon-hex form reads back as the same serial, a DN's RFC 4514 form (when the order can be
told) as the same name, and a normalised host pattern normalises to itself.
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(__file__))

import _common

_common.instrument_pinclient()
_common.disable_network()

from pinclient._names import normalize_pattern
from pinclient._x509 import canonical_name, format_serial, parse_dn, parse_serial


def check_serial(text: str) -> None:
    try:
        value = parse_serial(text)
    except ValueError as e:
        if not str(e).strip():
            raise AssertionError("a ValueError with an empty reason") from e
        return
    assert value >= 0
    assert parse_serial(format_serial(value) if value > 0xFF else f"0x{value:x}") == value


def check_dn(text: str) -> None:
    try:
        name = parse_dn(text)
    except ValueError as e:
        if not str(e).strip():
            raise AssertionError("a ValueError with an empty reason") from e
        return
    assert name.rdns
    try:
        again = parse_dn(name.rfc4514_string())
    except ValueError:
        return  # an order the attributes cannot tell: refused, never misread
    assert canonical_name(again) == canonical_name(name)


def check_host(text: str) -> None:
    try:
        pattern = normalize_pattern(text)
    except ValueError as e:
        if not str(e).strip():
            raise AssertionError("a ValueError with an empty reason") from e
        return
    assert normalize_pattern(pattern) == pattern


CHECKS = (check_serial, check_dn, check_host)


def test_one_input(data: bytes) -> None:
    if not data:
        return
    CHECKS[data[0] % len(CHECKS)](data[1:].decode("utf-8", "replace"))


if __name__ == "__main__":
    _common.main(test_one_input)
