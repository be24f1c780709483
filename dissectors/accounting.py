"""Where every frame of a capture went: the one count every layer shares.

The source (dissectors) fills `read`, `filtered`, `dropped` and `kernel_dropped`; the event
stream (monitor) the rest. The identity read = analysed + filtered + malformed + dropped holds
at every moment a reader looks (nothing is lost silently): a frame that was read but never
reached an analyzer is `dropped`, with its reason in `dropped_reasons`, never `filtered`.
Frames the capture itself lost before they could be read (the kernel's drops, by dumpcap's own
count) were never read: they are `kernel_dropped`, beside the identity, never in it.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

# Why a frame that was read never reached an analyzer (`Accounting.dropped_reasons`), declared
# once: the reports, the dashboard and the docs say it in these words.
DROP_REASONS = {
    "dissector-died": "read by a dissector process that died before it handed them on",
    "analysis-behind": "captured while the analysis was more than a queue behind the wire "
                       "(dissectors.live LIVE_QUEUE): dropped there, counted, so dumpcap "
                       "never waits and the kernel never drops unseen",
    "capture-stopped": "read from dumpcap and not yet analysed when the capture was stopped",
}


@dataclass
class Accounting:
    """Where every frame went. The source fills read/filtered/dropped; the stream the rest."""
    read: int = 0             # frames the source read (capture file records, or captured live)
    analysed: int = 0         # mobility-relevant frames handed to the analyzers, well-formed
    filtered: int = 0         # frames that were not mobility-relevant
    malformed: int = 0        # mobility-relevant frames that are malformed (dissectors.walk)
    dropped: int = 0          # frames read that never reached an analyzer: counted, with why
    esp_decrypted: int = 0
    esp_undecrypted: int = 0
    # why the capture was not read to its end (a damaged file, a dissector that died), in one
    # line; None when it was. The counts then cover what was read (`mip6mon report` exit 3).
    incomplete: str | None = None
    # why ESP headers were not decrypted (dissectors.events.UNDECRYPTED) -> headers
    esp_undecrypted_reasons: dict[str, int] = field(default_factory=dict)
    # filtered frames the dissector could not see into, by why (an encapsulation or link
    # type it does not walk, an IPv6 fragment) -> frames; they are part of `filtered`
    unwalked: dict[str, int] = field(default_factory=dict)
    # why frames were dropped (DROP_REASONS) -> frames; they add up to `dropped`
    dropped_reasons: dict[str, int] = field(default_factory=dict)
    # frames the kernel dropped before the capture could read them: dumpcap's own count
    # (pcapng isb_ifdrop), known when dumpcap ends or is restarted; never read, so outside
    # the identity above
    kernel_dropped: int = 0

    def drop(self, reason: str, frames: int) -> None:
        """`frames` read frames that will never reach an analyzer, and why (DROP_REASONS)."""
        if frames > 0:
            self.dropped += frames
            self.dropped_reasons[reason] = self.dropped_reasons.get(reason, 0) + frames

    def unaccounted(self) -> int:
        """Frames read and not (yet) counted anywhere: 0 once the stream has taken every event
        the source made (a test of the identity)."""
        return self.read - (self.analysed + self.filtered + self.malformed + self.dropped)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)
