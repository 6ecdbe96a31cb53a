"""Common mistakes in a ``.calc`` line, and the message that names the right spelling.

When a line does not parse, lark knows only where it stopped. This module
looks at the whole line for the mistakes people make when they come from
LaTeX, from another language or from a textbook, and says what to write:

- brackets: an unclosed ``(`` is reported at the ``(``, not where the parser
  gave up (often at ``by``, far to the right); a ``)`` that closes nothing
  and a ``[`` closed by ``)`` likewise;
- TeX commands (``\\log``, ``\\frac``): the ``.calc`` spelling, and where LaTeX
  input goes instead;
- other languages' spellings: ``ln``, ``sqrt``, ``==``, ``=>``, ``KL[...]``,
  ``KL(q || p)`` without variables, ``E_q(Z)[...]``.

Mathematical signs typed as Unicode (``≥``, ``∑``, Greek letters) are named
by :mod:`symelbo.io.characters`. Every function here reads the line only; it
never evaluates anything.
"""

from __future__ import annotations

import re

__all__ = ["bracket_fault", "spelling_fault", "tex_advice", "LATEX_INPUT"]

#: Where LaTeX input goes: the same command on a .tex file.
LATEX_INPUT = "for LaTeX input, check a .tex file: symelbo check FILE.tex"

_OPENERS = {"(": ")", "[": "]", "{": "}"}
_CLOSERS = {v: k for k, v in _OPENERS.items()}


def bracket_fault(content: str) -> tuple[int, str] | None:
    """The first bracket that does not pair up, as ``(column, message)``, or None.

    >>> bracket_fault("log(p(X, Z) = log p(X, Z) by definition_kl")
    (4, "this '(' is never closed")
    >>> bracket_fault("log(sum_Z[p(X, Z))")
    (10, "this '[' is closed by ')' at column 18; write ']'")
    """
    stack: list[tuple[str, int]] = []
    for index, char in enumerate(content):
        if char in _OPENERS:
            stack.append((char, index + 1))
        elif char in _CLOSERS:
            if not stack:
                return index + 1, f"this '{char}' closes nothing"
            opener, column = stack.pop()
            if _OPENERS[opener] != char:
                return column, (f"this '{opener}' is closed by '{char}' at column {index + 1}; "
                                f"write '{_OPENERS[opener]}'")
    if stack:
        opener, column = stack[-1]
        return column, f"this '{opener}' is never closed"
    return None


#: TeX commands and their ``.calc`` spelling.
_TEX = {
    "log": "log p(X) or log(...)", "ln": "log(...)", "exp": "exp(...)", "frac": "(a) / (b)",
    "dfrac": "(a) / (b)", "tfrac": "(a) / (b)", "sum": "sum_Z[...]", "int": "int_Z[...]",
    "mathbb": "E_q[...]", "E": "E_q[...]", "mathrm": "KL(q(Z) || p(Z | X)) or ELBO(q(Z), p(X, Z))",
    "operatorname": "KL(q(Z) || p(Z | X))", "mathcal": "ELBO(q(Z), p(X, Z))",
    "nabla": "grad_phi[...]", "geq": ">=", "ge": ">=", "leq": "<=", "le": "<=", "cdot": "*",
    "times": "*", "mid": "|", "vert": "|", "Vert": "||", "parallel": "||", "sqrt": "(...)^(1/2)",
    "left": "( and ) alone", "right": "( and ) alone",
}
_TEX_COMMAND = re.compile(r"\\([A-Za-z]+)")


def tex_advice(content: str, position: int) -> str | None:
    """A message for TeX at ``position`` (0-based), or None when there is none there."""
    match = _TEX_COMMAND.match(content, position)
    if content[position:position + 1] != "\\":
        return None
    command = match.group(1) if match else ""
    shown = f"'\\{command}'" if command else "'\\'"
    spelling = _TEX.get(command)
    if spelling is None and command and _greek(command):
        spelling = command
    write = f"write {spelling}; " if spelling else ""
    return f"{shown} is LaTeX; this file is in the .calc notation ({write}{LATEX_INPUT})"


def _greek(command: str) -> bool:
    return command.lower().removeprefix("var") in {
        "alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta", "iota", "kappa",
        "lambda", "mu", "nu", "xi", "pi", "rho", "sigma", "tau", "upsilon", "phi", "chi", "psi",
        "omega"}


_NAME = r"[A-Za-z][A-Za-z0-9_]*"

#: (pattern, message) for spellings from elsewhere; the message is made from the match.
_SPELLINGS: tuple[tuple[re.Pattern, object], ...] = tuple((re.compile(p), m) for p, m in (
    (r"==", lambda m: "'==' is not a relation; a step that claims equality is written ="),
    (r"=>", lambda m: "'=>' is not a relation; 'greater than or equal' is written >="),
    (r"=<", lambda m: "'=<' is not a relation; 'less than or equal' is written <="),
    (r"!=|<>|/=", lambda m: f"'{m[0]}' is not a relation; a step's relation is one of "
                            "=, <=, >=, <, >"),
    (r"\bln\b", lambda m: "the natural logarithm is written log, as in log p(X) or log(x)"),
    (r"\bsqrt\b", lambda m: "sqrt is not part of the notation; write (...)^(1/2)"),
    (r"\b(KL|ELBO|log|exp)\s*\[", lambda m: f"{m[1]} takes parentheses, as in {_EXAMPLES[m[1]]}"),
    (rf"\bKL\s*\(\s*({_NAME})\s*(?:\|\||\||,|\))",
     lambda m: f"KL compares densities applied to their variables: write KL({m[1]}(Z) || p(Z | X))"),
    (rf"\bKL\s*\(\s*{_NAME}\s*\([^()]*\)\s*,",
     lambda m: "KL separates its two densities with ||, as in KL(q(Z) || p(Z | X))"),
    (rf"\bELBO\s*\(\s*({_NAME})\s*[,)]",
     lambda m: f"ELBO takes densities applied to their variables: write ELBO({m[1]}(Z), p(X, Z))"),
    (rf"\bELBO\s*\(\s*{_NAME}\s*\([^()]*\)\s*(?:\|\||;)",
     lambda m: "ELBO separates its two densities with a comma, as in ELBO(q(Z), p(X, Z))"),
    (rf"\bE_({_NAME})\s*\(([^()]*)\)\s*\[",
     lambda m: f"a density with its variables goes in braces: write E_{{{m[1]}({m[2]})}}[...], "
               f"or E_{m[1]}[...] for all of {m[1]}'s variables"),
    (rf"\b(sum|int|grad)_({_NAME})\s*\(",
     lambda m: f"{m[1]}_{m[2]} takes brackets, as in {m[1]}_{m[2]}[...]"),
    (rf"\bH\s*\(\s*{_NAME}\s*\(", lambda m: "entropy takes brackets, as in H[q(Z)]"),
    (r"\bE\s*\[", lambda m: "an expectation names its density, as in E_q[...] or E_{q(Z)}[...]"),
))

_EXAMPLES = {"KL": "KL(q(Z) || p(Z | X))", "ELBO": "ELBO(q(Z), p(X, Z))", "log": "log(...)",
             "exp": "exp(...)"}


def spelling_fault(content: str, before: int | None = None) -> tuple[int, str] | None:
    """The leftmost spelling from elsewhere on the line, as ``(column, message)``, or None.

    Only a mistake that starts at or before ``before`` (0-based; the place
    where parsing stopped) is reported: one further right cannot be the cause.

    >>> spelling_fault("KL(q || p) = 0")
    (1, 'KL compares densities applied to their variables: write KL(q(Z) || p(Z | X))')
    """
    found = []
    for pattern, message in _SPELLINGS:
        match = pattern.search(content)
        if match and (before is None or match.start() <= before):
            found.append((match.start(), message(match)))
    if not found:
        return None
    start, message = min(found, key=lambda item: item[0])
    return start + 1, message
