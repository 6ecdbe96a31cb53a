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
from symelbo.core.relations import RELATIONS, compose, relation

@dataclass(frozen=True)
class Step:
    """One link ``lhs relation rhs [by rules]`` of a chain; ``line`` is the line of rhs."""

    lhs: Expr
    relation: str
    rhs: Expr
    by: tuple[str, ...] = ()
    line: int = 0
    column: int = 0


@dataclass(frozen=True)
class Chain:
    """A first expression followed by steps; its claim is ``first R last``."""

    first: Expr
    steps: tuple[Step, ...]
    line: int = 0

    @property
    def last(self) -> Expr:
        return self.steps[-1].rhs if self.steps else self.first

    @property
    def relation(self) -> str:
        return compose(step.relation for step in self.steps)

    @staticmethod
    def from_terms(first: Expr, links, first_line: int = 0) -> "Chain":
        """Build a chain from ``first`` and ``(relation, rhs, by)`` links."""
        steps, lhs = [], first
        for index, (relation, rhs, by) in enumerate(links, start=1):
            steps.append(Step(lhs, relation, rhs, tuple(by), first_line + index if first_line else 0))
            lhs = rhs
        return Chain(first, tuple(steps), first_line)


@dataclass(frozen=True)
class Derivation:
    """A titled sequence of chains with the headers of its file."""

    chains: tuple[Chain, ...]
    headers: dict = field(default_factory=dict)
    path: str | None = None

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
