"""``pinclient keygen`` and ``pinclient sign``: the publisher's side of minisign signatures.

The main CLI registers these (``configure_*`` fills a subparser, ``run_*`` runs it). Failures are
raised as pinclient errors, which the main CLI prints and maps to exit codes: a bad key file, a
wrong password or an unreadable input is the caller's to fix, so it is a :class:`UsageError`.
``pinclient.minisign`` (and with it ``cryptography``) is imported inside ``run_*`` so that other
commands and ``--help`` do not pay for it.
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING

from ..errors import SignatureError, UsageError

if TYPE_CHECKING:
    import argparse

    from ..minisign import SecretKey

PASSWORD_ENV = "PINCLIENT_KEY_PASSWORD"  # noqa: S105 (the variable's name, not a password)


def default_secret_key_path() -> str:
    """Where ``minisign`` itself keeps the secret key, so both tools find the same one."""
    config_dir = os.environ.get("MINISIGN_CONFIG_DIR") or os.path.join(
        os.path.expanduser("~"), ".minisign"
    )
    return os.path.join(config_dir, "minisign.key")


def configure_keygen(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-p", "--public-key", metavar="PUB", default="minisign.pub",
                        help="public key file to write (default: %(default)s)")
    parser.add_argument("-s", "--secret-key", metavar="KEY", default=None,
                        help="secret key file to write (default: ~/.minisign/minisign.key, "
                        "or $MINISIGN_CONFIG_DIR/minisign.key)")
    parser.add_argument("-f", "--force", action="store_true",
                        help="overwrite existing key files")
    parser.add_argument("-W", "--no-password", action="store_true",
                        help=f"store the secret key unencrypted (otherwise the password is read "
                        f"from ${PASSWORD_ENV}, else asked for on the terminal)")


def run_keygen(args: argparse.Namespace) -> int:
    """Write a new key pair. Raises UsageError (existing files, no password source, I/O)."""
    from .. import minisign  # deferred: cryptography, not for --help

    public_path: str = args.public_key
    secret_path: str = args.secret_key or default_secret_key_path()
    if not args.force:
        # Check before the (slow) key derivation, as minisign does; O_EXCL still guards the race.
        for path in (secret_path, public_path):
            if os.path.lexists(path):
                raise UsageError(f"{path} already exists; pass --force to overwrite it")
    password = None if args.no_password else _new_password()
    secret, public = minisign.generate_keypair(password)
    try:
        os.makedirs(os.path.dirname(secret_path) or ".", mode=0o700, exist_ok=True)
        secret.to_file(secret_path, force=args.force)
        public.to_file(public_path, force=args.force)
    except FileExistsError as e:
        raise UsageError(f"{e.filename} already exists; pass --force to overwrite it") from e
    except OSError as e:
        raise UsageError(f"cannot write {e.filename or 'key file'}: {e.strerror}") from e
    print(f"secret key: {secret_path} ({'encrypted' if password else 'NOT encrypted'})")
    print(f"public key: {public_path} (key id {public.key_id_hex})")
    print(f'for the pinset: signing_keys = ["{public.to_string()}"]')
    return 0


def configure_sign(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("files", nargs="+", metavar="FILE", help="files to sign")
    parser.add_argument("-s", "--key", metavar="KEYFILE", default=None,
                        help="secret key file (default: ~/.minisign/minisign.key)")
    parser.add_argument("-t", "--trusted-comment", metavar="TRUSTED_COMMENT", default=None,
                        help="signed one-line comment (default: timestamp and file name)")
    parser.add_argument("-x", "--sig-file", metavar="SIGFILE", default=None,
                        help="signature file to write (default: FILE.minisig; one FILE only)")
    parser.add_argument("--legacy", action="store_true",
                        help="sign the file itself rather than its BLAKE2b hash (minisign -l); "
                        "verifiers then need the whole file")


def run_sign(args: argparse.Namespace) -> int:
    """Write FILE.minisig for each FILE. Raises UsageError (key, password, comment, I/O)."""
    from .. import minisign  # deferred: cryptography, not for --help

    files: list[str] = args.files
    if args.sig_file is not None and len(files) != 1:
        raise UsageError("-x/--sig-file works with a single FILE")
    key = _load_secret_key(args.key or default_secret_key_path())
    for path in files:
        sig_path: str = args.sig_file or path + ".minisig"
        try:
            data = minisign.sign(key, path, trusted_comment=args.trusted_comment or None,
                                 prehash=not args.legacy)
        except ValueError as e:
            raise UsageError(str(e)) from e
        except OSError as e:
            raise UsageError(f"cannot read {path}: {e.strerror}") from e
        try:
            # Temporary file in the same folder, then os.replace: never a half-written .minisig.
            minisign._write_file(sig_path, data, mode=0o644, force=True)
        except OSError as e:
            raise UsageError(f"cannot write {sig_path}: {e.strerror}") from e
        print(sig_path)
    return 0


def _load_secret_key(path: str) -> SecretKey:
    from .. import minisign  # deferred: cryptography, not for --help

    try:
        return minisign.SecretKey.from_file(path, _existing_password)
    except OSError as e:
        raise UsageError(f"cannot read secret key {path}: {e.strerror}") from e
    except SignatureError as e:
        raise UsageError(f"secret key {path}: {e.message}") from e


def _existing_password() -> str:
    """The password of an encrypted key: $PINCLIENT_KEY_PASSWORD, else a prompt. Raises
    UsageError when neither is available."""
    env = os.environ.get(PASSWORD_ENV)
    if env is not None:
        return env
    _require_terminal("the secret key is encrypted")
    import getpass

    return getpass.getpass("Password: ")


def _new_password() -> str:
    """A password for a new key, from the environment or typed twice. Raises UsageError."""
    env = os.environ.get(PASSWORD_ENV)
    if env is not None:
        if not env:
            raise UsageError(f"${PASSWORD_ENV} is empty; pass -W for an unencrypted key")
        return env
    _require_terminal("a password is needed to encrypt the secret key")
    import getpass

    password = getpass.getpass("Password for the new secret key: ")
    if not password:
        raise UsageError("empty password; pass -W for an unencrypted key")
    if getpass.getpass("Password (again): ") != password:
        raise UsageError("the passwords do not match")
    return password


def _require_terminal(why: str) -> None:
    # Without a terminal getpass would fall back to reading stdin with a warning, or hang in CI.
    if sys.stdin is None or not sys.stdin.isatty():
        raise UsageError(
            f"{why}, but there is no terminal to ask for it: set ${PASSWORD_ENV}"
            " (or pass -W to keygen for an unencrypted key)"
        )
