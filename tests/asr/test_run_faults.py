"""Faults of a training run: a killed run resumes exactly, damaged checkpoints are named (and
skipped), a second run into the same folder is refused, and a pretrained file can be decoded
without its training folder. Tiny synthetic corpus and model: the file runs in ~40 s on CPU."""

import json
import logging
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch
from speechbrain.utils.checkpoints import Checkpointer

from asr_lhuc.checkpoints import recover
from asr_lhuc.data import prepare_synthetic
from asr_lhuc.experiment import run_recipe
from asr_lhuc.pretrained import load_pretrained, pretrained_results
from asr_lhuc.run_lock import LOCK_NAME, FolderInUseError, RunLock

ROOT = Path(__file__).resolve().parents[2]
SYNTHETIC = ROOT / "recipes" / "Synthetic" / "ASR" / "CTC"
TINY = ["--cnn_channels", "[4, 8]", "--rnn_layers", "1", "--rnn_neurons", "16",
        "--dnn_neurons", "16", "--batch_size", "4", "--speed_perturb", "null",
        "--n_train_speakers", "2", "--n_test_speakers", "2", "--utts_per_train_speaker", "6",
        "--utts_per_test_speaker", "2"]


def run(tmp: Path, out: str, *extra: str) -> dict:
    """The synthetic recipe (dropout and SpecAugment on: they draw random numbers)."""
    folder = tmp / out
    args = [str(SYNTHETIC / "hparams" / "train.yaml"), *TINY, "--data_folder", str(tmp / "data"),
            "--output_folder", str(folder), "--results_json", str(folder / "results.json"),
            "--pretrained_path", str(folder / "pretrained.pt"), *extra]
    return run_recipe(args, prepare_synthetic, "train.py")


def checkpoints(folder: Path) -> list[Path]:
    return sorted((folder / "save").glob("CKPT+*"))


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """An uninterrupted 2-epoch run, and one 'killed' after epoch 1 then rerun for 2."""
    tmp = tmp_path_factory.mktemp("faults")
    whole = run(tmp, "whole", "--number_of_epochs", "2")
    run(tmp, "resumed", "--number_of_epochs", "1")
    resumed = run(tmp, "resumed", "--number_of_epochs", "2")
    return tmp, whole, resumed


def test_a_resumed_run_ends_with_the_weights_and_metrics_of_an_uninterrupted_one(runs):
    tmp, whole, resumed = runs
    for key in ("wer", "cer", "epochs", "n_utts", "train_loss_history"):
        assert resumed[key] == whole[key], key
    assert len(resumed["train_loss_history"]) == 2, "epoch 1's loss was lost in the resume"
    a = torch.load(tmp / "whole" / "pretrained.pt", weights_only=True)["state_dict"]
    b = torch.load(tmp / "resumed" / "pretrained.pt", weights_only=True)["state_dict"]
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a), "the resumed weights differ"
    saved = json.loads((tmp / "resumed" / "results.json").read_text())
    assert saved["train_loss_history"] == whole["train_loss_history"]


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:200])  # a run killed while writing it


def garble(path: Path) -> None:
    """Overwrite some of the weights (torch.load would load them without noticing)."""
    with zipfile.ZipFile(path) as archive:
        weights = next(i for i in archive.infolist() if i.filename.endswith("data/0"))
    data = bytearray(path.read_bytes())
    start = weights.header_offset + 200  # past the local header, inside the 1600 bytes
    data[start: start + 100] = b"U" * 100
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("damage", [truncate, garble])
def test_a_damaged_checkpoint_is_named_and_the_previous_one_used(tmp_path, caplog, damage):
    layer = torch.nn.Linear(20, 20)
    checkpointer = Checkpointer(tmp_path, {"model": layer})
    with torch.no_grad():
        layer.weight.fill_(1.0)
    older = checkpointer.save_checkpoint(meta={"WER": 10.0})
    with torch.no_grad():
        layer.weight.fill_(2.0)
    newer = checkpointer.save_checkpoint(meta={"WER": 5.0})
    damage(newer.path / "model.ckpt")
    for min_key in (None, "WER"):  # resuming (latest first) and testing (best first)
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            assert recover(checkpointer, min_key=min_key).path == older.path
        assert f"checkpoint {newer.path} is damaged (unreadable: model.ckpt" in caplog.text
        assert torch.equal(layer.weight, torch.ones(20, 20))


def test_when_every_checkpoint_is_damaged_the_error_says_what_to_do(runs):
    tmp, *_ = runs
    folder = tmp / "resumed"
    for ckpt in checkpoints(folder):
        (ckpt / "model.ckpt").write_bytes(b"")
    with pytest.raises(RuntimeError, match="has damaged files.*delete those CKPT\\+ folders"):
        run(tmp, "resumed", "--number_of_epochs", "3")
    assert not (folder / LOCK_NAME).exists(), "a failed run left its lock behind"


def test_a_truncated_pretrained_file_is_named(runs, tmp_path):
    tmp, *_ = runs
    cut = tmp_path / "cut.pt"
    cut.write_bytes((tmp / "whole" / "pretrained.pt").read_bytes()[:5000])
    with pytest.raises(ValueError, match=f"{cut} .*truncated or damaged"):
        load_pretrained(cut)


def test_decode_mode_tests_a_pretrained_file_without_its_training_folder(runs):
    tmp, *_ = runs
    si = SYNTHETIC / "pretrained" / "si.pt"
    out = run(tmp, "decoded", "--test_checkpoint", str(si))
    folder = tmp / "decoded"
    assert not checkpoints(folder) and not (folder / "pretrained.pt").exists(), "it trained"
    assert out["checkpoint"] == str(si) and out["n_utts"] == 4 and out["n_speakers"] == 2
    trained = pretrained_results(si)  # the file's own training record
    assert out["epochs"] == trained["epochs"] > 0
    assert out["train_seconds"] == trained["train_seconds"] > 0
    assert out["cer"] < 0.3, "the pretrained model decoded badly: wrong weights or units?"
    assert json.loads((folder / "results.json").read_text()) == out
    assert "%WER" in (folder / "wer_test.txt").read_text()


def test_decode_mode_refuses_a_checkpoint_with_other_units(runs):
    tmp, *_ = runs
    si = SYNTHETIC / "pretrained" / "si.pt"
    with pytest.raises(ValueError, match="outputs the units"):
        run(tmp, "decoded_chars", "--test_checkpoint", str(si), "--characters",
            "\" 'ABCDEFGHIJKLMNOPQRSTUVWXYZ0\"")  # one unit more


def test_a_second_run_into_a_live_runs_folder_is_refused(tmp_path):
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        lock = tmp_path / "out" / LOCK_NAME
        lock.parent.mkdir()
        lock.write_text(json.dumps({"pid": sleeper.pid, "host": os.uname().nodename,
                                    "started": 0, "command": "python train.py x.yaml"}))
        with pytest.raises(FolderInUseError, match=f"pid {sleeper.pid}.*python train.py x.yaml"):
            run(tmp_path, "out", "--number_of_epochs", "1")
        assert lock.exists(), "the refused run removed the other run's lock"
        assert not (tmp_path / "out" / "train_log.txt").exists(), "the refused run wrote logs"
    finally:
        sleeper.kill()
        sleeper.wait()


def test_a_dead_runs_lock_is_taken_over_with_a_warning(tmp_path, caplog):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (tmp_path / LOCK_NAME).write_text(json.dumps({"pid": dead.pid, "host": os.uname().nodename}))
    with caplog.at_level(logging.WARNING), RunLock(tmp_path) as lock:
        assert json.loads(lock.path.read_text())["pid"] == os.getpid()
    assert f"no longer running (pid {dead.pid}" in caplog.text
    assert not lock.path.exists(), "the lock outlived its run"
    with RunLock(tmp_path), pytest.raises(FolderInUseError, match="in use by another run"):
        RunLock(tmp_path).acquire()  # this process's own live lock


def test_recipes_write_under_exp_and_into_results_only_when_asked():
    yamls = sorted((ROOT / "recipes").glob("*/ASR/CTC/hparams/*.yaml"))
    assert len(yamls) >= 10
    for path in yamls:
        outputs = r"^(output_folder|results_folder|results_json|pretrained_path): *([^#\n]*)"
        for key, value in re.findall(outputs, path.read_text(), flags=re.M):
            value = value.strip()
            assert value.startswith(("exp/", "!ref exp/", "!ref <")) or value == "null", (
                f"{path.name}: {key}: {value} is not under exp/")
