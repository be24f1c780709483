"""Privacy score: the keyless attacker's profiles measured against what the keys say is true.

Truth is `frame_nodes()` ({frame: real home address}) and, where available,
`care_of_trails()` ({home address: [(time, care-of address, frame)]}) of the keyed analyzer
(or of a lab truth.json, `LabTruth`). Metrics:
- pairwise link precision / recall: over pairs of frames that the attacker saw and that belong
  to real nodes, "same profile" against "same node" (as in clustering evaluation);
- care-of addresses tied to the real home address: a profile holds both;
- longest stretch followed: per node, the longest run of consecutive care-of addresses (in time)
  that one attacker profile covers;
- anonymity set and its entropy (Serjantov & Danezis 2002; Diaz et al. 2002): for each profile
  holding a node's frames, the attacker's belief over which profiles it is (itself, and the
  profiles below-threshold evidence says it could be, `Profile.could_be`), spread over the real
  nodes of those profiles' frames: the number of real nodes it could be, the Shannon entropy of
  the belief in bits, and the degree H / log2(N); weighted by the node's frames in each profile;
- evidence outcomes (`evidence_outcomes`): each decision of the attacker with its confidence
  and whether the frames it ties are one real node, for reliability tables.
"""
from __future__ import annotations

import json
import math
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from itertools import compress
from pathlib import Path


@dataclass
class LabTruth:
    """The same truth interface as monitor.keyed.KeyedAnalyzer, read from a lab truth.json."""
    nodes: dict[int, str] = field(default_factory=dict)
    trails: dict[str, list[tuple[float, str, int]]] = field(default_factory=dict)

    @classmethod
    def from_file(cls, path: str | Path) -> LabTruth:
        data = json.loads(Path(path).read_text())
        home = {name: n["home_address"] for name, n in data.get("nodes", {}).items()}
        nodes = {int(f): home[d["node"]] for f, d in data.get("frames", {}).items()
                 if d.get("node") in home}
        trails: dict[str, list] = defaultdict(list)
        for b in data.get("home_bindings", []):
            if b.get("home_address") and b.get("care_of_address") and b.get("lifetime", 1) != 0:
                trails[b["home_address"]].append((b["time"], b["care_of_address"], b["frame"]))
        return cls(nodes, dict(trails))

    def frame_nodes(self) -> dict[int, str]:
        return self.nodes

    def care_of_trails(self) -> dict[str, list[tuple[float, str, int]]]:
        return self.trails


def _pairs(n: int) -> int:
    return n * (n - 1) // 2


def _entropy(counts: Counter) -> float:
    total = sum(counts.values())
    return -sum(c / total * math.log2(c / total) for c in counts.values() if c) + 0.0


def _truth(keyed) -> tuple[dict[int, str], dict[str, list]]:
    nodes = {}
    trails = {}
    # without a keyring the keyed analyzer only knows what is in clear, i.e. what the attacker
    # knows too: scoring against it would flatter the attacker, so there is no truth
    if keyed is not None and getattr(keyed, "keyring", True) is not None:
        try:
            nodes = keyed.frame_nodes() or {}
        except (AttributeError, NotImplementedError):
            nodes = {}
        try:
            trails = dict(keyed.care_of_trails() or {})
        except (AttributeError, NotImplementedError):
            trails = {}
    # {int(frame): node} of the frames attributed to a node, made in C (150,000 at 200,000
    # packets, 100 %)
    named = nodes.values()
    return dict(compress(zip(map(int, nodes), named, strict=True), named)), trails


def _belief_over_nodes(profile, profile_nodes: dict[str, Counter]) -> Counter:
    """The attacker's belief about which profile `profile` is (itself: 1 - the others; each
    profile it could be: its probability), spread over the real nodes of each profile's frames."""
    could_be = {q: p for q, p in getattr(profile, "could_be", {}).items() if q in profile_nodes}
    belief = {profile.id: max(0.0, 1.0 - sum(could_be.values())), **could_be}
    total = sum(belief.values()) or 1.0
    mass: Counter = Counter()
    for pid, b in belief.items():
        nodes = profile_nodes.get(pid)
        if not nodes or b <= 0:
            continue
        frames = sum(nodes.values())
        for node, n in nodes.items():
            mass[node] += b / total * n / frames
    return mass


def evidence_outcomes(attacker, keyed) -> list[tuple[str, float, bool]]:
    """(rule, confidence, right) for each decision the attacker made about frames of real
    nodes: right when every frame it ties is one node (the chosen candidate, for successor
    rules). Links made at confidence p should be right at least p of the time."""
    truth, _ = _truth(keyed)
    out = []
    for ev in attacker.evidence():
        nodes = {truth.get(f) for f in ev.frames}
        if None in nodes or len(ev.frames) < 2:
            continue
        out.append((ev.rule, ev.confidence, len(nodes) == 1))
    return out


def privacy_score(attacker, keyed) -> dict:
    """Score the attacker's profiles against the keyed truth; nulls when there is no truth."""
    truth, trails = _truth(keyed)
    profiles = attacker.profiles()
    # frames the truth knows, by (profile id, node), in the profiles' frame order (a frame is
    # in one profile); counted as they come: no dict or list of every frame (2,000,000 packets
    # at 10 %: 200,000 frames, ~12 MB more at the attacker process's peak)
    cells: Counter = Counter()
    for p in profiles:
        # its frames' nodes counted in C, in the order met (the sums below add in this order)
        for node, n in Counter(filter(None, map(truth.get, p.frames))).items():
            cells[p.id, node] = n
    result: dict = {"vantage": attacker.vantage, "frames_scored": sum(cells.values()),
                    "nodes_total": len(set(truth.values())),
                    "link_precision": None, "link_recall": None,
                    "care_of_addresses": 0, "care_of_tied": 0, "care_of_tied_fraction": None,
                    "followed_fraction": None, "home_address_exposed": None,
                    "anonymity_set_mean": None, "entropy_bits_mean": None, "degree_mean": None,
                    "profiles": len(profiles), "nodes": {}}
    if not truth:
        result["note"] = "no truth: give the keyring (--keys) to score the attacker"
        return result

    # pairwise precision / recall from the contingency table (no O(n^2) pair loop)
    per_profile: Counter = Counter()
    per_node: Counter = Counter()
    for (pid, node), n in cells.items():
        per_profile[pid] += n
        per_node[node] += n
    together = sum(_pairs(n) for n in cells.values())
    linked = sum(_pairs(n) for n in per_profile.values())
    same_node = sum(_pairs(n) for n in per_node.values())
    result["link_precision"] = round(together / linked, 4) if linked else None
    result["link_recall"] = round(together / same_node, 4) if same_node else None

    by_id = {p.id: p for p in profiles}
    node_names = sorted(set(truth.values()))
    n_nodes = len(node_names)
    # node -> {profile id: frames of the node in it}
    node_profiles: dict[str, Counter] = defaultdict(Counter)
    for (pid, node), n in cells.items():
        node_profiles[node][pid] += n
    profile_nodes: dict[str, Counter] = defaultdict(Counter)
    for (pid, node), n in cells.items():
        profile_nodes[pid][node] += n
    # care-of addresses of each node: the keyed trails, else what the attacker saw of its frames
    coas_of: dict[str, list[str]] = {}
    for node in node_names:
        trail = sorted(trails.get(node, []))
        # back home (RFC 6275 11.5.4) the "care-of address" is the home address: not a move
        seq = [c for _, c, _ in trail if c != node]
        if not seq:
            seq = [c for p in (by_id[pid] for pid in node_profiles[node])
                   for c in p.care_of_addresses]
        collapsed: list[str] = []
        for c in seq:
            if not collapsed or collapsed[-1] != c:
                collapsed.append(c)
        coas_of[node] = collapsed

    nodes_out = {}
    total_coas = tied_coas = 0
    followed, exposed, sizes, entropies, degrees = [], [], [], [], []
    for node in node_names:
        mine = node_profiles.get(node, Counter())
        seen = sum(mine.values())
        holding = {pid: by_id[pid] for pid in mine}
        distinct = list(dict.fromkeys(coas_of[node]))
        tied = [c for c in distinct if any(node in p.addresses and c in p.care_of_addresses
                                           for p in holding.values())]
        total_coas += len(distinct)
        tied_coas += len(tied)
        # longest run of consecutive care-of addresses that one profile covers
        cover = [{pid for pid, p in holding.items() if c in p.care_of_addresses}
                 for c in coas_of[node]]
        best = 0
        for i in range(len(cover)):
            common = set(cover[i])
            j = i
            while j < len(cover) and common:
                common &= cover[j]
                if not common:
                    break
                j += 1
            best = max(best, j - i)
        moves = len(coas_of[node])
        size = entropy = 0.0
        exposed_frames = 0
        for pid, n in mine.items():
            w = n / seen
            mass = _belief_over_nodes(by_id[pid], profile_nodes)
            size += w * len(mass)
            entropy += w * _entropy(mass)
            if node in by_id[pid].addresses:
                exposed_frames += n
        degree = entropy / math.log2(n_nodes) if n_nodes > 1 and seen else 0.0
        nodes_out[node] = {
            "frames_seen": seen, "profiles": len(mine),
            "care_of_addresses": distinct, "care_of_tied": tied,
            "longest_followed": best, "care_of_moves": moves,
            "home_address_exposed": round(exposed_frames / seen, 4) if seen else 0.0,
            "anonymity_set_size": round(size, 3) if seen else None,
            "entropy_bits": round(entropy, 4) if seen else None,
            "degree_of_anonymity": round(degree, 4) if seen else None,
        }
        if seen:
            followed.append(best / moves if moves else 1.0)
            exposed.append(exposed_frames / seen)
            sizes.append(size)
            entropies.append(entropy)
            degrees.append(degree)
    result.update({
        "care_of_addresses": total_coas, "care_of_tied": tied_coas,
        "care_of_tied_fraction": round(tied_coas / total_coas, 4) if total_coas else None,
        "followed_fraction": round(sum(followed) / len(followed), 4) if followed else None,
        "home_address_exposed": round(sum(exposed) / len(exposed), 4) if exposed else None,
        "anonymity_set_mean": round(sum(sizes) / len(sizes), 3) if sizes else None,
        "entropy_bits_mean": round(sum(entropies) / len(entropies), 4) if entropies else None,
        "degree_mean": round(sum(degrees) / len(degrees), 4) if degrees else None,
        "nodes": nodes_out,
    })
    return result


def _fmt(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3g}" if value < 10 else f"{value:.1f}"
    return str(value)


def privacy_text(report: dict) -> str:
    """Text section for `mip6mon report`; takes the whole report or its "privacy" section."""
    s = report.get("privacy", report)
    if s.get("note"):
        return f"privacy: {s['note']}"
    lines = [f"privacy (attacker at {s.get('vantage')}): "
             f"link precision {_fmt(s['link_precision'])}, "
             f"recall {_fmt(s['link_recall'])}; care-of addresses tied to the home address "
             f"{s['care_of_tied']}/{s['care_of_addresses']}; movement followed "
             f"{_fmt(s['followed_fraction'])}; anonymity set {_fmt(s['anonymity_set_mean'])} "
             f"({_fmt(s['entropy_bits_mean'])} bits)"]
    for node, n in s.get("nodes", {}).items():
        lines.append(f"  {node}: {n['frames_seen']} frames in {n['profiles']} profiles, "
                     f"care-of tied {len(n['care_of_tied'])}/{len(n['care_of_addresses'])}, "
                     f"followed {n['longest_followed']}/{n['care_of_moves']}, "
                     f"home address exposed {_fmt(n['home_address_exposed'])}, anonymity set "
                     f"{_fmt(n['anonymity_set_size'])} ({_fmt(n['entropy_bits'])} bits)")
    return "\n".join(lines)
