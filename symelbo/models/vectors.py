"""Joint families over the components of a vector latent: Dirichlet and MultivariateNormal.

A vector latent ``w`` of K components has symbols w_0, ..., w_{K-1} (``w[k]``
in a parameter string). When its prior or q is a scalar family written with
``shape = K``, the components are independent and each is a latent of its own
(a diagonal Normal q is ``Normal(m, s)`` with vectors m and s). This module
holds the families that are *joint* over the K components:

- ``Dirichlet(alpha)`` on the simplex {w_k > 0, sum_k w_k = 1}: density
  Gamma(alpha_0) / prod_k Gamma(alpha_k) prod_k w_k^(alpha_k - 1), alpha_0 = sum_k alpha_k;
- ``MultivariateNormal(m, L)`` on R^K with mean m and covariance Sigma = L L^T,
  L lower triangular with a positive diagonal (torch's ``scale_tril``), so every
  value of the parameters is a valid covariance.

Their components are not independent, so an expectation of a term that touches
two of them comes from the joint law, never from a product of marginals:
Dirichlet moments prod_k w_k^(j_k) and the covariance of two logs; every
polynomial times exp(linear) under a MultivariateNormal from its moment
generating function M(t) = exp(t.m + t.Sigma.t / 2). A term that touches one
component uses its marginal: Beta(alpha_k, alpha_0 - alpha_k), Normal(m_k,
sqrt(Sigma_kk)). A parameter is a tuple: (alpha,) of K entries, or (m, L) with
L a K x K tuple of rows (zeros above the diagonal).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import sympy as sp

from symelbo.models import families as fam

#: The support of a Dirichlet: the open simplex (not a product of intervals).
SIMPLEX = "simplex"
#: The slots of a vector family's parameters.
VECTOR = "vector"      # K entries
LOWER = "lower"        # a K x K lower-triangular matrix

#: The most components a vector latent may have (the moment formulas and the
#: triangular solves grow with K; a K of thousands would be a hang, not a model).
MAX_COMPONENTS = 64


@dataclass(frozen=True)
class VectorFamily:
    """A family over all K components of a vector latent jointly."""

    name: str
    params: tuple[str, ...]
    slots: tuple[str, ...]
    #: Domain of a vector slot's entries, and of a lower-triangular slot's diagonal.
    domains: tuple[str, ...]
    #: The support of each component (SIMPLEX components lie in (0, 1)).
    support: str
    logpdf_fn: Callable
    entropy_fn: Callable
    kl_fn: Callable | None
    marginal_fn: Callable
    joint_fn: Callable
    discrete: bool = False
    variadic: bool = False
    data_zero: bool = False
    conditional_fn: None = None

    def check_arity(self, count: int) -> str | None:
        """None when ``count`` arguments fit (a Dirichlet may list its K concentrations)."""
        if self.name == "Dirichlet" and count >= 1:
            return None
        if count != len(self.params):
            return (f"{self.name} takes {len(self.params)} parameters "
                    f"({', '.join(self.params)}), got {count}")
        return None

    def domain_of(self, index: int) -> str:
        return self.domains[min(index, len(self.domains) - 1)]

    def param_name(self, index: int) -> str:
        return self.params[min(index, len(self.params) - 1)]

    def support_values(self, params):
        return None

    def params_problem(self, params) -> None:
        return None  # every domain is checked entry by entry

    def logpdf(self, zs, params) -> sp.Expr:
        """log density at the components ``zs`` (on the support)."""
        return self.logpdf_fn(tuple(zs), *params)

    def entropy(self, params) -> sp.Expr:
        """The differential entropy of the joint law."""
        return self.entropy_fn(*params)

    def kl(self, params_q, params_p) -> sp.Expr | None:
        """KL(self(params_q) || self(params_p)), or None when not in the table."""
        return self.kl_fn(tuple(params_q), tuple(params_p)) if self.kl_fn else None

    def marginal(self, index: int, params) -> tuple[fam.Family, tuple]:
        """(scalar family, its parameters) of component ``index`` alone."""
        return self.marginal_fn(index, *params)

    def joint_expect(self, part: sp.Expr, zs, params) -> sp.Expr | None:
        """E[part] for a part touching two or more components, or None when not in the table."""
        return self.joint_fn(part, tuple(zs), *params)


# --- Dirichlet ---------------------------------------------------------------

def _dirichlet_logpdf(zs, alpha):
    a0 = sp.Add(*alpha)
    return (sp.loggamma(a0) - sp.Add(*[sp.loggamma(a) for a in alpha])
            + sp.Add(*[(a - 1) * sp.log(z) for a, z in zip(alpha, zs)]))


def _dirichlet_entropy(alpha):
    # H = log B(alpha) + (alpha_0 - K) psi(alpha_0) - sum_k (alpha_k - 1) psi(alpha_k)
    a0, k = sp.Add(*alpha), len(alpha)
    return (sp.Add(*[sp.loggamma(a) for a in alpha]) - sp.loggamma(a0)
            + (a0 - k) * sp.digamma(a0) - sp.Add(*[(a - 1) * sp.digamma(a) for a in alpha]))


def _dirichlet_kl(q, p):
    # KL(Dir(a) || Dir(b)) = log Gamma(a_0) - sum log Gamma(a_k) - log Gamma(b_0)
    #   + sum log Gamma(b_k) + sum (a_k - b_k) (psi(a_k) - psi(a_0))
    (a,), (b,) = q, p
    a0, b0 = sp.Add(*a), sp.Add(*b)
    return (sp.loggamma(a0) - sp.Add(*[sp.loggamma(x) for x in a]) - sp.loggamma(b0)
            + sp.Add(*[sp.loggamma(x) for x in b])
            + sp.Add(*[(x - y) * (sp.digamma(x) - sp.digamma(a0)) for x, y in zip(a, b)]))


def _dirichlet_marginal(index, alpha):
    a0 = sp.Add(*alpha)
    return fam.FAMILIES["Beta"], (alpha[index], a0 - alpha[index])


def _dirichlet_joint(part, zs, alpha):
    """Moments E[prod w_k^(j_k)] = prod rf(alpha_k, j_k) / rf(alpha_0, sum j), j_k >= 0
    integers, and E[log w_i log w_j] = (psi(a_i) - psi(a_0))(psi(a_j) - psi(a_0)) - psi'(a_0)."""
    a0 = sp.Add(*alpha)
    powers = [0] * len(zs)
    logs = []
    for factor in sp.Mul.make_args(part):
        base, exp = factor.as_base_exp()
        if base in zs and exp.is_Integer and exp > 0:
            powers[zs.index(base)] += int(exp)
        elif isinstance(factor, sp.log) and factor.args[0] in zs:
            logs.append(zs.index(factor.args[0]))
        else:
            return None
    if logs and any(powers):
        return None
    if logs:
        if len(logs) != 2 or logs[0] == logs[1]:
            return None
        i, j = logs
        return ((sp.digamma(alpha[i]) - sp.digamma(a0)) * (sp.digamma(alpha[j]) - sp.digamma(a0))
                - sp.polygamma(1, a0))
    # rising factorials written out, as the scalar tables write their moments
    top = sp.Mul(*[a + i for a, k in zip(alpha, powers) for i in range(k)])
    return top / sp.Mul(*[a0 + i for i in range(sum(powers))])


# --- MultivariateNormal --------------------------------------------------------

def covariance(lower) -> list[list[sp.Expr]]:
    """Sigma = L L^T, entry by entry."""
    k = len(lower)
    return [[sp.Add(*[lower[i][t] * lower[j][t] for t in range(min(i, j) + 1)])
             for j in range(k)] for i in range(k)]


def _forward_solve(lower, rhs):
    """y with L y = rhs (L lower triangular), by forward substitution."""
    out = []
    for i, r in enumerate(rhs):
        out.append((r - sp.Add(*[lower[i][j] * out[j] for j in range(i)])) / lower[i][i])
    return out


def _mvn_logpdf(zs, m, lower):
    # log N(w | m, L L^T) = -K/2 log(2 pi) - sum log L_kk - |L^-1 (w - m)|^2 / 2
    y = _forward_solve(lower, [z - mk for z, mk in zip(zs, m)])
    return (-sp.Rational(len(zs), 2) * sp.log(2 * sp.pi)
            - sp.Add(*[sp.log(lower[i][i]) for i in range(len(zs))])
            - sp.Add(*[t ** 2 for t in y]) / 2)


def _mvn_entropy(m, lower):
    k = len(m)
    return sp.Rational(k, 2) * (1 + sp.log(2 * sp.pi)) + sp.Add(*[sp.log(lower[i][i])
                                                                  for i in range(k)])


def _mvn_marginal(index, m, lower):
    var = sp.Add(*[lower[index][t] ** 2 for t in range(index + 1)])
    return fam.FAMILIES["Normal"], (m[index], sp.sqrt(var))


def _mvn_joint(part, zs, m, lower):
    """E[P(w) exp(c.w + d)] = P(d/dt) M(t) at t = c, times exp(d), with M(t) the moment
    generating function exp(t.m + t.Sigma.t / 2) (P a polynomial, c and d free of w)."""
    poly, exponent = [], []
    for factor in sp.Mul.make_args(part):
        if isinstance(factor, sp.exp):
            exponent.append(factor.args[0])
        else:
            poly.append(factor)
    arg = sp.expand(sp.Add(*exponent))
    c = [arg.coeff(z, 1) for z in zs]
    d = sp.expand(arg - sp.Add(*[ci * z for ci, z in zip(c, zs)]))
    if any(ci.has(*zs) for ci in c) or d.has(*zs):
        return None
    poly_expr = sp.Mul(*poly)
    if not poly_expr.is_polynomial(*zs):
        return None
    # only the components the part touches: their marginal is the Normal with the
    # matching entries of m and Sigma (Sigma_ij = sum_t L_it L_jt)
    used = [i for i, z in enumerate(zs) if part.has(z)]
    sub = [zs[i] for i in used]
    c = [c[i] for i in used]
    sigma = [[sp.Add(*[lower[i][t] * lower[j][t] for t in range(min(i, j) + 1)])
              for j in used] for i in used]
    ts = [sp.Dummy(f"t{i}") for i in used]
    mgf = sp.exp(sp.Add(*[t * m[i] for t, i in zip(ts, used)])
                 + sp.Add(*[ts[a] * sigma[a][b] * ts[b] for a in range(len(used))
                            for b in range(len(used))]) / 2)
    total = []
    for powers, coef in sp.Poly(poly_expr, *sub).terms():
        if coef.has(*zs):
            return None
        derivative = mgf
        for t, k in zip(ts, powers):
            if k:
                derivative = sp.diff(derivative, t, k)
        total.append(coef * derivative)
    at = dict(zip(ts, c))
    return sp.Add(*total).xreplace(at) * sp.exp(d)


FAMILIES: dict[str, VectorFamily] = {f.name: f for f in [
    VectorFamily("Dirichlet", ("concentration",), (VECTOR,), (fam.D_POSITIVE,), SIMPLEX,
                 _dirichlet_logpdf, _dirichlet_entropy, _dirichlet_kl, _dirichlet_marginal,
                 _dirichlet_joint),
    VectorFamily("MultivariateNormal", ("loc", "scale_tril"), (VECTOR, LOWER),
                 (fam.D_REAL, fam.D_POSITIVE), fam.REAL,
                 _mvn_logpdf, _mvn_entropy, None, _mvn_marginal, _mvn_joint),
]}


def get_family(name: str) -> VectorFamily | None:
    """The joint family called ``name``, or None."""
    return FAMILIES.get(name)


def is_joint(family) -> bool:
    """Whether ``family`` is joint over a vector latent's components."""
    return isinstance(family, VectorFamily)


def simplex_kernel(coefs: list[sp.Expr]) -> tuple[sp.Expr, tuple[sp.Expr, ...]]:
    """The log of the integral over the simplex of prod_k w_k^(c_k), and the posterior
    concentrations c_k + 1: sum_k log Gamma(c_k + 1) - log Gamma(sum_k (c_k + 1))."""
    conc = tuple(sp.expand(c + 1) for c in coefs)
    return (sp.Add(*[sp.loggamma(a) for a in conc]) - sp.loggamma(sp.expand(sp.Add(*conc))),
            conc)
