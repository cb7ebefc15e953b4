"""The layout holds: the import graph of ``pinclient`` is a DAG even counting imports inside
functions, a function-level import says why it is deferred, and private modules stay private.

import-linter (``lint-imports`` in ``.ci/run``, contracts in pyproject.toml) checks the layers; this
test checks the whole graph for cycles with the standard library only, so a plain ``pytest`` run
catches a cycle too.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "pinclient"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


class _Imports(ast.NodeVisitor):
    """Every runtime import of a module: (target module, line, inside a function?)."""

    def __init__(self, module: str, is_package: bool) -> None:
        self.package = module if is_package else module.rpartition(".")[0]
        self.found: list[tuple[str, int, bool]] = []
        self.depth = 0

    def visit_If(self, node: ast.If) -> None:
        if _is_type_checking(node):  # not executed at run time: cannot form an import cycle
            for child in node.orelse:
                self.visit(child)
            return
        self.generic_visit(node)

    def _function(self, node: ast.AST) -> None:
        self.depth += 1
        self.generic_visit(node)
        self.depth -= 1

    visit_FunctionDef = visit_AsyncFunctionDef = visit_Lambda = _function

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self.found.append((alias.name, node.lineno, self.depth > 0))

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.level:
            base = self.package.split(".")
            base = base[: len(base) - (node.level - 1)]
            source = ".".join(base + ([node.module] if node.module else []))
        else:
            source = node.module or ""
        for alias in node.names:
            candidate = f"{source}.{alias.name}"
            target = candidate if candidate in MODULES else source
            self.found.append((target, node.lineno, self.depth > 0))


def _graph() -> dict[str, list[tuple[str, int, bool]]]:
    graph = {}
    for name, path in MODULES.items():
        visitor = _Imports(name, path.name == "__init__.py")
        visitor.visit(ast.parse(path.read_text(encoding="utf-8")))
        graph[name] = [(t, line, local) for t, line, local in visitor.found if t in MODULES and t != name]
    return graph


def _cycle(graph: dict[str, list[tuple[str, int, bool]]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for target, _, _ in graph[node]:
            if state.get(target) == 1:
                return [*stack[stack.index(target):], target]
            if target not in state:
                found = visit(target)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in graph:
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_the_import_graph_has_no_cycle_even_counting_function_level_imports() -> None:
    cycle = _cycle(_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_the_cycle_finder_finds_a_cycle() -> None:
    graph = {"a": [("b", 1, False)], "b": [("c", 1, True)], "c": [("a", 1, True)], "d": []}
    assert _cycle(graph) == ["a", "b", "c", "a"]


def test_every_function_level_import_of_pinclient_says_why_it_is_deferred() -> None:
    undocumented = []
    for name, edges in _graph().items():
        lines = MODULES[name].read_text(encoding="utf-8").splitlines()
        for _target, line, local in edges:
            here, above = lines[line - 1], lines[line - 2] if line > 1 else ""
            if local and "deferred" not in here and "deferred" not in above:
                undocumented.append(f"{MODULES[name].relative_to(ROOT)}:{line}: {here.strip()}")
    assert not undocumented, "function-level imports need a '# deferred: why' comment:\n" + "\n".join(
        undocumented)


def test_public_modules_are_exactly_those_without_an_underscore_in_their_path() -> None:
    public = sorted(m for m in MODULES if not any(p.startswith("_") for p in m.split(".")))
    assert public == ["pinclient", "pinclient.aio", "pinclient.cli", "pinclient.config", "pinclient.download",
                      "pinclient.errors", "pinclient.httpx", "pinclient.manifest", "pinclient.minisign",
                      "pinclient.policy", "pinclient.requests", "pinclient.transport", "pinclient.tuf"]


@pytest.mark.parametrize("module", sorted(MODULES))
def test_modules_stay_readable(module: str) -> None:
    # A guide, not a law (issue 12): one cohesive job per module, a few hundred lines.
    # config: pins.toml v1's whole loader, with [update]/serial (signed pins updates, issue 15).
    allowed = {"pinclient.minisign": 800, "pinclient._revocation.verify": 700, "pinclient.config": 800}
    lines = len(MODULES[module].read_text(encoding="utf-8").splitlines())
    assert lines <= allowed.get(module, 500), f"{module} has {lines} lines"


def test_every_public_name_is_importable_from_pinclient() -> None:
    import pinclient

    for name in pinclient.__all__:
        assert getattr(pinclient, name) is not None, name
    assert sys.modules["pinclient"] is pinclient
