"""Signed pins updates: pins that can change CA without bricking the client (``[update]``).

Static pins die with the CA they name (HPKP's "pinning suicide"; Chrome stops enforcing its static
pins ten weeks after a build for that reason). Like Firefox's Remote Settings and python-tuf's root
rotation, a pins file with ``[update]`` can be replaced by a newer one, fetched through the pins
that are active now and accepted only when (:func:`check_update`, pure, no I/O):

1. ``url + ".minisig"`` is a prehashed (``ED``) minisign signature by one of the *active*
   ``[update] signing_keys`` over the exact bytes (a legacy ``Ed`` signature is refused);
2. the document is a valid pins.toml v1;
3. its ``serial`` is strictly greater than the active one (equal: already current; lower: a
   rollback, refused);
4. it has an ``expires`` that is still in the future (a freeze replays an old, genuinely signed
   document so that the client never learns of a newer one).

A new document may change ``[update] signing_keys`` (key rotation): it was signed by a current key.
The accepted document is stored by :mod:`pinclient._pinstore`; from then on
:func:`pinclient.load_pins` uses it while its serial is higher than the shipped file's. Any failure
raises and leaves what is active unchanged.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import logging
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from ._download.fetch import fetch_update
from ._download.options import FetchOptions
from ._names import printable
from ._pinstore import StoredPins, read_stored, store, store_path
from ._reporting import DEFAULT_REPORT_TIMEOUT, Post, Reporter, has_report_destination
from .config import PinConfig, load_pins, parse_pins
from .errors import (
    HTTPStatusError,
    IntegrityError,
    NetworkError,
    PinclientError,
    PinsFileError,
    PinViolation,
    RollbackError,
    SignatureError,
    UsageError,
)
from .minisign import MAX_SIGNATURE_FILE_SIZE, Signature, VerifiedSignature, verify_data
from .transport import _post_report  # the transport's own report POST: same pins, no recursion

__all__ = ["MAX_PINS_SIZE", "PinsStatus", "PinsUpdateResult", "check_update", "expired", "pins_status",
           "refresh", "refresh_due", "refresh_if_due", "update_pins"]

log = logging.getLogger("pinclient")

#: The largest pins document accepted from an update server.
MAX_PINS_SIZE = 1024 * 1024


@dataclass(frozen=True)
class PinsUpdateResult:
    """What :func:`update_pins` did: ``status`` is ``"updated"`` (a newer document is now active) or
    ``"current"`` (the server's serial is the active one, or another process stored a newer one)."""

    status: Literal["updated", "current"]
    serial: int  # the active serial now
    previous_serial: int  # the active serial before
    url: str  # where the document was fetched from
    expires: dt.date | None  # the active document's expiry now
    signer: str | None  # key id (hex) of the signature that was verified
    stored: Path  # the state file

    def to_json(self) -> dict[str, object]:
        return {"ok": True, "status": self.status, "serial": self.serial,
                "previous_serial": self.previous_serial, "url": self.url,
                "expires": self.expires.isoformat() if self.expires else None,
                "signer": self.signer, "stored": str(self.stored)}


@dataclass(frozen=True)
class PinsStatus:
    """Which pins document is active for a pins file (``pinclient pins show``)."""

    path: Path  # the shipped file
    active: Literal["shipped", "updated"]
    serial: int
    shipped_serial: int
    expires: dt.date | None
    expired: bool
    update_url: str | None  # [update] url of the active document
    origin: str | None  # where the active document came from: None for the shipped file
    last_checked: str | None  # ISO 8601, UTC
    stored: Path | None

    def to_json(self) -> dict[str, object]:
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        data.update(path=str(self.path), stored=str(self.stored) if self.stored else None,
                    expires=self.expires.isoformat() if self.expires else None)
        return {"ok": True, **data}


def _today(now: dt.datetime) -> dt.date:
    return now.astimezone(dt.timezone.utc).date()


def expired(config: PinConfig, now: dt.datetime) -> bool:
    """Whether the active document's top-level ``expires`` has passed (it expires at the start of
    that day, UTC)."""
    return config.expires is not None and _today(now) >= config.expires


def check_update(active: PinConfig, document: bytes, signature: bytes, *, now: dt.datetime,
                 base_dir: Path) -> tuple[PinConfig, VerifiedSignature]:
    """Decide whether ``document`` (with its ``.minisig`` bytes ``signature``) may replace
    ``active``; pure. Returns the parsed document and the verified signature; the caller treats a
    serial equal to the active one as "already current".

    Raises:
        UsageError: ``active`` has no ``[update]``.
        SignatureError: the signature is malformed, legacy, by a key ``active`` does not list, or
            does not match.
        IntegrityError: the document is not a valid pins.toml v1, or has no ``expires``.
        RollbackError: its serial is lower than the active one (``reason="rollback"``), or it has
            expired (``reason="expired"``).
    """
    if active.update is None:
        raise UsageError("this pins file has no [update] table, so it takes no updates")
    sig = Signature.parse(signature)
    if not sig.prehashed:
        # Legacy signatures sign the bytes without their algorithm: a forger can turn a prehashed
        # signature into a legacy one over a 64-byte file (docs/signing.md). Updates never need them.
        raise SignatureError("the pins update has a legacy minisign signature (Ed); pins updates must "
                             "be signed prehashed (ED: minisign -S, pinclient pins sign)")
    verified = verify_data(active.update.signing_keys, sig, document)
    try:
        candidate = parse_pins(document, base_dir=base_dir)
    except PinsFileError as e:
        raise IntegrityError(f"the signed pins update is not a valid pins file: {e.message}") from None
    if candidate.serial < active.serial:
        raise RollbackError(f"the pins update has serial {candidate.serial}, lower than the active "
                            f"serial {active.serial}: a rollback, refused", reason="rollback",
                            version=str(candidate.serial), installed=str(active.serial))
    if candidate.serial == active.serial:
        return candidate, verified
    if candidate.expires is None:
        raise IntegrityError(f"the pins update (serial {candidate.serial}) has no top-level expires; "
                             "an update must say until when it is fresh (expires = YYYY-MM-DD)")
    if _today(now) >= candidate.expires:
        raise RollbackError(f"the pins update (serial {candidate.serial}) expired on "
                            f"{candidate.expires.isoformat()}: an old document replayed (freeze), "
                            "refused", reason="expired", version=str(candidate.serial),
                            installed=str(active.serial), expires=candidate.expires.isoformat())
    return candidate, verified


def update_pins(path: str | os.PathLike[str], *, now: dt.datetime | None = None,
                options: FetchOptions | None = None, manager: Any = None,
                **overrides: Any) -> PinsUpdateResult:
    """Fetch the pins file's ``[update] url`` and its ``.minisig`` through the active pins, check
    the document (:func:`check_update`) and store it when newer, so that :func:`pinclient.load_pins`
    uses it from then on. ``options`` (and ``overrides``, its fields as keyword arguments, such as
    ``deadline=30``) are as for :func:`pinclient.fetch_update`; ``deadline`` bounds both requests
    together.

    Raises:
        PinsFileError / UsageError: the file does not load, or has no ``[update]``.
        SignatureError / IntegrityError / RollbackError: the document is refused (exit 5).
        PinViolation: the update server's chain violates the active pins (exit 3).
        NetworkError: it could not be fetched (exit 6).
        StorageError: the state folder cannot be written (exit 7).
    """
    return refresh(load_pins(Path(path)), now=now, options=options, manager=manager, **overrides)


def refresh(active: PinConfig, *, now: dt.datetime | None = None, options: FetchOptions | None = None,
            manager: Any = None, **overrides: Any) -> PinsUpdateResult:
    """:func:`update_pins` for an already loaded ``active`` config (loaded by ``load_pins``)."""
    if active.update is None or active.path is None:
        raise UsageError(f"{str(active.path or '<pins>')!r} has no [update] table: add one (url, "
                         "signing_keys, interval) to take signed pins updates")
    now = now or dt.datetime.now(dt.timezone.utc)
    shipped = active.path.resolve()
    stored_url = _shipped_url(active)
    stored_at = store_path(active.state_folder(), stored_url)
    url = active.update.url
    document, signature = _fetch(active, url, (options or FetchOptions()).with_overrides(overrides), manager)
    candidate, verified = check_update(active, document, signature, now=now, base_dir=shipped.parent)
    stamp = now.astimezone(dt.timezone.utc).isoformat(timespec="seconds")
    wrote: list[bool] = []

    def merge(current: StoredPins | None) -> StoredPins | None:
        base = current or StoredPins(url=stored_url)
        # Read under the lock: a process that stored a higher serial meanwhile is never undone.
        if candidate.serial <= max(active.serial, base.serial):
            return dataclasses.replace(base, last_checked=stamp)
        wrote.append(True)
        return StoredPins(url=stored_url, serial=candidate.serial, document=document.decode("utf-8"),
                          signature=signature.decode("utf-8", "replace"), origin=url, fetched=stamp,
                          last_checked=stamp)

    store(stored_at, merge)
    updated = bool(wrote)
    return PinsUpdateResult(status="updated" if updated else "current",
                            serial=candidate.serial if updated else active.serial,
                            previous_serial=active.serial, url=url,
                            expires=candidate.expires if updated else active.expires,
                            signer=verified.key_id_hex, stored=stored_at)


def _shipped_url(active: PinConfig) -> str:
    """The shipped file's ``[update] url``, which names its state file (an updated document may
    move ``url``; the state file stays where ``load_pins`` looks for it)."""
    assert active.path is not None
    if active.updated_from is None:
        assert active.update is not None
        return active.update.url
    shipped = parse_pins(active.path.read_bytes(), path=active.path)
    assert shipped.update is not None
    return shipped.update.url


def _fetch(active: PinConfig, url: str, options: FetchOptions, manager: Any) -> tuple[bytes, bytes]:
    """The signature, then the document, through ``active``'s pins, within one deadline."""
    start = time.monotonic()
    own = dataclasses.replace(options, resume=False)
    with tempfile.TemporaryDirectory(prefix="pinclient-pins-") as tmp:
        sig_path, doc_path = Path(tmp) / "pins.toml.minisig", Path(tmp) / "pins.toml"
        try:
            fetch_update(url + ".minisig", sig_path, config=active, signature=False, manager=manager,
                         options=dataclasses.replace(own, max_size=MAX_SIGNATURE_FILE_SIZE))
        except HTTPStatusError as e:
            if e.status not in (404, 410):
                raise  # a server failure is a network error (exit 6), tried again next time
            raise SignatureError(f"the pins update has no signature: {url}.minisig answered HTTP "
                                 f"{e.status}") from None
        Signature.parse(sig_path.read_bytes())  # malformed: refused before the document is asked for
        if own.deadline is not None:
            left = own.deadline - (time.monotonic() - start)
            if left <= 0:
                raise NetworkError(f"the deadline of {own.deadline:g} s passed before {url} was fetched",
                                   url=url, transient=False)
            own = dataclasses.replace(own, deadline=left)
        fetch_update(url, doc_path, config=active, signature=False, manager=manager,
                     options=dataclasses.replace(own, max_size=MAX_PINS_SIZE))
        return doc_path.read_bytes(), sig_path.read_bytes()


def refresh_if_due(config: PinConfig, reload: Callable[[], PinConfig], *,
                   options: FetchOptions | None = None, now: dt.datetime | None = None) -> PinConfig:
    """What ``fetch-update`` does before the payload: when ``config`` has ``[update]`` and its
    ``interval`` has passed (or its pins have expired), :func:`refresh`; a failure is logged as a
    warning, sent to the report destinations as a ``pins-update-failure`` report (rate-limited,
    within the deadline: :func:`_report_failure`), and the payload is fetched with the pins active
    now, unless those have expired
    (then the failure is raised: expired pins are not used). Returns ``reload()`` after an update,
    else ``config``.

    Raises:
        RollbackError: the active pins expired and no newer document could be had.
        PinclientError: as :func:`refresh`, only when the active pins expired.
    """
    now = now or dt.datetime.now(dt.timezone.utc)
    if config.update is None or not (expired(config, now) or refresh_due(config, now)):
        return config
    started = time.monotonic()
    try:
        result = refresh(config, now=now, options=options)
    except PinclientError as e:
        _report_failure(config, e, now=now, options=options, started=started)
        if expired(config, now):
            raise _expired(config, f"could not be updated: {e.message}") from e
        log.warning("pins update from %s failed (%s); continuing with the active pins (serial %d)",
                    printable(config.update.url), printable(e.message), config.serial)
        return config
    if result.status == "updated":
        log.warning("pins updated: serial %d -> %d from %s", result.previous_serial, result.serial,
                    result.url)
        return reload()
    if expired(config, now):  # the server has nothing newer: expired pins are still not used
        raise _expired(config, f"{config.update.url} has no newer document (serial {result.serial})")
    return config


#: The rate-limit record of pins update failure reports, in the state folder (``state_dir``).
FAILURE_REPORTS_SENT = "pins-update-reports-sent.json"


def _report_failure(config: PinConfig, error: PinclientError, *, now: dt.datetime,
                    options: FetchOptions | None, started: float) -> None:
    """Send a failed refresh to the report destinations (issue 15 §1: "the report channel reports
    it"), within what is left of the caller's deadline: the POST may take at most half of it (and
    at most :data:`DEFAULT_REPORT_TIMEOUT`), so the payload keeps the other half. A pin violation
    by the update server is not sent again: the transport reported it when it refused. Never
    raises."""
    assert config.update is not None
    if isinstance(error, PinViolation) or not has_report_destination(config):
        return
    try:
        timeout = DEFAULT_REPORT_TIMEOUT
        deadline = options.deadline if options is not None else None
        post: Post | None = functools.partial(_post_report, config, config.trust_bundle())
        if deadline is not None:
            timeout = min(timeout, (deadline - (time.monotonic() - started)) / 2)
            if timeout <= 0.05:  # no time to send: the report_file line is still written
                post = None
                log.info("pins update failure report not POSTed: the deadline has nearly passed")
        reporter = Reporter(config, post=post, timeout=max(timeout, 0.05),
                            state_path=config.state_folder() / FAILURE_REPORTS_SENT)
        reporter.submit_update_failure(config.update.url, error, serial=config.serial, now=now)
    except Exception as e:  # a report must never fail the payload
        log.warning("pins update failure report failed: %s", printable(str(e)))


def _expired(config: PinConfig, why: str) -> RollbackError:
    assert config.expires is not None
    return RollbackError(f"the active pins (serial {config.serial}) expired on "
                         f"{config.expires.isoformat()}, and {why}", reason="expired",
                         version=str(config.serial), expires=config.expires.isoformat())


def refresh_due(config: PinConfig, now: dt.datetime | None = None) -> bool:
    """Whether ``[update] interval`` has passed since the last successful check (fetch-update)."""
    if config.update is None or config.path is None:
        return False
    now = now or dt.datetime.now(dt.timezone.utc)
    stored = read_stored(store_path(config.state_folder(), _shipped_url(config)))
    if stored is None or stored.last_checked is None:
        return True
    try:
        last = dt.datetime.fromisoformat(stored.last_checked)
    except ValueError:
        return True
    return not dt.timedelta(0) <= now - last < dt.timedelta(seconds=config.update.interval)


def pins_status(config: PinConfig, now: dt.datetime | None = None) -> PinsStatus:
    """Which document is active for ``config`` (as :func:`pinclient.load_pins` returned it)."""
    if config.path is None:
        raise UsageError("pins status needs a pins file loaded with load_pins")
    now = now or dt.datetime.now(dt.timezone.utc)
    stored_at = stored = None
    if config.update is not None:
        stored_at = store_path(config.state_folder(), _shipped_url(config))
        stored = read_stored(stored_at)
    return PinsStatus(path=config.path, active="updated" if config.updated_from else "shipped",
                      serial=config.serial,
                      shipped_serial=(config.serial if config.shipped_serial is None
                                      else config.shipped_serial),
                      expires=config.expires, expired=expired(config, now),
                      update_url=config.update.url if config.update else None,
                      origin=config.updated_from, last_checked=stored.last_checked if stored else None,
                      stored=stored_at)
