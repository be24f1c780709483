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

from dissectors.supervisor import Backoff
from keys.errors import UserError
from monitor.sources import LiveSource, PcapSource
from monitor.stream import EventStream
from tests.dissectors import builders as b
from tests.veth import add_pair
from tests.waiting import wait_for

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
from scapy.all import Ether, IPv6, UDP, Raw, conf, sendp
from tests.dissectors import builders as b
print("ready", flush=True)
for line in sys.stdin:                      # "kind count" per line; answers "sent"
    kind, count = line.split()
    conf.ifaces.reload()                    # mip6vb may have been made again meanwhile
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
        add_pair("mip6va", "mip6vb", ns)
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


# --- a live capture that survives (issue 12) ------------------------------------------------

FAST = Backoff(delay=0.2, cap=0.5, give_up=3.0, stable=5.0)



def _identity(acc) -> None:
    assert acc.read == acc.analysed + acc.filtered + acc.malformed + acc.dropped, acc


def _ip(*args) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


def _analysed(src: LiveSource, out: queue.Queue) -> threading.Thread:
    """The source through an EventStream (which counts what it analyses), each event into
    `out`, then the exception that ended it (if one did), then None."""
    from monitor.stream import EventStream

    class Put:
        def packet(self, ev):
            out.put(ev)

    def run():
        try:
            EventStream(src, [Put()]).run()
        except Exception as exc:
            out.put(exc)
        out.put(None)
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


@pytest.mark.root
def test_a_killed_dumpcap_is_restarted_at_once_and_the_gap_reported(veth):
    from monitor.stream import EventStream
    src = LiveSource("mip6va", backoff=FAST)
    got: list = []

    class Keep:
        def packet(self, ev):
            got.append(ev)
    stream = EventStream(src, [Keep()])
    thread = threading.Thread(target=stream.run, daemon=True)
    thread.start()
    try:
        assert src.ready.wait(10)
        veth("bu", 2)
        assert wait_for(lambda: len(got) == 2)
        first = src.pid
        os.kill(first, 9)
        # restarted at once (no back-off the first time), in a new process, gap closed
        assert wait_for(lambda: src.pid not in (None, first) and src.recovering is None, 10)
        gaps = src.supervision()["gaps"]
        assert len(gaps) == 1 and gaps[0]["end"] is not None, gaps
        assert gaps[0]["why"] == "dumpcap was killed by SIGKILL"
        assert gaps[0]["lost"] is None            # killed: dumpcap could not say
        assert gaps[0]["seconds"] < 5 and gaps[0]["restarts"] == 1
        assert src.supervision()["restarts"] == 1
        veth("bu", 3)
        assert wait_for(lambda: len(got) == 5)
        # numbered on from the first dumpcap's frames: no frame number used twice
        assert [e.frame for e in got] == [1, 2, 3, 4, 5]
        assert [e.mobility.sequence for e in got] == [100, 101, 100, 101, 102]
        with pytest.raises(ChildProcessError):
            os.waitpid(first, os.WNOHANG)         # the dead one was reaped
    finally:
        src.close()
        thread.join(10)
    assert not thread.is_alive()
    _identity(src.accounting)
    assert src.accounting.read == 5 and src.accounting.dropped == 0


@pytest.mark.root
def test_the_interface_going_down_and_up_is_a_gap_and_capture_goes_on(veth):
    src = LiveSource("mip6va", backoff=FAST)
    out: queue.Queue = queue.Queue()
    thread = _analysed(src, out)
    try:
        assert src.ready.wait(10)
        veth("hoti", 1)
        assert _next(out, 10).mobility.name == "HoTI"
        dumpcap = src.pid
        _ip("link", "set", "mip6va", "down")
        assert wait_for(lambda: src.recovering == "mip6va is down"), src.recovering
        gap = src.supervision()["gaps"][-1]
        assert gap["end"] is None and gap["why"] == "mip6va is down"
        _ip("link", "set", "mip6va", "up")
        assert wait_for(lambda: src.recovering is None, 10), src.recovering
        veth("bu", 2)
        got = [_next(out, 10) for _ in range(2)]
        assert [e.frame for e in got] == [2, 3]
        state = src.supervision()
        assert state["restarts"] == 0 and src.pid == dumpcap     # dumpcap kept its socket
        assert [g["why"] for g in state["gaps"]] == ["mip6va is down"]
        assert state["gaps"][0]["end"] is not None and state["gaps"][0]["lost"] == 0
    finally:
        src.close()
    thread.join(10)
    _identity(src.accounting)


@pytest.mark.root
def test_an_interface_gone_for_good_stops_the_capture_with_one_line(veth):
    from dissectors.live import CaptureStopped
    src = LiveSource("mip6va", backoff=FAST)
    out: queue.Queue = queue.Queue()
    thread = _analysed(src, out)
    try:
        assert src.ready.wait(10)
        veth("hoti", 1)
        assert _next(out, 10).mobility.name == "HoTI"
        dumpcap = src.pid
        _ip("link", "del", "mip6va")
        assert wait_for(lambda: src.recovering is not None)
        failure = out.get(timeout=FAST.give_up + 15)
        assert isinstance(failure, CaptureStopped), failure
        text = str(failure)
        assert "\n" not in text and text.startswith("mip6va: capture stopped: dumpcap")
        assert "mip6va does not exist" in text
        gap = src.supervision()["gaps"][-1]
        assert gap["end"] is None and "mip6va does not exist" in gap["why"]
    finally:
        src.close()
    thread.join(10)
    with pytest.raises(ChildProcessError):
        os.waitpid(dumpcap, os.WNOHANG)


@pytest.mark.root
def test_an_interface_removed_and_made_again_is_captured_again(veth):
    src = LiveSource("mip6va", backoff=FAST)
    out: queue.Queue = queue.Queue()
    thread = _analysed(src, out)
    ns = f"mip6test{os.getpid()}"
    try:
        assert src.ready.wait(10)
        veth("bu", 1)
        assert _next(out, 10).frame == 1
        _ip("link", "del", "mip6va")
        assert wait_for(lambda: src.recovering is not None)
        add_pair("mip6va", "mip6vb", ns)
        assert wait_for(lambda: src.recovering is None, 15), src.recovering
        veth("bu", 2)
        assert [_next(out, 10).frame for _ in range(2)] == [2, 3]
        state = src.supervision()
        assert state["restarts"] >= 1 and len(state["gaps"]) == 1
        assert state["gaps"][0]["end"] is not None
    finally:
        src.close()
    thread.join(10)
    _identity(src.accounting)


@pytest.mark.root
def test_an_analysis_behind_the_wire_drops_in_view_not_in_the_kernel(veth, monkeypatch):
    """dumpcap is always read: when the analysis is a whole queue behind, the newest frames
    are dropped here and counted at once with their reason (not by the kernel, unseen)."""
    import dissectors.live
    monkeypatch.setattr(dissectors.live, "LIVE_QUEUE", 4)
    src = LiveSource("mip6va", backoff=FAST)
    release = threading.Event()
    got: list = []

    class Slow:
        def packet(self, ev):
            release.wait(30)                  # the analysis stalls on the first packet
            got.append(ev)
    from monitor.stream import EventStream
    thread = threading.Thread(target=EventStream(src, [Slow()]).run, daemon=True)
    thread.start()
    try:
        assert src.ready.wait(10)
        veth("bu", 30)
        acc = src.accounting
        # counted while the analysis is still stalled: the reason is there to see at once
        assert wait_for(lambda: acc.dropped_reasons.get("analysis-behind", 0) > 0, 15), acc
        release.set()
        assert wait_for(lambda: acc.read == 30 and acc.unaccounted() == 0, 15), acc
        assert acc.dropped == acc.dropped_reasons["analysis-behind"] == 30 - len(got)
        assert 1 + 4 <= len(got) < 30          # the stalled one, a full queue, maybe more
        assert [e.frame for e in got] == sorted(e.frame for e in got)
    finally:
        release.set()
        src.close()
    thread.join(10)
    _identity(src.accounting)
    assert src.accounting.kernel_dropped == 0
