"""Shared paths and helpers for the test suite."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_EXAMPLES = REPO.parent / "shared" / "examples"
DERIVATIONS = REPO / "derivations"


@pytest.fixture
def shared_examples() -> Path:
    if not SHARED_EXAMPLES.is_dir():
        pytest.skip(f"the shared examples are not beside the repository ({SHARED_EXAMPLES})")
    return SHARED_EXAMPLES
