"""What DEST may be, checked before any connection and again before the final rename: a regular
file or a new name in an existing folder, the null device, or standard output (``-o -``, as curl
and wget). A folder, another device, a FIFO or a socket at DEST is never replaced (0.1.0, run as
root, replaced ``/dev/null`` with a regular file); a name too long for the folder and pinclient's
side files beside it is a usage error, not ``OSError: File name too long``. Pure but for ``stat``.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path
from typing import Literal

from ..errors import UsageError

__all__ = ["STDOUT", "DestKind", "check_dest", "dest_kind"]

#: What ``-o -`` means: the verified bytes go to standard output.
STDOUT = Path("/dev/stdout")
# The longest side file name is ".NAME.pinclient-part.json.<8 hex>.tmp" (.partfile): NAME plus this.
_SIDE_OVERHEAD = len(".") + len(".pinclient-part.json.") + 8 + len(".tmp")

DestKind = Literal["file", "devnull", "stdout"]


def _name_max(folder: Path) -> int:
    try:
        return os.pathconf(folder, "PC_NAME_MAX")
    except (OSError, ValueError, AttributeError):
        return 255


_KINDS = ((stat.S_ISREG, "regular file"), (stat.S_ISDIR, "folder"), (stat.S_ISCHR, "character device"),
          (stat.S_ISBLK, "block device"), (stat.S_ISFIFO, "FIFO"), (stat.S_ISSOCK, "socket"))


def _in_dev(target: Path) -> bool:
    """Whether DEST's folder is /dev's own file system (devtmpfs: device nodes and their links).

    Folders mounted below /dev with a file system of their own, such as the tmpfs /dev/shm, are
    ordinary places for files and are not "in /dev".
    """
    path = Path(os.path.abspath(target))
    if path.parts[1:2] != ("dev",):
        return False
    try:
        return os.stat(path.parent).st_dev == os.stat("/dev").st_dev
    except OSError:  # a folder that does not exist under /dev: refused as in /dev
        return True


def dest_kind(target: Path) -> DestKind:
    """What DEST is: a regular file (or nothing yet), ``/dev/null`` or standard output (:data:`STDOUT`).

    Raises:
        UsageError: DEST is a folder, a device, a FIFO or a socket (also through a symlink), or
            anything else in /dev, which pinclient never replaces; or its name is too long.
    """
    if target == STDOUT:
        return "stdout"
    try:
        st = os.stat(target)
    except FileNotFoundError:
        if _in_dev(target):
            raise UsageError(f"destination {str(target)!r} is in /dev; pinclient never creates "
                             "files there (use - for standard output, or /dev/null).") from None
        return "file"  # a new name (or a dangling symlink, which the rename replaces)
    except OSError as e:
        if e.errno == errno.ENAMETOOLONG:
            raise UsageError(f"destination {str(target)!r} is too long a path.") from None
        return "file"  # let opening the part say what is wrong (permissions, …)
    if stat.S_ISCHR(st.st_mode) and st.st_rdev == os.stat(os.devnull).st_rdev:
        return "devnull"  # the null device, wherever its node is (a chroot's, a container's)
    what = next((name for test, name in _KINDS if test(st.st_mode)), "special file")
    if what == "folder":
        raise UsageError(f"destination {str(target)!r} is a folder; give a file name.")
    if what == "regular file" and _in_dev(target):
        # /dev/stderr, /dev/fd/N: symlinks to whatever the stream is, a file when redirected;
        # replacing the link (the rule for a symlink at DEST) would break /dev for every process.
        raise UsageError(f"destination {str(target)!r} is in /dev; pinclient never writes there "
                         "(use - for standard output, or /dev/null).")
    if what == "regular file":
        return "file"
    raise UsageError(f"destination {str(target)!r} is a {what}; pinclient only ever replaces regular "
                     "files. Give a file name, /dev/null, or - for standard output.")


def check_dest(target: Path) -> DestKind:
    """Check DEST before any connection: its folder exists, its name fits, its kind (:func:`dest_kind`).

    Raises:
        UsageError: as :func:`dest_kind`; the folder is missing; the name is too long for pinclient's
            side files next to it.
    """
    kind = dest_kind(target)
    if kind != "file":
        return kind
    if not target.parent.is_dir():
        raise UsageError(f"destination folder {str(target.parent)!r} does not exist.")
    limit = _name_max(target.parent) - _SIDE_OVERHEAD
    length = len(os.fsencode(target.name))
    if length > limit:
        raise UsageError(f"the file name {target.name[:40]!r}… is {length} bytes long; at most {limit} "
                         "fit here (the folder allows "
                         f"{limit + _SIDE_OVERHEAD}, and pinclient keeps side files named "
                         "'.NAME.pinclient-part' next to it). Pass a shorter -o DEST.")
    return kind
