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


class _Messages(list):
    """What Forward writes, message by message (as a Connection)."""

    def send_bytes(self, data):
        self.append(bytes(data))


def forwarded(events) -> list[bytes]:
    """The messages Forward sends the attacker's process for `events`."""
    from monitor.report_attacker import Forward

    messages = _Messages()
    forward = Forward(messages)
    for event in events:
        forward.packet(event)
    forward.done()
    return messages


class _Events:
    """Forward's messages as serve reads them, then the keyed truth."""

    def __init__(self, messages: list[bytes], truth):
        self.messages, self.truth = iter(messages), truth

    def recv_bytes(self) -> bytes:
        return next(self.messages)

    def recv(self):
        return self.truth

    def close(self) -> None:
        pass


class _Answers(list):
    send = list.append

    def close(self) -> None:
        pass


def served(messages: list[bytes], truth, detail: bool = False) -> tuple:
    """The attacker's process's answer (serve) to `messages`, then the keyed `truth`."""
    from monitor.report_attacker import serve

    answers = _Answers()
    serve("all", detail, _Events(messages, truth), answers)
    [answer] = answers
    return answer


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
    """Forward sends the attacker's process each event as an eavesdropper reads it (its View:
    up to its first ESP header, nothing the keyed stage decrypted, no tshark text), as plain
    values: the attacker's process fed them (serve, a batch at a time) reports the same as an
    attacker fed the events."""
    import io
    import pickle

    from monitor.attacker import AttackerAnalyzer
    from monitor.placement import UNREADABLE, View, visible
    from monitor.report_attacker import KeyedTruth
    from monitor.sources import PcapSource

    keyring = load_keyring(crowd / "keyring.toml")
    events = list(PcapSource(str(crowd / "capture.pcapng"), keyring=keyring).events())
    assert any(e.mobility is not None and len(e.layers) > 1 and e.outer.esp is not None
               and e.outer.esp.decrypted for e in events)      # Home BUs opened in tunnels
    messages = forwarded(events)
    classes = set()

    class Unpickler(pickle.Unpickler):            # which classes the messages name
        def find_class(self, module, name):
            classes.add(name)
            return super().find_class(module, name)

    sent = [item for message in messages for item in Unpickler(io.BytesIO(message)).load()]
    # no event, ESP header or message object: plain values (a visible tunnel's layers aside)
    assert classes <= {"IPv6Layer", "MobilePrefix"}
    assert sent.pop() is None and len(sent) == len(events)
    views = [None if item == UNREADABLE else View._make(item) for item in sent]
    for original, view in zip(events, views, strict=True):
        assert view == (None if original.malformed else visible(original))
        if view is None:
            continue
        esps = [n for n, layer in enumerate(original.layers) if layer.esp is not None]
        if esps:                                 # nothing after the first ESP header
            first = original.layers[esps[0]].esp
            assert (view.spi, view.esp_sequence, view.layers) == (first.spi, first.sequence,
                                                                  esps[0] + 1)
            assert view.mh_type is None and view.prefix_discovery is None
            assert all(layer.esp is None for layer in view.tunnel)
        else:
            assert view.layers == len(original.layers) and view.spi is None
            assert view.mh_type == (original.mobility.mh_type if original.mobility else None)
    one = AttackerAnalyzer()
    for original in events:
        one.packet(original)
    one.done()

    status, section, _ = served(messages, KeyedTruth(None, {}, {}), detail=True)
    assert status == "ok" and section == one.report() and section["profiles"]


@pytest.mark.parametrize("detail", [False, True])
def test_the_attackers_process_makes_no_cyclic_garbage(crowd, detail, monkeypatch):
    """monitor.report_attacker.main runs serve with the cyclic collector off (its young
    collections only ever scanned what the attacker keeps): that holds only while the attacker's
    analysis, sections and privacy score leave no reference cycle behind, on keyed crowds as on
    damaged captures. (The analyzer itself is kept alive here: the process ends with os._exit,
    so what it holds at the end is never freed one object at a time.)"""
    import gc

    from monitor import report_attacker
    from monitor.report import KeyedAnalyzer
    from monitor.report_attacker import KeyedTruth

    kept = []

    class Kept(report_attacker.AttackerAnalyzer):
        def __init__(self, *args):
            super().__init__(*args)
            kept.append(self)

    monkeypatch.setattr(report_attacker, "AttackerAnalyzer", Kept)
    from monitor.sources import PcapSource
    from monitor.stream import EventStream
    from tests.conftest import SHARED_CAPTURES

    other = crowd.parent / "other-crowd"
    run_crowd(other, nodes=5, seed=11, spi="random", background=0.5)
    runs = []
    for where in (crowd, other):
        keyring = load_keyring(where / "keyring.toml")
        keyed = KeyedAnalyzer(keyring, notes=False)
        source = PcapSource(str(where / "capture.pcapng"), keyring=keyring)
        events = []
        EventStream(source, [keyed, type("Keep", (), {"packet": staticmethod(events.append)})]
                    ).run()
        runs.append((forwarded(events), KeyedTruth.of(keyed)))
    damaged = [e for p in sorted(SHARED_CAPTURES.rglob("*.pcap"))
               for e in PcapSource(str(p)).events()]
    assert any(e.malformed for e in damaged)
    runs.append((forwarded(damaged), KeyedTruth(None, {}, {})))
    gc.collect()
    gc.disable()
    try:
        for messages, truth in runs:
            status, section, privacy = served(messages, truth, detail)
            assert status == "ok" and section["profiles"], section
            assert gc.collect() == 0
        assert len(kept) == len(runs)
    finally:
        gc.enable()
