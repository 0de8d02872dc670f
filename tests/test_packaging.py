"""What `pip install edgehar` (not editable) puts on a board: every package of the tree.

The development venv installs edgehar editable, where the package-dir mapping finds any
folder; a wheel holds only the packages pyproject.toml lists, so one left off the list
(edgehar.cli once was) breaks every non-editable install while all tests pass.
"""

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_wheel_lists_every_package_of_the_tree():
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    folders = {folder: name for name, folder in setuptools["package-dir"].items()}
    found = {".".join([name, *init.parent.relative_to(ROOT / folder).parts])
             for folder, name in folders.items() for init in (ROOT / folder).rglob("__init__.py")}
    assert found and found == set(setuptools["packages"])
