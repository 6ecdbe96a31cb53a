"""The .calc reader: structure, exact error messages, and nothing is ever evaluated."""

import pytest

from symelbo.core.checker import check_derivation
from symelbo.core.errors import InputError
from symelbo.models.model import load_model
from symelbo.io.parser import parse_file, parse_text

from .conftest import REPO


def test_chains_headers_and_lines():
    d = parse_text("# comment\ntitle: T\n\n  log p(X)\n = log(sum_Z[p(X, Z)])  by marginalization  # why\n\n"
                   "E_q[log p(X)] = log p(X)\nq(Z) = q(Z)\n")
    assert d.title == "T"
    assert [len(c.steps) for c in d.chains] == [1, 1, 1]
    assert d.chains[0].steps[0].line == 5 and d.chains[0].steps[0].by == ("marginalization",)
    assert d.chains[1].steps[0].line == 7


@pytest.mark.parametrize("text, message", [
    ("log p(X)\n  = log(sum_Z[p(X, Z)])   by marginalisation\n",
     "f.calc:2:30: unknown rule 'marginalisation'; did you mean marginalization? "
     "(`symelbo list` shows the rules)"),
    ("log p(X)\n  = log(sum_Z[p(X, Z)]\n",
     "f.calc:2:8: this '(' is never closed"),
    ("a\n  <= b\n  >= c\n", "f.calc:3:3: a chain cannot mix <= and >= (its claim would mean nothing)"),
    ("sum_phi[q_phi(Z)] = 1\n",
     "f.calc:1:1: sum_phi: 'phi' is a parameter (as in q_phi), not a variable to sum over"),
    ("sum_Z[grad_Z[Z]] = 0\n",
     "f.calc:1:7: grad_Z: 'Z' is a random variable; gradients are taken with respect to parameters "
     "such as phi in q_phi"),
    ("E_q[log p(X)] = log p(X)\n",
     "f.calc:1:1: E_q: the density 'q' is never applied to variables in this file, so its variables "
     "are unknown; write E_{q(Z)}"),
    ('log p(X) = __import__("os")\n', "f.calc:1:12: unexpected character '_'"),
    ("", "f.calc:1:1: no derivation found: write an expression, then lines starting with a relation"),
    ("x = y\n y\n", "f.calc:2:1: a chain needs at least one step (a line starting with a relation)"),
    ("p(X) = p\n", "f.calc:1:8: 'p' is a density; apply it to variables, as in p(Z)"),
    ("grad_X[p(X)] = 0\n", "f.calc:1:1: grad_X: 'X' is a random variable; gradients are taken with "
     "respect to parameters such as phi in q_phi"),
    ("KL(q(Z) || p(X)) = 0\n", "f.calc:1:1: KL compares two densities over the same variables"),
    ("log p(X)\n\n = 1\n", "f.calc:3:2: a line that starts with a relation must follow an expression"),
    ("p(X, X) = 1\n", "f.calc:1:1: the variable 'X' appears twice in p(...)"),
    ("log p(X)\n = log p(X)  by jensen, jensen\n", "f.calc:2:25: the rule 'jensen' is named twice"),
    ("title: a\ntitle: b\nx = x\n", "f.calc:2:1: the header 'title' is given twice"),
    ("a = b\nc\n = d\n", None),  # a one-line claim then a new chain: fine
])
def test_errors_are_one_located_line(text, message):
    if message is None:
        parse_text(text, "f.calc")
        return
    with pytest.raises(InputError) as info:
        parse_text(text, "f.calc")
    assert str(info.value) == message


def test_unreadable_bytes(tmp_path):
    path = tmp_path / "bad.calc"
    path.write_bytes(b"log p(X)\n  = \xff\xfe\n")
    with pytest.raises(InputError, match=r"bad.calc:2:5: the file is not UTF-8 text \(byte 0xff\)"):
        parse_file(path)


def test_missing_file(tmp_path):
    with pytest.raises(InputError, match="cannot read the file"):
        parse_file(tmp_path / "nope.calc")


def test_nothing_is_evaluated(monkeypatch):
    """The parser never reaches eval, exec or sympify, whatever the file says."""
    import builtins

    import sympy

    def forbidden(*args, **kwargs):
        raise AssertionError("user text reached an evaluator")

    def no_text(original):
        def guarded(source, *args, **kwargs):
            if isinstance(source, (str, bytes)):  # the import system runs code objects; text is refused
                raise AssertionError("user text reached an evaluator")
            return original(source, *args, **kwargs)
        return guarded

    monkeypatch.setattr(builtins, "eval", no_text(builtins.eval))
    monkeypatch.setattr(builtins, "exec", no_text(builtins.exec))
    original_sympify = sympy.sympify

    def sympify_without_text(value, *args, **kwargs):
        if isinstance(value, str):  # SymPy sympifies its own objects; text would be parsed
            raise AssertionError("user text reached sympify")
        return original_sympify(value, *args, **kwargs)

    monkeypatch.setattr(sympy, "sympify", sympify_without_text)
    monkeypatch.setattr(sympy.parsing.sympy_parser, "parse_expr", forbidden)
    d = parse_text("KL(q(Z) || p(Z | X))\n = -E_q[log(p(Z | X) / q(Z))] + 2^3 - 0.5  by definition_kl\n")
    assert len(d.chains[0].steps) == 1
    # checking, and reading a model file, never evaluate text either
    assert check_derivation(d).chains[0].steps[0].verdict == "refuted"
    with pytest.raises(InputError):
        parse_text("x = __import__('os').system('true')\n")
    assert load_model(REPO / "examples" / "beta_bernoulli.toml").elbo() is not None


def test_conditional_expectation_keeps_its_given_variables():
    d = parse_text("E_{q(W | Z)}[log q(W | Z)] = -H[q(W | Z)]\n")
    lhs = d.chains[0].first
    assert [v.name for v in lhs.density.given] == ["Z"]
