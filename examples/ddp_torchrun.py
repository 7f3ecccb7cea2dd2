"""The LR range test under DistributedDataParallel, launched by torchrun.

    torchrun --standalone --nproc-per-node=2 examples/ddp_torchrun.py          # CPU (gloo) or GPUs (NCCL)
    torchrun --nnodes=2 --nproc-per-node=8 --rdzv-backend=c10d \\
        --rdzv-endpoint=HOST:29500 examples/ddp_torchrun.py                      # several machines

Every process trains on its own shard (a DistributedSampler); the loss recorded at each step is the mean
over all processes, so every rank sees the same curve and gets the same suggestion. Only rank 0 shows the
progress bar and writes plots/ddp/ (plot, CSV, best_lr.txt, summary JSON). The task is scikit-learn's
bundled digits (no download; pip install scikit-learn).
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

from lr_finder import LRFinder
from lr_finder.demo import load_digits_tensors

PER_RANK_BATCH = 32


def main() -> None:
    use_cuda = torch.cuda.is_available()
    dist.init_process_group("nccl" if use_cuda else "gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if use_cuda:
        torch.cuda.set_device(local_rank)
        device = torch.device("cuda", local_rank)
    else:
        device = torch.device("cpu")
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // int(os.environ.get("LOCAL_WORLD_SIZE", "1"))))

    x, y = load_digits_tensors()
    dataset = TensorDataset(x, y)
    loader = DataLoader(dataset, batch_size=PER_RANK_BATCH, sampler=DistributedSampler(dataset, seed=0))

    torch.manual_seed(0)  # DDP broadcasts rank 0's weights anyway
    layers = [torch.nn.Linear(64, 128), torch.nn.ReLU(), torch.nn.Linear(128, 64), torch.nn.ReLU()]
    model = torch.nn.Sequential(*layers, torch.nn.Linear(64, 10)).to(device)
    model = DistributedDataParallel(model, device_ids=[local_rank] if use_cuda else None)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

    finder = LRFinder(model, optimizer, torch.nn.CrossEntropyLoss())
    finder.range_test(loader, start_lr=1e-5, end_lr=10, num_iter=100)
    best_lr = finder.plot(save_path="plots/ddp/lr_finder_plot.png")  # the same value on every rank

    if best_lr is not None:
        # The test ran at the global batch size (per-rank batch x world size): the LR applies as it is.
        for group in optimizer.param_groups:
            group["lr"] = best_lr
        if rank == 0:
            batch = f"{PER_RANK_BATCH * world} ({PER_RANK_BATCH} per rank x {world} ranks)"
            print(f"Suggested LR {best_lr:.3e}, for the global batch of {batch}")
    # ... train as usual; the model and optimizer were restored to their state before the test.
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
