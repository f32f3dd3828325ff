"""Character units, greedy and beam-search CTC decoding (with the word n-gram through
flashlight-text), confidences, jiwer scoring."""

import math

import pytest
import torch

from asr_lhuc.decode import (
    DEFAULT_CHARACTERS,
    beam_texts,
    characters_of,
    confidence,
    greedy_texts,
    make_beam_searcher,
    make_text_encoder,
)
from asr_lhuc.scoring import wer_by_age_group, wer_by_speaker, wer_cer


def peaked_log_probs(encoder, frames: list[str], pad_to: int | None = None, peak=0.97):
    """Log-probs that put `peak` on each frame's character ('_' = blank)."""
    n = len(encoder)
    rows = []
    for ch in frames + ["_"] * ((pad_to or len(frames)) - len(frames)):
        index = 0 if ch == "_" else encoder.lab2ind[ch]
        row = torch.full((n,), (1 - peak) / (n - 1))
        row[index] = peak
        rows.append(row)
    return torch.stack(rows).log()


def test_text_encoder_has_the_blank_first_then_the_characters():
    enc = make_text_encoder()
    assert len(enc) == 1 + len(DEFAULT_CHARACTERS) and enc.lab2ind["<blank>"] == 0
    assert "".join(characters_of(enc)) == DEFAULT_CHARACTERS
    assert enc.decode_ndim(enc.encode_sequence_torch(list("IT'S A")).tolist()) == list("IT'S A")


def test_greedy_merges_repeats_drops_blanks_and_respects_lengths():
    enc = make_text_encoder()
    a = peaked_log_probs(enc, list("HH_E_LL_L_O") + [" ", "A"])
    b = peaked_log_probs(enc, list("NO_"), pad_to=13)
    b[3:, enc.lab2ind["X"]] = 5.0  # garbage in the padding must be ignored
    texts = greedy_texts(torch.stack([a, b]), torch.tensor([1.0, 3 / 13]), enc)
    assert texts == ["HELLO A", "NO"]


def test_beam_search_agrees_with_greedy_on_confident_frames():
    enc = make_text_encoder()
    lp = torch.stack([peaked_log_probs(enc, list("_C_A_TT_ S_A_T"))])
    texts, scores = beam_texts(lp, torch.ones(1), make_beam_searcher(enc, beam_size=4))
    assert texts == greedy_texts(lp, torch.ones(1), enc) == ["CAT SAT"]
    assert scores[0] < 0


def test_confidence_is_high_for_peaked_and_low_for_flat_posteriors():
    enc = make_text_encoder()
    peaked = peaked_log_probs(enc, list("AB_C"), peak=0.9)
    flat = torch.full_like(peaked, 1 / len(enc)).log()
    flat_then_peaked = torch.cat([peaked[:2], flat[:2]])
    conf = confidence(torch.stack([peaked, flat, flat_then_peaked]),
                      torch.tensor([1.0, 1.0, 0.5]))
    assert conf[0] == pytest.approx(0.9, abs=1e-5)
    assert conf[1] == pytest.approx(1 / len(enc), abs=1e-5)
    assert conf[2] == pytest.approx(0.9, abs=1e-5)  # the padded half does not count


def test_wer_cer_normalise_both_sides_and_count_errors():
    assert wer_cer(["Hello, world!"], ["HELLO WORLD"])["wer"] == 0.0
    scores = wer_cer(["A B C D", "E F"], ["A X C", "E F"])
    assert scores["wer"] == pytest.approx(2 / 6) and scores["n_utts"] == 2
    assert wer_cer(["AB"], ["AC"])["cer"] == pytest.approx(0.5)
    with pytest.raises(ValueError, match="2 references but 1"):
        wer_cer(["A", "B"], ["A"])


def test_wer_by_age_group_and_speaker():
    refs, hyps = ["A B", "C D", "E F"], ["A B", "C X", "Y Z"]
    groups = wer_by_age_group(refs, hyps, ["9", "30", ""])
    assert set(groups) == {"child", "adult"}
    assert groups["child"]["wer"] == 0.0 and groups["adult"]["wer"] == 0.5
    per_spk = wer_by_speaker(refs, hyps, ["s1", "s1", "s2"])
    assert per_spk["s1"]["wer"] == 0.25 and per_spk["s2"]["wer"] == 1.0


def test_arpa_lm_from_transcripts_is_a_normalised_back_off_model(tmp_path):
    from asr_lhuc.lm import BOS, UNK, _lower_prob, count_ngrams, estimate, write_arpa

    sentences = ["the cat sat", "the cat ran", "a dog sat", "The dog, the cat."]
    probs, backoffs = estimate(count_ngrams(sentences, 3))
    vocab = [w for (w,) in probs[0] if w != BOS]
    assert UNK in vocab and "CAT" in vocab

    def prob(history, word):  # back-off model P(word | history)
        gram = (*history, word)
        if gram in probs[len(gram) - 1]:
            return probs[len(gram) - 1][gram]
        bow = backoffs[len(history) - 1].get(history, 1.0) if history else 1.0
        return bow * prob(history[1:], word) if history else _lower_prob(probs, gram)

    for history in [(), ("THE",), (BOS, "THE"), ("THE", "CAT"), ("DOG",), ("ZEBRA",)]:
        assert sum(prob(history, w) for w in vocab) == pytest.approx(1.0, abs=1e-9)
    assert prob(("THE",), "CAT") > prob(("THE",), "DOG") > prob(("THE",), "SAT")
    text = write_arpa(tmp_path / "lm.arpa", sentences).read_text()
    assert text.startswith("\\data\\\nngram 1=") and text.rstrip().endswith("\\end\\")
    assert "\tTHE CAT\t" in text  # a bigram with its back-off weight


def cap_or_cat(enc):
    """"CAT" spoken, but the last letter sounds more like P (0.6) than T (0.4)."""
    lp = peaked_log_probs(enc, list("_C_A_T_"))
    lp[5] = torch.full_like(lp[5], 1e-4).log()
    lp[5, enc.lab2ind["T"]], lp[5, enc.lab2ind["P"]] = math.log(0.4), math.log(0.6)
    return lp.unsqueeze(0)


def test_beam_search_with_the_transcript_lm_prefers_words_it_has_seen(tmp_path):
    from asr_lhuc.lm import write_arpa

    enc = make_text_encoder()
    lp = cap_or_cat(enc)
    arpa = write_arpa(tmp_path / "lm.arpa", ["the cat", "a cat", "cat"] * 5, order=2)
    with_lm = make_beam_searcher(enc, beam_size=8, kenlm_model_path=str(arpa), alpha=1.0)
    assert greedy_texts(lp, torch.ones(1), enc) == ["CAP"]
    assert beam_texts(lp, torch.ones(1), make_beam_searcher(enc, beam_size=8))[0] == ["CAP"]
    assert beam_texts(lp, torch.ones(1), with_lm)[0] == ["CAT"]


def test_lm_beam_score_is_the_best_path_plus_alpha_ln_p_plus_beta_per_word(tmp_path):
    from asr_lhuc.lm import write_arpa
    from asr_lhuc.lm_decoder import WordNgram

    enc = make_text_encoder()
    frames = list("_A_ C_A_T_")
    lp = peaked_log_probs(enc, frames, peak=0.999).unsqueeze(0)
    arpa = write_arpa(tmp_path / "lm.arpa", ["the cat", "a cat", "cat", "a dog"] * 3, order=3)
    lm = WordNgram(arpa)
    # log10 P(A | <s>) + log10 P(CAT | <s> A) + log10 P(</s> | A CAT), read from the ARPA file
    assert lm.sentence_log10("A CAT") == pytest.approx(arpa_log10(arpa, "<s> A", "<s> A CAT",
                                                                  "A CAT </s>"), abs=1e-5)
    acoustic = float(lp[0].max(dim=1).values.sum())  # the one likely alignment
    for alpha, beta in [(0.5, 1.0), (2.0, -1.0)]:
        searcher = make_beam_searcher(enc, 10, str(arpa), alpha=alpha, beta=beta)
        texts, scores = beam_texts(lp, torch.ones(1), searcher)
        assert texts == ["A CAT"]
        expected = acoustic + alpha * math.log(10) * lm.sentence_log10("A CAT") + 2 * beta
        assert scores[0] == pytest.approx(expected, abs=1e-3)


def arpa_log10(path, *grams: str) -> float:
    """The sum of the listed n-grams' log10 probabilities, as written in the ARPA file."""
    table = {}
    for line in path.read_text().splitlines():
        fields = line.split("\t")
        if len(fields) >= 2:
            table[fields[1]] = float(fields[0])
    return sum(table[g] for g in grams)


def test_lm_nbest_is_distinct_texts_best_first_and_respects_lengths(tmp_path):
    from asr_lhuc.lm import write_arpa

    enc = make_text_encoder()
    arpa = write_arpa(tmp_path / "lm.arpa", ["the cat", "a cat", "cat sat"] * 3, order=2)
    a = peaked_log_probs(enc, list("_C_A_TT_ S_A_T_"), peak=0.8)
    b = peaked_log_probs(enc, list("_A_ C_A_T_"), pad_to=15)
    b[10:, enc.lab2ind["X"]] = 5.0  # garbage in the padding must be ignored
    searcher = make_beam_searcher(enc, 10, str(arpa), topk=3)
    nbest = searcher(torch.stack([a, b]), torch.tensor([1.0, 10 / 15]))
    assert [h.text for h in nbest[0]][0] == "CAT SAT" and nbest[1][0].text == "A CAT"
    for hyps in nbest:
        texts, scores = [h.text for h in hyps], [h.score for h in hyps]
        assert 1 < len(hyps) <= 3 and len(set(texts)) == len(texts)
        assert scores == sorted(scores, reverse=True)
        assert not any("X" in t for t in texts)


def test_lm_file_errors_name_the_file(tmp_path):
    from asr_lhuc.lm_decoder import WordNgram

    with pytest.raises(FileNotFoundError, match="missing.arpa"):
        WordNgram(tmp_path / "missing.arpa")
    bad = tmp_path / "bad.arpa"
    bad.write_text("not an lm\n")
    with pytest.raises(ValueError, match="bad.arpa"):
        WordNgram(bad)
