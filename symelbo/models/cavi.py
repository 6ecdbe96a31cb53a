"""Coordinate-ascent variational inference (CAVI) for a model file: optimal factors derived, updates checked, run.

For each latent z_j of the mean-field q the optimal factor is (Bishop PRML 10.9)

    log q_j*(z_j) = E_{-j}[log p(X, Z)] + const.

Map of this module:

- :class:`Piece` and :func:`log_joint_pieces`: the expanded log joint as terms
  ``G * c``: ``G`` holds the global latents and constants, ``c`` one
  observation's data and per-observation latents, summed over the observations
  through a statistic (``n``, ``sum(x)``, or a weighted ``sum(r*x)`` whose value
  comes from q(z_i)). Cost linear in the number of observations, and for a model
  without per-observation latents independent of it.
- :func:`derive`: for each factor, the terms that involve z_j, their expectation
  under the other factors from the closed-form table (written with ``E[...]``
  placeholders, then resolved), the family read off the sufficient statistics
  (Normal from z and z**2, Gamma from z and log z, Beta from log z and log(1-z),
  Bernoulli/Categorical by evaluating at each value) and each variational
  parameter's update as a closed form; or the reason it is declined (the terms
  that break conjugacy).
- :func:`checks_of`: for each update, the family check (log q* minus the
  recognised log density does not depend on z_j) and the stationarity check
  (the ELBO's gradient in the factor's parameters vanishes at the update), both
  through :func:`symelbo.core.kernel.prove_identity`; where the kernel finds no
  proof they are tested at the iterates (``tested``, never ``proved``).
- :func:`run`: the updates from ``[values]`` (or a default start) to the fixed
  point, the ELBO after every update (a decrease is reported as a refuted
  check), the final values, ELBO, log evidence and KL to the posterior.
- :func:`report` and :func:`format_text`: the JSON contract of ``symelbo cavi``
  and its plain-text form. Documents are in :mod:`symelbo.models.cavi_document`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import mpmath
import sympy as sp

from symelbo.core.errors import InputError
from symelbo.core.kernel import prove_identity
from symelbo.models import families as fam
from symelbo.models.model import Latent, Model, NoClosedForm, mp_value, sum_over
from symelbo.models.model_expr import reduce_indicators
from symelbo.models.vectors import is_joint
from symelbo.models.tables import numpy_module

PROVED, TESTED, REFUTED, UNKNOWN = "proved", "tested", "refuted", "unknown"
#: Digits of the arithmetic of the iteration's global quantities.
DIGITS = 50
#: Default number of sweeps (one sweep updates every factor once) and convergence tolerance.
ITERATIONS = 200
TOL = 1e-10
#: Relative size of an ELBO decrease that counts as one: 50-digit arithmetic for global
#: models, double precision where per-observation sums enter.
EXACT_SLACK = mpmath.mpf(10) ** -35
FLOAT_SLACK = 1e-9
#: Relative size of a gradient that counts as zero when tested at an iterate.
GRADIENT_SLACK = 1e-7


# ---------------------------------------------------------------------------
# the log joint as pieces G * sum_i c(x_i, z_i)
# ---------------------------------------------------------------------------

@dataclass
class Piece:
    """One term ``G * S`` of the log joint: ``G`` global, ``S`` = sum_i c(x_i, z_i) (or 1)."""

    glob: sp.Expr
    local: sp.Expr
    obs: object = None          # the Observed it is summed over, or None for a prior term
    stat: sp.Expr = sp.S.One    # the statistic symbol standing for S


@dataclass
class Statistic:
    """A statistic symbol: its display, and how its value is found (data, or q of local latents)."""

    symbol: sp.Symbol
    local: sp.Expr              # c(x, z) of one observation
    obs: object
    weighted: sp.Expr | None    # E_q(z)[c] in the generic local parameters, or None (data only)
    latex: str
    value: sp.Expr | None = None


def _split(term: sp.Expr, local_symbols: set) -> tuple[sp.Expr, sp.Expr]:
    """(the factors of a product free of ``local_symbols``, the others)."""
    g, c = [], []
    for factor in sp.Mul.make_args(term):
        (c if factor.free_symbols & local_symbols else g).append(factor)
    return sp.Mul(*g), sp.Mul(*c)


def _indexed(expr: sp.Expr, symbols) -> sp.Expr:
    """``expr`` with each symbol ``s`` written ``s_i`` (for display of one observation)."""
    return expr.xreplace({s: sp.Symbol(f"{s.name}_i") for s in symbols})


class LogJoint:
    """log p(X, Z) expanded into pieces, with the statistics they need."""

    def __init__(self, model: Model):
        self.model = model
        self.globals = [lat for lat in model.latents if lat.per is None]
        self.locals = [lat for lat in model.latents if lat.per is not None]
        self.generic = {lat.name: model.symbol(lat.name) for lat in model.latents}
        self.local_symbols = {self.generic[lat.name] for lat in self.locals}
        self.pieces: list[Piece] = []
        self.stats: dict[tuple, Statistic] = {}
        single = len(model.observed) == 1
        for lat in self.globals:
            for term in sp.Add.make_args(sp.expand(lat.prior.family.logpdf(
                    self.generic[lat.name], lat.prior.args))):
                self.pieces.append(Piece(term, sp.S.One))
        for obs in model.observed:
            x = obs.symbol
            template = reduce_indicators(sp.expand(obs.dist.family.logpdf(x, obs.dist.args)))
            mine = [lat for lat in self.locals if lat.per == obs.name]
            for lat in mine:
                z = self.generic[lat.name]
                prior = lat.prior.family.logpdf(z, lat.prior.args)
                template += sp.expand(prior) if not prior.has(sp.Piecewise) else prior
            for term in sp.Add.make_args(template):
                g, c = _split(term, {x} | self.local_symbols)
                piece = Piece(g, c, obs)
                piece.stat = self._statistic(c, obs, mine, single).symbol
                self.pieces.append(piece)

    def _statistic(self, c: sp.Expr, obs, mine: list, single: bool) -> Statistic:
        key = (obs.name, c)
        if key in self.stats:
            return self.stats[key]
        x = obs.symbol
        zs = [self.generic[lat.name] for lat in mine if c.has(self.generic[lat.name])]
        if not zs:
            if c == 1:
                symbol = sp.Symbol("n" if single else f"n_{obs.name}", integer=True, positive=True)
                latex = "N" if single else f"N_{{{sp.latex(x)}}}"
                value = sp.Integer(len(obs.data))
            else:
                symbol = sp.Symbol(f"sum({c})", real=True)
                latex = r"\sum_{i} " + sp.latex(_indexed(c, [x]))
                value = sum_over(c, x, obs.data, obs.array)
            stat = Statistic(symbol, c, obs, None, latex, value)
        else:
            weighted = c
            for lat in mine:
                z = self.generic[lat.name]
                if weighted.has(z):
                    weighted = _expect_part(lat.q.family, weighted, z, lat.q.args)
            weighted = sp.expand(weighted)
            shown = sp.Symbol(f"sum({weighted})", real=True)
            same = next((s for s in self.stats.values() if s.symbol == shown), None)
            if same is not None:
                self.stats[key] = same
                return same
            params = {s for lat in mine for a in lat.q.args for s in a.free_symbols}
            latex = r"\sum_{i} " + sp.latex(_indexed(weighted, [x, *params]))
            stat = Statistic(shown, c, obs, weighted, latex)
        self.stats[key] = stat
        return stat

    def statistic(self, symbol: sp.Symbol) -> Statistic:
        """The statistic a symbol stands for."""
        return next(s for s in self.stats.values() if s.symbol == symbol)


def _expect_part(family: fam.Family, expr: sp.Expr, z: sp.Symbol, args) -> sp.Expr:
    """E_q[expr] over z ~ family(args), term by term from the table; NoClosedForm otherwise."""
    if family.support_values(args) is not None:
        value = family.expect(expr, z, args)
        if value is None:
            raise NoClosedForm(f"E[{expr}] under q({z}) = {family.name} is not finite")
        return value
    out = []
    for term in sp.Add.make_args(sp.expand(expr)):
        rest, part = [], []
        for factor in sp.Mul.make_args(term):
            (part if factor.has(z) else rest).append(factor)
        value = family.expect(sp.Mul(*part), z, args)
        if value is None:
            raise NoClosedForm(f"E[{sp.Mul(*part)}] under q({z}) = {family.name} is not in "
                               "the closed-form table")
        out.append(sp.Mul(*rest) * value)
    return sp.Add(*out)


# ---------------------------------------------------------------------------
# expectations with placeholders E[f(z)]
# ---------------------------------------------------------------------------

class Expectations:
    """Placeholders ``E[f(z)]`` for the expectations under the other factors, and their table values."""

    def __init__(self, model: Model, joint: LogJoint):
        self.q = {joint.generic[lat.name]: lat for lat in joint.globals}
        self.values: dict[sp.Symbol, sp.Expr] = {}
        self.latex: dict[sp.Symbol, str] = {}

    def placeholder(self, part: sp.Expr, z: sp.Symbol) -> sp.Symbol:
        symbol = sp.Symbol(f"E[{part}]", **({"positive": True} if part == z and z.is_positive
                                             else {"real": True}))
        if symbol not in self.values:
            lat = self.q[z]
            value = lat.q.family.expect(part, z, lat.q.args)
            if value is None:
                raise NoClosedForm(f"E[{part}] under q({z}) = {lat.q.call.name} is not in the "
                                   "closed-form table")
            self.values[symbol] = value
            self.latex[symbol] = r"\mathbb{E}[" + sp.latex(part) + "]"
        return symbol

    def of(self, expr: sp.Expr, skip: sp.Symbol | None = None) -> sp.Expr:
        """E over every global factor but ``skip``'s of an expanded product, with placeholders."""
        out = []
        for term in sp.Add.make_args(expr):
            parts: dict = {}
            coef = []
            for factor in sp.Mul.make_args(term):
                zs = (factor.free_symbols & set(self.q)) - {skip}
                if not zs:
                    coef.append(factor)
                elif len(zs) > 1:
                    raise NoClosedForm(f"{factor} couples {', '.join(sorted(map(str, zs)))} "
                                       "inside one function")
                else:
                    parts.setdefault(zs.pop(), []).append(factor)
            value = sp.Mul(*coef)
            for z, fs in parts.items():
                value *= self.placeholder(sp.Mul(*fs), z)
            out.append(value)
        return sp.Add(*out)


# ---------------------------------------------------------------------------
# the optimal factors
# ---------------------------------------------------------------------------

#: The sufficient statistics of each continuous family, by support (Bishop 10.1.3, Blei 2017).
_KERNELS = {fam.REAL: ("Normal", "z and z**2"), fam.POSITIVE: ("Gamma", "z and log(z)"),
            fam.UNIT: ("Beta", "log(z) and log(1 - z)")}


@dataclass
class Factor:
    """One factor q_j(z_j) of the mean-field q: its derivation, recognised family and updates."""

    latent: object                      # the model's Latent
    symbol: sp.Symbol                   # z_j (generic for a per-observation latent)
    local: bool
    others: list[str] = field(default_factory=list)
    terms: sp.Expr = sp.S.Zero          # the log joint's terms that involve z_j
    expected: sp.Expr = sp.S.Zero       # their expectation, with E[...] placeholders
    features: dict = field(default_factory=dict)   # sufficient statistic -> coefficient
    at_values: list = field(default_factory=list)  # finite latent: E[...] at z = k
    family: str | None = None
    natural: list = field(default_factory=list)    # [(name, latex name, expr with placeholders)]
    updates: dict = field(default_factory=dict)    # param symbol -> expr with placeholders
    resolved: dict = field(default_factory=dict)   # param symbol -> expr in other parameters
    declined: str | None = None
    checks: list = field(default_factory=list)
    stationarity: list = field(default_factory=list)  # (param, gradient at the update, proved)
    family_identity: bool | None = None                # the kernel proved the family check
    worst_gradient: float | None = None                # largest relative gradient at an iterate

    @property
    def name(self) -> str:
        return self.latent.name

    @property
    def params(self) -> list[sp.Symbol]:
        return list(self.updates)


def _bare_parameters(lat) -> str | None:
    """Why q's parameters cannot receive updates, or None when each is a plain name."""
    for i, (arg, call) in enumerate(zip(lat.q.args, lat.q.call.args)):
        if not isinstance(arg, sp.Symbol) or arg.is_number:
            return (f"q({lat.name}) = {lat.q.text()} fixes its "
                    f"{lat.q.family.param_name(i)} to {call.text}: CAVI needs each parameter "
                    "of q as a name of its own")
    names = [str(a) for a in lat.q.args]
    if len(set(names)) != len(names):
        return f"q({lat.name}) = {lat.q.text()} uses one name for two parameters"
    return None


class ComponentView:
    """A model seen with each independent component w_k of a vector latent as a latent of its
    own (prior and q at that component's parameters): mean field is then over the
    components, and each gets its update. Everything else is the model's."""

    def __init__(self, model: Model):
        self._model = model
        self.latents = []
        self._components = {}
        for lat in model.latents:
            if lat.shape is None:
                self.latents.append(lat)
                continue
            for k, z in enumerate(lat.symbols):
                one = Latent(str(z), replace(lat.prior, args=lat.prior_args[k]),
                             replace(lat.q, args=lat.q_args[k]), symbols=[z],
                             prior_args=[lat.prior_args[k]], q_args=[lat.q_args[k]])
                self.latents.append(one)
                self._components[str(z)] = z

    def symbol(self, name: str):
        return self._components.get(name) or self._model.symbol(name)

    def __getattr__(self, name):
        return getattr(self._model, name)


class Derivation:
    """Every factor's optimal form for one model."""

    def __init__(self, model: Model):
        for lat in model.latents:
            if lat.shape is not None and (is_joint(lat.q.family) or is_joint(lat.prior.family)):
                # a joint factor (Dirichlet, MultivariateNormal) has no update in this table
                raise lat.q.where.error(
                    f"symelbo cavi takes a vector latent only as independent components (a "
                    f"scalar prior and q with shape = K); q({lat.name}) = {lat.q.text()} is "
                    "joint: symelbo model gives its ELBO, log evidence and KL")
        for obs in model.observed:
            if obs.columns:
                # the updates would need one statistic per column and latent: a column is
                # not one number (it was read as one, and its updates were wrong)
                column = ", ".join(sorted(str(c) for c in obs.columns))
                raise obs.dist.where.error(
                    f"symelbo cavi does not take covariates yet ({column} is a column of the "
                    f"data of {obs.name!r}); symelbo model gives its ELBO, log evidence and KL")
        model = ComponentView(model) if any(lat.shape for lat in model.latents) else model
        self.model = model
        self.joint = LogJoint(model)
        self.E = Expectations(model, self.joint)
        self.factors: list[Factor] = []
        order = self.joint.locals + self.joint.globals   # Blei's Algorithm 2: local first
        for lat in order:
            factor = Factor(lat, self.joint.generic[lat.name], lat.per is not None)
            factor.others = [o.name for o in model.latents if o is not lat]
            try:
                self._derive(factor)
            except NoClosedForm as exc:
                factor.declined = exc.reason
            self.factors.append(factor)
        self.param_factor = {p: f for f in self.factors if not f.declined for p in f.params}
        self.elbo = self._elbo()
        self.local_elbo = {f.name: self._local_elbo(f) for f in self.factors if f.local}

    # -- one factor --------------------------------------------------------
    def _derive(self, factor: Factor):
        lat, z = factor.latent, factor.symbol
        support = lat.prior.family.support
        if not fam.support_contains(support, lat.q.family.support):
            raise NoClosedForm(f"q({lat.name}) = {lat.q.call.name} lives on "
                               f"{fam.SUPPORT_TEXT[lat.q.family.support]}, outside the support "
                               f"of the prior, {fam.SUPPORT_TEXT[support]}")
        mine = [p for p in self.joint.pieces
                if (p.local.has(z) if factor.local else p.glob.has(z))]
        if factor.local:
            factor.terms = sp.Add(*[p.glob * p.local for p in mine])
        else:
            factor.terms = sp.Add(*[p.glob * p.stat for p in mine])
        values = lat.prior.family.support_values(lat.prior.args)
        if values is not None or support == fam.BINARY:
            self._finite(factor, mine, values or [0, 1])
        else:
            self._continuous(factor, mine, support)
        problem = _bare_parameters(lat)
        if problem:
            raise NoClosedForm(problem)
        self._updates(factor)

    def _local_expectation(self, factor: Factor, c: sp.Expr) -> sp.Expr:
        """E over the other per-observation latents of the same observation."""
        for other in self.joint.locals:
            w = self.joint.generic[other.name]
            if other is not factor.latent and c.has(w):
                c = _expect_part(other.q.family, c, w, other.q.args)
        return c

    def _finite(self, factor: Factor, mine: list, values: list):
        z = factor.symbol
        at = []
        for k in values:
            total = []
            for p in mine:
                if factor.local:
                    c = self._local_expectation(factor, p.local.subs(z, k))
                    total.append(self.E.of(sp.expand(p.glob)) * c)
                else:
                    total.append(self.E.of(sp.expand(p.glob.subs(z, k)), skip=None) * p.stat)
            value = sp.expand(sp.Add(*total))
            if value.has(sp.zoo, sp.oo, -sp.oo, sp.nan):
                raise NoClosedForm(f"log p(X, Z) is -infinity at {z} = {k}")
            at.append(value)
        factor.at_values = at
        factor.expected = sp.Add(*[sp.Piecewise((v, sp.Eq(z, k))) for k, v in zip(values, at)]) \
            if len(values) > 2 else sp.expand(at[0] + (at[1] - at[0]) * z)
        factor.family = "Bernoulli" if len(values) == 2 and factor.latent.q.family.name == \
            "Bernoulli" else "Categorical"
        if factor.latent.q.family.support_values(factor.latent.q.args) != values:
            raise NoClosedForm(f"the optimal q({factor.name}) is a "
                               f"{'Bernoulli' if len(values) == 2 else 'Categorical'} on "
                               f"{values}; q({factor.name}) = {factor.latent.q.call.name} "
                               "is not")

    def _continuous(self, factor: Factor, mine: list, support: str):
        z = factor.symbol
        expected = []
        for p in mine:
            if factor.local:
                c = self._local_expectation(factor, p.local)
                expected.append(self.E.of(sp.expand(p.glob)) * c)
            else:
                expected.append(self.E.of(sp.expand(p.glob), skip=z) * p.stat)
        factor.expected = sp.expand(sp.Add(*expected))
        features: dict = {}
        for term in sp.Add.make_args(factor.expected):
            zpart, rest = [], []
            for f in sp.Mul.make_args(term):
                (zpart if f.has(z) else rest).append(f)
            feature = sp.Mul(*zpart)
            if feature == 1:
                continue      # a constant in z
            features[feature] = features.get(feature, 0) + sp.Mul(*rest)
        features = {f: sp.factor_terms(c) for f, c in features.items() if sp.expand(c) != 0}
        factor.features = features
        family, stats = _KERNELS.get(support, (None, None))
        if family is None:
            raise NoClosedForm(f"{factor.name} has {fam.SUPPORT_TEXT[support]}: no family of the "
                               "table is recognised there")
        allowed = {fam.REAL: {z, z ** 2}, fam.POSITIVE: {z, sp.log(z)},
                   fam.UNIT: {sp.log(z), sp.log(1 - z)}}[support]
        extra = [f for f in features if f not in allowed]
        if extra:
            shown = ", ".join(sp.sstr(features[f] * f) for f in
                              sorted(extra, key=sp.default_sort_key))
            raise NoClosedForm(f"log q*({factor.name}) = E[log p] + const contains {shown}: "
                               f"not a {family} kernel (only {stats.replace('z', factor.name)}), "
                               "so these terms break conjugacy and no family of the table fits")
        if factor.latent.q.family.name != family:
            raise NoClosedForm(f"the optimal q({factor.name}) is a {family}; "
                               f"q({factor.name}) = {factor.latent.q.call.name} is not")
        factor.family = family

    # -- updates -----------------------------------------------------------
    def _names(self, factor: Factor, base: tuple[str, str]) -> tuple[str, str]:
        same = [lat for lat in self.model.latents if lat.q.family.name == factor.family]
        if len(same) <= 1:
            return base[0] + "_N", base[1] + "_{N}"
        sub = sp.latex(factor.symbol)
        return base[0] + f"_{factor.name}", base[1] + "_{N," + sub + "}"

    def _updates(self, factor: Factor):
        lat, z = factor.latent, factor.symbol
        F = factor.features
        params = list(lat.q.args)
        if factor.family == "Normal":
            a2 = F.get(z ** 2, sp.S.Zero)
            if a2 == 0:
                raise NoClosedForm(f"log q*({factor.name}) has no {factor.name}**2 term: the "
                                   "optimal factor is not normalisable")
            precision = sp.factor_terms(sp.expand(-2 * a2))
            mean = sp.factor_terms(sp.cancel(F.get(z, sp.S.Zero) / precision))
            mu, lam = self._names(factor, ("mu", r"\mu")), self._names(factor, ("lambda", r"\lambda"))
            factor.natural = [(mu[0], mu[1], mean), (lam[0], lam[1], precision)]
            factor.updates = {params[0]: mean, params[1]: 1 / sp.sqrt(precision)}
        elif factor.family == "Gamma":
            shape = sp.factor_terms(sp.expand(1 + F.get(sp.log(z), 0)))
            rate = sp.factor_terms(sp.expand(-F.get(z, 0)))
            a, b = self._names(factor, ("a", "a")), self._names(factor, ("b", "b"))
            factor.natural = [(a[0], a[1], shape), (b[0], b[1], rate)]
            factor.updates = {params[0]: shape, params[1]: rate}
        elif factor.family == "Beta":
            a_ = sp.factor_terms(sp.expand(1 + F.get(sp.log(z), 0)))
            b_ = sp.factor_terms(sp.expand(1 + F.get(sp.log(1 - z), 0)))
            a, b = self._names(factor, ("a", "a")), self._names(factor, ("b", "b"))
            factor.natural = [(a[0], a[1], a_), (b[0], b[1], b_)]
            factor.updates = {params[0]: a_, params[1]: b_}
        elif factor.family == "Bernoulli":
            f0, f1 = factor.at_values
            rho = 1 / (1 + sp.exp(sp.expand(f0 - f1)))
            name = self._names(factor, ("rho", r"\rho"))
            factor.natural = [(name[0], name[1], rho)]
            factor.updates = {params[0]: rho}
        else:  # Categorical
            at = factor.at_values
            for k, p in enumerate(params):
                # p_k = 1 / sum_j exp(f_j - f_k): the softmax, written without a huge exponential
                pk = 1 / sp.Add(*[sp.exp(sp.expand(fj - at[k])) for fj in at])
                name = self._names(factor, (f"rho{k}", rf"\rho_{{{k}}}"))
                factor.natural.append((name[0], name[1], pk))
                factor.updates[p] = pk
        factor.resolved = {p: e.xreplace(self.E.values) for p, e in factor.updates.items()}

    # -- the ELBO ------------------------------------------------------------
    def _elbo(self) -> sp.Expr | None:
        """The ELBO in the global parameters and the statistics (per-observation sums as symbols)."""
        try:
            terms = []
            for p in self.joint.pieces:
                expected = self.E.of(sp.expand(p.glob)).xreplace(self.E.values)
                terms.append(expected * p.stat)
            for lat in self.joint.globals:
                h = lat.q.family.entropy(lat.q.args)
                if h is None:
                    raise NoClosedForm(f"the entropy of {lat.q.call.name} is not in the table")
                terms.append(h)
            self.entropy_stats = {}
            for lat in self.joint.locals:
                h = lat.q.family.entropy(lat.q.args)
                if h is None:
                    raise NoClosedForm(f"the entropy of {lat.q.call.name} is not in the table")
                symbol = sp.Symbol(f"sum(H[q({lat.name})])", real=True)
                self.entropy_stats[symbol] = (lat, sp.expand(h))
                terms.append(symbol)
            return sp.Add(*terms)
        except NoClosedForm as exc:
            self.elbo_reason = exc.reason
            return None

    def _local_elbo(self, factor: Factor) -> sp.Expr | None:
        """One observation's ELBO terms that involve q(z_i)'s parameters (generic names)."""
        if factor.declined or self.elbo is None:
            return None
        lat = factor.latent
        terms = []
        for p in self.joint.pieces:
            stat = self.joint.statistic(p.stat) if p.obs is not None else None
            if stat is None or stat.weighted is None or stat.obs.name != lat.per:
                continue
            terms.append(self.E.of(sp.expand(p.glob)).xreplace(self.E.values) * stat.weighted)
        terms.append(lat.q.family.entropy(lat.q.args))
        return sp.Add(*terms)


# ---------------------------------------------------------------------------
# numbers: mpmath for global quantities, numpy over observations
# ---------------------------------------------------------------------------

def np_eval(expr: sp.Expr, env: dict):
    """A SymPy expression evaluated with numpy over arrays (a small tree walk, no code generation)."""
    np = numpy_module()

    def ev(e):
        if e.is_Symbol:
            return env[e]
        if e.is_number and not e.has(sp.Symbol):
            return float(e)
        if e.is_Add:
            out = 0.0
            for a in e.args:
                out = out + ev(a)
            return out
        if e.is_Mul:
            out = 1.0
            for a in e.args:
                out = out * ev(a)
            return out
        if e.is_Pow:
            base, exp = e.args
            return np.power(ev(base), float(exp) if exp.is_number else ev(exp))
        if isinstance(e, sp.log):
            return np.log(ev(e.args[0]))
        if isinstance(e, sp.exp):
            return np.exp(ev(e.args[0]))
        if isinstance(e, sp.Abs):
            return np.abs(ev(e.args[0]))
        raise ValueError(f"cannot evaluate {e.func.__name__} over the observations")

    with np.errstate(all="ignore"):
        return ev(expr)


def _scalars(expr: sp.Expr, env: dict) -> sp.Expr:
    """``expr`` with the global numbers put in as 30-digit floats (digamma and kin evaluated)."""
    sub = {s: sp.Float(mpmath.nstr(v, 30), 30) for s, v in env.items()
           if s in expr.free_symbols}
    out = expr.xreplace(sub)
    return out.evalf(30) if out.has(sp.polygamma, sp.loggamma, sp.gamma) else out


#: Probabilities of a per-observation factor kept inside [tiny, 1 - eps]: a responsibility of
#: exactly 0 or 1 would make r log r a nan in double precision.
_CLIP = (1e-300, 1 - 2 ** -53)


class State:
    """The current variational parameters and the statistics that depend on them."""

    def __init__(self, derivation: Derivation):
        self.d = derivation
        self.model = derivation.model
        self.glob: dict[sp.Symbol, mpmath.mpf] = {}
        self.local: dict[sp.Symbol, object] = {}    # generic param -> numpy array
        self.env: dict[sp.Symbol, mpmath.mpf] = {}

    def base_env(self) -> dict:
        env = {}
        for s, v in self.model.values.items():
            env[s] = mp_value(v, {})
        for stat in self.d.joint.stats.values():
            if stat.weighted is None:
                env[stat.symbol] = mp_value(stat.value, {})
        return env

    def data(self, obs):
        """The observations of ``obs`` as a float array (built once)."""
        cache = self.__dict__.setdefault("_arrays", {})
        if obs.name not in cache:
            np = numpy_module()
            cache[obs.name] = np.asarray(obs.array if obs.array is not None else obs.data,
                                         dtype=float)
        return cache[obs.name]

    def refresh(self):
        """The environment: constants, data statistics, global parameters, weighted sums."""
        env = self.base_env()
        env.update(self.glob)
        np = numpy_module()
        for stat in self.d.joint.stats.values():
            if stat.weighted is not None:
                arrays = {stat.obs.symbol: self.data(stat.obs), **self.local}
                values = np.broadcast_to(np_eval(_scalars(stat.weighted, env), arrays),
                                         (len(stat.obs.data),))
                env[stat.symbol] = _total(values)
        for symbol, (lat, h) in self.d.entropy_stats.items():
            n = len(next(o for o in self.model.observed if o.name == lat.per).data)
            values = np.broadcast_to(np_eval(_scalars(h, env), self.local), (n,))
            env[symbol] = _total(values)
        self.env = env

    def elbo(self):
        return mp_value(self.d.elbo, self.env) if self.d.elbo is not None else None

    def update(self, factor: Factor) -> dict:
        """Apply one factor's update; the new values (numbers, or arrays for a local factor)."""
        if not factor.local:
            new = {p: mp_value(e, self.env) for p, e in factor.resolved.items()}
            self.glob.update(new)
            return new
        np = numpy_module()
        obs = next(o for o in self.model.observed if o.name == factor.latent.per)
        x = self.data(obs)
        new = {}
        lat = factor.latent
        for i, (p, e) in enumerate(factor.resolved.items()):
            arr = np.broadcast_to(np_eval(_scalars(e, self.env), {obs.symbol: x}), x.shape)
            new[p] = np.clip(arr, *_CLIP) if lat.q.family.domain_of(i) == fam.D_PROB \
                else np.array(arr, dtype=float)
        self.local.update(new)
        return new


def _total(values) -> mpmath.mpf:
    """The sum over the observations (numpy's pairwise sum: error about log2(n) roundings)."""
    return mpmath.mpf(float(numpy_module().sum(values)))


def _domain_problem(factor: Factor, new: dict) -> str | None:
    """Why updated parameters leave q's family (a precision or rate that is not positive)."""
    lat = factor.latent
    np = numpy_module()
    for i, p in enumerate(lat.q.args):
        v = new[p]
        dom = lat.q.family.domain_of(i)
        if factor.local:
            bad = ~np.isfinite(v) | ((v <= 0) if dom == fam.D_POSITIVE else False)
            if not bad.any():
                continue
            values = [float(v[int(np.flatnonzero(bad)[0])])]
        else:
            values = [v]
        for item in values:
            finite = mpmath.isfinite(item) if not factor.local else math.isfinite(item)
            if not finite or (dom == fam.D_POSITIVE and not item > 0):
                return (f"the update gives {p} = {mpmath.nstr(item, 8) if not factor.local else item}"
                        f", not {fam.DOMAIN_TEXT[dom]}: the optimal factor is improper here")
    return None


# ---------------------------------------------------------------------------
# default start
# ---------------------------------------------------------------------------

def _default_start(derivation: Derivation, state: State) -> list[str]:
    """Start values for parameters without [values]; returns which were defaulted."""
    model = derivation.model
    np = numpy_module()
    defaulted = []
    for factor in derivation.factors:
        lat = factor.latent
        if factor.local:
            obs = next(o for o in model.observed if o.name == lat.per)
            n = len(obs.data)
            indexed = {r for ren in lat.renames for r in ren.values()}
            given = {s.name.rsplit("_", 1)[0] for s in model.values if s in indexed}
            x = state.data(obs)
            # the data's ranks spread the start, so that a symmetric mixture is not stuck at
            # its saddle point r = 1/2
            rank = np.argsort(np.argsort(x, kind="stable"), kind="stable") / max(1, n - 1)
            K = len(lat.q.args)
            for k, p in enumerate(lat.q.args):
                if p.name in given:
                    arr = np.array([float(model.values[ren[p]]) for ren in lat.renames])
                else:
                    defaulted.append(p.name)
                    if lat.q.family.name == "Bernoulli":
                        arr = 0.25 + 0.5 * rank
                    else:
                        arr = (1 + (np.floor(rank * K * 0.999999) == k)) / (K + 1)
                state.local[p] = arr
            continue
        for i, p in enumerate(lat.q.args):
            if not isinstance(p, sp.Symbol):
                continue
            if p in model.values:
                state.glob[p] = mp_value(model.values[p], {})
                continue
            defaulted.append(str(p))
            prior = lat.prior.args[i] if lat.prior.family is lat.q.family else None
            value = None
            if prior is not None:
                try:
                    value = mp_value(prior, {s: mp_value(v, {}) for s, v in model.values.items()})
                except ValueError:
                    value = None
            if value is None:
                dom = lat.q.family.domain_of(i)
                value = {fam.D_REAL: mpmath.mpf(0), fam.D_POSITIVE: mpmath.mpf(1),
                         fam.D_PROB: mpmath.mpf(1) / 2}[dom]
            state.glob[p] = value
    return defaulted


# ---------------------------------------------------------------------------
# the iteration
# ---------------------------------------------------------------------------

@dataclass
class Run:
    """What running the updates gave."""

    trace: list = field(default_factory=list)          # (factor name, ELBO)
    start_elbo: object = None
    converged: bool = False
    sweeps: int = 0
    decreases: list = field(default_factory=list)      # (update index, factor, before, after)
    problem: str | None = None
    final: dict = field(default_factory=dict)
    defaulted: list = field(default_factory=list)
    state: State | None = None


def _missing_values(derivation: Derivation) -> list[str]:
    model = derivation.model
    known = set(model.values) | {s.symbol for s in derivation.joint.stats.values()} \
        | set(derivation.entropy_stats if derivation.elbo is not None else {})
    known |= {p for f in derivation.factors for p in f.latent.q.args}
    need = set()
    if derivation.elbo is not None:
        need |= derivation.elbo.free_symbols
    for f in derivation.factors:
        for e in f.resolved.values():
            need |= e.free_symbols
    need -= {obs.symbol for obs in model.observed}
    for f in derivation.factors:
        if f.local:
            need -= set(f.latent.q.args)
    return sorted(str(s) for s in need - known)


def run(derivation: Derivation, iterations: int = ITERATIONS, tol: float = TOL) -> Run:
    """Coordinate ascent: each active factor in turn, ``iterations`` sweeps at most."""
    out = Run()
    active = [f for f in derivation.factors if not f.declined]
    if derivation.elbo is None:
        out.problem = f"the ELBO has no closed form ({derivation.elbo_reason})"
        return out
    if not active:
        out.problem = "no factor has an update"
        return out
    missing = _missing_values(derivation)
    if missing:
        out.problem = "give [values] for " + ", ".join(missing) + " to run the updates"
        return out
    state = State(derivation)
    out.state = state
    out.defaulted = _default_start(derivation, state)
    slack = FLOAT_SLACK if derivation.joint.locals else EXACT_SLACK
    with mpmath.workdps(DIGITS):
        state.refresh()
        previous = state.elbo()
        out.start_elbo = previous
        for sweep in range(iterations):
            change = 0.0
            for factor in active:
                before = {p: (state.local[p].copy() if factor.local else state.glob[p])
                          for p in factor.resolved}
                new = state.update(factor)
                problem = _domain_problem(factor, new)
                if problem:
                    out.problem = f"q({factor.name}): {problem}"
                    out.sweeps = sweep + 1
                    return out
                state.refresh()
                value = state.elbo()
                if not mpmath.isfinite(value):
                    out.problem = f"the ELBO is {value} after updating q({factor.name})"
                    return out
                out.trace.append((factor.name, value))
                if value < previous - slack * (1 + abs(previous)):
                    out.decreases.append((len(out.trace), factor.name, previous, value))
                _record_gradient(derivation, factor, state)
                previous = value
                for p, old in before.items():
                    change = max(change, _relative_change(old, new[p]))
            out.sweeps = sweep + 1
            if change <= tol:
                out.converged = True
                break
        out.final = {str(p): v for p, v in state.glob.items()}
        if _observations(derivation.model) <= LOCAL_VALUES_LIMIT:
            out.final.update({str(p): v for p, v in _indexed_values(derivation, state).items()})
    return out


def _relative_change(old, new) -> float:
    np = numpy_module()
    if isinstance(old, mpmath.mpf):
        return float(abs(new - old) / (1 + abs(old)))
    return float(np.max(np.abs(np.asarray(new) - old) / (1 + np.abs(old)))) if len(old) else 0.0


def _record_gradient(derivation: Derivation, factor: Factor, state: State):
    """The ELBO's gradient in the factor's parameters just after its update (for 'tested')."""
    if all(proved for _, _, proved in factor.stationarity):
        return
    worst = factor.worst_gradient or 0.0
    for p, g, proved in factor.stationarity:
        if proved:
            continue
        if factor.local:
            lat = factor.latent
            obs = next(o for o in derivation.model.observed if o.name == lat.per)
            env = {obs.symbol: state.data(obs), **state.local}
            value = np_eval(_scalars(g, state.env), env)
            scale = 1.0
            np = numpy_module()
            size = float(np.max(np.abs(value))) if np.ndim(value) else abs(float(value))
        else:
            value = mp_value(g, state.env)
            scale = 1.0 + max(abs(v) for v in state.env.values())
            size = float(abs(value))
            scale = float(min(scale, mpmath.mpf(10) ** 12))
        worst = max(worst, size / scale)
    factor.worst_gradient = worst


# ---------------------------------------------------------------------------
# checks
# ---------------------------------------------------------------------------

def _log_density(factor: Factor) -> sp.Expr:
    """log of the recognised family's density at the update (placeholders in)."""
    z = factor.symbol
    family = fam.FAMILIES[factor.family]
    args = tuple(factor.updates[p] for p in factor.latent.q.args)
    return family.logpdf(z, args)


def prepare_checks(derivation: Derivation):
    """Symbolic checks before the iteration: what the kernel proves, what is left to test."""
    for factor in derivation.factors:
        if factor.declined:
            continue
        z = factor.symbol
        # the family: log q*(z) - log family(z | update) does not depend on z
        if factor.family in ("Bernoulli", "Categorical"):
            # q*(z = k) is proportional to exp(f_k): exp(f_k) / p_k is the same for every k
            masses = _masses(factor)
            ratios = [sp.exp(f) / p for f, p in zip(factor.at_values, masses)]
            factor.family_identity = all(prove_identity(r, ratios[0]) is not None
                                         for r in ratios[1:])
        else:
            d = sp.diff(factor.expected - _log_density(factor), z)
            factor.family_identity = prove_identity(d, sp.S.Zero) is not None
        # stationarity: d ELBO / d phi = 0 at the factor's update
        if factor.local:
            elbo = derivation.local_elbo.get(factor.name)
        else:
            elbo = derivation.elbo
        factor.stationarity = []
        if elbo is None:
            continue
        params = list(factor.resolved)
        grads = {p: sp.diff(elbo, p).xreplace(factor.resolved) for p in params}
        if factor.family == "Categorical":
            # the masses live on the simplex: the gradient along it, d/dp_k - d/dp_1, vanishes
            # (the unconstrained gradient is a multiple of (1, ..., 1), the Lagrange condition)
            grads = {p: grads[p] - grads[params[0]] for p in params[1:]}
        for p, g in grads.items():
            factor.stationarity.append((p, g, prove_identity(g, sp.S.Zero) is not None))


def checks_of(factor: Factor, result: Run) -> list[dict]:
    """The checks of one factor: family recognised, gradient zero at the update, ELBO monotone."""
    if factor.declined:
        return []
    out = []
    if factor.family_identity:
        out.append({"name": f"q*({factor.name}) is {factor.family}", "verdict": PROVED,
                    "message": _family_message(factor, proved=True)})
    else:
        out.append(_family_tested(factor))
    names = ", ".join(str(p) for p, _, _ in factor.stationarity)
    if not factor.stationarity:
        out.append({"name": f"grad ELBO = 0 at the update ({', '.join(map(str, factor.resolved))})",
                    "verdict": UNKNOWN, "message": "the ELBO has no closed form"})
    elif all(proved for _, _, proved in factor.stationarity):
        out.append({"name": f"grad ELBO = 0 at the update ({names})", "verdict": PROVED,
                    "message": f"d ELBO/d {names} with the update put in expands to 0 for all "
                               "values of the other factors' parameters and the data"
                               + (" statistics" if not factor.local else "")})
    else:
        worst = factor.worst_gradient
        if worst is None or not result.trace:
            out.append({"name": f"grad ELBO = 0 at the update ({names})", "verdict": UNKNOWN,
                        "message": "no symbolic proof, and no iterate to test it at"})
        elif worst <= GRADIENT_SLACK:
            out.append({"name": f"grad ELBO = 0 at the update ({names})", "verdict": TESTED,
                        "message": "no symbolic proof; the gradient is zero after every update of "
                                   f"the run (largest relative size {worst:.2g})"})
        else:
            out.append({"name": f"grad ELBO = 0 at the update ({names})", "verdict": REFUTED,
                        "message": f"after an update the gradient's relative size is {worst:.3g}"})
    mine = [d for d in result.decreases if d[1] == factor.name]
    count = sum(1 for name, _ in result.trace if name == factor.name)
    if mine:
        i, _, before, after = mine[0]
        out.append({"name": f"ELBO never decreases under the update of q({factor.name})",
                    "verdict": REFUTED,
                    "message": f"BUG: update {i} lowered the ELBO from {mpmath.nstr(before, 15)} "
                               f"to {mpmath.nstr(after, 15)}"})
    elif count:
        out.append({"name": f"ELBO never decreases under the update of q({factor.name})",
                    "verdict": TESTED,
                    "message": f"{count} updates of q({factor.name}), none lowered the ELBO"})
    else:
        out.append({"name": f"ELBO never decreases under the update of q({factor.name})",
                    "verdict": UNKNOWN, "message": result.problem or "the updates were not run"})
    return out


def _masses(factor: Factor) -> list:
    """The masses of a finite factor's values at the update (placeholders in)."""
    if factor.family == "Bernoulli":
        r = factor.updates[factor.latent.q.args[0]]
        return [1 - r, r]
    return list(factor.updates.values())


def _family_message(factor: Factor, proved: bool) -> str:
    if factor.family in ("Bernoulli", "Categorical"):
        return (f"exp(E[log p] at {factor.name} = k) / q*({factor.name} = k) is the same for "
                "every value k" + (" (the differences cancel to 0)" if proved else ""))
    return (f"d/d{factor.name} [E[log p] - log {factor.family}({factor.name} | update)] "
            "expands to 0: they differ by a constant, and the sufficient statistics are "
            + _KERNELS[factor.latent.prior.family.support][1].replace("z", factor.name))


def _family_tested(factor: Factor) -> dict:
    """The family check when the kernel found no proof: not claimed."""
    return {"name": f"q*({factor.name}) is {factor.family}", "verdict": UNKNOWN,
            "message": "the kernel found no proof that E[log p] and the log density of the "
                       f"{factor.family} at the update differ by a constant"}


# ---------------------------------------------------------------------------
# log evidence and KL at the fixed point
# ---------------------------------------------------------------------------

#: Up to this many observations the model's own exact log evidence and KL are used for a
#: model with per-observation latents (one SymPy term per observation); beyond, only a model
#: whose latents are all per-observation and discrete has them (summed with numpy).
MODEL_EVIDENCE_LIMIT = 2000
#: Up to this many observations the final per-observation parameters are reported
#: (``r_1``, ..., ``r_n``, the model's own names).
LOCAL_VALUES_LIMIT = 1000


def _observations(model) -> int:
    return max(len(o.data) for o in model.observed)


def _indexed_values(derivation: Derivation, state: State) -> dict:
    """Each per-observation parameter's final value under its indexed name (r_1, r_2, ...)."""
    out = {}
    for lat in derivation.joint.locals:
        for p in lat.q.args:
            values = state.local.get(p)
            if values is None:
                continue
            for i, ren in enumerate(lat.renames):
                out[ren[p]] = mpmath.mpf(float(values[i]))
    return out


def _evidence(derivation: Derivation, result: Run):
    """(log p(X), KL(q || posterior)) at the final q, or (None, None) with a reason."""
    model = derivation.model
    state = result.state
    if state is None or not result.trace:
        return None, None, result.problem
    final_elbo = result.trace[-1][1]
    with mpmath.workdps(DIGITS):
        if not derivation.joint.locals:
            try:
                le = model.log_evidence()
                kl = model.kl_to_posterior()
            except NoClosedForm as exc:
                return None, None, exc.reason
            env = {s: mp_value(v, {}) for s, v in model.values.items()}
            env.update(state.glob)
            try:
                return mp_value(le, env), mp_value(kl, env), None
            except ValueError as exc:
                return None, None, str(exc)
        if len(derivation.joint.stats) and _observations(model) <= MODEL_EVIDENCE_LIMIT:
            # the model integrates per-observation latents out one by one (linear in n)
            try:
                le = model.log_evidence()
                kl = model.kl_to_posterior()
                env = {s: mp_value(v, {}) for s, v in model.values.items()}
                env.update(state.glob)
                env.update(_indexed_values(derivation, state))
                return mp_value(le, env), mp_value(kl, env), None
            except NoClosedForm as exc:
                reason = exc.reason
        else:
            reason = (f"more than {MODEL_EVIDENCE_LIMIT} observations with per-observation "
                      "latents and global ones")
        if derivation.joint.globals:
            return None, None, reason
        # only per-observation latents: log p(X) = sum_i log sum_k p(x_i, z_i = k), summed exactly
        np = numpy_module()
        total = mpmath.mpf(0)
        for obs in model.observed:
            mine = [lat for lat in derivation.joint.locals if lat.per == obs.name]
            template = sp.Add(*[p.glob * p.local for p in derivation.joint.pieces
                                if p.obs is obs])
            x = state.data(obs)
            if not mine:
                total += mp_value(sp.Add(*[p.glob * p.stat for p in derivation.joint.pieces
                                           if p.obs is obs]), state.env)
                continue
            if len(mine) > 1:
                return None, None, "more than one per-observation latent per observation"
            lat = mine[0]
            z = derivation.joint.generic[lat.name]
            values = lat.prior.family.support_values(lat.prior.args)
            rows = [np.broadcast_to(np_eval(_scalars(template.subs(z, k), state.env),
                                            {obs.symbol: x}), x.shape) for k in values]
            stack = np.vstack(rows)
            top = stack.max(axis=0)
            logsum = top + np.log(np.exp(stack - top).sum(axis=0))
            total += mpmath.mpf(math.fsum(logsum.tolist()))
        return total, total - final_elbo, None


# ---------------------------------------------------------------------------
# the report
# ---------------------------------------------------------------------------

def _printed(expr: sp.Expr, stats: dict) -> sp.Expr:
    """An update as reported: data statistics as numbers (floats unless exact integers)."""
    sub = {}
    for stat in stats.values():
        if stat.weighted is None:
            sub[stat.symbol] = stat.value if stat.value.is_Integer else sp.Float(stat.value, 15)
    return expr.xreplace(sub)


def latex_names(derivation: Derivation) -> dict:
    """symbol -> LaTeX for the statistics and the E[...] placeholders."""
    names = {s.symbol: s.latex for s in derivation.joint.stats.values()}
    names.update(derivation.E.latex)
    for symbol, (lat, _) in derivation.entropy_stats.items() if derivation.elbo is not None else ():
        names[symbol] = r"\sum_{i} \mathrm{H}[q(" + sp.latex(derivation.joint.generic[lat.name]) \
            + "_{i})]"
    return names


def _number(v):
    if v is None:
        return None
    f = float(v)
    return f if math.isfinite(f) else None


class CaviReport:
    """Derivation, checks and run of one model, computed once."""

    def __init__(self, model: Model, iterations: int = ITERATIONS, tol: float = TOL):
        self.model = model
        with mpmath.workdps(DIGITS):
            self.derivation = Derivation(model)
            prepare_checks(self.derivation)
            self.result = run(self.derivation, iterations, tol)
            self.log_evidence, self.kl, self.evidence_reason = _evidence(self.derivation,
                                                                           self.result)
        self.names = latex_names(self.derivation)

    def as_dict(self) -> dict:
        d = self.derivation
        factors, declined = [], []
        for f in d.factors:
            if f.declined:
                declined.append({"latent": f.name, "reason": f.declined})
                continue
            updates = {}
            for p, e in f.resolved.items():
                shown = _printed(e, d.joint.stats)
                updates[str(p)] = {"expr": sp.sstr(shown, order="lex"),
                                   "latex": sp.latex(shown, order="lex",
                                                     symbol_names=self.names)}
            factors.append({"latent": f.name, "family": f.family, "updates": updates,
                            "checks": checks_of(f, self.result)})
        r = self.result
        final_elbo = r.trace[-1][1] if r.trace else None
        return {"model": self.model.name, "factors": factors,
                "trace": [_number(v) for _, v in r.trace],
                "final": {"values": {k: _number(v) for k, v in sorted(r.final.items())},
                          "elbo": _number(final_elbo),
                          "log_evidence": _number(self.log_evidence),
                          "kl": _number(self.kl)},
                "converged": r.converged, "declined": declined}


def report(model: Model, iterations: int = ITERATIONS, tol: float = TOL) -> dict:
    """The JSON-shaped report of ``symelbo cavi``."""
    return CaviReport(model, iterations, tol).as_dict()


def exit_status(rep: dict) -> int:
    """0 when every factor has an update, every check is proved or tested and the run converged."""
    ok = rep["converged"] and not rep["declined"] and all(
        c["verdict"] in (PROVED, TESTED) for f in rep["factors"] for c in f["checks"])
    return 0 if ok else 1


def format_text(cr: CaviReport, rep: dict, path: str | None = None) -> str:
    """The plain-text report: each factor's derivation and updates, its checks, the run."""
    d, r = cr.derivation, cr.result
    lines = [f"model: {rep['model']}" + (f"  ({path})" if path else ""),
             "mean field: q(" + ", ".join(f.name for f in d.factors) + ") = "
             + " ".join(f"q({f.name})" for f in d.factors), ""]
    for f in d.factors:
        others = ", ".join(f.others)
        lines.append(f"q*({f.name}):  log q*({f.name}) = E_{{{others}}}[log p(X, Z)] + const"
                     if others else f"q*({f.name}):  log q*({f.name}) = log p(X, Z) + const")
        if f.declined:
            lines.append(f"  DECLINED: {f.declined}")
            lines.append("")
            continue
        shown = f.expected if f.family not in ("Bernoulli", "Categorical") else None
        if shown is not None:
            lines.append(f"    = {sp.sstr(_collect(shown, f.symbol), order='lex')} + const")
        else:
            for k, v in enumerate(f.at_values):
                lines.append(f"    at {f.name} = {k}: {sp.sstr(v, order='lex')} + const")
        lines.append(f"  so q*({f.name}) = {f.family}: "
                     + ", ".join(f"{n} = {sp.sstr(e, order='lex')}" for n, _, e in f.natural))
        for p, e in f.resolved.items():
            lines.append(f"  update {p} = {rep_update(rep, f.name, str(p))}")
        for c in next(x["checks"] for x in rep["factors"] if x["latent"] == f.name):
            lines.append(f"  {c['verdict']:<8}  {c['name']}: {c['message']}")
        lines.append("")
    if r.problem and not r.trace:
        lines.append(f"not run: {r.problem}")
    else:
        if r.defaulted:
            lines.append("default start for " + ", ".join(r.defaulted))
        lines.append(f"ELBO at the start: {mpmath.nstr(r.start_elbo, 15)}")
        for i, (name, v) in enumerate(r.trace, start=1):
            flag = "   <-- DECREASE (a bug)" if any(x[0] == i for x in r.decreases) else ""
            lines.append(f"  {i:>4}  q({name}): ELBO = {mpmath.nstr(v, 15)}{flag}")
        lines.append(("converged" if r.converged else "NOT converged")
                     + f" after {r.sweeps} sweep{'s' if r.sweeps != 1 else ''}"
                     + (f" ({r.problem})" if r.problem else ""))
        for k, v in sorted(r.final.items()):
            lines.append(f"  {k} = {mpmath.nstr(v, 15)}")
        final = rep["final"]
        lines.append(f"final ELBO = {_show(final['elbo'])}")
        lines.append(f"log p(X) = {_show(final['log_evidence'])}"
                     + (f"  ({cr.evidence_reason})" if final["log_evidence"] is None
                        and cr.evidence_reason else ""))
        lines.append(f"KL(q || posterior) = {_show(final['kl'])}")
    if r.decreases:
        lines.append("")
        lines.append(f"BUG: the ELBO decreased {len(r.decreases)} time(s); CAVI never lowers it")
    return "\n".join(lines) + "\n"


def rep_update(rep: dict, latent: str, param: str) -> str:
    f = next(x for x in rep["factors"] if x["latent"] == latent)
    return f["updates"][param]["expr"]


def _show(v) -> str:
    return "null" if v is None else f"{v:.12g}"


def _collect(expr: sp.Expr, z: sp.Symbol) -> sp.Expr:
    """``expr`` gathered by powers and logs of z (how the textbook writes log q*)."""
    atoms = [z ** 2, z, sp.log(z), sp.log(1 - z)]
    try:
        return sp.collect(expr, [a for a in atoms if expr.has(a)], evaluate=True)
    except Exception:  # collect gives up on some nested forms: shown as it is
        return expr


def check_options(iterations: int, tol: float, where: str = "<command line>"):
    """Refuse a number of sweeps or a tolerance that cannot be run."""
    if iterations < 1:
        raise InputError(f"--iterations must be at least 1, got {iterations}", where)
    if not (tol > 0 and math.isfinite(tol)):
        raise InputError(f"--tol must be a positive number, got {tol}", where)
