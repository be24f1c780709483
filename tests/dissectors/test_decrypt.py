"""The keyed stage (dissectors.decrypt): which SA opens an ESP packet, never guessed.

Crowds whose draft 6.4 chains cross (SPIs allocated close together, lab crowds of 6 and 20
nodes, several seeds): every ESP packet decrypts and no packet is tied to the wrong node. Then
each rule alone: the ICV decides between SAs sharing an SPI, an SPI no SA verifies is tried
against every SA once, null authentication decides by the payload and never picks between two
that fit, and every header that stays encrypted says why.
"""
from __future__ import annotations

import hashlib
import json
import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scapy.all import ESP, UDP, ICMPv6EchoRequest, IPv6, Raw
from scapy.layers.ipsec import SecurityAssociation

from dissectors import capfile
from dissectors.accounting import Accounting
from dissectors.decrypt import EspDecryptor
from dissectors.dissect import Dissector
from dissectors.esp import EspTransform, Plaintext
from dissectors.events import UNDECRYPTED
from dissectors.walk import Walker
from dissectors.walk import event as walk_event
from keys.keyring import KeyringError, load_keyring, parse_keyring
from lab.run import run_scenario
from lab.scenario import load_scenario
from monitor.sources import PcapSource
from monitor.stream import EventStream
from tests.dissectors import builders as b
from tests.dissectors.crowd import write_crowd
from tests.dissectors.test_walk_vs_tshark import write_raw


def crowd(tmp_path, nodes: int, seed: int, named: bool = False):
    run_scenario(load_scenario(str(write_crowd(tmp_path, nodes, seed))), tmp_path)
    text = (tmp_path / "keyring.toml").read_text()
    if named:   # the lab comments each SA with its node: name it as PROFILE.md allows
        text = re.sub(r'\[\[esp_sa\]\]\s+# (mn\d+)[^\n]*\n',
                      lambda m: f'[[esp_sa]]\nmobile_node = "{m.group(1)}"\n', text)
        (tmp_path / "keyring.toml").write_text(text)
    truth = json.loads((tmp_path / "truth.json").read_text())
    return load_keyring(tmp_path / "keyring.toml"), truth, tmp_path / "capture.pcapng"


@pytest.mark.parametrize("nodes, seed", [(6, 1), (6, 2), (20, 3), (20, 4)])
def test_every_esp_packet_of_a_crowd_decrypts_and_none_is_tied_to_the_wrong_node(
        tmp_path, nodes, seed):
    keyring, truth, capture = crowd(tmp_path, nodes, seed)
    events = list(PcapSource(str(capture), keyring=keyring).events())
    headers = [(e.frame, esp) for e in events for esp in e.esp_headers()]
    assert headers and all(esp.decrypted for _, esp in headers)
    tied = [(truth["frames"][str(frame)]["node"], esp.node) for frame, esp in headers
            if esp.node is not None]
    assert all(want == got for want, got in tied)
    assert len(tied) > len(headers) // 2            # most SAs step on their chain soon


def test_each_spis_route_is_what_its_registered_entries_say_after_every_packet(tmp_path):
    """The route an SPI's packets take (its SAs with an ICV, each once, in registration
    order) is made once and kept; as draft 6.4 chains move and cross in a crowd, after every
    packet each kept route is the one its SPI's entries give at that moment."""
    keyring, _, capture = crowd(tmp_path, 20, 3)
    decryptor = EspDecryptor(keyring)
    kept = 0
    for event in PcapSource(str(capture)).events():
        decryptor.decrypt(event)
        for spi, route in decryptor._routes.items():
            entries = decryptor._by_spi.get(spi, {}).values()
            assert route == tuple(dict.fromkeys(e.sa for e in entries
                                                if e.sa.transform.verifies))
        kept = max(kept, len(decryptor._routes))
    assert kept > 1


def test_a_keyring_that_names_the_node_ties_every_packet_and_skips_the_search(tmp_path):
    keyring, truth, capture = crowd(tmp_path, 20, 5, named=True)
    assert all(sa.mobile_node for sa in keyring.esp_sas)
    source = PcapSource(str(capture), keyring=keyring)
    events = list(source.events())
    assert all(esp.node == truth["frames"][str(e.frame)]["node"]
               for e in events for esp in e.esp_headers())
    # look-ahead only, per SA: never every SA x every node x 64
    decryptor = EspDecryptor(keyring)
    for event in PcapSource(str(capture)).events():
        decryptor.decrypt(event)
    sas = len({(sa.encryption_key.value, sa.mobile_node) for sa in keyring.esp_sas})
    assert decryptor.hmacs <= sas * 2 * 64


def _sa(spi: int, key: bytes, auth: bytes | None = b.AUTH_KEY, tunnel: bool = True):
    return SecurityAssociation(ESP, spi=spi, crypt_algo="AES-CBC", crypt_key=key,
                               auth_algo="HMAC-SHA1-96" if auth else "NULL", auth_key=auth,
                               tunnel_header=IPv6(src=b.COA, dst=b.HA) if tunnel else None)


def _keyring(*sas: tuple[int, bytes, bytes | None]):
    doc = [{"spi": hex(spi), "src": "*", "dst": "*", "encryption": "aes-cbc",
            "encryption_key": key.hex(),
            "authentication": "hmac-sha1-96" if auth else "null",
            **({"authentication_key": auth.hex()} if auth else {})} for spi, key, auth in sas]
    return parse_keyring({"esp_sa": doc})


def _bu(seq: int):
    return IPv6(bytes(IPv6(src=b.HOA, dst=b.HA) / b.MIP6MH_BU(seq=seq, flags="AH")))


def test_the_icv_decides_between_sas_sharing_an_spi(tmp_path):
    k1, k2 = b"\x01" * 16, b"\x02" * 16
    a1, a2 = b"\x03" * 20, b"\x04" * 20
    packets = [_sa(0x4000, k1, a1).encrypt(_bu(1)), _sa(0x4000, k2, a2).encrypt(_bu(2)),
               _sa(0x4000, k2, a2).encrypt(_bu(3)), _sa(0x4000, k1, a1).encrypt(_bu(4))]
    path = b.write(tmp_path / "shared-spi.pcapng", packets)
    events = list(PcapSource(str(path), keyring=_keyring((0x4000, k1, a1),
                                                         (0x4000, k2, a2))).events())
    assert [e.mobility.sequence for e in events] == [1, 2, 3, 4]


def test_an_spi_no_listed_sa_has_is_tried_against_every_sa_once(tmp_path):
    """A capture that starts after draft 6.4 renewals: the listed SPI is never seen, the
    moved one verifies under the SA's keys (the ICV is the proof); an SPI no SA verifies is
    remembered, not tried again."""
    packets = [b.home_bu_transport(0x9999, n, bu_seq=n) for n in (1, 2)] + \
        [_sa(0x7777, b"\x05" * 16, b"\x06" * 20, tunnel=False).encrypt(_bu(9))]
    path = b.write(tmp_path / "moved.pcapng", packets)
    keys = _keyring((b.FIRST_SPI, b.ENC_KEY, b.AUTH_KEY))
    decryptor = EspDecryptor(keys)
    out = [decryptor.decrypt(e) for e in PcapSource(str(path)).events()]
    assert [e.outer.esp.decrypted for e in out] == [True, True, False]
    assert out[2].outer.esp.undecrypted == "no-sa"
    assert 0x7777 in decryptor._unknown


def _ambiguous_key(ciphertext_payload: bytes, header: bytes) -> bytes:
    """A second AES-CBC key under which the same ciphertext also opens to a payload that
    parses (default padding, pad length 0, Next Header 59): found by trying keys."""
    for n in range(200_000):
        key = hashlib.sha256(b"ambiguous %d" % n).digest()[:16]
        sa = EspTransform(_keyring((0x5000, key, None)).esp_sas[0])
        plain = sa.open(header, ciphertext_payload)
        if isinstance(plain, Plaintext) and plain.next_header == 59 and plain.default_padding:
            return key
    raise AssertionError("no second key found")


def test_null_authentication_decides_by_the_payload_and_never_picks_between_two(tmp_path):
    k1 = b"\x07" * 16
    # a fixed IV: with scapy's random one, a second key that also parses (about 1 in 65,536
    # keys) was not among the ones _ambiguous_key tries in about 1 run of 20; with this IV it
    # is the 1,410th
    iv = hashlib.sha256(b"iv 14").digest()[:16]
    packet = _sa(0x5000, k1, None, tunnel=False).encrypt(
        IPv6(bytes(IPv6(src=b.COA, dst=b.HA) / b.MIP6MH_BU(seq=5, flags="AH"))), iv=iv)
    path = b.write(tmp_path / "null.pcapng", [packet])
    (keyless,) = PcapSource(str(path)).events()
    header = (0x5000).to_bytes(4, "big") + keyless.outer.esp.sequence.to_bytes(4, "big")
    k2 = _ambiguous_key(keyless.outer.esp.payload, header)
    wrong = hashlib.sha256(b"wrong").digest()[:16]
    # one null-auth SA whose payload parses, one whose does not: the first is the one
    one = EspDecryptor(_keyring((0x5000, wrong, None), (0x5000, k1, None))).decrypt(keyless)
    assert one.outer.esp.decrypted and one.mobility.sequence == 5
    # two whose payloads parse: none is picked
    two = EspDecryptor(_keyring((0x5000, k1, None), (0x5000, k2, None))).decrypt(keyless)
    assert two.outer.esp.undecrypted == "ambiguous" and two.mobility is None
    # none parses
    none = EspDecryptor(_keyring((0x5000, wrong, None))).decrypt(keyless)
    assert none.outer.esp.undecrypted == "unparsable"


def test_every_undecrypted_header_says_why_and_is_counted(tmp_path):
    good = b.home_bu_tunnel(b.FIRST_SPI, 1)
    wrong_keys = _sa(b.FIRST_SPI, b"\x09" * 16, b"\x0a" * 20).encrypt(_bu(1))
    unknown = _sa(0x6666, b"\x0b" * 16, b"\x0c" * 20).encrypt(_bu(1))
    frames = [bytes(p) for p in (good, wrong_keys, unknown, good)]
    # the last one's ESP cut by the snap length (20 octets fewer captured than sent)
    cut = write_raw(tmp_path / "reasons.pcap", [(f, len(f)) for f in frames[:3]]
                    + [(frames[3][:-20], len(frames[3]))])
    source = PcapSource(str(cut), keyring=_keyring((b.FIRST_SPI, b.ENC_KEY, b.AUTH_KEY)))
    accounting = EventStream(source, []).run()
    assert accounting.esp_decrypted == 1
    assert accounting.esp_undecrypted_reasons == {"icv-failed": 1, "no-sa": 1,
                                                  "truncated": 1}
    keyless = EventStream(PcapSource(str(cut)), []).run()
    assert keyless.esp_undecrypted_reasons == {"no-keyring": 4}
    assert set(UNDECRYPTED) >= set(accounting.esp_undecrypted_reasons)


def test_keyring_mobile_node_is_a_name():
    sa = {"spi": "0x1001", "src": "*", "dst": "*", "encryption": "null",
          "authentication": "null"}
    node = {"name": "mn1", "home_address": b.HOA, "kph": "00" * 20}
    with pytest.raises(KeyringError, match=r"\[esp_sa #1\] mobile_node: must be a string"):
        parse_keyring({"esp_sa": [{**sa, "mobile_node": 3}], "mobile_node": [node]})
    with pytest.raises(KeyringError, match=r"\[esp_sa #1\] mobile_node: must be a node's name"):
        parse_keyring({"esp_sa": [{**sa, "mobile_node": " "}]})
    ok = parse_keyring({"esp_sa": [{**sa, "mobile_node": "mn1"}], "mobile_node": [node]})
    assert ok.esp_sas[0].mobile_node == "mn1"
    # imported before its node is described (keys import-xfrm): kept, the node is named
    assert parse_keyring({"esp_sa": [{**sa, "mobile_node": "mn9"}]}).esp_sas[0].mobile_node \
        == "mn9"


def test_an_sa_naming_a_node_the_keyring_does_not_describe(tmp_path):
    """The operator's word ties it; with no Kph its chain cannot be followed, but the ICV
    still opens the moved SPIs (the sweep)."""
    keys = parse_keyring({"esp_sa": [{
        "spi": hex(b.FIRST_SPI), "src": "*", "dst": "*", "encryption": "aes-cbc",
        "encryption_key": b.ENC_KEY.hex(), "authentication": "hmac-sha1-96",
        "authentication_key": b.AUTH_KEY.hex(), "mobile_node": "elsewhere"}]})
    path = b.write(tmp_path / "named.pcapng",
                   [b.home_bu_transport(spi, 1, bu_seq=n) for n, spi in
                    enumerate((b.FIRST_SPI, 0x1075, 0x2000))])
    events = list(PcapSource(str(path), keyring=keys).events())
    assert [(e.outer.esp.decrypted, e.outer.esp.node) for e in events] == \
        [(True, "elsewhere")] * 3


@pytest.mark.parametrize("nodes, seed, spi", [(6, 11, "sequential"), (20, 12, "sequential"),
                                              (20, 13, "random")])
def test_lab_crowds_decrypt_whole_so_the_keyed_view_equals_the_truth(tmp_path, nodes, seed,
                                                                   spi):
    """`mip6mon lab crowd`: SPIs close together (or random), the keyring listing each SA under
    its first SPI only, lost BUs and returns home. Every ESP packet decrypts, so the keyed
    view rebuilds every binding of the lab's truth and finds nothing (the traffic is clean)."""
    from lab.crowd import run_crowd
    from monitor.report import analyse, build_report
    truth = run_crowd(tmp_path, nodes=nodes, seed=seed, spi=spi, lost_bu=0.2,
                      return_home=0.3, prefix_discovery=0.3)
    report = build_report(analyse(str(tmp_path / "capture.pcapng"),
                                  load_keyring(tmp_path / "keyring.toml")))
    assert report["capture"]["esp_undecrypted"] == 0 and report["capture"]["esp_decrypted"]
    for kind in ("home_bindings", "correspondent_bindings"):
        assert report[kind] == truth[kind], kind
    assert [f["kind"] for f in report["findings"]] == \
        ["home-bu-retransmitted"] * sum(1 for f in truth["frames"].values()
                                        if f["what"] == "Home BU (lost)")


def test_opened_decrypts_events_with_esp_and_passes_the_others_as_they_are(tmp_path):
    """EspDecryptor.opened: the stage over a stream, the same as decrypt for every event."""
    k1, a1 = b"\x01" * 16, b"\x03" * 20
    packets = [_bu(1), _sa(0x4000, k1, a1).encrypt(_bu(2)),
               _sa(0x4000, b"\x02" * 16, b"\x04" * 20).encrypt(_bu(3)),   # not the keyring's
               IPv6(src=b.COA, dst=b.HA) / IPv6(src=b.HOA, dst=b.CN) / _sa(
                   0x4000, k1, a1, tunnel=False).encrypt(_bu(4))]
    events = list(PcapSource(str(b.write(tmp_path / "c.pcapng", packets))).events())
    keyring = _keyring((0x4000, k1, a1))
    got = list(EspDecryptor(keyring).opened(iter(events)))
    assert got[0] is events[0]
    again = EspDecryptor(keyring)
    assert got == [again.decrypt(e) for e in events]
    assert [e.mobility.sequence if e.mobility else None for e in got] == [1, 2, None, 4]
    assert [h.undecrypted for h in got[2].esp_headers()] == ["icv-failed"]


def _inline_and_after(path, keyring):
    """A capture's events with the ESP opened in each frame's walk (Dissector.events with a
    decryptor, as PcapSource does with keys), and opened after the events were made
    (EspDecryptor.opened, as in a process the events reach encrypted). Both are first held
    equal to the general walk's events, every frame walked and its ESP opened in the walk
    (EspDecryptor.open_walk), with no common chain taken (walk.common_event, and
    walk.common_tunnelled inside a tunnel-mode plaintext)."""
    def records():
        with capfile.open_capture(str(path)) as f:
            yield from capfile.records(f)
    inline = list(Dissector(Accounting()).events(records(), EspDecryptor(keyring)))
    after = list(EspDecryptor(keyring).opened(Dissector(Accounting()).events(records())))
    walker, opener = Walker(), EspDecryptor(keyring)
    general = []
    for rec in records():
        walk = walker.frame(rec.linktype, rec.data, rec.length)
        if walk.selected and walk.layers:
            opener.open_walk(walk)
            general.append(walk_event(walk, rec.number, rec.time, rec.length, rec.comments))
    assert inline == general
    return inline, after


def _nested_and_bundled():
    """ESP in every place the walk continues from: an SA bundle (ESP right inside ESP, RFC
    4301 4.5), tunnel mode around a packet whose own ESP is inside, ESP after an IPv6-in-IPv6
    tunnel, ESP over UDP (RFC 3948), and headers no SA opens inside ones it does."""
    k1, a1, k2, a2 = b"\x01" * 16, b"\x03" * 20, b"\x02" * 16, b"\x04" * 20
    inner = _sa(0x4000, k1, a1, tunnel=False).encrypt(_bu(1))
    bundle = _sa(0x4001, k2, a2, tunnel=False).encrypt(IPv6(bytes(inner)))
    tunnelled = _sa(0x4001, k2, a2).encrypt(IPv6(bytes(inner)))
    foreign = _sa(0x4002, b"\x05" * 16, b"\x06" * 20, tunnel=False).encrypt(_bu(2))
    around_foreign = _sa(0x4001, k2, a2).encrypt(IPv6(bytes(foreign)))
    in_tunnel = IPv6(src=b.HA, dst=b.COA) / IPv6(bytes(inner))
    udp = IPv6(bytes(inner))
    nat = IPv6(src=udp.src, dst=udp.dst) / UDP(sport=4500, dport=4500) / bytes(udp.payload)
    ping = _sa(0x4000, k1, a1, tunnel=False).encrypt(
        IPv6(bytes(IPv6(src=b.HOA, dst=b.HA) / ICMPv6EchoRequest(data=b"in ESP"))))
    # SCTP: a protocol the walk names but writes no Info for (the ESP's Info stays)
    sctp = _sa(0x4000, k1, a1, tunnel=False).encrypt(
        IPv6(bytes(IPv6(src=b.HOA, dst=b.HA, nh=132) / Raw(b"sctp" * 4))))
    keyring = _keyring((0x4000, k1, a1), (0x4001, k2, a2))
    return [inner, bundle, tunnelled, around_foreign, in_tunnel, nat, ping, sctp], keyring


def test_esp_opened_in_the_walk_makes_the_events_opened_after_would(tmp_path):
    """PcapSource with keys opens each frame's ESP in its walk, so each event is made once:
    the events are the ones EspDecryptor.opened makes of the encrypted events, in every
    place an ESP header can be, for every reason one stays closed, on draft 6.4 chains."""
    packets, keyring = _nested_and_bundled()
    inline, after = _inline_and_after(b.write(tmp_path / "nested.pcapng", packets), keyring)
    assert inline == after
    assert [e.mobility.sequence if e.mobility else None for e in inline] == \
        [1, 1, 1, None, 1, 1, None, None]
    assert [h.undecrypted for h in inline[3].esp_headers()] == [None, "no-sa"]
    assert len(inline[1].outer.esp.chain()) == 2 and inline[6].info.startswith("Echo")
    assert inline[7].protocols.endswith("esp:sctp") and inline[7].info.startswith("ESP")
    # each reason a header stays encrypted (the snap length cut the last one's ESP)
    good = b.home_bu_tunnel(b.FIRST_SPI, 1)
    frames = [bytes(p) for p in (good, _sa(b.FIRST_SPI, b"\x09" * 16, b"\x0a" * 20)
                                 .encrypt(_bu(1)), _sa(0x6666, b"\x0b" * 16, b"\x0c" * 20)
                                 .encrypt(_bu(1)), good)]
    cut = write_raw(tmp_path / "reasons.pcap", [(f, len(f)) for f in frames[:3]]
                    + [(frames[3][:-20], len(frames[3]))])
    inline, after = _inline_and_after(cut, _keyring((b.FIRST_SPI, b.ENC_KEY, b.AUTH_KEY)))
    assert inline == after
    assert [e.outer.esp.undecrypted for e in inline] == [None, "icv-failed", "no-sa",
                                                         "truncated"]
    # crowds: draft 6.4 chains that cross, SAs found by the sweep, nodes narrowed
    for nodes, seed in ((6, 21), (20, 22)):
        (tmp_path / f"crowd{nodes}").mkdir()
        keyring, _, capture = crowd(tmp_path / f"crowd{nodes}", nodes, seed)
        inline, after = _inline_and_after(capture, keyring)
        assert inline == after and sum(len(e.esp_headers()) for e in inline) > nodes


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_esp_opened_in_the_walk_equals_opened_after_on_damaged_frames(tmp_path_factory, data):
    """The same on frames cut anywhere or with any octet changed (lengths, next headers,
    ciphertext, padding): opened in the walk or after, the same events."""
    packets, keyring = _nested_and_bundled()
    frames = [bytes(p) for p in packets]
    damaged = []
    for frame in data.draw(st.lists(st.sampled_from(frames), min_size=1, max_size=4)):
        at = data.draw(st.integers(0, len(frame) - 1))
        if data.draw(st.booleans()):
            damaged.append((frame[:at], len(frame)))
        else:
            octet = data.draw(st.integers(0, 255))
            damaged.append((frame[:at] + bytes([octet]) + frame[at + 1:], len(frame)))
    path = write_raw(tmp_path_factory.mktemp("damaged") / "d.pcap", damaged)
    inline, after = _inline_and_after(path, keyring)
    assert inline == after


def test_esp_opened_a_batch_at_a_time_keeps_the_order_and_the_tap_sees_each_event(
        tmp_path, monkeypatch):
    """A keyed Dissector opens ESP OPEN_BATCH frames at a time (Dissector._opened): whatever
    the batch, the events are the ones opened after, in order, and a tap sees each one as it
    is handed on, with its own record."""
    from dissectors import dissect
    keyring, _, capture = crowd(tmp_path, 6, 23)

    def records():
        with capfile.open_capture(str(capture)) as f:
            yield from capfile.records(f)
    after = list(EspDecryptor(keyring).opened(Dissector(Accounting()).events(records())))
    assert sum(len(e.esp_headers()) for e in after) > 6
    for size in (1, 7, 512):
        monkeypatch.setattr(dissect, "OPEN_BATCH", size)
        tapped = []
        dissector = Dissector(Accounting(),
                              tap=lambda rec, ev, seen=tapped: seen.append((rec.number, ev)))
        got = list(dissector.events(records(), EspDecryptor(keyring)))
        assert got == after
        assert [(number, id(ev)) for number, ev in tapped] == [(e.frame, id(e)) for e in got]
