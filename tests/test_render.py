"""LaTeX and Markdown rendering: golden files, escaping, determinism, and real pdflatex runs.

Regenerate the golden files after an intended change of the output with
``SYMELBO_REGENERATE_GOLDEN=1 python -m pytest tests/test_render.py``.
Tests that need pdflatex skip when it is absent, unless ``SYMELBO_REQUIRE_TEX=1``.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from functools import lru_cache
from pathlib import Path

import pytest

from symelbo.core.checker import check_derivation
from symelbo.core.derivation import Derivation
from symelbo.core.generate import BUILTIN, generate
from symelbo.io.parser import parse_file, parse_text
from symelbo.io.pdf import compile_latex, compile_pdf
from symelbo.io.render import latex_repr, markdown_escape, markdown_repr, render, tex_escape

from .conftest import SHARED_EXAMPLES

HERE = Path(__file__).resolve().parent
GOLDEN = HERE / "golden"
EXAMPLES = SHARED_EXAMPLES  # the shipped copies (see conftest)
REGENERATE = os.environ.get("SYMELBO_REGENERATE_GOLDEN") == "1"
HOSTILE = r"100% & \input{/etc/passwd} #1 {"

VARIANTS = {"latex": ("latex", False, "tex"), "fragment": ("latex", True, "fragment.tex"),
            "markdown": ("markdown", False, "md")}


@lru_cache(maxsize=None)
def checked(name: str):
    return check_derivation(generate(name))


def need_pdflatex() -> None:
    if shutil.which("pdflatex") is None:
        if os.environ.get("SYMELBO_REQUIRE_TEX") == "1":
            pytest.fail("pdflatex is not installed but SYMELBO_REQUIRE_TEX=1")
        pytest.skip("pdflatex is not installed (set SYMELBO_REQUIRE_TEX=1 to make this a failure)")


def example_files() -> list[Path]:
    return sorted(EXAMPLES.glob("*.calc")) if EXAMPLES.is_dir() else []


def overfull(log: str) -> list[str]:
    return re.findall(r"Overfull \\[hv]box[^\n]*", log)


# ---------------------------------------------------------------------------
# golden files
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("name", list(BUILTIN))
def test_golden(name, variant):
    fmt, fragment, suffix = VARIANTS[variant]
    text = render(checked(name), fmt, name=name, fragment=fragment)
    path = GOLDEN / f"{name}.{suffix}"
    if REGENERATE:
        GOLDEN.mkdir(exist_ok=True)
        path.write_bytes(text.encode("utf-8"))
    assert path.exists(), f"no golden file {path.name}; run with SYMELBO_REGENERATE_GOLDEN=1"
    assert text.encode("utf-8") == path.read_bytes(), (
        f"{path.name} differs from the rendering; if the change is intended, "
        "regenerate with SYMELBO_REGENERATE_GOLDEN=1")


def test_unknown_format_is_an_error():
    with pytest.raises(ValueError, match="unknown format 'html'"):
        render(checked("jensen"), "html")


# ---------------------------------------------------------------------------
# what the documents hold
# ---------------------------------------------------------------------------

def test_every_formula_comes_from_latex_str():
    from symelbo.core.printing import latex_str
    from symelbo.io.render import variable_order
    result = checked("kl-shuffle")
    tex = render(result, "latex", name="kl-shuffle")
    order = variable_order(result.derivation)   # p(X, Z) throughout, as the setting writes it
    for chain in result.derivation.chains:
        assert latex_str(chain.first, order) in tex
        for step in chain.steps:
            # a long right-hand side is broken at its top-level terms, so compare the pieces
            for piece in re.split(r" (?=[+-] )", latex_str(step.rhs, order)):
                assert piece.strip() in tex


def test_document_shows_rules_verdicts_and_setting():
    tex = render(checked("jensen"), "latex", name="jensen")
    assert r"\begin{align*}" in tex and r"\end{document}" in tex
    assert r"\textsf{multiply\_by\_one}" in tex
    assert r"\section*{Rules used}" in tex
    assert "a variational density" in tex and "a joint density of the observed" in tex
    assert r"\ge" in tex


def test_fragment_is_only_align_blocks():
    tex = render(checked("kl-shuffle"), "latex", fragment=True)
    assert r"\documentclass" not in tex and r"\begin{document}" not in tex
    assert tex.count(r"\begin{align*}") == 2
    outside = re.sub(r"\\begin\{align\*\}.*?\\end\{align\*\}", "", tex, flags=re.S)
    assert all(line.startswith("%") for line in outside.splitlines() if line.strip())


def test_refuted_step_gets_a_counterexample_table():
    result = check_derivation(parse_text(
        "title: slip\n\nKL(q(Z) || p(Z | X))\n  = E_q[log(p(Z | X) / q(Z))]\n", "slip.calc"))
    tex = render(result, "latex", name="slip.calc")
    assert r"$\times$" in tex and "Counterexample 1" in tex
    assert r"\toprule" in tex and "refuted" in tex
    markdown = render(result, "markdown", name="slip.calc")
    assert "**Counterexample 1" in markdown and "|:-:|" in markdown


def test_jupyter_reprs():
    result = checked("jensen")
    latex = latex_repr(result)
    assert latex.startswith("$$\n\\begin{aligned}") and latex.rstrip().endswith("$$")
    assert r"\mathsf{jensen}" in latex
    assert "\\end{aligned}" in latex
    assert markdown_repr(result) == render(result, "markdown")


# ---------------------------------------------------------------------------
# escaping of user text
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("text, expected", [
    ("100% & #1", r"100\% \& \#1"),
    (r"\input{/etc/passwd}", r"\textbackslash{}input\{/etc/passwd\}"),
    ("a_b^c ~ $x$", r"a\_b\textasciicircum{}c \textasciitilde{} \$x\$"),
    ("two\nlines", "two lines"),
])
def test_tex_escape(text, expected):
    assert tex_escape(text) == expected


def test_markdown_escape():
    assert markdown_escape("*a* _b_ <script> [x](y) $z$") == (
        r"\*a\* \_b\_ &lt;script&gt; \[x\]\(y\) \$z\$")


def hostile_result():
    derivation = generate("jensen")
    headers = {"title": HOSTILE, "author": "A & B } \\end{document}"}
    return check_derivation(Derivation(derivation.chains, headers))


def test_hostile_title_is_escaped():
    result = hostile_result()
    tex = render(result, "latex", name="evil_%_name.calc")
    assert r"100\% \& \textbackslash{}input\{/etc/passwd\} \#1 \{" in tex
    assert r"\input{/etc" not in tex
    assert r"evil\_\%\_name.calc" in tex
    assert r"\} \textbackslash{}end\{document\}" in tex
    markdown = render(result, "markdown")
    assert r"\input{" not in markdown.replace(r"\\input\{", "")
    assert "# 100% &amp; \\\\input\\{/etc/passwd\\} \\#1 \\{" in markdown


def test_hostile_title_compiles():
    need_pdflatex()
    pdf, log = compile_latex(render(hostile_result(), "latex", name="evil_%_name.calc"))
    assert pdf.startswith(b"%PDF")
    assert "/etc/passwd)" not in log  # TeX never opened the file
    text = pdf_text(pdf)
    if text is not None:
        assert HOSTILE in text


def pdf_text(pdf: bytes) -> str | None:
    if shutil.which("pdftotext") is None:
        return None
    out = subprocess.run(["pdftotext", "-layout", "-", "-"], input=pdf, capture_output=True, check=True)
    return out.stdout.decode("utf-8", "replace")


# ---------------------------------------------------------------------------
# determinism
# ---------------------------------------------------------------------------

_RENDER_ALL = """
import sys
from symelbo.core.checker import check_derivation
from symelbo.core.generate import generate
from symelbo.io.render import render, latex_repr
for name in ("kl-shuffle", "jensen", "gradient"):
    result = check_derivation(generate(name))
    for fmt, fragment in (("latex", False), ("latex", True), ("markdown", False)):
        sys.stdout.write(render(result, fmt, name=name, fragment=fragment))
    sys.stdout.write(latex_repr(result))
"""


def test_rendering_does_not_depend_on_the_hash_seed():
    outputs = []
    for seed in ("0", "123"):
        env = dict(os.environ, PYTHONHASHSEED=seed)
        run = subprocess.run([sys.executable, "-c", _RENDER_ALL], env=env, capture_output=True,
                             check=True, timeout=300)
        outputs.append(run.stdout)
    assert outputs[0] == outputs[1]
    assert len(outputs[0]) > 1000


def test_pdf_bytes_are_reproducible():
    need_pdflatex()
    tex = render(checked("gradient"), "latex", name="gradient")
    first, _ = compile_latex(tex)
    second, _ = compile_latex(tex)
    assert first == second


# ---------------------------------------------------------------------------
# real pdflatex runs
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("name", list(BUILTIN))
def test_builtin_compiles_without_overfull_lines(name):
    need_pdflatex()
    for fragment in (False,):
        pdf, log = compile_latex(render(checked(name), "latex", name=name, fragment=fragment))
        assert pdf.startswith(b"%PDF")
        assert overfull(log) == []


def test_fragment_compiles_inside_a_paper():
    need_pdflatex()
    fragment = render(checked("kl-shuffle"), "latex", fragment=True)
    paper = ("\\documentclass{article}\n\\usepackage{amsmath,amssymb}\n\\begin{document}\n"
             + fragment + "\\end{document}\n")
    pdf, log = compile_latex(paper)
    assert pdf.startswith(b"%PDF")


@pytest.mark.parametrize("path", example_files(), ids=lambda p: p.name)
def test_example_compiles_without_overfull_lines(path):
    need_pdflatex()
    result = check_derivation(parse_file(path))
    pdf, log = compile_latex(render(result, "latex", name=path.name))
    assert pdf.startswith(b"%PDF")
    assert overfull(log) == []


def test_shared_examples_are_present():
    if not EXAMPLES.is_dir():
        pytest.skip(f"the shared examples are not beside the repository ({EXAMPLES})")
    assert example_files()


def test_compile_error_names_the_tex_error(tmp_path):
    need_pdflatex()
    from symelbo.core.errors import SymelboError
    with pytest.raises(SymelboError, match=r"pdflatex failed: Undefined control sequence"):
        compile_pdf("\\documentclass{article}\\begin{document}\\nosuchmacro\\end{document}\n",
                    str(tmp_path / "x.pdf"))
    assert not (tmp_path / "x.pdf").exists()


def test_missing_pdflatex_is_a_tool_error(monkeypatch, tmp_path):
    from symelbo.core.errors import ToolMissingError
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(ToolMissingError, match=r"pdflatex not found; install TeX Live"):
        compile_pdf("x", str(tmp_path / "x.pdf"))


def test_cli_pdf_writes_a_pdf(tmp_path, capsys):
    need_pdflatex()
    from symelbo.cli.commands import main
    out = tmp_path / "jensen.pdf"
    status = main(["derive", "jensen", "--pdf", "-o", str(out)])
    assert status == 0
    assert out.read_bytes().startswith(b"%PDF")


def test_cli_pdf_without_pdflatex_exits_2(monkeypatch, tmp_path, capsys):
    from symelbo.cli.commands import main
    monkeypatch.setattr(shutil, "which", lambda name: None)
    status = main(["derive", "jensen", "--pdf", "-o", str(tmp_path / "j.pdf")])
    assert status == 2
    assert "pdflatex not found" in capsys.readouterr().err
