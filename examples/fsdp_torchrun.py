"""The LR range test on a model sharded with FSDP2 (``fully_shard``), launched by torchrun.

    torchrun --standalone --nproc-per-node=2 examples/fsdp_torchrun.py         # CPU (gloo) or GPUs (NCCL)
    torchrun --nnodes=2 --nproc-per-node=8 --rdzv-backend=c10d \\
        --rdzv-endpoint=HOST:29500 examples/fsdp_torchrun.py                     # several machines

Each rank holds only its shard of every parameter, gradient and Adam moment; the range test snapshots and
restores each rank's own shards (nothing is gathered), averages the loss over ranks in one all-reduce per
step, so every rank sees the same curve and gets the same suggestion. Only rank 0 shows the progress bar and
writes plots/fsdp/ (plot, CSV, best_lr.txt, summary JSON). The task is scikit-learn's bundled digits (no
download; pip install scikit-learn).
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist
from torch.distributed.fsdp import fully_shard
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

from lr_finder import LRFinder
from lr_finder.demo import load_digits_tensors

PER_RANK_BATCH = 32


class Block(torch.nn.Module):
    """A residual MLP block: the unit that is sharded on its own, as a transformer layer would be."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.norm = torch.nn.LayerNorm(width)
        hidden = 4 * width
        self.mlp = torch.nn.Sequential(torch.nn.Linear(width, hidden), torch.nn.GELU(), torch.nn.Linear(hidden, width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.mlp(self.norm(x))


class Net(torch.nn.Module):
    def __init__(self, width: int = 128, depth: int = 4) -> None:
        super().__init__()
        self.embed = torch.nn.Linear(64, width)
        self.blocks = torch.nn.ModuleList(Block(width) for _ in range(depth))
        self.head = torch.nn.Linear(width, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.embed(x)
        for block in self.blocks:
            x = block(x)
        return self.head(x)


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

    torch.manual_seed(0)  # every rank builds the same model, then keeps only its shards
    model = Net().to(device)
    for block in model.blocks:
        fully_shard(block)  # each block all-gathered for its forward and backward, then freed again
    fully_shard(model)  # the root: the embedding and the head
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)  # built after sharding: its state is sharded too

    finder = LRFinder(model, optimizer, torch.nn.CrossEntropyLoss())
    finder.range_test(loader, start_lr=1e-6, end_lr=1, num_iter=100)
    best_lr = finder.plot(save_path="plots/fsdp/lr_finder_plot.png")  # the same value on every rank

    if best_lr is not None:
        # The test ran at the global batch size (per-rank batch x world size): the LR applies as it is.
        for group in optimizer.param_groups:
            group["lr"] = best_lr
        if rank == 0:
            batch = f"{PER_RANK_BATCH * world} ({PER_RANK_BATCH} per rank x {world} ranks)"
            print(f"Suggested LR {best_lr:.3e}, for the global batch of {batch}")
    # ... train as usual; every rank's shards and optimizer state were restored to their state before the test.
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
