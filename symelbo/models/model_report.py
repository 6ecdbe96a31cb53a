"""`symelbo model FILE.toml`: a model's ELBO, log evidence and KL, with the identities that tie them checked.

Checks and their verdicts:

* ``log evidence = ELBO + KL``: proved when ``log p(X) - ELBO - KL`` expands
  (logs split only where SymPy knows the arguments are positive), then
  cancels, to 0 with the data as symbolic sufficient statistics; else tested
  at the values with 50-digit arithmetic;
* ``ELBO <= log evidence``: proved from the identity above and Gibbs'
  inequality (KL >= 0); tested at the values when the identity was only tested;
* ``grad ELBO = -grad KL`` for each variational parameter phi, seeded by
  d log p(X) / d phi = 0 (log p(X) does not contain phi);
* ``two KL routes agree``: log p(X) - ELBO against the table's
  KL(q || posterior), and against mpmath quadrature of the KL integral where
  the latent is one-dimensional.

The KL here always comes from the table and the exact posterior, never from
log p(X) - ELBO, so the identities are not true by construction.
"""

from __future__ import annotations

import math
import sys
import time

import mpmath
import sympy as sp

from symelbo.core.deadline import BudgetExceeded, time_budget
from symelbo.core.kernel import prove_identity
from symelbo.core.verdicts import PASSING, VERDICT
from symelbo.models.model import DIGITS, Model, NoClosedForm, QuadratureFailed, \
    quadrature_too_rough, with_numbers

# the verdict names, from the one table of them
PROVED, TESTED, REFUTED, UNKNOWN = (VERDICT[name].name for name in ("proved", "tested", "refuted", "unknown"))
#: Magnitude of log p(X) and the ELBO past which the 30-digit quadrature may not refute.
QUAD_TRUSTED = 10 ** 12
#: The largest double: a value beyond it cannot be reported (the JSON value is a double).
MAX_DOUBLE = mpmath.mpf(sys.float_info.max)
_LABELS = {"elbo": "ELBO", "log_evidence": "log p(X)", "kl": "KL(q || posterior)"}


def _computed(value) -> bool:
    """Whether a value at [values] is a number a check may rely on (not None, inf or nan)."""
    return value is not None and bool(mpmath.isfinite(value))


def _reportable(value) -> bool:
    """Whether a value can be reported as a double."""
    return _computed(value) and abs(value) <= MAX_DOUBLE


#: Seconds of processor time one symbolic zero test may take (past it: no proof, and the
#: check falls back to a numeric test at the values).
ZERO_TEST_BUDGET = 3.0
#: The message of a check that could not be made at all (no closed form to check): such a
#: check is unknown, but alone it does not make the report fail (see exit_status).
NOT_MADE = "not made: "


#: Seconds of processor time all the zero tests of one report may take together (a model
#: with a hundred variational parameters has a hundred gradient checks).
ZERO_TESTS_TOTAL = 9.0


def _is_zero(expr: sp.Expr, budget: float | None = None) -> bool:
    """Symbolic zero test by the kernel: expand (logs split under known positivity), then
    cancel rational parts; False when it does not finish within ``budget`` seconds
    (ZERO_TEST_BUDGET unless given)."""
    try:
        with time_budget(ZERO_TEST_BUDGET if budget is None else budget):
            return prove_identity(expr, sp.S.Zero) is not None
    except BudgetExceeded:
        return False


def _fmt(x) -> str:
    return mpmath.nstr(x, 12) if x is not None else "?"


def _tolerance(*terms) -> mpmath.mpf:
    scale = max([mpmath.mpf(1)] + [abs(t) for t in terms if t is not None])
    return scale * mpmath.mpf(10) ** (-(DIGITS - 10))


class ModelReport:
    """Everything ``symelbo model`` reports about one model, computed once."""

    def __init__(self, model: Model):
        self.model = model
        self.reasons: dict[str, str] = {}
        self.exprs: dict[str, sp.Expr | None] = {}
        self.values: dict[str, mpmath.mpf | None] = {}
        self.quad: dict | None = None
        self._zero_left = ZERO_TESTS_TOTAL
        self._zeros: dict = {}
        self._quad_reason: str | None = None
        self._quad_failed = False
        self._constraints: tuple[dict, dict] | None = None  # _simplex_constraints, once
        for key, method in (("elbo", model.elbo), ("log_evidence", model.log_evidence),
                            ("kl", model.kl_to_posterior)):
            try:
                self.exprs[key] = method(data_symbols=True)
            except NoClosedForm as exc:
                self.exprs[key] = None
                self.reasons[key] = exc.reason
            self.values[key] = (model.value(self.exprs[key])
                                if self.exprs[key] is not None else None)
        if any(e is None for e in self.exprs.values()) or self._one_dimensional():
            try:
                self.quad = model.quadrature()
            except NoClosedForm as exc:
                self._quad_reason = exc.reason
                self._quad_failed = isinstance(exc, QuadratureFailed)
        if self.quad is not None and any(e is None for e in self.exprs.values()):
            rough = quadrature_too_rough(self.quad)
            if rough:  # its values would stand for missing closed forms: not when rough
                self.quad, self._quad_reason, self._quad_failed = None, rough, True
        if self.quad is not None:
            for key in ("elbo", "log_evidence", "kl"):
                if self.exprs[key] is None:
                    self.values[key] = self.quad[key]
                    self.reasons[key] += _quad_source(self.quad, key)
        elif self._quad_failed:
            # the numeric route ran and gave nothing: say so with each missing value
            for key in ("elbo", "log_evidence", "kl"):
                if self.exprs[key] is None:
                    self.reasons[key] += f"; {self._quad_reason}"
        #: Quantities that are infinite (or undefined) at [values], with the reason.
        self.divergent: dict[str, str] = self._divergent()
        for key, reason in self.divergent.items():
            self.reasons[key] = reason if key not in self.reasons else \
                f"{reason}; {self.reasons[key]}"

    def _divergent(self) -> dict[str, str]:
        """The quantities whose value at [values] is infinite: a closed form's term whose
        expectation is finite only under conditions that fail there, or a quadrature's tail
        analysis. Their values become +-infinity (nan when undefined)."""
        out = {}
        for key in ("elbo", "kl"):
            if self.exprs[key] is None:
                continue
            signs = set()
            reasons = []
            for d in self.model.divergences(key):
                failed = []
                for cond, what in d.conditions:
                    v = self.model.value(cond)
                    if v is not None and not v > 0:
                        failed.append(f"{what} = {_fmt(v)} is not positive")
                if not failed:
                    continue
                factor = self.model.value(d.factor)
                signs.add(0 if factor is None or not _computed(factor) else
                          (1 if factor > 0 else -1 if factor < 0 else 0))
                reasons.append(f"{d.what} is infinite at [values] ({', '.join(failed)})")
            if reasons:
                sign = signs.pop() if len(signs) == 1 else 0
                self.values[key] = sign * mpmath.inf if sign else mpmath.nan
                out[key] = ("; ".join(reasons) + ": the " + _LABELS[key] + " is "
                            + ({1: "+infinity", -1: "-infinity"}.get(sign, "not defined")))
        if "elbo" in out and "kl" not in out and self.exprs["kl"] is None \
                and _computed(self.values["log_evidence"]):
            self.values["kl"] = -self.values["elbo"]
            out["kl"] = f"log p(X) - ELBO with {out['elbo']}"
        if self.quad is not None:
            for key, reason in self.quad["divergent"].items():
                if key not in out:
                    self.values[key] = self.quad[key]
                    out[key] = reason + " (tail analysis of the quadrature's integrand)"
        return out
    def _is_zero(self, expr: sp.Expr) -> bool:
        """_is_zero, remembered, within what is left of the report's ZERO_TESTS_TOTAL
        (once it is spent, no symbolic proof is tried: the checks are tested numerically)."""
        if expr not in self._zeros:
            budget = min(ZERO_TEST_BUDGET, self._zero_left)
            if budget <= 0.05:
                return False
            start = time.process_time()
            self._zeros[expr] = _is_zero(expr, budget)
            self._zero_left -= time.process_time() - start
        return self._zeros[expr]

    def _one_dimensional(self) -> bool:
        return len(self.model.latents) == 1 and not self.model.has_local_latents()

    # -- output pieces ------------------------------------------------------
    def display(self, expr: sp.Expr) -> sp.Expr:
        """The expression with the data statistics as numbers (floats unless exact integers)."""
        sub = {}
        for s, v in self.model.statistics.items():
            sub[s] = v if v.is_Integer else sp.Float(v, 15)
        return with_numbers(expr, sub)

    def quantity(self, key: str) -> dict:
        expr = self.exprs[key]
        value = self.values[key]
        infinite = value is not None and mpmath.isinf(value)
        out = {"expr": None, "latex": None,
               "value": float(value) if _reportable(value) or infinite else None}
        if expr is not None:
            shown = self.display(expr)
            out["expr"] = sp.sstr(shown, order="lex")
            out["latex"] = sp.latex(shown, order="lex")
        if expr is None or key in self.divergent:
            out["reason"] = self.reasons[key]
        return out

    # -- checks ---------------------------------------------------------------
    def checks(self) -> list[dict]:
        m = self.model
        support = m._support_problem()
        if support:
            out = [{"name": "q inside the posterior's support", "verdict": REFUTED,
                    "message": support}]
            for name in self._check_names():
                out.append({"name": name, "verdict": UNKNOWN,
                            "message": "not checked: the ELBO is -infinity"})
            return out
        out = [{"name": "q inside the posterior's support", "verdict": PROVED,
                "message": "every q factor lives inside the support of its prior"}]
        if self.divergent:
            # no check may pass on a value that is not finite
            why = ", ".join(f"{_LABELS[k]} = {_fmt(self.values[k])}" for k in self.divergent)
            for name in self._check_names():
                out.append({"name": name, "verdict": UNKNOWN,
                            "message": f"not checked: at [values] {why}, not finite (the "
                                       "reason is given with each value)"})
            finite = self._finite_values()
            if finite is not None:
                out.append(finite)
            return out
        identity = self._identity()
        out.append(identity)
        out.append(self._bound(identity))
        out.extend(self._gradients())
        out.append(self._routes())
        conditions = self._conditions()
        if conditions is not None:
            out.append(conditions)
        finite = self._finite_values()
        if finite is not None:
            out.append(finite)
        return out

    def _finite_values(self) -> dict | None:
        """A check that fails (unknown) when a value at [values] is not a finite double.

        Such a value (inf, nan, or -1e615 from data near 1e308) cannot be reported,
        and a report whose numbers are missing must not pass as a whole.
        """
        bad = [(k, v) for k, v in self.values.items() if v is not None and not _reportable(v)]
        if not bad:
            return None
        shown = ", ".join(f"{_LABELS[k]} = {mpmath.nstr(v, 6)}" for k, v in bad)
        return {"name": "values are finite doubles", "verdict": UNKNOWN,
                "message": f"at [values] {shown}: not a finite double, so the value is "
                           "not reported"}

    def _check_names(self):
        names = ["log evidence = ELBO + KL", "ELBO <= log evidence"]
        names += [f"grad ELBO = -grad KL ({p})" for p in self.model.variational_parameters]
        names.append("two KL routes agree")
        return names

    def _identity(self) -> dict:
        name = "log evidence = ELBO + KL"
        le, el, kl = (self.exprs[k] for k in ("log_evidence", "elbo", "kl"))
        if le is not None and el is not None and kl is not None:
            diff = le - el - kl
            on_simplex = self._simplex_constraints()[0]
            if self._is_zero(diff.xreplace(on_simplex) if on_simplex else diff):
                stats = ", ".join(sorted(str(s) for s in self.model.statistics))
                stats = f" and data statistics ({stats})" if stats else ""
                where = (" on the simplex of each finite factor of q (" + ", ".join(
                    f"{k} = {v}" for k, v in on_simplex.items()) + ")") if on_simplex else ""
                return {"name": name, "verdict": PROVED,
                        "message": "log p(X) - ELBO - KL(q || posterior) expands to 0 for all "
                                   f"parameter values{stats}{where}"}
            v = self.model.value(diff)
            if v is None:
                return {"name": name, "verdict": UNKNOWN,
                        "message": "no symbolic proof, and symbols without values"}
            if not _computed(v):
                return {"name": name, "verdict": UNKNOWN,
                        "message": f"no symbolic proof; at [values] log p(X) - ELBO - KL is "
                                   f"{mpmath.nstr(v, 6)}, not a number to compare"}
            tol = _tolerance(*(self.values[k] for k in ("log_evidence", "elbo", "kl")))
            if abs(v) <= tol:
                return {"name": name, "verdict": TESTED,
                        "message": f"no symbolic proof; holds at [values] to {DIGITS - 10} "
                                   f"digits (difference {mpmath.nstr(v, 3)})"}
            return {"name": name, "verdict": REFUTED,
                    "message": f"at [values] log p(X) - ELBO - KL = {mpmath.nstr(v, 15)}"}
        if self.quad is not None and self.quad.get("method") == "cubature":
            return {"name": name, "verdict": UNKNOWN,
                    "message": f"{NOT_MADE}the KL is log p(X) by cubature minus the ELBO, so "
                               "the identity holds by construction and tests nothing"}
        if self.quad is not None:
            le_v, el_v, kl_v = (self.values[k] for k in ("log_evidence", "elbo", "kl"))
            with mpmath.workdps(30):
                d = le_v - el_v - kl_v
                ok = abs(d) <= max(1, abs(le_v)) * mpmath.mpf(10) ** -15
            return {"name": name, "verdict": TESTED if ok else REFUTED,
                    "message": f"no closed form ({self._missing()}); mpmath quadrature at "
                               f"[values]: log p(X) - ELBO - KL = {mpmath.nstr(d, 3)}, each "
                               "value with an error estimate of "
                               f"{mpmath.nstr(self.quad['error'], 3)}"}
        return {"name": name, "verdict": UNKNOWN,
                "message": f"no closed form ({self._missing()}), and no quadrature: "
                           f"{self._quad_reason}"}

    def _missing(self) -> str:
        seen = []
        for k in ("elbo", "log_evidence", "kl"):
            if self.exprs[k] is None:
                reason = self.reasons[k].split("; value by")[0]
                if reason not in seen:
                    seen.append(reason)
        return "; ".join(seen)

    def _bound(self, identity: dict) -> dict:
        name = "ELBO <= log evidence"
        le_v, el_v = self.values["log_evidence"], self.values["elbo"]
        gap = le_v - el_v if _computed(le_v) and _computed(el_v) else None
        if gap is not None and not _computed(gap):
            gap = None
        tol = _tolerance(le_v if _computed(le_v) else None, el_v if _computed(el_v) else None)
        if gap is not None and gap < -tol:
            return {"name": name, "verdict": REFUTED,
                    "message": f"at [values] ELBO = {_fmt(el_v)} > log p(X) = {_fmt(le_v)}"}
        at = f"; at [values] the gap is {_fmt(gap)}" if gap is not None else ""
        pending = self._pending_conditions()
        if identity["verdict"] == PROVED and pending and gap is not None:
            return {"name": name, "verdict": TESTED,
                    "message": "log p(X) - ELBO = KL(q || posterior) (proved above) and KL >= 0 "
                               f"by Gibbs' inequality, where {', '.join(pending)} > 0, which is "
                               f"only checked at [values]{at}"}
        if identity["verdict"] == PROVED and not pending:
            return {"name": name, "verdict": PROVED,
                    "message": "log p(X) - ELBO = KL(q || posterior) (proved above) and "
                               f"KL >= 0 by Gibbs' inequality{at}"}
        if gap is not None and identity["verdict"] == TESTED:
            return {"name": name, "verdict": TESTED,
                    "message": f"holds at [values]{at}"}
        if gap is not None and self.quad is not None and self.quad.get("method") == "cubature":
            # the closed-form ELBO against log p(X) by cubature: two computations, one bound
            err = self.quad["error"]
            if gap < -err - tol:
                return {"name": name, "verdict": REFUTED,
                        "message": f"at [values] ELBO = {_fmt(el_v)} > log p(X) = {_fmt(le_v)} "
                                   f"by cubature (error estimate {mpmath.nstr(err, 2)})"}
            if gap > err + tol:
                return {"name": name, "verdict": TESTED,
                        "message": f"the closed-form ELBO is below log p(X) by cubature{at} "
                                   f"(error estimate {mpmath.nstr(err, 2)})"}
        return {"name": name, "verdict": UNKNOWN,
                "message": "the gap log p(X) - ELBO is not known"
                           + (f"{at}" if gap is not None else " at [values]")}

    def _pending_conditions(self) -> list[str]:
        try:
            return [what for _, what in self.model.evidence().conditions]
        except NoClosedForm:
            return []

    def _simplex_constraints(self) -> tuple[dict, dict]:
        """The finite factors of q whose probabilities are free symbols summing to 1 only at
        the values (Categorical(r0, r1, r2)): log p(X) = ELBO + KL holds on the simplex, so
        its derivatives are taken there, with the last probability 1 minus the others.
        ({last: 1 - the others}, {last: why it has no derivative of its own})."""
        if self._constraints is not None:
            return self._constraints
        free = set(self.model.variational_parameters)
        groups = self.model.free_probability_factors()
        # a parameter in two factors' probabilities (q(z) = Categorical(a, b, c) and
        # q(y) = Categorical(d, e, c)) cannot be solved for in one of them alone
        uses: dict = {}
        for z, args in groups:
            for s in set().union(*(a.free_symbols for a in args)) & free:
                uses.setdefault(s, []).append(z)
        sub, why = {}, {}
        for z, args in groups:
            last = args[-1]
            mine = set().union(*(a.free_symbols for a in args)) & free
            shared = sorted((s for s in mine if len(uses[s]) > 1), key=str)
            if not shared and last in free and all(last not in a.free_symbols
                                                   for a in args[:-1]):
                sub[last] = 1 - sp.Add(*args[:-1])
                why[last] = (f"{last} is 1 minus the other probabilities of q({z}), so "
                             "the derivatives are taken along the simplex, in the others")
                continue
            reason = (f"{shared[0]} is a probability of q({uses[shared[0]][0]}) and of "
                      f"q({uses[shared[0]][1]}), which sum to 1 only at the values" if shared
                      else f"the probabilities of q({z}) sum to 1 only at the values; write "
                           "the last as 1 minus the others")
            for s in mine:
                why.setdefault(s, reason)
        self._constraints = (sub, why)
        return sub, why

    def _gradients(self) -> list[dict]:
        out = []
        le, el, kl = (self.exprs[k] for k in ("log_evidence", "elbo", "kl"))
        on_simplex, constrained = self._simplex_constraints()
        if on_simplex and el is not None and kl is not None:
            el, kl = el.xreplace(on_simplex), kl.xreplace(on_simplex)
        for p in self.model.variational_parameters:
            name = f"grad ELBO = -grad KL ({p})"
            if p in constrained:
                out.append({"name": name, "verdict": UNKNOWN,
                            "message": f"{NOT_MADE}{constrained[p]}"})
                continue
            if le is None or el is None or kl is None:
                out.append({"name": name, "verdict": UNKNOWN,
                            "message": f"{NOT_MADE}no closed form to differentiate "
                                       f"({self._missing()})"})
                continue
            if p in le.free_symbols:
                out.append({"name": name, "verdict": REFUTED,
                            "message": f"log p(X) depends on the variational parameter {p}"})
                continue
            seed = f"d log p(X)/d {p} = 0 since log p(X) does not contain {p}"
            along = [f"{k} = {v}" for k, v in on_simplex.items() if p in v.free_symbols]
            if along:
                seed += f" (along the simplex: {', '.join(along)})"
            g = sp.diff(el, p) + sp.diff(kl, p)
            if self._is_zero(g):
                out.append({"name": name, "verdict": PROVED,
                            "message": f"{seed}; d ELBO/d {p} + d KL/d {p} expands to 0"})
                continue
            v = self.model.value(g)
            scale = self.model.value(sp.diff(el, p)) if v is not None else None
            if v is None:
                out.append({"name": name, "verdict": UNKNOWN,
                            "message": f"{seed}; no symbolic proof and symbols without values"})
            elif not (_computed(v) and _computed(scale)):
                out.append({"name": name, "verdict": UNKNOWN,
                            "message": f"{seed}; no symbolic proof, and at [values] the sum of "
                                       f"the derivatives is {mpmath.nstr(v, 6)}"})
            elif abs(v) <= _tolerance(scale):
                out.append({"name": name, "verdict": TESTED,
                            "message": f"{seed}; holds at [values] to {DIGITS - 10} digits"})
            else:
                out.append({"name": name, "verdict": REFUTED,
                            "message": f"at [values] d ELBO/d {p} + d KL/d {p} = "
                                       f"{mpmath.nstr(v, 15)}"})
        return out

    def _routes(self) -> dict:
        name = "two KL routes agree"
        le, el, kl = (self.exprs[k] for k in ("log_evidence", "elbo", "kl"))
        quad = self.quad
        parts, verdict = [], UNKNOWN
        if le is not None and el is not None and kl is not None:
            how = "the KL table" if self.model.kl_is_from_table() else \
                "-H[q] - E_q[log posterior] from the tables"
            if self._is_zero(le - el - kl):
                verdict = PROVED
                parts.append(f"log p(X) - ELBO and KL(q || posterior) from {how} are "
                             "symbolically equal")
            else:
                route1 = self.model.value(le - el)
                route2 = self.values["kl"]
                if route1 is None or route2 is None:
                    parts.append("no symbolic proof and symbols without values")
                elif not (_computed(route1) and _computed(route2)):
                    parts.append(f"no symbolic proof, and at [values] log p(X) - ELBO = "
                                 f"{_fmt(route1)} and {how} = {_fmt(route2)}: not numbers "
                                 "to compare")
                elif abs(route1 - route2) <= _tolerance(route1, route2, self.values["elbo"]):
                    verdict = TESTED
                    parts.append(f"log p(X) - ELBO = {_fmt(route1)} and {how} = {_fmt(route2)} "
                                 "at [values]")
                else:
                    return {"name": name, "verdict": REFUTED,
                            "message": f"log p(X) - ELBO = {_fmt(route1)} but {how} gives "
                                       f"{_fmt(route2)} at [values]"}
        if quad is None and self._quad_failed and self._one_dimensional():
            # the quadrature route was to be taken and gave nothing: it refutes nothing,
            # and the check cannot pass on one route
            parts.append(f"the quadrature route failed: {self._quad_reason}")
            verdict = UNKNOWN
        if quad is not None:
            closed = self.values["kl"] if kl is not None else None
            if closed is not None and not _computed(closed):
                parts.append(f"the closed-form KL is {_fmt(closed)} at [values]: not a number "
                             "the quadrature can be compared with")
                verdict = UNKNOWN
            elif closed is not None:
                with mpmath.workdps(30):
                    ok = abs(closed - quad["kl"]) <= mpmath.mpf(10) ** -12 * max(1, abs(closed))
                    # at 30 digits, log densities beyond 1e12 leave too few digits for
                    # the integrands' differences: such a quadrature cannot refute
                    trusted = (quad["error"] <= mpmath.mpf(10) ** -15 * max(1, abs(closed))
                               and max(abs(quad["elbo"]), abs(quad["log_evidence"])) < QUAD_TRUSTED)
                if ok:
                    parts.append(f"mpmath quadrature of the KL integral agrees "
                                 f"({_fmt(quad['kl'])})")
                elif trusted:
                    return {"name": name, "verdict": REFUTED,
                            "message": f"closed-form KL {_fmt(closed)} but quadrature of the KL "
                                       f"integral gives {_fmt(quad['kl'])} at [values]"}
                else:
                    parts.append(f"mpmath quadrature of the KL integral is inconclusive "
                                 f"({_fmt(quad['kl'])}, error estimate "
                                 f"{mpmath.nstr(quad['error'], 3)})")
            elif quad.get("method") == "cubature":
                return {"name": name, "verdict": UNKNOWN,
                        "message": f"{NOT_MADE}one route only: the KL is log p(X) by cubature "
                                   "minus the ELBO"}
            else:
                with mpmath.workdps(30):
                    route1 = quad["log_evidence"] - quad["elbo"]
                    ok = abs(route1 - quad["kl"]) <= mpmath.mpf(10) ** -12 * max(1, abs(route1))
                if not ok:
                    return {"name": name, "verdict": REFUTED,
                            "message": f"by quadrature log p(X) - ELBO = {_fmt(route1)} but the "
                                       f"KL integral is {_fmt(quad['kl'])}"}
                verdict = TESTED
                parts.append(f"by mpmath quadrature at [values]: log p(X) - ELBO = "
                             f"{_fmt(route1)}, KL integral = {_fmt(quad['kl'])}")
        if not parts:
            parts.append(f"no second route: {self._missing()}")
        return {"name": name, "verdict": verdict, "message": "; ".join(parts)}

    def _conditions(self) -> dict | None:
        try:
            ev = self.model.evidence()
        except NoClosedForm:
            return None
        name = "posterior is proper"
        if not ev.conditions:
            return {"name": name, "verdict": PROVED,
                    "message": "every kernel parameter is positive by the symbols' assumptions"}
        pending = []
        for expr, what in ev.conditions:
            v = self.model.value(expr)
            if v is None:
                pending.append(what)
            elif mpmath.isnan(v):
                return {"name": name, "verdict": UNKNOWN,
                        "message": f"{what} is nan at [values]: its sign is not known"}
            elif not v > 0:
                return {"name": name, "verdict": REFUTED,
                        "message": f"{what} is {_fmt(v)} at [values], not positive: "
                                   "log p(X) is infinite"}
        if pending:
            return {"name": name, "verdict": UNKNOWN,
                    "message": "needs positive " + ", ".join(pending)
                               + " (not provable symbolically; no values)"}
        return {"name": name, "verdict": TESTED,
                "message": "positive at [values]: "
                           + ", ".join(what for _, what in ev.conditions)}

    def as_dict(self) -> dict:
        return {"name": self.model.name,
                "elbo": self.quantity("elbo"),
                "log_evidence": self.quantity("log_evidence"),
                "kl": self.quantity("kl"),
                "checks": self.checks()}


def _quad_source(quad: dict, key: str) -> str:
    """How a value missing its closed form was computed, said after the reason."""
    if quad.get("method") != "cubature":
        return "; value by mpmath quadrature at [values]"
    if key == "kl":
        return "; value log p(X) - ELBO at [values], log p(X) by cubature"
    return (f"; value at [values] by {quad['how']}, error estimate "
            f"{mpmath.nstr(quad['error'], 2)}")


def report(model: Model) -> dict:
    """The JSON-shaped report {"name", "elbo", "log_evidence", "kl", "checks"} of a model."""
    with mpmath.workdps(DIGITS):  # every comparison below at full precision
        return ModelReport(model).as_dict()


def exit_status(rep: dict) -> int:
    """0 when every check is proved or tested, else 1.

    A check that could not be made at all (an unknown whose message starts with
    NOT_MADE: a gradient with no closed form, when the values came by quadrature)
    does not fail the report by itself: the values are checked, and the report says
    which checks were not made. Every value must be reported for that.
    """
    made = [c for c in rep["checks"]
            if not (c["verdict"] == UNKNOWN and c["message"].startswith(NOT_MADE))]
    values = all(rep[k]["value"] is not None and math.isfinite(rep[k]["value"])
                 for k in ("elbo", "log_evidence", "kl"))
    if len(made) < len(rep["checks"]) and not values:
        return 1
    return 0 if all(c["verdict"] in PASSING for c in made) else 1
