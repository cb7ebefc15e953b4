"""Which proxy, if any, to use for a host: ``--proxy``/``--no-proxy``, then ``https_proxy``,
``HTTPS_PROXY`` and ``no_proxy``/``NO_PROXY`` from the environment. Pure: the environment is passed
in, nothing is connected to.

pinclient speaks only HTTPS, so only the HTTPS proxy variables count (``HTTP_PROXY`` is never read;
in a CGI process a client could set it through a ``Proxy:`` header, the "httpoxy" problem). A proxy
only carries the tunnel: the pin check always applies to the origin's certificate, never the proxy's.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from ._names import normalize_host
from ._sizes import ascii_decimal
from .errors import UsageError

__all__ = ["ProxyRoute", "no_proxy_matches", "parse_no_proxy", "parse_proxy_url", "proxy_route"]


@dataclass(frozen=True)
class ProxyRoute:
    """A proxy to tunnel through, and the hosts that bypass it. ``url`` never holds the credentials,
    so it is safe to show in messages and logs."""

    url: str
    auth: str | None = None  # "user:password" for Proxy-Authorization: Basic, from the URL
    no_proxy: tuple[str, ...] = ()

    def bypass(self, host: str, port: int | None = None) -> bool:
        return no_proxy_matches(self.no_proxy, host, port)


def parse_proxy_url(text: str, *, origin: str = "--proxy") -> tuple[str, str | None]:
    """``(scheme://host:port, "user:password" or None)``. A URL without a scheme is ``http://``, as
    in curl; the port defaults to 80 for http and 443 for https.

    Raises:
        UsageError: a scheme other than http/https, no host, or a bad port.
    """
    raw = text.strip()
    if "://" not in raw:
        raw = "http://" + raw
    parts = urlsplit(raw)
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise UsageError(f"{origin}: a proxy URL must start with http:// (CONNECT proxy) or https:// "
                         f"(CONNECT over TLS), not {scheme}://.")
    try:
        host = normalize_host(parts.hostname or "")
        port = parts.port or (443 if scheme == "https" else 80)
    except ValueError as e:
        raise UsageError(f"{origin}: bad proxy URL: {e}") from None
    auth = None
    if parts.username is not None:
        auth = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
    netloc = f"[{host}]" if ":" in host else host
    return f"{scheme}://{netloc}:{port}", auth


def parse_no_proxy(text: str | None) -> tuple[str, ...]:
    """Split a ``NO_PROXY`` value (commas and/or spaces) into normalised entries."""
    if not text:
        return ()
    out = []
    for item in text.replace(",", " ").split():
        entry = item.strip().lower()
        if entry:
            out.append(entry)
    return tuple(out)


def _split_port(entry: str) -> tuple[str, int | None]:
    if entry.startswith("["):  # [::1]:8443
        host, _, rest = entry[1:].partition("]")
        return host, ascii_decimal(rest[1:]) if rest.startswith(":") else None
    if entry.count(":") == 1:
        host, _, port = entry.partition(":")
        return host, ascii_decimal(port)  # "²".isdigit() is True, int("²") a crash
    return entry, None


def no_proxy_matches(entries: tuple[str, ...], host: str, port: int | None = None) -> bool:
    """Whether ``host`` (and ``port``) bypasses the proxy, following curl's ``NO_PROXY`` rules.

    ``*`` matches every host; ``example.com``, ``.example.com`` and ``*.example.com`` match that
    domain and every name under it; an IP address or CIDR block matches addresses; ``host:port``
    matches that port only.
    """
    try:
        name = normalize_host(host)
    except ValueError:
        return False
    try:
        address: ipaddress.IPv4Address | ipaddress.IPv6Address | None = ipaddress.ip_address(name)
    except ValueError:
        address = None
    for entry in entries:
        if entry == "*":
            return True
        pattern, want_port = _split_port(entry)
        if want_port is not None and port is not None and want_port != port:
            continue
        if address is not None:
            try:
                if address in ipaddress.ip_network(pattern, strict=False):
                    return True
            except ValueError:
                pass
            continue
        domain = pattern.removeprefix("*").removeprefix(".")
        try:
            domain = normalize_host(domain)
        except ValueError:
            continue
        if name == domain or name.endswith("." + domain):
            return True
    return False


def proxy_route(proxy: str | bool | None, *, no_proxy: str | None = None,
                env: Mapping[str, str] | None = None) -> ProxyRoute | None:
    """The proxy to use: ``proxy=False`` means none; a string is that proxy; None reads
    ``https_proxy``/``HTTPS_PROXY`` from ``env``. ``no_proxy`` (else ``no_proxy``/``NO_PROXY`` from
    ``env``) lists the hosts that go direct.

    Raises:
        UsageError: the proxy URL is not usable.
    """
    environ: Mapping[str, str] = env or {}
    if proxy is False:
        return None
    if proxy is None or proxy is True:
        # Lower case first, as curl and urllib do: it is the more specific convention.
        text = environ.get("https_proxy") or environ.get("HTTPS_PROXY") or ""
        origin = "https_proxy" if environ.get("https_proxy") else "HTTPS_PROXY"
    else:
        text, origin = proxy, "--proxy"
    if not text.strip():
        return None
    url, auth = parse_proxy_url(text, origin=origin)
    bypass = no_proxy if no_proxy is not None else (environ.get("no_proxy") or environ.get("NO_PROXY"))
    return ProxyRoute(url=url, auth=auth, no_proxy=parse_no_proxy(bypass))
