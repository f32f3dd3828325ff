"""A frozen Whisper encoder as the acoustic front end of the CTC model, with a feature cache.

The encoder is pretrained on 680k hours, so a small CTC encoder on top of its output learns from
a few hours of speech what a from-scratch model cannot. It is frozen: its weights are kept out
of `parameters()` and the state dict (checkpoints stay small; the weights are re-read from the
package) and it always runs in eval mode without gradients. Because it is frozen, its output
per utterance never changes, so it is computed once per utterance id and kept in memory and, with
`cache_dir`, on disk (shared by runs and resumed jobs, written atomically).

Speed perturbation changes the audio, so its features get their own cache entries: utterance
`id` at speed 110 (SpeechBrain's convention: 110 = 10% faster, fewer samples) is kept as
`id@sp110`. With a few fixed speeds (90/100/110) cached, speed-perturbed training costs no more
than plain training after the first pass over each (utterance, speed).

With `split_block=k` the front end stops after Whisper's first k blocks (its own cache folder,
`whisper-<model>@block<k>`), for models that fine-tune the blocks above (`WhisperTop`).
"""

import functools
import re
from pathlib import Path

import torch
from speechbrain.augment.time_domain import Resample
from torch import nn

from .bundled import whisper_model_bin
from .encoder import HOP, MAX_FRAMES, LogMel, WhisperEncoder

CHUNK_SAMPLES = 2 * MAX_FRAMES * HOP  # 30 s


class WhisperFrontend(nn.Module):
    """`forward(wavs (B, S), wav_lens (B,) relative, ids=None)` -> (B, T, dim) at 50 Hz."""

    def __init__(self, model: str = "base", cache_dir: str | None = None,
                 split_block: int | None = None):
        super().__init__()
        encoder = _frozen_encoder(str(whisper_model_bin(model)))
        self.__dict__["encoder"] = encoder  # not a submodule: not trained, not saved
        self.log_mel = LogMel(encoder.conv1.in_channels)
        self.dim = encoder.dim
        if split_block is not None and not 0 <= split_block < len(encoder.blocks):
            raise ValueError(f"split_block {split_block}: Whisper-{model} has "
                             f"{len(encoder.blocks)} blocks")
        self.split_block = split_block
        tag = _safe(Path(model).name or model)
        tag += "" if split_block is None else f"@block{split_block}"
        self.cache_dir = Path(cache_dir) / f"whisper-{tag}" if cache_dir else None
        self.memory: dict[str, torch.Tensor] = {}
        self.resamplers: dict[int, Resample] = {}

    @torch.no_grad()
    def encode_one(self, wav: torch.Tensor) -> torch.Tensor:
        """(T, dim) features of one unpadded waveform; audio over 30 s goes in 30 s chunks."""
        if self.encoder.conv1.weight.device != wav.device:
            self.encoder.to(wav.device)
        level = self.split_block
        return encode_levels(self.encoder, self.log_mel, wav, [level])[level]

    def cache_path(self, utt_id: str) -> Path | None:
        if self.cache_dir is None:
            return None
        return self.cache_dir / (_safe(utt_id) + ".pt")

    def perturb(self, wav: torch.Tensor, speed: int) -> torch.Tensor:
        """`wav` played `speed`% as fast (SpeechBrain's SpeedPerturb resampling)."""
        if speed == 100:
            return wav
        if speed not in self.resamplers:
            self.resamplers[speed] = Resample(orig_freq=speed, new_freq=100)
        return self.resamplers[speed](wav[None])[0]

    def cached(self, utt_id: str | None, wav: torch.Tensor, speed: int = 100) -> torch.Tensor:
        """Features of utterance `utt_id` at `speed` (computed from `wav` the first time only)."""
        if utt_id is None:
            return self.encode_one(self.perturb(wav, speed))
        key = speed_key(utt_id, speed)
        if key not in self.memory:
            path = self.cache_path(key)
            if path is not None and path.is_file():
                feats = torch.load(path, map_location="cpu", weights_only=True)
            else:
                feats = self.store(key, self.encode_one(self.perturb(wav, speed)))
            self.memory[key] = feats
        return self.memory[key].to(wav.device, torch.float32)

    def store(self, key: str, feats: torch.Tensor) -> torch.Tensor:
        """Write `feats` (fp16) as the cache entry `key` (atomically) and return them."""
        feats = feats.half().cpu()
        path = self.cache_path(key)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(path.name + ".part")
            torch.save(feats, tmp)
            tmp.replace(path)
        return feats

    def encode_batch(self, wavs: torch.Tensor, wav_lens: torch.Tensor, ids=None,
                     speeds=None) -> tuple[torch.Tensor, torch.Tensor]:
        """(features (B, T, dim), relative lengths (B,)) of a padded batch; `speeds` (one per
        utterance, percent) perturbs each utterance, which changes its length."""
        samples = torch.round(wav_lens * wavs.shape[1]).long().tolist()
        ids = list(ids) if ids is not None else [None] * len(samples)
        speeds = list(speeds) if speeds is not None else [100] * len(samples)
        feats = [self.cached(i, wavs[b, :n], s)
                 for b, (i, n, s) in enumerate(zip(ids, samples, speeds))]
        lengths = torch.tensor([f.shape[0] for f in feats], dtype=torch.float32)
        return (nn.utils.rnn.pad_sequence(feats, batch_first=True),
                (lengths / lengths.max()).to(wav_lens.device))

    def forward(self, wavs: torch.Tensor, wav_lens: torch.Tensor, ids=None) -> torch.Tensor:
        return self.encode_batch(wavs, wav_lens, ids)[0]

    def __deepcopy__(self, memo):
        # Nothing here is trained or saved, so copies of a model (adaptation takes one per
        # system) share the front end: one encoder and one feature memory, not a copy each.
        return self


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


@functools.lru_cache(maxsize=4)
def _frozen_encoder(model_bin: str) -> WhisperEncoder:
    """One frozen encoder per weights file, shared by every front end that uses it (the file
    is read once per process, not once per model built or checkpoint loaded)."""
    return WhisperEncoder.from_ct2(model_bin).requires_grad_(False)


def speed_key(utt_id: str, speed: int) -> str:
    """Cache key of an utterance at a speed (the plain id at 100%)."""
    return utt_id if speed == 100 else f"{utt_id}@sp{speed}"


def _safe(name: str) -> str:
    """A file name for an utterance id or model name."""
    return re.sub(r"[^\w.@-]", "_", name)
