"""Shared set-up for the fuzz targets: instrument pinclient, switch the network off, and build a
scratch folder with the files the inputs may name."""

from __future__ import annotations

import contextlib
import importlib
import pkgutil
import socket
import sys
import tempfile
from pathlib import Path
from typing import Any, NoReturn

import atheris


def instrument_pinclient() -> None:
    """Import every pinclient module under atheris's coverage instrumentation (the CLI imports most
    of them lazily, which would leave them uninstrumented)."""
    with atheris.instrument_imports(include=["pinclient", "tomllib", "tomli"]):
        import pinclient

        for info in pkgutil.walk_packages(pinclient.__path__, "pinclient."):
            if info.name.endswith("__main__"):  # importing it runs the CLI
                continue
            with contextlib.suppress(ImportError):  # an optional extra that is not installed
                importlib.import_module(info.name)


def _refuse(*args: Any, **kwargs: Any) -> NoReturn:
    raise OSError("fuzzing: the network is switched off")


def disable_network() -> None:
    """No input may reach the network: name resolution and every connect fail. (urllib3 resolves
    through socket.getaddrinfo and connects with socket.socket.connect.)"""
    socket.getaddrinfo = _refuse  # type: ignore[assignment]
    socket.create_connection = _refuse  # type: ignore[assignment]
    socket.socket.connect = _refuse  # type: ignore[method-assign]
    socket.socket.connect_ex = _refuse  # type: ignore[method-assign]


def scratch() -> Path:
    """A folder with a valid pins file, a trust bundle, a certificate and some broken files."""
    from pinclient._pki import CA
    from pinclient.policy import spki_sha256

    root = CA("Fuzz Root")
    pin = __import__("base64").b64encode(spki_sha256(root.cert)).decode()
    folder = Path(tempfile.mkdtemp(prefix="pinclient-fuzz-"))
    (folder / "bundle.pem").write_bytes(root.cert_pem())
    (folder / "cert.pem").write_bytes(root.issue_leaf("updates.test").chain_pem(include_root=True))
    (folder / "pins.toml").write_text(
        'version = 1\n[defaults]\nca_bundle = "bundle.pem"\n\n[[pinset]]\nname = "u"\n'
        f'hosts = ["updates.test", "*.cdn.test"]\nissuers = [{{ spki_sha256 = "{pin}" }}]\n')
    (folder / "bad.toml").write_text("version = 2\n")
    (folder / "empty").mkdir()
    return folder


def main(test_one_input: Any) -> None:
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()
