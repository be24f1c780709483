"""Issue 12's "done when", as root: a lab crowd's MN-HA traffic sent over a veth in three parts
while `LiveSource` captures it with the keys; between the parts dumpcap is killed, then the
interface taken down and up, the sender paused while the capture cannot see. The capture
goes on, each outage is one gap, nothing is unaccounted, and the binding caches equal those
`mip6mon report` builds from the same traffic as a file (itself equal to the lab's truth:
tests/test_reports_unchanged.py)."""
from __future__ import annotations

import os
import threading
import time

import pytest

from dissectors.supervisor import Backoff
from keys.keyring import load_keyring
from lab.crowd import crowd_scenario
from monitor.keyed import KeyedAnalyzer
from monitor.sources import LiveSource, PcapSource
from monitor.stream import EventStream
from tests.streams import bindings, lab_with_shards, report
from tests.veth import FrameSender, add_pair, ip
from tests.waiting import wait_for

pytestmark = pytest.mark.root




@pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root")
@pytest.mark.parametrize("seed", [21])
def test_killed_dumpcap_and_a_link_down_lose_nothing_sent_while_capturing(tmp_path, seed):
    scenario = crowd_scenario(nodes=5, correspondents=1, procedures="mixed", seed=seed)
    _, shards = lab_with_shards(scenario, tmp_path)
    keyring_path = tmp_path / "keyring.toml"
    whole = report(shards["mn-ha"], "--keys", str(keyring_path))
    assert whole["home_bindings"], "the crowd made no home binding"
    from dissectors.capfile import records
    with open(shards["mn-ha"], "rb") as f:
        frames = [rec.data for rec in records(f)]
    parts = [frames[i * len(frames) // 3:(i + 1) * len(frames) // 3] for i in range(3)]

    ns = f"mip6live{os.getpid()}"
    ip("link", "del", "mip6la", check=False)
    ip("netns", "add", ns)
    sender = source = thread = None
    try:
        add_pair("mip6la", "mip6lb", ns)
        sender = FrameSender(ns, "mip6lb")

        def send(part: list[bytes]) -> None:
            for at in range(0, len(part), 50):
                sender.send(part[at:at + 50])
                time.sleep(0.02)

        source = LiveSource("mip6la", keyring=load_keyring(str(keyring_path)),
                            backoff=Backoff(delay=0.2, cap=0.5, give_up=10.0))
        keyed = KeyedAnalyzer(source.keyring)
        stream = EventStream(source, [keyed])
        thread = threading.Thread(target=stream.run, daemon=True)
        thread.start()
        assert source.ready.wait(10)
        acc = source.accounting
        sent = 0

        def caught_up() -> bool:
            return acc.read == sent and acc.unaccounted() == 0

        send(parts[0])
        sent += len(parts[0])
        assert wait_for(caught_up), acc
        first = source.pid
        os.kill(first, 9)                                  # dumpcap dies; the sender waits
        assert wait_for(lambda: source.pid not in (None, first) and source.recovering is None)
        send(parts[1])
        sent += len(parts[1])
        assert wait_for(caught_up), acc
        ip("link", "set", "mip6la", "down")                # the interface goes away a while
        assert wait_for(lambda: source.recovering == "mip6la is down"), source.recovering
        ip("link", "set", "mip6la", "up")
        assert wait_for(lambda: source.recovering is None), source.recovering
        send(parts[2])
        sent += len(parts[2])
        assert wait_for(caught_up), acc

        state = source.supervision()
        assert state["restarts"] == 1
        assert [g["why"] for g in state["gaps"]] == ["dumpcap was killed by SIGKILL",
                                                     "mip6la is down"]
        assert all(g["end"] is not None for g in state["gaps"])
        assert acc.dropped == 0 and acc.read == len(frames)
        mobility = len(list(PcapSource(str(shards["mn-ha"])).events()))
        assert acc.analysed + acc.malformed == mobility == whole["capture"]["mobility_packets"]
        live = keyed.report()
        assert bindings(live) == bindings(whole)
    finally:
        if source is not None:
            source.close()
        if thread is not None:
            thread.join(10)
        if sender is not None:
            sender.close()
        ip("link", "del", "mip6la", check=False)
        ip("netns", "del", ns, check=False)
