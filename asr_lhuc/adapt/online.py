"""Online adaptation: utterance n of a speaker is decoded with the row learned from 1..n-1.

After decoding utterance n, its hypothesis (or transcript, for the oracle) joins the speaker's
targets and the row is adapted further on all targets so far (warm start, `cfg.online_epochs`
passes each time).
"""

import torch
from tqdm import tqdm

from .config import AdaptConfig
from .rows import add_speaker_rows
from .schedule import speaker_schedule
from .steps import run_steps
from .system import AsrSystem
from .targets import Target, select_confident


def online_hypotheses(system: AsrSystem, speakers: dict[str, list], cfg: AdaptConfig,
                      show_progress: bool = False) -> dict[str, list[str]]:
    """Hypotheses per speaker, each produced before its own utterance was adapted on."""
    if cfg.nbest > 1:
        raise ValueError(f"online adaptation takes 1-best targets; nbest {cfg.nbest} is for "
                         "the batch protocols: set nbest: 1 for si_lhuc_online")
    rows = add_speaker_rows(system.model, list(speakers), cfg.row_init)
    hyps = {}
    for spk, utts in tqdm(speakers.items(), desc="online adaptation", unit="spk",
                          disable=not show_progress):
        history, hyps[spk] = [], []
        for n, utt in enumerate(utts):
            text, conf = system.decode([utt], torch.tensor([rows[spk]]))
            hyps[spk].append(text[0])
            if cfg.targets == "oracle":
                target_text = utt.text
            else:
                target_text = system.decode([utt], torch.tensor([rows[spk]]), snap=True)[0][0]
            ids = system.text_to_ids(target_text)
            if len(ids) or cfg.loss == "entropy":  # the entropy needs no text
                history.append(Target(utt, target_text, ids, conf[0]))
            usable = select_confident(history, cfg.min_confidence, cfg.top_fraction)
            if usable and n + 1 < len(utts):
                batches = speaker_schedule(usable, cfg.batch_size, cfg.online_epochs,
                                           cfg.seed + n, spk)
                plan = [{spk: b} for b in batches]
                run_steps(system, plan, rows, cfg)
    return hyps
