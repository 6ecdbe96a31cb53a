"""Shared paths and helpers for the test suite.

The example derivations (with their expected verdicts in comments) ship in
``examples/``; a clone tests them without anything beside it. When the
shared originals are beside the repository, a test keeps the copies equal.
"""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DERIVATIONS = REPO / "derivations"
#: the originals, when the repository sits beside them
SHARED_ORIGINALS = REPO.parent / "shared" / "examples"
#: the example derivations the tests check: the shipped copies, or the originals without them
SHARED_EXAMPLES = REPO / "examples" if any((REPO / "examples").glob("*.calc")) else SHARED_ORIGINALS


@pytest.fixture
def shared_examples() -> Path:
    if not SHARED_EXAMPLES.is_dir():
        pytest.skip(f"no example derivations: neither examples/ nor {SHARED_ORIGINALS}")
    return SHARED_EXAMPLES
