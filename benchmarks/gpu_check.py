#!/usr/bin/env python3
"""The ASR port on a GPU, end to end, in a few minutes: tests, training, decoding, adaptation.

Usage (from the repository root; `benchmarks/gpu_check.sh` installs what is missing first):
    python benchmarks/gpu_check.py    # on cuda; writes results/asr/synthetic/gpu_check.json
    python benchmarks/gpu_check.py --device cpu --tiny  # the same steps, tiny, on any machine

Steps, each on `--device`: (1) the device tests (`tests/asr/test_device.py`); (2) an SI model
trained from scratch on a generated synthetic corpus (`demo.yaml`; no downloads, no caches),
which ends in SpeechBrain's test decoding after a checkpoint load; (3) unsupervised LHUC
adaptation of all test speakers with that model, per-speaker loop vs batched, each timed after
an untimed warm-up run and alternated, reported as seconds and as a ratio.
"""

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
from asr_adapt_speed import measure  # noqa: E402

from asr_lhuc.adapt import AdaptConfig, load_speakers  # noqa: E402
from asr_lhuc.data import prepare_synthetic  # noqa: E402
from asr_lhuc.device import describe_device, pick_device  # noqa: E402
from asr_lhuc.experiment import run_recipe  # noqa: E402
from asr_lhuc.pretrained import load_pretrained  # noqa: E402

DEMO = ROOT / "recipes" / "Synthetic" / "ASR" / "CTC" / "hparams" / "demo.yaml"
TINY = ["--n_train_speakers", "3", "--n_test_speakers", "2", "--utts_per_train_speaker", "6",
        "--utts_per_test_speaker", "4", "--rnn_neurons", "16", "--dnn_neurons", "16",
        "--cnn_channels", "[4, 8]", "--rnn_layers", "1"]


def run_device_tests(device: torch.device) -> dict:
    """pytest on the device tests; their CUDA cases run only where CUDA is."""
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider",
                           "tests/asr/test_device.py"], cwd=ROOT, capture_output=True, text=True)
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    print(proc.stdout[-3000:], proc.stderr[-2000:], sep="\n")
    return {"returncode": proc.returncode, "summary": lines[-1] if lines else "",
            "seconds": round(time.perf_counter() - start, 1)}


def train(device: torch.device, work: Path, epochs: int, tiny: bool) -> dict:
    """SI from scratch on the synthetic corpus: seconds per epoch and test WER."""
    out = work / "si"
    argv = [str(DEMO), "--mode", "si", "--init_from", "null", "--number_of_epochs", str(epochs),
            "--train_time_limit_minutes", "null", "--device", str(device),
            "--data_folder", str(work / "data"), "--output_folder", str(out),
            "--results_json", str(out / "results.json"), "--pretrained_path",
            str(out / "si.pt"), *(TINY if tiny else [])]
    results = run_recipe(argv, prepare_synthetic, "recipes/Synthetic/ASR/CTC/train.py")
    return {"epochs": results["epochs"],
            "epoch_seconds": round(results["train_seconds"] / max(results["epochs"], 1), 2),
            "test_wer": results["wer"], "test_cer": results["cer"],
            "n_test_utts": results["n_utts"], "checkpoint": str(out / "si.pt"),
            "train_loss_history": results["train_loss_history"]}


def adapt(device: torch.device, work: Path, checkpoint: str, repeats: int) -> dict:
    model, encoder, _, _ = load_pretrained(checkpoint, device)
    speakers = load_speakers(work / "data" / "test.csv")
    cfg = AdaptConfig(lr=0.02, epochs=8, batch_size=8)
    return measure(model, encoder, speakers, cfg, ["DNN.block_0.act", "DNN.block_1.act"],
                   cache=True, repeats=repeats)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--tiny", action="store_true", help="a tiny corpus and model (CI)")
    parser.add_argument("--skip_tests", action="store_true")
    parser.add_argument("--work", default="exp/gpu_check")
    parser.add_argument("--out", default="results/asr/synthetic/gpu_check.json")
    args = parser.parse_args(argv)
    device = pick_device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("gpu_check: no CUDA device here; use --device cpu to try the steps")
    work, start = Path(args.work), time.perf_counter()
    result = {"device": describe_device(device), "torch": torch.__version__,
              "command": " ".join(["python", "benchmarks/gpu_check.py", *(argv or sys.argv[1:])])}

    def save() -> None:  # after every step, so a run stopped at its time limit keeps the rest
        result["wall_seconds"] = round(time.perf_counter() - start, 1)
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=1) + "\n")

    if not args.skip_tests:
        result["device_tests"] = run_device_tests(device)
        save()
    result["training"] = train(device, work, args.epochs, args.tiny)
    save()
    result["adaptation"] = adapt(device, work, result["training"]["checkpoint"], args.repeats)
    result["batched_over_loop_speedup"] = result["adaptation"]["speedup"]
    save()
    print(json.dumps({k: v for k, v in result.items() if k != "adaptation"}, indent=1))
    failed = result.get("device_tests", {}).get("returncode", 0)
    if failed:
        raise SystemExit(f"gpu_check: the device tests failed ({result['device_tests']})")
    return result


if __name__ == "__main__":
    main()
