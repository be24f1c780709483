"""The packet list addon: turns each event into a compact row and a detail tree for the browser.

Like a mitmproxy view addon, it only watches the stream (hook `packet(event)`); it never
interprets keys. Rows are bounded (the oldest are evicted and counted) so a long live capture
keeps flat memory. Everything here is plain text: the browser renders it with textContent.
"""
from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field

from dissectors.events import MobilityMessage, PacketEvent
from dissectors.protocol import ICMPV6_NAMES

# The packet list's Procedure column: what a keyless look at one packet can tell (its message,
# its headers), the list's colour key (style.css .proc-CLASS). Not the draft's procedures
# (dissectors.procedures), which need the keys to tell apart; section numbers are the draft's
# (5.2 home registration, 5.3 correspondent registration after return routability, 5.5 prefix
# discovery). The page gets these names in its first snapshot.
PACKET_CLASSES = {
    "home": "Home registration",        # draft 5.2, RFC 6275 11.7.1
    "rr": "Return routability",         # draft 5.3, RFC 6275 5.2.5
    "cn": "CN registration",            # draft 5.3, RFC 6275 11.7.2
    "error": "Binding error",           # RFC 6275 6.1.9
    "prefix": "Prefix discovery",       # draft 5.5, RFC 6275 6.7/6.8
    "data": "Route-optimised data",     # HAO / RH2 on data (RFC 6275 6.3, 6.4)
    "tunnel": "Tunnelled",              # IPv6-in-IPv6 or ESP tunnel to the home agent
    "esp": "ESP (not decrypted)",
    "other": "Other",
}

MH_RR = {"HoTI", "CoTI", "HoT", "CoT"}


@dataclass
class Row:
    """One line of the packet list (JSON keys short: 1,000 of these a second cross the socket)."""
    n: int
    t: float
    src: str
    dst: str
    proc: str
    msg: str
    path: str
    info: str
    length: int
    addrs: list[str]
    malformed: bool
    ts: float          # epoch ms the event was due in the replay (latency probe)
    seq: int           # 1, 2, 3...: the browser sees a gap and asks for what it missed
    node: str | None = None   # real home address the keyed view ties the frame to (if any)

    def as_dict(self) -> dict:
        row = {"seq": self.seq, "n": self.n, "t": self.t, "src": self.src, "dst": self.dst,
               "proc": self.proc, "msg": self.msg, "path": self.path, "info": self.info,
               "len": self.length, "addrs": self.addrs, "mal": self.malformed, "ts": self.ts}
        if self.node is not None:
            row["node"] = self.node
        return row


def message_name(event: PacketEvent) -> str:
    if event.mobility is not None:
        return event.mobility.name
    if event.prefix_discovery is not None:
        return ICMPV6_NAMES.get(event.prefix_discovery.icmp_type,
                                f"ICMPv6 {event.prefix_discovery.icmp_type}")
    if event.transport is not None:
        return event.transport.protocol.upper()
    if any(not esp.decrypted for esp in event.esp_headers()):
        return "ESP"
    return "IPv6"


def addresses(event: PacketEvent) -> list[str]:
    """Every address the packet names, outermost first: what the node quick filter matches."""
    seen: list[str] = []
    for layer in event.layers:
        for addr in (layer.src, layer.dst, layer.home_address, layer.routing_home_address,
                     layer.pseudo_home_address):
            if addr and addr not in seen:
                seen.append(addr)
    mob = event.mobility
    if mob is not None:
        for addr in (mob.alternate_care_of_address, mob.error_home_address):
            if addr and addr not in seen:
                seen.append(addr)
    return seen


def mobility_info(mob: MobilityMessage) -> str:
    parts = [mob.name]
    if mob.sequence is not None:
        parts.append(f"seq={mob.sequence}")
    if mob.flags:
        parts.append("[" + "".join(sorted(mob.flags)) + "]")
    if mob.status is not None:
        parts.append(f"status={mob.status}")
    if mob.lifetime is not None:
        parts.append(f"lifetime={mob.lifetime}s")
    if mob.nonce_index is not None:
        parts.append(f"nonce={mob.nonce_index}")
    if mob.home_nonce_index is not None:
        parts.append(f"NI={mob.home_nonce_index}/{mob.care_of_nonce_index}")
    if mob.alternate_care_of_address:
        parts.append(f"ACoA={mob.alternate_care_of_address}")
    if mob.privacy_keygen_token is not None:
        parts.append("privacy-token")
    if mob.authenticator is not None:
        parts.append("BAD")
    if mob.error_home_address:
        parts.append(f"HoA={mob.error_home_address}")
    return " ".join(parts)


def info_text(event: PacketEvent) -> str:
    """A one-line summary built from the decoded fields (tshark's Info when nothing better)."""
    parts: list[str] = []
    if event.mobility is not None:
        parts.append(mobility_info(event.mobility))
    elif event.prefix_discovery is not None:
        pd = event.prefix_discovery
        parts.append(f"{message_name(event)} id={pd.identifier}")
        parts.extend(pd.prefixes)
    elif event.transport is not None:
        tr = event.transport
        ports = f" {tr.src_port} → {tr.dst_port}" if tr.src_port is not None else ""
        parts.append(f"{tr.protocol.upper()}{ports}")
        if tr.payload_preview:
            parts.append(f"payload “{tr.payload_preview}”")
    elif event.info:
        parts.append(event.info)
    inner = event.inner
    if inner.home_address:
        parts.append(f"HAO={inner.home_address}")
    if inner.routing_home_address:
        parts.append(f"RH2={inner.routing_home_address}")
    if inner.pseudo_home_address:
        parts.append(f"pHoA={inner.pseudo_home_address}")
    if len(event.layers) > 1:
        parts.append(f"(inner {inner.src} → {inner.dst})")
    for esp in event.esp_headers():
        parts.append(f"ESP spi=0x{esp.spi:08x} seq={esp.sequence}"
                     + ("" if esp.decrypted else " encrypted"))
    if event.malformed:
        parts.append(f"[Malformed: {event.malformed}]")
    return " ".join(parts)[:300]


@dataclass
class PacketClassifier:
    """The packet class of each packet (PACKET_CLASSES), keyless; learns home agents from Home
    BUs (H flag)."""
    home_agents: set[str] = field(default_factory=set)

    def classify(self, event: PacketEvent) -> str:
        mob = event.mobility
        if mob is not None:
            name = mob.name
            if name == "BU":
                if "H" in mob.flags:
                    self.home_agents.add(event.inner.dst)
                    return "home"
                return "cn"
            if name == "BA":
                return "home" if event.inner.src in self.home_agents else "cn"
            if name in MH_RR:
                return "rr"
            if name == "BE":
                return "error"
            if name == "BRR":
                return "cn"
            return "other"
        if event.prefix_discovery is not None:
            return "prefix"
        if any(not esp.decrypted for esp in event.esp_headers()):
            return "esp"
        if len(event.layers) > 1:
            return "tunnel"
        inner = event.inner
        if inner.home_address or inner.routing_home_address or inner.pseudo_home_address:
            return "data"
        return "other"


def detail_tree(event: PacketEvent, annotations: list[str]) -> list[dict]:
    """Wireshark-style detail tree: [{"label": str, "children": [...]}], all plain text."""
    def node(label: str, children: list[dict] | None = None) -> dict:
        return {"label": label, "children": children or []}

    tree = [node(f"Frame {event.frame}: {event.length} bytes", [
        node(f"Arrival time: {time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime(event.time))}"
             f".{int((event.time % 1) * 1e6):06d} UTC"),
        node(f"Epoch time: {event.time:.6f}"),
        node(f"Path: {event.path or '(none)'}"),
        node(f"Sensor: {event.sensor or '(this capture)'}"),
        node(f"Protocols: {event.protocols or '?'}"),
    ])]
    for index, layer in enumerate(event.layers):
        kids = [node(f"Source: {layer.src}"), node(f"Destination: {layer.dst}")]
        if layer.home_address:
            kids.append(node(f"Home Address option (201): {layer.home_address}"))
        if layer.routing_home_address:
            kids.append(node(f"Type 2 Routing Header: {layer.routing_home_address}"))
        if layer.pseudo_home_address:
            kids.append(node(f"Pseudo Home Address option (0xFE): {layer.pseudo_home_address}"))
        if layer.esp is not None:
            esp = layer.esp
            kids.append(node(f"ESP SPI 0x{esp.spi:08x}, sequence {esp.sequence}", [
                node(f"Decrypted: {'yes' if esp.decrypted else 'no'}")]))
        title = "Internet Protocol Version 6" + (" (inner)" if index else "")
        tree.append(node(f"{title}, Src: {layer.src}, Dst: {layer.dst}", kids))
    mob = event.mobility
    if mob is not None:
        kids = []
        for name in MobilityMessage.__slots__:
            value = getattr(mob, name)
            if value is None or value == frozenset():
                continue
            if isinstance(value, bytes):
                value = value.hex()
            elif isinstance(value, frozenset):
                value = " ".join(sorted(value))
            kids.append(node(f"{name.replace('_', ' ')}: {value}"))
        tree.append(node(f"Mobility Header: {mob.name} ({mob.mh_type})", kids))
    pd = event.prefix_discovery
    if pd is not None:
        tree.append(node(f"ICMPv6 {message_name(event)} ({pd.icmp_type})",
                         [node(f"Identifier: {pd.identifier}")]
                         + [node(f"Prefix: {p}") for p in pd.prefixes]))
    tr = event.transport
    if tr is not None:
        kids = []
        if tr.src_port is not None:
            kids += [node(f"Source port: {tr.src_port}"), node(f"Destination port: {tr.dst_port}")]
        kids.append(node(f"Payload: {tr.payload_preview}"))
        tree.append(node(f"Transport: {tr.protocol}", kids))
    if event.info:
        tree.append(node(f"tshark Info: {event.info}"))
    if event.malformed:
        tree.append(node(f"Malformed: {event.malformed}"))
    if annotations:
        tree.append(node("Keyed view (decrypted with the keyring)",
                         [node(text) for text in annotations]))
    return tree


class PacketView:
    """Addon: the bounded packet list, plus a queue of rows not yet sent to the browser."""

    def __init__(self, max_rows: int = 100_000, node_of=None, pacer=None):
        """`node_of(frame)`, if given, labels each row with the node an analyzer that ran
        before this view tied the frame to (the node quick filter); the view itself reads no
        keys. `pacer.due`, if given, is when the current event was due in a replay (epoch ms:
        the dashboard's latency is measured from it); else a row is stamped when it is made."""
        self.max_rows = max_rows
        self.node_of = node_of
        self.events: dict[int, PacketEvent] = {}
        self.order: deque[int] = deque()
        self.rows: deque[dict] = deque()
        self.pending: deque[dict] = deque()
        self.evicted = 0
        self.total = 0
        self.finished = False
        self.classifier = PacketClassifier()
        self.pacer = pacer
        self._lock = threading.Lock()

    def packet(self, event: PacketEvent) -> None:
        row = Row(n=event.frame, t=event.time, src=event.outer.src, dst=event.outer.dst,
                  proc=self.classifier.classify(event), msg=message_name(event),
                  path=event.path or "", info=info_text(event), length=event.length,
                  addrs=addresses(event), malformed=bool(event.malformed),
                  ts=self._due(),
                  seq=self.total + 1,
                  node=self.node_of(event.frame) if self.node_of is not None else None).as_dict()
        with self._lock:
            self.total += 1
            self.events[event.frame] = event
            self.order.append(event.frame)
            self.rows.append(row)
            self.pending.append(row)
            while len(self.order) > self.max_rows:
                self.events.pop(self.order.popleft(), None)
                self.rows.popleft()
                self.evicted += 1
            while len(self.pending) > self.max_rows:
                # nobody drained the queue (no browser): the rows stay in self.rows
                self.pending.popleft()

    def _due(self) -> float:
        due = self.pacer.due if self.pacer is not None else None
        return due if due is not None else time.time() * 1000.0

    def done(self) -> None:
        self.finished = True

    def drain(self) -> list[dict]:
        """Rows not yet sent, oldest first."""
        with self._lock:
            out = list(self.pending)
            self.pending.clear()
        return out

    def backlog(self, limit: int = 20_000) -> list[dict]:
        with self._lock:
            rows = list(self.rows)
        return rows[-limit:]

    def rows_between(self, first: int, last: int, limit: int = 20_000) -> list[dict]:
        """Rows with first <= seq <= last still held (the newest `limit` of them)."""
        with self._lock:
            if not self.rows:
                return []
            base = self.rows[0]["seq"]
            lo, hi = max(first, base), min(last, self.rows[-1]["seq"])
            if hi < lo:
                return []
            lo = max(lo, hi - limit + 1)
            return [self.rows[i - base] for i in range(lo, hi + 1)]

    def event(self, frame: int) -> PacketEvent | None:
        with self._lock:
            return self.events.get(frame)
