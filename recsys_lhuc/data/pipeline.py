"""From a YAML config to encoded train/val/test splits, cached as Arrow (HF ``datasets``).

``prepare(cfg)`` loads the raw source, makes the labels, splits, fits vocabularies and numeric
normalisation on the training split only, encodes every split to integer ids / floats, and saves
the result with ``Dataset.save_to_disk`` under a key that hashes the config and the source files,
so a second run with the same config loads the Arrow files at once.
"""
from __future__ import annotations

import copy
import hashlib
import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path

import datasets
import numpy as np
import pandas as pd

from ..spec import FeatureSpec, Field
from .checks import DataError, check_binary, check_columns, check_finite
from .loaders import CACHE, load_source, source_files
from .protocols import (
    SPLITS,
    add_sampled_negatives,
    label_from_rating,
    split_random,
    split_temporal,
)
from .shards import load_shards
from .synthetic import generate
from .vocab import Vocab, encode_multi, split_tokens

log = logging.getLogger(__name__)
CACHE_VERSION = 2
GROUP_COLUMN = "_user"  # per-split code of the raw user id, for gAUC


@dataclass
class Prepared:
    """Encoded splits plus everything needed to encode new rows the same way."""

    spec: FeatureSpec
    splits: dict[str, datasets.Dataset]
    vocabs: dict[str, Vocab]
    numeric_stats: dict[str, tuple[float, float]]
    stats: dict
    cache_path: Path | None = None

    def encoder(self) -> Encoder:
        return Encoder(self.spec, self.field_cfg, self.vocabs, self.numeric_stats)

    @property
    def field_cfg(self) -> dict:
        return self.stats["field_cfg"]


# ------------------------------------------------------------------ encoding
class Encoder:
    """Turns a raw DataFrame into encoded columns, using fitted vocabularies and numeric stats."""

    def __init__(self, spec: FeatureSpec, field_cfg: dict, vocabs: dict, numeric_stats: dict):
        self.spec, self.field_cfg = spec, field_cfg
        self.vocabs, self.numeric_stats = vocabs, numeric_stats

    def column(self, name: str) -> str:
        return self.field_cfg.get(name, {}).get("column", name)

    def encode(self, df: pd.DataFrame, labels: bool = True) -> tuple[dict, dict]:
        """Return (columns: name -> np.ndarray, oov counts: field -> rows mapped to id 0)."""
        source = df.attrs.get("source", "<dataframe>")
        needed = [self.column(f.name) for f in [*self.spec.categorical, *self.spec.multi]]
        needed += [self.column(n) for n in self.spec.numeric]
        needed += self.spec.labels if labels else []
        check_columns(df, needed, source)
        check_finite(df, [self.column(n) for n in self.spec.numeric], source)
        out, oov = {}, {}
        for f in self.spec.categorical:
            raw = df[self.column(f.name)]
            ids = self.vocabs[f.name].encode(raw.to_numpy())
            out[f.name] = ids
            oov[f.name] = int((ids == 0).sum())
        for f in self.spec.multi:
            sep = self.field_cfg.get(f.name, {}).get("sep", "|")
            tokens = split_tokens(df[self.column(f.name)].to_numpy(), sep)
            ids = encode_multi(self.vocabs[f.name], tokens, f.max_len)
            out[f.name] = ids
            kept = sum(min(len(t), f.max_len) for t in tokens)  # tokens past max_len are cut
            oov[f.name] = int(kept - (ids > 0).sum())
        for name in self.spec.numeric:
            values = pd.to_numeric(df[self.column(name)]).to_numpy(dtype=np.float64)
            mean, std = self.numeric_stats[name]
            out[name] = ((values - mean) / std).astype(np.float32)
        if self.spec.user_field:  # raw-user codes: gAUC must not merge unseen users into id 0
            raw_users = df[self.column(self.spec.user_field)].to_numpy()
            out[GROUP_COLUMN] = pd.factorize(raw_users)[0].astype(np.int64)
        if labels:
            for name in self.spec.labels:
                check_binary(df, name, source)
                out[name] = df[name].to_numpy(dtype=np.float32)
        return out, oov


def fit_vocabs(spec: FeatureSpec, field_cfg: dict, train: pd.DataFrame) -> dict[str, Vocab]:
    """Fit every categorical and multi vocabulary on the training split."""
    vocabs = {}
    for f in [*spec.categorical, *spec.multi]:
        cfg = field_cfg.get(f.name, {})
        vocab = Vocab(cfg.get("min_count", 1), cfg.get("hash_buckets", 0))
        column = train[cfg.get("column", f.name)].to_numpy()
        if f.name in {m.name for m in spec.multi}:
            column = [t for toks in split_tokens(column, cfg.get("sep", "|")) for t in toks]
        vocabs[f.name] = vocab.fit(column)
    return vocabs


def fit_numeric(spec: FeatureSpec, field_cfg: dict, train: pd.DataFrame) -> dict:
    """Mean/std standardisation fitted on train (std 1 for constant columns)."""
    stats = {}
    for name in spec.numeric:
        values = pd.to_numeric(train[field_cfg.get(name, {}).get("column", name)])
        std = float(values.std()) if len(values) > 1 else 1.0
        stats[name] = (float(values.mean()), std if std > 0 else 1.0)
    return stats


def resolve_spec(spec_cfg: dict, vocabs: dict) -> FeatureSpec:
    """The FeatureSpec with vocab sizes filled in from the fitted vocabularies."""
    spec = FeatureSpec.from_dict(spec_cfg)
    for f in [*spec.categorical, *spec.multi]:
        f.vocab_size = vocabs[f.name].size
    return spec


def field_settings(spec_cfg: dict) -> dict:
    """Data-layer-only settings per field (min_count, hash_buckets, column, sep)."""
    extra = {}
    for kind in ("categorical", "multi", "numeric"):
        for entry in spec_cfg.get(kind, []):
            if isinstance(entry, dict):
                extra[entry["name"]] = {k: v for k, v in entry.items()
                                        if k in ("min_count", "hash_buckets", "column", "sep")}
    return extra


# ------------------------------------------------------------------ raw -> splits
def validate_frame(df: pd.DataFrame, spec: FeatureSpec, field_cfg: dict,
                   label_from_rating: bool) -> None:
    """Fail early, naming file/column/row, before anything is fitted on the data."""
    source = df.attrs.get("source", "<dataframe>")
    column = {name: cfg.get("column", name) for name, cfg in field_cfg.items()}
    features = [column.get(f.name, f.name) for f in [*spec.categorical, *spec.multi]]
    numeric = [column.get(n, n) for n in spec.numeric]
    check_columns(df, features + numeric, source)
    check_finite(df, numeric, source)
    if not label_from_rating:  # labels given in the file must already be 0/1
        check_columns(df, [spec.label], source, "the label")
        check_binary(df, spec.label, source)

def id_columns(spec: FeatureSpec, field_cfg: dict) -> list[str]:
    """File columns holding ids (categorical and multi fields): read as strings, so that one
    empty cell cannot turn a column of ints into floats ("10" -> "10.0")."""
    return [field_cfg.get(f.name, {}).get("column", f.name) for f in [*spec.categorical,
                                                                     *spec.multi]]


def load_frame(data_cfg: dict, ids=()) -> pd.DataFrame:
    source = data_cfg.get("source", "synthetic")
    if source == "synthetic":
        return generate(**data_cfg.get("synthetic", {}))
    return load_source(source, data_cfg.get("path"), id_columns=ids)


def count_duplicates(df: pd.DataFrame, dedupe: bool, stats: dict) -> pd.DataFrame:
    """Count rows identical in every column to an earlier row (they can land in train and in
    test, which inflates test metrics); drop them before splitting when ``dedupe`` is set."""
    source = df.attrs.get("source", "<dataframe>")
    columns = [c for c in df.columns if c != "_row"]
    repeated = df.duplicated(subset=columns, keep="first").to_numpy()
    stats["duplicate_rows"] = int(repeated.sum())
    stats["duplicates_dropped"] = int(repeated.sum()) if dedupe else 0
    if not repeated.any():
        return df
    if dedupe:
        log.warning("%s: dropped %d duplicated rows (identical in every column) before splitting",
                    source, repeated.sum())
        out = df[~repeated].reset_index(drop=True)
        out.attrs = dict(df.attrs)
        return out
    log.warning("%s: %d rows repeat an earlier row exactly; duplicates can land in both train and "
                "test and inflate the test metrics. Set data.dedupe: true to drop them before "
                "splitting.", source, repeated.sum())
    return df


def check_splits(df: pd.DataFrame, parts: dict, spec: FeatureSpec, fractions) -> None:
    """The label needs both classes and every split rows, or training and metrics are
    meaningless (AUC NaN, or a KeyError on an empty split's predictions)."""
    source = df.attrs.get("source", "<dataframe>")
    values = np.unique(df[spec.label].to_numpy(dtype=np.float64)) if len(df) else []
    if len(values) < 2:
        raise DataError(f"{source}: label column {spec.label!r} has only the value(s) "
                        f"{list(values)} in all {len(df)} rows; training and AUC need both 0 and "
                        "1. Check the label column (or data.label_from's threshold).")
    sizes = {name: len(part) for name, part in parts.items()}
    for name, part in parts.items():
        if len(part) == 0:
            raise DataError(f"{source}: too few rows ({len(df)}) for the split "
                            f"{list(fractions)}: the {name} split is empty ({sizes}). Use more "
                            "rows (at least a few hundred) or change data.split.fractions.")
        if part[spec.label].nunique() < 2:  # tiny files: say so, the metrics will show NaN
            log.warning("%s: the %s split's label %r is all %s (%d rows of %d): its AUC will be "
                        "NaN. Use more rows or another data.split.seed.", source, name,
                        spec.label, part[spec.label].iloc[0], len(part), len(df))


def make_splits(df: pd.DataFrame, data_cfg: dict, spec: FeatureSpec, stats: dict) -> dict:
    """Labels, split and (optionally) sampled watch negatives, as raw DataFrames."""
    source = df.attrs.get("source")
    label_cfg = data_cfg.get("label_from")
    if label_cfg:
        check_columns(df, [label_cfg.get("column", "rating")], source, "data.label_from")
        check_finite(df, [label_cfg.get("column", "rating")], source)
        df, dropped = label_from_rating(df, label_cfg.get("column", "rating"),
                                        label_cfg.get("threshold", 4), spec.label,
                                        label_cfg.get("drop", []))
        stats["dropped_rows"] = dropped
    df = count_duplicates(df, bool(data_cfg.get("dedupe")), stats)
    split_cfg = data_cfg.get("split", {})
    fractions = split_cfg.get("fractions", [0.8, 0.1, 0.1])
    if split_cfg.get("protocol", "random") == "temporal":
        check_columns(df, [spec.user_field, "timestamp"], source, "the temporal split")
        parts = split_temporal(df, fractions, spec.user_field)
    else:
        parts = split_random(df, fractions, split_cfg.get("seed", 0))
    check_splits(df, parts, spec, fractions)
    neg = data_cfg.get("watch_negatives")
    if neg:
        item_cols = neg.get("item_columns", [])
        for k, name in enumerate(SPLITS):
            parts[name] = add_sampled_negatives(
                parts[name], df, neg.get("ratio", 1.0), neg.get("seed", 0) + k,
                user=spec.user_field, item=neg.get("item_field", "item_id"),
                watch=neg.get("label", "watch"), zero_labels=[spec.label], item_cols=item_cols)
    for part in parts.values():
        part.attrs["source"] = source
    return parts


# ------------------------------------------------------------------ cache
def cache_key(cfg: dict) -> str:
    data_cfg = cfg["data"]
    files = source_files(data_cfg.get("source", "synthetic"), data_cfg.get("path"))
    # v2: id columns read as strings, duplicate counts and split checks
    stamp = [(str(p), p.stat().st_size, int(p.stat().st_mtime)) for p in files if p.exists()]
    blob = json.dumps({"v": CACHE_VERSION, "data": data_cfg, "spec": cfg["spec"], "files": stamp},
                      sort_keys=True, default=str)
    return hashlib.sha1(blob.encode()).hexdigest()[:16]


def _to_dataset(columns: dict) -> datasets.Dataset:
    return datasets.Dataset.from_dict({k: (v.tolist() if v.ndim > 1 else v)
                                       for k, v in columns.items()})


def prepare(cfg: dict, use_cache: bool = True) -> Prepared:
    """Build (or load from the Arrow cache) the encoded splits for ``cfg`` (keys data, spec)."""
    data_cfg = cfg["data"]
    if data_cfg.get("source") == "shards":
        return prepare_shards(data_cfg)
    spec_cfg = cfg["spec"]
    cache_root = Path(data_cfg.get("cache_dir") or CACHE / "prepared").expanduser()
    path = cache_root / cache_key(cfg)
    if use_cache and (path / "meta.json").exists():
        return load_prepared(path)
    field_cfg = field_settings(spec_cfg)
    stats: dict = {"field_cfg": field_cfg, "oov": {}, "rows": {}, "label_rate": {}}
    raw_spec = FeatureSpec.from_dict(spec_cfg)
    df = load_frame(data_cfg, id_columns(raw_spec, field_cfg))
    stats["source"] = df.attrs.get("source")
    validate_frame(df, raw_spec, field_cfg, bool(data_cfg.get("label_from")))
    parts = make_splits(df, data_cfg, raw_spec, stats)
    vocabs = fit_vocabs(raw_spec, field_cfg, parts["train"])
    numeric = fit_numeric(raw_spec, field_cfg, parts["train"])
    spec = resolve_spec(spec_cfg, vocabs)
    encoder = Encoder(spec, field_cfg, vocabs, numeric)
    splits = {}
    for name, part in parts.items():
        columns, oov = encoder.encode(part)
        if "p_true" in part:
            columns["p_true"] = part["p_true"].to_numpy(dtype=np.float64)
        splits[name] = _to_dataset(columns)
        stats["rows"][name] = len(part)
        stats["oov"][name] = oov
        stats["label_rate"][name] = {lab: float(columns[lab].mean()) if len(part) else None
                                     for lab in spec.labels}
        if name != "train" and any(oov.values()):
            log.info("%s split: rows mapped to the OOV bucket per field: %s", name, oov)
    if "p_true" in parts["test"]:
        from ..metrics import ceiling_metrics  # the Bayes-optimal scores on the test split
        stats["ceiling"] = ceiling_metrics(parts["test"], spec)
    prepared = Prepared(spec, splits, vocabs, numeric, stats, path)
    if use_cache:
        save_prepared(prepared, path)
    return prepared


def prepare_shards(data_cfg: dict) -> Prepared:
    """A shard folder (already encoded; streamed, never loaded whole): its spec and splits."""
    if not data_cfg.get("path"):
        raise DataError("data.source is 'shards' but data.path is not set; point it at a folder "
                        "written by `python -m recsys_lhuc prepare-synthetic-large --out ...`")
    spec, splits, meta = load_shards(data_cfg["path"])
    stats = {"field_cfg": {}, "rows": {k: len(v) for k, v in splits.items()}, "oov": {},
             "source": str(data_cfg["path"]), "streamed": True, "label_rate": {}}
    return Prepared(spec, splits, {}, {}, stats, None)


def save_prepared(prepared: Prepared, path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True)
    bars = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()  # a few small shards: the bars would only clutter the logs
    try:
        for name, ds in prepared.splits.items():
            ds.save_to_disk(str(path / name))
    finally:
        if bars:
            datasets.enable_progress_bars()
    meta = {"spec": asdict(prepared.spec), "vocabs": {k: v.to_dict()
                                                      for k, v in prepared.vocabs.items()},
            "numeric_stats": prepared.numeric_stats, "stats": prepared.stats}
    tmp = path / "meta.json.tmp"
    tmp.write_text(json.dumps(meta))
    tmp.replace(path / "meta.json")  # written last: its presence marks a complete cache entry


def spec_from_dict(d: dict) -> FeatureSpec:
    d = copy.deepcopy(d)
    d["categorical"] = [Field(**f) for f in d["categorical"]]
    d["multi"] = [Field(**f) for f in d["multi"]]
    return FeatureSpec(**d)


def load_prepared(path: Path) -> Prepared:
    meta = json.loads((path / "meta.json").read_text())
    splits = {name: datasets.load_from_disk(str(path / name)) for name in SPLITS}
    vocabs = {k: Vocab.from_dict(v) for k, v in meta["vocabs"].items()}
    numeric = {k: tuple(v) for k, v in meta["numeric_stats"].items()}
    return Prepared(spec_from_dict(meta["spec"]), splits, vocabs, numeric, meta["stats"], path)


__all__ = ["DataError", "Encoder", "Prepared", "prepare", "load_prepared", "spec_from_dict"]
