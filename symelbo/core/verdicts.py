"""The five verdicts on a step, and how they order.

A chain's verdict is its weakest step's; a file's is its weakest chain's.
``proved`` and ``tested`` pass (exit status 0), the others do not.
"""

from __future__ import annotations

__all__ = ["VERDICTS", "VERDICT_ORDER", "PASSING", "weakest"]

#: Strongest first: the order in which summaries list them.
VERDICTS = ("proved", "tested", "misjustified", "refuted", "unknown")
#: Weakest first: a chain's verdict is the first of these among its steps.
VERDICT_ORDER = ("refuted", "unknown", "misjustified", "tested", "proved")
PASSING = frozenset({"proved", "tested"})


def weakest(verdicts) -> str:
    """The weakest verdict of a non-empty collection."""
    return min(verdicts, key=VERDICT_ORDER.index)
