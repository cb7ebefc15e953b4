"""Byte counts as people write them (``4GiB``, ``512 MB``, ``100k``) and as the progress bar shows them;
numbers as the network sends them (:func:`ascii_decimal`).

Shared by pins.toml (``max_size``) and the command line (``--max-size``, ``--min-rate``), so both
accept the same spellings. Single letters are binary, as in curl and dd (``k`` = 1024); ``kB``/``MB``
are decimal and ``KiB``/``MiB`` binary, as in IEC 80000-13.
"""

from __future__ import annotations

import re

__all__ = ["ascii_decimal", "format_size", "parse_size"]

_UNITS = {
    "": 1, "b": 1,
    "k": 1024, "kib": 1024, "kb": 1000,
    "m": 1024**2, "mib": 1024**2, "mb": 1000**2,
    "g": 1024**3, "gib": 1024**3, "gb": 1000**3,
    "t": 1024**4, "tib": 1024**4, "tb": 1000**4,
}
_SIZE = re.compile(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([a-zA-Z]*)\s*")


def parse_size(value: str | int) -> int:
    """A non-negative byte count from an integer or a string such as ``"4GiB"`` or ``"1.5 MB"``.

    Raises:
        ValueError: not a number with a known unit, or negative.
    """
    if isinstance(value, bool):
        raise ValueError("a size is a number of bytes, not a boolean")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"a size cannot be negative ({value})")
        return value
    m = _SIZE.fullmatch(value)
    unit = m.group(2).lower() if m else ""
    if m is None or unit not in _UNITS:
        raise ValueError(f"{value!r} is not a size: write bytes, or a number with k, M, G, KiB, MB, …")
    return int(float(m.group(1)) * _UNITS[unit])


def format_size(n: float) -> str:
    """``1536`` -> ``"1.5 KiB"``; binary units, one decimal below 100."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024:
            return f"{n:.0f} {unit}" if unit == "B" or abs(n) >= 100 else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def ascii_decimal(text: str | None) -> int | None:
    """A number field of a network answer (``Content-Length``, ``Content-Range``, ``Retry-After``
    delta-seconds): ASCII digits ``0``-``9`` only, optional spaces or tabs around them
    (RFC 9110 ``1*DIGIT``); None for anything else, so the caller decides what a malformed field
    means.

    Neither ``str.isdigit()`` nor ``int()`` is that: ``"²".isdigit()`` is True and ``int("²")``
    raises ``ValueError`` (an untyped crash, issue 14), while ``int("٣")``, ``int("1_0")`` and
    ``int("+5")`` succeed on text no HTTP peer may send. More than 4300 digits (Python's int
    conversion limit) is None too.
    """
    if text is None:
        return None
    digits = text.strip(" \t")
    if not digits or len(digits) > 4300 or not all("0" <= c <= "9" for c in digits):
        return None
    return int(digits)
