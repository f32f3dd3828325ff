"""Training loop, metrics, checkpoints/resume, evaluate and score APIs, and the CLI."""
import json
import subprocess
import sys
from itertools import product

import numpy as np
import pandas as pd
import pytest
import torch
from recsys_data_helpers import ROOT, tiny_config

from recsys_lhuc.data import prepare
from recsys_lhuc.evaluate import evaluate
from recsys_lhuc.metrics import auc, gauc, logloss
from recsys_lhuc.score import Ranker, score
from recsys_lhuc.train import TrainConfig, load_checkpoint, load_config, train


# ------------------------------------------------------------------ metrics
def brute_force_auc(labels, scores):
    pos = [s for y, s in zip(labels, scores) if y == 1]
    neg = [s for y, s in zip(labels, scores) if y == 0]
    wins = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p, n in product(pos, neg))
    return wins / (len(pos) * len(neg))


def test_auc_matches_pairwise_definition_with_ties():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 200)
    scores = np.round(rng.random(200), 1)  # many ties
    assert auc(labels, scores) == pytest.approx(brute_force_auc(labels, scores))
    assert auc([0, 0, 1, 1], [0.1, 0.2, 0.3, 0.4]) == 1.0
    assert np.isnan(auc([1, 1], [0.2, 0.3]))


def test_gauc_weights_by_impressions_and_skips_one_class_users():
    labels = [1, 0, 1, 0, 0, 1, 1, 1]
    scores = [0.9, 0.1, 0.2, 0.8, 0.5, 0.6, 0.7, 0.8]
    users = ["a", "a", "b", "b", "b", "b", "c", "c"]  # c has one class only
    value, used, skipped = gauc(labels, scores, users)
    a, b = 1.0, brute_force_auc([1, 0, 0, 1], [0.2, 0.8, 0.5, 0.6])
    assert (used, skipped) == (2, 1)
    assert value == pytest.approx((2 * a + 4 * b) / 6)


def test_logloss():
    assert logloss([1, 0], [0.5, 0.5]) == pytest.approx(np.log(2))
    assert logloss([1], [1.0]) < 1e-6


# ------------------------------------------------------------------ training
def test_training_learns_and_writes_results(tmp_path):
    cfg = tiny_config(tmp_path)
    res = train(cfg, tmp_path / "run")
    hist = res["history"]
    assert len(hist) == 3 and hist[-1]["train_loss"] < hist[0]["train_loss"]
    assert res["test"]["auc"] > 0.65  # random is 0.5; the tiny set's ceiling is ~0.8
    assert res["test"]["auc"] <= res["data"]["ceiling"]["auc"] + 0.03
    assert res["test"]["gauc_users"] > 0 and res["test"]["rows"] == 360
    saved = json.loads((tmp_path / "run" / "results.json").read_text())
    assert saved["test"]["auc"] == pytest.approx(res["test"]["auc"])
    ckpt = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    assert ckpt["state"]["epoch"] == 3 and len(ckpt["optimizers"]) == 1
    # evaluate() on the run folder reproduces the test metrics from the best checkpoint
    again = evaluate(tmp_path / "run", "test")
    assert again["auc"] == pytest.approx(res["test"]["auc"], abs=1e-6)


def test_early_stopping_on_val_auc(tmp_path):
    # lr so high that val AUC cannot keep improving; patience 1 must stop before 8 epochs
    cfg = tiny_config(tmp_path, train={"epochs": 8, "patience": 1, "lr": 0.3})
    res = train(cfg, tmp_path / "run")
    best = max(h["val_auc"] for h in res["history"])
    assert res["epochs_run"] < 8
    assert res["history"][res["best_epoch"] - 1]["val_auc"] == best
    assert res["epochs_run"] == res["best_epoch"] + 1


def test_resume_after_stop_matches_uninterrupted_run(tmp_path):
    cfg = tiny_config(tmp_path, model={"name": "ppnet", "hidden": [16, 8], "dropout": 0.1})
    full = train(cfg, tmp_path / "full")
    stopped = tiny_config(tmp_path, model=cfg["model"], train={"stop_after_epochs": 1})
    assert train(stopped, tmp_path / "cut") == {"stopped_after_epoch": 1}
    assert not (tmp_path / "cut" / "results.json").exists()
    resumed = train(cfg, tmp_path / "cut")  # picks up last.pt at epoch 1
    assert resumed["epochs_run"] == full["epochs_run"] == 3
    assert resumed["test"]["auc"] == full["test"]["auc"]
    assert resumed["test"]["logloss"] == full["test"]["logloss"]
    a = load_checkpoint(tmp_path / "full" / "last.pt")["model"]
    b = load_checkpoint(tmp_path / "cut" / "last.pt")["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_resume_after_real_kill(tmp_path):
    """SIGKILL a CLI training run once its first epoch checkpoint exists, then resume it."""
    cfg = tiny_config(tmp_path, train={"epochs": 40, "patience": 40})
    cfg["data"]["synthetic"]["rows_per_user"] = 60
    path = tmp_path / "cfg.yaml"
    path.write_text(json.dumps(cfg))  # JSON is YAML
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "recsys_lhuc", "train", "--config", str(path), "--out", str(out)]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(1200):
            if (out / "last.pt").exists() or proc.poll() is not None:
                break
            subprocess.run(["sleep", "0.05"])
        proc.kill()
    finally:
        proc.wait()
    assert (out / "last.pt").exists() and not (out / "results.json").exists()
    done = load_checkpoint(out / "last.pt")["state"]["epoch"]
    assert 1 <= done < 40
    cfg["train"]["epochs"] = done + 1
    path.write_text(json.dumps(cfg))
    subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True)
    res = json.loads((out / "results.json").read_text())
    assert res["epochs_run"] == done + 1 and len(res["history"]) == done + 1


def test_multitask_pepnet_with_label_mask(tmp_path):
    n = 600
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"user_id": rng.integers(0, 30, n).astype(str),
                          "item_id": rng.integers(0, 40, n).astype(str),
                          "x": rng.normal(size=n)})
    frame["watch"] = (rng.random(n) < 0.6).astype(float)
    frame["like"] = ((frame["x"] > 0) & (frame["watch"] == 1)).astype(float)
    frame.to_csv(tmp_path / "mt.csv", index=False)
    cfg = {"data": {"source": "file", "path": str(tmp_path / "mt.csv"),
                    "cache_dir": str(tmp_path / "c")},
           "spec": {"categorical": ["user_id", "item_id"], "numeric": ["x"], "multi": [],
                    "label": "like", "extra_labels": ["watch"], "personal_ids": ["user_id"],
                    "user_field": "user_id"},
           "model": {"name": "pepnet", "hidden": [16, 8]},
           "train": {"epochs": 4, "batch_size": 64, "lr": 0.01, "progress": False,
                     "label_masks": {"like": "watch"}}}
    res = train(cfg, tmp_path / "run")
    tasks = res["test"]["tasks"]
    assert set(tasks) == {"like", "watch"}
    test_rows = prepare(cfg).splits["test"]
    assert tasks["like"]["rows"] == int(np.sum(test_rows["watch"]))  # masked to watched rows
    assert tasks["watch"]["rows"] == len(test_rows)
    assert tasks["like"]["auc"] > 0.9  # like = (x > 0) among watched rows


def test_param_groups_reach_the_optimizer(tmp_path):
    from recsys_lhuc.models import build_model
    from recsys_lhuc.train import make_optimizers

    prepared = prepare(tiny_config(tmp_path))
    model = build_model("lhuc_user", prepared.spec, hidden=(16, 8))
    tc = TrainConfig(lr=1e-3, param_groups=[{"match": r"^table\.", "lr": 0.05}])
    groups = make_optimizers(model, tc)[0].param_groups
    assert [g["lr"] for g in groups] == [1e-3, 0.05]
    assert {id(p) for p in groups[1]["params"]} == {id(p) for p in model.table.parameters()}


# ------------------------------------------------------------------ scoring
def test_score_apis_match_evaluation_and_share_user_amplitudes(tmp_path):
    cfg = tiny_config(tmp_path, model={"name": "lhuc_user", "hidden": [16, 8]},
                      train={"epochs": 2})
    train(cfg, tmp_path / "run")
    ranker = Ranker.from_run(tmp_path / "run")
    from recsys_lhuc.data.pipeline import load_frame

    raw = load_frame(cfg["data"]).iloc[:200]
    probs = ranker.score_frame(raw)["click"]
    assert probs.shape == (200,) and ((probs > 0) & (probs < 1)).all()
    # one request: user 3's amplitudes computed once, reused for every candidate
    user_rows = raw[raw["user_id"] == raw["user_id"].iloc[0]]
    user = {"user_id": user_rows["user_id"].iloc[0],
            "user_segment": user_rows["user_segment"].iloc[0]}
    candidates = raw.drop(columns=["user_id", "user_segment"]).iloc[:50]
    request = ranker.score_request(user, candidates)["click"]
    per_row = ranker.score_frame(candidates.assign(**user))["click"]
    np.testing.assert_allclose(request, per_row, rtol=1e-5, atol=1e-6)
    # unseen user: OOV bucket (the SI row), counted
    before = ranker.oov_counts.get("user_id", 0)
    ranker.score_request({"user_id": "never-seen", "user_segment": "0"}, candidates)
    assert ranker.oov_counts["user_id"] == before + 50
    # file scoring through the CLI-facing function
    raw.drop(columns=["click"]).to_csv(tmp_path / "in.csv", index=False)
    score(tmp_path / "run", tmp_path / "in.csv", tmp_path / "out.csv")
    out = pd.read_csv(tmp_path / "out.csv")
    np.testing.assert_allclose(out["score_click"], probs, rtol=1e-5)


def test_load_config_overrides(tmp_path):
    cfg = load_config(ROOT / "recipes" / "ranking" / "ml100k.yaml",
                      ["model.name=ppnet", "train.epochs=3", "data.split.protocol=temporal",
                       "model.hidden=[8, 4]"])
    assert cfg["model"] == {"name": "ppnet", "hidden": [8, 4]}
    assert cfg["train"]["epochs"] == 3 and cfg["data"]["split"]["protocol"] == "temporal"
    with pytest.raises(ValueError, match=r"unknown config key 'train.epoch' \(did you mean "
                                         r"'epochs'\?\)"):
        TrainConfig.from_dict({"epoch": 3})
