"""Time the ELBO and the model checks at n = 10 and n = 10**6 observations.

Data enter only through sufficient statistics, so both sizes should cost about
the same apart from reading the data. Run: ``python benchmarks/bench_models.py``.
Each measurement runs in a fresh process (SymPy caches would otherwise help
the second run).
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import tempfile
from pathlib import Path

CHILD = r"""
import io, json, sys, time
t0 = time.perf_counter()
from symelbo.models.model import load_model
from symelbo.models.model_report import report
t1 = time.perf_counter()
m = load_model(sys.argv[1])
t2 = time.perf_counter()
m.elbo()
t3 = time.perf_counter()
rep = report(m)
t4 = time.perf_counter()
assert all(c["verdict"] in ("proved", "tested") for c in rep["checks"]), rep["checks"]
print(json.dumps({"import": t1 - t0, "load": t2 - t1, "elbo": t3 - t2, "checks": t4 - t3}))
"""

MODELS = {
    "normal_gamma": ('[latent]\nmu = "Normal(mu0, 1/sqrt(lambda0*tau))"\ntau = "Gamma(a0, b0)"\n'
                     '[observed]\nx = {{ dist = "Normal(mu, 1/sqrt(tau))", data_file = "{f}" }}\n'
                     '[variational]\nmu = "Normal(m, s)"\ntau = "Gamma(a, b)"\n'
                     '[values]\nmu0 = 5\nlambda0 = 1\na0 = 2\nb0 = 2\nm = 4.9\ns = 0.01\n'
                     'a = 5000\nb = 5000\n'),
    "gamma_poisson": ('[latent]\nlam = "Gamma(a0, b0)"\n[observed]\n'
                      'k = {{ dist = "Poisson(lam)", data_file = "{f}" }}\n'
                      '[variational]\nlam = "Gamma(a, b)"\n[values]\na0 = 2\nb0 = 0.5\n'
                      'a = 3000000\nb = 1000000\n'),
}


def data(kind: str, n: int, rng: random.Random) -> str:
    if kind == "gamma_poisson":
        return "\n".join(str(min(int(rng.expovariate(1 / 3)), 50)) for _ in range(n))
    return "\n".join(f"{rng.gauss(5, 1):.6f}" for _ in range(n))


def main() -> int:
    rng = random.Random(0)
    root = Path(__file__).resolve().parent.parent
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for kind, template in MODELS.items():
            for n in (10, 10 ** 6):
                d = Path(tmp) / f"{kind}_{n}.csv"
                d.write_text(data(kind, n, rng) + "\n")
                model = Path(tmp) / f"{kind}_{n}.toml"
                model.write_text(template.format(f=d.name))
                res = subprocess.run([sys.executable, "-c", CHILD, str(model)], cwd=root,
                                     capture_output=True, text=True, check=True)
                t = json.loads(res.stdout)
                rows.append((kind, n, t))
                print(f"{kind:14s} n={n:>8d}  load {t['load']:.2f}s  ELBO {t['elbo']:.2f}s  "
                      f"checks {t['checks']:.2f}s  (import {t['import']:.2f}s)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
