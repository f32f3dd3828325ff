"""Every ranking model: forward/backward, learning, gate placement, LHUC-user scoring, POSO."""

import pytest
import torch
from random_batch import random_batch, tiny_spec

from recsys_lhuc.models import MODELS, MULTI_TASK, build_model, split_sparse_parameters

HIDDEN = (16, 8)


def total_loss(out, batch) -> torch.Tensor:
    bce = torch.nn.functional.binary_cross_entropy_with_logits
    if isinstance(out, dict):
        return sum(bce(logits, batch[name]) for name, logits in out.items())
    return bce(out, batch["like"])


@pytest.mark.parametrize("name", sorted(MODELS))
def test_forward_backward_and_learning(name):
    torch.manual_seed(0)
    spec = tiny_spec()
    batch = random_batch(spec, 32)
    model = build_model(name, spec, hidden=HIDDEN)
    out = model(batch)
    if name in MULTI_TASK:
        assert set(out) == {"like", "watch"}
        assert all(v.shape == (32,) for v in out.values())
    else:
        assert out.shape == (32,)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(30):
        opt.zero_grad()
        loss = total_loss(model(batch), batch)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0], f"{name} did not fit a batch: {losses[0]}->{losses[-1]}"
    # After training moved the gates' output layers off zero, every parameter gets a gradient.
    opt.zero_grad()
    total_loss(model(batch), batch).backward()
    no_grad = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.any()]
    assert not no_grad, f"{name}: parameters without gradient: {no_grad}"


def test_models_never_read_labels():
    spec = tiny_spec()
    batch = random_batch(spec, 8)
    unlabelled = {k: v for k, v in batch.items() if k not in spec.labels}
    for name in MODELS:
        build_model(name, spec, hidden=HIDDEN)(unlabelled)


def test_unknown_model_and_bad_config():
    with pytest.raises(ValueError, match="unknown model 'nope'"):
        build_model("nope", tiny_spec())
    with pytest.raises(TypeError, match="bad config for model 'ppnet'"):
        build_model("ppnet", tiny_spec(), hiden=(4,))
    with pytest.raises(ValueError, match="logit_gate needs gate_position='input'"):
        build_model("ppnet", tiny_spec(), gate_position="output", logit_gate=True)


def test_ppnet_gates_start_as_identity():
    """Fresh gates output exactly 1, so a fresh PPNet equals its own ungated tower."""
    spec = tiny_spec()
    batch = random_batch(spec, 16)
    model = build_model("ppnet", spec, hidden=HIDDEN, logit_gate=True).eval()
    plain = model.tower.tower(model.embedding(batch))
    torch.testing.assert_close(model(batch), plain, rtol=0, atol=0)


@pytest.mark.parametrize("position,logit_gate,expected", [
    ("input", False, [8 + 8 + 4 + 4 + 1, 16]),
    ("input", True, [25, 16, 8]),
    ("output", False, [16, 8]),
])
def test_ppnet_gate_placement(position, logit_gate, expected):
    spec = tiny_spec()
    model = build_model("ppnet", spec, hidden=HIDDEN, gate_position=position,
                        logit_gate=logit_gate, fused_gates=True)
    assert [fc.out_features for fc in model.tower.gates.fc2s] == expected
    # gate input = own uid + iid (8 + 8) + detached others (occupation 4, genres 4, age 1)
    assert model.tower.gates.fc1.in_features == 16 + 9
    # A gate that halves one layer's units must change the output (it is really applied).
    batch = random_batch(spec, 8)
    before = model(batch)
    with torch.no_grad():
        model.tower.gates.fc2s[-1].bias.fill_(-5.0)
    assert not torch.allclose(model(batch), before)


def test_fused_gates_equal_unfused():
    torch.manual_seed(1)
    spec = tiny_spec()
    batch = random_batch(spec, 16)
    model = build_model("ppnet", spec, hidden=HIDDEN, fused_gates=False, logit_gate=True)
    with torch.no_grad():
        for p in model.tower.gates.parameters():
            p.normal_(std=0.5)
    unfused = model(batch)
    model.tower.fuse_gates()
    assert model.tower.gates.fused
    fused = model(batch)
    torch.testing.assert_close(fused, unfused, rtol=1e-5, atol=1e-6)
    assert (unfused - model.tower.tower(model.embedding(batch))).abs().max() > 1e-3


def test_lhuc_user_request_scoring_matches_per_row_path():
    torch.manual_seed(2)
    spec = tiny_spec()
    model = build_model("lhuc_user", spec, hidden=HIDDEN).eval()
    with torch.no_grad():
        model.table.rows.normal_()
        model.table.si.normal_()
    candidates = random_batch(spec, 50)
    for user in (7, 0):  # a known user and the OOV bucket
        candidates["user_id"] = torch.full((50,), user)
        amps = model.user_amplitudes(user)
        assert amps.shape == (1, sum(HIDDEN))
        torch.testing.assert_close(model.score_candidates(amps, candidates), model(candidates))
    # OOV id 0 uses the SI row, not row 0.
    torch.testing.assert_close(model.user_amplitudes(0)[0], 2 * torch.sigmoid(model.table.si))
    torch.testing.assert_close(model.user_amplitudes(3)[0], 2 * torch.sigmoid(model.table.rows[3]))


def test_lhuc_user_amplitudes_are_per_user():
    """Training on one user's rows moves only that user's table row (and not the SI row)."""
    torch.manual_seed(3)
    spec = tiny_spec()
    model = build_model("lhuc_user", spec, hidden=HIDDEN)
    batch = random_batch(spec, 32)
    batch["user_id"] = torch.full((32,), 5)
    total_loss(model(batch), batch).backward()
    grad = model.table.rows.grad
    assert grad[5].abs().sum() > 0
    assert grad[torch.arange(20) != 5].abs().sum() == 0
    assert model.table.si.grad.abs().sum() == 0


def test_poso_groups_select_module_mixtures():
    torch.manual_seed(4)
    spec = tiny_spec()
    model = build_model("poso", spec, hidden=HIDDEN, group_field="occupation", num_modules=3)
    batch = random_batch(spec, 16)
    assert torch.equal(model.group_ids(batch), batch["occupation"])
    with torch.no_grad():
        for p in model.gates.parameters():
            p.normal_()
    out_a = model(batch)
    batch_b = dict(batch, occupation=(batch["occupation"] + 1) % 5)
    assert not torch.allclose(out_a, model(batch_b))  # same features, other group -> other score
    hashed = build_model("poso", spec, hidden=HIDDEN, num_groups=4)
    groups = hashed.group_ids(batch)
    assert groups.min() >= 0 and groups.max() < 4
    assert len(groups.unique()) > 1


def test_pepnet_epnet_starts_as_identity_and_scales_embeddings():
    spec = tiny_spec()
    model = build_model("pepnet", spec, hidden=HIDDEN, domain_fields=["occupation"])
    batch = random_batch(spec, 8)
    shared = model.embedding(batch)
    torch.testing.assert_close(model.epnet(model.domain_ids(batch), shared),
                               torch.ones_like(shared), rtol=0, atol=0)
    assert model.epnet.fc1.in_features == 4 + shared.shape[1]


def test_multi_valued_field_ignores_padding():
    spec = tiny_spec()
    model = build_model("dnn", spec, hidden=HIDDEN)
    bag = model.embedding.multi["genres"]
    ids = torch.tensor([[3, 0, 0], [3, 5, 0], [0, 0, 0]])
    out = bag(ids)
    torch.testing.assert_close(out[0], bag.weight[3])
    torch.testing.assert_close(out[1], (bag.weight[3] + bag.weight[5]) / 2)
    assert not out[2].any()


def test_sparse_tables_train_with_sparse_adam():
    spec = tiny_spec()
    model = build_model("ppnet", spec, hidden=HIDDEN, sparse=True)
    sparse, dense = split_sparse_parameters(model)
    assert len(sparse) == 4 + 2  # shared uid, iid, occupation, genres + gate-own uid, iid
    batch = random_batch(spec, 16)
    row_before = model.embedding.categorical["item_id"].weight.detach().clone()
    opts = [torch.optim.SparseAdam(sparse, lr=0.1), torch.optim.Adam(dense, lr=0.1)]
    total_loss(model(batch), batch).backward()
    assert model.embedding.categorical["item_id"].weight.grad.is_sparse
    for opt in opts:
        opt.step()
    changed = (model.embedding.categorical["item_id"].weight != row_before).any(dim=1)
    assert torch.equal(changed.nonzero().flatten(), batch["item_id"].unique())


@pytest.mark.parametrize("name", sorted(MODELS))
def test_bf16_autocast_forward_backward(name):
    """Every model runs under bf16 autocast (the GPU training mode) and stays close to fp32."""
    torch.manual_seed(0)
    spec = tiny_spec()
    batch = random_batch(spec, 16)
    model = build_model(name, spec, hidden=HIDDEN)
    reference = model(batch)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(batch)
        loss = total_loss(out, batch)
    loss.backward()
    if isinstance(out, dict):
        out, reference = out["like"], reference["like"]
    assert torch.isfinite(loss)
    torch.testing.assert_close(out.float(), reference, rtol=0.05, atol=0.05)
