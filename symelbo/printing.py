"""Printing expressions as written: ``.calc`` text and LaTeX, terms in their stored order.

Parsed and generated expressions are built unevaluated, so their terms are
stored in the order a person wrote them; ``order="none"`` keeps that order.
"""

from __future__ import annotations

import sympy as sp
from sympy.printing.latex import LatexPrinter
from sympy.printing.str import StrPrinter

__all__ = ["calc_str", "latex_str"]


class _CalcPrinter(StrPrinter):
    """The ``.calc`` syntax: what it prints, the parser reads back."""

    def _print_log(self, expr):
        from .notation import Density
        if isinstance(expr.args[0], Density):  # the file format's `log p(X)`
            return f"log {self._print(expr.args[0])}"
        return f"log({self._print(expr.args[0])})"

    def _print_exp(self, expr):
        return f"exp({self._print(expr.args[0])})"


_CALC = _CalcPrinter({"order": "none"})


def calc_str(expr: sp.Expr) -> str:
    """``expr`` in ``.calc`` syntax."""
    return _CALC.doprint(expr)


class _LatexPrinter(LatexPrinter):
    """SymPy's LaTeX printer, with ``\\log p(X)`` for the log of a density or a symbol."""

    def _print_log(self, expr, exp=None):
        from .notation import Density
        arg = expr.args[0]
        if isinstance(arg, (Density, sp.Symbol)):
            text = rf"\log {self._print(arg)}"
        else:
            text = rf"\log\left({self._print(arg)}\right)"
        return text if exp is None else rf"\log^{{{exp}}} {text[5:]}"


_LATEX = _LatexPrinter({"order": "none"})


def latex_str(expr: sp.Expr) -> str:
    """``expr`` as LaTeX, through the notation's printer hooks."""
    return _LATEX.doprint(expr)


def calc_text(derivation, comment: str = "") -> str:
    """A derivation as a ``.calc`` file: headers, then chains with aligned ``by`` columns."""
    lines = [f"# {line}".rstrip() for line in comment.splitlines()]
    for key, value in derivation.headers.items():
        lines.append(f"{key}: {value}")
    for chain in derivation.chains:
        lines.append("")
        rows = [("", calc_str(chain.first), "")]
        rows += [(s.relation, calc_str(s.rhs), ", ".join(s.by)) for s in chain.steps]
        width = max(len(text) for _, text, _ in rows)
        for relation, text, by in rows:
            row = f"{relation:>4} {text}" if relation else f"     {text}"
            if by:
                row = f"{row:<{width + 5}}    by {by}"
            lines.append(row.rstrip())
    return "\n".join(lines) + "\n"
