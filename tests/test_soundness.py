"""Every rule is sound: on random expressions, rewriting never changes the value.

Expressions are drawn by hypothesis from the notation over fixed densities;
each rule's normal form (with algebra) is compared with the original on
concrete finite instances, to 1e-25 relative. Inequality rules must never
increase the subterm they rewrite.
"""

import mpmath
import pytest
import sympy as sp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from symelbo.core.traversal import monotone_positions
from symelbo.core.deadline import BudgetExceeded, time_budget
from symelbo.core.normalize import NormalizationLoop, evaluate, normal_form
from symelbo.core.notation import KL, Entropy, Expectation, Gradient, Marginal, density, parameter, variable
from symelbo.core.rules import RULES
from symelbo.core.semantics import Undefined, Universe, evaluate_on, instances

Z, X = variable("Z"), variable("X")
PHI = parameter("phi")
Q, Q_PHI = density("q", "Z"), density("q", "Z", params=["phi"])
DENSITIES = [Q, Q_PHI, density("p", "X", "Z"), density("p", "Z", given=["X"]),
             density("p", "X", given=["Z"]), density("p", "X"), density("p", "Z")]

positive = st.deferred(lambda: st.one_of(
    st.sampled_from(DENSITIES),
    st.sampled_from([sp.Rational(1, 2), sp.Integer(2), sp.Integer(3)]),
    st.tuples(positive, positive).map(lambda ab: ab[0] * ab[1]),
    st.tuples(positive, positive).map(lambda ab: ab[0] / ab[1]),
    st.tuples(positive, positive).map(lambda ab: ab[0] + ab[1]),
    st.tuples(st.sampled_from([Q, Q_PHI]), positive).map(lambda db: Expectation(*db)),
    positive.map(lambda f: Marginal(Z, f)),
))

base = st.deferred(lambda: st.one_of(
    positive.map(sp.log),
    positive,
    st.just(KL(Q, density("p", "Z", given=["X"]))),
    st.just(KL(Q_PHI, density("p", "Z", given=["X"]))),
    st.just(Entropy(Q)),
    st.tuples(base, base).map(lambda ab: ab[0] + ab[1]),
    st.tuples(base, base).map(lambda ab: ab[0] - ab[1]),
    st.tuples(st.sampled_from([-2, sp.Rational(1, 3), 3]), base).map(lambda cb: cb[0] * cb[1]),
    st.tuples(st.sampled_from([Q, Q_PHI]), base).map(lambda db: Expectation(*db)),
    base.map(lambda f: Marginal(Z, f * density("p", "X", "Z"))),
))

# gradients are not nested: each level multiplies the cost of numeric differentiation
real = st.one_of(
    base,
    base.map(lambda f: Gradient(PHI, f)),
    st.tuples(base, base).map(lambda ab: Gradient(PHI, ab[0]) - ab[1]),
)

SETTINGS = settings(max_examples=25, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])


def _values(expr, count=3):
    """Values on the first instances (None where undefined or too slow to evaluate)."""
    universe = Universe.of([expr] + DENSITIES)
    out = []
    for instance in instances(universe, count):
        try:
            with time_budget(2):
                out.append(evaluate_on(evaluate(expr), instance))
        except (Undefined, ZeroDivisionError, BudgetExceeded):
            out.append(None)
    return out


def _close(a, b):
    return abs(a - b) <= mpmath.mpf(10) ** -25 * max(1, abs(a), abs(b))


# one name per distinct set of rewrites (product_rule shares bayes_rule's)
_BY_REWRITES = {}
for _name, _rule in RULES.items():
    if _rule.rewrites:
        _BY_REWRITES.setdefault(_rule.rewrites, _name)
EQUALITY_RULES = sorted(_BY_REWRITES.values())


@pytest.mark.parametrize("name", EQUALITY_RULES)
@SETTINGS
@given(expr=real)
def test_equality_rule_preserves_value(name, expr):
    try:
        rewritten = normal_form(expr, {name}).expr
    except NormalizationLoop:
        return
    for before, after in zip(_values(expr), _values(rewritten)):
        if before is not None and after is not None:
            assert _close(before, after), (name, expr, rewritten, before, after)


@pytest.mark.parametrize("name", sorted(n for n, r in RULES.items() if r.is_inequality))
@SETTINGS
@given(expr=real)
def test_inequality_rule_never_increases(name, expr):
    rule = RULES[name]
    for _, sub, _ in monotone_positions(evaluate(expr)):
        smaller = rule.weaken(sub)
        if smaller is None:
            continue
        for big, small in zip(_values(sub), _values(smaller)):
            if big is not None and small is not None:
                assert small <= big + mpmath.mpf(10) ** -25 * max(1, abs(big)), (name, sub, smaller)


@SETTINGS
@given(expr=real)
def test_canonical_form_preserves_value(expr):
    try:
        rewritten = normal_form(expr).expr
    except NormalizationLoop:
        return
    for before, after in zip(_values(expr), _values(rewritten)):
        if before is not None and after is not None:
            assert _close(before, after), (expr, rewritten, before, after)
