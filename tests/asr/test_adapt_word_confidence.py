"""Frame targets aligned to the first-pass text, and word confidence from the CTC posteriors
(issue 15, lever 4): low-confidence words' frames are left out of the frame loss."""

import pytest
import torch
from synthetic_adapt_helpers import system_from, tiny_test_speakers

from asr_lhuc.adapt import AdaptConfig, adapt_speakers
from asr_lhuc.adapt.loss import utterance_loss
from asr_lhuc.adapt.system import align, collapse
from asr_lhuc.adapt.targets import IGNORED, confident_word_frames, make_targets
from lhuc import lhuc_tables

BLANK, SPACE = 0, 1


@pytest.fixture(scope="module")
def speakers(tmp_path_factory):
    return tiny_test_speakers(tmp_path_factory.mktemp("word_conf"))


def test_low_confidence_words_lose_their_frames_and_the_rest_stays():
    #          blank A    A    blank sp   B    blank C    blank
    labels = torch.tensor([0, 2, 2, 0, 1, 3, 0, 4, 0])
    post = torch.tensor([.9, .9, .8, .9, .9, .3, .9, .2, .9])
    # words: "AA" frames 1-2 (mean .85) and "BC" frames 5 and 7 (mean .25, blank 6 inside it)
    kept = confident_word_frames(labels, post, BLANK, SPACE, threshold=0.5)
    assert kept.tolist() == [0, 2, 2, 0, 1, IGNORED, IGNORED, IGNORED, 0]
    assert confident_word_frames(labels, post, BLANK, SPACE, 0.2).tolist() == labels.tolist()
    assert (confident_word_frames(labels, post, BLANK, SPACE, 0.9) == IGNORED).sum() == 5
    assert labels.tolist()[5] == 3  # the input is not changed in place


def test_alignment_of_the_greedy_text_is_the_best_path():
    torch.manual_seed(0)
    log_probs = (3 * torch.randn(40, 6)).log_softmax(-1)
    best = log_probs.argmax(-1)
    target = torch.tensor(collapse(best.tolist(), BLANK))
    labels, post = align(log_probs, target, BLANK)
    assert labels.tolist() == best.tolist()
    assert torch.allclose(post, log_probs.max(-1).values.exp())
    assert align(log_probs, torch.tensor([2] * 30), BLANK) is None  # 30 + 29 repeats > 40 frames
    assert align(log_probs, torch.zeros(0, dtype=torch.long), BLANK) is None


def test_config_asks_for_aligned_frame_labels():
    with pytest.raises(ValueError, match="frame_labels: aligned"):
        AdaptConfig(loss="frame_ce", word_confidence=0.5)
    with pytest.raises(ValueError, match="frame_labels: aligned"):
        AdaptConfig(loss="frame_ce", targets="oracle")
    AdaptConfig(loss="frame_ce", frame_labels="aligned", targets="oracle")  # transcripts align
    with pytest.raises(ValueError, match="word_confidence must lie"):
        AdaptConfig(loss="frame_ce", frame_labels="aligned", word_confidence=1.5)


def test_targets_keep_confident_words_and_drop_utterances_with_none(speakers):
    system = system_from("si.pt")
    cfg = AdaptConfig(loss="frame_ce", frame_labels="aligned", word_confidence=0.9)
    targets, report = make_targets(system, speakers, cfg)
    everything, _ = make_targets(system, speakers, cfg.replace(word_confidence=0.0))
    n_ignored = n_frames = 0
    for spk, kept in targets.items():
        full = {t.utt.id: t for t in everything[spk]}
        for t in kept:
            ref = full[t.utt.id].frames
            same = t.frames != IGNORED
            assert torch.equal(t.frames[same], ref[same])  # only whole words are left out
            n_ignored, n_frames = n_ignored + int((~same).sum()), n_frames + len(ref)
            # the aligned labels spell the target text
            spelled = collapse([x for x in ref.tolist()], system.blank)
            assert spelled == t.ids.tolist()
        assert report.kept[spk] + report.low_confidence[spk] + report.empty[spk] \
            == len(speakers[spk])
    assert 0 < n_ignored < n_frames
    none, report = make_targets(system, speakers, cfg.replace(word_confidence=1.0))
    assert sum(map(len, none.values())) == 0
    assert report.unusable_speakers == sorted(speakers)


def test_frame_loss_skips_left_out_frames_and_adapts(speakers):
    system = system_from("si.pt")
    spk = sorted(speakers)[0]
    cfg = AdaptConfig(loss="frame_ce", frame_labels="aligned", word_confidence=0.9, lr=0.05,
                      epochs=2, batch_size=4)
    targets, _ = make_targets(system, {spk: speakers[spk]}, cfg)
    t = targets[spk][0]
    rows = torch.full((1,), -1)
    loss = utterance_loss(system, [t], rows, kind="frame_ce")
    log_probs, frames = system.log_probs([t.utt], rows)
    keep = t.frames[: int(frames[0])] != IGNORED
    by_hand = -log_probs[0, : int(frames[0])][keep].gather(
        1, t.frames[: int(frames[0])][keep, None]).mean()
    assert float(loss[0].detach()) == pytest.approx(float(by_hand.detach()), rel=1e-5)
    info = adapt_speakers(system, {spk: speakers[spk]}, cfg)
    assert info["targets"]["kept"][spk] == len(targets[spk])
    row = info["rows"][spk]
    tables = lhuc_tables(system.model).values()
    assert any(float(table.rows[row].abs().max()) > 0 for table in tables)  # the row learned


def test_recipe_runs_word_confidence_with_its_oracle(tmp_path):
    """The recipe's si_lhuc (word confidence) and its oracle (aligned transcripts, every word)."""
    from synthetic_adapt_helpers import PRETRAINED, TARGETS

    from asr_lhuc.adapt.recipe import run

    tiny_test_speakers(tmp_path / "data")
    hp = {"corpus": "tiny", "seed": 1, "si_checkpoint": str(PRETRAINED / "si.pt"),
          "lhuc_targets": TARGETS, "test_csv": str(tmp_path / "data" / "test.csv"),
          "protocol": "transductive", "mode": "batched", "compare_loop": False,
          "systems": ["si", "si_lhuc", "si_lhuc_oracle"], "save_adapters": False,
          "adapt": {"lr": 0.05, "epochs": 2, "batch_size": 4, "loss": "frame_ce",
                    "frame_labels": "aligned", "word_confidence": 0.9},
          "output_folder": str(tmp_path / "exp"), "results_folder": str(tmp_path / "res")}
    payload = run(hp, None, "pytest")
    quality = payload["target_quality"]
    assert quality["si_lhuc_oracle"]["wer"] == 0.0 and quality["si_lhuc"]["wer"] > 0.0
    assert payload["si_lhuc_oracle"]["cer"] < payload["si"]["cer"]
