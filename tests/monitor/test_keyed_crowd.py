"""The keyed view in a crowd (issue 10): lab crowds whose SPIs are allocated close together, so
the draft 6.4 chains of different nodes cross. The lab's traffic is clean, so the keyed view
must rebuild every home and correspondent binding of the lab's truth and make no finding at
all; and no frame may be tied to a node other than the one the lab sent it for (attribution
never guesses: an SA names a node only through a verified packet).

Node counts, seeds, SPI steps, SA setups and move patterns vary (storms: `burst` moves many
nodes within milliseconds); the keyring lists each SA under its first SPI only, as an operator
configures it, so every later SPI is found by the keyed stage from verified packets.
"""
from __future__ import annotations

import pytest

from keys.keyring import load_keyring
from lab.crowd import run_crowd
from monitor.engines import pcap_source
from monitor.keyed import KeyedAnalyzer
from monitor.report import analyse, build_report
from monitor.stream import EventStream

CROWDS = [
    # nodes, seed, crowd parameters
    (6, 1, {"spi": "sequential", "spi_step": 1, "moves": "burst", "burst_size": 6}),
    (6, 2, {"spi": "sequential", "spi_step": 4, "sa_setup": "staggered"}),
    (6, 3, {"spi": "sequential", "spi_step": 16, "moves": "poisson", "move_rate": 2.0}),
    (6, 4, {"spi": "random", "moves": "burst", "burst_spread": 0.0}),
    (20, 5, {"spi": "sequential", "spi_step": 1, "moves": "burst", "burst_size": 20,
             "burst_spread": 0.001}),
    (20, 6, {"spi": "sequential", "spi_step": 2, "procedures": "5.2.1+mixed"}),
    (20, 7, {"spi": "sequential", "spi_step": 16, "sa_setup": "staggered",
             "procedures": "5.2.2", "moves": "poisson"}),
    (20, 8, {"spi": "sequential", "spi_step": 3, "home_agents": 2, "iid": "mixed",
             "prefix_discovery": 0.5, "return_home": 0.5}),
]


@pytest.mark.parametrize("nodes, seed, params", CROWDS,
                         ids=[f"{n}-nodes-seed-{s}" for n, s, _ in CROWDS])
def test_the_keyed_view_of_a_crowd_equals_the_truth_with_no_finding(tmp_path, nodes, seed,
                                                                     params):
    truth = run_crowd(tmp_path, nodes=nodes, seed=seed, keyring="initial", **params)
    analysis = analyse(str(tmp_path / "capture.pcapng"), load_keyring(tmp_path / "keyring.toml"))
    report = build_report(analysis)
    assert report["capture"]["esp_undecrypted"] == 0 and report["capture"]["esp_decrypted"]
    assert len(report["home_bindings"]) >= nodes
    for kind in ("home_bindings", "correspondent_bindings"):
        assert report[kind] == truth[kind], kind
    assert report["findings"] == []
    # every frame the keyed view ties to a node is the lab's frame of that node
    home_of = {name: node["home_address"] for name, node in truth["nodes"].items()}
    sent_for = {int(frame): home_of[f["node"]] for frame, f in truth["frames"].items()
                if f.get("node") in home_of}
    tied = analysis.keyed.frame_nodes()
    wrong = {frame: node for frame, node in tied.items()
             if frame in sent_for and sent_for[frame] != node}
    assert wrong == {}
    # and every frame of a node's signalling is tied to it (data the home agent forwards to
    # a correspondent in 5.4 / 5.3.2 may carry nothing the keys tie to a node)
    signalling = {int(frame) for frame, f in truth["frames"].items()
                  if f.get("node") in home_of and f["what"] != "data"}
    assert signalling - set(tied) == set()


@pytest.mark.parametrize("max_frames", [None, 50])
def test_a_batch_of_events_is_what_each_event_on_its_own_is(tmp_path, max_frames):
    """KeyedAnalyzer.packets (a batch run's hook) and packet (a live view's, an event at a
    time) give the same keyed view: bindings, findings, notes, attribution, trails, news."""
    run_crowd(tmp_path, nodes=6, seed=9, keyring="initial", spi="sequential", spi_step=1,
              moves="burst", procedures="5.2.1+mixed", return_home=0.5)
    keyring = load_keyring(tmp_path / "keyring.toml")
    events: list = []

    class Keep:
        def packet(self, event) -> None:
            events.append(event)

    EventStream(pcap_source(str(tmp_path / "capture.pcapng"), keyring), [Keep()]).run()
    one, batched = (KeyedAnalyzer(keyring, max_frames=max_frames) for _ in range(2))
    for event in events:
        one.packet(event)
    for start in range(0, len(events), 7):
        batched.packets(events[start:start + 7])
    frames = [event.frame for event in events]

    def view(k: KeyedAnalyzer) -> tuple:
        return (k.report(), k.frame_nodes(), k.care_of_trails(), k.news()[0],
                [k.annotations(frame) for frame in frames], k.unreadable)

    assert view(batched) == view(one) and one.report()["home_bindings"]
