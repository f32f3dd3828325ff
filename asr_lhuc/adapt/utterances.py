"""Test speakers' utterances held in memory (adaptation reads them many times)."""

import logging
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

import torch

from asr_lhuc.data import AudioProblem, load_audio, resample
from asr_lhuc.data.manifest import read_dataset_rows

logger = logging.getLogger(__name__)


@dataclass
class SpeakerUtterance:
    """One utterance: its waveform (1-D float tensor), reference transcript and speaker."""

    id: str
    spk_id: str
    wav: torch.Tensor
    text: str
    duration: float
    age: str = ""


def load_speakers(csv_path, sample_rate: int = 16000, speakers: list[str] | None = None,
                  max_speakers: int | None = None, max_utts: int | None = None
                  ) -> dict[str, list[SpeakerUtterance]]:
    """Read a manifest CSV and load its audio, grouped by speaker (utterances sorted by ID).

    Audio that cannot be used (missing, unreadable, empty, NaN/inf samples) is skipped: each
    file is named in a warning and the skips are counted in one more, so that no such utterance
    is scored and the shrunken set is visible. Other rates are resampled (counted, logged).
    `speakers` keeps only those speakers.
    """
    groups: dict[str, list[SpeakerUtterance]] = defaultdict(list)
    rows = sorted(({"ID": uid, **row} for uid, row in read_dataset_rows(csv_path).items()),
                  key=lambda r: (r["spk_id"], r["ID"]))  # read_dataset_rows checks the columns
    skipped, resampled, name = Counter(), 0, Path(csv_path).name
    for row in rows:
        spk = row["spk_id"]
        if speakers is not None and spk not in speakers:
            continue
        if spk not in groups and max_speakers is not None and len(groups) >= max_speakers:
            continue
        if max_utts is not None and len(groups[spk]) >= max_utts:
            continue
        try:
            signal, rate = load_audio(row["wav"])
        except AudioProblem as err:
            logger.warning("skipping utterance %s of %s: %s", row["ID"], name, err)
            skipped[err.reason] += 1
            continue
        resampled += rate != sample_rate
        signal = resample(signal, rate, sample_rate)
        groups[spk].append(SpeakerUtterance(row["ID"], spk, torch.from_numpy(signal).float(),
                                            row["wrd"], len(signal) / sample_rate,
                                            row.get("age", "")))
    if skipped:
        logger.warning("%s: skipped %d utterances with unusable audio (%s); they are not scored",
                       name, sum(skipped.values()), dict(skipped))
    if resampled:
        logger.warning("%s: resampled %d utterances to %d Hz", name, resampled, sample_rate)
    return dict(sorted(groups.items()))


def pad_batch(utts: list[SpeakerUtterance]) -> tuple[torch.Tensor, torch.Tensor]:
    """Zero-pad waveforms to (B, L) and give SpeechBrain's relative lengths (B,)."""
    longest = max(len(u.wav) for u in utts)
    wavs = torch.zeros(len(utts), longest)
    for i, utt in enumerate(utts):
        wavs[i, : len(utt.wav)] = utt.wav
    lens = torch.tensor([len(u.wav) / longest for u in utts])
    return wavs, lens


def take_seconds(utts: list[SpeakerUtterance], seconds: float | None) -> list[SpeakerUtterance]:
    """The first utterances whose durations add up to at most `seconds` (None: all).

    The budget is a ceiling (AdaptConfig.max_adapt_seconds: "at most"): an utterance that would
    cross it is left out, so "10 s" never means 14 s. The first utterance is kept even when it
    alone is longer, so that every speaker still has something to adapt on."""
    if seconds is None:
        return list(utts)
    kept, total = [], 0.0
    for utt in utts:
        if kept and total + utt.duration > seconds:
            break
        kept.append(utt)
        total += utt.duration
    return kept
