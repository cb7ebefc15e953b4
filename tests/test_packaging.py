"""Packaging: ``python -m build`` makes an sdist and a wheel that ``twine check`` passes, the wheel
carries py.typed and the licence, and the version has one source (pinclient/_version.py).

The build runs offline (``--no-isolation``, with the test extra's setuptools) on a copy of the
working tree, so it neither needs the network nor leaves build/ and *.egg-info in the checkout."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

import pinclient

ROOT = Path(__file__).resolve().parent.parent
IGNORE = shutil.ignore_patterns(".git", ".venv*", "build", "dist", "*.egg-info", "__pycache__",
                                ".*_cache", ".hypothesis", ".coverage")


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("build")
    setuptools = pytest.importorskip("setuptools")
    if int(setuptools.__version__.split(".")[0]) < 77:
        pytest.skip("needs setuptools >= 77 (PEP 639 licence metadata); install the test extra")
    src = tmp_path_factory.mktemp("src") / "pinclient"
    shutil.copytree(ROOT, src, ignore=IGNORE)
    out = src.parent / "dist"
    proc = subprocess.run([sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), str(src)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return out


pytestmark = pytest.mark.slow


def test_build_makes_an_sdist_and_a_wheel_named_after_the_one_version(dist: Path) -> None:
    version = pinclient.__version__
    assert sorted(p.name for p in dist.iterdir()) == [f"pinclient-{version}-py3-none-any.whl",
                                                      f"pinclient-{version}.tar.gz"]


def test_wheel_contents_and_metadata(dist: Path) -> None:
    version = pinclient.__version__
    with zipfile.ZipFile(next(dist.glob("*.whl"))) as whl:
        names = set(whl.namelist())
        meta = whl.read(f"pinclient-{version}.dist-info/METADATA").decode()
        entry_points = whl.read(f"pinclient-{version}.dist-info/entry_points.txt").decode()
    for name in ("pinclient/py.typed", "pinclient/__init__.py", "pinclient/_demo.py",
                 "pinclient/requests.py", "pinclient/_download/fetch.py", "pinclient/_cli/main.py",
                 "pinclient/_revocation/verify.py", f"pinclient-{version}.dist-info/licenses/LICENSE"):
        assert name in names
    assert not [n for n in names if n.startswith(("tests/", "examples/", "docs/"))]
    assert f"\nVersion: {version}\n" in meta
    assert "\nLicense-Expression: MIT\n" in meta
    assert "\nProvides-Extra: requests\n" in meta
    assert 'Requires-Dist: requests>=2.32.2; extra == "requests"' in meta
    assert "fetch-update = pinclient._cli:fetch_main" in entry_points
    assert "pinclient = pinclient._cli:main" in entry_points


def test_sdist_carries_tests_docs_examples_and_licence(dist: Path) -> None:
    prefix = f"pinclient-{pinclient.__version__}/"
    with tarfile.open(next(dist.glob("*.tar.gz"))) as sdist:
        names = {n.removeprefix(prefix) for n in sdist.getnames()}
    for name in ("LICENSE", "CHANGELOG.md", "README.md", "pins.toml", "pyproject.toml",
                 "pinclient/py.typed", "docs/threat-model.md", "docs/pins-toml.md", "docs/library.md",
                 "docs/faq.md", "examples/embedded_updater.py", "tests/conftest.py", "tests/hostile.py"):
        assert name in names, name
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]


def test_twine_check_passes(dist: Path) -> None:
    pytest.importorskip("twine")
    proc = subprocess.run([sys.executable, "-m", "twine", "check", "--strict", *map(str, dist.iterdir())],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_the_version_has_one_source() -> None:
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert 'dynamic = ["version"]' in pyproject
    assert 'version = { attr = "pinclient._version.__version__" }' in pyproject
    assert not re.search(r'(?m)^version\s*=\s*"', pyproject), "no literal version in pyproject.toml"
    literal = re.compile(r"__version__\s*=\s*[\"']")
    holders = [p.name for p in (ROOT / "pinclient").glob("*.py") if literal.search(p.read_text())]
    assert holders == ["_version.py"]
    assert re.fullmatch(r"\d+\.\d+\.\d+(?:[.-]?(?:a|b|rc|dev|post)\d+)?", pinclient.__version__)


def test_changelog_and_licence_are_there() -> None:
    assert "MIT License" in (ROOT / "LICENSE").read_text()
    assert (ROOT / "CHANGELOG.md").read_text().startswith("# Changelog")
