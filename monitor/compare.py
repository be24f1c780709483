"""`mip6mon compare CAPTURE_A CAPTURE_B --keys ...`: the privacy metrics of two captures side by
side (e.g. the baseline lab scenario against a draft scenario), so the draft's claims (sections
6 and 7) become measurements and the places where its countermeasures still leak show.

`mip6mon compare --lab DIR... [--vantage V|matrix]` writes the Markdown tables of
docs/compare.md from lab output directories (each with capture.pcapng and keyring.toml), through
the same functions.
"""
from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

from dissectors.protocol import PATHS
from keys.errors import EXIT_INCOMPLETE, UserError
from keys.keyring import load_keyring
from monitor.tables import markdown_table, text_table

# (key, label) of the rows of the side-by-side table, in order
ROWS = (
    ("packets_seen", "packets the attacker sees"),
    ("profiles", "attacker profiles"),
    ("nodes_total", "real mobile nodes"),
    ("link_precision", "link precision"),
    ("link_recall", "link recall"),
    ("care_of", "care-of addresses tied to the home address"),
    ("followed_fraction", "movement followed (longest stretch / moves)"),
    ("home_address_exposed", "home address exposed (share of frames)"),
    ("anonymity_set_mean", "anonymity set size (mean)"),
    ("entropy_bits_mean", "anonymity entropy, bits (mean)"),
    ("degree_mean", "degree of anonymity H/log2(N) (mean)"),
    ("linking_rules", "rules that linked"),
)


@dataclass
class Measurement:
    label: str
    capture: str
    attacker: dict
    privacy: dict
    # why the capture was not read to its end (issue 13), None when it was: a metric of part
    # of a capture must not pass for the whole one's
    incomplete: str | None = None

    def row(self, key: str):
        p = self.privacy
        if key == "packets_seen":
            return self.attacker.get("packets_seen")
        if key == "care_of":
            return f"{p.get('care_of_tied', 0)}/{p.get('care_of_addresses', 0)}"
        if key == "linking_rules":
            return ", ".join(f"{r['name']} x{r['linking']}" for r in self.attacker.get("rules", [])
                             if r["linking"]) or "none"
        return p.get(key)

    def as_dict(self) -> dict:
        return {"label": self.label, "capture": self.capture,
                "complete": self.incomplete is None, "incomplete_reason": self.incomplete,
                "summary": {key: self.row(key) for key, _ in ROWS},
                "privacy": self.privacy,
                "rules": self.attacker.get("rules", []),
                "profiles": [{k: p[k] for k in ("id", "care_of_addresses", "addresses",
                                                "correspondents")} | {"frames": len(p["frames"])}
                             for p in self.attacker.get("profiles", [])]}


def label_of(capture: str) -> str:
    """A lab run's directory name (its scenario), else the file name."""
    path = Path(capture)
    return path.parent.name if path.stem == "capture" and path.parent.name else path.name


def measure(capture: str, keys: str | None, vantage: str = "all",
            allow_insecure: bool = False) -> Measurement:
    from monitor.privacy import privacy_score
    from monitor.report import analyse  # lazily: report imports every analyzer
    keyring = load_keyring(keys, allow_insecure) if keys else None
    analysis = analyse(capture, keyring, vantage, progress=f"compare {label_of(capture)}")
    return Measurement(label_of(capture), capture, analysis.attacker.report(),
                       privacy_score(analysis.attacker, analysis.keyed),
                       analysis.accounting.incomplete)


def warn_incomplete(measurements: list[Measurement]) -> int:
    """One line on stderr per capture not read to its end, as `report` says it; the exit
    status: EXIT_INCOMPLETE when any was, else 0."""
    cut = [m for m in measurements if m.incomplete is not None]
    sys.stdout.flush()
    for m in cut:
        print(f"mip6mon: incomplete: {m.capture}: {m.incomplete}", file=sys.stderr)
    return EXIT_INCOMPLETE if cut else 0


def _cell(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3f}".rstrip("0").rstrip(".") if value != int(value) else f"{int(value)}"
    return str(value)


def render_table(measurements: list[Measurement]) -> str:
    headers = ["metric"] + [m.label for m in measurements]
    rows = [[label] + [_cell(m.row(key)) for m in measurements] for key, label in ROWS
            if key != "linking_rules"]
    return "\n".join([text_table(headers, rows)] + [
        f"rules that linked in {m.label}: {m.row('linking_rules')}" for m in measurements])


def command_compare(args) -> int:
    vantage = getattr(args, "vantage", "all") or "all"
    if args.lab:
        return _lab_tables(args.lab, vantage)
    if not (args.capture_a and args.capture_b) or vantage == "matrix":
        raise UserError("compare takes two captures (CAPTURE_A CAPTURE_B), or --lab DIR... "
                        "(--vantage matrix only with --lab)")
    keys_b = args.keys_b or args.keys
    insecure = getattr(args, "allow_insecure_keyring", False)
    a = measure(args.capture_a, args.keys, vantage, insecure)
    b = measure(args.capture_b, keys_b, vantage, insecure)
    if a.label == b.label:
        a.label, b.label = f"A: {a.label}", f"B: {b.label}"
    if args.format == "json":
        json.dump({"vantage": vantage, "a": a.as_dict(), "b": b.as_dict()}, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        sys.stdout.write(f"attacker at {vantage}\n{render_table([a, b])}\n")
    return warn_incomplete([a, b])


# ---- docs/compare.md ----------------------------------------------------------------------

MD_COLUMNS = (("link_precision", "precision"), ("link_recall", "recall"),
              ("care_of", "CoAs tied to HoA"), ("followed_fraction", "movement followed"),
              ("home_address_exposed", "HoA exposed"), ("anonymity_set_mean", "anonymity set"),
              ("entropy_bits_mean", "entropy (bits)"), ("profiles", "profiles"),
              ("linking_rules", "rules that linked"))


def sentence(m: Measurement) -> str:
    """One sentence, generated from the numbers, that says what a row means."""
    p = m.privacy
    if p.get("link_precision") is None and p.get("link_recall") is None:
        return f"`{m.label}`: nothing to score (no keyed truth or no linkable frames)."
    rec, prec = p.get("link_recall") or 0.0, p.get("link_precision") or 0.0
    tied, coas = p.get("care_of_tied", 0), p.get("care_of_addresses", 0)
    linked = [r["name"] for r in m.attacker.get("rules", []) if r["linking"]]
    if rec >= 0.999:
        how = "links every packet of each node into one profile"
    elif rec >= 0.5:
        how = f"links most of each node's packets (recall {_cell(rec)})"
    else:
        how = f"links only fragments of each node's activity (recall {_cell(rec)})"
    tie = ("ties every care-of address to the real home address" if coas and tied == coas else
           f"ties {tied} of {coas} care-of addresses to the real home address")
    wrong = "" if prec >= 0.999 else f", and merges some different nodes (precision {_cell(prec)})"
    by = f" through {', '.join(linked)}" if linked else ""
    return f"`{m.label}`: the attacker {how}{by}, {tie}{wrong}."


def render_markdown(measurements: list[Measurement], vantage: str) -> str:
    table = markdown_table(["scenario", *(h for _, h in MD_COLUMNS)],
                           [[m.label, *(_cell(m.row(k)) for k, _ in MD_COLUMNS)]
                            for m in measurements])
    notes = [f"- {sentence(m)}" for m in measurements]
    return "\n".join([f"Attacker at `{vantage}`.", "", table, "", *notes]) + "\n"


PATH_VANTAGES = (*PATHS, "all")          # the matrix's columns: each path, then colluders
# rules that only repeat what one packet exchange already shows; the others are the leaks
_TRIVIAL = {"same-care-of-address", "same-init-cookie"}


def _cell_v(m: Measurement) -> str:
    p = m.privacy
    if not m.attacker.get("packets_seen"):
        return "sees nothing"
    return (f"P {_cell(p.get('link_precision'))} · R {_cell(p.get('link_recall'))} · "
            f"tied {p.get('care_of_tied', 0)}/{p.get('care_of_addresses', 0)} · "
            f"followed {_cell(p.get('followed_fraction'))}")


def matrix_sentence(label: str, by_vantage: dict[str, Measurement]) -> str:
    """One generated sentence per scenario: who ties, who follows, by which rules."""
    def tied_all(m):
        p = m.privacy
        return m.attacker.get("packets_seen") and p.get("care_of_addresses") and \
            p.get("care_of_tied") == p.get("care_of_addresses")

    def follows(m):
        followed = m.privacy.get("followed_fraction") or 0
        return m.attacker.get("packets_seen") and followed >= 0.999 \
            and m.privacy.get("care_of_addresses")

    paths = [v for v in PATH_VANTAGES if v != "all"]
    tie = [v for v in paths if tied_all(by_vantage[v])]
    fol = [v for v in paths if follows(by_vantage[v])]
    both = by_vantage["all"]
    precs = [by_vantage[v].privacy.get("link_precision") for v in PATH_VANTAGES]
    p = both.privacy
    rules = [r["name"] for r in both.attacker.get("rules", [])
             if r["linking"] and r["name"] not in _TRIVIAL]
    def who(vs: list[str], one: str, many: str) -> str:
        return " and ".join(f"`{v}`" for v in vs) + " " + (one if len(vs) == 1 else many)

    alone = ("alone, " + who(tie, "ties", "each tie") + " every care-of address to the home "
             "address" if tie else "no single path ties every care-of address to the home address")
    alone += ("; " + who(fol, "follows", "each follow") + " every move" if fol else
              "; none follows every move")
    followed = p.get("followed_fraction")
    merged = any(x is not None and x < 0.999 for x in precs)
    together = (f"colluding, the eavesdroppers tie {p.get('care_of_tied', 0)} of "
                f"{p.get('care_of_addresses', 0)} care-of addresses and follow "
                + (f"{round(100 * followed)}% of the movement" if followed is not None
                   else "none of the movement")
                + (f" (by {', '.join(rules)})" if rules else ""))
    tail = ("; some nodes are merged (precision below 1)" if merged else
            ", never merging two nodes")
    return f"`{label}`: {alone}; {together}{tail}."


def render_matrix(labels: list[str], grid: dict[str, dict[str, Measurement]]) -> str:
    """Markdown: one row per scenario, one column per vantage point, a sentence per row."""
    table = markdown_table(["scenario", *(f"`{v}`" for v in PATH_VANTAGES)],
                           [[label, *(_cell_v(grid[label][v]) for v in PATH_VANTAGES)]
                            for label in labels])
    notes = [f"- {matrix_sentence(label, grid[label])}" for label in labels]
    legend = ("P = pairwise link precision, R = link recall, tied = care-of addresses that a "
              "profile holds together with the node's real home address, followed = longest "
              "stretch of consecutive care-of addresses one profile covers / moves (mean "
              "over nodes).")
    return "\n".join([legend, "", table, "", *notes]) + "\n"


def _lab_tables(dirs: list[str], vantage: str) -> int:
    """Markdown tables of lab output directories: one vantage point's, or the matrix."""
    def measured(d: str, v: str) -> Measurement:
        return measure(str(Path(d) / "capture.pcapng"), str(Path(d) / "keyring.toml"), v)
    if vantage != "matrix":
        measurements = [measured(d, vantage) for d in dirs]
        sys.stdout.write(render_markdown(measurements, vantage))
        return warn_incomplete(measurements)
    labels = [Path(d).name for d in dirs]
    grid = {label: {v: measured(d, v) for v in PATH_VANTAGES}
            for label, d in zip(labels, dirs, strict=True)}
    sys.stdout.write(render_matrix(labels, grid))
    # one line per capture, not one per vantage point
    return warn_incomplete([grid[label][PATH_VANTAGES[-1]] for label in labels])
