"""Oracle values of the ELBO, log p(X) and KL(q || posterior) for every model of the zoo,
computed without symelbo.

Each model's log joint and log q are written here by hand, from the model's meaning, with
numpy (mpmath only for the digamma function); only [values] and the data are read from the
TOML file (tomllib). The integrals are
composite Gauss-Legendre rules in a coordinate u where the latent is unbounded (z = u, exp(u)
or a logistic map onto an interval), over the region where the integrand is within e^-80 of
its peak (found by a scan that is refined until it resolves the peak), with breakpoints at
kinks; a Dirichlet on three components is integrated over the simplex by stick-breaking
(simplex3). Each value is computed at two resolutions; ORACLE_ERRORS holds their difference.
Where a standard closed form exists (conjugate evidence, Gaussian evidence of a linear model)
it is used as the second, independent route: CHECKS[name] gives the two routes' difference.

ORACLES maps a file name to a function returning {"elbo", "log_evidence", "kl"} (floats,
+-inf where the quantity diverges, stated by hand with the reason in the model's comment).
"""
import math
import os
import tomllib
from math import lgamma, log, pi

import mpmath
import numpy as np
from numpy.polynomial.legendre import leggauss

HERE = os.path.dirname(os.path.abspath(__file__))
LOG2PI = log(2 * pi)
DROP = 80.0          # the integrand is cut where it is e^-80 below its peak
ORACLES = {}
ORACLE_ERRORS = {}   # name -> largest difference between two resolutions
CHECKS = {}          # name -> difference from a second, independent route


# -- reading a model's numbers ---------------------------------------------------------------
def load(name):
    with open(os.path.join(HERE, name), "rb") as f:
        return tomllib.load(f)


def data(name, var):
    """The observed variable's data: an array, or a dict of columns for a table."""
    spec = load(name)["observed"][var]
    if "data" in spec:
        d = spec["data"]
        return {k: np.array(v, float) for k, v in d.items()} if isinstance(d, dict) else np.array(d, float)
    path = os.path.join(HERE, spec["data_file"])
    if path.endswith(".npy"):
        arr = np.load(path, allow_pickle=False)
        return {k: np.asarray(arr[k], float) for k in arr.dtype.names}
    with open(path) as f:
        first = f.readline().strip()
    if first[0].isalpha():
        cols = first.split(",")
        arr = np.loadtxt(path, delimiter=",", skiprows=1, ndmin=2)
        return {c: arr[:, i] for i, c in enumerate(cols)}
    return np.loadtxt(path, ndmin=1)


def values(name):
    return load(name).get("values", {})


# -- log densities (scipy/torch parametrisations) -----------------------------------------------
def normal(x, m, s):
    return -0.5 * LOG2PI - np.log(s) - (x - m) ** 2 / (2 * s ** 2)


def gamma(x, a, b):
    return a * log(b) - lgamma(a) + (a - 1) * np.log(x) - b * x


def gamma_v(x, a, b):
    """Gamma log density with a rate b that may be an array."""
    return a * np.log(b) - lgamma(a) + (a - 1) * np.log(x) - b * x


def beta(x, a, b):
    return (a - 1) * np.log(x) + (b - 1) * np.log1p(-x) - (lgamma(a) + lgamma(b) - lgamma(a + b))


def invgamma(x, a, b):
    return a * log(b) - lgamma(a) - (a + 1) * np.log(x) - b / x


def lognormal(x, m, s):
    return normal(np.log(x), m, s) - np.log(x)


def halfnormal(x, s):
    return log(2) + normal(x, 0, s)


def studentt(x, df, loc, scale):
    return (lgamma((df + 1) / 2) - lgamma(df / 2) - 0.5 * log(df * pi) - log(scale)
            - (df + 1) / 2 * np.log1p(((x - loc) / scale) ** 2 / df))


def laplace(x, m, b):
    return -log(2 * b) - np.abs(x - m) / b


def uniform(x, lo, hi):
    return np.where((x > lo) & (x < hi), -log(hi - lo), -np.inf)


def poisson_sum(k, lam):
    """sum_i log Poisson(k_i | lam) for a scalar-or-grid lam (k a data vector)."""
    return np.sum(k) * np.log(lam) - len(k) * lam - sum(lgamma(v + 1) for v in k)


def log_sigmoid(t):
    return -np.logaddexp(0.0, -t)


def lse(v, axis=None):
    m = np.max(v, axis=axis, keepdims=True)
    m = np.where(np.isfinite(m), m, 0.0)
    out = np.log(np.sum(np.exp(v - m), axis=axis, keepdims=True)) + m
    return out.squeeze() if axis is None else np.squeeze(out, axis=axis)


# -- coordinates -------------------------------------------------------------------------------
def transform(kind):
    """(z(u), log dz/du, u(z)) for a latent's support."""
    if kind == "real":
        return (lambda u: u), (lambda u: np.zeros_like(u)), (lambda z: z)
    if kind == "pos":
        return np.exp, (lambda u: u), np.log
    if kind[0] == "heavy":      # z = c + h sinh(u): a polynomial tail becomes an exponential one
        _, c, h = kind
        return ((lambda u: c + h * np.sinh(u)), (lambda u: log(h) + np.log(np.cosh(u))),
                (lambda z: np.arcsinh((z - c) / h)))
    lo, hi = kind
    return ((lambda u: lo + (hi - lo) / (1 + np.exp(-u))),
            (lambda u: log(hi - lo) + log_sigmoid(u) + log_sigmoid(-u)),
            (lambda z: np.log((z - lo) / (hi - z))))


UNIT = (0.0, 1.0)
BOX = {"real": (-300.0, 300.0), "pos": (-200.0, 60.0)}


def box_of(kind):
    return BOX.get(kind, (-60.0, 60.0)) if isinstance(kind, str) else (-60.0, 60.0)


def region(f, lo, hi, n=2001):
    """[a, b] in u holding every grid point within DROP of f's peak, refined until resolved."""
    for step in range(40):
        u = np.linspace(lo, hi, n)
        with np.errstate(all="ignore"):
            v = f(u)
        v = np.where(np.isnan(v), -np.inf, v)
        top = np.max(v)
        idx = np.nonzero(v > top - DROP)[0]
        assert step or (idx[0] > 0 and idx[-1] < n - 1), "the integrand is not small at the box's ends"
        i0, i1 = max(idx[0] - 1, 0), min(idx[-1] + 1, n - 1)
        new_lo, new_hi = u[i0], u[i1]
        if i1 - i0 > n // 4:
            return new_lo, new_hi
        lo, hi = new_lo, new_hi
    return lo, hi


def nodes(lo, hi, panels, breaks=(), k=20):
    edges = np.union1d(np.linspace(lo, hi, panels + 1), [b for b in breaks if lo < b < hi])
    t, w = leggauss(k)
    a, b = edges[:-1, None], edges[1:, None]
    return ((a + b) / 2 + (b - a) / 2 * t).ravel(), ((b - a) / 2 * w).ravel()


def log_integral_1d(logf, kind, breaks=(), panels=200):
    """log of the integral of exp(logf(z)) over the support of kind."""
    z_of, logj, u_of = transform(kind)
    g = lambda u: logf(z_of(u)) + logj(u)
    lo, hi = region(g, *box_of(kind))
    ub = [float(u_of(np.float64(c))) for c in breaks if _inside(kind, c)]
    u, w = nodes(lo, hi, panels, ub)
    with np.errstate(all="ignore"):
        return float(lse(g(u) + np.log(w)))


def _inside(kind, c):
    if kind == "real" or kind[0] == "heavy":
        return True
    if kind == "pos":
        return c > 0
    return kind[0] < c < kind[1]


class Q:
    """One mean-field factor: nodes z and weights w with sum(w g(z)) = E_q[g]."""

    def __init__(self, logq, kind, panels=60, breaks=()):
        z_of, logj, u_of = transform(kind)
        g = lambda u: logq(z_of(u)) + logj(u)
        lo, hi = region(g, *box_of(kind))
        ub = [float(u_of(np.float64(c))) for c in breaks if _inside(kind, c)]
        u, w = nodes(lo, hi, panels, ub)
        with np.errstate(all="ignore"):
            lw = g(u) + np.log(w)
        keep = lw > -np.inf      # nodes where q's weight underflows (or sits on an end) carry nothing
        self.z, self.w = z_of(u)[keep], np.exp(lw[keep])
        self.logq = logq
        mass = self.w.sum()
        assert abs(mass - 1) < 1e-10, f"q does not integrate to 1 ({mass})"
        self.w = self.w / mass     # the rule's error in q's mass would scale every expectation
        self.entropy = -float(np.sum(self.w * logq(self.z)))

    def mean(self, f):
        return float(np.sum(self.w * f(self.z)))


def result(elbo, logp):
    return {"elbo": float(elbo), "log_evidence": float(logp), "kl": float(logp - elbo)}


def elbo_1d(logjoint, q):
    return q.mean(logjoint) + q.entropy


def elbo_2d(logjoint, q1, q2):
    Z1, Z2 = np.meshgrid(q1.z, q2.z, indexing="ij")
    W = np.outer(q1.w, q2.w)
    with np.errstate(all="ignore"):
        return float(np.sum(W * logjoint(Z1, Z2))) + q1.entropy + q2.entropy


def log_integral_2d(logf, kinds, panels=40):
    """log of the double integral of exp(logf(z1, z2)): a 2-D region scan, then a tensor rule."""
    _, _, logw = rule_2d(logf, kinds, panels)
    return float(lse(logw))


def rule_2d(logf, kinds, panels=40):
    """(Z1, Z2, logW): nodes of a tensor rule over the region where exp(logf) is within e^-80
    of its peak, with logW = logf + log Jacobian + log weight, so sum(exp(logW) g) = int f g."""
    (z1, j1, _), (z2, j2, _) = transform(kinds[0]), transform(kinds[1])
    g = lambda U1, U2: logf(z1(U1), z2(U2)) + j1(U1) + j2(U2)
    (a1, b1), (a2, b2) = box_of(kinds[0]), box_of(kinds[1])
    n = 401
    for step in range(40):
        U1, U2 = np.meshgrid(np.linspace(a1, b1, n), np.linspace(a2, b2, n), indexing="ij")
        with np.errstate(all="ignore"):
            v = g(U1, U2)
        v = np.where(np.isnan(v), -np.inf, v)
        keep = v > np.max(v) - DROP
        i = np.nonzero(keep.any(axis=1))[0]
        j = np.nonzero(keep.any(axis=0))[0]
        assert step or (i[0] > 0 and j[0] > 0 and i[-1] < n - 1 and j[-1] < n - 1), \
            "the integrand is not small at the box's faces"
        u1, u2 = U1[:, 0], U2[0, :]
        i0, i1 = max(i[0] - 1, 0), min(i[-1] + 1, n - 1)
        j0, j1_ = max(j[0] - 1, 0), min(j[-1] + 1, n - 1)
        done = i1 - i0 > n // 4 and j1_ - j0 > n // 4
        a1, b1, a2, b2 = u1[i0], u1[i1], u2[j0], u2[j1_]
        if done:
            break
    x1, w1 = nodes(a1, b1, panels)
    x2, w2 = nodes(a2, b2, panels)
    U1, U2 = np.meshgrid(x1, x2, indexing="ij")
    with np.errstate(all="ignore"):
        return z1(U1), z2(U2), g(U1, U2) + np.log(np.outer(w1, w2))


def oracle(name, fine=None):
    """Register a model's oracle; fine(res) computes at resolution res (1 and 2)."""
    def wrap(fn):
        def run():
            a = fn(1)
            b = fn(2)
            ORACLE_ERRORS[name] = max(abs(a[k] - b[k]) for k in a
                                      if math.isfinite(a[k]) and math.isfinite(b[k]))
            return b
        ORACLES[name] = run
        return fn
    return wrap


# ============================================================================================
# The models, one function each: res scales the number of panels.
# ============================================================================================

def one_latent(name, kind, logjoint, logq, qkind=None, breaks=(), qbreaks=(), res=1):
    q = Q(logq, qkind or kind, panels=60 * res, breaks=qbreaks)
    return result(elbo_1d(logjoint, q),
                  log_integral_1d(logjoint, kind, breaks=breaks, panels=200 * res))


@oracle("01_beta_bernoulli.toml")
def m01(res):
    f = "01_beta_bernoulli.toml"; v = values(f); x = data(f, "x"); h, n = x.sum(), len(x)
    lj = lambda t: beta(t, 2, 2) + h * np.log(t) + (n - h) * np.log1p(-t)
    out = one_latent(f, UNIT, lj, lambda t: beta(t, v["a"], v["b"]), res=res)
    lb = lambda a, b: lgamma(a) + lgamma(b) - lgamma(a + b)
    CHECKS[f] = out["log_evidence"] - (lb(2 + h, 2 + n - h) - lb(2, 2))
    return out


@oracle("02_beta_binomial.toml")
def m02(res):
    f = "02_beta_binomial.toml"; v = values(f); k = data(f, "k"); N = 12
    logc = sum(lgamma(N + 1) - lgamma(c + 1) - lgamma(N - c + 1) for c in k)
    s, m = k.sum(), N * len(k) - k.sum()
    lj = lambda t: beta(t, 2, 3) + logc + s * np.log(t) + m * np.log1p(-t)
    out = one_latent(f, UNIT, lj, lambda t: beta(t, v["a"], v["b"]), res=res)
    lb = lambda a, b: lgamma(a) + lgamma(b) - lgamma(a + b)
    CHECKS[f] = out["log_evidence"] - (logc + lb(2 + s, 3 + m) - lb(2, 3))
    return out


@oracle("03_uniform_coin.toml")
def m03(res):
    f = "03_uniform_coin.toml"; v = values(f); x = data(f, "x"); h, n = x.sum(), len(x)
    lj = lambda t: uniform(t, 0, 1) + h * np.log(t) + (n - h) * np.log1p(-t)
    out = one_latent(f, UNIT, lj, lambda t: beta(t, v["a"], v["b"]), res=res)
    CHECKS[f] = out["log_evidence"] - (lgamma(h + 1) + lgamma(n - h + 1) - lgamma(n + 2))
    return out


def gamma_poisson_check(f, out, a0, b0, k):
    s, n = k.sum(), len(k)
    exact = (a0 * log(b0) - lgamma(a0) + lgamma(a0 + s) - (a0 + s) * log(b0 + n)
             - sum(lgamma(c + 1) for c in k))
    CHECKS[f] = out["log_evidence"] - exact


@oracle("04_gamma_poisson.toml")
def m04(res):
    f = "04_gamma_poisson.toml"; v = values(f); k = data(f, "k")
    lj = lambda lam: gamma(lam, 2, 0.5) + poisson_sum(k, lam)
    out = one_latent(f, "pos", lj, lambda lam: gamma(lam, v["a"], v["b"]), res=res)
    gamma_poisson_check(f, out, 2, 0.5, k)
    return out


@oracle("05_exponential_poisson.toml")
def m05(res):
    f = "05_exponential_poisson.toml"; v = values(f); k = data(f, "k")
    lj = lambda lam: log(0.5) - 0.5 * lam + poisson_sum(k, lam)
    out = one_latent(f, "pos", lj, lambda lam: gamma(lam, v["a"], v["b"]), res=res)
    gamma_poisson_check(f, out, 1, 0.5, k)
    return out


@oracle("06_exponential_gamma.toml")
def m06(res):
    f = "06_exponential_gamma.toml"; v = values(f); x = data(f, "x"); n, s = len(x), x.sum()
    lj = lambda lam: gamma(lam, 2, 1) + n * np.log(lam) - lam * s
    out = one_latent(f, "pos", lj, lambda lam: gamma(lam, v["a"], v["b"]), res=res)
    CHECKS[f] = out["log_evidence"] - (2 * log(1) - lgamma(2) + lgamma(2 + n) - (2 + n) * log(1 + s))
    return out


def normal_mean_sum(x, mu, sigma):
    """sum_i log N(x_i | mu, sigma), written with the data's first two sums."""
    n, s1, s2 = len(x), math.fsum(x), math.fsum(x * x)
    return -n * (0.5 * LOG2PI + np.log(sigma)) - (s2 - 2 * mu * s1 + n * mu ** 2) / (2 * sigma ** 2)


@oracle("07_normal_known_noise.toml")
def m07(res):
    f = "07_normal_known_noise.toml"; v = values(f); x = data(f, "x")
    lj = lambda mu: normal(mu, 10, 5) + normal_mean_sum(x, mu, 2.0)
    out = one_latent(f, "real", lj, lambda mu: normal(mu, v["m"], v["s"]), res=res)
    # second route: x ~ N(10 1, 4 I + 25 11^T)
    cov = 4 * np.eye(len(x)) + 25.0
    sign, logdet = np.linalg.slogdet(cov)
    d = x - 10
    CHECKS[f] = out["log_evidence"] - (-0.5 * (len(x) * LOG2PI + logdet + d @ np.linalg.solve(cov, d)))
    return out


@oracle("08_normal_precision.toml")
def m08(res):
    f = "08_normal_precision.toml"; v = values(f); x = data(f, "x"); n = len(x)
    ss = math.fsum((x - 3) ** 2)
    lj = lambda tau: gamma(tau, 1, 1) + 0.5 * n * np.log(tau) - 0.5 * n * LOG2PI - tau * ss / 2
    out = one_latent(f, "pos", lj, lambda tau: gamma(tau, v["a"], v["b"]), res=res)
    CHECKS[f] = out["log_evidence"] - (-0.5 * n * LOG2PI + lgamma(1 + n / 2) - (1 + n / 2) * log(1 + ss / 2))
    return out


@oracle("09_normal_gamma.toml")
def m09(res):
    f = "09_normal_gamma.toml"; v = values(f); x = data(f, "x"); n = len(x)
    lj = lambda mu, tau: (normal(mu, 5, 1 / np.sqrt(0.5 * tau)) + gamma(tau, 2, 2)
                          + normal_mean_sum(x, mu, 1 / np.sqrt(tau)))
    q1 = Q(lambda mu: normal(mu, v["m"], v["s"]), "real", panels=30 * res)
    q2 = Q(lambda t: gamma(t, v["a"], v["b"]), "pos", panels=30 * res)
    out = result(elbo_2d(lj, q1, q2), log_integral_2d(lj, ("real", "pos"), panels=30 * res))
    # Normal-Gamma evidence (Murphy 2007, eq. 95)
    k0, m0, a0, b0 = 0.5, 5.0, 2.0, 2.0
    xb = x.mean(); kn = k0 + n; an = a0 + n / 2
    bn = b0 + 0.5 * math.fsum((x - xb) ** 2) + k0 * n * (xb - m0) ** 2 / (2 * kn)
    exact = (lgamma(an) - lgamma(a0) + a0 * log(b0) - an * log(bn) + 0.5 * log(k0 / kn)
             - n / 2 * log(2 * pi))
    CHECKS[f] = out["log_evidence"] - exact
    return out


@oracle("10_inverse_gamma_variance.toml")
def m10(res):
    f = "10_inverse_gamma_variance.toml"; v = values(f); x = data(f, "x"); n = len(x)
    ss = math.fsum(x * x)
    lj = lambda w: invgamma(w, 3, 4) - 0.5 * n * (LOG2PI + np.log(w)) - ss / (2 * w)
    out = one_latent(f, "pos", lj, lambda w: invgamma(w, v["a"], v["b"]), res=res)
    CHECKS[f] = out["log_evidence"] - (3 * log(4) - lgamma(3) - 0.5 * n * LOG2PI
                                        + lgamma(3 + n / 2) - (3 + n / 2) * log(4 + ss / 2))
    return out


@oracle("11_lognormal_data.toml")
def m11(res):
    f = "11_lognormal_data.toml"; v = values(f); x = data(f, "x"); lx = np.log(x)
    lj = lambda mu: normal(mu, 0, 3) + normal_mean_sum(lx, mu, 0.5) - math.fsum(lx)
    return one_latent(f, "real", lj, lambda mu: normal(mu, v["m"], v["s"]), res=res)


def m12_joint(f):
    k = data(f, "k")
    return lambda b: normal(b, 0, 2) + np.sum(k) * b - len(k) * np.exp(b) - sum(lgamma(c + 1) for c in k)


@oracle("12_poisson_log_rate.toml")
def m12(res):
    f = "12_poisson_log_rate.toml"; v = values(f)
    return one_latent(f, "real", m12_joint(f), lambda b: normal(b, v["m"], v["s"]), res=res)


@oracle("13_lognormal_q_rate.toml")
def m13(res):
    f = "13_lognormal_q_rate.toml"; v = values(f); k = data(f, "k")
    lj = lambda lam: gamma(lam, 2, 1) + poisson_sum(k, lam)
    out = one_latent(f, "pos", lj, lambda lam: lognormal(lam, v["m"], v["s"]), res=res)
    gamma_poisson_check(f, out, 2, 1, k)
    return out


def sd_joint(x, prior):
    n, ss = len(x), math.fsum(x * x)
    return lambda s: prior(s) - n * (0.5 * LOG2PI + np.log(s)) - ss / (2 * s ** 2)


@oracle("14_gamma_q_stddev.toml")
def m14(res):
    f = "14_gamma_q_stddev.toml"; v = values(f)
    lj = sd_joint(data(f, "x"), lambda s: gamma(s, 2, 2))
    return one_latent(f, "pos", lj, lambda s: gamma(s, v["a"], v["b"]), res=res)


@oracle("15_halfnormal_prior_sd.toml")
def m15(res):
    f = "15_halfnormal_prior_sd.toml"; v = values(f)
    lj = sd_joint(data(f, "x"), lambda s: halfnormal(s, 1))
    return one_latent(f, "pos", lj, lambda s: lognormal(s, v["m"], v["s"]), res=res)


@oracle("16_halfnormal_q_rate.toml")
def m16(res):
    f = "16_halfnormal_q_rate.toml"; v = values(f); x = data(f, "x"); n, s = len(x), x.sum()
    lj = lambda lam: gamma(lam, 2, 2) + n * np.log(lam) - lam * s
    out = one_latent(f, "pos", lj, lambda lam: halfnormal(lam, v["q"]), res=res)
    CHECKS[f] = out["log_evidence"] - (2 * log(2) - lgamma(2) + lgamma(2 + n) - (2 + n) * log(2 + s))
    return out


@oracle("17_studentt_likelihood.toml")
def m17(res):
    f = "17_studentt_likelihood.toml"; v = values(f); x = data(f, "x")
    lj = lambda t: normal(t, 0, 10) + sum(studentt(xi, 3, t, 1) for xi in x)
    return one_latent(f, "real", lj, lambda t: normal(t, v["m"], v["s"]), res=res)


@oracle("18_studentt_prior.toml")
def m18(res):
    f = "18_studentt_prior.toml"; v = values(f); x = data(f, "x")
    lj = lambda mu: studentt(mu, 3, 0, 1) + normal_mean_sum(x, mu, 1.0)
    return one_latent(f, "real", lj, lambda mu: normal(mu, v["m"], v["s"]), res=res)


@oracle("19_laplace_likelihood.toml")
def m19(res):
    f = "19_laplace_likelihood.toml"; v = values(f); x = data(f, "x")
    lj = lambda t: normal(t, 0, 5) + sum(laplace(xi, t, 0.5) for xi in x)
    return one_latent(f, "real", lj, lambda t: normal(t, v["m"], v["s"]), breaks=list(x),
                      qbreaks=list(x), res=res)


@oracle("20_laplace_prior.toml")
def m20(res):
    f = "20_laplace_prior.toml"; v = values(f); x = data(f, "x")
    lj = lambda mu: laplace(mu, 0, 1) + normal_mean_sum(x, mu, 1.0)
    return one_latent(f, "real", lj, lambda mu: normal(mu, v["m"], v["s"]), breaks=[0.0],
                      qbreaks=[0.0], res=res)


def m21_joint(f):
    k = data(f, "k")
    return lambda lam: uniform(lam, 0, 8) + poisson_sum(k, lam)


@oracle("21_uniform_prior_rate.toml")
def m21(res):
    f = "21_uniform_prior_rate.toml"; v = values(f); lo, hi = v["lo"], v["hi"]
    q = Q(lambda lam: uniform(lam, lo, hi), (lo, hi), panels=60 * res)
    return result(elbo_1d(m21_joint(f), q), log_integral_1d(m21_joint(f), (0.0, 8.0), panels=200 * res))


@oracle("22_uniform_prior_gamma_q.toml")
def m22(res):
    # q = Gamma has mass above 8, where the prior is 0: E_q[log p] = -inf
    f = "22_uniform_prior_gamma_q.toml"
    logp = log_integral_1d(m21_joint(f), (0.0, 8.0), panels=200 * res)
    return {"elbo": -math.inf, "log_evidence": logp, "kl": math.inf}


@oracle("23_divergent_gamma_sd.toml")
def m23(res):
    # E_q[1/sigma**2] = inf under Gamma(1.5, 1): the ELBO is -inf
    f = "23_divergent_gamma_sd.toml"
    lj = sd_joint(data(f, "x"), lambda s: gamma(s, 2, 2))
    return {"elbo": -math.inf, "log_evidence": log_integral_1d(lj, "pos", panels=200 * res),
            "kl": math.inf}


@oracle("24_divergent_laplace_mgf.toml")
def m24(res):
    # E_q[exp(beta)] = inf under Laplace(m, 1.2): the ELBO is -inf
    f = "24_divergent_laplace_mgf.toml"
    return {"elbo": -math.inf, "log_evidence": log_integral_1d(m12_joint(f), "real", panels=200 * res),
            "kl": math.inf}


def bern_entropy(r):
    return -(r * np.log(r) + (1 - r) * np.log1p(-r))


@oracle("25_mixture_known.toml")
def m25(res):
    f = "25_mixture_known.toml"; v = values(f); x = data(f, "x"); r = np.array(v["r"], float)
    l0, l1 = log(0.7) + normal(x, -1, 1), log(0.3) + normal(x, 3, 1)
    elbo = math.fsum(r * l1 + (1 - r) * l0 + bern_entropy(r))
    logp = math.fsum(np.logaddexp(l0, l1))
    post = np.exp(l1 - np.logaddexp(l0, l1))
    kl = math.fsum(r * np.log(r / post) + (1 - r) * np.log((1 - r) / (1 - post)))
    CHECKS[f] = (logp - elbo) - kl
    return result(elbo, logp)


@oracle("26_mixture_weight.toml")
def m26(res):
    f = "26_mixture_weight.toml"; v = values(f); x = data(f, "x"); r = np.array(v["r"], float)
    n0, n1 = normal(x, -2, 1), normal(x, 2, 1)
    sr, H = r.sum(), math.fsum(bern_entropy(r))
    part = math.fsum(r * n1 + (1 - r) * n0)
    # E over q(z) of log p(x, z | w) + H(q(z)), given w
    g = lambda w: beta(w, 2, 2) + sr * np.log(w) + (len(x) - sr) * np.log1p(-w) + part + H
    q = Q(lambda w: beta(w, v["a"], v["b"]), UNIT, panels=60 * res)
    lj = lambda w: beta(w, 2, 2) + np.sum(np.logaddexp(np.log1p(-w)[..., None] + n0,
                                                        np.log(w)[..., None] + n1), axis=-1)
    return result(elbo_1d(g, q), log_integral_1d(lj, UNIT, panels=200 * res))


@oracle("27_mixture_means_bimodal.toml")
def m27(res):
    f = "27_mixture_means_bimodal.toml"; v = values(f); x = data(f, "x"); r = np.array(v["r"], float)
    H = math.fsum(bern_entropy(r))

    def g(m1, m2):
        out = normal(m1, 0, 3) + normal(m2, 0, 3) + len(x) * log(0.5) + H
        for xi, ri in zip(x, r):
            out = out + ri * normal(xi, m2, 1) + (1 - ri) * normal(xi, m1, 1)
        return out

    def lj(m1, m2):
        out = normal(m1, 0, 3) + normal(m2, 0, 3)
        for xi in x:
            out = out + np.logaddexp(log(0.5) + normal(xi, m1, 1), log(0.5) + normal(xi, m2, 1))
        return out
    q1 = Q(lambda m: normal(m, v["m1"], v["s1"]), "real", panels=30 * res)
    q2 = Q(lambda m: normal(m, v["m2"], v["s2"]), "real", panels=30 * res)
    return result(elbo_2d(g, q1, q2), log_integral_2d(lj, ("real", "real"), panels=40 * res))


@oracle("28_hierarchical_normal.toml")
def m28(res):
    f = "28_hierarchical_normal.toml"; v = values(f); x = data(f, "x"); n = len(x)
    t = np.array(v["t"], float); vv = float(v["v"])
    qm = Q(lambda z: normal(z, v["m"], v["s"]), "real", panels=60 * res)
    Em, Em2 = qm.mean(lambda z: z), qm.mean(lambda z: z * z)
    elbo = qm.mean(lambda z: normal(z, 0, 5)) + qm.entropy
    for ti, xi in zip(t, x):
        qt = Q(lambda z: normal(z, ti, vv), "real", panels=60 * res)
        Et, Et2 = qt.mean(lambda z: z), qt.mean(lambda z: z * z)
        # E[log N(theta | mu, 1)] = -log(2 pi)/2 - E[(theta - mu)^2]/2, factors independent
        elbo += -0.5 * LOG2PI - 0.5 * (Et2 - 2 * Et * Em + Em2)
        elbo += qt.mean(lambda z: normal(xi, z, 1)) + qt.entropy
    lj = lambda mu: normal(mu, 0, 5) + normal_mean_sum(x, mu, math.sqrt(2))
    logp = log_integral_1d(lj, "real", panels=200 * res)
    cov = 2 * np.eye(n) + 25.0
    sign, logdet = np.linalg.slogdet(cov)
    CHECKS[f] = logp - (-0.5 * (n * LOG2PI + logdet + x @ np.linalg.solve(cov, x)))
    return result(elbo, logp)


@oracle("29_hierarchical_precision.toml")
def m29(res):
    f = "29_hierarchical_precision.toml"; v = values(f); x = data(f, "x")
    lj = lambda tau, mu: gamma(tau, 2, 1) + normal(mu, 0, 1 / np.sqrt(tau)) + normal_mean_sum(x, mu, 1.0)
    q1 = Q(lambda t: gamma(t, v["a"], v["b"]), "pos", panels=30 * res)
    q2 = Q(lambda m: normal(m, v["m"], v["s"]), "real", panels=30 * res)
    logp = log_integral_2d(lj, ("pos", "real"), panels=40 * res)
    # second route: tau integrated out by hand, int Gamma(t|2,1) N(mu|0,t^-1/2) dt
    #   = Gamma(2.5) / (Gamma(2) sqrt(2 pi)) (1 + mu^2/2)^-2.5
    marg = lambda mu: (lgamma(2.5) - lgamma(2) - 0.5 * LOG2PI - 2.5 * np.log1p(mu * mu / 2)
                       + normal_mean_sum(x, mu, 1.0))
    CHECKS[f] = logp - log_integral_1d(marg, "real", panels=400)
    return result(elbo_2d(lj, q1, q2), logp)


@oracle("30_hierarchical_rate.toml")
def m30(res):
    f = "30_hierarchical_rate.toml"; v = values(f); k = data(f, "k")
    lj = lambda b, lam: gamma(b, 2, 1) + gamma_v(lam, 3, b) + poisson_sum(k, lam)
    q1 = Q(lambda b: gamma(b, v["a1"], v["b1"]), "pos", panels=30 * res)
    q2 = Q(lambda l: gamma(l, v["a2"], v["b2"]), "pos", panels=30 * res)
    logp = log_integral_2d(lj, ("pos", "pos"), panels=40 * res)
    # beta integrated out by hand: int Gamma(b|2,1) Gamma(lam|3,b) db = lam^2 Gamma(5)/(Gamma(2)Gamma(3)(1+lam)^5)
    marg = lambda lam: (2 * np.log(lam) + lgamma(5) - lgamma(2) - lgamma(3) - 5 * np.log1p(lam)
                        + poisson_sum(k, lam))
    CHECKS[f] = logp - log_integral_1d(marg, "pos", panels=400)
    return result(elbo_2d(lj, q1, q2), logp)


def linear_regression(f, sigma, res):
    v = values(f); d = data(f, "y"); x, y = d["x"], d["y"]; n = len(y)
    fs = math.fsum
    Sx, Sxx, Sy, Syy, Sxy = fs(x), fs(x * x), fs(y), fs(y * y), fs(x * y)
    m0, s0, m1, s1 = v["m0"], v["s0"], v["m1"], v["s1"]
    # E_q[(y - w0 - w1 x)^2] = (y - m0 - m1 x)^2 + s0^2 + s1^2 x^2, summed with the sums above
    resid = Syy - 2 * m0 * Sy - 2 * m1 * Sxy + n * m0 ** 2 + 2 * m0 * m1 * Sx + m1 ** 2 * Sxx
    e_sq = resid + n * s0 ** 2 + s1 ** 2 * Sxx
    e_lik = -n * (0.5 * LOG2PI + log(sigma)) - e_sq / (2 * sigma ** 2)
    e_prior = sum(-0.5 * LOG2PI - log(10) - (m ** 2 + s ** 2) / 200 for m, s in ((m0, s0), (m1, s1)))
    ent = sum(0.5 * (1 + LOG2PI) + log(s) for s in (s0, s1))
    elbo = e_lik + e_prior + ent
    # log p(y): Gaussian in (w0, w1): log N(y | 0, sigma^2 I + 100 X X^T) via the 2x2 posterior
    A = np.array([[n, Sx], [Sx, Sxx]]) / sigma ** 2 + np.eye(2) / 100.0
    bvec = np.array([Sy, Sxy]) / sigma ** 2
    mean = np.linalg.solve(A, bvec)
    logp = (-n * (0.5 * LOG2PI + log(sigma)) - Syy / (2 * sigma ** 2) - 2 * log(10)
            - 0.5 * np.linalg.slogdet(A)[1] + 0.5 * bvec @ mean)
    if n <= 1000:
        X = np.column_stack([np.ones(n), x])
        cov = sigma ** 2 * np.eye(n) + 100.0 * X @ X.T
        CHECKS[f] = logp - (-0.5 * (n * LOG2PI + np.linalg.slogdet(cov)[1] + y @ np.linalg.solve(cov, y)))
    else:
        lj = lambda w0, w1: (normal(w0, 0, 10) + normal(w1, 0, 10) - n * (0.5 * LOG2PI + log(sigma))
                             - (Syy - 2 * w0 * Sy - 2 * w1 * Sxy + n * w0 ** 2 + 2 * w0 * w1 * Sx
                                + w1 ** 2 * Sxx) / (2 * sigma ** 2))
        CHECKS[f] = logp - log_integral_2d(lj, ("real", "real"), panels=40)
    return result(elbo, logp)


@oracle("31_linear_regression.toml")
def m31(res):
    return linear_regression("31_linear_regression.toml", 0.7, res)


@oracle("32_linear_regression_1e5.toml")
def m32(res):
    return linear_regression("32_linear_regression_1e5.toml", 1.0, res)


@oracle("33_poisson_exposure.toml")
def m33(res):
    f = "33_poisson_exposure.toml"; v = values(f); d = data(f, "y"); t, x, y = d["t"], d["x"], d["y"]
    const = math.fsum(y * (np.log(t) + 0.3 * x)) - sum(lgamma(c + 1) for c in y)
    E = math.fsum(t * np.exp(0.3 * x))
    lj = lambda b: normal(b, 0, 1) + y.sum() * b - E * np.exp(b) + const
    return one_latent(f, "real", lj, lambda b: normal(b, v["m"], v["s"]), res=res)


@oracle("34_logistic_one_weight.toml")
def m34(res):
    f = "34_logistic_one_weight.toml"; v = values(f); d = data(f, "y"); x, y = d["x"], d["y"]

    def lj(w):
        w = np.asarray(w)
        eta = w[..., None] * x
        return normal(w, 0, 2.5) + np.sum(y * log_sigmoid(eta) + (1 - y) * log_sigmoid(-eta), axis=-1)
    return one_latent(f, "real", lj, lambda w: normal(w, v["m"], v["s"]), res=res)


@oracle("35_poisson_regression_two.toml")
def m35(res):
    f = "35_poisson_regression_two.toml"; v = values(f); d = data(f, "y"); x, y = d["x"], d["y"]
    const = -sum(lgamma(c + 1) for c in y)

    def lj(b0, b1):
        out = normal(b0, 0, 2) + normal(b1, 0, 2) + const
        for xi, yi in zip(x, y):
            eta = b0 + b1 * xi
            out = out + yi * eta - np.exp(eta)
        return out
    q1 = Q(lambda b: normal(b, v["m0"], v["s0"]), "real", panels=30 * res)
    q2 = Q(lambda b: normal(b, v["m1"], v["s1"]), "real", panels=30 * res)
    return result(elbo_2d(lj, q1, q2), log_integral_2d(lj, ("real", "real"), panels=40 * res))


@oracle("36_bimodal_square.toml")
def m36(res):
    f = "36_bimodal_square.toml"; v = values(f); x = data(f, "x")
    lj = lambda t: normal(t, 0, 2) + normal_mean_sum(x, t ** 2, 0.5)
    return one_latent(f, "real", lj, lambda t: normal(t, v["m"], v["s"]), res=res)


@oracle("37_categorical_theta.toml")
def m37(res):
    f = "37_categorical_theta.toml"; v = values(f); y = data(f, "y")
    n0, n1, n2 = (int(np.sum(y == c)) for c in (0, 1, 2))
    lj = lambda t: beta(t, 2, 2) + (n0 + n1) * np.log(t / 2) + n2 * np.log1p(-t)
    out = one_latent(f, UNIT, lj, lambda t: beta(t, v["a"], v["b"]), res=res)
    lb = lambda a, b: lgamma(a) + lgamma(b) - lgamma(a + b)
    CHECKS[f] = out["log_evidence"] - ((n0 + n1) * log(0.5) + lb(2 + n0 + n1, 2 + n2) - lb(2, 2))
    return out


@oracle("38_lognormal_prior_gamma_q.toml")
def m38(res):
    f = "38_lognormal_prior_gamma_q.toml"; v = values(f); k = data(f, "k")
    lj = lambda lam: lognormal(lam, 1.5, 0.5) + poisson_sum(k, lam)
    return one_latent(f, "pos", lj, lambda lam: gamma(lam, v["a"], v["b"]), res=res)


@oracle("39_cauchy_prior.toml")
def m39(res):
    f = "39_cauchy_prior.toml"; v = values(f); x = data(f, "x")
    lj = lambda mu: -log(pi) - np.log1p(mu * mu) + normal_mean_sum(x, mu, 1.0)
    return one_latent(f, "real", lj, lambda mu: normal(mu, v["m"], v["s"]), res=res)


@oracle("40_halfnormal_data_ig.toml")
def m40(res):
    f = "40_halfnormal_data_ig.toml"; v = values(f); x = data(f, "x"); n = len(x)
    ss = math.fsum(x * x)
    lj = lambda w: invgamma(w, 2, 2) + n * log(2) - 0.5 * n * (LOG2PI + np.log(w)) - ss / (2 * w)
    out = one_latent(f, "pos", lj, lambda w: invgamma(w, v["a"], v["b"]), res=res)
    CHECKS[f] = out["log_evidence"] - (2 * log(2) - lgamma(2) + n * log(2) - 0.5 * n * LOG2PI
                                        + lgamma(2 + n / 2) - (2 + n / 2) * log(2 + ss / 2))
    return out


@oracle("41_binomial_logit.toml")
def m41(res):
    f = "41_binomial_logit.toml"; v = values(f); k = data(f, "k"); N = 20
    logc = sum(lgamma(N + 1) - lgamma(c + 1) - lgamma(N - c + 1) for c in k)
    s, m = k.sum(), N * len(k) - k.sum()
    lj = lambda b: normal(b, 0, 1.5) + logc + s * log_sigmoid(b) + m * log_sigmoid(-b)
    return one_latent(f, "real", lj, lambda b: normal(b, v["m"], v["s"]), res=res)


@oracle("42_studentt_small.toml")
def m42(res):
    f = "42_studentt_small.toml"; v = values(f); x = data(f, "x")
    lj = lambda t: normal(t, 0, 5) + sum(studentt(xi, 4, t, 1.5) for xi in x)
    return one_latent(f, "real", lj, lambda t: normal(t, v["m"], v["s"]), res=res)


@oracle("43_negbin_hierarchical.toml")
def m43(res):
    f = "43_negbin_hierarchical.toml"; v = values(f); k = data(f, "k")
    u = np.array(v["u"], float); w = float(v["w"])
    qb = Q(lambda b: gamma(b, v["c"], v["d"]), "pos", panels=60 * res)
    Eb, Elogb = qb.mean(lambda b: b), qb.mean(np.log)
    elbo = qb.mean(lambda b: gamma(b, 2, 1)) + qb.entropy
    for ki, ui in zip(k, u):
        ql = Q(lambda l: gamma(l, ui, w), "pos", panels=60 * res)
        El, Elogl = ql.mean(lambda l: l), ql.mean(np.log)
        # E[log Gamma(lam | 2, b)] = 2 E[log b] - lgamma(2) + E[log lam] - E[b] E[lam]
        elbo += 2 * Elogb - lgamma(2) + Elogl - Eb * El
        elbo += ql.mean(lambda l: ki * np.log(l) - l - lgamma(ki + 1)) + ql.entropy
    # lam_i out by hand: int Gamma(l|2,b) Poisson(k|l) dl = b^2 Gamma(k+2) / (Gamma(2) k! (b+1)^(k+2))
    marg = lambda b: gamma(b, 2, 1) + sum(2 * np.log(b) + lgamma(ki + 2) - lgamma(2) - lgamma(ki + 1)
                                          - (ki + 2) * np.log1p(b) for ki in k)
    logp = log_integral_1d(marg, "pos", panels=200 * res)
    return result(elbo, logp)


@oracle("44_laplace_small.toml")
def m44(res):
    f = "44_laplace_small.toml"; v = values(f); x = data(f, "x")
    lj = lambda t: normal(t, 5, 3) + sum(laplace(xi, t, 1) for xi in x)
    return one_latent(f, "real", lj, lambda t: normal(t, v["m"], v["s"]), breaks=list(x),
                      qbreaks=list(x), res=res)


def finite_mixture(f, var, comps, resp):
    """No global latent: comps[c] = log w_c + log p(x_i | z_i = c) per observation (arrays),
    resp[c] = q(z_i = c). Exact sums; the KL also summed directly as a second route."""
    L = np.array(comps); R = np.array(resp)
    elbo = math.fsum(np.sum(R * (L - np.log(R)), axis=0))
    norm = np.logaddexp.reduce(L, axis=0)
    logp = math.fsum(norm)
    CHECKS[f] = (logp - elbo) - math.fsum(np.sum(R * (np.log(R) - (L - norm)), axis=0))
    return result(elbo, logp)


@oracle("45_mixture_three_categorical.toml")
def m45(res):
    f = "45_mixture_three_categorical.toml"; v = values(f); x = data(f, "x")
    comps = [log(w) + normal(x, -2 + 2 * c, 1) for c, w in enumerate((0.3, 0.4, 0.3))]
    return finite_mixture(f, "x", comps, [np.array(v[k], float) for k in ("r1", "r2", "r3")])


@oracle("46_contaminated_normal.toml")
def m46(res):
    f = "46_contaminated_normal.toml"; v = values(f); x = data(f, "x"); r = np.array(v["r"], float)
    return finite_mixture(f, "x", [log(0.9) + normal(x, 0, 1), log(0.1) + normal(x, 0, 3)], [1 - r, r])


@oracle("47_poisson_two_rates.toml")
def m47(res):
    f = "47_poisson_two_rates.toml"; v = values(f); k = data(f, "k"); r = np.array(v["r"], float)
    lf = np.array([lgamma(c + 1) for c in k])
    pois = lambda lam: k * log(lam) - lam - lf
    return finite_mixture(f, "k", [log(0.7) + pois(1.5), log(0.3) + pois(9.0)], [1 - r, r])


@oracle("48_zero_inflated_poisson.toml")
def m48(res):
    # q(z_i = 0) = 0.001 > 0 for a positive count k_i, where Poisson(k_i | 0) = 0: ELBO = -inf
    f = "48_zero_inflated_poisson.toml"; k = data(f, "k")
    zeros, pos = int(np.sum(k == 0)), k[k > 0]

    def lj(lam):
        return (gamma(lam, 2, 0.5) + zeros * np.logaddexp(log(0.3), log(0.7) - lam)
                + len(pos) * log(0.7) + poisson_sum(pos, lam))
    return {"elbo": -math.inf, "log_evidence": log_integral_1d(lj, "pos", panels=200 * res),
            "kl": math.inf}


@oracle("49_laplace_unknown_scale.toml")
def m49(res):
    f = "49_laplace_unknown_scale.toml"; v = values(f); x = data(f, "x"); n = len(x)
    S = math.fsum(np.abs(x))
    lj = lambda b: invgamma(b, 3, 2) - n * np.log(2 * b) - S / b
    out = one_latent(f, "pos", lj, lambda b: invgamma(b, v["c"], v["d"]), res=res)
    CHECKS[f] = out["log_evidence"] - (3 * log(2) - lgamma(3) - n * log(2) + lgamma(3 + n)
                                        - (3 + n) * log(2 + S))
    return out


def mean_known_noise(f):
    x = data(f, "x")
    return lambda mu: normal(mu, 10, 3) + normal_mean_sum(x, mu, 1.0)


def conjugate_mean_check(f, out):
    x = data(f, "x"); n = len(x)
    cov = np.eye(n) + 9.0
    d = x - 10
    CHECKS[f] = out["log_evidence"] - (-0.5 * (n * LOG2PI + np.linalg.slogdet(cov)[1]
                                               + d @ np.linalg.solve(cov, d)))


@oracle("50_studentt_q_mean.toml")
def m50(res):
    f = "50_studentt_q_mean.toml"; v = values(f)
    out = one_latent(f, "real", mean_known_noise(f), lambda mu: studentt(mu, 5, v["m"], v["s"]),
                     qkind=("heavy", v["m"], v["s"]), res=res)
    conjugate_mean_check(f, out)
    return out


@oracle("51_divergent_studentt_q.toml")
def m51(res):
    # E_q[mu**2] = inf under StudentT(2, m, s): the ELBO is -inf
    f = "51_divergent_studentt_q.toml"
    out = {"elbo": -math.inf, "log_evidence": log_integral_1d(mean_known_noise(f), "real", panels=200 * res),
           "kl": math.inf}
    conjugate_mean_check(f, out)
    return out


@oracle("52_laplace_q_mean.toml")
def m52(res):
    f = "52_laplace_q_mean.toml"; v = values(f)
    out = one_latent(f, "real", mean_known_noise(f), lambda mu: laplace(mu, v["m"], v["b"]),
                     qbreaks=[v["m"]], res=res)
    conjugate_mean_check(f, out)
    return out


@oracle("53_invgamma_q_stddev.toml")
def m53(res):
    f = "53_invgamma_q_stddev.toml"; v = values(f)
    lj = sd_joint(data(f, "x") - 2.5, lambda s: gamma(s, 3, 2))
    return one_latent(f, "pos", lj, lambda s: invgamma(s, v["a"], v["b"]), res=res)


@oracle("54_poisson_lognormal.toml")
def m54(res):
    f = "54_poisson_lognormal.toml"; v = values(f); k = data(f, "k")
    t = np.array(v["t"], float); vv = float(v["v"])
    qm = Q(lambda z: normal(z, v["m"], v["s"]), "real", panels=60 * res)
    Em, Em2 = qm.mean(lambda z: z), qm.mean(lambda z: z * z)
    elbo = qm.mean(lambda z: normal(z, 1, 2)) + qm.entropy
    for ti, ki in zip(t, k):
        qt = Q(lambda z: normal(z, ti, vv), "real", panels=60 * res)
        Et, Et2 = qt.mean(lambda z: z), qt.mean(lambda z: z * z)
        elbo += -0.5 * LOG2PI - 0.5 * (Et2 - 2 * Et * Em + Em2)
        elbo += qt.mean(lambda z: ki * z - np.exp(z) - lgamma(ki + 1)) + qt.entropy
    # log p(k | mu) = sum_i log int N(theta | mu, 1) Poisson(k_i | exp(theta)) dtheta, by a rule in theta
    th, tw = nodes(-40.0, 40.0, 100 * res)

    def lj(mu):
        mu = np.atleast_1d(mu)
        out = normal(mu, 1, 2)
        for lo in range(0, len(mu), 500):
            m = mu[lo:lo + 500, None]
            for ki in k:
                out[lo:lo + 500] += lse(normal(th, m, 1) + ki * th - np.exp(th) - lgamma(ki + 1)
                                        + np.log(tw), axis=1)
        return out
    return result(elbo, log_integral_1d(lj, "real", panels=200 * res))


@oracle("55_eight_schools.toml")
def m55(res):
    f = "55_eight_schools.toml"; v = values(f); x = data(f, "x")
    t = np.array(v["t"], float); vv = float(v["v"])
    qm = Q(lambda z: normal(z, v["m"], v["s"]), "real", panels=60 * res)
    qs = Q(lambda z: lognormal(z, v["lt"], v["ls"]), "pos", panels=60 * res)
    Em, Em2 = qm.mean(lambda z: z), qm.mean(lambda z: z * z)
    Elog, Einv2 = qs.mean(np.log), qs.mean(lambda z: z ** -2.0)
    elbo = (qm.mean(lambda z: normal(z, 0, 5)) + qm.entropy
            + qs.mean(lambda z: halfnormal(z, 2)) + qs.entropy)
    for ti, xi in zip(t, x):
        qt = Q(lambda z: normal(z, ti, vv), "real", panels=60 * res)
        Et, Et2 = qt.mean(lambda z: z), qt.mean(lambda z: z * z)
        # E[log N(theta | mu, tau)] = -log(2 pi)/2 - E[log tau] - E[tau^-2] E[(theta - mu)^2] / 2
        elbo += -0.5 * LOG2PI - Elog - 0.5 * Einv2 * (Et2 - 2 * Et * Em + Em2)
        elbo += qt.mean(lambda z: normal(xi, z, 1)) + qt.entropy

    def lj(mu, tau):
        out = normal(mu, 0, 5) + halfnormal(tau, 2)
        for xi in x:
            out = out + normal(xi, mu, np.sqrt(tau * tau + 1))
        return out
    return result(elbo, log_integral_2d(lj, ("real", "pos"), panels=40 * res))


@oracle("56_logistic_two_weights.toml")
def m56(res):
    f = "56_logistic_two_weights.toml"; v = values(f); d = data(f, "y"); x, y = d["x"], d["y"]

    def lj(w0, w1):
        out = normal(w0, 0, 2.5) + normal(w1, 0, 2.5)
        for xi, yi in zip(x, y):
            eta = w0 + w1 * xi
            out = out + (log_sigmoid(eta) if yi else log_sigmoid(-eta))
        return out
    q1 = Q(lambda w: normal(w, v["m0"], v["s0"]), "real", panels=30 * res)
    q2 = Q(lambda w: normal(w, v["m1"], v["s1"]), "real", panels=30 * res)
    return result(elbo_2d(lj, q1, q2), log_integral_2d(lj, ("real", "real"), panels=40 * res))


@oracle("57_bimodal_narrow.toml")
def m57(res):
    f = "57_bimodal_narrow.toml"; v = values(f); x = data(f, "x")
    lj = lambda t: normal(t, 1, 2) + normal_mean_sum(x, t ** 2, 0.1)
    out = one_latent(f, "real", lj, lambda t: normal(t, v["m"], v["s"]), res=res)
    # second route: each mode on its own, in a window around it, then their log-sum
    halves = [log_integral_1d(lambda t: np.where(sgn * t > 0, lj(t), -np.inf), "real", panels=400)
              for sgn in (1, -1)]
    CHECKS[f] = out["log_evidence"] - float(np.logaddexp(*halves))
    return out


# -- vector latents ------------------------------------------------------------------------------
def digamma(x):
    return float(mpmath.digamma(x))


def dirichlet(thetas, a):
    """log Dirichlet(theta | a) at the components thetas (arrays of one shape)."""
    return (lgamma(sum(a)) - sum(lgamma(ak) for ak in a)
            + sum((ak - 1) * np.log(t) for ak, t in zip(a, thetas)))


def log_beta_fn(a):
    return sum(lgamma(ak) for ak in a) - lgamma(sum(a))


def dirichlet_entropy(a):
    a0, K = sum(a), len(a)
    return log_beta_fn(a) + (a0 - K) * digamma(a0) - sum((ak - 1) * digamma(ak) for ak in a)


def simplex3(u1, u2):
    """Stick-breaking onto the 2-simplex in logit coordinates u1, u2 (real):
    theta = (s(u1), s(-u1) s(u2), s(-u1) s(-u2)), s the logistic function, each component
    formed without cancellation; the area element d theta_0 d theta_1 is
    s(u1) s(-u1)^2 s(u2) s(-u2) du1 du2."""
    s = lambda t: 1 / (1 + np.exp(-t))
    th = (s(u1), s(-u1) * s(u2), s(-u1) * s(-u2))
    logj = log_sigmoid(u1) + 2 * log_sigmoid(-u1) + log_sigmoid(u2) + log_sigmoid(-u2)
    return th, logj


def simplex3_log_integral(logf, panels):
    """log of the integral of exp(logf(theta)) over the open 2-simplex (Lebesgue measure in
    theta_0, theta_1)."""
    def g(u1, u2):
        th, logj = simplex3(u1, u2)
        return logf(th) + logj
    return log_integral_2d(g, ("real", "real"), panels=panels)


def simplex3_mean(logq, h, panels):
    """E_q[h(theta)] over the 2-simplex by the same rule (q's mass asserted to be 1)."""
    def g(u1, u2):
        th, logj = simplex3(u1, u2)
        return logq(th) + logj
    U1, U2, logw = rule_2d(g, ("real", "real"), panels=panels)
    w = np.exp(logw)
    assert abs(w.sum() - 1) < 1e-10, f"q does not integrate to 1 ({w.sum()})"
    th, _ = simplex3(U1, U2)
    with np.errstate(all="ignore"):
        return float(np.sum(w * h(th)) / w.sum())


def mvn(W, m, S):
    """log N(w | m, S) at points W of shape (..., K)."""
    K = len(m)
    d = W - m
    P = np.linalg.inv(S)
    return (-0.5 * K * LOG2PI - 0.5 * np.linalg.slogdet(S)[1]
            - 0.5 * np.einsum("...i,ij,...j->...", d, P, d))


def mvn_entropy(S):
    return 0.5 * len(S) * (1 + LOG2PI) + 0.5 * np.linalg.slogdet(S)[1]


def tril(v, key):
    L = np.array(v[key], float)
    assert np.allclose(L, np.tril(L)) and np.all(np.diag(L) > 0)
    return L


@oracle("58_dirichlet_die.toml")
def m58(res):
    f = "58_dirichlet_die.toml"; al = [float(a) for a in values(f)["alpha"]]; x = data(f, "x")
    n = [int(np.sum(x == k)) for k in range(3)]
    lj = lambda th: dirichlet(th, (2, 2, 2)) + sum(c * np.log(t) for c, t in zip(n, th))
    logq = lambda th: dirichlet(th, al)
    logp = simplex3_log_integral(lj, 40 * res)
    elbo = simplex3_mean(logq, lambda th: lj(th) - logq(th), 40 * res)
    # second route: conjugacy and the Dirichlet's E[log theta_k] = psi(a_k) - psi(a_0)
    post = [2 + c for c in n]
    exact_logp = log_beta_fn(post) - log_beta_fn((2, 2, 2))
    elog = [digamma(a) - digamma(sum(al)) for a in al]
    exact_elbo = (-log_beta_fn((2, 2, 2)) + sum((p - 1) * e for p, e in zip(post, elog))
                  + dirichlet_entropy(al))
    CHECKS[f] = max(abs(logp - exact_logp), abs(elbo - exact_elbo))
    return result(elbo, logp)


@oracle("67_dirichlet_two_bernoulli.toml")
def m67(res):
    f = "67_dirichlet_two_bernoulli.toml"; al = [float(a) for a in values(f)["alpha"]]
    x = data(f, "x"); h, n = x.sum(), len(x)
    # the 1-simplex in theta_0 (theta_1 = 1 - theta_0), measure d theta_0
    lj = lambda t: dirichlet((t, 1 - t), (2, 3)) + h * np.log(t) + (n - h) * np.log1p(-t)
    out = one_latent(f, UNIT, lj, lambda t: dirichlet((t, 1 - t), al), res=res)
    elog = [digamma(a) - digamma(sum(al)) for a in al]
    exact_elbo = (-log_beta_fn((2, 3)) + (1 + h) * elog[0] + (2 + n - h) * elog[1]
                  + dirichlet_entropy(al))
    exact_logp = log_beta_fn((2 + h, 3 + n - h)) - log_beta_fn((2, 3))
    CHECKS[f] = max(abs(out["log_evidence"] - exact_logp), abs(out["elbo"] - exact_elbo))
    return out


def gaussian_linear(f, X, y, sigma, m0, S0, m, S):
    """ELBO of q = N(m, S) and log p(y) for y ~ N(X w, sigma^2 I), w ~ N(m0, S0), by hand."""
    n, K = X.shape
    P0 = np.linalg.inv(S0)
    r = y - X @ m
    e_lik = -n * (0.5 * LOG2PI + log(sigma)) - (r @ r + np.trace(X @ S @ X.T)) / (2 * sigma ** 2)
    d = m - m0
    e_prior = (-0.5 * K * LOG2PI - 0.5 * np.linalg.slogdet(S0)[1]
               - 0.5 * (np.trace(P0 @ S) + d @ P0 @ d))
    elbo = e_lik + e_prior + mvn_entropy(S)
    # log p(y): y ~ N(X m0, sigma^2 I + X S0 X^T), the n x n covariance
    C = sigma ** 2 * np.eye(n) + X @ S0 @ X.T
    e = y - X @ m0
    logp = -0.5 * (n * LOG2PI + np.linalg.slogdet(C)[1] + e @ np.linalg.solve(C, e))
    # second route: the posterior N(mp, Sp) by its precision; log p(y) = log p(y, w) - log p(w | y)
    # at w = mp, and log p(y) - ELBO = KL(q || posterior) in closed form
    Pp = X.T @ X / sigma ** 2 + P0
    Sp = np.linalg.inv(Pp)
    mp = Sp @ (X.T @ y / sigma ** 2 + P0 @ m0)
    rr = y - X @ mp
    logp2 = (-n * (0.5 * LOG2PI + log(sigma)) - rr @ rr / (2 * sigma ** 2) + mvn(mp, m0, S0)
             - mvn(mp, mp, Sp))
    dm = mp - m
    kl = 0.5 * (np.trace(Pp @ S) + dm @ Pp @ dm - K + np.linalg.slogdet(Sp)[1] - np.linalg.slogdet(S)[1])
    CHECKS[f] = max(abs(logp - logp2), abs((logp - elbo) - kl))
    return result(elbo, logp), (mp, Sp)


def regression3(f):
    d = data(f, "y")
    return np.column_stack([np.ones(len(d["y"])), d["x1"], d["x2"]]), d["y"]


def regression3_q(f):
    v = values(f); m = np.array(v["m"], float)
    if "L" in v:
        L = tril(v, "L")
        return m, L @ L.T
    return m, np.diag(np.array(v["s"], float) ** 2)


@oracle("59_regression3_full.toml")
def m59(res):
    f = "59_regression3_full.toml"; X, y = regression3(f)
    return gaussian_linear(f, X, y, 0.5, np.zeros(3), 4 * np.eye(3), *regression3_q(f))[0]


@oracle("60_regression3_diagonal.toml")
def m60(res):
    f = "60_regression3_diagonal.toml"; X, y = regression3(f)
    return gaussian_linear(f, X, y, 0.5, np.zeros(3), 4 * np.eye(3), *regression3_q(f))[0]


@oracle("61_regression3_exact_q.toml")
def m61(res):
    f = "61_regression3_exact_q.toml"; X, y = regression3(f)
    m, S = regression3_q(f)
    out, (mp, Sp) = gaussian_linear(f, X, y, 0.5, np.zeros(3), 4 * np.eye(3), m, S)
    # the file's m and L are the posterior's, to the digits written
    assert np.max(np.abs(m - mp)) < 1e-12 and np.max(np.abs(tril(values(f), "L") - np.linalg.cholesky(Sp))) < 1e-12
    return out


@oracle("62_mvn_prior_weights.toml")
def m62(res):
    f = "62_mvn_prior_weights.toml"; v = values(f); d = data(f, "y")
    X = np.column_stack([np.ones(len(d["y"])), d["x"]])
    L0, L = tril(v, "L0"), tril(v, "L")
    return gaussian_linear(f, X, d["y"], 0.5, np.array(v["m0"], float), L0 @ L0.T,
                           np.array(v["m"], float), L @ L.T)[0]


@oracle("63_poisson_regression_mvn.toml")
def m63(res):
    f = "63_poisson_regression_mvn.toml"; v = values(f); d = data(f, "y"); x, y = d["x"], d["y"]
    m = np.array(v["m"], float); L = tril(v, "L"); S = L @ L.T
    const = -sum(lgamma(c + 1) for c in y)

    def lj(w0, w1):
        out = normal(w0, 0, 1) + normal(w1, 0, 1) + const
        for xi, yi in zip(x, y):
            eta = w0 + w1 * xi
            out = out + yi * eta - np.exp(eta)
        return out
    # ELBO in closed form: E[exp(a.w)] = exp(a.m + a.S.a / 2), a = (1, x_i)
    A = np.column_stack([np.ones(len(x)), x])
    elbo = (math.fsum(y * (A @ m)) - math.fsum(np.exp(A @ m + 0.5 * np.einsum("ij,jk,ik->i", A, S, A)))
            + const + sum(-0.5 * LOG2PI - 0.5 * (m[k] ** 2 + S[k, k]) for k in range(2)) + mvn_entropy(S))
    logp = log_integral_2d(lj, ("real", "real"), panels=40 * res)
    # second routes: the ELBO by a 2-D rule under q (log q included); log p(y) by a fixed
    # tensor rule in q's whitened coordinates w = m + L u
    logq = lambda w0, w1: mvn(np.stack([w0, w1], -1), m, S)
    W0, W1, lw = rule_2d(logq, ("real", "real"), panels=30)
    w = np.exp(lw)
    assert abs(w.sum() - 1) < 1e-10
    elbo2 = float(np.sum(w * (lj(W0, W1) - logq(W0, W1))) / w.sum())
    u, uw = nodes(-25.0, 25.0, 120)
    U1, U2 = np.meshgrid(u, u, indexing="ij")
    Wz = m + np.stack([U1, U2], -1) @ L.T
    g = lj(Wz[..., 0], Wz[..., 1]) + np.log(np.outer(uw, uw)) + np.log(np.diag(L)).sum()
    edge = max(g[0].max(), g[-1].max(), g[:, 0].max(), g[:, -1].max())
    assert edge < g.max() - DROP, "the whitened box is too small"
    CHECKS[f] = max(abs(elbo - elbo2), abs(logp - float(lse(g))))
    return result(elbo, logp)


@oracle("64_mixture_unknown_means.toml")
def m64(res):
    f = "64_mixture_unknown_means.toml"; v = values(f); x = data(f, "x"); r = np.array(v["r"], float)
    m, s = np.array(v["m"], float), np.array(v["s"], float)
    # z_i = 0 picks mu[0] (q weight 1 - r_i), z_i = 1 picks mu[1] (weight r_i); prior weights 0.5
    e_lik = lambda k: -0.5 * LOG2PI - ((x - m[k]) ** 2 + s[k] ** 2) / 2
    elbo = (sum(-0.5 * LOG2PI - log(3) - (m[k] ** 2 + s[k] ** 2) / 18 + 0.5 * (1 + LOG2PI) + log(s[k])
                for k in range(2))
            + math.fsum(log(0.5) + (1 - r) * e_lik(0) + r * e_lik(1) + bern_entropy(r)))

    def lj(m0, m1):
        out = normal(m0, 0, 3) + normal(m1, 0, 3)
        for xi in x:
            out = out + np.logaddexp(log(0.5) + normal(xi, m0, 1), log(0.5) + normal(xi, m1, 1))
        return out
    logp = log_integral_2d(lj, ("real", "real"), panels=40 * res)
    # second routes: the ELBO by tensor rules under q's two factors (z summed by hand);
    # log p(x) exactly, as a sum over all 2^n assignments of two conjugate Normal evidences
    def g(m0, m1):
        out = normal(m0, 0, 3) + normal(m1, 0, 3)
        for xi, ri in zip(x, r):
            out = out + log(0.5) + (1 - ri) * normal(xi, m0, 1) + ri * normal(xi, m1, 1)
        return out + math.fsum(bern_entropy(r))
    q1 = Q(lambda z: normal(z, m[0], s[0]), "real", panels=30)
    q2 = Q(lambda z: normal(z, m[1], s[1]), "real", panels=30)
    elbo2 = elbo_2d(g, q1, q2)

    def group(xs):      # log of int N(mu | 0, 3) prod_i N(x_i | mu, 1) dmu
        k = len(xs)
        return (-0.5 * k * LOG2PI - 0.5 * log(1 + 9 * k)
                - 0.5 * (math.fsum(xs * xs) - 9 * math.fsum(xs) ** 2 / (1 + 9 * k)))
    terms = []
    for bits in range(2 ** len(x)):
        sel = np.array([(bits >> i) & 1 for i in range(len(x))], bool)
        terms.append(len(x) * log(0.5) + group(x[~sel]) + group(x[sel]))
    CHECKS[f] = max(abs(elbo - elbo2), abs(logp - float(lse(np.array(terms)))))
    return result(elbo, logp)


@oracle("65_mixture_three_dirichlet.toml")
def m65(res):
    f = "65_mixture_three_dirichlet.toml"; v = values(f); x = data(f, "x")
    al = [float(a) for a in v["alpha"]]
    R = np.array([v[k] for k in ("r0", "r1", "r2")], float)          # R[k, i] = q(z_i = k)
    N = np.array([normal(x, -2 + 2 * k, 1) for k in range(3)])        # N[k, i] = log N(x_i | mu_k, 1)
    c = R.sum(axis=1)
    rest = math.fsum((R * (N - np.log(R))).ravel())
    # closed form: E[log Dirichlet(pi | 1,1,1)] = log 2, E[log pi_k] = psi(alpha_k) - psi(alpha_0)
    elog = [digamma(a) - digamma(sum(al)) for a in al]
    elbo = log(2) + sum(ck * e for ck, e in zip(c, elog)) + rest + dirichlet_entropy(al)
    def lj(th):
        out = log(2)
        for i in range(len(x)):
            out = out + np.logaddexp.reduce([np.log(th[k]) + N[k, i] for k in range(3)])
        return out
    logp = simplex3_log_integral(lj, 40 * res)
    # second routes: the ELBO by the simplex rule under q; log p(x) exactly, a sum over the
    # 3^n assignments of prod_i N(x_i | mu_{z_i}) B(1 + counts) / B(1, 1, 1)
    logq = lambda th: dirichlet(th, al)
    elbo2 = simplex3_mean(logq, lambda th: log(2) + sum(ck * np.log(t) for ck, t in zip(c, th)) + rest
                          - logq(th), 40)
    n = len(x)
    Z = np.array(np.meshgrid(*[np.arange(3)] * n, indexing="ij")).reshape(n, -1).T
    lik = N[Z, np.arange(n)].sum(axis=1)
    counts = np.stack([(Z == k).sum(axis=1) for k in range(3)], axis=1)
    lb = np.array([log_beta_fn(1 + cc) for cc in counts]) - log_beta_fn((1, 1, 1))
    CHECKS[f] = max(abs(elbo - elbo2), abs(logp - float(lse(lik + lb))))
    return result(elbo, logp)


@oracle("66_hierarchical_weights.toml")
def m66(res):
    f = "66_hierarchical_weights.toml"; v = values(f); d = data(f, "y"); x, y = d["x"], d["y"]
    a, b = float(v["a"]), float(v["b"]); m = np.array(v["m"], float); L = tril(v, "L"); S = L @ L.T
    X = np.column_stack([np.ones(len(y)), x]); n, sig = len(y), 0.5
    Elt, Et = digamma(a) - log(b), a / b
    r = y - X @ m
    e_lik = -n * (0.5 * LOG2PI + log(sig)) - (r @ r + np.trace(X @ S @ X.T)) / (2 * sig ** 2)
    Ew2 = m ** 2 + np.diag(S)
    e_w = sum(-0.5 * LOG2PI + 0.5 * Elt - 0.5 * Et * Ew2[k] for k in range(2))
    e_tau = -lgamma(2) + Elt - Et                                    # E[log Gamma(tau | 2, 1)]
    h_tau = a - log(b) + lgamma(a) + (1 - a) * digamma(a)
    elbo = e_tau + e_w + e_lik + h_tau + mvn_entropy(S)
    # log p(y) = int Gamma(tau | 2, 1) N(y | 0, sig^2 I + X X^T / tau) dtau, the n x n
    # covariance diagonalised once (X X^T = U diag(lam) U^T)
    lam, U = np.linalg.eigh(X @ X.T)
    yu2 = (U.T @ y) ** 2

    def lj(t):
        t = np.asarray(t)[..., None]
        dv = sig ** 2 + lam / t
        return gamma(t[..., 0], 2, 1) - 0.5 * (n * LOG2PI + np.sum(np.log(dv) + yu2 / dv, axis=-1))
    logp = log_integral_1d(lj, "pos", panels=200 * res)
    # second routes: the ELBO with tau's and w's expectations by quadrature (q's factors are
    # independent); log p(y | tau) by the 2 x 2 posterior precision A = X^T X / sig^2 + tau I
    qt = Q(lambda t: gamma(t, a, b), "pos", panels=60)
    logq = lambda w0, w1: mvn(np.stack([w0, w1], -1), m, S)
    W0, W1, lw = rule_2d(logq, ("real", "real"), panels=30)
    ww = np.exp(lw) / np.exp(lw).sum()
    Ew = lambda h: float(np.sum(ww * h(W0, W1)))
    lik = lambda w0, w1: sum(normal(yi, w0 + w1 * xi, sig) for xi, yi in zip(x, y))
    elbo2 = (qt.mean(lambda t: gamma(t, 2, 1)) + qt.entropy - Ew(logq) + Ew(lik)
             + sum(qt.mean(lambda t: -0.5 * LOG2PI + 0.5 * np.log(t)) - 0.5 * qt.mean(lambda t: t)
                   * Ew(lambda w0, w1: (w0, w1)[k] ** 2) for k in range(2)))
    G, bv = X.T @ X / sig ** 2, X.T @ y / sig ** 2
    mu_, V = np.linalg.eigh(G)
    bu2 = (V.T @ bv) ** 2
    base = -n * (0.5 * LOG2PI + log(sig)) - (y @ y) / (2 * sig ** 2)

    def lj2(t):
        t = np.asarray(t)[..., None]
        return (gamma(t[..., 0], 2, 1) + base + np.log(t[..., 0])       # (tau / 1)^(K/2), K = 2
                + np.sum(-0.5 * np.log(mu_ + t) + 0.5 * bu2 / (mu_ + t), axis=-1))
    CHECKS[f] = max(abs(elbo - elbo2), abs(logp - log_integral_1d(lj2, "pos", panels=300)))
    return result(elbo, logp)


if __name__ == "__main__":
    for name in sorted(ORACLES):
        o = ORACLES[name]()
        print(f"{name:36s} elbo {o['elbo']:.12g} logp {o['log_evidence']:.12g} kl {o['kl']:.6g}"
              f"  res-diff {ORACLE_ERRORS.get(name, 0):.1e}  check {CHECKS.get(name, float('nan')):.1e}")
