"""Issue 18's must-fix models: divergent expectations are infinite (never a finite value that
passes), valid models are answered (Laplace prior, a Binomial's n in [values], Exponential
data with 0), a bimodal posterior is integrated over both modes, and the regression that
hung runs under its budget. Every value is checked against mpmath quadrature at 40 digits."""

from __future__ import annotations

import math
import time

import mpmath
import pytest

from symelbo.models import model_report
from symelbo.models.model import load_model
from symelbo.models.model_report import NOT_MADE, exit_status, report

mp = mpmath.mp


def run(tmp_path, text, name="m.toml"):
    path = tmp_path / name
    path.write_text(text)
    model = load_model(str(path))
    rep = report(model)
    return model, rep


def npdf(x, m, s):
    return mpmath.exp(-(x - m) ** 2 / (2 * s ** 2)) / (s * mpmath.sqrt(2 * mpmath.pi))


def gamma_pdf(x, a, b):
    return b ** a * x ** (a - 1) * mpmath.exp(-b * x) / mpmath.gamma(a)


def laplace_pdf(x, m, b):
    return mpmath.exp(-abs(x - m) / b) / (2 * b)


GAMMA_SIGMA = """[latent]
sigma = "Gamma(2, 1)"
[observed]
x = {{ dist = "Normal(0, sigma)", data = [0.5, -1.2, 0.3, 2.0] }}
[variational]
sigma = "Gamma(a, b)"
[values]
a = {a}
b = 2
"""
XS = [mpmath.mpf(v) for v in ("0.5", "-1.2", "0.3", "2.0")]


def sigma_joint(s):
    return gamma_pdf(s, 2, 1) * mpmath.fprod(npdf(x, 0, s) for x in XS)


def test_a_divergent_expectation_under_gamma_is_minus_infinity(tmp_path):
    model, rep = run(tmp_path, GAMMA_SIGMA.format(a=1.5))
    assert rep["elbo"]["value"] == float("-inf") and rep["kl"]["value"] == float("inf")
    assert rep["elbo"]["reason"].startswith(
        "E_q[sigma**(-2)] under q(sigma) = Gamma(a, b) is infinite at [values] (the shape "
        "minus 2 = -0.5 is not positive): the ELBO is -infinity")
    checks = {c["name"]: c for c in rep["checks"]}
    for name in ("log evidence = ELBO + KL", "ELBO <= log evidence", "two KL routes agree"):
        assert checks[name]["verdict"] == "unknown", checks[name]
    assert exit_status(rep) == 1
    # the oracle: E_q[sigma**-2] over (eps, 1) grows without bound as eps -> 0
    with mpmath.workdps(30):
        part = [mpmath.quad(lambda s: gamma_pdf(s, 1.5, 2) / s ** 2, [eps, 1])
                for eps in (mpmath.mpf(10) ** -4, mpmath.mpf(10) ** -8)]
    assert part[1] > 50 * part[0]


def test_the_same_expectation_is_finite_when_the_shape_allows(tmp_path):
    model, rep = run(tmp_path, GAMMA_SIGMA.format(a=2.5))
    with mpmath.workdps(40):
        def integrand(s):
            q = gamma_pdf(s, mpmath.mpf(2.5), 2)
            return q * (mpmath.log(sigma_joint(s)) - mpmath.log(q))
        elbo = mpmath.quad(integrand, [0, 1, 3, mpmath.inf])
        log_ev = mpmath.log(mpmath.quad(sigma_joint, [0, 1, 3, mpmath.inf]))
    assert rep["elbo"]["value"] == pytest.approx(float(elbo), rel=1e-10)
    assert rep["log_evidence"]["value"] == pytest.approx(float(log_ev), rel=1e-10)
    assert exit_status(rep) == 0


def test_the_quadrature_tail_analysis_finds_the_divergence_alone(tmp_path):
    # the ELBO has no closed form here (log q's Gamma shape is a symbol's power): the
    # quadrature's tail analysis alone must see E_q[sigma**-2] = infinity
    path = tmp_path / "m.toml"
    path.write_text(GAMMA_SIGMA.format(a=1.5))
    model = load_model(str(path))
    with mpmath.workdps(50):
        quad = model.quadrature()
    assert quad["elbo"] == -mpmath.inf and quad["kl"] == mpmath.inf
    assert quad["divergent"]["elbo"] == (
        "E_q[log p(X, sigma) - log q(sigma)] diverges: the integrand is not integrable as "
        "sigma -> 0.0 (|integrand| ~ |sigma - 0.0|^-1.5)")


POISSON_LAPLACE = """[latent]
beta = "Normal(0, 1)"
[observed]
k = {{ dist = "Poisson(exp(beta))", data = [3, 1, 4, 2] }}
[variational]
beta = "Laplace(m, s)"
[values]
m = 0.5
s = {s}
"""


def test_a_laplace_q_on_a_log_rate_is_minus_infinity(tmp_path):
    model, rep = run(tmp_path, POISSON_LAPLACE.format(s=1.5))
    assert rep["elbo"]["value"] == float("-inf")
    assert "E_q[exp(beta)] under q(beta) = Laplace(m, s) is infinite" in rep["elbo"]["reason"]
    assert all(c["verdict"] == "unknown" for c in rep["checks"][1:])
    with mpmath.workdps(30):  # the oracle: the tail of q * exp(beta) does not fall
        tail = [laplace_pdf(t, 0.5, 1.5) * mpmath.exp(t) for t in (10, 100)]
    assert tail[1] > tail[0]


def test_a_laplace_q_of_small_scale_on_a_log_rate_is_finite(tmp_path):
    model, rep = run(tmp_path, POISSON_LAPLACE.format(s=0.5))
    ks = [3, 1, 4, 2]
    with mpmath.workdps(40):
        def lj(b):
            return (-b ** 2 / 2 - mpmath.log(2 * mpmath.pi) / 2
                    + sum(k * b - mpmath.exp(b) - mpmath.loggamma(k + 1) for k in ks))

        def integrand(b):
            q = laplace_pdf(b, mpmath.mpf(0.5), mpmath.mpf(0.5))
            return q * (lj(b) - mpmath.log(q))
        elbo = mpmath.quad(integrand, [-mpmath.inf, 0, 0.5, 1, mpmath.inf])
    assert rep["elbo"]["value"] == pytest.approx(float(elbo), rel=1e-12)


def test_a_laplace_prior_is_integrated_and_exits_0(tmp_path):
    model, rep = run(tmp_path, """[latent]
theta = "Laplace(0, 1)"
[observed]
x = { dist = "Normal(theta, 1)", data = [0.5, 1.2, 0.3] }
[variational]
theta = "Normal(m, s)"
[values]
m = 0.5
s = 0.5
""")
    xs = [mpmath.mpf(v) for v in ("0.5", "1.2", "0.3")]
    with mpmath.workdps(40):
        joint = lambda t: laplace_pdf(t, 0, 1) * mpmath.fprod(npdf(x, t, 1) for x in xs)
        log_ev = mpmath.log(mpmath.quad(joint, [-mpmath.inf, 0, mpmath.inf]))
    assert rep["log_evidence"]["value"] == pytest.approx(float(log_ev), rel=1e-12)
    grads = [c for c in rep["checks"] if c["name"].startswith("grad")]
    assert [c["verdict"] for c in grads] == ["unknown", "unknown"]
    assert all(c["message"].startswith(NOT_MADE) for c in grads)
    # the values are all there and checked: the gradients alone do not fail the report
    assert exit_status(rep) == 0


def test_a_binomial_n_given_in_values(tmp_path):
    model, rep = run(tmp_path, """[latent]
theta = "Beta(1, 1)"
[observed]
k = { dist = "Binomial(N, theta)", data = [3, 5, 2] }
[variational]
theta = "Beta(a, b)"
[values]
N = 10
a = 3
b = 4
""")
    with mpmath.workdps(40):
        log_ev = mpmath.log(mpmath.quad(lambda t: mpmath.fprod(
            mpmath.binomial(10, k) * t ** k * (1 - t) ** (10 - k) for k in (3, 5, 2)), [0, 1]))
    assert rep["log_evidence"]["value"] == pytest.approx(float(log_ev), rel=1e-12)
    assert exit_status(rep) == 0


@pytest.mark.parametrize("n", [10000, 1000000])
def test_a_binomial_with_a_large_n_is_fast_and_right(tmp_path, n):
    start = time.process_time()
    model, rep = run(tmp_path, f"""[latent]
theta = "Beta(1, 1)"
[observed]
k = {{ dist = "Binomial({n}, theta)", data = [3000, 5000, 2000] }}
[variational]
theta = "Beta(3, 4)"
""")
    assert time.process_time() - start < 15  # it hung (log(n!) computed exactly)
    ks = [3000, 5000, 2000]
    with mpmath.workdps(40):
        lg = mpmath.loggamma
        log_ev = (sum(lg(n + 1) - lg(k + 1) - lg(n - k + 1) for k in ks)
                  + lg(1 + sum(ks)) + lg(1 + 3 * n - sum(ks)) - lg(2 + 3 * n))
    assert rep["log_evidence"]["value"] == pytest.approx(float(log_ev), rel=1e-9)


def test_exponential_data_may_hold_zero(tmp_path):
    model, rep = run(tmp_path, """[latent]
lam = "Gamma(2, 1)"
[observed]
x = { dist = "Exponential(lam)", data = [0.0, 1.5, 0.3] }
[variational]
lam = "Gamma(3, 2)"
""")
    with mpmath.workdps(40):
        xs = [0, mpmath.mpf("1.5"), mpmath.mpf("0.3")]
        log_ev = mpmath.log(mpmath.quad(lambda l: gamma_pdf(l, 2, 1) * mpmath.fprod(
            l * mpmath.exp(-l * x) for x in xs), [0, 1, mpmath.inf]))
    assert rep["log_evidence"]["value"] == pytest.approx(float(log_ev), rel=1e-12)


def test_a_negative_exponential_datum_is_still_refused(tmp_path):
    from symelbo.core.errors import InputError
    path = tmp_path / "m.toml"
    path.write_text('[latent]\nlam = "Gamma(2, 1)"\n[observed]\n'
                    'x = { dist = "Exponential(lam)", data = [-1.0] }\n'
                    '[variational]\nlam = "Gamma(3, 2)"\n')
    with pytest.raises(InputError, match=r"data value -1.0 \(item 1\) is outside the support "
                                         r"of Exponential, the non-negative reals"):
        load_model(str(path))


def test_both_modes_of_a_bimodal_posterior(tmp_path):
    model, rep = run(tmp_path, """[latent]
mu = "Normal(0, 2)"
[observed]
x = { dist = "Normal(mu^2, s)", data = [4.1, 3.9, 4.0, 4.3] }
[variational]
mu = "Normal(m, v)"
[values]
s = 0.2
m = 2
v = 0.3
""")
    xs = [mpmath.mpf(v) for v in ("4.1", "3.9", "4.0", "4.3")]
    with mpmath.workdps(40):
        joint = lambda u: npdf(u, 0, 2) * mpmath.fprod(npdf(x, u ** 2, mpmath.mpf("0.2"))
                                                       for x in xs)
        log_ev = mpmath.log(mpmath.quad(joint, [-mpmath.inf, -2.1, -2, -1.9, 0, 1.9, 2, 2.1,
                                                mpmath.inf]))
    assert abs(rep["log_evidence"]["value"] - float(log_ev)) < 1e-12
    identity = next(c for c in rep["checks"] if c["name"] == "log evidence = ELBO + KL")
    assert "each value with an error estimate of" in identity["message"]


def test_the_inlined_regression_runs_under_its_budget(tmp_path, monkeypatch):
    # one observed variable per point and a named noise std: the zero test used to run
    # for more than 600 s at 6 points
    monkeypatch.setattr(model_report, "ZERO_TEST_BUDGET", 0.5)
    pts = [(1.0, 2.1), (2.0, 3.9), (3.0, 6.2), (4.0, 7.8), (5.0, 10.1), (6.0, 12.2)]
    lines = ['[latent]', 'w = "Normal(0, 1)"', '[observed]']
    lines += [f'y{i} = {{ dist = "Normal(w*{x}, s)", data = [{y}] }}'
              for i, (x, y) in enumerate(pts)]
    lines += ['[variational]', 'w = "Normal(m, v)"', '[values]', 's = 0.5', 'm = 2', 'v = 0.1']
    start = time.process_time()
    model, rep = run(tmp_path, "\n".join(lines) + "\n")
    assert time.process_time() - start < 15
    s = mpmath.mpf("0.5")
    with mpmath.workdps(30):
        f = lambda w: npdf(w, 0, 1) * mpmath.fprod(npdf(mpmath.mpf(str(y)), w * mpmath.mpf(str(x)),
                                                        s) for x, y in pts)
        log_ev = mpmath.log(mpmath.quad(f, [-mpmath.inf, 1.9, 2.0, 2.1, mpmath.inf]))
    assert rep["log_evidence"]["value"] == pytest.approx(float(log_ev), rel=1e-12)
    assert exit_status(rep) == 0


def test_a_categorical_latent_with_300_values_is_fast(tmp_path):
    probs = ", ".join(["1/300"] * 300)
    start = time.process_time()
    model, rep = run(tmp_path, f'[latent]\nc = "Categorical({probs})"\n[observed]\n'
                               'x = { dist = "Normal(c, 1)", data = [3.5, 4.1] }\n'
                               f'[variational]\nc = "Categorical({probs})"\n')
    assert time.process_time() - start < 15   # it took over 60 s
    xs = [mpmath.mpf("3.5"), mpmath.mpf("4.1")]
    with mpmath.workdps(30):
        elbo = mpmath.fsum(sum(mpmath.log(npdf(x, k, 1)) for x in xs) for k in range(300)) / 300
    assert rep["elbo"]["value"] == pytest.approx(float(elbo), rel=1e-12)


@pytest.mark.parametrize("text, message", [
    ('[latent]\nmu = "Normal(x, 1)"\n[observed]\nx = { dist = "Normal(mu, 1)", data = [1.0] }\n'
     '[variational]\nmu = "Normal(m, s)"\n',
     "m.toml:2:14: [latent] mu: observed variable 'x' cannot be used as a parameter"),
    ('name = "a"\n[latent]\n[observed]\nx = { dist = "Normal(0, 1)", data = [1.0] }\n',
     "m.toml:2:1: the model has no [latent] variables"),
    ('[latent]\nmu = "Normal(0, 1)"\n[observed]\nx = { dist = "Normal(mu, 1)", data = [1.0] }\n'
     '[variational]\n', "m.toml:5:1: [variational]: no variational family for latent 'mu'"),
    ('[latent]\nmu = "Normal(0, 1)"\n[observed]\nk = { dist = "Binomial(N, mu)", data = [1] }\n'
     '[variational]\nmu = "Normal(m, s)"\n',
     "m.toml:4:24: [observed] k: the n of a Binomial likelihood needs a value (a number, or a "
     "name given one in [values])"),
])
def test_refusals_name_line_and_column(tmp_path, capsys, text, message):
    from symelbo.cli.commands import main
    path = tmp_path / "m.toml"
    path.write_text(text)
    assert main(["model", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.rstrip().endswith(message), err


def test_a_narrow_mode_between_scan_points_is_found(tmp_path):
    # the mode at mu = -3 is 0.004 wide and lies e**1000 below the other on the scan: it
    # was dropped before it was refined, and log p(X) came out log 2 too small
    model, rep = run(tmp_path, """[latent]
mu = "Normal(0, 3)"
[observed]
x = { dist = "Normal(mu^2, s)", data = [9.02, 8.97, 9.01, 9.0, 8.99] }
[variational]
mu = "Normal(m, v)"
[values]
s = 0.05
m = 3
v = 0.05
""")
    xs = [mpmath.mpf(v) for v in ("9.02", "8.97", "9.01", "9.0", "8.99")]
    with mpmath.workdps(40):
        joint = lambda u: npdf(u, 0, 3) * mpmath.fprod(npdf(x, u ** 2, mpmath.mpf("0.05"))
                                                       for x in xs)
        log_ev = mpmath.log(mpmath.quad(joint, [-mpmath.inf, -3.01, -3, -2.99, 0, 2.99, 3, 3.01,
                                                mpmath.inf]))
    assert abs(rep["log_evidence"]["value"] - float(log_ev)) < 1e-12


@pytest.mark.parametrize("q, what", [
    # the df of a StudentT written as 2: E[mu^2] = m^2 + s^2 df / (df - 2) would divide by 0
    ('"StudentT(2, m, s)"\n[values]\nm = 10.5\ns = 0.3\n', "E_q[mu**2]"),
    # a Gamma's shape written as 1 on a Normal's std: E[mu^-2] = b^2 / ((a - 1)(a - 2))
    ('"Gamma(1, b)"\n[values]\nb = 0.5\n', "E_q[mu**(-2)]"),
])
def test_an_entry_infinite_for_every_value_is_kept_as_a_name(tmp_path, q, what):
    """A table entry whose condition fails for the written numbers themselves is infinite
    whatever the values: the closed form keeps it as a name (never a division by 0, never
    an internal error), and the value is infinite with the reason."""
    lik = "Normal(mu, 1)" if "StudentT" in q else "Normal(0, mu)"
    prior = '"Normal(10, 3)"' if "StudentT" in q else '"Gamma(2, 1)"'
    model, rep = run(tmp_path, f'[latent]\nmu = {prior}\n[observed]\n'
                               f'x = {{ dist = "{lik}", data = [10.8, 9.6, 11.4] }}\n'
                               f'[variational]\nmu = {q}')
    assert rep["elbo"]["value"] == -math.inf and rep["kl"]["value"] == math.inf
    assert what in rep["elbo"]["expr"]
    assert "is infinite at [values]" in rep["elbo"]["reason"]
    assert math.isfinite(rep["log_evidence"]["value"])
    assert exit_status(rep) == 1
