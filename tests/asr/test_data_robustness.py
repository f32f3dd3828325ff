"""Bad audio and bad Kaldi entries are skipped, counted with the right reason, and logged."""

import json
import logging

import numpy as np
import pytest
import soundfile as sf

from asr_lhuc.data import read_manifest
from asr_lhuc.data.audio import write_wav
from recipes.FSDD.ASR.CTC.fsdd_prepare import prepare_fsdd
from recipes.speechocean762.ASR.CTC.speechocean762_prepare import prepare_speechocean762

RATE = 16000


def _tone(seconds=1.0, rate=RATE, freq=220.0, level=0.3):
    t = np.arange(int(seconds * rate)) / rate
    return (level * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def _spiked(value):
    signal = _tone()
    signal[1000] = value
    return signal


def _write_split(root, split, entries, extra_wav_scp=(), extra_text=()):
    """entries: (utt_id, speaker, text, audio writer or None) -> Kaldi files under root/split."""
    folder = root / split
    folder.mkdir(parents=True)
    texts, utt2spk, wav_scp = [], [], []
    for utt_id, speaker, text, write in entries:
        texts.append(f"{utt_id} {text}")
        utt2spk.append(f"{utt_id} {speaker}")
        if write is not None:
            path = root / "WAVE" / f"SPEAKER{speaker}" / f"{utt_id}.wav"
            path.parent.mkdir(parents=True, exist_ok=True)
            write(path)
            wav_scp.append(f"{utt_id}\tWAVE/SPEAKER{speaker}/{utt_id}.wav")
    (folder / "text").write_text("\n".join(texts + list(extra_text)) + "\n")
    (folder / "utt2spk").write_text("\n".join(utt2spk) + "\n")
    (folder / "wav.scp").write_text("\n".join(wav_scp + list(extra_wav_scp)) + "\n")
    speakers = sorted({e[1] for e in entries})
    (folder / "spk2age").write_text("".join(f"{s}\t{8 + 5 * i}\n" for i, s in enumerate(speakers)))
    (folder / "spk2gender").write_text("".join(f"{s}\tf\n" for s in speakers))


def good(path):
    sf.write(str(path), _tone(), RATE)


def make_bad_corpus(root):
    train = [(f"{spk}{k}", spk, "Hello, world!", good) for spk in ("0001", "0002", "0003")
             for k in range(3)]
    train += [
        ("bad_corrupt", "0001", "corrupt file", lambda p: p.write_bytes(b"RIFF\x00garbage" * 9)),
        ("bad_zero_bytes", "0001", "zero byte file", lambda p: p.write_bytes(b"")),
        ("bad_no_frames", "0002", "header only", lambda p: sf.write(str(p), np.zeros(0), RATE)),
        ("bad_silent", "0002", "silent file", lambda p: sf.write(str(p), np.zeros(RATE), RATE)),
        ("bad_8k", "0003", "eight k file", lambda p: sf.write(str(p), _tone(rate=8000), 8000)),
        ("bad_nan", "0001", "all nan", lambda p: sf.write(str(p), _tone() * np.nan, RATE,
                                                          subtype="FLOAT")),
        ("bad_inf", "0002", "one inf", lambda p: sf.write(str(p), _spiked(np.inf), RATE,
                                                          subtype="FLOAT")),
        ("bad_stereo", "0003", "two channels",
         lambda p: sf.write(str(p), np.stack([_tone(), _tone()], axis=1), RATE)),
        ("bad_empty_text", "0003", " ... !", good),
        ("bad_no_wav_entry", "0003", "not in wav scp", None),
        ("bad_missing_file", "0003", "listed but never written", lambda p: None),
    ]
    _write_split(root, "train", train,
                 extra_wav_scp=["bad_no_text\tWAVE/SPEAKER0001/00010.wav",
                                "bad_no_speaker\tWAVE/SPEAKER0001/00011.wav"],
                 extra_text=["bad_no_speaker not in utt2spk"])
    test = [(f"{spk}{k}", spk, "good test", good) for spk in ("0101", "0102") for k in range(2)]
    _write_split(root, "test", test)


def test_each_problem_is_counted_with_its_reason_and_the_rest_kept(tmp_path, caplog):
    make_bad_corpus(tmp_path / "corpus")
    with caplog.at_level(logging.WARNING):
        paths = prepare_speechocean762(tmp_path / "corpus", tmp_path / "out",
                                       n_valid_speakers=1, n_adapt_utts=1)
    summary = json.loads((tmp_path / "out" / "prep_summary.json").read_text())
    reasons = {s["item"]: s["reason"] for s in summary["skipped"]}
    assert reasons == {
        "bad_corrupt": "unreadable",
        "bad_zero_bytes": "empty_audio",
        "bad_no_frames": "empty_audio",
        "bad_silent": "silent",
        "bad_8k": "wrong_sample_rate",
        "bad_nan": "non_finite_audio",
        "bad_inf": "non_finite_audio",
        "bad_stereo": "not_mono",
        "bad_empty_text": "empty_transcript",
        "bad_no_wav_entry": "missing_wav",
        "bad_missing_file": "missing_wav",
        "bad_no_text": "missing_transcript",
        "bad_no_speaker": "missing_speaker",
    }
    assert summary["skipped_by_reason"] == {
        "unreadable": 1, "empty_audio": 2, "silent": 1, "wrong_sample_rate": 1,
        "empty_transcript": 1, "missing_wav": 2, "missing_transcript": 1, "missing_speaker": 1,
        "non_finite_audio": 2, "not_mono": 1,
    }
    kept = {split: read_manifest(p) for split, p in paths.items()}
    train_ids = {r["ID"] for r in kept["train"] + kept["valid"]}
    assert train_ids == {f"{spk}{k}" for spk in ("0001", "0002", "0003") for k in range(3)}
    assert summary["kept"] == {"train": 6, "valid": 3, "test": 4}
    assert all(r["wrd"] == "HELLO WORLD" for r in kept["train"])
    assert {r["age"] for r in kept["train"] + kept["valid"]} == {"8", "13", "18"}
    for item in reasons:
        assert any(item in message for message in caplog.messages), item


def make_fsdd(root):
    """A tiny FSDD layout: 8 kHz digits of a US and a German speaker, one take all NaN."""
    (root / "recordings").mkdir(parents=True)
    (root / "speakers.tsv").write_text("speaker\tgender\taccent\nann\tfemale\tUSA\n"
                                       "bob\tmale\tGerman\n")
    for spk in ("ann", "bob"):
        for digit in range(4):
            sf.write(str(root / "recordings" / f"{digit}_{spk}_0.wav"), _tone(0.4, 8000), 8000)
    sf.write(str(root / "recordings" / "6_ann_1.wav"), np.full(8000, np.nan, np.float32), 8000,
             subtype="FLOAT")


def test_fsdd_skips_nan_recordings_instead_of_writing_clipped_audio(tmp_path, caplog):
    make_fsdd(tmp_path / "fsdd")
    with caplog.at_level(logging.WARNING):
        paths = prepare_fsdd(tmp_path / "fsdd", tmp_path / "out", n_adapt_utts=1)
    summary = json.loads((tmp_path / "out" / "prep_summary.json").read_text())
    assert [(s["item"], s["reason"]) for s in summary["skipped"]] == [
        ("6_ann_1", "non_finite_audio")]
    assert any("6_ann_1.wav has 8000 NaN/inf samples" in m for m in caplog.messages)
    rows = [r for split in ("train", "valid", "test") for r in read_manifest(paths[split])]
    assert len(rows) == 8 and "SIX" not in {r["wrd"] for r in rows}
    assert not (tmp_path / "out" / "wav" / "6_ann_1.wav").exists()
    for row in rows:
        samples, rate = sf.read(row["wav"], dtype="int16")
        assert rate == RATE and samples.min() > -32768  # no clipped NaN


def test_write_wav_refuses_non_finite_samples(tmp_path):
    with pytest.raises(ValueError, match=r"NaN/inf samples to .*x\.wav"):
        write_wav(tmp_path / "x.wav", _spiked(np.nan), RATE)
    assert not list(tmp_path.iterdir())
