"""Documents about a model file: its report and a derivation instantiated on it, as text, LaTeX and Markdown.

A model document opens with the model itself, the way a paper's model section
does: each prior, the likelihood and each factor of q, in symbols and in words
(the family's parameters by name), the data's size and sufficient statistics
and the ``[values]``. Closed forms are printed with the data as their
sufficient statistics (``n``, ``sum(x)``...), whose values the model section
states, so a document never shows a sum of the data as a loose constant.

Map of this module:

- printing: :func:`expr_text` and :func:`expr_latex` (digamma as psi, log-gamma
  as log Gamma, decimals with :data:`DIGITS_SHOWN` significant digits, never a
  binary rational), :func:`number_text` and :func:`number_tex` for values,
  :func:`wrap_terms` (a formula broken at its top-level terms to a width);
- :func:`model_view`: the model section's records (:class:`ModelView`);
- :func:`format_text`, :func:`render_report`, :func:`render_model` and
  :func:`run_model`: ``symelbo model FILE [--json] [--format ...] [--pdf -o OUT]``;
- :func:`derivation_view`, :func:`text_derivation`, :func:`render_derivation`:
  ``symelbo derive NAME --model FILE``, each distinct closed form shown once
  and named (F1, F2, ...), later lines "the same"; a gradient's components
  labelled by their parameter.
"""

from __future__ import annotations

import json
import math
import re
import textwrap
from dataclasses import dataclass
from typing import TextIO

import mpmath
import sympy as sp
from sympy.printing.latex import LatexPrinter
from sympy.printing.str import StrPrinter

from symelbo.core.relations import RELATIONS
from symelbo.core.verdicts import weakest
from symelbo.io.render import TeX, break_lines, fold_tex_lines, latex_environment, \
    markdown_environment, math_width, shortened, tex_escape
from symelbo.io.report import TEXT_WIDTH
from symelbo.models.model import Model, NoClosedForm, load_model
from symelbo.models.vectors import LOWER, is_joint
from symelbo.models.model_report import exit_status, report

__all__ = ["DIGITS_SHOWN", "expr_text", "expr_latex", "number_text", "number_tex", "wrap_terms",
           "ModelView", "model_view", "model_text", "format_text", "render_report", "render_model",
           "run_model", "derivation_view", "text_derivation", "render_derivation", "FORMATS"]

#: Significant digits of every decimal a model document prints.
DIGITS_SHOWN = 12
#: The formats of a model document besides JSON.
FORMATS = ("text", "latex", "markdown")
#: A fraction with one of these denominators stays a fraction (1/2, 3/4): it is
#: structure, not a measured number; any other one is printed as a decimal.
_KEPT_DENOMINATORS = frozenset({2, 3, 4, 6, 8, 9, 12, 16})
#: How the documents name a family's parameters.
_PARAMETER_WORDS = {"std": "standard deviation", "p": "probability", "probs": "probabilities",
                    "scale_tril": "lower Cholesky factor of the covariance"}
#: Room for a closed form in a LaTeX document's line (render.math_width units).
CLOSED_BUDGET = 60.0
_QUANTITIES = (("elbo", "ELBO", r"\mathcal{L}(q)"),
               ("log_evidence", "log p(X)", r"\log p(X)"),
               ("kl", "KL(q || p(Z | X))", r"\mathrm{KL}(q \,\|\, p(Z \mid X))"))


# ---------------------------------------------------------------------------
# printing
# ---------------------------------------------------------------------------

def _decimals(expr):
    """The expression with every measured number as a decimal: a fraction whose denominator
    is not small structure (a sum of decimal data, a binary rational from a float) becomes a
    Float of :data:`DIGITS_SHOWN` digits."""
    if not isinstance(expr, sp.Basic):
        return expr

    def convert(node):
        if isinstance(node, sp.Rational) and not node.is_Integer and node.q not in _KEPT_DENOMINATORS:
            return sp.Float(node, DIGITS_SHOWN)
        return node
    return expr.replace(lambda node: isinstance(node, sp.Rational) and not node.is_Integer, convert)


class _TextPrinter(StrPrinter):
    """Plain text of a closed form: psi for the digamma function, logGamma and Gamma by name."""

    def _print_polygamma(self, expr):
        order, arg = expr.args
        head = {0: "psi", 1: "psi'"}.get(int(order), f"psi^({order})") if order.is_Integer \
            else f"psi^({self._print(order)})"
        return f"{head}({self._print(arg)})"

    def _print_loggamma(self, expr):
        return f"logGamma({self._print(expr.args[0])})"

    def _print_gamma(self, expr):
        return f"Gamma({self._print(expr.args[0])})"


class _LatexPrinter(LatexPrinter):
    """LaTeX of a closed form: psi, log Gamma and Gamma; arguments in ``\\left( \\right)`` so
    that :func:`~symelbo.io.render.break_lines` never breaks inside them."""

    def _call(self, head: str, arg, exp=None) -> str:
        text = head + r"{\left(" + self._print(arg) + r"\right)}"
        return text if exp is None else r"\left(" + text + r"\right)^{" + str(exp) + "}"

    def _print_polygamma(self, expr, exp=None):
        order, arg = expr.args
        head = {0: r"\psi", 1: r"\psi'", 2: r"\psi''"}.get(int(order), r"\psi^{(" + str(order) + ")}") \
            if order.is_Integer else r"\psi^{(" + self._print(order) + ")}"
        return self._call(head, arg, exp)

    def _print_loggamma(self, expr, exp=None):
        return self._call(r"\log\Gamma", expr.args[0], exp)

    def _print_gamma(self, expr, exp=None):
        return self._call(r"\Gamma", expr.args[0], exp)

    def _print_Pow(self, expr):
        # a statistic printed as a sum needs its parentheses: (sum_i x_i)^2, not sum_i x_i^2
        if expr.base in self.bracketed and expr.exp.is_positive:
            return (r"\left(" + self._print(expr.base) + r"\right)^{" + self._print(expr.exp) + "}")
        return super()._print_Pow(expr)


def expr_text(expr) -> str:
    """A closed form as plain text (decimals, psi, logGamma)."""
    return _TextPrinter({"full_prec": False}).doprint(_decimals(expr))


def expr_latex(expr, names: dict | None = None) -> TeX:
    """A closed form as LaTeX; ``names`` maps symbols to their LaTeX (the data statistics)."""
    printer = _LatexPrinter({"full_prec": False, "symbol_names": names or {}})
    printer.bracketed = {s for s, tex in (names or {}).items() if r"\sum" in tex}
    return TeX(printer.doprint(_decimals(expr)))


#: A logarithm's argument of at least this many terms, met twice or more, gets a name.
ABBREVIATE_TERMS = 3


def abbreviations(exprs, taken) -> tuple[list, list[tuple[sp.Symbol, sp.Expr]]]:
    """The expressions with each long argument of a logarithm that occurs twice or more
    replaced by a new symbol w1, w2, ... (none of ``taken``); and the (symbol, definition)
    pairs, in order of first occurrence. The same expressions, shorter to read."""
    counts: dict = {}
    for expr in exprs:
        if not isinstance(expr, sp.Basic):
            continue
        for node in sp.preorder_traversal(expr):
            if isinstance(node, sp.log) and node.args[0].is_Add and \
                    len(node.args[0].args) >= ABBREVIATE_TERMS:
                counts[node.args[0]] = counts.get(node.args[0], 0) + 1
    repeated = [arg for arg, count in counts.items() if count >= 2]
    names, index = [], 1
    taken = {str(t) for t in taken}
    for arg in repeated:
        while f"w{index}" in taken:
            index += 1
        names.append((sp.Symbol(f"w{index}", positive=bool(arg.is_positive)), arg))
        index += 1
    mapping = {arg: symbol for symbol, arg in names}
    return [e.xreplace(mapping) if isinstance(e, sp.Basic) else e for e in exprs], names


def display_lines(expr, names: dict, budget: float = None) -> tuple[TeX, ...]:
    """A closed form as display lines of about ``budget`` width; a product too wide for a line
    (``r_1 (...)``) is shown multiplied out when that gives narrower lines, the same value."""
    budget = budget or CLOSED_BUDGET
    lines = break_lines(expr_latex(expr, names), budget)
    widest = max(math_width(line) for line in lines)
    if widest > budget * 1.1 and isinstance(expr, sp.Expr):
        expanded = break_lines(expr_latex(sp.expand(expr), names), budget)
        if max(math_width(line) for line in expanded) < widest:
            lines = expanded
    return tuple(lines)


def _mpf(value):
    if isinstance(value, sp.Basic):
        value = sp.Float(value, 30) if not value.is_Integer else int(value)
    return value


def number_text(value) -> str:
    """A value as text: an integer as it is, any other number with 12 significant digits."""
    if value is None:
        return "?"
    value = _mpf(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return mpmath.nstr(mpmath.mpf(value), DIGITS_SHOWN, min_fixed=-6, max_fixed=12)


def number_tex(value) -> TeX:
    """A value as math, ``1.5 \\times 10^{-7}`` for an exponent."""
    if value is None:
        return TeX(r"\text{?}")
    text = number_text(value)
    if text in ("inf", "-inf", "nan", "+inf"):
        return TeX(r"\text{" + text + "}")
    if "e" in text:
        mantissa, exponent = text.split("e")
        text = rf"{mantissa} \times 10^{{{int(exponent)}}}"
    return TeX(text)


def _top_level_terms(text: str) -> list[str]:
    """``a + b*(c - d) - e`` -> ``["a", "+ b*(c - d)", "- e"]``: split before top-level + and -."""
    terms, depth, start = [], 0, 0
    for i, char in enumerate(text):
        if char in "([{":
            depth += 1
        elif char in ")]}":
            depth -= 1
        elif depth == 0 and char in "+-" and text[i - 1:i] == " " and text[i + 1:i + 2] == " ":
            terms.append(text[start:i].strip())
            start = i
    terms.append(text[start:].strip())
    return [t for t in terms if t]


def wrap_terms(text: str, width: int, first: str, rest: str) -> list[str]:
    """``first + text`` as lines of at most ``width`` characters, broken before top-level
    ``+``/``-`` (a term longer than a line is broken at its spaces); later lines start with
    ``rest``."""
    lines = [first]
    for term in _top_level_terms(text):
        prefix = first if len(lines) == 1 else rest
        joined = lines[-1] + ("" if lines[-1] == prefix else " ") + term
        if len(joined) <= width or lines[-1] == prefix:
            lines[-1] = joined
        else:
            lines.append(rest + term)
    out = []
    for line in lines:
        if len(line) <= width:
            out.append(line)
        else:  # one term wider than the line: at its spaces, then anywhere
            out.extend(textwrap.wrap(line, width, subsequent_indent=rest + "  ",
                                     break_on_hyphens=False))
    return out


_KEEP = "\u00a0"   # a space no line is broken at (textwrap breaks at ASCII whitespace only)


def _wrap_prose(text: str, width: int, first: str, rest: str) -> list[str]:
    lines = textwrap.wrap(text, width, initial_indent=first, subsequent_indent=rest,
                          break_on_hyphens=False) or [first.rstrip()]
    return [line.replace(_KEEP, " ") for line in lines]


def _pair(name: str, value: str) -> str:
    """``name = value``, kept on one line."""
    return f"{name}{_KEEP}={_KEEP}{value}"


# ---------------------------------------------------------------------------
# the model section
# ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Statement:
    """One line of the model: a prior, the likelihood or a factor of q."""

    role: str            # "prior", "likelihood", "variational factor"
    text: str            # "mu | tau ~ Normal(mean mu0, standard deviation 1/sqrt(lambda0*tau))"
    tex: TeX             # "p(\mu \mid \tau) = \mathrm{Normal}(\mu \mid \mu_0, ...)"
    words: TeX           # "prior of $\mu$: Normal (mean, standard deviation)"


@dataclass(frozen=True)
class Entry:
    """A named number: a data statistic or a value."""

    text_name: str
    tex_name: TeX
    value: str
    value_tex: TeX


@dataclass(frozen=True)
class ModelView:
    title: str
    path: str
    priors: tuple[Statement, ...]
    likelihoods: tuple[Statement, ...]
    factors: tuple[Statement, ...]
    meanfield: TeX
    data: tuple[tuple[str, TeX, int], ...]        # observed name (text, TeX), size
    statistics: tuple[Entry, ...]
    values: tuple[Entry, ...]
    names: dict                                    # symbol -> LaTeX, for closed forms


def _statistic_names(name: str, observed: dict) -> tuple[str, str] | None:
    """(text, LaTeX) of a data statistic symbol ``n``, ``sum(x)``, ``sum(x**2)``, ``count(x=1)``,
    ``sum(log(gamma(k + 1)))``; None for a name of another shape."""
    if name == "n":
        return "n", "n"
    match = re.fullmatch(r"count\((\w+)=(-?\d+)\)", name)
    if match and match.group(1) in observed:
        var = observed[match.group(1)]
        return name, rf"\#\{{i : {var} = {match.group(2)}\}}"
    match = re.fullmatch(r"sum\((.*)\)", name)
    if not match:
        return None
    inner = match.group(1)
    for obs, var in observed.items():
        forms = {obs: var, f"{obs}**2": f"{var}^{{2}}", f"log({obs})": rf"\log {var}",
                 f"log(1 - {obs})": rf"\log(1 - {var})", f"log(gamma({obs} + 1))": rf"\log {var}!",
                 f"{obs}**2/2": f"{var}^{{2}}/2"}
        if inner in forms:
            return name, rf"\textstyle\sum_{{i}} {forms[inner]}"
    return None


def _symbol_tex(symbol: sp.Symbol, names: dict) -> str:
    return names.get(symbol) or sp.latex(symbol)


def _words(family, role: str) -> TeX:
    """``prior of $\\mu$: Normal (mean, standard deviation)``; ``role`` is TeX."""
    params = ", ".join(_PARAMETER_WORDS.get(p, p) for p in family.params)
    return TeX(f"{role}: {tex_escape(family.name)}" + (f" ({params})" if params else ""))


def _dist_text(dist, per: str, indexed=frozenset()) -> str:
    """``Normal(mean mu0, standard deviation s)`` from the file's own text; a one-letter
    parameter name (Beta's a and b) is no word and is left out; the names in ``indexed``
    (a per-observation latent and its factor's parameters) get their index ``_i``."""
    params = list(dist.family.params)
    shown = []
    for i, arg in enumerate(dist.call.args):
        label = _PARAMETER_WORDS.get(params[i], params[i]) if i < len(params) and \
            not dist.family.variadic else ""
        text = arg.text
        for name in indexed:
            text = re.sub(rf"\b{re.escape(name)}\b", name + "_i", text)
        shown.append(f"{label} {text}".strip() if len(label) > 1 else text)
    return f"{dist.call.name}(" + ", ".join(shown) + ")" + per


def _picked(expr, names: dict):
    """``expr`` with each sum_k [z = k] mu_k (how mu[z] is read) written back as one
    symbol printed mu_{z}, as the file wrote it."""
    def is_pick(e):
        if not isinstance(e, sp.Add):
            return False
        deltas = [next((f for f in sp.Mul.make_args(t) if isinstance(f, sp.KroneckerDelta)),
                       None) for t in e.args]
        return all(d is not None for d in deltas) and len({frozenset(d.args) - {
            a for a in d.args if a.is_Integer} for d in deltas}) == 1

    def shown(e):
        delta = next(f for f in sp.Mul.make_args(e.args[0]) if isinstance(f, sp.KroneckerDelta))
        z = next(a for a in delta.args if not a.is_Integer)
        comp = sp.Mul(*[f for f in sp.Mul.make_args(e.args[0]) if f is not delta])
        base = str(comp).rsplit("_", 1)[0] if isinstance(comp, sp.Symbol) else None
        if base is None:
            return e
        symbol = sp.Symbol(f"{base}[{z}]")
        names[symbol] = sp.latex(sp.Symbol(base)) + "_{" + names.get(z, sp.latex(z)) + "}"
        return symbol

    return expr.replace(is_pick, shown) if expr.has(sp.KroneckerDelta) else expr


def _dist_tex(dist, var_tex: str, names: dict) -> TeX:
    args = ", ".join(sp.latex(_picked(a, names), symbol_names=names) for a in dist.args)
    return TeX(rf"\mathrm{{{dist.family.name}}}\left({var_tex} \mid {args}\right)")


def _bold(name: str) -> str:
    """A vector's TeX: its name in bold (``\\boldsymbol{\\theta}``)."""
    return r"\boldsymbol{" + sp.latex(sp.Symbol(name)) + "}"


def _factor_variable(lat, model: Model, names: dict) -> str:
    """The variable of a factor of q: w_k for independent components, bold w for a joint law."""
    if lat.shape is None:
        return _symbol_tex(model.symbol(lat.name), names)
    if is_joint(lat.q.family):
        return _bold(lat.name)
    return sp.latex(sp.Symbol(lat.name)) + "_{k}"


def _vector_statement(lat, role: str, dist, args_list, names: dict, cond: list,
                      latent_of: dict) -> Statement:
    """A vector latent's prior or q: one law of all K components (bold), or the law of
    each component w_k, k = 0, ..., K-1, its vector parameters indexed by k."""
    k = lat.shape
    cond_text = (" | " + ", ".join(latent_of[s].name for s in cond)) if cond else ""
    cond_tex = (r" \mid " + ", ".join(_symbol_tex(s, names) for s in cond)) if cond else ""
    prefix = "p" if role == "prior" else "q"
    if is_joint(dist.family):
        var_tex = _bold(lat.name)
        structured = args_list[0]
        if dist.family.name == "Dirichlet" and len(dist.call.args) >= 2:
            shown = [sp.latex(a, symbol_names=names) for a in structured[0]]
        else:
            shown = []
            for slot, arg, entries in zip(dist.family.slots, dist.call.args, structured):
                bare = re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", arg.text.strip())
                if slot == LOWER:  # the covariance L L^T
                    shown.append(_bold(arg.text.strip()) + _bold(arg.text.strip()) + r"^{\top}"
                                 if bare else sp.latex(entries[0][0] ** 2, symbol_names=names)
                                 + r" I")
                else:
                    shown.append(_bold(arg.text.strip()) if bare and len(set(entries)) > 1
                                 or bare and not entries[0].is_number
                                 else sp.latex(entries[0], symbol_names=names))
        text = f"{lat.name}{cond_text} ~ {dist.text()}" if role == "prior" else \
            f"q({lat.name}) = {dist.text()}"
        head = f"{prefix}({var_tex}{cond_tex})" if role == "prior" else f"q({var_tex})"
        word = f"prior of ${var_tex}$" if role == "prior" else f"factor $q({var_tex})$"
        return Statement(role, text + f", {k} components",
                         TeX(head + rf" = \mathrm{{{dist.family.name}}}\left({var_tex} \mid "
                             + ", ".join(shown) + r"\right)"),
                         _words(dist.family, word))
    # independent components: the law of w_k, with component 0's parameters written as _k
    comp0 = {s for s in lat.symbols[:1]}
    local = dict(names)
    local.update({s: sp.latex(sp.Symbol(lat.name)) + "_{k}" for s in comp0})
    for a in args_list[0]:
        for s in a.free_symbols:
            text = str(s)
            if text.endswith("_0") and s not in latent_of:
                local[s] = sp.latex(sp.Symbol(text[:-2])) + "_{k}"
    var_tex = sp.latex(sp.Symbol(lat.name)) + "_{k}"
    args = ", ".join(sp.latex(a, symbol_names=local) for a in args_list[0])
    each = rf", \quad k = 0, \ldots, {k - 1}"
    head = f"{prefix}({var_tex}{cond_tex})" if role == "prior" else f"q({var_tex})"
    text = (f"{lat.name}_k{cond_text} ~ " if role == "prior" else f"q({lat.name}_k) = ") + \
        _dist_text(dist, f", k = 0..{k - 1}")
    word = f"prior of ${var_tex}$" if role == "prior" else f"factor $q({var_tex})$"
    return Statement(role, text,
                     TeX(head + rf" = \mathrm{{{dist.family.name}}}\left({var_tex} \mid {args}"
                         + r"\right)" + each), _words(dist.family, word))


def model_view(model: Model) -> ModelView:
    """The records of a model's section: its distributions, data and values."""
    observed = {o.name: o.name + "_i" for o in model.observed}
    observed_tex = {o.name: sp.latex(sp.Symbol(o.name)) + "_{i}" for o in model.observed}
    names: dict = {}
    latent_of = {}
    #: a vector latent's stand-in symbol (printed bold), by name
    stand_in = {}
    for lat in model.latents:
        symbol = model.symbol(lat.name)
        if isinstance(symbol, tuple):
            stand_in[lat.name] = sp.Symbol(lat.name)
            names[stand_in[lat.name]] = _bold(lat.name)
            for comp in symbol:
                latent_of[comp] = lat
            continue
        latent_of[symbol] = lat
        if lat.per:
            names[symbol] = sp.latex(symbol) + "_{i}"
    for obs in model.observed:
        if obs.symbol is not None:
            names[obs.symbol] = observed_tex[obs.name]
    params = {str(p) for p in model.variational_parameters}
    for lat in model.latents:   # a per-observation factor's parameters r stand for r_1, ..., r_n
        if lat.per and lat.q is not None:
            for s in set().union(*(a.free_symbols for a in lat.q.args)):
                if f"{s}_1" in params:
                    names[s] = sp.latex(s) + "_{i}"
    indexed = frozenset(str(s) for s, tex in names.items() if tex.endswith("_{i}")
                        and s not in {o.symbol for o in model.observed})
    sizes = {o.name: len(o.data) for o in model.observed}
    for_each = {o.name: f", i = 1..{len(o.data)}" for o in model.observed}
    for_each_tex = {o.name: rf", \quad i = 1, \ldots, {len(o.data)}" for o in model.observed}

    def given(dist, own=None) -> list:
        free = set().union(*(a.free_symbols for a in dist.args)) if dist.args else set()
        out = []
        for s in latent_of:
            if s in free and latent_of[s] is not own:
                # a component stands for its vector, once
                s = stand_in.get(latent_of[s].name, s)
                if s not in out:
                    out.append(s)
        return out

    for name, s in stand_in.items():
        latent_of[s] = next(l for l in model.latents if l.name == name)

    priors = []
    for lat in model.latents:
        if lat.shape is not None:
            priors.append(_vector_statement(lat, "prior", lat.prior, lat.prior_args, names,
                                            given(lat.prior, lat), latent_of))
            continue
        symbol = model.symbol(lat.name)
        var_text = lat.name + ("_i" if lat.per else "")
        var_tex = _symbol_tex(symbol, names)
        cond = given(lat.prior, lat)
        cond_text = (" | " + ", ".join(latent_of[s].name for s in cond)) if cond else ""
        cond_tex = (r" \mid " + ", ".join(_symbol_tex(s, names) for s in cond)) if cond else ""
        per, per_tex = (for_each[lat.per], for_each_tex[lat.per]) if lat.per else ("", "")
        priors.append(Statement(
            "prior", f"{var_text}{cond_text} ~ {_dist_text(lat.prior, per, indexed)}",
            TeX(f"p({var_tex}{cond_tex}) = " + _dist_tex(lat.prior, var_tex, names) + per_tex),
            _words(lat.prior.family, f"prior of ${var_tex}$")))
    likelihoods = []
    for obs in model.observed:
        cond = given(obs.dist)
        var_tex = observed_tex[obs.name]
        cond_text = (" | " + ", ".join(latent_of[s].name + ("_i" if latent_of[s].per else "")
                                       for s in cond)) if cond else ""
        cond_tex = (r" \mid " + ", ".join(_symbol_tex(s, names) for s in cond)) if cond else ""
        likelihoods.append(Statement(
            "likelihood", f"{observed[obs.name]}{cond_text} ~ {_dist_text(obs.dist, for_each[obs.name], indexed)}",
            TeX(f"p({var_tex}{cond_tex}) = " + _dist_tex(obs.dist, var_tex, names)
                + for_each_tex[obs.name]),
            _words(obs.dist.family, f"likelihood of ${var_tex}$")))
    factors = []
    for lat in model.latents:
        if lat.q is None:
            continue
        if lat.shape is not None:
            factors.append(_vector_statement(lat, "variational factor", lat.q, lat.q_args,
                                             names, [], latent_of))
            continue
        symbol = model.symbol(lat.name)
        var_tex = _symbol_tex(symbol, names)
        per, per_tex = (for_each[lat.per], for_each_tex[lat.per]) if lat.per else ("", "")
        var_text = lat.name + ("_i" if lat.per else "")
        factors.append(Statement(
            "variational factor", f"q({var_text}) = {_dist_text(lat.q, per, indexed)}",
            TeX(f"q({var_tex}) = " + _dist_tex(lat.q, var_tex, names) + per_tex),
            _words(lat.q.family, f"factor $q({var_tex})$")))
    meanfield = TeX("q(Z) = " + " ".join(
        (r"\textstyle\prod_{i} " if lat.per else r"\textstyle\prod_{k} "
         if lat.shape is not None and not is_joint(lat.q.family) else "")
        + f"q({_factor_variable(lat, model, names)})"
        for lat in model.latents if lat.q is not None))
    statistics = []
    for symbol, value in model.statistics.items():
        shown = _statistic_names(str(symbol), observed_tex) or (str(symbol), r"\texttt{" + tex_escape(str(symbol)) + "}")
        names[symbol] = shown[1]
        statistics.append(Entry(shown[0], TeX(shown[1]), number_text(value), number_tex(value)))
    values = tuple(Entry(str(s), TeX(sp.latex(s)), number_text(v), number_tex(v))
                   for s, v in model.values.items())
    return ModelView(
        title=shortened(model.name), path=model.path or "", priors=tuple(priors),
        likelihoods=tuple(likelihoods), factors=tuple(factors), meanfield=meanfield,
        data=tuple((o.name, TeX(sp.latex(sp.Symbol(o.name))), sizes[o.name]) for o in model.observed),
        statistics=tuple(statistics), values=values, names=names)


def model_text(view: ModelView, width: int = TEXT_WIDTH) -> list[str]:
    """The model section as text lines of at most ``width`` characters."""
    lines = []
    label = max(len(s.role) for s in view.priors + view.likelihoods + view.factors) + 2
    for s in view.priors + view.likelihoods + view.factors:
        lines += _wrap_prose(s.text, width, f"  {s.role + ':':<{label}}", " " * (label + 2))
    for name, _, size in view.data:
        stats = ", ".join(_pair(e.text_name.replace(" ", _KEEP), e.value) for e in view.statistics)
        lines += _wrap_prose(f"{size} observations of {name}" + (f"; statistics: {stats}" if stats else ""),
                             width, f"  {'data:':<{label}}", " " * (label + 2))
    if view.values:
        lines += _wrap_prose(", ".join(_pair(e.text_name, e.value) for e in view.values), width,
                             f"  {'values:':<{label}}", " " * (label + 2))
    return lines


# ---------------------------------------------------------------------------
# the model report: symelbo model FILE
# ---------------------------------------------------------------------------

#: A closed form in the data's statistics with more operations than this (a regression's
#: posterior written in sum(x1*x2), ... runs to pages) is shown with the statistics' values.
LONG_FORM_OPS = 400
#: What a document says under a closed form shown with the statistics' values.
AT_DATA_NOTE = ("written with the data's statistics as numbers: in the statistics it has "
                "{ops} operations")


def _closed_forms(model: Model, notes: dict | None = None) -> tuple[dict, list]:
    """ELBO, log evidence and KL in closed form with the data as statistics (None where there
    is none), long repeated logarithm arguments named (:func:`abbreviations`); and the names.
    A form longer than LONG_FORM_OPS is given at the data's values, and ``notes`` (when
    given) gets the reason under its key."""
    out = {}
    for key, compute in (("elbo", model.elbo), ("log_evidence", model.log_evidence),
                         ("kl", model.kl_to_posterior)):
        try:
            out[key] = compute(data_symbols=True)
        except NoClosedForm:
            out[key] = None
            continue
        ops = sp.count_ops(out[key])
        if ops > LONG_FORM_OPS:
            out[key] = compute(data_symbols=False)
            if notes is not None:
                notes[key] = AT_DATA_NOTE.format(ops=ops)
    keys = list(out)
    taken = set(model.environment()).union(*(e.free_symbols for e in out.values() if e is not None))
    exprs, names = abbreviations([out[k] for k in keys], taken)
    return dict(zip(keys, exprs)), names


def format_text(rep: dict, path: str | None = None, model: Model | None = None,
                width: int = TEXT_WIDTH) -> str:
    """The report as plain text of at most ``width`` columns: the model (when given), each
    quantity's value and closed form, the checks."""
    header = f"model: {rep['name']}" + (f"  ({path})" if path else "")
    lines = _wrap_prose(header, width, "", "    ") + [""]
    forms = {}
    if model is not None:
        lines += model_text(model_view(model), width) + [""]
        notes: dict = {}
        forms, names = _closed_forms(model, notes)
        for symbol, definition in names:
            lines += wrap_terms(expr_text(definition), width, f"where {symbol} = ", "      ")
        if names:
            lines.append("")
    for key, label, _ in _QUANTITIES:
        q = rep[key]
        lines.append(f"{label} = {number_text(q['value'])}")
        closed = forms.get(key)
        if closed is not None:
            lines += wrap_terms(expr_text(closed), width, "    = ", "      ")
            if key in notes:
                lines += _wrap_prose(f"({notes[key]})", width, "    ", "    ")
        elif q["expr"] is not None:
            lines += wrap_terms(q["expr"], width, "    = ", "      ")
        else:
            lines += _wrap_prose(f"no closed form: {q['reason']}", width, "    ", "    ")
        lines.append("")
    lines.append("checks:")
    verdict_width = max(len(c["verdict"]) for c in rep["checks"])
    for c in rep["checks"]:
        lines += _wrap_prose(f"{c['name']}: {c['message']}", width,
                             f"  {c['verdict']:<{verdict_width}}  ", " " * (verdict_width + 4))
    lines.append("")
    lines.append("all checks proved or tested" if exit_status(rep) == 0 else
                 "some checks are refuted or unknown")
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class QuantityView:
    label: TeX
    lines: tuple[TeX, ...]       # the closed form's display lines; empty without one
    value: TeX
    reason: str
    note: str = ""               # how the closed form is written, when not in the statistics


@dataclass(frozen=True)
class CheckView:
    name: str
    verdict: str
    message: str


@dataclass(frozen=True)
class ReportView:
    model: ModelView
    where: tuple[tuple[TeX, tuple[TeX, ...]], ...]     # abbreviations: name, display lines
    quantities: tuple[QuantityView, ...]
    checks: tuple[CheckView, ...]
    verdict: str


def report_view(model: Model, rep: dict) -> ReportView:
    view = model_view(model)
    notes: dict = {}
    forms, names = _closed_forms(model, notes)
    where = tuple((TeX(sp.latex(symbol)), display_lines(definition, view.names))
                  for symbol, definition in names)
    quantities = []
    for key, _, label in _QUANTITIES:
        closed = forms.get(key)
        lines = display_lines(closed, view.names) if closed is not None else ()
        quantities.append(QuantityView(TeX(label), lines, number_tex(rep[key]["value"]),
                                       rep[key].get("reason") or "", notes.get(key, "")))
    checks = tuple(CheckView(c["name"], c["verdict"], c["message"]) for c in rep["checks"])
    return ReportView(view, where, tuple(quantities), checks,
                      "all checks proved or tested" if exit_status(rep) == 0 else
                      "some checks are refuted or unknown")


def render_report(model: Model, rep: dict, fmt: str) -> str:
    """The report as a LaTeX article (``fmt="latex"``) or a Markdown document."""
    doc = report_view(model, rep)
    if fmt == "latex":
        return fold_tex_lines(latex_environment().get_template("model.tex.j2").render(doc=doc).lstrip())
    return markdown_environment().get_template("model.md.j2").render(doc=doc).lstrip()


def _finite(value):
    """JSON has no infinities: a non-finite number becomes null (the text report shows it)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def render_model(path: str, fmt: str, width: int = TEXT_WIDTH) -> tuple[str, int]:
    """``symelbo model FILE`` in ``fmt`` (text, json, latex, markdown): (the document, exit status).

    Bad input raises :class:`~symelbo.core.errors.InputError` (the command line prints it and exits 2).
    """
    model = load_model(path)
    rep = report(model)
    if fmt == "json":
        text = json.dumps(_finite(rep), indent=2, ensure_ascii=False, allow_nan=False) + "\n"
    elif fmt == "text":
        text = format_text(rep, path, model, width)
    else:
        text = render_report(model, rep, fmt)
    return text, exit_status(rep)


def run_model(path: str, as_json: bool, out: TextIO, width: int = TEXT_WIDTH) -> int:
    """`symelbo model FILE.toml [--json]`: write the report to ``out``; return the exit status."""
    text, status = render_model(path, "json" if as_json else "text", width)
    out.write(text)
    return status


# ---------------------------------------------------------------------------
# a derivation instantiated on a model: symelbo derive NAME --model FILE
# ---------------------------------------------------------------------------

@dataclass(frozen=True)
class ClosedPart:
    label: TeX                 # the gradient component's "d/d a", or empty
    text_label: str
    lines: tuple[TeX, ...]
    text: str


@dataclass(frozen=True)
class DerivedRow:
    relation: TeX
    relation_text: str
    abstract: TeX
    abstract_text: str
    name: str                  # "F1": the closed form's name
    name_tex: TeX              # "F_{1}"
    first: bool                # the first line with this closed form: shown here
    parts: tuple[ClosedPart, ...]
    values: tuple[tuple[TeX, str, TeX], ...]      # (label TeX, label text, value TeX)
    value_text: str
    verdict: str
    message: str


@dataclass(frozen=True)
class DerivedChain:
    index: int
    claim: TeX
    claim_text: str
    verdict: str
    rows: tuple[DerivedRow, ...]


@dataclass(frozen=True)
class DerivationView:
    title: str
    derivation: str
    model: ModelView
    verdict: str
    where: tuple       # abbreviations: (name TeX, display lines, name text, definition text)
    chains: tuple[DerivedChain, ...]


def _key(closed):
    if closed is None:
        return None
    return tuple(closed) if isinstance(closed, list) else (closed,)


def derivation_view(inst, model: Model) -> DerivationView:
    """The records of an instantiated derivation (:func:`symelbo.models.instantiate.instantiate`)."""
    view = model_view(model)
    every = [c for chain in inst.chains for step in chain
             for c in (step.closed if isinstance(step.closed, list) else [step.closed]) if c is not None]
    taken = set(model.environment()).union(*(c.free_symbols for c in every))
    named = abbreviations(every, taken)[1]
    short = {arg: symbol for symbol, arg in named}
    seen: dict = {}
    chains = []
    parameters = list(inst.parameters)
    for index, chain in enumerate(inst.chains, start=1):
        rows = []
        for step in chain:
            key = _key(step.closed)
            first = key is not None and key not in seen
            if first:
                seen[key] = f"F{len(seen) + 1}"
            parts, values = (), ()
            if key is not None:
                gradient = isinstance(step.closed, list)
                comps = step.closed if gradient else [step.closed]
                vals = step.value if gradient else [step.value]
                labels = [(TeX(rf"\partial/\partial {sp.latex(sp.Symbol(p))}"), f"d/d{p}")
                          for p in parameters] if gradient else [(TeX(""), "")]
                if gradient and len(labels) != len(comps):
                    labels = [(TeX(f"\\text{{component {i}}}"), f"component {i}")
                              for i in range(1, len(comps) + 1)]
                parts = tuple(ClosedPart(lab, lab_text,
                                         display_lines(c.xreplace(short), view.names),
                                         expr_text(c.xreplace(short)))
                              for (lab, lab_text), c in zip(labels, comps))
                values = tuple((lab, lab_text, number_tex(v) if v is not None else TeX(""))
                               for (lab, lab_text), v in zip(labels, vals or [None] * len(comps)))
            value_text = ", ".join((f"{t} = " if t else "") + number_text(v)
                                   for (_, t, _), v in zip(values, (step.value if isinstance(step.value, list)
                                                                    else [step.value])))
            relation = RELATIONS.get(step.relation)
            rows.append(DerivedRow(
                TeX(relation.tex if relation else ""), step.relation,
                TeX(step.abstract_latex or r"\text{" + tex_escape(step.abstract) + "}"), step.abstract,
                seen.get(key, ""), TeX(seen.get(key, "").replace("F", "F_{") + "}" if key else ""),
                first, parts, values, value_text, step.verdict, step.message))
        verdicts = [s.verdict for s in chain[1:] if s.verdict]
        relations = {s.relation for s in chain[1:]}
        claim_rel = next(iter(relations - {"="}), "=") if len(relations - {"="}) <= 1 else ""
        claim = TeX(chain[0].abstract_latex + (f" {RELATIONS[claim_rel].tex} {chain[-1].abstract_latex}"
                                               if claim_rel and len(chain) > 1 else ""))
        claim_text = chain[0].abstract + (f" {claim_rel} {chain[-1].abstract}" if claim_rel and len(chain) > 1 else "")
        chains.append(DerivedChain(index, claim, claim_text, weakest(verdicts) if verdicts else "",
                                   tuple(rows)))
    where = tuple((TeX(sp.latex(symbol)), display_lines(definition, view.names), str(symbol),
                   expr_text(definition)) for symbol, definition in named)
    return DerivationView(shortened(inst.title or inst.name), inst.name, view, inst.verdict, where,
                          tuple(chains))


def text_derivation(inst, model: Model, width: int = TEXT_WIDTH) -> str:
    """The instantiated derivation as text: the model, then each line with its closed form
    (once: later lines say "the same as F1"), its value and its check."""
    doc = derivation_view(inst, model)
    out = _wrap_prose(f"{doc.title} on the model {doc.model.title!r}", width, "", "    ")
    out += ["", "the model:"] + model_text(doc.model, width) + [""]
    for _, _, name, definition in doc.where:
        out += wrap_terms(definition, width, f"where {name} = ", "      ")
    if doc.where:
        out.append("")
    for chain in doc.chains:
        out += _wrap_prose(f"chain {chain.index}: {chain.claim_text}", width, "", "    ")
        for row in chain.rows:
            out += _wrap_prose(row.abstract_text, width, f"  {row.relation_text or '':>2} ", "       ")
            if row.parts and row.first:
                for part in row.parts:
                    head = f"       {row.name}" + (f" {part.text_label}" if part.text_label else "") + " = "
                    out += wrap_terms(part.text, width, head, "         ")
                out += _wrap_prose(row.value_text, width, "       value: ", "         ")
            elif row.parts:
                out.append(f"       closed form: the same as {row.name}")
            elif not row.verdict and row.message:
                out += _wrap_prose(row.message, width, "       ", "       ")
            if row.verdict:
                out += _wrap_prose(f"{row.verdict}: {row.message}", width, "       ", "         ")
        out.append("")
    out.append(f"verdict: {doc.verdict}")
    return "\n".join(out) + "\n"


def render_derivation(inst, model: Model, fmt: str) -> str:
    """The instantiated derivation as a LaTeX article or a Markdown document, opening with the model."""
    doc = derivation_view(inst, model)
    if fmt == "latex":
        return fold_tex_lines(latex_environment().get_template("model_derivation.tex.j2").render(doc=doc)
                              .lstrip())
    return markdown_environment().get_template("model_derivation.md.j2").render(doc=doc).lstrip()
