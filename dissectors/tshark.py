"""tshark as the dissector: select mobility frames, decrypt ESP, and make PacketEvents.

Design (measured, see benchmarks/bench_report.py and PLATFORM-NOTES):
- tshark runs once, streaming `-T fields` lines (the fastest tshark output, and one line per
  frame so a live frame is delivered at once: no JSON array to close, no pyshark look-ahead).
  The display filter `MOBILITY_FILTER` keeps only mobility-relevant frames, so Python sees
  about one frame in ten of ordinary traffic.
- tshark's fields give what it is the authority for: frame metadata, the MH type (so counts
  are tshark's), expert errors (malformed), the decrypted ESP payloads, the Info column, the
  pcapng comment. The frame's own octets (read beside tshark from the capture, see
  dissectors.capfile) give the per-layer structure and the MH octets (dissectors.wire,
  dissectors.mobility), which tshark's flat field lists cannot attribute to a layer and partly
  hide (option 18, HoTI 'P' flag, the Authenticator's data).
- Every frame is counted: the capture reader counts records, the events are the selected ones,
  the rest is `filtered`.
"""
from __future__ import annotations

import os
import subprocess
import tempfile
import threading
from dataclasses import dataclass
from typing import BinaryIO, Callable, Iterator

from dissectors import capfile, mobility, wire
from dissectors.capfile import Record
from dissectors.espsa import TsharkConfig
from dissectors.events import IPv6Layer, MobilityMessage, PacketEvent
from keys.keyring import Keyring
from monitor.errors import UserError
from monitor.stream import Accounting

TSHARK = "tshark"
DUMPCAP = "dumpcap"

# Mobility-relevant frames (issue 2): MH (not DSMIPv6's UDP 5436, PLATFORM-NOTES), ESP, HAO
# (option 201) and the pseudo home address option 0xFE (PROFILE.md), RH2, Mobile Prefix
# Solicitation/Advertisement, and IPv6-in-IPv6 (reverse tunnels, RFC 6275 10.4.5).
MOBILITY_FILTER = (
    "ipv6 && ((mipv6 && !udp) || esp || ipv6.opt.type == 0xc9 || ipv6.opt.type == 0xfe"
    " || ipv6.routing.type == 2 || icmpv6.type == 146 || icmpv6.type == 147"
    " || ipv6.nxt == 41 || ipv6.hopopts.nxt == 41 || ipv6.dstopts.nxt == 41"
    " || ipv6.routing.nxt == 41)")

# One line per frame; fields separated by 0x1f, occurrences by 0x1e (neither appears in
# tshark's text output of these fields; Info and comments may contain tabs and commas).
SEPARATOR, AGGREGATOR = "\x1f", "\x1e"
FIELDS = ("frame.number", "frame.time_epoch", "frame.len", "frame.protocols", "_ws.col.Info",
          "frame.comment", "_ws.expert.severity", "_ws.expert.message", "mip6.mhtype",
          "esp.protocol", "esp.contained_data", "ipv6.src", "ipv6.dst")
PI_ERROR = 0x00800000          # epan/proto.h expert severity "error": a malformed frame
PATH_COMMENT = "path="          # lab captures: pcapng comment "path=mn-ha" (DESIGN.md)


def tshark_fields_argv(source: list[str], display_filter: str = MOBILITY_FILTER,
                       live: bool = False) -> list[str]:
    argv = [TSHARK, "-n", *source, "-Y", display_filter, "-T", "fields",
            "-E", f"separator={SEPARATOR}", "-E", f"aggregator={AGGREGATOR}", "-E", "quote=n"]
    if live:
        argv.append("-l")            # flush every line: deliver each packet at once
    for f in FIELDS:
        argv += ["-e", f]
    return argv


def _split(value: str) -> list[str]:
    return value.split(AGGREGATOR) if value else []


def make_event(line: str, record: Record | None, sensor: str = "") -> PacketEvent:
    """One tshark fields line (+ the frame's octets) as a PacketEvent. Never raises for
    a frame's content: what cannot be read stays None and the expert error is kept."""
    cols = line.rstrip("\n").split(SEPARATOR)
    cols += [""] * (len(FIELDS) - len(cols))
    (number, epoch, length, protocols, info, comments, severities, messages, mhtypes,
     esp_protos, esp_data, srcs, dsts) = cols[:len(FIELDS)]
    decrypted = []
    for proto, data in zip(_split(esp_protos), _split(esp_data)):
        try:
            decrypted.append((int(proto, 0), bytes.fromhex(data.replace(":", ""))))
        except ValueError:
            break
    walked = wire.walk(record.linktype, record.data, decrypted) if record else wire.Walk()
    layers = tuple(walked.layers)
    if not layers and srcs:
        layers = tuple(IPv6Layer(s, d) for s, d in zip(_split(srcs), _split(dsts)))
    malformed = None
    if walked.mh_truncated:
        # tshark only notes "[Packet size limited during capture]" (no expert error), but the
        # MH fields past the snap length are unknown: count it as malformed, not as analysed
        malformed = "Mobility Header truncated by the capture's snap length"
    for severity, message in zip(_split(severities), _split(messages)):
        if severity.isdigit() and int(severity) >= PI_ERROR:
            malformed = message or "malformed"
            break
    mh = None
    types = _split(mhtypes)
    if types and types[0].isdigit():
        mh_type = int(types[0])
        if walked.mh is not None and len(walked.mh) > 2 and walked.mh[2] == mh_type:
            mh = mobility.parse(mh_type, walked.mh, walked.mh_pseudo, walked.mh_truncated)
        else:
            mh = MobilityMessage(mh_type)
    path = next((c[len(PATH_COMMENT):] for c in _split(comments)
                 if c.startswith(PATH_COMMENT)), None)
    transport = walked.transport if mh is None and walked.prefix is None else None
    return PacketEvent(
        frame=int(number), time=float(epoch or 0), length=int(length or 0), layers=layers,
        mobility=mh, prefix_discovery=walked.prefix, transport=transport, path=path,
        sensor=sensor, protocols=protocols, info=info, malformed=malformed)


class _StderrFile:
    """tshark's stderr, kept in a temporary file (no pipe to fill and block on)."""

    def __init__(self):
        self.file = tempfile.TemporaryFile()

    def text(self) -> str:
        self.file.seek(0)
        return self.file.read().decode("utf-8", "replace")

    def close(self) -> None:
        self.file.close()


def _stderr_problem(text: str) -> str | None:
    """The first line of tshark's stderr that is an error (not the root warning)."""
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith(("Running as user", "Capturing on", "File:")) \
                or "cut short" in line:
            continue
        return line.removeprefix("dumpcap: ").removeprefix("tshark: ")
    return None


def _reap(proc: subprocess.Popen | None, timeout: float = 5.0) -> None:
    if proc is None:
        return
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    for pipe in (proc.stdin, proc.stdout):
        if pipe is not None:
            try:
                pipe.close()
            except OSError:
                pass


def check_capture_file(path: str) -> None:
    """UserError (one line) unless `path` is a readable pcap or pcapng file."""
    try:
        with open(path, "rb") as f:
            next(capfile.records(f, keep_data=False), None)
    except FileNotFoundError:
        raise UserError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise UserError(f"{path}: is a directory, not a capture file") from None
    except PermissionError:
        raise UserError(f"{path}: permission denied") from None
    except capfile.NotACapture:
        raise UserError(f"{path}: not a capture file (pcap or pcapng)") from None
    except OSError as exc:
        raise UserError(f"{path}: cannot read: {exc.strerror}") from None


@dataclass
class _Frames:
    """The capture's records, read in step with tshark's output (file mode)."""
    stream: BinaryIO
    accounting: Accounting

    def __post_init__(self):
        self._records = capfile.records(self.stream)

    def get(self, number: int) -> Record | None:
        for rec in self._records:
            self.accounting.read += 1
            if rec.number == number:
                return rec
            self.accounting.filtered += 1
        return None

    def finish(self) -> None:
        for _ in self._records:
            self.accounting.read += 1
            self.accounting.filtered += 1


class TsharkFile:
    """Dissect a capture file: `events()` yields PacketEvents; `accounting` counts every frame
    (read = all records, filtered = records tshark's filter did not select)."""

    def __init__(self, path: str, keyring: Keyring | None = None, sensor: str = "",
                 accounting: Accounting | None = None):
        self.path = str(path)
        self.sensor = sensor
        self.accounting = accounting or Accounting()
        check_capture_file(self.path)
        self._keyring = keyring
        self._proc: subprocess.Popen | None = None
        self._config: TsharkConfig | None = None
        self._stderr: _StderrFile | None = None

    def events(self) -> Iterator[PacketEvent]:
        self._config = TsharkConfig(self._keyring)
        self._stderr = _StderrFile()
        try:
            self._proc = subprocess.Popen(
                tshark_fields_argv(["-r", self.path]), stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE, stderr=self._stderr.file, env=self._config.env())
        except FileNotFoundError:
            self.close()
            raise UserError("tshark not found: install Wireshark's tshark") from None
        try:
            with open(self.path, "rb") as stream:
                frames = _Frames(stream, self.accounting)
                for raw in self._proc.stdout:
                    line = raw.decode("utf-8", "replace")
                    number = line.split(SEPARATOR, 1)[0]
                    if not number.isdigit():
                        continue
                    yield make_event(line, frames.get(int(number)), self.sensor)
                rc = self._proc.wait()
                frames.finish()
            if rc != 0:
                problem = _stderr_problem(self._stderr.text())
                if problem:
                    raise UserError(f"{self.path}: tshark: {problem}")
        finally:
            self.close()

    def close(self) -> None:
        _reap(self._proc)
        self._proc = None
        if self._config is not None:
            self._config.remove()
            self._config = None
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None


# --- live capture ---------------------------------------------------------------------------

# Default capture filter (BPF, pcap-filter(7)) for live mode. BPF follows only the fixed IPv6
# header's Next Header, so it keeps every IPv6 packet whose first header after the fixed one
# is mobility-related or can carry mobility data:
#   135 Mobility Header, 50 ESP, 51 AH, 41 IPv6-in-IPv6, 60 destination options (HAO, 0xFE),
#   43 routing header (RH2), 0 hop-by-hop (a chain that may continue to the above),
#   ICMPv6 146/147 (byte 40 is the ICMPv6 type when it follows the fixed header).
# tshark's display filter then keeps exactly the mobility frames; the rest are `filtered`.
DEFAULT_BPF = ("ip6 and (ip6[6] == 135 or ip6[6] == 50 or ip6[6] == 51 or ip6[6] == 41"
               " or ip6[6] == 60 or ip6[6] == 43 or ip6[6] == 0"
               " or (ip6[6] == 58 and (ip6[40] == 146 or ip6[40] == 147)))")


class _TeeReader:
    """dumpcap's stdout, read by the record parser; what is read is forwarded to tshark's
    stdin once the record it belongs to has been stored (so tshark never outruns us)."""

    def __init__(self, source: BinaryIO, sink: BinaryIO, started: threading.Event):
        self.source, self.sink, self.pending = source, sink, bytearray()
        self.started = started
        self.sink_open = True

    def read(self, n: int) -> bytes:
        data = self.source.read(n)
        if data:
            self.pending += data
            self.started.set()     # dumpcap wrote its header: the interface is open
        return data

    def flush(self) -> None:
        if self.pending and self.sink_open:
            try:
                self.sink.write(bytes(self.pending))
                self.sink.flush()
            except (OSError, ValueError):
                self.sink_open = False   # tshark is gone (closing): keep counting frames
        self.pending.clear()


class TsharkLive:
    """Live capture: dumpcap -> (this process: count, keep octets) -> tshark -r - -l."""

    def __init__(self, interface: str, keyring: Keyring | None = None, bpf: str | None = None,
                 sensor: str = "", accounting: Accounting | None = None,
                 on_ready: Callable[[], None] | None = None):
        self.interface = interface
        self.bpf = DEFAULT_BPF if bpf is None else bpf
        self.sensor = sensor
        self.accounting = accounting or Accounting()
        self._keyring = keyring
        self._dumpcap: subprocess.Popen | None = None
        self._proc: subprocess.Popen | None = None
        self._config: TsharkConfig | None = None
        self._stderr: _StderrFile | None = None
        self._dump_err: _StderrFile | None = None
        self._records: dict[int, Record] = {}
        self._cond = threading.Condition()
        self._eof = False
        self._closed = False
        self._drops = capfile.DropCounter()
        self._thread: threading.Thread | None = None
        self.ready = threading.Event()     # set when dumpcap has started capturing
        self._yielded = 0

    def start(self) -> None:
        self._config = TsharkConfig(self._keyring)
        self._stderr, self._dump_err = _StderrFile(), _StderrFile()
        argv = [DUMPCAP, "-q", "-i", self.interface, "-w", "-"]   # pcapng by default
        if self.bpf:
            argv += ["-f", self.bpf]
        try:
            self._dumpcap = subprocess.Popen(argv, stdin=subprocess.DEVNULL,
                                             stdout=subprocess.PIPE, stderr=self._dump_err.file,
                                             start_new_session=True)
            self._proc = subprocess.Popen(
                tshark_fields_argv(["-r", "-"], live=True), stdin=subprocess.PIPE,
                stdout=subprocess.PIPE, stderr=self._stderr.file, env=self._config.env())
        except FileNotFoundError as exc:
            self.close()
            raise UserError(f"{exc.filename}: not found: install Wireshark's tshark") from None
        self._thread = threading.Thread(target=self._pump, name="mip6mon-dumpcap", daemon=True)
        self._thread.start()

    def _pump(self) -> None:
        tee = _TeeReader(self._dumpcap.stdout, self._proc.stdin, self.ready)
        try:
            for rec in capfile.records(tee, self._drops):
                with self._cond:
                    self._records[rec.number] = rec
                    self.accounting.read += 1
                    # not (yet) selected by tshark; corrected as events are yielded
                    self.accounting.filtered = self.accounting.read - self._yielded
                    self._cond.notify_all()
                tee.flush()
            tee.flush()
        except (capfile.NotACapture, OSError, ValueError):
            pass
        finally:
            self.accounting.dropped = max(self.accounting.dropped, self._drops.dropped)
            with self._cond:
                self._eof = True
                self._cond.notify_all()
            try:
                self._proc.stdin.close()
            except (OSError, AttributeError):
                pass

    def _take(self, number: int) -> Record | None:
        with self._cond:
            while number not in self._records and not self._eof:
                self._cond.wait(0.5)
            rec = self._records.pop(number, None)
            for old in [n for n in self._records if n < number]:
                del self._records[old]
            return rec

    def events(self) -> Iterator[PacketEvent]:
        if self._proc is None:
            self.start()
        try:
            for raw in self._proc.stdout:
                line = raw.decode("utf-8", "replace")
                number = line.split(SEPARATOR, 1)[0]
                if not number.isdigit():
                    continue
                event = make_event(line, self._take(int(number)), self.sensor)
                with self._cond:
                    self._yielded += 1
                    self.accounting.filtered = max(0, self.accounting.read - self._yielded)
                yield event
            if self._dumpcap is not None and not self._closed:
                try:
                    rc = self._dumpcap.wait(5)
                except subprocess.TimeoutExpired:
                    rc = None
                problem = _stderr_problem(self._dump_err.text()) if rc else None
                if problem:
                    raise UserError(f"{self.interface}: dumpcap: {problem}")
        finally:
            self.close()

    def close(self) -> None:
        """Stop dumpcap (it writes its drop counts on the way out) and tshark, let the pump
        read dumpcap's last blocks, and reap both children."""
        self._closed = True
        for proc in (self._dumpcap, self._proc):
            if proc is not None and proc.poll() is None:
                proc.terminate()
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None
        _reap(self._dumpcap)
        _reap(self._proc)
        self._dumpcap = self._proc = None
        with self._cond:
            self.accounting.filtered = max(0, self.accounting.read - self._yielded)
        for f in (self._stderr, self._dump_err):
            if f is not None:
                f.close()
        self._stderr = self._dump_err = None
        if self._config is not None:
            self._config.remove()
            self._config = None
