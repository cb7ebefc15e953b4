"""The command line (private; the entry points name :func:`main` and :func:`fetch_main`).

``main`` holds the command table and the error boundary; ``common`` what every command shares
(flags, argument types, pins loading, FetchOptions from flags); one module per command: ``fetch``
(with ``--manifest``), ``lifecycle`` (lint, pin, check), ``sign`` (keygen, sign), ``demo``; and
``progress``, the terminal progress bar. Commands import ``common``, never ``main``.
"""

from __future__ import annotations

from .main import fetch_main, main

__all__ = ["fetch_main", "main"]
