"""An abstract derivation instantiated on a model: each line in closed form, with its value.

Every expression of the derivation is first brought to its normal form
(:mod:`symelbo.core.normalize`), which is a combination of three atoms:

- ``log p(X)``                  -> the model's log evidence,
- ``sum_Z[q(Z) log q(Z)]``      -> ``-H[q]``, the negative entropy of q,
- ``sum_Z[q(Z) log p(X, Z)]``   -> ``E_q[log p(X, Z)] = ELBO - (-H[q])``;

``grad_phi[f]`` becomes the vector of partial derivatives of f's closed form
with respect to the model's variational parameters. The abstract variables
stand for all of the model's: Z for its latents, X for its data, phi for its
variational parameters.

Each step is then checked on the closed forms: symbolically (the difference
expands to 0: ``proved``), else at the ``[values]`` with 50 digits
(``tested`` or ``refuted``). Inequalities are checked on values.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import mpmath
import sympy as sp

from symelbo.core.derivation import Derivation
from symelbo.core.deadline import BudgetExceeded, time_budget
from symelbo.core.kernel import prove_identity
from symelbo.core.relations import relation as relation_of
from symelbo.core.errors import InputError
from symelbo.core.normalize import normal_form
from symelbo.core.notation import Density, Gradient, Marginal
from symelbo.core.printing import calc_str, latex_str

__all__ = ["InstantiatedStep", "Instantiation", "instantiate", "instantiate_report"]

_TOLERANCE = mpmath.mpf(10) ** -30


class NotInstantiable(ValueError):
    """An abstract expression that the model's closed forms do not cover."""


@dataclass(frozen=True)
class InstantiatedStep:
    line: int
    relation: str
    abstract: str            # the abstract right-hand side (.calc syntax)
    closed: object           # SymPy expression, a list (a gradient), or None
    value: object            # float, list of floats, or None
    verdict: str
    message: str
    abstract_latex: str = ""
    closed_latex: str = ""

    def as_dict(self) -> dict:
        return {"line": self.line, "relation": self.relation, "abstract": self.abstract,
                "closed": _str(self.closed), "value": self.value, "verdict": self.verdict,
                "message": self.message}


@dataclass(frozen=True)
class Instantiation:
    name: str
    model_name: str
    title: str
    chains: tuple                      # tuple of tuples of InstantiatedStep (first has relation "")
    parameters: tuple = ()             # the variational parameters a gradient's components follow

    @property
    def verdict(self) -> str:
        from symelbo.core.checker import weakest
        return weakest(s.verdict for chain in self.chains for s in chain[1:])

    @property
    def passed(self) -> bool:
        return all(s.verdict in ("proved", "tested") for chain in self.chains for s in chain[1:])

    def as_dict(self) -> dict:
        return {"derivation": self.name, "model": self.model_name, "verdict": self.verdict,
                "parameters": list(self.parameters),
                "chains": [[s.as_dict() for s in chain] for chain in self.chains]}


def _str(closed):
    if closed is None:
        return None
    if isinstance(closed, list):
        return [sp.sstr(c) for c in closed]
    return sp.sstr(closed)


class _ClosedForms:
    """The model's closed forms of the three atoms, and the variational parameters."""

    def __init__(self, model):
        from symelbo.models.model import NoClosedForm
        self.model = model
        self.parameters = list(model.variational_parameters)
        self.missing = {}   # atom -> why the model has no closed form for it
        self.log_evidence = self.neg_entropy = self.expected_log_joint = self.kl = None
        self.conditions: list[str] = []
        # the data as their sufficient statistics (n, sum(x), ...): a closed form then holds for
        # any data of the model's shape, and prints without the data's sums as loose numbers
        try:
            self.log_evidence = model.log_evidence(data_symbols=True)
            self.kl = model.kl_to_posterior(data_symbols=True)
            self.conditions = [what for _, what in model.evidence().conditions]
        except NoClosedForm as why:
            self.missing["log_evidence"] = str(why)
        try:
            self.neg_entropy = -model.entropy()
            self.expected_log_joint = sp.expand(model.elbo(data_symbols=True) + self.neg_entropy)
        except NoClosedForm as why:
            self.missing["elbo"] = str(why)

    def _atom(self, name: str, value):
        if value is None:
            raise NotInstantiable(f"the model has no closed form here: {self.missing.get(name, name)}")
        return value

    def closed(self, expr):
        """The closed form of an abstract expression (a list for a gradient)."""
        if isinstance(expr, Gradient):
            body = self.closed(expr.body)
            if isinstance(body, list):
                raise NotInstantiable("a gradient of a gradient")
            return [sp.diff(body, v) for v in self.parameters]
        if expr.is_Add or expr.is_Mul:
            parts = [self.closed(a) for a in expr.args]
            if any(isinstance(p, list) for p in parts):
                return _combine(expr, parts)
            return expr.func(*parts)
        if not _has_notation(expr):
            return expr
        normal = normal_form(expr).expr
        return self._atoms(normal)

    def _atoms(self, normal):
        """Replace the normal form's atoms by the model's closed forms."""
        closed = self._replace(normal)
        if _has_notation(closed):
            raise NotInstantiable(f"no closed form for {calc_str(normal)}")
        return sp.expand(closed)

    def _replace(self, node):
        if isinstance(node, sp.log) and isinstance(node.args[0], Density):
            return self._log_density(node.args[0])
        if isinstance(node, Marginal):
            return self._expected_log(node)
        if node.is_Atom or not (node.is_Add or node.is_Mul or node.is_Pow):
            return node
        return node.func(*[self._replace(a) for a in node.args])

    def _log_density(self, dens: Density):
        if not dens.given and dens.name == "p" and len(dens.variables) == 1:
            return self._atom("log_evidence", self.log_evidence)
        raise NotInstantiable(f"log {calc_str(dens)} has no closed form in the model")

    def _expected_log(self, marginal: Marginal):
        body = marginal.body
        factors = sp.Mul.make_args(body)
        weights = [f for f in factors if isinstance(f, Density)]
        logs = [f for f in factors if isinstance(f, sp.log) and isinstance(f.args[0], Density)]
        if len(weights) == 1 and len(logs) == 1 and len(factors) == 2:
            q, inner = weights[0], logs[0].args[0]
            if inner == q:
                return self._atom("elbo", self.neg_entropy)
            if inner.name == "p" and not inner.given and len(inner.variables) == 2:
                return self._atom("elbo", self.expected_log_joint)
        raise NotInstantiable(f"no closed form for {calc_str(marginal)}")


def _combine(expr, parts):
    """Add or multiply parts when some are gradient vectors."""
    length = max(len(p) for p in parts if isinstance(p, list))
    vectors = [p if isinstance(p, list) else None for p in parts]
    if expr.is_Add:
        out = []
        for i in range(length):
            out.append(sp.Add(*[v[i] if v is not None else p for v, p in zip(vectors, parts)]))
        return out
    scalars = [p for p in parts if not isinstance(p, list)]
    vector_parts = [p for p in parts if isinstance(p, list)]
    if len(vector_parts) != 1:
        raise NotInstantiable("a product of gradients")
    return [sp.Mul(*scalars, c) for c in vector_parts[0]]


def _has_notation(expr) -> bool:
    from symelbo.core.normalize import contains_notation
    return contains_notation(expr)


def _value(model, closed):
    if closed is None:
        return None
    if isinstance(closed, list):
        return [_value(model, c) for c in closed]
    value = model.value(closed)
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _exact(model, closed):
    value = model.value(closed)
    return mpmath.mpf(value) if not isinstance(value, mpmath.mpf) else value


#: Processor seconds for one kernel identity on a model's closed forms (as `symelbo model`
#: gives each zero test): past it the step is tested at the values instead of proved.
IDENTITY_BUDGET = 3.0


def _identity(lhs: sp.Expr, rhs: sp.Expr):
    """prove_identity under IDENTITY_BUDGET: a regression's rational closed forms can make
    ``cancel`` run for minutes; None (no proof) past the budget."""
    try:
        with time_budget(IDENTITY_BUDGET):
            return prove_identity(lhs, rhs)
    except BudgetExceeded:
        return None


def _gibbs(forms, relation, left, right) -> tuple[str, str] | None:
    """``big >= small`` where big - small is KL(q || p(Z | X)) by the kernel: proved by Gibbs'
    inequality, the proof ``symelbo model`` gives ``ELBO <= log evidence``; tested when the
    posterior is proper only where a condition holds that is checked at the values alone.
    None when the step is not such a gap."""
    rel = relation_of(relation)
    if forms.kl is None or rel.strict or not rel.direction or isinstance(left, list):
        return None
    big, small = (left, right) if rel.direction > 0 else (right, left)
    if _identity(big - small, forms.kl) is None:
        return None
    gap = "the difference of the two sides is KL(q || p(Z | X)) for all values (the kernel's algebra)"
    if forms.conditions:
        return "tested", (f"{gap}, and KL >= 0 by Gibbs' inequality where "
                          f"{', '.join(forms.conditions)} > 0, which is only checked at [values]")
    return "proved", f"{gap}, and KL >= 0 by Gibbs' inequality"


def _check(model, relation, left, right, forms=None) -> tuple[str, str]:
    if left is None or right is None:
        return "unknown", "no closed form for one side"
    if isinstance(left, list) != isinstance(right, list):
        return "refuted", "one side is a gradient, the other is not"
    pairs = list(zip(left, right)) if isinstance(left, list) else [(left, right)]
    if relation == "=" and all(_identity(a, b) is not None for a, b in pairs):
        return "proved", "the closed forms agree symbolically"
    bound = _gibbs(forms, relation, left, right) if forms is not None else None
    direction = relation_of(relation).direction
    for a, b in pairs:
        try:
            va, vb = _exact(model, a), _exact(model, b)
        except Exception:  # a symbol left without a value
            return "unknown", "the closed forms differ symbolically and have no values to test"
        gap = (va - vb) / max(mpmath.mpf(1), abs(va), abs(vb))
        if relation == "=" and abs(gap) > _TOLERANCE:
            return "refuted", f"the values differ: {mpmath.nstr(va, 12)} vs {mpmath.nstr(vb, 12)}"
        if direction and gap * direction < -_TOLERANCE:
            return "refuted", f"{mpmath.nstr(va, 12)} {relation} {mpmath.nstr(vb, 12)} is false"
        if relation_of(relation).strict and abs(gap) <= _TOLERANCE:
            return "refuted", "the two sides are equal at the values"
    # the values agree with the bound, as a proof must (they are checked first all the same)
    return bound or ("tested", "holds at the model's [values]")


def instantiate(derivation: Derivation, name: str, model) -> Instantiation:
    """Instantiate every line of ``derivation`` on ``model`` and check each step there."""
    forms = _ClosedForms(model)
    chains = []
    for chain in derivation.chains:
        rows = []
        previous = None
        for index, (relation, expr, line) in enumerate(
                [("", chain.first, chain.line)] + [(s.relation, s.rhs, s.line) for s in chain.steps]):
            try:
                closed, note = forms.closed(expr), ""
            except NotInstantiable as why:
                closed, note = None, str(why)
            verdict, message = ("", note)
            if index:
                verdict, message = _check(model, relation, previous, closed, forms)
                if note:
                    message = note
            rows.append(InstantiatedStep(line, relation, calc_str(expr), closed, _value(model, closed),
                                         verdict, message, latex_str(expr), _closed_latex(closed)))
            previous = closed
        chains.append(tuple(rows))
    return Instantiation(name, model.name, derivation.title, tuple(chains),
                         tuple(p.name for p in forms.parameters))


def _closed_latex(closed) -> str:
    """The closed form as the documents print it (digamma as psi, loggamma as log Gamma)."""
    if closed is None:
        return ""
    from symelbo.io.render import closed_latex  # jinja2 is loaded only when a closed form is printed
    if isinstance(closed, list):
        return r"\left(" + ",\\ ".join(closed_latex(c) for c in closed) + r"\right)"
    return closed_latex(closed)


def text_report(inst: Instantiation) -> str:
    out = [f"{inst.title} on the model {inst.model_name!r}", ""]
    for number, chain in enumerate(inst.chains, start=1):
        out.append(f"chain {number}:")
        for step in chain:
            rel = step.relation or " "
            out.append(f"  {rel:>2} {step.abstract}")
            closed = _str(step.closed)
            if closed is not None:
                shown = closed if isinstance(closed, str) else "(" + ", ".join(closed) + ")"
                out.append(f"       closed form: {shown}")
                out.append(f"       value: {_format_value(step.value)}")
            if step.verdict:
                out.append(f"       {step.verdict}: {step.message}")
            elif step.message:
                out.append(f"       {step.message}")
        out.append("")
    out.append(f"verdict: {inst.verdict}")
    return "\n".join(out) + "\n"


def _format_value(value) -> str:
    if value is None:
        return "(no value: a symbol is left without one)"
    if isinstance(value, list):
        return "(" + ", ".join(_format_value(v) for v in value) + ")"
    return f"{value:.12g}"


def instantiate_report(derivation: Derivation, name: str, model_path: str, args,
                       width: int | None = None) -> int:
    """``symelbo derive NAME --model FILE.toml``: print the instantiated derivation.

    Text and the full documents (LaTeX, PDF, Markdown) open with the model and show each
    closed form once (:mod:`symelbo.models.model_document`); ``--fragment`` is the chains alone.
    ``width``: the text's columns (default 100).
    """
    from symelbo.io.output import emit, format_of
    from symelbo.models import model_document
    from symelbo.models.model import load_model
    model = load_model(model_path)
    inst = instantiate(derivation, name, model)
    fmt = format_of(args)
    if fmt == "json":
        emit(json.dumps(inst.as_dict(), indent=2, ensure_ascii=False) + "\n", args.output)
    elif fmt == "text":
        emit(model_document.text_derivation(inst, model, width or model_document.TEXT_WIDTH),
             args.output)
    else:
        from symelbo.io.pdf import compile_pdf
        if args.fragment:
            from symelbo.io.render import render_instantiation
            tex = render_instantiation(inst, "latex", fragment=True)
        else:
            tex = model_document.render_derivation(inst, model, "latex" if args.pdf else fmt)
        if args.pdf:
            if not args.output:
                raise InputError("--pdf needs -o OUT.pdf", "<command line>")
            compile_pdf(tex, args.output)
        else:
            emit(tex, args.output)
    return 0 if inst.passed else 1
