"""Probability notation as SymPy expressions.

Map of this module:

- :class:`Density`     ``p(A | B)``: a named density applied to random variables.
- :class:`Expectation` ``E_{q(Z)}[f]``: the expectation of ``f`` under a density.
- :class:`KL`          ``KL(q(Z) || p(Z | X))``.
- :class:`Entropy`     ``H[q(Z)]``.
- :class:`ELBO`        ``ELBO(q(Z), p(X, Z))``, printed as ``\\mathcal{L}(q)``.
- :class:`Marginal`    ``sum_Z[f]``: a sum or an integral over a variable.
- :class:`Gradient`    ``grad_phi[f]``: the gradient with respect to a parameter.
- :class:`Defined`     ``ptilde(X, Z1)``: a function named by a ``define:`` header (it
  carries its body, so it is that body under another name).
- :class:`Const`       ``const_{Z1}``: the last term of a side that is claimed only up to
  a term not depending on Z1 (the checker reads the claim; the node only prints).

Every class is an unevaluated SymPy ``Expr``: it stays symbolic, users can
``subs`` and ``latex`` it, and printing goes through the printer hooks
``_sympystr`` (the ``.calc`` syntax, so ``str`` round-trips through the
parser), ``_latex`` and ``_pretty``.

A density's arguments are kept in written order when built with
``evaluate=False`` (for display) and sorted otherwise, so that ``p(X, Z)`` and
``p(Z, X)`` are the same expression: a joint's argument order does not matter.
"""

from __future__ import annotations

from sympy import Abs, Add, Basic, Expr, Pow, Symbol, Tuple, exp, log, preorder_traversal, sympify
from sympy.core.assumptions import StdFactKB
from sympy.core.parameters import global_parameters
from sympy.printing.pretty.stringpict import prettyForm

__all__ = [
    "Density", "Expectation", "KL", "Entropy", "ELBO", "Marginal", "Gradient", "Defined", "Const",
    "split_const", "variable", "parameter", "density", "NOTATION_CLASSES",
]


def variable(name: str) -> Symbol:
    """A random variable (or a value held fixed, like observed data): a real symbol."""
    return Symbol(name, real=True)


def parameter(name: str) -> Symbol:
    """A real parameter such as ``phi`` in ``q_phi``."""
    return Symbol(name, real=True)


def _sorted_symbols(symbols) -> tuple:
    return tuple(sorted(symbols, key=lambda s: s.name))


def _should_evaluate(kwargs) -> bool:
    return kwargs.pop("evaluate", global_parameters.evaluate)


class Density(Expr):
    """``p(A | B)``: the density named ``name`` (with parameters) at variables A given B.

    ``Density("q", [Z], params=[phi])`` is ``q_phi(Z)``. Every density is a
    positive real number: the semantics gives each density name a table of
    positive values, so logs of densities are always defined.
    """

    is_commutative = True
    is_real = True
    is_positive = True
    is_extended_real = True
    is_extended_positive = True
    is_zero = False

    def __new__(cls, name, variables, given=(), params=(), **kwargs):
        evaluate = _should_evaluate(kwargs)
        if not isinstance(name, (Symbol, str)):
            raise TypeError(f"a density's name is a symbol, not {name!r}")
        name = name if isinstance(name, Symbol) else Symbol(name)
        variables, given, params = tuple(variables), tuple(given), tuple(params)
        for role, symbols in (("variable", variables), ("given variable", given), ("parameter", params)):
            for symbol in symbols:
                if not isinstance(symbol, Symbol):
                    # p at X = 2 is no density this notation can write
                    raise TypeError(f"a density's {role} is a symbol, not {symbol!r}")
        if evaluate:
            variables = _sorted_symbols(variables)
            given = _sorted_symbols(given)
        params = _sorted_symbols(params)
        return Expr.__new__(cls, name, Tuple(*params), Tuple(*variables), Tuple(*given))

    @property
    def func(self):
        """What rebuilds a density from its ``args``: SymPy's traversals (xreplace, subs,
        replace) call ``expr.func(*expr.args)``, and the stored order (name, params,
        variables, given) is not the constructor's."""
        return _density_from_args

    def __getnewargs__(self):
        """Pickling and copying rebuild through ``__new__``: hand it its own argument order."""
        return (self.args[0], self.variables, self.given, self.params)

    def __reduce_ex__(self, protocol):
        # written order kept: evaluate=False, as the object already is what it is
        return (_rebuild_density, self.__getnewargs__())

    def _eval_power(self, exponent):
        """p**e for a finite real number e, created knowing it is positive and finite.

        SymPy would otherwise find out by searching its fact base whenever
        someone asks whether 1/p is infinite (log asks, through Mul.is_zero),
        which costs a millisecond per quotient of densities; SymPy's Symbol
        sets its facts the same way.
        """
        if exponent.is_Number and exponent.is_finite and exponent not in (0, 1):
            power = Pow(self, exponent, evaluate=False)
            power._assumptions = StdFactKB({"positive": True, "finite": True, "commutative": True})
            return power
        return None

    @property
    def name(self) -> str:
        return self.args[0].name

    @property
    def params(self) -> tuple:
        return tuple(self.args[1])

    @property
    def variables(self) -> tuple:
        return tuple(self.args[2])

    @property
    def given(self) -> tuple:
        return tuple(self.args[3])

    @property
    def key(self) -> str:
        """The name that identifies one joint distribution: ``q_phi`` and ``q`` differ."""
        if not self.params:
            return self.name
        return self.name + "_" + "_".join(p.name for p in self.params)

    @property
    def free_symbols(self):
        return set(self.variables) | set(self.given) | set(self.params)

    def with_variables(self, variables, given=()) -> "Density":
        """The same density name applied to other variables (a marginal or a conditional)."""
        return Density(self.args[0], variables, given, self.params)

    def _eval_subs(self, old, new):
        if isinstance(old, Symbol) and old in self.free_symbols:
            if not isinstance(new, Symbol):
                # q_phi(Z) at phi = 1, or p at Z = 2, is no density this notation can write
                raise TypeError(f"{self}: {old} can be replaced by another symbol, not by {new}")
            swap = lambda s: new if s == old else s
            return Density(self.args[0], [swap(v) for v in self.variables],
                           [swap(g) for g in self.given], [swap(p) for p in self.params])
        if type(old) is Symbol and any(s.name == old.name for s in self.free_symbols):
            # Symbol("Z") is not the real variable("Z") of q(Z): SymPy would silently do nothing
            raise TypeError(f"{self}: its {old.name} is variable({old.name!r}), a real symbol, and "
                            f"Symbol({old.name!r}) is another one; rename with "
                            f".subs(variable({old.name!r}), variable('W'))")
        return None

    def _eval_derivative(self, s):
        return Gradient(s, self) if s in self.params else None

    # -- printing -----------------------------------------------------------
    def _head_str(self, printer) -> str:
        if not self.params:
            return self.name
        if len(self.params) == 1:
            return f"{self.name}_{self.params[0].name}"
        return self.name + "_{" + ",".join(p.name for p in self.params) + "}"

    def _args_str(self, printer) -> str:
        text = ", ".join(printer._print(v) for v in self.variables)
        if self.given:
            text += " | " + ", ".join(printer._print(g) for g in self.given)
        return text

    def _sympystr(self, printer) -> str:
        return f"{self._head_str(printer)}({self._args_str(printer)})"

    def _head_latex(self, printer) -> str:
        head = decorated_name_latex(self.name, printer)
        if self.params:
            head += "_{" + ", ".join(printer._print(p) for p in self.params) + "}"
        return head

    def _latex(self, printer) -> str:
        inner = ", ".join(printer._print(v) for v in self.variables)
        if self.given:
            inner += r" \mid " + ", ".join(printer._print(g) for g in self.given)
        return rf"{self._head_latex(printer)}({inner})"

    def _pretty(self, printer):
        return prettyForm(self._head_str(printer) + "(" + _pretty_args(self, printer) + ")")


def _flat(form) -> str:
    """A one-line pretty form as text (names, densities)."""
    return " ".join(line.strip() for line in form.picture)


def _pretty_args(dens: Density, printer) -> str:
    text = ", ".join(_flat(printer._print(v)) for v in dens.variables)
    if dens.given:
        text += " | " + ", ".join(_flat(printer._print(g)) for g in dens.given)
    return text


def _binder_subs(node: Expr, bound, old, new):
    """``subs`` on an operator binding ``bound``: bound occurrences are not ``old``
    (sum_Z[f].subs(Z, W) is itself), and ``new`` may not bring in a name the operator
    binds (E_{p(Z)}[p(Z, X)].subs(X, Z) would capture it). None: substitute as usual."""
    if old in bound:
        return node
    touched = (old.free_symbols if isinstance(old, Basic) else set()) | (
        new.free_symbols if isinstance(new, Basic) else set())
    if touched & set(bound) and node.has(old):
        # p(X, Z) under sum_Z is not the p(X, Z) outside it, and a Z brought in is caught
        raise TypeError(f"{node}: replacing {old} by {new} involves "
                        f"{', '.join(sorted(s.name for s in touched & set(bound)))}, "
                        "which this operator binds")
    return None


def _require_density(obj, role: str) -> Density:
    if not isinstance(obj, Density):
        raise TypeError(f"{role} must be a Density, got {obj!r}")
    return obj


def _bracketed_pretty(printer, head: str, body_form, left="[", right="]"):
    body = prettyForm(*body_form.parens(left, right))
    return prettyForm(*body.left(head))


def known_positive(expr: Expr) -> bool:
    """True when ``expr`` is positive and finite by construction (densities, exp, positive sums...).

    Structural on purpose: SymPy's assumption queries on a product of
    densities try unrelated facts (integer, composite, ...) first and cost a
    hundred times more.
    """
    if isinstance(expr, Density):
        return True
    if expr.is_Number:
        return bool(expr.is_positive)
    if expr.is_NumberSymbol:  # e, pi, ...: SymPy knows their sign outright
        return bool(expr.is_positive)
    if isinstance(expr, exp):
        return bool(expr.args[0].is_extended_real)
    if expr.is_Mul:
        return all(known_positive(a) for a in expr.args)
    if expr.is_Add:  # terms >= 0, one of them > 0 (phi^2 + 1)
        return (all(known_nonnegative(a) for a in expr.args)
                and any(known_positive(a) for a in expr.args))
    if expr.is_Pow:
        return known_positive(expr.base) and bool(expr.exp.is_extended_real)
    if isinstance(expr, (Expectation, Marginal, Defined)):
        return known_positive(expr.body)
    return False


def known_nonnegative(expr: Expr) -> bool:
    """True when ``expr`` >= 0 by construction: what is positive, even powers of real
    terms, and sums, products, expectations and sums over variables of such."""
    if known_positive(expr) or (expr.is_Number and expr.is_nonnegative):
        return True
    if expr.is_Pow:
        return bool(expr.exp.is_even and expr.base.is_extended_real)
    if expr.is_Add or expr.is_Mul:
        return all(known_nonnegative(a) for a in expr.args)
    if isinstance(expr, (Expectation, Marginal)):
        return known_nonnegative(expr.body)
    return isinstance(expr, Abs)


def _density_from_args(name, params, variables, given, **kwargs) -> "Density":
    """A density from its stored arguments, in their order (``Density.func``)."""
    return Density(name, variables, given, params, **kwargs)


def _rebuild_density(name, variables, given, params) -> "Density":
    """A density exactly as it was (pickle, copy)."""
    return Density(name, variables, given, params, evaluate=False)


def _gradient_by(node: Expr, s: Symbol):
    """d/ds of a notation node: ``grad_s[node]`` when s is a parameter of a density in
    it (so ``sympy.diff`` speaks the notation's gradient), else None (left unevaluated:
    a random variable takes finitely many values, nothing to differentiate)."""
    densities = [n for n in preorder_traversal(node) if isinstance(n, Density)]
    if any(s in d.params for d in densities) and not any(
            s in d.variables or s in d.given for d in densities):
        return Gradient(s, node)
    return None


class Expectation(Expr):
    """``E_{a}[f] = sum over the arguments of a of a * f`` (the given variables of a stay fixed)."""

    is_commutative = True

    def __new__(cls, dens, body, **kwargs):
        kwargs.pop("evaluate", None)
        return Expr.__new__(cls, _require_density(dens, "the density of an expectation"), sympify(body, strict=True))

    @property
    def density(self) -> Density:
        return self.args[0]

    @property
    def body(self) -> Expr:
        return self.args[1]

    @property
    def bound(self) -> tuple:
        return self.density.variables

    @property
    def free_symbols(self):
        return (self.body.free_symbols - set(self.bound)) | set(self.density.given) | set(self.density.params)

    def _eval_derivative(self, s):
        return _gradient_by(self, s)

    def _eval_subs(self, old, new):
        return _binder_subs(self, self.density.variables, old, new)

    def _eval_is_extended_real(self):
        return self.body.is_extended_real

    def _eval_is_positive(self):
        return True if known_positive(self.body) else None

    def _sympystr(self, printer) -> str:
        return f"E_{{{printer._print(self.density)}}}[{printer._print(self.body)}]"

    def _latex(self, printer) -> str:
        return (rf"\mathbb{{E}}_{{{printer._print(self.density)}}}"
                rf"\left[{printer._print(self.body)}\right]")

    def _pretty(self, printer):
        return _bracketed_pretty(printer, "E_" + _flat(printer._print(self.density)),
                                 printer._print(self.body))


class _DensityPair(Expr):
    """An operator on two densities that integrates over the first one's variables."""

    is_commutative = True
    is_real = True
    is_extended_real = True
    _name = ""

    def __new__(cls, first, second, **kwargs):
        kwargs.pop("evaluate", None)
        return Expr.__new__(cls, _require_density(first, f"the first argument of {cls._name}"),
                            _require_density(second, f"the second argument of {cls._name}"))

    @property
    def first(self) -> Density:
        return self.args[0]

    @property
    def second(self) -> Density:
        return self.args[1]

    @property
    def free_symbols(self):
        return (self.first.free_symbols | self.second.free_symbols) - set(self.first.variables)

    def _eval_derivative(self, s):
        return _gradient_by(self, s)

    def _eval_subs(self, old, new):
        return _binder_subs(self, self.first.variables, old, new)


class KL(_DensityPair):
    """``KL(a || b) = E_a[log(a / b)]``, the Kullback-Leibler divergence of a from b.

    Both densities must be over the same variables (each normalised over
    them): only then is KL a divergence, and never negative.
    """

    _name = "KL"

    def __new__(cls, first, second, **kwargs):
        obj = super().__new__(cls, first, second, **kwargs)
        if set(obj.first.variables) != set(obj.second.variables):
            raise ValueError(f"KL({obj.first} || {obj.second}) compares densities over different variables")
        return obj

    def _sympystr(self, printer) -> str:
        return f"KL({printer._print(self.first)} || {printer._print(self.second)})"

    def _latex(self, printer) -> str:
        return (rf"\operatorname{{KL}}\left({printer._print(self.first)} \,\middle\|\, "
                rf"{printer._print(self.second)}\right)")

    def _pretty(self, printer):
        inner = _flat(printer._print(self.first)) + " || " + _flat(printer._print(self.second))
        return prettyForm("KL(" + inner + ")")


class Entropy(Expr):
    """``H[a] = -E_a[log a]``, the (differential) entropy of a density."""

    is_commutative = True
    is_real = True
    is_extended_real = True

    def __new__(cls, dens, **kwargs):
        kwargs.pop("evaluate", None)
        return Expr.__new__(cls, _require_density(dens, "the argument of H"))

    @property
    def density(self) -> Density:
        return self.args[0]

    @property
    def free_symbols(self):
        return self.density.free_symbols - set(self.density.variables)

    def _eval_derivative(self, s):
        return _gradient_by(self, s)

    def _eval_subs(self, old, new):
        return _binder_subs(self, self.density.variables, old, new)

    def _sympystr(self, printer) -> str:
        return f"H[{printer._print(self.density)}]"

    def _latex(self, printer) -> str:
        return rf"\operatorname{{H}}\left[{printer._print(self.density)}\right]"

    def _pretty(self, printer):
        return _bracketed_pretty(printer, "H", printer._print(self.density))


class ELBO(_DensityPair):
    """``ELBO(q, p) = E_q[log(p / q)]``, the evidence lower bound of q for the joint p.

    q's variables must be among those of the joint p, which has no conditioning.
    """

    _name = "ELBO"

    def __new__(cls, first, second, **kwargs):
        obj = super().__new__(cls, first, second, **kwargs)
        if not set(obj.first.variables) <= set(obj.second.variables) or obj.second.given:
            raise ValueError(f"ELBO({obj.first}, {obj.second}) needs a joint density over q's variables")
        return obj

    @property
    def variational(self) -> Density:
        return self.args[0]

    @property
    def joint(self) -> Density:
        return self.args[1]

    def _sympystr(self, printer) -> str:
        return f"ELBO({printer._print(self.variational)}, {printer._print(self.joint)})"

    def _latex(self, printer) -> str:
        return rf"\mathcal{{L}}({self.variational._head_latex(printer)})"

    def _pretty(self, printer):
        return prettyForm("L(" + self.variational._head_str(printer) + ")")


class _SymbolOperator(Expr):
    """An operator ``op_s[f]`` on a body f with respect to a symbol s (a variable or a parameter)."""

    is_commutative = True
    _symbol_role = ""   # for the error message: what the symbol must be
    _text_head = ""     # the .calc head: "sum" or "grad"

    def __new__(cls, symbol, body, **kwargs):
        kwargs.pop("evaluate", None)
        if not isinstance(symbol, Symbol):
            raise TypeError(f"{cls.__name__} needs {cls._symbol_role}, got {symbol!r}")
        return Expr.__new__(cls, symbol, sympify(body, strict=True))

    @property
    def body(self) -> Expr:
        return self.args[1]

    def _eval_is_extended_real(self):
        return self.body.is_extended_real

    def _eval_derivative(self, s):
        return _gradient_by(self, s)

    def _sympystr(self, printer) -> str:
        return f"{self._text_head}_{printer._print(self.args[0])}[{printer._print(self.body)}]"

    def _pretty(self, printer):
        return _bracketed_pretty(printer, f"{self._text_head}_" + _flat(printer._print(self.args[0])),
                                 printer._print(self.body))


class Marginal(_SymbolOperator):
    """``sum_V[f]``: the sum (or integral, against the reference measure) of f over V."""

    _symbol_role = "a variable to sum over"
    _text_head = "sum"

    @property
    def variable(self) -> Symbol:
        return self.args[0]

    @property
    def bound(self) -> tuple:
        return (self.variable,)

    def _eval_subs(self, old, new):
        return _binder_subs(self, (self.variable,), old, new)

    @property
    def free_symbols(self):
        return self.body.free_symbols - {self.variable}

    def _eval_is_positive(self):
        return True if known_positive(self.body) else None

    def _latex(self, printer) -> str:
        return rf"\sum_{{{printer._print(self.variable)}}} {_latex_factor(printer, self.body)}"


def _latex_factor(printer, body) -> str:
    """Print a summand, in parentheses when it is a sum."""
    text = printer._print(body)
    return rf"\left({text}\right)" if body.is_Add else text


class Gradient(_SymbolOperator):
    """``grad_phi[f]``: the derivative of f with respect to the real parameter phi."""

    _symbol_role = "a parameter to differentiate by"
    _text_head = "grad"

    @property
    def parameter(self) -> Symbol:
        return self.args[0]

    @property
    def free_symbols(self):
        return self.body.free_symbols | {self.parameter}

    def _latex(self, printer) -> str:
        return rf"\nabla_{{{printer._print(self.parameter)}}} {_latex_factor(printer, self.body)}"


def _log_latex(self, printer, exp=None) -> str:
    """``\\log p(X, Z)`` for the log of a density, as the documents write it; else SymPy's own."""
    if exp is None and isinstance(self.args[0], (Density, Defined)):
        return rf"\log {printer._print(self.args[0])}"
    return printer._print_log(self, exp)  # a printer's own _print_log, unchanged


# ``sympy.latex(log(p))`` reads an expression's own ``_latex`` method before any printer
# method; log is SymPy's class, so the hook is attached to it here, and it changes
# nothing but the log of a density (everything else goes to the printer's _print_log).
log._latex = _log_latex

class Defined(Expr):
    """``f(A)``: the function a ``define: f(A) = body`` header names, applied to A.

    It holds its (instantiated) body, so its free symbols, sign and value are
    the body's: the name is an abbreviation, unfolded by the rule ``definition``.
    """

    is_commutative = True

    def __new__(cls, name, variables, body, **kwargs):
        kwargs.pop("evaluate", None)
        name = name if isinstance(name, Symbol) else Symbol(name)
        return Expr.__new__(cls, name, Tuple(*variables), sympify(body, strict=True))

    @property
    def name(self) -> str:
        return self.args[0].name

    @property
    def variables(self) -> tuple:
        return tuple(self.args[1])

    @property
    def body(self) -> Expr:
        return self.args[2]

    @property
    def free_symbols(self):
        return self.body.free_symbols | set(self.variables)

    def _eval_is_extended_real(self):
        return self.body.is_extended_real

    def _eval_is_positive(self):
        return True if known_positive(self.body) else None

    def _eval_derivative(self, s):
        return _gradient_by(self, s)

    def _sympystr(self, printer) -> str:
        return f"{self.name}(" + ", ".join(printer._print(v) for v in self.variables) + ")"

    def _latex(self, printer) -> str:
        inner = ", ".join(printer._print(v) for v in self.variables)
        return rf"{decorated_name_latex(self.name, printer)}({inner})"

    def _pretty(self, printer):
        return prettyForm(f"{self.name}(" + ", ".join(_flat(printer._print(v)) for v in self.variables) + ")")


def decorated_name_latex(name: str, printer) -> str:
    """``qstar`` as ``q^\\star``, ``ptilde`` as ``\\tilde{p}``, ``phat`` as ``\\hat{p}``: the
    marks textbooks put on a defined density; any other name as SymPy prints it."""
    for suffix, template in (("star", "{}^{{\\star}}"), ("tilde", "\\tilde{{{}}}"),
                             ("hat", "\\hat{{{}}}"), ("bar", "\\bar{{{}}}")):
        base = name[: -len(suffix)]
        if name.endswith(suffix) and base:
            return template.format(printer._print(Symbol(base)))
    return printer._print(Symbol(name))


class Const(Expr):
    """``const_{V}``: "plus a term that does not depend on V" (variables or density names).

    Only the last top-level term of a side may be one; the checker reads the
    step as ``lhs - rhs`` (consts left out) not depending on V. The node has no
    value and no free symbols: it is notation for the claim, printed as the
    textbooks print it (``\\text{const}``).
    """

    is_commutative = True
    is_real = True
    is_extended_real = True

    def __new__(cls, names, **kwargs):
        kwargs.pop("evaluate", None)
        symbols = [n if isinstance(n, Symbol) else Symbol(n) for n in names]
        return Expr.__new__(cls, Tuple(*sorted(symbols, key=lambda s: s.name)))

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.args[0])

    @property
    def free_symbols(self):
        return set()

    def _eval_subs(self, old, new):
        return self

    def _sympystr(self, printer) -> str:
        return "const_{" + ", ".join(self.names) + "}"

    def _latex(self, printer) -> str:
        return r"\text{const}"

    def _pretty(self, printer):
        return prettyForm("const")


def split_const(expr: Expr) -> tuple[Expr, tuple[str, ...]]:
    """``(side without its const, the names it is constant in)``; ``()`` when it has none."""
    if isinstance(expr, Const):
        return sympify(0), expr.names
    if expr.is_Add:
        consts = [a for a in expr.args if isinstance(a, Const)]
        if consts:
            names = tuple(sorted({n for c in consts for n in c.names}))
            rest = [a for a in expr.args if not isinstance(a, Const)]
            return (Add(*rest, evaluate=False) if len(rest) > 1 else (rest[0] if rest else sympify(0))), names
    return expr, ()


NOTATION_CLASSES = (Density, Expectation, KL, Entropy, ELBO, Marginal, Gradient, Defined, Const)


def density(name: str, *variables, given=(), params=()) -> Density:
    """Build a density from names: ``density("p", "Z", given=["X"])`` is ``p(Z | X)``.

    The variables may also come as one list: ``density("p", ["X", "Z"])`` is ``p(X, Z)``.
    """
    if len(variables) == 1 and isinstance(variables[0], (list, tuple)):
        variables = tuple(variables[0])
    as_var = lambda v: v if isinstance(v, Symbol) else variable(v)
    as_par = lambda v: v if isinstance(v, Symbol) else parameter(v)
    return Density(name, [as_var(v) for v in variables], [as_var(g) for g in given],
                   [as_par(p) for p in params])
