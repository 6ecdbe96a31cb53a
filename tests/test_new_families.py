"""LogNormal, InverseGamma, HalfNormal, StudentT, Uniform and the new table entries (issue 18,
item 7): every closed form against its integral by mpmath quadrature at 30 digits, every
conditional entry's condition where the integral diverges, and the models that use them."""

from __future__ import annotations

from pathlib import Path

import mpmath
import pytest
import sympy as sp

from symelbo.core.errors import InputError
from symelbo.models.families import FAMILIES, data_in_support, mp_eval, support_inside
from symelbo.models.model import model_from_dict

X = sp.Symbol("x", real=True)
XP = sp.Symbol("x", positive=True)
DPS = 30
TOL = mpmath.mpf(10) ** -18


def R(v):
    return sp.Rational(v)


def mp(v):
    return mp_eval(sp.sympify(v), {})


def close(a, b, tol=TOL):
    a, b = mpmath.mpf(a), mpmath.mpf(b)
    return abs(a - b) <= tol * max(1, abs(a), abs(b))


def integral(name, params, g, kinks=()):
    """E[g(x)] under name(params) by mpmath quadrature, split at the centre and the kinks."""
    fam = FAMILIES[name]
    kinks = [mp(k) for k in kinks]
    x = XP if fam.support == "positive" else X
    logpdf = fam.logpdf(x, params)

    def f(t):
        return mpmath.exp(mp_eval(logpdf, {x: t})) * g(t)

    if fam.support == "interval":
        lo, hi = mp(params[0]), mp(params[1])
        return mpmath.quad(f, [lo] + sorted(k for k in kinks if lo < k < hi) + [hi])
    if fam.support == "positive":
        return mpmath.quad(f, [0, mpmath.mpf(1) / 4, 1, 4, mpmath.inf])
    if name == "StudentT":
        # x = loc + scale sinh(u): the power-law tails become exponential ones in u
        loc, scale = mp(params[1]), mp(params[2])
        return mpmath.quad(lambda u: f(loc + scale * mpmath.sinh(u)) * scale * mpmath.cosh(u),
                           [-mpmath.inf, -2, 0, 2, mpmath.inf])
    centre = mp(params[0])
    return mpmath.quad(f, [-mpmath.inf, centre - 1, centre, centre + 1, mpmath.inf])


# name -> parameter points
POINTS = {
    "LogNormal": [(R("0.3"), R("0.7")), (R(-1), R("1.2"))],
    "InverseGamma": [(R(3), R(2)), (R("4.5"), R("0.5"))],
    "HalfNormal": [(R("0.8"),), (R(2),)],
    "StudentT": [(R(5), R("0.3"), R("1.5")), (R("2.5"), R(-1), R("0.5"))],
    "Uniform": [(R(0), R(2)), (R("0.25"), R("0.75")), (R(-3), R("0.5"))],
}
CASES = [(name, p) for name, pts in POINTS.items() for p in pts]

# the features each family's table must know, as (sympy feature in x, how to evaluate it)
FEATURES = {
    "LogNormal": [XP, XP ** 2, XP ** -1, XP ** -2, sp.sqrt(XP), sp.log(XP), sp.log(XP) ** 2,
                  sp.log(XP) ** 3],
    "InverseGamma": [XP ** -1, XP ** -2, XP ** -3, sp.log(XP), sp.log(XP) ** 2],
    "HalfNormal": [XP, XP ** 2, XP ** 3, XP ** 4, sp.log(XP), sp.log(XP) ** 2],
    "StudentT": [],
    "Uniform": [X, X ** 2, X ** 3, sp.exp(X), sp.exp(-2 * X + 1), sp.Abs(X - R("0.3")),
                sp.Abs(2 * X + 1)],
}


@pytest.mark.parametrize("name,params", CASES)
def test_density_is_normalised(name, params):
    with mpmath.workdps(DPS):
        assert close(integral(name, params, lambda t: 1), 1)


@pytest.mark.parametrize("name,params", CASES)
def test_expectations_match_their_integral(name, params):
    fam = FAMILIES[name]
    x = XP if fam.support == "positive" else X
    with mpmath.workdps(DPS):
        checked = 0
        for feature in FEATURES[name]:
            closed = fam.expect(feature, x, params)
            assert closed is not None, (name, feature)
            kinks = [sp.solve(a.args[0], x)[0] for a in feature.atoms(sp.Abs)]
            want = integral(name, params, lambda t: mp_eval(feature, {x: t}), kinks)
            assert close(mp_eval(closed, {}), want), (name, params, feature)
            checked += 1
        if name == "StudentT":
            if params[0] > 1:
                assert close(mp_eval(fam.expect(X, X, params), {}),
                             integral(name, params, lambda t: t))
                checked += 1
        assert checked >= 1


@pytest.mark.parametrize("name,params", CASES)
def test_entropy_matches_its_integral(name, params):
    fam = FAMILIES[name]
    x = XP if fam.support == "positive" else X
    logpdf = fam.logpdf(x, params)
    with mpmath.workdps(DPS):
        want = -integral(name, params, lambda t: mp_eval(logpdf, {x: t}))
        assert close(mp_eval(fam.entropy(params), {}), want), (name, params)


@pytest.mark.parametrize("name,pq,pp", [
    ("LogNormal", (R("0.3"), R("0.7")), (R(-1), R("1.2"))),
    ("LogNormal", (R(-1), R("1.2")), (R("0.3"), R("0.7"))),
    ("InverseGamma", (R(3), R(2)), (R("4.5"), R("0.5"))),
    ("InverseGamma", (R("4.5"), R("0.5")), (R(3), R(2))),
    ("HalfNormal", (R("0.8"),), (R(2),)),
    ("HalfNormal", (R(2),), (R("0.8"),)),
    ("Uniform", (R("0.25"), R("0.75")), (R(0), R(2))),
])
def test_kl_matches_its_integral(name, pq, pp):
    fam = FAMILIES[name]
    x = XP if fam.support == "positive" else X
    lq, lp = fam.logpdf(x, pq), fam.logpdf(x, pp)
    with mpmath.workdps(DPS):
        want = integral(name, pq, lambda t: mp_eval(lq, {x: t}) - mp_eval(lp, {x: t}))
        assert close(mp_eval(fam.kl(pq, pp), {}), want)
        assert mp_eval(fam.kl(pq, pq), {}) == 0


def test_student_has_no_kl_entry_and_no_mean_unless_df_above_one():
    fam = FAMILIES["StudentT"]
    assert fam.kl((R(5), 0, 1), (R(3), 0, 1)) is None
    assert fam.expect(X, X, (R(1), R(0), R(1))) is None      # Cauchy: no mean
    assert fam.expect(X, X, (sp.Symbol("nu", positive=True), R(0), R(1))) is None
    assert fam.expect(X, X, (R("1.5"), R(2), R(1))) == 2


# --- entries finite only under conditions -------------------------------------------

@pytest.mark.parametrize("k, a", [(1, "1.5"), (2, "2.25"), (3, "3.5")])
def test_inverse_gamma_positive_powers_where_finite(k, a):
    fam = FAMILIES["InverseGamma"]
    value, conditions = fam.expect_where(XP ** k, XP, (R(a), R(2)))
    assert conditions == [(R(a) - k, f"the shape minus {k}")]
    assert conditions[0][0] > 0
    with mpmath.workdps(DPS):
        # t = 1/u: the integral of x^k IG(x) is the integral of u^-k Gamma(u; a, 2), and with
        # u = v^p, p = 1/(a - k), its endpoint singularity is removed
        am, p = mpmath.mpf(a), 1 / (mpmath.mpf(a) - k)
        want = mpmath.quad(lambda v: p * 2 ** am * mpmath.exp(-2 * v ** p) / mpmath.gamma(am),
                           [0, 1, mpmath.inf])
        assert close(mp_eval(value, {}), want)


def test_inverse_gamma_mean_condition_fails_where_it_diverges():
    _, conditions = FAMILIES["InverseGamma"].expect_where(XP, XP, (R("0.8"), R(2)))
    assert conditions[0][0] < 0 and conditions[0][1] == "the shape minus 1"
    assert FAMILIES["InverseGamma"].expect(XP, XP, (R(3), R(2))) is None  # only with conditions


@pytest.mark.parametrize("nu", ["2.5", "7"])
def test_student_second_moment_where_finite(nu):
    params = (R(nu), R("0.3"), R("1.5"))
    value, conditions = FAMILIES["StudentT"].expect_where(X ** 2, X, params)
    assert conditions == [(R(nu) - 2, "the df minus 2")]
    with mpmath.workdps(DPS):
        assert close(mp_eval(value, {}), integral("StudentT", params, lambda t: t ** 2))


def test_student_second_moment_condition_fails_for_df_two():
    _, conditions = FAMILIES["StudentT"].expect_where(X ** 2, X, (R(2), R(0), R(1)))
    assert conditions[0][0] == 0


def test_student_log_kernel_entry():
    # E[log(A + B (x - m)^2)] with B/A = 1/(nu s^2): the Student's own kernel
    nu, m, s = R(5), R("0.3"), R("1.5")
    part = sp.log(2 + 2 * (X - m) ** 2 / (nu * s ** 2))
    fam = FAMILIES["StudentT"]
    closed = fam.expect(sp.expand(part), X, (nu, m, s))
    with mpmath.workdps(DPS):
        want = integral("StudentT", (nu, m, s), lambda t: mp_eval(part, {X: t}))
        assert close(mp_eval(closed, {}), want)
    assert fam.expect(sp.log(1 + (X - 1) ** 2), X, (nu, m, s)) is None   # another centre
    assert fam.expect(sp.log(1 + (X - m) ** 2), X, (nu, m, s)) is None   # another width


# --- new entries of the existing families ---------------------------------------------

OLD = [
    ("Normal", (R("0.3"), R("1.7")), [sp.Abs(X - R("1.2")), sp.Abs(X + 2), sp.Abs(3 - 2 * X)]),
    ("Normal", (R(-2), R("0.5")), [sp.Abs(X), sp.Abs(X + 2)]),
    ("Laplace", (R("0.3"), R("1.2")), [sp.Abs(X - R("1.2")), sp.Abs(2 * X + 5), X ** 3, X ** 4]),
    ("Laplace", (R(-1), R("0.5")), [sp.Abs(X + 1), X ** 3, X ** 4]),
    ("Gamma", (R(2), R(3)), [sp.log(XP) ** 2]),
    ("Gamma", (R("0.8"), R("1.3")), [sp.log(XP) ** 2]),
    ("Beta", (R(2), R(3)), [sp.log(XP) ** 2, sp.log(1 - XP) ** 2, sp.log(XP) * sp.log(1 - XP)]),
    ("Beta", (R("0.7"), R("1.6")), [sp.log(XP) ** 2, sp.log(1 - XP) ** 2,
                                    sp.log(XP) * sp.log(1 - XP)]),
]


@pytest.mark.parametrize("name,params,features", OLD)
def test_new_entries_of_existing_families(name, params, features):
    fam = FAMILIES[name]
    with mpmath.workdps(DPS):
        logpdf = fam.logpdf(X if fam.support == "real" else XP, params)
        for feature in features:
            x = XP if feature.has(XP) else X
            closed = fam.expect(feature, x, params)
            assert closed is not None, (name, feature)
            logpdf = fam.logpdf(x, params)
            kinks = sorted({mp(params[0])} | {mp(sp.solve(a.args[0], x)[0])
                                               for a in feature.atoms(sp.Abs)})
            lo, hi = {"real": (-mpmath.inf, mpmath.inf), "positive": (0, mpmath.inf),
                      "unit": (0, 1)}[fam.support]
            pts = [lo] + ([k for k in kinks] if fam.support == "real" else []) + [hi]
            want = mpmath.quad(lambda t: mpmath.exp(mp_eval(logpdf, {x: t}))
                               * mp_eval(feature, {x: t}), pts)
            assert close(mp_eval(closed, {}), want), (name, params, feature)


def test_laplace_mgf_keeps_its_domain():
    value, conditions = FAMILIES["Laplace"].expect_where(sp.exp(2 * X), X, (R(0), R(1)))
    assert conditions == [(-3, "1 - (scale*c)**2")]   # |c| b = 2: the tail diverges


def test_gamma_negative_powers_keep_their_domain():
    for k in (1, 2):
        _, conditions = FAMILIES["Gamma"].expect_where(XP ** -k, XP, (R("1.5"), R(2)))
        assert conditions == [(R("1.5") - k, f"the shape minus {k}")]


# --- supports -------------------------------------------------------------------------

def test_support_inside():
    U, N, B, G = (FAMILIES[n] for n in ("Uniform", "Normal", "Beta", "Gamma"))
    a = sp.Symbol("a", real=True)
    table = [
        ((U, (0, 1), B, (2, 3)), True),
        ((U, (0, 10), G, (2, 3)), False),          # (0, oo) is not inside (0, 10)
        ((G, (1, 1), U, (R("0.5"), 3)), True),
        ((G, (1, 1), U, (-1, 3)), False),
        ((N, (0, 1), U, (-1, 3)), True),
        ((U, (0, 2), U, (R("0.5"), 3)), False),
        ((U, (0, 2), U, (0, 2)), True),
        ((U, (0, 1), U, (a, R("0.5"))), None),     # undecided without a value
        ((U, (0, 1), FAMILIES["Bernoulli"], (R("0.5"),)), False),
    ]
    for (outer, op, inner, ip), want in table:
        assert support_inside(outer, op, inner, ip) is want, (outer.name, op, inner.name, ip)


def test_uniform_data_support_and_parameters():
    assert data_in_support(0.5, "interval", (R(0), R(1)))
    assert not data_in_support(1.0, "interval", (R(0), R(1)))
    assert FAMILIES["Uniform"].params_problem((R(2), R(1))) == \
        "the low of Uniform must be below its high, got 2 and 1"
    assert FAMILIES["Uniform"].params_problem((R(1), R(2))) is None


# --- models ---------------------------------------------------------------------------

def model(latent, observed, variational, values=None):
    return model_from_dict({"latent": latent, "observed": observed, "variational": variational,
                            "values": values or {}})


def test_laplace_likelihood_closed_elbo_matches_quadrature():
    m = model({"theta": "Normal(0, 2)"},
              {"x": {"dist": "Laplace(theta, 1)", "data": [0.5, -0.3, 1.2, 0.5]}},
              {"theta": "Normal(m, s)"}, {"m": 0.4, "s": 0.5})
    elbo = m.elbo()
    assert elbo.has(sp.erf)
    with mpmath.workdps(30):
        quad = m.quadrature()
        assert close(m.value(elbo), quad["elbo"], mpmath.mpf(10) ** -15)


def test_uniform_prior_on_unit_interval_is_beta_one_one():
    data = {"x": {"dist": "Bernoulli(theta)", "data": [1, 0, 1, 1]}}
    u = model({"theta": "Uniform(0, 1)"}, data, {"theta": "Beta(a, b)"}, {"a": 4, "b": 2})
    b = model({"theta": "Beta(1, 1)"}, data, {"theta": "Beta(a, b)"}, {"a": 4, "b": 2})
    assert sp.simplify(u.log_evidence() - b.log_evidence()) == 0
    assert sp.simplify(u.elbo() - b.elbo()) == 0


def test_uniform_prior_elsewhere_goes_to_quadrature():
    m = model({"mu": "Uniform(-2, 3)"}, {"x": {"dist": "Normal(mu, 1)", "data": [0.5, -0.3]}},
              {"mu": "Uniform(c, d)"}, {"c": -0.5, "d": 1.5})
    from symelbo.models.model import NoClosedForm
    with pytest.raises(NoClosedForm, match="a Uniform other than Uniform\\(0, 1\\)"):
        m.log_evidence()
    with mpmath.workdps(30):
        quad = m.quadrature()
        assert close(m.value(m.elbo()), quad["elbo"], mpmath.mpf(10) ** -15)
        # log p(X) by a direct integral over (-2, 3)
        want = mpmath.log(mpmath.quad(lambda t: mpmath.npdf(0.5, t, 1) * mpmath.npdf(-0.3, t, 1)
                                      / 5, [-2, 3]))
        assert close(quad["log_evidence"], want, mpmath.mpf(10) ** -15)


def test_q_outside_a_uniform_prior_is_said():
    m = model({"mu": "Uniform(-2, 3)"}, {"x": {"dist": "Normal(mu, 1)", "data": [0.5]}},
              {"mu": "Normal(m, s)"}, {"m": 0, "s": 1})
    from symelbo.models.model import NoClosedForm
    with pytest.raises(NoClosedForm, match=r"^q\(mu\) = Normal lives on the real line, not inside "
                       r"the support of the prior Uniform, the interval \(-2, 3\)"):
        m.elbo()


def test_uniform_likelihood_with_a_latent_end_is_refused():
    with pytest.raises(InputError, match="the low and high of a Uniform likelihood need values"):
        model({"t": "Gamma(2, 1)"}, {"x": {"dist": "Uniform(0, t)", "data": [0.5]}},
              {"t": "Gamma(a, b)"}, {"a": 2, "b": 1})


def test_uniform_with_low_above_high_is_refused():
    with pytest.raises(InputError, match="the low of Uniform must be below its high, got 3 and 1"):
        model({"t": "Uniform(3, 1)"}, {"x": {"dist": "Normal(t, 1)", "data": [0.5]}},
              {"t": "Normal(0, 1)"})


def test_inverse_gamma_q_with_a_divergent_mean_is_infinite():
    m = model({"lam": "Gamma(2, 1)"}, {"x": {"dist": "Poisson(lam)", "data": [2, 4, 3]}},
              {"lam": "InverseGamma(a, b)"}, {"a": 0.8, "b": 2})
    from symelbo.models.model_report import ModelReport
    report = ModelReport(m)
    assert report.values["elbo"] == -mpmath.inf
    assert "E_q[lam] under q(lam) = InverseGamma(a, b) is infinite" in report.divergent["elbo"]


def test_inverse_gamma_variance_prior_elbo_matches_quadrature():
    m = model({"v": "InverseGamma(3, 2)"},
              {"x": {"dist": "Normal(0, sqrt(v))", "data": [0.5, -1.3, 1.2, 0.1, -0.7]}},
              {"v": "InverseGamma(a, b)"}, {"a": 5.5, "b": 3.8})
    with mpmath.workdps(30):
        assert close(m.value(m.elbo()), m.quadrature()["elbo"], mpmath.mpf(10) ** -15)


def test_lognormal_rate_elbo_matches_quadrature():
    m = model({"lam": "LogNormal(0, 1)"}, {"x": {"dist": "Poisson(lam)", "data": [2, 4, 3]}},
              {"lam": "Gamma(a, b)"}, {"a": 9, "b": 3})
    with mpmath.workdps(30):
        assert close(m.value(m.elbo()), m.quadrature()["elbo"], mpmath.mpf(10) ** -15)


def test_inverse_gamma_kernel_gives_exact_evidence():
    m = model({"v": "InverseGamma(3, 2)"},
              {"x": {"dist": "Normal(0, sqrt(v))", "data": [0.5, -1.3, 1.2, 0.1, -0.7]}},
              {"v": "InverseGamma(a, b)"}, {"a": 5.5, "b": 3.8})
    post = m.evidence().posterior[0]
    assert post.family.name == "InverseGamma"
    # 3 + n/2 and 2 + sum(x**2)/2
    assert [sp.nsimplify(p.xreplace(m.statistics)) for p in post.params] == [R("5.5"), R("3.94")]
    with mpmath.workdps(30):
        quad = m.quadrature()
        assert close(m.value(m.log_evidence()), quad["log_evidence"], mpmath.mpf(10) ** -15)
        assert close(m.value(m.kl_to_posterior()), quad["kl"], mpmath.mpf(10) ** -15)


EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


@pytest.mark.parametrize("name", ["inverse_gamma_variance.toml", "lognormal_data.toml",
                                  "uniform_coin.toml", "quadrature/laplace_location.toml"])
def test_examples_of_the_new_families_pass(name):
    import io
    import json
    from symelbo.models.model_document import run_model
    out = io.StringIO()
    assert run_model(str(EXAMPLES / name), True, out) == 0
    rep = json.loads(out.getvalue())
    assert all(c["verdict"] in ("proved", "tested") for c in rep["checks"]
               if not c["name"].startswith("grad ")), rep["checks"]


def test_laplace_likelihood_over_many_distinct_values_says_why():
    from symelbo.models.model import NoClosedForm
    from symelbo.models.model_report import ModelReport
    data = [i / 997 for i in range(2500)]
    m = model({"theta": "Normal(0, 2)"}, {"x": {"dist": "Laplace(theta, 1)", "data": data}},
              {"theta": "Normal(m, s)"}, {"m": 0.4, "s": 0.5})
    with pytest.raises(NoClosedForm, match=r"^sum\(Abs\(theta - x\)\) over the data has no "
                       r"sufficient statistic, and its 2,500 distinct values are more than the "
                       r"2,000 summed one by one$"):
        m.elbo()
    assert m.statistics == {}
    report = ModelReport(m)
    assert "no sufficient statistic" in report.reasons["elbo"]
