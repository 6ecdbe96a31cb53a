"""Scores `symelbo model FILE --json` on every model of the zoo against the oracle values.

    python benchmarks/model_zoo/run.py [--times] [NAME ...]

The table is deterministic (same symelbo, same bytes) unless --times adds each run's seconds.

Each model's ELBO, log p(X) and KL(q || posterior) from symelbo are compared with
oracle.py's (computed without symelbo). Categories:

  full     all three values given, each within 1e-6 (relative or absolute) of the oracle
           (an infinite oracle value must be reported as that same infinity)
  partial  nothing wrong, but some value not computed (null), with its reason
  WRONG    a value given (or an infinity claimed) that disagrees with the oracle
  hang     more than 30 s (killed at 60 s)
  error    symelbo exited 2/3 or printed no JSON

Exit status 0 always: this is a measurement, not a test.
"""
import json
import math
import os
import re
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import oracle  # noqa: E402

PYTHON = sys.executable       # the interpreter that runs this script runs symelbo
TOL = 1e-6
LIMIT = 30.0
TIMEOUT = 60.0
KEYS = (("elbo", "elbo"), ("log_evidence", "log_evidence"), ("kl", "kl"))


def close(got, want):
    """Within TOL relative or absolute; infinities must match exactly."""
    if math.isinf(want) or math.isinf(got):
        return got == want
    return abs(got - want) <= TOL * max(1.0, abs(want))


def run_model(path):
    start = time.monotonic()
    try:
        proc = subprocess.run([PYTHON, "-m", "symelbo", "model", path, "--json"],
                              capture_output=True, text=True, timeout=TIMEOUT, cwd=HERE)
    except subprocess.TimeoutExpired:
        return None, time.monotonic() - start, "timeout"
    elapsed = time.monotonic() - start
    try:
        return json.loads(proc.stdout), elapsed, proc.returncode
    except ValueError:
        return None, elapsed, f"exit {proc.returncode}: {(proc.stderr or proc.stdout).strip()[-200:]}"


def score(name, out, elapsed, status, want):
    """(category, per-quantity notes) for one model."""
    if out is None:
        return ("hang" if status == "timeout" else "error"), [str(status)], None
    if elapsed > LIMIT:
        category = "hang"
    else:
        category = None
    notes, wrong, missing, worst = [], False, False, None
    # why no numerical fallback was given, if a check says so (the value's reason names only
    # the missing closed form)
    failed = sorted({m.group(0) for c in out.get("checks", [])
                     for m in re.finditer(r"(mpmath quadrature (did not|failed)|cubature failed)[^;)]*",
                                          c.get("message") or "")})
    for key, okey in KEYS:
        q = out.get(key)
        w = want[okey]
        value = q.get("value") if isinstance(q, dict) else None
        reason = (q.get("reason") if isinstance(q, dict) else None) or out.get("reason") or ""
        if value is None:
            claims_inf = any(s in reason for s in ("infinit", "-inf", "+inf"))
            if claims_inf and math.isinf(w):
                continue      # an infinite value, reported as such (null in JSON, with its reason)
            if claims_inf:
                wrong = True
                notes.append(f"{key}: WRONG claims infinite ({reason}); oracle {w!r}")
            else:
                missing = True
                extra = [f for f in failed if f not in reason]
                extra = f" [{'; '.join(extra)}]" if extra else ""
                notes.append(f"{key}: not computed: {reason or '(no reason given)'}{extra}")
            continue
        value = float(value)
        if math.isfinite(value) and math.isfinite(w):
            worst = max(worst or 0.0, abs(value - w) / max(1.0, abs(w)))
        if not close(value, w):
            wrong = True
            notes.append(f"{key}: WRONG symelbo {value!r} oracle {w!r} (diff {value - w:.3g})")
    if category is None:
        category = "WRONG" if wrong else ("partial" if missing else "full")
    elif wrong:
        category = "WRONG"
    return category, notes, worst


def main(argv):
    show_times = "--times" in argv
    argv = [a for a in argv if a != "--times"]
    names = argv or sorted(oracle.ORACLES)
    rows, totals = [], {}
    for name in names:
        want = oracle.ORACLES[name]()
        out, elapsed, status = run_model(os.path.join(HERE, name))
        category, notes, worst = score(name, out, elapsed, status, want)
        totals[category] = totals.get(category, 0) + 1
        rows.append((name, category, elapsed, notes))
        seconds = f" {elapsed:6.1f} s" if show_times else ""
        agree = "" if worst is None else f"  largest difference {worst:.0e}"
        print(f"{name:38s} {category:8s}{seconds}{agree}", flush=True)
        for note in notes:
            print(f"    {note}", flush=True)
    print()
    print(f"{len(rows)} models: " + ", ".join(f"{k} {totals.get(k, 0)}"
                                             for k in ("full", "partial", "WRONG", "hang", "error")))
    return 0


if __name__ == "__main__":
    main(sys.argv[1:])
    sys.exit(0)
