"""No silent wrong results: each bad input the ranking port was seen to mishandle stops with an
error naming the file or config key, or is counted and reported."""
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from recsys_data_helpers import ROOT, TINY_SYNTHETIC, tiny_config

from recsys_lhuc.cli import main, parse_args
from recsys_lhuc.config import ConfigError, check_config
from recsys_lhuc.data import DataError, generate_synthetic, loaders, prepare
from recsys_lhuc.data.loaders import find_ml100k, read_parquet_ids_as_strings
from recsys_lhuc.score import Ranker
from recsys_lhuc.train import CheckpointError, RunLockedError, load_config, train

FILE_SPEC = {"categorical": [{"name": "user_id", "embed_dim": 4},
                             {"name": "item_id", "embed_dim": 4}],
             "numeric": ["f0", "f1"], "multi": [], "label": "click", "user_field": "user_id"}


def synthetic_frame(rows_per_user: int = 20) -> pd.DataFrame:
    df = generate_synthetic(n_users=40, n_items=30, rows_per_user=rows_per_user, n_groups=2,
                            n_features=2, seed=3)
    return df[["user_id", "item_id", "f0", "f1", "click"]].copy()


def file_cfg(tmp_path, path, **data) -> dict:
    cfg = {"data": {"source": "file", "path": str(path), "cache_dir": str(tmp_path / "cache"),
                    **data},
           "spec": FILE_SPEC, "model": {"name": "dnn", "hidden": [8]},
           "train": {"epochs": 1, "batch_size": 64, "progress": False}}
    return check_config(cfg)


# ------------------------------------------------------------------ ids stay strings
def test_an_empty_id_cell_does_not_turn_ids_into_floats(tmp_path):
    frame = synthetic_frame()
    dirty = frame.copy()
    dirty.loc[5, "user_id"] = None  # one empty cell: pandas would read the column as floats
    dirty.to_csv(tmp_path / "train.csv", index=False)
    frame.to_csv(tmp_path / "clean.csv", index=False)
    prepared = prepare(file_cfg(tmp_path, tmp_path / "train.csv"))
    keys = set(prepared.vocabs["user_id"].index)
    assert "3" in keys and not any(k.endswith(".0") for k in keys)
    train(file_cfg(tmp_path, tmp_path / "train.csv"), tmp_path / "run")
    ranker = Ranker.from_run(tmp_path / "run")
    ranker.score_frame(loaders.load_table(tmp_path / "clean.csv", ["user_id", "item_id"]))
    # Every user of the clean file was seen in training (before: all 800 rows OOV).
    assert ranker.oov_counts["user_id"] == 0


def test_parquet_ids_with_nulls_read_as_whole_number_strings(tmp_path):
    pd.DataFrame({"user_id": [10.0, np.nan, 3.0], "price": [1.5, 2.0, 2.5]}).to_parquet(
        tmp_path / "t.parquet")
    df = read_parquet_ids_as_strings(tmp_path / "t.parquet", ["user_id"])
    assert df["user_id"].tolist()[0] == "10" and df["user_id"].tolist()[2] == "3"
    assert df["user_id"].isna().tolist() == [False, True, False]
    assert df["price"].tolist() == [1.5, 2.0, 2.5]  # other columns untouched


# ------------------------------------------------------------------ duplicates
def test_duplicates_are_counted_and_can_be_dropped_before_splitting(tmp_path, caplog):
    frame = synthetic_frame(rows_per_user=40).drop_duplicates(ignore_index=True)
    doubled = pd.concat([frame, frame.iloc[:300]], ignore_index=True)
    doubled.to_csv(tmp_path / "dup.csv", index=False)
    kept = prepare(file_cfg(tmp_path, tmp_path / "dup.csv"))
    assert kept.stats["duplicate_rows"] == 300 and kept.stats["duplicates_dropped"] == 0
    assert sum(kept.stats["rows"].values()) == len(frame) + 300
    assert "300 rows repeat an earlier row exactly" in caplog.text
    dropped = prepare(file_cfg(tmp_path, tmp_path / "dup.csv", dedupe=True))
    assert dropped.stats["duplicates_dropped"] == 300
    assert sum(dropped.stats["rows"].values()) == len(frame)

    def rows(split):
        cols = ["user_id", "item_id", "f0", "f1", "click"]
        return {tuple(r) for r in pd.DataFrame(dropped.splits[split].to_dict())[cols].to_numpy()}
    assert not rows("train") & rows("test")


# ------------------------------------------------------------------ labels and row counts
def test_a_label_of_one_class_is_an_error(tmp_path):
    frame = synthetic_frame().assign(click=1.0)
    frame.to_csv(tmp_path / "ones.csv", index=False)
    with pytest.raises(DataError, match=r"ones.csv: label column 'click' has only the value"):
        prepare(file_cfg(tmp_path, tmp_path / "ones.csv"))


def test_too_few_rows_is_an_error_not_a_keyerror(tmp_path):
    synthetic_frame().head(5).assign(click=[0, 1, 0, 1, 0]).to_csv(tmp_path / "five.csv",
                                                                   index=False)
    with pytest.raises(DataError, match=r"five.csv: too few rows \(5\).*split is empty"):
        train(file_cfg(tmp_path, tmp_path / "five.csv"), tmp_path / "run")


# ------------------------------------------------------------------ config
@pytest.mark.parametrize("patch,message", [
    ({"trian": {}}, r"unknown config key 'trian' \(did you mean 'train'\?\)"),
    ({"data": {"spilt": {}}}, r"'data.spilt' \(did you mean 'split'\?\)"),
    ({"spec": {"numerics": ["f0"]}}, r"'spec.numerics' \(did you mean 'numeric'\?\)"),
    ({"data": {"split": {"protocl": "random"}}}, r"'data.split.protocl' \(did you mean "
                                                 r"'protocol'\?\)"),
    ({"spec": {"categorical": [{"name": "user_id", "embed_dims": 4}]}},
     r"'spec.categorical\[0\].embed_dims' \(did you mean 'embed_dim'\?\)"),
    ({"model": {"hiden": [8]}}, r"'model.hiden' \(did you mean 'hidden'\?\)"),
    ({"model": {"name": "ppnte"}}, r"model.name: unknown model 'ppnte' \(did you mean 'ppnet'"),
])
def test_unknown_config_keys_are_rejected_at_every_level(patch, message):
    cfg = json.loads(json.dumps(TINY_SYNTHETIC))
    for section, value in patch.items():
        if isinstance(cfg.get(section), dict):
            for key, sub in value.items():
                node = cfg[section]
                if isinstance(sub, dict) and isinstance(node.get(key), dict):
                    node[key].update(sub)
                else:
                    node[key] = sub
        else:
            cfg[section] = value
    with pytest.raises(ConfigError, match=message):
        check_config(cfg)


def write_config(tmp_path) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(tiny_config(tmp_path)))
    return path


def test_config_values_are_coerced_or_rejected_naming_the_key(tmp_path):
    path = write_config(tmp_path)
    cfg = load_config(path, ["train.lr=1e-3", "train.epochs=2.0"])  # YAML: '1e-3' is a string
    assert cfg["train"]["lr"] == 0.001 and isinstance(cfg["train"]["lr"], float)
    assert cfg["train"]["epochs"] == 2 and isinstance(cfg["train"]["epochs"], int)
    for item, message in [("train.epochs=three", r"train.epochs: expected an integer, got "
                                                 r"'three'"),
                          ("model.hidden=64", r"model.hidden: expected a list.*got 64"),
                          ("train.batch_size=0", r"train.batch_size: must be at least 1"),
                          ("train.compile=maybe", r"train.compile: expected true or false"),
                          ("data.split.fractions=[0.8,0.2]", r"data.split.fractions: expected 3 "
                                                             r"items"),
                          ("train.epochs", r"--set expects SECTION.KEY=VALUE")]:
        with pytest.raises(ConfigError, match=message):
            load_config(path, [item])


def test_repeated_set_flags_accumulate(tmp_path):
    args = parse_args(["train", "--config", "c.yaml", "--out", "o", "--set", "model.name=ppnet",
                       "--set", "train.epochs=2", "train.lr=0.01"])
    assert args.set == ["model.name=ppnet", "train.epochs=2", "train.lr=0.01"]
    cfg = load_config(write_config(tmp_path), args.set)
    assert cfg["model"]["name"] == "ppnet" and cfg["train"]["epochs"] == 2


def test_cli_reports_config_errors_without_a_traceback(tmp_path, capsys):
    code = main(["train", "--config", str(write_config(tmp_path)), "--out",
                 str(tmp_path / "run"), "--set", "train.epochs=three"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: ") and "train.epochs" in err
    assert "Traceback" not in err


# ------------------------------------------------------------------ checkpoints and run folders
def test_truncated_last_pt_names_the_file_and_suggests_no_resume(tmp_path):
    cfg = tiny_config(tmp_path, train={"stop_after_epochs": 1})
    train(cfg, tmp_path / "run")
    last = tmp_path / "run" / "last.pt"
    last.write_bytes(last.read_bytes()[: last.stat().st_size // 2])
    with pytest.raises(CheckpointError, match=r"run/last.pt: cannot read.*--no-resume"):
        train(tiny_config(tmp_path), tmp_path / "run")
    assert train(tiny_config(tmp_path), tmp_path / "run", resume=False)["epochs_run"] == 3


def test_a_second_run_into_the_same_folder_is_refused(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (out / ".lock").write_text(f"{holder.pid} {socket.gethostname()}")
        with pytest.raises(RunLockedError, match=r"run is in use by another run.*\.lock"):
            train(tiny_config(tmp_path), out)
        assert not (out / "config.yaml").exists()  # nothing of the second run was written
    finally:
        holder.kill()
        holder.wait()
    # The holder is gone: its stale lock is taken over, and released at the end.
    assert train(tiny_config(tmp_path, train={"epochs": 1}), out)["epochs_run"] == 1
    assert not (out / ".lock").exists()


def test_two_cli_runs_into_one_folder_one_is_refused(tmp_path):
    # Long enough that the first run is still going when the second starts (it is killed then).
    cfg = tiny_config(tmp_path, train={"epochs": 500, "patience": 500})
    cfg["data"]["synthetic"]["rows_per_user"] = 60
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "recsys_lhuc", "train", "--config", str(path), "--out", str(out)]
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    first = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    try:
        for _ in range(1200):
            if (out / ".lock").exists() or first.poll() is not None:
                break
            subprocess.run(["sleep", "0.05"])
        second = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    finally:
        first.kill()
        first.wait()
    assert second.returncode == 2, second.stderr[-2000:]
    assert "is in use by another run" in second.stderr


# ------------------------------------------------------------------ ML-100K download
def test_ml100k_is_never_fetched_implicitly(tmp_path, monkeypatch):
    monkeypatch.setattr(loaders, "default_ml100k_folders", lambda: [tmp_path / "nothing"])

    def forbidden(*args, **kwargs):
        raise AssertionError("find_ml100k must not run or download anything")
    monkeypatch.setattr(loaders.subprocess, "run", forbidden)
    monkeypatch.setattr(loaders.urllib.request, "urlopen", forbidden)
    with pytest.raises(DataError, match=r"python -m recsys_lhuc download-ml100k"):
        find_ml100k(None)


def test_download_ml100k_command_runs_the_fetch_script(tmp_path, monkeypatch, capsys):
    folder = tmp_path / "ml"
    folder.mkdir()
    (folder / "u.data").write_text("1\t2\t5\t0\n")
    script = tmp_path / "shared" / "get_ml100k.sh"
    script.parent.mkdir()
    script.write_text(f"#!/usr/bin/env bash\necho fetching >&2\necho {folder}\n")
    monkeypatch.setattr(loaders, "SHARED_DATA", script.parent)
    assert main(["download-ml100k"]) == 0
    assert capsys.readouterr().out.strip() == str(folder)
    assert find_ml100k(folder) == folder
