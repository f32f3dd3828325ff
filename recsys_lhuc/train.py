"""Training, evaluation and scoring for the ranking models, configured by one YAML dict.

Config keys: ``data`` and ``spec`` (see ``recsys_lhuc.data.pipeline``), ``model`` (``name`` plus the
model's keyword arguments for ``build_model``) and ``train`` (see ``TrainConfig``).
A run folder holds ``config.yaml``, ``encoder.json`` (vocabularies, to score raw rows later),
``last.pt`` (resume state, written every epoch), ``best.pt`` (best validation AUC) and
``results.json``.
"""
from __future__ import annotations

import contextlib
import copy
import hashlib
import inspect
import json
import logging
import os
import re
import socket
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import yaml
from tqdm.auto import tqdm

from .config import ConfigError, check_config
from .data import Batches, Prepared, prepare
from .data.pipeline import GROUP_COLUMN
from .data.shards import ShardBatches, ShardSplit
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
from .models import MODELS, build_model, default_fused_gates, split_sparse_parameters

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
    compile: bool = False           # torch.compile the model (see recsys_gpu_train.py)
    amp: str = "auto"               # auto | bf16 | off: bf16 autocast (CUDA only), see use_bf16
    prefetch: int = 4               # batches a background thread prepares ahead (streamed data)
    loader_workers: int = 2         # threads reading and shuffling Parquet row groups (streamed)
    speed_warmup_steps: int = 10    # steps left out of train_samples_per_s (allocator, compile)
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
        """Checked and coerced (``lr: 1e-3`` is a string to YAML), unknown keys rejected."""
        from .config import check, train_schema

        return cls(**(check(d or {}, train_schema(), "train") or {}))


# ------------------------------------------------------------------ config helpers
def load_config(path, overrides=()) -> dict:
    """Read a YAML config, apply ``section.key=value`` overrides (values parsed as YAML) and check
    it (unknown keys and values of the wrong type stop with a ConfigError naming the key)."""
    try:
        cfg = yaml.safe_load(Path(path).read_text())
    except FileNotFoundError as err:
        raise ConfigError(f"{path}: config file not found") from err
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from err
    cfg = cfg if cfg is not None else {}
    for item in overrides:
        key, eq, value = item.partition("=")
        if not eq or not key:
            raise ConfigError(f"--set expects SECTION.KEY=VALUE, got {item!r}")
        node = cfg
        *parents, leaf = key.split(".")
        for name in parents:
            node = node.setdefault(name, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set {item}: {name!r} is a value, not a section")
        node[leaf] = yaml.safe_load(value)
    return check_config(cfg, str(path))


def pick_device(requested: str = "auto") -> torch.device:
    """CUDA when available (or asked for), else CPU; decided at run time."""
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(requested)


# bf16 autocast pays on CUDA for large batches only: with the Criteo-sized PPNet at batch 4,096
# on an H200 the model step ran at 413K samples/s in fp32 and 364K with bf16 autocast (the
# casts cost more than the small matmuls gain). benchmarks/recsys_gpu_train.py measures both per
# batch size; until a GPU run says otherwise, bf16 starts at this batch size.
BF16_MIN_BATCH = 32_768


def use_bf16(device: torch.device, amp: str = "auto", batch_size: int = 0) -> bool:
    """Whether to run under bf16 autocast: never on CPU; on CUDA per ``amp`` (auto: by batch)."""
    if device.type != "cuda" or amp == "off":
        return False
    return amp == "bf16" or batch_size >= BF16_MIN_BATCH


def autocast(device: torch.device, enabled: bool | None = None):
    """bf16 autocast on CUDA (when ``enabled``, default on); a no-op context on CPU."""
    if device.type == "cuda" and enabled is not False:
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


def make_batches(split, spec, batch_size: int, device: torch.device, shuffle: bool = False,
                 seed: int = 0, info: DistInfo | None = None, extra_columns=(), prefetch: int = 4,
                 workers: int = 2):
    """Batches of one split: streamed from Parquet shards, or sliced from the in-memory Arrow
    split (on the GPU itself when training there: the split is copied once)."""
    info = info or DistInfo(0, 1, 0, device)
    if isinstance(split, ShardSplit):
        if info.world_size > 1:
            raise ValueError("data.source 'shards' is not supported under torchrun yet (ranks "
                             "would run different numbers of steps); train on one process")
        return ShardBatches(split, spec, batch_size, shuffle=shuffle, seed=seed, device=device,
                            pin_memory=device.type == "cuda", prefetch=prefetch,
                            workers=workers, extra_columns=extra_columns)
    on_device = device if device.type == "cuda" else None
    return Batches(split, spec, batch_size, shuffle=shuffle, seed=seed,
                   extra_columns=extra_columns, rank=info.rank, world_size=info.world_size,
                   device=on_device)


@torch.no_grad()
def predict(model, batches, spec, device, bf16: bool = True) -> dict[str, np.ndarray]:
    """Click probabilities per task for every row of ``batches`` (in iteration order)."""
    model.eval()
    chunks: dict[str, list] = {}
    for batch in batches:
        with autocast(device, bf16):
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
    batches = make_batches(dataset, spec, tc.eval_batch_size, device, info=info,
                           extra_columns=[GROUP_COLUMN], prefetch=tc.prefetch,
                           workers=tc.loader_workers)
    bf16 = use_bf16(device, tc.amp, tc.eval_batch_size)
    probs = gather_predictions(predict(model, batches, spec, device, bf16),
                               batches.indices().numpy(), batches.size, info)
    names = dataset.column_names
    groups = batches.column(GROUP_COLUMN if GROUP_COLUMN in names else spec.user_field)
    out = {}
    for label, p in probs.items():
        keep = np.ones(len(p), dtype=bool)
        if tc.label_masks.get(label):
            keep = batches.column(tc.label_masks[label]) == 1
        out[label] = all_metrics(batches.column(label)[keep], p[keep], groups[keep])
    return {**out[spec.label], "tasks": out}


# ------------------------------------------------------------------ checkpoints
def save_checkpoint(path: Path, state: dict) -> None:
    """Write atomically, so a kill during the write leaves the previous checkpoint intact."""
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    tmp.replace(path)


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be read; the message names the file and what to do."""


def load_checkpoint(path: Path, device="cpu", hint: str = "") -> dict:
    """``torch.load`` (weights only), or a CheckpointError naming the file (a run killed while
    copying or a full disk leaves a truncated file, and torch's own error names neither)."""
    try:
        return torch.load(path, map_location=device, weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as err:
        raise CheckpointError(f"{path}: cannot read this checkpoint, it is truncated or not a "
                              f"torch checkpoint ({type(err).__name__}: {str(err)[:200]}). "
                              f"{hint or 'Delete it or train again.'}") from err


@contextlib.contextmanager
def run_lock(out: Path):
    """Hold ``out/.lock`` for the run: a second run into the same folder stops instead of mixing
    its files (config.yaml, best.pt, ...) with the first one's. A lock left by a dead process on
    this machine is taken over."""
    lock = out / ".lock"
    me = f"{os.getpid()} {socket.gethostname()}"
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            owner = lock.read_text().strip() if lock.exists() else ""
            if lock_owner_alive(owner):
                raise RunLockedError(f"{out} is in use by another run (pid and host in {lock}: "
                                     f"{owner!r}). Use another --out, or wait for it to finish; "
                                     f"if that run is gone, delete {lock}.") from None
            log.warning("%s: taking over a stale lock (%r, process gone)", lock, owner)
            lock.unlink(missing_ok=True)
            continue
        with os.fdopen(fd, "w") as fh:
            fh.write(me)
        break
    try:
        yield
    finally:
        if lock.exists() and lock.read_text().strip() == me:
            lock.unlink()


class RunLockedError(RuntimeError):
    """Another run holds the run folder."""


def lock_owner_alive(owner: str) -> bool:
    """True unless the lock names a process of this host that no longer exists."""
    pid, _, host = owner.partition(" ")
    if not pid.isdigit() or host != socket.gethostname():
        return bool(owner)  # another machine, or unreadable: assume it is alive
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def write_json(path: Path, obj) -> None:
    path.write_text(json.dumps(obj, indent=2, default=float))


# ------------------------------------------------------------------ training
def build(cfg: dict, prepared: Prepared, device: torch.device):
    """The model on ``device``; per-device defaults (fused gates) are written into ``cfg``
    so that config.yaml records what was built and the run loads anywhere."""
    name, kwargs = model_kwargs(cfg)
    if "fused_gates" in inspect.signature(MODELS.get(name, object)).parameters \
            and kwargs.get("fused_gates") is None:
        kwargs["fused_gates"] = default_fused_gates(device)
        cfg.setdefault("model", {})["fused_gates"] = kwargs["fused_gates"]
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


def count_user_rows(model, prepared: Prepared) -> bool:
    """Give a Bayesian LHUC-user model each user's number of training rows (its KL term is
    divided by them); return whether the model is Bayesian."""
    if not getattr(model, "bayesian", False):
        return False
    train_split = prepared.splits["train"]
    if isinstance(train_split, ShardSplit):
        raise ConfigError("model.bayes_prior_std needs each user's training row count, which "
                          "streamed Parquet shards (data.source 'shards') do not give yet: use "
                          "an in-memory source or set model.bayes_prior_std: null")
    model.count_user_rows(train_split.with_format("numpy")[model.user_field])
    return True


def make_optimizers(model, tc: TrainConfig) -> list[torch.optim.Optimizer]:
    """AdamW for dense parameters; SparseAdam for embedding tables built with sparse=True."""
    sparse, dense = split_sparse_parameters(model)
    # Fused AdamW (one kernel for all parameters) on CUDA; on CPU the default foreach version
    # keeps the committed CPU results reproducible.
    fused = bool(dense) and all(p.is_cuda for p in dense)
    optimizers = [torch.optim.AdamW(dense_param_groups(model, dense, tc), lr=tc.lr,
                                    weight_decay=tc.weight_decay, fused=fused or None)]
    if sparse:
        optimizers.append(torch.optim.SparseAdam(sparse, lr=tc.lr))
    return optimizers


def train(cfg: dict, out_dir, resume: bool = True, prepared: Prepared | None = None) -> dict:
    """Train ``cfg`` into ``out_dir`` (resuming from ``last.pt`` if present); return the results.

    Early stopping on the validation AUC of the main label; the best epoch's weights are
    evaluated on the test split and everything is written to ``results.json``. The run holds
    ``out_dir/.lock`` while it runs: a second run into the same folder stops with an error.

    Under ``torchrun`` (``WORLD_SIZE`` > 1) the model is wrapped in DistributedDataParallel
    (gloo on CPU, NCCL on GPU, one GPU per process), each rank trains on its own shard of
    every epoch, validation/test predictions are gathered so metrics cover the whole split,
    and only rank 0 writes files. ``out_dir`` must be visible to every rank (resume and the
    final best-epoch evaluation read it).
    """
    cfg = check_config(copy.deepcopy(cfg))
    tc = TrainConfig.from_dict(cfg.get("train"))
    out = Path(out_dir)
    if tc.num_threads:
        torch.set_num_threads(tc.num_threads)
    info = init_distributed(device=None if tc.device == "auto" else tc.device)
    if info.is_main:
        out.mkdir(parents=True, exist_ok=True)
    with run_lock(out) if info.is_main else contextlib.nullcontext():
        return _train(cfg, tc, out, info, resume, prepared)


def _train(cfg: dict, tc: TrainConfig, out: Path, info: DistInfo, resume: bool,
           prepared: Prepared | None) -> dict:
    device, main = info.device, info.is_main
    if main:
        prepared = prepared or prepare(cfg)  # rank 0 builds the Arrow cache, the others load it
    barrier(info)
    prepared = prepared or prepare(cfg)
    spec = prepared.spec
    torch.manual_seed(tc.seed)
    name, model = build(cfg, prepared, device)
    if main:
        (out / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
        write_json(out / "encoder.json", encoder_state(prepared))
    bayesian = count_user_rows(model, prepared)
    optimizers = make_optimizers(model, tc)
    ddp_model = wrap_model(model, info, find_unused_parameters=tc.ddp_find_unused)
    forward = torch.compile(ddp_model) if tc.compile else ddp_model
    bf16 = use_bf16(device, tc.amp, tc.batch_size)
    train_batches = make_batches(prepared.splits["train"], spec, tc.batch_size, device,
                                 shuffle=True, seed=tc.seed, info=info, prefetch=tc.prefetch,
                                 workers=tc.loader_workers)

    state = {"epoch": 0, "step": 0, "best_auc": -1.0, "best_epoch": 0, "bad_epochs": 0,
             "history": []}
    last = out / "last.pt"
    if resume and last.exists():
        ckpt = load_checkpoint(last, hint="Start over with --no-resume (train(..., resume=False))"
                               " or delete the file.")
        model.load_state_dict(ckpt["model"])
        for opt, opt_state in zip(optimizers, ckpt["optimizers"]):
            opt.load_state_dict(opt_state)
        torch.set_rng_state(ckpt["rng"])
        state = ckpt["state"]
        if main:
            log.info("resumed %s from epoch %d", last, state["epoch"])

    start = time.time()
    speed = SpeedMeter(device, tc.speed_warmup_steps)
    while state["epoch"] < tc.epochs and state["bad_epochs"] < tc.patience \
            and (tc.max_steps is None or state["step"] < tc.max_steps):
        epoch = state["epoch"] + 1
        train_batches.set_epoch(epoch)
        model.train()
        total, count = torch.zeros((), device=device), 0
        bar = tqdm(train_batches, desc=f"{name} epoch {epoch}",
                   disable=not (tc.progress and main), leave=False)
        for batch in bar:
            batch = to_device(batch, device)
            with autocast(device, bf16):
                loss = task_loss(as_task_dict(forward(batch), spec), batch, tc)
            if bayesian:
                loss = loss + model.kl_penalty(batch)
            for opt in optimizers:
                opt.zero_grad(set_to_none=True)
            loss.backward()
            for opt in optimizers:
                opt.step()
            # No .item() per step: a host sync each step would stall the GPU's queue.
            total, count = total + loss.detach(), count + 1
            state["step"] += 1
            speed.step(len(batch[spec.label]))
            if tc.progress and main and count % 50 == 0:
                bar.set_postfix(loss=f"{total.item() / count:.4f}")
            if tc.max_steps is not None and state["step"] >= tc.max_steps:
                break
        speed.pause()
        train_loss = all_reduce_mean(total.item() / max(count, 1), info)
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
                                               "duplicate_rows", "duplicates_dropped",
                                               "ceiling", "source")},
        "device": str(device), "world_size": info.world_size, "final_weight_digests": digests,
        "seconds_this_process": round(time.time() - start, 2),
        "train_speed": speed.summary(), "bf16": bf16, "compiled": tc.compile,
        "parameters": sum(p.numel() for p in model.parameters()),
    }
    if main:
        write_json(out / "results.json", results)
    barrier(info)
    return results


class SpeedMeter:
    """Training samples per second of this process, data loading included, leaving out the
    first ``warmup`` steps (allocator, cuDNN/compile) and the evaluations between epochs."""

    def __init__(self, device: torch.device, warmup: int):
        self.device, self.warmup = device, warmup
        self.steps, self.samples, self.seconds, self.started = 0, 0, 0.0, None

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def step(self, rows: int) -> None:
        """Called after each step: the clock runs from the end of the warm-up (or of an epoch's
        first step) to ``pause``, so each counted step's data loading is inside it."""
        self.steps += 1
        if self.steps < self.warmup:
            return
        if self.started is None:
            self._sync()
            self.started = time.perf_counter()
            return
        self.samples += rows

    def pause(self) -> None:
        if self.started is not None:
            self._sync()
            self.seconds += time.perf_counter() - self.started
            self.started = None

    def summary(self) -> dict:
        rate = self.samples / self.seconds if self.seconds > 0 else None
        return {"samples_per_s": rate, "samples_timed": self.samples,
                "seconds_timed": round(self.seconds, 4), "warmup_steps": self.warmup}


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
