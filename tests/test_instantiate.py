"""The built-in derivations instantiated on the example models: verdicts, values, JSON and documents.

Tests that need pdflatex skip when it is absent, unless ``SYMELBO_REQUIRE_TEX=1``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from functools import lru_cache
from pathlib import Path

import pytest
import sympy as sp

from symelbo.cli.commands import main
from symelbo.core.generate import BUILTIN, generate
from symelbo.models.instantiate import instantiate
from symelbo.models.model import load_model
from symelbo.io.pdf import compile_latex
from symelbo.io.render import closed_latex, markdown_escape, render_instantiation, tex_escape

REPO = Path(__file__).resolve().parents[1]
MODELS = sorted((REPO / "examples").glob("*.toml"))
PAIRS = [(name, path) for name in BUILTIN for path in MODELS]
HOSTILE = r"100% & \input{/etc/passwd} #1 {"
STEP_KEYS = {"line", "relation", "abstract", "closed", "value", "verdict", "message"}


def pair_id(pair) -> str:
    name, path = pair
    return f"{name}-{path.stem}"


@lru_cache(maxsize=None)
def model(path: Path):
    return load_model(str(path))


@lru_cache(maxsize=None)
def inst(name: str, path: Path):
    return instantiate(generate(name), name, model(path))


def need_pdflatex() -> None:
    if shutil.which("pdflatex") is None:
        if os.environ.get("SYMELBO_REQUIRE_TEX") == "1":
            pytest.fail("pdflatex is not installed but SYMELBO_REQUIRE_TEX=1")
        pytest.skip("pdflatex is not installed (set SYMELBO_REQUIRE_TEX=1 to make this a failure)")


def overfull(log: str) -> list[str]:
    return re.findall(r"Overfull \\[hv]box[^\n]*", log)


def test_there_are_example_models():
    assert len(MODELS) >= 6


# ---------------------------------------------------------------------------
# verdicts and values
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("path", MODELS, ids=lambda p: p.stem)
def test_gradient_is_proved_on_every_model(path):
    result = inst("gradient", path)
    assert result.verdict == "proved"
    for chain in result.chains:
        for step in chain[1:]:
            assert step.verdict == "proved", (step.line, step.message)
            assert isinstance(step.closed, list)
            assert len(step.closed) == len(model(path).variational_parameters)


@pytest.mark.parametrize("pair", PAIRS, ids=pair_id)
def test_no_step_is_refuted(pair):
    result = inst(*pair)
    verdicts = [s.verdict for chain in result.chains for s in chain[1:]]
    assert verdicts and "refuted" not in verdicts
    assert all(chain[0].relation == "" and chain[0].verdict == "" for chain in result.chains)
    assert all(s.relation for chain in result.chains for s in chain[1:])


@pytest.mark.parametrize("path", MODELS, ids=lambda p: p.stem)
def test_kl_shuffle_values_are_the_gap_between_evidence_and_elbo(path):
    m = model(path)
    gap = float(m.value(m.log_evidence() - m.elbo()))
    assert gap >= -1e-12  # the KL divergence is not negative
    first = inst("kl-shuffle", path).chains[0]
    assert len(first) > 2
    for step in first:
        assert step.value == pytest.approx(gap, rel=1e-9, abs=1e-12), step.abstract


def test_jensen_json_has_the_expected_keys(capsys):
    path = REPO / "examples" / "beta_bernoulli.toml"
    code = main(["derive", "jensen", "--model", str(path), "--json"])
    data = json.loads(capsys.readouterr().out)
    assert code in (0, 1)
    assert set(data) == {"derivation", "model", "verdict", "parameters", "chains"}
    assert data["parameters"] == ["alpha", "beta"]
    assert data["derivation"] == "jensen"
    assert data["model"] == model(path).name
    assert data["verdict"] in ("proved", "tested")
    assert data["chains"] and all(chain for chain in data["chains"])
    for chain in data["chains"]:
        for step in chain:
            assert set(step) == STEP_KEYS
            assert isinstance(step["closed"], str)
            assert isinstance(step["value"], float)
        assert chain[0]["relation"] == "" and all(s["relation"] for s in chain[1:])


# ---------------------------------------------------------------------------
# documents
# ---------------------------------------------------------------------------

def test_special_functions_print_by_their_names():
    x, y = sp.symbols("alpha beta")
    assert closed_latex(sp.polygamma(0, x + y)) == r"\psi{\left(\alpha + \beta\right)}"
    assert closed_latex(sp.polygamma(1, x)) == r"\psi'{\left(\alpha\right)}"
    assert closed_latex(sp.loggamma(x)) == r"\log\Gamma{\left(\alpha\right)}"
    assert "polygamma" not in closed_latex(sp.polygamma(3, x) ** 2)


@pytest.mark.parametrize("pair", PAIRS, ids=pair_id)
def test_every_pair_renders(pair):
    name, path = pair
    result = inst(name, path)
    tex = render_instantiation(result, "latex")
    assert tex.startswith("\\documentclass") and tex.endswith("\\end{document}\n")
    assert tex_escape(result.model_name) in tex
    assert "polygamma" not in tex and "loggamma" not in tex
    assert tex.count("\\symelboLine{") == sum(len(chain) for chain in result.chains)
    fragment = render_instantiation(result, "latex", fragment=True)
    assert "\\documentclass" not in fragment and "\\symelboLine{" in fragment
    md = render_instantiation(result, "markdown")
    assert md.startswith("# ") and markdown_escape(result.model_name) in md
    assert md.count("$$") % 2 == 0 and "polygamma" not in md
    # deterministic
    assert render_instantiation(result, "latex") == tex


def test_unknown_format_is_an_error():
    with pytest.raises(ValueError, match="unknown format"):
        render_instantiation(inst("jensen", MODELS[0]), "html")


@pytest.mark.parametrize("pair", PAIRS, ids=pair_id)
def test_every_pair_compiles_without_overfull_lines(pair):
    need_pdflatex()
    pdf, log = compile_latex(render_instantiation(inst(*pair), "latex"))
    assert pdf.startswith(b"%PDF")
    assert overfull(log) == []


def test_fragment_compiles_inside_a_paper():
    need_pdflatex()
    fragment = render_instantiation(inst("kl-shuffle", REPO / "examples" / "beta_bernoulli.toml"),
                                    "latex", fragment=True)
    paper = ("\\documentclass{article}\n\\usepackage{amsmath,amssymb,graphicx}\n"
             "\\begin{document}\n" + fragment + fragment + "\\end{document}\n")
    pdf, log = compile_latex(paper)
    assert pdf.startswith(b"%PDF")
    assert overfull(log) == []


def hostile_model(tmp_path) -> Path:
    source = (REPO / "examples" / "beta_bernoulli.toml").read_text(encoding="utf-8")
    source, count = re.subn(r'(?m)^name = .*$', lambda _: 'name = "100% & \\\\input{/etc/passwd} #1 {"',
                            source)
    assert count == 1
    path = tmp_path / "hostile.toml"
    path.write_text(source, encoding="utf-8")
    return path


def test_hostile_model_name_prints_literally(tmp_path):
    path = hostile_model(tmp_path)
    m = load_model(str(path))
    assert m.name == HOSTILE
    result = instantiate(generate("kl-shuffle"), "kl-shuffle", m)
    tex = render_instantiation(result, "latex")
    assert tex_escape(HOSTILE) in tex
    assert "\\input{/etc/passwd}" not in tex
    assert "\\input{/etc/passwd}" not in render_instantiation(result, "latex", fragment=True)
    md = render_instantiation(result, "markdown")
    assert markdown_escape(HOSTILE) in md and "\\input{/etc/passwd}" not in md
    need_pdflatex()
    pdf, log = compile_latex(tex)
    assert pdf.startswith(b"%PDF")
    assert "(/etc/passwd" not in log  # TeX never opened the file
    assert overfull(log) == []


def test_cli_writes_the_pdf(tmp_path):
    need_pdflatex()
    out = tmp_path / "g.pdf"
    code = main(["derive", "gradient", "--model", str(REPO / "examples" / "normal_mean.toml"),
                 "--pdf", "-o", str(out)])
    assert code == 0
    assert out.read_bytes().startswith(b"%PDF")


def test_lines_without_closed_form_or_value_render(tmp_path):
    """A line the model has no closed form for, or a closed form with a symbol left without a value."""
    from dataclasses import replace
    result = inst("jensen", REPO / "examples" / "beta_bernoulli.toml")
    chain = list(result.chains[0])
    chain[1] = replace(chain[1], closed=None, value=None, closed_latex="",
                       message="no closed form for sum_Z[p(X, Z)] & 100%")
    chain[2] = replace(chain[2], verdict="unknown", message="no closed form for one side")
    chain[3] = replace(chain[3], closed=sp.Symbol("u") + 1, value=None)
    broken = replace(result, chains=(tuple(chain),))
    tex = render_instantiation(broken, "latex")
    assert "none on this model" in tex and "a symbol is left without one" in tex
    assert r"sum\_Z[p(X, Z)] \& 100\%" in tex
    md = render_instantiation(broken, "markdown")
    assert "none on this model" in md and "*unknown*" in md
    need_pdflatex()
    pdf, log = compile_latex(tex)
    assert pdf.startswith(b"%PDF") and overfull(log) == []
