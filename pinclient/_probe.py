"""``pinclient.check``: handshake with a host, download nothing, and say what the pins make of it.

For add-on distributors who run a list of update hosts through CI: each URL's host gets one TLS
handshake with ordinary validation against the configured trust bundle; its verified chain goes
through the same pure policy as every fetch. Nothing is requested, and no violation report is sent
(a check is a diagnosis, not an update).
"""

from __future__ import annotations

import datetime as dt
import socket
import ssl
import time
from dataclasses import dataclass
from typing import Literal

from ._deadline import deadline, expired, watch
from ._names import parse_target
from ._tls import missing_anchor_hint, shared_context, tls_info
from .config import PinConfig
from .errors import ChainEntry, NetworkError, TLSError, UsageError
from .policy import evaluate, expiry_warning, format_refusal, format_report_only

__all__ = ["CheckResult", "Outcome", "check", "handshake", "parse_target"]

Outcome = Literal["ok", "violation", "report-only", "tls-error"]
_EXIT = {"ok": 0, "report-only": 0, "violation": 3, "tls-error": 6}


@dataclass(frozen=True)
class CheckResult:
    """What one host's handshake gave.

    ``verdict`` is ``"ok"`` (pinned, or unpinned and allowed), ``"violation"`` (the pins refuse the
    verified chain), ``"report-only"`` (they would, but report-only mode applies) or ``"tls-error"``
    (ordinary TLS validation or the network failed; ``chain`` is then empty). ``reason`` is the
    policy's reason (``"pinned"``, ``"unexpected-issuer"``, ``"blocked"``, …), ``message`` the
    refusal or error text, ``warning`` the expiry warning of an expired pinset.
    """

    url: str
    host: str
    port: int
    verdict: Outcome
    pinset: str | None = None
    reason: str | None = None
    chain: tuple[ChainEntry, ...] = ()
    message: str = ""
    warning: str | None = None

    @property
    def exit_code(self) -> int:
        """0 for ok and report-only, 3 for a violation, 6 for a TLS or network failure."""
        return _EXIT[self.verdict]

    def to_json(self) -> dict[str, object]:
        return {
            "url": self.url,
            "host": self.host,
            "port": self.port,
            "verdict": self.verdict,
            "pinset": self.pinset,
            "reason": self.reason,
            "chain": [{"subject": c.subject, "spki_sha256": c.spki_sha256, "issuer": c.issuer,
                       "not_after": c.not_after} for c in self.chain],
            "message": self.message,
            "warning": self.warning,
        }


def handshake(host: str, port: int, bundle: str, *, timeout: float) -> list[bytes]:
    """One TLS handshake with certificate and host-name verification against ``bundle``; returns
    the verified chain (DER, leaf first) and sends no application data.

    Raises:
        TLSError: validation failed (untrusted, expired, wrong-host certificate), TLS broke, or
            the context did not verify the certificate and host name (``tls_info().verified``).
        NetworkError: the host cannot be resolved or reached, or timed out.
    """
    where = f"{host}:{port}"
    started = time.monotonic()
    try:
        ctx = shared_context(bundle)
    except (OSError, ssl.SSLError) as e:
        raise UsageError(f"cannot load the trust bundle {bundle!r}: {e}") from None
    try:
        raw = socket.create_connection((host, port), timeout=timeout)
    except TimeoutError:
        raise NetworkError(f"connecting to {where} timed out") from None
    except OSError as e:
        raise NetworkError(f"cannot connect to {where}: {e.strerror or e}") from None
    # ``timeout`` bounds the whole handshake, not each read: a server dripping its handshake a
    # byte at a time inside the socket timeout is cut off by the watchdog (issue 14).
    with deadline(started + timeout), raw:
        try:
            with ctx.wrap_socket(raw, server_hostname=host, do_handshake_on_connect=False) as tls:
                watch(tls)
                tls.do_handshake()
                if expired():
                    raise TimeoutError
                info = tls_info(tls)
        except (ssl.SSLError, OSError) as e:
            raise _handshake_error(e, where, timeout) from None
    # As PinGuard.check does: with certificate or host-name verification off, the "verified" chain
    # is what OpenSSL attempted with the certificates the server chose (cpython PR 109113), so
    # neither a verdict nor a pin may be taken from it.
    if not info.verified:
        raise TLSError(f"the TLS connection to {where} was not made with certificate and host-name "
                       "verification on, so its chain cannot be trusted; refusing.")
    return info.chain


def _handshake_error(e: BaseException, where: str, timeout: float) -> NetworkError:
    if expired():
        return NetworkError(f"the TLS handshake with {where} did not finish within {timeout:g} s")
    if isinstance(e, ssl.SSLCertVerificationError):
        detail = str(e.verify_message or e)
        return TLSError(f"TLS validation failed for {where}: {detail}.{missing_anchor_hint(detail)}")
    if isinstance(e, ssl.SSLError):
        return TLSError(f"TLS handshake with {where} failed: {e}")
    if isinstance(e, TimeoutError):
        return NetworkError(f"the TLS handshake with {where} timed out")
    strerror = getattr(e, "strerror", None)
    return NetworkError(f"the TLS handshake with {where} failed: {strerror or e}")


def check(url: str, config: PinConfig, *, timeout: float = 10.0,
          now: dt.datetime | None = None) -> CheckResult:
    """Handshake with ``url``'s host and judge its verified chain with ``config``.

    TLS and network failures are results, not exceptions, so a list of hosts can be checked and
    summarised.

    Raises:
        UsageError: ``url`` is not an https:// URL, or the trust bundle cannot be loaded.
    """
    host, port = parse_target(url)
    covering = config.pinset_for(host)
    try:
        chain = handshake(host, port, config.trust_bundle(), timeout=timeout)
    except NetworkError as e:
        return CheckResult(url, host, port, "tls-error", pinset=covering.name if covering else None,
                           message=e.message)
    verdict = evaluate(config, host, chain, now=now or dt.datetime.now(dt.timezone.utc))
    outcome: Outcome
    if verdict.report_only:
        outcome, message = "report-only", format_report_only(verdict, port)
    elif verdict.violated:
        outcome, message = "violation", format_refusal(verdict, port)
    else:
        outcome, message = "ok", ""
    return CheckResult(url, host, port, outcome, pinset=verdict.pinset.name if verdict.pinset else None,
                       reason=verdict.reason, chain=tuple(c.entry() for c in verdict.chain),
                       message=message, warning=expiry_warning(verdict))
