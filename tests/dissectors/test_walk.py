"""The walk never raises and never hangs, whatever the octets: random frames, and lab frames
mutated the ways hostile input is (lengths, option types, truncation, nested tunnels, ESP
garbage), with and without keys. Every frame is counted."""
from __future__ import annotations

import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scapy.all import TCP, UDP, Ether, ICMPv6EchoRequest, IPv6

from dissectors import capfile, mobility
from dissectors.accounting import Accounting
from dissectors.capfile import Record
from dissectors.decrypt import EspDecryptor
from dissectors.dissect import Dissector
from dissectors.events import MobilityMessage
from dissectors.walk import Walker, candidate
from keys.keyring import load_keyring
from lab.run import run_scenario
from lab.scenario import load_scenario
from tests.dissectors import builders as b

LINKTYPES = [0, 1, 12, 101, 108, 113, 229, 276, 9999]


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=300), st.sampled_from(LINKTYPES), st.integers(0, 400))
def test_walk_never_raises_on_random_octets(data, linktype, extra):
    walk = Walker().frame(linktype, data, len(data) + extra)
    assert isinstance(walk.layers, list) and walk.selected in (True, False)
    assert candidate(linktype, data) in (True, False)


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 255), st.binary(max_size=80), st.integers(0, 100))
def test_mh_parse_and_check_never_raise(mh_type, data, reported):
    msg = mobility.parse(mh_type, data, (bytes(16), bytes(16)), truncated=False)
    assert msg.mh_type == mh_type
    if len(data) >= mobility.MH_HEADER:
        assert mobility.check(mh_type, data, reported) in (None, mobility.PAST_PACKET,
                                                           mobility.PAST_CAPTURE)


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    d = tmp_path_factory.mktemp("demo")
    run_scenario(load_scenario("demo"), d, seed=5)
    with capfile.open_capture(str(d / "capture.pcapng")) as f:
        frames = [r for r in capfile.records(f)]
    return frames, load_keyring(d / "keyring.toml")


def _mutate(data: bytes, how: str, at: int, value: int, count: int) -> bytes:
    frame = bytearray(data)
    at %= max(len(frame), 1)
    if how == "truncate":
        return bytes(frame[:at])
    if how == "flip" and frame:
        frame[at] ^= 1 << (value % 8)
    elif how == "byte" and frame:
        frame[at] = value % 256
    elif how == "length":
        # a length field of the IPv6 header or of one of the first extension headers
        targets = [18, 19, 55, 63, 71, 79] + [at]
        frame[targets[value % len(targets)] % max(len(frame), 1)] = (value * 37) % 256
    elif how == "nest":
        # IPv6-in-IPv6 `count` deep in front of the frame's own IPv6 header (RFC 2473)
        inner = bytes(frame[14:])
        for _ in range(count):
            inner = struct.pack("!IHBB16s16s", 0x60000000, len(inner), 41, 64,
                                bytes(16), bytes(16)) + inner
        return bytes(frame[:14]) + inner
    elif how == "esp-garbage":
        # every octet after the first 62 (Ethernet, IPv6, start of what follows) random-ish
        return bytes(frame[:62]) + bytes((value + i * 31) % 256 for i in range(count * 7))
    return bytes(frame)


MUTATIONS = st.sampled_from(["truncate", "flip", "byte", "length", "nest", "esp-garbage"])


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.function_scoped_fixture])
@given(st.data())
def test_mutated_lab_frames_never_raise_and_are_all_counted(demo, data):
    frames, keyring = demo
    picked = data.draw(st.lists(st.integers(0, len(frames) - 1), min_size=1, max_size=8))
    records = []
    for n, index in enumerate(picked, 1):
        how = data.draw(MUTATIONS)
        mutated = _mutate(frames[index].data, how, data.draw(st.integers(0, 400)),
                          data.draw(st.integers(0, 10_000)), data.draw(st.integers(1, 60)))
        length = len(mutated) + data.draw(st.sampled_from([0, 0, 0, 1, 300]))
        records.append(Record(n, 1, mutated, length, float(n)))
    accounting = Accounting()
    events = list(Dissector(accounting).events(records))
    # the dissector's last guard (a walk bug becomes a counted frame) never had to act
    assert not any((e.malformed or "").startswith("dissector error") for e in events)
    decryptor = EspDecryptor(keyring)
    for event in events:
        decrypted = decryptor.decrypt(event)
        assert all(esp.decrypted or esp.undecrypted for esp in decrypted.esp_headers())
        assert decrypted.frame == event.frame and decrypted.layers
    assert accounting.read == len(records)
    assert accounting.filtered + accounting.malformed + len(events) == len(records)


def test_truncation_of_a_real_bu_keeps_the_header_fields():
    bu, data, auth = b.signed_cn_bu(b.KBM, b.COA, b.CN, 77)
    raw = bytes(bu)
    walker = Walker()
    for cut in range(len(raw)):
        walk = walker.frame(229, raw[:cut], len(raw))          # the snap length cut it
        if cut >= 40:
            assert walk.layers[0].src == b.COA
        assert not walk.exception                               # cut short, not malformed
    full = walker.frame(229, raw, len(raw))
    assert full.mh is not None and not full.mh_short and full.malformed is None
    short = walker.frame(229, raw[:-4], len(raw))
    assert short.mh_short and short.malformed == \
        "Mobility Header truncated by the capture's snap length"
    msg = short.message()
    assert msg.sequence == 77 and msg.checksum_valid is None and msg.authenticator is None


def test_prefilter_drops_only_plain_traffic():
    plain = [IPv6() / TCP(), IPv6() / UDP(sport=53, dport=53), IPv6() / ICMPv6EchoRequest()]
    kept = [b.hoti_with_p(), IPv6() / UDP(sport=4500, dport=4500), b.home_bu_tunnel(0x1001, 1),
            IPv6() / b.hao(b.HOA) / UDP()]
    assert [candidate(229, bytes(p)) for p in plain] == [False] * 3
    assert [candidate(229, bytes(p)) for p in kept] == [True] * 4
    assert candidate(1, bytes(Ether() / b.hoti_with_p())) is True
    assert candidate(1, bytes(Ether() / IPv6() / TCP())) is False


def test_pcapng_interface_statistics_give_kernel_drops():
    from io import BytesIO

    def block(btype: int, body: bytes) -> bytes:
        length = 12 + len(body)
        return struct.pack("<II", btype, length) + body + struct.pack("<I", length)
    shb = block(capfile.SHB, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1))
    idb = block(capfile.IDB, struct.pack("<HHI", 1, 0, 65535))
    frame = bytes(Ether() / b.hoti_with_p())
    epb = block(capfile.EPB, struct.pack("<IIIII", 0, 0, 0, len(frame), len(frame))
                + frame + bytes(-len(frame) % 4))
    # ISB as dumpcap writes it: isb_ifrecv (4) then isb_ifdrop (5), then opt_endofopt
    isb = block(capfile.ISB, struct.pack("<III", 0, 0, 0)
                + struct.pack("<HHQ", 4, 8, 12) + struct.pack("<HHQ", 5, 8, 7)
                + struct.pack("<HH", 0, 0))
    drops = capfile.DropCounter()
    recs = list(capfile.records(BytesIO(shb + idb + epb + isb), drops))
    assert [(r.number, r.linktype, r.data) for r in recs] == [(1, 1, frame)]
    assert drops.dropped == 7


def test_address_text_is_rfc5952_for_every_kind_of_address():
    """The walk writes addresses through keys.formulas.address_text (inet_ntop, and ipaddress
    under ::/80, which inet_ntop writes with a dotted IPv4 tail): the same text as ipaddress
    for random addresses, the zero runs RFC 5952 4.2 treats specially, and ::/80."""
    import ipaddress
    import random

    from dissectors.mobility import address

    rng = random.Random(7)
    samples = [bytes(16), (1).to_bytes(16, "big"), bytes(10) + b"\xff\xff\x01\x02\x03\x04",
               bytes(12) + b"\x01\x02\x03\x04", b"\x20\x01\x0d\xb8" + bytes(4) + b"\x00\x01" * 4,
               b"\x20\x01\x0d\xb8\x00\x00\x00\x01" + bytes(4) + b"\x00\x01\x00\x00"]
    samples += [rng.randbytes(16) for _ in range(200)]
    samples += [bytes(rng.choice((0, 0, 0, rng.randrange(256))) for _ in range(16))
                for _ in range(200)]
    for octets in samples:
        assert address(octets) == str(ipaddress.IPv6Address(octets))


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(sorted(mobility.MESSAGES)), st.binary(min_size=24, max_size=60),
       st.integers(0, 40))
def test_mh_cut_in_its_fixed_part_keeps_the_fields_that_are_there(mh_type, data, cut):
    """parse reads a whole fixed part in one generated step and a cut one row by row: the
    fields a cut message keeps are the whole message's, the others None, no option read."""
    mh = bytes([59, 3, mh_type]) + data
    whole = mobility.parse(mh_type, mh, None, truncated=False)
    cut = max(cut, 3) % (mobility.OPTIONS_AT[mh_type] + 1)
    short = mobility.parse(mh_type, mh[:cut], None, truncated=True)
    at = mobility.MH_HEADER
    for row in mobility.MESSAGES[mh_type]:
        at += struct.calcsize("!" + row.fmt)
        if row.name:
            absent = getattr(MobilityMessage(mh_type), row.name)     # None, or no flags
            assert getattr(short, row.name) == (getattr(whole, row.name) if at <= cut
                                                else absent)
    assert short.header_len_short == whole.header_len_short
    assert short.alternate_care_of_address is None and short.authenticator is None
