"""Detached minisign signatures for :func:`pinclient.fetch_update`: which keys must have signed the
payload, where its signature is, and a download sink that checks the payload against it.

The decision is made before the payload is requested: the keys come from the caller
(``signing_keys=``) or else from the pinset covering the URL's host, looked up from the URL itself
(which pinset a connection matched is only known after connecting, and a redirect must not change
whose signature is required). With keys, a signature is mandatory: ``URL.minisig``, fetched through
the same pinned transport, or the one given with ``signature=``. It is parsed, and its key id
checked against the keys, before the first payload byte is read; a missing, malformed or untrusted
signature raises :class:`SignatureError` (exit 5) and nothing is downloaded.

The sink sees every body chunk once (:meth:`SignatureCheck.update`, on the download's hashing
thread) and is finished once, on the complete part file, before it is moved over DEST
(:meth:`SignatureCheck.finish`). A prehashed (``ED``) signature is verified from the BLAKE2b-512 the
stream fed; a legacy (``Ed``) one from the finished file, which is memory-mapped, not read again.

Legacy signatures are refused unless allowed (:func:`legacy_allowed`): by the call
(``allow_legacy_signatures=True``, ``--allow-legacy-signatures``), or by the pinset covering the
URL (``allow_legacy_signatures = true``) for a signature by one of that pinset's own keys. Their
algorithm bytes are unsigned, so a prehashed signature can be downgraded to a legacy one over the
file's 64-byte hash (see :mod:`pinclient.minisign`).
"""

from __future__ import annotations

import hmac
import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from .._names import normalize_url
from ..config import PinConfig
from ..errors import HTTPStatusError, SignatureError, SizeError, StorageError, UsageError
from ..minisign import (
    LEGACY_REFUSED,
    MAX_SIGNATURE_FILE_SIZE,
    PublicKey,
    Signature,
    VerifiedSignature,
    Verifier,
    verify_file,
)

__all__ = ["SignatureCheck", "SignatureSource", "legacy_allowed", "prepare_signature_check",
           "resolve_signing_keys"]

#: What ``fetch_update(signature=…)`` takes: an https:// URL or a file path of a ``.minisig``, its
#: contents as bytes, or False to skip signature checking (the payload is authenticated otherwise,
#: as by the hash in a signed manifest).
SignatureSource = str | os.PathLike[str] | bytes | Literal[False]
#: ``fetch(url, limit) -> body``: a GET through the pinned transport, at most ``limit`` bytes.
Fetch = Callable[[str, int], bytes]

_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


def resolve_signing_keys(config: PinConfig, url: str,
                         signing_keys: Sequence[str | PublicKey] | None) -> tuple[PublicKey, ...]:
    """The keys a payload from ``url`` (normalised) must be signed with: ``signing_keys`` when
    given, else the ``signing_keys`` of the pinset covering the URL's host (possibly none).

    Raises:
        UsageError: ``signing_keys`` is empty or holds something that is not a minisign public key.
    """
    if signing_keys is None:
        pinset = config.pinset_for(urlsplit(url).hostname or "")
        return pinset.signing_keys if pinset is not None else ()
    if isinstance(signing_keys, (str, bytes)) or not signing_keys:
        raise UsageError("signing_keys must be a non-empty list of minisign public keys (\"RW…\"); "
                         "pass None to use the pinset's.")
    keys: list[PublicKey] = []
    for item in signing_keys:
        if isinstance(item, PublicKey):
            keys.append(item)
            continue
        try:
            keys.append(PublicKey.from_string(item))
        except SignatureError as e:
            raise UsageError(f"signing key {str(item)[:60]!r} is not a minisign public key: "
                             f"{e.message}") from None
    return tuple(keys)


def legacy_allowed(config: PinConfig, url: str, keys: Sequence[PublicKey], signature: Signature, *,
                   allow_legacy_signatures: bool) -> bool:
    """Whether a legacy (``Ed``) ``signature`` may be accepted for ``url`` (normalised): when the
    call allows it, or when the pinset covering the URL sets ``allow_legacy_signatures = true`` and
    every key in ``keys`` with the signature's key id is one of that pinset's ``signing_keys`` (a
    pinset's opt-in covers its own keys, not keys given with ``--signing-key``)."""
    if allow_legacy_signatures:
        return True
    pinset = config.pinset_for(urlsplit(url).hostname or "")
    if pinset is None or not pinset.allow_legacy_signatures:
        return False
    own = {k.key_id + k.key for k in pinset.signing_keys}
    signers = [k for k in keys if hmac.compare_digest(k.key_id, signature.key_id)]
    return bool(signers) and all(k.key_id + k.key in own for k in signers)


class SignatureCheck:
    """The payload's signature, parsed and matched to a trusted key, as a download sink.

    Raises (constructor): :class:`SignatureError` if no key in ``keys`` has the signature's key id,
    or the signature is legacy and ``allow_legacy`` is false.
    """

    def __init__(self, keys: Sequence[PublicKey], signature: Signature, *, url: str, source: str,
                 allow_legacy: bool = False) -> None:
        self.keys = tuple(keys)
        self.signature = signature
        self.url = url
        self.source = source  # where the signature came from, for messages
        self.allow_legacy = allow_legacy
        try:
            self._verifier = Verifier(self.keys, signature, allow_legacy=allow_legacy)
        except SignatureError as e:
            hint = ("; ask the publisher for a prehashed signature (minisign without -l, pinclient "
                    "sign without --legacy), or accept the risk with allow_legacy_signatures = true "
                    "in the pinset or --allow-legacy-signatures (docs/signing.md)"
                    if e.message == LEGACY_REFUSED else "")
            raise SignatureError(f"Refusing {url}: {e.message}{hint}; signature from {source}. "
                                 "Nothing was downloaded.") from e
        self._whole = True  # update() has seen the body from byte 0

    def restart(self, offset: int) -> None:
        """The part file now holds ``offset`` bytes kept from earlier (resumed, or 0 after starting
        over); :meth:`update` will only see what follows them."""
        self._verifier = Verifier(self.keys, self.signature, allow_legacy=self.allow_legacy)
        self._whole = offset == 0

    def update(self, chunk: bytes | memoryview) -> None:
        """Feed the next body bytes (called on the download's hashing thread)."""
        self._verifier.update(chunk)

    def finish(self, path: Path) -> VerifiedSignature:
        """Verify the complete, flushed part file at ``path`` before it replaces DEST.

        A resumed body was not streamed from byte 0, so it is then hashed again from the file.

        Raises:
            SignatureError: the signature does not verify (payload or trusted comment altered).
            StorageError: the part file cannot be read.
        """
        try:
            if self._verifier.needs_file:
                return self._verifier.verify(file_path=path)
            if not self._whole:
                return verify_file(self.keys, self.signature, path, allow_legacy=self.allow_legacy)
            return self._verifier.verify()
        except SignatureError as e:
            raise SignatureError(f"Signature check failed for {self.url} (signature: {self.source}): "
                                 f"{e.message}. The file was not saved.") from e
        except OSError as e:
            raise StorageError(f"cannot read {str(path)!r} to verify its signature: {e.strerror or e}",
                               path=str(path)) from e


def prepare_signature_check(config: PinConfig, url: str, *, signature: SignatureSource | None,
                            signing_keys: Sequence[str | PublicKey] | None,
                            fetch: Fetch, allow_legacy_signatures: bool = False) -> SignatureCheck | None:
    """Decide whether the payload at ``url`` (normalised) needs a signature and, if so, get and
    parse it; None when no signature is required.

    Raises:
        SignatureError: the signature is missing (an HTTP 4xx), too large, malformed, by a key
            that is not trusted, or legacy and not allowed (:func:`legacy_allowed`).
        UsageError: a signature was given but there are no keys to check it with; a bad key, path
            or URL.
        PinViolation / NetworkError: as ``fetch`` (the signature's host is pinned like any other).
    """
    if signature is False:
        return None
    keys = resolve_signing_keys(config, url, signing_keys)
    if not keys:
        if signature is not None:
            raise UsageError(f"a signature was given for {url}, but there is no key to check it with: "
                             "add signing_keys to the host's pinset, or pass --signing-key.")
        return None
    data, source = _signature_bytes(url, signature, fetch)
    try:
        parsed = Signature.parse(data)
    except SignatureError as e:
        raise SignatureError(f"Refusing {url}: the signature ({source}) is malformed: {e.message}. "
                             "Nothing was downloaded.") from e
    allow = legacy_allowed(config, url, keys, parsed, allow_legacy_signatures=allow_legacy_signatures)
    return SignatureCheck(keys, parsed, url=url, source=source, allow_legacy=allow)


def _signature_bytes(url: str, signature: str | os.PathLike[str] | bytes | None,
                     fetch: Fetch) -> tuple[bytes, str]:
    """The ``.minisig`` contents and a description of where they came from."""
    if isinstance(signature, bytes):
        return signature, "given as bytes"
    if signature is None or (isinstance(signature, str) and _SCHEME.match(signature)):
        sig_url = normalize_url(signature) if signature is not None else _minisig_url(url)
        try:
            data = fetch(sig_url, MAX_SIGNATURE_FILE_SIZE)
        except HTTPStatusError as e:
            if e.transient:  # 429, 5xx: the server may have it later; a network failure (exit 6)
                raise
            raise SignatureError(f"Refusing {url}: its signature {sig_url} could not be fetched "
                                 f"(HTTP {e.status}), and a payload from this host must be signed by "
                                 "one of its signing_keys. Nothing was downloaded.") from e
        except SizeError as e:
            raise SignatureError(f"Refusing {url}: {sig_url} is larger than any minisign signature "
                                 f"({MAX_SIGNATURE_FILE_SIZE} bytes). Nothing was downloaded.") from e
        return data, sig_url
    return _read_signature_file(Path(signature)), str(signature)


def _minisig_url(url: str) -> str:
    """``URL.minisig``: the suffix goes on the path, before any query string."""
    parts = urlsplit(url)
    return parts._replace(path=parts.path + ".minisig").geturl()


def _read_signature_file(path: Path) -> bytes:
    """Raises UsageError if the file cannot be read; reads at most one byte past the limit."""
    try:
        if not path.is_file():  # not a FIFO or a device that would block or never end
            raise UsageError(f"signature file {str(path)!r} is not a readable file.")
        with path.open("rb") as f:
            return f.read(MAX_SIGNATURE_FILE_SIZE + 1)
    except (OSError, ValueError) as e:  # ValueError: a NUL in the path
        raise UsageError(f"cannot read signature file {str(path)!r}: "
                         f"{getattr(e, 'strerror', None) or e}") from None

