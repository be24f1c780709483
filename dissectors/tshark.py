"""tshark as the dissector: select mobility frames, decrypt ESP, and make PacketEvents.

Design (measured; benchmarks/bench_report.py, PLATFORM-NOTES):
- tshark is driven directly (not through pyshark): `-T fields` is tshark's fastest output,
  one line per frame, so a live frame is delivered as soon as tshark prints it (pyshark's
  JSON mode holds the last live packet back, its EK mode fails on IPv6-in-IPv6, and it has
  no hook for feeding tshark pre-filtered input).
- One pump thread reads the capture (file, or dumpcap's stdout live) block by block
  (dissectors.capfile), counts every frame, drops what the octet pre-filter proves
  irrelevant (dissectors.wire.candidate: plain TCP/UDP/ICMPv6, ROADMAP 3) and forwards the
  rest verbatim (pcapng comments included) to `tshark -r -`, whose display filter
  MOBILITY_FILTER makes the final choice. 200,000 packets with 10 % mobility: about 4x
  faster than tshark alone on the same file and filter.
- tshark's fields give what it is the authority for: frame metadata, the MH type (so counts
  are tshark's), expert errors (malformed), the decrypted ESP payloads, the Info column, the
  pcapng comment. The frame's own octets give the per-layer structure and the MH octets
  (dissectors.wire, dissectors.mobility), which tshark's flat field lists cannot attribute to
  a layer and partly hide (option 18, the HoTI 'P' flag, the Authenticator's data).
- Every frame is counted: read = every record, filtered = read - events.
"""
from __future__ import annotations

import gzip
import signal
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from typing import BinaryIO, cast

from dissectors import capfile, mobility, wire
from dissectors.accounting import Accounting
from dissectors.capfile import Record
from dissectors.espsa import TsharkConfig
from dissectors.events import IPv6Layer, MobilityMessage, PacketEvent
from keys.errors import UserError
from keys.keyring import Keyring

TSHARK = "tshark"
DUMPCAP = "dumpcap"

# Mobility-relevant frames (issue 2): MH (not DSMIPv6's UDP 5436, PLATFORM-NOTES), ESP, HAO
# (option 201) and the pseudo home address option 0xFE (PROFILE.md), RH2, Mobile Prefix
# Solicitation/Advertisement, and IPv6-in-IPv6 (reverse tunnels, RFC 6275 10.4.5).
# A malformed frame is selected too (`_ws.malformed`): one with an IPv6 header becomes a
# malformed event; one without (a broken link layer) is counted as malformed, not filtered.
MOBILITY_FILTER = (
    "(ipv6 && ((mipv6 && !udp) || esp || ipv6.opt.type == 0xc9 || ipv6.opt.type == 0xfe"
    " || ipv6.routing.type == 2 || icmpv6.type == 146 || icmpv6.type == 147"
    " || ipv6.nxt == 41 || ipv6.hopopts.nxt == 41 || ipv6.dstopts.nxt == 41"
    " || ipv6.routing.nxt == 41)) || _ws.malformed")

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
    for proto, data in zip(_split(esp_protos), _split(esp_data), strict=False):
        try:
            decrypted.append((int(proto, 0), bytes.fromhex(data.replace(":", ""))))
        except ValueError:
            break
    walked = wire.walk(record.linktype, record.data, decrypted) if record else wire.Walk()
    layers = tuple(walked.layers)
    if not layers and srcs:
        layers = tuple(IPv6Layer(s, d) for s, d in zip(_split(srcs), _split(dsts), strict=False))
    malformed = None
    if walked.mh_truncated:
        # tshark only notes "[Packet size limited during capture]" (no expert error), but the
        # MH fields past the snap length are unknown: count it as malformed, not as analysed
        malformed = "Mobility Header truncated by the capture's snap length"
    for severity, message in zip(_split(severities), _split(messages), strict=False):
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


def _safe_event(line: str, record: Record | None, sensor: str) -> PacketEvent:
    """make_event, with a last guard: a frame that breaks the dissector is a malformed event
    (counted), never an exception that would stop the monitor."""
    try:
        return make_event(line, record, sensor)
    except Exception as exc:  # noqa: BLE001 - any dissector bug becomes a counted frame
        cols = line.split(SEPARATOR)
        srcs = _split(cols[11]) if len(cols) > 12 else []
        dsts = _split(cols[12]) if len(cols) > 12 else []
        return PacketEvent(
            frame=int(cols[0]), time=0.0, length=0,
            layers=tuple(IPv6Layer(a, z) for a, z in zip(srcs, dsts, strict=False))
            or (IPv6Layer("::", "::"),),
            sensor=sensor, malformed=f"dissector error: {exc.__class__.__name__}")


class _StderrFile:
    """tshark's stderr, kept in a temporary file (no pipe to fill and block on)."""

    def __init__(self) -> None:
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


def _reap(proc: subprocess.Popen[bytes] | None, timeout: float = 5.0) -> None:
    if proc is None:
        return
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    # stdout is left to its reader (it may be another thread): it ends at EOF and closes it
    for pipe in (proc.stdin,):
        if pipe is not None:
            try:
                pipe.close()
            except OSError:
                pass


def check_capture_file(path: str) -> None:
    """UserError (one line) unless `path` is a readable pcap or pcapng file."""
    try:
        with capfile.open_capture(path) as f:
            next(capfile.records(f, keep_data=False), None)
    except FileNotFoundError:
        raise UserError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise UserError(f"{path}: is a directory, not a capture file") from None
    except PermissionError:
        raise UserError(f"{path}: permission denied") from None
    except (capfile.NotACapture, gzip.BadGzipFile, EOFError):
        raise UserError(f"{path}: not a capture file (pcap or pcapng)") from None
    except capfile.CaptureDamaged:
        pass       # a capture, damaged from its first frame: reading it says where and why
    except OSError as exc:
        raise UserError(f"{path}: cannot read: {exc.strerror}") from None


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

MAX_PENDING = 50_000   # frames fed to tshark but not yet turned into events (back-pressure)


class _Tshark:
    """One tshark process fed through its stdin by a pump thread.

    The pump reads the capture stream block by block (dissectors.capfile), counts every
    frame, drops the frames the octet pre-filter (wire.candidate, ROADMAP 3) proves
    irrelevant, keeps the octets of the others and forwards their blocks verbatim to
    `tshark -r -` (pcapng comments included). tshark numbers the frames it was fed; the pump
    remembers which capture frame each one was. tshark runs with -l so that every selected
    frame is delivered as soon as it is dissected (live), and so that the pump's
    back-pressure can never deadlock with tshark's output buffer.
    """

    flush_each = False        # live: forward every packet at once instead of in 8 KB writes
    drain_on_close = False    # live: keep reading dumpcap's output after close (drop counts)

    def __init__(self, keyring: Keyring | None, sensor: str, accounting: Accounting | None,
                 prefilter: bool):
        self.sensor = sensor
        self.accounting = accounting or Accounting()
        self.prefilter = prefilter
        self._keyring = keyring
        self._proc: subprocess.Popen[bytes] | None = None
        self._config: TsharkConfig | None = None
        self._stderr: _StderrFile | None = None
        self._fed: dict[int, Record] = {}       # tshark frame number -> the capture's record
        self._cond = threading.Condition()
        self._eof = False
        self._closed = False
        self._yielded = 0
        # frames the source itself counts as malformed without an event: a record cut short
        # at the end of the file, a frame tshark cannot even read as IPv6
        self._settled = 0
        self._thread: threading.Thread | None = None
        self._pump_error: BaseException | None = None
        self._output_done = False               # tshark's output ended: stop waiting for it
        self.drops = capfile.DropCounter()
        self.ready = threading.Event()          # set once the capture stream has started

    # -- the process and the pump --------------------------------------------------------

    def _start_tshark(self, stream: BinaryIO) -> None:
        self._config = TsharkConfig(self._keyring)
        self._stderr = _StderrFile()
        try:
            self._proc = subprocess.Popen(
                tshark_fields_argv(["-r", "-"], live=True), stdin=subprocess.PIPE,
                stdout=subprocess.PIPE, stderr=self._stderr.file, env=self._config.env())
        except FileNotFoundError:
            self.close()
            raise UserError("tshark not found: install Wireshark's tshark") from None
        self._thread = threading.Thread(target=self._pump, args=(stream,), daemon=True,
                                        name="mip6mon-pump")
        self._thread.start()

    def _pump(self, stream: BinaryIO) -> None:
        assert self._proc is not None and self._proc.stdin is not None   # _start_tshark
        sink = self._proc.stdin
        fed = 0
        acc = self.accounting
        try:
            for block in capfile.blocks(stream, self.drops):
                self.ready.set()
                rec = block.record
                if rec is not None:
                    keep = not self.prefilter or wire.candidate(rec.linktype, rec.data)
                    with self._cond:
                        acc.read += 1
                        if keep:
                            fed += 1
                            self._fed[fed] = rec
                            while (len(self._fed) > MAX_PENDING and not self._closed
                                   and not self._output_done):
                                self._cond.wait(0.5)
                        # not (yet) selected by tshark; corrected as events are yielded
                        acc.filtered = acc.read - self._yielded - self._settled
                        self._cond.notify_all()
                    if not keep:
                        continue
                if self._closed or self._output_done:
                    if self.drain_on_close:
                        continue      # live: read dumpcap to its end for the drop counts
                    break
                sink.write(block.raw)
                if rec is not None and self.flush_each:
                    sink.flush()
        except (OSError, ValueError, EOFError):
            pass   # tshark gone (closing), the stream closed, or a gzip file cut short
        except BaseException as exc:  # noqa: BLE001 - re-raised in events()
            self._pump_error = exc
        finally:
            self.accounting.dropped = max(self.accounting.dropped, self.drops.dropped)
            if self.drops.damage is not None and self.accounting.incomplete is None:
                # the frames before the damage were read and go on; the rest is said, not lost
                self.accounting.incomplete = f"damaged capture: {self.drops.damage}"
            try:
                sink.close()          # tshark sees the end of its input and finishes
            except OSError:
                pass
            with self._cond:
                self._eof = True
                self._cond.notify_all()

    def _take(self, number: int) -> Record | None:
        with self._cond:
            while number not in self._fed and not self._eof:
                self._cond.wait(0.5)
            rec = self._fed.pop(number, None)
            while self._fed:              # insertion order is frame order: drop the skipped
                oldest = next(iter(self._fed))
                if oldest > number:
                    break
                del self._fed[oldest]
            self._cond.notify_all()
            return rec

    def _lines(self) -> Iterator[PacketEvent]:
        assert self._proc is not None and self._proc.stdout is not None  # _start_tshark
        stdout = self._proc.stdout
        while True:
            try:
                raw = stdout.readline()
            except (OSError, ValueError):   # closed from another thread (LiveSource.close)
                raw = b""
            if not raw:
                break
            line = raw.decode("utf-8", "replace")
            number = line.split(SEPARATOR, 1)[0]
            if not number.isdigit():
                continue
            if self._config is not None and self._config.path:
                # tshark printed a frame, so it has read its configuration: the key file
                # need not outlive this moment on disk
                self._config.remove()
            rec = self._take(int(number))
            if rec is not None:      # tshark's number -> the capture's own frame number
                line = str(rec.number) + line[len(number):]
            event = _safe_event(line, rec, self.sensor)
            if not event.layers:
                # selected only by `_ws.malformed`: no IPv6 header to analyse, but counted
                with self._cond:
                    self._settled += 1
                    self.accounting.malformed += 1
                continue
            with self._cond:
                self._yielded += 1
                self.accounting.filtered = max(
                    0, self.accounting.read - self._yielded - self._settled)
            yield event
        try:
            stdout.close()
        except (OSError, ValueError):
            pass
        with self._cond:
            self._output_done = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join()
        with self._cond:
            self.accounting.filtered = max(0, self.accounting.read - self._yielded - self._settled)
        if self._pump_error is not None:
            raise self._pump_error

    def _check_tshark_exit(self) -> None:
        """A tshark that died (killed, or failed) ended the dissection early: the frames it
        was handed and never answered are dropped, and the capture is incomplete, never a
        finished report (issue 13)."""
        if self._proc is None or self._stderr is None or self._closed:
            return
        try:
            rc = self._proc.wait(10)
        except subprocess.TimeoutExpired:
            return
        if not rc:
            return
        if rc < 0:
            how = f"was killed by {signal.Signals(-rc).name}"
        else:
            problem = _stderr_problem(self._stderr.text())
            how = f"failed (exit code {rc}{': ' + problem if problem else ''})"
        with self._cond:
            lost = len(self._fed)
            self._fed.clear()
            self._settled += lost
            self.accounting.dropped += lost
            self.accounting.filtered = max(0, self.accounting.read - self._yielded - self._settled)
            read = self.accounting.read
        self.accounting.incomplete = (
            f"tshark (the dissector) {how} after {read} frames were read; "
            f"{lost} handed to it were never dissected and the rest of the file was not read")

    def close(self) -> None:
        """Stop feeding, end tshark, reap it, remove the key directory."""
        self._closed = True
        with self._cond:
            self._cond.notify_all()
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(5)
            self._thread = None
        _reap(self._proc)
        self._proc = None
        with self._cond:
            self.accounting.filtered = max(0, self.accounting.read - self._yielded - self._settled)
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None
        if self._config is not None:
            self._config.remove()
            self._config = None


class TsharkFile(_Tshark):
    """Dissect a capture file: `events()` yields PacketEvents; `accounting` counts every frame
    (read = all records, filtered = records that are not mobility-relevant)."""

    def __init__(self, path: str, keyring: Keyring | None = None, sensor: str = "",
                 accounting: Accounting | None = None, prefilter: bool = True):
        super().__init__(keyring, sensor, accounting, prefilter)
        self.path = str(path)
        check_capture_file(self.path)
        self._stream: BinaryIO | None = None

    def events(self) -> Iterator[PacketEvent]:
        try:
            self._stream = capfile.open_capture(self.path)
        except OSError as exc:
            raise UserError(f"{self.path}: cannot read: {exc.strerror}") from None
        try:
            self._start_tshark(self._stream)
            yield from self._lines()
            self._check_tshark_exit()
        finally:
            self.close()

    def close(self) -> None:
        super().close()
        if self._stream is not None:
            self._stream.close()
            self._stream = None


class TsharkLive(_Tshark):
    """Live capture: dumpcap -> (this process: count, pre-filter, keep octets) -> tshark."""

    flush_each = True
    drain_on_close = True

    def __init__(self, interface: str, keyring: Keyring | None = None, bpf: str | None = None,
                 sensor: str = "", accounting: Accounting | None = None,
                 prefilter: bool = True):
        super().__init__(keyring, sensor, accounting, prefilter)
        self.interface = interface
        self.bpf = DEFAULT_BPF if bpf is None else bpf
        self._dumpcap: subprocess.Popen[bytes] | None = None
        self._dump_err: _StderrFile | None = None

    def start(self) -> None:
        if self._dumpcap is not None:
            return
        self._dump_err = _StderrFile()
        argv = [DUMPCAP, "-q", "-i", self.interface, "-w", "-"]   # pcapng by default
        if self.bpf:
            argv += ["-f", self.bpf]
        try:
            self._dumpcap = subprocess.Popen(argv, stdin=subprocess.DEVNULL,
                                             stdout=subprocess.PIPE, stderr=self._dump_err.file,
                                             start_new_session=True)
        except FileNotFoundError:
            raise UserError("dumpcap not found: install Wireshark's tshark") from None
        assert self._dumpcap.stdout is not None          # stdout=PIPE
        self._start_tshark(cast(BinaryIO, self._dumpcap.stdout))

    def events(self) -> Iterator[PacketEvent]:
        self.start()
        try:
            yield from self._lines()
            if not self._closed and self._dumpcap is not None and self._dump_err is not None:
                try:
                    rc: int | None = self._dumpcap.wait(5)
                except subprocess.TimeoutExpired:
                    rc = None
                problem = _stderr_problem(self._dump_err.text()) if rc else None
                if problem:
                    raise UserError(f"{self.interface}: dumpcap: {problem}")
        finally:
            self.close()

    def close(self) -> None:
        """Stop dumpcap first (it writes its drop counts on the way out), then the rest."""
        self._closed = True
        if self._dumpcap is not None and self._dumpcap.poll() is None:
            self._dumpcap.terminate()
        super().close()
        _reap(self._dumpcap)
        self._dumpcap = None
        if self._dump_err is not None:
            self._dump_err.close()
            self._dump_err = None
