"""Parse the parameter strings of model files into SymPy expressions, never executing them.

A model file writes distributions as text, ``"Normal(mu0, 1/sqrt(lambda0*tau))"``.
This module reads that text with a lark grammar (numbers, identifiers,
``+ - * / ^ **``, unary minus, parentheses, ``sqrt``/``log``/``exp``) in two
stages: :func:`parse_distribution` returns the family name and one syntax tree
per argument, so the caller can decide the assumptions (real, positive, ...)
of every identifier first; :func:`to_sympy` then builds the expression with
the caller's symbols. Errors are :class:`~symelbo.core.errors.InputError` located at
the column of the offending character.
"""

from __future__ import annotations

import math
import re
import sys
from dataclasses import dataclass
from fractions import Fraction

import sympy as sp
from lark import Lark, Token, Tree
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken

from symelbo.core.errors import InputError
from symelbo.io.grammars import load_parser
from symelbo.io.userfiles import excerpt

#: Numeric exponents beyond this would be computed exactly, digit by digit.
MAX_EXPONENT = 10000

# the grammar is symelbo/model.lark; its tables ship in the package (symelbo.io.grammars)
_DIST_PARSER = load_parser("model_dist")
_EXPR_PARSER = load_parser("model_expr")

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
        if n.data == "index":
            walk(n.children[0])
            return
        if n.data == "index_by":
            walk(n.children[0])
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
        elif n.data in ("name", "index"):
            walk(n.children[0])

    walk(node)
    return out


def reduce_indicators(expr: sp.Expr) -> sp.Expr:
    """An expanded expression with the indicators of mu[z] multiplied out:
    [z = j][z = k] is 0 for j != k and [z = k]^n is [z = k] (squaring a picked
    component, sum_k [z = k] mu_k, would otherwise leave K^2 terms, K^2 - K of them 0)."""
    if not expr.has(sp.KroneckerDelta):
        return expr
    out = []
    for term in sp.Add.make_args(expr):
        picked: dict = {}
        rest = []
        zero = False
        for factor in sp.Mul.make_args(term):
            base, power = factor.as_base_exp()
            if isinstance(base, sp.KroneckerDelta) and power.is_Integer and power > 0 \
                    and any(a.is_Integer for a in base.args):
                k, var = sorted(base.args, key=lambda a: not a.is_Integer)  # SymPy's order varies
                if picked.setdefault(var, k) != k:
                    zero = True
                    break
                continue
            rest.append(factor)
        if not zero:
            out.append(sp.Mul(*rest, *[sp.KroneckerDelta(v, k) for v, k in picked.items()]))
    return sp.Add(*out)


def number(text: str) -> sp.Rational:
    """The exact rational value of a decimal literal (``0.1`` is 1/10, not the nearest double).

    Raises ValueError (with the reason) for a literal outside the range of a
    double: its exact value would be computed digit by digit (``1e99999999``)
    and nothing derived from it could be reported as a number.
    """
    problem = decimal_problem(text)
    if problem:
        raise ValueError(problem)
    return sp.Rational(Fraction(text))


# --- the numbers a model may write -------------------------------------------

#: The largest double; a number of a model larger than this in size is refused.
MAX_DOUBLE = Fraction(sys.float_info.max)
#: The smallest normal double: a non-zero number smaller than this in size is a
#: subnormal, which a double holds with fewer digits than it was written with.
MIN_NORMAL = Fraction(sys.float_info.min)
_DECIMAL = re.compile(r"[+-]?(\d*)(?:\.(\d*))?(?:[eE]([+-]?\d+))?")
#: Exponents of a decimal literal longer than this many digits are out of range anyway.
_EXPONENT_DIGITS = 6


def magnitude_problem(value, shown: str | None = None) -> str | None:
    """Why the exact number ``value`` (int, float or Fraction) cannot stand in a model, or None.

    Every value is reported as a double (the JSON ``value``) and evaluated
    from doubles' worth of digits, so a model's numbers must be finite and
    0 or between the smallest normal and the largest double in size.
    ``shown`` is how the message writes the number (default: its value, short).
    """
    if isinstance(value, float) and not math.isfinite(value):
        return f"{value!r} is not a finite number"
    size = abs(Fraction(value))
    if size > MAX_DOUBLE:
        return _too_large(shown or _short(value))
    if 0 < size < MIN_NORMAL:
        return _too_small(shown or _short(value))
    return None


def decimal_problem(text: str) -> str | None:
    """magnitude_problem of a decimal literal such as ``1e-320``, without computing it first."""
    m = _DECIMAL.fullmatch(text.strip())
    if not m or not (m.group(1) or m.group(2)):
        return f"{excerpt(text)!r} is not a decimal number"
    whole, frac, exp = m.group(1), m.group(2) or "", m.group(3) or "0"
    digits = whole.lstrip("0")
    if not digits and not frac.strip("0"):
        return None  # zero, whatever the exponent
    shown = excerpt(text.strip())
    if len(exp.lstrip("+-").lstrip("0")) > _EXPONENT_DIGITS:
        return _too_small(shown) if exp.startswith("-") else _too_large(shown)
    # the power of ten of the leading digit, from the digits alone
    if digits:
        lead = len(digits) - 1 + int(exp)
    else:
        lead = -(len(frac) - len(frac.lstrip("0"))) - 1 + int(exp)
    if lead > 400:
        return _too_large(shown)
    if lead < -400:
        return _too_small(shown)
    return magnitude_problem(Fraction(text.strip()), shown)


def _too_large(shown: str) -> str:
    return f"{shown} is larger than the largest double ({sys.float_info.max!r})"


def _too_small(shown: str) -> str:
    return (f"{shown} is not 0 but below the smallest normal double ({sys.float_info.min!r}); "
            "a double holds such a number only approximately")


def _short(value) -> str:
    """A number as a one-line message shows it (a long one by its size: ``str`` of an
    integer of more than 4300 digits is refused by Python)."""
    if isinstance(value, float):
        return repr(value)
    exact = Fraction(value)
    if exact.denominator == 1 and abs(exact) < 10 ** 30:
        return str(exact.numerator)
    # the power of ten from the bit lengths, without writing the digits out
    power = round((abs(exact.numerator).bit_length() - exact.denominator.bit_length())
                  * math.log10(2))
    if exact.denominator == 1:
        digits = int((abs(exact.numerator).bit_length() - 1) * math.log10(2)) + 1
        digits += abs(exact.numerator) >= 10 ** digits  # the estimate can be one short
        return f"an integer of {digits} digits"
    if -300 < power < 300:
        return repr(float(exact))
    return f"a number near 1e{power}"


def to_sympy(arg: Arg, symbols: dict[str, sp.Symbol], where: Where) -> sp.Expr:
    """Build the SymPy expression of an argument, looking identifiers up in ``symbols``."""

    def err(node, message):
        # a node's column counts from the start of the whole string, as arg.column does
        return where.error(message, _column(node) or arg.column)

    def in_range(node, value):
        # numbers combine exactly: 1e300*1e300 would be a 601-digit integer, and a
        # chain of them would grow without bound
        if value.is_Rational and value != 0:
            problem = magnitude_problem(Fraction(int(value.p), int(value.q)), "the result")
            if problem:
                raise err(node, problem)
        return value

    def build(n):
        if isinstance(n, Token):
            if n.type == "NUMBER":
                problem = decimal_problem(str(n))
                if problem:
                    raise err(n, problem)
                return number(str(n))
            name = str(n)
            if name in CONSTANTS:
                return CONSTANTS[name]
            if name in FUNCTIONS:
                raise err(n, f"{name} is a function; write {name}(...)")
            try:
                found = symbols[name]
            except KeyError:
                raise err(n, f"unknown name {name!r}") from None
            if isinstance(found, tuple):
                raise err(n, f"{name!r} is a vector of {len(found)} components: write "
                             f"{name}[0] ... {name}[{len(found) - 1}]")
            return found
        kind = n.data
        kids = n.children
        if kind == "index":
            name, position = str(kids[0]), kids[1]
            found = symbols.get(name)
            if found is None:
                raise err(n.children[0], f"unknown name {name!r}")
            if not isinstance(found, tuple):
                raise err(n.children[0], f"{name!r} is not a vector: it takes no index")
            k = int(str(position)) if str(position).isdigit() and len(str(position)) < 6 else -1
            if not 0 <= k < len(found):
                raise err(position, f"{name!r} has components {name}[0] ... "
                                    f"{name}[{len(found) - 1}], not {name}[{position}]")
            return found[k]
        if kind == "index_by":
            # mu[z] with z a finite latent: sum_k [z = k] mu_k, the component z picks
            name, by = str(kids[0]), str(kids[1])
            found = symbols.get(name)
            if not isinstance(found, tuple):
                raise err(kids[0], f"{name!r} is not a vector: it takes no index"
                          if found is not None else f"unknown name {name!r}")
            index = symbols.get(by)
            if not isinstance(index, sp.Symbol) or not (index.is_integer and
                                                        index.is_nonnegative):
                raise err(kids[1], f"an index is a number or a latent with values 0, 1, ... "
                                   f"(Bernoulli, Categorical); {by!r} is not one")
            return sp.Add(*[sp.KroneckerDelta(index, k) * c for k, c in enumerate(found)])
        if kind == "number":
            return build(kids[0])
        if kind == "name":
            return build(kids[0])
        if kind == "add":
            return in_range(n, build(kids[0]) + build(kids[1]))
        if kind == "sub":
            return in_range(n, build(kids[0]) - build(kids[1]))
        if kind == "mul":
            return in_range(n, build(kids[0]) * build(kids[1]))
        if kind == "div":
            den = build(kids[1])
            if den == 0:
                raise err(kids[1], "division by zero")
            return in_range(n, build(kids[0]) / den)
        if kind == "neg":
            return -build(kids[0])
        if kind == "pow":
            base, exponent = build(kids[0]), build(kids[2])
            if base == 0 and exponent.is_negative:
                raise err(kids[0], "zero to a negative power")
            if exponent.is_number and abs(exponent) > MAX_EXPONENT:
                # 2^2^2^99 would be computed digit by digit: refuse it
                raise err(kids[2], f"the exponent is too large (at most {MAX_EXPONENT} in size)")
            if base.is_Rational and base != 0 and exponent.is_Rational:
                # the size of the power before it is computed digit by digit
                power = float(exponent) * math.log10(abs(float(base)))
                if abs(power) > 400:
                    raise err(n, f"the result, about 1e{round(power)}, is out of the range "
                                 "of a double")
            return in_range(n, base ** exponent)
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
