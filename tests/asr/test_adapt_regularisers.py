"""Regularised unsupervised adaptation: Bayesian LHUC rows (prior around the SI row) and the
KL-to-SI-output term, on the committed synthetic models and a tiny generated test set."""

import copy

import pytest
import torch
from synthetic_adapt_helpers import system_from, tiny_test_speakers

import lhuc
from asr_lhuc.adapt import (
    AdaptConfig,
    AsrSystem,
    adapt_speakers,
    decode_speakers,
)
from asr_lhuc.adapt.loss import frame_kl, utterance_ctc, utterance_loss
from asr_lhuc.adapt.targets import make_targets

CFG = AdaptConfig(lr=0.05, epochs=3, batch_size=4)


@pytest.fixture(scope="module")
def speakers(tmp_path_factory):
    return tiny_test_speakers(tmp_path_factory.mktemp("regularisers"))


def distance_from_si(system: AsrSystem, rows: dict[str, int]) -> float:
    ids = [r for r in rows.values() if r >= 0]
    return sum(float((t.rows[ids] - t.si).detach().norm())
               for t in lhuc.lhuc_tables(system.model).values())


def test_bayesian_rows_adapt_and_leave_every_other_row_alone(speakers):
    system = system_from("sat_lhuc.pt")  # it has training speakers' rows to protect
    tables = lhuc.lhuc_tables(system.model)
    n_old = next(iter(tables.values())).num_ids
    before = {k: v.clone() for k, v in system.model.state_dict().items()}
    info = adapt_speakers(system, speakers, CFG.replace(prior_std=0.5))
    adapted = [r for r in info["rows"].values() if r >= 0]
    assert adapted
    for name, table in tables.items():
        assert table.log_std is not None and table.log_std.shape == table.rows.shape
        assert torch.equal(table.rows[:n_old], before[f"{name}.lhuc_table.rows"])
        assert torch.equal(table.si, before[f"{name}.lhuc_table.si"])
        start = torch.tensor(0.05).log()
        assert torch.all(table.log_std[:n_old] == start), "a training speaker's posterior moved"
        assert (table.log_std[adapted] - start).abs().max() > 1e-4, "posterior never trained"
        assert (table.rows[adapted] - table.reparam.init_r).abs().max() > 1e-3
    first = decode_speakers(system, speakers, info["rows"])  # the posterior mean: no sampling
    assert decode_speakers(system, speakers, info["rows"]) == first


def test_a_tight_prior_keeps_rows_near_the_si_row(speakers):
    plain, tight = system_from("si.pt"), system_from("si.pt")
    plain_rows = adapt_speakers(plain, speakers, CFG)["rows"]
    tight_rows = adapt_speakers(tight, speakers, CFG.replace(prior_std=0.02, kl_weight=50.0))[
        "rows"]
    assert distance_from_si(tight, tight_rows) < 0.5 * distance_from_si(plain, plain_rows)


def test_si_kl_mixes_the_target_loss_with_the_kl_to_si_outputs(speakers):
    system = system_from("si.pt")
    targets, _ = make_targets(system, speakers, CFG)
    rows = adapt_speakers(system, speakers, CFG)["rows"]
    spk = next(s for s, r in rows.items() if r >= 0 and targets[s])
    items, ids = targets[spk], torch.full((len(targets[spk]),), rows[spk])
    with torch.no_grad():
        ctc = utterance_ctc(system, items, ids)
        adapted, frames = system.log_probs([t.utt for t in items], ids)
        si, _ = system.log_probs([t.utt for t in items], torch.full_like(ids, -1))
        mixed = utterance_loss(system, items, ids, "ctc", si_kl=0.3)
    kl = frame_kl(si, adapted, frames)
    assert torch.all(kl > 0) and torch.allclose(mixed, 0.7 * ctc + 0.3 * kl, atol=1e-5)
    assert torch.allclose(frame_kl(si, si, frames), torch.zeros_like(kl), atol=1e-6)
    # by hand for one utterance: the mean over its frames of sum_v p_si (log p_si - log p)
    n = int(frames[0])
    by_hand = (si[0, :n].exp() * (si[0, :n] - adapted[0, :n])).sum(-1).mean()
    assert float(kl[0]) == pytest.approx(float(by_hand), rel=1e-5)


def test_si_kl_keeps_the_adapted_outputs_near_the_si_outputs(speakers):
    def output_kl(si_kl: float) -> float:
        system = system_from("si.pt")
        rows = adapt_speakers(system, speakers, CFG.replace(si_kl=si_kl))["rows"]
        utts = [u for spk in rows for u in speakers[spk]]
        ids = torch.tensor([rows[u.spk_id] for u in utts])
        with torch.no_grad():
            adapted, frames = system.log_probs(utts, ids)
            si, _ = system.log_probs(utts, torch.full_like(ids, -1))
        return float(frame_kl(si, adapted, frames).mean())

    assert output_kl(0.9) < 0.5 * output_kl(0.0)


def test_regulariser_settings_are_checked():
    with pytest.raises(ValueError, match="si_kl"):
        AdaptConfig(si_kl=1.0)
    with pytest.raises(ValueError, match="prior_std"):
        AdaptConfig(prior_std=0.0)
    assert copy.deepcopy(AdaptConfig(prior_std=0.3)).to_dict()["prior_std"] == 0.3
