"""Bayesian LHUC (`lhuc.bayes`): the KL term, posterior sampling, new rows, and shrinkage of a
speaker's row toward the SI row when its data are few."""

import pytest
import torch
from torch import nn

import lhuc
from lhuc import bayes


def small_model(num_ids: int = 3) -> nn.Module:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 1))
    lhuc.attach_lhuc(model, lhuc.LHUCConfig(num_ids=num_ids, target_modules=["1"]),
                     example_inputs=(torch.zeros(1, 4),))
    return model


def test_kl_matches_torch_distributions_and_vanishes_at_the_prior():
    model = small_model()
    bayes.make_bayesian(model, prior_std=0.7, init_std=0.2)
    table = next(iter(lhuc.lhuc_tables(model).values()))
    with torch.no_grad():
        table.rows.normal_(0, 0.5)
        table.log_std.uniform_(-3, 0)
        table.si.normal_(0, 0.3)
    ids = torch.tensor([0, 2])
    q = torch.distributions.Normal(table.rows[ids], table.log_std[ids].exp())
    p = torch.distributions.Normal(table.si.expand(2, -1), torch.full((2, 8), 0.7))
    expected = torch.distributions.kl_divergence(q, p).sum(dim=1)
    assert torch.allclose(bayes.kl_to_prior(model, ids), expected, atol=1e-5)
    with torch.no_grad():  # a posterior equal to the prior costs nothing
        table.rows[1] = table.si
        table.log_std[1] = torch.tensor(0.7).log()
    kl = float(bayes.kl_to_prior(model, torch.tensor([1])).detach())
    assert kl == pytest.approx(0.0, abs=1e-5)


def test_sampling_draws_from_the_posterior_and_the_mean_is_plain_lhuc():
    model = small_model()
    x, ids = torch.randn(1, 4).expand(4000, 4), torch.zeros(4000, dtype=torch.long)
    with lhuc.identities(model, ids):
        plain = model(x)
    bayes.make_bayesian(model, prior_std=1.0, init_std=0.3)
    table = next(iter(lhuc.lhuc_tables(model).values()))
    with lhuc.identities(model, ids):
        assert torch.equal(model(x), plain)  # outside `sampling`: the posterior mean
        with bayes.sampling(model):
            r = table.raw(ids)
            drawn = model(x)
    assert not table.sample
    assert float(r.std(dim=0).mean()) == pytest.approx(0.3, rel=0.05)
    assert float(r.mean(dim=0).abs().max()) < 0.05  # the row (mean) is still r = 0
    assert float(drawn.std()) > 0
    unknown = torch.full((10,), -1)
    with bayes.sampling(model):  # the SI row is not sampled
        assert torch.equal(table.raw(unknown), table.si.expand(10, -1))


def test_new_identities_get_the_initial_posterior_and_reset():
    model = small_model(num_ids=2)
    bayes.make_bayesian(model, init_std=0.05)
    table = next(iter(lhuc.lhuc_tables(model).values()))
    with torch.no_grad():
        table.log_std.fill_(-1.0)
    new = lhuc.add_identities(model, 2)
    assert table.log_std.shape == table.rows.shape == (4, 8)
    assert torch.allclose(table.log_std[new], torch.tensor(0.05).log().expand(2, 8))
    table.reset_ids(torch.tensor([0]))
    assert torch.allclose(table.log_std[0], torch.tensor(0.05).log().expand(8))
    assert bayes.is_bayesian(model) and not bayes.is_bayesian(small_model())


def fit_speaker(n_examples: int, bayesian: bool, steps: int = 400) -> tuple[float, float]:
    """Adapt identity 0's row on `n_examples` noisy examples of a speaker whose hidden units
    are scaled by a true amplitude != 1. Returns (distance of its row from the SI row, mean
    squared error on 2,000 new examples of that speaker)."""
    model = small_model(num_ids=1)
    gen = torch.Generator().manual_seed(1)
    true_amp = torch.linspace(0.4, 1.6, 8)

    def speaker_data(n):
        x = torch.randn(n, 4, generator=gen)
        with torch.no_grad():
            y = model[2](torch.tanh(model[0](x)) * true_amp)
        return x, y + 0.3 * torch.randn(n, 1, generator=gen)

    (x, y), (x_new, y_new) = speaker_data(n_examples), speaker_data(2000)
    params = lhuc.freeze_non_lhuc(model)
    if bayesian:
        params += bayes.make_bayesian(model, prior_std=0.5, init_std=0.05)
    optimizer = torch.optim.Adam(params, lr=0.05)
    ids = torch.zeros(n_examples, dtype=torch.long)
    torch.manual_seed(2)
    for _ in range(steps):
        optimizer.zero_grad()
        with lhuc.identities(model, ids), bayes.sampling(model, bayesian):
            loss = ((model(x) - y) ** 2).mean() / (2 * 0.3 ** 2)  # per-example NLL
        if bayesian:
            loss = loss + bayes.kl_to_prior(model, ids[:1]).sum() / n_examples
        loss.backward()
        optimizer.step()
    table = next(iter(lhuc.lhuc_tables(model).values()))
    with torch.no_grad(), lhuc.identities(model, torch.zeros(2000, dtype=torch.long)):
        error = float(((model(x_new) - y_new) ** 2).mean())
    return float((table.rows[0] - table.si).detach().norm()), error


def test_the_posterior_mean_shrinks_toward_the_si_row_as_data_shrink():
    (few_b, few_b_err), (many_b, many_b_err) = fit_speaker(3, True), fit_speaker(300, True)
    (few_p, few_p_err), (_, many_p_err) = fit_speaker(3, False), fit_speaker(300, False)
    assert few_b < 0.5 * few_p  # with 3 examples the prior holds the row back
    assert few_b < many_b  # more data, further from the SI row
    assert few_b_err < few_p_err  # and on new data of that speaker it pays
    assert many_b_err < 1.1 * many_p_err  # with plenty of data the data win


def test_kl_gradient_reaches_only_the_identities_asked_for():
    model = small_model()
    params = bayes.make_bayesian(model)
    table = next(iter(lhuc.lhuc_tables(model).values()))
    with torch.no_grad():
        table.rows.normal_()
    bayes.kl_to_prior(model, torch.tensor([1])).sum().backward()
    assert params[0].grad[1].abs().sum() > 0 and table.rows.grad[1].abs().sum() > 0
    assert torch.count_nonzero(params[0].grad[[0, 2]]) == 0
    assert table.si.grad is None  # the prior's mean is not trained by the KL term
    with pytest.raises(ValueError, match="make_bayesian"):
        bayes.kl_to_prior(small_model(), torch.tensor([0]))


def test_tables_held_as_submodules_or_passed_alone_are_found():
    """A model may own its AmplitudeTable (as recsys_lhuc's LHUC-user does) instead of
    attaching it; bayes finds every table, and takes a bare table too."""
    owner = nn.Module()
    owner.table = lhuc.AmplitudeTable(3, 4)
    assert not lhuc.lhuc_tables(owner)  # not attached: attach's own lookup does not see it
    params = bayes.make_bayesian(owner, prior_std=0.5, init_std=0.2)
    assert len(params) == 1 and params[0] is owner.table.log_std
    assert bayes.is_bayesian(owner) and bayes.is_bayesian(owner.table)
    expected = 4 * (torch.tensor(0.5 / 0.2).log() + 0.2 ** 2 / (2 * 0.5 ** 2) - 0.5)
    kl = bayes.kl_to_prior(owner.table, torch.tensor([2])).detach()
    assert torch.allclose(kl, expected.reshape(1))
    with bayes.sampling(owner):
        assert owner.table.sample
    assert not owner.table.sample
    with pytest.raises(ValueError, match="no LHUC tables"):
        bayes.kl_to_prior(nn.Linear(2, 2), torch.tensor([0]))
