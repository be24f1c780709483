"""`mip6mon report` as a user runs it (`python -m monitor.cli report ...` in a subprocess)."""
import json
import os

import pytest

from tests.monitor.conftest import run_cli

HOME_FIELDS = {"home_agent", "home_address", "pseudo_home_address", "care_of_address",
               "sequence", "lifetime", "frame", "time"}
CORRESPONDENT_FIELDS = {"correspondent", "home_address", "pseudo_home_address",
                        "care_of_address", "sequence", "authenticator_valid", "frame", "time"}


@pytest.fixture(scope="module")
def demo(scenario_runs):
    truth, _, _, out = scenario_runs("demo")
    return truth, out


def test_json_report_shape_and_content(demo):
    truth, out = demo
    r = run_cli("report", str(out / "capture.pcapng"), "--keys", str(out / "keyring.toml"),
                "--format", "json")
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert {"capture", "messages", "home_bindings", "correspondent_bindings", "findings",
            "attacker", "privacy"} <= set(report)
    assert report["capture"]["packets"] == sum(truth["paths"].values())
    assert all(set(b) == HOME_FIELDS for b in report["home_bindings"])
    assert all(set(b) == CORRESPONDENT_FIELDS for b in report["correspondent_bindings"])
    assert all(set(f) == {"kind", "frame", "message"} for f in report["findings"])
    assert report["home_bindings"] == truth["home_bindings"]
    assert report["correspondent_bindings"] == truth["correspondent_bindings"]
    assert "home-bu-retransmitted" in {f["kind"] for f in report["findings"]}


@pytest.mark.parametrize("detail", [False, True])
def test_two_processes_print_the_one_process_json_byte_for_byte(demo, monkeypatch, detail):
    # with the attacker in a process of its own, the keyed sections are made while it
    # finishes (monitor.report.report_in_two_processes): the same text, the keys' order too
    _, out = demo
    args = ["report", str(out / "capture.pcapng"), "--keys", str(out / "keyring.toml"),
            "--format", "json"] + (["--detail"] if detail else [])
    texts = []
    for one_process in ("1", "0"):
        monkeypatch.setenv("MIP6MON_ONE_PROCESS", one_process)
        r = run_cli(*args)
        assert r.returncode == 0, r.stderr
        texts.append(r.stdout)
    assert texts[0] == texts[1]
    assert list(json.loads(texts[1])) == (
        ["capture", "messages", "home_bindings", "correspondent_bindings", "findings",
         "attacker", "privacy"] + ([] if detail else ["finding_counts"]))


@pytest.mark.parametrize("bad", ["capture", "keyring"])
def test_bad_input_with_the_attacker_started_first_is_one_line(demo, monkeypatch, tmp_path,
                                                                 bad):
    """`report` starts the attacker's process before it reads the keyring and opens the
    capture (its start-up beside theirs): either failing is still one line and exit 2, and
    that process is ended at once rather than left to find its pipe closed."""
    _, out = demo
    monkeypatch.setenv("MIP6MON_ONE_PROCESS", "0")
    capture, keys = out / "capture.pcapng", out / "keyring.toml"
    if bad == "capture":
        capture = tmp_path / "notes.pcapng"
        capture.write_text("not a capture\n")
    else:
        keys = tmp_path / "missing.toml"
    r = run_cli("report", str(capture), "--keys", str(keys), "--format", "json")
    assert r.returncode == 2 and r.stdout == ""
    [line] = r.stderr.strip().splitlines()
    assert line.startswith("mip6mon: error:") and "Traceback" not in r.stderr


def test_text_report_tables(demo):
    truth, out = demo
    r = run_cli("report", str(out / "capture.pcapng"), "--keys", str(out / "keyring.toml"))
    assert r.returncode == 0, r.stderr
    assert f"home bindings ({len(truth['home_bindings'])}):" in r.stdout
    assert f"correspondent bindings ({len(truth['correspondent_bindings'])}):" in r.stdout
    pseudo = next(b["pseudo_home_address"] for b in truth["home_bindings"]
                  if b["pseudo_home_address"])
    assert pseudo in r.stdout


def test_report_without_keys(demo):
    _, out = demo
    r = run_cli("report", str(out / "capture.pcapng"), "--format", "json")
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert report["capture"]["esp_decrypted"] == 0
    assert report["home_bindings"] == []      # every Home BU is inside undecrypted ESP


def _one_error_line(r):
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mip6mon: error:"), r.stderr
    assert "Traceback" not in r.stderr
    return lines[0]


def test_missing_capture(tmp_path):
    line = _one_error_line(run_cli("report", str(tmp_path / "nope.pcapng")))
    assert "nope.pcapng" in line


def test_not_a_capture(tmp_path):
    bogus = tmp_path / "notes.pcapng"
    bogus.write_text("this is not a capture file\n" * 20)
    _one_error_line(run_cli("report", str(bogus)))


def test_bad_keyring(demo, tmp_path):
    _, out = demo
    bad = tmp_path / "bad.toml"
    bad.write_text('[[correspondent]]\naddress = "2001:db8:3::5"\nkcn = "zz-secret-zz"\n')
    os.chmod(bad, 0o600)
    line = _one_error_line(run_cli("report", str(out / "capture.pcapng"), "--keys", str(bad)))
    assert "kcn" in line and "zz-secret-zz" not in line


def test_missing_keyring(demo, tmp_path):
    _, out = demo
    _one_error_line(run_cli("report", str(out / "capture.pcapng"), "--keys",
                            str(tmp_path / "absent.toml")))
