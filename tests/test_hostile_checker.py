"""Hostile input for the checker: memory, extreme numbers, determinism, the pytest plugin.

Every step here must end in a verdict of its own (never a crash of the
program or of the test session), within bounded time and memory, and the
same on every run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time

import pytest
import sympy.core.random as sympy_random

import symelbo.core.checker
import symelbo.pytest_plugin  # noqa: F401  (kept loaded across pytester runs)
import symelbo.testing  # noqa: F401
from symelbo.core.checker import TOO_DEEP_TO_PRINT, check_derivation, check_step
from symelbo.io.parser import parse_text
from symelbo.core.semantics import MAX_TABLE_CELLS, TooLarge, Universe, instances, tabulation_problem

pytest_plugins = ["pytester"]

VARIABLES = ", ".join(f"X{i}" for i in range(30))
JOINT = f"p({VARIABLES})"
TOO_LARGE = ("no proof found; no concrete instances: the instance would be too large to "
             "tabulate (1073741824 table cells, the limit is 4096; p is a density over "
             "30 variables)")
TOWER_OF_EXPS = "exp(exp(exp(exp(exp(5))))) = 1"
EXP_TOO_LARGE = ("the number exp(exp(exp(5))) may have more than 1048576 binary digits: "
                 "too large to compute with")


def run_cli(path, *, hashseed="0", memory=None, timeout=120):
    """``symelbo check PATH --json`` in a subprocess (optionally under an address-space
    limit): (exit status, parsed JSON or None, stdout bytes, seconds)."""
    limit = ""
    if memory:
        limit = (f"import resource; resource.setrlimit(resource.RLIMIT_AS, ({memory}, {memory})); ")
    code = f"{limit}import sys; from symelbo.cli.commands import main; sys.exit(main(sys.argv[1:]))"
    env = dict(os.environ, PYTHONHASHSEED=hashseed)
    start = time.monotonic()
    done = subprocess.run([sys.executable, "-c", code, "check", str(path), "--json"],
                          capture_output=True, env=env, timeout=timeout)
    seconds = time.monotonic() - start
    try:
        data = json.loads(done.stdout)
    except ValueError:
        data = None
    return done.returncode, data, done.stdout, seconds, done.stderr.decode(errors="replace")


def steps_of(data):
    return [s for c in data["chains"] for s in c["steps"]]


def one_step(text: str):
    derivation = parse_text(text + "\n")
    return check_derivation(derivation).chains[0].steps[0]


# -- 1. one table limit, memory inside the budget ------------------------------------

def test_a_joint_over_thirty_variables_is_unknown_fast_and_in_bounded_memory(tmp_path):
    calc = tmp_path / "joint.calc"
    # the constant-gap refutation path, an inequality and a plain equality
    calc.write_text(f"log {JOINT} = log {JOINT} + 1\n\n"
                    f"log {JOINT} >= log {JOINT} + 1\n\n"
                    f"log {JOINT} = log {JOINT} + 10^-5000\n")
    status, data, _, seconds, err = run_cli(calc, memory=2 * 1024 ** 3)
    assert status == 1, err
    assert seconds < 60
    assert [s["verdict"] for s in steps_of(data)] == ["unknown"] * 3
    assert [s["message"] for s in steps_of(data)] == [TOO_LARGE] * 3


def test_instances_refuse_a_universe_over_the_limit_before_building_anything():
    universe = Universe.of([parse_text(f"{JOINT} = {JOINT}\n").chains[0].first])
    assert tabulation_problem(universe).startswith("no concrete instances: the instance would be too large")
    with pytest.raises(TooLarge):
        next(instances(universe, 1))
    assert universe.built == {}


def test_three_point_random_supports_never_break_the_limit():
    twelve = ", ".join(f"Z{i}" for i in range(12))
    universe = Universe.of([parse_text(f"q({twelve}) = q({twelve})\n").chains[0].first])
    assert tabulation_problem(universe) == ""   # 2^12 cells: exactly the limit
    for instance in instances(universe):
        assert sum(len(table) for table in instance.tables.values()) <= MAX_TABLE_CELLS


def test_a_step_over_the_limit_is_still_proved_by_a_symbolic_argument():
    result = one_step(f"log {JOINT} = log {JOINT}")
    assert result.verdict == "proved"


# -- 2. extreme numbers: a verdict per step, the same on every run ---------------------

@pytest.mark.parametrize("claim, message", [
    (TOWER_OF_EXPS, EXP_TOO_LARGE),
    ("exp(exp(exp(exp(exp(5))))) * p(X) = p(X)", EXP_TOO_LARGE),
    ("2^(10^10) = 1", "the number 2**(10**10) may have more than 1048576 binary digits: "
                      "too large to compute with"),
    ("exp(exp(exp(exp(exp(exp(p(X))))))) = 1",
     "no proof found; held on 0 concrete instances, not computable on 28"),
    ("log(0) * p(X) = 1", "a side is undefined as written (log of a number <= 0, division by 0, "
                          "an infinity or an imaginary number)"),
    ("p(X) / (p(X) - p(X)) = 1", "a side is undefined as written (log of a number <= 0, "
                                 "division by 0, an infinity or an imaginary number)"),
])
def test_extreme_numbers_are_unknown_with_a_reason(claim, message):
    start = time.monotonic()
    result = one_step(claim)
    assert (result.verdict, result.message) == ("unknown", message)
    assert time.monotonic() - start < 30


@pytest.mark.parametrize("claim", [
    "10^-5000 * p(X) = 0",                       # a gap far below 4000 digits
    "log(p(X)) = log(p(X) * (1 + 10^-5000))",    # ... that only more digits show
    "p(X)^(2^30) = 0",                           # a tiny value, not rounding noise
])
def test_tiny_but_real_gaps_are_refuted(claim):
    result = one_step(claim)
    assert result.verdict == "refuted", result.message
    assert result.counterexample is not None


def test_a_tower_of_squares_equal_to_zero_is_never_accepted():
    tower = "p(X)"
    for _ in range(990):
        tower = f"({tower})^2"
    result = one_step(f"{tower} = 0")
    assert result.verdict not in ("proved", "tested", "misjustified")


def test_true_claims_with_small_constants_still_pass():
    assert one_step("exp(10^-40) > 1").verdict in ("proved", "tested")
    assert one_step("log p(X) + 10^-5000 - 10^-5000 = log p(X)").verdict == "proved"
    # e is computed at the working precision: no steady gap of 10^-60 at 1000 and 4000 digits
    assert one_step("exp(1) * exp(p(X)) = exp(p(X) + 1)").verdict in ("proved", "tested")


def test_an_error_of_size_is_confined_to_its_step(monkeypatch):
    derivation = parse_text("log p(X) = log(sum_Z[p(X, Z)])\n")
    step = derivation.chains[0].steps[0]

    def out_of_memory(expr):
        raise MemoryError()

    monkeypatch.setattr(symelbo.core.checker, "evaluate", out_of_memory)
    result = check_step(step)
    assert (result.verdict, result.message) == (
        "unknown", "a number in this step is too large to compute with")


def test_a_check_leaves_the_users_sympy_generator_as_it_was():
    sympy_random.seed(1234)
    state = sympy_random.rng.getstate()
    one_step("log p(X) = log(sum_Z[p(X, Z)])")
    assert sympy_random.rng.getstate() == state


HOSTILE = f"""\
{TOWER_OF_EXPS}

exp(exp(exp(exp(exp(5))))) >= 1

exp(exp(exp(exp(exp(exp(p(X))))))) = 1

2^(10^10) = 1

10^-5000 * p(X) = 0

    log p(X)
  = log(sum_Z[p(X, Z)])          by marginalization
"""


def test_the_same_input_gives_the_same_bytes_on_every_run(tmp_path):
    calc = tmp_path / "hostile.calc"
    calc.write_text(HOSTILE)
    outputs = set()
    for hashseed in ("0", "0", "1", "2", "3"):
        status, data, raw, _, err = run_cli(calc, hashseed=hashseed)
        assert status == 1, err        # never 3: no internal error escapes
        outputs.add(raw)
    assert len(outputs) == 1
    verdicts = [s["verdict"] for s in steps_of(data)]
    assert verdicts == ["unknown", "unknown", "unknown", "unknown", "refuted", "proved"]


# -- 3. the pytest plugin: a bad chain fails alone, the session goes on ----------------

GOOD = """\
    log p(X)
  = log(sum_Z[p(X, Z)])          by marginalization
"""


def run_pytest(pytester, *args):
    if os.environ.get("PYTEST_DISABLE_PLUGIN_AUTOLOAD"):
        args = ("-p", "symelbo.pytest_plugin") + args
    quiet = ("no:cacheprovider", "no:hypothesispytest", "no:benchmark", "no:unraisableexception")
    return pytester.runpytest(*(arg for name in quiet for arg in ("-p", name)), *args)


def test_a_tower_too_deep_to_print_fails_its_item_and_later_files_run(pytester):
    tower = "p(X)"
    for _ in range(990):
        tower = f"({tower})^2"
    pytester.makefile(".calc", a_tower=f"{tower} = 0\n", b_good=GOOD)
    result = run_pytest(pytester, "a_tower.calc", "b_good.calc")
    result.assert_outcomes(failed=1, passed=1)
    output = result.stdout.str()
    assert "INTERNALERROR" not in output and "Traceback" not in output
    assert result.ret == pytest.ExitCode.TESTS_FAILED


def test_an_error_of_size_in_the_checker_fails_one_item_readably(pytester):
    pytester.makeconftest(textwrap.dedent("""\
        import symelbo.core.checker

        def pytest_configure(config):
            original = symelbo.core.checker.check_chain

            def check_chain(chain, *args, **kwargs):
                if chain.line == 1:
                    raise MemoryError()
                return original(chain, *args, **kwargs)

            config._symelbo_original = original
            symelbo.core.checker.check_chain = check_chain

        def pytest_unconfigure(config):
            symelbo.core.checker.check_chain = config._symelbo_original
        """))
    pytester.makefile(".calc", a_bad="log p(X) = log p(X)\n\n" + GOOD)
    result = run_pytest(pytester, "a_bad.calc")
    result.assert_outcomes(failed=1, passed=1)
    output = result.stdout.str()
    assert "chain at a_bad.calc:1: not checked: a number is too large to compute with" in output
    assert "Traceback" not in output and "INTERNALERROR" not in output and "mpmath" not in output


def test_a_report_that_cannot_be_printed_falls_back_to_lines_and_verdicts(pytester):
    pytester.makeconftest(textwrap.dedent("""\
        import symelbo.testing

        def pytest_configure(config):
            original = symelbo.testing.chain_failure_report

            def chain_failure_report(*args, **kwargs):
                raise RecursionError()

            config._symelbo_original = original
            symelbo.testing.chain_failure_report = chain_failure_report

        def pytest_unconfigure(config):
            symelbo.testing.chain_failure_report = config._symelbo_original
        """))
    pytester.makefile(".calc", a_bad="KL(q(Z) || p(Z | X)) = E_q[log(p(Z | X) / q(Z))]\n",
                      b_good=GOOD)
    result = run_pytest(pytester, "a_bad.calc", "b_good.calc")
    result.assert_outcomes(failed=1, passed=1)
    output = result.stdout.str()
    assert ("chain at a_bad.calc:1 (its expressions cannot be shown: the expression is "
            "nested too deeply)") in output
    assert "E   refuted: false on a concrete instance" in output
    assert "INTERNALERROR" not in output


def test_printing_a_tower_gives_a_placeholder_not_an_error():
    tower = "p(X)"
    for _ in range(300):
        tower = f"({tower})^2"
    first = parse_text(f"{tower} = 0\n").chains[0].first
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(400)   # as deep in the stack as a report inside pytest is
    try:
        text = symelbo.core.checker.printed(first)
    finally:
        sys.setrecursionlimit(limit)
    assert text == TOO_DEEP_TO_PRINT
