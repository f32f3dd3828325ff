"""Export the Hugging Face hub copy of speechocean762 into the local Kaldi layout.

The hub copy (``mispeech/speechocean762``) is read with ``datasets`` and written once as
``<out>/{train,test}/{text,utt2spk,spk2age,spk2gender,wav.scp}`` + ``<out>/WAVE/<split>/*``,
so that the rest of the preparation is the same code path as for a local folder.
"""

import logging
import os
from pathlib import Path

logger = logging.getLogger(__name__)

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
