"""Second pass: rescore the CTC n-best, joined by Moonshine's n-best, with Moonshine's decoder.

    python -m recipes.speechocean762.ASR.CTC.local.rescore \\
        --checkpoints recipes/speechocean762/ASR/CTC/pretrained/whisper_si_continued.pt \\
                      recipes/speechocean762/ASR/CTC/pretrained/whisper_sat_lhuc_continued.pt \\
        --train_csv exp/data/speechocean762/train.csv \\
        --valid_csv exp/data/speechocean762/valid.csv \\
        --test_csv exp/data/speechocean762/test.csv \\
        --feature_cache_dir exp/features/speechocean762 \\
        --out results/asr/speechocean762/decoding/rescore_moonshine.json

Two recognisers that err differently: the CTC models (one or an ensemble, `local/ensemble.py`;
beam search + the training-transcript word n-gram) and Moonshine-base (an attention
encoder-decoder trained on ~200k h of English). Each utterance's candidates are the CTC
n-best and Moonshine's beam n-best, as normalised text. Each candidate gets four scores:

- `ctc`: its exact CTC log-likelihood under the (averaged) CTC posteriors (all alignments);
- `moonshine`: Moonshine's log-probability of it, the best over written forms of it (its own
  spelling where Moonshine proposed it, else sentence case with and without a full stop, and
  digit strings for spoken digits), since the decoder scores written text;
- `lm`: the word n-gram's log-probability (natural log), and `words`: its length.

The chosen candidate maximises ``ctc + a * moonshine + b * lm + c * words``; (a, b, c) are
chosen on the validation speakers by WER, then the test set is decoded once. Every score and
candidate is kept in `<work_dir>/candidates_<split>.json` (resumable), so changing the grid
does not rerun either recogniser. Speaker-independent throughout: no speaker's data is used.
"""

import argparse
import itertools
import json
import logging
import math
import sys
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torch.nn.functional as F
from tqdm import tqdm

from asr_lhuc.adapt.adapters import INDEX, load_speaker_adapter
from asr_lhuc.data import normalize_text, read_manifest, spell_digits
from asr_lhuc.data.text import DIGITS
from asr_lhuc.decode import characters_of, make_beam_searcher
from asr_lhuc.device import describe_device, pick_device
from asr_lhuc.lm import write_transcript_lm
from asr_lhuc.lm_decoder import WordNgram
from asr_lhuc.pretrained import load_pretrained, read_checkpoint

from .cli import (
    add_decoding_args,
    add_feature_cache_arg,
    feature_cache_dir,
    set_threads,
    write_results,
)
from .ensemble import combine
from .first_pass import score, utterance_log_probs

logger = logging.getLogger(__name__)
SAVE_EVERY = 25  # utterances between writes of the candidate file
GRID = {"moonshine": [0.0, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0],
        "lm": [0.0, 0.25, 0.5, 1.0],
        "words": [-2.0, -1.0, 0.0, 1.0, 2.0, 3.0]}


def ctc_log_likelihood(log_probs: torch.Tensor, text: str, encoder) -> float:
    """log P(text | audio) under CTC (sum over alignments); -inf where it cannot align."""
    if not text:
        return float(log_probs[:, 0].sum())  # all blanks
    target = torch.tensor([encoder.lab2ind[c] for c in text if c in encoder.lab2ind])
    loss = F.ctc_loss(log_probs.float()[:, None], target[None], [log_probs.shape[0]],
                      [len(target)], blank=0, reduction="sum", zero_infinity=False)
    return -float(loss)


def written_forms(text: str, names: dict[str, str]) -> list[str]:
    """Ways Moonshine might write the normalised `text` (it scores written, cased text);
    `names`: the spelling of words it writes capitalised (`capitalised_words`)."""
    if not text:
        return [""]
    words = [names.get(w, w.lower()) for w in text.split()]
    words[0] = words[0][:1].upper() + words[0][1:]
    sentence = " ".join(words)
    forms = [sentence, sentence + "."]
    if all(w in DIGITS for w in text.split()):
        digits = "".join(str(DIGITS.index(w)) for w in text.split())
        forms += [digits, digits + ".", ", ".join(words) + "."]
    return forms


def capitalised_words(raw_texts: list[str]) -> dict[str, str]:
    """{normalised word: Moonshine's spelling} of words it wrote capitalised after the first
    word of a hypothesis (names, "I")."""
    names = {}
    for raw in raw_texts:
        for word in raw.split()[1:]:
            word = word.strip(".,!?;:\"")
            if word[:1].isupper() and normalize_text(word) and " " not in normalize_text(word):
                names.setdefault(normalize_text(word), word)
    return names


class Scorers:
    """The three scorers of a candidate: the CTC posteriors, Moonshine, the word n-gram."""

    def __init__(self, encoder, lm_path: str | None, nbest: int, beam_size: int,
                 moonshine_beam: int, alpha: float, beta: float, cache_dir: str | None):
        from .moonshine import MoonshineFrontend
        from .moonshine.decoder import MoonshineDecoder
        from .moonshine.tokenizer import MoonshineTokenizer

        if any(len(unit) != 1 for unit in characters_of(encoder)):
            raise ValueError("rescoring needs character CTC models (their units here are "
                             "subword pieces)")
        self.encoder = encoder
        self.searcher = make_beam_searcher(encoder, beam_size, lm_path, alpha, beta, topk=nbest)
        self.frontend = MoonshineFrontend("base", cache_dir)
        self.decoder, self.tokenizer = MoonshineDecoder("base"), MoonshineTokenizer("base")
        self.moonshine_beam = moonshine_beam
        self.lm = WordNgram(lm_path) if lm_path else None

    def candidates(self, item: dict, wav_path: str) -> dict:
        """Every candidate of one utterance with its scores, by normalised text."""
        hyps = self.searcher(item["log_probs"][None].float(), torch.ones(1))[0]
        ctc_nbest = [normalize_text(h.text) for h in hyps]
        wav = torch.from_numpy(sf.read(wav_path, dtype="float32")[0])
        frames = self.frontend.cached(item["id"], wav).numpy()
        beams = self.decoder.beam_search(frames, self.moonshine_beam)
        raw = [self.tokenizer.decode(tokens) for tokens, _ in beams]
        moonshine_nbest = [normalize_text(spell_digits(r)) for r in raw]
        texts = list(dict.fromkeys(ctc_nbest + moonshine_nbest))
        names = capitalised_words(raw)
        forms = {t: list(dict.fromkeys(
            [r for r, n in zip(raw, moonshine_nbest) if n == t] + written_forms(t, names)))
            for t in texts}
        flat = [(t, f) for t in texts for f in forms[t]]
        scores = self.decoder.sequence_log_probs(frames,
                                                 [self.tokenizer.encode(f) for _, f in flat])
        moonshine = {t: -math.inf for t in texts}
        for (t, _), s in zip(flat, scores):
            moonshine[t] = max(moonshine[t], float(s))
        candidates = [{"text": t, "ctc": ctc_log_likelihood(item["log_probs"], t, self.encoder),
                       "moonshine": moonshine[t], "lm": self.lm_log_prob(t),
                       "words": len(t.split())} for t in texts]
        return {"ref": item["ref"], "age": item["age"],
                "ctc_1best": ctc_nbest[0] if ctc_nbest else "",
                "moonshine_1best": moonshine_nbest[0] if raw else "",
                "candidates": candidates}

    def lm_log_prob(self, text: str) -> float:
        if self.lm is None:
            return 0.0
        return self.lm.sentence_log10(text) * math.log(10)


def collect(scorers: Scorers, items: list[dict], csv: str, path: Path) -> dict:
    """Candidates of every utterance of `items`, resumed from and saved to `path` (a file
    that may be shared by runs over other subsets of the same utterances and first pass)."""
    done = json.loads(path.read_text()) if path.is_file() else {}
    wavs = {row["ID"]: row["wav"] for row in read_manifest(csv)}
    todo = [it for it in items if it["id"] not in done]
    if done:
        logger.info("%s: %d utterances already scored, %d to go", path, len(done), len(todo))
    for n, item in enumerate(tqdm(todo, desc=f"rescoring {Path(csv).name}"), 1):
        done[item["id"]] = scorers.candidates(item, wavs[item["id"]])
        if n % SAVE_EVERY == 0 or n == len(todo):
            _write_atomic(path, done)
    return {it["id"]: done[it["id"]] for it in items}  # the file may hold other utterances


def _write_atomic(path: Path, payload: dict):
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    tmp.write_text(json.dumps(payload))
    tmp.replace(path)


def pick(utterances: dict, weights: dict) -> dict[str, str]:
    """The best candidate of each utterance under `weights` (moonshine, lm, words)."""
    chosen = {}
    for utt_id, utt in utterances.items():
        totals = [c["ctc"] + sum(weights[k] * c[k] for k in weights) for c in utt["candidates"]]
        chosen[utt_id] = utt["candidates"][int(np.argmax(totals))]["text"]
    return chosen


def scored(utterances: dict, hyps: dict[str, str]) -> dict:
    ids = sorted(utterances)
    items = [{"ref": utterances[i]["ref"], "age": utterances[i]["age"]} for i in ids]
    return score(items, [hyps[i] for i in ids])


def oracle(utterances: dict) -> dict[str, str]:
    """The candidate closest to the reference (characters): what perfect rescoring could do."""
    from jiwer import cer

    return {i: min((c["text"] for c in u["candidates"]),
                   key=lambda t: cer(u["ref"], t) if u["ref"] else len(t))
            for i, u in utterances.items()}


def tune(valid: dict, grid: dict = GRID) -> tuple[dict, list[dict]]:
    """(the weights with the lowest validation WER (then CER), the whole grid's scores)."""
    rows = []
    for values in itertools.product(*grid.values()):
        weights = dict(zip(grid, values))
        rows.append({**weights, **scored(valid, pick(valid, weights))})
    best = min(rows, key=lambda r: (r["wer"], r["cer"]))
    return {k: best[k] for k in grid}, rows


def summary(utterances: dict, weights: dict) -> dict:
    """Scores of the chosen rescoring and of each first pass alone, on one split."""
    return {"rescored": {**weights, **scored(utterances, pick(utterances, weights))},
            "ctc_1best": scored(utterances, {i: u["ctc_1best"] for i, u in utterances.items()}),
            "moonshine_1best": scored(utterances, {i: u["moonshine_1best"]
                                                   for i, u in utterances.items()}),
            "oracle_candidate": scored(utterances, oracle(utterances)),
            "mean_candidates": float(np.mean([len(u["candidates"]) for u in utterances.values()]))}


def load_adapters(model, folder: str, lhuc_targets: list[str] | None) -> dict[str, int]:
    """Load the per-speaker adapters that adapt.py saved in `folder`; {speaker: LHUC row}.

    An SI model gets LHUC at `lhuc_targets` first (adapt.py's `lhuc_targets`); a SAT-LHUC
    model has its tables already. Speakers without an adapter decode with the SI row."""
    index = json.loads((Path(folder) / INDEX).read_text())
    if not index:
        raise ValueError(f"{folder}/{INDEX} lists no adapted speakers")
    if not model.has_lhuc:
        if not lhuc_targets:
            raise ValueError(f"{folder}: the checkpoint has no LHUC tables; give the adaptation's "
                             "--lhuc_targets so they can be attached")
        first = torch.load(Path(folder) / next(iter(index.values())), weights_only=True)
        model.attach_speaker_lhuc(lhuc_targets, 0, reparam=first["meta"]["reparam"])
        model.eval()
    return {spk: load_speaker_adapter(model, folder, spk) for spk in index}


def first_pass(args) -> tuple[dict, object]:
    """({split: per-model utterance log-probs}, the models' text encoder)."""
    adapters = args.adapters or ["none"] * len(args.checkpoints)
    if len(adapters) != len(args.checkpoints):
        raise ValueError(f"--adapters: {len(adapters)} folders for {len(args.checkpoints)} "
                         "checkpoints (one per checkpoint, 'none' for none)")
    per_split, encoder = {"valid": [], "test": []}, None
    for path, folder in zip(args.checkpoints, adapters):
        model, model_encoder, _, _ = load_pretrained(
            path, pick_device(args.device), feature_cache_dir=feature_cache_dir(args))
        if encoder is not None and characters_of(model_encoder) != characters_of(encoder):
            raise ValueError(f"{path}: its output units differ from {args.checkpoints[0]}'s")
        encoder = model_encoder
        rows = None if folder == "none" else load_adapters(model, folder, args.lhuc_targets)
        for split in per_split:
            per_split[split].append(utterance_log_probs(model, getattr(args, f"{split}_csv"),
                                                        speaker_rows=rows))
        del model
    return per_split, encoder


def training_summary(checkpoints: list[str]) -> dict:
    """checkpoint, epochs, train_seconds and params of the first-pass model(s), from the
    training results that train.py stores in each checkpoint (sums over an ensemble)."""
    blobs = [read_checkpoint(path) for path in checkpoints]
    runs = [blob.get("extra", {}).get("results", {}) for blob in blobs]
    single = len(checkpoints) == 1
    return {"checkpoint": checkpoints[0] if single else checkpoints,
            "epochs": runs[0].get("epochs") if single else [r.get("epochs") for r in runs],
            "train_seconds": sum(r.get("train_seconds") or 0 for r in runs),
            "params": sum(r.get("params") or sum(v.numel() for v in b["state_dict"].values())
                          for r, b in zip(runs, blobs))}


def moonshine_cache_dir(args) -> str | None:
    """Moonshine's features go to the folder given for the first pass's (else memory only)."""
    folder = feature_cache_dir(args)
    return folder if isinstance(folder, str) else None


def run(args) -> dict:
    per_split, encoder = first_pass(args)
    lm = (str(write_transcript_lm(args.train_csv, args.work_dir, args.lm_order))
          if args.lm_order else None)
    scorers = Scorers(encoder, lm, args.nbest, args.beam_size, args.moonshine_beam,
                      args.lm_alpha, args.lm_beta, moonshine_cache_dir(args))
    work = Path(args.work_dir)
    splits = {split: collect(scorers, combine(models), getattr(args, f"{split}_csv"),
                             work / f"candidates_{split}.json")
              for split, models in per_split.items()}
    weights, grid = tune(splits["valid"])
    test, hypotheses = summary(splits["test"], weights), pick(splits["test"], weights)
    test_rows = read_manifest(args.test_csv)
    return {"corpus": args.corpus, "mode": "si" if not args.adapters else "lhuc_adapted",
            "wer": test["rescored"]["wer"], "cer": test["rescored"]["cer"],
            "n_utts": len(test_rows), "n_speakers": len({r["spk_id"] for r in test_rows}),
            "wer_children": test["rescored"].get("wer_children"),
            "wer_adults": test["rescored"].get("wer_adults"),
            "device": describe_device(pick_device(args.device)),
            **training_summary(args.checkpoints),
            "second_pass": "Moonshine-base decoder (frozen, int8 ONNX from moonshine-cpp)",
            "checkpoints": args.checkpoints, "adapters": args.adapters, "nbest": args.nbest,
            "beam_size": args.beam_size,
            "moonshine_beam": args.moonshine_beam, "lm_order": args.lm_order,
            "lm_alpha": args.lm_alpha, "lm_beta": args.lm_beta, "chosen": weights,
            "valid": summary(splits["valid"], weights), "test": test, "valid_grid": grid,
            "hypotheses": hypotheses}


def main(argv=None):
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoints", nargs="+", required=True, help="asr_lhuc .pt files")
    for split in ("train", "valid", "test"):
        parser.add_argument(f"--{split}_csv", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--work_dir", default="exp/rescore", help="LM and candidate files")
    add_feature_cache_arg(parser, "--cache_dir")  # the first pass's and Moonshine's
    parser.add_argument("--adapters", nargs="+", default=None,
                        help="per checkpoint: a folder of adapt.py's speaker adapters, or 'none'")
    parser.add_argument("--lhuc_targets", nargs="+", default=None,
                        help="where the adapters' LHUC goes in an SI checkpoint")
    parser.add_argument("--corpus", default="speechocean762")
    parser.add_argument("--nbest", type=int, default=10, help="CTC candidates per utterance")
    parser.add_argument("--moonshine_beam", type=int, default=4)
    add_decoding_args(parser)
    argv = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(argv)
    set_threads(args)
    results = write_results(args.out, run(args), __spec__.name, argv)
    print(json.dumps({k: results[k] for k in ("chosen", "valid", "test")}, indent=1))


if __name__ == "__main__":
    main()
