"""Reading Kaldi-style data folders (text, utt2spk, wav.scp, spk2age, spk2gender)."""

from pathlib import Path

from tqdm import tqdm

from .audio import (
    MISSING_WAV,
    NOT_MONO,
    UNREADABLE,
    AudioProblem,
    check_signal,
    read_channels,
)
from .manifest import Utterance
from .summary import PrepSummary
from .text import normalize_text

MISSING_TRANSCRIPT = "missing_transcript"
EMPTY_TRANSCRIPT = "empty_transcript"
MISSING_SPEAKER = "missing_speaker"


def read_kaldi_map(path: Path, required: bool = True) -> dict[str, str]:
    """``key value...`` lines (tab or space separated) as a dict; {} if optional and absent."""
    if not path.is_file():
        if required:
            raise FileNotFoundError(
                f"{path} is missing: a Kaldi-style split folder needs text, utt2spk and wav.scp"
            )
        return {}
    table = {}
    for line_no, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        key, *rest = line.split(maxsplit=1)
        if key in table:
            raise ValueError(f"{path}:{line_no}: duplicate key {key!r}; keys must be unique")
        table[key] = rest[0].strip() if rest else ""
    return table


def resolve_wav(entry: str, corpus_root: Path) -> Path | None:
    """A wav.scp entry as an absolute path (relative ones are taken from the corpus root).

    Returns None for Kaldi pipe commands ("sox ... |"), which this reader does not run.
    """
    if entry.endswith("|"):
        return None
    path = Path(entry)
    return (path if path.is_absolute() else corpus_root / path).resolve()


def read_kaldi_split(
    split_dir: Path, corpus_root: Path, summary: PrepSummary, speaker_prefix: str = ""
) -> list[Utterance]:
    """Utterances of one Kaldi split; anything without wav, transcript or speaker is skipped.

    Durations are filled in later by :func:`keep_usable_audio`.
    """
    texts = read_kaldi_map(split_dir / "text")
    utt2spk = read_kaldi_map(split_dir / "utt2spk")
    wavs = read_kaldi_map(split_dir / "wav.scp")
    spk2age = read_kaldi_map(split_dir / "spk2age", required=False)
    spk2gender = read_kaldi_map(split_dir / "spk2gender", required=False)
    for utt_id in sorted(set(wavs) - set(texts)):
        summary.skip(utt_id, MISSING_TRANSCRIPT, f"in {split_dir}/wav.scp but not in text")
    utterances = []
    for utt_id, raw_text in sorted(texts.items()):
        if utt_id not in wavs:
            summary.skip(utt_id, MISSING_WAV, f"in {split_dir}/text but not in wav.scp")
            continue
        words = normalize_text(raw_text)
        if not words:
            summary.skip(utt_id, EMPTY_TRANSCRIPT, f"{raw_text!r} in {split_dir}/text")
            continue
        speaker = utt2spk.get(utt_id)
        if not speaker:
            summary.skip(utt_id, MISSING_SPEAKER, f"not in {split_dir}/utt2spk")
            continue
        wav = resolve_wav(wavs[utt_id], corpus_root)
        if wav is None:
            summary.skip(utt_id, UNREADABLE, f"pipe command in wav.scp: {wavs[utt_id]}")
            continue
        utterances.append(Utterance(
            ID=utt_id, wav=str(wav), spk_id=speaker_prefix + speaker, wrd=words,
            age=spk2age.get(speaker, ""), gender=spk2gender.get(speaker, "").lower(),
        ))
    return utterances


def keep_usable_audio(
    utterances: list[Utterance], summary: PrepSummary, expected_rate: int, silence_peak: float,
    desc: str = "checking audio",
) -> list[Utterance]:
    """Read every file; fill in durations; skip (and count) unusable ones.

    A wrong sample rate is skipped, not resampled: for a corpus recorded at ``expected_rate``
    another rate means a broken or foreign file. So is a multi-channel file: the manifest keeps
    the original files, which training reads as they are (mono only).
    """
    kept = []
    for utt in tqdm(utterances, desc=desc, unit="utt", mininterval=2.0):
        try:
            signal, rate = read_channels(utt.wav)
            if signal.shape[1] != 1:
                raise AudioProblem(NOT_MONO, f"{utt.wav} has {signal.shape[1]} channels")
            signal = signal[:, 0]
            check_signal(signal, rate, expected_rate, silence_peak, utt.wav)
        except AudioProblem as problem:
            summary.skip(utt.ID, problem.reason, problem.detail)
            continue
        utt.duration = len(signal) / rate
        kept.append(utt)
    return kept
