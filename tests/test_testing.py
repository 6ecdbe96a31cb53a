"""symelbo.testing: assertion helpers for derivation steps in Python test suites."""

from __future__ import annotations

import doctest

import pytest
import sympy as sp

import symelbo.testing
from symelbo.core.errors import InputError
from symelbo.core.notation import KL, Expectation, density
from symelbo.io.parser import parse_text
from symelbo.testing import (DerivationError, assert_derivation_proved, assert_derivation_verdicts,
                             assert_refuted, assert_step, counterexample_table)

KL_FLIPPED = ("KL(q(Z) || p(Z | X))", "=", "E_q[log(p(Z | X) / q(Z))]")
# True (a variance is not negative), but no rule proves it: the checker can only test it.
VARIANCE = ("E_q[(log q(Z))^2]", ">=", "(E_q[log q(Z)])^2")

GOOD_TEXT = """\
title: two proved chains
    log p(X)
  = log(sum_Z[p(X, Z)])          by marginalization

KL(q(Z) || p(Z | X)) >= 0        by gibbs_inequality
"""


def test_module_doctests():
    assert doctest.testmod(symelbo.testing).failed == 0


# -- assert_step ---------------------------------------------------------------

@pytest.mark.parametrize("lhs, relation, rhs, by, context, found", [
    ("KL(q(Z) || p(Z | X))", ">=", "0", "gibbs_inequality", "", ("gibbs_inequality",)),
    ("KL(q(Z) || p(Z | X))", ">=", "0", None, "", ("gibbs_inequality",)),
    ("log p(X)", "=", "log(sum_Z[p(X, Z)])", ["marginalization"], "", ("marginalization",)),
    ("E_q[log p(X)]", "=", "log p(X)", None, "q(Z), p(X, Z)", ("expectation_constant",)),
    ("E_q[log p(X)]", "=", "log p(X)", None, "q(Z) = q(Z)", ("expectation_constant",)),
])
def test_assert_step_returns_the_proof(lhs, relation, rhs, by, context, found):
    result = assert_step(lhs, relation, rhs, by, context=context)
    assert result.verdict == "proved"
    assert result.found_by == found


def test_assert_step_takes_notation_expressions():
    q, posterior = density("q", "Z"), density("p", "Z", given=["X"])
    assert assert_step(KL(q, posterior), ">=", sp.Integer(0)).verdict == "proved"


def test_assert_step_takes_an_expression_and_a_string():
    q, p_x = density("q", "Z"), density("p", "X")
    result = assert_step(Expectation(q, sp.log(p_x)), "=", "log p(X)")
    assert result.verdict == "proved"
    assert result.found_by == ("expectation_constant",)


def test_context_may_be_a_list_of_expressions():
    q = density("q", "Z")
    assert assert_step("E_q[log q(Z)]", "=", "-H[q(Z)]", context=[q]).verdict == "proved"


def test_a_false_step_fails_with_the_step_the_reason_and_a_counterexample_table():
    with pytest.raises(DerivationError) as info:
        assert_step(*KL_FLIPPED)
    error = info.value
    assert isinstance(error, AssertionError)
    assert error.result.verdict == "refuted"
    message = str(error)
    assert message.startswith("the step is refuted; expected proved or tested\n")
    assert "      KL(q(Z) || p(Z | X))\n    = E_{q(Z)}[log(p(Z | X)/q(Z))]" in message
    assert "why: false on a concrete instance" in message
    assert "counterexample (" in message
    assert "X  Z  p(X, Z)" in message
    assert "Z  q(Z)" in message
    assert "but the step claims lhs = rhs" in message


def test_a_tested_step_passes_unless_strict():
    assert assert_step(*VARIANCE).verdict == "tested"
    with pytest.raises(DerivationError, match=r"^the step is tested; expected proved\n") as info:
        assert_step(*VARIANCE, strict=True)
    assert "why: no proof found; held on" in str(info.value)


def test_a_wrong_justification_fails():
    with pytest.raises(DerivationError, match="the step is misjustified") as info:
        assert_step("log p(X)", "=", "log(sum_Z[p(X, Z)])", by="bayes_rule")
    assert "by bayes_rule" in str(info.value)
    assert "it follows by marginalization" in str(info.value)


def test_the_budget_is_passed_to_the_checker():
    with pytest.raises(DerivationError, match="the step is unknown") as info:
        assert_step(*VARIANCE, budget=0.001)
    assert "within the budget of 0.001 s" in str(info.value)


# -- assert_refuted ------------------------------------------------------------

def test_assert_refuted_returns_the_counterexample():
    cx = assert_refuted(*KL_FLIPPED)
    assert cx["relation"] == "="
    assert set(cx["densities"]) == {"p", "q"}
    assert cx["lhs"] != cx["rhs"]


def test_assert_refuted_fails_on_a_true_step():
    with pytest.raises(DerivationError, match=r"^the step is proved; expected refuted\n") as info:
        assert_refuted("KL(q(Z) || p(Z | X))", ">=", "0")
    assert "[found: gibbs_inequality]" in str(info.value)


# -- derivations ---------------------------------------------------------------

def test_assert_derivation_proved_takes_text_a_path_or_a_derivation(tmp_path):
    path = tmp_path / "good.calc"
    path.write_text(GOOD_TEXT)
    for source in (GOOD_TEXT, path, str(path), parse_text(GOOD_TEXT, "good.calc")):
        result = assert_derivation_proved(source)
        assert result.verdict == "proved"


def test_assert_derivation_proved_names_every_bad_line(tmp_path):
    path = tmp_path / "bad.calc"
    path.write_text("    log p(X)\n  = log(sum_Z[p(X, Z)])   by bayes_rule\n\n"
                    "    KL(q(Z) || p(Z | X))\n  = E_q[log(p(Z | X) / q(Z))]\n")
    with pytest.raises(DerivationError) as info:
        assert_derivation_proved(path)
    message = str(info.value)
    assert message.startswith(f"{path}: 2 of 2 steps not proved\n")
    assert f"{path}:2: misjustified; expected proved" in message
    assert f"{path}:5: refuted; expected proved" in message
    assert [r.step.line for r in info.value.results] == [2, 5]
    assert info.value.check.verdict == "refuted"


def test_strict_false_accepts_tested_steps():
    text = " ".join(VARIANCE) + "\n"
    assert assert_derivation_proved(text, strict=False).verdict == "tested"
    with pytest.raises(DerivationError, match="<text>:1: tested; expected proved"):
        assert_derivation_proved(text)


def test_assert_derivation_verdicts():
    text = "log p(X) = log(sum_Z[p(X, Z)])\n" + " ".join(KL_FLIPPED) + "\n"
    result = assert_derivation_verdicts(text, {2: "refuted"})
    assert result.chains[1].steps[0].counterexample is not None
    with pytest.raises(DerivationError) as info:
        assert_derivation_verdicts(text, {1: "refuted", 3: "refuted"})
    message = str(info.value)
    assert "<text>:1: proved; expected refuted" in message
    assert "<text>:2: refuted; expected proved or tested" in message
    assert "<text>:3: expected a refuted step, but no step ends on this line" in message
    with pytest.raises(ValueError, match="unknown verdict 'wrong'"):
        assert_derivation_verdicts(text, {2: "wrong"})


# -- bad input is an error, not a failed assertion -----------------------------

def test_user_text_is_parsed_never_evaluated():
    with pytest.raises(InputError, match=r"^<step>:1:\d+: .* in the step"):
        assert_step("__import__('os').system('true')", "=", "0")


def test_a_syntax_error_is_located_in_the_step_not_in_the_context():
    with pytest.raises(InputError) as info:
        assert_step("log(p(X)", "=", "0", context="q(Z), p(X, Z)")
    assert info.value.path == "<step>"
    assert info.value.line == 1


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(relation="=="), ValueError, "relation must be one of"),
    (dict(by="no_such_rule"), ValueError, "unknown rule 'no_such_rule'"),
    (dict(lhs=object()), TypeError, "lhs must be a .calc string or a SymPy expression"),
])
def test_bad_arguments(kwargs, error, match):
    args = dict(lhs="log p(X)", relation="=", rhs="log p(X)", by=None) | kwargs
    with pytest.raises(error, match=match):
        assert_step(args["lhs"], args["relation"], args["rhs"], args["by"])


def test_counterexample_table_lines_up_columns():
    cx = {"kind": "random", "seed": 7, "support": {"X": ["1", "2"], "Z": ["1", "2"]},
          "held": {"X": "2"}, "parameters": {"phi": "0"},
          "densities": {"p": [{"at": {"X": "1", "Z": "10"}, "value": "1/3"},
                              {"at": {"X": "2", "Z": "2"}, "value": "2/3"}]},
          "lhs": "1.0", "rhs": "2.0", "relation": ">="}
    assert counterexample_table(cx).splitlines() == [
        "counterexample (random instance, seed 7):",
        "  support: X in {1, 2}, Z in {1, 2}",
        "  held: X = 2",
        "  parameters: phi = 0",
        "",
        "    X  Z   p(X, Z)",
        "    1  10  1/3",
        "    2  2   2/3",
        "",
        "  lhs = 1.0",
        "  rhs = 2.0",
        "  but the step claims lhs >= rhs",
    ]


@pytest.mark.parametrize("lhs, rhs", [
    ("p(X)\n= q(X)", "q(X)"),
    ("p(X) # a comment", "q(X)"),
    ("p(X)", "p(X) by jensen"),
])
def test_a_side_that_would_change_the_claim_is_refused(lhs, rhs):
    from symelbo.core.errors import InputError
    from symelbo.io.parser import parse_step
    with pytest.raises(ValueError):
        assert_step(lhs, "=", rhs)
    with pytest.raises(InputError):
        parse_step(lhs, "=", rhs)


MEAN_FIELD = ("assume: q(Z1, Z2) = q1(Z1) * q2(Z2)\n"
              "define: qstar(Z1) propto_{Z1} exp(E_{q2(Z2)}[log p(X, Z1, Z2)])")


def test_assertions_read_assumptions_and_definitions_in_their_context():
    assert_step("H[q(Z1, Z2)]", "=", "H[q1(Z1)] + H[q2(Z2)]", context=MEAN_FIELD)
    assert_step("qstar(Z1)", "propto_{Z1}", "exp(E_{q2(Z2)}[log p(X, Z1, Z2)])", context=MEAN_FIELD)
    # the expectation over the factor's own variable, not the other one: false
    assert_refuted("log qstar(Z1)", "=", "E_{q1(Z1)}[log p(X, Z1, Z2)] + const_{Z1}", context=MEAN_FIELD)
    # without the assumption, q's entropy is not the sum of two others
    assert_refuted("H[q(Z1, Z2)]", "=", "H[q1(Z1)] + H[q2(Z2)]")
