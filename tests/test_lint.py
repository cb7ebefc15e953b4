"""``pinclient lint``: exact findings over a table of good and bad pins files, the exit codes, and
``--against`` a live loopback server."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
from pathlib import Path

import pytest

from pinclient._cli.main import main
from pinclient._lint import Finding, exit_status, is_public_suffix, lint
from pinclient.config import parse_pins
from pinclient.minisign import generate_keypair

from .conftest import HOST, PKI, ServeHTTPS, pinset, write_pins

TODAY = dt.date(2026, 6, 1)


def key(n: int) -> str:
    return base64.b64encode(hashlib.sha256(f"key {n}".encode()).digest()).decode()


A, B, C = key(1), key(2), key(3)


def ps(name: str, hosts: list[str], *issuers: str, extra: str = "") -> str:
    return pinset(name, hosts, *issuers) + extra + "\n"


def spki(k: str, label: str = "") -> str:
    return f'{{ spki_sha256 = "{k}"' + (f', label = "{label}"' if label else "") + " }"


SUBJ = '{ subject = "CN=Example Issuing CA 2,O=Example Inc" }'
TWO = (spki(A, "Root A"), spki(B, "Backup B"))

_SIGNERS = [generate_keypair(None)[1].to_string() for _ in range(2)]
ONE_SIGNER = f'signing_keys = ["{_SIGNERS[0]}"]'
TWO_SIGNERS = f'signing_keys = ["{_SIGNERS[0]}", "{_SIGNERS[1]}"]'

# (case id, pins.toml body, [(severity, code, pinset)] in order)
CASES = [
    ("one-signing-key", ps("p", ["u.example.com"], *TWO, extra=ONE_SIGNER),
     [("warning", "no-backup-signing-key", "p")]),
    ("two-signing-keys", ps("p", ["u.example.com"], *TWO, extra=TWO_SIGNERS), []),
    ("legacy-signatures-allowed",
     ps("p", ["u.example.com"], *TWO, extra=TWO_SIGNERS + "\nallow_legacy_signatures = true"),
     [("warning", "legacy-signatures-allowed", "p")]),
    ("good", ps("p", ["u.example.com"], *TWO), []),
    ("good-wildcard-and-exact-in-one-pinset", ps("p", ["example.com", "*.example.com"], *TWO), []),
    ("one-spki-pin", ps("p", ["u.example.com"], spki(A)), [("warning", "no-backup-pin", "p")]),
    ("same-key-twice", ps("p", ["u.example.com"], spki(A, "x"), spki("sha256/" + A, "y")),
     [("warning", "no-backup-pin", "p")]),
    ("subject-only", ps("p", ["u.example.com"], SUBJ),
     [("warning", "no-backup-pin", "p"), ("warning", "subject-pin", "p")]),
    ("subject-beside-two-keys", ps("p", ["u.example.com"], *TWO, SUBJ), [("warning", "subject-pin", "p")]),
    ("expired-yesterday", ps("p", ["u.example.com"], *TWO, extra="expires = 2026-05-31"),
     [("error", "expired", "p")]),
    ("expires-today", ps("p", ["u.example.com"], *TWO, extra="expires = 2026-06-01"),
     [("error", "expired", "p")]),
    ("expires-in-30-days", ps("p", ["u.example.com"], *TWO, extra="expires = 2026-07-01"),
     [("warning", "expiring-soon", "p")]),
    ("expires-in-31-days", ps("p", ["u.example.com"], *TWO, extra="expires = 2026-07-02"), []),
    ("same-host-twice", ps("p", ["u.example.com"], *TWO) + ps("q", ["U.Example.com."], *TWO),
     [("error", "duplicate-host", "q")]),
    ("same-wildcard-twice", ps("p", ["*.example.com"], *TWO) + ps("q", ["*.example.com"], *TWO),
     [("error", "duplicate-host", "q")]),
    ("exact-under-wildcard", ps("p", ["*.example.com"], *TWO) + ps("q", ["a.example.com"], *TWO),
     [("warning", "overlapping-hosts", "q")]),
    ("wildcard-after-exact", ps("q", ["a.example.com"], *TWO) + ps("p", ["*.example.com"], *TWO),
     [("warning", "overlapping-hosts", "q")]),
    ("nested-wildcards-do-not-overlap", ps("p", ["*.example.com"], *TWO) + ps("q", ["*.b.example.com"], *TWO),
     []),
    ("apex-is-not-under-its-wildcard", ps("p", ["*.example.com"], *TWO) + ps("q", ["example.com"], *TWO), []),
    ("wildcard-over-com", ps("p", ["*.com"], *TWO), [("error", "public-suffix-wildcard", "p")]),
    ("wildcard-over-co-uk", ps("p", ["*.co.uk"], *TWO), [("error", "public-suffix-wildcard", "p")]),
    ("wildcard-over-github-io", ps("p", ["*.GitHub.io"], *TWO), [("error", "public-suffix-wildcard", "p")]),
    ("wildcard-under-co-uk", ps("p", ["*.example.co.uk"], *TWO), []),
    ("many-at-once",
     ps("p", ["*.com", "u.example.com"], spki(A), extra="expires = 2026-06-10")
     + ps("q", ["u.example.com"], SUBJ, spki(B), spki(C)),
     [("warning", "no-backup-pin", "p"), ("warning", "expiring-soon", "p"),
      ("error", "public-suffix-wildcard", "p"), ("warning", "subject-pin", "q"),
      ("error", "duplicate-host", "q")]),
]


@pytest.mark.parametrize(("case", "body", "expected"), CASES, ids=[c[0] for c in CASES])
def test_lint_findings_table(tmp_path: Path, case: str, body: str,
                             expected: list[tuple[str, str, str]]) -> None:
    config = parse_pins("version = 1\n" + body, base_dir=tmp_path)
    findings = lint(config, today=TODAY)
    assert [(f.severity, f.code, f.pinset) for f in findings] == expected
    assert all(f.fix and "\n" not in f.fix for f in findings), "every finding has a one-line fix"


def test_lint_messages_say_what_and_how(tmp_path: Path) -> None:
    body = (ps("p", ["*.co.uk"], spki(A), extra="expires = 2026-06-11")
            + ps("q", ["a.example.com"], *TWO) + ps("r", ["*.example.com"], *TWO))
    text = [f.format() for f in lint(parse_pins("version = 1\n" + body, base_dir=tmp_path), today=TODAY)]
    assert text == [
        'warning: [no-backup-pin] pinset "p": only one pinned key: there is no backup key, so losing '
        "or changing that CA bricks the updater (pinning suicide)\n"
        "    fix: add a second spki_sha256 pin for a key you could move to, such as another CA's root "
        "(`pinclient pin --pem CA.pem` prints it)",
        'warning: [expiring-soon] pinset "p": expires on 2026-06-11, in 10 days\n'
        "    fix: check its pins against the live hosts (`pinclient lint --against URL`), then move "
        "expires forward",
        'error: [public-suffix-wildcard] pinset "p": host pattern "*.co.uk" covers every site directly '
        'under the public suffix "co.uk", not just yours\n'
        '    fix: list your own names instead, e.g. "updates.example.co.uk" or "*.example.co.uk"',
        'warning: [overlapping-hosts] pinset "q": host "a.example.com" is also covered by '
        '"*.example.com" in pinset "r"; the exact name wins, so "q" applies to it\n'
        "    fix: fine if the override is intended; otherwise remove one of the two patterns",
    ]


def test_expired_message_names_the_on_expiry_behaviour(tmp_path: Path) -> None:
    for on_expiry, effect in (("enforce", "still enforced, with a warning on every use"),
                              ("report-only", "downgraded to report-only")):
        body = ps("p", ["u.example.com"], *TWO, extra=f'expires = 2026-01-01\non_expiry = "{on_expiry}"')
        [finding] = lint(parse_pins("version = 1\n" + body, base_dir=tmp_path), today=TODAY)
        assert finding.message.startswith(f'expired on 2026-01-01 (on_expiry = "{on_expiry}": {effect}')


@pytest.mark.parametrize(("name", "public"), [
    ("com", True), ("test", True), ("co.uk", True), ("github.io", True), ("example.com", False),
    ("example.co.uk", False), ("uk.com", False),
])
def test_public_suffix_list(name: str, public: bool) -> None:
    assert is_public_suffix(name) is public


def test_exit_status() -> None:
    warn = Finding("warning", "w", "p", "m", "f")
    err = Finding("error", "e", "p", "m", "f")
    info = Finding("info", "i", "p", "m")
    assert exit_status([]) == 0
    assert exit_status([info, warn]) == 0
    assert exit_status([info, warn], strict=True) == 1
    assert exit_status([info], strict=True) == 0
    assert exit_status([warn, err]) == 2
    assert exit_status([err], strict=True) == 2


# --------------------------------------------------------------------------- the command


def write(tmp_path: Path, body: str) -> Path:
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / "pins.toml"
    path.write_text("version = 1\n" + body)
    return path


def test_lint_command_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    good = write(tmp_path / "good", ps("p", ["u.example.com"], *TWO))
    warned = write(tmp_path / "warned", ps("p", ["u.example.com"], spki(A)))
    bad = write(tmp_path / "bad", ps("p", ["*.com"], *TWO))
    broken = write(tmp_path / "broken", ps("p", ["u.example.com"], '{ spki_sha256 = "nope" }'))
    assert main(["lint", str(good)]) == 0
    assert f"{good}: no problems found" in capsys.readouterr().out
    assert main(["lint", str(good), "--strict"]) == 0
    assert main(["lint", str(warned)]) == 0
    out = capsys.readouterr().out
    assert f'{warned}: warning: [no-backup-pin] pinset "p"' in out
    assert f"{warned}: 0 errors, 1 warning" in out
    assert main(["lint", str(warned), "--strict"]) == 1
    assert main(["lint", str(bad)]) == 2
    assert "public-suffix-wildcard" in capsys.readouterr().out
    assert main(["lint", str(broken)]) == 2
    assert "a SHA-256 is 32 bytes" in capsys.readouterr().err
    assert main(["lint", str(tmp_path / "missing.toml")]) == 2
    # PINS defaults to $PINCLIENT_PINS, like every command.
    monkeypatch.setenv("PINCLIENT_PINS", str(warned))
    assert main(["lint", "--strict"]) == 1


def test_lint_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, ps("p", ["*.com"], spki(A)))
    assert main(["lint", str(path), "--json"]) == 2
    data = json.loads(capsys.readouterr().out)
    assert data["exit_code"] == 2
    assert [(f["severity"], f["code"], f["pinset"]) for f in data["findings"]] == [
        ("warning", "no-backup-pin", "p"), ("error", "public-suffix-wildcard", "p")]


def test_the_example_pins_toml_lints_without_errors(capsys: pytest.CaptureFixture[str]) -> None:
    repo = Path(__file__).resolve().parent.parent
    assert main(["lint", str(repo / "pins.toml")]) in (0, 1)
    out = capsys.readouterr().out
    assert "error:" not in out


# --------------------------------------------------------------------------- --against


def against_pins(pki: PKI, tmp_path: Path, *extra: str) -> Path:
    issuers = [f'{{ spki_sha256 = "{pki.pin_of(pki.pinned_root)}", label = "Example Root R1" }}',
               f'{{ spki_sha256 = "{B}", label = "Backup B" }}', *extra]
    return write_pins(tmp_path / "cfg", pinset("example-updates", [HOST], *issuers), bundle=pki.bundle)


def test_against_says_which_pins_the_live_chain_satisfies(pki: PKI, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str],
                                                          https_server: ServeHTTPS) -> None:
    path = against_pins(pki, tmp_path)
    with https_server() as server:
        code = main(["lint", str(path), "--against", server.url("/"), "--json"])
        server.wait_idle()
    assert code == 0
    assert server.requests == [], "lint downloads nothing"
    findings = json.loads(capsys.readouterr().out)["findings"]
    assert [(f["severity"], f["code"]) for f in findings] == [("info", "against-match"),
                                                              ("info", "against-no-match")]
    assert findings[0]["message"] == (f"sha256/{pki.pin_of(pki.pinned_root)} (Example Root R1) matches "
                                      f"CN=Example Root R1,O=Example Inc in the live chain of "
                                      f"{HOST}:{server.port}")
    assert findings[1]["message"].startswith(f"sha256/{B} (Backup B) matches nothing in the live "
                                             f"chain of {HOST}:{server.port}")


def test_against_a_rogue_chain_is_an_error(pki: PKI, tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str],
                                           https_server: ServeHTTPS) -> None:
    path = against_pins(pki, tmp_path)
    with https_server(issuer=pki.rogue_root) as server:
        code = main(["lint", str(path), "--against", server.url("/")])
    out = capsys.readouterr().out
    assert code == 2
    assert "info: [against-no-match]" in out
    assert ('error: [against-refused] pinset "example-updates": the live chain of '
            f"updates.test:{server.port} breaks the pins (unexpected-issuer): it would be refused; above the leaf: "
            f"sha256/{pki.pin_of(pki.rogue_root)} CN=UTN-USERFirst-Hardware") in out
    assert pki.pin_of(pki.rogue_root) in out


def test_against_an_unreachable_host_exits_6_after_the_file_findings(
        pki: PKI, tmp_path: Path, capsys: pytest.CaptureFixture[str], https_server: ServeHTTPS) -> None:
    path = against_pins(pki, tmp_path)
    with https_server(issuer=pki.untrusted_root) as server:
        code = main(["lint", str(path), "--against", server.url("/")])
    captured = capsys.readouterr()
    assert code == 6
    assert "no problems found" in captured.out
    assert "TLS validation failed" in captured.err


def test_against_a_rogue_chain_under_report_only_is_a_warning(pki: PKI, tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str],
                                                              https_server: ServeHTTPS) -> None:
    issuers = [f'{{ spki_sha256 = "{pki.pin_of(pki.pinned_root)}" }}', f'{{ spki_sha256 = "{B}" }}']
    body = pinset("example-updates", [HOST], *issuers) + 'mode = "report-only"\n'
    path = write_pins(tmp_path / "cfg", body, bundle=pki.bundle)
    with https_server(issuer=pki.rogue_root) as server:
        assert main(["lint", str(path), "--against", server.url("/")]) == 0
        assert main(["lint", str(path), "--against", server.url("/"), "--strict"]) == 1
    assert "report-only mode lets it through with a report" in capsys.readouterr().out


def test_against_an_intermediate_and_its_own_root_are_not_a_backup(
        pki: PKI, tmp_path: Path, capsys: pytest.CaptureFixture[str], https_server: ServeHTTPS) -> None:
    # What `pinclient pin HOST` prints: the intermediate and the root of one CA. Two keys, so the
    # file alone looks backed up; the live chain shows both die together when the vendor moves.
    issuers = [f'{{ spki_sha256 = "{pki.pin_of(pki.pinned_int)}" }}',
               f'{{ spki_sha256 = "{pki.pin_of(pki.pinned_root)}" }}']
    path = write_pins(tmp_path / "cfg", pinset("p", [HOST], *issuers), bundle=pki.bundle)
    with https_server() as server:
        assert main(["lint", str(path)]) == 0
        assert "no-backup" not in capsys.readouterr().out
        assert main(["lint", str(path), "--against", server.url("/")]) == 0
        out = capsys.readouterr().out
        assert main(["lint", str(path), "--against", server.url("/"), "--strict"]) == 1
    assert (f'warning: [no-backup-outside-chain] pinset "p": every pin is a CA in the live chain of '
            f"{HOST}:{server.port}") in out
    # With a pin outside the chain, no warning.
    backed = write_pins(tmp_path / "ok", pinset("p", [HOST], *issuers, f'{{ spki_sha256 = "{B}" }}'),
                        bundle=pki.bundle)
    with https_server() as server:
        assert main(["lint", str(backed), "--against", server.url("/"), "--strict"]) == 0


@pytest.mark.parametrize(("unpinned", "hosts", "where", "found"), [
    ("refuse", ["u.example.com"], "pinset", True),
    ("refuse", ["u.example.com"], "defaults", True),
    ("refuse", ["u.example.com", "pins.example.com"], "pinset", False),
    ("refuse", ["u.example.com", "*.example.com"], "defaults", False),
    ("allow", ["u.example.com"], "pinset", False),
])
def test_a_report_uri_that_can_never_be_delivered_is_an_error(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], unpinned: str, hosts: list[str],
        where: str, found: bool) -> None:
    uri = 'report_uri = "https://pins.example.com/report"\n'
    body = (f'[defaults]\nunpinned = "{unpinned}"\n' + (uri if where == "defaults" else "") + "\n"
            + ps("p", hosts, *TWO) + (uri if where == "pinset" else ""))
    code = main(["lint", str(write(tmp_path, body)), "--json"])
    codes = [f["code"] for f in json.loads(capsys.readouterr().out)["findings"]]
    assert ("report-uri-undeliverable" in codes) is found
    assert code == (2 if found else 0)


def test_a_file_with_no_pinsets_is_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for unpinned in ("refuse", "allow"):
        path = write(tmp_path / unpinned, f'[defaults]\nunpinned = "{unpinned}"\n')
        assert main(["lint", str(path)]) == 2
        assert "error: [no-pinsets] the file has no [[pinset]]" in capsys.readouterr().out


def test_the_readme_report_only_example_can_deliver_its_reports(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    blocks = [b.split("```")[0] for b in readme.split("```toml\n")[1:]]
    [example] = [b for b in blocks if 'mode = "report-only"' in b and "report_uri" in b]
    path = write(tmp_path, example)
    main(["lint", str(path), "--json"])
    codes = [f["code"] for f in json.loads(capsys.readouterr().out)["findings"]]
    assert "report-uri-undeliverable" not in codes
