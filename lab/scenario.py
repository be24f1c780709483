"""Lab scenarios: small TOML files (topology, nodes, keys or a seed, timeline) -> Scenario.

A scenario names one or more home agents, its correspondents and mobile nodes, and a timeline
of events. Keys, SPIs, MACs and care-of interface IDs that are absent are drawn from the seed
(lab.actors), so a file can be as short as a topology and a timeline. Every validation error
names the file, the table and the field. `mip6mon lab crowd` (lab.crowd) writes such a file
for N nodes. Every field, with its default:

    name = "baseline"                 # default: the file's stem; with the seed, it keys every draw
    description = "..."
    seed = 1
    bu_lifetime = 420                 # seconds, a multiple of 4 (RFC 6275 6.1.7)
    care_of_iid = "privacy"           # default IID kind of every node's care-of addresses:
                                      #   privacy (RFC 8981, random per address) | stable
                                      #   (RFC 7217, one per prefix) | eui64 (RFC 4291, the MAC's
                                      #   on every prefix: a leak to demonstrate)
    spi_allocation = "random"         # random | sequential: node k's first SPI = spi_base +
    spi_base = 4096                   #   k * spi_step, its four SAs on the next free SPIs above
    spi_step = 16                     #   (manual keying); k counts [[mobile_node]]s from 0
    sa_setup = "together"             # together: every SA's ESP sequence number starts at 1, so
                                      #   the counters of all nodes run side by side |
                                      #   staggered: each SA starts where its earlier life left it
                                      #   (drawn from the seed, 1..65535)
    keyring_spis = "every"            # keyring.toml lists every SPI each SA sent with (draft
                                      #   6.4 renewals included) | initial: each SA under the
                                      #   SPI it was set up with, as an operator configures it
                                      #   (the monitor follows the renewals)

    [home_agent]                      # one home agent; or several [[home_agent]] tables
    name     = "ha"                   # default "ha" (needed with several: nodes name it)
    address  = "2001:db8:1::1"
    prefixes = ["2001:db8:1::/64", "2001:db8:100::/64"]   # /64s, none shared between agents

    [[correspondent]]
    name = "cn1"                      # `lab send`'s netns topology has two: cn1 and cn2
    address = "2001:db8:3::5"
    # kcn = "<20 octets hex>"
    # privacy_aware = true            # false: ignores the P flag and option 0xFE (draft 4.1)

    [[mobile_node]]
    name = "mn1"
    home_address = "2001:db8:1::100"  # inside one of its home agent's prefixes
    # home_agent = "ha"               # the [home_agent]'s name; required with several
    home_bu = "5.2.1"                 # rfc3776 | 5.2.1 | 5.2.2   (home registration rows of
                                      #   dissectors.procedures)
    phoa_cipher = "aes-ctr"           # aes-ctr | aes-ecb-trunc   (PROFILE.md, draft 5.1.3)
    # privacy = true                  # default: true for the draft's home_bu (draft 6.3, 6.4)
    # ks = "<hex>"                    # manual SA key (draft 5.1.2)
    # key_index = "esp-seq"           # or "counter": i in Ki = count of Home BUs sent (5.1.4)
    # care_of_iid = "privacy"         # this node's IID kind (default: the top-level one)
    # mac = "00:1b:21:3a:4f:5c"       # the interface's MAC (eui64); default drawn from the seed
    # spi_allocation = "sequential"   # this node's allocation (default: the top-level one)
    # first_spi = 4096                # this node's first SPI; its other SAs on the next free
    # esp_sequence = 1                # first ESP sequence number of its SAs (default: sa_setup)

    [[event]]
    at = 1.0                          # seconds from the start of the capture, in time order;
                                      #   a node's events run one after another, different
                                      #   nodes' events run side by side
    node = "mn1"
    do = "move"                       # move | session | prefix-discovery | return-home | background
    care_of_prefix = "2001:db8:2::/64"    # move: the visited /64; the node forms its care-of
                                          #   address there by its care_of_iid
    # care_of_address = "2001:db8:2::7"   # move: or the care-of address itself (then the IID
                                          #   kind does not apply to this move)
    lose_bu = true                    # move, return-home: the first Home BU is lost and
                                      #   retransmitted
    # session:     correspondent = "cn1", procedure = rfc6275 | 4.1 | 4.2 | 5.3.1 | 5.3.2 | 5.4
    #              (correspondent rows of dissectors.procedures), data = 2 (data packets each way)
    # background:  kind = tcp | udp | icmpv6, src, dst (addresses of other hosts), count = 4

SPIs: no SPI is used by two SAs in one capture (so the keyring's `src = dst = "*"` entries are
unambiguous): the allocator reserves every SPI of each SA's draft 6.4 chain, as long as the
timeline can renew it, and moves an SA up to the next SPI whose chain is free (sequential) or
draws again (random). With a small spi_step the SAs of later nodes drift above base + k*step.
"""
from __future__ import annotations

import ipaddress
import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from dissectors.procedures import BY_ID, Kind, ids
from keys.errors import UserError
from lab.addresses import IID_KINDS, parse_mac

HOME_BU_MODES = ids(Kind.HOME)                  # a node's home registration procedure
PHOA_CIPHERS = ("aes-ctr", "aes-ecb-trunc")
KEY_INDEXES = ("esp-seq", "counter")
SESSION_PROCEDURES = ids(Kind.CORRESPONDENT)    # a session's procedure with its correspondent
ACTIONS = ("move", "session", "prefix-discovery", "return-home", "background")
BACKGROUND_KINDS = ("tcp", "udp", "icmpv6")
SPI_ALLOCATIONS = ("random", "sequential")
SA_SETUPS = ("together", "staggered")
KEYRING_SPIS = ("every", "initial")
SAS_PER_NODE = 4            # lab.actors: transport and tunnel SA, each direction (RFC 3776)


@dataclass(frozen=True)
class HomeAgentSpec:
    address: str
    prefixes: tuple[str, ...]
    name: str = "ha"


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
    home_agent: str = "ha"            # HomeAgentSpec.name
    care_of_iid: str = "privacy"      # lab.addresses.IID_KINDS
    mac: bytes | None = None          # eui64: the interface's MAC (None: drawn from the seed)
    spi_allocation: str = "random"
    esp_sequence: int | None = None   # None: Scenario.sa_setup decides


@dataclass(frozen=True)
class Event:
    at: float
    action: str
    node: str | None = None
    care_of_address: str | None = None      # move: the address, or
    care_of_prefix: str | None = None       # move: the visited /64 (the node forms the IID)
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
    home_agents: tuple[HomeAgentSpec, ...]
    correspondents: tuple[CorrespondentSpec, ...]
    mobile_nodes: tuple[MobileNodeSpec, ...]
    events: tuple[Event, ...]
    path: str = ""
    bu_lifetime: int = 420                  # seconds (multiple of 4: RFC 6275 6.1.7 units)
    spi_base: int = 0x1000                  # sequential SPIs: node k starts at base + k * step
    spi_step: int = 16
    sa_setup: str = "together"
    keyring_spis: str = "every"

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
            kinds = kind if isinstance(kind, tuple) else (kind,)
            raise self.error(fld, f"must be {' or '.join(k.__name__ for k in kinds)}")
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


def _prefix(r: _Reader, fld: str, value) -> str:
    """A /64: home prefixes (PROFILE.md) and visited ones (SLAAC's 64-bit IID, RFC 4862)."""
    try:
        net = ipaddress.IPv6Network(value, strict=True)
    except (ValueError, TypeError):
        raise r.error(fld, f"not an IPv6 prefix: {value!r}") from None
    if net.prefixlen != 64:
        raise r.error(fld, f"{value} is not /64")
    return str(net)


def _prefixes(r: _Reader, fld: str) -> list[str]:
    clean = [_prefix(r, fld, p) for p in r.get(fld, list)]
    if not clean:
        raise r.error(fld, "empty")
    return clean


def _home_agents(path: str, top: _Reader) -> tuple[HomeAgentSpec, ...]:
    """`[home_agent]` (one) or `[[home_agent]]` (one or more, each with a name)."""
    raw = top.get("home_agent", (dict, list))
    tables = [("[home_agent]", raw)] if isinstance(raw, dict) else \
        [(f"[[home_agent]] #{n + 1}", t) for n, t in enumerate(raw)]
    if not tables:
        raise top.error("home_agent", "at least one home agent is needed")
    agents: list[HomeAgentSpec] = []
    seen: dict[ipaddress.IPv6Network, str] = {}
    for label, table in tables:
        r = _Reader(path, label, table)
        r.unknown({"name", "address", "prefixes"})
        name = r.get("name", str, "ha" if len(tables) == 1 else ...)
        if name in [a.name for a in agents]:
            raise r.error("name", f"two home agents named {name!r}")
        prefixes = _prefixes(r, "prefixes")
        for p in prefixes:
            net = ipaddress.IPv6Network(p)
            if net in seen:
                raise r.error("prefixes", f"{p} is also a prefix of home agent {seen[net]!r}")
            seen[net] = name
        agents.append(HomeAgentSpec(r.address("address"), tuple(prefixes), name))
    return tuple(agents)


def _in_prefixes(address: str, prefixes) -> bool:
    return any(ipaddress.IPv6Address(address) in ipaddress.IPv6Network(p) for p in prefixes)


def parse_scenario(doc: dict, path: str = "<scenario>") -> Scenario:
    top = _Reader(path, "top level", doc)
    top.unknown({"name", "description", "seed", "bu_lifetime", "care_of_iid", "spi_allocation",
                 "spi_base", "spi_step", "sa_setup", "keyring_spis", "home_agent",
                 "correspondent",
                 "mobile_node", "event"})
    name = top.get("name", str, Path(path).stem)
    lifetime = top.get("bu_lifetime", int, 420)
    if lifetime <= 0 or lifetime % 4 or lifetime > 4 * 0xFFFF:
        raise top.error("bu_lifetime", "must be a positive multiple of 4 seconds")
    default_iid = top.get("care_of_iid", str, "privacy", IID_KINDS)
    default_spi = top.get("spi_allocation", str, "random", SPI_ALLOCATIONS)
    spi_base = top.get("spi_base", int, 0x1000)
    if not 256 <= spi_base < 1 << 32:
        raise top.error("spi_base", "out of range 256..2^32-1 (RFC 4303 2.1)")
    spi_step = top.get("spi_step", int, 16)
    if not 1 <= spi_step < 1 << 24:
        raise top.error("spi_step", "must be 1..2^24-1")
    sa_setup = top.get("sa_setup", str, "together", SA_SETUPS)
    keyring_spis = top.get("keyring_spis", str, "every", KEYRING_SPIS)

    home_agents = _home_agents(path, top)
    every_prefix = [p for ha in home_agents for p in ha.prefixes]

    correspondents = []
    for n, item in enumerate(top.get("correspondent", list, [])):
        r = _Reader(path, f"[[correspondent]] #{n + 1}", item)
        r.unknown({"name", "address", "kcn", "privacy_aware"})
        correspondents.append(CorrespondentSpec(
            r.get("name", str), r.address("address"), r.key("kcn", 20),
            r.get("privacy_aware", bool, True)))

    nodes = []
    macs: dict[bytes, str] = {}
    for n, item in enumerate(top.get("mobile_node", list)):
        r = _Reader(path, f"[[mobile_node]] #{n + 1}", item)
        r.unknown({"name", "home_address", "home_bu", "phoa_cipher", "privacy", "ks", "first_spi",
                   "key_index", "home_agent", "care_of_iid", "mac", "spi_allocation",
                   "esp_sequence"})
        node_name = r.get("name", str)
        home_bu = r.get("home_bu", str, "5.2.1", HOME_BU_MODES)
        ha_name = r.get("home_agent", str, home_agents[0].name if len(home_agents) == 1 else ...)
        agent = next((a for a in home_agents if a.name == ha_name), None)
        if agent is None:
            raise r.error("home_agent", f"no home agent named {ha_name!r}")
        hoa = r.address("home_address")
        if not _in_prefixes(hoa, agent.prefixes):
            raise r.error("home_address", f"not in any of home agent {ha_name!r}'s prefixes")
        first_spi = r.get("first_spi", int, None)
        if first_spi is not None and not 256 <= first_spi < 1 << 32:
            raise r.error("first_spi", "out of range 256..2^32-1")
        mac = None
        if "mac" in item:
            mac = parse_mac(r.get("mac", str))
            if mac is None:
                raise r.error("mac", "not a unicast MAC (aa:bb:cc:dd:ee:ff)")
            if mac in macs:
                raise r.error("mac", f"the MAC of {macs[mac]!r} too")
            macs[mac] = node_name
        esp_sequence = r.get("esp_sequence", int, None)
        if esp_sequence is not None and not 1 <= esp_sequence < 1 << 31:
            raise r.error("esp_sequence", "must be 1..2^31-1")
        nodes.append(MobileNodeSpec(
            name=node_name, home_address=hoa, home_bu=home_bu,
            phoa_cipher=r.get("phoa_cipher", str, "aes-ctr", PHOA_CIPHERS),
            privacy=r.get("privacy", bool, BY_ID[home_bu].draft), ks=r.key("ks"),
            first_spi=first_spi, key_index=r.get("key_index", str, "esp-seq", KEY_INDEXES),
            home_agent=ha_name, care_of_iid=r.get("care_of_iid", str, default_iid, IID_KINDS),
            mac=mac, spi_allocation=r.get("spi_allocation", str, default_spi, SPI_ALLOCATIONS),
            esp_sequence=esp_sequence))
    if not nodes:
        raise top.error("mobile_node", "at least one mobile node is needed")

    names = [a.name for a in home_agents] + [c.name for c in correspondents] + \
        [m.name for m in nodes]
    if len(set(names)) != len(names):
        raise top.error("name", "home agent, node and correspondent names must be unique")
    if len({m.home_address for m in nodes}) != len(nodes):
        raise top.error("mobile_node", "two nodes share a home address")

    node_names = {m.name for m in nodes}
    cn_names = {c.name for c in correspondents}
    events = []
    last = 0.0
    for n, item in enumerate(top.get("event", list, [])):
        r = _Reader(path, f"[[event]] #{n + 1}", item)
        r.unknown({"at", "do", "node", "care_of_address", "care_of_prefix", "lose_bu",
                   "correspondent", "procedure", "data", "kind", "src", "dst", "count"})
        at = r.get("at", float)
        if at < last:
            raise r.error("at", "events must be in time order")
        last = at
        action = r.get("do", str, choices=ACTIONS)
        node = None
        if action != "background":
            node = r.get("node", str)
            if node not in node_names:
                raise r.error("node", f"no mobile node named {node!r}")
        ev = dict(at=at, action=action, node=node)
        if action == "move":
            if ("care_of_address" in item) == ("care_of_prefix" in item):
                raise r.error("care_of_prefix", "give care_of_prefix or care_of_address (one)")
            if "care_of_address" in item:
                ev["care_of_address"] = r.address("care_of_address")
                if _in_prefixes(ev["care_of_address"], every_prefix):
                    raise r.error("care_of_address",
                                  "inside a home prefix (use do = \"return-home\")")
            else:
                prefix = _prefix(r, "care_of_prefix", r.get("care_of_prefix", str))
                if any(ipaddress.IPv6Network(prefix).overlaps(ipaddress.IPv6Network(p))
                       for p in every_prefix):
                    raise r.error("care_of_prefix",
                                  "a home prefix (use do = \"return-home\")")
                ev["care_of_prefix"] = prefix
            ev["lose_bu"] = r.get("lose_bu", bool, False)
        elif action == "return-home":
            ev["lose_bu"] = r.get("lose_bu", bool, False)
        elif action == "session":
            cn = r.get("correspondent", str)
            if cn not in cn_names:
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
                    seed=top.get("seed", int, 1), home_agents=home_agents,
                    correspondents=tuple(correspondents), mobile_nodes=tuple(nodes),
                    events=tuple(events), path=path, bu_lifetime=lifetime, spi_base=spi_base,
                    spi_step=spi_step, sa_setup=sa_setup, keyring_spis=keyring_spis)
