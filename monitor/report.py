"""`mip6mon report`: one pass over a capture through both analyzers, as JSON or text.

This module only assembles; the keyed analyzer (monitor.keyed), the attacker (monitor.attacker)
and the privacy score (monitor.privacy) own what their sections mean.
"""
from __future__ import annotations

import json
import sys
from collections import Counter
from dataclasses import dataclass, field

from dissectors.accounting import Accounting
from dissectors.events import PacketEvent
from dissectors.protocol import MH_NAMES
from keys.errors import EXIT_INCOMPLETE
from keys.keyring import Keyring, load_keyring
from monitor.attacker import AttackerAnalyzer, attacker_text
from monitor.keyed import KeyedAnalyzer, keyed_text
from monitor.privacy import privacy_score, privacy_text
from monitor.sources import PcapSource
from monitor.stream import EventStream


@dataclass
class MessageCounter:
    """Addon: Mobility Header messages by type, as tshark counts them (malformed included)."""
    counts: Counter = field(default_factory=Counter)

    def packet(self, event: PacketEvent) -> None:
        if event.mobility is not None:
            self.counts[event.mobility.name] += 1

    def as_dict(self) -> dict:
        return {name: self.counts.get(name, 0) for name in MH_NAMES.values()}


@dataclass
class Analysis:
    accounting: Accounting
    messages: MessageCounter
    keyed: KeyedAnalyzer
    attacker: AttackerAnalyzer


def analyse(capture: str, keyring: Keyring | None, vantage: str = "all") -> Analysis:
    source = PcapSource(capture, keyring=keyring)
    messages, keyed, attacker = MessageCounter(), KeyedAnalyzer(keyring), AttackerAnalyzer(vantage)
    accounting = EventStream(source, [messages, keyed, attacker]).run()
    return Analysis(accounting, messages, keyed, attacker)


def capture_section(acc: Accounting) -> dict:
    """The report's `capture` section: where every frame went (the dashboard's report.json
    carries the same)."""
    return {"packets": acc.read, "mobility_packets": acc.analysed + acc.malformed,
            "malformed": acc.malformed, "filtered": acc.filtered,
            "dropped": acc.dropped, "esp_decrypted": acc.esp_decrypted,
            "esp_undecrypted": acc.esp_undecrypted,
            # a script cannot miss a capture that was not read to its end (issue 13)
            "complete": acc.incomplete is None,
            "incomplete_reason": acc.incomplete,
            # why (dissectors.events.UNDECRYPTED) -> ESP headers
            "esp_undecrypted_reasons": dict(sorted(acc.esp_undecrypted_reasons.items())),
            # filtered frames the dissector could not see into, by why -> frames
            "filtered_unwalked": dict(sorted(acc.unwalked.items()))}


def build_report(analysis: Analysis) -> dict:
    report = {
        "capture": capture_section(analysis.accounting),
        "messages": analysis.messages.as_dict(),
    }
    report.update(analysis.keyed.report())      # home_bindings, correspondent_bindings, findings
    report["attacker"] = analysis.attacker.report()
    report["privacy"] = privacy_score(analysis.attacker, analysis.keyed)
    return report


def _counted(counts: dict[str, int] | None) -> str:
    return f" ({', '.join(f'{why}: {n}' for why, n in counts.items())})" if counts else ""


def render_text(report: dict) -> str:
    cap = report["capture"]
    lines = [f"capture: {cap['packets']} packets, {cap['mobility_packets']} mobility, "
             f"{cap['malformed']} malformed, {cap['filtered']} filtered, {cap['dropped']} dropped, "
             f"ESP {cap['esp_decrypted']} decrypted / {cap['esp_undecrypted']} not"
             + _counted(cap.get("esp_undecrypted_reasons")),
             "messages: " + " ".join(f"{k}={v}" for k, v in report["messages"].items())]
    if cap.get("filtered_unwalked"):
        lines.insert(1, "filtered without a look inside:" + _counted(cap["filtered_unwalked"]))
    if not cap.get("complete", True):
        lines.insert(1, f"INCOMPLETE: {cap['incomplete_reason']}")
    return "\n".join(lines + [keyed_text(report), attacker_text(report), privacy_text(report)])


def command_report(args) -> int:
    keyring = (load_keyring(args.keys, getattr(args, "allow_insecure_keyring", False))
               if args.keys else None)
    report = build_report(analyse(args.capture, keyring, args.vantage))
    if args.format == "json":
        # the encoder's chunks written a few thousand at a time: json.dump writes each of a
        # 200,000-packet report's ~350,000 chunks on its own (0.5-0.9 s, profiled), and
        # json.dumps holds all of them at once (a 2,000,000-packet report: 50 MB of text)
        chunks: list[str] = []
        for chunk in json.JSONEncoder(indent=2).iterencode(report):
            chunks.append(chunk)
            if len(chunks) >= 4096:
                sys.stdout.write("".join(chunks))
                chunks.clear()
        sys.stdout.write("".join(chunks) + "\n")
    else:
        sys.stdout.write(render_text(report) + "\n")
    if not report["capture"]["complete"]:
        sys.stdout.flush()
        print(f"mip6mon: incomplete: {args.capture}: {report['capture']['incomplete_reason']}",
              file=sys.stderr)
        return EXIT_INCOMPLETE
    return 0
