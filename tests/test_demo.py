"""The first README command, end to end: `lr-finder demo` on scikit-learn's bundled digits."""

import os
import subprocess
import sys

import matplotlib.image as mpimg


def test_demo_command_end_to_end(tmp_path):
    out = tmp_path / "demo"
    exe = os.path.join(os.path.dirname(sys.executable), "lr-finder")
    proc = subprocess.run(
        [exe, "demo", "--out", str(out), "--num-iter", "60", "--no-progress"],
        capture_output=True, text=True, timeout=240,
    )
    assert proc.returncode == 0, proc.stderr
    assert "Suggested learning rate:" in proc.stdout
    lr = float((out / "best_lr.txt").read_text())
    assert 1e-4 < lr < 10
    assert f"{lr:.3e}" in proc.stdout
    rows = (out / "lr_finder_log.csv").read_text().splitlines()
    assert rows[0] == "step,lr,raw_loss,loss" and len(rows) >= 20
    img = mpimg.imread(out / "lr_finder_plot.png")
    assert img.shape[0] >= 300 and img.shape[1] >= 400
    assert (out / "lr_finder_summary.json").exists()
    assert "LR range test complete" in proc.stderr  # the progress messages, visible by default
