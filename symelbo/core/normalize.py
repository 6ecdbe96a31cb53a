"""Normal forms under a set of rules: the traversal, kept apart from the rules' mathematics.

``normal_form(expr, names)`` rewrites bottom-up with the node rewrites of the
named rules plus ``algebra`` (SymPy's arithmetic: evaluation, expansion,
cancellation) until nothing changes, and records which rules fired. Two
expressions are equal by a set of rules when their normal forms are
identical: the rules, read left to right, are terminating rewrites towards
one form (definitions unfolded, logs split, conditionals as joint over
marginal, linear operators pushed inwards).

``algebra`` also takes numeric factors out of a linear operator and fixes the
sign of its argument (``-E[a - b]`` and ``E[b - a]`` meet), and exchanges
nested finite sums (Fubini).
"""

from __future__ import annotations

from dataclasses import dataclass

import sympy as sp
from sympy.core.cache import cacheit

from symelbo.core.deadline import check_deadline
from symelbo.core.hypotheses import active
from symelbo.core.notation import ELBO, KL, NOTATION_CLASSES, Density, Entropy, Expectation, Gradient, Marginal
from symelbo.core.rules import EXPAND_OPTIONS, RULES
from symelbo.core.traversal import body_slots, replace_at, rewritable_positions

__all__ = ["evaluate", "normal_form", "one_rewrite", "one_rewrite_steps", "equal_by",
           "minimal_rules", "tidy", "Normalized", "NormalizationLoop", "CANONICAL_RULES"]

#: Every equality rule: the rules the checker may use when no ``by`` is given.
CANONICAL_RULES = frozenset(name for name, rule in RULES.items() if not rule.is_inequality)

_MAX_PASSES = 60
_MAX_DEPTH = 400
_LATE_RULES = frozenset({"definition_expectation", "differentiation"})
_NODE_EXPAND = {**EXPAND_OPTIONS, "deep": False}


@cacheit  # each stage of a check evaluates the step's sides; clear_cache() empties this
def evaluate(expr: sp.Expr) -> sp.Expr:
    """Rebuild ``expr`` with SymPy's evaluation on: parsed forms keep what was written."""
    return _evaluate(expr)


def _evaluate(expr: sp.Expr) -> sp.Expr:
    # uncached below the top: a cache frame at every level would halve the depth
    # of nesting that fits in Python's stack
    if expr.is_Atom:
        return expr
    if isinstance(expr, Density):
        return Density(expr.args[0], expr.variables, expr.given, expr.params)
    if isinstance(expr, sp.Tuple):
        return expr
    return expr.func(*[_evaluate(a) for a in expr.args])


class NormalizationLoop(Exception):
    """The rewrites did not reach a normal form (a set of rules that undo each other)."""


@dataclass(frozen=True)
class Normalized:
    """A normal form and the rules that fired to reach it."""

    expr: sp.Expr
    fired: frozenset


def _zero_body(e):
    """Op[0] -> 0 for a linear operator (an expectation, a sum or a gradient of nothing)."""
    if isinstance(e, (Expectation, Marginal, Gradient)) and e.body == 0:
        return sp.S.Zero
    return None


def _scalars_out(e):
    """Op[c * f] -> c * Op[f] for a number c, with f's leading term positive (Op linear).

    The algebra of scalar multiples: -E[a - b] and E[b - a] reach the same
    form, whichever other rules are in use.
    """
    if not isinstance(e, (Expectation, Marginal, Gradient)):
        return None
    content, primitive = e.body.as_content_primitive()
    leading = min(sp.Add.make_args(primitive), key=lambda t: sp.default_sort_key(t.as_coeff_Mul()[1]))
    sign = -1 if leading.as_coeff_Mul()[0] < 0 else 1
    factor = content * sign
    if factor == 1:
        return None
    # negated term by term: the body is expanded already, and a full expand (logs
    # included) of it would cost more than the rest of this rewrite
    body = primitive if sign == 1 else sp.Add(*[-term for term in sp.Add.make_args(primitive)])
    return factor * e.func(e.args[0], body)


#: Inside a log, numbers up to this size are split into primes (factoring them is instant).
_FACTOR_LIMIT = 10 ** 12


def _log_of_number(e):
    """log(n/d) -> the sum of k log p over the prime powers p^k of n and d: arithmetic,
    so that log 6 and log 2 + log 3 reach one form."""
    if not isinstance(e, sp.log):
        return None
    x = e.args[0]
    if not (x.is_Rational and x.is_positive) or max(x.p, x.q) > _FACTOR_LIMIT:
        return None
    powers = {**sp.factorint(x.p), **{p: -k for p, k in sp.factorint(x.q).items()}}
    if list(powers.values()) in ([], [1]):
        return None  # log 1 is 0 already, and a prime stays as it is
    return sp.Add(*[k * sp.log(p) for p, k in sorted(powers.items())])


def _sum_order(e):
    """sum_V[sum_W[f]] -> sum_W[sum_V[f]] when W sorts before V (Fubini for finite sums)."""
    if isinstance(e, Marginal) and isinstance(e.body, Marginal):
        inner = e.body
        if inner.variable.name < e.variable.name:
            return Marginal(inner.variable, Marginal(e.variable, inner.body))
    return None


def forms_of(name: str) -> tuple:
    """A rule's node rewrites, its stated forms after them; for ``assumption`` and
    ``definition``, those of the hypotheses in force (:func:`symelbo.core.hypotheses.active`)."""
    rule = RULES[name]
    return rule.rewrites + rule.stated + active().rewrites(name)


def _sum_outward(e):
    """sum_V[c * sum_W[g]] -> sum_W[sum_V[c * g]] when W sorts before V and c has no free
    W (Fubini for finite sums, with c taken inside): nested expectations over
    independent factors meet whichever order they were written in."""
    if not (isinstance(e, Marginal) and e.body.is_Mul):
        return None
    inner = [f for f in e.body.args if isinstance(f, Marginal) and f.variable.name < e.variable.name]
    if not inner:
        return None
    chosen = min(inner, key=lambda f: f.variable.name)
    rest = [f for f in e.body.args if f is not chosen]
    if any(chosen.variable in f.free_symbols for f in rest):
        return None   # taking c inside would capture its W
    return Marginal(chosen.variable, Marginal(e.variable, sp.Mul(*rest) * chosen.body))


def _rewrites(names) -> list:
    """(rule name, node rewrite) for the named rules: cheap, local laws first; unfolding
    E into sums and differentiating last, so that found_by names the simplest rules."""
    names = frozenset(names)
    order = sorted((name for name in RULES if name in names), key=lambda name: name in _LATE_RULES)
    hypotheses = active()
    return [(name, rw) for name in order for rw in RULES[name].rewrites + hypotheses.rewrites(name)]


class _Normalizer:
    def __init__(self, names, known: dict | None = None):
        self.rewrites = _rewrites(names)
        self.fired: set[str] = set()
        self.cache: dict = {}      # expression -> its normal form
        self.used_by: dict = {}    # expression -> the rules that fired normalizing it
        for e, (result, fired) in (known or {}).items():
            self.cache[e], self.used_by[e] = result, fired
        self.depth = 0

    def reusable(self, without: str) -> dict:
        """Normal forms that hold under these rules less ``without``: those reached
        without it firing (the same rewrites, in the same order, fire without it)."""
        return {e: (self.cache[e], fired) for e, fired in self.used_by.items() if without not in fired}

    def node(self, e):
        """Rewrite at one node (its arguments already normal) until nothing applies."""
        for _ in range(_MAX_PASSES):
            check_deadline()
            for name, rewrite in self.rewrites:
                new = rewrite(e)
                if new is not None and new != e:
                    self.fired.add(name)
                    e = self.full(new)
                    break
            else:
                new = _zero_body(e)   # 0 itself: not to be read as "nothing applies"
                if new is None:
                    new = (self.exchange_sums(e) or _sum_order(e) or _sum_outward(e)
                           or _scalars_out(e) or _log_of_number(e))
                if new is None or new == e:
                    return e
                e = self.full(new)
        raise NormalizationLoop()

    def exchange_sums(self, e):
        """sum_V[sum_W[f]] -> sum_W[g] when g = sum_V[f] simplifies (Fubini, finite sums).

        Nested sums come out of expectations over several variables; summing a
        variable out first is what lets marginalization and normalisation fire.
        """
        if not (isinstance(e, Marginal) and isinstance(e.body, Marginal)):
            return None
        outer, inner = e.variable, e.body.variable
        # the outer variable under a name of its own: the body may bind a variable of
        # the same name (an inner E over W inside a sum over W), and the sum that
        # survives when nothing simplified must not be mistaken for that one
        taken = {a.name for a in e.atoms(sp.Symbol)}
        name = outer.name + "'"  # no .calc name has a ', and none already here
        while name in taken:
            name += "'"
        fresh = sp.Symbol(name, **outer.assumptions0)
        swapped_inner = self.full(Marginal(fresh, e.body.body.subs(outer, fresh)))  # free ones only
        if isinstance(swapped_inner, Marginal) and swapped_inner.variable == fresh:
            return None
        exchanged = Marginal(inner, swapped_inner.xreplace({fresh: outer}))
        # a sum over W left as a factor inside the sum over V (W before V) is what
        # _sum_outward takes back out: exchanging would undo it, round and round
        return None if _sum_outward(exchanged) is not None else exchanged

    def rebuild(self, e):
        """Normalize the arguments of ``e``; densities that an operator binds stay as written."""
        if isinstance(e, (KL, Entropy, ELBO)):
            return evaluate(e)
        if isinstance(e, Expectation):
            return Expectation(evaluate(e.density), self.full(e.body))
        if isinstance(e, (Marginal, Gradient)):
            return e.func(e.args[0], self.full(e.args[1]))
        return e.func(*[self.full(a) for a in e.args])

    def full(self, e):
        self.depth += 1
        try:
            if self.depth > _MAX_DEPTH:
                raise NormalizationLoop()
            return self._full(e)
        finally:
            self.depth -= 1

    def _full(self, e):
        if e in self.cache:
            self.fired |= self.used_by[e]
            return self.cache[e]
        # the rules fired below e are collected apart, then added to the caller's
        outer, self.fired = self.fired, set()
        try:
            result = self._normalize(e)
        finally:
            inner, self.fired = self.fired, outer | self.fired
        self.cache[e], self.used_by[e] = result, frozenset(inner)
        return result

    def _normalize(self, e):
        if e.is_Atom or isinstance(e, sp.Tuple):
            return e
        if isinstance(e, Density):
            return self.node(evaluate(e))
        rebuilt = self.rebuild(e)
        # the arguments are normal (expanded) already: expanding this node alone
        # reaches the same form without re-walking the whole tree at every node
        expanded = sp.expand(rebuilt, **_NODE_EXPAND) if (rebuilt.is_Add or rebuilt.is_Mul
                                                           or rebuilt.is_Pow) else rebuilt
        if expanded != rebuilt:
            return self.full(expanded)
        return rebuilt if rebuilt.is_Atom else self.node(rebuilt)

    def normal_form(self, expr: sp.Expr) -> Normalized:
        result = self.full(evaluate(expr))
        # a last expansion lets terms from different operators cancel
        return Normalized(sp.expand(result, **EXPAND_OPTIONS), frozenset(self.fired))


def normal_form(expr: sp.Expr, names=CANONICAL_RULES) -> Normalized:
    """The normal form of ``expr`` under the named rules (plus algebra), and the rules used."""
    return _Normalizer(names).normal_form(expr)


def minimal_rules(lhs: sp.Expr, rhs: sp.Expr, names=CANONICAL_RULES) -> frozenset | None:
    """A small set of rules from ``names`` by which ``lhs = rhs`` follows, or None.

    The rules that fire are then dropped one at a time while the step still
    follows (greedy). A trial without rule R reuses every subterm's normal form
    that R played no part in, so only the parts R touched are normalized again.
    """
    sides = [_Normalizer(names), _Normalizer(names)]
    try:
        left, right = (n.normal_form(e) for n, e in zip(sides, (lhs, rhs)))
    except NormalizationLoop:
        return None
    if not _agree(left.expr, right.expr):
        return None
    # cancelling a rational difference is slow: trials try it only if the step needed it
    cancelling = not _agree(left.expr, right.expr, cancel=False)
    used = current = left.fired | right.fired
    # later rules in the registry go first, so the plainest names are the ones kept
    for name in sorted(used, key=list(RULES).index, reverse=True):
        trial = current - {name}
        attempt = [_Normalizer(trial, known=n.reusable(name)) for n in sides]
        try:
            left, right = (n.normal_form(e) for n, e in zip(attempt, (lhs, rhs)))
        except NormalizationLoop:
            continue
        if _agree(left.expr, right.expr, cancel=cancelling):
            current, sides = trial, attempt
    return current


def equal_by(lhs: sp.Expr, rhs: sp.Expr, names=CANONICAL_RULES):
    """Return the rules used when ``lhs = rhs`` follows from the named rules, else None."""
    try:
        left, right = normal_form(lhs, names), normal_form(rhs, names)
    except NormalizationLoop:
        return None
    return left.fired | right.fired if _agree(left.expr, right.expr) else None


def _agree(left: sp.Expr, right: sp.Expr, cancel: bool = True) -> bool:
    """True when two normal forms are equal: identical after expansion, or (``cancel``)
    their rational difference cancels (p(X,Z) / p(X) * p(X) - ...)."""
    # both forms are expanded: the difference needs expanding at its top only
    difference = sp.expand(left - right, **_NODE_EXPAND)
    if difference == 0:
        return True
    return bool(cancel and difference.has(sp.Pow) and _cancels(difference))


def one_rewrite(lhs: sp.Expr, rhs: sp.Expr, names) -> frozenset | None:
    """The named rules of which one application gives the step, or None.

    Most written steps apply one rule once: at one node of one side, giving the
    other side; or at one node of each side, the two results meeting once
    numbers are taken out of linear operators (``-E[a - b]`` and ``E[b - a]``,
    the algebra of normal forms). Finding that is far cheaper than two normal
    forms, and is the same law (the rule's own rewrite, side conditions
    included), so it proves what ``equal_by`` would.
    """
    steps = one_rewrite_steps(lhs, rhs, names)
    return None if steps is None else frozenset(step["rule"] for step in steps)


def one_rewrite_steps(lhs: sp.Expr, rhs: sp.Expr, names) -> list[dict] | None:
    """As :func:`one_rewrite`, but the rewrites themselves, or None: one or two records
    ``{"side", "rule", "variant", "path"}`` (the rule's form applied, and where), as a
    proof certificate records them for the kernel to replay."""
    left, right = evaluate(lhs), evaluate(rhs)
    # the laws as stated too: ELBO(q, p) -> E_q[log(p/q)] is one step as written
    rewrites = _rewrites(names) + [(name, rw) for name, rule in RULES.items() if name in names
                                   for rw in rule.stated]
    candidates = ([], [])   # per side: (the rewrite record, the side after its one application)
    for found, label, (side, other) in zip(candidates, ("lhs", "rhs"), ((left, right), (right, left))):
        for record, new_side in _single_rewrites(side, rewrites):
            record["side"] = label
            if new_side == other:
                return [record]
            found.append((record, new_side))
    if not (candidates[0] or candidates[1]):
        return None
    memo: dict = {}
    tidied_other = (tidy(right, memo), tidy(left, memo))   # each side's other, tidied
    reached: list[dict] = [{}, {}]
    for index, found in enumerate(candidates):
        for record, new_side in found:
            tidied = tidy(new_side, memo)
            if tidied == tidied_other[index]:
                return [record]
            reached[index].setdefault(tidied, record)
    for tidied, record in reached[0].items():
        if tidied in reached[1]:
            return [record, reached[1][tidied]]
    return None


def _single_rewrites(side, rewrites):
    """Yield (record, the side after that rule's one application at one place)."""
    for path, sub in rewritable_positions(side):
        for name, rewrite in rewrites:
            new = rewrite(sub)
            if new is None or new == sub:
                continue
            try:
                changed = replace_at(side, path, new)
            except (TypeError, ValueError):
                continue  # the rewrite does not fit this place (a density slot)
            rule = RULES[name]
            # the side conditions are the rule's own, checked inside its rewrite; the
            # kernel checks them again when it replays the rewrite, never trusting this record
            yield ({"rule": name, "variant": forms_of(name).index(rewrite),
                    "path": list(path), "conditions": rule.conditions}, changed)


def tidy(expr, memo: dict):
    """``expr`` with numbers taken out of every linear operator, as normal forms do
    (``_scalars_out``): where single rewrites of two sides meet."""
    slots = body_slots(expr)
    if not slots:
        return expr
    known = memo.get(expr)
    if known is not None:
        return known
    args = tuple(tidy(a, memo) if i in slots else a for i, a in enumerate(expr.args))
    result = expr if args == expr.args else expr.func(*args)
    if isinstance(expr, (Expectation, Marginal, Gradient)):
        result = _scalars_out(result) or result
    memo[expr] = result
    return result


def _cancels(difference: sp.Expr) -> bool:
    """True when the rational function ``difference`` is zero, logs and operators held as atoms.

    ``cancel`` would expand logs of products on its own; freezing every
    non-rational subterm into a symbol keeps it to field arithmetic.
    """
    frozen: dict = {}

    def freeze(node):
        if isinstance(node, (sp.Function, *NOTATION_CLASSES)):
            return frozen.setdefault(node, sp.Dummy(f"a{len(frozen)}"))
        if node.is_Atom:
            return node
        return node.func(*[freeze(a) for a in node.args])

    return sp.cancel(sp.together(freeze(difference))) == 0


def contains_notation(expr) -> bool:
    """True when ``expr`` holds any probability notation."""
    return any(isinstance(node, NOTATION_CLASSES) for node in sp.preorder_traversal(expr))
