"""Parse the parameter strings of model files into SymPy expressions, never executing them.

A model file writes distributions as text, ``"Normal(mu0, 1/sqrt(lambda0*tau))"``.
This module reads that text with a lark grammar (numbers, identifiers,
``+ - * / ^ **``, unary minus, parentheses, ``sqrt``/``log``/``exp``) in two
stages: :func:`parse_distribution` returns the family name and one syntax tree
per argument, so the caller can decide the assumptions (real, positive, ...)
of every identifier first; :func:`to_sympy` then builds the expression with
the caller's symbols. Errors are :class:`~symelbo.errors.InputError` located at
the column of the offending character.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import sympy as sp
from lark import Lark, Token, Tree
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken

from symelbo.errors import InputError

#: Numeric exponents beyond this would be computed exactly, digit by digit.
MAX_EXPONENT = 10000

_GRAMMAR = r"""
?start: dist | expr

dist: NAME "(" [expr ("," expr)*] ")"

?expr: sum
?sum: product
    | sum "+" product   -> add
    | sum "-" product   -> sub
?product: unary
    | product "*" unary -> mul
    | product "/" unary -> div
?unary: power
    | "-" unary         -> neg
    | "+" unary
?power: atom
    | atom POW unary    -> pow
?atom: NUMBER           -> number
    | NAME              -> name
    | NAME "(" expr ")" -> call
    | "(" expr ")"

POW: "**" | "^"
NAME: /[A-Za-z_][A-Za-z0-9_]*/
NUMBER: /(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?/
%ignore /[ \t]+/
"""

_DIST_PARSER = Lark(_GRAMMAR, start="dist", parser="lalr", propagate_positions=True)
_EXPR_PARSER = Lark(_GRAMMAR, start="expr", parser="lalr", propagate_positions=True)

#: Functions a parameter string may call.
FUNCTIONS = {"sqrt": sp.sqrt, "log": sp.log, "exp": sp.exp}
#: Identifiers with a fixed meaning.
CONSTANTS = {"pi": sp.pi}


@dataclass(frozen=True)
class Where:
    """Where a string sits in a model file: path, entry label, line and column of its first character."""

    path: str | None
    entry: str
    line: int | None = None
    column: int | None = None

    def error(self, message: str, offset: int | None = None) -> InputError:
        """An InputError at ``offset`` (1-based) characters into the string."""
        column = self.column
        if column is not None and offset is not None:
            column = column + offset - 1
        return InputError(f"{self.entry}: {message}", self.path, self.line, column)


@dataclass(frozen=True)
class Arg:
    """One argument of a distribution: its syntax tree, its text and its 1-based column in the string."""

    tree: Tree | Token
    text: str
    column: int


@dataclass(frozen=True)
class DistCall:
    """A parsed distribution string: family name, arguments, and where the name sits."""

    name: str
    args: tuple[Arg, ...]
    name_column: int


def _parse(parser: Lark, text: str, where: Where):
    if not isinstance(text, str):
        raise where.error(f"expected a string, got {type(text).__name__}")
    try:
        return parser.parse(text)
    except UnexpectedCharacters as exc:
        raise where.error(f"unexpected character {text[exc.pos_in_stream]!r} in {text!r}",
                          exc.column) from None
    except UnexpectedEOF:
        raise where.error(f"unexpected end of {text!r}", len(text) + 1) from None
    except UnexpectedToken as exc:
        if exc.token.type == "$END":
            raise where.error(f"unexpected end of {text!r}", len(text) + 1) from None
        raise where.error(f"unexpected {exc.token.value!r} in {text!r}", exc.column) from None
    except UnexpectedInput as exc:  # pragma: no cover - other lark errors
        raise where.error(f"cannot read {text!r}", getattr(exc, "column", None)) from None


def _column(node) -> int:
    if isinstance(node, Token):
        return node.column
    return node.meta.column if not node.meta.empty else 1


def parse_distribution(text: str, where: Where) -> DistCall:
    """Split ``"Family(arg, ...)"`` into the family name and one syntax tree per argument."""
    tree = _parse(_DIST_PARSER, text, where)
    name_tok = tree.children[0]
    args = []
    for node in tree.children[1:]:
        if node is None:
            continue
        start = _column(node)
        end = node.meta.end_pos if isinstance(node, Tree) and not node.meta.empty else node.end_pos
        args.append(Arg(node, text[start - 1:end], start))
    return DistCall(str(name_tok), tuple(args), name_tok.column)


def parse_expression(text: str, where: Where) -> Arg:
    """Parse one arithmetic expression (no distribution around it)."""
    tree = _parse(_EXPR_PARSER, text, where)
    return Arg(tree, text, 1)


def names(node) -> list[str]:
    """The identifiers an argument uses, in order of first appearance (function names excluded)."""
    out: list[str] = []

    def walk(n):
        if isinstance(n, Token):
            if n.type == "NAME" and str(n) not in CONSTANTS and str(n) not in out:
                out.append(str(n))
            return
        if n.data == "call":
            walk(n.children[1])
            return
        for child in n.children:
            walk(child)

    walk(node)
    return out


def factor_names(node) -> list[str]:
    """Identifiers that occur as multiplicative factors (bases of products, quotients, powers, sqrt).

    A parameter that must be positive and is written as a product of powers of
    identifiers (``1/sqrt(lambda0*tau)``) is taken to have positive factors.
    """
    out: list[str] = []

    def walk(n):
        if isinstance(n, Token):
            if n.type == "NAME" and str(n) not in CONSTANTS and str(n) not in out:
                out.append(str(n))
            return
        if n.data in ("mul", "div"):
            walk(n.children[0])
            walk(n.children[1])
        elif n.data == "pow":
            walk(n.children[0])
        elif n.data == "call" and str(n.children[0]) == "sqrt":
            walk(n.children[1])
        elif n.data == "name":
            walk(n.children[0])

    walk(node)
    return out


def number(text: str) -> sp.Rational:
    """The exact rational value of a decimal literal (``0.1`` is 1/10, not the nearest double)."""
    return sp.Rational(Fraction(text))


def to_sympy(arg: Arg, symbols: dict[str, sp.Symbol], where: Where) -> sp.Expr:
    """Build the SymPy expression of an argument, looking identifiers up in ``symbols``."""

    def err(node, message):
        return where.error(message, arg.column + _column(node) - 1 if _column(node) else arg.column)

    def build(n):
        if isinstance(n, Token):
            if n.type == "NUMBER":
                return number(str(n))
            name = str(n)
            if name in CONSTANTS:
                return CONSTANTS[name]
            if name in FUNCTIONS:
                raise err(n, f"{name} is a function; write {name}(...)")
            try:
                return symbols[name]
            except KeyError:
                raise err(n, f"unknown name {name!r}") from None
        kind = n.data
        kids = n.children
        if kind == "number":
            return build(kids[0])
        if kind == "name":
            return build(kids[0])
        if kind == "add":
            return build(kids[0]) + build(kids[1])
        if kind == "sub":
            return build(kids[0]) - build(kids[1])
        if kind == "mul":
            return build(kids[0]) * build(kids[1])
        if kind == "div":
            den = build(kids[1])
            if den == 0:
                raise err(kids[1], "division by zero")
            return build(kids[0]) / den
        if kind == "neg":
            return -build(kids[0])
        if kind == "pow":
            base, exponent = build(kids[0]), build(kids[2])
            if base == 0 and exponent.is_negative:
                raise err(kids[0], "zero to a negative power")
            if exponent.is_number and abs(exponent) > MAX_EXPONENT:
                # 2^2^2^99 would be computed digit by digit: refuse it
                raise err(kids[2], f"the exponent is too large (at most {MAX_EXPONENT} in size)")
            return base ** exponent
        if kind == "call":
            fname = str(kids[0])
            if fname not in FUNCTIONS:
                raise err(kids[0], f"unknown function {fname!r}; expected one of "
                          + ", ".join(sorted(FUNCTIONS)))
            inner = build(kids[1])
            if fname == "log" and inner.is_number and not inner.is_positive:
                raise err(kids[1], f"log of a non-positive number {inner}")
            if fname == "sqrt" and inner.is_number and inner.is_negative:
                raise err(kids[1], f"sqrt of a negative number {inner}")
            return FUNCTIONS[fname](inner)
        raise err(n, f"cannot read {arg.text!r}")  # pragma: no cover

    return build(arg.tree)
