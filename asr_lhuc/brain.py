"""LHUCCTCBrain: SpeechBrain training of the CTC model in SI or SAT-LHUC mode, and its data.

The batch's speakers choose the LHUC rows in training (SAT-LHUC; the tables themselves swap in
the SI row with probability `sat_gamma`). Validation and test decode in SI mode by default
(`eval_with_speaker_rows: False`): that is the number reported for SAT models and the first
pass of unsupervised adaptation. WER/CER come from jiwer (`asr_lhuc.scoring`); SpeechBrain's
`ErrorRateStats` also writes its usual per-utterance WER file.
"""

import logging
import time

import speechbrain as sb
import torch
from speechbrain.dataio.dataset import DynamicItemDataset
from speechbrain.utils.checkpoints import mark_as_loader, mark_as_saver, register_checkpoint_hooks
from torch.nn.parallel import DistributedDataParallel as DDP

import lhuc

from .checkpoints import recover
from .data import normalize_text
from .data.audio import check_manifest_audio, load_manifest_audio
from .data.manifest import read_dataset_rows
from .decode import beam_texts, greedy_texts, make_text_encoder
from .scoring import wer_by_age_group, wer_cer
from .speakers import SpeakerMap

logger = logging.getLogger(__name__)


@register_checkpoint_hooks
class TrainClock:
    """Seconds spent in training epochs, kept across resumes by the Checkpointer."""

    def __init__(self):
        self.seconds = 0.0

    @mark_as_saver
    def _save(self, path):
        with open(path, "w") as f:
            f.write(f"{self.seconds}\n")

    @mark_as_loader
    def _load(self, path, end_of_epoch=False):
        with open(path) as f:
            self.seconds = float(f.read())


class LHUCCTCBrain(sb.Brain):
    """`sb.Brain` for `CTCAcousticModel` (module key ``model``) with optional per-speaker LHUC.

    Expects in hparams: ``speaker_map`` (set by the recipe), ``text_encoder``, and optionally
    ``speed_perturb`` / ``spec_augment`` modules (training only), ``test_beam_size``
    (> 1 for beam search at test time), ``eval_with_speaker_rows``.
    """

    @property
    def model(self):
        """The acoustic model itself (unwrapped from DDP)."""
        model = self.modules.model
        return model.module if hasattr(model, "module") else model

    def _wrap_distributed(self):
        # SpeechBrain turns BatchNorm into SyncBatchNorm, which only runs on GPUs: on CPU (gloo)
        # wrap in plain DDP; BatchNorm statistics then stay per process, which is harmless.
        if not (self.distributed_launch and torch.device(self.device).type == "cpu"):
            return super()._wrap_distributed()
        for name, module in self.modules.items():
            if any(p.requires_grad for p in module.parameters()):
                self.modules[name] = DDP(module, device_ids=None,
                                         find_unused_parameters=self.find_unused_parameters)

    def speaker_ids(self, batch, stage):
        """LHUC rows for this batch, or None (SI row for all) where the model should run SI."""
        if not self.model.has_lhuc:
            return None
        if stage != sb.Stage.TRAIN and not getattr(self.hparams, "eval_with_speaker_rows", False):
            return None
        return batch.spk_row.to(self.device)

    def compute_forward(self, batch, stage):
        batch = batch.to(self.device)
        wavs, wav_lens = batch.sig
        augment, utt_ids, speeds = None, batch.id, None  # ids: a frozen front end's cache
        if stage == sb.Stage.TRAIN:
            if getattr(self.hparams, "speed_perturb", None) is not None:
                wavs, utt_ids = self.hparams.speed_perturb(wavs), None
            speeds = self.sample_speeds(len(batch.id))
            augment = getattr(self.hparams, "spec_augment", None)
        lhuc.set_identities(self.model, self.speaker_ids(batch, stage))
        return self.modules.model(wavs, wav_lens, feature_augment=augment, utt_ids=utt_ids,
                                  speeds=speeds)

    def sample_speeds(self, n: int) -> list[int] | None:
        """One speed per utterance from ``cached_speeds`` (e.g. [90, 100, 110]), or None.

        Unlike ``speed_perturb`` (one speed per batch, applied to the audio), these speeds are
        looked up in the Whisper feature cache, so perturbation costs nothing once cached."""
        speeds = getattr(self.hparams, "cached_speeds", None)
        if not speeds:
            return None
        picks = torch.randint(len(speeds), (n,)).tolist()
        return [int(speeds[i]) for i in picks]

    def compute_objectives(self, predictions, batch, stage):
        log_probs, rel_lens = predictions
        tokens, token_lens = batch.tokens
        loss = sb.nnet.losses.ctc_loss(log_probs, tokens, rel_lens, token_lens, blank_index=0)
        if stage != sb.Stage.TRAIN:
            self._collect(log_probs, rel_lens, batch, stage)
        return loss

    def _collect(self, log_probs, rel_lens, batch, stage):
        beam = getattr(self.hparams, "test_searcher", None) if stage == sb.Stage.TEST else None
        greedy = [normalize_text(h) for h in
                  greedy_texts(log_probs, rel_lens, self.hparams.text_encoder)]
        self.greedy_hyps += greedy
        hyps = greedy
        if beam is not None:
            hyps = [normalize_text(h) for h in beam_texts(log_probs, rel_lens, beam)[0]]
        refs = [normalize_text(w) for w in batch.wrd]
        self.refs += refs
        self.hyps += hyps
        self.utt_ages += list(batch.age)
        self.wer_metric.append(batch.id, predict=[h.split() for h in hyps],
                               target=[r.split() for r in refs])

    def on_stage_start(self, stage, epoch=None):
        self.refs, self.hyps, self.greedy_hyps, self.utt_ages = [], [], [], []
        self.wer_metric = sb.utils.metric_stats.ErrorRateStats()
        if stage == sb.Stage.TRAIN:
            self._epoch_start = time.time()

    def on_stage_end(self, stage, stage_loss, epoch=None):
        if stage == sb.Stage.TRAIN:
            self.train_loss = stage_loss
            self.hparams.train_clock.seconds += time.time() - self._epoch_start
            self.hparams.loss_history.losses.append(float(stage_loss))
            return
        scores = wer_cer(self.refs, self.hyps)
        stats = {"loss": stage_loss, "WER": 100 * scores["wer"], "CER": 100 * scores["cer"]}
        if stage == sb.Stage.VALID:
            old_lr, new_lr = self.hparams.lr_annealing(stats["WER"])
            for group in self.optimizer.param_groups:  # each group keeps its share of the lr
                group["lr"] = new_lr * group.get("lr_scale", 1.0)
            self.hparams.train_logger.log_stats(
                stats_meta={"epoch": epoch, "lr": old_lr,
                            "train_seconds": round(self.hparams.train_clock.seconds, 1)},
                train_stats={"loss": getattr(self, "train_loss", None)},
                valid_stats=stats,
            )
            self._stop_if_out_of_time()
            self.checkpointer.save_and_keep_only(meta={"WER": stats["WER"]}, min_keys=["WER"])
        else:
            self.hparams.train_logger.log_stats(
                stats_meta={"Epoch loaded": self.hparams.epoch_counter.current},
                test_stats=stats,
            )
            with open(self.hparams.test_wer_file, "w") as f:
                self.wer_metric.write_stats(f)
            scores["groups"] = wer_by_age_group(self.refs, self.hyps, self.utt_ages)
            if getattr(self.hparams, "test_searcher", None) is not None:
                scores["greedy"] = wer_cer(self.refs, self.greedy_hyps)
            self.test_scores = scores


    def init_optimizers(self):
        """One optimizer with a share of the lr per part: fine-tuned Whisper blocks learn at
        ``whisper_lr_scale`` x lr (a pretrained Transformer wants a far smaller step than the
        head trained from scratch); the LHUC tables at ``lhuc_lr_scale`` x lr (SAT started from
        an SI model at a fine-tuning lr would otherwise leave every speaker row near 1)."""
        parts = [(lhuc.lhuc_parameters(self.model), getattr(self.hparams, "lhuc_lr_scale", 1.0))]
        if self.model.whisper_top is not None:
            parts.append((list(self.model.whisper_top.parameters()),
                          getattr(self.hparams, "whisper_lr_scale", 1.0)))
        parts = [(params, scale) for params, scale in parts if scale != 1.0 and params]
        if not parts or self.opt_class is None:
            return super().init_optimizers()
        taken, groups = set(), []
        for params, scale in parts:  # LHUC first: tables inside Whisper blocks are theirs
            own = [p for p in params if p.requires_grad and id(p) not in taken]
            taken |= {id(p) for p in own}
            groups.append((own, scale))
        rest = [p for p in self.modules.parameters() if id(p) not in taken and p.requires_grad]
        self.optimizer = self.opt_class([{"params": rest, "lr_scale": 1.0}])
        base_lr = self.optimizer.param_groups[0]["lr"]
        for params, scale in groups:
            self.optimizer.add_param_group({"params": params, "lr": base_lr * scale,
                                            "lr_scale": scale})
        self.optimizers_dict = {"opt_class": self.optimizer}
        if self.checkpointer is not None:
            self.checkpointer.add_recoverable("optimizer", self.optimizer)

    def on_fit_start(self):
        if (getattr(self.hparams, "cached_speeds", None)
                and getattr(self.hparams, "speed_perturb", None) is not None):
            raise ValueError("set either `speed_perturb` (audio) or `cached_speeds` (Whisper "
                             "feature cache), not both: the audio would be perturbed twice")
        # sb.Brain.on_fit_start, with a recovery that names (and falls back past) a damaged
        # checkpoint instead of torch's "file is corrupted" traceback.
        self._compile()
        self._wrap_distributed()
        self.init_optimizers()
        if self.checkpointer is not None:  # the train clock and random state included
            recover(self.checkpointer)
        self._stop_if_out_of_time()  # a rerun of a run that hit its time limit only re-tests

    def on_evaluate_start(self, max_key=None, min_key=None):
        if max_key is not None:
            raise ValueError("LHUCCTCBrain picks its test checkpoint by a min_key (WER)")
        if self.checkpointer is not None:
            recover(self.checkpointer, min_key=min_key)

    def _stop_if_out_of_time(self):
        """End training after this epoch once ``train_time_limit_minutes`` of training is spent."""
        limit = getattr(self.hparams, "train_time_limit_minutes", None)
        if limit and self.hparams.train_clock.seconds >= 60 * limit:
            counter = self.hparams.epoch_counter
            logger.info("training time limit of %s min reached after epoch %d; stopping",
                        limit, counter.current)
            counter.limit = counter.current


def _readable_chars(text: str, characters: set[str]) -> bool:
    return bool(text) and set(text) <= characters


def dataio_prepare(hparams: dict):
    """Datasets for train/valid/test (DynamicItemDataset), the text encoder and the speaker map.

    hparams: ``train_csv``, ``valid_csv``, ``test_csv``, ``characters`` (the units, and the
    characters a transcript may use) and ``sorting`` ("ascending" | "descending" | "random").
    Rows whose normalised transcript is empty or uses characters outside ``characters`` are
    counted, logged and dropped.
    A manifest with a missing column, or a file that is missing, unreadable, not mono or not at
    the model's rate (``model.config["sample_rate"]``, 16 kHz) is refused naming the file; a
    file with NaN/inf samples is refused when it is loaded.
    Training speakers (sorted) get LHUC rows 0..n-1; every other speaker maps to the SI row.
    """
    encoder, tokenize = make_units(hparams)
    chars = set(hparams["characters"])
    rate = getattr(hparams.get("model"), "config", {}).get("sample_rate", 16000)
    datasets = {}
    for split in ("train", "valid", "test"):
        csv_path = hparams[f"{split}_csv"]
        rows = read_dataset_rows(csv_path)
        # A transcript the units cannot spell is one unusable row, not a broken manifest: skip
        # it (counted, named) and train on the rest; bad audio below is refused instead, since
        # preparation has already skipped such files and one here means a stale manifest.
        kept = {uid: row for uid, row in rows.items()
                if _readable_chars(normalize_text(row["wrd"]), chars)}
        if len(kept) < len(rows):
            logger.warning("%s: dropped %d of %d utterances with empty transcripts or characters "
                           "outside the unit set (first: %s)", csv_path, len(rows) - len(kept),
                           len(rows), [uid for uid in rows if uid not in kept][:3])
        check_manifest_audio([row["wav"] for row in kept.values()], rate, csv_path)
        datasets[split] = DynamicItemDataset(kept)
    sorting = hparams.get("sorting", "ascending")
    if sorting in ("ascending", "descending"):
        datasets["train"] = datasets["train"].filtered_sorted(
            sort_key="duration", reverse=sorting == "descending")
        hparams["train_dataloader_opts"]["shuffle"] = False
    for split in ("valid", "test"):
        datasets[split] = datasets[split].filtered_sorted(sort_key="duration")
    speaker_map = SpeakerMap(sorted({row["spk_id"] for row in datasets["train"].data.values()}))
    _add_pipelines(list(datasets.values()), encoder, tokenize, speaker_map, rate)
    return datasets, encoder, speaker_map


def make_units(hparams: dict):
    """(text encoder, text -> labels): the characters of the YAML (the only units: LHUC
    adaptation reads character hypotheses; SentencePiece units gained nothing, see
    docs/RESULTS.md)."""
    units = hparams.get("units", "characters")
    if units != "characters":
        raise ValueError(f"units must be 'characters', got {units!r}")
    return make_text_encoder(hparams["characters"]), list


def _add_pipelines(datasets, encoder, tokenize, speaker_map, sample_rate):
    @sb.utils.data_pipeline.takes("wav")
    @sb.utils.data_pipeline.provides("sig")
    def audio_pipeline(wav):
        return torch.from_numpy(load_manifest_audio(wav, sample_rate))

    @sb.utils.data_pipeline.takes("wrd")
    @sb.utils.data_pipeline.provides("tokens")
    def text_pipeline(wrd):
        return encoder.encode_sequence_torch(tokenize(normalize_text(wrd)))

    @sb.utils.data_pipeline.takes("spk_id")
    @sb.utils.data_pipeline.provides("spk_row")
    def speaker_pipeline(spk_id):
        return speaker_map.row(spk_id)

    sb.dataio.dataset.add_dynamic_item(datasets, audio_pipeline)
    sb.dataio.dataset.add_dynamic_item(datasets, text_pipeline)
    sb.dataio.dataset.add_dynamic_item(datasets, speaker_pipeline)
    sb.dataio.dataset.set_output_keys(
        datasets, ["id", "sig", "tokens", "wrd", "spk_id", "spk_row", "age"])

