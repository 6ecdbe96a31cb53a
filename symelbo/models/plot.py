"""Plot log p(X), the ELBO and KL(q || posterior) against one variational parameter.

The picture of the identity log p(X) = ELBO + KL: the log evidence is flat in
a variational parameter, the ELBO and the KL mirror each other. Needs the
optional matplotlib (``pip install symelbo[plot]``); it draws with the
non-interactive Agg backend.
"""

from __future__ import annotations

import math
from pathlib import PurePath

import mpmath
import sympy as sp

from symelbo.core.errors import InputError
from symelbo.models.model import NoClosedForm, load_model


#: The formats a plot is written in, by the extension of its file name.
FORMATS = ("png", "pdf", "svg")


#: Metadata that keeps the same plot byte for byte the same file (no creation date).
_STABLE_METADATA = {"png": {}, "pdf": {"CreationDate": None}, "svg": {"Date": None}}


def check_output(out_path: str) -> None:
    """Refuse an output name whose extension is not one of FORMATS (matplotlib would
    otherwise add ``.png`` to a bare name, or fail on ``.exe`` after all the work)."""
    suffix = PurePath(out_path).suffix.lower().lstrip(".")
    if suffix not in FORMATS:
        got = f"'.{suffix}'" if suffix else "no extension"
        raise InputError(f"the plot file has {got}; give a name ending in "
                         + ", ".join(f".{f}" for f in FORMATS[:-1]) + f" or .{FORMATS[-1]}",
                         out_path)


def _default_range(model, symbol, value):
    if _is_probability(model, symbol):
        return 0.01, 0.99
    if symbol.is_positive:
        v = float(value) if value is not None else 1.0
        return v / 4, v * 4
    v = float(value) if value is not None else 0.0
    return v - 3 * max(1.0, abs(v)), v + 3 * max(1.0, abs(v))


def _is_probability(model, symbol) -> bool:
    for lat in model.latents:
        for args in lat.q_args:
            for i, a in enumerate(args):
                if a == symbol and lat.q.family.domain_of(i) == "probability":
                    return True
    return False


def run_plot(path: str, vary: str, out_path: str, low: float | None = None,
             high: float | None = None, points: int = 41) -> int:
    """Draw log p(X), ELBO and KL against the variational parameter ``vary`` into ``out_path``.

    Other symbols stay at their [values]. Returns 0; bad input (an unknown
    parameter, a model without closed forms, matplotlib missing) raises InputError.
    """
    check_output(out_path)
    model = load_model(path)
    params = {str(p): p for p in model.variational_parameters}
    if vary not in params:
        raise InputError(f"{vary!r} is not a variational parameter; expected one of "
                         + ", ".join(params), path)
    symbol = params[vary]
    try:
        elbo = model.elbo()
        log_ev = model.log_evidence()
        kl = model.kl_to_posterior()
    except NoClosedForm as exc:
        raise InputError(f"cannot plot without closed forms: {exc.reason}", path) from None
    env = model.environment()
    env.pop(symbol, None)
    missing = (elbo.free_symbols | kl.free_symbols | log_ev.free_symbols) - set(env) - {symbol}
    if missing:
        raise InputError("give [values] for " + ", ".join(sorted(map(str, missing))), path)
    if points < 2:
        raise InputError("points must be at least 2", path)
    lo, hi = _default_range(model, symbol, model.values.get(symbol))
    lo = lo if low is None else low
    hi = hi if high is None else high
    if not lo < hi:
        raise InputError(f"empty range [{lo}, {hi}]", path)
    if symbol.is_positive and lo <= 0:
        raise InputError(f"{vary} must stay positive; the range starts at {lo}", path)
    try:
        import matplotlib
        matplotlib.use("Agg")
        matplotlib.rcParams["svg.hashsalt"] = "symelbo"  # stable ids in an SVG
        import matplotlib.pyplot as plt
    except ImportError:
        raise InputError("plotting needs matplotlib: pip install symelbo[plot]", path) from None

    from symelbo.models.model import mp_value
    xs = [lo + (hi - lo) * i / (points - 1) for i in range(points)]
    series = {"log p(X)": [], "ELBO": [], "KL(q || posterior)": []}
    curves = {"log p(X)": log_ev, "ELBO": elbo, "KL(q || posterior)": kl}
    with mpmath.workdps(30):
        for x in xs:
            at = dict(env)
            at[symbol] = sp.Rational(x)
            for label, expr in curves.items():
                y = float(mp_value(expr, at))
                if not math.isfinite(y):
                    # a curve with a hole or an overflow would be drawn as if it were whole
                    raise InputError(f"cannot plot: {label} at {vary} = {x:.6g} is {y!r}, "
                                     "not a finite double", path)
                series[label].append(y)
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for label, ys in series.items():
        ax.plot(xs, ys, label=label)
    ax.set_xlabel(vary)
    ax.set_title(model.name)
    ax.legend()
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    try:
        kind = PurePath(out_path).suffix.lower().lstrip(".")
        fig.savefig(out_path, format=kind, metadata=_STABLE_METADATA[kind])
    except OSError as exc:
        raise InputError(f"cannot write the plot ({exc.strerror or exc})", out_path) from None
    finally:
        plt.close(fig)
    return 0
