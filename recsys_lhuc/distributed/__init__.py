"""Scale-out helpers: torchrun DDP (`ddp`) and TorchRec sharded embeddings (`torchrec_embedding`,
optional: needs the `torchrec` extra)."""

from .ddp import DistInfo, all_reduce_mean, cleanup, init_distributed, shard_indices, wrap_model

__all__ = ["DistInfo", "all_reduce_mean", "cleanup", "init_distributed", "shard_indices",
           "wrap_model"]
