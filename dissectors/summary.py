"""The packet list's strings: tshark-like Info summaries and protocol names.

The dashboard's packet list shows, per frame, what Wireshark's Info and Protocol columns would:
these tables are tshark 4.0's own names (`tshark -G values`, and its columns on the lab's and
the shared captures), so a user who knows Wireshark reads the same words. They are summaries
for people; nothing is decided from them.
"""
from __future__ import annotations

# tshark 4.0 `mip6.mhtype` (RFC 6275 6.1.2 and later registrations); Info shows the name.
MH_INFO = {
    0: "Binding Refresh Request", 1: "Home Test Init", 2: "Care-of Test Init", 3: "Home Test",
    4: "Care-of Test", 5: "Binding Update", 6: "Binding Acknowledgement", 7: "Binding Error",
    8: "Fast Binding Update", 9: "Fast Binding Acknowledgment",
    10: "Fast Neighbor Advertisement", 11: "Experimental Mobility Header",
    12: "Home Agent Switch", 13: "Heartbeat", 14: "Handover Initiate",
    15: "Handover Acknowledge", 16: "Binding Revocation", 17: "Localized Routing Initiation",
    18: "Localized Routing Acknowledgment", 19: "Update Notification",
    20: "Update Notification Acknowledgement", 21: "Flow Binding",
    22: "Subscription Query", 23: "Subscription Response",
}

# tshark 4.0 `icmpv6.type` (RFC 4443 and the IANA registry)
ICMPV6_INFO = {
    1: "Destination Unreachable", 2: "Packet Too Big", 3: "Time Exceeded",
    4: "Parameter Problem", 100: "Private experimentation", 101: "Private experimentation",
    127: "Reserved for expansion of ICMPv6 error messages", 128: "Echo (ping) request",
    129: "Echo (ping) reply", 130: "Multicast Listener Query", 131: "Multicast Listener Report",
    132: "Multicast Listener Done", 133: "Router Solicitation", 134: "Router Advertisement",
    135: "Neighbor Solicitation", 136: "Neighbor Advertisement", 137: "Redirect",
    138: "Router Renumbering", 139: "Node Information Query", 140: "Node Information Reply",
    141: "Inverse Neighbor Discovery Solicitation",
    142: "Inverse Neighbor Discovery Advertisement",
    143: "Multicast Listener Report Message v2", 144: "Home Agent Address Discovery Request",
    145: "Home Agent Address Discovery Reply", 146: "Mobile Prefix Solicitation",
    147: "Mobile Prefix Advertisement", 148: "Certification Path Solicitation",
    149: "Certification Path Advertisement", 150: "Experimental Mobility",
    151: "Multicast Router Advertisement", 152: "Multicast Router Solicitation",
    153: "Multicast Router Termination", 154: "FMIPv6", 155: "RPL Control",
    156: "Locator Update", 157: "Duplicate Address Request",
    158: "Duplicate Address Confirmation", 159: "MPL Control Message",
    160: "Extended Echo request", 161: "Extended Echo reply", 200: "Private experimentation",
    201: "Private experimentation",
    255: "Reserved for expansion of ICMPv6 informational messages",
}
# RFC 4443 3.1, 3.3, 3.4: the codes of the error messages, as tshark names them
ICMPV6_CODES = {
    1: {0: "no route to destination", 1: "Administratively prohibited",
        2: "Beyond scope of source address", 3: "Address unreachable",
        4: "Port unreachable", 5: "Source address failed ingress/egress policy",
        6: "Reject route to destination", 7: "Error in Source Routing Header"},
    3: {0: "hop limit exceeded in transit", 1: "fragment reassembly time exceeded"},
    4: {0: "erroneous header field encountered",
        1: "unrecognized Next Header type encountered",
        2: "unrecognized IPv6 option encountered",
        3: "IPv6 First Fragment has incomplete IPv6 Header Chain"},
}

# RFC 9293 3.1 control bits, in the order tshark lists them (AE is RFC 3540's NS bit)
TCP_FLAGS = (("FIN", 0x001), ("SYN", 0x002), ("RST", 0x004), ("PSH", 0x008), ("ACK", 0x010),
             ("URG", 0x020), ("ECE", 0x040), ("CWR", 0x080), ("AE", 0x100))

# tshark's names for the upper layers the walk does not dissect (frame.protocols)
IP_PROTOCOL_NAMES = {4: "ip", 47: "gre", 132: "sctp", 136: "udplite", 89: "ospf", 103: "pim",
                     112: "vrrp", 115: "l2tp"}

MALFORMED = "[Malformed Packet]"
LIMITED = "[Packet size limited during capture]"
EXCEPTION = "Malformed Packet (Exception occurred)"   # tshark's expert message for it


def mh_info(mh_type: int) -> str:
    return MH_INFO.get(mh_type, f"Unknown Mobility Header ({mh_type})")


def icmpv6_info(icmp_type: int, code: int) -> str:
    name = ICMPV6_INFO.get(icmp_type, f"Unknown ({icmp_type})")
    codes = ICMPV6_CODES.get(icmp_type)
    if codes is not None:
        return f"{name} ({codes.get(code, 'Unknown' if icmp_type == 1 else f'Unknown ({code})')})"
    if icmp_type in (150, 154):          # tshark names their subtypes, which the walk does not
        return f"{name} (Unknown ({code}))"
    return name


def tcp_flags(flags: int) -> str:
    return ", ".join(name for name, bit in TCP_FLAGS if flags & bit) or "<None>"


def tcp_info(sport: int, dport: int, names: str, seq: object, ack: object, win: object,
             flags: int, urgent: object, length: object) -> str:
    """tshark's Info of a TCP segment before its options: Ack only with ACK set, Urg only
    with URG set (both engines, dissectors.walk and dissectors.pyshark_packets, say it so)."""
    text = f"{sport} → {dport} [{names}] Seq={seq}"
    if flags & 0x010:
        text += f" Ack={ack}"
    text += f" Win={win}"
    if flags & 0x020:
        text += f" Urg={urgent}"
    return text + f" Len={length}"
