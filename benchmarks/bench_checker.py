"""Benchmarks of the checker: wall time per file and per step, each in a fresh process.

Run: python benchmarks/bench_checker.py [repeats]
Prints the median over the repeats of: start-up (import), parsing, checking
the shared examples and the built-in derivations, and scaling with the number
of terms in a step (sums of expectations of logs) and with nesting depth.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "examples"

CASE = textwrap.dedent("""
    import json, sys, time
    t0 = time.perf_counter()
    from symelbo.core.checker import check_derivation
    from symelbo.core.generate import generate
    from symelbo.io.parser import parse_file, parse_text
    t1 = time.perf_counter()
    kind, arg = sys.argv[1], sys.argv[2]
    if kind == "file":
        derivation = parse_file(arg)
    elif kind == "derive":
        derivation = generate(arg)
    else:
        derivation = parse_text(arg)
    t2 = time.perf_counter()
    result = check_derivation(derivation)
    t3 = time.perf_counter()
    steps = sum(len(c.steps) for c in result.chains)
    print(json.dumps({"import": t1 - t0, "parse": t2 - t1, "check": t3 - t2, "steps": steps,
                      "verdict": result.verdict}))
""")


def run(kind: str, arg: str, repeats: int) -> dict:
    samples = []
    for _ in range(repeats):
        out = subprocess.run([sys.executable, "-c", CASE, kind, arg], capture_output=True, text=True,
                             check=True).stdout
        samples.append(json.loads(out))
    return {key: (statistics.median(s[key] for s in samples) if key not in ("verdict", "steps")
                  else samples[0][key]) for key in samples[0]}


def sum_of_terms(n: int) -> str:
    """KL-style identity with n observed variables: both sides have about 3n terms."""
    lhs = " + ".join(f"KL(q(Z) || p(Z | X{i}))" for i in range(n))
    rhs = " + ".join(f"E_q[log q(Z)] - E_q[log p(X{i}, Z)] + log p(X{i})" for i in range(n))
    return f"{lhs}\n  = {rhs}\n"


def nested(depth: int) -> str:
    body = "log p(X, Z)"
    for _ in range(depth):
        body = f"E_q[{body} + log q(Z)]"
    return f"q(Z) = q(Z)\n\n{body}\n  = {body} + KL(q(Z) || q(Z))\n"


def main() -> None:
    repeats = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    rows = []
    for path in sorted(SHARED.glob("*.calc")):
        rows.append((path.name, run("file", str(path), repeats)))
    for name in ("kl-shuffle", "jensen", "gradient"):
        rows.append((f"derive {name}", run("derive", name, repeats)))
    for n in (1, 4, 16):
        rows.append((f"KL identity, {n} terms", run("text", sum_of_terms(n), repeats)))
    rows.append(("tested step (no proof)", run("text", "q(Z) = q(Z)\n\nE_q[(log q(Z))^2] >= (E_q[log q(Z)])^2\n", repeats)))
    rows.append(("near miss (1e-40), refuted", run("text", "log p(X) = log p(X) + 10^-40\n", repeats)))
    for depth in (2, 4, 8):
        rows.append((f"nested E, depth {depth}", run("text", nested(depth), repeats)))
    print(f"{'case':<28} {'import s':>9} {'parse s':>8} {'check s':>8} {'steps':>6} {'ms/step':>8}  verdict")
    for name, r in rows:
        print(f"{name:<28} {r['import']:>9.2f} {r['parse']:>8.3f} {r['check']:>8.3f} {r['steps']:>6}"
              f" {1000 * r['check'] / max(r['steps'], 1):>8.1f}  {r['verdict']}")


if __name__ == "__main__":
    main()
