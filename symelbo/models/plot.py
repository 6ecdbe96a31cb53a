"""Plot log p(X), the ELBO and the gap KL(q || posterior) against one variational parameter.

The picture of the identity log p(X) = ELBO + KL: the log evidence is flat in
a variational parameter, the ELBO rises to its optimum and the gap
log p(X) - ELBO = KL is smallest there. The figure has two panels sharing the
parameter's axis: log p(X) and the ELBO (the gap shaded between them), and the
KL on its own scale, so a gap of 0.1 nat shows even when the ELBO spans hundreds.

- :func:`run_plot`: the command (``symelbo plot FILE --vary PARAM [--range LO HI]``);
- :func:`load_problem`: the model's closed forms as functions of the one parameter
  (log p(X) by one quadrature at [values] when it has no closed form);
- :func:`optimum`, :func:`default_range`: where the picture is interesting (the law below);
- :func:`sample`: the curves on an adaptive grid (no kinks drawn from a coarse one);
- :func:`draw`: the matplotlib figure, markers at the ``[values]`` point and the optimum;
- :func:`caption_of`: the other parameters' values, stated under the title;
- :func:`pyplot`, :func:`save`: matplotlib's pyplot (or one line saying how to install
  the extra), and a figure written to the same bytes each time.

The default range law: the ELBO's maximum in the varied parameter, the other
symbols held at [values], is found by a scan widened until the maximum is
inside, then refined; the range is where the ELBO lies within
``DROP_FACTOR * KL_min`` (at least ``MIN_DROP`` nats) of that maximum, that is
where the KL is at most ``(1 + DROP_FACTOR)`` times its minimum, widened to take
in the [values] point. So the gap at the optimum is a quarter of the top
panel's height or more. A parameter's domain (positive, a probability) bounds
the range; ``--range LO HI`` replaces it.

Needs the optional matplotlib (the ``plot`` extra); it draws with the
non-interactive Agg backend, and the same input gives the same bytes (no
creation date in a PDF or SVG, a fixed hash salt for SVG ids).
"""

from __future__ import annotations

import math
import textwrap
from dataclasses import dataclass
from pathlib import PurePath

import mpmath
import sympy as sp

from symelbo.core.errors import InputError
from symelbo.models.model import NoClosedForm, load_model, mp_value, quadrature_too_rough, \
    with_numbers


#: The formats a plot is written in, by the extension of its file name.
FORMATS = ("png", "pdf", "svg")

#: Metadata that keeps the same plot byte for byte the same file (no creation date).
_STABLE_METADATA = {"png": {}, "pdf": {"CreationDate": None}, "svg": {"Date": None}}

#: What to type when matplotlib is missing: from PyPI, and in a clone of the repository.
MISSING_EXTRA = ("plotting needs matplotlib, the optional plot extra: pip install 'symelbo[plot]' "
                 "(in a clone of the repository: pip install '.[plot]')")

#: The default range: the ELBO within DROP_FACTOR * KL_min of its maximum ...
DROP_FACTOR = 3.0
#: ... and at least this many nats (a q that can reach the posterior has KL_min = 0).
MIN_DROP = 0.5
#: A probability parameter's range stays this far inside (0, 1); a positive one above
#: POSITIVE_FLOOR times its optimum.
PROBABILITY_MARGIN = 1e-3
POSITIVE_FLOOR = 1e-6
#: The drawing grid: this many evenly spaced points, then midpoints added where a curve
#: is further than REFINE_TOLERANCE of its panel's height from a straight chord.
INITIAL_POINTS = 81
REFINE_TOLERANCE = 1e-3
REFINE_ROUNDS = 6
#: The KL panel is drawn in log scale when the KL spans more than this factor.
LOG_SCALE_RATIO = 1000.0
#: Pixels per inch of a PNG (the figure is 6.4 x 6 inches).
DPI = 120


def check_output(out_path: str) -> None:
    """Refuse an output name whose extension is not one of FORMATS (matplotlib would
    otherwise add ``.png`` to a bare name, or fail on ``.exe`` after all the work)."""
    suffix = PurePath(out_path).suffix.lower().lstrip(".")
    if suffix not in FORMATS:
        got = f"'.{suffix}'" if suffix else "no extension"
        raise InputError(f"the plot file has {got}; give a name ending in "
                         + ", ".join(f".{f}" for f in FORMATS[:-1]) + f" or .{FORMATS[-1]}",
                         out_path)


def pyplot(where: str):
    """matplotlib.pyplot on the Agg backend with stable SVG ids; InputError naming the
    extra to install when matplotlib is missing."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        matplotlib.rcParams["svg.hashsalt"] = "symelbo"  # stable ids in an SVG
        import matplotlib.pyplot as plt
    except ImportError:
        raise InputError(MISSING_EXTRA, where) from None
    return plt


# ---------------------------------------------------------------------------
# the curves as functions of the varied parameter
# ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Problem:
    """The varied parameter, its domain, and the closed forms with every other number put in."""

    name: str
    symbol: sp.Symbol
    domain: str                 # "real", "positive" or "probability"
    value: float | None         # the parameter's [values] entry
    elbo: sp.Expr
    kl: sp.Expr
    log_evidence: float
    #: How log p(X) was found: "" for its closed form, else a note for the labels.
    evidence_note: str = ""

    def at(self, expr: sp.Expr, x: float) -> float:
        """The expression's value at the parameter = x, as a double (nan where undefined)."""
        try:
            with mpmath.workdps(30):
                y = mp_value(expr, {self.symbol: sp.Rational(x)})
            y = float(y)
        except (ArithmeticError, ValueError, TypeError):  # a pole, a complex value
            return math.nan
        return y

    def inside(self, x: float) -> bool:
        """Whether x lies in the parameter's domain."""
        if self.domain == "positive":
            return x > 0
        if self.domain == "probability":
            return 0 < x < 1
        return True


def _domain(model, symbol) -> str:
    for lat in model.latents:
        for args in lat.q_args:
            for i, a in enumerate(args):
                if a == symbol and lat.q.family.domain_of(i) == "probability":
                    return "probability"
    return "positive" if symbol.is_positive else "real"


def _initial_bracket(p: Problem) -> tuple[float, float]:
    """Where the search for the ELBO's maximum starts (it widens from here)."""
    if p.domain == "probability":
        return PROBABILITY_MARGIN, 1 - PROBABILITY_MARGIN
    if p.domain == "positive":
        v = p.value if p.value is not None else 1.0
        return v / 4, v * 4
    v = p.value if p.value is not None else 0.0
    return v - 3 * max(1.0, abs(v)), v + 3 * max(1.0, abs(v))


def _scan(p: Problem, lo: float, hi: float, n: int = 41) -> list[float]:
    if p.domain == "positive" and hi / lo > 8:
        return [lo * (hi / lo) ** (i / (n - 1)) for i in range(n)]  # even in log scale
    return [lo + (hi - lo) * i / (n - 1) for i in range(n)]


def _value_or_low(y: float) -> float:
    return y if math.isfinite(y) else -math.inf


def optimum(p: Problem) -> float | None:
    """The parameter value where the ELBO is largest, the others at [values]; None when the
    ELBO keeps rising to the edge of the parameter's domain (or of 2**40 times the start)."""
    lo, hi = _initial_bracket(p)
    for _ in range(40):
        xs = _scan(p, lo, hi)
        ys = [_value_or_low(p.at(p.elbo, x)) for x in xs]
        best = max(range(len(xs)), key=lambda i: (ys[i], -i))
        if ys[best] == -math.inf:
            return None
        if 0 < best < len(xs) - 1:
            return _golden(p, xs[best - 1], xs[best + 1])
        # the maximum is at an end: widen that side, as far as the domain allows
        if p.domain == "probability":
            return None
        if p.domain == "positive":
            if best == 0:
                lo /= 4
            else:
                hi *= 4
            if lo < 1e-300 or hi > 1e300:
                return None
        elif best == 0:
            lo -= hi - lo
        else:
            hi += hi - lo
    return None


def _golden(p: Problem, a: float, b: float, steps: int = 80) -> float:
    """The maximum of the ELBO on [a, b] by golden-section search (the scan bracketed it)."""
    ratio = (math.sqrt(5) - 1) / 2
    c, d = b - ratio * (b - a), a + ratio * (b - a)
    fc, fd = _value_or_low(p.at(p.elbo, c)), _value_or_low(p.at(p.elbo, d))
    for _ in range(steps):
        if fc >= fd:
            b, d, fd = d, c, fc
            c = b - ratio * (b - a)
            fc = _value_or_low(p.at(p.elbo, c))
        else:
            a, c, fc = c, d, fd
            d = a + ratio * (b - a)
            fd = _value_or_low(p.at(p.elbo, d))
        if b - a <= 1e-12 * max(1.0, abs(a)):
            break
    return (a + b) / 2


def _edge(p: Problem, start: float, level: float, direction: int) -> float:
    """The first parameter value from ``start`` towards ``direction`` where the ELBO falls
    below ``level``, or the edge of the domain when it never does."""
    step = 0.05 * max(abs(start), 1.0) if p.domain == "real" else 0.05
    inner = start
    for _ in range(200):
        if p.domain == "positive":
            outer = start * (1 + step) if direction > 0 else start / (1 + step)
            if outer < POSITIVE_FLOOR * start:
                return inner
        elif p.domain == "probability":
            outer = start + direction * step * (start if direction < 0 else 1 - start)
            outer = min(max(outer, PROBABILITY_MARGIN), 1 - PROBABILITY_MARGIN)
        else:
            outer = start + direction * step
        y = _value_or_low(p.at(p.elbo, outer))
        if y < level:
            break
        if outer == inner:  # at the domain's edge
            return outer
        inner, step = outer, step * 2
    else:
        return inner
    for _ in range(40):  # bisect: inner is above level, outer below
        mid = (inner + outer) / 2
        if _value_or_low(p.at(p.elbo, mid)) < level:
            outer = mid
        else:
            inner = mid
    return outer


def default_range(p: Problem, best: float | None) -> tuple[float, float]:
    """The interesting range: where the ELBO is within max(DROP_FACTOR * KL_min, MIN_DROP)
    of its maximum (the KL within a few times its minimum), widened to the [values] point."""
    if best is None:
        lo, hi = _initial_bracket(p)
    else:
        top = p.at(p.elbo, best)
        kl_min = max(p.at(p.kl, best), 0.0)
        level = top - max(DROP_FACTOR * kl_min, MIN_DROP)
        lo, hi = _edge(p, best, level, -1), _edge(p, best, level, +1)
    if p.value is not None and not lo <= p.value <= hi:
        lo, hi = min(lo, p.value), max(hi, p.value)
        margin = 0.05 * (hi - lo)
        lo = lo - margin if p.inside(lo - margin) else lo
        hi = hi + margin if p.inside(hi + margin) else hi
    return lo, hi


@dataclass(frozen=True)
class Curves:
    """The sampled curves: ELBO and KL at each x, log p(X) a constant."""

    xs: list[float]
    elbo: list[float]
    kl: list[float]
    log_evidence: float


def sample(p: Problem, lo: float, hi: float, points: int = INITIAL_POINTS,
           extra: tuple = ()) -> Curves:
    """The ELBO and KL on [lo, hi]: ``points`` even steps, then midpoints where a curve bends
    (REFINE_TOLERANCE of the curve's span from the chord), and the ``extra`` x values.

    Raises InputError when a value is not a finite double (a curve with a hole would be
    drawn as if it were whole)."""
    xs = sorted({lo + (hi - lo) * i / (points - 1) for i in range(points)}
                | {x for x in extra if lo <= x <= hi})
    known = {x: (p.at(p.elbo, x), p.at(p.kl, x)) for x in xs}
    for _ in range(REFINE_ROUNDS):
        span = [max(v[k] for v in known.values()) - min(v[k] for v in known.values())
                for k in (0, 1)]
        added = False
        ordered = sorted(known)
        for a, b in zip(ordered, ordered[1:]):
            mid = (a + b) / 2
            if not a < mid < b:
                continue
            ym = (p.at(p.elbo, mid), p.at(p.kl, mid))
            chord = [(known[a][k] + known[b][k]) / 2 for k in (0, 1)]
            if any(not math.isfinite(ym[k]) or abs(ym[k] - chord[k]) > REFINE_TOLERANCE * span[k]
                   for k in (0, 1)):
                known[mid] = ym
                added = True
        if not added:
            break
    xs = sorted(known)
    for x in xs:
        for label, y in zip(("ELBO", "KL(q || posterior)"), known[x]):
            if not math.isfinite(y):
                raise InputError(f"cannot plot: {label} at {p.name} = {x:.6g} is {y!r}, "
                                 "not a finite double")
    return Curves(xs, [known[x][0] for x in xs], [known[x][1] for x in xs], p.log_evidence)


# ---------------------------------------------------------------------------
# the figure
# ---------------------------------------------------------------------------

def _n(x: float, digits: int = 4) -> str:
    """A number for a label: ``digits`` significant digits; rounding noise below 1e-12 is 0."""
    return "0" if abs(x) < 1e-12 else f"{x:.{digits}g}"


def draw(plt, title: str, caption: str, p: Problem, c: Curves, best: float | None):
    """The two-panel figure: log p(X) and the ELBO with the gap shaded; the KL below.

    Markers carry gids ``values-marker`` and ``optimum-marker`` (SVG ids, and a handle
    for tests)."""
    fig, (top, bottom) = plt.subplots(2, 1, sharex=True, figsize=(6.4, 6.0),
                                      gridspec_kw={"height_ratios": [3, 2]})
    how = f", {p.evidence_note}" if p.evidence_note else ""
    top.axhline(c.log_evidence, linestyle="--", color="tab:red",
                label=f"log p(X) = {_n(c.log_evidence, 6)} (flat in {p.name}{how})")
    top.plot(c.xs, c.elbo, color="tab:blue", label="ELBO")
    top.fill_between(c.xs, c.elbo, [c.log_evidence] * len(c.xs), color="tab:orange",
                     alpha=0.2, linewidth=0, label="gap = KL(q || posterior)")
    bottom.plot(c.xs, c.kl, color="tab:orange", label="KL(q || posterior) = log p(X) - ELBO")
    lo, hi = c.xs[0], c.xs[-1]
    marks = []
    if p.value is not None and lo <= p.value <= hi:
        marks.append(("values-marker", p.value, "o", "black", "[values]"))
    if best is not None and lo <= best <= hi:
        marks.append(("optimum-marker", best, "*", "tab:green", "optimum"))
    for gid, x, shape, colour, what in marks:
        e, k = p.at(p.elbo, x), p.at(p.kl, x)
        top.plot([x], [e], shape, color=colour, markersize=9 if shape == "*" else 6, gid=gid,
                 label=f"{what}: {p.name} = {_n(x)}, ELBO = {_n(e, 6)}", zorder=3)
        bottom.plot([x], [k], shape, color=colour, markersize=9 if shape == "*" else 6,
                    gid=f"{gid}-kl", label=f"{what}: KL = {_n(k)}", zorder=3)
        for ax in (top, bottom):
            ax.axvline(x, color=colour, linewidth=0.6, linestyle=":", zorder=1)
    top.set_ylabel("log p(X) and ELBO (nats)")
    bottom.set_ylabel("KL(q || posterior) (nats)")
    bottom.set_xlabel(f"{p.name} (variational parameter)")
    if min(c.kl) > 0 and max(c.kl) > LOG_SCALE_RATIO * min(c.kl):
        bottom.set_yscale("log")  # a range the user chose wide: the minimum stays visible
    else:
        bottom.set_ylim(bottom=0)  # the KL is never negative: its distance from 0 is the gap
    top.set_xlim(lo, hi)
    fig.suptitle(title)
    top.set_title(caption, fontsize=8)
    for ax in (top, bottom):
        ax.legend(fontsize=8)
        ax.grid(True, alpha=0.3)
    fig.tight_layout()
    return fig


def caption_of(model, symbol) -> str:
    """The other parameters' values: the other variational parameters first."""
    variational = set(model.variational_parameters)
    held = sorted(((s, v) for s, v in model.values.items() if s != symbol),
                  key=lambda sv: sv[0] not in variational)
    parts = [f"{s} = {_n(float(v))}" for s, v in held]
    text = "held at [values]: " + ", ".join(parts) if parts else "no other parameters"
    return "\n".join(textwrap.wrap(text, 100))


# ---------------------------------------------------------------------------
# the command
# ---------------------------------------------------------------------------

def _evidence_and_kl(model, elbo: sp.Expr, path: str) -> tuple[sp.Expr, sp.Expr, str]:
    """log p(X) and the KL as expressions, and how log p(X) was found.

    Without a closed form, log p(X) is one mpmath quadrature at [values]: it does not
    depend on q, so one number serves the whole curve, and the KL is log p(X) - ELBO."""
    try:
        return model.log_evidence(), model.kl_to_posterior(), ""
    except NoClosedForm as exc:
        reason = exc.reason
    try:
        quad = model.quadrature()
    except NoClosedForm as exc:
        raise InputError(f"cannot plot: log p(X) has no closed form ({reason}) and no "
                         f"quadrature ({exc.reason})", path) from None
    problem = quadrature_too_rough(quad) or quad["divergent"].get("log_evidence")
    if problem:
        raise InputError(f"cannot plot: log p(X) has no closed form ({reason}) and its "
                         f"quadrature gives no value ({problem})", path)
    with mpmath.workdps(30):
        log_ev = sp.Float(quad["log_evidence"], 30)
    return log_ev, log_ev - elbo, "by quadrature"


def load_problem(path: str, vary: str):
    """The model file and the :class:`Problem` of varying ``vary``, every other symbol at its
    [values]; InputError for an unknown parameter, a missing value or no closed ELBO."""
    model = load_model(path)
    params = {str(p): p for p in model.variational_parameters}
    if vary not in params:
        raise InputError(f"{vary!r} is not a variational parameter; expected one of "
                         + ", ".join(params), path)
    symbol = params[vary]
    for z, args in model.free_probability_factors():
        if any(symbol in a.free_symbols for a in args):
            # moving one of them alone leaves the simplex: no q has those probabilities
            raise InputError(f"{vary} is a probability of q({z}), whose probabilities sum "
                             "to 1 only at the values: write the last as 1 minus the others "
                             "(Categorical(r0, r1, 1 - r0 - r1)) to vary it along the simplex",
                             path)
    try:
        elbo = model.elbo()
    except NoClosedForm as exc:
        raise InputError(f"cannot plot without a closed form of the ELBO: {exc.reason} "
                         "(`symelbo model` gives its value at [values] by quadrature, too slow "
                         "to repeat along a curve)", path) from None
    log_ev, kl, note = _evidence_and_kl(model, elbo, path)
    env = model.environment()
    env.pop(symbol, None)
    missing = (elbo.free_symbols | kl.free_symbols | log_ev.free_symbols) - set(env) - {symbol}
    if missing:
        raise InputError("give [values] for " + ", ".join(sorted(map(str, missing))), path)
    with mpmath.workdps(30):
        evidence = float(mp_value(with_numbers(log_ev, env), {symbol: sp.Integer(1)}))
    value = model.values.get(symbol)
    return model, Problem(vary, symbol, _domain(model, symbol),
                          None if value is None else float(value),
                          with_numbers(elbo, env), with_numbers(kl, env), evidence, note)


def save(plt, fig, out_path: str) -> None:
    """Write the figure in the format its extension names, the same bytes for the same figure."""
    try:
        kind = PurePath(out_path).suffix.lower().lstrip(".")
        fig.savefig(out_path, format=kind, metadata=_STABLE_METADATA[kind], dpi=DPI)
    except OSError as exc:
        raise InputError(f"cannot write the plot ({exc.strerror or exc})", out_path) from None
    finally:
        plt.close(fig)


def run_plot(path: str, vary: str, out_path: str, low: float | None = None,
             high: float | None = None, points: int = INITIAL_POINTS) -> int:
    """Draw log p(X), ELBO and KL against the variational parameter ``vary`` into ``out_path``.

    Other symbols stay at their [values]. ``low``/``high`` replace the default range
    (see the module docstring). Returns 0; bad input (an unknown parameter, a model
    without closed forms, a range outside the parameter's domain, matplotlib missing)
    raises InputError.
    """
    check_output(out_path)
    if points < 2:
        raise InputError("points must be at least 2", path)
    if (low is None) != (high is None):
        raise InputError("give both ends of the range", path)
    if low is not None and not low < high:
        raise InputError(f"empty range [{low}, {high}]", path)
    model, p = load_problem(path, vary)
    for end in (low, high):
        if end is not None and not p.inside(end):
            where = "positive" if p.domain == "positive" else "strictly between 0 and 1"
            raise InputError(f"{vary} must stay {where}; the range reaches {end:g}", path)
    plt = pyplot(path)
    best = optimum(p)
    lo, hi = (low, high) if low is not None else default_range(p, best)
    extra = tuple(x for x in (p.value, best) if x is not None)
    try:
        curves = sample(p, lo, hi, points, extra)
    except InputError as exc:
        raise exc.located(path) from None
    caption = caption_of(model, p.symbol)
    if best is None and low is None:
        caption += f"\nthe ELBO has no maximum inside the domain of {vary}"
    save(plt, draw(plt, model.name or PurePath(path).stem, caption, p, curves, best), out_path)
    return 0
