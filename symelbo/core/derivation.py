"""Derivations as data: a chain ``e0 R1 e1 R2 e2 ...`` like a Lean ``calc`` block.

A :class:`Step` is one link ``lhs R rhs`` with its optional justification; a
:class:`Chain` is a first expression and its steps; a :class:`Derivation` is a
titled list of chains, read from a ``.calc`` file or built by the generator.
The checker treats both the same way: it never trusts where a chain came from.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sympy import Expr

from symelbo.core.errors import InputError
from symelbo.core.hypotheses import NO_HYPOTHESES, Hypotheses
from symelbo.core.relations import compose, relation

@dataclass(frozen=True)
class Step:
    """One link ``lhs relation rhs [by rules]`` of a chain; ``line`` is the line of rhs.

    ``constant_in``: for ``=``, the names (variables or densities) the step holds up
    to a term constant in (``+ const_{Z1}``); for ``propto``, the variables the ratio
    of the sides does not depend on. Empty for an exact claim.
    """

    lhs: Expr
    relation: str
    rhs: Expr
    by: tuple[str, ...] = ()
    line: int = 0
    column: int = 0
    constant_in: tuple[str, ...] = ()

    @property
    def relation_text(self) -> str:
        """The relation as the ``.calc`` file writes it (``propto_{Z1}``)."""
        if self.relation == "propto":
            return "propto_{" + ", ".join(self.constant_in) + "}"
        return self.relation


@dataclass(frozen=True)
class Chain:
    """A first expression followed by steps; its claim is ``first R last``."""

    first: Expr
    steps: tuple[Step, ...]
    line: int = 0
    #: a sentence a document sets above the chain (what it shows, where a textbook has it)
    note: str = ""

    @property
    def last(self) -> Expr:
        return self.steps[-1].rhs if self.steps else self.first

    @property
    def relation(self) -> str:
        return compose(step.relation for step in self.steps)

    @property
    def relation_text(self) -> str:
        """The claim's relation as a ``.calc`` file writes it (``propto_{Z1}``)."""
        relation = self.relation
        if relation == "propto":
            over = next(s.constant_in for s in self.steps if s.relation == "propto")
            return "propto_{" + ", ".join(over) + "}"
        return relation

    @staticmethod
    def from_terms(first: Expr, links, first_line: int = 0, note: str = "") -> "Chain":
        """Build a chain from ``first`` and ``(relation, rhs, by)`` links (a fourth item:
        the step's ``constant_in``)."""
        steps, lhs = [], first
        for index, (relation, rhs, by, *constant_in) in enumerate(links, start=1):
            steps.append(Step(lhs, relation, rhs, tuple(by), first_line + index if first_line else 0,
                              0, tuple(constant_in[0]) if constant_in else ()))
            lhs = rhs
        return Chain(first, tuple(steps), first_line, note)


@dataclass(frozen=True)
class Derivation:
    """A titled sequence of chains with the headers of its file."""

    chains: tuple[Chain, ...]
    headers: dict = field(default_factory=dict)
    path: str | None = None
    #: the file's ``assume:`` and ``define:`` headers (symelbo.core.hypotheses.Hypotheses)
    hypotheses: Hypotheses = NO_HYPOTHESES

    @property
    def title(self) -> str:
        return self.headers.get("title", "")

    def __repr__(self) -> str:  # the dataclass repr prints every expression tree in full
        steps = sum(len(c.steps) for c in self.chains)
        return f"<Derivation {self.title or self.path or ''!r}: {len(self.chains)} chain(s), {steps} step(s)>"

    def __str__(self) -> str:
        """The derivation as a ``.calc`` file."""
        from symelbo.core.printing import calc_text  # printing is heavier; only str needs it
        return calc_text(self).rstrip("\n")


def check_chain_relations(relations_with_places, path=None) -> None:
    """Raise InputError at the first relation that mixes <= with >= in one chain."""
    claim = relation("=")
    for symbol, line, column in relations_with_places:
        if claim.direction and relation(symbol).direction not in (0, claim.direction):
            raise InputError("a chain cannot mix <= and >= (its claim would mean nothing)",
                             path, line, column)
        claim = claim.then(relation(symbol))
