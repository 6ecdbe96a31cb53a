"""Data as a table of named columns, and the sufficient statistics of a likelihood over them.

A likelihood may use columns of its data as covariates
(``y = { dist = "Normal(w0 + w1*x, s)", data_file = "data.csv" }``, with
``x`` and ``y`` columns of the file). This module holds:

* reading a table: a CSV file with a header line of column names
  (:func:`csv_table`), a ``.npy`` structured array or a 2-d array with
  ``columns = [...]`` (:func:`npy_table`), an inline TOML table
  ``data = { x = [...], y = [...] }`` (:func:`inline_table`);
* :func:`summed_likelihood`: sum_i log p(y_i | x_i, params) written with one
  statistic symbol per data monomial (``n``, ``sum(x)``, ``sum(x**2)``,
  ``sum(x*y)``...), so a million rows cost what ten do. A term where a
  column and a latent meet inside a function (``exp(b1*x)``,
  ``log(1 + exp(-w*x))``) has no such statistic: it is summed row by row
  up to PER_ROW_LIMIT rows, and beyond that the model has no closed form.

Nothing here opens a file: the model reads the bytes (read_user_bytes, inside
its data root) and hands them over; errors are InputError at the data entry or
at the file's line and column.
"""

from __future__ import annotations

import io
import math
import re
from dataclasses import dataclass
from fractions import Fraction

import mpmath
import sympy as sp

from symelbo.core.errors import InputError
from symelbo.models import families as fam
from symelbo.models.model_expr import Where, decimal_problem, magnitude_problem
from symelbo.io.userfiles import excerpt, source_lines

#: A term that mixes a column with a latent inside a function is summed row by row
#: (one symbolic term per row) up to this many rows; beyond, it has no closed form.
PER_ROW_LIMIT = 2000
#: The header of a .npy table may be at most this long (numpy's own default).
NPY_HEADER_LIMIT = 10000

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*", re.ASCII)
_NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?", re.ASCII)


class NoStatistic(Exception):
    """A likelihood term has no sufficient statistic over the columns; ``reason`` says why."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass
class Table:
    """Columns of equal length: name -> float64 numpy array (int64 when every item is an integer)."""

    columns: dict
    rows: int

    def names(self) -> list[str]:
        return list(self.columns)


def numpy_module():
    """numpy, imported on first use: a model without data tables or cubature never pays
    for it at start-up (`symelbo check` does not import it at all)."""
    import numpy
    return numpy


def _finished(columns: dict, where: Where) -> Table:
    np = numpy_module()
    out = {}
    for name, values in columns.items():
        arr = np.asarray(values, dtype=np.float64)
        if len(arr) and (np.floor(arr) == arr).all() and np.abs(arr).max() < 2 ** 53:
            arr = arr.astype(np.int64)
        out[name] = arr
    rows = {len(a) for a in out.values()}
    if len(rows) > 1:
        raise where.error("the columns of the data table have different lengths ("
                          + ", ".join(f"{k}: {len(a)}" for k, a in out.items()) + ")")
    n = rows.pop() if rows else 0
    if n == 0:
        raise where.error("no data")
    return Table(out, n)


def csv_has_header(text: str) -> bool:
    """Whether a data file's first line (comments and blank lines skipped) names columns."""
    for line in source_lines(text):
        item = line.split("#", 1)[0].strip()
        if item:
            return "," in item.rstrip(",") or _NUMBER.fullmatch(item) is None
    return False


def csv_table(text: str, shown: str, where: Where) -> Table:
    """A CSV table: a header line of column names, then one row of numbers per line."""
    lines = source_lines(text)
    header = None
    rows: list[float] = []
    lines_of: list[int] = []     # the file line of each row
    row_pattern = None
    for number, line in enumerate(lines, start=1):
        body = line.split("#", 1)[0]
        if not body.strip():
            continue
        fields = body.split(",")
        if header is None:
            header = []
            offset = 1
            for f in fields:
                name = f.strip()
                column = offset + len(f) - len(f.lstrip())
                # a data file's content is never echoed: the place says which name
                if _NAME.fullmatch(name) is None:
                    raise InputError(f"{where.entry}: the header of a data table names each "
                                     f"column with an identifier (letters, digits, _); column "
                                     f"{len(header) + 1} is not one", shown, number, column)
                if name in header:
                    raise InputError(f"{where.entry}: column {len(header) + 1} has the name of "
                                     f"column {header.index(name) + 1}", shown, number, column)
                header.append(name)
                offset += len(f) + 1
            number_ = r"\s*[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?\s*"
            row_pattern = re.compile(number_ + ("," + number_) * (len(header) - 1), re.ASCII)
            continue
        if len(fields) != len(header):
            raise InputError(f"{where.entry}: {len(fields)} values in a row of a table of "
                             f"{len(header)} columns", shown, number, 1)
        if row_pattern.fullmatch(body) is None:
            offset = 1
            for f in fields:
                if _NUMBER.fullmatch(f.strip()) is None:
                    raise InputError(f"{where.entry}: not a number (each row of a data table "
                                     "holds one decimal number per column)", shown, number,
                                     offset + len(f) - len(f.lstrip()))
                offset += len(f) + 1
        rows.extend(map(float, fields))
        lines_of.append(number)
    if header is None:
        raise where.error("no data")
    np = numpy_module()
    matrix = np.array(rows, dtype=np.float64).reshape(len(lines_of), len(header))
    # a decimal beyond the range of a double: inf, or below the smallest normal and not 0
    with np.errstate(all="ignore"):
        size = np.abs(matrix)
        bad = ~np.isfinite(matrix) | ((size < np.finfo(np.float64).smallest_normal)
                                      & (matrix != 0))
    if bad.any():
        i, j = (int(k) for k in np.argwhere(bad)[0])
        number = lines_of[i]
        fields = lines[number - 1].split("#", 1)[0].split(",")
        item = fields[j].strip()
        column = sum(len(f) + 1 for f in fields[:j]) + 1 + len(fields[j]) - len(fields[j].lstrip())
        problem = decimal_problem(item) or f"{excerpt(item)} is outside the range of a double"
        raise InputError(f"{where.entry}: the data value is out of range: "
                         + problem.replace(excerpt(item), "the value", 1), shown, number, column)
    return _finished({name: matrix[:, j] for j, name in enumerate(header)}, where)


def inline_table(raw: dict, where: Where) -> Table:
    """``data = { x = [...], y = [...] }``: each column a list of finite numbers."""
    columns = {}
    for name, values in raw.items():
        if _NAME.fullmatch(name) is None:
            raise where.error(f"column name {excerpt(name)!r} is not an identifier")
        if not isinstance(values, list):
            raise where.error(f"column {name!r} must be a list of numbers")
        for v in values:
            if isinstance(v, bool) or not isinstance(v, (int, float)) \
                    or (isinstance(v, float) and not math.isfinite(v)):
                raise where.error(f"each value of column {name!r} must be a finite number, "
                                  f"got {excerpt(repr(v))}")
            problem = magnitude_problem(v)
            if problem:
                raise where.error(f"a value of column {name!r} is out of range: {problem}")
        columns[name] = values
    if not columns:
        raise where.error("no data")
    return _finished(columns, where)


def npy_header(data: bytes, refuse) -> tuple:
    """``(shape, fortran_order, dtype, start)`` of a ``.npy`` file's bytes, read without unpickling.

    The header's length is checked before numpy's reader (a literal, not code)
    parses it; an array of Python objects is refused. ``refuse(message)`` makes
    the one-line error; numpy's own messages are never shown.
    """
    from numpy.lib import format as npy_format
    prefix = npy_format.MAGIC_PREFIX
    if not data.startswith(prefix) or len(data) < len(prefix) + 4:
        raise refuse("not a .npy array file (it does not start with the .npy magic string)")
    major = data[len(prefix)]
    if major not in (1, 2, 3):
        raise refuse(f"unsupported .npy format version {major}")
    size_bytes = 2 if major == 1 else 4
    header_length = int.from_bytes(data[8:8 + size_bytes], "little")
    if header_length > NPY_HEADER_LIMIT:
        raise refuse(f"the .npy header is {header_length:,} bytes, over the limit of "
                     f"{NPY_HEADER_LIMIT:,} bytes")
    stream = io.BytesIO(data)
    try:
        npy_format.read_magic(stream)
        read_header = (npy_format.read_array_header_1_0 if major == 1
                       else npy_format.read_array_header_2_0)
        shape, fortran, dtype = read_header(stream, max_header_size=NPY_HEADER_LIMIT)
    except Exception:  # numpy raises several types for a malformed header
        raise refuse("malformed .npy header") from None
    if dtype.hasobject:
        raise refuse("the array holds Python objects; only arrays of numbers are read")
    return shape, fortran, dtype, stream.tell()


def npy_array(data: bytes, shape, dtype, start: int, refuse):
    """The array a checked header describes, once the data is exactly as long as its
    shape says (nothing is built from a header that lies)."""
    count = math.prod(shape)
    if len(data) - start != count * dtype.itemsize:
        raise refuse(f"the array data is {len(data) - start:,} bytes, but its header's shape "
                     f"needs {count * dtype.itemsize:,}")
    return numpy_module().frombuffer(data, dtype=dtype, count=count, offset=start)


def npy_table(data: bytes, shown: str, where: Where, names: list | None) -> Table | None:
    """A ``.npy`` table: a structured array (its field names) or a 2-d array whose columns
    ``names`` lists. None for a plain 1-d array without ``names`` (one value per observation).
    Never unpickles; the header's length and the data's size are checked before use."""
    np = numpy_module()

    def refuse(message):
        return InputError(f"{where.entry}: {message}", shown)

    shape, fortran, dtype, start = npy_header(data, refuse)
    if dtype.names is None and names is None and len([k for k in shape if k != 1]) <= 1:
        return None
    arr = npy_array(data, shape, dtype, start, refuse)
    columns = {}
    if dtype.names is not None:
        if names is not None:
            raise where.error("columns = [...] names the columns of a 2-d array; a structured "
                              "array names its own")
        if len(shape) != 1:
            raise refuse("a structured array of data must be 1-d")
        for index, name in enumerate(dtype.names, start=1):
            field = dtype.fields[name][0]
            if field.kind not in "iuf" or field.subdtype is not None or field.itemsize > 8:
                # the field's name is the data file's content: its place says which
                raise refuse(f"field {index} holds {field}, not numbers")
            columns[name] = arr[name].astype(np.float64)
    else:
        if dtype.kind not in "iuf" or dtype.itemsize > 8:
            raise refuse(f"the array holds {dtype}, not numbers")
        if len(shape) != 2:
            raise refuse("an array of several columns must be 2-d (rows x columns)")
        if names is None:
            raise where.error("a 2-d data array needs columns = [\"x\", \"y\", ...] naming its "
                              "columns")
        matrix = arr.reshape(shape, order="F" if fortran else "C").astype(np.float64)
        if len(names) != shape[1]:
            raise where.error(f"columns names {len(names)} columns but the array has "
                              f"{shape[1]}")
        columns = {name: matrix[:, j] for j, name in enumerate(names)}
    for index, (name, col) in enumerate(columns.items(), start=1):
        if _NAME.fullmatch(name) is None:   # a structured array's field: not echoed
            raise refuse(f"the name of column {index} is not an identifier (letters, digits, _)")
        if not np.isfinite(col).all():
            row = int(np.flatnonzero(~np.isfinite(col))[0])
            raise refuse(f"item {row + 1} of column {index} is not a finite number")
    return _finished(columns, where)


def column_names(raw, where: Where) -> list | None:
    """The ``columns = [...]`` of an observed entry (None when absent), checked."""
    if raw is None:
        return None
    if not isinstance(raw, list) or not raw or not all(isinstance(c, str) for c in raw):
        raise where.error("columns must be a list of column names")
    for c in raw:
        if _NAME.fullmatch(c) is None:
            raise where.error(f"column name {excerpt(c)!r} is not an identifier")
    if len(set(raw)) != len(raw):
        raise where.error("a column is named twice")
    return raw


def check_column(symbol: sp.Symbol, arr, name: str, where: Where) -> None:
    """A covariate's values satisfy what its symbol assumes (positive where used as a rate...)."""
    if symbol.is_positive and not (arr > 0).all():
        index = int(numpy_module().flatnonzero(~(arr > 0))[0])
        raise where.error(f"column {name!r} is used where a positive number is needed, but "
                          f"row {index + 1} holds {arr[index].item()!r}")


# --- sufficient statistics -----------------------------------------------------

def summed_likelihood(logpdf: sp.Expr, data: dict, n: int, stats: dict, count_name: str,
                      exact_limit: int, exact_sum) -> sp.Expr:
    """sum_i logpdf(row i) for an expanded ``logpdf`` in the data symbols ``data``
    ({symbol: numpy array}), with one statistic symbol per data part of a term.

    Each term is ``coefficient * g(data)`` with g a product of data factors:
    it becomes ``coefficient * sum(g)``, sum(g) exact (Fractions of the decimals)
    up to ``exact_limit`` rows, else the correctly rounded float sum
    (``exact_sum`` of numpy's elementwise values). A factor mixing data and
    other symbols is summed row by row (NoStatistic past PER_ROW_LIMIT rows).
    """
    dsyms = set(data)
    grouped: dict[sp.Expr, list] = {}
    mixed = []
    for term in sp.Add.make_args(logpdf):
        gpart, rest = [], []
        for factor in sp.Mul.make_args(term):
            free = factor.free_symbols
            if free & dsyms and free - dsyms:
                mixed.append(term)
                break
            (gpart if free & dsyms else rest).append(factor)
        else:
            grouped.setdefault(sp.Mul(*gpart), []).append(sp.Mul(*rest))
    out = []
    for g in sorted(grouped, key=sp.default_sort_key):
        coef = sp.Add(*grouped[g])
        if g == 1:
            stat = sp.Symbol(count_name, integer=True, positive=True)
            stats[stat] = sp.Integer(n)
        else:
            nonneg = {"nonnegative": True} if g.is_nonnegative else {}
            stat = sp.Symbol(f"sum({g})", real=True, **nonneg)
            stats[stat] = _sum(g, data, n, exact_limit, exact_sum)
        out.append(coef * stat)
    if mixed:
        if n > PER_ROW_LIMIT:
            term = mixed[0]
            inner = next(f for f in sp.Mul.make_args(term)
                         if f.free_symbols & dsyms and f.free_symbols - dsyms)
            raise NoStatistic(
                f"the likelihood term {term} mixes the data ({', '.join(sorted(map(str, inner.free_symbols & dsyms)))}) "
                f"with {', '.join(sorted(map(str, inner.free_symbols - dsyms)))} inside {inner}: "
                f"it has no sufficient statistic, and {n:,} rows are more than the "
                f"{PER_ROW_LIMIT:,} summed one by one")
        body = sp.Add(*mixed)
        order = sorted(dsyms, key=str)
        columns = [data[s].tolist() for s in order]
        for row in zip(*columns):
            out.append(sp.expand(body.xreplace({s: _exact(v) for s, v in zip(order, row)})))
    return sp.Add(*out)


def _exact(v) -> sp.Rational:
    if isinstance(v, int):
        return sp.Integer(v)
    return sp.Rational(Fraction(repr(float(v))))


def _monomial(g: sp.Expr, dsyms: set) -> dict | None:
    """{symbol: power} when g is a product of positive integer powers of data symbols."""
    powers: dict = {}
    for f in sp.Mul.make_args(g):
        if isinstance(f, sp.Symbol) and f in dsyms:
            powers[f] = powers.get(f, 0) + 1
        elif isinstance(f, sp.Pow) and f.base in dsyms and f.exp.is_Integer and f.exp > 0:
            powers[f.base] = powers.get(f.base, 0) + int(f.exp)
        else:
            return None
    return powers


def _sum(g: sp.Expr, data: dict, n: int, exact_limit: int, exact_sum) -> sp.Expr:
    """sum over rows of g(row): exact for a monomial of few rows, else a correctly rounded float."""
    np = numpy_module()
    powers = _monomial(g, set(data))
    if powers is not None:
        if all(data[s].dtype.kind in "iu" for s in powers) or n <= exact_limit:
            cols = [[v if isinstance(v, int) else Fraction(repr(v)) for v in data[s].tolist()]
                    for s in powers]
            ks = list(powers.values())
            total = sum(math.prod(c ** k for c, k in zip(row, ks)) for row in zip(*cols))
            return sp.Rational(Fraction(total))
        vals = np.ones(n)
        for s, k in powers.items():
            col = data[s].astype(np.float64)
            for _ in range(k):
                vals = vals * col
    else:
        vals = np.ones(n)
        with np.errstate(all="ignore"):
            for f in sp.Mul.make_args(g):
                vals = vals * _elementwise(f, data, n)
    try:
        total = exact_sum(np, vals)
    except ValueError:
        raise NoStatistic(f"sum({g}) over the data overflows a float") from None
    return sp.Rational(Fraction(float(total)))


def _elementwise(f: sp.Expr, data: dict, n: int):
    """A data factor's values on every row as floats (numpy where it has the function)."""
    np = numpy_module()
    if f in data:
        return data[f].astype(np.float64)
    if isinstance(f, sp.Pow) and f.base in data and f.exp.is_Integer:
        return data[f.base].astype(np.float64) ** int(f.exp)
    if isinstance(f, sp.log) and f.args[0] in data:
        return np.log(data[f.args[0]].astype(np.float64))
    if isinstance(f, sp.loggamma) and f.args[0] - 1 in data:
        arg = data[f.args[0] - 1].astype(np.float64) + 1
        try:
            from scipy.special import gammaln
        except ImportError:  # scipy is optional: one item at a time
            return np.array([math.lgamma(v) for v in arg.tolist()])
        return gammaln(arg)
    if n > PER_ROW_LIMIT * 50:
        raise NoStatistic(f"{f} is not summed over {n:,} rows (no elementwise form for it)")
    order = sorted(f.free_symbols, key=str)
    with mpmath.workdps(20):
        return np.array([float(fam.mp_eval(f, {s: mpmath.mpf(data[s][i].item()) for s in order}))
                         for i in range(n)])
