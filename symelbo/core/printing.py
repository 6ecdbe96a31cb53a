"""Printing expressions as written: ``.calc`` text and LaTeX, terms in their stored order.

Parsed and generated expressions are built unevaluated, so their terms are
stored in the order a person wrote them; ``order="none"`` keeps that order.

The LaTeX printed here compiles with the packages of a plain TeX Live
(``texlive-latex-base`` and ``-recommended``: amsmath, amssymb, the T1 and
TS1 encodings): ``\\mathscr`` (SymPy's ``Xscr``), whose fonts that
installation lacks, is printed ``\\mathcal``, and a character outside
ASCII goes through :func:`tex_char`, which the text filter of
:mod:`symelbo.io.render` shares.
"""

from __future__ import annotations

import unicodedata

import sympy as sp
from sympy.printing.latex import LatexPrinter
from sympy.printing.str import StrPrinter

__all__ = ["calc_str", "latex_str", "calc_text", "tex_char", "NotationLatexPrinter"]


class _CalcPrinter(StrPrinter):
    """The ``.calc`` syntax: what it prints, the parser reads back."""

    def _print_log(self, expr):
        from symelbo.core.notation import Defined, Density
        if isinstance(expr.args[0], (Density, Defined)):  # the file format's `log p(X)`
            return f"log {self._print(expr.args[0])}"
        return f"log({self._print(expr.args[0])})"

    def _print_exp(self, expr):
        return f"exp({self._print(expr.args[0])})"


_CALC = _CalcPrinter({"order": "none"})


def calc_str(expr: sp.Expr) -> str:
    """``expr`` in ``.calc`` syntax."""
    return _CALC.doprint(expr)


# ---------------------------------------------------------------------------
# characters outside ASCII
# ---------------------------------------------------------------------------

#: The characters pdflatex sets in text from UTF-8 input with the T1 and TS1
#: encodings alone (``utf8.def`` with ``t1enc.dfu`` and ``ts1enc.dfu``):
#: Latin-1, most of Latin Extended-A, dashes, quotes, a few signs. Each was
#: checked in roman, bold, italic, typewriter and sans serif.
_T1_RANGES = (
    (0x00A1, 0x00AC), (0x00AE, 0x0125), (0x0128, 0x0137), (0x0139, 0x013E), (0x0141, 0x0148),
    (0x014A, 0x0165), (0x0168, 0x017E), (0x0192, 0x0192), (0x01C4, 0x01D4), (0x01E2, 0x01E3),
    (0x01E6, 0x01EB), (0x01F0, 0x01F0), (0x01F4, 0x01F5), (0x0218, 0x021B), (0x0232, 0x0233),
    (0x0237, 0x0237), (0x2010, 0x2016), (0x2018, 0x201A), (0x201C, 0x201E), (0x2020, 0x2022),
    (0x2026, 0x2026), (0x2030, 0x2031), (0x2039, 0x203B), (0x203D, 0x203D), (0x2044, 0x2044),
    (0x204E, 0x204E), (0x2052, 0x2052), (0x20A1, 0x20A1), (0x20A4, 0x20A4), (0x20A6, 0x20A6),
    (0x20A9, 0x20A9), (0x20AB, 0x20AC), (0x20B1, 0x20B1), (0x2103, 0x2103), (0x2116, 0x2117),
    (0x211E, 0x211E), (0x2120, 0x2120), (0x2122, 0x2122), (0x2127, 0x2127), (0x212E, 0x212E),
    (0x2190, 0x2193),
)

#: Greek letters as math commands (amsmath and amssymb); a capital that looks
#: like a Latin one is that Latin letter, as in mathematics.
_GREEK = {
    "\u03b1": r"\alpha", "\u03b2": r"\beta", "\u03b3": r"\gamma", "\u03b4": r"\delta",
    "\u03b5": r"\varepsilon", "\u03b6": r"\zeta", "\u03b7": r"\eta", "\u03b8": r"\theta",
    "\u03b9": r"\iota", "\u03ba": r"\kappa", "\u03bb": r"\lambda", "\u03bc": r"\mu",
    "\u03bd": r"\nu", "\u03be": r"\xi", "\u03bf": "o", "\u03c0": r"\pi", "\u03c1": r"\rho",
    "\u03c2": r"\varsigma", "\u03c3": r"\sigma", "\u03c4": r"\tau", "\u03c5": r"\upsilon",
    "\u03c6": r"\varphi", "\u03c7": r"\chi", "\u03c8": r"\psi", "\u03c9": r"\omega",
    "\u03d1": r"\vartheta", "\u03d5": r"\phi", "\u03d6": r"\varpi", "\u03f0": r"\varkappa",
    "\u03f1": r"\varrho", "\u03f5": r"\epsilon", "\u03dd": r"\digamma",
    "\u0391": "A", "\u0392": "B", "\u0393": r"\Gamma", "\u0394": r"\Delta", "\u0395": "E",
    "\u0396": "Z", "\u0397": "H", "\u0398": r"\Theta", "\u0399": "I", "\u039a": "K",
    "\u039b": r"\Lambda", "\u039c": "M", "\u039d": "N", "\u039e": r"\Xi", "\u039f": "O",
    "\u03a0": r"\Pi", "\u03a1": "P", "\u03a3": r"\Sigma", "\u03a4": "T", "\u03a5": r"\Upsilon",
    "\u03a6": r"\Phi", "\u03a7": "X", "\u03a8": r"\Psi", "\u03a9": r"\Omega",
    "\u2212": "-", "\u00b7": r"\cdot", "\u00d7": r"\times", "\u2264": r"\le", "\u2265": r"\ge",
    "\u221e": r"\infty", "\u2202": r"\partial", "\u2207": r"\nabla", "\u2211": r"\sum",
    "\u222b": r"\int", "\u2248": r"\approx", "\u2260": r"\ne", "\u00b1": r"\pm",
}


def _in_t1(char: str) -> bool:
    code = ord(char)
    return any(low <= code <= high for low, high in _T1_RANGES)


def tex_char(char: str, math: bool = False) -> str:
    """One character outside ASCII as LaTeX that compiles with amsmath, amssymb and T1 alone.

    Greek letters and a few mathematical signs become math commands
    (``\\ensuremath{\\alpha}`` in text); a letter the T1 encoding has stays
    itself (``\\text{é}`` in math); any other character is replaced by its
    compatibility form or its unaccented base letter when it has one
    (``ﬁ`` by ``fi``, ``ǹ`` by ``n``), or else shown as its code point
    (``[U+4E2D]`` in typewriter type): CJK, Cyrillic and most scripts have no
    font in a plain TeX Live.

    >>> tex_char("\u03b8"), tex_char("\u03b8", math=True), tex_char("\u4e2d")
    ('\\\\ensuremath{\\\\theta}', '\\\\theta', '\\\\texttt{[U+4E2D]}\\\\allowbreak{}')
    """
    if char in _GREEK:
        command = _GREEK[char]
        return command if math or not command.startswith("\\") else rf"\ensuremath{{{command}}}"
    if _in_t1(char):
        return rf"\text{{{char}}}" if math else char
    for form in ("NFKD", "NFD"):
        base = "".join(c for c in unicodedata.normalize(form, char) if not unicodedata.combining(c))
        if base and base != char and all(c.isascii() and c.isalnum() or c in _GREEK or _in_t1(c)
                                         for c in base):
            return "".join(c if c.isascii() else tex_char(c, math) for c in base)
    code = rf"\texttt{{[U+{ord(char):04X}]}}"
    # a run of code points (a CJK title) may break between them
    return rf"\text{{{code}}}" if math else code + r"\allowbreak{}"


def _ascii_math(tex: str) -> str:
    """Printed LaTeX with every character outside ASCII (a Unicode symbol name) made safe."""
    if tex.isascii():
        return tex
    out = []
    for char in tex:
        piece = char if char.isascii() else tex_char(char, math=True)
        # a command such as \\Omega must not run into the letters after it
        out.append(piece + " " if piece[-1:].isalpha() and piece.startswith("\\") else piece)
    return "".join(out)


class NotationLatexPrinter(LatexPrinter):
    """SymPy's LaTeX printer, set as a textbook sets the notation.

    - ``\\log p(X)`` for the log of a density or a symbol, and ``\\log \\frac{a}{b}``
      for the log of a quotient: the fraction is its own bracket (PRML 10.1 writes
      ``\\ln\\{p/q\\}``, never ``\\ln((p/q))``).
    - ``\\mathrm{KL}(q \\,\\|\\, p)`` and ``\\mathrm{H}[q]`` with no gap after the name:
      ``\\operatorname`` and ``\\left(`` each add a thin space, which reads as a product;
      the brackets of a density are never tall.
    - with ``variable_order`` (a sequence of symbols), every density lists its
      variables and its conditions in that order (symbols or names), so one document never mixes
      ``p(Z, X)`` and ``p(X, Z)``; symbols not in it keep their place after those in it.

    Everything it prints needs amsmath and amssymb only (see the module's
    docstring); the notation's ``_latex`` hooks print through it.
    """

    def __init__(self, settings=None, variable_order=()):
        super().__init__(settings)
        self._rank = {str(symbol): index for index, symbol in enumerate(variable_order)}
        self._printing: list = []     # the expressions being printed, outermost first

    def doprint(self, expr):
        return _ascii_math(super().doprint(expr))

    def _print(self, expr, **kwargs):
        # the notation's own _latex hooks come first in SymPy's dispatch; a document's
        # typesetting of KL, H and a density's variable order is decided here instead
        from symelbo.core.notation import KL, Density, Entropy
        if isinstance(expr, KL):    # densities are never tall: plain brackets, as PRML sets them
            return rf"\mathrm{{KL}}({self._print(expr.first)} \,\|\, {self._print(expr.second)})"
        if isinstance(expr, Entropy):
            return rf"\mathrm{{H}}[{self._print(expr.density)}]"
        if isinstance(expr, Density) and self._rank:
            ordered = self._ordered(expr.variables), self._ordered(expr.given)
            if ordered != (expr.variables, expr.given):
                # unevaluated: the constructor would sort the names again
                expr = type(expr)(expr.args[0], *ordered, expr.params, evaluate=False)
        self._printing.append(expr)
        try:
            return super()._print(expr, **kwargs)
        finally:
            self._printing.pop()

    def _factor_followed(self, expr) -> bool:
        """Whether ``expr`` is a factor of a product with another factor printed after it."""
        parent = self._printing[-2] if len(self._printing) > 1 else None
        return isinstance(parent, sp.Mul) and parent.args[-1] is not expr

    def _ordered(self, symbols) -> tuple:
        last = len(self._rank)
        return tuple(sorted(symbols, key=lambda s: (self._rank.get(s.name, last), symbols.index(s))))

    def _print_Symbol(self, expr, style="plain"):
        # SymPy prints a name ending in "scr" with \mathscr (mathrsfs, whose fonts a
        # plain TeX Live lacks); \mathcal is the script alphabet amsmath always has
        return super()._print_Symbol(expr, style).replace(r"\mathscr{", r"\mathcal{")

    def _print_exp(self, expr, exp=None):
        """``\\exp\\left(...\\right)`` as PRML sets the exponential of an expectation (10.9);
        ``e^{x}`` only for a lone symbol or number."""
        arg = expr.args[0]
        if arg.is_Atom:
            return super()._print_ExpBase(expr, exp)
        text = rf"\exp\left({self._print(arg)}\right)"
        return text if exp is None else rf"{text}^{{{exp}}}"

    def _print_log(self, expr, exp=None):
        from symelbo.core.notation import Defined, Density
        arg = expr.args[0]
        if isinstance(arg, (Density, Defined, sp.Symbol)):
            text = rf"\log {self._print(arg)}"
        else:
            inner = self._print(arg)
            # "\\log \\frac{a}{b} c" would read as the log of a product: brackets then
            if _is_one_fraction(inner) and not self._factor_followed(expr):
                text = rf"\log {inner}"
            else:
                text = rf"\log\left({inner}\right)"
        return text if exp is None else rf"\log^{{{exp}}} {text[5:]}"


def _is_one_fraction(tex: str) -> bool:
    """Whether ``tex`` is one ``\\frac{...}{...}`` and nothing else."""
    if not tex.startswith(r"\frac{"):
        return False
    index, groups = len(r"\frac"), 0
    while groups < 2:
        if index >= len(tex) or tex[index] != "{":
            return False
        depth = 0
        for end in range(index, len(tex)):
            if tex[end] == "{" and tex[end - 1] != "\\":
                depth += 1
            elif tex[end] == "}" and tex[end - 1] != "\\":
                depth -= 1
                if depth == 0:
                    break
        else:
            return False
        index, groups = end + 1, groups + 1
    return index == len(tex)


_LATEX = NotationLatexPrinter({"order": "none"})


def latex_str(expr: sp.Expr, variable_order=()) -> str:
    """``expr`` as LaTeX, through the notation's printer hooks.

    ``variable_order``: the order in which every density lists its variables
    (see :class:`NotationLatexPrinter`); by default each as it was written.
    """
    if not variable_order:
        return _LATEX.doprint(expr)
    return NotationLatexPrinter({"order": "none"}, variable_order).doprint(expr)


def calc_text(derivation, comment: str = "") -> str:
    """A derivation as a ``.calc`` file: headers, then chains with aligned ``by`` columns."""
    lines = [f"# {line}".rstrip() for line in comment.splitlines()]
    for key, value in derivation.headers.items():
        lines.append(f"{key}: {value}")
    for kind, text in derivation.hypotheses.texts():
        lines.append(f"{kind}: {text}")
    for chain in derivation.chains:
        lines.append("")
        rows = [("", calc_str(chain.first), "")]
        rows += [(s.relation_text, calc_str(s.rhs), ", ".join(s.by)) for s in chain.steps]
        width = max(len(text) for _, text, _ in rows)
        for relation, text, by in rows:
            row = f"{relation:>4} {text}" if relation else f"     {text}"
            if by:
                row = f"{row:<{width + 5}}    by {by}"
            lines.append(row.rstrip())
    return "\n".join(lines) + "\n"
