#!/usr/bin/env python3
"""Free Spoken Digit Dataset -> 16 kHz WAV copies + train/valid/test(+adapt/eval) manifests.

Layout: ``<root>/recordings/{digit}_{speaker}_{n}.{flac,wav}`` (8 kHz) and
``<root>/speakers.tsv`` (columns speaker, gender, accent). Transcripts are the digit words
("ZERO" .. "NINE", normalised like every other transcript).

Default split for adaptation experiments: the speakers with a non-US accent (Belgian/French,
German, Greek in the current release) are held out whole as ``test``; the US speakers' utterances
are split by utterance into ``train`` and ``valid`` (``valid_fraction`` per speaker). Each test
speaker's utterances are split again into ``test_adapt`` (``n_adapt_utts`` per speaker) and
``test_eval``. Pass ``test_speakers`` to hold out another set of speakers.

Usage (from the repository root; train.py and adapt.py call it with the YAML's options):
    python recipes/FSDD/ASR/CTC/fsdd_prepare.py --data_folder ../shared/data/fsdd \
        --save_folder exp/data/fsdd [--test_speakers george lucas]
"""

import argparse
import csv
import logging
import re
from pathlib import Path

import soundfile as sf
from tqdm import tqdm

from asr_lhuc.data.audio import (
    DEFAULT_SILENCE_PEAK,
    AudioProblem,
    check_signal,
    load_audio,
    resample,
    single_threaded_torch,
    write_wav,
)
from asr_lhuc.data.manifest import Utterance, is_prepared, manifest_paths, save_prepared
from asr_lhuc.data.splits import split_adapt_eval, split_by_speaker, split_by_utterance
from asr_lhuc.data.summary import PrepSummary
from asr_lhuc.data.text import normalize_text

logger = logging.getLogger(__name__)

SPLITS = ["train", "valid", "test", "test_adapt", "test_eval"]
DIGIT_WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
BAD_FILE_NAME = "bad_file_name"
_FILE_NAME = re.compile(r"^(\d)_([A-Za-z0-9-]+)_(\d+)\.(flac|wav)$", re.IGNORECASE)
_GENDER = {"male": "m", "female": "f", "m": "m", "f": "f"}


def prepare_fsdd(
    data_folder: str | Path,
    save_folder: str | Path,
    test_speakers: list[str] | None = None,
    valid_fraction: float = 0.1,
    n_adapt_utts: int = 10,
    seed: int = 1234,
    sample_rate: int = 16000,
    max_utts: int | None = None,
    silence_peak: float = DEFAULT_SILENCE_PEAK,
    skip_prep: bool = False,
) -> dict[str, Path]:
    """Resample FSDD to ``sample_rate`` into ``save_folder/wav`` and write the manifests.

    Arguments
    ---------
    data_folder : FSDD root holding ``recordings/`` and ``speakers.tsv``.
    save_folder : where the WAV copies, CSVs and the JSON summary/options go.
    test_speakers : speakers held out as ``test``; default: every non-US-accented speaker.
    valid_fraction : share of each remaining speaker's utterances moved to ``valid``.
    n_adapt_utts : utterances per test speaker in ``test_adapt``; the rest form ``test_eval``.
    seed : seeds every random choice.
    sample_rate : target rate (the recipes run at 16 kHz).
    max_utts : optional cap of utterances per speaker (first by file name), for quick tests.
    silence_peak : recordings whose peak |sample| is below this are skipped as silent.
    skip_prep : return the CSV paths without doing anything.

    Returns a dict split -> CSV path. Nothing is redone if the CSVs exist with the same options.
    """
    save_folder = Path(save_folder)
    paths = manifest_paths(save_folder, SPLITS)
    if skip_prep:
        return paths
    root = Path(data_folder).expanduser().resolve()
    speakers = read_speakers(root)
    test_speakers = sorted(test_speakers) if test_speakers is not None else sorted(
        spk for spk, info in speakers.items() if not info["accent"].upper().startswith("US")
    )
    unknown = sorted(set(test_speakers) - set(speakers))
    if unknown:
        raise ValueError(f"test_speakers {unknown} are not in {root / 'speakers.tsv'} "
                         f"(known: {sorted(speakers)})")
    options = {
        "corpus": "fsdd", "data_folder": str(root), "test_speakers": test_speakers,
        "valid_fraction": valid_fraction, "n_adapt_utts": n_adapt_utts, "seed": seed,
        "sample_rate": sample_rate, "max_utts": max_utts, "silence_peak": silence_peak,
    }
    if is_prepared(save_folder, options, SPLITS):
        logger.info("FSDD already prepared in %s; skipping", save_folder)
        return paths
    summary = PrepSummary("fsdd")
    summary.note(f"test (held-out) speakers: {', '.join(test_speakers)}")
    utts = _list_recordings(root, speakers, summary, max_utts)
    with single_threaded_torch():
        utts = _resample_all(utts, save_folder / "wav", sample_rate, silence_peak, summary)
    rest, test = split_by_speaker(utts, test_speakers)
    train, valid = split_by_utterance(rest, valid_fraction, seed)
    test_adapt, test_eval = split_adapt_eval(test, n_adapt_utts, seed)
    for split, items in (("train", train), ("valid", valid), ("test", test)):
        for utt in items:
            summary.keep(split, utt.duration)
    splits = {"train": train, "valid": valid, "test": test,
              "test_adapt": test_adapt, "test_eval": test_eval}
    return save_prepared(save_folder, options, splits, summary)


def read_speakers(root: Path) -> dict[str, dict[str, str]]:
    """speakers.tsv as {speaker: {"gender": "m"|"f"|"", "accent": ...}}."""
    path = root / "speakers.tsv"
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} is missing: pass the FSDD root (holding recordings/ and speakers.tsv)"
        )
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    for line_no, row in enumerate(rows, start=2):
        if not row.get("speaker") or row.get("accent") is None:
            raise ValueError(f"{path}:{line_no}: need columns speaker, gender, accent; got {row}")
    return {
        row["speaker"]: {"gender": _GENDER.get((row.get("gender") or "").lower(), ""),
                         "accent": row["accent"]}
        for row in rows
    }


def _list_recordings(root, speakers, summary, max_utts) -> list[Utterance]:
    """One Utterance per well-named recording of a known speaker (wav path = the source)."""
    recordings = root / "recordings"
    if not recordings.is_dir():
        raise FileNotFoundError(f"{recordings} is missing: pass the FSDD root folder")
    found = []
    for path in sorted(recordings.iterdir()):
        match = _FILE_NAME.match(path.name)
        if not match:
            summary.skip(path.name, BAD_FILE_NAME, "expected {digit}_{speaker}_{n}.flac|wav")
            continue
        digit, speaker, take = match.group(1, 2, 3)
        if speaker not in speakers:
            summary.skip(path.name, BAD_FILE_NAME, f"speaker {speaker!r} not in speakers.tsv")
            continue
        found.append((speaker, int(take), int(digit), path))
    # Take order, then digit: a max_utts cap still covers all ten digits for every speaker.
    utts, per_speaker = [], {}
    for speaker, _, digit, path in sorted(found):
        per_speaker[speaker] = per_speaker.get(speaker, 0) + 1
        if max_utts is not None and per_speaker[speaker] > max_utts:
            continue
        utts.append(Utterance(
            ID=path.stem, wav=str(path), spk_id=speaker,
            wrd=normalize_text(DIGIT_WORDS[digit]), gender=speakers[speaker]["gender"],
        ))
    if len(utts) < len(found):
        summary.note(f"max_utts={max_utts} leaves {len(found) - len(utts)} of {len(found)} "
                     f"recordings unused")
    return utts


def _matches(path: Path, frames: int, rate: int) -> bool:
    """True if ``path`` is already a WAV file with this many frames at this rate."""
    if not path.is_file():
        return False
    try:
        info = sf.info(str(path))
    except RuntimeError:
        return False
    return info.frames == frames and info.samplerate == rate


def _resample_all(utts, out_dir, sample_rate, silence_peak, summary) -> list[Utterance]:
    """Check each source file and write it resampled to ``out_dir/<ID>.wav`` (resumable)."""
    kept = []
    for utt in tqdm(utts, desc="fsdd resample", unit="utt", mininterval=2.0):
        target = out_dir / f"{utt.ID}.wav"
        try:
            signal, rate = load_audio(utt.wav)
            check_signal(signal, rate, None, silence_peak, utt.wav)
        except AudioProblem as problem:
            summary.skip(utt.ID, problem.reason, problem.detail)
            continue
        if rate != sample_rate:
            summary.resampled += 1
        signal = resample(signal, rate, sample_rate)
        if not _matches(target, len(signal), sample_rate):  # reuse files of a killed run
            write_wav(target, signal, sample_rate)
        utt.wav, utt.duration = str(target.resolve()), len(signal) / sample_rate
        kept.append(utt)
    return kept


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data_folder", required=True,
                        help="FSDD root (recordings/, speakers.tsv)")
    parser.add_argument("--save_folder", required=True, help="where WAVs and CSVs are written")
    parser.add_argument("--test_speakers", nargs="+", default=None,
                        help="speakers held out as test (default: the non-US accents)")
    parser.add_argument("--valid_fraction", type=float, default=0.1)
    parser.add_argument("--n_adapt_utts", type=int, default=10)
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument("--max_utts", type=int, default=None)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    paths = prepare_fsdd(**vars(args))
    for split, path in paths.items():
        print(f"{split}: {path}")


if __name__ == "__main__":
    main()
