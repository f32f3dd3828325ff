"""One-file pretrained checkpoints: weights (fp16 by default), units, speakers, model settings.

The file is a plain dict of tensors, strings and numbers, loadable with
``torch.load(weights_only=True)``; the model is rebuilt from the stored constructor arguments,
LHUC is re-attached from the stored LHUC settings, and the normalisation statistics restored.
"""

from pathlib import Path

import torch

from .checkpoints import LOAD_ERRORS
from .decode import characters_of, make_text_encoder
from .model import CTCAcousticModel
from .speakers import SpeakerMap

FORMAT = "asr_lhuc.ctc/1"
STORED_CACHE_DIR = object()  # load_pretrained: keep the feature cache folder stored in the file


def save_pretrained(path: str | Path, model: CTCAcousticModel, text_encoder, speaker_map,
                    hparams_path: str | Path | None = None, fp16: bool = True,
                    extra: dict | None = None) -> Path:
    """Write `model` (+ units, speaker map, the hparams file's text) to `path` (a .pt file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: (v.half() if fp16 and v.is_floating_point() else v).cpu()
             for k, v in model.state_dict().items()}
    norm = model.normalize._statistics_dict()
    blob = {
        "format": FORMAT,
        "model_config": model.config,
        "lhuc_config": model.lhuc_config,
        "state_dict": state,
        "normalize": {k: (torch.as_tensor(v).float().cpu() if k != "count" else int(v))
                      for k, v in norm.items()},
        "characters": "".join(characters_of(text_encoder)),
        "units": characters_of(text_encoder),  # the output labels
        "speakers": speaker_map.to_dict() if speaker_map is not None else {},
        "hparams": Path(hparams_path).read_text() if hparams_path else "",
        "extra": extra or {},
    }
    tmp = path.with_name(path.name + ".part")
    torch.save(blob, tmp)
    tmp.replace(path)
    return path


def init_from_pretrained(model: CTCAcousticModel, path: str | Path) -> list[str]:
    """Copy the network weights of a pretrained file into `model` (same architecture) to start
    training from them. LHUC tables and normalisation statistics are not copied: the new
    corpus estimates its own. A model that fine-tunes Whisper's top blocks can start from one
    that did not: those blocks keep the pretrained Whisper weights. Returns the names of the
    parameters left at their init."""
    blob = read_checkpoint(path)
    state = {k: v.float() if v.is_floating_point() else v for k, v in blob["state_dict"].items()
             if "lhuc_table" not in k}
    own = model.state_dict()
    wrong = [k for k, v in state.items() if k in own and own[k].shape != v.shape]
    if wrong or blob["model_config"]["n_tokens"] != model.config["n_tokens"]:
        raise ValueError(f"{path} does not match this model's architecture ({wrong[:3]}): use "
                         f"the same model settings as {blob['model_config']}")
    missing, unexpected = model.load_state_dict(state, strict=False)
    # LHUC tables start at amplitude 1 and fine-tuned Whisper blocks at Whisper's own weights.
    if unexpected or any("lhuc_table" not in k and not k.startswith("whisper_top.")
                         for k in missing):
        raise ValueError(f"{path}: unexpected {unexpected[:3]}, missing {missing[:3]}")
    return missing


def read_checkpoint(path: str | Path) -> dict:
    """The file's dict; a missing, truncated or garbled file is an error naming it."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} not found")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except LOAD_ERRORS as err:
        raise ValueError(
            f"{path} ({path.stat().st_size} bytes) cannot be read: truncated or damaged (an "
            f"interrupted copy or download, a full disk?). Copy it again, or re-export it: "
            f"train.py writes it at the end of a run. ({type(err).__name__}: "
            f"{str(err).splitlines()[0] if str(err) else ''})") from err
    if not isinstance(blob, dict) or blob.get("format") != FORMAT:
        found = blob.get("format") if isinstance(blob, dict) else type(blob).__name__
        raise ValueError(f"{path} is not an asr_lhuc CTC checkpoint (format {found})")
    return blob


def pretrained_results(path: str | Path) -> dict:
    """The training results train.py stored in the file ({} when there are none)."""
    return read_checkpoint(path).get("extra", {}).get("results", {})


def load_pretrained(path: str | Path, device: str | torch.device = "cpu",
                    feature_cache_dir=STORED_CACHE_DIR, pack_rnn: bool | None = None):
    """Return (model: eval mode, float32, on `device`), text_encoder, speaker_map, hparams text.

    `feature_cache_dir`: where a Whisper/Moonshine front end keeps its features (None: memory
    only); by default the folder stored in the file, as it was when the model was trained.
    `pack_rnn`: run the RNN on packed sequences (True) or over padding (False); None: as
    stored (checkpoints from before the option: False)."""
    blob = read_checkpoint(path)
    config = dict(blob["model_config"])
    if pack_rnn is not None:
        config["pack_rnn"] = bool(pack_rnn)
    if feature_cache_dir is not STORED_CACHE_DIR:
        config["feature_cache_dir"] = None if feature_cache_dir is None else str(feature_cache_dir)
    model = CTCAcousticModel(**config)
    state = blob["state_dict"]
    if blob["lhuc_config"]:
        rows = next(v for k, v in state.items() if k.endswith("lhuc_table.rows"))
        model.attach_speaker_lhuc(num_speakers=rows.shape[0], **blob["lhuc_config"])
    model.load_state_dict({k: v.float() if v.is_floating_point() else v
                           for k, v in state.items()})
    model.normalize._load_statistics_dict(dict(blob["normalize"]))
    model.to(device).eval()
    encoder = make_text_encoder(blob.get("units", blob["characters"]))
    return model, encoder, SpeakerMap.from_dict(blob["speakers"]), blob["hparams"]
