"""The data shipped with the package: the built-in derivations and the templates.

In the repository they sit beside the package (``derivations/``,
``templates/``) and ``pip install`` maps them into it
as ``symelbo.derivations`` and ``symelbo.templates``. This finds them either
way, so a source checkout that shadows an installed copy still works.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

__all__ = ["data_dir"]


def data_dir(name: str):
    """The folder of shipped data ``name`` ("derivations" or "templates"), as a Traversable."""
    try:
        return resources.files(f"symelbo.{name}")
    except ModuleNotFoundError:
        return Path(__file__).resolve().parents[2] / name
