"""SentencePiece units and the Conformer head: they train, decode, save and reload, and fail
clearly where they do not apply (adaptation needs characters; n_tokens must match the units)."""

import pytest
import torch

import lhuc
from asr_lhuc.adapt.system import AsrSystem
from asr_lhuc.brain import make_units
from asr_lhuc.data.manifest import Utterance, write_manifest
from asr_lhuc.decode import beam_texts, greedy_texts, make_beam_searcher
from asr_lhuc.model import CTCAcousticModel, count_parameters
from asr_lhuc.pretrained import load_pretrained, save_pretrained
from asr_lhuc.speakers import SpeakerMap
from asr_lhuc.subwords import pieces_to_text

SENTENCES = ["WE CALL IT BEAR", "I LIKE THE BEAR", "THE CAT IS ON THE MAT",
             "IT IS A NICE DAY", "WE LIKE IT", "CALL THE CAT"] * 20


@pytest.fixture()
def subword_hparams(tmp_path):
    utts = [Utterance(ID=f"u{i}", wav="/none.wav", spk_id="s", wrd=t.lower())
            for i, t in enumerate(SENTENCES)]
    write_manifest(tmp_path / "train.csv", utts)
    return {"train_csv": str(tmp_path / "train.csv"), "output_folder": str(tmp_path / "out"),
            "units": "sentencepiece", "sp_vocab_size": 30, "characters": " 'ABC"}


def one_hot_path(ids, n_labels):
    """Log-probs whose best path is `ids` with a blank after each."""
    log_probs = torch.full((1, 2 * len(ids), n_labels), -20.0)
    for i, t in enumerate(ids):
        log_probs[0, 2 * i, t] = 0.0
        log_probs[0, 2 * i + 1, 0] = 0.0
    return log_probs.log_softmax(-1)


def test_sentencepiece_units_round_trip_through_greedy_and_beam_decoding(subword_hparams):
    encoder, tokenize = make_units(subword_hparams)
    assert 10 < len(encoder) <= 31  # blank + at most sp_vocab_size pieces
    pieces = tokenize("WE CALL IT BEAR")
    assert any(len(p) > 1 for p in pieces), "multi-character pieces were learnt"
    assert pieces_to_text(pieces) == "WE CALL IT BEAR"
    assert "<unk>" in tokenize("QUIZ"), "characters never seen map to <unk>, not an error"
    ids = encoder.encode_sequence_torch(pieces).tolist()
    log_probs = one_hot_path(ids, len(encoder))
    assert greedy_texts(log_probs, torch.ones(1), encoder) == ["WE CALL IT BEAR"]
    texts, _ = beam_texts(log_probs, torch.ones(1), make_beam_searcher(encoder, beam_size=4))
    assert texts == ["WE CALL IT BEAR"]
    again, _ = make_units(subword_hparams)  # the trained model is reused, same labels
    assert again.lab2ind == encoder.lab2ind


def test_unknown_units_are_refused(subword_hparams):
    with pytest.raises(ValueError, match="units must be"):
        make_units({**subword_hparams, "units": "phones"})


def conformer_model(n_tokens=29):
    torch.manual_seed(0)
    return CTCAcousticModel(n_tokens=n_tokens, cnn_blocks=0, time_pooling_size=2,
                            projection_dim=32, encoder_type="conformer", conformer_layers=1,
                            conformer_heads=2, conformer_ffn=48, dnn_neurons=24, dropout=0.0)


def test_conformer_head_keeps_crdnn_names_trains_lhuc_and_reloads(tmp_path):
    model = conformer_model()
    assert list(model.encoder.keys()) == ["time_pooling", "projection", "conformer", "DNN"]
    model.attach_speaker_lhuc(["projection.act", "DNN.block_0.act"], num_speakers=2)
    wavs = 0.1 * torch.randn(2, 16000)
    lens = torch.tensor([1.0, 0.6])
    model.train()
    with lhuc.identities(model, torch.tensor([0, 1])):
        log_probs, out_lens = model(wavs, lens)
    assert log_probs.shape == (2, 50, 29)  # Fbank 100 Hz pooled to 50 Hz
    assert torch.equal(out_lens, lens)
    log_probs.mean().backward()
    tables = lhuc.lhuc_tables(model).values()
    assert all(t.rows.grad[:2].abs().sum() > 0 for t in tables)
    conformer_grads = [p.grad for p in model.encoder.conformer.parameters()]
    assert all(g is not None for g in conformer_grads)
    model.eval()
    path = save_pretrained(tmp_path / "m.pt", model, make_units({"characters": " AB"})[0],
                           SpeakerMap(["a", "b"]), fp16=False)
    loaded, encoder, _, _ = load_pretrained(path)
    assert loaded.config["encoder_type"] == "conformer" and len(encoder) == 4
    with torch.no_grad(), lhuc.identities(model, None), lhuc.identities(loaded, None):
        assert torch.allclose(model(wavs, lens)[0], loaded(wavs, lens)[0], atol=1e-5)
    assert count_parameters(loaded) == count_parameters(model)


def test_unknown_encoder_type_is_refused():
    with pytest.raises(ValueError, match="encoder_type"):
        CTCAcousticModel(n_tokens=29, encoder_type="transformer")


def test_adaptation_refuses_subword_models(subword_hparams):
    encoder, _ = make_units(subword_hparams)
    model = conformer_model(n_tokens=len(encoder))
    model.attach_speaker_lhuc(["DNN.block_0.act"], num_speakers=1)
    with pytest.raises(ValueError, match="character units"):
        AsrSystem(model, encoder, device="cpu")


def test_adaptation_prefix_cache_runs_the_conformer_head_layer_by_layer():
    from asr_lhuc.adapt.utterances import SpeakerUtterance
    model = conformer_model()
    model.attach_speaker_lhuc(["DNN.block_0.act"], num_speakers=1)
    model.train()
    with lhuc.identities(model, None):
        model(0.1 * torch.randn(2, 16000), torch.ones(2))  # normalisation statistics
    encoder = make_units({"characters": " 'ABCDEFGHIJKLMNOPQRSTUVWXYZ"})[0]
    plain = AsrSystem(model, encoder, device="cpu")
    cached = AsrSystem(model, encoder, device="cpu", cache=True)
    assert cached.cache.split == list(model.encoder.keys()).index("DNN")  # Conformer cached
    plain.freeze()
    utt = SpeakerUtterance("u", "s", 0.1 * torch.randn(12000), "A", 0.75)
    ids = torch.tensor([0])
    with torch.no_grad():
        want, want_frames = plain.log_probs([utt], ids)
    got, frames = cached.log_probs([utt], ids)
    assert torch.equal(frames, want_frames)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)


def test_training_refuses_audio_and_cached_speed_perturbation_together():
    from types import SimpleNamespace

    from asr_lhuc.brain import LHUCCTCBrain
    brain = SimpleNamespace(hparams=SimpleNamespace(cached_speeds=[90, 100, 110],
                                                    speed_perturb=torch.nn.Identity()))
    with pytest.raises(ValueError, match="not both"):
        LHUCCTCBrain.on_fit_start(brain)  # checked once, before any batch
