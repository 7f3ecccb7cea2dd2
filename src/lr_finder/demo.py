"""The embedded default: a real range test on scikit-learn's bundled handwritten digits (no download)."""

from __future__ import annotations

from pathlib import Path

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
    return torch.tensor(data.data, dtype=torch.float32) / 16.0, torch.tensor(data.target, dtype=torch.long)


def run_demo(out_dir: str | Path = "lr_finder_demo", num_iter: int = 100, show_progress: bool = True) -> float | None:
    """Range-test an MLP with SGD + momentum on the digits; write the plot, CSV, best LR and summary into
    ``out_dir``, and return the suggested LR."""
    from .finder import LRFinder

    torch.manual_seed(0)
    dataset = torch.utils.data.TensorDataset(*load_digits_tensors())
    g = torch.Generator().manual_seed(0)
    loader = torch.utils.data.DataLoader(dataset, batch_size=64, shuffle=True, generator=g)
    model = torch.nn.Sequential(
        torch.nn.Linear(64, 128), torch.nn.ReLU(), torch.nn.Linear(128, 64), torch.nn.ReLU(), torch.nn.Linear(64, 10)
    )
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    finder = LRFinder(model, optimizer, torch.nn.CrossEntropyLoss(), cache_dir=out_dir)
    finder.range_test(loader, start_lr=1e-5, end_lr=10, num_iter=num_iter, show_progress=show_progress)
    return finder.plot(save_path=Path(out_dir) / "lr_finder_plot.png")
