"""The core: the mathematics of the checker and its trusted decision.

Imports nothing but the standard library, SymPy, mpmath and itself (a test
reads the imports and holds it to that).

- notation, printing: probability notation as SymPy expressions, its ``.calc`` printer
- relations, derivation, verdicts, errors: steps, chains and what is said of them
- rules, traversal, normalize: the named rules, where they act, normal forms
- kernel: replays proof certificates; the only code that says ``proved``
- search: finds proofs and writes their certificates
- semantics, deadline: concrete instances and the time budget
- checker: the verdict on each step
- generate: the built-in derivations, produced by the rules
"""
