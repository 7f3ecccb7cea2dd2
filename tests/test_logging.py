"""The library's logging: the application's configuration decides what is shown; each message once per curve."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import textwrap

import lr_finder
from lr_finder import LRFinder

from tasks import digits_mlp

# A plain script, in a fresh interpreter: importing configures nothing, then the same range test with no
# logging configured, with the application at WARNING, and with the documented line that shows INFO.
SCRIPT = textwrap.dedent("""
    import logging, sys
    import torch
    import lr_finder, lr_finder.cli
    from lr_finder import LRFinder

    log = logging.getLogger("lr_finder")
    assert log.level == logging.NOTSET and log.handlers == [], (log.level, log.handlers)
    assert logging.getLogger().handlers == [], logging.getLogger().handlers

    def sweep_and_plot(tag):
        print(f"--- {tag}", file=sys.stderr, flush=True)
        torch.manual_seed(0)
        x = torch.randn(64, 4)
        y = x @ torch.tensor([[1.0], [-2.0], [0.5], [3.0]])
        batches = [(x[i:i + 16], y[i:i + 16]) for i in range(0, 64, 16)]
        model = torch.nn.Linear(4, 1)
        finder = LRFinder(model, torch.optim.SGD(model.parameters(), lr=0.01), torch.nn.MSELoss())
        finder.range_test(batches, start_lr=1e-3, end_lr=0.2, num_iter=30, show_progress=False)
        finder.plot(save_csv=False)  # Agg: no display to show it on

    sweep_and_plot("unconfigured")
    logging.basicConfig(level=logging.WARNING)
    sweep_and_plot("warning")
    logging.basicConfig(level=logging.INFO, format="%(message)s", force=True)
    sweep_and_plot("info")
""")

NEVER_DIVERGED = "LR finder diagnostic: loss never diverged"
NO_DISPLAY = "No display to show the plot on"


def _sections(text: str) -> dict[str, str]:
    parts = text.split("--- ")[1:]
    return {p.split("\n", 1)[0]: p.split("\n", 1)[1] for p in parts}


def test_the_applications_logging_configuration_decides_what_is_shown(tmp_path):
    src = os.path.dirname(os.path.dirname(lr_finder.__file__))  # this lr_finder, wherever it is imported from
    path = os.pathsep.join([src, *filter(None, [os.environ.get("PYTHONPATH")])])
    env = {**os.environ, "PYTHONPATH": path, "MPLBACKEND": "Agg", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=180
    )
    assert proc.returncode == 0, proc.stderr
    shown = _sections(proc.stderr)

    # nothing configured (a script, a notebook): Python's last resort shows the warnings, not the INFO
    assert NEVER_DIVERGED in shown["unconfigured"] and NO_DISPLAY in shown["unconfigured"]
    assert "LR range test complete" not in shown["unconfigured"]
    assert "Suggested Learning Rate" not in shown["unconfigured"]

    # logging.basicConfig(level=logging.WARNING): warnings only, in the application's format
    lines = shown["warning"].splitlines()
    assert lines and all(line.startswith("WARNING:lr_finder:") for line in lines), lines
    assert any(NEVER_DIVERGED in line for line in lines) and any(NO_DISPLAY in line for line in lines)

    # the documented line for the progress messages
    assert "LR range test complete." in shown["info"] and "Suggested Learning Rate: " in shown["info"]
    assert "Use `.plot()` to visualize" in shown["info"]  # the hint, for users of the Python API


def test_each_message_is_logged_once_per_curve_whatever_reads_it(caplog, tmp_path):
    task = digits_mlp()
    finder = LRFinder(task.model, task.optimizer, task.criterion)
    with caplog.at_level(logging.INFO, logger="lr_finder"):
        finder.range_test(task.loader, start_lr=1e-5, end_lr=0.1, num_iter=30, show_progress=False)
        assert finder.suggestion().diagnostics  # the sweep stops short of divergence: a note to give
        lr = finder.get_suggested_lr()
        assert finder.plot(save_path=tmp_path / "plot.png") == lr
        finder.verify(task.loader)  # reads the same suggestion again
        finder.summary()
        finder.save(tmp_path)
        finder.get_suggested_lr()
    text = caplog.text
    assert text.count("Suggested Learning Rate") == 1
    for note in finder.suggestion().diagnostics:
        assert text.count(note) == 1, note
    assert text.count("LR range test complete") == 1


def test_the_api_hints_have_a_logger_of_their_own(caplog):
    task = digits_mlp()
    finder = LRFinder(task.model, task.optimizer, task.criterion)
    with caplog.at_level(logging.INFO, logger="lr_finder"):
        finder.range_test(task.loader, start_lr=1e-5, end_lr=1, num_iter=5, show_progress=False)
    by_logger = {r.getMessage(): r.name for r in caplog.records}
    assert by_logger["LR range test complete."] == "lr_finder"
    hints = [m for m, name in by_logger.items() if name == "lr_finder.api"]
    assert hints and all("`.plot()`" in m or "restored" in m for m in hints)
