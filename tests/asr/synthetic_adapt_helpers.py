"""The committed synthetic models and a tiny generated test set, for the adaptation tests."""

from pathlib import Path

from asr_lhuc.adapt import AsrSystem, load_speakers
from asr_lhuc.data import prepare_synthetic
from asr_lhuc.pretrained import load_pretrained

PRETRAINED = Path(__file__).resolve().parents[2] / "recipes/Synthetic/ASR/CTC/pretrained"
TARGETS = ["DNN.block_0.act", "DNN.block_1.act"]


def tiny_test_speakers(root: Path) -> dict:
    """Two synthetic test speakers with four utterances each, generated under `root`."""
    prepare_synthetic(root, root, n_train_speakers=2, n_test_speakers=2,
                      utts_per_train_speaker=2, utts_per_test_speaker=4, n_adapt_utts=2)
    return load_speakers(root / "test.csv")


def system_from(name: str, searcher_of=None) -> AsrSystem:
    """The committed checkpoint `name` with LHUC on TARGETS (SI models get it attached);
    `searcher_of(encoder)` gives its beam searcher (None: greedy)."""
    model, encoder, _, _ = load_pretrained(PRETRAINED / name)
    if not model.has_lhuc:
        model.attach_speaker_lhuc(TARGETS, 0)
    searcher = None if searcher_of is None else searcher_of(encoder)
    return AsrSystem(model, encoder, device="cpu", cache=True, searcher=searcher)
