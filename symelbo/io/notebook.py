"""Jupyter display of a checked derivation, registered from outside the core.

The core's result records are plain data; this module teaches IPython to show
a :class:`~symelbo.core.checker.CheckResult` as display math (``text/latex``)
and as its Markdown document. ``import symelbo`` calls :func:`register` when
IPython is already loaded, so a notebook shows results without further ado.
"""

from __future__ import annotations

import sys

__all__ = ["register"]


def register(shell=None) -> bool:
    """Register the LaTeX and Markdown displays with ``shell`` (default: the running
    IPython); False when there is none."""
    if shell is None:
        ipython = sys.modules.get("IPython")
        shell = ipython.get_ipython() if ipython is not None else None
        if shell is None:
            return False
    from symelbo.core.checker import CheckResult
    from symelbo.io.render import latex_repr, markdown_repr
    formatters = shell.display_formatter.formatters
    formatters["text/latex"].for_type(CheckResult, latex_repr)
    formatters["text/markdown"].for_type(CheckResult, markdown_repr)
    return True
