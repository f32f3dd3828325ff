"""speechocean762 preparation on a few speakers of the shared copy (../shared/data)."""

import json
from pathlib import Path

import pytest
import soundfile as sf

from asr_lhuc.data import MANIFEST_COLUMNS, read_manifest
from recipes.speechocean762.ASR.CTC.speechocean762_prepare import (
    HubUnavailable,
    prepare_speechocean762,
)

CORPUS = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "speechocean762"
needs_corpus = pytest.mark.skipif(
    not (CORPUS / "train" / "text").is_file(), reason=f"speechocean762 not found at {CORPUS}"
)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    save = tmp_path_factory.mktemp("so762")
    paths = prepare_speechocean762(CORPUS, save, n_valid_speakers=2, n_adapt_utts=2,
                                   max_speakers=6, max_utts=4)
    return save, paths, {split: read_manifest(p) for split, p in paths.items()}


@needs_corpus
def test_columns_and_sizes(prepared):
    _, paths, rows = prepared
    for path in paths.values():
        assert path.read_text().splitlines()[0].split(",") == MANIFEST_COLUMNS
    assert len(rows["train"]) == 4 * 4 and len(rows["valid"]) == 2 * 4
    assert len(rows["test"]) == 6 * 4
    assert len(rows["test_adapt"]) == 6 * 2 and len(rows["test_eval"]) == 6 * 2


@needs_corpus
def test_durations_paths_and_transcripts(prepared):
    _, _, rows = prepared
    for row in rows["train"] + rows["valid"] + rows["test"]:
        wav = Path(row["wav"])
        assert wav.is_absolute() and wav.is_file()
        info = sf.info(str(wav))
        assert info.samplerate == 16000
        assert float(row["duration"]) == pytest.approx(info.frames / info.samplerate, abs=1e-3)
        assert row["wrd"] and row["wrd"] == row["wrd"].upper()
    text = dict(line.split(maxsplit=1) for line in (CORPUS / "train" / "text").open())
    for row in rows["train"]:
        assert row["wrd"] == " ".join(text[row["ID"]].split())


@needs_corpus
def test_splits_are_speaker_disjoint_and_test_is_partitioned(prepared):
    _, _, rows = prepared
    speakers = {split: {r["spk_id"] for r in split_rows} for split, split_rows in rows.items()}
    assert speakers["train"].isdisjoint(speakers["valid"])
    assert speakers["test"].isdisjoint(speakers["train"] | speakers["valid"])
    test_ids = [r["ID"] for r in rows["test"]]
    adapt_eval_ids = [r["ID"] for r in rows["test_adapt"] + rows["test_eval"]]
    assert sorted(test_ids) == sorted(adapt_eval_ids)
    assert speakers["test_adapt"] == speakers["test_eval"] == speakers["test"]


@needs_corpus
def test_age_and_gender_come_from_the_corpus(prepared):
    _, _, rows = prepared
    spk2age = dict(line.split() for line in (CORPUS / "test" / "spk2age").open())
    spk2gender = dict(line.split() for line in (CORPUS / "test" / "spk2gender").open())
    for row in rows["test"]:
        raw_speaker = row["spk_id"].removeprefix("spk")
        assert row["age"] == spk2age[raw_speaker] and int(row["age"]) > 0
        assert row["gender"] == spk2gender[raw_speaker] and row["gender"] in {"m", "f"}


@needs_corpus
def test_rerun_with_same_options_is_skipped_and_new_options_redo(prepared, tmp_path):
    save, paths, _ = prepared
    options = json.loads((save / "prep_options.json").read_text())
    assert options["max_speakers"] == 6
    summary = json.loads((save / "prep_summary.json").read_text())
    assert summary["kept"] == {"train": 16, "valid": 8, "test": 24}
    before = {p: p.stat().st_mtime_ns for p in paths.values()}
    prepare_speechocean762(CORPUS, save, n_valid_speakers=2, n_adapt_utts=2,
                           max_speakers=6, max_utts=4)
    assert {p: p.stat().st_mtime_ns for p in paths.values()} == before
    prepare_speechocean762(CORPUS, tmp_path, n_valid_speakers=1, max_speakers=3, max_utts=2)
    assert len(read_manifest(tmp_path / "valid.csv")) == 2


def test_hub_copy_offline_asks_for_a_local_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(HubUnavailable, match="Pass a local folder"):
        prepare_speechocean762("mispeech/speechocean762", tmp_path)


def test_missing_folder_error_names_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        prepare_speechocean762(tmp_path / "nowhere", tmp_path / "out")
    with pytest.raises(FileNotFoundError, match="train/ and test/"):
        prepare_speechocean762(tmp_path, tmp_path / "out")


def _fake_hub_dataset():
    """A tiny DatasetDict with the hub copy's schema (speaker, gender, age, text, audio)."""
    import io

    import datasets
    import numpy as np

    tone = (0.3 * np.sin(np.arange(16000) * 0.1)).astype(np.float32)
    features = datasets.Features({
        # Stored as the Audio feature's struct, so building it needs no audio codec.
        "audio": {"bytes": datasets.Value("binary"), "path": datasets.Value("string")},
        "text": datasets.Value("string"),
        "speaker": datasets.Value("string"), "gender": datasets.Value("string"),
        "age": datasets.Value("int32"),
    })

    def split(speakers):
        rows = {name: [] for name in features}
        for speaker, age in speakers:
            for k in range(3):
                buffer = io.BytesIO()
                sf.write(buffer, tone, 16000, format="WAV")
                rows["audio"].append({"bytes": buffer.getvalue(), "path": f"0{speaker}{k:04d}.wav"})
                rows["text"].append("Mark is going to see elephant.")
                rows["speaker"].append(speaker)
                rows["gender"].append("m")
                rows["age"].append(age)
        return datasets.Dataset.from_dict(rows, features=features)

    return datasets.DatasetDict({
        "train": split([("0003", 6), ("0005", 30), ("0006", 9)]),
        "test": split([("0010", 25), ("0011", 8)]),
    })


def test_hub_copy_is_exported_to_the_kaldi_layout(tmp_path, monkeypatch):
    datasets = pytest.importorskip("datasets")
    for flag in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"):
        monkeypatch.delenv(flag, raising=False)
    calls = []
    fake = _fake_hub_dataset()
    monkeypatch.setattr(datasets, "load_dataset", lambda repo: calls.append(repo) or fake)
    paths = prepare_speechocean762("mispeech/speechocean762", tmp_path, n_valid_speakers=1,
                                   n_adapt_utts=1)
    assert calls == ["mispeech/speechocean762"]
    rows = {split: read_manifest(p) for split, p in paths.items()}
    assert len(rows["train"]) + len(rows["valid"]) == 9 and len(rows["test"]) == 6
    assert {r["spk_id"] for r in rows["test"]} == {"spk0010", "spk0011"}
    assert {(r["spk_id"], r["age"]) for r in rows["test"]} == {("spk0010", "25"), ("spk0011", "8")}
    assert all(r["wrd"] == "MARK IS GOING TO SEE ELEPHANT" for r in rows["test"])
    assert all(Path(r["wav"]).is_relative_to(tmp_path / "hub") for r in rows["test"])
    assert float(rows["test"][0]["duration"]) == pytest.approx(1.0)
