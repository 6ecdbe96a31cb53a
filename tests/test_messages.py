"""Messages a newcomer meets: syntax errors that name the right spelling, warnings, the CLI's words.

Every message is pinned whole: a message that changes is a change a user sees.
"""

from __future__ import annotations

import warnings

import pytest

from symelbo.core.errors import InputError
from symelbo.io.characters import advice
from symelbo.io.mistakes import LATEX_INPUT, bracket_fault, spelling_fault
from symelbo.io.parser import HeaderWarning, did_you_mean, parse_text

ASCII = "(the .calc notation is ASCII)"
GREEK = "(the .calc notation is ASCII; documents print it as a Greek letter)"

SYNTAX = [
    # near-miss rule names
    ("log p(X)\n = log(sum_Z[p(X, Z)]) by marginalisation\n",
     "2:27: unknown rule 'marginalisation'; did you mean marginalization? "
     "(`symelbo list` shows the rules)"),
    ("KL(q(Z) || p(Z | X))\n = E_q[log(q(Z) / p(Z | X))] by definiton_kl\n",
     "2:33: unknown rule 'definiton_kl'; did you mean definition_kl? (`symelbo list` shows the rules)"),
    ("log p(X)\n = log p(X) by frobnicate\n",
     "2:16: unknown rule 'frobnicate' (`symelbo list` shows the rules)"),
    # brackets, reported at the bracket, not where parsing stopped
    ("log(p(X, Z) = log p(X, Z) by definition_kl\n", "1:4: this '(' is never closed"),
    ("log(sum_Z[p(X, Z)) = 0\n", "1:10: this '[' is closed by ')' at column 18; write ']'"),
    ("log p(X)) = 0\n", "1:9: this ')' closes nothing"),
    # mathematical signs and Greek letters
    ("ELBO(q(Z), p(X, Z)) \u2265 0\n", "1:21: unexpected character U+2265 GREATER-THAN OR EQUAL TO, "
     f"which looks like '>='; write >= {ASCII}"),
    ("ELBO(q(Z), p(X, Z)) \u2264 0\n", "1:21: unexpected character U+2264 LESS-THAN OR EQUAL TO, "
     f"which looks like '<='; write <= {ASCII}"),
    ("ELBO(q(Z), p(X, Z)) \u2260 0\n", "1:21: unexpected character U+2260 NOT EQUAL TO; a step's "
     "relation is one of =, <=, >=, <, >; there is no 'not equal'"),
    ("\u2211_Z[p(X, Z)] = p(X)\n", f"1:1: unexpected character U+2211 N-ARY SUMMATION; write sum_Z[...] {ASCII}"),
    ("\U0001d53c_q[log q(Z)] = 0\n", "1:1: unexpected character U+1D53C MATHEMATICAL DOUBLE-STRUCK "
     f"CAPITAL E, which looks like 'E'; write E_q[...] {ASCII}"),
    ("log p(X, \u03b8) = 0\n", f"1:10: unexpected character U+03B8 GREEK SMALL LETTER THETA; write theta {GREEK}"),
    ("log p(X | \u039b) = 0\n", f"1:11: unexpected character U+039B GREEK CAPITAL LETTER LAMDA; write Lambda {GREEK}"),
    # TeX
    ("\\log p(X) = 0\n", f"1:1: '\\log' is LaTeX; this file is in the .calc notation (write log p(X) or "
     f"log(...); {LATEX_INPUT})"),
    ("\\frac{1}{2} = 0\n", f"1:1: '\\frac' is LaTeX; this file is in the .calc notation (write (a) / (b); "
     f"{LATEX_INPUT})"),
    ("\\mathbb{E}_q[log q(Z)] = 0\n", "1:1: '\\mathbb' is LaTeX; this file is in the .calc notation "
     f"(write E_q[...]; {LATEX_INPUT})"),
    ("log p(X | \\theta) = 0\n", "1:11: '\\theta' is LaTeX; this file is in the .calc notation "
     f"(write theta; {LATEX_INPUT})"),
    ("log p(X) = \\foo\n", f"1:12: '\\foo' is LaTeX; this file is in the .calc notation ({LATEX_INPUT})"),
    # spellings from elsewhere
    ("KL(q || p) = 0\n", "1:1: KL compares densities applied to their variables: write KL(q(Z) || p(Z | X))"),
    ("KL(q(Z), p(Z)) = 0\n", "1:1: KL separates its two densities with ||, as in KL(q(Z) || p(Z | X))"),
    ("ELBO(q, p) = 0\n", "1:1: ELBO takes densities applied to their variables: write ELBO(q(Z), p(X, Z))"),
    ("ln p(X) = 0\n", "1:1: the natural logarithm is written log, as in log p(X) or log(x)"),
    ("ln(X) = 0\n", "1:1: the natural logarithm is written log, as in log p(X) or log(x)"),
    ("log p(X) == 0\n", "1:10: '==' is not a relation; a step that claims equality is written ="),
    ("log p(X) => 0\n", "1:10: '=>' is not a relation; 'greater than or equal' is written >="),
    ("log p(X) != 0\n", "1:10: '!=' is not a relation; a step's relation is one of =, <=, >=, <, >"),
    ("E_q(Z)[log p(X, Z)] = 0\n", "1:1: a density with its variables goes in braces: write "
     "E_{q(Z)}[...], or E_q[...] for all of q's variables"),
    ("KL[q(Z) || p(Z)] = 0\n", "1:1: KL takes parentheses, as in KL(q(Z) || p(Z | X))"),
    ("log[p(X)] = 0\n", "1:1: log takes parentheses, as in log(...)"),
    ("sum_Z(p(X, Z)) = p(X)\n", "1:1: sum_Z takes brackets, as in sum_Z[...]"),
    ("H(q(Z)) = 0\n", "1:1: entropy takes brackets, as in H[q(Z)]"),
]


@pytest.mark.parametrize("text, message", SYNTAX)
def test_a_syntax_error_names_the_right_spelling(text, message):
    with pytest.raises(InputError) as info:
        parse_text(text, "f.calc")
    assert str(info.value) == "f.calc:" + message


def test_a_spelling_right_of_where_parsing_stopped_is_not_blamed():
    # the fault is the '@'; the '==' further right is not what stopped the parser
    assert spelling_fault("log p(X) @ 1 == 2", before=9) is None
    assert spelling_fault("log p(X) = 1 == 2", before=13) == (
        14, "'==' is not a relation; a step that claims equality is written =")


@pytest.mark.parametrize("line", ["log(sum_Z[p(X, Z)])", "E_{q(Z)}[log p(X, Z)]", ""])
def test_balanced_brackets_are_no_fault(line):
    assert bracket_fault(line) is None


@pytest.mark.parametrize("char, text", [
    ("\u2265", f"write >= {ASCII}"), ("\u2a7d", f"write <= {ASCII}"), ("\u222b", f"write int_Z[...] {ASCII}"),
    ("\u2207", f"write grad_phi[...] {ASCII}"), ("\u03d5", f"write phi {GREEK}"),
    ("\u03bb", f"write lambda {GREEK}"), ("\U0001d703", f"write theta {GREEK}"),
    ("\U0001d6ba", f"write Sigma {GREEK}"), ("\u0440", None), ("@", None),
])
def test_advice_for_a_character(char, text):
    assert advice(char) == text


@pytest.mark.parametrize("word, choices, hint", [
    ("marginalisation", ["marginalization", "jensen"], "; did you mean marginalization?"),
    ("titel", ["title", "assume"], "; did you mean title?"),
    ("author", ["title", "assume", "define"], ""),
])
def test_did_you_mean(word, choices, hint):
    assert did_you_mean(word, choices) == hint


def test_a_misspelled_header_is_a_warning_and_the_file_still_reads():
    with pytest.warns(HeaderWarning) as caught:
        derivation = parse_text("titel: ELBO\n\nlog p(X) = log p(X)\n", "f.calc")
    assert [str(w.message) for w in caught] == [
        "f.calc:1:1: warning: the header 'titel' is not one symelbo reads; did you mean title? "
        "(it is kept as metadata)"]
    assert derivation.headers == {"titel": "ELBO"} and len(derivation.chains) == 1


def test_a_header_far_from_every_known_one_is_metadata_without_a_warning():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        derivation = parse_text("author: A. Student\ntitle: T\n\nlog p(X) = log p(X)\n", "f.calc")
    assert derivation.headers == {"author": "A. Student", "title": "T"}


# ---------------------------------------------------------------------------
# the command line
# ---------------------------------------------------------------------------

import io  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402

import sympy  # noqa: E402

import symelbo  # noqa: E402
from symelbo.cli.commands import main  # noqa: E402
from symelbo.core.generate import BUILTIN, generate  # noqa: E402
from symelbo.io.parser import parse_file, parse_stream  # noqa: E402
from symelbo.io.report import text_report  # noqa: E402

from .conftest import DERIVATIONS  # noqa: E402


def run(capsys, *argv):
    status = main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


def test_version(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["--version"])
    assert stop.value.code == 0
    assert capsys.readouterr().out == f"symelbo {symelbo.__version__}\n"


def test_check_dash_reads_standard_input(capsys, monkeypatch):
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"log p(X) = log p(X)\n")))
    status, out, _ = run(capsys, "check", "-", "--json")
    assert status == 0 and json.loads(out)["verdict"] == "proved"


def test_standard_input_is_capped_and_located():
    with pytest.raises(InputError, match=r"^<stdin>: the input is over the limit of 10 bytes$"):
        parse_stream(io.BytesIO(b"log p(X) = log p(X)\n"), limit=10)
    with pytest.raises(InputError, match=r"^<stdin>:2:4: the input is not UTF-8 text \(byte 0xff\)$"):
        parse_stream(io.BytesIO(b"log p(X)\n = \xff\n"))


def test_fragment_alone_is_latex(capsys):
    status, out, _ = run(capsys, "derive", "jensen", "--fragment")
    assert status == 0 and r"\begin{align*}" in out and r"\documentclass" not in out


@pytest.mark.parametrize("argv, message", [
    (["derive", "jensen", "--format", "json", "--pdf", "-o", "x.pdf"],
     "symelbo derive: error: --pdf makes LaTeX; it cannot be combined with --format json"),
    (["derive", "jensen", "--json", "--pdf", "-o", "x.pdf"],
     "symelbo derive: error: --pdf makes LaTeX; it cannot be combined with --format json"),
    (["derive", "jensen", "--format", "markdown", "--fragment"],
     "symelbo derive: error: --fragment makes LaTeX; it cannot be combined with --format markdown"),
])
def test_contradicting_formats_are_a_usage_error(capsys, argv, message):
    with pytest.raises(SystemExit) as stop:
        main(argv)
    assert stop.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1] == message


def test_a_written_file_is_announced(capsys, tmp_path):
    out_file, certificates = tmp_path / "jensen.md", tmp_path / "c.json"
    status, out, err = run(capsys, "derive", "jensen", "--format", "markdown", "-o", str(out_file),
                           "--certificates", str(certificates))
    assert status == 0 and out == "" and out_file.read_text().startswith("# ")
    assert err.splitlines() == [f"symelbo: wrote {certificates}", f"symelbo: wrote {out_file}"]


def test_a_misspelled_header_is_one_warning_line_on_stderr(capsys, tmp_path):
    path = tmp_path / "t.calc"
    path.write_text("titel: T\n\nlog p(X) = log p(X)\n")
    status, _, err = run(capsys, "check", str(path))
    assert status == 0
    assert err == (f"symelbo: {path}:1:1: warning: the header 'titel' is not one symelbo reads; "
                   "did you mean title? (it is kept as metadata)\n")


@pytest.mark.parametrize("name", sorted(BUILTIN))
def test_builtin_json_has_its_title_and_the_lines_of_its_calc_file(capsys, name):
    _, out, _ = run(capsys, "derive", name, "--json")
    data, recorded = json.loads(out), parse_file(DERIVATIONS / f"{name}.calc")
    assert data["title"] == recorded.title == BUILTIN[name].title
    assert [[s["line"] for s in c["steps"]] for c in data["chains"]] == \
        [[s.line for s in c.steps] for c in recorded.chains]
    assert all(s["line"] > 0 for c in data["chains"] for s in c["steps"])


def test_list_prints_each_law_then_its_side_conditions(capsys):
    _, out, _ = run(capsys, "list")
    lines = out.splitlines()
    at = next(i for i, line in enumerate(lines) if line.lstrip().startswith("log_quotient "))
    assert lines[at].split(None, 1)[1] == "log(a / b) = log a - log b"
    assert lines[at + 1].strip() == "side conditions: a > 0 and b > 0"
    assert "\\" not in out  # no TeX left in the laws


@pytest.mark.parametrize("name", sorted(BUILTIN))
@pytest.mark.parametrize("width", [100, 72])
def test_text_output_fits_the_width(name, width):
    from symelbo.core.checker import check_derivation
    report = text_report(check_derivation(generate(name)), name, width=width)
    assert max(len(line) for line in report.splitlines()[1:]) <= width  # the title stays whole


def test_a_step_too_long_for_the_columns_has_its_justification_under_it():
    from symelbo.core.checker import check_derivation
    lines = text_report(check_derivation(generate("kl-shuffle")), "kl-shuffle").splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith(" 8   = "))
    assert " by " not in lines[at]
    assert lines[at + 1].strip() == "by bayes_rule, log_quotient, linearity_expectation  proved"


# ---------------------------------------------------------------------------
# the Python API
# ---------------------------------------------------------------------------

def test_density_takes_a_list_of_variables():
    assert symelbo.density("p", ["X", "Z"]) == symelbo.density("p", "X", "Z")
    assert str(symelbo.density("p", ["Z"], given=["X"])) == "p(Z | X)"


def test_subs_renames_with_variables_and_says_why_a_plain_symbol_does_not():
    q = symelbo.density("q", ["Z"])
    assert q.subs(symelbo.variable("Z"), symelbo.variable("W")) == symelbo.density("q", ["W"])
    with pytest.raises(TypeError) as info:
        q.subs(sympy.Symbol("Z"), sympy.Symbol("W"))
    assert str(info.value) == ("q(Z): its Z is variable('Z'), a real symbol, and Symbol('Z') is "
                               "another one; rename with .subs(variable('Z'), variable('W'))")


def test_sympy_latex_writes_the_log_of_a_density_as_the_documents_do():
    p = symelbo.density("p", ["X", "Z"])
    assert sympy.latex(sympy.log(p)) == r"\log p(X, Z)"
    assert sympy.latex(sympy.log(sympy.Symbol("x"))) == r"\log{\left(x \right)}"  # SymPy's own


def test_results_and_derivations_print_short():
    derivation = generate("jensen")
    result = symelbo.check_derivation(derivation)
    assert repr(derivation) == "<Derivation \"The ELBO by Jensen's inequality\": 1 chain(s), 5 step(s)>"
    assert repr(result) == "<CheckResult proved: 1 chain(s), 5 step(s)>"
    assert str(result).splitlines()[:3] == [
        "The ELBO by Jensen's inequality: proved",
        "  chain 1 (line 4): log p(X) >= ELBO(q(Z), p(X, Z))  [proved]",
        "    line 5: = log(sum_Z[p(X, Z)])  [proved]"]
    assert str(derivation) == (DERIVATIONS / "jensen.calc").read_text().split("\n", 1)[1].rstrip("\n")
    assert repr(result.chains[0].steps[0]) == "<StepResult line 5: = log(sum_Z[p(X, Z)]) [proved]>"


def test_version_and_dir():
    assert symelbo.__version__.count(".") >= 1
    names = dir(symelbo)
    assert {"density", "variable", "KL", "ELBO", "check_derivation", "generate", "__version__"} <= set(names)
    assert not {"sys", "import_module", "metadata"} & set(names)


# ---------------------------------------------------------------------------
# a fresh clone: the examples ship with it
# ---------------------------------------------------------------------------

from .conftest import REPO, SHARED_ORIGINALS  # noqa: E402


def test_the_example_derivations_ship_with_the_repository():
    shipped = sorted(p.name for p in (REPO / "examples").glob("*.calc"))
    assert shipped == ["gradient.calc", "jensen.calc", "kl_shuffle.calc", "misjustified.calc",
                       "wrong_steps.calc"]


@pytest.mark.skipif(not SHARED_ORIGINALS.is_dir(), reason="the shared originals are not beside the clone")
def test_the_shipped_examples_are_the_shared_originals():
    for original in SHARED_ORIGINALS.glob("*.calc"):
        assert (REPO / "examples" / original.name).read_bytes() == original.read_bytes(), original.name


# ---------------------------------------------------------------------------
# documents: a fragment stands alone, Markdown punctuated and lightly escaped
# ---------------------------------------------------------------------------

import re  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402

from symelbo.io.render import markdown_prose, render  # noqa: E402

from .conftest import SHARED_EXAMPLES  # noqa: E402


def checked(name: str):
    from symelbo.core.checker import check_derivation
    return check_derivation(parse_file(SHARED_EXAMPLES / name))


def test_a_fragment_holds_every_counterexample_it_points_to(tmp_path):
    fragment = render(checked("wrong_steps.calc"), "latex", name="wrong_steps.calc", fragment=True)
    pointed = re.findall(r"see counterexample~(\d+)", fragment)
    held = re.findall(r"\\textit\{Counterexample (\d+) \(line~\d+\)\.\}", fragment)
    assert pointed == held == ["1", "2", "3"]
    assert not re.search(r"\\(toprule|midrule|bottomrule|paragraph|section)\b", fragment)
    if shutil.which("pdflatex"):  # it compiles with only the packages its header names
        (tmp_path / "frag.tex").write_text(fragment, encoding="utf-8")
        (tmp_path / "doc.tex").write_text("\\documentclass{article}\n\\usepackage{amsmath,amssymb}\n"
                                          "\\begin{document}\n\\input{frag}\n\\end{document}\n")
        done = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "doc.tex"],
                              cwd=tmp_path, capture_output=True, timeout=120)
        assert done.returncode == 0, done.stdout[-2000:]


def test_markdown_punctuates_a_verdict_after_the_rules():
    md = render(checked("misjustified.calc"), "markdown", name="misjustified.calc")
    assert r"\text{by }\mathsf{bayes\_rule};\ \textit{misjustified}" in md


def test_markdown_side_conditions_are_not_html_escaped():
    md = render(symelbo.check_derivation(generate("kl-shuffle")), "markdown", name="kl-shuffle")
    # the side conditions as the PDF sets them: symbols as math
    assert "| `bayes_rule` | $p(Z \\mid X) = \\frac{p(X, Z)}{p(X)}$ | $p(X) > 0$ |" in md
    assert "&gt;" not in md and "\\(" not in md


@pytest.mark.parametrize("text, prose", [
    ("p(X) > 0", "p(X) > 0"),
    ("a_b *c* `d` $e$ x|y", r"a\_b \*c\* \`d\` \$e\$ x\|y"),
    ("[x](y) <b> & \\", r"&#91;x&#93;(y) &lt;b> &amp; \\"),
])
def test_markdown_prose(text, prose):
    assert markdown_prose(text) == prose



# ---------------------------------------------------------------------------
# the README's samples are what the tool prints
# ---------------------------------------------------------------------------

README = (REPO / "README.md").read_text(encoding="utf-8")


def _section(title: str) -> str:
    start = README.index(f"## {title}\n")
    return README[start:README.index("\n## ", start + 1)]


def test_the_readme_python_session_runs():
    import doctest
    block = re.search(r"```python\n(.*?)```", _section("From Python"), re.S).group(1)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    runner.run(doctest.DocTestParser().get_doctest(block, {}, "README", "README.md", 0))
    assert runner.summarize(verbose=False) == (0, 9)


def test_the_readme_tour_prints_what_derive_jensen_prints(capsys):
    sample = re.search(r"\$ symelbo derive jensen\n(.*?)```", _section("A tour of the command line"),
                       re.S).group(1)
    _, out, _ = run(capsys, "derive", "jensen")
    assert out == sample
