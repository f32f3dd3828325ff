"""Second-pass rescoring with Moonshine's decoder: its tokenizer, its scores (teacher forcing
agrees with its own beam search), the exact CTC likelihood, and the weight tuning."""

import itertools
import json
import math
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from decoding_helpers import manifest, tiny_checkpoint

from asr_lhuc.cached_frontend import audio_digest
from asr_lhuc.data import normalize_text, spell_digits
from asr_lhuc.decode import make_text_encoder
from asr_lhuc.scoring import wer_cer
from recipes.speechocean762.ASR.CTC.local.rescore import (
    capitalised_words,
    collect,
    ctc_log_likelihood,
    main,
    pick,
    tune,
    written_forms,
)

pytest.importorskip("onnxruntime", reason="onnxruntime absent: the project's `moonshine` extra")
pytest.importorskip("moonshine_cpp", reason="Moonshine weights absent: the `moonshine` extra")
from recipes.speechocean762.ASR.CTC.local.moonshine import MoonshineFrontend  # noqa: E402
from recipes.speechocean762.ASR.CTC.local.moonshine.decoder import MoonshineDecoder  # noqa: E402
from recipes.speechocean762.ASR.CTC.local.moonshine.tokenizer import MoonshineTokenizer  # noqa: E402

SO762 = Path(__file__).resolve().parents[3] / "shared" / "data" / "speechocean762"
needs_so762 = pytest.mark.skipif(not (SO762 / "test" / "text").is_file(),
                                 reason=f"speechocean762 not found at {SO762}")


def test_tokenizer_round_trips_with_word_pieces_and_byte_fallback():
    tok = MoonshineTokenizer()
    assert len(tok.pieces) == 32000
    for text in ("Does he know the biscuit?", "Look at Bob's t-shirt", "2648.", "naïve ǂ café"):
        assert tok.decode(tok.encode(text)) == text
    assert len(tok.encode("the")) == 1  # a whole-word piece, not three letters
    assert tok.pieces[tok.encode("the")[0]] == "\u2581the".encode()
    assert len(tok.encode("ǂ")) > 1  # not in the vocabulary: UTF-8 bytes
    assert tok.encode("") == [tok.ids["\u2581"]] and tok.decode([]) == ""


@needs_so762
def test_decoder_scores_agree_with_its_beam_search_on_real_speech():
    wav, _ = sf.read(SO762 / "WAVE" / "SPEAKER0003" / "000030080.flac", dtype="float32")
    frames = MoonshineFrontend("base").encode_one(torch.from_numpy(wav)).numpy()
    decoder, tok = MoonshineDecoder(), MoonshineTokenizer()
    beams = decoder.beam_search(frames, beam_size=3)
    assert len(beams) == 3 and [s for _, s in beams] == sorted((s for _, s in beams), reverse=True)
    assert normalize_text(spell_digits(tok.decode(beams[0][0]))) == "DOES HE KNOW THE BISCUIT"
    # The incremental (cached) beam search and one teacher-forced pass give the same numbers.
    forced = decoder.sequence_log_probs(frames, [tokens for tokens, _ in beams])
    assert forced == pytest.approx([s for _, s in beams], abs=2e-3)
    right, wrong = decoder.sequence_log_probs(frames, [tok.encode("Does he know the biscuit?"),
                                                       tok.encode("Dogs eat green apples?")])
    assert right > wrong + 10  # the audio decides, not the sentence's length


def test_ctc_log_likelihood_sums_over_all_alignments():
    encoder = make_text_encoder("AB")
    torch.manual_seed(0)
    log_probs = torch.randn(4, 3).log_softmax(-1)

    def brute_force(text):
        total = 0.0
        for path in itertools.product(range(3), repeat=4):
            merged = [p for i, p in enumerate(path) if i == 0 or p != path[i - 1]]
            if "".join(encoder.ind2lab[p] for p in merged if p) == text:
                total += math.exp(sum(float(log_probs[t, p]) for t, p in enumerate(path)))
        return math.log(total)

    for text in ("AB", "A", "BB", ""):
        assert ctc_log_likelihood(log_probs, text, encoder) == pytest.approx(brute_force(text),
                                                                            abs=1e-4)
    assert ctc_log_likelihood(log_probs, "ABABA", encoder) == -math.inf  # 5 labels, 4 frames


def test_written_forms_follow_moonshine_spelling():
    names = capitalised_words(["Kate loves China.", "Does he know Bob's t-shirt?", "It is I"])
    assert names == {"CHINA": "China", "BOB'S": "Bob's", "I": "I"}
    assert written_forms("KATE LOVES CHINA", names) == ["Kate loves China", "Kate loves China."]
    forms = written_forms("TWO SIX FOUR EIGHT", names)
    assert "2648" in forms and "Two, six, four, eight." in forms
    assert written_forms("", names) == [""]


def utterance(ref, candidates):
    return {"ref": ref, "age": "30", "ctc_1best": candidates[0][0], "moonshine_1best": "",
            "candidates": [{"text": t, "ctc": c, "moonshine": m, "lm": 0.0, "words": len(t.split())}
                           for t, c, m in candidates]}


def test_tuning_weights_moonshine_only_where_it_helps():
    # CTC prefers the wrong text by 1 nat; Moonshine prefers the right one by 3 nats.
    helpful = {f"u{i}": utterance("A CAT", [("A CAP", -1.0, -5.0), ("A CAT", -2.0, -2.0)])
               for i in range(3)}
    weights, grid = tune(helpful)
    assert weights["moonshine"] > 1 / 3 and set(pick(helpful, weights).values()) == {"A CAT"}
    assert len(grid) > 10 and min(r["wer"] for r in grid) == 0.0
    # Where Moonshine is misleading, the chosen weight leaves the CTC choice alone.
    misleading = {f"u{i}": utterance("A CAT", [("A CAT", -1.0, -5.0), ("A CAP", -2.0, -2.0)])
                  for i in range(3)}
    weights, _ = tune(misleading)
    assert weights["moonshine"] < 1 / 3 and set(pick(misleading, weights).values()) == {"A CAT"}


def test_candidates_are_saved_and_a_rerun_resumes(tmp_path):
    calls = []

    class Counting:
        def candidates(self, item, wav):
            calls.append(item["id"])
            return utterance(item["ref"], [(item["ref"], -1.0, -1.0)])

    csv = manifest(tmp_path, "test", ["A DOG", "THE CAT", "A CAT"], 2)
    items = [{"id": f"test{i}", "ref": "A", "age": ""} for i in range(3)]
    path = tmp_path / "candidates.json"
    first = collect(Counting(), items[:2], csv, path)
    assert json.loads(path.read_text()).keys() == first.keys() == {"test0", "test1"}
    again = collect(Counting(), items, csv, path)
    assert calls == ["test0", "test1", "test2"] and len(again) == 3  # only the new one scored
    subset = collect(Counting(), items[1:2], csv, path)  # a subset is read from the same file
    assert list(subset) == ["test1"] and len(calls) == 3


def test_cli_rescores_the_ctc_nbest_and_keeps_hypotheses(tmp_path):
    ckpt = tiny_checkpoint(tmp_path / "m.pt")
    train = manifest(tmp_path, "train", ["A CAT", "THE DOG"], 0)
    valid = manifest(tmp_path, "valid", ["A CAT", "THE DOG"], 1)
    test = manifest(tmp_path, "test", ["A DOG", "THE CAT", "A CAT"], 2)
    out, work = tmp_path / "rescored.json", tmp_path / "work"
    main(["--checkpoints", str(ckpt), "--train_csv", train, "--valid_csv", valid,
          "--test_csv", test, "--out", str(out), "--work_dir", str(work), "--lm_order", "2",
          "--nbest", "3", "--beam_size", "3", "--moonshine_beam", "2",
          "--cache_dir", str(tmp_path / "cache")])
    res = json.loads(out.read_text())
    assert sorted(res["hypotheses"]) == ["test0", "test1", "test2"]
    assert res["test"]["rescored"]["n_utts"] == 3 and res["valid"]["ctc_1best"]["n_utts"] == 2
    assert set(res["chosen"]) == {"moonshine", "lm", "words"}
    # The reported WER is that of the hypotheses it reports, scored independently.
    refs = {"test0": "A DOG", "test1": "THE CAT", "test2": "A CAT"}
    assert res["wer"] == wer_cer(list(refs.values()),
                                 [res["hypotheses"][i] for i in refs])["wer"]
    assert res["checkpoint"] == str(ckpt) and res["params"] > 1000 and res["n_speakers"] == 2
    assert res["wer"] == res["test"]["rescored"]["wer"] and res["mode"] == "si"
    saved = json.loads((work / "candidates_test.json").read_text())
    assert all(c["ctc"] <= 0 and c["moonshine"] <= 0 and c["lm"] < 0 for u in saved.values()
               for c in u["candidates"])  # lm: the word 2-gram's natural-log probability
    assert list((tmp_path / "cache" / "moonshine-base").glob("test0.*.pt"))  # <id>.<audio hash>
    assert res["command"].startswith(
        "python -m recipes.speechocean762.ASR.CTC.local.rescore")


def test_saved_speaker_adapters_change_only_their_speakers_posteriors(tmp_path):
    import lhuc
    from asr_lhuc.adapt.adapters import save_speaker_adapters
    from asr_lhuc.pretrained import load_pretrained
    from recipes.speechocean762.ASR.CTC.local.first_pass import utterance_log_probs
    from recipes.speechocean762.ASR.CTC.local.rescore import load_adapters

    ckpt = tiny_checkpoint(tmp_path / "m.pt")
    test = manifest(tmp_path, "test", ["A DOG", "THE CAT", "A CAT", "A DOG"], 2)  # test0/test1
    adapted = load_pretrained(ckpt)[0]
    adapted.attach_speaker_lhuc(["DNN.block_0.act"], 1, reparam="exp")
    with torch.no_grad():
        next(iter(lhuc.lhuc_tables(adapted).values())).rows[0].fill_(0.7)  # not amplitude 1
    save_speaker_adapters(adapted, {"test0": 0, "test1": -1}, tmp_path / "adapters")

    fresh = load_pretrained(ckpt)[0]
    with pytest.raises(ValueError, match="lhuc_targets"):
        load_adapters(fresh, str(tmp_path / "adapters"), None)
    rows = load_adapters(fresh, str(tmp_path / "adapters"), ["DNN.block_0.act"])
    assert list(rows) == ["test0"]  # test1 was not adapted: SI row
    si = {it["id"]: it["log_probs"] for it in utterance_log_probs(load_pretrained(ckpt)[0], test)}
    with_rows = {it["id"]: it["log_probs"]
                 for it in utterance_log_probs(fresh, test, speaker_rows=rows)}
    speaker = {"test0": "test0", "test2": "test0", "test1": "test1", "test3": "test1"}
    for utt, log_probs in with_rows.items():
        same = torch.allclose(log_probs, si[utt], atol=1e-6)
        assert same == (speaker[utt] == "test1"), utt


def real_or_synthetic_speech(seconds: float, seed: int) -> torch.Tensor:
    files = sorted((SO762 / "WAVE").glob("*/*.flac"))
    if files:
        return torch.from_numpy(sf.read(files[seed], dtype="float32")[0])[: int(16000 * seconds)]
    t = torch.arange(int(16000 * seconds)) / 16000
    return 0.1 * torch.sin(2 * np.pi * (120 + 40 * seed) * t) * (1 + torch.sin(2 * np.pi * 3 * t))


def test_moonshine_frames_are_41_hz_cached_and_speed_keyed(tmp_path):
    frontend = MoonshineFrontend("base", str(tmp_path))
    wav = real_or_synthetic_speech(2.0, 0)
    feats = frontend.cached("u1", wav)
    # Conv strides 64, 3, 2 (384 samples, ~41.7 Hz): 2 s = 32000 samples -> 82 frames of 416.
    assert feats.shape == (82, 416) and torch.isfinite(feats).all()
    entry = tmp_path / "moonshine-base" / f"u1.{audio_digest(wav)}.pt"  # keyed by the audio too
    stored = torch.load(entry, weights_only=True)
    assert stored.dtype == torch.float16
    assert torch.allclose(stored.float(), frontend.encode_one(wav), atol=2e-2)
    fast = frontend.cached("u1", wav, speed=110)
    assert entry.with_name(f"u1@sp110.{audio_digest(wav)}.pt").is_file() and fast.shape[0] < 82
    other = frontend.encode_one(real_or_synthetic_speech(2.0, 1))
    assert float((feats - other).abs().mean()) > 0.1  # the audio matters
    with pytest.raises(FileNotFoundError, match="Moonshine encoder"):
        MoonshineFrontend(str(tmp_path / "nope.onnx"))
