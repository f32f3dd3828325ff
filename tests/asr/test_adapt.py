"""Unsupervised LHUC adaptation end to end on a tiny CTC model and real speakers.

A tiny CRDNN is trained for a few dozen steps on two FSDD speakers (enough for non-empty,
partly wrong first-pass hypotheses), then adapted to FSDD's accented speakers and two synthetic
eSpeak speakers. Checks: only the adapted speakers' LHUC rows move (model in eval mode, no
statistics updated); CTC loss on the first-pass targets falls; each row's gradient comes only
from its own speaker; batched == per-speaker loop; adapter files round-trip; speakers with
nothing usable are reported; online and held-out protocols; the recipe writes adapt.json.
"""

import copy
import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import asr_lhuc.adapt.batched as batched_module
import asr_lhuc.adapt.pipeline as pipeline
import lhuc
from asr_lhuc.adapt import (
    AdaptConfig,
    AsrSystem,
    SpeakerUtterance,
    adapt_batched,
    adapt_per_speaker,
    adapt_speakers,
    add_speaker_rows,
    decode_speakers,
    load_speaker_adapter,
    load_speakers,
    make_targets,
    online_hypotheses,
    pad_batch,
    save_speaker_adapters,
    score,
    split_protocol,
    take_seconds,
)
from asr_lhuc.adapt.loss import mean_ctc, utterance_ctc, utterance_loss
from asr_lhuc.adapt.schedule import speaker_schedule
from asr_lhuc.data import prepare_synthetic
from asr_lhuc.decode import make_text_encoder
from asr_lhuc.model import CTCAcousticModel
from recipes.FSDD.ASR.CTC.fsdd_prepare import prepare_fsdd

DATA = Path(__file__).resolve().parents[2] / "../shared/data"
FSDD = DATA / "fsdd"
TARGETS = ["DNN.block_0.act", "DNN.block_1.act"]
pytestmark = pytest.mark.skipif(not (FSDD / "speakers.tsv").is_file(),
                                reason=f"FSDD not found at {FSDD}")


def tiny_model(n_tokens: int) -> CTCAcousticModel:
    return CTCAcousticModel(n_tokens, n_mels=20, cnn_blocks=1, cnn_channels=(8,),
                            rnn_layers=1, rnn_neurons=32, dnn_blocks=2, dnn_neurons=32,
                            dropout=0.1)


def train_steps(model, system, utts, steps, speaker_rows=None, seed=0):
    """A few plain CTC steps in training mode (dropout, BatchNorm and normalisation updates)."""
    gen = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=8e-3)
    for _ in range(steps):
        model.train()
        batch = [utts[i] for i in torch.randint(len(utts), (8,), generator=gen).tolist()]
        wavs, lens = pad_batch(batch)
        ids = None if speaker_rows is None else torch.tensor([speaker_rows[u.spk_id]
                                                             for u in batch])
        with lhuc.identities(model, ids):
            log_probs, rel = model(wavs, lens)
        frames = (rel * log_probs.shape[1]).round().long()
        targets = [system.text_to_ids(u.text) for u in batch]
        loss = F.ctc_loss(log_probs.transpose(0, 1), torch.cat(targets), frames,
                          torch.tensor([len(t) for t in targets]), zero_infinity=True)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("adapt_data")
    fsdd = prepare_fsdd(FSDD, root / "fsdd", max_utts=6)
    syn = prepare_synthetic(root / "syn", root / "syn", n_train_speakers=1, n_test_speakers=2,
                            utts_per_train_speaker=2, utts_per_test_speaker=4, n_adapt_utts=2)
    test = load_speakers(fsdd["test"], max_utts=4)
    test.update(load_speakers(syn["test"]))
    return {"train": load_speakers(fsdd["train"]), "test": test, "root": root}


@pytest.fixture(scope="module")
def trained(corpus):
    """(SI system, SAT system): the SI tiny model, and a copy trained further as SAT-LHUC."""
    torch.manual_seed(0)
    encoder = make_text_encoder()
    model = tiny_model(len(encoder))
    model.attach_speaker_lhuc(TARGETS, 0)
    si = AsrSystem(model, encoder, device="cpu")
    utts = [u for us in corpus["train"].values() for u in us]
    train_steps(model, si, utts, steps=30)
    sat_model = tiny_model(len(encoder))
    sat_model.load_state_dict({k: v for k, v in model.state_dict().items()
                               if "lhuc_table" not in k}, strict=False)
    sat_model.normalize = copy.deepcopy(model.normalize)
    rows = {spk: i for i, spk in enumerate(corpus["train"])}
    sat_model.attach_speaker_lhuc(TARGETS, len(rows), sat_gamma=0.5)
    sat = AsrSystem(sat_model, encoder, device="cpu")
    train_steps(sat_model, sat, utts, steps=5, speaker_rows=rows, seed=1)
    return si, sat


@pytest.fixture(scope="module")
def trained_longer(corpus, trained):
    """The SI system trained 30 steps more: its first pass is no longer all 'O', so adapting
    on it changes some hypotheses (which a second round of targets must see)."""
    system = fresh(trained[0])
    utts = [u for us in corpus["train"].values() for u in us]
    torch.manual_seed(30)  # dropout: independent of what other fixtures drew before
    train_steps(system.model, system, utts, steps=30, seed=30)
    return system


def fresh(system: AsrSystem) -> AsrSystem:
    return AsrSystem(copy.deepcopy(system.model), system.text_encoder, device="cpu")


def fsdd_only(corpus):
    return {s: u for s, u in corpus["test"].items() if not s.startswith("syn")}


CFG = AdaptConfig(lr=0.05, epochs=3, batch_size=4)


def test_only_the_adapted_speakers_rows_change(corpus, trained):
    system = fresh(trained[1])  # the SAT model: it has training speakers' rows to protect
    model = system.model
    before = {k: v.clone() for k, v in model.state_dict().items()}
    norm_before = copy.deepcopy(model.normalize._statistics_dict())
    n_old = next(iter(lhuc.lhuc_tables(model).values())).num_ids
    info = adapt_speakers(system, corpus["test"], CFG, mode="batched")
    after = model.state_dict()
    assert not model.training and all(not m.training for m in model.modules())
    for key, old in before.items():
        new = after[key]
        if key.endswith("lhuc_table.rows"):
            assert torch.equal(new[:n_old], old), f"{key}: a training speaker's row moved"
            adapted = [r for r in info["rows"].values() if r >= 0]
            assert adapted and all(not torch.equal(new[r], new.new_zeros(new.shape[1]))
                                   for r in adapted), "adapted rows stayed at amplitude 1"
        else:  # weights, BatchNorm statistics, SI rows
            assert torch.equal(new, old), f"{key} changed during adaptation"
    norm_after = model.normalize._statistics_dict()
    assert torch.equal(torch.as_tensor(norm_after["glob_mean"]),
                       torch.as_tensor(norm_before["glob_mean"]))
    assert norm_after["count"] == norm_before["count"]


def test_ctc_loss_on_first_pass_targets_goes_down(corpus, trained):
    system = fresh(trained[0])
    targets, report = make_targets(system, corpus["test"], CFG)
    rows = add_speaker_rows(system.model, list(targets))
    usable = {s: t for s, t in targets.items() if t}
    assert len(usable) >= 3, f"first pass too empty to test: {report}"
    before = {s: mean_ctc(system, t, rows[s]) for s, t in usable.items()}
    adapt_batched(system, usable, rows, CFG.replace(epochs=5))
    after = {s: mean_ctc(system, t, rows[s]) for s, t in usable.items()}
    for spk in usable:
        assert after[spk] < before[spk] - 1e-3, (spk, before[spk], after[spk])


def test_frame_targets_are_the_first_pass_alignment(corpus, trained):
    from asr_lhuc.adapt.system import collapse

    system = fresh(trained[0])
    cfg = CFG.replace(loss="frame_ce")
    targets, _ = make_targets(system, fsdd_only(corpus), cfg)
    rows = add_speaker_rows(system.model, list(targets))
    usable = {s: t for s, t in targets.items() if t}
    for items in usable.values():
        for t in items:  # the frame labels collapse to the hypothesis they align
            assert system.ids_to_text(collapse(t.frames.tolist(), system.blank)) == t.text
    spk = next(iter(usable))
    ids = torch.full((len(usable[spk]),), rows[spk])
    with torch.no_grad():
        before = float(utterance_loss(system, usable[spk], ids, "frame_ce").mean())
    adapt_batched(system, {spk: usable[spk]}, rows, cfg)
    with torch.no_grad():
        after = float(utterance_loss(system, usable[spk], ids, "frame_ce").mean())
    assert after < before


def test_each_row_gets_gradient_only_from_its_own_speaker(corpus, trained):
    system = fresh(trained[0])
    speakers = fsdd_only(corpus)
    targets, _ = make_targets(system, speakers, CFG.replace(targets="oracle"))
    rows = add_speaker_rows(system.model, list(targets))
    system.freeze()
    spk_a, spk_b = list(targets)[:2]
    mixed = targets[spk_a][:2] + targets[spk_b][:2]
    ids = torch.tensor([rows[spk_a]] * 2 + [rows[spk_b]] * 2)
    loss = utterance_ctc(system, mixed, ids)[:2].sum()  # speaker A's utterances only
    loss.backward()
    for table in lhuc.lhuc_tables(system.model).values():
        assert table.rows.grad[rows[spk_a]].abs().sum() > 0
        assert torch.count_nonzero(table.rows.grad[rows[spk_b]]) == 0
        assert table.si.grad is None or torch.count_nonzero(table.si.grad) == 0


def _adapted_rows(system, targets, rows, adapt_fn, cfg):
    adapt_fn(system, targets, rows, cfg)
    return {name: t.rows.detach().clone() for name, t in lhuc.lhuc_tables(system.model).items()}


def test_batched_equals_per_speaker_loop(corpus, trained, trained_longer):
    cfg = CFG.replace(optimizer="sgd", lr=0.5, epochs=2, batch_size=3, targets="oracle")
    # Equal lengths: no padding differences, so the two modes must agree to float precision.
    speakers = copy.deepcopy(fsdd_only(corpus))
    shortest = min(len(u.wav) for us in speakers.values() for u in us)
    for utts in speakers.values():
        for utt in utts:
            utt.wav = utt.wav[:shortest]
    results = {}
    for name, fn in (("loop", adapt_per_speaker), ("batched", adapt_batched)):
        system = fresh(trained[0])
        targets, _ = make_targets(system, speakers, cfg)
        rows = add_speaker_rows(system.model, list(targets))
        results[name] = _adapted_rows(system, targets, rows, fn, cfg)
    for name, loop_rows in results["loop"].items():
        assert loop_rows.abs().max() > 1e-3, "nothing was adapted"
        torch.testing.assert_close(results["batched"][name], loop_rows, atol=1e-5, rtol=1e-4)
    # Real lengths (padding differs between the modes): the same hypotheses, up to one flipped
    # by float noise (measured: 0 of 24 differ, at lr 0.05 and 0.3), on a model whose
    # hypotheses adaptation does change (else both would just repeat the first pass).
    hyps = {}
    for mode in ("loop", "batched"):
        system = fresh(trained_longer)
        info = adapt_speakers(system, corpus["test"], CFG, mode=mode)
        hyps[mode] = _flat(decode_speakers(system, corpus["test"], info["rows"]))
    first_pass = _flat(decode_speakers(fresh(trained_longer), corpus["test"]))
    assert sum(a != b for a, b in zip(hyps["batched"], first_pass)) >= 3, "adaptation idle"
    assert sum(a != b for a, b in zip(hyps["loop"], hyps["batched"])) <= 1, hyps


def _flat(hyps: dict[str, list[str]]) -> list[str]:
    return [h for spk in sorted(hyps) for h in hyps[spk]]


def test_prefix_cache_gives_the_same_outputs(corpus, trained):
    system = fresh(trained[0])
    rows = add_speaker_rows(system.model, ["a"])
    cached = AsrSystem(system.model, system.text_encoder, device="cpu", cache=True)
    assert cached.cache.split == list(system.model.encoder.keys()).index("DNN")
    system.freeze()
    for utt in [us[0] for us in corpus["test"].values()]:
        ids = torch.tensor([rows["a"]])
        with torch.no_grad():
            want, want_frames = system.log_probs([utt], ids)
        got, frames = cached.log_probs([utt], ids)
        assert torch.equal(frames, want_frames)
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)
    assert len(cached.cache.store) == len(corpus["test"])


def test_adapter_files_round_trip(corpus, trained, tmp_path):
    system = fresh(trained[0])
    speakers = fsdd_only(corpus)
    info = adapt_speakers(system, speakers, CFG.replace(targets="oracle"))
    index = save_speaker_adapters(system.model, info["rows"], tmp_path / "adapters")
    assert set(json.loads(index.read_text())) == set(speakers)
    other = fresh(trained[0])  # the unadapted model: rows come only from the files
    for spk, utts in speakers.items():
        row = load_speaker_adapter(other.model, tmp_path / "adapters", spk)
        with torch.no_grad():
            want, _ = system.log_probs(utts, torch.full((len(utts),), info["rows"][spk]))
            got, _ = other.log_probs(utts, torch.full((len(utts),), row))
        torch.testing.assert_close(got, want)
    with pytest.raises(KeyError, match="no adapter"):
        load_speaker_adapter(other.model, tmp_path / "adapters", "nobody")


def test_speakers_without_usable_utterances_are_reported(corpus, trained, monkeypatch):
    system = fresh(trained[0])
    speakers = fsdd_only(corpus)
    mute = next(iter(speakers))
    real_decode = system.decode

    def first_pass_says_nothing_for_mute(utts, ids=None, batch_size=16, snap=None):
        hyps, confs = real_decode(utts, ids, batch_size, snap)
        return ["" if u.spk_id == mute else h for u, h in zip(utts, hyps)], confs

    monkeypatch.setattr(system, "decode", first_pass_says_nothing_for_mute)
    info = adapt_speakers(system, speakers, CFG)
    assert info["unusable"] == [mute]
    assert info["rows"][mute] == -1  # decoded with the SI row
    assert info["targets"]["empty"][mute] == len(speakers[mute])
    assert all(info["rows"][s] >= 0 for s in speakers if s != mute)
    hyps = decode_speakers(system, speakers, info["rows"])
    assert set(hyps) == set(speakers)
    # A confidence threshold nobody reaches: every speaker reported, nothing adapted, no crash.
    none_left = adapt_speakers(fresh(trained[0]), speakers, CFG.replace(min_confidence=1.01))
    assert sorted(none_left["unusable"]) == sorted(speakers)


def _spy_on_target_decodes(system, monkeypatch) -> list[dict]:
    """Record every first pass made for targets (snap=True): its rows and their amplitudes."""
    real_decode, calls = system.decode, []

    def recording_decode(utts, ids=None, batch_size=16, snap=None):
        if snap:
            amps = None if ids is None else {
                name: t.amplitudes(ids).detach().clone()
                for name, t in lhuc.lhuc_tables(system.model).items()}
            calls.append({"spk": {u.spk_id for u in utts}, "ids": ids, "amps": amps})
        return real_decode(utts, ids, batch_size, snap)

    monkeypatch.setattr(system, "decode", recording_decode)
    return calls


def test_second_round_targets_come_from_the_adapted_rows(corpus, trained_longer, monkeypatch):
    speakers = corpus["test"]
    one = fresh(trained_longer)
    round_one = adapt_speakers(one, speakers, CFG)["rows"]
    assert min(round_one.values()) >= 0, "every speaker needs round-1 targets for this test"
    # What round 2 must adapt towards: the first pass with the round-1 rows.
    want, _ = make_targets(one, speakers, CFG, round_one)

    two = fresh(trained_longer)
    calls = _spy_on_target_decodes(two, monkeypatch)
    made, real_make_targets = [], pipeline.make_targets

    def recording_make_targets(*args):
        targets, report = real_make_targets(*args)
        made.append(targets)
        return targets, report

    monkeypatch.setattr(pipeline, "make_targets", recording_make_targets)
    info = adapt_speakers(two, speakers, CFG.replace(rounds=2))
    assert len(calls) == 2 * len(speakers)
    assert all(c["ids"] is None for c in calls[: len(speakers)])  # round 1: the SI row
    for call in calls[len(speakers):]:  # round 2: each speaker's own row, adapted (amp != 1)
        (spk,) = call["spk"]
        assert set(call["ids"].tolist()) == {round_one[spk]}
        for name, amps in call["amps"].items():
            assert (amps - 1).abs().max() > 1e-2, f"{spk} {name}: round 2 decoded at amplitude 1"
    round_two = {t.utt.id: t.text for ts in made[1].values() for t in ts}
    assert round_two == {t.utt.id: t.text for ts in want.values() for t in ts}
    assert info["rounds"][0]["targets_changed"] == 0
    assert info["rounds"][1]["targets_changed"] > 0, "the test needs a first pass that moves"
    # Different targets, so different rows than after one round.
    for name, table in lhuc.lhuc_tables(two.model).items():
        assert not torch.equal(table.rows, lhuc.lhuc_tables(one.model)[name].rows), name


def test_confidence_filter_keeps_the_most_confident(corpus, trained):
    system = fresh(trained[0])
    all_targets, _ = make_targets(system, fsdd_only(corpus), CFG)
    top, report = make_targets(system, fsdd_only(corpus), CFG.replace(top_fraction=0.5))
    for spk, kept in top.items():
        usable = all_targets[spk]
        assert len(kept) == -(-len(usable) // 2)
        if kept and len(kept) < len(usable):
            dropped = [t.confidence for t in usable if t.utt.id not in {k.utt.id for k in kept}]
            assert min(t.confidence for t in kept) >= max(dropped)
        assert report.low_confidence[spk] == len(usable) - len(kept)


def test_online_and_held_out_protocols(corpus, trained):
    speakers = fsdd_only(corpus)
    adapt_set, score_set = split_protocol(speakers, "held_out", seed=3)
    for spk, utts in speakers.items():
        a, s = {u.id for u in adapt_set[spk]}, {u.id for u in score_set[spk]}
        assert not a & s and a | s == {u.id for u in utts} and len(a) == len(utts) // 2
    system = fresh(trained[0])
    si_hyps = decode_speakers(system, speakers)
    online = online_hypotheses(system, speakers, CFG.replace(epochs=1))
    for spk, utts in speakers.items():
        assert len(online[spk]) == len(utts)
        assert online[spk][0] == si_hyps[spk][0]  # the first utterance has no adapter yet


def _utt(uid: str, seconds: float) -> SpeakerUtterance:
    return SpeakerUtterance(uid, "s", torch.zeros(1), "A", seconds)


def test_take_seconds_never_exceeds_the_budget():
    # Before: utterances were added until the total reached the budget, so 10 s gave 12 s.
    utts = [_utt(str(i), 4.0) for i in range(4)]
    assert [u.id for u in take_seconds(utts, 10)] == ["0", "1"]
    assert [u.id for u in take_seconds(utts, 12)] == ["0", "1", "2"]
    assert [u.id for u in take_seconds(utts, 3)] == ["0"]  # one utterance even if longer
    assert take_seconds(utts, None) == utts


def test_max_adapt_seconds_under_held_out_adapts_on_the_adaptation_half_only(corpus, trained,
                                                                            monkeypatch):
    speakers = fsdd_only(corpus)
    adapt_set, score_set = split_protocol(speakers, "held_out", seed=3)
    seen = {}
    real_make_targets = pipeline.make_targets

    def spy(system, used, cfg, ids=None):
        seen.update({spk: [u.id for u in utts] for spk, utts in used.items()})
        return real_make_targets(system, used, cfg, ids)

    monkeypatch.setattr(pipeline, "make_targets", spy)
    first = {spk: utts[0].duration for spk, utts in adapt_set.items()}
    budget = min(first.values()) * 1.5  # room for one utterance of each speaker, not two
    info = adapt_speakers(fresh(trained[0]), adapt_set,
                          CFG.replace(max_adapt_seconds=budget, targets="oracle"))
    for spk, ids in seen.items():
        assert ids == [adapt_set[spk][0].id]  # the first of the adaptation half, nothing scored
        assert not set(ids) & {u.id for u in score_set[spk]}
        assert info["audio_seconds"][spk] == pytest.approx(first[spk], abs=0.01)
    assert set(seen) == set(adapt_set)
    # clean transcripts as targets are exactly right; corrupted ones are measured as wrong
    assert info["targets"]["quality"] == {"wer": 0.0, "cer": 0.0, "n_utts": len(adapt_set)}
    noisy = adapt_speakers(fresh(trained[0]), adapt_set,
                           CFG.replace(targets="oracle", target_noise=0.3))["targets"]["quality"]
    assert 0.1 < noisy["cer"] < 0.4 and noisy["wer"] > noisy["cer"]
    assert noisy["n_utts"] == sum(len(u) for u in adapt_set.values())


def test_recipe_writes_adapt_json(corpus, trained, tmp_path):
    from asr_lhuc.adapt.recipe import run
    from asr_lhuc.pretrained import save_pretrained

    si_model = copy.deepcopy(trained[0].model)
    lhuc.detach_lhuc(si_model)
    si_model.lhuc_config = None
    save_pretrained(tmp_path / "si.pt", si_model, trained[0].text_encoder, None)
    sat_model = trained[1].model
    save_pretrained(tmp_path / "sat.pt", sat_model, trained[1].text_encoder, None)
    hp = {"corpus": "tiny", "seed": 1, "si_checkpoint": str(tmp_path / "si.pt"),
          "sat_checkpoint": str(tmp_path / "sat.pt"), "lhuc_targets": TARGETS,
          "test_csv": str(corpus["root"] / "fsdd" / "test.csv"), "max_utts": 3,
          "protocol": "transductive", "mode": "batched", "compare_loop": True,
          "systems": ["si", "si_lhuc", "sat_si_mode", "sat_lhuc", "si_lhuc_oracle",
                      "sat_lhuc_oracle"],
          "adapt": {"lr": 0.05, "epochs": 2, "batch_size": 4},
          "output_folder": str(tmp_path / "exp"), "results_folder": str(tmp_path / "res")}
    payload = run(hp, None, "pytest")
    saved = json.loads((tmp_path / "res" / "adapt.json").read_text())
    assert saved["n_speakers"] == payload["n_speakers"] == 4
    # Each reported score is reproduced from the checkpoint and the adapter files it wrote.
    speakers = load_speakers(hp["test_csv"], max_utts=3)
    adapters = tmp_path / "exp" / "adapters"
    for name, checkpoint, folder in (
            ("si", "si.pt", None), ("sat_si_mode", "sat.pt", None),
            ("si_lhuc", "si.pt", "si_lhuc_batched"), ("sat_lhuc", "sat.pt", "sat_lhuc_batched"),
            ("si_lhuc_oracle", "si.pt", "si_lhuc_oracle_batched"),
            ("sat_lhuc_oracle", "sat.pt", "sat_lhuc_oracle_batched")):
        want = _rescored(tmp_path / checkpoint, speakers, folder and adapters / folder)
        assert (saved[name]["wer"], saved[name]["cer"]) == (want["wer"], want["cer"]), name
    assert saved["si_lhuc_oracle"]["cer"] < saved["si"]["cer"]  # true transcripts do help
    # The SAT oracle adapts towards the transcripts, sat_lhuc towards its own first pass.
    assert saved["target_quality"]["sat_lhuc_oracle"]["wer"] == 0.0
    assert saved["target_quality"]["sat_lhuc"]["wer"] > 0.0
    for key in ("speakers_improved", "loop_seconds", "batched_seconds", "checkpoint", "command"):
        assert key in saved
    assert saved["loop_seconds"] > 0 and saved["batched_seconds"] > 0
    assert (tmp_path / "res" / "speakers_si_lhuc.png").stat().st_size > 1000
    assert (tmp_path / "exp" / "adapters" / "si_lhuc_batched" / "speakers.json").is_file()


def _rescored(checkpoint, speakers, adapters=None) -> dict:
    """Scores of `checkpoint` on `speakers`, each speaker with its file in `adapters` if any."""
    from asr_lhuc.pretrained import load_pretrained

    model, encoder, _, _ = load_pretrained(checkpoint)
    if not model.has_lhuc:
        model.attach_speaker_lhuc(TARGETS, 0)
    rows = None
    if adapters is not None:
        index = json.loads((adapters / "speakers.json").read_text())
        rows = {spk: load_speaker_adapter(model, adapters, spk) for spk in index}
    # As the recipe decodes (cache_prefix: each utterance's frozen prefix run unpadded).
    system = AsrSystem(model, encoder, device="cpu", cache=True)
    return score(speakers, decode_speakers(system, speakers, rows))


def test_lexicon_snaps_targets_to_training_words(corpus, trained):
    from asr_lhuc.adapt.lexicon import Lexicon

    lexicon = Lexicon.from_manifest(corpus["root"] / "fsdd" / "train.csv")
    assert lexicon.correct("ZEROO TWWO QXJZKVWP") == "ZERO TWO QXJZKVWP"  # far words stay
    system = fresh(trained[0])
    system.lexicon, system.snap_outputs = lexicon, False
    targets, _ = make_targets(system, fsdd_only(corpus), CFG)
    raw = decode_speakers(system, fsdd_only(corpus))
    for spk, items in targets.items():
        for t in items:
            assert t.text == lexicon.correct(raw[spk][[u.id for u in corpus["test"][spk]]
                                                      .index(t.utt.id)])


def test_training_lm_for_beam_search_passes(corpus, tmp_path):
    from asr_lhuc.adapt.recipe import Models

    hp = {"lexicon_csv": str(corpus["root"] / "fsdd" / "train.csv"), "lm_order": 2,
          "beam_size": 1, "output_folder": str(tmp_path)}
    with pytest.raises(ValueError, match="needs beam_size > 1"):
        Models(hp)
    models = Models({**hp, "beam_size": 4})
    arpa = Path(models.lm_path).read_text()
    assert "\\2-grams:" in arpa and " ZERO" in arpa  # FSDD's training words


def test_external_hypotheses_become_targets(corpus, trained, tmp_path):
    from asr_lhuc.adapt.targets import make_targets

    speakers = fsdd_only(corpus)
    utts = [u for us in speakers.values() for u in us]
    hyps = {u.id: u.text.lower() + "!" for u in utts[1:]}  # normalised; the first one missing
    path = tmp_path / "hyps.json"
    path.write_text(json.dumps({"hypotheses": hyps}))
    with pytest.raises(ValueError, match="needs hypotheses_file"):
        CFG.replace(targets="external")
    targets, report = make_targets(fresh(trained[0]), speakers,
                                   CFG.replace(targets="external", hypotheses_file=str(path)))
    got = {t.utt.id: t.text for ts in targets.values() for t in ts}
    assert got == {u.id: u.text for u in utts[1:]}
    assert sum(report.empty.values()) == 1


def test_hypotheses_of_other_speakers_are_refused(corpus, trained, tmp_path):
    from asr_lhuc.adapt.targets import make_targets

    speakers = fsdd_only(corpus)
    first = sorted(speakers)[0]
    path = tmp_path / "hyps.json"  # every speaker but the first covered
    path.write_text(json.dumps({u.id: u.text for spk, us in speakers.items() if spk != first
                                for u in us}))
    with pytest.raises(ValueError, match=f"hypotheses_file {path} has no hypothesis for any "
                       f"utterance of 1 of the {len(speakers)} test speakers .*'{first}'"):
        make_targets(fresh(trained[0]), speakers,
                     CFG.replace(targets="external", hypotheses_file=str(path)))


def test_held_out_split_is_written_as_manifests(tmp_path):
    from decoding_helpers import manifest

    from asr_lhuc.adapt.protocols import write_split_manifests
    from asr_lhuc.data import read_manifest

    csv = manifest(tmp_path, "test", ["A", "B", "C", "D", "E", "F"], 0)  # 2 speakers x 3
    adapt_set, score_set = split_protocol(load_speakers(csv), "held_out", seed=3)
    paths = write_split_manifests(csv, adapt_set, score_set, tmp_path / "out")
    scored = {r["ID"] for r in read_manifest(paths["scored"])}
    adapted = {r["ID"] for r in read_manifest(paths["adapt"])}
    assert scored == {u.id for utts in score_set.values() for u in utts}
    assert adapted == {u.id for utts in adapt_set.values() for u in utts}
    assert not scored & adapted and len(scored | adapted) == 6


def test_a_fixed_number_of_steps_cycles_through_the_data_and_keeps_the_epoch_order():
    items = list(range(5))
    by_epochs = speaker_schedule(items, 2, 4, seed=1, spk_id="s")  # 3 batches a pass
    by_steps = speaker_schedule(items, 2, 99, seed=1, spk_id="s", n_steps=7)
    assert len(by_steps) == 7 and by_steps == by_epochs[:7]  # `epochs` is then ignored
    assert sorted(sum(by_steps[:3], [])) == items  # each pass visits every item once
    one = speaker_schedule([9], 4, 1, seed=1, spk_id="s", n_steps=5)
    assert one == [[9]] * 5  # little data: the same updates count, repeated data
    assert speaker_schedule([], 4, 1, seed=1, spk_id="s", n_steps=5) == []
    with pytest.raises(ValueError, match="steps_per_speaker"):
        AdaptConfig(steps_per_speaker=0)


def test_steps_per_speaker_gives_every_data_amount_the_same_updates(corpus, trained, monkeypatch):
    speakers = fsdd_only(corpus)
    plans = []
    real = batched_module.run_steps

    def spy(system, plan, rows, cfg, progress=None):
        plans.append(plan)
        return real(system, plan, rows, cfg, progress)

    monkeypatch.setattr(batched_module, "run_steps", spy)
    cfg = CFG.replace(targets="oracle", steps_per_speaker=5)
    short = min(u.duration for utts in speakers.values() for u in utts)
    for seconds in (short, None):  # one utterance per speaker, then all of them
        adapt_speakers(fresh(trained[0]), speakers, cfg.replace(max_adapt_seconds=seconds))
    for plan in plans:
        assert len(plan) == 5 and all(len(step) == len(speakers) for step in plan)
    assert plans[0][0] != plans[1][0]  # the amounts differ, the number of updates does not
