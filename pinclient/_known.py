"""Known issuers for hosts no pinset covers (``unpinned = "remember"``): the file, its lock, and the
step the transport's :class:`~pinclient.transport.PinGuard` runs for such hosts.

The decision is :func:`pinclient.policy.evaluate`'s, pure: given the keys recorded for a host and the
verified chain, first contact, remembered or ``issuer-changed``. This module only reads and writes
``known-issuers.json`` in the state folder (:meth:`pinclient.config.PinConfig.state_folder`):

- every judgement runs under an exclusive lock on ``known-issuers.json.lock``
  (:func:`pinclient._paths.try_lock`: ``flock``, or ``msvcrt.locking`` on Windows; a platform with
  neither is a :class:`StorageError`, never an unlocked update), re-reads the file, decides, and
  writes a merged copy (a temporary file in the same folder, fsync,
  :func:`~pinclient._paths.replace_file`, :func:`~pinclient._paths.fsync_dir`; python-tuf's
  ``_persist_metadata``), so two processes meeting two hosts at once keep both records, and two
  meeting the *same* host for the first time agree on one record (the second is judged against the
  first's);
- the lock is waited for at most :data:`LOCK_TIMEOUT` seconds, and never past the caller's deadline
  (:func:`pinclient._deadline.remaining`);
- a ``known-issuers.json`` that is not pinclient's (another format, a symbolic link) is never
  replaced: it is a :class:`UsageError` naming the file;
- a record unused for ``remember_max_age`` days is dropped with a warning (its host is met afresh),
  so a decommissioned or re-homed host does not lock a client out forever.

Only the keys of CAs *above the leaf* are recorded and only keys are compared, never names; the
records grow only at first contact: a remembered connection refreshes ``last_seen`` (once a day, so
most connections write nothing) but adds no new CA, which would widen what the host may present.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import datetime as dt
import errno
import json
import logging
import os
import secrets
import stat
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from . import _paths
from ._deadline import remaining
from ._names import normalize_host, printable
from .config import PinConfig
from .errors import StorageError, UsageError
from .policy import Verdict, evaluate, remembered_cas

__all__ = ["FILE_NAME", "KnownHost", "KnownIssuer", "KnownIssuers"]

log = logging.getLogger("pinclient")

FILE_NAME = "known-issuers.json"
#: The marker that makes the file pinclient's; a file without it is never replaced.
FORMAT = "pinclient known-issuers 1"
#: The longest wait for another process's lock (it holds it for one small read and write).
LOCK_TIMEOUT = _paths.STATE_LOCK_TIMEOUT
#: The largest file read: records are a few hundred bytes per host.
MAX_FILE = 16 * 1024 * 1024
_BINARY = getattr(os, "O_BINARY", 0)  # Windows: without it a read stops at 0x1A and writes turn \n into \r\n
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)


@dataclass(frozen=True)
class KnownIssuer:
    """One CA key recorded for a host: SPKI SHA-256 (base64, as in pins.toml) and its subject."""

    spki_sha256: str
    subject: str
    first_seen: str  # ISO 8601, UTC
    last_seen: str

    def to_json(self) -> dict[str, str]:
        return {"spki_sha256": self.spki_sha256, "subject": self.subject,
                "first_seen": self.first_seen, "last_seen": self.last_seen}


@dataclass(frozen=True)
class KnownHost:
    """What pinclient remembers of one host: the CAs above the leaf at its first verified contact."""

    host: str
    first_seen: str
    last_seen: str
    issuers: tuple[KnownIssuer, ...]

    def keys(self) -> dict[bytes, str]:
        """SPKI SHA-256 → subject, as :func:`pinclient.policy.evaluate` takes them."""
        return {base64.b64decode(i.spki_sha256): i.subject for i in self.issuers}

    def stale(self, now: dt.datetime, max_age_days: int) -> bool:
        return now - dt.datetime.fromisoformat(self.last_seen) > dt.timedelta(days=max_age_days)

    def to_json(self) -> dict[str, object]:
        return {"host": self.host, "first_seen": self.first_seen, "last_seen": self.last_seen,
                "issuers": [i.to_json() for i in self.issuers]}


def _stamp(now: dt.datetime) -> str:
    return now.astimezone(dt.timezone.utc).replace(microsecond=0).isoformat()


class KnownIssuers:
    """The known-issuers file of one state folder."""

    def __init__(self, folder: Path, *, max_age_days: int = 400) -> None:
        self.folder = folder
        self.path = folder / FILE_NAME
        self.lock_path = folder / (FILE_NAME + ".lock")
        self.max_age_days = max_age_days

    @classmethod
    def for_config(cls, config: PinConfig) -> KnownIssuers:
        return cls(config.state_folder(), max_age_days=config.defaults.remember_max_age)

    # ----------------------------------------------------------------------- the transport's step

    def judge(self, config: PinConfig, host: str, chain: Sequence[bytes] | None,
              now: dt.datetime) -> Verdict:
        """:func:`~pinclient.policy.evaluate` for ``host``, with its record when no pinset covers
        it; a first contact is recorded and a remembered one refreshed, all under the lock.

        Raises:
            ValueError: ``host`` is not a valid host name.
            PinViolation: as :func:`~pinclient.policy.evaluate`.
            StorageError: the file could not be locked in time or written (enforce mode only: in
                report-only mode that is a warning).
            UsageError: the file is not pinclient's.
        """
        name = normalize_host(host)
        if config.defaults.unpinned != "remember" or config.pinset_for(name) is not None:
            return evaluate(config, host, chain, now=now)
        with self._locked():
            records = self.load()
            record = records.get(name)
            if record is not None and record.stale(now, self.max_age_days):
                log.warning("known issuers of %s were last seen on %s, more than remember_max_age "
                            "(%d days) ago: dropped; this connection is a first contact", name,
                            record.last_seen[:10], self.max_age_days)
                record = None
            verdict = evaluate(config, host, chain, now=now,
                               known=record.keys() if record is not None else None)
            updated = self._updated(record, verdict, now)
            if updated is not None:
                records[name] = updated
                try:
                    self._write(records)
                except StorageError as e:
                    if verdict.mode != "report-only":
                        raise
                    log.warning("%s", e.message)
        if verdict.reason == "first-contact":
            log.warning("first contact with %s: remembered its issuers (%s) in %s", name,
                        "; ".join(c.subject_text for c in remembered_cas(verdict.chain)) or "none",
                        printable(str(self.path)))
        return verdict

    def _updated(self, record: KnownHost | None, verdict: Verdict, now: dt.datetime) -> KnownHost | None:
        """The record to write after ``verdict``, or None when nothing changes."""
        stamp = _stamp(now)
        if verdict.reason == "first-contact":
            issuers = tuple(KnownIssuer(c.spki_b64, c.subject_text, stamp, stamp)
                            for c in remembered_cas(verdict.chain))
            return KnownHost(verdict.host, stamp, stamp, issuers)
        if verdict.reason != "remembered" or record is None or record.last_seen[:10] == stamp[:10]:
            return None  # refused, reported, or already seen today: nothing to write
        seen = {c.spki_b64 for c in remembered_cas(verdict.chain)}
        issuers = tuple(KnownIssuer(i.spki_sha256, i.subject, i.first_seen, stamp)
                        if i.spki_sha256 in seen else i for i in record.issuers)
        return KnownHost(record.host, record.first_seen, stamp, issuers)

    # ----------------------------------------------------------------------- known / forget

    def records(self) -> dict[str, KnownHost]:
        """Every record, by host (a consistent snapshot: read under the lock)."""
        with self._locked(create=False):
            return self.load()

    def forget(self, host: str) -> KnownHost | None:
        """Remove ``host``'s record (``ssh-keygen -R``); the removed record, or None.

        Raises:
            ValueError: ``host`` is not a valid host name.
            StorageError / UsageError: as :meth:`judge`.
        """
        name = normalize_host(host)
        with self._locked(create=False):  # no folder: nothing to forget, and none is made
            records = self.load()
            removed = records.pop(name, None)
            if removed is not None:
                self._write(records)
        return removed

    # ----------------------------------------------------------------------- the file

    def load(self) -> dict[str, KnownHost]:
        """Read the file (missing: no records).

        Raises:
            UsageError: it is not a known-issuers file pinclient wrote.
            StorageError: it cannot be read.
        """
        try:
            # O_NONBLOCK: a FIFO put there must not hang the open (every wait is bounded).
            fd = os.open(self.path, os.O_RDONLY | _BINARY | _NOFOLLOW | getattr(os, "O_NONBLOCK", 0))
        except FileNotFoundError:
            return {}
        except OSError as e:
            if e.errno == errno.ELOOP:
                raise self._not_ours("it is a symbolic link") from None
            raise StorageError(f"cannot read {printable(str(self.path))}: {e.strerror}") from None
        if not stat.S_ISREG(os.fstat(fd).st_mode):  # a folder, FIFO or device
            os.close(fd)
            raise self._not_ours("it is not a regular file")
        with os.fdopen(fd, "rb") as fh:
            data = fh.read(MAX_FILE + 1)
        if len(data) > MAX_FILE:
            raise self._not_ours(f"it is larger than {MAX_FILE} bytes")
        try:
            doc = json.loads(data)
            if not isinstance(doc, dict) or doc.get("format") != FORMAT:
                raise self._not_ours(f'it has no "format": "{FORMAT}"')
            return {h: _host(h, r) for h, r in doc["hosts"].items()}
        except (ValueError, KeyError, TypeError, AttributeError, binascii.Error) as e:
            raise self._not_ours(f"it cannot be read as one ({type(e).__name__})") from None

    def _not_ours(self, why: str) -> UsageError:
        return UsageError(f"{printable(str(self.path))} is not a known-issuers file pinclient wrote "
                          f"({why}); pinclient will not read or replace it. Move it away, or set "
                          "state_dir in [defaults] to another folder.")

    def _write(self, records: Mapping[str, KnownHost]) -> None:
        """Replace the file atomically: a new file in the same folder, fsync, ``os.replace``."""
        doc = {"format": FORMAT, "hosts": {h: r.to_json() for h, r in sorted(records.items())}}
        data = json.dumps(doc, indent=1).encode() + b"\n"  # ensure_ascii: escaped certificate text
        tmp = self.folder / f".{FILE_NAME}.{secrets.token_hex(8)}.tmp"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _BINARY | _NOFOLLOW, 0o600)
        except OSError as e:
            raise StorageError(f"cannot write known issuers in {printable(str(self.folder))}: "
                               f"{e.strerror}") from None
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                _paths.fsync_file(fh.fileno())  # F_FULLFSYNC on macOS
            left = remaining()
            _paths.replace_file(tmp, self.path, until=None if left is None else time.monotonic() + left)
        except OSError as e:
            tmp.unlink(missing_ok=True)  # ours: created exclusively above
            raise StorageError(f"cannot write {printable(str(self.path))}: {e.strerror}") from None
        with contextlib.suppress(OSError):  # the rename is durable once the folder is (not on Windows)
            _paths.fsync_dir(self.folder)

    @contextmanager
    def _locked(self, create: bool = True) -> Iterator[None]:
        """Hold the exclusive lock, waiting at most :data:`LOCK_TIMEOUT` and the caller's deadline.
        ``create=False`` (reading only): no folder is made; without one there is nothing to lock."""
        if not create and not self.folder.is_dir():
            yield
            return
        try:
            self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
            # No O_TRUNC, never removed: the lock file's content is nothing, its inode the lock.
            fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | _BINARY | _NOFOLLOW, 0o600)
        except OSError as e:
            raise StorageError(f"cannot lock known issuers in {printable(str(self.folder))}: "
                               f"{e.strerror}") from None
        try:
            _paths.wait_for_lock(fd, self.lock_path, remaining())
            try:
                yield
            finally:
                _paths.unlock(fd)  # Windows frees a closed file's locks only "eventually"
        finally:
            os.close(fd)  # releases the flock


def _host(host: str, raw: Mapping[str, object]) -> KnownHost:
    issuers = raw["issuers"]
    if not isinstance(issuers, list):
        raise TypeError("issuers")
    out = []
    for item in issuers:
        key = str(item["spki_sha256"])
        if len(base64.b64decode(key, validate=True)) != 32:
            raise ValueError("spki_sha256")
        out.append(KnownIssuer(key, str(item["subject"]), str(item["first_seen"]), str(item["last_seen"])))
    first, last = str(raw["first_seen"]), str(raw["last_seen"])
    if dt.datetime.fromisoformat(last).tzinfo is None:  # here, not at the first stale() check
        raise ValueError("last_seen")
    return KnownHost(str(host), first, last, tuple(out))
