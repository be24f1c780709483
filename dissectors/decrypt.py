"""The keyed stage: open the ESP of neutral events with the keyring's SAs, never guessing.

`EspDecryptor(keyring).decrypt(event) -> event` runs between a source and the analyzers, in
the dissecting process (monitor.sources) or in the analyzer's (events that crossed a process
or a Redis Stream still encrypted). The dissector left each ESP header's octets in
`Esp.payload`; this stage opens them (dissectors.esp) and continues the walk inside
(dissectors.walk.Walker.decrypted), so a decrypted event is the one a dissector with the keys
would have made.

Which SA opens a packet (draft 6.4 moves every SPI of a node after each Home BU exchange,
with its Kph; in a crowd the chains of different nodes cross, so one SPI can belong to
several SAs):
- SAs are looked up by SPI in a dict: each listed SA at its SPI, and draft 6.4 successors
  registered lazily from SPIs seen and verified; never every SA x every node x 64.
- The integrity check decides (RFC 4303 3.4.4): the SA whose ICV (or GCM tag) verifies is
  the one. An SPI no registered SA verifies is tried against every SA with an ICV, once (a
  capture that starts after renewals, an SA unused for several exchanges); the SA that
  verifies is then followed from there, and an SPI none verifies is remembered as unknown.
- Whose Kph moves an SA: the keyring's `mobile_node` of the [[esp_sa]] if given; otherwise
  every keyring node is a candidate, the successor of each verified SPI is registered under
  each candidate's Kph, and the candidates narrow to the nodes whose chain reaches the next
  SPI that verifies. `Esp.node` names the node once one is left.
- Null authentication has no ICV: only SAs registered at the SPI (the listed one, or on a
  chain) are tried, and only a plaintext that parses counts (RFC 4303 2.4 default padding, a
  Next Header the walk knows, an inner header that walks without error). When SAs with
  different keys still fit, none is picked: `Esp.undecrypted = "ambiguous"`.
Every ESP header ends decrypted, or not with a reason (events.UNDECRYPTED), which the event
stream counts.
"""
from __future__ import annotations

import dataclasses
import struct
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field

from dissectors.esp import EspTransform, Opened, Plaintext
from dissectors.events import Esp, IPv6Layer, PacketEvent
from dissectors.protocol import SPI_LOOKAHEAD
from dissectors.walk import IPV6, Walk, Walker, common_tunnelled
from keys import formulas
from keys.keyring import EspSa, Keyring

_ESP_HEADER = struct.Struct("!II")      # RFC 4303 2.1: SPI, Sequence Number (the ICV covers it)
SPI_SPACE = 1 << 32                     # SPIs are 32 bits (RFC 4303 2.1), moving mod 2^32
# Next Header values a decrypted payload may carry (RFC 4303 2.6; IANA protocol numbers):
# the ones the walk reads, and IPv4 (tunnel mode) it reads as far as IPv6 inside
PARSABLE_NEXT_HEADERS = frozenset({0, 4, 6, 17, 41, 43, 44, 47, 50, 51, 58, 59, 60, 135})


@dataclass(eq=False)
class _Sa:
    """One SA (the keyring may list it under several SPIs: same keys, same selectors, same
    node) and what is known of it."""
    sa: EspSa
    transform: EspTransform
    nodes: set[str]                      # whose Kph may move its SPI (narrowed as it verifies)
    head: int                            # the last SPI verified (at first: the first listed)
    verified: bool = False
    # its node is known: named by the keyring, or a chain step verified (`nodes` may still
    # hold several: each chain that reaches every SPI seen)
    certain: bool = False
    # per candidate node: SPIs registered ahead of `head` on its chain, in order
    ahead: dict[str, list[int]] = field(default_factory=dict)

    def selects(self, layer: IPv6Layer) -> bool:
        """RFC 4301 4.4.2 selectors; the HAO / RH2 address stands for the source /
        destination (RFC 6275 11.3.2: IPsec sees the home address)."""
        sa = self.sa
        return ((sa.src == "*" or sa.src in (layer.src, layer.home_address))
                and (sa.dst == "*" or sa.dst in (layer.dst, layer.routing_home_address)))


@dataclass(frozen=True, eq=False)
class _Entry:
    sa: _Sa
    node: str | None                     # the chain it was registered from (None: listed)


class EspDecryptor:
    """Opens the ESP headers of events with a keyring's SAs (module docstring)."""

    def __init__(self, keyring: Keyring, walker: Walker | None = None):
        self.walker = walker or Walker()
        self._kph = {node.name: node.kph.value for node in keyring.mobile_nodes}
        self._sas: list[_Sa] = []
        # SPI -> (SA, chain node) -> entry: in a crowd many candidate chains meet at one SPI,
        # and an entry leaves in O(1) when its chain moves on
        self._by_spi: dict[int, dict[tuple[int, str | None], _Entry]] = {}
        self._unknown: set[int] = set()          # SPIs no SA verified
        # SPI -> the SAs registered at it that have an integrity check, each once, in the
        # order _by_spi has them: the route every packet of the SPI takes (made at its first
        # packet, forgotten whenever the SPI's entries change: _register, _unregister)
        self._routes: dict[int, tuple[_Sa, ...]] = {}
        states: dict[tuple[bytes, str, str, str | None], _Sa] = {}
        for sa in keyring.esp_sas:
            key = (_keys(sa), sa.src, sa.dst, sa.mobile_node)
            state = states.get(key)
            if state is None:
                # a named node is certain; its chain is followed when the keyring has its Kph
                state = states[key] = _Sa(
                    sa, EspTransform(sa),
                    {sa.mobile_node} if sa.mobile_node else set(self._kph), sa.spi,
                    certain=sa.mobile_node is not None)
                self._sas.append(state)
            self._register(sa.spi, _Entry(state, None))
        self.hmacs = 0                           # draft 6.4 steps computed (for benchmarks)

    # --- the stage -------------------------------------------------------------------------

    def opened(self, events: Iterable[PacketEvent]) -> Iterator[PacketEvent]:
        """Each event decrypted (`decrypt`); one with no ESP header passes as it is, found
        with two reads (the stage sees every event of a capture)."""
        decrypt = self.decrypt
        for event in events:
            layers = event.layers
            yield event if len(layers) == 1 and layers[0].esp is None else decrypt(event)

    def decrypt(self, event: PacketEvent) -> PacketEvent:
        """The event with every ESP header opened that the keyring can open (each attempt
        decrypts or marks one header, outermost first, so this ends)."""
        while True:
            step = _pending(event.layers)
            if step is None:
                return event
            index, chain, depth = step
            layer = event.layers[index]
            unsealed = self._unseal(layer, chain, depth)
            if isinstance(unsealed, Esp):
                layers = list(event.layers)
                layers[index] = dataclasses.replace(layer, esp=unsealed)
                event = dataclasses.replace(event, layers=tuple(layers))
                continue
            plain, walk = unsealed
            if walk is None and depth == 0 and plain.next_header == IPV6:
                # tunnel mode (RFC 4303 3.1.2): the plaintext is an IPv6 packet, and on a
                # common chain its event is what the walk continued into it finds
                # (walk.common_tunnelled; the layer's addresses are the walk's text of its
                # octets: `address` made them)
                inner = common_tunnelled(plain.data)
                if inner is not None:
                    event = PacketEvent(
                        event.frame, event.time, event.length,
                        event.layers[:index] + (IPv6Layer(
                            layer.src, layer.dst, layer.home_address,
                            layer.routing_home_address, layer.pseudo_home_address,
                            chain[0]),) + inner.layers,
                        inner.mobility, None, inner.transport, event.path, event.sensor,
                        f"{event.protocols}:{inner.protocols}", inner.info, event.malformed)
                    if inner.layers[-1].esp is None:
                        return event      # a common chain's only ESP header would end it
                    continue
            bundle, walk = self._bundle(layer, chain, plain, walk)
            message = walk.message()
            # the constructor, not dataclasses.replace: this runs for every ESP packet
            event = PacketEvent(
                event.frame, event.time, event.length,
                event.layers[:index] + (_opened_layer(layer, bundle, walk),)
                + tuple(walk.layers[1:]), message, walk.prefix,
                walk.transport if message is None and walk.prefix is None else None,
                event.path, event.sensor,
                f"{event.protocols}:{':'.join(walk.protocols)}".rstrip(":"),
                walk.info_text if walk.info or walk.exception or walk.limited else event.info,
                event.malformed or walk.malformed)

    def open_walk(self, walk: Walk) -> None:
        """The walk of a frame (dissectors.dissect, before its event is made) with every
        ESP header opened that `decrypt` opens in its event: the event made from it is the
        one `decrypt` returns, without making the encrypted one first and again decrypted
        (the dissecting process holds the keys: monitor.sources)."""
        layers = walk.layers
        while True:
            step = _pending(layers)
            if step is None:
                return
            index, chain, depth = step
            layer = layers[index]
            bundle, inner = self._open(layer, chain, depth)
            if inner is None:
                layers[index] = dataclasses.replace(layer, esp=bundle)
                continue
            layers[index:] = [_opened_layer(layer, bundle, inner), *inner.layers[1:]]
            walk.continued(inner)

    def _open(self, layer: IPv6Layer, chain: list[Esp], depth: int) -> tuple[Esp, Walk | None]:
        """Open chain[depth], the ESP header of `layer` (bundled ones after the first): the
        layer's bundle rebuilt with it decrypted or marked (Esp.undecrypted), and the walk of
        its plaintext when it was decrypted."""
        unsealed = self._unseal(layer, chain, depth)
        if isinstance(unsealed, Esp):
            return unsealed, None
        plain, walk = unsealed
        return self._bundle(layer, chain, plain, walk)

    def _unseal(self, layer: IPv6Layer, chain: list[Esp],
                depth: int) -> tuple[Plaintext, Walk | None] | Esp:
        """Decrypt chain[depth], the ESP header of `layer`: its plaintext, and the plaintext's
        walk if choosing the SA made one (null authentication: _choose), with chain[depth]
        decrypted and the headers it held dropped from `chain`; or, when it stays closed,
        the layer's bundle rebuilt with it marked (Esp.undecrypted)."""
        esp = chain[depth]
        if esp.truncated:
            return _marked(chain, depth, "truncated")
        chosen = self._choose(layer, esp)
        if isinstance(chosen, str):
            return _marked(chain, depth, chosen)
        state, plain, walk = chosen
        node = next(iter(state.nodes)) if state.certain and len(state.nodes) == 1 else None
        chain[depth] = Esp(esp.spi, esp.sequence, True, b"", False, None, node)
        del chain[depth + 1:]
        return plain, walk

    def _bundle(self, layer: IPv6Layer, chain: list[Esp], plain: Plaintext,
                walk: Walk | None) -> tuple[Esp, Walk]:
        """An unsealed header's bundle, rebuilt with the header its plaintext starts with (an
        SA bundle, RFC 4301 4.5), and the plaintext's walk (made here if not yet)."""
        if walk is None:
            walk = self.walker.decrypted(layer, plain.next_header, plain.data)
        if walk.bundled is not None:
            chain.append(walk.bundled)
        return _nest(chain), walk

    # --- choosing the SA -------------------------------------------------------------------

    def _choose(self, layer: IPv6Layer, esp: Esp) -> tuple[_Sa, Plaintext, Walk | None] | str:
        """The SA that opens `esp`, its plaintext, and the plaintext's walk when the choice
        needed one (null authentication); or why none opens it."""
        spi, payload = esp.spi, esp.payload
        header = _ESP_HEADER.pack(spi, esp.sequence)
        tried: set[int] = set()
        for state in self._route(spi):
            if not state.selects(layer):
                continue
            tried.add(id(state))
            plain = self._try(state, header, payload)
            if plain is not None:
                self._verified(spi, state)
                return state, plain, None
        if spi not in self._unknown:
            found = self._sweep(layer, header, esp, tried)
            if found is not None:
                return found
        registered = self._by_spi.get(spi)
        unchecked = [e.sa for e in registered.values()
                     if not e.sa.transform.verifies and e.sa.selects(layer)] if registered else []
        if not unchecked:
            return "icv-failed" if tried else "no-sa"
        fits: dict[bytes, tuple[_Sa, Plaintext, Walk]] = {}
        for state in unchecked:
            plain = self._try(state, header, payload)
            if plain is None:
                continue
            # walked whatever the padding (the walker's TCP state sees every plaintext)
            walk = self.walker.decrypted(layer, plain.next_header, plain.data)
            if plain.default_padding and not walk.errors and not walk.limited:
                fits.setdefault(_keys(state.sa), (state, plain, walk))
        if len(fits) == 1:
            chosen = next(iter(fits.values()))
            self._verified(spi, chosen[0])
            return chosen
        return "ambiguous" if fits else "unparsable"

    def _route(self, spi: int) -> tuple[_Sa, ...]:
        """The SAs with an integrity check registered at `spi` (self._routes)."""
        route = self._routes.get(spi)
        if route is None:
            registered = self._by_spi.get(spi)
            if registered is None:
                return ()                      # not kept: SPIs seen unregistered are unbounded
            route = self._routes[spi] = tuple(dict.fromkeys(
                e.sa for e in registered.values() if e.sa.transform.verifies))
        return route

    def _try(self, state: _Sa, header: bytes, payload: bytes) -> Plaintext | None:
        """`state`'s attempt at one ESP payload: its plaintext, if it opens (without an
        integrity check, only one whose Next Header the walk can read)."""
        plain = state.transform.open(header, payload)
        if isinstance(plain, Opened):
            return None
        if not state.transform.verifies and plain.next_header not in PARSABLE_NEXT_HEADERS:
            return None
        return plain

    def _sweep(self, layer: IPv6Layer, header: bytes, esp: Esp,
               tried: set[int]) -> tuple[_Sa, Plaintext, None] | None:
        """An SPI no registered SA verifies: try every other SA that has an ICV, once per SPI
        (the ICV is proof; which node moved it there is then looked for on its chains). SPIs
        only climb (draft 6.4), so the SAs whose last SPI lies closest below it go first."""
        spi, sas = esp.spi, self._sas
        # sorted by distance (stable: ties in keyring order), the distances made in one pass
        distances = [(spi - state.head) % SPI_SPACE for state in sas]
        for state in [sas[n] for n in sorted(range(len(sas)), key=distances.__getitem__)]:
            if id(state) in tried or not state.transform.verifies or not state.selects(layer):
                continue
            plain = self._try(state, header, esp.payload)
            if plain is not None:
                self._verified(esp.spi, state)
                return state, plain, None
        self._unknown.add(esp.spi)
        return None

    # --- draft 6.4 chains ------------------------------------------------------------------

    def _register(self, spi: int, entry: _Entry) -> None:
        self._routes.pop(spi, None)
        self._by_spi.setdefault(spi, {}).setdefault((id(entry.sa), entry.node), entry)

    def _verified(self, spi: int, state: _Sa) -> None:
        """`spi` verified under `state`: narrow its nodes to the chains that reach `spi`,
        then register the successors ahead of it."""
        if spi == state.head and state.verified:
            return                                   # nothing new: the same SPI again
        if state.verified and (len(state.nodes) > 1 or not state.certain):
            # every candidate whose chain gets here stays one (not only the chain this SPI
            # was registered from: two chains may both reach it, in different steps)
            reached = self._search(state, spi)
            if reached:
                state.nodes &= reached
                state.certain = True
        state.verified = True
        for node in list(state.ahead):
            if node not in state.nodes:
                self._unregister(state, node)
        state.head = spi
        single = len(state.nodes) == 1
        for node in state.nodes & self._kph.keys():
            self._extend(state, node, spi, SPI_LOOKAHEAD if single else 1)

    def _search(self, state: _Sa, spi: int) -> set[str]:
        """The candidate nodes whose chain from the SA's last verified SPI reaches `spi`
        within SPI_LOOKAHEAD renewals. A chain only climbs (each step adds 1..255, draft 6.4),
        so each one is followed until it reaches or passes `spi`: the cost is the distance
        over the mean step, not the look-ahead."""
        found = set()
        for node in state.nodes & self._kph.keys():
            ahead = state.ahead.get(node, [])
            if spi in ahead:
                found.add(node)
                continue
            current, steps = (ahead[-1], len(ahead)) if ahead else (state.head, 0)
            while steps < SPI_LOOKAHEAD and 0 < (spi - current) % SPI_SPACE < SPI_SPACE // 2:
                current = self._next(node, current)
                steps += 1
            if current == spi:
                found.add(node)
        return found

    def _extend(self, state: _Sa, node: str, spi: int, count: int) -> None:
        """Keep `count` SPIs of `node`'s chain registered ahead of `spi`."""
        ahead = state.ahead.get(node, [])
        if spi in ahead:
            passed = ahead.index(spi) + 1
            self._unregister(state, node, ahead[:passed])
            ahead = ahead[passed:]
        else:
            self._unregister(state, node)
            ahead = []
        current = ahead[-1] if ahead else spi
        entry = _Entry(state, node)
        while len(ahead) < count:
            current = self._next(node, current)
            ahead.append(current)
            self._register(current, entry)
        state.ahead[node] = ahead

    def _unregister(self, state: _Sa, node: str, spis: list[int] | None = None) -> None:
        """Forget `node`'s chain entries of this SA (all, or those of `spis`)."""
        if spis is None:
            spis = state.ahead.pop(node, [])
        for spi in spis:
            entries = self._by_spi.get(spi)
            if entries is None:
                continue
            entries.pop((id(state), node), None)
            self._routes.pop(spi, None)
            if not entries:
                del self._by_spi[spi]

    def _next(self, node: str, spi: int) -> int:
        self.hmacs += 1
        return formulas.next_spi(self._kph[node], spi)


def _keys(sa: EspSa) -> bytes:
    """What makes two SAs open the same way (the same algorithms and keys)."""
    return "|".join((sa.encryption, sa.authentication)).encode() \
        + sa.encryption_key.value + b"|" + sa.authentication_key.value


def _nest(chain: list[Esp]) -> Esp:
    """Rebuild a bundle from its headers, outermost first."""
    if len(chain) == 1 and chain[0].bundled is None:
        return chain[0]                            # one header, as most packets have
    inner: Esp | None = None
    for esp in reversed(chain):
        inner = dataclasses.replace(esp, bundled=inner) if esp.bundled is not inner else esp
    assert inner is not None
    return inner


def _opened_layer(layer: IPv6Layer, bundle: Esp, walk: Walk) -> IPv6Layer:
    """`layer` once its ESP is decrypted: with what the plaintext's walk added to it (a HAO,
    an RH2 inside the ESP) and its rebuilt bundle."""
    found = walk.layers[0] if walk.layers else layer
    return IPv6Layer(found.src, found.dst, found.home_address, found.routing_home_address,
                     found.pseudo_home_address, bundle)


def _pending(layers: Sequence[IPv6Layer]) -> tuple[int, list[Esp], int] | None:
    """(layer index, its ESP bundle, depth) of the first ESP header not yet tried."""
    for index, layer in enumerate(layers):
        esp = layer.esp
        if esp is None:
            continue
        if esp.bundled is None:                    # one ESP header, as most packets have
            if not esp.decrypted and esp.undecrypted is None:
                return index, [esp], 0
            continue
        chain = list(esp.chain())
        for depth, header in enumerate(chain):
            if not header.decrypted and header.undecrypted is None:
                return index, chain, depth
    return None


def _marked(chain: list[Esp], depth: int, reason: str) -> Esp:
    """The bundle with chain[depth] not decrypted, for `reason` (events.UNDECRYPTED)."""
    chain[depth] = dataclasses.replace(chain[depth], undecrypted=reason)
    return _nest(chain)
