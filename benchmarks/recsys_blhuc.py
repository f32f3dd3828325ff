"""Bayesian LHUC-user vs plain LHUC-user on MovieLens-100K, overall and by user activity.

    python benchmarks/recsys_blhuc.py      # -> results/recsys/blhuc_ml100k.json

For each split protocol (the seeded random 8:1:1 split and the per-user temporal split), each
seed and each variant (plain LHUC-user, and Bayesian LHUC-user with every ``--priors`` value of
``model.bayes_prior_std``), one normal ``recsys_lhuc`` training run of recipes/ranking/ml100k.yaml
is made under ``--runs`` (finished runs are reused). Besides the test AUC / gAUC / logloss of
every run, the test rows are broken down by their user's number of training rows (``--buckets``
edges, default < 30, 30-99, >= 100): Bayesian LHUC is meant to help the users with few
interactions. The prior's standard deviation is chosen per split on the mean validation AUC over
seeds (never on test); the JSON keeps every value's numbers and says which one was chosen.
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
sys.path.insert(0, str(ROOT / "benchmarks"))

from recsys_accuracy import TEMPORAL, run_config  # noqa: E402

from recsys_lhuc.data import prepare  # noqa: E402
from recsys_lhuc.data.pipeline import GROUP_COLUMN  # noqa: E402
from recsys_lhuc.evaluate import load_run  # noqa: E402
from recsys_lhuc.metrics import all_metrics  # noqa: E402
from recsys_lhuc.train import TrainConfig, make_batches, predict, train  # noqa: E402

PLAIN = "lhuc_user"
METRICS = ("auc", "gauc", "logloss")


def variant_name(prior: float | None) -> str:
    return PLAIN if prior is None else f"blhuc_prior{prior:g}"


def bucket_names(edges: list[int]) -> list[str]:
    bounds = [0, *edges, None]
    return [f"<{hi}" if lo == 0 else (f">={lo}" if hi is None else f"{lo}-{hi - 1}")
            for lo, hi in zip(bounds[:-1], bounds[1:])]


def metrics_by_user_rows(run_dir: Path, edges: list[int], expected_auc: float) -> dict:
    """Test metrics of the run's best checkpoint per bucket of the users' training rows (its
    overall test AUC, recomputed, must equal ``expected_auc`` from its results.json)."""
    cfg, model, _ = load_run(run_dir, device="cpu")
    prepared = prepare(cfg)
    spec, device = prepared.spec, torch.device("cpu")
    tc = TrainConfig.from_dict(cfg.get("train"))
    user_field = spec.user_field
    train_rows = np.bincount(prepared.splits["train"].with_format("numpy")[user_field],
                             minlength=spec.get_field(user_field).vocab_size)
    batches = make_batches(prepared.splits["test"], spec, tc.eval_batch_size, device,
                           extra_columns=[GROUP_COLUMN])
    probs = predict(model, batches, spec, device, bf16=False)[spec.label]
    labels, users = batches.column(spec.label), batches.column(user_field)
    groups = batches.column(GROUP_COLUMN) if GROUP_COLUMN in batches.tensors else users
    everything = all_metrics(labels, probs, groups)
    if abs(everything["auc"] - expected_auc) > 1e-6:
        raise RuntimeError(f"{run_dir}: recomputed test AUC {everything['auc']:.6f} != "
                           f"results.json's {expected_auc:.6f}; the run folder is inconsistent")
    bucket = np.searchsorted(np.asarray(edges), train_rows[users], side="right")
    shift, std = row_shift(model.table)
    user_bucket = np.searchsorted(np.asarray(edges), train_rows, side="right")
    user_bucket[0] = -1  # the OOV id has no row of its own
    out = {}
    for i, name in enumerate(bucket_names(edges)):
        keep, own = bucket == i, user_bucket == i
        out[name] = {**all_metrics(labels[keep], probs[keep], groups[keep]),
                     "users": int(len(np.unique(users[keep]))),
                     # how far training moved these users' rows (all of the bucket's users)
                     "row_minus_si_norm": float(shift[own].mean()),
                     "posterior_std": None if std is None else float(std[own].mean())}
    return out


def row_shift(table) -> tuple[np.ndarray, np.ndarray | None]:
    """Per user id: the L2 distance of its row (posterior mean) from the SI row, and its mean
    posterior standard deviation (None for plain LHUC)."""
    with torch.no_grad():
        shift = (table.rows - table.si).norm(dim=1).numpy()
        std = None if table.log_std is None else table.log_std.exp().mean(dim=1).numpy()
    return shift, std


def run_variant(split: str, prior: float | None, seed: int, runs: Path, edges) -> dict:
    sets = ["data.split.protocol=temporal"] if split == "temporal" else []
    if prior is not None:
        sets.append(f"model.bayes_prior_std={prior}")
    out = runs / split / variant_name(prior) / f"seed{seed}"
    if (out / "results.json").exists():
        res = json.loads((out / "results.json").read_text())
    else:
        res = train(run_config("ml100k", PLAIN, seed, sets), out)
    row = {"seed": seed, "val_auc": res["val"]["auc"], "best_epoch": res["best_epoch"],
           "epochs_run": res["epochs_run"], **{k: res["test"][k] for k in METRICS},
           "by_train_rows": metrics_by_user_rows(out, edges, res["test"]["auc"])}
    logging.info("%s %s seed %d: val AUC %.4f, test AUC %.4f gAUC %.4f, lowest bucket AUC %.4f",
                 split, variant_name(prior), seed, row["val_auc"], row["auc"], row["gauc"],
                 next(iter(row["by_train_rows"].values()))["auc"])
    return row


def mean_std(values) -> dict:
    values = np.asarray(values, dtype=np.float64)
    return {"mean": float(values.mean()),
            "std": float(values.std(ddof=1)) if len(values) > 1 else 0.0}


def summarise(seeds: list[dict], plain: list[dict] | None, buckets: list[str]) -> dict:
    """Mean +- std over seeds of the overall and per-bucket test metrics, the validation AUC,
    and the per-seed (paired) differences to plain LHUC-user."""
    out = {"val_auc": mean_std([s["val_auc"] for s in seeds])}
    out.update({k: mean_std([s[k] for s in seeds]) for k in METRICS})
    out["by_train_rows"] = {
        b: {**{k: mean_std([s["by_train_rows"][b][k] for s in seeds])
               for k in (*METRICS, "row_minus_si_norm")},
            "rows": seeds[0]["by_train_rows"][b]["rows"],
            "users": seeds[0]["by_train_rows"][b]["users"]} for b in buckets}
    if plain is not None:
        base = {s["seed"]: s for s in plain}
        out["delta_vs_plain"] = {k: mean_std([s[k] - base[s["seed"]][k] for s in seeds])
                                 for k in METRICS}
        out["delta_vs_plain"]["by_train_rows"] = {
            b: {k: mean_std([s["by_train_rows"][b][k] - base[s["seed"]]["by_train_rows"][b][k]
                             for s in seeds]) for k in METRICS} for b in buckets}
    out["seeds"] = seeds
    return out


def run_split(split: str, args, buckets: list[str]) -> dict:
    variants = {}
    for prior in [None, *args.priors]:
        seeds = [run_variant(split, prior, s, Path(args.runs), args.buckets) for s in args.seeds]
        variants[variant_name(prior)] = {"bayes_prior_std": prior, "seeds": seeds}
    plain = variants[PLAIN]["seeds"]
    summary = {name: {"bayes_prior_std": v["bayes_prior_std"],
                      **summarise(v["seeds"], None if name == PLAIN else plain, buckets)}
               for name, v in variants.items()}
    chosen = max((n for n in summary if n != PLAIN), key=lambda n: summary[n]["val_auc"]["mean"])
    return {"chosen_on_val": chosen, "variants": summary}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--priors", nargs="+", type=float, default=[0.1, 0.3, 1.0],
                        help="model.bayes_prior_std values to try (chosen on validation AUC)")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--splits", nargs="+", choices=["random", "temporal"],
                        default=["random", "temporal"])
    parser.add_argument("--buckets", nargs="+", type=int, default=[30, 100],
                        help="edges of the users' training-row buckets")
    parser.add_argument("--runs", default=str(ROOT / "exp" / "recsys_blhuc"))
    parser.add_argument("--out", default=str(ROOT / "results" / "recsys" / "blhuc_ml100k.json"))
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(args.threads)
    buckets = bucket_names(args.buckets)
    result = {
        "command": "python " + shlex.join([str(Path(sys.argv[0]).resolve().relative_to(ROOT)),
                                           *sys.argv[1:]]),
        "protocol": "MovieLens-100K (recipes/ranking/ml100k.yaml, like = rating >= 4), model "
                    "lhuc_user; Bayesian variants set model.bayes_prior_std (bayes_init_std 0.1, "
                    "bayes_kl_weight 1); the prior std is chosen per split on mean validation "
                    "AUC; 'by_train_rows' splits the test rows by their user's number of "
                    "training rows (row_minus_si_norm: mean L2 distance of those users' LHUC "
                    "rows, posterior means, from the SI row); deltas are per seed (paired) "
                    "minus plain lhuc_user",
        "splits_protocols": {"random": "seeded random 8:1:1 split of the ratings (seed = run "
                                       "seed)", "temporal": TEMPORAL},
        "seeds": args.seeds, "torch_threads": args.threads, "device": "cpu",
        "splits": {split: run_split(split, args, buckets) for split in args.splits},
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print_table(result, buckets[0])
    print(f"wrote {out}")


def print_table(result: dict, low: str) -> None:
    print(f"\n{'split':<9}{'variant':<20}{'val AUC':>9}{'test AUC':>17}{'gAUC':>17}"
          f"{'logloss':>17}{'AUC ' + low + ' rows':>19}")
    for split, res in result["splits"].items():
        for name, s in res["variants"].items():
            mark = " *" if name == res["chosen_on_val"] else ""
            cells = [s[k] for k in METRICS] + [s["by_train_rows"][low]["auc"]]
            print(f"{split:<9}{name + mark:<20}{s['val_auc']['mean']:>9.4f}" + "".join(
                f"{c['mean']:>10.4f}±{c['std']:.4f}" for c in cells))


if __name__ == "__main__":
    main()
