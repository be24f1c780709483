"""Small constructors of PacketEvents for the attacker's rule tests (what the dissector emits)."""
from __future__ import annotations

from dissectors.events import Esp, IPv6Layer, MobilityMessage, PacketEvent

HA = "2001:db8:1::1"
HOA1, HOA2 = "2001:db8:1::100", "2001:db8:1::200"
CN, CN2 = "2001:db8:3::5", "2001:db8:3::6"
COA1, COA2, COA3 = "2001:db8:2::a1", "2001:db8:4::a2", "2001:db8:5::a3"
COB1, COB2 = "2001:db8:2::b1", "2001:db8:4::b2"
PHOA = "2001:db8:100::9a3f:77e1:1234:5678"


def layer(src, dst, hao=None, rh2=None, phoa=None, esp=None, decrypted=False):
    return IPv6Layer(src, dst, home_address=hao, routing_home_address=rh2,
                     pseudo_home_address=phoa,
                     esp=Esp(esp[0], esp[1], decrypted) if esp else None)


def event(frame, time, *layers, mh=None, path=None, length=100):
    return PacketEvent(frame=frame, time=float(time), length=length, layers=tuple(layers),
                       mobility=mh, path=path)


def bu(seq, home=False, hni=None, cni=None, acoa=None):
    return MobilityMessage(5, sequence=seq, flags=frozenset({"A", "H"} if home else {"A"}),
                           lifetime=100, home_nonce_index=hni, care_of_nonce_index=cni,
                           alternate_care_of_address=acoa)


def ba(seq):
    return MobilityMessage(6, sequence=seq, status=0, lifetime=100)


def hoti(cookie=b"\x01" * 8):
    return MobilityMessage(1, cookie=cookie)


def coti(cookie=b"\x02" * 8):
    return MobilityMessage(2, cookie=cookie)


def hot(index, cookie=b"\x01" * 8):
    return MobilityMessage(3, cookie=cookie, nonce_index=index, keygen_token=b"\x00" * 8)


def cot(index, cookie=b"\x02" * 8):
    return MobilityMessage(4, cookie=cookie, nonce_index=index, keygen_token=b"\x00" * 8)


def home_bu_esp(frame, time, coa, phoa, spi, seq):
    """draft 5.2.1: Home BU from the care-of address, HAO, ESP transport mode (opaque)."""
    return event(frame, time, layer(coa, HA, hao=phoa, esp=(spi, seq)))


def home_ba_esp(frame, time, coa, phoa, spi, seq):
    return event(frame, time, layer(HA, coa, rh2=phoa, esp=(spi, seq)))


def tunnel_up(frame, time, coa, spi, seq, inner=None, mh=None, length=100):
    """An ESP tunnel packet from the mobile node to the home agent (inner part decrypted or not)."""
    layers = [layer(coa, HA, esp=(spi, seq), decrypted=inner is not None)]
    if inner is not None:
        layers.append(layer(*inner))
    return event(frame, time, *layers, mh=mh, length=length)


def tunnel_down(frame, time, coa, spi, seq, length=100):
    return event(frame, time, layer(HA, coa, esp=(spi, seq)), length=length)


def analyse(events, vantage="all"):
    """The attacker over the events in capture order (a capture is in time order)."""
    from monitor.attacker import AttackerAnalyzer
    attacker = AttackerAnalyzer(vantage)
    for e in sorted(events, key=lambda e: (e.time, e.frame)):
        attacker.packet(e)
    attacker.done()
    return attacker


def evidence(attacker, rule, links=True):
    return [e for e in attacker.evidence() if e.rule == rule
            and (e.confidence >= attacker.threshold) == links]


def same_profile(attacker, *frames) -> bool:
    for p in attacker.profiles():
        if frames[0] in p.frames:
            return all(f in p.frames for f in frames)
    return False
