"""Host names and URLs: normalisation and pattern matching, shared by the loader, the policy, the
downloads and the tools.

OkHttp once skipped pins for upper-case hosts and for hosts with a trailing dot; Chromium lower-cases
and strips the dot before matching. Every name pinclient compares goes through :func:`normalize_host`
first, so ``Updates.Example.COM.`` and ``updates.example.com`` are one host, and a Unicode name is
compared as its IDNA 2008 A-label, the form urllib3 connects to.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from urllib.parse import urlsplit, urlunsplit

from .errors import UsageError

__all__ = [
    "host_matches",
    "ip_literal",
    "normalize_host",
    "normalize_pattern",
    "normalize_url",
    "parse_target",
    "pattern_specificity",
    "printable",
]


# Pure, and asked for the same few hosts on every connection (the pin check, the pool key, the
# proxy bypass): remembered, so a connection to an IP literal does not parse it again (issue 18).
# A ValueError is not remembered; it is raised again on the next call.
@functools.lru_cache(maxsize=512)
def normalize_host(host: str) -> str:
    """Lower-case, strip one trailing dot and IPv6 brackets, IDNA-2008-encode non-ASCII labels;
    write an IP address the one way :func:`ip_literal` does.

    Raises:
        ValueError: the name cannot be a host name (empty label, IDNA failure), or it is numeric but
            not an unambiguous IP address.
    """
    name = host.strip()
    if name.startswith("[") and name.endswith("]"):
        name = name[1:-1]
    address = ip_literal(name)
    if address is not None:
        return address
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


# A number as inet_aton(3) and the WHATWG URL standard read an IPv4 part: decimal, octal after a
# leading 0, hexadecimal after 0x.
_IPV4_PART = re.compile(r"(?:0[xX][0-9a-fA-F]+|[0-9]+)\Z")


def ip_literal(name: str) -> str | None:
    """The address a connection to ``name`` (brackets removed) reaches, written canonically, or
    None when ``name`` is a host name.

    The socket does not read IP literals the way :mod:`ipaddress` does: getaddrinfo() parses IPv4
    with inet_aton(3), so ``127.1``, ``0x7f.1``, ``2130706433`` and ``127.000.000.001`` all reach
    127.0.0.1, and ``::ffff:127.0.0.1`` (IPv4-mapped) reaches it over IPv4. Each is written as the
    address it reaches, so a pinset for ``127.0.0.1`` covers every spelling of it (issue 14; the
    WHATWG URL standard parses hosts the same way). A name whose last label is a number is an IPv4
    literal or nothing (as in the URL standard): never looked up in DNS as a name.

    Raises:
        ValueError: a numeric name inet_aton would refuse (a part too large, five parts, ``08``),
            an octal part whose decimal reading differs (``010``: the socket reads 8 while
            OpenSSL's certificate check reads 10), or the unspecified address (``0.0.0.0``, ``0``,
            ``::``), which Linux connects to this machine; the message gives the right spelling.
    """
    if ":" not in name and not _IPV4_PART.match(name.removesuffix(".").rpartition(".")[2]):
        # The common case, a host name, decided without ipaddress raising and catching ValueError
        # (half the pin check's cost per connection, issue 18): without a colon, both
        # ip_address() and inet_aton(3) need a number as the last label.
        return None
    try:
        address = ipaddress.ip_address(name)
    except ValueError:
        text = _inet_aton(name)
        if text is None:
            return None
        address = ipaddress.IPv4Address(text)
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if address.is_unspecified:
        # Linux connects 0.0.0.0 (also spelled 0, 0x0, ::ffff:0.0.0.0) to 127.0.0.1 and :: to ::1,
        # other systems refuse it: no pinset can be looked up for the address it reaches.
        raise ValueError(f"{name!r} is the unspecified address {address}, not one to connect to "
                         "(Linux reaches this machine with it); write 127.0.0.1 or ::1")
    return str(address)


def _inet_aton(name: str) -> str | None:
    """``name`` read as inet_aton(3) reads it, canonical; None if its last label is not a number."""
    text = name[:-1] if name.endswith(".") else name
    parts = text.split(".")
    if not _IPV4_PART.match(parts[-1]):
        return None
    if len(parts) > 4 or not all(_IPV4_PART.match(p) for p in parts):
        raise ValueError(f"{name!r} ends in a number, so it must be an IPv4 address, and it is not one "
                         "(write it as four decimal numbers, such as 192.0.2.1)")
    values = []
    for part in parts:
        if part[:2].lower() == "0x":
            values.append(int(part[2:], 16))
        elif len(part) > 1 and part.startswith("0"):
            if not part.isdigit() or any(c in "89" for c in part):
                raise ValueError(f"{name!r}: {part!r} is not a number the connection can read (a "
                                 "leading 0 means octal); write the address as four decimal numbers")
            if len(parts) == 4 and int(part, 8) != int(part, 10):
                # OpenSSL reads a dotted quad as decimal when it checks the certificate's address.
                raise ValueError(f"{name!r}: {part!r} means {int(part, 8)} to the socket (octal, as "
                                 f"inet_aton reads it) but {int(part, 10)} to certificate checks; "
                                 "write the address as four decimal numbers without leading zeros")
            values.append(int(part, 8))
        else:
            values.append(int(part))
    *head, last = values
    if any(v > 255 for v in head) or last >= 256 ** (5 - len(values)):
        raise ValueError(f"{name!r} ends in a number, so it must be an IPv4 address, and a part of it "
                         "is too large")
    number = sum(v << (8 * (3 - i)) for i, v in enumerate(head)) + last
    return str(ipaddress.IPv4Address(number))


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
        if ip_literal(rest) is not None:  # "*.127.0.0.1", "*.0": no host name ends in an address
            raise ValueError(f"{pattern!r} can never match: {rest} is an IP address, and no host "
                             f'name ends in one; did you mean "{rest}"?')
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
