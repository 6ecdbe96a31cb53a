"""Certificate files: the proofs of a checked derivation, written out and replayed later.

``symelbo check FILE --certificates OUT.json`` writes one record per proved
step; ``symelbo replay OUT.json [FILE]`` reads the derivation again and hands
every certificate to the kernel alone (no search), so that a proof can be
audited, or re-checked by another version of symelbo. The format::

    {"format": "symelbo-certificates/1",
     "source": "derivations/jensen.calc" | "builtin:jensen",
     "steps": [{"chain": 1, "step": 4, "line": 6, "lhs": "...", "relation": ">=", "rhs": "...",
                "by": ["jensen"], "found_by": ["jensen"], "certificate": {...}}]}

A certificate's expressions are ``{"expr": TEXT}`` in ``.calc`` notation,
read back with the derivation's own densities (see :mod:`symelbo.core.kernel`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from symelbo.core.errors import InputError
from symelbo.core.kernel import CertificateRejected, certificate_data, certificate_from_data, replay
from symelbo.core.printing import calc_str
from symelbo.io.userfiles import excerpt, read_user_text

__all__ = ["FORMAT", "certificate_records", "certificates_json", "Replayed", "replay_file"]

FORMAT = "symelbo-certificates/1"
_BUILTIN = "builtin:"


def certificate_records(result) -> list[dict]:
    """One record per proved step of a :class:`~symelbo.core.checker.CheckResult`."""
    records = []
    for number, chain in enumerate(result.chains, start=1):
        for index, step in enumerate(chain.steps, start=1):
            if step.certificate is None:
                continue
            records.append({
                "chain": number, "step": index, "line": step.step.line, "lhs": calc_str(step.step.lhs),
                "relation": step.step.relation, "rhs": calc_str(step.step.rhs),
                "by": list(step.step.by), "found_by": list(step.found_by),
                "certificate": certificate_data(step.certificate)})
    return records


def certificates_json(result, source: str) -> str:
    """The certificate file of a checked derivation read from ``source``."""
    document = {"format": FORMAT, "source": source, "steps": certificate_records(result)}
    return json.dumps(document, indent=2, sort_keys=False) + "\n"


#: The largest integer a certificate file may hold (a line number, a position in a tree).
_LARGEST = 10 ** 9


def _has_huge_number(node) -> bool:
    stack = [node]
    while stack:   # a loop, not recursion: JSON may nest as deeply as the reader allowed
        item = stack.pop()
        if isinstance(item, bool):
            continue
        if isinstance(item, int) and abs(item) > _LARGEST:
            return True
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


@dataclass(frozen=True)
class Replayed:
    """The kernel's answer on one recorded certificate."""

    line: int
    accepted: bool
    reason: str = ""
    rules: tuple[str, ...] = ()


def _derivation(source: str, given: str | None, certificates: str):
    """The derivation to replay against: ``given`` (the user's FILE), else the source the
    certificate file names, which must lie in the certificate file's folder (after
    symbolic links): a certificate file is someone else's text and may not send the
    program to read anything else, nor have a file's content echoed."""
    from symelbo.core.generate import BUILTIN, generate
    from symelbo.io.parser import parse_file
    name = given if given is not None else source
    if name.startswith(_BUILTIN):
        builtin = name[len(_BUILTIN):]
        if builtin not in BUILTIN:
            raise InputError(f"unknown built-in derivation {excerpt(builtin)!r}", certificates)
        return generate(builtin), ""
    if given is not None:
        path = Path(given)
        return parse_file(path), read_user_text(path)
    folder = Path(certificates).resolve().parent
    try:
        path = (folder / name).resolve(strict=True)
    except (OSError, RuntimeError):
        raise InputError(f"the source {excerpt(name)!r} it names cannot be opened; give the "
                         "derivation file", certificates) from None
    if not path.is_relative_to(folder):
        raise InputError(f"the source {excerpt(name)!r} it names lies outside its folder; give "
                         "the derivation file to replay against", certificates)
    try:
        return parse_file(path), read_user_text(path)
    except InputError as error:
        raise InputError(f"the source it names is not a derivation file that can be read (at "
                         f"line {error.line or 1}); give the derivation file", certificates) from None


def replay_file(path: str, derivation_file: str | None = None) -> tuple[str, list[Replayed]]:
    """Replay every certificate of the file ``path`` against its derivation.

    The derivation is ``derivation_file`` when given, else the source the
    certificate file names. Returns the source used and one answer per record.
    """
    from symelbo.io.parser import parse_expression
    try:
        document = json.loads(read_user_text(path, what="certificate file"))
    except json.JSONDecodeError as error:
        raise InputError(f"not JSON: {error.msg}", path, error.lineno, error.colno) from None
    except ValueError:   # an integer of thousands of digits
        raise InputError("holds a number too long to read", path) from None
    if _has_huge_number(document):
        raise InputError(f"holds a number beyond {_LARGEST:,}; no certificate needs one", path)
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise InputError(f"not a certificate file (no \"format\": \"{FORMAT}\")", path)
    source = document.get("source")
    if derivation_file is None and not isinstance(source, str):
        raise InputError("the certificate file names no source; give the derivation file", path)
    derivation, text = _derivation(source, derivation_file, path)
    steps = {(c, i): step for c, chain in enumerate(derivation.chains, start=1)
             for i, step in enumerate(chain.steps, start=1)}
    answers = []
    for record in document.get("steps", []):
        if not (isinstance(record, dict) and all(isinstance(record.get(k), int)
                                                 for k in ("chain", "step", "line"))):
            raise InputError("a step record without its chain, step and line numbers", path)
        line = record["line"]
        step = steps.get((record["chain"], record["step"]))
        if step is None or (calc_str(step.lhs), step.relation, calc_str(step.rhs)) != (
                record.get("lhs"), record.get("relation"), record.get("rhs")):
            answers.append(Replayed(line, False, "the derivation has no such step at this place"))
            continue
        if isinstance(record.get("certificate"), dict) and record["certificate"].get("kind") == "algebra":
            # the algebra kind is for a model's closed forms, whose domain the model states
            answers.append(Replayed(line, False, "an algebra certificate proves a model's closed "
                                                 "forms, not a derivation's step"))
            continue
        try:
            certificate = certificate_from_data(record.get("certificate"),
                                                lambda expr: parse_expression(expr, text))
            proof = replay(certificate, step.lhs, step.relation, step.rhs, step.by,
                           derivation.hypotheses, step.constant_in)
        except InputError as error:
            answers.append(Replayed(line, False, f"an expression of the certificate: {error.message}"))
        except CertificateRejected as rejected:
            answers.append(Replayed(line, False, rejected.reason))
        else:
            answers.append(Replayed(line, True, rules=tuple(sorted(proof.rules))))
    return (derivation_file or source), answers
