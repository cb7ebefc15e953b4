"""Resuming an interrupted download: what the sidecar records, what the next request asks for, and
whether the answer may be appended. Pure: bytes and headers in, decisions out.

An interrupted download leaves ``.DEST.pinclient-part`` (the bytes) and its sidecar
``.DEST.pinclient-part.json``, which holds a :class:`PartInfo` (the URL, the validator, the bytes
known to be on disk; see :mod:`.partfile` for the sidecar's envelope). The next run asks for the
rest with ``Range`` and ``If-Range``, so a server whose file changed answers 200 with the whole new
file instead of a 206 that would splice two versions. The kept prefix is hashed again from disk, so
the final SHA-256 always covers the whole file.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Literal

from .._sizes import ascii_decimal

__all__ = [
    "PartInfo",
    "ResumeAction",
    "parse_content_range",
    "range_headers",
    "resume_offset",
    "resume_verdict",
    "validator_of",
]

ResumeAction = Literal["append", "replace", "reset"]
_SIDECAR_VERSION = 1


@dataclass(frozen=True)
class PartInfo:
    """What the sidecar records about a download: enough to decide whether the part can be
    continued."""

    url: str  # the URL asked for, before redirects
    validator: str  # a strong ETag, else Last-Modified: sent back as If-Range
    total: int | None  # the whole body's length, when the server said
    received: int  # bytes of the part file known to be on disk (fsynced)
    sha256: str | None = None  # the hash expected then: another one means another file
    size: int | None = None  # the exact size expected then

    def to_json(self) -> bytes:
        return json.dumps({"version": _SIDECAR_VERSION, **self.to_dict()}, indent=1).encode()

    def to_dict(self) -> dict[str, object]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: bytes) -> PartInfo | None:
        """Parse :meth:`to_json`'s bytes; anything unexpected gives None (the download starts over)."""
        try:
            doc = json.loads(data)
        except ValueError:
            return None
        if not isinstance(doc, dict) or doc.pop("version", None) != _SIDECAR_VERSION:
            return None
        return cls.from_dict(doc)

    @classmethod
    def from_dict(cls, doc: object) -> PartInfo | None:
        """Parse :meth:`to_dict`'s fields; anything unexpected gives None."""
        if not isinstance(doc, dict):
            return None
        try:
            info = cls(**doc)
        except TypeError:
            return None
        ok = (isinstance(info.url, str) and isinstance(info.validator, str) and info.validator
              and _count(info.received) and (info.total is None or _count(info.total))
              and (info.size is None or _count(info.size))
              and (info.sha256 is None or isinstance(info.sha256, str)))
        return info if ok else None


def _count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def validator_of(headers: Mapping[str, str]) -> str | None:
    """A validator usable in If-Range: a strong ETag, else Last-Modified, else None.

    RFC 9110 §13.1.5 forbids weak ETags in If-Range; without any validator a resumed body could be
    the tail of another file, so such downloads are never resumed.
    """
    etag = (headers.get("ETag") or "").strip()
    if etag.startswith('"') and etag.endswith('"') and len(etag) >= 2:
        return etag
    modified = (headers.get("Last-Modified") or "").strip()
    return modified or None


def resume_offset(info: PartInfo | None, part_size: int, *, url: str, sha256: str | None,
                  size: int | None, limit: int) -> int:
    """How many bytes of the part file to keep: 0 unless the sidecar describes this very download.

    Only bytes the sidecar vouches for are kept (a crash may have left unsynced bytes after them). A
    part longer than the declared size or the limit starts over. When the whole file seems present,
    the last byte is fetched again, so the server still confirms the validator.
    """
    if info is None or info.url != url or info.sha256 != sha256 or info.size != size:
        return 0
    kept = min(part_size, info.received)
    total = info.total if info.total is not None else size
    if kept > limit or (total is not None and (kept > total or (size is not None and total != size))):
        return 0
    if total is not None:
        kept = min(kept, total - 1)
    return max(kept, 0)


def _same_validator(headers: Mapping[str, str], validator: str) -> bool:
    name = "ETag" if validator.startswith('"') else "Last-Modified"
    return (headers.get(name) or "").strip() == validator


def range_headers(offset: int, validator: str) -> dict[str, str]:
    return {"Range": f"bytes={offset}-", "If-Range": validator}


# ASCII digits only: ``\d`` would also take Arabic-Indic digits, which int() reads (issue 14).
_CONTENT_RANGE = re.compile(r"[ \t]*bytes[ \t]+([0-9]+)-([0-9]+)/([0-9]+|\*)[ \t]*", re.IGNORECASE)


def parse_content_range(value: str | None) -> tuple[int, int, int | None] | None:
    """``bytes 100-199/1000`` -> ``(100, 199, 1000)``; ``*`` total -> None; unparsable -> None."""
    m = _CONTENT_RANGE.fullmatch(value or "")
    if m is None:
        return None
    first, last = ascii_decimal(m.group(1)), ascii_decimal(m.group(2))
    total = None if m.group(3) == "*" else ascii_decimal(m.group(3))
    if first is None or last is None or (total is None and m.group(3) != "*"):
        return None  # more digits than any file has bytes
    if last < first or (total is not None and last >= total):
        return None
    return first, last, total


def resume_verdict(status: int, headers: Mapping[str, str], *, offset: int, validator: str,
                   same_source: bool = True) -> tuple[ResumeAction, int | None] | None:
    """What to do with the answer to a Range request for ``bytes=offset-``.

    * ``("append", total)``: a 206 for exactly the rest of the same file; write after the kept bytes.
    * ``("replace", None)``: a 200 (Range ignored, or If-Range said the file changed): start over
      with this very body.
    * ``("reset", None)``: a 416, or a 206 that is not the rest of our file (other start, open
      total, different ETag): drop the part and ask again without Range.
    * ``None``: any other status; handled as if no Range had been sent.

    ``same_source=False`` (the kept bytes came from another mirror): a 206 must also carry the very
    validator (the same strong ETag, or the same Last-Modified), else ``reset``. One server's If-Range
    check vouches for its own earlier answers; another's only when it shows it serves the same file.
    """
    if status == 200:
        return "replace", None
    if status == 416:
        return "reset", None
    if status != 206:
        return None
    parsed = parse_content_range(headers.get("Content-Range"))
    if parsed is None:
        return "reset", None
    first, last, total = parsed
    etag = (headers.get("ETag") or "").strip()
    changed = validator.startswith('"') and bool(etag) and etag != validator
    if first != offset or total is None or last != total - 1 or changed:
        return "reset", None
    if not same_source and not _same_validator(headers, validator):
        return "reset", None
    return "append", total
