"""A crowd of mobile nodes for the lab (`lab.run`): SPIs allocated close together (node k's
first SPI = base + step * k, so the draft 6.4 chains of different nodes cross), explicit
random care-of addresses, every Home BU procedure and a mix of correspondent procedures.

What issue 10 saw lose ESP in a crowd; the dissector tests (and benchmarks) generate it with
any node count and seed.
"""
from __future__ import annotations

import random
from pathlib import Path

HOME_BU = ("5.2.1", "5.2.2", "5.2.1", "rfc3776")
SESSIONS = ("4.1", "4.2", "5.3.1", "5.3.2", "5.4", "rfc6275")


def crowd_toml(nodes: int, seed: int = 1, moves: int = 3, base_spi: int = 0x1000,
               step: int = 16) -> str:
    rng = random.Random(seed)
    lines = [f'name = "crowd-{nodes}"', 'description = "a crowd with SPIs close together"',
             f"seed = {seed}", "", "[home_agent]", 'address = "2001:db8:1::1"',
             'prefixes = ["2001:db8:1::/64", "2001:db8:100::/64"]', ""]
    for n, address in enumerate(("2001:db8:3::5", "2001:db8:7::9")):
        lines += ["[[correspondent]]", f'name = "cn{n + 1}"', f'address = "{address}"', ""]
    for k in range(nodes):
        lines += ["[[mobile_node]]", f'name = "mn{k}"', f'home_address = "2001:db8:1::{k + 1:x}"',
                  f'home_bu = "{HOME_BU[k % len(HOME_BU)]}"',
                  f'phoa_cipher = "{("aes-ctr", "aes-ecb-trunc")[k % 2]}"',
                  f"first_spi = {base_spi + step * k}", ""]
    events = []
    for k in range(nodes):
        t = rng.uniform(0.5, 2.0)
        for move in range(moves):
            iid = ":".join(f"{rng.getrandbits(16):x}" for _ in range(4))  # RFC 8981 style
            events.append((t, ["do = \"move\"", f'node = "mn{k}"',
                               f'care_of_address = "2001:db8:{2 + move % 3:x}:0:{iid}"']))
            t += rng.uniform(1.0, 3.0)
            if HOME_BU[k % len(HOME_BU)] != "rfc3776" and rng.random() < 0.6:
                procedure = rng.choice(SESSIONS)
                events.append((t, ['do = "session"', f'node = "mn{k}"',
                                   f'correspondent = "cn{rng.randint(1, 2)}"',
                                   f'procedure = "{procedure}"', "data = 1"]))
                t += rng.uniform(0.5, 1.5)
        if HOME_BU[k % len(HOME_BU)] == "5.2.1" and rng.random() < 0.3:
            events.append((t, ['do = "prefix-discovery"', f'node = "mn{k}"']))
    for t, body in sorted(events, key=lambda e: e[0]):
        lines += ["[[event]]", f"at = {t:.3f}", *body, ""]
    return "\n".join(lines)


def write_crowd(directory: Path, nodes: int, seed: int = 1, moves: int = 3) -> Path:
    path = Path(directory) / f"crowd-{nodes}-{seed}.toml"
    path.write_text(crowd_toml(nodes, seed, moves))
    return path
