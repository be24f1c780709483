"""The layers depend one way (docs/DESIGN.md): keys <- dissectors <- monitor <- web, with lab
beside them. Every import statement of every module, including those inside functions, is
checked against this table, the one place where the layering is declared."""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# package -> the packages its modules may import
MAY_IMPORT = {
    "keys": {"keys"},
    "dissectors": {"keys", "dissectors"},
    "monitor": {"keys", "dissectors", "monitor"},
    "web": {"keys", "dissectors", "monitor", "web", "lab"},    # the demo builds a lab scenario
    "lab": {"keys", "dissectors", "lab"},                      # beside the analyzers, never on them
}
# The command line sits on top of every layer: it dispatches to the lab and the dashboard.
ON_TOP = {"monitor.cli"}


def _imports(path: Path) -> list[tuple[int, str]]:
    """(line, top-level package) of every absolute import in a module."""
    tree = ast.parse(path.read_text(), str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name.split(".")[0]) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module.split(".")[0]))
    return found


def test_no_layer_imports_a_higher_one():
    ours = set(MAY_IMPORT)
    wrong = []
    for package, allowed in MAY_IMPORT.items():
        for path in sorted((ROOT / package).rglob("*.py")):
            module = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            if module in ON_TOP:
                continue
            for line, imported in _imports(path):
                if imported in ours and imported not in allowed:
                    wrong.append(f"{path.relative_to(ROOT)}:{line} imports {imported}")
    assert not wrong, "imports against the layering:\n" + "\n".join(wrong)


def test_the_table_knows_every_package():
    packages = {p.parent.name for p in ROOT.glob("*/__init__.py")}
    assert packages - {"tests", "benchmarks"} == set(MAY_IMPORT)
