"""``fetch-update --manifest URL``: the CLI glue of :mod:`pinclient.manifest`.

The manifest is fetched and checked first (signature, expiry, rollback), so that DEST can default to
the file name of the update it names; then the update is fetched with the manifest's size and hash,
through the same connection pool.
"""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .config import PinConfig

__all__ = ["run_manifest"]


def run_manifest(args: argparse.Namespace, config: PinConfig) -> int:
    """Raises as :func:`pinclient.manifest.fetch_from_manifest`."""
    from ._progress import progress_bar
    from .cli import _default_dest, _download_kwargs, print_saved
    from .download import fetch_update
    from .manifest import ManifestResult, compare_versions, fetch_manifest
    from .transport import pinning_manager

    options = _download_kwargs(args)
    payload_only = {k: options.pop(k) for k in ("lock_timeout", "max_size", "resume")}
    manager = pinning_manager(config, proxy=options.pop("proxy"))
    try:
        manifest = fetch_manifest(args.manifest, config=config, signing_keys=args.signing_keys,
                                  signature=args.signature, installed_version=args.installed_version,
                                  name=args.manifest_name, manager=manager, **options)
        fetched = None
        if args.installed_version is None or compare_versions(manifest.version,
                                                              args.installed_version) != 0:
            bar = progress_bar(quiet=args.quiet)
            try:
                fetched = fetch_update(manifest.url, args.output or _default_dest(manifest.url),
                                       config=config, sha256=manifest.sha256, size=manifest.size,
                                       signature=False, manager=manager, progress=bar,
                                       **payload_only, **options)
            finally:
                if bar is not None:
                    bar.close()
    finally:
        manager.clear()
    result = ManifestResult(manifest, fetched)
    if args.json:
        print(json.dumps(result.to_json(), indent=2))
        return 0
    if args.quiet:
        return 0
    signer = manifest.signature.key_id_hex if manifest.signature else "?"
    expires = f", expires {manifest.expires:%Y-%m-%dT%H:%M:%SZ}" if manifest.expires else ""
    print(f"manifest {manifest.name} {manifest.version} from {manifest.source} "
          f"(signed by key {signer}{expires})")
    if fetched is None:
        print(f"up to date: version {manifest.version} is installed; nothing fetched")
    else:
        print_saved(fetched)
    return 0
