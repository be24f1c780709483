"""privacy_score against a small stub truth (the keyed analyzer's interface), with values
worked out by hand, and against a lab truth.json."""
from __future__ import annotations

import json
import math

import pytest

from monitor.privacy import LabTruth, privacy_score, privacy_text
from tests.monitor.attacker_builders import (
    COA1,
    COA2,
    COB1,
    COB2,
    HOA1,
    HOA2,
    analyse,
    home_ba_esp,
    home_bu_esp,
)


class StubTruth:
    def __init__(self, nodes, trails=None):
        self.nodes, self.trails = nodes, trails or {}

    def frame_nodes(self):
        return self.nodes

    def care_of_trails(self):
        return self.trails


P = "2001:db8:100::%x"


def _two_nodes(link_b: bool):
    """Node A: HoA in clear at COA1 and COA2 (one profile). Node B: fresh pseudo addresses and
    far-apart SPIs at COB1 and COB2 (two profiles unless link_b)."""
    evs = [home_bu_esp(1, 1, COA1, HOA1, 0x1001, 1), home_ba_esp(2, 1.1, COA1, HOA1, 0x2001, 1),
           home_bu_esp(3, 2, COB1, P % 0xb1, 0x5001, 1),
           home_ba_esp(4, 2.1, COB1, P % 0xb1, 0x6001, 1),
           home_bu_esp(5, 20, COA2, HOA1, 0x1001, 2), home_ba_esp(6, 20.1, COA2, HOA1, 0x2001, 2),
           home_bu_esp(7, 21, COB2, P % (0xb2 if not link_b else 0xb1), 0x7001, 1),
           home_ba_esp(8, 21.1, COB2, P % 0xb2, 0x8001, 1)]
    truth = StubTruth({1: HOA1, 2: HOA1, 5: HOA1, 6: HOA1, 3: HOA2, 4: HOA2, 7: HOA2, 8: HOA2},
                      {HOA1: [(1, COA1, 1), (20, COA2, 5)],
                       HOA2: [(2, COB1, 3), (21, COB2, 7)]})
    return analyse(evs), truth


def test_perfect_attacker_scores_one():
    attacker, truth = _two_nodes(link_b=True)
    s = privacy_score(attacker, truth)
    assert s["link_precision"] == 1.0 and s["link_recall"] == 1.0
    assert s["care_of_addresses"] == 4 and s["care_of_tied"] == 2      # only A's HoA is seen
    assert s["nodes"][HOA1]["care_of_tied"] == [COA1, COA2]
    assert s["nodes"][HOA2]["care_of_tied"] == [] and s["nodes"][HOA2]["longest_followed"] == 2
    assert s["followed_fraction"] == 1.0 and s["home_address_exposed"] == 0.5


def test_split_node_lowers_recall_not_precision():
    attacker, truth = _two_nodes(link_b=False)
    s = privacy_score(attacker, truth)
    # A: 4 frames together (6 pairs); B: 2 + 2 (2 of its 6 pairs): recall 8 / 12
    assert s["link_precision"] == 1.0
    assert s["link_recall"] == pytest.approx(8 / 12, abs=1e-4)
    b = s["nodes"][HOA2]
    assert b["profiles"] == 2 and b["longest_followed"] == 1 and b["care_of_moves"] == 2
    assert s["followed_fraction"] == pytest.approx((1 + 0.5) / 2, abs=1e-4)


def test_merged_nodes_lower_precision_and_raise_anonymity():
    # one care-of address shared by two nodes in turn (a reused address): one profile
    evs = [home_bu_esp(1, 1, COA1, P % 1, 0x1001, 1), home_bu_esp(2, 2, COA1, P % 2, 0x1001, 2),
           home_bu_esp(3, 30, COA1, P % 3, 0x9001, 1), home_bu_esp(4, 31, COA1, P % 4, 0x9001, 2)]
    truth = StubTruth({1: HOA1, 2: HOA1, 3: HOA2, 4: HOA2})
    s = privacy_score(analyse(evs), truth)
    assert s["link_precision"] == pytest.approx(2 / 6, abs=1e-4)   # 2 true of 6 linked pairs
    assert s["link_recall"] == 1.0
    n = s["nodes"][HOA1]
    assert n["anonymity_set_size"] == 2 and n["entropy_bits"] == pytest.approx(1.0)
    assert n["degree_of_anonymity"] == pytest.approx(1.0)            # H / log2(2 nodes)
    assert s["entropy_bits_mean"] == pytest.approx(1.0)


def test_uneven_anonymity_entropy():
    evs = [home_bu_esp(i, i, COA1, P % i, 0x1001, i) for i in range(1, 5)]
    truth = StubTruth({1: HOA1, 2: HOA1, 3: HOA1, 4: HOA2})
    s = privacy_score(analyse(evs), truth)
    h = -(0.75 * math.log2(0.75) + 0.25 * math.log2(0.25))
    assert s["nodes"][HOA1]["entropy_bits"] == pytest.approx(h, abs=1e-4)
    assert s["nodes"][HOA2]["anonymity_set_size"] == 2


def test_no_truth_gives_nulls_and_a_note():
    attacker, _ = _two_nodes(link_b=True)
    for keyed in (None, StubTruth({})):
        s = privacy_score(attacker, keyed)
        assert s["link_precision"] is None and s["link_recall"] is None and "--keys" in s["note"]
        assert "no truth" in privacy_text({"privacy": s})


def test_text_and_json():
    attacker, truth = _two_nodes(link_b=False)
    s = privacy_score(attacker, truth)
    json.dumps(s)
    text = privacy_text({"privacy": s})
    assert "link precision 1" in text and "recall 0.667" in text and HOA2 in text


def test_lab_truth_reads_truth_json(tmp_path):
    (tmp_path / "truth.json").write_text(json.dumps({
        "nodes": {"mn1": {"home_address": HOA1}},
        "home_bindings": [{"home_address": HOA1, "care_of_address": COA1, "time": 1.0,
                           "frame": 2, "lifetime": 420},
                          {"home_address": HOA1, "care_of_address": HOA1, "time": 9.0,
                           "frame": 9, "lifetime": 0}],
        "frames": {"1": {"node": None}, "2": {"node": "mn1"}}}))
    t = LabTruth.from_file(tmp_path / "truth.json")
    assert t.frame_nodes() == {2: HOA1}
    assert t.care_of_trails() == {HOA1: [(1.0, COA1, 2)]}


def test_keyed_analyzer_without_keyring_is_no_truth():
    from monitor.keyed import KeyedAnalyzer
    attacker, _ = _two_nodes(link_b=True)
    s = privacy_score(attacker, KeyedAnalyzer(None))
    assert s["link_precision"] is None and "note" in s


def test_anonymity_set_from_what_the_attacker_could_not_tell_apart():
    # node A at COA1 (SPI 0x1001) and node B at COB1 (SPI 0x1010, 15 above: sequential
    # allocation), then 0x1075 at COA2: A's 6.4 renewal, or B's; the attacker cannot tell
    evs = [home_bu_esp(1, 1, COA1, P % 1, 0x1001, 1), home_bu_esp(2, 2, COB1, P % 2, 0x1010, 1),
           home_bu_esp(3, 30, COA2, P % 3, 0x1075, 2)]
    attacker = analyse(evs)
    truth = StubTruth({1: HOA1, 3: HOA1, 2: HOA2})
    s = privacy_score(attacker, truth)
    assert s["link_precision"] is None and s["profiles"] == 3      # nothing linked, nothing merged
    third = next(p for p in attacker.profiles() if 3 in p.frames)
    assert set(third.could_be) == {p.id for p in attacker.profiles() if p is not third}
    assert third.anonymity_set["size"] == 3
    b = s["nodes"][HOA2]
    assert b["anonymity_set_size"] == 2                  # B could be A's frame 3's node, or B
    assert b["entropy_bits"] == pytest.approx(1.0, abs=0.1)
    a = s["nodes"][HOA1]
    assert a["anonymity_set_size"] == pytest.approx(1.5)   # frame 1 surely A; frame 3: A or B
