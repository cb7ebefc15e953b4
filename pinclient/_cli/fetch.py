"""``fetch-update`` / ``pinclient fetch``: one update by URL, or the one a signed manifest names
(``--manifest``: the manifest is fetched and checked first, so that DEST can default to the file
name of the update it names; then the update is fetched with the manifest's size and hash, through
the same connection pool).
"""

from __future__ import annotations

import argparse
import builtins
import functools
import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, TextIO
from urllib.parse import unquote, urlsplit

from .. import _paths
from .._names import printable
from .._paths import windows_name_problem
from ..errors import NetworkError, UsageError
from .common import (
    HeaderAction,
    add_common,
    byte_count,
    count,
    exact_bytes,
    fetch_options,
    header,
    load_config,
    seconds,
    wait,
)
from .progress import progress_bar

if TYPE_CHECKING:
    from .._download.fetch import FetchResult
    from .._download.options import FetchOptions
    from ..config import PinConfig

__all__ = ["add_download_options", "configure_fetch", "default_dest", "print_saved", "run_fetch"]


def configure_fetch(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("url", metavar="URL", nargs="*",
                        help="https:// URL of the update (or give --manifest URL instead); more URLs "
                        "are mirrors of the same payload, each pinned on its own, tried in order "
                        "when one fails (network, HTTP status or pin violation)")
    parser.add_argument("-o", "--output", metavar="DEST",
                        help="where to save it (default: the URL's file name in this folder); - writes "
                        "the verified bytes to standard output")
    parser.add_argument("--sha256", metavar="HEX", help="expected SHA-256 of the payload")
    parser.add_argument("--hash", metavar="ALG:HEX", action="append", dest="hashes",
                        help="expected digest, pip's spelling: sha256:HEX, sha384:HEX or sha512:HEX "
                        "(repeatable; every one given must match)")
    parser.add_argument("--size", metavar="BYTES", type=exact_bytes, help="expected exact size in bytes")
    parser.add_argument("--revocation", choices=("off", "soft-fail", "hard-fail"), metavar="MODE",
                        help="revocation checking (OCSP/CRL) for every host: off, soft-fail or "
                        "hard-fail, overriding `revocation` in the pins file")
    _add_signature_options(parser)
    add_download_options(parser)
    add_common(parser)


def _add_signature_options(parser: argparse.ArgumentParser) -> None:
    """README's "Signed updates": minisign signatures and signed manifests."""
    g = parser.add_argument_group("signed updates")
    g.add_argument("--signature", metavar="URL|FILE",
                   help="the minisign signature of the payload (of the manifest, with --manifest); "
                   "default when signing keys apply: URL.minisig, fetched through the pins")
    g.add_argument("--signing-key", metavar="RW...", action="append", dest="signing_keys",
                   help="minisign public key that must have signed it (repeatable); replaces the "
                   "pinset's signing_keys")
    g.add_argument("--manifest", metavar="URL",
                   help="fetch the update named by this signed JSON manifest (URL.minisig must "
                   "verify), checking its size, hash and expiry")
    g.add_argument("--installed-version", metavar="VERSION",
                   help="with --manifest: refuse an older version (rollback); fetch nothing when "
                   "the manifest offers this one")
    g.add_argument("--manifest-name", metavar="NAME",
                   help="with --manifest: refuse a manifest whose name is not NAME")


def _check_fetch_args(args: argparse.Namespace) -> None:
    """URL or --manifest, and the options that only make sense with one of them."""
    if args.manifest:
        if args.url:
            raise UsageError("give the update's URL or --manifest URL, not both.")
        for flag, value in (("--sha256", args.sha256), ("--hash", args.hashes), ("--size", args.size)):
            if value is not None:
                raise UsageError(f"{flag} comes from the signed manifest; it cannot be given with "
                                 "--manifest.")
        return
    if not args.url:
        raise UsageError("give the update's URL, or --manifest URL.")
    for flag, value in (("--installed-version", args.installed_version),
                        ("--manifest-name", args.manifest_name)):
        if value is not None:
            raise UsageError(f"{flag} needs --manifest.")


def add_download_options(parser: argparse.ArgumentParser) -> None:
    """The download options of README's "Downloads" section. Each flag's ``dest`` is the name of a
    :class:`~pinclient.FetchOptions` field, and a flag that is not given leaves no attribute
    (``argparse.SUPPRESS``), so the defaults live in FetchOptions alone (see ``common.fetch_options``).
    """
    g = parser.add_argument_group("download options")
    add = functools.partial(g.add_argument, default=argparse.SUPPRESS)
    add("--max-size", metavar="SIZE", type=byte_count,
        help="refuse a body larger than this (e.g. 500MiB; default: the pinset's or "
        "[defaults] max_size, else 4GiB)")
    proxies = g.add_mutually_exclusive_group()
    proxies.add_argument("--proxy", metavar="URL", default=argparse.SUPPRESS,
                         help="tunnel through this http:// or https:// proxy (default: $HTTPS_PROXY "
                         "/ $https_proxy, minus $NO_PROXY hosts); the pins still apply to the origin")
    proxies.add_argument("--no-proxy", dest="proxy", action="store_const", const=False,
                         default=argparse.SUPPRESS, help="connect directly, ignoring the environment")
    add("--unpinned", choices=("refuse", "allow", "remember"), metavar="POLICY",
        help="hosts no pinset covers: refuse, allow (plain TLS validation) or remember (record "
        "their CAs at first contact, refuse a later chain with none of them: exit 3, "
        "issuer-changed); default: [defaults] unpinned")
    add("--no-resume", dest="resume", action="store_false",
        help="do not continue an interrupted download (.DEST.pinclient-part); start "
        "from byte 0")
    add("--retries", metavar="N", type=count,
        help="retries after connection errors, broken bodies, 429 and 5xx (default 3); "
        "pin, TLS, 4xx and integrity failures are never retried")
    add("--connect-timeout", metavar="SECONDS", type=seconds,
        help="give up connecting after this long (default 15)")
    add("--read-timeout", metavar="SECONDS", type=seconds,
        help="give up when no byte arrives for this long (default 30)")
    add("--deadline", metavar="SECONDS", type=seconds,
        help="give up when the whole fetch takes longer: retries, handshakes, headers, redirects and "
        "the signature included, however slowly the server drips (default: none)")
    add("--min-rate", metavar="BYTES", type=byte_count,
        help="abort when the rate averaged over 30 s falls below this many bytes/s "
        "(default 1KiB; 0 turns it off)")
    add("--limit-rate", dest="max_rate", metavar="BYTES", type=byte_count,
        help="average at most this many bytes/s, as curl's --limit-rate (e.g. 200k = 200 KiB/s; "
        "default: no limit)")
    add("--max-redirects", metavar="N", type=count,
        help="follow at most N https redirects (default 5)")
    add("--header", dest="headers", metavar="'NAME: VALUE'", type=header, action=HeaderAction,
        help="add a request header (repeatable); User-Agent is pinclient/VERSION unless set")
    add("--lock-timeout", metavar="SECONDS", type=wait,
        help="wait this long for another process fetching to the same DEST (default 60; "
        "0 fails at once)")
    add("--allow-legacy-signatures", action="store_true",
        help="accept legacy minisign signatures (Ed, made with minisign -l) by any signing key; "
        "unsafe: a prehashed signature can be downgraded to one over the file's 64-byte hash "
        "(default: only where the pinset sets allow_legacy_signatures = true)")


def default_dest(url: str) -> str:
    try:
        name = Path(unquote(urlsplit(url).path)).name
    except ValueError:  # "https://[::1/" (fuzz/fuzz_cli.py)
        raise UsageError(f"{url!r} is not a URL.") from None
    if not name or name in (".", ".."):
        raise UsageError(f"cannot derive a file name from {url!r}; pass -o DEST.")
    why = windows_name_problem(name) if _paths.WINDOWS else None
    if why:  # "C:x", "a.exe:stream", "CON": elsewhere than a file in this folder
        raise UsageError(f"the URL's file name {printable(name)!r} cannot be saved as such ({why}); "
                         "pass -o DEST.")
    return "./-" if name == "-" else name  # a file named "-", not standard output


def run_fetch(args: argparse.Namespace) -> int:
    from .._download.fetch import fetch_update  # deferred: urllib3 and the transport
    from ..config import override_revocation

    _check_fetch_args(args)
    config = load_config(args)
    if config.update is not None:  # signed pins updates: refreshed first when due; see _pinsupdate
        from .._pinsupdate import refresh_if_due  # deferred: as above

        started = time.monotonic()
        config = refresh_if_due(config, lambda: load_config(args), options=fetch_options(args))
        if getattr(args, "deadline", None) is not None:  # --deadline covers the refresh too
            args.deadline -= time.monotonic() - started
            if args.deadline <= 0:
                raise NetworkError("the --deadline passed while the pins were being updated",
                                   url=None, transient=False)
    if args.revocation:
        config = override_revocation(config, args.revocation)
    options = fetch_options(args)
    config = options.pins(config)  # --unpinned
    if args.manifest:
        return _run_manifest(args, config, options)
    dest = args.output or default_dest(args.url[0])
    bar = progress_bar(quiet=args.quiet)
    try:
        result = fetch_update(args.url[0], dest, urls=args.url[1:], config=config, sha256=args.sha256,
                              size=args.size, hashes=args.hashes, signature=args.signature,
                              signing_keys=args.signing_keys, progress=bar, options=options)
    finally:
        if bar is not None:
            bar.close()
    out = sys.stderr if dest == "-" else sys.stdout  # with -o -, stdout carries the payload alone
    if args.json:
        data = result.to_json()
        if config.update is not None:  # which pins document judged it (signed pins updates)
            data["pins"] = {"active": "updated" if config.updated_from else "shipped",
                            "serial": config.serial, "origin": config.updated_from}
        print(json.dumps(data, indent=2), file=out)
    elif not args.quiet:
        print_saved(result, out)
    return 0


def print_saved(result: FetchResult, out: TextIO | None = None) -> None:
    """What ``fetch-update`` prints after a verified download (to ``out``, default stdout)."""
    print = functools.partial(builtins.print, file=out or sys.stdout)
    print(f"saved {result.dest} ({result.size} bytes, sha256 {result.sha256})")
    print(f"  from {printable(result.url)}")  # a redirect's target: the server's text
    for mirror, kind, message in result.failed_mirrors:
        print(f"  (mirror {printable(mirror)} failed first: {kind}: {printable(message)})")
    for name, digest in result.digests.items():
        print(f"  {name} {digest} verified")
    if result.report_only:
        print(f'  PINS VIOLATED ({result.pin_result}) but not enforced: pinset '
              f'"{result.pinset or "(none)"}" is in report-only mode; verified chain (leaf first):')
    elif result.pinset:
        print(f'  pinset "{result.pinset}" matched; verified chain (leaf first):')
    else:
        print("  no pinset (unpinned = \"allow\"); verified chain (leaf first):")
    for entry in result.chain:
        print(f"    {entry.describe()}")
    if result.signature is not None:
        sig = result.signature
        print(f"  minisign signature by key {sig.key_id_hex} verified"
              f"{'' if sig.prehashed else ' (legacy)'}; trusted comment: "
              f"{printable(sig.trusted_comment)}")


def _run_manifest(args: argparse.Namespace, config: PinConfig, options: FetchOptions) -> int:
    """Raises as :func:`pinclient.manifest.fetch_from_manifest`."""
    from .._download.fetch import fetch_update  # deferred: urllib3 and cryptography, not for --help
    from ..manifest import ManifestResult, compare_versions, fetch_manifest  # deferred: as above
    from ..transport import pinning_manager  # deferred: as above

    manager = pinning_manager(config, proxy=options.proxy)
    try:
        manifest = fetch_manifest(args.manifest, config=config, signing_keys=args.signing_keys,
                                  signature=args.signature, installed_version=args.installed_version,
                                  name=args.manifest_name, manager=manager, options=options)
        fetched = None
        if args.installed_version is None or compare_versions(manifest.version,
                                                              args.installed_version) != 0:
            bar = progress_bar(quiet=args.quiet)
            try:
                fetched = fetch_update(manifest.url, args.output or default_dest(manifest.url),
                                       config=config, sha256=manifest.sha256, size=manifest.size,
                                       hashes=manifest.hashes, urls=manifest.urls,
                                       signature=False, manager=manager, progress=bar,
                                       options=options)
            finally:
                if bar is not None:
                    bar.close()
    finally:
        manager.clear()
    result = ManifestResult(manifest, fetched)
    out = sys.stderr if args.output == "-" else sys.stdout  # with -o -, stdout carries the payload
    print = functools.partial(builtins.print, file=out)
    if args.json:
        print(json.dumps(result.to_json(), indent=2))
        return 0
    if args.quiet:
        return 0
    signer = manifest.signature.key_id_hex if manifest.signature else "?"
    expires = f", expires {manifest.expires:%Y-%m-%dT%H:%M:%SZ}" if manifest.expires else ""
    print(f"manifest {printable(manifest.name)} {printable(manifest.version)} from "
          f"{printable(manifest.source)} "
          f"(signed by key {signer}{expires})")
    if fetched is None:
        print(f"up to date: version {printable(manifest.version)} is installed; nothing fetched")
    else:
        print_saved(fetched, out)
    return 0
