"""Feature spec shared by the data layer and the models.

A batch is a dict of tensors: each categorical field -> LongTensor (B,); each numeric field ->
FloatTensor (B,); each multi field -> LongTensor (B, max_len) (0 = padding); ``spec.label`` and each
extra label -> FloatTensor (B,) in {0, 1}. Id 0 of every categorical/multi field is the
out-of-vocabulary (and padding) bucket.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path

import yaml


@dataclass
class Field:
    """One categorical or multi-valued field."""

    name: str
    vocab_size: int = 0  # categorical/multi: ids 0..vocab_size-1; id 0 is the OOV/padding bucket
    embed_dim: int = 16
    max_len: int = 1  # multi-valued fields: padded length (pad id 0)


@dataclass
class FeatureSpec:
    """Which fields a model reads, which are labels, and which feed the personal gates."""

    categorical: list[Field]  # includes the personal-id fields
    numeric: list[str]
    multi: list[Field]
    label: str
    extra_labels: list[str] = field(default_factory=list)
    personal_ids: list[str] = field(default_factory=list)  # categorical fields feeding the gates
    user_field: str = "user_id"  # field used for gAUC and LHUC-user

    def __post_init__(self):
        names = [f.name for f in self.categorical]
        for pid in self.personal_ids:
            if pid not in names:
                raise ValueError(f"personal id {pid!r} is not a categorical field; add it to "
                                 f"'categorical' (have {names})")
        if self.user_field and self.user_field not in names:
            raise ValueError(f"user_field {self.user_field!r} is not a categorical field; add it "
                             f"to 'categorical' (have {names})")

    @property
    def labels(self) -> list[str]:
        """The main label followed by the extra task labels."""
        return [self.label, *self.extra_labels]

    def get_field(self, name: str) -> Field:
        """The categorical or multi field called ``name``."""
        for f in [*self.categorical, *self.multi]:
            if f.name == name:
                return f
        raise KeyError(name)

    @classmethod
    def from_dict(cls, d: dict) -> FeatureSpec:
        """Build from a plain dict (the ``spec`` part of a YAML config).

        Field entries may be a name string or a mapping with Field's keys; extra keys that the data
        layer uses (``min_count``, ``hash_buckets``, ``column``, ``sep``) are ignored here.
        """
        keys = {f.name for f in fields(Field)}

        def to_field(x):
            if isinstance(x, str):
                return Field(name=x)
            return Field(**{k: v for k, v in x.items() if k in keys})

        return cls(
            categorical=[to_field(x) for x in d.get("categorical", [])],
            numeric=[x if isinstance(x, str) else x["name"] for x in d.get("numeric", [])],
            multi=[to_field(x) for x in d.get("multi", [])],
            label=d["label"] if isinstance(d["label"], str) else d["label"]["name"],
            extra_labels=[x if isinstance(x, str) else x["name"]
                          for x in d.get("extra_labels", [])],
            personal_ids=list(d.get("personal_ids", [])),
            user_field=d.get("user_field", "user_id"),
        )

    @classmethod
    def from_yaml(cls, path) -> FeatureSpec:
        """Read a spec from a YAML file (either the spec itself or a config with a ``spec`` key)."""
        with open(Path(path)) as fh:
            d = yaml.safe_load(fh)
        if d is None:
            raise ValueError(f"{path}: empty YAML file; expected a feature spec")
        return cls.from_dict(d.get("spec", d))
