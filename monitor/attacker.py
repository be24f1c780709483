"""The attacker view (draft section 6): what a keyless eavesdropper at one place learns.

`AttackerAnalyzer(vantage)` is an EventStream addon. It never sees a key and never reads
`PacketEvent.path` (the lab's ground truth): it places each packet on a path from addresses and
wire facts (monitor.placement), keeps only what is readable before any ESP header, records one
observation per packet seen at its vantage point (monitor.observe), links observations with the
rules of monitor.linking, and reports profiles: clusters of observations believed to be one
node, each with its trail of care-of addresses, the addresses it used, its correspondents and
the evidence (rule, confidence, frames) that holds it together.
"""
from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field

from dissectors.events import PacketEvent
from dissectors.protocol import OTHER_PATH, PATHS
from monitor.linking import RULES, THRESHOLD, Evidence, Rule, cluster, find_evidence
from monitor.observe import Observation, observe
from monitor.placement import VANTAGE_PATHS, Roles, View, learn_roles, place, visible


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

    @property
    def care_of_addresses(self) -> list[str]:
        return [stop.care_of_address for stop in self.trail]

    def as_dict(self, threshold: float = THRESHOLD) -> dict:
        return {"id": self.id, "care_of_addresses": self.care_of_addresses,
                "trail": [{"care_of_address": s.care_of_address,
                           "first_time": s.first_time, "last_time": s.last_time,
                           "first_frame": s.first_frame, "frames": s.frames}
                          for s in self.trail],
                "addresses": self.addresses, "correspondents": self.correspondents,
                "paths": self.paths, "frames": self.frames,
                "evidence": [e.as_dict(threshold) for e in self.evidence]}


@dataclass
class _Result:
    roles: Roles
    placement: Counter
    observations: list[Observation]
    evidence: list[Evidence]
    profiles: list[Profile]


class AttackerAnalyzer:
    """Addon: the eavesdropper at `vantage` ("mn-ha", "ha-cn", "mn-cn" or "all")."""

    def __init__(self, vantage: str = "all", rules: tuple[Rule, ...] = RULES,
                 threshold: float = THRESHOLD, max_packets: int | None = None):
        """`max_packets`: analyse only the newest packets (a live capture that runs for
        hours: the analysis is a batch over what is kept, so its cost and memory stay flat);
        None keeps everything (a capture file, whose report must be whole)."""
        if vantage not in VANTAGE_PATHS:
            raise ValueError(f"unknown vantage point {vantage!r}")
        self.vantage = vantage
        self.rules = rules
        self.threshold = threshold
        self.max_packets = max_packets
        self.forgotten = 0                 # packets dropped from the front of the window
        self._views: list[tuple[int, float, int, View]] = []
        self._result: _Result | None = None
        # (roles signature, views observed, placement, observations) of the last analysis
        self._observed: tuple | None = None

    # -- addon hooks ---------------------------------------------------------------------------
    def packet(self, event: PacketEvent) -> None:
        if event.malformed or not event.layers:
            return
        view = visible(event)          # drops everything after the first ESP header
        if view is not None:
            self._views.append((event.frame, event.time, event.length, view))
            self._result = None
            if self.max_packets is not None and len(self._views) > self.max_packets * 1.1:
                # forget a tenth at once: the next analysis starts over either way
                drop = len(self._views) - self.max_packets
                del self._views[:drop]
                self.forgotten += drop
                self._observed = None

    def done(self) -> None:
        self._analyse()

    # -- results -------------------------------------------------------------------------------
    def _analyse(self) -> _Result:
        if self._result is not None:
            return self._result
        roles = learn_roles([(f, v) for f, _, _, v in self._views])
        seen = VANTAGE_PATHS[self.vantage]
        signature = (frozenset(roles.home_agents), frozenset(roles.home_prefixes),
                     frozenset(roles.care_of_addresses))
        placement: Counter = Counter()
        observations: list[Observation] = []
        start = 0
        if self._observed is not None and self._observed[0] == signature:
            # the roles did not change: earlier packets keep their place and observation
            # (a live dashboard asks again and again while packets keep coming)
            _, start, old_placement, old_observations = self._observed
            placement, observations = Counter(old_placement), list(old_observations)
        for frame, time, length, view in self._views[start:]:
            path = place(view, roles)
            placement[path] += 1
            if path in seen:
                observations.append(observe(frame, time, view, path, roles, length))
        self._observed = (signature, len(self._views), placement, observations)
        evidence = find_evidence(observations, self.rules)
        self._result = _Result(roles, placement, observations, evidence,
                               self._profiles(observations, evidence))
        return self._result

    def _profiles(self, observations: list[Observation], evidence: list[Evidence]) -> list[Profile]:
        by_frame = {o.frame: o for o in observations}
        groups = cluster(by_frame, evidence, self.threshold)
        members = sorted(groups.values(), key=lambda fs: fs[0])
        profile_of = {f: i for i, fs in enumerate(members) for f in fs}
        ev_of: dict[int, list[Evidence]] = defaultdict(list)
        for ev in evidence:
            for i in sorted({profile_of[f] for f in ev.frames if f in profile_of}):
                ev_of[i].append(ev)
        profiles = []
        for i, frames in enumerate(members):
            obs = sorted((by_frame[f] for f in frames), key=lambda o: (o.time, o.frame))
            stops: dict[str, list] = {}
            addresses: dict[str, None] = {}
            correspondents: dict[str, None] = {}
            for o in obs:
                if o.care_of:
                    s = stops.setdefault(o.care_of, [o.time, o.time, o.frame, 0])
                    s[1] = o.time
                    s[3] += 1
                for a in o.homes:
                    addresses.setdefault(a)
                if o.correspondent:
                    correspondents.setdefault(o.correspondent)
            trail = [CareOfStop(a, s[0], s[1], s[2], s[3])
                     for a, s in sorted(stops.items(), key=lambda kv: (kv[1][0], kv[1][2]))]
            profiles.append(Profile(f"P{i + 1}", frames, trail, list(addresses),
                                    list(correspondents), ev_of.get(i, []),
                                    dict(Counter(o.path for o in obs))))
        return profiles

    def observations(self) -> list[Observation]:
        return self._analyse().observations

    def evidence(self) -> list[Evidence]:
        return self._analyse().evidence

    def roles(self) -> Roles:
        return self._analyse().roles

    def profiles(self) -> list[Profile]:
        return self._analyse().profiles

    def report(self) -> dict:
        result = self._analyse()
        fired = Counter(e.rule for e in result.evidence)
        linking = Counter(e.rule for e in result.evidence if e.confidence >= self.threshold)
        return {
            "vantage": self.vantage,
            "packets_seen": len(result.observations),
            "placement": {p: result.placement.get(p, 0) for p in (*PATHS, OTHER_PATH)},
            "home_agents": [{"address": a, "why": result.roles.reasons.get(a, "")}
                            for a in sorted(result.roles.home_agents)],
            "threshold": self.threshold,
            "rules": [{"name": r.name, "confidence": r.confidence, "section": r.section,
                       "description": r.description, "fired": fired.get(r.name, 0),
                       "linking": linking.get(r.name, 0)} for r in self.rules],
            "profiles": [p.as_dict(self.threshold) for p in result.profiles],
        } | ({"window": self.max_packets, "forgotten": self.forgotten}
             if self.max_packets is not None else {})


def _some(items: list[str], n: int = 4) -> str:
    if not items:
        return "-"
    return ", ".join(items[:n]) + (f" (+{len(items) - n} more)" if len(items) > n else "")


def attacker_text(report: dict, max_profiles: int = 20) -> str:
    """Text section for `mip6mon report`; takes the whole report or its "attacker" section."""
    section = report.get("attacker", report)
    profiles = section.get("profiles", [])
    lines = [f"attacker at {section.get('vantage')}: "
             f"{section.get('packets_seen', 0)} packets seen, "
             f"{len(profiles)} profiles"]
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
    if len(ranked) > max_profiles:
        lines.append(f"  ... {len(ranked) - max_profiles} smaller profiles")
    return "\n".join(lines)
