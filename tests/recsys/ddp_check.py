"""A few DDP training steps of a model on random batches; each rank saves its final weights.

    torchrun --standalone --nproc_per_node 2 tests/recsys/ddp_check.py --out DIR

Every rank draws its own batches (seeded by rank), so only gradient averaging keeps the ranks'
weights identical; the test compares the saved files with each other and with one process
training on the concatenation of all ranks' batches.
"""

import argparse
from pathlib import Path

import torch
from random_batch import random_batch, tiny_spec

from recsys_lhuc.distributed.ddp import cleanup, init_distributed, wrap_model
from recsys_lhuc.models import build_model


def rank_batches(rank: int, steps: int, batch_size: int) -> list[dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(1000 + rank)
    return [random_batch(tiny_spec(), batch_size, g) for _ in range(steps)]


def train(model: torch.nn.Module, batches, lr: float = 0.1) -> None:
    """Plain SGD on BCE of the main label, so the DDP and single-process runs are comparable."""
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    for batch in batches:
        opt.zero_grad()
        logits = model(batch)
        torch.nn.functional.binary_cross_entropy_with_logits(logits, batch["like"]).backward()
        opt.step()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="ppnet")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    torch.set_num_threads(1)
    info = init_distributed()
    torch.manual_seed(0)  # same initial weights on every rank (DDP also broadcasts rank 0's)
    model = wrap_model(build_model(args.model, tiny_spec(), hidden=(16, 8)), info)
    train(model, [{k: v.to(info.device) for k, v in b.items()}
                  for b in rank_batches(info.rank, args.steps, args.batch_size)])
    args.out.mkdir(parents=True, exist_ok=True)
    state = {k: v.cpu() for k, v in model.module.state_dict().items()} if info.distributed \
        else model.state_dict()
    torch.save(state, args.out / f"rank{info.rank}.pt")
    print(f"rank {info.rank}/{info.world_size}: {args.steps} steps on {info.device}")
    cleanup()


if __name__ == "__main__":
    main()
