"""Each rule, one table: (before, after) pairs it proves, and pairs it must not."""

import pytest

from symelbo.core.normalize import equal_by, one_rewrite
from symelbo.io.parser import parse_text
from symelbo.core.rules import RULES

# A context fixing every density's variables, so E_q means E over q(Z).
CONTEXT = "q(Z) = q(Z)\np(X, Z) = p(X, Z)\nq_phi(Z) = q_phi(Z)"


def parse_pair(before: str, after: str):
    step = parse_text(f"{CONTEXT}\n\n{before} = {after}").chains[-1].steps[0]
    return step.lhs, step.rhs


PRODUCES = [
    ("definition_kl", "KL(q(Z) || p(Z | X))", "E_q[log(q(Z) / p(Z | X))]"),
    ("definition_kl", "KL(q(Z) || p(Z | X))", "-E_q[log(p(Z | X) / q(Z))]"),
    ("definition_expectation", "E_q[log p(X, Z)]", "sum_Z[q(Z) * log p(X, Z)]"),
    ("definition_entropy", "H[q(Z)]", "-E_q[log q(Z)]"),
    ("definition_entropy", "H[q(Z)]", "E_q[log(1 / q(Z))]"),
    ("definition_elbo", "ELBO(q(Z), p(X, Z))", "E_q[log(p(X, Z) / q(Z))]"),
    ("log_product", "log(p(X) * q(Z))", "log p(X) + log q(Z)"),
    ("log_quotient", "log(p(X, Z) / q(Z))", "log p(X, Z) - log q(Z)"),
    ("log_quotient", "-log(p(X) / q(Z))", "log(q(Z) / p(X))"),
    ("log_power", "log(p(X)^3)", "3 * log p(X)"),
    ("linearity_expectation", "E_q[log q(Z) - log p(X, Z)]", "E_q[log q(Z)] - E_q[log p(X, Z)]"),
    ("linearity_expectation", "E_q[2 * log p(X) * log q(Z)]", "2 * log p(X) * E_q[log q(Z)]"),
    ("expectation_constant", "E_q[log p(X)]", "log p(X)"),
    ("bayes_rule", "p(Z | X)", "p(X | Z) * p(Z) / p(X)"),
    ("bayes_rule", "log p(Z | X)", "log(p(X, Z) / p(X))"),
    ("product_rule", "p(Z | X) * p(X)", "p(X, Z)"),
    ("marginalization", "sum_Z[p(X, Z)]", "p(X)"),
    ("marginalization", "sum_Z[p(Z | X)]", "1"),
    ("multiply_by_one", "sum_Z[p(X, Z)]", "sum_Z[q(Z) * p(X, Z) / q(Z)]"),
    ("linearity_gradient", "grad_phi[log p(X) - E_{q_phi}[log q_phi(Z)]]",
     "grad_phi[log p(X)] - grad_phi[E_{q_phi}[log q_phi(Z)]]"),
    ("gradient_constant", "grad_phi[log p(X)]", "0"),
    ("differentiation", "grad_phi[log q_phi(Z)]", "grad_phi[q_phi(Z)] / q_phi(Z)"),
]


@pytest.mark.parametrize("name, before, after", PRODUCES)
def test_rule_produces_step(name, before, after):
    lhs, rhs = parse_pair(before, after)
    assert equal_by(lhs, rhs, {name}) is not None


NEEDED = [(n, b, a) for n, b, a in PRODUCES if n != "multiply_by_one"]


@pytest.mark.parametrize("name, before, after", NEEDED)
def test_step_needs_the_rule(name, before, after):
    """Without the rule (algebra alone) the step does not follow: the table is not vacuous."""
    lhs, rhs = parse_pair(before, after)
    assert equal_by(lhs, rhs, set()) is None


SIDE_CONDITIONS = [
    # logs split only when every factor is known positive: a and b are real parameters
    ("log_quotient", "log(a / b)", "log a - log b".replace("log a", "log(a)").replace("log b", "log(b)")),
    ("log_product", "log(a * b)", "log(a) + log(b)"),
    ("log_power", "log(a^2)", "2 * log(a)"),
    # E_q[c] = c only when c does not depend on Z
    ("expectation_constant", "E_q[log q(Z)]", "log q(Z)"),
    # the gradient of a phi-family is not zero
    ("gradient_constant", "grad_phi[log q_phi(Z)]", "0"),
    # marginalizing over a conditioning variable does not give one
    ("marginalization", "sum_X[p(Z | X)]", "1"),
    # pulling a factor that depends on Z out of E_q is not linearity
    ("linearity_expectation", "E_q[log q(Z) * log p(X, Z)]", "log q(Z) * E_q[log p(X, Z)]"),
]


@pytest.mark.parametrize("name, before, after", SIDE_CONDITIONS)
def test_rule_respects_side_conditions(name, before, after):
    lhs, rhs = parse_pair(before, after)
    assert equal_by(lhs, rhs, {name}) is None


def test_every_rule_has_a_law_and_conditions():
    for rule in RULES.values():
        assert rule.name and rule.law and rule.conditions
        assert rule.relation in ("=", ">=")
        assert rule.is_inequality == (rule.weaken is not None)


def test_design_vocabulary_is_registered():
    design_names = """definition_kl definition_expectation definition_entropy definition_elbo
        log_product log_quotient linearity_expectation expectation_constant bayes_rule
        product_rule marginalization multiply_by_one jensen gibbs_inequality
        linearity_gradient gradient_constant algebra""".split()
    assert set(design_names) <= set(RULES)


def _greedy_reference(lhs, rhs):
    """The plain greedy minimisation: every trial normalizes both sides from scratch."""
    from symelbo.core.normalize import CANONICAL_RULES, equal_by
    current = equal_by(lhs, rhs, CANONICAL_RULES)
    if current is None:
        return None
    for name in sorted(current, key=list(RULES).index, reverse=True):
        if equal_by(lhs, rhs, current - {name}) is not None:
            current = current - {name}
    return current


@pytest.mark.parametrize("lhs, rhs", [
    ("log p(X)", "ELBO(q(Z), p(X, Z)) + KL(q(Z) || p(Z | X))"),
    ("KL(q(Z) || p(Z | X))", "log p(X) - ELBO(q(Z), p(X, Z))"),
    ("E_q[log(p(X, Z) / q(Z))]", "E_q[log p(X, Z)] - E_q[log q(Z)]"),
    ("log p(Z | X)", "log p(X, Z) - log p(X)"),
    ("grad_phi[ELBO(q_phi(Z), p(X, Z))]", "-grad_phi[KL(q_phi(Z) || p(Z | X))]"),
    ("H[q(Z)]", "-E_q[log q(Z)]"),
])
def test_minimal_rules_reusing_normal_forms_matches_plain_greedy(lhs, rhs):
    from symelbo.core.normalize import minimal_rules
    from symelbo.io.parser import parse_step
    step = parse_step(lhs, "=", rhs)
    assert minimal_rules(step.lhs, step.rhs) == _greedy_reference(step.lhs, step.rhs)


STATED = [
    ("definition_elbo", "E_q[log(p(X, Z) / q(Z))] + log p(X)", "ELBO(q(Z), p(X, Z)) + log p(X)"),
    ("definition_kl", "KL(q(Z) || p(Z | X))", "E_q[log(q(Z) / p(Z | X))]"),
    ("definition_kl", "-E_q[log(p(Z | X) / q(Z))]", "KL(q(Z) || p(Z | X))"),
]


@pytest.mark.parametrize("name, before, after", STATED)
def test_a_definition_applied_as_stated_is_one_rewrite(name, before, after):
    """The law in the form its statement gives is found as a single application, either way
    round, and agrees with the normal forms; no other rule's single rewrite gives it."""
    lhs, rhs = parse_pair(before, after)
    assert one_rewrite(lhs, rhs, {name}) == {name}
    assert one_rewrite(rhs, lhs, {name}) == {name}
    assert equal_by(lhs, rhs, {name}) is not None
    others = frozenset(RULES) - {name} - {n for n, r in RULES.items() if r.is_inequality}
    assert one_rewrite(lhs, rhs, others) is None


@pytest.mark.parametrize("name, before, after", PRODUCES)
def test_one_rewrite_never_claims_more_than_the_normal_forms(name, before, after):
    lhs, rhs = parse_pair(before, after)
    found = one_rewrite(lhs, rhs, {name})
    if found is not None:
        assert equal_by(lhs, rhs, found) is not None


@pytest.mark.parametrize("before, after, names, found", [
    # one application on each side, meeting once the sign is out of E
    ("-E_q[log(p(X, Z) / q(Z))]", "E_q[log(q(Z) / p(X, Z))]", {"log_quotient"}, {"log_quotient"}),
    # one application, then the number taken out of E
    ("E_q[log q(Z) - log p(X, Z)]", "E_q[log q(Z)] - E_q[log p(X, Z)]",
     {"linearity_expectation"}, {"linearity_expectation"}),
    # false: the signs do not meet
    ("E_q[log(p(X, Z) / q(Z))]", "E_q[log(q(Z) / p(X, Z))]", {"log_quotient"}, None),
    # two applications on one side are not one
    ("log(p(X) / q(Z)) + log(p(X, Z) / q(Z))", "log p(X) - 2 * log q(Z) + log p(X, Z)",
     {"log_quotient"}, None),
])
def test_one_rewrite_on_each_side(before, after, names, found):
    lhs, rhs = parse_pair(before, after)
    assert one_rewrite(lhs, rhs, names) == (None if found is None else frozenset(found))
