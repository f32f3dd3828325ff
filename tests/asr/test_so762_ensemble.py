"""CTC system combination: posteriors are averaged in probability space, frame by frame, and
models that cannot be combined are refused."""

import json
import math

import pytest
import torch
from decoding_helpers import manifest, tiny_checkpoint

from recipes.speechocean762.ASR.CTC.local.ensemble import combine, main


def items(log_probs: torch.Tensor, utt: str = "u") -> list[dict]:
    return [{"id": utt, "ref": "A", "age": "", "log_probs": log_probs}]


def test_combination_is_the_log_of_the_mean_posterior():
    a = torch.tensor([[0.9, 0.1], [0.2, 0.8]]).log()
    b = torch.tensor([[0.5, 0.5], [0.6, 0.4]]).log()
    mixed = combine([items(a), items(b)])[0]["log_probs"]
    assert torch.allclose(mixed.exp(), torch.tensor([[0.7, 0.3], [0.4, 0.6]]), atol=1e-6)
    assert torch.allclose(combine([items(a), items(a)])[0]["log_probs"], a, atol=1e-6)
    assert math.isclose(float(mixed.exp().sum(-1)[0]), 1.0, rel_tol=1e-6)
    with pytest.raises(ValueError, match="frame counts"):
        combine([items(a), items(b[:1])])
    with pytest.raises(ValueError, match="orders differ"):
        combine([items(a), items(b, "v")])


def test_cli_scores_each_model_and_the_ensemble_and_keeps_hypotheses(tmp_path):
    paths = [str(tiny_checkpoint(tmp_path / f"m{seed}.pt", seed)) for seed in (0, 1)]
    test = manifest(tmp_path, "test", ["A DOG", "THE CAT", "A CAT"], 2)
    out = tmp_path / "ens.json"
    main(["--checkpoints", *paths, "--test_csv", test, "--out", str(out), "--beam_size", "1"])
    res = json.loads(out.read_text())
    assert len(res["single_models_greedy"]) == 2 and res["greedy"]["n_utts"] == 3
    assert sorted(res["hypotheses"]) == ["test0", "test1", "test2"]
    assert "beam" not in res and res["command"].startswith(
        "python -m recipes.speechocean762.ASR.CTC.local.ensemble")
    with pytest.raises(SystemExit):  # beam search with an LM needs the LM's transcripts
        main(["--checkpoints", *paths, "--test_csv", test, "--out", str(out)])
