"""The MLP tower every model ends in, with optional per-layer multiplicative scales.

Gates (PPNet), amplitude tables (LHUC-user) and nothing at all (DNN) all reuse the same tower;
they only differ in the scales they pass to forward().
"""

import torch
from torch import nn

Scales = list[torch.Tensor] | None


class Tower(nn.Module):
    """Linear -> ReLU (-> dropout) for each width in `hidden`, then a 1-unit logit layer."""

    def __init__(self, in_dim: int, hidden: tuple[int, ...] = (256, 128, 64),
                 dropout: float = 0.0):
        super().__init__()
        if not hidden:
            raise ValueError("a tower needs at least one hidden layer")
        widths = [in_dim, *hidden]
        self.hidden = nn.ModuleList(nn.Linear(a, b) for a, b in zip(widths, widths[1:]))
        self.dropout = nn.Dropout(dropout)
        self.logit = nn.Linear(widths[-1], 1)

    @property
    def input_dims(self) -> list[int]:
        """Width of each hidden layer's input (what input-side gates must match)."""
        return [layer.in_features for layer in self.hidden]

    @property
    def output_dims(self) -> list[int]:
        """Width of each hidden layer's output (what output-side gates / LHUC tables match)."""
        return [layer.out_features for layer in self.hidden]

    def forward(self, x: torch.Tensor, input_scales: Scales = None, output_scales: Scales = None,
                logit_scale: torch.Tensor | None = None) -> torch.Tensor:
        """Logits (B,). Scales broadcast against (B, width), so a (width,) vector works too."""
        for i, layer in enumerate(self.hidden):
            if input_scales is not None:
                x = x * input_scales[i]
            x = self.dropout(torch.relu(layer(x)))
            if output_scales is not None:
                x = x * output_scales[i]
        if logit_scale is not None:
            x = x * logit_scale
        return self.logit(x).squeeze(-1)
