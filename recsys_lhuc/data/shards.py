"""Data larger than memory: Parquet shards of already-encoded rows, streamed in columnar batches.

A shard folder holds ``train/``, ``val/`` and ``test/`` sub-folders of Parquet files plus
``meta.json`` (the feature spec with vocabulary sizes, and the row counts). Ids are stored encoded
(0 = OOV) as int32 and numerics as float32, so reading a batch is a columnar slice: no per-row
Python, no vocabulary lookup.

``write_synthetic_shards`` writes a Criteo-sized synthetic set (3 personal-id fields of ~1M ids,
23 fields of 10..100k ids, 13 numerics) chunk by chunk, so memory stays bounded whatever ``rows``
is. ``ShardBatches`` streams one split: background threads read a few Parquet row groups at a
time, pack them into one int block and one float block, shuffle their rows (row-group order and
row order: a pool of ``mix`` row groups is the shuffle window) and cut contiguous batches, so a
batch reaches the GPU in two pinned copies.
"""
from __future__ import annotations

import json
import logging
import queue
import threading
import warnings
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from ..spec import FeatureSpec, Field
from .checks import DataError
from .protocols import SPLITS

log = logging.getLogger(__name__)
PERSONAL_IDS = ["uid", "pid", "aid"]
META = "meta.json"


# ------------------------------------------------------------------ the synthetic generator
def criteo_like_spec(personal_vocab: int = 1_000_000, embed_dim: int = 16) -> FeatureSpec:
    """3 personal-id fields of ``personal_vocab`` ids + 23 fields of 10, 100, ..., 100k ids, 13
    numerics, label ``click``."""
    others = [Field(f"C{i}", 10 ** (1 + i % 5), embed_dim) for i in range(23)]
    ids = [Field(name, personal_vocab, embed_dim) for name in PERSONAL_IDS]
    return FeatureSpec(categorical=[*ids, *others], numeric=[f"I{i}" for i in range(13)],
                       multi=[], label="click", personal_ids=PERSONAL_IDS, user_field="uid")


class ClickModel:
    """The planted click model: users in ``n_groups`` latent groups re-weight the numerics
    (the PPNet setting), plus additive effects of a few categorical fields. Small tables only."""

    def __init__(self, spec: FeatureSpec, n_groups: int = 16, seed: int = 0):
        rng = np.random.default_rng(seed)
        self.n_groups = n_groups
        self.weights = rng.choice([-1.0, 1.0], size=len(spec.numeric))
        self.amplitudes = np.where(rng.random((n_groups, len(spec.numeric))) < 0.5, 1.9, 0.1)
        self.effects = {f.name: 0.5 * rng.normal(size=f.vocab_size)
                        for f in spec.categorical[3:8]}  # C0..C4: 10..100k ids

    def click_probability(self, columns: dict) -> np.ndarray:
        group = columns["uid"] % self.n_groups
        x = np.stack([columns[f"I{k}"] for k in range(len(self.weights))], axis=1)
        logit = 2.0 * (x * self.weights * self.amplitudes[group]).sum(1) / np.sqrt(x.shape[1])
        for name, effect in self.effects.items():
            logit += effect[columns[name]]
        return 1.0 / (1.0 + np.exp(-(logit - 1.0)))


def synthetic_chunk(spec: FeatureSpec, model: ClickModel, rows: int, seed: int) -> pa.Table:
    """``rows`` encoded rows (ids >= 1; id 0 is kept for OOV) with sampled clicks."""
    rng = np.random.default_rng(seed)
    columns = {f.name: rng.integers(1, f.vocab_size, size=rows, dtype=np.int32)
               if f.vocab_size > 1 else np.zeros(rows, dtype=np.int32) for f in spec.categorical}
    columns.update({name: rng.normal(size=rows).astype(np.float32) for name in spec.numeric})
    p = model.click_probability(columns)
    columns[spec.label] = (rng.random(rows) < p).astype(np.float32)
    return pa.table(columns)


def write_synthetic_shards(out, rows: int, personal_vocab: int = 1_000_000,
                           val_fraction: float = 0.01, test_fraction: float = 0.01,
                           shard_rows: int = 2_000_000, row_group_rows: int = 131_072,
                           seed: int = 0) -> dict:
    """Write ``rows`` training rows (plus val/test fractions) as Parquet shards under ``out``.

    Chunks of ``row_group_rows`` are generated and appended one at a time, so peak memory is a
    few chunks whatever ``rows`` is. ``meta.json`` is written last: its presence marks a complete
    folder. Returns the meta dict.
    """
    out = Path(out)
    if rows < 1:
        raise DataError(f"--rows must be at least 1, got {rows}")
    spec = criteo_like_spec(personal_vocab)
    model = ClickModel(spec, seed=seed)
    counts = {"train": rows, "val": max(1, int(rows * val_fraction)),
              "test": max(1, int(rows * test_fraction))}
    for k, split in enumerate(SPLITS):
        _write_split(out / split, spec, model, counts[split], shard_rows, row_group_rows,
                     seed=1000 * (seed + 1) + k)
    meta = {"spec": asdict(spec), "rows": counts, "generator": "recsys_lhuc synthetic shards",
            "personal_vocab": personal_vocab, "seed": seed}
    (out / META).write_text(json.dumps(meta, indent=2))
    return meta


def _write_split(folder: Path, spec, model, rows: int, shard_rows: int, group_rows: int,
                 seed: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("part-*.parquet"):
        old.unlink()
    written, chunk_index, writer, shard = 0, 0, None, -1
    try:
        while written < rows:
            if written // shard_rows != shard:  # start the next shard file
                if writer:
                    writer.close()
                shard = written // shard_rows
                writer = None
            n = min(group_rows, rows - written, (shard + 1) * shard_rows - written)
            table = synthetic_chunk(spec, model, n, seed * 100_003 + chunk_index)
            if writer is None:
                writer = pq.ParquetWriter(folder / f"part-{shard:05d}.parquet", table.schema)
            writer.write_table(table, row_group_size=group_rows)
            written, chunk_index = written + n, chunk_index + 1
    finally:
        if writer:
            writer.close()


# ------------------------------------------------------------------ reading
class ShardSplit:
    """One split of a shard folder: its Parquet files and row groups (read lazily)."""

    def __init__(self, folder):
        self.folder = Path(folder)
        self.files = sorted(self.folder.glob("*.parquet"))
        if not self.files:
            raise DataError(f"{self.folder}: no Parquet files; write the shards first (python -m "
                            "recsys_lhuc prepare-synthetic-large --out ...)")
        self.units = []  # (file, row group, rows)
        for path in self.files:
            meta = pq.ParquetFile(path).metadata
            self.units += [(path, g, meta.row_group(g).num_rows)
                           for g in range(meta.num_row_groups)]
        self.column_names = pq.ParquetFile(self.files[0]).schema_arrow.names

    def __len__(self) -> int:
        return sum(rows for *_, rows in self.units)

    def read_unit(self, unit, columns) -> dict[str, np.ndarray]:
        path, group, _ = unit
        table = pq.ParquetFile(path).read_row_group(group, columns=columns)
        return {name: table.column(name).to_numpy() for name in columns}

    def column(self, name: str) -> np.ndarray:
        """One column of the whole split, in file order (labels and users for the metrics)."""
        return np.concatenate([self.read_unit(u, [name])[name] for u in self.units])


def load_shards(folder) -> tuple[FeatureSpec, dict[str, ShardSplit], dict]:
    """(spec, {split: ShardSplit}, meta) of a folder written by ``write_synthetic_shards``."""
    folder = Path(folder)
    if not (folder / META).exists():
        raise DataError(f"{folder}: no {META}; data.source 'shards' needs a folder written by "
                        "`python -m recsys_lhuc prepare-synthetic-large --out FOLDER` (or one "
                        "with the same layout: train/ val/ test/ Parquet files + meta.json)")
    meta = json.loads((folder / META).read_text())
    from .pipeline import spec_from_dict

    return spec_from_dict(meta["spec"]), {s: ShardSplit(folder / s) for s in SPLITS}, meta


BLOCKS = ("ints", "floats")


def pack(columns: dict[str, np.ndarray], ints: list[str], floats: list[str]) -> dict:
    """Two row-major blocks: (rows, n_int) int32 ids and (rows, n_float) float32 values, so a
    batch is a contiguous slice of rows (pinned and copied to the GPU as is)."""
    out = {}
    with warnings.catch_warnings():  # Arrow's arrays are read-only; they are only read here
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        if ints:
            out["ints"] = torch.stack([torch.from_numpy(np.asarray(columns[n], dtype=np.int32))
                                       for n in ints], dim=1)
        if floats:
            out["floats"] = torch.stack(
                [torch.from_numpy(np.asarray(columns[n], dtype=np.float32)) for n in floats],
                dim=1)
    return out


def unpack(packed: dict, ints: list[str], floats: list[str], device) -> dict[str, torch.Tensor]:
    """Copy the blocks to ``device`` and split them into the model's batch dict (one transpose
    there, so each field is a contiguous (B,) tensor)."""
    batch = {}
    if ints:
        block = packed["ints"].to(device, non_blocking=True)
        batch.update(zip(ints, block.t().contiguous().long().unbind(0)))
    if floats:
        block = packed["floats"].to(device, non_blocking=True)
        batch.update(zip(floats, block.t().contiguous().unbind(0)))
    return batch


class ShardBatches:
    """Stream a ShardSplit in batches of ``batch_size`` rows (dicts of tensors on ``device``).

    Two stages in background threads: ``workers`` threads each read ``mix`` row groups, pack them
    into two blocks and shuffle their rows (pyarrow and torch release the GIL, so they run in
    parallel); one thread cuts the blocks, in order, into contiguous batches (pinned for CUDA)
    and keeps ``prefetch`` of them ready. Shuffling is seeded by ``seed + epoch`` (row-group
    order, and each pool's row order by its index), so a resumed run sees the same batches
    whatever the threads' timing. Host memory holds about ``workers + 1`` pools of ``mix`` row
    groups and ``prefetch`` batches, whatever the split's size.
    """

    def __init__(self, split: ShardSplit, spec: FeatureSpec, batch_size: int,
                 shuffle: bool = False, seed: int = 0, device="cpu", pin_memory: bool = False,
                 prefetch: int = 4, mix: int = 2, workers: int = 2, extra_columns=()):
        names = [f.name for f in spec.categorical] + list(spec.numeric) + spec.labels
        names += [n for n in extra_columns if n in split.column_names]
        missing = [n for n in names if n not in split.column_names]
        if missing:
            raise DataError(f"{split.folder}: columns {missing} of the spec are not in the "
                            f"shards (they have {split.column_names})")
        self.split, self.batch_size, self.shuffle, self.seed = split, batch_size, shuffle, seed
        self.device, self.pin_memory = torch.device(device), pin_memory
        self.prefetch, self.mix, self.workers = max(prefetch, 1), max(mix, 1), max(workers, 1)
        self.ints = [f.name for f in spec.categorical]
        self.floats = [n for n in dict.fromkeys(names) if n not in self.ints]
        self.size, self.epoch = len(split), 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return -(-self.size // self.batch_size)

    def column(self, name: str) -> np.ndarray:
        return self.split.column(name)

    def indices(self) -> torch.Tensor:
        """Evaluation order is file order (no shuffling): rows 0..N-1."""
        return torch.arange(self.size)

    def _pools(self) -> list[list]:
        units = list(self.split.units)
        if self.shuffle:
            order = np.random.default_rng([self.seed, self.epoch]).permutation(len(units))
            units = [units[i] for i in order]
        return [units[i:i + self.mix] for i in range(0, len(units), self.mix)]

    def _pool_block(self, index: int, units) -> dict:
        """Read, pack and (when shuffling) permute one pool of row groups."""
        names = self.ints + self.floats
        parts = [pack(self.split.read_unit(u, names), self.ints, self.floats) for u in units]
        block = {k: torch.cat([p[k] for p in parts]) if len(parts) > 1 else parts[0][k]
                 for k in parts[0]}
        if self.shuffle:
            rows = len(next(iter(block.values())))
            state = np.random.SeedSequence([self.seed, self.epoch, index]).generate_state(1)
            g = torch.Generator().manual_seed(int(state[0]))
            perm = torch.randperm(rows, generator=g)
            block = {k: v.index_select(0, perm) for k, v in block.items()}
        return block

    def _blocks(self):
        """Pool blocks in pool order, ``workers`` of them read at once."""
        pools = self._pools()
        with ThreadPoolExecutor(self.workers) as pool:
            pending: deque = deque()
            for index, units in enumerate(pools):
                pending.append(pool.submit(self._pool_block, index, units))
                if len(pending) > self.workers:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()

    def _packed_batches(self):
        """Contiguous batches cut from the blocks; a pool's leftover rows open the next batch."""
        carry = None
        for block in self._blocks():
            if carry is not None:
                block = {k: torch.cat([carry[k], block[k]]) for k in block}
            rows = len(next(iter(block.values())))
            full = rows - rows % self.batch_size
            for start in range(0, full, self.batch_size):
                yield self._finish({k: v[start:start + self.batch_size] for k, v in block.items()})
            carry = {k: v[full:] for k, v in block.items()}
        if carry is not None and len(next(iter(carry.values()))):
            yield self._finish(carry)

    def _finish(self, batch: dict) -> dict:
        if self.pin_memory:
            return {k: v.pin_memory() for k, v in batch.items()}
        return {k: v.clone() for k, v in batch.items()}  # do not keep the whole pool alive

    def __iter__(self):
        for packed in prefetched(self._packed_batches(), self.prefetch):
            yield unpack(packed, self.ints, self.floats, self.device)


def prefetched(iterator, depth: int):
    """Run ``iterator`` in a background thread, ``depth`` items ahead (Parquet reads and NumPy
    gathers release the GIL, so this overlaps loading with the training step)."""
    items: queue.Queue = queue.Queue(maxsize=depth)
    done, stop = object(), threading.Event()

    def work():
        try:
            for item in iterator:
                if stop.is_set():
                    return
                items.put(item)
            items.put(done)
        except BaseException as err:  # hand the error to the consumer
            items.put(err)

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    try:
        while True:
            item = items.get()
            if item is done:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        while thread.is_alive():  # unblock a producer waiting on a full queue
            try:
                items.get_nowait()
            except queue.Empty:
                thread.join(timeout=0.05)
