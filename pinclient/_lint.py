"""``pinclient lint``, pure: a loaded pins file (and optionally a live verified chain) in, findings out.

The checks are the ones that separate pinning that survives from "pinning suicide": a missing backup
key (Android lint's ``MissingBackupPin``, TrustKit's two-pin rule), names instead of keys, pinsets
past or near their expiry, hosts claimed twice, wildcards over a public suffix, and (with a live
chain from ``--against``) pins that match nothing.

Public suffixes: pinclient carries no copy of the Public Suffix List (no new dependency, and a stale
copy is worse than a short honest one). Every single-label suffix (``*.com``, ``*.test``) is flagged,
plus the common multi-label suffixes in :data:`PUBLIC_SUFFIXES`; a wildcard over a rarer one is not
caught.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

from ._names import host_matches, normalize_host
from ._x509 import MAX_SERIAL_OCTETS
from .config import BlockedCert, Pin, PinConfig, Pinset
from .policy import evaluate

__all__ = ["EXPIRY_NOTICE_DAYS", "PUBLIC_SUFFIXES", "Finding", "Severity", "against", "exit_status",
           "is_public_suffix", "lint"]

Severity = Literal["error", "warning", "info"]

#: Days before ``expires`` from which a pinset is reported as expiring soon.
EXPIRY_NOTICE_DAYS = 30

#: Multi-label public suffixes flagged under a ``*.`` pattern (a hand-picked excerpt of the Public
#: Suffix List, https://publicsuffix.org: country second levels and shared hosting domains).
PUBLIC_SUFFIXES = frozenset({
    "co.uk", "org.uk", "me.uk", "ltd.uk", "plc.uk", "ac.uk", "gov.uk", "net.uk", "sch.uk",
    "com.au", "net.au", "org.au", "edu.au", "gov.au", "id.au",
    "co.nz", "net.nz", "org.nz", "co.jp", "ne.jp", "or.jp", "ac.jp", "go.jp",
    "co.kr", "or.kr", "com.cn", "net.cn", "org.cn", "com.hk", "com.tw", "com.sg", "com.my",
    "co.in", "net.in", "org.in", "co.id", "co.th", "com.vn", "com.ph", "com.pk",
    "co.za", "com.ng", "co.ke", "com.eg", "com.tr", "co.il", "com.sa", "com.ua",
    "com.br", "net.br", "org.br", "com.ar", "com.mx", "com.co", "com.pe", "com.ve", "co.ve",
    "github.io", "gitlab.io", "githubusercontent.com", "herokuapp.com", "appspot.com",
    "blogspot.com", "cloudfront.net", "azurewebsites.net", "azureedge.net", "cloudapp.net",
    "s3.amazonaws.com", "elasticbeanstalk.com", "firebaseapp.com", "web.app", "netlify.app",
    "vercel.app", "pages.dev", "workers.dev", "fly.dev", "onrender.com", "readthedocs.io",
    "ngrok.io", "duckdns.org", "no-ip.org", "dyndns.org",
})


@dataclass(frozen=True)
class Finding:
    """One lint result: ``severity``, a stable ``code``, the pinset it concerns, what is wrong and a
    one-line fix. ``info`` findings (from ``--against``) explain and never change the exit code."""

    severity: Severity
    code: str
    pinset: str | None
    message: str
    fix: str = ""

    def format(self) -> str:
        where = f'pinset "{self.pinset}": ' if self.pinset else ""
        text = f"{self.severity}: [{self.code}] {where}{self.message}"
        return f"{text}\n    fix: {self.fix}" if self.fix else text

    def to_json(self) -> dict[str, object]:
        return {"severity": self.severity, "code": self.code, "pinset": self.pinset,
                "message": self.message, "fix": self.fix}


def exit_status(findings: Sequence[Finding], *, strict: bool = False) -> int:
    """2 with any error; 1 with warnings under ``strict``; else 0."""
    if any(f.severity == "error" for f in findings):
        return 2
    if strict and any(f.severity == "warning" for f in findings):
        return 1
    return 0


def _pin_text(pin: Pin) -> str:
    return pin.describe()


# --------------------------------------------------------------------------- the file alone


def lint(config: PinConfig, *, today: dt.date) -> list[Finding]:
    """Every finding about ``config`` on ``today`` (UTC), pinset by pinset in file order, then the
    findings across pinsets."""
    findings: list[Finding] = []
    for pinset in config.pinsets:
        findings += _backup(pinset)
        findings += _signing_backup(pinset)
        findings += _legacy_signatures(pinset)
        findings += _subject_pins(pinset)
        findings += _expiry(pinset, today)
        findings += _public_suffix(pinset)
    findings += _host_overlaps(config.pinsets)
    findings += _no_pinsets(config)
    findings += _undeliverable_reports(config)
    findings += _blocked_entries(config)
    findings += _update_source(config, today)
    return findings


def _update_source(config: PinConfig, today: dt.date) -> list[Finding]:
    # Signed pins updates: the backup-key lesson again (a lost single key freezes every client's pins
    # for good), and a document past its expires, which clients refuse to take as an update and
    # fetch-update refuses to use once no fresher one can be had.
    findings = []
    if config.update is not None and len(config.update.signing_keys) == 1:
        findings.append(Finding(
            "warning", "no-backup-update-key", None,
            "[update] has only one signing key: if it is lost or must be revoked, no pins update these "
            "clients accept can ever be signed",
            "generate a second key (`pinclient keygen`), keep it offline, and add it to [update] "
            "signing_keys"))
    if config.expires is not None and config.expires <= today:
        findings.append(Finding(
            "error", "pins-expired", None,
            f"the document's expires ({config.expires.isoformat()}) has passed: clients refuse it as a "
            "pins update, and fetch-update refuses to work with it once it cannot fetch a newer one",
            "publish a new document with a higher serial and a later expires"))
    return findings


def _backup(pinset: Pinset) -> list[Finding]:
    keys = {p.spki_sha256 for p in pinset.issuers if p.kind == "spki"}
    if len(keys) >= 2:
        return []
    have = "no SPKI pin" if not keys else "only one pinned key"
    return [Finding(
        "warning", "no-backup-pin", pinset.name,
        f"{have}: there is no backup key, so losing or changing that CA bricks the updater "
        "(pinning suicide)",
        "add a second spki_sha256 pin for a key you could move to, such as another CA's root "
        "(`pinclient pin --pem CA.pem` prints it)")]


def _signing_backup(pinset: Pinset) -> list[Finding]:
    # The same lesson as a backup pin, for payload signatures (Sparkle rotates one key per release):
    # with one key, losing it means shipping no update these clients will accept.
    if len(pinset.signing_keys) != 1:
        return []
    return [Finding(
        "warning", "no-backup-signing-key", pinset.name,
        "only one signing key: if it is lost or must be revoked, no update these clients accept can "
        "be signed",
        "generate a second key now (`pinclient keygen`), keep it offline, and add its RW… public key "
        "to signing_keys")]


def _legacy_signatures(pinset: Pinset) -> list[Finding]:
    # Legacy minisign signatures can be forged from prehashed ones (the algorithm bytes are unsigned;
    # docs/signing.md): an opt-in that is forgotten once the publisher signs prehashed is a risk kept.
    if not pinset.allow_legacy_signatures:
        return []
    return [Finding(
        "warning", "legacy-signatures-allowed", pinset.name,
        "allow_legacy_signatures = true: legacy (Ed) minisign signatures are accepted, whose "
        "algorithm bytes are unsigned (a prehashed signature can be downgraded to one over the "
        "file's 64-byte hash)",
        "ask the publisher to sign prehashed (minisign without -l, pinclient sign without --legacy) "
        "and remove allow_legacy_signatures")]


def _subject_pins(pinset: Pinset) -> list[Finding]:
    findings = [Finding(
        "warning", "subject-pin", pinset.name,
        f"{_pin_text(pin)} pins a name, not a key: any trusted CA that can issue a sub-CA can copy it",
        "replace it with the spki_sha256 of the same CA (`pinclient pin HOST` prints it)")
        for pin in pinset.issuers if pin.kind == "subject"]
    # A subject pin compares the whole name (a partial match would accept more CAs), so "CN=…" alone
    # matches only a CA named exactly that; beside another pin it silently never matches.
    findings += [Finding(
        "warning", "partial-subject", pinset.name,
        f"{_pin_text(pin)} has only one attribute; a subject pin must be the CA's whole name, and most "
        "CA names also have O and C, so this likely matches nothing",
        "copy the whole subject (`openssl x509 -noout -subject`), or pin the key instead")
        for pin in pinset.issuers if pin.kind == "subject" and pin.subject is not None
        and sum(len(rdn) for rdn in pin.subject) == 1]
    return findings


def _expiry(pinset: Pinset, today: dt.date) -> list[Finding]:
    if pinset.expires is None:
        return []
    day = pinset.expires.isoformat()
    if today >= pinset.expires:
        effect = ("still enforced, with a warning on every use" if pinset.on_expiry == "enforce"
                  else "downgraded to report-only: violations are no longer refused")
        return [Finding("error", "expired", pinset.name,
                        f'expired on {day} (on_expiry = "{pinset.on_expiry}": {effect})',
                        "check its pins against the live hosts (`pinclient lint --against URL`), "
                        "then move expires forward")]
    left = (pinset.expires - today).days
    if left <= EXPIRY_NOTICE_DAYS:
        return [Finding("warning", "expiring-soon", pinset.name,
                        f"expires on {day}, in {left} day{'s' if left != 1 else ''}",
                        "check its pins against the live hosts (`pinclient lint --against URL`), "
                        "then move expires forward")]
    return []


def is_public_suffix(name: str) -> bool:
    """Whether ``name`` (normalised) is a public suffix: any single label, or a listed one."""
    return "." not in name or name in PUBLIC_SUFFIXES


def _public_suffix(pinset: Pinset) -> list[Finding]:
    return [Finding(
        "error", "public-suffix-wildcard", pinset.name,
        f'host pattern "{pattern}" covers every site directly under the public suffix '
        f'"{pattern[2:]}", not just yours',
        f'list your own names instead, e.g. "updates.example.{pattern[2:]}" or '
        f'"*.example.{pattern[2:]}"')
        for pattern in pinset.hosts if pattern.startswith("*.") and is_public_suffix(pattern[2:])]


def _host_overlaps(pinsets: Sequence[Pinset]) -> list[Finding]:
    findings: list[Finding] = []
    first_owner: dict[str, Pinset] = {}
    for pinset in pinsets:
        for pattern in pinset.hosts:
            owner = first_owner.setdefault(pattern, pinset)
            if owner is not pinset:
                findings.append(Finding(
                    "error", "duplicate-host", pinset.name,
                    f'host "{pattern}" is also in pinset "{owner.name}", which comes first and wins; '
                    "these pins never apply to it",
                    f'remove "{pattern}" from one of the two pinsets'))
    for a_index, a in enumerate(pinsets):
        for b in pinsets[a_index + 1:]:
            for exact, wild, e_set, w_set in _exact_under_wildcard(a, b):
                findings.append(Finding(
                    "warning", "overlapping-hosts", e_set.name,
                    f'host "{exact}" is also covered by "{wild}" in pinset "{w_set.name}"; the exact '
                    f'name wins, so "{e_set.name}" applies to it',
                    "fine if the override is intended; otherwise remove one of the two patterns"))
    return findings


def _blocked_entries(config: PinConfig) -> list[Finding]:
    """A ``[[blocked]]`` entry that can never match, or that blocks a key a pinset pins (so every
    connection the pin was meant to allow is refused): both are a file that does not do what it
    says."""
    findings: list[Finding] = []
    for entry in config.blocked:
        where = f"[[blocked]] #{entry.index + 1} ({entry.describe()})"
        if entry.serial is not None and entry.serial.bit_length() > 8 * MAX_SERIAL_OCTETS:
            findings.append(Finding(
                "error", "blocked-never-matches", None,
                f"{where}: the serial has {(entry.serial.bit_length() + 7) // 8} octets; RFC 5280 caps "
                f"serial numbers at {MAX_SERIAL_OCTETS}, so no CA's certificate has it",
                "copy the serial again (`openssl x509 -noout -serial` prints it as hex; a decimal "
                'serial is written "dec:…")'))
        findings += _blocked_and_pinned(config, entry, where)
    return findings


def _blocked_and_pinned(config: PinConfig, entry: BlockedCert, where: str) -> list[Finding]:
    if entry.spki_sha256 is None:
        return []
    return [Finding(
        "error", "blocked-and-pinned", pinset.name,
        f"{_pin_text(pin)} is pinned here and blocked by {where}: the block wins everywhere in the "
        "chain, so every connection through that CA is refused",
        "remove the pin (the key is blocked for a reason) and pin the CA you are moving to, or remove "
        "the [[blocked]] entry")
        for pinset in config.pinsets for pin in pinset.issuers
        if pin.kind == "spki" and pin.spki_sha256 == entry.spki_sha256]


def _no_pinsets(config: PinConfig) -> list[Finding]:
    if config.pinsets:
        return []
    effect = {"refuse": "every host is refused",
              "remember": "every host is trusted on first use (unpinned = \"remember\"): nothing is pinned"
              }.get(config.defaults.unpinned, "every host gets plain TLS validation only: nothing is pinned")
    return [Finding("error", "no-pinsets", None, f"the file has no [[pinset]]: {effect}",
                    "add a [[pinset]] for your update hosts (`pinclient pin HOST` prints one)")]


def _undeliverable_reports(config: PinConfig) -> list[Finding]:
    """A ``report_uri`` whose host no pinset covers while unpinned hosts are refused: reports go
    through the same pinned transport, so every one of them is refused and lost, silently."""
    if config.defaults.unpinned != "refuse" or config.defaults.mode == "report-only":
        return []
    owners = [(None, config.defaults.report_uri)] + [(p.name, p.report_uri) for p in config.pinsets]
    findings = []
    for owner, uri in owners:
        if not uri:
            continue
        host = urlsplit(uri).hostname or ""
        try:
            covered = config.pinset_for(normalize_host(host)) is not None
        except ValueError:
            covered = False
        if not covered:
            findings.append(Finding(
                "error", "report-uri-undeliverable", owner,
                f'report_uri "{uri}" can never be delivered: no pinset covers {host} and '
                'unpinned = "refuse", so pinclient refuses to connect to it',
                f'add "{host}" to a pinset (with that server\'s CA pins), or use report_file'))
    return findings


def _exact_under_wildcard(a: Pinset, b: Pinset) -> list[tuple[str, str, Pinset, Pinset]]:
    out = []
    for x, y in ((a, b), (b, a)):
        for exact in x.hosts:
            if exact.startswith("*."):
                continue
            for wild in y.hosts:
                if wild.startswith("*.") and host_matches(wild, exact):
                    out.append((exact, wild, x, y))
    return out


# --------------------------------------------------------------------------- against a live chain


def against(config: PinConfig, host: str, chain: Sequence[bytes], *, now: dt.datetime,
            port: int = 443) -> list[Finding]:
    """Findings for ``host``'s live **verified** chain (DER, leaf first), got from ``port``: which
    pins of its pinset the chain satisfies (info), which match nothing in it (info: a backup, or a
    typo or stale pin), a warning when every pin is in the live chain (an intermediate and its own
    root are not a backup: RFC 7469 §4.3 asks for a pin outside the current chain), and an error
    when the pins would refuse the host (a warning in report-only mode). Every message names the
    host and, unless it is 443, the port.

    Raises:
        ValueError: ``host`` is not a host name.
        PinViolation: a certificate of the chain cannot be parsed.
    """
    verdict = evaluate(config, host, chain, now=now)
    pinset = verdict.pinset
    name = pinset.name if pinset else None
    where = verdict.host if port == 443 else f"{verdict.host}:{port}"
    findings: list[Finding] = []
    if pinset is None:
        if verdict.reason in ("unpinned-allowed", "first-contact"):
            how = ("plain TLS validation only" if verdict.reason == "unpinned-allowed" else
                   'its first chain remembered and later ones held to it (unpinned = "remember")')
            findings.append(Finding("warning", "against-unpinned", None,
                                    f"no pinset covers {where}: it gets {how}",
                                    f'add a [[pinset]] for "{verdict.host}" (`pinclient pin` prints one)'))
    else:
        above = verdict.chain[1:]
        misses = 0
        for pin in pinset.issuers:
            hits = [c for c in above if (pin.kind == "spki" and pin.spki_sha256 == c.spki_sha256)
                    or (pin.kind == "subject" and pin.subject == c.subject)]
            if hits:
                findings.append(Finding("info", "against-match", name,
                                        f"{_pin_text(pin)} matches {hits[0].subject_text} in the live "
                                        f"chain of {where}"))
            else:
                misses += 1
                findings.append(Finding(
                    "info", "against-no-match", name,
                    f"{_pin_text(pin)} matches nothing in the live chain of {where}: a backup pin, or "
                    "a typo or stale pin"))
        if len(pinset.issuers) >= 2 and not misses:
            findings.append(Finding(
                "warning", "no-backup-outside-chain", name,
                f"every pin is a CA in the live chain of {where}: an intermediate and its own root are "
                "one CA, so when the server moves to another CA they all stop matching and the "
                "updater is bricked",
                "add a pin outside the current chain: another CA's root you could move to "
                "(`pinclient pin --pem OTHER-CA.pem` prints it)"))
    if verdict.violated:
        severity: Severity = "warning" if verdict.report_only else "error"
        what = ("report-only mode lets it through with a report" if verdict.report_only
                else "it would be refused")
        chain_text = "; ".join(f"sha256/{c.spki_b64} {c.subject_text}" for c in verdict.chain[1:])
        findings.append(Finding(
            severity, "against-refused", name,
            f"the live chain of {where} breaks the pins ({verdict.reason}): {what}; above the "
            f"leaf: {chain_text or 'nothing'}",
            "pin one of the CAs above the leaf (`pinclient pin HOST` prints them), or fix the server"))
    return findings
