"""English with mathematics in it, as a document sets it: words in roman, symbols in math.

Side conditions (``p(X) > 0``, ``c does not depend on phi``) and the
checker's messages are plain text; a textbook writes "$p(X) > 0$" and
"$c$ does not depend on $\\phi$". :func:`prose_segments` cuts such a text
into :class:`Segment` pieces: text, math (already printed LaTeX) and rule
names (set in sans serif, as in the rules table). The templates place them
(``$...$`` in LaTeX and Markdown); nothing here is laid out.

What counts as math, conservatively (a word left as text is never wrong):

- a density applied to names, ``p(X, Z)``, ``q(Z | X)``;
- a name a reader takes for a symbol: one letter (but the articles ``a``
  and ``A`` when a word follows, and ``I``), a Greek letter's name, a name
  with a digit or an underscore (``a0``, ``lambda0``);
- ``log`` before such a symbol;
- a comparison (``>``, ``<=``, ``=``, ...) or ``+`` between symbols and numbers,
  together with them: ``a > 0`` is one formula;
- a number only inside such a formula (``24 instances`` stays text).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import sympy as sp
from sympy.printing.latex import greek_letters_set

from symelbo.core.notation import Density
from symelbo.core.printing import latex_str

__all__ = ["Segment", "prose_segments"]


@dataclass(frozen=True)
class Segment:
    """A piece of running prose: text (escaped on output), a formula (``is_math``) or a rule name."""

    text: str
    is_math: bool = False
    is_rule: bool = False


_NAME = r"[A-Za-z][A-Za-z0-9_]*"
_TOKEN_RE = re.compile(
    rf"(?P<density>{_NAME}\(\s*{_NAME}(?:\s*,\s*{_NAME})*(?:\s*\|\s*{_NAME}(?:\s*,\s*{_NAME})*)?\s*\))"
    rf"|(?P<word>{_NAME})"
    r"|(?P<number>\d+(?:\.\d+)?(?![A-Za-z0-9]))"
    r"|(?P<op><=|>=|!=|==|=|<|>|\+)"
    r"|(?P<space>\s+)"
    r"|(?P<other>.)", re.S)

_OPERATORS = {"<=": r"\le", ">=": r"\ge", "!=": r"\ne", "==": "=", "=": "=", "<": "<", ">": ">",
              "+": "+"}
_GREEK = {name for name in greek_letters_set if name != "lamda"} | {"lambda"}
_ARTICLES = {"a", "A", "I"}
#: Words after an article ``a`` that leave it a symbol: ``a and b``, ``a or b``.
_JOINERS = {"and", "or"}


def _symbol_like(word: str) -> bool:
    """Whether a reader takes ``word`` (not an article) for a symbol."""
    if len(word) == 1:
        return True
    stem = re.match(r"[A-Za-z]+", word).group(0)
    if stem in _GREEK or stem.lower() in _GREEK:
        return True
    return len(stem) == 1 and len(word) > 1 and (word[1:].isdigit() or word[1] == "_")


def _density_tex(text: str, variable_order) -> str:
    name, inside = text.split("(", 1)
    inside = inside.rstrip()[:-1]
    variables, _, given = inside.partition("|")
    names = lambda part: [sp.Symbol(v.strip()) for v in part.split(",") if v.strip()]
    return latex_str(Density(sp.Symbol(name), names(variables), names(given), evaluate=False),
                     variable_order)


def prose_segments(text: str, rule_names=(), variable_order=()) -> tuple[Segment, ...]:
    """``text`` as segments: formulas as math, ``rule_names`` as rule names, the rest as text.

    >>> [(s.text, s.is_math) for s in prose_segments("c does not depend on phi")]
    [('c', True), (' does not depend on ', False), ('\\\\phi', True)]
    """
    tokens = [(m.lastgroup, m.group(0)) for m in _TOKEN_RE.finditer(str(text))]
    words = [(i, value) for i, (kind, value) in enumerate(tokens) if kind == "word"]

    def next_word(index):
        return next((value for i, value in words if i > index), "")

    def next_solid(index):
        return next(((kind, value) for kind, value in tokens[index + 1:] if kind != "space"), ("", ""))

    kinds: list[str] = []           # per token: "math", "rule", "text", "space" or "maybe"
    pieces: list[str] = []          # per token: its LaTeX (math) or its text
    for index, (kind, value) in enumerate(tokens):
        if kind == "density":
            kinds.append("math")
            pieces.append(_density_tex(value, variable_order))
        elif kind == "word" and value in rule_names:
            kinds.append("rule")
            pieces.append(value)
        elif kind == "word" and value == "log" and next_solid(index)[0] in ("density", "word") \
                and (next_solid(index)[0] == "density" or _symbol_like(next_solid(index)[1])):
            kinds.append("math")
            pieces.append(r"\log")
        elif kind == "word" and value in _ARTICLES:
            after, solid = next_word(index), next_solid(index)
            is_symbol = solid[0] == "op" or (after in _JOINERS and solid == ("word", after)) \
                or solid[0] in ("other", "") and value != "I"
            kinds.append("math" if is_symbol else "text")
            pieces.append(latex_str(sp.Symbol(value)) if is_symbol else value)
        elif kind == "word" and _symbol_like(value):
            kinds.append("math")
            pieces.append(latex_str(sp.Symbol(value)))
        elif kind in ("op", "number"):
            kinds.append("maybe")
            pieces.append(_OPERATORS.get(value, value))
        else:
            kinds.append("space" if kind == "space" else "text")
            pieces.append(value)

    # an operator joins a formula when a symbol or a number stands on each side of it,
    # and a number when it stands beside such an operator
    solid = [i for i, k in enumerate(kinds) if k != "space"]
    for position, index in enumerate(solid):
        if tokens[index][0] != "op":
            continue
        before = solid[position - 1] if position else None
        after = solid[position + 1] if position + 1 < len(solid) else None
        ok = lambda i: i is not None and (kinds[i] == "math" or tokens[i][0] == "number")
        if ok(before) and ok(after):
            kinds[index] = "math"
            for side in (before, after):
                if tokens[side][0] == "number":
                    kinds[side] = "math"
    for index, kind in enumerate(kinds):
        if kind == "maybe":      # left as it was written
            kinds[index], pieces[index] = "text", tokens[index][1]

    segments: list[Segment] = []
    index = 0
    while index < len(tokens):
        kind = kinds[index]
        if kind == "math":
            end, parts = index, [pieces[index]]
            # a formula runs on over spaces to the next math token
            while True:
                look = end + 1
                while look < len(tokens) and kinds[look] == "space":
                    look += 1
                if look < len(tokens) and kinds[look] == "math" and tokens[look][0] == "op" \
                        or look < len(tokens) and kinds[look] == "math" and tokens[end][0] == "op":
                    parts.append(pieces[look])
                    end = look
                else:
                    break
            segments.append(Segment(" ".join(parts), is_math=True))
            index = end + 1
        elif kind == "rule":
            segments.append(Segment(pieces[index], is_rule=True))
            index += 1
        else:
            if segments and not segments[-1].is_math and not segments[-1].is_rule:
                segments[-1] = Segment(segments[-1].text + pieces[index])
            else:
                segments.append(Segment(pieces[index]))
            index += 1
    return tuple(segments)
