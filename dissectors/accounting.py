"""Where every frame of a capture went: the one count every layer shares.

The source (dissectors) fills `read`, `filtered` and `dropped`; the event stream (monitor) the
rest. The identity read = analysed + filtered + malformed + dropped holds at every moment a
reader looks (nothing is lost silently).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class Accounting:
    """Where every frame went. The source fills read/filtered/dropped; the stream the rest."""
    read: int = 0             # frames the source read (capture file records, or captured live)
    analysed: int = 0         # mobility-relevant frames handed to the analyzers, well-formed
    filtered: int = 0         # frames that were not mobility-relevant
    malformed: int = 0        # mobility-relevant frames that are malformed (dissectors.walk)
    dropped: int = 0          # frames lost (kernel drops, a full queue): counted, never silent
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

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)
