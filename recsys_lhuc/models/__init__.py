"""Ranking models: `build_model(name, spec, **cfg)` for every model of the recsys port."""

from torch import nn

from recsys_lhuc.spec import FeatureSpec

from .dnn import DNN
from .embedding import FeatureEmbedding, split_sparse_parameters
from .lhuc_user import LHUCUser
from .pepnet import PEPNet
from .poso import POSO
from .ppnet import PPNet, default_fused_gates
from .wide_deep import WideDeep

MODELS: dict[str, type[nn.Module]] = {
    "dnn": DNN,
    "wide_deep": WideDeep,
    "ppnet": PPNet,
    "lhuc_user": LHUCUser,
    "pepnet": PEPNet,
    "poso": POSO,
}
MULTI_TASK = {"pepnet"}  # models whose forward returns {label name: logits}


def build_model(name: str, spec: FeatureSpec, **cfg) -> nn.Module:
    """Build model `name` for `spec`; `cfg` holds the model's keyword arguments (hidden=...)."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose one of {sorted(MODELS)}")
    try:
        return MODELS[name](spec, **cfg)
    except TypeError as err:
        raise TypeError(f"bad config for model {name!r}: {err}") from err


__all__ = ["MODELS", "MULTI_TASK", "DNN", "FeatureEmbedding", "LHUCUser", "PEPNet", "POSO",
           "PPNet", "WideDeep", "build_model", "default_fused_gates", "split_sparse_parameters"]
