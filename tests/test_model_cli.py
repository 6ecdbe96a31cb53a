"""`symelbo model` through run_model: the JSON contract, exit statuses, determinism, and the plot."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from symelbo.core.errors import InputError
from symelbo.models.model_document import run_model

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
ALL = sorted(p.name for p in EXAMPLES.glob("*.toml"))
VERDICTS = {"proved", "tested", "refuted", "unknown"}


def run(path, as_json=True):
    out = io.StringIO()
    status = run_model(str(path), as_json, out)
    return status, out.getvalue()


@pytest.mark.parametrize("name", ALL)
def test_json_shape_and_all_checks_pass(name):
    status, text = run(EXAMPLES / name)
    rep = json.loads(text)
    assert list(rep) == ["name", "elbo", "log_evidence", "kl", "checks"]
    for key in ("elbo", "log_evidence", "kl"):
        q = rep[key]
        assert set(q) >= {"expr", "latex", "value"}
        assert isinstance(q["expr"], str) and isinstance(q["latex"], str)
        assert isinstance(q["value"], float)
    assert rep["elbo"]["value"] < rep["log_evidence"]["value"]
    assert abs(rep["log_evidence"]["value"] - rep["elbo"]["value"] - rep["kl"]["value"]) < 1e-12
    names = [c["name"] for c in rep["checks"]]
    for required in ("log evidence = ELBO + KL", "ELBO <= log evidence", "two KL routes agree"):
        assert required in names
    assert sum(n.startswith("grad ELBO = -grad KL") for n in names) >= 2
    for c in rep["checks"]:
        assert set(c) == {"name", "verdict", "message"} and c["verdict"] in VERDICTS
        assert c["verdict"] in ("proved", "tested"), c
    identity = next(c for c in rep["checks"] if c["name"] == "log evidence = ELBO + KL")
    assert identity["verdict"] == "proved"
    assert status == 0


def test_output_is_deterministic():
    a = run(EXAMPLES / "normal_gamma.toml")
    b = run(EXAMPLES / "normal_gamma.toml")
    assert a == b


def test_text_report_is_readable():
    status, text = run(EXAMPLES / "beta_bernoulli.toml", as_json=False)
    assert status == 0
    assert text.startswith("model: Beta-Bernoulli coin")
    assert "ELBO = " in text and "log p(X) = " in text and "checks:" in text
    assert "proved  log evidence = ELBO + KL" in text


def test_q_outside_support_exits_1(tmp_path):
    f = tmp_path / "m.toml"
    f.write_text('[latent]\nlam = "Gamma(2, 1)"\n[observed]\nk = { dist = "Poisson(lam)", '
                 'data = [1, 2] }\n[variational]\nlam = "Normal(m, s)"\n[values]\nm = 1\ns = 1\n')
    status, text = run(f)
    rep = json.loads(text)
    assert status == 1
    assert rep["elbo"]["expr"] is None and "infinite" in rep["elbo"]["reason"]
    assert rep["checks"][0]["verdict"] == "refuted"


def test_no_closed_form_falls_back_to_quadrature(tmp_path):
    f = tmp_path / "m.toml"
    f.write_text('[latent]\nt = "Normal(0, 1)"\n[observed]\nx = { dist = '
                 '"Bernoulli(1/(1 + exp(-t)))", data = [1, 0, 1] }\n[variational]\n'
                 't = "Normal(m, s)"\n[values]\nm = 0.3\ns = 0.8\n')
    status, text = run(f)
    rep = json.loads(text)
    assert rep["log_evidence"]["expr"] is None
    assert "closed form" in rep["log_evidence"]["reason"]
    assert rep["log_evidence"]["value"] > rep["elbo"]["value"]
    verdicts = {c["name"]: c["verdict"] for c in rep["checks"]}
    assert verdicts["log evidence = ELBO + KL"] == "tested"
    assert verdicts["grad ELBO = -grad KL (m)"] == "unknown"
    grad = next(c for c in rep["checks"] if c["name"] == "grad ELBO = -grad KL (m)")
    assert grad["message"].startswith("not made: no closed form to differentiate")
    # every value is there and checked by quadrature: the gradient checks that could not
    # be made do not fail the report by themselves
    assert status == 0


def test_symbolic_model_without_values(tmp_path):
    f = tmp_path / "m.toml"
    f.write_text('[latent]\nlam = "Gamma(a0, b0)"\n[observed]\nk = { dist = "Poisson(lam)", '
                 'data = [1, 2] }\n[variational]\nlam = "Gamma(a, b)"\n')
    status, text = run(f)
    rep = json.loads(text)
    assert rep["elbo"]["value"] is None
    assert status == 0  # every check is proved symbolically


def test_bad_input_raises_input_error(tmp_path):
    f = tmp_path / "m.toml"
    f.write_text('[latent]\nmu = "Normal(0, -1)"\n')
    with pytest.raises(InputError):
        run(f)
    with pytest.raises(InputError, match="not found"):
        run(tmp_path / "missing.toml")


def test_plot(tmp_path):
    pytest.importorskip("matplotlib", reason="matplotlib is the optional [plot] extra")
    from symelbo.models.plot import run_plot
    out = tmp_path / "p.png"
    assert run_plot(str(EXAMPLES / "normal_mean.toml"), "m", str(out), points=9) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(InputError, match="not a variational parameter"):
        run_plot(str(EXAMPLES / "normal_mean.toml"), "mu0", str(out))


def test_a_quadrature_without_enough_digits_does_not_refute(tmp_path):
    """Counts of 1e21 put log p(X) near 1e21: the 30-digit quadrature is then inconclusive."""
    from symelbo.models.model_report import ModelReport
    from symelbo.models.model import model_from_dict
    m = model_from_dict({"latent": {"lam": "Gamma(2, 1)"},
                         "observed": {"k": {"dist": "Poisson(lam)", "data": [10 ** 21, 2]}},
                         "variational": {"lam": "Gamma(a, b)"}, "values": {"a": 2, "b": 1}})
    routes = next(c for c in ModelReport(m).checks() if c["name"] == "two KL routes agree")
    assert routes["verdict"] == "proved" and "inconclusive" in routes["message"]
