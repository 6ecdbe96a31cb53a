"""Plain-text and JSON reports of checked derivations.

The text report is for a person: each step on its own line with its
relation, its justification and its verdict, in aligned columns, and under a
refuted step its counterexample as a small table. The JSON report has the
shape ``{"verdict", "chains": [{"claim", "verdict",
"steps": [...]}]}``.

Text for a terminal never carries a control character from the input: a
title, a model name or an echoed token may hold an escape sequence, a
carriage return or a bidi override (U+202E), and :func:`terminal_text`
shows each as a ``\\uXXXX`` escape instead of letting the terminal obey it.
"""

from __future__ import annotations

import json
import re
import textwrap
from collections import Counter
from fractions import Fraction

from symelbo.core.checker import CheckResult, StepResult
from symelbo.core.printing import calc_str
from symelbo.core.verdicts import VERDICT, VERDICTS

__all__ = ["text_report", "json_report", "counterexample_lines", "counterexample_table", "justification",
           "terminal_text", "terminal_line", "rows_that_matter", "omitted_rows_note", "MAX_TABLE_ROWS",
           "plain_law"]

_MARK = {name: verdict.mark for name, verdict in VERDICT.items()}


def _escaped(char: str) -> str:
    """``\\uXXXX`` for each UTF-16 unit of ``char``: readable, and a valid escape inside a JSON string."""
    units = char.encode("utf-16-be")
    return "".join(f"\\u{units[i] << 8 | units[i + 1]:04x}" for i in range(0, len(units), 2))


def terminal_text(text: str) -> str:
    """``text`` with every character that is not printable, except the line break, escaped.

    Escaped: C0 and C1 controls (ESC, BEL, CR, tab, CSI), DEL, format
    characters such as the bidi overrides U+202A-U+202E and U+2066-U+2069,
    and line or paragraph separators. A JSON document stays valid JSON with
    the same value (such characters occur only inside its strings, where
    ``\\uXXXX`` means the character itself).

    >>> terminal_text("a\\x1b[31mb\\u202ec\\n")
    'a\\\\u001b[31mb\\\\u202ec\\n'
    """
    if text.isprintable():
        return text
    return "".join(ch if ch == "\n" or ch.isprintable() else _escaped(ch) for ch in text)


def terminal_line(text: str, width: int = 300) -> str:
    """``text`` as one safe line: line breaks escaped too, cut to ``width`` characters with ``…``.

    For a message that may quote user input (a 200 KB token, a 1 MB data line).
    """
    line = terminal_text(text).replace("\n", "\\n")
    return line if len(line) <= width else line[: width - 1] + "\u2026"


def _frac(match: re.Match) -> str:
    """``\\frac{a}{b}`` as ``a / b``, each part in parentheses when it has more than one term;
    after ``\\log`` the whole quotient too, so ``log(a / b)`` is not read ``(log a) / b``."""
    parts = [f"({part})" if re.search(r"[ +-]", re.sub(r"\([^()]*\)", "", part)) else part
             for part in match.group(2, 3)]
    quotient = f"{parts[0]} / {parts[1]}"
    return f"log({quotient})" if match.group(1) else quotient


#: TeX in the rules' laws and its plain-text reading, applied in order (see :func:`plain_law`).
_PLAIN = tuple((re.compile(p), r) for p, r in (
    (r"\\text\{([^{}]*)\}", r"\1"), (r"\\operatorname\{([^{}]*)\}", r"\1"),
    (r"\\mathbb\{E\}_\{([^{}()]*)\}\\left\[", r"E_\1["),
    (r"\\mathbb\{E\}_\{([^{}]*)\}\\left\[", "E_\x01\\1\x02["),  # E_{q(Z)}: braces kept
    (r"\\mathcal\{L\}", "ELBO"), (r"\\sum_\{([^{}]*)\}", r"sum_\1"),
    (r"\\nabla_\{([^{}]*)\}", r"grad_\1"), (r"\^\{([^{}]*)\}", r"^\1"),
    (r"(\\log\s*)?\\frac\{([^{}]*)\}\{([^{}]*)\}", _frac),
    (r"\s*\\,\\\|\\,\s*", " || "), (r"\\mid", "|"), (r"\\ge\b", ">="), (r"\\le\b", "<="),
    (r"\\left|\\right", ""), (r"\\,|\\ |~", " "), (r"\\log", "log"), (r"\\phi", "phi"),
    (r"[{}]", ""), (r" {2,}", " "), ("\x01", "{"), ("\x02", "}"),
))


def plain_law(tex: str) -> str:
    r"""A rule's law (one line of LaTeX) as plain text for a terminal.

    >>> plain_law(r"\log \frac{a}{b} = \log a - \log b")
    'log(a / b) = log a - log b'
    """
    text = tex
    for pattern, replacement in _PLAIN:
        text = pattern.sub(replacement, text)
    return text.strip()


def json_report(result: CheckResult) -> str:
    """The JSON report: stable key order, one trailing newline."""
    data = result.as_dict()
    if result.derivation.title:  # after the verdict, so the verdict stays the first key
        data = {"verdict": data.pop("verdict"), "title": result.derivation.title, **data}
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


def justification(step: StepResult) -> str:
    """``by rules`` as written, or ``[found: rules]`` for what the checker found."""
    if step.step.by:
        return "by " + ", ".join(step.step.by)
    if step.found_by:
        return "[found: " + ", ".join(step.found_by) + "]"
    return ""


def counterexample_lines(counterexample: dict) -> list[str]:
    """A counterexample as short readable lines (see :func:`counterexample_table`)."""
    return counterexample_table(counterexample).splitlines()


def counterexample_table(cx: dict) -> str:
    """A counterexample as a short text: supports, held values, parameters, one table per density.

    >>> print(counterexample_table({"kind": "random", "seed": 2,
    ...     "support": {"Z": ["1", "2"]}, "densities": {"q": [
    ...         {"at": {"Z": "1"}, "value": "1/5"}, {"at": {"Z": "2"}, "value": "4/5"}]},
    ...     "lhs": "0.5", "rhs": "0.2", "relation": "<="}))
    counterexample (random instance, seed 2):
      support: Z in {1, 2}
    <BLANKLINE>
        Z  q(Z)
        1  1/5
        2  4/5
    <BLANKLINE>
      lhs = 0.5
      rhs = 0.2
      but the step claims lhs <= rhs
    """
    out = [f"counterexample ({cx.get('kind', 'concrete')} instance, seed {cx.get('seed')}):"]
    support = ", ".join(f"{v} in {{{', '.join(map(str, pts))}}}" for v, pts in cx.get("support", {}).items())
    if support:
        out.append(f"  support: {support}")
    if cx.get("weights"):
        out.append("  reference weights: " + ", ".join(f"{v}: {w}" for v, w in cx["weights"].items()))
    if cx.get("held"):
        out.append("  held: " + ", ".join(f"{v} = {x}" for v, x in cx["held"].items()))
    if cx.get("parameters"):
        out.append("  parameters: " + ", ".join(f"{k} = {x}" for k, x in cx["parameters"].items()))
    for name, rows in cx.get("densities", {}).items():
        shown = rows_that_matter(rows, cx.get("held") or {})
        out.append("")
        out.extend("    " + line for line in _density_table(name, shown))
        if len(shown) < len(rows):
            out.append(f"    ({omitted_rows_note(len(shown), len(rows))})")
    out.append("")
    out.append(f"  lhs = {cx.get('lhs')}")
    out.append(f"  rhs = {cx.get('rhs')}")
    if cx.get("difference"):
        out.append(f"  lhs - rhs = {cx['difference']}")
    out.append(f"  but the step claims lhs {cx.get('relation', '?')} rhs")
    return "\n".join(line.rstrip() for line in out)


#: A density table longer than this shows only the rows that matter: a step
#: over 12 variables has 4,096 rows, more than a reader can take in or TeX can
#: set on a page. The JSON report always has every row.
MAX_TABLE_ROWS = 32


def _probability(value) -> Fraction:
    try:
        return Fraction(str(value))
    except (ValueError, ZeroDivisionError):
        return Fraction(0)


def rows_that_matter(rows, held: dict, limit: int = MAX_TABLE_ROWS) -> list:
    """The rows of a counterexample's density table to show, in table order.

    All of them when they fit in ``limit``. Otherwise first the rows at the
    held values of the free variables (the only rows the two sides are
    evaluated at, apart from the bound variables), then the most probable
    rows, which weigh most in the sides' sums and expectations.
    """
    if len(rows) <= limit:
        return list(rows)

    def at_held(row) -> bool:
        return all(str(row["at"][v]) == str(x) for v, x in held.items() if v in row["at"])

    ranked = sorted(range(len(rows)),
                    key=lambda i: (not at_held(rows[i]), -_probability(rows[i]["value"]), i))
    return [rows[i] for i in sorted(ranked[:limit])]


def omitted_rows_note(shown: int, total: int) -> str:
    """The note under a cut table: how many rows it shows, which, and where the rest are."""
    return (f"{shown} of {total:,} rows shown: those at the held values, then the most "
            f"probable; {total - shown:,} left out (the JSON report has every row)")


def _density_table(name: str, rows) -> list[str]:
    variables = list(rows[0]["at"]) if rows else []
    header = variables + [f"{name}({', '.join(variables)})"]
    body = [[str(row["at"][v]) for v in variables] + [str(row["value"])] for row in rows]
    widths = [max(len(r[i]) for r in [header] + body) for i in range(len(header))]
    return ["  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip() for r in [header] + body]


#: The width of text output when it does not go to a terminal (a file, a pipe, a log).
TEXT_WIDTH = 100


def wrapped(text: str, width: int, indent: str = "", first: str = "") -> list[str]:
    """``text`` cut into lines of at most ``width`` characters (where it can be cut at a space,
    else inside a long word); the first line starts with ``first``, the others with ``indent``.

    Control characters are escaped first (:func:`terminal_text`): a wrap would turn a
    carriage return into a space and hide it, and the width is what the terminal shows.
    """
    return textwrap.wrap(terminal_text(text), width=max(width, len(indent) + 20), initial_indent=first,
                         subsequent_indent=indent, break_on_hyphens=False) or [first.rstrip()]


def _columns(rows, width: int) -> set[int]:
    """Which rows keep the justification beside them: drop the longest until the rest fit."""
    keep = set(range(len(rows)))
    mark = max(len(m) for m in _MARK.values())

    def needed(indices) -> int:
        lead = max(len(rows[i][0]) for i in indices) + 2 + max(2, max(len(rows[i][1]) for i in indices)) + 1
        return lead + max(len(rows[i][2]) for i in indices) + 2 + max(len(rows[i][3]) for i in indices) + 2 + mark

    while keep and needed(keep) > width:
        keep.remove(max(keep, key=lambda i: (len(rows[i][2]) + len(rows[i][3]), i)))
    return keep


def text_report(result: CheckResult, name: str | None = None, width: int = TEXT_WIDTH) -> str:
    """The report a person reads in a terminal ``width`` columns wide.

    Steps and justifications stand in aligned columns; a step too long for
    that has its justification and verdict on the line under it, and an
    expression longer than the line is wrapped, its continuation indented.
    """
    out: list[str] = []
    title = result.derivation.title
    heading = title or name or "derivation"
    if name and title:
        heading += f"  ({name})"
    out.append(heading)  # the title stays one line, as the user wrote it
    for index, chain in enumerate(result.chains, start=1):
        out.append("")
        where = f" (line {chain.chain.line})" if chain.chain.line else ""
        out.extend(wrapped(f"chain {index}{where}: {chain.claim}   [{chain.verdict}]", width, "    "))
        rows = [(str(chain.chain.line or ""), "", calc_str(chain.chain.first), "", "")]
        for s in chain.steps:
            rows.append((str(s.step.line or ""), s.step.relation_text, calc_str(s.step.rhs),
                         justification(s), _MARK[s.verdict]))
        beside = _columns(rows, width)
        widths = [max(len(r[i]) for r in rows) for i in range(2)]
        widths += [max((len(rows[i][k]) for i in beside), default=0) for k in (2, 3)]
        indent = " " * (widths[0] + max(widths[1], 2) + 4)
        for number, (row, step) in enumerate(zip(rows, (None,) + chain.steps)):
            lead = f"{row[0]:>{widths[0]}}  {row[1]:>{max(widths[1], 2)}} "
            if number in beside:
                out.append(f"{lead}{row[2]:<{widths[2]}}  {row[3]:<{widths[3]}}  {row[4]}".rstrip())
            else:  # too long for the columns: the justification and verdict under the step
                out.extend(wrapped(row[2], width, indent, first=lead))
                if row[3] or row[4]:
                    out.extend(wrapped(f"{row[3]}  {row[4]}".strip(), width, indent, first=indent))
            if step is not None:
                if step.message and step.verdict != "proved":
                    out.extend(wrapped(step.message, width, indent, first=indent))
                if step.counterexample:
                    out.extend((indent + l).rstrip() for l in counterexample_lines(step.counterexample))
    counts = Counter(s.verdict for c in result.chains for s in c.steps)
    summary = ", ".join(f"{counts[v]} {v}" for v in VERDICTS
                        if counts[v])
    out.append("")
    out.append(f"verdict: {result.verdict} ({summary})")
    # the title and the file's name are the user's: no escape sequence reaches the terminal
    return terminal_text("\n".join(out) + "\n")
