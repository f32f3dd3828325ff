"""Tiny manifests and an untrained checkpoint for the decoding commands' tests."""

import numpy as np
import soundfile as sf
import torch

from asr_lhuc.data.manifest import Utterance, write_manifest
from asr_lhuc.decode import make_text_encoder
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
