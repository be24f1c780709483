"""`mip6mon report`: one pass over a capture through both analyzers, as JSON or text.

This module only assembles; the keyed analyzer (monitor.keyed), the attacker (monitor.attacker)
and the privacy score (monitor.privacy) own what their sections mean.

`build_report` is the whole report (`--detail`; the dashboard's export and the golden reports
hold it). By default `mip6mon report --format json` prints `scaled(report)`: a report that
grows with bindings and kinds, not with packets, so that a 2,000,000-packet one is one a person
can open (issue 10). Each per-frame list becomes a count plus a frame index (the first frame,
as the attacker's trail stops already give it), the attacker's evidence is summed per rule,
and findings keep their first FINDINGS_SHOWN of each kind with every kind's total. Binding
caches, message counts, capture accounting and the privacy score are the same in both.
"""
from __future__ import annotations

import functools
import json
import multiprocessing
import os
import sys
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from itertools import chain
from multiprocessing.connection import Connection
from typing import Any, TextIO

from dissectors.accounting import Accounting
from dissectors.events import PacketEvent
from dissectors.progress import watching
from dissectors.protocol import MH_NAMES, mh_name
from dissectors.supervisor import Forked, spawn_function
from keys.errors import EXIT_INCOMPLETE
from keys.keyring import Keyring, load_keyring
from monitor.attacker import AttackerAnalyzer, attacker_text
from monitor.engines import DEFAULT_ENGINE, pcap_source, source_probe
from monitor.keyed import KeyedAnalyzer, keyed_text
from monitor.privacy import privacy_score, privacy_text
from monitor.report_attacker import Forward, KeyedTruth, scaled_attacker, scaled_attacker_of
from monitor.stream import EventStream, batch_collector


@dataclass
class MessageCounter:
    """Addon: Mobility Header messages by type, as tshark counts them (malformed included)."""
    by_type: Counter = field(default_factory=Counter)   # MH type number -> messages

    def packet(self, event: PacketEvent) -> None:
        self.packets((event,))

    def packets(self, events: Iterable[PacketEvent]) -> None:
        """packet() for each of `events` (a batch run gives a batch at once: counted in C)."""
        self.by_type.update(event.mobility.mh_type for event in events   # named once, in
                            if event.mobility is not None)                # `counts`

    @property
    def counts(self) -> Counter:
        """Messages by type name ("BU", "MH9")."""
        return Counter({mh_name(mh_type): n for mh_type, n in self.by_type.items()})

    def as_dict(self) -> dict:
        """Every RFC 6275 type (0 when absent), then any other type seen ("MH9"): nothing
        read is left out of the count."""
        counts = self.counts
        known = {name: counts.get(name, 0) for name in MH_NAMES.values()}
        return known | {name: n for name, n in sorted(counts.items()) if name not in known}


@dataclass
class Analysis:
    accounting: Accounting
    messages: MessageCounter
    keyed: KeyedAnalyzer
    attacker: AttackerAnalyzer


def analyse(capture: str, keyring: Keyring | None, vantage: str = "all",
            notes: bool = True, engine: str = DEFAULT_ENGINE,
            progress: str | None = None) -> Analysis:
    """One pass; `notes=False` keeps no per-frame annotations (a report never shows them);
    `engine`: monitor.engines.ENGINES; `progress`: the label of a bar on stderr (a terminal
    only)."""
    source = pcap_source(capture, keyring, engine)
    messages, keyed, attacker = (MessageCounter(), KeyedAnalyzer(keyring, notes=notes),
                                 AttackerAnalyzer(vantage))
    stream = EventStream(source, [messages, keyed, attacker])
    if progress is None:
        accounting = stream.run()
    else:
        with watching(source_probe(source), progress):
            accounting = stream.run()
    return Analysis(accounting, messages, keyed, attacker)


TWO_PROCESSES_BYTES = 4 << 20   # smaller captures take a second or two: no second process


def two_processes(capture: str) -> bool:
    """Whether `report` runs the attacker in a process of its own beside the keyed analyzer
    (issue 10: at 100 % mobility one core cannot keep up with tshark): two cores or more (the
    events' trip between the processes costs a few percent more CPU in all) and a capture of
    TWO_PROCESSES_BYTES or more (the second interpreter's start, about 0.3 s, is not worth it
    below). MIP6MON_ONE_PROCESS=1: one process; =0: two whatever the capture's size."""
    forced = os.environ.get("MIP6MON_ONE_PROCESS")
    if forced == "1" or (os.cpu_count() or 1) < 2:
        return False
    try:
        return forced == "0" or os.path.getsize(capture) >= TWO_PROCESSES_BYTES
    except OSError:
        return False       # the source says what is wrong with it, in one line


class AttackerProcessEnded(Exception):
    """The attacker's process ended without its sections (killed, or failed): `command_report`
    analyses the capture again in one process rather than print a partial report (issue 13)."""


def _exec_attacker(events: int, answers: int, vantage: str, detail: bool) -> None:
    """In the supervised child: become `python -m monitor.report_attacker` on the two pipe
    ends (a fresh interpreter with the attacker's modules only: the issue sums the memory of
    every process, and a fork would carry all of this one's)."""
    os.set_inheritable(events, True)
    os.set_inheritable(answers, True)
    os.execv(sys.executable, [sys.executable, "-m", "monitor.report_attacker", str(events),
                              str(answers), vantage, "1" if detail else "0"])


@dataclass
class AttackerProcess:
    """The attacker's process of report_in_two_processes and its two pipe ends: this one's
    events go out on `events`, its answer comes back on `answers`. `start` it as soon as
    `report` knows it runs one (`command_report`, before the keyring is read and the capture
    opened): its interpreter's start-up (a tenth of a second or two) runs beside this one's,
    where a process started with the pass left the pass blocked on a full pipe until then."""
    child: Forked
    events: Connection
    answers: Connection

    @classmethod
    def start(cls, vantage: str, detail: bool) -> AttackerProcess:
        events_in, events_out = multiprocessing.Pipe(duplex=False)
        answers_in, answers_out = multiprocessing.Pipe(duplex=False)
        # supervised (dissectors.supervisor): it dies with this process, Ctrl-C is this one's
        child = spawn_function("attacker", _exec_attacker, (events_in.fileno(),
                                                            answers_out.fileno(), vantage,
                                                            detail))
        events_in.close()
        answers_out.close()
        return cls(child, events_out, answers_in)

    def close(self, at_once: bool = False) -> None:
        """The pipes closed (the process ends at their end of file) and the process reaped;
        `at_once`: ended now (nothing was sent to it: the keyring or the capture failed)."""
        self.events.close()
        self.answers.close()
        if at_once or self.child.wait(5) is None:
            self.child.stop(grace=1.0)


def report_in_two_processes(capture: str, keyring: Keyring | None, vantage: str = "all",
                            detail: bool = False, progress: str | None = None,
                            engine: str = DEFAULT_ENGINE,
                            printer: ReportPrinter | None = None,
                            attacker: AttackerProcess | None = None) -> dict:
    """`build_report(analyse(...))` (scaled unless `detail`) with the attacker in a process of
    its own fed the events of this one (monitor.report_attacker), so the keyed and attacker
    analyses run on two cores; the same report as one process gives
    (tests/monitor/test_report_parallel.py). `printer` is given this process's sections
    while the attacker's process finishes (ReportPrinter.prepare), and prints the report
    once it is whole, before that process is reaped: its interpreter's exit frees every
    object it built (tenths of a second at 200,000 packets), which printing need not wait
    for. `attacker`: that process, started already for `vantage` and `detail` (closed here
    whatever happens)."""
    try:
        source = pcap_source(capture, keyring, engine)   # a bad file fails here, in one line
    except BaseException:
        if attacker is not None:
            attacker.close(at_once=True)
        raise
    if attacker is None:
        attacker = AttackerProcess.start(vantage, detail)
    child, events_out, answers_in = attacker.child, attacker.events, attacker.answers
    try:
        messages, keyed = MessageCounter(), KeyedAnalyzer(keyring, notes=False)
        stream = EventStream(source, [messages, keyed, Forward(events_out)])
        try:
            if progress is None:
                accounting = stream.run()
            else:
                with watching(source_probe(source), progress):
                    accounting = stream.run()
            events_out.send(KeyedTruth.of(keyed))
            # this process's sections while the attacker's finishes its last batches and its
            # after-pass (the privacy score waits for the truth just sent): off the wall clock
            report = {"capture": capture_section(accounting), "messages": messages.as_dict()}
            report.update(keyed.report())
            findings = None if detail else scaled_findings(report["findings"])
            if printer is not None:
                printer.prepare(report if findings is None
                                else scaled(report, attacker_scaled=True, findings=findings))
            answer = answers_in.recv()
        except (BrokenPipeError, EOFError):
            answer = None
        if answer is None or answer[0] != "ok":
            if answer is not None:
                raise AttackerProcessEnded(f"the attacker's process failed: {answer[1]}")
            raise AttackerProcessEnded(f"the attacker's process {child.how_it_ended()}")
        _, report["attacker"], report["privacy"] = answer
        if findings is not None:
            report = scaled(report, attacker_scaled=True, findings=findings)
        if printer is not None:
            printer.print(report)
        return report
    finally:
        attacker.close()


def capture_section(acc: Accounting) -> dict:
    """The report's `capture` section: where every frame went (the dashboard's report.json
    carries the same)."""
    return {"packets": acc.read, "mobility_packets": acc.analysed + acc.malformed,
            "malformed": acc.malformed, "filtered": acc.filtered,
            # read and never analysed, plus what the kernel dropped before dumpcap read it
            # (its pcapng statistics)
            "dropped": acc.dropped + acc.kernel_dropped,
            "esp_decrypted": acc.esp_decrypted, "esp_undecrypted": acc.esp_undecrypted,
            # a script cannot miss a capture that was not read to its end (issue 13)
            "complete": acc.incomplete is None,
            "incomplete_reason": acc.incomplete,
            # why (dissectors.events.UNDECRYPTED) -> ESP headers
            "esp_undecrypted_reasons": dict(sorted(acc.esp_undecrypted_reasons.items())),
            # filtered frames the dissector could not see into, by why -> frames
            "filtered_unwalked": dict(sorted(acc.unwalked.items()))}


def build_report(analysis: Analysis, scaled_attacker: bool = False) -> dict:
    """The whole report; `scaled_attacker`: its attacker section in its scaled form already
    (what `scaled(report, attacker_scaled=True)` expects: never the whole section held)."""
    report = {
        "capture": capture_section(analysis.accounting),
        "messages": analysis.messages.as_dict(),
    }
    report.update(analysis.keyed.report())      # home_bindings, correspondent_bindings, findings
    report["attacker"] = (scaled_attacker_of(analysis.attacker) if scaled_attacker
                          else analysis.attacker.report())
    report["privacy"] = privacy_score(analysis.attacker, analysis.keyed)
    return report


FINDINGS_SHOWN = 100          # scaled: findings listed per kind (every kind's total is given)
ScaledFindings = tuple[list[dict], dict[str, int]]


def scaled_findings(findings: list[dict]) -> ScaledFindings:
    """The scaled report's `findings` (the first FINDINGS_SHOWN of each kind) and
    `finding_counts` (every kind's total)."""
    kinds = Counter(f["kind"] for f in findings)
    shown: Counter = Counter()
    first = []
    for finding in findings:
        shown[finding["kind"]] += 1
        if shown[finding["kind"]] <= FINDINGS_SHOWN:
            first.append(finding)
    return first, dict(sorted(kinds.items()))


def scaled(report: dict, attacker_scaled: bool = False,
           findings: ScaledFindings | None = None) -> dict:
    """The report without its per-frame lists (module docstring); `report` is not changed.
    `attacker_scaled`: its attacker section is scaled already (scaled_attacker); `findings`:
    scaled_findings(report["findings"]) made already."""
    out = dict(report)
    out["findings"], out["finding_counts"] = findings or scaled_findings(report["findings"])
    if not attacker_scaled:
        out["attacker"] = scaled_attacker(report["attacker"])
    return out


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


# --- JSON as json.dumps(indent=2) writes it, a container of scalars at a time in C ------------

_SCALARS = (str, int, float, type(None))     # bool is an int
_scalar_text = json.JSONEncoder().encode     # one scalar: C (encode_basestring_ascii, float repr)


@functools.cache
def _flat_encoder(level: int) -> Callable[[Any], str]:
    """json's C encoder (used only without `indent`) with the separators `indent=2` puts
    between the items of a container at depth `level`: a container of scalars, encoded by it
    in one call, reads exactly as the pure-Python indented encoder writes it item by item."""
    return json.JSONEncoder(separators=(",\n" + "  " * (level + 1), ": ")).encode


_SCALAR_TYPES = frozenset(map(type, ("", 0, 0.0, True, None)))   # _SCALARS' own types


def _flat(container: dict | list | tuple) -> bool:
    """A container of scalars (their exact types checked in C first: what a report holds)."""
    values = container.values() if isinstance(container, dict) else container
    return _SCALAR_TYPES.issuperset(map(type, values)) or \
        all(isinstance(v, _SCALARS) for v in values)


def _flat_records(items: list | tuple) -> bool:
    """A list of non-empty dicts of scalars (a report's 50,000 correspondent bindings: checked
    in C as one column of values when they are dicts of _SCALARS' own types, where a check
    per binding took a third of the keyed sections' JSON)."""
    if (set(map(type, items)) == {dict} and all(items)
            and _SCALAR_TYPES.issuperset(map(type, chain.from_iterable(map(dict.values,
                                                                            items))))):
        return True
    return all(isinstance(item, dict) and item and _flat(item) for item in items)


def _key_text(key: Any) -> str:
    """A dict key as json writes it (str, or float, bool, None or int in that order)."""
    if isinstance(key, str):
        return _scalar_text(key)
    if isinstance(key, float | bool) or key is None:
        return '"' + _scalar_text(key) + '"'
    if isinstance(key, int):
        return '"' + int.__repr__(key) + '"'
    raise TypeError(f"keys must be str, int, float, bool or None, not {type(key).__name__}")


# a dict's key -> (its value, that value's text as an item of the dict: json_item_text)
EncodedItems = dict[Any, tuple[Any, str]]


def json_chunks(value: Any, level: int = 0,
                encoded: EncodedItems | None = None) -> Iterator[str]:
    """The text of `json.dumps(value, indent=2)`, in pieces. json's indented encoder is the
    pure-Python one, one function call and one piece per item: a report of 200,000 packets
    at 100 % mobility (50,000 correspondent bindings) took 0.6-1 s of the keyed process's CPU
    (issue 10, profiled). Here every container whose items are scalars (a binding, a finding)
    is one call to the C encoder (_flat_encoder); only containers of containers are walked in
    Python. `encoded`: items of the dict `value` whose text was made already (an item is
    written from it only while it is the very object encoded). tests/monitor/
    test_report_json.py: byte-identical to json.dumps."""
    if isinstance(value, _SCALARS):
        yield _scalar_text(value)
        return
    if not isinstance(value, dict | list | tuple):
        yield _scalar_text(value)           # json's own TypeError for what it cannot encode
        return
    if not value:
        yield "{}" if isinstance(value, dict) else "[]"
        return
    inner, outer = "\n" + "  " * (level + 1), "\n" + "  " * level
    if _flat(value):
        text = _flat_encoder(level)(value)
        yield text[0] + inner + text[1:-1] + outer + text[-1]
        return
    if isinstance(value, list | tuple) and _flat_records(value):
        yield from _records(value, level)
        return
    items = value.items() if isinstance(value, dict) else enumerate(value)
    keyed = isinstance(value, dict)
    child = _flat_encoder(level + 1)
    deeper, after = "\n" + "  " * (level + 2), inner
    yield "{" if keyed else "["
    separator = inner
    for key, item in items:
        yield separator + (_key_text(key) + ": " if keyed else "")
        separator = "," + inner
        made = encoded.get(key) if encoded else None
        if made is not None and made[0] is item:
            yield made[1]
        elif isinstance(item, dict | list | tuple) and item and _flat(item):
            # the common case (a list of bindings) without a generator per item
            text = child(item)
            yield text[0] + deeper + text[1:-1] + after + text[-1]
        else:
            yield from json_chunks(item, level + 1)
    yield outer + ("}" if keyed else "]")


def json_item_text(item: Any) -> str:
    """`item`'s text as a value of a top-level dict (what json_chunks writes for it there)."""
    return "".join(json_chunks(item, 1))


RECORDS_AT_ONCE = 256


def _records(records: list | tuple, level: int) -> Iterator[str]:
    """A list of non-empty dicts of scalars (bindings, findings), RECORDS_AT_ONCE to a C call:
    the encoder's item separator carries the indent of the dicts' items, and the one between
    two dicts, "}" + separator + "{", is rewritten to the list's. It can stand nowhere else:
    a "}" outside a string only closes one of these dicts, and json escapes every newline
    inside a string."""
    inner, deeper = "\n" + "  " * (level + 1), "\n" + "  " * (level + 2)
    encode = _flat_encoder(level + 1)
    between = "}," + deeper + "{"
    indented = inner + "}," + inner + "{" + deeper
    yield "["
    for start in range(0, len(records), RECORDS_AT_ONCE):
        text = encode(records[start:start + RECORDS_AT_ONCE])   # "[{...}," + deeper + "{...}]"
        yield ("," if start else "") + inner + "{" + deeper + \
            text[2:-2].replace(between, indented) + inner + "}"
    yield "\n" + "  " * level + "]"


WRITE_CHARS = 1 << 16


def write_json(value: Any, out: TextIO, encoded: EncodedItems | None = None) -> None:
    """`value` as json.dumps(value, indent=2) and a newline, written WRITE_CHARS or so at a
    time (a 2,000,000-packet report is tens of MB of text: never held whole, nor written a
    small piece per call); `encoded`: as json_chunks's."""
    chunks: list[str] = []
    held = 0
    for chunk in json_chunks(value, 0, encoded):
        chunks.append(chunk)
        held += len(chunk)
        if held >= WRITE_CHARS:
            out.write("".join(chunks))
            chunks.clear()
            held = 0
    out.write("".join(chunks) + "\n")


def command_report(args) -> int:
    detail = getattr(args, "detail", False) or args.format != "json"
    # the attacker's process first, its start-up beside the keyring's and the capture's
    attacker = AttackerProcess.start(args.vantage, detail) if two_processes(args.capture) \
        else None
    try:
        keyring = (load_keyring(args.keys, getattr(args, "allow_insecure_keyring", False))
                   if args.keys else None)
    except BaseException:
        if attacker is not None:
            attacker.close(at_once=True)
        raise
    with batch_collector():
        return _command_report(args, keyring, detail, attacker)


def _command_report(args, keyring: Keyring | None, detail: bool,
                    attacker: AttackerProcess | None) -> int:
    engine = getattr(args, "engine", DEFAULT_ENGINE)
    progress = f"report {os.path.basename(args.capture)}"
    printer = ReportPrinter(args.format)
    report = None
    if attacker is not None:
        try:
            report = report_in_two_processes(args.capture, keyring, args.vantage, detail,
                                             progress, engine, printer, attacker)
        except AttackerProcessEnded as e:
            print(f"mip6mon: {args.capture}: {e}; analysing it again in one process",
                  file=sys.stderr)
    if report is None:
        report = build_report(analyse(args.capture, keyring, args.vantage, notes=False,
                                      engine=engine, progress=progress),
                              scaled_attacker=not detail)
        printer.print(report if detail else scaled(report, attacker_scaled=True))
    if not report["capture"]["complete"]:
        sys.stdout.flush()
        print(f"mip6mon: incomplete: {args.capture}: {report['capture']['incomplete_reason']}",
              file=sys.stderr)
        return EXIT_INCOMPLETE
    return 0


class ReportPrinter:
    """`mip6mon report`'s output on stdout as `--format` says: JSON (scaled unless --detail),
    or text (from the whole report: `--format text` implies --detail). `prepare(sections)`:
    sections of the report made before the rest (report_in_two_processes: the keyed ones,
    while the attacker's process finishes), their JSON made then too."""

    def __init__(self, form: str):
        self.form = form
        self._encoded: EncodedItems = {}

    def prepare(self, sections: dict) -> None:
        if self.form == "json":
            self._encoded = {key: (value, json_item_text(value))
                             for key, value in sections.items()}

    def print(self, report: dict) -> None:
        if self.form == "json":
            write_json(report, sys.stdout, self._encoded)
        else:
            sys.stdout.write(render_text(report) + "\n")
        self._encoded = {}
