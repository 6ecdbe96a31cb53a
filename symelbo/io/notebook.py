"""Jupyter display of a checked derivation, registered from outside the core.

The core's result records are plain data; this module teaches IPython to show
a :class:`~symelbo.core.checker.CheckResult` as display math (``text/latex``)
and as its Markdown document (``text/markdown``, which nbconvert's HTML and
JupyterLab prefer). ``import symelbo`` calls :func:`register` when IPython is
already loaded, so a notebook shows results without further ado.

Map of this module:

- :func:`register`            the two displays, for the running IPython.
- :func:`notebook_markdown`   the Markdown document as a notebook shows it: each
                              display block in a box that scrolls sideways, the
                              rules used as a list (their laws in running text).

Why the notebook's Markdown differs from ``--format markdown``: nbconvert's
HTML loads MathJax 2 with automatic line breaking, which breaks inline math to
the width of its container. A table cell is as narrow as the browser can make
it while the page loads, so a rule's law in the rules table came out one token
a line; an ``aligned`` block cannot be
broken at all, so a wide one ran off the right edge of the page.
tests/test_notebook_browser.py renders a notebook in Chromium to hold both.
"""

from __future__ import annotations

import re
import sys

__all__ = ["register", "notebook_markdown", "DISPLAY_CLASS"]

#: The class of the box around each display block (the browser test finds it by it).
DISPLAY_CLASS = "symelbo-display"

# One ``$$ ... $$`` display block of the Markdown document, its delimiters on lines of their own.
_DISPLAY = re.compile(r"^\$\$\n.*?\n\$\$$", re.M | re.S)
# The rules table, the document's last section.
_RULES_HEADING = "\n## Rules used\n"


def _boxed(match: re.Match) -> str:
    # blank lines around the block: the <div> lines are HTML blocks of their own,
    # the math between them is Markdown, as CommonMark, mistune and marked read it
    return (f'<div class="{DISPLAY_CLASS}" style="overflow-x: auto; overflow-y: hidden">\n\n'
            f"{match.group(0)}\n\n</div>")


def _rules_list(view) -> str:
    """The rules used as a list, each law in running text as wide as the page.

    In a table MathJax 2 breaks a law to the width its column happens to have
    while the page loads (braces and one-cell arrays do not stop it), one token
    a line; a list item is as wide as the text, which every law fits.
    """
    from symelbo.io.render import markdown_prose
    lines = ["## Rules used", ""]
    for rule in view.rules:
        conditions = "".join(
            f"${piece.text}$" if piece.is_math else
            "`" + piece.text.replace("`", "'") + "`" if piece.is_rule else markdown_prose(piece.text)
            for piece in rule.condition_segments)
        name = rule.name.replace("`", "'")
        lines.append(f"- `{name}`: ${rule.law}$" + (f"; side conditions: {conditions}." if conditions else "."))
    return "\n".join(lines) + "\n"


def notebook_markdown(result) -> str:
    """``_repr_markdown_``: the Markdown document (:func:`symelbo.io.render.markdown_repr`) for a
    notebook: display blocks scroll sideways in their box instead of running off the page, and
    the rules used are a list, each law on one line."""
    from symelbo.io.render import document_view, markdown_repr
    text = markdown_repr(result)
    if _RULES_HEADING in text:
        text = text[:text.index(_RULES_HEADING) + 1] + _rules_list(document_view(result))
    return _DISPLAY.sub(_boxed, text)


def register(shell=None) -> bool:
    """Register the LaTeX and Markdown displays with ``shell`` (default: the running
    IPython); False when there is none."""
    if shell is None:
        ipython = sys.modules.get("IPython")
        shell = ipython.get_ipython() if ipython is not None else None
        if shell is None:
            return False
    from symelbo.core.checker import CheckResult
    from symelbo.io.render import latex_repr
    formatters = shell.display_formatter.formatters
    formatters["text/latex"].for_type(CheckResult, latex_repr)
    formatters["text/markdown"].for_type(CheckResult, notebook_markdown)
    return True
