"""Run a scenario and write capture.pcapng, keyring.toml (mode 0600) and truth.json."""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from dissectors.progress import watching
from dissectors.protocol import PATHS as EAVESDROPPER_PATHS
from keys.errors import UserError
from lab.actors import EPOCH_BASE_USEC, SA_LABELS, Frame, MobileNode, World
from lab.addresses import mac_text
from lab.pcapng import write_pcapng
from lab.scenario import Scenario

PATHS = (*EAVESDROPPER_PATHS, "other")    # "other": background links, no eavesdropper's path


@dataclass
class LabOutput:
    frames: list[Frame]
    truth: dict
    keyring_text: str


def build(scenario: Scenario, seed: int | None = None,
          progress: str | None = None) -> LabOutput:
    """Run the timeline in memory: frames, truth (from the actors' caches), keyring text.
    `progress`: the label of a bar on stderr (drawn on a terminal only)."""
    world = World(scenario, seed)
    if progress is None:
        world.run()
    else:
        total = max(len(scenario.events), 1)
        with watching(lambda: (len(world.frames), world.events_done / total), progress,
                      unit="frames"):
            world.run()
    return LabOutput(world.frames, truth_of(world), keyring_toml(world))


def truth_of(world: World) -> dict:
    """docs/DESIGN.md `truth.json`: bindings from the caches the home agents and the
    correspondents hold, in capture order; per node, what the lab chose for it."""
    paths = {p: 0 for p in PATHS}
    for f in world.frames:
        paths[f.path] += 1
    home_bindings = sorted((b for ha in world.has.values() for b in ha.binding_cache),
                           key=lambda b: b["frame"])
    cn_bindings = sorted((b for cn in world.cns.values() for b in cn.binding_cache),
                         key=lambda b: b["frame"])
    return {
        "scenario": world.scenario.name,
        "seed": world.seed,
        "nodes": {mn.name: node_truth(mn) for mn in world.mns.values()},
        "home_agents": {ha.name: ha.address for ha in world.has.values()},
        "correspondents": {cn.name: cn.address for cn in world.cns.values()},
        "home_bindings": home_bindings,
        "correspondent_bindings": cn_bindings,
        "paths": paths,
        "frames": {str(n): {"path": f.path, "node": f.node, "procedure": f.procedure,
                            "what": f.what}
                   for n, f in enumerate(world.frames, 1)},
    }


def node_truth(mn: MobileNode) -> dict:
    """home_address and home_agent (the schema's); then the node's setup, for evaluations:
    procedures, care-of IID kind (and MAC), and per SA its first SPI, every SPI it sent
    with (in order; draft 6.4) and its first ESP sequence number."""
    return {"home_address": mn.home_address, "home_agent": mn.ha.address,
            "home_bu": mn.spec.home_bu, "phoa_cipher": mn.spec.phoa_cipher,
            "privacy": mn.spec.privacy, "care_of_iid": mn.spec.care_of_iid,
            "mac": mac_text(mn.mac),
            "esp_sas": [{"sa": label, "first_spi": sa.first_spi, "spis_used": sa.spis_used,
                         "first_sequence": sa.first_seq}
                        for sa, label in zip(mn.sas(), SA_LABELS, strict=True)]}


def _q(text: str) -> str:
    return json.dumps(text)            # a TOML basic string is JSON-compatible for our values


def keyring_toml(world: World) -> str:
    """PROFILE.md "The keyring": everything a keyed monitor needs for this capture."""
    out = [f"# mip6mon lab keyring: scenario {world.scenario.name}, seed {world.seed}", ""]
    for ha in world.has.values():
        out += ["[[home_agent]]", f"address  = {_q(ha.address)}",
                "prefixes = [" + ", ".join(_q(p) for p in ha.prefixes) + "]", ""]
    for mn in world.mns.values():
        out += ["[[mobile_node]]", f"name         = {_q(mn.name)}",
                f"home_address = {_q(mn.home_address)}",
                f"home_agent   = {_q(mn.ha.address)}",
                f"ks           = {_q(mn.ks.hex())}",
                f"phoa_cipher  = {_q(mn.spec.phoa_cipher)}",
                f"key_index    = {_q(mn.spec.key_index)}", ""]
    for mn in world.mns.values():
        for sa, label in zip(mn.sas(), SA_LABELS, strict=True):
            # every SPI the SA went through (draft 6.4 renewals keep the keys), or only the
            # one it was set up with: what an operator configures, the renewals left to the
            # monitor to follow
            spis = [sa.first_spi] if world.scenario.keyring_spis == "initial" else sa.spis_used
            for spi in spis:
                out += [f"[[esp_sa]]   # {mn.name} {label}", f'spi                = "0x{spi:08x}"',
                        'src                = "*"', 'dst                = "*"',
                        'encryption         = "aes-cbc"',
                        f'encryption_key     = "{sa.encryption_key.hex()}"',
                        'authentication     = "hmac-sha1-96"',
                        f'authentication_key = "{sa.authentication_key.hex()}"', ""]
    for cn in world.cns.values():
        out += ["[[correspondent]]", f"address = {_q(cn.address)}", f'kcn     = "{cn.kcn.hex()}"']
        if cn.nonces:
            out += ["[correspondent.nonces]"]
            out += [f'"{i}" = "{n.hex()}"' for i, n in sorted(cn.nonces.items())]
        out += [""]
    return "\n".join(out)


def run_scenario(scenario: Scenario, outdir: str | os.PathLike, seed: int | None = None,
                 progress: str | None = None) -> dict:
    """Write capture.pcapng, keyring.toml (0600) and truth.json into outdir; returns truth."""
    out = build(scenario, seed, progress)
    write_output(out, outdir)
    return out.truth


def write_output(out: LabOutput, outdir: str | os.PathLike) -> None:
    """capture.pcapng, keyring.toml (0600) and truth.json of a built scenario, into outdir."""
    outdir = Path(outdir)
    try:
        outdir.mkdir(parents=True, exist_ok=True)
        write_pcapng(outdir / "capture.pcapng",
                     [(EPOCH_BASE_USEC + f.usec, f.data, f"path={f.path}") for f in out.frames])
        keyring = outdir / "keyring.toml"
        fd = os.open(keyring, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(out.keyring_text)
        os.chmod(keyring, 0o600)       # also when the file existed with wider permissions
        (outdir / "truth.json").write_text(json.dumps(out.truth, indent=1) + "\n")
    except OSError as exc:
        raise UserError(f"{exc.filename or outdir}: cannot write lab output: "
                        f"{exc.strerror or exc}") from None
