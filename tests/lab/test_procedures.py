"""One test per procedure: recompute, with keys/formulas.py and the written keyring, every
pseudo home address, Authenticator, sequence number and SPI found in the capture, and match it
against truth.json (which the lab wrote from its actors' caches)."""
from __future__ import annotations

import ipaddress
import struct

import pytest

from keys import formulas as F
from keys.keyring import load_keyring
from tests.lab import wire
from tests.lab.conftest import read_pcapng


class Capture:
    """A built scenario opened for checking: keyring, truth, and every frame parsed."""

    def __init__(self, b, dissected_rows):
        self.b, self.truth, self.rows = b, b.truth, dissected_rows
        self.ring = load_keyring(b.dir / "keyring.toml")
        sas = wire.sas_of(b.keyring)
        self.records = read_pcapng(b.capture)
        self.levels = [wire.parse(r.data[14:], sas) for r in self.records]

    def info(self, frame: int) -> dict:
        return self.truth["frames"][str(frame)]

    def row(self, frame: int) -> dict:
        return self.rows[frame - 1]

    def node_by_hoa(self, hoa: str):
        return self.ring.mobile_node_by_home_address(hoa)

    def mh_level(self, frame: int) -> wire.Level:
        lvl = self.levels[frame - 1][-1]
        assert lvl.next_header == 135
        return lvl

    def frames_where(self, **match) -> list[int]:
        return [int(n) for n, f in self.truth["frames"].items()
                if all(f[k] == v for k, v in match.items())]

    def nonce(self, cn: str, index: int) -> bytes:
        return self.ring.correspondent(cn).nonces[index].value


@pytest.fixture(scope="module")
def caps(built, dissected):
    return {name: Capture(b, dissected[name]) for name, b in built.items()}


def options(mh: bytes) -> dict[int, bytes]:
    return {t: d for _, t, d in wire.mobility_options(mh)}


# --- correspondent registrations ----------------------------------------------------------

def check_correspondent_bindings(cap: Capture, procedure: str) -> int:
    """Every correspondent binding of `procedure`: pseudo home address and Authenticator
    recomputed from Kcn and the nonces, the BA's Authenticator too, sequences per draft 6.3."""
    checked = 0
    previous: dict[tuple[str, str], int] = {}
    for entry in cap.truth["correspondent_bindings"]:
        frame = entry["frame"]
        info = cap.info(frame)
        lvl = cap.mh_level(frame)
        mh = lvl.payload
        opts = options(mh)
        key = (entry["home_address"], entry["correspondent"])
        if info["procedure"] != procedure:
            previous[key] = entry["sequence"]
            continue
        node = cap.node_by_hoa(entry["home_address"])
        assert node is not None
        assert len(cap.levels[frame - 1]) == 1 and cap.levels[frame - 1][0].esp is None, \
            "the delivered copy is in clear"
        cn = lvl.dst
        assert cn == entry["correspondent"]
        coa = wire.text(opts[3]) if 3 in opts else lvl.src
        assert coa == entry["care_of_address"]
        hni, cni = struct.unpack("!HH", opts[4])
        kcn = cap.ring.correspondent(cn).kcn.value
        hoa = node.home_address
        home_source = lvl.hao if procedure == "5.3.1" else hoa     # draft 5.3.1: token over pHoA
        home_token = F.home_keygen_token(kcn, home_source, cap.nonce(cn, hni))
        care_of_token = F.care_of_keygen_token(kcn, coa, cap.nonce(cn, cni))
        kbm = F.binding_management_key(home_token, care_of_token)
        auth = F.authenticator(kbm, coa, cn, mh[:4] + b"\0\0" + mh[6:-12])
        assert auth == opts[5] == mh[-12:]
        assert cap.row(frame)["mip6.bad.auth"].replace(":", "") == auth.hex()   # tshark agrees
        assert entry["authenticator_valid"] is True
        seq = struct.unpack_from("!H", mh, 6)[0]
        assert seq == entry["sequence"] == int(cap.row(frame)["mip6.bu.seqnr"])

        if procedure == "rfc6275":
            assert lvl.hao == hoa and lvl.pseudo_option is None
            pseudo = None
        elif procedure == "4.1":
            # draft 4.1: String XOR HoA from Kpm = SHA1(privacy token | care-of token)
            assert lvl.hao is None and lvl.src == coa
            kpm = F.privacy_management_key(F.privacy_keygen_token(kcn, cap.nonce(cn, hni)),
                                           care_of_token)
            pseudo = F.rr_pseudo_home_address(kpm, coa, hni, cni, hoa)
            assert lvl.pseudo_option == pseudo
            assert F.rr_home_address(kpm, coa, hni, cni, pseudo) == hoa   # the CN's inverse
            assert cap.row(frame)["ipv6.opt.experimental"].replace(":", "") \
                == ipaddress.IPv6Address(pseudo).packed.hex()
        elif procedure in ("4.2", "5.3.2"):
            # draft 4.2 / 5.3.2: AES(Kbm, HoA); source = home address, Alternate CoA present
            assert 3 in opts and lvl.src == hoa and lvl.hao is None
            pseudo = F.encrypted_pseudo_home_address(kbm, hoa)
            assert lvl.pseudo_option == pseudo
            assert F.decrypted_home_address(kbm, pseudo) == lvl.src
            assert info["path"] == "ha-cn"
            # the same BU crossed MN-HA inside the ESP tunnel just before
            tunnelled = cap.levels[frame - 2]
            assert cap.info(frame - 1)["path"] == "mn-ha" and tunnelled[0].esp is not None
            assert tunnelled[1].payload == mh and tunnelled[1].pseudo_option == pseudo
        elif procedure == "5.3.1":
            # draft 5.3.1: the routable pseudo home address of a preceding Home BU, in the HAO
            pseudo = lvl.hao
            home_pseudos = [h["pseudo_home_address"] for h in cap.truth["home_bindings"]
                            if h["frame"] < frame and h["home_address"] == hoa]
            assert pseudo in home_pseudos and pseudo != hoa
        else:
            raise AssertionError(procedure)
        assert entry["pseudo_home_address"] == pseudo

        # draft 6.3 (privacy nodes) or +1 (plain RFC 6275)
        if key in previous:
            plain = all(h["pseudo_home_address"] is None for h in cap.truth["home_bindings"]
                        if h["home_address"] == hoa)
            if plain:
                assert seq == (previous[key] + 1) % 65536
            else:
                assert seq == F.next_bu_sequence(previous[key], kbm, hni, cni)
        previous[key] = seq

        # RFC 6275 6.1.8: the BA, to the care-of address with the (pseudo) HoA in the RH2
        ba_frame = next(n for n in range(frame + 1, len(cap.records) + 1)
                        if cap.info(n)["what"] == "BA" and cap.levels[n - 1][0].src == cn)
        ba = cap.mh_level(ba_frame)
        assert ba.dst == coa and ba.rh2 == (pseudo or hoa)
        assert struct.unpack_from("!H", ba.payload, 8)[0] == seq and ba.payload[6] == 0
        ba_auth = F.authenticator(kbm, coa, cn, ba.payload[:4] + b"\0\0" + ba.payload[6:-12])
        assert ba_auth == options(ba.payload)[5]
        checked += 1
    return checked


@pytest.mark.parametrize("scenario,procedure", [
    ("baseline", "rfc6275"), ("rr-privacy", "4.1"), ("reverse-tunnelled-bu", "4.2"),
    ("mn-initiated-rr", "5.3.1"), ("cn-initiated-rr", "5.3.2"),
    ("demo", "4.1"), ("demo", "4.2"), ("demo", "5.3.1"), ("demo", "5.3.2"), ("demo", "rfc6275")])
def test_correspondent_registration(caps, scenario, procedure):
    cap = caps[scenario]
    assert check_correspondent_bindings(cap, procedure) >= 1
    if procedure != "rfc6275":
        # a new pseudo home address per correspondent and per registration (draft 4.1, 5.3.1)
        pseudos = [e["pseudo_home_address"] for e in cap.truth["correspondent_bindings"]
                   if cap.info(e["frame"])["procedure"] == procedure]
        assert None not in pseudos and len(set(pseudos)) == len(pseudos)


def test_rr_privacy_p_flag_and_privacy_token(caps):
    """draft 4.1: P flag (0x8000 of the HoTI Reserved) and option 18 in the HoT on HA-CN."""
    cap = caps["rr-privacy"]
    hotis = [n for n in cap.frames_where(what="HoTI", path="ha-cn")]
    hots = [n for n in cap.frames_where(what="HoT", path="ha-cn")]
    assert hotis and len(hotis) == len(hots)
    for n in hotis:
        mh = cap.mh_level(n).payload
        assert struct.unpack_from("!H", mh, 6)[0] & 0x8000
    for n in hots:
        lvl = cap.mh_level(n)
        mh = lvl.payload
        index = struct.unpack_from("!H", mh, 6)[0]
        kcn = cap.ring.correspondent(lvl.src).kcn.value
        assert mh[16:24] == F.home_keygen_token(kcn, lvl.dst, cap.nonce(lvl.src, index))
        assert options(mh)[18] == b"\x01\x00" + F.privacy_keygen_token(
            kcn, cap.nonce(lvl.src, index))
        assert wire.mobility_options(mh)[0][:2] == (24, 18)   # before any padding
        assert int(cap.row(n)["mip6.hot.token"], 16) == int.from_bytes(mh[16:24], "big")
    # plain RFC 6275 never sets the flag
    base = caps["baseline"]
    for n in base.frames_where(what="HoTI", path="ha-cn"):
        assert struct.unpack_from("!H", base.mh_level(n).payload, 6)[0] == 0


def test_mn_initiated_rr_uses_pseudo_as_hoti_source(caps):
    """draft 5.3.1: HoTI from the pseudo home address (tunnelled and in clear), HoT to it."""
    cap = caps["mn-initiated-rr"]
    pseudos = {h["pseudo_home_address"] for h in cap.truth["home_bindings"]}
    for n in cap.frames_where(what="HoTI"):
        inner = cap.levels[n - 1][-1]
        assert inner.src in pseudos
    per_cn = {}
    for entry in cap.truth["correspondent_bindings"]:
        per_cn.setdefault(entry["correspondent"], set()).add(entry["pseudo_home_address"])
    # a different pseudo home address per correspondent
    assert len(per_cn) == 2 and not set.intersection(*per_cn.values())


# --- home registrations ----------------------------------------------------------------

def check_home_bindings(cap: Capture, mode: str) -> int:
    checked = 0
    for entry in cap.truth["home_bindings"]:
        frame = entry["frame"]
        info = cap.info(frame)
        if info["procedure"] != mode or entry["lifetime"] == 0:
            continue                      # de-registrations: test_de_registration_...
        levels = cap.levels[frame - 1]
        node = cap.node_by_hoa(entry["home_address"])
        outer, inner = levels[0], levels[-1]
        mh = inner.payload
        assert inner.next_header == 135 and mh[2] == 5
        assert struct.unpack_from("!H", mh, 8)[0] & 0x4000           # H flag
        assert struct.unpack_from("!H", mh, 6)[0] == entry["sequence"]
        assert struct.unpack_from("!H", mh, 10)[0] * 4 == entry["lifetime"]
        assert wire.text(options(mh)[3]) == entry["care_of_address"] == outer.src
        assert inner.dst == entry["home_agent"] == node.home_agent
        spi, esp_seq = outer.esp
        if mode == "rfc3776":
            assert outer.hao == node.home_address and entry["pseudo_home_address"] is None
            ba_rh2 = node.home_address
        else:
            ki = F.dynamic_key(node.kph.value, esp_seq)              # draft 5.1.4, i = ESP seq
            pseudo = entry["pseudo_home_address"]
            net = ipaddress.IPv6Network(pseudo + "/64", strict=False)
            assert str(net) in cap.ring.home_agent(inner.dst).prefixes
            assert net != ipaddress.IPv6Network(node.home_address + "/64", strict=False)
            assert pseudo == F.routable_pseudo_home_address(ki, node.home_address, str(net),
                                                            node.phoa_cipher)
            if node.phoa_cipher == "aes-ctr":                        # invertible (PROFILE.md)
                assert F.routable_home_interface_id(ki, pseudo) == \
                    ipaddress.IPv6Address(node.home_address).packed[8:]
            if mode == "5.2.1":
                assert outer.hao == pseudo and len(levels) == 1
                ba_rh2 = pseudo
            else:                                                    # 5.2.2: never on the wire
                assert len(levels) == 2 and inner.src == node.home_address
                assert outer.hao is None and pseudo not in str(levels)
                ba_rh2 = None
        # the acknowledgement: next frame, same sequence, status 0
        ba_levels = cap.levels[frame]
        ba = ba_levels[-1]
        assert cap.info(frame + 1)["what"] == "Home BA"
        assert ba.payload[2] == 6 and ba.payload[6] == 0
        assert struct.unpack_from("!H", ba.payload, 8)[0] == entry["sequence"]
        assert ba_levels[0].rh2 == ba_rh2
        checked += 1
    return checked


@pytest.mark.parametrize("scenario,mode", [
    ("baseline", "rfc3776"), ("home-transport-ctr", "5.2.1"), ("home-transport-ecb", "5.2.1"),
    ("home-tunnel", "5.2.2"), ("demo", "5.2.1"), ("demo", "5.2.2"), ("demo", "rfc3776")])
def test_home_registration(caps, scenario, mode):
    cap = caps[scenario]
    assert check_home_bindings(cap, mode) >= 2
    if mode != "rfc3776":
        # draft 5.1.4: a new pseudo home address with every Home BU
        pseudos = [h["pseudo_home_address"] for h in cap.truth["home_bindings"]
                   if cap.info(h["frame"])["procedure"] == mode]
        assert len(set(pseudos)) == len(pseudos)


@pytest.mark.parametrize("scenario", ["home-transport-ctr", "home-transport-ecb",
                                      "home-tunnel", "baseline", "demo"])
def test_lost_bu_retransmitted_with_new_pseudo(caps, scenario):
    """draft 5.2.1: a lost Home BU is retransmitted with a new ESP sequence number (so a new
    pseudo home address) and a higher BU sequence; only the acknowledged one is a binding."""
    cap = caps[scenario]
    lost = [n for n, f in cap.truth["frames"].items() if f["what"] == "Home BU (lost)"]
    assert lost
    bound = {h["frame"] for h in cap.truth["home_bindings"]}
    for n in map(int, lost):
        assert n not in bound and (n + 1) in bound
        first, again = cap.levels[n - 1], cap.levels[n]
        assert again[0].esp[1] > first[0].esp[1]
        assert struct.unpack_from("!H", again[-1].payload, 6)[0] == \
            struct.unpack_from("!H", first[-1].payload, 6)[0] + 1
        if cap.info(n)["procedure"] == "5.2.1":
            assert first[0].hao != again[0].hao


@pytest.mark.parametrize("scenario", ["home-transport-ctr", "home-tunnel", "demo"])
def test_spi_renewal_per_6_4(caps, scenario):
    """draft 6.4: the SPI of each MN-HA SA moves along next_spi(Kph, SPI) after every Home BU
    exchange; a plain node keeps its SPI."""
    cap = caps[scenario]
    for name, info in cap.truth["nodes"].items():
        node = cap.node_by_hoa(info["home_address"])
        acknowledged = [h for h in cap.truth["home_bindings"]
                        if h["home_address"] == node.home_address]
        spis = [cap.levels[h["frame"] - 1][0].esp[0] for h in acknowledged]
        mode = cap.info(acknowledged[0]["frame"])["procedure"]
        if mode == "rfc3776":
            assert len(set(spis)) == 1
            continue
        # the SA a Home BU uses is the transport SA (5.2.1), or the tunnel SA (5.2.2) except
        # for de-registration from home (transport); follow each SA's own chain
        chains: dict[str, int] = {}
        for h, spi in zip(acknowledged, spis, strict=False):
            sa = "tunnel" if len(cap.levels[h["frame"] - 1]) == 2 else "transport"
            if sa in chains:
                assert spi in F.spi_chain(node.kph.value, chains[sa], 20)[1:], (name, hex(spi))
            chains[sa] = spi
        assert len(set(spis)) == len(spis)                       # never the same SPI twice


def test_plain_rfc6275_keeps_spi_and_home_address_in_clear(caps):
    cap = caps["baseline"]
    hoa = ipaddress.IPv6Address(cap.truth["nodes"]["mn1"]["home_address"]).packed
    mn_cn = [r.data for n, r in enumerate(cap.records, 1)
             if cap.info(n)["path"] == "mn-cn" and cap.info(n)["what"] in ("BU", "BA", "data")]
    assert mn_cn and all(hoa in d for d in mn_cn)
    spis = {cap.levels[n - 1][0].esp[0] for n in cap.frames_where(path="mn-ha", what="Home BU")}
    assert len(spis) == 1


@pytest.mark.parametrize("scenario", ["rr-privacy", "reverse-tunnelled-bu", "mn-initiated-rr",
                                      "cn-initiated-rr", "reverse-tunnelling"])
def test_home_address_never_on_mn_cn(caps, scenario):
    """The point of the draft: an eavesdropper on MN-CN never sees the real home address."""
    cap = caps[scenario]
    hoa = ipaddress.IPv6Address(cap.truth["nodes"]["mn1"]["home_address"]).packed
    for n, rec in enumerate(cap.records, 1):
        if cap.info(n)["path"] == "mn-cn":
            assert hoa not in rec.data, n


def test_reverse_tunnelling_hides_care_of_from_correspondent(caps):
    """draft 5.4: data via the home agent; no care-of address ever reaches HA-CN."""
    cap = caps["reverse-tunnelling"]
    coas = {ipaddress.IPv6Address(h["care_of_address"]).packed
            for h in cap.truth["home_bindings"] if h["lifetime"]}
    data = [n for n in cap.frames_where(procedure="5.4")]
    assert {cap.info(n)["path"] for n in data} == {"mn-ha", "ha-cn"}
    assert cap.truth["correspondent_bindings"] == []
    for n in data:
        if cap.info(n)["path"] == "ha-cn":
            assert not any(c in cap.records[n - 1].data for c in coas)
            assert cap.levels[n - 1][0].next_header == 17
        else:
            outer, inner = cap.levels[n - 1]
            assert outer.esp and inner.src in (cap.truth["nodes"]["mn1"]["home_address"],
                                               *cap.truth["correspondents"].values())


@pytest.mark.parametrize("scenario", ["prefix-discovery", "home-tunnel", "demo"])
def test_prefix_discovery(caps, scenario):
    """draft 5.5: MPS with the current pseudo home address in the HAO (transport mode) or the
    home address inside the tunnel (5.2.2 node); MPA with it in the RH2."""
    cap = caps[scenario]
    mpss = cap.frames_where(what="MPS")
    assert mpss
    for n in mpss:
        node_name = cap.info(n)["node"]
        hoa = cap.truth["nodes"][node_name]["home_address"]
        current = [h for h in cap.truth["home_bindings"] if h["frame"] < n
                   and h["home_address"] == hoa][-1]
        levels, answer = cap.levels[n - 1], cap.levels[n]
        assert cap.info(n + 1)["what"] == "MPA"
        mps, mpa = levels[-1], answer[-1]
        assert mps.next_header == mpa.next_header == 58
        assert mps.payload[0] == 146 and mpa.payload[0] == 147
        assert mps.payload[4:6] == mpa.payload[4:6]                   # identifier
        if len(levels) == 1:
            assert mps.hao == current["pseudo_home_address"] != hoa
            assert answer[0].rh2 == mps.hao
        else:
            assert mps.src == hoa and levels[0].esp
        # the advertised prefix is the home prefix
        assert mpa.payload[8] == 3 and \
            ipaddress.IPv6Address(mpa.payload[24:40]) in ipaddress.IPv6Network(hoa + "/64",
                                                                               strict=False)


@pytest.mark.parametrize("scenario", ["baseline", "home-transport-ctr", "home-tunnel", "demo"])
def test_de_registration_when_returning_home(caps, scenario):
    """RFC 6275 11.5.4: from the home link, lifetime 0, care-of address = home address, sent
    from the home address without a HAO (ESP transport, RFC 3776 4.1); acknowledged."""
    cap = caps[scenario]
    for node, info in cap.truth["nodes"].items():
        hoa = info["home_address"]
        de_regs = [h for h in cap.truth["home_bindings"]
                   if h["home_address"] == hoa and h["lifetime"] == 0]
        assert de_regs, node
        for h in de_regs:
            assert h["care_of_address"] == hoa and h["pseudo_home_address"] is None
            (lvl,) = cap.levels[h["frame"] - 1]
            assert lvl.src == hoa and lvl.hao is None and lvl.esp
            assert struct.unpack_from("!H", lvl.payload, 10)[0] == 0
            (ba,) = cap.levels[h["frame"]]
            assert ba.dst == hoa and ba.rh2 is None and ba.payload[2] == 6
            assert struct.unpack_from("!H", ba.payload, 8)[0] == h["sequence"]
