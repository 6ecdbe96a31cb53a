"""The step checker: proved / tested / misjustified / refuted / unknown.

For each step ``lhs R rhs``:

1. ``by NAME, ...`` given: replay. For ``=`` the normal forms of both sides
   under exactly the named rules (plus algebra) must agree; for an
   inequality, one named inequality rule applied at a position of the right
   polarity must turn it into an identity (or the difference must be a KL
   divergence, for ``gibbs_inequality``).
2. No ``by`` (or a failed replay): the checker searches for a proof itself
   with every rule and reports the rules it used in ``found_by``.
3. Concrete instances (:mod:`symelbo.core.semantics`) refute a false step with a
   counterexample, or give ``tested`` when no proof was found and the step
   held on every instance. Numbers never prove.

A step whose named rules do not produce it, but which is true, is
``misjustified``. Past the time budget the step is ``unknown``.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass

import mpmath
import sympy as sp
from sympy.core import random as sympy_random

from symelbo.core.deadline import BudgetExceeded, time_budget
from symelbo.core.derivation import Chain, Derivation, Step
from symelbo.core.falsify import attack, density_values
from symelbo.core.claims import READING_WORDS, equality_reading, is_reading, reading_rules
from symelbo.core.hypotheses import active as active_hypotheses, assuming
from symelbo.core.kernel import (CertificateRejected, Risk, certificate_data, check_rule_names,
                                 replay, value_risk)
from symelbo.core.normalize import NormalizationLoop, evaluate, normal_form
from symelbo.core.notation import Gradient, known_positive, split_const
from symelbo.core.printing import calc_str
from symelbo.core.relations import relation as relation_of
from symelbo.core.rules import RULES
from symelbo.core.search import INEQUALITY_RULES, Found, identical_sides, replay_named, search_proof
from symelbo.core.semantics import (DEFAULT_INSTANCES, DIGITS, NotComputable, TooLarge, Undefined, Universe,
                        evaluate_on, exactly_apart, exactly_equal, instances, tabulation_problem)
from symelbo.core.verdicts import ASSERTS_TRUTH, PASSING, VERDICT_ORDER, weakest

__all__ = ["CheckOptions", "StepResult", "ChainResult", "CheckResult",
           "check_derivation", "check_chain", "check_step", "file_universe", "printed", "VERDICT_ORDER",
           "weakest"]

def _ordered(names) -> tuple[str, ...]:
    """Rule names in registry order (definitions first), for found_by and messages."""
    return tuple(sorted(names, key=list(RULES).index))


def _found_by(names) -> tuple[str, ...]:
    """The rules a proof used; a proof that needed none is algebra."""
    return _ordered(names) or ("algebra",)


#: What :func:`printed` shows for an expression too deep for SymPy's printer.
TOO_DEEP_TO_PRINT = "(an expression nested too deeply to print)"


def printed(expr) -> str:
    """``expr`` in .calc syntax, or :data:`TOO_DEEP_TO_PRINT`: SymPy's printer recurses
    once per level, and a report must not fail on a tower the checker survived."""
    try:
        return calc_str(expr)
    except RecursionError:
        return TOO_DEEP_TO_PRINT


@dataclass(frozen=True)
class CheckOptions:
    """How hard to look: seconds per step, and how many instances to test."""

    budget: float = 5.0
    instances: int = DEFAULT_INSTANCES   # the planned ones, then seven random ones
    sanity_instances: int = 3


#: The structured reasons a result may carry: "counterexample" (refuted on an instance,
#: the counterexample says it all), "counterexample_against_rules" (refuted although
#: rules claimed a proof: an unsound rule).
REASONS = ("counterexample", "counterexample_against_rules")


@dataclass(frozen=True)
class StepResult:
    """The verdict on one step, with what justified or refuted it."""

    step: Step
    verdict: str
    found_by: tuple[str, ...] = ()
    counterexample: dict | None = None
    message: str = ""
    #: the proof the kernel accepted (proved steps only), as plain data
    certificate: dict | None = None
    #: the counterexample search a step survived (or that refuted it), as numbers:
    #: planned and searched instances, evaluations, local moves (None when none ran)
    search: dict | None = None
    #: why, as data for other modules to act on (the message is for people): "" or one
    #: of REASONS
    reason: str = ""

    def __repr__(self) -> str:  # the dataclass repr prints every expression tree in full
        s = self.step
        return f"<StepResult line {s.line}: {s.relation} {printed(s.rhs)} [{self.verdict}]>"

    def as_dict(self) -> dict:
        s = self.step
        return {"line": s.line, "relation": s.relation, "lhs": printed(s.lhs),
                "rhs": printed(s.rhs), "by": list(s.by), "found_by": list(self.found_by),
                "verdict": self.verdict, "counterexample": self.counterexample,
                "message": self.message, "certificate": certificate_data(self.certificate),
                # only where a counterexample search ran: every other step keeps its keys
                **({"search": self.search} if self.search is not None else {}),
                # only for a step up to a constant or a proportionality: what it holds up to
                **({"constant_in": list(s.constant_in)} if s.constant_in else {})}


@dataclass(frozen=True)
class ChainResult:
    chain: Chain
    steps: tuple[StepResult, ...]

    @property
    def verdict(self) -> str:
        return weakest(s.verdict for s in self.steps)

    @property
    def claim(self) -> str:
        claim = f"{printed(self.chain.first)} {self.chain.relation_text} {printed(self.chain.last)}"
        constant = next((s.constant_in for s in reversed(self.chain.steps)
                         if s.relation == "=" and s.constant_in), ())
        if constant and not split_const(self.chain.last)[1] and not split_const(self.chain.first)[1]:
            # the chain holds up to a constant from an earlier step on: its claim says so
            claim += " + const_{" + ", ".join(constant) + "}"
        return claim

    def as_dict(self) -> dict:
        return {"claim": self.claim, "verdict": self.verdict,
                "steps": [s.as_dict() for s in self.steps],
                **({"note": self.chain.note} if self.chain.note else {})}


@dataclass(frozen=True)
class CheckResult:
    derivation: Derivation
    chains: tuple[ChainResult, ...]

    @property
    def verdict(self) -> str:
        return weakest(c.verdict for c in self.chains)

    @property
    def passed(self) -> bool:
        return all(s.verdict in PASSING for c in self.chains for s in c.steps)

    def as_dict(self) -> dict:
        return {"verdict": self.verdict, "chains": [c.as_dict() for c in self.chains]}

    def __repr__(self) -> str:  # the dataclass repr prints every expression tree in full
        steps = sum(len(c.steps) for c in self.chains)
        return f"<CheckResult {self.verdict}: {len(self.chains)} chain(s), {steps} step(s)>"

    def __str__(self) -> str:
        """The verdict, then each chain's claim and each step's verdict, one line each."""
        lines = [f"{self.derivation.title or 'derivation'}: {self.verdict}"]
        for index, chain in enumerate(self.chains, start=1):
            lines.append(f"  chain {index} (line {chain.chain.line}): {chain.claim}  [{chain.verdict}]")
            lines.extend(f"    line {s.step.line}: {s.step.relation} {printed(s.step.rhs)}  [{s.verdict}]"
                         for s in chain.steps)
        return "\n".join(lines)


# ---------------------------------------------------------------------------
# entry points
# ---------------------------------------------------------------------------

def file_universe(derivation: Derivation) -> Universe:
    """What a file's densities mean: one joint each across all its chains, and every
    instance satisfying the file's assumptions and definitions."""
    expressions = [split_const(e)[0] for c in derivation.chains for e in [c.first] + [s.rhs for s in c.steps]]
    return Universe.of(expressions, derivation.hypotheses)


def check_derivation(derivation: Derivation, options: CheckOptions = CheckOptions()) -> CheckResult:
    """Check every step of every chain in the file's universe (:func:`file_universe`)."""
    universe = file_universe(derivation)
    return CheckResult(derivation, tuple(check_chain(c, options, universe) for c in derivation.chains))


def check_chain(chain: Chain, options: CheckOptions = CheckOptions(),
                universe: Universe | None = None) -> ChainResult:
    if universe is None:
        universe = Universe.of([split_const(e)[0] for e in [chain.first] + [s.rhs for s in chain.steps]])
    return ChainResult(chain, tuple(check_step(s, options, universe) for s in chain.steps))


def check_step(step: Step, options: CheckOptions = CheckOptions(),
               universe: Universe | None = None) -> StepResult:
    """The verdict on one step under a time budget."""
    check_rule_names(step.by)   # a typed error (UnknownRule) before any work
    if universe is None:
        universe = Universe.of([split_const(step.lhs)[0], split_const(step.rhs)[0]])
    if is_reading(step.relation, step.constant_in):
        return _check_reading(step, options, universe)
    try:
        # before SymPy evaluates anything: 2^(10^10) as written would be computed
        extreme = extreme_number(step.lhs) or extreme_number(step.rhs)
        if extreme:
            return StepResult(step, "unknown", message=f"{extreme}: too large to compute with")
        with time_budget(options.budget), _seeded_sympy(), assuming(universe.hypotheses):
            risk = _step_risk(step)   # once per step: every stage below consults it
            result = _check(step, options, universe, risk)
            if risk and result.verdict in ASSERTS_TRUTH:
                return _valueless(result, risk, universe, options)
            return result
    except BudgetExceeded:
        return StepResult(step, "unknown",
                          message=f"no proof or counterexample within the budget of {options.budget:g} s")
    except RecursionError:
        return StepResult(step, "unknown", message="the expression is too deep to check")
    except TooLarge as why:
        return StepResult(step, "unknown", message=str(why))
    except (MemoryError, OverflowError):
        # SymPy or mpmath asked for a number beyond memory (an exp of an exp of a
        # large number): this step only, the others are still checked
        return StepResult(step, "unknown",
                          message="a number in this step is too large to compute with")


def _check_reading(step: Step, options: CheckOptions, universe: Universe) -> StepResult:
    """A step up to a constant, or a proportionality: checked as the equality it claims
    (:mod:`symelbo.core.claims`), the verdict given to the step as written."""
    left, right, hypotheses = equality_reading(step.lhs, step.relation, step.rhs, step.constant_in,
                                               universe.hypotheses)
    by = reading_rules(step.by, step.relation, step.constant_in, universe.hypotheses)
    inner = Step(left, "=", right, by, step.line, step.column)
    result = check_step(inner, options, Universe.of([left, right], hypotheses))
    message = result.message
    if result.verdict == "refuted":
        words = READING_WORDS["propto" if step.relation == "propto" else "constant"]
        message = (message + "; " if message else "") + words.format(names=", ".join(step.constant_in))
    found_by = tuple(r for r in result.found_by if r in step.by) if step.by else result.found_by
    return StepResult(step, result.verdict, found_by, result.counterexample, message,
                      result.certificate, result.search, result.reason)


#: The seed of SymPy's random generators at the start of every step.
SYMPY_SEED = 0


@contextmanager
def _seeded_sympy():
    """Run the block with SymPy's random generators seeded.

    SymPy's assumption system shuffles the order in which it asks facts with an
    unseeded generator (``sympy.core.assumptions._ask``); some orders fail where
    others succeed, so the same step could get two verdicts. Seeding makes the
    order the same on every run; the user's own generator (``sympy.core.random.rng``)
    is put back as it was afterwards.
    """
    state = sympy_random.rng.getstate()
    sympy_random.seed(SYMPY_SEED)
    try:
        yield
    finally:
        sympy_random.rng.setstate(state)


#: A number whose binary exponent may exceed this (about 300000 decimal digits)
#: is beyond what a step can compute with: SymPy would build 2^(10^10) exactly,
#: and its assumption queries evaluate exp(exp(exp(5))) numerically.
MAX_EXPONENT_BITS = 2 ** 20


def extreme_number(expr: sp.Expr) -> str:
    """A description of a constant in ``expr`` (as written) too large or too small to
    compute with, or "".

    Works on estimates of |log2 |c|| for every constant subterm c (numbers, e, pi,
    and + * ^ exp log of them), computed bottom-up without evaluating c itself.
    The estimate follows the size of the numbers written, not cancellations (a
    difference of two close numbers may be smaller): it is a screen, and what it
    lets through is still guarded where it is computed. A subterm with a variable
    or a density has no estimate and flags nothing (the instances' evaluator
    guards those values). Iterative: towers nest deeply.
    """
    size, node = largest_constant(expr)
    if size > MAX_EXPONENT_BITS:
        return f"the number {_short(node)} may have more than {MAX_EXPONENT_BITS} binary digits"
    return ""


def largest_constant(expr: sp.Expr):
    """(the largest estimate of |log2 |c|| over the constant subterms c of ``expr``,
    that subterm); (0, None) when it has none. Stops at the first estimate past
    :data:`MAX_EXPONENT_BITS`: nothing above it is computed."""
    ranges: dict = {}
    largest, where = 0.0, None
    stack = [(expr, False)]
    while stack:
        node, expanded = stack.pop()
        if node in ranges:
            continue
        if not expanded:
            stack.append((node, True))
            stack.extend((a, False) for a in node.args if a not in ranges)
            continue
        span = _log2_range(node, [ranges.get(a) for a in node.args])
        ranges[node] = span
        if span is not None and max(-span[0], span[1]) > largest:
            largest, where = max(-span[0], span[1]), node
            if largest > MAX_EXPONENT_BITS:
                break
    return largest, where


def _short(node) -> str:
    """``node`` in .calc syntax, cut short (a tower prints long)."""
    text = printed(node)
    return text if len(text) <= 60 else text[:57] + "..."


_LOG2_E = math.log2(math.e)


def _log2_range(node, parts):
    """An estimate (lo, hi) of log2 |node| from those of its arguments (``parts``,
    None where an argument is not a constant), or None when ``node`` is not a
    constant made of what this knows."""
    if node.is_Rational:
        if node == 0:
            return (0.0, 0.0)
        exact = math.log2(abs(node.p)) - math.log2(node.q)
        return (exact, exact)
    if node is sp.E or node is sp.pi:
        return (1.0, 2.0)
    if not node.args or any(p is None for p in parts):
        return None
    if node.is_Add:   # at most n times the largest term
        return (min(lo for lo, _ in parts), max(hi for _, hi in parts) + math.log2(len(parts)))
    if node.is_Mul:
        return (sum(lo for lo, _ in parts), sum(hi for _, hi in parts))
    if node.is_Pow:   # log2 |b^e| = e log2 |b|
        (base_lo, base_hi), (_, exp_hi) = parts
        if node.exp.is_Rational:
            ends = (float(node.exp) * base_lo, float(node.exp) * base_hi)
            return (min(ends), max(ends))
        size = _power_of_two(exp_hi) * max(-base_lo, base_hi)   # |e| <= 2^hi(e)
        return (-size, size)
    if isinstance(node, sp.exp):   # log2 exp(a) = a log2(e)
        if node.args[0].is_Rational:
            exact = float(node.args[0]) * _LOG2_E
            return (exact, exact)
        size = _LOG2_E * _power_of_two(parts[0][1])   # |a| <= 2^hi(a)
        return (-size, size)
    if isinstance(node, sp.log):   # |log a| < |log2 a|: at most the size of a
        size = max(-parts[0][0], parts[0][1])
        return (min(0.0, math.log2(size + 1)), math.log2(size + 1))
    return None


def _power_of_two(bits: float) -> float:
    """2^bits as a float, infinite past what a float holds."""
    return 2.0 ** bits if bits < 1000 else float("inf")


# ---------------------------------------------------------------------------
# the decision
# ---------------------------------------------------------------------------

def _check(step: Step, options: CheckOptions, universe: Universe, risk) -> StepResult:
    named = frozenset(step.by)
    lhs, rhs = evaluate(step.lhs), evaluate(step.rhs)
    # as written too: SymPy turns exp(log(-1)) into -1 on evaluation
    if any(_undefined(side) for side in (step.lhs, step.rhs, lhs, rhs)):
        # log 0, 0/0, an infinity: no rule may prove anything about it, and no
        # instance can give it a value to refute
        return StepResult(step, "unknown",
                          message="a side is undefined as written (log of a number <= 0, division "
                                  "by 0, an infinity or an imaginary number)")
    if (step.relation in ("=", "<=", ">=") and not named & INEQUALITY_RULES and lhs == rhs):
        kept = _kernel_accepts(step, identical_sides(step), step.by)
        if kept is not None:
            return StepResult(step, "proved", _found_by(named - INEQUALITY_RULES),
                              message="both sides are the same expression",
                              certificate=kept.certificate)
    replayed = _kernel_accepts(step, replay_named(step, named), step.by) if named else None
    if replayed is not None:
        return _confirmed(step, tuple(step.by), options, universe, risk, replayed,
                          message=_replay_message(replayed.rules))
    found = _kernel_accepts(step, search_proof(step))
    proof = None if found is None else found.rules
    if proof is None:
        refutation = _refute_by_constant_gap(step, lhs, rhs, universe, options, risk)
        if refutation is not None:
            return refutation
    outcome = _test(step, universe, options.instances if proof is None else options.sanity_instances,
                    risk, thorough=proof is None)
    if outcome.refuted:
        message, reason = "false on a concrete instance", "counterexample"
        if proof is not None:  # a rule claimed a proof that the semantics contradicts
            message += f"; the rules {', '.join(_ordered(proof))} are unsound here"
            reason = "counterexample_against_rules"
        return StepResult(step, "refuted", (), outcome.counterexample, message, reason=reason)
    if named:
        why = _why_not(step, named)
        if proof is not None:
            return StepResult(step, "misjustified", _found_by(proof),
                              message=f"{why}; it follows by {', '.join(_found_by(proof))}")
        if outcome.held and not (outcome.no_value or outcome.inconclusive):  # as for tested
            survived = _survives_attack(step, lhs, rhs, universe, options, risk, outcome)
            if isinstance(survived, StepResult):
                return survived
            return StepResult(step, "misjustified", (),
                              message=f"{why}; the step held on {survived[0]}", search=survived[1])
        return StepResult(step, "unknown", message=f"{why}; {outcome.describe()}")
    if proof is not None:
        return StepResult(step, "proved", _found_by(proof), certificate=found.certificate)
    if outcome.no_value:
        return StepResult(step, "unknown",
                          message=f"no proof found; {outcome.describe()}: the claim can hold at "
                                  "most where both sides are defined")
    if outcome.held and not outcome.inconclusive:
        survived = _survives_attack(step, lhs, rhs, universe, options, risk, outcome)
        if isinstance(survived, StepResult):
            return survived
        return StepResult(step, "tested", message=f"no proof found; held on {survived[0]}",
                          search=survived[1])
    return StepResult(step, "unknown", message=f"no proof found; {outcome.describe()}")


#: The share of the step's budget the counterexample search may take (1 s of the
#: default 5), and at least ATTACK_FLOOR seconds within what is left of the budget:
#: past it the search stops, and the step is unknown, never tested.
ATTACK_SHARE = 0.2
ATTACK_FLOOR = 1.0


def _attack_seconds(budget: float) -> float:
    return min(budget, max(ATTACK_FLOOR, ATTACK_SHARE * budget))


def _survives_attack(step: Step, lhs, rhs, universe: Universe, options: CheckOptions, risk,
                     outcome: "_Outcome"):
    """After the fixed plan held: the falsifier's search (:mod:`symelbo.core.falsify`).

    Returns a refuted or unknown StepResult, or (the words for what the step held
    on, the search as numbers) when it survived the whole search."""
    free = {s.name for s in step.lhs.free_symbols | step.rhs.free_symbols}
    bits = max(largest_constant(step.lhs)[0], largest_constant(step.rhs)[0])
    judge = _judge_for(step, lhs, rhs, risk, _digits_to_settle(step))
    found = attack(step.relation, lhs, rhs, universe, judge, seconds=_attack_seconds(options.budget),
                   constant_bits=bits, free=free)
    numbers = {"planned": outcome.held, **found.as_dict()}
    if found.found is not None:
        instance, left, right = found.found
        counterexample = _counterexample(instance, left, right, step)
        counterexample["uses"] = density_values(instance, (step.lhs, step.rhs), free)
        return StepResult(step, "refuted", (), counterexample,
                          f"false on a concrete instance found by a search, after {outcome.held} "
                          f"planned instances held ({found.describe()})", search=numbers,
                          reason="counterexample")
    if not found.complete:
        return StepResult(step, "unknown", message=(
            f"no proof found; held on {outcome.held} concrete instances, but the search for a "
            f"counterexample stopped at its time limit of {_attack_seconds(options.budget):g} s "
            f"after {found.describe()}"), search=numbers)
    words = (f"{outcome.held} planned and {found.instances} searched concrete instances "
             f"({', '.join(found.stages)}; {found.evaluations} evaluations, "
             f"{found.local_moves} local moves) and survived: {outcome.held + found.instances} "
             "concrete instances")
    return words, numbers


def _judge_for(step: Step, lhs, rhs, risk, finest: int):
    """The falsifier's judge: (left, right) when a candidate's failure stands at 250
    digits (exactly, or steady at 1000, as for the planned instances), else None."""
    rel = relation_of(step.relation)

    def judge(instance):
        try:
            left, right = evaluate_on(lhs, instance), evaluate_on(rhs, instance)
            first_look = left - right
            left, right = evaluate_on(lhs, instance, HIGH_DIGITS), evaluate_on(rhs, instance, HIGH_DIGITS)
            order = _order(left, right, HIGH_DIGITS)
            if order == "equal":
                order, _, seen = _settle_equal(lhs, rhs, instance, step.relation, 1, finest)
                left, right = seen or (left, right)
            elif rel.holds(order) == "fails" and not _steady(first_look, left - right):
                order, left, right = _confirm_failure(lhs, rhs, instance, order, left, right)
        except (NotComputable, Undefined, ZeroDivisionError, ValueError, OverflowError, TypeError):
            return None
        if rel.holds(order) != "fails":
            return None
        if risk and _written_problem(step, instance, risk):
            return None
        return left, right

    return judge


def _refute_by_constant_gap(step: Step, lhs, rhs, universe: Universe, options: CheckOptions,
                            risk):
    """A refutation when algebra alone makes lhs - rhs a number that contradicts the
    relation (log p(X) = log p(X) + 10^-5000): false wherever both sides have a value,
    however far below the precision of the instances the gap lies. Else None."""
    try:
        gap = normal_form(lhs - rhs, frozenset()).expr
    except NormalizationLoop:
        return None
    if not gap.is_Rational or relation_of(step.relation).holds(_order_of(gap)) != "fails":
        return None
    with mpmath.workdps(60):   # not str(gap): its digits may be thousands long
        size = mpmath.nstr(mpmath.mpf(gap.p) / gap.q, 12)
    if tabulation_problem(universe):
        return None   # no instance to show; _test says why
    for instance in instances(universe, options.instances):
        try:
            left, right = evaluate_on(lhs, instance), evaluate_on(rhs, instance)
        except (Undefined, ZeroDivisionError, ValueError, OverflowError, TypeError):
            continue  # no value here: look for an instance where both sides have one
        if risk and _written_problem(step, instance, risk):
            continue  # nor as written
        counterexample = _counterexample(instance, left, right, step)
        counterexample["difference"] = size   # exact: the sides differ by the gap everywhere
        return StepResult(step, "refuted", (), counterexample,
                          f"false wherever both sides have a value: by algebra, lhs - rhs = {size}")
    return None


def _order_of(gap: sp.Rational) -> str:
    return "exactly equal" if gap == 0 else ("greater" if gap > 0 else "less")


def _step_risk(step: Step):
    return value_risk(step.lhs) or value_risk(step.rhs)


def _valueless(result: StepResult, risk: Risk, universe: Universe, options: CheckOptions):
    """``unknown`` in place of a verdict that says the step is true, when a written
    side may have no real value: it holds at most where it is defined. The message
    counts the instances where a side has no value."""
    step, missing, why = result.step, 0, ""
    if risk.checkable and not tabulation_problem(universe):
        for instance in instances(universe, options.instances):
            problem = _written_problem(step, instance, risk)
            if problem:
                missing += 1
                why = why or problem
    seen = f"; no real value on {missing} of {options.instances} instances ({why})" if missing else ""
    return StepResult(step, "unknown", message=(
        f"a side as written holds {risk.reason}{seen}: the step can hold at most where both "
        f"sides are defined (it would be {result.verdict} there)"))


def _written_problem(step: Step, instance, risk: Risk) -> str:
    """Why a written side may have no real value on ``instance`` ("" when both have one).

    A value that moves between 50 and 250 digits is rounding noise standing in for
    none (the log of a difference that is exactly 0); a kink under a gradient is
    beyond what an instance shows."""
    if not risk.checkable:
        return risk.reason
    try:
        for side in (step.lhs, step.rhs):
            rough = evaluate_on(side, instance, screening=True)
            fine = evaluate_on(side, instance, HIGH_DIGITS, screening=True)
            if abs(rough - fine) > mpmath.mpf(10) ** -30 * max(1, abs(fine)):
                return "a value that is rounding noise (the log of 0 computed as a log of a leftover)"
    except NotComputable:
        return ""
    except (Undefined, ZeroDivisionError) as error:
        return str(error) or "division by zero"
    except (ValueError, OverflowError, TypeError):
        return ""
    return ""


def _undefined(expr: sp.Expr) -> bool:
    """True when ``expr`` has no real value as written: an infinity, 0/0, an imaginary
    number (log(-1), (-1)^(1/2)), or the log of what is known to be negative or zero."""
    # one walk over the tree: this runs on both sides, as written and evaluated, of every step
    stack = [expr]
    while stack:  # a stack, not recursion: a sum of a thousand terms nests deeply
        node = stack.pop()
        stack.extend(node.args)
        if node in _NO_VALUE:
            return True
        if isinstance(node, sp.log) and _not_positive(node.args[0]):
            return True
        if (node.is_Pow and node.exp.is_integer is not True and _not_positive(node.base)
                and node.base != 0):
            return True
    return False


_NO_VALUE = frozenset({sp.zoo, sp.nan, sp.oo, -sp.oo, sp.I})


def _not_positive(expr: sp.Expr) -> bool:
    """True when ``expr`` is known to be <= 0: zero, or a negative number times
    something positive by construction (built without new SymPy objects: this runs
    on every step)."""
    if expr.is_Number:
        return bool(expr <= 0)
    coefficient, rest = expr.as_coeff_Mul()
    return bool(coefficient < 0) and known_positive(rest)


def _kernel_accepts(step: Step, found: Found | None, by=()) -> Found | None:
    """``found`` when the kernel replays its certificate for ``step``, else None: a
    search that believed it had a proof proves nothing the kernel does not accept."""
    if found is None:
        return None
    try:
        replay(found.certificate, step.lhs, step.relation, step.rhs, by, active_hypotheses(),
               step.constant_in)
    except CertificateRejected:
        return None
    return found


def _confirmed(step, found_by, options, universe, risk, found: Found, message=""):
    """A proof is cross-checked on a few instances: a contradiction means an unsound rule."""
    outcome = _test(step, universe, options.sanity_instances, risk, thorough=False)
    if outcome.refuted:
        return StepResult(step, "refuted", (), outcome.counterexample,
                          f"false on a concrete instance; the rules {', '.join(found_by)} are unsound here")
    return StepResult(step, "proved", found_by, message=message, certificate=found.certificate)


def _replay_message(used: frozenset) -> str:
    return "" if used - {"algebra"} else "holds by algebra alone"


def _why_not(step: Step, named: frozenset) -> str:
    names = ", ".join(step.by)
    if step.relation == "=" and named & INEQUALITY_RULES:
        bad = ", ".join(sorted(named & INEQUALITY_RULES))
        return f"{bad} yields an inequality, not the equality this step states"
    verb = "does" if len(step.by) == 1 else "do"
    return f"{names} {verb} not produce this step"


# ---------------------------------------------------------------------------
# concrete instances
# ---------------------------------------------------------------------------

@dataclass
class _Outcome:
    held: int = 0
    undefined: int = 0          # not computable here (an inaccurate derivative...)
    no_value: int = 0           # a side has no real value here (log of a number <= 0...)
    no_value_reason: str = ""
    inconclusive: int = 0
    refuted: bool = False
    counterexample: dict | None = None
    skipped: str = ""

    def describe(self) -> str:
        if self.skipped:
            return self.skipped
        parts = [f"held on {self.held} concrete instances"]
        if self.no_value:
            parts.append(f"a side has no real value on {self.no_value} ({self.no_value_reason})")
        if self.undefined:
            parts.append(f"not computable on {self.undefined}")
        if self.inconclusive:
            parts.append(f"too close to call on {self.inconclusive}")
        return ", ".join(parts)


#: Sides equal to 35 digits are compared again at this precision (and exactly,
#: for a strict claim), so a near miss is neither accepted nor wrongly refuted.
HIGH_DIGITS = 250
#: Sides still equal at 250 digits, and not decided exactly, are compared at these
#: precisions on the first DEEP_CHECKS such instances.
DEEP_DIGITS = (1000, 4000)
DEEP_CHECKS = 2


def _test(step: Step, universe: Universe, count: int, risk, thorough: bool = True) -> _Outcome:
    """Evaluate the step on instances; ``thorough`` settles near-equal sides (not needed
    to cross-check a proof, where only a refutation matters); ``risk`` (the step's
    ``_step_risk``) says whether a failure needs its written sides looked at."""
    outcome = _Outcome()
    # the semantics' one limit on tables: instances() would refuse, say why here
    outcome.skipped = tabulation_problem(universe)
    if outcome.skipped:
        return outcome
    lhs, rhs = evaluate(step.lhs), evaluate(step.rhs)
    deep_checks = DEEP_CHECKS
    finest = _digits_to_settle(step)
    for instance in instances(universe, count):
        try:
            # cross-checking a proof, a first look need not confirm its derivatives:
            # only a failure counts, and a failure is looked at again below
            screening = not thorough
            left = evaluate_on(lhs, instance, screening=screening)
            right = evaluate_on(rhs, instance, screening=screening)
            order = _order(left, right, DIGITS)
            if (order == "close" or (order == "equal" and thorough)
                    or relation_of(step.relation).holds(order) == "fails"):
                # too close to call at 50 digits, equal to 35, or a refutation to confirm:
                # look again at 250 digits, and exactly where the instance allows it
                first_look = left - right
                left, right = evaluate_on(lhs, instance, HIGH_DIGITS), evaluate_on(rhs, instance, HIGH_DIGITS)
                order = _order(left, right, HIGH_DIGITS)
                if order == "equal":
                    order, deep_checks, seen = _settle_equal(lhs, rhs, instance, step.relation,
                                                             deep_checks, finest)
                    left, right = seen or (left, right)
                elif (relation_of(step.relation).holds(order) == "fails"
                      and not _steady(first_look, left - right)):
                    order, left, right = _confirm_failure(lhs, rhs, instance, order, left, right)
        except NotComputable:
            outcome.undefined += 1
            continue
        except (Undefined, ZeroDivisionError) as why:
            # no real value here: the claim cannot hold in general, whatever the other instances say
            outcome.no_value += 1
            outcome.no_value_reason = outcome.no_value_reason or (str(why) or "division by zero")
            continue
        except (ValueError, OverflowError, TypeError):
            outcome.undefined += 1
            continue
        status = relation_of(step.relation).holds(order)
        problem = _written_problem(step, instance, risk) if status == "fails" and risk else ""
        if problem:
            # SymPy's evaluation gave a value (exp(log(X)) is X) that the step as
            # written does not have here: no counterexample
            outcome.no_value += 1
            outcome.no_value_reason = outcome.no_value_reason or problem
            continue
        if status == "holds":
            outcome.held += 1
        elif status == "close":
            outcome.inconclusive += 1
        else:
            outcome.refuted = True
            outcome.counterexample = _counterexample(instance, left, right, step)
            return outcome
    return outcome


#: The most digits an evaluation may use to tell apart sides that the step's own
#: constants (10^-5000) put closer than 4000 digits show.
MAX_DIGITS = 20000


def _digits_to_settle(step: Step) -> int:
    """The precision at which sides equal at 4000 digits are deemed equal: more when
    the step writes a constant of thousands of digits (p(X) * 10^-5000 = 0 differs in
    the 5000th), three times its digits, so that a gap it makes shows."""
    bits = max(largest_constant(step.lhs)[0], largest_constant(step.rhs)[0])
    return max(DEEP_DIGITS[-1], int(3 * bits * math.log10(2)) + 100)


def _settle_equal(lhs, rhs, instance, relation: str, deep_checks: int, finest: int = DEEP_DIGITS[-1]):
    """Decide two sides equal to 235 digits: exactly where possible, else at 4000 digits
    (``finest`` digits, when the step's constants need more; past :data:`MAX_DIGITS`
    the sides are too close to call).

    Returns the order, how many deep (4000-digit) looks remain, and the values
    that told the sides apart (or None): a near miss
    shows on any instance, so two of them are enough, and true identities do
    not pay for more.
    """
    exact = exactly_equal(lhs, rhs, instance)
    if exact is True:
        return "exactly equal", deep_checks, None
    if exact is None and deep_checks <= 0:
        return ("close" if relation_of(relation).strict else "equal"), deep_checks, None
    # a numerical derivative at 4000 digits is taken at 8000 and 12000: gradients stop at 1000
    gradient = lhs.has(Gradient) or rhs.has(Gradient)
    precisions = DEEP_DIGITS[:1] if gradient else DEEP_DIGITS
    if finest > DEEP_DIGITS[-1]:
        if gradient or finest > MAX_DIGITS:
            # the constants written need more digits than can be afforded: agreement
            # here says nothing about a gap of their size; an exact difference does
            return _exactly_apart(exact, relation, lhs, rhs, instance), deep_checks - 1, None
        precisions = precisions + (finest,)
    previous = None
    for digits in precisions:
        left, right = evaluate_on(lhs, instance, digits), evaluate_on(rhs, instance, digits)
        order = _order(left, right, digits)
        if order not in ("equal", "close"):
            return order, deep_checks - 1, (left, right)
        gap = left - right
        if previous is not None and gap and _steady(previous, gap):
            # equal only next to the sides' size, yet the same gap at 1000 and 4000
            # digits: rounding noise shrinks with the precision, this does not
            # (p(X)^(2^990) against 0)
            return ("less" if gap < 0 else "greater"), deep_checks - 1, (left, right)
        previous = gap
    if exact is False or relation_of(relation).strict:
        # different, or maybe, but too near to say how
        return _exactly_apart(exact, relation, lhs, rhs, instance), deep_checks - 1, None
    return "equal", deep_checks - 1, None


def _exactly_apart(exact, relation: str, lhs, rhs, instance) -> str:
    """"greater" for an equality whose sides provably differ (a nonzero rational, or
    logs of rationals that a coprime base tells apart: it fails whichever side is the
    larger), however small the gap; "close" otherwise (too near to say how)."""
    if exact is False and relation == "=" and exactly_apart(lhs, rhs, instance):
        return "greater"
    return "close"


def _steady(coarse, fine) -> bool:
    """True when a difference seen at two precisions is the same one: rounding noise
    (amplified by a large factor) shrinks as the precision grows, a real gap does not."""
    return abs(coarse - fine) <= abs(fine) / 1000


def _confirm_failure(lhs, rhs, instance, order: str, left, right):
    """A failure whose size changed between 50 and 250 digits stands only if it is real:
    not an exact equality, and steady from 250 to 1000 digits. Returns the order and
    the values to show."""
    if exactly_equal(lhs, rhs, instance) is True:
        return "exactly equal", left, right
    finer_left, finer_right = (evaluate_on(lhs, instance, DEEP_DIGITS[0]),
                               evaluate_on(rhs, instance, DEEP_DIGITS[0]))
    if (_order(finer_left, finer_right, DEEP_DIGITS[0]) != order
            or not _steady(left - right, finer_left - finer_right)):
        return "close", left, right
    return order, left, right


def _order(left, right, digits: int) -> str:
    """"equal", "less", "greater" or "close" (too near to call) at ``digits`` digits."""
    if not (mpmath.isfinite(left) and mpmath.isfinite(right)):
        raise Undefined("not a finite number")
    scale = max(mpmath.mpf(1), abs(left), abs(right))
    diff = (left - right) / scale
    if abs(diff) <= mpmath.mpf(10) ** -(digits - 15):
        return "equal"
    if abs(diff) <= mpmath.mpf(10) ** -(digits - 30):
        return "close"
    return "less" if diff < 0 else "greater"


def _counterexample(instance, left, right, step) -> dict:
    free = {s.name for s in step.lhs.free_symbols | step.rhs.free_symbols}
    out = instance.describe(free)
    difference = left - right   # at the precision the sides were found apart
    # shown rounded to 60 digits: printing a value held at thousands of digits would
    # convert integers longer than Python allows
    with mpmath.workdps(60):
        left, right, difference = +left, +right, +difference
        # enough digits to tell the sides apart, up to 48; past that the difference says it
        digits = 12
        while mpmath.nstr(left, digits) == mpmath.nstr(right, digits) and digits < 48:
            digits *= 2
        out["lhs"] = mpmath.nstr(left, digits)
        out["rhs"] = mpmath.nstr(right, digits)
        out["difference"] = mpmath.nstr(difference, 12)
    out["relation"] = step.relation
    return out
