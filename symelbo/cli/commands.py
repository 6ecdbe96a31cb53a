"""The command line: a thin layer over the parser, the generator, the checker and the renderers.

Exit status: 0 when every step is proved or tested, 1 when something is
refuted, misjustified or unknown, 2 for bad input (one line naming
``file:line:column``, never a traceback).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import warnings
from contextlib import contextmanager
from pathlib import Path

from symelbo.core.errors import InputError, SymelboError
from symelbo.io.output import emit, format_of
from symelbo.io.userfiles import MAX_DATA_BYTES

__all__ = ["main", "Terminated", "MAX_MESSAGE_CHARS"]

FORMATS = ("text", "latex", "markdown", "json")
_RECURSION_LIMIT = 8000


def _budget(text: str) -> float:
    """A time budget: a positive, finite number of seconds (argparse reports anything else)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not (0 < value <= 86400):
        raise argparse.ArgumentTypeError(f"the budget must be more than 0 and at most 86400 seconds, "
                                         f"got {text}")
    return value


#: The data cap without --max-data-mb, in megabytes (the reader's default).
DEFAULT_DATA_MB = MAX_DATA_BYTES // (1024 * 1024)
#: The largest data cap --max-data-mb may set, in megabytes.
MAX_DATA_MB = 1024


def _input_name(args) -> str:
    """The file a command was reading, for a message about it."""
    return getattr(args, "file", None) or getattr(args, "certificates", None) or "<input>"


def _megabytes(text: str) -> float:
    """A data cap: a positive, finite number of megabytes (argparse reports anything else)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of megabytes: {text!r}") from None
    if not (0 < value <= MAX_DATA_MB):
        # past what a process can hold: a larger cap would let a file exhaust the memory
        raise argparse.ArgumentTypeError(f"the cap must be more than 0 and at most {MAX_DATA_MB} MB, "
                                         f"got {text}")
    return value


def _data_options(p) -> None:
    """Where a model's data files may live and how large they may be."""
    p.add_argument("--data-root", metavar="DIR",
                   help="read the model's data files from inside DIR (default: only from the "
                        "model file's folder)")
    p.add_argument("--max-data-mb", type=_megabytes, default=DEFAULT_DATA_MB, metavar="N",
                   help=f"refuse a data file larger than N megabytes (default: {DEFAULT_DATA_MB}, "
                        f"at most {MAX_DATA_MB})")


def _source_options(p) -> None:
    """How ``check`` reads its file: .calc, or the display math of a TeX or Markdown source."""
    p.add_argument("--from", dest="source_format", choices=("tex", "markdown", "calc"), default=None,
                   help="read FILE as LaTeX, Markdown (also .ipynb) or .calc "
                        "(default: by its suffix: .tex, .md, .ipynb, else .calc)")
    p.add_argument("--to-calc", action="store_true",
                   help="print the .calc translation of a LaTeX or Markdown file and stop")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="symelbo",
        description="Symbolic derivation and verification engine for variational inference.")
    parser.add_argument("--version", action="version", version=f"symelbo {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    sub.add_parser("list", help="list the built-in derivations and rules")

    def output_options(p):
        p.add_argument("--format", choices=FORMATS, default=None,
                       help="output format (default: text; latex with --fragment or --pdf)")
        p.add_argument("--json", action="store_true", help="same as --format json")
        p.add_argument("--fragment", action="store_true",
                       help="LaTeX: only the align* block, for \\input into a paper")
        p.add_argument("-o", "--output", metavar="OUT", help="write to OUT instead of standard output")
        p.add_argument("--pdf", action="store_true", help="compile the LaTeX with pdflatex into OUT")
        p.add_argument("--budget", type=_budget, default=5.0, metavar="SECONDS",
                       help="time budget per step, a positive number of seconds (default: 5)")
        p.set_defaults(usage=p)  # a contradiction among these options is reported with p's usage

    derive = sub.add_parser("derive", help="generate a built-in derivation and check it")
    derive.add_argument("name", metavar="NAME", help="kl-shuffle, jensen or gradient")
    derive.add_argument("--model", metavar="FILE.toml", help="instantiate the derivation on a model")
    _data_options(derive)
    output_options(derive)

    check = sub.add_parser("check", help="check a derivation file")
    check.add_argument("file", metavar="FILE.calc", help="a derivation file, or - for standard input")
    output_options(check)
    _source_options(check)
    for command in (check, derive):
        command.add_argument("--certificates", metavar="OUT.json",
                             help="also write the proof certificate of every proved step to OUT.json")
        command.add_argument("--strict", action="store_true",
                             help="every step must be proved: a tested step fails (exit 1), "
                                  "as --symelbo-strict does in the pytest plugin")

    again = sub.add_parser("replay", help="re-check proof certificates with the kernel alone")
    again.add_argument("certificates", metavar="CERTIFICATES.json")
    again.add_argument("file", metavar="FILE.calc", nargs="?",
                       help="the derivation (default: the source the certificate file names)")

    model = sub.add_parser("model", help="ELBO, log evidence and KL of a model file, checked")
    model.add_argument("file", metavar="FILE.toml")
    model.add_argument("--json", action="store_true", help="print JSON (same as --format json)")
    model.add_argument("--format", choices=FORMATS, default=None,
                       help="output format (default: text; latex with --pdf)")
    model.add_argument("-o", "--output", metavar="OUT", help="write to OUT instead of standard output")
    model.add_argument("--pdf", action="store_true", help="compile the LaTeX with pdflatex into OUT")
    model.set_defaults(usage=model, fragment=False)
    _data_options(model)

    plot = sub.add_parser("plot", help="plot log evidence, ELBO and KL against a variational parameter")
    plot.add_argument("file", metavar="FILE.toml")
    plot.add_argument("--vary", required=True, metavar="PARAM")
    plot.add_argument("-o", "--output", metavar="OUT",
                      help="a .png, .pdf or .svg file (default: FILE-PARAM.png)")
    plot.add_argument("--range", nargs=2, metavar=("LO", "HI"), action=_PlotRange, default=None,
                      help="draw PARAM from LO to HI (default: around the ELBO's optimum, "
                           "where the KL is within a few times its minimum)")
    _data_options(plot)

    cavi = sub.add_parser("cavi", help="optimal mean-field factors of a model file: updates "
                                       "derived, checked and run to the fixed point")
    cavi.add_argument("file", metavar="FILE.toml")
    cavi.add_argument("--format", choices=("text", "latex", "markdown", "json"), default=None,
                      help="output format (default: text; latex with --pdf)")
    cavi.add_argument("--json", action="store_true", help="same as --format json")
    cavi.add_argument("-o", "--output", metavar="OUT", help="write to OUT instead of standard output")
    cavi.add_argument("--pdf", action="store_true", help="compile the LaTeX with pdflatex into OUT")
    cavi.add_argument("--iterations", type=int, default=200, metavar="N",
                      help="at most N sweeps over the factors (default: 200)")
    cavi.add_argument("--tol", type=float, default=1e-10, metavar="T",
                      help="stop when no parameter moves by more than T, relatively (default: 1e-10)")
    cavi.add_argument("--plot", metavar="OUT.png",
                      help="also draw the ELBO trace into a .png, .pdf or .svg file (matplotlib)")
    _data_options(cavi)
    return parser


def main(argv=None) -> int:
    """Run the command line; return the exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    _settle_format(parser, args)
    # printing and checking walk expressions recursively; files may nest deeply
    sys.setrecursionlimit(max(sys.getrecursionlimit(), _RECURSION_LIMIT))
    try:
        with _termination_raises(), warnings.catch_warnings():
            warnings.showwarning = _show_warning
            status = COMMANDS[args.command](args)
        if getattr(args, "output", None) and args.command in _ANNOUNCED:
            _say(f"wrote {args.output}")
        return status
    except RecursionError:
        _say(f"{_input_name(args)}: the input is nested too deeply to process")
        return 2
    except MemoryError:
        _say(f"{_input_name(args)}: the input needs more memory than this machine gives")
        return 2
    except SymelboError as error:  # bad input, or a missing tool such as pdflatex
        _say(str(error))
        return 2
    except KeyboardInterrupt:
        _say("interrupted")
        return 130
    except Terminated as stop:
        _say(f"terminated by {stop.name}")
        return 128 + stop.signum
    except Exception as error:  # an internal fault: one line, never a traceback for users
        if os.environ.get("SYMELBO_DEBUG"):
            raise
        _say(f"internal error ({type(error).__name__}: {error}); set SYMELBO_DEBUG=1 to see where")
        return 3


#: Commands whose -o file is announced on standard error (plot names its own file).
_ANNOUNCED = ("check", "derive", "model")


def _version() -> str:
    from symelbo import __version__
    return __version__


def _settle_format(parser: argparse.ArgumentParser, args) -> None:
    """Fill in the output format the options imply; options that contradict are a usage error.

    ``--fragment`` and ``--pdf`` are LaTeX, so alone they choose it; with
    another ``--format`` they mean nothing and exit 2 with the usage.
    """
    if not hasattr(args, "usage"):
        return
    latex_only = [flag for flag, given in (("--fragment", args.fragment), ("--pdf", args.pdf)) if given]
    if latex_only and (args.format not in (None, "latex") or args.json):
        args.usage.error(f"{latex_only[0]} makes LaTeX; it cannot be combined with "
                     f"--format {args.format or 'json'}")
    if args.format is None:
        args.format = "latex" if latex_only else "text"


def _text_width(args) -> int:
    """The terminal's width when the text goes to one; else a fixed 100, so files and pipes
    get the same bytes wherever they are made."""
    from symelbo.io.report import TEXT_WIDTH
    if args.output is None and sys.stdout.isatty():
        import shutil
        return shutil.get_terminal_size((TEXT_WIDTH, 24)).columns
    return TEXT_WIDTH


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """A warning about the user's input as one ``symelbo: file:line:column: warning: ...`` line."""
    _say(str(message))


#: The longest error line printed, in characters: a message echoing a huge
#: token or data line is cut, so that one bad input cannot flood a terminal or a log.
MAX_MESSAGE_CHARS = 300


def _say(message: str) -> None:
    """Print ``symelbo: message`` to standard error as one safe line.

    The message may quote user input: control characters (an escape
    sequence, a carriage return, a bidi override) are shown escaped, never
    sent to the terminal, and the line is cut to :data:`MAX_MESSAGE_CHARS`.
    """
    from symelbo.io.report import terminal_line
    try:
        sys.stderr.write(f"symelbo: {terminal_line(message, MAX_MESSAGE_CHARS)}\n")
        sys.stderr.flush()
    except (OSError, ValueError, AttributeError):  # standard error closed or full: nowhere left
        pass


class Terminated(BaseException):
    """A termination signal (SIGTERM, SIGHUP) arrived.

    Raised in the main thread like KeyboardInterrupt for SIGINT, and like it
    not an ``Exception``, so that every ``with`` and ``finally`` on the way
    out runs: pdflatex's process group is killed and its temporary folder
    removed.
    """

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum
        self.name = signal.Signals(signum).name


_TERMINATION_SIGNALS = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGHUP")
                             if hasattr(signal, name))


@contextmanager
def _termination_raises():
    """Within the block, a termination signal raises :class:`Terminated`."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers can only be set from the main thread
        return

    def handler(signum, frame):
        for number in _TERMINATION_SIGNALS:  # a second signal must not interrupt the clean-up
            signal.signal(number, signal.SIG_IGN)
        raise Terminated(signum)

    previous = {number: signal.signal(number, handler) for number in _TERMINATION_SIGNALS}
    try:
        yield
    finally:
        for number, action in previous.items():
            signal.signal(number, action)


# ---------------------------------------------------------------------------
# commands
# ---------------------------------------------------------------------------

def _list(args) -> int:
    from symelbo.core.generate import BUILTIN
    from symelbo.core.rules import RULES
    from symelbo.io.report import plain_law
    lines = ["Built-in derivations (symelbo derive NAME):"]
    width = max(len(n) for n in BUILTIN)
    for name, builtin in BUILTIN.items():
        lines.append(f"  {name:<{width}}  {builtin.title}: {builtin.summary}")
    lines.append("")
    lines.append("Rules (by NAME in a .calc file): the law, then its side conditions")
    width = max(len(n) for n in RULES)
    for name, rule in RULES.items():
        lines.append(f"  {name:<{width}}  {plain_law(rule.law)}")
        lines.append(f"  {'':<{width}}  side conditions: {rule.conditions}")
    emit("\n".join(lines) + "\n", None)
    return 0


def _derive(args) -> int:
    from symelbo.core.checker import CheckOptions, check_derivation
    from symelbo.core.generate import BUILTIN, generate
    if args.name not in BUILTIN:
        raise InputError(f"unknown derivation '{args.name}'; choose one of {', '.join(BUILTIN)}",
                         "<command line>")
    derivation = generate(args.name)
    if args.model and derivation.hypotheses:
        # its Z1, Z2 and its factors q1, q2 name no model's latents: every line would be unknown
        raise InputError(f"'{args.name}' is a derivation under assumptions and definitions "
                         "(a mean-field family); it is not instantiated on a model: use symelbo cavi "
                         "for a model's mean-field updates", "<command line>")
    if args.model:
        from symelbo.models.instantiate import instantiate_report
        with _model_arithmetic(args.model, args):
            return instantiate_report(derivation, args.name, args.model, args, _text_width(args))
    result = check_derivation(derivation, CheckOptions(budget=args.budget))
    _write_certificates(result, args, f"builtin:{args.name}")
    return _show(result, args, name=args.name)


def _check(args) -> int:
    from symelbo.core.checker import CheckOptions, check_derivation
    from symelbo.io.parser import parse_file, parse_stream
    from symelbo.io.tex_source import kind_of
    kind = kind_of(args.file, args.source_format)
    if kind != "calc":
        return _check_tex(args, kind)
    if args.to_calc:
        raise InputError("--to-calc translates a LaTeX or Markdown file; this one is read as .calc "
                         "(use --from tex or --from markdown)", "<command line>")
    if args.file == "-":  # standard input, under the same size cap as a file
        derivation = parse_stream(sys.stdin.buffer, "<stdin>")
    else:
        derivation = parse_file(args.file)
    result = check_derivation(derivation, CheckOptions(budget=args.budget))
    _write_certificates(result, args, args.file)
    return _show(result, args, name="stdin" if args.file == "-" else Path(args.file).name)


def _check_tex(args, kind: str) -> int:
    """Check the display-math chains of a LaTeX, Markdown or notebook file (see io/tex_reader)."""
    from symelbo.core.checker import CheckOptions
    from symelbo.io.tex_reader import check_reading, read_tex, skipped_lines, unread_lines
    reading = read_tex(args.file, kind)
    if args.to_calc:
        notes = ["# " + line for line in unread_lines(reading)]
        notes += ["# skipped: " + line for line in skipped_lines(reading)]
        emit(reading.calc_text.rstrip("\n") + "\n" + ("\n" + "\n".join(notes) + "\n" if notes else ""),
             args.output)
        return 0
    if not reading.chains:
        raise InputError("no chain of relations found in its display math "
                         "(align, equation, \\[...\\], $$...$$)", args.file, 1, 1)
    result = check_reading(reading, CheckOptions(budget=args.budget))
    _write_certificates(result, args, args.file)
    status = _show(result, args, name=Path(args.file).name, skipped=skipped_lines(reading))
    return status


def _write_certificates(result, args, source: str) -> None:
    if getattr(args, "certificates", None):
        from symelbo.io.certificates import certificates_json
        emit(certificates_json(result, source), args.certificates)
        _say(f"wrote {args.certificates}")


def _replay(args) -> int:
    """One line per recorded certificate: replayed by the kernel, or rejected and why."""
    from symelbo.io.certificates import replay_file
    source, answers = replay_file(args.certificates, args.file)
    lines = []
    for answer in answers:
        if answer.accepted:
            lines.append(f"{source}:{answer.line}: replayed ({', '.join(answer.rules) or 'algebra'})")
        else:
            lines.append(f"{source}:{answer.line}: REJECTED: {answer.reason}")
    rejected = sum(not a.accepted for a in answers)
    lines.append(f"{len(answers) - rejected} of {len(answers)} certificates replayed by the kernel"
                 + (f", {rejected} rejected" if rejected else ""))
    emit("\n".join(lines) + "\n", None)
    return 1 if rejected else 0


@contextmanager
def _model_arithmetic(path: str, args):
    """Models loaded inside read data as --data-root and --max-data-mb say; a model whose
    numbers cannot be evaluated (1e200 squared, a complex power) is bad input."""
    from symelbo.models.model import DataAccess, data_access
    root = Path(args.data_root) if args.data_root else None
    try:
        with data_access(DataAccess(root, int(args.max_data_mb * 1024 * 1024))):
            yield
    except SymelboError:
        raise
    except (ArithmeticError, TypeError, ValueError) as error:
        detail = str(error).splitlines()[0] if str(error) else ""
        raise InputError(f"cannot evaluate the model's numbers ({type(error).__name__}: {detail})",
                         path) from None


def _model(args) -> int:
    from symelbo.models.model_document import render_model
    fmt = format_of(args)
    if args.pdf and not args.output:
        raise InputError("--pdf needs -o OUT.pdf", "<command line>")
    with _model_arithmetic(args.file, args):
        text, status = render_model(args.file, fmt, width=_text_width(args))
        if args.pdf:
            from symelbo.io.pdf import compile_pdf
            compile_pdf(text, args.output)
    if not args.pdf:
        emit(text, args.output)
    return status


def _plot(args) -> int:
    from symelbo.models.plot import run_plot
    out = args.output or f"{Path(args.file).stem}-{args.vary}.png"
    low, high = args.range or (None, None)
    with _model_arithmetic(args.file, args):
        status = run_plot(args.file, args.vary, out, low, high)
    _say(f"wrote {out}")  # plot is not in _ANNOUNCED: its default file is not args.output
    return status


class _PlotRange(argparse.Action):
    """``--range LO HI``: two finite numbers with LO < HI, else a usage error (exit 2)."""

    def __call__(self, parser, namespace, values, option_string=None):
        import math
        ends = []
        for text in values:
            try:
                end = float(text)
            except ValueError:
                parser.error(f"argument --range: LO and HI must be numbers, got {text!r}")
            if not math.isfinite(end):
                parser.error(f"argument --range: LO and HI must be finite numbers, got {text!r}")
            ends.append(end)
        if not ends[0] < ends[1]:
            parser.error(f"argument --range: LO must be less than HI, got {values[0]} {values[1]}")
        setattr(namespace, self.dest, tuple(ends))


def _cavi(args) -> int:
    from symelbo.models.cavi_document import run_cavi
    with _model_arithmetic(args.file, args):
        return run_cavi(args)


COMMANDS = {"list": _list, "derive": _derive, "check": _check, "model": _model, "plot": _plot,
             "replay": _replay, "cavi": _cavi}


def _show(result, args, name: str, skipped=None) -> int:
    """Render a checked derivation in the requested format and return the exit status.

    ``skipped`` (TeX and Markdown sources): the parts passed over, listed at the
    end of a text report and as ``"skipped"`` in JSON.
    """
    fmt = format_of(args)
    if args.pdf:
        from symelbo.io.pdf import compile_pdf
        from symelbo.io.render import render
        if not args.output:
            raise InputError("--pdf needs -o OUT.pdf", "<command line>")
        compile_pdf(render(result, "latex", name=name, fragment=False), args.output)
    elif fmt == "json":
        from symelbo.io.report import json_report
        text = json_report(result)
        if skipped is not None:
            import json
            data = json.loads(text)
            data["skipped"] = skipped
            text = json.dumps(data, indent=2, ensure_ascii=False) + "\n"
        emit(text, args.output)
    elif fmt == "text":
        from symelbo.io.report import terminal_text, text_report
        text = text_report(result, name, width=_text_width(args))
        if skipped:
            text += "\nskipped:\n" + terminal_text("".join(f"  {line}\n" for line in skipped))
        emit(text, args.output)
    else:
        from symelbo.io.render import render
        emit(render(result, fmt, name=name, fragment=args.fragment), args.output)
    return _status(result, getattr(args, "strict", False))


def _status(result, strict: bool) -> int:
    """0 when every step passes (with ``--strict``: every step proved), else 1; under
    ``--strict`` the tested steps that failed it are named on standard error."""
    from symelbo.core.verdicts import passing
    allowed = passing(strict)
    if all(s.verdict in allowed for c in result.chains for s in c.steps):
        return 0
    tested = [s.step.line for c in result.chains for s in c.steps if s.verdict == "tested"]
    if strict and tested and result.passed:
        lines = ", ".join(str(line) for line in tested)
        _say(f"--strict: {len(tested)} step{'s' if len(tested) > 1 else ''} tested, not proved "
             f"(line{'s' if len(tested) > 1 else ''} {lines})")
    return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
