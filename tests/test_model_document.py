"""Model documents: the model stated first, closed forms once, psi and decimals, lines that fit.

Covers ``symelbo model FILE [--format latex|markdown] [--pdf -o OUT]`` and the text and
documents of ``symelbo derive NAME --model FILE``.
"""

from __future__ import annotations

import json
import re
import shutil
from functools import lru_cache
from pathlib import Path

import pytest
import sympy as sp

from symelbo.cli.commands import main
from symelbo.core.generate import generate
from symelbo.io.pdf import compile_latex
from symelbo.models.instantiate import instantiate
from symelbo.models.model import load_model
from symelbo.models.model_document import abbreviations, expr_latex, expr_text, format_text, \
    model_view, number_text, render_derivation, render_model, text_derivation, wrap_terms
from symelbo.models.model_report import report

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
MODELS = sorted(EXAMPLES.glob("*.toml"))
NORMAL_GAMMA = EXAMPLES / "normal_gamma.toml"
GAMMA_POISSON = EXAMPLES / "gamma_poisson.toml"


@lru_cache(maxsize=None)
def model(path: Path):
    return load_model(str(path))


def run(capsys, *argv):
    status = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


# --- printing -----------------------------------------------------------------

@pytest.mark.parametrize("value, shown", [
    (sp.Integer(8), "8"),
    (sp.Rational(2451, 25), "98.04"),
    (sp.Rational(49, 10), "4.9"),
    (sp.Rational(-3700873958986559, 281474976710656), "-13.1481455376"),
    (0.25, "0.25"),
    (None, "?"),
])
def test_numbers_are_decimals(value, shown):
    assert number_text(value) == shown


def test_closed_forms_print_psi_log_gamma_and_decimals():
    a, b = sp.symbols("a b", positive=True)
    expr = sp.polygamma(0, a) + sp.loggamma(b) + sp.Rational(-3700873958986559, 281474976710656) + a / 2
    assert expr_text(expr) == "a/2 + logGamma(b) + psi(a) - 13.1481455376"
    tex = expr_latex(expr)
    assert r"\psi{\left(a\right)}" in tex and r"\log\Gamma{\left(b\right)}" in tex
    assert "polygamma" not in tex and "loggamma" not in tex and "281474976710656" not in tex
    assert expr_text(sp.polygamma(1, a)) == "psi'(a)"


def test_a_statistic_raised_to_a_power_keeps_its_parentheses():
    s = sp.Symbol("sum(x)")
    assert expr_latex(s ** 2 + s, {s: r"\textstyle\sum_{i} x_{i}"}) == \
        r"\left(\textstyle\sum_{i} x_{i}\right)^{2} + \textstyle\sum_{i} x_{i}"


@pytest.mark.parametrize("width", [30, 60, 100])
def test_wrapped_terms_fit_and_keep_every_character(width):
    x, y = sp.symbols("x y")
    text = expr_text(sum(sp.Symbol(f"alpha{i}") * sp.log(x + i) for i in range(40)) - y ** 2)
    lines = wrap_terms(text, width, "    = ", "      ")
    assert all(len(line) <= width for line in lines)
    assert "".join(lines).replace(" ", "") == ("=" + text).replace(" ", "")


def test_abbreviations_name_repeated_log_arguments_and_change_nothing():
    a, b, c = sp.symbols("a b c", positive=True)
    inner = a + b + c
    exprs = [a * sp.log(inner) + sp.log(a + b), sp.log(inner) / 2, sp.log(a + b)]
    short, names = abbreviations(exprs, taken={sp.Symbol("w1")})
    assert [str(s) for s, _ in names] == ["w2"]
    assert names[0][1] == inner
    back = {s: d for s, d in names}
    assert [e.xreplace(back) for e in short] == exprs


# --- the model section ----------------------------------------------------------

def test_the_model_section_states_priors_likelihood_q_data_and_values():
    view = model_view(model(NORMAL_GAMMA))
    assert [s.text for s in view.priors] == [
        "mu | tau ~ Normal(mean mu0, standard deviation 1/sqrt(lambda0*tau))",
        "tau ~ Gamma(shape a0, rate b0)"]
    assert [s.text for s in view.likelihoods] == [
        "x_i | mu, tau ~ Normal(mean mu, standard deviation 1/sqrt(tau)), i = 1..8"]
    assert [s.text for s in view.factors] == ["q(mu) = Normal(mean m, standard deviation s)",
                                              "q(tau) = Gamma(shape a, rate b)"]
    assert [(e.text_name, e.value) for e in view.statistics] == [
        ("n", "8"), ("sum(x)", "39.2"), ("sum(x**2)", "196.08")]
    assert [(e.text_name, e.value) for e in view.values][:5] == [
        ("mu0", "5"), ("lambda0", "1"), ("a0", "2"), ("b0", "2"), ("m", "4.9")]


def test_a_per_observation_latent_is_indexed():
    view = model_view(model(EXAMPLES / "gaussian_mixture.toml"))
    assert view.priors[0].text == "z_i ~ Bernoulli(probability w), i = 1..6"
    assert view.likelihoods[0].text == \
        "x_i | z_i ~ Normal(mean m1 + (m2 - m1)*z_i, standard deviation s), i = 1..6"
    assert view.factors[0].text == "q(z_i) = Bernoulli(probability r_i), i = 1..6"


# --- symelbo model --------------------------------------------------------------

@pytest.mark.parametrize("path", MODELS, ids=lambda p: p.stem)
def test_the_text_report_fits_100_columns_and_prints_no_raw_special_function(path):
    text = format_text(report(model(path)), str(path), model(path), 100)
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= 100
    assert "polygamma" not in text and "loggamma" not in text
    assert lines[2].startswith("  prior:")
    assert not re.search(r"\d{9,}/\d{9,}", text)    # no binary rational


def test_the_text_report_follows_the_width_it_is_given():
    text = format_text(report(model(NORMAL_GAMMA)), str(NORMAL_GAMMA), model(NORMAL_GAMMA), 60)
    assert max(len(line) for line in text.splitlines()) <= 60


@pytest.mark.parametrize("fmt, start, needles", [
    ("latex", r"\documentclass", (r"\section*{The model}", r"\psi{\left(a\right)}",
                                 r"\textstyle\sum_{i} x_{i}", "= 39.2", r"w_{1} &=")),
    ("markdown", "# Normal with unknown mean and precision",
     ("## The model", r"\psi{\left(a\right)}", "= 39.2", "## Checks")),
])
def test_the_report_as_a_document(fmt, start, needles):
    text, status = render_model(str(NORMAL_GAMMA), fmt)
    assert status == 0 and text.startswith(start)
    for needle in needles:
        assert needle in text
    assert "polygamma" not in text and "loggamma" not in text
    assert render_model(str(NORMAL_GAMMA), fmt) == (text, status)     # deterministic


def test_the_json_contract_is_unchanged(capsys):
    status, out, _ = run(capsys, "model", GAMMA_POISSON, "--json")
    rep = json.loads(out)
    assert status == 0 and set(rep) == {"name", "elbo", "log_evidence", "kl", "checks"}
    assert set(rep["elbo"]) == {"expr", "latex", "value"}
    assert run(capsys, "model", GAMMA_POISSON, "--format", "json")[1] == out


@pytest.mark.parametrize("argv, message", [
    (["--format", "json", "--pdf", "-o", "x.pdf"],
     "--pdf makes LaTeX; it cannot be combined with --format json"),
    (["--json", "--pdf", "-o", "x.pdf"], "--pdf makes LaTeX; it cannot be combined with --format json"),
])
def test_contradictory_options_are_a_usage_error(capsys, argv, message):
    with pytest.raises(SystemExit) as stop:
        main(["model", str(GAMMA_POISSON), *argv])
    assert stop.value.code == 2
    assert message in capsys.readouterr().err


def test_pdf_needs_an_output(capsys):
    status, out, err = run(capsys, "model", GAMMA_POISSON, "--pdf")
    assert status == 2 and out == ""
    assert err == "symelbo: <command line>: --pdf needs -o OUT.pdf\n"


def test_a_written_document_is_announced(capsys, tmp_path):
    out = tmp_path / "model.md"
    status, stdout, err = run(capsys, "model", GAMMA_POISSON, "--format", "markdown", "-o", out)
    assert status == 0 and stdout == ""
    assert err == f"symelbo: wrote {out}\n"
    assert out.read_text(encoding="utf-8").startswith("# Gamma\\-Poisson counts")


@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="pdflatex is not installed")
@pytest.mark.parametrize("path", [NORMAL_GAMMA, EXAMPLES / "gaussian_mixture.toml"], ids=lambda p: p.stem)
def test_the_report_compiles_without_an_overfull_line(path):
    tex, _ = render_model(str(path), "latex")
    pdf, log = compile_latex(tex)
    assert pdf.startswith(b"%PDF")
    assert "Overfull \\hbox" not in log


# --- symelbo derive NAME --model ------------------------------------------------

def test_the_bound_is_proved_as_symelbo_model_proves_it():
    inst = instantiate(generate("jensen"), "jensen", model(GAMMA_POISSON))
    bound = [s for chain in inst.chains for s in chain if s.relation == ">="]
    assert [(s.verdict, s.message) for s in bound] == [(
        "proved", "the difference of the two sides is KL(q || p(Z | X)) for all values "
                  "(the kernel's algebra), and KL >= 0 by Gibbs' inequality")]
    checks = {c["name"]: c["verdict"] for c in report(model(GAMMA_POISSON))["checks"]}
    assert checks["ELBO <= log evidence"] == "proved"


def test_a_bound_on_a_posterior_proper_only_at_the_values_stays_tested():
    inst = instantiate(generate("jensen"), "jensen", model(NORMAL_GAMMA))
    bound = [s for chain in inst.chains for s in chain if s.relation == ">="]
    assert [s.verdict for s in bound] == ["tested"]
    assert bound[0].message.endswith("where the posterior rate of tau > 0, which is only checked "
                                     "at [values]")
    checks = {c["name"]: c["verdict"] for c in report(model(NORMAL_GAMMA))["checks"]}
    assert checks["ELBO <= log evidence"] == "tested"


@pytest.mark.parametrize("name", ["jensen", "kl-shuffle", "gradient"])
def test_the_derivation_text_states_the_model_and_each_closed_form_once(name):
    inst = instantiate(generate(name), name, model(NORMAL_GAMMA))
    text = text_derivation(inst, model(NORMAL_GAMMA), 100)
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= 100
    assert len(lines) < 80
    assert "  prior:              mu | tau ~ Normal(mean mu0" in text
    assert "statistics: n = 8, sum(x) = 39.2, sum(x**2) = 196.08" in text
    assert "the same as F1" in text
    assert "polygamma" not in text and not re.search(r"\d{9,}/\d{9,}", text)
    assert text.count("F1 ") + text.count("F1 =") >= 1


def test_gradient_values_are_labelled():
    inst = instantiate(generate("gradient"), "gradient", model(GAMMA_POISSON))
    text = text_derivation(inst, model(GAMMA_POISSON))
    assert "       F1 d/da = " in text and "       F1 d/db = " in text
    assert re.search(r"value: d/da = -?[0-9.]+, d/db = -?[0-9.]+", text)


@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="pdflatex is not installed")
def test_the_derivation_document_compiles_and_opens_with_the_model():
    inst = instantiate(generate("jensen"), "jensen", model(NORMAL_GAMMA))
    tex = render_derivation(inst, model(NORMAL_GAMMA), "latex")
    assert tex.index(r"\section*{The model}") < tex.index(r"\section*{The derivation on the model}")
    assert tex.count(r"\symelboField{closed form}{the same, $F_{1}$}") == 3
    assert "operatorname{polygamma}" not in tex
    pdf, _ = compile_latex(tex)
    assert pdf.startswith(b"%PDF")
    md = render_derivation(inst, model(NORMAL_GAMMA), "markdown")
    assert "## The model" in md and "- closed form: the same, $F_{1}$" in md


def test_derive_text_follows_the_command_line(capsys):
    status, out, _ = run(capsys, "derive", "jensen", "--model", GAMMA_POISSON)
    assert status == 0
    assert out.startswith("The ELBO by Jensen's inequality on the model 'Gamma-Poisson counts'\n")
    assert max(len(line) for line in out.splitlines()) <= 100
