"""CTCAcousticModel: shapes, LHUC on named encoder layers, freezing for adaptation, checkpoints."""

import pytest
import torch

import lhuc
from asr_lhuc.decode import make_text_encoder
from asr_lhuc.model import CTCAcousticModel, count_parameters
from asr_lhuc.pretrained import load_pretrained, save_pretrained
from asr_lhuc.speakers import SpeakerMap

TARGETS = ["DNN.block_0.act", "DNN.block_1.act"]


def tiny_model(**kw) -> CTCAcousticModel:
    torch.manual_seed(0)
    return CTCAcousticModel(n_tokens=29, cnn_channels=(4, 8), rnn_layers=1, rnn_neurons=16,
                            dnn_neurons=24, dropout=0.0, **kw)


def batch(seconds=(1.0, 0.5)):
    torch.manual_seed(1)
    n = [int(16000 * s) for s in seconds]
    wavs = torch.zeros(len(n), max(n))
    for i, k in enumerate(n):
        wavs[i, :k] = 0.1 * torch.randn(k)
    return wavs, torch.tensor([k / max(n) for k in n])


def warmed(model):
    """Give InputNormalization its statistics (one training-mode pass), then eval mode."""
    model.train()
    model(*batch())
    return model.eval()


def test_forward_gives_log_probs_at_a_quarter_of_the_frame_rate():
    model = warmed(tiny_model())
    wavs, lens = batch()
    log_probs, out_lens = model(wavs, lens)
    assert log_probs.shape[0] == 2 and log_probs.shape[2] == 29
    assert 24 <= log_probs.shape[1] <= 26  # 101 Fbank frames / 4
    assert torch.allclose(log_probs.exp().sum(-1), torch.ones(2, log_probs.shape[1]), atol=1e-5)
    assert torch.equal(out_lens, lens)


def test_fresh_lhuc_is_a_no_op_and_rows_change_only_their_speaker():
    model = warmed(tiny_model())
    wavs, lens = batch()
    before = model(wavs, lens)[0]
    model.attach_speaker_lhuc(TARGETS, num_speakers=3)
    assert count_parameters(model, lhuc_only=True) == 2 * (3 + 1) * 24
    with lhuc.identities(model, torch.tensor([0, 2])):
        assert torch.allclose(model(wavs, lens)[0], before, atol=1e-6)
    table = lhuc.lhuc_tables(model)["encoder.DNN.block_1.act"]
    with torch.no_grad():
        table.rows[2] -= 3.0
    with lhuc.identities(model, torch.tensor([0, 2])):
        after = model(wavs, lens)[0]
    with lhuc.identities(model, None):  # SI mode: the SI row, untouched
        si = model(wavs, lens)[0]
    assert torch.allclose(after[0], before[0], atol=1e-6)
    assert not torch.allclose(after[1], before[1], atol=1e-3)
    assert torch.allclose(si, before, atol=1e-6)


def test_forward_without_identities_names_the_fix():
    model = warmed(tiny_model())
    model.attach_speaker_lhuc(TARGETS, num_speakers=2)
    with pytest.raises(RuntimeError, match="set_identities"):
        model(*batch())


def test_freeze_for_adaptation_trains_only_lhuc_and_keeps_statistics():
    model = warmed(tiny_model())
    model.attach_speaker_lhuc(TARGETS, num_speakers=2, sat_gamma=0.5, sat_level="frame")
    params = model.freeze_for_adaptation()
    model.train()  # what a Brain does at the start of each epoch
    assert not any(m.training for m in model.modules())
    norm_mean = model.normalize.glob_mean.clone()
    bn = model.encoder.DNN.block_0.norm.norm
    bn_mean = bn.running_mean.clone()
    with lhuc.identities(model, torch.tensor([0, 1])):
        log_probs, _ = model(*batch())
    log_probs.mean().backward()
    assert torch.equal(model.normalize.glob_mean, norm_mean)
    assert torch.equal(bn.running_mean, bn_mean)
    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    assert trainable == {id(p) for p in params} and len(params) == 4
    assert all(p.grad is not None for p in params)
    assert all(p.grad is None for p in model.parameters() if not p.requires_grad)
    model.unfreeze()
    model.train()
    assert model.training and all(p.requires_grad for p in model.parameters())


def test_speaker_map_rows_unknowns_and_json(tmp_path):
    smap = SpeakerMap(["b", "a"])
    assert smap.add(["a", "c"]) == [1, 2] and len(smap) == 3
    assert smap.ids(["c", "zz", "b"]).tolist() == [2, -1, 0]
    smap.save(tmp_path / "spk.json")
    again = SpeakerMap.load(tmp_path / "spk.json")
    assert again.speakers == ["b", "a", "c"]
    with pytest.raises(ValueError, match="0..n-1"):
        SpeakerMap.from_dict({"a": 0, "b": 2})


@pytest.mark.parametrize("fp16", [False, True])
def test_pretrained_round_trip_restores_weights_lhuc_and_normalisation(tmp_path, fp16):
    model = warmed(tiny_model())
    model.attach_speaker_lhuc(TARGETS, num_speakers=2, sat_gamma=0.5)
    with torch.no_grad():
        lhuc.lhuc_tables(model)["encoder.DNN.block_0.act"].rows[1] += 0.5
    smap = SpeakerMap(["s1", "s2"])
    hp = tmp_path / "hp.yaml"
    hp.write_text("model: !new:asr_lhuc.model.CTCAcousticModel\n")
    path = save_pretrained(tmp_path / "m.pt", model, make_text_encoder(), smap, hp, fp16=fp16)
    loaded, encoder, smap2, hparams = load_pretrained(path)
    wavs, lens = batch()
    ids = torch.tensor([1, -1])
    with lhuc.identities(model, ids), lhuc.identities(loaded, ids):
        ref, out = model(wavs, lens)[0], loaded(wavs, lens)[0]
    assert torch.allclose(ref, out, atol=5e-2 if fp16 else 1e-6)
    assert loaded.lhuc_config["sat_gamma"] == 0.5 and smap2.speakers == ["s1", "s2"]
    assert len(encoder) == 29 and "CTCAcousticModel" in hparams


def test_init_from_pretrained_copies_the_network_but_not_lhuc(tmp_path):
    from asr_lhuc.pretrained import init_from_pretrained

    source = warmed(tiny_model())
    path = save_pretrained(tmp_path / "src.pt", source, make_text_encoder(), SpeakerMap(),
                           fp16=False)
    target = CTCAcousticModel(n_tokens=29, cnn_channels=(4, 8), rnn_layers=1, rnn_neurons=16,
                              dnn_neurons=24, dropout=0.0)
    target.attach_speaker_lhuc(TARGETS, num_speakers=5)
    left = init_from_pretrained(target, path)
    assert left and all("lhuc_table" in k for k in left)
    for name, value in source.state_dict().items():
        assert torch.equal(target.state_dict()[name], value), name
    wider = CTCAcousticModel(n_tokens=29, cnn_channels=(4, 8), rnn_layers=1, rnn_neurons=20,
                             dnn_neurons=24)
    with pytest.raises(ValueError, match="architecture"):
        init_from_pretrained(wider, path)


def test_pack_rnn_makes_an_utterance_independent_of_its_batch():
    """With padding, the backward RNN of the short utterance starts on its batch-mate's frames;
    `pack_rnn` skips them, so the short utterance decodes as it does alone. (No CNN blocks, as
    on Whisper features: CNN kernels at the end of an utterance see past it either way.)"""
    wavs, _ = batch((1.0, 0.5))
    lens = torch.tensor([1.0, 51 / 101])  # Fbank frames: 101 and 51 (0.5 * 101 would round to 50)
    for pack in (False, True):
        model = warmed(tiny_model(cnn_blocks=0, pack_rnn=pack))
        with torch.no_grad():
            together, _ = model(wavs, lens)
            alone, _ = model(wavs[1:, : 8000], torch.ones(1))
        n = alone.shape[1]
        gap = (together[1, :n] - alone[0]).abs().max()
        if pack:
            assert gap < 1e-4 and bool((together[1, n:] == together[1, n:][0]).all())
        else:
            assert gap > 1e-3  # the leak this option closes


def test_pack_rnn_reaches_the_prefix_cache_and_checkpoints(tmp_path):
    from asr_lhuc.adapt import PrefixCache, SpeakerUtterance
    model = warmed(tiny_model(cnn_blocks=0, projection_dim=16, pack_rnn=True))
    model.attach_speaker_lhuc(["projection.act"], num_speakers=2)  # the RNN is in the suffix
    wavs, _ = batch((1.0, 0.5))
    utts = [SpeakerUtterance("long", "s", wavs[0], "A", 1.0),
            SpeakerUtterance("short", "s", wavs[1, :8000], "A", 0.5)]
    cache = PrefixCache(model)
    with torch.no_grad():
        together, frames = cache.log_probs(utts, None, "cpu")
        alone, _ = cache.log_probs(utts[1:], None, "cpu")
    assert torch.allclose(together[1, : frames[1]], alone[0], atol=1e-4)
    path = save_pretrained(tmp_path / "m.pt", model, make_text_encoder(), SpeakerMap())
    assert load_pretrained(path)[0].config["pack_rnn"] is True
    assert load_pretrained(path, pack_rnn=False)[0].config["pack_rnn"] is False  # an override
