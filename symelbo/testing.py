"""Assertions for test suites: a derivation step that must hold, or must be refuted.

Map of this module:

- :func:`assert_step`               ``lhs R rhs`` holds (``proved`` or ``tested``;
  only ``proved`` with ``strict=True``); returns the :class:`StepResult`.
- :func:`assert_refuted`            ``lhs R rhs`` is false; returns the counterexample.
- :func:`assert_derivation_proved`  every step of a ``.calc`` file (or text, or
  :class:`Derivation`) is ``proved`` (``strict=False``: or ``tested``).
- :func:`assert_derivation_verdicts` the steps on the given lines have the given
  verdicts and every other step holds: for files that are wrong on purpose.
- :class:`DerivationError`          the ``AssertionError`` they raise; it carries
  the failing step results.
- :func:`counterexample_table`      a refuting instance as a small table.

Sides of a step are ``.calc`` notation strings or notation expressions
(:mod:`symelbo.core.notation`). Strings are read by the derivation-file parser, never
evaluated. ``context`` names densities that the step itself does not apply, so
that ``E_q`` knows the variables of ``q``::

    assert_step("KL(q(Z) || p(Z | X))", ">=", "0", by="gibbs_inequality")
    assert_step("E_q[log p(X)]", "=", "log p(X)", context="q(Z), p(X, Z)")
    cx = assert_refuted("log p(X)", "<=", "E_q[log(p(X, Z) / q(Z))]")
"""

from __future__ import annotations

import re

from collections.abc import Mapping
from pathlib import Path

import sympy as sp

from symelbo.core.checker import (CheckOptions, CheckResult, ChainResult, StepResult, check_derivation, check_step,
                      printed)
from symelbo.core.derivation import Derivation, Step
from symelbo.core.relations import RELATIONS
from symelbo.core.errors import InputError
from symelbo.io.parser import breaks_claim, parse_file, parse_text
from symelbo.core.verdicts import VERDICTS, passing
from symelbo.core.printing import calc_str
from symelbo.io.report import counterexample_table, justification
from symelbo.core.rules import RULES
from symelbo.core.hypotheses import NO_HYPOTHESES
from symelbo.core.notation import split_const
from symelbo.core.semantics import Universe

#: A header line of a context (``assume: ...``, ``define: ...``).
_HEADER_LINE = re.compile(r"^\s*(assume|define|title)\s*:")

__all__ = [
    "DerivationError", "assert_step", "assert_refuted", "assert_derivation_proved",
    "assert_derivation_verdicts", "counterexample_table",
]



class DerivationError(AssertionError):
    """A step or a derivation did not get the verdict a test asked for.

    ``results`` holds the offending :class:`StepResult` objects (``result`` is
    the first of them); ``check`` is the whole :class:`CheckResult` when a
    derivation was checked.
    """

    def __init__(self, message: str, results=(), check: CheckResult | None = None):
        super().__init__(message)
        self.results = tuple(results)
        self.check = check

    @property
    def result(self) -> StepResult | None:
        return self.results[0] if self.results else None


# ---------------------------------------------------------------------------
# assertions
# ---------------------------------------------------------------------------

def assert_step(lhs, relation: str, rhs, by=None, *, context="", strict: bool = False,
                budget: float | None = None) -> StepResult:
    """Assert that ``lhs relation rhs`` holds; return its :class:`StepResult`.

    It holds when it is ``proved``, or ``tested`` (true on every concrete
    instance tried, no proof found) unless ``strict``. With ``by``, the named
    rules must produce the step: a true step they do not produce is
    ``misjustified`` and fails.
    """
    __tracebackhide__ = True  # pytest shows the test's line, not this helper's
    result = _check_one(lhs, relation, rhs, by, context, budget)
    wanted = passing(strict)
    if result.verdict not in wanted:
        expected = "proved" if strict else "proved or tested"
        raise DerivationError(_step_message(result, f"the step is {result.verdict}; expected {expected}"),
                              [result])
    return result


def assert_refuted(lhs, relation: str, rhs, by=None, *, context="",
                   budget: float | None = None) -> dict:
    """Assert that ``lhs relation rhs`` is false; return the counterexample that shows it.

    The counterexample is the dictionary of the JSON report: ``support``,
    ``held``, ``parameters``, ``densities`` (tables), ``lhs``, ``rhs``, ``seed``.
    """
    __tracebackhide__ = True  # pytest shows the test's line, not this helper's
    result = _check_one(lhs, relation, rhs, by, context, budget)
    if result.verdict != "refuted":
        raise DerivationError(_step_message(result, f"the step is {result.verdict}; expected refuted"),
                              [result])
    return result.counterexample


def assert_derivation_proved(source, strict: bool = True, *, budget: float | None = None) -> CheckResult:
    """Assert that every step of a derivation is ``proved`` (or ``tested``, if not ``strict``).

    ``source`` is a path to a ``.calc`` file (``str`` or ``Path``), the text of
    one, or a :class:`Derivation`. Returns the :class:`CheckResult`.
    """
    __tracebackhide__ = True  # pytest shows the test's line, not this helper's
    derivation = _derivation(source)
    check = check_derivation(derivation, _options(budget))
    wanted = passing(strict)
    bad = [s for c in check.chains for s in c.steps if s.verdict not in wanted]
    if bad:
        expected = "proved" if strict else "proved or tested"
        name = _name(derivation)
        head = f"{name}: {len(bad)} of {_count(check)} steps not {expected}"
        blocks = [_step_message(s, f"{_where(derivation, s)}: {s.verdict}; expected {expected}",
                                indent="  ") for s in bad]
        raise DerivationError("\n\n".join([head] + blocks), bad, check)
    return check


def assert_derivation_verdicts(source, expected: Mapping[int, str], *, strict: bool = False,
                               budget: float | None = None) -> CheckResult:
    """Assert the verdicts of the steps on the lines in ``expected``; every other step must hold.

    ``expected`` maps a step's line (the line of its right-hand side) to a
    verdict: ``{6: "refuted", 10: "refuted"}``. Steps on other lines must be
    ``proved`` or ``tested`` (only ``proved`` with ``strict``).
    """
    __tracebackhide__ = True  # pytest shows the test's line, not this helper's
    unknown = sorted(v for v in expected.values() if v not in VERDICTS)
    if unknown:
        raise ValueError(f"unknown verdict {unknown[0]!r}; use one of {', '.join(VERDICTS)}")
    derivation = _derivation(source)
    check = check_derivation(derivation, _options(budget))
    wanted = passing(strict)
    steps = {s.step.line: s for c in check.chains for s in c.steps}
    missing = sorted(set(expected) - set(steps))
    problems, bad = [], []
    for line in missing:
        problems.append(f"  {_name(derivation)}:{line}: expected a {expected[line]} step, "
                        "but no step ends on this line")
    for line, result in steps.items():
        if line in expected:
            if result.verdict != expected[line]:
                bad.append(result)
                problems.append(_step_message(result, f"{_where(derivation, result)}: "
                                              f"{result.verdict}; expected {expected[line]}",
                                              indent="  "))
            elif expected[line] == "refuted" and not result.counterexample:
                bad.append(result)
                problems.append(_step_message(result, f"{_where(derivation, result)}: refuted, "
                                              "but without a counterexample", indent="  "))
        elif result.verdict not in wanted:
            bad.append(result)
            problems.append(_step_message(result, f"{_where(derivation, result)}: {result.verdict}; "
                                          f"expected {' or '.join(sorted(wanted, key=VERDICTS.index))}",
                                          indent="  "))
    if problems:
        head = f"{_name(derivation)}: {len(problems)} step(s) with an unexpected verdict"
        raise DerivationError("\n\n".join([head] + problems), bad, check)
    return check


# ---------------------------------------------------------------------------
# building the step
# ---------------------------------------------------------------------------

def _options(budget) -> CheckOptions:
    return CheckOptions() if budget is None else CheckOptions(budget=float(budget))


def _check_one(lhs, relation, rhs, by, context, budget) -> StepResult:
    if relation not in RELATIONS and not (relation.startswith("propto_{") and relation.endswith("}")):
        raise ValueError(f"relation must be one of {', '.join(RELATIONS)} (propto as propto_{{Z1}}), "
                         f"not {relation!r}")
    names = _rule_names(by)
    context_text = _context_text(context)
    hypotheses = NO_HYPOTHESES
    if isinstance(lhs, sp.Basic) and isinstance(rhs, sp.Basic) and relation in RELATIONS:
        step = Step(lhs, relation, rhs, names)
        if context_text:
            context_derivation = parse_text(context_text + "\n\n0 = 0", "<context>")
            extra, hypotheses = _expressions(context_derivation), context_derivation.hypotheses
        else:
            extra = []
    else:
        lhs_text, rhs_text = _side_text(lhs, "lhs"), _side_text(rhs, "rhs")
        claim = f"{lhs_text} {relation} {rhs_text}" + (" by " + ", ".join(names) if names else "")
        offset = context_text.count("\n") + 2 if context_text else 0
        text = context_text + "\n\n" + claim if context_text else claim
        try:
            derivation = parse_text(text, "<step>")
        except InputError as error:
            raise _in_claim(error, offset, claim) from None
        step = derivation.chains[-1].steps[0]
        if step.by != names:
            raise ValueError(f"rhs {rhs_text!r} names rules; pass them as by=...")
        extra, hypotheses = _expressions(derivation), derivation.hypotheses
    universe = Universe.of([split_const(step.lhs)[0], split_const(step.rhs)[0]] + extra, hypotheses)
    return check_step(step, _options(budget), universe)


def _rule_names(by) -> tuple[str, ...]:
    if by is None:
        return ()
    names = [n.strip() for n in by.split(",")] if isinstance(by, str) else [str(n) for n in by]
    names = [n for n in names if n]
    for name in names:
        if name not in RULES:
            raise ValueError(f"unknown rule {name!r} (`symelbo list` shows the rules)")
    return tuple(names)


def _side_text(side, role: str) -> str:
    if isinstance(side, str):
        # a line break, a comment or a `by` inside a side would change the claim
        if breaks_claim(side):
            raise ValueError(f"{role} {side!r} must be one expression on one line, without comments")
        return side
    if isinstance(side, sp.Basic):
        return calc_str(side)
    if isinstance(side, (int, float)) and not isinstance(side, bool):
        return str(side)
    raise TypeError(f"{role} must be a .calc string or a SymPy expression, not {type(side).__name__}")


def _context_text(context) -> str:
    """Context as ``.calc`` text: either chains, or densities such as ``"q(Z), p(X, Z)"``.

    A bare density list becomes one-line claims ``d = d`` so the parser learns
    each density's variables; they are never checked.
    """
    if context is None or context == "":
        return ""
    if isinstance(context, sp.Basic):
        context = [context]
    if not isinstance(context, str):
        pieces = [calc_str(c) if isinstance(c, sp.Basic) else str(c) for c in context]
        return "\n".join(f"{p} = {p}" for p in pieces)
    lines = [line.split("#")[0] for line in context.splitlines()]
    if any(_HEADER_LINE.match(line) for line in lines):
        return context   # headers (assume:, define:) and perhaps chains: the parser reads them
    try:
        parse_text(context, "<context>")
        return context
    except InputError:
        pass
    pieces = [p for line in context.splitlines() for p in _split_top_level(line.split("#")[0])]
    if not pieces:
        return ""
    text = "\n".join(f"{p} = {p}" for p in pieces)
    parse_text(text, "<context>")  # a bad density list is reported here
    return text


def _split_top_level(line: str) -> list[str]:
    """Split at commas outside brackets: ``q(Z), p(X, Z)`` -> ``q(Z)``, ``p(X, Z)``."""
    pieces, depth, start = [], 0, 0
    for index, char in enumerate(line):
        if char in "([{":
            depth += 1
        elif char in ")]}":
            depth -= 1
        elif char == "," and depth == 0:
            pieces.append(line[start:index])
            start = index + 1
    pieces.append(line[start:])
    return [p.strip() for p in pieces if p.strip()]


def _in_claim(error: InputError, offset: int, claim: str) -> InputError:
    """Relocate a parse error to the claim itself (context lines do not count)."""
    if error.line is not None and error.line > offset:
        return InputError(f"{error.message} in the step {claim!r}", "<step>",
                          error.line - offset, error.column)
    return InputError(error.message, "<context>", error.line, error.column)


def _expressions(derivation: Derivation) -> list:
    return [e for c in derivation.chains for e in [c.first] + [s.rhs for s in c.steps]]


def _derivation(source) -> Derivation:
    if isinstance(source, Derivation):
        return source
    if isinstance(source, Path):
        return parse_file(source)
    if isinstance(source, str):
        if "\n" not in source and (source.endswith(".calc") or Path(source).is_file()):
            return parse_file(source)
        return parse_text(source, "<text>")
    raise TypeError(f"expected a path, the text of a .calc file or a Derivation, "
                    f"not {type(source).__name__}")


def _name(derivation: Derivation) -> str:
    return derivation.path or "<text>"


def _where(derivation: Derivation, result: StepResult) -> str:
    return f"{_name(derivation)}:{result.step.line}" if result.step.line else _name(derivation)


def _count(check: CheckResult) -> int:
    return sum(len(c.steps) for c in check.chains)


# ---------------------------------------------------------------------------
# messages
# ---------------------------------------------------------------------------

def _step_message(result: StepResult, headline: str, indent: str = "") -> str:
    """A failed expectation: headline, the step, its verdict and why, the counterexample."""
    s = result.step
    lines = [headline, ""]
    by = justification(result)
    lines.append(f"      {printed(s.lhs)}")
    lines.append(f"  {s.relation:>3} {printed(s.rhs)}" + (f"    {by}" if by else ""))
    if result.message:
        lines += ["", f"why: {result.message}"]
    if result.counterexample:
        lines.append("")
        lines.extend(counterexample_table(result.counterexample).splitlines())
    return "\n".join((indent + line).rstrip() for line in lines)


def chain_failure_report(chain_result: ChainResult, failures, path: str, strict: bool = False,
                         strict_hint: str = "--symelbo-strict"):
    """The pytest plugin's report of a failed chain.

    Returns ``(lines, sections, (line, message))``: ``(marker, text)`` lines
    showing the chain with ``>`` on bad steps and ``E`` lines saying why;
    ``(title, text)`` counterexample sections; and the first bad step's line
    and one-line summary.
    """
    chain = chain_result.chain
    bad = {id(s) for s in failures}
    rows = [(str(chain.line or ""), "", printed(chain.first), "", "", None)]
    for s in chain_result.steps:
        rows.append((str(s.step.line or ""), s.step.relation, printed(s.step.rhs), s.verdict,
                     justification(s), s))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    lines = [("", f"chain at {path}:{chain.line}: {chain_result.claim}"), ("", "")]
    for number, relation, expr, verdict, by, s in rows:
        text = (f"{number:>{widths[0]}}  {relation:>{max(widths[1], 2)}} {expr:<{widths[2]}}"
                f"  {verdict:<{widths[3]}}  {by}").rstrip()
        marked = s is not None and id(s) in bad
        lines.append((">" if marked else "", text))
        if marked:
            lines.append(("E", _why(s, strict, strict_hint)))
    first = failures[0]
    summary = f"{first.verdict}: {printed(first.step.lhs)} {first.step.relation} {printed(first.step.rhs)}"
    lines += [("", ""), ("", f"{path}:{first.step.line}: {first.verdict}")]
    sections = [(f"counterexample to line {s.step.line}", counterexample_table(s.counterexample))
                for s in failures if s.counterexample]
    return lines, sections, (first.step.line, f"line {first.step.line}: {summary}")


def _why(result: StepResult, strict: bool, strict_hint: str) -> str:
    why = f"{result.verdict}: {result.message}" if result.message else result.verdict
    if result.verdict == "tested" and strict:
        why += f" ({strict_hint} requires a proof)"
    if result.verdict == "refuted" and result.counterexample:
        why += " (counterexample below)"
    return why
