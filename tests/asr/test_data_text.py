"""Text normalisation and the seeded split helpers of asr_lhuc.data."""

from asr_lhuc.data import CHILD_MAX_AGE, Utterance, age_group, normalize_text
from asr_lhuc.data.splits import pick_speakers, split_adapt_eval, split_by_utterance


def test_normalize_text_cases():
    assert normalize_text("  Hello, world!  It's  well-known. ") == "HELLO WORLD IT'S WELL KNOWN"
    assert normalize_text("\"Quoted\" 'single' words") == "QUOTED SINGLE WORDS"
    assert normalize_text("don\u2019t\tstop\n") == "DON'T STOP"
    assert normalize_text("ZERO THREE FIVE ONE") == "ZERO THREE FIVE ONE"
    assert normalize_text("snake_case  x") == "SNAKE CASE X"
    assert normalize_text("?!...") == ""


def test_normalize_text_is_idempotent():
    for text in ["a, b; c!", "Rock'n'roll -- yes", "  \u00e9t\u00e9 2024 "]:
        once = normalize_text(text)
        assert normalize_text(once) == once


def test_age_group():
    assert age_group("6") == "child"
    assert age_group(CHILD_MAX_AGE) == "child"
    assert age_group(CHILD_MAX_AGE + 1) == "adult"
    assert age_group("") == ""
    assert age_group(None) == ""


def test_pick_speakers_is_seeded_and_stratified():
    speakers = [f"s{i:02d}" for i in range(20)]
    children = set(speakers[:5])

    def group(spk):
        return "child" if spk in children else "adult"

    picked = pick_speakers(speakers, 4, seed=3, group_of=group)
    assert picked == pick_speakers(speakers, 4, seed=3, group_of=group)
    assert len(picked) == 4 and len(set(picked)) == 4
    assert 1 <= sum(p in children for p in picked) <= 2  # 5/20 of 4 picks, at least one
    assert any(pick_speakers(speakers, 4, seed=s) != picked for s in range(4, 10))


def _utts(n_speakers, n_utts):
    return [Utterance(ID=f"s{s}_{u}", wav="", spk_id=f"s{s}", wrd="A")
            for s in range(n_speakers) for u in range(n_utts)]


def test_adapt_eval_and_valid_splits_partition_each_speaker():
    utts = _utts(3, 8)
    adapt, evaluate = split_adapt_eval(utts, n_adapt=3, seed=0)
    assert len(adapt) == 9 and len(evaluate) == 15
    assert {u.ID for u in adapt}.isdisjoint(u.ID for u in evaluate)
    adapt, evaluate = split_adapt_eval(_utts(2, 2), n_adapt=5, seed=0)
    assert len(adapt) == 2 and len(evaluate) == 2  # every speaker keeps one eval utterance
    train, valid = split_by_utterance(utts, fraction=0.25, seed=0)
    assert len(valid) == 6 and len(train) == 18
    assert {u.spk_id for u in valid} == {"s0", "s1", "s2"}
