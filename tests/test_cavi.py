"""symelbo cavi: derived updates against the textbook forms, the run, the checks, the command line."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import mpmath
import pytest
import sympy as sp

from symelbo.cli.commands import main
from symelbo.models import cavi
from symelbo.models.cavi_document import render_cavi
from symelbo.models.model import load_model, model_from_dict

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
#: Models for CAVI that `symelbo model` cannot check in full (no closed-form log evidence).
CAVI_EXAMPLES = EXAMPLES / "cavi"


@pytest.fixture(scope="module")
def reports():
    """Each example's report, computed once."""
    out = {}
    for name in ("normal_gamma", "beta_bernoulli", "gamma_poisson", "mixture",
                 "gaussian_mixture", "poisson_log_link", "normal_mean", "exponential_poisson"):
        folder = CAVI_EXAMPLES if name in ("mixture", "poisson_log_link") else EXAMPLES
        cr = cavi.CaviReport(load_model(str(folder / f"{name}.toml")))
        out[name] = (cr, cr.as_dict())
    return out


def _factor(cr, name):
    return next(f for f in cr.derivation.factors if f.name == name)


def _at(expr, env):
    return float(mpmath.mpf(cavi.mp_value(expr, env)))


# --- Bishop 10.1.3: Normal with unknown mean and precision -------------------

def test_normal_gamma_updates_are_bishop_10_26_to_10_30(reports):
    cr, _ = reports["normal_gamma"]
    model = cr.model
    x = [4.1, 5.3, 3.8, 4.9, 6.0, 5.1, 4.4, 5.6]
    N, sx, sxx = len(x), sum(x), sum(v * v for v in x)
    S = {s.symbol: s.value for s in cr.derivation.joint.stats.values()}
    q_mu, q_tau = _factor(cr, "mu"), _factor(cr, "tau")
    sym = {n: model.symbol(n) for n in ("mu0", "lambda0", "a0", "b0", "m", "s", "a", "b")}
    rng = random.Random(5)
    for _ in range(20):
        v = {n: rng.uniform(0.3, 3.0) for n in sym}
        env = {sym[n]: mpmath.mpf(v[n]) for n in sym}
        env.update({k: cavi.mp_value(val, {}) for k, val in S.items()})
        E_tau = v["a"] / v["b"]                                        # E[tau] under Gam(a, b)
        E_mu, E_mu2 = v["m"], v["m"] ** 2 + v["s"] ** 2
        mu_N = (v["lambda0"] * v["mu0"] + sx) / (v["lambda0"] + N)      # (10.26)
        lambda_N = (v["lambda0"] + N) * E_tau                           # (10.27)
        a_N = v["a0"] + (N + 1) / 2                                      # (10.29)
        b_N = v["b0"] + 0.5 * ((sxx - 2 * E_mu * sx + N * E_mu2)        # (10.30)
                               + v["lambda0"] * (E_mu2 - 2 * E_mu * v["mu0"] + v["mu0"] ** 2))
        got = {str(p): _at(e, env) for f in (q_mu, q_tau) for p, e in f.resolved.items()}
        assert got["m"] == pytest.approx(mu_N, rel=1e-12)
        assert got["s"] == pytest.approx(lambda_N ** -0.5, rel=1e-12)
        assert got["a"] == pytest.approx(a_N, rel=1e-12)
        assert got["b"] == pytest.approx(b_N, rel=1e-12)
    assert (q_mu.family, q_tau.family) == ("Normal", "Gamma")


def _bishop_fixed_point(x, mu0, lambda0, a0, b0, a, b):
    """Bishop's updates iterated in plain floats (an oracle independent of the module)."""
    N, sx, sxx = len(x), sum(x), sum(v * v for v in x)
    for _ in range(500):
        m = (lambda0 * mu0 + sx) / (lambda0 + N)
        lam = (lambda0 + N) * a / b
        E2 = m * m + 1 / lam
        a = a0 + (N + 1) / 2
        b = b0 + 0.5 * (sxx - 2 * m * sx + N * E2 + lambda0 * (E2 - 2 * m * mu0 + mu0 ** 2))
    return {"m": m, "s": lam ** -0.5, "a": a, "b": b}


def test_normal_gamma_fixed_point_and_kl_stays_positive(reports):
    cr, rep = reports["normal_gamma"]
    x = [4.1, 5.3, 3.8, 4.9, 6.0, 5.1, 4.4, 5.6]
    oracle = _bishop_fixed_point(x, 5, 1, 2, 2, 6, 3.5)
    assert rep["converged"] is True
    for k, v in oracle.items():
        assert rep["final"]["values"][k] == pytest.approx(v, rel=1e-9)
    final = rep["final"]
    # the model's own closed forms at the fixed point
    model = cr.model
    env = {s: cavi.mp_value(v, {}) for s, v in model.values.items()}
    env.update({model.symbol(k): mpmath.mpf(v) for k, v in oracle.items()})
    assert final["elbo"] == pytest.approx(float(cavi.mp_value(model.elbo(), env)), abs=1e-9)
    assert final["kl"] > 1e-3      # q(mu) q(tau) cannot reach the coupled posterior
    assert final["log_evidence"] - final["elbo"] == pytest.approx(final["kl"], abs=1e-9)


def test_normal_gamma_checks_are_proved_by_the_kernel(reports):
    _, rep = reports["normal_gamma"]
    verdicts = {(f["latent"], c["name"]): c["verdict"] for f in rep["factors"]
                for c in f["checks"]}
    assert verdicts == {
        ("mu", "q*(mu) is Normal"): "proved",
        ("mu", "grad ELBO = 0 at the update (m, s)"): "proved",
        ("mu", "ELBO never decreases under the update of q(mu)"): "tested",
        ("tau", "q*(tau) is Gamma"): "proved",
        ("tau", "grad ELBO = 0 at the update (a, b)"): "proved",
        ("tau", "ELBO never decreases under the update of q(tau)"): "tested"}
    assert cavi.exit_status(rep) == 0


# --- conjugate pairs: one update reaches the exact posterior -------------------

@pytest.mark.parametrize("name, expected", [
    ("beta_bernoulli", {"alpha": 2 + 4, "beta": 2 + 2}),          # a + sum x, b + n - sum x
    ("gamma_poisson", {"a": 2 + 24, "b": 0.5 + 7}),               # a0 + sum k, b0 + n
    ("exponential_poisson", {"a": 1 + 10, "b": 1 + 8}),
])
def test_conjugate_pair_reaches_the_posterior_in_one_update(reports, name, expected):
    cr, rep = reports[name]
    assert rep["final"]["values"] == pytest.approx(expected, rel=1e-12)
    assert rep["final"]["kl"] == pytest.approx(0, abs=1e-9)
    assert rep["final"]["elbo"] == pytest.approx(rep["final"]["log_evidence"], abs=1e-9)
    # the first update already sits at the optimum: the trace is flat after it
    assert rep["trace"][0] == pytest.approx(rep["final"]["log_evidence"], abs=1e-9)


def test_beta_bernoulli_update_is_symbolic_in_the_prior(reports):
    cr, rep = reports["beta_bernoulli"]
    f = _factor(cr, "theta")
    a, b = cr.model.symbol("a"), cr.model.symbol("b")
    n, sx = sp.Symbol("n", integer=True, positive=True), sp.Symbol("sum(x)", real=True)
    assert f.updates == {cr.model.symbol("alpha"): a + sx, cr.model.symbol("beta"): b + n - sx}
    assert rep["factors"][0]["updates"]["alpha"]["expr"] == "a + 4"


# --- mixtures: responsibilities (local) and means (global), Blei 2017 ---------

def _blei_cavi(x, sigma0, w, m, s2, sweeps=300):
    """Blei et al. (2017) Algorithm 2 for two unit-variance components, in plain floats."""
    m, s2 = list(m), list(s2)
    for _ in range(sweeps):
        r = []
        for xi in x:
            l0 = math.log(1 - w) + m[0] * xi - (m[0] ** 2 + s2[0]) / 2
            l1 = math.log(w) + m[1] * xi - (m[1] ** 2 + s2[1]) / 2
            r.append(1 / (1 + math.exp(l0 - l1)))
        for k, weights in enumerate(([1 - ri for ri in r], r)):
            den = 1 / sigma0 ** 2 + sum(weights)
            m[k] = sum(wi * xi for wi, xi in zip(weights, x)) / den
            s2[k] = 1 / den
    return r, m, s2


def test_mixture_responsibilities_and_means_are_blei(reports):
    cr, rep = reports["mixture"]
    x = [-2.1, -1.7, -2.6, -1.2, -2.2, 1.9, 2.4, 1.6, 2.8, 2.1]
    r, m, s2 = _blei_cavi(x, 3.0, 0.5, [-1, 1], [1, 1])
    final = rep["final"]["values"]
    assert [final["m1"], final["m2"]] == pytest.approx(m, rel=1e-8)
    assert [final["s1"] ** 2, final["s2"] ** 2] == pytest.approx(s2, rel=1e-8)
    assert list(cr.result.state.local[cr.model.symbol("r")]) == pytest.approx(r, abs=1e-8)
    z = _factor(cr, "z")
    assert (z.family, z.local) == ("Bernoulli", True)
    checks = {c["name"]: c["verdict"] for c in rep["factors"][0]["checks"]}
    assert checks["q*(z) is Bernoulli"] == "proved"
    assert checks["grad ELBO = 0 at the update (r)"] == "tested"


def test_mixture_update_uses_weighted_statistics(reports):
    _, rep = reports["mixture"]
    mu2 = next(f for f in rep["factors"] if f["latent"] == "mu2")
    assert mu2["updates"]["m2"]["expr"] == "sigma0**2*sum(r*x)/(sigma0**2*sum(r) + 1)"
    assert mu2["updates"]["m2"]["latex"].count(r"\sum_{i} r_{i} x_{i}") == 1


def test_mixture_with_known_components_reaches_the_exact_posterior(reports):
    cr, rep = reports["gaussian_mixture"]
    model_ev = float(cr.model.value(cr.model.log_evidence()))
    assert rep["final"]["log_evidence"] == pytest.approx(model_ev, abs=1e-10)
    assert rep["final"]["kl"] == pytest.approx(0, abs=1e-9)


@pytest.mark.parametrize("name", ["normal_gamma", "beta_bernoulli", "gamma_poisson", "mixture",
                                  "gaussian_mixture", "normal_mean", "exponential_poisson"])
def test_the_elbo_trace_never_decreases(reports, name):
    cr, rep = reports[name]
    trace = [float(cr.result.start_elbo)] + rep["trace"]
    assert all(b >= a - 1e-9 * (1 + abs(a)) for a, b in zip(trace, trace[1:]))
    assert cr.result.decreases == []


# --- declined factors ------------------------------------------------------------

def test_non_conjugate_factor_is_declined_with_the_terms(reports):
    _, rep = reports["poisson_log_link"]
    assert rep["factors"] == []
    assert rep["declined"] == [{
        "latent": "beta",
        "reason": "log q*(beta) = E[log p] + const contains -n*exp(beta): not a Normal kernel "
                  "(only beta and beta**2), so these terms break conjugacy and no family of "
                  "the table fits"}]
    assert rep["converged"] is False and rep["trace"] == []
    assert cavi.exit_status(rep) == 1


def _doc(**over):
    doc = {"latent": {"mu": "Normal(0, 1)"},
           "observed": {"x": {"dist": "Normal(mu, 1)", "data": [0.5, 1.5]}},
           "variational": {"mu": "Normal(m, s)"}, "values": {"m": 0, "s": 1}}
    doc.update(over)
    return doc


@pytest.mark.parametrize("variational, reason", [
    ({"mu": "Laplace(m, s)"}, "the optimal q(mu) is a Normal; q(mu) = Laplace is not"),
    ({"mu": "Normal(m, 1)"}, "q(mu) = Normal(m, 1) fixes its std to 1: CAVI needs each "
                             "parameter of q as a name of its own"),
])
def test_a_q_outside_the_optimal_family_is_declined(variational, reason):
    values = {k: v for k, v in {"m": 0, "s": 1}.items()
              if k in "".join(variational.values())}
    rep = cavi.report(model_from_dict(_doc(variational=variational, values=values)))
    assert rep["declined"] == [{"latent": "mu", "reason": reason}]


def test_a_decrease_is_reported_as_a_bug(reports):
    cr, _ = reports["beta_bernoulli"]
    factor = _factor(cr, "theta")
    fake = cavi.Run(trace=[("theta", mpmath.mpf(-3)), ("theta", mpmath.mpf(-4))],
                    decreases=[(2, "theta", mpmath.mpf(-3), mpmath.mpf(-4))])
    check = cavi.checks_of(factor, fake)[-1]
    assert check == {"name": "ELBO never decreases under the update of q(theta)",
                     "verdict": "refuted",
                     "message": "BUG: update 2 lowered the ELBO from -3.0 to -4.0"}


def test_default_start_when_values_are_missing():
    rep = cavi.report(model_from_dict(_doc(values={})))
    # Normal(0, 1) prior, two unit-noise observations: the exact posterior N(2/3, 1/3)
    assert rep["final"]["values"] == pytest.approx({"m": 2 / 3, "s": 3 ** -0.5}, rel=1e-12)
    assert rep["final"]["kl"] == pytest.approx(0, abs=1e-12)


# --- cost linear in N: per-observation statistics -----------------------------

def test_updates_of_a_large_model_read_only_statistics():
    np = pytest.importorskip("numpy")
    data = np.random.default_rng(3).normal(2.0, 0.5, 100_000)
    doc = {"latent": {"mu": "Normal(0, 10)", "tau": "Gamma(1, 1)"},
           "observed": {"x": {"dist": "Normal(mu, 1/sqrt(tau))", "data": data}},
           "variational": {"mu": "Normal(m, s)", "tau": "Gamma(a, b)"},
           "values": {"m": 0, "s": 1, "a": 1, "b": 1}}
    cr = cavi.CaviReport(model_from_dict(doc))
    mu = _factor(cr, "mu")
    x = cr.model.observed[0].symbol
    # the updates read n, sum(x) and sum(x**2), never the observations themselves
    assert all(x not in e.free_symbols for f in cr.derivation.factors for e in f.resolved.values())
    assert {str(s) for e in mu.resolved.values() for s in e.free_symbols} >= {"sum(x)", "n"}
    assert cr.as_dict()["final"]["values"]["m"] == pytest.approx(float(data.mean()), rel=1e-3)


# --- the command line ------------------------------------------------------------

def test_json_contract(capsys):
    status = main(["cavi", str(EXAMPLES / "gamma_poisson.toml"), "--json"])
    rep = json.loads(capsys.readouterr().out)
    assert status == 0
    assert list(rep) == ["model", "factors", "trace", "final", "converged", "declined"]
    assert list(rep["factors"][0]) == ["latent", "family", "updates", "checks"]
    assert list(rep["factors"][0]["updates"]["a"]) == ["expr", "latex"]
    assert list(rep["final"]) == ["values", "elbo", "log_evidence", "kl"]
    assert all(list(c) == ["name", "verdict", "message"] for c in rep["factors"][0]["checks"])


def test_text_output_shows_derivation_and_run(capsys):
    main(["cavi", str(EXAMPLES / "normal_gamma.toml"), "--iterations", "3"])
    out = capsys.readouterr().out
    assert "log q*(mu) = E_{tau}[log p(X, Z)] + const" in out
    assert "so q*(mu) = Normal: mu_N = (lambda0*mu0 + sum(x))/(lambda0 + n)" in out
    assert "NOT converged after 3 sweeps" in out


@pytest.mark.parametrize("argv, message", [
    (["--iterations", "0"], "symelbo: <command line>: --iterations must be at least 1, got 0\n"),
    (["--tol", "-1"], "symelbo: <command line>: --tol must be a positive number, got -1.0\n"),
    (["--pdf"], "symelbo: <command line>: --pdf needs -o OUT.pdf\n"),
])
def test_bad_options_exit_2_with_one_line(capsys, argv, message):
    assert main(["cavi", str(EXAMPLES / "beta_bernoulli.toml"), *argv]) == 2
    assert capsys.readouterr().err == message


@pytest.mark.parametrize("fmt", ["latex", "markdown"])
def test_documents_are_deterministic_and_show_the_updates(reports, fmt):
    cr, rep = reports["normal_gamma"]
    text = render_cavi(cr, rep, fmt)
    assert text == render_cavi(cr, rep, fmt)
    assert r"q^\star(\mu) = \mathcal{N}\left(\mu \mid \mu_{N}, \lambda_{N}^{-1}\right)" in text
    assert r"\text{const}" in text and r"\propto" in text


def test_pdf_compiles(tmp_path):
    if not __import__("shutil").which("pdflatex"):
        pytest.skip("pdflatex not installed")
    out = tmp_path / "ng.pdf"
    assert main(["cavi", str(CAVI_EXAMPLES / "mixture.toml"), "--pdf", "-o", str(out)]) == 0
    assert out.read_bytes().startswith(b"%PDF")


def test_hierarchical_normal_fixed_point():
    cr = cavi.CaviReport(load_model(str(CAVI_EXAMPLES / "hierarchical_normal.toml")))
    rep = cr.as_dict()
    x = [1.2, 3.4, 2.2, 0.5, 2.9]
    # t_i = (E[mu] + 4 x_i) / 5 and E[mu] = 25 sum t / (25 n + 1) meet at 20 sum x / (20 n + 1)
    m = 20 * sum(x) / (20 * len(x) + 1)
    final = rep["final"]["values"]
    assert final["m"] == pytest.approx(m, rel=1e-8)
    assert final["s"] == pytest.approx((len(x) / 4 + 1 / 100) ** -0.5, rel=1e-12)
    assert [final[f"t_{i}"] for i in range(1, 6)] == pytest.approx(
        [(m + 4 * xi) / 5 for xi in x], rel=1e-8)
    assert rep["final"]["kl"] > 1e-3
    assert rep["final"]["log_evidence"] - rep["final"]["elbo"] == pytest.approx(
        rep["final"]["kl"], abs=1e-9)
    assert cavi.exit_status(rep) == 0


def test_categorical_factor_is_stationary_along_the_simplex():
    doc = {"latent": {"z": "Categorical(0.2, 0.3, 0.5)"},
           "observed": {"x": {"dist": "Normal(z, 1)", "data": [1.2, 2.4, 0.2]}},
           "variational": {"z": "Categorical(p1, p2, p3)"},
           "values": {"p1": 0.3, "p2": 0.3, "p3": 0.4}}
    rep = cavi.report(model_from_dict(doc))
    # the exact posterior: prior times the likelihood at each value, normalised
    x = [1.2, 2.4, 0.2]
    weights = [w * math.exp(-sum((xi - k) ** 2 for xi in x) / 2)
               for k, w in enumerate((0.2, 0.3, 0.5))]
    post = [w / sum(weights) for w in weights]
    final = rep["final"]["values"]
    assert [final["p1"], final["p2"], final["p3"]] == pytest.approx(post, rel=1e-12)
    checks = {c["name"]: c["verdict"] for c in rep["factors"][0]["checks"]}
    assert checks["q*(z) is Categorical"] == "proved"
    assert checks["grad ELBO = 0 at the update (p2, p3)"] in ("proved", "tested")


def test_plot_of_the_trace(tmp_path):
    pytest.importorskip("matplotlib")
    out = tmp_path / "trace.png"
    assert main(["cavi", str(EXAMPLES / "gamma_poisson.toml"), "--plot", str(out), "--json",
                 "-o", str(tmp_path / "rep.json")]) == 0
    assert out.read_bytes().startswith(b"\x89PNG")


@pytest.mark.parametrize("path", ["cavi/mixture.toml", "cavi/hierarchical_normal.toml",
                                  "gaussian_mixture.toml"])
def test_the_elbo_of_the_run_is_symelbo_models_elbo(path):
    """The ELBO assembled from weighted statistics equals the model's own closed form."""
    model = load_model(str(EXAMPLES / path))
    rep = cavi.report(model)
    env = {s: cavi.mp_value(v, {}) for s, v in model.values.items()}
    env.update({p: mpmath.mpf(rep["final"]["values"][str(p)])
                for p in model.variational_parameters})
    assert float(cavi.mp_value(model.elbo(), env)) == pytest.approx(rep["final"]["elbo"],
                                                                    abs=1e-9)
