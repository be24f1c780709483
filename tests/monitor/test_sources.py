"""Capture sources: PcapSource on a file, LiveSource on a real veth pair in a network namespace."""
from __future__ import annotations

import os
import queue
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

from keys.errors import UserError
from monitor.sources import LiveSource, PcapSource
from monitor.stream import EventStream
from tests.dissectors import builders as b

ROOT = os.geteuid() == 0
PROJECT = Path(__file__).resolve().parents[2]


def test_pcap_source_contract(tmp_path):
    path = b.write(tmp_path / "c.pcapng", [b.hoti_with_p(), b.hot_with_option18()],
                   ["path=mn-cn", "path=mn-cn"])
    src = PcapSource(path)
    assert src.name == str(path)

    class Names:
        def __init__(self):
            self.names, self.finished = [], False

        def packet(self, ev):
            self.names.append(ev.mobility.name)

        def done(self):
            self.finished = True

    names = Names()
    acc = EventStream(src, [names]).run()
    assert names.names == ["HoTI", "HoT"] and names.finished
    assert (acc.read, acc.analysed, acc.filtered, acc.malformed) == (2, 2, 0, 0)


def test_pcap_source_bad_input():
    with pytest.raises(UserError, match="no such file"):
        PcapSource("/nonexistent/x.pcap")


def test_live_source_unknown_interface_is_a_user_error():
    # at construction, before a dashboard is served over a capture that cannot start
    with pytest.raises(UserError, match="mip6nosuch0: no such network interface"):
        LiveSource("mip6nosuch0")


def test_live_source_bad_capture_filter_is_a_user_error():
    if not ROOT:
        pytest.skip("dumpcap needs root here")
    with pytest.raises(UserError, match="is not valid BPF"):
        LiveSource("lo", bpf="ip6 and no such words")


def test_live_cli_refuses_an_unknown_interface_with_one_line():
    run = subprocess.run([sys.executable, "-m", "monitor.cli", "live", "-i", "mip6nosuch0"],
                         capture_output=True, text=True, timeout=60, cwd=PROJECT)
    assert run.returncode == 2
    assert run.stderr == "mip6mon: error: mip6nosuch0: no such network interface\n"
    assert "dashboard at" not in run.stdout


# --- live capture on a veth pair -------------------------------------------------------------

SENDER = """
import sys
sys.path.insert(0, {root!r})
from scapy.all import Ether, IPv6, UDP, Raw, sendp
from tests.dissectors import builders as b
print("ready", flush=True)
for line in sys.stdin:                      # "kind count" per line; answers "sent"
    kind, count = line.split()
    for n in range(int(count)):
        if kind == "bu":
            pkt = IPv6(src=b.COA, dst=b.CN) / b.hao(b.HOA) / b.MIP6MH_BU(seq=100 + n, flags=0,
                                                                          mhtime=10)
        elif kind == "hoti":
            pkt = b.hoti_with_p()
        elif kind == "esp":
            pkt = b.home_bu_tunnel(b.FIRST_SPI, 10 + n, bu_seq=200 + n)
        else:
            pkt = IPv6(src=b.CN, dst=b.HOA) / UDP(sport=7, dport=7) / Raw(b"noise")
        sendp(Ether(dst="02:00:00:00:00:01") / pkt, iface="mip6vb", verbose=False)
    print("sent", flush=True)
"""


@pytest.fixture
def veth():
    """veth pair: mip6va in this namespace (captured), mip6vb in a private namespace where a
    scapy process sends what the test asks for. IPv6 is off on both ends (the frames are
    built by scapy), so no MLD / ND of the kernel's own adds to the counts."""
    if not ROOT:
        pytest.skip("needs root for network namespaces")
    ns = f"mip6test{os.getpid()}"

    def ip(*args, check=True):
        return subprocess.run(["ip", *args], check=check, capture_output=True)

    ip("link", "del", "mip6va", check=False)
    ip("netns", "add", ns)
    sender = None
    errors = tempfile.TemporaryFile(mode="w+")
    try:
        ip("link", "add", "mip6va", "type", "veth", "peer", "name", "mip6vb")
        ip("link", "set", "mip6vb", "netns", ns)
        subprocess.run(["sysctl", "-qw", "net.ipv6.conf.mip6va.disable_ipv6=1"], check=True)
        ip("netns", "exec", ns, "sysctl", "-qw", "net.ipv6.conf.mip6vb.disable_ipv6=1")
        ip("link", "set", "mip6va", "up")
        ip("netns", "exec", ns, "ip", "link", "set", "mip6vb", "up")
        sender = subprocess.Popen(
            ["ip", "netns", "exec", ns, sys.executable, "-c",
             SENDER.format(root=str(Path(__file__).parents[2]))],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=errors, text=True)
        assert sender.stdout.readline().strip() == "ready"

        def send(kind: str, count: int = 1) -> None:
            sender.stdin.write(f"{kind} {count}\n")
            sender.stdin.flush()
            answer = sender.stdout.readline().strip()
            if answer != "sent":
                errors.seek(0)
                pytest.fail(f"scapy sender failed: {errors.read()[-500:]}")
        yield send
    finally:
        if sender is not None:
            sender.stdin.close()
            try:
                sender.wait(10)
            except subprocess.TimeoutExpired:
                sender.kill()
                sender.wait()
        ip("link", "del", "mip6va", check=False)
        ip("netns", "del", ns, check=False)
        errors.close()


def _reader(src: LiveSource, out: queue.Queue) -> threading.Thread:
    def run():
        try:
            for ev in src.events():
                out.put(ev)
        except Exception as exc:   # surfaced by the test
            out.put(exc)
        out.put(None)
    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def _next(out: queue.Queue, timeout: float):
    ev = out.get(timeout=timeout)
    if isinstance(ev, Exception):
        raise ev
    return ev


@pytest.mark.root
def test_live_source_delivers_each_packet_at_once(veth):
    src = LiveSource("mip6va")
    src.start()
    out: queue.Queue = queue.Queue()
    thread = _reader(src, out)
    assert src.ready.wait(10), "dumpcap did not start"
    pids = [src.pid]                         # dumpcap: the only child (no tshark)
    try:
        veth("noise", 3)                     # not mobility: filtered, never an event
        veth("bu", 1)
        first = _next(out, 10)               # arrives without any later packet
        assert first.mobility.name == "BU" and first.mobility.sequence == 100
        assert first.outer.home_address == b.HOA
        veth("bu", 4)
        veth("hoti", 1)
        got = [_next(out, 10) for _ in range(5)]
        assert [e.mobility.name for e in got] == ["BU"] * 4 + ["HoTI"]
        assert got[-1].mobility.flags == frozenset({"P"})
        assert [e.frame for e in [first, *got]] == sorted(e.frame for e in [first, *got])
    finally:
        src.close()
    thread.join(10)
    assert not thread.is_alive()
    acc = src.accounting
    assert acc.read == 6                     # the UDP noise never passed the capture filter
    assert acc.filtered == 0
    assert acc.dropped == 0
    for pid in pids:                         # the child reaped
        with pytest.raises(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)


@pytest.mark.root
def test_live_source_default_bpf_drops_plain_traffic_in_the_kernel(veth):
    src = LiveSource("mip6va")
    src.start()
    out: queue.Queue = queue.Queue()
    thread = _reader(src, out)
    assert src.ready.wait(10)
    try:
        veth("noise", 5)
        veth("hoti", 1)
        ev = _next(out, 10)
        assert ev.mobility.name == "HoTI"
        time.sleep(0.3)
    finally:
        src.close()
    thread.join(10)
    # the UDP noise never left the kernel
    assert src.accounting.read == 1


@pytest.mark.root
def test_live_source_custom_bpf_counts_filtered_frames(veth):
    src = LiveSource("mip6va", bpf="ip6")
    src.start()
    out: queue.Queue = queue.Queue()
    thread = _reader(src, out)
    assert src.ready.wait(10)
    try:
        veth("noise", 3)
        veth("bu", 1)
        ev = _next(out, 10)
        assert ev.mobility.name == "BU" and ev.frame == 4
    finally:
        src.close()
    thread.join(10)
    assert (src.accounting.read, src.accounting.filtered) == (4, 3)


@pytest.mark.root
def test_live_source_closed_from_another_thread(veth):
    src = LiveSource("mip6va")
    src.start()
    out: queue.Queue = queue.Queue()
    thread = _reader(src, out)
    assert src.ready.wait(10)
    veth("hoti", 1)
    assert _next(out, 10).mobility.name == "HoTI"
    started = time.monotonic()
    src.close()                               # the dashboard's stop button: another thread
    thread.join(10)
    assert not thread.is_alive() and time.monotonic() - started < 8
    assert out.get(timeout=1) is None         # the reader ended without an exception


@pytest.mark.root
def test_live_source_decrypts_esp_with_the_keyring(veth):
    from tests.dissectors.test_dissect import keyring
    src = LiveSource("mip6va", keyring=keyring())
    src.start()
    out: queue.Queue = queue.Queue()
    thread = _reader(src, out)
    assert src.ready.wait(10)
    try:
        veth("esp", 2)
        got = [_next(out, 10) for _ in range(2)]
    finally:
        src.close()
    thread.join(10)
    assert [e.outer.esp.sequence for e in got] == [10, 11]
    assert all(e.outer.esp.decrypted for e in got)
    assert [e.mobility.sequence for e in got] == [200, 201]
    assert got[0].inner.src == b.HOA
