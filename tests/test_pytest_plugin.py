"""The pytest plugin: collection of .calc files, failure reports, options."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

# Imported here, before any in-process run: pytester drops the modules a run
# imports, and importing SymPy again for every run would cost a second each.
import symelbo.pytest_plugin  # noqa: F401
import symelbo.testing  # noqa: F401

pytest_plugins = ["pytester"]

GOOD = """\
title: two proved chains
    log p(X)
  = log(sum_Z[p(X, Z)])          by marginalization

KL(q(Z) || p(Z | X)) >= 0        by gibbs_inequality
"""

BAD = """\
# the sign of the log ratio is flipped on line 3
    KL(q(Z) || p(Z | X))
  = E_q[log(p(Z | X) / q(Z))]
"""

# True (a variance is not negative), but no rule proves it: only `tested`.
TESTED = "E_q[(log q(Z))^2] >= (E_q[log q(Z)])^2\n"

MISJUSTIFIED = """\
    log p(X)
  = log(sum_Z[p(X, Z)])          by bayes_rule
"""

BROKEN = """\
log p(X)
  = log(sum_Z[p(X, Z)]
"""


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    if os.environ.get("PYTEST_DISABLE_PLUGIN_AUTOLOAD"):
        args = ("-p", "symelbo.pytest_plugin") + args
    # Each in-process run imports its plugins afresh: Hypothesis' alone costs
    # 1.5 s a run, and none of these plugins plays a part here.
    quiet = ("no:cacheprovider", "no:hypothesispytest", "no:benchmark", "no:unraisableexception")
    return pytester.runpytest(*(arg for name in quiet for arg in ("-p", name)), *args)


def no_traceback(output: str) -> bool:
    return "Traceback" not in output and "pytest_plugin.py" not in output


# -- collection ------------------------------------------------------------------

def test_a_good_file_passes_one_item_per_chain(pytester):
    pytester.makefile(".calc", good=GOOD)
    result = run(pytester, "good.calc", "-v")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["good.calc::chain@line2 PASSED*", "good.calc::chain@line5 PASSED*"])
    assert result.ret == pytest.ExitCode.OK


def test_calc_files_under_the_test_paths_are_off_by_default(pytester):
    pytester.makefile(".calc", good=GOOD, bad=BAD)
    pytester.makepyfile(test_plain="def test_plain():\n    pass\n")
    result = run(pytester)
    result.assert_outcomes(passed=1)


@pytest.mark.parametrize("how", ["flag", "ini"])
def test_calc_files_under_the_test_paths_are_collected_on_request(pytester, how):
    pytester.makefile(".calc", good=GOOD)
    pytester.makepyfile(test_plain="def test_plain():\n    pass\n")
    if how == "ini":
        pytester.makeini("[pytest]\nsymelbo_collect_calc = true\n")
    result = run(pytester, *(["--symelbo-calc"] if how == "flag" else []))
    result.assert_outcomes(passed=3)


def test_a_file_named_on_the_command_line_is_always_collected(pytester):
    pytester.makefile(".calc", good=GOOD, bad=BAD)
    result = run(pytester, "good.calc")
    result.assert_outcomes(passed=2)


def test_other_files_are_left_alone(pytester):
    pytester.makefile(".txt", notes="log p(X) = 0\n")
    result = run(pytester, "--symelbo-calc")
    assert result.ret == pytest.ExitCode.NO_TESTS_COLLECTED


# -- failure reports -------------------------------------------------------------

def test_a_wrong_step_fails_naming_its_line_with_a_counterexample(pytester):
    pytester.makefile(".calc", bad=BAD)
    result = run(pytester, "bad.calc", "-ra")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([
        "*_ chain@line2 _*",
        "    chain at bad.calc:2: KL(q(Z) || p(Z | X)) = E_{q(Z)}[log(p(Z | X)/q(Z))]",
        "    2     KL(q(Z) || p(Z | X))",
        ">   3   = E_{q(Z)}[log(p(Z | X)/q(Z))]  refuted",
        "E   refuted: false on a concrete instance (counterexample below)",
        "    bad.calc:3: refuted",
        "*- counterexample to line 3 -*",
        "counterexample (* instance, seed *):",
        "  support: X in {*}, Z in {*}",
        "    X  Z  p(X, Z)",
        "    Z  q(Z)",
        "  lhs = *",
        "  rhs = *",
        "  but the step claims lhs = rhs",
        "*short test summary info*",
        "FAILED bad.calc::chain@line2 - line 3: refuted: KL(q(Z) || p(Z | X)) = *",
    ])
    assert no_traceback(result.stdout.str())


def test_only_the_failing_chain_fails(pytester):
    pytester.makefile(".calc", mixed=GOOD + "\n" + BAD)
    result = run(pytester, "mixed.calc")
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(["*mixed.calc:9: refuted*"])


def test_a_misjustified_step_fails_with_the_reason(pytester):
    pytester.makefile(".calc", why=MISJUSTIFIED)
    result = run(pytester, "why.calc")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([
        ">   2   = log(sum_Z[p(X, Z)])  misjustified  by bayes_rule",
        "E   misjustified: bayes_rule does not produce this step; it follows by marginalization",
    ])
    assert "counterexample" not in result.stdout.str()


def test_line_style_traceback_gives_one_line_per_failure(pytester):
    pytester.makefile(".calc", bad=BAD)
    result = run(pytester, "bad.calc", "--tb=line")
    result.stdout.fnmatch_lines(["*bad.calc:3: line 3: refuted: *"])


def test_a_syntax_error_is_one_collection_error_with_file_line_column(pytester):
    pytester.makefile(".calc", broken=BROKEN)
    result = run(pytester, "broken.calc")
    assert result.ret == pytest.ExitCode.INTERRUPTED
    result.stdout.fnmatch_lines([
        "*ERROR collecting broken.calc*",
        "broken.calc:2:8: this '(' is never closed",
    ])
    assert no_traceback(result.stdout.str())


# -- options ---------------------------------------------------------------------

def test_a_tested_step_passes(pytester):
    pytester.makefile(".calc", variance=TESTED)
    run(pytester, "variance.calc").assert_outcomes(passed=1)


@pytest.mark.parametrize("how", ["flag", "ini"])
def test_strict_mode_fails_a_tested_step(pytester, how):
    pytester.makefile(".calc", variance=TESTED)
    if how == "ini":
        pytester.makeini("[pytest]\nsymelbo_strict = true\n")
    result = run(pytester, "variance.calc", *(["--symelbo-strict"] if how == "flag" else []))
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([
        ">   1  >= E_{q(Z)}[log q(Z)]**2  tested",
        "E   tested: no proof found; held on * concrete instances (--symelbo-strict requires a proof)",
    ])


@pytest.mark.parametrize("how", ["flag", "ini"])
def test_the_budget_is_honoured(pytester, how):
    pytester.makefile(".calc", variance=TESTED)
    if how == "ini":
        pytester.makeini("[pytest]\nsymelbo_budget = 0.001\n")
    result = run(pytester, "variance.calc", *(["--symelbo-budget", "0.001"] if how == "flag" else []))
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["E   unknown: no proof or counterexample within the budget of 0.001 s"])


@pytest.mark.parametrize("args, ini", [
    (["--symelbo-budget", "soon"], None),
    (["--symelbo-budget", "0"], None),
    ([], "[pytest]\nsymelbo_budget = soon\n"),
])
def test_a_bad_budget_is_a_usage_error(pytester, args, ini):
    pytester.makefile(".calc", good=GOOD)
    if ini:
        pytester.makeini(ini)
    result = run(pytester, "good.calc", *args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "symelbo budget must be a" in result.stderr.str()


def test_the_header_shows_the_options_in_use(pytester):
    pytester.makefile(".calc", good=GOOD)
    result = run(pytester, "good.calc", "--symelbo-strict", "--symelbo-budget", "2")
    result.stdout.fnmatch_lines(["symelbo: collect .calc files=off, budget=2 s per step, strict=on"])


def test_the_options_are_documented_in_help(pytester):
    result = run(pytester, "--help")
    result.stdout.fnmatch_lines(["*--symelbo-calc*", "*--symelbo-budget=SECONDS*",
                                 "*--symelbo-strict*", "*symelbo_collect_calc*"])


# -- import cost -----------------------------------------------------------------

_ALONE = textwrap.dedent("""
    import sys, types
    import pytest
    # the package without its __init__, to see what the plugin module alone imports
    package = types.ModuleType("symelbo")
    package.__path__ = [{folder!r}]
    sys.modules["symelbo"] = package
    import symelbo.pytest_plugin
    print(sorted(m for m in sys.modules if m == "sympy" or m.startswith(("sympy.", "symelbo.", "lark"))))
""")


def test_the_plugin_module_imports_no_sympy_and_of_symelbo_only_the_verdict_names():
    import symelbo
    folder = os.path.dirname(symelbo.__file__)
    out = subprocess.run([sys.executable, "-c", _ALONE.format(folder=folder)],
                         capture_output=True, text=True, check=True).stdout
    # symelbo.core is the package of the verdicts module: its __init__ holds a docstring only
    assert out.strip() == "['symelbo.core', 'symelbo.core.verdicts', 'symelbo.pytest_plugin']"


def test_loading_the_plugin_does_not_import_sympy():
    code = "import sys, symelbo.pytest_plugin; print('sympy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


MEAN_FIELD = """\
assume: q(Z1, Z2) = q1(Z1) * q2(Z2)
define: qstar(Z1) propto_{Z1} exp(E_{q2(Z2)}[log p(X, Z1, Z2)])

H[q(Z1, Z2)]
  = H[q1(Z1)] + H[q2(Z2)]

log qstar(Z1)
  = E_{q2(Z2)}[log p(X, Z1, Z2)] + const_{Z1}
"""


def test_a_file_with_assumptions_is_checked_under_them(pytester):
    """Each chain item checks in the file's universe: its assume: and define: headers hold."""
    pytester.makefile(".calc", meanfield=MEAN_FIELD)
    result = run(pytester, "meanfield.calc", "-v")
    result.assert_outcomes(passed=2)
    # without the assumption, q's entropy is not the sum of two others: the item fails
    pytester.makefile(".calc", alone=MEAN_FIELD.replace("assume: q(Z1, Z2) = q1(Z1) * q2(Z2)\n", ""))
    run(pytester, "alone.calc").assert_outcomes(passed=1, failed=1)
