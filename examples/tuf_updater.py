"""A TUF updater whose every connection is certificate-pinned: python-tuf's ``Updater`` with
pinclient's ``PinnedFetcher`` as its transport (``pip install 'pinclient[tuf]'``).

    python tuf_updater.py --pins pins.toml --root root.json \\
        --metadata-url https://updates.example.com/metadata/ \\
        --targets-url https://updates.example.com/targets/ \\
        --cache ~/.cache/myapp app-2.1.tar.gz

``root.json`` is the trusted TUF root shipped with the application. TUF checks what is downloaded
(signed metadata, hashes, lengths, versions and expiry: rollback, freeze, mix-and-match and
endless-data attacks); pinclient checks where it comes from, refusing a server whose certificate was
issued by a CA the pins do not list before a request byte is sent. The verified target is saved in
``CACHE/targets/`` and its path printed.

Exit codes: 0 updated; 2 usage or pins file; 3 pin violation (the cause of TUF's DownloadError);
4 revocation; 5 TUF refused the metadata or the target; 6 another download failure.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tuf.api import exceptions
from tuf.ngclient import Updater

import pinclient
from pinclient.tuf import PinnedFetcher


def update(args: argparse.Namespace) -> str:
    """Refresh the metadata and download the target (or find it already verified in the cache).

    Raises: PinsFileError, tuf's RepositoryError and DownloadError, OSError.
    """
    config = pinclient.load_pins(args.pins)
    metadata_dir, targets_dir = args.cache / "metadata", args.cache / "targets"
    metadata_dir.mkdir(parents=True, exist_ok=True)
    targets_dir.mkdir(parents=True, exist_ok=True)
    with PinnedFetcher(config) as fetcher:
        updater = Updater(str(metadata_dir), args.metadata_url, str(targets_dir), args.targets_url,
                          fetcher=fetcher, bootstrap=args.root.read_bytes())
        updater.refresh()  # root -> timestamp -> snapshot -> targets, each verified
        info = updater.get_targetinfo(args.target)
        if info is None:
            raise exceptions.RepositoryError(f"{args.target} is not in the repository's targets")
        return updater.find_cached_target(info) or updater.download_target(info)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pins", type=Path, required=True, help="pins.toml")
    parser.add_argument("--root", type=Path, required=True, help="the trusted root.json shipped with the app")
    parser.add_argument("--metadata-url", required=True, help="https:// URL of the TUF metadata folder")
    parser.add_argument("--targets-url", required=True, help="https:// URL of the targets folder")
    parser.add_argument("--cache", type=Path, required=True, help="folder for metadata and targets")
    parser.add_argument("target", help="target path, as named in the targets metadata")
    args = parser.parse_args()
    try:
        print(update(args))
        return 0
    except pinclient.PinclientError as e:  # the pins file
        print(f"tuf_updater: {e.message}", file=sys.stderr)
        return e.exit_code
    except exceptions.DownloadError as e:
        # PinnedFetcher keeps pinclient's error as the cause: a pin violation is exit 3, not "network".
        cause = e.__cause__
        if isinstance(cause, pinclient.PinclientError):
            print(f"tuf_updater: {cause.message}", file=sys.stderr)
            return cause.exit_code
        print(f"tuf_updater: download failed: {e}", file=sys.stderr)
        return 6
    except exceptions.RepositoryError as e:
        print(f"tuf_updater: TUF refused the update: {type(e).__name__}: {e}", file=sys.stderr)
        return 5
    except OSError as e:
        print(f"tuf_updater: {e}", file=sys.stderr)
        return 6


if __name__ == "__main__":
    sys.exit(main())
