"""N-best targets with posterior weights and entropy minimisation (SUTA) for unsupervised LHUC,
on the committed synthetic SI model and a tiny generated test set."""

import math

import pytest
import torch
import torch.nn.functional as F
from synthetic_adapt_helpers import system_from, tiny_test_speakers

import lhuc
from asr_lhuc.adapt import (
    AdaptConfig,
    AsrSystem,
    Target,
    adapt_speakers,
    add_speaker_rows,
    online_hypotheses,
)
from asr_lhuc.adapt.loss import frame_entropy, utterance_ctc, utterance_loss
from asr_lhuc.adapt.targets import make_targets, nbest_target, nbest_weights
from asr_lhuc.decode import make_beam_searcher, nbest_searcher

CFG = AdaptConfig(lr=0.05, epochs=3, batch_size=4)


@pytest.fixture(scope="module")
def speakers(tmp_path_factory):
    return tiny_test_speakers(tmp_path_factory.mktemp("nbest"))


def si_system(beam_size: int = 1, lm: str | None = None) -> AsrSystem:
    if beam_size <= 1:
        return system_from("si.pt")
    # a light LM weight: an out-of-vocabulary spelling then stays within the beam (an n-best)
    return system_from("si.pt", lambda enc: make_beam_searcher(enc, beam_size, lm, alpha=0.2))


def lhuc_grads(system: AsrSystem, loss: torch.Tensor) -> list[torch.Tensor]:
    params = [t.rows for t in lhuc.lhuc_tables(system.model).values()]
    return torch.autograd.grad(loss.sum(), params)


def test_nbest_weights_sum_to_one_and_follow_the_scores():
    scores = [-10.0, -11.0, -13.5]
    weights = nbest_weights(scores, 1.0)
    assert float(weights.sum()) == pytest.approx(1.0, abs=1e-6)
    assert weights.tolist() == sorted(weights.tolist(), reverse=True)
    total = sum(math.exp(s) for s in scores)
    assert weights.tolist() == pytest.approx([math.exp(s) / total for s in scores], rel=1e-5)
    # the scale sharpens (ratio e^(scale * score gap)) or flattens the posterior
    sharp = nbest_weights(scores, 2.0)
    assert float(sharp[0] / sharp[1]) == pytest.approx(math.exp(2.0), rel=1e-5)
    assert nbest_weights(scores, 0.0).tolist() == pytest.approx([1 / 3] * 3)
    # scores far below exp's range still give a distribution (no underflow to 0/0)
    assert float(nbest_weights([-5000.0, -5001.0], 1.0).sum()) == pytest.approx(1.0)


def test_nbest_target_pools_one_text_and_drops_empty_hypotheses(speakers):
    system = si_system()
    utt = next(iter(speakers.values()))[0]
    hyps = [("AB", -1.0), ("AB", -2.0), ("", -1.5), ("C", -3.0)]
    target = nbest_target(system, utt, hyps, confidence=0.7, scale=1.0)
    w = nbest_weights([s for _, s in hyps], 1.0).tolist()
    kept = w[0] + w[1] + w[3]
    assert target.text == "AB" and torch.equal(target.ids, system.text_to_ids("AB"))
    assert [t.tolist() for t in target.nbest] == [system.text_to_ids("AB").tolist(),
                                                  system.text_to_ids("C").tolist()]
    assert target.weights.tolist() == pytest.approx([(w[0] + w[1]) / kept, w[3] / kept])
    assert target.confidence == 0.7
    empty = nbest_target(system, utt, [("", -1.0), ("  ", -2.0)], 0.5, 1.0)
    assert len(empty.ids) == 0 and empty.nbest is None  # counted as empty, as a 1-best would be


def test_nbest_loss_is_the_weighted_sum_of_each_hypothesis_ctc_loss(speakers):
    system = si_system()
    utts = next(iter(speakers.values()))[:2]
    ids = {text: system.text_to_ids(text) for text in ("AB", "BA", "A", "CAB")}
    targets = [Target(utts[0], "AB", ids["AB"], nbest=[ids["AB"], ids["BA"], ids["A"]],
                      weights=torch.tensor([0.5, 0.3, 0.2])),
               Target(utts[1], "CAB", ids["CAB"])]  # a 1-best target in the same batch
    rows = torch.full((2,), -1)
    with torch.no_grad():
        loss = utterance_loss(system, targets, rows)
        log_probs, frames = system.log_probs(utts, rows)

    def ctc(b: int, text: str) -> float:  # one sequence alone, summed, over its length
        n = int(frames[b])
        value = F.ctc_loss(log_probs[b, :n].unsqueeze(1), ids[text][None], torch.tensor([n]),
                           torch.tensor([len(ids[text])]), blank=system.blank, reduction="sum")
        return float(value) / len(ids[text])

    expected = [0.5 * ctc(0, "AB") + 0.3 * ctc(0, "BA") + 0.2 * ctc(0, "A"), ctc(1, "CAB")]
    assert loss.tolist() == pytest.approx(expected, rel=1e-5)


def test_one_hypothesis_gives_the_1best_loss_and_gradients(speakers):
    system = si_system()
    system.freeze()
    utts = [u for us in speakers.values() for u in us][:3]
    texts = ["AB", "CAB", "BAD"]
    plain = [Target(u, t, system.text_to_ids(t)) for u, t in zip(utts, texts)]
    single = [Target(u, t, system.text_to_ids(t), nbest=[system.text_to_ids(t)],
                     weights=torch.ones(1)) for u, t in zip(utts, texts)]
    row = add_speaker_rows(system.model, ["new"], "one")["new"]
    rows = torch.full((3,), row)
    plain_loss = utterance_ctc(system, plain, rows)
    single_loss = utterance_ctc(system, single, rows)
    assert torch.allclose(plain_loss, single_loss, rtol=1e-6)
    for a, b in zip(lhuc_grads(system, plain_loss), lhuc_grads(system, single_loss)):
        assert torch.allclose(a, b, rtol=1e-5, atol=1e-8) and a.abs().sum() > 0


def test_nbest_1_keeps_the_1best_targets(speakers):
    system = si_system(beam_size=4)
    targets, _ = make_targets(system, speakers, CFG)
    for spk, utts in speakers.items():
        decoded = dict(zip([u.id for u in utts], system.decode(utts, snap=True)[0]))
        assert targets[spk] and all(t.nbest is None and t.weights is None for t in targets[spk])
        assert all(t.text == decoded[t.utt.id] for t in targets[spk])


def test_lm_beam_nbest_targets_keep_the_1best_first_with_posterior_weights(speakers, tmp_path):
    pytest.importorskip("flashlight.lib.text.decoder")
    from asr_lhuc.lm import write_arpa

    transcripts = [u.text for us in speakers.values() for u in us]
    arpa = write_arpa(tmp_path / "lm.arpa", transcripts, order=2)
    system = si_system(beam_size=6, lm=str(arpa))
    cfg = CFG.replace(nbest=3, nbest_scale=0.5)
    targets, report = make_targets(system, speakers, cfg)
    assert sum(report.kept.values()) > 0
    for spk, utts in speakers.items():
        texts, confs = system.decode(utts, snap=True)
        one_best = dict(zip([u.id for u in utts], texts))
        confidence = dict(zip([u.id for u in utts], confs))  # selection uses the same one
        lists = dict(zip([u.id for u in utts], system.decode_nbest(utts, 3)[0]))
        for target in targets[spk]:
            hyps = lists[target.utt.id]
            assert target.confidence == pytest.approx(confidence[target.utt.id])
            assert target.text == one_best[target.utt.id] == hyps[0][0]
            assert 1 <= len(target.nbest) <= 3 and len({t for t, _ in hyps}) == len(hyps)
            expected = nbest_weights([s for _, s in hyps], 0.5)  # no lexicon, no empty text
            assert target.weights.tolist() == pytest.approx(expected.tolist(), rel=1e-5)
            assert float(target.weights.sum()) == pytest.approx(1.0, abs=1e-6)
    assert any(len(t.nbest) > 1 for ts in targets.values() for t in ts)
    info = adapt_speakers(system, speakers, cfg)  # end to end: rows adapt on the N-best
    assert all(r >= 0 for r in info["rows"].values())


def test_speechbrain_beam_gives_an_nbest_and_greedy_decoding_is_refused(speakers):
    system = si_system(beam_size=4)
    lists, confs = system.decode_nbest(next(iter(speakers.values())), 3)
    assert all(1 <= len(h) <= 3 and len(confs) == len(lists) for h in lists)
    assert all([s for _, s in h] == sorted((s for _, s in h), reverse=True) for h in lists)
    assert system.searcher.topk == 1  # the system's own (1-best) searcher is left alone
    with pytest.raises(ValueError, match=r"nbest 5 > beam_size 4"):
        nbest_searcher(system.searcher, 5)
    greedy = si_system()
    with pytest.raises(ValueError, match=r"nbest 2 .*decodes greedily.*beam_size >= 2"):
        adapt_speakers(greedy, speakers, CFG.replace(nbest=2))
    with pytest.raises(ValueError, match=r"online adaptation takes 1-best.*nbest: 1"):
        online_hypotheses(system, speakers, CFG.replace(nbest=2))


def test_frame_entropy_matches_a_hand_computation():
    logits = torch.tensor([[[2.0, 0.0, -1.0], [0.5, 0.5, 0.5], [3.0, 1.0, 0.0]],
                           [[1.0, -2.0, 0.0], [0.0, 4.0, 1.0], [9.0, 9.0, 9.0]]])
    frames = torch.tensor([3, 2])  # the second utterance's last frame is padding

    def entropy(row, temperature):
        exps = [math.exp(x / temperature) for x in row]
        probs = [e / sum(exps) for e in exps]
        return -sum(p * math.log(p) for p in probs)

    for temperature in (1.0, 2.0):
        got = frame_entropy(logits.log_softmax(-1), frames, temperature)
        expected = [sum(entropy(r, temperature) for r in logits[b, :n].tolist()) / n
                    for b, n in enumerate(frames.tolist())]
        assert got.tolist() == pytest.approx(expected, rel=1e-5)
    assert float(frame_entropy(logits.log_softmax(-1), frames)[1]) < math.log(3)


def test_entropy_weight_adds_the_weighted_entropy_to_the_ctc_loss(speakers):
    system = si_system()
    utts = next(iter(speakers.values()))[:2]
    targets = [Target(u, "AB", system.text_to_ids("AB")) for u in utts]
    rows = torch.full((2,), -1)
    with torch.no_grad():
        ctc = utterance_loss(system, targets, rows)
        mixed = utterance_loss(system, targets, rows, entropy_weight=0.3, entropy_temperature=2.0)
        log_probs, frames = system.log_probs(utts, rows)
    entropy = frame_entropy(log_probs, frames, 2.0)
    assert torch.all(entropy > 0)
    assert torch.allclose(mixed, ctc + 0.3 * entropy, rtol=1e-6)


def test_entropy_adaptation_lowers_the_entropy_and_moves_only_lhuc_rows(speakers, monkeypatch):
    system = si_system()
    before = {k: v.clone() for k, v in system.model.state_dict().items()}

    def no_decoding(*args, **kwargs):
        raise AssertionError("loss 'entropy' needs no hypotheses")

    monkeypatch.setattr(system, "decode", no_decoding)
    cfg = CFG.replace(loss="entropy", entropy_temperature=1.5)
    info = adapt_speakers(system, speakers, cfg)
    assert info["targets"]["kept"] == {s: len(u) for s, u in speakers.items()}
    for name, value in system.model.state_dict().items():
        if "lhuc_table.rows" not in name:
            assert torch.equal(value, before[name]), f"{name} changed"
    utts = [u for us in speakers.values() for u in us]
    ids = torch.tensor([info["rows"][u.spk_id] for u in utts])
    with torch.no_grad():
        adapted, frames = system.log_probs(utts, ids)
        si, _ = system.log_probs(utts, torch.full_like(ids, -1))
    assert float(frame_entropy(adapted, frames, 1.5).mean()) < float(
        frame_entropy(si, frames, 1.5).mean()) - 1e-3


@pytest.mark.parametrize("options, field", [
    ({"nbest": 0}, "nbest"),
    ({"nbest": 3, "targets": "oracle"}, "nbest 3"),
    ({"nbest": 3, "loss": "frame_ce"}, "nbest 3"),
    ({"nbest_scale": -1.0}, "nbest_scale"),
    ({"entropy_weight": -0.1}, "entropy_weight"),
    ({"entropy_temperature": 0.0}, "entropy_temperature"),
    ({"loss": "entropy", "entropy_weight": 0.3}, "entropy_weight"),
    ({"loss": "entropy", "rounds": 2}, "rounds"),
    ({"loss": "entropies"}, "loss"),
])
def test_nbest_and_entropy_settings_are_checked(options, field):
    with pytest.raises(ValueError, match=field):
        AdaptConfig(**options)


def test_the_recipe_refuses_an_nbest_before_decoding_anything(tmp_path, monkeypatch):
    from asr_lhuc.adapt import recipe

    monkeypatch.setattr(recipe, "Models", lambda hp: pytest.fail("models were loaded"))
    monkeypatch.setattr(recipe, "load_speakers", lambda *a, **k: {})
    monkeypatch.setattr(recipe, "write_split_manifests", lambda *a, **k: None)
    hp = {"adapt": {"nbest": 5}, "beam_size": 1, "test_csv": "x.csv", "protocol": "transductive",
          "systems": ["si", "si_lhuc"], "output_folder": str(tmp_path)}
    with pytest.raises(ValueError, match="nbest 5 .*decodes greedily"):
        recipe.run(hp, None, "test")
    hp.update(beam_size=10, systems=["si", "si_lhuc_online"])
    with pytest.raises(ValueError, match="si_lhuc_online"):
        recipe.run(hp, None, "test")
