"""The per-user cache folder (revocation cache, report rate limiter) and state folder (what
pinclient learns: updated pins, known issuers); and
checks of paths a user gave (``--pins``, ``--ca-bundle``)."""

from __future__ import annotations

import errno
import os
import sys
from pathlib import Path

from .errors import UsageError

__all__ = ["given_file_exists", "user_cache_dir", "user_state_dir"]


def given_file_exists(path: Path, what: str) -> bool:
    """``path.is_file()`` for a path the user gave as ``what`` (a flag): a name too long for the
    file system is a :class:`UsageError` saying so, not ``OSError: File name too long`` (on
    Python < 3.14 ``is_file`` raises it).

    Raises:
        UsageError: the path is too long, or cannot be looked at.
    """
    try:
        return path.is_file()
    except OSError as e:
        if e.errno == errno.ENAMETOOLONG:
            longest = max(len(os.fsencode(part)) for part in path.parts)
            raise UsageError(f"{what} {str(path)[:60]!r}… is too long a path ({len(os.fsencode(str(path)))} "
                             f"bytes, its longest name {longest}; most file systems allow 255).") from None
        raise UsageError(f"{what} {str(path)[:200]!r}: {e.strerror or e}") from None


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


def user_state_dir() -> Path:
    """Where pinclient keeps what it learns for this user (updated pins, known issuers):
    ``$XDG_STATE_HOME/pinclient`` (else ``~/.local/state/pinclient``),
    ``~/Library/Application Support/pinclient`` on macOS, ``%LOCALAPPDATA%\\pinclient\\State`` on
    Windows. Unlike the cache, losing it loses knowledge (a remembered issuer), so it is not a cache."""
    if sys.platform == "win32":
        local = os.environ.get("LOCALAPPDATA")
        base = Path(local) if local else Path.home() / "AppData" / "Local"
        return base / "pinclient" / "State"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Application Support" / "pinclient"
    xdg = os.environ.get("XDG_STATE_HOME", "")
    base = Path(xdg) if xdg and Path(xdg).is_absolute() else Path.home() / ".local" / "state"
    return base / "pinclient"
