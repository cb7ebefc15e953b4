"""The command line as a library call: ``main(argv) -> int`` (``pinclient …``) and
``fetch_main(argv) -> int`` (``fetch-update …``). Neither raises for user errors; both return the
exit code. The implementation lives in the private ``pinclient._cli`` package.
"""

from __future__ import annotations

from ._cli.main import fetch_main, main

__all__ = ["fetch_main", "main"]
