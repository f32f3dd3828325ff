"""What every recipe's train.py does after data preparation: build, train, test, export.

Steps: datasets + units + speaker map (`dataio_prepare`) -> model (+ LHUC tables on the YAML's
``lhuc_targets`` when ``mode: sat_lhuc``) -> `LHUCCTCBrain.fit` (the Checkpointer resumes a
killed run, random state and loss history included, so it ends as an uninterrupted run would)
-> test with the best checkpoint (SI mode) -> results JSON, WER file and an fp16 pretrained
checkpoint. ``test_checkpoint: <file.pt>`` only decodes the test set with a pretrained file.
A lock file refuses a second run into the same output folder.
"""

import contextlib
import json
import logging
import shlex
import sys
from pathlib import Path

import speechbrain as sb
import torch
from hyperpyyaml import load_hyperpyyaml
from speechbrain.utils.distributed import if_main_process, run_on_main

from .brain import LHUCCTCBrain, TrainClock, dataio_prepare
from .checkpoints import LossHistory, RandomState
from .decode import characters_of, make_beam_searcher
from .lm import transcript_lm_file, write_transcript_lm
from .model import count_parameters
from .pretrained import (
    STORED_CACHE_DIR,
    init_from_pretrained,
    load_pretrained,
    pretrained_results,
    save_pretrained,
)
from .run_lock import RunLock
from .scoring import age_group_fields

logger = logging.getLogger(__name__)
MODES = ("si", "sat_lhuc")


def load_recipe(argv: list[str]):
    """Parse SpeechBrain-style arguments; return (hparams_file, run_opts, overrides, hparams)."""
    hparams_file, run_opts, overrides = sb.parse_arguments(argv)
    sb.utils.distributed.ddp_init_group(run_opts)  # no-op unless launched by torchrun
    with open(hparams_file) as fin:
        hparams = load_hyperpyyaml(fin, overrides)
    return hparams_file, run_opts, overrides, hparams


def output_lock(hparams: dict) -> RunLock | contextlib.nullcontext:
    """The output folder's lock (held by the main process: DDP ranks share the folder)."""
    if not if_main_process():
        return contextlib.nullcontext()
    return RunLock(hparams["output_folder"], "training run")


def prepare_data(prepare_fn, hparams: dict) -> None:
    """Run the corpus preparation once (main process) with the YAML's ``prepare_kwargs``."""
    run_on_main(prepare_fn, kwargs=dict(hparams["prepare_kwargs"]))


def build_brain(hparams: dict, run_opts: dict, speaker_map) -> LHUCCTCBrain:
    """The model with LHUC attached per ``mode``, the Checkpointer's extras, and the Brain."""
    mode = hparams.get("mode", "si")
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r} (set it in the YAML)")
    model = hparams["model"]
    n_units = len(hparams["text_encoder"])
    if model.config["n_tokens"] != n_units:
        raise ValueError(f"the model has {model.config['n_tokens']} outputs but the units have "
                         f"{n_units} (blank included): set n_tokens: {n_units} in the YAML")
    if mode == "sat_lhuc":
        if not hparams.get("lhuc_targets"):
            raise ValueError("mode: sat_lhuc needs a non-empty lhuc_targets list in the YAML")
        model.attach_speaker_lhuc(hparams["lhuc_targets"], len(speaker_map),
                                  sat_gamma=hparams["sat_gamma"], sat_level=hparams["sat_level"],
                                  reparam=hparams.get("lhuc_reparam", "2sigmoid"))
    if hparams.get("init_from"):  # e.g. the synthetic-corpus model; a resumed run overrides it
        init_from_pretrained(model, hparams["init_from"])
        logger.info("initialised the network from %s", hparams["init_from"])
    checkpointer = hparams["checkpointer"]
    checkpointer.add_recoverable("normalizer", model.normalize)
    add_run_state(hparams, checkpointer)
    add_test_searcher(hparams)
    return LHUCCTCBrain(modules={"model": model}, opt_class=hparams["opt_class"],
                        hparams=hparams, run_opts=run_opts, checkpointer=checkpointer)


def add_run_state(hparams: dict, checkpointer=None) -> None:
    """Training time, loss history and random state, kept by the Checkpointer so that a resumed
    run ends where the uninterrupted one would. Optional on loading: checkpoints from before
    they were saved still resume (not exactly: their random state is re-seeded)."""
    hparams["train_clock"] = TrainClock()
    hparams["loss_history"] = LossHistory()
    if checkpointer is not None:
        checkpointer.add_recoverable("train_clock", hparams["train_clock"])
        checkpointer.add_recoverable("loss_history", hparams["loss_history"], optional_load=True)
        checkpointer.add_recoverable("random_state", RandomState(), optional_load=True)


def add_test_searcher(hparams: dict) -> None:
    """Beam search (+ LM) for the test set where ``test_beam_size`` > 1."""
    if hparams.get("test_beam_size", 1) > 1:
        hparams["test_searcher"] = make_beam_searcher(
            hparams["text_encoder"], beam_size=hparams["test_beam_size"],
            kenlm_model_path=training_lm(hparams), alpha=hparams.get("lm_alpha", 0.5),
            beta=hparams.get("lm_beta", 1.0))


def training_lm(hparams: dict) -> str | None:
    """ARPA word n-gram from the training transcripts (``lm_order`` > 0), or None."""
    order = hparams.get("lm_order", 0) or 0
    if order <= 0:
        return None
    try:
        import flashlight.lib.text.decoder  # noqa: F401
    except ImportError as err:
        raise ImportError("lm_order > 0 needs flashlight-text (KenLM inside) for the LM beam "
                          "search: pip install flashlight-text (the project's `lm` extra), or "
                          "set lm_order: 0") from err
    run_on_main(write_transcript_lm, args=[hparams["train_csv"], hparams["output_folder"], order])
    return str(transcript_lm_file(hparams["output_folder"], order))


def run_recipe(argv: list[str], prepare_fn, script: str) -> dict:
    """Everything a recipe's train.py does; returns the results dict (also written as JSON).
    With ``test_checkpoint`` set, only decodes the test set with that pretrained file."""
    hparams_file, run_opts, overrides, hparams = load_recipe(argv)
    with output_lock(hparams):
        sb.create_experiment_directory(experiment_directory=hparams["output_folder"],
                                       hyperparams_to_save=hparams_file, overrides=overrides)
        prepare_data(prepare_fn, hparams)
        if hparams.get("test_checkpoint"):
            return test_checkpoint(hparams, run_opts, script, argv)
        return train_and_test(hparams_file, hparams, run_opts, script, argv)


def train_and_test(hparams_file, hparams: dict, run_opts: dict, script: str,
                   argv: list[str]) -> dict:
    """Train (resuming from the last checkpoint), test the best one, export and write results."""
    datasets, text_encoder, speaker_map = dataio_prepare(hparams)
    hparams["text_encoder"] = text_encoder
    brain = build_brain(hparams, run_opts, speaker_map)
    if if_main_process():
        speaker_map.save(Path(hparams["output_folder"]) / "speakers.json")
    brain.fit(hparams["epoch_counter"], datasets["train"], datasets["valid"],
              train_loader_kwargs=hparams["train_dataloader_opts"],
              valid_loader_kwargs=hparams["valid_dataloader_opts"])
    brain.evaluate(datasets["test"], min_key="WER",
                   test_loader_kwargs=hparams["test_dataloader_opts"])
    results = results_record(brain, hparams, datasets["test"], speaker_map, script, argv)
    if if_main_process():
        save_pretrained(hparams["pretrained_path"], brain.model, text_encoder, speaker_map,
                        hparams_file, extra={"results": results})
        write_results(hparams["results_json"], results)
    return results


def test_checkpoint(hparams: dict, run_opts: dict, script: str, argv: list[str]) -> dict:
    """Decode the test set with the pretrained file ``test_checkpoint`` (no training folder
    needed) and write the results JSON; the YAML's data and decoding settings apply."""
    path = hparams["test_checkpoint"]
    model, encoder, speaker_map, _ = load_pretrained(
        path, feature_cache_dir=hparams.get("feature_cache_dir", STORED_CACHE_DIR))
    datasets, text_encoder, speakers = dataio_prepare(hparams)
    if characters_of(text_encoder) != characters_of(encoder):
        raise ValueError(f"{path} outputs the units {characters_of(encoder)[:12]}... but this "
                         f"YAML's are {characters_of(text_encoder)[:12]}...: use the YAML the "
                         "checkpoint was trained with (its `hparams` text)")
    if hparams.get("eval_with_speaker_rows") and speakers.to_dict() != speaker_map.to_dict():
        raise ValueError(f"eval_with_speaker_rows: {path} was trained on other speakers than "
                         "this YAML's train_csv, so its LHUC rows would go to the wrong speakers")
    hparams["text_encoder"] = encoder
    add_run_state(hparams)
    add_test_searcher(hparams)
    brain = LHUCCTCBrain(modules={"model": model}, opt_class=None, hparams=hparams,
                         run_opts=run_opts, checkpointer=None)
    brain.evaluate(datasets["test"], test_loader_kwargs=hparams["test_dataloader_opts"])
    results = results_record(brain, hparams, datasets["test"], speaker_map, script, argv)
    trained = pretrained_results(path)
    results.update(checkpoint=str(path), epochs=trained.get("epochs"),
                   train_seconds=trained.get("train_seconds"),
                   train_loss_history=trained.get("train_loss_history", []),
                   init_from=trained.get("init_from"))
    if if_main_process():
        write_results(hparams["results_json"], results)
    return results


def write_results(path: str | Path, results: dict) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=1) + "\n")
    logger.info("results (%s): %s", path, json.dumps(results))


def results_record(brain, hparams, test_set, speaker_map, script, argv) -> dict:
    """The keys the issue asks for, plus what is needed to tell runs apart."""
    scores = brain.test_scores
    test_speakers = {row["spk_id"] for row in test_set.data.values()}
    record = {
        "corpus": hparams["corpus"],
        "mode": hparams.get("mode", "si"),
        "wer": scores["wer"],
        "cer": scores["cer"],
        "n_utts": scores["n_utts"],
        "n_speakers": len(test_speakers),
        "epochs": hparams["epoch_counter"].current,
        "train_seconds": round(hparams["train_clock"].seconds, 1),
        "params": count_parameters(brain.model),
        "lhuc_params": count_parameters(brain.model, lhuc_only=True),
        "device": str(brain.device) + ("" if "cuda" in str(brain.device)
                                       else f" ({torch.get_num_threads()} threads)"),
        "checkpoint": str(hparams["pretrained_path"]),
        "command": shlex.join(["python", script, *argv]),  # quoted: YAML lists stay one word
        "decoding": decoding_name(hparams),
        "decoded_in_si_mode": not hparams.get("eval_with_speaker_rows", False),
        "n_train_speakers": len(speaker_map),
        "init_from": hparams.get("init_from"),
        "model_config": brain.model.config,
        "lhuc_config": brain.model.lhuc_config,
        "train_loss_history": [round(x, 4) for x in hparams["loss_history"].losses],
    }
    if "greedy" in scores:
        record["wer_greedy"] = scores["greedy"]["wer"]
        record["cer_greedy"] = scores["greedy"]["cer"]
    record.update(age_group_fields(scores.get("groups", {})))
    return record


def decoding_name(hparams: dict) -> str:
    beam = hparams.get("test_beam_size", 1)
    if beam <= 1:
        return "greedy"
    order = hparams.get("lm_order", 0) or 0
    lm = (f" + {order}-gram word LM from train transcripts (alpha {hparams.get('lm_alpha')}, "
          f"beta {hparams.get('lm_beta')})") if order > 0 else ""
    return f"beam {beam}{lm}"


def main(prepare_fn, script: str, argv: list[str] | None = None) -> dict:
    """Entry point for a recipe's train.py."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    return run_recipe(sys.argv[1:] if argv is None else argv, prepare_fn, script)
