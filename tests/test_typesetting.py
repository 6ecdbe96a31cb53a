"""Typesetting as a textbook sets it (PRML 10.1): one paragraph per counterexample, symbols in
math, one justification column per document, chains that start alike, ``\\log \\frac{p}{q}``,
``KL(q || p)`` without a gap, one variable order, and the ELBO defined before it is used;
self-contained fragments; Markdown with the PDF's punctuation and wrapped rule lists."""

from __future__ import annotations

import re
from functools import lru_cache

import pytest
import sympy as sp

from symelbo.core.checker import check_derivation
from symelbo.core.generate import generate
from symelbo.core.notation import variable
from symelbo.core.printing import latex_str
from symelbo.io.parser import parse_file, parse_text
from symelbo.io.prose import Segment, prose_segments
from symelbo.io.render import render, variable_order

from .conftest import SHARED_EXAMPLES


@lru_cache(maxsize=None)
def builtin(name: str):
    return check_derivation(generate(name))


@lru_cache(maxsize=None)
def example(name: str):
    path = SHARED_EXAMPLES / name
    if not path.is_file():
        pytest.skip(f"no {path}")
    return check_derivation(parse_file(path))


RULE_NAMES = frozenset({"bayes_rule", "marginalization", "jensen", "expectation_constant"})


def shown(segments) -> str:
    """Segments as a reader sees them: $math$, [rule], text."""
    return "".join(f"${s.text}$" if s.is_math else f"[{s.text}]" if s.is_rule else s.text
                   for s in segments)


# ---------------------------------------------------------------------------
# prose: symbols in math, words in roman
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("text, expected", [
    ("p(X) > 0", "$p(X) > 0$"),
    ("a > 0 and b > 0", "$a > 0$ and $b > 0$"),
    ("a > 0, k real", "$a > 0$, $k$ real"),
    ("c does not depend on phi", r"$c$ does not depend on $\phi$"),
    ("a and b do not depend on the variables of q", "$a$ and $b$ do not depend on the variables of $q$"),
    ("q is a density", "$q$ is a density"),
    ("c does not depend on Z; q is normalised", "$c$ does not depend on $Z$; $q$ is normalised"),
    ("p(X, Z) is a joint density", "$p(X, Z)$ is a joint density"),
    ("q(Z | X) > 0", r"$q(Z \mid X) > 0$"),
    ("a0 > 0 and lambda0 >= 1.5", r"$a_{0} > 0$ and $\lambda_{0} \ge 1.5$"),
    ("bayes_rule does not produce this step; it follows by marginalization",
     "[bayes_rule] does not produce this step; it follows by [marginalization]"),
    ("no proof found; held on 24 random instances", "no proof found; held on 24 random instances"),
    ("log of a number <= 0", "log of a number <= 0"),
    ("f > 0 under a log", "$f > 0$ under a log"),
    ("", ""),
])
def test_prose_sets_symbols_as_math(text, expected):
    assert shown(prose_segments(text, RULE_NAMES)) == expected


def test_prose_follows_the_document_variable_order():
    assert prose_segments("p(Z, X) > 0", (), ("X", "Z")) == (Segment("p(X, Z) > 0", is_math=True),)


def test_side_conditions_and_messages_are_math_in_every_format():
    result = example("misjustified.calc")
    tex = render(result, "latex")
    md = render(result, "markdown")
    assert r"& $p(X) > 0$ \\" in tex and "& p(X) > 0" not in tex
    assert (r"\textsf{bayes\_\allowbreak{}rule} does not produce this step; it follows by "
            r"\textsf{marginalization}") in tex
    # the Markdown rules table sets its side conditions as the PDF does: symbols as math
    assert "| $p(X) > 0$ |" in md and "&gt;" not in md and r"p\(X\)" not in md
    assert "`bayes_rule` does not produce this step; it follows by `marginalization`." in md


# ---------------------------------------------------------------------------
# layout
# ---------------------------------------------------------------------------

def test_a_counterexample_is_one_paragraph():
    for fragment in (False, True):
        tex = render(example("wrong_steps.calc"), "latex", fragment=fragment)
        paragraphs = re.findall(r"Counterexample \d.*?fails\.", tex, flags=re.S)
        assert len(paragraphs) == 3
        assert all("\n\n" not in p and re.search(r"holding \$X = 2\$%\n, ", p) for p in paragraphs)


@pytest.mark.parametrize("result", [lambda: builtin("kl-shuffle"), lambda: builtin("gradient"),
                                    lambda: example("wrong_steps.calc")])
def test_one_justification_column_per_document(result):
    widths = set(re.findall(r"\\parbox\[t\]\{([0-9.]+)\\linewidth\}", render(result(), "latex")))
    assert widths == {"0.38"}


def test_chains_start_alike():
    tex = render(builtin("kl-shuffle"), "latex")
    blocks = re.findall(r"\\begin\{align\*\}\n(.*?)\n", tex)
    # every chain's first expression sits before the alignment point, none on a line of its own
    assert len(blocks) == 2 and all(not line.lstrip().startswith("&") for line in blocks)


def test_log_of_a_quotient_is_written_with_its_fraction():
    a, b, c = sp.symbols("a b c")
    assert latex_str(sp.log(a / b)) == r"\log \frac{a}{b}"
    assert latex_str(sp.Mul(c, sp.log(a / b), evaluate=False)) == r"c \log \frac{a}{b}"
    # followed by a factor, the log keeps its brackets: not the log of a product
    assert latex_str(sp.Mul(sp.log(a / b), c, evaluate=False)) == r"\log\left(\frac{a}{b}\right) c"
    assert latex_str(sp.log(a / b + 1)) == r"\log\left(1 + \frac{a}{b}\right)"
    tex = render(builtin("kl-shuffle"), "latex")
    assert r"\log \frac{p(X, Z)}{q(Z)}" in tex and r"\log\left(\frac" not in tex


def test_kl_and_entropy_have_no_gap_after_their_name():
    tex = render(builtin("kl-shuffle"), "latex")
    assert r"\mathrm{KL}(q(Z) \,\|\, p(Z \mid X))" in tex
    assert r"\operatorname{KL}\left(" not in tex
    entropy = check_derivation(parse_text("H[q(Z)]\n  = -E_q[log q(Z)]  by definition_entropy\n", "h.calc"))
    assert r"\mathrm{H}[q(Z)]" in render(entropy, "latex")


def test_one_variable_order_per_document():
    result = builtin("kl-shuffle")
    assert variable_order(result.derivation) == (variable("X"), variable("Z"))
    for fmt in ("latex", "markdown"):
        text = render(result, fmt)
        assert "p(Z, X)" not in text and "p(X, Z)" in text
    # the observed first even where the names sort the other way
    for fmt in ("latex", "markdown"):
        text = render(builtin("gradient"), fmt)
        assert r"p(\theta, x)" not in text and r"\frac{p(x, \theta)}{q_{\phi}(\theta)}" in text


def test_a_printed_variable_order_is_kept_as_asked():
    from symelbo.core.notation import density
    joint = density("p", "theta", "x", given=["b", "a"])
    assert latex_str(joint) == r"p(\theta, x \mid a, b)"
    assert latex_str(joint, ("x", "theta", "b")) == r"p(x, \theta \mid b, a)"


def test_the_elbo_is_defined_before_a_claim_uses_it():
    tex = render(builtin("kl-shuffle"), "latex")
    definition = tex.index(r"\item $\mathcal{L}(q) = \mathbb{E}_{q(Z)}\left[\log \frac{p(X, Z)}{q(Z)}\right]$: "
                           "the evidence lower bound of $q(Z)$.")
    assert definition < tex.index(r"\subsection*") < tex.index(r"\mathcal{L}(q)$\hfill")
    assert "the Kullback\u2013Leibler divergence of $q(Z)$ from $p(Z \\mid X)$." in tex
    md = render(builtin("kl-shuffle"), "markdown")
    assert md.index(r"- $\mathcal{L}(q) = ") < md.index("### ")


# ---------------------------------------------------------------------------
# fragments and Markdown
# ---------------------------------------------------------------------------

def test_a_fragment_holds_every_counterexample_it_names():
    tex = render(example("wrong_steps.calc"), "latex", fragment=True)
    named = set(re.findall(r"see counterexample~(\d+)", tex))
    given = set(re.findall(r"\\textit\{Counterexample (\d+)", tex))
    assert named == given == {"1", "2", "3"}
    assert r"\toprule" not in tex and r"\documentclass" not in tex


def test_markdown_punctuates_as_the_pdf():
    md = render(example("wrong_steps.calc"), "markdown")
    assert r"\mathsf{bayes\_rule};\ \textit{misjustified}" not in md   # (no such step here)
    assert r"&& \quad \times\ \textit{refuted}" in md
    assert "- Line 6: *refuted*; see counterexample 1." in md
    md = render(example("misjustified.calc"), "markdown")
    assert r"\text{by }\mathsf{bayes\_rule};\ \textit{misjustified}" in md


def test_markdown_wraps_long_rule_lists():
    md = render(example("wrong_steps.calc"), "markdown")
    assert max(line.count(r"\mathsf{") for line in md.splitlines()) <= 3
    assert (r"\textit{found: }{\begin{aligned}[t]" "\n"
            r"&\mathsf{definition\_kl},\ \mathsf{log\_quotient},\ \mathsf{linearity\_expectation}, \\" "\n"
            r"&\mathsf{expectation\_constant},\ \mathsf{bayes\_rule}\end{aligned}} \\") in md


def test_one_wide_first_expression_sets_every_chain_first_alone():
    text = ("title: two chains\n\n"
            "    E_q[log p(X, Z)] - E_q[log q(Z)] + E_q[log p(X, Z)] - E_q[log q(Z)]\n"
            "  = 2*E_q[log p(X, Z)] - 2*E_q[log q(Z)]\n\n"
            "    log p(X)\n"
            "  = log(sum_Z[p(X, Z)])\n")
    tex = render(check_derivation(parse_text(text, "two.calc")), "latex")
    firsts = re.findall(r"\\begin\{align\*\}\n(.*?)\n", tex)
    assert len(firsts) == 2 and all(line.lstrip().startswith("& ") for line in firsts)


def test_a_wide_first_expression_is_broken_and_a_wide_claim_leaves_the_heading():
    text = ("    E_q[log p(X, Z)] - E_q[log q(Z)] + E_q[log p(X, Z)] - E_q[log q(Z)]"
            " + E_q[log p(X, Z)] - E_q[log q(Z)]\n"
            "  = 3*E_q[log p(X, Z)] - 3*E_q[log q(Z)]\n")
    tex = render(check_derivation(parse_text(text, "wide.calc")), "latex")
    assert r"\subsection*{1.\hfill" in tex
    block = tex[tex.index(r"\begin{align*}"):tex.index(r"\end{align*}")]
    from symelbo.io.render import LINE_BUDGET, math_width
    lines = [line for line in block.split(r"\\" + "\n")[:-1]]    # the first expression's lines
    assert len(lines) >= 2 and all(math_width(line) <= LINE_BUDGET + 8 for line in lines)


def test_a_tall_justification_is_smashed_and_its_depth_reserved_after_it():
    tex = render(builtin("kl-shuffle"), "latex")
    assert tex.count(r"\smash[b]{\parbox[t]") == 9     # one per step
    # five rules take three lines beside a one-line step: two more lines of depth
    assert (r"\textsf{expectation\_constant}}}\rule[-28.0pt]{0pt}{28.0pt} \\") in tex
    # beside a step of three lines a two-line justification needs nothing more
    step = tex[tex.index(r"by \textsf{bayes\_rule}"):tex.index(r"+ \mathbb{E}_{q(Z)}\left[\log p(X)\right]")]
    assert r"\rule" not in step
