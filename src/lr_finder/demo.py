"""The embedded default: a real range test on scikit-learn's bundled handwritten digits (no download)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch


def load_digits_tensors() -> tuple[torch.Tensor, torch.Tensor]:
    """The 1,797 8x8 digit images shipped inside scikit-learn, scaled to [0, 1], as tensors."""
    try:
        from sklearn.datasets import load_digits
    except ImportError as exc:
        raise ImportError(
            "the demo uses scikit-learn's bundled digits dataset: pip install 'lr-finder[demo]'"
        ) from exc
    data = load_digits()
    x = torch.tensor(data.data, dtype=torch.float32) / 16.0
    y = torch.tensor(data.target, dtype=torch.long)
    return x, y


def build(seed: int = 0, batch_size: int = 64) -> dict[str, Any]:
    """Model, optimizer, criterion and loader of the demo task (an MLP with SGD + momentum)."""
    torch.manual_seed(seed)
    x, y = load_digits_tensors()
    dataset = torch.utils.data.TensorDataset(x, y)
    g = torch.Generator().manual_seed(seed)
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=True, generator=g)
    model = torch.nn.Sequential(
        torch.nn.Linear(64, 128), torch.nn.ReLU(), torch.nn.Linear(128, 64), torch.nn.ReLU(), torch.nn.Linear(64, 10)
    )
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    return {"model": model, "optimizer": optimizer, "criterion": torch.nn.CrossEntropyLoss(), "train_loader": loader}


def run_demo(out_dir: str | Path = "lr_finder_demo", num_iter: int = 100, show_progress: bool = True) -> float | None:
    """Run the range test on the digits task and write the plot, CSV, best LR and summary into ``out_dir``."""
    from .finder import LRFinder

    task = build()
    out = Path(out_dir)
    finder = LRFinder(task["model"], task["optimizer"], task["criterion"], cache_dir=out)
    finder.range_test(task["train_loader"], start_lr=1e-5, end_lr=10, num_iter=num_iter, show_progress=show_progress)
    return finder.plot(save_path=out / "lr_finder_plot.png")
