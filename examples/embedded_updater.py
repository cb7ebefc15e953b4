#!/usr/bin/env python3
"""An application's auto-updater on pinclient: check, download, verify, install atomically, roll back.

    python embedded_updater.py --app-dir DIR --manifest https://updates.example.com/latest.json \\
        --pins pins.toml
    python embedded_updater.py --app-dir DIR --rollback

The manifest is a small JSON document fetched over the pinned transport:

    {"version": "2.1.0", "url": "app-2.1.0.tar.gz", "sha256": "<64 hex>", "size": 48213}

(``url`` may be relative to the manifest). The app folder holds:

    versions/<version>/   one folder per installed version (the current one and the previous one)
    CURRENT               the version the app runs, one line, replaced atomically
    PREVIOUS              the version before it, for --rollback

Both downloads go through the pins: a manifest or archive served with a certificate from any other
CA is refused before the request is sent, and nothing changes. The archive is accepted only with
the manifest's exact size and SHA-256, and unpacked into a temporary folder that is renamed into
place; only then does CURRENT move. If the manifest itself could be forged (a compromised update
server), sign it too: see docs/signing.md.

Exit codes are pinclient's: 0 updated or up to date, 2 usage, 3 pin violation, 5 integrity,
6 network, 7 storage.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urljoin

import pinclient
from pinclient import IntegrityError, PinclientError, UsageError

MANIFEST_LIMIT = 64 * 1024  # a manifest is tiny; never read an endless one


def parse_version(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in text.strip().split("."))
    except ValueError:
        raise IntegrityError(f"bad version {text!r} (expected numbers separated by dots)") from None


def read_pointer(app_dir: Path, name: str) -> str | None:
    path = app_dir / name
    return path.read_text().strip() if path.exists() else None


def write_pointer(app_dir: Path, name: str, version: str) -> None:
    """Replace app_dir/name atomically: write a temporary file beside it, fsync, os.replace.

    A pointer file rather than a symlink, so the same code works on Windows."""
    fd, tmp = tempfile.mkstemp(prefix=f".{name}.", dir=app_dir)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(version + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, app_dir / name)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


@dataclass(frozen=True)
class Manifest:
    version: str
    url: str
    sha256: str
    size: int


def fetch_manifest(url: str, config: pinclient.PinConfig, work: Path) -> Manifest:
    result = pinclient.fetch_update(url, work / "manifest.json", config=config, max_size=MANIFEST_LIMIT)
    try:
        doc = json.loads(result.dest.read_text())
    except (ValueError, UnicodeDecodeError) as e:
        raise IntegrityError(f"the manifest at {url} is not JSON: {e}") from None
    if not isinstance(doc, dict):
        raise IntegrityError(f"the manifest at {url} is not a JSON object")
    for key, kind in (("version", str), ("url", str), ("sha256", str), ("size", int)):
        if type(doc.get(key)) is not kind:
            raise IntegrityError(f"the manifest at {url} lacks {key!r} ({kind.__name__})")
    return Manifest(doc["version"], urljoin(result.url, doc["url"]), doc["sha256"], doc["size"])


def unpack(archive: Path, versions: Path, version: str) -> Path:
    """Unpack into a temporary folder inside versions/, then rename it to versions/<version>."""
    staging = Path(tempfile.mkdtemp(prefix=f".{version}.", dir=versions))
    try:
        with tarfile.open(archive) as tar:
            for member in tar.getmembers():
                # Only plain files and folders, only below the staging folder.
                name = Path(member.name)
                if name.is_absolute() or ".." in name.parts or not (member.isfile() or member.isdir()):
                    raise IntegrityError(f"refusing archive member {member.name!r}")
            if hasattr(tarfile, "data_filter"):
                tar.extractall(staging, filter="data")
            else:  # Python < 3.10.12 / 3.11.4: the checks above are the filter
                tar.extractall(staging)
        target = versions / version
        if target.exists():  # left over from an interrupted install of this same version
            shutil.rmtree(target)
        os.replace(staging, target)
        return target
    except (tarfile.TarError, OSError) as e:
        raise IntegrityError(f"cannot unpack {archive.name}: {e}") from None
    finally:
        if staging.exists():
            shutil.rmtree(staging)


def update(app_dir: Path, manifest_url: str, config: pinclient.PinConfig) -> str:
    versions = app_dir / "versions"
    versions.mkdir(parents=True, exist_ok=True)
    current = read_pointer(app_dir, "CURRENT")
    with tempfile.TemporaryDirectory(prefix=".download-", dir=app_dir) as tmp:
        work = Path(tmp)
        manifest = fetch_manifest(manifest_url, config, work)
        new = manifest.version
        if current is not None and parse_version(new) <= parse_version(current):
            # Never install an older or equal version: a replayed old manifest is a rollback attack.
            return f"up to date: {current} (the server offers {new})"
        archive = work / "update.tar.gz"
        result = pinclient.fetch_update(manifest.url, archive, config=config, sha256=manifest.sha256,
                                        size=manifest.size)
        unpack(archive, versions, new)
    if current is not None:
        write_pointer(app_dir, "PREVIOUS", current)
    write_pointer(app_dir, "CURRENT", new)
    keep = {new, current}
    for folder in versions.iterdir():
        if folder.name not in keep and not folder.name.startswith("."):
            shutil.rmtree(folder)
    return (f"updated {current or '(nothing)'} -> {new} ({result.size} bytes, sha256 {result.sha256[:16]}…, "
            f'pinset "{result.pinset}")')


def rollback(app_dir: Path) -> str:
    current, previous = read_pointer(app_dir, "CURRENT"), read_pointer(app_dir, "PREVIOUS")
    if previous is None or not (app_dir / "versions" / previous).is_dir():
        raise UsageError("no previous version to roll back to")
    write_pointer(app_dir, "CURRENT", previous)
    if current is not None:
        write_pointer(app_dir, "PREVIOUS", current)
    return f"rolled back {current} -> {previous}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--app-dir", required=True, type=Path)
    parser.add_argument("--manifest", metavar="URL", help="https:// URL of the update manifest")
    parser.add_argument("--pins", type=Path, help="pins.toml")
    parser.add_argument("--rollback", action="store_true", help="switch back to the previous version")
    args = parser.parse_args(argv)
    try:
        if args.rollback:
            print(rollback(args.app_dir))
        else:
            if not args.manifest or not args.pins:
                raise UsageError("--manifest and --pins are required to update")
            print(update(args.app_dir, args.manifest, pinclient.load_pins(args.pins)))
    except PinclientError as e:
        # Nothing was changed: the app keeps running the version in CURRENT.
        print(f"update failed, keeping {read_pointer(args.app_dir, 'CURRENT')}: {e.message}", file=sys.stderr)
        return e.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
