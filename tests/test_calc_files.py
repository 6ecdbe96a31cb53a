"""Every derivation file is a test: the built-ins are proved, the examples get their verdicts.

The built-in derivations (``derivations/*.calc``) and the good examples must
be proved step by step. The examples that are wrong on purpose must fail at
exactly the lines pinned below, refuted steps with a counterexample; their
header comments state what is wrong with them, and the verdicts must agree.
A step may also pin its own verdict with a trailing ``# expect: VERDICT``.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from symelbo.testing import assert_derivation_proved, assert_derivation_verdicts
from .conftest import SHARED_EXAMPLES

ROOT = Path(__file__).resolve().parents[1]
DERIVATIONS = ROOT / "derivations"
EXAMPLES = SHARED_EXAMPLES  # the shipped copies (see conftest)

#: The lines of the examples that are wrong on purpose, and what is wrong with them.
WRONG_ON_PURPOSE = {
    "wrong_steps.calc": {6: "refuted", 10: "refuted", 14: "refuted"},
    "misjustified.calc": {6: "misjustified", 9: "misjustified"},
}

#: What a header comment says about every chain of its file, as a check on the verdicts.
HEADER_CLAIMS = {
    "exactly one false step": lambda chain: [s.verdict for s in chain.steps].count("refuted") == 1,
    "wrong justification": lambda chain: all(s.verdict == "misjustified" for s in chain.steps),
}

_EXPECT = re.compile(r"#\s*expect:\s*(\w+)")


def _files(folder: Path, reason: str):
    files = sorted(folder.glob("*.calc")) if folder.is_dir() else []
    if not files:
        return [pytest.param(None, marks=pytest.mark.skip(reason=reason))]
    return [pytest.param(path, id=path.name) for path in files]


def expected_verdicts(path: Path) -> dict[int, str]:
    """``# expect: VERDICT`` comments on step lines, else the pinned table, else nothing."""
    lines = path.read_text(encoding="utf-8").splitlines()
    marked = {n: m.group(1) for n, line in enumerate(lines, start=1) if (m := _EXPECT.search(line))}
    return marked or WRONG_ON_PURPOSE.get(path.name, {})


def header_comment(path: Path) -> str:
    """The comment lines at the top of a file, joined."""
    text = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.lstrip().startswith("#"):
            break
        text.append(line.lstrip("# ").strip())
    return " ".join(text)


@pytest.mark.parametrize("path", _files(DERIVATIONS, "no built-in derivation files yet"))
def test_built_in_derivation_is_proved(path):
    result = assert_derivation_proved(path)
    assert result.chains


@pytest.mark.parametrize("path", _files(EXAMPLES, f"no example files in {EXAMPLES}"))
def test_example_has_its_expected_verdicts(path):
    expected = expected_verdicts(path)
    if not expected:
        assert_derivation_proved(path)
        return
    result = assert_derivation_verdicts(path, expected)
    comment = header_comment(path)
    for phrase, holds in HEADER_CLAIMS.items():
        if phrase in comment:
            bad = [c.chain.line for c in result.chains if not holds(c)]
            assert not bad, f"{path.name}: the header says {phrase!r}, but not of the chains at lines {bad}"


def test_the_pinned_examples_exist():
    if not EXAMPLES.is_dir():
        pytest.skip(f"no example folder {EXAMPLES}")
    present = {p.name for p in EXAMPLES.glob("*.calc")}
    assert set(WRONG_ON_PURPOSE) <= present
    assert {"kl_shuffle.calc", "jensen.calc", "gradient.calc"} <= present
