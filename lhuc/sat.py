"""Speaker-adaptive training (SAT-LHUC): in training, sometimes use the speaker-independent row.

With probability gamma the SI row stands in for the identity's own row, so one model learns both
a good SI operating point and identity-specific amplitudes. The draw can be made per utterance
(sequence), per frame (time step) or per identity present in the batch.
"""

import torch

SAT_LEVELS = ("utterance", "frame", "identity")


def check_level(level: str) -> str:
    if level not in SAT_LEVELS:
        raise ValueError(f"unknown sat_level {level!r}; choose one of {SAT_LEVELS}")
    return level


def si_mask(ids: torch.Tensor, gamma: float, level: str,
            num_frames: int | None = None) -> torch.Tensor:
    """Boolean mask, True where the SI row replaces the identity's row.

    Shape (B,) for "utterance" and "identity", (B, num_frames) for "frame".
    """
    if level == "utterance":
        return torch.rand(ids.shape, device=ids.device) < gamma
    if level == "identity":
        unique, inverse = torch.unique(ids, return_inverse=True)
        return (torch.rand(unique.shape, device=ids.device) < gamma)[inverse]
    if num_frames is None:
        raise ValueError("frame-level SAT needs hidden states with a time axis")
    return torch.rand((ids.shape[0], num_frames), device=ids.device) < gamma
