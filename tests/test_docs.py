"""The documentation cannot rot: every pinclient import shown in README.md, docs/*.md and examples/
works and names a public module, every `pinclient.x.y` and `pinclient/….py` it mentions exists, and
docs/architecture.md names every module of the package and states the import-linter layers exactly
as pyproject.toml declares them."""

from __future__ import annotations

import ast
import importlib
import re
import sys
from pathlib import Path
from typing import Any

import pytest

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "pinclient"
ARCHITECTURE = ROOT / "docs" / "architecture.md"
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
EXAMPLES = sorted((ROOT / "examples").glob("*.py"))

FENCE = re.compile(r"^```([^\n]*)\n(.*?)^```[ \t]*$", re.S | re.M)
SPAN = re.compile(r"`([^`]+)`")
IMPORT_LINE = re.compile(r"^\s*(?:import\s+pinclient\b|from\s+pinclient\b[\w.]*\s+import\b)")
DOTTED = re.compile(r"(?<![\w./$~%-])pinclient(?:\.[A-Za-z_]\w*)+")
PATH = re.compile(r"(?<![\w./$~%-])pinclient/[\w/]+\.py\b")


def rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def fences(text: str) -> list[tuple[str, str]]:
    """(info string, body) of each fenced code block."""
    return [(m.group(1).strip(), m.group(2)) for m in FENCE.finditer(text)]


def prose(text: str) -> str:
    """The text outside fenced code blocks."""
    return FENCE.sub("", text)


# --------------------------------------------------------------------------- finding what the docs use


def import_statements(code: str) -> list[str]:
    """The ``import pinclient…`` / ``from pinclient… import …`` statements of a code block, each
    joined onto one line (parenthesised and backslash-continued imports included)."""
    lines = code.splitlines()
    found = []
    i = 0
    while i < len(lines):
        if IMPORT_LINE.match(lines[i]):
            stmt = lines[i].split("#")[0].strip()
            while (stmt.count("(") > stmt.count(")") or stmt.endswith("\\")) and i + 1 < len(lines):
                i += 1
                stmt = stmt.rstrip("\\").rstrip() + " " + lines[i].split("#")[0].strip()
            found.append(stmt)
        i += 1
    return found


def imported_names(node: ast.AST) -> list[tuple[str, str | None]]:
    """(module, name) for a pinclient import: name is None for ``import pinclient.x``."""
    if isinstance(node, ast.Import):
        return [(a.name, None) for a in node.names if a.name.split(".")[0] == "pinclient"]
    if isinstance(node, ast.ImportFrom) and not node.level and (node.module or "").split(".")[0] == "pinclient":
        assert node.module is not None
        return [(node.module, a.name) for a in node.names]
    return []


def documented_imports() -> list[tuple[str, str, str | None]]:
    """(where, module, name) for every pinclient import in the docs' code blocks and in examples/."""
    out = []
    for doc in DOCS:
        for _info, body in fences(doc.read_text(encoding="utf-8")):
            for stmt in import_statements(body):
                node = ast.parse(stmt).body[0]
                out.extend((f"{rel(doc)}: {stmt}", module, name) for module, name in imported_names(node))
    for script in EXAMPLES:
        tree = ast.parse(script.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            for module, name in imported_names(node):
                out.append((f"{rel(script)}:{getattr(node, 'lineno', '?')}", module, name))
    return out


def documented_references() -> list[tuple[str, str]]:
    """(where, dotted name) for every ``pinclient.x.y`` in a backtick span of README.md and docs/,
    and in their Python code blocks."""
    out = []
    for doc in DOCS:
        text = doc.read_text(encoding="utf-8")
        for span in SPAN.findall(prose(text)):
            out.extend((rel(doc), ref) for ref in DOTTED.findall(span))
        for info, body in fences(text):
            if info.startswith("python"):
                out.extend((f"{rel(doc)} (code)", ref) for ref in DOTTED.findall(body))
    return sorted(set(out))


def documented_paths() -> list[tuple[str, str]]:
    """(where, path) for every ``pinclient/….py`` in a backtick span of README.md and docs/."""
    out = []
    for doc in DOCS:
        for span in SPAN.findall(prose(doc.read_text(encoding="utf-8"))):
            out.extend((rel(doc), path) for path in PATH.findall(span))
    return sorted(set(out))


# --------------------------------------------------------------------------- resolving


def _missing_module(error: ModuleNotFoundError, module: str) -> bool:
    """Whether ``error`` says ``module`` itself (or a parent of it) does not exist."""
    return error.name is not None and (error.name == module or module.startswith(error.name + "."))


def _import(module: str) -> Any:
    """Import ``module``; skip when an optional third-party dependency (tuf, requests) is missing."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as e:
        if e.name is not None and e.name.split(".")[0] != "pinclient":
            pytest.skip(f"{module} needs {e.name}, which is not installed")
        raise


def resolve_import(module: str, name: str | None) -> Any:
    """What ``from module import name`` (or ``import module``) gives, as Python would resolve it.

    Raises:
        ImportError / AttributeError: it does not exist.
    """
    mod = _import(module)
    if name is None:
        return mod
    try:
        return getattr(mod, name)
    except AttributeError:
        return _import(f"{module}.{name}")  # a submodule: ``from pinclient import minisign``


def resolve_dotted(ref: str) -> Any:
    """The object ``ref`` names: the longest importable module prefix, then attributes.

    Raises:
        ImportError / AttributeError: it does not exist.
    """
    parts = ref.split(".")
    for i in range(len(parts), 0, -1):
        module = ".".join(parts[:i])
        try:
            obj = _import(module)
        except ModuleNotFoundError as e:
            if i > 1 and _missing_module(e, module):
                continue
            raise
        for attr in parts[i:]:
            obj = getattr(obj, attr)
        return obj
    raise AssertionError("unreachable")


IMPORTS = documented_imports()
REFERENCES = documented_references()
PATHS = documented_paths()


def test_the_docs_are_actually_scanned() -> None:
    # If a regular expression broke, the parametrised tests below would pass vacuously.
    assert len(IMPORTS) >= 15, IMPORTS
    assert {where.split(":")[0] for where, _, _ in IMPORTS} >= {"README.md", "docs/library.md",
                                                                 "docs/signing.md"}
    assert any(where.startswith("examples/") for where, _, _ in IMPORTS)
    refs = {ref for _, ref in REFERENCES}
    assert {"pinclient.transport.pinning_manager", "pinclient.requests.pinned_session",
            "pinclient.RetryPolicy", "pinclient.download.RetryPolicy", "pinclient.check",
            "pinclient.manifest.fetch_from_manifest"} <= refs
    assert len(refs) >= 40
    assert ("README.md", "pinclient/_tls.py") in PATHS


@pytest.mark.parametrize(("where", "module", "name"), IMPORTS, ids=[f"{w} [{n or m}]" for w, m, n in IMPORTS])
def test_every_documented_import_works(where: str, module: str, name: str | None) -> None:
    resolve_import(module, name)


@pytest.mark.parametrize(("where", "module", "name"), IMPORTS, ids=[f"{w} [{n or m}]" for w, m, n in IMPORTS])
def test_documented_imports_use_only_public_modules(where: str, module: str, name: str | None) -> None:
    parts = [*module.split("."), *([name] if name else [])]
    assert not any(p.startswith("_") for p in parts), f"{where} imports a private name"


@pytest.mark.parametrize(("where", "ref"), REFERENCES, ids=[f"{w} [{r}]" for w, r in REFERENCES])
def test_every_documented_dotted_name_exists(where: str, ref: str) -> None:
    resolve_dotted(ref)


@pytest.mark.parametrize(("where", "path"), PATHS, ids=[f"{w} [{p}]" for w, p in PATHS])
def test_every_documented_source_path_exists(where: str, path: str) -> None:
    assert (ROOT / path).is_file(), f"{where} names {path}, which does not exist"


def test_the_resolvers_fail_on_a_name_that_does_not_exist() -> None:
    # What makes the tests above fail when a documented name disappears.
    assert resolve_import("pinclient", "FetchOptions") is resolve_dotted("pinclient.FetchOptions")
    assert resolve_import("pinclient", "minisign") is resolve_dotted("pinclient.minisign")
    with pytest.raises(AttributeError):
        resolve_dotted("pinclient.no_such_name")
    with pytest.raises(AttributeError):
        resolve_dotted("pinclient.transport.PinGuard.no_such_method")
    with pytest.raises(ImportError):
        resolve_import("pinclient", "no_such_name")
    with pytest.raises(ImportError):
        resolve_import("pinclient.no_such_module", None)
    stmt = "from pinclient.download import (\n    RetryPolicy,  # kept\n    fetch_update,\n)"
    assert import_statements(f"x = 1\n{stmt}\n") == [
        "from pinclient.download import ( RetryPolicy, fetch_update, )"]
    assert DOTTED.findall("`pinclient.tuf.PinnedFetcher(config)` `pinclient[tuf]` `~/.cache/pinclient/x`") == [
        "pinclient.tuf.PinnedFetcher"]


# --------------------------------------------------------------------------- docs/architecture.md


def package_files() -> list[str]:
    return sorted(p.relative_to(PACKAGE).as_posix() for p in PACKAGE.rglob("*.py"))


def test_architecture_names_every_module_of_the_package() -> None:
    spans = set(SPAN.findall(prose(ARCHITECTURE.read_text(encoding="utf-8"))))
    missing = [path for path in package_files() if path not in spans and f"pinclient/{path}" not in spans]
    assert missing == [], "docs/architecture.md does not mention these modules (as `path.py`)"


def test_architecture_names_no_module_that_does_not_exist() -> None:
    files = set(package_files())
    stale = []
    for span in SPAN.findall(prose(ARCHITECTURE.read_text(encoding="utf-8"))):
        elsewhere = span.startswith(("tests/", "examples/", "bench/", "fuzz/"))
        if re.fullmatch(r"[\w/]+\.py", span) and not elsewhere and span.removeprefix("pinclient/") not in files:
            stale.append(span)
    assert stale == [], "docs/architecture.md names modules that do not exist"


def layer_contracts() -> dict[str, list[str]]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    contracts = config["tool"]["importlinter"]["contracts"]
    return {c["containers"][0]: list(c["layers"]) for c in contracts if c["type"] == "layers"}


def documented_layers() -> dict[str, list[str]]:
    text = ARCHITECTURE.read_text(encoding="utf-8")
    found = {}
    for m in re.finditer(r"<!-- layers: ([\w.]+) -->\n```\n(.*?)```", text, re.S):
        found[m.group(1)] = [line.strip() for line in m.group(2).splitlines() if line.strip()]
    return found


def test_architecture_states_the_import_linter_layers_exactly() -> None:
    contracts = layer_contracts()
    assert "pinclient" in contracts
    assert documented_layers() == contracts
