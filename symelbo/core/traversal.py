"""Positions in an expression: where a rule may act, and in which direction it moves the whole.

A position is a *path*, the tuple of argument indices from the root to a
subterm (``()`` is the root). Paths are plain data, so a proof certificate can
record where a rewrite happened and the kernel can find the place again.

- :func:`subterm_at`, :func:`replace_at`: read and rebuild along a path.
- :func:`rewritable_positions`: where rewrites act (never inside the densities
  an operator binds, nor a variable or parameter slot).
- :func:`monotone_positions`: where the whole is monotone in the subterm, with
  the polarity (+1 increasing, -1 decreasing) that an inequality rule needs.
"""

from __future__ import annotations

from typing import Iterator

import sympy as sp

from symelbo.core.notation import ELBO, KL, Density, Entropy, Expectation, Gradient, Marginal, known_positive

__all__ = ["Path", "subterm_at", "replace_at", "body_slots", "rewritable_positions",
           "monotone_children", "monotone_positions", "polarity_of"]

Path = tuple[int, ...]

#: Nodes whose arguments are never rewritten: their densities are bound, their slots names.
_OPAQUE = (sp.Tuple, Density, KL, Entropy, ELBO)


def subterm_at(expr: sp.Expr, path: Path) -> sp.Expr:
    """The subterm of ``expr`` at ``path``; IndexError when the path leaves the tree."""
    for index in path:
        if not 0 <= index < len(expr.args):
            raise IndexError(f"no argument {index} in {type(expr).__name__}")
        expr = expr.args[index]
    return expr


def replace_at(expr: sp.Expr, path: Path, new: sp.Expr) -> sp.Expr:
    """``expr`` with the subterm at ``path`` replaced by ``new`` (rebuilt, SymPy evaluating)."""
    if not path:
        return new
    index, rest = path[0], path[1:]
    args = list(expr.args)
    args[index] = replace_at(args[index], rest, new)
    return expr.func(*args)


def body_slots(expr: sp.Expr) -> range:
    """The argument indices of ``expr`` that hold expressions a rule may rewrite."""
    if expr.is_Atom or isinstance(expr, _OPAQUE):
        return range(0)
    first = 1 if isinstance(expr, (Expectation, Marginal, Gradient)) else 0
    return range(first, len(expr.args))


def rewritable_positions(expr: sp.Expr, path: Path = ()) -> Iterator[tuple[Path, sp.Expr]]:
    """Yield (path, subterm) for every place a rewrite may act, the root first."""
    stack = [(path, expr)]
    while stack:
        here, node = stack.pop()
        yield here, node
        stack.extend((here + (i,), node.args[i]) for i in reversed(body_slots(node)))


def monotone_children(expr: sp.Expr) -> list[tuple[int, int]]:
    """(argument index, +1/-1) for the arguments in which ``expr`` is monotone.

    A sum in each term; a product in a factor whose cofactor is a nonzero number
    or known positive; log and exp; an expectation or a sum in its body (positive
    weights); a power with a numeric exponent of a known positive base.
    """
    if expr.is_Add:
        return [(i, 1) for i in range(len(expr.args))]
    if expr.is_Mul:
        out = []
        for i in range(len(expr.args)):
            rest = sp.Mul(*(expr.args[:i] + expr.args[i + 1:]))
            if rest.is_Number and rest != 0:
                out.append((i, 1 if rest > 0 else -1))
            elif known_positive(rest):
                out.append((i, 1))
        return out
    if isinstance(expr, (sp.log, sp.exp)):
        return [(0, 1)]
    if isinstance(expr, (Expectation, Marginal)):
        return [(1, 1)]
    if expr.is_Pow and expr.exp.is_Number and expr.exp != 0 and known_positive(expr.base):
        return [(0, 1 if expr.exp > 0 else -1)]
    return []


def monotone_positions(expr: sp.Expr) -> Iterator[tuple[Path, sp.Expr, int]]:
    """Yield (path, subterm, polarity) for every monotone position, the root first."""
    stack = [((), expr, 1)]
    while stack:
        path, node, polarity = stack.pop()
        yield path, node, polarity
        children = monotone_children(node)
        stack.extend((path + (i,), node.args[i], polarity * sign) for i, sign in reversed(children))


def polarity_of(expr: sp.Expr, path: Path) -> int | None:
    """The polarity of the position ``path`` in ``expr``, or None when it is not monotone."""
    polarity = 1
    for index in path:
        signs = dict(monotone_children(expr))
        if index not in signs:
            return None
        polarity *= signs[index]
        expr = expr.args[index]
    return polarity
