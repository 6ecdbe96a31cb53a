"""Checked derivations as LaTeX and Markdown documents, through jinja2 templates.

Map of this module:

- :func:`render`       a checked derivation as a LaTeX article, a LaTeX fragment
                       (the ``align*`` blocks only, for ``\\input``) or Markdown.
- :func:`render_instantiation`  a derivation instantiated on a model
                       (:mod:`symelbo.models.instantiate`): abstract line, closed
                       form, value and check, as LaTeX or Markdown.
- :func:`latex_repr`, :func:`markdown_repr`  what Jupyter shows
                       (registered by :mod:`symelbo.io.notebook`).
- :func:`tex_escape`, :func:`markdown_escape`  the filters applied to user text.

Templates (``symelbo.templates``) hold layout only. Every formula comes from
:func:`symelbo.core.printing.latex_str`; this module turns a
:class:`~symelbo.core.checker.CheckResult` into plain view records and the
templates place them. The LaTeX environment is sandboxed, uses delimiters
that do not clash with TeX braces (``\\VAR{...}``, ``\\BLOCK{...}``, ``%#``
comments) and escapes by default: any string that is not a :class:`TeX`
fragment built here is TeX-escaped on output, so a title such as
``100% & \\input{/etc/passwd} #1 {`` prints literally. Compiling to PDF is
:mod:`symelbo.io.pdf`.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from functools import lru_cache

from symelbo.io.data import data_dir

import jinja2
import sympy as sp
from jinja2.sandbox import ImmutableSandboxedEnvironment

from symelbo.core.notation import ELBO, KL, Density, Entropy, Expectation, Marginal
from symelbo.core.printing import NotationLatexPrinter, latex_str, tex_char
from symelbo.core.relations import RELATIONS, MixedDirections, compose
from symelbo.io.prose import Segment, prose_segments
from symelbo.io.report import omitted_rows_note, rows_that_matter
from symelbo.core.verdicts import VERDICT, VERDICTS, weakest

__all__ = ["render", "render_instantiation", "latex_repr", "markdown_repr", "tex_escape",
           "markdown_escape", "breakable_name", "fold_tex_lines", "shortened", "TeX", "FORMATS"]

FORMATS = ("latex", "markdown")

#: The TeX symbol of each relation a step may state.
RELATION_TEX = {symbol: r.tex for symbol, r in RELATIONS.items()}

#: The justification column, as a fraction of ``\\linewidth``: the same in every
#: chain of a document (a reader's eye finds it in one place), wide enough for
#: "refuted: see counterexample 12" on one line and five rule names on three.
WHY_WIDTH = "0.38"
#: Width (in the units of :func:`math_width`) of the formulas of one display
#: line beside that column: beyond it a right-hand side is broken at its
#: top-level terms. Calibrated on pdflatex output: 11pt Latin Modern, a 16 cm
#: text block, 0.38 of it for the justification.
LINE_BUDGET = 46.0
#: When some chain's first expression is wider than this, every chain of the
#: document sets its first expression on a line of its own (and the others
#: under it), so that the chains of one document look alike.
FIRST_BUDGET = 18.0
#: The widest claim (first, relation, last) a chain's heading shows beside its
#: number and verdict; a wider one would stick out of the line (math in a heading
#: does not break well), so the heading shows only its number and the display the claim.
CLAIM_BUDGET = 52.0


class TeX(str):
    """A fragment of LaTeX built by this module (a formula from ``latex_str``, an escaped text).

    The templates print it as it is; any other string is escaped on output.
    """

    __slots__ = ()


# ---------------------------------------------------------------------------
# escaping
# ---------------------------------------------------------------------------

_TEX_SPECIAL = {
    "\\": r"\textbackslash{}", "{": r"\{", "}": r"\}", "#": r"\#", "$": r"\$", "%": r"\%",
    "&": r"\&", "_": r"\_", "^": r"\textasciicircum{}", "~": r"\textasciitilde{}",
    "<": r"\textless{}", ">": r"\textgreater{}", "|": r"\textbar{}", '"': r"\textquotedbl{}",
}
_SPACE_RE = re.compile(r"\s+")


def tex_escape(text) -> TeX:
    """User text as LaTeX that prints it literally (text mode); whitespace runs become one space.

    TeX's special characters print as themselves; a character outside ASCII
    goes through :func:`~symelbo.core.printing.tex_char` (Greek as math, T1's
    accented letters as they are, the rest as a transliteration or its code
    point), so any text compiles with the packages of a plain TeX Live.
    Control characters are dropped: TeX would read them as invalid input.

    >>> print(tex_escape("100% & \\\\input{x} #1 {"))
    100\\% \\& \\textbackslash{}input\\{x\\} \\#1 \\{
    >>> print(tex_escape("Ελληνικά"))
    E\\ensuremath{\\lambda}\\ensuremath{\\lambda}\\ensuremath{\\eta}\\ensuremath{\\nu}\\ensuremath{\\iota}\\ensuremath{\\kappa}\\ensuremath{\\alpha}
    """
    if isinstance(text, TeX):
        return text
    text = _SPACE_RE.sub(" ", str(text))
    out = []
    for char in text:
        if char in _TEX_SPECIAL:
            out.append(_TEX_SPECIAL[char])
        elif char.isprintable():
            out.append(char if char.isascii() else tex_char(char))
    return TeX("".join(out))


#: A title, a header or a model name longer than this is cut in a document:
#: a title is a line, not a chapter (and TeX's memory is finite).
MAX_TITLE_CHARS = 300


def shortened(text: str, limit: int = MAX_TITLE_CHARS) -> str:
    """User text for a heading: at most ``limit`` characters, an ellipsis where it was cut."""
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "\u2026"


_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|$~])")


def markdown_escape(text) -> TeX:
    """User text as Markdown that prints it literally (no emphasis, links, HTML or math)."""
    if isinstance(text, TeX):
        return text
    text = _SPACE_RE.sub(" ", str(text))
    text = "".join(c for c in text if c.isprintable())
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return TeX(_MD_SPECIAL.sub(r"\\\1", text))


_NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
_RATIONAL_RE = re.compile(r"^(-?)(\d+)/(\d+)$")
_DECIMAL_RE = re.compile(r"^-?\d+(\.\d+)?([eE][-+]?\d+)?$")


def _name_tex(name: str) -> TeX:
    """A variable or density name (``theta``, ``q_phi``) as math, via the SymPy printer."""
    if _NAME_RE.match(name):
        return TeX(latex_str(sp.Symbol(name)))
    return TeX(r"\text{" + tex_escape(name) + "}")


def _number_tex(value: str) -> TeX:
    """A value of a counterexample as math: fractions and decimals as written, anything else as text.

    A probability in a small table reads best as a slashed fraction (``2/13``);
    the patterns admit only digits, signs, dots and slashes.
    """
    value = str(value).strip()
    if _RATIONAL_RE.match(value) or _DECIMAL_RE.match(value):
        return TeX(value)
    return TeX(r"\text{" + tex_escape(value) + "}")


# ---------------------------------------------------------------------------
# long formulas
# ---------------------------------------------------------------------------

_ZERO_WIDTH = {"left", "right", "middle", "operatorname", "mathbb", "mathcal", "mathrm",
               "mathsf", "displaystyle", "big", "Big", "bigg", "Bigg", "limits"}
_COMMAND_RE = re.compile(r"\\([A-Za-z]+|.)")


def _group(tex: str, start: int) -> tuple[str, int]:
    """The brace group (or single token) at ``start``: (its inside, the index after it)."""
    while start < len(tex) and tex[start] == " ":
        start += 1
    if start >= len(tex):
        return "", start
    if tex[start] != "{":
        match = _COMMAND_RE.match(tex, start)
        end = match.end() if match else start + 1
        return tex[start:end], end
    depth = 0
    for index in range(start, len(tex)):
        if tex[index] == "{":
            depth += 1
        elif tex[index] == "}":
            depth -= 1
            if depth == 0:
                return tex[start + 1:index], index + 1
    return tex[start + 1:], len(tex)


def math_width(tex: str) -> float:
    """A rough printed width of a LaTeX formula, in character widths.

    Used only to decide where to break a display; TeX still sets the result.
    Fractions count the wider of their parts; sub- and superscripts count
    smaller; ``\\left``, ``\\operatorname`` and the like count nothing.
    """
    width, index = 0.0, 0
    while index < len(tex):
        char = tex[index]
        if char == "\\":
            match = _COMMAND_RE.match(tex, index)
            name = match.group(1)
            index = match.end()
            if name == "frac":
                num, index = _group(tex, index)
                den, index = _group(tex, index)
                width += max(math_width(num), math_width(den)) + 0.4
            elif name in _ZERO_WIDTH:
                continue
            elif name in (",", ":", ";", "!", " "):
                width += 0.3
            elif name in ("quad",):
                width += 2
            elif name in ("qquad",):
                width += 4
            elif name in ("log", "exp", "sin", "cos"):
                width += len(name) + 0.5
            else:
                width += 1.2
        elif char in "_^":
            inner, index = _group(tex, index + 1)
            width += 0.7 * math_width(inner)
        elif char in "{} ":
            index += 1
        elif char in "+-=<>":
            width += 2.0
            index += 1
        else:
            width += 1.0
            index += 1
    return width


def _top_level_terms(tex: str) -> list[str]:
    """Split ``a + b - c`` as SymPy prints it at ``+``/``-`` outside every bracket.

    Each piece after the first keeps its sign: ``["a", "+ b", "- c"]``.
    """
    pieces, depth, start, index = [], 0, 0, 0
    while index < len(tex):
        if tex.startswith(r"\left", index) and not tex[index + 5:index + 6].isalpha():
            depth += 1
            index += 5
            continue
        if tex.startswith(r"\right", index) and not tex[index + 6:index + 7].isalpha():
            depth -= 1
            index += 6
            continue
        char = tex[index]
        if char == "\\":
            index += 2
            continue
        if char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
        elif depth == 0 and index > 0 and tex[index - 1:index + 2] in (" + ", " - "):
            pieces.append(tex[start:index - 1])
            start = index
        index += 1
    pieces.append(tex[start:])
    return [p.strip() for p in pieces if p.strip()]


def break_lines(tex: str, budget: float = LINE_BUDGET) -> list[TeX]:
    """A formula as one or more lines, broken before top-level ``+``/``-`` to fit ``budget``."""
    if math_width(tex) <= budget:
        return [TeX(tex)]
    lines: list[str] = []
    for term in _top_level_terms(tex):
        if lines and math_width(lines[-1] + " " + term) <= (budget if len(lines) == 1 else budget - 4):
            lines[-1] += " " + term
        else:
            lines.append(term)
    return [TeX(line) for line in lines]


# ---------------------------------------------------------------------------
# view records: what the templates place
# ---------------------------------------------------------------------------

@dataclass(frozen=True)
class StepView:
    relation: TeX
    lines: tuple[TeX, ...]        # the right-hand side, broken into display lines
    verdict: str
    by: tuple[str, ...]
    found: bool                   # the rules were found by the checker, not written
    message: str
    note: tuple[Segment, ...]     # the message as prose: its symbols as math
    line: int
    counterexample: int           # its number among the document's counterexamples, or 0


@dataclass(frozen=True)
class RowView:
    """One display line of a chain: its first expression, a step, or a step's continuation."""

    kind: str                     # "first", "step" or "continued"
    tex: TeX
    step: StepView | None
    last: bool                    # the chain's last display line
    strut: TeX = TeX("")          # on a step's last line: the depth its justification still needs


@dataclass(frozen=True)
class ChainView:
    index: int
    line: int
    first: TeX
    first_alone: bool             # the first expression takes a line of its own
    claim_first: TeX
    claim_relation: TeX
    claim_last: TeX
    claim_fits: bool              # the claim is narrow enough for the chain's heading
    verdict: str
    steps: tuple[StepView, ...]
    rows: tuple[RowView, ...]
    why_width: TeX                # the justification column, as a fraction of \linewidth
    counterexamples: tuple["CounterexampleView", ...]
    note: tuple = ()              # the chain's note as prose (its symbols as math)


@dataclass(frozen=True)
class TableView:
    name: TeX
    head: TeX                     # the density at the table's variables, e.g. p(X, Z)
    columns: tuple[TeX, ...]
    rows: tuple[tuple[TeX, ...], ...]
    note: str = ""                # when rows were left out: how many, and which are shown


@dataclass(frozen=True)
class CounterexampleView:
    index: int
    chain: int
    line: int
    kind: str
    seed: str
    support: tuple[tuple[TeX, tuple[TeX, ...]], ...]
    held: tuple[tuple[TeX, TeX], ...]
    weights: tuple[tuple[TeX, TeX], ...]
    parameters: tuple[tuple[TeX, TeX], ...]
    tables: tuple[TableView, ...]
    lhs: TeX
    rhs: TeX
    relation: TeX


@dataclass(frozen=True)
class RuleView:
    name: str
    relation: TeX
    law: TeX
    conditions: str
    condition_segments: tuple[Segment, ...]   # the side conditions as prose, symbols as math


@dataclass(frozen=True)
class DocumentView:
    title: str
    name: str
    headers: tuple[tuple[str, str], ...]
    verdict: str
    counts: tuple[tuple[int, str], ...]
    setting: tuple[tuple[Segment, ...], ...]
    chains: tuple[ChainView, ...]
    counterexamples: tuple[CounterexampleView, ...]
    rules: tuple[RuleView, ...]
    verdicts: tuple[str, ...] = field(default=VERDICTS)


def _walk(expr):
    yield expr
    if not isinstance(expr, Density):
        for arg in expr.args:
            yield from _walk(arg)


def _expressions(derivation):
    for chain in derivation.chains:
        yield chain.first
        for step in chain.steps:
            yield step.rhs


def variable_order(derivation) -> tuple:
    """The order in which a document lists a density's variables: the observed, then the latent.

    As PRML writes ``p(X, Z)``: one document never mixes ``p(Z, X)`` and ``p(X, Z)``.
    """
    observed, latent = _observed_latent(derivation)[:2]
    return tuple(observed + latent)


def _observed_latent(derivation):
    """(observed, latent, densities by key, variational keys) of the densities a derivation uses."""
    uses: dict[str, list[Density]] = {}
    variational: list[str] = []
    bound: list = []

    def note_bound(symbols):
        bound.extend(s for s in symbols if s not in bound)

    for expr in _expressions(derivation):
        for node in _walk(expr):
            if isinstance(node, Density):
                forms = uses.setdefault(node.key, [])
                if node not in forms:
                    forms.append(node)
            elif isinstance(node, (Expectation, Entropy)):
                note_bound(node.density.variables)
                if node.density.key not in variational:
                    variational.append(node.density.key)
            elif isinstance(node, (KL, ELBO)):
                q = node.args[0]
                note_bound(q.variables)
                if q.key not in variational:
                    variational.append(q.key)
            elif isinstance(node, Marginal):
                note_bound([node.variable])
    order: list = []
    for forms in uses.values():
        for form in forms:
            order.extend(s for s in form.variables + form.given if s not in order)
    observed = [s for s in order if s not in bound]
    latent = [s for s in order if s in bound]
    return observed, latent, uses, variational, bound


def _setting(derivation) -> tuple[tuple[Segment, ...], ...]:
    """The model and variational family in words, from the densities the derivation uses;
    then what ``\\mathcal{L}`` and KL stand for, where the derivation writes them, before a
    claim uses them (PRML 10.1 defines both in (10.3) and (10.4) before it bounds anything)."""
    observed, latent, uses, variational, bound = _observed_latent(derivation)
    if not bound:
        return ()
    order = observed + latent
    tex = lambda expr: latex_str(expr, order)

    def math(expr) -> Segment:
        return Segment(tex(expr), True)

    def listing(symbols) -> list[Segment]:
        out: list[Segment] = []
        for index, symbol in enumerate(symbols):
            if index:
                out.append(Segment(" and " if index == len(symbols) - 1 else ", "))
            out.append(math(symbol))
        return out

    sentences = []
    hypotheses = derivation.hypotheses
    for key, forms in uses.items():
        if hypotheses.definition(key) is not None:
            continue   # said below, by its definition
        head = forms[0]
        variables = [s for s in order if any(s in f.variables or s in f.given for f in forms)]
        seen_observed = [s for s in variables if s in observed]
        seen_latent = [s for s in variables if s in latent]
        is_variational = key in variational and not seen_observed
        if is_variational:
            shown = Density(head.args[0], seen_latent, (), head.params, evaluate=False)
            words = [math(shown), Segment(": a variational density over the latent ")]
            words += listing(seen_latent)
            if head.params:
                words.append(Segment(", with variational parameter" + ("s " if len(head.params) > 1 else " ")))
                words += listing(list(head.params))
        else:
            shown = Density(head.args[0], seen_observed + seen_latent, (), head.params, evaluate=False)
            if seen_observed and seen_latent:
                words = [math(shown), Segment(": a joint density of the observed ")]
                words += listing(seen_observed)
                words.append(Segment(" and the latent "))
                words += listing(seen_latent)
            else:
                words = [math(shown), Segment(": a density over ")]
                words += listing(seen_observed + seen_latent)
            derived = [f for f in forms if set(f.variables) | set(f.given) != set(variables) or f.given]
            for index, form in enumerate(derived):
                if index == 0:
                    words.append(Segment(", with "))
                else:
                    words.append(Segment(" and " if index == len(derived) - 1 else ", "))
                words.append(Segment("its "))
                words.append(Segment(_role(form, observed, latent) + " "))
                words.append(math(form))
        sentences.append(tuple(words))
    sentences.extend(_hypotheses(hypotheses, tex))
    sentences.extend(_definitions(derivation, tex))
    return tuple(sentences)


def _carried_const(chain) -> str:
    """`` + const`` when the chain holds up to a constant from an earlier step on but its
    last side does not write it (later ``=`` steps keep the reading)."""
    from symelbo.core.notation import split_const
    carried = any(s.relation == "=" and s.constant_in for s in chain.steps)
    if carried and not split_const(chain.last)[1] and not split_const(chain.first)[1]:
        return r" + \text{const}"
    return ""


def _hypotheses(hypotheses, tex) -> list[tuple[Segment, ...]]:
    """A sentence for each assume: and define: header, as a textbook states them."""
    out = []
    for fact in hypotheses.factorisations:
        product = sp.Mul(*fact.factors, evaluate=False)
        words = (" (mean field: the factors are independent)"
                 if all(not f.given for f in fact.factors) and not fact.left.given else "")
        out.append((Segment("assumed: "), Segment(tex(fact.left) + " = " + tex(product), True),
                    Segment(words)))
    for definition in hypotheses.definitions:
        if definition.normalised:
            formula = tex(definition.head) + r" \propto " + tex(definition.body)
            out.append((Segment("defined: "), Segment(formula, True),
                        Segment(": the density over "),
                        Segment(", ".join(tex(v) for v in definition.variables), True),
                        Segment(" proportional to the right side, normalised")))
        else:
            formula = tex(definition.head) + " = " + tex(definition.body)
            out.append((Segment("defined: "), Segment(formula, True)))
    return out


def _definitions(derivation, tex) -> list[tuple[Segment, ...]]:
    """A sentence for each ELBO and KL divergence the derivation writes: its definition."""
    seen: list = []
    for expr in _expressions(derivation):
        for node in _walk(expr):
            if isinstance(node, (ELBO, KL)) and node not in seen:
                seen.append(node)
    out = []
    for node in seen:
        first, second = node.args
        if isinstance(node, ELBO):
            body = sp.log(sp.Mul(second, sp.Pow(first, -1, evaluate=False), evaluate=False),
                          evaluate=False)
            formula = tex(node) + " = " + tex(Expectation(first, body))
            words = "the evidence lower bound of "
        else:
            body = sp.log(sp.Mul(first, sp.Pow(second, -1, evaluate=False), evaluate=False),
                          evaluate=False)
            formula = tex(node) + " = " + tex(Expectation(first, body))
            words = "the Kullback\u2013Leibler divergence of "
        sentence = (Segment(formula, True), Segment(": " + words), Segment(tex(first), True))
        if isinstance(node, KL):
            sentence += (Segment(" from "), Segment(tex(second), True))
        out.append(sentence)
    return out


def _role(form: Density, observed, latent) -> str:
    variables, given = set(form.variables), set(form.given)
    if given:
        if variables <= set(latent) and given <= set(observed):
            return "posterior"
        if variables <= set(observed) and given <= set(latent):
            return "likelihood"
        return "conditional"
    if variables <= set(observed):
        return "evidence"
    if variables <= set(latent):
        return "prior"
    return "marginal"


def _counterexample_view(cx: dict, index: int, chain: int, line: int,
                         order=()) -> CounterexampleView:
    """A counterexample's view; its tables' columns in the document's variable ``order``."""
    rank = {str(symbol): position for position, symbol in enumerate(order)}
    pairs = lambda mapping: tuple((_name_tex(k), _number_tex(v)) for k, v in (mapping or {}).items())
    tables = []
    for name, all_rows in cx.get("densities", {}).items():
        rows = rows_that_matter(all_rows, cx.get("held") or {})
        note = omitted_rows_note(len(rows), len(all_rows)) if len(rows) < len(all_rows) else ""
        written = list(rows[0]["at"]) if rows else []
        columns = tuple(sorted(written, key=lambda c: (rank.get(c, len(rank)), written.index(c))))
        if _NAME_RE.match(name) and all(_NAME_RE.match(c) for c in columns):
            head = TeX(latex_str(Density(sp.Symbol(name), [sp.Symbol(c) for c in columns],
                                         evaluate=False)))
        else:
            head = _name_tex(name)
        tables.append(TableView(
            _name_tex(name), head, tuple(_name_tex(c) for c in columns),
            tuple(tuple(_number_tex(row["at"][c]) for c in columns) + (_number_tex(row["value"]),)
                  for row in rows), note))
    return CounterexampleView(
        index=index, chain=chain, line=line, kind=str(cx.get("kind", "")), seed=str(cx.get("seed", "")),
        support=tuple((_name_tex(v), tuple(_number_tex(p) for p in points))
                      for v, points in cx.get("support", {}).items()),
        held=pairs(cx.get("held")), weights=pairs(cx.get("weights")),
        parameters=pairs(cx.get("parameters")), tables=tuple(tables),
        lhs=_number_tex(cx.get("lhs", "")), rhs=_number_tex(cx.get("rhs", "")),
        relation=TeX(RELATION_TEX.get(cx.get("relation", "="), "=")))


def _note(step_result) -> str:
    """What to say under a step's justification: why it is not proved, if that adds anything."""
    if step_result.verdict == "proved":
        return ""
    if step_result.reason == "counterexample":   # the counterexample says it all
        return ""
    return step_result.message


def _rule_names() -> frozenset:
    """The rule names prose sets as rule names ("algebra" is also a word: it stays one)."""
    from symelbo.core.rules import RULES
    return frozenset(name for name in RULES if name != "algebra")


#: Characters of a justification per line of its column (\\small sans serif in
#: 0.38 of a 16 cm line, less the mark's 1.2em), and of its message (\\footnotesize);
#: on the low side, so that the depth reserved is rather too much than too little.
_WHY_CHARS, _NOTE_CHARS = 32, 38
#: Points: a line of the justification (\\small), and the least a display line adds.
_WHY_LINE_PT, _DISPLAY_LINE_PT = 12.5, 16.0


def _why_lines(step: StepView) -> int:
    """About how many lines a step's justification takes in its column."""
    text = (("found: " if step.found else "by ") + ", ".join(step.by)) if step.by else ""
    if step.verdict == "proved" and not step.by:
        text = "by algebra"
    if step.verdict != "proved":
        text += ("; " if text else "") + step.verdict + (
            f": see counterexample {step.counterexample}" if step.counterexample else "")
    lines = -(-len(text) // _WHY_CHARS)
    return lines + (-(-len(step.message) // _NOTE_CHARS) if step.message else 0)


def _strut(step: StepView) -> TeX:
    """What a step's last display line must reach down to, under its justification.

    The justification is smashed (its depth does not push the step's next
    line down, away from its first) and this strut reserves what the step's own
    lines do not cover, so that it never runs into the next step's.
    """
    lines = _why_lines(step)
    depth = (lines - 1) * _WHY_LINE_PT + 3 - (len(step.lines) - 1) * _DISPLAY_LINE_PT
    return TeX(rf"\rule[-{depth:.1f}pt]{{0pt}}{{{depth:.1f}pt}}" if lines > 1 and depth > 0 else "")


def _rows(first: TeX, steps, first_lines=None) -> tuple[RowView, ...]:
    """The display lines of a chain; ``first_lines``: its first expression, broken (set alone)."""
    first_lines = first_lines or [first]
    rows = [RowView("first", first_lines[0], None, not steps and len(first_lines) == 1)]
    rows += [RowView("continued", line, None, False) for line in first_lines[1:]]
    for step in steps:
        for index, line in enumerate(step.lines):
            last_line = index == len(step.lines) - 1
            rows.append(RowView("continued" if index else "step", line, step, False,
                                _strut(step) if last_line else TeX("")))
    rows[-1] = RowView(rows[-1].kind, rows[-1].tex, rows[-1].step, True, rows[-1].strut)
    return tuple(rows)


def document_view(result, name: str | None = None) -> DocumentView:
    """The view records of a checked derivation: every formula printed, nothing laid out."""
    from symelbo.core.rules import RULES

    derivation = result.derivation
    # a line number points into the reader's file; a built-in derivation has none to show
    shown = (lambda line: line) if derivation.path else (lambda line: 0)
    order = variable_order(derivation)
    tex = lambda expr: latex_str(expr, order)
    names = _rule_names()
    prose = lambda text: prose_segments(text, names, order)
    firsts = [tex(chain_result.chain.first) for chain_result in result.chains]
    # one decision for the whole document, so that its chains look alike
    first_alone = any(math_width(first) > FIRST_BUDGET for first in firsts)
    chains, counterexamples, used = [], [], []
    for chain_index, chain_result in enumerate(result.chains, start=1):
        chain = chain_result.chain
        first = firsts[chain_index - 1]
        budget = LINE_BUDGET - 3 if first_alone else LINE_BUDGET - math_width(first)
        budget = max(budget, LINE_BUDGET / 2)
        steps, chain_cx = [], []
        for step_result in chain_result.steps:
            step = step_result.step
            by = step.by or step_result.found_by
            used.extend(n for n in by if n in RULES and n not in used)
            cx_index = 0
            if step_result.counterexample:
                cx_index = len(counterexamples) + 1
                counterexamples.append(_counterexample_view(
                    step_result.counterexample, cx_index, chain_index, shown(step.line), order))
                chain_cx.append(counterexamples[-1])
            steps.append(StepView(
                relation=TeX(RELATION_TEX[step.relation]),
                lines=tuple(break_lines(tex(step.rhs), budget)),
                verdict=step_result.verdict, by=tuple(by),
                found=not step.by and bool(step_result.found_by),
                message=_note(step_result), note=prose(_note(step_result)),
                line=shown(step.line), counterexample=cx_index))
        chains.append(ChainView(
            index=chain_index, line=shown(chain.line), first=TeX(first), first_alone=first_alone,
            claim_first=TeX(first), claim_relation=TeX(RELATION_TEX[chain.relation]),
            claim_last=TeX(tex(chain.last) + _carried_const(chain)),
            claim_fits=math_width(first) + math_width(tex(chain.last)) + 2 <= CLAIM_BUDGET,
            verdict=chain_result.verdict, steps=tuple(steps),
            rows=_rows(TeX(first), steps, break_lines(first, LINE_BUDGET) if first_alone else None),
            note=prose(chain.note) if chain.note else (),
            why_width=TeX(WHY_WIDTH),
            counterexamples=tuple(chain_cx)))
    counts = Counter(s.verdict for c in result.chains for s in c.steps)
    rules = tuple(RuleView(n, TeX(RELATION_TEX.get(RULES[n].relation, "=")), TeX(RULES[n].law),
                           RULES[n].conditions, prose(RULES[n].conditions)) for n in used)
    headers = tuple((shortened(str(k)), shortened(str(v)))
                    for k, v in derivation.headers.items() if k != "title")
    return DocumentView(
        title=shortened(derivation.title or name or "A derivation"), name=shortened(name or ""),
        headers=headers, verdict=result.verdict,
        counts=tuple((counts[v], v) for v in VERDICTS
                     if counts[v]),
        setting=_setting(derivation), chains=tuple(chains),
        counterexamples=tuple(counterexamples), rules=rules)


# ---------------------------------------------------------------------------
# the jinja2 environments
# ---------------------------------------------------------------------------

def _load_template(name: str):
    try:
        source = data_dir("templates").joinpath(name).read_text(encoding="utf-8")
    except (FileNotFoundError, IsADirectoryError):
        return None
    return source, None, lambda: True


def _finalize_with(escape):
    def finalize(value):
        if isinstance(value, TeX):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return TeX(str(value))
        return escape(value)
    return finalize


#: Each verdict's glyph (symelbo.core.verdicts) as documents write it: in TeX text, in
#: TeX math (also Markdown's math), and in Markdown text.
MARKS = {
    "tex_text": {"check": r"$\checkmark$", "bang": r"\textbf{!}", "cross": r"$\times$",
                 "query": r"\textbf{?}"},
    "math": {"check": r"\checkmark", "bang": r"\mathbf{!}", "cross": r"\times", "query": r"\mathbf{?}"},
    "md_text": {"check": "\u2713", "bang": "**!**", "cross": "\u00d7", "query": "**?**"},
}


def verdict_mark(verdict: str, style: str) -> TeX:
    """The mark of ``verdict`` in ``style`` (a key of :data:`MARKS`); nothing for no verdict."""
    return TeX(MARKS[style][VERDICT[verdict].glyph] if verdict else "")


def _common(env: jinja2.Environment) -> jinja2.Environment:
    # the output of a macro of these templates is layout whose user text was escaped inside it
    env.filters["layout"] = lambda text: TeX(str(text).strip())
    env.filters["mark"] = verdict_mark
    return env


@lru_cache(maxsize=1)
def latex_environment() -> jinja2.Environment:
    """The sandboxed LaTeX environment: ``\\VAR{}``, ``\\BLOCK{}``, ``%#`` comments, escape by default."""
    env = ImmutableSandboxedEnvironment(
        loader=jinja2.FunctionLoader(_load_template),
        block_start_string=r"\BLOCK{", block_end_string="}",
        variable_start_string=r"\VAR{", variable_end_string="}",
        comment_start_string=r"\#{", comment_end_string="}",
        line_comment_prefix="%#", line_statement_prefix="%%",
        trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True,
        autoescape=False, undefined=jinja2.StrictUndefined,
        finalize=_finalize_with(tex_escape))
    env.filters["tex"] = tex_escape
    env.filters["breakable"] = breakable_name
    return _common(env)


def breakable_name(name) -> TeX:
    """A name such as ``definition_expectation`` as TeX text that may break after its underscores.

    For narrow table columns: a long rule name set in a font narrower or
    wider than Latin Modern must not stick out of its column.
    """
    return TeX(tex_escape(name).replace(r"\_", r"\_\allowbreak{}"))


@lru_cache(maxsize=1)
def markdown_environment() -> jinja2.Environment:
    """The sandboxed Markdown environment: user text is Markdown-escaped by default."""
    env = ImmutableSandboxedEnvironment(
        loader=jinja2.FunctionLoader(_load_template),
        trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True,
        autoescape=False, undefined=jinja2.StrictUndefined,
        finalize=_finalize_with(markdown_escape))
    env.filters["tex"] = tex_escape
    env.filters["md"] = markdown_escape
    env.filters["prose"] = markdown_prose
    return _common(env)


#: What prose mid-line needs escaped in Markdown: emphasis, code, tables, math and HTML.
#: Not parentheses (``\(`` opens math in Jupyter) nor ``>`` (no HTML starts with it).
_PROSE_SPECIAL = re.compile(r"([\\`*_{}|$])")


def markdown_prose(text) -> TeX:
    """Text set in the middle of a Markdown line (a message, a side condition), escaped lightly:
    ``p(X) > 0`` stays ``p(X) > 0``; brackets become entities, which no renderer
    reads as a link and MathJax does not read as ``\\[`` math."""
    if isinstance(text, TeX):
        return text
    text = "".join(c for c in _SPACE_RE.sub(" ", str(text)) if c.isprintable())
    text = text.replace("&", "&amp;").replace("<", "&lt;")
    text = _PROSE_SPECIAL.sub(r"\\\1", text)
    return TeX(text.replace("[", "&#91;").replace("]", "&#93;"))



# ---------------------------------------------------------------------------
# public entry points
# ---------------------------------------------------------------------------

def render(result, fmt: str, name: str | None = None, fragment: bool = False) -> str:
    """A checked derivation (a :class:`~symelbo.core.checker.CheckResult`) as a document.

    ``fmt``: ``"latex"`` (a full article, or with ``fragment=True`` only the
    ``align*`` blocks, for ``\\input`` into a paper) or ``"markdown"`` (``$$``
    math, for GitHub and notebooks). The same input gives the same bytes.
    """
    return _render_view(lambda: document_view(result, name), fmt, fragment,
                        ("document.tex.j2", "fragment.tex.j2", "document.md.j2"))


def _render_view(make_view, fmt: str, fragment: bool, templates) -> str:
    """Render a view with its (article, fragment, Markdown) templates in the format asked for."""
    article, piece, markdown = templates
    if fmt == "latex":
        template = piece if fragment else article
        return fold_tex_lines(_tidy(latex_environment().get_template(template).render(doc=make_view())))
    if fmt == "markdown":
        return _tidy(markdown_environment().get_template(markdown).render(doc=make_view()))
    raise ValueError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")


def _tidy(text: str) -> str:
    """No blank lines at the start, no runs of blank lines, one newline at the end."""
    text = re.sub(r"\n{3,}", "\n\n", text.strip("\n"))
    return text + "\n"


#: The longest line of LaTeX written. TeX reads a line into a buffer of
#: 200,000 characters and gives up on a longer one (a formula over a very
#: long variable name); a short limit also keeps the source readable.
TEX_LINE_LIMIT = 1000


def _comment_start(line: str) -> int:
    """The index of the ``%`` that starts the line's comment, or the line's length."""
    index = 0
    while index < len(line):
        if line[index] == "\\":
            index += 2
            continue
        if line[index] == "%":
            return index
        index += 1
    return len(line)


def _split_point(line: str, limit: int) -> int:
    """Where ``%`` + newline may go, at most ``limit`` characters in, without changing the meaning.

    TeX drops ``%``, the line end and the next line's leading spaces, so a
    split must not fall before a space, after a backslash or inside a
    command's name. Returns 0 when there is no such point.
    """
    for index in range(min(limit, len(line) - 1), 0, -1):
        after, before = line[index], line[index - 1]
        if after == " " or before == "\\":
            continue
        if after.isalpha() and before.isalpha():
            start = index - 1
            while start > 0 and line[start - 1].isalpha():
                start -= 1
            if start > 0 and line[start - 1] == "\\":
                continue  # inside a command's name
        return index
    return 0


def fold_tex_lines(text: str, limit: int = TEX_LINE_LIMIT) -> str:
    """LaTeX with every line longer than ``limit`` folded with ``%`` line ends; TeX reads the same.

    A comment line stays a comment: its continuations start with ``%`` too.
    """
    out = []
    for line in text.split("\n"):
        comment = _comment_start(line)
        while len(line) > limit:
            if comment == 0:  # a whole-line comment: continue it as a comment
                out.append(line[:limit])
                line = "% " + line[limit:]
                continue
            point = _split_point(line, min(limit, comment))
            if point == 0:
                break
            out.append(line[:point] + "%")
            line = line[point:]
            comment = _comment_start(line)
        out.append(line)
    return "\n".join(out)


def latex_repr(result) -> str:
    """``_repr_latex_``: the chains as one ``$$\\begin{aligned}...\\end{aligned}$$`` for MathJax."""
    view = document_view(result)
    return latex_environment().get_template("aligned.tex.j2").render(doc=view).strip() + "\n"


def markdown_repr(result) -> str:
    """``_repr_markdown_``: the Markdown document."""
    return render(result, "markdown")


# ---------------------------------------------------------------------------
# an instantiated derivation (symelbo derive NAME --model FILE.toml)
# ---------------------------------------------------------------------------

class _ClosedFormPrinter(NotationLatexPrinter):
    """LaTeX of a model's closed forms: ``\\psi``, ``\\psi'`` and ``\\log\\Gamma`` for the special functions.

    SymPy prints ``polygamma(0, x)`` as ``\\operatorname{polygamma}{\\left(0,x \\right)}``
    and ``loggamma(x)`` as ``\\operatorname{loggamma}``; a reader expects the
    digamma and trigamma functions and the log-gamma function by their names.
    Arguments keep ``\\left( ... \\right)`` so that :func:`break_lines` never
    splits inside them.
    """

    def _call(self, head: str, arg, exp=None) -> str:
        # braced, the argument is an ordinary atom: no space between the name and "("
        text = head + r"{\left(" + self._print(arg) + r"\right)}"
        return text if exp is None else r"\left(" + text + r"\right)^{" + str(exp) + "}"

    def _print_polygamma(self, expr, exp=None):
        order, arg = expr.args
        primes = {0: r"\psi", 1: r"\psi'", 2: r"\psi''"}
        head = primes.get(int(order), r"\psi^{(" + self._print(order) + ")}") \
            if order.is_Integer else r"\psi^{(" + self._print(order) + ")}"
        return self._call(head, arg, exp)

    def _print_loggamma(self, expr, exp=None):
        return self._call(r"\log\Gamma", expr.args[0], exp)

    def _print_gamma(self, expr, exp=None):
        return self._call(r"\Gamma", expr.args[0], exp)


_CLOSED = _ClosedFormPrinter({"order": None})

#: :func:`math_width` units that fit in the closed-form column (``\small``,
#: 10pt in an 11pt article, 16 cm text block less a 7.5em label column):
#: about 78 units per line width, measured on pdflatex output.
CLOSED_BUDGET = 63.0
#: Beyond this many top-level terms a closed form is shown collected by its
#: special functions and logarithms (the same expression, fewer terms).
_COLLECT_ATOMS = (sp.polygamma, sp.loggamma, sp.gamma, sp.log)


def _collected(expr):
    """The closed form with the terms of each special function or logarithm gathered.

    ``-a psi(alpha) + alpha psi(alpha) - 4 psi(alpha)`` reads
    ``(alpha - a - 4) psi(alpha)``: the same expression, printed shorter.
    """
    if not isinstance(expr, sp.Expr) or not expr.is_Add:
        return expr
    atoms = sorted(expr.atoms(*_COLLECT_ATOMS), key=sp.default_sort_key)
    if not atoms:
        return expr
    try:
        collected = sp.collect(expr, atoms)
    except Exception:  # collect gives up on some nested forms: print as it is
        return expr
    return collected if len(sp.Add.make_args(collected)) < len(expr.args) else expr


def closed_latex(expr) -> str:
    """A closed form (a SymPy expression) as LaTeX, for a reader."""
    return _CLOSED.doprint(_collected(expr))


@dataclass(frozen=True)
class ClosedView:
    """One closed form, broken into display lines; ``label`` names a gradient's component."""

    label: str
    lines: tuple[TeX, ...]


@dataclass(frozen=True)
class InstRowView:
    kind: str                     # "first" or "step"
    line: int
    relation: TeX
    abstract: TeX
    closed: tuple[ClosedView, ...]
    closed_as_above: bool         # the same closed form as the line above
    is_gradient: bool
    value: TeX                    # math; empty when there is no value
    value_display: TeX            # the same, without break points (for MathJax)
    verdict: str
    message: str


@dataclass(frozen=True)
class InstChainView:
    index: int
    first: TeX
    relation: TeX                 # the chain's claim, or empty when its steps disagree in direction
    last: TeX
    verdict: str
    rows: tuple[InstRowView, ...]


@dataclass(frozen=True)
class InstantiationView:
    title: str
    model: str
    derivation: str
    verdict: str
    counts: tuple[tuple[int, str], ...]
    chains: tuple[InstChainView, ...]


def _float_tex(value) -> TeX:
    """A value as math: 12 significant digits, ``1.5 \\times 10^{-7}`` for an exponent."""
    if value is None:
        return TeX(r"\text{?}")
    if isinstance(value, float) and (value != value or value in (float("inf"), float("-inf"))):
        return TeX(r"\text{" + tex_escape(str(value)) + "}")
    text = f"{value:.12g}"
    if "e" in text:
        mantissa, exponent = text.split("e")
        text = rf"{mantissa} \times 10^{{{int(exponent)}}}"
    return TeX(text)


def _value_tex(value, breakable: bool = True) -> TeX:
    """A value as math; a vector in plain parentheses, breakable after its commas in running text."""
    if value is None:
        return TeX("")
    if isinstance(value, list):
        comma = r",\allowbreak\ " if breakable else r",\ "
        return TeX("(" + comma.join(_float_tex(v) for v in value) + ")")
    return _float_tex(value)


def _component_label(parameters, index: int) -> TeX:
    """``∂/∂alpha`` for a gradient's component, or its number when the parameters are unknown."""
    if index <= len(parameters):
        name = latex_str(sp.Symbol(parameters[index - 1]))
        return TeX(rf"$\partial/\partial {name}$")
    return TeX(f"component {index}")


def _closed_views(closed, budget: float, parameters=()) -> tuple[ClosedView, ...]:
    if closed is None:
        return ()
    if isinstance(closed, list):
        return tuple(ClosedView(_component_label(parameters, index),
                                tuple(break_lines(closed_latex(c), budget)))
                     for index, c in enumerate(closed, start=1))
    return (ClosedView("", tuple(break_lines(closed_latex(closed), budget))),)


def _claim(relations) -> str:
    """The relation of a chain's claim, or "" when its steps mix directions."""
    try:
        return compose(relations)
    except MixedDirections:
        return ""


def _same_closed(a, b) -> bool:
    if a is None or b is None:
        return False
    if isinstance(a, list) != isinstance(b, list):
        return False
    if isinstance(a, list):
        return len(a) == len(b) and all(x == y for x, y in zip(a, b))
    return a == b


def instantiation_view(inst, budget: float = CLOSED_BUDGET) -> InstantiationView:
    """The view records of an :class:`~symelbo.models.instantiate.Instantiation`: every formula printed."""
    chains = []
    for index, chain in enumerate(inst.chains, start=1):
        rows, previous = [], None
        for position, step in enumerate(chain):
            abstract = step.abstract_latex or r"\text{" + tex_escape(step.abstract) + "}"
            same = position > 0 and _same_closed(previous, step.closed)
            rows.append(InstRowView(
                kind="step" if position else "first", line=step.line,
                relation=TeX(RELATION_TEX.get(step.relation, "")),
                abstract=TeX(abstract),
                closed=() if same else _closed_views(step.closed, budget, inst.parameters),
                closed_as_above=same, is_gradient=isinstance(step.closed, list),
                value=_value_tex(step.value), value_display=_value_tex(step.value, False),
                verdict=step.verdict, message=step.message))
            previous = step.closed
        verdicts = [s.verdict for s in chain[1:] if s.verdict]
        last = chain[-1]
        chains.append(InstChainView(
            index=index, first=TeX(chain[0].abstract_latex or tex_escape(chain[0].abstract)),
            relation=TeX(RELATION_TEX.get(_claim(s.relation for s in chain[1:]), "")),
            last=TeX(last.abstract_latex or tex_escape(last.abstract)),
            verdict=weakest(verdicts) if verdicts else "", rows=tuple(rows)))
    counts = Counter(s.verdict for chain in inst.chains for s in chain[1:])
    return InstantiationView(
        title=shortened(inst.title or inst.name), model=shortened(inst.model_name),
        derivation=inst.name,
        verdict=inst.verdict if counts else "",
        counts=tuple((counts[v], v) for v in VERDICTS
                     if counts[v]),
        chains=tuple(chains))


def render_instantiation(inst, fmt: str, fragment: bool = False) -> str:
    """An instantiated derivation (:func:`symelbo.models.instantiate.instantiate`) as a document.

    Each line shows its abstract form, its closed form on the model and its
    value at the model's ``[values]``; each step its relation, verdict and
    message. ``fmt``: ``"latex"`` (a full article, or with ``fragment=True``
    the chains only, for ``\\input``) or ``"markdown"``.
    """
    return _render_view(lambda: instantiation_view(inst), fmt, fragment,
                        ("instantiation.tex.j2", "instantiation_fragment.tex.j2", "instantiation.md.j2"))
