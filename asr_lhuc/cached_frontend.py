"""A frozen pretrained encoder as a front end, with a per-utterance feature cache.

A frozen encoder's output for an utterance never changes, so it is computed once per utterance
and kept in memory and, with `cache_dir`, on disk (shared by runs and resumed jobs, written
atomically, fp16). An entry is keyed by what the features depend on: the front end (its own
folder, `tag`), the utterance id and speed, and a hash of the audio samples, so a corpus
re-prepared with the same ids but other audio is recomputed, never served stale features
(`id.<hash>.pt`; entries of the older id-only layout, `id.pt`, are ignored with a warning).
Speed perturbation changes the audio, so its features get their own entries: utterance `id` at
speed 110 (SpeechBrain's convention: 110 = 10% faster, fewer samples) is kept as
`id@sp110.<hash>`. With a few fixed speeds (90/100/110) cached, speed-perturbed training costs no
more than plain training after the first pass over each (utterance, speed).

Subclasses say how one unpadded waveform is encoded (`encode_one`).
"""

import hashlib
import logging
import re
from pathlib import Path

import torch
from speechbrain.augment.time_domain import Resample
from torch import nn

logger = logging.getLogger(__name__)


class CachedFrontend(nn.Module):
    """`forward(wavs (B, S), wav_lens (B,) relative, ids=None)` -> (B, T, dim)."""

    dim: int

    def __init__(self, cache_dir: str | None, tag: str):
        super().__init__()
        self.cache_dir = Path(cache_dir) / safe_name(tag) if cache_dir else None
        self.memory: dict[tuple[str, str], torch.Tensor] = {}
        self.resamplers: dict[int, Resample] = {}
        self.warned_old_layout = False

    def encode_one(self, wav: torch.Tensor) -> torch.Tensor:
        """(T, dim) features of one unpadded waveform."""
        raise NotImplementedError

    def cache_path(self, key: str, digest: str) -> Path | None:
        """The file of entry `key` (`speed_key`) for audio with hash `digest` (`audio_digest`)."""
        if self.cache_dir is None:
            return None
        return self.cache_dir / f"{safe_name(key)}.{digest}.pt"

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
        key, digest = speed_key(utt_id, speed), audio_digest(wav)
        if (key, digest) not in self.memory:
            path = self.cache_path(key, digest)
            if path is not None and path.is_file():
                feats = torch.load(path, map_location="cpu", weights_only=True)
            else:
                self._warn_if_old_layout(key)
                feats = self.store(key, digest, self.encode_one(self.perturb(wav, speed)))
            self.memory[key, digest] = feats
        return self.memory[key, digest].to(wav.device, torch.float32)

    def _warn_if_old_layout(self, key: str) -> None:
        old = self.cache_dir / f"{safe_name(key)}.pt" if self.cache_dir is not None else None
        if old is not None and not self.warned_old_layout and old.is_file():
            self.warned_old_layout = True
            logger.warning("%s holds entries of the old id-only layout (e.g. %s): they are not "
                           "used (entries are now keyed by the audio too) and can be deleted "
                           "(files named <id>.pt, without a hash)", self.cache_dir, old.name)

    def store(self, key: str, digest: str, feats: torch.Tensor) -> torch.Tensor:
        """Write `feats` (fp16) as the cache entry (`key`, `digest`) (atomically); return them."""
        feats = feats.half().cpu()
        path = self.cache_path(key, digest)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(path.name + ".part")
            torch.save(feats, tmp)
            tmp.replace(path)
        return feats

    def utterance_features(self, wavs: torch.Tensor, wav_lens: torch.Tensor, ids=None,
                           speeds=None) -> list[torch.Tensor]:
        """One (T_i, dim) tensor per utterance of a padded batch; `speeds` (one per utterance,
        percent) perturbs each utterance, which changes its length."""
        samples = torch.round(wav_lens * wavs.shape[1]).long().tolist()
        ids = list(ids) if ids is not None else [None] * len(samples)
        speeds = list(speeds) if speeds is not None else [100] * len(samples)
        return [self.cached(i, wavs[b, :n], s)
                for b, (i, n, s) in enumerate(zip(ids, samples, speeds))]

    def encode_batch(self, wavs: torch.Tensor, wav_lens: torch.Tensor, ids=None,
                     speeds=None) -> tuple[torch.Tensor, torch.Tensor]:
        """(features (B, T, dim), relative lengths (B,)) of a padded batch."""
        return pad_features(self.utterance_features(wavs, wav_lens, ids, speeds), wav_lens.device)

    def forward(self, wavs: torch.Tensor, wav_lens: torch.Tensor, ids=None) -> torch.Tensor:
        return self.encode_batch(wavs, wav_lens, ids)[0]

    def __deepcopy__(self, memo):
        # Nothing here is trained or saved, so copies of a model (adaptation takes one per
        # system) share the front end: one encoder and one feature memory, not a copy each.
        return self


def pad_features(feats: list[torch.Tensor], device) -> tuple[torch.Tensor, torch.Tensor]:
    """(padded (B, T, dim), relative lengths (B,)) of per-utterance features."""
    lengths = torch.tensor([f.shape[0] for f in feats], dtype=torch.float32)
    return (nn.utils.rnn.pad_sequence(feats, batch_first=True),
            (lengths / lengths.max()).to(device))


def speed_key(utt_id: str, speed: int) -> str:
    """Cache key of an utterance at a speed (the plain id at 100%)."""
    return utt_id if speed == 100 else f"{utt_id}@sp{speed}"


def audio_digest(wav: torch.Tensor) -> str:
    """A hash of the samples of an unpadded waveform (16 hex digits)."""
    samples = wav.detach().to("cpu", torch.float32).contiguous().numpy()
    return hashlib.blake2b(samples.tobytes(), digest_size=8).hexdigest()


def safe_name(name: str) -> str:
    """A file name for an utterance id or model name."""
    return re.sub(r"[^\w.@-]", "_", name)
