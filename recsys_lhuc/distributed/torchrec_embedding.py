"""TorchRec path for embedding tables too big for one device (optional: needs `torchrec`).

`TorchRecFeatureEmbedding` is a drop-in for `models.FeatureEmbedding` backed by one
`torchrec.EmbeddingBagCollection`, so `DistributedModelParallel` can shard the tables across
ranks while the dense layers run data-parallel. `to_torchrec(model)` swaps every
FeatureEmbedding of any model (shared tables and the gates' own id tables) for one, weights kept.

On CPU (gloo), TorchRec 1.9 shards an EmbeddingBagCollection table-wise or column-wise with the
"fused" kernel (optimizer applied inside backward), or data-parallel; row-wise sharding is
GPU-only there. `cpu_sharding_constraints` asks the planner for table-wise placement.
"""

from dataclasses import replace

import torch
from torch import nn

from recsys_lhuc.models.embedding import NUMERIC, FeatureEmbedding
from recsys_lhuc.spec import FeatureSpec

try:
    import torchrec
    from torchrec import EmbeddingBagCollection, EmbeddingBagConfig, KeyedJaggedTensor, PoolingType
except (ImportError, OSError, RuntimeError) as err:  # optional extra; GPU fbgemm w/o driver
    torchrec, TORCHREC_ERROR = None, err
else:
    TORCHREC_ERROR = None


def require_torchrec() -> None:
    if torchrec is None:
        raise ImportError("TorchRec is not installed. On CPU: pip install --no-deps "
                          "torchrec==1.9.2 && pip install fbgemm-gpu-cpu==1.9.0 tensordict "
                          "torchmetrics==1.0.3 pyre-extensions (or `make torchrec`); on GPU "
                          f"use fbgemm-gpu. Import error: {TORCHREC_ERROR}")


def table_name(field: str) -> str:
    return f"t_{field}"


class TorchRecFeatureEmbedding(nn.Module):
    """Same inputs, outputs and block order as FeatureEmbedding, tables in one
    EmbeddingBagCollection (`self.ebc`, the module DistributedModelParallel shards)."""

    def __init__(self, spec: FeatureSpec, fields: list[str] | None = None, numeric: bool = True,
                 device: torch.device | str | None = None):
        super().__init__()
        require_torchrec()
        wanted = None if fields is None else set(fields)
        self.categorical = [f for f in spec.categorical if wanted is None or f.name in wanted]
        self.multi = [f for f in spec.multi if wanted is None or f.name in wanted]
        self.numeric = list(spec.numeric) if numeric else []
        tables = [EmbeddingBagConfig(name=table_name(f.name), embedding_dim=f.embed_dim,
                                     num_embeddings=f.vocab_size, feature_names=[f.name],
                                     pooling=PoolingType.SUM) for f in self.categorical]
        tables += [EmbeddingBagConfig(name=table_name(f.name), embedding_dim=f.embed_dim,
                                      num_embeddings=f.vocab_size, feature_names=[f.name],
                                      pooling=PoolingType.MEAN) for f in self.multi]
        self.ebc = EmbeddingBagCollection(tables=tables, device=torch.device(device or "cpu"))
        self.dims = {f.name: f.embed_dim for f in [*self.categorical, *self.multi]}
        if self.numeric:
            self.dims[NUMERIC] = len(self.numeric)

    @property
    def names(self) -> list[str]:
        return list(self.dims)

    def out_dim(self, exclude: tuple[str, ...] = ()) -> int:
        return sum(d for name, d in self.dims.items() if name not in exclude)

    def features(self, batch: dict[str, torch.Tensor]) -> "KeyedJaggedTensor":
        """The batch's ids as a KeyedJaggedTensor; multi-valued padding (id 0) is dropped."""
        keys, values, lengths = [], [], []
        for f in self.categorical:
            ids = batch[f.name]
            keys.append(f.name)
            values.append(ids)
            lengths.append(torch.ones_like(ids, dtype=torch.int32))
        for f in self.multi:
            ids = batch[f.name]
            keys.append(f.name)
            values.append(ids[ids != 0])
            lengths.append((ids != 0).sum(dim=1).int())
        return KeyedJaggedTensor.from_lengths_sync(keys=keys, values=torch.cat(values).long(),
                                                   lengths=torch.cat(lengths))

    def field_embeddings(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        pooled = self.ebc(self.features(batch))
        if hasattr(pooled, "wait"):  # sharded EBCs return an awaitable
            pooled = pooled.wait()
        by_key = pooled.to_dict()
        out = {name: by_key[name] for name in self.dims if name != NUMERIC}
        if self.numeric:
            out[NUMERIC] = torch.stack([batch[name].float() for name in self.numeric], dim=1)
        return out

    concat = staticmethod(FeatureEmbedding.concat)

    def forward(self, batch: dict[str, torch.Tensor],
                exclude: tuple[str, ...] = ()) -> torch.Tensor:
        return self.concat(self.field_embeddings(batch), exclude)

    @torch.no_grad()
    def load_from(self, source: FeatureEmbedding) -> "TorchRecFeatureEmbedding":
        """Copy the weights of an equivalent FeatureEmbedding (before sharding)."""
        tables = {**source.categorical, **source.multi}
        for name, weight in self.ebc.embedding_bags.items():
            weight.weight.copy_(tables[name.removeprefix("t_")].weight)
        return self


def from_feature_embedding(source: FeatureEmbedding, spec: FeatureSpec,
                           device: torch.device | str | None = None) -> TorchRecFeatureEmbedding:
    fields = [*source.categorical, *source.multi]
    swap = TorchRecFeatureEmbedding(spec, fields=fields, numeric=bool(source.numeric),
                                    device=device)
    return swap.load_from(source)


def to_torchrec(model: nn.Module, spec: FeatureSpec) -> nn.Module:
    """Replace every FeatureEmbedding inside `model` by a TorchRec one with the same weights.

    Only the shared tables and the gates' id tables move; the gates' context stays detached.
    """
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, FeatureEmbedding):
                setattr(parent, name, from_feature_embedding(child, spec_of(child, spec)))
    return model


def spec_of(embedding: FeatureEmbedding, spec: FeatureSpec) -> FeatureSpec:
    """`spec` with each field's width as the embedding actually uses it (gate tables may differ)."""
    dims = embedding.dims
    return replace(spec, categorical=[replace(f, embed_dim=dims.get(f.name, f.embed_dim))
                                      for f in spec.categorical],
                   multi=[replace(f, embed_dim=dims.get(f.name, f.embed_dim)) for f in spec.multi])


def cpu_sharding_constraints(model: nn.Module, sharding_type: str = "table_wise") -> dict:
    """Planner constraints placing every table of `model` `sharding_type`-sharded, fused kernel."""
    require_torchrec()
    from torchrec.distributed.planner.types import ParameterConstraints
    names = [table for m in model.modules() if isinstance(m, TorchRecFeatureEmbedding)
             for table in m.ebc.embedding_bags]
    return {n: ParameterConstraints(sharding_types=[sharding_type], compute_kernels=["fused"])
            for n in names}


@torch.no_grad()
def load_unsharded_state(sharded: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Copy a plain state dict (of the model before sharding) into a DistributedModelParallel
    model: each rank writes the slices its local table shards hold."""
    from torch.distributed._shard.sharded_tensor import ShardedTensor
    for key, target in sharded.state_dict().items():
        source = state[key.removeprefix("module.")]
        if isinstance(target, ShardedTensor):
            for shard in target.local_shards():
                box = tuple(slice(o, o + n) for o, n in zip(shard.metadata.shard_offsets,
                                                            shard.metadata.shard_sizes))
                shard.tensor.copy_(source[box])
        else:
            target.copy_(source)
