"""Reparameterisations xi(r): how a free parameter r becomes a hidden-unit amplitude.

The LHUC paper constrains amplitudes with 2*sigmoid (range (0, 2)); other choices are kept for
comparison. Each one knows the r that gives amplitude 1, so a fresh table leaves a model unchanged.
"""

from collections.abc import Callable
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Reparam:
    """A named map r -> amplitude with its range and its amplitude-1 starting point."""

    name: str
    fn: Callable[[torch.Tensor], torch.Tensor]
    init_r: float  # the r at which a fresh table starts
    low: float
    high: float

    def __call__(self, r: torch.Tensor) -> torch.Tensor:
        return self.fn(r)

    @property
    def init_amplitude(self) -> float:
        return float(self.fn(torch.tensor(self.init_r)))


def _two_sigmoid(r: torch.Tensor) -> torch.Tensor:
    return 2.0 * torch.sigmoid(r)


REPARAMS = {
    "2sigmoid": Reparam("2sigmoid", _two_sigmoid, 0.0, 0.0, 2.0),
    # sigmoid never reaches 1: it starts at 0.5 and suits models trained with LHUC in place (SAT).
    "sigmoid": Reparam("sigmoid", torch.sigmoid, 0.0, 0.0, 1.0),
    "exp": Reparam("exp", torch.exp, 0.0, 0.0, float("inf")),
    "identity": Reparam("identity", lambda r: r, 1.0, float("-inf"), float("inf")),
    "relu": Reparam("relu", torch.relu, 1.0, 0.0, float("inf")),
}


def get_reparam(name: str) -> Reparam:
    """Return the reparameterisation called `name` (one of REPARAMS)."""
    try:
        return REPARAMS[name]
    except KeyError:
        choices = sorted(REPARAMS)
        raise ValueError(f"unknown LHUC reparam {name!r}; choose one of {choices}") from None
