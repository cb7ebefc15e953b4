"""Shared fixtures: a test PKI modelled on the 2011 Comodo case, name resolution for ``*.test`` on
loopback, the HTTPS update-server factory, and helpers to write pins files.

The world: two roots are trusted (both in the bundle, as both were in every browser):
``pinned_root`` → ``pinned_int`` issues the real update server's certificate; ``rogue_root``
(UTN-USERFirst-Hardware's role) issues a certificate for the same host straight off the root.
"""

from __future__ import annotations

import base64
import os
import socket
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import pytest
from cryptography import x509
from hypothesis import settings

from pinclient._demo import LoopbackServer, Route
from pinclient._pki import CA, Leaf
from pinclient.config import PinConfig, load_pins
from pinclient.policy import spki_sha256

HOST = "updates.test"

# Hypothesis profiles, chosen by $HYPOTHESIS_PROFILE (.ci/run exports "ci"). No deadline anywhere:
# a deadline is a timing assertion, and this machine is shared. "ci" is bounded and derandomised so
# CI stays within a few minutes and cannot flake; "thorough" is for a long local run.
settings.register_profile("dev", max_examples=100, deadline=None)
settings.register_profile("ci", max_examples=200, deadline=None, derandomize=True, database=None,
                          print_blob=True)
settings.register_profile("thorough", max_examples=2000, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))

_real_getaddrinfo = socket.getaddrinfo


def _loopback_getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
    # Test host names live on loopback; nothing in the suite may reach another address.
    name = host.decode() if isinstance(host, bytes) else host
    if isinstance(name, str) and (name.rstrip(".").endswith(".test") or name.rstrip(".") == "test"):
        name = "127.0.0.1"
    elif name not in ("localhost", "127.0.0.1", "::1", None):
        raise socket.gaierror(socket.EAI_NONAME, f"tests resolve only loopback names, not {name!r}")
    return _real_getaddrinfo(name, *args, **kwargs)


@pytest.fixture(autouse=True)
def loopback_dns(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(socket, "getaddrinfo", _loopback_getaddrinfo)
    # fetch_update honours the proxy environment; a developer's or CI's proxy must not see the suite.
    for var in ("https_proxy", "HTTPS_PROXY", "no_proxy", "NO_PROXY"):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture(autouse=True)
def restore_pinclient_logger() -> Iterator[None]:
    # The CLI's -v/-q reconfigure the "pinclient" logger (level, handler on the current stderr, no
    # propagation); undo that so later tests' caplog and output are not affected.
    import logging

    logger = logging.getLogger("pinclient")
    saved = (logger.level, logger.handlers[:], logger.propagate)
    yield
    logger.setLevel(saved[0])
    logger.handlers[:] = saved[1]
    logger.propagate = saved[2]


def posix_only(why: str) -> pytest.MarkDecorator:
    """Skip a test where ``os.name`` is not "posix", saying which POSIX facility it needs (flock,
    mknod, mkfifo, AF_UNIX sockets, unshare, file owners); tests/test_platforms.py checks that every
    test using one says so."""
    return pytest.mark.skipif(os.name != "posix", reason=f"POSIX-only: {why}")


def b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode()


@dataclass
class PKI:
    pinned_root: CA
    pinned_int: CA
    rogue_root: CA
    untrusted_root: CA
    bundle: Path

    def pin_of(self, ca: CA) -> str:
        return b64(spki_sha256(ca.cert))


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    folder = tmp_path_factory.mktemp("pki")
    pinned_root = CA("Example Root R1", org="Example Inc")
    pinned_int = pinned_root.child_ca("Example Issuing CA 2", org="Example Inc")
    rogue_root = CA("UTN-USERFirst-Hardware", org="The USERTRUST Network")
    untrusted_root = CA("Nobody Trusts Me")
    bundle = folder / "bundle.pem"
    bundle.write_bytes(pinned_root.cert_pem() + rogue_root.cert_pem())
    return PKI(pinned_root, pinned_int, rogue_root, untrusted_root, bundle)


class ServeHTTPS(Protocol):
    def __call__(self, routes: dict[str, Route] | None = None, *, issuer: CA | None = None,
                 host: str = HOST, leaf: Leaf | None = None, include_root: bool = False,
                 extra: Sequence[x509.Certificate] = (), max_version: Any = None) -> LoopbackServer: ...


@pytest.fixture
def https_server(pki: PKI) -> Iterator[ServeHTTPS]:
    """The one HTTPS update-server factory (pinclient._demo.LoopbackServer, real TLS on
    127.0.0.1), as urllib3's test suite has one per kind of server: each call issues its own
    certificate for ``host`` from ``issuer`` (the pinned intermediate unless asked; the rogue root
    for the 2011 replay), or presents the given ``leaf``, with its intermediates (``include_root``
    adds the root, ``extra`` appends certificates: hostile chains). The server is running when
    returned; ``with`` stops it at the end of the block, the fixture stops it at the latest when
    the test ends. Routes map a path to a body, a Response, or a function of (path, headers)."""
    started: list[LoopbackServer] = []

    def serve(routes: dict[str, Route] | None = None, *, issuer: CA | None = None, host: str = HOST,
              leaf: Leaf | None = None, include_root: bool = False,
              extra: Sequence[x509.Certificate] = (), max_version: Any = None) -> LoopbackServer:
        assert leaf is None or issuer is None, "a leaf or an issuer, not both"
        leaf = leaf or (issuer or pki.pinned_int).issue_leaf(host)
        context = leaf.server_context(include_root=include_root, extra=extra, max_version=max_version)
        server = LoopbackServer(context, routes).start()
        started.append(server)
        return server

    yield serve
    for server in started:
        server.stop()


def write_pins(folder: Path, body: str, *, bundle: Path | None = None, unpinned: str = "refuse") -> Path:
    """Write a pins.toml with a [defaults] pointing at ``bundle`` and the given body."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "pins.toml"
    defaults = f'[defaults]\nunpinned = "{unpinned}"\n'
    if bundle is not None:
        defaults += f'ca_bundle = "{bundle}"\n'
    path.write_text(f"version = 1\n{defaults}\n{body}")
    return path


def pinset(name: str, hosts: list[str], *issuers: str) -> str:
    host_list = ", ".join(f'"{h}"' for h in hosts)
    return f'[[pinset]]\nname = "{name}"\nhosts = [{host_list}]\nissuers = [\n' + "".join(
        f"  {i},\n" for i in issuers) + "]\n"


@pytest.fixture
def root_pinned_config(pki: PKI, tmp_path: Path) -> PinConfig:
    """updates.test pinned to the Example root's key."""
    body = pinset("example-updates", [HOST],
                  f'{{ spki_sha256 = "{pki.pin_of(pki.pinned_root)}", label = "Example Root R1" }}')
    return load_pins(write_pins(tmp_path / "cfg", body, bundle=pki.bundle))


@pytest.fixture
def payload() -> Iterator[bytes]:
    yield b"pinclient update payload\n" * 4096
