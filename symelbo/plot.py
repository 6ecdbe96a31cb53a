"""Plot log p(X), the ELBO and KL(q || posterior) against one variational parameter.

The picture of the identity log p(X) = ELBO + KL: the log evidence is flat in
a variational parameter, the ELBO and the KL mirror each other. Needs the
optional matplotlib (``pip install symelbo[plot]``); it draws with the
non-interactive Agg backend.
"""

from __future__ import annotations

import mpmath
import sympy as sp

from symelbo.errors import InputError
from symelbo.models import NoClosedForm, load_model


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
        import matplotlib.pyplot as plt
    except ImportError:
        raise InputError("plotting needs matplotlib: pip install symelbo[plot]", path) from None

    from symelbo.models import mp_value
    xs = [lo + (hi - lo) * i / (points - 1) for i in range(points)]
    series = {"log p(X)": [], "ELBO": [], "KL(q || posterior)": []}
    with mpmath.workdps(30):
        for x in xs:
            at = dict(env)
            at[symbol] = sp.Rational(x)
            series["log p(X)"].append(float(mp_value(log_ev, at)))
            series["ELBO"].append(float(mp_value(elbo, at)))
            series["KL(q || posterior)"].append(float(mp_value(kl, at)))
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for label, ys in series.items():
        ax.plot(xs, ys, label=label)
    ax.set_xlabel(vary)
    ax.set_title(model.name)
    ax.legend()
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    try:
        fig.savefig(out_path)
    except OSError as exc:
        raise InputError(f"cannot write {out_path}: {exc}", out_path) from None
    finally:
        plt.close(fig)
    return 0
