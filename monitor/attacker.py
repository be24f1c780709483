"""The attacker view (draft section 6): what a keyless eavesdropper at one place learns.

`AttackerAnalyzer(vantage)` is an EventStream addon. It never sees a key and never reads
`PacketEvent.path` (the lab's ground truth). Each packet is taken in once, in capture order:
the roles (home agents, home prefixes, care-of addresses) learn from it at once; it is placed on
a path (monitor.placement) when the roles have had `PLACE_WAIT` seconds of capture to learn
from what follows; at its vantage point it becomes one observation (monitor.observe), which the
linker (monitor.linking) indexes and links, deciding each successor relation once its own wait
for competing candidates is over. A report is the state so far: profiles (what the attacker
believes is one node, with its trail of care-of addresses, the addresses it used, its
correspondents, the evidence that holds it together with each link's confidence and the
candidates it ruled out) and, for each profile, the anonymity set of the profiles it could not
tell it apart from. The state is bounded: indexes forget what is older than the linker's
horizon, and a live analyzer (`max_packets`) keeps only what it observed of the newest packets
it was fed in its profiles.
"""
from __future__ import annotations

import bisect
import operator
from array import array
from collections import Counter, defaultdict, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from itertools import compress, groupby, islice, repeat
from operator import attrgetter
from typing import NamedTuple

from dissectors.events import PacketEvent
from dissectors.protocol import OTHER_PATH, PATHS
from monitor.linking import (
    ANONYMITY_MIN,
    IID_OVERLAP,
    LISTED,
    PLACE_WAIT,
    RULES,
    THRESHOLD,
    WAIT,
    Evidence,
    Linker,
    Rule,
    UnionFind,
    entropy_bits,
)
from monitor.observe import Stem, observation, stem
from monitor.placement import HEAD, VANTAGE_PATHS, Roles, View, eavesdropped, place


class Seen(NamedTuple):
    """What a profile keeps of one observed packet: when, and its place (the addresses it
    showed and its path). Places repeat (one node's care-of address seen 100,000 times), so
    each distinct one is stored once and a packet costs a frame, a time and a place index."""
    frame: int
    time: float
    path: str
    care_of: str | None
    homes: tuple[str, ...]
    correspondent: str | None


_Place = tuple[str, "str | None", "tuple[str, ...]", "str | None"]
HEADS = 1 << 14            # heads remembered at most (a live capture meets new ones for days)
DENSE = 2                  # union-find slots per frame observed, at most, to read it at once
_view = tuple.__new__      # View(...) without its Python-level __new__: one a packet


class _Head:
    """What the analyzer knows of the packets of one head (monitor.placement.HEAD), shared by
    them: they teach the roles what the first taught (Roles.learn and learn_sides only add to
    sets) until a new home agent changes what learn_sides reads, and are placed alike while
    the roles stay as they are (place and observe.stem read the head and the roles)."""

    # class defaults, no __init__ and no slots: a new head costs a bare object (in a crowd most
    # heads are new: each binding brings its own pseudo home address)
    taught = -1                         # the home agents' generation it taught the roles in
    placed = -1                         # the roles' generation `path`.. were found in
    path = ""
    stem: Stem | None = None            # at this vantage point (None: not seen here)
    place_id = -1


@dataclass(frozen=True, slots=True)
class CareOfStop:
    """One step of a profile's trail: a care-of address and when the attacker saw it."""
    care_of_address: str
    first_time: float
    last_time: float
    first_frame: int
    frames: int


@dataclass
class Profile:
    id: str
    frames: list[int]
    trail: list[CareOfStop]
    addresses: list[str]               # home or pseudo home addresses (the attacker can't tell)
    correspondents: list[str]
    evidence: list[Evidence]
    paths: dict[str, int] = field(default_factory=dict)
    # the profiles the attacker could not tell this one apart from: {profile id: probability}
    could_be: dict[str, float] = field(default_factory=dict)

    @property
    def care_of_addresses(self) -> list[str]:
        return [stop.care_of_address for stop in self.trail]

    @property
    def anonymity_set(self) -> dict:
        """k profiles it could be (itself included) and the entropy of the attacker's belief:
        weights {itself: 1 - sum of the others, each other: its probability}."""
        others = sorted(self.could_be.items(), key=lambda kv: (-kv[1], kv[0]))
        mine = max(0.0, 1.0 - sum(p for _, p in others))
        return {"size": 1 + len(others),
                "entropy_bits": round(entropy_bits([mine, *(p for _, p in others)]), 4),
                "could_be": [{"profile": pid, "probability": round(p, 4)}
                             for pid, p in others[:LISTED]]}

    def as_dict(self, threshold: float = THRESHOLD, names: dict[int, str] | None = None) -> dict:
        evidence = []
        for e in self.evidence:
            d = e.as_dict(threshold)
            if names is not None:
                for c in d.get("candidates", ()):
                    c["profile"] = names.get(c["frames"][0]) if c["frames"] else None
            evidence.append(d)
        return {"id": self.id, "care_of_addresses": self.care_of_addresses,
                "trail": [{"care_of_address": s.care_of_address,
                           "first_time": s.first_time, "last_time": s.last_time,
                           "first_frame": s.first_frame, "frames": s.frames}
                          for s in self.trail],
                "addresses": self.addresses, "correspondents": self.correspondents,
                "paths": self.paths, "frames": self.frames, "evidence": evidence,
                "anonymity_set": self.anonymity_set}


class AttackerAnalyzer:
    """Addon: the eavesdropper at `vantage` ("mn-ha", "ha-cn", "mn-cn" or "all")."""

    def __init__(self, vantage: str = "all", rules: tuple[Rule, ...] = RULES,
                 threshold: float = THRESHOLD, max_packets: int | None = None,
                 wait: float = WAIT):
        """`max_packets`: profiles hold only what was observed of the newest `max_packets`
        packets fed (a live capture that runs for days: what the attacker learnt from older
        ones stays linked, their frames are forgotten); None keeps everything (a capture file,
        whose report must be whole). Packets fed, not observed: the dashboard feeds the four
        vantage points the same packets, and one that observes a sixth of them (HA-CN in a
        crowd) held a window six times as long, still filling after the others (issue 12).
        `wait`: seconds of capture a decision waits for competing candidates."""
        if vantage not in VANTAGE_PATHS:
            raise ValueError(f"unknown vantage point {vantage!r}")
        self.vantage = vantage
        self.rules = rules
        self.threshold = threshold
        self.max_packets = max_packets
        self.wait = wait
        self.forgotten = 0                 # packets dropped from the front of the window
        self._fed = 0                      # packets fed so far (the window counts these)
        self._placed = 0                   # position fed of the newest packet placed
        self._roles = Roles()
        self._seen = VANTAGE_PATHS[vantage]
        self._linker = Linker(rules, threshold, wait)
        # to be placed: (view, position fed, its head's _Head)
        self._waiting: deque[tuple[View, int, _Head]] = deque()
        self._heads: dict[tuple, _Head] = {}
        # generations: of the home agents (one more at each new one), of the roles (one more at
        # each change of Roles.state, which is `_state`)
        self._agents = 0
        self._generation = 0
        self._state = self._roles.state
        self._now = float("-inf")
        self._placement: Counter = Counter()
        # the packets seen, in the order observed (frame order): three columns, and each
        # distinct place once (Seen)
        self._frames = array("q")
        self._times = array("d")
        self._place_of = array("l")
        self._fed_at = array("q")       # each one's position in what was fed (increasing)
        self._places: list[_Place] = []
        self._place_ids: dict[_Place, int] = {}
        self._profiles: list[Profile] | None = None

    # -- addon hooks ---------------------------------------------------------------------------
    def packet(self, event: PacketEvent) -> None:
        self.packet_views(eavesdropped((event,)))

    def packet_view(self, view: View | None) -> None:
        """A packet as the eavesdropper reads it (monitor.placement.visible); None: one it cannot
        read (malformed, or no IPv6 layer), which counts in the live window all the same."""
        self.packet_views((view,))

    def packet_views(self, views: Iterable[tuple | None]) -> None:
        """Packets in capture order, each as the fields of the eavesdropper's View of it (a View,
        or the plain tuple that monitor.placement.eavesdropped makes and the report's keyed
        process sends, monitor.report_attacker); None or UNREADABLE for one it cannot read.

        A packet is placed once PLACE_WAIT s of capture came after it, with the roles as they
        are then; the roles change only when a packet teaches them (`_learn`), so what fell
        due is placed before a packet teaches them, and otherwise once the batch is in: the
        same places, observations and linker's order as packet after packet, a batch's in one
        pass of `_place`. A live window (`max_packets`) trims as it places, packet after
        packet."""
        window, heads, waiting = self.max_packets, self._heads, self._waiting
        fed, now = self._fed, self._now
        due = False                     # packets waiting that fell due (placed at `now`)
        for fields in views:
            fed += 1
            if not fields:
                continue
            view = _view(View, fields)
            key = view[HEAD]
            head = heads.get(key)
            if head is None or head.taught != self._agents:
                if due:
                    self._place(now - PLACE_WAIT)
                    due = False
                head = self._learn(view, key, head)
            waiting.append((view, fed, head))
            time = view.time
            if time > now:
                now = time
            if waiting[0][0].time < now - PLACE_WAIT:
                if window is None:
                    due = True
                else:
                    self._fed, self._now = fed, now
                    self._place(now - PLACE_WAIT)
                    self._trim()
        self._fed, self._now = fed, now
        if due:
            self._place(now - PLACE_WAIT)
        self._profiles = None

    def _learn(self, view: View, key: tuple, head: _Head | None) -> _Head:
        """What a packet teaches the roles, when its head (`key`) has not taught them since the
        last new home agent; its head's _Head."""
        roles = self._roles
        if roles.learn(view):
            # a home agent just recognised: what the waiting packets say about care-of
            # addresses and home prefixes changes with it
            for waiting_view, _, _ in self._waiting:
                roles.learn_sides(waiting_view)
            self._agents += 1
        roles.learn_sides(view)
        state = roles.state
        if state != self._state:
            # every head is placed again: those waiting by their records' generation, and the
            # heads not seen since are forgotten (in a crowd most never come back)
            self._state = state
            self._generation += 1
            self._heads.clear()
            head = None
        if head is None:
            if len(self._heads) >= HEADS:
                self._heads.clear()
            head = self._heads[key] = _Head()
        head.taught = self._agents
        return head

    def advance(self, now: float) -> None:
        """Capture time has reached `now` with no packet since (a live source: its capture
        times are the wall clock, which goes on when the traffic pauses). What has waited
        `PLACE_WAIT` is placed and the decisions due are made, as a packet at `now` would."""
        if now <= self._now:
            return
        self._now = now
        self._place(now - PLACE_WAIT)
        self._linker.decide_until(now)
        self._trim()
        self._profiles = None

    def done(self) -> None:
        self._place(float("inf"))
        self._linker.flush()
        self._trim()
        self._profiles = None

    def _place(self, before: float) -> None:
        """Place and observe the packets that have waited long enough (the roles do not change
        meanwhile)."""
        waiting, placement, generation = self._waiting, self._placement, self._generation
        link = self._linker.add
        frames, times, place_of = self._frames, self._times, self._place_of
        fed_at = self._fed_at if self.max_packets is not None else None
        fed = self._placed
        while waiting and waiting[0][0].time < before:
            view, fed, head = waiting.popleft()
            if head.placed != generation:
                self._place_head(view, head)
                head.placed = generation
            path = head.path
            placement[path] += 1
            at = head.stem
            if at is not None:
                obs = observation(view, at)
                # kept in three columns (and, for a live window, a fourth: when it was fed)
                frames.append(obs.frame)
                times.append(obs.time)
                place_of.append(head.place_id)
                if fed_at is not None:
                    fed_at.append(fed)
                link(obs)
        self._placed = fed

    def _place_head(self, view: View, head: _Head) -> None:
        """Where the packets of a head are (monitor.placement.place) and, if this vantage point
        sees that path, their stem there (monitor.observe.Stem) and their place's index."""
        head.path = path = place(view, self._roles)
        if path not in self._seen:
            head.stem = None
            return
        head.stem = at = stem(view, path, self._roles)
        place_: _Place = (path, at.care_of, at.homes, at.correspondent)
        pid = self._place_ids.get(place_)
        if pid is None:
            pid = self._place_ids[place_] = len(self._places)
            self._places.append(place_)
        head.place_id = pid

    def _trim(self) -> None:
        """Forget what was observed of packets fed before the newest `max_packets` placed (those
        still waiting to be placed are not in the window yet), a tenth of the window at once
        (rebuilding the groups costs the window)."""
        window = self.max_packets
        if window is None or not self._frames:
            return
        slack = window // 10
        if self._fed_at[0] > self._placed - window - slack:
            return
        # positions fed increase along the columns (packets are placed in the order fed)
        drop = bisect.bisect_right(self._fed_at, self._placed - window)
        oldest = self._frames[drop] if drop < len(self._frames) else max(self._frames) + 1
        del self._frames[:drop], self._times[:drop], self._place_of[:drop], \
            self._fed_at[:drop]
        self.forgotten += drop
        self._linker.keep_frames(oldest)

    # -- results -------------------------------------------------------------------------------
    def _at(self, i: int) -> Seen:
        return Seen(self._frames[i], self._times[i], *self._places[self._place_of[i]])

    def seen(self) -> list[Seen]:
        """The packets observed (those a live window still holds), in frame order."""
        return [self._at(i) for i in range(len(self._frames))]

    def _order(self) -> tuple[bool, bool]:
        """Whether the frames observed increase (bisect finds one) and their times never go
        back (each profile's packets are then in its order as observed): read off the columns
        when the profiles are built, not checked packet by packet."""
        frames, times = self._frames, self._times
        return (all(map(operator.lt, frames, islice(frames, 1, None))),
                all(map(operator.le, times, islice(times, 1, None))))

    def _seen_at(self, frame: int, ordered: bool) -> int | None:
        """Where the packet of `frame` is in the columns (None: not observed, or forgotten);
        `ordered`: the frames observed increase (`_order`)."""
        frames = self._frames
        if ordered:
            i = bisect.bisect_left(frames, frame)
        else:
            i = frames.index(frame) if frame in frames else len(frames)
        return i if i < len(frames) and frames[i] == frame else None

    def _at_end(self, profile: Profile, frame: int, first: bool, ordered: bool) -> bool:
        """The packet of `frame` is at the first (last) care-of address of the profile's
        trail; one that shows no care-of address is at an end only of a profile with no trail
        (tied to no place yet)."""
        if not profile.trail:
            return True
        i = self._seen_at(frame, ordered)
        if i is None:
            return True
        care_of = self._places[self._place_of[i]][1]
        if not care_of:
            return False
        stop = profile.trail[0] if first else profile.trail[-1]
        return care_of == stop.care_of_address

    def evidence(self) -> list[Evidence]:
        return self._linker.evidence()

    def roles(self) -> Roles:
        return self._roles

    def profiles(self) -> list[Profile]:
        if self._profiles is None:
            self._profiles = self._build_profiles()
        return self._profiles

    def _build_profiles(self) -> list[Profile]:
        linker = self._linker
        frames_, times, place_of = self._frames, self._times, self._place_of
        # each packet's profile: the packets by their root (a stable sort, in C: the packets
        # of a profile stay in the order observed), each run of one root a profile
        by_frame = _roots_by_frame(linker.profiles, len(frames_))
        roots = list(map(linker.root if by_frame is None else by_frame.__getitem__, frames_))
        by_root = sorted(range(len(roots)), key=roots.__getitem__)
        groups = [list(ix) for _, ix in groupby(by_root, key=roots.__getitem__)]
        # each profile's packets by (time, frame), profiles by their first frame; observed in
        # that order already unless the capture's frames or times went back
        ordered, in_time = self._order()
        in_order = ordered and in_time
        if in_order:
            members = sorted(groups, key=lambda ix: frames_[ix[0]])
        else:
            members = sorted((sorted(ix, key=lambda i: (times[i], frames_[i])) for ix in groups),
                             key=lambda ix: min(map(frames_.__getitem__, ix)))
        index_of = {roots[ix[0]]: n for n, ix in enumerate(members)}
        if by_frame is not None:
            # frame -> profile index (as index_of[root]) of every frame held: all observed
            held = profile = list(map(index_of.get, by_frame)).__getitem__
            del by_frame
        else:
            held = dict(zip(frames_, map(index_of.__getitem__, roots), strict=True)).get

            def profile(frame: int) -> int | None:
                """The index of the profile holding `frame` (a frame a live window forgot: its
                root's, if that is held)."""
                p = held(frame)
                return p if p is not None else index_of.get(linker.root(frame))

        profiles = []
        spans: list[list[tuple[str, float, float]]] = []
        identities: list[set[str]] = []
        for n, ix in enumerate(members):
            frames = list(map(frames_.__getitem__, ix))
            if not in_order:
                frames.sort()
            # each place the profile's packets showed, in the order first shown, with its first
            # packet, last packet and packets (a place repeats: one node's care-of address
            # 100,000 times; counted in C, not packet by packet)
            shown = list(map(place_of.__getitem__, ix))
            first_at = dict(zip(reversed(shown), reversed(ix), strict=True))
            last_at = dict(zip(shown, ix, strict=True))
            counts = Counter(shown)
            stops: dict[str, list] = {}
            addresses: dict[str, None] = {}
            correspondents: dict[str, None] = {}
            seen_at: dict[str, set[str]] = defaultdict(set)
            paths: Counter = Counter()
            # which of two packets came later in the profile's order: their positions, in
            # the order observed when that is the profile's order
            later = None if in_order or len(counts) == 1 else {i: k for k, i in enumerate(ix)}
            for pid in dict.fromkeys(shown):
                first, last, count = first_at[pid], last_at[pid], counts[pid]
                path, care_of, homes, correspondent = self._places[pid]
                paths[path] += count
                if care_of:
                    s = stops.get(care_of)
                    if s is None:
                        stops[care_of] = [times[first], times[last], frames_[first], count,
                                          last]
                    else:
                        # the same care-of address at another place: its stop runs to the
                        # later of the two last packets
                        if (last > s[4]) if later is None else (later[last] > later[s[4]]):
                            s[1], s[4] = times[last], last
                        s[3] += count
                for a in homes:
                    addresses.setdefault(a)
                    if care_of:
                        seen_at[a].add(care_of)
                if correspondent:
                    correspondents.setdefault(correspondent)
            trail = [CareOfStop(a, s[0], s[1], s[2], s[3])
                     for a, s in sorted(stops.items(), key=lambda kv: (kv[1][0], kv[1][2]))]
            spans.append([(a, s[0], s[1]) for a, s in stops.items()])
            # a home address kept across care-of addresses is the node's own (pseudo home
            # addresses change with each binding, draft 5.1.4)
            identities.append({a for a, coas in seen_at.items() if len(coas) >= 2})
            profiles.append(Profile(f"P{n + 1}", frames, trail, list(addresses),
                                    list(correspondents), [], dict(paths)))
        could_be: dict[int, dict[int, float]] = defaultdict(dict)
        for ev in linker.evidence():
            where = set(map(held, ev.frames))
            if None in where:
                where = {profile(f) for f in ev.frames}
                where.discard(None)
            for i in sorted(where):
                profiles[i].evidence.append(ev)
            if ev.confidence >= self.threshold or not ev.subject:
                continue
            # below the threshold: the subject's profile could be each candidate's, when the
            # subject is where its profile's trail begins and the candidate where its ends (a
            # trail linked on through other evidence is not open to look-alikes there)
            s = profile(ev.subject[0])
            if s is None or not self._at_end(profiles[s], ev.subject[0], True, ordered):
                continue
            for c in ev.candidates:
                if not c.frames or c.probability < ANONYMITY_MIN:
                    continue
                o = profile(c.frames[0])
                if o is None or o == s or not self._at_end(profiles[o], c.frames[0],
                                                           False, ordered):
                    continue
                for a, b in ((s, o), (o, s)):
                    could_be[a][b] = max(could_be[a].get(b, 0.0), c.probability)
        for i, others in could_be.items():
            # profiles seen at two places at once (one node has one care-of address at a time)
            # or each with a home address of its own are two nodes, whatever a look-alike said
            profiles[i].could_be = {
                f"P{j + 1}": p for j, p in others.items()
                if not _together(spans[i], spans[j])
                and not (identities[i] and identities[j] and not identities[i] & identities[j])}
        return profiles

    def profile_names(self) -> dict[int, str]:
        """frame -> id of the profile holding it."""
        return {f: p.id for p in self.profiles() for f in p.frames}

    def report(self, profile_dict: Callable[[Profile, float], dict] | None = None) -> dict:
        """The report's `attacker` section. `profile_dict(profile, threshold)`: how each profile
        is written instead of Profile.as_dict (monitor.report_attacker.scaled_profile: the
        scaled form, without a dict per evidence item held at once)."""
        profiles = self.profiles()
        evidence = self._linker.evidence()
        # counted a column at a time, in C (75,000 items at 200,000 packets, 100 %)
        rules = list(map(attrgetter("rule"), evidence))
        fired = Counter(rules)
        links = map(operator.ge, map(attrgetter("confidence"), evidence), repeat(self.threshold))
        linking = Counter(compress(rules, links))
        names = self.profile_names() if profile_dict is None else {}
        write = profile_dict or (lambda p, threshold: p.as_dict(threshold, names))
        return {
            "vantage": self.vantage,
            "packets_seen": len(self._frames),
            "placement": {p: self._placement.get(p, 0) for p in (*PATHS, OTHER_PATH)},
            "home_agents": [{"address": a, "why": self._roles.reasons.get(a, "")}
                            for a in sorted(self._roles.home_agents)],
            "threshold": self.threshold,
            "wait": self.wait,
            "waiting": len(self._waiting) + self._linker.pending,
            "rules": [{"name": r.name, "model": r.model, "section": r.section,
                       "description": r.description, "fired": fired.get(r.name, 0),
                       "linking": linking.get(r.name, 0)} for r in self.rules],
            "profiles": [write(p, self.threshold) for p in profiles],
        } | ({"window": self.max_packets, "forgotten": self.forgotten}
             if self.max_packets is not None else {})


def _roots_by_frame(frames: UnionFind, observed: int) -> list[int] | None:
    """Each frame's root in the linker's union-find (its profile's), by frame, read at once
    (UnionFind.roots_by_frame) when it holds `observed` frames densely, in at most DENSE slots
    each (a capture of mobility traffic, 200,000 packets at 100 %; at 10 % a slot per packet of
    the capture, and lists of them, would cost more memory than the frames held: None), from
    frame 0 (a live window's is trimmed: None). Every frame observed is held (the linker adds
    each), and only those are read."""
    if frames.slots > DENSE * observed:
        return None
    return frames.roots_by_frame()


def _together(a: list[tuple[str, float, float]], b: list[tuple[str, float, float]]) -> bool:
    """Two trails in use at different care-of addresses at the same time (for longer than
    IID_OVERLAP: handovers overlap briefly)."""
    return any(ca != cb and min(ea, eb) - max(sa, sb) > IID_OVERLAP
               for ca, sa, ea in a for cb, sb, eb in b)


def _some(items: list[str], n: int = 4) -> str:
    if not items:
        return "-"
    return ", ".join(items[:n]) + (f" (+{len(items) - n} more)" if len(items) > n else "")


def _p(value: float) -> str:
    """A probability with the digits that tell it from 1 (0.99993, not 1)."""
    return f"{value:.5f}".rstrip("0").rstrip(".") if value < 1 else "1"


def _link_text(e: dict) -> str:
    """One link: rule, confidence, and what it ruled out."""
    text = f"{e['rule']} {_p(e['confidence'])}"
    others = [c for c in e.get("candidates", ()) if not c["chosen"]]
    if others:
        text += " over " + ", ".join(f"{c.get('profile') or c['what']} {_p(c['probability'])}"
                                     for c in others[:3])
    return text


def attacker_text(report: dict, max_profiles: int = 20) -> str:
    """Text section for `mip6mon report`; takes the whole report or its "attacker" section."""
    section = report.get("attacker", report)
    profiles = section.get("profiles", [])
    lines = [f"attacker at {section.get('vantage')}: "
             f"{section.get('packets_seen', 0)} packets seen, "
             f"{len(profiles)} profiles (links at confidence >= {section.get('threshold')})"]
    if section.get("home_agents"):
        lines.append("  home agents (from the wire): "
                     + ", ".join(h["address"] for h in section["home_agents"]))
    fired = [f"{r['name']}={r['linking']}/{r['fired']}" for r in section.get("rules", [])
             if r["fired"]]
    if fired:
        lines.append("  rules (linking/fired): " + " ".join(fired))
    ranked = sorted(profiles, key=lambda p: -len(p["frames"]))
    for p in ranked[:max_profiles]:
        trail = " -> ".join(p["care_of_addresses"]) or "-"
        rules = Counter(e["rule"] for e in p["evidence"] if e["links"])
        lines.append(f"  {p['id']}: {len(p['frames'])} frames, care-of trail {trail}; "
                     f"addresses {_some(p['addresses'])}; "
                     f"correspondents {_some(p['correspondents'])}; "
                     "linked by "
                     + (", ".join(f"{k} x{v}" for k, v in sorted(rules.items())) or "nothing"))
        weighed = [e for e in p["evidence"] if e["links"] and e.get("candidates")]
        for e in weighed[:3]:
            lines.append(f"      {_link_text(e)}: {e['detail']}")
        anon = p.get("anonymity_set") or {}
        if anon.get("size", 1) > 1:
            could = ", ".join(f"{c['profile']} {_p(c['probability'])}" for c in anon["could_be"])
            lines.append(f"      could be {could} (anonymity set {anon['size']}, "
                         f"{anon['entropy_bits']:.3g} bits)")
    if len(ranked) > max_profiles:
        lines.append(f"  ... {len(ranked) - max_profiles} smaller profiles")
    return "\n".join(lines)
