"""docs/security.md cannot rot: every test it names exists, every row names a test or says honestly
that it is not covered yet, and every attack the catalogue promised is still there."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
CATALOGUE = REPO / "docs" / "security.md"
NODE = re.compile(r"`(tests/[\w/]+\.py)::(\w+)(?:\[[^\]`]*\])?`")
EXIT = re.compile(r"^(—|\d( / \d)*)$")

# The rows issue 9 asked for, by a word or two each row must contain (case-insensitive).
REQUIRED = [
    "comodo", "pinned ca appended", "impostor", "cross-signed", "blocked serial", "blocked spki",
    "unpinned host", "trailing-dot", "idna", "redirect to an unpinned host", "redirect to `http://`",
    "expired, untrusted or wrong-host", "resumed tls session", "cert_none", "assert_fingerprint",
    "ssl_context", "endless data", "slow drip", "truncation", "hash mismatch", "replaced existing file",
    "symlink at dest", "symlink at `dest.part`", "concurrent writers", "malformed pins.toml",
    "revoked leaf", "revoked intermediate", "ocsp responder blocked", "signed by an untrusted key",
    "rollback",
]


def rows() -> list[list[str]]:
    """The attack tables' body rows, as cells (the fuzzing table at the end is not one of them)."""
    out = []
    for line in CATALOGUE.read_text().split("## Fuzzing")[0].splitlines():
        if line.startswith("| ") and not line.startswith("| attack") and not line.startswith("|---"):
            out.append([cell.strip() for cell in line.strip().strip("|").split(" | ")])
    return out


def defined_tests(path: str) -> set[str]:
    tree = ast.parse((REPO / path).read_text())
    return {n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))
            and n.name.startswith("test_")}


def test_every_referenced_test_exists() -> None:
    text = CATALOGUE.read_text()
    refs = NODE.findall(text)
    assert len(refs) > 50
    cache: dict[str, set[str]] = {}
    missing = []
    for path, name in refs:
        if not (REPO / path).is_file():
            missing.append(f"{path} (no such file)")
            continue
        if name not in cache.setdefault(path, defined_tests(path)):
            missing.append(f"{path}::{name}")
    assert missing == [], "docs/security.md names tests that do not exist"


def test_every_row_has_an_exit_code_and_a_test_or_says_it_is_not_covered() -> None:
    table = rows()
    assert len(table) >= 40
    for attack, does, exit_code, proof in table:
        assert attack
        assert does, attack
        assert EXIT.match(exit_code), f"{attack}: exit column {exit_code!r}"
        if proof == "not covered yet":
            assert exit_code == "—"
            assert "not covered yet" in does or "in progress" in does, attack
        else:
            assert NODE.search(proof), f"{attack}: no test named"


@pytest.mark.parametrize("topic", REQUIRED)
def test_the_catalogue_covers_what_issue_9_asked_for(topic: str) -> None:
    assert any(topic in row[0].lower() for row in rows()), f"no row for {topic!r}"


def test_every_row_is_covered_by_a_test() -> None:
    # Every attack in the catalogue has a test now; a new row must come with its test.
    uncovered = [row[0] for row in rows() if row[3] == "not covered yet"]
    assert uncovered == [], uncovered
