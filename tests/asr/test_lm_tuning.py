"""LM-weight tuning: the grid is decoded on validation data, the best pair is chosen there and
the test set is decoded with it (and with the recipe default)."""

import json

import numpy as np
import soundfile as sf
import torch

from asr_lhuc.data.manifest import Utterance, write_manifest
from asr_lhuc.decode import make_text_encoder
from asr_lhuc.lm_tuning import main
from asr_lhuc.model import CTCAcousticModel
from asr_lhuc.pretrained import save_pretrained
from asr_lhuc.speakers import SpeakerMap


def manifest(folder, name, texts, seed):
    rng = np.random.default_rng(seed)
    utts = []
    for i, text in enumerate(texts):
        wav = folder / f"{name}{i}.wav"
        sf.write(wav, 0.05 * rng.standard_normal(8000 + 1600 * i).astype("float32"), 16000)
        utts.append(Utterance(ID=f"{name}{i}", wav=str(wav), spk_id=f"{name}{i % 2}", wrd=text,
                              duration=0.5 + 0.1 * i, age="10" if i % 2 else "30"))
    write_manifest(folder / f"{name}.csv", utts)
    return str(folder / f"{name}.csv")


def tiny_checkpoint(path, seed: int = 0):
    """A small untrained character CTC model (with normalisation statistics), saved."""
    torch.manual_seed(seed)
    model = CTCAcousticModel(n_tokens=29, cnn_channels=(4, 8), rnn_layers=1, rnn_neurons=16,
                             dnn_neurons=24, dropout=0.0)
    model.train()
    model(0.05 * torch.randn(2, 16000), torch.ones(2))  # normalisation statistics
    return save_pretrained(path, model.eval(), make_text_encoder(), SpeakerMap(["a"]))


def test_lm_weights_are_chosen_on_valid_and_tested_once(tmp_path):
    ckpt = tiny_checkpoint(tmp_path / "m.pt")
    train = manifest(tmp_path, "train", ["A CAT", "THE DOG", "A DOG"] * 3, 0)
    valid = manifest(tmp_path, "valid", ["A CAT", "THE DOG"], 1)
    test = manifest(tmp_path, "test", ["A DOG", "THE CAT", "A CAT"], 2)
    out = tmp_path / "tuned.json"
    main(["--checkpoint", str(ckpt), "--train_csv", train, "--valid_csv", valid,
          "--test_csv", test, "--out", str(out), "--work_dir", str(tmp_path / "lm"),
          "--alphas", "0.5", "2.0", "--betas", "0", "3", "--beam_size", "4"])
    res = json.loads(out.read_text())
    assert [(g["alpha"], g["beta"]) for g in res["valid_grid"]] == [
        (0.5, 0.0), (0.5, 3.0), (2.0, 0.0), (2.0, 3.0)]
    best = min(res["valid_grid"], key=lambda g: (g["wer"], g["cer"]))
    assert res["chosen"] == {"alpha": best["alpha"], "beta": best["beta"]}
    assert res["test"]["n_utts"] == 3 and res["test"]["alpha"] == best["alpha"]
    assert (res["test_default"]["alpha"], res["test_default"]["beta"]) == (0.5, 1.0)
    assert {"wer_children", "wer_adults"} <= set(res["test"])
    assert (tmp_path / "lm").is_dir() and "--alphas" in res["command"]
