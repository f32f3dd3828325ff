"""End-to-end training throughput of the real ``train`` path, next to the model step alone.

For DNN and PPNet, eager and ``torch.compile``d, at each batch size: ``train`` streams the
Criteo-sized synthetic shards from disk (``data.source: shards``: Parquet row groups, columnar
batches, a prefetch thread, pinned memory) for ``--steps`` optimiser steps and reports its own
samples/s (``results.json`` -> ``train_speed``: data loading included, the first ``--warmup``
steps and the evaluations left out). In the same process the same model, optimisers and
precision run the same number of steps on random batches already on the device: the model-step
figure. ``e2e_over_step`` is the share of the model-step speed the trainer keeps.

    python benchmarks/recsys_gpu_train.py                       # CUDA: 20M rows, batch 4096/65536
    OMP_NUM_THREADS=1 python benchmarks/recsys_gpu_train.py --device cpu --rows 300000 \\
        --personal-vocab 20000 --batch-sizes 1024 4096 --steps 10 --warmup 2 --threads 1

The shards are generated into ``--data`` first if that folder has none (never committed). On
CUDA the model step is also timed in the other precision (bf16 autocast vs fp32) at every batch
size, to set where bf16 pays (``recsys_lhuc.train.BF16_MIN_BATCH``). Writes
results/recsys/throughput_train_<cpu|gpu>.json.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "recsys"))  # the random-batch helper the tests use

from random_batch import random_batch  # noqa: E402

from recsys_lhuc.config import check_config  # noqa: E402
from recsys_lhuc.data import prepare  # noqa: E402
from recsys_lhuc.data.shards import write_synthetic_shards  # noqa: E402
from recsys_lhuc.train import (  # noqa: E402
    TrainConfig,
    as_task_dict,
    autocast,
    build,
    make_optimizers,
    task_loss,
    train,
    use_bf16,
)


def run_config(args, model: str, batch: int, compiled: bool, device: torch.device) -> dict:
    return check_config({
        "data": {"source": "shards", "path": str(args.data)},
        "model": {"name": model, "hidden": list(args.hidden), "sparse": args.tables == "sparse"},
        "train": {"epochs": 1, "batch_size": batch, "eval_batch_size": max(batch, 65536),
                  "max_steps": args.steps, "speed_warmup_steps": args.warmup,
                  "compile": compiled, "progress": False, "device": str(device),
                  "patience": 1, "amp": args.amp, "loader_workers": args.loader_workers}})


def model_step_rate(cfg: dict, device: torch.device, bf16: bool, steps: int, warmup: int) -> float:
    """Samples/s of forward + backward + optimiser steps on random batches on ``device``."""
    tc = TrainConfig.from_dict(cfg["train"])
    prepared = prepare(cfg)
    torch.manual_seed(0)
    _, model = build(cfg, prepared, device)
    optimizers = make_optimizers(model, tc)
    forward = torch.compile(model) if tc.compile else model
    g = torch.Generator().manual_seed(0)
    batches = [random_batch(prepared.spec, tc.batch_size, g, device) for _ in range(4)]
    model.train()

    def step(batch):
        with autocast(device, bf16):
            loss = task_loss(as_task_dict(forward(batch), prepared.spec), batch, tc)
        for opt in optimizers:
            opt.zero_grad(set_to_none=True)
        loss.backward()
        for opt in optimizers:
            opt.step()
    for i in range(warmup):
        step(batches[i % len(batches)])
    sync(device)
    start = time.perf_counter()
    for i in range(steps - warmup):
        step(batches[i % len(batches)])
    sync(device)
    return tc.batch_size * (steps - warmup) / (time.perf_counter() - start)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(args, device: torch.device, save) -> list[dict]:
    """Every configuration in turn; ``save(rows)`` after each, so a run stopped early keeps them."""
    rows = []
    for batch in args.batch_sizes:
        for model in args.models:
            for mode in args.modes:
                cfg = run_config(args, model, batch, mode == "compiled", device)
                res = train(cfg, args.runs / f"{model}_{mode}_{batch}", resume=False)
                bf16 = use_bf16(device, args.amp, batch)
                step = model_step_rate(cfg, device, bf16, args.steps, args.warmup)
                row = {"model": model, "mode": mode, "batch_size": batch,
                       "e2e_samples_per_s": round(res["train_speed"]["samples_per_s"], 1),
                       "model_step_samples_per_s": round(step, 1), "bf16": bf16,
                       "steps_timed": res["train_speed"]["samples_timed"] // batch}
                row["e2e_over_step"] = round(row["e2e_samples_per_s"] / step, 3)
                if device.type == "cuda":  # the same step in the other precision
                    row["model_step_other_precision_samples_per_s"] = round(
                        model_step_rate(cfg, device, not bf16, args.steps, args.warmup), 1)
                print(json.dumps(row), flush=True)
                rows.append(row)
                save(rows)
    return rows


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default=None, help="default: cuda if available, else cpu")
    parser.add_argument("--data", type=Path, default=ROOT / "exp" / "criteo_like_shards")
    parser.add_argument("--rows", type=int, default=20_000_000, help="training rows to generate")
    parser.add_argument("--personal-vocab", type=int, default=1_000_000)
    parser.add_argument("--runs", type=Path, default=ROOT / "exp" / "recsys_gpu_train")
    parser.add_argument("--models", nargs="+", default=["dnn", "ppnet"])
    parser.add_argument("--modes", nargs="+", default=None, choices=["eager", "compiled"],
                        help="default: eager and compiled on CUDA, eager on CPU")
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=[4096, 65536])
    parser.add_argument("--hidden", nargs="+", type=int, default=[512, 256, 128])
    parser.add_argument("--steps", type=int, default=200, help="steps per measurement")
    parser.add_argument("--warmup", type=int, default=20, help="steps left out of the timing")
    parser.add_argument("--tables", choices=["sparse", "dense"], default=None,
                        help="embedding gradients: default dense (fused AdamW) on CUDA, sparse "
                             "(SparseAdam) on CPU, where dense Adam over 1M-row tables dominates")
    parser.add_argument("--amp", default="auto", choices=["auto", "bf16", "off"])
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--loader-workers", type=int, default=None,
                        help="Parquet reading threads (default 6 on CUDA, 2 on CPU)")
    parser.add_argument("--note", default="", help="recorded in the JSON (e.g. a shared machine)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    args.tables = args.tables or ("dense" if device.type == "cuda" else "sparse")
    args.loader_workers = args.loader_workers or (6 if device.type == "cuda" else 2)
    args.modes = args.modes or (["eager", "compiled"] if device.type == "cuda" else ["eager"])
    if args.threads:
        torch.set_num_threads(args.threads)
    if not (args.data / "meta.json").exists():
        start = time.perf_counter()
        write_synthetic_shards(args.data, args.rows, args.personal_vocab)
        print(f"wrote {args.rows:,} rows to {args.data} in {time.perf_counter() - start:.0f} s")
    out = args.out or ROOT / "results" / "recsys" / (
        f"throughput_train_{'gpu' if device.type == 'cuda' else 'cpu'}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = json.loads((args.data / "meta.json").read_text())
    fixed = {  # what does not change between configurations: read once
        "data": {"folder": str(args.data), "rows": meta["rows"],
                 "personal_vocab": meta["personal_vocab"],
                 "bytes_on_disk": sum(p.stat().st_size for p in args.data.rglob("*.parquet"))},
        "hidden": args.hidden, "tables": args.tables, "loader_workers": args.loader_workers,
        "steps": args.steps, "warmup": args.warmup, "amp": args.amp,
        "device": (torch.cuda.get_device_name(device) if device.type == "cuda" else
                   f"cpu ({platform.processor() or platform.machine()}, "
                   f"{torch.get_num_threads()} threads)"),
        "note": args.note, "torch": torch.__version__,
        "command": " ".join([f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', '')}",
                             "python", *sys.argv]),
    }
    n_configs = len(args.batch_sizes) * len(args.models) * len(args.modes)

    def save(rows: list[dict]) -> None:
        peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
        result = {"rows": rows, "complete": len(rows) == n_configs, **fixed,
                  "peak_rss_gib": round(peak_rss, 2),
                  "load_average_1min_at_end": round(os.getloadavg()[0], 2)}
        out.write_text(json.dumps(result, indent=2) + "\n")

    measure(args, device, save)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
