"""log p(X) of a model with several latents: exact where the structure allows, else cubature.

:func:`partial_evidence` integrates out exactly what the kernels allow
(:func:`symelbo.models.model.eliminate` on a subset of the latents): the
per-observation latents first (a finite one is summed out per observation,
log sum_k exp(...), whatever the globals), then as many global latents as
have a conjugate kernel given the others (mu | tau in a Normal-Gamma chain).
What is left is log p(X, G) for at most MAX_DIMENSIONS global latents G,
integrated by :func:`cubature`:

* each latent is mapped to the real line (log for a positive one, logit for
  one in (0, 1)), with the Jacobian;
* the modes of the integrand are found by Newton steps from several starts
  (q's means, the prior's, a spread around them), and the box is every mode
  +- BOX_SCALES of its Laplace width, grown until the integrand on its faces
  is below e**-TAIL_DROP of the peak (else: no value, with the reason);
* the box is integrated by the Genz-Malik rule (degree 7 with an embedded
  degree 5, Genz and Malik 1980), subdividing the region of largest error
  estimate along its roughest axis until the estimated error is below
  RELATIVE_TOLERANCE of the integral (else: no value, with the reason).

The integrand is evaluated in floating point by numpy (a log-sum-exp is
evaluated as one), scaled by its peak, so log p(X) = peak + log(integral).
"""

from __future__ import annotations

import heapq
import itertools
import math

import sympy as sp

from symelbo.core.deadline import check_deadline
from symelbo.models import families as fam
from symelbo.models.tables import numpy_module

#: At most this many global latents are integrated numerically.
MAX_DIMENSIONS = 3
#: The cubature stops when its error estimate is below this, relative to the integral.
RELATIVE_TOLERANCE = 1e-10
#: A value whose error estimate (on log p(X)) is above this is not reported.
REPORT_TOLERANCE = 1e-7
#: At most this many integrand evaluations.
MAX_EVALUATIONS = 4_000_000
#: The integration box reaches this many Laplace widths beyond every mode, at least.
BOX_SCALES = 12.0
#: The integrand on the faces of the box must be this far (in log) below its peak.
TAIL_DROP = 45.0


class CubatureFailed(Exception):
    """No value: ``reason`` says why (too many latents, a tail that does not fall, no convergence)."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason




# --- a numeric function of the globals, from a SymPy expression ------------------

def compile_log(expr: sp.Expr, symbols: list):
    """A numpy function of arrays (one per symbol) computing ``expr``; a log of a sum is
    computed as a log-sum-exp of the logs of its terms, so that it neither overflows
    nor underflows where the sum of exponentials would."""
    np = numpy_module()
    index = {s: i for i, s in enumerate(symbols)}

    def build(e):
        if e in index:
            i = index[e]
            return lambda xs: xs[i]
        if e.is_number:
            v = float(sp.N(e, 20))
            return lambda xs: v
        if isinstance(e, sp.Add):
            parts = [build(a) for a in e.args]
            return lambda xs: sum(p(xs) for p in parts)
        if isinstance(e, sp.Mul):
            parts = [build(a) for a in e.args]
            return lambda xs: _prod(parts, xs)
        if isinstance(e, sp.Pow):
            base, ex = build(e.base), e.exp
            if ex.is_Integer:
                k = int(ex)
                return lambda xs: base(xs) ** k
            power = build(ex)
            return lambda xs: np.power(base(xs), power(xs))
        if isinstance(e, sp.exp):
            inner = build(e.args[0])
            return lambda xs: np.exp(inner(xs))
        if isinstance(e, sp.log):
            arg = e.args[0]
            if isinstance(arg, sp.Add) and all(_exp_product(t) for t in arg.args):
                return _log_sum_exp([build_log(t) for t in arg.args])
            return build_log(arg)
        if getattr(e.func, "__name__", None) == "logsumexp":
            return _log_sum_exp([build(a) for a in e.args])
        if isinstance(e, sp.loggamma):
            inner = build(e.args[0])
            lg = np.vectorize(math.lgamma, otypes=[float])
            return lambda xs: lg(inner(xs))
        if isinstance(e, sp.Abs):
            inner = build(e.args[0])
            return lambda xs: np.abs(inner(xs))
        raise CubatureFailed(f"cannot evaluate {type(e).__name__} numerically")

    def build_log(e):
        """log of a positive factor ``e`` (a product of exponentials, powers and numbers)."""
        if isinstance(e, sp.exp):
            return build(e.args[0])
        if isinstance(e, sp.Mul):
            parts = [build_log(a) for a in e.args]
            return lambda xs: sum(p(xs) for p in parts)
        if e.is_number:
            if not e.is_positive:
                raise CubatureFailed(f"log of {e}, which is not positive")
            v = float(sp.N(sp.log(e), 20))
            return lambda xs: v
        if isinstance(e, sp.Pow) and e.exp.is_number and e.base.is_positive:
            inner, k = build_log(e.base), float(e.exp)
            return lambda xs: k * inner(xs)
        plain = build(e)
        return lambda xs: np.log(plain(xs))

    return build(expr)


def _log_sum_exp(logs):
    """The vectorised ``log(sum_k exp(l_k(xs)))`` of compiled logs, shifted by their
    maximum so that no exp overflows (an all-infinite column shifts by 0)."""
    np = numpy_module()

    def lse(xs):
        vals = [lg(xs) for lg in logs]
        top = vals[0]
        for v in vals[1:]:
            top = np.maximum(top, v)
        top = np.where(np.isfinite(top), top, 0.0)
        return top + np.log(sum(np.exp(v - top) for v in vals))
    return lse


def _exp_product(term: sp.Expr) -> bool:
    """Whether a term is a product of exponentials and positive numbers (its log is a sum)."""
    return any(isinstance(f, sp.exp) for f in sp.Mul.make_args(term)) and all(
        isinstance(f, sp.exp) or (f.is_number and f.is_positive) for f in sp.Mul.make_args(term))


def _prod(parts, xs):
    out = 1.0
    for p in parts:
        out = out * p(xs)
    return out


# --- coordinates ------------------------------------------------------------------

def _to_latent(support: str, t):
    """(latent value, log Jacobian) of the unconstrained coordinate ``t``."""
    np = numpy_module()
    if support == fam.REAL:
        return t, 0.0 * t
    if support == fam.POSITIVE:
        return np.exp(t), t
    if support == fam.UNIT:
        # z = 1/(1 + e**-t): dz/dt = z (1 - z)
        z = 1.0 / (1.0 + np.exp(-t))
        return z, -np.logaddexp(0.0, -t) - np.logaddexp(0.0, t)
    raise CubatureFailed(f"a latent on {fam.SUPPORT_TEXT.get(support, support)} is not "
                         "integrated numerically")


#: The unconstrained coordinate's range inside which the latent is a normal float.
_SAFE = {fam.POSITIVE: (-700.0, 700.0), fam.UNIT: (-36.0, 36.0)}


def _to_free(support: str, z: float) -> float:
    if support == fam.POSITIVE:
        return math.log(z)
    if support == fam.UNIT:
        return math.log(z / (1 - z))
    return z


class _Target:
    """log of the integrand in unconstrained coordinates, vectorised over columns of points."""

    def __init__(self, logf, supports: list, conditions=(), shift=None, scale=None):
        self.logf, self.supports = logf, supports
        self.conditions = list(conditions)
        self.evaluations = 0
        self.shift, self.scale = shift, scale

    def whitened(self, shift, scale) -> "_Target":
        """The same integrand in coordinates u with t = shift + scale @ u (log |det| added)."""
        return _Target(self.logf, self.supports, self.conditions, shift, scale)

    def __call__(self, t):
        """``t``: array of shape (d, N); the log integrand at each column (-inf where undefined)."""
        np = numpy_module()
        jac = 0.0
        if self.shift is not None:
            t = self.shift[:, None] + self.scale @ t
            jac = math.log(abs(np.linalg.det(self.scale)))
        zs = []
        for k, s in enumerate(self.supports):
            # beyond these the latent would round to an end of its support (w = 1.0, z =
            # inf): the integrand is held at its value there, a plateau that the test on
            # the faces of the box sees, so it refuses the box rather than miss mass
            z, j = _to_latent(s, np.clip(t[k], *_SAFE[s]) if s in _SAFE else t[k])
            zs.append(z)
            jac = jac + j
        self.evaluations += t.shape[1]
        with np.errstate(all="ignore"):
            v = self.logf(zs) + jac
            for cond, what in self.conditions:
                c = np.broadcast_to(np.asarray(cond(zs), dtype=float), v.shape)
                bad = ~(c > 0) & np.isfinite(v)
                if bad.any():
                    k = int(np.flatnonzero(bad)[0])
                    raise CubatureFailed(f"{what} is not positive at a point of the "
                                         f"integration ({', '.join(f'{z[k]:.6g}' for z in zs)}): "
                                         "the exact step does not hold there")
        v = np.broadcast_to(np.asarray(v, dtype=float), (t.shape[1],)).copy()
        if np.isnan(v).any() or (v == np.inf).any():
            # every point lies inside the support (the coordinates see to it): a value
            # that is not a number there is an arithmetic failure, never read as 0
            k = int(np.flatnonzero(np.isnan(v) | (v == np.inf))[0])
            raise CubatureFailed("the integrand is not a finite number at ("
                                 + ", ".join(f"{z[k]:.6g}" for z in
                                             (np.broadcast_to(z, v.shape) for z in zs)) + ")")
        return v


def _newton(target: _Target, start, d: int, steps: int = 60):
    """A local maximum of ``target`` near ``start`` and the Hessian there (finite differences)."""
    np = numpy_module()
    x = np.array(start, dtype=float)
    h = 1e-4
    eye = np.eye(d)

    def grad_hess(x):
        # every point of a central-difference stencil in one evaluation
        pts = [x]
        for i in range(d):
            pts += [x + h * eye[i], x - h * eye[i]]
        for i, j in itertools.combinations(range(d), 2):
            pts += [x + h * (eye[i] + eye[j]), x - h * (eye[i] + eye[j])]
        vals = target(np.array(pts).T)
        f0 = vals[0]
        g = np.empty(d)
        H = np.empty((d, d))
        for i in range(d):
            fp, fm = vals[1 + 2 * i], vals[2 + 2 * i]
            g[i] = (fp - fm) / (2 * h)
            H[i, i] = (fp - 2 * f0 + fm) / h ** 2
        base = 1 + 2 * d
        for n, (i, j) in enumerate(itertools.combinations(range(d), 2)):
            fpp, fmm = vals[base + 2 * n], vals[base + 2 * n + 1]
            H[i, j] = H[j, i] = ((fpp - 2 * f0 + fmm) / h ** 2 - H[i, i] - H[j, j]) / 2
        return f0, g, H

    f0, g, H = grad_hess(x)
    if not np.isfinite(f0):
        return None
    for _ in range(steps):
        check_deadline()
        if not (np.isfinite(g).all() and np.isfinite(H).all()):
            return None
        w, V = np.linalg.eigh(H)
        # a Newton step on the negative-definite part, a gradient step elsewhere
        w = np.where(w < -1e-8, w, -np.maximum(np.abs(w), 1.0))
        step = -V @ ((V.T @ g) / w)
        norm = np.linalg.norm(step)
        if norm > 2.0:
            step *= 2.0 / norm
        t = 1.0
        while t > 1e-6:
            cand = x + t * step
            fc = target(cand.reshape(d, 1))[0]
            if fc >= f0 - 1e-12:
                break
            t /= 2
        else:
            break
        x = cand
        f1, g, H = grad_hess(x)
        done = abs(f1 - f0) < 1e-12 and np.linalg.norm(step * t) < 1e-9
        f0 = f1
        if done:
            break
    if not np.isfinite(f0):
        return None
    return x, f0, H


# --- the Genz-Malik rule -------------------------------------------------------------

def _genz_malik(d: int):
    """Points (d, m) on [-1, 1]**d and the weights of the degree 7 and 5 rules (each sums to 1:
    the integral over a region is its volume times the weighted sum)."""
    np = numpy_module()
    l2, l3, l4, l5 = math.sqrt(9 / 70), math.sqrt(9 / 10), math.sqrt(9 / 10), math.sqrt(9 / 19)
    pts, w7, w5 = [np.zeros(d)], [(12824 - 9120 * d + 400 * d * d) / 19683],\
        [(729 - 950 * d + 50 * d * d) / 729]
    eye = np.eye(d)
    for lam, a7, a5 in ((l2, 980 / 6561, 245 / 486), (l3, (1820 - 400 * d) / 19683,
                                                         (265 - 100 * d) / 1458)):
        for i in range(d):
            for sgn in (1, -1):
                pts.append(sgn * lam * eye[i])
                w7.append(a7)
                w5.append(a5)
    for i, j in itertools.combinations(range(d), 2):
        for si, sj in itertools.product((1, -1), repeat=2):
            pts.append(l4 * (si * eye[i] + sj * eye[j]))
            w7.append(200 / 19683)
            w5.append(25 / 729)
    for signs in itertools.product((1, -1), repeat=d):
        pts.append(l5 * np.array(signs, dtype=float))
        w7.append(6859 / 19683 / 2 ** d)
        w5.append(0.0)
    return np.array(pts).T, np.array(w7), np.array(w5), (l2, l3)


def genz_malik(f, lo, hi, rel_tol: float = RELATIVE_TOLERANCE, max_evaluations: int = 10 ** 6,
               initial: int = 1):
    """(integral, error estimate) of a vectorised ``f`` (columns of points) over the box
    [lo, hi] by adaptive Genz-Malik cubature, starting from ``initial``**d equal regions."""
    np = numpy_module()
    lo, hi = np.asarray(lo, dtype=float), np.asarray(hi, dtype=float)
    d = len(lo)
    pts, w7, w5, (l2, l3) = _genz_malik(d)
    m = pts.shape[1]
    ratio = (l2 / l3) ** 2

    def rule(centers, halves):
        """For regions (k, d): integral, error and the axis to split, each of shape (k,)."""
        k = centers.shape[0]
        x = centers.T[:, :, None] + halves.T[:, :, None] * pts[:, None, :]     # (d, k, m)
        vals = f(x.reshape(d, k * m)).reshape(k, m)
        vol = np.prod(2 * halves, axis=1)
        i7 = vol * (vals @ w7)
        i5 = vol * (vals @ w5)
        f0 = vals[:, 0]
        diffs = []
        for i in range(d):
            a = vals[:, 1 + 2 * i] + vals[:, 2 + 2 * i] - 2 * f0
            b = vals[:, 1 + 2 * d + 2 * i] + vals[:, 2 + 2 * d + 2 * i] - 2 * f0
            diffs.append(np.abs(a - ratio * b))
        axis = np.argmax(np.array(diffs), axis=0) if d > 1 else np.zeros(k, dtype=int)
        return i7, np.abs(i7 - i5), axis

    grid = [np.linspace(lo[i], hi[i], initial + 1) for i in range(d)]
    cells = list(itertools.product(*[range(initial)] * d))
    centers = np.array([[(grid[i][c[i]] + grid[i][c[i] + 1]) / 2 for i in range(d)]
                        for c in cells])
    halves = np.array([[(grid[i][c[i] + 1] - grid[i][c[i]]) / 2 for i in range(d)]
                       for c in cells])
    vals, errs, axes = rule(centers, halves)
    heap = [(-e, n, v, c, h, a) for n, (v, e, c, h, a)
            in enumerate(zip(vals, errs, centers, halves, axes))]
    heapq.heapify(heap)
    total, error = float(vals.sum()), float(errs.sum())
    counter = len(heap)
    used = len(heap) * m
    while error > rel_tol * abs(total) and used < max_evaluations:
        check_deadline()
        # split the worst regions, a batch at a time (numpy evaluates a batch at once)
        batch = [heapq.heappop(heap) for _ in range(min(len(heap), 64))]
        new_c, new_h = [], []
        for _e, _n, v, c, h, a in batch:
            total -= v
            h2 = h.copy()
            h2[a] /= 2
            for sgn in (-1, 1):
                c2 = c.copy()
                c2[a] += sgn * h2[a]
                new_c.append(c2)
                new_h.append(h2)
        error -= sum(-b[0] for b in batch)
        vals, errs, axes = rule(np.array(new_c), np.array(new_h))
        used += len(new_c) * m
        for v, e, c, h, a in zip(vals, errs, new_c, new_h, axes):
            counter += 1
            heapq.heappush(heap, (-e, counter, v, c, h, a))
        total += float(vals.sum())
        error += float(errs.sum())
    # the sums of what remains, afresh (the running sums drift by rounding)
    total = math.fsum(b[2] for b in heap)
    error = math.fsum(-b[0] for b in heap)
    return total, error, used


# --- the evidence ---------------------------------------------------------------------

def cubature(log_joint: sp.Expr, globals_: list, supports: dict, starts: list,
             rel_tol: float = RELATIVE_TOLERANCE, conditions=()) -> dict:
    """log of the integral of exp(``log_joint``) over the global latents ``globals_``.

    ``log_joint`` holds numbers and those latents only; ``supports`` gives each latent's
    support; ``starts`` are points (one value per latent) near the mass (q's means).
    Returns {"log_evidence", "error" (on the log), "evaluations", "modes"}; raises
    CubatureFailed with the reason when no value can be given.
    """
    np = numpy_module()
    d = len(globals_)
    if d == 0 or d > MAX_DIMENSIONS:
        raise CubatureFailed(f"{d} latents remain after the exact steps; cubature is done "
                             f"over 1 to {MAX_DIMENSIONS}")
    logf = compile_log(log_joint, globals_)
    sup = [supports[z] for z in globals_]
    for s in sup:
        _to_latent(s, np.zeros(1))   # refuses a discrete latent before any work
    target = _Target(logf, sup, [(compile_log(c, globals_), what) for c, what in conditions])
    # starts: q's means, the origin of each coordinate, and a spread around them
    seeds = []
    for st in starts:
        try:
            seeds.append([_to_free(s, float(v)) for s, v in zip(sup, st)])
        except (ValueError, ZeroDivisionError, OverflowError):
            continue
    seeds.append([0.0] * d)
    spread = [np.array(s) + k * np.eye(d)[i] for s in list(seeds)
              for i in range(d) for k in (-3.0, 3.0)]
    seeds += [list(s) for s in spread]
    modes = []
    for s in seeds:
        found = _newton(target, s, d)
        if found is None:
            continue
        x, fx, H = found
        w = np.linalg.eigvalsh(H)
        if not (w < 0).all():
            continue
        if all(np.linalg.norm(x - m[0]) > 1e-5 * (1 + np.linalg.norm(x)) for m in modes):
            modes.append((x, fx, H))
    if not modes:
        raise CubatureFailed("no mode of p(X, latents) was found (the integrand may not have "
                             "a maximum: an improper posterior)")
    peak = max(m[1] for m in modes)
    # coordinates u in which the highest mode is a standard normal to second order:
    # t = x* + L u with L L^T = (-H)^-1; every other mode's box is taken there too
    top = max(modes, key=lambda m: m[1])
    L = np.linalg.cholesky(np.linalg.inv(-top[2]))
    Linv = np.linalg.inv(L)
    target = target.whitened(top[0], L)
    lo = np.full(d, np.inf)
    hi = np.full(d, -np.inf)
    for x, fx, H in modes:
        centre = Linv @ (x - top[0])
        sd = np.sqrt(np.diag(Linv @ np.linalg.inv(-H) @ Linv.T))
        lo = np.minimum(lo, centre - BOX_SCALES * sd)
        hi = np.maximum(hi, centre + BOX_SCALES * sd)

    def integrand(t):
        return np.exp(target(t) - peak)

    # grow the box until the integrand on its faces has fallen TAIL_DROP below the peak
    for _ in range(12):
        check_deadline()
        face = _face_max(target, lo, hi) - peak
        if face < -TAIL_DROP:
            break
        width = hi - lo
        lo, hi = lo - width / 2, hi + width / 2
    else:
        raise CubatureFailed(f"the integrand does not fall off: on the faces of the box "
                             f"{_box(lo, hi)} it is only e**{face:.3g} below its peak")
    initial = {1: 16, 2: 8, 3: 4}[d]
    # in three dimensions the error estimate (the degree 5 rule's) falls slowly: stop once
    # it is a tenth of what may be reported
    goal = rel_tol if d < 3 else max(rel_tol, REPORT_TOLERANCE / 10)
    value, error, used = genz_malik(integrand, lo, hi, goal, MAX_EVALUATIONS, initial)
    if not value > 0 or not math.isfinite(value):
        raise CubatureFailed(f"the cubature came out {value}")
    # the box's outside: below e**-TAIL_DROP of the peak on the faces; counted as an error
    # of at most the box's volume times that (a log-concave tail falls further)
    tail = math.exp(-TAIL_DROP) * float(np.prod(hi - lo))
    rel = (error + tail) / value
    if rel > REPORT_TOLERANCE:
        raise CubatureFailed(f"the cubature did not converge: error estimate {error / value:.2g} "
                             f"of the integral after {used:,} evaluations")
    return {"log_evidence": peak + math.log(value), "error": rel, "evaluations": used,
            "modes": len(modes), "box": (lo, hi)}


def _face_max(target, lo, hi, points: int = 21) -> float:
    """The largest log integrand on a grid over the faces of the box."""
    np = numpy_module()
    d = len(lo)
    axes = [np.linspace(lo[i], hi[i], points if d < 3 else 11) for i in range(d)]
    best = -np.inf
    for i in range(d):
        for end in (lo[i], hi[i]):
            grids = [axes[j] if j != i else np.array([end]) for j in range(d)]
            mesh = np.array(np.meshgrid(*grids, indexing="ij")).reshape(d, -1)
            best = max(best, float(np.max(target(mesh))))
    return best


def _box(lo, hi) -> str:
    return " x ".join(f"[{a:.3g}, {b:.3g}]" for a, b in zip(lo, hi))
