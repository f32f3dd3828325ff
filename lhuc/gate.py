"""Gate networks (PPNet's Gate NN): per-layer amplitudes computed from personal-id embeddings.

The gate sees the personal ids (uid/pid/aid) and, as context, the embeddings of the other
features. The context is detached: the gate must not pull the shared embeddings away from what
the main network needs, while the gate's own id embeddings learn through it.
"""

import math

import torch
from torch import nn


def gate_input(personal: torch.Tensor, context: torch.Tensor | None) -> torch.Tensor:
    """Concatenate the personal embeddings with the *detached* context features."""
    if context is None:
        return personal
    return torch.cat([personal, context.detach()], dim=-1)


def _init_output_layer(layer: nn.Linear, scale: float) -> None:
    # Zero weights and bias logit(1/scale) give scale*sigmoid(.) == 1 exactly at the start.
    if scale <= 1.0:
        raise ValueError(f"gate scale must exceed 1 so the gate can start at 1, got {scale}")
    nn.init.zeros_(layer.weight)
    nn.init.constant_(layer.bias, -math.log(scale - 1.0))


class GateNN(nn.Module):
    """Two-layer gate: Linear -> ReLU -> Linear -> scale*sigmoid, output 1 at initialisation."""

    def __init__(self, in_dim: int, out_dim: int, hidden_dim: int | None = None,
                 scale: float = 2.0):
        super().__init__()
        self.scale = scale
        self.fc1 = nn.Linear(in_dim, hidden_dim or out_dim)
        self.fc2 = nn.Linear(hidden_dim or out_dim, out_dim)
        _init_output_layer(self.fc2, scale)

    def forward(self, personal: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        hidden = torch.relu(self.fc1(gate_input(personal, context)))
        return self.scale * torch.sigmoid(self.fc2(hidden))


class GateBank(nn.Module):
    """One gate per layer, all reading the same input.

    With `fused=True` the first layers of all gates run as one matmul (one kernel launch and one
    read of the input instead of one per layer); the output is the same as with separate gates.
    On CPU this measured no faster (results/recsys/throughput_cpu.json); the gain, if any, is in
    kernel launches on GPU.
    """

    def __init__(self, in_dim: int, out_dims: list[int],
                 hidden_dim: int | list[int] | None = None, scale: float = 2.0,
                 fused: bool = True):
        super().__init__()
        self.scale, self.fused = scale, fused
        if not isinstance(hidden_dim, (list, tuple)):
            hidden_dim = [hidden_dim] * len(out_dims)
        self.hidden_dims = [h or d for h, d in zip(hidden_dim, out_dims)]
        if fused:
            self.fc1 = nn.Linear(in_dim, sum(self.hidden_dims))
        else:
            self.fc1s = nn.ModuleList(nn.Linear(in_dim, h) for h in self.hidden_dims)
        self.fc2s = nn.ModuleList(nn.Linear(h, d) for h, d in zip(self.hidden_dims, out_dims))
        for layer in self.fc2s:
            _init_output_layer(layer, scale)

    def first_layers(self, x: torch.Tensor) -> list[torch.Tensor]:
        if self.fused:
            return list(torch.relu(self.fc1(x)).split(self.hidden_dims, dim=-1))
        return [torch.relu(fc(x)) for fc in self.fc1s]

    def forward(self, personal: torch.Tensor,
                context: torch.Tensor | None = None) -> list[torch.Tensor]:
        hidden = self.first_layers(gate_input(personal, context))
        return [self.scale * torch.sigmoid(fc(h)) for fc, h in zip(self.fc2s, hidden)]

    @torch.no_grad()
    def to_fused(self) -> "GateBank":
        """A fused bank computing exactly this bank's function (for benchmarks and tests)."""
        if self.fused:
            return self
        in_dim = self.fc1s[0].in_features
        out_dims = [fc.out_features for fc in self.fc2s]
        bank = GateBank(in_dim, out_dims, self.hidden_dims, self.scale, fused=True)
        bank.to(self.fc1s[0].weight)
        bank.fc1.weight.copy_(torch.cat([fc.weight for fc in self.fc1s]))
        bank.fc1.bias.copy_(torch.cat([fc.bias for fc in self.fc1s]))
        bank.fc2s.load_state_dict(self.fc2s.state_dict())
        return bank
