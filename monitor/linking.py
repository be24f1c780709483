"""Linking rules of the profiling attack (draft section 6), declared as data, weighed as
competing explanations.

Each rule (`RULES`) is a name, a confidence model, the draft section it comes from, and a
finder. The `Linker` hands every observation once, in capture order, to every finder that takes
its kind (what it carries: `Kind`, `Finder.takes`, a table built as kinds come); a finder
indexes it and, when something needs explaining ("this SPI is new", "this care-of address
starts a new ESP counter run"), asks for a decision after a bounded wait (`WAIT`), so that
competing candidates seen a little later are counted too. Past that wait a decision is final.

Two kinds of rules:
- identities: a value only one node holds (care-of, home or pseudo home address, init cookie)
  links at once, with certainty. Values others could hold as well (an SPI, an interface ID, a
  nonce index) are checked for look-alikes first.
- successors (draft 6.3, 6.4, RFC 4303 3.3.3, timing): a new value that could continue an
  older one. The finder gathers every candidate that could explain it in its window (the
  "component": the new value, its candidate predecessors, their other candidate successors,
  and theirs), applies what the protocol implies (a renewed SPI replaces its predecessor and
  is never used before it stops; a chain has one successor and a successor one predecessor; the
  same SA's ESP counter carries on), and sums over every way of pairing them up. Values not
  paired are explained as look-alikes, with the density of look-alike values estimated from
  the capture around the value (dense, sequential allocation makes a small step weak evidence;
  random allocation in 2^32 makes it strong). The result is the posterior that the new value
  continues each candidate.

A link is made when the posterior is at least `THRESHOLD`. Evidence below it is kept: its
candidates form the anonymity set of the profile they could belong to. Every piece of evidence
carries the candidates, their probabilities and the numbers that went in.
"""
from __future__ import annotations

import bisect
import heapq
import math
from collections import Counter, defaultdict, deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from itertools import chain, compress, islice
from operator import attrgetter, itemgetter, not_
from typing import NamedTuple

from dissectors.protocol import MHType
from monitor.observe import Observation
from monitor.placement import interface_id, prefix64

THRESHOLD = 0.999        # a link is made at or above this posterior (precision over recall:
                         # in a crowd of 20 one wrong link costs a capture 5 % of its precision)
WAIT = 30.0              # s: a successor decision waits this long for competing candidates
PLACE_WAIT = 10.0        # s: a packet is placed once the roles could learn from what follows
HORIZON = 3600.0         # s: index entries unused for longer are forgotten (bounded state)
ANONYMITY_MIN = 0.01     # candidates less likely than this are not in an anonymity set
LISTED = 6               # candidates (and ruled-out ones) listed per piece of evidence

ESP_GAP = 8              # ESP sequence numbers an eavesdropper may miss (RFC 4303 3.3.3)
STEP_PRIOR = 4           # pseudo-counts of draft 6.3's even steps before the capture's own
SKIPPED = 0.2            # prior that an SA was renewed twice between two of its packets
SPI_STEP = 255           # draft 6.4: SPI_increment = First(8, HMAC), 0 made 1: 1..255
BU_STEP = 255            # draft 6.3: seq#_increment = First(8, HMAC), 0 made 1: 1..255
RR_WINDOW = 1.0          # s: HoTI and CoTI leave together (RFC 6275 11.6.1)
FORWARD_WINDOW = 0.05    # s: the home agent forwards what it un-tunnels at once
# octets a tunnel adds: IPv6 header 40 + ESP 8 + IV <= 16 + padding <= 15 + trailer 2 + ICV <= 16
# (RFC 2473, RFC 4303), with room for a destination option
TUNNEL_OVERHEAD = (40, 128)
IID_OVERLAP = 2.0        # s: two care-of addresses with one IID active together: two nodes
MISSING = 0.005          # prior that a timing partner is not visible (lost, other vantage)
RATE_SPAN = 10.0         # s each side: how busy a timing window is, measured around it

COMPONENT_CAP = 10       # rows or columns beyond this: too crowded to enumerate pairings
BAND_CAP = 64            # look-alike values counted at most (the posterior is low by then)
SCAN_CAP = 4 * COMPONENT_CAP   # index entries examined per query: more means crowded
FRAME_SAMPLE = 25        # frames an identity group keeps (and a report lists) besides its count

# message types read per packet, looked up once (an IntEnum member lookup costs as much as the
# comparison it serves)
_BU, _HOTI, _COTI, _HOT, _COT = MHType.BU, MHType.HOTI, MHType.COTI, MHType.HOT, MHType.COT
_HOME_TEST = (_HOTI, _HOT)
_CARE_OF_TEST = (_COTI, _COT)
_NONCE_CARRIERS = (_BU, _HOT, _COT)


# ---- what a decision produces -----------------------------------------------------------------
# Not frozen (as monitor.observe.Observation): a frozen dataclass sets each field through
# object.__setattr__, 1.2 us an Evidence against 0.4 (0.48 against 0.14 a Candidate), and the
# linker makes one or more per HoTI/HoT, BU and SPI step; nothing changes one once made, and
# none is a dict key or in a set.

@dataclass(slots=True)
class Candidate:
    """One explanation a decision weighed: the frames it points at, its posterior, and why."""
    frames: tuple[int, ...]
    probability: float
    what: str
    chosen: bool = False

    def as_dict(self) -> dict:
        return {"frames": list(self.frames), "probability": round(self.probability, 6),
                "what": self.what, "chosen": self.chosen}


class Words:
    """The words of a decision made from its numbers when first read (`Evidence.deferred`):
    the decisions that come with every packet of a kind (a HoTI/HoT's timing, a BU's nonce
    indices) were ~40 % text, floats formatted for a detail, candidates and a computation
    that a report reads for a few of a crowd's items (the scaled report: a rule's first
    details) or none, and that a live window drops unread. Holds values, never an Observation
    (a window's memory is bounded by what is distinct, issue 12)."""

    __slots__ = ()

    def detail(self) -> str:
        raise NotImplementedError

    def candidates(self) -> tuple[Candidate, ...]:
        return ()

    def computation(self) -> str:
        return ""


class Evidence:
    """What a decision (or an identity group) found: which frames are one node, how likely,
    and, in words, what was equal or continued and the numbers that went in.

    Slotted, as a dataclass of these fields would be, by hand: `detail`, `candidates` and
    `computation` are either given (the constructor) or written from a `Words` when first read
    (`deferred`): the detail alone (the scaled report's row), or all three at once, the words
    then let go (a detailed report reads them all; it holds the texts, not both)."""

    __slots__ = ("rule", "confidence", "frames", "ambiguous", "subject", "ruled_out",
                 "frame_count", "_detail", "_candidates", "_computation", "_words")
    _FIELDS = ("rule", "confidence", "detail", "frames", "ambiguous", "subject", "candidates",
               "ruled_out", "computation", "frame_count")

    rule: str
    confidence: float                   # posterior that `frames` are one node
    frames: tuple[int, ...]             # the frames that support it
    ambiguous: bool                     # another explanation competed
    subject: tuple[int, ...]            # the frame(s) being explained (successor rules)
    ruled_out: tuple[str, ...]          # look-alikes a protocol constraint excluded, and why
    # frames that carried it, when `frames` is a sample of them (identity groups: a value
    # seen 100,000 times keeps its first FRAME_SAMPLE frames and the count); 0: len(frames)
    frame_count: int

    def __init__(self, rule: str, confidence: float, detail: str, frames: tuple[int, ...],
                 ambiguous: bool = False, subject: tuple[int, ...] = (),
                 candidates: tuple[Candidate, ...] = (), ruled_out: tuple[str, ...] = (),
                 computation: str = "", frame_count: int = 0):
        self.rule, self.confidence, self.frames = rule, confidence, frames
        self.ambiguous, self.subject, self.ruled_out = ambiguous, subject, ruled_out
        self.frame_count = frame_count
        self._detail, self._candidates, self._computation = detail, candidates, computation
        self._words: Words | None = None

    @classmethod
    def deferred(cls, rule: str, confidence: float, frames: tuple[int, ...], words: Words,
                 ambiguous: bool = False, subject: tuple[int, ...] = ()) -> Evidence:
        """Evidence whose detail, candidates and computation `words` writes when read."""
        e = cls.__new__(cls)
        e.rule, e.confidence, e.frames = rule, confidence, frames
        e.ambiguous, e.subject, e.ruled_out, e.frame_count = ambiguous, subject, (), 0
        e._detail = e._candidates = e._computation = None
        e._words = words
        return e

    @property
    def detail(self) -> str:
        """What was equal or continued, in words."""
        if self._detail is None:
            self._detail = self._words.detail()
        return self._detail

    @property
    def candidates(self) -> tuple[Candidate, ...]:
        """The explanations weighed, best first."""
        if self._words is not None:
            self._write()
        return self._candidates

    @property
    def computation(self) -> str:
        """The numbers that went in."""
        if self._words is not None:
            self._write()
        return self._computation

    def _write(self) -> None:
        """Every word at once (a detailed report reads them all), the values let go."""
        words = self._words
        if self._detail is None:
            self._detail = words.detail()
        self._candidates, self._computation = words.candidates(), words.computation()
        self._words = None

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        return all(getattr(self, f) == getattr(other, f) for f in self._FIELDS)

    __hash__ = None     # type: ignore[assignment]   (compared by value, as a dataclass)

    def __repr__(self) -> str:
        return (f"{type(self).__qualname__}("
                + ", ".join(f"{f}={getattr(self, f)!r}" for f in self._FIELDS) + ")")

    def as_dict(self, threshold: float = THRESHOLD, max_frames: int = FRAME_SAMPLE) -> dict:
        out = {"rule": self.rule, "confidence": round(self.confidence, 6),
               "detail": self.detail, "frames": list(self.frames[:max_frames]),
               "frame_count": self.frame_count or len(self.frames), "ambiguous": self.ambiguous,
               "links": self.confidence >= threshold}
        if self.candidates or self.computation:
            out.update(subject=list(self.subject),
                       candidates=[c.as_dict() for c in self.candidates],
                       ruled_out=list(self.ruled_out), computation=self.computation)
        return out

    @staticmethod
    def summary(items: list[Evidence], threshold: float = THRESHOLD,
                max_frames: int = FRAME_SAMPLE) -> tuple:
        """as_dict()'s confidence, links, ambiguous, frame_count and first of its frames, summed
        over `items` (one rule's evidence in a profile): the highest confidence, whether any
        links, how many are ambiguous, the frames they cite, the first of them. Read a column
        at a time, in C, and no detail written: the scaled report sums a crowd's items per rule
        (200,000 packets at 100 %: 75,000 items, a Python row each and their details took
        ~0.25 s of the attacker's after-pass) and shows the details of the first few only
        (`monitor.report_attacker.summary_of`: the same sums of as_dict()s)."""
        confidence = max(map(attrgetter("confidence"), items))
        frame_counts = list(map(attrgetter("frame_count"), items))
        frames = list(map(attrgetter("frames"), items))
        # frame_count 0: len(frames) (as_dict)
        counted = sum(frame_counts) + sum(map(len, compress(frames, map(not_, frame_counts))))
        return (round(confidence, 6), confidence >= threshold,
                sum(map(bool, map(attrgetter("ambiguous"), items))), counted,
                min(chain.from_iterable(map(itemgetter(slice(max_frames)), frames)),
                    default=None))


@dataclass(frozen=True, slots=True)
class Rule:
    name: str
    model: str                          # the confidence model, in words
    section: str                        # where the draft / RFC names this invariant
    description: str
    finder: Callable[[Rule, Linker], Finder]


class Finder:
    """A rule's state: indexes over what it has seen, bounded by time."""

    def __init__(self, rule: Rule, linker: Linker):
        self.rule, self.linker = rule, linker

    def takes(self, kind: Kind) -> bool:
        """Whether add() can do anything with an observation of this kind (the Linker hands
        it only those: most packets concern a few rules). True unless a finder says."""
        return True

    def adder(self, kind: Kind) -> Callable[[Observation], None] | None:
        """What the Linker calls with each observation of this kind (asked once per kind):
        add(), or a version of it that skips what the kind answers already; None when the
        finder takes none of them."""
        return self.add if self.takes(kind) else None

    def add(self, obs: Observation) -> None:
        raise NotImplementedError

    def decide(self, claim) -> Evidence | None:
        """The evidence a claim comes to once due (None: nothing); makes no claim itself."""
        return None

    def evidence(self) -> Iterable[Evidence]:
        """Evidence the finder holds itself (identity groups); decisions go to the linker."""
        return ()

    def forget(self, before: float) -> None:
        """Drop index entries last used before `before` (capture time)."""

    def keep_frames(self, oldest: int) -> None:
        """A live window forgot every frame below `oldest`."""


class Kind(NamedTuple):
    """What an observation carries, as far as finders choose by it: its path, mobility message
    type and whether it is tunnelled; `homes` and `length`: whether not empty (not 0); every
    other field True when it holds a value, None when not, so that a finder's own tests (`is
    None`, truth) read a Kind as they read the Observation. The Linker hands an observation
    only to the finders that take its kind (`Finder.takes`, asked once per kind: a capture
    shows a handful)."""
    path: str
    mh_type: int | None
    care_of: bool | None
    homes: bool
    correspondent: bool | None
    home_agent: bool | None
    towards_ha: bool | None
    spi: bool | None
    esp_sequence: bool | None
    cookie: bool | None
    tunnelled: bool
    length: bool
    mh_sequence: bool | None
    home_nonce_index: bool | None
    care_of_nonce_index: bool | None


def kind_of(o: Observation) -> tuple:
    """The fields of o's Kind, as a plain tuple (the routing table's key: no Kind made per
    packet)."""
    return (o.path, o.mh_type, o.care_of is not None or None, bool(o.homes),
            o.correspondent is not None or None, o.home_agent is not None or None,
            o.towards_ha is not None or None, o.spi is not None or None,
            o.esp_sequence is not None or None, o.cookie is not None or None, o.tunnelled,
            bool(o.length), o.mh_sequence is not None or None,
            o.home_nonce_index is not None or None, o.care_of_nonce_index is not None or None)


# ---- the engine -------------------------------------------------------------------------------

class UnionFind:
    """Frames -> profile; merges keep the smallest frame as the root.

    A frame's parent is kept in one list indexed by the frame's distance from the oldest frame
    held (`_base`: 0, or where a live window was trimmed), ABSENT for a frame not held: frames
    are capture positions, so a busy capture's are dense, and a list slot reads the parent
    object it holds (8 octets a frame, as the array chunks this was, which made an int object
    at every read and looked each chunk up in a dict: a fifth of the linker's time).

    `roots` caches find() for the frames that decisions ask about again and again (a timing
    window's candidates and rivals, asked by every decision whose window holds them; read it,
    and fill it through `cached`): an entry is exact until its root is merged into another
    group, when the cache is emptied (rare: a new frame joins its group as a root of its own,
    which no entry names)."""

    ABSENT = -1
    GROW = 1 << 12              # slots added at once when a frame lies past the end
    CACHED = 1 << 14            # entries at most (emptied when full)

    def __init__(self, items: Iterable[int] = ()):
        self._parent: list[int] = []
        self._base = 0
        self.size = 0
        self.roots: dict[int, int] = {}
        self._cached_roots: set[int] = set()     # the roots `roots` names
        for i in items:
            self.add(i)

    def _make_room(self, x: int) -> None:
        """Slots up to frame x (and from it, when it is older than the oldest held)."""
        parent = self._parent
        i = x - self._base
        if i < 0:
            parent[:0] = [self.ABSENT] * -i
            self._base = x
        elif i >= len(parent):
            parent.extend([self.ABSENT] * max(i + 1 - len(parent), self.GROW))

    def add(self, x: int) -> None:
        i = x - self._base
        parent = self._parent
        if not 0 <= i < len(parent):
            self._make_room(x)
            i = x - self._base
        if parent[i] == -1:
            parent[i] = x
            self.size += 1

    def __contains__(self, x: int) -> bool:
        i = x - self._base
        return 0 <= i < len(self._parent) and self._parent[i] != -1

    def frames(self) -> Iterator[int]:
        base = self._base
        for i, p in enumerate(self._parent):
            if p != -1:
                yield base + i

    def find(self, x: int) -> int:
        """x's root; a frame not held is its own and is not added: a decision that looks up a
        frame a live window forgot (an index entry older than the window) must not bring it
        back until the next trim (issue 12)."""
        parent, base = self._parent, self._base
        i = x - base
        if not 0 <= i < len(parent):
            return x
        root = parent[i]
        if root == x or root == -1:
            return x
        up = parent[root - base]
        while up != root:
            root = up
            up = parent[root - base]
        while x != root:             # path compression
            i = x - base
            x = parent[i]
            parent[i] = root
        return root

    def cached(self, x: int) -> int:
        """find(x), through and into `roots`."""
        root = self.roots.get(x)
        if root is None:
            if len(self.roots) >= self.CACHED:
                self._forget_roots()
            root = self.roots[x] = self.find(x)
            self._cached_roots.add(root)
        return root

    def _forget_roots(self) -> None:
        self.roots.clear()
        self._cached_roots.clear()

    def union(self, a: int, b: int) -> bool:
        parent, base = self._parent, self._base
        i, j = a - base, b - base
        n = len(parent)
        if not (0 <= i < n and 0 <= j < n) or parent[i] == -1 or parent[j] == -1:
            self.add(a)
            self.add(b)
            parent, base = self._parent, self._base
            i, j = a - base, b - base
        pa, pb = parent[i], parent[j]
        if pa == pb:
            # one parent, one profile: a packet's second and third identity, after the first
            # joined it to the profile (roots point at themselves, the rest at their root
            # once a find has compressed their path)
            return False
        # b is most often a frame just seen, still a root of its own
        rb = b if pb == b else self.find(b)
        ra = a if pa == a else self.find(a)
        if ra == rb:
            return False
        lo, hi = (ra, rb) if ra < rb else (rb, ra)
        parent[hi - base] = lo
        if hi in self._cached_roots:
            self._forget_roots()
        # what was joined, most often a frame just seen (its first identity), into the cache:
        # the timing decisions a moment later ask for it (a candidate, a rival, the subject)
        roots = self.roots
        if len(roots) < self.CACHED:
            roots[hi] = lo
            self._cached_roots.add(lo)
        return True

    @property
    def slots(self) -> int:
        """Slots of the parents list (frames held and ABSENT ones between them)."""
        return len(self._parent)

    def roots_by_frame(self) -> list[int] | None:
        """Every frame's root (find()), in one list indexed by frame, when the slots start at
        frame 0 (a capture file's; a trimmed live window's do not: None). Pointer jumping in
        C: each slot takes its parent's parent until none changes, a round per doubling of the
        deepest path (a find() per frame took ~0.03 s at 200,000 packets). A slot of a frame
        not held (ABSENT) reads a meaningless root. Nothing is changed."""
        if self._base != 0:
            return None
        parent = self._parent
        while True:
            up = list(map(parent.__getitem__, parent))
            if up == parent:
                return up
            parent = up

    def groups(self) -> dict[int, list[int]]:
        out: dict[int, list[int]] = defaultdict(list)
        for f in list(self.frames()):
            out[self.find(f)].append(f)
        return out

    def keep(self, oldest: int) -> None:
        """Forget frames below `oldest`, keeping the groups of the others."""
        kept = [f for f in self.frames() if f >= oldest]
        roots = {f: self.find(f) for f in kept}
        first: dict[int, int] = {}
        for f in kept:
            first.setdefault(roots[f], f)
        self._parent, self._base, self.size = [], oldest, 0
        self._forget_roots()
        for f in kept:
            self.add(f)
            self._parent[f - oldest] = first[roots[f]]


class Linker:
    """Consumes each observation once, in capture order; keeps bounded indexes (the finders'),
    a union-find of frames (the profiles) and the decisions made."""

    def __init__(self, rules: Iterable[Rule] | None = None, threshold: float = THRESHOLD,
                 wait: float = WAIT, horizon: float = HORIZON):
        self.rules = tuple(RULES if rules is None else rules)
        self.threshold, self.wait, self.horizon = threshold, wait, horizon
        self.profiles = UnionFind()
        # a frame's profile (its root in the union-find), the union-find's own method: every
        # rule asks, a million times a capture
        self.root = self.profiles.find
        self.finders = [rule.finder(rule, self) for rule in self.rules]
        self._index = {id(f): i for i, f in enumerate(self.finders)}
        # observation kind -> the add() of each finder that takes it (built as kinds come)
        self._routes: dict[tuple, tuple[Callable[[Observation], None], ...]] = {}
        self.decided: list[Evidence] = []
        self.now = float("-inf")
        # claims waiting for a decision, (due, order, claim), in a queue per finder: a finder
        # waits a fixed time after the observation (WAIT, a timing window), so its claims fall
        # due in the order made and a queue holds them in order for nothing, where one heap of
        # every claim (100,000 at 200,000 packets) cost ~4 us a push and pop. `_due`, a heap,
        # holds each queue's first, (due, order, finder), and on its own each claim that would
        # fall due before its queue's last (a capture slightly out of order), (due, order,
        # finder, claim): a dozen entries. Decided in (due, order) order, as one heap would.
        self._queues: list[deque[tuple[float, int, object]]] = [deque() for _ in self.finders]
        self._due: list[tuple] = []
        self._order = 0
        self._forget_every = min(horizon / 8, RATE_SPAN)     # s of capture between forgets
        self._forgot_at = float("-inf")
        self.oldest = 0                 # a live window forgot the frames below this

    # -- feeding --------------------------------------------------------------------------------
    def add(self, obs: Observation) -> None:
        time = obs.time
        due = self._due
        if due and due[0][0] < time:
            self.decide_until(time)
        if time > self.now:
            self.now = time
        self.profiles.add(obs.frame)
        key = kind_of(obs)
        route = self._routes.get(key)
        if route is None:
            route = self._routes[key] = self.route(Kind(*key))
        for add in route:
            add(obs)
        if self.now - self._forgot_at > self._forget_every:
            self._forgot_at = self.now
            for finder in self.finders:
                finder.forget(self.now - self.horizon)

    def route(self, kind: Kind) -> tuple[Callable[[Observation], None], ...]:
        """The adder of each finder that takes observations of this kind, in RULES order."""
        return tuple(add for add in (f.adder(kind) for f in self.finders) if add is not None)

    def later(self, finder: Finder, due: float, claim) -> None:
        """Decide `claim` once the capture has gone past `due` (or at the end)."""
        self._order += 1
        index = self._index[id(finder)]
        queue = self._queues[index]
        if not queue:
            queue.append((due, self._order, claim))
            heapq.heappush(self._due, (due, self._order, index))
        elif due < queue[-1][0]:
            heapq.heappush(self._due, (due, self._order, index, claim))
        else:
            queue.append((due, self._order, claim))

    def decide_until(self, time: float) -> None:
        due, queues, finders, record = self._due, self._queues, self.finders, self.record
        # (due, order, ...): orders differ, so nothing past them is ever compared
        while due and due[0][0] < time:
            first = due[0]
            index = first[2]
            if len(first) == 4:                 # a claim on its own
                heapq.heappop(due)
                evidence = finders[index].decide(first[3])
                if evidence is not None:
                    record(evidence)
                continue
            # a queue's first: it, and those after it that fall due before the heap's next, in
            # a row; then the queue's next back into the heap (a decision makes no claim)
            heapq.heappop(due)
            queue, decide = queues[index], finders[index].decide
            while True:
                evidence = decide(queue.popleft()[2])
                if evidence is not None:
                    record(evidence)
                if not queue:
                    break
                after = queue[0]
                if not after[0] < time or due and (
                        due[0][0] < after[0] or due[0][0] == after[0] and due[0][1] < after[1]):
                    heapq.heappush(due, (after[0], after[1], index))
                    break

    def flush(self) -> None:
        """End of the capture: every waiting decision is made now, with what was seen."""
        self.decide_until(float("inf"))

    @property
    def pending(self) -> int:
        return sum(map(len, self._queues)) + sum(len(e) == 4 for e in self._due)

    # -- decisions ------------------------------------------------------------------------------
    def record(self, evidence: Evidence) -> None:
        kept = evidence.frames
        if self.oldest or not kept:     # a live window: what it still holds
            kept = [f for f in kept if f >= self.oldest]
            if not kept:
                return                  # a decision about frames a live window forgot
        self.decided.append(evidence)
        if evidence.confidence >= self.threshold:
            union, first = self.profiles.union, kept[0]
            for f in kept[1:]:
                union(first, f)

    def link(self, frames: Iterable[int]) -> None:
        frames = [f for f in frames if f >= self.oldest]
        for f in frames[1:]:
            self.profiles.union(frames[0], f)

    def evidence(self) -> list[Evidence]:
        out: list[Evidence] = []
        for finder in self.finders:
            out.extend(finder.evidence())
        return out + self.decided

    def keep_frames(self, oldest: int) -> None:
        """A live window forgets frames below `oldest` (profiles, evidence, identity groups)."""
        self.oldest = oldest
        self.profiles.keep(oldest)
        self.decided = [e for e in self.decided if e.frames and e.frames[-1] >= oldest]
        for finder in self.finders:
            finder.keep_frames(oldest)


# ---- posteriors over pairings -------------------------------------------------------------------

def pairing_posterior(rows: int, cols: int, edges: list[list[tuple[int, float]]],
                      row_slack: list[float], col_slack: list[float]) -> list[float]:
    """P(row 0 is paired with column j) for each column j, and (last) P(row 0 is unpaired).

    Sums over every partial pairing of the component (a row takes at most one column, a column
    at most one row: one successor, one predecessor): a pair (i, j) weighs edges' likelihood of
    the step, an unpaired row its look-alike density, an unpaired column the chance that its
    successor is not in view. Rows and columns are few (COMPONENT_CAP), so the sum is exact.
    """
    def free(start: int) -> float:
        states = {start: 1.0}
        for i in range(1, rows):
            nxt: dict[int, float] = defaultdict(float)
            for mask, w in states.items():
                nxt[mask] += w * row_slack[i]
                for j, a in edges[i]:
                    if not mask >> j & 1:
                        nxt[mask | 1 << j] += w * a
            states = nxt
        total = 0.0
        for mask, w in states.items():
            for j in range(cols):
                if not mask >> j & 1:
                    w *= col_slack[j]
            total += w
        return total

    weights = [0.0] * (cols + 1)
    for j, a in edges[0]:
        weights[j] += a * free(1 << j)
    weights[cols] = row_slack[0] * free(0)
    total = sum(weights)
    return [w / total for w in weights] if total > 0 else [0.0] * cols + [1.0]


def entropy_bits(probabilities: Iterable[float]) -> float:
    ps = [p for p in probabilities if p > 0]
    s = sum(ps)
    return -sum(p / s * math.log2(p / s) for p in ps) + 0.0 if s else 0.0


def _fmt(value) -> str:
    if isinstance(value, tuple):
        return " ".join(_fmt(v) for v in value)
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return f"0x{value:08x}" if value > 0xFFFF else str(value)
    return str(value)


def _sender(obs: Observation) -> str | None:
    """Where a counter is seen from: the care-of address, or the home address of a node at home."""
    return obs.care_of or (obs.homes[0] if obs.homes else None)


def _mn_ha_direction(obs: Observation) -> tuple | None:
    if obs.path != "mn-ha" or obs.home_agent is None or obs.towards_ha is None:
        return None
    return (obs.home_agent, bool(obs.towards_ha))


def _direction_words(group: tuple) -> str:
    return f"{'to' if group[1] else 'from'} {group[0]}"


# ---- identities ---------------------------------------------------------------------------------

@dataclass(slots=True)
class _Group:
    """One value's frames: the first FRAME_SAMPLE of them, the last, and how many (state that
    grows with what is distinct, not with the packets that repeat it)."""
    value: object
    sample: list[int]
    last: int
    count: int = 1


class SameValue(Finder):
    """Every observation carrying the value is one node, at once (a value only one node holds:
    RFC 6275 addresses, 64-bit random init cookies)."""

    def __init__(self, rule: Rule, linker: Linker, field: str, label: str):
        """`field`: the Observation field holding the value (or, `homes`, a tuple of them)."""
        super().__init__(rule, linker)
        self.field, self.label = field, label
        self.key = attrgetter(field)
        self.groups: dict[object, _Group] = {}
        # the profiles' union, read once: a packet's identities make two a packet (the linker
        # keeps its union-find for good: UnionFind.keep trims it in place)
        self.union = linker.profiles.union

    def takes(self, kind: Kind) -> bool:
        return bool(getattr(kind, self.field))

    def adder(self, kind):
        # a field of one value that the kind says is there (care-of address, cookie: 200,000
        # packets at 100 % bring 200,000 of them): no tuple, no None to skip
        if not self.takes(kind):
            return None
        return self.add if self.field == "homes" else self._add_one

    def _add_one(self, obs: Observation) -> None:
        value = self.key(obs)
        frame = obs.frame
        group = self.groups.get(value)
        if group is None:
            self.groups[value] = _Group(value, [frame], frame)
        elif group.last != frame:
            group.last = frame
            group.count += 1
            if len(group.sample) < FRAME_SAMPLE:
                group.sample.append(frame)
            self.union(group.sample[0], frame)

    def add(self, obs: Observation) -> None:
        values = self.key(obs)
        for value in values if type(values) is tuple else (values,):
            if value is None:
                continue
            group = self.groups.get(value)
            if group is None:
                self.groups[value] = _Group(value, [obs.frame], obs.frame)
                continue
            if group.last != obs.frame:
                group.last = obs.frame
                group.count += 1
                if len(group.sample) < FRAME_SAMPLE:
                    group.sample.append(obs.frame)
                self.union(group.sample[0], obs.frame)

    def evidence(self) -> Iterator[Evidence]:
        for g in self.groups.values():
            if g.count >= 2:
                yield Evidence(self.rule.name, 1.0, f"{self.label} {_fmt(g.value)}",
                               tuple(g.sample), frame_count=g.count)

    def keep_frames(self, oldest: int) -> None:
        for value in list(self.groups):
            group = self.groups[value]
            if group.last < oldest:
                del self.groups[value]
                continue
            kept = [f for f in group.sample if f >= oldest]
            # the frames past the sample are not kept one by one: the count loses the sample's
            # forgotten frames and stays an upper bound for the others
            group.count -= len(group.sample) - len(kept)
            group.sample = kept or [group.last]
            group.count = max(group.count, len(group.sample))


def same(field: str, label: str):
    return lambda rule, linker: SameValue(rule, linker, field, label)


# ---- successors over stepping values: SPI (6.4), ESP counter (RFC 4303), BU sequence (6.3) ------

@dataclass(eq=False, slots=True)
class _Item:
    """One value run in a group: an SPI, or one sender's run of an ESP counter or BU sequence."""
    group: tuple
    key: object
    first: int                  # value at first sight: what a predecessor's step leads to
    last: int                   # value at last sight: where a successor's step starts
    sender: str | None
    first_time: float
    last_time: float
    first_frame: int
    last_frame: int
    first_seq: int | None = None     # SPI items: the SA's ESP counter at first / last sight
    last_seq: int | None = None
    step: int | None = None          # BU runs: the one step between its values so far
    steps: int = 0
    succeeded: bool = False          # a successor was linked (a chain has one)
    continued: bool = False          # a successor more likely than not, linked or not
    preceded: bool = False           # a predecessor was linked
    birth: bool = False              # had no candidate predecessor at all
    forgotten: bool = False          # dropped from the indexes (older than the horizon)


class StepChains(Finder):
    """The shared machinery of successor rules over values that step forward by a bounded
    amount. Subclasses say what the group, the item, the value and a step's likelihood are."""

    modulus = 1 << 32
    max_step = 255
    band = 4096                 # values each side counted for the look-alike density
    recent: float | None = None  # look-alikes must have been seen this recently (s); None: any
    distinct_senders = True     # a successor comes from another place (else trivially linked)
    unit = "value"

    def __init__(self, rule: Rule, linker: Linker):
        super().__init__(rule, linker)
        self.items: dict[tuple, dict[object, _Item]] = defaultdict(dict)
        # group -> bucket of values -> items (dicts: insertion order keeps results reproducible)
        self.by_last: dict[tuple, dict[int, dict[_Item, None]]] = defaultdict(
            lambda: defaultdict(dict))
        self.by_first: dict[tuple, dict[int, dict[_Item, None]]] = defaultdict(
            lambda: defaultdict(dict))
        self.steps: dict[tuple, Counter] = defaultdict(Counter)   # steps seen within a chain
        self.births: dict[tuple, int] = defaultdict(int)      # new values with no candidate
        self.renewals: dict[tuple, int] = defaultdict(int)    # new values with some
        # group -> the first frame of its newest item: a place that shows a value stepped
        # past its last one came back only if some item began since (_came_back)
        self.newest: dict[tuple, int] = {}
        self._order: deque[tuple[float, _Item]] = deque()      # by last use, for forgetting
        self._shift = max(1, (self.max_step).bit_length())

    # what subclasses define
    def locate(self, obs: Observation) -> tuple[tuple, object, int, str | None] | None:
        """(group, item key, value, sender) of an observation, or None."""
        raise NotImplementedError

    def likelihood(self, p: _Item, z: _Item, delta: int) -> float:
        """P(the step is `delta` | z continues p)."""
        raise NotImplementedError

    def constraint(self, p: _Item, z: _Item) -> str | None:
        """A code for why z cannot continue p beyond the step itself (None: it can); the
        words come from explain()."""
        return None

    def uniform(self) -> float:
        """Density per value of a fresh start with nothing to go by (random allocation,
        random initial numbers)."""
        return 1 / self.modulus

    def fresh_odds(self, group: tuple) -> tuple[float, float, int]:
        """Prior odds that a new value is a fresh start rather than one given open chain's
        next value, from what the capture showed so far: (odds, share of new values that had
        no candidate, open chains). Early in a capture every new value is fresh; in a crowd
        of n chains any one of them is the continuation only 1/n of the time."""
        births, renewals = self.births[group], self.renewals[group]
        fresh = (births + 1) / (births + renewals + 2)
        chains = max(1, births)
        return fresh * chains / (1 - fresh), fresh, chains

    def describe(self, item: _Item) -> str:
        return f"{self.unit} {_fmt(item.first)}"

    def words(self, z: _Item, p: _Item, delta: int) -> str:
        raise NotImplementedError

    # indexing
    def _bucket(self, value: int) -> int:
        return value >> self._shift

    def add(self, obs: Observation) -> None:
        located = self.locate(obs)
        if located is None:
            return
        group, key, value, sender = located
        item = self.items[group].get(key)
        if item is None or (1 < (value - item.last) % self.modulus <= self.max_step
                            and self._came_back(item, value)):
            item = _Item(group, key, value, value, sender, obs.time, obs.time, obs.frame,
                         obs.frame, obs.esp_sequence, obs.esp_sequence)
            self.items[group][key] = item
            self.by_first[group][self._bucket(value)][item] = None
            if obs.frame > self.newest.get(group, -1):
                self.newest[group] = obs.frame
            self.by_last[group][self._bucket(value)][item] = None
            self._order.append((obs.time, item))
            self.linker.later(self, obs.time + self.linker.wait, item)
            return
        last = item.last
        if value != last:
            step = (value - last) % self.modulus
            item.step = step if item.steps == 0 or item.step == step else None
            item.steps += 1
            self.steps[group][step] += 1
            # to the end of its bucket (the newest first when read), most often the same one
            by_last, shift = self.by_last[group], self._shift
            by_last[last >> shift].pop(item, None)
            by_last[value >> shift][item] = None
            item.last = value
        item.last_time, item.last_frame = obs.time, obs.frame
        if obs.esp_sequence is not None:
            item.last_seq = obs.esp_sequence

    def _came_back(self, item: _Item, value: int) -> bool:
        """The place shows a value that another place's run stepped through since it was last
        seen here: the node went away and came back (a stable care-of address, RFC 7217, or an
        SPI kept across moves), so this is a new stay, to be explained like any other."""
        gap = (value - item.last) % self.modulus
        if gap < 2 or gap > self.max_step or self.newest[item.group] <= item.last_frame:
            return False        # (no other place's run began since: the common case)
        near, _ = self._around(self.by_first[item.group], item.last + 1, value - 1)
        return any(n.sender != item.sender and n.first_frame > item.last_frame
                   and 0 < (n.first - item.last) % self.modulus < gap for n in near)

    def forget(self, before: float) -> None:
        while self._order and self._order[0][0] < before:
            _, item = self._order.popleft()
            if item.last_time >= before:
                self._order.append((item.last_time, item))
                continue
            item.forgotten = True
            if self.items[item.group].get(item.key) is item:
                del self.items[item.group][item.key]
            self.by_first[item.group][self._bucket(item.first)].pop(item, None)
            self.by_last[item.group][self._bucket(item.last)].pop(item, None)

    # candidates
    def _around(self, index: dict[int, dict[_Item, None]], lo: int, hi: int
                ) -> tuple[list[_Item], bool]:
        """Items whose indexed value may lie in [lo, hi] (mod modulus; hi - lo < 2^shift), the
        newest first, at most SCAN_CAP of them; True when there were more (crowded)."""
        b0, b1 = self._bucket(lo % self.modulus), self._bucket(hi % self.modulus)
        out: list[_Item] = []
        for b in (b0,) if b0 == b1 else (b0, b1):
            bucket = index.get(b)
            if not bucket:
                continue
            for item in reversed(bucket):
                if len(out) >= SCAN_CAP:
                    return out, True
                out.append(item)
        return out, False

    def _valid(self, p: _Item, z: _Item) -> tuple[int, str | None]:
        """(step, why z cannot continue p: a short code, or None when it can)."""
        delta = (z.first - p.last) % self.modulus
        if not 1 <= delta <= self.max_step:
            return delta, "range"
        if p is z or p.key == z.key:
            return delta, "itself"
        if self.distinct_senders and p.sender == z.sender:
            return delta, "place"
        if p.last_frame >= z.first_frame:
            return delta, "in use"
        return delta, self.constraint(p, z)

    def _why(self, code: str, p: _Item, z: _Item) -> str:
        if code == "in use":
            return (f"{self.describe(p)} still in use at frame {p.last_frame}, after "
                    f"{self.describe(z)} began (frame {z.first_frame})")
        if code == "taken":
            return f"{self.describe(p)} already continues elsewhere"
        return self.explain(p, z)

    def explain(self, p: _Item, z: _Item) -> str:
        """The words for a constraint()'s code."""
        return "not the same chain"

    def preds(self, z: _Item, ruled_out: list[str] | None = None
              ) -> tuple[list[tuple[_Item, float, int]], bool]:
        """Candidate predecessors of z (item, step likelihood, step); True when crowded."""
        out = []
        near, crowded = self._around(self.by_last[z.group], z.first - self.max_step,
                                     z.first - 1)
        for p in near:
            delta, why = self._valid(p, z)
            if why in ("range", "itself", "place"):
                continue
            if why is None and p.succeeded:
                why = "taken"
            if why is not None:
                if ruled_out is not None and len(ruled_out) < LISTED:
                    ruled_out.append(self._why(why, p, z))
                continue
            a = self.likelihood(p, z, delta)
            if a > 0:
                out.append((p, a, delta))
        return out, crowded

    def _near_count(self, p: _Item) -> int:
        """How many values the index holds where p's successors would be (an upper bound on
        its candidate successors, without reading them)."""
        lo, hi = self._bucket((p.last + 1) % self.modulus), \
            self._bucket((p.last + self.max_step) % self.modulus)
        index = self.by_first[p.group]
        return sum(len(index.get(b, ())) for b in ((lo,) if lo == hi else (lo, hi)))

    def succs(self, p: _Item) -> tuple[list[tuple[_Item, float, int]], bool]:
        """Candidate successors of p; True when crowded."""
        out = []
        near, crowded = self._around(self.by_first[p.group], p.last + 1,
                                     p.last + self.max_step)
        for z in near:
            if z.preceded:
                continue
            delta, why = self._valid(p, z)
            if why is None:
                a = self.likelihood(p, z, delta)
                if a > 0:
                    out.append((z, a, delta))
        return out, crowded

    def look_alike_density(self, z: _Item, component: list[_Item]) -> tuple[float, int]:
        """Density per value, around z, of the values other chains stood at when z appeared:
        values seen before z (within +-band, recently) that nothing more likely than not
        continued, outside the component and its profiles. A node's own later values are no
        look-alikes of it, nor are its earlier ones once continued."""
        mine = {id(i) for i in component}
        roots = {self.linker.root(f) for i in component for f in (i.first_frame, i.last_frame)}
        count = 0
        since = z.first_time - self.recent if self.recent is not None else float("-inf")
        index = self.by_last[z.group]
        width = 1 << self._shift
        buckets = dict.fromkeys(self._bucket((z.first - self.band + k * width) % self.modulus)
                                for k in range(2 * self.band // width + 2))
        for b in buckets:
            for item in index.get(b, ()):
                if count >= BAND_CAP:
                    break
                if id(item) in mine or item.first_frame >= z.first_frame \
                        or item.last_time < since:
                    continue
                if (item.last - z.first + self.band) % self.modulus > 2 * self.band:
                    continue
                if item.continued or self.linker.root(item.first_frame) in roots:
                    continue
                count += 1
        return max(self.uniform(), count / (2 * self.band)), count

    def _goes_on_in_place(self, z: _Item) -> bool:
        """z continues a run at its own place (an SA renewed where the node is): no fresh
        start, and nothing to link (the place links it)."""
        near, _ = self._around(self.by_last[z.group], z.first - self.max_step, z.first - 1)
        return any(p.sender == z.sender and self._valid(p, z)[1] == "place" for p in near)

    # the decision
    def decide(self, z: _Item) -> Evidence | None:
        if z.forgotten or z.preceded:
            return None
        # a step to a candidate already known to be the same node (an identity linked them)
        # is this capture's own example of how these values step
        for p, _, d in self.preds(z)[0]:
            if self.linker.root(p.last_frame) == self.linker.root(z.first_frame):
                self.steps[z.group][d] += 1
        ruled_out: list[str] = []
        preds, truncated = self.preds(z, ruled_out)
        crowded = truncated
        if not preds:
            if not truncated and not self._goes_on_in_place(z):
                z.birth = True
                self.births[z.group] += 1
            return None
        odds, fresh, chains = self.fresh_odds(z.group)
        self.renewals[z.group] += 1
        # the component: z, its candidate predecessors, their other candidate successors, the
        # predecessors of those, ... until nothing new comes in (or too many: crowded)
        rows: list[_Item] = [z]
        cols: list[_Item] = []
        col_of: dict[int, int] = {}
        row_of: dict[int, int] = {id(z): 0}
        edges: list[list[tuple[int, float]]] = [[]]
        deltas: dict[tuple[int, int], int] = {}
        todo_rows: list[_Item] = []
        todo_cols: list[_Item] = []
        for p, a, d in preds:
            col_of[id(p)] = len(cols)
            cols.append(p)
            todo_cols.append(p)
            edges[0].append((col_of[id(p)], a))
            deltas[(0, col_of[id(p)])] = d
        crowded = crowded or len(cols) > COMPONENT_CAP
        while (todo_rows or todo_cols) and not crowded:
            while todo_rows and not crowded:
                r = todo_rows.pop()
                its_preds, crowded = self.preds(r)
                i = row_of[id(r)]
                for p, a, d in its_preds:
                    if id(p) not in col_of:
                        col_of[id(p)] = len(cols)
                        cols.append(p)
                        todo_cols.append(p)
                    edges[i].append((col_of[id(p)], a))
                    deltas[(i, col_of[id(p)])] = d
                crowded = crowded or len(cols) > COMPONENT_CAP
            while todo_cols and not crowded:
                p = todo_cols.pop()
                its_succs, crowded = self.succs(p)
                for r, _, _ in its_succs:
                    if id(r) not in row_of:
                        row_of[id(r)] = len(rows)
                        rows.append(r)
                        edges.append([])
                        todo_rows.append(r)
                crowded = crowded or len(rows) > COMPONENT_CAP
        if crowded:
            # too many to pair up: z's share among its candidates times each candidate's share
            # among its successors; an index too full to read to the end hides at least one
            # more candidate as likely as the best (so a crowded decision never links alone)
            density, nearby = self.uniform(), 0
            g = density * odds
            best_a = max(a for _, a in edges[0])
            total = sum(a for _, a in edges[0]) + g + (best_a if truncated else 0.0)
            posterior = [0.0] * len(cols)
            for rank, (j, a) in enumerate(sorted(edges[0], key=lambda e: -e[1])):
                if rank < LISTED or a / total >= self.linker.threshold:
                    # the candidates listed (and any that could link): their share among
                    # their own successors, read from the index
                    succs, more = self.succs(cols[j])
                    share = a / (sum(b for _, b, _ in succs) + (best_a if more else 0.0) or a)
                else:
                    # the rest: as if every value near its successors' place competed (fewer
                    # do), which can only understate it
                    share = 1 / max(1, self._near_count(cols[j]))
                posterior[j] += a / total * min(1.0, share)
            method = (f"crowded: more than {COMPONENT_CAP} new or earlier {self.unit}s in the "
                      f"window (or over {SCAN_CAP} near it), so z's share among its "
                      f"{len(edges[0])} candidates{' and at least one unread' if truncated else ''}"
                      f" times each candidate's share among its successors")
        else:
            density, nearby = self.look_alike_density(z, rows + cols)
            g = density * odds
            # a column whose successor is not in view: as likely as not (nodes stop moving)
            posterior = pairing_posterior(len(rows), len(cols), edges, [g] * len(rows),
                                          [1.0] * len(cols))[:-1]
            method = (f"exact sum over every pairing of {len(rows)} new and {len(cols)} "
                      f"earlier {self.unit}s in the window")
        # one node may hold several candidates (e.g. two SAs): sum per profile
        by_root: dict[int, list[int]] = defaultdict(list)
        for j, _ in edges[0]:
            by_root[self.linker.root(cols[j].last_frame)].append(j)
        per_profile = sorted(((sum(posterior[j] for j in js), js) for js in by_root.values()),
                             key=lambda x: -x[0])
        best_p, best_js = per_profile[0]
        best = max(best_js, key=lambda j: posterior[j])
        p = cols[best]
        candidates = []
        for prob, js in per_profile[:LISTED]:
            j = max(js, key=lambda j: posterior[j])
            candidates.append(Candidate((cols[j].last_frame,), prob,
                                        self.words(z, cols[j], deltas[(0, j)]), j == best))
        links = best_p >= self.linker.threshold
        p.continued = p.continued or best_p >= 0.5
        if links:
            p.succeeded = True
            z.preceded = True
        computation = (f"{method}; {len(preds)} candidate(s) before, "
                       f"{len(self.succs(p)[0])} candidate successor(s) of the best; step "
                       f"likelihood {self.likelihood(p, z, deltas[(0, best)]):.3g}; a fresh "
                       f"start lands on a {self.unit} with density {density:.3g} ({nearby} "
                       f"other chains within +-{self.band}), at prior odds {odds:.3g} against "
                       f"one given chain ({fresh:.0%} of new values so far fresh, {chains} "
                       f"chains)")
        return Evidence(self.rule.name, best_p, self.words(z, p, deltas[(0, best)]),
                        tuple(sorted({z.first_frame, p.last_frame})),
                        ambiguous=len(per_profile) > 1 or best_p < self.linker.threshold,
                        subject=(z.first_frame,), candidates=tuple(candidates),
                        ruled_out=tuple(dict.fromkeys(ruled_out))[:LISTED],
                        computation=computation)


class SpiIncrement(StepChains):
    """draft 6.4: the renewed SPI is the old one plus First(8, HMAC_SHA1(Kph, SPI)), 1..255;
    both ends move to it with the same keys (PROFILE.md), so the SA's ESP counter carries on
    (RFC 4303 3.3.3), and the old SPI is not used again once the new one is. Every SA of a
    node is renewed at each Home BU exchange, so one that carried nothing in between (a tunnel
    SA while 5.3.1 registers a pseudo home address before each session) shows two steps at
    once: a step of 2..510 is a two-renewal continuation, at SKIPPED odds."""

    unit = "SPI"
    distinct_senders = False
    max_step = 2 * SPI_STEP

    def takes(self, kind):
        return kind.spi and _mn_ha_direction(kind) is not None

    def locate(self, obs):
        group = _mn_ha_direction(obs)
        if group is None or obs.spi is None:
            return None
        return group, obs.spi, obs.spi, _sender(obs)

    def likelihood(self, p, z, delta):
        one = (2 if delta == 1 else 1) / 256 if delta <= SPI_STEP else 0.0   # 0 becomes 1
        # two renewals: the number of ways two steps of 1..255 sum to delta
        two = (delta - 1 if delta <= SPI_STEP + 1 else 2 * SPI_STEP + 1 - delta) / SPI_STEP ** 2
        return (1 - SKIPPED) * one + SKIPPED * max(0.0, two)

    def constraint(self, p, z):
        if p.last_seq is None or z.first_seq is None:
            return None
        return None if 1 <= z.first_seq - p.last_seq <= ESP_GAP else "counter"

    def explain(self, p, z):
        return (f"SPI 0x{p.first:08x}'s ESP counter ended at {p.last_seq}, "
                f"0x{z.first:08x}'s starts at {z.first_seq}: not the same SA")

    def describe(self, item):
        return f"SPI 0x{item.first:08x}"

    def words(self, z, p, delta):
        two = " in two renewals" if delta > SPI_STEP else ""
        return (f"SPI 0x{z.first:08x} is 0x{p.first:08x} + {delta}{two} "
                f"({_direction_words(z.group)}; ESP counter {p.last_seq} -> {z.first_seq})")


class EspContinues(StepChains):
    """RFC 4303 3.3.3: the sender's ESP counter counts on; when it carries on from one care-of
    address to the next (draft 6.1: "the IPsec sequence number"), the two are one node. SAs
    created together count side by side, so a continuation means little when many counters
    sit at the same value: the look-alikes are the other counters that ended nearby."""

    unit = "ESP sequence number"
    max_step = ESP_GAP
    band = 64
    recent = WAIT

    def takes(self, kind):
        return kind.esp_sequence and _mn_ha_direction(kind) is not None

    def locate(self, obs):
        group = _mn_ha_direction(obs)
        if group is None or obs.esp_sequence is None:
            return None
        sender = _sender(obs)
        return group, (sender, obs.spi), obs.esp_sequence, sender

    def likelihood(self, p, z, delta):
        return 2.0 ** -delta / (1 - 2.0 ** -ESP_GAP)     # a lost packet or two, rarely more

    def uniform(self):
        return 1 / 4096                  # counters start small: a fresh one is near 1

    def describe(self, item):
        return f"the counter of SPI 0x{item.key[1]:08x} at {item.key[0]}"

    def words(self, z, p, delta):
        return (f"ESP sequence {p.last} from {p.sender} continues as {z.first} from "
                f"{z.sender} ({_direction_words(z.group)})")


class BuContinues(StepChains):
    """RFC 6275 9.5.1 only asks BU sequence numbers to grow (implementations add 1); draft 6.3
    makes the increment First(8, HMAC), 1..255. A BU from a new care-of address whose number
    continues another place's, to the same correspondent, is its successor, weighed against
    the other places whose numbers sit nearby."""

    unit = "BU sequence number"
    modulus = 1 << 16
    max_step = BU_STEP
    band = 2048

    def takes(self, kind):
        return kind.mh_type == _BU and kind.mh_sequence

    def locate(self, obs):
        if obs.mh_type != _BU or obs.mh_sequence is None:
            return None
        sender = _sender(obs)
        return (obs.dst, obs.home_flag), sender, obs.mh_sequence, sender

    def likelihood(self, p, z, delta):
        # the steps this capture showed (a place's BUs in a row, and steps between places
        # already known to be one node), over draft 6.3's even 1..255 as the prior
        seen = self.steps[p.group]
        return (seen.get(delta, 0) + STEP_PRIOR / BU_STEP) / (sum(seen.values()) + STEP_PRIOR)

    def words(self, z, p, delta):
        fixed = " (the same fixed step as before)" if p.step == delta else ""
        return (f"BU sequence {p.last} from {p.sender} continues as {z.first} from {z.sender} "
                f"(to {z.group[0]}, step {delta}{fixed})")


# ---- identities that look-alikes could share ----------------------------------------------

@dataclass(eq=False, slots=True)
class _Run:
    """One sender's run of packets under one value (an SPI, an interface ID)."""
    sender: str | None
    first_time: float
    last_time: float
    first_frame: int
    last_frame: int


class SameSpi(Finder):
    """draft 6.1, 6.4: an SPI names one SA at the receiver. When it shows up from a new place
    after the old place stopped using it (no renewal: RFC 3776; the renewed SPI used before and
    after a move: draft 6.4 + 5.5), the two places are one node, unless SPIs are so dense
    there that another SA's chain could have reached the same value."""

    def __init__(self, rule, linker):
        super().__init__(rule, linker)
        self.runs: dict[tuple, list[_Run]] = defaultdict(list)
        # (group, spi >> 8) -> {spi: last seen}: the SPIs near one, found in three buckets
        self.near: dict[tuple, dict[int, float]] = defaultdict(dict)
        # (time, key): one entry per SPI, due when it may be unused for longer than the
        # horizon (a deque with an entry per run grew with every move back and forth)
        self._order: list[tuple[float, tuple]] = []

    def takes(self, kind):
        return kind.spi and _mn_ha_direction(kind) is not None

    def add(self, obs):
        group = _mn_ha_direction(obs)
        if group is None or obs.spi is None:
            return
        key = (*group, obs.spi)
        self.near[(group, obs.spi >> 8)][obs.spi] = obs.time
        runs = self.runs[key]
        sender = _sender(obs)
        if runs and runs[-1].sender == sender:
            runs[-1].last_time, runs[-1].last_frame = obs.time, obs.frame
            return
        run = _Run(sender, obs.time, obs.time, obs.frame, obs.frame)
        if not runs:
            heapq.heappush(self._order, (obs.time, key))
        runs.append(run)
        if len(runs) >= 2:
            self.linker.later(self, obs.time + self.linker.wait, (key, run))

    def decide(self, claim):
        key, run = claim
        runs = self.runs.get(key, [])
        if run not in runs:
            return None
        i = runs.index(run)
        before = [r for r in runs[:i] if r.sender != run.sender]
        prev = next((r for r in reversed(before) if r.last_frame < run.first_frame), None)
        ruled_out = [f"{r.sender} still used SPI 0x{key[2]:08x} at frame {r.last_frame}"
                     for r in before if r.last_frame >= run.first_frame][:LISTED]
        if prev is None:
            return None
        root = self.linker.root
        # other places that took the SPI up after prev stopped: competing successors
        rivals = {root(r.first_frame) for r in runs if r.first_frame > prev.last_frame
                  and r is not run and r.sender != prev.sender} - {root(run.first_frame)}
        # SPIs in use since, up to 255 below this one: other SAs' chains that could have
        # stepped onto it (6.4 steps go up; this SA's own renewals lie above it)
        group, spi = key[:2], key[2]
        near = sum(1 for b in ((spi >> 8) - 1, spi >> 8)
                   for v, t in self.near.get((group, b), {}).items()
                   if 0 < spi - v <= SPI_STEP and t >= prev.last_time)
        mu = near / SPI_STEP
        confidence = 1 / (1 + mu) / (1 + len(rivals))
        detail = (f"SPI 0x{spi:08x} from {prev.sender} (to frame {prev.last_frame}) and from "
                  f"{run.sender} (from frame {run.first_frame}) ({_direction_words(group)})")
        cands = [Candidate((prev.last_frame,), confidence, f"SPI 0x{spi:08x} at {prev.sender}",
                           True)]
        return Evidence(self.rule.name, confidence, detail,
                        tuple(sorted({prev.last_frame, run.first_frame})),
                        ambiguous=bool(rivals) or confidence < self.linker.threshold,
                        subject=(run.first_frame,), candidates=tuple(cands),
                        ruled_out=tuple(ruled_out),
                        computation=(f"{near} other SPI(s) up to {SPI_STEP} below seen since: "
                                     f"look-alike chance {mu:.3g}; {len(rivals)} other "
                                     f"place(s) took the SPI up after {prev.sender}"))

    def forget(self, before):
        while self._order and self._order[0][0] < before:
            _, key = heapq.heappop(self._order)
            runs = self.runs.get(key)
            if runs and runs[-1].last_time < before:
                del self.runs[key]
                bucket = self.near.get((key[:2], key[2] >> 8))
                if bucket is not None:
                    bucket.pop(key[2], None)
            elif runs:
                heapq.heappush(self._order, (runs[-1].last_time, key))

    def keep_frames(self, oldest):
        for key in list(self.runs):
            runs = [r for r in self.runs[key] if r.last_frame >= oldest]
            if runs:
                self.runs[key] = runs
            else:
                del self.runs[key]


class SameInterfaceId(Finder):
    """RFC 4291 2.5.1 / draft 6.2.1: an interface ID kept under a new prefix (EUI-64, or a
    care-of address formed with the home address's IID) links the addresses; two care-of
    addresses with one IID in use at the same time are two nodes (the IID is not one node's)."""

    def __init__(self, rule, linker):
        super().__init__(rule, linker)
        self.by_iid: dict[int, dict[str, _Run]] = defaultdict(dict)
        self.prefixes: dict[int, set[str]] = defaultdict(set)
        self.iid_of: dict[str, int | None] = {}       # each address parsed once
        self.care_ofs: set[str] = set()              # of the addresses in by_iid
        self.homes: set[str] = set()
        self.infrastructure: set[str] = set()        # home agents, correspondents: a few
        self._order: deque[tuple[float, int]] = deque()
        # address -> its run, once the address is in care_ofs (homes): what a packet from a
        # known place updates with one look-up, not the IID's, its runs' and the set's
        self._as_care_of: dict[str, _Run] = {}
        self._as_home: dict[str, _Run] = {}

    def takes(self, kind):
        return kind.home_agent or kind.correspondent or kind.care_of or kind.homes

    def add(self, obs):
        infrastructure = self.infrastructure
        a = obs.home_agent
        if a:
            infrastructure.add(a)
        a = obs.correspondent
        if a:
            infrastructure.add(a)
        care_of, homes = obs.care_of, obs.homes
        # obs.identities, without the tuple when there is no care-of address
        for address in (care_of, *homes) if care_of else homes:
            if not address or address in infrastructure:
                continue
            run = (self._as_care_of if address == care_of else self._as_home).get(address)
            if run is not None:
                run.last_time, run.last_frame = obs.time, obs.frame
            else:
                self._add_address(obs, address)

    def _add_address(self, obs: Observation, address: str) -> None:
        """An address not yet known in this role: its IID's runs, a new one when new."""
        iid = self.iid_of.get(address, -1)
        if iid == -1:
            if len(self.iid_of) > 1 << 17:
                self.iid_of.clear()              # a cache: bounded, parsed again
            iid = self.iid_of[address] = interface_id(address)
        if iid is None or iid <= 1:
            return
        if address == obs.care_of:
            self.care_ofs.add(address)
            role = self._as_care_of
        else:
            self.homes.add(address)
            role = self._as_home
        runs = self.by_iid[iid]
        run = runs.get(address)
        if run is not None:
            role[address] = run
            run.last_time, run.last_frame = obs.time, obs.frame
            return
        run = runs[address] = _Run(address, obs.time, obs.time, obs.frame, obs.frame)
        role[address] = run
        self._order.append((obs.time, iid))
        prefix = prefix64(address)
        fresh = prefix not in self.prefixes[iid]
        self.prefixes[iid].add(prefix)
        if fresh and len(self.prefixes[iid]) >= 2:
            self.linker.later(self, obs.time + self.linker.wait, (iid, address))

    def decide(self, claim):
        iid, address = claim
        runs = self.by_iid.get(iid, {})
        new = runs.get(address)
        if new is None:
            return None
        others = [r for a, r in runs.items() if a != address and prefix64(a) != prefix64(address)]
        if not others:
            return None
        coas = [r for r in runs.values() if r.sender in self.care_ofs
                and r.sender not in self.homes]
        # one node has one care-of address at a time: count the ones in use together
        together = 1
        for i, a in enumerate(coas):
            overlap = sum(1 for b in coas[i + 1:]
                          if min(a.last_time, b.last_time) - max(a.first_time, b.first_time)
                          > IID_OVERLAP)
            together = max(together, 1 + overlap)
        confidence = 1 / together
        first = min(others, key=lambda r: r.first_frame)
        detail = (f"interface ID {iid:016x} under prefixes of "
                  + ", ".join(sorted([*(r.sender for r in others), address])[:LISTED]))
        return Evidence(self.rule.name, confidence, detail,
                        tuple(sorted({first.first_frame, new.first_frame})),
                        ambiguous=together > 1, subject=(new.first_frame,),
                        candidates=(Candidate((first.first_frame,), confidence,
                                              f"{first.sender}", True),),
                        computation=(f"{len(coas)} care-of address(es) with this IID, at most "
                                     f"{together} in use together (> {IID_OVERLAP} s)"))

    def forget(self, before):
        while self._order and self._order[0][0] < before:
            _, iid = self._order.popleft()
            runs = self.by_iid.get(iid)
            if runs is None:
                continue
            if all(r.last_time < before for r in runs.values()):
                for address in runs:
                    self.iid_of.pop(address, None)
                    self.care_ofs.discard(address)
                    self.homes.discard(address)
                    self._as_care_of.pop(address, None)
                    self._as_home.pop(address, None)
                del self.by_iid[iid]
                self.prefixes.pop(iid, None)
            else:
                self._order.append((max(r.last_time for r in runs.values()), iid))


class _NonceWords(Words):
    """A nonce index decision's words: the (correspondent, kind, index) key, the share, the
    receivers listed (the first chosen), how many received and echoed it."""

    __slots__ = ("key", "share", "listed", "k", "m")

    def __init__(self, key: tuple, share: float, listed: tuple[int, ...], k: int, m: int):
        self.key, self.share, self.listed, self.k, self.m = key, share, listed, k, m

    def detail(self) -> str:
        cn, kind, index = self.key
        return f"{kind} nonce index {index} of correspondent {cn}"

    def candidates(self) -> tuple[Candidate, ...]:
        cn, kind, index = self.key
        what = f"{kind} test message of {cn} with index {index}"
        return tuple([Candidate((f,), self.share, what, i == 0)
                      for i, f in enumerate(self.listed)])

    def computation(self) -> str:
        return f"index handed to {self.k} profile(s), echoed by {self.m} place(s)"


class NonceIndices(Finder):
    """RFC 6275 5.2.5: a correspondent's nonce index may be handed to every node that asks in the
    same period, so the indices a BU echoes tie it to the HoT/CoT that gave them only as surely
    as that index went to one node (1/k for k receivers), and as the BU is the one that echoed
    it (1/m for m senders)."""

    def __init__(self, rule, linker):
        super().__init__(rule, linker)
        # (correspondent, kind, index) -> tests (HoT/CoT) and BUs, one entry per place
        # (frame first seen there, time last seen): observations of one place carry the same
        # address, so they are one profile already (same-care-of/home-address); one entry each
        # keeps a decision's cost to the places, not the packets, that used the index
        self.tests: dict[tuple, dict[tuple, list]] = defaultdict(dict)
        self.bus: dict[tuple, dict[tuple, list]] = defaultdict(dict)
        # (time, key), due when the key's least recently used place may be older than the
        # horizon: an entry per new place, not per packet (one per packet grew for an hour)
        self._order: list[tuple[float, tuple]] = []

    def takes(self, kind):
        return kind.mh_type in _NONCE_CARRIERS and kind.correspondent \
            and (kind.home_nonce_index or kind.care_of_nonce_index)

    def add(self, obs):
        if obs.mh_type not in _NONCE_CARRIERS or obs.correspondent is None:
            return
        place = obs.identities or (obs.frame,)          # no address: a place of its own
        bu = obs.mh_type == _BU
        table = self.bus if bu else self.tests
        for kind, index in (("home", obs.home_nonce_index), ("care-of", obs.care_of_nonce_index)):
            if index is None:
                continue
            key = (obs.correspondent, kind, index)
            entry = table[key].get(place)
            if entry is None:
                table[key][place] = [obs.frame, obs.time]
                heapq.heappush(self._order, (obs.time, key))
            else:
                entry[1] = obs.time
            if bu:
                self.linker.later(self, obs.time + self.linker.wait, (key, obs.frame, place))

    def decide(self, claim):
        key, frame, place = claim
        tests = self.tests.get(key)
        if not tests:
            return None
        bus = self.bus.get(key, {})
        root = self.linker.root
        receivers: dict[int, int] = {}
        for f, _ in tests.values():
            receivers.setdefault(root(f), f)
        senders = {root(f) for p, (f, _) in bus.items() if p != place}
        senders.discard(root(frame))
        k, m = len(receivers), 1 + len(senders)
        share = 1 / (k * m)
        # the first LISTED receivers listed (a crowd's index may go to hundreds)
        listed = tuple(islice(receivers.values(), LISTED))
        target = listed[0]
        return Evidence.deferred(self.rule.name, share,
                                 (frame, target) if frame < target else
                                 (target, frame) if target < frame else (frame,),
                                 _NonceWords(key, share, listed, k, m), ambiguous=k * m > 1,
                                 subject=(frame,))

    def forget(self, before):
        # a place goes at the first call with `before` past its last use: the key's entry is
        # never later than its least recently used place
        while self._order and self._order[0][0] < before:
            _, key = heapq.heappop(self._order)
            oldest = float("inf")
            for table in (self.tests, self.bus):
                places = table.get(key)
                if places:
                    for place in [p for p, (_, t) in places.items() if t < before]:
                        del places[place]
                    if not places:
                        del table[key]
                    else:
                        oldest = min(oldest, min(t for _, t in places.values()))
            if oldest < float("inf"):
                heapq.heappush(self._order, (oldest, key))


# ---- timing ------------------------------------------------------------------------------------

class _Times:
    """Observations of one kind in capture (time) order; windows found by bisection, the
    oldest dropped as they age."""

    def __init__(self):
        self.items: list[Observation] = []
        self.times: list[float] = []
        self.start = 0

    def add(self, obs: Observation) -> None:
        if self.times and obs.time < self.times[-1]:      # a capture slightly out of order
            i = bisect.bisect_right(self.times, obs.time, self.start)
            self.items.insert(i, obs)
            self.times.insert(i, obs.time)
            return
        self.items.append(obs)
        self.times.append(obs.time)

    def _range(self, t0: float, t1: float) -> tuple[int, int]:
        return (bisect.bisect_left(self.times, t0, self.start),
                bisect.bisect_right(self.times, t1, self.start))

    def between(self, t0: float, t1: float) -> list[Observation]:
        i, j = self._range(t0, t1)
        return self.items[i:j]

    def count(self, t0: float, t1: float) -> int:
        i, j = self._range(t0, t1)
        return j - i

    def forget(self, before: float) -> None:
        self.start = bisect.bisect_left(self.times, before, self.start)
        if self.start > 1024 and self.start * 2 > len(self.times):
            del self.items[:self.start], self.times[:self.start]
            self.start = 0

    def empty(self) -> bool:
        return self.start >= len(self.times)


def _tunnel_direction(o: Observation) -> bool | None:
    """An MN-HA tunnel packet's direction (True: toward the home agent), None for others."""
    if o.care_of and o.path == "mn-ha" and o.towards_ha is not None:
        return bool(o.towards_ha)
    return None


class _TimingWords(Words):
    """A timing decision's words: `describe(*facts)`, the window's numbers and the candidates
    ranked (posterior, frame, care-of address, time; the first chosen).

    The numbers and the candidates in one flat tuple (`values`: the NUMBERS, then four values
    a candidate): a decision's words live as long as the report, and every container kept
    counts towards the next collection of the young generation (50,000 decisions at 200,000
    packets, 100 %: the collections of the attacker's pass came from what its decisions kept)."""

    __slots__ = ("describe", "facts", "values")
    NUMBERS = 7         # k, window, rivals, subject's name, around, mu, slack

    def __init__(self, describe: Callable[..., str], facts: tuple, values: tuple):
        self.describe, self.facts, self.values = describe, facts, values

    def detail(self) -> str:
        return self.describe(*self.facts)

    def candidates(self) -> tuple[Candidate, ...]:
        v = self.values
        return tuple([Candidate((v[i + 1],), v[i], f"{v[i + 2]} at {v[i + 3]:.3f} s",
                                i == self.NUMBERS)
                      for i in range(self.NUMBERS, len(v), 4)])

    def computation(self) -> str:
        k, window, rivals, name, around, mu, slack = self.values[:self.NUMBERS]
        return (f"{k} candidate place(s) in the {window:.3f} s window, {rivals} other "
                f"{name or 'packet'}(s) could claim the best; {around} such packets within "
                f"{RATE_SPAN:.0f} s around (coincidence {mu:.3g}), partner out of view "
                f"{MISSING}: slack {slack:.3g}")


class Timing(Finder):
    """draft 6.1 ("the timing of HoTI messages", "communication patterns"): a packet in clear on
    HA-CN goes with the packet of one node that carried or answered it, close in time. Each
    candidate in the window is as likely a priori (1/k); a candidate that r other such packets
    could claim as well is shared (1/(1 + r): one partner each); and the real partner may be out
    of view (MISSING), when a lone candidate is a coincidence as often as the window's business,
    measured around it, brings one."""

    kinds: tuple[str, ...] = ()
    # kept long enough to measure how busy a window is (RATE_SPAN each side) and to decide: a
    # claim still waiting is due after the newest packet, so its subject is at most
    # RR_WINDOW + FORWARD_WINDOW older and the oldest time read RATE_SPAN + RR_WINDOW before
    # it; 2 * RATE_SPAN leaves room. Not WAIT more (these claims do not wait for it): at the
    # soak's 2,000 packets/s the 50 s kept held ~100,000 observations, 22 MB, in each live
    # analyzer (issue 12)
    keep = 2 * RATE_SPAN

    def __init__(self, rule, linker):
        super().__init__(rule, linker)
        self.index: dict[object, _Times] = defaultdict(_Times)
        self.subjects: dict[object, _Times] = defaultdict(_Times)
        self._windows: dict[object, tuple] = {}     # subject key -> its windows()
        self._fits = None if type(self).fits is Timing.fits else self.fits   # None: all fit

    def takes(self, kind):
        return self.is_subject(kind) or self.is_partner(kind)

    def adder(self, kind):
        # a kind is a subject, a partner or both (or neither) for every packet of it
        subject, partner = self.is_subject(kind), self.is_partner(kind)
        if subject and partner:
            return self.add
        return self._add_partner if partner else self._add_subject if subject else None

    def _add_partner(self, obs: Observation) -> None:
        key = self.partner_key(obs)
        if key is not None:
            self.index[key].add(obs)

    def _add_subject(self, obs: Observation) -> None:
        skey = self.subject(obs)
        if skey is not None:
            self.subjects[skey].add(obs)
            self.linker.later(self, obs.time + RR_WINDOW + FORWARD_WINDOW, (obs, skey))

    def is_subject(self, kind: Kind) -> bool:
        """Observations of this kind may be subjects (subject() not None)."""
        return False

    def is_partner(self, kind: Kind) -> bool:
        """Observations of this kind may be partners (partner_key() not None)."""
        return False

    def subject(self, obs: Observation) -> object | None:
        """The key of the subjects' own index (competitors), or None if obs is no subject."""
        return None

    def windows(self, key) -> tuple[tuple[str, object, float, float], ...]:
        """Where the partners of a subject with this key (subject()) lie: (kind, partner index
        key, from, to), in seconds from the subject's time. A subject's key says it all, so a
        decision reads them from `_windows`, made once per key."""
        raise NotImplementedError

    def partner_key(self, obs: Observation) -> object | None:
        return None

    def fits(self, subject: Observation, partner: Observation) -> bool:
        return True

    def facts(self, obs: Observation, kind: str, chosen: Observation) -> tuple:
        """The values `describe` writes a decision's detail from (taken at the decision: no
        Observation is kept)."""
        raise NotImplementedError

    @staticmethod
    def describe(*facts) -> str:
        raise NotImplementedError

    def add(self, obs):
        key = self.partner_key(obs)
        if key is not None:
            self.index[key].add(obs)
        skey = self.subject(obs)
        if skey is not None:
            self.subjects[skey].add(obs)
            self.linker.later(self, obs.time + RR_WINDOW + FORWARD_WINDOW, (obs, skey))

    def decide(self, claim):
        # each frame's profile through the union-find's cache: in a crowd every candidate's
        # window holds the same busy subjects (50 nodes at 2,000 packets/s: ~6,000 lookups a
        # decision, the live attacker's whole time), and the next decisions' windows hold
        # most of them again; a link recorded below that merges profiles empties it
        obs, skey = claim
        linker = self.linker
        profiles = linker.profiles
        roots, cached = profiles.roots, profiles.cached
        fits = self._fits
        subjects = self.subjects.get(skey)
        if subjects is not None:
            rival_times, rival_start, rival_items = \
                subjects.times, subjects.start, subjects.items
        windows = self._windows.get(skey)
        if windows is None:
            windows = self._windows[skey] = self.windows(skey)
        now = linker.now
        t = obs.time
        left, right = bisect.bisect_left, bisect.bisect_right
        for kind, key, lo, hi in windows:
            index = self.index.get(key)
            if index is None:
                continue
            # t + lo is t - RR_WINDOW (x - y is x + -y in IEEE 754), t + 0.0 is t
            t0, t1 = t + lo, t + hi
            times, start = index.times, index.start
            i = left(times, t0, start)
            j = right(times, t1, start)
            if i == j:
                continue
            cands = index.items[i:j]
            if fits is not None:
                cands = [o for o in cands if fits(obs, o)]
                if not cands:
                    continue
            nearest: dict[int, Observation] = {}
            for o in cands:
                r = roots.get(o.frame)
                if r is None:
                    r = cached(o.frame)
                near = nearest.get(r)
                if near is None or abs(o.time - t) < abs(near.time - t):
                    nearest[r] = o
            k = len(nearest)
            # how busy: partner-kind packets per second around the window, outside it
            span0, span1 = t0 - RATE_SPAN, t1 + RATE_SPAN
            if now < span1:
                span1 = now
            around = right(times, span1, start) - left(times, span0, start) - len(cands)
            outside = (span1 - span0) - (t1 - t0)
            rate = around / (outside if outside > 1e-9 else 1e-9)
            mu = rate * (t1 - t0)
            # a lone wrong candidate needs the partner out of view and a look-alike in view
            slack = MISSING * mu + MISSING / 50
            # the other subjects a partner could belong to: those whose window holds it (the
            # subjects' own index read in place, each one's profile through the cache)
            before, after = t1 - t, t - t0
            own = roots.get(obs.frame)      # again: the window before may have linked it
            if own is None:
                own = cached(obs.frame)
            ranked = []
            for o in nearest.values():
                rivals = 0
                if subjects is not None:
                    i = left(rival_times, o.time - before, rival_start)
                    j = right(rival_times, o.time + after, rival_start)
                    if j - i > 1:
                        claims = set()          # the other profiles among them
                        for s in rival_items[i:j]:
                            if fits is None or fits(s, o):
                                r = roots.get(s.frame)
                                if r is None:
                                    r = cached(s.frame)
                                if r != own:
                                    claims.add(r)
                        rivals = len(claims)
                    elif j > i:         # one subject (this one, most often): no set
                        s = rival_items[i]
                        if fits is None or fits(s, o):
                            r = roots.get(s.frame)
                            rivals = int((cached(s.frame) if r is None else r) != own)
                share = 1 / (k + slack) / (1 + rivals)
                ranked.append((share, o, rivals))
            share, chosen, rivals = ranked[0]
            if k > 1:
                ranked.sort(key=lambda x: (-x[0], x[1].frame))
                share, chosen, rivals = ranked[0]
                listed: Iterable = [v for s, o, _ in ranked[:LISTED]
                                    for v in (s, o.frame, o.care_of, o.time)]
            else:
                listed = (share, chosen.frame, chosen.care_of, chosen.time)
            frame = chosen.frame
            values = (k, t1 - t0, rivals, obs.mh_name, around, mu, slack, *listed)
            linker.record(Evidence.deferred(
                self.rule.name, share,
                (obs.frame, frame) if obs.frame < frame else
                (frame, obs.frame) if frame < obs.frame else (frame,),
                _TimingWords(self.describe, self.facts(obs, kind, chosen), values),
                k > 1 or rivals > 0 or share < linker.threshold, (obs.frame,)))
        return None

    def forget(self, before):
        horizon = self.linker.now - self.keep
        for table in (self.index, self.subjects):
            for key in list(table):
                table[key].forget(horizon)
                if table[key].empty():
                    del table[key]
                    if table is self.subjects:
                        self._windows.pop(key, None)


class HotiTiming(Timing):
    """A HoTI (HoT) in clear between home agent and correspondent goes out (comes in) together
    with the CoTI (CoT) of the same node (RFC 6275 11.6.1), and right after (before) the MN-HA
    tunnel packet that carried it (RFC 3776 4.3)."""

    def is_subject(self, kind):
        return kind.mh_type in _HOME_TEST and not kind.tunnelled \
            and kind.path == "ha-cn"

    def is_partner(self, kind):
        return kind.care_of and (kind.mh_type in _CARE_OF_TEST
                                  or _tunnel_direction(kind) is not None)

    def subject(self, obs):
        if obs.mh_type in _HOME_TEST and not obs.tunnelled \
                and obs.path == "ha-cn":
            return ("subject", obs.mh_type, obs.correspondent)
        return None

    def partner_key(self, obs):
        if obs.care_of and obs.mh_type in _CARE_OF_TEST:
            return ("rr", obs.mh_type, obs.correspondent)
        d = _tunnel_direction(obs)
        return None if d is None else ("tunnel", d)

    def windows(self, key):
        _, mh_type, correspondent = key
        out = mh_type == _HOTI
        return (("RR", ("rr", _COTI if out else _COT, correspondent), -RR_WINDOW, RR_WINDOW),
                ("tunnel", ("tunnel", out),
                 *((-FORWARD_WINDOW, 0.0) if out else (0.0, FORWARD_WINDOW))))

    def facts(self, obs, kind, chosen):
        return (obs.mh_name, obs.mh_type == _HOTI, obs.correspondent, obs.time, kind,
                chosen.care_of, chosen.time)

    @staticmethod
    def describe(mh_name, out, correspondent, time, kind, care_of, partner_time):
        return (f"{mh_name} {'to' if out else 'from'} {correspondent} at {time:.3f} s with the "
                + ("CoTI/CoT" if kind == "RR" else "MN-HA tunnel packet")
                + f" of {care_of} at {partner_time:.3f} s")


class ForwardingTiming(Timing):
    """draft 6.1 ("communication patterns") against 5.4 / 7.2: a packet the home agent takes out
    of a node's tunnel appears on HA-CN a moment later, one tunnel overhead smaller (and the
    reverse for packets to the node)."""

    def is_subject(self, kind):
        return kind.path == "ha-cn" and kind.mh_type not in _HOME_TEST \
            and kind.homes and kind.length

    def is_partner(self, kind):
        return _tunnel_direction(kind) is not None

    def subject(self, obs):
        if obs.path == "ha-cn" and obs.mh_type not in _HOME_TEST \
                and obs.homes and obs.length:
            return ("subject", obs.correspondent == obs.dst)
        return None

    def partner_key(self, obs):
        d = _tunnel_direction(obs)
        return None if d is None else ("tunnel", d)

    def windows(self, key):
        _, out = key                                # home side -> correspondent
        return (("tunnel", ("tunnel", out),
                 *((-FORWARD_WINDOW, 0.0) if out else (0.0, FORWARD_WINDOW))),)

    def fits(self, subject, partner):
        lo, hi = TUNNEL_OVERHEAD
        return bool(subject.length) and lo <= partner.length - subject.length <= hi

    def facts(self, obs, kind, chosen):
        return (obs.homes[0], obs.correspondent == obs.dst, obs.correspondent, obs.time,
                obs.length, chosen.care_of, chosen.time, chosen.length)

    @staticmethod
    def describe(home, out, correspondent, time, length, care_of, partner_time,
                 partner_length):
        return (f"{home} {'->' if out else '<-'} {correspondent} at {time:.3f} s ({length} "
                f"octets) with the MN-HA tunnel packet of {care_of} at {partner_time:.3f} s "
                f"({partner_length} octets)")


# ---- the rules ---------------------------------------------------------------------------------

CERTAIN = "certain: a value only one node holds"
PAIRING = ("posterior over the candidates in the window: every pairing of new and earlier "
           "values (one successor, one predecessor) summed, unpaired values explained by the "
           "look-alike density measured around them")
SHARED = "1/k over the k places the value could belong to, checked for look-alikes"
TIMING = ("1/k over the k places with a partner packet in the window, shared with the other "
          "packets that could claim it, and the window's business around it")

RULES: tuple[Rule, ...] = (
    Rule("same-care-of-address", CERTAIN, "draft 6.1",
         "packets from or to one care-of address", same("care_of", "care-of address")),
    Rule("same-home-address", CERTAIN, "draft 6.1, 6.2.1",
         "one home or pseudo home address (HAO, RH2, 0xFE, inner header)",
         same("homes", "home or pseudo home address")),
    Rule("same-spi", SHARED, "draft 6.1, 6.4", "one ESP SPI, from one place and then another",
         SameSpi),
    Rule("same-init-cookie", CERTAIN, "RFC 6275 6.1.3-6.1.6",
         "a HoT/CoT echoing a HoTI/CoTI init cookie", same("cookie", "init cookie")),
    Rule("same-nonce-indices", SHARED, "draft 6.1, RFC 6275 5.2.5",
         "a correspondent's nonce indices carried from its HoT/CoT into a BU", NonceIndices),
    Rule("same-interface-id", SHARED, "draft 6.2.1, RFC 4291 2.5.1",
         "one interface ID under different prefixes", SameInterfaceId),
    Rule("esp-sequence-continues", PAIRING, "draft 6.1, RFC 4303 3.3.3",
         "ESP sequence numbers that carry on across a care-of address change", EspContinues),
    Rule("bu-sequence-continues", PAIRING, "draft 6.3, RFC 6275 9.5.1",
         "BU sequence numbers that carry on across a care-of address change", BuContinues),
    Rule("spi-increment", PAIRING, "draft 6.4",
         "an SPI 1..255 (or, two renewals, 2..510) above one no longer used", SpiIncrement),
    Rule("hoti-timing", TIMING, "draft 6.1, RFC 6275 11.6.1",
         "a HoTI/HoT in clear at the time of one node's CoTI/CoT or tunnel packet", HotiTiming),
    Rule("forwarding-timing", TIMING, "draft 6.1, 7.2",
         "a packet on HA-CN right after (before) a tunnel packet of one node, one tunnel "
         "overhead smaller", ForwardingTiming),
)


def link_all(observations: Iterable[Observation], rules: Iterable[Rule] | None = None,
             threshold: float = THRESHOLD) -> Linker:
    """Every observation through a fresh linker, to the end (tests, one-off analyses)."""
    linker = Linker(rules, threshold)
    for obs in sorted(observations, key=lambda o: (o.time, o.frame)):
        linker.add(obs)
    linker.flush()
    return linker
