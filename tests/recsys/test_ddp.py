"""torchrun DDP on CPU, gloo, 2 processes: ranks stay in sync and match big-batch training;
the real training CLI shards, syncs, gathers metrics and resumes under torchrun."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from ddp_check import rank_batches, train
from random_batch import tiny_spec
from recsys_data_helpers import tiny_config

from recsys_lhuc.distributed import DistInfo, shard_indices
from recsys_lhuc.evaluate import evaluate
from recsys_lhuc.models import build_model
from recsys_lhuc.train import load_checkpoint

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
STEPS, BATCH = 3, 16


def test_torchrun_gloo_two_ranks_stay_in_sync(tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           str(HERE / "ddp_check.py"), "--out", str(tmp_path),
           "--steps", str(STEPS), "--batch-size", str(BATCH)]
    run = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    rank0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    rank1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    assert rank0.keys() == rank1.keys()
    for name in rank0:
        torch.testing.assert_close(rank0[name], rank1[name], rtol=0, atol=0, msg=name)

    # One process on both ranks' batches concatenated takes the same steps (mean loss = mean grad).
    torch.manual_seed(0)
    reference = build_model("ppnet", tiny_spec(), hidden=(16, 8))
    initial = {k: v.clone() for k, v in reference.state_dict().items()}
    per_rank = [rank_batches(r, STEPS, BATCH) for r in range(2)]
    joint = [{k: torch.cat([a[k], b[k]]) for k in a} for a, b in zip(*per_rank)]
    train(reference, joint)
    for name, value in reference.state_dict().items():
        torch.testing.assert_close(rank0[name], value, rtol=1e-4, atol=1e-5, msg=name)
    assert any(not torch.equal(initial[n], rank0[n]) for n in initial), "no training happened"
    # The gates trained too (their output layers left zero), not just the tower.
    assert rank0["tower.gates.fc2s.0.weight"].abs().sum() > 0


def test_shard_indices_cover_all_rows_evenly():
    shards = [shard_indices(10, DistInfo(r, 3, r, torch.device("cpu")), seed=1) for r in range(3)]
    assert [len(s) for s in shards] == [4, 4, 4]
    assert set(torch.cat(shards).tolist()) == set(range(10))
    again = shard_indices(10, DistInfo(1, 3, 1, torch.device("cpu")), seed=1)
    assert torch.equal(again, shards[1])


def torchrun_train(config: Path, out: Path, *sets: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "recsys_lhuc", "train", "--config", str(config), "--out", str(out),
           "--set", "train.device=cpu", *sets]
    run = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    return run


def test_cli_train_under_torchrun_gloo_shards_syncs_and_resumes(tmp_path):
    """The real `train` CLI with 2 gloo ranks: killed after epoch 1, resumed, finished."""
    cfg = tiny_config(tmp_path, train={"epochs": 2, "patience": 5, "batch_size": 64})
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(cfg))
    out = tmp_path / "run"
    torchrun_train(config, out, "train.stop_after_epochs=1")
    assert (out / "last.pt").exists() and not (out / "results.json").exists()
    assert load_checkpoint(out / "last.pt")["state"]["epoch"] == 1

    torchrun_train(config, out)  # resumes from last.pt under DDP
    res = json.loads((out / "results.json").read_text())
    assert res["world_size"] == 2 and res["epochs_run"] == 2 and len(res["history"]) == 2
    digests = res["final_weight_digests"]  # one per rank, from the weights each rank trained
    assert len(digests) == 2 and digests[0] == digests[1]
    # Each rank took its own half of every epoch: half the steps of one process.
    train_rows = res["data"]["rows"]["train"]
    assert res["steps"] == 2 * math.ceil(math.ceil(train_rows / 2) / 64)
    # Metrics cover the whole test split (gathered from both ranks) and match a
    # single-process evaluation of the saved best weights.
    assert res["test"]["rows"] == res["data"]["rows"]["test"]
    single = evaluate(out, "test", device="cpu")
    assert single["auc"] == pytest.approx(res["test"]["auc"], abs=1e-9)
    assert single["logloss"] == pytest.approx(res["test"]["logloss"], abs=1e-6)
    assert res["test"]["auc"] > 0.6
