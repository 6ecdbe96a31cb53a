"""Writes the zoo's data files (CSV and .npy) from fixed seeds: run once, the files are committed.

    python benchmarks/model_zoo/make_data.py
"""
import os

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))


def write_csv(name, header, columns):
    path = os.path.join(HERE, name)
    with open(path, "w") as f:
        if header:
            f.write(",".join(header) + "\n")
        for row in zip(*columns):
            f.write(",".join(f"{v:.4f}" if isinstance(v, float) else str(v) for v in row) + "\n")


def main():
    rng = np.random.default_rng(20261201)
    # 120 daily counts of calls at a help desk, rate about 4.2 a day (one value per line)
    calls = rng.poisson(4.2, 120)
    write_csv("helpdesk_calls.csv", None, [[int(c) for c in calls]])
    # 50 measurements of a length, true mean 10.3, instrument noise sd 2
    lengths = np.round(rng.normal(10.3, 2.0, 50), 2)
    write_csv("lengths.csv", None, [[float(v) for v in lengths]])
    # 200 rows of a linear regression y = 1.5 + 0.8 x + N(0, 0.7)
    x = np.round(rng.uniform(-3, 3, 200), 3)
    y = np.round(1.5 + 0.8 * x + rng.normal(0, 0.7, 200), 3)
    write_csv("regression_200.csv", ["x", "y"], [[float(v) for v in x], [float(v) for v in y]])
    # 40 rows of counts over exposures (person-years) with a covariate
    t = np.round(rng.uniform(0.5, 5.0, 40), 2)
    xc = np.round(rng.normal(0, 1, 40), 2)
    yc = rng.poisson(t * np.exp(0.4 + 0.3 * xc))
    write_csv("exposure_40.csv", ["t", "x", "y"], [[float(v) for v in t], [float(v) for v in xc],
                                                   [int(v) for v in yc]])
    # 50 rows of a logistic regression through the origin, weight 1.3
    xl = np.round(rng.normal(0, 1.5, 50), 2)
    yl = (rng.uniform(size=50) < 1 / (1 + np.exp(-1.3 * xl))).astype(int)
    write_csv("logistic_50.csv", ["x", "y"], [[float(v) for v in xl], [int(v) for v in yl]])
    # 10^5 rows of a linear regression, structured .npy array with fields x and y
    n = 100_000
    xb = np.round(rng.normal(0, 1, n), 3)
    yb = np.round(-0.5 + 2.0 * xb + rng.normal(0, 1.0, n), 3)
    arr = np.zeros(n, dtype=[("x", "<f8"), ("y", "<f8")])
    arr["x"], arr["y"] = xb, yb
    np.save(os.path.join(HERE, "regression_1e5.npy"), arr)
    vectors()


def vectors():
    """Data of the vector-latent models, from a seed of their own (the files above unchanged)."""
    rng = np.random.default_rng(20261202)
    # 30 rows of a linear regression with two correlated covariates:
    # y = 0.5 + 1.2 x1 - 0.7 x2 + N(0, 0.5)
    x1 = np.round(rng.normal(0, 1, 30), 2)
    x2 = np.round(0.6 * x1 + 0.8 * rng.normal(0, 1, 30), 2)
    y = np.round(0.5 + 1.2 * x1 - 0.7 * x2 + rng.normal(0, 0.5, 30), 2)
    write_csv("regression3_30.csv", ["x1", "x2", "y"],
              [[float(v) for v in x1], [float(v) for v in x2], [float(v) for v in y]])
    # 25 counts with a covariate: y ~ Poisson(exp(0.8 + 0.5 x))
    xp = np.round(rng.uniform(-2, 2, 25), 2)
    yp = rng.poisson(np.exp(0.8 + 0.5 * xp))
    write_csv("poisson_25.csv", ["x", "y"], [[float(v) for v in xp], [int(v) for v in yp]])


if __name__ == "__main__":
    main()
