"""Expected digests beyond ``sha256=``: pip's ``--hash ALGORITHM:HEX`` spelling (``sha256``,
``sha384``, ``sha512``), parsed once, and :class:`DigestCheck`, the download sink that checks them.

The SHA-256 keeps its own path (:func:`~pinclient.fetch_update`'s ``sha256=``, the resume sidecar,
``FetchResult.sha256``); this module adds the longer SHA-2 digests that publishers such as
Mozilla's update.xml (``hashFunction = SHA512``) give. Every digest given must match: one payload
has one digest per algorithm, so two different values for one algorithm are refused up front (pip
reads several ``--hash`` options as alternatives for different files; here there is one file).
MD5 and SHA-1 are refused: a collision would let a second file pass.

Parsing is pure; the sink hashes the bytes it is fed, and the part file again when a resumed
download kept bytes it never saw.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from ..errors import HashMismatch, StorageError, UsageError

__all__ = ["ALGORITHMS", "DigestCheck", "parse_hashes"]

#: Accepted algorithms and the length of their hex digest.
ALGORITHMS = {"sha256": 64, "sha384": 96, "sha512": 128}
_HEX = frozenset("0123456789abcdef")
_READ = 1024 * 1024


def parse_hashes(values: Iterable[str] | None, *, sha256: str | None = None) -> dict[str, str]:
    """``["sha384:HEX", …]`` (and the ``sha256=`` value, if any) → ``{"sha384": "hex", …}``.

    The hex digits may be upper case; the algorithm name is case-insensitive.

    Raises:
        UsageError: not ``ALGORITHM:HEX``, an algorithm other than sha256/sha384/sha512, a digest
            of the wrong length for its algorithm, or two different digests for one algorithm.
    """
    if isinstance(values, str):  # "sha384:…" given where a list is expected: one value, not letters
        values = [values]
    pairs: list[tuple[str, str]] = []
    for value in values or ():
        if not isinstance(value, str) or ":" not in value:
            raise UsageError(f"--hash must be ALGORITHM:HEX (sha256, sha384 or sha512), got {value!r}.")
        name, _, digest = value.strip().partition(":")
        pairs.append((name.strip().lower(), digest.strip().lower()))
    if sha256 is not None:
        pairs.append(("sha256", sha256.strip().lower().removeprefix("sha256:")))
    out: dict[str, str] = {}
    for name, digest in pairs:
        if name not in ALGORITHMS:
            raise UsageError(f"--hash algorithm {name!r} is not accepted; use "
                             f"{', '.join(f'{a}:HEX' for a in ALGORITHMS)}.")
        if len(digest) != ALGORITHMS[name] or not set(digest) <= _HEX:
            raise UsageError(f"--hash {name}: must be {ALGORITHMS[name]} hex digits, got {digest!r}.")
        if out.setdefault(name, digest) != digest:
            raise UsageError(f"two different {name} digests were given ({out[name]} and {digest}); "
                             "one payload has one.")
    return out


class DigestCheck:
    """A download sink (see :class:`~pinclient._download.job.Job` ``sinks``) that checks
    ``expected`` (algorithm → hex) over the whole payload before it replaces DEST."""

    def __init__(self, expected: Mapping[str, str]) -> None:
        self.expected = dict(expected)
        self.restart(0)

    def restart(self, offset: int) -> None:
        """The part now holds ``offset`` kept bytes; :meth:`update` sees only what follows."""
        self._hashers: dict[str, Any] = {name: hashlib.new(name) for name in self.expected}
        self._whole = offset == 0

    def update(self, chunk: bytes | memoryview) -> None:
        for hasher in self._hashers.values():
            hasher.update(chunk)

    def finish(self, path: Path) -> None:
        """Compare (constant time) every digest of the complete part at ``path``; a resumed part is
        hashed again from the file, so the digests cover every byte.

        Raises:
            HashMismatch: a digest differs ("expected X, got Y").
            StorageError: the part file cannot be read.
        """
        if not self._whole:
            self._hashers = {name: hashlib.new(name) for name in self.expected}
            try:
                with open(path, "rb") as f:
                    while chunk := f.read(_READ):
                        self.update(chunk)
            except OSError as e:
                raise StorageError(f"cannot read {str(path)!r}: {e.strerror or e}", path=str(path)) from e
            self._whole = True
        for name, want in self.expected.items():
            got = self._hashers[name].hexdigest()
            if not hmac.compare_digest(got, want):
                raise HashMismatch(f"{name.upper().replace('SHA', 'SHA-')} mismatch: expected {want}, "
                                   f"got {got}. The file was not saved.", expected=want, actual=got)

    @property
    def verified(self) -> dict[str, str]:
        """The digests that :meth:`finish` checked."""
        return dict(self.expected)
