"""`symelbo plot`: the default range law, the markers and labels, --range, the announcement,
the missing extra, determinism, and a model whose log p(X) comes by quadrature."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from symelbo.cli.commands import main
from symelbo.core.errors import InputError
from symelbo.models import plot

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
NORMAL_GAMMA = str(EXAMPLES / "normal_gamma.toml")


@pytest.fixture(scope="module")
def normal_gamma_m():
    """normal_gamma varying m: the example whose gap of 0.1 nat a range of -10..20 hid."""
    _, p = plot.load_problem(NORMAL_GAMMA, "m")
    best = plot.optimum(p)
    return p, best, plot.default_range(p, best)


# --- the range ------------------------------------------------------------------

def test_the_default_range_is_where_the_elbo_is_within_the_drop_of_its_maximum(normal_gamma_m):
    p, best, (lo, hi) = normal_gamma_m
    top, kl_min = p.at(p.elbo, best), p.at(p.kl, best)
    assert 4.90 < best < 4.92 and 0.09 < kl_min < 0.11
    # an optimum: a small step either way lowers the ELBO
    assert p.at(p.elbo, best - 1e-4) < top and p.at(p.elbo, best + 1e-4) < top
    drop = max(plot.DROP_FACTOR * kl_min, plot.MIN_DROP)
    for end in (lo, hi):
        assert p.at(p.elbo, end) == pytest.approx(top - drop, abs=1e-6)
        assert p.at(p.kl, end) == pytest.approx(kl_min + drop, abs=1e-6)
    assert lo < p.value < hi and 4.5 < lo < best < hi < 5.3   # not -10..20


def test_a_q_that_reaches_the_posterior_gets_the_floor_drop():
    _, p = plot.load_problem(str(EXAMPLES / "beta_bernoulli.toml"), "alpha")
    best = plot.optimum(p)
    assert best == pytest.approx(6, abs=1e-6)          # the conjugate posterior's alpha
    assert abs(p.at(p.kl, best)) < 1e-12
    lo, hi = plot.default_range(p, best)
    for end in (lo, hi):
        assert p.at(p.kl, end) == pytest.approx(plot.MIN_DROP, abs=1e-6)


def test_the_range_takes_in_the_values_point(tmp_path):
    text = (EXAMPLES / "normal_mean.toml").read_text().replace("m = 0.9", "m = 4")
    f = tmp_path / "far.toml"
    f.write_text(text)
    (tmp_path / "normal_mean.csv").write_bytes((EXAMPLES / "normal_mean.csv").read_bytes())
    _, p = plot.load_problem(str(f), "m")
    lo, hi = plot.default_range(p, plot.optimum(p))
    # widened to 4, then by 5 % of that width each way: 4 is 1/22 of the width from hi
    assert p.value == 4 and lo < 1 and hi - 4 == pytest.approx((hi - lo) / 22)


def test_an_elbo_without_an_interior_maximum():
    _, p = plot.load_problem(str(EXAMPLES / "gaussian_mixture.toml"), "r_1")
    assert p.domain == "probability" and plot.optimum(p) is None
    assert plot.default_range(p, None) == (plot.PROBABILITY_MARGIN, 1 - plot.PROBABILITY_MARGIN)


def test_the_grid_is_refined_where_a_curve_bends():
    _, p = plot.load_problem(str(EXAMPLES / "normal_mean.toml"), "s")
    curves = plot.sample(p, 0.001, 3.0, points=9)
    steps = [b - a for a, b in zip(curves.xs, curves.xs[1:])]
    assert len(curves.xs) > 9 and min(steps) < max(steps) / 8   # denser near s -> 0


# --- the figure -------------------------------------------------------------------

@pytest.fixture(scope="module")
def figure(normal_gamma_m):
    pytest.importorskip("matplotlib", reason="matplotlib is the optional [plot] extra")
    plt = plot.pyplot("test")
    p, best, (lo, hi) = normal_gamma_m
    curves = plot.sample(p, lo, hi, points=21, extra=(p.value, best))
    model, _ = plot.load_problem(NORMAL_GAMMA, "m")
    return plt, p, curves, best, plot.caption_of(model, p.symbol)


def test_markers_labels_and_caption(figure):
    plt, p, curves, best, caption = figure
    fig = plot.draw(plt, "Normal-Gamma", caption, p, curves, best)
    top, bottom = fig.axes
    gids = {line.get_gid(): line for ax in fig.axes for line in ax.get_lines() if line.get_gid()}
    assert set(gids) == {"values-marker", "values-marker-kl", "optimum-marker", "optimum-marker-kl"}
    assert list(gids["values-marker"].get_xdata()) == [4.9]
    assert list(gids["optimum-marker"].get_xdata()) == [best]
    assert top.get_ylabel() == "log p(X) and ELBO (nats)"
    assert bottom.get_ylabel() == "KL(q || posterior) (nats)"
    assert bottom.get_xlabel() == "m (variational parameter)"
    assert top.get_title() == caption == ("held at [values]: s = 0.25, a = 6, b = 3.5, mu0 = 5, "
                                          "lambda0 = 1, a0 = 2, b0 = 2")
    assert bottom.get_ylim()[0] == 0
    labels = [t.get_text() for t in top.get_legend().get_texts()]
    assert labels[0] == "log p(X) = -10.6008 (flat in m)"
    assert labels[3] == "[values]: m = 4.9, ELBO = -10.7018"
    assert labels[4].startswith("optimum: m = 4.911, ELBO = -10.7008")
    plt.close(fig)


@pytest.mark.parametrize("kind", plot.FORMATS)
def test_the_same_figure_gives_the_same_bytes(figure, tmp_path, kind):
    plt, p, curves, best, caption = figure
    made = []
    for name in ("one", "two"):
        out = tmp_path / f"{name}.{kind}"
        plot.save(plt, plot.draw(plt, "Normal-Gamma", caption, p, curves, best), str(out))
        made.append(out.read_bytes())
    assert made[0] == made[1]
    if kind == "svg":
        text = made[0].decode()
        assert 'id="values-marker"' in text and 'id="optimum-marker"' in text


def test_the_command_announces_the_file(tmp_path, capsys):
    pytest.importorskip("matplotlib", reason="matplotlib is the optional [plot] extra")
    out = tmp_path / "gap.png"
    out.write_bytes(b"an older plot")
    assert main(["plot", str(EXAMPLES / "normal_mean.toml"), "--vary", "m",
                 "--range", "0.5", "1.5", "-o", str(out)]) == 0
    assert capsys.readouterr().err == f"symelbo: wrote {out}\n"
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# --- refusals -------------------------------------------------------------------

@pytest.mark.parametrize("ends, message", [
    (["5", "4"], "argument --range: LO must be less than HI, got 5 4"),
    (["1", "1"], "argument --range: LO must be less than HI, got 1 1"),
    (["x", "4"], "argument --range: LO and HI must be numbers, got 'x'"),
    (["1", "inf"], "argument --range: LO and HI must be finite numbers, got 'inf'"),
    (["nan", "1"], "argument --range: LO and HI must be finite numbers, got 'nan'"),
])
def test_range_usage_errors(capsys, ends, message):
    with pytest.raises(SystemExit) as stop:
        main(["plot", NORMAL_GAMMA, "--vary", "m", "--range", *ends])
    assert stop.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1] == f"symelbo plot: error: {message}"


@pytest.mark.parametrize("vary, ends, message", [
    ("s", ("-1", "4"), "s must stay positive; the range reaches -1"),
    ("s", ("0", "4"), "s must stay positive; the range reaches 0"),
])
def test_a_range_outside_the_domain(tmp_path, capsys, vary, ends, message):
    assert main(["plot", NORMAL_GAMMA, "--vary", vary, "--range", *ends,
                 "-o", str(tmp_path / "p.png")]) == 2
    assert capsys.readouterr().err == f"symelbo: {NORMAL_GAMMA}: {message}\n"


def test_a_probability_range_stays_inside_zero_and_one(tmp_path):
    with pytest.raises(InputError, match=r": r_1 must stay strictly between 0 and 1; "
                                         r"the range reaches 1$"):
        plot.run_plot(str(EXAMPLES / "gaussian_mixture.toml"), "r_1", str(tmp_path / "p.png"),
                      0.2, 1.0)


def test_without_matplotlib_the_message_names_both_installs(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)   # import matplotlib now fails
    with pytest.raises(InputError) as refused:
        plot.pyplot("m.toml")
    assert str(refused.value) == (
        "m.toml: plotting needs matplotlib, the optional plot extra: "
        "pip install 'symelbo[plot]' (in a clone of the repository: pip install '.[plot]')")


def test_an_elbo_without_closed_form_is_refused_in_one_line(tmp_path):
    f = tmp_path / "logit.toml"
    f.write_text('[latent]\nt = "Normal(0, 1)"\n[observed]\nx = { dist = '
                 '"Bernoulli(1/(1 + exp(-t)))", data = [1, 0, 1] }\n[variational]\n'
                 't = "Normal(m, s)"\n[values]\nm = 0.3\ns = 0.8\n')
    with pytest.raises(InputError) as refused:
        plot.load_problem(str(f), "m")
    assert str(refused.value) == (
        f"{f}: cannot plot without a closed form of the ELBO: E_q[log(1 - 1/(1 + exp(-t)))] "
        "under q(t) = Normal(m, s) is not in the closed-form table (`symelbo model` gives "
        "its value at [values] by quadrature, too slow to repeat along a curve)")


def test_log_evidence_by_quadrature(tmp_path):
    """Poisson counts with a log-normal rate: the ELBO is closed, log p(X) is not; one
    quadrature at [values] gives log p(X) for the whole curve, and KL = log p(X) - ELBO."""
    f = tmp_path / "lograte.toml"
    f.write_text('[latent]\nt = "Normal(0, 1)"\n[observed]\nk = { dist = "Poisson(exp(t))", '
                 'data = [2, 3, 1, 4] }\n[variational]\nt = "Normal(m, s)"\n'
                 '[values]\nm = 0.8\ns = 0.4\n')
    _, p = plot.load_problem(str(f), "m")
    assert p.evidence_note == "by quadrature"
    assert p.log_evidence == pytest.approx(-8.03492533862168, abs=1e-12)
    assert p.at(p.kl, 0.8) == pytest.approx(0.0879246990572625, abs=1e-10)
    best = plot.optimum(p)
    assert 0.75 < best < 0.77 and p.at(p.kl, best) < p.at(p.kl, 0.8)
