"""The lab's actors: mobile nodes, a home agent and correspondents, and the world that runs
a scenario's timeline through them.

Each procedure (a row of dissectors.procedures) is played by World methods that emit the
packets the draft draws, in the order they cross the three paths (mn-ha, ha-cn, mn-cn), and
update the caches the actors hold; `HOME_PLAYS` and `SESSION_PLAYS` at the end name them per
procedure, and the World dispatches through them. truth.json is read from those caches
(HomeAgent.binding_cache, Correspondent.binding_cache), never from the capture.

Keys, nonces, cookies, SPIs and ESP IVs are drawn from the seed with HMAC-SHA256(seed, label),
so that the same scenario and seed give byte-identical output whatever the order of drawing.
"""
from __future__ import annotations

import ipaddress
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field

from dissectors.procedures import (
    BY_ID,
    CN_INITIATED_RR,
    HOME_TRANSPORT,
    HOME_TUNNEL,
    MN_INITIATED_RR,
    PLAIN_CORRESPONDENT,
    PLAIN_HOME,
    PREFIX_DISCOVERY,
    REVERSE_TUNNELLED_BU,
    REVERSE_TUNNELLING,
    RR_PRIVACY,
    Kind,
    Procedure,
    of_kind,
)
from keys import formulas as F
from keys.errors import UserError
from lab import addresses
from lab import packets as P
from lab.draw import Draw
from lab.scenario import SAS_PER_NODE, Event, MobileNodeSpec, Scenario
from lab.spi import SpiAllocator, sequential

EPOCH_BASE_USEC = 1_767_225_600 * 1_000_000     # 2026-01-01T00:00:00Z: a fixed capture epoch
HOP_DELAY = 0.004                               # seconds between consecutive packets of a flow
BINDACK_TIMEOUT = 1.0                           # RFC 6275 13: INITIAL_BINDACK_TIMEOUT
DATA_GAP = 0.05
DATA_PORT = 45000                               # UDP data between MN and CN (no dissector on it)

# Ethernet addresses per role; lab.netns gives the veth ends the same ones, so the bytes sent
# live are the bytes in capture.pcapng.
MAC_HA = bytes.fromhex("020000000001")
MAC_MN = bytes.fromhex("020000000002")
MAC_BG = (bytes.fromhex("020000000021"), bytes.fromhex("020000000022"))


def cn_mac(index: int) -> bytes:
    return bytes.fromhex("0200000000") + bytes([0x11 + index])


@dataclass
class Frame:
    usec: int                    # since EPOCH_BASE_USEC
    data: bytes                  # Ethernet frame
    path: str                    # mn-ha | ha-cn | mn-cn | other
    node: str | None
    procedure: str
    what: str
    link: str                    # which netns link carries it: mn-ha, ha-cn1, mn-cn2, other
    sender: str                  # role that sends it on that link: mn, ha, cn1, cn2, bg
    number: int = 0              # frame number in the capture (World.finish)

    @property
    def time(self) -> float:
        return (EPOCH_BASE_USEC + self.usec) / 1e6


@dataclass
class HomeAgent:
    address: str
    prefixes: tuple[str, ...]
    name: str
    binding_cache: list[dict] = field(default_factory=list)   # every accepted Home BU


@dataclass
class Correspondent:
    name: str
    index: int
    address: str
    kcn: bytes
    privacy_aware: bool
    nonces: dict[int, bytes] = field(default_factory=dict)
    next_nonce_index: int = 1
    binding_cache: list[dict] = field(default_factory=list)   # every accepted BU

    def new_nonce(self, draw: Draw) -> tuple[int, bytes]:
        """RFC 6275 5.2.2: a fresh nonce per test message here, so indices never repeat."""
        index = self.next_nonce_index
        self.next_nonce_index += 1
        self.nonces[index] = draw.bytes(f"nonce|{self.name}|{index}", 8)
        return index, self.nonces[index]


@dataclass
class CorrespondentSession:
    """The mobile node's Binding Update List entry for one correspondent (RFC 6275 11.1)."""
    procedure: str
    data: int
    sequence: int                 # last BU sequence number sent
    pseudo: str | None = None     # the pseudo home address in use with this correspondent
    port: int = 0


@dataclass
class MobileNode:
    spec: MobileNodeSpec
    index: int
    ks: bytes
    kph: bytes
    # RFC 3776 4.2: transport-mode SAs for Home BU/BA and prefix discovery, tunnel-mode SAs for
    # HoTI/HoT and reverse-tunnelled traffic; draft 5.2.2 also sends the Home BU in the tunnel
    transport_out: P.EspSa
    transport_in: P.EspSa
    tunnel_out: P.EspSa
    tunnel_in: P.EspSa
    ha: HomeAgent
    mac: bytes                              # its interface's MAC (eui64 care-of IIDs)
    stable_secret: bytes                    # RFC 7217 secret_key (stable care-of IIDs)
    addresses_formed: int = 0               # care-of addresses formed so far
    clock: float = 0.0                      # when its last packet went out
    care_of: str | None = None
    home_sequence: int = 0
    home_pseudo: str | None = None          # pseudo home address of the last home binding
    home_bus_sent: int = 0                  # key_index = "counter": i of the last Home BU
    sessions: dict[str, CorrespondentSession] = field(default_factory=dict)
    # last BU sequence number per correspondent, kept when sessions end: the correspondent may
    # still hold the binding, and RFC 6275 9.5.1 wants each BU's number above the last one
    last_sequence: dict[str, int] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def home_address(self) -> str:
        return self.spec.home_address

    def sas(self) -> list[P.EspSa]:
        return [self.transport_out, self.transport_in, self.tunnel_out, self.tunnel_in]


SA_LABELS = ("MN->HA transport", "HA->MN transport", "MN->HA tunnel", "HA->MN tunnel")


def home_exchanges_bound(scenario: Scenario, node: str) -> int:
    """At most how many Home BU exchanges `node`'s timeline makes, each renewing its SPIs
    (draft 6.4): one per move and return-home, one per session whose procedure registers a new
    pseudo home address first (5.3.1), and at each move one per correspondent it registered
    with so since it was last home (World.move refreshes every binding of the Binding Update
    List, and such a refresh is a Home BU first)."""
    bound, with_531 = 0, set()
    for ev in scenario.events:
        if ev.node != node:
            continue
        if ev.action == "move":
            bound += 1 + len(with_531)
        elif ev.action == "return-home":
            bound += 1
            with_531.clear()
        elif ev.action == "session" and SESSION_PLAYS[ev.procedure].new_pseudo is not None:
            bound += 1
            with_531.add(ev.correspondent)
    return bound


def background_frames(kind: str, count: int) -> int:
    """Packets of one background flow (World.background): a UDP datagram each, an ICMPv6
    echo request and reply each, TCP's handshake (3), each segment with its ACK, FIN both
    ways and the last ACK (3)."""
    return {"udp": count, "icmpv6": 2 * count, "tcp": 6 + 2 * count}[kind]


class World:
    """Runs a scenario's timeline; collects frames and the actors' caches.

    Each mobile node keeps its own clock: its events run one after another, while different
    nodes' events run side by side (a burst of moves interleaves its Home BUs). Frames are
    numbered in time order when the run ends (`finish`)."""

    def __init__(self, scenario: Scenario, seed: int | None = None):
        self.scenario = scenario
        self.seed = scenario.seed if seed is None else seed
        self.draw = Draw(scenario.name, self.seed)
        self.clock = 0.0                      # the clock of the actor whose event runs now
        self.frames: list[Frame] = []         # in the order emitted; sorted by time at the end
        self.events_done = 0                  # scenario events run so far (progress bars)
        self.has = {h.name: HomeAgent(h.address, h.prefixes, h.name)
                    for h in scenario.home_agents}
        self.cns = {}
        for i, c in enumerate(scenario.correspondents):
            self.cns[c.name] = Correspondent(
                c.name, i, c.address, c.kcn or self.draw.bytes(f"kcn|{c.name}", 20),
                c.privacy_aware)
        self.macs = {"mn": MAC_MN, "ha": MAC_HA, "bg": MAC_BG[0], "bg2": MAC_BG[1]}
        for cn in self.cns.values():
            self.macs[self.cn_role(cn)] = cn_mac(cn.index)
        self.on_link: dict[str, str] = {}     # care-of address -> the node that holds it
        self.spis = SpiAllocator()
        self.mns = {}
        node_macs = {m.mac for m in scenario.mobile_nodes if m.mac}
        for i, m in enumerate(scenario.mobile_nodes):
            ks = m.ks or self.draw.bytes(f"ks|{m.name}", 16)
            kph = F.kph_from_ks(ks)
            renewals = home_exchanges_bound(scenario, m.name) if m.privacy else 0
            sas = []
            for k in range(SAS_PER_NODE):
                spi = self.spis.allocate(f"{m.name} {SA_LABELS[k]}", kph, renewals,
                                         self.spi_candidates(m, i, k))
                sa = P.EspSa(spi, self.draw.bytes(f"esp-enc|{m.name}|{k}", 16),
                             self.draw.bytes(f"esp-auth|{m.name}|{k}", 20),
                             seq=self.first_esp_sequence(m, k))
                sas.append(sa)
            mac = m.mac or self.node_mac(m.name, node_macs)
            node_macs.add(mac)
            self.mns[m.name] = MobileNode(
                m, i, ks, kph, *sas, ha=self.has[m.home_agent], mac=mac,
                stable_secret=self.draw.bytes(f"rfc7217-secret|{m.name}", 16),
                home_sequence=self.draw.int(f"home-seq|{m.name}", 0, 30000) if m.privacy else 0)

    # --- what each node is given at setup --------------------------------------------------

    def spi_candidates(self, m: MobileNodeSpec, index: int, k: int):
        """SPIs to try for SA k of node `index`, best first (lab.spi takes the first free)."""
        if m.first_spi is not None:
            return sequential(m.first_spi + k)
        if m.spi_allocation == "sequential":
            # manual keying: node k's first SPI = base + k * step, its SAs next to each other
            return sequential(self.scenario.spi_base + index * self.scenario.spi_step + k)
        return (self.draw.int(f"spi|{m.name}|{k}" + (f"|{n}" if n else ""), 0x100, 1 << 32)
                for n in itertools.count())

    def first_esp_sequence(self, m: MobileNodeSpec, k: int) -> int:
        """RFC 4303 3.3.3: a new SA sends sequence number 1 first. SAs set up `together` all
        start there; `staggered` ones were set up earlier and have counted since."""
        if m.esp_sequence is not None:
            return m.esp_sequence
        if self.scenario.sa_setup == "staggered":
            return self.draw.int(f"esp-seq|{m.name}|{k}", 1, 1 << 16)
        return 1

    def node_mac(self, name: str, taken: set[bytes]) -> bytes:
        """A universally administered unicast MAC, as a network card has (IEEE 802: the two
        low bits of the first octet clear), unique in the scenario."""
        for n in itertools.count():
            raw = self.draw.bytes(f"mac|{name}" + (f"|{n}" if n else ""), 6)
            mac = bytes([raw[0] & 0xFC]) + raw[1:]
            if mac not in taken:
                return mac
        raise AssertionError("unreachable")

    # --- emitting ------------------------------------------------------------------------

    def emit(self, path: str, link: str, sender: str, packet: bytes, node: str | None,
             procedure: str, what: str, delay: float = HOP_DELAY) -> Frame:
        """Record one packet on `link` sent by `sender`, `delay` after the actor's last one."""
        self.clock += delay
        if link == "other":
            sender_mac, receiver_mac = (MAC_BG if sender == "bg" else MAC_BG[::-1])
        else:
            a, b = link.split("-")
            sender_mac, receiver_mac = self.macs[sender], self.macs[b if sender == a else a]
        usec = round(self.clock * 1_000_000)
        frame = Frame(usec, P.ethernet(receiver_mac, sender_mac, packet), path, node, procedure,
                      what, link, sender)
        self.frames.append(frame)
        return frame

    def iv(self, sa: P.EspSa) -> bytes:
        """A deterministic IV per (SPI, sequence number): unpredictable enough for a lab."""
        return self.draw.bytes(f"iv|{sa.spi}|{sa.seq}", 16)

    def esp(self, sa: P.EspSa) -> P.Esp:
        """The ESP processing of one SA, as the packet formats of lab.packets take it."""
        return lambda packet, tunnel=None: sa.protect(packet, self.iv(sa), tunnel)

    def cn_link(self, cn: Correspondent, side: str) -> str:
        return f"{side}-cn{cn.index + 1}"

    def cn_role(self, cn: Correspondent) -> str:
        return f"cn{cn.index + 1}"

    # --- timeline ---------------------------------------------------------------------------

    def run(self) -> None:
        for ev in self.scenario.events:
            if ev.action == "background":
                self.clock = ev.at              # each background flow runs on its own
                self.background(ev)
                continue
            mn = self.mns[ev.node]
            self.clock = max(mn.clock, ev.at)
            if ev.action == "move":
                self.move(mn, ev)
            elif ev.action == "return-home":
                self.return_home(mn, ev)
            elif ev.action == "session":
                self.require_away(mn, ev)
                self.session(mn, self.cns[ev.correspondent], ev.procedure, ev.data)
            elif ev.action == "prefix-discovery":
                self.require_away(mn, ev)
                self.prefix_discovery(mn)
            mn.clock = self.clock
            self.events_done += 1
        self.finish()

    def finish(self) -> None:
        """Frames in time order (ties in the order emitted), numbered from 1; the caches'
        entries then name their frame by number."""
        self.frames.sort(key=lambda f: f.usec)
        for number, frame in enumerate(self.frames, 1):
            frame.number = number
        for entry in self.binding_entries():
            entry["frame"] = entry["frame"].number

    def binding_entries(self) -> list[dict]:
        return [b for actor in (*self.has.values(), *self.cns.values())
                for b in actor.binding_cache]

    def require_away(self, mn: MobileNode, ev: Event) -> None:
        if mn.care_of is None:
            raise UserError(f"{self.scenario.path}: event at {ev.at}: {mn.name} is at home "
                            f"(no care-of address yet): move it first")

    def form_care_of(self, mn: MobileNode, prefix: str) -> str:
        """The address the node forms on the visited prefix by its IID kind (lab.addresses);
        RFC 8981 draws a new random IID for every address."""
        formed = mn.addresses_formed
        mn.addresses_formed += 1
        return addresses.form_care_of(
            mn.spec.care_of_iid, prefix, secret=mn.stable_secret, mac=mn.mac,
            draw=lambda attempt: self.draw.bytes(f"iid|{mn.name}|{formed}|{attempt}", 8),
            in_use=lambda address: self.on_link.get(address, mn.name) != mn.name)

    def attach(self, mn: MobileNode, care_of: str | None, ev: Event) -> None:
        """The node leaves its care-of address (if any) and takes `care_of` (None: home)."""
        holder = self.on_link.get(care_of) if care_of else None
        if holder is not None and holder != mn.name:
            raise UserError(f"{self.scenario.path}: event at {ev.at}: {mn.name}'s care-of "
                            f"address {care_of} is held by {holder}")
        if mn.care_of is not None and self.on_link.get(mn.care_of) == mn.name:
            del self.on_link[mn.care_of]
        if care_of is not None:
            self.on_link[care_of] = mn.name
        mn.care_of = care_of

    def move(self, mn: MobileNode, ev: Event) -> None:
        """Handover: Home BU to the new care-of address, then re-register every correspondent
        binding in the Binding Update List (RFC 6275 11.7.2)."""
        care_of = ev.care_of_address or self.form_care_of(mn, ev.care_of_prefix)
        self.attach(mn, care_of, ev)
        self.home_registration(mn, self.scenario.bu_lifetime, ev.lose_bu)
        for cn_name, sess in list(mn.sessions.items()):
            self.session(mn, self.cns[cn_name], sess.procedure, 1, refresh=True)

    def return_home(self, mn: MobileNode, ev: Event) -> None:
        """RFC 6275 11.5.4: back on the home link, de-register (lifetime 0) with the home agent."""
        if mn.care_of is None:
            raise UserError(f"{self.scenario.path}: event at {ev.at}: {mn.name} is already home")
        self.attach(mn, None, ev)
        mn.sessions.clear()
        self.home_registration(mn, 0, ev.lose_bu)

    # --- draft 5.2: Home Binding Update and Acknowledgement --------------------------------

    def pseudo_from_ha_key(self, mn: MobileNode, i: int) -> str:
        """draft 5.1.3 / 5.1.4: prefix | E(Ki, IID), Ki = HMAC_SHA1(Kph, i); the prefix is one
        other than the home address's own when the home agent has one (PROFILE.md)."""
        own = ipaddress.IPv6Network(mn.home_address + "/64", strict=False)
        prefix = next((p for p in mn.ha.prefixes if ipaddress.IPv6Network(p) != own),
                      mn.ha.prefixes[0])
        return F.routable_pseudo_home_address(F.dynamic_key(mn.kph, i), mn.home_address,
                                              prefix, mn.spec.phoa_cipher)

    def home_registration(self, mn: MobileNode, lifetime: int, lose_first: bool) -> str:
        """One Home BU exchange; a lost first BU is retransmitted after the BA timeout with a
        new sequence number, a new ESP sequence number and so a new pseudo home address
        (draft 5.2.1, last paragraph). Returns the pseudo home address (or the home address)."""
        attempts = 2 if lose_first else 1
        for attempt in range(attempts):
            mn.home_sequence = (mn.home_sequence + 1) % 65536
            if attempt:
                self.clock += BINDACK_TIMEOUT
            bu_frame, pseudo, play = self.send_home_bu(mn, lifetime,
                                                       lost=attempt < attempts - 1)
        self.send_home_ba(mn, lifetime, pseudo, play)
        care_of = mn.care_of or mn.home_address
        mn.ha.binding_cache.append({
            "home_agent": mn.ha.address, "home_address": mn.home_address,
            "pseudo_home_address": pseudo, "care_of_address": care_of,
            "sequence": mn.home_sequence, "lifetime": lifetime, "frame": bu_frame,
            "time": bu_frame.time})
        mn.home_pseudo = pseudo
        if mn.spec.privacy:
            # draft 6.4: after a Home BU exchange both ends move every SA of this node to the
            # next SPI of the chain, so no SPI links two exchanges on the MN-HA path
            for sa, label in zip(mn.sas(), SA_LABELS, strict=True):
                sa.spi = F.next_spi(mn.kph, sa.spi)
                if self.spis.owner.get(sa.spi) != f"{mn.name} {label}":
                    # lab.spi reserved the chain as far as home_exchanges_bound reaches
                    raise RuntimeError(f"{mn.name} {label}: SPI 0x{sa.spi:08x} not reserved")
        return pseudo or mn.home_address

    def send_home_bu(self, mn: MobileNode, lifetime: int, lost: bool):
        """One Home BU: from the home link the de-registration (RFC 6275 11.5.4, the RFC 3776
        form whatever the node's home_bu), else the node's home registration procedure's
        (HOME_PLAYS). Returns (frame, pseudo home address or None, the play or None at home)."""
        units = lifetime // 4
        flags = P.BU_FLAG_A | P.BU_FLAG_H
        what = "Home BU" + (" (lost)" if lost else "")
        # draft 5.1.4 without ESP sequence numbers: a counter both ends keep; here the count of
        # Home BUs the node has sent, from 1, retransmissions and de-registrations included
        mn.home_bus_sent += 1
        counter = mn.home_bus_sent if mn.spec.key_index == "counter" else None
        if mn.care_of is None:
            # RFC 6275 11.5.4: de-registration from the home link; Alternate CoA = home address
            bu = P.BindingUpdate(mn.home_sequence, units, flags, alternate_care_of=mn.home_address)
            pkt = P.home_bu_at_home(mn.home_address, mn.ha.address, bu,
                                    self.esp(mn.transport_out))
            return (self.emit("mn-ha", "mn-ha", "mn", pkt, mn.name, PLAIN_HOME.id, what),
                    None, None)
        play = HOME_PLAYS[mn.spec.home_bu]
        bu = P.BindingUpdate(mn.home_sequence, units, flags, alternate_care_of=mn.care_of)
        frame, pseudo = play.home_bu(self, mn, bu, counter, what)
        return frame, pseudo, play

    def home_bu_plain(self, mn: MobileNode, bu: P.BindingUpdate, counter: int | None,
                      what: str) -> tuple[Frame, str | None]:
        """RFC 3776 4.1: the home address in the HAO, ESP transport mode."""
        pkt = P.home_bu_transport(mn.care_of, mn.ha.address, mn.home_address, bu,
                                  self.esp(mn.transport_out))
        return self.emit("mn-ha", "mn-ha", "mn", pkt, mn.name, PLAIN_HOME.id, what), None

    def home_bu_transport(self, mn: MobileNode, bu: P.BindingUpdate, counter: int | None,
                          what: str) -> tuple[Frame, str | None]:
        """draft 5.2.1: a pseudo home address in the HAO, ESP transport mode."""
        # draft 5.1.4 / 5.2.1: i = the ESP sequence number this BU will carry
        pseudo = self.pseudo_from_ha_key(mn, counter or mn.transport_out.seq)
        pkt = P.home_bu_transport(mn.care_of, mn.ha.address, pseudo, bu,
                                  self.esp(mn.transport_out))
        return self.emit("mn-ha", "mn-ha", "mn", pkt, mn.name, HOME_TRANSPORT.id, what), pseudo

    def home_bu_tunnel(self, mn: MobileNode, bu: P.BindingUpdate, counter: int | None,
                       what: str) -> tuple[Frame, str | None]:
        """draft 5.2.2: the Home BU in the ESP tunnel; both ends derive the pseudo address."""
        # draft 5.1.4 / 5.2.2: i = the outer ESP sequence number this BU will carry
        pseudo = self.pseudo_from_ha_key(mn, counter or mn.tunnel_out.seq)
        pkt = P.home_bu_tunnel(mn.care_of, mn.ha.address, mn.home_address, bu,
                               self.esp(mn.tunnel_out))
        return self.emit("mn-ha", "mn-ha", "mn", pkt, mn.name, HOME_TUNNEL.id, what), pseudo

    def send_home_ba(self, mn: MobileNode, lifetime: int, pseudo: str | None,
                     play: HomePlay | None) -> Frame:
        ha, seq, units = mn.ha.address, mn.home_sequence, lifetime // 4
        if play is None:
            pkt = P.home_ba_at_home(ha, mn.home_address, seq, self.esp(mn.transport_in))
            return self.emit("mn-ha", "mn-ha", "ha", pkt, mn.name, PLAIN_HOME.id, "Home BA")
        return play.home_ba(self, mn, seq, units, pseudo, play.procedure.id)

    def home_ba_transport(self, mn: MobileNode, seq: int, units: int, pseudo: str | None,
                          procedure: str) -> Frame:
        """RFC 3776 4.1 / draft 5.2.1: the HA puts the (pseudo) home address of this BU in the
        RH2, ESP transport mode."""
        pkt = P.home_ba_transport(mn.ha.address, mn.care_of, pseudo or mn.home_address, seq,
                                  units, self.esp(mn.transport_in))
        return self.emit("mn-ha", "mn-ha", "ha", pkt, mn.name, procedure, "Home BA")

    def home_ba_tunnel(self, mn: MobileNode, seq: int, units: int, pseudo: str | None,
                       procedure: str) -> Frame:
        """draft 5.2.2: the Home BA in the ESP tunnel."""
        pkt = P.home_ba_tunnel(mn.ha.address, mn.care_of, mn.home_address, seq, units,
                               self.esp(mn.tunnel_in))
        return self.emit("mn-ha", "mn-ha", "ha", pkt, mn.name, procedure, "Home BA")

    # --- return routability and correspondent registration ---------------------------------

    def session(self, mn: MobileNode, cn: Correspondent, procedure: str, data: int,
                refresh: bool = False) -> None:
        """Start (or, after a handover, refresh) communication with a correspondent by one of
        the correspondent procedures; SESSION_PLAYS says which methods play each."""
        proc, play = BY_ID[procedure], SESSION_PLAYS[procedure]
        first = mn.last_sequence.get(cn.name, (
            self.draw.int(f"cn-seq|{mn.name}|{cn.name}", 0, 65536) if mn.spec.privacy else 0))
        count = 1 if refresh else data
        if not proc.binds:
            # draft 5.4: no binding at the correspondent, data through the home agent
            sess = CorrespondentSession(procedure, data, first, port=DATA_PORT + mn.index)
            mn.sessions[cn.name] = sess
            play.data(self, mn, cn, sess, count, procedure)
            return
        self.require_procedure(mn, proc)
        sess = mn.sessions.get(cn.name)
        if sess is None or not BY_ID[sess.procedure].binds:
            sess = CorrespondentSession(procedure, data, first, port=DATA_PORT + mn.index)
            mn.sessions[cn.name] = sess
            if play.opening is not None:
                play.opening(self, mn, cn, procedure)
        sess.procedure = procedure           # a later session may switch procedure
        home_source = mn.home_address
        if play.new_pseudo is not None:
            sess.pseudo = home_source = play.new_pseudo(self, mn)
        rr = self.return_routability(mn, cn, home_source, procedure, play.p_flag)
        self.correspondent_bu(mn, cn, sess, rr, procedure, play)
        play.data(self, mn, cn, sess, count, procedure)

    def require_procedure(self, mn: MobileNode, proc: Procedure) -> None:
        """What a correspondent procedure needs of the node (dissectors.procedures)."""
        if proc.needs_privacy_node and not mn.spec.privacy:
            raise UserError(f"{self.scenario.path}: {mn.name}: procedure {proc.id} needs a "
                            f"privacy node (privacy = true)")
        if proc.needs_routable_pseudo and not BY_ID[mn.spec.home_bu].routable_pseudo:
            routable = " or ".join(p.id for p in of_kind(Kind.HOME) if p.routable_pseudo)
            raise UserError(f"{self.scenario.path}: {mn.name}: procedure {proc.id} needs "
                            f"home_bu = {routable} (a routable pseudo home address)")

    def pseudo_for_correspondent(self, mn: MobileNode) -> str:
        """draft 5.3.1: a new pseudo home address for this correspondent, announced to the
        home agent by a Home BU first."""
        return self.home_registration(mn, self.scenario.bu_lifetime, False)

    def return_routability(self, mn: MobileNode, cn: Correspondent, home_source: str,
                           procedure: str, privacy_flag: bool) -> dict:
        """RFC 6275 5.2.5 with draft 4.1 (P flag, privacy keygen token in the HoT) and draft
        5.3.1 (pseudo home address as the HoTI source). HoTI/HoT cross the MN-HA path in the
        ESP tunnel (RFC 3776 4.3) and the HA-CN path in clear (hop limit - 1)."""
        ha, coa, name = mn.ha.address, mn.care_of, mn.name
        home_cookie = self.draw.bytes(f"hoti|{name}|{cn.name}|{len(self.frames)}", 8)
        care_of_cookie = self.draw.bytes(f"coti|{name}|{cn.name}|{len(self.frames)}", 8)
        mn_cn, ha_cn, cn_role = self.cn_link(cn, "mn"), self.cn_link(cn, "ha"), self.cn_role(cn)

        def emit(path, link, sender, pkt, what):
            self.emit(path, link, sender, pkt, name, procedure, what)

        emit("mn-ha", "mn-ha", "mn", P.tunnelled(
            P.hoti(home_source, cn.address, home_cookie, privacy_flag), coa, ha,
            self.esp(mn.tunnel_out)), "HoTI")
        emit("mn-cn", mn_cn, "mn", P.coti(coa, cn.address, care_of_cookie), "CoTI")
        emit("ha-cn", ha_cn, "ha",
             P.hoti(home_source, cn.address, home_cookie, privacy_flag, 63), "HoTI")
        c_index, c_nonce = cn.new_nonce(self.draw)
        care_of_token = F.care_of_keygen_token(cn.kcn, coa, c_nonce)
        emit("mn-cn", mn_cn, cn_role,
             P.cot(cn.address, coa, c_index, care_of_cookie, care_of_token), "CoT")
        h_index, h_nonce = cn.new_nonce(self.draw)
        home_token = F.home_keygen_token(cn.kcn, home_source, h_nonce)
        privacy_token = (F.privacy_keygen_token(cn.kcn, h_nonce)
                         if privacy_flag and cn.privacy_aware else None)
        emit("ha-cn", ha_cn, cn_role, P.hot(cn.address, home_source, h_index, home_cookie,
                                            home_token, privacy_token), "HoT")
        emit("mn-ha", "mn-ha", "ha", P.tunnelled(
            P.hot(cn.address, home_source, h_index, home_cookie, home_token, privacy_token, 63),
            ha, coa, self.esp(mn.tunnel_in)), "HoT")
        return {"home_index": h_index, "care_of_index": c_index, "home_token": home_token,
                "care_of_token": care_of_token, "privacy_token": privacy_token,
                "kbm": F.binding_management_key(home_token, care_of_token)}

    def correspondent_bu(self, mn: MobileNode, cn: Correspondent, sess: CorrespondentSession,
                         rr: dict, procedure: str, play: SessionPlay) -> None:
        """The correspondent BU in the procedure's form (`play.bu`), its binding and the BA."""
        coa, kbm, name = mn.care_of, rr["kbm"], mn.name
        indices = (rr["home_index"], rr["care_of_index"])
        if mn.spec.privacy:
            sess.sequence = F.next_bu_sequence(sess.sequence, kbm, *indices)   # draft 6.3
        else:
            sess.sequence = (sess.sequence + 1) % 65536                      # RFC 6275: +1
        mn.last_sequence[cn.name] = sess.sequence
        units = self.scenario.bu_lifetime // 4
        bu = P.BindingUpdate(sess.sequence, units, P.BU_FLAG_A,
                             alternate_care_of=coa if play.alternate_care_of else None,
                             nonce_indices=indices, with_authenticator=True)
        frame = play.bu(self, mn, cn, sess, rr, bu, procedure)
        cn.binding_cache.append({
            "correspondent": cn.address, "home_address": mn.home_address,
            "pseudo_home_address": sess.pseudo, "care_of_address": coa,
            "sequence": sess.sequence, "authenticator_valid": True, "frame": frame,
            "time": frame.time})
        # RFC 6275 6.1.8: to the care-of address, the (pseudo) home address in the RH2
        # (PROFILE.md "Where the pseudo home address travels")
        pkt = P.correspondent_ba(cn.address, coa, sess.pseudo or mn.home_address, sess.sequence,
                                 units, kbm)
        self.emit("mn-cn", self.cn_link(cn, "mn"), self.cn_role(cn), pkt, name, procedure, "BA")

    def bu_plain(self, mn: MobileNode, cn: Correspondent, sess: CorrespondentSession, rr: dict,
                 bu: P.BindingUpdate, procedure: str) -> Frame:
        """RFC 6275 6.1.7: the home address in the HAO."""
        sess.pseudo = None
        pkt = P.correspondent_bu_with_hao(mn.care_of, cn.address, mn.home_address, bu, rr["kbm"])
        return self.emit("mn-cn", self.cn_link(cn, "mn"), "mn", pkt, mn.name, procedure, "BU")

    def bu_routable_pseudo(self, mn: MobileNode, cn: Correspondent, sess: CorrespondentSession,
                           rr: dict, bu: P.BindingUpdate, procedure: str) -> Frame:
        """draft 5.3.1: the pseudo home address the Home BU registered, in the HAO."""
        pkt = P.correspondent_bu_with_hao(mn.care_of, cn.address, sess.pseudo or mn.home_address,
                                          bu, rr["kbm"])
        return self.emit("mn-cn", self.cn_link(cn, "mn"), "mn", pkt, mn.name, procedure, "BU")

    def bu_rr_privacy(self, mn: MobileNode, cn: Correspondent, sess: CorrespondentSession,
                      rr: dict, bu: P.BindingUpdate, procedure: str) -> Frame:
        """draft 4.1: option 0xFE = String XOR HoA, from the care-of address."""
        coa, kbm, mn_cn = mn.care_of, rr["kbm"], self.cn_link(cn, "mn")
        if rr["privacy_token"] is None:
            # draft 4.1 / PROFILE.md: a correspondent that ignored the P flag sent no privacy
            # keygen token, so the mobile node falls back to the plain RFC 6275 BU (HAO = HoA)
            sess.pseudo = None
            pkt = P.correspondent_bu_with_hao(coa, cn.address, mn.home_address, bu, kbm)
            return self.emit("mn-cn", mn_cn, "mn", pkt, mn.name, procedure, "BU")
        # draft 4.1: pseudo home address = String XOR HoA, Kpm from the privacy token
        kpm = F.privacy_management_key(rr["privacy_token"], rr["care_of_token"])
        sess.pseudo = F.rr_pseudo_home_address(kpm, coa, rr["home_index"], rr["care_of_index"],
                                               mn.home_address)
        pkt = P.correspondent_bu_rr_privacy(coa, cn.address, sess.pseudo, bu, kbm)
        return self.emit("mn-cn", mn_cn, "mn", pkt, mn.name, procedure, "BU")

    def bu_reverse_tunnelled(self, mn: MobileNode, cn: Correspondent, sess: CorrespondentSession,
                             rr: dict, bu: P.BindingUpdate, procedure: str) -> Frame:
        """draft 4.2 / 5.3.2: pseudo = AES(Kbm, HoA), reverse-tunnelled to the HA, then in
        clear to the CN: the copy the CN receives is the binding (docs/DESIGN.md)."""
        if not cn.privacy_aware:
            raise UserError(f"{self.scenario.path}: {cn.name} is not privacy-aware: procedure "
                            f"{procedure} needs option 0xFE (use 4.1 to see the fallback)")
        coa, kbm, name = mn.care_of, rr["kbm"], mn.name
        sess.pseudo = F.encrypted_pseudo_home_address(kbm, mn.home_address)
        inner = P.correspondent_bu_reverse_tunnelled(mn.home_address, cn.address,
                                                     sess.pseudo, bu, kbm)
        self.emit("mn-ha", "mn-ha", "mn", P.tunnelled(
            inner, coa, mn.ha.address, self.esp(mn.tunnel_out)), name, procedure, "BU")
        forwarded = P.correspondent_bu_reverse_tunnelled(mn.home_address, cn.address,
                                                         sess.pseudo, bu, kbm, 63)
        return self.emit("ha-cn", self.cn_link(cn, "ha"), "ha", forwarded, name, procedure, "BU")

    # --- data -------------------------------------------------------------------------------

    def route_optimised_data(self, mn: MobileNode, cn: Correspondent, sess: CorrespondentSession,
                             count: int, procedure: str) -> None:
        """RFC 6275 6.3 / 6.4 (draft 5.3.1, 5.3.2): HAO one way, RH2 the other, carrying the
        home address or, in the draft's procedures, the pseudo home address."""
        home = sess.pseudo or mn.home_address
        coa, name, link = mn.care_of, mn.name, self.cn_link(cn, "mn")
        for k in range(count):
            payload = f"{name} data {k}".encode()
            self.emit("mn-cn", link, "mn", P.data_to_correspondent(
                coa, cn.address, home, sess.port, DATA_PORT, payload),
                name, procedure, "data", DATA_GAP)
            self.emit("mn-cn", link, self.cn_role(cn), P.data_to_mobile(
                cn.address, coa, home, DATA_PORT, sess.port, payload), name, procedure, "data")

    def reverse_tunnelled_data(self, mn: MobileNode, cn: Correspondent,
                               sess: CorrespondentSession, count: int, procedure: str) -> None:
        """draft 5.4: MN -> HA in the ESP tunnel, HA -> CN in clear, and back the same way."""
        ha, coa, hoa, name = mn.ha.address, mn.care_of, mn.home_address, mn.name
        port, ha_cn, cn_role = sess.port, self.cn_link(cn, "ha"), self.cn_role(cn)
        for k in range(count):
            payload = f"{name} tunnelled {k}".encode()
            self.emit("mn-ha", "mn-ha", "mn", P.tunnelled(
                P.plain_data(hoa, cn.address, port, DATA_PORT, payload), coa, ha,
                self.esp(mn.tunnel_out)), name, procedure, "data", DATA_GAP)
            self.emit("ha-cn", ha_cn, "ha", P.plain_data(
                hoa, cn.address, port, DATA_PORT, payload, 63), name, procedure, "data")
            self.emit("ha-cn", ha_cn, cn_role, P.plain_data(
                cn.address, hoa, DATA_PORT, port, payload), name, procedure, "data")
            self.emit("mn-ha", "mn-ha", "ha", P.tunnelled(
                P.plain_data(cn.address, hoa, DATA_PORT, port, payload, 63), ha, coa,
                self.esp(mn.tunnel_in)), name, procedure, "data")

    def cn_initiated_data(self, mn: MobileNode, cn: Correspondent, procedure: str) -> None:
        """draft 5.3.2: the correspondent sends to the home address; the HA tunnels it on; the
        mobile node answers through the reverse tunnel."""
        ha, coa, hoa, name = mn.ha.address, mn.care_of, mn.home_address, mn.name
        port, ha_cn = DATA_PORT + mn.index, self.cn_link(cn, "ha")
        payload = f"{cn.name} calls {name}".encode()
        self.emit("ha-cn", ha_cn, self.cn_role(cn), P.plain_data(
            cn.address, hoa, DATA_PORT, port, payload), name, procedure, "data")
        self.emit("mn-ha", "mn-ha", "ha", P.tunnelled(
            P.plain_data(cn.address, hoa, DATA_PORT, port, payload, 63), ha, coa,
            self.esp(mn.tunnel_in)), name, procedure, "data")
        answer = b"answer " + payload
        self.emit("mn-ha", "mn-ha", "mn", P.tunnelled(
            P.plain_data(hoa, cn.address, port, DATA_PORT, answer), coa, ha,
            self.esp(mn.tunnel_out)), name, procedure, "data")
        self.emit("ha-cn", ha_cn, "ha", P.plain_data(
            hoa, cn.address, port, DATA_PORT, answer, 63), name, procedure, "data")

    # --- draft 5.5: prefix discovery ----------------------------------------------------------

    def prefix_discovery(self, mn: MobileNode) -> None:
        """draft 5.5: MPS / MPA in the format of the node's home registration (HOME_PLAYS)."""
        identifier = self.draw.int(f"mps|{mn.name}|{len(self.frames)}", 0, 65536)
        prefixes = [p for p in mn.ha.prefixes
                    if ipaddress.IPv6Address(mn.home_address) in ipaddress.IPv6Network(p)]
        HOME_PLAYS[mn.spec.home_bu].prefix_discovery(self, mn, identifier, prefixes)

    def prefix_discovery_transport(self, mn: MobileNode, identifier: int,
                                   prefixes: list[str]) -> None:
        """draft 5.5: ESP transport mode with the pseudo home address of the current home
        binding in the HAO / RH2 (the home address for a plain node)."""
        ha, coa, name = mn.ha.address, mn.care_of, mn.name
        home = mn.home_pseudo or mn.home_address
        mps = P.mps_transport(coa, ha, home, identifier, self.esp(mn.transport_out))
        self.emit("mn-ha", "mn-ha", "mn", mps, name, PREFIX_DISCOVERY.id, "MPS")
        mpa = P.mpa_transport(ha, coa, home, identifier, prefixes, self.esp(mn.transport_in))
        self.emit("mn-ha", "mn-ha", "ha", mpa, name, PREFIX_DISCOVERY.id, "MPA")

    def prefix_discovery_tunnel(self, mn: MobileNode, identifier: int,
                                prefixes: list[str]) -> None:
        """draft 5.5, second format: in the ESP tunnel, for a 5.2.2 node."""
        ha, coa, name = mn.ha.address, mn.care_of, mn.name
        mps = P.mps_tunnel(coa, ha, mn.home_address, identifier, self.esp(mn.tunnel_out))
        self.emit("mn-ha", "mn-ha", "mn", mps, name, PREFIX_DISCOVERY.id, "MPS")
        mpa = P.mpa_tunnel(ha, coa, mn.home_address, identifier, prefixes,
                           self.esp(mn.tunnel_in))
        self.emit("mn-ha", "mn-ha", "ha", mpa, name, PREFIX_DISCOVERY.id, "MPA")

    # --- background traffic between other hosts --------------------------------------------

    def background(self, ev: Event) -> None:
        src, dst = ev.src, ev.dst
        port = 40000 + self.draw.int(f"bg-port|{len(self.frames)}", 0, 20000)

        def send(forward: bool, upper: int, payload: bytes, what: str, delay=HOP_DELAY):
            a, b = (src, dst) if forward else (dst, src)
            self.emit("other", "other", "bg" if forward else "bg2",
                      P.ipv6(a, b, upper, payload), None, "background", what, delay)

        if ev.kind == "udp":
            for k in range(ev.count):
                fwd = k % 2 == 0
                s, d = (port, 45999) if fwd else (45999, port)
                data = f"udp {k}".encode().ljust(32, b".")
                send(fwd, P.NH_UDP, P.udp(s, d, data, *((src, dst) if fwd else (dst, src))),
                     "UDP", DATA_GAP)
        elif ev.kind == "icmpv6":
            for k in range(ev.count):
                ident = port & 0xFFFF
                data = bytes(range(32))
                send(True, P.NH_ICMPV6, P.echo(True, ident, k + 1, data, src, dst), "ICMPv6",
                     DATA_GAP)
                send(False, P.NH_ICMPV6, P.echo(False, ident, k + 1, data, dst, src), "ICMPv6")
        else:
            # RFC 9293: handshake, `count` data segments each acknowledged, FIN both ways
            iss_a = self.draw.int(f"tcp-a|{len(self.frames)}", 0, 1 << 32)
            iss_b = self.draw.int(f"tcp-b|{len(self.frames)}", 0, 1 << 32)
            SYN, ACK, PSH, FIN = 0x02, 0x10, 0x08, 0x01
            a_seq, b_seq = iss_a, iss_b
            m = 1 << 32

            def seg(forward, seq, ack, flags, data=b"", delay=HOP_DELAY):
                s, d = (port, 46000) if forward else (46000, port)
                aa, bb = (src, dst) if forward else (dst, src)
                send(forward, P.NH_TCP, P.tcp(s, d, seq % m, ack % m, flags, data, aa, bb),
                     "TCP", delay)

            seg(True, a_seq, 0, SYN, delay=DATA_GAP)
            seg(False, b_seq, a_seq + 1, SYN | ACK)
            a_seq, b_seq = a_seq + 1, b_seq + 1
            seg(True, a_seq, b_seq, ACK)
            for k in range(ev.count):
                data = f"segment {k} ".encode() * 4
                seg(True, a_seq, b_seq, PSH | ACK, data, DATA_GAP)
                a_seq += len(data)
                seg(False, b_seq, a_seq, ACK)
            seg(True, a_seq, b_seq, FIN | ACK)
            seg(False, b_seq, a_seq + 1, FIN | ACK)
            seg(True, a_seq + 1, b_seq + 1, ACK)


# --- each procedure of dissectors.procedures, and the World methods that play it ---------------

@dataclass(frozen=True)
class HomePlay:
    """How the lab plays one home registration procedure (draft 5.2)."""
    procedure: Procedure
    home_bu: Callable[..., tuple[Frame, str | None]]   # (world, mn, bu, counter, what)
    home_ba: Callable[..., Frame]            # (world, mn, seq, units, pseudo, procedure)
    prefix_discovery: Callable[..., None]    # draft 5.5 (world, mn, identifier, prefixes)


@dataclass(frozen=True)
class SessionPlay:
    """How the lab plays one correspondent procedure (draft 4, 5.3, 5.4)."""
    procedure: Procedure
    data: Callable[..., None]                # (world, mn, cn, sess, count, procedure)
    bu: Callable[..., Frame] | None = None   # the correspondent BU; None: no binding (5.4)
    p_flag: bool = False                     # draft 4.1: the HoTI's P flag
    alternate_care_of: bool = False         # the BU carries the Alternate CoA option
    opening: Callable[..., None] | None = None       # a new session's first packets
    new_pseudo: Callable[..., str] | None = None     # a Home BU for a new pseudo address first


HOME_PLAYS: dict[str, HomePlay] = {play.procedure.id: play for play in (
    HomePlay(PLAIN_HOME, World.home_bu_plain, World.home_ba_transport,
             World.prefix_discovery_transport),
    HomePlay(HOME_TRANSPORT, World.home_bu_transport, World.home_ba_transport,
             World.prefix_discovery_transport),
    HomePlay(HOME_TUNNEL, World.home_bu_tunnel, World.home_ba_tunnel,
             World.prefix_discovery_tunnel),
)}

SESSION_PLAYS: dict[str, SessionPlay] = {play.procedure.id: play for play in (
    SessionPlay(PLAIN_CORRESPONDENT, World.route_optimised_data, World.bu_plain),
    SessionPlay(RR_PRIVACY, World.route_optimised_data, World.bu_rr_privacy, p_flag=True),
    SessionPlay(REVERSE_TUNNELLED_BU, World.route_optimised_data, World.bu_reverse_tunnelled,
                alternate_care_of=True),
    SessionPlay(MN_INITIATED_RR, World.route_optimised_data, World.bu_routable_pseudo,
                new_pseudo=World.pseudo_for_correspondent),
    SessionPlay(CN_INITIATED_RR, World.route_optimised_data, World.bu_reverse_tunnelled,
                alternate_care_of=True, opening=World.cn_initiated_data),
    SessionPlay(REVERSE_TUNNELLING, World.reverse_tunnelled_data),
)}
