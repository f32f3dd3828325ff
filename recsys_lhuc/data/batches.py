"""Mini-batches of tensors straight from the Arrow columns (no per-row Python collation)."""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import torch

from ..spec import FeatureSpec


def columns_as_tensors(dataset, names) -> dict[str, torch.Tensor]:
    """Read Arrow columns into tensors once; fixed-length list columns become (N, max_len)."""
    table = dataset.data.table if hasattr(dataset, "data") else dataset
    out = {}
    for name in names:
        column = table.column(name).combine_chunks()
        if pa.types.is_list(column.type) or pa.types.is_large_list(column.type):
            values = column.flatten().to_numpy(zero_copy_only=False)
            array = values.reshape(len(column), -1) if len(column) else values.reshape(0, 1)
        else:
            array = column.to_numpy(zero_copy_only=False)
        out[name] = torch.from_numpy(np.array(array, copy=True))  # writable, contiguous
    return out


def shard_order(size: int, rank: int, world_size: int, seed: int, epoch: int,
                shuffle: bool) -> torch.Tensor:
    """Row order of one rank for one epoch (DistributedSampler semantics).

    All ranks draw the same permutation (seeded by ``seed + epoch``) and take every
    ``world_size``-th row from ``rank`` on; the tail is padded by wrapping around so every rank
    gets the same number of rows (and so runs the same number of steps). With one rank this is
    the plain seeded permutation (or ``arange`` without shuffling).
    """
    if shuffle:
        order = torch.randperm(size, generator=torch.Generator().manual_seed(seed + epoch))
    else:
        order = torch.arange(size)
    if world_size == 1:
        return order
    per_rank = -(-size // world_size)
    padded = torch.cat([order, order[: per_rank * world_size - size]])
    return padded[rank::world_size]


class Batches:
    """Iterate over a split in batches of ``batch_size`` rows, as dicts of tensors.

    Shuffling uses a generator seeded by ``seed + epoch`` so that a resumed run sees exactly the
    batches an uninterrupted run would. ``pin_memory`` pins each batch for fast host-to-GPU copies.
    With ``device`` the whole split is copied there once and every batch is sliced on the device
    (for splits that fit in GPU memory: no host work and no copy per step).
    Under DDP, ``rank``/``world_size`` make this iterate over the rank's shard only (see
    ``shard_order``); ``indices()`` says which rows of the split those are.
    """

    def __init__(self, dataset, spec: FeatureSpec, batch_size: int, shuffle: bool = False,
                 seed: int = 0, pin_memory: bool = False, extra_columns=(), rank: int = 0,
                 world_size: int = 1, device=None):
        names = [f.name for f in spec.categorical] + list(spec.numeric)
        names += [f.name for f in spec.multi] + spec.labels + list(extra_columns)
        names = [n for n in dict.fromkeys(names) if n in dataset.column_names]
        self.tensors = columns_as_tensors(dataset, names)
        self.device = torch.device(device) if device is not None else None
        if self.device is not None:
            self.tensors = {k: v.to(self.device) for k, v in self.tensors.items()}
        self.size = len(dataset)
        self.batch_size, self.shuffle, self.seed = batch_size, shuffle, seed
        self.pin_memory = pin_memory
        self.rank, self.world_size = rank, world_size
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def column(self, name: str) -> np.ndarray:
        """One whole column of the split (labels and users for the metrics)."""
        return self.tensors[name].cpu().numpy()

    def indices(self) -> torch.Tensor:
        """This rank's rows of the split for the current epoch, in iteration order."""
        return shard_order(self.size, self.rank, self.world_size, self.seed, self.epoch,
                           self.shuffle)

    def __len__(self) -> int:
        rows = -(-self.size // self.world_size)
        return (rows + self.batch_size - 1) // self.batch_size

    def __iter__(self):
        order = None
        if self.shuffle or self.world_size > 1:
            order = self.indices()
            if self.device is not None:
                order = order.to(self.device)
        rows = self.size if order is None else len(order)
        for start in range(0, rows, self.batch_size):
            if order is None:
                batch = {k: v[start:start + self.batch_size] for k, v in self.tensors.items()}
            else:
                idx = order[start:start + self.batch_size]
                batch = {k: v[idx] for k, v in self.tensors.items()}
            if self.pin_memory and self.device is None:
                batch = {k: v.pin_memory() for k, v in batch.items()}
            yield batch
