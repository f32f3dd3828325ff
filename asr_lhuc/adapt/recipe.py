"""What every recipe's adapt.py does: the headline systems, loop vs batched timing, sweeps.

Systems (any subset, in the YAML's ``systems`` list):
  si              the SI model, SI row (first pass; LHUC attached but at amplitude 1)
  si_lhuc         the SI model + unsupervised LHUC from its own first pass
  si_lhuc_oracle  the SI model + LHUC with the true transcripts as targets (upper bound)
  si_lhuc_external, sat_lhuc_external
                  LHUC with another recogniser's hypotheses as targets (``hypotheses_file``:
                  still unsupervised, but the first pass is not the adapted model's own)
  si_lhuc_online  utterance n decoded with the row learned on 1..n-1 (SI first pass)
  sat_si_mode     the SAT-LHUC model decoded with its SI row
  sat_lhuc        the SAT-LHUC model + unsupervised LHUC from its SI-mode first pass
  sat_lhuc_oracle the SAT-LHUC model + LHUC with the true transcripts (its upper bound)
Every run starts from a fresh copy of the loaded checkpoint; adapters go to the adaptation's own
folder (``output_folder/adapters/<system>``), never to a training checkpointer.
"""

import copy
import logging
import shlex
import sys
import time
from pathlib import Path

import speechbrain as sb
import torch
from hyperpyyaml import load_hyperpyyaml

from asr_lhuc.decode import make_beam_searcher
from asr_lhuc.device import pick_device
from asr_lhuc.lm import write_transcript_lm
from asr_lhuc.pretrained import STORED_CACHE_DIR, load_pretrained
from asr_lhuc.run_lock import RunLock

from .adapters import save_speaker_adapters
from .config import AdaptConfig
from .lexicon import Lexicon
from .online import online_hypotheses
from .pipeline import adapt_speakers, decode_speakers, score
from .protocols import split_protocol, write_split_manifests
from .report import (
    format_table,
    markdown,
    plot_speakers,
    plot_sweep,
    relative_reduction,
    speakers_improved,
    write_json,
)
from .system import AsrSystem
from .utterances import load_speakers

logger = logging.getLogger(__name__)
UNSUPERVISED = {"si_lhuc": "si", "sat_lhuc": "sat_si_mode"}
# (adapted system, the system it is compared with) for relative reductions and plots
COMPARISONS = [*UNSUPERVISED.items(), ("si_lhuc_oracle", "si"), ("sat_lhuc_oracle", "sat_si_mode"),
               ("si_lhuc_online", "si"), ("si_lhuc_external", "si"),
               ("sat_lhuc_external", "sat_si_mode")]


class Models:
    """The SI and SAT checkpoints, loaded once; `fresh(kind)` gives an independent copy."""

    def __init__(self, hp: dict):
        self.hp, self.loaded, self.caches = hp, {}, {}
        lexicon = hp.get("lexicon")  # null | targets | targets_and_output
        if lexicon not in (None, "targets", "targets_and_output"):
            raise ValueError("lexicon must be null, targets or targets_and_output, "
                             f"got {lexicon!r}")
        self.lexicon = Lexicon.from_manifest(hp["lexicon_csv"]) if lexicon else None
        self.snap_outputs = lexicon == "targets_and_output"
        self.lm_path = self._training_lm()

    def _training_lm(self) -> str | None:
        """ARPA word n-gram (``lm_order`` > 0) from the transcripts of ``lexicon_csv`` (the
        training set) for beam search in both passes; None without one."""
        order = self.hp.get("lm_order", 0) or 0
        if order <= 0:
            return None
        if self.hp.get("beam_size", 1) <= 1:
            raise ValueError("lm_order > 0 needs beam_size > 1 (the LM is used in beam search)")
        return str(write_transcript_lm(self.hp["lexicon_csv"], self.hp["output_folder"], order))

    def fresh(self, kind: str, lhuc_targets=None, reparam=None) -> AsrSystem:
        path = self.hp["si_checkpoint" if kind == "si" else "sat_checkpoint"]
        if path not in self.loaded:
            if not Path(path).is_file():
                raise FileNotFoundError(f"{kind} checkpoint {path} not found: train it with the "
                                        "recipe's train.py or set it in the YAML")
            # A YAML without the key keeps the folder stored in the checkpoint.
            cache = self.hp.get("feature_cache_dir", STORED_CACHE_DIR)
            self.loaded[path] = load_pretrained(path, feature_cache_dir=cache,
                                                pack_rnn=self.hp.get("pack_rnn"))
        model, encoder, _, _ = self.loaded[path]
        model = copy.deepcopy(model)
        if kind == "si":
            if model.has_lhuc:
                raise ValueError(f"{path} has LHUC tables: give an SI checkpoint as si_checkpoint")
            model.attach_speaker_lhuc(lhuc_targets or self.hp["lhuc_targets"], 0,
                                      reparam=reparam or self.hp.get("lhuc_reparam", "2sigmoid"))
        elif not model.has_lhuc:
            raise ValueError(f"{path} has no LHUC tables: give a SAT-LHUC checkpoint")
        beam = self.hp.get("beam_size", 1)
        searcher = make_beam_searcher(
            encoder, beam_size=beam, kenlm_model_path=self.lm_path,
            alpha=self.hp.get("lm_alpha", 0.5), beta=self.hp.get("lm_beta", 1.0),
        ) if beam > 1 else None
        system = AsrSystem(model, encoder, device=self.hp.get("device"), searcher=searcher,
                           cache=self.hp.get("cache_prefix", True), lexicon=self.lexicon,
                           snap_outputs=self.snap_outputs)
        if system.cache is not None:  # share the frozen prefix between runs of one checkpoint
            system.cache.store = self.caches.setdefault((path, system.cache.split), {})
        return system


def run_system(name: str, models: Models, data: dict, cfg: AdaptConfig, hp: dict,
               mode: str = "batched", lhuc_targets=None, reparam=None,
               sat_row_init: str | None = None) -> dict:
    """One system: adapt (unless it is a first-pass system), decode, score."""
    kind = "sat" if name.startswith("sat") else "si"
    system = models.fresh(kind, lhuc_targets, reparam)
    adapt_set, score_set = data["adapt"], data["score"]
    if name in ("si", "sat_si_mode"):
        return _with_raw(system, score(score_set, decode_speakers(system, score_set)),
                         score_set, None)
    if name == "si_lhuc_online":
        result = score(score_set, online_hypotheses(system, score_set, cfg, show_progress=True))
        if system.lexicon is not None and system.snap_outputs:  # the plain hypotheses too
            plain = models.fresh(kind, lhuc_targets, reparam)
            plain.snap_outputs = False
            raw = score(score_set, online_hypotheses(plain, score_set, cfg))
            result.update(wer_no_lexicon=raw["wer"], cer_no_lexicon=raw["cer"])
        return result
    if name.endswith("_lhuc_oracle"):  # one transcript per utterance, every word trusted
        cfg = cfg.replace(targets="oracle", nbest=1, word_confidence=0.0)
    elif name.endswith("_external"):  # AdaptConfig rejects a missing hypotheses_file
        cfg = cfg.replace(targets="external", hypotheses_file=hp.get("hypotheses_file"),
                          nbest=1)
    if name in ("sat_lhuc", "sat_lhuc_oracle"):  # the same starting row, so they compare
        cfg = cfg.replace(row_init=sat_row_init or hp.get("sat_row_init", cfg.row_init))
    info = adapt_speakers(system, adapt_set, cfg, mode, show_progress=True)
    result = _with_raw(system, score(score_set, decode_speakers(system, score_set, info["rows"])),
                       score_set, info["rows"])
    result.update(adapt_seconds=info["seconds"], unusable_speakers=info["unusable"],
                  targets=info["targets"], adapt_audio_seconds=info["audio_seconds"])
    if hp.get("save_adapters", True):
        folder = Path(hp["output_folder"]) / "adapters" / f"{name}_{mode}"
        save_speaker_adapters(system.model, info["rows"], folder)
        result["adapters"] = str(folder)
    return result


def _with_raw(system: AsrSystem, result: dict, score_set: dict, rows) -> dict:
    """Where outputs are snapped to the lexicon, also score the plain hypotheses."""
    if system.lexicon is not None and system.snap_outputs:
        system.snap_outputs = False
        raw = score(score_set, decode_speakers(system, score_set, rows))
        system.snap_outputs = True
        result.update(wer_no_lexicon=raw["wer"], cer_no_lexicon=raw["cer"])
    return result


def headline(models: Models, data: dict, cfg: AdaptConfig, hp: dict) -> dict:
    """The systems of the YAML, plus the per-speaker loop timed against batched mode."""
    results, timing = {}, {}
    for name in hp["systems"]:
        logger.info("system %s", name)
        results[name] = run_system(name, models, data, cfg, hp, hp.get("mode", "batched"))
        if name == "si_lhuc" and hp.get("compare_loop", True):
            loop = run_system(name, models, data, cfg, hp, mode="loop")
            timing = {"loop_seconds": loop["adapt_seconds"],
                      "batched_seconds": results[name]["adapt_seconds"],
                      "loop_wer": loop["wer"], "loop_cer": loop["cer"]}
        logger.info("%s: WER %.4f CER %.4f", name, results[name]["wer"], results[name]["cer"])
    return {"systems": results, **timing}


def sweeps(models: Models, data: dict, cfg: AdaptConfig, hp: dict, out: Path) -> dict:
    """Ablations: each sweep varies layers, reparam or adaptation options of one system.

    A sweep may set `max_speakers` (the first N test speakers, to bound the cost of settings
    that cannot use the prefix cache); its baseline is then rescored on the same speakers.
    """
    found = {}
    only = hp.get("run_sweeps")  # e.g. --run_sweeps "[layers, confidence]": a subset
    for sweep_name, sweep in (hp.get("sweeps") or {}).items():
        if only is not None and sweep_name not in only:
            continue
        part = _first_speakers(data, sweep.get("max_speakers"))
        points, details = {}, {}
        for label, setting in sweep["settings"].items():
            setting = dict(setting or {})
            run_cfg = cfg.replace(**setting.get("adapt", {}))
            res = run_system(sweep.get("system", "si_lhuc"), models, part, run_cfg, hp,
                             lhuc_targets=setting.get("lhuc_targets"),
                             reparam=setting.get("reparam"),
                             sat_row_init=setting.get("sat_row_init"))
            points[label] = res["wer"]
            details[label] = {"wer": res["wer"], "cer": res["cer"], "setting": setting,
                              "adapt_seconds": res.get("adapt_seconds")}
            logger.info("sweep %s / %s: WER %.4f", sweep_name, label, res["wer"])
        baseline = sweep.get("baseline")
        base_wer = data["baselines"].get(baseline) if part is data else None
        if baseline is not None and base_wer is None:
            base_wer = run_system(baseline, models, part, cfg, hp)["wer"]
        png = out / f"sweep_{sweep_name}.png"  # sweep names are unique per corpus
        plot_sweep(points, png, f"{hp['corpus']}: {sweep_name} ({len(part['score'])} speakers)",
                   sweep_name, baseline=base_wer)
        found[sweep_name] = {"results": details, "plot": str(png), "baseline": baseline,
                             "baseline_wer": base_wer, "n_speakers": len(part["score"])}
    return found


def _first_speakers(data: dict, n: int | None) -> dict:
    if n is None or n >= len(data["score"]):
        return data
    keep = sorted(data["score"])[:n]
    return {"adapt": {s: data["adapt"][s] for s in keep},
            "score": {s: data["score"][s] for s in keep}, "baselines": {}}


def summarise(found: dict, hp: dict, command: str) -> dict:
    """adapt.json: wer/cer per system, relative reductions, speakers improved, timing."""
    systems = found["systems"]
    keys = ("wer", "cer", "n_utts", "wer_no_lexicon", "cer_no_lexicon")
    payload = {name: {k: res[k] for k in keys if k in res} for name, res in systems.items()}
    adapted = [n for n in UNSUPERVISED if n in systems]
    best = min(adapted, key=lambda n: systems[n]["wer"]) if adapted else None
    if best is not None:
        base = UNSUPERVISED[best]
        if base in systems:
            payload["speakers_improved"] = speakers_improved(
                systems[base]["per_speaker"], systems[best]["per_speaker"])["improved"]
            payload["speakers_improved_detail"] = speakers_improved(
                systems[base]["per_speaker"], systems[best]["per_speaker"])
        payload["best_unsupervised"] = best
    payload["relative_wer_reduction"] = {
        f"{b}->{a}": relative_reduction(systems[b]["wer"], systems[a]["wer"])
        for a, b in COMPARISONS if a in systems and b in systems}
    payload["per_speaker_wer"] = {n: r["per_speaker"] for n, r in systems.items()}
    payload["groups_wer"] = {n: r["groups"] for n, r in systems.items() if r["groups"]}
    payload["unusable_speakers"] = {n: r["unusable_speakers"] for n, r in systems.items()
                                    if "unusable_speakers" in r}
    payload["adapt_seconds"] = {n: r["adapt_seconds"] for n, r in systems.items()
                                if "adapt_seconds" in r}
    # how wrong each adapted system's targets were, and how much audio each speaker adapted on
    payload["target_quality"] = {n: r["targets"]["quality"] for n, r in systems.items()
                                 if "targets" in r}
    payload["adapt_audio_seconds"] = {n: r["adapt_audio_seconds"] for n, r in systems.items()
                                      if "adapt_audio_seconds" in r}
    for key in ("loop_seconds", "batched_seconds", "loop_wer", "loop_cer"):
        if key in found:
            payload[key] = found[key]
    if "loop_seconds" in found and found["batched_seconds"] > 0:
        payload["loop_over_batched_speedup"] = found["loop_seconds"] / found["batched_seconds"]
        for key in ("loop_seconds", "batched_seconds"):
            payload[key.replace("_seconds", "_seconds_per_speaker")] = (
                found[key] / max(found["n_speakers"], 1))
    payload.update(
        corpus=hp["corpus"], n_speakers=found["n_speakers"], protocol=hp["protocol"],
        checkpoint={"si": hp.get("si_checkpoint"), "sat": hp.get("sat_checkpoint")},
        beam_size=hp.get("beam_size", 1), lm_order=hp.get("lm_order", 0),
        lm_alpha=hp.get("lm_alpha"), lm_beta=hp.get("lm_beta"), lexicon=hp.get("lexicon"),
        lexicon_csv=hp.get("lexicon_csv"),
        adapt_config=found["adapt_config"], lhuc_targets_si=hp.get("lhuc_targets"),
        lhuc_reparam_si=hp.get("lhuc_reparam", "2sigmoid"),
        device=found["device"], threads=torch.get_num_threads(), command=command,
        wall_seconds=found["wall_seconds"])
    if "sweeps" in found:
        payload["sweeps"] = found["sweeps"]
    return payload


def plots(found: dict, out: Path, corpus: str, prefix: str = "") -> list[str]:
    """Per-speaker WER before/after for each adapted system."""
    made = []
    systems = found["systems"]
    for after, before in COMPARISONS:
        if after in systems and before in systems:
            png = out / f"{prefix}speakers_{after}.png"
            plot_speakers(systems[before]["per_speaker"], systems[after]["per_speaker"], png,
                          f"{corpus}: per-speaker WER", (before, after))
            made.append(str(png))
    return made


def run(hp: dict, prepare_fn, command: str) -> dict:
    """Prepare data, run systems and sweeps, write adapt.json + plots, print the table."""
    start = time.perf_counter()
    torch.manual_seed(hp.get("seed", 1234))
    if prepare_fn is not None and hp.get("prepare_kwargs"):
        prepare_fn(**dict(hp["prepare_kwargs"]))
    speakers = load_speakers(hp["test_csv"], max_speakers=hp.get("max_speakers"),
                             max_utts=hp.get("max_utts"))
    adapt_set, score_set = split_protocol(speakers, hp["protocol"], hp.get("seed", 1234))
    write_split_manifests(hp["test_csv"], adapt_set, score_set, hp["output_folder"])
    cfg = AdaptConfig.from_dict(hp["adapt"])
    cfg.check_decoder(hp.get("beam_size", 1))  # before the first system decodes anything
    if cfg.nbest > 1 and "si_lhuc_online" in hp["systems"]:
        raise ValueError(f"si_lhuc_online takes 1-best targets, adapt.nbest is {cfg.nbest}: "
                         "drop si_lhuc_online from systems or set nbest: 1")
    models = Models(hp)
    data = {"adapt": adapt_set, "score": score_set, "baselines": {}}
    found = headline(models, data, cfg, hp)
    data["baselines"] = {n: r["wer"] for n, r in found["systems"].items()}
    out = Path(hp["results_folder"])
    out.mkdir(parents=True, exist_ok=True)
    if hp.get("sweeps"):
        found["sweeps"] = sweeps(models, data, cfg, hp, out)
    found.update(n_speakers=len(speakers), adapt_config=cfg.to_dict(),
                 device=str(pick_device(hp.get("device"))),
                 wall_seconds=time.perf_counter() - start)
    payload = summarise(found, hp, command)
    name = hp.get("results_name", "adapt.json")
    prefix = "" if name == "adapt.json" else f"{Path(name).stem}_"  # keep the headline's plots
    payload["plots"] = plots(found, out, hp["corpus"], prefix)
    path = write_json(out / name, payload)
    table = format_table(found["systems"])
    path.with_suffix(".md").write_text(markdown(payload, table))
    print(f"\n{hp['corpus']}: {len(speakers)} test speakers, protocol {hp['protocol']}")
    print(table)
    if "loop_seconds" in found:
        print(f"adaptation wall time: per-speaker loop {found['loop_seconds']:.1f} s, "
              f"batched {found['batched_seconds']:.1f} s")
    print(f"results: {path}")
    return payload


def main(prepare_fn, script: str) -> dict:
    """Entry point of recipes/<Corpus>/ASR/CTC/adapt.py (SpeechBrain-style arguments)."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    argv = sys.argv[1:]
    hparams_file, run_opts, overrides = sb.parse_arguments(argv)
    with open(hparams_file) as fin:
        hp = load_hyperpyyaml(fin, overrides)
    if run_opts["device"]:  # `--device cuda:0` as for train.py; else the GPU where there is one
        hp["device"] = run_opts["device"]
    if hp.get("threads"):
        torch.set_num_threads(int(hp["threads"]))
    with RunLock(hp["output_folder"], "adaptation run"):  # one run per folder
        return run(hp, prepare_fn, " ".join(["python", script, *map(shlex.quote, argv)]))
