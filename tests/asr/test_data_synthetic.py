"""The eSpeak NG synthetic corpus: distinct, audible speakers with matching transcripts."""

import json

import numpy as np
import pytest
import soundfile as sf

from asr_lhuc.data import normalize_text, prepare_synthetic, read_manifest
from asr_lhuc.data.espeak import SynthRequest, synthesize_batch
from asr_lhuc.data.synthetic import make_sentence, vocabulary

pytest.importorskip("espeakng_loader")
N_TRAIN, N_TEST, UTTS = 6, 2, 8


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    folder = tmp_path_factory.mktemp("synthetic")
    paths = prepare_synthetic(folder, folder, n_train_speakers=N_TRAIN, n_test_speakers=N_TEST,
                              utts_per_train_speaker=UTTS, utts_per_test_speaker=UTTS,
                              n_adapt_utts=3, valid_fraction=0.25, seed=7)
    return folder, {split: read_manifest(p) for split, p in paths.items()}


def _spectrum(path):
    """Long-term average log spectrum of the louder half of the frames."""
    signal, _ = sf.read(path, dtype="float32")
    frames = np.lib.stride_tricks.sliding_window_view(signal, 512)[::256] * np.hanning(512)
    power = np.abs(np.fft.rfft(frames, axis=1)) ** 2
    loud = power[power.sum(1) >= np.median(power.sum(1))]
    return np.log(loud.mean(0) + 1e-10)[::4]


def test_sizes_and_speaker_splits(corpus):
    folder, rows = corpus
    speakers = {split: {r["spk_id"] for r in split_rows} for split, split_rows in rows.items()}
    assert len(speakers["train"]) == N_TRAIN and speakers["valid"] == speakers["train"]
    assert len(speakers["test"]) == N_TEST and speakers["test"].isdisjoint(speakers["train"])
    assert len(rows["train"]) + len(rows["valid"]) == N_TRAIN * UTTS
    assert len(rows["valid"]) == N_TRAIN * 2
    assert len(rows["test_adapt"]) == N_TEST * 3 and len(rows["test_eval"]) == N_TEST * 5
    styles = json.loads((folder / "speakers.json").read_text())
    assert len({s["voice"] for s in styles}) == N_TRAIN + N_TEST


def test_audio_is_audible_16k_and_matches_the_transcript(corpus):
    _, rows = corpus
    all_rows = rows["train"] + rows["valid"] + rows["test"]
    vocab = set(vocabulary())
    assert 50 <= len(vocab) <= 100
    durations, lengths = [], []
    for row in all_rows:
        signal, rate = sf.read(row["wav"], dtype="float32")
        assert rate == 16000
        assert float(row["duration"]) == pytest.approx(len(signal) / rate, abs=1e-3)
        assert np.abs(signal).max() > 0.1 and signal.std() > 0.01
        words = row["wrd"].split()
        assert 3 <= len(words) <= 7 and set(words) <= vocab
        assert row["gender"] in {"m", "f"}
        durations.append(len(signal) / rate)
        lengths.append(len(row["wrd"]))
    assert 1.0 < np.mean(durations) < 3.0
    # Longer sentences must give longer audio: the audio says the transcript's words.
    assert np.corrcoef(durations, lengths)[0, 1] > 0.6


def test_speakers_differ_acoustically(corpus):
    _, rows = corpus
    per_speaker = {}
    for row in rows["train"] + rows["valid"]:
        per_speaker.setdefault(row["spk_id"], []).append(_spectrum(row["wav"]))
    centroids = {s: np.mean(v[::2], axis=0) for s, v in per_speaker.items()}
    held_out = [(s, f) for s, v in per_speaker.items() for f in v[1::2]]
    correct = sum(
        min(centroids, key=lambda c: np.linalg.norm(f - centroids[c])) == s for s, f in held_out
    )
    # Nearest-centroid speaker identification far above chance (1 / N_TRAIN).
    assert correct / len(held_out) > 0.6


def test_generation_is_deterministic_and_resumable(corpus, tmp_path):
    folder, rows = corpus
    kwargs = dict(n_train_speakers=N_TRAIN, n_test_speakers=N_TEST,
                  utts_per_train_speaker=UTTS, utts_per_test_speaker=UTTS,
                  n_adapt_utts=3, valid_fraction=0.25, seed=7)
    # A different folder, and speaker syn003 generated after a "killed" run left one file.
    first = sorted((folder / "wav").rglob("*.wav"))
    partial = tmp_path / "wav" / "syn003" / "syn003_000.wav"
    partial.parent.mkdir(parents=True)
    partial.write_bytes(b"truncated")
    prepare_synthetic(tmp_path, tmp_path, **kwargs)
    second = sorted((tmp_path / "wav").rglob("*.wav"))
    assert [p.relative_to(folder) for p in first] == [p.relative_to(tmp_path) for p in second]
    differ = [a.name for a, b in zip(first, second) if a.read_bytes() != b.read_bytes()]
    assert differ == [], differ
    # Another seed in the same folder must regenerate the audio, not reuse the old files.
    wav = tmp_path / "wav" / "syn000" / "syn000_000.wav"
    before = wav.read_bytes()
    prepare_synthetic(tmp_path, tmp_path, **{**kwargs, "seed": 8})
    assert wav.read_bytes() != before
    for row in read_manifest(tmp_path / "train.csv"):
        assert float(row["duration"]) == pytest.approx(sf.info(row["wav"]).duration, abs=1e-3)


def test_grammar_and_espeak_errors():
    rng = np.random.default_rng(0)
    sentences = [make_sentence(rng) for _ in range(200)]
    assert all(3 <= len(s.split()) <= 7 for s in sentences)
    assert "a apple" not in " ".join(sentences)
    assert all(normalize_text(s) == s.upper() for s in sentences)
    with pytest.raises(RuntimeError, match="no voice 'xx-nope'"):
        synthesize_batch("xx-nope", [SynthRequest("hello")])


def test_manifests_load_in_speechbrain(corpus):
    sb_dataset = pytest.importorskip("speechbrain.dataio.dataset")
    from speechbrain.dataio.dataio import read_audio

    folder, rows = corpus
    dataset = sb_dataset.DynamicItemDataset.from_csv(str(folder / "test.csv"))
    dataset.set_output_keys(["id", "duration", "wav", "wrd", "spk_id"])
    assert len(dataset) == len(rows["test"])
    item = dataset.filtered_sorted(sort_key="duration")[0]
    assert isinstance(item["duration"], float)
    audio = read_audio(item["wav"])
    assert audio.shape[0] == round(item["duration"] * 16000)
