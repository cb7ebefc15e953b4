"""X.509 helpers shared by the loader, the policy and the tools: the SPKI pin, a comparable DN, and
serial-number formatting. Pure functions of a certificate or a number; no I/O.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import itertools
import re
import warnings

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.utils import CryptographyDeprecationWarning

__all__ = ["NameKey", "canonical_name", "format_serial", "load_certificate", "load_der_certificate",
           "name_text",
           "spki_sha256"]

#: A DN as compared by the policy: RDNs in order, each a sorted tuple of (OID, folded value).
NameKey = tuple[tuple[tuple[str, str], ...], ...]


def spki_sha256(cert: x509.Certificate) -> bytes:
    """SHA-256 of the certificate's DER SubjectPublicKeyInfo (the HPKP / OkHttp pin)."""
    spki = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(spki).digest()


def canonical_name(name: x509.Name) -> NameKey:
    """A comparable form of a DN: RDNs in order, attributes sorted, values case-folded with runs of
    whitespace collapsed (RFC 5280 §7.1 caseIgnoreMatch, which is what CAs and browsers compare)."""
    rdns = []
    for rdn in name.rdns:
        attrs = sorted(
            (attr.oid.dotted_string, " ".join(str(attr.value).split()).casefold()) for attr in rdn
        )
        rdns.append(tuple(attrs))
    return tuple(rdns)


def name_text(name: x509.Name) -> str:
    """A DN as pinclient shows it anywhere (messages, logs, comments, JSON): RFC 4514 text (which
    already escapes ``"``, ``\\``, ``,``, ``+``, ``;``, ``<``, ``>``) with every character that is not
    printable written as RFC 4514 hex pairs of its UTF-8 bytes (``\\0A`` for a newline, ``\\1B`` for
    ESC), so the text stays one line, has no control characters, and still parses as the same DN.

    Names in certificates are chosen by whoever made the certificate; see
    :func:`pinclient._names.printable` for why this matters.
    """
    text = name.rfc4514_string()
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else "".join(f"\\{b:02X}" for b in ch.encode("utf-8",
                                                                                       "surrogatepass"))
                   for ch in text)


def format_serial(serial: int) -> str:
    """Colon-separated lower-case hex, as certificate viewers show serials."""
    text = f"{serial:x}"
    if len(text) % 2:
        text = "0" + text
    return ":".join(text[i : i + 2] for i in range(0, len(text), 2))


def load_der_certificate(der: bytes) -> tuple[x509.Certificate, int]:
    """A DER certificate and its serial number, without a warning on stderr for a serial of 0.

    Six roots certifi still ships (Go Daddy G2, Starfield G2, …) have serial number 0, which RFC 5280
    forbids; cryptography parses them but warns (``CryptographyDeprecationWarning``) on load and on
    every ``serial_number`` read, which under ``-W error`` is an untyped exception. Only for such a
    certificate (the DER says so before parsing) are those warnings silenced, so the global warning
    filters are touched only on that rare path.

    Raises:
        ValueError: not a DER certificate cryptography can parse (always with a reason).
    """
    if not _non_positive_serial(der):
        try:
            cert = x509.load_der_x509_certificate(der)
        except ValueError as e:
            raise ValueError(f"cannot parse the certificate: {e or type(e).__name__}") from None
        return cert, cert.serial_number
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CryptographyDeprecationWarning)
        try:
            cert = x509.load_der_x509_certificate(der)
        except ValueError as e:
            raise ValueError(f"cannot parse the certificate: {e or type(e).__name__}") from None
        return cert, cert.serial_number


def load_certificate(data: bytes) -> x509.Certificate:
    """The certificate in a PEM (the first ``CERTIFICATE`` block) or DER file, parsed as
    :func:`load_der_certificate` parses it, so a ``cert = …`` pin on a serial-0 root (Go Daddy G2)
    loads without a warning.

    Raises:
        ValueError: neither a PEM certificate nor DER cryptography can parse (with a reason).
    """
    block = _PEM_CERT.search(data)
    if block is None and b"-----BEGIN" in data:
        try:  # another PEM label cryptography knows ("X509 CERTIFICATE")
            return x509.load_pem_x509_certificate(data)
        except ValueError as e:
            raise ValueError(f"no PEM certificate in it: {e or 'no CERTIFICATE block'}") from None
    if block is not None:
        try:
            data = base64.b64decode(b"".join(block.group(1).split()), validate=True)
        except binascii.Error:
            raise ValueError("its PEM CERTIFICATE block is not base64") from None
    return load_der_certificate(data)[0]


_PEM_CERT = re.compile(rb"-----BEGIN CERTIFICATE-----(.*?)-----END CERTIFICATE-----", re.S)


def _non_positive_serial(der: bytes) -> bool:
    """Whether a DER certificate's serial number is 0 or negative, read from the bytes: Certificate
    ::= SEQUENCE { tbsCertificate SEQUENCE { [0] version OPTIONAL, serialNumber INTEGER, … } … }.
    Anything unexpected answers True, so the careful path is taken."""
    try:
        pos = _skip_header(der, 0)  # into Certificate
        pos = _skip_header(der, pos)  # into TBSCertificate
        if der[pos] == 0xA0:  # [0] EXPLICIT version: skip it whole
            body = _skip_header(der, pos)
            pos = body + _length(der, pos)
        if der[pos] != 0x02:
            return True
        body = _skip_header(der, pos)
        content = der[body : body + _length(der, pos)]
        return not content or content[0] & 0x80 != 0 or not any(content)
    except IndexError:
        return True


def _skip_header(der: bytes, pos: int) -> int:
    """The offset of the content of the DER element at ``pos``."""
    first = der[pos + 1]
    return pos + 2 + (first & 0x7F if first & 0x80 else 0)


def _length(der: bytes, pos: int) -> int:
    """The content length of the DER element at ``pos``."""
    first = der[pos + 1]
    if not first & 0x80:
        return first
    return int.from_bytes(der[pos + 2 : pos + 2 + (first & 0x7F)], "big")


# --------------------------------------------------------------------------- pins.toml spellings

#: RFC 5280 §4.1.2.2: a serial number is at most 20 octets. A longer one can be written in pins.toml
#: but no conforming CA issues it (``pinclient lint`` says so).
MAX_SERIAL_OCTETS = 20


#: Longer text is no serial in any spelling (20 octets are 59 characters as colon hex); refused before
#: converting it.
_MAX_SERIAL_TEXT = 256


def parse_serial(text: str) -> int:
    """A certificate serial number as people copy it, read one way only.

    Accepted: colon (or space) separated hex as OpenSSL and NSS print it (``92:39:d5:…``), ``0x``
    and hex digits (colons allowed), bare hex with at least one letter a-f, ``dec:`` and decimal
    digits (how Python, Java and Go print serials), and digits that read the same either way
    (``7``, ``07``). Any other all-digit string is refused: ``194367…`` is a different serial as
    decimal and as hex, and guessing wrong blocks nothing.

    Raises:
        ValueError: not one of those spellings; the message shows how to write it.
    """
    raw = text.strip()
    value = raw.lower()
    if not value:
        raise ValueError("the serial number is empty")
    if len(value) > _MAX_SERIAL_TEXT:  # also keeps int() under its 4300-digit limit
        raise ValueError(f"{raw[:24]!r}… is {len(raw)} characters long; a certificate serial is at "
                         f"most {MAX_SERIAL_OCTETS} octets (\"{'ff:' * 3}…\", 59 characters as colon hex)")
    if value.startswith("dec:"):
        digits = value[4:].strip()
        if not digits.isascii() or not digits.isdigit():
            raise ValueError(f"{raw!r}: after 'dec:' only the decimal digits 0-9 may follow")
        return int(digits, 10)
    hex_prefix = value.startswith("0x")
    body = value[2:] if hex_prefix else value
    separated = any(sep in body for sep in ": ")
    digits = body.replace(":", "").replace(" ", "")
    if value.startswith("serial="):
        raise ValueError(f"{raw!r}: drop the 'serial=' that openssl prints; what follows is hex, "
                         f'so write "0x{raw.strip()[7:].strip()}"')
    if not digits or not digits.isascii() or any(ch not in "0123456789abcdef" for ch in digits):
        raise ValueError(f"{raw!r} is not a hex serial number: write hex as OpenSSL prints it "
                         '("92:39:d5:…" or "0x9239d5…") or decimal as "dec:194367…"')
    if separated and not hex_prefix and any(len(g) != 2 for g in re.split("[: ]", body)):
        raise ValueError(f"{raw!r}: separated hex needs two digits between separators, "
                         'as OpenSSL prints it ("92:39:d5:…")')
    as_hex = int(digits, 16)
    if hex_prefix or separated or not digits.isdigit() or int(digits, 10) == as_hex:
        return as_hex
    as_dec = int(digits, 10)
    raise ValueError(
        f"{raw!r} is ambiguous: read as decimal (as Python, Java and Go print serials) it is "
        f"{format_serial(as_dec)}, read as hex it is {format_serial(as_hex)}. "
        f'Write "dec:{digits}" for the decimal reading, or "0x{digits}"'
        + (f' (or "{format_serial(as_hex)}")' if as_hex > 0xFF else "") + " for the hex reading")


#: Attribute names accepted in a DN (upper case) beyond the dotted OID form, with their rank from
#: the most general (0, country) to the most specific (4, common name) used to tell the order.
_ATTRS: dict[str, tuple[x509.ObjectIdentifier, int | None]] = {
    "C": (x509.NameOID.COUNTRY_NAME, 0), "COUNTRYNAME": (x509.NameOID.COUNTRY_NAME, 0),
    "DC": (x509.NameOID.DOMAIN_COMPONENT, 0),
    "ST": (x509.NameOID.STATE_OR_PROVINCE_NAME, 1), "S": (x509.NameOID.STATE_OR_PROVINCE_NAME, 1),
    "STATEORPROVINCENAME": (x509.NameOID.STATE_OR_PROVINCE_NAME, 1),
    "L": (x509.NameOID.LOCALITY_NAME, 1), "LOCALITYNAME": (x509.NameOID.LOCALITY_NAME, 1),
    "STREET": (x509.NameOID.STREET_ADDRESS, 1), "POSTALCODE": (x509.NameOID.POSTAL_CODE, 1),
    "O": (x509.NameOID.ORGANIZATION_NAME, 2), "ORGANIZATIONNAME": (x509.NameOID.ORGANIZATION_NAME, 2),
    "OU": (x509.NameOID.ORGANIZATIONAL_UNIT_NAME, 3),
    "ORGANIZATIONALUNITNAME": (x509.NameOID.ORGANIZATIONAL_UNIT_NAME, 3),
    "CN": (x509.NameOID.COMMON_NAME, 4), "COMMONNAME": (x509.NameOID.COMMON_NAME, 4),
    "EMAILADDRESS": (x509.NameOID.EMAIL_ADDRESS, None), "E": (x509.NameOID.EMAIL_ADDRESS, None),
    "SERIALNUMBER": (x509.NameOID.SERIAL_NUMBER, None), "UID": (x509.NameOID.USER_ID, None),
    "TITLE": (x509.NameOID.TITLE, None), "SN": (x509.NameOID.SURNAME, None),
    "GN": (x509.NameOID.GIVEN_NAME, None), "GIVENNAME": (x509.NameOID.GIVEN_NAME, None),
    "INITIALS": (x509.NameOID.INITIALS, None), "PSEUDONYM": (x509.NameOID.PSEUDONYM, None),
    "DNQUALIFIER": (x509.NameOID.DN_QUALIFIER, None),
    "GENERATIONQUALIFIER": (x509.NameOID.GENERATION_QUALIFIER, None),
    "BUSINESSCATEGORY": (x509.NameOID.BUSINESS_CATEGORY, None),
    "ORGANIZATIONIDENTIFIER": (x509.NameOID.ORGANIZATION_IDENTIFIER, None),
    "JURISDICTIONC": (x509.NameOID.JURISDICTION_COUNTRY_NAME, None),
    "JURISDICTIONST": (x509.NameOID.JURISDICTION_STATE_OR_PROVINCE_NAME, None),
    "JURISDICTIONL": (x509.NameOID.JURISDICTION_LOCALITY_NAME, None),
}

_RANKS = {oid: rank for oid, rank in _ATTRS.values() if rank is not None}

_SLASH_FORM_HINT = ('write it in the slash form, most general first, as OpenSSL 1.0 printed it: '
                    '"/C=US/O=Example/CN=Example CA"')
# In the slash form a "/" starts a new attribute only before "NAME=" or "1.2.3=": a value such as
# OU=http://www.usertrust.com keeps its slashes.
_SLASH_SPLIT = re.compile(r"/(?=\s*(?:[A-Za-z][A-Za-z0-9-]*|\d+(?:\.\d+)+)\s*=)")


def parse_dn(text: str) -> x509.Name:
    """A distinguished name in any of the forms people copy, as the certificate's ``Name``.

    * RFC 4514, most specific first: ``CN=UTN-USERFirst-Hardware,O=…,C=US``
      (``openssl x509 -nameopt RFC2253``, Python's ``rfc4514_string()``);
    * most general first, as ``openssl x509 -issuer`` prints it: ``C=US, ST=UT, …, CN=…`` and
      OpenSSL 3's ``C = US, ST = UT, …``;
    * the slash form of OpenSSL 1.0, always most general first: ``/C=US/ST=UT/…/CN=…``.

    With commas, the order is read from the attributes (C and DC are the most general, then ST and
    L, O, OU, CN); when they cannot tell it (``DC=example,DC=com``, or no two ranked attributes),
    the name is refused and the slash form asked for. Spaces around ``=`` and ``,`` and the case of
    attribute names do not matter; ``+`` joins a multi-valued RDN; ``\\`` escapes as RFC 4514.

    Raises:
        ValueError: the text is not a DN in one of those forms; the message says what to write.
    """
    raw = text.strip()
    if not raw:
        raise ValueError("the distinguished name is empty")
    if raw.startswith("/"):
        rdns = [_rdn(part, raw) for part in _SLASH_SPLIT.split(raw[1:])]
        return x509.Name([x509.RelativeDistinguishedName(r) for r in rdns])
    rdns = [_rdn(part, raw) for part in _split_unescaped(raw, ",;")]
    known = [min(ranked) for r in rdns if (ranked := [_RANKS[a.oid] for a in r if a.oid in _RANKS])]
    up = all(a <= b for a, b in itertools.pairwise(known))
    down = all(a >= b for a, b in itertools.pairwise(known))
    if len(rdns) > 1 and (up == down):
        raise ValueError(f"{raw!r}: cannot tell whether this name is written most specific first "
                         "(RFC 4514: CN=…,O=…,C=…) or most general first (openssl x509 -issuer: "
                         f"C=…, O=…, CN=…); {_SLASH_FORM_HINT}")
    if down:  # RFC 4514 lists the last RDN of the certificate first
        rdns.reverse()
    return x509.Name([x509.RelativeDistinguishedName(r) for r in rdns])


def _rdn(part: str, whole: str) -> list[x509.NameAttribute[str]]:
    attrs: list[x509.NameAttribute[str]] = []
    for item in _split_unescaped(part, "+"):
        name, eq, value = item.partition("=")
        name = name.strip()
        if not eq or not name:
            raise ValueError(f"{whole!r}: {item.strip()!r} is not NAME=value")
        key = name.upper()
        if key in ("ISSUER", "SUBJECT"):
            raise ValueError(f"{whole!r}: drop the {name + '='!r} that openssl prints before the name")
        if key in _ATTRS:
            oid = _ATTRS[key][0]
        elif re.fullmatch(r"\d+(\.\d+)+", name):
            oid = x509.ObjectIdentifier(name)
        else:
            raise ValueError(f"{whole!r}: unknown attribute {name!r} (use C, ST, L, O, OU, CN, DC, "
                             "emailAddress, serialNumber, … or a dotted OID)")
        text = _unescape(value.strip(), whole)
        if not text:
            raise ValueError(f"{whole!r}: {name} has an empty value")
        try:
            attrs.append(x509.NameAttribute(oid, text))
        except ValueError as e:
            raise ValueError(f"{whole!r}: {name}={text!r}: {e or 'not a valid value'}") from None
    return attrs


def _split_unescaped(text: str, seps: str) -> list[str]:
    """Split on ``seps`` outside ``\\`` escapes and double quotes: OpenSSL's one-line form quotes a
    value with a comma (``O = "The Go Daddy Group, Inc."``), RFC 4514 escapes it (``\\,``)."""
    parts, current, escaped, quoted = [], "", False, False
    for ch in text:
        if escaped:
            current += ch
            escaped = False
        elif ch == "\\":
            current += ch
            escaped = True
        elif ch == '"':
            current += ch
            quoted = not quoted
        elif ch in seps and not quoted:
            parts.append(current)
            current = ""
        else:
            current += ch
    if quoted:
        raise ValueError(f"{text!r}: a double quote is not closed")
    parts.append(current)
    return parts


def _unescape(value: str, whole: str) -> str:
    """RFC 4514 escapes: ``\\,`` and friends, and ``\\XX`` hex bytes (UTF-8)."""
    if value.startswith("#"):
        raise ValueError(f"{whole!r}: BER-encoded values (#…) are not supported; write the text")
    if len(value) >= 2 and value[0] == value[-1] == '"':
        value = value[1:-1]
    out = bytearray()
    i = 0
    while i < len(value):
        ch = value[i]
        if ch == "\\" and i + 1 < len(value):
            pair = value[i + 1 : i + 3]
            if len(pair) == 2 and all(c in "0123456789abcdefABCDEF" for c in pair):
                out.append(int(pair, 16))
                i += 3
                continue
            out += value[i + 1].encode()
            i += 2
            continue
        out += ch.encode()
        i += 1
    try:
        return out.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError(f"{whole!r}: a \\XX escape is not UTF-8") from None
