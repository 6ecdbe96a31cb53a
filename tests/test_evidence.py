"""Log evidence with several latents: exact steps, then cubature over at most 3 globals.

Every value is checked to 1e-6 against an oracle computed here from the densities
alone: direct mpmath integration of the joint density over every latent, or an exact
sum over every assignment of the per-observation latents.
"""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import mpmath
import numpy as np
import pytest
import sympy as sp

from symelbo.models import families as fam
from symelbo.models.evidence import CubatureFailed, cubature, genz_malik
from symelbo.models.model import load_model
from symelbo.models.model_report import exit_status, report

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def write(tmp_path, text):
    p = tmp_path / "m.toml"
    p.write_text(text)
    return str(p)


def log_normal(x, m, s):
    """log N(x | m, s), for mpmath numbers or numpy arrays."""
    log = mpmath.log if any(isinstance(a, mpmath.mpf) for a in (x, m, s)) else np.log
    return -log(2 * math.pi * s ** 2) / 2 - (x - m) ** 2 / (2 * s ** 2)


def log_gamma_density(t, a, b):
    return a * math.log(b) - math.lgamma(a) + (a - 1) * np.log(t) - b * t


def log_integral_2d(f, xs, ys, order=120):
    """log of the integral of exp(f) over [xs[0], xs[-1]] x [ys[0], ys[-1]]: Gauss-Legendre of
    ``order`` nodes on each piece between breakpoints, each way (the oracle's own check: 80
    nodes agree with 120 to 1e-10)."""
    def nodes(cuts, n):
        t, w = np.polynomial.legendre.leggauss(n)
        pts, wts = [], []
        for a, b in zip(cuts[:-1], cuts[1:]):
            pts.append((b - a) / 2 * t + (a + b) / 2)
            wts.append((b - a) / 2 * w)
        return np.concatenate(pts), np.concatenate(wts)

    def once(n):
        (px, wx), (py, wy) = nodes(xs, n), nodes(ys, n)
        A, B = np.meshgrid(px, py, indexing="ij")
        vals = f(A, B)
        top = vals.max()
        return top + math.log(float(np.sum(np.exp(vals - top) * np.outer(wx, wy))))

    fine = once(order)
    assert abs(fine - once(order * 2 // 3)) < 1e-10
    return fine


# --- the cubature rule ------------------------------------------------------------------

@pytest.mark.parametrize("d", [1, 2, 3])
def test_genz_malik_is_exact_for_polynomials_of_degree_7(d):
    def f(x):
        out = 1 + x[0] ** 7 + 3 * x[0] ** 6
        if d > 1:
            out = out + x[0] ** 2 * x[1] ** 4 + x[1] ** 3 * x[0]
        if d > 2:
            out = out + x[2] ** 2 * x[1] ** 2 * x[0] ** 2
        return out
    exact = {1: 2 + 6 / 7, 2: 4 + 12 / 7 + 4 / 15, 3: 8 + 24 / 7 + 8 / 15 + 8 / 27}[d]
    value, error, _ = genz_malik(f, [-1] * d, [1] * d, rel_tol=1.0, initial=1)
    assert value == pytest.approx(exact, rel=1e-14)


def test_cubature_of_a_correlated_gaussian():
    a, b = sp.symbols("a b", real=True)
    # -(a^2 - 1.8 a b + b^2)/2: precision [[1, -0.9], [-0.9, 1]], integral 2 pi / sqrt(0.19)
    found = cubature(-(a ** 2 - sp.Rational(9, 5) * a * b + b ** 2) / 2, [a, b],
                     {a: fam.REAL, b: fam.REAL}, [[0.0, 0.0]])
    assert found["log_evidence"] == pytest.approx(math.log(2 * math.pi / math.sqrt(0.19)),
                                                  abs=1e-9)
    assert found["error"] < 1e-7


def test_cubature_refuses_a_posterior_that_does_not_fall_off():
    t = sp.Symbol("t", positive=True)
    with pytest.raises(CubatureFailed):
        cubature(-sp.log(t), [t], {t: fam.POSITIVE}, [[1.0]])


# --- models ----------------------------------------------------------------------------

def test_hierarchical_precision_against_direct_integration():
    rep = report(load_model(str(EXAMPLES / "quadrature" / "hierarchical_precision.toml")))
    xs = [0.8, 1.9, 1.1, 0.4]

    def f(tau, mu):
        return (log_gamma_density(tau, 2, 1) + log_normal(mu, 0, 1 / np.sqrt(tau))
                + sum(log_normal(x, mu, 1.0) for x in xs))
    oracle = log_integral_2d(f, [0, 0.5, 2, 6, 20, 80], [-8, -1, 0, 1, 2, 8])
    assert rep["log_evidence"]["value"] == pytest.approx(float(oracle), abs=1e-6)
    assert "tau integrated out exactly given mu" in rep["log_evidence"]["reason"]
    assert exit_status(rep) == 0
    checks = {c["name"]: c for c in rep["checks"]}
    assert checks["log evidence = ELBO + KL"]["message"] == (
        "not made: the KL is log p(X) by cubature minus the ELBO, so the identity holds by "
        "construction and tests nothing")
    assert checks["ELBO <= log evidence"]["verdict"] == "tested"


def mixture_oracle(xs, w_prior, means):
    """log p(x) as the sum over every assignment z of the exact integral over the weight
    (Beta) and each mean (Normal, unit noise); ``means``: (m, s) priors, or numbers."""
    total = []
    for z in itertools.product((0, 1), repeat=len(xs)):
        n1 = sum(z)
        part = mpmath.log(mpmath.beta(w_prior[0] + n1, w_prior[1] + len(xs) - n1)
                          / mpmath.beta(*w_prior))
        for k, prior in enumerate(means):
            pts = [x for x, zi in zip(xs, z) if zi == k]
            if not isinstance(prior, tuple):
                part += sum(log_normal(mpmath.mpf(x), prior, 1) for x in pts)
                continue
            m0, s0 = prior
            prec = 1 / s0 ** 2 + len(pts)
            mean = (m0 / s0 ** 2 + sum(pts)) / prec
            part += (-len(pts) * mpmath.log(2 * mpmath.pi) / 2 - mpmath.log(s0)
                     - mpmath.log(prec) / 2
                     - (m0 ** 2 / s0 ** 2 + sum(x * x for x in pts) - prec * mean ** 2) / 2)
        total.append(part)
    top = max(total)
    return top + mpmath.log(mpmath.fsum(mpmath.exp(t - top) for t in total))


def test_mixture_with_a_global_weight_against_the_sum_over_assignments():
    rep = report(load_model(str(EXAMPLES / "quadrature" / "mixture_weight.toml")))
    with mpmath.workdps(30):
        oracle = mixture_oracle([-1.9, -2.3, 0.1, 1.8, 2.4, 2.2, -1.5], (2, 2), (-2, 2))
    assert rep["log_evidence"]["value"] == pytest.approx(float(oracle), abs=1e-6)
    assert rep["kl"]["value"] == pytest.approx(float(oracle) - rep["elbo"]["value"], abs=1e-6)
    assert "the per-observation assignments summed out exactly" in rep["log_evidence"]["reason"]
    assert exit_status(rep) == 0


def test_mixture_with_three_globals_against_the_sum_over_assignments(tmp_path):
    xs = [-1.9, 0.3, 2.2]   # small: three dimensions of cubature
    text = f"""
[latent]
w = "Beta(2, 2)"
m1 = "Normal(-1, 2)"
m2 = "Normal(1, 2)"
z = {{ dist = "Bernoulli(w)", per = "x" }}
[observed]
x = {{ dist = "Normal(m1 + (m2 - m1)*z, 1)", data = {xs} }}
[variational]
w = "Beta(4, 5)"
m1 = "Normal(-2, 0.4)"
m2 = "Normal(2, 0.4)"
z = "Bernoulli(r)"
[values]
r = [0.05, 0.5, 0.95]
"""
    found = load_model(write(tmp_path, text)).quadrature()
    with mpmath.workdps(30):
        oracle = mixture_oracle(xs, (2, 2), ((-1, 2), (1, 2)))
    assert float(found["log_evidence"]) == pytest.approx(float(oracle), abs=1e-6)
    assert found["error"] < 1e-6
    assert "cubature over w, m1, m2" in found["how"]


def test_regression_with_an_unknown_noise_precision_against_direct_integration(tmp_path):
    xs, ys = [0.5, -1.0, 2.0], [0.9, -1.7, 4.4]
    text = f"""
[latent]
w = "Normal(0, 2)"
tau = "Gamma(2, 2)"
[observed]
y = {{ dist = "Normal(w*x, 1/sqrt(tau))", data = {{ x = {xs}, y = {ys} }} }}
[variational]
w = "Normal(2, 0.1)"
tau = "Gamma(3, 2)"
"""
    found = load_model(write(tmp_path, text)).quadrature()

    def f(w, tau):
        return (log_normal(w, 0, 2.0) + log_gamma_density(tau, 2, 2)
                + sum(log_normal(y, w * x, 1 / np.sqrt(tau)) for x, y in zip(xs, ys)))
    oracle = log_integral_2d(f, [-6, 1, 2, 3, 8], [0, 0.5, 2, 6, 20, 60])
    assert float(found["log_evidence"]) == pytest.approx(float(oracle), abs=1e-6)


def test_a_conjugate_chain_is_exact_and_matches_direct_integration():
    m = load_model(str(EXAMPLES / "normal_gamma.toml"))
    xs = [4.1, 5.3, 3.8, 4.9, 6.0, 5.1, 4.4, 5.6]

    def f(mu, tau):
        return (log_gamma_density(tau, 2, 2) + log_normal(mu, 5, 1 / np.sqrt(tau))
                + sum(log_normal(x, mu, 1 / np.sqrt(tau)) for x in xs))
    oracle = log_integral_2d(f, [2, 4, 5, 6, 8], [0, 0.3, 1, 3, 10])
    assert float(m.value(m.log_evidence())) == pytest.approx(float(oracle), abs=1e-6)


def test_more_than_three_non_conjugate_globals_are_declined_with_a_reason(tmp_path):
    text = """
[latent]
a = "Normal(0, 1)"
b = "Normal(0, 1)"
c = "Normal(0, 1)"
d = "Normal(0, 1)"
[observed]
x = { dist = "Poisson(exp(a) + exp(b) + exp(c) + exp(d))", data = [1, 2] }
[variational]
a = "Normal(0, 1)"
b = "Normal(0, 1)"
c = "Normal(0, 1)"
d = "Normal(0, 1)"
"""
    rep = report(load_model(write(tmp_path, text)))
    assert rep["log_evidence"]["value"] is None
    checks = {c["name"]: c for c in rep["checks"]}
    assert "more than 3 latents remain after the exact steps" in \
        checks["log evidence = ELBO + KL"]["message"]


def test_the_cubature_examples_pass():
    for name in ("hierarchical_precision.toml", "mixture_weight.toml"):
        rep = report(load_model(str(EXAMPLES / "quadrature" / name)))
        assert exit_status(rep) == 0
        assert all(rep[k]["value"] is not None and np.isfinite(rep[k]["value"])
                   for k in ("elbo", "log_evidence", "kl"))


CATEGORICAL_ASSIGNMENTS = """
[latent]
z = { dist = "Categorical(0.2, 0.3, 0.5)", per = "x" }
[observed]
x = { dist = "Normal(2*z - 2, 1)", data = [-1.9, 0.1, 2.2, 1.8] }
[variational]
z = "Categorical(r0, r1, r2)"
[values]
r0 = [0.8, 0.1, 0.05, 0.05]
r1 = [0.1, 0.8, 0.05, 0.15]
r2 = [0.1, 0.1, 0.9, 0.8]
"""


def test_assignments_with_three_values_are_summed_out_exactly(tmp_path):
    """Each z_i with values 0, 1, 2 is summed out (log sum_k exp); q's probabilities are
    free symbols, so the identity and the gradients hold on the simplex, the last
    probability being 1 minus the others, and the last has no derivative of its own."""
    rep = report(load_model(write(tmp_path, CATEGORICAL_ASSIGNMENTS)))
    x, w = [-1.9, 0.1, 2.2, 1.8], [0.2, 0.3, 0.5]
    oracle = sum(mpmath.log(sum(wk * mpmath.exp(log_normal(mpmath.mpf(xi), 2 * k - 2, 1))
                                for k, wk in enumerate(w))) for xi in x)
    assert rep["log_evidence"]["value"] == pytest.approx(float(oracle), abs=1e-12)
    r = [[0.8, 0.1, 0.1], [0.1, 0.8, 0.1], [0.05, 0.05, 0.9], [0.05, 0.15, 0.8]]
    elbo = sum(rk * (math.log(w[k]) + float(log_normal(mpmath.mpf(xi), 2 * k - 2, 1))
                     - math.log(rk)) for xi, ri in zip(x, r) for k, rk in enumerate(ri))
    assert rep["elbo"]["value"] == pytest.approx(elbo, abs=1e-12)
    checks = {c["name"]: c for c in rep["checks"]}
    assert checks["log evidence = ELBO + KL"]["verdict"] == "proved"
    assert "on the simplex" in checks["log evidence = ELBO + KL"]["message"]
    assert checks["grad ELBO = -grad KL (r0_1)"]["verdict"] == "proved"
    assert checks["grad ELBO = -grad KL (r2_1)"]["message"] == (
        "not made: r2_1 is 1 minus the other probabilities of q(z_1), so the derivatives "
        "are taken along the simplex, in the others")
    assert not any(c["verdict"] == "refuted" for c in rep["checks"])
    assert exit_status(rep) == 0


SCHOOLS = """
[latent]
mu = "Normal(0, 5)"
tau = "HalfNormal(2)"
theta = { dist = "Normal(mu, tau)", per = "x" }
[observed]
x = { dist = "Normal(theta, 1)", data = [2.8, 0.8, -0.3, 1.2] }
[variational]
mu = "Normal(m, s)"
tau = "LogNormal(lt, ls)"
theta = "Normal(t, v)"
[values]
m = 0.8
s = 0.45
lt = -0.3
ls = 0.6
t = [1.6, 0.8, 0.3, 1.0]
v = 0.6
"""


def test_a_spread_near_zero_is_integrated_without_cancellation(tmp_path):
    """Integrating the schools' effects and mu out leaves rational functions of tau such as
    4/tau**2 - 4/(tau**4 + tau**2): as written, doubles lose them near tau = 0 (where the
    cubature's box reaches); as one cancelled fraction they are exact. Oracle: x_i ~
    Normal(mu, sqrt(tau^2 + 1)) integrated over (mu, log tau) on a fine grid."""
    rep = report(load_model(write(tmp_path, SCHOOLS)))
    x = np.array([2.8, 0.8, -0.3, 1.2])
    mu = np.linspace(-25, 25, 2001)[:, None]
    u = np.linspace(-30, 3.5, 2001)[None, :]      # tau = exp(u)
    tau = np.exp(u)
    sd = np.sqrt(tau ** 2 + 1)
    log_f = (-0.5 * np.log(2 * np.pi * 25) - mu ** 2 / 50
             + 0.5 * np.log(2 / np.pi) - np.log(2) - tau ** 2 / 8 + u)   # HalfNormal(2), dtau
    for xi in x:
        log_f = log_f - 0.5 * np.log(2 * np.pi) - np.log(sd) - (xi - mu) ** 2 / (2 * sd ** 2)
    top = log_f.max()
    inner = np.trapezoid(np.exp(log_f - top), dx=u[0, 1] - u[0, 0], axis=1)
    oracle = top + math.log(np.trapezoid(inner, dx=mu[1, 0] - mu[0, 0]))
    assert rep["log_evidence"]["value"] == pytest.approx(oracle, abs=1e-7)
    assert "cubature over tau" in rep["log_evidence"]["reason"]
