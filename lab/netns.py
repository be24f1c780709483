"""`mip6mon lab send --topology netns` and `mip6mon lab down`: a real network to send into.

Wiring (every link a veth pair; IPv6 disabled on all of them so the kernel adds no traffic of
its own, and every end has the lab's fixed MAC so the bytes on the wire are the capture's):

    namespace        interface -> peer                 carries
    mip6mon-mn       mn-ha     -> mip6mon-ha  ha-mn    path mn-ha  (all mobile nodes)
    mip6mon-ha       ha-cn1    -> mip6mon-cn1 cn1-ha   path ha-cn  for correspondent 1
    mip6mon-ha       ha-cn2    -> mip6mon-cn2 cn2-ha   path ha-cn  for correspondent 2
    mip6mon-mn       mn-cn1    -> mip6mon-cn1 cn1-mn   path mn-cn  for correspondent 1
    mip6mon-mn       mn-cn2    -> mip6mon-cn2 cn2-mn   path mn-cn  for correspondent 2
    mip6mon-cn1      cn1-cn2   -> mip6mon-cn2 cn2-cn1  path other  (background hosts)

Each frame is written by a raw packet socket on the sending side of its link, at the
scenario's pace (divided by --speed), so a capture on the home agent's `ha-mn` sees exactly
the scenario's mn-ha packets, and `ha-cn1` + `ha-cn2` its ha-cn packets.

`lo` is up in every namespace (a server inside one is reachable on 127.0.0.1 from inside;
from the root namespace it never is). `down()` ends every process still running inside the
namespaces (a capture, a sensor of `lab live`) before it deletes them: none is left behind.
"""
from __future__ import annotations

import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass

from keys.errors import UserError
from lab.actors import MAC_BG, MAC_HA, MAC_MN, Frame, cn_mac
from lab.scenario import Scenario

PREFIX = "mip6mon-"
NAMESPACES = ("mn", "ha", "cn1", "cn2")
CLONE_NEWNET = 0x40000000


@dataclass(frozen=True)
class Link:
    name: str           # lab.actors.Frame.link
    path: str           # the draft's path it carries (lab.actors.Frame.path)
    a: str              # namespace (short name) of the first end
    a_if: str
    a_mac: bytes
    b: str
    b_if: str
    b_mac: bytes


LINKS = (
    Link("mn-ha", "mn-ha", "mn", "mn-ha", MAC_MN, "ha", "ha-mn", MAC_HA),
    Link("ha-cn1", "ha-cn", "ha", "ha-cn1", MAC_HA, "cn1", "cn1-ha", cn_mac(0)),
    Link("ha-cn2", "ha-cn", "ha", "ha-cn2", MAC_HA, "cn2", "cn2-ha", cn_mac(1)),
    Link("mn-cn1", "mn-cn", "mn", "mn-cn1", MAC_MN, "cn1", "cn1-mn", cn_mac(0)),
    Link("mn-cn2", "mn-cn", "mn", "mn-cn2", MAC_MN, "cn2", "cn2-mn", cn_mac(1)),
    Link("other", "other", "cn1", "cn1-cn2", MAC_BG[0], "cn2", "cn2-cn1", MAC_BG[1]),
)
TERM_SECONDS = 3.0       # what down() gives a process in a namespace to end before SIGKILL


def namespace(short: str) -> str:
    return PREFIX + short


def _mac_text(mac: bytes) -> str:
    return ":".join(f"{b:02x}" for b in mac)


def sending_end(frame: Frame) -> tuple[str, str]:
    """(namespace, interface) that sends `frame`: the end of its link that is its sender."""
    link = next(lk for lk in LINKS if lk.name == frame.link)
    if frame.link == "other":
        return (namespace(link.a), link.a_if) if frame.sender == "bg" else \
            (namespace(link.b), link.b_if)
    if frame.sender == link.a:
        return namespace(link.a), link.a_if
    return namespace(link.b), link.b_if


def _ip(*args: str) -> None:
    result = subprocess.run(["ip", *args], capture_output=True, text=True)
    if result.returncode:
        raise UserError(f"ip {' '.join(args)}: {result.stderr.strip() or 'failed'}")


def _require_root() -> None:
    if os.geteuid() != 0:
        raise UserError("lab send/down builds network namespaces: run as root")


def existing() -> list[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    names = [line.split()[0] for line in out.splitlines() if line.strip()]
    return [n for n in names if n in {namespace(s) for s in NAMESPACES}]


def build_topology() -> None:
    """Create the four namespaces and six veth pairs (tearing down an older copy first)."""
    _require_root()
    down()
    for short in NAMESPACES:
        ns = namespace(short)
        _ip("netns", "add", ns)
        _ip("-n", ns, "link", "set", "lo", "up")
        # no IPv6 on any interface: no DAD, MLD or router solicitations in the capture, and
        # the kernel drops what it receives instead of answering it
        for conf in ("all", "default"):
            subprocess.run(["ip", "netns", "exec", ns, "sysctl", "-q", "-w",
                            f"net.ipv6.conf.{conf}.disable_ipv6=1"], check=False,
                           capture_output=True)
    for lk in LINKS:
        _ip("link", "add", lk.a_if, "netns", namespace(lk.a), "address", _mac_text(lk.a_mac),
            "type", "veth", "peer", "name", lk.b_if, "netns", namespace(lk.b),
            "address", _mac_text(lk.b_mac))
    for lk in LINKS:
        for short, ifname in ((lk.a, lk.a_if), (lk.b, lk.b_if)):
            subprocess.run(["ip", "netns", "exec", namespace(short), "sysctl", "-q", "-w",
                            f"net.ipv6.conf.{ifname}.disable_ipv6=1"], check=False,
                           capture_output=True)
            _ip("-n", namespace(short), "link", "set", ifname, "up")
    _wait_for_carrier()


def _wait_for_carrier(timeout: float = 5.0) -> None:
    """veth carrier comes up asynchronously; frames sent before it are dropped."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        down_ifs = []
        for short in NAMESPACES:
            out = subprocess.run(["ip", "-n", namespace(short), "-o", "link", "show"],
                                 capture_output=True, text=True).stdout
            down_ifs += [line for line in out.splitlines()
                         if "@" in line and "state UP" not in line]
        if not down_ifs:
            return
        time.sleep(0.05)
    raise UserError("netns topology: veth links did not come up within 5 s")


def pids(ns: str) -> list[int]:
    """The processes running inside a namespace (`ip netns pids`)."""
    out = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True).stdout
    return [int(p) for p in out.split() if p.isdigit()]


def _end(processes: list[int], timeout: float = TERM_SECONDS) -> None:
    """SIGTERM, then SIGKILL what is still there after `timeout`."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in processes:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + timeout
        while processes and time.monotonic() < deadline:
            processes = [p for p in processes if os.path.exists(f"/proc/{p}")
                         and not _zombie(p)]
            time.sleep(0.05)
        if not processes:
            return


def _zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return True


def down() -> int:
    """Remove the namespaces this module built (deleting a namespace deletes its veths), after
    ending every process still inside them."""
    namespaces = existing()
    _end([p for ns in namespaces for p in pids(ns)])
    for ns in namespaces:
        _ip("netns", "delete", ns)
    return len(namespaces)


def check_fits(scenario: Scenario) -> None:
    """The topology has two correspondents (cn1, cn2)."""
    if len(scenario.correspondents) > 2:
        raise UserError(f"{scenario.path}: the netns topology has two correspondents, "
                        f"the scenario has {len(scenario.correspondents)}")


class _NetnsSockets:
    """Raw packet sockets opened inside each namespace (setns on this thread, then back)."""

    def __init__(self):
        self.libc = ctypes.CDLL(None, use_errno=True)
        self.sockets: dict[tuple[str, str], socket.socket] = {}

    def get(self, ns: str, ifname: str) -> socket.socket:
        key = (ns, ifname)
        if key not in self.sockets:
            home = os.open("/proc/self/ns/net", os.O_RDONLY)
            target = os.open(f"/run/netns/{ns}", os.O_RDONLY)
            try:
                if self.libc.setns(target, CLONE_NEWNET) != 0:
                    raise UserError(f"setns {ns}: {os.strerror(ctypes.get_errno())}")
                try:
                    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)  # send only
                    sock.bind((ifname, 0))
                finally:
                    self.libc.setns(home, CLONE_NEWNET)
            finally:
                os.close(home)
                os.close(target)
            self.sockets[key] = sock
        return self.sockets[key]

    def close(self) -> None:
        for sock in self.sockets.values():
            sock.close()


def send_frames(frames: list[Frame], speed: float = 1.0) -> dict[str, int]:
    """Send every frame on its link at the scenario's pace / speed; counts per path."""
    if speed <= 0:
        raise UserError("--speed must be positive")
    sockets = _NetnsSockets()
    counts: dict[str, int] = {}
    try:
        ends = [sending_end(f) for f in frames]
        for end in set(ends):
            sockets.get(*end)
        start = time.monotonic()
        first = frames[0].usec if frames else 0
        for frame, end in zip(frames, ends, strict=False):
            due = start + (frame.usec - first) / 1e6 / speed
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            sockets.get(*end).send(frame.data)
            counts[frame.path] = counts.get(frame.path, 0) + 1
    finally:
        sockets.close()
    return counts


def command_send(scenario: Scenario, seed: int | None, speed: float) -> int:
    _require_root()
    if not speed > 0:
        raise UserError("--speed must be positive")
    check_fits(scenario)
    from lab.run import build
    out = build(scenario, seed)
    if not set(existing()) == {namespace(s) for s in NAMESPACES}:
        build_topology()
    counts = send_frames(out.frames, speed)
    summary = ", ".join(f"{p} {n}" for p, n in sorted(counts.items()))
    print(f"{scenario.name}: sent {len(out.frames)} packets ({summary}); capture on "
          f"'ip netns exec {namespace('ha')} tshark -i ha-mn'; the keyring of these packets is "
          f"what 'mip6mon lab run {scenario.name} -o DIR' writes (same seed); remove with "
          f"'mip6mon lab down'", file=sys.stderr)
    return 0


def command_down() -> int:
    _require_root()
    removed = down()
    print(f"removed {removed} namespaces", file=sys.stderr)
    return 0
