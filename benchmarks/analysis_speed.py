"""How long the analysis takes as a curve grows: every suggestion method, a CSV read back, a plot.

A synthetic range-test curve (a noisy descent, then an explosion) of ``n`` points, ``n`` from 1e3 to 1e6;
for each, the best of ``--repeat`` runs of: ``lr_finder.analyze`` per method, all methods one after the
other (what ``lr_finder_summary.json`` computes), ``files.write_csv`` + ``files.read_csv``, and
``plotting.draw`` saved as a PNG. Prints a markdown table; the analysis must stay linear (or ``n log n``)
in ``n``: ten times the points, about ten times the time.

Run: ``python benchmarks/analysis_speed.py`` (``--max-n 100000`` for a quick run, ``--no-plot`` to skip
the plots).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

os.environ.setdefault("MPLBACKEND", "Agg")

import numpy as np  # noqa: E402

from lr_finder import History, analyze, files, plotting  # noqa: E402
from lr_finder.smoothing import HAVE_SCIPY  # noqa: E402
from lr_finder.suggestion import METHODS, analyze_history  # noqa: E402


def synthetic(n: int, seed: int = 0) -> History:
    """A sweep from 1e-7 to 10: flat, a descent around 1e-3, an explosion past 1e-1; 5% noise per step."""
    lrs = np.logspace(-7, 1, n)
    x = np.log10(lrs)
    loss = 1.25 - 0.75 * np.tanh(2 * (x + 3)) + 4 * np.maximum(0.0, x + 1) ** 2
    raw = loss * np.exp(np.random.default_rng(seed).normal(0, 0.05, n))
    return History(tuple(lrs), tuple(raw), tuple(raw))


def best_time(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def measure(n: int, repeat: int, plot: bool) -> dict[str, float]:
    h = synthetic(n)
    lrs, raw = np.asarray(h.lr), np.asarray(h.raw_loss)
    row = {m: best_time(lambda m=m: analyze(lrs, raw, m), repeat) for m in METHODS}
    row["all methods"] = best_time(lambda: [analyze(lrs, raw, m) for m in METHODS], repeat)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "log.csv"
        row["CSV write + read"] = best_time(lambda: files.read_csv(files.write_csv(h, path)), 1)
        if plot:
            png = Path(tmp) / "plot.png"
            row["plot (PNG)"] = best_time(lambda: plotting.save_figure(plotting.draw(h, analyze_history(h)), png), 1)
    return row


def table(rows: dict[int, dict[str, float]]) -> str:
    columns = list(next(iter(rows.values())))
    lines = ["| n | " + " | ".join(columns) + " |", "|---|" + "---|" * len(columns)]
    for n, row in rows.items():
        lines.append(f"| {n:.0e} | " + " | ".join(f"{row[c]:.3f}" for c in columns) + " |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> dict[int, dict[str, float]]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--max-n", type=int, default=1_000_000, help="the longest curve (default 1e6)")
    p.add_argument("--repeat", type=int, default=3, help="runs per analysis timing; the best is kept")
    p.add_argument("--no-plot", action="store_true", help="skip the plot timings")
    args = p.parse_args(argv)
    sizes = [n for n in (1_000, 10_000, 100_000, 1_000_000) if n <= args.max_n]
    measure(200, 1, not args.no_plot)  # imports, caches and fonts load once, outside the timings
    rows = {}
    for n in sizes:
        rows[n] = measure(n, args.repeat, not args.no_plot)
        print(f"n={n}: all methods {rows[n]['all methods']:.3f}s", file=sys.stderr, flush=True)
    print(
        f"# Analysis time (seconds, best of {args.repeat}; CSV and plot: one run)\n\n"
        f"Python {platform.python_version()}, numpy {np.__version__}, "
        f"{'Savitzky-Golay (scipy)' if HAVE_SCIPY else 'moving average (no scipy)'}, "
        f"{platform.processor() or platform.machine()}.\n\n" + table(rows)
    )
    return rows


if __name__ == "__main__":
    main()
