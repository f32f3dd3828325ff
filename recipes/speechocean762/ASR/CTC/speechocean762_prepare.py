#!/usr/bin/env python3
"""speechocean762 (OpenSLR 101): Kaldi-style folder -> train/valid/test(+adapt/eval) manifests.

Layout (the official release, or the copy in ``../shared/data/speechocean762``)::

    <root>/train/{text,utt2spk,spk2utt,spk2age,spk2gender,wav.scp}
    <root>/test/{...same...}
    <root>/WAVE/SPEAKERxxxx/<utt>.{WAV,wav,flac}    (wav.scp paths are relative to <root>)

Splits: ``valid`` = a few whole training speakers held out (seeded, children and adults in
proportion), ``train`` = the other training speakers, ``test`` = every test speaker. For
adaptation experiments each test speaker's utterances are split again into ``test_adapt``
(``n_adapt_utts`` per speaker) and ``test_eval`` (the rest).

The Hugging Face hub copy (``--data_folder mispeech/speechocean762``) is read with ``datasets``
and written once as ``<save_folder>/hub/{train,test}/{text,utt2spk,...}`` + ``WAVE/``, so the rest
of the preparation is the same code path as for a local folder.

Usage (from the repository root; train.py and adapt.py call it with the YAML's options):
    python recipes/speechocean762/ASR/CTC/speechocean762_prepare.py \
        --data_folder ../shared/data/speechocean762 --save_folder exp/data/speechocean762
"""

import argparse
import logging
import os
from pathlib import Path

from asr_lhuc.data.audio import DEFAULT_SILENCE_PEAK
from asr_lhuc.data.kaldi import keep_usable_audio, read_kaldi_split
from asr_lhuc.data.manifest import is_prepared, manifest_paths, save_prepared
from asr_lhuc.data.splits import age_group, limit, pick_speakers, split_adapt_eval, split_by_speaker
from asr_lhuc.data.summary import PrepSummary

logger = logging.getLogger(__name__)

SPLITS = ["train", "valid", "test", "test_adapt", "test_eval"]
SAMPLE_RATE = 16000
SPEAKER_PREFIX = "spk"  # "0001" -> "spk0001", so no tool mistakes speaker ids for numbers


def prepare_speechocean762(
    data_folder: str | Path,
    save_folder: str | Path,
    n_valid_speakers: int = 5,
    n_adapt_utts: int = 5,
    seed: int = 1234,
    max_speakers: int | None = None,
    max_utts: int | None = None,
    silence_peak: float = DEFAULT_SILENCE_PEAK,
    skip_prep: bool = False,
) -> dict[str, Path]:
    """Write train/valid/test/test_adapt/test_eval CSVs for speechocean762 into ``save_folder``.

    Arguments
    ---------
    data_folder : corpus root in the Kaldi layout above, or the hub id
        ``"mispeech/speechocean762"`` (needs network; exported once into ``save_folder/hub``).
    save_folder : where the CSVs, ``prep_summary.json`` and ``prep_options.json`` go.
    n_valid_speakers : training speakers held out (whole) as ``valid``.
    n_adapt_utts : utterances per test speaker in ``test_adapt``; the rest go to ``test_eval``.
    seed : seeds every random choice.
    max_speakers, max_utts : optional caps per split (speakers, seeded and age-stratified) and
        per speaker (first utterances by ID), for quick tests.
    silence_peak : recordings whose peak |sample| is below this are skipped as silent.
    skip_prep : return the CSV paths without doing anything.

    Returns a dict split -> CSV path. Nothing is redone if the CSVs exist with the same options.
    """
    save_folder = Path(save_folder)
    paths = manifest_paths(save_folder, SPLITS)
    if skip_prep:
        return paths
    source = Path(data_folder).resolve() if Path(data_folder).is_dir() else data_folder
    options = {
        "corpus": "speechocean762", "data_folder": str(source),
        "n_valid_speakers": n_valid_speakers, "n_adapt_utts": n_adapt_utts, "seed": seed,
        "max_speakers": max_speakers, "max_utts": max_utts, "silence_peak": silence_peak,
    }
    if is_prepared(save_folder, options, SPLITS):
        logger.info("speechocean762 already prepared in %s; skipping", save_folder)
        return paths
    root = _corpus_root(data_folder, save_folder)
    summary = PrepSummary("speechocean762")
    train_all = _read_split(root, "train", summary, max_speakers, max_utts, seed, silence_peak)
    test = _read_split(root, "test", summary, max_speakers, max_utts, seed, silence_peak)

    speakers = sorted({u.spk_id for u in train_all})
    ages = {u.spk_id: u.age for u in train_all}
    valid_speakers = pick_speakers(
        speakers, n_valid_speakers, seed, group_of=lambda spk: age_group(ages[spk])
    )
    if len(valid_speakers) >= len(speakers):
        raise ValueError(
            f"n_valid_speakers={n_valid_speakers} leaves no training speaker out of "
            f"{len(speakers)}; lower n_valid_speakers or raise max_speakers"
        )
    train, valid = split_by_speaker(train_all, valid_speakers)
    summary.note(f"valid speakers: {', '.join(valid_speakers)}")
    test_adapt, test_eval = split_adapt_eval(test, n_adapt_utts, seed)
    for split, utts in (("train", train), ("valid", valid), ("test", test)):
        for utt in utts:
            summary.keep(split, utt.duration)
    splits = {"train": train, "valid": valid, "test": test,
              "test_adapt": test_adapt, "test_eval": test_eval}
    return save_prepared(save_folder, options, splits, summary)


def _corpus_root(data_folder: str | Path, save_folder: Path) -> Path:
    """The local Kaldi-layout root: ``data_folder`` itself or an export of the hub copy."""
    root = Path(data_folder).expanduser()
    if root.is_dir():
        if not (root / "train" / "text").is_file():
            raise FileNotFoundError(
                f"{root} is not a speechocean762 folder: expected train/ and test/ with text, "
                f"utt2spk and wav.scp (the Kaldi layout of OpenSLR 101), or pass the hub id "
                f"{HUB_REPO_ID!r}"
            )
        return root.resolve()
    if looks_like_hub_id(str(data_folder)):
        return export_hub_copy(HUB_REPO_ID, save_folder / "hub")
    raise FileNotFoundError(
        f"speechocean762 data_folder {str(data_folder)!r} does not exist. Pass the corpus root "
        f"(the folder holding train/, test/ and WAVE/, e.g. ../shared/data/speechocean762) or "
        f"the hub id {HUB_REPO_ID!r}"
    )


def _read_split(root, split, summary, max_speakers, max_utts, seed, silence_peak):
    """Utterances of ``root/split`` after the optional caps, with unusable audio skipped."""
    utts = read_kaldi_split(root / split, root, summary, speaker_prefix=SPEAKER_PREFIX)
    ages = {u.spk_id: u.age for u in utts}
    capped = limit(utts, max_speakers, max_utts, seed, group_of=lambda spk: age_group(ages[spk]))
    if len(capped) < len(utts):
        summary.note(f"{split}: max_speakers/max_utts leave {len(utts) - len(capped)} of "
                     f"{len(utts)} utterances unused")
    utts = capped
    return keep_usable_audio(utts, summary, SAMPLE_RATE, silence_peak, f"speechocean762 {split}")


# The Hugging Face hub copy
HUB_REPO_ID = "mispeech/speechocean762"
_DONE_FILE = ".export_done"


class HubUnavailable(RuntimeError):
    """The hub copy cannot be loaded (offline, no network, or not installed)."""


def looks_like_hub_id(name: str) -> bool:
    return name.removeprefix("hf://").strip("/") == HUB_REPO_ID


def _offline() -> bool:
    flags = (os.environ.get(v, "") for v in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"))
    return any(f.upper() in ("1", "ON", "YES", "TRUE") for f in flags)


def _unavailable(reason: str) -> HubUnavailable:
    return HubUnavailable(
        f"Cannot load the Hugging Face hub copy {HUB_REPO_ID!r} ({reason}). Pass a local folder "
        f"instead: --data_folder /path/to/speechocean762 (the OpenSLR 101 release in its Kaldi "
        f"layout with train/, test/ and WAVE/; e.g. ../shared/data/speechocean762)."
    )


def export_hub_copy(repo_id: str, out_dir: Path) -> Path:
    """Download ``repo_id`` with ``datasets`` and write it in the Kaldi layout; return out_dir."""
    out_dir = Path(out_dir)
    if (out_dir / _DONE_FILE).is_file():
        return out_dir
    if _offline():
        raise _unavailable("HF_HUB_OFFLINE / HF_DATASETS_OFFLINE is set")
    try:
        import datasets

        dataset = datasets.load_dataset(repo_id)
    except ImportError as err:
        raise _unavailable("the `datasets` package is not installed") from err
    except Exception as err:  # network errors come in many types
        raise _unavailable(f"{type(err).__name__}: {err}") from err
    for split in ("train", "test"):
        _export_split(dataset[split].cast_column("audio", datasets.Audio(decode=False)),
                      out_dir, split)
    (out_dir / _DONE_FILE).write_text(repo_id + "\n")
    return out_dir


def _export_split(split_data, out_dir: Path, split: str) -> None:
    """Write audio bytes and the Kaldi tables of one split."""
    from tqdm import tqdm

    tables = {name: {} for name in ("text", "utt2spk", "spk2age", "spk2gender", "wav.scp")}
    for index, example in enumerate(tqdm(split_data, desc=f"export {split}", unit="utt")):
        audio = example["audio"]
        source = Path(audio.get("path") or f"{split}_{index:05d}.wav")
        utt_id = source.stem
        speaker = str(example.get("speaker", example.get("speaker_id", "")))
        if not speaker:
            raise KeyError(f"{HUB_REPO_ID} {split} row {index}: no 'speaker' field")
        relative = Path("WAVE") / split / f"{utt_id}{source.suffix.lower() or '.wav'}"
        target = out_dir / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        if audio.get("bytes"):
            target.write_bytes(audio["bytes"])
        else:
            target.write_bytes(Path(audio["path"]).read_bytes())
        tables["text"][utt_id] = example.get("text", "")
        tables["utt2spk"][utt_id] = speaker
        tables["wav.scp"][utt_id] = str(relative)
        tables["spk2age"][speaker] = str(example.get("age", ""))
        tables["spk2gender"][speaker] = str(example.get("gender", ""))
    (out_dir / split).mkdir(parents=True, exist_ok=True)
    for name, table in tables.items():
        lines = [f"{key}\t{value}" for key, value in sorted(table.items())]
        (out_dir / split / name).write_text("\n".join(lines) + "\n")
    logger.info("exported %d %s utterances of %s to %s", len(tables["text"]), split,
                HUB_REPO_ID, out_dir)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data_folder", required=True,
                        help="corpus root (train/, test/, WAVE/) or 'mispeech/speechocean762'")
    parser.add_argument("--save_folder", required=True, help="where the CSVs are written")
    parser.add_argument("--n_valid_speakers", type=int, default=5)
    parser.add_argument("--n_adapt_utts", type=int, default=5)
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument("--max_speakers", type=int, default=None)
    parser.add_argument("--max_utts", type=int, default=None)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    paths = prepare_speechocean762(**vars(args))
    for split, path in paths.items():
        print(f"{split}: {path}")


if __name__ == "__main__":
    main()
