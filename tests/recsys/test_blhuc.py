"""Bayesian LHUC-user (model.bayes_prior_std): the KL term, shrinkage of users with few
interactions toward the SI row, the posterior mean at evaluation, checkpoints and config errors."""
import importlib.util
import math

import numpy as np
import pandas as pd
import pytest
import torch
from random_batch import random_batch, tiny_spec
from recsys_data_helpers import ROOT, tiny_config

from recsys_lhuc.config import ConfigError, check_config
from recsys_lhuc.data import prepare
from recsys_lhuc.evaluate import evaluate, load_run
from recsys_lhuc.models import build_model
from recsys_lhuc.train import load_checkpoint, train

HIDDEN = (16, 8)


def bayes_model(prior_std=0.5, init_std=0.2, kl_weight=1.0):
    torch.manual_seed(0)
    return build_model("lhuc_user", tiny_spec(), hidden=HIDDEN, bayes_prior_std=prior_std,
                       bayes_init_std=init_std, bayes_kl_weight=kl_weight)


def test_kl_penalty_matches_the_formula_by_hand():
    model = bayes_model(prior_std=0.5, init_std=0.2, kl_weight=3.0)
    table, dim = model.table, model.table.dim
    model.count_user_rows([1] * 4 + [2] * 2 + [5])  # n_1 = 4, n_2 = 2, n_5 = 1
    with torch.no_grad():
        table.si.fill_(0.1)
        table.rows[1] = 0.1 + 0.3        # 0.3 from the prior mean, posterior std 0.2
        table.rows[2] = 0.1              # user 2's posterior is the prior: KL 0
        table.log_std[2] = math.log(0.5)
        table.rows[0] = 5.0              # OOV row: never scored against a prior
    per_dim = math.log(0.5 / 0.2) + (0.2 ** 2 + 0.3 ** 2) / (2 * 0.5 ** 2) - 0.5
    users = torch.tensor([1, 1, 2, 0])
    # 3 * mean over 4 rows of KL_u / n_u: two rows of user 1, one of user 2, one OOV row
    expected = 3.0 * (2 * dim * per_dim / 4 + 0.0 + 0.0) / 4
    got = model.kl_penalty({"user_id": users})
    assert float(got.detach()) == pytest.approx(expected, rel=1e-5)
    got.backward()  # the penalty trains the means and the log-stds, never the SI row
    assert table.rows.grad[1].abs().min() > 0 and table.log_std.grad[1].abs().min() > 0
    assert table.rows.grad[0].abs().max() == 0 and table.si.grad is None


def test_kl_penalty_needs_the_row_counts():
    with pytest.raises(RuntimeError, match="count_user_rows"):
        bayes_model().kl_penalty({"user_id": torch.tensor([1])})


def test_training_mode_samples_and_evaluation_uses_the_posterior_mean():
    model = bayes_model(init_std=0.3)
    batch = random_batch(tiny_spec(), 64)
    model.train()
    assert not torch.equal(model(batch), model(batch))  # one draw per forward pass
    model.eval()
    first = model(batch)
    assert torch.equal(first, model(batch))
    plain = build_model("lhuc_user", tiny_spec(), hidden=HIDDEN)
    plain.load_state_dict({k: v for k, v in model.state_dict().items()
                           if k not in ("table.log_std", "user_rows")})
    assert torch.equal(first, plain.eval()(batch))  # the mean is plain LHUC with the same rows


def test_null_prior_is_plain_lhuc_user():
    torch.manual_seed(0)
    plain = build_model("lhuc_user", tiny_spec(), hidden=HIDDEN)
    torch.manual_seed(0)
    null = build_model("lhuc_user", tiny_spec(), hidden=HIDDEN, bayes_prior_std=None)
    assert not null.bayesian and null.table.log_std is None
    assert plain.state_dict().keys() == null.state_dict().keys()
    assert all(torch.equal(plain.state_dict()[k], v) for k, v in null.state_dict().items())


# ------------------------------------------------------------------ training end to end
HEAVY, LIGHT = 6, 60  # users with 120 rows, users with 1 or 2 rows


def skewed_users_csv(path) -> str:
    """Heavy users each click on one sign of x (their own), light users at random: only the
    heavy users' rows carry a user effect the data can support."""
    rng = np.random.default_rng(0)
    parts = []
    for u in range(HEAVY + LIGHT):
        n = 120 if u < HEAVY else 1 + u % 2
        x = rng.normal(size=n)
        sign = 1 if u % 2 else -1
        click = (sign * x > 0) if u < HEAVY else rng.integers(0, 2, n)
        parts.append(pd.DataFrame({"user_id": f"u{u}", "item_id": rng.integers(0, 20, n),
                                   "x": x, "timestamp": np.arange(n), "click": click.astype(int)}))
    pd.concat(parts).to_csv(path, index=False)
    return str(path)


def skewed_config(tmp_path, prior_std):
    return {"data": {"source": "file", "path": skewed_users_csv(tmp_path / "skewed.csv"),
                     "cache_dir": str(tmp_path / "cache"),
                     # temporal: users with < 3 rows stay whole in train
                     "split": {"protocol": "temporal", "fractions": [0.8, 0.1, 0.1]}},
            "spec": {"categorical": [{"name": "user_id", "embed_dim": 4},
                                     {"name": "item_id", "embed_dim": 4}],
                     "numeric": ["x"], "multi": [], "label": "click", "user_field": "user_id"},
            "model": {"name": "lhuc_user", "hidden": [8, 4], "bayes_prior_std": prior_std,
                      "bayes_init_std": 0.05},
            "train": {"epochs": 8, "batch_size": 32, "lr": 0.01, "patience": 8,
                      "weight_decay": 0.0, "progress": False,
                      "param_groups": [{"match": r"^table\.", "lr": 0.05}]}}


def row_distances(run) -> tuple[float, float]:
    """Mean distance of the heavy and of the light users' rows from the SI row."""
    _, model, encoder = load_run(run)
    vocab = encoder["vocabs"]["user_id"]["index"]
    dist = (model.table.rows - model.table.si).norm(dim=1).detach()
    heavy = [vocab[f"u{u}"] for u in range(HEAVY)]
    light = [vocab[f"u{u}"] for u in range(HEAVY, HEAVY + LIGHT)]
    return float(dist[heavy].mean()), float(dist[light].mean())


def test_few_interaction_users_stay_near_the_si_row_many_interaction_users_move(tmp_path):
    train(skewed_config(tmp_path, None), tmp_path / "plain")
    results = train(skewed_config(tmp_path, 1.0), tmp_path / "bayes")
    plain_heavy, plain_light = row_distances(tmp_path / "plain")
    bayes_heavy, bayes_light = row_distances(tmp_path / "bayes")
    # seeds 0-2 gave light-user distances 0.12-0.19 x plain LHUC's, heavy users 7-9 x the
    # light ones and above 2 (plain: heavy 6.2-7.6, light 1.6-2.7)
    assert bayes_light < 0.3 * plain_light, (bayes_light, plain_light)
    assert bayes_heavy > 4 * bayes_light and bayes_heavy > 1.0, \
        (bayes_heavy, bayes_light, plain_heavy)
    # checkpoints keep the posterior: a reload evaluates to the same metrics
    ckpt = load_checkpoint(tmp_path / "bayes" / "best.pt")["model"]
    assert ckpt["table.log_std"].shape == ckpt["table.rows"].shape
    assert float(ckpt["user_rows"].max()) == pytest.approx(120 * 0.8, abs=1)
    _, loaded, _ = load_run(tmp_path / "bayes")
    assert torch.equal(loaded.table.log_std, ckpt["table.log_std"])
    assert evaluate(tmp_path / "bayes")["auc"] == pytest.approx(results["test"]["auc"])


def test_resume_restores_the_posterior(tmp_path):
    cfg = tiny_config(tmp_path, model={"name": "lhuc_user", "hidden": [8, 4],
                                       "bayes_prior_std": 0.3},
                      train={"epochs": 2, "batch_size": 256})
    whole = train(cfg, tmp_path / "whole")
    cfg["train"]["stop_after_epochs"] = 1
    train(cfg, tmp_path / "resumed")
    cfg["train"]["stop_after_epochs"] = None
    resumed = train(cfg, tmp_path / "resumed")
    assert resumed["test"]["auc"] == pytest.approx(whole["test"]["auc"], abs=1e-6)
    a = load_checkpoint(tmp_path / "whole" / "last.pt")["model"]["table.log_std"]
    b = load_checkpoint(tmp_path / "resumed" / "last.pt")["model"]["table.log_std"]
    assert torch.equal(a, b) and not torch.allclose(a, torch.tensor(0.1).log())


# ------------------------------------------------------------------ config
@pytest.mark.parametrize("key,value,message", [
    ("bayes_prior_std", 0, r"model\.bayes_prior_std: must be greater than 0"),
    ("bayes_prior_std", "wide", r"model\.bayes_prior_std: expected a number"),
    ("bayes_init_std", -0.1, r"model\.bayes_init_std: must be greater than 0"),
    ("bayes_kl_weight", -1, r"model\.bayes_kl_weight: must be at least 0"),
    ("bayes_prior_sd", 0.1, r"unknown config key 'model\.bayes_prior_sd' \(did you mean "
                            r"'bayes_prior_std'\?\)"),
])
def test_config_errors_name_the_key(tmp_path, key, value, message):
    cfg = tiny_config(tmp_path, model={"name": "lhuc_user", key: value})
    with pytest.raises(ConfigError, match=message):
        check_config(cfg)


def test_config_accepts_null_and_numbers_as_strings(tmp_path):
    cfg = tiny_config(tmp_path, model={"name": "lhuc_user", "bayes_prior_std": "1e-1",
                                       "bayes_kl_weight": 2})
    assert check_config(cfg)["model"]["bayes_prior_std"] == 0.1
    cfg["model"]["bayes_prior_std"] = None
    assert check_config(cfg)["model"]["bayes_prior_std"] is None


# ------------------------------------------------------------------ the benchmark's breakdown
def test_benchmark_breaks_test_rows_down_by_user_training_rows(tmp_path):
    spec = importlib.util.spec_from_file_location("recsys_blhuc",
                                                  ROOT / "benchmarks" / "recsys_blhuc.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    cfg = tiny_config(tmp_path, model={"name": "lhuc_user", "hidden": [8, 4],
                                       "bayes_prior_std": 0.3}, train={"epochs": 1})
    results = train(cfg, tmp_path / "run")
    train_users = prepare(cfg).splits["train"].with_format("numpy")["user_id"]
    counts = np.bincount(train_users)
    edge = int(np.median(counts[1:])) + 1
    out = bench.metrics_by_user_rows(tmp_path / "run", [edge], results["test"]["auc"])
    low, high = out[f"<{edge}"], out[f">={edge}"]
    assert low["rows"] + high["rows"] == results["test"]["rows"]
    assert low["users"] > 0 and high["users"] > 0
    assert low["row_minus_si_norm"] > 0 and low["posterior_std"] > 0
    with pytest.raises(RuntimeError, match="recomputed test AUC"):
        bench.metrics_by_user_rows(tmp_path / "run", [edge], results["test"]["auc"] + 0.01)
