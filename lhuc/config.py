"""LHUCConfig: where LHUC goes in a model and how its amplitudes behave."""

import re
from dataclasses import dataclass, field

from torch import nn


@dataclass
class LHUCConfig:
    """What `attach_lhuc` needs to know.

    Args:
        num_ids: identities (speakers, users) with their own row; more can be added later.
        target_modules: module names or regular expressions (full match, or a suffix after a dot,
            as in PEFT): LHUC scales the output (or input) of every module they match.
        target_classes: module classes to target, alternatively (or in addition).
        reparam: "2sigmoid" (default), "sigmoid", "exp", "identity" or "relu".
        sat_gamma: SAT-LHUC probability of using the SI row in training (0 disables it).
        sat_level: "utterance", "frame" or "identity".
        channel_axis: axis of the hidden units in the targets' outputs (-1 channel-last,
            1 channel-first); torch Conv/BatchNorm layers default to 1.
        channel_axes: per-module overrides of `channel_axis`, keyed by module name.
        dims: hidden widths by module name, for modules whose width cannot be inferred.
        position: "output" (LHUC proper) or "input" (PPNet scales each layer's input).
    """

    num_ids: int
    target_modules: list[str] | str | None = None
    target_classes: tuple[type, ...] = ()
    reparam: str = "2sigmoid"
    sat_gamma: float = 0.0
    sat_level: str = "utterance"
    channel_axis: int = -1
    channel_axes: dict[str, int] = field(default_factory=dict)
    dims: dict[str, int] = field(default_factory=dict)
    position: str = "output"

    def __post_init__(self):
        if isinstance(self.target_modules, str):
            self.target_modules = [self.target_modules]
        if not self.target_modules and not self.target_classes:
            raise ValueError("LHUCConfig needs target_modules or target_classes")
        if self.position not in ("output", "input"):
            raise ValueError(f"position must be 'output' or 'input', got {self.position!r}")
        self.target_classes = tuple(self.target_classes)

    def matches(self, name: str, module: nn.Module) -> bool:
        """Whether the module called `name` is a target."""
        if self.target_classes and isinstance(module, self.target_classes):
            return True
        return any(name == p or name.endswith("." + p) or re.fullmatch(p, name)
                   for p in self.target_modules or [])
