"""Crowds: N mobile nodes (2 to 500) on one or more home agents, as one lab scenario.

`crowd_scenario(**params) -> Scenario` is the Python API (tests and evaluations call it);
`mip6mon lab crowd` is the same with one option per parameter (its help is built from
PARAMETERS below) and writes scenario.toml beside capture.pcapng, keyring.toml and truth.json.
The scenario is an ordinary one (lab/scenario.py): `mip6mon lab run DIR/scenario.toml`
gives the same bytes again.

What varies, each drawn from the seed and nothing else (a parameter changes only what it is
about: the nodes' procedures stay when the move pattern changes):
- topology: node k (from 0) is `mn{k+1}` with home address `2001:db8:1:H::{100+k}` on home
  agent `ha{H+1}` (H = k mod home_agents, address `2001:db8:1:H::1`, prefixes
  `2001:db8:1:H::/64` and `2001:db8:100:H::/64`); it talks to one correspondent
  `cn{c+1}` = `2001:db8:3:c::5`; it moves between `networks` visited prefixes
  `2001:db8:2NN::/64`, never to the one it is on;
- care-of IIDs, SPI allocation, SA setup: scenario fields (lab/scenario.py);
- moves: `in-turn` (round robin, one move every move_interval), `poisson` (each node moves
  at exponential intervals of mean 1 / move_rate), `burst` (each round, the nodes in random
  groups of burst_size, each group moving within burst_spread seconds: handover storms);
- procedures: `mixed` (per node: Home BU 5.2.1, 5.2.2 or rfc3776; a draft node registers with
  its correspondent by 4.1, 4.2, 5.3.1, 5.3.2 or 5.4, a plain rfc3776 node by rfc6275), or
  `HOME_BU[+RO]` for every node (`5.2.1+4.1`, `5.2.2`, `rfc3776+rfc6275`; RO `mixed` draws
  one of the RO procedures the Home BU mode allows). A node with a correspondent starts its
  session right after its first move; every later move refreshes it (RFC 6275 11.7.2);
- background: TCP, UDP and ICMPv6 flows between other hosts at random times, sized so that
  they make about this share of the capture's packets (counted on the timeline without them).
"""
from __future__ import annotations

import argparse
import ipaddress
import math
import os
from dataclasses import dataclass
from pathlib import Path

from dissectors.procedures import Kind, of_kind
from keys.errors import UserError
from lab.addresses import IID_KINDS
from lab.draw import Draw
from lab.scenario import (
    HOME_BU_MODES,
    KEYRING_SPIS,
    PHOA_CIPHERS,
    SA_SETUPS,
    SESSION_PROCEDURES,
    SPI_ALLOCATIONS,
    Scenario,
    parse_scenario,
)

MIXED = "mixed"
MOVE_PATTERNS = ("in-turn", "poisson", "burst")
# Correspondent procedures a node may use, by its home registration (dissectors.procedures): a
# draft node uses the draft's (a crowd's draft nodes are privacy nodes, so 4.1 / 4.2 fit), and
# 5.3.1 only with routable pseudo home addresses (5.2.x); a plain RFC 3776 node the plain
# RFC 6275 one. In table order: the draws pick by position.
RO_FOR_HOME_BU = {
    home.id: tuple(ro.id for ro in of_kind(Kind.CORRESPONDENT)
                   if ro.draft == home.draft
                   and (home.routable_pseudo or not ro.needs_routable_pseudo))
    for home in of_kind(Kind.HOME)}
START = 1.0                             # the first move, seconds into the capture


@dataclass(frozen=True)
class Parameter:
    """One crowd parameter: keyword argument, `lab crowd` option and validation, declared once."""
    name: str
    kind: type
    default: object
    help: str
    choices: tuple[str, ...] | None = None
    low: float | None = None
    high: float | None = None
    short: str | None = None
    metavar: str | None = None

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    def check(self, value):
        """The value, converted and checked; a UserError that names the option otherwise."""
        where = f"lab crowd {self.flag}"
        if self.kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, self.kind) or (self.kind is not bool and isinstance(value, bool)):
            raise UserError(f"{where}: must be {self.kind.__name__}, not {value!r}")
        if self.choices is not None and value not in self.choices:
            raise UserError(f"{where}: unknown value {value!r}, expected one of "
                            f"{', '.join(self.choices)}")
        if self.low is not None and not self.low <= value <= self.high:
            raise UserError(f"{where}: must be {self.low}..{self.high}, not {value!r}")
        return value


PARAMETERS = (
    Parameter("nodes", int, 20, "mobile nodes", low=2, high=500, short="-n"),
    Parameter("home_agents", int, 1, "home agents (node k on agent k mod this)", low=1, high=64),
    Parameter("correspondents", int, 2, "correspondents (the netns topology sends 2)",
              low=1, high=64),
    Parameter("networks", int, 8, "visited networks (/64 prefixes) the nodes move between",
              low=2, high=256),
    Parameter("iid", str, "privacy", "care-of interface IDs", choices=(*IID_KINDS, MIXED)),
    Parameter("spi", str, "random", "SPI allocation", choices=SPI_ALLOCATIONS),
    Parameter("spi_base", int, 0x1000, "sequential: node 0's first SPI", low=256,
              high=(1 << 32) - 1),
    Parameter("spi_step", int, 16, "sequential: SPI distance from one node to the next",
              low=1, high=(1 << 24) - 1),
    Parameter("keyring", str, "initial", "keyring.toml lists each SA under its first SPI "
              "(initial: what an operator configures) or every SPI it used (every)",
              choices=KEYRING_SPIS),
    Parameter("sa_setup", str, "together", "ESP counters from 1 for all (together) or each "
              "where its SA left it (staggered)", choices=SA_SETUPS),
    Parameter("moves", str, "in-turn", "move pattern", choices=MOVE_PATTERNS),
    Parameter("moves_per_node", int, 5, "moves per node", low=1, high=1000),
    Parameter("move_rate", float, 0.1, "poisson: moves per second per node", low=1e-4,
              high=1e3),
    Parameter("move_interval", float, 0.5, "in-turn: seconds between moves; burst: between "
              "bursts", low=0.0, high=3600.0),
    Parameter("burst_size", int, 5, "burst: nodes per burst", low=2, high=500),
    Parameter("burst_spread", float, 0.005, "burst: seconds within which a burst's moves "
              "start", low=0.0, high=1.0),
    Parameter("procedures", str, MIXED, "'mixed' or HOME_BU[+RO] for every node: HOME_BU in "
              f"{'|'.join(HOME_BU_MODES)}, RO in {'|'.join(SESSION_PROCEDURES)}|mixed",
              metavar="SPEC"),
    Parameter("cipher", str, MIXED, "pseudo home address cipher",
              choices=(*PHOA_CIPHERS, MIXED)),
    Parameter("data", int, 2, "data packets each way when a session starts", low=0,
              high=10000),
    Parameter("background", float, 0.0, "share of the capture's packets that are background "
              "traffic", low=0.0, high=0.95),
    Parameter("lost_bu", float, 0.0, "chance that a move's first Home BU is lost",
              low=0.0, high=1.0),
    Parameter("prefix_discovery", float, 0.0, "chance that a node runs prefix discovery "
              "(5.5) after a move", low=0.0, high=1.0),
    Parameter("return_home", float, 0.0, "share of the nodes that go home at the end",
              low=0.0, high=1.0),
    Parameter("seed", int, 1, "seed of every draw", low=0, high=(1 << 63) - 1),
    Parameter("name", str, "", "scenario name (default crowd-N)", metavar="NAME"),
)
BY_NAME = {p.name: p for p in PARAMETERS}


def parameters(**params) -> dict:
    """Every parameter, defaults filled in and each value checked."""
    unknown = sorted(set(params) - set(BY_NAME))
    if unknown:
        raise UserError(f"lab crowd: unknown parameter {unknown[0]!r}")
    values = {p.name: p.check(params.get(p.name, p.default)) for p in PARAMETERS}
    values["name"] = values["name"] or f"crowd-{values['nodes']}"
    procedure_plan(values["procedures"])             # checked here, drawn per node later
    return values


def procedure_plan(text: str) -> tuple[str, str | None]:
    """'mixed' -> (mixed, mixed); '5.2.1+4.1' -> ('5.2.1', '4.1'); '5.2.2' -> ('5.2.2', None)."""
    where = "lab crowd --procedures"
    if text == MIXED:
        return MIXED, MIXED
    home_bu, _, ro = text.partition("+")
    if home_bu not in HOME_BU_MODES:
        raise UserError(f"{where}: unknown Home BU mode {home_bu!r}, expected mixed or one of "
                        f"{', '.join(HOME_BU_MODES)}")
    if not ro:
        return home_bu, None
    if ro != MIXED and ro not in RO_FOR_HOME_BU[home_bu]:
        raise UserError(f"{where}: {home_bu} nodes cannot register by {ro!r} (they can by "
                        f"{', '.join(RO_FOR_HOME_BU[home_bu])})")
    return home_bu, ro


class _Plan:
    """Draws for the crowd's plan: lab.actors.Draw keyed by the seed, one label per fact."""

    def __init__(self, seed: int):
        self.draw = Draw("crowd", seed)

    def unit(self, label: str) -> float:
        """A float in [0, 1)."""
        return self.draw.int(label, 0, 1 << 53) / (1 << 53)

    def pick(self, label: str, options):
        return options[self.draw.int(label, 0, len(options))]


def _a(text: str) -> str:
    return str(ipaddress.IPv6Address(text))         # RFC 5952 text


def _p(text: str) -> str:
    return str(ipaddress.IPv6Network(text))


def _t(seconds: float) -> float:
    return round(seconds, 6)          # microseconds: the capture's resolution


def crowd_document(**params) -> dict:
    """The crowd as a scenario document (the TOML's tables), parameters checked."""
    v = parameters(**params)
    plan = _Plan(v["seed"])
    n, n_ha, n_cn = v["nodes"], v["home_agents"], v["correspondents"]
    home_agents = [{"name": f"ha{h + 1}", "address": _a(f"2001:db8:1:{h:x}::1"),
                    "prefixes": [_p(f"2001:db8:1:{h:x}::/64"), _p(f"2001:db8:100:{h:x}::/64")]}
                   for h in range(n_ha)]
    correspondents = [{"name": f"cn{c + 1}", "address": _a(f"2001:db8:3:{c:x}::5")}
                      for c in range(n_cn)]
    networks = [_p(f"2001:db8:{0x200 + j:x}::/64") for j in range(v["networks"])]
    home_mode, ro_mode = procedure_plan(v["procedures"])

    nodes, sessions = [], {}
    for k in range(n):
        h = k % n_ha
        home_bu = home_mode if home_mode != MIXED else plan.pick(f"home-bu|{k}", HOME_BU_MODES)
        ro = ro_mode
        if ro == MIXED:
            ro = plan.pick(f"ro|{k}", RO_FOR_HOME_BU[home_bu])
        node = {"name": f"mn{k + 1}", "home_address": _a(f"2001:db8:1:{h:x}::{0x100 + k:x}"),
                "home_agent": f"ha{h + 1}", "home_bu": home_bu,
                "phoa_cipher": v["cipher"] if v["cipher"] != MIXED else
                plan.pick(f"cipher|{k}", PHOA_CIPHERS)}
        if v["iid"] == MIXED:
            node["care_of_iid"] = plan.pick(f"iid|{k}", IID_KINDS)
        nodes.append(node)
        if ro is not None:
            sessions[k] = (f"cn{plan.draw.int(f'cn|{k}', 0, n_cn) + 1}", ro)

    events = []                                 # (time, order, event table)
    last_move: dict[int, float] = {}
    network_of: dict[int, int] = {}
    for order, (at, k) in enumerate(move_times(v, plan)):
        options = [j for j in range(len(networks)) if j != network_of.get(k)]
        network_of[k] = plan.pick(f"network|{k}|{order}", options)
        move = {"at": _t(at), "node": f"mn{k + 1}", "do": "move",
                "care_of_prefix": networks[network_of[k]]}
        if plan.unit(f"lost-bu|{k}|{order}") < v["lost_bu"]:
            move["lose_bu"] = True
        events.append((at, len(events), move))
        if k in sessions and k not in last_move:
            cn, ro = sessions[k]
            events.append((at, len(events), {"at": _t(at), "node": f"mn{k + 1}",
                                             "do": "session", "correspondent": cn,
                                             "procedure": ro, "data": v["data"]}))
        if plan.unit(f"prefix-discovery|{k}|{order}") < v["prefix_discovery"]:
            events.append((at, len(events), {"at": _t(at), "node": f"mn{k + 1}",
                                             "do": "prefix-discovery"}))
        last_move[k] = at
    for k in sorted(last_move):
        if plan.unit(f"return-home|{k}") < v["return_home"]:
            at = last_move[k] + max(v["move_interval"], 1.0)
            events.append((at, len(events), {"at": _t(at), "node": f"mn{k + 1}",
                                             "do": "return-home"}))
    events.sort(key=lambda e: (e[0], e[1]))

    doc = {"name": v["name"], "seed": v["seed"],
           "description": "lab crowd " + " ".join(
               f"{BY_NAME[p].flag} {v[p]}" for p in BY_NAME if p not in ("name", "seed")),
           "care_of_iid": v["iid"] if v["iid"] != MIXED else "privacy",
           "spi_allocation": v["spi"], "spi_base": v["spi_base"], "spi_step": v["spi_step"],
           "sa_setup": v["sa_setup"], "keyring_spis": v["keyring"], "home_agent": home_agents,
           "correspondent": correspondents, "mobile_node": nodes,
           "event": [e for _, _, e in events]}
    if v["background"] > 0:
        doc["event"] = _with_background(doc, v, plan)
    return doc


def move_times(v: dict, plan: _Plan) -> list[tuple[float, int]]:
    """(time, node) of every move, in time order (ties: by node)."""
    n, m, interval = v["nodes"], v["moves_per_node"], v["move_interval"]
    times: list[tuple[float, int]] = []
    if v["moves"] == "in-turn":
        times = [(START + (r * n + k) * interval, k) for r in range(m) for k in range(n)]
    elif v["moves"] == "poisson":
        for k in range(n):
            at = START
            for r in range(m):
                # exponential gaps of mean 1/rate (inverse transform of a uniform draw)
                at += -math.log(1.0 - plan.unit(f"poisson|{k}|{r}")) / v["move_rate"]
                times.append((at, k))
    else:
        burst = 0
        for r in range(m):
            order = sorted(range(n), key=lambda k: plan.unit(f"burst-order|{r}|{k}"))
            for first in range(0, n, v["burst_size"]):
                base = START + burst * interval
                for k in order[first:first + v["burst_size"]]:
                    times.append((base + plan.unit(f"burst|{r}|{k}") * v["burst_spread"], k))
                burst += 1
    return sorted(times)


def _with_background(doc: dict, v: dict, plan: _Plan) -> list[dict]:
    """The timeline with background flows added: the mobility timeline is run once to count
    its packets, then flows at random times until they are `background` of the whole."""
    from lab.actors import World, background_frames

    mobility = World(parse_scenario(doc, "<crowd>"))
    mobility.run()
    wanted = round(len(mobility.frames) * v["background"] / (1 - v["background"]))
    end = max((f.usec for f in mobility.frames), default=0) / 1e6
    flows, total = [], 0
    while total < wanted:
        i = len(flows)
        kind = plan.pick(f"bg-kind|{i}", ("tcp", "udp", "icmpv6"))
        count = 1 + plan.draw.int(f"bg-count|{i}", 0, 8)
        at = _t(plan.unit(f"bg-at|{i}") * end)
        flows.append({"at": at, "do": "background", "kind": kind,
                      "src": _a(f"2001:db8:8::{1 + plan.draw.int(f'bg-src|{i}', 0, 0xfff):x}"),
                      "dst": _a(f"2001:db8:9::{1 + plan.draw.int(f'bg-dst|{i}', 0, 0xfff):x}"),
                      "count": count})
        total += background_frames(kind, count)
    merged = [(e["at"], 0, n, e) for n, e in enumerate(doc["event"])] + \
        [(e["at"], 1, n, e) for n, e in enumerate(flows)]
    return [e for *_, e in sorted(merged, key=lambda x: x[:3])]


def crowd_scenario(**params) -> Scenario:
    """The crowd as a Scenario (lab.run.run_scenario / lab.run.build take it)."""
    return parse_scenario(crowd_document(**params), "<crowd>")


def scenario_toml(doc: dict) -> str:
    import tomlkit  # writes TOML (tomllib only reads it); the keyring editor's writer too

    return (f"# {doc['description']} --seed {doc['seed']}\n"
            f"# mip6mon lab run THIS_FILE -o DIR gives the same capture, keyring and truth\n"
            + tomlkit.dumps(doc))


def run_crowd(outdir: str | os.PathLike, **params) -> dict:
    """Write scenario.toml, capture.pcapng, keyring.toml (0600) and truth.json; returns truth."""
    from lab.run import run_scenario
    doc = crowd_document(**params)
    truth = run_scenario(parse_scenario(doc, "<crowd>"), outdir)
    try:
        (Path(outdir) / "scenario.toml").write_text(scenario_toml(doc))
    except OSError as exc:
        raise UserError(f"{outdir}: cannot write lab output: {exc.strerror or exc}") from None
    return truth


# --- `mip6mon lab crowd` (monitor/cli.py adds the subparser; lab/cli.py runs it) -------------

def add_arguments(parser: argparse.ArgumentParser) -> None:
    """One option per parameter, help and defaults from PARAMETERS."""
    parser.add_argument("-o", "--output", required=True, help="output directory")
    for p in PARAMETERS:
        flags = [p.short, p.flag] if p.short else [p.flag]
        parser.add_argument(*flags, dest=p.name, type=p.kind, default=p.default,
                            choices=p.choices,
                            metavar=p.metavar or {int: "N", float: "X", str: "TEXT"}[p.kind]
                            if not p.choices else None,
                            help=f"{p.help} (default: {p.default or 'crowd-N'})")


def command_crowd(args) -> dict:
    return run_crowd(args.output, **{p.name: getattr(args, p.name) for p in PARAMETERS})
