"""``pinclient lint``, ``pinclient pin`` and ``pinclient check``: the CLI glue of the pin lifecycle.

The main CLI registers these (``configure_*`` fills a subparser, ``run_*`` runs it and returns the
exit code). The work lives in :mod:`pinclient._lint` (pure findings), :mod:`pinclient._probe`
(handshake and verdict) and :func:`render_pinset` here (pure text); everything heavy is imported
inside ``run_*`` so that ``--help`` stays fast.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
from collections.abc import Sequence
from typing import TYPE_CHECKING

from .._names import normalize_pattern, printable
from ..errors import NetworkError, TLSError, UsageError
from .common import load_config, seconds

if TYPE_CHECKING:
    from cryptography import x509

    from .._lint import Finding
    from .._probe import CheckResult
    from ..config import PinConfig

__all__ = [
    "configure_check",
    "configure_lint",
    "configure_pin",
    "render_pinset",
    "run_check",
    "run_lint",
    "run_pin",
]

LINT_HELP = "check a pins file for the mistakes that brick updaters (missing backup pin, …)"
PIN_HELP = ("print a complete pins.toml (version, the ca_bundle it validated against, a [[pinset]]) "
            "for a live server or a PEM chain")
CHECK_HELP = "handshake with each URL's host (download nothing) and report its pin verdict"

LINT_EPILOG = """\
exit codes:
  0  no errors (warnings allowed without --strict)
  1  warnings, with --strict
  2  errors, or the pins file cannot be loaded
  6  --against: the server could not be reached or failed TLS validation
"""

CHECK_EPILOG = """\
exit codes:
  0  every host ok (report-only violations included)
  2  usage or pins-file error
  3  at least one host violates its pins
  6  no violation, but at least one host failed TLS validation or the network
"""

PIN_EPILOG = """\
exit codes:
  0  ok
  2  usage error (bad target, unreadable file)
  6  the server could not be reached or failed TLS validation
"""


def _timeout(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--timeout", metavar="SECONDS", type=seconds, default=10.0,
                        help="connect and handshake timeout per host, for both together "
                        "(default: %(default)s)")
    # The same proxy rules as fetch-update (pinclient._proxy.proxy_route): behind a proxy, a check
    # that connects directly fails where the fetch would work.
    proxies = parser.add_mutually_exclusive_group()
    proxies.add_argument("--proxy", metavar="URL", default=None,
                         help="tunnel through this http:// or https:// proxy (default: $HTTPS_PROXY "
                         "/ $https_proxy, minus $NO_PROXY hosts), as fetch-update does")
    proxies.add_argument("--no-proxy", dest="proxy", action="store_const", const=False,
                         help="connect directly, ignoring the environment")


def _pins_args(pins: str | None, ca_bundle: str | None = None) -> argparse.Namespace:
    return argparse.Namespace(pins=pins, ca_bundle=ca_bundle)


def _load(pins: str | None, ca_bundle: str | None = None) -> PinConfig:
    return load_config(_pins_args(pins, ca_bundle))


# --------------------------------------------------------------------------- lint


def configure_lint(parser: argparse.ArgumentParser) -> None:
    parser.epilog = LINT_EPILOG
    parser.add_argument("pins", metavar="PINS", nargs="?",
                        help="pins file (default: $PINCLIENT_PINS, then ./pins.toml)")
    parser.add_argument("--strict", action="store_true", help="exit 1 when there are warnings")
    parser.add_argument("--against", metavar="URL", action="append", default=[],
                        help="also handshake with URL's host and say which pins of its pinset the "
                        "live verified chain satisfies (repeatable)")
    parser.add_argument("--json", action="store_true", help="print one JSON object with the findings")
    _timeout(parser)


def run_lint(args: argparse.Namespace) -> int:
    from .._lint import against, exit_status, lint  # deferred: as above
    from .._probe import handshake, parse_target  # deferred: cryptography and ssl, not for --help

    config = _load(args.pins)
    where = str(config.path) if config.path else "pins"
    now = dt.datetime.now(dt.timezone.utc)
    targets = [parse_target(url) for url in args.against]
    findings = lint(config, today=now.date())
    failure: NetworkError | None = None
    for host, port in targets:
        try:
            chain = handshake(host, port, config.trust_bundle(), timeout=args.timeout,
                              proxy=args.proxy)
        except NetworkError as e:
            failure = e
            break
        findings += against(config, host, chain, now=now, port=port)
    code = exit_status(findings, strict=args.strict)
    if failure is not None:
        code = failure.exit_code
    if args.json:
        print(json.dumps({"ok": code == 0, "exit_code": code, "file": where,
                          "findings": [f.to_json() for f in findings],
                          **({"error": failure.message} if failure else {})}, indent=2))
        return code
    for finding in findings:
        print(f"{where}: {finding.format()}")
    print(f"{where}: {_summary(findings)}")
    if failure is not None:
        raise failure
    return code


def _summary(findings: Sequence[Finding]) -> str:
    errors = sum(1 for f in findings if f.severity == "error")
    warnings = sum(1 for f in findings if f.severity == "warning")
    if not errors and not warnings:
        return "no problems found"
    return f"{errors} error{'s' if errors != 1 else ''}, {warnings} warning{'s' if warnings != 1 else ''}"


# --------------------------------------------------------------------------- pin


def configure_pin(parser: argparse.ArgumentParser) -> None:
    parser.epilog = PIN_EPILOG
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("target", metavar="HOST[:PORT] | URL", nargs="?",
                        help="connect with ordinary TLS validation and pin the verified chain")
    target.add_argument("--pem", metavar="FILE",
                        help="read a PEM chain (leaf first) or CA certificates instead of connecting")
    parser.add_argument("--ca-bundle", metavar="FILE",
                        help="PEM trust bundle to validate against (default: the --pins file's "
                        "ca_bundle, else certifi's)")
    parser.add_argument("--pins", metavar="FILE", help="take the trust bundle from this pins file")
    _timeout(parser)


def run_pin(args: argparse.Namespace) -> int:
    from cryptography import x509

    from .._probe import handshake, parse_target  # deferred: cryptography and ssl, not for --help

    if args.pem is not None:  # `--pem ""` is a bad file, not "no --pem" (found by fuzz/fuzz_cli.py)
        certs = _read_pem(args.pem)
        kinds = [_is_ca(cert, f"{args.pem}: certificate {i + 1}") for i, cert in enumerate(certs)]
        # Leaf first, or CA certificates only: every certificate but a leading leaf is pinned, so
        # none may be silently dropped (a leaf in the middle of a bundle is a mistake to show).
        for i, is_ca in enumerate(kinds[1:], start=1):
            if not is_ca:
                raise UsageError(f"{args.pem}: certificate {i + 1} ({_label(certs[i])}) is not a CA "
                                 "certificate, so it cannot be an issuer pin; give a chain, leaf "
                                 "first, or CA certificates only.")
        bundle = _pin_bundle(args) if args.ca_bundle or args.pins else None
        print(render_pinset(certs, host=None, source=f"read from {args.pem} (not verified)",
                            pin_all=kinds[0], bundle=bundle))
        return 0
    host, port = parse_target(args.target, bare_ok=True)
    bundle = _pin_bundle(args)
    ders = handshake(host, port, _bundle_file(bundle), timeout=args.timeout, proxy=args.proxy)
    where = host if port == 443 else f"{host}:{port}"
    try:
        certs = [x509.load_der_x509_certificate(d) for d in ders]
    except ValueError as e:  # OpenSSL verified what cryptography cannot read (issue 14)
        raise TLSError(f"the chain {where} presented verifies, but holds a certificate pinclient "
                       f"cannot read ({e}); no pin can be taken from it.") from None
    print(render_pinset(certs, host=host, source=f"verified for {where} against {bundle}",
                        bundle=bundle))
    return 0


def _pin_bundle(args: argparse.Namespace) -> str:
    """The trust bundle ``pin`` validates against: an absolute path, or ``"certifi"``."""
    from pathlib import Path

    if args.ca_bundle:
        if not Path(args.ca_bundle).is_file():
            raise UsageError(f"--ca-bundle {args.ca_bundle!r} is not a readable file.")
        return str(Path(args.ca_bundle).resolve())
    if args.pins:
        return _load(args.pins).defaults.ca_bundle
    return "certifi"


def _bundle_file(bundle: str) -> str:
    if bundle != "certifi":
        return bundle
    import certifi

    return str(certifi.where())


#: The largest --pem file read (certifi's whole bundle is about 300 KB): /dev/zero is not a chain.
MAX_PEM_BYTES = 16 * 1024 * 1024


def _read_pem(path: str) -> list[x509.Certificate]:
    from cryptography import x509

    try:
        with open(path, "rb") as fh:
            data = fh.read(MAX_PEM_BYTES + 1)
    except (OSError, ValueError) as e:  # ValueError: a NUL in the path
        raise UsageError(f"cannot read {path!r}: {getattr(e, 'strerror', None) or e}") from None
    if len(data) > MAX_PEM_BYTES:
        raise UsageError(f"{path!r} is larger than {MAX_PEM_BYTES // (1024 * 1024)} MiB; a PEM chain "
                         "or CA bundle is far smaller.")
    import warnings

    from cryptography.utils import CryptographyDeprecationWarning

    try:
        with warnings.catch_warnings():
            # Serial number 0 (six roots certifi ships: Go Daddy G2, Starfield G2, …) makes
            # cryptography warn on stderr; see pinclient._x509.load_der_certificate.
            warnings.simplefilter("ignore", CryptographyDeprecationWarning)
            certs = x509.load_pem_x509_certificates(data)
    except ValueError as e:
        raise UsageError(f"{path!r} holds no PEM certificate: {e}") from None
    return certs


def _is_ca(cert: x509.Certificate, where: str) -> bool:
    """Whether ``cert`` is a CA: basicConstraints says so, or it has none and is self-signed (an
    X.509 v1 root such as VeriSign Class 3 or GTE CyberTrust: 18 of the 155 roots Mozilla shipped in
    2011 had no extensions at all, and a trust anchor is a CA by being one).

    Raises:
        UsageError: an extension cryptography cannot parse (named with ``where``).
    """
    from cryptography import x509

    try:
        return bool(_extensions(cert, where).get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return _self_signed(cert)


def _extensions(cert: x509.Certificate, where: str) -> x509.Extensions:
    try:
        return cert.extensions
    except ValueError as e:  # cryptography parses every extension at once, and refuses bad DER
        raise UsageError(f"{where} ({_label(cert)}) has an extension that cannot be parsed "
                         f"({printable(str(e))[:200]}); pinclient cannot tell what it is. Give the "
                         "CA's certificate from its publisher, or its spki_sha256 pin.") from None


def _self_signed(cert: x509.Certificate) -> bool:
    from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm

    if cert.issuer != cert.subject:
        return False
    try:
        cert.verify_directly_issued_by(cert)
    except (InvalidSignature, UnsupportedAlgorithm, TypeError, ValueError):  # not its own issuer
        return False
    return True


def _label(cert: x509.Certificate) -> str:
    """The subject's CN (else the whole subject), escaped: it is the certificate maker's text."""
    from cryptography.x509.oid import NameOID

    from .._x509 import name_text  # deferred: cryptography, not for --help

    cns = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return printable(str(cns[0].value)) if cns else name_text(cert.subject)


def _leaf_hosts(cert: x509.Certificate) -> tuple[list[str], str]:
    """The leaf's DNS names and a note: with no subjectAltName, its CN if that is a host name (how
    leaves named their host before SANs), noted so that the operator checks it."""
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    note = ""
    try:
        san = _extensions(cert, "the leaf").get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        names = [str(a.value) for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
        note = "  # the leaf's CN (it has no subjectAltName): check it"
    else:
        names = [str(n) for n in san.get_values_for_type(x509.DNSName)]
    out = []
    for name in names:
        try:
            out.append(normalize_pattern(name))
        except ValueError:  # not a host name: the operator writes one
            continue
    return out, note if out else ""


def render_pinset(chain: Sequence[x509.Certificate], *, host: str | None, source: str,
                  pin_all: bool = False, bundle: str | None = None) -> str:
    """The ``pin`` output, a complete pins.toml that works as it is (``pinclient pin HOST >
    pins.toml``): ``version = 1``, ``[defaults]`` with the ``ca_bundle`` the chain was verified
    against (``bundle``: a path or ``"certifi"``; None leaves it as a comment), the chain as
    comments, then a ``[[pinset]]`` with an SPKI pin for each CA above the leaf (every certificate
    with ``pin_all``), labelled with its subject CN and commented with its notAfter, and advice on a
    backup pin. Every name in it is escaped (certificate subjects are the certificate maker's text).
    """
    from .._x509 import name_text, spki_sha256  # deferred: cryptography, not for --help

    def b64(cert: x509.Certificate) -> str:
        import base64

        return base64.b64encode(spki_sha256(cert)).decode()

    lines = [
        "# pins.toml written by `pinclient pin`: save it as it is, or copy the [[pinset]] block below",
        "# into an existing pins.toml.",
        "version = 1",
        "",
        "[defaults]",
    ]
    if bundle is not None:
        lines += ["# The trust bundle this chain was validated against; fetches must use it too.",
                  f"ca_bundle = {json.dumps(bundle)}"]
    else:
        lines += ["# ca_bundle = \"/path/to/bundle.pem\"  # when the chain's root is not in certifi's bundle"]
    lines += ["", f"# Certificate chain, leaf first, {printable(source)}:"]
    for i, cert in enumerate(chain):
        lines.append(f"#   {i}: {name_text(cert.subject)}")
        lines.append(f"#      sha256/{b64(cert)}  notAfter {cert.not_valid_after_utc.date()}")
    cas = list(chain) if pin_all else list(chain[1:])
    if not cas:
        raise UsageError("the chain has no CA certificate above the leaf to pin; give the full "
                         "chain, or the CA's certificate with --pem")
    names, note = ([host], "") if host else _leaf_hosts(chain[0]) if not pin_all else ([], "")
    name = names[0] if names else "CHANGE-ME"
    hosts = ", ".join(json.dumps(h) for h in names) if names else '"CHANGE-ME.example.com"'
    lines += [
        "#",
        "# Paste the block below into pins.toml. A root pin survives intermediate changes; an",
        "# intermediate pin is tighter. Keep a BACKUP: a pin for a key you could move to (another",
        "# CA's root, or your next intermediate, e.g. `pinclient pin --pem backup-ca.pem`), so that",
        "# losing this CA does not brick your updater. Roll out with mode = \"report-only\" first,",
        "# and check the file with `pinclient lint --against URL`.",
        "[[pinset]]",
        f"name = {json.dumps(name)}",
        f"hosts = [{hosts}]" + (note if names else "  # your update hosts"),
        "issuers = [",
    ]
    for cert in cas:
        lines.append(f"  {{ spki_sha256 = \"{b64(cert)}\", label = {json.dumps(_label(cert))} }},"
                     f"  # notAfter {cert.not_valid_after_utc.date()}")
    lines += ["  # { spki_sha256 = \"<backup CA key>\", label = \"backup\" },", "]"]
    return "\n".join(lines)


# --------------------------------------------------------------------------- check


def configure_check(parser: argparse.ArgumentParser) -> None:
    parser.epilog = CHECK_EPILOG
    parser.add_argument("urls", metavar="URL", nargs="+", help="https:// URLs whose hosts to check")
    parser.add_argument("--pins", metavar="FILE",
                        help="pins file (default: $PINCLIENT_PINS, then ./pins.toml)")
    parser.add_argument("--ca-bundle", metavar="FILE",
                        help="PEM trust bundle, overriding defaults.ca_bundle in the pins file")
    parser.add_argument("--json", action="store_true", help="print one JSON object (for CI)")
    parser.add_argument("--jobs", "-j", metavar="N", type=int, default=4,
                        help="hosts checked at a time (default: %(default)s)")
    _timeout(parser)


def run_check(args: argparse.Namespace) -> int:
    from concurrent.futures import ThreadPoolExecutor

    from .._probe import check, parse_target  # deferred: cryptography and ssl, not for --help

    if args.jobs < 1:
        raise UsageError("--jobs must be at least 1")
    config = _load(args.pins, args.ca_bundle)
    for url in args.urls:
        parse_target(url)  # every URL is valid before any host is contacted
    with ThreadPoolExecutor(max_workers=min(args.jobs, len(args.urls))) as pool:
        results = list(pool.map(lambda url: check(url, config, timeout=args.timeout,
                                                  proxy=args.proxy), args.urls))
    verdicts = [r.verdict for r in results]
    code = 3 if "violation" in verdicts else 6 if "tls-error" in verdicts else 0
    counts = {v: verdicts.count(v) for v in ("ok", "violation", "report-only", "tls-error")}
    if args.json:
        print(json.dumps({"ok": code == 0, "exit_code": code, "counts": counts,
                          "results": [r.to_json() for r in results]}, indent=2))
        return code
    for result in results:
        print(_describe(result))
    summary = ", ".join(f"{n} {v}" for v, n in counts.items())
    print(f"checked {len(results)} host{'s' if len(results) != 1 else ''}: {summary}")
    return code


def _describe(result: CheckResult) -> str:
    pinset = f'pinset "{result.pinset}"' if result.pinset else "no pinset"
    lines = [f"{result.verdict:<11} {result.url}  ({pinset})"]
    if result.warning:
        lines.append(f"    warning: {result.warning}")
    if result.verdict == "ok":
        lines.append("    verified chain (leaf first):")
        lines += [f"      {c.describe()}" for c in result.chain]
    else:
        lines += [f"    {line.strip()}" if i == 0 else f"    {line}"
                  for i, line in enumerate(result.message.splitlines())]
    return "\n".join(lines)
