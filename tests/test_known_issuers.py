"""Issuer continuity for hosts no pinset covers (``unpinned = "remember"``, issue 15 §2): the first
verified chain's CAs are recorded in the state folder, a later chain must keep one of them — over
real TLS on 127.0.0.1."""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.serialization import Encoding

from pinclient import PinsFileError, PinViolation, StorageError, UsageError, fetch_update, parse_pins
from pinclient import _paths as paths
from pinclient._cli import main
from pinclient._deadline import deadline
from pinclient._known import FILE_NAME, KnownIssuers
from pinclient._pki import Leaf, build_certificate, name, new_key
from pinclient._x509 import spki_sha256 as spki
from pinclient.config import PinConfig, load_pins

from .conftest import HOST, PKI, ServeHTTPS, b64, pinset, posix_only, write_pins
from .test_platforms import FakeMsvcrt

BODY = b"update\n"


def remember_pins(folder: Path, pki: PKI, extra: str = "", body: str = "") -> Path:
    path = write_pins(folder, body, bundle=pki.bundle, unpinned="remember")
    text = path.read_text().replace("[defaults]\n", f'[defaults]\nstate_dir = "state"\n{extra}', 1)
    path.write_text(text)
    return path


def records(folder: Path) -> dict[str, list[str]]:
    doc = json.loads((folder / "state" / FILE_NAME).read_text())
    return {host: [i["spki_sha256"] for i in r["issuers"]] for host, r in doc["hosts"].items()}


def fetch(server_url: str, tmp_path: Path, config: PinConfig) -> bytes:
    dest = tmp_path / "update.bin"
    fetch_update(server_url, dest, config=config, retries=0)
    return dest.read_bytes()


# --------------------------------------------------------------------------- the scenarios


def test_first_contact_records_every_ca_above_the_leaf(pki: PKI, tmp_path: Path,
                                                       https_server: ServeHTTPS) -> None:
    config = load_pins(remember_pins(tmp_path, pki))
    with https_server({"/u": BODY}) as server:
        assert fetch(server.url("/u"), tmp_path, config) == BODY
    assert records(tmp_path) == {HOST: [pki.pin_of(pki.pinned_int), pki.pin_of(pki.pinned_root)]}
    doc = json.loads((tmp_path / "state" / FILE_NAME).read_text())
    issuer = doc["hosts"][HOST]["issuers"][0]
    assert "Example Issuing CA 2" in issuer["subject"]
    assert issuer["first_seen"] == issuer["last_seen"] == doc["hosts"][HOST]["first_seen"]


def test_comodo_style_rogue_ca_for_a_remembered_host_is_refused_with_issuer_changed(
        pki: PKI, tmp_path: Path, https_server: ServeHTTPS) -> None:
    config = load_pins(remember_pins(tmp_path, pki))
    with https_server({"/u": BODY}) as server:
        fetch(server.url("/u"), tmp_path, config)
    before = (tmp_path / "state" / FILE_NAME).read_bytes()
    # The 2011 replay: a valid certificate for the same host, straight off another trusted root.
    with https_server({"/u": BODY}, issuer=pki.rogue_root) as server:
        with pytest.raises(PinViolation) as info:
            fetch(server.url("/u"), tmp_path, config)
        server.wait_idle()
    assert all(c.received == b"" for c in server.conns), "not one request byte may be sent"
    err = info.value
    assert (err.reason, err.host, err.pinset, err.exit_code) == ("issuer-changed", HOST, None, 3)
    assert [c.spki_sha256 for c in err.chain][1] == pki.pin_of(pki.rogue_root)
    assert any(pki.pin_of(pki.pinned_root) in e for e in err.expected), "names the recorded issuers"
    assert "UTN-USERFirst-Hardware" in err.message
    assert "Example Issuing CA 2" in err.message
    assert f"pinclient forget {HOST} --pins {tmp_path / 'pins.toml'}" in err.message
    assert (tmp_path / "state" / FILE_NAME).read_bytes() == before, "a refusal records nothing"


def test_a_new_intermediate_under_the_recorded_root_is_accepted(pki: PKI, tmp_path: Path,
                                                                https_server: ServeHTTPS) -> None:
    config = load_pins(remember_pins(tmp_path, pki))
    with https_server({"/u": BODY}) as server:
        fetch(server.url("/u"), tmp_path, config)
    rotated = pki.pinned_root.child_ca("Example Issuing CA 3", org="Example Inc")
    with https_server({"/u": BODY}, issuer=rotated) as server:
        assert fetch(server.url("/u"), tmp_path, config) == BODY
    # Accepted through the recorded root's key; the new intermediate is not added (records grow
    # only at first contact).
    assert records(tmp_path) == {HOST: [pki.pin_of(pki.pinned_int), pki.pin_of(pki.pinned_root)]}


def test_the_leaf_key_alone_never_keeps_a_host_remembered(pki: PKI, tmp_path: Path,
                                                          https_server: ServeHTTPS) -> None:
    # The same server key re-certified by the rogue root: only CAs above the leaf count.
    config = load_pins(remember_pins(tmp_path, pki))
    good = pki.pinned_int.issue_leaf(HOST)
    with https_server({"/u": BODY}, leaf=good) as server:
        fetch(server.url("/u"), tmp_path, config)
    path = tmp_path / "state" / FILE_NAME
    doc = json.loads(path.read_text())
    doc["hosts"][HOST]["issuers"].append({"spki_sha256": b64(spki(good.cert)), "subject": "leaf",
                                          "first_seen": doc["hosts"][HOST]["first_seen"],
                                          "last_seen": doc["hosts"][HOST]["last_seen"]})
    path.write_text(json.dumps(doc))
    same_key = pki.rogue_root.issue_leaf(HOST, key=good.key)
    with https_server({"/u": BODY}, leaf=same_key) as server, pytest.raises(PinViolation) as info:
        fetch(server.url("/u"), tmp_path, config)
    assert info.value.reason == "issuer-changed"


def test_forget_restores_first_contact(pki: PKI, tmp_path: Path, https_server: ServeHTTPS,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    pins = remember_pins(tmp_path, pki)
    config = load_pins(pins)
    with https_server({"/u": BODY}) as server:
        fetch(server.url("/u"), tmp_path, config)
    assert main(["forget", HOST.upper() + ".", "--pins", str(pins)]) == 0  # the host normalised
    assert f"forgot 2 issuer(s) of {HOST}" in capsys.readouterr().out
    assert records(tmp_path) == {}
    with https_server({"/u": BODY}, issuer=pki.rogue_root) as server:
        assert fetch(server.url("/u"), tmp_path, config) == BODY  # a first contact again
    assert records(tmp_path) == {HOST: [pki.pin_of(pki.rogue_root)]}
    assert main(["forget", "other.test", "--pins", str(pins)]) == 2
    assert "nothing to forget" in capsys.readouterr().err


def test_two_processes_recording_at_once_keep_both_records(pki: PKI, tmp_path: Path,
                                                           https_server: ServeHTTPS) -> None:
    # Each process meets 15 hosts of its own over real TLS, both at once; every first contact
    # rewrites the whole file, so without the lock and the re-read one process's records would be
    # lost to the other's write.
    hosts = {p: [f"{p}{i}.test" for i in range(15)] for p in "ab"}
    pins = remember_pins(tmp_path, pki)
    go = tmp_path / "go"
    leaf = pki.pinned_int.issue_leaf(*hosts["a"], *hosts["b"])
    child = textwrap.dedent(f"""
        import os, socket, sys, time
        real = socket.getaddrinfo
        def loopback(host, *a, **k):  # the test names live on 127.0.0.1, nothing else is reached
            assert host.endswith(".test"), host
            return real("127.0.0.1", *a, **k)
        socket.getaddrinfo = loopback
        from pinclient import fetch_update, load_pins
        config = load_pins({str(pins)!r})
        while not os.path.exists({str(go)!r}):
            time.sleep(0.005)
        for host in sys.argv[2:]:
            fetch_update(sys.argv[1].replace("HOST", host), os.devnull, config=config, retries=0)
    """)
    with https_server({"/u": BODY}, leaf=leaf) as server:
        url = server.url("/u", host="HOST")
        procs = [subprocess.Popen([sys.executable, "-c", child, url, *hosts[p]], stderr=subprocess.PIPE,
                                  text=True) for p in "ab"]
        time.sleep(0.5)  # both started and waiting (the imports take a while)
        go.touch()
        errors = [proc.communicate(timeout=120)[1] for proc in procs]
    assert [proc.returncode for proc in procs] == [0, 0], errors
    assert sorted(records(tmp_path)) == sorted(hosts["a"] + hosts["b"])


# --------------------------------------------------------------------------- report-only, expiry


def test_report_only_records_reports_and_accepts_a_change(pki: PKI, tmp_path: Path,
                                                          https_server: ServeHTTPS,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    config = load_pins(remember_pins(tmp_path, pki, extra='mode = "report-only"\n'))
    with https_server({"/u": BODY}) as server:
        fetch(server.url("/u"), tmp_path, config)
    before = records(tmp_path)
    with caplog.at_level(logging.WARNING, logger="pinclient"):
        with https_server({"/u": BODY}, issuer=pki.rogue_root) as server:
            assert fetch(server.url("/u"), tmp_path, config) == BODY
    assert "REPORT-ONLY" in caplog.text
    assert "the issuer changed" in caplog.text
    assert records(tmp_path) == before, "the first contact stays the reference"


def test_a_record_unused_for_remember_max_age_is_dropped_with_a_warning(
        pki: PKI, tmp_path: Path, https_server: ServeHTTPS, caplog: pytest.LogCaptureFixture) -> None:
    config = load_pins(remember_pins(tmp_path, pki, extra='remember_max_age = "30d"\n'))
    with https_server({"/u": BODY}) as server:
        fetch(server.url("/u"), tmp_path, config)
    path = tmp_path / "state" / FILE_NAME
    doc = json.loads(path.read_text())
    old = (dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=31)).replace(microsecond=0).isoformat()
    doc["hosts"][HOST]["last_seen"] = old
    path.write_text(json.dumps(doc))
    with caplog.at_level(logging.WARNING, logger="pinclient"):
        with https_server({"/u": BODY}, issuer=pki.rogue_root) as server:
            assert fetch(server.url("/u"), tmp_path, config) == BODY
    assert "remember_max_age (30 days)" in caplog.text
    assert old[:10] in caplog.text
    assert records(tmp_path) == {HOST: [pki.pin_of(pki.rogue_root)]}


def test_a_record_used_within_remember_max_age_is_kept(pki: PKI, tmp_path: Path,
                                                       https_server: ServeHTTPS) -> None:
    config = load_pins(remember_pins(tmp_path, pki, extra="remember_max_age = 30\n"))
    with https_server({"/u": BODY}) as server:
        fetch(server.url("/u"), tmp_path, config)
    path = tmp_path / "state" / FILE_NAME
    doc = json.loads(path.read_text())
    recent = (dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=29)).replace(microsecond=0)
    doc["hosts"][HOST]["last_seen"] = recent.isoformat()
    path.write_text(json.dumps(doc))
    with https_server({"/u": BODY}, issuer=pki.rogue_root) as server, pytest.raises(PinViolation):
        fetch(server.url("/u"), tmp_path, config)
    with https_server({"/u": BODY}) as server:
        fetch(server.url("/u"), tmp_path, config)
    assert json.loads(path.read_text())["hosts"][HOST]["last_seen"][:10] == dt.date.today().isoformat()


# --------------------------------------------------------------------------- scope and overrides


def test_pinned_hosts_are_judged_by_their_pins_and_nothing_is_recorded(
        pki: PKI, tmp_path: Path, https_server: ServeHTTPS) -> None:
    body = pinset("p", [HOST], f'{{ spki_sha256 = "{pki.pin_of(pki.pinned_root)}" }}')
    config = load_pins(remember_pins(tmp_path, pki, body=body))
    with https_server({"/u": BODY}) as server:
        fetch(server.url("/u"), tmp_path, config)
    with https_server({"/u": BODY}, issuer=pki.rogue_root) as server, pytest.raises(PinViolation) as info:
        fetch(server.url("/u"), tmp_path, config)
    assert info.value.reason == "unexpected-issuer"
    assert not (tmp_path / "state" / FILE_NAME).exists()


def test_unpinned_remember_per_call_and_per_cli_overrides_the_pins_file(
        pki: PKI, tmp_path: Path, https_server: ServeHTTPS, capsys: pytest.CaptureFixture[str]) -> None:
    pins = remember_pins(tmp_path, pki)
    pins.write_text(pins.read_text().replace('unpinned = "remember"', 'unpinned = "refuse"'))
    config = load_pins(pins)
    with https_server({"/u": BODY}) as server:
        with pytest.raises(PinViolation, match=r"defaults\.unpinned is \"refuse\""):
            fetch(server.url("/u"), tmp_path, config)
        fetch_update(server.url("/u"), tmp_path / "a", config=config, unpinned="remember")
    assert list(records(tmp_path)) == [HOST]
    with https_server({"/u": BODY}, issuer=pki.rogue_root) as server:
        code = main(["fetch", server.url("/u"), "-o", str(tmp_path / "b"), "--pins", str(pins),
                     "--unpinned", "remember", "--json", "--retries", "0"])
    out = json.loads(capsys.readouterr().out)
    assert (code, out["error"], out["reason"], out["host"]) == (3, "PinViolation", "issuer-changed", HOST)
    assert pki.pin_of(pki.rogue_root) in json.dumps(out["chain"])
    assert any(pki.pin_of(pki.pinned_int) in e for e in out["expected"])
    assert not (tmp_path / "b").exists()
    with pytest.raises(UsageError, match="unpinned must be one of"):
        fetch_update("https://x.test/", tmp_path / "c", config=config, unpinned="trust")


def test_known_lists_records_as_text_and_json(pki: PKI, tmp_path: Path, https_server: ServeHTTPS,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    pins = remember_pins(tmp_path, pki)
    assert main(["known", "--pins", str(pins)]) == 0
    assert "no known issuers" in capsys.readouterr().out
    assert not (tmp_path / "state").exists(), "listing creates nothing"
    with https_server({"/u": BODY}) as server:
        fetch(server.url("/u"), tmp_path, load_pins(pins))
    assert main(["known", HOST, "--pins", str(pins)]) == 0
    text = capsys.readouterr().out
    assert HOST in text
    assert f"sha256/{pki.pin_of(pki.pinned_root)}" in text
    assert main(["known", "--pins", str(pins), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["ok"]
    assert doc["max_age_days"] == 400
    assert [i["spki_sha256"] for i in doc["hosts"][0]["issuers"]][1] == pki.pin_of(pki.pinned_root)


def test_certificate_text_is_escaped_in_the_file_and_in_known(pki: PKI, tmp_path: Path,
                                                              https_server: ServeHTTPS,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    hostile = pki.pinned_root.child_ca("Evil\x1b[2J\nCA", org="Example Inc")
    pins = remember_pins(tmp_path, pki)
    with https_server({"/u": BODY}, issuer=hostile) as server:
        fetch(server.url("/u"), tmp_path, load_pins(pins))
    assert b"\x1b" not in (tmp_path / "state" / FILE_NAME).read_bytes()
    assert main(["known", "--pins", str(pins)]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out
    assert "Evil" in out
    assert all(not line.startswith("CA") for line in out.splitlines())


# --------------------------------------------------------------------------- the file


@pytest.mark.parametrize("content", [b"not json", b'{"hosts": {}}', b"[]",
                                     b'{"format": "pinclient known-issuers 1", "hosts": {"h": 1}}'])
def test_a_known_issuers_file_pinclient_did_not_write_is_never_replaced(
        pki: PKI, tmp_path: Path, https_server: ServeHTTPS, content: bytes) -> None:
    config = load_pins(remember_pins(tmp_path, pki))
    (tmp_path / "state").mkdir()
    path = tmp_path / "state" / FILE_NAME
    path.write_bytes(content)
    with https_server({"/u": BODY}) as server, pytest.raises(UsageError, match="not a known-issuers file"):
        fetch(server.url("/u"), tmp_path, config)
    assert path.read_bytes() == content
    assert sorted(p.name for p in path.parent.iterdir()) == [FILE_NAME, FILE_NAME + ".lock"]


@posix_only("mkfifo")
def test_a_fifo_or_folder_at_the_known_issuers_file_is_refused_without_waiting(
        pki: PKI, tmp_path: Path, https_server: ServeHTTPS) -> None:
    config = load_pins(remember_pins(tmp_path, pki))
    (tmp_path / "state").mkdir()
    path = tmp_path / "state" / FILE_NAME
    os.mkfifo(path)
    with https_server({"/u": BODY}) as server, pytest.raises(UsageError, match="not a regular file"):
        fetch(server.url("/u"), tmp_path, config)
    path.unlink()
    path.mkdir()
    with https_server({"/u": BODY}) as server, pytest.raises(UsageError, match="not a regular file"):
        fetch(server.url("/u"), tmp_path, config)
    assert path.is_dir()


def test_host_spellings_share_one_record(pki: PKI, tmp_path: Path, https_server: ServeHTTPS) -> None:
    config = load_pins(remember_pins(tmp_path, pki))
    with https_server({"/u": BODY}) as server:
        fetch(server.url("/u"), tmp_path, config)
    with https_server({"/u": BODY}, issuer=pki.rogue_root) as server, pytest.raises(PinViolation) as info:
        fetch(server.url("/u", host="UPDATES.Test."), tmp_path, config)
    assert info.value.reason == "issuer-changed"
    assert list(records(tmp_path)) == [HOST]


def test_a_symbolic_link_at_the_known_issuers_file_is_refused(pki: PKI, tmp_path: Path,
                                                              https_server: ServeHTTPS) -> None:
    config = load_pins(remember_pins(tmp_path, pki))
    (tmp_path / "state").mkdir()
    target = tmp_path / "elsewhere.json"
    target.write_text('{"format": "pinclient known-issuers 1", "hosts": {}}')
    (tmp_path / "state" / FILE_NAME).symlink_to(target)
    with https_server({"/u": BODY}) as server, pytest.raises(UsageError, match="symbolic link"):
        fetch(server.url("/u"), tmp_path, config)
    assert (tmp_path / "state" / FILE_NAME).is_symlink()
    assert json.loads(target.read_text())["hosts"] == {}


def test_a_state_folder_that_cannot_be_made_refuses_the_first_contact(
        pki: PKI, tmp_path: Path, https_server: ServeHTTPS) -> None:
    # Fail closed: a host that cannot be remembered is not let through unremembered.
    config = load_pins(remember_pins(tmp_path, pki))
    (tmp_path / "state").write_text("a file where the state folder should be")
    with https_server({"/u": BODY}) as server:
        with pytest.raises(StorageError, match="cannot lock known issuers"):
            fetch(server.url("/u"), tmp_path, config)
        server.wait_idle()
    assert all(c.received == b"" for c in server.conns)
    assert (tmp_path / "state").read_text() == "a file where the state folder should be"


@posix_only("flock holds the lock from the test's side")
def test_waiting_for_another_process_lock_ends_at_the_callers_deadline(pki: PKI, tmp_path: Path) -> None:
    import fcntl

    config = load_pins(remember_pins(tmp_path, pki))
    store = KnownIssuers.for_config(config)
    (tmp_path / "state").mkdir()
    chain = [pki.pinned_int.issue_leaf(HOST).cert, pki.pinned_int.cert, pki.pinned_root.cert]
    ders = [c.public_bytes(Encoding.DER) for c in chain]
    with open(store.lock_path, "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        start = time.monotonic()
        with deadline(time.monotonic() + 0.3), pytest.raises(StorageError, match="another process held"):
            store.judge(config, HOST, ders, dt.datetime.now(dt.timezone.utc))
        assert time.monotonic() - start < 2
    assert store.judge(config, HOST, ders, dt.datetime.now(dt.timezone.utc)).reason == "first-contact"


# --------------------------------------------------------------------------- pins.toml


@pytest.mark.parametrize(("value", "days"), [("400", 400), ('"400d"', 400), ("1", 1), ('"36500d"', 36500)])
def test_remember_max_age_spellings(value: str, days: int) -> None:
    config = parse_pins(f'version = 1\n[defaults]\nunpinned = "remember"\nremember_max_age = {value}\n')
    assert config.defaults.unpinned == "remember"
    assert config.defaults.remember_max_age == days


@pytest.mark.parametrize("value", ["0", "-1", "true", "1.5", '"400"', '"1y"', '"400 d"', '"d"',
                                   '"\u0664\u0660\u0660d"', '"9999999999d"', "36501"])
def test_remember_max_age_that_cannot_mean_days_is_refused_with_the_spelling(value: str) -> None:
    with pytest.raises(PinsFileError, match=r"remember_max_age.*written 400 or \"400d\""):
        parse_pins(f'version = 1\n[defaults]\nunpinned = "remember"\nremember_max_age = {value}\n')


def test_remember_max_age_defaults_to_400_days_and_belongs_in_defaults() -> None:
    assert parse_pins('version = 1\n[defaults]\nunpinned = "remember"\n').defaults.remember_max_age == 400
    with pytest.raises(PinsFileError, match="remember_max_age"):
        parse_pins('version = 1\n[defaults]\nunpinned = "remember"\n' + pinset(
            "x", ["a.test"], '{ spki_sha256 = "' + "A" * 43 + '=" }') + "remember_max_age = 3\n")
    with pytest.raises(PinsFileError, match="remember"):
        parse_pins('version = 1\n[defaults]\nunpinned = "rememberr"\n')


def test_check_judges_a_remembered_host_against_its_record_and_records_nothing(
        pki: PKI, tmp_path: Path, https_server: ServeHTTPS, capsys: pytest.CaptureFixture[str]) -> None:
    pins = remember_pins(tmp_path, pki)
    with https_server({"/u": BODY}, issuer=pki.rogue_root) as server:
        assert main(["check", server.url("/"), "--pins", str(pins), "--json"]) == 0  # first contact
        assert not (tmp_path / "state" / FILE_NAME).exists(), "a check never records"
        capsys.readouterr()
    with https_server({"/u": BODY}) as server:
        fetch(server.url("/u"), tmp_path, load_pins(pins))
    with https_server({"/u": BODY}, issuer=pki.rogue_root) as server:
        assert main(["check", server.url("/"), "--pins", str(pins), "--json"]) == 3
    assert '"issuer-changed"' in capsys.readouterr().out


def test_a_first_contact_and_a_remembered_connection_say_so_in_the_result(
        pki: PKI, tmp_path: Path, https_server: ServeHTTPS) -> None:
    config = load_pins(remember_pins(tmp_path, pki))
    with https_server({"/u": BODY}) as server:
        first = fetch_update(server.url("/u"), tmp_path / "a", config=config, retries=0)
        again = fetch_update(server.url("/u"), tmp_path / "b", config=config, retries=0)
    assert (first.pin_result, again.pin_result) == ("first-contact", "remembered")
    assert not first.report_only


def test_forget_on_a_fresh_state_folder_makes_nothing(pki: PKI, tmp_path: Path) -> None:
    pins = remember_pins(tmp_path, pki)
    assert main(["forget", HOST, "--pins", str(pins)]) == 2
    assert not (tmp_path / "state").exists()


def test_an_issuer_change_is_reported_with_the_recorded_keys_as_known_pins(
        pki: PKI, tmp_path: Path, https_server: ServeHTTPS) -> None:
    config = load_pins(remember_pins(tmp_path, pki, extra='report_file = "reports.jsonl"\n'))
    with https_server({"/u": BODY}) as server:
        fetch(server.url("/u"), tmp_path, config)
    with https_server({"/u": BODY}, issuer=pki.rogue_root) as server, pytest.raises(PinViolation):
        fetch(server.url("/u"), tmp_path, config)
    report = json.loads((tmp_path / "reports.jsonl").read_text().splitlines()[-1])
    assert report["reason"] == "issuer-changed"
    assert report["known-pins"] == [f'pin-sha256="{pki.pin_of(pki.pinned_int)}"',
                                    f'pin-sha256="{pki.pin_of(pki.pinned_root)}"']


def test_a_self_signed_server_certificate_in_the_bundle_is_remembered_by_its_own_key(
        pki: PKI, tmp_path: Path, https_server: ServeHTTPS) -> None:
    # ca_bundle holds the server's own self-signed certificate: the verified chain is that one
    # certificate, with no CA above it. Its key is what is remembered (else the record would be
    # empty and every later connection refused).
    key = new_key()
    now = dt.datetime.now(dt.timezone.utc)
    cert = build_certificate(name(HOST), key, ca=False, not_before=now - dt.timedelta(hours=1),
                             not_after=now + dt.timedelta(days=30), hosts=[HOST])
    bundle = tmp_path / "bundle.pem"
    bundle.write_bytes(pki.bundle.read_bytes() + cert.public_bytes(Encoding.PEM))
    pins = remember_pins(tmp_path, pki)
    pins.write_text(pins.read_text().replace(str(pki.bundle), str(bundle)))
    config = load_pins(pins)
    for _ in range(2):  # first contact, then remembered
        with https_server({"/u": BODY}, leaf=Leaf(cert, key, [])) as server:
            assert fetch(server.url("/u"), tmp_path, config) == BODY
    assert records(tmp_path) == {HOST: [b64(spki(cert))]}
    with https_server({"/u": BODY}, issuer=pki.rogue_root) as server, pytest.raises(PinViolation) as info:
        fetch(server.url("/u"), tmp_path, config)
    assert info.value.reason == "issuer-changed"


def test_lint_says_what_remember_does_to_hosts_no_pinset_covers(pki: PKI) -> None:
    from pinclient._lint import against, lint

    config = parse_pins('version = 1\n[defaults]\nunpinned = "remember"\n')
    (finding,) = [f for f in lint(config, today=dt.date.today()) if f.code == "no-pinsets"]
    assert "trusted on first use" in finding.message
    chain = [c.public_bytes(Encoding.DER) for c in (pki.pinned_int.issue_leaf(HOST).cert,
                                                    pki.pinned_int.cert, pki.pinned_root.cert)]
    (finding,) = against(config, HOST, chain, now=dt.datetime.now(dt.timezone.utc))
    assert finding.code == "against-unpinned"
    assert "remembered" in finding.message


def test_two_processes_meeting_one_host_first_agree_on_one_record(pki: PKI, tmp_path: Path) -> None:
    # Two stores on one folder stand for two processes that both found no record before connecting:
    # the judgement is made under the lock on a fresh read, so the second is held to the first's
    # record instead of recording a second CA beside it.
    config = load_pins(remember_pins(tmp_path, pki))
    now = dt.datetime.now(dt.timezone.utc)
    good = [c.public_bytes(Encoding.DER) for c in (pki.pinned_int.issue_leaf(HOST).cert,
                                                   pki.pinned_int.cert, pki.pinned_root.cert)]
    rogue = [c.public_bytes(Encoding.DER) for c in (pki.rogue_root.issue_leaf(HOST).cert,
                                                    pki.rogue_root.cert)]
    first, second = KnownIssuers.for_config(config), KnownIssuers.for_config(config)
    assert first.records() == second.records() == {}
    assert first.judge(config, HOST, good, now).reason == "first-contact"
    assert second.judge(config, HOST, rogue, now).reason == "issuer-changed"
    assert records(tmp_path) == {HOST: [pki.pin_of(pki.pinned_int), pki.pin_of(pki.pinned_root)]}


# --------------------------------------------------------------------------- the lock on Windows


def _fake_windows_locks(monkeypatch: pytest.MonkeyPatch) -> FakeMsvcrt:
    """No flock, msvcrt.locking instead (tests/test_platforms.py's FakeMsvcrt): what _paths sees on Windows."""
    fake = FakeMsvcrt()
    _locks(monkeypatch, fake)
    return fake


def _locks(monkeypatch: pytest.MonkeyPatch, msvcrt: FakeMsvcrt | None) -> None:
    # Not POSIX-only: it switches fcntl *off* in _paths, as on Windows, where it is absent anyway.
    monkeypatch.setattr(paths, "fcntl", None)
    monkeypatch.setattr(paths, "msvcrt", msvcrt)


def test_windows_known_issuers_are_locked_with_msvcrt_and_the_wait_is_bounded(
        pki: PKI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Before, the lock was a flock or nothing: on Windows two processes judged and wrote unlocked.
    fake = _fake_windows_locks(monkeypatch)
    config = load_pins(remember_pins(tmp_path, pki))
    store = KnownIssuers.for_config(config)
    (tmp_path / "state").mkdir()
    chain = [pki.pinned_int.issue_leaf(HOST).cert, pki.pinned_int.cert, pki.pinned_root.cert]
    ders = [c.public_bytes(Encoding.DER) for c in chain]
    held = os.open(store.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        assert paths.try_lock(held) is True  # "another process" holds the lock byte
        start = time.monotonic()
        with deadline(time.monotonic() + 0.3), pytest.raises(StorageError, match="another process held"):
            store.judge(config, HOST, ders, dt.datetime.now(dt.timezone.utc))
        assert time.monotonic() - start < 2
        assert not store.path.exists(), "nothing was written without the lock"
        paths.unlock(held)
    finally:
        os.close(held)
    assert store.judge(config, HOST, ders, dt.datetime.now(dt.timezone.utc)).reason == "first-contact"
    assert fake.held == {}, "the lock byte was released before the close"
    assert {offset for _, offset, _ in fake.calls} == {paths.LOCK_BYTE}


def test_a_platform_without_any_file_lock_refuses_to_update_known_issuers(
        pki: PKI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _locks(monkeypatch, None)
    config = load_pins(remember_pins(tmp_path, pki))
    store = KnownIssuers.for_config(config)
    chain = [pki.pinned_int.issue_leaf(HOST).cert, pki.pinned_int.cert, pki.pinned_root.cert]
    ders = [c.public_bytes(Encoding.DER) for c in chain]
    with pytest.raises(StorageError, match="neither flock nor msvcrt"):
        store.judge(config, HOST, ders, dt.datetime.now(dt.timezone.utc))
    assert not store.path.exists()
