"""symelbo: symbolic derivation and verification engine for variational inference.

The public names are re-exported here, each from the module of its concept.
They are loaded on first use, so that importing a submodule (the pytest
plugin, for one) does not import SymPy.
"""

from importlib import import_module

_EXPORTS = {
    "CheckOptions": "checker", "CheckResult": "checker", "check_derivation": "checker",
    "check_step": "checker",
    "Chain": "derivation", "Derivation": "derivation", "Step": "derivation",
    "InputError": "errors", "SymelboError": "errors",
    "generate": "generate",
    "ELBO": "notation", "KL": "notation", "Density": "notation", "Entropy": "notation",
    "Expectation": "notation", "Gradient": "notation", "Marginal": "notation",
    "density": "notation", "parameter": "notation", "variable": "notation",
    "parse_expression": "parser", "parse_file": "parser", "parse_text": "parser",
    "RULES": "rules",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        value = getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'symelbo' has no attribute {name!r}")
