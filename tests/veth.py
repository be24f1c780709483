"""A veth pair for live-capture tests (root): one end captured here, the other in a private
network namespace. IPv6 is off at both ends, so no MLD / ND of the kernel's own joins what a
test sends and counts."""
from __future__ import annotations

import subprocess


def ip(*args: str, check: bool = True) -> None:
    subprocess.run(["ip", *args], check=check, capture_output=True)


def add_pair(captured: str, peer: str, ns: str) -> None:
    """`captured` here, `peer` in `ns` (which must exist), both up, IPv6 off."""
    ip("link", "add", captured, "type", "veth", "peer", "name", peer, "netns", ns)
    subprocess.run(["sysctl", "-qw", f"net.ipv6.conf.{captured}.disable_ipv6=1"], check=True)
    ip("netns", "exec", ns, "sysctl", "-qw", f"net.ipv6.conf.{peer}.disable_ipv6=1")
    ip("link", "set", captured, "up")
    ip("netns", "exec", ns, "ip", "link", "set", peer, "up")


_SENDER = """
import socket, sys
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind((sys.argv[1], 0))
print("ready", flush=True)
for line in sys.stdin:
    for frame in line.split():
        s.send(bytes.fromhex(frame))
    print("sent", flush=True)
"""


class FrameSender:
    """Raw frames sent from `peer` inside `ns` (AF_PACKET), one batch at a time: `send`
    returns once the kernel has taken every frame of the batch."""

    def __init__(self, ns: str, peer: str):
        import sys
        self.process = subprocess.Popen(
            ["ip", "netns", "exec", ns, sys.executable, "-c", _SENDER, peer],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.process.stdout is not None and self.process.stdin is not None
        assert self.process.stdout.readline().strip() == "ready"

    def send(self, frames: list[bytes]) -> None:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(" ".join(f.hex() for f in frames) + "\n")
        self.process.stdin.flush()
        assert self.process.stdout.readline().strip() == "sent"

    def close(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        self.process.wait(10)
