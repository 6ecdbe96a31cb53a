"""Plain-text and JSON reports of checked derivations.

The text report is for a person: each step on its own line with its
relation, its justification and its verdict, in aligned columns, and under a
refuted step its counterexample as a small table. The JSON report has the
shape of the design reference: ``{"verdict", "chains": [{"claim", "verdict",
"steps": [...]}]}``.
"""

from __future__ import annotations

import json
from collections import Counter

from .checker import CheckResult, StepResult
from .printing import calc_str

__all__ = ["text_report", "json_report", "counterexample_lines", "justification"]

_MARK = {"proved": "proved", "tested": "tested", "misjustified": "MISJUSTIFIED",
         "refuted": "REFUTED", "unknown": "UNKNOWN"}


def json_report(result: CheckResult) -> str:
    """The JSON report: stable key order, one trailing newline."""
    return json.dumps(result.as_dict(), indent=2, ensure_ascii=False) + "\n"


def justification(step: StepResult) -> str:
    """``by rules`` as written, or ``[found: rules]`` for what the checker found."""
    if step.step.by:
        return "by " + ", ".join(step.step.by)
    if step.found_by:
        return "[found: " + ", ".join(step.found_by) + "]"
    return ""


def counterexample_lines(counterexample: dict) -> list[str]:
    """A counterexample as short readable lines: supports, held values, tables, both sides."""
    cx = counterexample
    lines = [f"counterexample ({cx['kind']} instance, seed {cx['seed']}):"]
    support = ", ".join(f"{v} in {{{', '.join(points)}}}" for v, points in cx["support"].items())
    lines.append(f"  support: {support}")
    if cx.get("weights"):
        lines.append("  reference weights: " + ", ".join(f"{v}: {w}" for v, w in cx["weights"].items()))
    if cx.get("held"):
        lines.append("  held: " + ", ".join(f"{v} = {x}" for v, x in cx["held"].items()))
    if cx.get("parameters"):
        lines.append("  parameters: " + ", ".join(f"{k} = {x}" for k, x in cx["parameters"].items()))
    for name, rows in cx["densities"].items():
        cells = "; ".join(", ".join(f"{v}={x}" for v, x in row["at"].items()) + f" -> {row['value']}"
                          for row in rows)
        lines.append(f"  {name}: {cells}")
    lines.append(f"  lhs = {cx['lhs']}   rhs = {cx['rhs']}   (claimed: lhs {cx['relation']} rhs)")
    return lines


def text_report(result: CheckResult, name: str | None = None) -> str:
    """The report a person reads in a terminal."""
    out: list[str] = []
    title = result.derivation.title
    heading = title or name or "derivation"
    if name and title:
        heading += f"  ({name})"
    out.append(heading)
    for index, chain in enumerate(result.chains, start=1):
        out.append("")
        where = f" (line {chain.chain.line})" if chain.chain.line else ""
        out.append(f"chain {index}{where}: {chain.claim}   [{chain.verdict}]")
        rows = [(str(chain.chain.line or ""), "", calc_str(chain.chain.first), "", "")]
        for s in chain.steps:
            rows.append((str(s.step.line or ""), s.step.relation, calc_str(s.step.rhs),
                         justification(s), _MARK[s.verdict]))
        widths = [max(len(r[i]) for r in rows) for i in range(4)]
        for row, step in zip(rows, (None,) + chain.steps):
            line = (f"{row[0]:>{widths[0]}}  {row[1]:>{max(widths[1], 2)}} {row[2]:<{widths[2]}}"
                    f"  {row[3]:<{widths[3]}}  {row[4]}")
            out.append(line.rstrip())
            if step is not None:
                indent = " " * (widths[0] + 6)
                if step.message and step.verdict != "proved":
                    out.append(indent + step.message)
                if step.counterexample:
                    out.extend(indent + l for l in counterexample_lines(step.counterexample))
    counts = Counter(s.verdict for c in result.chains for s in c.steps)
    summary = ", ".join(f"{counts[v]} {v}" for v in ("proved", "tested", "misjustified", "refuted", "unknown")
                        if counts[v])
    out.append("")
    out.append(f"verdict: {result.verdict} ({summary})")
    return "\n".join(out) + "\n"
