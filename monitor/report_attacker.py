"""The attacker's half of `mip6mon report` in a process of its own (issue 10).

At 100 % mobility one core cannot keep up with tshark: `monitor.report` dissects, decrypts and
runs the keyed view, and forwards every event (pickled, FORWARD_BATCH a message) to a second
process that runs the attacker (`python -m monitor.report_attacker`, started by
`monitor.report.report_in_two_processes` through the supervisor). When the capture ends the
parent sends the keyed truth the privacy score needs (`KeyedTruth`: frame attribution and
care-of trails, never key material), and this process answers with the report's `attacker`
section (scaled here unless the whole report is asked for) and its `privacy` section.

This module imports only what the attacker needs, so the second process stays small (the
issue counts the summed memory of every process). The scaled form of an attacker section
(`scaled_attacker`) lives here for the same reason; `monitor.report.scaled` uses it.
"""
from __future__ import annotations

import contextlib
import copyreg
import gc
import io
import os
import pickle
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import partial
from itertools import groupby
from multiprocessing.connection import Connection
from operator import attrgetter, itemgetter
from typing import Any, TypeVar

from dissectors.events import IPv6Layer, MobilePrefix, PacketEvent
from monitor.attacker import AttackerAnalyzer, Profile
from monitor.linking import Evidence
from monitor.placement import eavesdropped
from monitor.privacy import privacy_score
from monitor.stream import READ_AHEAD

# events per message to the attacker's process (pickled together): a batch of the stream's
# (Forward reads a message's events when it sends it, as the stream lets them go)
FORWARD_BATCH = READ_AHEAD
EXAMPLES = 3               # scaled: evidence details listed per rule of a profile
T = TypeVar("T")


@dataclass
class KeyedTruth:
    """What `privacy_score` reads of the keyed analyzer (its frame attribution and care-of
    trails), as plain data that crosses to the attacker's process. `keyring` only says whether
    there were keys (None: no truth, as with the analyzer itself)."""
    keyring: bool | None
    nodes: dict[int, str]
    trails: dict[str, list[tuple[float, str, int]]]

    @classmethod
    def of(cls, keyed: Any) -> KeyedTruth:
        if keyed.keyring is None:
            return cls(None, {}, {})
        return cls(True, keyed.frame_nodes(), keyed.care_of_trails())

    def frame_nodes(self) -> dict[int, str]:
        return self.nodes

    def care_of_trails(self) -> dict[str, list[tuple[float, str, int]]]:
        return self.trails


# The wire: per event, the fields of the attacker's `monitor.placement.View` of it as a plain
# tuple (monitor.placement.eavesdropped), UNREADABLE for one it cannot read (malformed, no IPv6
# layer), None at the end of the capture. Plain values only, but for a visible tunnel's IPv6
# layers and an ICMPv6 Mobile Prefix message (rare), pickled by position: the pickler runs no
# Python per event, and the attacker's process rebuilds no event, layer or message (issue
# 10). Nothing after the first ESP header, nothing the keyed stage decrypted, no tshark text:
# what an eavesdropper reads.
_WIRE = copyreg.dispatch_table | {cls: cls.__reduce__ for cls in (IPv6Layer, MobilePrefix)}


class Forward:
    """Addon (parent side): every event, in batches, to the attacker's process, as an
    eavesdropper reads it (monitor.placement.eavesdropped: its View's fields): what its
    AttackerAnalyzer would have read in one process, dissected and decrypted once
    (tests/monitor/test_report_parallel.py: the same report in one process and in two).
    A batch's events are read when it is sent, in one call (FORWARD_BATCH)."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.events: list[PacketEvent] = []

    def packet(self, event: PacketEvent) -> None:
        events = self.events
        events.append(event)
        if len(events) >= FORWARD_BATCH:
            self._send()

    def done(self) -> None:
        self._send(end=True)

    def _send(self, end: bool = False) -> None:
        batch: list[tuple | None] = eavesdropped(self.events)
        if end:
            batch.append(None)             # the end of the capture
        out = io.BytesIO()
        pickler = pickle.Pickler(out, pickle.HIGHEST_PROTOCOL)
        pickler.dispatch_table = _WIRE
        pickler.dump(batch)
        self.conn.send_bytes(out.getbuffer())
        self.events.clear()


def serve(vantage: str, detail: bool, events: Connection, answers: Connection,
          exit_when_answered: bool = False) -> None:
    """Child side: the forwarded events into an AttackerAnalyzer; then, given the keyed truth,
    ("ok", attacker section, privacy section), or ("error", one line, traceback).
    `exit_when_answered` (the process of `main`): it ends once the answer is sent, without
    freeing what it built one object at a time (the keyed process reaps it before it exits:
    ~0.2 s at 200,000 packets, 100 % mobility, spent on nothing)."""
    try:
        attacker = AttackerAnalyzer(vantage)
        ended = False
        while not ended:
            batch = pickle.loads(events.recv_bytes())
            ended = bool(batch) and batch[-1] is None       # the end of the capture
            attacker.packet_views(batch[:-1] if ended else batch)
        attacker.done()
        truth = events.recv()
        section = attacker.report() if detail else scaled_attacker_of(attacker)
        answers.send(("ok", section, privacy_score(attacker, truth)))
        if exit_when_answered:
            sys.stderr.flush()
            os._exit(0)
    except BaseException as e:   # noqa: B036 -- the parent must hear of any end
        with contextlib.suppress(OSError):      # unless it has gone (it failed first)
            answers.send(("error", f"{type(e).__name__}: {e}", traceback.format_exc()))
    finally:
        events.close()
        answers.close()


# --- the scaled attacker section (monitor.report.scaled) ---------------------------------------

def _frame_index(frames: list[int]) -> dict[str, Any]:
    """A per-frame list as a count plus where to start looking."""
    return {"frame_count": len(frames), "first_frame": min(frames) if frames else None,
            "last_frame": max(frames) if frames else None}


def summary_of(items: list[dict]) -> tuple:
    """Evidence.summary's sums of one rule's evidence items, from their dicts
    (Evidence.as_dict: a detailed section's, monitor.report.scaled)."""
    return (max(e["confidence"] for e in items), any(e["links"] for e in items),
            sum(1 for e in items if e["ambiguous"]), sum(e["frame_count"] for e in items),
            min((f for e in items for f in e["frames"]), default=None))


def _by_rule(evidence: list[T], rule: Callable[[T], str]) -> dict[str, list[T]]:
    """Evidence items by rule, rules in the order first met, items in theirs (a stable sort
    and a cut at each new rule, in C: a crowd's profile holds tens of thousands)."""
    groups = {r: list(group) for r, group in groupby(sorted(evidence, key=rule), key=rule)}
    return {r: groups[r] for r in dict.fromkeys(map(rule, evidence))}


def _evidence_by_rule(groups: dict[str, list[T]], summary: Callable[[list[T]], tuple],
                      detail: Callable[[T], str]) -> list[dict]:
    """A profile's evidence, one row per rule (`_by_rule`'s groups): how many items, how many
    frames they cite, the first frame, whether any links (`summary`: Evidence.summary, or
    summary_of), and the details of the first EXAMPLES (written for those only)."""
    rows = []
    for rule, items in groups.items():
        confidence, links, ambiguous, frame_count, first = summary(items)
        rows.append({"rule": rule, "confidence": confidence, "links": links,
                     "items": len(items), "ambiguous": ambiguous, "frame_count": frame_count,
                     "first_frame": first, "details": list(map(detail, items[:EXAMPLES]))})
    return rows


def _scaled_profile_dict(whole: dict, frames: list[int], evidence: list[dict]) -> dict:
    """A profile's dict (its `frames` and `evidence` left out) with its frames as a count and
    frame index and its evidence (`_evidence_by_rule`'s rows)."""
    return {**{k: v for k, v in whole.items() if k not in ("frames", "evidence")},
            **_frame_index(frames), "evidence": evidence}


def scaled_attacker(section: dict) -> dict:
    """The report's `attacker` section without its per-frame lists: each profile's frames as a
    count and frame index, its evidence summed per rule."""
    attacker = dict(section)
    attacker["profiles"] = [
        _scaled_profile_dict(p, p["frames"], _evidence_by_rule(
            _by_rule(p["evidence"], itemgetter("rule")), summary_of, itemgetter("detail")))
        for p in section["profiles"]]
    return attacker


def scaled_profile(profile: Profile, threshold: float) -> dict:
    """`scaled_attacker`'s form of one profile, from the Profile itself: its evidence summed
    per rule from the objects, no dict made per item (2,000,000 packets at 10 %: 70,000 items,
    ~120 MB as the whole section's dicts held at once; a dict each, with its candidates', cost
    ~0.25 s of the attacker's process at 200,000 packets, 100 %)."""
    whole = replace(profile, frames=[], evidence=[]).as_dict(threshold)
    return _scaled_profile_dict(whole, profile.frames, _evidence_by_rule(
        _by_rule(profile.evidence, attrgetter("rule")),
        partial(Evidence.summary, threshold=threshold), attrgetter("detail")))


def scaled_attacker_of(attacker: AttackerAnalyzer) -> dict:
    """`scaled_attacker(attacker.report())`, without the whole section built first."""
    return attacker.report(scaled_profile)


def main(argv: list[str]) -> None:
    """`python -m monitor.report_attacker EVENTS_FD ANSWERS_FD VANTAGE DETAIL(0/1)`."""
    events_fd, answers_fd, vantage, detail = argv
    # No cyclic collection in this process. The attacker's analysis keeps what it builds to the
    # end and leaves no reference cycle behind (tests/monitor/test_report_parallel.py
    # test_the_attackers_process_makes_no_cyclic_garbage), and the process ends with os._exit;
    # yet each young collection scanned the containers it had just kept: 29 collections, 0.23
    # of the pass's 2.8 CPU s at 200,000 packets, 100 % mobility, for nothing found.
    gc.disable()
    serve(vantage, detail == "1", Connection(int(events_fd), writable=False),
          Connection(int(answers_fd), readable=False), exit_when_answered=True)


if __name__ == "__main__":
    main(sys.argv[1:])
