"""torchrun DDP helpers: one process per device, gradients averaged by DistributedDataParallel.

Launch any training script with `torchrun --nproc_per_node N script.py`; the script calls
`init_distributed()` (a no-op without torchrun), `wrap_model()`, and feeds each rank its own
`shard_indices()`. NCCL is used when CUDA is present, gloo otherwise (CPU, CI).
"""

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel


@dataclass(frozen=True)
class DistInfo:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def init_distributed(backend: str | None = None, device: str | None = None) -> DistInfo:
    """Join the process group torchrun describes in the environment; single-process otherwise.

    `device` overrides the run-time choice (cuda:<local rank> if CUDA is available, else cpu);
    a bare "cuda" also means cuda:<local rank>.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda":  # one GPU per process
        device = f"cuda:{local_rank}"
    dev = torch.device(device)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    if world_size > 1 and not dist.is_initialized():
        backend = backend or ("nccl" if dev.type == "cuda" else "gloo")
        dist.init_process_group(backend, rank=rank, world_size=world_size)
    return DistInfo(rank, world_size, local_rank, dev)


def wrap_model(model: nn.Module, info: DistInfo,
               find_unused_parameters: bool = False) -> nn.Module:
    """Move `model` to the rank's device and wrap it in DDP when there is more than one rank."""
    model = model.to(info.device)
    if not info.distributed:
        return model
    ids = [info.device.index] if info.device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=ids,
                                   find_unused_parameters=find_unused_parameters)


def shard_indices(num_rows: int, info: DistInfo, seed: int = 0, epoch: int = 0,
                  shuffle: bool = True) -> torch.Tensor:
    """This rank's rows for one epoch: a seeded permutation split evenly (tail padded by wrap).

    Every rank gets the same number of rows so all ranks run the same number of steps.
    """
    from recsys_lhuc.data.batches import shard_order

    return shard_order(num_rows, info.rank, info.world_size, seed, epoch, shuffle)


def all_reduce_mean(value: float | torch.Tensor, info: DistInfo) -> float:
    """Mean of a scalar over ranks (for logging metrics)."""
    t = torch.as_tensor(value, dtype=torch.float64, device=info.device).clone()
    if info.distributed:
        dist.all_reduce(t)
        t /= info.world_size
    return float(t)


def broadcast_object(obj, info: DistInfo):
    """Rank 0's `obj` on every rank (a no-op with one process)."""
    if not info.distributed:
        return obj
    holder = [obj]
    dist.broadcast_object_list(holder, src=0)
    return holder[0]


def all_gather_objects(obj, info: DistInfo) -> list:
    """[obj of rank 0, obj of rank 1, ...] on every rank."""
    if not info.distributed:
        return [obj]
    out = [None] * info.world_size
    dist.all_gather_object(out, obj)
    return out


def barrier(info: DistInfo) -> None:
    if info.distributed:
        dist.barrier()


def cleanup() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()
