"""The kernel's ESP security associations (`ip xfrm state`) as the keyring's `[[esp_sa]]`.

Lab operators keep their SAs in the Linux kernel (XFRM). iproute2 prints them as text only:
`ip -j xfrm state` ignores -j (iproute2 6.1; its xfrm code has no JSON output), and no
packaged parser of this output exists, so the layout is read here, as iproute2 writes it
(ip/ipxfrm.c, xfrm_state_info_print):

    src 2001:db8:1::100 dst 2001:db8:1::1                  <- column 0: a new state
        proto esp spi 0x00001001 reqid 1 mode tunnel        <- indented: its lines
        replay-window 0 flag af-unspec esn
        auth-trunc hmac(sha1) 0x0102...14 96                <- name, key, truncation bits
        aead rfc4106(gcm(aes)) 0x0011...04 128              <- name, key, ICV bits
        enc cbc(aes) 0x0011...ff
        encap type espinudp sport 4500 dport 4500 addr ::
        sel src ::/0 dst ::/0 ...  (and lifetimes, statistics: not needed here)

`ip -s` adds `(N bits)` after each key and `(decimal)` after the SPI; `ip -o` prints a state
on one line with `\\` between its lines; `ip xfrm monitor` prefixes `Deleted`, `Updated` or
`Expired` and prints policies too (their addresses carry a /prefix). A key of zero length is
not printed at all; `nokeys` prints `<<Keys hidden>>` instead.

Key material is held in `Secret`s from the moment it is read, and no message here quotes the
input: errors give a line number and what was expected.
"""
from __future__ import annotations

import ipaddress
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field

from keys.errors import UserError
from keys.keyring import ESP_AUTHENTICATIONS, ESP_ENCRYPTIONS, EspSa, Secret, _esp_key_lengths

IP = "ip"

# --- the kernel's algorithm names (crypto API, as `ip xfrm state` prints them) -> PROFILE.md --

ENCRYPTIONS: dict[str, str] = {
    "ecb(cipher_null)": "null",              # RFC 2410
    "cbc(aes)": "aes-cbc",                   # RFC 3602
    "rfc3686(ctr(aes))": "aes-ctr",          # RFC 3686: the AES key, then the 4-octet nonce
}
# (name, ICV bits): an AEAD authenticates itself, so the SA's authentication is "null"
AEADS: dict[tuple[str, int], str] = {
    ("rfc4106(gcm(aes))", 128): "aes-gcm-16",  # RFC 4106: the AES key, then the 4-octet salt
}
# (name, truncation bits)
AUTHENTICATIONS: dict[tuple[str, int], str] = {
    ("digest_null", 0): "null",
    ("hmac(sha1)", 96): "hmac-sha1-96",         # RFC 2404
    ("hmac(sha256)", 128): "hmac-sha256-128",   # RFC 4868
}
# An `auth` line without truncation (an SA added with `auth`, not `auth-trunc`, shown by an
# old kernel) is truncated to Linux's default for the algorithm (crypto/xfrm_algo.c): 96 bits
# for hmac(sha256) too, not RFC 4868's 128.
LINUX_DEFAULT_TRUNCATION: dict[str, int] = {"digest_null": 0, "hmac(sha1)": 96,
                                            "hmac(sha256)": 96}

ALGORITHM_KINDS = ("enc", "auth", "auth-trunc", "aead", "comp")
STATE_EVENTS = ("Deleted", "Updated", "Expired")     # `ip xfrm monitor` prefixes
MODES = ("transport", "tunnel")                        # RFC 4303 3.1
KEYS_HIDDEN = ("<<Keys", "hidden>>")


class XfrmError(UserError):
    """`ip xfrm state` output that cannot be read. One line; never quotes the input."""


class Unsupported(Exception):
    """A kernel SA that PROFILE.md's [[esp_sa]] cannot express; the message says why."""


@dataclass(frozen=True, slots=True)
class Algorithm:
    kind: str                    # one of ALGORITHM_KINDS
    name: str                    # the kernel's, e.g. "cbc(aes)"
    key: Secret | None           # None when ip hid the keys (`nokeys`)
    bits: int | None = None      # auth-trunc: truncation; aead: ICV length


@dataclass(frozen=True, slots=True)
class XfrmState:
    line: int                    # where it starts in the text (1-based), for messages
    src: str
    dst: str
    proto: str = ""              # esp, ah, comp, route2, hao, or a number
    spi: int = 0
    mode: str = ""
    algorithms: tuple[Algorithm, ...] = ()
    flags: frozenset[str] = frozenset()
    encap: str | None = None     # UDP encapsulation type (RFC 3948), when there is one
    event: str | None = None     # Deleted / Updated / Expired, in `ip xfrm monitor` output

    @property
    def title(self) -> str:
        return f"SPI 0x{self.spi:08x} {self.src} -> {self.dst}"

    def algorithm(self, *kinds: str) -> Algorithm | None:
        return next((a for a in self.algorithms if a.kind in kinds), None)


# --- reading the text -------------------------------------------------------------------------

_NSID = re.compile(r"^\[nsid [^\]]*\]")      # `ip xfrm monitor all-nsid`


def _lines(text: str) -> Iterator[tuple[int, str]]:
    """(line number, line), with `ip -o`'s one-line states unfolded at their `\\`."""
    for number, line in enumerate(text.splitlines(), start=1):
        for piece in _NSID.sub("", line).split("\\"):
            if piece.strip():
                yield number, piece.rstrip()


def _shown(name: str) -> str:
    """An algorithm name fit to print: a long run of hex digits in the name's place could be a
    key that lost its name in a damaged file, and is never echoed."""
    if re.fullmatch(r"(0x)?[0-9a-fA-F]{8,}", name) or not re.fullmatch(r"[\w(),.\-]{1,64}", name):
        return "(unreadable algorithm name)"
    return name


def _number(text: str, base: int) -> int:
    return int(text.split("(", 1)[0], base)    # `ip -s`: 0x00001001(4097), 1(0x00000001)


def _algorithm(number: int, tokens: list[str]) -> Algorithm:
    kind, rest = tokens[0], tokens[1:]
    if not rest:
        raise XfrmError(f"line {number}: `{kind}` without an algorithm name")
    name, rest = rest[0], rest[1:]
    if "(ERROR" in rest:
        raise XfrmError(f"line {number}: ip printed a truncated `{kind}` attribute")
    bits = None
    if kind in ("auth-trunc", "aead"):
        if not rest or not rest[-1].isdecimal():
            what = "truncation" if kind == "auth-trunc" else "ICV"
            raise XfrmError(f"line {number}: `{kind} {_shown(name)}` without its {what} length")
        bits = int(rest.pop())
    if rest[:2] == list(KEYS_HIDDEN):
        return Algorithm(kind, name, None, bits)
    key = b""
    if rest and rest[0].startswith("0x"):
        try:
            key = bytes.fromhex(rest[0][2:])
        except ValueError:
            raise XfrmError(f"line {number}: the `{kind}` key is not hex") from None
        rest = rest[1:]
    if len(rest) == 2 and rest[0].startswith("(") and rest[1] == "bits)":   # `ip -s`
        rest = []
    if rest:
        raise XfrmError(f"line {number}: unexpected text after `{kind} {_shown(name)}`")
    return Algorithm(kind, name, Secret(key), bits)


@dataclass
class _Builder:
    line: int
    src: str
    dst: str
    event: str | None
    fields: dict[str, str] = field(default_factory=dict)
    algorithms: list[Algorithm] = field(default_factory=list)
    flags: set[str] = field(default_factory=set)
    encap: str | None = None

    def add(self, number: int, tokens: list[str]) -> None:
        head = tokens[0]
        if head == "proto":                      # proto esp spi 0x... reqid 1 mode tunnel
            pairs = dict(zip(tokens[::2], tokens[1::2], strict=False))
            self.fields.update({k: pairs[k] for k in ("proto", "spi", "mode") if k in pairs})
            self.fields["proto_line"] = str(number)
        elif head == "replay-window" and "flag" in tokens:
            self.flags.update(t for t in tokens[tokens.index("flag") + 1:]
                              if re.fullmatch(r"[a-z][a-z0-9-]*", t))
        elif head in ALGORITHM_KINDS:
            self.algorithms.append(_algorithm(number, tokens))
        elif head == "encap":                    # encap type espinudp sport ...
            self.encap = tokens[2] if len(tokens) > 2 and tokens[1] == "type" else "unknown"

    def build(self) -> XfrmState:
        number = self.fields.get("proto_line", str(self.line))
        if "proto" not in self.fields:
            raise XfrmError(f"line {self.line}: a state without its `proto` line")
        try:
            spi = _number(self.fields.get("spi", "0"), 16)
        except ValueError:
            raise XfrmError(f"line {number}: cannot read the SPI") from None
        return XfrmState(self.line, self.src, self.dst, self.fields["proto"], spi,
                         self.fields.get("mode", ""), tuple(self.algorithms),
                         frozenset(self.flags), self.encap, self.event)


def _address(number: int, text: str) -> str:
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        raise XfrmError(f"line {number}: not an address after src/dst") from None


def parse_states(text: str) -> list[XfrmState]:
    """Every state in `ip xfrm state` output (plain, -s, -o, or `ip xfrm monitor`)."""
    states: list[XfrmState] = []
    current: _Builder | None = None
    for number, line in _lines(text):
        if not line[0].isspace():                # column 0: the next object begins
            if current is not None:
                states.append(current.build())
            tokens = line.split()
            event = tokens.pop(0) if tokens[0] in STATE_EVENTS else None
            if (len(tokens) == 4 and tokens[0] == "src" and tokens[2] == "dst"
                    and "/" not in tokens[1] + tokens[3]):     # a policy's have a /prefix
                current = _Builder(number, _address(number, tokens[1]),
                                   _address(number, tokens[3]), event)
            else:
                current = None                   # a policy, an acquire, a flush: not ours
        elif current is not None:
            current.add(number, line.split())
    if current is not None:
        states.append(current.build())
    return states


def read_kernel_states(netns: str | None = None) -> str:
    """The text of `ip xfrm state` (in network namespace `netns`), run here. It holds keys:
    it is parsed and dropped, never logged."""
    argv = [IP, *(["-n", netns] if netns else []), "xfrm", "state"]
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=30,
                              stdin=subprocess.DEVNULL)
    except FileNotFoundError:
        raise UserError("ip not found: install iproute2") from None
    except subprocess.TimeoutExpired:
        raise UserError(f"`{' '.join(argv)}` did not answer within 30 s") from None
    if proc.returncode != 0:
        reason = next((line.strip() for line in proc.stderr.splitlines() if line.strip()),
                      f"exit code {proc.returncode}")
        if "Operation not permitted" in reason:
            reason += " (reading the kernel's SAs needs root, or CAP_NET_ADMIN)"
        raise UserError(f"`{' '.join(argv)}` failed: {reason[:200]}")
    return proc.stdout


# --- to PROFILE.md ------------------------------------------------------------------------------

def _key(algorithm: Algorithm, profile_name: str) -> Secret:
    assert algorithm.key is not None
    lengths = _esp_key_lengths(profile_name)
    if len(algorithm.key.value) not in lengths:
        want = " or ".join(str(n) for n in lengths)
        raise Unsupported(f"{algorithm.name} key of {len(algorithm.key.value)} octets "
                          f"(PROFILE.md's {profile_name}: {want})")
    return algorithm.key


def _encryption(state: XfrmState) -> tuple[str, Algorithm, bool]:
    """(PROFILE.md encryption, its kernel algorithm, is it an AEAD)."""
    aead, enc = state.algorithm("aead"), state.algorithm("enc")
    if aead is not None and enc is not None:
        raise Unsupported("both `aead` and `enc` on one SA")
    if aead is not None:
        assert aead.bits is not None
        if (aead.name, aead.bits) in AEADS:
            return AEADS[(aead.name, aead.bits)], aead, True
        if any(name == aead.name for name, _ in AEADS):
            raise Unsupported(f"{aead.name} with a {aead.bits}-bit ICV (PROFILE.md's aes-gcm-16 "
                              "has a 128-bit one)")
        raise Unsupported(f"AEAD {_shown(aead.name)} is not in PROFILE.md "
                          f"(it has {', '.join(ESP_ENCRYPTIONS)})")
    if enc is None:
        raise Unsupported("no encryption algorithm")
    if enc.name not in ENCRYPTIONS:
        raise Unsupported(f"encryption {_shown(enc.name)} is not in PROFILE.md "
                          f"(it has {', '.join(ESP_ENCRYPTIONS)})")
    return ENCRYPTIONS[enc.name], enc, False


def _authentication(state: XfrmState) -> tuple[str, Algorithm | None]:
    auth = state.algorithm("auth-trunc", "auth")
    if auth is None:
        return "null", None                      # ESP without integrity (RFC 4303 3.2)
    bits = auth.bits if auth.bits is not None else LINUX_DEFAULT_TRUNCATION.get(auth.name)
    if bits is not None and (auth.name, bits) in AUTHENTICATIONS:
        return AUTHENTICATIONS[(auth.name, bits)], auth
    if any(name == auth.name for name, _ in AUTHENTICATIONS):
        hint = (" (Linux's default for `auth`: add it with `auth-trunc 'hmac(sha256)' KEY 128`)"
                if auth.name == "hmac(sha256)" and bits == 96 else "")
        raise Unsupported(f"{auth.name} truncated to {bits} bits is not in PROFILE.md "
                          f"(it has {', '.join(ESP_AUTHENTICATIONS)}){hint}")
    raise Unsupported(f"authentication {_shown(auth.name)} is not in PROFILE.md "
                      f"(it has {', '.join(ESP_AUTHENTICATIONS)})")


def to_esp_sa(state: XfrmState) -> EspSa:
    """The [[esp_sa]] for one kernel ESP state, or Unsupported saying why there is none."""
    if ipaddress.ip_address(state.src).version != 6 or ipaddress.ip_address(state.dst).version != 6:
        raise Unsupported("an IPv4 SA (PROFILE.md's SAs are IPv6)")
    if not 256 <= state.spi < 1 << 32:
        raise Unsupported("SPI below 256 is reserved (RFC 4303 2.1)")
    if state.mode not in MODES:
        raise Unsupported(f"mode {state.mode or '?'} (ESP in transport or tunnel mode only)")
    if state.encap is not None:
        raise Unsupported(f"UDP-encapsulated ({state.encap}, RFC 3948): mip6mon reads ESP "
                          "right after IPv6")
    if "esn" in state.flags:
        raise Unsupported("extended sequence numbers (flag esn): the ICV covers 32 bits of "
                          "sequence number that are not on the wire (RFC 4303 2.2.1), "
                          "PROFILE.md's SAs have none")
    if any(a.key is None for a in state.algorithms):
        raise Unsupported("its keys are hidden (`ip xfrm state ... nokeys`): save the output "
                          "without nokeys")
    encryption, enc, aead = _encryption(state)
    authentication, auth = _authentication(state)
    if aead and auth is not None:
        raise Unsupported("an AEAD with a separate authentication algorithm")
    return EspSa(
        spi=state.spi, src=state.src, dst=state.dst,
        encryption=encryption, encryption_key=_key(enc, encryption),
        authentication=authentication,
        authentication_key=_key(auth, authentication) if auth else Secret(b""))


@dataclass(frozen=True, slots=True)
class Selection:
    """What an `ip xfrm state` text holds for the keyring."""
    sas: tuple[tuple[XfrmState, EspSa], ...]            # ESP SAs PROFILE.md can express
    unsupported: tuple[tuple[XfrmState, str], ...]      # ESP SAs it cannot, and why
    other: tuple[XfrmState, ...]                        # not ESP (route2, hao, ah, comp, ...)


def select(states: list[XfrmState]) -> Selection:
    sas, unsupported, other = [], [], []
    for state in states:
        if state.proto != "esp" or state.event in ("Deleted", "Expired"):
            other.append(state)
            continue
        if state.spi == 0 and not state.algorithms:   # larval: an acquire not yet answered
            other.append(state)
            continue
        try:
            sas.append((state, to_esp_sa(state)))
        except Unsupported as why:
            unsupported.append((state, str(why)))
    return Selection(tuple(sas), tuple(unsupported), tuple(other))
