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
