"""The dissector stage (dissectors.dissect, dissectors.walk, the keyed stage) on real captures:
the public ones, and scapy-built ones with PROFILE.md's extensions. tshark is the reference
in test_walk_vs_tshark.py; here the fields mip6mon reads that tshark does not show."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.all import MIP6MH_BA, MIP6MH_BU, UDP, ICMPv6MPAdv, ICMPv6NDOptPrefixInfo, IPv6, Raw

from dissectors import espsa
from keys import formulas
from keys.errors import UserError
from keys.keyring import parse_keyring
from monitor.sources import PcapSource
from tests.conftest import SHARED_CAPTURES
from tests.dissectors import builders as b

CAPTURES = SHARED_CAPTURES


def tshark_lines(path, display_filter, *fields) -> list[str]:
    argv = ["tshark", "-n", "-r", str(path), "-Y", display_filter, "-T", "fields"]
    for f in fields:
        argv += ["-e", f]
    out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    return out.splitlines()


def keyring(spi: int = b.FIRST_SPI, with_node: bool = True, node_named: bool = False):
    sa = {"spi": hex(spi), "src": "*", "dst": "*", "encryption": "aes-cbc",
          "encryption_key": b.ENC_KEY.hex(), "authentication": "hmac-sha1-96",
          "authentication_key": b.AUTH_KEY.hex()}
    doc = {"esp_sa": [sa]}
    if with_node:
        doc["mobile_node"] = [{"name": "mn1", "home_address": b.HOA, "home_agent": b.HA,
                               "ks": b.KS.hex()}]
        if node_named:
            sa["mobile_node"] = "mn1"
    return parse_keyring(doc)


def events(path, keys=None):
    src = PcapSource(path, keyring=keys)
    return list(src.events()), src.accounting


# --- public captures -------------------------------------------------------------------------

def shared(name: str):
    return events(CAPTURES / name)


def test_readme_counts_for_ipv6_mobility_1():
    evs, acc = shared("tcpdump-synthetic/ipv6_mobility_1.pcap")
    counts = {}
    for e in evs:
        counts[e.mobility.mh_type] = counts.get(e.mobility.mh_type, 0) + 1
    assert counts == {0: 1, 1: 1, 2: 1, 3: 1, 4: 1, 5: 6, 6: 4, 7: 1}
    assert acc.read == 16 and len(evs) == 16


def test_malformed_frames_are_kept_and_marked():
    evs, _ = shared("zeek/ipv6-mobility-dst-opts.pcap")
    # all three frames are malformed, and each is an event (selected for it alone)
    assert [e.malformed for e in evs] == ["Malformed Packet (Exception occurred)",
                                          "Malformed Packet (Exception occurred)",
                                          "Home Address: Invalid length (1 bytes)"]
    # the fuzzer finds: every MH is cut short by the snap length, none is silently "analysed"
    for path in (CAPTURES / "tcpdump-synthetic").glob("mobility_opt_asan*.pcap"):
        evs, _ = events(path)
        assert evs and all(e.malformed for e in evs if e.mobility), path
    # a frame with no IPv6 header to read (caplen 0) is counted as malformed, with no event
    evs, acc = shared("tcpdump-synthetic/icmp6_mobileprefix_asan.pcap")
    assert (len(evs), acc.read, acc.malformed) == (1, 2, 1)
    assert evs[0].prefix_discovery.identifier == 0x9393     # read before the cut


def test_mh_checksum_validity_from_zeek_vectors():
    good, _ = shared("zeek/chksums__mip6-good-mh-chksum.pcap")
    bad, _ = shared("zeek/chksums__mip6-bad-mh-chksum.pcap")
    assert good[0].mobility.checksum_valid is True
    assert bad[0].mobility.checksum_valid is False


def test_hao_and_rh2_from_zeek_vectors():
    hoa_path = CAPTURES / "zeek" / "mobile-ipv6__ipv6-mobile-hoa.pcap"
    rh2_path = CAPTURES / "zeek" / "mobile-ipv6__ipv6-mobile-routing.pcap"
    hoa, rh2 = events(hoa_path)[0], events(rh2_path)[0]
    assert hoa[0].outer.home_address == tshark_lines(hoa_path, "ipv6",
                                                     "ipv6.opt.mipv6.home_address")[0]
    assert rh2[0].outer.routing_home_address == tshark_lines(
        rh2_path, "ipv6", "ipv6.routing.mipv6.home_address")[0]


def test_real_bu_from_pastebin_verifies_its_checksum():
    evs, _ = shared("pastebin-83G2FqBV/bu_without_hao.pcap")
    assert evs[0].mobility.name == "BU" and evs[0].mobility.checksum_valid is True


def test_undecrypted_esp_is_reported_with_spi_and_ciphertext():
    path = CAPTURES / "zeek" / "ip6_esp.pcap"
    evs, _ = events(path)
    spis = tshark_lines(path, "esp", "esp.spi")
    assert len(evs) == len(spis)
    assert [e.outer.esp.spi for e in evs] == [int(s, 16) for s in spis]
    assert not any(e.outer.esp.decrypted for e in evs)
    # what a keyed stage elsewhere needs: the octets after SPI and sequence number, as sent
    lengths = tshark_lines(path, "esp", "ipv6.plen")
    assert [len(e.outer.esp.payload) + 8 for e in evs] == [int(n) for n in lengths]


# --- built captures: PROFILE.md extensions ---------------------------------------------------

def test_pseudo_home_address_option_and_authenticated_data(tmp_path):
    phoa = "9da1:3c1e:4a9b:45a8:c518:30e1:454d:5997"      # PROFILE.md 4.1 vector
    bu, data, auth = b.signed_cn_bu(b.KBM, b.COA, b.CN, 1075, pseudo=phoa)
    bu2, _, auth2 = b.signed_cn_bu(b.KBM, b.COA, b.CN, 1076, hoa=b.HOA)
    evs, acc = events(b.write(tmp_path / "cn.pcapng", [bu, bu2], ["path=mn-cn"] * 2))
    first, second = evs
    assert first.outer.pseudo_home_address == phoa and first.outer.home_address is None
    assert second.outer.home_address == b.HOA and second.outer.pseudo_home_address is None
    for ev, want in ((first, auth), (second, auth2)):
        m = ev.mobility
        assert m.name == "BU" and m.checksum_valid is True
        assert m.authenticator == want
        # RFC 6275 6.2.7, recomputed over what the dissector extracted
        assert formulas.authenticator(b.KBM, ev.outer.src, ev.outer.dst,
                                      m.authenticated_data) == m.authenticator
        assert (m.home_nonce_index, m.care_of_nonce_index) == (1, 2)
    assert first.mobility.authenticated_data == data
    assert first.mobility.sequence == 1075 and first.path == "mn-cn"
    assert acc.read == 2 and acc.filtered == 0


def test_hot_option_18_and_hoti_p_flag(tmp_path):
    path = b.write(tmp_path / "rr.pcapng", [b.hoti_with_p(), b.hoti_with_p(p_flag=False),
                                            b.hot_with_option18()])
    hoti, hoti_plain, hot = events(path)[0]
    assert hoti.mobility.name == "HoTI" and hoti.mobility.flags == frozenset({"P"})
    assert hoti_plain.mobility.flags == frozenset()
    assert hot.mobility.name == "HoT"
    assert hot.mobility.privacy_keygen_token == b.PRIVACY_TOKEN      # all 8 octets
    assert hot.mobility.keygen_token == b"\x22" * 8 and hot.mobility.nonce_index == 1
    assert hot.mobility.checksum_valid is True


def test_esp_transport_and_tunnel_mode_decrypted_from_keyring(tmp_path):
    path = b.write(tmp_path / "esp.pcapng", [b.home_bu_transport(b.FIRST_SPI, 7, bu_seq=41),
                                             b.home_bu_tunnel(b.FIRST_SPI, 8, bu_seq=42)])
    transport, tunnel = events(path, keyring())[0]
    assert transport.outer.esp.decrypted and transport.outer.esp.sequence == 7
    assert transport.outer.home_address == b.PHOA              # HAO before ESP (RFC 3776)
    assert transport.mobility.name == "BU" and transport.mobility.sequence == 41
    assert transport.mobility.flags == frozenset({"A", "H"})
    assert transport.mobility.alternate_care_of_address == b.COA
    assert transport.mobility.checksum_valid is True
    assert len(tunnel.layers) == 2
    assert (tunnel.outer.src, tunnel.outer.dst) == (b.COA, b.HA)
    assert tunnel.outer.esp.decrypted and tunnel.outer.esp.sequence == 8
    assert (tunnel.inner.src, tunnel.inner.dst) == (b.HOA, b.HA)
    assert tunnel.mobility.sequence == 42 and tunnel.mobility.checksum_valid is True


def test_esp_without_keys_is_counted_not_decrypted(tmp_path):
    path = b.write(tmp_path / "esp.pcapng", [b.home_bu_tunnel(b.FIRST_SPI, 8)])
    (ev,), _ = events(path)
    assert ev.outer.esp.spi == b.FIRST_SPI and ev.outer.esp.decrypted is False
    assert ev.mobility is None and len(ev.layers) == 1


def test_moved_spi_is_followed_from_the_first_one(tmp_path):
    keys = keyring()
    chain = formulas.spi_chain(keys.mobile_nodes[0].kph.value, b.FIRST_SPI, 6)
    assert chain[1] == 0x1075                                  # PROFILE.md 6.4 vector
    path = b.write(tmp_path / "moved.pcapng",
                   [b.home_bu_transport(spi, 1, bu_seq=n) for n, spi in enumerate(chain)])
    evs, _ = events(path, keys)
    assert [e.outer.esp.spi for e in evs] == chain
    assert all(e.outer.esp.decrypted for e in evs)
    assert [e.mobility.sequence for e in evs] == list(range(6))
    # the node is certain once a moved SPI verified on its chain (draft 6.4)
    assert [e.outer.esp.node for e in evs] == [None] + ["mn1"] * 5
    assert all(e.outer.esp.node == "mn1" for e in events(path, keyring(node_named=True))[0])
    # without any Kph the chain cannot be followed, but the ICV still proves the SA's keys:
    # every packet is decrypted, and none is tied to a node
    evs, _ = events(path, keyring(with_node=False))
    assert [(e.outer.esp.decrypted, e.outer.esp.node) for e in evs] == [(True, None)] * 6


def test_data_packets_transport_summary_and_mixed_accounting(tmp_path):
    tunnelled = IPv6(src=b.HA, dst=b.COA) / IPv6(src=b.CN, dst=b.HOA) / UDP(sport=53, dport=9) \
        / Raw(b"hi\x00<script>")
    plain = IPv6(src=b.CN, dst=b.HOA) / UDP(sport=1, dport=2) / Raw(b"x")
    ba = IPv6(src=b.HA, dst=b.COA) / b.rh2(b.PHOA) / MIP6MH_BA(seq=3, status=0, mhtime=25)
    mpa = IPv6(src=b.HA, dst=b.COA) / b.rh2(b.HOA) / ICMPv6MPAdv(id=77) \
        / ICMPv6NDOptPrefixInfo(prefix="2001:db8:1::", prefixlen=64)
    path = b.write(tmp_path / "mixed.pcapng", [plain, tunnelled, plain, ba, mpa, plain],
                   ["path=other", "path=ha-cn", "path=other", "path=mn-ha", "path=mn-ha",
                    "path=other"])
    evs, acc = events(path)
    assert [e.frame for e in evs] == [2, 4, 5]
    data, back, prefix = evs
    assert data.transport.protocol == "udp" and data.transport.src_port == 53
    assert data.transport.payload_preview == "hi.<script>"
    assert data.path == "ha-cn" and data.mobility is None
    assert back.outer.routing_home_address == b.PHOA and back.mobility.name == "BA"
    assert back.mobility.lifetime == 100 and back.mobility.status == 0
    assert back.info == "Binding Acknowledgement"
    assert prefix.prefix_discovery.icmp_type == 147
    assert prefix.prefix_discovery.identifier == 77
    assert prefix.prefix_discovery.prefixes == ("2001:db8:1::/64",)
    assert (acc.read, acc.filtered) == (6, 3)


def test_classic_pcap_with_raw_ipv6_linktype(tmp_path):
    path = b.write_pcap(tmp_path / "raw.pcap", [b.hoti_with_p(), IPv6() / UDP()])
    evs, acc = events(path)
    assert [e.mobility.name for e in evs] == ["HoTI"] and (acc.read, acc.filtered) == (2, 1)


# --- bad input, process hygiene, secrecy -----------------------------------------------------

def test_missing_and_non_capture_files_are_one_line_user_errors(tmp_path):
    with pytest.raises(UserError, match="no such file"):
        PcapSource(tmp_path / "nope.pcap")
    junk = tmp_path / "junk.pcap"
    junk.write_text("hello, not a capture\n")
    with pytest.raises(UserError, match="not a capture file") as err:
        PcapSource(junk)
    assert "\n" not in str(err.value)


def test_truncated_capture_file_gives_the_frames_before_the_cut(tmp_path):
    path = b.write(tmp_path / "whole.pcapng", [b.hoti_with_p()] * 3)
    cut = tmp_path / "cut.pcapng"
    cut.write_bytes(path.read_bytes()[:-30])
    evs, acc = events(cut)
    assert len(evs) == 2
    # the record cut short is not a frame (tshark reads 2): the capture says it is incomplete
    assert acc.read == 2 and acc.malformed == 0
    assert acc.incomplete is not None
    assert "block 5" in acc.incomplete and "cut short" in acc.incomplete


def test_keys_never_leave_the_process(tmp_path):
    """ESP is decrypted in this process: no child is started, no key file is written, and
    no event (what crosses processes and Redis) holds key material."""
    import pickle

    from dissectors.events import to_dict
    path = b.write(tmp_path / "esp.pcapng", [b.home_bu_tunnel(b.FIRST_SPI, n) for n in (1, 2)])
    before = set(os.listdir("/proc"))
    source = PcapSource(str(path), keyring())
    evs = list(source.events())
    assert all(e.outer.esp.decrypted for e in evs)
    children = [p for p in set(os.listdir("/proc")) - before if p.isdigit()
                and Path(f"/proc/{p}/stat").exists()
                and Path(f"/proc/{p}/stat").read_text().split()[3] == str(os.getpid())]
    assert children == []
    for secret in (b.ENC_KEY, b.AUTH_KEY):
        for blob in (pickle.dumps(evs), repr(evs).encode(), repr([to_dict(e) for e in evs])
                     .encode()):
            assert secret not in blob and secret.hex().encode() not in blob


def test_sa_entries_follow_every_mobile_node():
    keys = keyring()
    entries = espsa.sa_entries(keys, chain_length=4)
    assert [e.spi for e in entries] == formulas.spi_chain(keys.mobile_nodes[0].kph.value,
                                                          b.FIRST_SPI, 5)
    assert [e.predicted for e in entries] == [False, True, True, True, True]
    assert espsa.sa_entries(None) == []


# --- lab captures and every ESP algorithm ---------------------------------------------------

def test_lab_scenario_capture_decrypts_and_keeps_paths(tmp_path):
    lab_run = pytest.importorskip("lab.run")
    lab_scenario = pytest.importorskip("lab.scenario")
    import json

    from keys.keyring import load_keyring
    lab_run.run_scenario(lab_scenario.load_scenario("home-tunnel"), tmp_path, seed=1)
    truth = json.loads((tmp_path / "truth.json").read_text())
    evs, acc = events(tmp_path / "capture.pcapng", load_keyring(tmp_path / "keyring.toml"))
    assert acc.read == len(truth["frames"])
    assert evs and all(e.path == truth["frames"][str(e.frame)]["path"] for e in evs)
    assert all(esp.decrypted for e in evs for esp in e.esp_headers())
    assert all(e.mobility.checksum_valid for e in evs if e.mobility)
    bu_frames = {int(f) for f, v in truth["frames"].items() if v.get("what") == "BU"}
    assert bu_frames <= {e.frame for e in evs if e.mobility and e.mobility.name == "BU"}


def test_every_keyring_esp_algorithm_decrypts_with_exact_addresses(tmp_path):
    from scapy.all import ESP
    from scapy.layers.ipsec import SecurityAssociation
    # keyring name, key, scapy name (PROFILE.md keyring vs scapy's SecurityAssociation)
    algorithms = [("null", "", "hmac-sha256-128", "11" * 32, "NULL", "SHA2-256-128"),
                  ("aes-ctr", "22" * 20, "hmac-sha1-96", "33" * 20, "AES-CTR", "HMAC-SHA1-96"),
                  ("aes-gcm-16", "44" * 20, "null", "", "AES-GCM", "NULL")]
    packets, sas = [], []
    for n, (enc, ekey, auth, akey, scapy_enc, scapy_auth) in enumerate(algorithms):
        spi = 0x2000 + n
        sa = SecurityAssociation(ESP, spi=spi, crypt_algo=scapy_enc,
                                 crypt_key=bytes.fromhex(ekey) if ekey else None,
                                 auth_algo=scapy_auth,
                                 auth_key=bytes.fromhex(akey) if akey else None,
                                 tunnel_header=IPv6(src=b.COA, dst=b.HA))
        inner = IPv6(bytes(IPv6(src=b.HOA, dst=b.HA) / MIP6MH_BU(seq=n, flags="AH")))
        packets.append(sa.encrypt(inner, seq_num=1))
        entry = {"spi": hex(spi), "src": b.COA, "dst": b.HA, "encryption": enc,
                 "authentication": auth}
        if ekey:
            entry["encryption_key"] = ekey
        if akey:
            entry["authentication_key"] = akey
        sas.append(entry)
    evs, _ = events(b.write(tmp_path / "algs.pcapng", packets), parse_keyring({"esp_sa": sas}))
    assert [e.outer.esp.decrypted for e in evs] == [True] * 3
    assert [e.mobility.sequence for e in evs] == [0, 1, 2]


def test_gzip_compressed_capture(tmp_path):
    import gzip
    plain = b.write(tmp_path / "c.pcapng", [b.hoti_with_p(), b.hot_with_option18()])
    packed = tmp_path / "c.pcapng.gz"
    packed.write_bytes(gzip.compress(plain.read_bytes()))
    evs, acc = events(packed)
    assert [e.mobility.name for e in evs] == ["HoTI", "HoT"] and acc.read == 2
    bad = tmp_path / "bad.pcap.gz"
    bad.write_bytes(gzip.compress(b"not a capture at all"))
    with pytest.raises(UserError, match="not a capture file"):
        PcapSource(bad)


def test_what_the_walk_does_not_look_into_is_counted_with_why(tmp_path):
    """GTP-U and L2TP payloads and IPv6 fragments (not reassembled) are not walked: a frame
    they hide is filtered, and the report says why (never lost silently); the tunnels the
    walk knows give events."""
    from scapy.all import IP, Ether, IPv6ExtHdrFragment
    bu = bytes(IPv6(src=b.COA, dst=b.CN) / b.hao(b.HOA) / MIP6MH_BU(seq=1, flags=0))
    eth = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
    frames = [eth / IP(src="192.0.2.1", dst="192.0.2.2") / UDP(sport=2152, dport=2152)
              / Raw(bytes([0x30, 0xFF, 0, len(bu), 0, 0, 0, 1]) + bu),            # GTP-U
              eth / IPv6(src=b.COA, dst=b.CN) / UDP(sport=1701, dport=1701) / Raw(bu),
              eth / IPv6(src=b.COA, dst=b.CN) / IPv6ExtHdrFragment(nh=135, m=1, id=9)
              / Raw(bu[40:48]),                                                   # fragment
              eth / IP(src="192.0.2.1", dst="192.0.2.2", proto=41) / Raw(bu)]    # 6in4
    evs, acc = events(b.write(tmp_path / "tunnels.pcapng", frames))
    assert [e.frame for e in evs] == [4] and evs[0].mobility.name == "BU"
    assert evs[0].outer.home_address == b.HOA
    assert acc.filtered == 3 and acc.unwalked == {
        "GTP-U (UDP 2152) not walked": 1, "L2TP (UDP 1701) not walked": 1,
        "IPv6 fragment (not reassembled)": 1}


def _folded_checksum_ok(mh: bytes, src: bytes, dst: bytes) -> bool:
    """RFC 1071's folding, word by word: what checksum_ok computes in one call."""
    data = src + dst + len(mh).to_bytes(4, "big") + b"\x00\x00\x00\x87" + mh
    data += bytes(len(data) % 2)
    total = sum(int.from_bytes(data[i:i + 2], "big") for i in range(0, len(data), 2))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return total == 0xFFFF


@settings(max_examples=400, deadline=None)
@given(st.binary(min_size=0, max_size=80), st.binary(min_size=16, max_size=16),
       st.binary(min_size=16, max_size=16))
def test_mh_checksum_is_rfc_1071s_folded_sum(mh, src, dst):
    from dissectors.mobility import checksum_ok
    assert checksum_ok(mh, src, dst) == _folded_checksum_ok(mh, src, dst)
    if len(mh) >= 6:            # the right checksum set (RFC 6275 6.1.1): it verifies
        zeroed = mh[:4] + bytes(2) + mh[6:]
        data = src + dst + len(mh).to_bytes(4, "big") + b"\x00\x00\x00\x87" + zeroed
        data += bytes(len(data) % 2)
        total = sum(int.from_bytes(data[i:i + 2], "big") for i in range(0, len(data), 2))
        while total >> 16:
            total = (total & 0xFFFF) + (total >> 16)
        right = zeroed[:4] + (~total & 0xFFFF).to_bytes(2, "big") + zeroed[6:]
        assert checksum_ok(right, src, dst) and _folded_checksum_ok(right, src, dst)
        wrong = zeroed[:4] + ((~total + 1) & 0xFFFF).to_bytes(2, "big") + zeroed[6:]
        assert not checksum_ok(wrong, src, dst) and not _folded_checksum_ok(wrong, src, dst)
    zero = bytes(len(mh))       # all-zero octets sum to 0, never 0xFFFF
    assert checksum_ok(zero, bytes(16), bytes(16)) is _folded_checksum_ok(zero, bytes(16),
                                                                          bytes(16))


def test_batches_hand_on_what_was_taken_before_an_error_then_raise_it():
    """dissect.batches (a file's records read ahead, a keyed batch's ESP opened after): the
    items in order, in lists of the size; an error while taking them comes after the items
    taken before it (a gzip capture cut short: every whole frame before the cut is read)."""
    from dissectors.dissect import batches

    def items(n, fail):
        yield from range(n)
        if fail:
            raise EOFError("cut")
    assert list(batches(items(7, False), 3)) == [[0, 1, 2], [3, 4, 5], [6]]
    assert list(batches(items(6, False), 3)) == [[0, 1, 2], [3, 4, 5]]
    got = []
    with pytest.raises(EOFError):
        for batch in batches(items(5, True), 3):
            got.append(batch)
    assert got == [[0, 1, 2], [3, 4]]
