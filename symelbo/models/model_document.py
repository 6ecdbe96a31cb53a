"""Renderings of a model report: plain text (wrapped to the terminal), LaTeX and Markdown.

- :func:`format_text`: the plain-text report of ``symelbo model FILE``;
- :func:`run_model`: ``symelbo model FILE [--json]``, writing the report and returning the exit status.
"""

from __future__ import annotations

import json
import math
from typing import TextIO

from symelbo.models.model import load_model
from symelbo.models.model_report import exit_status, report


def format_text(rep: dict, path: str | None = None) -> str:
    """A readable plain-text rendering of a report."""
    lines = [f"model: {rep['name']}" + (f"  ({path})" if path else ""), ""]
    labels = {"elbo": "ELBO", "log_evidence": "log p(X)", "kl": "KL(q || p(Z | X))"}
    for key, label in labels.items():
        q = rep[key]
        value = "?" if q["value"] is None else f"{q['value']:.10g}"
        lines.append(f"{label} = {value}")
        if q["expr"] is not None:
            lines.append(f"    = {q['expr']}")
        else:
            lines.append(f"    no closed form: {q['reason']}")
        lines.append("")
    lines.append("checks:")
    width = max(len(c["verdict"]) for c in rep["checks"])
    for c in rep["checks"]:
        lines.append(f"  {c['verdict']:<{width}}  {c['name']}: {c['message']}")
    status = exit_status(rep)
    lines.append("")
    lines.append("all checks proved or tested" if status == 0 else
                 "some checks are refuted or unknown")
    return "\n".join(lines) + "\n"


def _finite(value):
    """JSON has no infinities: a non-finite number becomes null (the text report shows it)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def run_model(path: str, as_json: bool, out: TextIO) -> int:
    """`symelbo model FILE.toml [--json]`: write the report to ``out``; return the exit status.

    Bad input raises :class:`~symelbo.core.errors.InputError` (the command line prints it and exits 2).
    """
    model = load_model(path)
    rep = report(model)
    if as_json:
        out.write(json.dumps(_finite(rep), indent=2, ensure_ascii=False, allow_nan=False) + "\n")
    else:
        out.write(format_text(rep, path))
    return exit_status(rep)
