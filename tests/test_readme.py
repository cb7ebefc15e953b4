"""The README and docs stay true: exactly two set-up commands, the same test command as CI, the demo
output as the demo really prints it, working doc links, and a pins.toml reference that covers every
key the loader accepts and every row of the README's table."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from pinclient._cli.main import _commands, main
from pinclient.config import parse_pins
from pinclient.errors import PinsFileError

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def section(text: str, title: str) -> str:
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start:end if end != -1 else None]


def setup_commands() -> list[str]:
    block = re.search(r"```sh\n(.*?)```", section(README, "Set-up"), re.S)
    assert block, "the Set-up section has a ```sh block"
    return [line.split("  #")[0].strip() for line in block.group(1).splitlines() if line.strip()]


SETUP = [
    "python3 -m venv .venv && . .venv/bin/activate && pip install -e . && pinclient demo",
    ". .venv/bin/activate && pip install -e '.[test]' && pytest",
]


def test_setup_is_exactly_two_commands() -> None:
    assert setup_commands() == SETUP
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert 'pinclient = "pinclient._cli:main"' in pyproject
    assert "demo" in _commands()


def test_every_setup_pip_runs_in_a_venv_the_setup_creates() -> None:
    # A PEP 668 system Python (Debian 12, Ubuntu 23.04+) refuses a bare `pip install` with
    # externally-managed-environment: every pip of Set-up must run after activating a venv, in the
    # same command (the second may be run in a new shell), and the first command creates it.
    created = set()
    for command in setup_commands():
        steps = [shlex.split(step) for step in command.split("&&")]
        active = None
        for step in steps:
            if step[:3] == ["python3", "-m", "venv"]:
                created.add(step[3])
            if step[:1] in (["."], ["source"]) and step[1].endswith("/bin/activate"):
                active = step[1].removesuffix("/bin/activate")
            if step[:1] == ["pip"] or step[:3] == ["python3", "-m", "pip"]:
                assert active in created, f"{command!r}: pip outside the venv the set-up creates"
    text = section(README, "Set-up")
    assert "externally-managed-environment" in text
    assert "python3-venv" in text, "Debian/Ubuntu need python3-venv for python3 -m venv"


def test_setup_lists_the_optional_system_packages_and_what_is_skipped() -> None:
    text = section(README, "Set-up")
    for package in ("openssl", "minisign", "nginx"):
        row = next((line for line in text.splitlines() if line.startswith(f"| `{package}")), None)
        assert row is not None, f"Set-up's table of optional packages names {package}"
        assert "skipped" in row or "falls back" in row, f"say what happens without {package}"
    install = re.findall(r"apt-get install[^\n`]*", text)
    assert install
    assert all(p in install[0] for p in ("openssl", "minisign", "nginx")), install


def test_ci_runs_the_readme_test_command() -> None:
    readme_cmd = shlex.split(setup_commands()[1])
    lines = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()
             if "pip install" in line and "pytest" in line and not line.strip().startswith("#")]
    assert lines, ".ci/run installs and runs pytest"
    # The first is the README's command; -q only quietens pip.
    assert [t for t in shlex.split(lines[0]) if t != "-q"] == readme_cmd


def normalise(text: str) -> list[str]:
    text = re.sub(r"sha256/[A-Za-z0-9+/]{43}=", "sha256/<key>", text)
    text = re.sub(r'spki_sha256 = "[A-Za-z0-9+/]{43}="', 'spki_sha256 = "<key>"', text)
    text = re.sub(r"localhost:\d+", "localhost:<port>", text)
    text = re.sub(r"sha256 [0-9a-f]{16}…", "sha256 <hex>…", text)
    return [line.rstrip() for line in text.strip("\n").splitlines()]


def test_readme_demo_output_is_what_the_demo_prints(capsys: pytest.CaptureFixture[str]) -> None:
    block = re.search(r"```\n\$ pinclient demo\n(.*?)```", README, re.S)
    assert block, "the README shows `$ pinclient demo` and its output"
    assert main(["demo"]) == 0
    assert normalise(block.group(1)) == normalise(capsys.readouterr().out)


def test_documentation_links_exist() -> None:
    links = re.findall(r"\]\(((?:docs|examples)/[^)#]*|CHANGELOG\.md|LICENSE)(?:#[^)]*)?\)", README)
    for doc in ("docs/threat-model.md", "docs/pins-toml.md", "docs/library.md", "docs/faq.md"):
        assert doc in links
    for link in links:
        assert (ROOT / link).exists(), link


SECTIONS = {  # how each section is named in the tables' "where" column → a TOML doc that reaches it
    "top": "version = 1\n{key} = 1\n",
    "`[defaults]`": "version = 1\n[defaults]\n{key} = 1\n",
    "`[[pinset]]`": "version = 1\n[[pinset]]\n{key} = 1\n",
    "issuer": 'version = 1\n[[pinset]]\nname = "a"\nhosts = ["a"]\nissuers = [{{ {key} = 1 }}]\n',
    "`[[blocked]]`": "version = 1\n[[blocked]]\n{key} = 1\n",
    "`[update]`": "version = 1\n[update]\n{key} = 1\n",
}


def loader_keys() -> set[tuple[str, str]]:
    """(key, section) for every key the loader accepts, read from its "unknown key" message."""
    keys = set()
    for where, doc in SECTIONS.items():
        with pytest.raises(PinsFileError) as info:
            parse_pins(doc.format(key="no_such_key_zz"))
        allowed = re.search(r"allowed: ([a-z0-9_, ]+)\)", str(info.value))
        assert allowed, str(info.value)
        keys |= {(k, where) for k in allowed.group(1).split(", ")}
    return keys - {("defaults", "top"), ("pinset", "top"), ("blocked", "top")}


def table_keys(text: str) -> set[tuple[str, str]]:
    keys = set()
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 4 or not cells[0].startswith("`"):
            continue
        for key in re.findall(r"`([a-z_0-9]+)`", cells[0]):
            for where in re.split(r",\s*", cells[1]):
                keys.add((key, where))
    return keys


def test_pins_toml_reference_covers_every_key_the_loader_accepts() -> None:
    documented = table_keys((ROOT / "docs" / "pins-toml.md").read_text())
    assert loader_keys() - documented == set()
    assert documented - loader_keys() == set(), "documented keys the loader does not accept"


def test_pins_toml_reference_mirrors_the_readme_table() -> None:
    documented = table_keys((ROOT / "docs" / "pins-toml.md").read_text())
    readme = table_keys(section(README, "pins.toml reference"))
    assert readme, "the README has a pins.toml table"
    assert readme - documented == set()
