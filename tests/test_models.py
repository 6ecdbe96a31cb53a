"""Models: closed forms agree with independent formulas and quadrature; bad input is located."""

from __future__ import annotations

from pathlib import Path

import mpmath
import pytest
import sympy as sp

from symelbo.core.errors import InputError
from symelbo.models.model import NoClosedForm, load_model, model_from_dict

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
ALL = sorted(p.name for p in EXAMPLES.glob("*.toml"))


def example(name):
    return load_model(str(EXAMPLES / name))


def num(model, expr):
    return model.value(expr)


@pytest.mark.parametrize("name", ALL)
def test_identity_holds_symbolically_with_data_as_statistics(name):
    m = example(name)
    diff = m.log_evidence(True) - m.elbo(True) - m.kl_to_posterior(True)
    e = sp.expand(diff)
    assert e == 0 or sp.cancel(e) == 0


@pytest.mark.parametrize("name", ALL)
def test_elbo_below_evidence_at_values(name):
    m = example(name)
    with mpmath.workdps(50):
        gap = num(m, m.log_evidence()) - num(m, m.elbo())
        assert gap > 0
        assert abs(gap - num(m, m.kl_to_posterior())) < mpmath.mpf(10) ** -40


@pytest.mark.parametrize("name", ALL)
def test_log_evidence_is_free_of_variational_parameters(name):
    m = example(name)
    assert not set(m.variational_parameters) & m.log_evidence().free_symbols


def test_beta_bernoulli_evidence_matches_beta_function_formula():
    m = example("beta_bernoulli.toml")
    a, b = m.symbol("a"), m.symbol("b")
    n1, n0 = 4, 2
    want = (sp.loggamma(a + n1) + sp.loggamma(b + n0) - sp.loggamma(a + b + n1 + n0)
            - sp.loggamma(a) - sp.loggamma(b) + sp.loggamma(a + b))
    assert sp.expand(m.log_evidence() - want) == 0
    # The posterior is Beta(a + 4, b + 2): q at those values has KL 0.
    kl = m.kl_to_posterior().subs({m.symbol("alpha"): a + 4, m.symbol("beta"): b + 2})
    assert sp.expand(kl) == 0


def test_normal_mean_evidence_matches_quadrature():
    m = example("normal_mean.toml")
    data = m.observed[0].data
    with mpmath.workdps(30):
        def joint(t):
            out = -t ** 2 / 8 - mpmath.log(2) - mpmath.log(2 * mpmath.pi) / 2
            for x in data:
                out += -(mpmath.mpf(repr(x)) - t) ** 2 / 2 - mpmath.log(2 * mpmath.pi) / 2
            return mpmath.exp(out)
        want = mpmath.log(mpmath.quad(joint, [-mpmath.inf, 0, 1, 2, mpmath.inf]))
        assert abs(num(m, m.log_evidence()) - want) < mpmath.mpf(10) ** -20


def test_gaussian_mixture_evidence_is_a_sum_over_assignments():
    m = example("gaussian_mixture.toml")
    with mpmath.workdps(30):
        want = mpmath.fsum(
            mpmath.log(mpmath.mpf(1) / 2 * mpmath.npdf(mpmath.mpf(repr(x)), -2, 1)
                       + mpmath.mpf(1) / 2 * mpmath.npdf(mpmath.mpf(repr(x)), 2, 1))
            for x in m.observed[0].data)
        assert abs(num(m, m.log_evidence()) - want) < mpmath.mpf(10) ** -25
    assert len(m.variational_parameters) == 6


def test_normal_gamma_evidence_matches_textbook_formula():
    m = example("normal_gamma.toml")
    xs = [sp.Rational(repr(v)) for v in m.observed[0].data]
    n, s1 = len(xs), sum(xs)
    s2 = sum(x ** 2 for x in xs)
    mu0, l0, a0, b0 = 5, 1, 2, 2
    ln = l0 + n
    an = sp.Rational(a0) + sp.Rational(n, 2)
    bn = b0 + (s2 - s1 ** 2 / n) / 2 + l0 * n * (s1 / n - mu0) ** 2 / (2 * ln)
    want = (sp.loggamma(an) - sp.loggamma(a0) + a0 * sp.log(b0) - an * sp.log(bn)
            + sp.log(sp.Rational(l0, ln)) / 2 - sp.Rational(n, 2) * sp.log(2 * sp.pi))
    with mpmath.workdps(40):
        assert abs(num(m, m.log_evidence()) - num(m, want)) < mpmath.mpf(10) ** -30


def test_kl_routes_are_independent_computations():
    # The KL comes from the table / posterior, not from log p(X) - ELBO.
    m = example("gamma_poisson.toml")
    kl = m.kl_to_posterior()
    assert kl.has(sp.polygamma) or kl.has(sp.digamma)
    assert not kl.has(sp.Symbol("n"))


def test_statistics_make_cost_independent_of_n():
    def model(n):
        return model_from_dict({
            "latent": {"mu": "Normal(0, 1)"},
            "observed": {"x": {"dist": "Normal(mu, 1)",
                               "data": [((i * 37) % 101) / 50 for i in range(n)]}},
            "variational": {"mu": "Normal(m, s)"},
            "values": {"m": 0.5, "s": 0.3}})
    small, large = model(10), model(20000)
    assert sp.count_ops(small.elbo(True)) == sp.count_ops(large.elbo(True))
    assert set(str(s) for s in large.statistics) == {"n", "sum(x)", "sum(x**2)"}
    assert large.statistics[sp.Symbol("n", integer=True, positive=True)] == 20000


def test_symbols_without_values_stay_symbolic():
    m = model_from_dict({
        "latent": {"theta": "Beta(a, b)"},
        "observed": {"x": {"dist": "Bernoulli(theta)", "data": [1, 1, 0]}},
        "variational": {"theta": "Beta(alpha, beta)"}})
    assert m.value(m.elbo()) is None
    assert m.symbol("a").is_positive and m.symbol("alpha").is_positive
    assert [str(p) for p in m.variational_parameters] == ["alpha", "beta"]


def test_data_files(tmp_path):
    np = pytest.importorskip("numpy")
    (tmp_path / "x.csv").write_text("1.5\n# a comment\n\n2.5\n")
    np.save(tmp_path / "y.npy", np.array([1.5, 2.5]))
    for name in ("x.csv", "y.npy"):
        (tmp_path / "m.toml").write_text(
            '[latent]\nmu = "Normal(0, 1)"\n[observed]\n'
            f'x = {{ dist = "Normal(mu, 1)", data_file = "{name}" }}\n'
            '[variational]\nmu = "Normal(m, s)"\n')
        m = load_model(str(tmp_path / "m.toml"))
        assert m.observed[0].data == [1.5, 2.5]


def test_data_with_two_axes_is_refused(tmp_path):
    np = pytest.importorskip("numpy")
    np.save(tmp_path / "y.npy", np.ones((3, 2)))
    np.save(tmp_path / "col.npy", np.array([[1.5], [2.5]]))
    text = ('[latent]\nmu = "Normal(0, 1)"\n[observed]\n'
            'x = {{ dist = "Normal(mu, 1)", data_file = "{}" }}\n[variational]\nmu = "Normal(m, s)"\n')
    (tmp_path / "m.toml").write_text(text.format("y.npy"))
    # a 2-d array is a table: without column names it is refused, its place named
    with pytest.raises(InputError, match=r"m\.toml:4:44: \[observed\] x: a 2-d data array needs columns"):
        load_model(str(tmp_path / "m.toml"))
    (tmp_path / "m.toml").write_text(text.format("col.npy"))
    assert load_model(str(tmp_path / "m.toml")).observed[0].data == [1.5, 2.5]
    doc = {"latent": {"mu": "Normal(0, 1)"},
           "observed": {"x": {"dist": "Normal(mu, 1)", "data": np.ones((2, 2))}},
           "variational": {"mu": "Normal(m, s)"}}
    with pytest.raises(InputError, match="shape 2x2"):
        model_from_dict(doc)


def test_quadrature_fallback_without_closed_form():
    m = model_from_dict({
        "latent": {"t": "Normal(0, 1)"},
        "observed": {"x": {"dist": "Bernoulli(1/(1 + exp(-t)))", "data": [1, 0, 1]}},
        "variational": {"t": "Normal(m, s)"},
        "values": {"m": 0.3, "s": 0.8}})
    with pytest.raises(NoClosedForm):
        m.elbo()
    with pytest.raises(NoClosedForm):
        m.log_evidence()
    q = m.quadrature()
    assert q["kl"] > 0
    assert abs(q["log_evidence"] - q["elbo"] - q["kl"]) < mpmath.mpf(10) ** -15


def test_poisson_log_link_elbo_is_closed_form_and_matches_quadrature():
    """E_q[exp(beta)] under a Normal q is its moment generating function at 1."""
    m = model_from_dict({
        "latent": {"beta": "Normal(0, 1)"},
        "observed": {"y": {"dist": "Poisson(exp(beta))", "data": [2, 0, 3, 1, 4]}},
        "variational": {"beta": "Normal(m, s)"},
        "values": {"m": 0.5, "s": 0.3}})
    elbo = m.elbo()
    assert elbo.has(sp.exp) and not elbo.has(m.symbol("beta"))
    with mpmath.workdps(30):
        q = m.quadrature()
        assert abs(m.value(elbo) - q["elbo"]) < mpmath.mpf(10) ** -12


def test_huge_counts_keep_loggamma_unevaluated():
    """loggamma(n) of a huge integer statistic is not expanded into log((n - 1)!)."""
    m = model_from_dict({
        "latent": {"lam": "Gamma(2, 1)"},
        "observed": {"k": {"dist": "Poisson(lam)", "data": [10 ** 18, 3]}},
        "variational": {"lam": "Gamma(a, b)"},
        "values": {"a": 2, "b": 1}})
    evidence = m.log_evidence()
    assert sp.loggamma(10 ** 18 + 5, evaluate=False) in evidence.atoms(sp.loggamma)
    assert mpmath.isfinite(m.value(evidence))
    small = model_from_dict({
        "latent": {"lam": "Gamma(2, 1)"},
        "observed": {"k": {"dist": "Poisson(lam)", "data": [1, 3]}},
        "variational": {"lam": "Gamma(a, b)"}})
    assert not small.log_evidence().has(sp.loggamma)   # loggamma(6) = log(120) as usual


def test_quadrature_that_does_not_finish_has_no_value(monkeypatch):
    from symelbo.models import model as models
    monkeypatch.setattr(models, "QUADRATURE_BUDGET", 0.5)
    m = model_from_dict({
        "latent": {"mu": "Normal(0, 1)"},
        "observed": {"x": {"dist": "Normal(exp(exp(exp(mu))), 1)", "data": [1.0, 2.0]}},
        "variational": {"mu": "Normal(m, s)"},
        "values": {"m": 0.1, "s": 0.5}})
    with pytest.raises(NoClosedForm, match="did not finish within 0.5 s"):
        m.quadrature()


def test_q_outside_prior_support_has_no_elbo():
    m = model_from_dict({
        "latent": {"lam": "Gamma(2, 1)"},
        "observed": {"k": {"dist": "Poisson(lam)", "data": [1, 2]}},
        "variational": {"lam": "Normal(m, s)"}})
    with pytest.raises(NoClosedForm, match="infinite"):
        m.elbo()


def test_q_inside_prior_support_is_fine():
    # KL(q || p) is finite when q's support lies inside the posterior's.
    m = model_from_dict({
        "latent": {"mu": "Normal(0.5, 1)"},
        "observed": {"x": {"dist": "Normal(mu, 1)", "data": [0.2, 0.7]}},
        "variational": {"mu": "Beta(c, d)"},
        "values": {"c": 2, "d": 3}})
    assert m.value(m.kl_to_posterior()) > 0


BAD = [
    ('[latent]\ntheta = "Betta(a, b)"\n[observed]\nx = { dist = "Bernoulli(theta)", '
     'data = [1] }\n[variational]\ntheta = "Beta(c, d)"\n', "unknown family 'Betta'", 2, 10),
    ('[latent]\ntheta = "Beta(a)"\n[observed]\nx = { dist = "Bernoulli(theta)", '
     'data = [1] }\n[variational]\ntheta = "Beta(c, d)"\n', "takes 2 parameters", 2, 10),
    ('[latent]\nmu = "Normal(0, -1)"\n[observed]\nx = { dist = "Normal(mu, 1)", '
     'data = [1] }\n[variational]\nmu = "Normal(m, s)"\n', "std of Normal must be positive", 2,
     17),
    ('[latent]\nmu = "Normal(0, s0)"\n[observed]\nx = { dist = "Normal(mu, 1)", '
     'data = [1] }\n[variational]\nmu = "Normal(m, s)"\n[values]\ns0 = -2\n',
     "s0 must be positive", 8, 6),
    ('[latent]\ntheta = "Beta(1, 1)"\n[observed]\nx = { dist = "Bernoulli(theta)", '
     'data = [1, 2] }\n[variational]\ntheta = "Beta(c, d)"\n', "outside the support", 4, None),
    ('[latent]\ntheta = "Beta(1, 1)\n[observed]\n', "malformed TOML", 2, None),
    ('[latent]\nt = "Normal(0, 1 +)"\n[observed]\nx = { dist = "Normal(t, 1)", data = [1] }\n'
     '[variational]\nt = "Normal(m, s)"\n', "unexpected ')'", 2, 19),
    ('[latent]\nt = "Normal(0, 1)"\n[observed]\nx = { dist = "Normal(t, 1)", data = [1] }\n',
     "no variational family for latent 't'", None, None),
    ('[latent]\nt = "Normal(0, 1)"\n[observed]\nx = { dist = "Normal(t, 1)", data = [1] }\n'
     '[variational]\nt = "Normal(m, s)"\n[values]\nzz = 1\n', "not used by the model", 8, None),
    ('[latent]\nt = "Normal(0, 1)"\n[observed]\nx = { dist = "Normal(t, 1)", data = ["a"] }\n'
     '[variational]\nt = "Normal(m, s)"\n', "must be a number", 4, None),
    ('[latent]\nt = "Normal(0, 1)"\n[observed]\nx = { dist = "Normal(t, 1)", '
     'data_file = "nope.csv" }\n[variational]\nt = "Normal(m, s)"\n', "not found", 4, None),
    ('[latent]\nt = "Normal(0, 1)"\n[observed]\nx = { dist = "Normal(t, 1)", data = [1] }\n'
     '[variational]\nt = "Normal(m, s)"\n[values]\ns = 0\n', "s must be positive", 8, None),
    ('[latent]\nt = "Normal(0, 1)"\n[observed]\nx = { dist = "Normal(t, __import__)", '
     'data = [1] }\n[variational]\nt = "Normal(m, s)"\n[values]\n__import__ = -1\n',
     "__import__ must be positive", 8, None),
    ('[latent]\np = "Beta(1, 1)"\n[observed]\nx = { dist = "Categorical(p, 1 - p, 0.5)", '
     'data = [1] }\n[variational]\np = "Beta(c, d)"\n', "sum to", 4, None),
]


@pytest.mark.parametrize("text,message,line,column", BAD)
def test_bad_input_is_located(tmp_path, text, message, line, column):
    f = tmp_path / "bad.toml"
    f.write_text(text)
    with pytest.raises(InputError) as info:
        load_model(str(f))
    err = info.value
    assert message in str(err), str(err)
    assert err.path == str(f)
    if line is not None:
        assert err.line == line, str(err)
    if column is not None:
        assert err.column == column, str(err)
    assert "\n" not in str(err)


def test_exact_sum_of_floats_is_exact():
    """The bulk sum of float64 values equals the sum of their exact rationals."""
    np = pytest.importorskip("numpy")
    from fractions import Fraction

    from symelbo.models.model import exact_sum
    rng = np.random.default_rng(7)
    cases = [np.array([5e-324, -5e-324, 1.0, -0.0, 0.0, 2.5e-320]),
             rng.normal(0, 1, 3000) * 10.0 ** rng.integers(-300, 300, 3000),
             np.array([1e308, 1e308, -1e308]),
             np.array([1.0, 1e-30, -1.0]),
             np.array([], dtype=float),
             rng.normal(5, 1, 200_000)]
    for values in cases:
        assert exact_sum(np, values) == sum((Fraction(v) for v in values.tolist()), Fraction(0))


@pytest.mark.parametrize("prior,dist,family,draw", [
    ("Normal(0, 1)", "Normal(mu, 1)", "Normal(m, s)", lambda rng, n: rng.normal(5, 2, n)),
    ("Gamma(2, 1)", "Poisson(mu)", "Gamma(m, s)", lambda rng, n: rng.poisson(3, n)),
    ("Gamma(2, 1)", "Poisson(mu)", "Gamma(m, s)", lambda rng, n: rng.poisson(3, n) + 2_000_000),
])
def test_a_large_array_gives_the_statistics_of_its_items(prior, dist, family, draw):
    """Data past EXACT_SUM_LIMIT take numpy's bulk route; the ELBO is the same expression."""
    np = pytest.importorskip("numpy")
    from symelbo.models.model import EXACT_SUM_LIMIT
    data = draw(np.random.default_rng(3), EXACT_SUM_LIMIT + 1)
    doc = {"latent": {"mu": prior}, "observed": {"x": {"dist": dist, "data": data}},
           "variational": {"mu": family}}
    bulk = model_from_dict(doc).elbo()
    doc["observed"]["x"]["data"] = data.tolist()
    assert bulk == model_from_dict(doc).elbo()


@pytest.mark.parametrize("latent,dist,family,values", [
    ({"dist": "Normal(mu, 1)", "per": "x"}, "Normal(z, s)", "Normal(m, v)", {"s": 1, "v": 0.5}),
    ({"dist": "Bernoulli(w)", "per": "x"}, "Normal(m1 + (m2 - m1)*z, 1)", "Bernoulli(r)",
     {"w": 0.3, "m1": -2, "m2": 2}),
])
def test_local_latents_are_integrated_out_one_group_at_a_time(latent, dist, family, values):
    """Each per-observation latent, integrated out of its own terms, gives the evidence that
    integrating it out of the whole log joint gives."""
    from symelbo.models.model import eliminate
    doc = {"latent": {"z": latent}, "observed": {"x": {"dist": dist, "data": [0.5, -1.25, 2.0]}},
           "variational": {"z": family}, "values": values}
    if "mu" in latent["dist"]:
        doc["latent"] = {"mu": "Normal(0, 2)", "z": latent}
        doc["variational"]["mu"] = "Normal(a, b)"
    m = model_from_dict(doc)
    joint, _ = m._statistics()
    local = [z for lat in m.latents if lat.per for z in lat.symbols]
    glob = [lat.symbols[0] for lat in m.latents if lat.per is None]
    supports = {z: lat.prior.family.support for lat in m.latents for z in lat.symbols}
    grouped = eliminate(joint, local + glob, supports, frozenset(local))
    whole = eliminate(joint, local + glob, supports)
    assert sp.simplify(grouped.log_evidence - whole.log_evidence) == 0
    assert [p.symbol for p in grouped.posterior] == [p.symbol for p in whole.posterior]
    assert grouped.conditions == whole.conditions


def test_bulk_data_that_overflow_a_float_are_an_error_not_a_value():
    np = pytest.importorskip("numpy")
    from symelbo.models.model import EXACT_SUM_LIMIT
    doc = {"latent": {"mu": "Normal(0, 1)"},
           "observed": {"x": {"dist": "Normal(mu, 1)", "data": np.full(EXACT_SUM_LIMIT + 1, 1e200)}},
           "variational": {"mu": "Normal(m, s)"}, "values": {"m": 0.5, "s": 0.5}}
    with pytest.raises(OverflowError, match="overflows a float"):
        model_from_dict(doc).elbo()


def test_a_model_keeps_its_own_copy_of_array_data():
    np = pytest.importorskip("numpy")
    data = np.linspace(1, 2, 30000)
    m = model_from_dict({"latent": {"lam": "Gamma(2, 1)"},
                         "observed": {"x": {"dist": "Exponential(lam)", "data": data}},
                         "variational": {"lam": "Gamma(a, b)"}})
    data[:] = -5
    assert {str(k): v for k, v in m.statistics.items()}["sum(x)"] == 45000
