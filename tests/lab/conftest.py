"""Shared fixtures: every shipped scenario built once per session, and independent readers
(pcapng, ESP, IPv6 header chain) so the tests check the lab's bytes without the lab's code."""
from __future__ import annotations

import json
import struct
import subprocess
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest

from lab.run import run_scenario
from lab.scenario import load_scenario, shipped_scenarios

SCENARIOS = shipped_scenarios()


@dataclass
class Built:
    name: str
    dir: Path
    truth: dict
    keyring: dict               # the raw TOML

    @property
    def capture(self) -> Path:
        return self.dir / "capture.pcapng"


@pytest.fixture(scope="session")
def built(tmp_path_factory) -> dict[str, Built]:
    out = {}
    for name in SCENARIOS:
        d = tmp_path_factory.mktemp(f"lab-{name}")
        run_scenario(load_scenario(name), d)
        out[name] = Built(name, d, json.loads((d / "truth.json").read_text()),
                          tomllib.loads((d / "keyring.toml").read_text()))
    return out


def esp_uat_options(keyring: dict) -> list[str]:
    """PLATFORM-NOTES: one uat:esp_sa per SA, with tshark's exact algorithm labels."""
    opts = ["-o", "esp.enable_encryption_decode:TRUE",
            "-o", "esp.enable_authentication_check:TRUE"]
    for sa in keyring.get("esp_sa", []):
        opts += ["-o", f'uat:esp_sa:"IPv6","*","*","{sa["spi"]}","AES-CBC [RFC3602]",'
                       f'"0x{sa["encryption_key"]}","HMAC-SHA-1-96 [RFC2404]",'
                       f'"0x{sa["authentication_key"]}"']
    return opts


def tshark(b: Built, *args: str) -> str:
    result = subprocess.run(["tshark", "-r", str(b.capture), *esp_uat_options(b.keyring),
                             "-o", "udp.check_checksum:TRUE", "-o", "tcp.check_checksum:TRUE",
                             *args], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout


def tshark_fields(b: Built, fields: list[str], display_filter: str | None = None,
                  occurrence: str = "a") -> list[dict[str, str]]:
    args = ["-T", "fields", "-E", "separator=\t", "-E", f"occurrence={occurrence}",
            "-E", "aggregator=|"]
    for f in ["frame.number", *fields]:
        args += ["-e", f]
    if display_filter:
        args += ["-Y", display_filter]
    rows = []
    for line in tshark(b, *args).splitlines():
        values = line.split("\t")
        rows.append(dict(zip(["frame.number", *fields], values, strict=False)))
    return rows


FIELDS = ["frame.comment", "frame.time_epoch", "_ws.expert.severity", "esp.spi", "esp.sequence",
          "esp.icv_good", "esp.protocol", "udp.checksum.status", "icmpv6.checksum.status",
          "tcp.checksum.status", "ipv6.src", "ipv6.dst", "ipv6.opt.mipv6.home_address",
          "ipv6.routing.mipv6.home_address", "ipv6.opt.experimental", "mip6.mhtype",
          "mip6.bu.seqnr", "mip6.bu.h_flag", "mip6.bu.lifetime", "mip6.ni.hni", "mip6.ni.cni",
          "mip6.bad.auth", "mip6.acoa.acoa", "mip6.ba.seqnr", "mip6.ba.status",
          "mip6.hot.nindex", "mip6.hot.token", "mip6.cot.nindex"]


@pytest.fixture(scope="session")
def dissected(built) -> dict[str, list[dict[str, str]]]:
    """One tshark pass per scenario (decrypting with the keyring), every field the tests use;
    multiple occurrences joined with '|'."""
    from concurrent.futures import ThreadPoolExecutor
    with ThreadPoolExecutor(max_workers=3) as pool:     # tshark start-up dominates: overlap it
        results = pool.map(lambda b: tshark_fields(b, FIELDS), built.values())
        return dict(zip(built, results, strict=False))


# --- an independent pcapng reader ------------------------------------------------------------

@dataclass
class Record:
    usec: int
    data: bytes
    comments: list[str]
    interface: int = 0


def read_pcapng(path: Path) -> list[Record]:
    raw = path.read_bytes()
    off, records, resolution = 0, [], []
    while off < len(raw):
        btype, blen = struct.unpack_from("<II", raw, off)
        if btype == 1:                        # IDB: find if_tsresol (default microseconds)
            opt, res = off + 16, 6
            while opt < off + blen - 4:
                code, olen = struct.unpack_from("<HH", raw, opt)
                if code == 0:
                    break
                if code == 9:
                    res = raw[opt + 4]
                opt += 4 + olen + (-olen % 4)
            resolution.append(res)
        if btype == 6:
            ifid, hi, lo, caplen, _ = struct.unpack_from("<IIIII", raw, off + 8)
            data = raw[off + 28: off + 28 + caplen]
            opt = off + 28 + caplen + (-caplen % 4)
            comments = []
            while opt < off + blen - 4:
                code, olen = struct.unpack_from("<HH", raw, opt)
                if code == 0:
                    break
                if code == 1:
                    comments.append(raw[opt + 4: opt + 4 + olen].decode())
                opt += 4 + olen + (-olen % 4)
            ticks = (hi << 32) | lo
            usec = ticks * 10**6 // 10**resolution[ifid]    # decimal resolutions only
            records.append(Record(usec, data, comments, ifid))
        off += blen
    return records
