"""``symelbo cavi``: the CAVI report as text, JSON, LaTeX (PDF) or Markdown, and its trace plot.

Map of this module:

- :func:`cavi_view`: the report (:class:`symelbo.models.cavi.CaviReport`) as
  plain records of LaTeX fragments, laid out by ``templates/cavi.tex.j2`` and
  ``templates/cavi.md.j2`` the way Bishop PRML 10.1.3 writes it: the model, the
  mean-field q, for each factor the derivation line ``log q*(mu) = E_tau[log p]
  + const``, the recognised family with its parameters (``mu_N``,
  ``lambda_N``) and the updates of q's own parameters, the checks, the run;
- :func:`trace_picture`: the ELBO trace drawn in the document itself with
  pdfTeX's ``\\pdfliteral`` (no graphics package, no file beside the source),
  with axes, ticks and labels, and log p(X) as a dashed line where known;
- :func:`plot_trace`: the same trace as a PNG, PDF or SVG file with matplotlib
  (the optional ``plot`` extra);
- :func:`run_cavi`: the command.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import PurePath

import mpmath
import sympy as sp
from sympy.printing.latex import LatexPrinter

from symelbo.core.errors import InputError
from symelbo.io.output import emit
from symelbo.io.pdf import compile_pdf
from symelbo.io.render import TeX, break_lines, fold_tex_lines, latex_environment, \
    markdown_environment, shortened, tex_escape
from symelbo.models import cavi
from symelbo.models.model import load_model

#: Rows of the trace shown in a document's table: the first and the last ones.
TRACE_ROWS = 12
#: How each recognised family is written (Bishop's notation).
FAMILY_TEX = {"Normal": r"\mathcal{N}", "Gamma": r"\mathrm{Gam}", "Beta": r"\mathrm{Beta}",
              "Bernoulli": r"\mathrm{Bern}", "Categorical": r"\mathrm{Cat}",
              "Exponential": r"\mathrm{Exp}", "Poisson": r"\mathrm{Pois}",
              "Binomial": r"\mathrm{Bin}", "Laplace": r"\mathrm{Laplace}"}
#: The sufficient statistics of each continuous family, by the latent's support.
_STATISTICS_TEX = {"real": "$Z$ and $Z^{2}$", "positive": r"$Z$ and $\log Z$",
                   "unit": r"$\log Z$ and $\log(1 - Z)$"}
_MARK = {"proved": r"\checkmark", "tested": r"\checkmark", "refuted": r"\times",
         "unknown": "?", "misjustified": "!"}


class _Printer(LatexPrinter):
    """LaTeX of the closed forms: psi for the digamma function, log Gamma by its name."""

    def _print_polygamma(self, expr, exp=None):
        order, arg = expr.args
        head = {0: r"\psi", 1: r"\psi'"}.get(int(order), r"\psi^{(" + self._print(order) + ")}") \
            if order.is_Integer else r"\psi^{(" + self._print(order) + ")}"
        text = head + r"\left(" + self._print(arg) + r"\right)"
        return text if exp is None else r"\left(" + text + r"\right)^{" + str(exp) + "}"

    def _print_loggamma(self, expr, exp=None):
        text = r"\log\Gamma\left(" + self._print(expr.args[0]) + r"\right)"
        return text if exp is None else r"\left(" + text + r"\right)^{" + str(exp) + "}"


def _latex(expr, names: dict) -> TeX:
    return TeX(_Printer({"symbol_names": names, "order": "lex"}).doprint(expr))


@dataclass(frozen=True)
class CheckView:
    name: str
    verdict: str
    mark: TeX
    message: str


@dataclass(frozen=True)
class FactorView:
    latent: TeX
    declined: str
    others: TeX                     # E subscript, e.g. "\tau" (empty: no other factor)
    terms: TeX                      # the log joint's terms with z_j
    expected: tuple[TeX, ...]       # E[...] + const (one line, or one per value of z)
    family: str
    family_tex: TeX                 # q*(mu) = N(mu | mu_N, lambda_N^{-1})
    statistics: TeX
    natural: tuple[tuple[TeX, TeX], ...]
    q: TeX                          # q(mu) = N(m, s) as the file writes it
    updates: tuple[tuple[TeX, TeX], ...]
    expectations: tuple[tuple[TeX, TeX], ...]
    checks: tuple[CheckView, ...]


@dataclass(frozen=True)
class CaviView:
    title: str
    model: str
    priors: tuple[TeX, ...]
    meanfield: TeX
    statistics: tuple[tuple[TeX, TeX], ...]
    factors: tuple[FactorView, ...]
    ran: bool
    problem: str
    defaulted: str
    start: TeX
    trace: tuple[tuple[int, str, TeX], ...]
    trace_note: str
    picture: TeX
    final: tuple[tuple[TeX, TeX], ...]
    elbo: TeX
    log_evidence: TeX
    kl: TeX
    evidence_note: str
    converged: str
    verdict: str


def _num(v) -> TeX:
    if v is None:
        return TeX(r"\text{--}")
    if isinstance(v, sp.Integer):
        return TeX(str(v))
    text = mpmath.nstr(mpmath.mpf(v), 12) if not isinstance(v, str) else v
    if "e" in text:
        mantissa, exponent = text.split("e")
        text = rf"{mantissa} \times 10^{{{int(exponent)}}}"
    return TeX(text)


def _dist_tex(family: str, var: TeX, args, names: dict) -> TeX:
    shown = ", ".join(_latex(a, names) for a in args)
    return TeX(f"{FAMILY_TEX.get(family, family)}\\left({var} \\mid {shown}\\right)")


def _family_tex(factor: cavi.Factor, var: TeX) -> TeX:
    nat = [n for _, n, _ in factor.natural]
    if factor.family == "Normal":
        args = f"{nat[0]}, {nat[1]}^{{-1}}"
    elif factor.family == "Categorical":
        args = ", ".join(nat)
    else:
        args = ", ".join(nat)
    return TeX(f"q^\\star({var}) = {FAMILY_TEX[factor.family]}\\left({var} \\mid {args}\\right)")


def cavi_view(cr: cavi.CaviReport, rep: dict) -> CaviView:
    """The plain records the templates lay out."""
    d, r, model = cr.derivation, cr.result, cr.model
    names = dict(cr.names)
    for obs in model.observed:
        names.setdefault(obs.symbol, sp.latex(obs.symbol) + "_{i}")
    z_names = {f.symbol: sp.latex(f.symbol) + ("_{i}" if f.local else "") for f in d.factors}
    names.update(z_names)
    priors = []
    for lat in model.latents:
        var = z_names[model.symbol(lat.name)]
        priors.append(TeX(f"p({var}) = " + _dist_tex(lat.prior.family.name, var,
                                                     lat.prior.args, names)))
    for obs in model.observed:
        var = sp.latex(obs.symbol) + "_{i}"
        priors.append(TeX(f"p({var} \\mid \\ldots) = " + _dist_tex(
            obs.dist.family.name, var, obs.dist.args, names)
            + f", \\quad i = 1, \\ldots, {len(obs.data)}"))
    meanfield = TeX("q(" + ", ".join(z_names[f.symbol] for f in d.factors) + ") = "
                    + " ".join(f"q({z_names[f.symbol]})" for f in d.factors))
    stats = tuple((TeX(s.latex), _num(s.value if s.value.is_Integer else mp_of(s.value)))
                  for s in d.joint.stats.values() if s.weighted is None)
    factors = []
    for f in d.factors:
        var = TeX(z_names[f.symbol])
        report_f = next((x for x in rep["factors"] if x["latent"] == f.name), None)
        others = TeX(", ".join(z_names[model.symbol(o)] for o in f.others))
        q = TeX(f"q({var}) = " + _dist_tex(f.latent.q.family.name, var, f.latent.q.args, names))
        terms = _latex(f.terms.xreplace({f.symbol: f.symbol}), names) if f.terms != 0 else TeX("0")
        if f.declined:
            factors.append(FactorView(var, f.declined, others, terms, (), "", TeX(""), "", (), q,
                                      (), (), ()))
            continue
        E = f"\\mathbb{{E}}_{{{others}}}" if others else ""
        if E:
            rows = [f"q^\\star({var}) &\\propto \\exp\\left({E}\\left[\\log p(X, Z)\\right]\\right)"]
            rows += _broken(f"\\log q^\\star({var}) &= {E}\\bigl[", _latex(f.terms, names),
                            "\\bigr] + \\text{const}")
        else:   # one factor: q* is the posterior itself, p(X, Z) normalised
            rows = [f"q^\\star({var}) &\\propto p(X, {var})"]
            rows += _broken(f"\\log q^\\star({var}) &= ", _latex(f.terms, names),
                            " + \\text{const}")
        if f.family in ("Bernoulli", "Categorical"):
            for k, v in enumerate(f.at_values):
                rows += _broken(f"\\log q^\\star({var} = {k}) &= ", _latex(v, names),
                                " + \\text{const}")
        else:
            rows += _broken("&= ", _latex(cavi._collect(f.expected, f.symbol), names),
                            " + \\text{const}")
        expected = tuple(TeX(r) for r in rows)
        natural = tuple((TeX(n), _latex(e, names)) for _, n, e in f.natural)
        updates = tuple((_latex(p, names), TeX(report_f["updates"][str(p)]["latex"]))
                        for p in f.resolved)
        used = set()
        for e in f.updates.values():
            used |= e.free_symbols & set(d.E.values)
        expectations = tuple((TeX(d.E.latex[s]), _latex(d.E.values[s], names))
                             for s in sorted(used, key=str))
        checks = tuple(CheckView(c["name"], c["verdict"], TeX(_MARK.get(c["verdict"], "?")),
                                 c["message"]) for c in report_f["checks"])
        stats_text = _STATISTICS_TEX.get(f.latent.prior.family.support, "").replace("Z", var)
        factors.append(FactorView(var, "", others, terms, expected, f.family,
                                  _family_tex(f, var), TeX(stats_text),
                                  natural, q, updates, expectations, checks))
    latent_tex = {f.name: TeX(sp.latex(f.symbol)) for f in d.factors}
    trace = [(i, latent_tex[name], _num(v)) for i, (name, v) in enumerate(r.trace, start=1)]
    note = ""
    if len(trace) > TRACE_ROWS:
        note = f"{len(trace) - TRACE_ROWS} updates in between are left out"
        trace = trace[:TRACE_ROWS // 2] + trace[-TRACE_ROWS // 2:]
    final = rep["final"]
    verdict = "all checks proved or tested" if cavi.exit_status(rep) == 0 else \
        "some factors are declined, checks not passed or the run did not converge"
    return CaviView(
        title=shortened(model.name), model=model.path or "", priors=tuple(priors),
        meanfield=meanfield, statistics=stats, factors=tuple(factors),
        ran=bool(r.trace), problem=r.problem or "", defaulted=", ".join(r.defaulted),
        start=_num(r.start_elbo), trace=tuple(trace), trace_note=note,
        picture=trace_picture(r, cr.log_evidence) if r.trace else TeX(""),
        # the per-observation parameters (r_1, ..., r_n) are in the JSON, not in the text
        final=tuple((_latex(p, names), _num(v))
                    for p, v in sorted(r.state.glob.items(), key=lambda item: str(item[0])))
        if r.state is not None else (),
        elbo=_num(final["elbo"]), log_evidence=_num(final["log_evidence"]), kl=_num(final["kl"]),
        evidence_note=cr.evidence_reason or "",
        converged=(f"converged after {r.sweeps} sweeps" if r.converged
                   else f"not converged after {r.sweeps} sweeps"),
        verdict=verdict)


def _broken(head: str, tex: str, tail: str) -> list[str]:
    """Align rows ``head tex tail``, ``tex`` broken at its top-level terms to fit the page."""
    lines = break_lines(tex, 44.0)
    rows = [head + lines[0]]
    rows += ["&\\qquad " + line for line in lines[1:]]
    rows[-1] += tail
    return rows


def mp_of(value):
    return None if value is None else cavi.mp_value(value, {})


# ---------------------------------------------------------------------------
# the trace, drawn
# ---------------------------------------------------------------------------

def _ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """Round tick values covering [lo, hi]."""
    if hi <= lo:
        hi = lo + 1
    raw = (hi - lo) / count
    step = 10 ** math.floor(math.log10(raw))
    for m in (1, 2, 5, 10):
        if m * step >= raw:
            step *= m
            break
    first = math.ceil(lo / step) * step
    out = []
    t = first
    while t <= hi + 1e-12 * step:
        out.append(0.0 if abs(t) < 1e-12 * step else t)
        t += step
    return out


def trace_picture(result: cavi.Run, log_evidence) -> TeX:
    """The ELBO after each update as a LaTeX picture drawn with ``\\pdfliteral`` (bp units)."""
    ys = [float(result.start_elbo)] + [float(v) for _, v in result.trace]
    xs = list(range(len(ys)))
    top = [y for y in ys]
    if log_evidence is not None:
        top.append(float(log_evidence))
    lo, hi = min(top), max(top)
    pad = (hi - lo) * 0.06 or 1.0
    lo, hi = lo - pad, hi + pad
    W, H = 300.0, 170.0
    xmax = max(1, xs[-1])

    def X(x):
        return W * x / xmax

    def Y(y):
        return H * (y - lo) / (hi - lo)

    ops = ["q 0.6 w 0 0 0 RG", f"0 0 {W:.2f} {H:.2f} re S"]
    labels = []
    for t in _ticks(lo, hi):
        y = Y(t)
        ops.append(f"0 {y:.2f} m 4 {y:.2f} l S")
        labels.append(rf"\put(-4,{y:.2f}){{\makebox(0,0)[r]{{\scriptsize ${_tick(t)}$}}}}")
    for t in _ticks(0, xmax, min(6, xmax)):
        if t != int(t):
            continue
        x = X(t)
        ops.append(f"{x:.2f} 0 m {x:.2f} 4 l S")
        labels.append(rf"\put({x:.2f},-9){{\makebox(0,0)[t]{{\scriptsize ${int(t)}$}}}}")
    if log_evidence is not None:
        y = Y(float(log_evidence))
        ops.append(f"q [4 3] 0 d 0.8 w 0.75 0.1 0.1 RG 0 {y:.2f} m {W:.2f} {y:.2f} l S Q")
        labels.append(rf"\put({W - 4:.2f},{y + 4:.2f}){{\makebox(0,0)[rb]{{\scriptsize "
                      r"$\log p(X)$}}")
    path = " ".join(f"{X(x):.2f} {Y(y):.2f} {'m' if i == 0 else 'l'}"
                    for i, (x, y) in enumerate(zip(xs, ys)))
    ops.append(f"q 1.1 w 0.1 0.25 0.7 RG {path} S Q")
    dots = " ".join(f"{X(x) - 1.3:.2f} {Y(y) - 1.3:.2f} 2.6 2.6 re" for x, y in zip(xs, ys))
    ops.append(f"q 0.1 0.25 0.7 rg {dots} f Q")
    ops.append("Q")
    body = "\n".join([r"\setlength{\unitlength}{1bp}",
                      rf"\begin{{picture}}({W:.0f},{H:.0f})(0,0)",
                      r"\put(0,0){\pdfliteral{" + " ".join(ops) + "}}",
                      *labels,
                      rf"\put({W / 2:.1f},-22){{\makebox(0,0)[t]{{\small update (0: the start)}}}}",
                      rf"\put(-40,{H + 8:.1f}){{\makebox(0,0)[l]{{\small ELBO}}}}",
                      r"\end{picture}"])
    return TeX(body)


def _tick(t: float) -> str:
    text = f"{t:.6g}"
    if "e" in text:
        mantissa, exponent = text.split("e")
        return rf"{mantissa} \times 10^{{{int(exponent)}}}"
    return text


def plot_trace(cr: cavi.CaviReport, out_path: str) -> None:
    """The ELBO trace (and log p(X) as a line) as a .png, .pdf or .svg file with matplotlib."""
    from symelbo.models.plot import check_output, pyplot
    check_output(out_path)
    r = cr.result
    if not r.trace:
        raise InputError(f"nothing to plot: {r.problem or 'no update was run'}", out_path)
    plt = pyplot(out_path)   # the one place that says which extra to install
    ys = [float(r.start_elbo)] + [float(v) for _, v in r.trace]
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    ax.plot(range(len(ys)), ys, marker="o", markersize=3, label="ELBO after each update")
    if cr.log_evidence is not None:
        ax.axhline(float(cr.log_evidence), linestyle="--", color="tab:red", label="log p(X)")
    from matplotlib.ticker import MaxNLocator
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))   # updates are counted, not measured
    ax.set_xlabel("update (0: the start)")
    ax.set_ylabel("ELBO")
    ax.set_title(cr.model.name)
    ax.legend()
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    kind = PurePath(out_path).suffix.lower().lstrip(".")
    try:
        fig.savefig(out_path, format=kind, metadata={"png": {}, "pdf": {"CreationDate": None},
                                                     "svg": {"Date": None}}[kind])
    except OSError as exc:
        raise InputError(f"cannot write the plot ({exc.strerror or exc})", out_path) from None
    finally:
        plt.close(fig)


# ---------------------------------------------------------------------------
# the command
# ---------------------------------------------------------------------------

def render_cavi(cr: cavi.CaviReport, rep: dict, fmt: str) -> str:
    """The report as a LaTeX article or a Markdown document."""
    view = cavi_view(cr, rep)
    if fmt == "latex":
        return fold_tex_lines(latex_environment().get_template("cavi.tex.j2").render(doc=view))
    return markdown_environment().get_template("cavi.md.j2").render(doc=view)


def run_cavi(args) -> int:
    """`symelbo cavi FILE.toml [--json] [--format ...] [--pdf -o OUT] [--iterations N] [--tol T]`."""
    cavi.check_options(args.iterations, args.tol)
    if args.pdf and not args.output:
        raise InputError("--pdf needs -o OUT.pdf", "<command line>")
    if args.plot:
        from symelbo.models.plot import check_output
        check_output(args.plot)
    model = load_model(args.file)
    cr = cavi.CaviReport(model, args.iterations, args.tol)
    rep = cr.as_dict()
    fmt = "json" if args.json else (args.format or ("latex" if args.pdf else "text"))
    if args.pdf:
        compile_pdf(render_cavi(cr, rep, "latex"), args.output)
    elif fmt == "json":
        emit(json.dumps(rep, indent=2, ensure_ascii=False, allow_nan=False) + "\n", args.output)
    elif fmt == "text":
        emit(cavi.format_text(cr, rep, args.file), args.output)
    else:
        emit(render_cavi(cr, rep, fmt), args.output)
    if args.plot:
        plot_trace(cr, args.plot)
    return cavi.exit_status(rep)


__all__ = ["cavi_view", "trace_picture", "plot_trace", "render_cavi", "run_cavi", "tex_escape"]
