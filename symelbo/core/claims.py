"""What a step up to a constant, or a proportionality, claims: one plain equality.

``lhs = rhs + const_{V}`` claims that ``D = lhs - rhs`` (consts left out) does not
depend on V; ``lhs propto_{V} rhs`` claims the same of ``D = log lhs - log rhs``
(so both sides must be positive). Each is read as an ordinary equality that
holds exactly when the claim does:

- for variables V: ``D = E_{any(V)}[D]``, with ``any`` a density over V that no
  file names. A function of V equal to its own average under every density
  over V is constant in V, and a constant is its own average;
- for a density name q1 (``const_{q1}``: constant in q1 itself, as Bishop's
  10.6 says of the ELBO): ``D = D'``, where D' is D with q1 replaced by a
  density q1' no file names, and every density an assumption or a definition
  makes from q1 replaced by its copy made from q1'.

The checker tests, refutes and searches the equality; the kernel proves it.
Both read a step through :func:`equality_reading`, so they judge one claim.
"""

from __future__ import annotations

import sympy as sp

from symelbo.core.hypotheses import Definition, Factorisation, Hypotheses
from symelbo.core.notation import Defined, Density, Expectation, split_const, variable

__all__ = ["equality_reading", "is_reading", "reading_rules", "AVERAGING_DENSITY", "READING_WORDS",
           "READING_RULES"]

#: The rules the average over ``any(V)`` itself takes (E_{any}[D] = D once D is free
#: of V): part of reading the claim, so a step's ``by`` need not name them.
READING_RULES = ("linearity_expectation", "expectation_constant")

#: The name of the density over V that a constancy in V averages under.
AVERAGING_DENSITY = "any"

#: How a counterexample to a reading is explained.
READING_WORDS = {
    "constant": "the step says lhs - rhs does not depend on {names}; here lhs - rhs "
                "differs from its average over {names} (the rhs shown)",
    "propto": "the step says lhs / rhs does not depend on {names}; here log lhs - log rhs "
              "differs from its average over {names} (the rhs shown)",
}


def is_reading(relation: str, constant_in) -> bool:
    """Whether a step is read through :func:`equality_reading` (it is not a plain claim)."""
    return relation == "propto" or bool(constant_in)


def equality_reading(lhs: sp.Expr, relation: str, rhs: sp.Expr, constant_in,
                     hypotheses: Hypotheses) -> tuple[sp.Expr, sp.Expr, Hypotheses]:
    """``(left, right, hypotheses)``: the equality ``left = right`` that the step claims,
    under the file's hypotheses extended by the copies it needs."""
    lhs, rhs = split_const(lhs)[0], split_const(rhs)[0]
    if relation == "propto":
        difference = sp.log(lhs) - sp.log(rhs)
    else:
        difference = lhs - rhs
    names = tuple(constant_in)
    mentioned = _density_names(difference, hypotheses)
    density_names = [n for n in names if n in mentioned or _is_density_name(n, hypotheses)]
    variables = [variable(n) for n in names if n not in density_names]
    right = difference
    if density_names:
        right, hypotheses = _renamed(difference, set(density_names), hypotheses)
    if variables:
        taken = _density_names(right, hypotheses)
        name = AVERAGING_DENSITY
        suffix = 1
        while name in taken:
            name, suffix = f"{AVERAGING_DENSITY}{suffix}", suffix + 1
        right = Expectation(Density(name, variables), right)
    return difference, right, hypotheses


def reading_rules(by, relation: str, constant_in, hypotheses: Hypotheses) -> tuple:
    """A step's ``by`` with the rules its reading takes added (none when it names none)."""
    if not by or not is_reading(relation, constant_in):
        return tuple(by)
    if all(_is_density_name(n, hypotheses) for n in constant_in) and relation != "propto":
        return tuple(by)   # a renamed density takes no average
    return tuple(by) + tuple(r for r in READING_RULES if r not in by)


def _is_density_name(name: str, hypotheses: Hypotheses) -> bool:
    return any(f.left.name == name or any(g.name == name for g in f.factors)
               for f in hypotheses.factorisations) or any(d.name == name for d in hypotheses.definitions)


def _density_names(expr: sp.Expr, hypotheses: Hypotheses) -> set[str]:
    names = {d.name for d in expr.atoms(Density)} | {d.name for d in expr.atoms(Defined)}
    for fact in hypotheses.factorisations:
        names |= {fact.left.name} | {f.name for f in fact.factors}
    names |= {d.name for d in hypotheses.definitions}
    return names


def _prime(name: str) -> str:
    return name + "'"   # no file can write a ', so the copy is fresh


def _renamed(expr: sp.Expr, names: set[str], hypotheses: Hypotheses):
    """``expr`` with the densities ``names`` (and all made from them) replaced by fresh copies."""
    # Down first, from the names written: a density an assumption or a definition makes
    # has no freedom of its own; to vary it is to vary what it is made of (else "constant
    # in q" would hold vacuously for q = q1 q2). Then up: a density made from a varied
    # one (an assumed product, a definition's body) varies with it, and is renamed too.
    makers = {f.left.name: {g.name for g in f.factors if g.key != f.left.key}
              for f in hypotheses.factorisations}
    for definition in hypotheses.definitions:
        makers[definition.name] = _density_names(definition.body, Hypotheses())
    pending = list(names)
    while pending:
        for part in makers.get(pending.pop(), ()):
            if part not in names:
                names.add(part)
                pending.append(part)
    changed = True
    while changed:
        changed = False
        for made, parts in makers.items():
            if made not in names and parts & names:
                names.add(made)
                changed = True

    def rename(e):
        return e.replace(lambda n: isinstance(n, Density) and n.name in names,
                         lambda n: Density(sp.Symbol(_prime(n.name)), n.variables, n.given, n.params,
                                           evaluate=False))

    copies = []
    for fact in hypotheses.factorisations:
        if fact.left.name in names:
            copies.append(Factorisation(rename(fact.left), tuple(rename(f) for f in fact.factors),
                                        fact.text, fact.line))
    definitions = []
    for definition in hypotheses.definitions:
        if definition.name in names:
            definitions.append(Definition(rename(definition.head), rename(definition.body),
                                          definition.normalised, definition.text, definition.line))
    extended = Hypotheses(hypotheses.factorisations + tuple(copies),
                          hypotheses.definitions + tuple(definitions))
    return rename(expr), extended
