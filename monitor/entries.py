"""The entries sensors publish on a Redis Stream and `serve` reads: declared once, here.

Every entry is a flat map of short field names (Redis Stream entries are field/value pairs);
`FIELDS` says what each one is and in which kinds of entry it appears. Three kinds:
- `event`: one neutral event (dissectors.events) as the sensor's keyless dissector made it
  (ESP still encrypted: no key ever leaves the analyzer), with the canonical digest of its
  packet (dissectors.digest) for merging what two sensors saw;
- `beat`: the sensor is alive; its counters, and (when every event it took has been
  published) its watermark: no event with an earlier capture time will follow;
- `bye`: the sensor has ended (a file read to its end, or stopped); its last counters.

Events are encoded as `dissectors.events.to_dict` JSON without the fields that hold their
default value (`from_dict` restores those): the demo's events shrink from 640 to 340 octets
on average, so a stream of a million events costs Redis about 0.4 GB instead of 0.7. JSON rather
than pickle because an entry is untrusted input to serve (anyone with write access to the
stream writes it): decoding never runs code, and `decode` checks every field's type and every
address before an analyzer sees it, so a bad entry is counted, never a crash.
"""
from __future__ import annotations

import dataclasses
import ipaddress
import json
import math
import types
import typing
from dataclasses import dataclass
from typing import Any

from dissectors import events as ev
from dissectors.events import PacketEvent, from_dict, to_dict
from monitor.placement import VANTAGES

STREAM = "mip6mon:events"       # the stream's key (--stream)
GROUP = "mip6mon-serve"         # serve's consumer group (--group)
EVENT, BEAT, BYE = "event", "beat", "bye"
KINDS = (EVENT, BEAT, BYE)
MAX_VALUE = 1 << 20             # octets per field value: a jumbo frame's ESP payload fits

# field -> (what it is, the kinds of entry that carry it)
FIELDS = {
    "k": ("kind: event, beat or bye", KINDS),
    "s": ("the sensor's name (--name)", KINDS),
    "r": ("run: random, one per sensor process (its entry numbers start again)", KINDS),
    "v": ("vantage point the sensor is at: mn-ha, ha-cn, mn-cn or all", KINDS),
    "n": ("entry number within the run, from 1: serve skips a number it has seen (a resend "
          "after a failure) and counts a gap as entries lost", KINDS),
    "t": ("sensor's clock when it published the entry (epoch s): serve's lag", KINDS),
    "e": ("the event: compact to_dict JSON", (EVENT,)),
    "d": ("canonical digest of the event's packet, hex; empty when it has no IPv6 header",
          (EVENT,)),
    "w": ("watermark (capture clock, epoch s): every event captured before it is published; "
          "empty when events wait in the sensor's buffer", (BEAT, BYE)),
    "st": ("the sensor's status: JSON of SENSOR_STATUS", (BEAT, BYE)),
}
# what a sensor says of itself in `st` (a number each, but state, error, source)
SENSOR_STATUS = {
    "state": "capturing, reading, done, stopped, error",
    "error": "why it stopped, or null",
    "source": "interface or capture file",
    "read": "frames its source read",
    "filtered": "frames that are not mobility traffic",
    "unwalked": "of those, frames the dissector could not see into, by why (an object)",
    "malformed": "frames malformed with no IPv6 header to make an event of",
    "dropped": "frames lost before the dissector (kernel drops dumpcap reported)",
    "events": "events its dissector made",
    "published": "events Redis has taken",
    "buffered": "events waiting in its buffer (Redis unreachable or slow)",
    "buffer_dropped": "events dropped because its buffer was full",
    "outages": "times Redis became unreachable",
    "down_since": "epoch s Redis is unreachable since, or null",
}
ADDRESS_FIELDS = frozenset({"src", "dst", "home_address", "routing_home_address",
                            "pseudo_home_address", "alternate_care_of_address",
                            "error_home_address"})
_EVENT_CLASSES = (ev.PacketEvent, ev.IPv6Layer, ev.Esp, ev.MobilityMessage, ev.MobilePrefix,
                  ev.Transport)
_HINTS = {cls: typing.get_type_hints(cls) for cls in _EVENT_CLASSES}


class BadEntry(ValueError):
    """An entry serve cannot use (counted and acknowledged, never analysed)."""


@dataclass(frozen=True, slots=True)
class Entry:
    kind: str
    sensor: str
    run: str
    vantage: str
    number: int
    sent: float
    event: PacketEvent | None = None
    digest: bytes | None = None
    watermark: float | None = None
    status: dict[str, Any] | None = None


# --- events -------------------------------------------------------------------------------

def _strip(value: Any, encoded: dict[str, Any]) -> dict[str, Any]:
    """`encoded` (to_dict of `value`) without the fields whose value is their default."""
    for f in dataclasses.fields(value):
        item = getattr(value, f.name)
        if f.default is not dataclasses.MISSING and item == f.default:
            del encoded[f.name]
        elif dataclasses.is_dataclass(item):
            _strip(item, encoded[f.name])
        elif isinstance(item, tuple) and item and dataclasses.is_dataclass(item[0]):
            for sub, sub_encoded in zip(item, encoded[f.name], strict=True):
                _strip(sub, sub_encoded)
    return encoded


def encode_event(event: PacketEvent) -> str:
    return json.dumps(_strip(event, to_dict(event)), separators=(",", ":"))


def _address(name: str, value: str) -> None:
    try:
        ipaddress.IPv6Address(value)
    except ValueError:
        raise BadEntry(f"{name} is not an IPv6 address") from None


def _check(value: Any, hint: Any, name: str) -> None:
    """`value` is of type `hint` (the event dataclasses' annotations), recursively."""
    origin = typing.get_origin(hint)
    if origin in (types.UnionType, typing.Union):
        if value is None and type(None) in typing.get_args(hint):
            return
        hint = next(a for a in typing.get_args(hint) if a is not type(None))
        origin = typing.get_origin(hint)
    if origin is tuple or origin is frozenset:
        if not isinstance(value, origin):
            raise BadEntry(f"{name} is not a list")
        item = typing.get_args(hint)[0]
        for sub in value:
            _check(sub, item, name)
        return
    if hint in _HINTS:
        if not isinstance(value, hint):
            raise BadEntry(f"{name} is not an object")
        for field, sub_hint in _HINTS[hint].items():
            _check(getattr(value, field), sub_hint, field)
        return
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) \
                or not math.isfinite(value):
            raise BadEntry(f"{name} is not a finite number")
        return
    if not isinstance(value, hint) or (hint is int and isinstance(value, bool)):
        raise BadEntry(f"{name} is not {hint.__name__}")
    if hint is int and not 0 <= value < 1 << 64:
        raise BadEntry(f"{name} is out of range")
    if name in ADDRESS_FIELDS and isinstance(value, str):
        _address(name, value)


def decode_event(text: str) -> PacketEvent:
    """The event of an `e` field; BadEntry (one line) unless it is a well-typed event."""
    try:
        data = json.loads(text)
        if not isinstance(data, dict):
            raise BadEntry("the event is not a JSON object")
        event = from_dict(data)
    except BadEntry:
        raise
    except (ValueError, TypeError, KeyError, AttributeError, RecursionError) as exc:
        raise BadEntry(f"the event does not decode: {type(exc).__name__}") from None
    _check(event, PacketEvent, "event")
    if not event.layers:
        raise BadEntry("the event has no IPv6 layer")
    for esp in event.esp_headers():
        # what follows an ESP header is the keyed stage's to read, on serve's side: an event
        # that says otherwise did not come from a keyless sensor
        if esp.decrypted or getattr(esp, "undecrypted", None) or getattr(esp, "node", None):
            raise BadEntry("the event's ESP says it was decrypted: a sensor has no keys")
    if event.prefix_discovery is not None:
        for prefix in event.prefix_discovery.prefixes:
            try:
                ipaddress.IPv6Network(prefix, strict=False)
            except ValueError:
                raise BadEntry("a mobile prefix is not an IPv6 prefix") from None
    return event


# --- entries ------------------------------------------------------------------------------

def event_fields(event_json: str, digest: bytes | None) -> dict[str, str]:
    """The kind-specific fields of an event entry (the sensor adds the common ones)."""
    return {"k": EVENT, "e": event_json, "d": digest.hex() if digest else ""}


def beat_fields(kind: str, watermark: float | None, status: dict[str, Any]) -> dict[str, str]:
    return {"k": kind, "w": "" if watermark is None else repr(watermark),
            "st": json.dumps(status, separators=(",", ":"))}


def _text(fields: dict[bytes, bytes], name: str, required: bool = True) -> str:
    raw = fields.get(name.encode())
    if raw is None:
        if required:
            raise BadEntry(f"no field {name!r}")
        return ""
    if len(raw) > MAX_VALUE:
        raise BadEntry(f"field {name!r} is longer than {MAX_VALUE} octets")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise BadEntry(f"field {name!r} is not UTF-8") from None


def _number(text: str, name: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise BadEntry(f"field {name!r} is not a number") from None
    if not math.isfinite(value):
        raise BadEntry(f"field {name!r} is not finite")
    return value


def _status(text: str) -> dict[str, Any]:
    try:
        data = json.loads(text)
    except ValueError:
        raise BadEntry("field 'st' is not JSON") from None
    if not isinstance(data, dict):
        raise BadEntry("field 'st' is not a JSON object")
    status: dict[str, Any] = {}
    for key in SENSOR_STATUS:
        value = data.get(key)
        if key in ("state", "error", "source"):
            status[key] = value[:300] if isinstance(value, str) else None
        elif key == "unwalked":
            status[key] = {str(k)[:100]: v for k, v in value.items()
                           if isinstance(v, int) and not isinstance(v, bool) and v >= 0} \
                if isinstance(value, dict) else {}
        elif isinstance(value, (int, float)) and not isinstance(value, bool) \
                and math.isfinite(value) and value >= 0:
            status[key] = value
        else:
            status[key] = None if key == "down_since" else 0
    return status


def decode(fields: dict[bytes, bytes]) -> Entry:
    """One stream entry; BadEntry (one line) for anything a sensor would not have written."""
    kind = _text(fields, "k")
    if kind not in KINDS:
        raise BadEntry(f"unknown kind {kind[:20]!r}")
    sensor, run, vantage = _text(fields, "s"), _text(fields, "r"), _text(fields, "v")
    if not sensor or len(sensor) > 100 or not run or len(run) > 64:
        raise BadEntry("no sensor name or run")
    if vantage not in VANTAGES:
        raise BadEntry(f"unknown vantage {vantage[:20]!r}")
    number = _number(_text(fields, "n"), "n")
    if number < 1 or number != int(number):
        raise BadEntry("field 'n' is not a positive integer")
    sent = _number(_text(fields, "t"), "t")
    if kind == EVENT:
        event = decode_event(_text(fields, "e"))
        digest_hex = _text(fields, "d", required=False)
        try:
            digest = bytes.fromhex(digest_hex) if digest_hex else None
        except ValueError:
            raise BadEntry("field 'd' is not hex") from None
        return Entry(kind, sensor, run, vantage, int(number), sent, event=event, digest=digest)
    mark = _text(fields, "w", required=False)
    return Entry(kind, sensor, run, vantage, int(number), sent,
                 watermark=_number(mark, "w") if mark else None,
                 status=_status(_text(fields, "st")))
