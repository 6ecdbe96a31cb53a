"""pytest plugin: every chain of a ``.calc`` derivation file is one test.

Registered through the ``pytest11`` entry point, so it is active wherever
symelbo is installed. It must cost nothing in projects that never check a
derivation: this module imports only pytest and the standard library, and
SymPy and the rest of symelbo are imported the first time a ``.calc`` file is
actually collected.

Map of this module:

- :func:`pytest_addoption`   ``--symelbo-calc``, ``--symelbo-budget``,
  ``--symelbo-strict`` and their ini twins ``symelbo_collect_calc``,
  ``symelbo_budget``, ``symelbo_strict``.
- :func:`pytest_collect_file` a ``.calc`` file named on the command line is
  always collected; ``.calc`` files found under the test paths only when the
  user opts in.
- :class:`CalcFile`          parses the file; a syntax error is one
  collection error located at ``file:line:column``, without a traceback.
- :class:`TexFile`           a ``.tex``, ``.md`` or ``.ipynb`` source, collected under
  ``--symelbo-tex`` (ini ``symelbo_collect_tex``) or when named: its display-math
  chains as :class:`CalcChain` items, each step it could not read a failing
  :class:`TexUnread` at its line and column.
- :class:`CalcChain`         one chain, named ``chain@lineN`` after the line
  of its first expression; it fails when a step is not ``proved`` or
  ``tested`` (only ``proved`` under ``--symelbo-strict``).
- :class:`CalcFailureRepr`   the failure report: the chain with its bad
  steps marked, their verdicts and reasons, and a counterexample section per
  refuted step.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from symelbo.core.verdicts import passing

CALC_SUFFIX = ".calc"
#: Sources whose display math is collected under ``--symelbo-tex``.
TEX_SUFFIXES = (".tex", ".md", ".ipynb")
DEFAULT_BUDGET = 5.0


# ---------------------------------------------------------------------------
# options
# ---------------------------------------------------------------------------

def _budget(text: str) -> float:
    """A positive, finite number of seconds (argparse type and ini parser)."""
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"the symelbo budget must be a number of seconds, not {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"the symelbo budget must be a positive number of seconds, not {text!r}")
    return value


def _budget_option(text: str) -> float:
    import argparse
    try:
        return _budget(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("symelbo", "symelbo: check .calc derivation files")
    group.addoption(
        "--symelbo-calc", action="store_true", default=None, dest="symelbo_calc",
        help="collect .calc derivation files found under the test paths "
             "(a .calc file named on the command line is always collected).")
    group.addoption(
        "--symelbo-budget", type=_budget_option, default=None, dest="symelbo_budget",
        metavar="SECONDS",
        help=f"time budget per derivation step; past it the step is 'unknown' "
             f"(default: ini symelbo_budget, else {DEFAULT_BUDGET:g}).")
    group.addoption(
        "--symelbo-strict", action="store_true", default=None, dest="symelbo_strict",
        help="require every step to be 'proved': a step that was only 'tested' fails.")
    parser.addini("symelbo_collect_calc", type="bool", default=False,
                  help="collect .calc derivation files found under the test paths.")
    group.addoption(
        "--symelbo-tex", action="store_true", default=None, dest="symelbo_tex",
        help="collect the display-math chains of .tex, .md and .ipynb files found under the "
             "test paths (one named on the command line is always collected).")
    parser.addini("symelbo_collect_tex", type="bool", default=False,
                  help="collect the display-math chains of .tex, .md and .ipynb files.")
    parser.addini("symelbo_budget", type="string", default=str(DEFAULT_BUDGET),
                  help="time budget in seconds per derivation step.")
    parser.addini("symelbo_strict", type="bool", default=False,
                  help="require every derivation step to be 'proved'.")


class _Settings:
    """The effective options: the command line wins over the ini file."""

    def __init__(self, config: pytest.Config):
        self.collect = bool(_first(config.getoption("symelbo_calc"),
                                   config.getini("symelbo_collect_calc")))
        self.tex = bool(_first(config.getoption("symelbo_tex"), config.getini("symelbo_collect_tex")))
        self.strict = bool(_first(config.getoption("symelbo_strict"),
                                  config.getini("symelbo_strict")))
        budget = config.getoption("symelbo_budget")
        if budget is None:
            try:
                budget = _budget(str(config.getini("symelbo_budget")).strip())
            except ValueError as error:
                raise pytest.UsageError(f"ini option symelbo_budget: {error}") from None
        self.budget = budget

    @property
    def passing(self) -> frozenset:
        return passing(self.strict)


def _first(*values):
    return next(v for v in values if v is not None)


_SETTINGS = pytest.StashKey[_Settings]()


def pytest_configure(config: pytest.Config) -> None:
    config.stash[_SETTINGS] = _Settings(config)


def _settings(config: pytest.Config) -> _Settings:
    if _SETTINGS not in config.stash:  # configured before this plugin was registered
        config.stash[_SETTINGS] = _Settings(config)
    return config.stash[_SETTINGS]


def pytest_report_header(config: pytest.Config) -> str | None:
    settings = _settings(config)
    if not (settings.collect or settings.strict or config.getoption("symelbo_budget") is not None):
        return None
    return (f"symelbo: collect .calc files={'on' if settings.collect else 'off'}, "
            f"budget={settings.budget:g} s per step, strict={'on' if settings.strict else 'off'}")


# ---------------------------------------------------------------------------
# collection
# ---------------------------------------------------------------------------

def pytest_collect_file(file_path: Path, parent: pytest.Collector):
    if file_path.suffix in TEX_SUFFIXES:
        wanted = parent.session.isinitpath(file_path) or _settings(parent.config).tex
        return TexFile.from_parent(parent, path=file_path) if wanted else None
    if file_path.suffix != CALC_SUFFIX:
        return None
    if parent.session.isinitpath(file_path) or _settings(parent.config).collect:
        return CalcFile.from_parent(parent, path=file_path)
    return None


class CalcFile(pytest.File):
    """A ``.calc`` derivation file; each chain becomes a :class:`CalcChain`."""

    def collect(self):
        from symelbo.core.errors import InputError
        from symelbo.io.parser import parse_file
        try:
            derivation = parse_file(self.path)
        except InputError as error:
            # A collection error shows this one line, never a traceback.
            located = InputError(error.message, self._display_path(), error.line, error.column)
            raise self.CollectError(str(located)) from None
        self.derivation = derivation
        self._universe = None
        for chain in derivation.chains:
            yield CalcChain.from_parent(self, name=f"chain@line{chain.line}", chain=chain)

    def _display_path(self) -> str:
        try:
            return str(self.path.relative_to(self.config.rootpath))
        except ValueError:
            return str(self.path)

    def universe(self):
        """The densities and variables of the whole file: one meaning for ``p`` across chains."""
        if self._universe is None:
            from symelbo.core.checker import file_universe
            self._universe = file_universe(self.derivation)
        return self._universe


class TexFile(CalcFile):
    """A LaTeX, Markdown or notebook source: each readable run of a display-math chain is a
    :class:`CalcChain`, each step that could not be read a failing :class:`TexUnread`."""

    def collect(self):
        from symelbo.core.errors import InputError
        from symelbo.io.tex_reader import read_tex, unread_steps
        from symelbo.io.tex_source import kind_of
        try:
            reading = read_tex(str(self.path), kind_of(str(self.path)))
        except InputError as error:
            located = InputError(error.message, self._display_path(), error.line, error.column)
            raise self.CollectError(str(located)) from None
        self.derivation = reading.derivation
        self._universe = None
        names: set = set()

        def fresh(name):
            count, unique = 1, name
            while unique in names:
                count, unique = count + 1, f"{name}.{count}"
            names.add(unique)
            return unique

        for chain in reading.derivation.chains:
            yield CalcChain.from_parent(self, name=fresh(f"chain@line{chain.line}"), chain=chain)
        for line, column, message in unread_steps(reading):
            yield TexUnread.from_parent(self, name=fresh(f"unread@line{line}"), line=line,
                                        column=column, message=message)


class TexUnread(pytest.Item):
    """A step of a TeX source that could not be read: it fails with where and why."""

    def __init__(self, *, line, column, message, **kwargs):
        super().__init__(**kwargs)
        self.line, self.column, self.message = line, column, message

    def runtest(self) -> None:
        raise CalcChainError(self.line, self.message)

    def repr_failure(self, excinfo, style=None):
        text = f"{self.parent._display_path()}:{self.line}:{self.column}: not read: {self.message}"
        return CalcFailureRepr([("E", text)], [], _Crash(str(self.path), self.line, self.message))

    def reportinfo(self):
        return self.path, max(self.line - 1, 0), self.name


class CalcChainFailure(Exception):
    """A chain with steps below the required verdict (raised by :meth:`CalcChain.runtest`)."""

    def __init__(self, chain_result, failures):
        super().__init__(f"{len(failures)} step(s) not verified")
        self.chain_result = chain_result
        self.failures = failures


class CalcChainError(Exception):
    """A chain that could not be checked at all (memory, depth): it fails, readably."""

    def __init__(self, line: int, reason: str):
        super().__init__(reason)
        self.line = line
        self.reason = reason


#: Errors of size rather than of logic: an expression too deep for Python's stack,
#: a number too large for memory. They fail one item, never the session.
_RESOURCE_ERRORS = (RecursionError, MemoryError, OverflowError)


def _resource_message(error: BaseException) -> str:
    """A sentence for an error of :data:`_RESOURCE_ERRORS`."""
    if isinstance(error, RecursionError):
        return "the expression is nested too deeply"
    return "a number is too large to compute with"


class CalcChain(pytest.Item):
    """One chain ``e0 R1 e1 R2 ...`` of a derivation file, checked step by step."""

    def __init__(self, *, chain, **kwargs):
        super().__init__(**kwargs)
        self.chain = chain

    def runtest(self) -> None:
        from symelbo.core.checker import CheckOptions, check_chain
        settings = _settings(self.config)
        try:
            result = check_chain(self.chain, CheckOptions(budget=settings.budget), self.parent.universe())
        except _RESOURCE_ERRORS as error:
            # the checker confines these to a step; one that escapes still fails
            # this chain alone, with a sentence rather than mpmath's traceback
            raise CalcChainError(self.chain.line, _resource_message(error)) from None
        self.chain_result = result
        failures = [s for s in result.steps if s.verdict not in settings.passing]
        if failures:
            raise CalcChainFailure(result, failures)

    def repr_failure(self, excinfo, style=None):
        # an exception raised here is pytest's INTERNALERROR: it ends the whole
        # session, so every failure of this item is reported in a form that cannot fail
        error = excinfo.value
        if isinstance(error, CalcChainFailure):
            try:
                from .testing import chain_failure_report
                lines, sections, crash = chain_failure_report(
                    error.chain_result, error.failures,
                    path=self.parent._display_path(), strict=_settings(self.config).strict)
                return CalcFailureRepr(lines, sections, _Crash(str(self.path), crash[0], crash[1]))
            except _RESOURCE_ERRORS as failure:
                return self._plain_report(error, _resource_message(failure))
        if isinstance(error, CalcChainError):
            text = f"chain at {self.parent._display_path()}:{error.line}: not checked: {error.reason}"
            return CalcFailureRepr([("E", text)], [], _Crash(str(self.path), error.line, error.reason))
        try:
            return super().repr_failure(excinfo, style)
        except _RESOURCE_ERRORS as failure:
            reason = f"{type(error).__name__}, and its report failed: {_resource_message(failure)}"
            return CalcFailureRepr([("E", reason)], [], _Crash(str(self.path), self.chain.line, reason))

    def _plain_report(self, failure: "CalcChainFailure", why: str) -> "CalcFailureRepr":
        """The failed steps by line and verdict only, for a chain whose expressions
        cannot be printed (``why``)."""
        path = self.parent._display_path()
        lines = [("", f"chain at {path}:{self.chain.line} (its expressions cannot be shown: {why})"),
                 ("", "")]
        for step in failure.failures:
            lines.append((">", f"line {step.step.line}: {step.step.relation} ..."))
            lines.append(("E", f"{step.verdict}: {step.message}" if step.message else step.verdict))
        first = failure.failures[0]
        return CalcFailureRepr(lines, [], _Crash(str(self.path), first.step.line,
                                                  f"line {first.step.line}: {first.verdict}"))

    def reportinfo(self):
        return self.path, max(self.chain.line - 1, 0), self.name


class _Crash:
    """Where and why the chain failed: the one-line summary ``pytest -ra`` prints."""

    def __init__(self, path: str, lineno: int, message: str):
        self.path = path
        self.lineno = lineno
        self.message = message

    def __str__(self) -> str:
        return f"{self.path}:{self.lineno}: {self.message}"


class CalcFailureRepr:
    """The failure of a chain: marked lines (like pytest's ``>`` and ``E``) and sections.

    ``lines`` are ``(marker, text)`` pairs; ``sections`` are ``(title, text)``
    pairs printed under their own separator, as pytest prints captured output.
    """

    def __init__(self, lines, sections, reprcrash: _Crash):
        self.lines = lines
        self.sections = sections
        self.reprcrash = reprcrash

    def toterminal(self, tw) -> None:
        for marker, text in self.lines:
            if marker == "E":
                tw.line(f"E   {text}", red=True, bold=True)
            elif marker == ">":
                tw.line(f">   {text}", bold=True)
            else:
                tw.line(f"    {text}" if text else "")
        for title, text in self.sections:
            tw.sep("-", title)
            tw.line(text)

    def __str__(self) -> str:
        out = [f"{marker or ' ':<4}{text}".rstrip() for marker, text in self.lines]
        for title, text in self.sections:
            out.append(f"--- {title} ---")
            out.append(text)
        return "\n".join(out)
