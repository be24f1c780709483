"""Linking rules of the profiling attack (draft section 6), declared as data.

Each rule is a name, a confidence, the draft section it comes from, and a finder that turns the
attacker's observations into evidence: "these frames are one node, because ...". Exact
invariants (same care-of address, same home or pseudo home address, same SPI, same nonce
indices, same interface ID, same init cookie) and continuity (ESP and BU sequence numbers that
carry on across a care-of address change, an SPI that moves by less than 256, HoTI timing,
and the timing and size of what the home agent forwards out of a tunnel).
When the evidence could as well point at another node (two candidates), it is still reported,
at half confidence and marked ambiguous, so that it does not link (precision over recall).
Profiles are the connected components of the evidence at or above the threshold.
"""
from __future__ import annotations

import bisect
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from dissectors.protocol import MHType
from monitor.observe import Observation
from monitor.placement import interface_id, prefix64

THRESHOLD = 0.6                 # evidence below this is shown but does not link
ESP_GAP = 8                     # ESP sequence numbers lost across a move (RFC 4303 3.3.3)
BU_SMALL_STEP = 16              # "small" BU sequence increment (draft 6.3: keyed steps are 1..255)
SPI_STEP = 256                  # draft 6.4: SPI_increment = First(8, ...) is below 256
RR_WINDOW = 1.0                 # s: HoTI and CoTI leave together (RFC 6275 11.6.1)
FORWARD_WINDOW = 0.05           # s: the home agent forwards what it un-tunnels at once
# octets a tunnel adds: IPv6 header 40 + ESP 8 + IV <= 16 + padding <= 15 + trailer 2 + ICV <= 16
# (RFC 2473, RFC 4303), with room for a destination option
TUNNEL_OVERHEAD = (40, 128)
IID_OVERLAP = 2.0               # s: two care-of addresses with one IID active together: two nodes


@dataclass(frozen=True, slots=True)
class Evidence:
    rule: str
    confidence: float
    detail: str                         # what was equal or continued, in words
    frames: tuple[int, ...]             # the frames that support it
    ambiguous: bool = False

    def as_dict(self, threshold: float = THRESHOLD, max_frames: int = 25) -> dict:
        return {"rule": self.rule, "confidence": round(self.confidence, 3),
                "detail": self.detail, "frames": list(self.frames[:max_frames]),
                "frame_count": len(self.frames), "ambiguous": self.ambiguous,
                "links": self.confidence >= threshold}


@dataclass(frozen=True, slots=True)
class Rule:
    name: str
    confidence: float
    section: str                        # where the draft / RFC names this invariant
    description: str
    find: Callable[[Rule, list[Observation]], list[Evidence]]

    def evidence(self, detail: str, frames: Iterable[int], ambiguous: bool = False) -> Evidence:
        conf = self.confidence / 2 if ambiguous else self.confidence
        return Evidence(self.name, conf, detail, tuple(sorted(set(frames))), ambiguous)


# ---- exact invariants: every observation with the same value is one node -------------------

def _exact(key: Callable[[Observation], Iterable], label: str):
    def find(rule: Rule, observations: list[Observation]) -> list[Evidence]:
        groups: dict = defaultdict(list)
        for obs in observations:
            for value in key(obs):
                if value is not None:
                    groups[value].append(obs.frame)
        return [rule.evidence(f"{label} {_fmt(value)}", frames)
                for value, frames in groups.items() if len(frames) >= 2]
    return find


def _fmt(value) -> str:
    if isinstance(value, tuple):
        return " ".join(_fmt(v) for v in value)
    if isinstance(value, int):
        return f"0x{value:08x}" if value > 0xFFFF else str(value)
    return str(value)


def _same_interface_id(rule: Rule, observations: list[Observation]) -> list[Evidence]:
    """RFC 4291 2.5.1 / draft 6.2.1: an interface ID kept under a new prefix (e.g. EUI-64, or a
    care-of address formed with the home address's IID) links the addresses."""
    first: dict[str, int] = {}
    span: dict[str, list[float]] = {}
    care_ofs: set[str] = set()
    homes: set[str] = set()           # a node back home uses its home address as care-of
    infrastructure: set[str] = set()
    for obs in observations:
        infrastructure.update(a for a in (obs.home_agent, obs.correspondent) if a)
        for address in obs.identities:
            first.setdefault(address, obs.frame)
            s = span.setdefault(address, [obs.time, obs.time])
            s[0], s[1] = min(s[0], obs.time), max(s[1], obs.time)
        if obs.care_of:
            care_ofs.add(obs.care_of)
        homes.update(obs.homes)
    by_iid: dict[int, list[str]] = defaultdict(list)
    for address in first:
        iid = interface_id(address)
        if iid is not None and iid > 1 and address not in infrastructure:
            by_iid[iid].append(address)
    out = []
    for iid, addresses in by_iid.items():
        if len({prefix64(a) for a in addresses}) < 2:
            continue
        coas = sorted((a for a in addresses if a in care_ofs and a not in homes),
                      key=lambda a: span[a][0])
        # one node has one care-of address at a time: two used together are two nodes
        ambiguous = any(min(span[a][1], span[b][1]) - max(span[a][0], span[b][0]) > IID_OVERLAP
                        for i, a in enumerate(coas) for b in coas[i + 1:])
        out.append(rule.evidence(
            f"interface ID {iid:016x} under prefixes of " + ", ".join(sorted(addresses)),
            (first[a] for a in addresses), ambiguous))
    return out


def _same_nonce_indices(rule: Rule, observations: list[Observation]) -> list[Evidence]:
    """RFC 6275 5.2.5: a correspondent's nonce index is handed to every node that asks in the
    same period, so the indices echoed in a BU only link when one node asked (else ambiguous)."""
    groups: dict[tuple, list[Observation]] = defaultdict(list)
    for obs in observations:
        if obs.mh_type not in (MHType.BU, MHType.HOT, MHType.COT) or obs.correspondent is None:
            continue
        if obs.home_nonce_index is not None:
            groups[(obs.correspondent, "home", obs.home_nonce_index)].append(obs)
        if obs.care_of_nonce_index is not None:
            groups[(obs.correspondent, "care-of", obs.care_of_nonce_index)].append(obs)
    out = []
    for (cn, kind, index), members in groups.items():
        bus = [o for o in members if o.mh_type == MHType.BU]
        if not bus or len(members) < 2:
            continue
        senders = {o.identities for o in members if o.mh_type == MHType.BU}
        tests = {o.identities for o in members if o.mh_type != MHType.BU}
        if len(senders) < 2 and not tests:
            continue                      # the same sender repeating itself: nothing new
        ambiguous = len(senders) > 1 and len({o.care_of for o in bus}) > 1 or len(tests) > 1
        out.append(rule.evidence(f"{kind} nonce index {index} of correspondent {cn}",
                                 (o.frame for o in members), ambiguous))
    return out


# ---- continuity: the next value of a counter, seen from a new place --------------------------

def _sender(obs: Observation) -> str | None:
    """Where a counter is seen from: the care-of address, or the home address of a node at home."""
    return obs.care_of or (obs.homes[0] if obs.homes else None)


@dataclass
class _Segment:
    """A run of observations of one sender (care-of address and SPI, or sender) to one peer."""
    key: tuple
    first_time: float
    last_time: float
    first_frame: int
    last_frame: int
    first_value: int
    last_value: int
    values: list[int] = field(default_factory=list)


def _segments(observations: Iterable[Observation], group, segment, value) -> dict:
    groups: dict = defaultdict(dict)
    for obs in sorted(observations, key=lambda o: (o.time, o.frame)):
        g, s, v = group(obs), segment(obs), value(obs)
        if g is None or s is None or v is None:
            continue
        seg = groups[g].get(s)
        if seg is None:
            groups[g][s] = _Segment(s, obs.time, obs.time, obs.frame, obs.frame, v, v, [v])
        else:
            seg.last_time, seg.last_frame, seg.last_value = obs.time, obs.frame, v
            seg.values.append(v)
    return groups


def _continuations(rule, groups, step_ok, describe, sender=lambda seg: seg.key) -> list[Evidence]:
    out = []
    for g, segs in groups.items():
        ordered = sorted(segs.values(), key=lambda s: s.first_time)
        for seg in ordered:
            latest: dict = {}          # the latest earlier segment of each other sender
            for t in ordered:
                if t is not seg and sender(t) != sender(seg) and t.last_time <= seg.first_time \
                        and step_ok(t, seg):
                    if sender(t) not in latest or t.last_time > latest[sender(t)].last_time:
                        latest[sender(t)] = t
            if not latest:
                continue
            # two earlier senders whose counters would both continue here: ambiguous
            candidates = list(latest.values())
            best = max(candidates, key=lambda t: t.last_time)
            frames = [seg.first_frame] + [t.last_frame for t in candidates]
            out.append(rule.evidence(describe(g, best, seg), frames, len(candidates) > 1))
    return out


def _esp_sequence_continues(rule: Rule, observations: list[Observation]) -> list[Evidence]:
    """RFC 4303 3.3.3: the sender's ESP sequence number counts on; when it carries on from one
    care-of address to the next (draft 6.1: "the IPsec sequence number"), the two are one node."""
    esp = [o for o in observations if o.path == "mn-ha" and o.esp_sequence is not None]
    groups = _segments(esp, lambda o: (o.home_agent, o.towards_ha),
                       lambda o: (_sender(o), o.spi), lambda o: o.esp_sequence)

    def ok(t: _Segment, s: _Segment) -> bool:
        return 0 < s.first_value - t.last_value <= ESP_GAP

    return _continuations(rule, groups, ok, lambda g, t, s:
                          f"ESP sequence {t.last_value} from {t.key[0]} continues as "
                          f"{s.first_value} from {s.key[0]} ({'to' if g[1] else 'from'} {g[0]})",
                          sender=lambda seg: seg.key[0])


def _bu_sequence_continues(rule: Rule, observations: list[Observation]) -> list[Evidence]:
    """RFC 6275 9.5.1 only asks BU sequence numbers to grow; a fixed or small increment across
    a care-of address change links the BUs (draft 6.3, which randomises the increment)."""
    bus = [o for o in observations if o.mh_type == MHType.BU and o.mh_sequence is not None]
    groups = _segments(bus, lambda o: (o.dst, o.home_flag),
                       _sender, lambda o: o.mh_sequence)

    def steps(seg: _Segment) -> set[int]:
        return {(b - a) % 65536 for a, b in zip(seg.values, seg.values[1:], strict=False) if b != a}

    def ok(t: _Segment, s: _Segment) -> bool:
        return 0 < (s.first_value - t.last_value) % 65536 <= BU_SMALL_STEP

    out = []
    for ev in _continuations(rule, groups, ok, lambda g, t, s:
                             f"BU sequence {t.last_value} from {t.key} continues as "
                             f"{s.first_value} from {s.key} (to {g[0]}, step "
                             f"{(s.first_value - t.last_value) % 65536}"
                             + (", the same fixed step as before)" if
                                steps(t) == {(s.first_value - t.last_value) % 65536}
                                else ")")):
        out.append(ev)
    return out


def _spi_increment(rule: Rule, observations: list[Observation]) -> list[Evidence]:
    """draft 6.4: the renewed SPI is the old one plus First(8, HMAC): less than 256 away, so an
    SPI that appears just above one already seen, towards the same home agent, is its successor."""
    esp = [o for o in observations if o.path == "mn-ha" and o.spi is not None]
    groups = _segments(esp, lambda o: (o.home_agent, o.towards_ha), lambda o: o.spi,
                       lambda o: o.spi)

    def ok(t: _Segment, s: _Segment) -> bool:
        return 0 < (s.key - t.key) % (1 << 32) < SPI_STEP and t.first_time <= s.first_time

    out = []
    for g, segs in groups.items():
        for seg in segs.values():
            cands = [t for t in segs.values() if t is not seg and ok(t, seg)]
            if cands:
                frames = [seg.first_frame] + [t.last_frame for t in cands]
                out.append(rule.evidence(
                    f"SPI 0x{seg.key:08x} is " + " or ".join(
                        f"0x{t.key:08x} + {(seg.key - t.key) % (1 << 32)}" for t in cands)
                    + f" ({'to' if g[1] else 'from'} {g[0]})", frames, len(cands) > 1))
    return out


def _hoti_timing(rule: Rule, observations: list[Observation]) -> list[Evidence]:
    """draft 6.1 ("the timing of HoTI messages"): a HoTI (or HoT) seen in clear between home
    agent and correspondent goes out (or comes in) together with the CoTI (CoT) of the same
    node, and right after (before) the tunnelled packet that carried it on MN-HA."""
    by_time = sorted(observations, key=lambda o: o.time)
    partners_of = _TimeIndex(by_time, lambda o: (o.mh_type, o.correspondent)
                             if o.care_of and o.mh_type in (MHType.COTI, MHType.COT) else None)
    tunnels = _TimeIndex(by_time, _tunnel_direction)
    out = []
    for obs in by_time:
        if obs.mh_type not in (MHType.HOTI, MHType.HOT) or obs.tunnelled or obs.path != "ha-cn":
            continue
        pair = MHType.COTI if obs.mh_type == MHType.HOTI else MHType.COT
        partners = partners_of.between((pair, obs.correspondent),
                                       obs.time - RR_WINDOW, obs.time + RR_WINDOW)
        tunnel = _tunnel_beside(tunnels, obs.time, outbound=obs.mh_type == MHType.HOTI)
        for kind, cands in (("RR", partners), ("tunnel", tunnel)):
            coas = {o.care_of for o in cands}
            if not coas:
                continue
            nearest = _nearest_per_care_of(cands, coas, obs.time)
            what = (f"{obs.mh_name} {'to' if obs.mh_type == MHType.HOTI else 'from'} "
                    f"{obs.correspondent} at {obs.time:.3f} s with the "
                    + ("CoTI/CoT" if kind == "RR" else "MN-HA tunnel packet") + " of "
                    + ", ".join(f"{c} at {nearest[c].time:.3f} s" for c in sorted(coas)))
            out.append(rule.evidence(what, [obs.frame] + [o.frame for o in nearest.values()],
                                     len(coas) > 1))
    return out


class _TimeIndex:
    """Observations grouped by `key` (None: left out), each group in time order, so a rule
    looks only at its own kind of packet inside a time window (scanning every packet of the
    window was quadratic at 1,000 packets/s)."""

    def __init__(self, by_time: list[Observation], key):
        self._groups: dict = defaultdict(list)
        for o in by_time:
            k = key(o)
            if k is not None:
                self._groups[k].append(o)
        self._times = {k: [o.time for o in group] for k, group in self._groups.items()}

    def between(self, key, t0: float, t1: float) -> list[Observation]:
        group, times = self._groups.get(key, ()), self._times.get(key, ())
        return list(group[bisect.bisect_left(times, t0):bisect.bisect_right(times, t1)])


def _tunnel_direction(o: Observation) -> bool | None:
    """An MN-HA tunnel packet's direction (True: toward the home agent), None for others."""
    if o.care_of and o.path == "mn-ha" and o.towards_ha is not None:
        return bool(o.towards_ha)
    return None


def _tunnel_beside(tunnels: _TimeIndex, at: float, outbound: bool) -> list[Observation]:
    """The MN-HA tunnel packets that can carry what HA-CN shows at `at`: toward the home agent
    just before an outbound packet, from it just after an inbound one."""
    if outbound:
        return tunnels.between(True, at - FORWARD_WINDOW, at)
    return tunnels.between(False, at, at + FORWARD_WINDOW)


def _nearest_per_care_of(cands: list[Observation], coas: set[str],
                         at: float) -> dict[str, Observation]:
    """For each care-of address, its candidate observation closest in time to `at`."""
    return {c: min((o for o in cands if o.care_of == c), key=lambda o: abs(o.time - at))
            for c in coas}


def _forwarding_timing(rule: Rule, observations: list[Observation]) -> list[Evidence]:
    """draft 6.1 ("communication patterns") against 5.4 / 7.2: a packet the home agent takes out
    of a mobile node's tunnel appears on HA-CN a moment later, and one size of tunnel overhead
    smaller (and the reverse for packets to the node). One candidate links; several: ambiguous."""
    by_time = sorted(observations, key=lambda o: o.time)
    tunnels = _TimeIndex(by_time, _tunnel_direction)
    lo, hi = TUNNEL_OVERHEAD
    out = []
    for obs in by_time:
        if obs.path != "ha-cn" or obs.mh_type in (MHType.HOTI, MHType.HOT) or not obs.homes \
                or not obs.length:
            continue
        outbound = obs.correspondent == obs.dst          # home side -> correspondent
        cands = [o for o in _tunnel_beside(tunnels, obs.time, outbound)
                 if lo <= o.length - obs.length <= hi]
        coas = {o.care_of for o in cands}
        if not coas:
            continue
        nearest = _nearest_per_care_of(cands, coas, obs.time)
        what = (f"{obs.homes[0]} {'->' if outbound else '<-'} {obs.correspondent} at "
                f"{obs.time:.3f} s ({obs.length} octets) with the MN-HA tunnel packet of "
                + ", ".join(f"{c} at {nearest[c].time:.3f} s ({nearest[c].length} octets)"
                            for c in sorted(coas)))
        out.append(rule.evidence(what, [obs.frame] + [o.frame for o in nearest.values()],
                                 len(coas) > 1))
    return out


RULES: tuple[Rule, ...] = (
    Rule("same-care-of-address", 0.95, "draft 6.1",
         "packets from or to one care-of address",
         _exact(lambda o: (o.care_of,), "care-of address")),
    Rule("same-home-address", 1.0, "draft 6.1, 6.2.1",
         "one home or pseudo home address (HAO, RH2, 0xFE, inner header)",
         _exact(lambda o: o.homes, "home or pseudo home address")),
    Rule("same-spi", 0.9, "draft 6.1, 6.4", "one ESP SPI",
         _exact(lambda o: ((f"0x{o.spi:08x}",) if o.spi is not None else ()), "SPI")),
    Rule("same-init-cookie", 1.0, "RFC 6275 6.1.3-6.1.6",
         "a HoT/CoT echoing a HoTI/CoTI init cookie",
         _exact(lambda o: (o.cookie,), "init cookie")),
    Rule("same-nonce-indices", 0.7, "draft 6.1, RFC 6275 5.2.5",
         "a correspondent's nonce indices carried from its HoT/CoT into a BU", _same_nonce_indices),
    Rule("same-interface-id", 0.8, "draft 6.2.1, RFC 4291 2.5.1",
         "one interface ID under different prefixes", _same_interface_id),
    Rule("esp-sequence-continues", 0.8, "draft 6.1, RFC 4303 3.3.3",
         "ESP sequence numbers that carry on across a care-of address change",
         _esp_sequence_continues),
    Rule("bu-sequence-continues", 0.75, "draft 6.3, RFC 6275 9.5.1",
         "BU sequence numbers that carry on with a fixed or small increment",
         _bu_sequence_continues),
    Rule("spi-increment", 0.8, "draft 6.4", "an SPI less than 256 above an earlier one",
         _spi_increment),
    Rule("hoti-timing", 0.65, "draft 6.1, RFC 6275 11.6.1",
         "a HoTI/HoT in clear at the time of one node's CoTI/CoT or tunnel packet",
         _hoti_timing),
    Rule("forwarding-timing", 0.65, "draft 6.1, 7.2",
         "a packet on HA-CN right after (before) a tunnel packet of one node, one tunnel "
         "overhead smaller", _forwarding_timing),
)


def find_evidence(observations: list[Observation], rules: Iterable[Rule] = RULES) -> list[Evidence]:
    out: list[Evidence] = []
    for rule in rules:
        out.extend(rule.find(rule, observations))
    return out


class UnionFind:
    def __init__(self, items: Iterable[int] = ()):
        self.parent = {i: i for i in items}

    def find(self, x: int) -> int:
        parent = self.parent
        parent.setdefault(x, x)
        root = x
        while parent[root] != root:
            root = parent[root]
        while parent[x] != root:
            parent[x], x = root, parent[x]
        return root

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            if ra < rb:
                self.parent[rb] = ra
            else:
                self.parent[ra] = rb


def cluster(frames: Iterable[int], evidence: Iterable[Evidence],
            threshold: float = THRESHOLD) -> dict[int, list[int]]:
    """root frame -> frames: connected components of the evidence at or above threshold."""
    uf = UnionFind(frames)
    for ev in evidence:
        if ev.confidence >= threshold and ev.frames:
            first = ev.frames[0]
            for f in ev.frames[1:]:
                uf.union(first, f)
    groups: dict[int, list[int]] = defaultdict(list)
    for f in sorted(uf.parent):
        groups[uf.find(f)].append(f)
    return groups
