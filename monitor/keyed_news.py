"""The keyed view a piece at a time, for a live dashboard (web.session reads it every second).

`keyed_news(home, correspondents, findings, mark, limit, trail_limit) -> (news, mark)`: what grew
since `mark` (a `KeyedMark`, None for "since the start"): the new home and correspondent bindings
and findings (the newest `limit` of each, in the order they were established, with the totals)
and each node's new care-of trail points (the newest `trail_limit`; `reset` when the node's
trail changes source). It costs what is new, not what was seen: the caches and the finding log
only grow, so a mark is a count per list. `KeyedAnalyzer.news` is this function on its state.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from monitor.caches import CorrespondentBindingCache, HomeBindingCache, merged_trails


@dataclass(frozen=True)
class KeyedMark:
    """How much of the keyed results a reader has had (KeyedAnalyzer.news)."""
    home: int = 0
    correspondent: int = 0
    findings: int = 0
    # ((home address, (source, points had)), ...): source is "home" or "correspondent"
    trails: tuple[tuple[str, tuple[str, int]], ...] = ()


def keyed_news(home_cache: HomeBindingCache, correspondent_cache: CorrespondentBindingCache,
               findings: Sequence[dict[str, Any]], mark: KeyedMark | None = None,
               limit: int = 100, trail_limit: int = 200) -> tuple[dict[str, Any], KeyedMark]:
    mark = mark or KeyedMark()
    home, corr = home_cache.entries, correspondent_cache.entries
    news: dict[str, Any] = {
        "home_bindings": [b.as_dict() for b in home[max(mark.home, len(home) - limit):]],
        "home_total": len(home),
        "correspondent_bindings": [b.as_dict() for b in
                                   corr[max(mark.correspondent, len(corr) - limit):]],
        "correspondent_total": len(corr),
        "findings": [dict(f) for f in findings[max(mark.findings, len(findings) - limit):]],
        "findings_total": len(findings),
        "trails": {}}
    sent = dict(mark.trails)
    for hoa, points in merged_trails(home_cache, correspondent_cache).items():
        # a node first traced by its correspondent bindings and then by its home ones
        # starts over (merged_trails prefers the home agent's view)
        source = "home" if hoa in home_cache.trails else "correspondent"
        previous, had = sent.get(hoa, (source, 0))
        reset = previous != source
        start = 0 if reset else had
        if len(points) > start or reset:
            news["trails"][hoa] = {"reset": reset, "points": [
                list(p) for p in points[max(start, len(points) - trail_limit):]]}
        sent[hoa] = (source, len(points))
    return news, KeyedMark(len(home), len(corr), len(findings), tuple(sent.items()))
