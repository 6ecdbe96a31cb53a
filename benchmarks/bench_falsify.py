"""Benchmark of the falsifier (not a timed test): its cost per step, and the whole process.

Run: python benchmarks/bench_falsify.py [repeats] [--before DIR]

1. Per step, in this process (after a warm-up step): the time ``check_step``
   takes, and the part of it the counterexample search takes (``attack``
   wrapped with a timer), for true claims that end ``tested`` and false ones
   the search refutes. Medians over the repeats.
2. The whole process: ``python -c "import sympy"`` against ``symelbo check`` on
   every shared example, interleaved, medians of 2 x repeats runs. With
   ``--before DIR`` (a copy of the package from before the falsifier, e.g.
   ``git archive bef5645 symelbo | tar -x -C DIR``) the same runs with that copy.
3. ``--sweep N``: N random steps (sums, products, squares of densities' logs,
   KL, entropies, moments, a parameter and constants), checked; each ``tested``
   or ``proved`` one is judged on 12 independent instances (4 or 5 states,
   random fractional values and weights, parameters in [-10, 10]).
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "examples"
sys.path.insert(0, str(REPO))

from symelbo.core import checker  # noqa: E402
from symelbo.core.checker import CheckOptions, check_derivation  # noqa: E402
from symelbo.io.parser import parse_text  # noqa: E402

CONTEXT = "q(Z) = q(Z)\n\n"

TESTED = [
    "E_q[(log q(Z))^2] >= (E_q[log q(Z)])^2",
    "E_q[Z^4] >= E_q[Z^2]^2",
    "H[q(Z)] <= log(sum_Z[1])",
    "exp(phi) >= 1 + phi",
    "phi^4 - 10*phi^2 + 9 >= -16",
    "X^2 - 2*X + 1 >= 0",
]
REFUTED_BY_SEARCH = [
    "X >= -3",
    "E_q[(Z-1)*(Z-2)*(Z-3)*(Z-4)*(Z+1)*(Z+2)*(Z+3)] = 0",
    "KL(q(Z) || p(Z | X)) <= 1000",
    "log p(X) >= -100",
    "exp(phi) <= 1 + phi + phi^2",
]


def per_step(claim: str, repeats: int) -> tuple[float, float, str, int]:
    """(median seconds of the whole step, of its search, verdict, instances searched)."""
    spent = []
    original = checker.attack

    def timed(*args, **kwargs):
        start = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            spent.append(time.perf_counter() - start)

    checker.attack = timed
    try:
        totals, searches, step = [], [], None
        for _ in range(repeats):
            spent.clear()
            start = time.perf_counter()
            result = check_derivation(parse_text(CONTEXT + claim + "\n"), CheckOptions())
            totals.append(time.perf_counter() - start)
            searches.append(sum(spent))
            step = result.chains[-1].steps[0]
    finally:
        checker.attack = original
    searched = (step.search or {}).get("instances", 0)
    return statistics.median(totals), statistics.median(searches), step.verdict, searched


def wall(command: list[str], env=None) -> float:
    start = time.perf_counter()
    subprocess.run(command, capture_output=True, env=env)
    return time.perf_counter() - start


def whole_process(repeats: int, before: str | None) -> list[tuple[str, float]]:
    import os
    files = sorted(SHARED.glob("*.calc"))
    runs = {"import sympy": []}
    old_env = dict(os.environ, PYTHONPATH=before) if before else None
    for f in files:
        runs[f"check {f.name}"] = []
        if before:
            runs[f"check {f.name} (before)"] = []
    for _ in range(2 * repeats):
        runs["import sympy"].append(wall([sys.executable, "-c", "import sympy"]))
        for f in files:
            runs[f"check {f.name}"].append(wall([sys.executable, "-m", "symelbo", "check", str(f)]))
            if before:
                runs[f"check {f.name} (before)"].append(
                    wall([sys.executable, "-m", "symelbo", "check", str(f)], old_env))
    return [(name, statistics.median(times)) for name, times in runs.items()]


ATOMS = ["X", "phi", "log p(X)", "p(X)", "KL(q(Z) || p(Z | X))", "H[q(Z)]", "ELBO(q(Z), p(X, Z))",
         "E_q[Z]", "E_q[Z^2]", "E_q[log p(X | Z)]", "E_q[q(Z)]", "exp(phi)", "phi^2", "X^2"]
CONSTANTS = ["0", "1", "2", "1/2", "3", "10", "100", "1000", "-1", "-20"]


def random_expression(rng, depth: int = 2) -> str:
    if depth == 0 or rng.random() < 0.3:
        return rng.choice(ATOMS) if rng.random() < 0.75 else rng.choice(CONSTANTS)
    a, b = random_expression(rng, depth - 1), random_expression(rng, depth - 1)
    form = rng.choice(["({a}) + ({b})", "({a}) - ({b})", "({a}) * ({b})", "{c} * ({a})", "({a})^2",
                       "log(1 + ({a})^2)"])
    return form.format(a=a, b=b, c=rng.choice(CONSTANTS[1:]))


def oracle_false(step) -> bool:
    """False on one of 12 independent instances (4 or 5 states, random fractional
    values and weights, parameters in [-10, 10]), by more than 1e-20 relative at 250 digits."""
    import random
    from fractions import Fraction

    import mpmath

    from symelbo.core.normalize import evaluate
    from symelbo.core.semantics import Universe, custom_instance, evaluate_on
    universe = Universe.of([step.lhs, step.rhs])
    lhs, rhs = evaluate(step.lhs), evaluate(step.rhs)
    for seed in range(12):
        rng = random.Random(f"oracle:{seed}")
        support = {v: tuple(sorted({Fraction(rng.randint(-40, 40), rng.choice((1, 2, 3, 4)))
                                    for _ in range(rng.choice((4, 5)))})) for v in universe.variables}
        weight = {v: rng.choice((Fraction(1, 3), Fraction(1), Fraction(2), Fraction(5)))
                  for v in universe.variables}
        held = {v: rng.randrange(len(support[v])) for v in universe.variables}
        raw, families = {}, {}
        from itertools import product
        for key, info in universe.densities.items():
            cells = list(product(*(range(len(support[v])) for v in info.variables)))
            if info.params:
                families[key] = ({c: Fraction(rng.randint(-8, 8), 4) for c in cells},
                                 {c: {p: Fraction(rng.randint(-8, 8), 4) for p in info.params} for c in cells})
            else:
                raw[key] = {c: Fraction(rng.randint(1, 50)) for c in cells}
        params = {p: Fraction(rng.randint(-40, 40), 4) for p in universe.parameters}
        try:
            instance = custom_instance(universe, "oracle", seed, support=support, weight=weight, held=held,
                                       params=params, raw=raw, families=families,
                                       posterior=("away" if seed % 4 == 1 else seed % 4 == 2))
            left, right = evaluate_on(lhs, instance, 250), evaluate_on(rhs, instance, 250)
        except Exception:
            continue
        scale = max(mpmath.mpf(1), abs(left), abs(right))
        gap = (left - right) / scale
        tiny = mpmath.mpf(10) ** -20
        if (step.relation == "=" and abs(gap) > tiny) or (step.relation in (">=", ">") and gap < -tiny) \
                or (step.relation in ("<=", "<") and gap > tiny):
            return True
    return False


def sweep(count: int) -> None:
    """``count`` random steps: how many are tested, and how many of those are false."""
    import random
    rng = random.Random("sweep")
    verdicts, false_tested, false_proved = {}, [], []
    for _ in range(count):
        claim = f"{random_expression(rng)} {rng.choice(['=', '<=', '>='])} {random_expression(rng)}"
        try:
            step = check_derivation(parse_text(CONTEXT + claim + "\n")).chains[-1].steps[0]
        except Exception:
            continue
        verdicts[step.verdict] = verdicts.get(step.verdict, 0) + 1
        if step.verdict in ("tested", "proved") and oracle_false(step.step):
            (false_tested if step.verdict == "tested" else false_proved).append(claim)
    print(f"sweep of {count} random steps: " + ", ".join(f"{k} {v}" for k, v in sorted(verdicts.items())))
    print(f"tested but false on the oracle's instances: {len(false_tested)} of {verdicts.get('tested', 0)}; "
          f"proved but false: {len(false_proved)}")
    for claim in false_tested + false_proved:
        print("  ", claim)


def main(argv) -> None:
    repeats = int(argv[0]) if argv and argv[0].isdigit() else 5
    before = argv[argv.index("--before") + 1] if "--before" in argv else None
    if "--sweep" in argv:
        sweep(int(argv[argv.index("--sweep") + 1]))
        return
    check_derivation(parse_text(CONTEXT + "E_q[Z^2] >= E_q[Z]^2\n"))   # warm-up: SymPy's lazy imports
    print("| claim | verdict | step | of which search | instances searched |")
    print("|---|---|---|---|---|")
    for claim in TESTED + REFUTED_BY_SEARCH:
        total, search, verdict, searched = per_step(claim, repeats)
        print(f"| `{claim}` | {verdict} | {total * 1000:.0f} ms | {search * 1000:.0f} ms | {searched} |")
    print()
    figures = whole_process(repeats, before)
    base = figures[0][1]
    print("| command | wall | ratio to import sympy |")
    print("|---|---|---|")
    for name, seconds in figures:
        print(f"| {name} | {seconds * 1000:.0f} ms | {seconds / base:.2f}x |")


if __name__ == "__main__":
    main(sys.argv[1:])
