"""Unsupervised LHUC from the SI system's own first pass: settings chosen on the validation
speakers, the test speakers scored once with them (issue 15's protocol).

    python -m recipes.speechocean762.ASR.CTC.local.own_first_pass \\
        --out results/asr/speechocean762/adapt_own_first_pass.json

The SI system is the committed `whisper_si.pt` with beam 10 + the training-transcript word 3-gram
(both passes, no lexicon); LHUC sits on the head's layers (`adapt_whisper.yaml`). Each candidate
(plain LHUC, Bayesian LHUC with a few prior widths, the KL-to-SI-output term, a smaller
learning rate, confidence selection of the targets, a second round, N-best targets with
posterior weights, entropy minimisation alone or beside CTC, frame targets aligned to the 1-best
with or without word confidence) adapts the validation speakers
under both protocols (transductive: adapt on and score all utterances; held out: adapt on half
of each speaker's, score the other half); the candidate with the lowest mean
relative WER change over the two is chosen, and only it (beside plain LHUC, the baseline) is
run on the test speakers. Every run writes its own adapt.json under `--work`, so a killed job
resumes where it stopped and reruns nothing. `--candidates nbest5 entropy --dev_only` runs only
those on the validation speakers (no choice, nothing on test): to try new candidates.
"""

import argparse
import json
import logging
import sys
from pathlib import Path

from hyperpyyaml import load_hyperpyyaml

from asr_lhuc.adapt.recipe import run

RECIPE = Path(__file__).resolve().parents[1]
logger = logging.getLogger(__name__)
CANDIDATES = {  # name: changes to the YAML's `adapt:` block
    "lhuc": {},
    "blhuc_prior0.1": {"prior_std": 0.1},
    "blhuc_prior0.3": {"prior_std": 0.3},
    "blhuc_prior1.0": {"prior_std": 1.0},
    "si_kl0.3": {"si_kl": 0.3},
    "si_kl0.7": {"si_kl": 0.7},
    "lr0.005": {"lr": 0.005},  # a quarter of the recipe's step: less fitting of noisy targets
    "confident_half": {"top_fraction": 0.5},  # each speaker's more confident half of hypotheses
    "rounds2": {"rounds": 2},  # re-decode with the adapted rows, adapt again
    "nbest5": {"nbest": 5},  # CTC on the 5 best hypotheses, weighted by their posteriors
    "nbest5_scale0.3": {"nbest": 5, "nbest_scale": 0.3},  # flatter posterior weights
    "entropy": {"loss": "entropy"},  # SUTA's entropy minimisation alone: no hypotheses
    # SUTA's smoothing temperature (2.5) and a tenth of the step (at lr 0.02 it raised WER)
    "entropy_t2.5_lr0.002": {"loss": "entropy", "entropy_temperature": 2.5, "lr": 0.002},
    "ctc_entropy0.3": {"entropy_weight": 0.3},  # 1-best CTC + 0.3 * frame entropy
    # frame cross-entropy on the 1-best force-aligned to the first pass's posteriors, all words
    # or only those whose mean character posterior reaches 0.7 / 0.9 (word confidence)
    "frame_aligned": {"loss": "frame_ce", "frame_labels": "aligned"},
    "word_conf0.7": {"loss": "frame_ce", "frame_labels": "aligned", "word_confidence": 0.7},
    "word_conf0.9": {"loss": "frame_ce", "frame_labels": "aligned", "word_confidence": 0.9},
}
PROTOCOLS = ("transductive", "held_out")


def recipe_hparams(split_csv: str, protocol: str, out: Path, args,
                   changes: dict | None = None) -> dict:
    """adapt_whisper.yaml with this driver's SI system and `changes` (other YAML keys, e.g.
    lhuc_targets, lhuc_reparam, systems) on top."""
    overrides = {"test_csv": split_csv, "beam_size": 10, "lm_order": 3, "lexicon": None,
                 "compare_loop": False, "protocol": protocol, "save_adapters": False,
                 "systems": ["si", "si_lhuc", "si_lhuc_oracle"], "output_folder": str(out),
                 "results_folder": str(out), "si_checkpoint": args.si_checkpoint,
                 "prep_folder": args.prep_folder, "feature_cache_dir": args.feature_cache_dir,
                 "threads": args.threads, **(changes or {})}
    with open(RECIPE / "hparams" / "adapt_whisper.yaml") as fin:
        return load_hyperpyyaml(fin, overrides)


def run_configuration(out: Path, split: str, protocol: str, args, adapt: dict,
                      changes: dict | None = None, label: str = "") -> dict:
    """The recipe once on `split` under `protocol`, with `adapt` on top of the YAML's `adapt:`
    block and `changes` on top of its other keys; its adapt.json payload. A run whose
    adapt.json exists is read back, not rerun (a killed sweep resumes), after checking that it
    was made with these settings."""
    done = Path(out) / "adapt.json"
    if done.is_file():
        logger.info("%s: read back %s", label, done)
        payload = json.loads(done.read_text())
        check_settings(payload, done, adapt, {"protocol": protocol, **(changes or {})})
        return payload
    logger.info("%s: running (%s)", label, out)
    hp = recipe_hparams(str(Path(args.prep_folder) / f"{split}.csv"), protocol, out, args,
                        changes)
    hp["adapt"] = {**dict(hp["adapt"]), **adapt}
    run(hp, None, label)
    return json.loads(done.read_text())  # as a later read-back will see it


def check_settings(payload: dict, path: Path, adapt: dict, changes: dict) -> None:
    """A stale adapt.json (another setting under the same folder) is an error naming it."""
    stored = {"lhuc_targets": "lhuc_targets_si", "lhuc_reparam": "lhuc_reparam_si",
              "protocol": "protocol"}
    wrong = {k: (payload["adapt_config"].get(k), v) for k, v in adapt.items()
             if payload["adapt_config"].get(k) != v}
    wrong.update({k: (payload[stored[k]], v) for k, v in changes.items()
                  if k in stored and stored[k] in payload and payload[stored[k]] != v})
    if wrong:
        raise ValueError(f"{path} was made with other settings ({{name: (stored, wanted)}}: "
                         f"{wrong}): delete that folder to rerun it, or give another --work")


def adapt_once(name: str, split: str, protocol: str, args) -> dict:
    """One candidate on one split under one protocol (read back if it already ran)."""
    out = Path(args.work) / split / name / protocol
    return summary(run_configuration(out, split, protocol, args, CANDIDATES[name],
                                     label=f"own_first_pass {name} {split} {protocol}"))


def summary(payload: dict) -> dict:
    keys = ("si", "si_lhuc", "si_lhuc_oracle")
    row = {k: {"wer": payload[k]["wer"], "cer": payload[k]["cer"]} for k in keys}
    row.update(n_speakers=payload["n_speakers"], n_utts=payload["si"]["n_utts"],
               speakers_improved=payload.get("speakers_improved"),
               speakers_improved_detail=payload.get("speakers_improved_detail"),
               relative_wer_change=relative(payload, "si_lhuc"),
               oracle_relative_wer_change=relative(payload, "si_lhuc_oracle"),
               adapt_config=payload["adapt_config"])
    return row


def relative(payload: dict, system: str) -> float:
    return (payload[system]["wer"] - payload["si"]["wer"]) / payload["si"]["wer"]


def dev_set(dev: dict, dev_args) -> str:
    row = next(iter(dev.values()))["transductive"]
    return (f"valid of {dev_args.prep_folder}: {row['n_speakers']} speakers held out of "
            f"training, {row.get('n_utts')} utterances")


def choose(dev: dict) -> str:
    """The candidate whose mean relative WER change over the two protocols is lowest."""
    return min(dev, key=lambda n: sum(dev[n][p]["relative_wer_change"] for p in PROTOCOLS))


def main(argv=None) -> dict:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="the results JSON")
    parser.add_argument("--work", default="exp/own_first_pass")
    parser.add_argument("--prep_folder", default="exp/data/speechocean762")
    parser.add_argument("--feature_cache_dir", default="exp/features/speechocean762")
    parser.add_argument("--si_checkpoint", default=str(RECIPE / "pretrained" / "whisper_si.pt"))
    parser.add_argument("--dev_prep_folder", default=None,
                        help="CSVs of the dev split (its valid.csv), if not --prep_folder's: e.g. "
                             "25 training speakers held out (speechocean762_prepare.py "
                             "--n_valid_speakers 25)")
    parser.add_argument("--dev_si_checkpoint", default=None,
                        help="the SI model for the dev split, if not --si_checkpoint's: one "
                             "trained without the dev speakers (train.py --prep_folder of the "
                             "dev split)")
    parser.add_argument("--candidates", nargs="+", default=list(CANDIDATES))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--dev_only", action="store_true",
                        help="run the candidates on the validation speakers only: no choice, "
                             "nothing on the test speakers")
    argv = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(argv)
    unknown = sorted(set(args.candidates) - set(CANDIDATES))
    if unknown:
        parser.error(f"--candidates: unknown {unknown}; known: {list(CANDIDATES)}")
    dev_args = argparse.Namespace(**{**vars(args),
                                     "prep_folder": args.dev_prep_folder or args.prep_folder,
                                     "si_checkpoint": args.dev_si_checkpoint or args.si_checkpoint})
    dev = {name: {p: adapt_once(name, "valid", p, dev_args) for p in PROTOCOLS}
           for name in args.candidates}
    chosen = None if args.dev_only else choose(dev)
    test = {} if args.dev_only else {name: {p: adapt_once(name, "test", p, args)
                                            for p in PROTOCOLS}
                                     for name in dict.fromkeys(["lhuc", chosen])}
    result = {"protocols": {"transductive": "adapt on and score every utterance of a speaker",
                            "held_out": "adapt on a seeded half of each speaker's utterances, "
                                        "score the other half"},
              "targets": "the SI system's own first pass (beam 10 + word 3-gram, no lexicon)",
              "si_checkpoint": args.si_checkpoint, "dev_si_checkpoint": dev_args.si_checkpoint,
              "dev_set": dev_set(dev, dev_args), "candidates": {n: CANDIDATES[n] for n in dev},
              "selection": "lowest mean relative WER change over both protocols on dev",
              "dev": dev, "chosen": chosen, "test": test,
              "command": " ".join(["python -m recipes.speechocean762.ASR.CTC.local."
                                   "own_first_pass", *argv])}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    for split, rows in (("dev", dev), ("test", test)):
        for name, by_protocol in rows.items():
            for protocol, row in by_protocol.items():
                print(f"{split:4} {name:16} {protocol:12} SI {row['si']['wer']:.4f} -> "
                      f"{row['si_lhuc']['wer']:.4f} ({row['relative_wer_change']:+.1%}), "
                      f"oracle {row['si_lhuc_oracle']['wer']:.4f}, "
                      f"improved {row['speakers_improved']}/{row['n_speakers']}")
    return result


if __name__ == "__main__":
    main()
