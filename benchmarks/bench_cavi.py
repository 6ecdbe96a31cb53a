"""Time ``symelbo cavi`` (derivation, checks and the run to the fixed point) at n = 10 and 10**5.

A model without per-observation latents reads its data only through sufficient
statistics, so 10**5 observations should cost at most 2x what 10 do (the target
of issue 17), not counting reading the data. A mixture has one responsibility
per observation: its run is linear in n (numpy over the observations, weighted
statistics for the global updates). Each measurement runs in a fresh process
(SymPy's caches would otherwise help the second). Run:
``python benchmarks/bench_cavi.py``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

CHILD = r"""
import json, sys, time
from symelbo.models.model import load_model
from symelbo.models.cavi import CaviReport
t0 = time.perf_counter()
m = load_model(sys.argv[1])
m.statistics if not m.has_local_latents() else None   # reading the data, not timed below
t1 = time.perf_counter()
rep = CaviReport(m).as_dict()
t2 = time.perf_counter()
assert rep["converged"] and not rep["declined"], rep
print(json.dumps({"load": t1 - t0, "cavi": t2 - t1, "updates": len(rep["trace"])}))
"""

MODELS = {
    "Normal-Gamma (Bishop 10.1.3)": (
        '[latent]\nmu = "Normal(mu0, 1/sqrt(lambda0*tau))"\ntau = "Gamma(a0, b0)"\n'
        '[observed]\nx = {{ dist = "Normal(mu, 1/sqrt(tau))", data_file = "{f}" }}\n'
        '[variational]\nmu = "Normal(m, s)"\ntau = "Gamma(a, b)"\n'
        '[values]\nmu0 = 5\nlambda0 = 1\na0 = 2\nb0 = 2\nm = 4.9\ns = 0.25\na = 6\nb = 3.5\n',
        lambda rng, n: rng.normal(5, 1, n)),
    "two-Gaussian mixture, unknown means (Blei 2017)": (
        '[latent]\nmu1 = "Normal(0, sigma0)"\nmu2 = "Normal(0, sigma0)"\n'
        'z = {{ dist = "Bernoulli(w)", per = "x" }}\n'
        '[observed]\nx = {{ dist = "Normal(mu1 + (mu2 - mu1)*z, 1)", data_file = "{f}" }}\n'
        '[variational]\nmu1 = "Normal(m1, s1)"\nmu2 = "Normal(m2, s2)"\nz = "Bernoulli(r)"\n'
        '[values]\nsigma0 = 3\nw = 0.5\nm1 = -1\ns1 = 1\nm2 = 1\ns2 = 1\n',
        lambda rng, n: np.where(rng.random(n) < 0.5, -2.0, 2.0) + rng.normal(0, 1, n)),
}


def main() -> int:
    rng = np.random.default_rng(0)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for label, (template, draw) in MODELS.items():
            base = None
            for n in (10, 10 ** 5):
                data = Path(tmp) / f"x{len(rows)}.npy"
                np.save(data, draw(rng, n))
                model = Path(tmp) / f"m{len(rows)}.toml"
                model.write_text(template.format(f=data.name))
                out = subprocess.run([sys.executable, "-c", CHILD, str(model)], check=True,
                                     capture_output=True, text=True).stdout
                t = json.loads(out)
                base = base or t["cavi"]
                rows.append((label, n, t["cavi"], t["cavi"] / base, t["updates"]))
    print("| model | observations | cavi (derive, check, run) | ratio to n=10 | updates |")
    print("|---|---|---|---|---|")
    for label, n, t, ratio, updates in rows:
        print(f"| {label} | {n:,} | {t * 1000:.0f} ms | {ratio:.2f}x | {updates} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
