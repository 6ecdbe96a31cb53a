"""Distribution families: log density, support, parameter domains and a table of closed forms.

Parametrisations follow scipy/torch: ``Normal(mean, std)``, ``Beta(a, b)``,
``Gamma(shape, rate)``, ``Exponential(rate)``, ``Poisson(rate)``,
``Bernoulli(p)``, ``Binomial(n, p)``, ``Categorical(p_1, ..., p_K)`` (values
``0..K-1``), ``Laplace(loc, scale)``, ``LogNormal(loc, scale)`` (log x is
Normal(loc, scale)), ``InverseGamma(shape, scale)`` (1/x is Gamma(shape,
scale)), ``HalfNormal(scale)`` (|y| for y ~ Normal(0, scale)),
``StudentT(df, loc, scale)`` and ``Uniform(low, high)`` (the open interval: a
support given by the parameters, :data:`INTERVAL`).

Every expectation, entropy and KL divergence here is a closed form from a
table, never a call to ``sympy.integrate``: symbolic integration is slow and
often fails on these integrals. Each entry is checked against its integral or
sum definition in ``tests/test_families.py``.

Some expectations are finite only on part of the parameter domain: E[x**-k]
under Gamma(a, b) needs a > k, E[exp(c x)] under Laplace(m, b) needs
|c| b < 1, E[x**k] under InverseGamma(a, b) needs a > k, E[x**2] under
StudentT(nu, m, s) needs nu > 2. :meth:`Family.expect_where` gives such an entry with its
conditions (expressions that must be positive); outside them the expectation
is +infinity, and the formula, which stays finite there, must not be used.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import mpmath
import sympy as sp

# Supports.
REAL = "real"            # the real line
POSITIVE = "positive"    # (0, oo)
UNIT = "unit"            # (0, 1)
COUNTS = "counts"        # 0, 1, 2, ...
BINARY = "binary"        # {0, 1}
FINITE = "finite"        # {0, ..., K-1}
BOUNDED_COUNTS = "0..n"  # {0, ..., n}
INTERVAL = "interval"    # (low, high): the first two parameters

SUPPORT_TEXT = {
    REAL: "the real line",
    POSITIVE: "the positive reals",
    UNIT: "the open interval (0, 1)",
    COUNTS: "the counts 0, 1, 2, ...",
    BINARY: "{0, 1}",
    FINITE: "{0, ..., K-1}",
    BOUNDED_COUNTS: "{0, ..., n}",
    INTERVAL: "the interval (low, high)",
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
    if support == INTERVAL:
        return math.isfinite(value) and params[0] < value < params[1]
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
    if support == INTERVAL:
        lo, hi = float(params[0]), float(params[1])
        return bool(((arr > lo) & (arr < hi)).all())
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


def _abs_linear(part: sp.Expr, x: sp.Symbol) -> tuple[sp.Expr, sp.Expr] | None:
    """(c, t) when ``part`` is |c*(x - t)| with c != 0 and c, t free of x, else None."""
    if not isinstance(part, sp.Abs):
        return None
    arg = sp.expand(part.args[0])
    c = arg.coeff(x, 1)
    d = sp.expand(arg - c * x)
    if c == 0 or c.has(x) or d.has(x):
        return None
    return c, -d / c


def _log_power(part: sp.Expr, x: sp.Symbol, inner=None) -> int | None:
    """The k >= 1 when ``part`` is log(inner)**k (inner = x by default), else None."""
    inner = x if inner is None else inner
    if isinstance(part, sp.log) and sp.expand(part.args[0] - inner) == 0:
        return 1
    if (isinstance(part, sp.Pow) and part.exp.is_Integer and part.exp > 0
            and isinstance(part.base, sp.log) and sp.expand(part.base.args[0] - inner) == 0):
        return int(part.exp)
    return None


def _real_power(part: sp.Expr, x: sp.Symbol) -> sp.Rational | None:
    """The rational r != 0 when ``part`` is x**r (any sign), else None."""
    if part == x:
        return sp.Integer(1)
    if isinstance(part, sp.Pow) and part.base == x and part.exp.is_Rational and part.exp != 0:
        return part.exp
    return None


def _normal_moment(k: int, m, s):
    """E[y**k] for y ~ Normal(m, s): E[(m + s Z)^k] with E[Z^j] = (j-1)!! for even j."""
    return sp.Add(*[sp.binomial(k, j) * m ** (k - j) * s ** j * _double_factorial_odd(j)
                    for j in range(0, k + 1, 2)])


def _xlogx(t):
    """t log t, 0 at t = 0 (its limit)."""
    return sp.Integer(0) if t == 0 else t * sp.log(t)


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

    def bounds(self, params) -> tuple[sp.Expr, sp.Expr] | None:
        """(low, high) of a continuous family's support (sp.oo for an open end), else None."""
        if self.support == INTERVAL:
            return params[0], params[1]
        return {REAL: (-sp.oo, sp.oo), POSITIVE: (sp.Integer(0), sp.oo),
                UNIT: (sp.Integer(0), sp.Integer(1))}.get(self.support)

    def params_problem(self, params) -> str | None:
        """What is wrong with the parameters together (low < high of a Uniform), or None."""
        if self.support == INTERVAL:
            lo, hi = params[0], params[1]
            if (hi - lo).is_positive is False:
                return f"the low of {self.name} must be below its high, got {lo} and {hi}"
        return None

    def location_scale(self, params) -> tuple[sp.Expr, sp.Expr]:
        """(a centre, a squared spread) of the distribution, where a quadrature looks first:
        the mean and variance when they are in the table, else a mode and a width."""
        if self.name == "StudentT":
            return params[1], params[2] ** 2
        if self.name == "InverseGamma":
            a, b = params
            mode = b / (a + 1)
            return mode, mode ** 2 / a
        x = sp.Dummy("x", real=True)
        mean = self.expect(x, x, params)
        return mean, self.expect(x ** 2, x, params) - mean ** 2

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


def categorical_indicator_logpdf(x: sp.Expr, ps) -> sp.Expr:
    """log Categorical(x | p_0, ..., p_{K-1}) = sum_k [x = k] log p_k, as a sum: where the
    p_k are latents (a Dirichlet), each term is a function of x times one of theirs, which
    a mean-field expectation takes factor by factor (a Piecewise would hold both)."""
    return sp.Add(*[sp.KroneckerDelta(x, k) * sp.log(p) for k, p in enumerate(ps)])


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
        absolute = _abs_linear(part, x)
        if absolute is not None:
            # E|c (x - t)| = |c| (s sqrt(2/pi) exp(-d^2 / (2 s^2)) + d erf(d / (s sqrt 2))),
            # d = m - t: the mean of a folded normal (a Laplace likelihood's |x_i - theta|)
            c, t = absolute
            d = m - t
            return sp.Abs(c) * (s * sp.sqrt(2 / sp.pi) * sp.exp(-d ** 2 / (2 * s ** 2))
                                + d * sp.erf(d / (s * sp.sqrt(2))))
        linear = _exp_linear(part, x)
        if linear is None:
            return None
        # the moment generating function: E[exp(c x + d)] = exp(c m + c^2 s^2 / 2 + d)
        c, d = linear
        return sp.exp(c * m + c ** 2 * s ** 2 / 2 + d)
    return _normal_moment(k, m, s)


def _gamma_expect(part, x, a, b):
    k = _power(part, x)
    if k is not None:
        return sp.Mul(*[a + i for i in range(k)]) / b ** k
    if _is_log(part, x):
        return sp.digamma(a) - sp.log(b)
    if _log_power(part, x) == 2:
        # log x = psi(a) - log b + a centred part of variance psi'(a)
        return sp.polygamma(1, a) + (sp.digamma(a) - sp.log(b)) ** 2
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
    la, lb = sp.digamma(a) - sp.digamma(a + b), sp.digamma(b) - sp.digamma(a + b)
    if _log_power(part, x) == 2:
        return sp.polygamma(1, a) - sp.polygamma(1, a + b) + la ** 2
    if _log_power(part, x, 1 - x) == 2:
        return sp.polygamma(1, b) - sp.polygamma(1, a + b) + lb ** 2
    factors = sp.Mul.make_args(part)
    if len(factors) == 2 and {_log_power(f, x) for f in factors} == {1, None} \
            and {_log_power(f, x, 1 - x) for f in factors} == {1, None} \
            and all(_log_power(f, x) == 1 or _log_power(f, x, 1 - x) == 1 for f in factors):
        # Cov[log x, log(1 - x)] = -psi'(a + b)
        return la * lb - sp.polygamma(1, a + b)
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
    absolute = _abs_linear(part, x)
    if absolute is not None:
        # E|c (x - t)| = |c| (d + b exp(-d / b)), d = |m - t|
        c, t = absolute
        d = sp.Abs(m - t)
        return sp.Abs(c) * (d + b * sp.exp(-d / b))
    k = _power(part, x)
    if k is None:
        return None
    # E[(m + b Y)^k] with E[Y^j] = j! for even j, 0 for odd j (Y standard Laplace)
    return sp.Add(*[sp.binomial(k, j) * m ** (k - j) * b ** j * sp.factorial(j)
                    for j in range(0, k + 1, 2)])


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


# --- LogNormal, InverseGamma, HalfNormal, StudentT, Uniform ------------------

def _lognormal_logpdf(x, m, s):
    return -sp.log(x) - sp.log(s) - sp.log(2 * sp.pi) / 2 - (sp.log(x) - m) ** 2 / (2 * s ** 2)


def _lognormal_expect(part, x, m, s):
    r = _real_power(part, x)
    if r is not None:
        # E[x^r] = E[exp(r y)], y ~ Normal(m, s): finite for every real r
        return sp.exp(r * m + r ** 2 * s ** 2 / 2)
    k = _log_power(part, x)
    if k is not None:
        return _normal_moment(k, m, s)
    return None


def _lognormal_entropy(m, s):
    return m + sp.log(s) + sp.log(2 * sp.pi) / 2 + sp.Rational(1, 2)


def _inverse_gamma_logpdf(x, a, b):
    return a * sp.log(b) - sp.loggamma(a) - (a + 1) * sp.log(x) - b / x


def _inverse_gamma_expect(part, x, a, b):
    # y = 1/x ~ Gamma(a, b): x^-k is y^k, log x is -log y, (log x)^2 is (log y)^2
    k = _negative_power(part, x)
    if k is not None:
        return _gamma_expect(x ** k, x, a, b)
    if _is_log(part, x):
        return -_gamma_expect(sp.log(x), x, a, b)
    if _log_power(part, x) == 2:
        return _gamma_expect(sp.log(x) ** 2, x, a, b)
    return None


def _inverse_gamma_conditional(part, x, a, b):
    # E[x^k] = b^k / ((a - 1) ... (a - k)) for a > k; the tail x^(k - a - 1) is not
    # integrable at infinity otherwise
    k = _power(part, x)
    if k is None:
        return None
    return b ** k / sp.Mul(*[a - i for i in range(1, k + 1)]), [(a - k, f"the shape minus {k}")]


def _inverse_gamma_entropy(a, b):
    return a + sp.log(b) + sp.loggamma(a) - (1 + a) * sp.digamma(a)


def _inverse_gamma_kl(q, p):
    # x -> 1/x maps InverseGamma(a, b) to Gamma(a, b); a KL is invariant under a bijection
    return _gamma_kl(q, p)


def _half_normal_logpdf(x, s):
    return sp.log(2) / 2 - sp.log(sp.pi) / 2 - sp.log(s) - x ** 2 / (2 * s ** 2)


def _half_normal_expect(part, x, s):
    k = _power(part, x)
    if k is not None:
        # E|s Z|^k = s^k 2^(k/2) Gamma((k + 1)/2) / sqrt(pi)
        return s ** k * 2 ** sp.Rational(k, 2) * sp.gamma(sp.Rational(k + 1, 2)) / sp.sqrt(sp.pi)
    # log|Z| = log(Z^2)/2 with Z^2 ~ Gamma(1/2, 1/2): mean -(gamma + log 2)/2, variance pi^2/8
    mean = sp.log(s) - (sp.EulerGamma + sp.log(2)) / 2
    if _is_log(part, x):
        return mean
    if _log_power(part, x) == 2:
        return sp.pi ** 2 / 8 + mean ** 2
    return None


def _half_normal_entropy(s):
    return sp.log(s) + sp.log(sp.pi / 2) / 2 + sp.Rational(1, 2)


def _half_normal_kl(q, p):
    (s1,), (s2,) = q, p
    return sp.log(s2) - sp.log(s1) + s1 ** 2 / (2 * s2 ** 2) - sp.Rational(1, 2)


def _student_logpdf(x, nu, m, s):
    return (sp.loggamma((nu + 1) / 2) - sp.loggamma(nu / 2) - sp.log(nu * sp.pi) / 2 - sp.log(s)
            - (nu + 1) / 2 * sp.log(1 + (x - m) ** 2 / (nu * s ** 2)))


def _student_expect(part, x, nu, m, s):
    # the odd moments exist only for df > 1 (and are then m for k = 1): given only when
    # df > 1 is known, since an undefined mean is not an infinite one
    if part == x and (nu - 1).is_positive:
        return m
    if isinstance(part, sp.log):
        # E[log(A + B (x - m)^2)] = log A + psi((nu+1)/2) - psi(nu/2) when B/A = 1/(nu s^2)
        # (the Student's own kernel: (x - m)^2 / (nu s^2) ~ BetaPrime(1/2, nu/2))
        inner = sp.expand(part.args[0])
        if inner.has(x) and inner.is_polynomial(x) and sp.degree(inner, x) == 2:
            c2, c1, c0 = (inner.coeff(x, j) for j in (2, 1, 0))
            if c2 != 0 and sp.simplify(-c1 / (2 * c2) - m) == 0:
                a = sp.simplify(c0 - c1 ** 2 / (4 * c2))
                if sp.simplify(c2 / a - 1 / (nu * s ** 2)) == 0:
                    return sp.log(a) + sp.digamma((nu + 1) / 2) - sp.digamma(nu / 2)
    return None


def _student_conditional(part, x, nu, m, s):
    # E[x^2] = m^2 + s^2 nu / (nu - 2) for nu > 2; the tail |x|^(1 - nu) is not
    # integrable otherwise (x^2 > 0, so the expectation is then +infinity)
    if _power(part, x) == 2:
        return m ** 2 + s ** 2 * nu / (nu - 2), [(nu - 2, "the df minus 2")]
    return None


def _student_entropy(nu, m, s):
    return ((nu + 1) / 2 * (sp.digamma((nu + 1) / 2) - sp.digamma(nu / 2))
            + sp.log(nu) / 2 + _log_beta_fn(nu / 2, sp.Rational(1, 2)) + sp.log(s))


def _uniform_logpdf(x, lo, hi):
    return -sp.log(hi - lo)


def _uniform_expect(part, x, lo, hi):
    k = _power(part, x)
    if k is not None:
        return (hi ** (k + 1) - lo ** (k + 1)) / ((k + 1) * (hi - lo))
    if _is_log(part, x) and lo.is_nonnegative:
        # the integral of log t over (lo, hi) is [t log t - t]
        return (_xlogx(hi) - _xlogx(lo)) / (hi - lo) - 1
    if _is_log1m(part, x) and (1 - hi).is_nonnegative:
        return (_xlogx(1 - lo) - _xlogx(1 - hi)) / (hi - lo) - 1
    linear = _exp_linear(part, x)
    if linear is not None:
        c, d = linear
        return sp.exp(d) * (sp.exp(c * hi) - sp.exp(c * lo)) / (c * (hi - lo))
    absolute = _abs_linear(part, x)
    if absolute is not None:
        # E|c (x - t)|: the integral of |u| over (lo - t, hi - t), of sign u * u^2 / 2
        c, t = absolute
        u, v = lo - t, hi - t
        if u.is_number and v.is_number:
            return sp.Abs(c) * (sp.sign(v) * v ** 2 - sp.sign(u) * u ** 2) / (2 * (hi - lo))
    return None


def _uniform_entropy(lo, hi):
    return sp.log(hi - lo)


def _uniform_kl(q, p):
    # finite only when q's interval lies inside p's (the model checks the supports)
    (c, d), (a, b) = q, p
    return sp.log(b - a) - sp.log(d - c)


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
    Family("LogNormal", ("loc", "scale"), (D_REAL, D_POSITIVE), POSITIVE,
           _lognormal_logpdf, _lognormal_entropy, _normal_kl, _lognormal_expect),
    Family("InverseGamma", ("shape", "scale"), (D_POSITIVE, D_POSITIVE), POSITIVE,
           _inverse_gamma_logpdf, _inverse_gamma_entropy, _inverse_gamma_kl,
           _inverse_gamma_expect, conditional_fn=_inverse_gamma_conditional),
    Family("HalfNormal", ("scale",), (D_POSITIVE,), POSITIVE,
           _half_normal_logpdf, _half_normal_entropy, _half_normal_kl, _half_normal_expect,
           data_zero=True),
    Family("StudentT", ("df", "loc", "scale"), (D_POSITIVE, D_REAL, D_POSITIVE), REAL,
           _student_logpdf, _student_entropy, None, _student_expect,
           conditional_fn=_student_conditional),
    Family("Uniform", ("low", "high"), (D_REAL, D_REAL), INTERVAL,
           _uniform_logpdf, _uniform_entropy, _uniform_kl, _uniform_expect),
]}


def get_family(name: str) -> Family | None:
    """The family called ``name`` (case-sensitive, as scipy/torch spell it), or None."""
    return FAMILIES.get(name)


def support_inside(outer: Family, outer_params, inner: Family, inner_params) -> bool | None:
    """Whether the support of ``inner(inner_params)`` lies inside that of ``outer(outer_params)``:
    True, False, or None when the parameters leave it undecided. For supports fixed by the
    family it is :func:`support_contains`; an interval (Uniform) is compared by its ends."""
    if INTERVAL not in (outer.support, inner.support):
        return support_contains(outer.support, inner.support)
    a, b = outer.bounds(outer_params) or (None, None)
    c, d = inner.bounds(inner_params) or (None, None)
    if a is None or c is None:
        return False  # a discrete support and an interval: different measures
    low = sp.true if a == -sp.oo else sp.Ge(c, a) if c != -sp.oo else sp.false
    high = sp.true if b == sp.oo else sp.Le(d, b) if d != sp.oo else sp.false
    both = [low, high]
    if all(r is sp.true for r in both):
        return True
    if any(r is sp.false for r in both):
        return False
    return None


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
        if e is sp.oo or e is -sp.oo:
            return mpmath.inf if e is sp.oo else -mpmath.inf
        if e is sp.zoo or e is sp.nan:
            return mpmath.nan
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
        if f is sp.erf:
            return mpmath.erf(ev(e.args[0]))
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
