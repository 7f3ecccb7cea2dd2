"""The README's first example (construct, range_test, plot, reset), as a script that runs on a CPU.

    python examples/spec_workflow.py

Writes plots/lr_finder_plot.png, plots/lr_finder_log.csv, plots/best_lr.txt and
plots/lr_finder_summary.json in the working folder. The task is scikit-learn's bundled digits (no download).
The device is "cuda" when there is one, else "cpu".
"""

from __future__ import annotations

import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from digits_spec import build  # noqa: E402

from lr_finder import LRFinder  # noqa: E402

device = "cuda" if torch.cuda.is_available() else "cpu"
task = build(device=device)
model, optimizer, criterion, train_loader = (
    task["model"],
    task["optimizer"],
    task["criterion"],
    task["train_loader"],
)

# 1. Initialize
lr_finder = LRFinder(model, optimizer, criterion, device=device)

# 2. Run range test
lr_finder.range_test(train_loader, start_lr=1e-7, end_lr=1, num_iter=100)

# 3. Plot & Get best LR
best_lr = lr_finder.plot(save_path="plots/lr_finder_plot.png")

# 4. Reset before training
lr_finder.reset()

if best_lr is None:
    sys.exit("No learning rate could be suggested: see the messages above")
print(f"Suggested LR: {best_lr:.6f}")
