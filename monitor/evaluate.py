"""`mip6mon evaluate`: the attacker view swept over crowds it was not built on (issue 9).

For every cell of a grid (draft procedure or the baseline, N mobile nodes, care-of IID kind,
SPI allocation) and several seeds, a lab crowd is generated, dissected once without keys, and
the keyless attacker at each vantage point is scored against the lab's own truth.json
(`monitor.privacy.LabTruth`: scores do not depend on the keyed view). What is kept per cell and
vantage: pairwise link precision and recall, the anonymity set the attacker is left with (real
nodes a profile could be, and its entropy), the movement followed and the care-of addresses
tied to the home address; and every decision the attacker made with its confidence and
whether it was right, for a reliability table (links at confidence p must be right at least p
of the time).

This module knows no lab: it is handed the crowd generator (monitor.cli passes
`lab.crowd.run_crowd`), so the layers stay one way. Results go to JSON first, and the Markdown
tables and the plotly chart are rendered from that JSON (`--render` redraws without rerunning).
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from keys.errors import UserError
from monitor.linking import THRESHOLD
from monitor.placement import VANTAGES

# draft procedure (or the baseline) -> what every node of the crowd does (lab crowd parameters)
PROCEDURES: dict[str, dict] = {
    "baseline": {"procedures": "rfc3776+rfc6275"},     # RFC 6275 + RFC 3776, nothing hidden
    "4.1": {"procedures": "5.2.1+4.1"},                # pseudo HoA from return routability
    "4.2": {"procedures": "5.2.1+4.2"},                # reverse-tunnelled correspondent BU
    "5.2.1": {"procedures": "5.2.1"},                  # Home BU, IPsec transport mode
    "5.2.2": {"procedures": "5.2.2"},                  # Home BU, IPsec tunnel mode
    "5.3.1": {"procedures": "5.2.1+5.3.1"},            # RR, mobile node initiates
    "5.3.2": {"procedures": "5.2.1+5.3.2"},            # RR, correspondent initiates
    "5.4": {"procedures": "5.2.1+5.4"},                # reverse tunnelling
    "5.5": {"procedures": "5.2.1", "prefix_discovery": 1.0},   # prefix discovery
}
NODES = (2, 5, 20, 100, 500)
IIDS = ("privacy", "stable", "eui64")
SPIS = ("random", "sequential")
SEEDS = 5
MOVES_PER_NODE = 5
# confidence bins of the reliability table (the last one holds the links, at THRESHOLD)
BINS = (0.0, 0.1, 0.3, 0.5, 0.7, 0.9, 0.99, 0.999, 1.0)
METRICS = ("link_precision", "link_recall", "anonymity_set_mean", "entropy_bits_mean",
           "followed_fraction", "care_of_tied_fraction")

Generate = Callable[..., object]          # generate(outdir, **lab crowd parameters)


@dataclass(frozen=True)
class Cell:
    procedure: str
    nodes: int
    iid: str
    spi: str
    seed: int

    def crowd(self, moves_per_node: int, extra: dict | None = None) -> dict:
        """The lab crowd parameters of this cell (`extra`: the same for every cell)."""
        return {"nodes": self.nodes, "iid": self.iid, "spi": self.spi, "seed": self.seed,
                "moves_per_node": moves_per_node,
                "name": f"eval-{self.procedure}-{self.nodes}-{self.iid}-{self.spi}-{self.seed}",
                **(extra or {}), **PROCEDURES[self.procedure]}


@dataclass
class Grid:
    procedures: tuple[str, ...] = tuple(PROCEDURES)
    nodes: tuple[int, ...] = NODES
    iids: tuple[str, ...] = IIDS
    spis: tuple[str, ...] = SPIS
    vantages: tuple[str, ...] = VANTAGES
    seeds: int = SEEDS
    moves_per_node: int = MOVES_PER_NODE
    # lab crowd parameters held the same in every cell (moves, sa_setup, background, ...)
    crowd: dict = field(default_factory=dict)

    def cells(self) -> list[Cell]:
        return [Cell(p, n, i, s, seed) for p in self.procedures for n in self.nodes
                for i in self.iids for s in self.spis for seed in range(1, self.seeds + 1)]


def _bin(confidence: float) -> int:
    for k in range(len(BINS) - 1):
        if confidence < BINS[k + 1]:
            return k
    return len(BINS) - 2


def measure(directory: Path, vantages: Iterable[str] = VANTAGES) -> dict[str, dict]:
    """One lab output directory: dissected once without keys, one attacker per vantage point
    on the same events, each scored against truth.json. vantage -> metrics, and the attacker's
    decisions binned by confidence: {rule: {bin: [count, sum of confidences, right]}}."""
    from monitor.attacker import AttackerAnalyzer
    from monitor.privacy import LabTruth, evidence_outcomes, privacy_score
    from monitor.sources import PcapSource
    from monitor.stream import EventStream

    attackers = {v: AttackerAnalyzer(v) for v in vantages}
    started = time.process_time()
    EventStream(PcapSource(str(directory / "capture.pcapng")), list(attackers.values())).run()
    seconds = time.process_time() - started
    truth = LabTruth.from_file(directory / "truth.json")
    out = {}
    for v, attacker in attackers.items():
        score = privacy_score(attacker, truth)
        decisions: dict[str, dict[int, list]] = defaultdict(dict)
        for rule, confidence, right in evidence_outcomes(attacker, truth):
            cell = decisions[rule].setdefault(_bin(confidence), [0, 0.0, 0])
            cell[0] += 1
            cell[1] += confidence
            cell[2] += int(right)
        out[v] = {**{m: score.get(m) for m in METRICS},
                  "frames_scored": score["frames_scored"], "profiles": score["profiles"],
                  "nodes": score["nodes_total"], "seconds": round(seconds, 3),
                  "decisions": {r: {str(k): c for k, c in d.items()} for r, d in decisions.items()}}
    return out


def _one(job: tuple) -> list[dict]:
    """Generate one crowd, measure it, forget it (unless kept): records of every vantage."""
    cell, generate, base, keep, moves, vantages, extra = job
    params = cell.crowd(moves, extra)
    directory = base / params["name"]
    started = time.monotonic()
    generate(directory, **params)
    records = [{**asdict(cell), "vantage": vantage, **metrics, "wall": 0.0}
               for vantage, metrics in measure(directory, vantages).items()]
    if not keep:
        shutil.rmtree(directory, ignore_errors=True)
    for r in records:
        r["wall"] = round(time.monotonic() - started, 3)
    return records


def run(grid: Grid, generate: Generate, workdir: Path | None = None,
        progress: Callable[[str], None] | None = None, jobs: int = 1) -> dict:
    """Every cell of the grid (in `jobs` worker processes): generate the crowd, measure it,
    forget it (unless workdir keeps it)."""
    records = []
    cells = grid.cells()
    tmp = Path(tempfile.mkdtemp(prefix="mip6mon-eval-")) if workdir is None else None
    base = workdir or tmp
    assert base is not None
    work = [(cell, generate, base, workdir is not None, grid.moves_per_node, grid.vantages,
             grid.crowd) for cell in cells]
    try:
        if jobs > 1:
            import multiprocessing
            pool = multiprocessing.get_context("fork").Pool(jobs)
            results = pool.imap(_one, work)
        else:
            pool, results = None, map(_one, work)
        try:
            for n, (cell, mine) in enumerate(zip(cells, results, strict=True), 1):
                records += mine
                if progress is not None:
                    progress(f"[{n}/{len(cells)}] {cell.procedure} N={cell.nodes} {cell.iid} "
                             f"{cell.spi} seed {cell.seed}: " + ", ".join(
                                 f"{r['vantage']} P {_num(r['link_precision'])} "
                                 f"R {_num(r['link_recall'])}" for r in mine)
                             + f" ({mine[0]['wall']:.1f} s)")
        finally:
            if pool is not None:
                pool.close()
                pool.join()
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    return {"grid": {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(grid).items()},
            "bins": list(BINS), "records": records}


# ---- aggregation --------------------------------------------------------------------------------

def _mean(values: list) -> float | None:
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else None


def _num(value, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        text = f"{value:.{digits}f}".rstrip("0").rstrip(".")
        return text or "0"
    return str(value)


def summarise(results: dict) -> list[dict]:
    """One row per (procedure, nodes, iid, spi, vantage): means over the seeds, the lowest
    precision of any seed, and how many seeds linked anything."""
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for r in results["records"]:
        groups[(r["procedure"], r["nodes"], r["iid"], r["spi"], r["vantage"])].append(r)
    order = {p: i for i, p in enumerate(PROCEDURES)}
    rows = []
    for key in sorted(groups, key=lambda k: (order.get(k[0], 99), k[1], k[2], k[3],
                                             VANTAGES.index(k[4]))):
        rs = groups[key]
        precisions = [r["link_precision"] for r in rs if r["link_precision"] is not None]
        rows.append({"procedure": key[0], "nodes": key[1], "iid": key[2], "spi": key[3],
                     "vantage": key[4], "seeds": len(rs),
                     **{m: _mean([r[m] for r in rs]) for m in METRICS},
                     "precision_min": min(precisions) if precisions else None,
                     "seconds": _mean([r["seconds"] for r in rs])})
    return rows


def reliability(results: dict, rules: Iterable[str] | None = None) -> list[dict]:
    """Confidence bins over every decision of every cell: count, mean confidence, share right,
    and whether the decisions were at least as often right as their confidences say (the
    wrong ones no more than the sum of 1 - confidence)."""
    bins = results.get("bins", list(BINS))
    acc = [[0, 0.0, 0] for _ in range(len(bins) - 1)]
    for r in results["records"]:
        for rule, per_bin in r["decisions"].items():
            if rules is not None and rule not in rules:
                continue
            for k, (n, conf, right) in per_bin.items():
                a = acc[int(k)]
                a[0] += n
                a[1] += conf
                a[2] += right
    rows = []
    for k, (n, conf, right) in enumerate(acc):
        if not n:
            continue
        rows.append({"bin": f"[{bins[k]}, {bins[k + 1]})" if k < len(acc) - 1
                     else f"[{bins[k]}, 1]", "low": bins[k], "decisions": n,
                     "confidence": conf / n, "right": right / n,
                     "wrong": n - right, "expected_wrong": n - conf,
                     "holds": n - right <= n - conf + 1e-9})
    return rows


def check(rows: list[dict], floor: float = 0.95, mean: float = 0.99) -> list[str]:
    """The issue's bar on precision: what fails it (empty when everything holds)."""
    fails = []
    for r in rows:
        if r["link_precision"] is not None and (r["link_precision"] < mean or
                                                (r["precision_min"] or 1) < floor):
            fails.append(f"{r['procedure']} N={r['nodes']} {r['iid']} {r['spi']} at "
                         f"{r['vantage']}: precision {_num(r['link_precision'])} (lowest "
                         f"seed {_num(r['precision_min'])})")
    return fails


# ---- rendering ---------------------------------------------------------------------------------

def _cell(r: dict | None) -> str:
    if r is None or (r["link_precision"] is None and r["link_recall"] is None):
        return "-"
    return (f"P {_num(r['link_precision'], 2)} · R {_num(r['link_recall'], 2)} · "
            f"A {_num(r['anonymity_set_mean'], 1)} · F {_num(r['followed_fraction'], 2)}")


def table(rows: list[dict], vantage: str, iid: str, spi: str) -> str:
    """Markdown: one row per procedure, one column per N, at one vantage point."""
    picked = {(r["procedure"], r["nodes"]): r for r in rows
              if r["vantage"] == vantage and r["iid"] == iid and r["spi"] == spi}
    nodes = sorted({n for _, n in picked})
    procs = [p for p in PROCEDURES if any(q == p for q, _ in picked)]
    head = "| procedure | " + " | ".join(f"N={n}" for n in nodes) + " |"
    sep = "| --- " * (len(nodes) + 1) + "|"
    body = [f"| {p} | " + " | ".join(_cell(picked.get((p, n))) for n in nodes) + " |"
            for p in procs]
    return "\n".join([head, sep, *body])


# the overview's columns: (heading, vantage, SPI allocation, IID kind)
OVERVIEW = (("`mn-ha`", "mn-ha", "random", "privacy"), ("`ha-cn`", "ha-cn", "random", "privacy"),
            ("`mn-cn`", "mn-cn", "random", "privacy"), ("`all`", "all", "random", "privacy"),
            ("`mn-ha`, sequential SPIs", "mn-ha", "sequential", "privacy"),
            ("`mn-cn`, stable IIDs", "mn-cn", "random", "stable"),
            ("`mn-cn`, EUI-64 IIDs", "mn-cn", "random", "eui64"))


def _range(values: list) -> str:
    values = [v for v in values if v is not None]
    if not values:
        return "-"
    lo, hi = min(values), max(values)
    digits = 2 if hi <= 1 else 1
    same = abs(hi - lo) < (0.005 if digits == 2 else 0.05)
    return _num(lo, digits) if same else f"{_num(lo, digits)}–{_num(hi, digits)}"


def overview(rows: list[dict]) -> str:
    """Markdown: one row per procedure, one column per (vantage, SPIs, IIDs); each cell the
    recall R and anonymity set A over every N of the grid (lowest–highest)."""
    procs = [p for p in PROCEDURES if any(r["procedure"] == p for r in rows)]
    cols = [c for c in OVERVIEW if any((r["vantage"], r["spi"], r["iid"]) == c[1:] for r in rows)]
    head = "| procedure | " + " | ".join(c[0] for c in cols) + " |"
    sep = "| --- " * (len(cols) + 1) + "|"
    body = []
    for p in procs:
        cells = []
        for _, v, spi, iid in cols:
            rs = [r for r in rows if (r["procedure"], r["vantage"], r["spi"], r["iid"]) ==
                  (p, v, spi, iid)]
            if all(r["link_recall"] is None for r in rs):
                cells.append("-")
                continue
            cells.append(f"R {_range([r['link_recall'] for r in rs])} · "
                         f"A {_range([r['anonymity_set_mean'] for r in rs])}")
        body.append(f"| {p} | " + " | ".join(cells) + " |")
    return "\n".join([head, sep, *body])


def reliability_table(rows: list[dict]) -> str:
    head = ("| confidence | decisions | mean confidence | right | wrong | wrong allowed "
            "(sum of 1 - p) | holds |")
    sep = "| --- " * 7 + "|"
    body = [f"| {r['bin']} | {r['decisions']} | {r['confidence']:.4f} | {r['right']:.4f} | "
            f"{r['wrong']} | {r['expected_wrong']:.1f} | {'yes' if r['holds'] else 'NO'} |"
            for r in rows]
    return "\n".join([head, sep, *body])


def _span(values: list[float]) -> str:
    lo, hi = min(values), max(values)
    return _num(lo, 2) if abs(hi - lo) < 0.005 else f"{_num(lo, 2)}-{_num(hi, 2)}"


def findings(rows: list[dict]) -> list[str]:
    """One sentence per procedure, generated from the numbers (random SPIs, privacy IIDs)."""
    out = []

    def at(p, v, spi="random", iid="privacy"):
        return {r["nodes"]: r for r in rows
                if (r["procedure"], r["vantage"], r["spi"], r["iid"]) == (p, v, spi, iid)}

    for p in PROCEDURES:
        cols = {v: at(p, v) for v in VANTAGES}
        if not any(cols.values()):
            continue
        parts = []
        for v in ("mn-ha", "ha-cn", "mn-cn", "all"):
            rs = cols.get(v) or {}
            recalls = [r["link_recall"] for r in rs.values() if r["link_recall"] is not None]
            if not recalls:
                continue
            parts.append(f"`{v}` recall {_span(recalls)}")
        seq = at(p, "mn-ha", spi="sequential")
        seq_r = [r["link_recall"] for r in seq.values() if r["link_recall"] is not None]
        tail = f"; with sequential SPIs `mn-ha` recall {_span(seq_r)}" if seq_r else ""
        out.append(f"**{p}** (random SPIs, RFC 8981 care-of IIDs, N = "
                   f"{', '.join(str(n) for n in sorted(cols['all'] or {}))}): "
                   + ("; ".join(parts) or "nothing linkable") + tail + ".")
    return out


def render_markdown(results: dict) -> str:
    rows = summarise(results)
    grid = results["grid"]
    fails = check(rows)
    rel = reliability(results)
    links = [r for r in rel if r["low"] >= THRESHOLD]
    parts = [
        "# The attacker view on crowds it was not built on (`mip6mon evaluate`)",
        "",
        f"Grid: procedures {', '.join(grid['procedures'])}; N = "
        f"{', '.join(str(n) for n in grid['nodes'])}; care-of IIDs {', '.join(grid['iids'])}; "
        f"SPI allocation {', '.join(grid['spis'])}; vantage points "
        f"{', '.join(grid['vantages'])}; {grid['seeds']} seeds; {grid['moves_per_node']} moves "
        f"per node; lab crowd defaults otherwise"
        + ("".join(f", {k} {v}" for k, v in (grid.get("crowd") or {}).items())
           or " (moves in turn, SAs set up together, no background)")
        + ". Scored against each "
        "crowd's truth.json. P = pairwise link precision (mean of the seeds), R = recall, "
        "A = anonymity set (real nodes a profile could be, mean over nodes), F = movement "
        "followed. `-`: nothing visible or nothing linked.",
        "",
        "Precision bar (mean >= 0.99, no seed below 0.95): "
        + ("holds in every cell." if not fails else f"fails in {len(fails)} cells:"),
    ]
    parts += [f"- {f}" for f in fails[:50]]
    parts += ["", "## Overview", "",
              "Recall R and anonymity set A (real nodes a profile could be) over every N "
              f"({', '.join(str(n) for n in grid['nodes'])}), lowest–highest; RFC 8981 care-of "
              "IIDs and random SPIs unless the column says otherwise.", "",
              overview(rows)]
    parts += ["", "## Reliability: links at confidence p are right at least p of the time", "",
              reliability_table(rel), "",
              f"Links are the decisions at {THRESHOLD} and above (linking.THRESHOLD): "
              + (f"{sum(r['decisions'] for r in links)} links, "
                 f"{sum(r['wrong'] for r in links)} wrong, "
                 + ("calibrated or better in every bin." if all(r["holds"] for r in links)
                    else "NOT calibrated in some bin.") if links else "none."),
              "", "## Findings (random SPIs, RFC 8981 care-of IIDs)", ""]
    parts += [f"- {s}" for s in findings(rows)]
    for iid in grid["iids"]:
        for spi in grid["spis"]:
            for v in grid["vantages"]:
                parts += ["", f"## `{v}`, care-of IIDs {iid}, SPIs {spi}", "",
                          table(rows, v, iid, spi)]
    return "\n".join(parts) + "\n"


def render_chart(results: dict, self_contained: bool = False) -> str:
    """plotly HTML: precision, recall, anonymity set and movement followed against N, one line
    per procedure, a menu for the vantage point, SPI allocation and IID kind."""
    import plotly.colors
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    rows = summarise(results)
    grid = results["grid"]
    panels = (("link_precision", "link precision"), ("link_recall", "link recall"),
              ("anonymity_set_mean", "anonymity set (nodes)"),
              ("followed_fraction", "movement followed"))
    fig = make_subplots(rows=2, cols=2, subplot_titles=[t for _, t in panels])
    views = [(v, s, i) for v in grid["vantages"] for s in grid["spis"] for i in grid["iids"]]
    traces_per_view = []
    palette = plotly.colors.qualitative.Plotly        # one colour per procedure, in every panel
    for view in views:
        v, s, i = view
        start = len(fig.data)
        for n_proc, p in enumerate(grid["procedures"]):
            pts = sorted((r["nodes"], r) for r in rows
                         if (r["procedure"], r["vantage"], r["spi"], r["iid"]) == (p, v, s, i))
            for k, (metric, _) in enumerate(panels):
                fig.add_trace(go.Scatter(
                    x=[n for n, _ in pts], y=[r[metric] for _, r in pts], name=p,
                    legendgroup=p, showlegend=k == 0, mode="lines+markers",
                    line={"color": palette[n_proc % len(palette)]},
                    visible=view == views[0]), row=k // 2 + 1, col=k % 2 + 1)
        traces_per_view.append(range(start, len(fig.data)))
    buttons = []
    for view, idx in zip(views, traces_per_view, strict=True):
        visible = [False] * len(fig.data)
        for t in idx:
            visible[t] = True
        buttons.append({"label": f"{view[0]} · SPIs {view[1]} · IIDs {view[2]}",
                        "method": "update", "args": [{"visible": visible}]})
    fig.update_xaxes(type="log", title_text="mobile nodes (N)")
    fig.update_layout(title="mip6mon evaluate: the keyless attacker against lab truth",
                      updatemenus=[{"buttons": buttons, "x": 0, "y": 1.15,
                                    "xanchor": "left"}], height=800)
    return fig.to_html(include_plotlyjs=True if self_contained else "cdn", full_html=True)


def _rounded(value):
    """Floats to 6 significant digits (the JSON stays a few MB for the whole grid)."""
    if isinstance(value, float):
        return float(f"{value:.6g}")
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_rounded(v) for v in value]
    return value


def merge(results: list[dict]) -> dict:
    """Several evaluations as one (each cell of each; a cell in two is measured twice): the
    grid names every value any of them swept. They must hold the same crowd parameters."""
    if len(results) == 1:
        return results[0]
    first = results[0]["grid"]
    for r in results[1:]:
        g = r["grid"]
        if (g.get("crowd") or {}) != (first.get("crowd") or {}) or \
                g["moves_per_node"] != first["moves_per_node"] or r["bins"] != results[0]["bins"]:
            raise UserError("evaluate --render: these evaluations ran different crowds (moves, "
                            "SA set-up, background or moves per node) or confidence bins")
    grid = dict(first)
    for key in ("procedures", "nodes", "iids", "spis", "vantages"):
        seen: list = []
        for r in results:
            seen += [v for v in r["grid"][key] if v not in seen]
        grid[key] = sorted(seen) if key == "nodes" else seen
    grid["seeds"] = max(r["grid"]["seeds"] for r in results)
    return {"grid": grid, "bins": results[0]["bins"],
            "records": [rec for r in results for rec in r["records"]]}


def render_readme(results: dict) -> str:
    """README's evaluation section: the bar, the overview, the reliability table, the findings
    (the full tables are in docs/evaluation.md, the chart in docs/evaluation.html)."""
    md = render_markdown(results)
    body = md.split("\n", 2)[2]                       # the title is README's own heading
    return body.split("\n## `", 1)[0].replace("\n## ", "\n#### ").rstrip("\n")


def write(results: dict, outdir: Path, self_contained: bool = False) -> list[Path]:
    try:
        outdir.mkdir(parents=True, exist_ok=True)
        files = [outdir / "evaluation.json", outdir / "evaluation.md", outdir / "evaluation.html"]
        results = _rounded(results)           # what is drawn is what the JSON redraws
        files[0].write_text(json.dumps(results, separators=(",", ":")) + "\n")
        files[1].write_text(render_markdown(results))
        files[2].write_text(render_chart(results, self_contained))
    except OSError as exc:
        raise UserError(f"{exc.filename or outdir}: cannot write: {exc.strerror or exc}") from None
    return files


# ---- `mip6mon evaluate` -------------------------------------------------------------------------

def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("-o", "--output", default="docs",
                   help="where evaluation.json, .md and .html go (default: docs)")
    p.add_argument("--nodes", type=int, nargs="+", default=list(NODES), metavar="N")
    p.add_argument("--procedures", nargs="+", default=list(PROCEDURES), choices=list(PROCEDURES),
                   metavar="P", help="draft sections or baseline (default: all of them)")
    p.add_argument("--iid", nargs="+", default=list(IIDS), choices=IIDS)
    p.add_argument("--spi", nargs="+", default=list(SPIS), choices=SPIS)
    p.add_argument("--vantage", nargs="+", default=list(VANTAGES), choices=VANTAGES)
    p.add_argument("--seeds", type=int, default=SEEDS)
    p.add_argument("--moves-per-node", type=int, default=MOVES_PER_NODE)
    p.add_argument("--moves", choices=("in-turn", "poisson", "burst"),
                   help="move pattern of every crowd (lab crowd --moves)")
    p.add_argument("--sa-setup", choices=("together", "staggered"),
                   help="ESP counters side by side or not (lab crowd --sa-setup)")
    p.add_argument("--background", type=float, help="share of background traffic")
    p.add_argument("--keep", metavar="DIR", help="keep every crowd under DIR")
    p.add_argument("--jobs", type=int, default=1, help="crowds measured at once (processes)")
    p.add_argument("--render", metavar="JSON", nargs="+",
                   help="only redraw the tables and the chart from evaluation.json files (several: "
                        "their cells merged, e.g. a small grid and a 100-node one)")
    p.add_argument("--self-contained", action="store_true",
                   help="embed plotly.js in the chart (else it loads from the plotly CDN)")
    p.add_argument("--quiet", action="store_true", help="no progress line per crowd")


def command_evaluate(args: argparse.Namespace, generate: Generate) -> int:
    if args.render:
        loaded = []
        for name in args.render:
            try:
                loaded.append(json.loads(Path(name).read_text()))
                assert isinstance(loaded[-1].get("records"), list)
            except (OSError, ValueError, AttributeError, AssertionError) as exc:
                raise UserError(f"{name}: not an evaluation.json ({exc or 'no records'})") \
                    from None
        results = merge(loaded)
    else:
        if args.seeds < 1 or any(not 2 <= n <= 500 for n in args.nodes):
            raise UserError("evaluate: --seeds must be at least 1 and --nodes 2..500")
        crowd = {k: v for k, v in (("moves", args.moves), ("sa_setup", args.sa_setup),
                                   ("background", args.background)) if v is not None}
        grid = Grid(tuple(args.procedures), tuple(args.nodes), tuple(args.iid),
                    tuple(args.spi), tuple(args.vantage), args.seeds, args.moves_per_node, crowd)
        progress = None if args.quiet else (lambda line: print(line, file=sys.stderr,
                                                                  flush=True))
        keep = Path(args.keep) if args.keep else None
        results = run(grid, generate, keep, progress, max(1, args.jobs))
    for f in write(results, Path(args.output), args.self_contained):
        print(f)
    fails = check(summarise(results))
    for line in fails:
        print(f"precision below the bar: {line}", file=sys.stderr)
    return 1 if fails else 0
