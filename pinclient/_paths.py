"""The per-user cache folder, shared by the revocation cache and the report rate limiter."""

from __future__ import annotations

import os
import sys
from pathlib import Path

__all__ = ["user_cache_dir"]


def user_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/pinclient`` (else ``~/.cache/pinclient``), ``~/Library/Caches/pinclient`` on
    macOS, ``%LOCALAPPDATA%\\pinclient\\Cache`` on Windows."""
    if sys.platform == "win32":
        local = os.environ.get("LOCALAPPDATA")
        base = Path(local) if local else Path.home() / "AppData" / "Local"
        return base / "pinclient" / "Cache"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Caches" / "pinclient"
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    # The XDG spec says relative values must be ignored.
    base = Path(xdg) if xdg and Path(xdg).is_absolute() else Path.home() / ".cache"
    return base / "pinclient"
