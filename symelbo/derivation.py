"""Derivations as data: a chain ``e0 R1 e1 R2 e2 ...`` like a Lean ``calc`` block.

A :class:`Step` is one link ``lhs R rhs`` with its optional justification; a
:class:`Chain` is a first expression and its steps; a :class:`Derivation` is a
titled list of chains, read from a ``.calc`` file or built by the generator.
The checker treats both the same way: it never trusts where a chain came from.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sympy import Expr

from .errors import InputError

#: The relations a step may state, and the direction each one points.
RELATIONS = ("=", "<=", ">=", "<", ">")
_DIRECTION = {"=": 0, "<=": -1, "<": -1, ">=": 1, ">": 1}


def relation_direction(relation: str) -> int:
    """+1 for >= and >, -1 for <= and <, 0 for =."""
    return _DIRECTION[relation]


def is_strict(relation: str) -> bool:
    """True for < and >, which an equality refutes."""
    return relation in ("<", ">")


def compose_relations(relations) -> str:
    """The relation of a chain's claim ``first R last`` from the relations of its steps.

    ``=`` with ``>=`` gives ``>=``; a strict step makes the claim strict;
    mixing the two directions is meaningless and raises ValueError.
    """
    direction, strict = 0, False
    for rel in relations:
        d = relation_direction(rel)
        if d and direction and d != direction:
            raise ValueError("a chain cannot mix <= and >=")
        direction = direction or d
        strict = strict or is_strict(rel)
    if direction == 0:
        return "="
    base = ">" if direction > 0 else "<"
    return base if strict else base + "="


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
        return compose_relations(step.relation for step in self.steps)

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


def check_chain_relations(relations_with_places, path=None) -> None:
    """Raise InputError at the first relation that mixes <= with >= in one chain."""
    direction = 0
    for relation, line, column in relations_with_places:
        d = relation_direction(relation)
        if d and direction and d != direction:
            raise InputError("a chain cannot mix <= and >= (its claim would mean nothing)",
                             path, line, column)
        direction = direction or d
