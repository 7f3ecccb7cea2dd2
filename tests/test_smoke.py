from lr_finder import LRFinder

from tasks import assert_same_state, digits_mlp, state_of


def test_spec_workflow_restores_and_suggests(tmp_path):
    task = digits_mlp()
    before = state_of(task.model, task.optimizer)
    finder = LRFinder(task.model, task.optimizer, task.criterion, device="cpu")
    finder.range_test(task.loader, start_lr=1e-5, end_lr=10, num_iter=60, show_progress=False)
    best = finder.plot(save_path=tmp_path / "plots" / "lr_finder_plot.png")
    finder.reset()
    assert best is not None and 1e-5 < best < 10
    assert (tmp_path / "plots" / "lr_finder_plot.png").stat().st_size > 1000
    assert_same_state(before, state_of(task.model, task.optimizer))


def test_analysis_does_not_import_torch():
    """`lr-finder analyze` and `lr_finder.analyze` start quickly: torch loads only with LRFinder."""
    import subprocess
    import sys

    code = (
        "import sys, numpy as np, lr_finder\n"
        "lrs = np.logspace(-5, 0, 50); lr_finder.analyze(lrs, 2 - np.tanh(np.log10(lrs) + 2))\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
        "from lr_finder import LRFinder\n"
        "assert 'torch' in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
