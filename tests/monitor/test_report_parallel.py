"""`mip6mon report` with the attacker in a process of its own (issue 10): the same report as
one process gives, with and without keys, scaled and whole; a bad file fails in one line and
no process is left behind."""
from __future__ import annotations

import json
import multiprocessing
import os
import subprocess
import sys

import pytest

from keys.errors import UserError
from keys.keyring import load_keyring
from lab.crowd import run_crowd
from monitor.report import analyse, build_report, report_in_two_processes, scaled
from tests.monitor.conftest import ROOT


def run_cli(*args, one_process=False):
    """`python -m monitor.cli ARGS`; `one_process`: as on a single core (MIP6MON_ONE_PROCESS)."""
    env = {**os.environ, "MIP6MON_ONE_PROCESS": "1" if one_process else "0"}
    return subprocess.run([sys.executable, "-m", "monitor.cli", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def crowd(tmp_path_factory):
    # not a shipped scenario: 9 nodes, SPIs close together, background traffic, ESP throughout
    out = tmp_path_factory.mktemp("crowd")
    run_crowd(out, nodes=9, seed=4, spi="sequential", spi_step=3, background=0.3)
    return out


@pytest.mark.parametrize("keyed", [True, False])
@pytest.mark.parametrize("vantage", ["all", "mn-ha"])
def test_two_processes_give_the_one_process_report(crowd, keyed, vantage):
    capture = str(crowd / "capture.pcapng")
    keyring = load_keyring(crowd / "keyring.toml") if keyed else None
    one = build_report(analyse(capture, keyring, vantage, notes=False))
    assert one["attacker"]["profiles"] and one["correspondent_bindings"]   # something to compare
    if keyed:
        assert one["privacy"]["link_precision"] is not None
    assert report_in_two_processes(capture, keyring, vantage, detail=True) == one
    assert report_in_two_processes(capture, keyring, vantage) == scaled(one)
    assert multiprocessing.active_children() == []


def test_the_cli_prints_the_same_report_either_way(crowd):
    args = ("report", str(crowd / "capture.pcapng"), "--keys", str(crowd / "keyring.toml"),
            "--format", "json")
    two = run_cli(*args)
    one = run_cli(*args, one_process=True)
    assert two.returncode == 0 and one.returncode == 0, two.stderr + one.stderr
    assert json.loads(two.stdout) == json.loads(one.stdout)
    text_two = run_cli(*args[:-2])
    text_one = run_cli(*args[:-2], one_process=True)
    assert text_two.stdout == text_one.stdout and "binding" in text_two.stdout


def test_a_file_that_is_not_a_capture_fails_before_any_process(tmp_path):
    bad = tmp_path / "notes.pcap"
    bad.write_bytes(b"not a capture at all, just some words" * 4)
    with pytest.raises(UserError):
        report_in_two_processes(str(bad), None)
    assert multiprocessing.active_children() == []
    r = run_cli("report", str(bad), "--format", "json")
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_a_capture_cut_short_is_reported_incomplete_by_both(crowd, tmp_path):
    whole = (crowd / "capture.pcapng").read_bytes()
    cut = tmp_path / "cut.pcapng"
    cut.write_bytes(whole[: len(whole) * 2 // 3])
    args = ("report", str(cut), "--keys", str(crowd / "keyring.toml"), "--format", "json")
    two = run_cli(*args)
    one = run_cli(*args, one_process=True)
    assert two.returncode == one.returncode != 0
    assert json.loads(two.stdout) == json.loads(one.stdout)
    assert json.loads(two.stdout)["capture"]["complete"] is False


def test_the_events_forwarded_are_what_an_eavesdropper_reads(crowd):
    """Forward sends the attacker's process each event up to its first ESP header, without
    what the keyed stage decrypted or tshark's text: the attacker fed them reports the same."""
    import pickle

    from monitor.attacker import AttackerAnalyzer
    from monitor.report_attacker import Forward
    from monitor.sources import PcapSource

    keyring = load_keyring(crowd / "keyring.toml")
    events = list(PcapSource(str(crowd / "capture.pcapng"), keyring=keyring).events())
    assert any(e.mobility is not None and len(e.layers) > 1 and e.outer.esp is not None
               and e.outer.esp.decrypted for e in events)      # Home BUs opened in tunnels
    class Messages(list):        # what Forward writes, message by message (as a Connection)
        def send_bytes(self, data):
            self.append(bytes(data))

    messages = Messages()
    forward = Forward(messages)
    for event in events:
        forward.packet(event)
    forward.done()
    sent = [event for message in messages for event in pickle.loads(message)]
    assert sent.pop() is None and len(sent) == len(events)
    for event in sent:
        esps = [n for n, layer in enumerate(event.layers) if layer.esp is not None]
        assert esps in ([], [len(event.layers) - 1])          # nothing after the first ESP
        if esps:
            esp = event.layers[-1].esp
            assert (esp.decrypted, esp.node, esp.payload, esp.bundled) == (False, None, b"", None)
            assert event.mobility is None and event.prefix_discovery is None
        assert (event.transport, event.protocols, event.info) == (None, "", "")
    for original, forwarded in zip(events, sent, strict=True):   # each field where it belongs
        assert (forwarded.frame, forwarded.time, forwarded.length, forwarded.path,
                forwarded.malformed, forwarded.sensor) == (original.frame, original.time,
                                                           original.length, original.path,
                                                           original.malformed, "")
        shown = forwarded.layers[-1].esp
        if shown is not None:
            assert (shown.spi, shown.sequence) == (original.layers[len(forwarded.layers) - 1]
                                                   .esp.spi, original.layers[
                                                       len(forwarded.layers) - 1].esp.sequence)
        else:
            assert (forwarded.layers, forwarded.mobility, forwarded.prefix_discovery) == (
                original.layers, original.mobility, original.prefix_discovery)
    one, two = AttackerAnalyzer(), AttackerAnalyzer()
    for original, forwarded in zip(events, sent, strict=True):
        one.packet(original)
        two.packet(forwarded)
    one.done()
    two.done()
    assert two.report() == one.report() and one.report()["profiles"]
