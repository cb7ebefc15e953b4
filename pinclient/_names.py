"""Host names and URLs: normalisation and pattern matching, shared by the loader, the policy, the
downloads and the tools.

OkHttp once skipped pins for upper-case hosts and for hosts with a trailing dot; Chromium lower-cases
and strips the dot before matching. Every name pinclient compares goes through :func:`normalize_host`
first, so ``Updates.Example.COM.`` and ``updates.example.com`` are one host, and a Unicode name is
compared as its IDNA 2008 A-label, the form urllib3 connects to.
"""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import urlsplit, urlunsplit

from .errors import UsageError

__all__ = [
    "host_matches",
    "normalize_host",
    "normalize_pattern",
    "normalize_url",
    "parse_target",
    "pattern_specificity",
    "printable",
]


def normalize_host(host: str) -> str:
    """Lower-case, strip one trailing dot and IPv6 brackets, IDNA-2008-encode non-ASCII labels.

    Raises:
        ValueError: the name cannot be a host name (empty label, IDNA failure).
    """
    name = host.strip()
    if name.startswith("[") and name.endswith("]"):
        name = name[1:-1]
    try:
        return str(ipaddress.ip_address(name))
    except ValueError:
        pass
    if name.endswith("."):
        name = name[:-1]
    if not name:
        raise ValueError("empty host name")
    labels = name.split(".")
    out = []
    for label in labels:
        if not label:
            raise ValueError(f"empty label in host name {host!r}")
        out.append(label.lower() if label.isascii() else _a_label(label, host))
    return ".".join(out)


def _a_label(label: str, host: str) -> str:
    # IDNA 2008, encoded exactly as urllib3 encodes the name it connects to, sends as SNI and checks
    # the certificate against. Python's own "idna" codec is IDNA 2003, which maps ß to "ss" and final
    # sigma to sigma: a pinset for "straße.example" would then cover strasse.example, while the
    # connection goes to xn--strae-oqa.example and finds no pinset (found by test_properties.py).
    try:
        import idna
    except ImportError:
        raise ValueError(f"host name {host!r} is not ASCII; non-ASCII names need the 'idna' package "
                         "(urllib3 needs it too), or write the xn-- form") from None
    try:
        return idna.encode(label.lower(), strict=True, std3_rules=True).decode("ascii")
    except UnicodeError as e:  # idna.IDNAError is a UnicodeError
        raise ValueError(f"host name {host!r} is not valid IDNA 2008: {e}") from None


def normalize_pattern(pattern: str) -> str:
    """Normalise a pins.toml host pattern: an exact name, or ``*.`` followed by a name.

    A pattern must be able to match a host urllib3 connects to: a host name of letters, digits,
    hyphens (and underscores) in labels of at most 63 characters, an IDNA 2008 name, or an IP
    address. A URL, a port, a path or spaces are refused with a "did you mean", never loaded as a
    pattern that matches nothing (``"https://addons.mozilla.org"`` once left that host unpinned).

    Raises:
        ValueError: the pattern is not one of those forms; the message suggests the fix.
    """
    text = pattern.strip()
    _refuse_non_host(pattern, text)
    if text.startswith("*."):
        rest = normalize_host(text[2:])
        if "*" in rest:
            raise ValueError(f"{pattern!r}: '*' is allowed only as the whole first label")
        _check_host_name(pattern, rest)
        return "*." + rest
    if "*" in text:
        raise ValueError(f"{pattern!r}: '*' is allowed only as '*.' at the start")
    host = normalize_host(text)
    _check_host_name(pattern, host)
    return host


_LABEL = re.compile(r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?")


def _refuse_non_host(pattern: str, text: str) -> None:
    """Refuse the things people paste instead of a host name, saying what they meant."""
    if "://" in text:
        try:
            host = urlsplit(text).hostname
        except ValueError:
            host = None
        hint = f'did you mean "{host}"? ' if host else ""
        raise ValueError(f"{pattern!r} is a URL; hosts lists host names: {hint}"
                         "(the pins apply to every URL and port on the host)")
    if any(ch.isspace() for ch in text):
        words = text.replace(",", " ").split()
        hint = ("did you mean " + ", ".join(f'"{w}"' for w in words) + " as separate entries? "
                if len(words) > 1 else "")
        raise ValueError(f"{pattern!r}: a host name has no spaces; {hint}"
                         "(a CA or certificate name belongs in issuers, not hosts)")
    port = re.fullmatch(r"\[([^\]]*)\]:(\d*)|([^:\[\]]*):(\d*)", text)
    if port:
        host = port.group(1) or port.group(3)
        raise ValueError(f"{pattern!r} has a port; pins apply to every port of a host: "
                         f'did you mean "{host}"?')
    if "/" in text or "?" in text or "#" in text or "@" in text:
        host = re.split(r"[/?#]", text.rpartition("@")[2])[0]
        raise ValueError(f"{pattern!r} is not a host name: did you mean \"{host}\"?")


def _check_host_name(pattern: str, host: str) -> None:
    """``host`` (normalised) is an IP address or a name urllib3 can connect to and match."""
    try:
        ipaddress.ip_address(host)
        return
    except ValueError:
        pass
    if len(host) > 253:
        raise ValueError(f"{pattern!r}: a host name is at most 253 characters")
    for label in host.split("."):
        if not _LABEL.fullmatch(label):
            raise ValueError(f"{pattern!r}: {label!r} is not a host name label (letters, digits and "
                             "'-', at most 63, not starting or ending with '-')")


def host_matches(pattern: str, host: str) -> bool:
    """Whether a normalised ``host`` matches a normalised ``pattern``.

    ``*.example.com`` matches exactly one extra label: ``a.example.com``, not ``example.com`` nor
    ``a.b.example.com`` (the same rule as certificate wildcards, RFC 6125 §6.4.3).
    """
    if pattern.startswith("*."):
        head, _, tail = host.partition(".")
        return bool(head) and tail == pattern[2:]
    return host == pattern


def pattern_specificity(pattern: str) -> int:
    """Higher is more specific: an exact name beats any wildcard; a longer wildcard beats a shorter."""
    if pattern.startswith("*."):
        return pattern.count(".")
    return 1_000


def normalize_url(url: str) -> str:
    """Check that ``url`` is https:// with a host, and normalise the host (case, trailing dot, IDNA).

    Raises:
        UsageError: not an https URL, or no valid host.
    """
    try:
        parts = urlsplit(url.strip())
    except ValueError as e:  # "https://[::1/" (found by fuzz/fuzz_cli.py)
        raise UsageError(f"{url!r} is not a URL: {e}") from None
    if parts.scheme.lower() != "https":
        raise UsageError(f"{url!r} is not an https:// URL; pinclient fetches over HTTPS only.")
    if not parts.hostname:
        raise UsageError(f"{url!r} has no host name.")
    try:
        host = normalize_host(parts.hostname)
        port = parts.port
    except ValueError as e:
        raise UsageError(f"{url!r}: {e}") from None
    netloc = f"[{host}]" if ":" in host else host
    if port is not None:
        netloc += f":{port}"
    return urlunsplit(("https", netloc, parts.path or "/", parts.query, ""))


def parse_target(text: str, *, bare_ok: bool = False) -> tuple[str, int]:
    """``(host, port)`` of an ``https://`` URL, or with ``bare_ok`` also of ``HOST[:PORT]``.

    Raises:
        UsageError: not an https URL (or host), or an invalid host or port.
    """
    value = text.strip()
    if "://" not in value and bare_ok:
        value = "https://" + value
    what = "an https:// URL or HOST[:PORT]" if bare_ok else "an https:// URL"
    try:
        parts = urlsplit(value)
    except ValueError:  # "https://[::1/" (fuzz/fuzz_cli.py)
        raise UsageError(f"{text!r} is not {what}.") from None
    if parts.scheme.lower() != "https" or not parts.hostname:
        raise UsageError(f"{text!r} is not {what}.")
    try:
        return normalize_host(parts.hostname), parts.port or 443
    except ValueError as e:
        raise UsageError(f"{text!r}: {e}") from None


def printable(text: str) -> str:
    """``text`` safe to print, log or write into a comment or message: every character that is not
    printable (``str.isprintable``: C0 and C1 controls such as newline, carriage return and ESC, DEL,
    Unicode format characters such as U+202E RIGHT-TO-LEFT OVERRIDE, line and paragraph separators)
    becomes a visible ``\\xHH``/``\\uHHHH`` escape.

    Certificate names, header values and URLs are attacker-controlled; printed raw, a newline in a
    subject injected a whole ``[[pinset]]`` into ``pinclient pin``'s output and an ESC sequence
    reached the terminal. Every place that shows such text goes through this function (names through
    :func:`pinclient._x509.name_text`, which uses the same rule).
    """
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else _escape(ch) for ch in text)


def _escape(ch: str) -> str:
    code = ord(ch)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"
