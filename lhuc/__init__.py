"""lhuc: Learning Hidden Unit Contributions for any PyTorch model.

Core pieces, one per file: reparameterisations (`reparam`), per-identity amplitude tables with a
speaker-independent row (`table`), SAT-LHUC sampling (`sat`), PPNet gate networks (`gate`),
attaching LHUC to named layers (`attach`), adapter files (`adapter_io`), folding (`fold`) and
Bayesian LHUC (`bayes`: a Gaussian posterior per identity, shrunk toward the SI row).
"""

from . import bayes
from .adapter_io import lhuc_state_dict, load_adapter, save_adapter
from .attach import (
    add_identities,
    attach_lhuc,
    detach_lhuc,
    freeze_non_lhuc,
    identities,
    lhuc_parameters,
    lhuc_tables,
    set_identities,
)
from .config import LHUCConfig
from .fold import fold_lhuc
from .gate import GateBank, GateNN
from .reparam import REPARAMS, Reparam, get_reparam
from .table import AmplitudeTable

__all__ = [
    "AmplitudeTable", "GateBank", "bayes", "GateNN", "LHUCConfig", "REPARAMS", "Reparam",
    "add_identities", "attach_lhuc", "detach_lhuc", "fold_lhuc", "freeze_non_lhuc",
    "get_reparam", "identities", "lhuc_parameters", "lhuc_state_dict", "lhuc_tables",
    "load_adapter", "save_adapter", "set_identities",
]
__version__ = "0.1.0"
