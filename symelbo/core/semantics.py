"""Concrete finite instances: the semantics that tests and refutes steps.

Every variable gets a small finite support whose points carry a weight (the
reference measure, so a "density" may exceed one and an entropy may be
negative, as for continuous variables). Each density name denotes ONE joint
distribution over all the variables it is ever applied to, given as a table
of positive numbers with ``sum(weight * value) = 1``; ``p(A | B)`` and
``p(A)`` are that joint's conditionals and marginals. A variable that no
operator binds is held at one point (the observed data). A density with a
subscript, ``q_phi``, is the smooth positive family
``exp(a_z + b_z phi) / normaliser``, so a gradient is a real derivative.

A file's hypotheses (:mod:`symelbo.core.hypotheses`) hold on every instance:
an assumed density's joint IS the product of its factors (a factor of its own
name is a conditional of its base table; a factor of another name is that
density), and a density named by ``define: qstar(Z1) propto_{Z1} body`` is
``body / sum_{Z1}[body]``, computed, never tabulated.

A step false on such an instance is false in general: a counterexample is
always honest. Agreement on instances is evidence, never a proof.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from fractions import Fraction
from itertools import product

import mpmath
import sympy as sp

from symelbo.core.deadline import check_deadline
from symelbo.core.hypotheses import NO_HYPOTHESES, Hypotheses
from symelbo.core.notation import ELBO, KL, Defined, Density, Entropy, Expectation, Gradient, Marginal

__all__ = ["Universe", "Instance", "Undefined", "TooLarge", "instances", "build_instance", "evaluate_on",
           "exactly_equal", "exactly_apart", "log_combination_is_zero", "tabulation_problem", "DIGITS", "MAX_TABLE_CELLS",
           "ATTACK_SUPPORTS", "ATTACK_PARAMETERS", "ATTACK_WEIGHTS", "custom_instance", "table_cells"]

#: Working precision (decimal digits) of every evaluation.
DIGITS = 50

#: The one limit on what an instance may tabulate: the cells of all its density
#: tables together, on two-point supports (about twelve binary variables). Every
#: instance is built by :func:`instances`, which enforces it, so no path (testing,
#: refuting, a counterexample, a sanity check of a proof) can build more: a joint
#: density over thirty variables would need 2^30 cells, gigabytes of memory.
MAX_TABLE_CELLS = 4096


class Undefined(ArithmeticError):
    """The expression has no real value on this instance (log of a non-positive number...)."""


#: The largest binary exponent a value may reach (|log2 |v|| <= 2^40). mpmath holds
#: larger ones, but the exp of such a number asks for memory without end
#: (exp(exp(exp(p(X))))): past it a value is not computable.
MAX_BINARY_EXPONENT = 2 ** 40


class TooLarge(Exception):
    """No instance is built: its tables would exceed :data:`MAX_TABLE_CELLS`."""


def tabulation_problem(universe: "Universe") -> str:
    """Why ``universe`` cannot be tabulated within :data:`MAX_TABLE_CELLS` ("" when it can).

    Counted on two-point supports, the smallest any instance uses; a random
    instance whose three-point supports would exceed the limit falls back to
    two points (see :func:`build_instance`).
    """
    cells = sum(2 ** len(info.variables) for info in universe.densities.values())
    if cells <= MAX_TABLE_CELLS:
        return ""
    largest = max(universe.densities.values(), key=lambda info: len(info.variables))
    return (f"no concrete instances: the instance would be too large to tabulate "
            f"({cells} table cells, the limit is {MAX_TABLE_CELLS}; "
            f"{largest.name} is a density over {len(largest.variables)} variables)")


class NotComputable(Undefined):
    """The value exists, but this evaluator cannot get it reliably (an inaccurate
    numerical derivative, an exact form it has no rule for)."""


@dataclass(frozen=True)
class DensityInfo:
    name: str
    params: tuple[str, ...]
    variables: tuple[str, ...]   # every variable the density is applied to, sorted


@dataclass(frozen=True)
class Universe:
    """The densities, variables and parameters that a set of expressions speaks of."""

    densities: dict            # key -> DensityInfo
    variables: tuple[str, ...]
    parameters: tuple[str, ...]
    # instances built so far, by seed: every step of a file is tested on the same ones
    built: dict = field(default_factory=dict, compare=False, repr=False)
    # the file's assumptions and definitions, which every instance satisfies
    hypotheses: Hypotheses = field(default=NO_HYPOTHESES, compare=False, repr=False)

    @staticmethod
    def of(expressions, hypotheses: Hypotheses = NO_HYPOTHESES) -> "Universe":
        dens: dict[str, tuple] = {}
        variables: set[str] = set()
        symbols: set[str] = set()
        expressions = list(expressions)
        for fact in hypotheses.factorisations:
            expressions.extend((fact.left, *fact.factors))
        expressions.extend(d.body for d in hypotheses.definitions)
        for expr in expressions:
            for node in _walk(expr):
                if isinstance(node, Density):
                    names = {v.name for v in node.variables + node.given}
                    info = dens.setdefault(node.key, (node.name, tuple(p.name for p in node.params), set()))
                    info[2].update(names)
                    variables.update(names)
                    symbols.update(p.name for p in node.params)
                elif isinstance(node, Marginal):
                    variables.add(node.variable.name)
                elif isinstance(node, Gradient):
                    symbols.add(node.parameter.name)
                elif isinstance(node, sp.Symbol):
                    symbols.add(node.name)
        # a density a definition names is computed from its body, never tabulated
        densities = {key: DensityInfo(name, params, tuple(sorted(vs)))
                     for key, (name, params, vs) in sorted(dens.items())
                     if hypotheses.definition(key) is None}
        parameters = tuple(sorted(symbols - variables))
        return Universe(densities, tuple(sorted(variables)), parameters, hypotheses=hypotheses)


def _walk(expr):
    """Every node of expr, without descending into a density (its name is not a symbol)."""
    stack = [expr]  # iterative: derivations may nest a thousand levels deep
    while stack:
        node = stack.pop()
        yield node
        if not isinstance(node, Density):
            stack.extend(reversed(node.args))


@dataclass
class Instance:
    """One concrete finite model: supports, weights, tables, held values, parameters."""

    kind: str
    seed: int
    support: dict          # variable -> tuple of Fraction points
    weight: dict           # variable -> Fraction weight of each point
    held: dict             # variable -> index of the point it is held at
    tables: dict           # density key -> {assignment tuple of indices: Fraction}
    families: dict         # parametric density key -> ({assignment: a}, {assignment: {param: b}})
    params: dict           # parameter -> Fraction
    universe: Universe = field(repr=False, default=None)
    # marginals and normalisers already computed, per kind of evaluator: they are
    # the same for every expression evaluated on this instance
    memo: dict = field(default_factory=dict, compare=False, repr=False)

    # -- description (for counterexamples) --------------------------------------
    def describe(self, free=None) -> dict:
        """A JSON-ready description that reproduces this instance exactly.

        ``free``: the variables held at a point (the others are summed over).
        """
        fmt = _exact_text
        held = {v: i for v, i in self.held.items() if free is None or v in free}
        out = {"kind": self.kind, "seed": self.seed,
               "support": {v: [fmt(x) for x in pts] for v, pts in self.support.items()},
               "held": {v: fmt(self.support[v][i]) for v, i in held.items()},
               "densities": {}}
        if any(w != 1 for w in self.weight.values()):
            out["weights"] = {v: fmt(w) for v, w in self.weight.items()}
        if self.params:
            out["parameters"] = {k: fmt(v) for k, v in self.params.items()}
        for key, info in self.universe.densities.items():
            rows = []
            for assignment in product(*(range(len(self.support[v])) for v in info.variables)):
                point = {v: fmt(self.support[v][i]) for v, i in zip(info.variables, assignment)}
                if self.universe.hypotheses.factorisation(key) is not None:
                    value = _derived_text(self, key, assignment)
                elif key in self.tables:
                    value = fmt(self.tables[key][assignment])
                else:
                    a, b = self.families[key]
                    value = _format_family(a[assignment], b[assignment])
                rows.append({"at": point, "value": value})
            out["densities"][key] = rows
        return out


def _exact_text(x: Fraction) -> str:
    """``x`` as written exactly (``3/4``) up to about 300 digits; past that (a table
    entry near 10^-1000 built by a search) a power of ten as ``10^k``, any other
    number to 30 significant digits: Python refuses to print integers past 4300
    digits, and a reader cannot read them."""
    if max(abs(x.numerator), x.denominator).bit_length() < 1000:
        return str(x)
    for number, sign in ((x.numerator, ""), (x.denominator, "-")):
        other = x.denominator if sign == "" else x.numerator
        if other == 1:
            k = int(math.log10(number)) if number > 0 else 0
            for guess in (k - 1, k, k + 1):
                if guess > 0 and 10 ** guess == number:
                    return f"10^{sign}{guess}"
    with mpmath.workdps(30):
        return mpmath.nstr(mpmath.mpf(x.numerator) / x.denominator, 30)


def _derived_text(instance: "Instance", key: str, cell: tuple) -> str:
    """An assumed density's value at a cell (the product of its factors), exactly when
    the factors are tables, else to 30 digits."""
    try:
        value = _ExactEvaluator(instance).joint(key, cell, {})
        if value.is_Rational:
            return _exact_text(Fraction(int(value.p), int(value.q)))
    except (NotComputable, Undefined, ZeroDivisionError):
        pass
    with mpmath.workdps(30):
        params = {k: mpmath.mpf(v.numerator) / v.denominator for k, v in instance.params.items()}
        return mpmath.nstr(_Evaluator(instance).joint(key, cell, params), 30)


def _format_family(a, b) -> str:
    terms = [str(a)] + [f"{coef}*{name}" for name, coef in sorted(b.items()) if coef]
    return "exp(" + " + ".join(terms) + ") / normaliser"


# ---------------------------------------------------------------------------
# building instances
# ---------------------------------------------------------------------------

#: The instances, simplest first: (kind, reference weight, table style, q at the posterior).
#: Uniform tables make every KL vanish; q at the posterior makes log p(X) = ELBO;
#: "narrow" weights make densities large (log p > 0, H < 0), "wide" ones small;
#: "spread": every table from 1e-8 to 1e8, with the data held at its rarest point;
#: "one peaked": the last density (q, by convention) far from the others;
#: "peaked" tables spread values over sixteen orders of magnitude (a large KL, a
#: tiny density), and a "tiny" reference measure makes densities huge;
#: "extreme" tables span sixty orders of magnitude, and a vast or minute
#: reference measure (10^30, 10^-30) moves entropies and log densities by about 69.
_PLAN = (
    ("uniform", 1, "uniform", False),
    ("posterior", 1, "random", True),
    ("random", 1, "random", False),
    ("random", 1, "random", False),
    ("random", 1, "random", False),
    ("narrow", Fraction(1, 4), "random", False),
    ("wide", 4, "random", False),
    ("narrow posterior", Fraction(1, 4), "random", True),
    ("peaked", 1, "peaked", False),
    ("peaked narrow", Fraction(1, 4), "peaked", False),
    ("peaked wide posterior", 4, "peaked", True),
    ("wide posterior", 4, "random", True),
    ("peaked tiny", Fraction(1, 1000), "peaked", False),
    ("spread, rare data", 1, "spread", "rare"),
    ("narrow, one density peaked", Fraction(1, 4), "one peaked", False),
    ("narrow, q away from the posterior", Fraction(1, 4), "random", "away"),
    ("wide, one density peaked", 4, "one peaked", False),
    # last, so that plainer instances show a counterexample when they have one:
    # bounds with a constant in them (KL <= 5, log p(X) >= -20, H <= 10) fail only
    # this far out
    ("extreme tables, q away from the posterior", 1, "extreme", "away"),
    ("extreme tables, rare data", 1, "extreme", "rare"),
    ("vast reference measure", 10 ** 30, "random", False),
    ("minute reference measure", Fraction(1, 10 ** 30), "random", False),
)


#: Random instances after the plan: random supports (negative values, three points)
#: and weights come only from these.
RANDOM_INSTANCES = 7
#: The plan, then the random ones.
DEFAULT_INSTANCES = len(_PLAN) + RANDOM_INSTANCES


def instances(universe: Universe, count: int = DEFAULT_INSTANCES):
    """Deterministic instances: the plan above, then random ones with mixed sizes and weights.

    Raises :class:`TooLarge` (before building anything) when the universe's tables
    would exceed :data:`MAX_TABLE_CELLS`.
    """
    problem = tabulation_problem(universe)
    if problem:
        raise TooLarge(problem)
    for seed in range(count):
        if seed not in universe.built:
            rng = random.Random(seed * 7919 + 17)
            if seed < len(_PLAN):
                kind, weight, tables, posterior = _PLAN[seed]
                universe.built[seed] = build_instance(universe, kind, seed, rng, Fraction(weight), tables, posterior)
            else:
                universe.built[seed] = build_instance(universe, "random", seed, rng, None, "random", seed % 3 == 0)
        yield universe.built[seed]


def build_instance(universe: Universe, kind: str, seed: int, rng: random.Random, fixed_weight,
           style: str, posterior) -> Instance:
    """``posterior``: False, True (q at p's posterior), "away" (q far from it) or "rare"
    (variables held at their least likely points)."""
    support, weight = {}, {}
    for v in universe.variables:
        if fixed_weight is not None:
            support[v] = (Fraction(1), Fraction(2))
            weight[v] = fixed_weight
        else:
            size = rng.choice((2, 3))
            support[v] = tuple(Fraction(x) for x in sorted(rng.sample([-3, -2, -1, 1, 2, 3, 4], size)))
            weight[v] = rng.choice((Fraction(1, 2), Fraction(1), Fraction(2), Fraction(3)))
    if _cells(universe, support) > MAX_TABLE_CELLS:
        # three-point supports would break the limit that two-point ones keep
        # (tabulation_problem): keep each support's first two points
        support = {v: points[:2] for v, points in support.items()}
    held = {v: rng.randrange(len(support[v])) for v in universe.variables}
    uniform = style == "uniform"
    params = {p: (Fraction(0) if uniform else Fraction(rng.randint(-6, 6), 4))
              for p in universe.parameters}
    tables, families = {}, {}
    last_key = max(universe.densities, default=None)
    for key, info in universe.densities.items():
        cells = list(product(*(range(len(support[v])) for v in info.variables)))
        cell_weight = {c: _cell_weight(info.variables, c, weight) for c in cells}
        peaked = style == "peaked" or (style == "one peaked" and key == last_key)
        spread = 30 if style == "extreme" else 8 if peaked else 2
        if info.params:
            a = {c: (Fraction(0) if uniform else Fraction(rng.randint(-4 * spread, 4 * spread), 4))
                 for c in cells}
            b = {c: {p: (Fraction(0) if uniform else Fraction(rng.randint(-8, 8), 4))
                     for p in info.params} for c in cells}
            families[key] = (a, b)
        else:
            if uniform:
                raw = {c: Fraction(1) for c in cells}
            elif style == "spread":  # powers of ten spread evenly from 1e-8 to 1e8, in random cells
                exponents = [round(-8 + 16 * i / max(1, len(cells) - 1)) for i in range(len(cells))]
                rng.shuffle(exponents)
                raw = {c: Fraction(10) ** e for c, e in zip(cells, exponents)}
            elif peaked or style == "extreme":
                raw = {c: Fraction(10) ** rng.randint(-spread, spread) for c in cells}
            else:
                raw = {c: Fraction(rng.randint(1, 9)) for c in cells}
            total = sum(raw[c] * cell_weight[c] for c in cells)
            tables[key] = {c: raw[c] / total for c in cells}
    instance = Instance(kind, seed, support, weight, held, tables, families, params, universe)
    if posterior == "rare":
        _hold_rare_values(instance)
    elif posterior:
        _set_posterior(instance, away=posterior == "away")
    return instance


def _cells(universe: Universe, support: dict) -> int:
    """How many table cells the densities of ``universe`` take on ``support``."""
    total = 0
    for info in universe.densities.values():
        size = 1
        for v in info.variables:
            size *= len(support[v])
        total += size
    return total


def _hold_rare_values(instance: Instance) -> None:
    """Hold each variable at its least likely point under the first table over it (tiny p(X))."""
    for v in instance.universe.variables:
        for key, info in instance.universe.densities.items():
            if v in info.variables and key in instance.tables:
                position = info.variables.index(v)
                mass = [sum(val for cell, val in instance.tables[key].items() if cell[position] == i)
                        for i in range(len(instance.support[v]))]
                instance.held[v] = mass.index(min(mass))
                break


def _cell_weight(variables, cell, weight) -> Fraction:
    w = Fraction(1)
    for v, _ in zip(variables, cell):
        w *= weight[v]
    return w


def _set_posterior(instance: Instance, away: bool = False) -> None:
    """Make one density equal to another's conditional at the held values (q = p(Z | X)).

    With ``away``, it is instead proportional to that conditional to the power
    -4: its mass sits where the posterior's is least (a large KL, a low ELBO).
    """
    dens = instance.universe.densities
    assumed = instance.universe.hypotheses.factorisation
    for qkey, qinfo in dens.items():
        if assumed(qkey) is not None:
            continue   # its joint is the product of its factors
        for pkey, pinfo in dens.items():
            if pkey == qkey or pkey not in instance.tables:
                continue
            if not set(qinfo.variables) < set(pinfo.variables):
                continue
            rest = [v for v in pinfo.variables if v not in qinfo.variables]
            table = instance.tables[pkey]
            values = {}
            for cell in product(*(range(len(instance.support[v])) for v in qinfo.variables)):
                where = dict(zip(qinfo.variables, cell))
                where.update({v: instance.held[v] for v in rest})
                values[cell] = table[tuple(where[v] for v in pinfo.variables)]
            if away:
                values = {c: val ** -4 for c, val in values.items()}
            total = sum(val * _cell_weight(qinfo.variables, c, instance.weight) for c, val in values.items())
            # a family in a parameter becomes this fixed table, whatever the parameter
            instance.tables[qkey] = {c: val / total for c, val in values.items()}
            instance.families.pop(qkey, None)
            return


# ---------------------------------------------------------------------------
# evaluation
# ---------------------------------------------------------------------------

class _Evaluator:
    def __init__(self, instance: Instance, screening: bool = False):
        self.inst = instance
        # screening: a first look that may only lead to a second one (derivatives at one
        # precision, unconfirmed), never to a verdict of its own
        self.screening = screening
        self.cache: dict = instance.memo.setdefault(type(self).__name__, {})

    # -- arithmetic: mpmath numbers here; exact SymPy numbers in _ExactEvaluator --
    def mpf(self, x: Fraction):
        # the same table cells and weights are read again and again: convert each once
        key = ("mpf", x, mpmath.mp.dps)
        value = self.cache.get(key)
        if value is None:
            value = self.cache[key] = mpmath.mpf(x.numerator) / x.denominator
        return value

    def zero(self):
        return mpmath.mpf(0)

    def fsum(self, terms):
        return mpmath.fsum(terms)

    def exp(self, x):
        if abs(x) > MAX_BINARY_EXPONENT:
            raise NotComputable("an exp of a number too large to compute with")
        return mpmath.exp(x)

    def power(self, base, exp):
        # |log2 |base^exp|| <= |exp| (|mag(base)| + 1); mag is 0 from 1/2 to 1
        if base and abs(exp) * (abs(mpmath.mag(base)) + 1) > MAX_BINARY_EXPONENT:
            raise NotComputable("a power too large to compute with")
        return mpmath.power(base, exp)

    def constant(self, e):
        if e.is_Rational:
            return mpmath.mpf(int(e.p)) / int(e.q)
        # at the working precision: a constant held at 60 digits would differ from
        # exp(1) computed at 4000 by the same amount at every precision, which the
        # checker takes for a real gap
        if e is sp.E:
            return +mpmath.e
        if e is sp.pi:
            return +mpmath.pi
        return mpmath.mpf(str(sp.N(e, mpmath.mp.dps + 10)))

    def sign(self, x):
        return mpmath.sign(x)

    def derivative(self, f, at):
        """f'(at) by numerical differentiation, trusted only when two precisions agree.

        Rounding inside f (a normaliser summing to 1 +- 1e-60) is amplified by
        differentiation; at two and three times the working precision the
        noise differs, the derivative does not.
        """
        digits = mpmath.mp.dps
        with mpmath.workdps(2 * digits):
            rough = mpmath.diff(f, at)
        if self.screening:
            return +rough
        with mpmath.workdps(3 * digits):
            fine = mpmath.diff(f, at)
        if abs(rough - fine) > mpmath.mpf(10) ** -digits * max(1, abs(fine)):
            raise NotComputable("the numerical derivative is not accurate here")
        return +fine

    def joint(self, key: str, cell: tuple, params: dict):
        fact = self.inst.universe.hypotheses.factorisation(key)
        if fact is not None:
            return self.derived_joint(fact, key, cell, params)
        return self.base_joint(key, cell, params)

    def derived_joint(self, fact, key: str, cell: tuple, params: dict):
        """An assumed density at a cell: L(G) times its factors (own ones are
        conditionals of its base table; others are the densities they name)."""
        signature = ("dj", key, cell, mpmath.mp.dps, tuple(sorted(params.items())))
        value = self.cache.get(signature)
        if value is not None:
            return value
        info = self.inst.universe.densities[key]
        env = dict(zip(info.variables, cell))
        value = self.constant(sp.S.One)
        given = frozenset(g.name for g in fact.given)
        if given:
            value = self.marginal(key, info, given, env, params, base=True)
        for factor in fact.factors:
            if fact.own(factor):
                numer = self.marginal(key, info, frozenset(v.name for v in factor.variables + factor.given),
                                      env, params, base=True)
                if factor.given:
                    numer = numer / self.marginal(key, info, frozenset(g.name for g in factor.given),
                                                  env, params, base=True)
                value = value * numer
            else:
                value = value * self.density(factor, env, params)
        self.cache[signature] = value
        return value

    def base_joint(self, key: str, cell: tuple, params: dict):
        if key in self.inst.tables:
            return self.mpf(self.inst.tables[key][cell])
        a, b = self.inst.families[key]
        info = self.inst.universe.densities[key]
        signature = (key, mpmath.mp.dps, tuple(params[p] for p in info.params))
        norm = self.cache.get(signature)
        if norm is None:
            norm = self.fsum(self._family_raw(a, b, c, params) * self.mpf(
                _cell_weight(info.variables, c, self.inst.weight)) for c in a)
            self.cache[signature] = norm
        return self._family_raw(a, b, cell, params) / norm

    def _family_raw(self, a, b, cell, params):
        exponent = self.mpf(a[cell]) + self.fsum(self.mpf(coef) * params[p] for p, coef in b[cell].items())
        return self.exp(exponent)

    def density(self, d: Density, env: dict, params: dict):
        """p(A | B) at the points in env: a ratio of marginals of p's joint table."""
        definition = self.inst.universe.hypotheses.definition(d.key)
        if definition is not None:
            return self.value(definition.unfold(d), env, params)
        plan = self.cache.get(("plan", d))
        if plan is None:  # what to marginalize, worked out once per density
            plan = self.cache[("plan", d)] = (
                d.key, self.inst.universe.densities[d.key],
                frozenset(v.name for v in d.variables + d.given),
                frozenset(v.name for v in d.given) if d.given else None)
        key, info, numer_keep, denom_keep = plan
        numer = self.marginal(key, info, numer_keep, env, params)
        if denom_keep is None:
            return numer
        return numer / self.marginal(key, info, denom_keep, env, params)

    def marginal(self, key, info, keep: set, env: dict, params: dict, base: bool = False):
        """The marginal over ``keep`` of a density's joint (``base``: of its table, not
        of the product an assumption makes it)."""
        free = [v for v in info.variables if v not in keep]
        fixed = {v: env[v] for v in info.variables if v in keep}
        signature = ("mb" if base else "m", key, mpmath.mp.dps, tuple(sorted(fixed.items())),
                     tuple(sorted(params.items())))
        if signature in self.cache:
            return self.cache[signature]
        joint = self.base_joint if base else self.joint
        total = self.zero()
        for cell in product(*(range(len(self.inst.support[v])) for v in free)):
            where = dict(fixed)
            where.update(zip(free, cell))
            w = _cell_weight(free, cell, self.inst.weight)
            total += self.mpf(w) * joint(key, tuple(where[v] for v in info.variables), params)
        self.cache[signature] = total
        return total

    def assignments(self, variables):
        """(point, weight) over the grid of ``variables``: listed once per instance."""
        names = tuple(v.name for v in variables)
        key = ("grid", names, mpmath.mp.dps)
        grid = self.cache.get(key)
        if grid is None:
            grid = self.cache[key] = [
                (dict(zip(names, cell)), self.mpf(_cell_weight(names, cell, self.inst.weight)))
                for cell in product(*(range(len(self.inst.support[n])) for n in names))]
        return grid

    def over(self, dens: Density, env, params, integrand):
        total = self.zero()
        for point, w in self.assignments(dens.variables):
            check_deadline()
            inner = {**env, **point}
            total += w * integrand(inner)
        return total

    def log(self, x):
        if x <= 0:
            raise Undefined("log of a non-positive number")
        return mpmath.log(x)

    def value(self, e, env: dict, params: dict):
        if e.is_Number or e is sp.E or e is sp.pi:
            return self.constant(e)
        if isinstance(e, sp.Symbol):
            if e.name in params:
                return params[e.name]
            if e.name in env:
                return self.mpf(self.inst.support[e.name][env[e.name]])
            raise NotComputable(f"no value for {e.name}")
        v = lambda x, env=env: self.value(x, env, params)
        if e.is_Add:
            return self.fsum(v(a) for a in e.args)
        if e.is_Mul:
            result = self.constant(sp.S.One)
            for a in e.args:
                result *= v(a)
            return result
        if e.is_Pow:
            base, exp = v(e.base), v(e.exp)
            if base == 0 and exp <= 0:
                raise Undefined("division by zero")
            if base < 0 and not (e.exp.is_integer):
                raise Undefined("a negative number to a fractional power")
            return self.power(base, exp)
        if isinstance(e, sp.log):
            return self.log(v(e.args[0]))
        if isinstance(e, sp.exp):
            return self.exp(v(e.args[0]))
        if isinstance(e, sp.Abs):
            return abs(v(e.args[0]))
        if isinstance(e, sp.sign):
            return self.sign(v(e.args[0]))
        if isinstance(e, (sp.Min, sp.Max)):
            values = [v(a) for a in e.args]
            return min(values) if isinstance(e, sp.Min) else max(values)
        if isinstance(e, Density):
            return self.density(e, env, params)
        if isinstance(e, Defined):
            return v(e.body)
        if isinstance(e, Expectation):
            a = e.density
            return self.over(a, env, params, lambda inner: self.density(a, inner, params) * v(e.body, inner))
        if isinstance(e, Marginal):
            total = self.zero()
            name = e.variable.name
            for i, _ in enumerate(self.inst.support[name]):
                check_deadline()
                total += self.mpf(self.inst.weight[name]) * v(e.body, {**env, name: i})
            return total
        if isinstance(e, KL):
            a, b = e.first, e.second
            return self.over(a, env, params, lambda inner: self._plogratio(a, a, b, inner, params))
        if isinstance(e, Entropy):
            a = e.density
            return -self.over(a, env, params,
                              lambda inner: self.density(a, inner, params) * self.log(self.density(a, inner, params)))
        if isinstance(e, ELBO):
            q, p = e.variational, e.joint
            return self.over(q, env, params, lambda inner: self._plogratio(q, p, q, inner, params))
        if isinstance(e, Gradient):
            name = e.parameter.name
            at = params[name]
            return self.derivative(lambda t: self.value(e.body, env, {**params, name: t}), at)
        raise NotComputable(f"cannot evaluate {type(e).__name__}")

    def _plogratio(self, weight_density, num, den, env, params):
        w = self.density(weight_density, env, params)
        return w * self.log(self.density(num, env, params) / self.density(den, env, params))


class _ExactEvaluator(_Evaluator):
    """The same semantics in exact arithmetic: rationals, and logs of rationals.

    Used to confirm that two sides are exactly equal on an instance (so a
    strict inequality is refuted only by a true equality). Families in a
    parameter and gradients are not evaluated exactly (Undefined).
    """

    def mpf(self, x: Fraction):
        return sp.Rational(x.numerator, x.denominator)

    def zero(self):
        return sp.S.Zero

    def fsum(self, terms):
        return sp.Add(*terms)

    def exp(self, x):
        return sp.exp(x)

    def power(self, base, exp):
        # an exact rational to the millionth power has millions of digits
        if exp.is_Rational and abs(exp) * _bits(base) > MAX_EXACT_BITS:
            raise NotComputable("an exact power too large to compute")
        return sp.Pow(base, exp)

    def constant(self, e):
        return e

    def sign(self, x):
        return sp.sign(x)

    def log(self, x):
        if x.is_positive is not True:
            raise NotComputable("log of a number not known to be positive")
        return sp.log(x)

    def base_joint(self, key, cell, params):
        if key not in self.inst.tables:
            raise NotComputable("a parametric family has no exact value")
        return super().base_joint(key, cell, params)

    def derivative(self, f, at):
        raise NotComputable("no exact derivative")


_FACTOR_LIMIT = 10 ** 40
#: The largest exact power :class:`_ExactEvaluator` builds, in binary digits.
MAX_EXACT_BITS = 10 ** 5


def _bits(x: sp.Expr) -> int:
    """The binary digits of a rational's numerator and denominator (others: 64)."""
    if x.is_Rational:
        return abs(x.p).bit_length() + x.q.bit_length()
    return 64


def exactly_equal(lhs: sp.Expr, rhs: sp.Expr, instance: Instance):
    """True or False when ``lhs = rhs`` on the instance is decided exactly, else None.

    On the instance's rational tables every log is the log of a positive
    rational; ``expand_log(force=True, factor=True)`` writes it as an integer
    combination of logs of primes, which are linearly independent over the
    rationals, so the difference is zero exactly when it expands to 0.
    """
    env = dict(instance.held)
    params = {k: sp.Rational(v.numerator, v.denominator) for k, v in instance.params.items()}
    evaluator = _ExactEvaluator(instance)
    try:
        difference = evaluator.value(lhs, env, params) - evaluator.value(rhs, env, params)
        decided = log_combination_is_zero(difference)
        if decided is not None:
            return decided
        if any(max(abs(r.p), r.q) > _FACTOR_LIMIT for r in difference.atoms(sp.Rational)):
            return None  # factoring such numbers could take longer than any budget
        reduced = sp.expand(sp.expand_log(difference, force=True, factor=True))
    except (Undefined, ZeroDivisionError):
        return None
    if reduced == 0:
        return True
    if all(isinstance(a, (sp.Rational, sp.log)) for t in sp.Add.make_args(reduced)
           for a in sp.Mul.make_args(t)):
        return False  # a nonzero rational combination of logs of primes
    if not reduced.is_Add and all(isinstance(a, (sp.Rational, sp.log, sp.exp)) for a in sp.Mul.make_args(reduced)):
        return False  # one product of nonzero factors (exp never vanishes; log(1) was reduced away)
    return None


def exactly_apart(lhs: sp.Expr, rhs: sp.Expr, instance: Instance) -> bool:
    """True when the sides provably differ on the instance: their exact difference is a
    nonzero rational plus rational multiples of logs of rationals (Baker's theorem,
    see :func:`log_combination_is_zero`); False when that is not shown."""
    env = dict(instance.held)
    params = {k: sp.Rational(v.numerator, v.denominator) for k, v in instance.params.items()}
    evaluator = _ExactEvaluator(instance)
    try:
        difference = evaluator.value(lhs, env, params) - evaluator.value(rhs, env, params)
    except (Undefined, ZeroDivisionError):
        return False
    return log_combination_is_zero(difference) is False


def log_combination_is_zero(expr: sp.Expr):
    """True or False when ``expr`` is a rational plus a rational combination of logs of
    positive rationals (``q + sum c_i log r_i``) that is zero or not; None for any other form.

    No factoring, hence no cap on the size of the numbers: the numerators and
    denominators are split by gcds into pairwise coprime integers b_j (a coprime
    base), so that ``expr = q + sum_j e_j log b_j``. Logs of pairwise coprime
    integers > 1 are linearly independent over the rationals (a prime divides one
    b_j only), and by Baker's theorem 1 and those logs are independent over the
    algebraic numbers: the sum is zero exactly when q and every e_j are.
    """
    rational, logs = sp.S.Zero, {}
    for term in sp.Add.make_args(sp.expand(expr, log=False)):
        coefficient, rest = term.as_coeff_Mul()
        if rest == 1:
            rational += coefficient
        elif isinstance(rest, sp.log) and rest.args[0].is_Rational and rest.args[0] > 0:
            logs[rest.args[0]] = logs.get(rest.args[0], sp.S.Zero) + coefficient
        else:
            return None
    integers = [n for r in logs for n in (int(r.p), int(r.q)) if n > 1]
    base = _coprime_base(integers)
    exponents = {b: sp.S.Zero for b in base}
    for r, coefficient in logs.items():
        for n, sign in ((int(r.p), 1), (int(r.q), -1)):
            for b in base:
                times, n = _valuation(n, b)
                exponents[b] += sign * coefficient * times
            if n != 1:
                return None   # not a product of the base: cannot happen, but never guess
    return rational == 0 and all(e == 0 for e in exponents.values())


def _valuation(n: int, b: int) -> tuple[int, int]:
    """(k, n / b^k) for the largest k with b^k dividing n: by squarings of b, so a
    power of 2 with 10^5 digits takes 17 divisions, not 10^5."""
    times, powers = 0, [b]
    while n % powers[-1] == 0:
        check_deadline()
        n //= powers[-1]
        times += 1 << (len(powers) - 1)
        powers.append(powers[-1] * powers[-1])
    for i in range(len(powers) - 1, -1, -1):
        if n % powers[i] == 0:
            n //= powers[i]
            times += 1 << i
    return times, n


def _coprime_base(numbers) -> list[int]:
    """Pairwise coprime integers > 1 of which every one of ``numbers`` is a product
    (factor refinement by gcds: polynomial in the digits, unlike factoring)."""
    base: list[int] = []
    pending = list(numbers)
    while pending:
        check_deadline()
        m = pending.pop()
        if m == 1:
            continue
        for i, b in enumerate(base):
            g = math.gcd(m, b)
            if g > 1:
                base.pop(i)
                # b = g (b/g) and m = g (m/g): the three generate both
                pending.extend(x for x in (g, b // g, m // g) if x > 1)
                break
        else:
            base.append(m)
    return sorted(base)


def evaluate_on(expr: sp.Expr, instance: Instance, digits: int = DIGITS, screening: bool = False):
    """The value of ``expr`` on ``instance`` (an mpmath number at ``digits`` digits).

    ``screening``: derivatives are taken once, not confirmed at a second
    precision; good enough to see that two sides agree, never to refute.
    """
    env = dict(instance.held)
    with mpmath.workdps(digits):
        params = {k: mpmath.mpf(v.numerator) / v.denominator for k, v in instance.params.items()}
        value = _Evaluator(instance, screening).value(expr, env, params)
        if isinstance(value, mpmath.mpc):
            raise Undefined("a complex value")
        return value


# ---------------------------------------------------------------------------
# instances for an attack (symelbo.core.falsify): any supports, weights, tables
# ---------------------------------------------------------------------------

F = Fraction

#: Supports an attack gives a variable, simplest first, with their plain names:
#: one to six points; 0, fractions, negative, large and small magnitudes.
ATTACK_SUPPORTS = (
    ("one point at 0", (F(0),)),
    ("one point at 1", (F(1),)),
    ("two points 0 and 1", (F(0), F(1))),
    ("three points -1, 0, 1", (F(-1), F(0), F(1))),
    ("fractions 1/3, 1/2, 2/3", (F(1, 3), F(1, 2), F(2, 3))),
    ("four points 0 to 3", (F(0), F(1), F(2), F(3))),
    ("five points -2 to 2", (F(-2), F(-1), F(0), F(1), F(2))),
    ("six points 1 to 6", tuple(F(i) for i in range(1, 7))),
    ("six points -5/2 to 5/2", tuple(F(2 * i - 5, 2) for i in range(6))),
    ("negative points -10, -5, -1", (F(-10), F(-5), F(-1))),
    ("large magnitudes -1000, 10^6", (F(-1000), F(10 ** 6))),
    ("large negative magnitudes -10^6, -1000", (F(-10 ** 6), F(-1000))),
    ("small magnitudes 10^-6, 1/1000", (F(1, 10 ** 6), F(1, 1000))),
    ("points 7/3 and 11/5", (F(7, 3), F(11, 5))),
)

#: Values an attack gives each parameter, simplest first: a wide range (the fixed
#: plan stays within [-3/2, 3/2]); a local search then starts from the worst.
ATTACK_PARAMETERS = tuple(F(x) for x in (0, 1, -1, 2, -2, F(1, 2), -F(1, 2), 3, -3, 5, -5,
                                          10, -10, 30, -30, 100, -100, 1000, -1000))

#: Reference weights an attack uses besides those a step's constants call for.
ATTACK_WEIGHTS = (F(1), F(1, 4), F(4), F(1, 1000), F(1000))


def custom_instance(universe: Universe, kind: str, seed: int, *, support: dict, weight: dict,
                    held: dict, params: dict, raw: dict, families: dict | None = None,
                    posterior=False) -> Instance:
    """An instance from explicit supports, weights, held points, parameters and raw
    (unnormalised, positive) tables; ``posterior`` as in :func:`build_instance`.

    The same semantics as every other instance: each table is normalised to
    ``sum(weight * value) = 1``. Raises :class:`TooLarge` past :data:`MAX_TABLE_CELLS`.
    """
    if _cells(universe, support) > MAX_TABLE_CELLS:
        raise TooLarge(f"more than {MAX_TABLE_CELLS} table cells")
    tables = {}
    for key, info in universe.densities.items():
        if key in (families or {}):
            continue
        cells = list(product(*(range(len(support[v])) for v in info.variables)))
        total = sum(raw[key][c] * _cell_weight(info.variables, c, weight) for c in cells)
        tables[key] = {c: raw[key][c] / total for c in cells}
    instance = Instance(kind, seed, dict(support), dict(weight), dict(held), tables,
                        dict(families or {}), dict(params), universe)
    if posterior == "rare":
        _hold_rare_values(instance)
    elif posterior:
        _set_posterior(instance, away=posterior == "away")
    return instance


def table_cells(universe: Universe, support: dict) -> int:
    """How many table cells the densities of ``universe`` take on ``support``."""
    return _cells(universe, support)
