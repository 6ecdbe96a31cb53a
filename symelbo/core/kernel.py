"""The trusted kernel: the only code that may say a step is proved.

Proof search (:mod:`symelbo.core.checker`) never decides ``proved``. It emits a
*certificate*, a small record of the proof, and the kernel replays it: it
applies the named rules' own rewrites (their side conditions are checked in
the rewrite, every time) at the recorded positions, recomputes the normal
forms and signs the certificate appeals to, and accepts only when the step
follows. It never searches: a wrong position, a wrong rule name, a wrong
polarity or a decomposition that does not add up is a rejection, whatever
the search believed. A step with ``by`` names is proved only by a
certificate that uses those rules (and ``algebra``) alone.

The trusted base is this module with the rules (:mod:`symelbo.core.rules`), the
normal forms (:mod:`symelbo.core.normalize`), the positions
(:mod:`symelbo.core.traversal`), the notation, SymPy and mpmath's interval
arithmetic.

Certificates are plain data (JSON once their few expressions are printed);
every kind, with what the kernel checks, is in :data:`KINDS`::

    {"kind": "identical"}
    {"kind": "rewrite", "steps": [{"side": "lhs", "rule": R, "variant": i, "path": [..]}, ...]}
    {"kind": "normal_forms", "rules": [R, ...]}
    {"kind": "algebra", "method": "expand" | "cancel"}
    {"kind": "bound", "big": "lhs" | "rhs", "strict": bool, "log": bool, "argument": A}
    {"kind": "normalised", "rules": [R, ...]}     (two densities with a constant ratio)

An inequality's argument ``A`` is about ``big >= small`` (``>`` when strict):

    {"kind": "equal", "rules": [...]}
    {"kind": "sign", "of": "normal_form" | "written", "rules": [...]}
    {"kind": "inequality_rule", "rule": R, "side": "big" | "small", "path": [..],
     "polarity": 1 | -1, "rules": [...]}
    {"kind": "divergences", "terms": [[c, KL], ...], "rules": [...]}
"""

from __future__ import annotations

from dataclasses import dataclass

import mpmath
import sympy as sp

from symelbo.core.claims import READING_RULES, equality_reading, is_reading, reading_rules
from symelbo.core.hypotheses import NO_HYPOTHESES, Hypotheses, active, assuming
from symelbo.core.normalize import NormalizationLoop, equal_by, evaluate, forms_of, normal_form, tidy
from symelbo.core.notation import KL, NOTATION_CLASSES, Density, Gradient, known_nonnegative, known_positive
from symelbo.core.printing import calc_str
from symelbo.core.rules import RULES
from symelbo.core.traversal import polarity_of, replace_at, subterm_at

__all__ = ["CertificateRejected", "UnknownRule", "Proof", "KINDS", "replay", "check_rule_names",
           "sign_of", "constant_sign", "GIBBS_FORM", "rules_of", "certificate_data",
           "certificate_from_data", "prove_identity", "Risk", "value_risk"]

#: The rules it takes to read KL(a || b) as E_a[log a] - E_a[log b] (Gibbs' inequality as written).
GIBBS_FORM = frozenset({"definition_kl", "log_quotient", "linearity_expectation"})

#: Relations an equality argument also proves (an equality is a non-strict bound both ways).
_EQUAL_ENOUGH = ("=", "<=", ">=")

#: Precisions (digits) at which a constant's interval is computed until it is clear of 0.
INTERVAL_DIGITS = (30, 120, 500)


class CertificateRejected(ValueError):
    """The certificate does not establish the step; ``reason`` says which check failed."""

    def __init__(self, reason: str, certificate=None):
        super().__init__(reason)
        self.reason = reason
        self.certificate = certificate


class UnknownRule(CertificateRejected, KeyError):
    """A rule name that is not in the registry, at the kernel's door."""

    def __str__(self) -> str:
        return self.reason


@dataclass(frozen=True)
class Proof:
    """An accepted certificate and the rules the proof used (``algebra`` included)."""

    certificate: dict
    rules: frozenset


def check_rule_names(names) -> None:
    """Raise :class:`UnknownRule` unless every name is a registered rule."""
    for name in names:
        if not isinstance(name, str) or name not in RULES:
            raise UnknownRule(f"unknown rule {name!r} (`symelbo list` shows the rules)")


def rules_of(certificate: dict) -> frozenset:
    """Every rule name a certificate mentions, at any depth (for validation)."""
    found = set()
    stack = [certificate]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if isinstance(node.get("rule"), str):
                found.add(node["rule"])
            found.update(node.get("rules", ()))
            stack.extend(v for v in node.values() if isinstance(v, (dict, list)))
        elif isinstance(node, list):
            stack.extend(v for v in node if isinstance(v, (dict, list)))
    return frozenset(found)


def replay(certificate: dict, lhs: sp.Expr, relation: str, rhs: sp.Expr, by=(),
           hypotheses: Hypotheses = NO_HYPOTHESES, constant_in=()) -> Proof:
    """Replay ``certificate`` for the step ``lhs relation rhs``; a Proof or CertificateRejected.

    ``hypotheses``: the file's assumptions and definitions, the only ones the rules
    ``assumption`` and ``definition`` may use. A step up to a constant
    (``constant_in``) or a ``propto`` step is replayed as the equality it claims
    (:func:`symelbo.core.claims.equality_reading`).
    """
    if is_reading(relation, constant_in):
        by = reading_rules(by, relation, constant_in, hypotheses)
        lhs, rhs, hypotheses = equality_reading(lhs, relation, rhs, constant_in, hypotheses)
        relation = "="
    with assuming(hypotheses):
        return _replay(certificate, lhs, relation, rhs, by)


def _replay(certificate: dict, lhs: sp.Expr, relation: str, rhs: sp.Expr, by) -> Proof:
    if not isinstance(certificate, dict) or certificate.get("kind") not in KINDS:
        raise CertificateRejected(f"not a certificate kind the kernel knows: "
                                  f"{certificate.get('kind') if isinstance(certificate, dict) else certificate!r}")
    check_rule_names(by)
    check_rule_names(rules_of(certificate))
    # a model's closed forms (the algebra kind) carry their own domain conditions, which
    # the model report states; a derivation's step is proved only where it has a value
    risk = None if certificate["kind"] == "algebra" else value_risk(lhs) or value_risk(rhs)
    if risk is not None:
        raise CertificateRejected(f"a side as written holds {risk.reason}: nothing is proved "
                                  "about what may have no value", certificate)
    try:
        used = KINDS[certificate["kind"]](certificate, lhs, relation, rhs)
    except NormalizationLoop:
        raise CertificateRejected("the normal forms the certificate appeals to do not exist "
                                  "(the rules loop)", certificate) from None
    except (IndexError, KeyError, TypeError, ValueError) as error:
        if isinstance(error, CertificateRejected):
            raise
        raise CertificateRejected(f"malformed certificate ({type(error).__name__}: {error})",
                                  certificate) from None
    # Gibbs' inequality as it is written reads KL(a || b) as E_a[log a] - E_a[log b]
    allowed = frozenset(by) | {"algebra"} | (GIBBS_FORM if "gibbs_inequality" in by else frozenset())
    if by and not used <= allowed:
        extra = ", ".join(sorted(used - allowed))
        raise CertificateRejected(f"the proof uses {extra}, which the step does not name", certificate)
    return Proof(certificate, used)


def certificate_data(certificate):
    """``certificate`` as JSON data: its expressions (a divergence's factor and KL) as
    ``{"expr": TEXT}`` in the ``.calc`` notation their ``str`` prints."""
    if isinstance(certificate, dict):
        return {key: certificate_data(value) for key, value in certificate.items()}
    if isinstance(certificate, (list, tuple)):
        return [certificate_data(value) for value in certificate]
    if isinstance(certificate, sp.Basic):
        return {"expr": str(certificate)}
    return certificate


def certificate_from_data(data, read_expression):
    """The inverse of :func:`certificate_data`; ``read_expression`` parses a ``.calc`` text."""
    if isinstance(data, dict):
        if set(data) == {"expr"} and isinstance(data["expr"], str):
            return read_expression(data["expr"])
        return {key: certificate_from_data(value, read_expression) for key, value in data.items()}
    if isinstance(data, list):
        return [certificate_from_data(value, read_expression) for value in data]
    return data


def _reject(reason: str, certificate: dict):
    raise CertificateRejected(reason, certificate)


# ---------------------------------------------------------------------------
# equalities
# ---------------------------------------------------------------------------

def _identical(cert, lhs, relation, rhs) -> frozenset:
    """Both sides are one expression once SymPy evaluates them."""
    if relation not in _EQUAL_ENOUGH:
        _reject(f"two identical sides do not make '{relation}'", cert)
    if evaluate(lhs) != evaluate(rhs):
        _reject("the sides are not the same expression", cert)
    return frozenset()


def _rewrite(cert, lhs, relation, rhs) -> frozenset:
    """Each recorded rewrite applies at its position (its rule's side conditions holding
    there) and the rewritten sides are equal, numbers taken out of linear operators."""
    if relation not in _EQUAL_ENOUGH:
        _reject(f"rewrites prove an equality, not '{relation}'", cert)
    sides = {"lhs": evaluate(lhs), "rhs": evaluate(rhs)}
    used = set()
    for step in cert["steps"]:
        rule = RULES[step["rule"]]
        path = tuple(step["path"])
        forms = forms_of(rule.name)
        variant = step["variant"]
        if not (isinstance(variant, int) and 0 <= variant < len(forms)):
            _reject(f"{rule.name} has no form {variant!r}", cert)
        side = sides[step["side"]]
        sub = subterm_at(side, path)
        new = forms[variant](sub)
        if new is None or new == sub:
            _reject(f"{rule.name} does not apply at {list(path)} of the {step['side']}", cert)
        sides[step["side"]] = replace_at(side, path, new)
        used.add(rule.name)
    left, right = sides["lhs"], sides["rhs"]
    if left != right:
        memo: dict = {}
        if tidy(left, memo) != tidy(right, memo):
            _reject("the rewritten sides do not meet", cert)
    return frozenset(used)


def _algebra(cert, lhs, relation, rhs) -> frozenset:
    """lhs - rhs is 0 by SymPy's field arithmetic: expanded, then (``cancel``) as one fraction.

    For closed forms without probability notation (a model's ELBO, evidence and KL)."""
    if relation not in _EQUAL_ENOUGH:
        _reject(f"an identity proves an equality, not '{relation}'", cert)
    difference = sp.expand(lhs - rhs)
    if difference != 0 and not (cert.get("method") == "cancel" and sp.cancel(difference) == 0):
        _reject("the difference of the sides is not 0 by algebra", cert)
    return frozenset({"algebra"})


def prove_identity(lhs: sp.Expr, rhs: sp.Expr) -> Proof | None:
    """The kernel's proof that ``lhs = rhs`` by algebra alone, or None."""
    for method in ("expand", "cancel"):
        try:
            return replay({"kind": "algebra", "method": method}, lhs, "=", rhs)
        except CertificateRejected:
            continue
    return None


def _normalised(cert, lhs, relation, rhs) -> frozenset:
    """Two densities over the same variables V whose ratio does not depend on V are
    equal: each sums to one over V (whatever else is held), so the ratio is 1. The
    ratio's constancy is the equality :func:`~symelbo.core.claims.equality_reading`
    reads ``lhs propto_V rhs`` as, under the recorded rules."""
    if relation not in _EQUAL_ENOUGH:
        _reject(f"two normalised densities prove an equality, not '{relation}'", cert)
    left, right = evaluate(lhs), evaluate(rhs)
    if not (isinstance(left, Density) and isinstance(right, Density)):
        _reject("normalisation equates two densities, and a side is not one", cert)
    if set(left.variables) != set(right.variables):
        _reject("the densities are not over the same variables", cert)
    names = frozenset(cert["rules"]) - {"algebra", "normalisation"}
    over = tuple(v.name for v in left.variables)
    a, b, hypotheses = equality_reading(left, "propto", right, over, active())
    with assuming(hypotheses):
        used = equal_by(a, b, names | set(READING_RULES))
    if used is None:
        _reject("the ratio of the densities is not shown constant under the recorded rules", cert)
    return (frozenset(used) - set(READING_RULES)) | (names & set(READING_RULES)) | {"normalisation"}


def _normal_forms(cert, lhs, relation, rhs) -> frozenset:
    """The normal forms of both sides under exactly the recorded rules agree."""
    if relation not in _EQUAL_ENOUGH:
        _reject(f"equal normal forms prove an equality, not '{relation}'", cert)
    names = frozenset(cert["rules"])
    if equal_by(lhs, rhs, names - {"algebra"}) is None:
        _reject("the normal forms under the recorded rules differ", cert)
    return names


# ---------------------------------------------------------------------------
# inequalities
# ---------------------------------------------------------------------------

def _bound(cert, lhs, relation, rhs) -> frozenset:
    """``big >= small`` (or ``>``) read off the relation; the argument proves it."""
    if relation not in ("<=", ">=", "<", ">"):
        _reject(f"a bound proves an inequality, not '{relation}'", cert)
    big_name = "lhs" if relation in (">=", ">") else "rhs"
    strict = relation in ("<", ">")
    if cert["big"] != big_name or bool(cert["strict"]) != strict:
        _reject("the certificate's direction or strictness is not the step's", cert)
    big, small = (lhs, rhs) if big_name == "lhs" else (rhs, lhs)
    extra = frozenset()
    if cert["log"]:
        # log is increasing: a >= b iff log a >= log b, for a and b positive
        big, small = evaluate(big), evaluate(small)
        if not (known_positive(big) and known_positive(small)):
            _reject("a bound between logs needs both sides positive by structure", cert)
        big, small, extra = sp.log(big), sp.log(small), frozenset({"algebra"})
    argument = cert["argument"]
    kind = argument["kind"]
    if kind not in _ARGUMENTS:
        _reject(f"not an argument the kernel knows: {kind!r}", cert)
    return _ARGUMENTS[kind](argument, big, small, strict) | extra


def _equal(arg, big, small, strict) -> frozenset:
    if strict:
        _reject("an equality does not prove a strict bound", arg)
    used = equal_by(big, small, frozenset(arg["rules"]) - {"algebra"})
    if used is None:
        _reject("the sides of the bound are not equal under the recorded rules", arg)
    return frozenset(used)


def _sign(arg, big, small, strict) -> frozenset:
    """big - small (its normal form under the rules, or as written) has a known sign."""
    if arg["of"] == "written":
        target, fired = evaluate(big - small), frozenset()
    elif arg["of"] == "normal_form":
        form = normal_form(big - small, frozenset(arg["rules"]) - {"algebra"})
        target, fired = form.expr, form.fired
    else:
        _reject(f"a sign of {arg['of']!r}?", arg)
    sign = sign_of(target)
    if sign == 1 or (not strict and (sign == 0 or known_nonnegative(target))):
        return fired | {"algebra"}
    _reject("the difference of the sides is not of the needed sign", arg)


def _inequality_rule(arg, big, small, strict) -> frozenset:
    """One application of an inequality rule at a monotone position of the right
    polarity leaves an identity under the recorded equality rules."""
    rule = RULES[arg["rule"]]
    if not rule.is_inequality or strict:
        _reject(f"{rule.name} does not give this bound", arg)
    on_big = arg["side"] == "big"
    side = evaluate(big if on_big else small)
    path = tuple(arg["path"])
    polarity = polarity_of(side, path)
    if polarity is None or polarity != arg["polarity"]:
        _reject(f"the position {list(path)} is not monotone with polarity {arg['polarity']}", arg)
    # on the big side, shrink where the polarity is +, grow where it is -; the reverse on small
    shrink = (polarity > 0) == on_big
    rewrite = rule.weaken if shrink else rule.strengthen
    new = rewrite(subterm_at(side, path)) if rewrite is not None else None
    if new is None:
        _reject(f"{rule.name} does not apply at {list(path)}", arg)
    changed = replace_at(side, path, new)
    pair = (changed, small) if on_big else (big, changed)
    used = equal_by(pair[0], pair[1], frozenset(arg["rules"]) - {"algebra", rule.name})
    if used is None:
        _reject(f"after {rule.name}, the sides are not equal under the recorded rules", arg)
    return frozenset(used) | {rule.name}


def _divergences(arg, big, small, strict) -> frozenset:
    """big - small = c1 KL1 + ... + ck KLk + r with every c > 0 and r of the needed sign;
    Gibbs' inequality makes every KL >= 0. The identity is checked on normal forms."""
    names = frozenset(arg["rules"]) - {"algebra", "gibbs_inequality"} | GIBBS_FORM
    difference = normal_form(big - small, names)
    rest, used = difference.expr, set(difference.fired)
    for factor, divergence in arg["terms"]:
        if not isinstance(divergence, KL):
            _reject("a term of the decomposition is not a KL divergence", arg)
        if sign_of(factor) != 1:
            _reject(f"the factor {factor} of a divergence is not positive", arg)
        form = normal_form(divergence, names)
        used |= form.fired
        rest = sp.expand(rest - factor * form.expr)
    sign = sign_of(rest)
    if not (sign == 1 or (sign == 0 and not strict)):
        _reject("what is left beside the divergences is not of the needed sign", arg)
    return frozenset(used) | {"gibbs_inequality", "definition_kl"}


_ARGUMENTS = {"equal": _equal, "sign": _sign, "inequality_rule": _inequality_rule,
              "divergences": _divergences}

#: Every certificate kind and the replay that checks it.
KINDS = {"identical": _identical, "rewrite": _rewrite, "normal_forms": _normal_forms,
         "bound": _bound, "algebra": _algebra, "normalised": _normalised}


# ---------------------------------------------------------------------------
# written sides that may have no value
# ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Risk:
    """A place where a written side may have no real value, and whether an instance
    can show it (a derivative at a kink evaluates numerically all the same)."""

    reason: str
    checkable: bool = True


_NO_VALUE = frozenset({sp.zoo, sp.nan, sp.oo, -sp.oo, sp.I})


def _positive(expr: sp.Expr) -> bool:
    """Positive by structure, or, for a closed form without notation (a model's), by the
    assumptions of its symbols (``b`` declared positive, ``lambda0 + n``)."""
    return known_positive(expr) or (not expr.has(*NOTATION_CLASSES) and expr.is_positive is True)


def value_risk(expr: sp.Expr):
    """Where ``expr`` as written may have no real value (a :class:`Risk`), or None:
    a division by, a log of, or a fractional power of what is not positive by
    structure (X - 1, p(X) - q(X), X), an infinity or an imaginary number, or a
    gradient through a root of what may be 0. SymPy's evaluation may have
    cancelled it away ((X - 1)/(X - 1) is 1), so this looks at the written form:
    no proof is replayed for such a step, which can hold at most where it is defined."""
    stack = [(expr, False)]
    while stack:
        node, differentiated = stack.pop()
        if isinstance(node, Density):
            continue
        if node in _NO_VALUE:
            return Risk(f"the value {node}, which is not a real number")
        inner = differentiated or isinstance(node, Gradient)
        stack.extend((a, inner) for a in node.args)
        if isinstance(node, sp.log) and not _positive(node.args[0]):
            return Risk(f"the log of {calc_str(node.args[0])}, which may be <= 0")
        if node.is_Pow and not _positive(node.base):
            base, exponent = node.base, node.exp
            if exponent.is_positive and exponent.is_integer:
                continue  # X^2
            if exponent.is_positive and known_nonnegative(base):
                if not differentiated:
                    continue  # the square root of a square
                return Risk(f"a gradient through the power {calc_str(exponent)} of "
                            f"{calc_str(base)}, which has no derivative where that is 0",
                            checkable=False)
            if exponent.is_nonpositive:
                return Risk(f"a division by {calc_str(base)}, which may be 0")
            return Risk(f"the power {calc_str(exponent)} of {calc_str(base)}, which may be negative")
    return None


# ---------------------------------------------------------------------------
# signs
# ---------------------------------------------------------------------------

def sign_of(expr: sp.Expr):
    """+1, 0 or -1 when the sign of ``expr`` is known structurally, or of a constant
    by interval arithmetic; else None."""
    if expr.is_Number:
        if expr is sp.nan or expr.is_finite is not True:
            return None
        return 1 if expr.is_positive else (0 if expr.is_zero else -1)
    if known_positive(expr):
        return 1
    if not expr.free_symbols and not expr.has(*NOTATION_CLASSES):
        return constant_sign(expr)
    return None


def constant_sign(expr: sp.Expr):
    """+1 or -1 when the real constant ``expr`` (log 6 - log 5) is told from 0 by
    interval arithmetic, else None. mpmath's iv context rounds every operation
    outwards, so an interval clear of 0 is a proof of the sign."""
    saved = mpmath.iv.dps
    try:
        for digits in INTERVAL_DIGITS:
            mpmath.iv.dps = digits
            value = _interval(expr)
            if value is None:
                return None
            if value.a > 0:
                return 1
            if value.b < 0:
                return -1
        return None
    except (ValueError, ZeroDivisionError, OverflowError, TypeError, MemoryError):
        return None   # a log of what may be <= 0, a division by what may be 0, a huge power
    finally:
        mpmath.iv.dps = saved


def _interval(e):
    """An mpmath interval holding the constant ``e``, or None for what it cannot bound."""
    iv = mpmath.iv
    if e.is_Rational:
        return iv.mpf(int(e.p)) / int(e.q)
    if e is sp.E:
        return iv.e
    if e is sp.pi:
        return iv.pi
    parts = [_interval(a) for a in e.args]
    if any(p is None for p in parts) or not parts:
        return None
    if e.is_Add:
        return sum(parts[1:], parts[0])
    if e.is_Mul:
        out = parts[0]
        for p in parts[1:]:
            out = out * p
        return out
    if e.is_Pow:
        if e.exp.is_Integer:
            return parts[0] ** int(e.exp)
        return iv.exp(parts[1] * iv.log(parts[0])) if parts[0].a > 0 else None
    if isinstance(e, sp.log):
        return iv.log(parts[0]) if parts[0].a > 0 else None
    if isinstance(e, sp.exp):
        return iv.exp(parts[0])
    return None
