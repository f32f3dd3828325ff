"""Evaluate a trained run folder on one split of its data."""
from __future__ import annotations

import inspect
from pathlib import Path

import torch
import yaml

from .data import prepare
from .data.pipeline import spec_from_dict
from .models import MODELS, build_model
from .train import TrainConfig, evaluate_split, load_checkpoint, model_kwargs, pick_device


def load_run(run_dir, checkpoint: str = "best.pt", device: str = "auto"):
    """(config, model in eval mode, encoder state) of a run folder written by ``train``."""
    import json

    run = Path(run_dir)
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    encoder = json.loads((run / "encoder.json").read_text())
    spec = spec_from_dict(encoder["spec"])
    name, kwargs = model_kwargs(cfg)
    if "fused_gates" in inspect.signature(MODELS[name]).parameters:
        kwargs.setdefault("fused_gates", True)  # runs from before the per-device default: fused
    dev = pick_device(device if device != "auto" else cfg.get("train", {}).get("device", "auto"))
    model = build_model(name, spec, **kwargs).to(dev)
    ckpt = run / checkpoint
    if not ckpt.exists():
        raise FileNotFoundError(f"{ckpt}: no checkpoint; train first (python -m recsys_lhuc "
                                f"train --config ... --out {run})")
    model.load_state_dict(load_checkpoint(ckpt, dev, hint="Use another --checkpoint (best.pt "
                                          "or last.pt) or train again.")["model"])
    model.eval()
    return cfg, model, encoder


def evaluate(run_dir, split: str = "test", checkpoint: str = "best.pt",
             device: str = "auto") -> dict:
    """Metrics (AUC, gAUC, logloss per task) of a run's checkpoint on ``split``."""
    cfg, model, encoder = load_run(run_dir, checkpoint, device)
    prepared = prepare(cfg)
    if [f.vocab_size for f in prepared.spec.categorical] != \
            [f["vocab_size"] for f in encoder["spec"]["categorical"]]:
        raise ValueError(f"{run_dir}: the data now gives different vocabularies than at training "
                         "time; evaluate with the data the run was trained on")
    tc = TrainConfig.from_dict(cfg.get("train"))
    dev = next(model.parameters()).device
    with torch.no_grad():
        return evaluate_split(model, prepared.splits[split], prepared.spec, tc, dev)
