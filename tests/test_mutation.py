"""Mutation testing: plausible slips made in true steps must never be accepted.

From every step of the built-in derivations, the shared examples and a table
of textbook claims, mutants are made the way people slip: a sign flipped, the
arguments of KL swapped, a relation reversed or made strict, a term dropped,
p and q swapped, a conditional written as a joint, a log moved through an
expectation, the 1/q of q * p / q forgotten. Each mutant's truth is judged
independently of the checker, on fresh random instances it never sees; a
mutant false there must come back ``refuted``, never ``proved`` or
``tested``. And every ``proved`` mutant must hold on the fresh instances.
"""

from __future__ import annotations

import functools
import random

import mpmath
import pytest
import sympy as sp

from symelbo.core.checker import CheckOptions, check_step
from symelbo.core.derivation import Step
from symelbo.core.normalize import evaluate
from symelbo.core.notation import KL, Density, Expectation
from symelbo.io.parser import parse_file, parse_text
from symelbo.core.semantics import Undefined, Universe, build_instance, evaluate_on

from .conftest import DERIVATIONS, SHARED_EXAMPLES
from .test_checker import CONTEXT, PROVED

FRESH_SEEDS = range(5000, 5012)


def _rebuild(node, args):
    if node.is_Add or node.is_Mul or node.is_Pow or isinstance(node, sp.Function):
        return node.func(*args, evaluate=False)
    return node.func(*args)


def one_at_a_time(expr, change):
    """Every expression made by applying ``change`` (None: no change) at exactly one node."""
    out = []
    new = change(expr)
    if new is not None:
        out.append(new)
    if expr.is_Atom or isinstance(expr, (Density, sp.Tuple)):
        return out
    for index, arg in enumerate(expr.args):
        for variant in one_at_a_time(arg, change):
            args = list(expr.args)
            args[index] = variant
            try:
                out.append(_rebuild(expr, args))
            except (TypeError, ValueError):  # not a well-formed expression (KL over other variables)
                pass
    return out


def _guarded(change):
    """A node change that yields None where the changed node would be ill-formed."""
    def safe(e):
        try:
            return change(e)
        except (TypeError, ValueError):
            return None
    return safe


def _swap_kl(e):
    if isinstance(e, KL):
        return KL(e.second, e.first)
    return None


def _swap_names(e):
    if isinstance(e, Density) and e.name in ("p", "q"):
        return Density("q" if e.name == "p" else "p", e.variables, e.given, e.params)
    return None


def _joint_for_conditional(e):
    if isinstance(e, Density) and e.given:
        return Density(e.args[0], e.variables + e.given, (), e.params)
    return None


def _log_through_expectation(e):
    if isinstance(e, sp.log) and isinstance(e.args[0], Expectation):
        inner = e.args[0]
        return Expectation(inner.density, sp.log(inner.body, evaluate=False))
    if isinstance(e, Expectation) and isinstance(e.body, sp.log):
        return sp.log(Expectation(e.density, e.body.args[0]), evaluate=False)
    return None


def _forget_reciprocal(e):
    if e.is_Mul:
        kept = [f for f in e.args if not (f.is_Pow and f.exp == -1 and isinstance(f.base, Density))]
        if len(kept) < len(e.args) and kept:
            return sp.Mul(*kept, evaluate=False)
    return None


def _drop_term(e):
    if e.is_Add and len(e.args) > 1:
        return sp.Add(*e.args[1:], evaluate=False)
    return None


def _flip_sign(e):
    if e.is_Add and len(e.args) > 1:
        first, rest = e.args[0], e.args[1:]
        return sp.Add(sp.Mul(-1, first, evaluate=False), *rest, evaluate=False)
    return None


NODE_MUTATIONS = {
    "swap KL arguments": _swap_kl,
    "swap p and q": _swap_names,
    "conditional as joint": _joint_for_conditional,
    "log through an expectation": _log_through_expectation,
    "forget 1/q": _forget_reciprocal,
    "drop a term": _drop_term,
    "flip a sign": _flip_sign,
}

RELATION_MUTATIONS = {"=": ("<", ">"), ">=": ("<=", ">"), "<=": (">=", "<"), ">": ("<",), "<": (">",)}


def mutants(step: Step):
    """(description, mutant step) pairs for one step."""
    for relation in RELATION_MUTATIONS[step.relation]:
        yield f"relation {step.relation} -> {relation}", Step(step.lhs, relation, step.rhs)
    yield "negate the right-hand side", Step(step.lhs, step.relation, sp.Mul(-1, step.rhs, evaluate=False))
    for name, change in NODE_MUTATIONS.items():
        for side in ("lhs", "rhs"):
            for variant in one_at_a_time(getattr(step, side), _guarded(change)):
                lhs, rhs = (variant, step.rhs) if side == "lhs" else (step.lhs, variant)
                yield f"{name} ({side})", Step(lhs, step.relation, rhs)


def source_steps():
    """Every step of the built-ins, the shared examples' true chains, and the proved claims."""
    steps = []
    for path in sorted(DERIVATIONS.glob("*.calc")):
        derivation = parse_file(path)
        if derivation.hypotheses:
            # mutated under its assumptions and definitions in test_structure.py: the steps
            # here are checked alone, where they would mean something else
            continue
        steps += [(f"{path.name}:{s.line}", s) for c in derivation.chains for s in c.steps]
    for name in ("kl_shuffle.calc", "jensen.calc", "gradient.calc"):
        path = SHARED_EXAMPLES / name
        if path.is_file():
            steps += [(f"{name}:{s.line}", s) for c in parse_file(path).chains for s in c.steps]
    for claim in PROVED:
        step = parse_text(CONTEXT + claim + "\n").chains[-1].steps[0]
        steps.append((claim, step))
    return steps


def false_on_fresh_instances(step: Step) -> bool:
    """True when the step fails clearly (by more than 1e-20 relative) on a fresh instance."""
    universe = Universe.of([step.lhs, step.rhs])
    lhs, rhs = evaluate(step.lhs), evaluate(step.rhs)
    for seed in FRESH_SEEDS:
        instance = build_instance(universe, "fresh", seed, random.Random(seed), None, "random", seed % 4 == 0)
        try:
            # 250 digits: a large factor must not turn rounding noise into a "false"
            left, right = evaluate_on(lhs, instance, 250), evaluate_on(rhs, instance, 250)
        except (Undefined, ZeroDivisionError, ValueError, OverflowError, TypeError):
            continue
        scale = max(mpmath.mpf(1), abs(left), abs(right))
        gap = (left - right) / scale
        apart = abs(gap) > mpmath.mpf(10) ** -20
        if step.relation == "=" and apart:
            return True
        if step.relation in (">=", ">") and gap < -mpmath.mpf(10) ** -20:
            return True
        if step.relation in ("<=", "<") and gap > mpmath.mpf(10) ** -20:
            return True
    return False


#: The mutants are checked in this many shards, so that parallel workers share them.
SHARDS = 6


@functools.lru_cache(maxsize=None)
def all_mutants() -> tuple:
    """(where, description, mutant) for every distinct mutant of every source step."""
    out, seen = [], set()
    for where, step in source_steps():
        for description, mutant in mutants(step):
            key = (evaluate(mutant.lhs), mutant.relation, evaluate(mutant.rhs))
            if key not in seen:
                seen.add(key)
                out.append((where, description, mutant))
    return tuple(out)


def test_there_are_enough_mutants():
    assert len(all_mutants()) > 300


@pytest.mark.parametrize("shard", range(SHARDS))
def test_no_mutant_false_on_fresh_instances_is_accepted(shard):
    counts = {"mutants": 0, "refuted": 0, "accepted (equivalent)": 0, "other": 0}
    false_acceptances = []
    options = CheckOptions(budget=5)
    for where, description, mutant in all_mutants()[shard::SHARDS]:
        counts["mutants"] += 1
        result = check_step(mutant, options)
        if result.verdict == "refuted":
            counts["refuted"] += 1
            assert result.counterexample, (where, description)
            continue
        false = false_on_fresh_instances(mutant)
        if result.verdict in ("proved", "tested"):
            if false:
                false_acceptances.append((where, description, str(mutant.lhs), mutant.relation,
                                          str(mutant.rhs), result.verdict))
            else:
                counts["accepted (equivalent)"] += 1
        else:
            counts["other"] += 1
    print(f"\nmutation testing, shard {shard}:", ", ".join(f"{k}: {v}" for k, v in counts.items()))
    assert counts["mutants"] > 300 // SHARDS
    assert not false_acceptances, false_acceptances


@pytest.mark.parametrize("where, step", source_steps()[:12])
def test_sources_are_true_on_fresh_instances(where, step):
    """The mutation sources themselves hold: the oracle agrees with the checker on them."""
    assert not false_on_fresh_instances(step), where
