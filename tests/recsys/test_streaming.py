"""Training from Parquet shards larger than memory, GPU-side batches, and the speed options."""
import importlib.util
import json

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from recsys_data_helpers import ROOT, tiny_config

from recsys_lhuc.cli import main
from recsys_lhuc.data import Batches, prepare
from recsys_lhuc.data.shards import ShardBatches, load_shards, write_synthetic_shards
from recsys_lhuc.evaluate import evaluate
from recsys_lhuc.train import train, use_bf16

ROWS, VOCAB = 6000, 50


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    out = tmp_path_factory.mktemp("shards")
    write_synthetic_shards(out, ROWS, personal_vocab=VOCAB, val_fraction=0.2, test_fraction=0.2,
                           shard_rows=2500, row_group_rows=1000, seed=0)
    return out


def test_generator_writes_shards_chunk_by_chunk(shards):
    files = sorted((shards / "train").glob("*.parquet"))
    assert len(files) == 3  # 2500 + 2500 + 1000 rows
    groups = [pq.ParquetFile(f).metadata.num_row_groups for f in files]
    assert groups == [3, 3, 1]  # row groups of at most 1000 rows, never a whole split at once
    spec, splits, meta = load_shards(shards)
    assert meta["rows"] == {"train": ROWS, "val": 1200, "test": 1200}
    assert len(spec.categorical) == 26 and len(spec.numeric) == 13
    assert spec.get_field("uid").vocab_size == VOCAB
    table = pq.read_table(files[0])
    uid, c4 = table.column("uid").to_numpy(), table.column("C4").to_numpy()
    assert uid.min() >= 1 and uid.max() < VOCAB and c4.max() < 100_000
    assert 0.05 < table.column("click").to_numpy().mean() < 0.95


def test_shard_batches_cover_every_row_once_and_reshuffle_by_epoch(shards):
    spec, splits, _ = load_shards(shards)
    batches = ShardBatches(splits["train"], spec, 512, shuffle=True, seed=1, mix=2)

    def epoch(e):
        batches.set_epoch(e)
        got = list(batches)
        return torch.cat([b["uid"] for b in got]), torch.cat([b["I0"] for b in got]), got
    uid0, x0, got = epoch(0)
    assert [len(b["uid"]) for b in got[:-1]] == [512] * (len(got) - 1) and len(got) == len(batches)
    assert got[0]["uid"].dtype == torch.int64 and got[0]["I0"].dtype == torch.float32
    file_x = splits["train"].column("I0")
    assert np.array_equal(np.sort(x0.numpy()), np.sort(file_x))  # every row exactly once
    assert not np.array_equal(x0.numpy(), file_x)  # shuffled
    uid_again, x_again, _ = epoch(0)
    assert torch.equal(x0, x_again)  # same seed and epoch: same batches (resume)
    assert not torch.equal(x0, epoch(1)[1])
    ordered = ShardBatches(splits["val"], spec, 300)
    assert np.array_equal(torch.cat([b["I3"] for b in ordered]).numpy(),
                          splits["val"].column("I3"))  # evaluation keeps file order


def test_shard_batches_raise_reader_errors(shards, tmp_path):
    spec, splits, _ = load_shards(shards)
    batches = ShardBatches(splits["train"], spec, 512)
    batches.split.units = [(tmp_path / "missing.parquet", 0, 10)]
    with pytest.raises(FileNotFoundError):  # from the worker thread, not a silent hang
        list(batches)


def test_train_streams_shards_and_reports_speed(shards, tmp_path):
    cfg = {"data": {"source": "shards", "path": str(shards)},
           "model": {"name": "ppnet", "hidden": [32, 16]},
           "train": {"epochs": 2, "batch_size": 256, "lr": 0.003, "progress": False,
                     "speed_warmup_steps": 3}}
    res = train(cfg, tmp_path / "run")
    assert res["test"]["rows"] == 1200 and res["data"]["rows"]["train"] == ROWS
    assert res["test"]["auc"] > 0.6  # the planted model is learnable from the numerics
    speed = res["train_speed"]
    assert speed["samples_per_s"] > 0 and speed["samples_timed"] > 0
    assert speed["samples_timed"] < 2 * ROWS  # the warm-up steps are left out
    again = evaluate(tmp_path / "run", "test")
    assert again["auc"] == pytest.approx(res["test"]["auc"], abs=1e-6)


def test_shards_need_a_meta_file_and_no_spec_section(tmp_path, shards):
    with pytest.raises(ValueError, match=r"no meta.json.*prepare-synthetic-large"):
        prepare({"data": {"source": "shards", "path": str(tmp_path)}})


def test_prepare_synthetic_large_command(tmp_path, capsys):
    assert main(["prepare-synthetic-large", "--out", str(tmp_path / "s"), "--rows", "700",
                 "--personal-vocab", "20", "--row-group-rows", "256"]) == 0
    assert json.loads(capsys.readouterr().out)["rows"] == {"train": 700, "val": 7, "test": 7}
    assert (tmp_path / "s" / "meta.json").exists()


def test_batches_sliced_on_a_device_equal_host_batches(tmp_path):
    prepared = prepare(tiny_config(tmp_path))
    spec = prepared.spec
    host = Batches(prepared.splits["train"], spec, 100, shuffle=True, seed=3)
    on_device = Batches(prepared.splits["train"], spec, 100, shuffle=True, seed=3, device="cpu")
    for e in (1, 2):
        host.set_epoch(e)
        on_device.set_epoch(e)
        for a, b in zip(host, on_device):
            assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_bf16_only_on_cuda_and_by_batch_size():
    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    assert not use_bf16(cpu, "bf16", 65536)
    assert not use_bf16(cuda, "auto", 4096) and use_bf16(cuda, "auto", 65536)
    assert use_bf16(cuda, "bf16", 4096) and not use_bf16(cuda, "off", 65536)


def test_gate_fusion_default_per_device_is_recorded(tmp_path):
    cfg = tiny_config(tmp_path, model={"name": "ppnet", "hidden": [16, 8]},
                      train={"epochs": 1, "device": "cpu"})
    train(cfg, tmp_path / "run")
    saved = (tmp_path / "run" / "config.yaml").read_text()
    assert "fused_gates: false" in saved  # CPU: separate gates (measured faster there)
    assert evaluate(tmp_path / "run", "test")["rows"] == 360


def load_benchmark(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_throughput_benchmark_with_dense_tables(tmp_path):
    """The GPU default (dense tables, no SparseAdam), run on CPU: it used to crash."""
    bench = load_benchmark("recsys_throughput")
    out = tmp_path / "t.json"
    bench.main(["--device", "cpu", "--tables", "dense", "--personal-vocab", "100", "--hidden", "8",
                "--rounds", "2", "--steps-per-round", "1", "--warmup", "1", "--num-batches", "2",
                "--score-reps", "2", "--batch-size", "32", "--out", str(out)])
    res = json.loads(out.read_text())
    assert res["config"]["optimizers"] == "Adam" and res["fused_train_samples_per_s"] > 0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_training_on_cuda_streams_and_compiles(shards, tmp_path):
    cfg = {"data": {"source": "shards", "path": str(shards)},
           "model": {"name": "ppnet", "hidden": [32, 16]},
           "train": {"epochs": 1, "batch_size": 256, "progress": False, "compile": True,
                     "device": "cuda"}}
    res = train(cfg, tmp_path / "run")
    assert res["device"].startswith("cuda") and res["test"]["auc"] > 0.6
