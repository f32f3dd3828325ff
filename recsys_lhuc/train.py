"""Training, evaluation and scoring for the ranking models, configured by one YAML dict.

Config keys: ``data`` and ``spec`` (see ``recsys_lhuc.data.pipeline``), ``model`` (``name`` plus the
model's keyword arguments for ``build_model``) and ``train`` (see ``TrainConfig``).
A run folder holds ``config.yaml``, ``encoder.json`` (vocabularies, to score raw rows later),
``last.pt`` (resume state, written every epoch), ``best.pt`` (best validation AUC) and
``results.json``.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import re
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import yaml
from tqdm.auto import tqdm

from .data import Batches, Prepared, prepare
from .data.pipeline import GROUP_COLUMN
from .distributed.ddp import (
    DistInfo,
    all_gather_objects,
    all_reduce_mean,
    barrier,
    broadcast_object,
    init_distributed,
    wrap_model,
)
from .metrics import all_metrics
from .models import build_model, split_sparse_parameters

log = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    """The ``train`` section of a config."""

    epochs: int = 10
    batch_size: int = 1024
    eval_batch_size: int = 8192
    lr: float = 1e-3
    weight_decay: float = 1e-4
    patience: int = 2               # epochs without a better val AUC before stopping
    seed: int = 0
    max_steps: int | None = None    # cap on optimiser steps (quick runs)
    stop_after_epochs: int | None = None  # end the process early, as a kill would (resume tests)
    device: str = "auto"            # auto | cpu | cuda | cuda:N
    compile: bool = False           # torch.compile the model
    num_threads: int | None = None  # torch CPU threads
    label_masks: dict = field(default_factory=dict)  # {label: mask label}: loss/metrics on mask==1
    task_weights: dict = field(default_factory=dict)  # {label: loss weight}, default 1
    # [{match: regex on parameter names, lr: ..., weight_decay: ...}], first match wins; e.g. a
    # higher lr for LHUC amplitude rows, which each user's rows only see in a few batches
    param_groups: list = field(default_factory=list)
    progress: bool = True
    # DDP: let ranks skip gradients of parameters a step did not use (e.g. an unused SI row)
    ddp_find_unused: bool = True

    @classmethod
    def from_dict(cls, d: dict | None) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(d or {}) - known
        if unknown:
            raise ValueError(f"unknown train option(s) {sorted(unknown)}; known: {sorted(known)}")
        return cls(**(d or {}))


# ------------------------------------------------------------------ config helpers
def load_config(path, overrides=()) -> dict:
    """Read a YAML config and apply ``section.key=value`` overrides (values parsed as YAML)."""
    cfg = yaml.safe_load(Path(path).read_text())
    for item in overrides:
        key, _, value = item.partition("=")
        node = cfg
        *parents, leaf = key.split(".")
        for name in parents:
            node = node.setdefault(name, {})
        node[leaf] = yaml.safe_load(value)
    return cfg


def pick_device(requested: str = "auto") -> torch.device:
    """CUDA when available (or asked for), else CPU; decided at run time."""
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(requested)


def autocast(device: torch.device):
    """bf16 autocast on CUDA; a no-op context on CPU."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def model_kwargs(cfg: dict) -> tuple[str, dict]:
    model_cfg = dict(cfg.get("model") or {})
    name = model_cfg.pop("name", "dnn")
    if "hidden" in model_cfg:
        model_cfg["hidden"] = tuple(model_cfg["hidden"])
    return name, model_cfg


def as_task_dict(output, spec) -> dict[str, torch.Tensor]:
    """Single-task models return logits (B,); multi-task ones {label: logits}."""
    return output if isinstance(output, dict) else {spec.label: output}


# ------------------------------------------------------------------ loss and evaluation
def task_loss(logits: dict, batch: dict, tc: TrainConfig) -> torch.Tensor:
    """Sum over tasks of the (masked) mean binary cross-entropy."""
    total = 0.0
    for label, z in logits.items():
        target = batch[label]
        loss = F.binary_cross_entropy_with_logits(z.float(), target, reduction="none")
        mask_label = tc.label_masks.get(label)
        if mask_label:
            mask = batch[mask_label]
            loss = (loss * mask).sum() / mask.sum().clamp_min(1.0)
        else:
            loss = loss.mean()
        total = total + tc.task_weights.get(label, 1.0) * loss
    return total


def to_device(batch: dict, device: torch.device) -> dict:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


@torch.no_grad()
def predict(model, batches: Batches, spec, device) -> dict[str, np.ndarray]:
    """Click probabilities per task for every row of ``batches`` (in iteration order)."""
    model.eval()
    chunks: dict[str, list] = {}
    for batch in batches:
        with autocast(device):
            logits = as_task_dict(model(to_device(batch, device)), spec)
        for label, z in logits.items():
            chunks.setdefault(label, []).append(torch.sigmoid(z.float()).cpu().numpy())
    return {label: np.concatenate(parts) for label, parts in chunks.items()}  # {} if no rows


def gather_predictions(probs: dict, rows: np.ndarray, size: int, info: DistInfo) -> dict:
    """Every rank's predictions put back in split order, on every rank."""
    if not info.distributed:
        return probs
    full = {}
    for part_probs, part_rows in all_gather_objects((probs, rows), info):
        for label, p in part_probs.items():
            full.setdefault(label, np.zeros(size, dtype=p.dtype))[part_rows] = p
    return full


def evaluate_split(model, dataset, spec, tc: TrainConfig, device,
                   info: DistInfo | None = None) -> dict:
    """Metrics per task on one encoded split; the main label's metrics also at the top level.

    Under DDP (``info`` with several ranks) each rank predicts its shard and the predictions
    are gathered, so every rank computes the same metrics over the whole split.
    """
    info = info or DistInfo(0, 1, 0, device)
    batches = Batches(dataset, spec, tc.eval_batch_size, extra_columns=[GROUP_COLUMN],
                      rank=info.rank, world_size=info.world_size)
    probs = gather_predictions(predict(model, batches, spec, device),
                               batches.indices().numpy(), batches.size, info)
    tensors = batches.tensors
    groups = tensors[GROUP_COLUMN if GROUP_COLUMN in tensors else spec.user_field].numpy()
    out = {}
    for label, p in probs.items():
        keep = np.ones(len(p), dtype=bool)
        if tc.label_masks.get(label):
            keep = tensors[tc.label_masks[label]].numpy() == 1
        out[label] = all_metrics(tensors[label].numpy()[keep], p[keep], groups[keep])
    return {**out[spec.label], "tasks": out}


# ------------------------------------------------------------------ checkpoints
def save_checkpoint(path: Path, state: dict) -> None:
    """Write atomically, so a kill during the write leaves the previous checkpoint intact."""
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    tmp.replace(path)


def load_checkpoint(path: Path, device="cpu") -> dict:
    return torch.load(path, map_location=device, weights_only=True)


def write_json(path: Path, obj) -> None:
    path.write_text(json.dumps(obj, indent=2, default=float))


# ------------------------------------------------------------------ training
def build(cfg: dict, prepared: Prepared, device: torch.device):
    name, kwargs = model_kwargs(cfg)
    model = build_model(name, prepared.spec, **kwargs).to(device)
    return name, model


def dense_param_groups(model, dense: list, tc: TrainConfig) -> list[dict]:
    """AdamW groups: parameters whose name matches a ``param_groups`` rule get its settings."""
    wanted = {id(p) for p in dense}
    groups = [{"params": [], **{k: v for k, v in rule.items() if k != "match"}}
              for rule in tc.param_groups]
    default = {"params": []}
    for name, param in model.named_parameters():
        if id(param) not in wanted:
            continue
        rule = next((i for i, r in enumerate(tc.param_groups) if re.search(r["match"], name)),
                    None)
        (default if rule is None else groups[rule])["params"].append(param)
    return [g for g in [default, *groups] if g["params"]]


def make_optimizers(model, tc: TrainConfig) -> list[torch.optim.Optimizer]:
    """AdamW for dense parameters; SparseAdam for embedding tables built with sparse=True."""
    sparse, dense = split_sparse_parameters(model)
    optimizers = [torch.optim.AdamW(dense_param_groups(model, dense, tc), lr=tc.lr,
                                    weight_decay=tc.weight_decay)]
    if sparse:
        optimizers.append(torch.optim.SparseAdam(sparse, lr=tc.lr))
    return optimizers


def train(cfg: dict, out_dir, resume: bool = True, prepared: Prepared | None = None) -> dict:
    """Train ``cfg`` into ``out_dir`` (resuming from ``last.pt`` if present); return the results.

    Early stopping on the validation AUC of the main label; the best epoch's weights are
    evaluated on the test split and everything is written to ``results.json``.

    Under ``torchrun`` (``WORLD_SIZE`` > 1) the model is wrapped in DistributedDataParallel
    (gloo on CPU, NCCL on GPU, one GPU per process), each rank trains on its own shard of
    every epoch, validation/test predictions are gathered so metrics cover the whole split,
    and only rank 0 writes files. ``out_dir`` must be visible to every rank (resume and the
    final best-epoch evaluation read it).
    """
    tc = TrainConfig.from_dict(cfg.get("train"))
    out = Path(out_dir)
    if tc.num_threads:
        torch.set_num_threads(tc.num_threads)
    info = init_distributed(device=None if tc.device == "auto" else tc.device)
    device, main = info.device, info.is_main
    if main:
        out.mkdir(parents=True, exist_ok=True)
        prepared = prepared or prepare(cfg)  # rank 0 builds the Arrow cache, the others load it
    barrier(info)
    prepared = prepared or prepare(cfg)
    spec = prepared.spec
    if main:
        (out / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
        write_json(out / "encoder.json", encoder_state(prepared))

    torch.manual_seed(tc.seed)
    name, model = build(cfg, prepared, device)
    optimizers = make_optimizers(model, tc)
    ddp_model = wrap_model(model, info, find_unused_parameters=tc.ddp_find_unused)
    forward = torch.compile(ddp_model) if tc.compile else ddp_model
    train_batches = Batches(prepared.splits["train"], spec, tc.batch_size, shuffle=True,
                            seed=tc.seed, pin_memory=device.type == "cuda", rank=info.rank,
                            world_size=info.world_size)

    state = {"epoch": 0, "step": 0, "best_auc": -1.0, "best_epoch": 0, "bad_epochs": 0,
             "history": []}
    last = out / "last.pt"
    if resume and last.exists():
        ckpt = load_checkpoint(last)
        model.load_state_dict(ckpt["model"])
        for opt, opt_state in zip(optimizers, ckpt["optimizers"]):
            opt.load_state_dict(opt_state)
        torch.set_rng_state(ckpt["rng"])
        state = ckpt["state"]
        if main:
            log.info("resumed %s from epoch %d", last, state["epoch"])

    start = time.time()
    while state["epoch"] < tc.epochs and state["bad_epochs"] < tc.patience \
            and (tc.max_steps is None or state["step"] < tc.max_steps):
        epoch = state["epoch"] + 1
        train_batches.set_epoch(epoch)
        model.train()
        total, count = 0.0, 0
        bar = tqdm(train_batches, desc=f"{name} epoch {epoch}",
                   disable=not (tc.progress and main), leave=False)
        for batch in bar:
            batch = to_device(batch, device)
            with autocast(device):
                loss = task_loss(as_task_dict(forward(batch), spec), batch, tc)
            for opt in optimizers:
                opt.zero_grad(set_to_none=True)
            loss.backward()
            for opt in optimizers:
                opt.step()
            total, count = total + loss.item(), count + 1
            state["step"] += 1
            if count % 20 == 0:
                bar.set_postfix(loss=f"{total / count:.4f}")
            if tc.max_steps is not None and state["step"] >= tc.max_steps:
                break
        train_loss = all_reduce_mean(total / max(count, 1), info)
        val = evaluate_split(model, prepared.splits["val"], spec, tc, device, info)
        state["history"].append({"epoch": epoch, "train_loss": train_loss,
                                 "val_auc": val["auc"], "val_gauc": val["gauc"],
                                 "val_logloss": val["logloss"]})
        if main:
            log.info("%s epoch %d: train loss %.4f, val AUC %.4f gAUC %.4f logloss %.4f", name,
                     epoch, train_loss, val["auc"], val["gauc"], val["logloss"])
        if state["best_epoch"] == 0 or val["auc"] > state["best_auc"]:  # NaN AUC: keep epoch 1
            state.update(best_auc=val["auc"], best_epoch=epoch, bad_epochs=0)
            if main:
                save_checkpoint(out / "best.pt", {"model": model.state_dict(), "epoch": epoch})
        else:
            state["bad_epochs"] += 1
        state["epoch"] = epoch
        state = broadcast_object(state, info)  # every rank takes rank 0's stopping decision
        if main:
            save_checkpoint(last, {"model": model.state_dict(), "rng": torch.get_rng_state(),
                                   "optimizers": [o.state_dict() for o in optimizers],
                                   "state": state})
        if tc.stop_after_epochs is not None and epoch >= tc.stop_after_epochs:
            if main:
                log.info("stop_after_epochs=%d reached: stopping as if killed", epoch)
            barrier(info)
            return {"stopped_after_epoch": epoch}

    digests = all_gather_objects(weights_digest(model), info)  # equal if DDP kept ranks in sync
    barrier(info)  # rank 0 has written best.pt
    model.load_state_dict(load_checkpoint(out / "best.pt", device)["model"])
    results = {
        "model": name, "best_epoch": state["best_epoch"], "epochs_run": state["epoch"],
        "steps": state["step"], "val": evaluate_split(model, prepared.splits["val"], spec, tc,
                                                      device, info),
        "test": evaluate_split(model, prepared.splits["test"], spec, tc, device, info),
        "history": state["history"], "data": {k: prepared.stats.get(k) for k in
                                              ("rows", "oov", "label_rate", "dropped_rows",
                                               "ceiling", "source")},
        "device": str(device), "world_size": info.world_size, "final_weight_digests": digests,
        "seconds_this_process": round(time.time() - start, 2),
        "parameters": sum(p.numel() for p in model.parameters()),
    }
    if main:
        write_json(out / "results.json", results)
    barrier(info)
    return results


def weights_digest(model) -> str:
    """SHA-256 of every parameter and buffer, to check that DDP ranks hold identical weights."""
    h = hashlib.sha256()
    for name, value in model.state_dict().items():
        h.update(name.encode())
        h.update(value.detach().float().cpu().numpy().tobytes())
    return h.hexdigest()


def encoder_state(prepared: Prepared) -> dict:
    """What ``score`` needs to encode raw rows exactly as in training."""
    return {"spec": asdict(prepared.spec), "field_cfg": prepared.field_cfg,
            "vocabs": {k: v.to_dict() for k, v in prepared.vocabs.items()},
            "numeric_stats": prepared.numeric_stats}
