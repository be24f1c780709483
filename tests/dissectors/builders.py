"""Small MIPv6 captures built with scapy for the dissector tests (PROFILE.md code points).

Every packet is built from scapy layers except where scapy has no layer for a profile code
point (option 0xFE, mobility option 18, the HoTI 'P' flag), which are written as raw options.
"""
from __future__ import annotations

from scapy.all import (  # noqa: F401
    ESP,
    HAO,
    MIP6MH_BU,
    HBHOptUnknown,
    IPv6,
    IPv6ExtHdrDestOpt,
    IPv6ExtHdrRouting,
    MIP6MH_HoT,
    MIP6MH_HoTI,
    MIP6OptAltCoA,
    MIP6OptBindingAuthData,
    MIP6OptNonceIndices,
    MIP6OptUnknown,
    PadN,
)
from scapy.layers.ipsec import SecurityAssociation
from scapy.utils import PcapNgWriter, PcapWriter

from keys import formulas

HOA = "2001:db8:1::100"
HA = "2001:db8:1::1"
COA = "2001:db8:2::100"
CN = "2001:db8:3::5"
PHOA = "2001:db8:100:0:996a:8561:d196:5aec"   # PROFILE.md vector (5.1.3, aes-ctr)
KBM = bytes.fromhex("1bb66dda1addc2a096296a15cfd42e4bc0272552")  # PROFILE.md vector
ENC_KEY = bytes.fromhex("00112233445566778899aabbccddeeff")
AUTH_KEY = bytes.fromhex("0102030405060708090a0b0c0d0e0f1011121314")
KS = bytes.fromhex("0f0e0d0c0b0a09080706050403020100")
FIRST_SPI = 0x1001


def hao(address: str) -> IPv6ExtHdrDestOpt:
    # RFC 6275 6.3: HAO alignment 8n+6; scapy pads it
    return IPv6ExtHdrDestOpt(options=[HAO(hoa=address)])


def pseudo_option(address: str) -> IPv6ExtHdrDestOpt:
    # PROFILE.md: destination option 0xFE, length 16, alignment 8n+6 (4 octets PadN first)
    return IPv6ExtHdrDestOpt(options=[PadN(optdata=b"\x00\x00"),
                                      HBHOptUnknown(otype=0xFE, optlen=16,
                                                    optdata=formulas.address_bytes(address))])


def rh2(address: str) -> IPv6ExtHdrRouting:
    return IPv6ExtHdrRouting(type=2, segleft=1, addresses=[address])


def signed_cn_bu(kbm: bytes, coa: str, cn: str, seq: int, hoa: str | None = HOA,
                 pseudo: str | None = None, lifetime: int = 400):
    """A correspondent BU (RFC 6275 6.1.7) with Nonce Indices and a real Authenticator
    (RFC 6275 6.2.7), carried with a HAO or with the 0xFE option (draft 4.1)."""
    def build(auth: bytes):
        bu = MIP6MH_BU(seq=seq, flags=0, mhtime=lifetime // 4, options=[
            MIP6OptNonceIndices(olen=4, hni=1, coni=2),
            MIP6OptBindingAuthData(olen=12, authenticator=int.from_bytes(auth, "big"))])
        dest = hao(hoa) if pseudo is None else pseudo_option(pseudo)
        return IPv6(src=coa, dst=cn) / dest / bu
    probe = IPv6(bytes(build(bytes(12))))
    mh = bytes(probe[MIP6MH_BU])
    mh = mh[:4] + b"\x00\x00" + mh[6:]
    bad_at = mh.index(bytes([5, 12]), 12)                # BAD option type 5 length 12
    data = mh[:bad_at + 2]                               # RFC 6275 6.2.7
    auth = formulas.authenticator(kbm, coa, cn, data)
    return build(auth), data, auth


def hoti_with_p(src: str = PHOA, dst: str = CN, p_flag: bool = True):
    # PROFILE.md: 'P' flag = MSB of the HoTI's 16-bit Reserved field
    return IPv6(src=src, dst=dst) / MIP6MH_HoTI(reserved=b"\x80\x00" if p_flag else b"\x00\x00",
                                                cookie=b"\x11" * 8)


PRIVACY_TOKEN = bytes.fromhex("d54fcc9022435730")  # PROFILE.md vector


def hot_with_option18(token: bytes = PRIVACY_TOKEN):
    # PROFILE.md: mobility option 18, length 10: subtype 1, reserved 0, 8-octet token; then pad
    return IPv6(src=CN, dst=PHOA) / MIP6MH_HoT(
        index=1, cookie=b"\x11" * 8, token=b"\x22" * 8,
        options=[MIP6OptUnknown(otype=18, olen=10, odata=b"\x01\x00" + token)])


def sa(spi: int, tunnel: tuple[str, str] | None = None) -> SecurityAssociation:
    return SecurityAssociation(
        ESP, spi=spi, crypt_algo="AES-CBC", crypt_key=ENC_KEY, auth_algo="HMAC-SHA1-96",
        auth_key=AUTH_KEY,
        tunnel_header=IPv6(src=tunnel[0], dst=tunnel[1]) if tunnel else None)


def home_bu_transport(spi: int, seq_num: int, bu_seq: int = 7, hoa: str = PHOA,
                      coa: str = COA, ha: str = HA):
    """draft 5.2.1: Home BU protected by ESP transport mode (RFC 3776), HAO before ESP."""
    pkt = IPv6(src=coa, dst=ha) / hao(hoa) / MIP6MH_BU(seq=bu_seq, flags="AH",
                                                        mhtime=25, options=[
                                                            MIP6OptAltCoA(acoa=coa)])
    pkt = IPv6(bytes(pkt))
    return sa(spi).encrypt(pkt, seq_num=seq_num)


def home_bu_tunnel(spi: int, seq_num: int, bu_seq: int = 9, hoa: str = HOA,
                   coa: str = COA, ha: str = HA):
    """draft 5.2.2: Home BU inside ESP tunnel mode; the inner source is the home address."""
    inner = IPv6(src=hoa, dst=ha) / MIP6MH_BU(seq=bu_seq, flags="AH", mhtime=25,
                                              options=[MIP6OptAltCoA(acoa=coa)])
    inner = IPv6(bytes(inner))
    return sa(spi, tunnel=(coa, ha)).encrypt(inner, seq_num=seq_num)


def write(path, packets, comments: list[str] | None = None, times: list[float] | None = None):
    """Write a pcapng with optional per-packet comments (path=...)."""
    with PcapNgWriter(str(path)) as w:
        for n, p in enumerate(packets):
            p = p.copy() if hasattr(p, "copy") else p
            if times:
                p.time = times[n]
            else:
                p.time = 1700000000 + n
            if comments:
                p.comment = comments[n].encode()
            w.write(p)
    return path


def write_pcap(path, packets):
    with PcapWriter(str(path), linktype=229) as w:  # LINKTYPE_IPV6 = DLT_RAW family
        for n, p in enumerate(packets):
            p.time = 1700000000 + n
            w.write(p)
    return path
