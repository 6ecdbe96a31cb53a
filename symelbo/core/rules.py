"""The registry of named, sound rules: one place to read them all.

Each :class:`Rule` is a frozen record: its public name (the vocabulary of
``by``), the relation it yields, the law in LaTeX, its side conditions in
words, and the node rewrites that implement it. A rewrite acts at ONE node
and returns the rewritten node or None; traversal lives in
:mod:`symelbo.core.normalize`, apart from the mathematics.

Equality rules rewrite towards a normal form (definitions unfolded, logs of
products split, conditionals written as joint over marginal, linear operators
pushed through sums). Inequality rules (``jensen``, ``gibbs_inequality``)
instead offer ``weaken``: replace a subterm by one that is never larger.

Side conditions are checked where the rule fires, never assumed:
positivity (a log is split only when every factor is known positive),
normalisation (every density of the semantics is normalised over its
arguments), independence (a factor leaves an expectation, a sum or a
gradient only when none of the bound variables or the parameter occur in it),
concavity (Jensen only for the concave ``log`` of a positive integrand).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import sympy as sp

from symelbo.core.notation import ELBO, KL, Density, Entropy, Expectation, Gradient, Marginal, known_positive

__all__ = ["Rule", "RULES", "EXPAND_OPTIONS", "known_positive", "is_constant_in"]

Rewrite = Callable[[sp.Expr], Optional[sp.Expr]]


@dataclass(frozen=True)
class Rule:
    """A named law with its side conditions and the node rewrites that apply it."""

    name: str
    relation: str            # "=" or ">=" (the rewritten side is never larger)
    law: str                 # one-line LaTeX statement
    conditions: str          # side conditions, in words
    rewrites: tuple[Rewrite, ...] = ()
    weaken: Optional[Rewrite] = None      # inequality rules: big -> small at a node
    strengthen: Optional[Rewrite] = None  # inequality rules: small -> big at a node
    #: the law in the very form ``law`` states it, where ``rewrites`` reach a split form
    #: that normalizes better: a step that applies the law as stated is one rewrite
    stated: tuple[Rewrite, ...] = ()

    @property
    def is_inequality(self) -> bool:
        return self.relation != "="


# ---------------------------------------------------------------------------
# side conditions
# ---------------------------------------------------------------------------

def is_constant_in(expr: sp.Expr, symbols) -> bool:
    """True when none of ``symbols`` occurs free in ``expr`` (bound occurrences do not count)."""
    return not (expr.free_symbols & set(symbols))


def _split_factors(expr: sp.Expr, symbols):
    """Split a product into (factors free of ``symbols``, the rest)."""
    factors = sp.Mul.make_args(expr)
    const = [f for f in factors if is_constant_in(f, symbols)]
    rest = [f for f in factors if not is_constant_in(f, symbols)]
    return sp.Mul(*const), sp.Mul(*rest)


# ---------------------------------------------------------------------------
# definitions
# ---------------------------------------------------------------------------

def _kl_unfold(e):
    """KL(a || b) -> E_a[log a - log b]."""
    if isinstance(e, KL):
        return Expectation(e.first, sp.log(e.first) - sp.log(e.second))
    return None


def _kl_stated(e):
    """KL(a || b) -> E_a[log(a/b)], the definition as written."""
    if isinstance(e, KL):
        return Expectation(e.first, sp.log(e.first / e.second))
    return None


def _kl_stated_negated(e):
    """KL(a || b) -> -E_a[log(b/a)], the definition's other written form."""
    if isinstance(e, KL):
        return -Expectation(e.first, sp.log(e.second / e.first))
    return None


def _entropy_unfold(e):
    """H[a] -> -E_a[log a]."""
    if isinstance(e, Entropy):
        return -Expectation(e.density, sp.log(e.density))
    return None


def _elbo_unfold(e):
    """ELBO(q, p) -> E_q[log p - log q]."""
    if isinstance(e, ELBO):
        return Expectation(e.variational, sp.log(e.joint) - sp.log(e.variational))
    return None


def _elbo_stated(e):
    """ELBO(q, p) -> E_q[log(p/q)], the definition as written."""
    if isinstance(e, ELBO):
        return Expectation(e.variational, sp.log(e.joint / e.variational))
    return None


def _own_density_log(e):
    """Inside E_a[...], log(a^k * r) -> k log a + log r: the written forms of a definition.

    KL, entropy and ELBO are defined as E_a[log(a/b)], -E_a[log(b/a)],
    E_a[log(1/a)] alike; splitting off the expectation's own density from
    a log lets any of these forms match the unfolded definition. Sound: a is
    a density, hence positive, and r is positive when every factor is.
    """
    if not isinstance(e, Expectation):
        return None
    own = e.density

    def split(node):
        if isinstance(node, sp.log) and node.args[0].is_Mul or (
                isinstance(node, sp.log) and node.args[0].is_Pow):
            factors = sp.Mul.make_args(node.args[0])
            if not all(known_positive(f) for f in factors):
                return None
            power = sp.S.Zero
            rest = []
            for f in factors:
                base, exp = f.as_base_exp()
                if base == own and exp.is_Number:
                    power += exp
                else:
                    rest.append(f)
            if power == 0:
                return None
            logs = []
            for f in rest:
                base, exp = f.as_base_exp()
                logs.append(exp * sp.log(base) if exp.is_Number else sp.log(f))
            return power * sp.log(own) + sp.Add(*logs)
        return None

    body = e.body.replace(lambda n: split(n) is not None, split)
    return None if body == e.body else Expectation(own, body)


def _expectation_to_sum(e):
    """E_a[f] -> sum over the arguments of a of a * f."""
    if not isinstance(e, Expectation):
        return None
    body = e.density * e.body
    for var in reversed(e.density.variables):
        body = Marginal(var, body)
    return body


# ---------------------------------------------------------------------------
# logarithms
# ---------------------------------------------------------------------------

def _log_quotient(e):
    """log(n / d) -> log n - log d, for positive n and d."""
    if not isinstance(e, sp.log):
        return None
    factors = sp.Mul.make_args(e.args[0])
    # a number's denominator counts too: p(X)/2 is p(X) * (1/2)
    fraction = [f for f in factors if f.is_Rational and f.q != 1]
    den = [f for f in factors if f.is_Pow and f.exp.is_negative]
    if not (den or fraction) or not all(known_positive(f) for f in factors):
        return None
    num = [f for f in factors if f not in den and f not in fraction] + [sp.Integer(f.p) for f in fraction]
    return (sp.log(sp.Mul(*num))
            - sp.log(sp.Mul(*[1 / f for f in den], *[sp.Integer(f.q) for f in fraction])))


def _log_product(e):
    """log(a * b) -> log a + log b, for positive a and b."""
    if not isinstance(e, sp.log) or not e.args[0].is_Mul:
        return None
    factors = sp.Mul.make_args(e.args[0])
    if not all(known_positive(f) for f in factors):
        return None
    # a reciprocal factor: log(1/b) = -log b, since log b + log(1/b) = log 1
    return sp.Add(*[-sp.log(f.base) if f.is_Pow and f.exp == -1 else sp.log(f) for f in factors])


def _log_power(e):
    """log(a^k) -> k log a, for positive a and real k."""
    if isinstance(e, sp.log) and e.args[0].is_Pow:
        base, exp = e.args[0].as_base_exp()
        if known_positive(base) and exp.is_extended_real:
            return exp * sp.log(base)
    return None


def _log_exp(e):
    """log(exp(x)) -> x, for real x."""
    if isinstance(e, sp.log) and isinstance(e.args[0], sp.exp) and e.args[0].args[0].is_extended_real:
        return e.args[0].args[0]
    return None


# ---------------------------------------------------------------------------
# densities
# ---------------------------------------------------------------------------

def _conditional_to_joint(e):
    """p(A | B) -> p(A, B) / p(B): the conditional is the joint over the marginal."""
    if isinstance(e, Density) and e.given:
        joint = e.with_variables(e.variables + e.given)
        return joint / e.with_variables(e.given)
    return None


def _marginalize(e):
    """sum_V[c * p(A | B)] -> c * p(A \\ V | B), and -> c when A = {V} (normalisation)."""
    if not isinstance(e, Marginal):
        return None
    var = e.variable
    const, rest = _split_factors(e.body, [var])
    target, inner = rest, None
    if isinstance(rest, Gradient) and isinstance(rest.body, Density):
        # sum_V[grad p(A)] = grad sum_V[p(A)]: the sum is finite, or dominated for densities
        target, inner = rest.body, rest.parameter
    if not isinstance(target, Density) or var not in target.variables:
        return None
    remaining = [v for v in target.variables if v != var]
    result = target.with_variables(remaining, target.given) if remaining else sp.S.One
    if inner is not None:
        result = Gradient(inner, result) if remaining else sp.S.Zero
    return const * result


# ---------------------------------------------------------------------------
# linear operators
# ---------------------------------------------------------------------------

def _linear(kind, bound_of, rebuild):
    """Push a linear operator through sums and pull out factors free of its bound symbols."""

    def rewrite(e):
        if not isinstance(e, kind):
            return None
        body = sp.expand(e.body, **EXPAND_OPTIONS)
        bound = bound_of(e)
        if body.is_Add:
            return sp.Add(*[rebuild(e, term) for term in body.args])
        const, rest = _split_factors(body, bound)
        if rest == 1:  # a constant body: only its numeric coefficient comes out
            const, rest = body.as_coeff_Mul()
        if const != 1 and rest != 1:
            return const * rebuild(e, rest)
        return None

    return rewrite


_linear_expectation = _linear(Expectation, lambda e: e.density.variables,
                              lambda e, body: Expectation(e.density, body))
_linear_sum = _linear(Marginal, lambda e: [e.variable], lambda e, body: Marginal(e.variable, body))
_linear_gradient = _linear(Gradient, lambda e: [e.parameter], lambda e, body: Gradient(e.parameter, body))


def _expectation_constant(e):
    """E_a[c] -> c when c does not depend on the variables of a (a is normalised)."""
    if isinstance(e, Expectation) and is_constant_in(e.body, e.density.variables):
        return e.body
    return None


def _gradient_constant(e):
    """grad_phi[c] -> 0 when c does not depend on phi."""
    if isinstance(e, Gradient) and is_constant_in(e.body, [e.parameter]):
        return sp.S.Zero
    return None


def _differentiate(e):
    """grad_phi[f]: product, quotient, chain and Leibniz rules, down to grad_phi[q_phi(Z)]."""
    if not isinstance(e, Gradient):
        return None
    phi, body = e.parameter, e.body
    d = lambda f: Gradient(phi, f)
    if is_constant_in(body, [phi]):
        return sp.S.Zero
    if body == phi:
        return sp.S.One
    if body.is_Add:
        return sp.Add(*[d(t) for t in body.args])
    if body.is_Mul:
        factors = body.args
        return sp.Add(*[sp.Mul(*(factors[:i] + (d(f),) + factors[i + 1:]))
                        for i, f in enumerate(factors)])
    if body.is_Pow:
        base, exp = body.as_base_exp()
        if is_constant_in(exp, [phi]) and (exp.is_integer or known_positive(base)):
            # a fractional power of what may be 0 (the square root of phi^2) has no
            # derivative there
            return exp * base ** (exp - 1) * d(base)
        if known_positive(base):
            return body * d(exp * sp.log(base))
        return None
    if isinstance(body, sp.log) and known_positive(body.args[0]):
        return d(body.args[0]) / body.args[0]
    if isinstance(body, sp.exp):
        return body * d(body.args[0])
    if isinstance(body, Marginal):
        return Marginal(body.variable, d(body.body))
    if isinstance(body, Expectation) and is_constant_in(body.density, [phi]):
        return Expectation(body.density, d(body.body))
    # an expectation under q_phi, a KL, an entropy: their definitions must be named
    # (definition_expectation, definition_kl...) before they can be differentiated
    return None


# ---------------------------------------------------------------------------
# inequalities
# ---------------------------------------------------------------------------

def _jensen_weaken(e):
    """log E_a[f] -> E_a[log f] (never larger: log is concave; f must be positive)."""
    if isinstance(e, sp.log) and isinstance(e.args[0], Expectation):
        inner = e.args[0]
        if known_positive(inner.body):
            return Expectation(inner.density, sp.log(inner.body))
    return None


def _jensen_strengthen(e):
    """E_a[log f] -> log E_a[f] (never smaller), for positive f."""
    if isinstance(e, Expectation) and isinstance(e.body, sp.log) and known_positive(e.body.args[0]):
        return sp.log(Expectation(e.density, e.body.args[0]))
    return None


def _gibbs_weaken(e):
    """KL(a || b) -> 0 (Gibbs: a KL divergence is never negative)."""
    if isinstance(e, KL):
        return sp.S.Zero
    return None


EXPAND_OPTIONS = dict(deep=True, mul=True, multinomial=True, power_exp=False, power_base=False,
               log=False, basic=False)


def _rule(name, relation, law, conditions, *rewrites, weaken=None, strengthen=None, stated=()):
    return Rule(name, relation, law, conditions, tuple(rewrites), weaken, strengthen, tuple(stated))


_ALL = (
    _rule("definition_kl", "=",
          r"\operatorname{KL}(q \,\|\, p) = \mathbb{E}_{q}\left[\log \frac{q}{p}\right] "
          r"= -\mathbb{E}_{q}\left[\log \frac{p}{q}\right]",
          "q and p are densities over the same variables", _kl_unfold, _own_density_log,
          stated=(_kl_stated, _kl_stated_negated)),
    _rule("definition_expectation", "=",
          r"\mathbb{E}_{q(Z)}\left[f\right] = \sum_{Z} q(Z)\, f",
          "the sum runs over the variables of q", _expectation_to_sum),
    _rule("definition_entropy", "=",
          r"\operatorname{H}\left[q\right] = -\mathbb{E}_{q}\left[\log q\right]",
          "q is a density", _entropy_unfold, _own_density_log),
    _rule("definition_elbo", "=",
          r"\mathcal{L}(q) = \mathbb{E}_{q(Z)}\left[\log \frac{p(X, Z)}{q(Z)}\right]",
          "p(X, Z) is a joint density over the variables of q", _elbo_unfold, _own_density_log,
          stated=(_elbo_stated,)),
    _rule("log_quotient", "=", r"\log \frac{a}{b} = \log a - \log b",
          "a > 0 and b > 0", _log_quotient),
    _rule("log_product", "=", r"\log(a b) = \log a + \log b",
          "a > 0 and b > 0", _log_product),
    _rule("log_power", "=", r"\log a^{k} = k \log a", "a > 0, k real", _log_power, _log_exp),
    _rule("linearity_expectation", "=",
          r"\mathbb{E}_{q}\left[a f + b g\right] = a\,\mathbb{E}_{q}\left[f\right] + b\,\mathbb{E}_{q}\left[g\right]",
          "a and b do not depend on the variables of q (sums and integrals alike)",
          _linear_expectation, _linear_sum),
    _rule("expectation_constant", "=", r"\mathbb{E}_{q(Z)}\left[c\right] = c",
          "c does not depend on Z; q is normalised", _expectation_constant),
    _rule("bayes_rule", "=", r"p(Z \mid X) = \frac{p(X, Z)}{p(X)}",
          "p(X) > 0", _conditional_to_joint),
    _rule("product_rule", "=", r"p(X, Z) = p(Z \mid X)\, p(X)",
          "p(X) > 0", _conditional_to_joint),
    _rule("marginalization", "=", r"p(X) = \sum_{Z} p(X, Z)",
          "Z is one of the variables of the joint; a density sums to one over its variables",
          _marginalize),
    _rule("multiply_by_one", "=", r"f = \frac{q(Z)}{q(Z)}\, f", "q(Z) > 0"),
    _rule("jensen", ">=", r"\log \mathbb{E}_{q}\left[f\right] \ge \mathbb{E}_{q}\left[\log f\right]",
          "log is concave; f > 0", weaken=_jensen_weaken, strengthen=_jensen_strengthen),
    _rule("gibbs_inequality", ">=", r"\operatorname{KL}(q \,\|\, p) \ge 0",
          "q and p are normalised densities over the same variables", weaken=_gibbs_weaken),
    _rule("linearity_gradient", "=",
          r"\nabla_{\phi}\left(a f + b g\right) = a \nabla_{\phi} f + b \nabla_{\phi} g",
          "a and b do not depend on phi", _linear_gradient),
    _rule("gradient_constant", "=", r"\nabla_{\phi} c = 0", "c does not depend on phi",
          _gradient_constant),
    _rule("differentiation", "=",
          r"\nabla_{\phi} (f g) = g \nabla_{\phi} f + f \nabla_{\phi} g,\ "
          r"\nabla_{\phi} \log f = \frac{\nabla_{\phi} f}{f},\ "
          r"\nabla_{\phi} \sum_{Z} f = \sum_{Z} \nabla_{\phi} f",
          "f > 0 under a log; sums are finite or dominated", _differentiate),
    # the file's own hypotheses: their rewrites come from symelbo.core.hypotheses.active()
    _rule("assumption", "=",
          r"q(Z_1, Z_2) = q_1(Z_1)\, q_2(Z_2),\ "
          r"\mathbb{E}_{q(Z_1, Z_2)}\left[f\right] = \mathbb{E}_{q_2}\left[\mathbb{E}_{q_1}\left[f\right]\right]",
          "an assume: header of the file states the factorisation"),
    _rule("definition", "=",
          r"f(A) = \text{its body},\ "
          r"q(Z) = \frac{g(Z)}{\sum_{Z} g(Z)} \text{ for a density defined by propto}",
          "a define: header of the file names it"),
    _rule("normalisation", "=",
          r"q(Z) = r(Z) \text{ when } \frac{q(Z)}{r(Z)} \text{ does not depend on } Z",
          "q and r are densities over the same variables (each sums to one over them)"),
    _rule("algebra", "=", r"\text{field arithmetic: expand, collect, cancel}",
          "none (applied implicitly to every step)"),
)

#: name -> Rule: the public vocabulary of ``by``.
RULES: dict[str, Rule] = {rule.name: rule for rule in _ALL}

