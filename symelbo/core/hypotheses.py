"""What a file assumes and defines: factorisations and definitions, as rewrites and as semantics.

Map of this module:

- :class:`Factorisation`  ``assume: q(Z1, Z2) = q1(Z1) * q2(Z2)``: a directed
  factorisation of a density (mean field, conditional independence).
- :class:`Definition`     ``define: qstar(Z1) propto_{Z1} body`` (a normalised
  density) or ``define: ptilde(X, Z1) = body`` (a function, carried by
  :class:`~symelbo.core.notation.Defined` nodes).
- :class:`Hypotheses`     all of a file's, with the node rewrites of the rules
  ``assumption`` and ``definition``; :func:`assuming` makes them the ones in force
  (the normal forms and the kernel read :func:`active`).

The laws, for ``L(V | G) = f1(A1 | B1) ... fn(An | Bn)`` (each ``Bi`` among the
variables of later factors and G):

- a density of L over ``U``: ``L(U) = sum_{(V u G) \\ U} L(G) f1 ... fn`` (the
  marginal of the product), with ``L(A | B) = L(A, B) / L(B)`` first;
- ``E_{L(V | G)}[f] = E_{fn}[... E_{f1}[f]]`` (the product as iterated expectations);
- a factor that names L itself (``q(Z1, Z2) = q(Z1) * q(Z2)``) is L's own
  conditional; in a normal form it is an opaque density of its own (its name
  carries brackets no file can write), so the rewrites cannot loop.

A normalised definition unfolds as ``qstar(Z1) = body / sum_{Z1}[body]``.
"""

from __future__ import annotations

from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field

import sympy as sp

from symelbo.core.notation import Defined, Density, Expectation, Marginal

__all__ = ["Factorisation", "Definition", "Hypotheses", "NO_HYPOTHESES", "assuming", "active",
           "factorisation_problem", "factor_key", "renamed", "bound_variables", "Captured"]


def factor_key(left: Density, factor: Density) -> str:
    """The opaque name of a factor that is the left side's own conditional, as in
    ``q(Z1, Z2) = q(Z1) * q(Z2)``: ``q[Z1]``; a factor of another name keeps its own."""
    inner = ",".join(v.name for v in factor.variables)
    if factor.given:
        inner += "|" + ",".join(g.name for g in factor.given)
    return f"{left.name}[{inner}]"


@dataclass(frozen=True)
class Factorisation:
    """``left = factors[0] * ... * factors[-1]``, a directed factorisation."""

    left: Density
    factors: tuple
    text: str = ""
    line: int = 0

    @property
    def variables(self) -> tuple:
        return tuple(self.left.variables)

    @property
    def given(self) -> tuple:
        return tuple(self.left.given)

    def own(self, factor: Density) -> bool:
        """Whether a factor is the left side's own conditional (the same density name)."""
        return factor.key == self.left.key

    def opaque(self, factor: Density) -> Density:
        """The factor as it stands in a normal form (an opaque name for L's own ones)."""
        if not self.own(factor):
            return factor
        return Density(sp.Symbol(factor_key(self.left, factor)), factor.variables, factor.given,
                       factor.params)

    def product(self) -> sp.Expr:
        return sp.Mul(*[self.opaque(f) for f in self.factors])

    def marginal(self, dens: Density):
        """``dens`` (a density of L's name, unconditional) in factors, or None when it is
        a marginal over L's given variables only (nothing to rewrite)."""
        kept = set(dens.variables)
        if not kept & set(self.variables):
            return None
        given = self.given
        body = self.product() * (self.left.with_variables(given) if given else sp.S.One)
        for var in sorted(set(self.variables) | set(given), key=lambda s: s.name, reverse=True):
            if var not in kept:
                body = Marginal(var, body)
        return body

    def iterated(self, body: sp.Expr) -> sp.Expr:
        """``E_{L(V | G)}[body]`` as iterated expectations over the factors: the last
        factor outermost (the others condition on it); for factors that condition on
        nothing of each other (mean field), the first outermost, as written."""
        factors = self.factors
        if all(set(f.given) <= set(self.given) for f in factors):
            factors = tuple(reversed(factors))
        for factor in factors:
            body = Expectation(self.opaque(factor), body)
        return body


def factorisation_problem(left: Density, factors, applied: dict) -> tuple[int, str] | None:
    """Why ``left = product of factors`` is not a directed factorisation: (index of the
    offending factor, or -1 for the left side, message); None when it is one.

    ``applied``: density key -> every variable name it is applied to in the file.
    """
    variables = [v.name for v in left.variables]
    given = {g.name for g in left.given}
    all_of_left = set(variables) | given
    extra = sorted(applied.get(left.key, set()) - all_of_left)
    if extra:
        return -1, (f"the left side must apply {left.name} to every variable it is applied to "
                    f"in the file (it is also applied to {', '.join(extra)})")
    introduced: list[str] = []
    for index in range(len(factors) - 1, -1, -1):   # the last factor is introduced first
        factor = factors[index]
        for v in factor.variables:
            if v.name not in variables:
                return index, (f"{factor} introduces {v.name}, which is not a variable of {left}"
                               + (" left of its bar" if v.name in given else ""))
            if v.name in introduced:
                return index, f"{v.name} appears left of a bar in two factors"
            introduced.append(v.name)
        for g in factor.given:
            if g.name not in given and g.name not in introduced:
                return index, (f"{factor} conditions on {g.name}, which no factor to its right "
                               "introduces (a directed factorisation conditions only on variables "
                               "of later factors)")
    missing = [v for v in variables if v not in introduced]
    if missing:
        return -1, f"no factor introduces {', '.join(missing)}"
    return None


class Captured(ValueError):
    """A renaming would bring a name under an operator that binds it."""


def bound_variables(expr: sp.Expr) -> set:
    """Every variable some operator in ``expr`` sums, averages or integrates over."""
    from symelbo.core.notation import ELBO, KL, Entropy
    bound = set()
    for node in sp.preorder_traversal(expr):
        if isinstance(node, (Expectation, Entropy)):
            bound |= set(node.density.variables)
        elif isinstance(node, Marginal):
            bound.add(node.variable)
        elif isinstance(node, (KL, ELBO)):
            bound |= set(node.args[0].variables)
    return bound


def renamed(expr: sp.Expr, mapping: dict) -> sp.Expr:
    """``expr`` with its free variables renamed at once (``{Z1: W}``), densities' too.

    Refused (:class:`Captured`) when an old or a new name is bound anywhere in
    ``expr``: a bound Z1 is not the Z1 renamed, and a W brought under ``sum_W``
    would be caught by it.
    """
    mapping = {old: new for old, new in mapping.items() if old != new}
    if not mapping:
        return expr
    clash = bound_variables(expr) & (set(mapping) | set(mapping.values()))
    if clash:
        raise Captured(f"{', '.join(sorted(v.name for v in clash))} is summed or averaged over "
                       "inside it")
    return expr.xreplace(mapping)


@dataclass(frozen=True)
class Definition:
    """``name(variables) = body`` (``normalised`` False) or ``propto_{variables} body`` (True)."""

    head: sp.Expr          # the Density (normalised) or the Defined node as written
    body: sp.Expr
    normalised: bool
    text: str = ""
    line: int = 0

    @property
    def name(self) -> str:
        return self.head.name

    @property
    def variables(self) -> tuple:
        return tuple(self.head.variables)

    def unfold(self, dens: Density) -> sp.Expr:
        """A normalised definition at ``dens`` (its variables, perhaps renamed):
        ``body / sum_V[body]``."""
        body = self.body
        if tuple(dens.variables) != self.variables:
            body = renamed(body, dict(zip(self.variables, dens.variables)))
        normaliser = body
        for var in reversed(dens.variables):
            normaliser = Marginal(var, normaliser)
        return body / normaliser


@dataclass(frozen=True)
class Hypotheses:
    """A file's factorisations and definitions (empty for a file without them)."""

    factorisations: tuple = ()
    definitions: tuple = ()
    _by_key: dict = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self):
        self._by_key.update({f.left.key: f for f in self.factorisations})
        self._by_key.update({("def", d.name): d for d in self.definitions if d.normalised})

    def __bool__(self) -> bool:
        return bool(self.factorisations or self.definitions)

    def factorisation(self, key: str):
        return self._by_key.get(key)

    def definition(self, name: str):
        """The normalised definition of a density name, or None."""
        return self._by_key.get(("def", name))

    def texts(self) -> list[tuple[str, str]]:
        """("assume" | "define", text as written), in the file's order."""
        items = [("assume", f.text, f.line) for f in self.factorisations]
        items += [("define", d.text, d.line) for d in self.definitions]
        return [(kind, text) for kind, text, _ in sorted(items, key=lambda item: item[2])]

    # -- the rules ``assumption`` and ``definition`` ----------------------------
    def rewrites(self, rule: str) -> tuple:
        if rule == "assumption" and self.factorisations:
            return (self._factor_density, self._factor_expectation)
        if rule == "definition" and self.definitions:
            return (_unfold_function, self._unfold_density)
        return ()

    def _factor_density(self, e):
        """A density of an assumed name, written in the factors."""
        if not isinstance(e, Density):
            return None
        fact = self._by_key.get(e.key)
        if fact is None:
            return None
        if e.given:
            if set(e.given) == set(fact.given) and set(e.variables) <= set(fact.variables):
                # a conditional given exactly L's conditions: the product, marginalised
                body = fact.product()
                for var in sorted(set(fact.variables) - set(e.variables), key=lambda s: s.name,
                                  reverse=True):
                    body = Marginal(var, body)
                return body
            joint = e.with_variables(e.variables + e.given)
            return joint / e.with_variables(e.given)
        return fact.marginal(e)

    def _factor_expectation(self, e):
        """E over an assumed density (all of its variables) as iterated expectations."""
        if not isinstance(e, Expectation):
            return None
        dens = e.density
        fact = self._by_key.get(dens.key)
        if fact is None or set(dens.variables) != set(fact.variables) or set(dens.given) != set(fact.given):
            return None
        return fact.iterated(e.body)

    def _unfold_density(self, e):
        """A density named by a normalised definition: ``body / sum_V[body]``."""
        if isinstance(e, Density):
            definition = self.definition(e.name)
            if definition is not None and not e.given:
                return definition.unfold(e)
        return None


def _unfold_function(e):
    """``ptilde(X, Z1)`` -> its body."""
    if isinstance(e, Defined):
        return e.body
    return None


NO_HYPOTHESES = Hypotheses()
_ACTIVE: ContextVar = ContextVar("symelbo_hypotheses", default=NO_HYPOTHESES)


def active() -> Hypotheses:
    """The hypotheses in force for the step being normalised or replayed."""
    return _ACTIVE.get()


@contextmanager
def assuming(hypotheses: Hypotheses):
    """Make ``hypotheses`` the ones in force within the block."""
    token = _ACTIVE.set(hypotheses or NO_HYPOTHESES)
    try:
        yield hypotheses
    finally:
        _ACTIVE.reset(token)

