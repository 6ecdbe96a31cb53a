"""symelbo: symbolic derivation and verification engine for variational inference.

The public names are re-exported here; each lives in the module of its concept.
"""

from .checker import CheckOptions, CheckResult, check_derivation, check_step
from .derivation import Chain, Derivation, Step
from .errors import InputError, SymelboError
from .generate import generate
from .notation import ELBO, KL, Density, Entropy, Expectation, Gradient, Marginal, density, parameter, variable
from .parser import parse_expression, parse_file, parse_text
from .rules import RULES

__all__ = [
    "CheckOptions", "CheckResult", "check_derivation", "check_step",
    "Chain", "Derivation", "Step", "InputError", "SymelboError", "generate",
    "ELBO", "KL", "Density", "Entropy", "Expectation", "Gradient", "Marginal",
    "density", "parameter", "variable", "parse_expression", "parse_file", "parse_text", "RULES",
]
