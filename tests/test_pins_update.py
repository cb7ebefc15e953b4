"""Signed pins updates (issue 15 §1): an update server on loopback publishes pins documents and
their .minisig; the client accepts only a prehashed signature by a key of the *active* pins, a
valid pins file, a higher serial and a future `expires`, stores it in the state folder, and uses it
from then on. Every refusal leaves the active pins as they were."""

from __future__ import annotations

import datetime as dt
import json
import os
import threading
import time
from pathlib import Path

import pytest

from pinclient import (
    IntegrityError,
    PinsFileError,
    RollbackError,
    SignatureError,
    StorageError,
    fetch_update,
    load_pins,
    parse_pins,
    update_pins,
)
from pinclient import _paths as paths
from pinclient import minisign as ms
from pinclient._cli.main import fetch_main, main
from pinclient._deadline import deadline
from pinclient._demo import LoopbackServer
from pinclient._pinstore import StoredPins, read_stored, store, store_path

from .conftest import PKI, ServeHTTPS
from .test_platforms import FakeMsvcrt

OLD_KEY = ms.SecretKey(key_id=bytes.fromhex("0101010101010101"), seed=b"\x31" * 32)
BACKUP_KEY = ms.SecretKey(key_id=bytes.fromhex("0202020202020202"), seed=b"\x32" * 32)
NEW_KEY = ms.SecretKey(key_id=bytes.fromhex("0303030303030303"), seed=b"\x33" * 32)
STRANGER = ms.SecretKey(key_id=bytes.fromhex("0404040404040404"), seed=b"\x34" * 32)
FUTURE = "2099-01-01"
PAYLOAD = b"application 2.0\n" * 100
COLLECTOR = "reports.test"


class World:
    """The shipped pins file (v1), its state folder, and the update server."""

    def __init__(self, pki: PKI, tmp_path: Path, server: LoopbackServer) -> None:
        self.pki, self.tmp, self.server = pki, tmp_path, server
        self.app = tmp_path / "app"
        self.app.mkdir()
        self.state = tmp_path / "state"
        self.pins = self.app / "pins.toml"
        self.pins.write_bytes(self.document(1, [OLD_KEY, BACKUP_KEY]))

    def document(self, serial: int | None, keys: list[ms.SecretKey], *, cdn_ca: str = "pinned_root",
                 expires: str | None = FUTURE, extra: str = "") -> bytes:
        top = (f"serial = {serial}\n" if serial is not None else "") + \
            (f"expires = {expires}\n" if expires else "")
        key_list = ", ".join(f'"{k.public_key.to_string()}"' for k in keys)
        cdn_pin = self.pki.pin_of(getattr(self.pki, cdn_ca))
        return (f'version = 1\n{top}{extra}[defaults]\nunpinned = "refuse"\n'
                f'ca_bundle = "{self.pki.bundle}"\nstate_dir = "{self.state}"\n'
                f'[update]\nurl = "{self.server.url("/pins.toml")}"\nsigning_keys = [{key_list}]\n'
                f'interval = "1d"\n'
                f'[[pinset]]\nname = "pins"\nhosts = ["updates.test"]\n'
                f'issuers = [{{ spki_sha256 = "{self.pki.pin_of(self.pki.pinned_root)}" }}]\n'
                f'[[pinset]]\nname = "cdn"\nhosts = ["cdn.test"]\n'
                f'issuers = [{{ spki_sha256 = "{cdn_pin}" }}]\n').encode()

    def publish(self, document: bytes, key: ms.SecretKey | None, *, prehash: bool = True) -> None:
        self.server.routes["/pins.toml"] = document
        if key is None:
            self.server.routes.pop("/pins.toml.minisig", None)
        else:
            self.server.routes["/pins.toml.minisig"] = ms.sign(key, document, prehash=prehash,
                                                              trusted_comment="pins")

    def active_serial(self) -> int:
        return load_pins(self.pins).serial


@pytest.fixture
def world(pki: PKI, tmp_path: Path, https_server: ServeHTTPS) -> World:
    return World(pki, tmp_path, https_server({}))


def cli(*argv: str) -> int:
    return main(list(argv))


# --------------------------------------------------------------------------- the scenario


def test_v2_accepted_v1_replay_refused_unknown_key_refused_rotation_then_new_key_accepted(
        world: World, capsys: pytest.CaptureFixture[str]) -> None:
    # v2 signed by a key the shipped file lists: accepted, stored, active from then on.
    world.publish(world.document(2, [OLD_KEY, BACKUP_KEY]), OLD_KEY)
    assert cli("pins", "update", str(world.pins)) == 0
    assert "serial 1 -> 2" in capsys.readouterr().out
    assert world.active_serial() == 2
    assert world.pins.read_bytes() == world.document(1, [OLD_KEY, BACKUP_KEY])  # shipped file untouched
    # The same v2 again: already current, exit 0.
    assert cli("pins", "update", str(world.pins)) == 0
    assert "already current" in capsys.readouterr().out
    # v1 replayed (genuinely signed): a rollback, exit 5, v2 stays active.
    world.publish(world.document(1, [OLD_KEY, BACKUP_KEY]), OLD_KEY)
    assert cli("pins", "update", str(world.pins), "--json") == 5
    out = json.loads(capsys.readouterr().out)
    assert (out["error"], out["reason"]) == ("RollbackError", "rollback")
    assert world.active_serial() == 2
    # v3 signed by a key no active pins list: forged, exit 5.
    world.publish(world.document(3, [STRANGER]), STRANGER)
    assert cli("pins", "update", str(world.pins)) == 5
    assert world.active_serial() == 2
    # v3 that rotates the signing key, signed by a current key: accepted.
    world.publish(world.document(3, [NEW_KEY]), BACKUP_KEY)
    assert cli("pins", "update", str(world.pins)) == 0
    assert world.active_serial() == 3
    assert [k.key_id for k in load_pins(world.pins).update.signing_keys] == [NEW_KEY.key_id]  # type: ignore[union-attr]
    # After the rotation the old key no longer signs anything: v4 by it is refused ...
    world.publish(world.document(4, [NEW_KEY]), OLD_KEY)
    assert cli("pins", "update", str(world.pins)) == 5
    assert world.active_serial() == 3
    # ... and v4 by the new key is accepted.
    world.publish(world.document(4, [NEW_KEY]), NEW_KEY)
    result = update_pins(world.pins)
    assert (result.status, result.previous_serial, result.serial) == ("updated", 3, 4)
    assert result.signer == NEW_KEY.key_id_hex
    assert world.active_serial() == 4


def test_payload_whose_ca_changes_is_refused_before_the_pins_update_and_accepted_after(
        world: World, pki: PKI, https_server: ServeHTTPS, tmp_path: Path) -> None:
    cdn = https_server({"/app.bin": PAYLOAD}, issuer=pki.rogue_root, host="cdn.test")  # the new CA
    url = cdn.url("/app.bin", host="cdn.test")
    dest = tmp_path / "app.bin"
    assert fetch_main([url, "-o", str(dest), "--pins", str(world.pins), "-q"]) == 3
    assert not dest.exists()
    world.publish(world.document(2, [OLD_KEY], cdn_ca="rogue_root"), OLD_KEY)
    assert cli("pins", "update", str(world.pins), "-q") == 0
    assert fetch_main([url, "-o", str(dest), "--pins", str(world.pins), "-q"]) == 0
    assert dest.read_bytes() == PAYLOAD
    assert fetch_update(url, tmp_path / "lib.bin", config=load_pins(world.pins)).size == len(PAYLOAD)


# --------------------------------------------------------------------------- forged updates


def _tampered(world: World) -> None:
    doc = world.document(2, [STRANGER])
    world.publish(world.document(2, [OLD_KEY]), OLD_KEY)
    world.server.routes["/pins.toml"] = doc  # the signature is for another document


@pytest.mark.parametrize(("prepare", "error"), [
    (lambda w: w.publish(w.document(2, [STRANGER]), STRANGER), SignatureError),
    (_tampered, SignatureError),
    (lambda w: w.publish(w.document(2, [OLD_KEY]), OLD_KEY, prehash=False), SignatureError),  # legacy Ed
    (lambda w: w.publish(w.document(2, [OLD_KEY]), None), SignatureError),  # no .minisig (404)
    (lambda w: w.publish(b"version = 1\nserial = 2\nbogus = 1\n", OLD_KEY), IntegrityError),
    (lambda w: w.publish(w.document(2, [OLD_KEY], expires=None), OLD_KEY), IntegrityError),
    (lambda w: w.publish(w.document(2, [OLD_KEY], expires="2020-01-01"), OLD_KEY), RollbackError),
    (lambda w: w.publish(w.document(None, [OLD_KEY]), OLD_KEY), RollbackError),  # serial 0 < 1
], ids=["unknown-key", "tampered", "legacy-signature", "no-signature", "not-a-pins-file",
        "no-expires", "expired-freeze", "rollback-to-0"])
def test_forged_replayed_or_frozen_updates_are_refused_and_change_nothing(
        world: World, prepare: object, error: type[Exception]) -> None:
    prepare(world)  # type: ignore[operator]
    with pytest.raises(error):
        update_pins(world.pins)
    assert world.active_serial() == 1
    assert load_pins(world.pins).updated_from is None
    assert cli("pins", "update", str(world.pins), "-q") == 5


def test_update_server_with_an_unpinned_ca_is_a_pin_violation(
        pki: PKI, tmp_path: Path, https_server: ServeHTTPS) -> None:
    rogue = https_server({}, issuer=pki.rogue_root)
    w = World(pki, tmp_path, rogue)
    w.publish(w.document(2, [OLD_KEY]), OLD_KEY)
    assert cli("pins", "update", str(w.pins), "-q") == 3
    assert w.active_serial() == 1


def test_update_server_unreachable_is_exit_6(world: World) -> None:
    world.server.stop()
    assert cli("pins", "update", str(world.pins), "-q", "--deadline", "5") == 6
    assert world.active_serial() == 1


def test_a_process_that_stored_a_higher_serial_meanwhile_is_never_undone(world: World) -> None:
    active_v1 = load_pins(world.pins)  # loaded before another process stores v3
    world.publish(world.document(3, [OLD_KEY]), OLD_KEY)
    assert update_pins(world.pins).serial == 3
    world.publish(world.document(2, [OLD_KEY]), OLD_KEY)
    from pinclient._pinsupdate import refresh

    assert refresh(active_v1).status == "current"  # v2 > v1, but the store already holds v3
    assert world.active_serial() == 3


def test_a_shipped_file_with_a_higher_serial_wins_over_the_stored_update(world: World) -> None:
    world.publish(world.document(3, [OLD_KEY]), OLD_KEY)
    assert update_pins(world.pins).serial == 3
    world.pins.write_bytes(world.document(4, [OLD_KEY]))  # a new release of the application
    assert (world.active_serial(), load_pins(world.pins).updated_from) == (4, None)
    # The stored record's serial is not trusted over its document's own (a tampered record).
    target = store_path(world.state, world.server.url("/pins.toml"))
    record = json.loads(target.read_text())
    record.update(serial=99, document=world.document(2, [OLD_KEY]).decode())
    target.write_text(json.dumps(record))
    world.pins.write_bytes(world.document(3, [OLD_KEY]))
    assert (world.active_serial(), load_pins(world.pins).updated_from) == (3, None)


# --------------------------------------------------------------------------- show, -v, fetch-update


def test_pins_show_says_which_document_is_active(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli("pins", "show", str(world.pins)) == 0
    out = capsys.readouterr().out
    assert "active:        shipped (serial 1)" in out
    assert "last checked:  -" in out
    world.publish(world.document(2, [OLD_KEY]), OLD_KEY)
    assert cli("pins", "update", str(world.pins), "-q") == 0
    assert cli("pins", "show", "--pins", str(world.pins), "--json") == 0
    shown = json.loads(capsys.readouterr().out)
    assert (shown["active"], shown["serial"], shown["shipped_serial"]) == ("updated", 2, 1)
    assert shown["origin"] == world.server.url("/pins.toml")
    assert shown["expires"] == FUTURE
    assert shown["last_checked"]
    assert cli("pins", "show", str(world.pins), "-v") == 0
    assert "using the signed update" in capsys.readouterr().err


def test_fetch_update_refreshes_due_pins_and_a_failed_refresh_never_fails_the_payload(
        world: World, pki: PKI, https_server: ServeHTTPS, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    cdn = https_server({"/app.bin": PAYLOAD}, issuer=pki.rogue_root, host="cdn.test")
    url = cdn.url("/app.bin", host="cdn.test")
    # The update server has nothing yet: the refresh fails (no .minisig), the payload is fetched
    # with the active pins (refused here: the CDN's CA is not pinned in v1), with a warning.
    assert fetch_main([url, "-o", str(tmp_path / "a"), "--pins", str(world.pins)]) == 3
    assert "pins update from" in capsys.readouterr().err
    # v2 is published: the next fetch refreshes first (never checked successfully), then succeeds.
    world.publish(world.document(2, [OLD_KEY], cdn_ca="rogue_root"), OLD_KEY)
    assert fetch_main([url, "-o", str(tmp_path / "b"), "--pins", str(world.pins), "--json"]) == 0
    assert world.active_serial() == 2
    said = json.loads(capsys.readouterr().out)["pins"]  # --json says which pins judged the payload
    assert said == {"active": "updated", "serial": 2, "origin": world.server.url("/pins.toml")}
    # Checked just now: within the interval no request goes to the update server.
    world.server.stop()
    assert fetch_main([url, "-o", str(tmp_path / "c"), "--pins", str(world.pins), "-q"]) == 0


def test_fetch_update_deadline_covers_the_pins_refresh(
        world: World, pki: PKI, https_server: ServeHTTPS, tmp_path: Path) -> None:
    import time

    from pinclient._demo import Response

    def slow(path: str, headers: dict[str, str]) -> Response:
        time.sleep(2.5)  # the update server drips: the refresh alone outlasts --deadline
        return Response(404)

    world.server.routes["/pins.toml.minisig"] = slow
    cdn = https_server({"/app.bin": PAYLOAD}, host="cdn.test")
    started = time.monotonic()
    code = fetch_main([cdn.url("/app.bin", host="cdn.test"), "-o", str(tmp_path / "a"), "--pins",
                       str(world.pins), "--deadline", "1.5", "-q"])
    assert code == 6  # not a second full deadline for the payload
    assert time.monotonic() - started < 2.4
    assert not (tmp_path / "a").exists()


def test_fetch_update_fails_when_the_active_pins_expired_and_cannot_be_refreshed(
        world: World, pki: PKI, https_server: ServeHTTPS, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    world.pins.write_bytes(world.document(1, [OLD_KEY], expires="2020-01-01"))
    cdn = https_server({"/app.bin": PAYLOAD}, host="cdn.test")  # pinned CA: fine but for the expiry
    url = cdn.url("/app.bin", host="cdn.test")
    assert fetch_main([url, "-o", str(tmp_path / "a"), "--pins", str(world.pins), "--json"]) == 5
    assert json.loads(capsys.readouterr().out)["reason"] == "expired"
    assert not (tmp_path / "a").exists()
    # The server answers, but only with the same expired serial: still no payload with these pins.
    world.publish(world.pins.read_bytes(), OLD_KEY)
    assert fetch_main([url, "-o", str(tmp_path / "a"), "--pins", str(world.pins), "--json"]) == 5
    assert "no newer document" in json.loads(capsys.readouterr().out)["message"]
    assert not (tmp_path / "a").exists()
    world.publish(world.document(2, [OLD_KEY]), OLD_KEY)  # a fresh document rescues it
    assert fetch_main([url, "-o", str(tmp_path / "a"), "--pins", str(world.pins), "-q"]) == 0


# --------------------------------------------------------------------------- storage


def test_state_file_pinclient_did_not_write_is_never_replaced(world: World) -> None:
    target = store_path(world.state, world.server.url("/pins.toml"))
    target.parent.mkdir(parents=True)
    other = world.tmp / "precious"
    other.write_text("mine")
    target.symlink_to(other)
    world.publish(world.document(2, [OLD_KEY]), OLD_KEY)
    with pytest.raises(StorageError):
        update_pins(world.pins)
    assert other.read_text() == "mine"
    assert target.is_symlink()
    target.unlink()
    target.write_text('{"not": "ours"}')
    with pytest.raises(StorageError):
        update_pins(world.pins)
    assert target.read_text() == '{"not": "ours"}'


def test_store_keeps_the_higher_serial_under_the_lock(tmp_path: Path) -> None:
    path = tmp_path / "pins" / "x.json"
    store(path, lambda cur: StoredPins(url="u", serial=5, document="d5"))
    kept = store(path, lambda cur: None if cur and cur.serial >= 4 else StoredPins(url="u", serial=4))
    assert kept == read_stored(path)
    assert kept is not None
    assert kept.serial == 5
    assert sorted(p.name for p in path.parent.iterdir()) == ["x.json", "x.json.lock"]  # no temp left


# --------------------------------------------------------------------------- pins sign


def test_pins_sign_writes_a_prehashed_signature_clients_accept(
        world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    key_file = tmp_path / "k.key"
    OLD_KEY.to_file(key_file, password=None)
    publish = tmp_path / "pub" / "pins.toml"
    publish.parent.mkdir()
    publish.write_bytes(world.document(2, [OLD_KEY]))
    assert cli("pins", "sign", str(publish), "--secret-key", str(key_file)) == 0
    sig = ms.Signature.parse((tmp_path / "pub" / "pins.toml.minisig").read_bytes())
    assert sig.prehashed
    assert sig.key_id == OLD_KEY.key_id
    world.server.routes["/pins.toml"] = publish.read_bytes()
    world.server.routes["/pins.toml.minisig"] = sig.to_bytes()
    assert update_pins(world.pins).serial == 2


def test_pins_signed_with_the_minisign_tool_are_accepted_and_pins_sign_verifies_with_it(
        world: World, tmp_path: Path) -> None:
    import os
    import shutil
    import subprocess

    tool = shutil.which("minisign")
    if tool is None:
        pytest.skip("the minisign binary is not installed (Debian package: minisign)")
    pub, key = tmp_path / "m.pub", tmp_path / "m.key"
    env = {**os.environ, "MINISIGN_CONFIG_DIR": str(tmp_path / "minisign-config")}

    def run(*args: object) -> None:
        proc = subprocess.run([tool, *map(str, args)], capture_output=True, env=env, timeout=120,
                              stdin=subprocess.DEVNULL, check=False)
        assert proc.returncode == 0, proc.stderr

    run("-G", "-W", "-p", pub, "-s", key)
    public = ms.PublicKey.from_file(pub).to_string()
    world.pins.write_text(world.document(1, [OLD_KEY]).decode().replace(
        f'"{OLD_KEY.public_key.to_string()}"', f'"{public}"'))
    doc = tmp_path / "pins.toml"
    doc.write_bytes(world.document(2, [OLD_KEY]))
    run("-S", "-s", key, "-m", doc)  # the publisher signs with minisign itself
    world.server.routes["/pins.toml"] = doc.read_bytes()
    world.server.routes["/pins.toml.minisig"] = (tmp_path / "pins.toml.minisig").read_bytes()
    assert update_pins(world.pins).serial == 2
    # ... and what `pinclient pins sign` writes verifies with minisign -V.
    (tmp_path / "pins.toml.minisig").unlink()
    assert cli("pins", "sign", str(doc), "--secret-key", str(key), "-q") == 0
    run("-V", "-p", pub, "-m", doc)


@pytest.mark.parametrize(("change", "words"), [
    ({"serial": None}, "no serial"), ({"expires": None}, "no expires"),
    ({"expires": "2020-01-01"}, "has passed"),
])
def test_pins_sign_refuses_a_document_clients_would_refuse(
        world: World, tmp_path: Path, change: dict[str, str | None], words: str,
        capsys: pytest.CaptureFixture[str]) -> None:
    key_file = tmp_path / "k.key"
    OLD_KEY.to_file(key_file, password=None)
    publish = tmp_path / "pins.toml"
    args: dict[str, object] = {"serial": 2, "expires": FUTURE, **change}
    publish.write_bytes(world.document(args["serial"], [OLD_KEY], expires=args["expires"]))  # type: ignore[arg-type]
    assert cli("pins", "sign", str(publish), "--secret-key", str(key_file)) == 2
    assert words in capsys.readouterr().err
    assert not (tmp_path / "pins.toml.minisig").exists()


def test_lint_warns_about_a_single_update_key_and_refuses_expired_pins(world: World) -> None:
    from pinclient._lint import lint

    today = dt.date(2026, 1, 1)
    codes = {f.code: f.severity for f in lint(parse_pins(world.document(1, [OLD_KEY]), base_dir=world.app),
                                              today=today)}
    assert codes.get("no-backup-update-key") == "warning"
    both = parse_pins(world.document(1, [OLD_KEY, BACKUP_KEY], expires="2025-12-31"), base_dir=world.app)
    codes = {f.code: f.severity for f in lint(both, today=today)}
    assert "no-backup-update-key" not in codes
    assert codes.get("pins-expired") == "error"


def test_pins_sign_refuses_a_file_lint_rejects(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    key_file = tmp_path / "k.key"
    OLD_KEY.to_file(key_file, password=None)
    publish = tmp_path / "pins.toml"
    publish.write_text(f'version = 1\nserial = 2\nexpires = {FUTURE}\n[defaults]\nunpinned = "allow"\n')
    assert cli("pins", "sign", str(publish), "--secret-key", str(key_file)) == 2
    assert "no-pinsets" in capsys.readouterr().err  # lint's own finding, quoted
    assert not (tmp_path / "pins.toml.minisig").exists()


# --------------------------------------------------------------------------- pins.toml values


BASE = 'version = 1\n[defaults]\nunpinned = "allow"\n'
KEY = OLD_KEY.public_key.to_string()


@pytest.mark.parametrize(("text", "words"), [
    ('serial = "2"\n' + BASE, "serial = 2"),
    ("serial = 0\n" + BASE, "positive integer"),
    ("serial = true\n" + BASE, "positive integer"),
    ('expires = "2027-01-01"\n' + BASE, "TOML date"),
    (BASE + f'[update]\nurl = "http://u.test/p"\nsigning_keys = ["{KEY}"]\n', "https"),
    (BASE + '[update]\nurl = "https://u.test/p"\nsigning_keys = []\n', "non-empty"),
    (BASE + '[update]\nurl = "https://u.test/p"\n', "signing_keys"),
    (BASE + f'[update]\nurl = "https://u.test/p"\nsigning_keys = ["{KEY}"]\ninterval = 3600\n',
     'interval = "3600s"'),
    (BASE + f'[update]\nurl = "https://u.test/p"\nsigning_keys = ["{KEY}"]\ninterval = "1 day"\n',
     "not an interval"),
    (BASE.replace("allow", "refuse") + f'[update]\nurl = "https://u.test/p"\nsigning_keys = ["{KEY}"]\n',
     "no pinset covers"),
])
def test_update_keys_that_could_not_work_are_refused_with_the_right_spelling(text: str, words: str) -> None:
    with pytest.raises(PinsFileError, match=words.replace("(", r"\(")):
        parse_pins(text)


def test_update_keys_load(tmp_path: Path) -> None:
    config = parse_pins("serial = 7\nexpires = 2030-05-01\n" + BASE + f'[update]\nurl = "https://U.test./p"\n'
                        f'signing_keys = ["{KEY}"]\ninterval = "12h"\n')
    assert (config.serial, config.expires) == (7, dt.date(2030, 5, 1))
    assert config.update is not None
    assert (config.update.url, config.update.interval) == ("https://u.test/p", 43200.0)
    assert parse_pins(BASE).serial == 0
    assert parse_pins(BASE).update is None


# --------------------------------------------------------------------------- failed refreshes are reported


def _reporting(world: World, pki: PKI, *, uri: str | None = None, expires: str = FUTURE) -> Path:
    """Give the shipped pins a report_file (and report_uri, with a pinset for the collector)."""
    reports = world.tmp / "reports.jsonl"
    keys = f'report_file = "{reports}"\n' + (f'report_uri = "{uri}"\n' if uri else "")
    text = world.document(1, [OLD_KEY, BACKUP_KEY], expires=expires).decode().replace(
        'unpinned = "refuse"\n', 'unpinned = "refuse"\n' + keys)
    text += (f'[[pinset]]\nname = "collector"\nhosts = ["{COLLECTOR}"]\n'
             f'issuers = [{{ spki_sha256 = "{pki.pin_of(pki.pinned_root)}" }}]\n')
    world.pins.write_text(text)
    return reports


def _lines(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


@pytest.fixture
def cache_in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The transport's violation reports keep their rate limit in the user cache folder: not here.
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))


@pytest.mark.usefixtures("cache_in_tmp")
def test_a_refresh_failing_its_signature_check_fetches_the_payload_and_is_reported_once(
        world: World, pki: PKI, https_server: ServeHTTPS, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    from .test_report_only import Collector

    cdn = https_server({"/app.bin": PAYLOAD}, host="cdn.test")  # pinned in v1: the payload is fine
    url = cdn.url("/app.bin", host="cdn.test")
    with Collector(pki.pinned_int.issue_leaf(COLLECTOR)) as collector:
        reports = _reporting(world, pki, uri=f"https://{COLLECTOR}:{collector.port}/pins-report")
        world.publish(world.document(2, [STRANGER]), STRANGER)  # signed by a key v1 does not list
        for name in ("a", "b"):  # the refresh fails twice (still due): one report a day, not two
            assert fetch_main([url, "-o", str(tmp_path / name), "--pins", str(world.pins)]) == 0
            assert (tmp_path / name).read_bytes() == PAYLOAD
            assert "pins update from" in capsys.readouterr().err
    assert world.active_serial() == 1
    [line] = _lines(reports)
    assert collector.reports == [line]
    assert line["report-type"] == "pins-update-failure"
    assert (line["update-url"], line["hostname"], line["port"]) == (
        world.server.url("/pins.toml"), "updates.test", world.server.port)
    assert (line["error"], line["exit-code"], line["active-serial"]) == ("SignatureError", 5, 1)
    assert "pinclient-version" in line
    assert dt.datetime.strptime(str(line["date-time"]), "%Y-%m-%dT%H:%M:%SZ")
    assert "pins update failure report" in collector.headers[0]["User-Agent"]
    # The rate limit is kept in the state folder, nowhere else.
    assert (world.state / "pins-update-reports-sent.json").is_file()
    assert not (tmp_path / "xdg-cache").exists()


@pytest.mark.usefixtures("cache_in_tmp")
@pytest.mark.parametrize(("prepare", "error", "reason"), [
    (lambda w: w.publish(w.document(2, [STRANGER]), STRANGER), "SignatureError", None),
    (_tampered, "SignatureError", None),
    (lambda w: w.publish(w.document(2, [OLD_KEY]), OLD_KEY, prehash=False), "SignatureError", None),
    (lambda w: w.publish(w.document(2, [OLD_KEY]), None), "SignatureError", None),
    (lambda w: w.publish(b"version = 1\nserial = 2\nbogus = 1\n", OLD_KEY), "IntegrityError", None),
    (lambda w: w.publish(w.document(2, [OLD_KEY], expires=None), OLD_KEY), "IntegrityError", None),
    (lambda w: w.publish(w.document(2, [OLD_KEY], expires="2020-01-01"), OLD_KEY), "RollbackError",
     "expired"),
    (lambda w: w.publish(w.document(None, [OLD_KEY]), OLD_KEY), "RollbackError", "rollback"),
    (lambda w: w.server.stop(), "NetworkError", None),
], ids=["unknown-key", "tampered", "legacy-signature", "no-signature", "not-a-pins-file",
        "no-expires", "expired-freeze", "rollback-to-0", "unreachable"])
def test_every_kind_of_failed_refresh_is_reported_and_never_fails_the_payload(
        world: World, pki: PKI, https_server: ServeHTTPS, tmp_path: Path, prepare: object,
        error: str, reason: str | None) -> None:
    cdn = https_server({"/app.bin": PAYLOAD}, host="cdn.test")
    reports = _reporting(world, pki)
    prepare(world)  # type: ignore[operator]
    assert fetch_main([cdn.url("/app.bin", host="cdn.test"), "-o", str(tmp_path / "a"), "--pins",
                       str(world.pins), "-q", "--deadline", "20"]) == 0
    assert (tmp_path / "a").read_bytes() == PAYLOAD
    [line] = _lines(reports)
    assert (line["report-type"], line["error"], line["reason"]) == ("pins-update-failure", error, reason)
    assert world.active_serial() == 1


@pytest.mark.usefixtures("cache_in_tmp")
def test_a_hanging_collector_leaves_the_payload_within_its_deadline(
        world: World, pki: PKI, https_server: ServeHTTPS, tmp_path: Path) -> None:
    import time

    from .test_report_only import HangingCollector

    cdn = https_server({"/app.bin": PAYLOAD}, host="cdn.test")
    world.publish(world.document(2, [OLD_KEY]), None)  # no .minisig: the refresh fails at once
    with HangingCollector() as collector:  # a loopback listener that never answers
        reports = _reporting(world, pki, uri=collector.uri())
        started = time.monotonic()
        code = fetch_main([cdn.url("/app.bin", host="cdn.test"), "-o", str(tmp_path / "a"), "--pins",
                           str(world.pins), "-q", "--deadline", "2"])
        elapsed = time.monotonic() - started
    assert code == 0
    assert (tmp_path / "a").read_bytes() == PAYLOAD
    assert elapsed < 2  # the POST had half of what was left (DEFAULT_REPORT_TIMEOUT would not fit)
    assert [line["error"] for line in _lines(reports)] == ["SignatureError"]  # the file still has it


# --------------------------------------------------------------------------- the store's lock


def _locks(monkeypatch: pytest.MonkeyPatch, msvcrt: FakeMsvcrt | None) -> None:
    # Not POSIX-only: it switches fcntl *off* in _paths, as on Windows, where it is absent anyway.
    monkeypatch.setattr(paths, "fcntl", None)
    monkeypatch.setattr(paths, "msvcrt", msvcrt)


def test_windows_pins_store_is_locked_with_msvcrt_and_the_wait_is_bounded(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeMsvcrt()  # no flock, msvcrt.locking instead: what _paths sees on Windows
    _locks(monkeypatch, fake)
    path = store_path(tmp_path, "u")
    store(path, lambda cur: StoredPins(url="u", serial=1))
    held = os.open(str(path) + ".lock", os.O_RDWR)
    try:
        assert paths.try_lock(held) is True  # "another process" is storing
        start = time.monotonic()
        with deadline(time.monotonic() + 0.3), pytest.raises(StorageError, match="another process held"):
            store(path, lambda cur: StoredPins(url="u", serial=2))
        assert time.monotonic() - start < 2
        paths.unlock(held)
    finally:
        os.close(held)
    assert read_stored(path) == StoredPins(url="u", serial=1), "nothing was written without the lock"
    assert store(path, lambda cur: StoredPins(url="u", serial=2)) == StoredPins(url="u", serial=2)
    assert fake.held == {}, "the lock byte was released before the close"
    assert {offset for _, offset, _ in fake.calls} == {paths.LOCK_BYTE}


def test_waiting_for_the_pins_store_lock_ends_at_the_callers_deadline(tmp_path: Path) -> None:
    # It was a blocking flock: a process holding the lock stalled every other one for good.
    path = store_path(tmp_path, "u")
    store(path, lambda cur: StoredPins(url="u", serial=1))
    held = os.open(str(path) + ".lock", os.O_RDWR)
    outcome: list[BaseException | None] = []

    def second() -> None:
        try:
            with deadline(time.monotonic() + 0.3):
                store(path, lambda cur: StoredPins(url="u", serial=2))
            outcome.append(None)
        except BaseException as e:
            outcome.append(e)

    try:
        assert paths.try_lock(held) is True
        worker = threading.Thread(target=second, daemon=True)
        worker.start()
        worker.join(5)
        assert not worker.is_alive(), "the wait for the lock was not bounded"
    finally:
        os.close(held)  # releases it: a hung worker (the defect) finishes
    worker.join(5)
    assert len(outcome) == 1
    assert isinstance(outcome[0], StorageError)
    assert "another process held" in outcome[0].message


def test_a_platform_without_any_file_lock_refuses_to_store_pins(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _locks(monkeypatch, None)
    path = store_path(tmp_path, "u")
    with pytest.raises(StorageError, match="neither flock nor msvcrt"):
        store(path, lambda cur: StoredPins(url="u", serial=1))
    assert not path.exists()


@pytest.mark.usefixtures("cache_in_tmp")
def test_a_failed_refresh_of_expired_pins_is_reported_too(
        world: World, pki: PKI, https_server: ServeHTTPS, tmp_path: Path) -> None:
    # The pins expired and the refresh fails: the payload is refused (exit 5), and the operator
    # hears of the client that can no longer update, not only the client's own stderr.
    cdn = https_server({"/app.bin": PAYLOAD}, host="cdn.test")
    reports = _reporting(world, pki, expires="2020-01-01")
    world.publish(world.document(2, [STRANGER]), STRANGER)
    assert fetch_main([cdn.url("/app.bin", host="cdn.test"), "-o", str(tmp_path / "a"), "--pins",
                       str(world.pins), "-q"]) == 5
    assert not (tmp_path / "a").exists()
    assert [(r["report-type"], r["error"]) for r in _lines(reports)] == [
        ("pins-update-failure", "SignatureError")]
