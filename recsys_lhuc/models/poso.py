"""POSO: each hidden layer is several parallel modules mixed per sample by a user-group gate.

The group is a user feature (e.g. an activity level or age bucket) or, with `num_groups`, a hashed
bucket of it (e.g. of the user id). A `lhuc.GateBank` reads the group's own embedding and gives
each layer one 2*sigmoid weight per module, so groups whose behaviour differs can lean on
different modules instead of being averaged away by the majority.
"""

import torch
from torch import nn

from lhuc import GateBank
from recsys_lhuc.spec import FeatureSpec

from .embedding import FeatureEmbedding

_HASH_MULTIPLIER = 2654435761  # Knuth's multiplicative hash: spreads consecutive ids over buckets


class POSOLayer(nn.Module):
    """`num_modules` Linear(in_dim, out_dim) computed as one matmul, averaged with gate weights."""

    def __init__(self, in_dim: int, out_dim: int, num_modules: int):
        super().__init__()
        self.num_modules, self.out_dim = num_modules, out_dim
        self.linear = nn.Linear(in_dim, out_dim * num_modules)

    def forward(self, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """x (B, in_dim), weights (B, num_modules) -> (B, out_dim)."""
        outputs = self.linear(x).unflatten(-1, (self.num_modules, self.out_dim))
        return (weights.unsqueeze(-1) * outputs).mean(dim=1)


class POSO(nn.Module):
    """Shared embeddings -> POSO layers (ReLU) -> logit."""

    def __init__(self, spec: FeatureSpec, hidden: tuple[int, ...] = (256, 128, 64),
                 group_field: str | None = None, num_groups: int | None = None,
                 group_dim: int = 8, num_modules: int = 4, dropout: float = 0.0,
                 sparse: bool = False):
        super().__init__()
        self.group_field = group_field or spec.user_field
        vocab = spec.get_field(self.group_field).vocab_size
        self.hashed = num_groups is not None
        self.num_groups = num_groups if self.hashed else vocab
        self.group_embedding = nn.Embedding(self.num_groups, group_dim)
        self.embedding = FeatureEmbedding(spec, sparse=sparse)
        widths = [self.embedding.out_dim(), *hidden]
        self.layers = nn.ModuleList(POSOLayer(a, b, num_modules)
                                    for a, b in zip(widths, widths[1:]))
        self.gates = GateBank(group_dim, [num_modules] * len(hidden))
        self.dropout = nn.Dropout(dropout)
        self.logit = nn.Linear(widths[-1], 1)

    def group_ids(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        ids = batch[self.group_field]
        if self.hashed:  # OOV id 0 stays in bucket 0
            return (ids * _HASH_MULTIPLIER) % self.num_groups
        return ids

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        weights = self.gates(self.group_embedding(self.group_ids(batch)))
        x = self.embedding(batch)
        for layer, w in zip(self.layers, weights):
            x = self.dropout(torch.relu(layer(x, w)))
        return self.logit(x).squeeze(-1)
