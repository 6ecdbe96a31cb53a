"""The generator: the three built-in derivations, each step made by applying named rules.

Every step is produced from the previous expression by a *move*: a named
rule (or a short list of them) applied at the nodes it matches, in the
direction a textbook derivation reads. The result is plain data, a
:class:`~symelbo.core.derivation.Derivation`, which the checker verifies like any
hand-written file: the checker never trusts the generator.

Expressions are built unevaluated so that they print in the order of the
derivation (``E[log q] - E[log p(Z, X)] + E[log p(X)]``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import sympy as sp

from symelbo.core.derivation import Chain, Derivation
from symelbo.core.notation import ELBO, KL, Density, Expectation, Gradient, Marginal, density, parameter

__all__ = ["BUILTIN", "generate", "record_comment"]


# ---------------------------------------------------------------------------
# unevaluated building blocks
# ---------------------------------------------------------------------------

def _add(*terms):
    return sp.Add(*terms, evaluate=False)


def _neg(term):
    return sp.Mul(sp.S.NegativeOne, term, evaluate=False)


def _sub(a, b):
    return _add(a, _neg(b))


def _div(a, b):
    return sp.Mul(a, sp.Pow(b, -1, evaluate=False), evaluate=False)


def _log(x):
    return sp.log(x, evaluate=False)


def _rewrite(expr, match: Callable, move: Callable):
    """Apply ``move`` to every node where ``match`` holds, top-down, keeping written order."""
    if match(expr):
        return move(expr)
    if expr.is_Atom or isinstance(expr, (Density, sp.Tuple)):
        return expr
    args = [_rewrite(a, match, move) for a in expr.args]
    if list(args) == list(expr.args):
        return expr
    if expr.is_Add or expr.is_Mul or expr.is_Pow or isinstance(expr, sp.Function):
        return expr.func(*args, evaluate=False)
    return expr.func(*args)


def _quotient(expr):
    """(numerator, denominator) of an unevaluated a / b, else None."""
    if expr.is_Mul and len(expr.args) == 2 and expr.args[1].is_Pow and expr.args[1].exp == -1:
        return expr.args[0], expr.args[1].base
    return None


def _is_neg(expr):
    return expr.is_Mul and len(expr.args) == 2 and expr.args[0] == -1


# ---------------------------------------------------------------------------
# moves: (rule names, function) pairs
# ---------------------------------------------------------------------------

def unfold_kl_negative(expr):
    """definition_kl: KL(a || b) -> -E_a[log(b / a)]."""
    return _rewrite(expr, lambda e: isinstance(e, KL),
                    lambda e: _neg(Expectation(e.first, _log(_div(e.second, e.first)))))


def _expected_log_quotient(e):
    """(density, numerator, denominator) when e is E_a[log(n / d)], else None."""
    if isinstance(e, Expectation) and isinstance(e.body, sp.log):
        parts = _quotient(e.body.args[0])
        if parts:
            return (e.density,) + parts
    return None


def flip_negated_log_quotient(expr):
    """log_quotient: -E[log(b / a)] -> E[log(a / b)] (log(b/a) = -log(a/b))."""
    def move(e):
        dens, num, den = _expected_log_quotient(e.args[1])
        return Expectation(dens, _log(_div(den, num)))
    return _rewrite(expr, lambda e: _is_neg(e) and _expected_log_quotient(e.args[1]), move)


def negate_log_quotient(expr):
    """log_quotient: E[log(a / b)] -> -E[log(b / a)]."""
    def move(e):
        dens, num, den = _expected_log_quotient(e)
        return _neg(Expectation(dens, _log(_div(den, num))))
    return _rewrite(expr, _expected_log_quotient, move)


def split_expected_log_quotient(expr):
    """log_quotient, linearity_expectation: E[log(a / b)] -> E[log a] - E[log b]."""
    def move(e):
        dens, num, den = _expected_log_quotient(e)
        return _sub(Expectation(dens, _log(num)), Expectation(dens, _log(den)))
    return _flatten(_rewrite(expr, _expected_log_quotient, move))


def expand_conditional(expr):
    """bayes_rule, log_quotient, linearity_expectation:
    E[log p(Z | X)] -> E[log p(Z, X)] - E[log p(X)]."""
    def match(e):
        return (isinstance(e, Expectation) and isinstance(e.body, sp.log)
                and isinstance(e.body.args[0], Density) and e.body.args[0].given)

    def move(e):
        cond = e.body.args[0]
        joint = Density(cond.args[0], cond.variables + cond.given, (), cond.params, evaluate=False)
        marginal = cond.with_variables(cond.given)
        return _sub(Expectation(e.density, _log(joint)), Expectation(e.density, _log(marginal)))
    return _flatten(_rewrite(expr, match, move))


def pull_out_constant(expr):
    """expectation_constant: E_q[c] -> c when c does not depend on the variables of q."""
    def match(e):
        return isinstance(e, Expectation) and not (e.body.free_symbols & set(e.density.variables))
    return _rewrite(expr, match, lambda e: e.body)


def combine_expected_logs(expr):
    """log_quotient, linearity_expectation: E[log a] - E[log b] -> E[log(a / b)]."""
    terms = list(sp.Add.make_args(expr))
    pos = next((t for t in terms if isinstance(t, Expectation) and isinstance(t.body, sp.log)), None)
    if pos is None:
        return expr
    neg = next((t for t in terms if _is_neg(t) and isinstance(t.args[1], Expectation)
                and isinstance(t.args[1].body, sp.log) and t.args[1].density == pos.density), None)
    if neg is None:
        return expr
    merged = Expectation(pos.density, _log(_div(pos.body.args[0], neg.args[1].body.args[0])))
    rest = [t for t in terms if t is not pos and t is not neg]
    return _add(merged, *rest)


def _flatten(expr):
    """Flatten nested unevaluated sums: (a - b) + c -> a - b + c, in written order."""
    if expr.is_Add:
        terms = []
        for t in expr.args:
            t = _flatten(t)
            terms.extend(t.args if t.is_Add else [t])
        if len(terms) == 1:
            return terms[0]
        # a negated sum distributes its sign over the terms it brings
        return _add(*terms)
    if _is_neg(expr) and expr.args[1].is_Add:
        return _add(*[_neg_term(t) for t in _flatten(expr.args[1]).args])
    return expr


def _neg_term(t):
    return t.args[1] if _is_neg(t) else _neg(t)


def reintroduce_marginal(expr, joint: Density, over):
    """marginalization: p(X) -> sum_Z[p(X, Z)]."""
    marginal = joint.with_variables([v for v in joint.variables if v != over])
    return _rewrite(expr, lambda e: e == marginal, lambda e: Marginal(over, joint))


def multiply_by_density_ratio(expr, q: Density):
    """multiply_by_one: sum_Z[f] -> sum_Z[q(Z) * f / q(Z)]."""
    return _rewrite(expr, lambda e: isinstance(e, Marginal),
                    lambda e: Marginal(e.variable, sp.Mul(q, e.body, sp.Pow(q, -1, evaluate=False),
                                                          evaluate=False)))


def fold_expectation(expr, q: Density):
    """definition_expectation: sum_Z[q(Z) * f] -> E_q[f]."""
    def match(e):
        return isinstance(e, Marginal) and e.body.is_Mul and e.body.args[0] == q

    def move(e):
        rest = e.body.args[1:]
        body = rest[0] if len(rest) == 1 else sp.Mul(*rest, evaluate=False)
        return Expectation(q, body)
    return _rewrite(expr, match, move)


def jensen_step(expr):
    """jensen: log E_q[f] >= E_q[log f]."""
    return _rewrite(expr, lambda e: isinstance(e, sp.log) and isinstance(e.args[0], Expectation),
                    lambda e: Expectation(e.args[0].density, _log(e.args[0].body)))


def fold_elbo(expr, q: Density, joint: Density):
    """definition_elbo: E_q[log(p(X, Z) / q(Z))] -> ELBO(q, p)."""
    target = Expectation(q, _log(_div(joint, q)))
    return _rewrite(expr, lambda e: e == target, lambda e: ELBO(q, joint))


def elbo_as_evidence_minus_kl(expr, evidence: Density, posterior: Density):
    """definition_elbo, definition_kl, bayes_rule, log_quotient, linearity_expectation,
    expectation_constant: ELBO(q, p) -> log p(x) - KL(q || p(theta | x))."""
    return _rewrite(expr, lambda e: isinstance(e, ELBO),
                    lambda e: _sub(_log(evidence), KL(e.variational, posterior)))


def split_gradient(expr):
    """linearity_gradient: grad[a - b] -> grad[a] - grad[b]."""
    def move(e):
        terms = sp.Add.make_args(e.body)
        return _add(*[_neg(Gradient(e.parameter, t.args[1])) if _is_neg(t) else Gradient(e.parameter, t)
                      for t in terms])
    return _rewrite(expr, lambda e: isinstance(e, Gradient) and e.body.is_Add, move)


def drop_constant_gradient(expr):
    """gradient_constant: grad_phi[c] -> 0 when c does not depend on phi."""
    terms = [t for t in sp.Add.make_args(expr)
             if not (isinstance(t, Gradient) and t.parameter not in t.body.free_symbols)]
    return terms[0] if len(terms) == 1 else _add(*terms)


# ---------------------------------------------------------------------------
# the built-in derivations
# ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Builtin:
    name: str
    title: str
    summary: str
    build: Callable[[], Derivation]


def _chain(first, moves):
    """Run moves from ``first``: each is (relation, rule names, function of the previous expr)."""
    links, current = [], first
    for relation, names, move in moves:
        current = move(current)
        links.append((relation, current, names))
    return Chain.from_terms(first, links)


def _kl_shuffle() -> Derivation:
    Z, X = "Z", "X"
    q = density("q", Z)
    posterior = density("p", Z, given=[X])
    joint_xz = density("p", X, Z)
    evidence = density("p", X)
    first = _chain(KL(q, posterior), [
        ("=", ("definition_kl",), unfold_kl_negative),
        ("=", ("log_quotient",), flip_negated_log_quotient),
        ("=", ("log_quotient", "linearity_expectation"), split_expected_log_quotient),
        ("=", ("bayes_rule", "log_quotient", "linearity_expectation"), expand_conditional),
        ("=", ("expectation_constant", "log_quotient", "linearity_expectation"),
         lambda e: combine_expected_logs(pull_out_constant(e))),
        ("=", ("log_quotient",), negate_log_quotient),
    ])
    elbo_form = Expectation(q, _log(_div(joint_xz, q)))
    rearranged = _chain(_log(evidence), [
        ("=", ("definition_kl", "bayes_rule", "log_quotient", "linearity_expectation",
               "expectation_constant"),
         lambda e: _add(elbo_form, KL(q, posterior))),
        ("=", ("definition_elbo",), lambda e: fold_elbo(e, q, joint_xz)),
        (">=", ("gibbs_inequality",), lambda e: e.args[0]),
    ])
    return Derivation((first, rearranged), {"title": "The ELBO by rearranging the KL divergence"})


def _jensen() -> Derivation:
    q = density("q", "Z")
    joint = density("p", "X", "Z")
    evidence = density("p", "X")
    chain = _chain(_log(evidence), [
        ("=", ("marginalization",), lambda e: reintroduce_marginal(e, joint, q.variables[0])),
        ("=", ("multiply_by_one",), lambda e: multiply_by_density_ratio(e, q)),
        ("=", ("definition_expectation",), lambda e: fold_expectation(e, q)),
        (">=", ("jensen",), jensen_step),
        ("=", ("definition_elbo",), lambda e: fold_elbo(e, q, joint)),
    ])
    return Derivation((chain,), {"title": "The ELBO by Jensen's inequality"})


def _gradient() -> Derivation:
    phi = parameter("phi")
    q = density("q", "theta", params=[phi])
    joint = density("p", "x", "theta")
    posterior = density("p", "theta", given=["x"])
    evidence = density("p", "x")
    chain = _chain(Gradient(phi, ELBO(q, joint)), [
        ("=", ("definition_elbo", "definition_kl", "bayes_rule", "log_quotient",
               "linearity_expectation", "expectation_constant"),
         lambda e: elbo_as_evidence_minus_kl(e, evidence, posterior)),
        ("=", ("linearity_gradient",), split_gradient),
        ("=", ("gradient_constant",), drop_constant_gradient),
    ])
    return Derivation((chain,), {"title": "The gradients of the ELBO and of the KL divergence are opposite"})


BUILTIN: dict[str, Builtin] = {
    b.name: b for b in (
        Builtin("kl-shuffle", "The ELBO by rearranging the KL divergence",
                "log p(X) = ELBO + KL(q || p(Z|X)) >= ELBO", _kl_shuffle),
        Builtin("jensen", "The ELBO by Jensen's inequality",
                "log p(X) >= E_q[log p(X, Z)/q(Z)] because log is concave", _jensen),
        Builtin("gradient", "The gradients of the ELBO and of the KL divergence are opposite",
                "grad_phi ELBO = -grad_phi KL(q_phi || p(theta|x))", _gradient),
    )
}



def generate(name: str) -> Derivation:
    """The built-in derivation ``name``, every step produced by its rules.

    Its chains and steps carry the line numbers of the recorded file
    ``derivations/NAME.calc``, so a report can point into that file.
    """
    return _numbered(BUILTIN[name].build(), len(record_comment(name).splitlines()))


def record_comment(name: str) -> str:
    """The comment that opens the recorded file ``derivations/NAME.calc``."""
    return f"Generated by `symelbo derive {name}`; a test keeps this file equal to the generator's output."


def _numbered(derivation: Derivation, comment_lines: int) -> Derivation:
    """Number the lines as ``calc_text`` lays the file out: comments, headers, then for each
    chain a blank line, its first expression and one line a step."""
    line = comment_lines + len(derivation.headers) + len(derivation.hypotheses.texts())
    chains = []
    for chain in derivation.chains:
        line += 2  # the blank line, then the first expression
        chains.append(Chain.from_terms(chain.first, [(s.relation, s.rhs, s.by, s.constant_in)
                                                     for s in chain.steps], line))
        line += len(chain.steps)
    return Derivation(tuple(chains), derivation.headers, derivation.path, derivation.hypotheses)
