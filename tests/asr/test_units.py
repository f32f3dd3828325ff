"""The units and heads the plugin supports: characters and the CRDNN head. The experiments that
gained nothing (SentencePiece units, a Conformer head; docs/RESULTS.md) are refused clearly."""

import pytest
import torch

from asr_lhuc.adapt.system import AsrSystem
from asr_lhuc.brain import make_units
from asr_lhuc.decode import make_text_encoder
from asr_lhuc.model import CTCAcousticModel


def test_removed_units_and_heads_are_refused_with_the_reason():
    with pytest.raises(ValueError, match="Conformer head was removed"):
        CTCAcousticModel(n_tokens=29, encoder_type="conformer")
    with pytest.raises(ValueError, match="units must be 'characters'"):
        make_units({"units": "sentencepiece", "characters": " AB"})
    encoder, tokenize = make_units({"characters": " 'AB"})
    assert len(encoder) == 5 and tokenize("AB A") == ["A", "B", " ", "A"]


def test_adaptation_refuses_models_whose_outputs_are_not_characters():
    encoder = make_text_encoder(["▁THE", "▁CAT", "A"])
    model = CTCAcousticModel(n_tokens=len(encoder), cnn_channels=(4, 8), rnn_layers=1,
                             rnn_neurons=8, dnn_neurons=8)
    model.attach_speaker_lhuc(["DNN.block_0.act"], num_speakers=1)
    with pytest.raises(ValueError, match="character units"):
        AsrSystem(model, encoder, device="cpu")


def test_training_refuses_audio_and_cached_speed_perturbation_together():
    from types import SimpleNamespace

    from asr_lhuc.brain import LHUCCTCBrain
    brain = SimpleNamespace(hparams=SimpleNamespace(cached_speeds=[90, 100, 110],
                                                    speed_perturb=torch.nn.Identity()))
    with pytest.raises(ValueError, match="not both"):
        LHUCCTCBrain.on_fit_start(brain)  # checked once, before any batch
