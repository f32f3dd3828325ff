"""FSDD preparation: 8 kHz digits resampled to 16 kHz, accent-held-out speaker splits."""

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from asr_lhuc.data import MANIFEST_COLUMNS, read_manifest
from recipes.FSDD.ASR.CTC.fsdd_prepare import DIGIT_WORDS, prepare_fsdd

CORPUS = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "fsdd"
pytestmark = pytest.mark.skipif(
    not (CORPUS / "speakers.tsv").is_file(), reason=f"FSDD not found at {CORPUS}"
)
US_SPEAKERS = {"jackson", "theo"}  # speakers.tsv: accent USA/neutral


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    save = tmp_path_factory.mktemp("fsdd")
    paths = prepare_fsdd(CORPUS, save, max_utts=12, n_adapt_utts=4, valid_fraction=0.25)
    return save, {split: read_manifest(p) for split, p in paths.items()}


def test_default_split_holds_out_non_us_speakers(prepared):
    _, rows = prepared
    assert {r["spk_id"] for r in rows["train"]} == US_SPEAKERS
    assert {r["spk_id"] for r in rows["valid"]} == US_SPEAKERS
    test_speakers = {r["spk_id"] for r in rows["test"]}
    assert test_speakers and test_speakers.isdisjoint(US_SPEAKERS)
    assert len(rows["train"]) == 2 * 9 and len(rows["valid"]) == 2 * 3
    assert len(rows["test_adapt"]) == 4 * len(test_speakers)
    assert sorted(r["ID"] for r in rows["test"]) == sorted(
        r["ID"] for r in rows["test_adapt"] + rows["test_eval"])


def test_audio_is_resampled_to_16k_with_the_source_duration(prepared):
    save, rows = prepared
    for row in rows["train"] + rows["valid"] + rows["test"]:
        info = sf.info(row["wav"])
        source = sf.info(str(CORPUS / "recordings" / f"{row['ID']}.flac"))
        assert Path(row["wav"]).parent == save / "wav"
        assert info.samplerate == 16000 and source.samplerate == 8000
        assert info.frames == 2 * source.frames
        assert float(row["duration"]) == pytest.approx(source.frames / 8000, abs=1e-3)
    summary = json.loads((save / "prep_summary.json").read_text())
    assert summary["resampled"] == 6 * 12 and summary["skipped_total"] == 0


def test_resampled_audio_keeps_the_signal(prepared):
    _, rows = prepared
    row = rows["train"][0]
    resampled, _ = sf.read(row["wav"], dtype="float32")
    source, _ = sf.read(str(CORPUS / "recordings" / f"{row['ID']}.flac"), dtype="float32")
    # Every other output sample sits on an input sample time: they must agree closely.
    error = np.abs(resampled[::2] - source).max()
    assert error < 0.1 * np.abs(source).max()


def test_transcripts_columns_and_gender(prepared):
    save, rows = prepared
    assert (save / "train.csv").read_text().splitlines()[0].split(",") == MANIFEST_COLUMNS
    digits = set()
    for row in rows["train"] + rows["test"]:
        digit = int(row["ID"].split("_")[0])
        assert row["wrd"] == DIGIT_WORDS[digit].upper()
        assert row["gender"] == "m" and row["age"] == ""
        digits.add(digit)
    assert digits == set(range(10))  # the max_utts cap still covers every digit


def test_custom_test_speakers_and_unknown_speaker_error(tmp_path):
    stale = tmp_path / "wav" / "0_theo_0.wav"  # left by an earlier run with other settings
    stale.parent.mkdir()
    sf.write(str(stale), np.ones(10, dtype=np.float32) * 0.5, 8000)
    paths = prepare_fsdd(CORPUS, tmp_path, test_speakers=["theo"], max_utts=10, n_adapt_utts=2)
    assert {r["spk_id"] for r in read_manifest(paths["test"])} == {"theo"}
    assert "theo" not in {r["spk_id"] for r in read_manifest(paths["train"])}
    assert sf.info(str(stale)).samplerate == 16000 and sf.info(str(stale)).frames > 1000
    with pytest.raises(ValueError, match="not in .*speakers.tsv"):
        prepare_fsdd(CORPUS, tmp_path / "x", test_speakers=["nobody"])
