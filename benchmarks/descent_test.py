"""How often the descent test is wrong: pure noise that passes, real short noisy descents that do not.

Before any method picks a point, ``lr_finder.suggestion.evaluate`` asks whether the curve's descent stands
out of its own noise. Two kinds of synthetic sweep (1e-7 to 10, ``n`` points):

* pure noise around a constant (log-normal, 10% per step): a suggestion is a false descent;
* a real descent: log loss falling by 0.7 to 3 (a factor 2 to 20) around a random LR in 1e-4.5..1e-2.5,
  then exploding, with 0 to 8% noise per step: ``None`` is a missed descent.

Prints the rates per ``n`` as a markdown table. Run: ``python benchmarks/descent_test.py`` (``--curves``
per cell, default 5000).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

import numpy as np

from lr_finder import analyze


def noise_curve(n: int, rng: np.random.Generator) -> np.ndarray:
    return 2.3 * np.exp(rng.normal(0, 0.1, n))


def descent_curve(n: int, rng: np.random.Generator) -> np.ndarray:
    x = np.linspace(-7, 1, n)
    drop, noise, centre = rng.uniform(0.7, 3.0), rng.uniform(0, 0.08), rng.uniform(-4.5, -2.5)
    y = drop / 2 * (1 - np.tanh(2 * (x - centre))) + 3 * np.maximum(0, x - centre - 2) ** 2
    return np.exp(y + rng.normal(0, noise, n))


def rates(n: int, curves: int, seed: int = 0) -> tuple[float, float]:
    """(false descents among noise curves, missed descents among real ones), as fractions."""
    rng = np.random.default_rng(seed)
    lrs = np.logspace(-7, 1, n)
    false = sum(analyze(lrs, noise_curve(n, rng)).lr is not None for _ in range(curves))
    missed = sum(analyze(lrs, descent_curve(n, rng)).lr is None for _ in range(curves))
    return false / curves, missed / curves


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--curves", type=int, default=5000, help="curves of each kind per length")
    args = p.parse_args(argv)
    lines = [
        f"# Descent test ({args.curves} curves of each kind per length)",
        "",
        "| points | pure noise given an LR (false descent) | real descent given None (missed) |",
        "|---|---|---|",
    ]
    for n in (20, 30, 60, 100, 300):
        false, missed = rates(n, args.curves)
        lines.append(f"| {n} | {false:.4%} | {missed:.4%} |")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
