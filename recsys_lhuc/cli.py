"""``python -m recsys_lhuc {prepare,train,evaluate,score,demo,download-ml100k,
prepare-synthetic-large}``: the ranking command line."""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

from .data.loaders import PROJECT_ROOT

DEFAULT_CONFIG = PROJECT_ROOT / "recipes" / "ranking" / "synthetic.yaml"


def _add_config(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", default=str(DEFAULT_CONFIG), help="YAML config (data/spec/model/"
                   "train)")
    p.add_argument("--set", nargs="+", action="extend", default=[], metavar="KEY=VALUE",
                   help="overrides, e.g. model.name=ppnet train.epochs=3 (may be repeated)")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m recsys_lhuc", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("prepare", help="build (or load) the cached Arrow splits and print stats")
    _add_config(p)
    p = sub.add_parser("train", help="train a model; resumes from OUT/last.pt if present")
    _add_config(p)
    p.add_argument("--out", required=True, help="run folder (checkpoints, results.json)")
    p.add_argument("--no-resume", action="store_true", help="start over even if OUT/last.pt exists")
    p = sub.add_parser("evaluate", help="metrics of a run's best checkpoint on a split")
    p.add_argument("--run", required=True)
    p.add_argument("--split", default="test", choices=["train", "val", "test"])
    p.add_argument("--checkpoint", default="best.pt")
    p = sub.add_parser("score", help="score the rows of a CSV/Parquet file")
    p.add_argument("--run", required=True)
    p.add_argument("--input", required=True)
    p.add_argument("--output", required=True)
    p.add_argument("--checkpoint", default="best.pt")
    p = sub.add_parser("demo", help="train DNN and PPNet on the synthetic default, print AUC next "
                       "to the Bayes-optimal ceiling")
    _add_config(p)
    p.add_argument("--out", default="exp/recsys_demo")
    p.add_argument("--models", nargs="*", default=["dnn", "ppnet"])
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (the models are "
                   "small: one thread is as fast and does not stall on a busy machine)")
    p = sub.add_parser("download-ml100k", help="fetch MovieLens-100K (never done implicitly) "
                       "and print its folder, for data.path")
    p.add_argument("--dest", default=None, help="folder (default: the user cache)")
    p = sub.add_parser("prepare-synthetic-large", help="write a Criteo-sized synthetic set as "
                       "Parquet shards (bounded memory), for data.source: shards")
    p.add_argument("--out", required=True)
    p.add_argument("--rows", type=int, default=20_000_000, help="training rows")
    p.add_argument("--personal-vocab", type=int, default=1_000_000, help="ids per personal field")
    p.add_argument("--val-fraction", type=float, default=0.01)
    p.add_argument("--test-fraction", type=float, default=0.01)
    p.add_argument("--shard-rows", type=int, default=2_000_000)
    p.add_argument("--row-group-rows", type=int, default=131_072)
    p.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def demo(args) -> None:
    from .train import load_config, train

    rows, ceiling = [], {}
    for name in args.models:
        cfg = load_config(args.config, [f"train.num_threads={args.threads}", *args.set,
                                        f"model.name={name}"])
        res = train(cfg, Path(args.out) / name, resume=False)
        rows.append((name, res["test"]["auc"], res["test"]["gauc"], res["test"]["logloss"],
                     res["parameters"]))
        ceiling = res["data"].get("ceiling") or {}
    print(f"\n{'model':<12}{'test AUC':>10}{'gAUC':>10}{'logloss':>10}{'params':>10}")
    for name, auc, gauc, ll, params in rows:
        print(f"{name:<12}{auc:>10.4f}{gauc:>10.4f}{ll:>10.4f}{params:>10,}")
    if ceiling:
        print(f"{'ceiling':<12}{ceiling['auc']:>10.4f}{ceiling['gauc']:>10.4f}"
              f"{ceiling['logloss']:>10.4f}{'':>10}   (Bayes-optimal: true click probabilities)")


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    from .config import ConfigError
    from .data import DataError
    from .train import CheckpointError, RunLockedError

    try:
        run(args)
    except (ConfigError, DataError, CheckpointError, RunLockedError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


def run(args) -> None:
    if args.command == "download-ml100k":
        from .data.loaders import download_ml100k

        print(download_ml100k(args.dest))
    elif args.command == "prepare-synthetic-large":
        from .data.shards import write_synthetic_shards

        meta = write_synthetic_shards(args.out, args.rows, args.personal_vocab,
                                      args.val_fraction, args.test_fraction, args.shard_rows,
                                      args.row_group_rows, args.seed)
        print(json.dumps({"out": args.out, "rows": meta["rows"]}))
    elif args.command == "prepare":
        from .data import prepare
        from .train import load_config

        prepared = prepare(load_config(args.config, args.set))
        print(json.dumps({"cache": str(prepared.cache_path), **prepared.stats}, indent=2,
                         default=str))
    elif args.command == "train":
        from .distributed import cleanup
        from .train import load_config, train

        res = train(load_config(args.config, args.set), args.out, resume=not args.no_resume)
        cleanup()  # leave the torchrun process group cleanly (no-op for one process)
        if int(os.environ.get("RANK", "0")) == 0:
            print(json.dumps({k: res[k] for k in ("model", "best_epoch", "test")
                              if k in res} or res, indent=2, default=float))
    elif args.command == "evaluate":
        from .evaluate import evaluate

        print(json.dumps(evaluate(args.run, args.split, args.checkpoint), indent=2, default=float))
    elif args.command == "score":
        from .score import score

        print(score(args.run, args.input, args.output, args.checkpoint))
    elif args.command == "demo":
        demo(args)


if __name__ == "__main__":
    sys.exit(main())
