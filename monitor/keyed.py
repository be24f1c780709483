"""The keyed analyzer: with the operator's keyring, rebuild every binding cache and check the draft.

`KeyedAnalyzer(keyring or None)` is an addon of `monitor.stream.EventStream`. This module handles
the Mobility Header messages (one handler per type, `KeyedAnalyzer._HANDLERS`): from them it
rebuilds the home agent's binding cache (draft 5.2, `monitor.caches.HomeBindingCache`) and every
correspondent's (RFC 6275 9.1, draft 4.1, 4.2, 5.3.1, 5.3.2), and reports findings (each kind a
row of `monitor.findings.FINDINGS`). Report semantics: docs/DESIGN.md "Report semantics".
Beside it, each with its own job:

- `monitor.attribution.FrameAttribution`: which real node each frame belongs to (`frame_nodes()`,
  the truth the attacker is scored against), fed by the handlers here;
- `monitor.keyed_news`: `news()` and `KeyedMark`, the view a live dashboard reads a piece at a
  time;
- `monitor.tables`: `keyed_text()`, the text tables of `mip6mon report --format text`.

`from monitor.keyed import KeyedAnalyzer, KeyedMark, keyed_text` is this module's interface.

How the home address is recovered: each form of Binding Update the keys tell apart is a row of
`KeyedAnalyzer.HOME_BU_FORMS` or `CORRESPONDENT_BU_FORMS`, named by the procedures that send it
(rows of `dissectors.procedures`, whose `recovers` column says how, and docs/DESIGN.md
"Procedures" shows them), with its recogniser; notes name the procedure by the rows' ids.

`i` is the ESP sequence number of the Home BU (keyring `key_index = "esp-seq"`, the outer ESP in
tunnel mode) or, with `key_index = "counter"`, the count of Home BUs the node has sent, starting
at 1 (retransmissions count: each BU is a new send). A counter step of up to 4 is tolerated so a
capture that missed a BU still resynchronises.

Kbm (RFC 6275 5.2.5) comes from the first source that gives one: Kcn plus the nonces of the
BU's Nonce Indices option (keyring correspondent tables), keygen tokens seen on the wire
(HoT/CoT in clear or decrypted from ESP), or a `[[binding_key]]`; a de-registration also tries
SHA1(home token). The Authenticator is checked over `MobilityMessage.authenticated_data` with
CoA = Alternate CoA if present, else the BU's IPv6 source, and CN = its destination.

`care_of_trails()` follows the accepted Home BUs (not de-registrations), like
`monitor.privacy.LabTruth` reads truth.json. `KeyedAnalyzer(keyring, max_frames=N)` keeps
per-frame state (annotations, attribution) for the last N frames only (live captures that run
for days); binding caches and findings are kept whole.

Without a keyring, or for a node the keyring does not know, the analyzer reports what is
visible: `home_address` is set only when the keys reveal it (or the address is a keyring home
address), so an address standing in a HAO that the keys do not explain is reported as
`pseudo_home_address`; `authenticator_valid` is null when no Kbm can be had. Keygen tokens seen
in clear are used keyless too: a capture of both the HA-CN and MN-CN paths reveals a 4.1 or
4.2 home address without any key (the draft's own caveat about those eavesdroppers).

Findings: `monitor.findings` declares every kind (its meaning, category and RFC or draft
section); a handler reports one by naming its row, e.g. `self.findings.add(SPI_STEP, ...)`.
"""
from __future__ import annotations

import functools
import ipaddress
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from dissectors.events import Esp, IPv6Layer, MobilityMessage, PacketEvent
from dissectors.procedures import (
    CN_INITIATED_RR,
    HOME_TRANSPORT,
    HOME_TUNNEL,
    MN_INITIATED_RR,
    PLAIN_CORRESPONDENT,
    PLAIN_HOME,
    REVERSE_TUNNELLED_BU,
    RR_PRIVACY,
    Procedure,
)
from dissectors.protocol import BA_REJECTED, MHType
from keys import formulas
from keys.keyring import Keyring, MobileNode
from monitor.attribution import FrameAttribution, forget_before
from monitor.caches import (
    AddressBook,
    CorrespondentBinding,
    CorrespondentBindingCache,
    HomeBinding,
    HomeBindingCache,
    Identity,
    TokenStore,
    merged_trails,
)
from monitor.findings import (
    AUTHENTICATOR_INVALID,
    BA_ERROR_STATUS,
    BINDING_ERROR,
    ESP_AMBIGUOUS,
    HOME_ADDRESS_IN_CLEAR,
    HOME_BU_RETRANSMITTED,
    HOME_BU_UNVERIFIED,
    KEYGEN_TOKEN_INVALID,
    MH_CHECKSUM_INVALID,
    MH_HEADER_LEN_SHORT,
    PSEUDO_HOME_ADDRESS_MISMATCH,
    PSEUDO_HOME_ADDRESS_NOT_ROUTABLE,
    PSEUDO_HOME_ADDRESS_REUSED,
    SEQUENCE_STEP,
    SPI_STEP,
    FindingLog,
)
from monitor.keyed_news import KeyedMark, keyed_news
from monitor.tables import keyed_text

__all__ = ["KeyedAnalyzer", "KeyedMark", "keyed_text"]

_BU = int(MHType.BU)       # (an enum member's lookup costs more than the comparison)
_FOREVER = float("inf")     # a binding whose BU gave no lifetime
COUNTER_WINDOW = 4         # tolerated counter gap for key_index = "counter" (missed frames)


@dataclass(slots=True)
class _PendingHomeBU:
    """A Home BU waiting for its BA (DESIGN.md: accepted = verified AND acknowledged)."""
    binding: HomeBinding
    verified: bool              # False: keys could check it and it failed; no entry ever
    key: tuple[str, str]        # (home agent, node identity)


@dataclass(slots=True)
class _HomeRecognition:
    """What the keys say about a Home BU's sender. `note` makes the annotation's text when
    asked (`mip6mon report` never shows notes: no text per Home BU for nothing)."""
    node: MobileNode | None
    home_address: str | None
    pseudo_home_address: str | None
    verified: bool | None        # None: nothing in the keyring could check it
    note: Callable[[], str] | None
    index: int | None = None     # the i of Ki that matched (draft 5.1.4)


@dataclass(slots=True)
class _CorrespondentRecognition:
    """What the keys say about a correspondent BU's sender, before its Authenticator."""
    label: str                   # the procedures of its form: "4.1", "4.2/5.3.2", ...
    home_address: str | None
    pseudo_home_address: str | None
    how: str                     # how the keys gave the home address ("" when they did not)
    kbm_subject: str | None      # the address the home keygen token is over (RFC 6275 5.2.5)
    pseudo_kind: str = "enc"     # Identity.kind of the pseudo home address once explained
    encrypted: bool = False      # option 0xFE = AES(Kbm, HoA): decrypted once Kbm verifies


@dataclass(frozen=True)
class BUForm:
    """One form a Binding Update takes on the wire, and the procedures that send it (rows of
    dissectors.procedures; the wire cannot tell 4.2 from 5.3.2). `recognise(analyzer, label,
    ...)` returns what the keys say of the sender, or None for a BU of another form.
    `option` / `alternate` (correspondent BUs): whether the form has option 0xFE / an
    Alternate CoA; `tunnel` (Home BUs): whether it comes in an ESP tunnel (None: either); a BU
    is offered only to the forms its wire can be (decided once per kind of BU, not asked of
    every form for every BU)."""
    procedures: tuple[Procedure, ...]
    form: str
    recognise: Callable[..., Any]
    option: bool | None = None
    alternate: bool | None = None
    tunnel: bool | None = None

    def fits(self, option: bool, alternate: bool) -> bool:
        return self.option in (None, option) and self.alternate in (None, alternate)

    @functools.cached_property
    def label(self) -> str:
        """How the keyed view's notes name the procedure: the rows' ids, "4.2/5.3.2" (asked
        of every form tried, for every BU: joined once)."""
        return "/".join(p.id for p in self.procedures)


def _forms_by_wire(forms: tuple[BUForm, ...]) -> dict[tuple[bool, bool], tuple[BUForm, ...]]:
    """(option 0xFE?, Alternate CoA?) -> the forms such a BU can be, in `forms` order."""
    return {(option, alternate): tuple(f for f in forms if f.fits(option, alternate))
            for option in (False, True) for alternate in (False, True)}


def _forms_by_tunnel(forms: tuple[BUForm, ...]) -> dict[bool, tuple[BUForm, ...]]:
    """In an ESP tunnel? -> the forms such a Home BU can be, in `forms` order."""
    return {tunnel: tuple(f for f in forms if f.tunnel in (None, tunnel))
            for tunnel in (False, True)}


@dataclass
class _NodeState:
    """What the analyzer tracks per keyring mobile node."""
    counter: int = 0                         # key_index = "counter": Home BUs sent so far
    exchanges: int = 0                       # acknowledged Home BU exchanges so far
    # draft 6.4, per SA (tunnel or transport): (last Home BU SPI, exchanges at that time)
    last_spi: dict[bool, tuple[int, int]] = field(default_factory=dict)
    pseudo_uses: set[str] = field(default_factory=set)   # "ha", "cn ADDR", "hoti ADDR"
    # frames that used the real home address where no pseudo address was used yet: they
    # become findings the moment one is (so findings only grow, and a live view reads the new);
    # in frame order, so a live view (max_frames) forgets the oldest as it adds
    clear_waiting: dict[str, dict[int, None]] = field(default_factory=dict)  # use -> frames


def _no_node(home_address: str | None) -> None:
    """No keyring: no address is a keyring node's."""
    return None


def _short(address: str | None) -> str:
    return address if address is not None else "?"


# With max_frames (a live capture): the newest accepted BUs of each cache and findings kept
# (the dashboard's panes show the newest 50), and care-of points per node: what its plot shows
# (web.panes CARE_OF_TRAILS, 200). 1,000 a node in each cache (twice that before a History
# dropped) held ~40 MB of a 50-node crowd's trails, filled only after 25 minutes at 2,000
# packets/s: the dashboard grew for that long (issue 12)
LIVE_HISTORY = 10_000
LIVE_TRAIL_POINTS = 200


class KeyedAnalyzer:
    """Addon: binding caches, frame attribution and findings, from events and a keyring."""

    def __init__(self, keyring: Keyring | None = None, max_frames: int | None = None,
                 notes: bool = True):
        """`max_frames` bounds the per-frame state (annotations, attribution) for a live
        capture that runs for days: only the latest `max_frames` frames keep it. The binding
        caches' history and the findings keep their newest LIVE_HISTORY entries then, and each
        node's care-of trail its newest LIVE_TRAIL_POINTS (monitor.history): they grow with
        every Binding Update, and a lab left running sends them for ever.
        `notes=False`: no per-frame annotations (`mip6mon report` never shows them; a
        2,000,000-packet capture would hold one list per mobility frame)."""
        self.keyring = keyring
        self.max_frames = max_frames
        self.notes = notes
        # live (max_frames): the history of bindings and findings is bounded too, since in a
        # lab left running it grows with every BU (the binding in force, `current`, is kept)
        keep, trail_keep = (None, None) if max_frames is None else (LIVE_HISTORY,
                                                                   LIVE_TRAIL_POINTS)
        self.home_cache = HomeBindingCache(keep=keep, trail_keep=trail_keep)
        self.correspondent_cache = CorrespondentBindingCache(keep=keep, trail_keep=trail_keep)
        self.book = AddressBook()
        self.tokens = TokenStore()
        self.findings = FindingLog(keep=keep)
        self.attribution = FrameAttribution(self.book, max_frames)
        # keyring node name -> home address: the node the keyed stage names on an ESP header
        self._home_of = {n.name: n.home_address for n in keyring.mobile_nodes} if keyring \
            else {}
        # home address -> its keyring node, as the keyring answers (asked of every HAO, BA,
        # HoTI: one dict lookup in C, not a method call)
        self._mobile_node: Callable[[str | None], MobileNode | None] = {
            n.home_address: keyring.mobile_node_by_home_address(n.home_address)
            for n in keyring.mobile_nodes}.get if keyring else _no_node
        self._annotations: dict[int, list[str]] = {}
        self._strings: dict[str, str] = {}   # one copy of each note (long captures)
        self._prefix64: dict[str, str] = {}  # address -> its /64, for prefix tests
        self._prefixes: dict[str, list[str]] = {}  # node's home address -> _node_prefixes
        self._derived_prefix: dict[str, str] = {}  # node's home address -> _derive_prefix
        self._pending: dict[tuple[str, str], _PendingHomeBU] = {}
        self._nodes: dict[str, _NodeState] = {}
        self._home_pseudos: dict[str, int] = {}            # pseudo -> first Home BU frame
        self._cn_pseudos: dict[str, tuple[str, int]] = {}  # pseudo -> (correspondent, frame)
        self._private: set[str] = set()    # home addresses seen behind a pseudo home address
        self._agent_nodes: dict[str, list[MobileNode]] = {}   # home agent -> keyring nodes
        # home agent -> {home address: its first node of _agent_nodes}
        self._agent_homes: dict[str, dict[str, MobileNode]] = {}
        # draft 5.1.4 i asked about once, and per i asked again: pseudo HoA -> esp-seq node
        self._indices_asked: set[int] = set()
        self._routable_tables: dict[int, dict[str, MobileNode]] = {}
        self.unreadable = 0                                # events whose fields did not parse
        self._no_binding_keys = not (keyring and keyring.binding_keys)
        self._has_correspondents = bool(keyring and keyring.correspondents)
        # every home agent's prefixes (keyring and PROFILE.md: /64): what is routable (5.1.1)
        self._agent_prefixes = frozenset(p for agent in keyring.home_agents
                                         for p in agent.prefixes) if keyring else frozenset()
        for node in keyring.mobile_nodes if keyring else ():
            self.book.learn(node.home_address, Identity(node.home_address, "home", "keyring"))

    # --- addon hooks ---------------------------------------------------------------------

    def packet(self, event: PacketEvent) -> None:
        self.packets((event,))

    def packets(self, events: Iterable[PacketEvent]) -> None:
        """packet() for each of `events`, in order (a batch run gives a batch at once)."""
        handle = self._packet
        live = self.max_frames is not None
        for event in events:
            try:
                handle(event)
            except (ValueError, TypeError, IndexError):
                # a malformed address or field that got past the dissector: count, never crash
                self.unreadable += 1
            if live:
                self._trim(event.frame - self.max_frames + 1)

    def _trim(self, oldest: int) -> None:
        """Forget per-frame state (notes, attribution) of frames before `oldest`."""
        forget_before(self._annotations, oldest)
        self.attribution.forget_before(oldest)
        if len(self._strings) > 4 * self.max_frames:
            self._strings.clear()      # only a de-duplication cache: safe to restart

    def done(self) -> None:
        pass

    # --- results -------------------------------------------------------------------------

    def report(self) -> dict:
        findings = self.findings.by_frame()
        return {"home_bindings": [b.as_dict() for b in self.home_cache.sorted_entries()],
                "correspondent_bindings": [b.as_dict()
                                           for b in self.correspondent_cache.sorted_entries()],
                "findings": findings}

    def news(self, mark: KeyedMark | None = None, limit: int = 100,
             trail_limit: int = 200) -> tuple[dict, KeyedMark]:
        """What grew since `mark` (None: since the start), for a live view that must not
        rebuild the whole report every second: the new home and correspondent bindings and
        findings (the newest `limit` of each, in the order they were established, with the
        totals) and each node's new care-of trail points (the newest `trail_limit`). Costs what is
        new, not what was seen; returns the mark to pass next time (monitor.keyed_news)."""
        return keyed_news(self.home_cache, self.correspondent_cache, self.findings.entries,
                          mark, limit, trail_limit)

    def care_of_trails_unsorted(self) -> dict[str, list[tuple[float, str, int]]]:
        """care_of_trails() in the order the bindings were accepted (no copy, no sort)."""
        return merged_trails(self.home_cache, self.correspondent_cache)

    def annotations(self, frame: int) -> list[str]:
        notes = list(self._annotations.get(frame, []))
        if not notes:
            # no message explained it: say why the frame still belongs to a node, if it does
            explained = self.attribution.explain(frame)
            if explained is not None:
                node, why = explained
                notes.append(f"{why} {self._node_name(node)} (HoA {node})")
        return notes

    def frame_node(self, frame: int) -> str | None:
        """The real home address `frame` belongs to, as far as the keys tell now (one frame
        of `frame_nodes()`, for a live view that labels each packet as it comes)."""
        return self.attribution.node(frame)

    def frame_nodes(self) -> dict[int, str]:
        """{frame: real home address} for every frame the keys attribute to a node."""
        return self.attribution.nodes()

    def care_of_trails(self) -> dict[str, list[tuple[float, str, int]]]:
        """{home address: [(time, care-of address, frame)]}: where each node was, from its
        accepted Home BUs (de-registrations excluded: their "care-of address" is the home
        address), as monitor.privacy.LabTruth reads truth.json; a node with no home binding in
        view is traced by its correspondent bindings instead."""
        return {hoa: sorted(points) for hoa, points in self.care_of_trails_unsorted().items()}

    # --- per packet: one handler per Mobility Header type ----------------------------------

    def _packet(self, event: PacketEvent) -> None:
        # one look at the layers decides which steps below can matter to this frame: ESP for
        # _verified_esps, a HAO / RH2 / option 0xFE for _data_addresses (a packet with neither
        # has nothing for them, the usual data packet)
        layers = event.layers
        esp = marked = False
        for layer in layers:
            if layer.esp is not None:
                esp = True
            if layer.home_address is not None or layer.routing_home_address is not None \
                    or layer.pseudo_home_address is not None:
                marked = True
        esps = self._verified_esps(event) if esp else ()
        if esps:
            self.attribution.seen(event.frame, esps)
        m = event.mobility
        if m is not None and not event.malformed:
            if m.checksum_valid is False:
                # RFC 6275 9.2: a receiver discards it. The monitor still reads it (hand-made
                # and synthetic captures often carry wrong checksums) but says so.
                self.findings.add(MH_CHECKSUM_INVALID, event.frame,
                                  f"{m.name} from {event.inner.src}: Mobility Header checksum "
                                  "does not verify (RFC 6275 9.2: a receiver would discard it)")
            if m.header_len_short:
                # RFC 6275 9.2: a receiver silently discards it, so it binds nothing here either
                self.findings.add(MH_HEADER_LEN_SHORT, event.frame,
                                  f"{m.name} from {event.inner.src}: Header Len below the "
                                  f"{m.name}'s minimum (RFC 6275 9.2: discarded)")
            else:
                handler = self._HANDLERS.get(m.mh_type)      # the table ends the class
                if handler is not None:
                    handler(self, event, m)
        if marked:
            self._data_addresses(event)
        self.attribution.settle(event.frame, layers, esps)

    def _verified_esps(self, event: PacketEvent) -> tuple[tuple[str, int, str | None], ...]:
        """(receiver, SPI, home address of the SA's node when certain) of each ESP header a
        keyring SA verified; an ESP that two null-authentication SAs both open is a finding
        (dissectors.decrypt leaves it encrypted rather than guess)."""
        out = []
        for layer in event.layers:
            if layer.esp is None:
                continue
            for esp in layer.esp.chain():
                if esp.decrypted:
                    out.append((layer.dst, esp.spi, self._home_of.get(esp.node)
                                if esp.node is not None else None))
                elif esp.undecrypted == "ambiguous":
                    self.findings.add(ESP_AMBIGUOUS, event.frame,
                                      f"ESP SPI {esp.spi:#010x} from {layer.src} to {layer.dst}: "
                                      "null authentication, and more than one keyring SA opens "
                                      "it to a payload that parses (left encrypted, tied to no "
                                      "node)")
        return tuple(out)

    def _data_addresses(self, event: PacketEvent) -> None:
        """HAO / RH2 / 0xFE on any packet: the frame is the node's each stands for (noted,
        unless a BU's own note says it), and clear uses."""
        m = event.mobility
        explained = m is not None and m.mh_type == _BU
        noted = self.notes and not explained
        identities = self.book.identities
        attribute = self.attribution.attribute
        frame = event.frame
        for layer in event.layers:
            hao, rh2, option = (layer.home_address, layer.routing_home_address,
                                layer.pseudo_home_address)
            if hao is not None:
                if layer.esp is not None and not explained and hao not in identities:
                    self._recognise_hao(hao, layer.dst, layer.esp.sequence,
                                        self._sa_hint(layer.dst, layer.esp))
                ident = identities.get(hao)
                if ident is not None:
                    attribute(frame, ident.home_address)
                    if noted:
                        self._stands_for(frame, "HAO", hao, ident)
                    node = self._mobile_node(ident.home_address)
                    if node is not None:
                        # scope: toward the home agent, or toward one correspondent
                        use = "ha" if node.home_agent == layer.dst else f"cn {layer.dst}"
                        if ident.kind == "home":
                            self._clear_use(node, frame, use)
                        else:
                            self._pseudo_use(node, use)
            if rh2 is not None and (ident := identities.get(rh2)) is not None:
                attribute(frame, ident.home_address)
                if noted:
                    self._stands_for(frame, "RH2", rh2, ident)
            if option is not None and (ident := identities.get(option)) is not None:
                attribute(frame, ident.home_address)
                if noted:
                    self._stands_for(frame, "option 0xFE", option, ident)

    def _stands_for(self, frame: int, what: str, address: str, ident: Identity) -> None:
        """The note of a HAO, RH2 or option 0xFE the book knows, on a frame no BU explains."""
        if ident.kind == "home":
            self._note(frame, f"{what} {address} is the real home address of "
                              f"{self._node_name(ident.home_address)}")
        else:
            self._note(frame, f"{what} pseudo HoA {address} = HoA {ident.home_address} via "
                              f"{ident.how}")

    # --- Home BU / BA (draft 5.2) ----------------------------------------------------------

    def _bu(self, event: PacketEvent, m: MobilityMessage) -> None:
        # RFC 6275 6.1.7: the H flag asks the receiver to be the sender's home agent
        if "H" in m.flags:
            self._home_bu(event, m)
        else:
            self._correspondent_bu(event, m)

    def _recognise_home(self, layer: IPv6Layer, claimed: str, tunnel: bool,
                        esp_sequence: int | None, hint: str | None = None) -> _HomeRecognition:
        """Who sent this Home BU: its home address field (the HAO, else the source; the inner
        source in a tunnel) tried against each form of HOME_BU_FORMS, with every keyring node
        this home agent serves, the `hint`ed one (home address) first. A BU no form explains
        stands for an address the keys do not know (keyless), or fails to verify (the keys
        could have checked it). `layer`: the BU's own IPv6 header (the inner one in a tunnel),
        whose destination is the home agent."""
        nodes = self._nodes_of_agent(layer.dst, hint)
        for form in self._HOME_FORMS_BY_TUNNEL[tunnel]:
            r = form.recognise(self, form.label, layer, claimed, nodes, tunnel, esp_sequence)
            if r is not None:
                return r
        return _HomeRecognition(None, None,
                                claimed if layer.home_address is not None else None,
                                False if nodes else None, None)

    def _home_in_clear(self, label: str, layer: IPv6Layer, claimed: str,
                       nodes: list[MobileNode], tunnel: bool,
                       esp_sequence: int | None) -> _HomeRecognition | None:
        """RFC 3776 4.1: the HAO (or the source, at home) is a node's real home address."""
        node = self._served(nodes, layer.dst, claimed)
        if node is None:
            return None
        home = node.home_address
        return _HomeRecognition(node, home, None, True, lambda: f"Home BU carries the real HoA "
                                f"{home} of {node.name} ({label})")

    def _home_tunnel(self, label: str, layer: IPv6Layer, claimed: str,
                     nodes: list[MobileNode], tunnel: bool,
                     esp_sequence: int | None) -> _HomeRecognition | None:
        """draft 5.2.2: in the ESP tunnel the inner source is the home address; both ends
        derive the pseudo home address (none on the wire) with the BU's i: the outer ESP
        sequence number, or the node's next counter value."""
        node = self._served(nodes, layer.dst, claimed)
        if node is None:
            if not nodes and layer.home_address is None:
                # ESP decrypted but no Kph: the inner source is the home address in clear
                return _HomeRecognition(None, claimed, None, None, None)
            return None
        home = node.home_address
        if node.key_index == "counter":
            i = self._node_state(node).counter + 1      # the first of _key_indices
        elif esp_sequence is not None:
            i = esp_sequence
        else:
            return _HomeRecognition(node, home, None, True, lambda: f"tunnel-mode Home BU of "
                                    f"{node.name} ({label}): no ESP sequence number to derive "
                                    f"a pseudo HoA")
        ki = formulas.dynamic_key(node.kph.value, i)
        pseudo = formulas.routable_pseudo_home_address(ki, home, self._derive_prefix(node),
                                                       node.phoa_cipher)
        return _HomeRecognition(node, home, pseudo, True, lambda: f"tunnel-mode Home BU of "
                                f"{node.name}: pseudo HoA {pseudo} derived via "
                                f"{self._how(node, i)} ({label})", i)

    def _home_routable(self, label: str, layer: IPv6Layer, claimed: str,
                       nodes: list[MobileNode], tunnel: bool,
                       esp_sequence: int | None) -> _HomeRecognition | None:
        """draft 5.2.1: a routable pseudo home address, Ki = HMAC_SHA1(Kph, i)."""
        owner = self._esp_seq_owner(claimed, esp_sequence, layer.dst, nodes) \
            if esp_sequence is not None else None
        for node in ([owner] if owner is not None else
                     [n for n in nodes if n.key_index == "counter"]):
            for i in self._key_indices(node, esp_sequence):
                if self._match_routable(node, claimed, i):
                    where = "HAO" if layer.home_address is not None else "source"
                    return _HomeRecognition(
                        node, node.home_address, claimed, True,
                        functools.partial(self._routable_note, where, claimed, node, i, label),
                        i)
        return None

    def _routable_note(self, where: str, claimed: str, node: MobileNode, i: int,
                       label: str) -> str:
        return (f"{where} pseudo HoA {claimed} = HoA {node.home_address} via "
                f"{self._how(node, i)} ({label})")

    def _recognise_hao(self, address: str, home_agent: str, esp_sequence: int,
                       hint: str | None = None) -> None:
        """A HAO toward a home agent under ESP (draft 5.5 MPS, or any packet) that no BU
        explained: a pseudo home address with Ki from this packet's own ESP sequence number?
        (esp-seq nodes only: a counter belongs to Home BUs.)"""
        node = self._esp_seq_owner(address, esp_sequence, home_agent,
                                   self._nodes_of_agent(home_agent, hint))
        if node is not None:
            self.book.learn(address, Identity(node.home_address, "routable",
                                              self._how(node, esp_sequence)))
            self._private.add(node.home_address)

    def _esp_seq_owner(self, address: str, i: int, home_agent: str,
                       nodes: list[MobileNode]) -> MobileNode | None:
        """The `key_index = "esp-seq"` node of `nodes` whose Ki (i = this ESP sequence number)
        derives `address` (draft 5.1.3, 5.1.4). The first node (the SA's, when known) is
        tried alone first; then every node, one by one the first time an i is asked about,
        and through a table of every node's pseudo home addresses under that i from the
        second time on: in a crowd whose SAs were set up together the nodes' i run side by
        side, so a table serves many BUs and a BU costs O(1) instead of one Ki per node."""
        if nodes and nodes[0].key_index == "esp-seq" and \
                self._match_routable(nodes[0], address, i):
            return nodes[0]
        if i not in self._indices_asked:
            if len(self._indices_asked) > 4096:
                self._indices_asked.clear()
            self._indices_asked.add(i)
            return next((n for n in nodes[1:] if n.key_index == "esp-seq"
                         and self._match_routable(n, address, i)), None)
        table = self._routable_tables.get(i)
        if table is None:
            if len(self._routable_tables) >= 64:
                del self._routable_tables[next(iter(self._routable_tables))]
            table = self._routable_tables[i] = self._routable_table(i)
        node = table.get(address)
        if node is None or (node.home_agent is not None and node.home_agent != home_agent):
            return None
        return node

    def _routable_table(self, i: int) -> dict[str, MobileNode]:
        """pseudo home address -> the esp-seq keyring node whose Ki derives it, under every
        prefix the node may use (what _match_routable accepts)."""
        table: dict[str, MobileNode] = {}
        for node in self.keyring.mobile_nodes if self.keyring else ():
            if node.key_index != "esp-seq":
                continue
            ki = formulas.dynamic_key(node.kph.value, i)
            for prefix in self._node_prefixes(node):
                table.setdefault(formulas.routable_pseudo_home_address(
                    ki, node.home_address, prefix, node.phoa_cipher), node)
        return table

    def _home_bu(self, event: PacketEvent, m: MobilityMessage) -> None:
        layers = event.layers            # (event.inner and .outer: a call each, per BU)
        outer, layer = layers[0], layers[-1]
        home_agent = layer.dst
        tunnel = len(layers) > 1
        # transport: the BU's own ESP; tunnel: the outer one
        esp = (event.esp_headers() or (None,))[-1]
        claimed = layer.home_address or layer.src
        care_of = m.alternate_care_of_address or outer.src
        r = self._recognise_home(layer, claimed, tunnel, esp.sequence if esp else None,
                                 self._sa_hint(outer.dst, esp) if esp else None)
        home, pseudo = r.home_address, r.pseudo_home_address
        if r.node is not None:
            state = self._node_state(r.node)
            if r.node.key_index == "counter":
                state.counter = r.index if r.index is not None else state.counter + 1
            identities = self.book.identities     # the first explanation stays: made once
            if pseudo is not None:
                self._private.add(home)
                if pseudo not in identities:
                    self.book.learn(pseudo, Identity(home, "routable", "Kph" if r.index is None
                                                     else self._how(r.node, r.index)))
            if home not in identities:
                self.book.learn(home, Identity(home, "home", "keyring"))
            self.book.learn_care_of(care_of, home)
            if esp is not None and esp.decrypted:
                self.attribution.tie_spi((outer.dst, esp.spi), home)
            if esp is not None and esp.node == r.node.name:
                # draft 6.4 is checked only on an SA whose node the keyed stage is certain of
                # (the keyring names it, or its chain reached a verified SPI): in a crowd the
                # chains cross, and a step checked on a guessed SA is a false finding
                self._check_spi(event, r.node, state, esp.spi, tunnel, pseudo is not None)
        self.attribution.attribute(event.frame, home)
        if r.note is not None and self.notes:
            self._note(event.frame, r.note())
        if r.verified is False and layer.home_address is not None and \
                self._p64(claimed) not in self._agent_prefixes:
            self.findings.add(PSEUDO_HOME_ADDRESS_NOT_ROUTABLE, event.frame,
                              f"Home BU HAO {claimed} is under no home agent prefix (draft 5.1.1, "
                              f"5.1.3)")
        if r.verified is False:
            self.findings.add(HOME_BU_UNVERIFIED, event.frame,
                              f"Home BU to {home_agent}: home address field {claimed} is neither a "
                              f"keyring home address nor a pseudo home address Kph derives")
        if pseudo is not None and r.verified is not False:
            first = self._home_pseudos.setdefault(pseudo, event.frame)
            if first != event.frame:
                self.findings.add(PSEUDO_HOME_ADDRESS_REUSED, event.frame,
                                  "pseudo home address {} already used in the Home BU of frame "
                                  "{} (draft 5.1.4)", pseudo, first)
        binding = HomeBinding(home_agent=home_agent, home_address=home,
                              pseudo_home_address=pseudo, care_of_address=care_of,
                              sequence=m.sequence, lifetime=m.lifetime, frame=event.frame,
                              time=event.time)
        key = (home_agent, home if home is not None else f"coa {care_of}")
        previous = self._pending.get(key)
        if previous is not None:
            self.findings.add(HOME_BU_RETRANSMITTED, event.frame,
                              "Home BU of frame {} (seq {}) got no BA before this one",
                              previous.binding.frame, previous.binding.sequence)
        self._pending[key] = _PendingHomeBU(binding, r.verified is not False, key)

    def _check_spi(self, event, node: MobileNode, state: _NodeState, spi: int,
                   tunnel: bool, private: bool) -> None:
        """draft 6.4: after each Home BU exchange both ends move the node's SAs to
        next_spi(Kph, SPI); so a Home BU on one SA carries the SPI its last Home BU had,
        advanced once per exchange acknowledged since (zero times for a retransmission)."""
        previous = state.last_spi.get(tunnel)
        state.last_spi[tunnel] = (spi, state.exchanges)
        if previous is None:
            return
        last, then = previous
        steps = state.exchanges - then
        expected = formulas.spi_chain(node.kph.value, last, steps + 1)[-1]
        if spi == expected or (spi == last and not private):
            return   # the 6.4 successor, or a node that does not use 6.4 at all (RFC 6275)
        self.findings.add(SPI_STEP, event.frame,
                          f"Home BU SPI {spi:#010x} of {node.name} after {last:#010x} and {steps} "
                          f"exchange(s): draft 6.4 expects {expected:#010x}")

    def _ba(self, event: PacketEvent, m: MobilityMessage) -> None:
        layer = event.layers[-1]      # (event.inner: a call, per message)
        if m.status is not None and m.status >= BA_REJECTED:
            self.findings.add(BA_ERROR_STATUS, event.frame,
                              f"Binding Acknowledgement from {layer.src} with status {m.status} "
                              f"(seq {m.sequence})")
        target = layer.routing_home_address or layer.dst
        match = None
        for pending in self._pending.values():
            b = pending.binding
            if b.home_agent != layer.src or b.sequence != m.sequence:
                continue
            if target in (b.home_address, b.pseudo_home_address) \
                    or event.outer.dst == b.care_of_address:
                match = pending
        if match is None:
            return
        del self._pending[match.key]
        b = match.binding
        self.attribution.attribute(event.frame, b.home_address)
        if self.notes:
            self._note(event.frame, f"acknowledges the Home BU of frame {b.frame} "
                                    f"(status {m.status})")
        node = None
        if b.home_address is not None:
            esps = event.esp_headers()
            if esps and esps[-1].decrypted:
                self.attribution.tie_spi((event.outer.dst, esps[-1].spi), b.home_address)
            node = self._mobile_node(b.home_address)
        accepted = m.status is None or m.status < BA_REJECTED
        if node is not None and accepted:
            self._node_state(node).exchanges += 1
        if match.verified and accepted:
            self.home_cache.accept(b)

    # --- return routability (RFC 6275 5.2.5; draft 4.1, 5.3.1) -----------------------------

    def _hoti(self, event: PacketEvent, m: MobilityMessage) -> None:
        layer = event.layers[-1]
        source, cn = layer.src, layer.dst
        ident = self.book.identities.get(source)
        if ident is not None:
            self.attribution.attribute(event.frame, ident.home_address)
            node = self._mobile_node(ident.home_address)
            if ident.kind == "home":
                if self.notes:
                    self._note(event.frame, f"HoTI from the real HoA {source} of "
                                            f"{self._node_name(source)}")
                if node is not None and "P" not in m.flags:
                    # a 4.1 HoTI (P flag) comes from the real home address by design
                    self._clear_use(node, event.frame, f"hoti {cn}")
            else:
                if self.notes:
                    self._note(event.frame, f"HoTI from pseudo HoA {source} = HoA "
                                            f"{ident.home_address} via {ident.how} (5.3.1)")
                if node is not None:
                    self._pseudo_use(node, f"hoti {cn}")
        if self._agent_prefixes and (ident is None or ident.kind != "home"):
            if self._p64(source) not in self._agent_prefixes:
                self.findings.add(PSEUDO_HOME_ADDRESS_NOT_ROUTABLE, event.frame,
                                  f"HoTI source {source} is under no home agent prefix, so the HoT "
                                  f"cannot reach the home agent (draft 5.1.1)",
                                  dedupe=("hoti", source, cn, m.cookie))

    def _correspondent(self, address: str):
        return self.keyring.correspondent(address) if self.keyring else None

    def _kcn_and_nonce(self, cn: str, index: int | None) -> tuple[bytes, bytes] | None:
        """Kcn and the nonce of `index` when the keyring holds both (RFC 6275 5.2.5)."""
        if index is None or not self._has_correspondents:
            return None        # asked for every token of every BU, HoT and CoT
        corr = self._correspondent(cn)
        nonce = corr.nonces.get(index) if corr else None
        return (corr.kcn.value, nonce.value) if nonce is not None else None

    def _hot(self, event: PacketEvent, m: MobilityMessage) -> None:
        layer = event.layers[-1]
        cn, home = layer.src, layer.dst
        if m.nonce_index is None:
            return
        if m.keygen_token is not None:
            self.tokens.home[(cn, home, m.nonce_index)] = m.keygen_token
        if m.privacy_keygen_token is not None:
            self.tokens.privacy[(cn, m.nonce_index)] = m.privacy_keygen_token
        ident = self.book.identities.get(home)
        if ident is not None:
            self.attribution.attribute(event.frame, ident.home_address)
            if not self.notes:
                pass
            elif ident.kind == "home":
                self._note(event.frame, f"HoT to the real HoA {home}")
            else:
                self._note(event.frame, f"HoT to pseudo HoA {home} = HoA {ident.home_address}")
        keys = self._kcn_and_nonce(cn, m.nonce_index)
        if keys is None:
            return
        kcn, nonce = keys
        dedupe = ("hot", cn, home, m.nonce_index, m.cookie)
        if m.keygen_token is not None and \
                formulas.home_keygen_token(kcn, home, nonce) != m.keygen_token:
            self.findings.add(KEYGEN_TOKEN_INVALID, event.frame,
                              f"home keygen token from {cn} to {home} (nonce index "
                              f"{m.nonce_index}) does not match Kcn", dedupe=dedupe)
        expected = formulas.privacy_keygen_token(kcn, nonce)
        if m.privacy_keygen_token is not None and expected != m.privacy_keygen_token:
            self.findings.add(KEYGEN_TOKEN_INVALID, event.frame,
                              f"privacy keygen token from {cn} (nonce index {m.nonce_index}) "
                              f"does not match Kcn (draft 4.1)", dedupe=dedupe + ("privacy",))

    def _coti(self, event: PacketEvent, m: MobilityMessage) -> None:
        node = self.book.node_at(event.inner.src)
        if node is not None:
            self.attribution.attribute(event.frame, node)

    def _cot(self, event: PacketEvent, m: MobilityMessage) -> None:
        layer = event.layers[-1]
        cn, care_of = layer.src, layer.dst
        if m.nonce_index is None:
            return
        if m.keygen_token is not None:
            self.tokens.care_of[(cn, care_of, m.nonce_index)] = m.keygen_token
        keys = self._kcn_and_nonce(cn, m.nonce_index)
        if keys is not None and m.keygen_token is not None and \
                formulas.care_of_keygen_token(keys[0], care_of, keys[1]) != m.keygen_token:
            self.findings.add(KEYGEN_TOKEN_INVALID, event.frame,
                              f"care-of keygen token from {cn} to {care_of} (nonce index "
                              f"{m.nonce_index}) does not match Kcn",
                              dedupe=("cot", cn, care_of, m.nonce_index, m.cookie))

    def _be(self, event: PacketEvent, m: MobilityMessage) -> None:
        self.findings.add(BINDING_ERROR, event.frame,
                          f"Binding Error from {event.inner.src} status {m.status} for home "
                          f"address {_short(m.error_home_address)}")

    # --- tokens and Kbm -------------------------------------------------------------------

    def _rr_token(self, cn: str, subject: str, index: int | None, formula,
                  seen: dict) -> bytes | None:
        """A keygen token (RFC 6275 5.2.5): from Kcn and the nonce when the keyring has them,
        else the one seen on the wire (a HoT / CoT in clear or in decrypted ESP)."""
        if index is None:
            return None
        keys = self._kcn_and_nonce(cn, index)
        if keys is not None:
            return formula(keys[0], subject, keys[1])
        return seen.get((cn, subject, index))

    def _home_token(self, cn: str, subject: str, index: int | None) -> bytes | None:
        return self._rr_token(cn, subject, index, formulas.home_keygen_token, self.tokens.home)

    def _care_of_token(self, cn: str, care_of: str, index: int | None) -> bytes | None:
        return self._rr_token(cn, care_of, index, formulas.care_of_keygen_token,
                              self.tokens.care_of)

    def _privacy_token(self, cn: str, index: int | None) -> bytes | None:
        if index is None:
            return None
        keys = self._kcn_and_nonce(cn, index)
        if keys is not None:
            return formulas.privacy_keygen_token(*keys)
        return self.tokens.privacy.get((cn, index))

    def _kbm_candidates(self, cn: str, subject: str | None, care_of: str,
                        m: MobilityMessage) -> list[tuple[bytes, str]]:
        hni, cni = m.home_nonce_index, m.care_of_nonce_index
        out = []
        home = self._home_token(cn, subject, hni) if subject else None
        care = self._care_of_token(cn, care_of, cni)
        if home is not None and care is not None:
            out.append((formulas.binding_management_key(home, care), "keygen tokens"))
        if home is not None and (m.lifetime == 0 or care_of == subject):
            # RFC 6275 5.2.5: de-registration, Kbm = SHA1(home keygen token)
            out.append((formulas.binding_management_key(home, None), "home keygen token"))
        given = None if self._no_binding_keys else self.keyring.binding_key(cn, care_of)
        if given is not None:
            out.append((given.value, "binding_key"))
        return out

    @staticmethod
    def _verify(kbm: bytes, care_of: str, cn: str, m: MobilityMessage) -> bool:
        if m.authenticator is None or m.authenticated_data is None:
            return False
        return formulas.authenticator(kbm, care_of, cn, m.authenticated_data) == m.authenticator

    # --- correspondent BU (RFC 6275 9.5.1; draft 4.1, 4.2, 5.3.1, 5.3.2) ------------------

    def _recognise_correspondent(self, layer: IPv6Layer, m: MobilityMessage,
                                 care_of: str) -> _CorrespondentRecognition:
        """Which procedure a correspondent BU follows, told by where its addresses stand (the
        forms of CORRESPONDENT_BU_FORMS, in order), and what the keys say of its home address
        before its Authenticator is checked."""
        for form in self._CORRESPONDENT_FORMS_BY_WIRE[layer.pseudo_home_address is not None,
                                                      bool(m.alternate_care_of_address)]:
            r = form.recognise(self, form.label, layer, m, care_of)
            if r is not None:
                return r
        raise AssertionError("the last form takes every BU")

    def _cn_privacy_rr(self, label: str, layer: IPv6Layer, m: MobilityMessage,
                       care_of: str) -> _CorrespondentRecognition | None:
        """draft 4.1: source = care-of address, option 0xFE, no Alternate CoA: the privacy and
        care-of keygen tokens give Kpm, and HoA = String XOR the pseudo home address."""
        option = layer.pseudo_home_address
        if option is None or m.alternate_care_of_address:
            return None
        cn = layer.dst
        hni, cni = m.home_nonce_index, m.care_of_nonce_index
        ptoken = self._privacy_token(cn, hni)
        ctoken = self._care_of_token(cn, care_of, cni)
        if ptoken is None or ctoken is None or hni is None or cni is None:
            return _CorrespondentRecognition(label, None, option, "", None, "rr")
        kpm = formulas.privacy_management_key(ptoken, ctoken)
        home = formulas.rr_home_address(kpm, care_of, hni, cni, option)
        return _CorrespondentRecognition(label, home, option,
                                         f"Kpm of {cn}, nonce indices {hni}/{cni} ({label})",
                                         home, "rr")

    def _cn_encrypted(self, label: str, layer: IPv6Layer, m: MobilityMessage,
                      care_of: str) -> _CorrespondentRecognition | None:
        """draft 4.2 / 5.3.2: source = home address, option 0xFE = AES(Kbm, HoA), Alternate
        CoA; the home address shows once Kbm verifies (_correspondent_bu decrypts)."""
        option = layer.pseudo_home_address
        if option is None or not m.alternate_care_of_address:
            return None
        return _CorrespondentRecognition(label, None, option, "", layer.src, "enc",
                                         encrypted=True)

    def _cn_routable(self, label: str, layer: IPv6Layer, m: MobilityMessage,
                     care_of: str) -> _CorrespondentRecognition | None:
        """draft 5.3.1: the HAO is a routable pseudo home address the home binding cache
        explains."""
        if layer.pseudo_home_address is not None:
            return None
        subject = layer.home_address or layer.src
        ident = self.book.identities.get(subject)
        if ident is None or ident.kind != "routable":
            return None
        return _CorrespondentRecognition(label, ident.home_address, subject,
                                         f"the home binding cache ({ident.how})", subject,
                                         "routable")

    def _cn_plain(self, label: str, layer: IPv6Layer, m: MobilityMessage,
                  care_of: str) -> _CorrespondentRecognition | None:
        """RFC 6275: the HAO (or the source, at home) is the home address when the keys know
        it; else it is a stand-in the keys do not explain (see the module docstring)."""
        subject = layer.home_address or layer.src
        ident = self.book.identities.get(subject)
        if (ident is not None and ident.kind == "home") or self._mobile_node(subject):
            return _CorrespondentRecognition(label, subject, None, "", subject)
        return _CorrespondentRecognition(label, None,
                                         subject if layer.home_address else None, "", subject)

    def _kbm(self, cn: str, subject: str | None, care_of: str,
             m: MobilityMessage) -> tuple[bytes | None, bool | None]:
        """(Kbm, Authenticator valid): the first Kbm the keys give whose Authenticator verifies,
        else the first one (invalid), else none (validity unknown)."""
        if m.home_nonce_index is None and m.care_of_nonce_index is None \
                and self._no_binding_keys:
            return None, None  # no token can be had, nor a given Kbm: most plain BUs in a crowd
        candidates = self._kbm_candidates(cn, subject, care_of, m)
        for candidate, _source in candidates:
            if self._verify(candidate, care_of, cn, m):
                return candidate, True
        return (candidates[0][0], False) if candidates else (None, None)

    def _correspondent_bu(self, event: PacketEvent, m: MobilityMessage) -> None:
        layers = event.layers            # (event.inner and .outer: a call each, per BU)
        layer = layers[-1]
        cn = layer.dst
        care_of = m.alternate_care_of_address or layer.src
        delivered = layers[0].dst == cn
        r = self._recognise_correspondent(layer, m, care_of)
        home, pseudo, how = r.home_address, r.pseudo_home_address, r.how
        kbm, valid = self._kbm(cn, r.kbm_subject, care_of, m)
        if r.encrypted and kbm is not None and valid:
            decrypted = formulas.decrypted_home_address(kbm, pseudo)
            if decrypted == layer.src:
                home, how = decrypted, f"AES-decrypt with Kbm of {cn} ({r.label})"
            else:
                self.findings.add(PSEUDO_HOME_ADDRESS_MISMATCH, event.frame,
                                  f"option 0xFE {pseudo} does not decrypt to the BU's source "
                                  f"{layer.src} (draft 4.2)", dedupe=("mismatch", cn, pseudo))
        if home is not None:
            identities = self.book.identities     # the first explanation stays: made once
            if home not in identities:
                self.book.learn(home, Identity(home, "home", "keyring"))
            if pseudo is not None:
                self._private.add(home)
                if pseudo not in identities:
                    self.book.learn(pseudo, Identity(home, r.pseudo_kind, how))
            self.book.learn_care_of(care_of, home)
            self.attribution.attribute(event.frame, home)
        elif pseudo is not None:
            ident = self.book.identities.get(pseudo)
            if ident is not None:
                home = ident.home_address
                self.attribution.attribute(event.frame, home)
        if self.notes:
            self._note(event.frame, self._bu_note(r.label, pseudo, home, how, valid, delivered))
        if valid is False:
            self.findings.add(AUTHENTICATOR_INVALID, event.frame,
                              f"BU to {cn} (seq {m.sequence}) from {care_of}: the Authenticator "
                              f"does not verify", dedupe=("auth", cn, m.sequence, m.authenticator))
        if not delivered:
            return   # the copy inside a tunnel to the home agent: the same BU, not an entry
        if pseudo is not None:
            first = self._cn_pseudos.setdefault(pseudo, (cn, event.frame))
            if first[0] != cn:
                self.findings.add(PSEUDO_HOME_ADDRESS_REUSED, event.frame,
                                  f"pseudo home address {pseudo} already used with correspondent "
                                  f"{first[0]} (frame {first[1]})")
        identity = home or pseudo or layer.src
        previous = self.correspondent_cache.last_sequence.get((cn, identity))
        if previous is not None:
            previous, until = previous
            if event.time >= until:
                previous = None   # RFC 6275 9.5.2: that binding expired or was deleted
        private = pseudo is not None or (home is not None and home in self._private)
        hni, cni = m.home_nonce_index, m.care_of_nonce_index
        if private and previous is not None and kbm is not None and valid \
                and m.sequence is not None and hni is not None and cni is not None:
            # draft 6.3 applies to nodes that hide their home address; RFC 6275 only asks for
            # a greater number, which a plain node's +1 satisfies
            expected = formulas.next_bu_sequence(previous, kbm, hni, cni)
            if m.sequence != expected:
                self.findings.add(SEQUENCE_STEP, event.frame,
                                  f"BU to {cn} seq {m.sequence} after {previous}: draft 6.3 "
                                  f"expects {expected}")
        if m.sequence is not None:
            until = event.time + (m.lifetime if m.lifetime is not None else _FOREVER)
            self.correspondent_cache.last_sequence[(cn, identity)] = (m.sequence, until)
        self.correspondent_cache.add(CorrespondentBinding(
            correspondent=cn, home_address=home, pseudo_home_address=pseudo,
            care_of_address=care_of, sequence=m.sequence, authenticator_valid=valid,
            frame=event.frame, time=event.time))

    @staticmethod
    def _bu_note(label, pseudo, home, how, valid, delivered) -> str:
        parts = [f"correspondent BU ({label})"]
        if pseudo is not None:
            parts.append(f"pseudo HoA {pseudo} = HoA {_short(home)}" + (f" via {how}" if how
                                                                      and home else ""))
        elif home is not None:
            parts.append(f"HoA {home}")
        parts.append({True: "authenticator valid", False: "authenticator INVALID",
                      None: "no Kbm"}[valid])
        if not delivered:
            parts.append("tunnelled copy")
        return ", ".join(parts)

    # --- the real home address where pseudo ones are used (draft 6.2.1, 6.2.3) --------------

    def _clear_use(self, node: MobileNode, frame: int, use: str) -> None:
        """The real home address used in the clear where the node also uses pseudo home
        addresses (same scope) is a finding; until such a pseudo use is seen, it waits."""
        state = self._node_state(node)
        if use in state.pseudo_uses:
            self._clear_finding(node.home_address, frame, use)
        else:
            waiting = state.clear_waiting.get(use)
            if waiting is None:
                waiting = state.clear_waiting[use] = {}
            waiting[frame] = None
            if self.max_frames is not None:
                # per-frame state like the notes: a node that never uses a pseudo address in
                # this scope (plain RFC 6275) would add a frame for ever (issue 12's soak)
                forget_before(waiting, frame - self.max_frames + 1)

    def _pseudo_use(self, node: MobileNode, use: str) -> None:
        state = self._node_state(node)
        if use in state.pseudo_uses:
            return
        state.pseudo_uses.add(use)
        for frame in sorted(state.clear_waiting.pop(use, ())):
            self._clear_finding(node.home_address, frame, use)

    def _clear_finding(self, home: str, frame: int, use: str) -> None:
        scope, _, peer = use.partition(" ")
        where = {"ha": "HAO toward the home agent",
                 "cn": f"HAO toward correspondent {peer}",
                 "hoti": f"HoTI source toward correspondent {peer}"}[scope]
        self.findings.add(HOME_ADDRESS_IN_CLEAR, frame,
                          f"{where} carries the real home address {home} of "
                          f"{self._node_name(home)}, which uses pseudo home addresses there "
                          f"elsewhere", dedupe=("clear", home, frame, use))

    # --- helpers -------------------------------------------------------------------------

    def _p64(self, address: str) -> str:
        """The /64 of an address, computed once per address."""
        p64 = self._prefix64.get(address)
        if p64 is None:
            p64 = self._prefix64[address] = str(ipaddress.IPv6Network(f"{address}/64",
                                                                      strict=False))
        return p64

    def _in_prefix(self, address: str, prefix: str) -> bool:
        """Is `address` under `prefix`? (keyring and PROFILE.md: home prefixes are /64)."""
        return self._p64(address) == prefix

    def _intern(self, text: str) -> str:
        return self._strings.setdefault(text, text)

    def _note(self, frame: int, text: str) -> None:
        if not self.notes:
            return
        notes = self._annotations.setdefault(frame, [])
        if text not in notes:
            notes.append(self._intern(text))

    def _node_state(self, node: MobileNode) -> _NodeState:
        state = self._nodes.get(node.home_address)
        if state is None:
            state = self._nodes[node.home_address] = _NodeState()
        return state

    def _node_name(self, home_address: str | None) -> str:
        node = self.keyring and home_address and \
            self.keyring.mobile_node_by_home_address(home_address)
        return node.name if node else _short(home_address)

    def _nodes_of_agent(self, home_agent: str, first: str | None = None) -> list[MobileNode]:
        """The keyring nodes `home_agent` serves (computed once per agent), the one whose home
        address is `first` ahead of the others: a hint only orders the search, so a BU
        costs one node's Ki instead of a crowd's."""
        if self.keyring is None:
            return []
        nodes = self._agent_nodes.get(home_agent)
        if nodes is None:
            nodes = self._agent_nodes[home_agent] = [
                n for n in self.keyring.mobile_nodes
                if n.home_agent is None or n.home_agent == home_agent]
            homes: dict[str, MobileNode] = {}
            for n in nodes:
                homes.setdefault(n.home_address, n)
            self._agent_homes[home_agent] = homes
        hinted = self._mobile_node(first) if first else None
        if hinted is None or nodes[0] is hinted or hinted not in nodes:
            return nodes       # (nodes[0] the hinted one: already in the order asked for)
        return [hinted] + [n for n in nodes if n is not hinted]

    def _served(self, nodes: list[MobileNode], home_agent: str,
                home_address: str) -> MobileNode | None:
        """The first of `nodes` (home_agent's, _nodes_of_agent) whose home address is
        `home_address`: the hinted one, else the agent's first in keyring order (an index,
        not a walk through a crowd)."""
        if not nodes:
            return None
        if nodes[0].home_address == home_address:
            return nodes[0]
        return self._agent_homes[home_agent].get(home_address)

    def _sa_hint(self, receiver: str, esp: Esp) -> str | None:
        """Whose SA carried this ESP, as far as verified packets tell (the keyed stage's
        certain node, else an SA verified packets tied to one node): a search order only."""
        if esp.node is not None:
            return self._home_of.get(esp.node)
        sa = (receiver, esp.spi)
        if sa in self.attribution.contested:
            return None
        return self.attribution.spis.get(sa)

    def _node_prefixes(self, node: MobileNode) -> list[str]:
        """Prefixes a 5.1 pseudo home address of `node` may use (draft 5.1.3): the home agent's
        (found once per node: every Home BU asks)."""
        prefixes = self._prefixes.get(node.home_address)
        if prefixes is None:
            own = self._p64(node.home_address)
            agent = self.keyring.home_agent(node.home_agent) if node.home_agent else None
            prefixes = list(agent.prefixes) if agent else []
            prefixes = self._prefixes[node.home_address] = prefixes + (
                [own] if own not in prefixes else [])
        return prefixes

    def _derive_prefix(self, node: MobileNode) -> str:
        """The prefix a tunnel-mode pseudo home address is derived with (5.2.2): the first home
        agent prefix other than the home address's own (draft 5.1.3 "preferably"), else its own."""
        derived = self._derived_prefix.get(node.home_address)
        if derived is None:
            prefixes = self._node_prefixes(node)
            own = self._p64(node.home_address)
            derived = self._derived_prefix[node.home_address] = next(
                (p for p in prefixes if p != own), own)
        return derived

    def _key_indices(self, node: MobileNode, esp_sequence: int | None) -> list[int]:
        """Candidate i for Ki (draft 5.1.4): the ESP sequence number, or the node's counter."""
        if node.key_index == "counter":
            state = self._node_state(node)
            return [state.counter + step for step in range(1, COUNTER_WINDOW + 1)]
        return [esp_sequence] if esp_sequence is not None else []

    @staticmethod
    def _how(node: MobileNode, i: int) -> str:
        """How the keys give a node's pseudo home address: "Kph of mn1, i = ESP seq 7"."""
        return f"Kph of {node.name}, " + (f"i = counter {i}" if node.key_index == "counter"
                                          else f"i = ESP seq {i}")

    def _match_routable(self, node: MobileNode, address: str, i: int) -> bool:
        """draft 5.1.3/5.1.4: is `address` node's pseudo home address under Ki?"""
        ki = formulas.dynamic_key(node.kph.value, i)
        prefix = next((p for p in self._node_prefixes(node) if self._in_prefix(address, p)),
                      None)
        if prefix is None:
            return False
        home = formulas.address_bytes(node.home_address)
        if node.phoa_cipher == "aes-ctr":
            # invertible: decrypt the IID, restore the real prefix from the keyring (5.2.1)
            return formulas.routable_home_interface_id(ki, address) == home[8:]
        return formulas.routable_pseudo_home_address(ki, node.home_address, prefix,
                                                     node.phoa_cipher) == address

    # Mobility Header type (RFC 6275 6.1.2) -> its handler, declared once; a type without one
    # (BRR, or one unknown) is counted by the report and attributed, nothing more
    _HANDLERS: dict[int, Callable[[KeyedAnalyzer, PacketEvent, MobilityMessage], None]] = {
        MHType.BU: _bu, MHType.BA: _ba, MHType.HOTI: _hoti, MHType.HOT: _hot,
        MHType.COTI: _coti, MHType.COT: _cot, MHType.BE: _be}

    # The forms of Binding Update the keys tell apart, each named by the procedures that send
    # it (dissectors.procedures), tried in order; a new procedure's form is one row and its
    # recogniser. A Home BU whose home address field is a keyring home address is the node's
    # own before any pseudo home address is tried (a comparison first, AES per node and i
    # after); the plain RFC 6275 correspondent BU takes whatever no other form did.
    HOME_BU_FORMS: tuple[BUForm, ...] = (
        BUForm((PLAIN_HOME,), "HAO (the source, at home) = a keyring home address, ESP "
               "transport", _home_in_clear, tunnel=False),
        BUForm((HOME_TUNNEL,), "ESP tunnel, inner source = the home address", _home_tunnel,
               tunnel=True),
        BUForm((HOME_TRANSPORT,), "HAO = a pseudo home address the keyring's Kph derives",
               _home_routable),
    )
    CORRESPONDENT_BU_FORMS: tuple[BUForm, ...] = (
        BUForm((RR_PRIVACY,), "option 0xFE, no Alternate CoA: source = care-of address",
               _cn_privacy_rr, option=True, alternate=False),
        BUForm((REVERSE_TUNNELLED_BU, CN_INITIATED_RR), "option 0xFE and an Alternate CoA: "
               "source = home address", _cn_encrypted, option=True, alternate=True),
        BUForm((MN_INITIATED_RR,), "HAO = a pseudo home address a Home BU registered",
               _cn_routable, option=False),
        BUForm((PLAIN_CORRESPONDENT,), "HAO (or source) = the home address, or an address "
               "the keys do not explain", _cn_plain),
    )
    # (option 0xFE?, Alternate CoA?) -> the forms such a BU can be, in CORRESPONDENT_BU_FORMS
    # order; in an ESP tunnel? -> the Home BU forms it can be, in HOME_BU_FORMS order
    _CORRESPONDENT_FORMS_BY_WIRE = _forms_by_wire(CORRESPONDENT_BU_FORMS)
    _HOME_FORMS_BY_TUNNEL = _forms_by_tunnel(HOME_BU_FORMS)
