"""pins.toml v1: load, validate once, and freeze.

Everything here is decided at load time: host patterns are normalised, subject DNs parsed, SPKI
hashes decoded, ``cert = "…"`` files read and hashed, paths made absolute. The policy code never
re-parses a string. Every problem raises :class:`~pinclient.errors.PinsFileError` naming the file,
the pinset and the key.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import datetime as dt
import errno
import os
import platform
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from cryptography import x509

from ._names import (
    host_matches,
    normalize_host,
    normalize_pattern,
    normalize_url,
    pattern_specificity,
    printable,
)
from ._paths import user_state_dir
from ._sizes import parse_size
from ._systemtrust import SYSTEM_TRUST, system_trust_refusal
from ._x509 import (
    NameKey,
    canonical_name,
    format_serial,
    load_certificate,
    name_text,
    parse_dn,
    parse_serial,
    spki_sha256,
)
from .errors import PinsFileError, SignatureError, UsageError

if TYPE_CHECKING:
    from .minisign import PublicKey

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

__all__ = [
    "BlockedCert",
    "Defaults",
    "Pin",
    "PinConfig",
    "Pinset",
    "UpdateSource",
    "canonical_name",
    "format_serial",
    "load_pins",
    "override_revocation",
    "override_unpinned",
    "parse_pins",
    "revocation_settings",
    "spki_sha256",
]

#: Hosts no pinset covers: "refuse", "allow" (plain TLS validation), or "remember" (the first
#: verified chain's CAs are recorded and later chains must contain one of them; see _known.py).
UnpinnedPolicy = Literal["refuse", "allow", "remember"]
#: "enforce" refuses a violating connection; "report-only" lets it through, warns and reports it.
Mode = Literal["enforce", "report-only"]
#: Revocation checking (see pinclient._revocation): "off", "soft-fail" (warn when the status cannot be
#: established) or "hard-fail" (refuse then). A revoked certificate is refused in both.
RevocationMode = Literal["off", "soft-fail", "hard-fail"]
#: "fallback": OCSP first, the CRL when OCSP gives no answer; "prefer": the CRL first.
CRLUse = Literal["fallback", "prefer"]


@dataclass(frozen=True)
class Pin:
    """One accepted issuer: an SPKI hash (``spki_sha256`` or ``cert``) or a subject DN."""

    kind: Literal["spki", "subject"]
    spki_sha256: bytes | None = None
    subject: NameKey | None = None
    subject_text: str = ""
    label: str = ""
    source: str = ""  # where it came from: "spki_sha256", "subject" or "cert=<path>"

    def describe(self) -> str:
        """``sha256/<base64> (label)`` or ``subject <DN> (label)``, as shown in refusals."""
        if self.kind == "spki":
            assert self.spki_sha256 is not None
            text = "sha256/" + base64.b64encode(self.spki_sha256).decode()
        else:
            text = f"subject {self.subject_text}"
        extra = [x for x in (self.label, self.source if self.source.startswith("cert=") else "") if x]
        return f"{text} ({', '.join(extra)})" if extra else text


@dataclass(frozen=True)
class Pinset:
    """A named set of hosts and the issuers accepted for them."""

    name: str
    hosts: tuple[str, ...]
    issuers: tuple[Pin, ...]
    index: int = 0
    # Lifecycle (see policy.effective_mode): None means "as in [defaults]".
    mode: Mode | None = None
    expires: dt.date | None = None  # the pinset expires at the start of this day (UTC)
    on_expiry: Mode = "enforce"
    report_uri: str | None = None  # None: defaults.report_uri
    report_file: str | None = None  # absolute path; None: defaults.report_file
    revocation: RevocationMode | None = None  # None: defaults.revocation
    crl: CRLUse | None = None  # None: defaults.crl
    max_size: int | None = None  # bytes a body from these hosts may have; None: defaults.max_size
    # minisign public keys, any one of which must have signed a payload from these hosts; empty:
    # payloads need no signature (see pinclient._download.signature).
    signing_keys: tuple[PublicKey, ...] = ()
    # Accept legacy minisign signatures (Ed) by these signing_keys: unsafe, their algorithm bytes are
    # unsigned, so a prehashed signature can be downgraded (docs/signing.md). Needs signing_keys.
    allow_legacy_signatures: bool = False

    def match_specificity(self, host: str) -> int | None:
        """The specificity of the best pattern matching ``host`` (normalised), or None."""
        best = None
        for pattern in self.hosts:
            if host_matches(pattern, host):
                score = pattern_specificity(pattern)
                best = score if best is None else max(best, score)
        return best


@dataclass(frozen=True)
class BlockedCert:
    """A blocklist entry: ``issuer`` + ``serial``, or ``spki_sha256`` (a key refused anywhere)."""

    issuer: NameKey | None = None
    issuer_text: str = ""
    serial: int | None = None
    spki_sha256: bytes | None = None
    reason: str = ""
    index: int = 0

    def describe(self) -> str:
        if self.spki_sha256 is not None:
            text = "key sha256/" + base64.b64encode(self.spki_sha256).decode()
        else:
            assert self.serial is not None
            text = f"serial {format_serial(self.serial)} from {self.issuer_text}"
        return f"{text} ({self.reason})" if self.reason else text


@dataclass(frozen=True)
class Defaults:
    ca_bundle: str = "certifi"  # "certifi", "system" (truststore) or an absolute path to a PEM bundle
    unpinned: UnpinnedPolicy = "refuse"
    mode: Mode = "enforce"  # for pinsets that set none, and for hosts no pinset covers
    report_uri: str | None = None  # https:// URL that receives violation reports (JSON POST)
    report_file: str | None = None  # absolute path of a JSON-lines file of violation reports
    revocation: RevocationMode = "off"  # for pinsets that set none, and for unpinned hosts
    crl: CRLUse = "fallback"
    cache_dir: str | None = None  # absolute path of the revocation cache; None: the user cache folder
    # Absolute path of what pinclient learns and keeps (updated pins, known issuers); None:
    # $PINCLIENT_STATE_DIR, else the user state folder (see PinConfig.state_folder).
    state_dir: str | None = None
    max_size: int | None = None  # bytes any body may have; None: download.DEFAULT_MAX_SIZE (4 GiB)
    # unpinned = "remember": days a known-issuers record may go unused before it is dropped (with
    # a warning), so a decommissioned or re-homed host does not lock a client out forever.
    remember_max_age: int = 400


@dataclass(frozen=True)
class UpdateSource:
    """``[update]``: where signed newer versions of this pins file are published (see
    :func:`pinclient.update_pins`)."""

    url: str  # https URL of the pins document; its signature is url + ".minisig"
    signing_keys: tuple[PublicKey, ...]  # minisign keys, any one of which must sign a new document
    interval: float  # seconds between checks made by fetch-update


@dataclass(frozen=True)
class PinConfig:
    """A loaded, validated pins.toml."""

    defaults: Defaults = field(default_factory=Defaults)
    pinsets: tuple[Pinset, ...] = ()
    blocked: tuple[BlockedCert, ...] = ()
    path: Path | None = None
    serial: int = 0  # the document's serial; a file without one is 0. Updates must raise it
    expires: dt.date | None = None  # the whole document expires at the start of this day (UTC)
    update: UpdateSource | None = None  # [update]: signed pins updates
    # Set by load_pins when a stored, signed update (higher serial) replaced the file at ``path``:
    # the URL it came from, and the serial of the file at ``path``. None: the file itself is active.
    updated_from: str | None = None
    shipped_serial: int | None = None

    def pinset_for(self, host: str) -> Pinset | None:
        """The most specific pinset covering a normalised ``host``; on a tie, the first in the file."""
        best: tuple[int, int, Pinset] | None = None
        for pinset in self.pinsets:
            score = pinset.match_specificity(host)
            if score is not None and (best is None or (score, -pinset.index) > best[:2]):
                best = (score, -pinset.index, pinset)
        return best[2] if best else None

    def state_folder(self) -> Path:
        """Where pinclient keeps what it learns: ``[defaults] state_dir``, else
        ``$PINCLIENT_STATE_DIR``, else the user's state folder (:func:`pinclient._paths.user_state_dir`)."""
        if self.defaults.state_dir is not None:
            return Path(self.defaults.state_dir)
        env = os.environ.get("PINCLIENT_STATE_DIR", "")
        if env:
            return Path(env).absolute()
        return user_state_dir()

    def trust_bundle(self) -> str:
        """The PEM bundle file to validate against (certifi's unless configured), or
        :data:`SYSTEM_TRUST` (``pinclient._tls.shared_context`` loads the system's)."""
        if self.defaults.ca_bundle == "certifi":
            import certifi

            return str(certifi.where())
        return self.defaults.ca_bundle


def revocation_settings(config: PinConfig, pinset: Pinset | None) -> tuple[RevocationMode, CRLUse]:
    """The ``revocation`` mode and ``crl`` use for a host: its pinset's, else ``[defaults]``."""
    defaults = config.defaults
    if pinset is None:
        return defaults.revocation, defaults.crl
    mode = pinset.revocation if pinset.revocation is not None else defaults.revocation
    crl = pinset.crl if pinset.crl is not None else defaults.crl
    return mode, crl


def override_revocation(config: PinConfig, mode: RevocationMode) -> PinConfig:
    """``config`` with ``mode`` for every host (``fetch-update --revocation MODE``): it becomes the
    ``[defaults]`` mode and the pinsets' own ``revocation`` keys are dropped. ``crl`` is kept."""
    pinsets = tuple(dataclasses.replace(p, revocation=None) for p in config.pinsets)
    defaults = dataclasses.replace(config.defaults, revocation=mode)
    return dataclasses.replace(config, defaults=defaults, pinsets=pinsets)


def override_unpinned(config: PinConfig, policy: UnpinnedPolicy) -> PinConfig:
    """``config`` with ``[defaults] unpinned`` set to ``policy`` (``--unpinned``, ``unpinned=``)."""
    return dataclasses.replace(config, defaults=dataclasses.replace(config.defaults, unpinned=policy))


# --------------------------------------------------------------------------- loading


def load_pins(path: str | Path) -> PinConfig:
    """Load and validate a pins.toml file.

    Raises:
        PinsFileError: the file is missing, unreadable, not TOML, or not a valid pins.toml v1.
    """
    p = Path(path)
    try:
        data = p.read_bytes()
    except (OSError, ValueError) as e:  # ValueError: a NUL in the path
        raise PinsFileError(f"cannot read pins file: {getattr(e, 'strerror', None) or e}",
                            path=str(p)) from None
    return _with_stored_update(parse_pins(data, path=p))


def _with_stored_update(shipped: PinConfig) -> PinConfig:
    """``shipped``, or the signed update stored for it in the state folder when that one's serial is
    higher (see :mod:`pinclient._pinstore`; it was verified when :func:`pinclient.update_pins`
    accepted it). The state folder stays the shipped file's. A stored document that no longer
    loads (a file it names is gone) is skipped with a warning: the shipped file is active."""
    if shipped.update is None or shipped.path is None:
        return shipped
    import logging

    from ._pinstore import read_stored, store_path  # deferred: only files with [update] read state

    log = logging.getLogger("pinclient")
    stored_at = store_path(shipped.state_folder(), shipped.update.url)
    stored = read_stored(stored_at)
    if stored is None or stored.document is None or stored.serial <= shipped.serial:
        return shipped
    try:
        updated = parse_pins(stored.document, path=stored_at, base_dir=shipped.path.resolve().parent)
    except PinsFileError as e:
        log.warning("the stored pins update %s no longer loads (%s); using %s (serial %d)",
                    stored_at, e.message, shipped.path, shipped.serial)
        return shipped
    if updated.serial <= shipped.serial:  # the document's own serial decides, not the record's
        return shipped
    defaults = dataclasses.replace(updated.defaults, state_dir=shipped.defaults.state_dir)
    log.info("pins: using the signed update %s (serial %d, from %s) instead of %s (serial %d)",
             stored_at, updated.serial, stored.origin, shipped.path, shipped.serial)
    return dataclasses.replace(updated, defaults=defaults, path=shipped.path,
                               updated_from=stored.origin or shipped.update.url,
                               shipped_serial=shipped.serial)


def parse_pins(data: bytes | str, *, path: Path | None = None, base_dir: Path | None = None) -> PinConfig:
    """Validate pins.toml content. Relative paths resolve against ``base_dir``, else the file's
    folder, else the current folder.

    Raises:
        PinsFileError: as :func:`load_pins`.
    """
    where = str(path) if path is not None else "<pins>"
    if isinstance(data, bytes):
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as e:
            raise PinsFileError(f"not UTF-8 text ({e.reason} at byte {e.start})", path=where) from None
    else:
        text = data
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        m = re.search(r"line (\d+)", str(e))
        line = int(m.group(1)) if m else None
        raise PinsFileError(f"TOML syntax error: {e}", path=where, line=line) from None
    except RecursionError:
        # tomllib recurses once per nesting level of arrays and inline tables (found by
        # tests/test_properties.py); no pins file nests more than three deep.
        raise PinsFileError("TOML syntax error: arrays or tables nested too deeply", path=where) from None
    if base_dir is None:
        base_dir = path.resolve().parent if path is not None else Path.cwd()
    return _Loader(where, base_dir).load(doc, path)


class _Loader:
    def __init__(self, where: str, base_dir: Path) -> None:
        self.where = where
        self.base_dir = base_dir

    def error(self, message: str, *, pinset: str | None = None, key: str | None = None) -> PinsFileError:
        return PinsFileError(message, path=self.where, pinset=pinset, key=key)

    def check_keys(self, table: Mapping[str, Any], allowed: set[str], required: set[str], *,
                   section: str, pinset: str | None = None) -> None:
        for key in table:
            if key not in allowed:
                import difflib

                close = difflib.get_close_matches(key, sorted(allowed), n=1)
                hint = f"did you mean {close[0]!r}? " if close else ""
                raise self.error(f"unknown key in {section} ({hint}allowed: {', '.join(sorted(allowed))})",
                                 pinset=pinset, key=key)
        for key in sorted(required):
            if key not in table:
                raise self.error(f"missing required key in {section}", pinset=pinset, key=key)

    def string(self, value: object, *, key: str, pinset: str | None = None, empty_ok: bool = False) -> str:
        if not isinstance(value, str):
            raise self.error(f"must be a string, not {_type_name(value)}", pinset=pinset, key=key)
        if not empty_ok and not value.strip():
            raise self.error("must not be empty", pinset=pinset, key=key)
        return value

    def choice(self, value: object, options: tuple[str, ...], *, key: str, pinset: str | None = None) -> str:
        text = self.string(value, key=key, pinset=pinset)
        if text not in options:
            raise self.error(f"must be one of {', '.join(map(repr, options))}, not {text!r}",
                             pinset=pinset, key=key)
        return text

    def table_list(self, value: object, *, key: str, pinset: str | None = None) -> list[Mapping[str, Any]]:
        if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
            raise self.error(f"must be an array of tables ([[{key}]]), not {_type_name(value)}",
                             pinset=pinset, key=key)
        return value

    # -- sections

    def load(self, doc: Mapping[str, Any], path: Path | None) -> PinConfig:
        self.check_keys(doc, {"version", "defaults", "pinset", "blocked"} | _UPDATE_TOP_KEYS,
                        {"version"}, section="the top level")
        version = doc["version"]
        if not isinstance(version, int) or isinstance(version, bool) or version != 1:
            raise self.error(f"unsupported version {version!r}; this pinclient reads version = 1",
                             key="version")
        defaults_doc = doc.get("defaults", {})
        if not isinstance(defaults_doc, dict):
            raise self.error(f"must be a table, not {_type_name(defaults_doc)}", key="defaults")
        defaults = self.defaults(defaults_doc)
        pinsets = tuple(self.pinset(i, t) for i, t in
                        enumerate(self.table_list(doc.get("pinset", []), key="pinset")))
        names = [p.name for p in pinsets]
        for name in names:
            if names.count(name) > 1:
                raise self.error("two pinsets have this name; names must be unique", pinset=name, key="name")
        blocked = tuple(self.blocked(i, t) for i, t in
                        enumerate(self.table_list(doc.get("blocked", []), key="blocked")))
        config = PinConfig(defaults=defaults, pinsets=pinsets, blocked=blocked, path=path)
        return dataclasses.replace(config, **self.update_keys(doc, config))

    def update_keys(self, doc: Mapping[str, Any], config: PinConfig) -> dict[str, Any]:
        """The top-level ``serial`` and ``expires`` and the ``[update]`` table, validated."""
        out: dict[str, Any] = {}
        if "serial" in doc:
            value = doc["serial"]
            if isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():
                raise self.error(f"must be a TOML integer without quotes: serial = {value.strip()}",
                                 key="serial")
            if not isinstance(value, int) or isinstance(value, bool) or not 0 < value < 2**63:
                raise self.error(f"must be a positive integer (serial = 1, 2, …; leave it out for 0), "
                                 f"not {value!r}", key="serial")
            out["serial"] = value
        if "expires" in doc:
            value = doc["expires"]
            if isinstance(value, dt.datetime) or not isinstance(value, dt.date):
                raise self.error(f"must be a TOML date such as 2027-06-30 (no quotes, no time), not "
                                 f"{_type_name(value)}", key="expires")
            out["expires"] = value
        if "update" in doc:
            table = doc["update"]
            if not isinstance(table, dict):
                raise self.error(f"must be a table ([update]), not {_type_name(table)}", key="update")
            self.check_keys(table, {"url", "signing_keys", "interval"}, {"url", "signing_keys"},
                            section="[update]")
            url = self.update_url(table["url"], config)
            keys = self.public_keys(table["signing_keys"], key="signing_keys", pinset=None,
                                    section="[update]")
            interval = self.interval(table.get("interval", "1d"))
            out["update"] = UpdateSource(url=url, signing_keys=keys, interval=interval)
        return out

    def update_url(self, value: object, config: PinConfig) -> str:
        """``[update] url``: https with a host that can be reached through these pins."""
        from urllib.parse import urlsplit

        text = self.string(value, key="url").strip()
        try:
            url = normalize_url(text)  # the one spelling the transport will ask for
        except UsageError as e:
            raise self.error(f"{e.message} The pins document is fetched through the pinned "
                             "transport, which speaks only HTTPS", key="url") from None
        host = normalize_host(urlsplit(url).hostname or "")
        if config.defaults.unpinned == "refuse" and config.pinset_for(host) is None:
            raise self.error(f"no pinset covers {host!r} and unpinned hosts are refused, so the update "
                             f"could never be fetched; add {host!r} to a pinset's hosts", key="url")
        return url

    def interval(self, value: object) -> float:
        """``[update] interval``: ``"30m"``, ``"12h"``, ``"1d"``, ``"1w"`` (also ``s``), at most a year."""
        if isinstance(value, int) and not isinstance(value, bool):
            raise self.error(f'write the interval with a unit: interval = "{value}s"', key="interval")
        text = self.string(value, key="interval").strip()
        m = re.fullmatch(r"([0-9]{1,9})\s*([smhdw])", text)
        if m is None:
            raise self.error(f'{text!r} is not an interval; write a whole number and one of s, m, h, '
                             'd, w, such as "12h" or "1d"', key="interval")
        seconds = int(m.group(1)) * {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}[m.group(2)]
        if not 0 < seconds <= 366 * 86400:
            raise self.error(f"{text!r}: must be more than 0 and at most a year", key="interval")
        return float(seconds)

    def defaults(self, table: Mapping[str, Any]) -> Defaults:
        self.check_keys(table, {"ca_bundle", "unpinned"} | _DEFAULTS_LIFECYCLE_KEYS
                        | _REVOCATION_KEYS | {"cache_dir", "max_size", "state_dir"}
                        | {"remember_max_age"}, set(),
                        section="[defaults]")
        ca_bundle = "certifi"
        if "ca_bundle" in table:
            value = self.string(table["ca_bundle"], key="ca_bundle")
            if value == SYSTEM_TRUST:
                refusal = system_trust_refusal(platform.system())
                if refusal is not None:
                    raise self.error(refusal, key="ca_bundle")
                ca_bundle = SYSTEM_TRUST
            elif value != "certifi":
                bundle = self.base_dir / value
                if not self.path_exists(bundle, key="ca_bundle", pinset=None, what="is_file"):
                    raise self.error(f"CA bundle {str(bundle)!r} is not a readable file "
                                     "(use \"certifi\", \"system\" or a path relative to this file)",
                                     key="ca_bundle")
                ca_bundle = str(bundle.resolve())
        unpinned = self.choice(table.get("unpinned", "refuse"), UNPINNED_POLICIES, key="unpinned")
        return Defaults(ca_bundle=ca_bundle, unpinned=_UNPINNED[unpinned],
                        **self.lifecycle(table, pinset=None), **self.revocation(table, pinset=None),
                        **self.max_size(table, pinset=None), **self.state_dir(table),
                        **self.remember_max_age(table))

    def remember_max_age(self, table: Mapping[str, Any]) -> dict[str, Any]:
        """``remember_max_age``: a positive whole number of days, as ``400`` or ``"400d"``."""
        if "remember_max_age" not in table:
            return {}
        value = table["remember_max_age"]
        days = value if isinstance(value, int) and not isinstance(value, bool) else None
        if isinstance(value, str) and 1 < len(value) <= 6 and value.endswith("d") \
                and value[:-1].isascii() and value[:-1].isdigit():
            days = int(value[:-1])
        if days is None or not 0 < days <= 36500:
            raise self.error(f"must be a whole number of days from 1 to 36500, written 400 or "
                             f"\"400d\", not {printable(repr(value)[:40])}", key="remember_max_age")
        return {"remember_max_age": days}

    def state_dir(self, table: Mapping[str, Any]) -> dict[str, Any]:
        """``state_dir`` ([defaults] only), validated; absent: left out."""
        if "state_dir" not in table:
            return {}
        return {"state_dir": self.folder(table["state_dir"], key="state_dir")}

    def pinset(self, index: int, table: Mapping[str, Any]) -> Pinset:
        label = table.get("name") if isinstance(table.get("name"), str) else f"#{index + 1}"
        self.check_keys(table, {"name", "hosts", "issuers", "max_size", "signing_keys",
                                "allow_legacy_signatures"} | _PINSET_LIFECYCLE_KEYS | _REVOCATION_KEYS,
                        {"name", "hosts", "issuers"}, section="[[pinset]]", pinset=label)
        name = self.string(table["name"], key="name", pinset=label)
        hosts_value = table["hosts"]
        if not isinstance(hosts_value, list) or not hosts_value:
            raise self.error("must be a non-empty array of host names", pinset=name, key="hosts")
        hosts = []
        for item in hosts_value:
            text = self.string(item, key="hosts", pinset=name)
            try:
                hosts.append(normalize_pattern(text))
            except ValueError as e:
                raise self.error(f"bad host pattern: {e}", pinset=name, key="hosts") from None
        issuers_value = table["issuers"]
        if not isinstance(issuers_value, list) or not issuers_value:
            raise self.error("must be a non-empty array of issuer pins "
                             "({ spki_sha256 = … }, { subject = … } or { cert = … })",
                             pinset=name, key="issuers")
        issuers = tuple(self.pin(item, pinset=name) for item in issuers_value)
        return Pinset(name=name, hosts=tuple(dict.fromkeys(hosts)), issuers=issuers, index=index,
                      **self.lifecycle(table, pinset=name), **self.revocation(table, pinset=name),
                      **self.max_size(table, pinset=name), **self.signing_keys(table, pinset=name))

    def pin(self, item: object, *, pinset: str) -> Pin:
        if not isinstance(item, dict):
            raise self.error(f"each entry must be an inline table, not {_type_name(item)}",
                             pinset=pinset, key="issuers")
        self.check_keys(item, {"spki_sha256", "subject", "cert", "label"}, set(),
                        section="an issuers entry", pinset=pinset)
        kinds = [k for k in ("spki_sha256", "subject", "cert") if k in item]
        if len(kinds) != 1:
            raise self.error("each issuers entry needs exactly one of spki_sha256, subject, cert "
                             f"(found {', '.join(kinds) or 'none'})", pinset=pinset, key="issuers")
        kind = kinds[0]
        label = self.string(item.get("label", ""), key="label", pinset=pinset, empty_ok=True)
        if kind == "spki_sha256":
            digest = self.spki(item[kind], pinset=pinset)
            return Pin(kind="spki", spki_sha256=digest, label=label, source="spki_sha256")
        if kind == "subject":
            text = self.string(item[kind], key="subject", pinset=pinset)
            return Pin(kind="subject", subject=self.dn(text, key="subject", pinset=pinset),
                       subject_text=text, label=label, source="subject")
        rel = self.string(item[kind], key="cert", pinset=pinset)
        cert = self.read_cert(rel, pinset=pinset)
        if not label:
            cns = cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
            label = printable(str(cns[0].value)) if cns else name_text(cert.subject)
        return Pin(kind="spki", spki_sha256=spki_sha256(cert), label=label, source=f"cert={rel}")

    def blocked(self, index: int, table: Mapping[str, Any]) -> BlockedCert:
        where = f"[[blocked]] #{index + 1}"
        self.check_keys(table, {"issuer", "serial", "spki_sha256", "reason"}, set(), section=where)
        reason = self.string(table.get("reason", ""), key="reason", empty_ok=True)
        has_spki = "spki_sha256" in table
        has_serial = "issuer" in table or "serial" in table
        if has_spki == has_serial:
            raise self.error(f"{where} needs either spki_sha256, or issuer and serial (not both)")
        if has_spki:
            return BlockedCert(spki_sha256=self.spki(table["spki_sha256"], pinset=None),
                               reason=reason, index=index)
        if "issuer" not in table or "serial" not in table:
            raise self.error(f"{where} needs both issuer and serial",
                             key="serial" if "issuer" in table else "issuer")
        issuer_text = self.string(table["issuer"], key="issuer")
        return BlockedCert(issuer=self.dn(issuer_text, key="issuer", pinset=None),
                           issuer_text=issuer_text, serial=self.serial(table["serial"]),
                           reason=reason, index=index)

    def lifecycle(self, table: Mapping[str, Any], *, pinset: str | None) -> dict[str, Any]:
        """``mode``, ``report_uri``, ``report_file`` (defaults and pinsets) and ``expires``,
        ``on_expiry`` (pinsets only), validated; absent keys are left out so the defaults apply."""
        out: dict[str, Any] = {}
        if "mode" in table:
            out["mode"] = self.choice(table["mode"], ("enforce", "report-only"), key="mode", pinset=pinset)
        if "report_uri" in table:
            out["report_uri"] = self.report_uri(table["report_uri"], pinset=pinset)
        if "report_file" in table:
            rel = self.string(table["report_file"], key="report_file", pinset=pinset)
            if "\0" in rel:  # Path.resolve() raises ValueError on it (found by test_properties.py)
                raise self.error("must not contain a NUL character", pinset=pinset, key="report_file")
            out["report_file"] = str((self.base_dir / rel).resolve())
        if "expires" in table:
            value = table["expires"]
            if isinstance(value, dt.datetime) or not isinstance(value, dt.date):
                raise self.error(f"must be a TOML date such as 2027-06-30 (no quotes, no time), not "
                                 f"{_type_name(value)}", pinset=pinset, key="expires")
            out["expires"] = value
        if "on_expiry" in table:
            if "expires" not in table:
                raise self.error("on_expiry has no effect without expires; add expires = YYYY-MM-DD",
                                 pinset=pinset, key="on_expiry")
            out["on_expiry"] = self.choice(table["on_expiry"], ("enforce", "report-only"),
                                           key="on_expiry", pinset=pinset)
        return out

    def max_size(self, table: Mapping[str, Any], *, pinset: str | None) -> dict[str, Any]:
        """``max_size``: a positive byte count, as an integer or a string with a unit ("512 MiB")."""
        if "max_size" not in table:
            return {}
        value = table["max_size"]
        if not isinstance(value, (int, str)) or isinstance(value, bool):
            raise self.error(f"must be a number of bytes or a string such as \"512 MiB\", not "
                             f"{_type_name(value)}", pinset=pinset, key="max_size")
        try:
            size = parse_size(value)
        except ValueError as e:
            raise self.error(str(e), pinset=pinset, key="max_size") from None
        if size <= 0:
            raise self.error("must be more than 0 bytes", pinset=pinset, key="max_size")
        return {"max_size": size}

    def signing_keys(self, table: Mapping[str, Any], *, pinset: str) -> dict[str, Any]:
        """``signing_keys``: a non-empty array of minisign public keys (``"RW…"``). An empty array
        is refused rather than read as "no signature needed": it is more likely a key left out."""
        if "signing_keys" not in table:
            if "allow_legacy_signatures" in table:
                raise self.error("allow_legacy_signatures has no effect without signing_keys; add "
                                 'signing_keys = ["RW…"] or remove it', pinset=pinset,
                                 key="allow_legacy_signatures")
            return {}
        out: dict[str, Any] = {"signing_keys": self.public_keys(table["signing_keys"], key="signing_keys",
                                                                pinset=pinset, section="a pinset")}
        if "allow_legacy_signatures" in table:
            out["allow_legacy_signatures"] = self.allow_legacy(table["allow_legacy_signatures"],
                                                               pinset=pinset)
        return out

    def public_keys(self, value: object, *, key: str, pinset: str | None,
                    section: str) -> tuple[PublicKey, ...]:
        """A non-empty array of minisign public keys (``"RW…"``), deduplicated."""
        if not isinstance(value, list) or not value:
            hint = "leave the key out for unsigned updates" if pinset else "at least one is needed"
            raise self.error(f'must be a non-empty array of minisign public keys ("RW…") in {section}; '
                             f"{hint}", pinset=pinset, key=key)
        from .minisign import PublicKey  # deferred: only files with signing keys pay for it

        keys: dict[bytes, PublicKey] = {}
        for i, item in enumerate(value):
            text = self.string(item, key=key, pinset=pinset)
            try:
                public = PublicKey.from_string(text)
            except SignatureError as e:
                raise self.error(f"entry {i + 1} ({printable(text.strip()[:60])!r}) is not a minisign "
                                 f"public key: {e.message}", pinset=pinset, key=key) from None
            keys.setdefault(public.key_id + public.key, public)
        return tuple(keys.values())

    def allow_legacy(self, value: object, *, pinset: str) -> bool:
        """``allow_legacy_signatures``: a TOML boolean (``"true"`` in quotes is refused, as it
        would read as true in some tools and false in others)."""
        if not isinstance(value, bool):
            raise self.error(f"must be true or false (a TOML boolean, no quotes), not {_type_name(value)}",
                             pinset=pinset, key="allow_legacy_signatures")
        return value

    def revocation(self, table: Mapping[str, Any], *, pinset: str | None) -> dict[str, Any]:
        """``revocation`` and ``crl`` (defaults and pinsets) and ``cache_dir`` (defaults only; the
        caller's check_keys refuses it in a pinset), validated; absent keys are left out."""
        out: dict[str, Any] = {}
        if "revocation" in table:
            out["revocation"] = self.choice(table["revocation"], ("off", "soft-fail", "hard-fail"),
                                            key="revocation", pinset=pinset)
        if "crl" in table:
            out["crl"] = self.choice(table["crl"], ("fallback", "prefer"), key="crl", pinset=pinset)
        if "cache_dir" in table:
            out["cache_dir"] = self.folder(table["cache_dir"], key="cache_dir", pinset=pinset)
        return out

    def folder(self, value: object, *, key: str, pinset: str | None = None) -> str:
        """A folder path relative to this file (it may not exist yet), made absolute."""
        rel = self.string(value, key=key, pinset=pinset)
        if "\0" in rel:
            raise self.error("must not contain a NUL character", pinset=pinset, key=key)
        folder = self.base_dir / rel
        if self.path_exists(folder, key=key, pinset=pinset) and not folder.is_dir():
            raise self.error(f"{str(folder)!r} exists and is not a folder", pinset=pinset, key=key)
        return str(folder.resolve())

    def path_exists(self, path: Path, *, key: str, pinset: str | None, what: str = "exists") -> bool:
        """``path.exists()`` (or ``is_file()``), where a name too long for the file system is a
        pins.toml error naming the key, not ``OSError: File name too long`` (issue 13)."""
        try:
            return bool(getattr(path, what)())
        except OSError as e:
            if e.errno != errno.ENAMETOOLONG:
                raise self.error(f"cannot use {str(path)[:80]!r}…: {e.strerror or e}", key=key,
                                 pinset=pinset) from None
            longest = max(len(os.fsencode(part)) for part in path.parts)
            raise self.error(f"the path is too long for the file system ({len(os.fsencode(str(path)))} "
                             f"bytes, its longest name {longest}; names are limited to 255 bytes on most "
                             "file systems). Use a shorter path", key=key, pinset=pinset) from None

    def report_uri(self, value: object, *, pinset: str | None) -> str:
        from urllib.parse import urlsplit

        text = self.string(value, key="report_uri", pinset=pinset).strip()
        try:
            parts = urlsplit(text)
            _ = parts.port  # raises ValueError for a bad port
        except ValueError as e:
            raise self.error(f"{text!r} is not a URL: {e}", pinset=pinset, key="report_uri") from None
        if parts.scheme.lower() != "https" or not parts.hostname:
            raise self.error(f"{text!r} must be an https:// URL with a host: reports go through the "
                             "pinned transport, which speaks only HTTPS", pinset=pinset, key="report_uri")
        return text

    # -- values

    def spki(self, value: object, *, pinset: str | None) -> bytes:
        text = self.string(value, key="spki_sha256", pinset=pinset)
        body = text.removeprefix("sha256/")
        try:
            digest = base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError):
            raise self.error(f"{text!r} is not base64", pinset=pinset, key="spki_sha256") from None
        if len(digest) != 32:
            raise self.error(f"{text!r} decodes to {len(digest)} bytes; a SHA-256 is 32 bytes "
                             "(44 base64 characters ending in '=')", pinset=pinset, key="spki_sha256")
        return digest

    def dn(self, text: str, *, key: str, pinset: str | None) -> NameKey:
        """A DN in any form :func:`pinclient._x509.parse_dn` reads, as the policy compares it."""
        try:
            return canonical_name(parse_dn(text))
        except ValueError as e:
            raise self.error(f"bad distinguished name: {e}", pinset=pinset, key=key) from None

    def serial(self, value: object) -> int:
        """A serial in one unambiguous spelling (:func:`pinclient._x509.parse_serial`)."""
        if isinstance(value, int) and not isinstance(value, bool):
            raise self.error('write the serial as a hex string as OpenSSL prints it ("92:39:d5:…"), '
                             f'or, if {value} is the decimal serial, as "dec:{value}"', key="serial")
        text = self.string(value, key="serial")
        try:
            return parse_serial(text)
        except ValueError as e:
            raise self.error(str(e), key="serial") from None

    def read_cert(self, rel: str, *, pinset: str) -> x509.Certificate:
        cert_path = self.base_dir / rel
        try:
            # A regular file of sane size only: a FIFO or /dev/zero must not hang the loader.
            if not cert_path.is_file():
                raise OSError(f"not a regular file: {str(cert_path)!r}")
            with cert_path.open("rb") as fh:
                data = fh.read(_MAX_CERT_FILE + 1)
            if len(data) > _MAX_CERT_FILE:
                raise OSError(f"larger than {_MAX_CERT_FILE // 1024} KiB; not a certificate")
        except (OSError, ValueError) as e:  # ValueError: a NUL in the path
            raise self.error(f"cannot read {str(cert_path)!r}: {getattr(e, 'strerror', None) or e}",
                             pinset=pinset, key="cert") from None
        try:
            return load_certificate(data)
        except ValueError as e:
            raise self.error(f"{str(cert_path)!r} is not a PEM or DER certificate: {e}",
                             pinset=pinset, key="cert") from None


UNPINNED_POLICIES = ("refuse", "allow", "remember")
_UNPINNED: dict[str, UnpinnedPolicy] = {"refuse": "refuse", "allow": "allow", "remember": "remember"}

# Lifecycle keys (rollout and rotation): report-only mode, violation reports, pinset expiry.
_DEFAULTS_LIFECYCLE_KEYS = {"mode", "report_uri", "report_file"}
_PINSET_LIFECYCLE_KEYS = _DEFAULTS_LIFECYCLE_KEYS | {"expires", "on_expiry"}
# Signed pins updates: the document's serial and expiry, and where updates come from.
_UPDATE_TOP_KEYS = {"serial", "expires", "update"}
# Revocation checking, in [defaults] and per pinset ([defaults] also takes cache_dir).
_REVOCATION_KEYS = {"revocation", "crl"}


_MAX_CERT_FILE = 1024 * 1024


def _type_name(value: object) -> str:
    names: dict[type, str] = {str: "a string", int: "an integer", float: "a float", bool: "a boolean",
                              list: "an array", dict: "a table"}
    return names.get(type(value), type(value).__name__)

