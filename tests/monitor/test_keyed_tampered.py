"""Findings through the real pipeline: lab frames altered on purpose (a forged Authenticator, a
BA with an error status), written as a pcapng and read back with tshark via monitor.sources.

The MH checksum is recomputed after each change (RFC 6275 6.1.1), so tshark reads a
well-formed message and only the keyed checks can object.
"""
import json
import warnings

import pytest

from keys.keyring import load_keyring
from lab.actors import EPOCH_BASE_USEC
from lab.pcapng import write_pcapng
from lab.run import build
from lab.scenario import load_scenario
from monitor.report import analyse, build_report

ETHERNET = 14
NH_ROUTING, NH_DSTOPT, NH_MH = 43, 60, 135      # RFC 8200, RFC 6275 6.1
HAO = 0xC9                                      # RFC 6275 6.3


def _chain(packet: bytes):
    """(next header, offset) of each header after the fixed IPv6 header, up to the MH."""
    nh, off = packet[6], 40
    while True:
        yield nh, off
        if nh not in (0, NH_ROUTING, NH_DSTOPT):
            return
        nh, off = packet[off], off + (packet[off + 1] + 1) * 8


def _checksum(data: bytes) -> int:
    data += b"\x00" * (len(data) % 2)
    total = sum(int.from_bytes(data[i:i + 2], "big") for i in range(0, len(data), 2))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def _rewrite_mh(frame: bytes, change) -> bytes:
    """Apply `change` to the clear MH of an Ethernet/IPv6 frame; recompute its checksum over
    the pseudo-header with the HAO address as source (RFC 6275 6.3) and the RH2 address as
    destination (6.4) when present."""
    packet = frame[ETHERNET:]
    src, dst, off = packet[8:24], packet[24:40], None
    for nh, at in _chain(packet):
        if nh == NH_ROUTING and packet[at + 2] == 2:
            dst = packet[at + 8:at + 24]
        elif nh == NH_DSTOPT:
            i, end = at + 2, at + (packet[at + 1] + 1) * 8
            while i < end:
                if packet[i] == 0:
                    i += 1
                    continue
                if packet[i] == HAO:
                    src = packet[i + 2:i + 18]
                i += 2 + packet[i + 1]
        elif nh == NH_MH:
            off = at
    assert off is not None, "frame has no clear Mobility Header"
    mh = bytearray(packet[off:])
    change(mh)
    mh[4:6] = b"\x00\x00"
    pseudo = src + dst + len(mh).to_bytes(4, "big") + bytes(3) + bytes([NH_MH])
    mh[4:6] = _checksum(pseudo + bytes(mh)).to_bytes(2, "big")
    return frame[:ETHERNET] + packet[:off] + bytes(mh)


@pytest.fixture(scope="module")
def tampered(tmp_path_factory):
    """rr-privacy with its first correspondent BU's Authenticator forged and the BA that
    answers its second one turned into a rejection (status 129)."""
    out = build(load_scenario("rr-privacy"))
    frames = list(out.frames)
    bus = [n for n, f in enumerate(frames) if f.what == "BU" and f.path == "mn-cn"]
    bas = [n for n, f in enumerate(frames) if f.what == "BA" and f.path == "mn-cn"]
    forged, rejected = bus[0], bas[1]

    def forge(mh):
        mh[-1] ^= 0xFF                   # last octet of the Binding Authorization Data

    def reject(mh):
        mh[6] = 129                      # RFC 6275 6.1.8: Status, 129 = administratively prohibited

    data = [f.data for f in frames]
    data[forged] = _rewrite_mh(data[forged], forge)
    data[rejected] = _rewrite_mh(data[rejected], reject)
    root = tmp_path_factory.mktemp("tampered")
    write_pcapng(root / "capture.pcapng", [(EPOCH_BASE_USEC + f.usec, d, f"path={f.path}")
                                           for f, d in zip(frames, data, strict=False)])
    (root / "keyring.toml").write_text(out.keyring_text)
    (root / "keyring.toml").chmod(0o600)      # a keyring others may read is refused
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        keyring = load_keyring(root / "keyring.toml")
    report = build_report(analyse(str(root / "capture.pcapng"), keyring))
    return report, out.truth, forged + 1, rejected + 1


def test_forged_authenticator_is_found(tampered):
    report, truth, forged, _ = tampered
    [binding] = [b for b in report["correspondent_bindings"] if b["frame"] == forged]
    assert binding["authenticator_valid"] is False
    # the home address is still recovered: 4.1 inverts the pseudo address before the MAC
    assert binding["home_address"] == truth["nodes"]["mn1"]["home_address"]
    assert ("authenticator-invalid", forged) in [(f["kind"], f["frame"])
                                                 for f in report["findings"]]
    others = [b for b in report["correspondent_bindings"] if b["frame"] != forged]
    assert others and all(b["authenticator_valid"] for b in others)


def test_rejecting_ba_is_found(tampered):
    report, _, _, rejected = tampered
    errors = [f for f in report["findings"] if f["kind"] == "ba-error-status"]
    assert [f["frame"] for f in errors] == [rejected]
    assert "status 129" in errors[0]["message"]


def test_tampered_findings_hold_no_key_material(tampered):
    report, _, _, _ = tampered
    text = json.dumps(report["findings"])
    assert "kcn" not in text.lower() and "kbm" not in text.lower()
