"""The project's own modules, found by walking its packages: for source hashes and the layering test.

The subpackages live in folders of their own at the repository root
(``pyproject.toml`` maps them), so the walk starts from each of them rather
than from ``spikeacc``'s folder alone.
"""

from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path

__all__ = ["SUBPACKAGES", "modules"]

SUBPACKAGES = ("golden", "hw", "verif", "energy", "app")


def modules() -> dict[str, Path]:
    """Every module of spikeacc by dotted name, with its source file (subpackages imported, not their modules)."""
    found = {}
    for package in ["spikeacc"] + [f"spikeacc.{sub}" for sub in SUBPACKAGES]:
        pkg = importlib.import_module(package)
        found[package] = Path(pkg.__file__)
        for info in pkgutil.walk_packages(pkg.__path__, f"{package}."):
            if info.name.split(".")[1] in SUBPACKAGES and package == "spikeacc":
                continue
            found[info.name] = Path(info.module_finder.find_spec(info.name).origin)
    return dict(sorted(found.items()))
