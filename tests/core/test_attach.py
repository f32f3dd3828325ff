"""Attaching LHUC to unmodified models: no-op at init, identities, gradients, detaching."""

import pytest
import torch
from torch import nn

import lhuc


def mlp():
    return nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 16), nn.Tanh(),
                         nn.Linear(16, 3))


def test_mlp_outputs_unchanged_at_init():
    torch.manual_seed(0)
    model, x = mlp(), torch.randn(8, 6)
    before = model(x)
    lhuc.attach_lhuc(model, lhuc.LHUCConfig(num_ids=4, target_modules=["1", "3"]),
                     example_inputs=(x,))
    with lhuc.identities(model, torch.arange(8) % 4):
        assert torch.allclose(model(x), before, atol=1e-6)


def test_targets_by_class_regex_and_suffix():
    model = mlp()
    lhuc.attach_lhuc(model, lhuc.LHUCConfig(num_ids=2, target_classes=(nn.Linear,)))
    assert sorted(lhuc.lhuc_tables(model)) == ["0", "2", "4"]
    lhuc.detach_lhuc(model)
    lhuc.attach_lhuc(model, lhuc.LHUCConfig(num_ids=2, target_modules=[r"[02]"]))
    assert sorted(lhuc.lhuc_tables(model)) == ["0", "2"]


def test_missing_identities_and_bad_targets_are_clear_errors():
    model = mlp()
    with pytest.raises(ValueError, match="no module matches"):
        lhuc.attach_lhuc(model, lhuc.LHUCConfig(num_ids=2, target_modules=["nope"]))
    with pytest.raises(ValueError, match="cannot infer"):
        lhuc.attach_lhuc(model, lhuc.LHUCConfig(num_ids=2, target_modules=["1"]))
    lhuc.attach_lhuc(model, lhuc.LHUCConfig(num_ids=2, target_modules=["0"]))
    with pytest.raises(RuntimeError, match="set_identities"):
        model(torch.randn(2, 6))
    with pytest.raises(ValueError, match="already"):
        lhuc.attach_lhuc(model, lhuc.LHUCConfig(num_ids=2, target_modules=["0"]))


def test_identities_are_per_model_and_context_manager_restores():
    a, b = mlp(), mlp()
    for m in (a, b):
        lhuc.attach_lhuc(m, lhuc.LHUCConfig(num_ids=3, target_classes=(nn.Linear,)))
    lhuc.set_identities(a, torch.tensor([0, 1]))
    with pytest.raises(RuntimeError):
        b(torch.randn(2, 6))  # setting a's identities leaves b untouched
    with lhuc.identities(a, None):  # SI mode inside
        a(torch.randn(5, 6))
    assert lhuc.lhuc_tables(a)["0"].current_ids.tolist() == [0, 1]


def test_only_rows_in_batch_and_only_lhuc_move_when_frozen():
    torch.manual_seed(0)
    model = mlp()
    lhuc.attach_lhuc(model, lhuc.LHUCConfig(num_ids=5, target_classes=(nn.Linear,)))
    params = lhuc.freeze_non_lhuc(model)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    opt = torch.optim.SGD(params, lr=0.5)
    for _ in range(3):
        with lhuc.identities(model, torch.tensor([1, 3, 3])):
            loss = model(torch.randn(3, 6)).pow(2).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
    for name, p in model.named_parameters():
        changed = (p - before[name]).abs().sum(-1) > 0
        if name.endswith("rows"):
            assert changed.tolist() == [False, True, False, True, False], name
        else:
            assert not changed.any(), name


def test_input_position_scales_layer_input():
    model = nn.Sequential(nn.Linear(3, 2))
    lhuc.attach_lhuc(model, lhuc.LHUCConfig(num_ids=1, target_modules=["0"], position="input",
                                            reparam="identity"))
    with torch.no_grad():
        lhuc.lhuc_tables(model)["0"].rows.copy_(torch.tensor([[0.0, 1.0, 1.0]]))
    x = torch.tensor([[5.0, 0.0, 0.0]])
    with lhuc.identities(model, [0]):
        assert torch.allclose(model(x), model[0].bias)  # the first input was switched off


def test_detach_restores_plain_model_and_state_dict_keys():
    model = mlp()
    keys = set(model.state_dict())
    lhuc.attach_lhuc(model, lhuc.LHUCConfig(num_ids=2, target_classes=(nn.Linear,)))
    assert keys < set(model.state_dict())  # original names unchanged, LHUC keys added
    lhuc.detach_lhuc(model)
    assert set(model.state_dict()) == keys
    model(torch.randn(2, 6))  # no hook left asking for identities


def test_speechbrain_crdnn_unchanged_at_init_and_sat_moves_it():
    crdnn = pytest.importorskip("speechbrain.lobes.models.CRDNN")
    from speechbrain.nnet.RNN import LSTM
    torch.manual_seed(0)
    model = crdnn.CRDNN(input_shape=[2, 40, 20], cnn_blocks=1, cnn_channels=(8,), rnn_layers=2,
                        rnn_neurons=16, rnn_class=LSTM, dnn_blocks=1, dnn_neurons=16)
    model.eval()
    x = torch.randn(2, 40, 20)
    before = model(x)
    config = lhuc.LHUCConfig(num_ids=3, target_modules=[r"CNN\.block_0\.act_2", "RNN.rnn",
                                                        r"DNN\.block_0\.act"])
    lhuc.attach_lhuc(model, config, example_inputs=(x,))
    assert len(lhuc.lhuc_tables(model)) == 3
    with lhuc.identities(model, torch.tensor([0, 2])):
        assert torch.allclose(model(x), before, atol=1e-6)
        with torch.no_grad():
            lhuc.lhuc_tables(model)["RNN.rnn"].rows[2].fill_(1.0)
        after = model(x)
    assert torch.allclose(after[0], before[0], atol=1e-6)  # speaker 0 untouched
    assert not torch.allclose(after[1], before[1], atol=1e-4)  # speaker 2 changed


def test_speechbrain_conformer_unchanged_at_init():
    conformer = pytest.importorskip("speechbrain.lobes.models.transformer.Conformer")
    torch.manual_seed(0)
    enc = conformer.ConformerEncoder(num_layers=2, d_model=32, d_ffn=64, nhead=2,
                                     attention_type="regularMHA").eval()
    x = torch.randn(3, 17, 32)
    before = enc(x)[0]
    config = lhuc.LHUCConfig(num_ids=3, target_modules=[r"layers\.\d+"], dims={
        "layers.0": 32, "layers.1": 32})
    lhuc.attach_lhuc(enc, config)
    with lhuc.identities(enc, torch.tensor([0, 1, -1])):
        assert torch.allclose(enc(x)[0], before, atol=1e-6)


def test_tables_follow_the_mode_of_an_eval_model():
    model = mlp().eval()
    lhuc.attach_lhuc(model, lhuc.LHUCConfig(num_ids=2, target_classes=(nn.Linear,),
                                            sat_gamma=1.0))
    assert not any(t.training for t in lhuc.lhuc_tables(model).values())
    model.train()
    assert all(t.training for t in lhuc.lhuc_tables(model).values())
