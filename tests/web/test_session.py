"""What the attacker pane receives: profiles made small enough to parse every second."""
import json

from keys.keyring import load_keyring
from monitor.report import analyse
from web.session import profile_for_pane


def test_pane_profiles_keep_counts_and_rules_but_not_every_frame(demo_lab):
    analysis = analyse(str(demo_lab.capture), load_keyring(demo_lab.keyring))
    profiles = analysis.attacker.report()["profiles"]
    assert profiles
    for full in profiles:
        pane = profile_for_pane(full)
        assert pane["frames"] == len(full["frames"])
        assert pane["care_of_addresses"] == full["care_of_addresses"]
        assert pane["addresses"] == full["addresses"]
        rules = {(e["rule"], e["confidence"]) for e in full["evidence"]}
        assert {(e["rule"], e["confidence"]) for e in pane["evidence"]} == rules
        assert sum(e["pieces"] for e in pane["evidence"]) == len(full["evidence"])
        assert sum(e["frame_count"] for e in pane["evidence"]) == \
            sum(e["frame_count"] for e in full["evidence"])
        assert len(json.dumps(pane)) < len(json.dumps(full))
