"""`mip6mon lab send --topology netns` for real: namespaces, veths, a live tshark on the home
agent's interfaces, and the packets it saw compared with the scenario's, byte for byte."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lab import netns
from lab.run import build
from lab.scenario import load_scenario
from tests.lab.conftest import read_pcapng

ROOT = Path(__file__).resolve().parents[2]



def start_capture(path: Path, interfaces: list[str]) -> subprocess.Popen:
    cmd = ["ip", "netns", "exec", netns.namespace("ha"), "tshark", "-q", "-w", str(path)]
    for i in interfaces:
        cmd += ["-i", i]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 20
    seen = ""
    while time.monotonic() < deadline:           # PLATFORM-NOTES: wait for dumpcap
        line = proc.stderr.readline()
        seen += line
        if "Capturing on" in line:
            time.sleep(0.5)
            return proc
    proc.kill()
    raise AssertionError(f"tshark did not start: {seen}")


def stop_capture(proc: subprocess.Popen) -> None:
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=20)


@pytest.mark.root
def test_send_demo_into_netns_and_capture_on_home_agent(topology, tmp_path):
    interfaces = ["ha-mn", "ha-cn1", "ha-cn2"]
    proc = start_capture(tmp_path / "live.pcapng", interfaces)
    try:
        sent = subprocess.run([sys.executable, "-m", "monitor.cli", "lab", "send", "demo",
                               "--topology", "netns", "--speed", "20"], cwd=ROOT,
                              capture_output=True, text=True, timeout=120)
    finally:
        stop_capture(proc)
    assert sent.returncode == 0, sent.stderr
    out = build(load_scenario("demo"))
    live = read_pcapng(tmp_path / "live.pcapng")
    on = {name: [r.data for r in live if r.interface == i] for i, name in enumerate(interfaces)}
    # the count per path equals the scenario's count for that path ...
    assert len(on["ha-mn"]) == out.truth["paths"]["mn-ha"] > 0
    assert len(on["ha-cn1"]) + len(on["ha-cn2"]) == out.truth["paths"]["ha-cn"] > 0
    # ... and the bytes are the scenario's, in order, on the right link
    assert on["ha-mn"] == [f.data for f in out.frames if f.path == "mn-ha"]
    assert on["ha-cn1"] == [f.data for f in out.frames if f.link == "ha-cn1"]
    assert on["ha-cn2"] == [f.data for f in out.frames if f.link == "ha-cn2"]
    # the pace is the scenario's, divided by --speed
    span = (live[-1].usec - live[0].usec) / 1e6
    ha_frames = [f for f in out.frames if f.path in ("mn-ha", "ha-cn")]
    expected = (ha_frames[-1].usec - ha_frames[0].usec) / 1e6 / 20
    assert expected * 0.8 < span < expected * 2 + 1.0       # generous: a loaded CI box


@pytest.mark.root
def test_down_removes_everything(topology):
    assert set(netns.existing()) == {netns.namespace(s) for s in netns.NAMESPACES}
    result = subprocess.run([sys.executable, "-m", "monitor.cli", "lab", "down"], cwd=ROOT,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and "removed 4 namespaces" in result.stderr
    assert netns.existing() == []
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert "mip6mon-" not in out


def test_send_and_down_need_root(monkeypatch):
    from argparse import Namespace

    from keys.errors import UserError
    from lab.cli import command_lab
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    for args in (Namespace(lab_command="send", scenario="baseline", topology="netns",
                           speed=1.0, seed=None), Namespace(lab_command="down")):
        with pytest.raises(UserError, match="run as root"):
            command_lab(args)


@pytest.mark.root
def test_send_a_crowd_into_netns(topology, tmp_path):
    """A crowd (several home agents, two correspondents, a burst of moves) is sent like any
    scenario: every node from the mn namespace, every home agent from ha, each packet on its
    path's link; more than two correspondents are refused with one line."""
    from lab.crowd import crowd_document, run_crowd, scenario_toml
    params = dict(nodes=6, home_agents=2, correspondents=2, moves="burst", seed=8,
                  moves_per_node=2, background=0.1)
    run_crowd(tmp_path / "crowd", **params)
    interfaces = ["ha-mn", "ha-cn1", "ha-cn2"]
    proc = start_capture(tmp_path / "live.pcapng", interfaces)
    try:
        sent = subprocess.run([sys.executable, "-m", "monitor.cli", "lab", "send",
                               str(tmp_path / "crowd" / "scenario.toml"), "--speed", "20"],
                              cwd=ROOT, capture_output=True, text=True, timeout=120)
    finally:
        stop_capture(proc)
    assert sent.returncode == 0, sent.stderr
    out = build(load_scenario(str(tmp_path / "crowd" / "scenario.toml")))
    live = read_pcapng(tmp_path / "live.pcapng")
    on = {name: [r.data for r in live if r.interface == i] for i, name in enumerate(interfaces)}
    assert on["ha-mn"] == [f.data for f in out.frames if f.path == "mn-ha"]
    assert on["ha-cn1"] == [f.data for f in out.frames if f.link == "ha-cn1"]
    assert on["ha-cn2"] == [f.data for f in out.frames if f.link == "ha-cn2"]
    three = tmp_path / "three.toml"
    three.write_text(scenario_toml(crowd_document(**{**params, "correspondents": 3})))
    refused = subprocess.run([sys.executable, "-m", "monitor.cli", "lab", "send", str(three)],
                             cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert refused.returncode == 2 and "two correspondents" in refused.stderr
    assert refused.stderr.count("\n") == 1
