"""Printing expressions as written: ``.calc`` text and LaTeX, terms in their stored order.

Parsed and generated expressions are built unevaluated, so their terms are
stored in the order a person wrote them; ``order="none"`` keeps that order.
"""

from __future__ import annotations

import sympy as sp
from sympy.printing.str import StrPrinter

__all__ = ["calc_str", "latex_str"]


class _CalcPrinter(StrPrinter):
    """The ``.calc`` syntax: what it prints, the parser reads back."""

    def _print_log(self, expr):
        return f"log({self._print(expr.args[0])})"

    def _print_exp(self, expr):
        return f"exp({self._print(expr.args[0])})"


_CALC = _CalcPrinter({"order": "none"})


def calc_str(expr: sp.Expr) -> str:
    """``expr`` in ``.calc`` syntax."""
    return _CALC.doprint(expr)


def latex_str(expr: sp.Expr) -> str:
    """``expr`` as LaTeX, through the notation's printer hooks."""
    return sp.latex(expr, order="none")
