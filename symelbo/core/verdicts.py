"""The five verdicts on a step: what each says, how it is shown, whether it passes.

A chain's verdict is its weakest step's; a file's is its weakest chain's.
``proved`` and ``tested`` pass (exit status 0); under ``--strict`` only
``proved`` does. Every module that shows or judges a verdict asks here.

    >>> VERDICT["tested"].passes(strict=True)
    False
    >>> weakest(["proved", "refuted", "tested"])
    'refuted'
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Verdict", "VERDICT", "VERDICTS", "VERDICT_ORDER", "PASSING", "STRICTLY_PASSING",
           "ASSERTS_TRUTH", "weakest", "passing"]


@dataclass(frozen=True)
class Verdict:
    """One verdict: its name, its mark in text reports, what it asserts."""

    name: str
    mark: str                 # in text reports; a failing verdict shouts
    passing: bool             # exit status 0 (the pytest plugin's item passes)
    passing_strict: bool      # ... under --strict / --symelbo-strict
    asserts_truth: bool       # the step is true (proved, or true but not by the named rules, or tested)
    glyph: str                # its sign in documents: "check", "bang", "cross" or "query"

    def passes(self, strict: bool = False) -> bool:
        return self.passing_strict if strict else self.passing


#: Strongest first: the order in which summaries list them.
VERDICT: dict[str, Verdict] = {v.name: v for v in (
    Verdict("proved", "proved", True, True, True, "check"),
    Verdict("tested", "tested", True, False, True, "check"),
    Verdict("misjustified", "MISJUSTIFIED", False, False, True, "bang"),
    Verdict("refuted", "REFUTED", False, False, False, "cross"),
    Verdict("unknown", "UNKNOWN", False, False, False, "query"),
)}
VERDICTS = tuple(VERDICT)
#: Weakest first: a chain's verdict is the first of these among its steps.
VERDICT_ORDER = ("refuted", "unknown", "misjustified", "tested", "proved")
PASSING = frozenset(name for name, v in VERDICT.items() if v.passing)
STRICTLY_PASSING = frozenset(name for name, v in VERDICT.items() if v.passing_strict)
ASSERTS_TRUTH = tuple(name for name, v in VERDICT.items() if v.asserts_truth)


def passing(strict: bool = False) -> frozenset:
    """The verdicts that pass, with or without ``--strict``."""
    return STRICTLY_PASSING if strict else PASSING


def weakest(verdicts) -> str:
    """The weakest verdict of a non-empty collection."""
    return min(verdicts, key=VERDICT_ORDER.index)
