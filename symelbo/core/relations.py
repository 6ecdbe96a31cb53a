"""The relations a step may state: direction, strictness, TeX symbol, truth on numbers, composition.

One :class:`Relation` per symbol (``=``, ``<=``, ``>=``, ``<``, ``>``, ``propto``), in
:data:`RELATIONS`; every module that needs to know what a relation means asks
it here.

    >>> relation(">=").then(relation("=")).symbol
    '>='
    >>> compose(["=", ">", ">="])
    '>'
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Relation", "RELATIONS", "relation", "compose", "MixedDirections"]


class MixedDirections(ValueError):
    """A chain mixes <= with >=: its claim would mean nothing."""


@dataclass(frozen=True)
class Relation:
    """``lhs R rhs``: ``direction`` +1 when lhs is the larger side, -1 the smaller, 0 equal."""

    symbol: str
    direction: int
    strict: bool
    tex: str
    #: ``propto``: lhs / rhs, both positive, does not depend on the step's variables
    proportional: bool = False

    def holds(self, order: str) -> str:
        """"holds", "fails" or "close" given how the sides compare: "less", "greater",
        "equal" (to the precision used), "exactly equal" or "close" (too near to call)."""
        if order == "close":
            return "close"
        if self.direction == 0:
            return "holds" if order in ("equal", "exactly equal") else "fails"
        if order == ("greater" if self.direction > 0 else "less"):
            return "holds"
        if order in ("equal", "exactly equal"):
            if not self.strict:
                return "holds"
            return "fails" if order == "exactly equal" else "close"
        return "fails"

    def then(self, other: "Relation") -> "Relation":
        """The relation of ``a R b S c`` between a and c (``=`` then ``>`` is ``>``)."""
        if self.direction and other.direction and self.direction != other.direction:
            raise MixedDirections("a chain cannot mix <= and >=")
        proportional = self.proportional or other.proportional
        direction = self.direction or other.direction
        if proportional and direction:
            raise MixedDirections("a chain cannot mix propto with an inequality")
        strict = self.strict or other.strict
        return next(r for r in RELATIONS.values()
                    if (r.direction, r.strict, r.proportional) == (direction, strict, proportional))


RELATIONS: dict[str, Relation] = {r.symbol: r for r in (
    Relation("=", 0, False, "="),
    Relation("<=", -1, False, r"\le"),
    Relation(">=", 1, False, r"\ge"),
    Relation("<", -1, True, "<"),
    Relation(">", 1, True, ">"),
    Relation("propto", 0, False, r"\propto", proportional=True),
)}


def relation(symbol: str) -> Relation:
    """The relation written ``symbol``; KeyError for anything else."""
    return RELATIONS[symbol]


def compose(symbols) -> str:
    """The symbol of a chain's claim from its steps' symbols (MixedDirections when they mix)."""
    result = RELATIONS["="]
    for symbol in symbols:
        result = result.then(RELATIONS[symbol])
    return result.symbol
