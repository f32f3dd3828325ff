"""Training and scoring throughput of PPNet on a Criteo-sized synthetic config.

26 categorical fields (3 of them personal ids with ~1M ids each, the rest 10..100k ids), 13
numeric fields, embed_dim 16, batch 4096. Fused and unfused gates are timed side by side in one
process, interleaved round by round (order alternating), on the same batches and the same
embedding tables, so machine load hits both alike; the ratio is the headline number. Rates are
batch_size / median step time (every step time is kept in the JSON); the ratio of median CPU
times per step is reported too, as it barely moves when other processes share the cores.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/recsys_throughput.py

Embedding tables use sparse gradients (SparseAdam), the dense layers Adam. Writes
results/recsys/throughput_<device>.json.
"""

import argparse
import json
import os
import platform
import resource
import statistics
import sys
import time
from pathlib import Path

import torch
from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "recsys"))  # the random-batch helper the tests use

from random_batch import random_batch  # noqa: E402

from recsys_lhuc.data.shards import PERSONAL_IDS, criteo_like_spec  # noqa: E402
from recsys_lhuc.models import build_model, split_sparse_parameters  # noqa: E402
from recsys_lhuc.spec import FeatureSpec  # noqa: E402


def train_step(model, opts, batch) -> None:
    for opt in opts:
        opt.zero_grad(set_to_none=True)
    logits = model(batch)
    torch.nn.functional.binary_cross_entropy_with_logits(logits, batch["click"]).backward()
    for opt in opts:
        opt.step()


def timed(fn, device: torch.device) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process) of one call."""
    if device.type == "cuda":
        torch.cuda.synchronize()
    start, cpu_start = time.perf_counter(), time.process_time()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start, time.process_time() - cpu_start


def build_pair(spec: FeatureSpec, cfg: dict, device: torch.device):
    """Fused and unfused PPNet with identical weights; the unfused one reuses the fused one's
    embedding tables (halves the memory of the 1M-id tables; both train the same tables)."""
    torch.manual_seed(0)
    unfused = build_model("ppnet", spec, fused_gates=False, **cfg)
    torch.manual_seed(0)
    fused = build_model("ppnet", spec, fused_gates=False, **cfg)
    fused.tower.fuse_gates()
    unfused.embedding, unfused.gate_ids = fused.embedding, fused.gate_ids
    return fused.to(device), unfused.to(device)


def run(args) -> dict:
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    spec = criteo_like_spec(args.personal_vocab, args.embed_dim)
    sparse = args.tables == "sparse" if args.tables else device.type == "cpu"
    cfg = {"hidden": tuple(args.hidden), "sparse": sparse}
    fused, unfused = build_pair(spec, cfg, device)
    sparse_fused, dense_fused = split_sparse_parameters(fused)
    _, dense_unfused = split_sparse_parameters(unfused)
    # One SparseAdam for the shared sparse tables, and none when the tables are dense (the GPU
    # default): SparseAdam rejects an empty parameter list.
    shared = [torch.optim.SparseAdam(sparse_fused, lr=1e-3)] if sparse_fused else []
    opts = {"fused": [*shared, torch.optim.Adam(dense_fused, lr=1e-3)],
            "unfused": [*shared, torch.optim.Adam(dense_unfused, lr=1e-3)]}
    models = {"fused": fused, "unfused": unfused}
    g = torch.Generator().manual_seed(0)
    batches = [random_batch(spec, args.batch_size, g, device) for _ in range(args.num_batches)]

    for name in models:  # warm-up: allocator, optimizer state, kernels
        for b in batches[: args.warmup]:
            train_step(models[name], opts[name], b)
    seconds = {"fused": [], "unfused": []}
    cpu_seconds = {"fused": [], "unfused": []}
    for r in tqdm(range(args.rounds), desc="train rounds", file=sys.stdout):
        for name in (("fused", "unfused") if r % 2 == 0 else ("unfused", "fused")):
            for s in range(args.steps_per_round):
                b = batches[(r * args.steps_per_round + s) % len(batches)]
                step = lambda m=models[name], o=opts[name], b=b: train_step(m, o, b)  # noqa: E731
                wall, cpu = timed(step, device)
                seconds[name].append(wall)
                cpu_seconds[name].append(cpu)
    # Median step time: robust to load spikes from other processes on a shared machine.
    train_rate = {k: args.batch_size / statistics.median(v) for k, v in seconds.items()}

    gate_cpu = gate_bank_cpu_seconds(fused, unfused, batches[0], args.rounds, device)
    fused.eval()
    score_seconds = []
    with torch.no_grad():
        fused(batches[0])
        for i in tqdm(range(args.score_reps), desc="scoring", file=sys.stdout):
            score_seconds.append(timed(lambda b=batches[i % len(batches)]: fused(b), device)[0])
    n_params = sum(p.numel() for p in fused.parameters())
    return {
        "fused_train_samples_per_s": round(train_rate["fused"], 1),
        "unfused_train_samples_per_s": round(train_rate["unfused"], 1),
        "fused_over_unfused": round(train_rate["fused"] / train_rate["unfused"], 4),
        # CPU time is far less sensitive than wall time to other processes sharing the cores.
        "fused_over_unfused_cpu_time": round(statistics.median(cpu_seconds["unfused"])
                                             / statistics.median(cpu_seconds["fused"]), 4),
        "gate_bank_fused_over_unfused_cpu_time": round(statistics.median(gate_cpu["unfused"])
                                                       / statistics.median(gate_cpu["fused"]), 4),
        "score_samples_per_s": round(args.batch_size / statistics.median(score_seconds), 1),
        "batch_size": args.batch_size,
        "config": {
            "model": "ppnet", "categorical_fields": len(spec.categorical),
            "numeric_fields": len(spec.numeric), "personal_id_fields": PERSONAL_IDS,
            "personal_id_vocab": args.personal_vocab,
            "other_vocabs": [f.vocab_size for f in spec.categorical[3:]],
            "embed_dim": args.embed_dim, "hidden": list(args.hidden), "gate_position": "input",
            "gate_hidden": "= gate width", "optimizers": "SparseAdam (tables) + Adam (dense)"
            if cfg["sparse"] else "Adam", "parameters": n_params,
            "rounds": args.rounds, "steps_per_round": args.steps_per_round,
            "warmup_steps": args.warmup, "score_reps": args.score_reps,
            "threads": torch.get_num_threads(),
        },
        "train_step_seconds": {k: [round(x, 4) for x in v] for k, v in seconds.items()},
        "train_step_median_s": {k: round(statistics.median(v), 4) for k, v in seconds.items()},
        "train_step_cpu_seconds": {k: [round(x, 4) for x in v] for k, v in cpu_seconds.items()},
        "load_average_1min_at_end": round(os.getloadavg()[0], 2),
        "train_samples_per_s_from_mean": {k: round(args.batch_size * len(v) / sum(v), 1)
                                          for k, v in seconds.items()},
        "score_step_seconds": [round(x, 4) for x in score_seconds],
        "peak_rss_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2),
        "device": device_name(device),
        "torch": torch.__version__,
        "command": " ".join([f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', '')}",
                             ".venv/bin/python", *sys.argv]),
    }


def gate_bank_cpu_seconds(fused, unfused, batch, rounds: int, device) -> dict[str, list]:
    """CPU seconds of the gates alone (forward + backward), fused vs unfused, interleaved."""
    parts = fused.embedding.field_embeddings(batch)
    personal = fused.gate_ids(batch).detach()
    context = fused.embedding.concat(parts, fused.context_exclude).detach()
    banks = {"fused": fused.tower.gates, "unfused": unfused.tower.gates}

    def step(bank):
        sum(g.sum() for g in bank(personal, context)).backward()
    out = {"fused": [], "unfused": []}
    for r in range(2 * rounds + 2):
        for name in (("fused", "unfused") if r % 2 == 0 else ("unfused", "fused")):
            cpu = timed(lambda b=banks[name]: step(b), device)[1]
            if r >= 2:  # two warm-up rounds
                out[name].append(cpu)
    return out


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch-size", type=int, default=4096)
    parser.add_argument("--personal-vocab", type=int, default=1_000_000)
    parser.add_argument("--embed-dim", type=int, default=16)
    parser.add_argument("--hidden", type=int, nargs="+", default=[512, 256, 128])
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--steps-per-round", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--num-batches", type=int, default=4)
    parser.add_argument("--score-reps", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads (default 1: on shared cores, idle OpenMP threads "
                             "spin while waiting and inflate both wall and CPU time)")
    parser.add_argument("--device", default=None, help="default: cuda if available, else cpu")
    parser.add_argument("--tables", choices=["sparse", "dense"], default=None,
                        help="embedding-table gradients (default: sparse on CPU, dense on GPU)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    result = run(args)
    out = args.out or ROOT / "results" / "recsys" / (
        "throughput_cpu.json" if "cpu" in result["device"] else "throughput_gpu.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: result[k] for k in ("fused_train_samples_per_s",
                                             "unfused_train_samples_per_s", "fused_over_unfused",
                                             "fused_over_unfused_cpu_time",
                                             "gate_bank_fused_over_unfused_cpu_time",
                                             "score_samples_per_s", "peak_rss_gib")}))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
