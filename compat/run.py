"""The compatibility runner: a peer's own tests with pinclient's transport swapped in.

    python compat/run.py                   # every peer wired in, at the version installed next to pinclient
    python compat/run.py --peer requests   # one of them

For each peer it downloads the sdist of the installed version from PyPI (sdists ship their tests;
cached in the user cache folder), unpacks it in a temporary folder, adds pinclient's file of HTTPS
variants (the peer's own files are never edited), and runs the same tests twice with pytest: once
with the peer's own transport (the baseline) and once with pinclient's, swapped in by the pytest
plugin ``compat/pinclient_compat_<peer>.py``. It prints, per suite, the tests that passed with
pinclient, those that passed in the baseline, the intended refusals (each with its reason, from
``compat/refusals.toml``), the tests skipped (those this machine cannot run, and the peer's own
skips and xfails, with pytest's reason), and anything else, which must be zero: the exit status is 1
otherwise.

Every server is on 127.0.0.1 and the plugin lets the tests resolve only loopback names. Wired in:
python-tuf (its fetcher and updater tests, in this interpreter), requests (its
tests/test_requests.py, in a venv of its own with pytest-httpbin and its other test requirements)
and urllib3 (its test/with_dummyserver TLS tests and its plain-http pool and manager tests over TLS,
in a venv of its own with hypercorn, quart-trio and trustme); docs/library.md says what each run
covers. A refusal's ``test`` is a node id, or a pattern in which ``*`` matches any run of
characters; a pattern that matches no failing test counts as anything else.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import importlib.metadata
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

COMPAT = Path(__file__).resolve().parent
ROOT = COMPAT.parent
sys.path.insert(0, str(ROOT))  # pinclient itself, when run from a checkout without installing

from pinclient._paths import user_cache_dir  # noqa: E402
from pinclient._pki import CA  # noqa: E402
from pinclient.policy import spki_sha256  # noqa: E402


@dataclass(frozen=True)
class Peer:
    """One peer's suite: what to download, what to add, what to run, and what its tests need."""

    distribution: str
    covered: str  # what the report says it ran
    run: tuple[str, ...]  # pytest arguments (node ids or folders below the sdist's root)
    variants: dict[str, str] = field(default_factory=dict)  # compat file -> its path in the tree
    # Test-only requirements installed (with the peer at the installed version) into a venv of the
    # peer's own in the cache, so the peer's test dependencies never enter pinclient's environment.
    # None: run in this interpreter (everything is already installed with pinclient[test]).
    requirements: tuple[str, ...] | None = None
    pytest_args: tuple[str, ...] = ()


PEERS: dict[str, Peer] = {
    "tuf": Peer("tuf", "tests/test_fetcher_ng.py, tests/test_updater_ng.py, each test over TLS",
                run=("tests/test_pinclient_https.py",),
                variants={"tuf_https_variants.py": "tests/test_pinclient_https.py"}),
    "requests": Peer("requests", "tests/test_requests.py, each test over TLS",
                     run=("tests/test_pinclient_https.py",),
                     variants={"requests_https_variants.py": "tests/test_pinclient_https.py"},
                     requirements=("pytest==9.2.0", "pytest-httpbin==2.1.0", "httpbin==0.10.4",
                                   "pytest-mock==3.17.0", "trustme==1.2.1")),
    # urllib3's dependency group "test" with the PyPI hypercorn (its uv.lock takes a fork of its own
    # from git), cryptography as in its uv.lock (trustme 1.2.1 cannot issue a certificate without
    # subjectAltName on cryptography 51).
    "urllib3": Peer("urllib3", "test/with_dummyserver (its TLS tests, and its plain-http pool, "
                    "manager, proxy and chunked-upload tests over TLS)",
                    run=tuple(f"test/with_dummyserver/{t}" for t in (
                        "test_https.py", "test_poolmanager.py", "test_proxy_poolmanager.py",
                        "test_connectionpool.py", "test_connection.py", "test_no_ssl.py",
                        "test_socketlevel.py::TestSNI", "test_socketlevel.py::TestALPN",
                        "test_socketlevel.py::TestClientCerts", "test_socketlevel.py::TestSSL",
                        "test_pinclient_https.py")),
                    variants={"urllib3_https_variants.py": "test/with_dummyserver/test_pinclient_https.py"},
                    requirements=("pytest==9.2.0", "pytest-timeout==2.4.0", "trustme==1.2.1",
                                  "cryptography==49.0.0", "hypercorn==0.18.0", "quart==0.22.0",
                                  "quart-trio==0.12.0", "trio==0.35.0", "anyio==4.16.0", "h2==4.4.1",
                                  "httpx==0.29.0", "idna==3.21"),
                    pytest_args=("--timeout=300",)),
}


@dataclass
class Outcome:
    passed: set[str] = field(default_factory=set)
    skipped: dict[str, str] = field(default_factory=dict)  # test -> reason
    failed: dict[str, str] = field(default_factory=dict)  # test -> first line of the failure


def sdist(distribution: str, version: str) -> Path:
    """The peer's sdist, from the cache or downloaded by pip."""
    cache = user_cache_dir() / "compat"
    cache.mkdir(parents=True, exist_ok=True)
    found = sorted(cache.glob(f"{distribution}-{version}.tar.gz"))
    if not found:
        subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--quiet", "--no-deps",
                        "--no-binary", ":all:", "--dest", str(cache), f"{distribution}=={version}"],
                       check=True)
        found = sorted(cache.glob(f"{distribution}-{version}.tar.gz"))
    if not found:
        raise SystemExit(f"pip did not leave {distribution}-{version}.tar.gz in {cache}")
    return found[0]


def unpack(archive: Path, into: Path) -> Path:
    with tarfile.open(archive) as tar:
        tar.extractall(into, filter="data")
    (tree,) = [p for p in into.iterdir() if p.is_dir()]
    return tree


def make_pki(folder: Path) -> dict[str, str]:
    """A CA, a server certificate for 127.0.0.1 and localhost, and a pins.toml pinning the CA."""
    root = CA("pinclient compat root")
    leaf = root.child_ca("pinclient compat issuing CA").issue_leaf("127.0.0.1", "localhost")
    files = {"bundle": folder / "root.pem", "cert": folder / "server.pem", "key": folder / "server.key",
             "pins": folder / "pins.toml"}
    files["bundle"].write_bytes(root.cert_pem())
    files["cert"].write_bytes(leaf.chain_pem())
    files["key"].write_bytes(leaf.key_pem())
    pin = base64.b64encode(spki_sha256(root.cert)).decode()
    files["pins"].write_text(
        f'version = 1\n[defaults]\nunpinned = "refuse"\nca_bundle = "{files["bundle"]}"\n\n'
        f'[[pinset]]\nname = "compat"\nhosts = ["127.0.0.1", "localhost"]\n'
        f'issuers = [{{ spki_sha256 = "{pin}" }}]\n')
    return {k: str(v) for k, v in files.items()}


def peer_python(name: str, peer: Peer, version: str) -> str:
    """The interpreter that runs the peer's tests: this one, or the peer's own venv in the cache."""
    if peer.requirements is None:
        return sys.executable
    wanted = [f"{peer.distribution}=={version}", *peer.requirements]
    key = hashlib.sha256("\n".join([sys.version, *wanted]).encode()).hexdigest()[:12]
    venv = user_cache_dir() / "compat" / f"venv-{name}-{key}"
    python = venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    if not (venv / "complete").exists():
        shutil.rmtree(venv, ignore_errors=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--quiet",
                        "--disable-pip-version-check", "-e", str(ROOT), *wanted], check=True)
        (venv / "complete").write_text("\n".join(wanted) + "\n")
    return str(python)


def run_pytest(python: str, tree: Path, plugin: str, tests: list[str], env: dict[str, str],
               report: Path, extra: tuple[str, ...] = ()) -> Outcome:
    subprocess.run([python, "-m", "pytest", "-p", plugin, "-p", "no:cacheprovider", "-q",
                    "-o", "addopts=", f"--junitxml={report}", *extra, *tests],
                   cwd=tree, env=env, stdout=subprocess.DEVNULL, check=False)
    outcome = Outcome()
    for case in ET.parse(report).getroot().iter("testcase"):  # noqa: S314 - our own pytest's report
        node = node_id(tree, case.get("classname", ""), case.get("name", ""))
        problem = case.find("failure")
        if problem is None:
            problem = case.find("error")
        skipped = case.find("skipped")
        if problem is not None:
            outcome.failed[node] = (problem.get("message") or "").splitlines()[0][:160]
        elif skipped is not None:
            outcome.skipped[node] = skipped.get("message") or ""
            if skipped.get("type") == "pytest.xfail":  # ran, and failed as the peer's suite expects
                outcome.skipped[node] = f"xfail in the peer's own suite {outcome.skipped[node]}".strip()
        else:
            outcome.passed.add(node)
    return outcome


def node_id(tree: Path, classname: str, name: str) -> str:
    """pytest's node id from a JUnit ``classname`` (``tests.test_x.TestY``, or ``tests.test_x`` for a
    test function): the longest dotted prefix naming a file in the tree is the module."""
    parts = classname.split(".")
    for cut in range(len(parts), 0, -1):
        path = "/".join(parts[:cut]) + ".py"
        if (tree / path).is_file():
            return "::".join([path, *parts[cut:], name])
    return "::".join([classname, name])


def refusal_for(test: str, intended: dict[str, str]) -> str | None:
    """The reason ``test`` is an intended refusal: an entry naming it exactly, or a pattern in which
    ``*`` matches any run of characters (nothing else is special, so ``[h2]`` stays literal)."""
    if test in intended:
        return intended[test]
    for pattern, reason in intended.items():
        if "*" in pattern and re.fullmatch(".*".join(map(re.escape, pattern.split("*"))), test):
            return reason
    return None


def refusals(peer: str) -> dict[str, str]:
    data = tomllib.loads((COMPAT / "refusals.toml").read_text())
    return {r["test"]: " ".join(r["reason"].split()) for r in data.get("refusal", []) if r["peer"] == peer}


def run_peer(name: str, work: Path) -> int:
    peer = PEERS[name]
    distribution = peer.distribution
    version = importlib.metadata.version(distribution)
    tree = unpack(sdist(distribution, version), work / "src")
    for source, target in peer.variants.items():
        shutil.copyfile(COMPAT / source, tree / target)
    python = peer_python(name, peer, version)
    pki = make_pki(work)
    base_env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "PINCLIENT_COMPAT"))}
    base_env.update(PYTHONPATH=os.pathsep.join([str(COMPAT), str(tree), str(ROOT)]),
                    PINCLIENT_COMPAT_SERVER=str(COMPAT / "https_server.py"),
                    PINCLIENT_COMPAT_CERT=pki["cert"], PINCLIENT_COMPAT_KEY=pki["key"])
    for var in ("https_proxy", "HTTPS_PROXY", "http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"):
        base_env.pop(var, None)
    base_env.update(PINCLIENT_COMPAT_BUNDLE=pki["bundle"])
    plugin = f"pinclient_compat_{name}"
    baseline = run_pytest(python, tree, plugin, list(peer.run), {**base_env, "SSL_CERT_FILE": pki["bundle"]},
                          work / "baseline.xml", peer.pytest_args)
    checks = work / "pin-checks"
    pinned_env = {**base_env, "PINCLIENT_COMPAT_PINS": pki["pins"], "PINCLIENT_COMPAT_CHECKS": str(checks)}
    pinned = run_pytest(python, tree, plugin, list(peer.run), pinned_env, work / "pinclient.xml",
                        peer.pytest_args)
    pin_checks = int(checks.read_text()) if checks.exists() else 0
    intended = refusals(name)
    refused = {t: why for t in pinned.failed if (why := refusal_for(t, intended)) is not None}
    other = {t: f"failed: {m}" for t, m in pinned.failed.items() if t not in refused}
    other.update({t: "listed as a refusal but passed" for t in intended if t in pinned.passed})
    other.update({p: "a refusal pattern that matches no failing test" for p in intended
                  if "*" in p and not any(refusal_for(t, {p: ""}) is not None for t in pinned.failed)})
    other.update({t: "passes in the baseline only" for t in baseline.passed
                  if t not in pinned.passed and t not in pinned.failed and t not in pinned.skipped})
    other.update({t: f"fails in the baseline too: {m}" for t, m in baseline.failed.items()})
    if not pin_checks:
        other["(the run)"] = "pinclient's transport was not used: no pin check happened"
    print(f"{distribution} {version}: {peer.covered}; {pin_checks} connections pin-checked")
    print(f"  passed with pinclient    {len(pinned.passed):4d}")
    print(f"  passed in the baseline   {len(baseline.passed):4d}")
    print(f"  intended refusals        {len(refused):4d}")
    for test, reason in sorted(refused.items()):
        print(f"    {test}: {reason}")
    print(f"  skipped (cannot run here){len(pinned.skipped):4d}")
    for test, reason in sorted(pinned.skipped.items()):
        print(f"    {test}: {reason}")
    print(f"  anything else            {len(other):4d}")
    for test, why in sorted(other.items()):
        print(f"    {test}: {why}")
    return 1 if other else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--peer", choices=sorted(PEERS), action="append",
                        help="a peer to run (default: all wired in)")
    parser.add_argument("--keep", action="store_true", help="keep the work folder and print its path")
    args = parser.parse_args(argv)
    status = 0
    for peer in args.peer or sorted(PEERS):
        work = Path(tempfile.mkdtemp(prefix=f"pinclient-compat-{peer}-"))
        try:
            status |= run_peer(peer, work)
        finally:
            if args.keep:
                print(f"  work folder: {work}")
            else:
                shutil.rmtree(work, ignore_errors=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
