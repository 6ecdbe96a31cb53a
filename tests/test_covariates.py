"""Covariates: data tables with named columns, likelihoods that use them, and their statistics.

Every value is checked against an oracle written here from the densities alone
(numpy's Gaussian algebra, mpmath quadrature of the joint density), to 1e-6.
"""

from __future__ import annotations

import math
from pathlib import Path

import mpmath
import numpy as np
import pytest

from symelbo.core.errors import InputError
from symelbo.models.model import load_model
from symelbo.models.model_report import report
from symelbo.models import tables

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

X = [0.1, 0.5, 1.2, -0.4, 2.0, 0.8]
Y = [1.3, 2.1, 3.3, 0.2, 5.1, 2.4]

REGRESSION = """
[latent]
w0 = "Normal(0, 10)"
w1 = "Normal(0, 10)"
[observed]
y = {{ dist = "Normal(w0 + w1*x, s)", {data} }}
[variational]
w0 = "Normal(m0, s0)"
w1 = "Normal(m1, s1)"
[values]
s = 0.5
m0 = 1
s0 = 0.2
m1 = 2
s1 = 0.1
"""


def write(tmp_path, text, name="m.toml"):
    p = tmp_path / name
    p.write_text(text)
    return str(p)


def csv(tmp_path, name="data.csv", x=X, y=Y):
    (tmp_path / name).write_text("x,y\n" + "".join(f"{a!r},{b!r}\n" for a, b in zip(x, y)))


def regression_oracle(x, y, s=0.5, prior=10.0, m=(1, 2), sd=(0.2, 0.1)):
    """log p(y) = log N(y | 0, s^2 I + prior^2 X X^T) and the ELBO row by row."""
    x, y = np.array(x), np.array(y)
    n = len(x)
    design = np.c_[np.ones(n), x]
    if n <= 200:
        cov = s ** 2 * np.eye(n) + prior ** 2 * design @ design.T
        _, logdet = np.linalg.slogdet(cov)
        quad = y @ np.linalg.solve(cov, y)
    else:   # the same by Woodbury's identity and the determinant lemma (2 x 2 matrices)
        gram = design.T @ design / s ** 2
        inner = np.eye(2) / prior ** 2 + gram
        b = design.T @ y / s ** 2
        logdet = n * math.log(s ** 2) + np.linalg.slogdet(np.eye(2) + prior ** 2 * gram)[1]
        quad = y @ y / s ** 2 - b @ np.linalg.solve(inner, b)
    log_ev = -0.5 * (quad + logdet + n * math.log(2 * math.pi))
    expected_sq = (y - m[0] - m[1] * x) ** 2 + sd[0] ** 2 + sd[1] ** 2 * x ** 2
    lik = np.sum(-0.5 * math.log(2 * math.pi * s ** 2) - expected_sq / (2 * s ** 2))
    prior_term = sum(-0.5 * math.log(2 * math.pi * prior ** 2) - (mj ** 2 + sj ** 2) /
                     (2 * prior ** 2) for mj, sj in zip(m, sd))
    entropy = sum(0.5 * math.log(2 * math.pi * math.e * sj ** 2) for sj in sd)
    return log_ev, lik + prior_term + entropy


def values(path):
    """The report and its three values (the whole report: for models without closed forms)."""
    rep = report(load_model(path))
    return rep, {k: rep[k]["value"] for k in ("elbo", "log_evidence", "kl")}


def closed_values(path):
    """The three closed forms at [values] (the report's symbolic checks take longer)."""
    m = load_model(path)
    return {"elbo": float(m.value(m.elbo())), "log_evidence": float(m.value(m.log_evidence())),
            "kl": float(m.value(m.kl_to_posterior()))}


# --- the three ways to give a table ---------------------------------------------------

def test_regression_from_a_csv_table_matches_the_gaussian_oracle(tmp_path):
    csv(tmp_path)
    v = closed_values(write(tmp_path, REGRESSION.format(data='data_file = "data.csv"')))
    log_ev, elbo = regression_oracle(X, Y)
    assert v["log_evidence"] == pytest.approx(log_ev, abs=1e-6)
    assert v["elbo"] == pytest.approx(elbo, abs=1e-6)
    assert v["kl"] == pytest.approx(log_ev - elbo, abs=1e-6)


def test_the_statistics_are_sums_over_the_columns(tmp_path):
    csv(tmp_path)
    m = load_model(write(tmp_path, REGRESSION.format(data='data_file = "data.csv"')))
    stats = {str(k): float(v) for k, v in m.statistics.items()}
    x, y = np.array(X), np.array(Y)
    assert stats == pytest.approx({"n": 6, "sum(x)": x.sum(), "sum(x**2)": (x * x).sum(),
                                   "sum(y)": y.sum(), "sum(y**2)": (y * y).sum(),
                                   "sum(x*y)": (x * y).sum()}, rel=1e-15)
    # exact sums of the decimals as written, for a small table
    exact = {str(k): v for k, v in m.statistics.items()}
    assert str(exact["sum(x*y)"]) == "859/50"


def test_inline_table_and_npy_tables_give_the_same_values(tmp_path):
    inline = REGRESSION.format(data=f"data = {{ x = {X}, y = {Y} }}")
    v_inline = closed_values(write(tmp_path, inline, "inline.toml"))
    structured = np.array(list(zip(X, Y)), dtype=[("x", "<f8"), ("y", "<f8")])
    np.save(tmp_path / "s.npy", structured)
    v_struct = closed_values(write(tmp_path, REGRESSION.format(data='data_file = "s.npy"'),
                                   "s.toml"))
    np.save(tmp_path / "two.npy", np.array([Y, X]).T)
    text = REGRESSION.format(data='data_file = "two.npy", columns = ["y", "x"]')
    v_two = closed_values(write(tmp_path, text, "two.toml"))
    log_ev, elbo = regression_oracle(X, Y)
    for v in (v_inline, v_struct, v_two):
        assert v["log_evidence"] == pytest.approx(log_ev, abs=1e-6)
        assert v["elbo"] == pytest.approx(elbo, abs=1e-6)


def test_a_large_table_is_summed_in_bulk(tmp_path):
    rng = np.random.default_rng(3)
    x = np.round(rng.normal(size=30000), 3)
    y = np.round(1 + 2 * x + rng.normal(scale=0.5, size=30000), 3)
    csv(tmp_path, x=x.tolist(), y=y.tolist())
    m = load_model(write(tmp_path, REGRESSION.format(data='data_file = "data.csv"')))
    stats = {str(k): float(v) for k, v in m.statistics.items()}
    assert stats["sum(x*y)"] == math.fsum((x * y).tolist())
    assert stats["sum(x**2)"] == math.fsum((x * x).tolist())
    log_ev, elbo = regression_oracle(x, y)
    assert float(m.value(m.log_evidence())) == pytest.approx(log_ev, rel=1e-9)
    assert float(m.value(m.elbo())) == pytest.approx(elbo, rel=1e-9)


# --- Poisson regression with exposures and logistic regression -------------------------

def test_poisson_regression_with_exposures_against_its_integrals():
    m_ = load_model(str(EXAMPLES / "quadrature" / "poisson_exposure.toml"))
    v = {"elbo": float(m_.value(m_.elbo()))}
    v["log_evidence"] = float(m_.quadrature()["log_evidence"])
    v["kl"] = v["log_evidence"] - v["elbo"]
    t = [1.0, 2.5, 0.5, 4.0, 1.5]
    x = [0.2, -1.0, 0.7, 0.0, 1.2]
    y = [2, 3, 1, 9, 4]
    m, s = mpmath.mpf("0.6"), mpmath.mpf("0.25")
    with mpmath.workdps(30):
        def log_joint(b):
            out = -b ** 2 / 2 - mpmath.log(2 * mpmath.pi) / 2
            for ti, xi, yi in zip(t, x, y):
                rate = ti * mpmath.exp(b + xi / 2)
                out += yi * mpmath.log(rate) - rate - mpmath.loggamma(yi + 1)
            return out
        # beyond [-40, 8] the joint density is below e**-800 of its peak
        log_ev = mpmath.log(mpmath.quad(lambda b: mpmath.exp(log_joint(b)),
                                        [-40, -5, 0, 0.5, 1, 2, 8]))
        elbo = mpmath.fsum([-(m ** 2 + s ** 2) / 2 - mpmath.log(2 * mpmath.pi) / 2,
                            mpmath.log(2 * mpmath.pi * mpmath.e * s ** 2) / 2]
                           + [yi * (mpmath.log(ti) + m + xi / 2)
                              - ti * mpmath.exp(m + xi / 2 + s ** 2 / 2) - mpmath.loggamma(yi + 1)
                              for ti, xi, yi in zip(t, x, y)])
    assert v["log_evidence"] == pytest.approx(float(log_ev), abs=1e-6)
    assert v["elbo"] == pytest.approx(float(elbo), abs=1e-6)
    assert v["kl"] == pytest.approx(float(log_ev - elbo), abs=1e-6)


def test_logistic_regression_with_one_weight_by_quadrature(tmp_path):
    x, y = [-1.5, 2.0], [0, 1]     # small: the 30-digit quadrature is slow per row
    text = f"""
[latent]
w = "Normal(0, 2)"
[observed]
y = {{ dist = "Bernoulli(1/(1 + exp(-w*x)))", data = {{ x = {x}, y = {y} }} }}
[variational]
w = "Normal(m, s)"
[values]
m = 1
s = 0.5
"""
    v = load_model(write(tmp_path, text)).quadrature()
    with mpmath.workdps(30):
        def log_joint(w):
            out = -w ** 2 / 8 - mpmath.log(8 * mpmath.pi) / 2
            for xi, yi in zip(x, y):
                # log sigma(t) = -log(1 + e**-t), log(1 - sigma(t)) = -log(1 + e**t)
                out -= mpmath.log1p(mpmath.exp(-w * xi if yi else w * xi))
            return out

        def log_q(w):
            return -2 * (w - 1) ** 2 - mpmath.log(mpmath.sqrt(2 * mpmath.pi) / 2)
        # beyond |w| = 60 the prior alone is below e**-450 of its peak
        cuts = [-60, -5, 0, 1, 2, 5, 60]
        log_ev = mpmath.log(mpmath.quad(lambda w: mpmath.exp(log_joint(w)), cuts))
        elbo = mpmath.quad(lambda w: mpmath.exp(log_q(w)) * (log_joint(w) - log_q(w)), cuts)
    assert float(v["log_evidence"]) == pytest.approx(float(log_ev), abs=1e-6)
    assert float(v["elbo"]) == pytest.approx(float(elbo), abs=1e-6)


def test_logistic_regression_with_two_weights_says_why_there_is_no_value(tmp_path):
    text = """
[latent]
w0 = "Normal(0, 2)"
w1 = "Normal(0, 2)"
[observed]
y = { dist = "Bernoulli(1/(1 + exp(-w0 - w1*x)))", data = { x = [-1.5, 0.4, 2.0], y = [0, 0, 1] } }
[variational]
w0 = "Normal(0, 1)"
w1 = "Normal(1, 1)"
"""
    rep = report(load_model(write(tmp_path, text)))
    assert rep["elbo"]["value"] is None
    assert "couples w0, w1 inside one function: no closed-form expectation" \
        in rep["elbo"]["reason"]
    assert rep["log_evidence"]["value"] is None
    assert "not a Gaussian kernel" in rep["log_evidence"]["reason"]


def test_a_term_without_a_statistic_past_the_row_limit_has_no_closed_form(tmp_path, monkeypatch):
    monkeypatch.setattr(tables, "PER_ROW_LIMIT", 3)
    text = """
[latent]
b = "Normal(0, 1)"
[observed]
y = { dist = "Poisson(exp(b*x))", data = { x = [0.1, 0.2, 0.3, 0.4], y = [1, 0, 2, 1] } }
[variational]
b = "Normal(0, 1)"
"""
    rep = report(load_model(write(tmp_path, text)))
    assert rep["elbo"]["value"] is None
    assert "mixes the data (x) with b inside exp(b*x): it has no sufficient statistic, and " \
           "4 rows are more than the 3 summed one by one" in rep["elbo"]["reason"]


# --- bad tables: exit 2, one line naming file, line and column ----------------------------

@pytest.mark.parametrize("content, message, line, column", [
    # a data file's content (its header included) is never echoed: the place names it
    ("x,1y\n1,2\n", "the header of a data table names each column with an identifier "
     "(letters, digits, _); column 2 is not one", 1, 3),
    ("x,x\n1,2\n", "column 2 has the name of column 1", 1, 3),
    ("x,y\n1,2\n3\n", "1 values in a row of a table of 2 columns", 3, 1),
    ("x,y\n1,2\n3, nan\n", "not a number (each row of a data table holds one decimal number per "
     "column)", 3, 4),
    ("x,y\n1,2\n3,1e999\n", "the data value is out of range: the value is larger than the "
     "largest double (1.7976931348623157e+308)", 3, 3),
])
def test_bad_csv_tables_are_located(tmp_path, content, message, line, column):
    (tmp_path / "data.csv").write_text(content)
    path = write(tmp_path, REGRESSION.format(data='data_file = "data.csv"'))
    with pytest.raises(InputError) as info:
        load_model(path)
    err = info.value
    assert err.message == f"[observed] y: {message}"
    assert (err.path, err.line, err.column) == (str(tmp_path / "data.csv"), line, column)


@pytest.mark.parametrize("data, message", [
    ('data = { x = [1, 2], z = [1, 2] }', "the data table has no column 'y' (its columns: x, z)"),
    ('data = { x = [1, 2], y = [1] }', "the columns of the data table have different lengths "
     "(x: 2, y: 1)"),
    ('data = { x = [1, "a"], y = [1, 2] }', "each value of column 'x' must be a finite number, "
     "got 'a'"),
    ('data = [1, 2], columns = ["x"]', "columns = [...] names the columns of a data file"),
])
def test_bad_inline_tables(tmp_path, data, message):
    with pytest.raises(InputError) as info:
        load_model(write(tmp_path, REGRESSION.format(data=data)))
    assert info.value.message == "[observed] y: " + message
    assert info.value.line == 6


def test_a_column_cannot_be_given_a_value(tmp_path):
    text = REGRESSION.format(data=f"data = {{ x = {X}, y = {Y} }}") + "x = 3\n"
    with pytest.raises(InputError) as info:
        load_model(write(tmp_path, text))
    assert info.value.message == "[values] x: 'x' is a column of the data of 'y'; it cannot be " \
                                 "given a value"


def test_a_positive_covariate_must_hold_positive_values(tmp_path):
    text = """
[latent]
b = "Normal(0, 1)"
[observed]
y = { dist = "Poisson(t*exp(b))", data = { t = [1.5, -2.5], y = [1, 0] } }
[variational]
b = "Normal(0, 1)"
"""
    with pytest.raises(InputError, match=r"column 't' is used where a positive number is needed, "
                                         r"but row 2 holds -2.5$"):
        load_model(write(tmp_path, text))


def test_a_table_outside_the_model_folder_is_refused(tmp_path):
    inner = tmp_path / "inner"
    inner.mkdir()
    csv(tmp_path, "outside.csv")
    path = write(inner, REGRESSION.format(data='data_file = "../outside.csv"'))
    with pytest.raises(InputError, match="lies outside the model file's folder"):
        load_model(path)


def test_a_pickled_npy_table_is_refused(tmp_path):
    np.save(tmp_path / "o.npy", np.array([{"x": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(InputError, match="the array holds Python objects"):
        load_model(write(tmp_path, REGRESSION.format(data='data_file = "o.npy", '
                                                          'columns = ["x", "y"]')))
