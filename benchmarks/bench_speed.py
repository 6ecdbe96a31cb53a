"""Speed of symelbo side by side with the naive routes, in one run.

Run: ``python benchmarks/bench_speed.py [--repeats R] [--quick]``

Writes a Markdown report to stdout, to ``benchmarks/RESULTS.md`` and into the
README (between its ``speed:begin``/``speed:end`` markers):

1. every step of the three built-in derivations checked by
   ``symelbo.core.checker.check_step`` against the same identity written on an
   explicit K-state instance (K = 2, 8, 16; q_1..q_K and p(x, z_k) positive
   symbols) and proved by ``sympy.simplify(lhs - rhs) == 0``;
   The claims the derivations establish (log p(X) = ELBO + KL; grad ELBO = -grad KL)
   are also checked as single steps with no rule named, against the same claim on K states;
2. ``symelbo check FILE`` as a whole process against ``python -c "import sympy"``;
3. ELBO, log evidence and KL of a Normal-Gamma model with 10, 10**3, 10**6
   observations through the Python API (data passed as a numpy array; making
   the data is not timed);
4. the ELBO of mean-field models with N = 10, 100, 1000 latent factors (and then their
   exact log evidence and KL, with the identity log p(X) = ELBO + KL checked at the values).

Times are medians of repeated runs (``time.perf_counter``). Every measurement
runs in a fresh process; inside one, SymPy's cache is cleared before each
repeat so a repeat does not reuse the previous one's work.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import textwrap
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "examples"
NAIVE_TIMEOUT = 30.0  # seconds per naive step

# --- 1. steps: symelbo ---------------------------------------------------------

SYMELBO_STEPS = textwrap.dedent("""
    import json, statistics, sys, time
    from sympy.core.cache import clear_cache
    from symelbo.core.checker import CheckOptions, check_step
    from symelbo.core.generate import generate
    from symelbo.io.parser import parse_step
    from symelbo.core.printing import calc_str
    from symelbo.core.semantics import Universe, instances
    name, repeats = sys.argv[1], int(sys.argv[2])
    derivation = generate(name)
    exprs = []
    for chain in derivation.chains:
        exprs.append(chain.first)
        for step in chain.steps:
            exprs += [step.lhs, step.rhs]
    universe = Universe.of(exprs)
    list(instances(universe, CheckOptions().instances))   # per-file set-up, as in check_derivation
    out = []
    for c, chain in enumerate(derivation.chains):
        for s, step in enumerate(chain.steps):
            times, verdict = [], None
            text = (calc_str(step.lhs), step.relation, calc_str(step.rhs), step.by)
            for _ in range(repeats):
                clear_cache()
                for instance in universe.built.values():
                    instance.memo.clear()   # no values carried over from the last repeat
                t0 = time.perf_counter()
                result = check_step(parse_step(*text), CheckOptions(), universe)
                times.append(time.perf_counter() - t0)
                verdict = result.verdict
            out.append({"chain": c + 1, "step": s + 1, "relation": step.relation,
                        "rhs": str(step.rhs), "verdict": verdict,
                        "seconds": statistics.median(times)})
    print(json.dumps(out))
""")

# --- 1. steps: the naive route on an explicit K-state instance ------------------

NAIVE_STEPS = textwrap.dedent('''
    import json, signal, statistics, sys, time
    import sympy as sp
    from sympy.core.cache import clear_cache
    name, K, repeats = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    P = sp.symbols(f"P1:{K + 1}", positive=True)      # p(x, z_k)
    free = sp.symbols(f"q1:{K + 1}", positive=True)   # q_k, free positive symbols
    normed = list(free[:-1]) + [1 - sum(free[:-1])]   # q_K = 1 - sum of the others
    px = sum(P)

    def softmax():
        """The family q_phi as a softmax over K states, and the parameter phi_1."""
        phi = sp.symbols(f"phi1:{K + 1}", real=True)
        Z = sum(sp.exp(f) for f in phi)
        return [sp.exp(f) / Z for f in phi], phi[0]

    def E(q, f):
        return sum(qk * f(k) for k, qk in enumerate(q))

    def post(k):
        return P[k] / px

    def KL(q):
        return E(q, lambda k: sp.log(q[k] / post(k)))

    def ELBO(q):
        return E(q, lambda k: sp.log(P[k] / q[k]))

    # Each step as a thunk building (lhs, rhs) on the explicit instance, or None when it
    # has no finite identity form (an inequality). Steps that need sum q = 1 use q_K = 1 - sum.
    def steps():
        q, n = free, normed
        if name == "kl-shuffle":
            return [
                lambda: (KL(q), -E(q, lambda k: sp.log(post(k) / q[k]))),
                lambda: (-E(q, lambda k: sp.log(post(k) / q[k])), E(q, lambda k: sp.log(q[k] / post(k)))),
                lambda: (E(q, lambda k: sp.log(q[k] / post(k))),
                         -E(q, lambda k: sp.log(post(k))) + E(q, lambda k: sp.log(q[k]))),
                lambda: (-E(q, lambda k: sp.log(post(k))) + E(q, lambda k: sp.log(q[k])),
                         E(q, lambda k: sp.log(px)) - E(q, lambda k: sp.log(P[k]))
                         + E(q, lambda k: sp.log(q[k]))),
                lambda: (E(n, lambda k: sp.log(px)) - E(n, lambda k: sp.log(P[k]))
                         + E(n, lambda k: sp.log(n[k])),
                         sp.log(px) + E(n, lambda k: sp.log(n[k] / P[k]))),
                lambda: (sp.log(px) + E(q, lambda k: sp.log(q[k] / P[k])),
                         sp.log(px) - E(q, lambda k: sp.log(P[k] / q[k]))),
                lambda: (sp.log(px), ELBO(n) + KL(n)),
                lambda: (E(q, lambda k: sp.log(P[k] / q[k])) + KL(q), ELBO(q) + KL(q)),
                None,
            ]
        if name == "jensen":
            return [
                lambda: (sp.log(px), sp.log(sum(P))),
                lambda: (sp.log(sum(P)), sp.log(sum(q[k] * P[k] / q[k] for k in range(K)))),
                lambda: (sp.log(sum(q[k] * P[k] / q[k] for k in range(K))),
                         sp.log(E(q, lambda k: P[k] / q[k]))),
                None,
                lambda: (E(q, lambda k: sp.log(P[k] / q[k])), ELBO(q)),
            ]
        if name == "gradient":
            qs, d = softmax()
            return [
                lambda: (sp.diff(ELBO(qs), d), sp.diff(sp.log(px) - KL(qs), d)),
                lambda: (sp.diff(sp.log(px) - KL(qs), d), sp.diff(sp.log(px), d) - sp.diff(KL(qs), d)),
                lambda: (sp.diff(sp.log(px), d) - sp.diff(KL(qs), d), -sp.diff(KL(qs), d)),
            ]
        raise SystemExit(name)

    def identity():
        """The claim each derivation establishes, as one step."""
        n = normed
        if name == "kl-shuffle":
            return [lambda: (sp.log(px), ELBO(n) + KL(n))]
        qs, d = softmax()
        return [lambda: (sp.diff(ELBO(qs), d), -sp.diff(KL(qs), d))]

    claims = identity if sys.argv[5] == "identity" else steps

    def step(i):
        """Only the i-th pair: the others are never built."""
        return claims()[i]()

    class Timeout(Exception):
        pass

    def alarm(signum, frame):
        raise Timeout

    signal.signal(signal.SIGALRM, alarm)
    # from the claim to the verdict: build this step's K-state instance (SymPy's
    # constructors already cancel, expand and differentiate), then simplify(lhs - rhs)
    out = []
    for i in range(len(claims())):
        times, proved, settled = [], None, False
        for _ in range(repeats):
            if claims()[i] is None:
                break
            clear_cache()
            t0 = time.perf_counter()
            signal.alarm(int(sys.argv[4]))
            try:
                pair = step(i)
                difference = pair[0] - pair[1]
                settled = difference == 0   # SymPy's constructors already cancelled it
                proved = sp.simplify(difference) == 0
            except Timeout:
                proved, times = "timeout", []
                break
            finally:
                signal.alarm(0)
            times.append(time.perf_counter() - t0)
        out.append({"seconds": statistics.median(times) if times else None, "proved": proved,
                    "settled": settled})
        print(json.dumps(out[-1]), flush=True)
''')


def run_json_lines(code: str, args: list[str], timeout: float | None = None):
    """Run ``code`` in a fresh interpreter; its stdout lines as JSON (partial on timeout)."""
    try:
        proc = subprocess.run([sys.executable, "-c", code, *args], capture_output=True,
                              text=True, timeout=timeout, cwd=REPO)
        stdout, timed_out = proc.stdout, False
        if proc.returncode != 0:
            raise RuntimeError(proc.stderr[-2000:])
    except subprocess.TimeoutExpired as exc:
        stdout = exc.stdout.decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        timed_out = True
    return [json.loads(line) for line in stdout.splitlines() if line.strip()], timed_out


def bench_steps(repeats: int, ks: list[int]) -> list[dict]:
    rows = []
    for name in ("kl-shuffle", "jensen", "gradient"):
        (ours,), _ = run_json_lines(SYMELBO_STEPS, [name, str(repeats)])
        naive = {}
        for K in ks:
            reps = repeats if K <= 8 else 1
            lines, _ = run_json_lines(NAIVE_STEPS, [name, str(K), str(reps),
                                                    str(int(NAIVE_TIMEOUT)), "steps"])
            naive[K] = lines
        for i, step in enumerate(ours):
            row = dict(step, derivation=name, naive={})
            for K in ks:
                row["naive"][K] = naive[K][i] if i < len(naive[K]) else {
                    "seconds": None, "proved": "timeout"}
            rows.append(row)
    return rows


# --- 1b. the seed identities in one step, with no rule named ------------------------

#: The claims the derivations establish, each as a single step: symelbo must find the
#: proof itself (the naive route gets the same claim on K explicit states).
IDENTITIES = {
    "kl-shuffle": ("log p(X)", "=", "ELBO(q(Z), p(X, Z)) + KL(q(Z) || p(Z | X))"),
    "gradient": ("grad_phi[ELBO(q_phi(theta), p(theta, x))]", "=",
                 "-grad_phi[KL(q_phi(theta) || p(theta | x))]"),
}

SYMELBO_IDENTITY = textwrap.dedent("""
    import json, statistics, sys, time
    from sympy.core.cache import clear_cache
    from symelbo.core.checker import CheckOptions, check_step
    from symelbo.io.parser import parse_step
    from symelbo.core.semantics import Universe, instances
    lhs, relation, rhs, repeats = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    step = parse_step(lhs, relation, rhs)
    universe = Universe.of([step.lhs, step.rhs])
    list(instances(universe, CheckOptions().instances))
    times = []
    for _ in range(repeats):
        clear_cache()
        for instance in universe.built.values():
            instance.memo.clear()
        t0 = time.perf_counter()
        result = check_step(step, CheckOptions(), universe)
        times.append(time.perf_counter() - t0)
    print(json.dumps({"seconds": statistics.median(times), "verdict": result.verdict,
                      "found_by": list(result.found_by)}))
""")

def bench_identities(repeats: int, ks: list[int]) -> list[dict]:
    rows = []
    for name, (lhs, relation, rhs) in IDENTITIES.items():
        (ours,), _ = run_json_lines(SYMELBO_IDENTITY, [lhs, relation, rhs, str(repeats)])
        row = dict(ours, derivation=name, claim=f"{lhs} {relation} {rhs}", naive={})
        for K in ks:
            reps = repeats if K <= 8 else 1
            lines, _ = run_json_lines(NAIVE_STEPS, [name, str(K), str(reps), str(int(NAIVE_TIMEOUT)),
                                                    "identity"])
            row["naive"][K] = lines[0] if lines else {"seconds": None, "proved": "timeout"}
        rows.append(row)
    return rows


# --- 2. the command line against importing SymPy -----------------------------------

def wall(cmd: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, capture_output=True, cwd=REPO)
    return time.perf_counter() - t0


def bench_cli(repeats: int) -> list[dict]:
    # byte-compile the package first, as an installed copy is: otherwise a checkout run
    # with PYTHONDONTWRITEBYTECODE set recompiles every module on every start
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(REPO / "symelbo")],
                   capture_output=True, check=True)
    files = [REPO / "derivations" / "kl-shuffle.calc"]
    files += [f for f in (SHARED / "kl_shuffle.calc", SHARED / "jensen.calc") if f.exists()]
    commands = [[sys.executable, "-c", "import sympy"]]
    commands += [[sys.executable, "-m", "symelbo", "check", str(f)] for f in files]
    # the runs are interleaved, so a slow spell of the machine falls on every command alike
    times: list[list[float]] = [[] for _ in commands]
    for _ in range(repeats):
        for cmd, seen in zip(commands, times):
            seen.append(wall(cmd))
    base = statistics.median(times[0])
    rows = [{"what": 'python -c "import sympy"', "seconds": base, "ratio": 1.0}]
    for f, cmd, seen in zip(files, commands[1:], times[1:]):
        rc = subprocess.run(cmd, capture_output=True, cwd=REPO).returncode
        shown = f.relative_to(REPO.parent) if REPO.parent in f.parents else f
        t = statistics.median(seen)
        rows.append({"what": f"symelbo check {shown} (exit {rc})", "seconds": t,
                     "ratio": t / base})
    return rows


# --- 3. observations ----------------------------------------------------------------

OBSERVATIONS = textwrap.dedent("""
    import json, sys, time
    import numpy as np
    from symelbo.models.model import model_from_dict
    n = int(sys.argv[1])
    data = np.round(np.random.default_rng(0).normal(5, 1, n), 6)
    doc = {"latent": {"mu": "Normal(mu0, 1/sqrt(lambda0*tau))", "tau": "Gamma(a0, b0)"},
           "observed": {"x": {"dist": "Normal(mu, 1/sqrt(tau))", "data": data}},
           "variational": {"mu": "Normal(m, s)", "tau": "Gamma(a, b)"},
           "values": {"mu0": 5, "lambda0": 1, "a0": 2, "b0": 2, "m": 4.9, "s": 0.01,
                      "a": 5000, "b": 5000}}
    t0 = time.perf_counter()
    m = model_from_dict(doc)
    elbo, ev, kl = (m.value(m.elbo()), m.value(m.log_evidence()), m.value(m.kl_to_posterior()))
    t1 = time.perf_counter()
    assert abs(ev - elbo - kl) <= 1e-9 * (1 + abs(ev)), (elbo, ev, kl)
    print(json.dumps({"seconds": t1 - t0, "elbo": float(elbo)}))
""")


def bench_observations(repeats: int) -> list[dict]:
    rows = []
    for n in (10, 10 ** 3, 10 ** 6):
        times = [run_json_lines(OBSERVATIONS, [str(n)])[0][0]["seconds"] for _ in range(repeats)]
        rows.append({"n": n, "seconds": statistics.median(times)})
    return rows


# --- 4. latent factors ------------------------------------------------------------

LATENTS = textwrap.dedent("""
    import json, random, sys, time
    from symelbo.models.model import model_from_dict
    kind, N = sys.argv[1], int(sys.argv[2])
    rng = random.Random(0)
    if kind == "mixture":
        data = [round(rng.gauss(rng.choice((-2, 2)), 1), 3) for _ in range(N)]
        doc = {"latent": {"z": {"dist": "Bernoulli(w)", "per": "x"}},
               "observed": {"x": {"dist": "Normal(m1 + (m2 - m1)*z, s)", "data": data}},
               "variational": {"z": "Bernoulli(r)"},
               "values": {"w": 0.5, "m1": -2, "m2": 2, "s": 1,
                          "r": [round(0.01 + 0.98 * rng.random(), 3) for _ in range(N)]}}
    else:
        data = [round(rng.gauss(0, 2), 3) for _ in range(N)]
        doc = {"latent": {"z": {"dist": "Normal(mu0, s0)", "per": "x"}},
               "observed": {"x": {"dist": "Normal(z, s)", "data": data}},
               "variational": {"z": "Normal(m, v)"},
               "values": {"mu0": 0, "s0": 1, "s": 1, "m": [round(rng.gauss(0, 1), 3)
                                                            for _ in range(N)], "v": 0.5}}
    t0 = time.perf_counter()
    m = model_from_dict(doc)
    elbo = m.elbo()
    assert len(m.latent_symbols) == N and not (elbo.free_symbols & set(m.latent_symbols))
    value = m.value(elbo)
    t1 = time.perf_counter()
    evidence, kl = m.value(m.log_evidence()), m.value(m.kl_to_posterior())
    t2 = time.perf_counter()
    assert abs(evidence - value - kl) <= 1e-9 * (1 + abs(evidence)), (value, evidence, kl)
    print(json.dumps({"seconds": t1 - t0, "rest": t2 - t1, "elbo": float(value)}))
""")

LATENT_KINDS = {"mixture": "N Bernoulli assignments (two-component mixture)",
                "normal": "N Normal latents, one observation each"}


def bench_latents(repeats: int, sizes: list[int]) -> list[dict]:
    rows = []
    for kind in LATENT_KINDS:
        for N in sizes:
            runs = [run_json_lines(LATENTS, [kind, str(N)])[0][0] for _ in range(repeats)]
            rows.append({"kind": kind, "N": N,
                         "seconds": statistics.median(r["seconds"] for r in runs),
                         "rest": statistics.median(r["rest"] for r in runs)})
    return rows


# --- report -------------------------------------------------------------------------

def fmt(t: float | None) -> str:
    if t is None:
        return "-"
    return f"{t * 1000:.0f} ms" if t < 1 else f"{t:.2f} s"


def naive_cell(cell: dict) -> str:
    if cell["proved"] == "timeout":
        return f"> {NAIVE_TIMEOUT:.0f} s"
    if cell["seconds"] is None:
        return "n/a"
    note = "" if cell["proved"] else " (not 0)"
    if cell.get("settled"):
        note = " (0 as built)"
    return fmt(cell["seconds"]) + note


def ratio(cell: dict, ours: float) -> str:
    if cell["proved"] == "timeout":
        return f"> {NAIVE_TIMEOUT / ours:.0f}x"
    if cell["seconds"] is None:
        return "n/a"
    return f"{cell['seconds'] / ours:.1f}x"


def report(steps, identities, ks, cli, obs, lat, repeats, step_repeats) -> str:
    out = ["## Speed", "",
           f"Medians of {step_repeats} runs for steps and identities, both routes (naive K=16: "
           f"one run), and of {repeats} for models; each case in a fresh process; "
           "regenerate with `python benchmarks/bench_speed.py`.", "",
           "### Each step: `check_step` vs `sympy.simplify(lhs - rhs) == 0` on K explicit states",
           "",
           "Naive: q_1..q_K and p(x, z_k) positive symbols; steps that need sum q = 1 write "
           "q_K = 1 - sum of the others. Timed from the claim to the verdict: building the step's "
           "K-state instance (SymPy's constructors cancel, expand and differentiate on the way) "
           "and `simplify(lhs - rhs)`, against parsing the step's text and `check_step` (the "
           "file's densities and concrete instances are set up once per file, as `symelbo "
           "check` does, and not timed). "
           "`(not 0)` = simplify did not reach 0; `(0 as built)` = SymPy's constructors "
           "already cancelled lhs - rhs, so simplify had nothing left to prove; n/a = an "
           "inequality, no finite identity to simplify.", ""]
    head = "| derivation | step | symelbo | verdict | " + " | ".join(
        f"naive K={K} | ratio K={K}" for K in ks) + " |"
    out += [head, "|" + "---|" * (4 + 2 * len(ks))]
    for r in steps:
        rhs = r["rhs"] if len(r["rhs"]) <= 48 else r["rhs"][:45] + "..."
        rhs = rhs.replace("|", "\\|")  # a bar inside a table cell
        cells = []
        for K in ks:
            cells += [naive_cell(r["naive"][K]), ratio(r["naive"][K], r["seconds"])]
        out.append(f"| {r['derivation']} | {r['chain']}.{r['step']} `{r['relation']} {rhs}` | "
                   f"{fmt(r['seconds'])} | {r['verdict']} | " + " | ".join(cells) + " |")
    out += ["", "### The seed identities as one step: `check_step` without `by` (proof search) "
            "vs `simplify(lhs - rhs)`", "",
            "| identity | symelbo | verdict (found by) | " + " | ".join(
                f"naive K={K} | ratio K={K}" for K in ks) + " |",
            "|" + "---|" * (3 + 2 * len(ks))]
    for r in identities:
        cells = []
        for K in ks:
            cells += [naive_cell(r["naive"][K]), ratio(r["naive"][K], r["seconds"])]
        claim = r["claim"].replace("|", "\\|")
        out.append(f"| `{claim}` | {fmt(r['seconds'])} | {r['verdict']} "
                   f"({', '.join(r['found_by'])}) | " + " | ".join(cells) + " |")
    out += ["", "### Start-up: `symelbo check` as a whole process (target: at most 1.5x)", "",
            "Medians of 9 runs, interleaved with `import sympy` so that the load of the machine "
            "falls on both alike.", "",
            "| command | wall | ratio to import sympy |", "|---|---|---|"]
    out += [f"| `{r['what']}` | {fmt(r['seconds'])} | {r['ratio']:.2f}x |" for r in cli]
    base = obs[0]["seconds"]
    out += ["", "### Observations: ELBO, log evidence and KL with their values, Normal-Gamma "
            "model (target: 10^6 at most 1.5x of 10)", "",
            "| observations | time | ratio to n=10 |", "|---|---|---|"]
    out += [f"| {r['n']:,} | {fmt(r['seconds'])} | {r['seconds'] / base:.2f}x |" for r in obs]
    out += ["", "### Latent factors: build the model, ELBO in closed form and its value "
            "(target: linear, N=1000 under 5 s)", "",
            "| model | N | ELBO | per factor | then log evidence and KL | per factor |",
            "|---|---|---|---|---|---|"]
    out += [f"| {LATENT_KINDS[r['kind']]} | {r['N']} | {fmt(r['seconds'])} | "
            f"{r['seconds'] / r['N'] * 1000:.2f} ms | {fmt(r['rest'])} | "
            f"{r['rest'] / r['N'] * 1000:.2f} ms |" for r in lat]
    return "\n".join(out) + "\n"


#: Runs per step and identity, both routes.
STEP_REPEATS = 7


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="K = 2 only, N up to 100")
    a = ap.parse_args(argv)
    ks = [2] if a.quick else [2, 8, 16]
    sizes = [10, 100] if a.quick else [10, 100, 1000]
    # steps take milliseconds: more runs, so that a slow spell of the machine does not
    # make the median (the naive route gets as many)
    step_repeats = max(a.repeats, STEP_REPEATS)
    steps = bench_steps(step_repeats, ks)
    identities = bench_identities(step_repeats, ks)
    cli = bench_cli(max(a.repeats, 9))
    obs = bench_observations(a.repeats)
    lat = bench_latents(a.repeats, sizes)
    text = report(steps, identities, ks, cli, obs, lat, a.repeats, step_repeats)
    print(text)
    (REPO / "benchmarks" / "RESULTS.md").write_text(text, encoding="utf-8")
    readme = REPO / "README.md"
    begin, end = "<!-- speed:begin (written by benchmarks/bench_speed.py) -->\n", "<!-- speed:end -->"
    old = readme.read_text(encoding="utf-8")
    if begin in old and end in old:   # the README's copy of the tables, between its markers
        head, rest = old.split(begin, 1)
        tables = text.split("\n", 2)[2]  # without the "## Speed" heading
        readme.write_text(head + begin + tables + end + rest.split(end, 1)[1], encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
