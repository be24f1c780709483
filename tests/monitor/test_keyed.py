"""KeyedAnalyzer on hand-built events, with PROFILE.md test-vector values as expectations."""
import ipaddress
import json

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from dissectors.events import Esp, IPv6Layer, MobilityMessage, PacketEvent
from keys import formulas as f
from monitor.keyed import KeyedAnalyzer, keyed_text
from tests.monitor.conftest import (
    CARE_OF_TOKEN,
    CN,
    COA,
    HA,
    HOA,
    HOME_TOKEN,
    KCN,
    PHOA_41,
    PHOA_42,
    PHOA_CTR_7,
    PHOA_ECB_7,
    PRIVACY_TOKEN,
    SECRETS,
    correspondent_bu,
    cot,
    data,
    event,
    feed,
    home_ba_transport,
    home_ba_tunnel,
    home_bu_transport,
    home_bu_tunnel,
    hot,
    hoti,
    make_keyring,
)

KPH = f.kph_from_ks(bytes.fromhex("0f0e0d0c0b0a09080706050403020100"))


def kinds(analyzer):
    return [x["kind"] for x in analyzer.report()["findings"]]


# --- home bindings (draft 5.2) ------------------------------------------------------------

@pytest.mark.parametrize("cipher,phoa", [("aes-ctr", PHOA_CTR_7), ("aes-ecb-trunc", PHOA_ECB_7)])
def test_home_bu_transport_mode_recovers_home_address(cipher, phoa):
    a = feed(KeyedAnalyzer(make_keyring(cipher=cipher)),
             [home_bu_transport(1, phoa), home_ba_transport(2, phoa)])
    assert a.report()["home_bindings"] == [{
        "home_agent": HA, "home_address": HOA, "pseudo_home_address": phoa,
        "care_of_address": COA, "sequence": 10, "lifetime": 420, "frame": 1, "time": 1001.0}]
    assert a.frame_nodes() == {1: HOA, 2: HOA}
    assert f"HAO pseudo HoA {phoa} = HoA {HOA} via Kph of mn1, i = ESP seq 7 (5.2.1)" \
        in a.annotations(1)
    assert kinds(a) == []


def test_home_bu_wrong_esp_sequence_is_unverified_and_not_an_entry():
    a = feed(KeyedAnalyzer(make_keyring()),
             [home_bu_transport(1, PHOA_CTR_7, esp_seq=8), home_ba_transport(2, PHOA_CTR_7)])
    assert a.report()["home_bindings"] == []
    assert kinds(a) == ["home-bu-unverified"]
    assert 1 not in a.frame_nodes()


def test_home_bu_counter_key_index():
    # key_index = "counter": the 7th Home BU of mn1 uses i = 7 whatever its ESP sequence
    ring = make_keyring(key_index="counter")
    evs = []
    for n in range(1, 8):
        ki = f.dynamic_key(KPH, n)
        phoa = f.routable_pseudo_home_address(ki, HOA, "2001:db8:100::/64", "aes-ctr")
        evs += [home_bu_transport(2 * n - 1, phoa, seq=n, esp_seq=100 + n, spi=0x1001),
                home_ba_transport(2 * n, phoa, seq=n)]
    a = feed(KeyedAnalyzer(ring), evs)
    homes = a.report()["home_bindings"]
    assert [h["home_address"] for h in homes] == [HOA] * 7
    assert homes[-1]["pseudo_home_address"] == PHOA_CTR_7
    assert "i = counter 7" in a.annotations(13)[0]


def test_home_bu_tunnel_mode_derives_pseudo_home_address():
    a = feed(KeyedAnalyzer(make_keyring()), [home_bu_tunnel(1), home_ba_tunnel(2)])
    [b] = a.report()["home_bindings"]
    assert (b["home_address"], b["pseudo_home_address"]) == (HOA, PHOA_CTR_7)
    assert a.frame_nodes() == {1: HOA, 2: HOA}
    assert "(5.2.2)" in a.annotations(1)[0]


def test_plain_rfc6275_home_bu_has_no_pseudo():
    a = feed(KeyedAnalyzer(make_keyring()), [home_bu_transport(1, HOA), home_ba_transport(2, HOA)])
    [b] = a.report()["home_bindings"]
    assert (b["home_address"], b["pseudo_home_address"]) == (HOA, None)


def test_retransmitted_home_bu_is_not_an_entry():
    phoa8 = f.routable_pseudo_home_address(f.dynamic_key(KPH, 8), HOA, "2001:db8:100::/64",
                                           "aes-ctr")
    a = feed(KeyedAnalyzer(make_keyring()),
             [home_bu_transport(1, PHOA_CTR_7, seq=10, esp_seq=7),
              home_bu_transport(2, phoa8, seq=11, esp_seq=8),
              home_ba_transport(3, phoa8, seq=11)])
    assert [(b["frame"], b["pseudo_home_address"]) for b in a.report()["home_bindings"]] == \
        [(2, phoa8)]
    [finding] = a.report()["findings"]
    assert finding["kind"] == "home-bu-retransmitted" and finding["frame"] == 2
    assert a.frame_nodes() == {1: HOA, 2: HOA, 3: HOA}


def test_ba_error_status_rejects():
    a = feed(KeyedAnalyzer(make_keyring()),
             [home_bu_transport(1, PHOA_CTR_7), home_ba_transport(2, PHOA_CTR_7, status=129)])
    assert a.report()["home_bindings"] == []
    assert kinds(a) == ["ba-error-status"]


def test_ba_with_other_sequence_does_not_acknowledge():
    a = feed(KeyedAnalyzer(make_keyring()),
             [home_bu_transport(1, PHOA_CTR_7, seq=10), home_ba_transport(2, PHOA_CTR_7, seq=9)])
    assert a.report()["home_bindings"] == []


def test_deregistration_is_an_entry():
    a = feed(KeyedAnalyzer(make_keyring()),
             [home_bu_transport(1, PHOA_CTR_7, lifetime=0), home_ba_transport(2, PHOA_CTR_7)])
    assert a.report()["home_bindings"][0]["lifetime"] == 0


def test_keyless_home_bu_reports_what_is_visible():
    a = feed(KeyedAnalyzer(None), [home_bu_transport(1, PHOA_CTR_7),
                                   home_ba_transport(2, PHOA_CTR_7)])
    [b] = a.report()["home_bindings"]
    assert (b["home_address"], b["pseudo_home_address"], b["care_of_address"]) == \
        (None, PHOA_CTR_7, COA)
    assert a.frame_nodes() == {}


# --- correspondent bindings ----------------------------------------------------------------

def test_rfc6275_correspondent_bu_verifies_with_kcn():
    a = feed(KeyedAnalyzer(make_keyring()), [correspondent_bu(1, hao=HOA)])
    [b] = a.report()["correspondent_bindings"]
    assert b == {"correspondent": CN, "home_address": HOA, "pseudo_home_address": None,
                 "care_of_address": COA, "sequence": 1000, "authenticator_valid": True,
                 "frame": 1, "time": 1001.0}


def test_draft_4_1_recovers_home_address_with_kcn():
    a = feed(KeyedAnalyzer(make_keyring()), [correspondent_bu(1, option=PHOA_41)])
    [b] = a.report()["correspondent_bindings"]
    assert (b["home_address"], b["pseudo_home_address"], b["authenticator_valid"]) == \
        (HOA, PHOA_41, True)
    assert a.frame_nodes() == {1: HOA}


def test_draft_4_1_recovers_home_address_from_seen_tokens():
    # no nonces in the keyring: the HoT (tunnelled to the MN, decrypted) and CoT give tokens
    ring = make_keyring(nonces=False)
    a = feed(KeyedAnalyzer(ring), [
        hoti(1, HOA, privacy=True),
        hot(2, HOA, HOME_TOKEN, privacy_token=PRIVACY_TOKEN),
        cot(3, CARE_OF_TOKEN),
        correspondent_bu(4, option=PHOA_41)])
    [b] = a.report()["correspondent_bindings"]
    assert (b["home_address"], b["authenticator_valid"]) == (HOA, True)


def test_draft_4_2_tunnelled_copy_is_not_an_entry():
    inner = dict(src=HOA, option=PHOA_42, alt_coa=COA)
    a = feed(KeyedAnalyzer(make_keyring()), [
        correspondent_bu(1, tunnel_to=(COA, HA), **inner),
        correspondent_bu(2, **inner)])
    [b] = a.report()["correspondent_bindings"]
    assert (b["frame"], b["home_address"], b["pseudo_home_address"], b["care_of_address"],
            b["authenticator_valid"]) == (2, HOA, PHOA_42, COA, True)
    assert a.frame_nodes() == {1: HOA, 2: HOA}


def test_draft_5_3_1_routable_pseudo_from_home_binding_cache():
    home_token = f.home_keygen_token(KCN, PHOA_CTR_7, bytes.fromhex("1111111111111111"))
    kbm = f.binding_management_key(home_token, CARE_OF_TOKEN)
    a = feed(KeyedAnalyzer(make_keyring()), [
        home_bu_transport(1, PHOA_CTR_7), home_ba_transport(2, PHOA_CTR_7),
        hoti(3, PHOA_CTR_7, tunnel_from=COA), hoti(4, PHOA_CTR_7),
        hot(5, PHOA_CTR_7, home_token), cot(6, CARE_OF_TOKEN),
        correspondent_bu(7, kbm=kbm, hao=PHOA_CTR_7),
        data(8, COA, CN, hao=PHOA_CTR_7), data(9, CN, COA, rh2=PHOA_CTR_7)])
    [b] = a.report()["correspondent_bindings"]
    assert (b["home_address"], b["pseudo_home_address"], b["authenticator_valid"]) == \
        (HOA, PHOA_CTR_7, True)
    assert a.frame_nodes() == {n: HOA for n in range(1, 10)}
    assert kinds(a) == []
    assert any("(5.3.1)" in s for s in a.annotations(3))


def test_authenticator_invalid_is_a_finding():
    a = feed(KeyedAnalyzer(make_keyring()),
             [correspondent_bu(1, hao=HOA, authenticator=bytes(12))])
    assert a.report()["correspondent_bindings"][0]["authenticator_valid"] is False
    assert kinds(a) == ["authenticator-invalid"]


def test_binding_key_gives_kbm():
    a = feed(KeyedAnalyzer(make_keyring(correspondent=False, binding_key=True)),
             [correspondent_bu(1, hao=HOA)])
    assert a.report()["correspondent_bindings"][0]["authenticator_valid"] is True


def test_no_kbm_means_null_validity():
    a = feed(KeyedAnalyzer(make_keyring(correspondent=False)), [correspondent_bu(1, hao=HOA)])
    assert a.report()["correspondent_bindings"][0]["authenticator_valid"] is None


def test_plain_node_plus_one_sequence_is_fine():
    evs = [correspondent_bu(1, hao=HOA, seq=1000), correspondent_bu(2, hao=HOA, seq=1001)]
    assert kinds(feed(KeyedAnalyzer(make_keyring()), evs)) == []


def test_care_of_trails_and_coti_attribution():
    a = feed(KeyedAnalyzer(make_keyring()), [
        home_bu_transport(1, PHOA_CTR_7), home_ba_transport(2, PHOA_CTR_7),
        event(3, [IPv6Layer(COA, CN)], MobilityMessage(2, True, cookie=b"\x02" * 8))])
    assert a.care_of_trails() == {HOA: [(1001.0, COA, 1)]}
    assert a.frame_nodes()[3] == HOA


def test_keyless_correspondent_bu():
    a = feed(KeyedAnalyzer(None), [correspondent_bu(1, option=PHOA_41)])
    [b] = a.report()["correspondent_bindings"]
    assert (b["home_address"], b["pseudo_home_address"], b["authenticator_valid"]) == \
        (None, PHOA_41, None)


def test_bad_event_is_counted_not_raised():
    a = KeyedAnalyzer(make_keyring())
    a.packet(event(1, [IPv6Layer("not-an-address", CN)],
                   MobilityMessage(1, True, cookie=b"x" * 8)))
    assert a.unreadable == 1
    assert a.report()["findings"] == []


def test_no_key_material_anywhere():
    a = feed(KeyedAnalyzer(make_keyring(binding_key=True)), [
        home_bu_transport(1, PHOA_CTR_7), home_ba_transport(2, PHOA_CTR_7),
        hot(3, HOA, bytes(8)), correspondent_bu(4, option=PHOA_41, seq=1),
        correspondent_bu(5, option=PHOA_41, seq=2, authenticator=bytes(12))])
    report = a.report()
    blob = json.dumps(report) + keyed_text(report) + json.dumps(
        [a.annotations(n) for n in range(1, 6)])
    assert report["findings"]      # findings exist, and none of them leaks a key
    for secret in SECRETS:
        assert secret not in blob


def test_keyed_text_tables():
    a = feed(KeyedAnalyzer(make_keyring()), [
        home_bu_transport(1, PHOA_CTR_7), home_ba_transport(2, PHOA_CTR_7, status=130)])
    text = keyed_text(a.report())
    assert "home bindings: none" in text
    assert "findings (1):" in text and "ba-error-status" in text
    a = feed(KeyedAnalyzer(make_keyring()), [
        home_bu_transport(1, PHOA_CTR_7), home_ba_transport(2, PHOA_CTR_7)])
    lines = keyed_text(a.report()).splitlines()
    assert lines[0] == "home bindings (1):"
    assert PHOA_CTR_7 in lines[3] and HOA in lines[3]


# --- robustness: arbitrary event streams -----------------------------------------------------


ADDRESSES = st.sampled_from([HOA, COA, CN, HA, PHOA_41, PHOA_42, PHOA_CTR_7, PHOA_ECB_7,
                             "2001:db8:100::1", "::", "2001:db8:9::9"])
OPTIONAL = st.one_of(st.none(), ADDRESSES)
SMALL = st.one_of(st.none(), st.integers(0, 65535))


@st.composite
def random_events(draw):
    n = draw(st.integers(1, 15))
    out = []
    for frame in range(1, n + 1):
        layers = [IPv6Layer(draw(ADDRESSES), draw(ADDRESSES), draw(OPTIONAL), draw(OPTIONAL),
                            draw(OPTIONAL), draw(st.one_of(st.none(), st.builds(
                                Esp, st.integers(256, 2**32 - 1), st.integers(0, 2**32 - 1),
                                st.booleans()))))
                  for _ in range(draw(st.integers(1, 2)))]
        mobility = draw(st.one_of(st.none(), st.builds(
            MobilityMessage, st.integers(0, 9), st.one_of(st.none(), st.booleans()),
            sequence=SMALL, flags=st.frozensets(st.sampled_from("AHLKP")),
            lifetime=SMALL, status=st.one_of(st.none(), st.integers(0, 255)),
            cookie=st.one_of(st.none(), st.binary(min_size=8, max_size=8)),
            nonce_index=st.one_of(st.none(), st.integers(0, 3)),
            keygen_token=st.one_of(st.none(), st.binary(min_size=8, max_size=8)),
            privacy_keygen_token=st.one_of(st.none(), st.binary(min_size=8, max_size=8)),
            home_nonce_index=st.one_of(st.none(), st.integers(0, 3)),
            care_of_nonce_index=st.one_of(st.none(), st.integers(0, 3)),
            authenticator=st.one_of(st.none(), st.binary(min_size=12, max_size=12)),
            alternate_care_of_address=OPTIONAL,
            authenticated_data=st.one_of(st.none(), st.binary(max_size=40)))))
        out.append(PacketEvent(frame=frame, time=float(frame), length=80, layers=tuple(layers),
                               mobility=mobility, malformed=draw(st.sampled_from([None, None,
                                                                                  "bad"]))))
    return out


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow],
          phases=[Phase.explicit, Phase.reuse, Phase.generate])   # shrinking is slow here
@given(events=random_events(), keyed=st.booleans())
def test_any_event_stream_is_survived(events, keyed):
    a = feed(KeyedAnalyzer(make_keyring(binding_key=True) if keyed else None), events)
    report = a.report()
    json.dumps(report)                          # plain JSON types only
    assert a.unreadable == 0                    # valid addresses never hit the guard
    # attributions are addresses (a decrypted tunnel-mode Home BU names its sender even when
    # the keyring has no Kph for it, so the set is not limited to keyring nodes)
    assert all(ipaddress.IPv6Address(v) for v in a.frame_nodes().values())
    assert all(set(b) >= {"frame", "time"} for b in report["home_bindings"])
    keyed_text(report)
    for ev in events:
        a.annotations(ev.frame)


def test_max_frames_bounds_per_frame_state():
    evs = [home_bu_transport(1, PHOA_CTR_7), home_ba_transport(2, PHOA_CTR_7)]
    evs += [data(n, COA, CN, hao=PHOA_CTR_7) for n in range(3, 1003)]
    a = feed(KeyedAnalyzer(make_keyring(), max_frames=100), evs)
    nodes = a.frame_nodes()
    assert min(nodes) == 903 and len(nodes) == 100 and set(nodes.values()) == {HOA}
    assert a.annotations(5) == [] and a.annotations(1000)
    assert len(a.report()["home_bindings"]) == 1      # caches are kept whole


def test_esp_is_attributed_by_its_sa_only_when_verified():
    """A Home BU on SPI 0x1001 ties that SA (toward the home agent) to mn1. A later packet the
    keyed stage verified on that SA belongs to mn1; one it could not open (even on mn1's next
    draft 6.4 SPI: in a crowd another node's chain may sit there) belongs to nobody; so does
    a verified packet of the same SPI toward another receiver (another SA)."""
    later = f.spi_chain(KPH, 0x1001, 3)[2]
    a = feed(KeyedAnalyzer(make_keyring()), [
        home_bu_transport(1, PHOA_CTR_7), home_ba_transport(2, PHOA_CTR_7),
        event(3, [IPv6Layer("2001:db8:6::1", HA, esp=Esp(0x1001, 40, True))]),
        event(4, [IPv6Layer("2001:db8:6::1", HA, esp=Esp(later, 41, False,
                                                          undecrypted="no-sa"))]),
        event(5, [IPv6Layer(HA, "2001:db8:6::1", esp=Esp(0x1001, 42, True))]),
        # the keyed stage is certain of the node (Esp.node): no earlier tie needed
        event(6, [IPv6Layer("2001:db8:6::2", HA, esp=Esp(0x9999, 1, True, node="mn1"))])])
    assert a.frame_nodes() == {1: HOA, 2: HOA, 3: HOA, 6: HOA}
    assert a.annotations(3) == [f"ESP SPI 0x00001001 toward {HA} of an SA of mn1 (HoA {HOA})"]


def test_coti_before_its_binding_is_attributed_afterwards():
    coti = event(1, [IPv6Layer(COA, CN)], MobilityMessage(2, True, cookie=b"\x02" * 8))
    a = feed(KeyedAnalyzer(make_keyring()), [coti, home_bu_transport(2, PHOA_CTR_7),
                                             home_ba_transport(3, PHOA_CTR_7)])
    assert a.frame_nodes()[1] == HOA


def test_mps_with_its_own_ki_is_recognised():
    # draft 5.5 MPS: HAO = a pseudo home address keyed by this packet's ESP sequence (7),
    # no Home BU explained it before
    mps = event(1, [IPv6Layer(COA, HA, home_address=PHOA_CTR_7, esp=Esp(0x1001, 7, True))])
    a = feed(KeyedAnalyzer(make_keyring()), [mps])
    assert a.frame_nodes() == {1: HOA}
    assert a.annotations(1) == [f"HAO pseudo HoA {PHOA_CTR_7} = HoA {HOA} via Kph of mn1, "
                                f"i = ESP seq 7"]


def test_tunnel_sa_learnt_from_a_decrypted_packet_attributes_verified_ones_only():
    tunnelled = event(1, [IPv6Layer(COA, HA, esp=Esp(0x5005, 3, True)), IPv6Layer(HOA, CN)])
    again = event(2, [IPv6Layer("2001:db8:6::1", HA, esp=Esp(0x5005, 4, True))])
    opaque = event(3, [IPv6Layer("2001:db8:6::1", HA, esp=Esp(0x5005, 9, False,
                                                               undecrypted="icv-failed"))])
    a = feed(KeyedAnalyzer(make_keyring()), [tunnelled, again, opaque])
    assert a.frame_nodes() == {1: HOA, 2: HOA}


def test_binding_rows_are_every_field_of_the_binding():
    import dataclasses

    from monitor.caches import CorrespondentBinding, HomeBinding
    home = HomeBinding(HA, HOA, PHOA_CTR_7, COA, 10, 420, 1, 1001.0)
    corr = CorrespondentBinding(CN, HOA, PHOA_41, COA, 3, True, 9, 1009.0)
    assert home.as_dict() == dataclasses.asdict(home)
    assert corr.as_dict() == dataclasses.asdict(corr)
