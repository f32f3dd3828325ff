"""The shared embedding layer: one table per categorical / multi-valued field, numerics passed on.

Every model reads its features through this module, so they all agree on the order of the
concatenated input: categorical fields, then multi-valued fields (mean of the non-padding ids),
then the numeric fields as raw floats (the data layer standardises them).
"""

import torch
from torch import nn

from recsys_lhuc.spec import FeatureSpec

NUMERIC = "__numeric__"  # key of the numeric block in field_embeddings()


class FeatureEmbedding(nn.Module):
    """Embeds the fields named in `fields` (default: all categorical + multi) of a batch.

    `sparse=True` makes the tables emit sparse gradients (use torch.optim.SparseAdam for them,
    see `split_sparse_parameters`): with million-id tables only the looked-up rows are touched.
    """

    def __init__(self, spec: FeatureSpec, fields: list[str] | None = None,
                 numeric: bool = True, sparse: bool = False, init_std: float = 0.05):
        super().__init__()
        wanted = None if fields is None else set(fields)
        unknown = (wanted or set()) - {f.name for f in [*spec.categorical, *spec.multi]}
        if unknown:
            raise ValueError(f"fields {sorted(unknown)} are not categorical or multi fields of "
                             "the spec; fix the model config")
        pick = [f for f in spec.categorical if wanted is None or f.name in wanted]
        pick_multi = [f for f in spec.multi if wanted is None or f.name in wanted]
        for f in [*pick, *pick_multi]:
            if f.vocab_size < 1:
                raise ValueError(f"field {f.name!r} has vocab_size {f.vocab_size}; the data layer "
                                 "must set it (ids 0..vocab_size-1, 0 = OOV)")
        self.categorical = nn.ModuleDict(
            {f.name: nn.Embedding(f.vocab_size, f.embed_dim, sparse=sparse) for f in pick})
        self.multi = nn.ModuleDict(
            {f.name: nn.EmbeddingBag(f.vocab_size, f.embed_dim, mode="mean", padding_idx=0,
                                     sparse=sparse) for f in pick_multi})
        self.numeric = list(spec.numeric) if numeric else []
        self.dims = {f.name: f.embed_dim for f in [*pick, *pick_multi]}
        if self.numeric:
            self.dims[NUMERIC] = len(self.numeric)
        for table in [*self.categorical.values(), *self.multi.values()]:
            nn.init.normal_(table.weight, std=init_std)

    @property
    def names(self) -> list[str]:
        """Output blocks in concatenation order (NUMERIC stands for all numeric fields)."""
        return list(self.dims)

    def out_dim(self, exclude: tuple[str, ...] = ()) -> int:
        """Width of forward(batch, exclude)."""
        return sum(d for name, d in self.dims.items() if name not in exclude)

    def field_embeddings(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """{field name: (B, embed_dim)} plus {NUMERIC: (B, num_numeric)} when there are numerics."""
        out = {name: table(batch[name]) for name, table in self.categorical.items()}
        out.update({name: bag(batch[name]) for name, bag in self.multi.items()})
        if self.numeric:
            out[NUMERIC] = torch.stack([batch[name].float() for name in self.numeric], dim=1)
        return out

    @staticmethod
    def concat(parts: dict[str, torch.Tensor], exclude: tuple[str, ...] = ()) -> torch.Tensor:
        """Concatenate the blocks of field_embeddings() in order, leaving out `exclude`."""
        return torch.cat([v for k, v in parts.items() if k not in exclude], dim=1)

    def forward(self, batch: dict[str, torch.Tensor],
                exclude: tuple[str, ...] = ()) -> torch.Tensor:
        """(B, out_dim(exclude)): all embedded fields and numerics side by side."""
        return self.concat(self.field_embeddings(batch), exclude)


def split_sparse_parameters(model: nn.Module) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    """(parameters of sparse-gradient tables, all other parameters) for two optimisers."""
    sparse_ids = {id(m.weight) for m in model.modules()
                  if isinstance(m, (nn.Embedding, nn.EmbeddingBag)) and m.sparse}
    sparse = [p for p in model.parameters() if id(p) in sparse_ids]
    dense = [p for p in model.parameters() if id(p) not in sparse_ids]
    return sparse, dense
