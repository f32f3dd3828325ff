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
    """`frames(...)`: Moonshine's frames on the Whisper time axis (frozen, cacheable);
    `forward(frames, frame_lens)`: their projection (B, T, dim), zero on padding."""

    def __init__(self, dim: int, model: str = "base", cache_dir: str | None = None):
        super().__init__()
        self.frontend = MoonshineFrontend(model, cache_dir)
        self.norm = nn.LayerNorm(self.frontend.dim, elementwise_affine=False)
        self.project = nn.Linear(self.frontend.dim, dim)
        nn.init.zeros_(self.project.weight)
        nn.init.zeros_(self.project.bias)

    def frames(self, wavs: torch.Tensor, wav_lens: torch.Tensor, ids, speeds,
               frames: list[int], n_frames: int) -> torch.Tensor:
        """(B, n_frames, 416) layer-normed Moonshine frames, utterance b resampled onto its
        `frames[b]` Whisper frames; zeros beyond them."""
        feats = self.frontend.utterance_features(wavs, wav_lens, ids, speeds)
        out = torch.zeros(len(feats), n_frames, self.frontend.dim, device=wavs.device)
        for b, (f, n) in enumerate(zip(feats, frames)):
            out[b, :n] = self.norm(resample_frames(f, n))
        return out

    def forward(self, frames: torch.Tensor, frame_lens: torch.Tensor) -> torch.Tensor:
        n = frames.shape[1]
        mask = torch.arange(n, device=frames.device)[None, :] < torch.round(
            frame_lens * n)[:, None]
        return self.project(frames) * mask[..., None]


def resample_frames(feats: torch.Tensor, n: int) -> torch.Tensor:
    """(T, dim) frames linearly interpolated to (n, dim) over the same stretch of time."""
    if feats.shape[0] == n:
        return feats
    return F.interpolate(feats.T[None], size=n, mode="linear", align_corners=False)[0].T
