"""Distribution families: log density, support, parameter domains and a table of closed forms.

Parametrisations follow scipy/torch: ``Normal(mean, std)``, ``Beta(a, b)``,
``Gamma(shape, rate)``, ``Exponential(rate)``, ``Poisson(rate)``,
``Bernoulli(p)``, ``Binomial(n, p)``, ``Categorical(p_1, ..., p_K)`` (values
``0..K-1``).

Every expectation, entropy and KL divergence here is a closed form from a
table, never a call to ``sympy.integrate``: symbolic integration is slow and
often fails on these integrals. Each entry is checked against its integral or
sum definition in ``tests/test_families.py``.

Some expectations are finite only on part of the parameter domain: E[x**-k]
under Gamma(a, b) needs a > k, E[exp(c x)] under Laplace(m, b) needs
|c| b < 1. :meth:`Family.expect_where` gives such an entry with its
conditions (expressions that must be positive); outside them the expectation
is +infinity, and the formula, which stays finite there, must not be used.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import sympy as sp

# Supports.
REAL = "real"            # the real line
POSITIVE = "positive"    # (0, oo)
UNIT = "unit"            # (0, 1)
COUNTS = "counts"        # 0, 1, 2, ...
BINARY = "binary"        # {0, 1}
FINITE = "finite"        # {0, ..., K-1}
BOUNDED_COUNTS = "0..n"  # {0, ..., n}

SUPPORT_TEXT = {
    REAL: "the real line",
    POSITIVE: "the positive reals",
    UNIT: "the open interval (0, 1)",
    COUNTS: "the counts 0, 1, 2, ...",
    BINARY: "{0, 1}",
    FINITE: "{0, ..., K-1}",
    BOUNDED_COUNTS: "{0, ..., n}",
}

# Parameter domains.
D_REAL = "real"
D_POSITIVE = "positive"
D_PROB = "probability"     # (0, 1)
D_COUNT = "positive integer"

DOMAIN_TEXT = {D_REAL: "a real number", D_POSITIVE: "positive",
               D_PROB: "strictly between 0 and 1", D_COUNT: "a positive integer"}


def in_domain(value: sp.Expr, domain: str) -> bool | None:
    """Whether ``value`` lies in ``domain``: True, False, or None when undecided."""
    if domain == D_REAL:
        return value.is_extended_real if value.is_extended_real is not None else None
    if domain == D_POSITIVE:
        return value.is_positive
    if domain == D_PROB:
        if value.is_positive is False:
            return False
        one_minus = (1 - value).is_positive
        if one_minus is False:
            return False
        if value.is_positive and one_minus:
            return True
        return None
    if domain == D_COUNT:
        if value.is_integer is False or value.is_positive is False:
            return False
        if value.is_integer and value.is_positive:
            return True
        return None
    raise ValueError(domain)  # pragma: no cover


def data_in_support(value, support: str, params: tuple = (), zero: bool = False) -> bool:
    """Whether a number (a data point) lies in a support; ``params`` gives n or K where needed.

    ``zero``: 0 is a data value of the positive support too (an Exponential
    likelihood, whose density is finite at 0, as scipy and torch have it)."""
    if isinstance(value, bool):
        value = int(value)
    if support == REAL:
        return math.isfinite(value)
    if support == POSITIVE:
        return math.isfinite(value) and (value > 0 or (zero and value == 0))
    if support == UNIT:
        return 0 < value < 1
    is_int = (isinstance(value, int) or (isinstance(value, float) and value.is_integer()))
    if not is_int:
        return False
    if support == COUNTS:
        return value >= 0
    if support == BINARY:
        return value in (0, 1)
    if support == FINITE:
        return 0 <= value < len(params)
    if support == BOUNDED_COUNTS:
        n = params[0]
        return 0 <= value and (not n.is_number or value <= int(n))
    raise ValueError(support)  # pragma: no cover


def array_in_support(arr, support: str, params: tuple = (), zero: bool = False) -> bool:
    """Whether every item of a numpy array of finite numbers lies in a support, checked in bulk.

    Integer items of a float array are expected to be checked by the caller for
    the discrete supports; this only compares ranges. ``zero`` as for
    :func:`data_in_support`.
    """
    if support == REAL:
        return True
    if support == POSITIVE:
        return bool((arr >= 0).all() if zero else (arr > 0).all())
    if support == UNIT:
        return bool(((arr > 0) & (arr < 1)).all())
    if support == COUNTS:
        return bool((arr >= 0).all())
    if support == BINARY:
        return bool(((arr == 0) | (arr == 1)).all())
    if support == FINITE:
        return bool(((arr >= 0) & (arr < len(params))).all())
    if support == BOUNDED_COUNTS:
        n = params[0]
        return bool((arr >= 0).all()) and (not n.is_number or bool((arr <= int(n)).all()))
    raise ValueError(support)  # pragma: no cover


def _power(part: sp.Expr, x: sp.Symbol) -> int | None:
    """The integer k when ``part`` is ``x**k`` (k >= 1), else None."""
    if part == x:
        return 1
    if isinstance(part, sp.Pow) and part.base == x and part.exp.is_Integer and part.exp > 0:
        return int(part.exp)
    return None


def _is_log(part: sp.Expr, x: sp.Symbol) -> bool:
    return isinstance(part, sp.log) and part.args[0] == x


def _is_log1m(part: sp.Expr, x: sp.Symbol) -> bool:
    return isinstance(part, sp.log) and sp.expand(part.args[0] - (1 - x)) == 0


def _exp_linear(part: sp.Expr, x: sp.Symbol) -> tuple[sp.Expr, sp.Expr] | None:
    """(c, d) when ``part`` is exp(c*x + d) with c, d free of x, else None."""
    if not isinstance(part, sp.exp):
        return None
    arg = sp.expand(part.args[0])
    c = arg.coeff(x, 1)
    d = sp.expand(arg - c * x)
    if c == 0 or c.has(x) or d.has(x):
        return None
    return c, d


def _double_factorial_odd(j: int) -> int:
    out = 1
    for i in range(j - 1, 0, -2):
        out *= i
    return out


@dataclass(frozen=True)
class Family:
    """A parametric family: name, parameter names and domains, support, and its closed forms.

    ``variadic`` families (Categorical) take any number >= 2 of parameters, all
    in the first domain. The callables take the parameters as SymPy expressions.
    """

    name: str
    params: tuple[str, ...]
    domains: tuple[str, ...]
    support: str
    logpdf_fn: Callable[..., sp.Expr]
    entropy_fn: Callable[..., sp.Expr] | None = None
    kl_fn: Callable[..., sp.Expr] | None = None
    expect_fn: Callable[..., sp.Expr | None] | None = None
    variadic: bool = False
    discrete: bool = False
    #: Entries of the table finite only where conditions hold: (part, x, *params) ->
    #: (E[part], [(expression that must be positive, what it is)]) or None.
    conditional_fn: Callable[..., tuple | None] | None = None
    #: Whether a data value may be 0 on a positive support (the density is finite there).
    data_zero: bool = False

    def check_arity(self, count: int) -> str | None:
        """None when ``count`` parameters fit, else a message saying what is expected."""
        if self.variadic:
            if count < 2:
                return f"{self.name} takes at least 2 probabilities, got {count}"
            return None
        if count != len(self.params):
            want = ", ".join(self.params)
            return (f"{self.name} takes {len(self.params)} parameter"
                    f"{'s' if len(self.params) != 1 else ''} ({want}), got {count}")
        return None

    def domain_of(self, index: int) -> str:
        """The domain of the ``index``-th parameter."""
        return self.domains[0] if self.variadic else self.domains[index]

    def param_name(self, index: int) -> str:
        """The name of the ``index``-th parameter (``p_1``, ... for a variadic family)."""
        return f"p_{index + 1}" if self.variadic else self.params[index]

    def support_values(self, params) -> list[int] | None:
        """The finite list of values of a finite discrete family, else None."""
        if self.support == BINARY:
            return [0, 1]
        if self.support == FINITE:
            return list(range(len(params)))
        return None

    def logpdf(self, x: sp.Expr, params) -> sp.Expr:
        """log density (or log mass) at ``x``, valid on the support."""
        return self.logpdf_fn(x, *params)

    def entropy(self, params) -> sp.Expr | None:
        """Differential (or Shannon) entropy, or None when the table has no closed form."""
        return self.entropy_fn(*params) if self.entropy_fn else None

    def kl(self, params_q, params_p) -> sp.Expr | None:
        """KL(self(params_q) || self(params_p)) from the table, or None."""
        return self.kl_fn(tuple(params_q), tuple(params_p)) if self.kl_fn else None

    def expect(self, part: sp.Expr, x: sp.Symbol, params) -> sp.Expr | None:
        """E[part(x)] for x ~ self(params) when ``part`` is in the table, else None.

        Finite discrete families take any ``part`` finite on the support (a
        finite sum); continuous ones know x**k and the log features below.
        """
        values = self.support_values(params)
        if values is not None:
            probs = self.probabilities(params)
            terms = []
            for k, pk in zip(values, probs):
                v = value_at(part, x, k)
                if v.has(sp.zoo, sp.oo, -sp.oo, sp.nan):
                    return None
                terms.append(pk * v)
            return sp.Add(*terms)
        if part == 1:
            return sp.Integer(1)
        return self.expect_fn(part, x, *params) if self.expect_fn else None

    def expect_where(self, part: sp.Expr, x: sp.Symbol, params) -> tuple | None:
        """(E[part(x)], conditions) for x ~ self(params), or None when not in the table.

        The conditions are (expression, what) pairs: E[part] is the formula where
        every expression is positive, and +infinity where one is not (each
        conditional entry is of a positive ``part``). Unconditional entries come
        with no conditions.
        """
        e = self.expect(part, x, params)
        if e is not None:
            return e, []
        if self.conditional_fn is None:
            return None
        return self.conditional_fn(part, x, *params)

    def probabilities(self, params) -> list[sp.Expr]:
        """Masses of the values of a finite discrete family."""
        if self.support == BINARY:
            (p,) = params
            return [1 - p, p]
        return list(params)


# --- log densities ---------------------------------------------------------

def _normal_logpdf(x, m, s):
    return -sp.log(s) - sp.log(2 * sp.pi) / 2 - (x - m) ** 2 / (2 * s ** 2)


def _laplace_logpdf(x, m, b):
    return -sp.log(2 * b) - sp.Abs(x - m) / b


def _log_beta_fn(a, b):
    return sp.loggamma(a) + sp.loggamma(b) - sp.loggamma(a + b)


def _beta_logpdf(x, a, b):
    return (a - 1) * sp.log(x) + (b - 1) * sp.log(1 - x) - _log_beta_fn(a, b)


def _gamma_logpdf(x, a, b):
    return a * sp.log(b) - sp.loggamma(a) + (a - 1) * sp.log(x) - b * x


def _exponential_logpdf(x, lam):
    return sp.log(lam) - lam * x


def _poisson_logpdf(x, lam):
    return x * sp.log(lam) - lam - sp.loggamma(x + 1)


def _bernoulli_logpdf(x, p):
    return x * sp.log(p) + (1 - x) * sp.log(1 - p)


def _binomial_logpdf(x, n, p):
    return (sp.loggamma(n + 1) - sp.loggamma(x + 1) - sp.loggamma(n - x + 1)
            + x * sp.log(p) + (n - x) * sp.log(1 - p))


def _categorical_logpdf(x, *ps):
    # A sum of indicator-weighted logs is not a SymPy-friendly function of a
    # symbolic x; Piecewise keeps it exact and finite sums substitute x first.
    if x.is_Integer:
        return sp.log(ps[int(x)]) if 0 <= x < len(ps) else sp.nan
    # Unevaluated: SymPy's Piecewise compares every pair of conditions (K = 300 took 5 s);
    # the conditions x = 0, ..., K-1 are distinct by construction.
    return sp.Piecewise(*[(sp.log(p), sp.Eq(x, k)) for k, p in enumerate(ps)],
                        (sp.nan, True), evaluate=False)


def value_at(part: sp.Expr, x: sp.Symbol, k: int) -> sp.Expr:
    """``part.subs(x, k)``, a Piecewise in x = 0, 1, ... read at its branch for k directly
    (substituting into each of K conditions, K times, is what made K = 300 slow)."""
    for pw in part.atoms(sp.Piecewise):
        branch = None
        for expr, cond in pw.args:
            if cond is sp.true:
                branch = expr
                break
            if isinstance(cond, sp.Eq) and x in cond.args and len(cond.args) == 2:
                other = cond.args[0] if cond.args[1] == x else cond.args[1]
                if other.is_Integer:
                    if other == k:
                        branch = expr
                        break
                    continue
            branch = None  # a condition of another form: substitute as usual
            break
        if branch is not None:
            part = part.xreplace({pw: branch})
    return part.subs(x, k)


# --- expectations ----------------------------------------------------------

def _normal_expect(part, x, m, s):
    k = _power(part, x)
    if k is None:
        linear = _exp_linear(part, x)
        if linear is None:
            return None
        # the moment generating function: E[exp(c x + d)] = exp(c m + c^2 s^2 / 2 + d)
        c, d = linear
        return sp.exp(c * m + c ** 2 * s ** 2 / 2 + d)
    # E[(m + s Z)^k] with E[Z^j] = (j-1)!! for even j, 0 for odd j.
    return sp.Add(*[sp.binomial(k, j) * m ** (k - j) * s ** j * _double_factorial_odd(j)
                    for j in range(0, k + 1, 2)])


def _gamma_expect(part, x, a, b):
    k = _power(part, x)
    if k is not None:
        return sp.Mul(*[a + i for i in range(k)]) / b ** k
    if _is_log(part, x):
        return sp.digamma(a) - sp.log(b)
    return None


def _exponential_expect(part, x, lam):
    return _gamma_expect(part, x, sp.Integer(1), lam)


def _negative_power(part: sp.Expr, x: sp.Symbol) -> int | None:
    """The integer k when ``part`` is ``x**-k`` (k >= 1), else None."""
    if isinstance(part, sp.Pow) and part.base == x and part.exp.is_Integer and part.exp < 0:
        return int(-part.exp)
    return None


def _gamma_conditional(part, x, a, b):
    # E[x^-k] = b^k Gamma(a - k) / Gamma(a) = b^k / ((a - 1) ... (a - k)) for a > k; the
    # integrand x^(a - k - 1) is not integrable at 0 for a <= k.
    k = _negative_power(part, x)
    if k is None:
        return None
    value = b ** k / sp.Mul(*[a - i for i in range(1, k + 1)])
    return value, [(a - k, f"the shape minus {k}")]


def _exponential_conditional(part, x, lam):
    return _gamma_conditional(part, x, sp.Integer(1), lam)


def _beta_expect(part, x, a, b):
    k = _power(part, x)
    if k is not None:
        return sp.Mul(*[(a + i) / (a + b + i) for i in range(k)])
    if _is_log(part, x):
        return sp.digamma(a) - sp.digamma(a + b)
    if _is_log1m(part, x):
        return sp.digamma(b) - sp.digamma(a + b)
    return None


def _poisson_expect(part, x, lam):
    k = _power(part, x)
    if k is None:
        return None
    # E[x^k] = sum_j S(k, j) lam^j (Touchard polynomial).
    from sympy.functions.combinatorial.numbers import stirling
    return sp.Add(*[stirling(k, j) * lam ** j for j in range(1, k + 1)])


def _binomial_expect(part, x, n, p):
    k = _power(part, x)
    if k == 1:
        return n * p
    if k == 2:
        return n * p * (1 - p) + (n * p) ** 2
    return None


def _laplace_expect(part, x, m, b):
    k = _power(part, x)
    if k == 1:
        return m
    if k == 2:
        return m ** 2 + 2 * b ** 2
    return None


def _laplace_conditional(part, x, m, b):
    # E[exp(c x + d)] = exp(c m + d) / (1 - b^2 c^2) for |c| b < 1; the tail
    # exp(-|x| / b + c x) is not integrable otherwise.
    linear = _exp_linear(part, x)
    if linear is None:
        return None
    c, d = linear
    return sp.exp(c * m + d) / (1 - b ** 2 * c ** 2), [(1 - b ** 2 * c ** 2,
                                                        "1 - (scale*c)**2")]


# --- entropies -------------------------------------------------------------

def _normal_entropy(m, s):
    return sp.log(s) + sp.log(2 * sp.pi) / 2 + sp.Rational(1, 2)


def _gamma_entropy(a, b):
    return a - sp.log(b) + sp.loggamma(a) + (1 - a) * sp.digamma(a)


def _exponential_entropy(lam):
    return 1 - sp.log(lam)


def _beta_entropy(a, b):
    return (_log_beta_fn(a, b) - (a - 1) * sp.digamma(a) - (b - 1) * sp.digamma(b)
            + (a + b - 2) * sp.digamma(a + b))


def _bernoulli_entropy(p):
    return -p * sp.log(p) - (1 - p) * sp.log(1 - p)


def _categorical_entropy(*ps):
    return -sp.Add(*[p * sp.log(p) for p in ps])


def _laplace_entropy(m, b):
    return 1 + sp.log(2 * b)


# --- KL divergences between members of one family --------------------------

def _normal_kl(q, p):
    (m1, s1), (m2, s2) = q, p
    return sp.log(s2) - sp.log(s1) + (s1 ** 2 + (m1 - m2) ** 2) / (2 * s2 ** 2) - sp.Rational(1, 2)


def _gamma_kl(q, p):
    (a1, b1), (a2, b2) = q, p
    return ((a1 - a2) * sp.digamma(a1) - sp.loggamma(a1) + sp.loggamma(a2)
            + a2 * (sp.log(b1) - sp.log(b2)) + a1 * (b2 - b1) / b1)


def _exponential_kl(q, p):
    (l1,), (l2,) = q, p
    return sp.log(l1) - sp.log(l2) + l2 / l1 - 1


def _beta_kl(q, p):
    (a1, b1), (a2, b2) = q, p
    return (_log_beta_fn(a2, b2) - _log_beta_fn(a1, b1) + (a1 - a2) * sp.digamma(a1)
            + (b1 - b2) * sp.digamma(b1) + (a2 - a1 + b2 - b1) * sp.digamma(a1 + b1))


def _poisson_kl(q, p):
    (l1,), (l2,) = q, p
    return l1 * (sp.log(l1) - sp.log(l2)) + l2 - l1


def _bernoulli_kl(q, p):
    (p1,), (p2,) = q, p
    return (p1 * (sp.log(p1) - sp.log(p2))
            + (1 - p1) * (sp.log(1 - p1) - sp.log(1 - p2)))


def _categorical_kl(q, p):
    return sp.Add(*[a * (sp.log(a) - sp.log(b)) for a, b in zip(q, p)])


def _laplace_kl(q, p):
    (m1, b1), (m2, b2) = q, p
    d = sp.Abs(m1 - m2)
    return sp.log(b2) - sp.log(b1) + (b1 * sp.exp(-d / b1) + d) / b2 - 1


FAMILIES: dict[str, Family] = {f.name: f for f in [
    Family("Normal", ("mean", "std"), (D_REAL, D_POSITIVE), REAL,
           _normal_logpdf, _normal_entropy, _normal_kl, _normal_expect),
    Family("Beta", ("a", "b"), (D_POSITIVE, D_POSITIVE), UNIT,
           _beta_logpdf, _beta_entropy, _beta_kl, _beta_expect),
    Family("Gamma", ("shape", "rate"), (D_POSITIVE, D_POSITIVE), POSITIVE,
           _gamma_logpdf, _gamma_entropy, _gamma_kl, _gamma_expect,
           conditional_fn=_gamma_conditional),
    Family("Exponential", ("rate",), (D_POSITIVE,), POSITIVE,
           _exponential_logpdf, _exponential_entropy, _exponential_kl, _exponential_expect,
           conditional_fn=_exponential_conditional, data_zero=True),
    Family("Poisson", ("rate",), (D_POSITIVE,), COUNTS,
           _poisson_logpdf, None, _poisson_kl, _poisson_expect, discrete=True),
    Family("Bernoulli", ("p",), (D_PROB,), BINARY,
           _bernoulli_logpdf, _bernoulli_entropy, _bernoulli_kl, None, discrete=True),
    Family("Binomial", ("n", "p"), (D_COUNT, D_PROB), BOUNDED_COUNTS,
           _binomial_logpdf, None, None, _binomial_expect, discrete=True),
    Family("Categorical", ("p",), (D_PROB,), FINITE,
           _categorical_logpdf, _categorical_entropy, _categorical_kl, None,
           variadic=True, discrete=True),
    Family("Laplace", ("loc", "scale"), (D_REAL, D_POSITIVE), REAL,
           _laplace_logpdf, _laplace_entropy, _laplace_kl, _laplace_expect,
           conditional_fn=_laplace_conditional),
]}


def get_family(name: str) -> Family | None:
    """The family called ``name`` (case-sensitive, as scipy/torch spell it), or None."""
    return FAMILIES.get(name)


def support_contains(outer: str, inner: str) -> bool:
    """Whether the support ``outer`` contains the support ``inner``."""
    if outer == inner:
        return True
    # Continuous and discrete supports never contain each other: a density and
    # a mass function are with respect to different measures.
    order = {REAL: {POSITIVE, UNIT},
             POSITIVE: {UNIT},
             COUNTS: {BINARY, FINITE, BOUNDED_COUNTS}}
    return inner in order.get(outer, set())


def mp_eval(expr: sp.Expr, env: dict) -> "mpmath.mpf":
    """Evaluate a SymPy expression with mpmath at the current precision, symbols from ``env``.

    A small tree walk over the functions the table uses: no code generation,
    so nothing derived from a user's file is ever compiled or executed.
    """
    import mpmath

    def ev(e):
        if e.is_Symbol:
            try:
                return env[e]
            except KeyError:
                raise ValueError(f"no value for {e}") from None
        if e.is_Integer:
            return mpmath.mpf(int(e))
        if e.is_Rational:
            return mpmath.mpf(int(e.p)) / int(e.q)
        if e.is_Float:
            return mpmath.mpf(e._mpf_)
        if e is sp.pi:
            return +mpmath.pi
        if e is sp.E:
            return +mpmath.e
        if e.is_NumberSymbol or (e.is_number and not e.args):
            return mpmath.mpf(sp.Float(e.evalf(mpmath.mp.dps + 10), mpmath.mp.dps + 10)._mpf_)
        if e.is_Add:
            return mpmath.fsum(ev(a) for a in e.args)
        if e.is_Mul:
            out = mpmath.mpf(1)
            for a in e.args:
                out *= ev(a)
            return out
        if e.is_Pow:
            b, x = e.args
            if x.is_Integer:
                return ev(b) ** int(x)
            return mpmath.power(ev(b), ev(x))
        f = e.func
        if f is sp.log:
            return mpmath.log(ev(e.args[0]))
        if f is sp.exp:
            return mpmath.exp(ev(e.args[0]))
        if f is sp.loggamma:
            return mpmath.loggamma(ev(e.args[0]))
        if f is sp.gamma:
            return mpmath.gamma(ev(e.args[0]))
        if f is sp.digamma:
            return mpmath.digamma(ev(e.args[0]))
        if f is sp.polygamma:
            return mpmath.polygamma(int(e.args[0]), ev(e.args[1]))
        if f is sp.Abs:
            return abs(ev(e.args[0]))
        if f is sp.sign:
            return mpmath.sign(ev(e.args[0]))
        if f is sp.Piecewise:
            for value, cond in e.args:
                if cond is sp.true or bool(cond.subs({s: sp.Float(str(v), 40)
                                                      for s, v in env.items()})):
                    return ev(value)
            raise ValueError("no branch of a piecewise expression applies")
        raise ValueError(f"cannot evaluate {f.__name__} numerically")

    if isinstance(expr, int):
        expr = sp.Integer(expr)
    return ev(expr)
