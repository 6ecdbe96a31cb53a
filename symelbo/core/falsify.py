"""The falsifier: a seeded, budgeted hunt for a counterexample before a step may be ``tested``.

The fixed plan of :mod:`symelbo.core.semantics` tries 28 instances; a false
step can survive them (a polynomial that vanishes on the few support points
used, a moment of a distribution on four or more points, a bound with a large
constant, a parameter outside [-3/2, 3/2]). :func:`attack` then tries, in this
order, simplest first:

1. ``points``: when lhs - rhs is, by algebra, a rational function of the free
   variables and parameters, exact rational points where it breaks the relation;
2. ``supports``: every variable on one to six points (0, fractions, negative,
   large and small magnitudes), held at each of them;
3. ``magnitudes``: reference weights and table spreads as far out as the
   step's largest constant needs (``KL <= 1000`` needs a table entry near e^-1000);
4. ``parameters``: a wide range of parameter values, then a local (pattern)
   search from the worst one;
5. ``tables``: a local search on the table entries of the instance closest to
   breaking the relation.

Each candidate is an ordinary instance of the documented semantics, built by
:func:`symelbo.core.semantics.custom_instance`; a candidate that breaks the
relation at 50 digits is handed to the checker's ``judge``, which confirms it
(250 digits, exactly where possible) or rejects it. The first confirmed
counterexample whose sides differ by more than 1e-3 relative ends the search;
a smaller gap is kept only when no clearer one turns up. Everything is seeded
by fixed strings, and the effort is counted in table cells (:data:`SEARCH_UNITS`),
not timed: same step, same search, same bytes. The time limit only cuts a
search short, and a search cut short never lets a step pass.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field, replace
from fractions import Fraction
from itertools import product

import mpmath
import sympy as sp

from symelbo.core.deadline import BudgetExceeded, check_deadline, time_budget
from symelbo.core.normalize import NormalizationLoop, normal_form
from symelbo.core.notation import Density
from symelbo.core.printing import calc_str
from symelbo.core.relations import relation as relation_of
from symelbo.core.semantics import (ATTACK_PARAMETERS, ATTACK_SUPPORTS, ATTACK_WEIGHTS, DIGITS, MAX_TABLE_CELLS,
                                    Instance, TooLarge, Undefined, Universe, custom_instance, evaluate_on, table_cells)

__all__ = ["Attack", "attack", "CLEAR_GAP", "STAGES", "MAX_MAGNITUDE_DIGITS", "SEARCH_UNITS", "density_values"]

#: A counterexample whose sides differ by more than this (relative) ends the search.
CLEAR_GAP = 1e-3
#: The stages, in the order they run.
STAGES = ("points", "supports", "magnitudes", "parameters", "tables")
#: The farthest a table entry or a reference weight is pushed, in decimal digits
#: (10^-20000): a bound ``KL <= c`` needs about c / 2.3 digits.
MAX_MAGNITUDE_DIGITS = 20000
#: Moves of each local search.
LOCAL_MOVES = 40
#: Candidates examined after a small-gap counterexample, looking for a clearer one.
CLEARER_TRIES = 40
#: The effort of one search, counted (not timed, so that the same step gets the same
#: search on any machine): the table cells of every instance built, plus 4 per
#: instance. About 150 instances of q(Z), p(X, Z) take 4000; a density over seven
#: variables stops the search after a few dozen instances. Each stage may use an
#: equal share of what the stages before it left.
SEARCH_UNITS = 8000
#: Candidates handed to the checker's judge at most (each costs 250-digit evaluations).
MAX_JUDGED = 24
#: Exact points tried by the ``points`` stage.
MAX_POINTS = 400
#: Values the ``points`` stage gives a symbol, simplest first.
POINT_VALUES = tuple(Fraction(x) for x in (0, 1, -1, 2, -2, Fraction(1, 2), -Fraction(1, 2), 3, -3,
                                           Fraction(1, 3), 5, -5, Fraction(7, 3), 10, -10,
                                           Fraction(11, 5), 100, -100, Fraction(1, 100), 1000,
                                           Fraction(-113, 7), 10 ** 6))

_ONE, _TWO = Fraction(1), Fraction(2)


@dataclass
class Attack:
    """What a search tried and what it found: ``instances`` built, ``evaluations``
    of a side, ``local_moves`` of the local searches, the ``stages`` that ran, and
    whether the whole plan ran (``complete``) within the time limit."""

    instances: int = 0
    evaluations: int = 0
    local_moves: int = 0
    stages: list = field(default_factory=list)
    complete: bool = False
    #: (instance, left, right) of the counterexample the checker confirmed, or None
    found: tuple | None = None

    def as_dict(self) -> dict:
        return {"instances": self.instances, "evaluations": self.evaluations,
                "local_moves": self.local_moves, "stages": list(self.stages),
                "complete": self.complete}

    def describe(self) -> str:
        return (f"{self.instances} instances from a search ({', '.join(self.stages) or 'no stage'}; "
                f"{self.evaluations} evaluations, {self.local_moves} local moves)")


@dataclass
class _Spec:
    """An instance before it is built: enough to vary one part of it."""

    kind: str
    support: dict
    weight: dict
    held: dict
    params: dict
    raw: dict
    families: dict
    posterior: object = False


class _Found(Exception):
    """A clear counterexample: the search stops."""


class _Exhausted(Exception):
    """A stage's share of the effort (:data:`SEARCH_UNITS`) is spent: the next stage runs."""


class _Search:
    def __init__(self, relation: str, lhs, rhs, universe: Universe, judge, result: Attack):
        self.relation, self.lhs, self.rhs, self.universe = relation_of(relation), lhs, rhs, universe
        self.judge, self.result = judge, result
        self.best = None          # (score, spec): the candidate closest to breaking the relation
        self.fallback = None      # a confirmed counterexample with a small gap
        self.after_fallback = 0
        self.strict_looks = 3     # equal sides of a strict claim: the checker settles a few
        self.judged = 0           # candidates handed to the checker's judge
        self.cut_seen = set()     # supports cut to fit the table limit, already tried
        self.units = 0            # effort spent: table cells built, plus 4 per instance
        self.stage_limit = SEARCH_UNITS
        self.last = (0.0, 0.0)    # the sizes of the last candidate's sides

    # -- one candidate -------------------------------------------------------------
    def score(self, spec: _Spec):
        """How far the candidate breaks the relation, relative (> 0: broken), or None."""
        check_deadline()
        try:
            instance = custom_instance(self.universe, spec.kind, 1000 + self.result.instances,
                                       support=spec.support, weight=spec.weight, held=spec.held,
                                       params=spec.params, raw=spec.raw, families=spec.families,
                                       posterior=spec.posterior)
        except TooLarge:
            return None, None
        cells = table_cells(self.universe, spec.support)
        if self.units + cells + 4 > self.stage_limit and self.result.instances:
            raise _Exhausted()   # this stage's share is spent: on to the next one
        self.units += cells + 4
        self.result.instances += 1
        try:
            self.result.evaluations += 2
            left = evaluate_on(self.lhs, instance, screening=True)
            right = evaluate_on(self.rhs, instance, screening=True)
            if not (mpmath.isfinite(left) and mpmath.isfinite(right)):
                return None, instance
        except (Undefined, ZeroDivisionError, ValueError, OverflowError, TypeError):
            return None, instance
        self.last = (float(abs(left)) if abs(left) < 1e300 else 1e300,
                     float(abs(right)) if abs(right) < 1e300 else 1e300)
        scale = max(mpmath.mpf(1), abs(left), abs(right))
        gap = (left - right) / scale
        direction = self.relation.direction
        value = abs(gap) if direction == 0 else (-gap if direction > 0 else gap)
        return float(value), instance   # at most 2 in size: relative to the larger side

    def consider(self, spec: _Spec) -> float | None:
        value, instance = self.score(spec)
        if value is None:
            return None
        # the local search on tables starts from the closest candidate with tables to
        # vary (a one-point instance where both sides agree is closest, and useless)
        rich = sum(len(t) for t in spec.raw.values()) >= 4 or not self.universe.densities
        if rich and (self.best is None or value > self.best[0]):
            self.best = (value, spec)
        # broken relative to the larger side (p(X) = 10^-52 against 10^-50), not to 1
        size = max(abs(self.last[0]), abs(self.last[1]))
        relative = value * max(1.0, size) / size if size else value
        broken = relative > 1e-20 or (self.relation.strict and value > -1e-35 and self.strict_looks > 0)
        if broken and self.judged < MAX_JUDGED:
            self.judged += 1
            if relative <= 1e-20:
                self.strict_looks -= 1
            confirmed = self.judge(instance)
            if confirmed is not None:
                left, right = confirmed
                size = max(abs(left), abs(right))
                relative = abs(left - right) / size if size else 0
                if relative > CLEAR_GAP or (self.relation.strict and left == right):
                    self.result.found = (instance, left, right)
                    raise _Found()
                if self.fallback is None:
                    self.fallback = (instance, left, right)
        if self.fallback is not None:
            self.after_fallback += 1
            if self.after_fallback > CLEARER_TRIES:
                self.result.found = self.fallback
                raise _Found()
        return value

    # -- building blocks ---------------------------------------------------------------
    def raw_tables(self, support: dict, rng: random.Random, spread: int = 0,
                   alternating: bool = False) -> tuple[dict, dict]:
        """Random positive tables (integers 1..9, or powers of ten within +-spread; with
        ``alternating``, 10^spread and 1 in alternate cells, shifted by one cell from one
        density to the next) and random families for the parametric densities."""
        raw, families = {}, {}
        for number, (key, info) in enumerate(self.universe.densities.items()):
            cells = list(product(*(range(len(support[v])) for v in info.variables)))
            if info.params:
                a = {c: Fraction(rng.randint(-8, 8), 4) for c in cells}
                b = {c: {p: Fraction(rng.randint(-8, 8), 4) for p in info.params} for c in cells}
                families[key] = (a, b)
            elif alternating:
                raw[key] = {c: (Fraction(10) ** spread if (sum(c) + number) % 2 else _ONE) for c in cells}
            elif spread:
                raw[key] = {c: Fraction(10) ** rng.randint(-spread, spread) for c in cells}
            else:
                raw[key] = {c: Fraction(rng.randint(1, 9)) for c in cells}
        return raw, families

    def spec(self, kind: str, support: dict, weight: dict, held: dict, rng, params=None,
             spread: int = 0, posterior=False, alternating: bool = False) -> _Spec | None:
        fitted = self.fit(support)
        if fitted is None:
            return None
        if fitted != support:
            # cut to fit the table limit: many supports become the same one, tried once
            key = (tuple(sorted(fitted.items())), tuple(sorted(held.items())),
                   tuple(sorted(weight.items())), spread, str(posterior), alternating)
            if key in self.cut_seen:
                return None
            self.cut_seen.add(key)
        support = fitted
        # every variable has a held point (the observed value wherever no operator binds it)
        held = {v: min(held.get(v, 0), len(support[v]) - 1) for v in self.universe.variables}
        raw, families = self.raw_tables(support, rng, spread, alternating)
        if params is None:
            params = {p: Fraction(1, 2) for p in self.universe.parameters}
        return _Spec(kind, support, weight, held, params, raw, families, posterior)

    def fit(self, support: dict) -> dict | None:
        """``support``, or with the bound variables cut to two points when the tables
        would exceed the one table limit; None when even that does not fit."""
        if table_cells(self.universe, support) <= MAX_TABLE_CELLS:
            return support
        cut = {v: (pts[:2] if len(pts) > 2 else pts) for v, pts in support.items()}
        return cut if table_cells(self.universe, cut) <= MAX_TABLE_CELLS else None


def attack(relation: str, lhs: sp.Expr, rhs: sp.Expr, universe: Universe, judge, *,
           seconds: float, constant_bits: float = 0.0, free=()) -> Attack:
    """Search for an instance on which ``lhs relation rhs`` fails.

    ``judge(instance)`` is the checker's confirmation: ``(left, right)`` when the
    failure stands at higher precision, else None. ``constant_bits``: log2 of the
    step's largest constant (drives the ``magnitudes`` stage); ``free``: the
    variables held at a point. Stops at ``seconds`` (then ``complete`` is False).
    """
    result = Attack()
    search = _Search(relation, lhs, rhs, universe, judge, result)
    held_vars = [v for v in universe.variables if v in free]
    try:
        with time_budget(seconds):
            for number, stage in enumerate(STAGES):
                result.stages.append(stage)
                # an equal share of what is left: what a stage does not use, the next may
                search.stage_limit = search.units + (SEARCH_UNITS - search.units) / (len(STAGES) - number)
                try:
                    _STAGE_RUNNERS[stage](search, held_vars, constant_bits)
                except _Exhausted:
                    pass
            result.complete = True
    except _Found:
        result.complete = True
    except BudgetExceeded:
        check_deadline()   # the step's own budget: past it, the step is unknown
    if result.found is None and search.fallback is not None:
        result.found = search.fallback
    return result


# ---------------------------------------------------------------------------
# the stages
# ---------------------------------------------------------------------------

def _base_support(universe: Universe) -> dict:
    return {v: (_ONE, _TWO) for v in universe.variables}


def _unit_weights(universe: Universe) -> dict:
    return {v: _ONE for v in universe.variables}


def _points(search: _Search, held_vars, bits) -> None:
    """Exact points for a difference that algebra makes a rational function of symbols."""
    try:
        difference = normal_form(search.lhs - search.rhs, frozenset()).expr
    except NormalizationLoop:
        return
    symbols = sorted(difference.free_symbols, key=lambda s: s.name)
    if not symbols or not _plain_algebra(difference):
        return
    names = [s.name for s in symbols]
    if any(n not in search.universe.variables and n not in search.universe.parameters for n in names):
        return
    tried = 0
    for values in product(POINT_VALUES, repeat=len(symbols)):
        tried += 1
        if tried > MAX_POINTS:
            return
        check_deadline()
        try:
            exact = difference.xreplace({s: sp.Rational(v.numerator, v.denominator)
                                         for s, v in zip(symbols, values)})
        except (ZeroDivisionError, ValueError):
            continue
        if not exact.is_Rational:
            continue
        order = "exactly equal" if exact == 0 else ("greater" if exact > 0 else "less")
        if search.relation.holds(order) != "fails":
            continue
        point = dict(zip(names, values))
        support = _base_support(search.universe)
        held = {v: 0 for v in held_vars}
        for name, value in point.items():
            if name in search.universe.variables:
                support[name] = (value,)
                held[name] = 0
        params = {p: point.get(p, Fraction(1, 2)) for p in search.universe.parameters}
        words = ", ".join(f"{n} = {v}" for n, v in point.items())
        spec = search.spec(f"searched point {words}", support, _unit_weights(search.universe),
                           held, random.Random("points"), params)
        if spec is not None:
            search.consider(spec)


def _plain_algebra(expr) -> bool:
    """True when ``expr`` is built from numbers and symbols by + * and integer powers."""
    stack = [expr]
    while stack:
        node = stack.pop()
        if node.is_Number or isinstance(node, sp.Symbol):
            continue
        if node.is_Add or node.is_Mul or (node.is_Pow and node.exp.is_Integer):
            stack.extend(node.args)
            continue
        return False
    return True


def _supports(search: _Search, held_vars, bits) -> None:
    """Every variable on the same support, held at each of its points in turn."""
    universe = search.universe
    if not universe.variables:
        return
    # several free variables: all at the same point, then each one point further on
    # (exp(X * Y) < 1 needs X and Y apart)
    shifts = (0, 1) if len(held_vars) > 1 else (0,)
    for name, points in ATTACK_SUPPORTS:
        draws = 2 if len(points) >= 4 else 1
        for shift in shifts:
            if shift and len(points) == 1:
                continue
            for index in range(len(points) if held_vars else 1):
                held = {v: (index + shift * k) % len(points) for k, v in enumerate(held_vars)}
                for draw in range(draws):
                    rng = random.Random(f"supports:{name}:{index}:{draw}" + (f":{shift}" if shift else ""))
                    where = (", " + ", ".join(f"{v} held at {points[i]}" for v, i in held.items())
                             if held_vars else "")
                    if not shift and held_vars:
                        where = f", {', '.join(held_vars)} held at {points[index]}"
                    spec = search.spec(f"searched support, every variable on {name}{where}",
                                       {v: points for v in universe.variables},
                                       _unit_weights(universe), held, rng)
                    if spec is not None:
                        search.consider(spec)


def _magnitudes(search: _Search, held_vars, bits) -> None:
    """Weights and table spreads as far out as the step's largest constant needs."""
    universe = search.universe
    if not universe.variables:
        return
    size = 2.0 ** min(bits, 1000)   # the constant itself, about
    wanted = {3, 8, 30}
    if size > 1:
        wanted.add(math.ceil(math.log10(size)) + 2)           # p(X) <= c: a density above c
        wanted.add(math.ceil(size / math.log(10)) + 3)        # KL <= c: a ratio beyond e^c
    scales = sorted(e for e in wanted if e <= MAX_MAGNITUDE_DIGITS)

    def weighted(weight, words, points, seed):
        """Every variable on ``points`` with reference weight ``weight``, data held at 0."""
        spec = search.spec(f"searched reference weight {words} on {len(points)} point(s)",
                           {v: points for v in universe.variables},
                           {v: weight for v in universe.variables}, {v: 0 for v in held_vars},
                           random.Random(seed))
        if spec is not None:
            search.consider(spec)

    for weight in ATTACK_WEIGHTS[1:]:
        for points in ((_ONE,), (_ONE, _TWO), tuple(Fraction(i) for i in range(4))):
            weighted(weight, weight, points, f"weights:{weight}:{len(points)}")
    for e in scales:
        big, small = Fraction(10) ** e, Fraction(1, 10 ** e)
        for weight, words in ((big, f"10^{e}"), (small, f"10^-{e}")):
            for points in ((_ONE,), (_ONE, _TWO)):
                weighted(weight, words, points, f"magnitude weight:{e}:{len(points)}")
        for posterior, words in (("away", "q away from the posterior"), ("rare", "rare data"), (False, "")):
            rng = random.Random(f"magnitude alternating:{e}:{posterior}")
            spec = search.spec(f"searched tables alternating 1 and 10^{e}"
                               + (f", {words}" if words else ""),
                               _base_support(universe), _unit_weights(universe),
                               {v: 0 for v in held_vars}, rng, spread=e, posterior=posterior,
                               alternating=True)
            if spec is not None:
                search.consider(spec)
            for draw in range(2):
                rng = random.Random(f"magnitude tables:{e}:{posterior}:{draw}")
                spec = search.spec(f"searched tables spanning 10^-{e} to 10^{e}"
                                   + (f", {words}" if words else ""),
                                   _base_support(universe), _unit_weights(universe),
                                   {v: 0 for v in held_vars}, rng, spread=e, posterior=posterior)
                if spec is not None:
                    search.consider(spec)


def _parameters(search: _Search, held_vars, bits) -> None:
    """A wide range of parameter values, then a pattern search from the worst one."""
    universe = search.universe
    names = universe.parameters
    if not names:
        return
    start_best = None
    for value in ATTACK_PARAMETERS:
        settings = [{p: value for p in names}]
        if len(names) > 1:
            settings += [{**{p: Fraction(1, 2) for p in names}, q: value} for q in names]
        for params in settings:
            rng = random.Random("parameters")
            words = ", ".join(f"{p} = {v}" for p, v in params.items())
            spec = search.spec(f"searched parameters {words}", _base_support(universe),
                               _unit_weights(universe), {v: 0 for v in held_vars}, rng, params)
            if spec is None:
                return
            score = search.consider(spec)
            if score is not None and (start_best is None or score > start_best[0]):
                start_best = (score, spec)
    if start_best is None:
        return
    score, spec = start_best
    step = Fraction(4)
    while search.result.local_moves < LOCAL_MOVES and step >= Fraction(1, 64):
        improved = False
        for p in names:
            for sign in (1, -1):
                if search.result.local_moves >= LOCAL_MOVES:
                    return
                params = {**spec.params, p: spec.params[p] + sign * step}
                words = ", ".join(f"{q} = {v}" for q, v in params.items())
                moved = replace(spec, kind=f"searched parameters {words} (local search)", params=params)
                search.result.local_moves += 1
                value = search.consider(moved)
                if value is not None and value > score:
                    score, spec, improved = value, moved, True
        if not improved:
            step /= 2


def _tables(search: _Search, held_vars, bits) -> None:
    """A pattern search on the table entries (powers of two) of the closest candidate."""
    if search.best is None:
        return
    score, spec = search.best
    cells = [(key, cell) for key in sorted(spec.raw) for cell in sorted(spec.raw[key])]
    if not cells or len(cells) > 64:
        return
    budget = LOCAL_MOVES
    for factor in (Fraction(16), Fraction(2)):
        for key, cell in cells:
            for move in (factor, 1 / factor):
                if budget <= 0:
                    return
                budget -= 1
                raw = {k: dict(t) for k, t in spec.raw.items()}
                raw[key][cell] *= move
                moved = replace(spec, raw=raw, kind=spec.kind.split(" (local")[0]
                                + " (local search on the tables)")
                search.result.local_moves += 1
                value = search.consider(moved)
                if value is not None and value > score:
                    score, spec = value, moved


_STAGE_RUNNERS = {"points": _points, "supports": _supports, "magnitudes": _magnitudes,
                  "parameters": _parameters, "tables": _tables}


# ---------------------------------------------------------------------------
# what a counterexample uses
# ---------------------------------------------------------------------------

#: Rows shown per density in :func:`density_values`.
MAX_ROWS = 32


def density_values(instance: Instance, expressions, free) -> dict:
    """The marginals and conditionals that ``expressions`` use, on ``instance``:
    for each density as written (``p(Z | X)``), its value at every point of the
    variables it is applied to (``free`` ones at their held point), 12 digits."""
    seen = {}
    for expr in expressions:
        for node in sp.preorder_traversal(expr):
            if isinstance(node, Density):
                seen.setdefault(calc_str(node), node)
    out = {}
    for text, node in sorted(seen.items()):
        names = [v.name for v in node.variables + node.given]
        names = list(dict.fromkeys(names))
        if node.params:
            continue   # a family's values depend on the parameters: the table says it
        loose = [n for n in names if n not in free]
        rows = []
        for cell in product(*(range(len(instance.support[n])) for n in loose)):
            if len(rows) >= MAX_ROWS:
                break
            where = replace(instance, held={**instance.held, **dict(zip(loose, cell))})
            try:
                value = evaluate_on(node, where, DIGITS)
            except (Undefined, ZeroDivisionError, ValueError):
                continue
            at = {n: str(instance.support[n][where.held[n]]) for n in names}
            with mpmath.workdps(20):
                rows.append({"at": at, "value": mpmath.nstr(value, 12)})
        out[text] = rows
    return out
