"""Checking derivations where people write them: LaTeX, Markdown and notebook sources.

Fixtures under tests/tex/: the display math of both seed texts pasted as it
is (seed_elbo.md, seed_gradient.md), lecture-note LaTeX with macros and every
way of writing a justification (notes.tex), and a notebook (bound.ipynb).
"""

from __future__ import annotations

import json
import subprocess
import sys

pytest_plugins = ["pytester"]
import time
from pathlib import Path

import pytest

from symelbo.cli.commands import main
from symelbo.core.checker import CheckOptions, check_derivation
from symelbo.io.parser import parse_text
from symelbo.io.tex_reader import (ALIASES, check_reading, read_tex, read_tex_text, rules_from_text,
                                   skipped_lines, unread_lines, unread_steps)
from symelbo.io.tex_source import MAX_EXPANSIONS, kind_of

HERE = Path(__file__).parent
TEX = HERE / "tex"
ROOT = HERE.parent
EXAMPLES = ROOT.parent / "shared" / "examples"
if not EXAMPLES.is_dir():
    EXAMPLES = Path("/work/shared/examples")


def verdicts(result):
    """``(line, verdict)`` of every step, chain by chain."""
    return [[(s.step.line, s.verdict) for s in chain.steps] for chain in result.chains]


def checked(path, kind):
    reading = read_tex(str(path), kind)
    return reading, check_reading(reading, CheckOptions(budget=5))


# ---------------------------------------------------------------------------
# the seed texts, pasted as they are
# ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def seed_elbo():
    return checked(TEX / "seed_elbo.md", "markdown")


def test_seed_elbo_every_correct_step_proved_and_the_slip_located(seed_elbo):
    reading, result = seed_elbo
    assert verdicts(result) == [
        [(11, "proved")],                       # KL = -E[log p(Z|X)/q(Z)]
        [(15, "proved")] * 6,                   # the KL shuffle, one aligned block on line 15
        [(19, "proved")],                       # log p(X) = E[...] + KL
        [(23, "proved")],                       # L(q) = E[...]
        [(27, "unknown")],                      # log p(X) = L(g) + KL: g is no density of the file
        [(35, "proved")],                       # log p(X) = log sum_Z p(X, Z)
        [(39, "proved")] * 2,                   # multiply by q/q, then an expectation
        [(43, "proved")] * 3,                   # Jensen
    ]
    slip = result.chains[4].steps[0]
    assert slip.message == ("not read: " + str(TEX / "seed_elbo.md") + ":27:28: 'g' is not a density "
                            "of this file (its densities: p, q); the ELBO is written \\mathcal{L}(q)")
    assert str(slip.step.lhs) == "log(p(X))"   # the readable side is still shown


def test_seed_elbo_skips_what_is_not_a_derivation(seed_elbo):
    reading, _ = seed_elbo
    path = str(TEX / "seed_elbo.md")
    assert skipped_lines(reading) == [
        f"{path}:7:3: an optimisation (\\arg\\min), not a chain of steps; skipped",
        f"{path}:31:3: not about the file's densities; skipped",   # Jensen for a convex g
    ]


def test_seed_elbo_bare_expectation_is_under_q_and_jensen_step_is_an_inequality(seed_elbo):
    reading, result = seed_elbo
    shuffle = result.chains[1]
    assert str(shuffle.steps[0].step.rhs) == "-E_{q(Z)}[log(p(Z | X)/q(Z))]"
    jensen = result.chains[7]
    assert [s.step.relation for s in jensen.steps] == ["=", ">=", "="]
    assert jensen.chain.relation == ">="


def test_seed_gradient_both_displays_proved():
    reading, result = checked(TEX / "seed_gradient.md", "markdown")
    assert verdicts(result) == [[(5, "proved")], [(9, "proved")]]
    assert reading.calc_text.splitlines()[1:3] == [
        "    ELBO(q_phi(theta), p(theta, x))",
        "  = log(p(x)) - KL(q_phi(theta) || p(theta | x))",
    ]


# ---------------------------------------------------------------------------
# lecture-note LaTeX: macros, environments, justifications
# ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def notes():
    return checked(TEX / "notes.tex", "tex")


def test_notes_verdicts_at_their_lines(notes):
    _, result = notes
    assert verdicts(result) == [
        [(10, "proved"), (11, "proved"), (12, "proved"), (13, "proved"), (14, "proved")],
        [(18, "proved"), (18, "proved")],
        [(22, "refuted")],                       # the injected sign slip
        [(28, "proved"), (29, "proved")],
        [(33, "proved")],
    ]
    assert result.chains[2].steps[0].counterexample is not None


@pytest.mark.parametrize("chain, step, by", [
    (0, 3, ("jensen",)),                 # && \text{(by Jensen)}
    (0, 4, ("definition_elbo",)),        # \tag{definition of the ELBO}
    (1, 1, ("gibbs_inequality",)),       # \overset{\text{Gibbs}}{\geq}
    (2, 0, ("definition_kl",)),          # \stackrel{\text{def.\ of KL}}{=}
    (3, 1, ("linearity_gradient",)),     # % by linearity of the gradient
    (0, 0, ()),                          # nothing written: the checker searches
])
def test_justifications_written_in_the_source(notes, chain, step, by):
    _, result = notes
    assert result.chains[chain].steps[step].step.by == by


def test_notes_translation_reads_macros_integrals_and_gradients(notes):
    reading, _ = notes
    lines = reading.calc_text.splitlines()
    assert "  = log(int_Z[p(X, Z)])" in lines
    assert "  = grad_phi[log(p(x))] - grad_phi[KL(q_phi(theta) || p(theta | x))]    by linearity_gradient" in lines
    assert "  = E_{q(Z)}[log(p(X, Z))] + H[q(Z)]" in lines
    assert skipped_lines(reading) == [f"{TEX / 'notes.tex'}:36:3: no relation; skipped"]


def test_calc_translation_has_the_same_verdicts(notes, seed_elbo):
    """The TeX reading and its .calc translation, checked on their own, agree step by step."""
    for reading, result in (notes, seed_elbo):
        again = check_derivation(parse_text(reading.calc_text, "<translation>"), CheckOptions(budget=5))
        tex = [s.verdict for c in result.chains for s in c.steps if not s.message.startswith("not read")]
        assert [s.verdict for c in again.chains for s in c.steps] == tex


@pytest.mark.parametrize("name, kind, expected, by", [
    # StatProofBook's free energy: \int ... \mathrm{d}\theta, KL[...||...], <...>_{q}, p(y|m)
    ("free_energy.md", "markdown", [[(5, "proved"), (6, "proved")]], [[(), ()]]),
    # lecture notes: bold names, \text{ELBO}, \text{KL}, bare \mathbb{E}, a slip injected
    ("elbo_notes.tex", "tex", [[(6, "proved"), (7, "proved"), (8, "proved")], [(12, "refuted")]],
     [[(), ("gibbs_inequality",), ()], [()]]),
    # an amortised q_phi(z|x), \boldsymbol\theta, L(theta, phi; x)
    ("vae.md", "markdown", [[(3, "proved")], [(5, "proved")]], [[()], [()]]),
])
def test_sources_in_the_notations_of_the_references(name, kind, expected, by):
    reading, result = checked(TEX / name, kind)
    assert verdicts(result) == expected
    assert [[s.step.by for s in c.steps] for c in result.chains] == by
    assert unread_lines(reading) == [] and skipped_lines(reading) == []


def test_notebook_markdown_cells_at_their_lines_of_the_ipynb_file():
    reading, result = checked(TEX / "bound.ipynb", "ipynb")
    assert verdicts(result) == [[(12, "proved")], [(30, "refuted")]]   # the code cell is not read


# ---------------------------------------------------------------------------
# the notation, side by side
# ---------------------------------------------------------------------------

CONTEXT = r"\[ \log p(X) = \log \sum_Z q(Z) \frac{p(X, Z)}{q(Z)} \] \[ \log p(x) = \log \sum_\theta p(x, \theta) q_\phi(\theta) \]"


@pytest.mark.parametrize("tex, calc", [
    (r"\mathbb{E}_{q(Z)}\left[\log p(X, Z)\right]", "E_{q(Z)}[log(p(X, Z))]"),
    (r"\mathrm{E}_q[\log q(Z)]", "E_q[log(q(Z))]"),
    (r"\operatorname{E}_{q}\left[ \log q(Z) \right]", "E_q[log(q(Z))]"),
    (r"E_{q}[\ln q(Z)]", "E_q[log(q(Z))]"),
    (r"\mathrm{KL}(q(Z) \,\|\, p(Z \mid X))", "KL(q(Z) || p(Z | X))"),
    (r"D_{\mathrm{KL}}(q \parallel p)", "KL(q(Z) || p(Z | X))"),
    (r"\operatorname{KL}\left(q(Z) \,\middle\|\, p(Z \vert X)\right)", "KL(q(Z) || p(Z | X))"),
    (r"KL(q||p)", "KL(q(Z) || p(Z | X))"),
    (r"\mathcal{L}(q)", "ELBO(q(Z), p(X, Z))"),
    (r"\mathrm{ELBO}", "ELBO(q(Z), p(X, Z))"),
    (r"\mathrm{H}[q]", "H[q(Z)]"),
    (r"\mathbb{H}[q(Z)]", "H[q(Z)]"),
    (r"\exp\left(\log p(X)\right)", "exp(log(p(X)))"),
    (r"\tfrac{p(X, Z)}{q(Z)} \cdot 2", "p(X, Z) / q(Z) * 2"),
    (r"\dfrac{1}{2} \times p(X)", "1 / 2 * p(X)"),
    (r"p(X, Z)/q(Z)", "p(X, Z) / q(Z)"),
    (r"\sum_{Z} q(Z)", "sum_Z[q(Z)]"),
    (r"\int p(X, Z) \,\mathrm{d}Z", "int_Z[p(X, Z)]"),
    (r"\int p(X, Z) \, dZ", "int_Z[p(X, Z)]"),
    (r"\nabla_\phi \log q_\phi(\theta)", "grad_phi[log(q_phi(theta))]"),
    (r"\frac{\partial}{\partial \phi} \log q_{\phi}(\theta)", "grad_phi[log(q_phi(theta))]"),
    (r"\mathbb{E}_{\theta \sim q_\phi}[\log p(x \mid \theta)]", "E_{q_phi}[log(p(x | theta))]"),
    (r"\Big( \log p(X) \Big) \; \! \quad", "log(p(X))"),
    (r"e^{\log p(X)}", "exp(log(p(X)))"),
    (r"\left\langle \log q(Z) \right\rangle_{q(Z)}", "E_{q(Z)}[log(q(Z))]"),
    (r"\mathrm{KL}[q(Z) || p(Z|X)]", "KL(q(Z) || p(Z | X))"),
    (r"\log q(\theta; \phi)", "log(q_phi(theta))"),
    (r"\log p(\boldsymbol\theta, \mathbf{x})", "log(p(theta, x))"),
])
def test_notation(tex, calc):
    reading = read_tex_text(CONTEXT + r"\[ 0 = " + tex + r" \]", "tex")
    assert unread_lines(reading) == []
    assert reading.calc_text.splitlines()[-1] == f"  = {calc}"


@pytest.mark.parametrize("text, rules", [
    (r"\text{(by Jensen)}", ("jensen",)),
    ("Jensen's inequality", ("jensen",)),
    ("by Gibbs' inequality", ("gibbs_inequality",)),
    ("Bayes' rule", ("bayes_rule",)),
    ("linearity", ("linearity_expectation",)),
    ("definition of KL", ("definition_kl",)),
    ("def. of KL, linearity", ("definition_kl", "linearity_expectation")),
    (r"log\_quotient", ("log_quotient",)),
    ("marginalisation", ("marginalization",)),
    ("(a)", ()),
    ("for all Z", ()),
])
def test_rules_from_text(text, rules):
    assert rules_from_text(text) == rules


def test_every_alias_names_real_rules():
    from symelbo.core.rules import RULES
    assert {r for rules in ALIASES.values() for r in rules} <= set(RULES)


# ---------------------------------------------------------------------------
# what cannot be read is located; the rest is still checked
# ---------------------------------------------------------------------------

def test_an_unreadable_side_is_unknown_and_its_neighbours_still_checked():
    text = ("\\begin{align}\n"
            "\\log p(X) &= \\log \\sum_Z p(X, Z) \\\\\n"
            "&= \\log \\foo{Z} \\\\\n"
            "&= \\log \\sum_Z p(X, Z)\n"
            "\\end{align}\n"
            "\\[ \\log p(X) = \\log \\sum_Z p(X, Z) \\]\n")
    reading = read_tex_text(text, "tex", "bad.tex")
    assert unread_lines(reading) == ["bad.tex:3:9: cannot read '\\\\foo' here"]
    assert unread_steps(reading) == [(3, 9, "cannot read '\\\\foo' here")] * 2
    result = check_reading(reading)
    assert verdicts(result) == [[(2, "proved"), (3, "unknown"), (4, "unknown")], [(6, "proved")]]


@pytest.mark.parametrize("text, line", [
    (r"\input{secret} \[ \log p(X) = \log \sum_Z p(X, Z) \]",
     "h.tex:1:1: \\input is not followed: symelbo reads only this file, as text"),
    ("\\catcode`\\$=12 \\[ \\log p(X) = \\log \\sum_Z p(X, Z) \\]",
     "h.tex:1:1: catcode changes are not followed: the file is read with TeX's usual codes"),
    (r"\def\a{\a\a} \[ \log p(X) = \a \]",
     f"h.tex:1:16: macro expansion does not end (more than {MAX_EXPANSIONS} expansions; "
     "\\a is defined in terms of itself)"),
    (r"\[ \log p(X) = \write18{rm -rf /} \]",
     "h.tex:1:16: \\write is never run: symelbo reads the file as text"),
    (r"\begin{align} \log p(X) &= 1", "h.tex:1:1: \\begin{align} is never closed; not read"),
    (r"\newcommand{\sneak}{\input{x}} \[ \log p(X) = \sneak \]",
     "h.tex:1:47: \\input inside math (from a macro) is not read (symelbo reads TeX as text and "
     "runs nothing)"),
    (r"\newcommand{\KL}[2]{\mathrm{KL}(#1 \| #2)} \[ \log p(X) = \KL{q(Z)} \]",
     "h.tex:1:46: \\KL takes 2 argument(s); fewer are given"),
])
def test_hostile_input_is_skipped_at_its_place(text, line):
    reading = read_tex_text(text, "tex", "h.tex")
    assert line in skipped_lines(reading)


@pytest.mark.parametrize("text", [
    r"\[ \log p(X) = " + "{" * 20000 + "p(X)" + "}" * 20000 + r" \]",
    r"\[ \log p(X) = " + r"\left(" * 3000 + "p(X)" + r"\right)" * 3000 + r" \]",
    r"\def\a{xxxxxxxxxx}\def\b{\a\a\a\a\a\a\a\a\a\a}\def\c{\b\b\b\b\b\b\b\b\b\b}"
    r"\def\d{\c\c\c\c\c\c\c\c\c\c}\def\e{\d\d\d\d\d\d\d\d\d\d} \[ \log p(X) = \e \]",
    r"\[ \log p(X) = " + "p(X) + " * 20000 + r" p(X) \]",
])
def test_huge_or_deep_input_never_hangs(text):
    start = time.monotonic()
    reading = read_tex_text(text, "tex", "h.tex")
    assert time.monotonic() - start < 20
    assert reading.derivation.chains == ()
    assert skipped_lines(reading) or unread_lines(reading)


def test_markdown_code_and_inline_math_are_not_read():
    text = ("Inline $a = b$ is prose.\n\n```\n$$ \\log p(X) = 0 $$\n```\n\n`$$ x = y $$`\n\n"
            "$$\n\\log p(X) = \\log \\sum_Z p(X, Z)\n$$\n")
    reading = read_tex_text(text, "markdown", "a.md")
    assert [s.line for c in reading.derivation.chains for s in c.steps] == [10]


@pytest.mark.parametrize("path, override, kind", [
    ("a.tex", None, "tex"), ("a.md", None, "markdown"), ("a.ipynb", None, "ipynb"),
    ("a.calc", None, "calc"), ("a.txt", "tex", "tex"), ("a.ipynb", "markdown", "ipynb"),
    ("a.tex", "calc", "calc"),
])
def test_kind_of(path, override, kind):
    assert kind_of(path, override) == kind


# ---------------------------------------------------------------------------
# the command line
# ---------------------------------------------------------------------------

def run(*args):
    return subprocess.run([sys.executable, "-m", "symelbo", *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=600)


def test_cli_json_keeps_its_shape_and_lists_what_was_skipped():
    done = run("check", "tests/tex/seed_gradient.md", "--json")
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert {"chains", "skipped", "verdict"} <= set(data)
    assert [s["line"] for c in data["chains"] for s in c["steps"]] == [5, 9]
    assert data["skipped"] == []


def test_cli_to_calc_and_from(tmp_path):
    source = tmp_path / "derivation.txt"
    source.write_text(r"\[ \log p(X) = \log \sum_Z p(X, Z) \]" + "\n", encoding="utf-8")
    done = run("check", str(source), "--from", "tex", "--to-calc")
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"# {source}:1:4\n    log(p(X))\n  = log(sum_Z[p(X, Z)])\n"
    assert run("check", str(source), "--from", "tex").returncode == 0


def test_cli_slip_exits_1_with_the_step_at_its_line():
    done = run("check", "tests/tex/seed_elbo.md")
    assert done.returncode == 1
    assert "27   = UNREAD" in done.stdout
    assert "skipped:\n  tests/tex/seed_elbo.md:7:3: an optimisation" in done.stdout


def test_cli_no_chain_is_bad_input(tmp_path):
    source = tmp_path / "empty.md"
    source.write_text("No math here.\n", encoding="utf-8")
    done = run("check", str(source))
    assert done.returncode == 2
    assert done.stderr == (f"symelbo: {source}:1:1: no chain of relations found in its display math "
                           "(align, equation, \\[...\\], $$...$$)\n")


# ---------------------------------------------------------------------------
# round trip: symelbo's own LaTeX reads back with the same verdicts
# ---------------------------------------------------------------------------

def _steps(path) -> list:
    data = json.loads(run("check", str(path), "--json").stdout)
    return [(s["verdict"], s["by"]) for c in data["chains"] for s in c["steps"]]


@pytest.mark.parametrize("name", ["kl-shuffle", "jensen", "gradient"])
def test_round_trip_of_builtin_derivations(tmp_path, name):
    original = json.loads(run("derive", name, "--json").stdout)
    expected = [(s["verdict"], s["by"]) for c in original["chains"] for s in c["steps"]]
    for suffix, fmt in ((".tex", "latex"), (".md", "markdown")):
        out = tmp_path / f"{name}{suffix}"
        assert run("derive", name, "--format", fmt, "-o", str(out)).returncode == 0
        assert _steps(out) == expected, fmt


@pytest.mark.parametrize("example", sorted(p.name for p in EXAMPLES.glob("*.calc")))
def test_round_trip_of_shared_examples(tmp_path, example):
    source = EXAMPLES / example
    expected = _steps(source)
    for flags in (("--format", "latex"), ("--format", "latex", "--fragment"), ("--format", "markdown")):
        out = tmp_path / ("out.md" if "markdown" in flags else "out.tex")
        run("check", str(source), *flags, "-o", str(out))
        assert _steps(out) == expected, flags


# ---------------------------------------------------------------------------
# the pytest plugin
# ---------------------------------------------------------------------------

def test_plugin_collects_tex_sources_on_request(pytester):
    pytester.makefile(".md", proof=(TEX / "seed_gradient.md").read_text(encoding="utf-8"))
    pytester.makefile(".md", slip=(TEX / "seed_elbo.md").read_text(encoding="utf-8"))
    assert pytester.runpytest("-p", "no:cacheprovider").ret == pytest.ExitCode.NO_TESTS_COLLECTED
    result = pytester.runpytest("-p", "no:cacheprovider", "--symelbo-tex")
    result.assert_outcomes(passed=9, failed=1)
    result.stdout.fnmatch_lines(["*slip.md:27:28: not read: 'g' is not a density of this file*"])


def test_plugin_ini_option(pytester):
    pytester.makefile(".md", proof=(TEX / "seed_gradient.md").read_text(encoding="utf-8"))
    pytester.makeini("[pytest]\nsymelbo_collect_tex = true\n")
    pytester.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=2)
