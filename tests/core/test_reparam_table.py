"""Reparameterisations, amplitude tables, SI fallback and SAT sampling."""

import math

import pytest
import torch

from lhuc import REPARAMS, AmplitudeTable, get_reparam


@pytest.mark.parametrize("name", ["2sigmoid", "exp", "identity", "relu"])
def test_fresh_reparam_gives_amplitude_one(name):
    rep = get_reparam(name)
    assert rep(torch.tensor(rep.init_r)).item() == pytest.approx(1.0, abs=1e-7)


def test_sigmoid_starts_at_half_since_it_cannot_reach_one():
    assert get_reparam("sigmoid").init_amplitude == pytest.approx(0.5)


@pytest.mark.parametrize("name", sorted(REPARAMS))
def test_reparam_range(name):
    rep = get_reparam(name)
    out = rep(torch.linspace(-30, 30, 1001))
    assert out.min().item() >= rep.low and out.max().item() <= rep.high
    if math.isfinite(rep.high):  # bounded maps approach their upper bound
        assert out.max().item() > rep.high - 1e-3


def test_two_sigmoid_range_is_zero_to_two():
    rep = get_reparam("2sigmoid")
    assert (rep.low, rep.high) == (0.0, 2.0)
    assert rep(torch.tensor(3.0)).item() == pytest.approx(2 / (1 + math.exp(-3)))


def test_unknown_reparam_is_a_clear_error():
    with pytest.raises(ValueError, match="2sigmoid"):
        get_reparam("tanh")


@pytest.mark.parametrize("shape,axis", [((4, 6), -1), ((4, 5, 6), -1), ((4, 6, 5), 1),
                                        ((4, 5, 3, 6), -1)])
def test_fresh_table_is_identity_for_every_layout(shape, axis):
    table = AmplitudeTable(3, 6)
    hidden = torch.randn(shape)
    out = table(hidden, torch.tensor([0, 1, 2, -1]), channel_axis=axis)
    assert torch.equal(out, hidden)


def test_rows_scale_their_own_identity_and_unknown_ids_use_si():
    table = AmplitudeTable(2, 3, reparam="identity")
    with torch.no_grad():
        table.rows.copy_(torch.tensor([[2.0, 2.0, 2.0], [3.0, 3.0, 3.0]]))
        table.si.fill_(5.0)
    out = table(torch.ones(3, 4, 3), torch.tensor([1, -1, 0]))
    assert out[0].unique().tolist() == [3.0]
    assert out[1].unique().tolist() == [5.0]
    assert out[2].unique().tolist() == [2.0]


def test_channel_first_scales_the_channel_axis():
    table = AmplitudeTable(1, 2, reparam="identity")
    with torch.no_grad():
        table.rows.copy_(torch.tensor([[2.0, 3.0]]))
    out = table(torch.ones(1, 2, 5), torch.tensor([0]), channel_axis=1)
    assert out[0, 0].unique().tolist() == [2.0] and out[0, 1].unique().tolist() == [3.0]


def test_ids_past_the_table_are_a_clear_error():
    with pytest.raises(IndexError, match="add_ids"):
        AmplitudeTable(2, 3)(torch.ones(1, 3), torch.tensor([2]))


def test_gradients_reach_only_rows_in_the_batch():
    table = AmplitudeTable(5, 4)
    table(torch.randn(3, 7, 4), torch.tensor([1, 3, 1])).pow(2).sum().backward()
    touched = table.rows.grad.abs().sum(1) > 0
    assert touched.tolist() == [False, True, False, True, False]
    assert table.si.grad.abs().sum() == 0


def test_add_ids_keeps_old_rows_and_new_rows_start_at_one():
    table = AmplitudeTable(2, 3)
    with torch.no_grad():
        table.rows.add_(1.0)
    before = table.rows.detach().clone()
    new = table.add_ids(3)
    assert new.tolist() == [2, 3, 4] and table.num_ids == 5
    assert torch.equal(table.rows[:2], before)
    assert torch.allclose(table.amplitudes(new), torch.ones(3, 3))


def _si_fraction(table, ids, hidden):
    """Fraction of positions where SAT replaced the row (rows at amp 2, SI at amp 1)."""
    out = table(hidden, ids)
    return (out == 1.0).float().mean().item()


@pytest.mark.parametrize("level", ["utterance", "frame", "identity"])
def test_sat_frequency_matches_gamma(level):
    torch.manual_seed(0)
    gamma = 0.3
    table = AmplitudeTable(50, 2, reparam="identity", sat_gamma=gamma, sat_level=level)
    with torch.no_grad():
        table.rows.fill_(2.0)
        table.si.fill_(1.0)
    ids = torch.arange(50).repeat(20)  # 1000 utterances over 50 identities
    fractions = [_si_fraction(table.train(), ids, torch.ones(1000, 10, 2)) for _ in range(20)]
    n_draws = {"utterance": 1000, "frame": 10000, "identity": 50}[level] * 20
    tolerance = 4 * math.sqrt(gamma * (1 - gamma) / n_draws)
    assert abs(sum(fractions) / 20 - gamma) < tolerance


def test_sat_draws_differ_per_frame_and_agree_per_identity():
    torch.manual_seed(1)
    table = AmplitudeTable(3, 1, reparam="identity", sat_gamma=0.5, sat_level="frame")
    with torch.no_grad():
        table.rows.fill_(2.0)
    out = table.train()(torch.ones(4, 50, 1), torch.tensor([0, 1, 2, 0]))
    assert out[0].unique().numel() == 2  # one utterance mixes SI and own frames
    table.sat_level = "identity"
    out = table(torch.ones(200, 1), torch.tensor([0, 1] * 100))
    assert out[0::2].unique().numel() == 1 and out[1::2].unique().numel() == 1


@pytest.mark.parametrize("level", ["utterance", "frame", "identity"])
def test_sat_never_happens_in_eval_mode(level):
    table = AmplitudeTable(4, 2, reparam="identity", sat_gamma=1.0, sat_level=level).eval()
    with torch.no_grad():
        table.rows.fill_(2.0)
    assert (table(torch.ones(8, 5, 2), torch.arange(8) % 4) == 2.0).all()


def test_si_only_table_serves_unknown_ids():
    table = AmplitudeTable(0, 3, reparam="identity")
    with torch.no_grad():
        table.si.fill_(2.0)
    assert torch.equal(table(torch.ones(2, 3), torch.tensor([-1, -1])), torch.full((2, 3), 2.0))
    with pytest.raises(IndexError):
        table(torch.ones(1, 3), torch.tensor([0]))
