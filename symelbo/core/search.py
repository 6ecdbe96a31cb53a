"""Proof search: finds a proof of a step and writes it down as a certificate.

Nothing here decides ``proved``: every function returns a :class:`Found`, the
rules a proof used and its certificate, which :mod:`symelbo.core.kernel` replays.
A search that is wrong costs a missed proof, never a false one.

- :func:`replay_named`: a proof using only the rules a step names after ``by``.
- :func:`search_proof`: a proof by any rule, a small set of rules reported.

For ``=``: one rule applied once (at one node of one side, or of each side),
else equal normal forms. For an inequality ``big >= small``: an equality;
a difference of known sign; one application of Jensen or Gibbs at a monotone
position of the right polarity; or a difference that is positive multiples of
up to two KL divergences plus a rest of known sign. Between two positive
sides, the same for their logs.
"""

from __future__ import annotations

from dataclasses import dataclass

import sympy as sp

from symelbo.core.claims import READING_RULES, equality_reading
from symelbo.core.derivation import Step
from symelbo.core.hypotheses import active, assuming
from symelbo.core.kernel import GIBBS_FORM, sign_of
from symelbo.core.normalize import (CANONICAL_RULES, NormalizationLoop, equal_by, evaluate, minimal_rules,
                        normal_form, one_rewrite_steps)
from symelbo.core.notation import KL, Density, Expectation, Marginal, known_nonnegative, known_positive
from symelbo.core.relations import relation
from symelbo.core.rules import RULES
from symelbo.core.traversal import monotone_positions, replace_at

__all__ = ["Found", "INEQUALITY_RULES", "MAX_DIVERGENCES", "replay_named", "search_proof",
           "identical_sides", "ordered"]

INEQUALITY_RULES = frozenset(name for name, rule in RULES.items() if rule.is_inequality)

#: How many divergences a difference may be read as the sum of.
MAX_DIVERGENCES = 2


@dataclass(frozen=True)
class Found:
    """A proof the search found: the rules it reports, and the certificate for the kernel."""

    rules: frozenset
    certificate: dict


def ordered(names) -> list[str]:
    """Rule names in registry order (definitions first)."""
    return sorted(names, key=list(RULES).index)


def identical_sides(step: Step) -> Found:
    """The certificate of a step whose sides are one expression."""
    return Found(frozenset(), {"kind": "identical"})


def replay_named(step: Step, named: frozenset) -> Found | None:
    """A proof of ``step`` by the rules it names (and algebra), else None."""
    if step.relation == "=":
        if named & INEQUALITY_RULES:
            return None
        if "normalisation" in named:
            return _normalised_densities(step, named - {"normalisation"})
        single = _one_rewrite(step, named)
        if single is not None:
            return single
        return _equal_normal_forms(step.lhs, step.rhs, named - {"algebra"})
    return _prove(step, named & CANONICAL_RULES, named & INEQUALITY_RULES, replay=True)


def search_proof(step: Step) -> Found | None:
    """A proof of ``step`` by any rule, else None; one rule applied once names a step best
    (p(X | Z) p(Z) = p(X, Z) is product_rule)."""
    found = _one_rewrite(step, CANONICAL_RULES) if step.relation == "=" else None
    found = found or _prove(step, CANONICAL_RULES, INEQUALITY_RULES)
    if found is None and step.relation == "=":
        found = _normalised_densities(step, CANONICAL_RULES - {"normalisation"})
    return found


def _normalised_densities(step: Step, names) -> Found | None:
    """Two densities over the same variables whose ratio is constant in them are equal."""
    left, right = evaluate(step.lhs), evaluate(step.rhs)
    if not (isinstance(left, Density) and isinstance(right, Density)) or left == right:
        return None
    if set(left.variables) != set(right.variables):
        return None
    over = tuple(v.name for v in left.variables)
    a, b, hypotheses = equality_reading(left, "propto", right, over, active())
    try:
        with assuming(hypotheses):
            used = equal_by(a, b, frozenset(names) | set(READING_RULES))
    except NormalizationLoop:
        return None
    if used is None:
        return None
    rules = (frozenset(used) - set(READING_RULES)) | (frozenset(names) & set(READING_RULES) & used)
    return Found(rules | {"normalisation"},
                 {"kind": "normalised", "rules": ordered(rules | {"normalisation"})})


def _one_rewrite(step: Step, names) -> Found | None:
    steps = one_rewrite_steps(step.lhs, step.rhs, names)
    if steps is None:
        return None
    return Found(frozenset(s["rule"] for s in steps), {"kind": "rewrite", "steps": steps})


def _equal_normal_forms(lhs, rhs, names) -> Found | None:
    used = equal_by(lhs, rhs, names)
    if used is None:
        return None
    return Found(frozenset(used), {"kind": "normal_forms", "rules": ordered(used)})


def _prove(step: Step, equalities: frozenset, inequalities: frozenset, replay=False):
    try:
        return _search(step, equalities, inequalities, replay)
    except NormalizationLoop:
        return None


def _search(step: Step, equalities: frozenset, inequalities: frozenset, replay: bool):
    if step.relation == "=":
        if replay:
            return _equal_normal_forms(step.lhs, step.rhs, equalities)
        used = minimal_rules(step.lhs, step.rhs, equalities)
        if used is None:
            return None
        return Found(frozenset(used), {"kind": "normal_forms", "rules": ordered(used)})
    direction = relation(step.relation).direction
    big, small = (step.lhs, step.rhs) if direction > 0 else (step.rhs, step.lhs)
    strict = relation(step.relation).strict
    bound = {"kind": "bound", "big": "lhs" if direction > 0 else "rhs", "strict": strict,
             "log": False}
    found = _search_inequality(big, small, strict, equalities, inequalities, replay)
    if found is not None:
        return Found(found.rules, {**bound, "argument": found.certificate})
    big, small = evaluate(big), evaluate(small)
    if known_positive(big) and known_positive(small):
        # log is increasing: a >= b iff log a >= log b for positive a and b
        # (p(X) >= exp(ELBO) is the bound itself)
        logged = _search_inequality(sp.log(big), sp.log(small), strict, equalities,
                                    inequalities, replay)
        if logged is not None:
            return Found(logged.rules | {"algebra"},
                         {**bound, "log": True, "argument": logged.certificate})
    return None


def _search_inequality(big, small, strict: bool, equalities: frozenset,
                       inequalities: frozenset, replay: bool):
    """A proof of big >= small (big > small when ``strict``), or None; a search
    (no ``by``) reports a small set, as for equalities: each equality rule it used
    is dropped in turn while the proof still stands."""
    found = _inequality_proof(big, small, strict, equalities, inequalities, replay)
    if found is None or replay:
        return found
    for name in sorted(found.rules & CANONICAL_RULES, key=list(RULES).index, reverse=True):
        if name not in found.rules:
            continue
        try:
            trial = _inequality_proof(big, small, strict, (found.rules & CANONICAL_RULES) - {name},
                                      inequalities, replay=True)
        except NormalizationLoop:
            continue
        if trial is not None:
            found = trial
    return found


def _inequality_proof(big, small, strict: bool, equalities: frozenset,
                      inequalities: frozenset, replay: bool):
    """A proof of big >= small (big > small when ``strict``), or None."""
    if not strict:
        used = equal_by(big, small, equalities)
        if used is not None:
            return Found(frozenset(used), {"kind": "equal", "rules": ordered(used)})
    # around the one inequality: the named equality rules when replaying a `by`
    # (anything else and the step is misjustified), every rule when searching
    around = equalities if replay else CANONICAL_RULES
    difference = normal_form(big - small, around)
    sign = sign_of(difference.expr)
    fired = difference.fired | {"algebra"}
    signed = {"kind": "sign", "of": "normal_form", "rules": ordered(difference.fired)}
    if sign is not None and (sign > 0 or (sign == 0 and not strict)):
        return Found(fired, signed)
    if not strict and known_nonnegative(evaluate(big - small)):   # a square as written
        return Found(frozenset({"algebra"}), {"kind": "sign", "of": "written", "rules": []})
    if not strict and known_nonnegative(difference.expr):
        return Found(fired, signed)
    if not strict:  # jensen and gibbs give >=, never >
        for name in sorted(inequalities):
            found = _apply_inequality(RULES[name], big, small, around)
            if found is not None:
                return found
    if "gibbs_inequality" in inequalities:
        # strict too, when what is left beside the divergences is positive
        return _difference_as_divergences(big, small, around, strict)
    return None


def _apply_inequality(rule, big, small, around: frozenset):
    """The rule once at a position of the right polarity, the sides then equal by the
    rules ``around``."""
    for side_name, side, other, grow in (("big", big, small, False), ("small", small, big, True)):
        for path, sub, polarity in monotone_positions(evaluate(side)):
            # on the big side, shrink where polarity is +, grow where it is -; the reverse on small
            shrink = (polarity > 0) != grow
            rewrite = rule.weaken if shrink else rule.strengthen
            if rewrite is None:
                continue
            new = rewrite(sub)
            if new is None:
                continue
            changed = replace_at(evaluate(side), path, new)
            pair = (changed, other) if not grow else (other, changed)
            used = equal_by(pair[0], pair[1], around)
            if used is not None:
                return Found(frozenset(used) | {rule.name},
                             {"kind": "inequality_rule", "rule": rule.name, "side": side_name,
                              "path": list(path), "polarity": polarity, "rules": ordered(used)})
    return None


def _difference_as_divergences(big, small, around: frozenset, strict: bool):
    """big - small = c1 KL1 + ... + ck KLk + r (k <= MAX_DIVERGENCES) with each c positive,
    each KL between densities of the step, and r >= 0 structurally (r > 0 for a strict
    claim); else None.

    Gibbs' inequality makes every KL >= 0, so the sum is >= r. All are normalized
    by the rules ``around`` and by what it takes to read KL as E_a[log a] - E_a[log b]
    (Gibbs' inequality as it is usually written). Each c is read off one term of a
    KL's normal form; the kernel checks the decomposition on normal forms.
    """
    names = around | GIBBS_FORM
    difference = normal_form(big - small, names)
    forms = []
    for candidate in _kl_candidates([big, small]):
        form = normal_form(candidate, names)
        forms.append((candidate, sp.Add.make_args(form.expr), form.fired))

    def search(rest, depth):
        sign = sign_of(rest)
        if depth and sign is not None and (sign > 0 or (sign == 0 and not strict)):
            return frozenset(), []
        if depth == MAX_DIVERGENCES:
            return None
        for divergence, terms, fired in forms:
            for factor in _multiples(rest, terms):
                deeper = search(sp.expand(rest - factor * sp.Add(*terms)), depth + 1)
                if deeper is not None:
                    return deeper[0] | fired, [[factor, divergence]] + deeper[1]
        return None

    found = search(difference.expr, 0)
    if found is None:
        return None
    used = found[0] | difference.fired
    return Found(used | {"gibbs_inequality", "definition_kl"},
                 {"kind": "divergences", "terms": found[1], "rules": ordered(used)})


def _multiples(expr, terms):
    """The positive factors c for which c * (sum of terms) takes a term of ``expr``
    away: one per term of the sum, read as the coefficient of that term in expr."""
    seen = set()
    for term in terms:
        number, base = term.as_coeff_Mul()
        if not base.has(Expectation, Marginal):
            continue  # pivot on the divergence's own expectations, not on log p(X)
        factor = sp.expand(expr.coeff(base) / number)
        if factor != 0 and factor not in seen and (sign_of(factor) or 0) > 0:
            seen.add(factor)
            yield factor


def _kl_candidates(exprs):
    applied = sorted({d for e in exprs for d in sp.preorder_traversal(e) if isinstance(d, Density)},
                     key=sp.default_sort_key)
    seen = set()
    for a in applied:
        for b in applied:
            if b.key == a.key:
                continue
            full = set(b.variables) | set(b.given)
            if not set(a.variables) <= full:
                continue
            rest = sorted(full - set(a.variables), key=lambda s: s.name)
            for cand in (b.with_variables(a.variables, rest), b.with_variables(a.variables)):
                kl = KL(a, cand)
                if kl not in seen:
                    seen.add(kl)
                    yield kl
