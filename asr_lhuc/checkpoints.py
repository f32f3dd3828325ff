"""What a resumed training run needs besides the weights, and recovery that survives a bad file.

`RandomState` (python, numpy, torch CPU and CUDA generators) and `LossHistory` (each epoch's
training loss) are Checkpointer recoverables: a run killed after epoch k and rerun continues
exactly as the uninterrupted run would have (same dropout masks, augmentation draws and
shuffles), and its results keep the losses of the epochs before the kill.
`recover` loads the preferred checkpoint and, where one of its files is truncated or
otherwise unreadable, says which and falls back to the next one.
"""

import json
import logging
import pickle
import random
import zipfile
from pathlib import Path

import numpy as np
import torch
from speechbrain.utils.checkpoints import mark_as_loader, mark_as_saver, register_checkpoint_hooks

logger = logging.getLogger(__name__)
ZIP_MAGIC = b"PK\x03\x04"  # torch.save writes a zip archive
# What a truncated or garbled file raises on loading (torch's zip reader raises RuntimeError).
LOAD_ERRORS = (RuntimeError, EOFError, ValueError, OSError, pickle.UnpicklingError,
               zipfile.BadZipFile)


@register_checkpoint_hooks
class RandomState:
    """The random generators' states, saved with each checkpoint and restored on recovery."""

    @mark_as_saver
    def _save(self, path):
        np_state = np.random.get_state()
        version, internal, gauss = random.getstate()
        state = {  # plain types and tensors: loadable with weights_only=True
            "python": [version, list(internal), gauss],
            "numpy": {"keys": torch.from_numpy(np_state[1].astype(np.int64)),
                      "pos": int(np_state[2]), "has_gauss": int(np_state[3]),
                      "cached_gaussian": float(np_state[4])},
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        }
        torch.save(state, path)

    @mark_as_loader
    def _load(self, path, end_of_epoch=False):
        state = torch.load(path, map_location="cpu", weights_only=True)
        version, internal, gauss = state["python"]
        random.setstate((version, tuple(internal), gauss))
        numpy = state["numpy"]
        np.random.set_state(("MT19937", numpy["keys"].numpy().astype(np.uint32), numpy["pos"],
                             numpy["has_gauss"], numpy["cached_gaussian"]))
        torch.set_rng_state(state["torch"])
        cuda = state["cuda"]
        if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda)
        elif cuda or torch.cuda.is_available():
            logger.warning("%s: saved with %d CUDA devices, resumed with %d: the CUDA random "
                           "state is not restored (the run will not repeat exactly)", path,
                           len(cuda), torch.cuda.device_count() if torch.cuda.is_available() else 0)


@register_checkpoint_hooks
class LossHistory:
    """Each training epoch's mean loss, kept across resumes (results' ``train_loss_history``)."""

    def __init__(self):
        self.losses: list[float] = []

    @mark_as_saver
    def _save(self, path):
        Path(path).write_text(json.dumps(self.losses) + "\n")

    @mark_as_loader
    def _load(self, path, end_of_epoch=False):
        self.losses = [float(x) for x in json.loads(Path(path).read_text())]


def damaged_files(checkpoint) -> list[Path]:
    """The files of a SpeechBrain checkpoint that cannot be read back: empty, or torch zip
    archives cut short (their central directory, written last, is missing) or garbled (a
    member fails its CRC check, which torch.load itself does not do)."""
    bad = []
    for path in sorted(checkpoint.paramfiles.values()):
        path = Path(path)
        if path.stat().st_size == 0:
            bad.append(path)
            continue
        with open(path, "rb") as f:
            is_zip = f.read(4) == ZIP_MAGIC
        if is_zip:
            try:
                with zipfile.ZipFile(path) as archive:
                    if archive.testzip() is not None:  # a member fails its CRC: garbled
                        bad.append(path)
            except (zipfile.BadZipFile, EOFError, OSError):
                bad.append(path)
    return bad


def recover(checkpointer, min_key: str | None = None):
    """Load the latest checkpoint (or the one with the lowest `min_key`); where one of its files
    is damaged, warn, naming the file, and try the next best. Returns the loaded checkpoint,
    or None where there is none yet."""
    candidates = checkpointer.find_checkpoints(min_key=min_key)  # best first
    if not candidates:
        logger.info("no checkpoint in %s yet: starting from scratch", checkpointer.checkpoints_dir)
        return None
    skipped = []
    for checkpoint in candidates:
        bad = damaged_files(checkpoint)
        if not bad:
            checkpointer.load_checkpoint(checkpoint)
            return checkpoint
        skipped.append(checkpoint.path)
        logger.warning("checkpoint %s is damaged (unreadable: %s; e.g. a run killed while "
                       "saving, or a full disk); falling back to the next checkpoint. Delete "
                       "that folder to silence this warning.", checkpoint.path,
                       ", ".join(p.name for p in bad))
    raise RuntimeError(
        f"every checkpoint in {checkpointer.checkpoints_dir} has damaged files "
        f"({', '.join(p.name for p in skipped)}): delete those CKPT+ folders to train from "
        "scratch, or restore them from a backup")
