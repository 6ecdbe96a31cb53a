"""symelbo: symbolic derivation and verification engine for variational inference.

The public names are re-exported here, each from the module of its concept.
They are loaded on first use, so that importing a submodule (the pytest
plugin, for one) does not import SymPy; ``dir(symelbo)`` lists them all.

    >>> from symelbo import density, variable, KL
    >>> q, p = density("q", ["Z"]), density("p", ["Z"], given=["X"])
    >>> KL(q, p)
    KL(q(Z) || p(Z | X))
"""

import sys as _sys
from importlib import import_module as _import_module

_EXPORTS = {
    "CheckOptions": "core.checker", "CheckResult": "core.checker", "check_derivation": "core.checker",
    "check_step": "core.checker",
    "Chain": "core.derivation", "Derivation": "core.derivation", "Step": "core.derivation",
    "InputError": "core.errors", "SymelboError": "core.errors",
    "generate": "core.generate",
    "ELBO": "core.notation", "KL": "core.notation", "Density": "core.notation", "Entropy": "core.notation",
    "Expectation": "core.notation", "Gradient": "core.notation", "Marginal": "core.notation",
    "density": "core.notation", "parameter": "core.notation", "variable": "core.notation",
    "parse_expression": "io.parser", "parse_file": "io.parser", "parse_text": "io.parser",
    "RULES": "core.rules",
}

__all__ = sorted(_EXPORTS) + ["__version__"]

def _version() -> str:
    # looked up on first use: importlib.metadata costs 40 ms, a tenth of the start-up
    from importlib import metadata
    try:
        return metadata.version("symelbo")
    except metadata.PackageNotFoundError:  # pragma: no cover - a tree that was never installed
        return "0+unknown"


def __dir__():
    return sorted({name for name in globals() if not name.startswith("_") or name == "__version__"}
                  | set(_EXPORTS))


def __getattr__(name):
    if name == "__version__":
        globals()[name] = value = _version()
        return value
    if name in _EXPORTS:
        value = getattr(_import_module(f".{_EXPORTS[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'symelbo' has no attribute {name!r}")


if "IPython" in _sys.modules:  # a notebook: show check results as math and Markdown
    from symelbo.io.notebook import register as _register_display

    _register_display()
