"""The generator: the four built-in derivations, each step made by applying named rules.

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
from symelbo.core.hypotheses import Definition, Factorisation, Hypotheses
from symelbo.core.notation import (ELBO, KL, Const, Defined, Density, Entropy, Expectation, Gradient, Marginal,
                                   density, parameter, split_const, variable)

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


def _chain(first, moves, constant_in=(), note=""):
    """Run moves from ``first``: each is (relation, rule names, function of the previous expr).

    ``constant_in``: from the first step whose side ends in ``const`` (or that is a
    ``propto`` step), what the chain holds up to."""
    links, current, reading = [], first, ()
    for relation, names, move in moves:
        current = move(current)
        if relation == "propto" or split_const(current)[1]:
            reading = tuple(constant_in)
        links.append((relation, current, names, reading if relation in ("=", "propto") else ()))
    return Chain.from_terms(first, links, note=note)


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


# ---------------------------------------------------------------------------
# the mean-field factor (Bishop PRML 10.6-10.9; Blei et al. 2017, eqs. 17-18)
# ---------------------------------------------------------------------------

def split_elbo_entropy(expr):
    """definition_elbo, definition_entropy, log_quotient, linearity_expectation:
    ELBO(q, p) -> E_q[log p] + H[q]."""
    return _rewrite(expr, lambda e: isinstance(e, ELBO),
                    lambda e: _add(Expectation(e.variational, _log(e.joint)), Entropy(e.variational)))


def factorise(expr, fact):
    """assumption (with definition_entropy, log_product, linearity_expectation,
    expectation_constant): under q = q1 q2, E_q[f] -> E_{q1}[E_{q2}[f]] and
    H[q] -> H[q1] + H[q2]."""
    left, factors = fact.left, fact.factors

    def move(e):
        if isinstance(e, Entropy):
            return _add(*[Entropy(f) for f in factors])
        body = e.body
        for f in reversed(factors):
            body = Expectation(f, body)
        return body
    return _flatten(_rewrite(expr, lambda e: isinstance(e, (Entropy, Expectation)) and e.density == left,
                             move))


def fold_function(expr, definition, held):
    """definition, log_power: E_{q2}[log p] -> log ptilde(X, Z1), the body of a define:
    header read backwards; terms in which ``held`` does not occur become ``const_{held}``."""
    inner = definition.body.args[0]          # exp(E_{q2}[log p]) -> E_{q2}[log p]
    applied = _log(Defined(definition.name, definition.variables, definition.body))
    folded = _rewrite(expr, lambda e: e == inner, lambda e: applied)
    kept = [t for t in sp.Add.make_args(folded) if t.has(held) or t.has(applied)]
    return _add(*kept, Const([held.name if isinstance(held, sp.Symbol) else held]))


def kl_to_optimum(expr, variational, optimum, held):
    """definition_kl, definition, log_quotient: E_{q1}[log ptilde] + H[q1] ->
    -KL(q1 || qstar) + const (the normaliser of qstar does not depend on q1)."""
    return _add(_neg(KL(variational, optimum)), Const([held]))


def unfold_optimum(expr, definition, variable_name):
    """definition, log_quotient, log_power: log qstar(Z1) -> E_{q2}[log p] + const_{Z1}
    (the log of qstar's normaliser does not depend on Z1)."""
    return _add(definition.body.args[0], Const([variable_name]))


def conditional_form(expr, joint, conditional):
    """bayes_rule, log_quotient, linearity_expectation: E_{q2}[log p(X, Z1, Z2)] ->
    E_{q2}[log p(Z1 | Z2, X)] + const_{Z1} (E_{q2}[log p(Z2, X)] does not depend on Z1)."""
    return _rewrite(expr, lambda e: e == _log(joint), lambda e: _log(conditional))


def optimum_bound(expr, fact, definition, optimum):
    """definition_elbo, definition_kl, definition_entropy, assumption, definition, log_quotient,
    linearity_expectation, expectation_constant: the ELBO as its largest value over q1
    minus the KL from q1 to the optimum."""
    q1, q2 = fact.factors
    ptilde = Defined(definition.name, definition.variables, definition.body)
    return _add(_log(Marginal(q1.variables[0], ptilde)), Entropy(q2), _neg(KL(q1, optimum)))


def _mean_field() -> Derivation:
    Z1 = variable("Z1")
    q, q1, q2 = density("q", "Z1", "Z2"), density("q1", "Z1"), density("q2", "Z2")
    joint = density("p", "X", "Z1", "Z2")
    fact = Factorisation(q, (q1, q2), "q(Z1, Z2) = q1(Z1) * q2(Z2)", 1)
    body = sp.exp(Expectation(q2, _log(joint)), evaluate=False)
    ptilde = Definition(Defined("ptilde", (variable("X"), Z1), body), body, False,
                        "ptilde(X, Z1) = exp(E_{q2(Z2)}[log p(X, Z1, Z2)])", 2)
    qstar = density("qstar", "Z1")
    optimum = Definition(qstar, body, True, "qstar(Z1) propto_{Z1} exp(E_{q2(Z2)}[log p(X, Z1, Z2)])", 3)
    hypotheses = Hypotheses((fact,), (ptilde, optimum))
    entropy = _chain(Entropy(q), [
        ("=", ("definition_entropy", "assumption", "log_product", "linearity_expectation",
               "expectation_constant"), lambda e: factorise(e, fact)),
    ], note="Under the mean-field assumption q(Z1, Z2) = q1(Z1) q2(Z2), the entropy of q is the "
            "sum of the entropies of its factors.")
    elbo = _chain(ELBO(q, joint), [
        ("=", ("definition_elbo", "definition_entropy", "log_quotient", "linearity_expectation"),
         split_elbo_entropy),
        ("=", ("assumption", "definition_entropy", "log_product", "linearity_expectation",
               "expectation_constant"), lambda e: factorise(e, fact)),
        ("=", ("definition", "log_power"), lambda e: fold_function(e, ptilde, q1.args[0])),
        ("=", ("definition_kl", "definition_entropy", "definition", "log_quotient", "log_power",
               "linearity_expectation", "expectation_constant"),
         lambda e: kl_to_optimum(e, q1, qstar, "q1")),
    ], constant_in=("q1",),
        note="With q2(Z2) held fixed, the ELBO as a function of the factor q1(Z1) is the negative "
             "KL divergence from q1(Z1) to qstar(Z1), the normalised exponential of the expected log "
             "joint, plus a term that does not depend on q1 (PRML 10.6).")
    factor = _chain(_log(qstar), [
        ("=", ("definition", "log_quotient", "log_power"), lambda e: unfold_optimum(e, optimum, "Z1")),
    ], constant_in=("Z1",),
        note="The KL divergence is least, zero, at q1(Z1) = qstar(Z1): the log of the optimal "
             "factor is the expectation of the log joint over the other factor, up to a constant "
             "(PRML 10.9).")
    proportional = _chain(qstar, [
        ("propto", ("definition", "log_quotient", "log_power"), lambda e: body),
    ], constant_in=("Z1",),
        note="Exponentiated: the optimal factor is proportional to the exponentiated expected log "
             "joint (Blei et al. 2017, eq. 18).")
    conditional = _chain(_log(qstar), [
        ("=", ("definition", "bayes_rule", "log_quotient", "log_power", "linearity_expectation"),
         lambda e: conditional_form(unfold_optimum(e, optimum, "Z1"), joint,
                                    density("p", "Z1", given=["Z2", "X"]))),
    ], constant_in=("Z1",),
        note="The same with the complete conditional p(Z1 | X, Z2) in place of the joint: the two "
             "differ by the log of p(X, Z2), which does not depend on Z1 (Blei et al. 2017, eq. 17).")
    bound = _chain(ELBO(q, joint), [
        ("=", ("definition_elbo", "definition_kl", "definition_entropy", "assumption", "definition",
               "log_quotient", "linearity_expectation", "expectation_constant"),
         lambda e: optimum_bound(e, fact, ptilde, qstar)),
        ("<=", ("gibbs_inequality",), lambda e: _add(*[t for t in e.args if not t.has(KL)])),
    ], note="Since a KL divergence is never negative, the ELBO over q1(Z1) is at most this bound, "
            "and reaches it exactly at q1(Z1) = qstar(Z1).")
    return Derivation((entropy, elbo, factor, proportional, conditional, bound),
                      {"title": "The optimal mean-field factor"}, hypotheses=hypotheses)


BUILTIN: dict[str, Builtin] = {
    b.name: b for b in (
        Builtin("kl-shuffle", "The ELBO by rearranging the KL divergence",
                "log p(X) = ELBO + KL(q || p(Z|X)) >= ELBO", _kl_shuffle),
        Builtin("jensen", "The ELBO by Jensen's inequality",
                "log p(X) >= E_q[log p(X, Z)/q(Z)] because log is concave", _jensen),
        Builtin("gradient", "The gradients of the ELBO and of the KL divergence are opposite",
                "grad_phi ELBO = -grad_phi KL(q_phi || p(theta|x))", _gradient),
        Builtin("mean-field", "The optimal mean-field factor",
                "q1*(Z1) propto exp(E_{q2}[log p(X, Z1, Z2)]) maximises the ELBO over q1", _mean_field),
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
                                                     for s in chain.steps], line, chain.note))
        line += len(chain.steps)
    return Derivation(tuple(chains), derivation.headers, derivation.path, derivation.hypotheses)
