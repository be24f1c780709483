"""The octet readers never raise, whatever the frame (tshark reports what is wrong)."""
from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.all import TCP, UDP, Ether, ICMPv6EchoRequest, IPv6

from dissectors import mobility, wire
from tests.dissectors import builders as b


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200), st.sampled_from([1, 101, 113, 229, 276, 0, 9999]))
def test_walk_never_raises_on_random_octets(data, linktype):
    walked = wire.walk(linktype, data, [(135, data[:40])])
    assert isinstance(walked.layers, list)
    assert wire.candidate(linktype, data) in (True, False)


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 255), st.binary(max_size=80))
def test_mh_parse_never_raises(mh_type, data):
    msg = mobility.parse(mh_type, data, (bytes(16), bytes(16)), truncated=False)
    assert msg.mh_type == mh_type


def test_truncation_of_a_real_bu_keeps_the_header_fields():
    bu, data, auth = b.signed_cn_bu(b.KBM, b.COA, b.CN, 77)
    raw = bytes(bu)
    for cut in range(len(raw)):
        walked = wire.walk(229, raw[:cut])
        if cut >= 40:
            assert walked.layers[0].src == b.COA
    full = wire.walk(229, raw)
    assert full.mh is not None and not full.mh_truncated
    short = wire.walk(229, raw[:-4])
    assert short.mh_truncated
    msg = mobility.parse(5, short.mh, short.mh_pseudo, short.mh_truncated)
    assert msg.sequence == 77 and msg.checksum_valid is None and msg.authenticator is None


def test_prefilter_drops_only_plain_traffic():
    plain = [IPv6() / TCP(), IPv6() / UDP(sport=53, dport=53), IPv6() / ICMPv6EchoRequest()]
    kept = [b.hoti_with_p(), IPv6() / UDP(sport=4500, dport=4500), b.home_bu_tunnel(0x1001, 1),
            IPv6() / b.hao(b.HOA) / UDP()]
    assert [wire.candidate(229, bytes(p)) for p in plain] == [False] * 3
    assert [wire.candidate(229, bytes(p)) for p in kept] == [True] * 4
    assert wire.candidate(1, bytes(Ether() / b.hoti_with_p())) is True
    assert wire.candidate(1, bytes(Ether() / IPv6() / TCP())) is False


def test_pcapng_interface_statistics_give_kernel_drops():
    import struct
    from io import BytesIO

    from dissectors import capfile

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
