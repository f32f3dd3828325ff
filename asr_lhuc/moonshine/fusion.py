"""Adding Moonshine's view of the audio to Whisper's features, frame by frame.

Moonshine's frames (~41.7 Hz) are linearly resampled to the Whisper frames of the same
utterance (50 Hz), layer-normed and linearly projected onto Whisper's feature space, then
added. The projection starts at zero, so a fused model initialised from a Whisper-only one
computes exactly what that model computed and training only has to learn what Moonshine adds.
"""

import torch
from torch import nn
from torch.nn import functional as F

from .frontend import MoonshineFrontend


class MoonshineFusion(nn.Module):
    """`forward(wavs, wav_lens, ids, speeds, frames (B,) ints, n_frames)` -> (B, n_frames, dim)."""

    def __init__(self, dim: int, model: str = "base", cache_dir: str | None = None):
        super().__init__()
        self.frontend = MoonshineFrontend(model, cache_dir)
        self.norm = nn.LayerNorm(self.frontend.dim, elementwise_affine=False)
        self.project = nn.Linear(self.frontend.dim, dim)
        nn.init.zeros_(self.project.weight)
        nn.init.zeros_(self.project.bias)

    def forward(self, wavs: torch.Tensor, wav_lens: torch.Tensor, ids, speeds,
                frames: list[int], n_frames: int) -> torch.Tensor:
        feats = self.frontend.utterance_features(wavs, wav_lens, ids, speeds)
        aligned = [resample_frames(f, n) for f, n in zip(feats, frames)]
        padded = nn.utils.rnn.pad_sequence(aligned, batch_first=True)
        padded = F.pad(padded, (0, 0, 0, n_frames - padded.shape[1]))
        mask = torch.arange(n_frames, device=padded.device)[None, :] < torch.tensor(
            frames, device=padded.device)[:, None]
        return self.project(self.norm(padded)) * mask[..., None]


def resample_frames(feats: torch.Tensor, n: int) -> torch.Tensor:
    """(T, dim) frames linearly interpolated to (n, dim) over the same stretch of time."""
    if feats.shape[0] == n:
        return feats
    return F.interpolate(feats.T[None], size=n, mode="linear", align_corners=False)[0].T
