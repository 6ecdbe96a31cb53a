"""The falsifier: false claims that survive the fixed plan are refuted by the search.

Each class of false claim that used to come back ``tested`` (values of a free
variable, moments on four or more points, bounds with a large constant, gaps
below the precision, parameters outside [-3/2, 3/2]) has rows here, with
relatives; each must be refuted with a counterexample. True claims that no
rule proves must stay ``tested``, and say how hard they were attacked.
"""

from __future__ import annotations

import json
import re

import pytest
import sympy as sp

from symelbo.cli.commands import main
from symelbo.core import checker
from symelbo.core.checker import CheckOptions, check_derivation
from symelbo.core.falsify import CLEAR_GAP, STAGES
from symelbo.core.semantics import log_combination_is_zero
from symelbo.io.parser import parse_text

CONTEXT = "q(Z) = q(Z)\n\n"


def checked(claim: str, budget: float = 5.0):
    result = check_derivation(parse_text(CONTEXT + claim + "\n"), CheckOptions(budget=budget))
    return result.chains[-1].steps[0]


FALSE = {
    "values of a free variable": [
        "exp(X) <= exp(4)",
        "X >= -3",
        "X*p(X) <= 4*p(X)",
        "X^2*KL(q(Z) || p(Z | X)) >= KL(q(Z) || p(Z | X))",
        "X*(X-1)*(X-2)*(X-3)*(X-4)*(X+1)*(X+2)*(X+3) = 0",
        "X^2 = X",
        "X*(X - 1/2) >= 0",
        "(X-1)^2*(X-2)^2*(X+1)^2*X^2 >= 1/1000",
    ],
    "moments of a distribution on four or more points": [
        "E_q[Z^2] >= 1",
        "E_q[(Z-1)*(Z-2)*(Z-3)*(Z-4)*(Z+1)*(Z+2)*(Z+3)] = 0",
        "E_q[(Z - E_q[Z])^2] <= 9",
        "E_q[Z^4] >= E_q[Z^2]^2 + 1/100",
        "E_q[q(Z)] >= 1/9",
    ],
    "bounds with a large constant": [
        "KL(q(Z) || p(Z | X)) <= 1000",
        "KL(p(Z | X) || q(Z)) <= 1000",
        "H[q(Z)] <= 100",
        "H[q(Z)] >= -100",
        "H[q(Z)] <= 3000",
        "log p(X) <= 100",
        "log p(X) >= -100",
        "log p(X) >= -5000",
        "ELBO(q(Z), p(X, Z)) >= -1000",
        "log p(X) - ELBO(q(Z), p(X, Z)) <= 500",
        "E_q[log p(X | Z)] >= -300",
        "p(X) <= 10^50",
        "p(X) >= 10^-50",
    ],
    "gaps below the precision": [
        "p(X) = p(X) * (1 + 10^-5000)",
        "log p(X) = log(p(X) + 10^-5000)",
        "p(X) <= p(X) * (1 - 10^-5000)",
        "log p(X) >= log(p(X) + 10^-5000)",
        "p(X) = p(X) * (1 + 10^-30000)",
        "KL(q(Z) || p(Z | X)) = KL(q(Z) || p(Z | X)) * (1 + 10^-9000)",
    ],
    "parameters outside the sampled range": [
        "exp(phi) <= 1 + phi + phi^2",
        "phi^2 <= 4",
        "exp(phi) >= phi^3",
        "phi^2 + 1 >= 2*phi^4 - 7",
        "grad_phi[E_{q_phi(Z)}[Z]] <= 3",
    ],
}

FALSE_ROWS = [(kind, claim) for kind, claims in FALSE.items() for claim in claims]


@pytest.mark.parametrize("kind, claim", FALSE_ROWS)
def test_false_claims_of_every_class_are_refuted(kind, claim):
    step = checked(claim)
    assert step.verdict == "refuted", (kind, step.message)
    assert step.counterexample is not None


#: claims the fixed plan passes and the search refutes, with the simplest instance
#: it finds (named in plain words)
SEARCHED = [
    ("X >= -3", "searched point X = -5"),
    ("phi^2 <= 4", "searched point phi = 3"),
    ("exp(phi) <= 1 + phi + phi^2", "searched parameters phi = 2"),
    ("E_q[Z^2] >= 1", "searched support, every variable on one point at 0"),
    ("KL(q(Z) || p(Z | X)) <= 1000",
     "searched tables alternating 1 and 10^438, q away from the posterior"),
]


@pytest.mark.parametrize("claim, kind", SEARCHED)
def test_the_search_names_the_instance_it_found(claim, kind):
    step = checked(claim)
    assert step.verdict == "refuted"
    assert step.counterexample["kind"] == kind
    assert step.message.startswith("false on a concrete instance found by a search, after 28 "
                                   "planned instances held (")
    assert step.search["planned"] == 28 and step.search["complete"] is True


@pytest.mark.parametrize("claim, kind", SEARCHED)
def test_a_searched_counterexample_shows_a_clear_gap(claim, kind):
    cx = checked(claim).counterexample
    lhs, rhs = float(cx["lhs"]), float(cx["rhs"])
    assert abs(lhs - rhs) > CLEAR_GAP * max(abs(lhs), abs(rhs))


def test_a_searched_counterexample_shows_the_conditionals_the_step_uses():
    cx = checked("KL(q(Z) || p(Z | X)) <= 1000").counterexample
    assert cx["uses"] == {
        "p(Z | X)": [{"at": {"Z": "1", "X": "1"}, "value": "1.0e-438"},
                     {"at": {"Z": "2", "X": "1"}, "value": "1.0"}],
        "q(Z)": [{"at": {"Z": "1"}, "value": "1.0"}, {"at": {"Z": "2"}, "value": "1.0e-1752"}]}
    # entries past 300 digits are shown as powers of ten, not as 438-digit integers
    assert all(len(row["value"]) < 80 for rows in cx["densities"].values() for row in rows)


TRUE_TESTED = [
    "E_q[(log q(Z))^2] >= (E_q[log q(Z)])^2",
    "phi^4 - 10*phi^2 + 9 >= -16",          # the minimum, at phi^2 = 5, is -16
    "exp(phi) >= 1 + phi",
    "E_q[Z^2] >= E_q[Z]^2",
    "E_q[Z^4] >= E_q[Z^2]^2",
    "H[q(Z)] <= log(sum_Z[1])",             # the entropy is at most the log of the total weight
    "log(1 + phi^2) <= phi^2",
    "X^2 - 2*X + 1 >= 0",
    "exp(phi) > phi",
]


@pytest.mark.parametrize("claim", TRUE_TESTED)
def test_true_claims_survive_the_search(claim):
    step = checked(claim)
    assert step.verdict == "tested", step.message
    assert re.fullmatch(
        r"no proof found; held on 28 planned and (\d+) searched concrete instances "
        r"\(points, supports, magnitudes, parameters, tables; (\d+) evaluations, (\d+) local moves\) "
        r"and survived: (\d+) concrete instances", step.message)
    search = step.search
    assert set(search) == {"planned", "instances", "evaluations", "local_moves", "stages", "complete"}
    assert search["stages"] == list(STAGES) and search["complete"] is True
    assert search["instances"] >= 60 and search["evaluations"] == 2 * search["instances"]
    assert f"held on 28 planned and {search['instances']} searched" in step.message


@pytest.mark.parametrize("claim", ["KL(q(Z) || p(Z | X)) >= 0", "(phi - 1)^2 * exp(phi) >= 0",
                                   "E_q[exp(Z)] >= exp(E_q[Z])"])
def test_proved_claims_are_not_searched(claim):
    step = checked(claim)
    assert step.verdict == "proved" and step.search is None
    assert "search" not in step.as_dict()   # the keys of a step no search ran on are kept


def test_the_search_is_deterministic():
    """Same step, same search, same bytes."""
    for claim in ("E_q[Z^2] >= E_q[Z]^2", "exp(phi) <= 1 + phi + phi^2", "log p(X) >= -100"):
        first, second = checked(claim).as_dict(), checked(claim).as_dict()
        assert json.dumps(first, sort_keys=True) == json.dumps(second, sort_keys=True)


def test_a_search_cut_short_never_lets_a_step_pass(monkeypatch):
    monkeypatch.setattr(checker, "ATTACK_SHARE", 1e-9)
    monkeypatch.setattr(checker, "ATTACK_FLOOR", 1e-9)
    step = checked("exp(phi) >= 1 + phi")
    assert step.verdict == "unknown"
    assert re.match(r"no proof found; held on 28 concrete instances, but the search for a counterexample "
                    r"stopped at its time limit of 5e-09 s after \d+ instances from a search", step.message)
    assert step.search["complete"] is False


def test_a_misjustified_step_is_searched_too():
    step = checked("E_q[Z^2] >= 1 by jensen")
    assert step.verdict == "refuted"


@pytest.mark.parametrize("expr, zero", [
    (sp.log(2) + sp.log(3) - sp.log(6), True),
    (sp.log(6) - sp.log(2) - sp.log(4), False),
    (2 * sp.log(sp.Rational(12, 5)) - 4 * sp.log(2) - 2 * sp.log(3) + 2 * sp.log(5), True),
    (sp.log(sp.Integer(10) ** 5000 + 1) - 5000 * sp.log(10), False),
    (sp.log(sp.Integer(6) ** 3000) - 3000 * sp.log(2) - 3000 * sp.log(3), True),
    (sp.Rational(1, 10 ** 5000), False),
    (sp.S.Zero, True),
    (sp.log(2) * sp.log(3), None),          # not linear in logs: not decided here
    (sp.exp(1) - 2, None),
])
def test_logs_of_rationals_are_decided_exactly_without_a_cap(expr, zero):
    assert log_combination_is_zero(expr) is zero


STRICT_FILE = CONTEXT + "E_q[(log q(Z))^2] >= (E_q[log q(Z)])^2\n"


@pytest.mark.parametrize("command", ["check", "derive"])
def test_strict_requires_every_step_proved(tmp_path, capsys, command):
    if command == "check":
        path = tmp_path / "tested.calc"
        path.write_text(STRICT_FILE)
        assert main(["check", str(path)]) == 0
        capsys.readouterr()
        assert main(["check", "--strict", str(path)]) == 1
        assert capsys.readouterr().err == "symelbo: --strict: 1 step tested, not proved (line 3)\n"
    else:
        assert main(["derive", "jensen", "--strict"]) == 0
