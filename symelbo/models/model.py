"""Models p(X, Z) with a mean-field q(Z): ELBO, exact log evidence and KL(q || posterior) in closed form.

A model is read from a TOML file (:func:`load_model`) or built in Python
(:func:`model_from_dict`). Everything is computed from tables, never by
symbolic integration:

* the ELBO is E_q[log p(X, Z)] + H[q]: the log joint is expanded into terms
  ``coefficient * f_1(z_1) * f_2(z_2) ...`` and each ``E_q[f_j(z_j)]`` is read
  from the family table (mean-field: factors are independent). Data enter only
  through sufficient statistics (n, sum x, sum x**2, counts...), so a million
  observations cost what ten do;
* the log evidence log p(X) integrates the latents out one at a time by
  matching the log joint to a kernel (Gaussian in z and z**2, Gamma in z and
  log z, Beta in log z and log(1-z), a finite sum for discrete latents);
  the matched kernel also names the exact posterior;
* KL(q || posterior) is then computed from the KL table (or from the entropy
  and the expectation table), independently of log p(X) - ELBO.

Symbols carry the assumptions that make ``expand`` split logarithms soundly:
a latent is real, positive, ... as its prior's support says, and an identifier
used as a factor of a parameter that must be positive (a std, a rate, a shape)
is positive. Numbers in ``[values]`` are checked against these assumptions.
"""

from __future__ import annotations

import contextvars
import itertools
import math
import os
import re
import sys
import tomllib
from contextlib import contextmanager
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import mpmath
import sympy as sp

from symelbo.models import families as fam
from symelbo.models import evidence as multi
from symelbo.models import tables
from symelbo.models import vectors
from symelbo.core.deadline import BudgetExceeded, check_deadline, time_budget
from symelbo.core.errors import InputError
from symelbo.models.model_expr import DistCall, Where, decimal_problem, factor_names, \
    CONSTANTS, reduce_indicators, \
    magnitude_problem, names, parse_distribution, to_sympy
from symelbo.io.userfiles import MAX_DATA_BYTES, MAX_SOURCE_BYTES, decode_user_text, excerpt, \
    read_user_bytes, read_user_text, source_lines

#: Decimal digits used to evaluate values and numeric checks.
DIGITS = 50
#: Up to this many observations, polynomial statistics of decimal data are exact
#: sums of the decimals as written; beyond, correctly rounded float sums.
EXACT_SUM_LIMIT = 20000
#: Seconds the quadrature fallback may take before the report says it has no value.
QUADRATURE_BUDGET = 12.0
#: Seconds of processor time each closed form (ELBO, log evidence, KL) may take.
SYMBOLIC_BUDGET = 6.0
#: The most values a finite latent may have to be summed out in closed form: the sum's
#: K terms meet in every posterior mass, so the closed forms grow as K^2.
MAX_SUMMED_VALUES = 32
#: A quadrature whose integral of q is further than this from 1 did not find q's mass:
#: its values are not reported and it refutes nothing.
QUADRATURE_MASS_TOLERANCE = mpmath.mpf(10) ** -10
#: A quadrature whose error estimate is above this (relative to its values' size) gives no values.
QUADRATURE_ERROR_TOLERANCE = mpmath.mpf(10) ** -9
#: The header of a .npy data file may be at most this long (one limit, in the table reader).
NPY_HEADER_LIMIT = tables.NPY_HEADER_LIMIT


@dataclass(frozen=True)
class DataAccess:
    """Which data files a model may name, and how large they may be.

    A model's ``data_file`` must resolve, after symbolic links, inside ``root``
    (None: the model file's own folder), so that a model cannot read files it
    was not given (``../../etc/passwd``, an absolute path, a link leading out).
    """

    root: Path | None = None
    max_bytes: int = MAX_DATA_BYTES


# The data access of load_model when none is passed (set by the command line's
# --data-root and --max-data-mb for every model it loads).
_DATA_ACCESS = contextvars.ContextVar("data_access", default=DataAccess())


@contextmanager
def data_access(access: DataAccess):
    """Load every model inside the ``with`` block with ``access`` (unless one is passed)."""
    token = _DATA_ACCESS.set(access)
    try:
        yield access
    finally:
        _DATA_ACCESS.reset(token)


class NoClosedForm(Exception):
    """A quantity has no closed form in the tables; ``reason`` says which term is missing."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class QuadratureFailed(NoClosedForm):
    """The quadrature fallback ran and failed (no value, not a refutation); ``reason`` says how."""


@dataclass
class Dist:
    """A distribution written in a model file: family, SymPy arguments, and where it was written."""

    family: fam.Family
    call: DistCall
    where: Where
    args: tuple[sp.Expr, ...] = ()

    def text(self) -> str:
        """The distribution as the file wrote it."""
        return f"{self.call.name}(" + ", ".join(a.text for a in self.call.args) + ")"


@dataclass
class Latent:
    """A latent variable: its prior, its variational factor, and its symbols (one, or one per observation)."""

    name: str
    prior: Dist
    q: Dist | None = None
    per: str | None = None
    #: The number of components of a vector latent (``shape = K`` or a joint family), else None.
    shape: int | None = None
    symbols: list[sp.Symbol] = field(default_factory=list)
    # For each symbol, the prior's and q's arguments with local names indexed.
    prior_args: list[tuple[sp.Expr, ...]] = field(default_factory=list)
    q_args: list[tuple[sp.Expr, ...]] = field(default_factory=list)
    #: For a per-observation latent, symbol i's renaming of the generic symbols
    #: (the latent's own name and its indexed variational parameters).
    renames: list[dict] = field(default_factory=list)


@dataclass
class Observed:
    """An observed variable: its likelihood and its data (a list of numbers)."""

    name: str
    dist: Dist
    data: list
    symbol: sp.Symbol | None = None
    #: The data as a numpy array when they were given as one (statistics are then computed in bulk).
    array: object = None
    #: Covariates: {symbol: numpy array} of the columns of its data table its likelihood uses.
    columns: dict = field(default_factory=dict)


@dataclass
class Posterior:
    """One factor of the exact posterior: p(z | later latents, X) = family(params)."""

    symbol: sp.Symbol
    family: fam.Family
    params: tuple[sp.Expr, ...]
    #: For a finite latent, log p(z = k | X) for each value k, written as f_k - log sum_j exp(f_j).
    log_masses: tuple[sp.Expr, ...] | None = None
    #: For a joint family (a Dirichlet posterior), all the components; ``symbol`` is the first.
    symbols: tuple[sp.Symbol, ...] = ()

    def parameter_symbols(self) -> set:
        """The free symbols of the parameters (a joint family's are nested tuples)."""
        flat = []
        for p in self.params:
            flat.extend(sp.Tuple(*p).free_symbols if isinstance(p, tuple) else p.free_symbols)
        return set(flat)

    def logpdf(self) -> sp.Expr:
        """log p(z | ...) at the symbol (or at all the components of a joint family)."""
        if self.symbols:
            return self.family.logpdf(self.symbols, self.params)
        return self.family.logpdf(self.symbol, self.params)


@dataclass
class Evidence:
    """The exact log evidence, the posterior it came with, and side conditions checked at the values."""

    log_evidence: sp.Expr
    posterior: list[Posterior]
    conditions: list[tuple[sp.Expr, str]]


@dataclass(frozen=True)
class Divergence:
    """A term of a closed form whose expectation is +infinity unless its conditions hold.

    The term is ``factor * E_q[part]`` with E_q[part] > 0: where a condition's
    expression is not positive the quantity is (the sign of ``factor``) infinity.
    """

    what: str                               # "E_q[sigma**(-2)] under q(sigma) = Gamma(a, b)"
    conditions: tuple[tuple[sp.Expr, str], ...]
    factor: sp.Expr


# --- reading TOML ----------------------------------------------------------

_HEADER = re.compile(r"^\s*\[\s*([A-Za-z0-9_\-\"' .]+?)\s*\]\s*(#.*)?$")
_KEY = re.compile(r"^\s*([A-Za-z0-9_\-]+|\"[^\"]*\"|'[^']*')\s*=")


def _locate(text: str, table: str | None, key: str, sub: str | None = None):
    """(line, column) of the string value of ``[table] key`` (or of its ``sub`` field); best effort."""
    current = None
    for number, line in enumerate(source_lines(text), start=1):
        header = _HEADER.match(line)
        if header:
            current = header.group(1).strip().strip("\"'")
            continue
        m = _KEY.match(line)
        if not m or current != table or m.group(1).strip("\"'") != key:
            continue
        start = m.end()
        if sub is not None:
            s = re.search(r"\b" + re.escape(sub) + r"\s*=", line[start:])
            if not s:
                return number, None
            start += s.end()
        q = re.search(r"\S", line[start:])  # the value's first character (nan and inf too)
        if not q:
            return number, None
        col = start + q.start() + 1
        if line[col - 1] in "\"'":
            col += 1
        return number, col
    return None, None


def _where(path, text, table, key, sub=None) -> Where:
    line, column = _locate(text, table, key, sub) if text is not None else (None, None)
    label = f"[{table}] {key}" if table else key
    return Where(path, label, line, column)


def _toml_error(exc: tomllib.TOMLDecodeError, path: str) -> InputError:
    line = getattr(exc, "lineno", None)
    col = getattr(exc, "colno", None)
    msg = getattr(exc, "msg", None) or str(exc)
    m = re.search(r"\(at line (\d+), column (\d+)\)", str(exc))
    if m:
        line, col = int(m.group(1)), int(m.group(2))
        msg = str(exc)[:m.start()].strip()
    elif "end of document" in str(exc):
        msg = str(exc).replace("(at end of document)", "").strip()
    return InputError(f"malformed TOML: {msg}", path, line, col)


#: loggamma/gamma/factorial of an integer above this stay unevaluated when numbers are put
#: in: SymPy would compute (n - 1)! exactly, a number with millions of digits (or forever).
EXACT_GAMMA_LIMIT = 20
_GAMMAS = (sp.loggamma, sp.gamma, sp.factorial)


def with_numbers(expr: sp.Expr, mapping: dict) -> sp.Expr:
    """``expr.xreplace(mapping)``, with loggamma(n) and its kin of a large integer n held."""
    held: dict = {}

    def large(node) -> bool:
        if not isinstance(node, _GAMMAS):
            return False
        arg = node.args[0].xreplace(mapping)
        return bool(arg.is_Integer and arg > EXACT_GAMMA_LIMIT)

    def hold(node):
        return held.setdefault(node.func(node.args[0].xreplace(mapping), evaluate=False),
                               sp.Dummy())

    protected = expr.replace(large, hold) if expr.has(*_GAMMAS) else expr
    out = protected.xreplace(mapping)
    return out.xreplace({dummy: node for node, dummy in held.items()}) if held else out


def _data_path(base: Path, name: str, where: Where, access: DataAccess) -> Path:
    """The real path of the data file ``name`` of a model in folder ``base``, checked to lie
    inside the allowed root; InputError (at the model's ``data_file`` entry) otherwise."""
    shown = excerpt(name)
    if "\0" in name:
        raise where.error(f"data file {shown!r} is not a file name")
    root = access.root if access.root is not None else base
    try:
        real = (base / name).resolve(strict=True)
    except FileNotFoundError:
        raise where.error(f"data file {shown!r} not found") from None
    except (OSError, RuntimeError) as exc:  # a loop of links, a name too long, no permission
        reason = getattr(exc, "strerror", None) or "a loop of symbolic links"
        raise where.error(f"data file {shown!r} cannot be opened ({reason})") from None
    try:
        allowed = Path(root).resolve(strict=True)
    except (OSError, RuntimeError):
        raise InputError("the data root is not an existing folder", str(root)) from None
    if not real.is_relative_to(allowed):
        where_to = "the model file's folder" if access.root is None else "the data root"
        raise where.error(f"data file {shown!r} lies outside {where_to} (after symbolic "
                          "links); pass --data-root DIR to read data from another folder")
    return real


def _read_data_file(file: Path, shown: str, where: Where, access: DataAccess) -> list:
    """Numbers from a ``.csv``/text file (one per line) or a ``.npy`` array at the real path
    ``file``; errors name the file as ``shown`` (and the line), never its content."""
    try:
        if file.suffix == ".npy":
            return _read_npy(read_user_bytes(file, access.max_bytes, "data file", resolved=True),
                             shown, where)
        text = read_user_text(file, access.max_bytes, "data file", resolved=True)
    except InputError as exc:
        # named as the model wrote it, not by its real path
        raise InputError(exc.message, shown, exc.line, exc.column) from None
    values = []
    for number, line in enumerate(source_lines(text), start=1):
        item = line.split("#", 1)[0].strip().rstrip(",")
        if not item:
            continue
        column = len(line) - len(line.lstrip()) + 1
        if _DATA_NUMBER.fullmatch(item) is None:
            raise InputError(f"{where.entry}: not a number (a data file holds one decimal "
                             "number per line)", shown, number, column)
        problem = decimal_problem(item)
        if problem:
            raise InputError(f"{where.entry}: the data value is out of range: "
                             + problem.replace(excerpt(item), "the value", 1), shown, number,
                             column)
        values.append(int(item) if _DATA_INTEGER.fullmatch(item) else float(item))
    return values


#: A number of a data file: a decimal, optionally signed, with an optional exponent.
_DATA_NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?", re.ASCII)  # no other digits
_DATA_INTEGER = re.compile(r"[+-]?\d+", re.ASCII)


def _read_npy(data: bytes, shown: str, where: Where) -> list:
    """The numbers of a ``.npy`` file's bytes, exactly; never unpickles, never trusts the header.

    The header is parsed by numpy's reader (a literal, not code) after its
    length is checked, and the data must be exactly as long as the header's
    shape says before anything is built from it. Every message is one fixed
    sentence: numpy's own (several lines, object addresses) is never shown.
    """

    def refuse(message):
        return InputError(f"{where.entry}: {message}", shown)

    shape, _, dtype, start = tables.npy_header(data, refuse)
    if dtype.kind not in "iufb" or dtype.subdtype is not None or dtype.names:
        raise refuse(f"the array holds {dtype}, not numbers")
    _require_one_axis(shape, "the array", where)
    arr = tables.npy_array(data, shape, dtype, start, refuse)
    _check_items(arr, refuse)
    if dtype.kind == "f" and dtype.itemsize > 8:
        return _exact_items(arr)
    return arr.tolist()


def _exact_items(arr) -> list:
    """The items of a float array wider than a double (long double) as exact numbers.

    An integer item becomes an int, one a double holds exactly a float, any
    other a Fraction: converting the array to doubles first would round them.
    """
    out = []
    for item in arr:
        exact = Fraction(*item.as_integer_ratio())
        if exact.denominator == 1:
            out.append(int(exact))
        elif magnitude_problem(exact) is None and Fraction(float(item)) == exact:
            out.append(float(item))
        else:
            out.append(exact)
    return out


def _check_items(arr, refuse) -> None:
    """Every item of a numeric array is finite and in the range of a double, or ``refuse``."""
    np = tables.numpy_module()
    if arr.dtype.kind != "f":
        return  # integers of at most 64 bits lie inside the range of a double
    with np.errstate(all="ignore"):
        size = np.abs(arr)
        bad = ~np.isfinite(arr) | (size > np.finfo(np.float64).max) \
            | ((size < np.finfo(np.float64).smallest_normal) & (arr != 0))
    if bad.any():
        index = int(np.flatnonzero(bad)[0])
        item = arr[index]
        if not np.isfinite(item):
            raise refuse(f"item {index + 1} is {float(item)!r}, not a finite number")
        raise refuse(f"item {index + 1} is out of range: "
                     + magnitude_problem(Fraction(*item.as_integer_ratio())))


def _number_value(v, where: Where, what: str):
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise where.error(f"{what} must be a number, got {v!r}")
    if isinstance(v, float) and not math.isfinite(v):
        raise where.error(f"{what} must be finite, got {v!r}")
    problem = magnitude_problem(v)
    if problem:
        raise where.error(f"{what} is out of range: {problem}")
    return v


def _require_one_axis(shape: tuple, what: str, where: Where) -> None:
    """Data are one value per observation (an array's ``shape``): a 1-d array, a row or a column."""
    if sum(1 for n in shape if n != 1) > 1:
        shape = "x".join(str(n) for n in shape)
        raise where.error(f"{what} has shape {shape}: data must be one value per observation "
                          "(a 1-d array)")


def _as_number_array(raw, where: Where):
    """The data of a numpy array ``raw``: a 1-d float64/int64 array when that holds them
    exactly, else a list of exact numbers (long doubles, uint64 past int64); None when
    ``raw`` is not a numpy array."""
    if type(raw).__module__ != "numpy":  # numpy is imported only when an array is given
        return None
    np = tables.numpy_module()
    if not isinstance(raw, np.ndarray):
        return None
    if raw.dtype.kind not in "iuf":
        raise where.error(f"data holds {raw.dtype}, not numbers")
    _require_one_axis(raw.shape, "the data array", where)
    arr = raw.ravel()
    _check_items(arr, lambda message: where.error(f"each data value must be finite and in "
                                                  f"range: {message}"))
    if arr.dtype.kind == "f" and arr.dtype.itemsize > 8:
        return _exact_items(arr)
    if arr.dtype.kind == "u" and arr.dtype.itemsize >= 8 and len(arr) \
            and int(arr.max()) > np.iinfo(np.int64).max:
        return arr.tolist()   # int64 would wrap these around
    # a copy: the caller may change their array later
    return arr.astype("float64" if arr.dtype.kind == "f" else "int64")




def np_all_integer(arr) -> bool:
    """Whether every item of a float array is an integer."""
    np = tables.numpy_module()
    return bool((np.floor(arr) == arr).all())


def _exact(v) -> sp.Rational:
    """The exact value of a number as a file wrote it (a float by its shortest decimal)."""
    if isinstance(v, int):
        return sp.Integer(v)
    if isinstance(v, Fraction):
        return sp.Rational(v.numerator, v.denominator)
    return sp.Rational(Fraction(repr(float(v))))


def load_model(path: str, access: DataAccess | None = None) -> "Model":
    """Read a model file; bad input raises InputError naming the file, the entry, line and column.

    ``access`` says which data files the model may read (default: the one set
    by :func:`data_access`, else files inside the model's folder, at most
    MAX_DATA_BYTES each). The model file itself is at most MAX_SOURCE_BYTES.
    """
    p = Path(path)
    if not os.path.lexists(p):
        raise InputError("model file not found", str(path))
    text = read_user_text(p, MAX_SOURCE_BYTES, "model file")
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise _toml_error(exc, str(path)) from None
    except ValueError:
        # tomllib converts an integer literal with int(), which refuses more than
        # 4300 digits (and nothing else it does raises a plain ValueError)
        raise _long_integer_error(text, str(path)) from None
    return model_from_dict(doc, path=str(path), text=text, base=p.parent, access=access)


def _long_integer_error(text: str, path: str) -> InputError:
    """The error of a TOML integer too long to convert, located at its first digit."""
    limit = sys.get_int_max_str_digits()
    for number, line in enumerate(source_lines(text), start=1):
        m = re.search(r"[0-9_]{%d,}" % (limit + 1), line)
        if m:
            return InputError(f"an integer of {len(m.group().replace('_', ''))} digits (numbers "
                              "must lie in the range of a double)", path, number, m.start() + 1)
    return InputError("a number of the file cannot be read", path)


def model_from_dict(doc: dict, path: str | None = None, text: str | None = None,
                    base: Path | None = None, access: DataAccess | None = None) -> "Model":
    """Build a Model from the parsed TOML structure (the Python API for models)."""
    return Model(doc, path, text, base or Path("."), access or _DATA_ACCESS.get())


# --- the model -------------------------------------------------------------

_ASSUME = {fam.REAL: dict(real=True), fam.POSITIVE: dict(positive=True),
           fam.UNIT: dict(positive=True), fam.COUNTS: dict(integer=True, nonnegative=True),
           fam.BINARY: dict(integer=True, nonnegative=True),
           fam.FINITE: dict(integer=True, nonnegative=True),
           fam.BOUNDED_COUNTS: dict(integer=True, nonnegative=True),
           fam.INTERVAL: dict(real=True), vectors.SIMPLEX: dict(positive=True)}


def _agree(a, b, digits: int) -> bool:
    """Two evaluations agree to ``digits - 10`` significant digits (or are the same non-number)."""
    if not (mpmath.isfinite(a) and mpmath.isfinite(b)):
        return a == b
    return abs(a - b) <= mpmath.mpf(10) ** -(digits - 10) * max(1, abs(a), abs(b))


class Model:
    """A probabilistic model with a mean-field variational family, ready for closed-form analysis."""

    def __init__(self, doc: dict, path: str | None, text: str | None, base: Path,
                 access: DataAccess = DataAccess()):
        self.path = path
        self._text = text
        self._base = base
        self._access = access
        self._cache: dict = {}
        known = {"name", "latent", "observed", "variational", "values"}
        for key in doc:
            if key not in known:
                raise InputError(f"unknown table or key {key!r}; expected one of "
                                 + ", ".join(sorted(known)), path, *_locate_table(text, key))
        self.name = doc.get("name", Path(path).stem if path else "model")
        if not isinstance(self.name, str):
            raise InputError("name must be a string", path, *_locate(text or "", None, "name"))
        for table in ("latent", "observed", "variational", "values"):
            if table in doc and not isinstance(doc[table], dict):
                raise InputError(f"[{table}] must be a table", path, *_locate_table(text, table))
        latent_doc = doc.get("latent", {})
        observed_doc = doc.get("observed", {})
        variational_doc = doc.get("variational", {})
        values_doc = doc.get("values", {})
        # an empty table is located at its header; a missing one has no position
        if not latent_doc:
            raise InputError("the model has no [latent] variables", path,
                             *_locate_table(text, "latent"))
        if not observed_doc:
            raise InputError("the model has no [observed] variables", path,
                             *_locate_table(text, "observed"))
        self._read(latent_doc, observed_doc, variational_doc, values_doc)

    # -- parsing ---------------------------------------------------------
    def _w(self, table, key, sub=None) -> Where:
        return _where(self.path, self._text, table, key, sub)

    def _dist(self, text, where: Where, vector_ok: bool = False) -> tuple[fam.Family, DistCall]:
        call = parse_distribution(text, where)
        family = fam.get_family(call.name) or vectors.get_family(call.name)
        if family is None:
            raise where.error(f"unknown family {call.name!r}; expected one of "
                              + ", ".join(sorted([*fam.FAMILIES, *vectors.FAMILIES])),
                              call.name_column)
        if vectors.is_joint(family) and not vector_ok:
            raise where.error(f"{call.name} is a law of a vector latent; an observed "
                              "variable takes a family of one value", call.name_column)
        problem = family.check_arity(len(call.args))
        one_name = len(call.args) == 1 and names(call.args[0].tree) == [call.args[0].text.strip()]
        if problem and not (family.variadic and one_name):  # Categorical(theta): a vector
            raise where.error(problem, call.name_column)
        return family, call

    def _read(self, latent_doc, observed_doc, variational_doc, values_doc):
        path = self.path
        # 1. Distributions as syntax trees.
        latents: dict[str, Latent] = {}
        for name, entry in latent_doc.items():
            per = shape = None
            if isinstance(entry, dict):
                where = self._w("latent", name, "dist")
                extra = set(entry) - {"dist", "per", "shape"}
                if extra or "dist" not in entry:
                    raise where.error("a latent table takes dist = \"...\" and optionally "
                                      "per = \"<observed name>\" or shape = K")
                per = entry.get("per")
                if "shape" in entry:
                    shape = self._shape(entry["shape"], self._w("latent", name, "shape"))
                    if per is not None:
                        raise where.error("a latent takes per = ... or shape = K, not both")
                text = entry["dist"]
            else:
                where = self._w("latent", name)
                text = entry
            if name in CONSTANTS:
                raise self._w("latent", name).error(
                    f"{name!r} is the constant {name} in parameter strings; give the latent "
                    "another name")
            family, call = self._dist(text, where, vector_ok=True)
            latents[name] = Latent(name, Dist(family, call, where), per=per, shape=shape)
        observed: dict[str, Observed] = {}
        for name, entry in observed_doc.items():
            where = self._w("observed", name, "dist")
            if not isinstance(entry, dict) or "dist" not in entry:
                raise self._w("observed", name).error(
                    'expected { dist = "...", data = [...] } or { dist = "...", data_file = "..." }')
            extra = set(entry) - {"dist", "data", "data_file", "columns"}
            if extra:
                raise where.error(f"unknown field {sorted(extra)[0]!r}")
            if name in latents:
                raise where.error(f"{name!r} is both latent and observed")
            family, call = self._dist(entry["dist"], where)
            observed[name] = Observed(name, Dist(family, call, where), [])
        for name in variational_doc:
            if name not in latents:
                raise self._w("variational", name).error(f"{name!r} is not a latent variable")
        for name, lat in latents.items():
            if name not in variational_doc:
                raise InputError(f"[variational]: no variational family for latent {name!r}",
                                 path, *_locate_table(self._text, "variational"))
            where = self._w("variational", name)
            entry = variational_doc[name]
            if not isinstance(entry, str):
                raise where.error('expected a distribution string, e.g. "Normal(m, s)"')
            family, call = self._dist(entry, where, vector_ok=True)
            lat.q = Dist(family, call, where)
            if lat.per is not None and lat.per not in observed:
                raise lat.prior.where.error(f"per = {lat.per!r} names no observed variable")
        #: name -> (VECTOR or LOWER, K) for each parameter name that stands for K numbers
        self._vector_kinds = self._vector_layout(latents, set(observed), values_doc)

        # 2. Which identifier means what, and its assumptions.
        model_names: set[str] = set()
        q_names: set[str] = set()
        positive_because: dict[str, str] = {}
        unit_because: dict[str, str] = {}

        def scan(dist: Dist, target: set, owner: str):
            for i, arg in enumerate(dist.call.args):
                used = names(arg.tree)
                target.update(used)
                if vectors.is_joint(dist.family) and \
                        dist.family.slots[min(i, len(dist.family.slots) - 1)] == vectors.LOWER:
                    continue  # a scale_tril's diagonal is positive, its other entries real
                dom = dist.family.domain_of(i)
                why = f"it is the {dist.family.param_name(i)} of {dist.call.name} in {owner}"
                if dom in (fam.D_POSITIVE, fam.D_COUNT):
                    for n in factor_names(arg.tree):
                        positive_because.setdefault(n, why)
                elif dom == fam.D_PROB and len(used) == 1 and arg.text.strip() == used[0]:
                    positive_because.setdefault(used[0], why)
                    unit_because.setdefault(used[0], why)

        for lat in latents.values():
            scan(lat.prior, model_names, lat.prior.where.entry)
        for obs in observed.values():
            scan(obs.dist, model_names, obs.dist.where.entry)
        for lat in latents.values():
            scan(lat.q, q_names, lat.q.where.entry)
        for name in observed:
            if name in model_names or name in q_names:
                # located at the first argument that uses it
                dists = [lat.prior for lat in latents.values()] + \
                    [obs.dist for obs in observed.values()] + [lat.q for lat in latents.values()]
                dist, arg = next((d, a) for d in dists for a in d.call.args
                                 if name in names(a.tree))
                raise dist.where.error(f"observed variable {name!r} cannot be used as a "
                                       "parameter", arg.column)
        local = {n for n, lat in latents.items() if lat.per is not None}
        for name, lat in latents.items():
            for other in latents.values():
                used = {u for a in other.q.call.args for u in names(a.tree)}
                if name in used:
                    raise other.q.where.error(f"a variational factor cannot depend on the "
                                              f"latent {name!r}")
            if name in local:
                for other in latents.values():
                    used = {u for a in other.prior.call.args for u in names(a.tree)}
                    if name in used:
                        raise other.prior.where.error(
                            f"{name!r} has one value per observation and cannot be a "
                            "parameter of another latent")
        self.latents = list(latents.values())
        self.observed = list(observed.values())

        symbols: dict[str, sp.Symbol] = {}
        for name, lat in latents.items():
            symbols[name] = sp.Symbol(name, **_ASSUME[lat.prior.family.support])
            if lat.shape is not None:
                symbols[name] = tuple(sp.Symbol(f"{name}_{k}", **symbols[name].assumptions0)
                                      for k in range(lat.shape))
        var_only = sorted(q_names - model_names - set(latents))
        #: the lower-triangular matrices (scale_tril), row by row, zeros above the diagonal
        self._matrices: dict[str, tuple] = {}
        for name in sorted((model_names | q_names) - set(latents)):
            if name in positive_because:
                symbols[name] = sp.Symbol(name, positive=True)
            else:
                symbols[name] = sp.Symbol(name, real=True)
            kind = self._vector_kinds.get(name)
            if kind is not None and kind[0] == vectors.VECTOR:
                symbols[name] = tuple(sp.Symbol(f"{name}_{k}", **symbols[name].assumptions0)
                                      for k in range(kind[1]))
            elif kind is not None:
                self._matrices[name] = tuple(
                    tuple(sp.Symbol(f"{name}_{i}{j}" if kind[1] <= 10 else f"{name}_{i}_{j}",
                                    **({"positive": True} if i == j else
                                                          {"real": True}))
                          if j <= i else sp.Integer(0) for j in range(kind[1]))
                    for i in range(kind[1]))
                del symbols[name]
        taken = {str(v) for v in symbols.values() if isinstance(v, sp.Symbol)}
        for name, v in list(symbols.items()) + [(n, sum(m, ())) for n, m in
                                                 self._matrices.items()]:
            for comp in (v if isinstance(v, tuple) else ()):
                if str(comp) in taken:
                    where = latents[name].prior.where if name in latents else \
                        self._w("values", name)
                    raise where.error(f"the component {comp} of {name!r} has the name of "
                                      "another identifier of the model; rename one of them")
        self._positive_because = positive_because
        self._unit_because = unit_because
        self._symbols = symbols

        # 3. Values.
        values: dict[sp.Symbol, sp.Expr] = {}
        local_values: dict[str, list] = {}
        local_q_names = {n for lat in self.latents if lat.per is not None
                         for a in lat.q.call.args for n in names(a.tree)} & set(var_only)
        for key, raw in values_doc.items():
            where = self._w("values", key)
            if key in latents:
                raise where.error(f"{key!r} is a latent variable; it cannot be given a value")
            if key in self._matrices:
                self._matrix_values(key, raw, where, values)
                continue
            if key not in symbols:
                raise where.error(f"{key!r} is not used by the model")
            if isinstance(symbols[key], tuple):
                comps = symbols[key]
                raw_list = raw if isinstance(raw, list) else [raw]
                if len(raw_list) not in (1, len(comps)):
                    raise where.error(f"{key!r} has {len(comps)} components: give 1 or "
                                      f"{len(comps)} numbers, got {len(raw_list)}")
                for comp, item in zip(comps, raw_list * len(comps) if len(raw_list) == 1
                                      else raw_list):
                    v = _exact(_number_value(item, where, key))
                    self._check_value(key, v, where)
                    values[comp] = v
                continue
            if isinstance(raw, list):
                if key not in local_q_names:
                    raise where.error(f"{key!r} takes one number, not a list")
                local_values[key] = [_number_value(v, where, key) for v in raw]
                for v in local_values[key]:
                    self._check_value(key, _exact(v), where)
                continue
            v = _exact(_number_value(raw, where, key))
            self._check_value(key, v, where)
            if key in local_q_names:
                local_values[key] = [raw]
            else:
                values[symbols[key]] = v

        # 4. SymPy arguments and numeric domain checks.
        for lat in self.latents:
            if lat.shape is not None:
                lat.prior_args = self._vector_args(lat, lat.prior, values)
                lat.q_args = self._vector_args(lat, lat.q, values)
                continue
            lat.prior.args = self._args(lat.prior, values)
            lat.q.args = self._args(lat.q, values)
        for obs in self.observed:
            obs.dist.args = self._args(obs.dist, values)
        self._check_latent_indices(latents)

        # 5. Data.
        #: The n of each Binomial likelihood, as a number.
        self._trials: dict[str, sp.Integer] = {}
        for obs in self.observed:
            entry = observed_doc[obs.name]
            where = obs.dist.where
            if ("data" in entry) == ("data_file" in entry):
                raise self._w("observed", obs.name).error("give exactly one of data and data_file")
            array = None
            table = self._table(obs, entry, values)
            if table is not None:
                dwhere, data = table
                array = data
            elif "data" in entry:
                dwhere = self._w("observed", obs.name, "data")
                raw = entry["data"]
                array = _as_number_array(raw, dwhere)
                if isinstance(array, list):   # exact items, looked at one by one
                    data, array = array, None
                elif array is not None:
                    data = array
                elif not isinstance(raw, list):
                    raise dwhere.error("data must be a list of numbers")
                else:
                    data = [_number_value(v, dwhere, "each data value") for v in raw]
            else:
                dwhere = self._w("observed", obs.name, "data_file")
                if not isinstance(entry["data_file"], str):
                    raise dwhere.error("data_file must be a file name")
                name = entry["data_file"]
                real = _data_path(self._base, name, dwhere, self._access)
                data = _read_data_file(real, str(self._base / name), dwhere, self._access)
            if not len(data):
                raise dwhere.error("no data")
            support = obs.dist.family.support
            sparams = obs.dist.args
            if support == fam.BOUNDED_COUNTS:
                # the n of a Binomial bounds the data: it needs a number, written or in [values]
                trials = sparams[0].xreplace(values)
                if not trials.is_Integer:
                    raise where.error("the n of a Binomial likelihood needs a value (a number, "
                                      "or a name given one in [values])",
                                      obs.dist.call.args[0].column)
                sparams = (trials,) + tuple(sparams[1:])
                self._trials[obs.name] = trials
            if support == fam.INTERVAL:
                # a Uniform likelihood's support bounds the data: its ends need numbers
                ends = tuple(a.xreplace(values) for a in sparams)
                if not all(e.is_number for e in ends):
                    raise where.error("the low and high of a Uniform likelihood need values "
                                      "(numbers, or names given them in [values]): a support "
                                      "that moves with a latent is not supported",
                                      obs.dist.call.args[0].column)
                sparams = ends
            zero = obs.dist.family.data_zero
            if array is not None:
                # An array: checked and converted in bulk; an item is looked at one by one
                # only to name the first one outside the support.
                if obs.dist.family.discrete and array.dtype.kind == "f":
                    ok = bool(np_all_integer(array))
                else:
                    ok = True
                ok = ok and fam.array_in_support(array, support, sparams, zero)
                if not ok:
                    data = array.tolist()
                else:
                    obs.array = array.astype("int64") if obs.dist.family.discrete else array
                    # Kept as the array: its items are turned into Python numbers only
                    # where they are used one by one.
                    data = obs.array
            if obs.array is None:
                for i, v in enumerate(data):
                    if not fam.data_in_support(v, support, sparams, zero):
                        shown = "the non-negative reals" if zero else fam.SUPPORT_TEXT[support]
                        if support == fam.FINITE:  # with its K
                            shown = f"{{0, ..., {len(sparams) - 1}}}"
                        raise dwhere.error(f"data value {v!r} (item {i + 1}) is outside the "
                                           f"support of {obs.dist.call.name}, {shown}")
                if obs.dist.family.discrete:
                    data = [int(v) for v in data]
            obs.data = data
            obs.symbol = sp.Symbol(obs.name, **_ASSUME[support])

        # 6. Local latents: one symbol per observation, with indexed variational parameters.
        self._var_symbols: list[sp.Symbol] = []
        for n in var_only:
            if n in self._matrices:
                self._var_symbols += [e for i, row in enumerate(self._matrices[n])
                                      for e in row[:i + 1]]
            elif isinstance(symbols[n], tuple):
                self._var_symbols += list(symbols[n])
            elif n not in local_q_names:
                self._var_symbols.append(symbols[n])
        local_var_symbols: list[sp.Symbol] = []
        for lat in self.latents:
            if lat.per is None and lat.shape is None:
                lat.symbols = [symbols[lat.name]]
                lat.prior_args = [lat.prior.args]
                lat.q_args = [lat.q.args]
                continue
            if lat.shape is not None:
                lat.symbols = list(symbols[lat.name])
                continue
            n = len(next(o for o in self.observed if o.name == lat.per).data)
            for i in range(n):
                zi = sp.Symbol(f"{lat.name}_{i + 1}", **_ASSUME[lat.prior.family.support])
                sub = {}
                for qn in sorted(local_q_names):
                    if any(qn in names(a.tree) for a in lat.q.call.args):
                        s = symbols[qn]
                        si = sp.Symbol(f"{qn}_{i + 1}", **s.assumptions0)
                        sub[s] = si
                        local_var_symbols.append(si)
                        if qn in local_values:
                            vals = local_values[qn]
                            if len(vals) not in (1, n):
                                raise self._w("values", qn).error(
                                    f"{qn!r} needs 1 or {n} numbers (one per observation of "
                                    f"{lat.per!r}), got {len(vals)}")
                            values[si] = _exact(vals[0] if len(vals) == 1 else vals[i])
                lat.symbols.append(zi)
                lat.prior_args.append(lat.prior.args)
                lat.q_args.append(tuple(a.xreplace(sub) for a in lat.q.args))
                lat.renames.append({symbols[lat.name]: zi, **sub})
        self._var_symbols += local_var_symbols
        self.values = values
        for lat in self.latents:
            if lat.per is None or not lat.q.family.variadic:
                continue
            # each observation's q(z_i): its probabilities, at the values, must sum to 1
            for z, args in zip(lat.symbols, lat.q_args):
                total = sp.Add(*args).xreplace(values)
                if total.is_number and total != 1:
                    name = next((n for a in lat.q.call.args for n in names(a.tree)
                                 if n in values_doc), None)
                    where = self._w("values", name) if name else lat.q.where
                    raise where.error(f"the probabilities of q({z}) = {lat.q.call.name} sum to "
                                      f"{total}, not 1")

    def _table(self, obs: Observed, entry: dict, values: dict):
        """(where, the observed column) when the data of ``obs`` are a table of named columns
        (an inline table, a CSV file with a header, a structured or 2-d .npy array), with the
        columns its likelihood uses put in ``obs.columns``; None for one value per observation."""
        key = "data" if "data" in entry else "data_file"
        dwhere = self._w("observed", obs.name, key)
        column_list = tables.column_names(entry.get("columns"),
                                          self._w("observed", obs.name, "columns"))
        if key == "data":
            if not isinstance(entry["data"], dict):
                if column_list is not None:
                    raise dwhere.error("columns = [...] names the columns of a data file")
                return None
            table = tables.inline_table(entry["data"], dwhere)
        else:
            name = entry["data_file"]
            if not isinstance(name, str):
                return None
            real = _data_path(self._base, name, dwhere, self._access)
            shown = str(self._base / name)
            try:
                raw = read_user_bytes(real, self._access.max_bytes, "data file", resolved=True)
            except InputError as exc:
                raise InputError(exc.message, shown, exc.line, exc.column) from None
            if real.suffix == ".npy":
                table = tables.npy_table(raw, shown, dwhere, column_list)
            else:
                if column_list is not None:
                    raise dwhere.error("columns = [...] names the columns of a 2-d .npy array; "
                                       "a CSV file names them in its header")
                text = decode_user_text(raw, shown, "data file")
                table = tables.csv_table(text, shown, dwhere) if tables.csv_has_header(text) \
                    else None
            if table is None:
                return None
        if obs.name not in table.columns:
            raise dwhere.error(f"the data table has no column {obs.name!r} (its columns: "
                               + ", ".join(table.names()) + ")")
        used = {n for a in obs.dist.call.args for n in names(a.tree)}
        for col in sorted(used & set(table.columns)):
            symbol = self._symbols[col]
            if symbol in values:
                raise self._w("values", col).error(
                    f"{col!r} is a column of the data of {obs.name!r}; it cannot be given a value")
            tables.check_column(symbol, table.columns[col], col, dwhere)
            obs.columns[symbol] = table.columns[col]
        return dwhere, table.columns[obs.name]

    @staticmethod
    def _shape(raw, where: Where) -> int:
        """The K of ``shape = K``: an integer from 1 to vectors.MAX_COMPONENTS."""
        if not isinstance(raw, int) or isinstance(raw, bool) or \
                not 1 <= raw <= vectors.MAX_COMPONENTS:
            raise where.error(f"shape must be a whole number of components from 1 to "
                              f"{vectors.MAX_COMPONENTS}, got {excerpt(repr(raw))}")
        return raw

    def _vector_layout(self, latents: dict, observed: set, values_doc: dict) -> dict:
        """Each vector latent's K (``lat.shape``), and the parameter names that stand for K
        numbers: {name: (vectors.VECTOR or vectors.LOWER, K)}.

        K is ``shape = K``, or the number of a Dirichlet's written concentrations, or the
        length of the [values] list of a joint family's first parameter. In a vector
        latent's q every parameter name is a vector (one number per component, as a
        per-observation latent's are); in its prior a name is a vector when [values]
        gives it a list; a joint family's vector slot (Dirichlet's concentration,
        MultivariateNormal's loc) named by one name is a vector, its scale_tril a matrix.
        """
        kinds: dict[str, tuple] = {}
        where_of: dict[str, tuple] = {}

        def record(name, kind, dist, arg):
            if name in latents or name in observed:
                return
            if name in kinds and kinds[name] != kind:
                shown = {vectors.VECTOR: "a vector of {} numbers",
                         vectors.LOWER: "a {0} x {0} scale_tril matrix", None: "one number"}
                raise dist.where.error(
                    f"{name!r} is {shown[kinds[name][0]].format(kinds[name][1])} in "
                    f"{where_of[name]} and {shown[kind[0]].format(kind[1])} here", arg.column)
            kinds[name] = kind
            where_of.setdefault(name, dist.where.entry)

        def bare(arg):
            used = names(arg.tree)
            return used[0] if len(used) == 1 and arg.text.strip() == used[0] else None

        def listed(name):
            raw = values_doc.get(name) if name else None
            return len(raw) if isinstance(raw, list) else None

        for lat in latents.values():
            joint = [d for d in (lat.prior, lat.q) if vectors.is_joint(d.family)]
            k = lat.shape
            for d in joint:
                if k is None and d.family.name == "Dirichlet" and len(d.call.args) >= 2:
                    k = len(d.call.args)
                if k is None:
                    k = listed(bare(d.call.args[0]))
            if joint and k is None:
                raise joint[0].where.error(
                    f"give the number of components of {lat.name!r}: shape = K in its "
                    f"[latent] table, or a list of K numbers for "
                    f"{joint[0].call.args[0].text!r} in [values]", joint[0].call.args[0].column)
            if k is None:
                continue
            lat.shape = k
            self._check_vector_laws(lat)
            if lat.per is not None:
                raise lat.prior.where.error("a latent takes per = ... or a vector law, not both")
            for d, in_q in ((lat.prior, False), (lat.q, True)):
                if not vectors.is_joint(d.family):
                    for arg in d.call.args:
                        for name in names(arg.tree):
                            if in_q or listed(name) is not None:
                                record(name, (vectors.VECTOR, k), d, arg)
                    continue
                if d.family.name == "Dirichlet" and len(d.call.args) >= 2:
                    if len(d.call.args) != k:
                        raise d.where.error(f"{d.call.name} lists {len(d.call.args)} "
                                            f"concentrations, but {lat.name!r} has {k} "
                                            "components", d.call.args[0].column)
                    continue
                for slot, arg in zip(d.family.slots, d.call.args):
                    name = bare(arg)
                    if slot == vectors.LOWER:
                        if name is not None:
                            record(name, (vectors.LOWER, k), d, arg)
                        elif not (arg.text.strip() and not names(arg.tree)):
                            raise d.where.error(
                                "a scale_tril is one name (a K x K lower-triangular matrix "
                                "in [values]) or a number c (c times the identity)", arg.column)
                    elif name is not None:
                        record(name, (vectors.VECTOR, k), d, arg)
        return kinds

    def _matrix_values(self, key: str, raw, where: Where, values: dict):
        """The [values] of a scale_tril: K rows of K numbers, zero above the diagonal and
        positive on it, or one positive number c (c times the identity)."""
        rows = self._matrices[key]
        k = len(rows)
        if not isinstance(raw, list):
            _number_value(raw, where, key)  # one number: c times the identity
            raw = [[raw if i == j else 0 for j in range(k)] for i in range(k)]
        if len(raw) != k or not all(isinstance(r, list) and len(r) == k for r in raw):
            raise where.error(f"{key!r} is a {k} x {k} lower-triangular matrix: give {k} rows "
                              f"of {k} numbers, [[...], ...], or one number")
        for i, row in enumerate(raw):
            for j, item in enumerate(row):
                v = _exact(_number_value(item, where, key))
                if j > i and v != 0:
                    raise where.error(f"{key}[{i}][{j}] = {v}, but a scale_tril is lower "
                                      "triangular: every entry above the diagonal is 0")
                if j == i and not v > 0:
                    raise where.error(f"{key}[{i}][{i}] = {v}, but the diagonal of a "
                                      "scale_tril must be positive")
                if j <= i:
                    values[rows[i][j]] = v

    def _check_latent_indices(self, latents: dict):
        """mu[z] needs a z with exactly as many values as mu has components."""
        dists = [d for lat in latents.values() for d in (lat.prior, lat.q)] + \
            [o.dist for o in self.observed]
        for dist in dists:
            for arg in dist.call.args:
                nodes = arg.tree.find_data("index_by") if hasattr(arg.tree, "find_data") else ()
                for node in nodes:
                    name, by = str(node.children[0]), str(node.children[1])
                    lat = latents.get(by)
                    count = None
                    if lat is not None:
                        values = lat.prior.family.support_values(lat.prior.args)
                        count = len(values) if values is not None else None
                    want = len(self._symbols[name])
                    if count != want:
                        shown = f"{count} values" if count is not None else "no finite values"
                        raise dist.where.error(
                            f"{name}[{by}] needs a latent {by!r} with {want} values 0 .. "
                            f"{want - 1}, one for each component of {name!r}; it has {shown}",
                            node.children[1].column)

    @staticmethod
    def _check_vector_laws(lat: Latent):
        """A vector latent's prior and q must live on the same kind of space: the simplex
        (a Dirichlet, K >= 2) for both or for neither; a MultivariateNormal q needs a prior
        on the real line."""
        prior, q = lat.prior, lat.q
        on_simplex = [d.family.support == vectors.SIMPLEX for d in (prior, q)]
        if on_simplex[0] != on_simplex[1]:
            other = q if on_simplex[0] else prior
            raise other.where.error(
                f"{lat.name!r} has a Dirichlet {'prior' if on_simplex[0] else 'q'}, so its "
                f"{'q' if on_simplex[0] else 'prior'} must be a Dirichlet too (a law on the "
                "simplex), not " + other.call.name, other.call.name_column)
        if on_simplex[0] and lat.shape < 2:
            raise prior.where.error(f"a Dirichlet needs at least 2 components; "
                                    f"{lat.name!r} has {lat.shape}")
        if q.family.name == "MultivariateNormal" and prior.family.support != fam.REAL:
            raise q.where.error(f"a MultivariateNormal q lives on the real line, but the prior "
                                f"of {lat.name!r}, {prior.call.name}, lives on "
                                f"{fam.SUPPORT_TEXT[prior.family.support]}",
                                q.call.name_column)

    def _check_value(self, key: str, v: sp.Rational, where: Where):
        if key in self._positive_because and not v > 0:
            raise where.error(f"{key} = {v} but {key} must be positive: "
                              f"{self._positive_because[key]}")
        if key in self._unit_because and not v < 1:
            raise where.error(f"{key} = {v} but {key} must be below 1: {self._unit_because[key]}")

    def _vector_args(self, lat: Latent, dist: Dist, values) -> list[tuple]:
        """The parameters of a vector latent's prior or q: one tuple per component for a
        scalar family (each vector name at that component), or one structured tuple for a
        joint family ((alpha,) or (m, L)). ``dist.args`` gets every entry, flat."""
        k = lat.shape
        if not vectors.is_joint(dist.family):
            per = []
            for i in range(k):
                own = dict(self._symbols)
                for arg in dist.call.args:
                    for name in names(arg.tree):
                        if self._vector_kinds.get(name, (None,))[0] == vectors.VECTOR:
                            own[name] = self._symbols[name][i]
                per.append(self._args(dist, values, own))
            dist.args = tuple(dict.fromkeys(a for args in per for a in args))
            return per
        call, family = dist.call, dist.family
        if family.name == "Dirichlet" and len(call.args) >= 2:
            structured = (self._args(dist, values),)
        else:
            structured = []
            for slot, arg in zip(family.slots, call.args):
                name = arg.text.strip()
                if slot == vectors.LOWER:
                    if name in self._matrices:
                        structured.append(self._matrices[name])
                        continue
                    c = to_sympy(arg, self._symbols, dist.where)
                    if not (c.xreplace(values).is_positive):
                        raise dist.where.error(f"the scale_tril of {call.name} must be a "
                                               f"positive multiple of the identity, got "
                                               f"{arg.text}", arg.column)
                    structured.append(tuple(tuple(c if i == j else sp.Integer(0)
                                                  for j in range(k)) for i in range(k)))
                    continue
                found = self._symbols.get(name)
                if isinstance(found, tuple) and name not in {l.name for l in self.latents}:
                    entries = found
                else:
                    entries = (to_sympy(arg, self._symbols, dist.where),) * k
                dom = family.domains[0] if slot == vectors.VECTOR else fam.D_REAL
                for e in entries:
                    if fam.in_domain(e.xreplace(values), dom) is False:
                        raise dist.where.error(
                            f"the {family.param_name(len(structured))} of {call.name} must "
                            f"be {fam.DOMAIN_TEXT[dom]}, got {arg.text} = {e.xreplace(values)}",
                            arg.column)
                structured.append(tuple(entries))
            structured = tuple(structured)
        flat = []
        for part in structured:
            for entry in part:
                flat.extend(entry if isinstance(entry, tuple) else (entry,))
        dist.args = tuple(dict.fromkeys(flat))
        return [structured]

    def _args(self, dist: Dist, values, symbols: dict | None = None) -> tuple[sp.Expr, ...]:
        if dist.family.variadic and len(dist.call.args) == 1:
            # Categorical(theta): the components of a vector latent are the probabilities
            found = (symbols or self._symbols).get(dist.call.args[0].text.strip())
            if not (isinstance(found, tuple) and len(found) >= 2):
                raise dist.where.error(f"{dist.call.name} takes at least 2 probabilities or "
                                       "one vector latent on the simplex (a Dirichlet), got "
                                       + dist.call.args[0].text, dist.call.args[0].column)
            owner = next((l for l in self.latents if l.name == dist.call.args[0].text.strip()),
                         None)
            if owner is None or owner.prior.family.support != vectors.SIMPLEX:
                raise dist.where.error(f"the probabilities of {dist.call.name} must sum to 1: "
                                       "a vector latent given as them must have a Dirichlet "
                                       "prior", dist.call.args[0].column)
            return tuple(found)
        out = []
        for i, arg in enumerate(dist.call.args):
            expr = to_sympy(arg, symbols or self._symbols, dist.where)
            dom = dist.family.domain_of(i)
            at_values = expr.xreplace(values)
            ok = fam.in_domain(at_values, dom)
            if ok is False:
                shown = f"{arg.text} = {at_values}" if at_values != expr or not expr.is_number \
                    else arg.text
                raise dist.where.error(
                    f"the {dist.family.param_name(i)} of {dist.call.name} must be "
                    f"{fam.DOMAIN_TEXT[dom]}, got {shown}", arg.column)
            out.append(expr)
        problem = dist.family.params_problem(tuple(a.xreplace(values) for a in out))
        if problem:
            raise dist.where.error(problem, dist.call.args[0].column)
        if dist.family.variadic:
            total = sp.Add(*out).xreplace(values)
            if total.is_number and total != 1:
                raise dist.where.error(f"the probabilities of {dist.call.name} sum to {total}, "
                                       "not 1", dist.call.args[0].column)
        return tuple(out)

    # -- public API --------------------------------------------------------
    @property
    def variational_parameters(self) -> list[sp.Symbol]:
        """The symbols only q depends on, in a stable order (per-observation ones last)."""
        return list(self._var_symbols)

    @property
    def latent_symbols(self) -> list[sp.Symbol]:
        """Every latent symbol (a per-observation latent contributes one per observation)."""
        return [s for lat in self.latents for s in lat.symbols]

    def symbol(self, name: str) -> sp.Symbol:
        """The symbol an identifier of the file stands for."""
        return self._symbols[name]

    def has_local_latents(self) -> bool:
        """Whether some latent has one copy per observation."""
        return any(lat.per for lat in self.latents)

    # -- sufficient statistics and the log joint ------------------------------
    def _statistics(self):
        """The log joint with data as statistic symbols, and the statistics' exact values."""
        if "joint" in self._cache:
            return self._cache["joint"]
        stats: dict[sp.Symbol, sp.Expr] = {}
        total = []
        # Per-observation terms are written once with generic symbols, expanded once,
        # and renamed for each observation: expanded pieces whose sum is expanded.
        expanded = []
        for lat in self.latents:
            if vectors.is_joint(lat.prior.family):
                total.append(lat.prior.family.logpdf(lat.symbols, lat.prior_args[0]))
                continue
            if lat.per is None:
                total.extend(self._prior_logpdf(lat, z, args)
                             for z, args in zip(lat.symbols, lat.prior_args))
                continue
            generic = self._symbols[lat.name]
            template = sp.expand(self._prior_logpdf(lat, generic, lat.prior.args))
            expanded.extend(_rename(template, {generic: z}) for z in lat.symbols)
        local = {lat.name: lat for lat in self.latents if lat.per}
        for obs in self.observed:
            used = {n for a in obs.dist.call.args for n in names(a.tree)}
            locs = [local[n] for n in used if n in local]
            if any(lat.per != obs.name for lat in locs):
                raise obs.dist.where.error("a per-observation latent can only appear in the "
                                           "likelihood of the variable it is per")
            if locs:
                expanded.extend(self._local_likelihood(obs, locs))
                continue
            total.append(self._summed_likelihood(obs, stats))
        joint = sp.Add(sp.expand(sp.Add(*total)), *expanded)
        self._cache["joint"] = (joint, stats)
        return joint, stats

    def _prior_logpdf(self, lat: Latent, z: sp.Symbol, args) -> sp.Expr:
        """log p(z) of a scalar latent; z ~ Categorical(theta) with theta latent (a Dirichlet)
        as sum_k [z = k] log theta_k, whose terms a mean-field expectation takes factor by
        factor (the Categorical's Piecewise would hold z and theta in one function)."""
        if lat.prior.family.support == fam.FINITE and any(
                a.free_symbols & set(self.latent_symbols) for a in args):
            return fam.categorical_indicator_logpdf(z, args)
        return lat.prior.family.logpdf(z, args)

    def free_probability_factors(self) -> list[tuple[sp.Symbol, tuple]]:
        """(z, probabilities) of each finite factor of q whose probabilities do not sum to 1
        identically (Categorical(r0, r1, r2)): a point of the simplex only at the values."""
        return [(z, args) for lat in self.latents if lat.q.family.support == fam.FINITE
                for z, args in zip(lat.symbols, lat.q_args)
                if sp.expand(sp.Add(*args) - 1) != 0]

    def _local_likelihood(self, obs: Observed, locs: list) -> list:
        """log p(x_i | z_i, ...) for each observation i, expanded, from one expanded template.

        A term polynomial in x takes each data value by renaming (exactly what
        expanding it at the value gives); a term with x inside a function is
        expanded again at each value.
        """
        x = sp.Dummy("x", **_ASSUME[obs.dist.family.support])
        template = reduce_indicators(sp.expand(obs.dist.family.logpdf(x, obs.dist.args)))
        polynomial, other = [], []
        for term in sp.Add.make_args(template):
            plain = all(not f.has(x) or f == x or (isinstance(f, sp.Pow) and f.base == x
                                                    and f.exp.is_Integer)
                        for f in sp.Mul.make_args(term))
            (polynomial if plain else other).append(term)
        polynomial, other = sp.Add(*polynomial), sp.Add(*other)
        out = []
        data = obs.array.tolist() if obs.array is not None else obs.data
        for i, v in enumerate(data):
            sub = {x: _exact(v)}
            for lat in locs:
                sub[self._symbols[lat.name]] = lat.symbols[i]
            for c, arr in obs.columns.items():
                sub[c] = _exact(arr[i].item())
            piece = _rename(polynomial, sub)
            if other != 0:
                piece += sp.expand(other.xreplace(sub))
            out.append(piece)
        return out

    def _summed_likelihood(self, obs: Observed, stats: dict) -> sp.Expr:
        """sum_i log p(x_i | params) written with sufficient statistics."""
        family, x = obs.dist.family, obs.symbol
        single = len(self.observed) == 1
        if obs.columns:
            data = {x: obs.array if obs.array is not None else tables.numpy_module().asarray(obs.data),
                    **obs.columns}
            try:
                return tables.summed_likelihood(
                    sp.expand(family.logpdf(x, obs.dist.args)), data, len(obs.data), stats,
                    "n" if single else f"n_{obs.name}", EXACT_SUM_LIMIT, exact_sum)
            except tables.NoStatistic as exc:
                raise NoClosedForm(exc.reason) from None
        values = family.support_values(obs.dist.args)
        if values is not None:
            # Finite support: the statistics are the counts of each value.
            counts = {k: 0 for k in values}
            if obs.array is not None:
                counts.update(_value_counts(tables.numpy_module(), obs.array))
            else:
                for v in obs.data:
                    counts[v] += 1
            terms = []
            for k in values:
                c = sp.Symbol(f"count({obs.name}={k})", integer=True, nonnegative=True)
                stats[c] = sp.Integer(counts[k])
                terms.append(c * family.logpdf(sp.Integer(k), obs.dist.args))
            return sp.expand(sp.Add(*terms))
        args = obs.dist.args
        trials = self._trials.get(obs.name)
        if trials is not None and args[0].is_Integer and args[0] > EXACT_GAMMA_LIMIT:
            # loggamma(n + 1) of a large written n would be evaluated as log(n!), exactly:
            # the n is a statistic symbol, put back as a number (held) when values are
            held = sp.Symbol(f"n({obs.name})", integer=True, positive=True)
            stats[held] = trials
            args = (held,) + tuple(args[1:])
        fixed = {args[0]: trials} if trials is not None and not args[0].is_number else {}
        logpdf = sp.expand(family.logpdf(x, args))
        grouped: dict[sp.Expr, list] = {}
        for term in sp.Add.make_args(logpdf):
            xpart, rest = [], []
            for factor in sp.Mul.make_args(term):
                (xpart if factor.has(x) else rest).append(factor)
            grouped.setdefault(sp.Mul(*xpart), []).append(sp.Mul(*rest))
        out = []
        for g in sorted(grouped, key=sp.default_sort_key):
            coef = sp.Add(*grouped[g])
            if g == 1:
                name = "n" if single else f"n_{obs.name}"
                stat = sp.Symbol(name, integer=True, positive=True)
                stats[stat] = sp.Integer(len(obs.data))
            elif (g.xreplace(fixed) if fixed else g).free_symbols - {x}:
                # x inside one function with a parameter (|x - theta| of a Laplace, the log of
                # a StudentT): no statistic, one term per distinct data value
                out.append(coef * _per_value_sum(g.xreplace(fixed) if fixed else g, x,
                                                 obs.data, obs.array))
                continue
            else:
                nonneg = _nonnegative_on(g, x, family.support)
                stat = sp.Symbol(f"sum({g})", real=True, **({"nonnegative": True} if nonneg
                                                                  else {}))
                # a function of the data and of the Binomial's n (a number) is summed at the n
                stats[stat] = _sum_over(g.xreplace(fixed) if fixed else g, x, obs.data,
                                        obs.array)
            out.append(coef * stat)
        return sp.Add(*out)

    # -- expectations under q ------------------------------------------------
    def _q_map(self) -> dict[sp.Symbol, tuple[fam.Family, tuple]]:
        """Each latent symbol's factor of q: (family, parameters); a component of a joint
        q (Dirichlet, MultivariateNormal) has its marginal here (see _blocks)."""
        out = {}
        for lat in self.latents:
            if vectors.is_joint(lat.q.family):
                out.update({z: lat.q.family.marginal(i, lat.q_args[0])
                            for i, z in enumerate(lat.symbols)})
            else:
                out.update({z: (lat.q.family, args) for z, args in zip(lat.symbols, lat.q_args)})
        return out

    def _blocks(self) -> dict[sp.Symbol, Latent]:
        """Each component of a latent whose q is joint over its components: that latent."""
        return {z: lat for lat in self.latents if vectors.is_joint(lat.q.family)
                for z in lat.symbols}

    def _support_problem(self) -> str | None:
        for lat in self.latents:
            qs, ps = lat.q.family.support, lat.prior.family.support
            if vectors.is_joint(lat.prior.family) or vectors.is_joint(lat.q.family):
                if ps == fam.REAL or ps == qs:
                    continue  # checked when the file was read (_check_vector_laws)
            if fam.INTERVAL in (qs, ps):
                # an interval (Uniform) is compared by its ends, at the values
                at = self.values
                inside = [fam.support_inside(lat.prior.family, [a.xreplace(at) for a in pa],
                                             lat.q.family, [a.xreplace(at) for a in qa])
                          for pa, qa in zip(lat.prior_args, lat.q_args)]
                if None in inside and False not in inside:
                    return (f"whether q({lat.name}) = {lat.q.text()} lies inside the support of "
                            f"its prior {lat.prior.text()} depends on symbols without values")
                qs = qs if qs != fam.INTERVAL else f"({', '.join(a.text for a in lat.q.call.args)})"
                ps = ps if ps != fam.INTERVAL else \
                    f"({', '.join(a.text for a in lat.prior.call.args)})"
                if False in inside:
                    return (f"q({lat.name}) = {lat.q.call.name} lives on "
                            f"{fam.SUPPORT_TEXT.get(qs, 'the interval ' + qs)}, not inside the "
                            f"support of the prior {lat.prior.call.name}, "
                            f"{fam.SUPPORT_TEXT.get(ps, 'the interval ' + ps)}: E_q[log p] is "
                            "-infinity and KL(q || posterior) is infinite")
                continue
            if not fam.support_contains(ps, qs):
                return (f"q({lat.name}) = {lat.q.call.name} lives on {fam.SUPPORT_TEXT[qs]}, "
                        f"not inside the support of the prior {lat.prior.call.name}, "
                        f"{fam.SUPPORT_TEXT[ps]}: E_q[log p] is -infinity and "
                        f"KL(q || posterior) is infinite")
        return None

    def _local_map(self) -> dict:
        """Each per-observation latent symbol: (its latent, its renaming of the generic symbols)."""
        if "local" not in self._cache:
            self._cache["local"] = {z: (lat, ren) for lat in self.latents if lat.per
                                    for z, ren in zip(lat.symbols, lat.renames)}
        return self._cache["local"]

    def expect(self, expr: sp.Expr, sink: list | None = None) -> sp.Expr:
        """E_q[expr] for an expanded expression, term by term from the closed-form table.

        Entries finite only under conditions append a :class:`Divergence` to ``sink``
        (without a sink they are refused: NoClosedForm)."""
        glob, loc = self._expect_terms(sp.expand(expr), sink)
        return sp.Add(*glob, *loc)

    def _expect_terms(self, expr: sp.Expr, sink: list | None = None) -> tuple[list, list]:
        """E_q of each term of an expanded expression: (terms of global latents only, the rest).

        A term with a per-observation latent z_i is taken from the expectation of its
        generic form, renamed, and comes back expanded; the others are left as products.
        A table entry finite only under conditions adds, for each term using it, a
        :class:`Divergence` to ``sink``.
        """
        qmap = self._q_map()
        latent = set(qmap)
        local = self._local_map()
        memo: dict = {}
        conditions: dict = {}
        glob, loc = [], []

        def table(family, part, z, args):
            found = _table_expect(family, part, z, args, sink is not None)
            conditions[(z, part)] = found[1]
            if any(c.is_positive is False for c, _ in found[1]):
                # infinite whatever the values (a StudentT's df written as 2 in E[x^2]): the
                # formula would divide by 0, so the closed form keeps the expectation as a
                # name, and its Divergence makes the value infinite
                return sp.Symbol(f"E_q[{part}]", positive=True)
            return found[0]

        blocks = self._blocks()
        for term in sp.Add.make_args(expr):
            parts: dict[sp.Symbol, list] = {}
            coef = []
            joint: dict[str, list] = {}  # factors on the components of a joint q
            for factor in sp.Mul.make_args(term):
                zs = factor.free_symbols & latent
                if not zs:
                    coef.append(factor)
                    continue
                owners = {blocks[z].name if z in blocks else z for z in zs}
                if len(owners) > 1:
                    raise NoClosedForm(f"the term {term} couples {', '.join(sorted(map(str, zs)))} "
                                       "inside one function: no closed-form expectation")
                one = next(iter(zs))
                if one in blocks:  # one owner: then every symbol of the factor is in its block
                    joint.setdefault(blocks[one].name, []).append(factor)
                    continue
                parts.setdefault(zs.pop(), []).append(factor)
            for name, fs in joint.items():
                touched = set().union(*(f.free_symbols for f in fs)) & latent
                if len(touched) == 1:  # one component: its marginal
                    parts[touched.pop()] = fs
                    continue
                lat = blocks[next(iter(touched))]
                key = (name, sp.Mul(*fs))
                if key not in memo:
                    memo[key] = lat.q.family.joint_expect(key[1], lat.symbols, lat.q_args[0])
                    if memo[key] is None:
                        raise NoClosedForm(f"E_q[{key[1]}] under q({name}) = {lat.q.text()} "
                                           "is not in the table")
                coef.append(memo[key])
            value = sp.Mul(*coef)
            renamed = []
            pending = []  # (z, part, its expectation, its conditions) of entries with conditions
            for z, fs in parts.items():
                part = sp.Mul(*fs)
                if z in local:
                    lat, ren = local[z]
                    generic = self._symbols[lat.name]
                    key = (generic, part.xreplace({z: generic}))
                    if key not in memo:
                        memo[key] = sp.expand(table(lat.q.family, key[1], generic, lat.q.args))
                    renamed.append(_rename(memo[key], ren))
                    if conditions[key]:
                        pending.append((z, part, renamed[-1],
                                        [(_rename(c, ren), w) for c, w in conditions[key]]))
                    continue
                key = (z, part)
                if key not in memo:
                    memo[key] = table(qmap[z][0], part, z, qmap[z][1])
                value *= memo[key]
                if conditions[key]:
                    pending.append((z, part, memo[key], conditions[key]))
            for z, part, e, conds in pending:
                # the rest of the term: what multiplies the infinite expectation
                rest = value * sp.Mul(*renamed) / e if e != 0 else sp.Integer(0)
                lat = local[z][0] if z in local else next(l for l in self.latents
                                                           if z in l.symbols)
                sink.append(Divergence(f"E_q[{part}] under q({z}) = {lat.q.text()}",
                                       tuple(conds), rest))
            if not renamed:
                glob.append(value)
                continue
            # Expanded factors multiplied out term by term: what expand would give.
            terms = list(sp.Add.make_args(sp.expand(value) if len(renamed) < len(parts)
                                          else value))
            for e in renamed:
                terms = [t * u for t in terms for u in sp.Add.make_args(e)]
            loc.extend(terms)
        return glob, loc

    def entropy(self) -> sp.Expr:
        """H[q] in closed form: the sum of its factors' entropies (a joint factor's its own)."""
        glob, loc = self._entropy_terms()
        return sp.Add(*glob, *loc)

    def _entropy_terms(self) -> tuple[list, list]:
        """H[q] of each factor: (global factors, per-observation factors expanded)."""
        glob, loc = [], []
        for lat in self.latents:
            if vectors.is_joint(lat.q.family):
                glob.append(lat.q.family.entropy(lat.q_args[0]))
                continue
            args_list = [lat.q.args] if lat.per else lat.q_args
            hs = []
            for args in args_list:
                h = lat.q.family.entropy(args)
                if h is None:
                    raise NoClosedForm(f"the entropy of {lat.q.call.name} has no closed form "
                                       "in the table")
                hs.append(h)
            if lat.per is None:
                glob.extend(hs)
            else:
                template = sp.expand(hs[0])
                loc.extend(_rename(template, ren) for ren in lat.renames)
        return glob, loc

    # -- the three quantities ------------------------------------------------
    def elbo(self, data_symbols: bool = False) -> sp.Expr:
        """ELBO(q) = E_q[log p(X, Z)] + H[q], in closed form; raises NoClosedForm otherwise.

        With ``data_symbols`` the sufficient statistics stay symbols (``n``, ``sum(x)``...).
        """
        def compute():
            problem = self._support_problem()
            if problem:
                raise NoClosedForm(problem)
            joint, _ = self._statistics()  # expanded
            sink: list = []
            glob, loc = self._expect_terms(joint, sink)
            hglob, hloc = self._entropy_terms()
            self._cache["elbo divergences"] = sink
            return sp.Add(sp.expand(sp.Add(*glob, *hglob)), *loc, *hloc)

        return self._with_data(self._budgeted("elbo", compute, "the closed-form ELBO"),
                               data_symbols)

    def divergences(self, key: str) -> list[Divergence]:
        """The terms of the closed form ``key`` ("elbo" or "kl") that are infinite unless
        their conditions hold (after that closed form was computed)."""
        return list(self._cache.get(f"{key} divergences", []))

    def _budgeted(self, key: str, compute, what: str):
        """``compute()`` under SYMBOLIC_BUDGET seconds of processor time, its result or its
        NoClosedForm cached under ``key``; past the budget it has no closed form."""
        if key not in self._cache:
            try:
                with time_budget(SYMBOLIC_BUDGET):
                    self._cache[key] = compute()
            except BudgetExceeded:
                self._cache[key] = NoClosedForm(f"{what} was not found within "
                                                f"{SYMBOLIC_BUDGET:g} s of processor time")
            except NoClosedForm as exc:
                self._cache[key] = exc
        result = self._cache[key]
        if isinstance(result, NoClosedForm):
            raise result
        return result

    def evidence(self) -> Evidence:
        """log p(X) by integrating latents out in turn; raises NoClosedForm when no kernel matches."""
        return self._budgeted("evidence", self._evidence, "the exact log evidence")

    def _evidence(self) -> Evidence:
        joint, _ = self._statistics()
        # a Dirichlet's components are integrated out together, over the simplex
        glob = [tuple(lat.symbols) if lat.prior.family.support == vectors.SIMPLEX else z
                for lat in self.latents if lat.per is None
                for z in (lat.symbols[:1] if lat.prior.family.support == vectors.SIMPLEX
                          else lat.symbols)]
        loc = [z for lat in self.latents if lat.per for z in lat.symbols]
        supports = {z: lat.prior.family.support for lat in self.latents for z in lat.symbols}
        for lat in self.latents:
            if lat.prior.family.support == fam.INTERVAL and \
                    tuple(a.xreplace(self.values) for a in lat.prior.args) == (0, 1):
                supports.update({z: fam.UNIT for z in lat.symbols})  # Uniform(0, 1) = Beta(1, 1)
        # the number of values of each finite latent (a Categorical's K)
        counts = {z: len(lat.prior.family.support_values(args))
                  for lat in self.latents if lat.prior.family.support == fam.FINITE
                  for z, args in zip(lat.symbols, lat.prior_args)
                  if lat.prior.family.support_values(args) is not None}
        first_reason = None
        result = None
        orders = itertools.permutations(glob) if len(glob) <= 4 else [tuple(glob)]
        for order in orders:
            try:
                result = eliminate(joint, loc + list(order), supports, frozenset(loc), counts)
                break
            except NoClosedForm as exc:
                first_reason = first_reason or exc.reason
        if result is None:
            raise NoClosedForm(first_reason or "no conjugate structure found")
        return result

    def log_evidence(self, data_symbols: bool = False) -> sp.Expr:
        """The exact log p(X) (conjugate or finite discrete latents); raises NoClosedForm otherwise."""
        return self._with_data(self.evidence().log_evidence, data_symbols)

    def kl_to_posterior(self, data_symbols: bool = False) -> sp.Expr:
        """KL(q || p(Z | X)) from the KL table and the exact posterior (not from log p(X) - ELBO)."""
        problem = self._support_problem()
        if problem:
            raise NoClosedForm(problem)
        ev = self.evidence()  # under its own budget, before this one

        def compute():
            sink: list = []
            qmap = self._q_map()
            blocks = self._blocks()
            # A joint q is compared with the posterior as a whole unless the posterior has
            # the same joint factor: KL(q || prod p_k) is not sum_k KL(q_k || p_k) when the
            # q_k are marginals of one law.
            matched = {p.symbol for p in ev.posterior if p.symbols}
            independent = all(not (post.parameter_symbols() & set(qmap))
                              for post in ev.posterior) and \
                all(blocks[z].symbols[0] in matched for z in blocks)
            parts = []
            if independent:
                for post in ev.posterior:
                    if post.symbols:
                        lat = blocks[post.symbol]
                        parts.append(lat.q.family.kl(lat.q_args[0], post.params))
                        continue
                    qf, qargs = qmap[post.symbol]
                    if post.log_masses is not None and qf.support_values(qargs) is not None:
                        # KL over a finite support: sum_k q_k (log q_k - log p_k).
                        qs = qf.probabilities(qargs)
                        parts.append(sp.Add(*[qk * (sp.log(qk) - lp)
                                              for qk, lp in zip(qs, post.log_masses)]))
                        continue
                    table = qf.kl(qargs, post.params) if qf is post.family else None
                    if table is not None:
                        parts.append(table)
                        continue
                    h = qf.entropy(qargs)
                    if h is None:
                        raise NoClosedForm(f"the entropy of {qf.name} has no closed form")
                    parts.append(-h - self.expect(post.family.logpdf(post.symbol, post.params),
                                                  sink))
            else:
                log_post = sp.Add(*[p.logpdf() for p in ev.posterior])
                parts.append(-self.entropy() - self.expect(sp.expand(log_post), sink))
            self._cache["kl divergences"] = [
                Divergence(d.what, d.conditions, -d.factor) for d in sink]
            return sp.Add(*parts)

        return self._with_data(self._budgeted("kl", compute, "the closed-form KL"),
                               data_symbols)

    def kl_is_from_table(self) -> bool:
        """Whether every factor of the KL came straight from the family KL table."""
        ev = self.evidence()
        qmap = self._q_map()
        blocks = self._blocks()
        return all((blocks[p.symbol].q.family if p.symbols else qmap[p.symbol][0]) is p.family
                   and (bool(p.symbols) or p.symbol not in blocks)
                   and not (p.parameter_symbols() & set(qmap)) for p in ev.posterior)

    # -- data and values ---------------------------------------------------
    @property
    def statistics(self) -> dict[sp.Symbol, sp.Expr]:
        """The sufficient statistics of the data, exactly (none when the log joint cannot be
        written: every closed form then says why it is missing)."""
        try:
            return dict(self._statistics()[1])
        except NoClosedForm:
            return {}

    def _with_data(self, expr: sp.Expr, data_symbols: bool) -> sp.Expr:
        if data_symbols:
            return expr
        return with_numbers(expr, self.statistics)

    def environment(self) -> dict[sp.Symbol, sp.Expr]:
        """Every number known: [values] and the data statistics."""
        env = dict(self.values)
        env.update(self.statistics)
        return env

    def value(self, expr: sp.Expr, digits: int = DIGITS):
        """mpmath value of ``expr`` at [values] and the data, or None when a symbol has no value."""
        env = self.environment()
        free = expr.free_symbols - set(env)
        if free:
            return None
        # cancellation between huge terms (loggamma(1e50) - ...) eats digits: raise the
        # precision until two successive evaluations agree
        previous = None
        for working in (digits, 2 * digits, 4 * digits, 8 * digits, 16 * digits):
            with mpmath.workdps(working):
                value = mp_value(expr, env)
            if previous is not None and _agree(previous, value, digits):
                with mpmath.workdps(digits):
                    return +value
            previous = value
        with mpmath.workdps(digits):
            return +previous

    def quadrature(self) -> dict:
        """log p(X), ELBO and KL by mpmath quadrature at the values (one continuous latent only).

        The fallback when no closed form exists; raises NoClosedForm when the
        model has more than one latent, a discrete latent or a symbol without a
        value. It raises QuadratureFailed (a NoClosedForm) when the quadrature
        ran and failed: it took longer than QUADRATURE_BUDGET seconds
        (``exp(exp(exp(z)))`` overflows every finite precision slowly), hit an
        arithmetic error, gave a result that is not finite, or integrated q to
        something other than 1 (q's mass lies where no node looks, as for
        Gamma(1e-300, 1)). A failed quadrature has no value, so it refutes nothing.
        """
        try:
            with time_budget(QUADRATURE_BUDGET):
                result = self._quadrature()
        except BudgetExceeded:
            raise QuadratureFailed(f"mpmath quadrature did not finish within "
                                   f"{QUADRATURE_BUDGET:g} s") from None
        except (ArithmeticError, ValueError) as exc:  # no mass found, an overflow at a node
            detail = f": {exc}" if str(exc) else ""
            raise QuadratureFailed(f"mpmath quadrature failed ({type(exc).__name__}{detail})") \
                from None
        with mpmath.workdps(30):
            broken = [k for k in ("log_evidence", "elbo", "kl")
                      if not mpmath.isfinite(result[k]) and k not in result["divergent"]]
            if broken:
                raise QuadratureFailed(
                    "mpmath quadrature failed: " + ", ".join(
                        f"the {_QUAD_NAMES[k]} came out {mpmath.nstr(result[k], 3)}"
                        for k in broken))
            if not abs(result["q_mass"] - 1) <= QUADRATURE_MASS_TOLERANCE:
                raise QuadratureFailed(f"mpmath quadrature failed: q integrates to "
                                       f"{mpmath.nstr(result['q_mass'], 6)}, not 1, so the "
                                       "nodes missed its mass")

        return result

    def _cubature(self) -> dict:
        """log p(X) with several latents (evidence.py): the exact steps the kernels allow, then
        adaptive cubature over at most 3 remaining global latents; the ELBO from its closed
        form and the KL as log p(X) - ELBO (one route only: the report says so)."""
        joint, _ = self._statistics()
        env = self.environment()
        glob = [z for lat in self.latents if lat.per is None for z in lat.symbols]
        loc = [z for lat in self.latents if lat.per for z in lat.symbols]
        supports = {z: lat.prior.family.support for lat in self.latents for z in lat.symbols}
        qmap = self._q_map()
        starts = []
        for lat in self.latents:
            if lat.prior.family.support == vectors.SIMPLEX:
                joint, coordinates = _stick_breaking(joint, lat.symbols)
                glob = [z for z in glob if z not in lat.symbols] + coordinates
                supports.update({t: fam.REAL for t in coordinates})
                # q's mean on the simplex, in the coordinates: u_k = E theta_k / (1 - sum_j<k)
                means = [qmap[z][0].expect(z, z, qmap[z][1]) for z in lat.symbols]
                left = sp.Integer(1)
                for t, mean in zip(coordinates, means):
                    u = with_numbers(mean / left, env)
                    starts.append((t, [sp.log(u / (1 - u))]))
                    left -= mean
        missing = joint.free_symbols - set(env) - set(glob) - set(loc)
        if missing:
            raise NoClosedForm("cubature needs values for " + ", ".join(sorted(map(str, missing))))
        if not glob:
            raise NoClosedForm("no global latent to integrate numerically")
        finite = {}
        for lat in self.latents:
            if lat.prior.family.support in (fam.BINARY, fam.FINITE):
                ks = lat.prior.family.support_values(lat.prior.args)
                if ks is None:
                    raise NoClosedForm(f"the values of {lat.name} are not known")
                finite.update({z: list(ks) for z in lat.symbols})
                if lat.per is None:
                    # a global finite latent is summed out as the assignments are (log sum_k
                    # exp), never handed to the cubature, which integrates continuous ones
                    glob = [z for z in glob if z not in lat.symbols]
                    loc = loc + [z for z in lat.symbols if z not in loc]
        log_joint, rest, conditions, steps = _cubature_parts(
            with_numbers(joint, env), glob, loc, supports, finite,
            frozenset(z for lat in self.latents if lat.per is None for z in lat.symbols))
        starts = [(u, e) for u, e in starts if u in rest]
        for z in glob:
            if z in rest and z in qmap:
                qf, qargs = qmap[z]
                starts.append((z, [with_numbers(qf.expect(z, z, qargs), env)]))
        start = [float(mp_value(e[0], {})) for _, e in sorted(starts, key=lambda p: rest.index(p[0]))]
        try:
            elbo = self.elbo(data_symbols=True)
        except NoClosedForm as exc:
            raise NoClosedForm(f"the ELBO has no closed form ({exc.reason}), so no value by "
                               "cubature is given") from None
        try:
            found = multi.cubature(log_joint, rest, supports, [start],
                                   conditions=[(with_numbers(c, env), what)
                                               for c, what in conditions])
        except multi.CubatureFailed as exc:
            raise QuadratureFailed(f"cubature failed: {exc.reason}") from None
        with mpmath.workdps(30):
            le = mpmath.mpf(found["log_evidence"])
            ev = self.value(elbo)
            if ev is None:
                raise NoClosedForm("the ELBO has symbols without values")
            return {"log_evidence": le, "elbo": +ev, "kl": le - ev, "q_mass": mpmath.mpf(1),
                    "error": mpmath.mpf(found["error"]), "divergent": {},
                    "tolerance": multi.REPORT_TOLERANCE, "method": "cubature",
                    "how": "; ".join(steps + [
                        f"adaptive Genz-Malik cubature over {', '.join(map(str, rest))} "
                        f"({found['evaluations']:,} points, {found['modes']} mode(s))"])}

    def _quadrature(self) -> dict:
        if len(self.latent_symbols) != 1 or self.has_local_latents() or \
                any(lat.shape is not None for lat in self.latents):
            return self._cubature()
        lat = self.latents[0]
        support = lat.prior.family.support
        if support not in (fam.REAL, fam.POSITIVE, fam.UNIT, fam.INTERVAL):
            raise NoClosedForm("numeric quadrature needs a continuous latent")
        problem = self._support_problem()
        if problem:
            raise NoClosedForm(problem)
        z = lat.symbols[0]
        joint, _ = self._statistics()
        env = self.environment()
        logq = lat.q.family.logpdf(z, lat.q.args)
        missing = (joint.free_symbols | logq.free_symbols) - set(env) - {z}
        if missing:
            raise NoClosedForm("quadrature needs values for "
                               + ", ".join(sorted(map(str, missing))))
        # The numbers put in once: a node then evaluates a few terms, not the model.
        joint_n = with_numbers(joint, env)
        logq_n = with_numbers(logq, env)
        # where q's mass is: its mean and variance, or a mode and a width (StudentT, InverseGamma)
        moments = [with_numbers(m, env) for m in lat.q.family.location_scale(lat.q.args)]
        lj, lq = _numeric_function(joint_n, z), _numeric_function(logq_n, z)
        with mpmath.workdps(30):

            ranges = {fam.REAL: (-mpmath.inf, mpmath.inf), fam.POSITIVE: (mpmath.mpf(0), mpmath.inf),
                      fam.UNIT: (mpmath.mpf(0), mpmath.mpf(1))}
            # a Uniform's support: its ends at the values
            ends = [tuple(mp_value(with_numbers(a, env), {}) for a in d.args)
                    if d.family.support == fam.INTERVAL else ranges[d.family.support]
                    for d in (lat.prior, lat.q)]
            (lo, hi), (qlo, qhi) = ends
            qm = mp_value(moments[0], {})
            qsd = mpmath.sqrt(max(mp_value(moments[1], {}), mpmath.mpf(10) ** -40))
            grid = [qm + k * qsd for k in (-8, -3, -1, 0, 1, 3, 8)]
            # Every mode of the joint density (a scan over many scales, each local maximum
            # refined), with its width, and every kink (where an |.| changes sign): the
            # breakpoints the integrals are split at. No derivative is taken: |theta| has
            # none at its kink.
            modes = _modes(lj, _scan(support, qm, qsd), lo, hi)
            for mode, left, right in modes:
                grid.append(mode)
                grid += [mode - k * left for k in (1, 3, 8, 30)]
                grid += [mode + k * right for k in (1, 3, 8, 30)]
            grid += _kinks((joint_n, logq_n), z)
            grid = [t for t in grid if mpmath.isfinite(t)]

            def points(a, b):
                return [a] + sorted({c for c in grid if a < c < b}) + [b]

            divergent: dict[str, str] = {}
            out: dict = {}
            # log evidence: the joint density scaled by its peak
            peak = max(lj(m) for m, _, _ in modes) if modes else lj(_argmax(lj, grid, lo, hi))
            # the tails begin beyond every mode and beyond q's mass
            reach = max([qsd] + [abs(m - qm) + max(a, b) for m, a, b in modes
                                 if mpmath.isfinite(a) and mpmath.isfinite(b)])
            low = min([qm, mpmath.mpf(1)] + [m for m, _, _ in modes if m > 0])
            tail = _divergent_tail(lambda t: lj(t), (lo, hi), qm, reach, z, low=low)
            if tail:
                divergent["log_evidence"] = f"the integral of p(X, {z}) over {z} diverges: {tail}"
                out["log_evidence"], e1, z_scaled = mpmath.inf, mpmath.mpf(0), mpmath.mpf(1)
            else:
                z_scaled, e1 = _integral(lambda t: _exp_or_zero(lj(t) - peak), points(lo, hi))
                if not z_scaled > 0:
                    raise ArithmeticError("the integral of the joint density came out 0")
                out["log_evidence"] = peak + mpmath.log(z_scaled)
                e1 = e1 / z_scaled
            log_ev = out["log_evidence"]

            def elbo_log(t):  # log |q (log p(X, t) - log q)| and its sign
                w = lq(t)
                if w == -mpmath.inf:
                    return -mpmath.inf, 0
                d = lj(t) - w
                return (w + mpmath.log(abs(d)), mpmath.sign(d)) if d else (-mpmath.inf, 0)

            tail = _divergent_tail(lambda t: elbo_log(t)[0], (qlo, qhi), qm, reach, z,
                                   sign=lambda t: elbo_log(t)[1], low=low)
            e2 = e3 = mpmath.mpf(0)
            if tail:
                where_, sign = tail
                divergent["elbo"] = (f"E_q[log p(X, {z}) - log q({z})] diverges: the integrand "
                                     f"{where_}")
                out["elbo"] = sign * mpmath.inf
                if mpmath.isfinite(log_ev) and sign < 0:
                    out["kl"] = mpmath.inf
                    divergent["kl"] = (f"KL = log p(X) - ELBO with the ELBO -infinity "
                                       f"({divergent['elbo']})")
                else:
                    out["kl"] = mpmath.nan
                    divergent["kl"] = "not defined: the ELBO and log p(X) are not both finite"
            else:
                # Where the integrand is e**-200 below its largest value at the breakpoints
                # its share is far below the working precision: skipping it avoids
                # 0 * log(0) from rounding in the far tails.
                top = max(elbo_log(t)[0] for t in grid if qlo < t < qhi)
                # and where q is e**-200 below its peak (a convergent tail, by the tail
                # analysis above), log p(X, t) may be -inf by rounding alone
                q_peak = max(lq(t) for t in grid if qlo < t < qhi)

                def elbo_integrand(t):
                    if lq(t) < q_peak - 200:
                        return mpmath.mpf(0)
                    la, sg = elbo_log(t)
                    return sg * mpmath.exp(la) if la > top - 200 else mpmath.mpf(0)

                out["elbo"], e2 = _integral(elbo_integrand, points(qlo, qhi))
                if mpmath.isfinite(log_ev):
                    def kl_log(t):  # log |q (log q - log p(X, t) + log p(X))| and its sign
                        w = lq(t)
                        if w == -mpmath.inf:
                            return -mpmath.inf, 0
                        d = w - lj(t) + log_ev
                        return (w + mpmath.log(abs(d)), mpmath.sign(d)) if d else (-mpmath.inf, 0)

                    kl_top = max(kl_log(t)[0] for t in grid if qlo < t < qhi)

                    def kl_integrand(t):
                        if lq(t) < q_peak - 200:
                            return mpmath.mpf(0)
                        la, sg = kl_log(t)
                        return sg * mpmath.exp(la) if la > kl_top - 200 else mpmath.mpf(0)

                    out["kl"], e3 = _integral(kl_integrand, points(qlo, qhi))
                else:
                    out["kl"] = mpmath.nan
                    divergent["kl"] = ("not defined: the posterior is improper "
                                       f"({divergent['log_evidence']})")
            # the same nodes on q alone: 1 when they found where q's mass is
            q_mass = mpmath.quad(lambda t: _exp_or_zero(lq(t)), points(qlo, qhi))
        return {**out, "q_mass": q_mass, "error": e1 + e2 + e3, "divergent": divergent}


#: log(sum_k exp(a_k)), kept unevaluated for the cubature (evidence.compile_log evaluates it).
LOGSUMEXP = sp.Function("logsumexp")


def _stick_breaking(joint: sp.Expr, zs: list) -> tuple[sp.Expr, list]:
    """The log joint in real coordinates t_0 .. t_{K-2} in place of a point z of the simplex:
    with u_k = 1/(1 + exp(-t_k)) in (0, 1), z_k = u_k prod_{j<k} (1 - u_j) and z_{K-1} =
    prod_j (1 - u_j), and the log of the Jacobian, sum_k (K - 2 - k) log(1 - u_k) +
    log u_k + log(1 - u_k), added. log u_k = -log(1 + exp(-t_k)) and log(1 - u_k) =
    -log(1 + exp(t_k)) are written so, as log-sum-exps: no 1 - u is ever rounded to 0 near
    an edge of the simplex, and the cubature integrates a density on the whole of R^(K-1)."""
    k = len(zs)
    ts = [sp.Symbol(f"t_{z}", real=True) for z in zs[:-1]]
    log_u = [-sp.log(1 + sp.exp(-t)) for t in ts]          # log u_k
    log_1mu = [-sp.log(1 + sp.exp(t)) for t in ts]         # log(1 - u_k)
    # log z_k = log u_k + sum_{j<k} log(1 - u_j): every factor is positive, so the log of
    # each component is replaced as a whole (no log of another expression is split)
    logs = {sp.log(z): (log_u[i] if i < k - 1 else 0) + sp.Add(*log_1mu[:min(i, k - 1)])
            for i, z in enumerate(zs)}
    point = {z: sp.exp(logs[sp.log(z)]) for z in zs}      # z_k itself, where not in a log
    jacobian = sp.Add(*[(k - 2 - i) * log_1mu[i] + log_u[i] + log_1mu[i] for i in range(k - 1)])
    return sp.expand(joint.xreplace(logs).xreplace(point)) + jacobian, ts


def _sum_out_locals(joint: sp.Expr, loc: list, values: dict, named: frozenset = frozenset()):
    """(log p(X, globals), conditions, steps) with every finite local latent summed out term
    by term: sum_i logsumexp_k (its own terms at z_i = k); the continuous ones integrated out.
    The ``named`` ones (global finite latents) are named in the steps."""
    finite = [z for z in loc if values.get(z) is not None]
    groups = _local_groups(joint, finite) if finite else None
    if finite and groups is None:
        raise NoClosedForm("a term of the log joint holds two per-observation latents")
    current, conditions, steps = joint, [], []
    if finite:
        rest, own = groups
        pieces = []
        for z in finite:
            logs = [sp.expand(own[z].xreplace({z: sp.Integer(k)})) for k in values[z]]
            if any(v.has(sp.zoo, sp.oo, -sp.oo, sp.nan) for v in logs):
                raise NoClosedForm(f"log p is infinite at a value of {z}")
            pieces.append(LOGSUMEXP(*logs))
        current = sp.Add(*rest, *pieces)
        shown = [str(z) for z in finite if z in named]
        steps.append("the per-observation assignments summed out exactly" if not shown else
                     f"{', '.join(shown)} summed out exactly" + (
                         " with the per-observation assignments" if len(shown) < len(finite)
                         else ""))
    return current, conditions, steps, [z for z in loc if z not in finite]


def _cubature_parts(joint: sp.Expr, glob: list, loc: list, supports: dict,
                    local_values: dict | None = None, named: frozenset = frozenset()):
    """(log p(X, G), G, the exact steps' conditions, what was done exactly): the local latents
    summed or integrated out, then as many globals as have a kernel given the others (most
    first), leaving at most evidence.MAX_DIMENSIONS globals G for the cubature."""
    reason = None
    current, conditions, done, loc = _sum_out_locals(joint, loc, local_values or {}, named)
    if loc:
        ev = eliminate(current, loc, supports, frozenset(loc))
        current, conditions = ev.log_evidence, conditions + list(ev.conditions)
        done.append("the per-observation latents integrated out exactly")
    for k in range(len(glob) - 1, -1, -1):
        for subset in itertools.permutations(glob, k):
            rest = [z for z in glob if z not in subset]
            if len(rest) > multi.MAX_DIMENSIONS:
                continue
            try:
                ev = eliminate(current, list(subset), supports) if subset else None
            except NoClosedForm as exc:
                reason = reason or exc.reason
                continue
            if ev is None:
                return _compact(current, rest), rest, conditions, done
            steps = done + [", ".join(map(str, subset)) + " integrated out exactly given "
                            + ", ".join(map(str, rest))]
            return (_compact(ev.log_evidence, rest), rest,
                    [(_compact(c, rest), what) for c, what in conditions + list(ev.conditions)],
                    steps)
    raise NoClosedForm(f"more than {multi.MAX_DIMENSIONS} latents remain after the exact "
                       f"steps ({reason})")


def _compact(expr: sp.Expr, latents: list) -> sp.Expr:
    """``expr`` with each rational function of the latents left (a log's argument, a
    term) as one cancelled fraction: integrating tau's children out leaves
    4/tau**2 - 4/(tau**4 + tau**2), which doubles evaluate as the difference of two numbers
    near 1e26 at tau = 1e-13 (0, or below it), where it is 4/(tau**2 + 1)."""
    def cancelled(e):
        return sp.cancel(e) if e.is_rational_function(*latents) else e

    try:
        with time_budget(2.0):
            if expr.is_rational_function(*latents):
                return sp.cancel(expr)
            out = expr.replace(lambda e: isinstance(e, sp.log),
                               lambda e: sp.log(cancelled(e.args[0])))
            return sp.Add(*[cancelled(t) if t.free_symbols & set(latents) else t
                            for t in sp.Add.make_args(out)])
    except BudgetExceeded:
        return expr


def quadrature_too_rough(result: dict) -> str | None:
    """Why a quadrature's values may not be reported as values (its error estimate is above
    QUADRATURE_ERROR_TOLERANCE relative to their size), or None. Such a quadrature may
    still serve as an inconclusive cross-check of closed forms."""
    with mpmath.workdps(30):
        scale = max([mpmath.mpf(1)] + [abs(result[k]) for k in ("log_evidence", "elbo", "kl")
                                       if mpmath.isfinite(result[k])])
        if result["error"] <= result.get("tolerance", QUADRATURE_ERROR_TOLERANCE) * scale:
            return None
        return (f"mpmath quadrature failed: its error estimate, "
                f"{mpmath.nstr(result['error'], 3)}, is too large for its values to be reported")


_QUAD_NAMES = {"log_evidence": "log evidence", "elbo": "ELBO", "kl": "KL"}


def _rename(expr: sp.Expr, mapping: dict) -> sp.Expr:
    """``expr.xreplace(mapping)`` for a mapping of symbols to symbols with the same assumptions
    (or of a polynomial variable to numbers), without evaluating functions again.

    A function such as log(1 - r) was evaluated when the template was built; with a
    symbol of the same assumptions in place of r its evaluation cannot change, and
    asking SymPy again (is 1 - r_i positive?) is what makes a thousand factors slow.
    Sums, products and powers are rebuilt as usual (their canonical order depends on
    the names).
    """
    memo: dict = {}

    def walk(e):
        if e in mapping:
            return mapping[e]
        if not e.args:
            return e
        if e in memo:
            return memo[e]
        args = tuple(walk(a) for a in e.args)
        if all(a is b for a, b in zip(args, e.args)):
            out = e
        elif isinstance(e, sp.Function) and not any(a.is_number for a in args):
            out = e.func(*args, evaluate=False)
        else:
            out = e.func(*args)
        memo[e] = out
        return out

    return walk(expr)


def _table_expect(family: fam.Family, part: sp.Expr, z: sp.Symbol, args,
                  conditional: bool = False) -> tuple[sp.Expr, list]:
    """(E_q[part], its conditions) from the family's closed-form table; NoClosedForm when
    it is not there (or has conditions and ``conditional`` is False)."""
    found = family.expect_where(part, z, args)
    shown = f"E_q[{part}] under q({z}) = {family.name}({', '.join(map(str, args))})"
    if found is None:
        raise NoClosedForm(f"{shown} is not in the closed-form table")
    if found[1] and not conditional:
        raise NoClosedForm(f"{shown} is finite only where "
                           + ", ".join(f"{w} = {c} > 0" for c, w in found[1]))
    return found


def _exp_or_zero(x):
    return mpmath.exp(x) if x > -400 else mpmath.mpf(0)


def _numeric_function(expr: sp.Expr, z: sp.Symbol):
    """t -> the mpmath value of ``expr`` (numbers put in, one free symbol ``z``) at z = t.

    The tree is walked once into closures, its z-free parts evaluated once per
    precision: a quadrature evaluates it at thousands of nodes. Nothing is compiled
    from text; a node of a kind mp_value does not know is left to it.
    """
    consts: dict = {}

    def build(e):
        if not e.has(z):
            def constant(t, e=e):
                key = (e, mpmath.mp.prec)
                if key not in consts:
                    consts[key] = mp_value(e, {})
                return consts[key]
            return constant
        if e == z:
            return lambda t: t
        args = [build(a) for a in e.args]
        if e.is_Add:
            return lambda t: mpmath.fsum(f(t) for f in args)
        if e.is_Mul:
            def product(t):
                out = mpmath.mpf(1)
                for f in args:
                    out *= f(t)
                return out
            return product
        if e.is_Pow:
            base, power = args
            if e.args[1].is_Integer:
                k = int(e.args[1])
                return lambda t: base(t) ** k
            return lambda t: mpmath.power(base(t), power(t))
        simple = {sp.log: mpmath.log, sp.exp: mpmath.exp, sp.loggamma: mpmath.loggamma,
                  sp.gamma: mpmath.gamma, sp.digamma: mpmath.digamma, sp.Abs: abs,
                  sp.sign: mpmath.sign}
        if e.func in simple and len(args) == 1:
            f, (g,) = simple[e.func], args
            return lambda t: f(g(t))
        return lambda t: mp_value(e, {z: t})

    walk = build(expr)
    # The evidence, the ELBO and the KL integrals (and their second, halved-interval runs)
    # evaluate the log joint at the same tanh-sinh nodes: each node is computed once.
    seen: dict = {}

    def value(t):
        check_deadline()
        key = (t, mpmath.mp.prec)
        if key not in seen:
            seen[key] = walk(t)
        return seen[key]

    return value


def _scan(support: str, qm, qsd) -> list:
    """Points at many scales where a search for the modes of a density on ``support`` looks:
    around q's mean (``qm``, std ``qsd``) and on a logarithmic grid from 1e-8 to 1e8."""
    near = [qm + qsd * mpmath.mpf(k) / 2 for k in range(-24, 25)]
    if support == fam.REAL:
        far = [s * mpmath.mpf(10) ** (mpmath.mpf(j) / 4) for j in range(-12, 33) for s in (1, -1)]
        pts = near + far + [mpmath.mpf(0)]
    elif support == fam.POSITIVE:
        pts = near + [mpmath.mpf(10) ** (mpmath.mpf(j) / 8) for j in range(-64, 65)]
    else:
        pts = near + [1 / (1 + mpmath.exp(-mpmath.mpf(u) / 2)) for u in range(-60, 61)]
    return sorted(set(pts))


#: At most this many modes are refined (a density that wiggles more is beyond a breakpoint list).
MAX_MODES = 12


def _modes(f, scan: list, lo, hi) -> list[tuple]:
    """(mode, width to the left, width to the right) for each local maximum of ``f`` on the
    scanned points inside (lo, hi), refined by golden-section search, that matters (its
    peak within e**230 of the largest); a width is where f has dropped by 1/2 from the
    mode."""
    pts = [t for t in scan if lo < t < hi]
    vals = [f(t) for t in pts]
    ok = [i for i, v in enumerate(vals) if mpmath.isfinite(v)]
    pts, vals = [pts[i] for i in ok], [vals[i] for i in ok]
    if not pts:
        return []
    found = []
    for i, v in enumerate(vals):
        left = vals[i - 1] if i > 0 else -mpmath.inf
        right = vals[i + 1] if i + 1 < len(vals) else -mpmath.inf
        if v > left and v >= right:
            a = pts[i - 1] if i > 0 else (pts[i] - (pts[1] - pts[0]) if lo == -mpmath.inf
                                          else (lo + pts[i]) / 2)
            b = pts[i + 1] if i + 1 < len(pts) else (pts[i] + (pts[i] - pts[i - 1])
                                                     if hi == mpmath.inf else (pts[i] + hi) / 2)
            found.append((v, a, b))
    # every local maximum of the scan is refined before it is judged: a narrow mode
    # between two scan points looks low on the scan (e**-1000 below) and is not
    found.sort(key=lambda item: -item[0])
    refined = []
    for _, a, b in found[:MAX_MODES]:
        mode = _golden_max(f, a, b)
        refined.append((f(mode), mode))
    top = max(v for v, _ in refined)
    return [(mode, _half_width(f, mode, peak, -1, lo, hi), _half_width(f, mode, peak, 1, lo, hi))
            for peak, mode in refined if peak >= top - 230]


def _golden_max(f, a, b, steps: int = 60):
    """The maximum of a unimodal f on [a, b] by golden-section search."""
    ratio = (mpmath.sqrt(5) - 1) / 2
    c, d = b - ratio * (b - a), a + ratio * (b - a)
    fc, fd = f(c), f(d)
    for _ in range(steps):
        if fc >= fd:
            b, d, fd = d, c, fc
            c = b - ratio * (b - a)
            fc = f(c)
        else:
            a, c, fc = c, d, fd
            d = a + ratio * (b - a)
            fd = f(d)
    return c if fc >= fd else d


def _half_width(f, mode, peak, direction: int, lo, hi):
    """How far from ``mode`` in ``direction`` f first lies 1/2 below ``peak`` (doubling, then
    bisection); half the distance to the boundary when it never does before it."""
    h = mpmath.mpf(10) ** -8 * max(1, abs(mode))
    inside = hi - mode if direction > 0 else mode - lo
    while h < inside and h < mpmath.mpf(10) ** 12:
        v = f(mode + direction * h)
        if not (v > peak - mpmath.mpf(1) / 2):
            break
        h *= 2
    else:
        return min(inside, mpmath.mpf(10) ** 12) / 2
    a, b = h / 2, h
    for _ in range(20):
        mid = (a + b) / 2
        if f(mode + direction * mid) > peak - mpmath.mpf(1) / 2:
            a = mid
        else:
            b = mid
    return b


def _kinks(exprs, z: sp.Symbol) -> list:
    """Where an |linear function of z| in ``exprs`` (numbers put in) changes sign."""
    out = []
    for expr in exprs:
        for node in expr.atoms(sp.Abs):
            arg = node.args[0]
            if arg.free_symbols != {z}:
                continue
            a, b = sp.expand(arg).coeff(z, 1), sp.expand(arg).coeff(z, 0)
            if a.is_number and b.is_number and a != 0 and sp.expand(arg - a * z - b) == 0:
                out.append(mp_value(-b / a, {}))
    return out


def _divergent_tail(logabs, ends, c, scale, z, sign=None, low=None):
    """How the integral of a function with log |f| = ``logabs`` over ``ends`` diverges at one
    of them, or None when it converges at both.

    Tail analysis: at points ever further out (distances 10**2 ... 10**16 times the scale
    towards an infinite end, 10**-4 ... 10**-32 towards a finite one) the integral
    converges when |distance * f| keeps falling (``scale`` and ``low`` put the points
    beyond every mode, towards infinity and towards 0), as a power of the distance with
    exponent below -1e-6 or faster; where it does not fall it diverges (the tail is
    at least like 1/distance). With ``sign`` the answer is (text, sign of f there).
    """
    with mpmath.workdps(90):
        for end in ends:
            if mpmath.isinf(end):
                towards = 1 if end > 0 else -1
                dist = [scale * mpmath.mpf(10) ** k for k in (2, 8, 32, 128, 512)]
                ts = [c + towards * d for d in dist]
                us = [mpmath.log(d) for d in dist]
                hs = [logabs(t) + u for t, u in zip(ts, us)]
            else:
                towards = 1 if end == ends[0] else -1
                base = (min(c, 1) if low is None else low) if end == 0 and ends[1] == mpmath.inf \
                    else mpmath.mpf(1)
                dist = [base * mpmath.mpf(10) ** -k for k in (4, 16, 64, 256, 1024)]
                if towards < 0:  # 1 - 1e-1024 needs the digits
                    mpmath.mp.dps = 1100
                ts = [end + towards * d for d in dist]
                us = [-mpmath.log(d) for d in dist]
                hs = [logabs(t) - u for t, u in zip(ts, us)]
            mpmath.mp.dps = 90
            if not all(mpmath.isfinite(h) for h in hs[-3:]):
                # -inf: the function vanishes there; +inf or nan: a rounding (1 - 1/(1 +
                # exp(-t)) is 0 at t = 1e16), so nothing is concluded from this end
                continue
            # diverges only when |distance * f| does not fall over both of the last two
            # stretches (10**32 to 10**512 times the scale): a mode beyond the scan, as for
            # data near 1e308, is not a divergence
            slope = (hs[-1] - hs[-2]) / (us[-1] - us[-2])
            before = (hs[-2] - hs[-3]) / (us[-2] - us[-3])
            if slope < -mpmath.mpf(10) ** -6 or before < -mpmath.mpf(10) ** -6:
                continue
            if mpmath.isinf(end):
                power = slope - 1
                shown = f"{z} -> {'+' if towards > 0 else '-'}infinity"
                like = (f"|integrand| grows faster than any power of {z}" if power > 10 else
                        f"|integrand| ~ |{z}|^{mpmath.nstr(power, 3)}")
            else:
                power = -slope - 1
                shown = f"{z} -> {mpmath.nstr(end, 3)}"
                like = f"|integrand| ~ |{z} - {mpmath.nstr(end, 3)}|^{mpmath.nstr(power, 3)}"
            text = f"is not integrable as {shown} ({like})"
            if sign is None:
                return text
            return text, sign(ts[-1])
    return None


def _integral(f, pts: list):
    """(integral of f over the breakpoints ``pts``, an error estimate that is honest).

    mpmath's own estimate compares two levels of one quadrature; the estimate here is
    the larger of it and the difference from a second quadrature on every interval
    halved, so a feature between the breakpoints that one rule misses shows.
    """
    first, err = mpmath.quad(f, pts, error=True)
    finer = [pts[0]]
    for a, b in zip(pts, pts[1:]):
        if mpmath.isfinite(a) and mpmath.isfinite(b):
            finer.append((a + b) / 2)
        elif mpmath.isfinite(a):
            finer.append(a + max(1, abs(a)))
        elif mpmath.isfinite(b):
            finer.append(b - max(1, abs(b)))
        finer.append(b)
    second = mpmath.quad(f, finer)
    return first, max(err, abs(first - second))


def _argmax(f, grid, lo, hi):
    best = None
    for t in grid:
        if lo < t < hi:
            v = f(t)
            if best is None or v > best[0]:
                best = (v, t)
    return best[1] if best else grid[len(grid) // 2]


def _locate_table(text, table):
    if text is None:
        return None, None
    for number, line in enumerate(source_lines(text), start=1):
        m = _HEADER.match(line)
        if m and m.group(1).strip().strip("\"'") == table:
            return number, 1
        k = _KEY.match(line)
        if k and k.group(1).strip("\"'") == table:
            return number, 1
    return None, None


def mp_value(expr, env):
    """mpmath value of a SymPy expression at exact numbers (Rationals are converted exactly).

    It checks the time budget first: a quadrature evaluates it at every node."""
    check_deadline()
    envm = {}
    for s, v in env.items():
        if isinstance(v, sp.Basic):
            envm[s] = fam.mp_eval(v, {})
        else:
            envm[s] = v
    return fam.mp_eval(expr, envm)


def _nonnegative_on(g: sp.Expr, x: sp.Symbol, support: str) -> bool:
    """Whether g(x) >= 0 on the support (for the assumptions of a statistic symbol)."""
    if isinstance(g, sp.Pow) and g.base == x and g.exp.is_Integer and g.exp % 2 == 0:
        return True
    if support in (fam.POSITIVE, fam.COUNTS, fam.UNIT) and (g == x or (
            isinstance(g, sp.Pow) and g.base == x and g.exp.is_Integer and g.exp > 0)):
        return True
    if support == fam.COUNTS and g == sp.loggamma(x + 1):
        return True
    return False


def _sum_over(g: sp.Expr, x: sp.Symbol, data: list, array=None) -> sp.Expr:
    """sum_i g(x_i), exactly for integer data and polynomial g, else a correctly rounded float sum.

    ``array`` (the same data as a numpy array) lets a large data set be summed in
    bulk: integer data value by distinct value (exactly the same sums), float
    data with the elementwise functions of numpy and one ``fsum``.
    """
    if array is not None:
        if len(array) > EXACT_SUM_LIMIT:
            fast = _sum_over_array(g, x, array)
            if fast is not None:
                return fast
        data = array.tolist()
    if all(isinstance(v, int) for v in data):
        if g == x:
            return sp.Integer(sum(data))
        if isinstance(g, sp.Pow) and g.base == x and g.exp.is_Integer and g.exp > 0:
            k = int(g.exp)
            return sp.Integer(sum(v ** k for v in data))
    if (len(data) <= EXACT_SUM_LIMIT and isinstance(g, sp.Pow | sp.Symbol)
            and (g == x or (g.base == x and g.exp.is_Integer and g.exp > 0))):
        # Small data: the exact sum of the decimals as written.
        k = 1 if g == x else int(g.exp)
        return sp.Rational(sum((Fraction(repr(v)) if isinstance(v, float) else Fraction(v)) ** k
                               for v in data))
    if g == x:
        vals = [float(v) for v in data]
    elif isinstance(g, sp.Pow) and g.base == x and g.exp.is_Integer:
        k = int(g.exp)
        vals = [float(v) ** k for v in data]
    elif g == sp.log(x):
        vals = [math.log(v) for v in data]
    elif g == sp.log(1 - x):
        vals = [math.log1p(-v) for v in data]
    elif g == sp.loggamma(x + 1):
        vals = [math.lgamma(v + 1) for v in data]
    elif g.free_symbols == {x}:
        with mpmath.workdps(20):
            vals = [float(fam.mp_eval(g, {x: mpmath.mpf(v)})) for v in data]
    else:
        raise NoClosedForm(f"cannot sum {g} over the data: it depends on "
                           + ", ".join(sorted(str(s) for s in g.free_symbols - {x})))
    return sp.Rational(Fraction(math.fsum(vals)))


def _per_value_sum(g: sp.Expr, x: sp.Symbol, data: list, array=None) -> sp.Expr:
    """sum_i g(x_i) written out, one term count * g(v) per distinct data value v (exact)."""
    counts: dict = {}
    for v in (array.tolist() if array is not None else data):
        check_deadline()
        v = _exact(v)
        counts[v] = counts.get(v, 0) + 1
    if len(counts) > tables.PER_ROW_LIMIT:
        # no statistic sums it, and as many terms as values would not be computed in time
        raise NoClosedForm(f"sum({g}) over the data has no sufficient statistic, and its "
                           f"{len(counts):,} distinct values are more than the "
                           f"{tables.PER_ROW_LIMIT:,} summed one by one")
    return sp.Add(*[c * g.xreplace({x: v}) for v, c in sorted(counts.items())])


def sum_over(g: sp.Expr, x: sp.Symbol, data, array=None) -> sp.Expr:
    """sum_i g(x_i) over a model's data, as the model's own statistics are summed (public form)."""
    return _sum_over(g, x, data, array)


def _sum_over_array(g: sp.Expr, x: sp.Symbol, arr) -> sp.Expr | None:
    """_sum_over for a large numpy array, or None to take the item-by-item route."""
    np = tables.numpy_module()
    if arr.dtype.kind in "iu":
        values, counts = zip(*_value_counts(np, arr)) if len(arr) else ((), ())
        k = 1 if g == x else (int(g.exp) if isinstance(g, sp.Pow) and g.base == x
                              and g.exp.is_Integer and g.exp > 0 else None)
        if k is not None:
            return sp.Integer(sum(c * v ** k for v, c in zip(values, counts)))
        if g.free_symbols != {x}:
            return None
        # Float items f(v): the exact sum of the items, rounded once, is what fsum gives.
        with mpmath.workdps(20):
            each = [_float_item(g, x, v) for v in values]
        total = sum(Fraction(f) * c for f, c in zip(each, counts))
        return sp.Rational(Fraction(float(total)))
    with np.errstate(all="ignore"):   # an overflow is reported below, once, as an error
        if g == x:
            vals = arr
        elif isinstance(g, sp.Pow) and g.base == x and g.exp == 2:
            vals = arr * arr
        elif g == sp.log(x):
            vals = np.log(arr)
        elif g == sp.log(1 - x):
            vals = np.log1p(-arr)
        else:
            return None
    # the exact sum rounded once: what math.fsum gives, without a Python loop
    try:
        total = exact_sum(np, vals)
    except ValueError:   # it checks the values are finite: one pass over them, not two
        raise OverflowError(f"{g} of a data value overflows a float") from None
    return sp.Rational(Fraction(float(total)))


def _value_counts(np, arr) -> list[tuple[int, int]]:
    """(value, count) for each distinct integer in ``arr``, in increasing order.

    Small non-negative integers (counts, categories) are tallied by ``bincount``
    without sorting; anything else by ``unique``.
    """
    if len(arr) and 0 <= int(arr.min()) and int(arr.max()) < 1 << 20:
        counts = np.bincount(arr)
        present = np.flatnonzero(counts)
        return list(zip(present.tolist(), counts[present].tolist()))
    values, counts = np.unique(arr, return_counts=True)
    return list(zip(values.tolist(), counts.tolist()))


def exact_sum(np, values) -> Fraction:
    """The exact sum of finite float64 values, by integer arithmetic on their mantissas.

    Each value is m * 2**e with an integer |m| < 2**53; m splits into parts
    below 2**27, whose sums per exponent are exact in float64 within a chunk
    (``bincount`` adds them without rounding) and in int64 across chunks.
    Chunks keep the temporaries small: fresh 8 MB arrays cost more in page
    faults than the arithmetic.
    """
    if not np.isfinite(values).all():
        raise ValueError("an exact sum of floats needs finite values")
    highs = np.zeros(_EXPONENT_SLOTS, dtype=np.int64)
    lows = np.zeros(_EXPONENT_SLOTS, dtype=np.int64)
    for start in range(0, len(values), _EXACT_CHUNK):
        mantissa, exponent = np.frexp(values[start:start + _EXACT_CHUNK])
        m = np.ldexp(mantissa, 53).astype(np.int64)        # exact: |m| < 2**53
        slot = exponent + (_EXPONENT_SLOTS - 1024 - 1)     # frexp exponents lie in [-1073, 1024]
        highs += np.bincount(slot, weights=m >> 26, minlength=_EXPONENT_SLOTS).astype(np.int64)
        lows += np.bincount(slot, weights=m & ((1 << 26) - 1),
                            minlength=_EXPONENT_SLOTS).astype(np.int64)
    total = 0
    lowest = None
    for k in np.flatnonzero(highs | lows).tolist():
        # slot k holds values m * 2**(k - _EXPONENT_SLOTS + 1025 - 53)
        power = k - _EXPONENT_SLOTS + 1025 - 53
        lowest = power if lowest is None else lowest
        total += ((int(highs[k]) << 26) + int(lows[k])) << (power - lowest)
    return Fraction(0) if lowest is None else Fraction(total) * Fraction(2) ** lowest


#: Values per chunk (small enough to stay in cache; far below the 2**26 that keeps
#: bincount exact).
_EXACT_CHUNK = 1 << 16
#: One bincount slot per binary exponent that frexp can return.
_EXPONENT_SLOTS = 2100


def _float_item(g: sp.Expr, x: sp.Symbol, v: int) -> float:
    """g(v) as _sum_over computes one item."""
    if isinstance(g, sp.Pow) and g.base == x and g.exp.is_Integer:
        return float(v) ** int(g.exp)
    if g == sp.log(x):
        return math.log(v)
    if g == sp.log(1 - x):
        return math.log1p(-v)
    if g == sp.loggamma(x + 1):
        return math.lgamma(v + 1)
    return float(fam.mp_eval(g, {x: mpmath.mpf(v)}))


# --- integrating latents out -------------------------------------------------

def _features(expr: sp.Expr, z: sp.Symbol):
    """Split an expanded expression into (z-free rest, {z-part: coefficient})."""
    rest, coefs = [], {}
    for term in sp.Add.make_args(expr):
        zp, other = [], []
        for factor in sp.Mul.make_args(term):
            (zp if factor.has(z) else other).append(factor)
        if not zp:
            rest.append(term)
        else:
            part = sp.Mul(*zp)
            coefs[part] = coefs.get(part, 0) + sp.Mul(*other)
    return sp.Add(*rest), coefs


def _positive_condition(expr: sp.Expr, what: str, conditions: list):
    """Record that expr > 0 is needed; fail when it is provably false."""
    sign = expr.is_positive
    if sign is False:
        raise NoClosedForm(f"{what} = {expr} is not positive: the integral diverges")
    if sign is None:
        conditions.append((expr, what))


def _log_split(expr: sp.Expr) -> sp.Expr:
    """log(expr), expanded into a sum of logs where SymPy knows the factors are positive."""
    return sp.expand(sp.log(sp.factor_terms(expr)))


def eliminate(joint: sp.Expr, order: list, supports: dict, local: frozenset = frozenset(),
              counts: dict | None = None) -> Evidence:
    """Integrate (or sum) each latent out of exp(joint) in the given order.

    ``local`` latents (one per observation, first in ``order``) each touch only
    their own terms: when every term holds at most one of them, each is
    integrated out of its own terms alone, so the cost is linear in their number.
    """
    current = joint
    posterior: list[Posterior] = []
    conditions: list = []
    remaining = {z for unit in order for z in (unit if isinstance(unit, tuple) else (unit,))}
    local_order = [z for z in order if z in local]
    groups = _local_groups(joint, local_order)
    if groups is not None:
        rest, own = groups
        log_ints = []
        for z in local_order:
            remaining.discard(z)
            leftover, log_int, found = _integrate_out(own[z], z, supports[z], remaining, conditions,
                                                      (counts or {}).get(z))
            posterior.append(found)
            # each piece is expanded on its own (expanding their sum would walk all of them
            # again), and only when a latent still to be integrated out is in it
            log_ints += [leftover, sp.expand(log_int) if log_int.free_symbols & remaining
                         else log_int]
        current = sp.Add(*rest, *log_ints)
        order = [z for z in order if z not in local]
    for z in order:
        if isinstance(z, tuple):
            remaining.difference_update(z)
            rest, log_int, found = _integrate_simplex(current, z, remaining, conditions)
            posterior.append(found)
            current = sp.expand(rest + log_int)
            continue
        remaining.discard(z)
        rest, log_int, found = _integrate_out(current, z, supports[z], remaining, conditions,
                                              (counts or {}).get(z))
        posterior.append(found)
        current = sp.expand(rest + log_int)
    return Evidence(current, posterior, conditions)


def _local_groups(joint: sp.Expr, local: list):
    """(terms with no local latent, {z: the terms holding z}), or None when a term holds two."""
    if not local:
        return None
    own: dict = {z: [] for z in local}
    rest = []
    wanted = set(local)
    for term in sp.Add.make_args(joint):
        hit = term.free_symbols & wanted
        if not hit:
            rest.append(term)
        elif len(hit) == 1:
            own[hit.pop()].append(term)
        else:
            return None
    return rest, {z: sp.Add(*terms) for z, terms in own.items()}


def _integrate_simplex(current: sp.Expr, zs: tuple, remaining: set, conditions: list):
    """(the rest, log of the integral of exp(the part in zs) over the simplex, the Dirichlet
    posterior): the part must be sum_k c_k log z_k with every c_k free of the latents."""
    coefs = []
    rest = current
    if len(zs) == 2:
        # on the simplex of two components 1 - z_0 is z_1: a Bernoulli(theta[0]) likelihood
        # is a Dirichlet kernel too
        rest = sp.expand(rest.xreplace({sp.log(1 - zs[0]): sp.log(zs[1]),
                                        sp.log(1 - zs[1]): sp.log(zs[0])}))
    for z in zs:
        rest, found = _features(rest, z)
        extra = [p for p in found if p != sp.log(z)]
        if extra:
            raise NoClosedForm(f"the log joint contains {extra[0]} in {z}: not a Dirichlet "
                               "kernel, so p(X) has no closed form")
        c = found.get(sp.log(z), sp.Integer(0))
        if c.free_symbols & (set(zs) | remaining):
            raise NoClosedForm(f"the coefficient of log {z} depends on other latents")
        coefs.append(c)
    log_int, conc = vectors.simplex_kernel(coefs)
    for z, a in zip(zs, conc):
        _positive_condition(a, f"the posterior concentration of {z}", conditions)
    return rest, log_int, Posterior(zs[0], vectors.FAMILIES["Dirichlet"], (conc,), symbols=zs)


def _integrate_out(current: sp.Expr, z: sp.Symbol, support: str, remaining: set, conditions: list,
                   count: int | None = None):
    """(the z-free rest of ``current``, log of the integral of exp(the z-part) over z, z's posterior).

    ``count`` is the number of values 0 .. K-1 of a finite latent."""
    rest, coefs = _features(current, z)
    for c in coefs.values():
        if c.free_symbols & {z}:
            raise NoClosedForm(f"cannot separate {z}")
    if support == fam.INTERVAL:
        raise NoClosedForm(f"the prior of {z} is a Uniform other than Uniform(0, 1): its "
                           "posterior is a kernel cut to an interval, so p(X) has no closed form")
    allowed = {
        fam.REAL: {z, z ** 2},
        fam.POSITIVE: {z, sp.log(z)},
        fam.UNIT: {sp.log(z), sp.log(1 - z)},
    }.get(support)
    # exp(c log z + d / z) on the positive reals: an InverseGamma kernel
    inverse = support == fam.POSITIVE and 1 / z in coefs and set(coefs) <= {1 / z, sp.log(z)}
    if allowed is not None and not inverse:
        extra = [p for p in coefs if p not in allowed]
        if extra:
            raise NoClosedForm(
                f"the log joint contains {extra[0]} in {z}: not a "
                + {fam.REAL: "Gaussian", fam.POSITIVE: "Gamma",
                   fam.UNIT: "Beta"}[support] + " kernel, so p(X) has no closed form")
    if support == fam.REAL:
        a = coefs.get(z ** 2, sp.Integer(0))
        b = coefs.get(z, sp.Integer(0))
        neg_a = sp.factor_terms(-a)
        _positive_condition(neg_a, f"the precision term of {z}", conditions)
        den = 4 * neg_a  # kept factored so a latent factor in it cancels term by term
        log_int = (sp.Add(*[t / den for t in sp.Add.make_args(sp.expand(b ** 2))])
                   + _log_split(sp.pi / neg_a) / 2)
        params = (sp.factor_terms(b / (2 * neg_a)), 1 / sp.sqrt(2 * neg_a))
        found = Posterior(z, fam.FAMILIES["Normal"], params)
    elif inverse:
        # z^(-a - 1) exp(-b / z) integrates to Gamma(a) / b^a: the posterior is InverseGamma(a, b)
        shape = sp.expand(-coefs.get(sp.log(z), 0) - 1)
        scale = sp.expand(-coefs[1 / z])
        _positive_condition(shape, f"the posterior shape of {z}", conditions)
        _positive_condition(scale, f"the posterior scale of {z}", conditions)
        log_int = sp.expand(sp.loggamma(shape) - shape * _log_split(scale))
        found = Posterior(z, fam.FAMILIES["InverseGamma"], (shape, scale))
    elif support == fam.POSITIVE:
        shape = sp.expand(coefs.get(sp.log(z), 0) + 1)
        rate = sp.expand(-coefs.get(z, 0))
        _positive_condition(shape, f"the posterior shape of {z}", conditions)
        _positive_condition(rate, f"the posterior rate of {z}", conditions)
        log_int = sp.expand(sp.loggamma(shape) - shape * _log_split(rate))
        found = Posterior(z, fam.FAMILIES["Gamma"], (shape, rate))
    elif support == fam.UNIT:
        a = sp.expand(coefs.get(sp.log(z), 0) + 1)
        b = sp.expand(coefs.get(sp.log(1 - z), 0) + 1)
        _positive_condition(a, f"the posterior a of {z}", conditions)
        _positive_condition(b, f"the posterior b of {z}", conditions)
        log_int = sp.loggamma(a) + sp.loggamma(b) - sp.loggamma(a + b)
        found = Posterior(z, fam.FAMILIES["Beta"], (a, b))
    elif support in (fam.BINARY, fam.FINITE):
        f = sp.Add(*[c * p for p, c in coefs.items()])
        if support == fam.BINARY:
            values = [0, 1]
        elif count is not None and count <= MAX_SUMMED_VALUES:
            values = list(range(count))
        elif count is not None:
            raise NoClosedForm(f"{z} has {count} values: a finite latent with more than "
                               f"{MAX_SUMMED_VALUES} is not summed out symbolically")
        else:
            raise NoClosedForm(f"the values of the finite latent {z} are not known")
        logs = [sp.expand(fam.value_at(f, z, k)) for k in values]  # a Piecewise read by branch
        for v in logs:
            if v.has(sp.zoo, sp.oo, -sp.oo, sp.nan):
                raise NoClosedForm(f"log p is infinite at a value of {z}")
        if any(v.free_symbols & remaining for v in logs):
            raise NoClosedForm(f"summing {z} out leaves log(sum exp) of other latents")
        norm = sp.Add(*[sp.exp(v) for v in logs])
        log_int = sp.log(norm)
        if support == fam.BINARY:
            found = Posterior(z, fam.FAMILIES["Bernoulli"], (sp.exp(logs[1]) / norm,),
                              tuple(v - log_int for v in logs))
        else:
            found = Posterior(z, fam.FAMILIES["Categorical"],
                              tuple(sp.exp(v) / norm for v in logs),
                              tuple(v - log_int for v in logs))
    else:
        raise NoClosedForm(f"{z} has a countably infinite support: no finite sum")
    return rest, log_int, found

