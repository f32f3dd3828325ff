"""Config checking: every key of every section is known, and every value has its field's type.

A misspelt key (``trian:``, ``data.spilt``) would otherwise be ignored and the run would quietly use
the default; a value YAML read as the wrong type (``lr: 1e-3`` is a string to PyYAML) would fail
later with a TypeError that names nothing. ``check_config`` rejects the first with a did-you-mean
and coerces or rejects the second, naming the key (``train.lr``).
"""
from __future__ import annotations

import difflib
import inspect
from dataclasses import fields

import yaml


class ConfigError(ValueError):
    """A bad config key or value; the message names the key and the fix."""


class Value:
    """One leaf of the schema: its type, whether null is allowed, a lower bound (``positive``:
    strictly above 0), the choices."""

    def __init__(self, kind, nullable: bool = False, minimum=None, choices=None,
                 positive: bool = False):
        self.kind, self.nullable, self.minimum, self.choices = kind, nullable, minimum, choices
        self.positive = positive


class ListOf:
    """A list whose items follow ``item`` (a Value, or a dict schema for mappings)."""

    def __init__(self, item, nullable: bool = False, length: int | None = None):
        self.item, self.nullable, self.length = item, nullable, length


class NameOr:
    """A bare name string, or a mapping with ``schema``'s keys (e.g. a spec field)."""

    def __init__(self, schema: dict):
        self.schema = schema


ANY = Value(object)
KIND_WORDS = {int: "an integer", float: "a number", bool: "true or false", str: "a string",
              dict: "a mapping", list: "a list"}


def did_you_mean(key: str, known) -> str:
    close = difflib.get_close_matches(key, list(known), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def coerce(value, rule: Value, where: str):
    """``value`` as ``rule.kind``; strings from YAML such as '1e-3' become numbers."""
    if value is None:
        if rule.nullable or rule.kind is object:
            return None
        raise ConfigError(f"{where}: must be set ({KIND_WORDS.get(rule.kind, rule.kind)})")
    kind = rule.kind
    if kind is object:
        return value
    if kind is bool:
        if isinstance(value, str) and value.lower() in ("true", "false"):
            value = value.lower() == "true"
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {value!r}")
    elif kind in (int, float):
        value = _number(value, kind, where)
    elif not isinstance(value, kind):
        raise ConfigError(f"{where}: expected {KIND_WORDS.get(kind, kind)}, got {value!r}")
    if rule.minimum is not None and value < rule.minimum:
        raise ConfigError(f"{where}: must be at least {rule.minimum}, got {value!r}")
    if rule.positive and value <= 0:
        raise ConfigError(f"{where}: must be greater than 0, got {value!r}")
    if rule.choices is not None and value not in rule.choices:
        raise ConfigError(f"{where}: must be one of {list(rule.choices)}, got {value!r}"
                          f"{did_you_mean(str(value), rule.choices)}")
    return value


def _number(value, kind, where: str):
    word = KIND_WORDS[kind]
    if isinstance(value, bool):
        raise ConfigError(f"{where}: expected {word}, got {value!r}")
    if isinstance(value, str):
        try:
            value = yaml.safe_load(value) if value.strip() else value
            value = float(value) if kind is float else value
        except (ValueError, yaml.YAMLError):
            pass
    if kind is float and isinstance(value, int):
        value = float(value)
    if kind is int and isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, kind) or isinstance(value, bool):
        raise ConfigError(f"{where}: expected {word}, got {value!r}")
    return value


def check(node, schema, where: str):
    """Check and coerce ``node`` against ``schema`` (a dict, Value, ListOf or NameOr)."""
    if isinstance(schema, Value):
        return coerce(node, schema, where)
    if isinstance(schema, NameOr):
        if isinstance(node, str):
            return node
        return check(node, schema.schema, where)
    if isinstance(schema, ListOf):
        return _check_list(node, schema, where)
    if node is None:
        return None
    if not isinstance(node, dict):
        raise ConfigError(f"{where}: expected a mapping with keys {sorted(schema)}, got {node!r}")
    out = {}
    for key, value in node.items():
        path = f"{where}.{key}" if where else str(key)
        if key not in schema:
            raise ConfigError(f"unknown config key {path!r}{did_you_mean(str(key), schema)}; "
                              f"known keys{' of ' + where if where else ''}: {sorted(schema)}")
        out[key] = check(value, schema[key], path)
    return out


def _check_list(node, schema: ListOf, where: str):
    if node is None and schema.nullable:
        return None
    if isinstance(node, tuple):
        node = list(node)
    if not isinstance(node, list):
        raise ConfigError(f"{where}: expected a list, e.g. [{_example(schema.item)}], got "
                          f"{node!r}")
    if schema.length is not None and len(node) != schema.length:
        raise ConfigError(f"{where}: expected {schema.length} items, got {len(node)}: {node!r}")
    return [check(item, schema.item, f"{where}[{i}]") for i, item in enumerate(node)]


def _example(item) -> str:
    if isinstance(item, Value) and item.kind in (int, float):
        return "128, 64" if item.kind is int else "0.8, 0.1, 0.1"
    return "..."


# ------------------------------------------------------------------ the schema
FIELD = {"name": Value(str), "embed_dim": Value(int, minimum=1), "max_len": Value(int, minimum=1),
         "min_count": Value(int, minimum=1), "hash_buckets": Value(int, minimum=0),
         "column": Value(str), "sep": Value(str), "vocab_size": Value(int, minimum=1)}
SPEC = {
    "categorical": ListOf(NameOr(FIELD)),
    "multi": ListOf(NameOr(FIELD)),
    "numeric": ListOf(NameOr({"name": Value(str), "column": Value(str)})),
    "label": NameOr({"name": Value(str)}),
    "extra_labels": ListOf(NameOr({"name": Value(str)})),
    "personal_ids": ListOf(Value(str)),
    "user_field": Value(str, nullable=True),
}
SOURCES = ("synthetic", "ml100k", "ml-latest-small", "file", "shards")


def _signature_schema(fn, skip=()) -> dict:
    """A schema from a function's keyword defaults: each key takes its default's type."""
    out = {}
    for name, param in inspect.signature(fn).parameters.items():
        if name in skip or param.kind in (param.VAR_KEYWORD, param.VAR_POSITIONAL):
            continue
        out[name] = _rule_for_default(param.default)
    return out


def _rule_for_default(default):
    if default is inspect.Parameter.empty or default is None:
        return ANY
    if isinstance(default, tuple) and all(isinstance(x, int) for x in default):
        return ListOf(Value(int, minimum=1))
    if isinstance(default, (bool, int, float, str)):
        return Value(type(default))
    return ANY


def data_schema() -> dict:
    from .data.synthetic import generate

    return {
        "source": Value(str, choices=SOURCES),
        "path": Value(str, nullable=True),
        "cache_dir": Value(str, nullable=True),
        "dedupe": Value(bool),
        "synthetic": _signature_schema(generate),
        "label_from": {"column": Value(str), "threshold": Value(float),
                       "drop": ListOf(Value(float))},
        "split": {"protocol": Value(str, choices=("random", "temporal")),
                  "fractions": ListOf(Value(float, minimum=0.0), length=3),
                  "seed": Value(int)},
        "watch_negatives": {"ratio": Value(float, minimum=0.0), "seed": Value(int),
                            "item_field": Value(str), "label": Value(str),
                            "item_columns": ListOf(Value(str))},
    }


def train_schema() -> dict:
    from .train import TrainConfig

    rules = {"int": Value(int), "float": Value(float), "bool": Value(bool), "str": Value(str),
             "dict": Value(dict), "list": Value(list), "int | None": Value(int, nullable=True)}
    out = {f.name: rules.get(f.type, ANY) for f in fields(TrainConfig)}
    for name in ("epochs", "batch_size", "eval_batch_size", "patience"):
        out[name] = Value(int, minimum=1)
    out["max_steps"] = Value(int, nullable=True, minimum=1)
    out["lr"] = Value(float, minimum=0.0)
    out["amp"] = Value(str, choices=("auto", "bf16", "off"))
    out["prefetch"] = Value(int, minimum=0)
    out["loader_workers"] = Value(int, minimum=1)
    return out


# Model keys whose defaults do not say their type or range (None, or a bound below 0 invalid)
MODEL_RULES = {
    "lhuc_user": {"bayes_prior_std": Value(float, nullable=True, positive=True),
                  "bayes_init_std": Value(float, positive=True),
                  "bayes_kl_weight": Value(float, minimum=0.0)},
}


def model_schema(name: str) -> dict:
    from .models import MODELS

    if name not in MODELS:
        raise ConfigError(f"model.name: unknown model {name!r}{did_you_mean(name, MODELS)}; "
                          f"choose one of {sorted(MODELS)}")
    return {"name": Value(str), **_signature_schema(MODELS[name], skip=("spec",)),
            **MODEL_RULES.get(name, {})}


def check_config(cfg: dict, source: str = "config") -> dict:
    """The config with every value checked and coerced; ConfigError naming the key otherwise."""
    if not isinstance(cfg, dict):
        raise ConfigError(f"{source}: expected a mapping with sections data, spec, model, train")
    model_name = (cfg.get("model") or {}).get("name", "dnn")
    schema = {"data": data_schema(), "spec": SPEC, "model": model_schema(model_name),
              "train": train_schema()}
    out = check(cfg, schema, "")
    if "data" not in out:
        raise ConfigError(f"{source}: the 'data' section is missing")
    if (out["data"] or {}).get("source") == "shards":
        if "spec" in out:
            raise ConfigError(f"{source}: with data.source 'shards' the feature spec comes from "
                              "the shards' meta.json; remove the 'spec' section")
        return out
    if "spec" not in out:
        raise ConfigError(f"{source}: the 'spec' section is missing")
    if "label" not in out["spec"]:
        raise ConfigError(f"{source}: spec.label is missing (the name of the 0/1 label column)")
    return out

