"""Pin violation reports, modelled on RFC 7469 §3 (HPKP's ``report-uri``) and TrustKit's reporter.

A report is built (purely) from the verdict, then delivered to the pinset's ``report_uri`` (a JSON
POST through the pinned transport) and/or appended to its ``report_file`` (one JSON object a line).
Delivery can never block or fail an update: the POST has a short total timeout, no retries and no
redirects, and every error is logged and swallowed.

Duplicates are rate-limited, as TrustKit does: at most one report per host, port and validated
chain per 24 hours, across processes. The record of what was sent lives in the user's cache folder
(``$XDG_CACHE_HOME/pinclient/reports-sent.json``, else ``~/.cache/…``; ``~/Library/Caches/pinclient``
on macOS; ``%LOCALAPPDATA%\\pinclient\\Cache`` on Windows), so an updater that runs once a minute
still sends one report a day. A report is recorded *before* it is sent: a collector that hangs costs
at most one timeout a day, not one per update. If the record cannot be read or written the limit
holds for the process only, and a warning says so.

A signed pins update that failed before ``fetch-update`` is reported the same way, as a report of
its own kind (:func:`build_update_failure_report`, ``"report-type": "pins-update-failure"``), to
the destinations of the pinset covering the update URL's host, at most one per URL and kind of
failure a day; :mod:`pinclient._pinsupdate` keeps that rate-limit record in the state folder.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import logging
import os
import ssl
import tempfile
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ._names import host_matches, normalize_host, pattern_specificity, printable
from ._paths import replace_file, user_cache_dir
from ._version import USER_AGENT, __version__
from .config import PinConfig
from .errors import PinclientError
from .policy import Verdict

__all__ = [
    "DEFAULT_REPORT_TIMEOUT",
    "RATE_LIMIT_WINDOW",
    "RateLimiter",
    "Reporter",
    "build_report",
    "build_update_failure_report",
    "default_state_path",
    "has_report_destination",
    "host_destinations",
    "report_destinations",
    "report_key",
    "update_failure_key",
]

log = logging.getLogger("pinclient")

#: Seconds the whole report POST may take (connect, TLS, send, response) before it is abandoned.
DEFAULT_REPORT_TIMEOUT = 2.0
#: One report per host, port and chain within this window (TrustKit: one a day).
RATE_LIMIT_WINDOW = dt.timedelta(days=1)
#: The collector's answer is read (and ignored) up to this much.
MAX_RESPONSE = 64 * 1024
#: ``post(uri, body, headers, timeout) -> HTTP status``: one POST over the pinned transport.
Post = Callable[[str, bytes, dict[str, str], float], int]


def default_state_path() -> Path:
    """Where the rate limiter remembers the reports it sent (see the module docstring)."""
    return user_cache_dir() / "reports-sent.json"


# --------------------------------------------------------------------------- building (pure)


def report_destinations(config: PinConfig, verdict: Verdict) -> tuple[str | None, str | None]:
    """``(report_uri, report_file)`` for a verdict: the pinset's own, else those in [defaults]."""
    pinset = verdict.pinset
    uri = (pinset.report_uri if pinset else None) or config.defaults.report_uri
    path = (pinset.report_file if pinset else None) or config.defaults.report_file
    return uri, path


def has_report_destination(config: PinConfig) -> bool:
    """Whether any report_uri or report_file is configured anywhere in ``config``."""
    d = config.defaults
    return bool(d.report_uri or d.report_file
                or any(p.report_uri or p.report_file for p in config.pinsets))


def report_key(verdict: Verdict, port: int) -> str:
    """The rate-limit key: host, port and the validated chain."""
    h = hashlib.sha256(f"{verdict.host}\0{port}".encode())
    for cert in verdict.chain:
        h.update(b"\0" + cert.der)
    return h.hexdigest()


def _pem(der: bytes) -> str:
    # No parse: a serial-0 root (Go Daddy G2) must not warn from cryptography here.
    return ssl.DER_cert_to_PEM_cert(der)


def _rfc3339(when: dt.datetime) -> str:
    utc = when.replace(tzinfo=dt.timezone.utc) if when.tzinfo is None else when.astimezone(dt.timezone.utc)
    return utc.replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")


def _noted(verdict: Verdict) -> tuple[str, bool]:
    # RFC 7469's noted-hostname / include-subdomains: the pattern that matched, as a name plus a
    # flag (pinclient's "*.example.com" covers exactly one label below example.com).
    if verdict.pinset is None:
        return verdict.host, False
    patterns = [p for p in verdict.pinset.hosts if host_matches(p, verdict.host)]
    if not patterns:
        return verdict.host, False
    best = max(patterns, key=pattern_specificity)
    return (best[2:], True) if best.startswith("*.") else (best, False)


def build_report(verdict: Verdict, port: int, *, now: dt.datetime,
                 served_chain: Sequence[bytes]) -> dict[str, Any]:
    """The JSON report for a violation (RFC 7469 §3 field names, plus ``pinset``, ``mode``,
    ``reason`` and ``pinclient-version``). Chains are PEM strings, leaf first, wrapped as sent
    (nothing is parsed, so a serial-0 root or an unparsable served certificate still reports).
    """
    noted, subdomains = _noted(verdict)
    pinset = verdict.pinset
    expires = (_rfc3339(dt.datetime.combine(pinset.expires, dt.time(), dt.timezone.utc))
               if pinset and pinset.expires else None)
    known = []
    for pin in pinset.issuers if pinset else ():
        if pin.kind == "spki":
            assert pin.spki_sha256 is not None
            known.append(f'pin-sha256="{base64.b64encode(pin.spki_sha256).decode()}"')
        else:
            known.append(f"subject={json.dumps(pin.subject_text)}")
    if verdict.reason == "issuer-changed":  # unpinned = "remember": the keys recorded for the host
        known = [f'pin-sha256="{k.split(":", 1)[0].removeprefix("sha256/")}"' for k in verdict.known]
    served = [_pem(der) for der in served_chain]
    return {
        "date-time": _rfc3339(now),
        "hostname": verdict.host,
        "port": port,
        "noted-hostname": noted,
        "include-subdomains": subdomains,
        "pinset": pinset.name if pinset else None,
        "mode": verdict.mode,
        "reason": verdict.reason,
        "effective-expiration-date": expires,
        "served-certificate-chain": served,
        "validated-certificate-chain": [_pem(c.der) for c in verdict.chain],
        "known-pins": known,
        "pinclient-version": __version__,
    }


def host_destinations(config: PinConfig, host: str) -> tuple[str | None, str | None]:
    """``(report_uri, report_file)`` for a report about ``host`` that is no verdict (a failed pins
    update): the pinset covering it, else those in [defaults]."""
    pinset = config.pinset_for(normalize_host(host)) if host else None
    uri = (pinset.report_uri if pinset else None) or config.defaults.report_uri
    path = (pinset.report_file if pinset else None) or config.defaults.report_file
    return uri, path


def update_failure_key(url: str, error: PinclientError) -> str:
    """The rate-limit key of a failed pins update: the URL and the kind of failure."""
    kind = f"{type(error).__name__}\0{getattr(error, 'reason', '')}"
    return hashlib.sha256(f"pins-update\0{url}\0{kind}".encode()).hexdigest()


def build_update_failure_report(url: str, error: PinclientError, *, serial: int,
                                now: dt.datetime) -> dict[str, Any]:
    """The JSON report for a signed pins update that failed (docs/pins-toml.md, "Reports"):
    ``"report-type": "pins-update-failure"`` tells it from a violation report, which has no
    ``report-type``. ``message`` may quote the server; JSON escapes it (ASCII only)."""
    parts = urlsplit(url)
    return {
        "report-type": "pins-update-failure",
        "date-time": _rfc3339(now),
        "hostname": parts.hostname,
        "port": parts.port or 443,
        "update-url": url,
        "active-serial": serial,
        "error": type(error).__name__,
        "reason": getattr(error, "reason", None),
        "exit-code": error.exit_code,
        "message": error.message,
        "pinclient-version": __version__,
    }


# --------------------------------------------------------------------------- rate limit


class RateLimiter:
    """Remembers which reports were sent, in a small JSON file shared by every process of the user.

    Thread-safe. Processes racing on the file can at worst send one duplicate.
    """

    def __init__(self, path: Path | None, window: dt.timedelta = RATE_LIMIT_WINDOW) -> None:
        self.path = path
        self.window = window
        self._memory: dict[str, str] = {}
        self._lock = threading.Lock()

    def should_send(self, key: str, now: dt.datetime) -> bool:
        """True (and record ``now``) unless ``key`` was recorded within the window."""
        if now.tzinfo is None:
            now = now.replace(tzinfo=dt.timezone.utc)
        with self._lock:
            sent = {**self._read(), **self._memory}
            cutoff = now - self.window
            sent = {k: v for k, v in sent.items() if _parse_time(v) > cutoff}
            if key in sent:
                return False
            sent[key] = now.isoformat()
            self._memory = sent
            self._write(sent)
            return True

    def _read(self) -> dict[str, str]:
        if self.path is None:
            return {}
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as e:
            log.warning("cannot read the report rate-limit record %s (%s); starting afresh", self.path, e)
            return {}
        sent = data.get("sent") if isinstance(data, dict) else None
        if not isinstance(sent, dict):
            return {}
        return {str(k): str(v) for k, v in sent.items()}

    def _write(self, sent: dict[str, str]) -> None:
        if self.path is None:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".reports-sent.", dir=self.path.parent)
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as fh:
                    json.dump({"version": 1, "sent": sent}, fh)
                replace_file(tmp, self.path)
            finally:
                if os.path.exists(tmp):
                    os.unlink(tmp)
        except OSError as e:
            log.warning("cannot write the report rate-limit record %s (%s); duplicates are limited "
                        "for this process only", self.path, e)


def _parse_time(text: str) -> dt.datetime:
    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError:
        return dt.datetime.min.replace(tzinfo=dt.timezone.utc)
    return when if when.tzinfo else when.replace(tzinfo=dt.timezone.utc)


# --------------------------------------------------------------------------- delivery


class Reporter:
    """Builds, rate-limits and delivers violation reports for one configuration.

    ``post(uri, body, headers, timeout) -> status`` sends one report over HTTPS; the transport whose
    violations are reported supplies it (a POST through the same pins and trust bundle, with
    reporting off so that a violation by the collector cannot recurse). Without ``post`` reports
    only go to ``report_file``. ``state_path`` defaults to :func:`default_state_path`.
    """

    def __init__(self, config: PinConfig, *, post: Post | None = None,
                 timeout: float = DEFAULT_REPORT_TIMEOUT, state_path: Path | None = None) -> None:
        self.config = config
        self.post = post
        self.timeout = timeout
        self.limiter = RateLimiter(state_path or default_state_path())
        self.sent = 0  # reports delivered (a POST answered 2xx, or a line appended)

    def submit(self, verdict: Verdict, port: int, *, served_chain: Sequence[bytes],
               now: dt.datetime) -> None:
        """Report ``verdict`` (a violation) to its destinations. Never raises; failures are logged."""
        try:
            uri, path = report_destinations(self.config, verdict)
            if not uri and not path:
                return
            if not self.limiter.should_send(report_key(verdict, port), now):
                log.info("violation report for %s:%s not sent: the same chain was reported within "
                         "the last day", verdict.host, port)
                return
            report = build_report(verdict, port, now=now, served_chain=served_chain)
            if path:
                self._append(path, report)
            if uri:
                self._post(uri, report)
        except Exception as e:  # a report must never fail the update
            log.warning("pin violation report for %s failed: %s", verdict.host, e)

    def submit_update_failure(self, url: str, error: PinclientError, *, serial: int,
                              now: dt.datetime) -> None:
        """Report a failed signed pins update of ``url`` (:func:`build_update_failure_report`) to
        the destinations of the pinset covering its host, else [defaults]; rate-limited like
        violations (one per URL and kind of failure a day). Never raises; failures are logged."""
        what = "pins update failure report"
        try:
            uri, path = host_destinations(self.config, urlsplit(url).hostname or "")
            if not uri and not path:
                return
            if not self.limiter.should_send(update_failure_key(url, error), now):
                log.info("%s for %s not sent: the same failure was reported within the last day",
                         what, printable(url))
                return
            report = build_update_failure_report(url, error, serial=serial, now=now)
            if path:
                self._append(path, report, what)
            if uri:
                self._post(uri, report, what)
        except Exception as e:  # a report must never fail the update
            log.warning("%s for %s failed: %s", what, printable(url), printable(str(e)))

    def _append(self, path: str, report: dict[str, Any], what: str = "pin violation report") -> None:
        line = json.dumps(report, separators=(",", ":")) + "\n"
        try:
            with open(path, "a", encoding="utf-8") as fh:
                fh.write(line)
        except OSError as e:
            log.warning("cannot append the %s to %s: %s", what, path, e.strerror or e)
            return
        self.sent += 1

    def _post(self, uri: str, report: dict[str, Any], what: str = "pin violation report") -> None:
        if self.post is None:
            log.warning("%s for %s not sent: no transport to send it with", what, uri)
            return
        headers = {"Content-Type": "application/json", "User-Agent": f"{USER_AGENT} ({what})"}
        try:
            status = self.post(uri, json.dumps(report).encode(), headers, self.timeout)
        except Exception as e:
            log.warning("cannot send the %s to %s: %s", what, uri, e)
            return
        if 200 <= status < 300:
            self.sent += 1
            log.info("%s sent to %s", what, uri)
        else:
            log.warning("the report collector %s answered HTTP %s", uri, status)
