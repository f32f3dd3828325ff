"""Bad input to training and adaptation: a clear error naming the file, or a counted, logged
skip; never a crash elsewhere or a silently wrong result (issue 13, section 2)."""

import csv
import logging
import re
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import soundfile as sf
import speechbrain as sb

from asr_lhuc.adapt.utterances import load_speakers
from asr_lhuc.brain import dataio_prepare
from asr_lhuc.data.manifest import MANIFEST_COLUMNS

RATE = 16000
CHARACTERS = " 'ABCDEFGHIJKLMNOPQRSTUVWXYZ"
RECIPES = Path(__file__).resolve().parents[2] / "recipes"


def tone(seconds=0.5, rate=RATE, channels=1):
    t = np.arange(int(seconds * rate)) / rate
    mono = (0.3 * np.sin(2 * np.pi * 220.0 * t)).astype(np.float32)
    return mono if channels == 1 else np.stack([mono] * channels, axis=1)


def nan_audio(seconds=0.5, rate=RATE):
    return np.full(int(seconds * rate), np.nan, dtype=np.float32)


def write_csv(path, rows, columns=MANIFEST_COLUMNS):
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    return str(path)


def manifest(folder, name, items):
    """items: (utt id, speaker, transcript, samples, rate) -> a manifest CSV with float WAVs
    (float, so that NaN/inf samples survive the file)."""
    rows = []
    for uid, spk, text, samples, rate in items:
        wav = folder / f"{uid}.wav"
        sf.write(str(wav), samples, rate, subtype="FLOAT")
        rows.append({"ID": uid, "duration": f"{len(samples) / rate:.3f}", "wav": str(wav),
                     "spk_id": spk, "wrd": text, "age": "10", "gender": "f"})
    return write_csv(folder / f"{name}.csv", rows)


def good_items(prefix, n=4):
    return [(f"{prefix}{k}", f"spk{k % 2}", "A CAT", tone(0.3 + 0.05 * k), RATE)
            for k in range(n)]


def hparams(tmp_path, train_items, model=None):
    return {"train_csv": manifest(tmp_path, "train", train_items),
            "valid_csv": manifest(tmp_path, "valid", good_items("v", 2)),
            "test_csv": manifest(tmp_path, "test", good_items("t", 2)),
            "characters": CHARACTERS, "output_folder": str(tmp_path), "sorting": "ascending",
            "train_dataloader_opts": {"batch_size": 2, "shuffle": True}, "model": model}


def batches(dataset):
    return list(sb.dataio.dataloader.make_dataloader(dataset, batch_size=2))


def test_unspellable_transcripts_are_dropped_counted_and_a_batch_loads(tmp_path, caplog):
    items = good_items("u") + [("empty", "spk0", " ... ", tone(), RATE),
                               ("accented", "spk1", "ZÉRO 1", tone(), RATE)]
    with caplog.at_level(logging.WARNING):
        datasets, encoder, speakers = dataio_prepare(hparams(tmp_path, items))
    train = datasets["train"]
    assert sorted(train.data) == ["u0", "u1", "u2", "u3"]  # the static data too, not a view
    assert sorted(speakers.speakers) == ["spk0", "spk1"]
    assert any("dropped 2 of 6 utterances" in m and "train.csv" in m and "empty" in m
               for m in caplog.messages)
    first = batches(train)[0]
    wavs, lens = first.sig
    assert wavs.shape[0] == 2 and float(lens.max()) == 1.0 and bool(wavs.isfinite().all())
    assert encoder.decode_ndim(first.tokens.data[0][: len("A CAT")].tolist()) == list("A CAT")


def test_nan_or_inf_audio_is_refused_at_load_naming_the_file(tmp_path):
    spiky = tone()
    spiky[100] = np.inf
    datasets, _, _ = dataio_prepare(hparams(tmp_path, good_items("u") + [
        ("all_nan", "spk0", "A CAT", nan_audio(0.2), RATE)]))
    with pytest.raises(ValueError, match=r"all_nan\.wav has 3200 NaN/inf samples.*Fix:"):
        batches(datasets["train"])  # ascending: the short NaN file is in the first batch
    datasets, _, _ = dataio_prepare(hparams(tmp_path, good_items("u") + [
        ("one_inf", "spk1", "A CAT", spiky, RATE)]))
    with pytest.raises(ValueError, match=r"one_inf\.wav has 1 NaN/inf samples"):
        batches(datasets["train"])


def test_8khz_audio_for_a_16khz_model_is_refused_naming_the_file(tmp_path):
    items = good_items("u") + [("narrow", "spk0", "A CAT", tone(rate=8000), 8000)]
    with pytest.raises(ValueError, match=r"train\.csv: 1 of 5 files.*narrow\.wav is 8000 Hz, "
                                         r"the model expects 16000 Hz.*sox"):
        dataio_prepare(hparams(tmp_path, items))


def test_the_expected_rate_is_the_models(tmp_path):
    """An 8 kHz model takes 8 kHz files and refuses the 16 kHz valid/test files."""
    eight_k = SimpleNamespace(config={"sample_rate": 8000})
    items = [(f"n{k}", "spk0", "A CAT", tone(rate=8000), 8000) for k in range(2)]
    with pytest.raises(ValueError, match=r"valid\.csv: 2 of 2 files.*v0\.wav is 16000 Hz, "
                                         r"the model expects 8000 Hz"):
        dataio_prepare(hparams(tmp_path, items, model=eight_k))


def test_stereo_audio_is_refused_naming_the_file(tmp_path):
    items = good_items("u") + [("two_mics", "spk0", "A CAT", tone(channels=2), RATE)]
    with pytest.raises(ValueError, match=r"two_mics\.wav has 2 channels, the model expects mono"):
        dataio_prepare(hparams(tmp_path, items))


def test_missing_audio_files_are_listed_with_a_count(tmp_path):
    hp = hparams(tmp_path, good_items("u", 6))
    for k in range(5):
        (tmp_path / f"u{k}.wav").unlink()
    with pytest.raises(ValueError, match=r"5 of 6 files are unusable: .*u0\.wav cannot be read"
                                         r".*\(and 2 more\)"):
        dataio_prepare(hp)


@pytest.mark.parametrize("dropped", [["spk_id"], ["duration", "spk_id"], ["wav"]])
def test_missing_manifest_columns_are_named_with_the_file(tmp_path, dropped):
    hp = hparams(tmp_path, good_items("u"))
    with open(hp["train_csv"], newline="") as f:
        rows = list(csv.DictReader(f))
    write_csv(hp["train_csv"], rows, [c for c in MANIFEST_COLUMNS if c not in dropped])
    with pytest.raises(ValueError, match=rf"train\.csv: missing column\(s\) "
                                         rf"{re.escape(', '.join(dropped))}; a manifest needs"):
        dataio_prepare(hp)


def test_a_manifest_without_age_loads_with_unknown_ages(tmp_path):
    hp = hparams(tmp_path, good_items("u"))
    with open(hp["test_csv"], newline="") as f:
        rows = list(csv.DictReader(f))
    write_csv(hp["test_csv"], rows, ["ID", "duration", "wav", "spk_id", "wrd"])
    datasets, _, _ = dataio_prepare(hp)
    assert [a for b in batches(datasets["test"]) for a in b.age] == ["", ""]


def test_a_bad_duration_is_named_with_file_and_line(tmp_path):
    hp = hparams(tmp_path, good_items("u"))
    text = Path(hp["valid_csv"]).read_text().splitlines()
    text[2] = re.sub(r"^v1,[^,]*,", "v1,1.2s,", text[2])
    Path(hp["valid_csv"]).write_text("\n".join(text) + "\n")
    with pytest.raises(ValueError, match=r"valid\.csv:3: duration '1\.2s' is not a number"):
        dataio_prepare(hp)


def test_a_short_row_is_named_with_file_and_line(tmp_path):
    hp = hparams(tmp_path, good_items("u"))
    with open(hp["train_csv"], "a") as f:
        f.write("u9,0.5\n")
    with pytest.raises(ValueError, match=r"train\.csv:6: fewer fields than the header's 7"):
        dataio_prepare(hp)


def test_adaptation_skips_a_nan_utterance_counted_and_logged(tmp_path, caplog):
    csv_path = manifest(tmp_path, "test", good_items("a") + [
        ("a_nan", "spk0", "A CAT", nan_audio(), RATE),
        ("a_8k", "spk1", "A CAT", tone(rate=8000), 8000)])
    with caplog.at_level(logging.WARNING):
        speakers = load_speakers(csv_path)
    loaded = {u.id: u for utts in speakers.values() for u in utts}
    assert sorted(loaded) == ["a0", "a1", "a2", "a3", "a_8k"]  # never scored
    assert len(loaded["a_8k"].wav) == RATE // 2  # resampled to 16 kHz
    assert any("a_nan" in m and "a_nan.wav has 8000 NaN/inf samples" in m
               for m in caplog.messages)
    assert any("test.csv: skipped 1 utterances with unusable audio ({'non_finite_audio': 1})"
               in m for m in caplog.messages)
    assert any("test.csv: resampled 1 utterances to 16000 Hz" in m for m in caplog.messages)


def test_adaptation_names_missing_columns(tmp_path):
    csv_path = write_csv(tmp_path / "t.csv", [{"ID": "x", "wav": "x.wav", "wrd": "A"}],
                         ["ID", "wav", "wrd"])
    with pytest.raises(ValueError, match=r"t\.csv: missing column\(s\) duration, spk_id"):
        load_speakers(csv_path)


TRAIN_YAMLS = sorted(p for p in RECIPES.glob("*/ASR/CTC/hparams/*.yaml")
                     if "epoch_counter" in p.read_text())


def test_every_training_yaml_declares_eval_with_speaker_rows_off():
    assert len(TRAIN_YAMLS) >= 5
    for path in TRAIN_YAMLS:
        assert re.search(r"^eval_with_speaker_rows: False\s+#", path.read_text(), re.M), path


def test_eval_with_speaker_rows_is_set_from_the_command_line(tmp_path):
    from asr_lhuc.experiment import load_recipe

    argv = [str(RECIPES / "FSDD/ASR/CTC/hparams/train.yaml"), "--output_folder", str(tmp_path),
            "--eval_with_speaker_rows", "True"]
    assert load_recipe(argv)[3]["eval_with_speaker_rows"] is True
    assert load_recipe(argv[:3])[3]["eval_with_speaker_rows"] is False
