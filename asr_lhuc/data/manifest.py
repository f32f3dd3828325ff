"""SpeechBrain-style CSV manifests and the "already prepared with these options" check."""

import csv
import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path

from .summary import PrepSummary

logger = logging.getLogger(__name__)

MANIFEST_COLUMNS = ["ID", "duration", "wav", "spk_id", "wrd", "age", "gender"]
OPTIONS_FILE = "prep_options.json"
SUMMARY_FILE = "prep_summary.json"


@dataclass
class Utterance:
    """One manifest row. ``wav`` is an absolute path; ``age``/``gender`` are "" when unknown."""

    ID: str
    wav: str
    spk_id: str
    wrd: str
    duration: float = 0.0
    age: str = ""
    gender: str = ""


def write_manifest(path: str | Path, utterances: list[Utterance]) -> None:
    """Write ``utterances`` as a CSV with MANIFEST_COLUMNS (duration in seconds)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    with open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=MANIFEST_COLUMNS)
        writer.writeheader()
        for utt in utterances:
            row = asdict(utt)
            row["duration"] = f"{utt.duration:.4f}"
            writer.writerow(row)
    tmp.replace(path)


def read_manifest(path: str | Path) -> list[dict[str, str]]:
    """Rows of a manifest as dicts of strings (duration is left as text)."""
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


# What training and decoding read from a manifest (``age``/``gender`` may be absent).
REQUIRED_COLUMNS = ["ID", "duration", "wav", "spk_id", "wrd"]


def read_dataset_rows(path: str | Path) -> dict[str, dict]:
    """A manifest as SpeechBrain's DynamicItemDataset data, {ID: row}, ``duration`` a float and
    ``age`` "" where the manifest has none; ValueError naming the file for a missing column, a
    duplicate ID or a duration that is not a number."""
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        missing = [c for c in REQUIRED_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(f"{path}: missing column(s) {', '.join(missing)}; a manifest needs "
                             f"{', '.join(REQUIRED_COLUMNS)} (the prepare_* functions write them)")
        rows = {}
        for line, row in enumerate(reader, start=2):
            if None in row.values():
                raise ValueError(f"{path}:{line}: fewer fields than the header's "
                                 f"{len(reader.fieldnames)}")
            uid = row.pop("ID")
            if uid in rows:
                raise ValueError(f"{path}:{line}: duplicate ID {uid!r}")
            try:
                row["duration"] = float(row["duration"])
            except (TypeError, ValueError):
                raise ValueError(f"{path}:{line}: duration {row['duration']!r} is not a number "
                                 "of seconds") from None
            row.setdefault("age", "")
            rows[uid] = row
    return rows


def is_prepared(save_folder: str | Path, options: dict, splits: list[str]) -> bool:
    """True if every ``<split>.csv`` exists and was written with exactly ``options``."""
    save_folder = Path(save_folder)
    options_path = save_folder / OPTIONS_FILE
    if not options_path.is_file():
        return False
    if any(not (save_folder / f"{split}.csv").is_file() for split in splits):
        return False
    try:
        saved = json.loads(options_path.read_text())
    except json.JSONDecodeError:
        return False
    return saved == json.loads(json.dumps(options))  # compare in JSON form (tuples -> lists)


def save_prepared(
    save_folder: str | Path, options: dict, splits: dict[str, list[Utterance]], summary: PrepSummary
) -> dict[str, Path]:
    """Write one CSV per split, the summary JSON and, last, the options JSON; return CSV paths.

    The options file is written last so that a run killed half-way is redone, not trusted.
    """
    save_folder = Path(save_folder)
    save_folder.mkdir(parents=True, exist_ok=True)
    (save_folder / OPTIONS_FILE).unlink(missing_ok=True)
    paths = {}
    for split, utterances in splits.items():
        paths[split] = save_folder / f"{split}.csv"
        write_manifest(paths[split], utterances)
    summary.save(save_folder / SUMMARY_FILE)
    summary.log()
    (save_folder / OPTIONS_FILE).write_text(json.dumps(options, indent=2, sort_keys=True) + "\n")
    return paths


def manifest_paths(save_folder: str | Path, splits: list[str]) -> dict[str, Path]:
    return {split: Path(save_folder) / f"{split}.csv" for split in splits}
