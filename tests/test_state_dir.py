"""[defaults] state_dir: where pinclient keeps what it learns (updated pins, known issuers)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pinclient import PinsFileError, parse_pins
from pinclient._paths import user_state_dir

BASE = 'version = 1\n[defaults]\nunpinned = "allow"\n'


def test_state_dir_is_relative_to_the_pins_file_and_may_not_exist_yet(tmp_path: Path) -> None:
    config = parse_pins(BASE + 'state_dir = "state"\n', base_dir=tmp_path)
    assert config.state_folder() == (tmp_path / "state").resolve()
    assert not (tmp_path / "state").exists()  # loading creates nothing


def test_without_state_dir_the_environment_then_the_user_state_folder(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = parse_pins(BASE)
    monkeypatch.setenv("PINCLIENT_STATE_DIR", str(tmp_path / "env"))
    assert config.state_folder() == tmp_path / "env"
    monkeypatch.delenv("PINCLIENT_STATE_DIR")
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    assert config.state_folder() == user_state_dir() == tmp_path / "xdg" / "pinclient"
    monkeypatch.setenv("XDG_STATE_HOME", "relative")  # the XDG spec: relative values are ignored
    assert user_state_dir() == Path.home() / ".local" / "state" / "pinclient"


def test_state_dir_set_in_the_file_wins_over_the_environment(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PINCLIENT_STATE_DIR", str(tmp_path / "env"))
    config = parse_pins(BASE + 'state_dir = "mine"\n', base_dir=tmp_path)
    assert config.state_folder() == (tmp_path / "mine").resolve()


@pytest.mark.parametrize(("value", "words"), [("42", "string"), ('"a\\u0000b"', "NUL"), ('"file"', "not a folder")])
def test_a_state_dir_that_cannot_be_a_folder_is_refused(tmp_path: Path, value: str, words: str) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(PinsFileError, match=words):
        parse_pins(BASE + f"state_dir = {value}\n", base_dir=tmp_path)


def test_state_dir_belongs_in_defaults_only(tmp_path: Path) -> None:
    text = BASE + '[[pinset]]\nname = "x"\nhosts = ["a.example"]\nissuers = [{ spki_sha256 = "' + "A" * 43 + '=" }]\nstate_dir = "s"\n'
    with pytest.raises(PinsFileError, match="state_dir"):
        parse_pins(text, base_dir=tmp_path)
