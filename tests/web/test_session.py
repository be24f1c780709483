"""What the panes receive: profiles made small enough to parse every second, and per browser
only what it has not had yet."""
import json

import pytest

from keys.keyring import load_keyring
from monitor.report import analyse
from monitor.sources import PcapSource
from web.session import MonitorSession, PaneCursor, profile_for_pane


def test_pane_profiles_keep_counts_and_rules_but_not_every_frame(demo_lab):
    analysis = analyse(str(demo_lab.capture), load_keyring(demo_lab.keyring))
    profiles = analysis.attacker.report()["profiles"]
    assert profiles
    for full in profiles:
        pane = profile_for_pane(full)
        assert pane["frames"] == len(full["frames"])
        assert pane["care_of_addresses"] == full["care_of_addresses"]
        assert pane["addresses"] == full["addresses"]
        rules = {(e["rule"], e["links"]) for e in full["evidence"]}
        assert {(e["rule"], e["links"]) for e in pane["evidence"]} == rules
        for e in pane["evidence"]:
            mine = [f["confidence"] for f in full["evidence"]
                    if (f["rule"], f["links"]) == (e["rule"], e["links"])]
            # a link shows its weakest confidence, evidence that did not link its strongest
            assert e["confidence"] == (min(mine) if e["links"] else max(mine))
            if e["over"] is not None:
                assert e["links"] and 0 <= e["over"]["probability"] < e["confidence"]
        assert sum(e["pieces"] for e in pane["evidence"]) == len(full["evidence"])
        assert sum(e["frame_count"] for e in pane["evidence"]) == \
            sum(e["frame_count"] for e in full["evidence"])
        assert pane["anonymity_set"] == full["anonymity_set"]
        assert len(json.dumps(pane)) < len(json.dumps(full))


# --- pane updates: each browser gets every entry once -----------------------------------------

@pytest.fixture(scope="module")
def demo_session(demo_lab):
    keyring = load_keyring(demo_lab.keyring)
    session = MonitorSession(PcapSource(str(demo_lab.capture), keyring=keyring), keyring=keyring)
    session.run()
    assert session.state == "done", session.error
    yield session
    session.close()


def test_a_browser_gets_each_entry_once_and_the_attacker_when_it_changes(demo_session, demo_lab):
    truth = demo_lab.truth
    cursor = PaneCursor()
    first = demo_session.pane_update(cursor, "all")
    assert first["names"]["2001:db8:1::100"] == "mn1" and first["packet_classes"]["home"]
    keyed = first["keyed"]
    assert len(keyed["home_bindings"]) == keyed["home_total"] == len(truth["home_bindings"])
    assert len(keyed["correspondent_bindings"]) == len(truth["correspondent_bindings"])
    assert set(first["trails"]) == {n["home_address"] for n in truth["nodes"].values()}
    assert first["attacker"]["profiles_total"] >= 1 and "link_precision" in first["privacy"]

    again = demo_session.pane_update(cursor, "all")
    assert "names" not in again and "attacker" not in again and "privacy" not in again
    assert "panes" not in again and "packet_classes" not in again
    assert again["keyed"]["home_bindings"] == again["keyed"]["findings"] == []
    assert again["keyed"]["home_total"] == keyed["home_total"]     # the totals always come
    assert again["trails"] == {} and again["late_nodes"] == []
    assert again["status"]["state"] == "done"

    demo_session.refresh_attacker("mn-ha")              # the dashboard's attacker thread
    other = demo_session.pane_update(cursor, "mn-ha")
    assert other["attacker"]["vantage"] == "mn-ha"
    assert "attacker" not in demo_session.pane_update(cursor, "mn-ha")


@pytest.mark.parametrize("vantage", ["all", "mn-ha"])
def test_a_replays_attacker_pane_equals_report(demo_session, demo_lab, vantage):
    """The worker takes each event once and is told when the capture ends: the decisions
    still waiting for competitors are made, as `mip6mon report` makes them (issue 9)."""
    analysis = analyse(str(demo_lab.capture), load_keyring(demo_lab.keyring), vantage)
    assert demo_session.attacker_report(vantage) == analysis.attacker.report()


def test_rows_carry_the_node_the_keys_tie_them_to(demo_session):
    demo_session.resolve_late()
    labelled = {row["n"]: row["node"] for row in demo_session.view.backlog() if "node" in row}
    late = dict(demo_session.pane_update(PaneCursor(), "all")["late_nodes"])
    assert labelled and not set(labelled) & set(late)   # a frame is labelled once
    assert labelled | late == demo_session.frame_nodes()


def test_a_starved_live_attacker_worker_sheds_what_would_leave_its_window(demo_lab):
    """The attacker worker runs on idle CPU only; in live mode (a window) the events it has not
    taken yet are bounded and the shed ones are counted in the pane's "forgotten"."""
    from web.attacker_worker import AttackerWorker
    events = list(PcapSource(str(demo_lab.capture)).events())
    worker = AttackerWorker(window=20)
    try:
        with worker._pipe_lock:                  # hold the feeder back: nothing reaches it
            for event in events:
                worker.packet(event)
            assert len(worker._pending) <= 40 and worker.shed == len(events) - len(worker._pending)
        report, _privacy = worker.report("all", {}, {})
        assert report["window"] == 20
        assert report["forgotten"] >= worker.shed > 0
        assert report["packets_seen"] <= 22
    finally:
        worker.close()
