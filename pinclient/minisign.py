"""minisign-compatible keys and signatures (https://jedisct1.github.io/minisign/).

Byte layouts (each base64-encoded, standard alphabet with padding, on one line)::

    public key   42 bytes  "Ed" | key id (8) | Ed25519 public key (32)
    signature    74 bytes  "Ed" or "ED" | key id (8) | Ed25519 signature (64)
    secret key  158 bytes  "Ed" | kdf "Sc" or 00 00 | "B2" | scrypt salt (32)
                           | opslimit (u64 le) | memlimit (u64 le)
                           | key id (8) | seed (32) | public key (32) | BLAKE2b-256 checksum (32)
                           (the last 104 bytes XORed with the scrypt stream when kdf is "Sc")

A ``.minisig`` file has four lines: ``untrusted comment: …``, the signature, ``trusted comment: …``
and the global signature, which is Ed25519 over the 64 signature bytes followed by the trusted
comment, so the comment cannot be changed without the key. ``Ed`` (legacy) signs the payload
itself; ``ED`` signs its BLAKE2b-512 digest, which lets a verifier hash the payload as it arrives.

Legacy signatures are refused unless the caller allows them (``allow_legacy=True``): the two
algorithm bytes are covered by neither signature, so anyone holding a prehashed ``ED`` signature
can flip them to ``Ed`` and get a valid legacy signature over the 64-byte BLAKE2b-512 digest of the
signed file, which a verifier accepting legacy signatures would then take as a signed 64-byte
payload (issue 14). minisign itself accepts both unless ``-V -H`` is given; here the safe choice is
the default, and even when legacy signatures are allowed one over exactly 64 bytes is refused,
since it cannot be told apart from such a converted signature.

Every malformed or failing key, signature or password raises :class:`SignatureError`. Misusing the
API (a bad argument of the caller's own, calls in the wrong order) raises :class:`ValueError`.
Only the ``*_file`` helpers, :func:`verify_file` and :func:`sign` given a path touch the disk.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import enum
import hashlib
import hmac
import mmap
import os
import secrets
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from ._paths import replace_file
from .errors import SignatureError

__all__ = [
    "KEEP_PASSWORD",
    "LEGACY_REFUSED",
    "MAX_SIGNATURE_FILE_SIZE",
    "MAX_TRUSTED_COMMENT",
    "MAX_UNTRUSTED_COMMENT",
    "SCRYPT_INTERACTIVE",
    "SCRYPT_SENSITIVE",
    "PublicKey",
    "ScryptLimits",
    "SecretKey",
    "Signature",
    "VerifiedSignature",
    "Verifier",
    "generate_keypair",
    "scrypt_parameters",
    "sign",
    "verify_data",
    "verify_file",
]

StrPath = str | os.PathLike[str]
Password = str | Callable[[], str] | None

_ALG_LEGACY = b"Ed"
_ALG_PREHASHED = b"ED"
_PREHASH_SIZE = 64  # BLAKE2b-512: what an ED signature signs
#: Why a legacy signature is refused by default (callers add how to allow it).
LEGACY_REFUSED = (
    "the signature is in minisign's legacy format (Ed: the file itself is signed), which is refused "
    "unless explicitly allowed: its algorithm bytes are not signed, so a prehashed (ED) signature "
    "turned into a legacy one verifies over the 64-byte hash of the file really signed")
_KDF_SCRYPT = b"Sc"
_KDF_NONE = b"\0\0"
_CHK_BLAKE2B = b"B2"
_UNTRUSTED_PREFIX = b"untrusted comment: "
_TRUSTED_PREFIX = b"trusted comment: "
_DEFAULT_UNTRUSTED = "signature from minisign secret key"  # what minisign writes
_KEY_ID_SIZE = 8
_SECRET_BODY_SIZE = 8 + 64 + 32  # key id, seed + public key, checksum: what scrypt encrypts
_SECRET_KEY_SIZE = 2 + 2 + 2 + 32 + 8 + 8 + _SECRET_BODY_SIZE
_CHUNK = 1 << 16

# minisign reads each line with fgets() into a fixed buffer (COMMENTMAXBYTES = 1024,
# TRUSTEDCOMMENTMAXBYTES = 8192, newline included) and refuses to sign longer comments; staying
# within the same bounds keeps every file we write or accept readable by minisign.
MAX_UNTRUSTED_COMMENT = 1024 - len(_UNTRUSTED_PREFIX) - 2
MAX_TRUSTED_COMMENT = 8192 - len(_TRUSTED_PREFIX) - 2
#: No valid .minisig is larger; a fetcher can cap its download of one at this many bytes.
MAX_SIGNATURE_FILE_SIZE = 16384
# minisign's PASSWORDMAXBYTES is 1024 including the newline and the NUL it reads.
_MAX_PASSWORD = 1022
# CPython refuses an scrypt maxmem above INT_MAX; N = 2**20, r = 8 (minisign's default) fits.
_SCRYPT_MAXMEM = 2**31 - 1
# Bound the CPU a corrupted opslimit can demand: 16 times minisign's default (N * p = 2**20).
_SCRYPT_MAX_WORK = 2**24


def _key_id_hex(key_id: bytes) -> str:
    # minisign prints key ids as "%016" PRIX64 of the little-endian u64, i.e. bytes reversed.
    return key_id[::-1].hex().upper()


def _b64decode(text: bytes | str, size: int, what: str) -> bytes:
    """Decode one base64 line that must hold exactly *size* bytes. Raises SignatureError."""
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as e:
        raise SignatureError(f"{what}: not valid base64") from e
    if len(raw) != size:
        raise SignatureError(f"{what}: expected {size} bytes, got {len(raw)}")
    return raw


def _check_comment(comment: str, limit: int, what: str) -> bytes:
    """The comment as bytes. Raises ValueError if it spans lines or exceeds *limit* bytes."""
    raw = comment.encode("utf-8")
    if any(c in raw for c in (b"\n", b"\r", b"\0")):
        raise ValueError(f"{what} must be a single line without NUL characters")
    if len(raw) > limit:
        raise ValueError(f"{what} is {len(raw)} bytes long; minisign allows at most {limit}")
    return raw


@dataclass(frozen=True, repr=False)
class PublicKey:
    """A minisign public key: an 8-byte key id and a raw 32-byte Ed25519 public key."""

    key_id: bytes
    key: bytes

    def __repr__(self) -> str:
        return f"PublicKey({self.to_string()!r})"

    def __post_init__(self) -> None:
        if len(self.key_id) != _KEY_ID_SIZE or len(self.key) != 32:
            raise ValueError("a minisign public key has an 8-byte id and a 32-byte key")

    @property
    def key_id_hex(self) -> str:
        """The key id as minisign prints it (16 upper-case hex digits)."""
        return _key_id_hex(self.key_id)

    @classmethod
    def from_string(cls, text: str) -> PublicKey:
        """Parse the one-line form ``RW…`` (surrounding whitespace ignored).

        Raises SignatureError if it is not a minisign Ed25519 public key.
        """
        raw = _b64decode(text.strip(), 42, "public key")
        if raw[:2] != _ALG_LEGACY:
            raise SignatureError(f"public key: unsupported algorithm {raw[:2]!r}")
        key = cls(key_id=raw[2:10], key=raw[10:])
        try:
            key._ed25519()  # some OpenSSL builds reject invalid points at load time
        except ValueError as e:
            raise SignatureError(f"public key: not an Ed25519 key: {e}") from e
        return key

    @classmethod
    def from_file(cls, path: StrPath) -> PublicKey:
        """Load a ``.pub`` file: an ``untrusted comment:`` line, then the key.

        Raises OSError if the file cannot be read, SignatureError if it is malformed.
        """
        lines = _read_small(path).split(b"\n")
        if len(lines) < 2 or not lines[0].startswith(_UNTRUSTED_PREFIX):
            raise SignatureError(f"{os.fspath(path)}: not a minisign public key file")
        try:
            return cls.from_string(lines[1].decode("ascii"))
        except UnicodeDecodeError as e:
            raise SignatureError(f"{os.fspath(path)}: public key: not valid base64") from e

    def to_string(self) -> str:
        """The one-line ``RW…`` form, as pinsets and ``minisign -P`` take it."""
        return base64.b64encode(_ALG_LEGACY + self.key_id + self.key).decode("ascii")

    def to_file_bytes(self) -> bytes:
        """The contents of a ``.pub`` file, exactly as ``minisign -G`` writes it."""
        comment = f"minisign public key {self.key_id_hex}".encode("ascii")
        return _UNTRUSTED_PREFIX + comment + b"\n" + self.to_string().encode("ascii") + b"\n"

    def to_file(self, path: StrPath, *, force: bool = False) -> None:
        """Write a ``.pub`` file (mode 0o644: it is meant to be published).

        Raises FileExistsError if *path* exists and *force* is false; OSError on write failure.
        """
        _write_file(path, self.to_file_bytes(), mode=0o644, force=force)

    def _ed25519(self) -> Ed25519PublicKey:
        return Ed25519PublicKey.from_public_bytes(self.key)


@dataclass(frozen=True)
class ScryptLimits:
    """libsodium's ``opslimit``/``memlimit`` pair, which is what a minisign key file stores."""

    opslimit: int
    memlimit: int


#: What minisign uses (crypto_pwhash_scryptsalsa208sha256_*_SENSITIVE): N = 2**20, 1 GiB.
SCRYPT_SENSITIVE = ScryptLimits(opslimit=33554432, memlimit=1073741824)
#: libsodium's *_INTERACTIVE limits: N = 2**14, 16 MiB. Fast; for tests and throwaway keys.
SCRYPT_INTERACTIVE = ScryptLimits(opslimit=524288, memlimit=16777216)


def scrypt_parameters(limits: ScryptLimits) -> tuple[int, int, int]:
    """The scrypt ``(N, r, p)`` libsodium derives from *limits*.

    A minisign key stores only opslimit and memlimit; crypto_pwhash_scryptsalsa208sha256 turns them
    into N, r and p with ``pickparams()`` (libsodium pwhash_scryptsalsa208sha256.c), so this
    mirrors it step for step, integer divisions included, or real minisign keys would not open.
    """
    opslimit = max(limits.opslimit, 32768)
    r = 8
    cpu_bound = opslimit < limits.memlimit // 32
    max_n = opslimit // (r * 4) if cpu_bound else limits.memlimit // (r * 128)
    n_log2 = 1
    while n_log2 < 63 and (1 << n_log2) <= max_n // 2:
        n_log2 += 1
    if cpu_bound:
        return 1 << n_log2, r, 1
    max_rp = min((opslimit // 4) // (1 << n_log2), 0x3FFFFFFF)
    return 1 << n_log2, r, max_rp // r


def _scrypt_stream(password: str, salt: bytes, limits: ScryptLimits) -> bytes:
    """The keystream that encrypts a secret key. Raises SignatureError for unusable limits."""
    n, r, p = scrypt_parameters(limits)
    if p == 0 or n * p > _SCRYPT_MAX_WORK:
        raise SignatureError(
            f"secret key: unsupported scrypt limits (opslimit {limits.opslimit}, "
            f"memlimit {limits.memlimit})"
        )
    try:
        return hashlib.scrypt(
            password.encode("utf-8"), salt=salt, n=n, r=r, p=p,
            maxmem=_SCRYPT_MAXMEM, dklen=_SECRET_BODY_SIZE,
        )
    except (ValueError, MemoryError) as e:
        raise SignatureError(f"secret key: cannot derive the key from the password: {e}") from e


def _xor(data: bytes, stream: bytes) -> bytes:
    return (int.from_bytes(data, "big") ^ int.from_bytes(stream, "big")).to_bytes(len(data), "big")


def _secret_checksum(key_id: bytes, sk: bytes) -> bytes:
    # minisign's seckey_compute_chk(): BLAKE2b-256 over sig_alg || key id || 64-byte secret key.
    return hashlib.blake2b(_ALG_LEGACY + key_id + sk, digest_size=32).digest()


class _Keep(enum.Enum):
    KEEP = enum.auto()


#: Default of :meth:`SecretKey.to_file`: protect the file with the key's own password.
KEEP_PASSWORD = _Keep.KEEP


@dataclass(frozen=True, repr=False)
class SecretKey:
    """A minisign secret key.

    ``password`` is the one the key is protected with on disk (``None``: stored unencrypted); it is
    set by :func:`generate_keypair` and :meth:`from_file` and used by :meth:`to_file`.
    """

    key_id: bytes
    seed: bytes
    password: str | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if len(self.key_id) != _KEY_ID_SIZE or len(self.seed) != 32:
            raise ValueError("a minisign secret key has an 8-byte id and a 32-byte seed")

    def __repr__(self) -> str:
        # Never print the seed or the password.
        return f"SecretKey(key_id={self.key_id_hex}, encrypted={self.password is not None})"

    @property
    def key_id_hex(self) -> str:
        return _key_id_hex(self.key_id)

    @property
    def public_key(self) -> PublicKey:
        raw = self._ed25519().public_key().public_bytes_raw()
        return PublicKey(key_id=self.key_id, key=raw)

    def with_password(self, password: str | None) -> SecretKey:
        """The same key, to be stored under *password* (``None``: unencrypted)."""
        return replace(self, password=password)

    @classmethod
    def from_file_bytes(cls, data: bytes, password: Password = None) -> SecretKey:
        """Parse the contents of a minisign ``.key`` file.

        *password* may be a callable, called only if the key is encrypted (to prompt lazily).
        Raises SignatureError if the file is malformed, the password is missing or wrong, or the
        key is corrupted.
        """
        lines = data.split(b"\n")
        if len(lines) < 2 or not lines[0].startswith(_UNTRUSTED_PREFIX):
            raise SignatureError("not a minisign secret key file")
        raw = _b64decode(lines[1].rstrip(b"\r"), _SECRET_KEY_SIZE, "secret key")
        if raw[0:2] != _ALG_LEGACY:
            raise SignatureError(f"secret key: unsupported signature algorithm {raw[0:2]!r}")
        if raw[4:6] != _CHK_BLAKE2B:
            raise SignatureError(f"secret key: unsupported checksum algorithm {raw[4:6]!r}")
        kdf, body = raw[2:4], raw[54:]
        if kdf == _KDF_SCRYPT:
            pw = password() if callable(password) else password
            if pw is None:
                raise SignatureError("secret key is encrypted: a password is needed")
            limits = ScryptLimits(
                int.from_bytes(raw[38:46], "little"), int.from_bytes(raw[46:54], "little")
            )
            return cls._from_body(_xor(body, _scrypt_stream(pw, raw[6:38], limits)), pw)
        if kdf == _KDF_NONE:
            return cls._from_body(body, None)
        raise SignatureError(f"secret key: unsupported key derivation {kdf!r}")

    @classmethod
    def _from_body(cls, body: bytes, password: str | None) -> SecretKey:
        key_id, sk, chk = body[:8], body[8:72], body[72:]
        if not hmac.compare_digest(chk, _secret_checksum(key_id, sk)):
            if password is not None:
                raise SignatureError("wrong password for that secret key")
            # `minisign -G -W` leaves the checksum all zero (it only computes it to encrypt).
            if chk != bytes(32):
                raise SignatureError("secret key checksum mismatch: the key is corrupted")
        key = cls(key_id=key_id, seed=sk[:32], password=password)
        # libsodium signs with the public half stored in sk; a mismatch would make bad signatures.
        if not hmac.compare_digest(key.public_key.key, sk[32:]):
            raise SignatureError("secret key is corrupted: its public half does not match")
        return key

    @classmethod
    def from_file(cls, path: StrPath, password: Password = None) -> SecretKey:
        """Load a minisign ``.key`` file (see :meth:`from_file_bytes`).

        Raises OSError if it cannot be read, SignatureError as :meth:`from_file_bytes`.
        """
        return cls.from_file_bytes(_read_small(path), password)

    def to_file_bytes(
        self,
        password: str | _Keep | None = KEEP_PASSWORD,
        *,
        limits: ScryptLimits = SCRYPT_SENSITIVE,
    ) -> bytes:
        """The contents of a ``.key`` file, encrypted with scrypt under *limits* when there is a
        password (by default the key's own).

        Raises ValueError if the password is longer than minisign can read.
        """
        pw = self.password if isinstance(password, _Keep) else password
        sk = self.seed + self.public_key.key
        body = self.key_id + sk + _secret_checksum(self.key_id, sk)
        if pw is None:
            header = _ALG_LEGACY + _KDF_NONE + _CHK_BLAKE2B + bytes(48)
            comment = b"minisign secret key (unencrypted)"
        else:
            if len(pw.encode("utf-8")) > _MAX_PASSWORD:
                raise ValueError(f"password longer than minisign's {_MAX_PASSWORD} bytes")
            salt = secrets.token_bytes(32)
            header = (
                _ALG_LEGACY + _KDF_SCRYPT + _CHK_BLAKE2B + salt
                + limits.opslimit.to_bytes(8, "little") + limits.memlimit.to_bytes(8, "little")
            )
            try:
                body = _xor(body, _scrypt_stream(pw, salt, limits))
            except SignatureError as e:
                raise ValueError(e.message) from e
            comment = b"minisign encrypted secret key"
        return _UNTRUSTED_PREFIX + comment + b"\n" + base64.b64encode(header + body) + b"\n"

    def to_file(
        self,
        path: StrPath,
        password: str | _Keep | None = KEEP_PASSWORD,
        *,
        force: bool = False,
        limits: ScryptLimits = SCRYPT_SENSITIVE,
    ) -> None:
        """Write a minisign ``.key`` file with mode 0o600 (see :meth:`to_file_bytes`).

        Raises FileExistsError if *path* exists and *force* is false; OSError on write failure;
        ValueError for a password minisign could not read.
        """
        _write_file(path, self.to_file_bytes(password, limits=limits), mode=0o600, force=force)

    def _ed25519(self) -> Ed25519PrivateKey:
        return Ed25519PrivateKey.from_private_bytes(self.seed)


def generate_keypair(password: str | None = None) -> tuple[SecretKey, PublicKey]:
    """A new random key pair; the secret key will be stored under *password* (None: unencrypted)."""
    seed = Ed25519PrivateKey.generate().private_bytes_raw()
    secret = SecretKey(key_id=secrets.token_bytes(_KEY_ID_SIZE), seed=seed, password=password)
    return secret, secret.public_key


@dataclass(frozen=True)
class Signature:
    """A parsed ``.minisig`` file. ``trusted_comment`` is kept as the exact bytes it signs."""

    algorithm: bytes
    key_id: bytes
    signature: bytes
    trusted_comment: bytes
    global_signature: bytes
    untrusted_comment: str = _DEFAULT_UNTRUSTED

    @property
    def prehashed(self) -> bool:
        """True for ``ED`` (BLAKE2b-512 of the payload is signed), False for legacy ``Ed``."""
        return self.algorithm == _ALG_PREHASHED

    @property
    def key_id_hex(self) -> str:
        return _key_id_hex(self.key_id)

    @classmethod
    def parse(cls, data: bytes) -> Signature:
        """Parse a ``.minisig`` file, checking its structure (not its validity: see Verifier).

        Raises SignatureError, and nothing else, for any malformed input.
        """
        if len(data) > MAX_SIGNATURE_FILE_SIZE:
            raise SignatureError(f"signature file is {len(data)} bytes, larger than any valid one")
        # minisign's trim() drops the line end, "\r" included, so CRLF files are accepted too.
        lines = [line.rstrip(b"\r") for line in bytes(data).split(b"\n")]
        if len(lines) < 4 or not lines[3]:
            raise SignatureError(
                "signature file must have 4 lines: untrusted comment, signature, "
                "trusted comment, global signature"
            )
        if any(line.strip() for line in lines[4:]):
            raise SignatureError("signature file: unexpected data after the global signature")
        untrusted = _after_prefix(lines[0], _UNTRUSTED_PREFIX, MAX_UNTRUSTED_COMMENT, "line 1")
        trusted = _after_prefix(lines[2], _TRUSTED_PREFIX, MAX_TRUSTED_COMMENT, "line 3")
        if b"\0" in trusted:
            raise SignatureError("signature file: NUL character in the trusted comment")
        raw = _b64decode(lines[1], 74, "signature")
        if raw[:2] not in (_ALG_LEGACY, _ALG_PREHASHED):
            raise SignatureError(f"signature: unsupported algorithm {raw[:2]!r}")
        return cls(
            algorithm=raw[:2],
            key_id=raw[2:10],
            signature=raw[10:],
            trusted_comment=trusted,
            global_signature=_b64decode(lines[3], 64, "global signature"),
            untrusted_comment=untrusted.decode("utf-8", "replace"),
        )

    def to_bytes(self) -> bytes:
        """The ``.minisig`` file, as minisign writes it."""
        untrusted = self.untrusted_comment.encode("utf-8")
        sig = base64.b64encode(self.algorithm + self.key_id + self.signature)
        return b"".join((
            _UNTRUSTED_PREFIX, untrusted, b"\n", sig, b"\n",
            _TRUSTED_PREFIX, self.trusted_comment, b"\n",
            base64.b64encode(self.global_signature), b"\n",
        ))


def _after_prefix(line: bytes, prefix: bytes, limit: int, where: str) -> bytes:
    if not line.startswith(prefix):
        raise SignatureError(f"signature file, {where}: must start with {prefix.decode()!r}")
    rest = line[len(prefix):]
    if len(rest) > limit:
        raise SignatureError(f"signature file, {where}: comment longer than {limit} bytes")
    return rest


@dataclass(frozen=True)
class VerifiedSignature:
    """What a successful verification established."""

    key: PublicKey  # the trusted key that made the signature
    trusted_comment: str  # decoded as UTF-8, undecodable bytes replaced
    prehashed: bool

    @property
    def key_id(self) -> bytes:
        return self.key.key_id

    @property
    def key_id_hex(self) -> str:
        return self.key.key_id_hex


class Verifier:
    """Checks a payload against a signature and a set of trusted keys, reading it only once.

    Construction already refuses a signature whose key id is not among *keys*, and a legacy one
    unless *allow_legacy* is true (see the module docstring for why), so a caller can fail before
    downloading the payload.

    Prehashed (``ED``) signatures: feed the payload to :meth:`update` as it arrives, then call
    :meth:`verify`. Legacy (``Ed``) signatures: :attr:`needs_file` is true; Ed25519 signs the whole
    message and ``cryptography`` cannot verify it incrementally, so :meth:`update` keeps nothing and
    :meth:`verify` must be given the finished file, which it maps rather than reads into memory
    (so the file must not be truncated while it is being verified).
    A download loop can call ``update()`` either way and finish with
    ``verify(file_path=tmp if verifier.needs_file else None)``.
    """

    def __init__(
        self, keys: Sequence[PublicKey], signature: Signature, *, allow_legacy: bool = False
    ) -> None:
        """Raises SignatureError if no key in *keys* has the signature's key id, or the signature
        is legacy and *allow_legacy* is false."""
        self._signature = signature
        self._keys = [k for k in keys if hmac.compare_digest(k.key_id, signature.key_id)]
        if not self._keys:
            trusted = ", ".join(k.key_id_hex for k in keys) or "none"
            raise SignatureError(
                f"signature is by key {signature.key_id_hex}, which is not trusted "
                f"(trusted key ids: {trusted})"
            )
        if not allow_legacy and not signature.prehashed:
            raise SignatureError(LEGACY_REFUSED)
        self._hash = hashlib.blake2b(digest_size=64) if signature.prehashed else None
        self._done = False

    @property
    def needs_file(self) -> bool:
        """True for legacy signatures: :meth:`verify` needs ``file_path``."""
        return self._hash is None

    def update(self, chunk: bytes | memoryview) -> None:
        """Feed the next part of the payload. Raises ValueError after :meth:`verify`."""
        if self._done:
            raise ValueError("update() after verify()")
        if self._hash is not None:
            self._hash.update(chunk)

    def verify(self, file_path: StrPath | None = None) -> VerifiedSignature:
        """Check the signature and the trusted comment's global signature; call once.

        *file_path* is the finished payload, required when :attr:`needs_file` and refused otherwise
        (ValueError). Raises SignatureError if either signature is invalid, OSError if the file
        cannot be read.
        """
        if self._done:
            raise ValueError("verify() called twice")
        if (file_path is None) == self.needs_file:
            raise ValueError(
                "legacy signatures need file_path" if self.needs_file
                else "prehashed signatures verify the data given to update(), not a file"
            )
        if self._hash is not None:
            return self._finish(self._hash.digest())
        assert file_path is not None
        with _mapped(file_path) as message:
            return self._finish(message)

    def _finish(self, message: bytes | memoryview) -> VerifiedSignature:
        """Check *message* (the payload, or its BLAKE2b-512 digest when prehashed)."""
        self._done = True
        sig = self._signature
        if not sig.prehashed and len(message) == _PREHASH_SIZE:
            raise SignatureError(
                f"a legacy signature over exactly {_PREHASH_SIZE} bytes is refused even where legacy "
                "signatures are allowed: it is what a prehashed signature with its unsigned algorithm "
                "bytes flipped verifies over (the BLAKE2b-512 of the file really signed)")
        for key in self._keys:
            public = key._ed25519()
            try:
                public.verify(sig.signature, message)
            except InvalidSignature:
                continue
            try:
                public.verify(sig.global_signature, sig.signature + sig.trusted_comment)
            except InvalidSignature:
                raise SignatureError(
                    f"trusted comment signature by key {key.key_id_hex} is invalid: "
                    "the trusted comment was altered"
                ) from None
            return VerifiedSignature(
                key=key,
                trusted_comment=sig.trusted_comment.decode("utf-8", "replace"),
                prehashed=sig.prehashed,
            )
        raise SignatureError(
            f"signature by key {sig.key_id_hex} does not match the data: "
            "the payload or the signature was altered"
        )


def verify_data(
    keys: Sequence[PublicKey], signature: Signature, data: bytes, *, allow_legacy: bool = False
) -> VerifiedSignature:
    """Verify a payload held in memory. Raises SignatureError as :class:`Verifier`."""
    verifier = Verifier(keys, signature, allow_legacy=allow_legacy)
    if verifier.needs_file:
        return verifier._finish(data)
    verifier.update(data)
    return verifier.verify()


def verify_file(
    keys: Sequence[PublicKey], signature: Signature, path: StrPath, *, allow_legacy: bool = False
) -> VerifiedSignature:
    """Verify a payload on disk, reading it once. Raises SignatureError, OSError."""
    verifier = Verifier(keys, signature, allow_legacy=allow_legacy)
    if verifier.needs_file:
        return verifier.verify(file_path=path)
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            verifier.update(chunk)
    return verifier.verify()


def sign(
    secret_key: SecretKey,
    data_or_path: bytes | bytearray | memoryview | StrPath,
    trusted_comment: str | None = None,
    untrusted_comment: str | None = None,
    prehash: bool = True,
) -> bytes:
    """A ``.minisig`` file for a payload given as bytes or as a path (read once).

    The default trusted comment is minisign's: ``timestamp:<unix time>\\tfile:<file name>``,
    plus ``\\thashed`` when prehashed (no ``file:`` part for in-memory data).
    Raises ValueError for a multi-line or over-long comment, OSError if the file cannot be read.
    """
    if isinstance(data_or_path, bytes | bytearray | memoryview):
        file_name = None
    else:
        file_name = os.path.basename(os.fspath(data_or_path))
    if trusted_comment is None:
        trusted_comment = _default_trusted_comment(file_name, prehash)
    trusted = _check_comment(trusted_comment, MAX_TRUSTED_COMMENT, "trusted comment")
    untrusted = _DEFAULT_UNTRUSTED if untrusted_comment is None else untrusted_comment
    _check_comment(untrusted, MAX_UNTRUSTED_COMMENT, "untrusted comment")
    private = secret_key._ed25519()
    if isinstance(data_or_path, bytes | bytearray | memoryview):
        message = hashlib.blake2b(data_or_path, digest_size=64).digest() if prehash else data_or_path
        signature = private.sign(message)
    elif prehash:
        signature = private.sign(_blake2b_file(data_or_path))
    else:
        with _mapped(data_or_path) as mapped:
            signature = private.sign(mapped)
    return Signature(
        algorithm=_ALG_PREHASHED if prehash else _ALG_LEGACY,
        key_id=secret_key.key_id,
        signature=signature,
        trusted_comment=trusted,
        global_signature=private.sign(signature + trusted),
        untrusted_comment=untrusted,
    ).to_bytes()


def _default_trusted_comment(file_name: str | None, prehash: bool) -> str:
    parts = [f"timestamp:{int(time.time())}"]
    if file_name is not None:
        parts.append(f"file:{file_name}")
    if prehash:
        parts.append("hashed")
    return "\t".join(parts)


def _blake2b_file(path: StrPath) -> bytes:
    digest = hashlib.blake2b(digest_size=64)
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.digest()


@contextlib.contextmanager
def _mapped(path: StrPath) -> Iterator[bytes | memoryview]:
    """The whole file as a buffer: memory-mapped, so a large payload is paged in by the OS rather
    than copied onto the heap. Raises OSError."""
    with open(path, "rb") as f:
        if os.fstat(f.fileno()).st_size == 0:
            yield b""  # mmap refuses empty files
            return
        try:
            mapped = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        except (OSError, ValueError):
            yield f.read()  # not mappable (a pipe, some network file systems)
            return
        with mapped, memoryview(mapped) as view:
            yield view


def _read_small(path: StrPath, limit: int = 65536) -> bytes:
    """A key file's bytes; refuses huge ones (a key file is a few hundred bytes). Raises OSError,
    SignatureError."""
    with open(path, "rb") as f:
        data = f.read(limit + 1)
    if len(data) > limit:
        raise SignatureError(f"{os.fspath(path)}: too large for a minisign key file")
    return data


def _write_file(path: StrPath, data: bytes, *, mode: int, force: bool) -> None:
    """Write *data* to *path* with permission bits *mode*.

    Without *force* the file is created with O_EXCL, so an existing file (or one created
    concurrently) is never replaced: FileExistsError. With *force* it is written to a temporary file
    in the same folder and moved over *path* with os.replace, so readers never see a partial file.
    Raises OSError.
    """
    path = os.fspath(path)
    if not force:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), mode)
        _write_fd(fd, data, cleanup=path)
        return
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path) or ".", prefix=".tmp-")
    try:
        os.chmod(tmp, mode)
        _write_fd(fd, data, cleanup=None)
        replace_file(tmp, path)
    except BaseException:
        _unlink_quietly(tmp)
        raise


def _write_fd(fd: int, data: bytes, *, cleanup: str | None) -> None:
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        if cleanup is not None:
            _unlink_quietly(cleanup)
        raise


def _unlink_quietly(path: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)
