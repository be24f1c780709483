"""Lab scenarios: small TOML files (topology, nodes, keys or a seed, timeline) -> Scenario.

A scenario names one home agent, its correspondents and mobile nodes, and a timeline of
events. Keys that are absent are drawn from the seed (lab.actors), so a file can be as short as
a topology and a timeline. Every validation error names the file and the field.

    name = "baseline"
    description = "..."
    seed = 1

    [home_agent]
    address  = "2001:db8:1::1"
    prefixes = ["2001:db8:1::/64", "2001:db8:100::/64"]

    [[correspondent]]
    name = "cn1"                      # cn1 / cn2: the netns topology has two correspondents
    address = "2001:db8:3::5"
    # kcn = "<20 octets hex>"

    [[mobile_node]]
    name = "mn1"
    home_address = "2001:db8:1::100"
    home_bu = "5.2.1"                 # rfc3776 | 5.2.1 | 5.2.2   (draft 5.2)
    phoa_cipher = "aes-ctr"           # aes-ctr | aes-ecb-trunc   (PROFILE.md, draft 5.1.3)
    # privacy = true                  # default: home_bu != "rfc3776" (draft 6.3, 6.4)
    # ks = "<hex>"                    # manual SA key (draft 5.1.2)
    # key_index = "esp-seq"           # or "counter": i in Ki = count of Home BUs sent (5.1.4)

    [[event]]
    at = 1.0                          # seconds from the start of the capture
    node = "mn1"
    do = "move"                       # move | session | prefix-discovery | return-home | background
    care_of_address = "2001:db8:2::100"
    lose_bu = true                    # the first Home BU is lost and retransmitted
"""
from __future__ import annotations

import ipaddress
import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from keys.errors import UserError

HOME_BU_MODES = ("rfc3776", "5.2.1", "5.2.2")
PHOA_CIPHERS = ("aes-ctr", "aes-ecb-trunc")
KEY_INDEXES = ("esp-seq", "counter")
# correspondent registration procedures: plain RFC 6275 and the draft's
SESSION_PROCEDURES = ("rfc6275", "4.1", "4.2", "5.3.1", "5.3.2", "5.4")
ACTIONS = ("move", "session", "prefix-discovery", "return-home", "background")
BACKGROUND_KINDS = ("tcp", "udp", "icmpv6")


@dataclass(frozen=True)
class HomeAgentSpec:
    address: str
    prefixes: tuple[str, ...]


@dataclass(frozen=True)
class CorrespondentSpec:
    name: str
    address: str
    kcn: bytes | None = None
    privacy_aware: bool = True        # understands the P flag and option 0xFE (draft 4.1)


@dataclass(frozen=True)
class MobileNodeSpec:
    name: str
    home_address: str
    home_bu: str = "5.2.1"
    phoa_cipher: str = "aes-ctr"
    privacy: bool = True
    ks: bytes | None = None
    first_spi: int | None = None
    key_index: str = "esp-seq"        # draft 5.1.4: i = ESP sequence number, or a counter


@dataclass(frozen=True)
class Event:
    at: float
    action: str
    node: str | None = None
    care_of_address: str | None = None      # move
    lose_bu: bool = False                   # move, return-home: first Home BU lost
    correspondent: str | None = None        # session
    procedure: str | None = None            # session
    data: int = 2                           # session: data packets each way
    kind: str | None = None                 # background
    src: str | None = None                  # background
    dst: str | None = None
    count: int = 4


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    seed: int
    home_agent: HomeAgentSpec
    correspondents: tuple[CorrespondentSpec, ...]
    mobile_nodes: tuple[MobileNodeSpec, ...]
    events: tuple[Event, ...]
    path: str = ""
    bu_lifetime: int = 420                  # seconds (multiple of 4: RFC 6275 6.1.7 units)

    def node(self, name: str) -> MobileNodeSpec:
        return next(m for m in self.mobile_nodes if m.name == name)

    def correspondent(self, name: str) -> CorrespondentSpec:
        return next(c for c in self.correspondents if c.name == name)


def scenarios_dir() -> Path:
    return Path(str(resources.files("lab") / "scenarios"))


def shipped_scenarios() -> list[str]:
    return sorted(p.stem for p in scenarios_dir().glob("*.toml"))


class _Reader:
    """Typed field access on one TOML table; errors name the file, the table and the field."""

    def __init__(self, path: str, table: str, data):
        if not isinstance(data, dict):
            raise UserError(f"{path}: {table}: must be a table")
        self.path, self.table, self.data = path, table, data

    def error(self, fld: str, problem: str) -> UserError:
        return UserError(f"{self.path}: {self.table} {fld}: {problem}")

    def get(self, fld, kind, default=..., choices=None):
        if fld not in self.data:
            if default is ...:
                raise self.error(fld, "missing")
            return default
        value = self.data[fld]
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise self.error(fld, f"must be {kind.__name__}")
        if choices and value not in choices:
            raise self.error(fld, f"unknown value {value!r}, expected one of {', '.join(choices)}")
        return value

    def address(self, fld, default=...):
        value = self.get(fld, str, default)
        if value is None:
            return None
        try:
            return str(ipaddress.IPv6Address(value))
        except ValueError:
            raise self.error(fld, "not an IPv6 address") from None

    def key(self, fld, length: int | None = None):
        value = self.get(fld, str, None)
        if value is None:
            return None
        try:
            octets = bytes.fromhex(value.removeprefix("0x"))
        except ValueError:
            raise self.error(fld, "bad hex") from None   # never echo a key
        if not octets or (length and len(octets) != length):
            raise self.error(fld, f"wrong key length {len(octets)} octets")
        return octets

    def unknown(self, allowed: set[str]):
        extra = sorted(set(self.data) - allowed)
        if extra:
            raise self.error(extra[0], "unknown field")


def _resolve(name_or_path: str) -> Path:
    path = Path(name_or_path)
    if path.suffix == ".toml" or path.exists() or "/" in name_or_path:
        if not path.is_file():
            problem = "not a file" if path.exists() else "no such scenario file"
            raise UserError(f"{name_or_path}: {problem}")
        return path
    candidate = scenarios_dir() / f"{name_or_path}.toml"
    if not candidate.is_file():
        raise UserError(f"unknown scenario {name_or_path!r} (shipped: "
                        f"{', '.join(shipped_scenarios())})")
    return candidate


def load_scenario(name_or_path: str) -> Scenario:
    """A shipped scenario's name (lab/scenarios/NAME.toml) or a TOML file's path."""
    path = _resolve(name_or_path)
    try:
        doc = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: not valid TOML: {str(exc).splitlines()[0]}") from None
    return parse_scenario(doc, str(path))


def parse_scenario(doc: dict, path: str = "<scenario>") -> Scenario:
    top = _Reader(path, "top level", doc)
    top.unknown({"name", "description", "seed", "bu_lifetime", "home_agent", "correspondent",
                 "mobile_node", "event"})
    name = top.get("name", str, Path(path).stem)
    lifetime = top.get("bu_lifetime", int, 420)
    if lifetime <= 0 or lifetime % 4 or lifetime > 4 * 0xFFFF:
        raise top.error("bu_lifetime", "must be a positive multiple of 4 seconds")

    ha = _Reader(path, "[home_agent]", top.get("home_agent", dict))
    ha.unknown({"address", "prefixes"})
    prefixes = ha.get("prefixes", list)
    clean = []
    for p in prefixes:
        try:
            net = ipaddress.IPv6Network(p, strict=True)
        except (ValueError, TypeError):
            raise ha.error("prefixes", f"not an IPv6 prefix: {p!r}") from None
        if net.prefixlen != 64:
            raise ha.error("prefixes", f"{p} is not /64 (PROFILE.md)")
        clean.append(str(net))
    if not clean:
        raise ha.error("prefixes", "empty")
    home_agent = HomeAgentSpec(ha.address("address"), tuple(clean))

    correspondents = []
    for n, item in enumerate(top.get("correspondent", list, [])):
        r = _Reader(path, f"[[correspondent]] #{n + 1}", item)
        r.unknown({"name", "address", "kcn", "privacy_aware"})
        correspondents.append(CorrespondentSpec(
            r.get("name", str), r.address("address"), r.key("kcn", 20),
            r.get("privacy_aware", bool, True)))

    nodes = []
    for n, item in enumerate(top.get("mobile_node", list)):
        r = _Reader(path, f"[[mobile_node]] #{n + 1}", item)
        r.unknown({"name", "home_address", "home_bu", "phoa_cipher", "privacy", "ks", "first_spi",
                   "key_index"})
        home_bu = r.get("home_bu", str, "5.2.1", HOME_BU_MODES)
        hoa = r.address("home_address")
        if not any(ipaddress.IPv6Address(hoa) in ipaddress.IPv6Network(p) for p in clean):
            raise r.error("home_address", "not in any of the home agent's prefixes")
        first_spi = r.get("first_spi", int, None)
        if first_spi is not None and not 256 <= first_spi < 1 << 32:
            raise r.error("first_spi", "out of range 256..2^32-1")
        nodes.append(MobileNodeSpec(
            name=r.get("name", str), home_address=hoa, home_bu=home_bu,
            phoa_cipher=r.get("phoa_cipher", str, "aes-ctr", PHOA_CIPHERS),
            privacy=r.get("privacy", bool, home_bu != "rfc3776"), ks=r.key("ks"),
            first_spi=first_spi, key_index=r.get("key_index", str, "esp-seq", KEY_INDEXES)))
    if not nodes:
        raise top.error("mobile_node", "at least one mobile node is needed")

    names = [c.name for c in correspondents] + [m.name for m in nodes]
    if len(set(names)) != len(names):
        raise top.error("name", "node and correspondent names must be unique")

    events = []
    last = 0.0
    for n, item in enumerate(top.get("event", list, [])):
        r = _Reader(path, f"[[event]] #{n + 1}", item)
        r.unknown({"at", "do", "node", "care_of_address", "lose_bu", "correspondent",
                   "procedure", "data", "kind", "src", "dst", "count"})
        at = r.get("at", float)
        if at < last:
            raise r.error("at", "events must be in time order")
        last = at
        action = r.get("do", str, choices=ACTIONS)
        node = None
        if action != "background":
            node = r.get("node", str)
            if node not in [m.name for m in nodes]:
                raise r.error("node", f"no mobile node named {node!r}")
        ev = dict(at=at, action=action, node=node)
        if action == "move":
            ev["care_of_address"] = r.address("care_of_address")
            if any(ipaddress.IPv6Address(ev["care_of_address"]) in ipaddress.IPv6Network(p)
                   for p in clean):
                raise r.error("care_of_address", "inside a home prefix (use do = \"return-home\")")
            ev["lose_bu"] = r.get("lose_bu", bool, False)
        elif action == "return-home":
            ev["lose_bu"] = r.get("lose_bu", bool, False)
        elif action == "session":
            cn = r.get("correspondent", str)
            if cn not in [c.name for c in correspondents]:
                raise r.error("correspondent", f"no correspondent named {cn!r}")
            ev["correspondent"] = cn
            ev["procedure"] = r.get("procedure", str, choices=SESSION_PROCEDURES)
            ev["data"] = r.get("data", int, 2)
            if not 0 <= ev["data"] <= 10000:
                raise r.error("data", "must be 0..10000")
        elif action == "background":
            ev["kind"] = r.get("kind", str, choices=BACKGROUND_KINDS)
            ev["src"] = r.address("src")
            ev["dst"] = r.address("dst")
            ev["count"] = r.get("count", int, 4)
            if not 1 <= ev["count"] <= 100000:
                raise r.error("count", "must be 1..100000")
        events.append(Event(**ev))

    return Scenario(name=name, description=top.get("description", str, ""),
                    seed=top.get("seed", int, 1), home_agent=home_agent,
                    correspondents=tuple(correspondents), mobile_nodes=tuple(nodes),
                    events=tuple(events), path=path, bu_lifetime=lifetime)
