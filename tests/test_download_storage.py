"""Durability and the disk: fsync before success, a full disk (ENOSPC) that leaves the old DEST
and only a resumable .part, and what the caller sees meanwhile (progress, headers, the CLI bar)."""

from __future__ import annotations

import errno
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import pinclient._download.partfile as partfile
from pinclient import StorageError, UsageError, __version__, fetch_update
from pinclient._cli.main import fetch_main
from pinclient._demo import Response
from pinclient.config import PinConfig

from .conftest import ServeHTTPS, posix_only
from .hostile import Seen, ranged

REPO = Path(__file__).resolve().parents[1]


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# --------------------------------------------------------------------------- full disk


class FullDisk(io.FileIO):
    """A file on a disk with ``quota`` bytes free: short writes, then ENOSPC, like write(2)."""

    quota = 0

    def write(self, b: object) -> int:
        data = memoryview(b).cast("B")  # type: ignore[arg-type]
        room = FullDisk.quota - self.tell()
        if room <= 0:
            raise OSError(errno.ENOSPC, "No space left on device")
        return super().write(data[:room])


def test_enospc_keeps_old_dest_and_only_a_resumable_part(root_pinned_config: PinConfig,
                                                         tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                         https_server: ServeHTTPS) -> None:
    data = os.urandom(3 * 1024 * 1024)
    dest = tmp_path / "u.bin"
    dest.write_bytes(b"old version")
    FullDisk.quota = 1_500_000
    real_open = partfile._open_file
    monkeypatch.setattr(partfile, "_open_file",
                        lambda fd: FullDisk(fd, "r+"))
    seen = Seen()
    with https_server({"/u.bin": ranged(data, seen)}) as s:
        with pytest.raises(StorageError, match="No space left on device") as info:
            fetch_update(s.url("/u.bin"), dest, config=root_pinned_config, sha256=sha(data))
        assert info.value.exit_code == 7
        assert dest.read_bytes() == b"old version"
        assert sorted(p.name for p in tmp_path.iterdir() if "u.bin" in p.name) == [
            ".u.bin.pinclient-part", ".u.bin.pinclient-part.json", "u.bin"]
        kept = json.loads((tmp_path / ".u.bin.pinclient-part.json").read_text())["download"]["received"]
        assert 0 < kept <= FullDisk.quota
        assert len(seen.requests) == 1, "a storage error is not retried"
        # Space is freed: the next run continues from what was kept.
        monkeypatch.setattr(partfile, "_open_file", real_open)
        result = fetch_update(s.url("/u.bin"), dest, config=root_pinned_config, sha256=sha(data))
    assert result.resumed_from == kept
    assert seen.ranges[-1] == f"bytes={kept}-"
    assert dest.read_bytes() == data


_TMPFS_CHILD = r"""
import hashlib, json, os, subprocess, sys
from tests.hostile import child_main
folder, url, pins, digest = sys.argv[1:5]
subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", folder], check=True)
dest = os.path.join(folder, "u.bin")
with open(dest, "wb") as f:
    f.write(b"old version")
args = [url, "-o", dest, "--pins", pins, "--sha256", digest, "--retries", "0", "-q"]
out = {"first": child_main(args), "after_first": sorted(os.listdir(folder))}
with open(dest, "rb") as f:
    out["old"] = f.read().decode()
with open(os.path.join(folder, ".u.bin.pinclient-part.json")) as f:
    out["kept"] = json.load(f)["download"]["received"]
subprocess.run(["mount", "-o", "remount,size=8m", folder], check=True)
out["second"] = child_main(args)
out["after_second"] = sorted(os.listdir(folder))
with open(dest, "rb") as f:
    out["ok"] = hashlib.sha256(f.read()).hexdigest() == digest
print(json.dumps(out))
"""


@posix_only("unshare, mount and a tmpfs (Linux, as root)")
def test_enospc_on_a_real_tiny_tmpfs(root_pinned_config: PinConfig, tmp_path: Path,
                                     https_server: ServeHTTPS) -> None:
    # The tmpfs lives in a private mount namespace (unshare -m): it vanishes with the child process,
    # so nothing is ever left mounted, even if the test is killed.
    if os.geteuid() != 0 or shutil.which("unshare") is None or shutil.which("mount") is None:
        pytest.skip("needs root and util-linux unshare/mount")
    probe = subprocess.run(["unshare", "-m", "--propagation", "private", "true"], capture_output=True,
                           check=False)
    if probe.returncode != 0:
        pytest.skip("cannot create a mount namespace here")
    data = os.urandom(1024 * 1024)
    folder = tmp_path / "tiny"
    folder.mkdir()
    seen = Seen()
    with https_server({"/u.bin": ranged(data, seen)}) as s:
        done = subprocess.run(
            ["unshare", "-m", "--propagation", "private", sys.executable, "-c", _TMPFS_CHILD,
             str(folder), s.url("/u.bin"), str(root_pinned_config.path), sha(data)],
            cwd=REPO, capture_output=True, text=True, timeout=120, check=False)
    if done.returncode != 0 and "mount" in done.stderr and not done.stdout:
        pytest.skip(f"cannot mount a tmpfs: {done.stderr.strip()[-200:]}")
    assert done.stdout.strip(), done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["first"] == 7, done.stderr
    assert "No space left on device" in done.stderr
    assert out["after_first"] == [".u.bin.pinclient-part", ".u.bin.pinclient-part.json", "u.bin"]
    assert out["old"] == "old version"
    assert out["kept"] > 0
    assert out["second"] == 0, done.stderr
    assert out["after_second"] == ["u.bin"]
    assert out["ok"]
    assert seen.ranges == [None, f"bytes={out['kept']}-"]
    assert list(folder.iterdir()) == [], "the tmpfs is gone with its namespace"


# --------------------------------------------------------------------------- durability


def test_part_is_fsynced_before_the_rename_and_the_folder_after(root_pinned_config: PinConfig,
                                                                tmp_path: Path, payload: bytes,
                                                                monkeypatch: pytest.MonkeyPatch,
                                                                https_server: ServeHTTPS) -> None:
    if not Path("/proc/self/fd").is_dir():
        pytest.skip("needs /proc to name file descriptors")
    events: list[tuple[str, str]] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        real_fsync(fd)

    def replace(src: object, dst: object) -> None:
        events.append(("replace", f"{src} -> {dst}"))
        real_replace(src, dst)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    dest = tmp_path / "u.bin"
    with https_server({"/u.bin": Response(200, payload)}) as s:
        fetch_update(s.url("/u.bin"), dest, config=root_pinned_config)
    monkeypatch.setattr(os, "fsync", real_fsync)
    monkeypatch.setattr(os, "replace", real_replace)
    final = events.index(("replace", f"{tmp_path / '.u.bin.pinclient-part'} -> {dest}"))
    assert ("fsync", str(tmp_path / ".u.bin.pinclient-part")) in events[:final]
    assert ("fsync", str(tmp_path)) in events[final:]


# --------------------------------------------------------------------------- progress and headers


def test_progress_callback_gets_done_and_total(root_pinned_config: PinConfig, tmp_path: Path,
                                               https_server: ServeHTTPS) -> None:
    data = os.urandom(500_000)
    calls: list[tuple[int, int | None]] = []
    with https_server({"/u.bin": ranged(data, Seen(), drop_after={0: 200_000})}) as s:
        fetch_update(s.url("/u.bin"), tmp_path / "u.bin", config=root_pinned_config,
                     progress=lambda done, total: calls.append((done, total)),
                     retries=1)
    assert calls[0] == (0, len(data))
    assert calls[-1] == (len(data), len(data))
    assert all(total == len(data) for _, total in calls)
    assert [done for done, _ in calls] == sorted(done for done, _ in calls), "never goes backwards"
    assert (200_000, len(data)) in calls, "the resumed attempt starts from its kept bytes"


def test_progress_without_content_length(root_pinned_config: PinConfig, tmp_path: Path,
                                         payload: bytes, https_server: ServeHTTPS) -> None:
    calls: list[tuple[int, int | None]] = []
    with https_server({"/u.bin": Response(200, payload, content_length=None)}) as s:
        fetch_update(s.url("/u.bin"), tmp_path / "u.bin", config=root_pinned_config,
                     progress=lambda done, total: calls.append((done, total)))
    assert calls[-1] == (len(payload), None)


class FakeTTY(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize(("tty", "quiet", "bar"), [(True, False, True), (True, True, False), (False, False, False)])
def test_cli_progress_bar_only_on_a_terminal(root_pinned_config: PinConfig, tmp_path: Path,
                                             payload: bytes, monkeypatch: pytest.MonkeyPatch,
                                             tty: bool, quiet: bool, bar: bool,
                                             https_server: ServeHTTPS) -> None:
    err = FakeTTY() if tty else io.StringIO()
    monkeypatch.setattr(sys, "stderr", err)
    with https_server({"/u.bin": Response(200, payload)}) as s:
        args = [s.url("/u.bin"), "-o", str(tmp_path / "u.bin"), "--pins", str(root_pinned_config.path)]
        assert fetch_main([*args, "-q"] if quiet else args) == 0
    text = err.getvalue()
    assert ("100% [" in text) is bar
    if bar:
        assert "\r" in text
        assert "/s" in text
        assert "ETA" in text
        assert text.endswith("\n")


def test_user_agent_and_extra_headers(root_pinned_config: PinConfig, tmp_path: Path,
                                      payload: bytes, https_server: ServeHTTPS) -> None:
    seen = Seen()
    with https_server({"/u.bin": ranged(payload, seen)}) as s:
        fetch_update(s.url("/u.bin"), tmp_path / "u.bin", config=root_pinned_config)
        assert fetch_main([s.url("/u.bin"), "-o", str(tmp_path / "u.bin"), "--pins", str(root_pinned_config.path),
                           "--header", "X-Update-Channel: beta", "--header", "User-Agent: myapp/2.1",
                           "-q"]) == 0
    assert seen.requests[0]["user-agent"] == f"pinclient/{__version__}"
    assert seen.requests[0]["accept-encoding"] == "identity"
    assert seen.requests[1]["x-update-channel"] == "beta"
    assert seen.requests[1]["user-agent"] == "myapp/2.1"


@pytest.mark.parametrize("headers", [{"Range": "bytes=0-"}, {"Host": "evil.test"}, {"X-A": "b\r\nX-Injected: 1"},
                                     {"Bad Name": "x"}, {"Accept-Encoding": "gzip"}])
def test_unsafe_headers_are_refused(root_pinned_config: PinConfig, tmp_path: Path,
                                    headers: dict[str, str]) -> None:
    with pytest.raises(UsageError):
        fetch_update("https://updates.test/u", tmp_path / "u", config=root_pinned_config, headers=headers)
    assert list(tmp_path.iterdir()) == [tmp_path / "cfg"]


@pytest.mark.parametrize("flag", [["--header", "no colon"], ["--retries", "-1"], ["--deadline", "0"],
                                  ["--max-size", "lots"], ["--proxy", "x", "--no-proxy"]])
def test_bad_download_flags_are_usage_errors(root_pinned_config: PinConfig, flag: list[str],
                                             capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        fetch_main(["https://updates.test/u", "--pins", str(root_pinned_config.path), *flag])
    assert info.value.code == 2
    assert "Traceback" not in capsys.readouterr().err


def test_cli_json_reports_attempts_and_resume(root_pinned_config: PinConfig, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str],
                                              https_server: ServeHTTPS) -> None:
    data = os.urandom(300_000)
    with https_server({"/u.bin": ranged(data, Seen(), drop_after={0: 100_000})}) as s:
        code = fetch_main([s.url("/u.bin"), "-o", str(tmp_path / "u.bin"), "--pins", str(root_pinned_config.path),
                           "--json", "--retries", "2", "--sha256", sha(data)])
    out = json.loads(capsys.readouterr().out)
    assert code == 0
    assert out["attempts"] == 2
    assert 0 < out["resumed_from"] <= 100_000
