"""Tables in the docs that a registry generates: the text between two HTML comments, which a
test holds equal to the registry and `--regenerate` rewrites (tests/monitor/test_findings.py,
tests/test_procedures.py)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class GeneratedBlock:
    path: Path
    begin: str                 # "<!-- ... table: generated from ... -->"
    end: str

    def current(self) -> str:
        """The block's text now (a test compares it with the registry's)."""
        text = self.path.read_text()
        assert self.begin in text and self.end in text, \
            f"{self.path.name} has no {self.begin} ... {self.end} block"
        return text.split(self.begin, 1)[1].split(self.end, 1)[0].strip("\n")

    def rewrite(self, content: str) -> None:
        self.current()                       # the block is there
        head, rest = self.path.read_text().split(self.begin, 1)
        self.path.write_text(f"{head}{self.begin}\n{content}\n{self.end}"
                             f"{rest.split(self.end, 1)[1]}")
