"""Every closed form in the family table agrees with its integral or sum definition."""

from __future__ import annotations

import mpmath
import pytest
import sympy as sp

from symelbo.models.families import FAMILIES, data_in_support, get_family, in_domain, mp_eval, \
    support_contains

X = sp.Symbol("x", real=True)
DPS = 30
TOL = mpmath.mpf(10) ** -20


def R(v):
    return sp.Rational(v)


# Parameter points at which each closed form is checked.
POINTS = {
    "Normal": [(R("0.3"), R("1.7")), (R(-2), R("0.5"))],
    "Beta": [(R(2), R(3)), (R("0.7"), R("1.6")), (R(5), R("1.5"))],
    "Gamma": [(R(2), R(3)), (R("0.8"), R("1.3")), (R("4.5"), R("0.25"))],
    "Exponential": [(R("0.5"),), (R(3),)],
    "Poisson": [(R("2.5"),), (R("0.4"),)],
    "Bernoulli": [(R("0.3"),), (R("0.85"),)],
    "Binomial": [(R(7), R("0.3")), (R(4), R("0.6"))],
    "Categorical": [(R("0.2"), R("0.5"), R("0.3")), (R("0.6"), R("0.4"))],
    "Laplace": [(R("0.3"), R("1.2")), (R(-1), R("0.5"))],
}

FEATURES = [X, X ** 2, X ** 3, X ** 4, sp.log(X), sp.log(1 - X), sp.exp(X), sp.exp(1 - X / 2)]


def density(fam, params):
    logpdf = fam.logpdf(X, params)
    return lambda t: mpmath.exp(mp_eval(logpdf, {X: t}))


def expectation(fam, params, g, breaks=()):
    """E[g(x)] by mpmath quadrature (continuous) or summation (discrete)."""
    pdf = density(fam, params)
    if fam.support in ("binary", "finite", "0..n"):
        top = {"binary": 1, "finite": len(params) - 1, "0..n": int(params[0])}[fam.support]
        return mpmath.fsum(pdf(mpmath.mpf(k)) * g(mpmath.mpf(k)) for k in range(top + 1))
    if fam.support == "counts":
        return mpmath.nsum(lambda k: pdf(k) * g(k), [0, mpmath.inf])
    lo, hi = {"real": (-mpmath.inf, mpmath.inf), "positive": (0, mpmath.inf),
              "unit": (0, 1)}[fam.support]
    if fam.name == "Laplace":
        cuts = sorted({mpmath.mpf(params[0].p) / params[0].q}
                      | {mpmath.mpf(b.p) / b.q for b in breaks})
        return mpmath.quad(lambda t: pdf(t) * g(t), [lo, *cuts, hi])
    return mpmath.quad(lambda t: pdf(t) * g(t), [lo, hi])


def close(a, b):
    a, b = mpmath.mpf(a), mpmath.mpf(b)
    return abs(a - b) <= TOL * max(1, abs(a), abs(b))


CASES = [(name, params) for name, pts in POINTS.items() for params in pts]


@pytest.mark.parametrize("name,params", CASES)
def test_density_is_normalised(name, params):
    with mpmath.workdps(DPS):
        fam = FAMILIES[name]
        assert close(expectation(fam, params, lambda t: 1), 1)


@pytest.mark.parametrize("name,params", CASES)
def test_expectations_match_definition(name, params):
    with mpmath.workdps(DPS):
        fam = FAMILIES[name]
        checked = 0
        for feature in FEATURES:
            closed = fam.expect(feature, X, params)
            if closed is None:
                continue
            if fam.support in ("binary", "finite", "counts", "0..n") and feature.has(sp.log):
                continue  # log 0 on the support: the table must have refused
            want = expectation(fam, params, lambda t: mp_eval(feature, {X: t}))
            got = mp_eval(closed, {})
            assert close(got, want), (name, params, feature, got, want)
            checked += 1
        assert checked >= 1


def test_expectation_table_refuses_what_it_does_not_know():
    a, b = sp.Symbol("a", positive=True), sp.Symbol("b", positive=True)
    assert FAMILIES["Normal"].expect(sp.log(X), X, (a, b)) is None
    assert FAMILIES["Normal"].expect(sp.exp(X ** 2), X, (a, b)) is None
    assert FAMILIES["Normal"].expect(sp.exp(X * sp.log(X)), X, (a, b)) is None
    assert FAMILIES["Gamma"].expect(X * sp.log(X), X, (a, b)) is None
    assert FAMILIES["Gamma"].expect(1 / X, X, (a, b)) is None
    assert FAMILIES["Bernoulli"].expect(sp.log(X), X, (a,)) is None


@pytest.mark.parametrize("name,params", CASES)
def test_entropy_matches_definition(name, params):
    fam = FAMILIES[name]
    closed = fam.entropy(params)
    if closed is None:
        pytest.skip(f"{name} has no closed-form entropy in the table")
    with mpmath.workdps(DPS):
        logpdf = fam.logpdf(X, params)
        want = -expectation(fam, params, lambda t: mp_eval(logpdf, {X: t}))
        assert close(mp_eval(closed, {}), want)


@pytest.mark.parametrize("name", sorted(POINTS))
def test_kl_matches_definition(name):
    fam = FAMILIES[name]
    pts = [p for p in POINTS[name]]
    pairs = [(pts[0], pts[1]), (pts[1], pts[0])]
    if name == "Categorical":
        pairs = [(pts[0], (R("0.1"), R("0.1"), R("0.8")))]
    if name == "Binomial":
        pytest.skip("Binomial is a likelihood only: no KL entry")
    with mpmath.workdps(DPS):
        for pq, pp in pairs:
            closed = fam.kl(pq, pp)
            lq, lp = fam.logpdf(X, pq), fam.logpdf(X, pp)
            want = expectation(fam, pq, lambda t: mp_eval(lq, {X: t}) - mp_eval(lp, {X: t}),
                               breaks=pp[:1])
            assert close(mp_eval(closed, {}), want), (name, pq, pp)
            assert mp_eval(fam.kl(pq, pq), {}) == 0 or close(mp_eval(fam.kl(pq, pq), {}), 0)


def test_kl_symbolic_zero_at_equal_parameters():
    a, b = sp.symbols("a b", positive=True)
    for name in ("Normal", "Beta", "Gamma"):
        assert sp.expand(FAMILIES[name].kl((a, b), (a, b))) == 0


def test_gamma_and_exponential_agree():
    lam = sp.Symbol("lam", positive=True)
    d = FAMILIES["Exponential"].logpdf(X, (lam,)) - FAMILIES["Gamma"].logpdf(X, (1, lam))
    assert sp.expand(d) == 0


def test_domains_and_supports():
    assert in_domain(R(-1), "positive") is False
    assert in_domain(R("0.5"), "probability") is True
    assert in_domain(R(1), "probability") is False
    assert in_domain(R(3), "positive integer") is True
    assert in_domain(sp.Symbol("s", positive=True), "positive") is True
    assert in_domain(sp.Symbol("s", real=True), "positive") is None
    assert data_in_support(2, "binary") is False
    assert data_in_support(1, "binary") is True
    assert data_in_support(1.5, "counts") is False
    assert data_in_support(0.0, "positive") is False
    assert data_in_support(3, "0..n", (R(3),)) is True
    assert data_in_support(4, "0..n", (R(3),)) is False
    assert support_contains("real", "positive")
    assert not support_contains("positive", "real")
    assert not support_contains("real", "binary")
    assert get_family("normal") is None and get_family("Normal").params == ("mean", "std")


def test_arity_messages():
    assert "takes 2 parameters" in FAMILIES["Normal"].check_arity(1)
    assert FAMILIES["Categorical"].check_arity(3) is None
    assert FAMILIES["Categorical"].check_arity(1) is not None


# --- entries finite only under conditions (issue 18) ---------------------------

@pytest.mark.parametrize("k, a", [(1, 1.5), (2, 2.5), (3, 3.25)])
def test_gamma_negative_powers_match_their_integral_where_finite(k, a):
    import mpmath
    x = sp.Symbol("x", positive=True)
    fam = FAMILIES["Gamma"]
    value, conditions = fam.expect_where(x ** -k, x, (sp.Rational(a), sp.Integer(2)))
    assert [(c, w) for c, w in conditions] == [(sp.Rational(a) - k, f"the shape minus {k}")]
    with mpmath.workdps(30):
        am = mpmath.mpf(a)
        # the integral of 2**a t**(a - 1 - k) exp(-2 t) / Gamma(a) over t > 0, with
        # t = u**p, p = 1/(a - k), which removes the (integrable) singularity at 0
        p = 1 / (am - k)
        integral = mpmath.quad(lambda u: p * 2 ** am * mpmath.exp(-2 * u ** p)
                               / mpmath.gamma(am), [0, 1, mpmath.inf])
        assert abs(mpmath.mpf(sp.N(value, 30)) - integral) < mpmath.mpf(10) ** -20 * integral


def test_gamma_negative_power_condition_fails_where_the_integral_diverges():
    x = sp.Symbol("x", positive=True)
    _, conditions = FAMILIES["Gamma"].expect_where(x ** -2, x, (sp.Rational(3, 2), sp.Integer(2)))
    assert not conditions[0][0] > 0
    assert FAMILIES["Gamma"].expect(x ** -2, x, (sp.Integer(3), sp.Integer(2))) is None  # cavi's table


@pytest.mark.parametrize("c, b", [(1, 0.5), (-1.5, 0.25), (0.5, 1.5)])
def test_laplace_mgf_matches_its_integral_where_finite(c, b):
    import mpmath
    x = sp.Symbol("x", real=True)
    m = sp.Rational(3, 10)
    value, conditions = FAMILIES["Laplace"].expect_where(sp.exp(sp.Rational(c) * x), x,
                                                         (m, sp.Rational(b)))
    assert conditions[0][0] == 1 - sp.Rational(b) ** 2 * sp.Rational(c) ** 2
    assert conditions[0][0] > 0
    with mpmath.workdps(30):
        integral = mpmath.quad(lambda t: mpmath.exp(c * t - abs(t - 0.3) / b) / (2 * b),
                               [-mpmath.inf, 0.3, mpmath.inf])
        assert abs(mpmath.mpf(sp.N(value, 30)) - integral) < mpmath.mpf(10) ** -15 * integral
