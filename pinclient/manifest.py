"""Signed update manifests, for applications that do not use TUF.

A manifest is a small JSON object published next to the updates and signed with minisign
(``MANIFEST_URL.minisig``)::

    {"name": "app", "version": "2.1.0", "url": "app-2.1.0.tar.gz",
     "size": 48213, "sha256": "9f86d08…", "expires": "2026-12-31T00:00:00Z"}

A digest is required: ``sha256``, ``sha384`` or ``sha512`` (any of them; every one given is checked).
``urls`` (optional) lists mirrors of the same payload, resolved like ``url`` and tried after it in
order (see :func:`~pinclient.fetch_update`'s ``urls``); the signed digests and size hold for all.

``url`` may be relative to the manifest's own URL (after redirects); it must end up ``https://``
and is fetched through the same pins. ``expires`` is optional: an RFC 3339 time with a time zone.
Other keys are ignored, so publishers may add their own (release notes, …).

The client fetches the manifest through the pinned transport, checks its signature with the
pinset's ``signing_keys`` (or the caller's) before reading a byte of it, refuses one past its
``expires`` (a *freeze* attack: an old manifest replayed so that no update is ever seen) and one
whose version is lower than the installed one (a *rollback* to a genuine but vulnerable release),
both with :class:`~pinclient.errors.RollbackError` (exit 5). Only then is the payload fetched, with
the manifest's size and SHA-256 checked before it reaches DEST.

Versions are plain dotted numbers (``2``, ``2.1``, ``2.10.3``), compared number by number, with
missing numbers as zeros (``2.1 == 2.1.0``). No letters: pre-release tags such as ``2.1rc1`` are
refused, because their order is a matter of convention (PEP 440, SemVer and Debian disagree) and
an update client should not install something because of a guess about it. This keeps pinclient
free of a version-parsing dependency; publish pre-releases as numbers or in a manifest of their own.

:func:`parse_manifest` and :func:`check_manifest` are pure; :func:`fetch_manifest` and
:func:`fetch_from_manifest` do the I/O.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import re
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

from ._download.digest import ALGORITHMS
from ._download.fetch import FetchResult, Progress, fetch_update
from ._download.options import FetchOptions
from ._download.signature import resolve_signing_keys
from ._names import normalize_url
from .config import PinConfig
from .errors import IntegrityError, RollbackError, UsageError
from .minisign import PublicKey, VerifiedSignature
from .transport import pinning_manager

__all__ = [
    "MAX_MANIFEST_SIZE",
    "Manifest",
    "ManifestResult",
    "check_manifest",
    "compare_versions",
    "fetch_from_manifest",
    "fetch_manifest",
    "parse_manifest",
    "parse_version",
]

#: A manifest is a few hundred bytes; never read more than this.
MAX_MANIFEST_SIZE = 64 * 1024
_VERSION = re.compile(r"[0-9]{1,18}(?:\.[0-9]{1,18}){0,15}")
_HEX = re.compile(r"[0-9a-f]+")


@dataclass(frozen=True)
class Manifest:
    """A verified manifest. ``url`` is absolute; ``source`` is the manifest's own URL (after
    redirects); ``signature`` says which key signed it (None only for :func:`parse_manifest`)."""

    name: str
    version: str
    url: str
    size: int
    sha256: str | None  # None when the manifest gives only longer digests
    expires: dt.datetime | None = None
    source: str = ""
    signature: VerifiedSignature | None = None
    digests: dict[str, str] = dataclasses.field(default_factory=dict)  # sha384/sha512 → hex
    urls: tuple[str, ...] = ()  # mirrors of the same payload, tried after ``url`` in order

    @property
    def hashes(self) -> list[str]:
        """The digests other than ``sha256``, as :func:`~pinclient.fetch_update`'s ``hashes=``."""
        return [f"{name}:{digest}" for name, digest in self.digests.items()]

    def to_json(self) -> dict[str, object]:
        return {
            "name": self.name, "version": self.version, "url": self.url, "size": self.size,
            "sha256": self.sha256, **self.digests, "urls": list(self.urls), "expires": _iso(self.expires),
            "source": self.source,
            "signed_by": self.signature.key_id_hex if self.signature else None,
        }


@dataclass(frozen=True)
class ManifestResult:
    """What :func:`fetch_from_manifest` did: ``fetch`` is None when the manifest offers the
    version already installed (nothing was downloaded)."""

    manifest: Manifest
    fetch: FetchResult | None

    @property
    def up_to_date(self) -> bool:
        return self.fetch is None

    def to_json(self) -> dict[str, object]:
        data: dict[str, object] = self.fetch.to_json() if self.fetch else {"ok": True}
        data.update(manifest=self.manifest.to_json(), up_to_date=self.up_to_date)
        return data


# --------------------------------------------------------------------------- versions (pure)


def parse_version(text: str) -> tuple[int, ...]:
    """``"2.10.1"`` → ``(2, 10, 1)``, trailing zeros dropped (so ``2.1 == 2.1.0``).

    Raises:
        ValueError: not dotted numbers (at most 16 of them, of at most 18 digits each).
    """
    if not isinstance(text, str) or not _VERSION.fullmatch(text):
        raise ValueError(f"{text!r} is not a version of dotted numbers such as 2.1.0")
    parts = [int(p) for p in text.split(".")]
    while len(parts) > 1 and parts[-1] == 0:
        parts.pop()
    return tuple(parts)


def compare_versions(a: str, b: str) -> int:
    """-1, 0 or 1 as ``a`` is lower than, equal to or higher than ``b``. Raises ValueError."""
    x, y = parse_version(a), parse_version(b)
    return (x > y) - (x < y)


# --------------------------------------------------------------------------- parsing and checks (pure)


def parse_manifest(data: bytes, *, base_url: str) -> Manifest:
    """Parse a manifest's bytes; a relative ``url`` is resolved against ``base_url``.

    Raises:
        IntegrityError: not a JSON object with valid ``name``, ``version``, ``url`` (https),
            ``size``, at least one of ``sha256``/``sha384``/``sha512``, and optional ``expires``;
            or a key appears twice.
    """
    try:
        doc = json.loads(data.decode("utf-8"), object_pairs_hook=_no_duplicates)
    except (UnicodeDecodeError, ValueError) as e:  # JSONDecodeError is a ValueError
        raise IntegrityError(f"the manifest at {base_url} is not valid JSON: {e}") from None
    if not isinstance(doc, dict):
        raise IntegrityError(f"the manifest at {base_url} is not a JSON object")

    def field(key: str, kind: type, what: str) -> Any:
        value = doc.get(key)
        if not isinstance(value, kind) or isinstance(value, bool):
            raise IntegrityError(f"the manifest at {base_url}: {key!r} must be {what}, "
                                 f"not {json.dumps(value)[:80]}")
        return value

    name = field("name", str, "a non-empty string")
    version = field("version", str, "a version string such as \"2.1.0\"")
    url = field("url", str, "a URL string")
    size = field("size", int, "a number of bytes")
    digests = {}
    for algorithm, length in ALGORITHMS.items():  # sha256, sha384, sha512: any, at least one
        if algorithm in doc:
            digests[algorithm] = field(algorithm, str, f"{length} hex digits").strip().lower()
            if len(digests[algorithm]) != length or not _HEX.fullmatch(digests[algorithm]):
                raise IntegrityError(f"the manifest at {base_url}: {algorithm!r} must be {length} hex "
                                     "digits")
    if not digests:
        raise IntegrityError(f"the manifest at {base_url}: a digest is required: 'sha256', 'sha384' "
                             "or 'sha512'")
    if not name.strip():
        raise IntegrityError(f"the manifest at {base_url}: 'name' must not be empty")
    try:
        parse_version(version)
    except ValueError as e:
        raise IntegrityError(f"the manifest at {base_url}: 'version': {e}") from None
    if size < 0:
        raise IntegrityError(f"the manifest at {base_url}: 'size' must not be negative")
    absolute = _resolve(base_url, url, "url")
    mirrors = doc.get("urls", [])
    if not isinstance(mirrors, list) or not all(isinstance(m, str) for m in mirrors):
        raise IntegrityError(f"the manifest at {base_url}: 'urls' must be a list of URL strings, "
                             f"not {json.dumps(mirrors)[:80]}")
    others = tuple(dict.fromkeys(m for m in (_resolve(base_url, m, "urls") for m in mirrors)
                                 if m != absolute))
    expires = None
    if "expires" in doc:
        expires = _parse_time(field("expires", str, "an RFC 3339 time such as "
                                    "\"2026-12-31T00:00:00Z\""), base_url)
    return Manifest(name=name, version=version, url=absolute, size=size, sha256=digests.pop("sha256", None),
                    expires=expires, source=base_url, digests=digests, urls=others)


def _resolve(base_url: str, url: str, key: str) -> str:
    try:
        return normalize_url(urljoin(base_url, url))
    except (UsageError, ValueError) as e:
        raise IntegrityError(f"the manifest at {base_url}: {key!r} {url!r} does not name an https:// "
                             f"update: {getattr(e, 'message', e)}") from None


def check_manifest(manifest: Manifest, *, now: dt.datetime, installed_version: str | None = None,
                   name: str | None = None) -> None:
    """Refuse a manifest for another product, an expired one, or one older than what is installed.

    Raises:
        IntegrityError: ``name`` is given and differs from the manifest's.
        RollbackError: past ``expires`` (reason "expired"), or a version lower than
            ``installed_version`` (reason "rollback").
        UsageError: ``installed_version`` is not a version of dotted numbers.
    """
    if name is not None and manifest.name != name:
        raise IntegrityError(f"the manifest at {manifest.source} is for {manifest.name!r}, not "
                             f"{name!r}; refusing it.")
    if manifest.expires is not None and now >= manifest.expires:
        raise RollbackError(
            f"the manifest at {manifest.source} (version {manifest.version}) expired on "
            f"{_iso(manifest.expires)}; refusing it. A stale manifest is what an attacker replays "
            "to keep you from seeing updates (a freeze attack); the publisher must sign a new one.",
            reason="expired", version=manifest.version, expires=_iso(manifest.expires))
    if installed_version is not None and compare_versions(manifest.version, installed_version) < 0:
        raise RollbackError(
            f"the manifest at {manifest.source} offers version {manifest.version}, older than the "
            f"installed {installed_version}; refusing the rollback.",
            reason="rollback", version=manifest.version, installed=installed_version,
            expires=_iso(manifest.expires))


# --------------------------------------------------------------------------- fetching


def fetch_manifest(
    url: str,
    *,
    config: PinConfig,
    signing_keys: Sequence[str | PublicKey] | None = None,
    signature: str | os.PathLike[str] | bytes | None = None,
    installed_version: str | None = None,
    name: str | None = None,
    now: dt.datetime | None = None,
    options: FetchOptions | None = None,
    manager: Any = None,
    **overrides: Any,
) -> Manifest:
    """Fetch the manifest at ``url`` through the pins, verify its minisign signature
    (``URL.minisig``, or ``signature``) with ``signing_keys`` or else the signing keys of the
    pinset covering the URL's host, and check it (see :func:`check_manifest`).

    ``options`` (and ``overrides``, its fields as keyword arguments) are as for
    :func:`~pinclient.fetch_update`; the manifest itself is never resumed and is capped at
    :data:`MAX_MANIFEST_SIZE` bytes. ``manager`` is a shared :class:`~pinclient.PinningPoolManager`.

    Raises:
        UsageError: no signing key is configured for the manifest's host and none was given; a bad
            ``installed_version``; as :func:`~pinclient.fetch_update`.
        SignatureError: the signature is missing, malformed, or not by one of the keys.
        IntegrityError: the manifest is malformed or for another ``name``.
        RollbackError: the manifest expired, or is older than ``installed_version``.
        PinViolation / NetworkError / …: as :func:`~pinclient.fetch_update`.
    """
    _check_installed(installed_version)
    keys = resolve_signing_keys(config, normalize_url(url), signing_keys)
    if not keys:
        raise UsageError(f"a manifest must be signed, but no signing key covers {url}: add "
                         "signing_keys to the host's pinset, or pass --signing-key.")
    for key in ("max_size", "size", "sha256", "progress", "resume"):
        if key in overrides:
            raise UsageError(f"fetch_manifest does not take {key}=")
    own = (options or FetchOptions()).with_overrides(overrides)
    own = dataclasses.replace(own, max_size=MAX_MANIFEST_SIZE, resume=False)
    with tempfile.TemporaryDirectory(prefix="pinclient-manifest-") as tmp:
        path = Path(tmp) / "manifest.json"
        result = fetch_update(url, path, config=config, signature=signature, signing_keys=keys,
                              options=own, manager=manager)
        data = path.read_bytes()
    manifest = parse_manifest(data, base_url=result.url)
    manifest = dataclasses.replace(manifest, signature=result.signature)
    check_manifest(manifest, now=now or dt.datetime.now(dt.timezone.utc),
                   installed_version=installed_version, name=name)
    return manifest


def fetch_from_manifest(
    url: str,
    dest: str | os.PathLike[str],
    *,
    config: PinConfig,
    signing_keys: Sequence[str | PublicKey] | None = None,
    signature: str | os.PathLike[str] | bytes | None = None,
    installed_version: str | None = None,
    name: str | None = None,
    now: dt.datetime | None = None,
    progress: Progress | None = None,
    options: FetchOptions | None = None,
    manager: Any = None,
    **overrides: Any,
) -> ManifestResult:
    """:func:`fetch_manifest`, then the update it names into ``dest`` with its size and SHA-256
    checked (as :func:`~pinclient.fetch_update`, with the same ``options`` and ``overrides``;
    ``max_size``, ``resume`` and ``lock_timeout`` apply to the update only). When the manifest's
    version equals ``installed_version`` nothing is downloaded and ``result.fetch`` is None.

    The payload needs no signature of its own: the signed manifest vouches for its hash.

    Raises:
        as :func:`fetch_manifest` and :func:`~pinclient.fetch_update`.
    """
    _check_installed(installed_version)
    opts = (options or FetchOptions()).with_overrides(overrides)
    config = opts.pins(config)  # unpinned=, before the manager is built from it
    own = manager is None
    if own:
        manager = pinning_manager(config, proxy=opts.proxy)
    try:
        manifest = fetch_manifest(url, config=config, signing_keys=signing_keys, signature=signature,
                                  installed_version=installed_version, name=name, now=now,
                                  options=opts, manager=manager)
        if installed_version is not None and compare_versions(manifest.version, installed_version) == 0:
            return ManifestResult(manifest, None)
        fetched = fetch_update(manifest.url, dest, config=config, sha256=manifest.sha256,
                               hashes=manifest.hashes, urls=manifest.urls, size=manifest.size,
                               signature=False, manager=manager, progress=progress, options=opts)
        return ManifestResult(manifest, fetched)
    finally:
        if own:
            manager.clear()


def _check_installed(version: str | None) -> None:
    if version is None:
        return
    try:
        parse_version(version)
    except ValueError as e:
        raise UsageError(f"installed version: {e}") from None


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # Two parsers may keep different copies of a repeated key; a signed document must mean one thing.
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"the key {key!r} appears twice")
        out[key] = value
    return out


def _parse_time(text: str, where: str) -> dt.datetime:
    raw = text.strip()
    # datetime.fromisoformat() takes "Z" only from Python 3.11 on.
    value = raw[:-1] + "+00:00" if raw[-1:] in ("Z", "z") else raw
    try:
        when = dt.datetime.fromisoformat(value)
    except ValueError:
        when = None
    if when is None or when.tzinfo is None or "T" not in value.upper():
        raise IntegrityError(f"the manifest at {where}: 'expires' must be an RFC 3339 time with a "
                             f"time zone, such as \"2026-12-31T00:00:00Z\", not {text!r}")
    return when.astimezone(dt.timezone.utc)


def _iso(when: dt.datetime | None) -> str | None:
    return when.isoformat().replace("+00:00", "Z") if when is not None else None
