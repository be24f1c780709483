"""What pyproject.toml ships: every directory of the five packages is a listed package, and
every file that is not Python matches its package's package-data (a directory setuptools
finds but does not list is a build warning today and missing from the wheel tomorrow). A
README.md is the repository's documentation, not the package's."""
import fnmatch
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SETUPTOOLS = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
TOP = ("keys", "dissectors", "monitor", "web", "lab")


def _directories() -> list[Path]:
    return [path for top in TOP for path in [ROOT / top, *sorted((ROOT / top).rglob("*"))]
            if path.is_dir() and path.name != "__pycache__"]


def test_every_directory_is_a_listed_package():
    listed = set(SETUPTOOLS["packages"])
    found = {".".join(path.relative_to(ROOT).parts) for path in _directories()}
    assert found == listed


def test_every_data_file_is_package_data():
    data = SETUPTOOLS["package-data"]
    unshipped = [
        str(path.relative_to(ROOT))
        for directory in _directories() for path in sorted(directory.iterdir())
        if path.is_file() and path.suffix not in (".py", ".pyc") and path.name != "README.md"
        and not any(fnmatch.fnmatch(path.name, pattern)
                    for pattern in data.get(".".join(directory.relative_to(ROOT).parts), []))]
    assert not unshipped
