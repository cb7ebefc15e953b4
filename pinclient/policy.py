"""The pin policy, pure: a verified chain, a host and a config in; a verdict out.

No sockets, no files, no clock: the caller passes ``now``. The same function decides for the
transport, ``pinclient check`` and the TUF fetcher, which is what lets the tests run it over
thousands of generated chains.

Report-only (a pinset's ``mode``, or an expired pinset with ``on_expiry = "report-only"``) never
hides a violation: the verdict is *accepted* but keeps its violation reason and every detail, so the
transport can print and report it exactly like a refusal. The blocklist and a missing verified
chain are always enforced.
"""

from __future__ import annotations

import base64
import datetime as dt
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

from cryptography import x509

from ._names import normalize_host
from ._x509 import NameKey, canonical_name, format_serial, load_der_certificate, name_text, spki_sha256
from .config import BlockedCert, Mode, Pin, PinConfig, Pinset
from .errors import ChainEntry, PinViolation

__all__ = ["ChainCert", "Verdict", "VerdictMemo", "effective_mode", "evaluate", "expiry_warning",
           "format_refusal", "format_report_only", "parse_chain", "spki_sha256"]

Reason = Literal["pinned", "unpinned-allowed", "unexpected-issuer", "blocked", "unpinned",
                 "no-verified-chain", "first-contact", "remembered", "issuer-changed"]
#: Reasons that are no violation: pinned, allowed unpinned, and remembered hosts whose chain keeps
#: a recorded CA (or that are met for the first time).
_ACCEPTED_REASONS = ("pinned", "unpinned-allowed", "first-contact", "remembered")


@dataclass(frozen=True)
class ChainCert:
    """A certificate of a verified chain with the values the policy compares, computed once."""

    der: bytes
    cert: x509.Certificate
    spki_sha256: bytes
    subject: NameKey
    issuer: NameKey
    serial: int = 0  # read once, so a serial-0 root (Go Daddy G2) warns nowhere (see _x509)

    @property
    def spki_b64(self) -> str:
        return base64.b64encode(self.spki_sha256).decode()

    @property
    def subject_text(self) -> str:
        """The subject as shown everywhere (escaped: it is the certificate maker's text)."""
        return name_text(self.cert.subject)

    def entry(self) -> ChainEntry:
        return ChainEntry(
            subject=self.subject_text,
            spki_sha256=self.spki_b64,
            issuer=name_text(self.cert.issuer),
            serial=format_serial(self.serial),
            not_after=self.cert.not_valid_after_utc.isoformat(),
        )


@lru_cache(maxsize=512)
def _parse_der(der: bytes) -> ChainCert:
    # Cached: a server's chain is the same on every connection, and parsing plus hashing the
    # SPKI is most of the pin check's cost.
    cert, serial = load_der_certificate(der)
    return ChainCert(der=der, cert=cert, spki_sha256=spki_sha256(cert),
                     subject=canonical_name(cert.subject), issuer=canonical_name(cert.issuer),
                     serial=serial)


def parse_chain(chain: Sequence[bytes]) -> tuple[ChainCert, ...]:
    """Parse DER certificates, leaf first.

    Raises:
        ValueError: a certificate cannot be parsed.
    """
    return tuple(_parse_der(bytes(der)) for der in chain)


@dataclass(frozen=True)
class Verdict:
    """The decision for one connection. ``accepted`` is the only field the transport obeys; the rest
    explains it.

    ``violated`` is True whenever the chain broke the pins, including in report-only mode, where the
    verdict is accepted (``report_only``) but carries the same detail as a refusal. ``mode`` is the
    mode that applied (after expiry); ``expired`` says the pinset is past its ``expires`` date.
    """

    host: str
    accepted: bool
    reason: Reason
    chain: tuple[ChainCert, ...]
    pinset: Pinset | None = None
    matched: Pin | None = None
    blocked: BlockedCert | None = None
    blocked_cert: ChainCert | None = None
    mode: Mode = "enforce"
    expired: bool = False
    # unpinned = "remember", issuer-changed: the recorded issuers ("sha256/…: subject") and the
    # command that accepts the change.
    known: tuple[str, ...] = ()
    forget_command: str = ""

    @property
    def violated(self) -> bool:
        """The chain broke the pins (refused, or let through in report-only mode)."""
        return self.reason not in _ACCEPTED_REASONS

    @property
    def report_only(self) -> bool:
        """A violation that was let through because report-only mode applied."""
        return self.violated and self.accepted

    def violation(self, port: int | None = None) -> PinViolation:
        """The :class:`PinViolation` describing this violation (refused or report-only)."""
        assert self.violated
        expected = tuple(p.describe() for p in self.pinset.issuers) if self.pinset else self.known
        return PinViolation(
            format_refusal(self, port),
            host=self.host,
            port=port,
            pinset=self.pinset.name if self.pinset else None,
            reason=self.reason,
            chain=[c.entry() for c in self.chain],
            expected=expected,
            blocked_by=self.blocked.describe() if self.blocked else None,
        )


def _blocked_entry(config: PinConfig, chain: Sequence[ChainCert]) -> tuple[BlockedCert, ChainCert] | None:
    for cert in chain:
        for entry in config.blocked:
            if entry.spki_sha256 is not None:
                if entry.spki_sha256 == cert.spki_sha256:
                    return entry, cert
            elif entry.serial == cert.serial and entry.issuer is not None \
                    and _name_covers(entry.issuer, cert.issuer):
                return entry, cert
    return None


def _name_covers(partial: NameKey, name: NameKey) -> bool:
    """Whether every attribute of a blocklist entry's ``issuer`` is in the certificate's issuer.

    A blocklist entry may name the issuer partly (``CN=UTN-USERFirst-Hardware``) and in either
    order; it must never silently mean nothing. Matching more is the safe direction for a blocklist
    (the serial must match too); pins compare whole names (see :func:`_matching_pin`)."""
    have = {attr for rdn in name for attr in rdn}
    return all(attr in have for rdn in partial for attr in rdn)


def _matching_pin(pinset: Pinset, chain: Sequence[ChainCert]) -> Pin | None:
    # Only certificates *above the leaf* count: a pin names a CA, and the leaf is the server's own.
    for cert in chain[1:]:
        for pin in pinset.issuers:
            if pin.kind == "spki" and pin.spki_sha256 == cert.spki_sha256:
                return pin
            if pin.kind == "subject" and pin.subject == cert.subject:
                return pin
    return None


def _utc_date(now: dt.datetime) -> dt.date:
    return (now if now.tzinfo is None else now.astimezone(dt.timezone.utc)).date()


def effective_mode(config: PinConfig, pinset: Pinset | None, now: dt.datetime) -> tuple[Mode, bool]:
    """The mode that applies to ``pinset`` at ``now`` (naive means UTC), and whether it has expired.

    A pinset's own ``mode`` wins over ``defaults.mode``; hosts no pinset covers use
    ``defaults.mode``. From its ``expires`` date on (UTC, Android's ``pin-set expiration``
    semantics), a pinset keeps enforcing unless ``on_expiry = "report-only"`` downgrades it. Either
    way ``expired`` is True, so the caller warns: pinning never silently stops.
    """
    if pinset is None:
        return config.defaults.mode, False
    mode: Mode = pinset.mode or config.defaults.mode
    expired = pinset.expires is not None and _utc_date(now) >= pinset.expires
    if expired and pinset.on_expiry == "report-only":
        mode = "report-only"
    return mode, expired


def evaluate(config: PinConfig, host: str, chain: Sequence[bytes] | None, *,
             now: dt.datetime | None = None, known: Mapping[bytes, str] | None = None) -> Verdict:
    """Decide whether a **verified** chain (DER, leaf first) is acceptable for ``host`` at ``now``.

    Order: an empty chain fails closed; a blocked certificate anywhere refuses, pinned host or
    not, in every mode; an uncovered host follows ``defaults.unpinned``; a covered host needs one
    of its pinset's issuers above the leaf. An unexpected issuer (or a refused unpinned host) under
    report-only mode gives an accepted verdict that still carries the violation. ``now`` only
    matters for ``expires``; None reads the clock (callers that want purity pass it).

    With ``unpinned = "remember"`` an uncovered host is judged against ``known``, the CA keys
    recorded for it (SPKI SHA-256 → subject as shown; None: no record): no record is a first
    contact (accepted, the caller records the chain), a chain with a recorded key above the leaf is
    remembered, any other is ``issuer-changed`` (refused, or let through in report-only mode).

    Raises:
        ValueError: ``host`` is not a valid host name.
        PinViolation: a certificate of the chain cannot be parsed (reason ``"unparsable-chain"``):
            what cannot be read cannot be checked, so it is refused in every mode.
    """
    name = normalize_host(host)
    pinset = config.pinset_for(name)
    mode, expired = effective_mode(config, pinset, now or dt.datetime.now(dt.timezone.utc))
    if not chain:
        return Verdict(name, False, "no-verified-chain", (), pinset, expired=expired)
    try:
        certs = parse_chain(chain)
    except ValueError as e:
        raise PinViolation(f"Certificate pinning failure for {name}: the verified chain holds a "
                           f"certificate pinclient cannot read ({e}); refusing.", host=name,
                           pinset=pinset.name if pinset else None, reason="unparsable-chain") from None
    hit = _blocked_entry(config, certs)
    if hit is not None:
        return Verdict(name, False, "blocked", certs, pinset, blocked=hit[0], blocked_cert=hit[1],
                       expired=expired)
    if pinset is None:
        if config.defaults.unpinned == "remember":
            return _remembered(config, name, certs, known, mode)
        if config.defaults.unpinned == "allow":
            return Verdict(name, True, "unpinned-allowed", certs, mode=mode)
        return Verdict(name, mode == "report-only", "unpinned", certs, mode=mode)
    pin = _matching_pin(pinset, certs)
    if pin is None:
        return Verdict(name, mode == "report-only", "unexpected-issuer", certs, pinset, mode=mode,
                       expired=expired)
    return Verdict(name, True, "pinned", certs, pinset, matched=pin, mode=mode, expired=expired)


class VerdictMemo:
    """:func:`evaluate`, remembering its last verdicts: a new connection to a host usually presents
    the chain the last one did, and the verdict is then a dictionary look-up (issue 18: the pin
    check of a new connection ~25 % cheaper).

    Sound because a verdict is a function of the config (frozen; another config object empties the
    memo), the host as given, the exact DER bytes of the chain and, through ``expires``, the UTC
    date, all of which are in the key. Not used with ``known`` (``unpinned = "remember"``: the
    records change between calls). A chain or host :func:`evaluate` raises for is never
    remembered. At most :attr:`SIZE` entries; a full memo starts over.
    """

    SIZE = 64

    def __init__(self) -> None:
        self._config: PinConfig | None = None
        self._verdicts: dict[tuple[str, tuple[bytes, ...]], tuple[dt.date, Verdict]] = {}

    def evaluate(self, config: PinConfig, host: str, chain: Sequence[bytes], now: dt.datetime) -> Verdict:
        """As ``evaluate(config, host, chain, now=now)``; raises as it does."""
        key = (host, tuple(bytes(der) for der in chain))
        day = _utc_date(now)
        hit = self._verdicts.get(key) if config is self._config else None
        if hit is not None and hit[0] == day:
            return hit[1]
        verdict = evaluate(config, host, key[1], now=now)
        if config is not self._config or len(self._verdicts) >= self.SIZE:
            self._config = config
            self._verdicts = {}
        self._verdicts[key] = (day, verdict)
        return verdict


def remembered_cas(chain: Sequence[ChainCert]) -> Sequence[ChainCert]:
    """The certificates whose keys ``unpinned = "remember"`` records and looks for: the CAs above
    the leaf (the leaf's own key never counts, as for pins). A verified chain of one certificate is
    a server certificate that is itself a trust anchor of ``ca_bundle`` (self-signed); its key is
    then the only one continuity can hold on to, and no other chain can have it at its top."""
    return chain[1:] or chain[:1]


def _remembered(config: PinConfig, name: str, certs: tuple[ChainCert, ...],
                known: Mapping[bytes, str] | None, mode: Mode) -> Verdict:
    """Issuer continuity (SSH known_hosts, Certificate Patrol): the verified chain must keep one of
    the CA keys recorded for the host. A key, not a name, so a CA that can mint a sub-CA with the
    recorded name does not pass (Firefox 4's update check compared names)."""
    if known is None:
        return Verdict(name, True, "first-contact", certs, mode=mode)
    if any(cert.spki_sha256 in known for cert in remembered_cas(certs)):
        return Verdict(name, True, "remembered", certs, mode=mode)
    recorded = tuple(f"sha256/{base64.b64encode(k).decode()}: {subject}" for k, subject in known.items())
    command = f"pinclient forget {shlex.quote(name)}"
    if config.path is not None:
        command += f" --pins {shlex.quote(str(config.path))}"
    return Verdict(name, mode == "report-only", "issuer-changed", certs, mode=mode, known=recorded,
                   forget_command=command)


def expiry_warning(verdict: Verdict) -> str | None:
    """The warning to print on every use of an expired pinset, or None."""
    if not verdict.expired or verdict.pinset is None or verdict.pinset.expires is None:
        return None
    name, day = verdict.pinset.name, verdict.pinset.expires.isoformat()
    if verdict.pinset.on_expiry == "report-only":
        return (f'pinset "{name}" expired on {day} and is downgraded to report-only '
                '(on_expiry = "report-only"): violations are reported, not refused. Check its pins '
                "and move expires forward in the pins file.")
    return (f'pinset "{name}" expired on {day} and is still enforced (on_expiry = "enforce"). '
            "Check its pins are current, then move expires forward in the pins file.")


def format_report_only(verdict: Verdict, port: int | None = None) -> str:
    """The REPORT-ONLY warning for a violation let through: the refusal text, clearly marked, and
    why it was not enforced."""
    assert verdict.report_only
    if verdict.pinset is None:
        why = 'defaults.mode is "report-only"'
    elif verdict.expired and verdict.pinset.on_expiry == "report-only":
        assert verdict.pinset.expires is not None
        why = (f'pinset "{verdict.pinset.name}" expired on {verdict.pinset.expires.isoformat()} '
               'with on_expiry = "report-only"')
    else:
        why = f'pinset "{verdict.pinset.name}" is in mode "report-only"'
    return (f"REPORT-ONLY (not enforced): {format_refusal(verdict, port)}\n"
            f"  REPORT-ONLY: the connection was allowed because {why}; in enforce mode it would be "
            "refused.")


def format_refusal(verdict: Verdict, port: int | None = None) -> str:
    """The refusal text: what happened, the verified chain, and what was expected (OkHttp-style, so
    that pins.toml can be fixed from the message alone)."""
    where = verdict.host if port in (None, 443) else f"{verdict.host}:{port}"
    pinset = f'pinset "{verdict.pinset.name}"' if verdict.pinset else "no pinset"
    if verdict.reason == "blocked":
        assert verdict.blocked is not None
        assert verdict.blocked_cert is not None
        head = (f"Certificate refused for {where} ({pinset}): the verified chain contains a blocked "
                f"certificate, {verdict.blocked_cert.subject_text} — blocklist entry "
                f"{verdict.blocked.describe()}.")
    elif verdict.reason == "unpinned":
        head = (f"Certificate pinning failure for {where}: no pinset in the pins file covers this host "
                'and defaults.unpinned is "refuse". Add a [[pinset]] for it, or set '
                'unpinned = "allow" in [defaults] to accept plain TLS validation.')
    elif verdict.reason == "issuer-changed":
        head = (f"Certificate pinning failure for {where} (no pinset; unpinned = \"remember\"): the "
                "issuer changed. No certificate above the leaf in the verified chain is a CA recorded "
                "for this host at an earlier connection.")
    elif verdict.reason == "no-verified-chain":
        head = (f"Certificate pinning failure for {where} ({pinset}): the TLS connection has no verified "
                "chain to check (a resumed session or verification turned off); refusing.")
    else:
        head = (f"Certificate pinning failure for {where} ({pinset}): no certificate above the leaf in "
                "the verified chain matches a pinned issuer.")
    lines = [head]
    if verdict.chain:
        lines.append("  Verified chain (leaf first):")
        lines.extend(f"    sha256/{c.spki_b64}: {c.subject_text}" for c in verdict.chain)
    if verdict.pinset is not None and verdict.reason != "blocked":
        lines.append(f'  Pinned issuers for "{verdict.pinset.name}" (one must appear above the leaf):')
        lines.extend(f"    {p.describe()}" for p in verdict.pinset.issuers)
    if verdict.reason == "issuer-changed":
        lines.append("  Recorded issuers (one must appear above the leaf):")
        lines.extend(f"    {k}" for k in verdict.known)
        lines.append(f"  If the new CA is expected, accept it with: {verdict.forget_command} "
                     "(the next connection records the new issuers).")
    return "\n".join(lines)
