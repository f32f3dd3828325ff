"""TorchRec path: EmbeddingBagCollection drop-in, and DistributedModelParallel on gloo/CPU.

Skips when TorchRec (an optional extra) is not importable.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from random_batch import random_batch, tiny_spec

from recsys_lhuc.distributed.torchrec_embedding import (
    TORCHREC_ERROR,
    TorchRecFeatureEmbedding,
    from_feature_embedding,
    to_torchrec,
)
from recsys_lhuc.models import FeatureEmbedding, build_model

pytestmark = pytest.mark.skipif(
    TORCHREC_ERROR is not None,
    reason=f"TorchRec not importable (optional extra; `make setup` installs the CPU build: "
           f"pip install --no-deps torchrec==1.9.2 + fbgemm-gpu-cpu==1.9.0): {TORCHREC_ERROR}")

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent


def test_ebc_embedding_matches_feature_embedding():
    spec = tiny_spec()
    torch.manual_seed(0)
    plain = FeatureEmbedding(spec)
    swapped = from_feature_embedding(plain, spec)
    batch = random_batch(spec, 16)
    batch["genres"][0] = torch.tensor([3, 0, 0])  # padding in the middle of a multi field
    batch["genres"][1] = 0  # all padding -> zeros
    torch.testing.assert_close(swapped(batch), plain(batch))
    assert swapped.names == plain.names
    assert not swapped.field_embeddings(batch)["genres"][1].any()


def test_to_torchrec_keeps_every_model_output_and_trains():
    spec = tiny_spec()
    batch = random_batch(spec, 16)
    for name in ("dnn", "ppnet", "lhuc_user", "pepnet"):
        torch.manual_seed(0)
        model = build_model(name, spec, hidden=(16, 8))
        expected = model(batch)
        converted = to_torchrec(model, spec)
        assert not any(isinstance(m, FeatureEmbedding) for m in converted.modules())
        assert any(isinstance(m, TorchRecFeatureEmbedding) for m in converted.modules())
        out = converted(batch)
        if isinstance(out, dict):
            for task in out:
                torch.testing.assert_close(out[task], expected[task])
            out = out["like"]
        else:
            torch.testing.assert_close(out, expected)
        out.sum().backward()
        table = next(m for m in converted.modules() if isinstance(m, TorchRecFeatureEmbedding))
        assert all(p.grad is not None and p.grad.any() for p in table.ebc.parameters())


def test_distributed_model_parallel_table_wise_on_gloo_cpu(tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           str(HERE / "torchrec_check.py"), "--out", str(tmp_path),
           "--steps", "3", "--sharding-type", "table_wise"]
    run = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    for r in ranks:
        assert r["max_logit_diff_before"] < 1e-6  # sharded model == unsharded reference
        assert r["logit_change_from_training"] > 1e-3  # training moved the logits...
        assert r["max_logit_diff_after"] < 1e-5  # ...and the sharded model moved the same way
    # Table-wise: each of the 6 tables (4 shared + 2 gate-id) lives whole on exactly one rank.
    held = [set(r["local_table_shards"]) for r in ranks]
    assert held[0] and held[1] and not held[0] & held[1]
    assert len(held[0] | held[1]) == 6
