"""Shared fixtures for monitor tests: the PROFILE.md test-vector keyring and event builders.

Values are the PROFILE.md "Test vectors" inputs, so expected results (pseudo home addresses,
Kbm, increments) are the published vectors, not values recomputed by the code under test.
Builders are plain functions (importable: `from tests.monitor.conftest import ...`).
"""
from __future__ import annotations

import json
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from dissectors.events import Esp, IPv6Layer, MobilityMessage, PacketEvent
from keys import formulas as f
from keys.keyring import parse_keyring

ROOT = Path(__file__).resolve().parents[2]

# PROFILE.md "Test vectors"
KCN = bytes(range(20))
HOME_NONCE = bytes.fromhex("1111111111111111")      # index 1
CARE_OF_NONCE = bytes.fromhex("2222222222222222")   # index 2
KS = bytes.fromhex("0f0e0d0c0b0a09080706050403020100")
HOA, COA, CN = "2001:db8:1::100", "2001:db8:2::100", "2001:db8:3::5"
HA = "2001:db8:1::1"
KBM = bytes.fromhex("1bb66dda1addc2a096296a15cfd42e4bc0272552")
PHOA_41 = "9da1:3c1e:4a9b:45a8:c518:30e1:454d:5997"
PHOA_42 = "6fb9:5a83:dbf6:f0dc:753d:dbff:4984:6a93"
PHOA_CTR_7 = "2001:db8:100:0:996a:8561:d196:5aec"
PHOA_ECB_7 = "2001:db8:100:0:f61a:2828:dc85:e0a0"
HOME_TOKEN = bytes.fromhex("c71a754160cffb9a")
CARE_OF_TOKEN = bytes.fromhex("ad30f3dfdcfc2d09")
PRIVACY_TOKEN = bytes.fromhex("d54fcc9022435730")
MH_DATA = bytes(range(40, 80))   # stands for the BU's authenticated MH bytes (RFC 6275 6.2.7)

SECRETS = [KCN.hex(), KS.hex(), KBM.hex(), HOME_NONCE.hex(), CARE_OF_NONCE.hex(),
           HOME_TOKEN.hex(), CARE_OF_TOKEN.hex(), PRIVACY_TOKEN.hex(),
           f.kph_from_ks(KS).hex()]


def keyring_doc(cipher: str = "aes-ctr", key_index: str = "esp-seq", nonces: bool = True,
                correspondent: bool = True, binding_key: bool = False) -> dict:
    doc = {"home_agent": [{"address": HA, "prefixes": ["2001:db8:1::/64", "2001:db8:100::/64"]}],
           "mobile_node": [{"name": "mn1", "home_address": HOA, "home_agent": HA,
                            "ks": KS.hex(), "phoa_cipher": cipher, "key_index": key_index}]}
    if correspondent:
        doc["correspondent"] = [{"address": CN, "kcn": KCN.hex(),
                                 "nonces": {"1": HOME_NONCE.hex(), "2": CARE_OF_NONCE.hex()}
                                 if nonces else {}}]
    if binding_key:
        doc["binding_key"] = [{"correspondent": CN, "care_of_address": COA, "kbm": KBM.hex()}]
    return doc


def make_keyring(**kwargs):
    return parse_keyring(keyring_doc(**kwargs))


@pytest.fixture
def keyring():
    return make_keyring()


# --- event builders ------------------------------------------------------------------------

def event(frame: int, layers, mobility=None, time: float | None = None, **kw) -> PacketEvent:
    return PacketEvent(frame=frame, time=1000.0 + frame if time is None else time, length=100,
                       layers=tuple(layers), mobility=mobility, **kw)


def home_bu_transport(frame, hao, seq=10, esp_seq=7, spi=0x1001, care_of=COA, lifetime=420,
                      alt_coa=True, esp_node=None):
    """draft 5.2.1: CoA -> HA, HAO, ESP transport, BU (H, A) + Alternate CoA. `esp_node`: the
    node the keyed stage is certain opened the ESP (Esp.node), None while it is not."""
    layer = IPv6Layer(care_of, HA, home_address=hao, esp=Esp(spi, esp_seq, True, node=esp_node))
    m = MobilityMessage(5, True, sequence=seq, flags=frozenset("AHK"), lifetime=lifetime,
                        alternate_care_of_address=care_of if alt_coa else None)
    return event(frame, [layer], m)


def home_bu_tunnel(frame, seq=10, esp_seq=7, spi=0x1001, care_of=COA, inner_src=HOA):
    """draft 5.2.2: CoA -> HA ESP tunnel; inner HoA -> HA, BU + Alternate CoA."""
    outer = IPv6Layer(care_of, HA, esp=Esp(spi, esp_seq, True))
    inner = IPv6Layer(inner_src, HA)
    m = MobilityMessage(5, True, sequence=seq, flags=frozenset("AHK"), lifetime=420,
                        alternate_care_of_address=care_of)
    return event(frame, [outer, inner], m)


def home_ba_transport(frame, rh2, seq=10, status=0, esp_seq=7, spi=0x2001, care_of=COA):
    """draft 5.2.1: HA -> CoA, RH2 = pseudo home address, ESP transport, BA."""
    layer = IPv6Layer(HA, care_of, routing_home_address=rh2, esp=Esp(spi, esp_seq, True))
    return event(frame, [layer], MobilityMessage(6, True, sequence=seq, status=status,
                                                 lifetime=420, flags=frozenset("K")))


def home_ba_tunnel(frame, seq=10, status=0, esp_seq=7, spi=0x2001, care_of=COA, home=HOA):
    outer = IPv6Layer(HA, care_of, esp=Esp(spi, esp_seq, True))
    inner = IPv6Layer(HA, home)
    return event(frame, [outer, inner], MobilityMessage(6, True, sequence=seq, status=status,
                                                        lifetime=420))


def correspondent_bu(frame, kbm=KBM, seq=1000, src=COA, dst=CN, hao=None, option=None,
                     alt_coa=None, tunnel_to=None, indices=(1, 2), authenticator=None,
                     lifetime=420):
    """A correspondent BU; the Authenticator is computed with `kbm` over MH_DATA unless given
    (RFC 6275 6.2.7: CoA = Alternate CoA if present, else the source)."""
    care_of = alt_coa or src
    auth = authenticator if authenticator is not None else \
        f.authenticator(kbm, care_of, dst, MH_DATA)
    m = MobilityMessage(5, True, sequence=seq, flags=frozenset("A"), lifetime=lifetime,
                        home_nonce_index=indices[0], care_of_nonce_index=indices[1],
                        authenticator=auth, alternate_care_of_address=alt_coa,
                        authenticated_data=MH_DATA)
    inner = IPv6Layer(src, dst, home_address=hao, pseudo_home_address=option)
    if tunnel_to is not None:   # reverse tunnel: outer CoA -> HA, ESP tunnel (draft 4.2/5.3.2)
        outer = IPv6Layer(tunnel_to[0], tunnel_to[1], esp=Esp(0x3001, 5, True))
        return event(frame, [outer, inner], m)
    return event(frame, [inner], m)


def hoti(frame, src, dst=CN, privacy=False, tunnel_from=None):
    m = MobilityMessage(1, True, cookie=b"\x01" * 8, flags=frozenset("P") if privacy else
                        frozenset())
    inner = IPv6Layer(src, dst)
    if tunnel_from is not None:
        return event(frame, [IPv6Layer(tunnel_from, HA, esp=Esp(0x3001, 4, True)), inner], m)
    return event(frame, [inner], m)


def hot(frame, dst, token, index=1, privacy_token=None, src=CN):
    m = MobilityMessage(3, True, cookie=b"\x01" * 8, nonce_index=index, keygen_token=token,
                        privacy_keygen_token=privacy_token)
    return event(frame, [IPv6Layer(src, dst)], m)


def cot(frame, token, dst=COA, index=2, src=CN):
    m = MobilityMessage(4, True, cookie=b"\x02" * 8, nonce_index=index, keygen_token=token)
    return event(frame, [IPv6Layer(src, dst)], m)


def data(frame, src, dst, hao=None, rh2=None, option=None):
    return event(frame, [IPv6Layer(src, dst, home_address=hao, routing_home_address=rh2,
                                   pseudo_home_address=option)])


def feed(analyzer, events):
    for ev in events:
        analyzer.packet(ev)
    analyzer.done()
    return analyzer


def run_cli(*args, timeout=120):
    """`python -m monitor.cli ARGS` as a subprocess from the project root."""
    return subprocess.run([sys.executable, "-m", "monitor.cli", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)


# --- lab scenarios, built once per session ---------------------------------------------------

def _lab(name, root):
    from lab.run import run_scenario
    from lab.scenario import load_scenario, shipped_scenarios
    if name not in shipped_scenarios():
        pytest.skip(f"lab scenario {name} not shipped yet")
    out = root / name
    run_scenario(load_scenario(name), out)
    return out


@pytest.fixture(scope="session")
def lab_root(tmp_path_factory):
    return tmp_path_factory.mktemp("lab")


@pytest.fixture(scope="session")
def scenario_runs(lab_root):
    """name -> (truth, report, analysis, output dir): each scenario is generated by the lab
    and analysed (real tshark, with its keyring) once per session, on first use."""
    from keys.keyring import load_keyring
    from monitor.report import analyse, build_report
    cache = {}

    def get(name):
        if name not in cache:
            out = _lab(name, lab_root)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                keyring = load_keyring(out / "keyring.toml")
            analysis = analyse(str(out / "capture.pcapng"), keyring)
            truth = json.loads((out / "truth.json").read_text())
            cache[name] = (truth, build_report(analysis), analysis, out)
        return cache[name]
    return get
