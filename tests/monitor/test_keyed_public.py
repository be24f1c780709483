"""The keyed analyzer on captures nobody on this project made (/work/shared/captures): fuzzer
finds, one-packet vectors and a real stack's BU. Real tshark via monitor.report.analyse."""
import shutil
import subprocess
import warnings

import pytest

from monitor.keyed import KeyedAnalyzer
from monitor.report import analyse
from monitor.sources import PcapSource
from monitor.stream import EventStream
from tests.conftest import SHARED_CAPTURES
from tests.monitor.conftest import make_keyring

CAPTURES = SHARED_CAPTURES
FILES = sorted(CAPTURES.glob("**/*.pcap*")) if CAPTURES.is_dir() else []


def _analyse(path, keyring=None):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return analyse(str(path), keyring)


@pytest.fixture(scope="module")
def merged(tmp_path_factory):
    """Every public capture in one pcapng (mergecap -a: one tshark run instead of 31)."""
    if not FILES or shutil.which("mergecap") is None:
        pytest.skip("public captures or mergecap not present")
    out = tmp_path_factory.mktemp("public") / "merged.pcapng"
    subprocess.run(["mergecap", "-F", "pcapng", "-a", "-w", str(out), *map(str, FILES)],
                   check=True, capture_output=True)
    return out


@pytest.mark.parametrize("keyed", [False, True])
def test_every_public_capture_is_survived(merged, keyed):
    analysis = _analyse(merged, make_keyring(binding_key=True) if keyed else None)
    report = analysis.keyed.report()
    assert analysis.accounting.read > 150 and analysis.accounting.malformed > 0
    assert analysis.keyed.unreadable == 0
    assert set(report) == {"home_bindings", "correspondent_bindings", "findings"}
    # the Binding Error vectors: tcpdump's, zeek's mip6_be, and zeek's two MH checksum files
    # (whether the bad-checksum one counts depends on the dissector calling it malformed)
    assert 3 <= [f["kind"] for f in report["findings"]].count("binding-error") <= 4
    frames = analysis.keyed.frame_nodes()
    assert all(n == "2001:db8:1::100" for n in frames.values())


@pytest.mark.skipif(not FILES, reason="public captures not present")
def test_tcpdump_mobility_vectors_with_a_keyring():
    path = CAPTURES / "tcpdump-synthetic" / "ipv6_mobility_1.pcap"
    analysis = _analyse(path, make_keyring(binding_key=True))
    report = analysis.keyed.report()
    bus = analysis.messages.counts["BU"]
    assert bus == 6                                    # README: tshark counts 6 BUs
    # none has the H flag and a BA of its sequence from its destination: all are correspondent
    # BUs delivered to their destination, whose keys this keyring does not hold
    assert len(report["correspondent_bindings"]) == 6
    assert all(b["authenticator_valid"] is None or b["authenticator_valid"] is False
               for b in report["correspondent_bindings"])
    assert "binding-error" in {f["kind"] for f in report["findings"]}
    assert analysis.keyed.unreadable == 0


@pytest.mark.skipif(not FILES, reason="public captures not present")
def test_real_stack_bu_without_hao():
    [binding] = _analyse(CAPTURES / "pastebin-83G2FqBV" / "bu_without_hao.pcap").keyed \
        .report()["correspondent_bindings"]
    # RFC 6275: no HAO, so the source stands for the home address; Alternate CoA given
    assert binding["care_of_address"] == "2001:470:7210:11:20c:29ff:fe46:a0e3"
    assert binding["home_address"] is None and binding["authenticator_valid"] is None


@pytest.mark.skipif(not FILES, reason="public captures not present")
def test_bad_mh_checksum_is_a_finding():
    # zeek's vectors: the same Binding Error with a good and with a bad MH checksum
    captures = CAPTURES / "zeek"
    findings = {}
    for name in ("good", "bad"):
        keyed = KeyedAnalyzer(None)
        EventStream(PcapSource(str(captures / f"chksums__mip6-{name}-mh-chksum.pcap")),
                    [keyed]).run()
        findings[name] = [f["kind"] for f in keyed.report()["findings"]]
    assert findings["bad"] == ["mh-checksum-invalid", "binding-error"]
    assert findings["good"] == ["binding-error"]
