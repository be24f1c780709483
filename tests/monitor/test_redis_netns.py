"""Sensors on the veths of the netns lab, a real redis-server, one `mip6mon serve` (issue 14,
root): what serve rebuilds from live captures on three links equals `mip6mon report` of the
same traffic as one file, and a fourth sensor at the other end of a link adds nothing."""
from __future__ import annotations

import time

import pytest

from lab import netns
from lab.crowd import crowd_scenario
from monitor.sources import PcapSource
from tests.redis_server import end
from tests.streams import Served, bindings, lab_with_shards, report, sensor

pytestmark = [pytest.mark.root, pytest.mark.redis]


@pytest.mark.parametrize("seed", [13])
def test_three_sensors_on_three_veths_equal_one_report(topology, redis_server, tmp_path, seed):
    # one correspondent: every path on one veth (mn-ha, ha-cn1, mn-cn1)
    scenario = crowd_scenario(nodes=5, correspondents=1, procedures="mixed", lost_bu=0.2,
                              seed=seed)
    out, shards = lab_with_shards(scenario, tmp_path)
    assert {f.link for f in out.frames} <= {"mn-ha", "ha-cn1", "mn-cn1", "other"}
    served = Served(redis_server.url, "--keys", str(tmp_path / "keyring.toml"),
                    log=tmp_path / "serve.log")
    url = redis_server.url
    sensors = {   # name -> (namespace, interface, vantage)
        "mn-ha": ("ha", "ha-mn", "mn-ha"),
        "ha-cn1": ("cn1", "cn1-ha", "ha-cn"),
        "mn-cn1": ("cn1", "cn1-mn", "mn-cn"),
        "mn-ha-other-end": ("mn", "mn-ha", "mn-ha"),      # the fourth: same packets
    }
    procs = []
    try:
        for name, (ns, interface, vantage) in sensors.items():
            procs.append(sensor(url, vantage, name, interface=interface,
                                netns=netns.namespace(ns), log=tmp_path / f"{name}.log"))
        served.wait(lambda s: {x["name"] for x in s["sensors"] if x["state"] == "capturing"}
                    == set(sensors), what="four sensors capturing")
        span = (out.frames[-1].usec - out.frames[0].usec) / 1e6
        netns.send_frames(out.frames, speed=max(1.0, span / 6.0))      # about 6 s
        whole = report(tmp_path / "capture.pcapng", "--keys", str(tmp_path / "keyring.toml"))
        total = whole["capture"]["mobility_packets"]
        status = served.wait(lambda s: s["analysed"] + s["malformed"] >= total
                             and s["held"] == 0 and s["queued"] == 0, what="every packet")
        again = len(list(PcapSource(str(shards["mn-ha"])).events()))
        assert status["analysed"] + status["malformed"] == total   # the fourth added nothing
        assert status["merged"] == again > 0
        got = served.get("/api/report.json")
        assert bindings(got) == bindings(whole)
        assert got["messages"] == whole["messages"]
        assert got["home_bindings"] and got["correspondent_bindings"]
        assert {s["name"]: s["vantage"] for s in status["sensors"]} == \
            {name: v for name, (_, _, v) in sensors.items()}
        assert all(s["drops"] == 0 for s in status["sensors"])
        # the eavesdropper on each link, and the colluders: live, a packet is placed 10 s of
        # capture time (the wall clock, traffic or not) after it came, and a successor link
        # decided 30 s after that (monitor.linking PLACE_WAIT, WAIT): wait until nothing waits
        for vantage in ("mn-ha", "ha-cn", "mn-cn", "all"):
            deadline = time.monotonic() + 120
            while True:
                attacker = served.get("/api/report.json", vantage=vantage)["attacker"]
                if attacker.get("waiting") == 0 or time.monotonic() > deadline:
                    break
                time.sleep(0.5)
            assert attacker["vantage"] == vantage and attacker["waiting"] == 0
            assert attacker["profiles"]
    finally:
        for proc in procs:
            end(proc)
        served.stop()
    assert all(proc.returncode == 0 for proc in procs), \
        [(tmp_path / f"{n}.log").read_text()[-500:] for n in sensors]
