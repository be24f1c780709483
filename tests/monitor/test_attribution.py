"""monitor.attribution.FrameAttribution through its own interface: what the keyed analyzer feeds
it (seen / attribute / tie_spi / settle) and what it answers (node, nodes, explain)."""
from __future__ import annotations

from dissectors.events import IPv6Layer
from monitor.attribution import FrameAttribution, addresses_of
from monitor.caches import AddressBook, Identity
from tests.monitor.conftest import CN, COA, HA, HOA, PHOA_CTR_7

HOA2, COA2 = "2001:db8:1::200", "2001:db8:2::200"


def packet(attribution: FrameAttribution, frame: int, addresses: tuple[str | None, ...],
           esps: tuple[tuple[str, int, str | None], ...] = (), home: str | None = None) -> None:
    """One packet as the analyzer feeds it, `addresses` standing as the layers carry them
    (`layers` below); `esps`: its verified ESP headers (receiver, SPI, the certain node or
    None); `home`: a message handler tied it to a node."""
    attribution.seen(frame, esps)
    attribution.attribute(frame, home)
    attribution.settle(frame, layers(addresses), esps)


def layers(addresses: tuple[str | None, ...]) -> tuple[IPv6Layer, ...]:
    """Layers whose addresses_of() are `addresses` (then Nones): five a layer, in its order
    (HAO, RH2, option 0xFE, source, destination); fewer than five are a layer's source and
    destination, with the HAO after them."""
    if len(addresses) < 5:
        src, dst, *hao = addresses + (None,) * (2 - len(addresses))
        return (IPv6Layer(src, dst, home_address=hao[0] if hao else None),)
    return tuple(IPv6Layer(src, dst, hao, rh2, option) for hao, rh2, option, src, dst
                 in zip(*[iter(addresses)] * 5, strict=True))


def test_addresses_of_reads_every_layer_in_order():
    outer = IPv6Layer(COA, HA, home_address=HOA)
    inner = IPv6Layer(HOA, CN, routing_home_address=HOA2, pseudo_home_address=PHOA_CTR_7)
    assert addresses_of((outer,)) == (HOA, None, None, COA, HA)
    assert addresses_of((outer, inner)) == (HOA, None, None, COA, HA,
                                            None, HOA2, PHOA_CTR_7, HOA, CN)


def test_a_frame_is_tied_when_the_book_learns_its_address():
    book = AddressBook()
    a = FrameAttribution(book)
    packet(a, 1, (PHOA_CTR_7, CN))
    assert a.node(1) is None and a.nodes() == {} and a.explain(1) is None
    book.learn(PHOA_CTR_7, Identity(HOA, "routable", "Kph of mn1, i = ESP seq 7"))
    assert a.node(1) == HOA and a.nodes() == {1: HOA}
    assert a.explain(1) == (HOA, f"pseudo HoA {PHOA_CTR_7} (via Kph of mn1, i = ESP seq 7) of")


def test_a_settled_frame_ties_its_verified_sas_and_a_second_owner_unties_them():
    book = AddressBook()
    book.learn(HOA, Identity(HOA, "home", "keyring"))
    a = FrameAttribution(book)
    packet(a, 1, (COA, HA, HOA), esps=((HA, 0x5005, None),))   # a decrypted tunnel naming HOA
    packet(a, 2, ("2001:db8:6::1", HA), esps=((HA, 0x5005, None),))  # same SA, nothing named
    packet(a, 3, ("2001:db8:6::1", HA), esps=((COA2, 0x5005, None),))  # same SPI, elsewhere
    assert a.nodes() == {1: HOA, 2: HOA}
    assert a.explain(1) is None                            # tied while processed: nothing to say
    assert a.explain(2) == (HOA, f"ESP SPI 0x00005005 toward {HA} of an SA of")
    a.tie_spi((HA, 0x5005), HOA2)       # a chain of another node reached that SPI later
    assert a.nodes() == {1: HOA} and a.node(2) is None    # no guess between the two


def test_the_keyed_stage_certain_node_ties_the_frame_and_its_sa():
    a = FrameAttribution(AddressBook())
    packet(a, 1, (COA, HA), esps=((HA, 0x1001, HOA),))
    packet(a, 2, (COA2, HA), esps=((HA, 0x1001, None),))
    assert a.nodes() == {1: HOA, 2: HOA}


def test_unverified_esp_names_nobody():
    """Only verified headers reach the attribution; a keyring SA or a draft 6.4 chain alone
    is no proof (in a crowd the chains of different nodes cross)."""
    a = FrameAttribution(AddressBook())
    packet(a, 1, (COA2, HA))                               # ESP that no SA verified
    assert a.nodes() == {} and a.explain(1) is None


def test_a_message_handler_decides_before_the_addresses():
    book = AddressBook()
    book.learn(HOA, Identity(HOA, "home", "keyring"))
    a = FrameAttribution(book)
    packet(a, 1, (HOA2, HOA), home=HOA2)
    assert a.node(1) == HOA2


def test_a_care_of_address_names_a_node_only_while_one_node_is_bound_there():
    book = AddressBook()
    a = FrameAttribution(book)
    packet(a, 1, (COA, CN))
    book.learn_care_of(COA, HOA)
    assert a.explain(1) == (HOA, f"care-of address {COA} bound to")
    book.learn_care_of(COA, HOA2)
    assert a.node(1) is None


def test_forget_before_keeps_the_latest_frames_only():
    book = AddressBook()
    book.learn(HOA, Identity(HOA, "home", "keyring"))
    a = FrameAttribution(book, max_frames=3)
    for frame in range(1, 11):
        packet(a, frame, (HOA,) if frame % 2 else (COA2,))
        a.forget_before(frame - 3 + 1)
    assert a.nodes() == {9: HOA}
    assert a.node(1) is None and a.node(10) is None
    book.learn_care_of(COA2, HOA)
    assert a.nodes() == {8: HOA, 9: HOA, 10: HOA}


def test_frames_with_the_same_addresses_share_one_key_and_see_what_the_book_learns():
    """Frames that carry the same addresses (a flow, a retransmission) share what is kept of
    them, and one that comes after the book learned one of their addresses is tied at once:
    what was known of those addresses is asked again once the book grew, not before."""
    book = AddressBook()
    a = FrameAttribution(book)
    packet(a, 1, (None, None, None, PHOA_CTR_7, CN))      # as the analyzer passes a layer
    packet(a, 2, (None, None, None, PHOA_CTR_7, CN))
    assert a._pending[1] is a._pending[2] and a._pending[1] == ((PHOA_CTR_7, CN), ())
    book.learn(PHOA_CTR_7, Identity(HOA, "routable", "Kph of mn1, i = ESP seq 7"))
    packet(a, 3, (None, None, None, PHOA_CTR_7, CN))
    assert 3 not in a._pending and a.explain(3) is None and a.node(3) == HOA
    assert a.nodes() == {1: HOA, 2: HOA, 3: HOA}
    book.learn(CN, Identity(HOA2, "home", "keyring"))     # an address after it: first wins
    packet(a, 4, (None, None, None, PHOA_CTR_7, CN))
    assert a.node(4) == HOA
