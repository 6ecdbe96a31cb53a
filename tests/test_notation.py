"""The notation prints as a statistician writes it, and str() reads back through the parser."""

import pytest
import sympy as sp

from symelbo.core.notation import ELBO, KL, Density, Entropy, Expectation, Gradient, Marginal, density, parameter, variable
from symelbo.io.parser import parse_expression
from symelbo.core.printing import calc_str

Z, X = variable("Z"), variable("X")
q, posterior, joint = density("q", "Z"), density("p", "Z", given=["X"]), density("p", "X", "Z")


def test_joint_argument_order_does_not_matter():
    assert density("p", "X", "Z") == density("p", "Z", "X")
    assert Density("p", [Z, X], evaluate=False) != Density("p", [X, Z], evaluate=False)


@pytest.mark.parametrize("expr, text, latex", [
    (KL(q, posterior), "KL(q(Z) || p(Z | X))",
     r"\operatorname{KL}\left(q(Z) \,\middle\|\, p(Z \mid X)\right)"),
    (Entropy(q), "H[q(Z)]", r"\operatorname{H}\left[q(Z)\right]"),
    (Expectation(q, sp.log(joint)), "E_{q(Z)}[log(p(X, Z))]",
     r"\mathbb{E}_{q(Z)}\left[\log p(X, Z)\right]"),
    (Marginal(Z, joint), "sum_Z[p(X, Z)]", r"\sum_{Z} p(X, Z)"),
    (Gradient(parameter("phi"), density("q", "Z", params=["phi"])), "grad_phi[q_phi(Z)]",
     r"\nabla_{\phi} q_{\phi}(Z)"),
    (ELBO(q, joint), "ELBO(q(Z), p(X, Z))", r"\mathcal{L}(q)"),
])
def test_str_and_latex(expr, text, latex):
    assert str(expr) == text
    assert sp.latex(expr) == latex


def test_pretty_prints_without_error():
    text = sp.pretty(KL(q, posterior) - Entropy(q) + Expectation(q, sp.log(joint / q)), use_unicode=False)
    assert "KL(q(Z) || p(Z | X))" in text and "H[q(Z)]" in text


@pytest.mark.parametrize("source", [
    "KL(q(Z) || p(Z | X))",
    "-E_q[log(p(Z | X)/q(Z))] + log p(X)",
    "grad_phi[E_{q_phi}[log(p(x, theta)/q_phi(theta))]]",
    "sum_Z[q(Z)*p(X, Z)/q(Z)]",
    "H[q(Z)] - 2*E_q[log p(X, Z)]^2",
    "ELBO(q(Z), p(X, Z)) + exp(-1/2)",
])
def test_calc_str_round_trips(source):
    expr = parse_expression(source)
    assert parse_expression(calc_str(expr)) == expr


def test_free_symbols_respect_binders():
    assert Expectation(q, sp.log(joint)).free_symbols == {X}
    assert KL(q, posterior).free_symbols == {X}
    assert Marginal(Z, joint).free_symbols == {X}
    phi = parameter("phi")
    assert phi in Expectation(density("q", "Z", params=["phi"]), sp.log(joint)).free_symbols


def test_densities_survive_pickle_and_deepcopy():
    import copy
    import pickle

    from symelbo.core.normalize import evaluate
    from symelbo.io.parser import parse_expression
    e = evaluate(parse_expression("log p(Z | X) + q_phi(Z) + KL(q(Z) || p(Z | X)) + p(Z, X)"))
    assert pickle.loads(pickle.dumps(e)) == e
    assert copy.deepcopy(e) == e
    written = parse_expression("p(Z, X)")          # written order kept, as parsed
    assert pickle.loads(pickle.dumps(written)).variables == written.variables


def test_sympy_traversals_rebuild_densities_from_their_args():
    """xreplace, subs and replace rebuild a node as ``node.func(*node.args)``."""
    Z, W, X, phi = variable("Z"), variable("W"), variable("X"), parameter("phi")
    q = Density("q", [Z], [X], [phi])
    assert q.func(*q.args) == q
    renamed = Density("q", [W], [X], [phi])
    assert q.xreplace({Z: W}) == renamed
    assert sp.log(q).xreplace({Z: W}) == sp.log(renamed)
    assert Expectation(q, sp.log(q)).replace(lambda n: n == Z, lambda n: W) == \
        Expectation(renamed, sp.log(renamed))
    written = Density("p", [Z, X], evaluate=False)
    assert written.func(*written.args, evaluate=False).variables == (Z, X)


def test_sympy_diff_speaks_the_gradient_notation():
    """d/dphi of a density family is grad_phi of it; SymPy's chain rule does the rest."""
    Z, X, phi = variable("Z"), variable("X"), parameter("phi")
    q, p = Density("q", [Z], params=[phi]), Density("p", [Z, X])
    assert sp.diff(sp.log(q), phi) == Gradient(phi, q) / q
    assert sp.diff(KL(q, p.with_variables([Z], [X])), phi) == Gradient(phi, KL(q, p.with_variables([Z], [X])))
    assert sp.diff(Expectation(q, sp.log(p)), phi) == Gradient(phi, Expectation(q, sp.log(p)))
    assert sp.diff(sp.log(p), phi) == 0
    # a random variable takes finitely many values: nothing to differentiate by
    assert isinstance(sp.diff(q, Z), sp.Derivative)


def test_substituting_a_number_for_a_density_argument_is_refused_clearly():
    Z, phi = variable("Z"), parameter("phi")
    q = Density("q", [Z], params=[phi])
    with pytest.raises(TypeError, match="phi can be replaced by another symbol, not by 1"):
        sp.log(q).subs(phi, 1)
    assert sp.log(q).subs(phi, parameter("psi")) == sp.log(Density("q", [Z], params=[parameter("psi")]))


def test_subs_respects_what_an_operator_binds():
    Z, X, W = variable("Z"), variable("X"), variable("W")
    joint, prior = Density("p", [Z, X]), Density("p", [Z])
    e = Expectation(prior, sp.log(joint))
    assert e.subs(Z, W) == e                               # Z is bound: not free to replace
    assert e.subs(X, W) == Expectation(prior, sp.log(Density("p", [Z, W])))
    with pytest.raises(TypeError, match="involves Z, which this operator binds"):
        e.subs(X, Z)
    with pytest.raises(TypeError, match="involves Z, which this operator binds"):
        Marginal(Z, joint).subs(X, Z)


@pytest.mark.parametrize("build, message", [
    (lambda: Density("p", [variable("X")]).xreplace({variable("X"): 2}), "variable is a symbol, not 2"),
    (lambda: Density("p", [variable("X")]).subs(sp.Symbol("p"), 2), "name is a symbol, not 2"),
])
def test_a_density_is_built_from_symbols_only(build, message):
    with pytest.raises(TypeError, match=message):
        build()


def test_subs_of_a_subexpression_under_a_binder_is_refused():
    Z, X = variable("Z"), variable("X")
    q, p_x, p_z = Density("q", [Z]), Density("p", [X]), Density("p", [Z])
    with pytest.raises(TypeError, match="which this operator binds"):
        Expectation(q, sp.log(p_x)).subs(p_x, p_z)          # Z would be captured
    with pytest.raises(TypeError, match="which this operator binds"):
        Marginal(Z, Density("p", [X, Z])).subs(Density("p", [X, Z]), p_z)   # a bound Z


def test_parameters_given_as_an_iterator_are_kept():
    Z, phi = variable("Z"), parameter("phi")
    assert Density("q", [Z], params=iter([phi])).params == (phi,)


def test_structural_signs():
    from symelbo.core.notation import known_nonnegative, known_positive
    phi, X = parameter("phi"), variable("X")
    p = Density("p", [X])
    assert known_positive(phi**2 + 1) and known_positive(p + phi**4)
    assert not known_positive(phi**2) and known_nonnegative(phi**2)
    assert not known_nonnegative(phi**3) and not known_nonnegative(phi**2 - 1)
    assert known_nonnegative(Expectation(p, sp.log(p)**2))


def test_const_and_defined_print_as_the_textbooks_write_them():
    """const_{Z1} prints as written in .calc, \\text{const} in LaTeX, const in pretty; a
    defined function prints by its name (ptilde as p-tilde, qstar as q-star)."""
    from symelbo.core.notation import Const, Defined, split_const, variable
    z1, x = variable("Z1"), variable("X")
    body = sp.exp(density("p", "X", "Z1"))
    ptilde = Defined("ptilde", (x, z1), body)
    side = sp.Add(sp.log(ptilde), Const(["Z1"]), evaluate=False)
    assert calc_str(side) == "log ptilde(X, Z1) + const_{Z1}"
    assert sp.latex(side) == r"\log \tilde{p}(X, Z_{1}) + \text{const}"
    assert sp.pretty(side, use_unicode=False, order="none") == "log(ptilde(X, Z1)) + const"
    assert sp.latex(density("qstar", "Z1")) == r"q^{\star}(Z_{1})"
    assert split_const(side) == (sp.log(ptilde), ("Z1",))
    assert ptilde.free_symbols == {x, z1} and ptilde.is_positive
