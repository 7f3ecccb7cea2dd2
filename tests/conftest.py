import os
import sys

import matplotlib
import pytest

matplotlib.use("Agg")
sys.path.insert(0, os.path.dirname(__file__))

import torch  # noqa: E402

torch.set_num_threads(1)


def pytest_collection_modifyitems(config, items):
    skip_gpu = pytest.mark.skip(reason="needs a CUDA device")
    if not torch.cuda.is_available():
        for item in items:
            if "gpu" in item.keywords:
                item.add_marker(skip_gpu)


@pytest.fixture(scope="module")
def finder():
    """A finished 30-step range test on the digits MLP (one per test module that reads one)."""
    from lr_finder import LRFinder

    from tasks import digits_mlp

    task = digits_mlp(n=256)
    f = LRFinder(task.model, task.optimizer, task.criterion)
    f.range_test(task.loader, start_lr=1e-5, end_lr=10, num_iter=30, show_progress=False)
    return f
