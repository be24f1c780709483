"""monitor.attribution.FrameAttribution through its own interface: what the keyed analyzer feeds
it (seen / attribute / tie_spi / settle) and what it answers (node, nodes, explain)."""
from __future__ import annotations

from dissectors.protocol import SPI_LOOKAHEAD
from keys import formulas as f
from monitor.attribution import FrameAttribution
from monitor.caches import AddressBook, Identity
from tests.monitor.conftest import CN, COA, HA, HOA, KS, PHOA_CTR_7, make_keyring

KPH = f.kph_from_ks(KS)
HOA2, COA2 = "2001:db8:1::200", "2001:db8:2::200"


def packet(attribution: FrameAttribution, frame: int, addresses: tuple[str, ...],
           spis: tuple[int, ...] = (), home: str | None = None) -> None:
    """One packet as the analyzer feeds it; `home`: a message handler tied it to a node."""
    attribution.seen(frame, addresses, spis)
    attribution.attribute(frame, home)
    attribution.settle(frame, addresses, spis)


def test_a_frame_is_tied_when_the_book_learns_its_address():
    book = AddressBook()
    a = FrameAttribution(book, None)
    packet(a, 1, (PHOA_CTR_7, CN))
    assert a.node(1) is None and a.nodes() == {} and a.explain(1) is None
    book.learn(PHOA_CTR_7, Identity(HOA, "routable", "Kph of mn1, i = ESP seq 7"))
    assert a.node(1) == HOA and a.nodes() == {1: HOA}
    assert a.explain(1) == (HOA, f"pseudo HoA {PHOA_CTR_7} (via Kph of mn1, i = ESP seq 7) of")


def test_a_settled_frame_ties_its_spis_and_the_first_tie_wins():
    book = AddressBook()
    book.learn(HOA, Identity(HOA, "home", "keyring"))
    a = FrameAttribution(book, None)
    packet(a, 1, (COA, HA, HOA), spis=(0x5005,))          # a decrypted tunnel naming HOA
    packet(a, 2, ("2001:db8:6::1", HA), spis=(0x5005,))   # the same SA, opaque, elsewhere
    a.tie_spi(0x5005, HOA2)                                # a later claim on that SA
    assert a.nodes() == {1: HOA, 2: HOA}
    assert a.explain(1) is None                            # tied while processed: nothing to say
    assert a.explain(2) == (HOA, "ESP SPI 0x00005005 of an SA of")


def test_a_message_handler_decides_before_the_addresses():
    book = AddressBook()
    book.learn(HOA, Identity(HOA, "home", "keyring"))
    a = FrameAttribution(book, None)
    packet(a, 1, (HOA2, HOA), home=HOA2)
    assert a.node(1) == HOA2


def test_a_care_of_address_names_a_node_only_while_one_node_is_bound_there():
    book = AddressBook()
    a = FrameAttribution(book, None)
    packet(a, 1, (COA, CN))
    book.learn_care_of(COA, HOA)
    assert a.explain(1) == (HOA, f"care-of address {COA} bound to")
    book.learn_care_of(COA, HOA2)
    assert a.node(1) is None


def test_keyring_sas_and_their_draft_6_4_chains_name_their_node():
    ring = make_keyring()
    a = FrameAttribution(AddressBook(), ring)
    a.tie_spi(0x1001, HOA)
    chain = f.spi_chain(KPH, 0x1001, SPI_LOOKAHEAD)        # the tied SPI and what follows
    owners = a.spi_owners()
    assert all(owners[spi] == HOA for spi in chain)
    assert f.next_spi(KPH, chain[-1]) not in owners        # the look-ahead ends
    packet(a, 7, (COA2, HA), spis=(chain[-1],))
    packet(a, 8, (COA2, HA), spis=(f.next_spi(KPH, chain[-1]),))
    assert a.nodes() == {7: HOA}


def test_forget_before_keeps_the_latest_frames_only():
    book = AddressBook()
    book.learn(HOA, Identity(HOA, "home", "keyring"))
    a = FrameAttribution(book, None, max_frames=3)
    for frame in range(1, 11):
        packet(a, frame, (HOA,) if frame % 2 else (COA2,))
        a.forget_before(frame - 3 + 1)
    assert a.nodes() == {9: HOA}
    assert a.node(1) is None and a.node(10) is None
    book.learn_care_of(COA2, HOA)
    assert a.nodes() == {8: HOA, 9: HOA, 10: HOA}
