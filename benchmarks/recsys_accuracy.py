"""Accuracy benchmark of the ranking models: mean +- std over seeds of test AUC / gAUC / logloss.

    python benchmarks/recsys_accuracy.py --dataset ml100k      # -> results/recsys/ml100k.json
    python benchmarks/recsys_accuracy.py --dataset ml100k --split temporal --seeds 0 1 2
                                                   # -> results/recsys/ml100k_temporal.json
    python benchmarks/recsys_accuracy.py --dataset synthetic   # -> results/recsys/synthetic.json

Each (model, seed) run is a normal ``recsys_lhuc`` training run under ``--runs``; finished runs are
reused, so a killed benchmark resumes where it stopped. A seed sets both the 8:1:1 split and the
model initialisation (with ``--split temporal``, the per-user temporal split, a seed sets the
initialisation only). Every JSON records, per seed, how many test users gAUC skipped because all
their test rows are of one class (``gauc_users_skipped``; the same for every model: it depends
on the split only); ``--user-counts-only`` adds those counts to an existing JSON without
training. PEPNet on ML-100K trains two tasks (like, watch with sampled negatives, see
recipes/ranking/ml100k_multitask.yaml); its like-metrics are on the same observed test rows.
On the synthetic set ``dnn_wide`` is a DNN with a wider tower ([224, 56]) and about PPNet's
parameter count, to tell the gates' effect from the extra parameters.
"""
from __future__ import annotations

import argparse
import json
import logging
import shlex
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from recsys_lhuc.data import prepare  # noqa: E402
from recsys_lhuc.data.pipeline import GROUP_COLUMN  # noqa: E402
from recsys_lhuc.train import load_config, train  # noqa: E402

RECIPES = ROOT / "recipes" / "ranking"
DATASETS = {
    "ml100k": {"config": RECIPES / "ml100k.yaml",
               "per_model": {"pepnet": RECIPES / "ml100k_multitask.yaml"},
               "protocol": "MovieLens-100K, like = rating >= 4 (rating 3 kept as negative), "
                           "seeded random 8:1:1 split of the ratings (seed = run seed); PEPNet "
                           "adds watch negatives (1 sampled unrated item per rating) and is scored "
                           "on like over the same observed test rows"},
    "synthetic": {"config": RECIPES / "synthetic.yaml", "per_model": {},
                  "extra_models": ["dnn_wide"],
                  "model_sets": {"pepnet": ["model.domain_fields=[user_segment]"],
                                 # a DNN with about PPNet's parameter count (wider tower)
                                 "dnn_wide": ["model.name=dnn", "model.hidden=[224,56]"]},
                  "protocol": "synthetic heterogeneous users (recsys_lhuc.data.synthetic, "
                              "generator seed fixed), seeded random 8:1:1 split (seed = run seed); "
                              "ceiling = AUC of the true click probabilities on each test split"},
}
MODELS = ["dnn", "wide_deep", "ppnet", "lhuc_user", "pepnet"]
TEMPORAL = ("per-user temporal split (each user's latest 10% of ratings -> test, the 10% before "
            "-> validation, users with < 3 ratings stay in train; the same split for every seed, "
            "a seed sets the initialisation only)")


def run_config(dataset: str, model: str, seed: int, overrides: list[str]) -> dict:
    info = DATASETS[dataset]
    config = info["per_model"].get(model, info["config"])
    sets = [f"data.split.seed={seed}", f"train.seed={seed}", "train.progress=false", *overrides]
    if model not in info["per_model"] and model in MODELS:
        sets.append(f"model.name={model}")
    sets += info.get("model_sets", {}).get(model, [])
    return load_config(config, sets)


def test_user_counts(cfg: dict) -> dict:
    """Test users gAUC can use (both classes among their test rows) and skips (one class)."""
    test = prepare(cfg).splits["test"]
    label = cfg["spec"]["label"]
    frame = test.select_columns([GROUP_COLUMN, label]).to_pandas()
    classes = frame.groupby(GROUP_COLUMN)[label].nunique()
    return {"gauc_users": int((classes == 2).sum()), "gauc_users_skipped": int((classes < 2).sum())}


def run_one(dataset: str, model: str, seed: int, runs: Path, overrides: list[str]) -> dict:
    out = runs / dataset / model / f"seed{seed}"
    if (out / "results.json").exists():
        return json.loads((out / "results.json").read_text())
    return train(run_config(dataset, model, seed, overrides), out)


def summarise(results: list[dict]) -> dict:
    def stat(key):
        values = np.array([r["test"][key] for r in results])
        return float(values.mean()), float(values.std(ddof=1) if len(values) > 1 else 0.0)

    out = {}
    for key in ("auc", "gauc", "logloss"):
        out[f"{key}_mean"], out[f"{key}_std"] = stat(key)
    out["seeds"] = [{"seed": r["seed"], "auc": r["test"]["auc"], "gauc": r["test"]["gauc"],
                     "logloss": r["test"]["logloss"], "best_epoch": r["best_epoch"],
                     "epochs_run": r["epochs_run"], "parameters": r["parameters"],
                     "gauc_users": r["test"].get("gauc_users"),
                     "gauc_users_skipped": r["test"].get("gauc_users_skipped")}
                    for r in results]
    return out


def add_paired_deltas(models: dict, baseline: str) -> None:
    """Per-seed differences to the baseline (same split and seed), mean and std: the splits'
    variance cancels, so these say more than comparing the means' error bars."""
    if baseline not in models:
        return
    base = {s["seed"]: s for s in models[baseline]["seeds"]}
    for summary in models.values():
        for key in ("auc", "gauc", "logloss"):
            diffs = np.array([s[key] - base[s["seed"]][key] for s in summary["seeds"]
                              if s["seed"] in base])
            if len(diffs):
                summary[f"{key}_delta_vs_{baseline}_mean"] = float(diffs.mean())
                summary[f"{key}_delta_vs_{baseline}_std"] = float(
                    diffs.std(ddof=1) if len(diffs) > 1 else 0.0)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", choices=sorted(DATASETS), default="ml100k")
    parser.add_argument("--models", nargs="*", default=None,
                        help=f"default: {' '.join(MODELS)} (+ dnn_wide on synthetic)")
    parser.add_argument("--seeds", nargs="*", type=int, default=[0, 1, 2, 3, 4])
    parser.add_argument("--runs", default=str(ROOT / "exp" / "recsys_accuracy"))
    parser.add_argument("--out", default=None, help="JSON path (default results/recsys/...)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--split", choices=["random", "temporal"], default="random")
    parser.add_argument("--set", nargs="*", default=[], help="config overrides for every run")
    parser.add_argument("--user-counts-only", action="store_true",
                        help="add the per-seed gAUC user counts to an existing JSON; no training")
    args = parser.parse_args(argv)
    if args.split == "temporal":
        args.set = ["data.split.protocol=temporal", *args.set]
    args.models = args.models or MODELS + DATASETS[args.dataset].get("extra_models", [])
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(args.threads)
    suffix = "" if args.split == "random" else f"_{args.split}"
    out_path = Path(args.out or ROOT / "results" / "recsys" / f"{args.dataset}{suffix}.json")
    if args.user_counts_only:
        return add_user_counts(out_path, args)
    protocol = DATASETS[args.dataset]["protocol"]
    if args.split == "temporal":
        protocol = protocol.replace("seeded random 8:1:1 split of the ratings (seed = run seed)",
                                    TEMPORAL)
    summary = {"protocol": protocol, "dataset": args.dataset, "split": args.split,
               "models": {}, "command": "python " + shlex.join(
                   [str(Path(sys.argv[0]).resolve().relative_to(ROOT)), *sys.argv[1:]])}
    ceilings = []
    for model in args.models:
        results = []
        for seed in args.seeds:
            res = run_one(args.dataset, model, seed, Path(args.runs), args.set)
            res["seed"] = seed
            results.append(res)
            logging.info("%s %s seed %d: test AUC %.4f gAUC %.4f logloss %.4f", args.dataset,
                         model, seed, res["test"]["auc"], res["test"]["gauc"],
                         res["test"]["logloss"])
            if model == args.models[0] and (res["data"].get("ceiling") or {}).get("auc"):
                ceilings.append(res["data"]["ceiling"])
        summary["models"][model] = summarise(results)
        summary["device"] = results[-1]["device"]
    add_paired_deltas(summary["models"], baseline="dnn")
    if ceilings:
        summary["ceiling_auc"] = float(np.mean([c["auc"] for c in ceilings]))
        summary["ceiling_gauc"] = float(np.mean([c["gauc"] for c in ceilings]))
        summary["ceiling_logloss"] = float(np.mean([c["logloss"] for c in ceilings]))
    summary["overrides"] = args.set
    summary["torch_threads"] = args.threads
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(summary, indent=2) + "\n")
    print(f"\n{'model':<12}{'AUC':>18}{'gAUC':>18}{'logloss':>18}")
    for model, s in summary["models"].items():
        print(f"{model:<12}{s['auc_mean']:>10.4f} +- {s['auc_std']:.4f}"
              f"{s['gauc_mean']:>10.4f} +- {s['gauc_std']:.4f}"
              f"{s['logloss_mean']:>10.4f} +- {s['logloss_std']:.4f}")
    if ceilings:
        print(f"{'ceiling':<12}{summary['ceiling_auc']:>10.4f}")
    print(f"wrote {out_path}")


def add_user_counts(out_path: Path, args) -> None:
    """Per-seed test-user counts of gAUC (used / skipped), from the splits alone."""
    summary = json.loads(out_path.read_text())
    counts = {seed: test_user_counts(run_config(args.dataset, "dnn", seed, args.set))
              for seed in args.seeds}
    summary["test_users_by_seed"] = {str(s): c for s, c in counts.items()}
    out_path.write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary["test_users_by_seed"]))


if __name__ == "__main__":
    main()
