"""The linker's engine: when decisions are made (queues per finder, in due order across them) and
what a decision keeps (its words written when read, from values, never an Observation)."""
from __future__ import annotations

import pickle

from hypothesis import given, settings
from hypothesis import strategies as st

from dissectors.protocol import MHType
from monitor.linking import (
    RULES,
    Candidate,
    Evidence,
    Finder,
    Linker,
    Rule,
    Words,
    link_all,
)
from monitor.observe import Observation

HA, CN = "2001:db8:1::1", "2001:db8:3::5"
HOA, COA, COB = "2001:db8:1::100", "2001:db8:2::a1", "2001:db8:2::b1"


# ---- when decisions are made -------------------------------------------------------------------

class _Waits(Finder):
    """Asks for a decision on every observation, `wait` seconds after it; logs each decided."""

    def __init__(self, rule, linker, wait, log):
        super().__init__(rule, linker)
        self.wait, self.log = wait, log

    def add(self, obs):
        self.linker.later(self, obs.time + self.wait, (self.rule.name, obs.frame))

    def decide(self, claim):
        self.log.append(claim)
        return None


def _waiting_rules(waits, log):
    return tuple(Rule(f"r{i}", "", "", "", lambda rule, linker, w=w: _Waits(rule, linker, w, log))
                 for i, w in enumerate(waits))


@settings(max_examples=150, deadline=None)
@given(st.lists(st.floats(0.0, 5.0), min_size=1, max_size=4),
       st.lists(st.floats(-2.0, 3.0), min_size=1, max_size=40), st.data())
def test_decisions_are_made_in_due_order_across_finders(waits, steps, data):
    """Each finder's claims wait in a queue of their own; decisions come in (due, order made)
    order across them, as from one heap of every claim, also when the capture goes back in
    time (a claim due before its queue's last), and each once the capture has passed it."""
    log: list = []
    linker = Linker(_waiting_rules(waits, log))
    made: list[tuple[float, int, tuple]] = []      # (due, order, claim), as a heap would order
    time, order = 100.0, 0
    for frame, step in enumerate(steps, 1):
        time += step
        before = len(log)
        linker.add(Observation(frame, time, "mn-cn", COA, CN))
        decided = log[before:]
        # what fell due before this observation, decided before its own claims were made
        due = sorted(m for m in made if m[0] < time)
        assert decided == [m[2] for m in due]
        made = [m for m in made if m[0] >= time]
        for i, w in enumerate(waits):
            order += 1
            made.append((time + w, order, (f"r{i}", frame)))
        assert linker.pending == len(made)
        if data.draw(st.booleans()):
            until = time + data.draw(st.floats(0.0, 4.0))
            before = len(log)
            linker.decide_until(until)
            assert log[before:] == [m[2] for m in sorted(m for m in made if m[0] < until)]
            made = [m for m in made if m[0] >= until]
    before = len(log)
    linker.flush()
    assert log[before:] == [m[2] for m in sorted(made)] and linker.pending == 0


# ---- what a decision keeps ---------------------------------------------------------------------

class _Counted(Words):
    __slots__ = ("calls",)

    def __init__(self):
        self.calls: list[str] = []

    def detail(self):
        self.calls.append("detail")
        return "a detail"

    def candidates(self):
        self.calls.append("candidates")
        return (Candidate((1,), 0.5, "one", True),)

    def computation(self):
        self.calls.append("computation")
        return "1 + 1"


def test_deferred_words_are_written_once_when_read():
    words = _Counted()
    e = Evidence.deferred("hoti-timing", 0.5, (1, 2), words, ambiguous=True, subject=(2,))
    assert words.calls == []
    # the scaled report's sums write no words (it reads the detail of a few items only)
    assert Evidence.summary([e]) == (0.5, False, 1, 2, 1) and words.calls == []
    assert e.detail == "a detail" and words.calls == ["detail"]
    eager = Evidence("hoti-timing", 0.5, "a detail", (1, 2), True, (2,),
                     (Candidate((1,), 0.5, "one", True),), (), "1 + 1")
    assert e.as_dict() == eager.as_dict() and e == eager and eager == e
    assert e.as_dict() == e.as_dict() and sorted(words.calls) == [
        "candidates", "computation", "detail"]
    # a detailed report holds the texts, not the words besides
    assert not any(isinstance(v, Words) for v in _contents(e))
    assert repr(e) == repr(eager) and "computation='1 + 1'" in repr(e)
    assert e != Evidence("hoti-timing", 0.5, "another", (1, 2), True, (2,),
                         eager.candidates, (), "1 + 1")


def _hoti_after_tunnel(gap: float, hoti_frame: int = 2) -> list[Observation]:
    """A MN-HA tunnel packet of COA toward the home agent, then, `gap` s later, a HoTI in clear
    on HA-CN (RFC 3776 4.3: the home agent forwards what the tunnel carried)."""
    return [Observation(1, 10.0, "mn-ha", COA, HA, 140, care_of=COA, home_agent=HA,
                        towards_ha=True, tunnelled=True),
            Observation(hoti_frame, 10.0 + gap, "ha-cn", HOA, CN, 80, homes=(HOA,),
                        correspondent=CN, mh_type=MHType.HOTI, mh_name="HoTI",
                        cookie="01" * 8)]


def _contents(value, seen=None):
    """Every object reachable through slots, tuples and lists from value."""
    seen = set() if seen is None else seen
    if id(value) in seen:
        return
    seen.add(id(value))
    yield value
    if isinstance(value, (tuple, list)):
        for v in value:
            yield from _contents(v, seen)
    for cls in type(value).__mro__:
        for name in getattr(cls, "__slots__", ()):
            if hasattr(value, name):
                yield from _contents(getattr(value, name), seen)


def test_a_timing_decision_keeps_values_and_writes_its_words_when_read():
    linker = link_all(_hoti_after_tunnel(0.02), [r for r in RULES if r.name == "hoti-timing"])
    [e] = linker.decided
    # a live window keeps its evidence for hours: values, not the observations (issue 12)
    assert not any(isinstance(v, Observation) for v in _contents(e))
    assert e.frames == (1, 2) and e.subject == (2,)
    assert e.detail == (f"HoTI to {CN} at 10.020 s with the MN-HA tunnel packet of {COA} at "
                        "10.000 s")
    assert [c.as_dict() for c in e.candidates] == [
        {"frames": [1], "probability": round(e.confidence, 6), "what": f"{COA} at 10.000 s",
         "chosen": True}]
    assert e.computation.startswith("1 candidate place(s) in the 0.050 s window, 0 other "
                                    "HoTI(s) could claim the best; 0 such packets within 10 s")
    # the live dashboard's process and the report's take evidence across a pipe
    assert pickle.loads(pickle.dumps(e)) == e


def test_a_timing_decision_lists_two_places_as_likely_the_first_seen_chosen():
    obs = _hoti_after_tunnel(0.03, hoti_frame=4)
    obs.insert(1, Observation(3, 10.025, "mn-ha", COB, HA, 140, care_of=COB, home_agent=HA,
                              towards_ha=True, tunnelled=True))
    linker = link_all(obs, [r for r in RULES if r.name == "hoti-timing"])
    [e] = linker.decided
    assert e.ambiguous and e.frames == (1, 4) and e.confidence < 0.5
    assert [(c.frames, c.chosen) for c in e.candidates] == [((1,), True), ((3,), False)]
    assert e.candidates[1].what == f"{COB} at 10.025 s"
    assert COA in e.detail and e.computation.startswith("2 candidate place(s)")


# ---- profiles ----------------------------------------------------------------------------------

@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 40), st.integers(0, 40)), max_size=80))
def test_a_union_says_whether_it_merged_two_profiles(pairs):
    """union() is False exactly when the two frames were one profile already (one parent
    first, then their roots), and the smallest frame is each group's root."""
    from monitor.linking import UnionFind
    uf, groups = UnionFind(), {}
    for a, b in pairs:
        ga, gb = groups.get(a, {a}), groups.get(b, {b})
        assert uf.union(a, b) == (ga is not gb and a != b)
        merged = ga | gb
        for f in merged:
            groups[f] = merged
        assert uf.find(a) == uf.find(b) == min(merged)
    assert all(uf.find(f) == min(g) for f, g in groups.items())


# ---- identities ------------------------------------------------------------------------------

IID = "1234:5678:9abc:def0"
C1, C2 = f"2001:db8:2::{IID}", f"2001:db8:4::{IID}"


def _iid_rule():
    return [r for r in RULES if r.name == "same-interface-id"]


def _at(frame, time, care_of=None, homes=()):
    return Observation(frame, time, "mn-cn", care_of or homes[0], CN, 100, care_of=care_of,
                       homes=homes, correspondent=CN)


def test_two_care_of_addresses_with_one_iid_in_use_together_are_two_nodes():
    obs = [_at(f, 10.0 + f, care_of=C1 if f % 2 else C2) for f in range(1, 20)]
    [e] = link_all(obs, _iid_rule()).decided
    assert e.confidence == 0.5 and e.ambiguous


def test_a_care_of_address_seen_as_a_home_address_is_not_counted_among_them():
    """An address seen as a care-of address and then as a home address (a tunnel's inner
    source) is in both roles, and not counted among the care-of addresses in use: each role
    is remembered per address, also once the address's run is known."""
    obs = [_at(f, 10.0 + f, care_of=C1 if f % 2 else C2) for f in range(1, 20)]
    obs.append(_at(20, 30.0, homes=(C2,)))
    [e] = link_all(obs, _iid_rule()).decided
    assert e.confidence == 1.0 and not e.ambiguous



# ---- a place that comes back -------------------------------------------------------------------

def _bu(frame, time, care_of, sequence):
    return Observation(frame, time, "mn-cn", care_of, CN, 80, care_of=care_of, homes=(HOA,),
                       correspondent=CN, mh_type=MHType.BU, mh_name="BU", mh_sequence=sequence)


def _bu_rule():
    return [r for r in RULES if r.name == "bu-sequence-continues"]


def test_a_place_whose_number_another_place_stepped_through_came_back():
    """A's BU number steps past what B's run began at since A was last seen: A went away and
    came back, a new stay to be explained (it continues B's), not A's own step."""
    obs = [_bu(1, 1.0, COA, 10), _bu(2, 2.0, COB, 12), _bu(3, 3.0, COA, 14)]
    decided = link_all(obs, _bu_rule()).decided
    assert [e.subject for e in decided] == [(2,), (3,)]


def test_a_place_stepping_on_its_own_did_not_come_back():
    """The same steps with no other place's run begun in between (B's began before A was last
    seen, or there is none) are A's own: no new stay, nothing to decide for A."""
    alone = [_bu(1, 1.0, COA, 10), _bu(3, 3.0, COA, 14)]
    assert link_all(alone, _bu_rule()).decided == []
    before = [_bu(1, 1.0, COB, 12), _bu(2, 2.0, COA, 10), _bu(3, 3.0, COA, 14)]
    assert [e.subject for e in link_all(before, _bu_rule()).decided] == []


# ---- timing windows ----------------------------------------------------------------------------

@settings(max_examples=100, deadline=None)
@given(st.floats(0.0, 4e9), st.booleans(), st.booleans())
def test_a_timing_window_ends_exactly_where_the_subjects_time_puts_it(t, out, inside):
    """A subject's windows are offsets from its time, read once per subject key
    (Timing.windows): a tunnel packet FORWARD_WINDOW before a HoTI (after a HoT), computed from
    the subject's time, is in its window; the next float beyond is not."""
    import math

    from monitor.linking import FORWARD_WINDOW
    edge = t - FORWARD_WINDOW if out else t + FORWARD_WINDOW
    if not inside:
        edge = math.nextafter(edge, -math.inf if out else math.inf)
    tunnel = Observation(1 if out else 2, edge, "mn-ha", COA, HA, 140, care_of=COA,
                         home_agent=HA, towards_ha=out, tunnelled=True)
    test = Observation(2 if out else 1, t, "ha-cn", HOA if out else CN, CN if out else HOA, 80,
                       homes=(HOA,), correspondent=CN,
                       mh_type=MHType.HOTI if out else MHType.HOT,
                       mh_name="HoTI" if out else "HoT", cookie="01" * 8)
    decided = link_all([tunnel, test], [r for r in RULES if r.name == "hoti-timing"]).decided
    if inside:
        [e] = decided
        assert e.subject == (test.frame,) and e.candidates[0].frames == (tunnel.frame,)
    else:
        assert decided == []
