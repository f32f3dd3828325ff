"""Adapter files, new identities, folding, and the README example."""

import importlib.util
from collections import OrderedDict
from pathlib import Path

import pytest
import torch
from torch import nn

import lhuc

ROOT = Path(__file__).resolve().parents[2]


def adapted_mlp(num_ids=3, seed=0, targets=("0", "2"), **config):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(5, 8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 2))
    lhuc.attach_lhuc(model, lhuc.LHUCConfig(num_ids=num_ids, target_modules=list(targets),
                                            **config))
    with torch.no_grad():
        for p in lhuc.lhuc_parameters(model):
            p.normal_()
    return model


def test_whole_adapter_round_trip(tmp_path):
    src, dst = adapted_mlp(seed=0), adapted_mlp(seed=1)
    path = lhuc.save_adapter(src, tmp_path / "all.pt")
    blob = torch.load(path, weights_only=True)  # plain tensors only: safe to load
    assert blob["meta"]["reparam"] == "2sigmoid"
    lhuc.load_adapter(dst, path)
    for (k, a), b in zip(lhuc.lhuc_state_dict(src).items(), lhuc.lhuc_state_dict(dst).values()):
        assert torch.equal(a, b), k
    # Only adapter weights travel: the base layers keep their own values.
    assert not torch.equal(src[0].weight, dst[0].weight)


def test_one_identity_file_into_a_new_row(tmp_path):
    src, dst = adapted_mlp(), adapted_mlp(seed=1)
    path = lhuc.save_adapter(src, tmp_path / "spk1.pt", identity=1)
    assert path.stat().st_size < 4000
    (new_id,) = lhuc.add_identities(dst, 1).tolist()
    others = {k: v.clone() for k, v in lhuc.lhuc_state_dict(dst).items()}
    lhuc.load_adapter(dst, path, identity=new_id)
    for name, table in lhuc.lhuc_tables(dst).items():
        src_row = lhuc.lhuc_tables(src)[name].rows[1]
        assert torch.equal(table.rows[new_id], src_row)
        assert torch.equal(table.rows[:new_id], others[f"{name}.lhuc_table.rows"][:new_id])


def test_bad_adapter_files_are_clear_errors(tmp_path):
    model = adapted_mlp()
    torch.save({"x": torch.ones(1)}, tmp_path / "junk.pt")
    with pytest.raises(ValueError, match="not an LHUC adapter"):
        lhuc.load_adapter(model, tmp_path / "junk.pt")
    lhuc.save_adapter(adapted_mlp(num_ids=5), tmp_path / "five.pt")
    with pytest.raises(ValueError, match="add identities"):
        lhuc.load_adapter(model, tmp_path / "five.pt")
    lhuc.save_adapter(model, tmp_path / "one.pt", identity=0)
    with pytest.raises(IndexError, match="add_identities"):
        lhuc.load_adapter(model, tmp_path / "one.pt", identity=7)


@pytest.mark.parametrize("identity", [None, 1])
def test_adapter_read_differently_by_the_model_is_refused(tmp_path, identity):
    path = lhuc.save_adapter(adapted_mlp(), tmp_path / "a.pt", identity=identity)
    assert torch.load(path, weights_only=True)["meta"]["position"] == "output"
    exp_model = adapted_mlp(seed=1, reparam="exp")  # same shapes, r read as exp(r)
    before = {k: v.clone() for k, v in lhuc.lhuc_state_dict(exp_model).items()}
    with pytest.raises(ValueError, match=r"a\.pt: adapter reparam is '2sigmoid' but the "
                                         r"model's LHUC reparam is 'exp'"):
        lhuc.load_adapter(exp_model, path)
    for key, value in lhuc.lhuc_state_dict(exp_model).items():
        assert torch.equal(value, before[key]), f"{key} changed by a refused load"
    # Input and output of layer 2 are both 8 wide: only the recorded position tells them apart.
    path = lhuc.save_adapter(adapted_mlp(targets=["2"]), tmp_path / "out.pt", identity=identity)
    with pytest.raises(ValueError, match="position is 'output' but the model's LHUC position "
                                         "is 'input'"):
        lhuc.load_adapter(adapted_mlp(targets=["2"], position="input"), path)


def test_adapter_files_without_position_load_with_a_warning(tmp_path):
    """Files saved before the position was recorded (they always had the reparam)."""
    src, dst = adapted_mlp(), adapted_mlp(seed=1)
    blob = torch.load(lhuc.save_adapter(src, tmp_path / "a.pt"), weights_only=True)
    del blob["meta"]["position"]
    torch.save(blob, tmp_path / "old.pt")
    with pytest.warns(UserWarning, match="old.pt does not record its LHUC position"):
        lhuc.load_adapter(dst, tmp_path / "old.pt")
    for (key, a), b in zip(lhuc.lhuc_state_dict(src).items(), lhuc.lhuc_state_dict(dst).values()):
        assert torch.equal(a, b), key
    with pytest.raises(ValueError, match="old.pt: adapter reparam is '2sigmoid'"):
        lhuc.load_adapter(adapted_mlp(reparam="exp"), tmp_path / "old.pt")
    del blob["meta"]["reparam"]
    torch.save(blob, tmp_path / "older.pt")
    with pytest.raises(ValueError, match="older.pt does not record its LHUC reparam"):
        lhuc.load_adapter(dst, tmp_path / "older.pt")


def test_one_identity_file_of_another_width_is_refused(tmp_path):
    path = lhuc.save_adapter(adapted_mlp(targets=["0"]), tmp_path / "w8.pt", identity=0)
    wide = nn.Sequential(nn.Linear(5, 9))
    lhuc.attach_lhuc(wide, lhuc.LHUCConfig(num_ids=1, target_modules=["0"]))
    with pytest.raises(ValueError, match="w8.pt: table 0 has width 8, model has 9"):
        lhuc.load_adapter(wide, path)


@pytest.mark.parametrize("identity", [0, 2, None])
def test_fold_into_own_layers_matches(identity):
    model = adapted_mlp().eval()
    x = torch.randn(6, 5)
    folded = lhuc.fold_lhuc(model, identity)
    assert not lhuc.lhuc_tables(folded) and lhuc.lhuc_tables(model)  # original untouched
    ids = torch.full((6,), -1 if identity is None else identity)
    with torch.no_grad(), lhuc.identities(model, ids):
        assert torch.allclose(folded(x), model(x), atol=1e-5)


def test_fold_after_activation_into_following_linear():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 2))
    lhuc.attach_lhuc(model, lhuc.LHUCConfig(num_ids=2, target_modules=["1"], dims={"1": 8}))
    with torch.no_grad():
        lhuc.lhuc_parameters(model)[0].normal_()
    with pytest.raises(ValueError, match="into="):
        lhuc.fold_lhuc(model, 1)
    folded = lhuc.fold_lhuc(model, 1, into={"1": "2"})
    x = torch.randn(4, 5)
    with torch.no_grad(), lhuc.identities(model, torch.ones(4, dtype=torch.long)):
        assert torch.allclose(folded(x), model(x), atol=1e-5)


def test_fold_conv_channel_first():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv1d(3, 4, 3), nn.ReLU(), nn.Conv1d(4, 2, 1))
    lhuc.attach_lhuc(model, lhuc.LHUCConfig(num_ids=2, target_classes=(nn.Conv1d,)))
    with torch.no_grad():
        for p in lhuc.lhuc_parameters(model):
            p.normal_()
    x = torch.randn(2, 3, 9)
    folded = lhuc.fold_lhuc(model, 0)
    with torch.no_grad(), lhuc.identities(model, [0, 0]):
        assert torch.allclose(folded(x), model(x), atol=1e-5)


def randomised(model, config):
    lhuc.attach_lhuc(model, config)
    with torch.no_grad():
        for p in lhuc.lhuc_parameters(model):
            p.normal_()
    return model.eval()


def assert_fold_exact(model, x, into=None):
    """Identity 1 folded in == identity 1 through the LHUC tables (whose SI row differs)."""
    with torch.no_grad():
        with lhuc.identities(model, torch.ones(len(x), dtype=torch.long)):
            adapted = model(x)
        with lhuc.identities(model, None):
            assert (adapted - model(x)).abs().max() > 1e-2, "the amplitudes should matter"
        torch.testing.assert_close(lhuc.fold_lhuc(model, 1, into)(x), adapted,
                                   atol=1e-5, rtol=1e-4)


CONVS = {1: (nn.Conv1d, nn.ConvTranspose1d), 2: (nn.Conv2d, nn.ConvTranspose2d)}


@pytest.mark.parametrize("dims", [1, 2])
@pytest.mark.parametrize("groups", [1, 2])
@pytest.mark.parametrize("position", ["output", "input"])
@pytest.mark.parametrize("transposed", [True, False])
def test_fold_conv_and_conv_transpose_with_groups(dims, groups, position, transposed):
    """ConvTranspose weights are (in, out/groups, k...), Conv weights (out, in/groups, k...):
    each side's channels must be found on the right axis, per group."""
    torch.manual_seed(0)
    layer = CONVS[dims][transposed](4, 6, 3, groups=groups, bias=True)
    model = nn.Sequential(layer, nn.Tanh(), CONVS[dims][0](6, 2, 1))
    randomised(model, lhuc.LHUCConfig(num_ids=2, target_modules=["0"], position=position))
    assert_fold_exact(model, torch.randn(2, 4, *[7] * dims))


@pytest.mark.parametrize("groups", [1, 2])
def test_fold_after_activation_into_a_conv_transpose(groups):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv1d(3, 4, 3), nn.Tanh(), nn.ConvTranspose1d(4, 6, 3, groups=groups))
    randomised(model, lhuc.LHUCConfig(num_ids=2, target_modules=["1"], dims={"1": 4},
                                      channel_axis=1))
    assert_fold_exact(model, torch.randn(2, 3, 9), into={"1": "2"})


def test_fold_into_a_computed_weight_is_refused():
    model = nn.Sequential(OrderedDict(
        lin=nn.utils.parametrizations.weight_norm(nn.Linear(5, 8)), act=nn.ReLU()))
    randomised(model, lhuc.LHUCConfig(num_ids=2, target_modules=["lin"]))
    with pytest.raises(ValueError, match="Linear: its weight is computed"):
        lhuc.fold_lhuc(model, 1)


def test_readme_example_runs_and_adaptation_helps():
    spec = importlib.util.spec_from_file_location("core_example", ROOT / "examples/core_example.py")
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    result = example.main()
    assert result["adapted_acc"] > result["si_acc"]
    assert result["fold_gap"] < 1e-4
