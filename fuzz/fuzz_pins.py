"""Fuzz the pins.toml loader: any bytes either load or raise PinsFileError.

    .venv/bin/python fuzz/fuzz_pins.py fuzz/corpus/pins -dict=fuzz/pins.dict -max_total_time=300

A crash (any other exception) is written as ``crash-<sha1>`` in the current folder (or under
``-artifact_prefix=``); replay it by passing the file instead of the corpus folder.
"""

from __future__ import annotations

import contextlib
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))

import _common

_common.instrument_pinclient()
_common.disable_network()

from pinclient.config import parse_pins
from pinclient.errors import PinsFileError

FOLDER = _common.scratch()


def test_one_input(data: bytes) -> None:
    with contextlib.suppress(PinsFileError):
        parse_pins(data, base_dir=FOLDER)


if __name__ == "__main__":
    _common.main(test_one_input)
