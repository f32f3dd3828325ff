"""A small synthetic multi-speaker corpus made with eSpeak NG: the default, always-available data.

Each "speaker" is an eSpeak NG accent (en-us, en (British), en-gb-scotland, en-029, ...) x a
voice variant (+m1.. +f5) x a base pitch, pitch range and speaking rate, heard through a fixed
per-speaker channel: a short random FIR filter (spectral tilt and colouring), a gain and a noise
floor. Speakers therefore differ acoustically in ways a per-speaker rescaling of hidden units can
learn. Sentences (3-7 words, 76-word vocabulary) come from a small seeded grammar.

Splits: the first ``n_train_speakers`` speakers give ``train`` and, by utterance, ``valid``; the
other ``n_test_speakers`` (the adaptation speakers) give ``test``, split per speaker into
``test_adapt`` and ``test_eval``. Everything is a deterministic function of ``seed``.
"""

import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from .audio import (
    DEFAULT_SILENCE_PEAK,
    AudioProblem,
    check_signal,
    load_audio,
    resample,
    single_threaded_torch,
    write_wav,
)
from .espeak import SynthRequest, synthesize_batch
from .manifest import Utterance, is_prepared, manifest_paths, save_prepared
from .splits import split_adapt_eval, split_by_utterance
from .summary import PrepSummary
from .text import normalize_text

logger = logging.getLogger(__name__)

SPLITS = ["train", "valid", "test", "test_adapt", "test_eval"]
ACCENTS = ["en-us", "en", "en-gb-scotland", "en-gb-x-rp", "en-029", "en-us-nyc",
           "en-gb-x-gbclan", "en-gb-x-gbcwmd"]
VARIANTS = ["m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1", "f2", "f3", "f4", "f5"]

WORDS = {
    "DET": ["the", "a", "my", "your", "this", "that", "every", "no"],
    "ADJ": ["red", "green", "blue", "yellow", "black", "white", "small", "big", "old", "young",
            "happy", "quiet", "bright", "dark", "fast", "slow", "warm", "cold"],
    "NOUN": ["cat", "dog", "bird", "fish", "horse", "house", "river", "car", "book", "chair",
             "table", "window", "garden", "tree", "boat", "train", "phone", "apple", "door",
             "clock"],
    "VT": ["sees", "likes", "finds", "takes", "moves", "opens", "follows", "paints", "holds",
           "wants"],
    "VI": ["sleeps", "runs", "waits", "sings", "falls", "stops", "jumps", "shines"],
    "PREP": ["near", "under", "behind", "above", "inside"],
    "ADV": ["today", "again", "slowly", "quickly", "now", "often"],
}
# Sentence patterns of 3 to 7 words.
PATTERNS = [
    "DET NOUN VI",
    "DET ADJ NOUN VI",
    "DET ADJ NOUN VI ADV",
    "DET NOUN VT DET NOUN",
    "DET ADJ NOUN VT DET NOUN",
    "DET NOUN VI PREP DET NOUN",
    "DET NOUN VT DET NOUN ADV",
    "DET ADJ NOUN VT DET ADJ NOUN",
    "DET ADJ NOUN VI PREP DET NOUN",
]


def vocabulary() -> list[str]:
    """All words the grammar can produce (upper-case, as in the manifests), sorted."""
    words = {w for group in WORDS.values() for w in group} | {"an"}
    return sorted(normalize_text(w) for w in words)


def make_sentence(rng: np.random.Generator) -> str:
    """One random sentence of the grammar, e.g. "the old dog sees an apple"."""
    pattern = PATTERNS[rng.integers(len(PATTERNS))].split()
    words = [WORDS[slot][rng.integers(len(WORDS[slot]))] for slot in pattern]
    for i in range(len(words) - 1):  # "a apple" -> "an apple"
        if words[i] == "a" and words[i + 1][0] in "aeiou":
            words[i] = "an"
    return " ".join(words)


@dataclass
class SpeakerStyle:
    """Everything that makes one synthetic speaker sound like itself."""

    spk_id: str
    voice: str  # eSpeak NG voice name, accent+variant
    gender: str
    pitch: int  # eSpeak 0..100
    pitch_range: int  # eSpeak 0..100
    rate: int  # words per minute
    fir: list[float]  # channel impulse response (unit energy)
    gain_db: float
    noise_dbfs: float  # level of the white noise floor


def make_speakers(n: int, seed: int) -> list[SpeakerStyle]:
    """``n`` speakers with distinct accent/variant pairs (repeating pairs only past 96)."""
    rng = np.random.default_rng([seed, 1])
    pairs = [(a, v) for a in ACCENTS for v in VARIANTS]
    order = np.concatenate([rng.permutation(len(pairs)) for _ in range(n // len(pairs) + 1)])
    speakers = []
    for index in range(n):
        accent, variant = pairs[order[index]]
        tilt = rng.uniform(-0.85, 0.85)  # >0 brightens, <0 muffles
        colour = np.concatenate([[1.0], rng.normal(0.0, 0.5, 5) * np.exp(-np.arange(1, 6) / 2)])
        fir = np.convolve([1.0, tilt], colour)
        speakers.append(SpeakerStyle(
            spk_id=f"syn{index:03d}", voice=f"{accent}+{variant}", gender=variant[0],
            pitch=int(rng.integers(20, 81)), pitch_range=int(rng.integers(20, 81)),
            rate=int(rng.integers(130, 181)), fir=(fir / np.linalg.norm(fir)).round(5).tolist(),
            gain_db=round(float(rng.uniform(-10.0, 0.0)), 2),
            noise_dbfs=round(float(rng.uniform(-65.0, -45.0)), 2),
        ))
    return speakers


def speaker_utterances(style: SpeakerStyle, index: int, n_utts: int, seed: int):
    """(utt_id, text, SynthRequest) for each utterance: sentence and small prosody jitter."""
    items = []
    for k in range(n_utts):
        rng = np.random.default_rng([seed, 2, index, k])
        text = make_sentence(rng)
        request = SynthRequest(
            text=text, rate=int(style.rate * rng.uniform(0.94, 1.06)),
            pitch=int(np.clip(style.pitch + rng.integers(-3, 4), 0, 100)),
            pitch_range=style.pitch_range,
        )
        items.append((f"{style.spk_id}_{k:03d}", text, request))
    return items


def apply_channel(
    signal: np.ndarray, style: SpeakerStyle, rng: np.random.Generator
) -> np.ndarray:
    """Filter by the speaker's FIR, set its level and add its noise floor."""
    coloured = np.convolve(signal, style.fir)[: len(signal)]
    coloured *= 0.5 / max(float(np.abs(coloured).max()), 1e-9)
    coloured *= 10 ** (style.gain_db / 20)
    coloured += rng.normal(0.0, 10 ** (style.noise_dbfs / 20), len(coloured))
    return np.clip(coloured, -1.0, 1.0).astype(np.float32)


def prepare_synthetic(
    data_folder: str | Path,
    save_folder: str | Path,
    n_train_speakers: int = 24,
    n_test_speakers: int = 6,
    utts_per_train_speaker: int = 30,
    utts_per_test_speaker: int = 20,
    valid_fraction: float = 0.1,
    n_adapt_utts: int = 5,
    seed: int = 1234,
    sample_rate: int = 16000,
    silence_peak: float = DEFAULT_SILENCE_PEAK,
    skip_prep: bool = False,
) -> dict[str, Path]:
    """Generate the synthetic corpus into ``data_folder/wav`` and write manifests to save_folder.

    Arguments
    ---------
    data_folder : where the generated WAV files go (``<data_folder>/wav/<spk>/<utt>.wav``);
        may be the same folder as ``save_folder``.
    save_folder : where the CSVs, ``speakers.json``, ``prep_summary.json`` and
        ``prep_options.json`` go.
    n_train_speakers, utts_per_train_speaker : the training speakers (train + valid).
    n_test_speakers, utts_per_test_speaker : the held-out adaptation speakers (test).
    valid_fraction : share of each training speaker's utterances moved to ``valid``.
    n_adapt_utts : utterances per test speaker in ``test_adapt``; the rest form ``test_eval``.
    seed : the corpus is a deterministic function of it.
    sample_rate : output rate of the WAV files.
    silence_peak : generated files below this peak are skipped as silent (should not happen).
    skip_prep : return the CSV paths without doing anything.

    Returns a dict split -> CSV path. A rerun with the same options does nothing; a killed run
    resumes, reusing every speaker whose files were all written.
    """
    save_folder, data_folder = Path(save_folder), Path(data_folder)
    paths = manifest_paths(save_folder, SPLITS)
    if skip_prep:
        return paths
    options = {
        "corpus": "synthetic", "data_folder": str(data_folder.resolve()),
        "n_train_speakers": n_train_speakers, "n_test_speakers": n_test_speakers,
        "utts_per_train_speaker": utts_per_train_speaker,
        "utts_per_test_speaker": utts_per_test_speaker, "valid_fraction": valid_fraction,
        "n_adapt_utts": n_adapt_utts, "seed": seed, "sample_rate": sample_rate,
        "silence_peak": silence_peak,
    }
    if is_prepared(save_folder, options, SPLITS):
        logger.info("synthetic corpus already prepared in %s; skipping", save_folder)
        return paths
    if n_train_speakers < 1 or n_test_speakers < 0:
        raise ValueError("need n_train_speakers >= 1 and n_test_speakers >= 0")
    summary = PrepSummary("synthetic")
    speakers = make_speakers(n_train_speakers + n_test_speakers, seed)
    save_folder.mkdir(parents=True, exist_ok=True)
    (save_folder / "speakers.json").write_text(
        json.dumps([asdict(s) for s in speakers], indent=1) + "\n"
    )
    train_all, test = [], []
    with single_threaded_torch():
        for index, style in enumerate(tqdm(speakers, desc="synthesising speakers", unit="spk")):
            is_test = index >= n_train_speakers
            n_utts = utts_per_test_speaker if is_test else utts_per_train_speaker
            utts = _generate_speaker(style, index, n_utts, seed, data_folder / "wav",
                                     sample_rate, silence_peak, summary)
            (test if is_test else train_all).extend(utts)
    train, valid = split_by_utterance(train_all, valid_fraction, seed)
    test_adapt, test_eval = split_adapt_eval(test, n_adapt_utts, seed)
    for split, items in (("train", train), ("valid", valid), ("test", test)):
        for utt in items:
            summary.keep(split, utt.duration)
    held_out = ", ".join(s.spk_id for s in speakers[n_train_speakers:])
    summary.note(f"test (adaptation) speakers: {held_out}")
    splits = {"train": train, "valid": valid, "test": test,
              "test_adapt": test_adapt, "test_eval": test_eval}
    return save_prepared(save_folder, options, splits, summary)


def _generate_speaker(style, index, n_utts, seed, wav_root, sample_rate, silence_peak, summary):
    """Synthesise (unless every file already exists) and check one speaker's utterances."""
    items = speaker_utterances(style, index, n_utts, seed)
    wav_paths = [wav_root / style.spk_id / f"{utt_id}.wav" for utt_id, _, _ in items]
    # The stamp, written after the last file, says which settings made this speaker's files.
    stamp = json.dumps({"style": asdict(style), "sample_rate": sample_rate, "seed": seed,
                        "requests": [asdict(request) for _, _, request in items]}, indent=1)
    stamp_path = wav_root / style.spk_id / "generated.json"
    reusable = stamp_path.is_file() and stamp_path.read_text() == stamp
    if not (reusable and all(p.is_file() for p in wav_paths)):
        stamp_path.unlink(missing_ok=True)
        raw, raw_rate = synthesize_batch(style.voice, [request for _, _, request in items])
        for k, (samples, path) in enumerate(zip(raw, wav_paths)):
            signal = resample(samples.astype(np.float32) / 32768.0, raw_rate, sample_rate)
            noise_rng = np.random.default_rng([seed, 3, index, k])
            write_wav(path, apply_channel(signal, style, noise_rng), sample_rate)
        stamp_path.write_text(stamp)
    kept = []
    for (utt_id, text, _), path in zip(items, wav_paths):
        try:
            signal, rate = load_audio(path)
            check_signal(signal, rate, sample_rate, silence_peak, str(path))
        except AudioProblem as problem:
            summary.skip(utt_id, problem.reason, problem.detail)
            continue
        kept.append(Utterance(ID=utt_id, wav=str(path.resolve()), spk_id=style.spk_id,
                              wrd=normalize_text(text), duration=len(signal) / rate,
                              gender=style.gender))
    return kept
