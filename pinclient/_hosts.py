"""Host-name normalisation and pattern matching, shared by the loader and the policy.

OkHttp once skipped pins for upper-case hosts and for hosts with a trailing dot; Chromium lower-cases
and strips the dot before matching. Every name pinclient compares goes through :func:`normalize_host`
first, so ``Updates.Example.COM.`` and ``updates.example.com`` are one host, and a Unicode name is
compared as its IDNA 2008 A-label, the form urllib3 connects to.
"""

from __future__ import annotations

import ipaddress

__all__ = ["host_matches", "normalize_host", "normalize_pattern", "pattern_specificity"]


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

    Raises:
        ValueError: the pattern is not one of those two forms.
    """
    if pattern.startswith("*."):
        rest = normalize_host(pattern[2:])
        if "*" in rest:
            raise ValueError(f"{pattern!r}: '*' is allowed only as the whole first label")
        return "*." + rest
    if "*" in pattern:
        raise ValueError(f"{pattern!r}: '*' is allowed only as '*.' at the start")
    return normalize_host(pattern)


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
