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


class Batches:
    """Iterate over a split in batches of ``batch_size`` rows, as dicts of tensors.

    Shuffling uses a generator seeded by ``seed + epoch`` so that a resumed run sees exactly the
    batches an uninterrupted run would. ``pin_memory`` pins each batch for fast host-to-GPU copies.
    """

    def __init__(self, dataset, spec: FeatureSpec, batch_size: int, shuffle: bool = False,
                 seed: int = 0, pin_memory: bool = False, extra_columns=()):
        names = [f.name for f in spec.categorical] + list(spec.numeric)
        names += [f.name for f in spec.multi] + spec.labels + list(extra_columns)
        names = [n for n in dict.fromkeys(names) if n in dataset.column_names]
        self.tensors = columns_as_tensors(dataset, names)
        self.size = len(dataset)
        self.batch_size, self.shuffle, self.seed = batch_size, shuffle, seed
        self.pin_memory = pin_memory
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return (self.size + self.batch_size - 1) // self.batch_size

    def __iter__(self):
        if self.shuffle:
            gen = torch.Generator().manual_seed(self.seed + self.epoch)
            order = torch.randperm(self.size, generator=gen)
        else:
            order = None
        for start in range(0, self.size, self.batch_size):
            if order is None:
                batch = {k: v[start:start + self.batch_size] for k, v in self.tensors.items()}
            else:
                idx = order[start:start + self.batch_size]
                batch = {k: v[idx] for k, v in self.tensors.items()}
            if self.pin_memory:
                batch = {k: v.pin_memory() for k, v in batch.items()}
            yield batch
